//! LCP options (RFC 1661 §6) for the [`fsm`](crate::fsm) automaton.
//!
//! We request MRU (when not 1500), Authentication-Protocol (server) and Magic-Number. From the
//! peer we accept MRU (128..=65535), ACCM, Magic-Number (with loop-back detection), PFC and
//! ACFC, Authentication-Protocol on the client side, and Configure-Reject everything else
//! (Callback, MRRU, Short Sequence, Endpoint Discriminator, Quality-Protocol, ...).

use rand_chacha::ChaCha20Rng;
use rand_core::Rng as _;

use crate::auth::AuthProtocol;
use crate::fsm::Negotiate;
use crate::packet::{self, Judgement, PacketError, Reply, be16, be32};

/// LCP option types.
pub mod option {
    /// Maximum-Receive-Unit.
    pub const MRU: u8 = 1;
    /// Async-Control-Character-Map.
    pub const ACCM: u8 = 2;
    /// Authentication-Protocol.
    pub const AUTH: u8 = 3;
    /// Quality-Protocol.
    pub const QUALITY: u8 = 4;
    /// Magic-Number.
    pub const MAGIC: u8 = 5;
    /// Protocol-Field-Compression.
    pub const PFC: u8 = 7;
    /// Address-and-Control-Field-Compression.
    pub const ACFC: u8 = 8;
    /// Callback (RFC 1570).
    pub const CALLBACK: u8 = 13;
    /// Multilink MRRU (RFC 1990).
    pub const MRRU: u8 = 17;
    /// Multilink Endpoint Discriminator (RFC 1990).
    pub const ENDPOINT_DISCRIMINATOR: u8 = 19;
}

/// The smallest peer MRU we accept; smaller values are Nak'ed with this one.
pub const MIN_MRU: u16 = 128;
/// The MRU both ends assume without negotiation.
pub const DEFAULT_MRU: u16 = 1500;

#[derive(Debug)]
pub(crate) enum LcpRole {
    /// We ask the peer to authenticate with `offer[current]`.
    Server {
        offer: Vec<AuthProtocol>,
        current: usize,
    },
    /// We accept these protocols when the peer asks us to authenticate.
    Client { accept: Vec<AuthProtocol> },
}

#[derive(Debug)]
pub(crate) struct Lcp {
    role: LcpRole,
    mru: u16,
    send_mru: bool,
    magic: u32,
    send_magic: bool,
    rng: ChaCha20Rng,
    /// The peer's MRU from its acked request (what we may send).
    pub(crate) peer_mru: u16,
    /// Server: the authentication protocol the peer acked. Client: the one we acked.
    pub(crate) auth: Option<AuthProtocol>,
    /// Consecutive Configure-Requests carrying our own magic number.
    pub(crate) looped: u32,
}

fn nonzero_u32(rng: &mut ChaCha20Rng, not: u32) -> u32 {
    loop {
        let v = rng.next_u32();
        if v != 0 && v != not {
            return v;
        }
    }
}

impl Lcp {
    pub(crate) fn new(role: LcpRole, mru: u16, mut rng: ChaCha20Rng) -> Self {
        let magic = nonzero_u32(&mut rng, 0);
        Self {
            role,
            mru,
            send_mru: mru != DEFAULT_MRU,
            magic,
            send_magic: true,
            rng,
            peer_mru: DEFAULT_MRU,
            auth: None,
            looped: 0,
        }
    }

    /// Our magic number (0 when not negotiated).
    pub(crate) fn magic(&self) -> u32 {
        if self.send_magic { self.magic } else { 0 }
    }

    /// Our MRU.
    pub(crate) fn mru(&self) -> u16 {
        if self.send_mru { self.mru } else { DEFAULT_MRU }
    }
}

impl Negotiate for Lcp {
    fn request(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.send_mru {
            out.extend(packet::option(option::MRU, &self.mru.to_be_bytes()));
        }
        if let LcpRole::Server { offer, current } = &self.role
            && let Some(p) = offer.get(*current)
        {
            out.extend(packet::option(option::AUTH, p.lcp_option_data()));
        }
        if self.send_magic {
            out.extend(packet::option(option::MAGIC, &self.magic.to_be_bytes()));
        }
        out
    }

    fn on_request(&mut self, options: &[u8]) -> Result<Reply, PacketError> {
        let ours = self.magic();
        // RFC 1661 §6.4: our own magic number coming back may mean a looped-back link, and then
        // the rest of the request is our own too; answer only the magic number.
        packet::validate_options(options)?;
        let own_magic = packet::options(options)
            .flatten()
            .find(|o| o.kind == option::MAGIC && ours != 0 && be32(o.data) == Some(ours));
        if let Some(o) = own_magic {
            self.looped += 1;
            let fresh = nonzero_u32(&mut self.rng, ours);
            return Ok(Reply::Nak {
                nak: packet::option(option::MAGIC, &fresh.to_be_bytes()),
                original: o.raw.to_vec(),
            });
        }
        self.looped = 0;
        let mut mru = DEFAULT_MRU;
        let mut auth = None;
        let rng = &mut self.rng;
        let role = &self.role;
        let reply = packet::judge_request(options, |o| match o.kind {
            option::MRU => match be16(o.data) {
                Some(v) if v >= MIN_MRU => {
                    mru = v;
                    Judgement::Ack
                }
                Some(_) => Judgement::Nak(packet::option(option::MRU, &MIN_MRU.to_be_bytes())),
                None => Judgement::Reject,
            },
            option::ACCM if o.data.len() == 4 => Judgement::Ack,
            option::AUTH => match role {
                LcpRole::Server { .. } => Judgement::Reject,
                LcpRole::Client { accept } => match AuthProtocol::from_lcp_option(o.data) {
                    Some(p) if accept.contains(&p) => {
                        auth = Some(p);
                        Judgement::Ack
                    }
                    _ => match accept.first() {
                        Some(p) => {
                            Judgement::Nak(packet::option(option::AUTH, p.lcp_option_data()))
                        }
                        None => Judgement::Reject,
                    },
                },
            },
            option::MAGIC => match be32(o.data) {
                Some(0) => {
                    let fresh = nonzero_u32(rng, ours);
                    Judgement::Nak(packet::option(option::MAGIC, &fresh.to_be_bytes()))
                }
                Some(_) => Judgement::Ack,
                None => Judgement::Reject,
            },
            option::PFC | option::ACFC if o.data.is_empty() => Judgement::Ack,
            _ => Judgement::Reject,
        })?;
        if reply == Reply::Ack {
            self.peer_mru = mru;
            if matches!(self.role, LcpRole::Client { .. }) {
                self.auth = auth;
            }
        }
        Ok(reply)
    }

    fn on_ack(&mut self) {
        if let LcpRole::Server { offer, current } = &self.role {
            self.auth = offer.get(*current).copied();
        }
    }

    fn on_nak(&mut self, options: &[u8]) -> Result<(), &'static str> {
        for o in packet::options(options).flatten() {
            match o.kind {
                option::MRU => {
                    if let Some(v) = be16(o.data).filter(|v| *v >= MIN_MRU) {
                        self.mru = v;
                    }
                }
                option::MAGIC => self.magic = nonzero_u32(&mut self.rng, self.magic),
                option::AUTH => {
                    if let LcpRole::Server { offer, current } = &mut self.role
                        && *current < offer.len()
                    {
                        let suggested = AuthProtocol::from_lcp_option(o.data);
                        match offer.iter().position(|p| Some(*p) == suggested) {
                            Some(i) => *current = i,
                            None => *current += 1,
                        }
                        if *current >= offer.len() {
                            return Err("LCP: no authentication protocol in common");
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_reject(&mut self, options: &[u8]) -> Result<(), &'static str> {
        for o in packet::options(options).flatten() {
            match o.kind {
                option::MRU => self.send_mru = false,
                option::MAGIC => self.send_magic = false,
                option::AUTH if matches!(self.role, LcpRole::Server { .. }) => {
                    return Err("LCP: peer refused to authenticate");
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn server() -> Lcp {
        Lcp::new(
            LcpRole::Server {
                offer: vec![AuthProtocol::MsChapV2, AuthProtocol::ChapMd5],
                current: 0,
            },
            1400,
            ChaCha20Rng::from_seed([1; 32]),
        )
    }

    #[test]
    fn server_request_and_auth_naks() {
        let mut l = server();
        let req = l.request();
        let kinds: Vec<u8> = packet::options(&req).flatten().map(|o| o.kind).collect();
        assert_eq!(kinds, [1, 3, 5]);
        // Peer suggests EAP (not offered): next preference.
        assert_eq!(l.on_nak(&packet::option(3, &[0xC2, 0x27])), Ok(()));
        l.on_ack();
        assert_eq!(l.auth, Some(AuthProtocol::ChapMd5));
        assert!(l.on_nak(&packet::option(3, &[0xC2, 0x27])).is_err());
        let mut l = server();
        assert!(
            l.on_reject(&packet::option(3, &[0xC2, 0x23, 0x81]))
                .is_err()
        );
    }

    #[test]
    fn client_naks_unacceptable_auth() {
        let mut l = Lcp::new(
            LcpRole::Client {
                accept: vec![AuthProtocol::MsChapV2],
            },
            1500,
            ChaCha20Rng::from_seed([2; 32]),
        );
        let reply = l.on_request(&packet::option(3, &[0xC0, 0x23])).unwrap();
        assert_eq!(
            reply,
            Reply::Nak {
                nak: packet::option(3, &[0xC2, 0x23, 0x81]),
                original: packet::option(3, &[0xC0, 0x23])
            }
        );
        assert_eq!(
            l.on_request(&packet::option(3, &[0xC2, 0x23, 0x81])),
            Ok(Reply::Ack)
        );
        assert_eq!(l.auth, Some(AuthProtocol::MsChapV2));
    }

    #[test]
    fn small_mru_is_naked_and_magic_loop_counted() {
        let mut l = server();
        let reply = l.on_request(&packet::option(1, &[0, 64])).unwrap();
        assert!(matches!(reply, Reply::Nak { .. }));
        let own = packet::option(5, &l.magic().to_be_bytes());
        assert!(matches!(l.on_request(&own), Ok(Reply::Nak { .. })));
        assert!(matches!(l.on_request(&own), Ok(Reply::Nak { .. })));
        assert_eq!(l.looped, 2);
        assert_eq!(
            l.on_request(&packet::option(5, &[1, 2, 3, 4])),
            Ok(Reply::Ack)
        );
        assert_eq!(l.looped, 0);
    }
}
