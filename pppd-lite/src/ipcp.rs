//! IPCP options (RFC 1332, RFC 1877) for the [`fsm`](crate::fsm) automaton.
//!
//! Server: requests IP-Address = its local address; Naks the peer's IP-Address until it equals
//! the assigned one, Naks DNS/NBNS (129-132) with the configured values and rejects the ones
//! not configured, rejects IP-Compression-Protocol (VJ) and the old IP-Addresses option.
//! Client: requests IP-Address 0.0.0.0 (and DNS when asked) and takes the server's Naks.

use std::net::Ipv4Addr;

use crate::fsm::Negotiate;
use crate::packet::{self, Judgement, PacketError, Reply, be32};

/// IPCP option types.
pub mod option {
    /// IP-Addresses (deprecated, RFC 1172).
    pub const IP_ADDRESSES: u8 = 1;
    /// IP-Compression-Protocol.
    pub const IP_COMPRESSION: u8 = 2;
    /// IP-Address.
    pub const IP_ADDRESS: u8 = 3;
    /// Primary DNS (RFC 1877).
    pub const PRIMARY_DNS: u8 = 129;
    /// Primary NBNS (RFC 1877).
    pub const PRIMARY_NBNS: u8 = 130;
    /// Secondary DNS (RFC 1877).
    pub const SECONDARY_DNS: u8 = 131;
    /// Secondary NBNS (RFC 1877).
    pub const SECONDARY_NBNS: u8 = 132;
}

const DNS: [u8; 2] = [option::PRIMARY_DNS, option::SECONDARY_DNS];

fn addr(data: &[u8]) -> Option<Ipv4Addr> {
    be32(data).map(Ipv4Addr::from)
}

fn addr_option(kind: u8, a: Ipv4Addr) -> Vec<u8> {
    packet::option(kind, &a.octets())
}

#[derive(Debug)]
pub(crate) enum Ipcp {
    Server {
        local: Ipv4Addr,
        send_local: bool,
        dns: [Option<Ipv4Addr>; 2],
        nbns: [Option<Ipv4Addr>; 2],
        /// The address the owner assigned to the peer.
        assigned: Option<Ipv4Addr>,
    },
    Client {
        /// Our address (0.0.0.0 until the server Naks one).
        address: Ipv4Addr,
        dns: [Option<Ipv4Addr>; 2],
        /// The server's address, from its acked request.
        server: Option<Ipv4Addr>,
    },
}

impl Negotiate for Ipcp {
    fn request(&mut self) -> Vec<u8> {
        match self {
            Ipcp::Server {
                local, send_local, ..
            } => {
                if *send_local {
                    addr_option(option::IP_ADDRESS, *local)
                } else {
                    Vec::new()
                }
            }
            Ipcp::Client { address, dns, .. } => {
                let mut out = addr_option(option::IP_ADDRESS, *address);
                for (kind, value) in DNS.iter().zip(dns.iter()) {
                    if let Some(v) = value {
                        out.extend(addr_option(*kind, *v));
                    }
                }
                out
            }
        }
    }

    fn on_request(&mut self, options: &[u8]) -> Result<Reply, PacketError> {
        match self {
            Ipcp::Server {
                dns,
                nbns,
                assigned,
                ..
            } => packet::judge_request(options, |o| {
                let configured = match o.kind {
                    option::IP_ADDRESS => *assigned,
                    option::PRIMARY_DNS => dns[0],
                    option::SECONDARY_DNS => dns[1],
                    option::PRIMARY_NBNS => nbns[0],
                    option::SECONDARY_NBNS => nbns[1],
                    _ => return Judgement::Reject,
                };
                match (configured, addr(o.data)) {
                    (Some(want), Some(got)) if want == got => Judgement::Ack,
                    (Some(want), Some(_)) => Judgement::Nak(addr_option(o.kind, want)),
                    _ => Judgement::Reject,
                }
            }),
            Ipcp::Client { server, .. } => {
                let mut seen = None;
                let reply = packet::judge_request(options, |o| match (o.kind, addr(o.data)) {
                    (option::IP_ADDRESS, Some(a)) if !a.is_unspecified() => {
                        seen = Some(a);
                        Judgement::Ack
                    }
                    _ => Judgement::Reject,
                })?;
                if reply == Reply::Ack {
                    *server = seen;
                }
                Ok(reply)
            }
        }
    }

    fn on_ack(&mut self) {}

    fn on_nak(&mut self, options: &[u8]) -> Result<(), &'static str> {
        if let Ipcp::Client { address, dns, .. } = self {
            for o in packet::options(options).flatten() {
                let Some(a) = addr(o.data) else { continue };
                match o.kind {
                    option::IP_ADDRESS => *address = a,
                    option::PRIMARY_DNS => dns[0] = Some(a),
                    option::SECONDARY_DNS => dns[1] = Some(a),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn on_reject(&mut self, options: &[u8]) -> Result<(), &'static str> {
        for o in packet::options(options).flatten() {
            match self {
                Ipcp::Server { send_local, .. } => {
                    if o.kind == option::IP_ADDRESS {
                        *send_local = false;
                    }
                }
                Ipcp::Client { dns, .. } => match o.kind {
                    option::IP_ADDRESS => return Err("IPCP: peer will not assign an address"),
                    option::PRIMARY_DNS => dns[0] = None,
                    option::SECONDARY_DNS => dns[1] = None,
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(assigned: Option<Ipv4Addr>) -> Ipcp {
        Ipcp::Server {
            local: Ipv4Addr::new(10, 0, 0, 1),
            send_local: true,
            dns: [Some(Ipv4Addr::new(9, 9, 9, 9)), None],
            nbns: [None, None],
            assigned,
        }
    }

    #[test]
    fn windows_style_request() {
        let mut s = server(Some(Ipv4Addr::new(10, 0, 0, 7)));
        let mut req = addr_option(3, Ipv4Addr::UNSPECIFIED);
        for k in [129, 130, 131, 132] {
            req.extend(addr_option(k, Ipv4Addr::UNSPECIFIED));
        }
        // NBNS and secondary DNS are not configured: rejected first.
        let mut rej = addr_option(130, Ipv4Addr::UNSPECIFIED);
        rej.extend(addr_option(131, Ipv4Addr::UNSPECIFIED));
        rej.extend(addr_option(132, Ipv4Addr::UNSPECIFIED));
        assert_eq!(s.on_request(&req), Ok(Reply::Reject(rej)));
        let mut req = addr_option(3, Ipv4Addr::UNSPECIFIED);
        req.extend(addr_option(129, Ipv4Addr::UNSPECIFIED));
        let Ok(Reply::Nak { nak, .. }) = s.on_request(&req) else {
            panic!("expected a Nak")
        };
        let mut want = addr_option(3, Ipv4Addr::new(10, 0, 0, 7));
        want.extend(addr_option(129, Ipv4Addr::new(9, 9, 9, 9)));
        assert_eq!(nak, want);
        assert_eq!(s.on_request(&want), Ok(Reply::Ack));
    }

    #[test]
    fn vj_and_old_addresses_rejected() {
        let mut s = server(Some(Ipv4Addr::new(10, 0, 0, 7)));
        let vj = packet::option(2, &[0x00, 0x2d, 0x0f, 0x01]);
        assert_eq!(s.on_request(&vj), Ok(Reply::Reject(vj.clone())));
        let old = packet::option(1, &[0; 8]);
        assert_eq!(s.on_request(&old), Ok(Reply::Reject(old.clone())));
    }

    #[test]
    fn client_takes_naks() {
        let mut c = Ipcp::Client {
            address: Ipv4Addr::UNSPECIFIED,
            dns: [Some(Ipv4Addr::UNSPECIFIED), Some(Ipv4Addr::UNSPECIFIED)],
            server: None,
        };
        let mut nak = addr_option(3, Ipv4Addr::new(10, 0, 0, 9));
        nak.extend(addr_option(129, Ipv4Addr::new(1, 1, 1, 1)));
        c.on_nak(&nak).unwrap();
        c.on_reject(&addr_option(131, Ipv4Addr::UNSPECIFIED))
            .unwrap();
        assert_eq!(c.request(), nak);
        assert!(c.on_reject(&addr_option(3, Ipv4Addr::UNSPECIFIED)).is_err());
    }
}
