//! A sans-IO IKEv1 initiator (RFC 2409 Main Mode with pre-shared keys, Quick Mode, Informational
//! exchanges; RFC 3947 NAT traversal and the draft-02 variant; RFC 3706 DPD), written from the RFC
//! text for testing the server's responder.
//!
//! The shape is the server's: datagrams and time in ([`Initiator::handle_datagram`],
//! [`Initiator::handle_timeout`]), datagrams, timers and events out ([`Initiator::poll_transmit`],
//! [`Initiator::poll_timeout`], [`Initiator::poll_event`]).
//!
//! Only Diffie-Hellman and the block ciphers come from the server crate; message flow, what is
//! hashed, IV chaining, NAT-D and key derivation are the client's own (`kdf`, `wire`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use roadgate::esp;
use roadgate::ike::Transmit;
use roadgate::ike::crypto::{CipherAlg, DhGroup, DhPrivate, HashAlg};
use zeroize::Zeroizing;

use crate::kdf::{self, Hash};
use crate::wire::{
    self, Attr, Chain, Delete, Header, Id, Notify, Payload, Proposal, Sa, Transform, cert_encoding,
    exchange, flags, id_type, life, notify, p1attr, p2attr, payload, proto, vid,
};

/// One phase-1 transform to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct P1Proposal {
    pub cipher: CipherAlg,
    pub hash: HashAlg,
    pub group: DhGroup,
}

impl P1Proposal {
    pub fn new(cipher: CipherAlg, hash: HashAlg, group: DhGroup) -> Self {
        Self {
            cipher,
            hash,
            group,
        }
    }
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}",
            cipher_name(self.cipher),
            hash_name(self.hash),
            group_name(self.group)
        )
    }
}

/// IPsec encapsulation asked for in Quick Mode (UDP-encapsulated variants are chosen by NAT-T).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Transport,
    Tunnel,
}

/// Which NAT-T vendor IDs to send (with `nat_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NattVids {
    Rfc3947AndDraft02,
    Rfc3947Only,
    Draft02Only,
}

/// The NAT-T variant both sides agreed on in messages 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NattVariant {
    Rfc3947,
    Draft02,
}

/// Proposed lifetimes; `None` leaves the attribute out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub p1_seconds: Option<u64>,
    pub p2_seconds: Option<u64>,
    pub p2_kilobytes: Option<u64>,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            p1_seconds: Some(28_800),
            p2_seconds: Some(3600),
            p2_kilobytes: None,
        }
    }
}

/// Test-only deviations from the protocol.
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// Sent as our KE in message 3 instead of the real public value.
    pub ke_override: Option<Vec<u8>>,
    /// Sent as our KE in Quick Mode (PFS) instead of the real public value.
    pub qm_ke_override: Option<Vec<u8>>,
    /// Certificate mode: one byte of SIG_I flipped (a forged signature).
    pub flip_signature: bool,
    /// Certificate mode: these CERT payloads (encoding, data) instead of our chain; an empty
    /// list sends none.
    pub cert_payloads: Option<Vec<(u8, Vec<u8>)>>,
    /// Message 5 changed before or after its encryption.
    pub mm5_tamper: Option<Mm5Tamper>,
}

/// A change to message 5 (see [`TestHooks::mm5_tamper`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mm5Tamper {
    /// XOR `mask` into byte `at` of the plaintext (the payload chain padded with zeros to the
    /// cipher block); out of range: nothing.
    PlainXor { at: usize, mask: u8 },
    /// The plaintext cut to this many bytes (then padded again).
    PlainTruncate(usize),
    /// XOR `mask` into byte `at` of the encrypted body (after the ISAKMP header).
    CipherXor { at: usize, mask: u8 },
}

/// Our phase-1 identity in certificate mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertId {
    /// ID_DER_ASN1_DN: our certificate's subject (the default).
    Subject,
    /// ID_DER_ASN1_DN with these bytes (another subject's, for tests).
    Dn(Vec<u8>),
    Fqdn(String),
    UserFqdn(String),
    Ipv4(Ipv4Addr),
}

/// Certificate authentication (RSA signatures, RFC 2409 §5.1): SKEYID = prf(Ni_b | Nr_b, g^xy),
/// message 5 carries IDii, CERT and SIG_I, message 6 IDir, CERT and SIG_R.
#[derive(Clone)]
pub struct CertAuth {
    /// Our certificate, then any intermediates (DER).
    pub chain: Vec<Vec<u8>>,
    /// Our RSA private key (PKCS#8 DER).
    pub key: Zeroizing<Vec<u8>>,
    /// The CA certificate (DER) the server's certificate must chain to.
    pub ca: Vec<u8>,
    pub id: CertId,
    /// Send a CERTREQ naming the CA in messages 3 and 5.
    pub certreq: bool,
    /// When the server's certificate is checked; None: now.
    pub verify_at: Option<SystemTime>,
}

impl CertAuth {
    /// Our certificate `cert` (DER) and key (PKCS#8 DER), checking the server against `ca`; the
    /// subject as our ID, no CERTREQ.
    pub fn new(cert: Vec<u8>, key_pkcs8: &[u8], ca: Vec<u8>) -> Self {
        Self {
            chain: vec![cert],
            key: Zeroizing::new(key_pkcs8.to_vec()),
            ca,
            id: CertId::Subject,
            certreq: false,
            verify_at: None,
        }
    }
}

impl fmt::Debug for CertAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuth")
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .field("id", &self.id)
            .field("certreq", &self.certreq)
            .finish_non_exhaustive()
    }
}

/// What certificate mode needs from the configured certificates, parsed once.
struct CertSetup {
    subject_der: Vec<u8>,
    ca_subject_der: Vec<u8>,
    trust: ca::TrustStore,
}

impl CertSetup {
    fn new(c: &CertAuth) -> Result<Self, String> {
        let leaf = c.chain.first().ok_or("no certificate of ours")?;
        let ours = ca::inspect_cert(leaf).map_err(|e| format!("our certificate: {e}"))?;
        let anchor = ca::inspect_cert(&c.ca).map_err(|e| format!("the CA certificate: {e}"))?;
        let mut trust = ca::TrustStore::new();
        trust
            .add_anchor_der(&c.ca)
            .map_err(|e| format!("the CA certificate: {e}"))?;
        Ok(Self {
            subject_der: ours.subject_der,
            ca_subject_der: anchor.subject_der,
            trust,
        })
    }
}

#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub psk: Vec<u8>,
    /// Sent as one proposal with these transforms, in order.
    pub ike_proposals: Vec<P1Proposal>,
    /// Sent as one ESP proposal with these transforms, in order.
    pub esp_proposals: Vec<esp::Suite>,
    pub pfs: Option<DhGroup>,
    pub mode: Mode,
    /// IDci and IDcr; `None`: UDP/1701 between our address and the server's (L2TP transport mode).
    pub selectors: Option<(Id, Id)>,
    /// Send IDci/IDcr at all.
    pub send_ids: bool,
    pub lifetimes: Lifetimes,
    /// Advertise NAT-T (the VIDs chosen by `natt_vids`).
    pub nat_t: bool,
    pub natt_vids: NattVids,
    /// Advertise DPD (RFC 3706).
    pub dpd: bool,
    /// strongSwan's `encap=yes`: a fake NAT-D for our own address, so that the server sees a NAT.
    pub force_encap: bool,
    /// The server's NAT-T port.
    pub natt_port: u16,
    /// Our NAT-T port when it differs from the server's (several clients on one host); `None`:
    /// the same number as `natt_port`.
    pub local_natt_port: Option<u16>,
    /// INITIAL-CONTACT in message 5 of the first Main Mode.
    pub initial_contact: bool,
    /// The phase-1 ID (ID_IPV4_ADDR or ID_IPV6_ADDR).
    pub my_id: IpAddr,
    /// Protocol and port of the phase-1 ID (RFC 2407 §4.6.2: 0/0 or UDP/500).
    pub my_id_proto_port: (u8, u16),
    /// Set the commit bit in Quick Mode message 1 and wait for CONNECTED.
    pub commit_bit: bool,
    /// Extra vendor IDs for message 1.
    pub vendor_ids: Vec<Vec<u8>>,
    /// Answer the server's R-U-THERE.
    pub answer_dpd: bool,
    pub retransmit_initial: Duration,
    pub retransmit_tries: u32,
    pub seed: u64,
    pub hooks: TestHooks,
    /// Authenticate with a certificate (RSA signatures) instead of `psk`.
    pub cert: Option<CertAuth>,
    /// Announce IKE fragmentation (the FRAGMENTATION vendor ID with racoon's capability word)
    /// and accept a fragmented message 6.
    pub fragmentation: bool,
}

impl InitiatorConfig {
    /// A Linux-like client: AES-256/SHA2-256/MODP-2048, ESP AES-128-CBC with HMAC-SHA1, transport
    /// mode for L2TP, NAT-T and DPD advertised.
    pub fn new(local: SocketAddr, server: SocketAddr, psk: &[u8]) -> Self {
        let my_id = local.ip();
        Self {
            local,
            server,
            psk: psk.to_vec(),
            ike_proposals: vec![P1Proposal::new(
                CipherAlg::AesCbc { key_len: 32 },
                HashAlg::Sha256,
                DhGroup::Modp2048,
            )],
            esp_proposals: vec![esp::Suite {
                encryption: esp::Encryption::AesCbc { key_len: 16 },
                integrity: esp::Integrity::HmacSha1_96,
            }],
            pfs: None,
            mode: Mode::Transport,
            selectors: None,
            send_ids: true,
            lifetimes: Lifetimes::default(),
            nat_t: true,
            natt_vids: NattVids::Rfc3947AndDraft02,
            dpd: true,
            force_encap: false,
            natt_port: 4500,
            local_natt_port: None,
            initial_contact: true,
            my_id,
            my_id_proto_port: (17, 500),
            commit_bit: false,
            vendor_ids: Vec::new(),
            answer_dpd: true,
            retransmit_initial: Duration::from_secs(1),
            retransmit_tries: 5,
            seed: 1,
            hooks: TestHooks::default(),
            cert: None,
            fragmentation: false,
        }
    }
}

impl InitiatorConfig {
    /// Our NAT-T port.
    pub fn local_natt_port(&self) -> u16 {
        self.local_natt_port.unwrap_or(self.natt_port)
    }
}

/// Where something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    MainMode,
    QuickMode,
    Informational,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The peer sent this notify type.
    PeerNotify(u16),
    /// No answer after every retransmission.
    Timeout,
    /// HASH_R, HASH(2) or HASH(4) did not verify.
    BadHash,
    /// Certificate mode: the server's certificate or identity was refused.
    BadCert(String),
    /// Certificate mode: SIG_R did not verify with the server certificate's key.
    BadSignature,
    /// The peer chose something we did not offer, or several things.
    BadProposal(String),
    Malformed(String),
    Crypto(String),
}

/// What NAT-D found (from our side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatInfo {
    pub variant: Option<NattVariant>,
    /// Our address as the server saw it differs from ours.
    pub local_behind_nat: bool,
    /// The server's address as we see it is none of its own.
    pub peer_behind_nat: bool,
    /// ESP goes in UDP (NAT found, or forced).
    pub udp_encap: bool,
}

/// Lifetimes from a RESPONDER-LIFETIME notify or a returned transform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifetimeInfo {
    pub seconds: Option<u64>,
    pub kilobytes: Option<u64>,
}

/// An IPsec SA pair agreed in Quick Mode, as the client sees it.
#[derive(Debug, Clone)]
pub struct ChildInfo {
    pub inbound_spi: u32,
    pub outbound_spi: u32,
    pub suite: esp::Suite,
    pub inbound_keymat: Vec<u8>,
    pub outbound_keymat: Vec<u8>,
    pub udp_encap: bool,
    /// The encapsulation-mode attribute value agreed (2, 4, 61444...).
    pub encap_mode: u16,
    pub pfs: bool,
    pub icky: [u8; 8],
    pub mid: u32,
    /// What the responder put in the transform it returned.
    pub returned_lifetime: LifetimeInfo,
    /// The responder's RESPONDER-LIFETIME notify, if any.
    pub responder_lifetime: Option<LifetimeInfo>,
    /// The returned transform differs from ours in its lifetime attributes (RFC 2407 §4.5.4 says
    /// to keep them and send RESPONDER-LIFETIME instead).
    pub transform_altered: bool,
    /// Our inbound SPI of the SA this one rekeys.
    pub replaces: Option<u32>,
    /// NAT-OA addresses from the responder.
    pub peer_nat_oa: Vec<IpAddr>,
    /// Where ESP goes (the server's address as we see it; port NAT-T when `udp_encap`).
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Child {
        inbound_spi: u32,
        outbound_spi: u32,
        by_peer: bool,
    },
    Phase1 {
        icky: [u8; 8],
        rcky: [u8; 8],
        by_peer: bool,
    },
}

#[derive(Debug, Clone)]
pub enum InitiatorEvent {
    Phase1Up {
        icky: [u8; 8],
        rcky: [u8; 8],
        algorithms: String,
        nat: NatInfo,
        rekey: bool,
        peer_dpd: bool,
        peer_vids: Vec<Vec<u8>>,
        /// Certificate mode: the subject of the server's certificate, checked.
        peer_cert: Option<String>,
    },
    ChildSaUp(Box<ChildInfo>),
    Failed {
        stage: Stage,
        reason: FailReason,
    },
    Deleted(Deleted),
    DpdAck {
        seq: u32,
    },
    /// The server sent R-U-THERE (answered when `answer_dpd`).
    DpdProbe {
        seq: u32,
        answered: bool,
    },
    /// Any other notify received (protected or not).
    Notify {
        message_type: u16,
        protected: bool,
        data: Vec<u8>,
    },
}

/// Counters for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitiatorStats {
    pub sent: u64,
    pub received: u64,
    pub retransmits: u64,
    pub qm3_resent: u64,
    pub dropped: u64,
    pub duplicates_ignored: u64,
    /// Peer Deletes of IPsec SAs that named the peer's own (inbound) SPI, as RFC 2408 §3.15 says.
    pub deletes_by_sender_spi: u64,
    /// Peer Deletes of IPsec SAs that named our inbound SPI instead.
    pub deletes_by_our_spi: u64,
    /// IKE fragments sent and received, and CERTREQ payloads in message 4.
    pub fragments_sent: u64,
    pub fragments_received: u64,
    pub certreqs_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P1State {
    SentMm1,
    SentMm3,
    SentMm5,
    Up,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QmState {
    SentQm1,
    WaitConnected,
    Done,
    Failed,
}

/// A request of ours awaiting its answer.
#[derive(Debug, Clone)]
struct Retx {
    msg: Vec<u8>,
    /// The further IKE fragments of `msg`, when it went in fragments.
    more: Vec<Vec<u8>>,
    at: Instant,
    interval: Duration,
    tries_left: u32,
}

struct Quick {
    mid: u32,
    state: QmState,
    /// The CBC chain of this exchange.
    iv: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    my_spi: u32,
    dh: Option<DhPrivate>,
    offered: Vec<(Transform, esp::Suite)>,
    retx: Option<Retx>,
    qm2_seen: Option<Vec<u8>>,
    qm3: Option<Vec<u8>>,
    replaces: Option<u32>,
    pending: Option<ChildInfo>,
    ids: Option<(Id, Id)>,
}

struct Isakmp {
    icky: [u8; 8],
    rcky: [u8; 8],
    state: P1State,
    local: SocketAddr,
    remote: SocketAddr,
    offered: Vec<(Transform, P1Proposal)>,
    sai_b: Vec<u8>,
    chosen: Option<P1Proposal>,
    natt: Option<NattVariant>,
    peer_dpd: bool,
    peer_vids: Vec<Vec<u8>>,
    nat: NatInfo,
    dh: Option<DhPrivate>,
    gxi: Vec<u8>,
    gxr: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    keys: Option<kdf::P1Keys>,
    /// During Main Mode the CBC chain; once up, the last phase-1 CBC block.
    iv: Vec<u8>,
    retx: Option<Retx>,
    rekey_of: Option<[u8; 8]>,
    start_quick: bool,
    send_initial_contact: bool,
    quick: Vec<Quick>,
    dpd_seq: u32,
    dpd_outstanding: Option<u32>,
    frags: Fragments,
}

/// The IKE fragments of the peer's message received so far.
#[derive(Debug, Default)]
struct Fragments {
    id: u16,
    parts: BTreeMap<u8, Vec<u8>>,
    last: Option<u8>,
    bytes: usize,
}

impl Fragments {
    /// Adds the body of a fragment payload (fragment ID, number, flags, data); the whole
    /// message once every piece up to the last is here.
    fn add(&mut self, body: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let [id0, id1, number, fl, data @ ..] = body else {
            return Err("fragment payload shorter than 4 bytes".into());
        };
        let id = u16::from_be_bytes([*id0, *id1]);
        if *number == 0 {
            return Err("fragment number 0".into());
        }
        if id != self.id {
            *self = Fragments {
                id,
                ..Fragments::default()
            };
        }
        self.bytes += data.len();
        if self.bytes > 64 * 1024 || self.parts.len() >= 64 {
            *self = Fragments::default();
            return Err("fragmented message too large".into());
        }
        self.parts.entry(*number).or_insert_with(|| data.to_vec());
        if fl & 1 != 0 {
            self.last = Some(*number);
        }
        match self.last {
            Some(last) if (1..=last).all(|n| self.parts.contains_key(&n)) => {
                let whole = self
                    .parts
                    .range(1..=last)
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect();
                *self = Fragments::default();
                Ok(Some(whole))
            }
            _ => Ok(None),
        }
    }
}

impl Isakmp {
    fn hash(&self) -> Hash {
        self.chosen.map_or(Hash::Sha1, |c| hash_of(c.hash))
    }
    fn cipher(&self) -> CipherAlg {
        self.chosen
            .map_or(CipherAlg::AesCbc { key_len: 16 }, |c| c.cipher)
    }
}

struct ChildRec {
    inbound_spi: u32,
    outbound_spi: u32,
    icky: [u8; 8],
}

/// The sans-IO IKEv1 initiator. See the module documentation.
pub struct Initiator {
    cfg: InitiatorConfig,
    rng: ChaCha20Rng,
    sas: Vec<Isakmp>,
    children: Vec<ChildRec>,
    out: VecDeque<Transmit>,
    events: VecDeque<InitiatorEvent>,
    stats: InitiatorStats,
    /// Certificate mode: our subject, the CA's and its trust store (or why they are unusable).
    cert: Option<Result<CertSetup, String>>,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("local", &self.cfg.local)
            .field("server", &self.cfg.server)
            .field("isakmp_sas", &self.sas.len())
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithm numbers, from RFC 2409 Appendix A, RFC 3526, RFC 5903 and RFC 2407 / 4868 / 4106.

fn hash_of(h: HashAlg) -> Hash {
    match h {
        HashAlg::Sha1 => Hash::Sha1,
        HashAlg::Sha256 => Hash::Sha256,
        HashAlg::Sha384 => Hash::Sha384,
        HashAlg::Sha512 => Hash::Sha512,
    }
}

fn hash_attr(h: HashAlg) -> u16 {
    match h {
        HashAlg::Sha1 => p1attr::HASH_SHA1,
        HashAlg::Sha256 => p1attr::HASH_SHA256,
        HashAlg::Sha384 => p1attr::HASH_SHA384,
        HashAlg::Sha512 => p1attr::HASH_SHA512,
    }
}

fn hash_name(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha1 => "SHA1",
        HashAlg::Sha256 => "SHA2-256",
        HashAlg::Sha384 => "SHA2-384",
        HashAlg::Sha512 => "SHA2-512",
    }
}

/// The group numbers of RFC 2409 §6, RFC 3526 and RFC 5903.
pub fn group_number(g: DhGroup) -> u16 {
    match g {
        DhGroup::Modp768 => 1,
        DhGroup::Modp1024 => 2,
        DhGroup::Modp1536 => 5,
        DhGroup::Modp2048 => 14,
        DhGroup::Modp3072 => 15,
        DhGroup::Modp4096 => 16,
        DhGroup::Ecp256 => 19,
        DhGroup::Ecp384 => 20,
    }
}

/// A group by its command-line name (`modp2048`, `modp1024`, `ecp256`, `ecp384`).
pub fn group_by_name(name: &str) -> Option<DhGroup> {
    match name {
        "modp2048" => Some(DhGroup::Modp2048),
        "modp1024" => Some(DhGroup::Modp1024),
        "ecp256" => Some(DhGroup::Ecp256),
        "ecp384" => Some(DhGroup::Ecp384),
        _ => None,
    }
}

fn group_name(g: DhGroup) -> String {
    match g {
        DhGroup::Ecp256 => "ECP-256".into(),
        DhGroup::Ecp384 => "ECP-384".into(),
        other => format!("MODP-group{}", group_number(other)),
    }
}

fn cipher_name(c: CipherAlg) -> String {
    match c {
        CipherAlg::AesCbc { key_len } => format!("AES-CBC-{}", key_len * 8),
        CipherAlg::TripleDesCbc => "3DES-CBC".into(),
    }
}

fn cipher_block_len(c: CipherAlg) -> usize {
    match c {
        CipherAlg::AesCbc { .. } => 16,
        CipherAlg::TripleDesCbc => 8,
    }
}

fn cipher_key_len(c: CipherAlg) -> usize {
    match c {
        CipherAlg::AesCbc { key_len } => key_len,
        CipherAlg::TripleDesCbc => 24,
    }
}

fn p1_transform(number: u8, p: &P1Proposal, lifetime: Option<u64>, auth: u16) -> Transform {
    let mut attrs = Vec::new();
    match p.cipher {
        CipherAlg::AesCbc { key_len } => {
            attrs.push(Attr::Basic(p1attr::ENCRYPTION, p1attr::ENC_AES_CBC));
            attrs.push(Attr::Basic(
                p1attr::KEY_LENGTH,
                u16::try_from(key_len * 8).unwrap_or(0),
            ));
        }
        CipherAlg::TripleDesCbc => attrs.push(Attr::Basic(p1attr::ENCRYPTION, p1attr::ENC_3DES)),
    }
    attrs.push(Attr::Basic(p1attr::HASH, hash_attr(p.hash)));
    attrs.push(Attr::Basic(p1attr::AUTH_METHOD, auth));
    attrs.push(Attr::Basic(
        p1attr::GROUP_DESCRIPTION,
        group_number(p.group),
    ));
    if let Some(secs) = lifetime {
        attrs.push(Attr::Basic(p1attr::LIFE_TYPE, life::SECONDS));
        attrs.push(Attr::number(p1attr::LIFE_DURATION, secs));
    }
    Transform {
        number,
        id: 1,
        attrs,
    }
}

/// The ESP transform identifier and key length in bits of an encryption algorithm.
fn esp_enc(e: esp::Encryption) -> (u8, Option<u16>) {
    match e {
        esp::Encryption::AesCbc { key_len } => {
            (wire::esp_id::AES_CBC, u16::try_from(key_len * 8).ok())
        }
        esp::Encryption::AesGcm16 { key_len } => {
            (wire::esp_id::AES_GCM_16, u16::try_from(key_len * 8).ok())
        }
        esp::Encryption::TripleDesCbc => (wire::esp_id::DES3, None),
        esp::Encryption::Null => (wire::esp_id::NULL, None),
    }
}

fn esp_auth(i: esp::Integrity) -> Option<u16> {
    match i {
        esp::Integrity::None => None,
        esp::Integrity::HmacSha1_96 => Some(p2attr::AUTH_HMAC_SHA1),
        esp::Integrity::HmacSha256_128 | esp::Integrity::HmacSha256_96 => {
            Some(p2attr::AUTH_HMAC_SHA256)
        }
        esp::Integrity::HmacSha384_192 => Some(p2attr::AUTH_HMAC_SHA384),
        esp::Integrity::HmacSha512_256 => Some(p2attr::AUTH_HMAC_SHA512),
    }
}

/// The encapsulation-mode attribute for our mode, NAT-T variant and NAT situation.
fn encap_mode_value(mode: Mode, udp: Option<NattVariant>) -> u16 {
    match (mode, udp) {
        (Mode::Transport, None) => p2attr::MODE_TRANSPORT,
        (Mode::Tunnel, None) => p2attr::MODE_TUNNEL,
        (Mode::Transport, Some(NattVariant::Rfc3947)) => p2attr::MODE_UDP_TRANSPORT,
        (Mode::Tunnel, Some(NattVariant::Rfc3947)) => p2attr::MODE_UDP_TUNNEL,
        (Mode::Transport, Some(NattVariant::Draft02)) => p2attr::MODE_UDP_TRANSPORT_DRAFT,
        (Mode::Tunnel, Some(NattVariant::Draft02)) => p2attr::MODE_UDP_TUNNEL_DRAFT,
    }
}

fn is_life_attr_p1(k: u16) -> bool {
    k == p1attr::LIFE_TYPE || k == p1attr::LIFE_DURATION
}

fn is_life_attr_p2(k: u16) -> bool {
    k == p2attr::LIFE_TYPE || k == p2attr::LIFE_DURATION
}

fn sorted_attrs(attrs: &[Attr], skip: impl Fn(u16) -> bool) -> Vec<(u16, Option<u64>)> {
    let mut v: Vec<(u16, Option<u64>)> = attrs
        .iter()
        .filter(|a| !skip(a.kind()))
        .map(|a| (a.kind(), a.value()))
        .collect();
    v.sort_unstable();
    v
}

/// Life type/duration pairs (a duration applies to the type before it).
fn parse_lifetimes(attrs: &[Attr], type_kind: u16, dur_kind: u16) -> LifetimeInfo {
    let mut out = LifetimeInfo::default();
    let mut pending = None;
    for a in attrs {
        if a.kind() == type_kind {
            pending = a.value();
        } else if a.kind() == dur_kind {
            match pending.take() {
                Some(t) if t == u64::from(life::SECONDS) => out.seconds = a.value(),
                Some(t) if t == u64::from(life::KILOBYTES) => out.kilobytes = a.value(),
                _ => {}
            }
        }
    }
    out
}

fn send_to(
    out: &mut VecDeque<Transmit>,
    stats: &mut InitiatorStats,
    (natt_port, local_natt_port): (u16, u16),
    local: SocketAddr,
    remote: SocketAddr,
    msg: &[u8],
) {
    let mut data = Vec::with_capacity(msg.len() + 4);
    if local.port() == local_natt_port || remote.port() == natt_port {
        data.extend_from_slice(&[0, 0, 0, 0]);
    }
    data.extend_from_slice(msg);
    stats.sent += 1;
    out.push_back(Transmit {
        local,
        remote,
        data,
    });
}

/// Encrypts `chain` under `header` (E flag set, length filled in) with CBC from `iv`. Returns the
/// message and its last ciphertext block (the next IV).
fn seal(
    cipher: CipherAlg,
    key: &[u8],
    iv: &[u8],
    mut header: Header,
    first: u8,
    plain: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let bs = cipher_block_len(cipher);
    let mut body = plain.to_vec();
    // RFC 2409 Appendix B: padded with 0x00 up to the block size.
    while !body.len().is_multiple_of(bs) {
        body.push(0);
    }
    if let Err(e) = cipher.encrypt(key, iv, &mut body) {
        // Only a wrong key or IV length gets here: a bug of ours, made loud.
        panic!("ISAKMP encryption failed: {e}");
    }
    let last = body[body.len() - bs..].to_vec();
    header.flags |= flags::ENCRYPTION;
    header.next = first;
    header.length = u32::try_from(wire::HEADER_LEN + body.len()).unwrap_or(u32::MAX);
    let mut msg = Vec::with_capacity(wire::HEADER_LEN + body.len());
    header.write(&mut msg);
    msg.extend_from_slice(&body);
    (msg, last)
}

/// Decrypts the body of `msg` with CBC from `iv`. Returns the plaintext and the last ciphertext
/// block.
fn open(
    cipher: CipherAlg,
    key: &[u8],
    iv: &[u8],
    hdr: &Header,
    msg: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let bs = cipher_block_len(cipher);
    let end = usize::try_from(hdr.length).unwrap_or(usize::MAX);
    let body = msg
        .get(wire::HEADER_LEN..end)
        .ok_or("length field past the datagram")?;
    if body.is_empty() || body.len() % bs != 0 {
        return Err(format!(
            "encrypted body of {} bytes is not a multiple of {bs}",
            body.len()
        ));
    }
    let last = body[body.len() - bs..].to_vec();
    let mut plain = body.to_vec();
    cipher
        .decrypt(key, iv, &mut plain)
        .map_err(|e| e.to_string())?;
    Ok((plain, last))
}

/// A chain `HASH(h) | rest`, where `rest` is already encoded.
fn with_hash(h: &[u8], rest: &Chain) -> Vec<u8> {
    let mut c = Chain::new();
    c.push(payload::HASH, h.to_vec());
    let mut out = Vec::new();
    let len = u16::try_from(h.len() + 4).unwrap_or(0);
    out.push(rest.first());
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(h);
    out.extend_from_slice(&rest.bytes());
    out
}

fn first_of(items: &[Payload], kind: u8) -> Option<&Payload> {
    items.iter().find(|p| p.kind == kind)
}

/// The message MM1 of a Main Mode: the SA payload offering `cfg.ike_proposals` and our VIDs.
/// Returns the message, SAi_b and the offered transforms. Public for tests that forge floods.
pub fn main_mode_1(
    cfg: &InitiatorConfig,
    icky: [u8; 8],
) -> (Vec<u8>, Vec<u8>, Vec<(Transform, P1Proposal)>) {
    let auth = if cfg.cert.is_some() {
        p1attr::AUTH_RSA_SIG
    } else {
        p1attr::AUTH_PSK
    };
    let offered: Vec<(Transform, P1Proposal)> = cfg
        .ike_proposals
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p1_transform(
                    u8::try_from(i + 1).unwrap_or(255),
                    p,
                    cfg.lifetimes.p1_seconds,
                    auth,
                ),
                *p,
            )
        })
        .collect();
    let sa = Sa {
        doi: wire::DOI_IPSEC,
        situation: wire::SIT_IDENTITY_ONLY,
        proposals: vec![Proposal {
            number: 1,
            protocol: proto::ISAKMP,
            spi: Vec::new(),
            transforms: offered.iter().map(|(t, _)| t.clone()).collect(),
        }],
    };
    let sai_b = sa.encode();
    let mut chain = Chain::new();
    chain.push(payload::SA, sai_b.clone());
    for v in &cfg.vendor_ids {
        chain.push(payload::VENDOR_ID, v.clone());
    }
    if cfg.nat_t {
        if cfg.natt_vids != NattVids::Draft02Only {
            chain.push(payload::VENDOR_ID, vid::RFC3947.to_vec());
        }
        if cfg.natt_vids != NattVids::Rfc3947Only {
            chain.push(payload::VENDOR_ID, vid::NATT_DRAFT_02_N.to_vec());
        }
    }
    if cfg.dpd {
        chain.push(payload::VENDOR_ID, vid::DPD.to_vec());
    }
    if cfg.fragmentation {
        // racoon's form: the hash and the capability word "fragments of base ISAKMP messages".
        let mut v = vid::FRAGMENTATION.to_vec();
        v.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        chain.push(payload::VENDOR_ID, v);
    }
    let header = Header {
        icky,
        rcky: [0; 8],
        next: 0,
        version: 0x10,
        exchange: exchange::MAIN,
        flags: 0,
        mid: 0,
        length: 0,
    };
    (wire::message(header, &chain), sai_b, offered)
}

impl Initiator {
    pub fn new(cfg: InitiatorConfig) -> Self {
        let rng = ChaCha20Rng::seed_from_u64(cfg.seed);
        let cert = cfg.cert.as_ref().map(CertSetup::new);
        Self {
            cert,
            cfg,
            rng,
            sas: Vec::new(),
            children: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: InitiatorStats::default(),
        }
    }

    pub fn config(&self) -> &InitiatorConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &InitiatorStats {
        &self.stats
    }

    /// Starts Main Mode, and Quick Mode once it is up.
    pub fn start(&mut self, now: Instant) {
        let ic = self.cfg.initial_contact;
        self.begin_main_mode(now, None, true, ic);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<InitiatorEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut see = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for sa in &self.sas {
            if let Some(r) = &sa.retx {
                see(r.at);
            }
            for q in &sa.quick {
                if let Some(r) = &q.retx {
                    see(r.at);
                }
            }
        }
        t
    }

    /// The cookies of the newest established ISAKMP SA.
    pub fn isakmp_cookies(&self) -> Option<([u8; 8], [u8; 8])> {
        self.current_sa()
            .map(|i| (self.sas[i].icky, self.sas[i].rcky))
    }

    /// Our inbound SPIs of the IPsec SAs we hold, oldest first.
    pub fn child_spis(&self) -> Vec<(u32, u32)> {
        self.children
            .iter()
            .map(|c| (c.inbound_spi, c.outbound_spi))
            .collect()
    }

    /// Whether any ISAKMP SA is established.
    pub fn is_up(&self) -> bool {
        self.current_sa().is_some()
    }

    fn current_sa(&self) -> Option<usize> {
        self.sas.iter().rposition(|s| s.state == P1State::Up)
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    fn random_u32(&mut self) -> u32 {
        loop {
            let v = self.rng.next_u32();
            if v > 255 {
                return v;
            }
        }
    }

    fn send(&mut self, local: SocketAddr, remote: SocketAddr, msg: &[u8]) {
        send_to(
            &mut self.out,
            &mut self.stats,
            (self.cfg.natt_port, self.cfg.local_natt_port()),
            local,
            remote,
            msg,
        );
    }

    fn fail(&mut self, stage: Stage, reason: FailReason) {
        tracing::debug!(?stage, ?reason, "initiator failure");
        self.events
            .push_back(InitiatorEvent::Failed { stage, reason });
    }

    fn fail_p1(&mut self, i: usize, reason: FailReason) {
        self.sas[i].state = P1State::Dead;
        self.sas[i].retx = None;
        self.fail(Stage::MainMode, reason);
    }

    /// Our phase-1 ID payload body: the configured address, or in certificate mode the
    /// configured identity (our subject by default).
    fn my_phase1_id(&self) -> Result<Vec<u8>, String> {
        let (proto, port) = self.cfg.my_id_proto_port;
        let Some(cert) = &self.cfg.cert else {
            return Ok(Id::addr(self.cfg.my_id, proto, port).encode());
        };
        let (kind, data) = match &cert.id {
            CertId::Subject => {
                let setup = self.cert_setup()?;
                (id_type::DER_ASN1_DN, setup.subject_der.clone())
            }
            CertId::Dn(dn) => (id_type::DER_ASN1_DN, dn.clone()),
            CertId::Fqdn(name) => (id_type::FQDN, name.as_bytes().to_vec()),
            CertId::UserFqdn(name) => (id_type::USER_FQDN, name.as_bytes().to_vec()),
            CertId::Ipv4(a) => (id_type::IPV4_ADDR, a.octets().to_vec()),
        };
        Ok(Id {
            id_type: kind,
            protocol: proto,
            port,
            data,
        }
        .encode())
    }

    fn cert_setup(&self) -> Result<&CertSetup, String> {
        match &self.cert {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no certificate configured".into()),
        }
    }

    /// A CERTREQ body naming our CA (X.509 signature), when we send one.
    fn certreq_body(&self) -> Option<Vec<u8>> {
        self.cfg.cert.as_ref().filter(|c| c.certreq)?;
        let setup = self.cert_setup().ok()?;
        let mut body = vec![cert_encoding::X509_SIG];
        body.extend_from_slice(&setup.ca_subject_der);
        Some(body)
    }

    fn new_retx(&self, now: Instant, msg: Vec<u8>) -> Retx {
        Retx {
            msg,
            more: Vec::new(),
            at: now + self.cfg.retransmit_initial,
            interval: self.cfg.retransmit_initial,
            tries_left: self.cfg.retransmit_tries,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Main Mode (RFC 2409 §5, pre-shared keys)

    fn begin_main_mode(
        &mut self,
        now: Instant,
        rekey_of: Option<[u8; 8]>,
        start_quick: bool,
        initial_contact: bool,
    ) {
        let mut icky = [0u8; 8];
        self.rng.fill_bytes(&mut icky);
        let (msg, sai_b, offered) = main_mode_1(&self.cfg, icky);
        let retx = self.new_retx(now, msg.clone());
        let (local, remote) = (self.cfg.local, self.cfg.server);
        self.sas.push(Isakmp {
            icky,
            rcky: [0; 8],
            state: P1State::SentMm1,
            local,
            remote,
            offered,
            sai_b,
            chosen: None,
            natt: None,
            peer_dpd: false,
            peer_vids: Vec::new(),
            nat: NatInfo::default(),
            dh: None,
            gxi: Vec::new(),
            gxr: Vec::new(),
            ni: Vec::new(),
            nr: Vec::new(),
            keys: None,
            iv: Vec::new(),
            retx: Some(retx),
            rekey_of,
            start_quick,
            send_initial_contact: initial_contact,
            quick: Vec::new(),
            dpd_seq: 0,
            dpd_outstanding: None,
            frags: Fragments::default(),
        });
        self.send(local, remote, &msg);
    }

    fn on_mm2(&mut self, now: Instant, i: usize, hdr: &Header, data: &[u8]) {
        let items = match wire::parse_chain(hdr.next, data.get(wire::HEADER_LEN..).unwrap_or(&[])) {
            Ok((items, _)) => items,
            Err(e) => return self.fail_p1(i, FailReason::Malformed(format!("message 2: {e}"))),
        };
        if let Some(n) = first_of(&items, payload::NOTIFY)
            && let Ok(n) = Notify::parse(&n.body)
        {
            return self.fail_p1(i, FailReason::PeerNotify(n.message_type));
        }
        let Some(sa_p) = first_of(&items, payload::SA) else {
            return self.fail_p1(
                i,
                FailReason::Malformed("message 2 has no SA payload".into()),
            );
        };
        let sa = match Sa::parse(&sa_p.body) {
            Ok(sa) => sa,
            Err(e) => return self.fail_p1(i, FailReason::Malformed(format!("message 2 SA: {e}"))),
        };
        let chosen = match check_p1_choice(&sa, &self.sas[i].offered) {
            Ok(c) => c,
            Err(e) => return self.fail_p1(i, FailReason::BadProposal(e)),
        };
        let vids: Vec<Vec<u8>> = items
            .iter()
            .filter(|p| p.kind == payload::VENDOR_ID)
            .map(|p| p.body.clone())
            .collect();
        let we_rfc = self.cfg.nat_t && self.cfg.natt_vids != NattVids::Draft02Only;
        let we_draft = self.cfg.nat_t && self.cfg.natt_vids != NattVids::Rfc3947Only;
        let natt = if we_rfc && vids.iter().any(|v| v[..] == vid::RFC3947) {
            Some(NattVariant::Rfc3947)
        } else if we_draft && vids.iter().any(|v| v[..] == vid::NATT_DRAFT_02_N) {
            Some(NattVariant::Draft02)
        } else {
            None
        };
        let peer_dpd = vids.iter().any(|v| v[..] == vid::DPD);
        // Message 3: KE, Ni, [NAT-D (the server's address), NAT-D (ours)].
        let dh = DhPrivate::generate(chosen.group, &mut self.rng);
        let gxi = match &self.cfg.hooks.ke_override {
            Some(k) => k.clone(),
            None => dh.public().to_vec(),
        };
        let ni = self.random_bytes(32);
        let h = hash_of(chosen.hash);
        let force = self.cfg.force_encap;
        let fake = self.random_bytes(h.output_len());
        let certreq = self.certreq_body();
        let sa = &mut self.sas[i];
        sa.rcky = hdr.rcky;
        sa.chosen = Some(chosen);
        sa.natt = natt;
        sa.nat.variant = natt;
        sa.peer_dpd = peer_dpd;
        sa.peer_vids = vids;
        let mut chain = Chain::new();
        chain
            .push(payload::KE, gxi.clone())
            .push(payload::NONCE, ni.clone());
        if let Some(v) = natt {
            let kind = if v == NattVariant::Rfc3947 {
                payload::NAT_D
            } else {
                payload::NAT_D_DRAFT
            };
            chain.push(kind, kdf::nat_d(h, &sa.icky, &sa.rcky, sa.remote));
            let ours = if force {
                fake
            } else {
                kdf::nat_d(h, &sa.icky, &sa.rcky, sa.local)
            };
            chain.push(kind, ours);
        }
        if let Some(cr) = certreq {
            chain.push(payload::CERT_REQ, cr);
        }
        let header = Header {
            icky: sa.icky,
            rcky: sa.rcky,
            next: 0,
            version: 0x10,
            exchange: exchange::MAIN,
            flags: 0,
            mid: 0,
            length: 0,
        };
        let msg = wire::message(header, &chain);
        sa.dh = Some(dh);
        sa.gxi = gxi;
        sa.ni = ni;
        sa.state = P1State::SentMm3;
        let (l, r) = (sa.local, sa.remote);
        let retx = self.new_retx(now, msg.clone());
        self.sas[i].retx = Some(retx);
        self.send(l, r, &msg);
    }

    fn on_mm4(&mut self, now: Instant, i: usize, remote: SocketAddr, hdr: &Header, data: &[u8]) {
        let items = match wire::parse_chain(hdr.next, data.get(wire::HEADER_LEN..).unwrap_or(&[])) {
            Ok((items, _)) => items,
            Err(e) => return self.fail_p1(i, FailReason::Malformed(format!("message 4: {e}"))),
        };
        if let Some(n) = first_of(&items, payload::NOTIFY)
            && let Ok(n) = Notify::parse(&n.body)
            && n.message_type < 16384
        {
            return self.fail_p1(i, FailReason::PeerNotify(n.message_type));
        }
        let (Some(ke), Some(nonce)) = (
            first_of(&items, payload::KE),
            first_of(&items, payload::NONCE),
        ) else {
            // A late copy of message 2 (duplicated or retransmitted): not an answer to message 3.
            self.stats.duplicates_ignored += 1;
            return;
        };
        self.stats.certreqs_received +=
            items.iter().filter(|p| p.kind == payload::CERT_REQ).count() as u64;
        let idii_b = match self.my_phase1_id() {
            Ok(b) => b,
            Err(e) => return self.fail_p1(i, FailReason::Crypto(e)),
        };
        let certreq = self.certreq_body();
        let sa = &mut self.sas[i];
        let Some(chosen) = sa.chosen else { return };
        let Some(dh) = sa.dh.take() else { return };
        let gxy = match dh.shared_secret(&ke.body) {
            Ok(s) => s.to_vec(),
            Err(e) => {
                let msg = format!("server's KE refused: {e:?}");
                return self.fail_p1(i, FailReason::Crypto(msg));
            }
        };
        sa.gxr = ke.body.clone();
        sa.nr = nonce.body.clone();
        let h = hash_of(chosen.hash);
        // RFC 2409 §5: SKEYID = prf(pre-shared-key, Ni_b | Nr_b), or for signatures
        // prf(Ni_b | Nr_b, g^xy).
        let skeyid = match &self.cfg.cert {
            None => kdf::skeyid_psk(h, &self.cfg.psk, &sa.ni, &sa.nr),
            Some(_) => kdf::skeyid_sig(h, &sa.ni, &sa.nr, &gxy),
        };
        let keys = kdf::phase1_keys_from(
            h,
            skeyid,
            &gxy,
            &sa.gxi,
            &sa.gxr,
            &sa.icky,
            &sa.rcky,
            cipher_key_len(chosen.cipher),
            cipher_block_len(chosen.cipher),
        );
        // NAT-D (RFC 3947 §3.2): the first payload hashes the address the server sent to (ours as it
        // sees it); the others hash the server's own addresses.
        if let Some(v) = sa.natt {
            let kind = if v == NattVariant::Rfc3947 {
                payload::NAT_D
            } else {
                payload::NAT_D_DRAFT
            };
            let natd: Vec<&Payload> = items.iter().filter(|p| p.kind == kind).collect();
            if natd.is_empty() {
                sa.natt = None;
                sa.nat = NatInfo::default();
            } else {
                let me = kdf::nat_d(h, &sa.icky, &sa.rcky, sa.local);
                let them = kdf::nat_d(h, &sa.icky, &sa.rcky, remote);
                sa.nat.local_behind_nat = !kdf::ct_eq(&natd[0].body, &me);
                sa.nat.peer_behind_nat = !natd[1..].iter().any(|p| kdf::ct_eq(&p.body, &them));
                sa.nat.udp_encap =
                    sa.nat.local_behind_nat || sa.nat.peer_behind_nat || self.cfg.force_encap;
            }
        }
        // RFC 3947 §4: with a NAT found, the initiator moves to port 4500 for message 5 on.
        if sa.nat.udp_encap {
            sa.local.set_port(self.cfg.local_natt_port());
            sa.remote.set_port(self.cfg.natt_port);
        }
        // Message 5: IDii, HASH_I or [CERT,] SIG_I [, CERTREQ], [N(INITIAL-CONTACT)].
        let hash_i = h.prf(
            &keys.skeyid,
            &[&sa.gxi, &sa.gxr, &sa.icky, &sa.rcky, &sa.sai_b, &idii_b],
        );
        let mut chain = Chain::new();
        chain.push(payload::ID, idii_b);
        match &self.cfg.cert {
            None => {
                chain.push(payload::HASH, hash_i);
            }
            Some(cert) => {
                let certs = self.cfg.hooks.cert_payloads.clone().unwrap_or_else(|| {
                    cert.chain
                        .iter()
                        .map(|c| (cert_encoding::X509_SIG, c.clone()))
                        .collect()
                });
                for (encoding, data) in certs {
                    let mut body = vec![encoding];
                    body.extend_from_slice(&data);
                    chain.push(payload::CERT, body);
                }
                let mut sig = match ca::sign_ike_rsa(&cert.key, &hash_i) {
                    Ok(s) => s,
                    Err(e) => {
                        let why = format!("cannot sign HASH_I: {e}");
                        return self.fail_p1(i, FailReason::Crypto(why));
                    }
                };
                if self.cfg.hooks.flip_signature
                    && let Some(b) = sig.last_mut()
                {
                    *b ^= 0x01;
                }
                chain.push(payload::SIG, sig);
                if let Some(cr) = certreq {
                    chain.push(payload::CERT_REQ, cr);
                }
            }
        }
        if sa.send_initial_contact {
            let mut spi = sa.icky.to_vec();
            spi.extend_from_slice(&sa.rcky);
            let n = Notify {
                doi: wire::DOI_IPSEC,
                protocol: proto::ISAKMP,
                spi,
                message_type: notify::INITIAL_CONTACT,
                data: Vec::new(),
            };
            chain.push(payload::NOTIFY, n.encode());
        }
        let header = Header {
            icky: sa.icky,
            rcky: sa.rcky,
            next: 0,
            version: 0x10,
            exchange: exchange::MAIN,
            flags: 0,
            mid: 0,
            length: 0,
        };
        let bs = cipher_block_len(chosen.cipher);
        let mut plain = chain.bytes();
        plain.resize(plain.len().next_multiple_of(bs), 0);
        match self.cfg.hooks.mm5_tamper {
            Some(Mm5Tamper::PlainXor { at, mask }) => {
                if let Some(b) = plain.get_mut(at) {
                    *b ^= mask;
                }
            }
            Some(Mm5Tamper::PlainTruncate(n)) => plain.truncate(n),
            _ => {}
        }
        let (mut msg, last) = seal(
            chosen.cipher,
            &keys.enc_key,
            &keys.iv,
            header,
            chain.first(),
            &plain,
        );
        if let Some(Mm5Tamper::CipherXor { at, mask }) = self.cfg.hooks.mm5_tamper
            && let Some(b) = msg.get_mut(wire::HEADER_LEN + at)
        {
            *b ^= mask;
        }
        sa.iv = last;
        sa.keys = Some(keys);
        sa.state = P1State::SentMm5;
        let (l, r) = (sa.local, sa.remote);
        // Cut into IKE fragments when both sides announced them and it exceeds the path MTU.
        let peer_frag = sa
            .peer_vids
            .iter()
            .any(|v| v.starts_with(&vid::FRAGMENTATION));
        let mut datagrams = if self.cfg.fragmentation && peer_frag {
            let natt = l.port() == self.cfg.local_natt_port() || r.port() == self.cfg.natt_port;
            fragments(&header, &msg, fragment_room(r, natt))
        } else {
            Vec::new()
        };
        self.stats.fragments_sent += datagrams.len() as u64;
        let first = if datagrams.is_empty() {
            msg
        } else {
            datagrams.remove(0)
        };
        let mut retx = self.new_retx(now, first.clone());
        retx.more = datagrams.clone();
        self.sas[i].retx = Some(retx);
        self.send(l, r, &first);
        for d in &datagrams {
            self.send(l, r, d);
        }
    }

    fn on_mm6(&mut self, now: Instant, i: usize, hdr: &Header, data: &[u8]) {
        let sa = &mut self.sas[i];
        let (Some(keys), Some(chosen)) = (&sa.keys, sa.chosen) else {
            return;
        };
        if hdr.flags & flags::ENCRYPTION == 0 {
            // An unencrypted message 6 can only be a complaint.
            return;
        }
        let (plain, last) = match open(chosen.cipher, &keys.enc_key, &sa.iv, hdr, data) {
            Ok(x) => x,
            Err(e) => return self.fail_p1(i, FailReason::Malformed(format!("message 6: {e}"))),
        };
        let items = match wire::parse_chain(hdr.next, &plain) {
            Ok((items, _)) => items,
            Err(e) => {
                return self.fail_p1(
                    i,
                    FailReason::Malformed(format!("message 6 (wrong key?): {e}")),
                );
            }
        };
        let Some(id) = first_of(&items, payload::ID) else {
            return self.fail_p1(i, FailReason::Malformed("message 6 lacks ID".into()));
        };
        let h = hash_of(chosen.hash);
        // HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)
        let expect = h.prf(
            &keys.skeyid,
            &[&sa.gxr, &sa.gxi, &sa.rcky, &sa.icky, &sa.sai_b, &id.body],
        );
        let peer_cert = match &self.cert {
            None => match first_of(&items, payload::HASH) {
                Some(hash) if kdf::ct_eq(&expect, &hash.body) => None,
                Some(_) => return self.fail_p1(i, FailReason::BadHash),
                None => {
                    let why = "message 6 lacks HASH".into();
                    return self.fail_p1(i, FailReason::Malformed(why));
                }
            },
            Some(Err(e)) => {
                let why = e.clone();
                return self.fail_p1(i, FailReason::Crypto(why));
            }
            Some(Ok(setup)) => {
                let at = self
                    .cfg
                    .cert
                    .as_ref()
                    .and_then(|c| c.verify_at)
                    .unwrap_or_else(SystemTime::now);
                match check_server_signature(setup, at, &items, &id.body, &expect) {
                    Ok(subject) => Some(subject),
                    Err(reason) => return self.fail_p1(i, reason),
                }
            }
        };
        let sa = &mut self.sas[i];
        sa.iv = last;
        sa.state = P1State::Up;
        sa.retx = None;
        let ev = InitiatorEvent::Phase1Up {
            icky: sa.icky,
            rcky: sa.rcky,
            algorithms: chosen.describe(),
            nat: sa.nat,
            rekey: sa.rekey_of.is_some(),
            peer_dpd: sa.peer_dpd,
            peer_vids: sa.peer_vids.clone(),
            peer_cert,
        };
        let rekey_of = sa.rekey_of;
        let start_quick = sa.start_quick;
        let (icky, rcky) = (sa.icky, sa.rcky);
        self.events.push_back(ev);
        if let Some(old) = rekey_of
            && let Some(j) = self.sas.iter().position(|s| s.icky == old)
        {
            let (oi, or) = (self.sas[j].icky, self.sas[j].rcky);
            let mut spi = oi.to_vec();
            spi.extend_from_slice(&or);
            let d = Delete {
                doi: wire::DOI_IPSEC,
                protocol: proto::ISAKMP,
                spis: vec![spi],
            };
            let mut chain = Chain::new();
            chain.push(payload::DELETE, d.encode());
            self.send_info(j, &chain);
            self.sas.remove(j);
            for c in &mut self.children {
                if c.icky == old {
                    c.icky = icky;
                }
            }
            self.events
                .push_back(InitiatorEvent::Deleted(Deleted::Phase1 {
                    icky: oi,
                    rcky: or,
                    by_peer: false,
                }));
        }
        let _ = rcky;
        if start_quick && let Some(i) = self.sas.iter().position(|s| s.icky == icky) {
            self.start_quick(now, i, None);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Quick Mode (RFC 2409 §5.5)

    fn default_selectors(&self) -> (Id, Id) {
        (
            Id::addr(self.cfg.local.ip(), 17, 1701),
            Id::addr(self.cfg.server.ip(), 17, 1701),
        )
    }

    fn start_quick(&mut self, now: Instant, i: usize, replaces: Option<u32>) {
        let mid = self.random_u32();
        let my_spi = loop {
            let s = self.random_u32();
            let used = self.children.iter().any(|c| c.inbound_spi == s)
                || self
                    .sas
                    .iter()
                    .any(|sa| sa.quick.iter().any(|q| q.my_spi == s));
            if !used {
                break s;
            }
        };
        let ni = self.random_bytes(32);
        let dh = self.cfg.pfs.map(|g| DhPrivate::generate(g, &mut self.rng));
        let cfg = &self.cfg;
        let sa = &self.sas[i];
        let Some(keys) = &sa.keys else { return };
        let h = sa.hash();
        let udp = if sa.nat.udp_encap { sa.natt } else { None };
        let encap = encap_mode_value(cfg.mode, udp);
        let offered: Vec<(Transform, esp::Suite)> = cfg
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let (id, bits) = esp_enc(s.encryption);
                let mut attrs = Vec::new();
                if let Some(secs) = cfg.lifetimes.p2_seconds {
                    attrs.push(Attr::Basic(p2attr::LIFE_TYPE, life::SECONDS));
                    attrs.push(Attr::number(p2attr::LIFE_DURATION, secs));
                }
                if let Some(kb) = cfg.lifetimes.p2_kilobytes {
                    attrs.push(Attr::Basic(p2attr::LIFE_TYPE, life::KILOBYTES));
                    attrs.push(Attr::number(p2attr::LIFE_DURATION, kb));
                }
                if let Some(g) = cfg.pfs {
                    attrs.push(Attr::Basic(p2attr::GROUP_DESCRIPTION, group_number(g)));
                }
                attrs.push(Attr::Basic(p2attr::ENCAPSULATION_MODE, encap));
                if let Some(a) = esp_auth(s.integrity) {
                    attrs.push(Attr::Basic(p2attr::AUTH_ALGORITHM, a));
                }
                if let Some(b) = bits {
                    attrs.push(Attr::Basic(p2attr::KEY_LENGTH, b));
                }
                (
                    Transform {
                        number: u8::try_from(n + 1).unwrap_or(255),
                        id,
                        attrs,
                    },
                    *s,
                )
            })
            .collect();
        let sa_body = Sa {
            doi: wire::DOI_IPSEC,
            situation: wire::SIT_IDENTITY_ONLY,
            proposals: vec![Proposal {
                number: 1,
                protocol: proto::IPSEC_ESP,
                spi: my_spi.to_be_bytes().to_vec(),
                transforms: offered.iter().map(|(t, _)| t.clone()).collect(),
            }],
        }
        .encode();
        // HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] [, NAT-OAi, NAT-OAr]
        let mut rest = Chain::new();
        rest.push(payload::SA, sa_body)
            .push(payload::NONCE, ni.clone());
        if let Some(dh) = &dh {
            let ke = cfg
                .hooks
                .qm_ke_override
                .clone()
                .unwrap_or_else(|| dh.public().to_vec());
            rest.push(payload::KE, ke);
        }
        let ids = if cfg.send_ids {
            let ids = cfg
                .selectors
                .clone()
                .unwrap_or_else(|| self.default_selectors());
            rest.push(payload::ID, ids.0.encode())
                .push(payload::ID, ids.1.encode());
            Some(ids)
        } else {
            None
        };
        if cfg.mode == Mode::Transport {
            match udp {
                Some(NattVariant::Rfc3947) => {
                    rest.push(payload::NAT_OA, wire::nat_oa(cfg.local.ip()));
                    rest.push(payload::NAT_OA, wire::nat_oa(cfg.server.ip()));
                }
                Some(NattVariant::Draft02) => {
                    rest.push(payload::NAT_OA_DRAFT, wire::nat_oa(cfg.local.ip()));
                }
                None => {}
            }
        }
        let rest_b = rest.bytes();
        // HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])
        let h1 = h.prf(&keys.skeyid_a, &[&mid.to_be_bytes(), &rest_b]);
        let body = with_hash(&h1, &rest);
        let bs = cipher_block_len(sa.cipher());
        let iv0 = kdf::phase2_iv(h, &sa.iv, mid, bs);
        let mut fl = 0;
        if cfg.commit_bit {
            fl |= flags::COMMIT;
        }
        let header = Header {
            icky: sa.icky,
            rcky: sa.rcky,
            next: 0,
            version: 0x10,
            exchange: exchange::QUICK,
            flags: fl,
            mid,
            length: 0,
        };
        let (msg, last) = seal(
            sa.cipher(),
            &keys.enc_key,
            &iv0,
            header,
            payload::HASH,
            &body,
        );
        let (l, r) = (sa.local, sa.remote);
        let retx = self.new_retx(now, msg.clone());
        // Finished exchanges are kept only to answer a repeated QM2; the last few are enough.
        let done = self.sas[i]
            .quick
            .iter()
            .filter(|q| matches!(q.state, QmState::Done | QmState::Failed))
            .count();
        if done > 8 {
            let mut drop = done - 8;
            self.sas[i].quick.retain(|q| {
                let old = matches!(q.state, QmState::Done | QmState::Failed);
                if old && drop > 0 {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.sas[i].quick.push(Quick {
            mid,
            state: QmState::SentQm1,
            iv: last,
            ni,
            nr: Vec::new(),
            my_spi,
            dh,
            offered,
            retx: Some(retx),
            qm2_seen: None,
            qm3: None,
            replaces,
            pending: None,
            ids,
        });
        self.send(l, r, &msg);
    }

    fn on_quick(&mut self, now: Instant, i: usize, hdr: &Header, data: &[u8]) {
        let Some(qi) = self.sas[i].quick.iter().position(|q| q.mid == hdr.mid) else {
            self.stats.dropped += 1;
            return;
        };
        let msg = data
            .get(..usize::try_from(hdr.length).unwrap_or(usize::MAX))
            .unwrap_or(data);
        let q = &self.sas[i].quick[qi];
        match q.state {
            QmState::SentQm1 => self.on_qm2(now, i, qi, hdr, msg),
            QmState::WaitConnected | QmState::Done => {
                if q.qm2_seen.as_deref() == Some(msg) {
                    // Our QM3 was lost: the server repeats QM2; repeat QM3.
                    if let Some(qm3) = q.qm3.clone() {
                        let (l, r) = (self.sas[i].local, self.sas[i].remote);
                        self.stats.qm3_resent += 1;
                        self.send(l, r, &qm3);
                    }
                } else if q.state == QmState::WaitConnected {
                    self.on_connected(i, qi, hdr, msg);
                } else {
                    self.stats.duplicates_ignored += 1;
                }
            }
            QmState::Failed => self.stats.dropped += 1,
        }
    }

    fn fail_qm(&mut self, i: usize, qi: usize, reason: FailReason) {
        let q = &mut self.sas[i].quick[qi];
        q.state = QmState::Failed;
        q.retx = None;
        self.fail(Stage::QuickMode, reason);
    }

    fn on_qm2(&mut self, now: Instant, i: usize, qi: usize, hdr: &Header, msg: &[u8]) {
        let sa = &self.sas[i];
        let Some(keys) = &sa.keys else { return };
        let h = sa.hash();
        let cipher = sa.cipher();
        let q = &sa.quick[qi];
        if hdr.flags & flags::ENCRYPTION == 0 {
            return self.fail_qm(i, qi, FailReason::Malformed("QM2 not encrypted".into()));
        }
        let (plain, last) = match open(cipher, &keys.enc_key, &q.iv, hdr, msg) {
            Ok(x) => x,
            Err(e) => return self.fail_qm(i, qi, FailReason::Malformed(format!("QM2: {e}"))),
        };
        let (items, end) = match wire::parse_chain(hdr.next, &plain) {
            Ok(x) => x,
            Err(e) => return self.fail_qm(i, qi, FailReason::Malformed(format!("QM2: {e}"))),
        };
        let Some(hash) = items.first().filter(|p| p.kind == payload::HASH) else {
            return self.fail_qm(
                i,
                qi,
                FailReason::Malformed("QM2 does not start with HASH".into()),
            );
        };
        // HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])
        let rest = &plain[hash.end..end];
        let expect = h.prf(&keys.skeyid_a, &[&hdr.mid.to_be_bytes(), &q.ni, rest]);
        if !kdf::ct_eq(&expect, &hash.body) {
            return self.fail_qm(i, qi, FailReason::BadHash);
        }
        let items = &items[1..];
        let Some(sa_p) = first_of(items, payload::SA) else {
            return self.fail_qm(i, qi, FailReason::Malformed("QM2 has no SA".into()));
        };
        let Some(nr) = first_of(items, payload::NONCE) else {
            return self.fail_qm(i, qi, FailReason::Malformed("QM2 has no nonce".into()));
        };
        let reply = match Sa::parse(&sa_p.body) {
            Ok(s) => s,
            Err(e) => return self.fail_qm(i, qi, FailReason::Malformed(format!("QM2 SA: {e}"))),
        };
        let (suite, outbound_spi, returned, altered, encap) =
            match check_p2_choice(&reply, &q.offered) {
                Ok(x) => x,
                Err(e) => return self.fail_qm(i, qi, FailReason::BadProposal(e)),
            };
        // PFS: a KE is required back when we sent one.
        let gqm = match (&q.dh, first_of(items, payload::KE)) {
            (Some(dh), Some(ke)) => match dh.shared_secret(&ke.body) {
                Ok(s) => Some(s.to_vec()),
                Err(e) => return self.fail_qm(i, qi, FailReason::Crypto(format!("QM2 KE: {e:?}"))),
            },
            (Some(_), None) => {
                return self.fail_qm(
                    i,
                    qi,
                    FailReason::BadProposal("PFS asked for, QM2 has no KE".into()),
                );
            }
            (None, Some(_)) => {
                return self.fail_qm(
                    i,
                    qi,
                    FailReason::BadProposal("QM2 has a KE we did not ask for".into()),
                );
            }
            (None, None) => None,
        };
        // The responder's IDs must be the ones we sent.
        let ids: Vec<&Payload> = items.iter().filter(|p| p.kind == payload::ID).collect();
        if let Some((ci, cr)) = &q.ids
            && (ids.len() != 2 || ids[0].body != ci.encode() || ids[1].body != cr.encode())
        {
            let got: Vec<String> = ids.iter().map(|p| hex::encode(&p.body)).collect();
            return self.fail_qm(
                i,
                qi,
                FailReason::BadProposal(format!(
                    "QM2 IDs {got:?} differ from ours {} / {}",
                    hex::encode(ci.encode()),
                    hex::encode(cr.encode())
                )),
            );
        }
        let mut responder_lifetime = None;
        let mut peer_nat_oa = Vec::new();
        for p in items {
            match p.kind {
                payload::NOTIFY => {
                    if let Ok(n) = Notify::parse(&p.body) {
                        if n.message_type == notify::RESPONDER_LIFETIME {
                            if let Ok(attrs) = wire::parse_attrs(&n.data) {
                                responder_lifetime = Some(parse_lifetimes(
                                    &attrs,
                                    p2attr::LIFE_TYPE,
                                    p2attr::LIFE_DURATION,
                                ));
                            }
                        } else {
                            self.events.push_back(InitiatorEvent::Notify {
                                message_type: n.message_type,
                                protected: true,
                                data: n.data,
                            });
                        }
                    }
                }
                payload::NAT_OA | payload::NAT_OA_DRAFT => {
                    let b = &p.body;
                    match (b.first(), b.get(4..)) {
                        (Some(&1), Some(a)) if a.len() == 4 => {
                            peer_nat_oa.push(IpAddr::from([a[0], a[1], a[2], a[3]]));
                        }
                        (Some(&5), Some(a)) if a.len() == 16 => {
                            let mut o = [0u8; 16];
                            o.copy_from_slice(a);
                            peer_nat_oa.push(IpAddr::from(o));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        let nr = nr.body.clone();
        let len = suite.keymat_len();
        let inbound_keymat = kdf::keymat(
            h,
            &keys.skeyid_d,
            gqm.as_deref(),
            proto::IPSEC_ESP,
            q.my_spi,
            &q.ni,
            &nr,
            len,
        );
        let outbound_keymat = kdf::keymat(
            h,
            &keys.skeyid_d,
            gqm.as_deref(),
            proto::IPSEC_ESP,
            outbound_spi,
            &q.ni,
            &nr,
            len,
        );
        // HDR*, HASH(3); HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
        let h3 = h.prf(&keys.skeyid_a, &[&[0], &hdr.mid.to_be_bytes(), &q.ni, &nr]);
        let mut chain = Chain::new();
        chain.push(payload::HASH, h3);
        let header = Header {
            icky: sa.icky,
            rcky: sa.rcky,
            next: 0,
            version: 0x10,
            exchange: exchange::QUICK,
            flags: hdr.flags & flags::COMMIT
                | if self.cfg.commit_bit {
                    flags::COMMIT
                } else {
                    0
                },
            mid: hdr.mid,
            length: 0,
        };
        let (qm3, last3) = seal(
            cipher,
            &keys.enc_key,
            &last,
            header,
            payload::HASH,
            &chain.bytes(),
        );
        let info = ChildInfo {
            inbound_spi: q.my_spi,
            outbound_spi,
            suite,
            inbound_keymat,
            outbound_keymat,
            udp_encap: sa.nat.udp_encap,
            encap_mode: encap,
            pfs: gqm.is_some(),
            icky: sa.icky,
            mid: hdr.mid,
            returned_lifetime: returned,
            responder_lifetime,
            transform_altered: altered,
            replaces: q.replaces,
            peer_nat_oa,
            local: if sa.nat.udp_encap {
                sa.local
            } else {
                SocketAddr::new(sa.local.ip(), 0)
            },
            remote: if sa.nat.udp_encap {
                sa.remote
            } else {
                SocketAddr::new(sa.remote.ip(), 0)
            },
        };
        let commit = self.cfg.commit_bit || hdr.flags & flags::COMMIT != 0;
        let (l, r) = (sa.local, sa.remote);
        let retx = commit.then(|| self.new_retx(now, qm3.clone()));
        let q = &mut self.sas[i].quick[qi];
        q.nr = nr;
        q.iv = last3;
        q.qm2_seen = Some(msg.to_vec());
        q.qm3 = Some(qm3.clone());
        q.retx = retx;
        self.send(l, r, &qm3);
        if commit {
            self.sas[i].quick[qi].state = QmState::WaitConnected;
            self.sas[i].quick[qi].pending = Some(info);
        } else {
            self.sas[i].quick[qi].state = QmState::Done;
            self.install(info);
        }
    }

    /// CONNECTED (RFC 2408 §3.1, commit bit): a notify under the Quick Mode's message ID. The IV is
    /// the chain of the exchange; an implementation that treats it as a new Informational exchange
    /// would use hash(last phase-1 block | M-ID) instead; both are tried.
    fn on_connected(&mut self, i: usize, qi: usize, hdr: &Header, msg: &[u8]) {
        let sa = &self.sas[i];
        let Some(keys) = &sa.keys else { return };
        let h = sa.hash();
        let cipher = sa.cipher();
        let q = &sa.quick[qi];
        let fresh = kdf::phase2_iv(h, &sa.iv, hdr.mid, cipher_block_len(cipher));
        for iv in [q.iv.clone(), fresh] {
            let Ok((plain, _)) = open(cipher, &keys.enc_key, &iv, hdr, msg) else {
                continue;
            };
            let Ok((items, end)) = wire::parse_chain(hdr.next, &plain) else {
                continue;
            };
            let Some(hash) = items.first().filter(|p| p.kind == payload::HASH) else {
                continue;
            };
            let expect = h.prf(
                &keys.skeyid_a,
                &[&hdr.mid.to_be_bytes(), &plain[hash.end..end]],
            );
            if !kdf::ct_eq(&expect, &hash.body) {
                continue;
            }
            let connected = items.iter().any(|p| {
                p.kind == payload::NOTIFY
                    && Notify::parse(&p.body).is_ok_and(|n| n.message_type == notify::CONNECTED)
            });
            if connected {
                let q = &mut self.sas[i].quick[qi];
                q.state = QmState::Done;
                q.retx = None;
                if let Some(info) = q.pending.take() {
                    self.install(info);
                }
            }
            return;
        }
        self.stats.dropped += 1;
    }

    fn install(&mut self, info: ChildInfo) {
        self.children.push(ChildRec {
            inbound_spi: info.inbound_spi,
            outbound_spi: info.outbound_spi,
            icky: info.icky,
        });
        self.events
            .push_back(InitiatorEvent::ChildSaUp(Box::new(info)));
    }

    // -----------------------------------------------------------------------------------------
    // Informational exchanges (RFC 2408 §4.8, RFC 2409 §5.7)

    /// Sends `HDR*, HASH(1), <chain>` in a new Informational exchange under ISAKMP SA `i`.
    fn send_info(&mut self, i: usize, chain: &Chain) {
        let mid = self.random_u32();
        let sa = &self.sas[i];
        let Some(keys) = &sa.keys else { return };
        let h = sa.hash();
        // HASH(1) = prf(SKEYID_a, M-ID | N/D)
        let h1 = h.prf(&keys.skeyid_a, &[&mid.to_be_bytes(), &chain.bytes()]);
        let body = with_hash(&h1, chain);
        let iv = kdf::phase2_iv(h, &sa.iv, mid, cipher_block_len(sa.cipher()));
        let header = Header {
            icky: sa.icky,
            rcky: sa.rcky,
            next: 0,
            version: 0x10,
            exchange: exchange::INFORMATIONAL,
            flags: 0,
            mid,
            length: 0,
        };
        let (msg, _) = seal(
            sa.cipher(),
            &keys.enc_key,
            &iv,
            header,
            payload::HASH,
            &body,
        );
        let (l, r) = (sa.local, sa.remote);
        self.send(l, r, &msg);
    }

    fn on_informational(&mut self, i: usize, hdr: &Header, msg: &[u8]) {
        if hdr.flags & flags::ENCRYPTION == 0 {
            // Unprotected: only believable before the ISAKMP SA is up (RFC 2408 §5.? error
            // notifications during phase 1).
            let items = wire::parse_chain(hdr.next, msg.get(wire::HEADER_LEN..).unwrap_or(&[]))
                .map(|x| x.0)
                .unwrap_or_default();
            for p in &items {
                if p.kind != payload::NOTIFY {
                    continue;
                }
                let Ok(n) = Notify::parse(&p.body) else {
                    continue;
                };
                self.events.push_back(InitiatorEvent::Notify {
                    message_type: n.message_type,
                    protected: false,
                    data: n.data.clone(),
                });
                let st = self.sas[i].state;
                if st != P1State::Up && st != P1State::Dead && n.message_type < 16384 {
                    return self.fail_p1(i, FailReason::PeerNotify(n.message_type));
                }
            }
            return;
        }
        let sa = &self.sas[i];
        let Some(keys) = &sa.keys else {
            self.stats.dropped += 1;
            return;
        };
        let h = sa.hash();
        let cipher = sa.cipher();
        let iv = kdf::phase2_iv(h, &sa.iv, hdr.mid, cipher_block_len(cipher));
        let verified = open(cipher, &keys.enc_key, &iv, hdr, msg)
            .ok()
            .and_then(|(plain, _)| {
                let (items, end) = wire::parse_chain(hdr.next, &plain).ok()?;
                let hash = items.first().filter(|p| p.kind == payload::HASH)?;
                let expect = h.prf(
                    &keys.skeyid_a,
                    &[&hdr.mid.to_be_bytes(), &plain[hash.end..end]],
                );
                kdf::ct_eq(&expect, &hash.body).then(|| items[1..].to_vec())
            });
        let Some(items) = verified else {
            tracing::debug!("dropped an Informational that does not verify");
            self.stats.dropped += 1;
            return;
        };
        for p in items {
            match p.kind {
                payload::NOTIFY => {
                    if let Ok(n) = Notify::parse(&p.body) {
                        self.on_notify(i, n);
                    }
                }
                payload::DELETE => {
                    if let Ok(d) = Delete::parse(&p.body)
                        && self.on_delete(i, d)
                    {
                        // The ISAKMP SA itself is gone: nothing after it can be trusted.
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    fn on_notify(&mut self, i: usize, n: Notify) {
        let seq = n
            .data
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match (n.message_type, seq) {
            (notify::R_U_THERE, Some(seq)) => {
                let answered = self.cfg.answer_dpd;
                if answered {
                    let sa = &self.sas[i];
                    let mut spi = sa.icky.to_vec();
                    spi.extend_from_slice(&sa.rcky);
                    let ack = Notify {
                        doi: wire::DOI_IPSEC,
                        protocol: proto::ISAKMP,
                        spi,
                        message_type: notify::R_U_THERE_ACK,
                        data: seq.to_be_bytes().to_vec(),
                    };
                    let mut chain = Chain::new();
                    chain.push(payload::NOTIFY, ack.encode());
                    self.send_info(i, &chain);
                }
                self.events
                    .push_back(InitiatorEvent::DpdProbe { seq, answered });
            }
            (notify::R_U_THERE_ACK, Some(seq)) => {
                if self.sas[i].dpd_outstanding == Some(seq) {
                    self.sas[i].dpd_outstanding = None;
                    self.events.push_back(InitiatorEvent::DpdAck { seq });
                } else {
                    self.stats.dropped += 1;
                }
            }
            (t, _) => {
                if t < 16384 {
                    // An error: it ends the Quick Modes it names (by our SPI), or all pending ones.
                    let spi = (n.spi.len() == 4)
                        .then(|| u32::from_be_bytes([n.spi[0], n.spi[1], n.spi[2], n.spi[3]]));
                    let pending: Vec<usize> = self.sas[i]
                        .quick
                        .iter()
                        .enumerate()
                        .filter(|(_, q)| q.state == QmState::SentQm1)
                        .filter(|(_, q)| {
                            spi.is_none_or(|s| s == q.my_spi) || n.protocol != proto::IPSEC_ESP
                        })
                        .map(|(k, _)| k)
                        .collect();
                    for qi in pending {
                        self.fail_qm(i, qi, FailReason::PeerNotify(t));
                    }
                }
                self.events.push_back(InitiatorEvent::Notify {
                    message_type: t,
                    protected: true,
                    data: n.data,
                });
            }
        }
    }

    /// Returns whether ISAKMP SA `i` was removed.
    fn on_delete(&mut self, i: usize, d: Delete) -> bool {
        match d.protocol {
            proto::IPSEC_ESP | proto::IPSEC_AH => {
                for spi in d.spis {
                    let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                        continue;
                    };
                    let spi = u32::from_be_bytes(b);
                    // The sender names its own inbound SPI (our outbound); accept ours as well.
                    let by_sender = self.children.iter().position(|c| c.outbound_spi == spi);
                    let pos = match by_sender {
                        Some(p) => {
                            self.stats.deletes_by_sender_spi += 1;
                            Some(p)
                        }
                        None => {
                            let p = self.children.iter().position(|c| c.inbound_spi == spi);
                            if p.is_some() {
                                self.stats.deletes_by_our_spi += 1;
                            }
                            p
                        }
                    };
                    if let Some(p) = pos {
                        let c = self.children.remove(p);
                        self.events
                            .push_back(InitiatorEvent::Deleted(Deleted::Child {
                                inbound_spi: c.inbound_spi,
                                outbound_spi: c.outbound_spi,
                                by_peer: true,
                            }));
                    }
                }
            }
            proto::ISAKMP => {
                let sa = &self.sas[i];
                let mut me = sa.icky.to_vec();
                me.extend_from_slice(&sa.rcky);
                if d.spis.contains(&me) {
                    let (icky, rcky) = (sa.icky, sa.rcky);
                    self.sas.remove(i);
                    self.events
                        .push_back(InitiatorEvent::Deleted(Deleted::Phase1 {
                            icky,
                            rcky,
                            by_peer: true,
                        }));
                    return true;
                }
            }
            _ => {}
        }
        false
    }

    // -----------------------------------------------------------------------------------------
    // Input

    /// One IKE datagram from `remote` to our `local`, without the non-ESP marker.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let _ = local;
        self.stats.received += 1;
        let Some(hdr) = Header::parse(data) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(msg) = data.get(..usize::try_from(hdr.length).unwrap_or(usize::MAX)) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(i) = self.sas.iter().position(|s| s.icky == hdr.icky) else {
            self.stats.dropped += 1;
            return;
        };
        let st = self.sas[i].state;
        if st != P1State::SentMm1 && hdr.rcky != self.sas[i].rcky {
            self.stats.dropped += 1;
            return;
        }
        match (hdr.exchange, st) {
            (exchange::MAIN, P1State::SentMm5) if hdr.next == payload::FRAGMENT => {
                self.on_fragment(now, local, remote, i, &hdr, msg)
            }
            (exchange::INFORMATIONAL, _) => self.on_informational(i, &hdr, msg),
            (exchange::MAIN, P1State::SentMm1) if hdr.rcky != [0; 8] => {
                self.on_mm2(now, i, &hdr, msg)
            }
            (exchange::MAIN, P1State::SentMm3) => self.on_mm4(now, i, remote, &hdr, msg),
            (exchange::MAIN, P1State::SentMm5) => self.on_mm6(now, i, &hdr, msg),
            (exchange::MAIN, _) => self.stats.duplicates_ignored += 1,
            (exchange::QUICK, P1State::Up) => self.on_quick(now, i, &hdr, msg),
            _ => self.stats.dropped += 1,
        }
    }

    /// An IKE fragment of message 6: joined with the others, the whole message is handled as
    /// if it had come in one datagram.
    fn on_fragment(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        i: usize,
        hdr: &Header,
        msg: &[u8],
    ) {
        self.stats.fragments_received += 1;
        let body = msg.get(wire::HEADER_LEN..).unwrap_or(&[]);
        let joined = match wire::parse_chain(hdr.next, body) {
            Ok((items, _)) => match items.first() {
                Some(p) => self.sas[i].frags.add(&p.body),
                None => Err("no fragment payload".into()),
            },
            Err(e) => Err(e),
        };
        match joined {
            Ok(None) => {}
            Ok(Some(whole)) => match Header::parse(&whole) {
                Some(h)
                    if h.icky == hdr.icky && h.rcky == hdr.rcky && h.next != payload::FRAGMENT =>
                {
                    self.handle_datagram(now, local, remote, &whole);
                }
                _ => {
                    let why = "joined IKE fragments are no message of this SA".into();
                    self.fail_p1(i, FailReason::Malformed(why));
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "IKE fragment dropped");
                self.stats.dropped += 1;
            }
        }
    }

    /// Retransmissions and their limits.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut fails = Vec::new();
        let mut sends = Vec::new();
        for (i, sa) in self.sas.iter_mut().enumerate() {
            let (l, r) = (sa.local, sa.remote);
            if let Some(rt) = &mut sa.retx
                && now >= rt.at
            {
                if rt.tries_left == 0 {
                    fails.push((i, None));
                } else {
                    rt.tries_left -= 1;
                    rt.interval *= 2;
                    rt.at = now + rt.interval;
                    sends.push((l, r, rt.msg.clone()));
                    sends.extend(rt.more.iter().map(|m| (l, r, m.clone())));
                }
            }
            for (qi, q) in sa.quick.iter_mut().enumerate() {
                if let Some(rt) = &mut q.retx
                    && now >= rt.at
                {
                    if rt.tries_left == 0 {
                        fails.push((i, Some(qi)));
                    } else {
                        rt.tries_left -= 1;
                        rt.interval *= 2;
                        rt.at = now + rt.interval;
                        sends.push((l, r, rt.msg.clone()));
                    }
                }
            }
        }
        for (l, r, m) in sends {
            self.stats.retransmits += 1;
            self.send(l, r, &m);
        }
        for (i, qi) in fails {
            match qi {
                None => self.fail_p1(i, FailReason::Timeout),
                Some(qi) => self.fail_qm(i, qi, FailReason::Timeout),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Commands

    /// A new Quick Mode under the current ISAKMP SA; its ChildSaUp names the SA it replaces.
    pub fn rekey_child(&mut self, now: Instant) -> bool {
        let Some(i) = self.current_sa() else {
            return false;
        };
        let replaces = self.children.last().map(|c| c.inbound_spi);
        self.start_quick(now, i, replaces);
        true
    }

    /// A new Quick Mode under the current ISAKMP SA (an extra SA pair, not a rekey).
    pub fn new_child(&mut self, now: Instant) -> bool {
        let Some(i) = self.current_sa() else {
            return false;
        };
        self.start_quick(now, i, None);
        true
    }

    /// A whole new Main Mode; once up, a Delete of the old ISAKMP SA (the IPsec SAs stay).
    pub fn rekey_phase1(&mut self, now: Instant) -> bool {
        let Some(i) = self.current_sa() else {
            return false;
        };
        let old = self.sas[i].icky;
        self.begin_main_mode(now, Some(old), false, false);
        true
    }

    /// Informational Delete of the IPsec SA with this inbound (or outbound) SPI.
    pub fn delete_child(&mut self, spi: u32) -> bool {
        let Some(p) = self
            .children
            .iter()
            .position(|c| c.inbound_spi == spi)
            .or_else(|| self.children.iter().position(|c| c.outbound_spi == spi))
        else {
            return false;
        };
        let c = self.children.remove(p);
        let i = self
            .sas
            .iter()
            .position(|s| s.icky == c.icky && s.state == P1State::Up)
            .or_else(|| self.current_sa());
        if let Some(i) = i {
            let d = Delete {
                doi: wire::DOI_IPSEC,
                protocol: proto::IPSEC_ESP,
                spis: vec![c.inbound_spi.to_be_bytes().to_vec()],
            };
            let mut chain = Chain::new();
            chain.push(payload::DELETE, d.encode());
            self.send_info(i, &chain);
        }
        self.events
            .push_back(InitiatorEvent::Deleted(Deleted::Child {
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
                by_peer: false,
            }));
        true
    }

    /// Deletes every IPsec SA, then every ISAKMP SA.
    pub fn delete_all(&mut self) {
        let spis: Vec<u32> = self.children.iter().map(|c| c.inbound_spi).collect();
        for s in spis {
            self.delete_child(s);
        }
        while let Some(i) = self.sas.iter().position(|s| s.state == P1State::Up) {
            self.delete_isakmp_at(i);
        }
        self.sas.clear();
    }

    /// Deletes the current ISAKMP SA only (its IPsec SAs stay).
    pub fn delete_isakmp(&mut self) -> bool {
        let Some(i) = self.current_sa() else {
            return false;
        };
        self.delete_isakmp_at(i);
        true
    }

    fn delete_isakmp_at(&mut self, i: usize) {
        let (icky, rcky) = (self.sas[i].icky, self.sas[i].rcky);
        let mut spi = icky.to_vec();
        spi.extend_from_slice(&rcky);
        let d = Delete {
            doi: wire::DOI_IPSEC,
            protocol: proto::ISAKMP,
            spis: vec![spi],
        };
        let mut chain = Chain::new();
        chain.push(payload::DELETE, d.encode());
        self.send_info(i, &chain);
        self.sas.remove(i);
        self.events
            .push_back(InitiatorEvent::Deleted(Deleted::Phase1 {
                icky,
                rcky,
                by_peer: false,
            }));
    }

    /// Sends R-U-THERE (RFC 3706 §5) on the current ISAKMP SA; returns its sequence number.
    pub fn send_dpd(&mut self) -> Option<u32> {
        let i = self.current_sa()?;
        if self.sas[i].dpd_seq == 0 {
            self.sas[i].dpd_seq = self.rng.next_u32() & 0x7fff_ffff;
        }
        self.sas[i].dpd_seq = self.sas[i].dpd_seq.wrapping_add(1);
        let seq = self.sas[i].dpd_seq;
        self.sas[i].dpd_outstanding = Some(seq);
        let sa = &self.sas[i];
        let mut spi = sa.icky.to_vec();
        spi.extend_from_slice(&sa.rcky);
        let n = Notify {
            doi: wire::DOI_IPSEC,
            protocol: proto::ISAKMP,
            spi,
            message_type: notify::R_U_THERE,
            data: seq.to_be_bytes().to_vec(),
        };
        let mut chain = Chain::new();
        chain.push(payload::NOTIFY, n.encode());
        self.send_info(i, &chain);
        Some(seq)
    }

    /// Sends an arbitrary protected Informational (tests: a notify the server should ignore).
    pub fn send_informational(&mut self, chain: &Chain) -> bool {
        let Some(i) = self.current_sa() else {
            return false;
        };
        self.send_info(i, chain);
        true
    }

    /// Where IKE currently goes (after a float, the NAT-T ports).
    pub fn ike_addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.sas.last().map(|s| (s.local, s.remote))
    }
}

/// The ISAKMP message bytes that fit in one datagram to `remote` within an IP packet of 1280
/// bytes (strongSwan's fragment size), with the non-ESP marker on the NAT-T port.
fn fragment_room(remote: SocketAddr, natt: bool) -> usize {
    let ip = if remote.is_ipv4() { 20 } else { 40 };
    1280 - ip - 8 - if natt { 4 } else { 0 }
}

/// `msg` (header included) cut into IKE fragments (fragment ID 1, numbered from 1, the last
/// flagged) of at most `room` bytes each; empty when it fits as it is.
fn fragments(h: &Header, msg: &[u8], room: usize) -> Vec<Vec<u8>> {
    if msg.len() <= room {
        return Vec::new();
    }
    let per = room - wire::HEADER_LEN - 4 - 4;
    let count = msg.len().div_ceil(per);
    msg.chunks(per)
        .enumerate()
        .map(|(k, piece)| {
            let mut body = 1u16.to_be_bytes().to_vec();
            body.push(u8::try_from(k + 1).unwrap_or(u8::MAX));
            body.push(u8::from(k + 1 == count));
            body.extend_from_slice(piece);
            let mut chain = Chain::new();
            chain.push(payload::FRAGMENT, body);
            let header = Header {
                flags: 0,
                mid: 0,
                ..*h
            };
            wire::message(header, &chain)
        })
        .collect()
}

/// Certificate mode: message 6's CERT chained to our CA, IDir matching it and SIG_R over
/// `hash_r` by its key (RFC 2409 §5.1). Returns the certificate's subject.
fn check_server_signature(
    setup: &CertSetup,
    at: SystemTime,
    items: &[Payload],
    idir_b: &[u8],
    hash_r: &[u8],
) -> Result<String, FailReason> {
    let certs: Vec<&[u8]> = items
        .iter()
        .filter(|p| p.kind == payload::CERT)
        .filter_map(|p| match p.body.split_first() {
            Some((&cert_encoding::X509_SIG, der)) => Some(der),
            _ => None,
        })
        .collect();
    let Some((leaf, intermediates)) = certs.split_first() else {
        return Err(FailReason::BadCert(
            "message 6 has no X.509 CERT payload".into(),
        ));
    };
    let peer = setup
        .trust
        .verify_chain(leaf, intermediates, at)
        .map_err(|e| FailReason::BadCert(format!("server certificate: {e}")))?;
    let id = Id::parse(idir_b).map_err(FailReason::Malformed)?;
    if id.id_type == id_type::DER_ASN1_DN && id.data != peer.subject_der {
        return Err(FailReason::BadCert(format!(
            "IDir is not the subject of the server certificate ({})",
            peer.subject_dn
        )));
    }
    let Some(sig) = first_of(items, payload::SIG) else {
        return Err(FailReason::Malformed("message 6 lacks SIG".into()));
    };
    if !ca::verify_ike_rsa(&peer.public_key, hash_r, &sig.body) {
        return Err(FailReason::BadSignature);
    }
    Ok(peer.subject_dn)
}

fn check_p1_choice(sa: &Sa, offered: &[(Transform, P1Proposal)]) -> Result<P1Proposal, String> {
    if sa.doi != wire::DOI_IPSEC || sa.situation != wire::SIT_IDENTITY_ONLY {
        return Err(format!("SA DOI {} situation {}", sa.doi, sa.situation));
    }
    let [p] = sa.proposals.as_slice() else {
        return Err(format!(
            "{} proposals in message 2, expected 1",
            sa.proposals.len()
        ));
    };
    if p.protocol != proto::ISAKMP || p.number != 1 {
        return Err(format!("proposal #{} protocol {}", p.number, p.protocol));
    }
    let [t] = p.transforms.as_slice() else {
        return Err(format!(
            "{} transforms in message 2, expected 1",
            p.transforms.len()
        ));
    };
    // RFC 2409 §5: the responder returns one of our transforms; the lifetime too (a shorter one
    // would come in a notify).
    let got = sorted_attrs(&t.attrs, |_| false);
    for (ours, prop) in offered {
        if ours.id == t.id && sorted_attrs(&ours.attrs, |_| false) == got {
            if ours.number != t.number {
                return Err(format!(
                    "transform #{} returned as #{}",
                    ours.number, t.number
                ));
            }
            return Ok(*prop);
        }
    }
    let core = sorted_attrs(&t.attrs, is_life_attr_p1);
    if offered
        .iter()
        .any(|(o, _)| o.id == t.id && sorted_attrs(&o.attrs, is_life_attr_p1) == core)
    {
        return Err(format!(
            "returned transform #{} with altered lifetime: {:?}",
            t.number, t.attrs
        ));
    }
    Err(format!(
        "returned transform #{} {:?} is none of ours",
        t.number, t.attrs
    ))
}

type P2Choice = (esp::Suite, u32, LifetimeInfo, bool, u16);

fn check_p2_choice(sa: &Sa, offered: &[(Transform, esp::Suite)]) -> Result<P2Choice, String> {
    let [p] = sa.proposals.as_slice() else {
        return Err(format!(
            "{} proposals in QM2, expected 1",
            sa.proposals.len()
        ));
    };
    if p.protocol != proto::IPSEC_ESP {
        return Err(format!("QM2 proposal protocol {}", p.protocol));
    }
    let Ok(spi) = <[u8; 4]>::try_from(p.spi.as_slice()) else {
        return Err(format!("QM2 SPI of {} bytes", p.spi.len()));
    };
    let spi = u32::from_be_bytes(spi);
    let [t] = p.transforms.as_slice() else {
        return Err(format!(
            "{} transforms in QM2, expected 1",
            p.transforms.len()
        ));
    };
    let core = sorted_attrs(&t.attrs, is_life_attr_p2);
    for (ours, suite) in offered {
        if ours.id == t.id && sorted_attrs(&ours.attrs, is_life_attr_p2) == core {
            let altered = sorted_attrs(&ours.attrs, |_| false) != sorted_attrs(&t.attrs, |_| false);
            let lt = parse_lifetimes(&t.attrs, p2attr::LIFE_TYPE, p2attr::LIFE_DURATION);
            let encap = t
                .attr(p2attr::ENCAPSULATION_MODE)
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(0);
            return Ok((*suite, spi, lt, altered, encap));
        }
    }
    Err(format!(
        "QM2 transform #{} id {} {:?} is none of ours",
        t.number, t.id, t.attrs
    ))
}
