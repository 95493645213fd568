//! Informational exchanges (RFC 2409 §5.7): Delete, notifies, INITIAL-CONTACT, and dead peer
//! detection (RFC 3706).
//!
//! Every protected Informational message is `HDR*, HASH(1), N/D` with HASH(1) = prf(SKEYID_a,
//! M-ID | N/D) and an IV derived afresh from the last phase-1 block and its own message ID.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::DownReason;
use super::crypto;
use super::responder::Responder;
use super::sa::{Cookies, P1State, PeerKey, with_hash};
use crate::isakmp::{
    self, Header, Message, Payload, PayloadChain, exchange, notify, payload_type, protocol,
};

/// R-U-THERE is re-sent this often while unanswered.
const DPD_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Responder {
    pub(crate) fn informational(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        c: Cookies,
        header: &Header,
        data: &[u8],
    ) {
        let Some(p1) = self.p1.get(&c) else { return };
        if !header.is_encrypted() {
            // Unprotected notifies inside an SA prove nothing; log them only.
            self.informational_unprotected(remote, header, data);
            return;
        }
        let Some(keys) = p1.keys() else { return };
        let mid = header.message_id;
        if p1.done_mids.contains(&mid) {
            debug!(%remote, mid, "replayed Informational message dropped");
            return;
        }
        let seed = if p1.state == P1State::Established {
            &p1.iv
        } else {
            &keys.iv
        };
        let iv = crypto::exchange_iv(p1.choice.hash, seed, mid, p1.choice.cipher.block_len());
        let plain = match p1.open_hashed(header, data, &iv) {
            Ok((plain, _)) => plain,
            Err(e) => return self.hashed_dropped(remote, "Informational message", &e),
        };
        let Ok(msg) = Message::parse(*header, &plain) else {
            return;
        };
        let peer = p1.peer.clone();
        let peer_id = p1.peer_id.clone();
        if let Some(p1) = self.p1.get_mut(&c) {
            p1.remember_mid(mid);
            p1.dpd.last_activity = now;
            // An authenticated message from a new address: the NAT mapping moved.
            if p1.state == P1State::Established && (p1.remote != remote || p1.local != local) {
                p1.remote = remote;
                p1.local = local;
                let old = p1.peer.clone();
                p1.peer = PeerKey::new(remote, p1.nat.peer_behind_nat, old.id.clone());
                let new = p1.peer.clone();
                for ch in self.children.values_mut().filter(|ch| ch.peer == old) {
                    ch.peer = new.clone();
                }
                let id = p1.id;
                let spis = self
                    .children
                    .iter()
                    .filter(|(_, ch)| ch.phase1 == c)
                    .map(|(s, _)| *s)
                    .collect();
                info!(%remote, peer = %peer_id, "peer moved to a new address");
                self.events.push_back(super::Event::PeerMoved {
                    phase1: id,
                    inbound_spis: spis,
                    remote,
                });
            }
        }
        for item in msg.items.iter().skip(1) {
            match &item.payload {
                Payload::Delete(d) => {
                    self.stats.deletes_received += 1;
                    match d.protocol {
                        protocol::ISAKMP => {
                            for spi in &d.spis {
                                if let Ok(target) = <[u8; 16]>::try_from(*spi) {
                                    // Only this peer's ISAKMP SAs may be deleted by it.
                                    let mine = self.p1.get(&target).is_some_and(|p| p.peer == peer);
                                    if mine {
                                        info!(%remote, peer = %peer_id, "peer deleted its ISAKMP SA");
                                        self.delete_phase1(target, DownReason::PeerDeleted, false);
                                    }
                                }
                            }
                        }
                        protocol::IPSEC_ESP => {
                            for spi in &d.spis {
                                let Ok(b) = <[u8; 4]>::try_from(*spi) else {
                                    continue;
                                };
                                let out = u32::from_be_bytes(b);
                                let inbound = self
                                    .children
                                    .iter()
                                    .find(|(_, ch)| ch.outbound_spi == out && ch.peer == peer)
                                    .map(|(s, _)| *s);
                                match inbound {
                                    Some(s) => {
                                        info!(%remote, peer = %peer_id, spi = format_args!("{out:08x}"), "peer deleted an IPsec SA");
                                        self.delete_child(s, DownReason::PeerDeleted, false);
                                    }
                                    None => {
                                        debug!(%remote, spi = format_args!("{out:08x}"), "Delete for an unknown IPsec SA")
                                    }
                                }
                            }
                        }
                        other => {
                            debug!(%remote, protocol = other, "Delete for an unsupported protocol")
                        }
                    }
                }
                Payload::Notify(n) => match n.message_type {
                    notify::R_U_THERE => {
                        if let Ok(seq) = <[u8; 4]>::try_from(n.data) {
                            self.send_notify_protected(
                                c,
                                notify::R_U_THERE_ACK,
                                protocol::ISAKMP,
                                &c,
                                &seq,
                            );
                        }
                    }
                    notify::R_U_THERE_ACK => {
                        if let (Ok(seq), Some(p1)) =
                            (<[u8; 4]>::try_from(n.data), self.p1.get_mut(&c))
                        {
                            let seq = u32::from_be_bytes(seq);
                            let next = p1.dpd.next_seq;
                            if p1.dpd.pending.is_some_and(|(first, _)| {
                                seq.wrapping_sub(first) < next.wrapping_sub(first)
                            }) {
                                p1.dpd.pending = None;
                            }
                        }
                    }
                    notify::INITIAL_CONTACT => self.initial_contact(c, &peer),
                    code => {
                        info!(%remote, peer = %peer_id, notify = isakmp::notify_name(code), "notify received")
                    }
                },
                _ => {}
            }
        }
    }

    /// Unprotected Informational messages: logged (they might be a client's NO-PROPOSAL-CHOSEN),
    /// never acted on.
    pub(crate) fn informational_unprotected(
        &mut self,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        if header.is_encrypted() {
            debug!(%remote, "protected Informational without an ISAKMP SA; dropped");
            return;
        }
        match Message::decode(data) {
            Ok(msg) => {
                for item in &msg.items {
                    if let Payload::Notify(n) = &item.payload {
                        info!(%remote, notify = isakmp::notify_name(n.message_type), "unprotected notify from peer");
                    }
                }
            }
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// Sends `HDR*, HASH(1), N` in a new Informational exchange of phase 1 `c`.
    pub(crate) fn send_notify_protected(
        &mut self,
        c: Cookies,
        code: u16,
        proto: u8,
        spi: &[u8],
        data: &[u8],
    ) {
        let mut rest = PayloadChain::new();
        rest.push(
            payload_type::NOTIFY,
            &isakmp::encode_notify(isakmp::doi::IPSEC, proto, spi, code, data),
        );
        self.send_informational(c, rest);
    }

    pub(crate) fn send_delete_isakmp(&mut self, c: Cookies) {
        let mut rest = PayloadChain::new();
        rest.push(
            payload_type::DELETE,
            &isakmp::encode_delete(isakmp::doi::IPSEC, protocol::ISAKMP, 16, &[&c]),
        );
        self.send_informational(c, rest);
    }

    pub(crate) fn send_delete_esp(&mut self, c: Cookies, inbound_spi: u32) {
        let mut rest = PayloadChain::new();
        let spi = inbound_spi.to_be_bytes();
        rest.push(
            payload_type::DELETE,
            &isakmp::encode_delete(isakmp::doi::IPSEC, protocol::IPSEC_ESP, 4, &[&spi]),
        );
        self.send_informational(c, rest);
    }

    fn send_informational(&mut self, c: Cookies, rest: PayloadChain) {
        let mid = self.random_u32_nonzero();
        let natt_port = self.cfg.natt_port;
        let Some(p1) = self.p1.get(&c) else { return };
        if p1.state != P1State::Established {
            return;
        }
        let Some(keys) = p1.keys() else { return };
        let hash = crypto::info_hash(p1.choice.prf, &keys.skeyid_a, mid, rest.bytes());
        let chain = with_hash(&hash, &rest);
        let iv = crypto::exchange_iv(p1.choice.hash, &p1.iv, mid, p1.choice.cipher.block_len());
        let h = p1.header(exchange::INFORMATIONAL, mid, true);
        let Some((msg, _)) = p1.seal(&h, &chain, &iv) else {
            return;
        };
        let framed = p1.frame(natt_port, msg);
        let (l, r) = (p1.local, p1.remote);
        self.send(l, r, framed);
    }

    /// DPD: probe a silent peer that advertised DPD, declare it dead when it stays silent.
    /// Returns when to look again.
    pub(crate) fn service_dpd(&mut self, now: Instant, c: Cookies) -> Option<Instant> {
        let interval = self.cfg.dpd_interval?;
        let timeout = self.cfg.dpd_timeout;
        let p1 = self.p1.get_mut(&c)?;
        if p1.state != P1State::Established || !p1.vendors.dpd {
            return None;
        }
        if let Some((_, since)) = p1.dpd.pending {
            if p1.dpd.last_activity > since {
                p1.dpd.pending = None;
            } else if now >= since + timeout {
                let (remote, peer) = (p1.remote, p1.peer_id.clone());
                self.stats.dpd_dead += 1;
                warn!(%remote, %peer, "dead peer: no answer to R-U-THERE; removing its SAs");
                let peer = p1.peer.clone();
                for spi in self.child_sas_of(&peer) {
                    self.delete_child(spi, DownReason::DeadPeer, false);
                }
                self.delete_phase1(c, DownReason::DeadPeer, false);
                return None;
            } else {
                let next = p1.dpd.next_probe.unwrap_or(now);
                if now >= next {
                    let retry_seq = p1.dpd.next_seq;
                    p1.dpd.next_seq = retry_seq.wrapping_add(1);
                    p1.dpd.next_probe = Some(now + DPD_RETRY);
                    self.stats.dpd_sent += 1;
                    self.send_notify_protected(
                        c,
                        notify::R_U_THERE,
                        protocol::ISAKMP,
                        &c,
                        &retry_seq.to_be_bytes(),
                    );
                }
                return Some((now + DPD_RETRY).min(since + timeout));
            }
        }
        let p1 = self.p1.get_mut(&c)?;
        let idle_until = p1.dpd.last_activity + interval;
        if now < idle_until {
            return Some(idle_until);
        }
        let seq = p1.dpd.next_seq;
        p1.dpd.next_seq = p1.dpd.next_seq.wrapping_add(1);
        p1.dpd.pending = Some((seq, now));
        p1.dpd.next_probe = Some(now + DPD_RETRY);
        self.stats.dpd_sent += 1;
        debug!(remote = %p1.remote, seq, "DPD: R-U-THERE");
        self.send_notify_protected(
            c,
            notify::R_U_THERE,
            protocol::ISAKMP,
            &c,
            &seq.to_be_bytes(),
        );
        Some(now + DPD_RETRY)
    }
}
