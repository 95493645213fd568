//! IPV6CP options (RFC 5072 §4): Interface-Identifier only; IPv6-Compression-Protocol and
//! everything else is rejected.

use rand_chacha::ChaCha20Rng;
use rand_core::Rng as _;

use crate::fsm::Negotiate;
use crate::packet::{self, Judgement, PacketError, Reply};

/// Interface-Identifier option type.
pub const INTERFACE_IDENTIFIER: u8 = 1;

#[derive(Debug)]
pub(crate) struct Ipv6cp {
    rng: ChaCha20Rng,
    pub(crate) ours: [u8; 8],
    send: bool,
    pub(crate) peer: Option<[u8; 8]>,
}

fn fresh(rng: &mut ChaCha20Rng, avoid: &[[u8; 8]]) -> [u8; 8] {
    loop {
        let mut id = [0u8; 8];
        rng.fill_bytes(&mut id);
        if id != [0; 8] && !avoid.contains(&id) {
            return id;
        }
    }
}

impl Ipv6cp {
    pub(crate) fn new(mut rng: ChaCha20Rng) -> Self {
        let ours = fresh(&mut rng, &[]);
        Self {
            rng,
            ours,
            send: true,
            peer: None,
        }
    }
}

impl Negotiate for Ipv6cp {
    fn request(&mut self) -> Vec<u8> {
        if self.send {
            packet::option(INTERFACE_IDENTIFIER, &self.ours)
        } else {
            Vec::new()
        }
    }

    fn on_request(&mut self, options: &[u8]) -> Result<Reply, PacketError> {
        let mut seen = None;
        let ours = self.ours;
        let rng = &mut self.rng;
        let reply = packet::judge_request(options, |o| {
            match (o.kind, <[u8; 8]>::try_from(o.data)) {
                (INTERFACE_IDENTIFIER, Ok(id)) if id != [0; 8] && id != ours => {
                    seen = Some(id);
                    Judgement::Ack
                }
                (INTERFACE_IDENTIFIER, Ok(id)) => {
                    // Zero or a collision with ours (RFC 5072 §4.1): suggest another.
                    let suggestion = fresh(rng, &[ours, id]);
                    Judgement::Nak(packet::option(INTERFACE_IDENTIFIER, &suggestion))
                }
                _ => Judgement::Reject,
            }
        })?;
        if reply == Reply::Ack {
            self.peer = seen;
        }
        Ok(reply)
    }

    fn on_ack(&mut self) {}

    fn on_nak(&mut self, options: &[u8]) -> Result<(), &'static str> {
        for o in packet::options(options).flatten() {
            if o.kind == INTERFACE_IDENTIFIER {
                let avoid = [self.ours, self.peer.unwrap_or([0; 8])];
                self.ours = match <[u8; 8]>::try_from(o.data) {
                    Ok(id) if id != [0; 8] && !avoid.contains(&id) => id,
                    _ => fresh(&mut self.rng, &avoid),
                };
            }
        }
        Ok(())
    }

    fn on_reject(&mut self, options: &[u8]) -> Result<(), &'static str> {
        if packet::options(options)
            .flatten()
            .any(|o| o.kind == INTERFACE_IDENTIFIER)
        {
            self.send = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn collisions_and_zero_are_naked() {
        let mut n = Ipv6cp::new(ChaCha20Rng::from_seed([3; 32]));
        let own = packet::option(1, &n.ours);
        assert!(matches!(n.on_request(&own), Ok(Reply::Nak { .. })));
        assert!(matches!(
            n.on_request(&packet::option(1, &[0; 8])),
            Ok(Reply::Nak { .. })
        ));
        assert_eq!(n.on_request(&packet::option(1, &[1; 8])), Ok(Reply::Ack));
        assert_eq!(n.peer, Some([1; 8]));
        let comp = packet::option(2, &[0, 0x4f]);
        assert_eq!(n.on_request(&comp), Ok(Reply::Reject(comp.clone())));
        n.on_nak(&packet::option(1, &[1; 8])).unwrap();
        assert_ne!(n.ours, [1; 8]);
    }
}
