//! Phase-1 (ISAKMP SA) and Quick Mode exchange state, and the protected-message helpers of
//! RFC 2409 Appendix B (CBC over the payloads with the IV chained from message to message).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::NatState;
use super::crypto::{self, DhPrivate, Phase1Keys};
use super::nat_t::PeerVendors;
use super::proposals::{Phase1Choice, Phase2Choice};
use crate::isakmp::{
    self, HEADER_LEN, Header, Message, Payload, PayloadChain, flags, payload_type,
};

pub(crate) type Cookies = [u8; 16];

/// Who a peer is, for INITIAL-CONTACT, rekeys and deletes: its ID payload and its address. Behind
/// NAT the port is part of it, since two clients behind one NAT (a carrier-grade NAT, say) can share
/// the public address and even their private ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct PeerKey {
    pub addr: Option<SocketAddr>,
    pub id: Vec<u8>,
}

impl PeerKey {
    pub fn new(remote: SocketAddr, behind_nat: bool, id: Vec<u8>) -> Self {
        let port = if behind_nat { remote.port() } else { 0 };
        Self {
            addr: Some(SocketAddr::new(remote.ip(), port)),
            id,
        }
    }
}

pub(crate) fn cookies(h: &Header) -> Cookies {
    let mut c = [0u8; 16];
    c[..8].copy_from_slice(&h.initiator_cookie);
    c[8..].copy_from_slice(&h.responder_cookie);
    c
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum P1State {
    /// Message 2 sent, waiting for message 3.
    SentMm2,
    /// Message 4 sent, waiting for message 5.
    SentMm4,
    /// Message 3 or 5 accepted; its cryptography runs as a [`super::Job`] (see
    /// [`Phase1::pending`]). Further Main Mode messages are dropped until it is done.
    Computing,
    Established,
}

/// A reply we may have to send again: on a duplicate request, or when the next message is late.
#[derive(Debug)]
pub(crate) struct LastReply {
    /// The request it answers, byte for byte.
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
    /// Further datagrams of the same reply (IKE fragments after the first); resent with it on
    /// a duplicate request.
    pub more: Vec<Vec<u8>>,
    /// When to resend if nothing comes (None: only on a duplicate request).
    pub resend_at: Option<Instant>,
    pub interval: Duration,
    pub tries_left: u32,
}

impl LastReply {
    /// The reply to send again if its timer has run out (doubling the interval), or None. After the
    /// last try the timer stops; the reply stays for duplicate requests.
    pub fn due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let at = self.resend_at?;
        if now < at {
            return None;
        }
        if self.tries_left == 0 {
            self.resend_at = None;
            return None;
        }
        self.tries_left -= 1;
        self.interval *= 2;
        self.resend_at = Some(now + self.interval);
        Some(self.reply.clone())
    }

    pub fn new(
        request: &[u8],
        reply: Vec<u8>,
        now: Instant,
        timer: Option<(Duration, u32)>,
    ) -> Self {
        let (interval, tries_left) = timer.unwrap_or((Duration::ZERO, 0));
        Self {
            request: request.to_vec(),
            reply,
            more: Vec::new(),
            resend_at: timer.map(|(i, _)| now + i),
            interval,
            tries_left,
        }
    }
}

/// Dead peer detection (RFC 3706) bookkeeping.
#[derive(Debug)]
pub(crate) struct Dpd {
    pub last_activity: Instant,
    pub next_seq: u32,
    /// Outstanding R-U-THERE: its sequence number and when it was first sent.
    pub pending: Option<(u32, Instant)>,
    pub next_probe: Option<Instant>,
}

/// One Quick Mode exchange in progress (keyed by message ID under its phase 1): message 2 is
/// sent and message 3 awaited.
pub(crate) struct QuickMode {
    /// CBC chain: the last ciphertext block of the latest message of this exchange.
    pub iv: Vec<u8>,
    pub choice: Phase2Choice,
    pub our_spi: u32,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub pfs_gxy: Option<Zeroizing<Vec<u8>>>,
    pub local_selector: super::Selector,
    pub remote_selector: super::Selector,
    pub peer_original: Option<std::net::IpAddr>,
    pub commit: bool,
    pub last: LastReply,
    /// When it is dropped if message 3 has not come: after our last retransmission of message
    /// 2 (a peer that lost the exchange starts another with a new message ID).
    pub expires: Instant,
}

/// An ISAKMP SA, from message 1 to its end.
pub(crate) struct Phase1 {
    pub id: u64,
    pub icky: [u8; 8],
    pub rcky: [u8; 8],
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Where message 1 came from (the key of the repeated-message-1 index).
    pub mm1_from: SocketAddr,
    pub state: P1State,
    pub created: Instant,
    /// Half-open deadline, then the end of the lifetime.
    pub expires: Instant,
    pub choice: Phase1Choice,
    pub sa_body: Vec<u8>,
    pub vendors: PeerVendors,
    pub nat: NatState,
    pub dh: Option<DhPrivate>,
    pub gxi: Vec<u8>,
    pub gxr: Vec<u8>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub keys: Option<Phase1Keys>,
    /// CBC chain during Main Mode; after message 6, the last block of phase 1 (RFC 2409
    /// Appendix B: the seed of every later exchange's IV).
    pub iv: Vec<u8>,
    pub peer_id: String,
    /// The peer's checked certificate (RSA-signature authentication).
    pub peer_cert: Option<Box<super::cert::PeerCert>>,
    /// The peer sent a CERTREQ (message 3 or 5).
    pub peer_certreq: bool,
    /// IKE fragments of a message being received (see [`super::fragment`]).
    pub frags: super::fragment::Reassembly,
    /// Set when phase 1 completes.
    pub peer: PeerKey,
    pub last: Option<LastReply>,
    pub quick: HashMap<u32, QuickMode>,
    /// Message IDs of finished Quick Mode and Informational exchanges (replays are dropped).
    pub done_mids: VecDeque<u32>,
    /// The last message of finished Quick Modes with the commit bit (QM3 and our CONNECTED), so
    /// that a repeated QM3 gets CONNECTED again.
    pub connected: VecDeque<(u32, LastReply)>,
    pub dpd: Dpd,
    /// While [`P1State::Computing`]: what the job's result completes.
    pub pending: Option<super::jobs::Pending>,
}

const DONE_MIDS: usize = 128;

impl Phase1 {
    pub fn keys(&self) -> Option<&Phase1Keys> {
        self.keys.as_ref()
    }

    pub fn remember_mid(&mut self, mid: u32) {
        if self.done_mids.len() >= DONE_MIDS {
            self.done_mids.pop_front();
        }
        self.done_mids.push_back(mid);
    }

    pub fn header(&self, exchange: u8, message_id: u32, encrypted: bool) -> Header {
        Header {
            initiator_cookie: self.icky,
            responder_cookie: self.rcky,
            next_payload: payload_type::NONE,
            version: 0x10,
            exchange,
            flags: if encrypted { flags::ENCRYPTION } else { 0 },
            message_id,
            length: 0,
        }
    }

    /// Encrypts `chain` under this SA's key with `iv`; returns the datagram and the last
    /// ciphertext block (the next IV of the chain).
    pub fn seal(
        &self,
        header: &Header,
        chain: &PayloadChain,
        iv: &[u8],
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let keys = self.keys.as_ref()?;
        seal(self.choice.cipher, &keys.enc_key, header, chain, iv)
    }

    /// Decrypts the body of a protected datagram; returns the plaintext body and the last
    /// ciphertext block.
    pub fn open(&self, datagram: &[u8], iv: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let keys = self.keys.as_ref()?;
        open(self.choice.cipher, &keys.enc_key, datagram, iv)
    }

    /// Opens a protected Quick Mode or Informational message whose first payload must be
    /// HASH(1) = prf(SKEYID_a, M-ID | the payloads after it) (RFC 2409 §5.5 and §5.7). Returns the
    /// plaintext body (parse it again with `Message::parse`) and the last ciphertext block.
    pub fn open_hashed(
        &self,
        header: &Header,
        data: &[u8],
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), HashedError> {
        let keys = self.keys.as_ref().ok_or(HashedError::Undecryptable)?;
        let (plain, last) = self.open(data, iv).ok_or(HashedError::Undecryptable)?;
        {
            let msg = Message::parse(*header, &plain).map_err(HashedError::Malformed)?;
            let first = msg.items.first().ok_or(HashedError::NoHash)?;
            let Payload::Hash(h) = first.payload else {
                return Err(HashedError::NoHash);
            };
            let rest = msg.payload_bytes.get(first.raw.len..).unwrap_or(&[]);
            let expect =
                crypto::info_hash(self.choice.prf, &keys.skeyid_a, header.message_id, rest);
            if !crypto::ct_eq(&expect, h) {
                return Err(HashedError::Mismatch);
            }
        }
        Ok((plain, last))
    }

    /// Prepends the non-ESP marker when the exchange runs on the NAT-T port.
    pub fn frame(&self, natt_port: u16, msg: Vec<u8>) -> Vec<u8> {
        frame(self.local, self.remote, natt_port, msg)
    }
}

/// Why a protected message with a leading HASH(1) was dropped.
#[derive(Debug)]
pub(crate) enum HashedError {
    /// Not a whole number of cipher blocks, or no keys yet.
    Undecryptable,
    /// It decrypted to something that is not a payload chain.
    Malformed(isakmp::DecodeError),
    NoHash,
    Mismatch,
}

pub(crate) fn frame(
    local: SocketAddr,
    remote: SocketAddr,
    natt_port: u16,
    msg: Vec<u8>,
) -> Vec<u8> {
    if local.port() == natt_port || remote.port() == natt_port {
        let mut v = Vec::with_capacity(msg.len() + 4);
        v.extend_from_slice(&crate::esp::NON_ESP_MARKER);
        v.extend_from_slice(&msg);
        v
    } else {
        msg
    }
}

/// Zero padding to the cipher block (RFC 2409 Appendix B; receivers follow the payload chain and
/// ignore what comes after it).
pub(crate) fn seal(
    cipher: crypto::CipherAlg,
    key: &[u8],
    header: &Header,
    chain: &PayloadChain,
    iv: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let block = cipher.block_len();
    let mut body = chain.bytes().to_vec();
    let padded = body.len().div_ceil(block).max(1) * block;
    body.resize(padded, 0);
    cipher.encrypt(key, iv, &mut body).ok()?;
    let last = body.get(body.len() - block..)?.to_vec();
    let mut h = *header;
    h.flags |= flags::ENCRYPTION;
    Some((isakmp::encode_message(&h, chain.first(), &body), last))
}

pub(crate) fn open(
    cipher: crypto::CipherAlg,
    key: &[u8],
    datagram: &[u8],
    iv: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let block = cipher.block_len();
    let body = datagram.get(HEADER_LEN..)?;
    if body.is_empty() || body.len() % block != 0 {
        return None;
    }
    let last = body.get(body.len() - block..)?.to_vec();
    let mut plain = body.to_vec();
    cipher.decrypt(key, iv, &mut plain).ok()?;
    Some((plain, last))
}

/// A payload chain whose first payload is a HASH over what follows (Quick Mode and
/// Informational, RFC 2409 §5.5 and §5.7).
pub(crate) fn with_hash(hash: &[u8], rest: &PayloadChain) -> PayloadChain {
    let mut chain = PayloadChain::new();
    chain.push(payload_type::HASH, hash);
    chain.append(rest);
    chain
}
