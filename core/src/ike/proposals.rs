//! Proposal policy and matching for phase 1 (ISAKMP SA) and phase 2 (ESP SA).
//!
//! The responder walks the initiator's transforms in the initiator's order and takes the first one
//! the policy allows (RFC 2409 §5: the responder picks one transform and returns it unchanged).
//! Every refused transform gets a plain-words reason, so that the log says what the client offered
//! and why it was not taken.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::esp;
use crate::ike::crypto::{CipherAlg, DhGroup, HashAlg, Prf};
use crate::isakmp::{
    AttrValue, AttributeSpec, Proposal, ProposalSpec, SaPayload, SaSpec, Transform, TransformSpec,
    auth_alg, auth_method, doi, encap_mode, life_type, p1attr, p2attr, protocol, situation,
    transform,
};

/// Phase-1 authentication methods (RFC 2409 Appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    PreSharedKey,
    RsaSignature,
}

impl AuthMethod {
    pub fn from_attr(v: u16) -> Option<Self> {
        match v {
            auth_method::PSK => Some(Self::PreSharedKey),
            auth_method::RSA_SIG => Some(Self::RsaSignature),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::PreSharedKey => "pre-shared key",
            Self::RsaSignature => "RSA signature",
        }
    }
    /// For one-word algorithm summaries.
    pub fn short(self) -> &'static str {
        match self {
            Self::PreSharedKey => "PSK",
            Self::RsaSignature => "RSA-SIG",
        }
    }
}

/// What phase 1 may negotiate.
#[derive(Debug, Clone)]
pub struct Phase1Policy {
    pub encryption: Vec<CipherAlg>,
    pub hash: Vec<HashAlg>,
    pub groups: Vec<DhGroup>,
    pub auth: Vec<AuthMethod>,
    /// The ISAKMP SA never lives longer than this, whatever the initiator proposes.
    pub max_lifetime: Duration,
}

impl Default for Phase1Policy {
    /// AES-CBC and SHA-1/SHA-2 with the groups the native clients offer. MODP-1024 stays in the
    /// default list because Android's L2TP client offers nothing else (CLIENTS.md §3.1); 3DES and
    /// MODP-768 are out unless an admin adds them.
    fn default() -> Self {
        Self {
            encryption: vec![
                CipherAlg::AesCbc { key_len: 32 },
                CipherAlg::AesCbc { key_len: 24 },
                CipherAlg::AesCbc { key_len: 16 },
            ],
            hash: vec![
                HashAlg::Sha1,
                HashAlg::Sha256,
                HashAlg::Sha384,
                HashAlg::Sha512,
            ],
            groups: vec![
                DhGroup::Ecp384,
                DhGroup::Ecp256,
                DhGroup::Modp4096,
                DhGroup::Modp3072,
                DhGroup::Modp2048,
                DhGroup::Modp1536,
                DhGroup::Modp1024,
            ],
            auth: vec![AuthMethod::PreSharedKey, AuthMethod::RsaSignature],
            max_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// The transform a responder agreed to in phase 1.
#[derive(Debug, Clone)]
pub struct Phase1Choice {
    pub proposal_number: u8,
    /// The chosen transform exactly as received, to be echoed in message 2.
    pub transform: TransformSpec,
    pub cipher: CipherAlg,
    pub hash: HashAlg,
    pub prf: Prf,
    pub group: DhGroup,
    pub auth: AuthMethod,
    /// Effective lifetime: the initiator's, capped by policy.
    pub lifetime: Duration,
    pub lifetime_kb: Option<u64>,
}

impl Phase1Choice {
    /// The SA payload body of message 2: the chosen proposal with the single chosen transform.
    pub fn reply_sa(&self, doi_value: u32, situation_value: u32) -> SaSpec {
        SaSpec {
            doi: doi_value,
            situation: situation_value,
            proposals: vec![ProposalSpec {
                number: self.proposal_number,
                protocol: protocol::ISAKMP,
                spi: Vec::new(),
                transforms: vec![self.transform.clone()],
            }],
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.cipher.name(),
            self.hash.name(),
            self.group.name(),
            self.auth.short()
        )
    }
}

/// Why nothing was chosen: one line per refused transform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub reasons: Vec<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reasons.is_empty() {
            return f.write_str("no proposal offered");
        }
        f.write_str(&self.reasons.join("; "))
    }
}

fn check_sa_header(sa: &SaPayload<'_>, refusal: &mut Refusal) -> bool {
    if sa.doi != doi::IPSEC {
        refusal
            .reasons
            .push(format!("DOI {} is not the IPsec DOI", sa.doi));
        return false;
    }
    if sa.situation != situation::IDENTITY_ONLY {
        refusal.reasons.push(format!(
            "situation {:#x} is not SIT_IDENTITY_ONLY",
            sa.situation
        ));
        return false;
    }
    true
}

/// Reads life type/duration pairs (RFC 2409 Appendix A: a duration applies to the type before it).
#[derive(Default)]
struct Lifetimes {
    seconds: Option<u64>,
    kilobytes: Option<u64>,
    pending: Option<u16>,
}

impl Lifetimes {
    fn life_type(&mut self, v: u16) -> Result<(), String> {
        match v {
            life_type::SECONDS | life_type::KILOBYTES => {
                self.pending = Some(v);
                Ok(())
            }
            other => Err(format!("unknown life type {other}")),
        }
    }
    fn duration(&mut self, value: &AttrValue<'_>) -> Result<(), String> {
        let d = value
            .as_u64()
            .ok_or_else(|| "life duration longer than 8 bytes".to_string())?;
        match self.pending.take() {
            Some(life_type::SECONDS) => self.seconds = Some(d),
            Some(life_type::KILOBYTES) => self.kilobytes = Some(d),
            _ => return Err("life duration without a life type before it".into()),
        }
        Ok(())
    }
}

fn basic(value: &AttrValue<'_>, what: &str) -> Result<u16, String> {
    match value {
        AttrValue::Basic(v) => Ok(*v),
        AttrValue::Variable(b) => match value.as_u64() {
            Some(v) if v <= u64::from(u16::MAX) => Ok(v as u16),
            _ => Err(format!("{what} attribute has a {}-byte value", b.len())),
        },
    }
}

struct P1Attrs {
    enc: Option<u16>,
    key_len: Option<u16>,
    hash: Option<u16>,
    auth: Option<u16>,
    group: Option<u16>,
    prf: Option<u16>,
    life: Lifetimes,
}

fn phase1_attrs(t: &Transform<'_>) -> Result<P1Attrs, String> {
    let mut a = P1Attrs {
        enc: None,
        key_len: None,
        hash: None,
        auth: None,
        group: None,
        prf: None,
        life: Lifetimes::default(),
    };
    for attr in &t.attributes {
        match attr.kind {
            p1attr::ENCRYPTION => a.enc = Some(basic(&attr.value, "encryption")?),
            p1attr::HASH => a.hash = Some(basic(&attr.value, "hash")?),
            p1attr::AUTH_METHOD => a.auth = Some(basic(&attr.value, "authentication")?),
            p1attr::GROUP => a.group = Some(basic(&attr.value, "group")?),
            p1attr::KEY_LENGTH => a.key_len = Some(basic(&attr.value, "key length")?),
            p1attr::PRF => a.prf = Some(basic(&attr.value, "PRF")?),
            p1attr::LIFE_TYPE => a.life.life_type(basic(&attr.value, "life type")?)?,
            p1attr::LIFE_DURATION => a.life.duration(&attr.value)?,
            p1attr::GROUP_TYPE => {
                return Err("private Diffie-Hellman group definitions are not supported".into());
            }
            other => return Err(format!("unsupported attribute type {other}")),
        }
    }
    Ok(a)
}

fn p1_transform(
    t: &Transform<'_>,
    policy: &Phase1Policy,
) -> Result<(CipherAlg, HashAlg, DhGroup, AuthMethod, Lifetimes), String> {
    if t.id != transform::KEY_IKE {
        return Err(format!("transform id {} is not KEY_IKE", t.id));
    }
    let a = phase1_attrs(t)?;
    let enc = a.enc.ok_or("no encryption algorithm")?;
    let cipher = CipherAlg::from_attrs(enc, a.key_len).ok_or_else(|| match a.key_len {
        Some(k) => format!("encryption algorithm {enc} with key length {k} is not supported"),
        None => format!("encryption algorithm {enc} is not supported"),
    })?;
    let hash_v = a.hash.ok_or("no hash algorithm")?;
    let hash = HashAlg::from_attr(hash_v)
        .ok_or_else(|| format!("hash algorithm {hash_v} is not supported"))?;
    if let Some(prf) = a.prf {
        return Err(format!(
            "PRF attribute {prf} is not supported (HMAC of the hash is used)"
        ));
    }
    let group_v = a.group.ok_or("no Diffie-Hellman group")?;
    let group = DhGroup::from_id(group_v)
        .ok_or_else(|| format!("Diffie-Hellman group {group_v} is not supported"))?;
    let auth_v = a.auth.ok_or("no authentication method")?;
    let auth = AuthMethod::from_attr(auth_v)
        .ok_or_else(|| format!("authentication method {auth_v} is not supported"))?;
    if !policy.encryption.contains(&cipher) {
        return Err(format!("{} is not allowed by policy", cipher.name()));
    }
    if !policy.hash.contains(&hash) {
        return Err(format!("{} is not allowed by policy", hash.name()));
    }
    if !policy.groups.contains(&group) {
        return Err(format!("{} is not allowed by policy", group.name()));
    }
    if !policy.auth.contains(&auth) {
        return Err(format!("{} authentication is not enabled", auth.name()));
    }
    Ok((cipher, hash, group, auth, a.life))
}

fn describe_transform(t: &Transform<'_>) -> String {
    let mut parts = Vec::new();
    for attr in &t.attributes {
        let v = attr
            .value
            .as_u64()
            .map_or("?".to_string(), |v| v.to_string());
        parts.push(format!("{}={v}", attr.kind));
    }
    format!("#{} [{}]", t.number, parts.join(" "))
}

/// Chooses the phase-1 transform. Only the first proposal with protocol ISAKMP is used (RFC 2409
/// §5: phase 1 carries one proposal).
pub fn choose_phase1(sa: &SaPayload<'_>, policy: &Phase1Policy) -> Result<Phase1Choice, Refusal> {
    let mut refusal = Refusal::default();
    if !check_sa_header(sa, &mut refusal) {
        return Err(refusal);
    }
    for p in &sa.proposals {
        if p.protocol != protocol::ISAKMP {
            refusal.reasons.push(format!(
                "proposal #{} protocol {} is not ISAKMP",
                p.number, p.protocol
            ));
            continue;
        }
        for t in &p.transforms {
            match p1_transform(t, policy) {
                Ok((cipher, hash, group, auth, life)) => {
                    // A lifetime of 0 (strongSwan with rekey_time and reauth_time 0: "no
                    // limit") is taken as the longest our policy allows, not as "expire now".
                    let offered = match life.seconds {
                        Some(0) => policy.max_lifetime,
                        Some(s) => Duration::from_secs(s),
                        None => Duration::from_secs(DEFAULT_LIFETIME_SECS),
                    };
                    let lifetime = offered.min(policy.max_lifetime);
                    return Ok(Phase1Choice {
                        proposal_number: p.number,
                        transform: TransformSpec::from(t),
                        cipher,
                        hash,
                        prf: Prf(hash),
                        group,
                        auth,
                        lifetime,
                        lifetime_kb: life.kilobytes,
                    });
                }
                Err(why) => refusal
                    .reasons
                    .push(format!("transform {}: {why}", describe_transform(t))),
            }
        }
    }
    Err(refusal)
}

/// RFC 2407 §4.5: the default SA lifetime when none is proposed.
pub const DEFAULT_LIFETIME_SECS: u64 = 28800;

/// What phase 2 (Quick Mode) may negotiate.
#[derive(Debug, Clone)]
pub struct Phase2Policy {
    pub encryption: Vec<esp::Encryption>,
    pub integrity: Vec<esp::Integrity>,
    /// Groups allowed for PFS (a KE payload in Quick Mode).
    pub pfs_groups: Vec<DhGroup>,
    pub require_pfs: bool,
    pub max_lifetime: Duration,
    /// None: no kilobyte limit of ours.
    pub max_lifetime_kb: Option<u64>,
    /// Take HMAC-SHA2-256 with 96-bit truncation (the Android 6/7 bug) instead of RFC 4868's 128.
    pub sha256_96: bool,
    /// Local networks that tunnel-mode clients may reach; empty refuses tunnel mode.
    pub tunnel_local: Vec<(IpAddr, u8)>,
    /// Our L2TP port for transport-mode selectors.
    pub l2tp_port: u16,
}

impl Default for Phase2Policy {
    fn default() -> Self {
        Self {
            encryption: vec![
                esp::Encryption::AesGcm16 { key_len: 32 },
                esp::Encryption::AesGcm16 { key_len: 16 },
                esp::Encryption::AesCbc { key_len: 32 },
                esp::Encryption::AesCbc { key_len: 16 },
            ],
            integrity: vec![
                esp::Integrity::HmacSha1_96,
                esp::Integrity::HmacSha256_128,
                esp::Integrity::HmacSha384_192,
                esp::Integrity::HmacSha512_256,
            ],
            pfs_groups: Phase1Policy::default().groups,
            require_pfs: false,
            max_lifetime: Duration::from_secs(8 * 3600),
            max_lifetime_kb: None,
            sha256_96: false,
            tunnel_local: Vec::new(),
            l2tp_port: 1701,
        }
    }
}

/// Encapsulation mode asked for in Quick Mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    Tunnel,
    Transport,
    UdpTunnel,
    UdpTransport,
}

impl Encapsulation {
    pub fn from_attr(v: u16) -> Option<Self> {
        match v {
            encap_mode::TUNNEL => Some(Self::Tunnel),
            encap_mode::TRANSPORT => Some(Self::Transport),
            encap_mode::UDP_TUNNEL | encap_mode::UDP_TUNNEL_DRAFT => Some(Self::UdpTunnel),
            encap_mode::UDP_TRANSPORT | encap_mode::UDP_TRANSPORT_DRAFT => Some(Self::UdpTransport),
            _ => None,
        }
    }
    pub fn is_tunnel(self) -> bool {
        matches!(self, Self::Tunnel | Self::UdpTunnel)
    }
    pub fn is_udp(self) -> bool {
        matches!(self, Self::UdpTunnel | Self::UdpTransport)
    }
}

/// The ESP transform a responder agreed to in Quick Mode.
#[derive(Debug, Clone)]
pub struct Phase2Choice {
    pub proposal_number: u8,
    /// The initiator's SPI (what we put on outbound packets).
    pub peer_spi: u32,
    pub transform: TransformSpec,
    pub suite: esp::Suite,
    pub encapsulation: Encapsulation,
    /// The raw encapsulation-mode value, to tell RFC from draft numbering.
    pub encap_value: u16,
    pub pfs: Option<DhGroup>,
    pub offered_seconds: Option<u64>,
    pub offered_kb: Option<u64>,
    /// Our lifetime (the initiator's, capped by policy).
    pub lifetime: Duration,
    pub lifetime_kb: Option<u64>,
    /// True when we shortened a lifetime and must say so with RESPONDER-LIFETIME.
    pub shortened: bool,
}

impl Phase2Choice {
    pub fn describe(&self) -> String {
        let mut s = format!("{}", self.suite);
        s.push_str(match self.encapsulation {
            Encapsulation::Transport => " transport",
            Encapsulation::Tunnel => " tunnel",
            Encapsulation::UdpTransport => " transport UDP-encap",
            Encapsulation::UdpTunnel => " tunnel UDP-encap",
        });
        if let Some(g) = self.pfs {
            s.push_str(&format!(" PFS {}", g.name()));
        }
        s
    }

    /// The SA payload of Quick Mode message 2: the chosen proposal with our SPI and the chosen
    /// transform unchanged.
    pub fn reply_sa(&self, our_spi: u32) -> SaSpec {
        SaSpec {
            doi: doi::IPSEC,
            situation: situation::IDENTITY_ONLY,
            proposals: vec![ProposalSpec {
                number: self.proposal_number,
                protocol: protocol::IPSEC_ESP,
                spi: our_spi.to_be_bytes().to_vec(),
                transforms: vec![self.transform.clone()],
            }],
        }
    }

    /// Attributes for a RESPONDER-LIFETIME notify (RFC 2407 §4.6.3.1).
    pub fn responder_lifetime_attrs(&self) -> Vec<AttributeSpec> {
        let mut v = vec![
            AttributeSpec::basic(p2attr::SA_LIFE_TYPE, life_type::SECONDS),
            AttributeSpec::number(p2attr::SA_LIFE_DURATION, self.lifetime.as_secs()),
        ];
        if let Some(kb) = self.lifetime_kb {
            v.push(AttributeSpec::basic(
                p2attr::SA_LIFE_TYPE,
                life_type::KILOBYTES,
            ));
            v.push(AttributeSpec::number(p2attr::SA_LIFE_DURATION, kb));
        }
        v
    }
}

fn esp_encryption(t: &Transform<'_>, key_len_bits: Option<u16>) -> Result<esp::Encryption, String> {
    let bits = |default: Option<u16>| -> Result<usize, String> {
        match key_len_bits.or(default) {
            Some(b @ (128 | 192 | 256)) => Ok(usize::from(b) / 8),
            Some(b) => Err(format!("key length {b} is not supported")),
            None => Err("AES without a key length".into()),
        }
    };
    match t.id {
        transform::AES_CBC => Ok(esp::Encryption::AesCbc {
            key_len: bits(None)?,
        }),
        transform::AES_GCM_16 => Ok(esp::Encryption::AesGcm16 {
            key_len: bits(None)?,
        }),
        transform::TRIPLE_DES => Ok(esp::Encryption::TripleDesCbc),
        transform::NULL => Ok(esp::Encryption::Null),
        other => Err(format!("ESP transform id {other} is not supported")),
    }
}

fn esp_integrity(v: Option<u16>, gcm: bool, sha256_96: bool) -> Result<esp::Integrity, String> {
    match (v, gcm) {
        (None, true) => Ok(esp::Integrity::None),
        (Some(_), true) => Err("AES-GCM with a separate authentication algorithm".into()),
        (None, false) => {
            Err("no authentication algorithm (ESP without integrity is refused)".into())
        }
        (Some(auth_alg::HMAC_SHA1), false) => Ok(esp::Integrity::HmacSha1_96),
        (Some(auth_alg::HMAC_SHA2_256), false) if sha256_96 => Ok(esp::Integrity::HmacSha256_96),
        (Some(auth_alg::HMAC_SHA2_256), false) => Ok(esp::Integrity::HmacSha256_128),
        (Some(auth_alg::HMAC_SHA2_384), false) => Ok(esp::Integrity::HmacSha384_192),
        (Some(auth_alg::HMAC_SHA2_512), false) => Ok(esp::Integrity::HmacSha512_256),
        (Some(other), false) => Err(format!("authentication algorithm {other} is not supported")),
    }
}

struct P2Candidate {
    choice: Phase2Choice,
}

fn p2_transform(
    p: &Proposal<'_>,
    t: &Transform<'_>,
    policy: &Phase2Policy,
    ke_present: bool,
    peer_spi: u32,
) -> Result<P2Candidate, String> {
    let mut life = Lifetimes::default();
    let mut encap = None;
    let mut auth = None;
    let mut key_len = None;
    let mut group = None;
    for attr in &t.attributes {
        match attr.kind {
            p2attr::SA_LIFE_TYPE => life.life_type(basic(&attr.value, "life type")?)?,
            p2attr::SA_LIFE_DURATION => life.duration(&attr.value)?,
            p2attr::GROUP => group = Some(basic(&attr.value, "group")?),
            p2attr::ENCAPSULATION_MODE => encap = Some(basic(&attr.value, "encapsulation mode")?),
            p2attr::AUTH_ALGORITHM => auth = Some(basic(&attr.value, "authentication")?),
            p2attr::KEY_LENGTH => key_len = Some(basic(&attr.value, "key length")?),
            other => return Err(format!("unsupported attribute type {other}")),
        }
    }
    let encryption = esp_encryption(t, key_len)?;
    let gcm = matches!(encryption, esp::Encryption::AesGcm16 { .. });
    let integrity = esp_integrity(auth, gcm, policy.sha256_96)?;
    if !policy.encryption.contains(&encryption) {
        return Err(format!("{encryption} is not allowed by policy"));
    }
    if integrity != esp::Integrity::None
        && !policy.integrity.iter().any(|i| same_mac(*i, integrity))
    {
        return Err(format!("{integrity} is not allowed by policy"));
    }
    let encap_value = encap.unwrap_or(encap_mode::TUNNEL);
    let encapsulation = Encapsulation::from_attr(encap_value)
        .ok_or_else(|| format!("encapsulation mode {encap_value} is not supported"))?;
    let pfs = match (group, ke_present) {
        (None, false) if policy.require_pfs => return Err("PFS is required by policy".into()),
        (None, false) => None,
        (Some(g), true) => {
            let dh =
                DhGroup::from_id(g).ok_or_else(|| format!("PFS group {g} is not supported"))?;
            if !policy.pfs_groups.contains(&dh) {
                return Err(format!("PFS group {} is not allowed by policy", dh.name()));
            }
            Some(dh)
        }
        (Some(g), false) => return Err(format!("PFS group {g} but no KE payload")),
        (None, true) => return Err("KE payload but no PFS group attribute".into()),
    };
    // RFC 2407 §4.5: an SA without a lifetime attribute lives 28800 seconds.
    let offered = Duration::from_secs(life.seconds.unwrap_or(DEFAULT_LIFETIME_SECS));
    let lifetime = offered.min(policy.max_lifetime);
    let lifetime_kb = match (life.kilobytes, policy.max_lifetime_kb) {
        (Some(o), Some(m)) => Some(o.min(m)),
        (o, m) => o.or(m),
    };
    let shortened = lifetime < offered || lifetime_kb != life.kilobytes;
    Ok(P2Candidate {
        choice: Phase2Choice {
            proposal_number: p.number,
            peer_spi,
            transform: TransformSpec::from(t),
            suite: esp::Suite {
                encryption,
                integrity,
            },
            encapsulation,
            encap_value,
            pfs,
            offered_seconds: life.seconds,
            offered_kb: life.kilobytes,
            lifetime,
            lifetime_kb,
            shortened,
        },
    })
}

/// HMAC-SHA2-256 with either truncation counts as the same algorithm for policy purposes.
fn same_mac(a: esp::Integrity, b: esp::Integrity) -> bool {
    use esp::Integrity::*;
    let norm = |i| match i {
        HmacSha256_96 => HmacSha256_128,
        x => x,
    };
    norm(a) == norm(b)
}

/// Chooses the ESP proposal of a Quick Mode SA. Proposals that bundle several protocols under one
/// proposal number (AH+ESP, IPComp) are refused; the rest are taken in the initiator's order, except
/// that HMAC-SHA1 is preferred over HMAC-SHA2-256 when both are acceptable (Android 6/7 truncate
/// SHA2-256 to 96 bits and list it first: CLIENTS.md §5.13).
pub fn choose_phase2(
    sa: &SaPayload<'_>,
    policy: &Phase2Policy,
    ke_present: bool,
) -> Result<Phase2Choice, Refusal> {
    let mut refusal = Refusal::default();
    if !check_sa_header(sa, &mut refusal) {
        return Err(refusal);
    }
    let mut candidates: Vec<P2Candidate> = Vec::new();
    for p in &sa.proposals {
        let bundled = sa.proposals.iter().filter(|q| q.number == p.number).count() > 1;
        if bundled {
            refusal.reasons.push(format!(
                "proposal #{} bundles several protocols (AH/IPComp with ESP is not supported)",
                p.number
            ));
            continue;
        }
        if p.protocol != protocol::IPSEC_ESP {
            refusal.reasons.push(format!(
                "proposal #{} protocol {} is not ESP",
                p.number, p.protocol
            ));
            continue;
        }
        let peer_spi = match <[u8; 4]>::try_from(p.spi) {
            Ok(b) => u32::from_be_bytes(b),
            Err(_) => {
                refusal.reasons.push(format!(
                    "proposal #{} has a {}-byte SPI",
                    p.number,
                    p.spi.len()
                ));
                continue;
            }
        };
        if peer_spi < 256 {
            refusal.reasons.push(format!(
                "proposal #{} has reserved SPI {peer_spi}",
                p.number
            ));
            continue;
        }
        for t in &p.transforms {
            match p2_transform(p, t, policy, ke_present, peer_spi) {
                Ok(c) => candidates.push(c),
                Err(why) => refusal.reasons.push(format!(
                    "proposal #{} transform {}: {why}",
                    p.number,
                    describe_transform(t)
                )),
            }
        }
    }
    let first_sha1 = candidates
        .iter()
        .position(|c| c.choice.suite.integrity == esp::Integrity::HmacSha1_96);
    let pick = match candidates.first() {
        None => return Err(refusal),
        Some(c) if same_mac(c.choice.suite.integrity, esp::Integrity::HmacSha256_128) => {
            first_sha1.unwrap_or(0)
        }
        Some(_) => 0,
    };
    Ok(candidates.swap_remove(pick).choice)
}

#[cfg(test)]
mod tests;

impl fmt::Display for esp::Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            esp::Encryption::AesCbc { key_len } => write!(f, "AES-CBC-{}", key_len * 8),
            esp::Encryption::AesGcm16 { key_len } => write!(f, "AES-GCM-16-{}", key_len * 8),
            esp::Encryption::TripleDesCbc => f.write_str("3DES-CBC"),
            esp::Encryption::Null => f.write_str("NULL"),
        }
    }
}

impl fmt::Display for esp::Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            esp::Integrity::None => "none",
            esp::Integrity::HmacSha1_96 => "HMAC-SHA1-96",
            esp::Integrity::HmacSha256_128 => "HMAC-SHA2-256-128",
            esp::Integrity::HmacSha256_96 => "HMAC-SHA2-256-96",
            esp::Integrity::HmacSha384_192 => "HMAC-SHA2-384-192",
            esp::Integrity::HmacSha512_256 => "HMAC-SHA2-512-256",
        })
    }
}

impl fmt::Display for esp::Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.integrity {
            esp::Integrity::None => write!(f, "{}", self.encryption),
            i => write!(f, "{}/{}", self.encryption, i),
        }
    }
}
