//! Quick Mode (RFC 2409 §5.5) as responder: ESP in transport mode (L2TP) or tunnel mode, optional
//! PFS, lifetimes, NAT-OA (RFC 3947 §5.2) and the commit bit.
//!
//! ```text
//!  HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] [, NAT-OAi, NAT-OAr] -->
//!                       <-- HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, NAT-OAi, NAT-OAr] [, N(RESPONDER-LIFETIME)]
//!  HDR*, HASH(3)                                                  -->
//!                       <-- HDR*, HASH(4), N(CONNECTED)            (only when the initiator set the commit bit)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::crypto;
use super::proposals::{self, Encapsulation};
use super::responder::{Responder, TimerKey};
use super::sa::{Cookies, LastReply, P1State, QuickMode, with_hash};
use super::{ChildSa, Event, Selector};
use crate::isakmp::{
    self, Header, Identity, Message, Payload, PayloadChain, exchange, flags, notify, payload_type,
    protocol,
};

/// A selector from a Quick Mode ID payload.
fn selector_of(identity: &Identity<'_>, protocol: u8, port: u16) -> Option<Selector> {
    let (first, last) = match *identity {
        Identity::Ipv4(a) => (IpAddr::V4(a), IpAddr::V4(a)),
        Identity::Ipv6(a) => (IpAddr::V6(a), IpAddr::V6(a)),
        Identity::Ipv4Subnet(a, m) => {
            let (a, m) = (u32::from(a), u32::from(m));
            (
                IpAddr::V4(Ipv4Addr::from(a & m)),
                IpAddr::V4(Ipv4Addr::from(a | !m)),
            )
        }
        Identity::Ipv6Subnet(a, m) => {
            let (a, m) = (u128::from(a), u128::from(m));
            (
                IpAddr::V6(Ipv6Addr::from(a & m)),
                IpAddr::V6(Ipv6Addr::from(a | !m)),
            )
        }
        Identity::Ipv4Range(a, b) => (IpAddr::V4(a), IpAddr::V4(b)),
        Identity::Ipv6Range(a, b) => (IpAddr::V6(a), IpAddr::V6(b)),
        _ => return None,
    };
    Some(Selector {
        first,
        last,
        protocol,
        port,
    })
}

/// Whether `addr` lies in `net`/`len` (false across address families).
pub(crate) fn in_prefix(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Responder {
    pub(crate) fn quick_mode(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        c: Cookies,
        header: &Header,
        data: &[u8],
    ) {
        let Some(p1) = self.p1.get(&c) else { return };
        if p1.state != P1State::Established || header.message_id == 0 || !header.is_encrypted() {
            self.stats.malformed += 1;
            debug!(%remote, "Quick Mode message outside an established ISAKMP SA; dropped");
            return;
        }
        let mid = header.message_id;
        if self.qm_jobs.contains_key(&(c, mid)) {
            dropped!(self.stats.jobs_retransmit_dropped, %remote, mid, "Quick Mode message while its PFS job runs; dropped");
            return;
        }
        if let Some(qm) = p1.quick.get(&mid) {
            if qm.last.request == data {
                let reply = qm.last.reply.clone();
                self.stats.duplicates_resent += 1;
                self.send(p1.local, p1.remote, reply);
                return;
            }
            self.quick_mode_3(now, local, remote, c, header, data);
        } else if let Some((_, last)) = p1
            .connected
            .iter()
            .find(|(m, l)| *m == mid && l.request == data)
        {
            // The initiator repeats QM3 when our CONNECTED was lost (commit bit).
            let reply = last.reply.clone();
            self.stats.duplicates_resent += 1;
            self.send(p1.local, p1.remote, reply);
        } else if p1.done_mids.contains(&mid) {
            debug!(%remote, mid, "Quick Mode message for a finished exchange; dropped");
        } else {
            self.quick_mode_1(now, local, remote, c, header, data);
        }
    }
}

/// How long a Quick Mode waits for message 3: past our last retransmission of message 2 (the
/// intervals double: i, 2i, 4i, ...), and at least the half-open timeout.
fn quick_mode_patience(cfg: &super::Config) -> std::time::Duration {
    let tries = cfg.retransmit_tries.min(16);
    let span = cfg
        .retransmit_initial
        .saturating_mul((1u32 << (tries + 1)) - 1);
    span.max(cfg.half_open_timeout)
}

/// A Quick Mode message 1 that passed every check: all that its reply (message 2) needs, kept
/// while its PFS Diffie-Hellman job runs.
pub(crate) struct Qm1Accepted {
    mid: u32,
    /// Message 1 as received (a repeat is answered with the same reply).
    request: Vec<u8>,
    last_block: Vec<u8>,
    commit: bool,
    choice: proposals::Phase2Choice,
    ni: Vec<u8>,
    id_bodies: Vec<Vec<u8>>,
    local_sel: Selector,
    remote_sel: Selector,
    peer_original: Option<IpAddr>,
    remote: SocketAddr,
}

impl Qm1Accepted {
    pub(crate) fn mid(&self) -> u32 {
        self.mid
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        self.remote
    }
}

/// Quick Modes in progress under one ISAKMP SA, and IPsec SAs of one peer: an authenticated peer
/// cannot make the server hold more (clients use one or two; rekeys overlap briefly).
const MAX_PENDING_QUICK_MODES: usize = 16;
const MAX_CHILD_SAS_PER_PEER: usize = 64;

impl Responder {
    fn quick_mode_1(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        c: Cookies,
        header: &Header,
        data: &[u8],
    ) {
        let mid = header.message_id;
        let Some(p1) = self.p1.get(&c) else { return };
        let iv = crypto::exchange_iv(p1.choice.hash, &p1.iv, mid, p1.choice.cipher.block_len());
        // HASH(1) must come first and cover everything after it.
        let (plain, last_block) = match p1.open_hashed(header, data, &iv) {
            Ok(x) => x,
            Err(e) => return self.hashed_dropped(remote, "Quick Mode message 1", &e),
        };
        let Ok(msg) = Message::parse(*header, &plain) else {
            return;
        };
        let computing = self.qm_jobs.keys().filter(|(k, _)| *k == c).count();
        let (pending, children) = (
            p1.quick.len() + computing,
            self.child_sas_of(&p1.peer).len(),
        );
        if pending >= MAX_PENDING_QUICK_MODES || children >= MAX_CHILD_SAS_PER_PEER {
            self.stats.quick_mode_refused += 1;
            warn!(%remote, pending, children, "Quick Mode refused: too many exchanges or IPsec SAs for this peer");
            return;
        }
        let Some(p1) = self.p1.get(&c) else { return };
        let nat = p1.nat;
        let peer_id = p1.peer_id.clone();
        let mut sa = None;
        let mut ni = None;
        let mut ke = None;
        let mut ids = Vec::new();
        let mut nat_oa = Vec::new();
        for item in msg.items.iter().skip(1) {
            match &item.payload {
                Payload::Sa(s) if sa.is_none() => sa = Some((s, item.raw.body)),
                Payload::Nonce(n) => ni = Some(*n),
                Payload::Ke(k) => ke = Some(*k),
                Payload::Id(id) => ids.push((id, item.raw.body)),
                Payload::NatOa(oa) => nat_oa.push(oa),
                Payload::Notify(n) => {
                    debug!(%remote, notify = isakmp::notify_name(n.message_type), "notify in Quick Mode message 1")
                }
                _ => {}
            }
        }
        let (Some((sa, _)), Some(ni)) = (sa, ni) else {
            self.stats.malformed += 1;
            info!(%remote, "Quick Mode message 1 without SA or nonce");
            return;
        };
        if ni.len() < 8 || ni.len() > 256 {
            self.stats.malformed += 1;
            return;
        }
        let refuse = |this: &mut Self, code: u16, why: String| {
            this.stats.quick_mode_refused += 1;
            warn!(%remote, peer = %peer_id, "Quick Mode refused: {why}");
            this.send_notify_protected(c, code, protocol::IPSEC_ESP, &[], &[]);
        };
        let choice = match proposals::choose_phase2(sa, &self.cfg.phase2, ke.is_some()) {
            Ok(ch) => ch,
            Err(r) => {
                return refuse(
                    self,
                    notify::NO_PROPOSAL_CHOSEN,
                    format!("no acceptable ESP proposal: {r}"),
                );
            }
        };
        // The encapsulation must match what NAT-D found (RFC 3947 §5.1).
        let want_udp = nat.udp_encap();
        if choice.encapsulation.is_udp() != want_udp {
            let why = if want_udp {
                "a NAT is in the path but the client asked for plain ESP".to_string()
            } else if nat.nat_t.is_none() {
                "UDP encapsulation asked for without NAT-T".to_string()
            } else {
                "UDP encapsulation asked for but no NAT was detected".to_string()
            };
            return refuse(self, notify::NO_PROPOSAL_CHOSEN, why);
        }
        // Traffic selectors.
        let (remote_sel, local_sel) = match ids.as_slice() {
            [] => (
                Selector {
                    first: remote.ip(),
                    last: remote.ip(),
                    protocol: 0,
                    port: 0,
                },
                Selector {
                    first: local.ip(),
                    last: local.ip(),
                    protocol: 0,
                    port: 0,
                },
            ),
            [(ci, _), (cr, _)] => {
                let (Ok(ici), Ok(icr)) = (ci.identity(), cr.identity()) else {
                    return refuse(
                        self,
                        notify::INVALID_ID_INFORMATION,
                        "unreadable ID payloads".into(),
                    );
                };
                match (
                    selector_of(&ici, ci.protocol, ci.port),
                    selector_of(&icr, cr.protocol, cr.port),
                ) {
                    (Some(a), Some(b)) => (a, b),
                    _ => {
                        return refuse(
                            self,
                            notify::INVALID_ID_INFORMATION,
                            format!(
                                "ID types {} and {} are not addresses",
                                ci.id_type, cr.id_type
                            ),
                        );
                    }
                }
            }
            _ => {
                return refuse(
                    self,
                    notify::INVALID_ID_INFORMATION,
                    format!("{} ID payloads (0 or 2 expected)", ids.len()),
                );
            }
        };
        let l2tp_port = self.cfg.phase2.l2tp_port;
        if choice.encapsulation.is_tunnel() {
            let ok = self.cfg.phase2.tunnel_local.iter().any(|(net, len)| {
                in_prefix(local_sel.first, *net, *len) && in_prefix(local_sel.last, *net, *len)
            });
            if !ok {
                return refuse(
                    self,
                    notify::INVALID_ID_INFORMATION,
                    format!(
                        "tunnel mode to {local_sel} is not allowed (no matching tunnel network configured)"
                    ),
                );
            }
        } else {
            // Transport mode carries L2TP: single addresses, UDP (or any) and our L2TP port (or
            // any) on our side; any source port on the client's (Apple and Android use ephemeral
            // ports, CLIENTS.md §5.5).
            if remote_sel.first != remote_sel.last || local_sel.first != local_sel.last {
                return refuse(
                    self,
                    notify::INVALID_ID_INFORMATION,
                    "transport mode with subnet selectors".into(),
                );
            }
            if ![0, 17].contains(&remote_sel.protocol) || ![0, 17].contains(&local_sel.protocol) {
                return refuse(
                    self,
                    notify::INVALID_ID_INFORMATION,
                    format!(
                        "transport mode for protocol {} (only UDP/L2TP is served)",
                        local_sel.protocol
                    ),
                );
            }
            if !ids.is_empty() && !nat.local_behind_nat && local_sel.first != local.ip() {
                return refuse(
                    self,
                    notify::INVALID_ID_INFORMATION,
                    format!(
                        "server selector {local_sel} is not this server's address {}",
                        local.ip()
                    ),
                );
            }
            if local_sel.port != 0 && local_sel.port != l2tp_port {
                return refuse(
                    self,
                    notify::INVALID_ID_INFORMATION,
                    format!(
                        "transport mode for port {} (L2TP is on {l2tp_port})",
                        local_sel.port
                    ),
                );
            }
            // Without NAT the client's selector is its real address; behind NAT it is its
            // private address, which only NAT-OA/ID tell us.
            if !nat.peer_behind_nat
                && !nat.local_behind_nat
                && remote_sel.first != remote.ip()
                && !ids.is_empty()
            {
                return refuse(
                    self,
                    notify::INVALID_ID_INFORMATION,
                    format!(
                        "client selector {} is not its address {}",
                        remote_sel,
                        remote.ip()
                    ),
                );
            }
        }
        let peer_original = nat_oa
            .first()
            .and_then(|oa| match oa.identity() {
                Ok(Identity::Ipv4(a)) => Some(IpAddr::V4(a)),
                Ok(Identity::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            })
            .or((!choice.encapsulation.is_tunnel()).then_some(remote_sel.first));

        let accepted = Qm1Accepted {
            mid,
            request: data.to_vec(),
            last_block,
            commit: header.flags & flags::COMMIT != 0,
            choice,
            ni: ni.to_vec(),
            id_bodies: ids.iter().map(|(_, body)| body.to_vec()).collect(),
            local_sel,
            remote_sel,
            peer_original,
            remote,
        };
        // PFS (RFC 2409 §5.5): the peer's KE is checked here (length, range: a comparison);
        // our key and g^xy are a handshake job, off this thread when jobs are deferred.
        match (accepted.choice.pfs, ke) {
            (Some(group), Some(peer_ke)) => {
                if let Err(e) = crypto::validate_public(group, peer_ke) {
                    self.stats.invalid_ke += 1;
                    return refuse(
                        self,
                        notify::INVALID_KEY_INFORMATION,
                        format!("invalid PFS public value: {e}"),
                    );
                }
                self.queue_quick_mode_job(now, c, accepted, group, peer_ke);
            }
            _ => self.reply_quick_mode_1(now, c, accepted, None),
        }
    }

    /// Quick Mode message 2 for an accepted message 1, with our PFS value and g^xy when PFS
    /// was agreed (the result of its job).
    pub(crate) fn reply_quick_mode_1(
        &mut self,
        now: Instant,
        c: Cookies,
        accepted: Qm1Accepted,
        pfs: Option<(Zeroizing<Vec<u8>>, Vec<u8>)>,
    ) {
        let natt_port = self.cfg.natt_port;
        let Qm1Accepted {
            mid,
            request: data,
            last_block,
            commit,
            choice,
            ni,
            id_bodies,
            local_sel,
            remote_sel,
            peer_original,
            remote,
        } = accepted;
        let Some(p1) = self.p1.get(&c) else { return };
        let Some(keys) = p1.keys() else { return };
        let (prf, skeyid_a, nat, peer_id) = (
            p1.choice.prf,
            keys.skeyid_a.clone(),
            p1.nat,
            p1.peer_id.clone(),
        );
        let (pfs_gxy, our_ke) = match pfs {
            Some((gxy, ours)) => (Some(gxy), Some(ours)),
            None => (None, None),
        };
        let local = p1.local;
        let our_spi = self.new_spi();
        let nr = self.random_bytes(32);

        let Some(p1) = self.p1.get(&c) else { return };
        let mut rest = PayloadChain::new();
        rest.push(
            payload_type::SA,
            &isakmp::encode_sa(&choice.reply_sa(our_spi)),
        );
        rest.push(payload_type::NONCE, &nr);
        if let Some(k) = &our_ke {
            rest.push(payload_type::KE, k);
        }
        for body in &id_bodies {
            rest.push(payload_type::ID, body);
        }
        if choice.encapsulation == Encapsulation::UdpTransport
            && let Some(v) = nat.nat_t.filter(|v| *v == super::nat_t::Variant::Rfc3947)
        {
            rest.push(v.nat_oa_payload(), &isakmp::encode_nat_oa(remote.ip()));
            rest.push(v.nat_oa_payload(), &isakmp::encode_nat_oa(local.ip()));
        }
        if choice.shortened {
            let attrs = isakmp::encode_attribute_list(&choice.responder_lifetime_attrs());
            rest.push(
                payload_type::NOTIFY,
                &isakmp::encode_notify(
                    isakmp::doi::IPSEC,
                    protocol::IPSEC_ESP,
                    &our_spi.to_be_bytes(),
                    notify::RESPONDER_LIFETIME,
                    &attrs,
                ),
            );
        }
        let h2 = crypto::qm_hash2(prf, &skeyid_a, mid, &ni, rest.bytes());
        let chain = with_hash(&h2, &rest);
        let mut h = p1.header(exchange::QUICK, mid, true);
        if commit {
            h.flags |= flags::COMMIT;
        }
        let Some((reply, last_out)) = p1.seal(&h, &chain, &last_block) else {
            return;
        };
        let framed = p1.frame(natt_port, reply);
        info!(
            %remote,
            peer = %peer_id,
            proposal = %choice.describe(),
            client = %remote_sel,
            server = %local_sel,
            lifetime_s = choice.lifetime.as_secs(),
            lifetime_kb = ?choice.lifetime_kb,
            "Quick Mode proposal accepted"
        );
        let qm = QuickMode {
            iv: last_out,
            choice,
            our_spi,
            ni,
            nr,
            pfs_gxy,
            local_selector: local_sel,
            remote_selector: remote_sel,
            peer_original,
            commit,
            last: LastReply::new(
                &data,
                framed.clone(),
                now,
                Some((self.cfg.retransmit_initial, self.cfg.retransmit_tries)),
            ),
            expires: now + quick_mode_patience(&self.cfg),
        };
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        p1.dpd.last_activity = now;
        self.pending_spis.insert(qm.our_spi, (c, mid));
        p1.quick.insert(mid, qm);
        let (l, r) = (p1.local, p1.remote);
        self.arm(now + self.cfg.retransmit_initial, TimerKey::Phase1(c));
        self.send(l, r, framed);
    }

    fn quick_mode_3(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        remote: SocketAddr,
        c: Cookies,
        header: &Header,
        data: &[u8],
    ) {
        let mid = header.message_id;
        let Some(p1) = self.p1.get(&c) else { return };
        let Some(qm) = p1.quick.get(&mid) else { return };
        let Some(keys) = p1.keys() else { return };
        let Some((plain, last_block)) = p1.open(data, &qm.iv) else {
            self.stats.malformed += 1;
            return;
        };
        let ok = match Message::parse(*header, &plain) {
            Ok(msg) => match msg.items.first().map(|i| &i.payload) {
                Some(Payload::Hash(h3)) => {
                    let expect =
                        crypto::qm_hash3(p1.choice.prf, &keys.skeyid_a, mid, &qm.ni, &qm.nr);
                    bool::from(expect.as_slice().ct_eq(h3))
                }
                _ => false,
            },
            Err(_) => false,
        };
        if !ok {
            self.stats.hash_mismatch += 1;
            warn!(%remote, "Quick Mode HASH(3) does not match; message dropped");
            return;
        }
        self.complete_quick_mode(now, c, mid, Some((data, last_block)));
    }

    /// The inbound keys of a Quick Mode whose message 2 is out and whose message 3 has not come:
    /// ESP on `spi` that these keys authenticate shows that the initiator has the keys and took
    /// our proposal, which is what message 3 would say ([`Responder::confirm_quick_mode`]).
    pub fn pending_child_keys(&self, spi: u32) -> Option<(crate::esp::Suite, Zeroizing<Vec<u8>>)> {
        let &(c, mid) = self.pending_spis.get(&spi)?;
        let p1 = self.p1.get(&c)?;
        let qm = p1.quick.get(&mid).filter(|q| q.our_spi == spi)?;
        let keys = p1.keys()?;
        let len = qm.choice.suite.keymat_len();
        let keymat = crypto::keymat(
            p1.choice.prf,
            &keys.skeyid_d,
            qm.pfs_gxy.as_ref().map(|g| g.as_slice()),
            protocol::IPSEC_ESP,
            &spi.to_be_bytes(),
            &qm.ni,
            &qm.nr,
            len,
        );
        Some((qm.choice.suite, Zeroizing::new(keymat.to_vec())))
    }

    /// Completes the Quick Mode of `spi` as if its message 3 had come: the caller has
    /// authenticated ESP with [`Responder::pending_child_keys`]. A lost message 3 (or ESP that
    /// overtakes it on another socket) then costs no retransmission round. Exchanges with the
    /// commit bit are left alone: their initiator sends nothing before our CONNECTED.
    pub fn confirm_quick_mode(&mut self, now: Instant, spi: u32) -> bool {
        let Some(&(c, mid)) = self.pending_spis.get(&spi) else {
            return false;
        };
        let pending = self
            .p1
            .get(&c)
            .and_then(|p| p.quick.get(&mid))
            .is_some_and(|q| q.our_spi == spi && !q.commit);
        if !pending {
            return false;
        }
        info!(
            spi_in = format_args!("{spi:08x}"),
            "authentic ESP before Quick Mode message 3: the exchange is complete"
        );
        self.complete_quick_mode(now, c, mid, None);
        true
    }

    /// Installs the IPsec SA of Quick Mode `mid`: message 3 (`qm3`: the message and the last
    /// ciphertext block) came and was checked, or ESP showed it was sent.
    fn complete_quick_mode(
        &mut self,
        now: Instant,
        c: Cookies,
        mid: u32,
        qm3: Option<(&[u8], Vec<u8>)>,
    ) {
        let natt_port = self.cfg.natt_port;
        let Some(p1) = self.p1.get(&c) else { return };
        let Some(keys) = p1.keys() else { return };
        let prf = p1.choice.prf;
        let skeyid_d = keys.skeyid_d.clone();
        let skeyid_a = keys.skeyid_a.clone();
        let (peer, phase1_id, peer_id) = (p1.peer.clone(), p1.id, p1.peer_id.clone());
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        let Some(qm) = p1.quick.remove(&mid) else {
            return;
        };
        self.pending_spis.remove(&qm.our_spi);
        p1.remember_mid(mid);
        p1.dpd.last_activity = now;
        let (local, remote_now) = (p1.local, p1.remote);
        let len = qm.choice.suite.keymat_len();
        let gxy = qm.pfs_gxy.as_ref().map(|g| g.as_slice());
        let inbound_keymat = crypto::keymat(
            prf,
            &skeyid_d,
            gxy,
            protocol::IPSEC_ESP,
            &qm.our_spi.to_be_bytes(),
            &qm.ni,
            &qm.nr,
            len,
        );
        let outbound_keymat = crypto::keymat(
            prf,
            &skeyid_d,
            gxy,
            protocol::IPSEC_ESP,
            &qm.choice.peer_spi.to_be_bytes(),
            &qm.ni,
            &qm.nr,
            len,
        );
        // Older SAs with the same selectors to this peer are being replaced (a phase-2 rekey).
        let replaces: Vec<u32> = self
            .children
            .iter()
            .filter(|(_, ch)| {
                ch.peer == peer
                    && ch.local_selector == qm.local_selector
                    && ch.remote_selector == qm.remote_selector
            })
            .map(|(s, _)| *s)
            .collect();
        let child = ChildSa {
            phase1: phase1_id,
            peer_id: peer_id.clone(),
            inbound_spi: qm.our_spi,
            outbound_spi: qm.choice.peer_spi,
            suite: qm.choice.suite,
            inbound_keymat: Zeroizing::new(inbound_keymat.to_vec()),
            outbound_keymat: Zeroizing::new(outbound_keymat.to_vec()),
            local,
            remote: remote_now,
            udp_encap: qm.choice.encapsulation.is_udp(),
            tunnel: qm.choice.encapsulation.is_tunnel(),
            peer_original: qm.peer_original,
            local_selector: qm.local_selector.clone(),
            remote_selector: qm.remote_selector.clone(),
            lifetime: qm.choice.lifetime,
            lifetime_kb: qm.choice.lifetime_kb,
            replaces,
            algorithms: qm.choice.describe(),
        };
        self.stats.child_sas_established += 1;
        info!(
            remote = %remote_now,
            peer = %peer_id,
            spi_in = format_args!("{:08x}", child.inbound_spi),
            spi_out = format_args!("{:08x}", child.outbound_spi),
            algorithms = %child.algorithms,
            rekey = !child.replaces.is_empty(),
            "IPsec SA established"
        );
        self.register_child(&child, c, peer, now);
        self.events.push_back(Event::ChildSaUp(Box::new(child)));
        if let (true, Some((data, last_block))) = (qm.commit, qm3) {
            // RFC 2408 §4.? commit bit: the responder confirms with a CONNECTED notify under the
            // exchange's own IV chain.
            let mut rest = PayloadChain::new();
            rest.push(
                payload_type::NOTIFY,
                &isakmp::encode_notify(
                    isakmp::doi::IPSEC,
                    protocol::IPSEC_ESP,
                    &qm.our_spi.to_be_bytes(),
                    notify::CONNECTED,
                    &[],
                ),
            );
            let h4 = crypto::qm_hash1(prf, &skeyid_a, mid, rest.bytes());
            let chain = with_hash(&h4, &rest);
            let Some(p1) = self.p1.get(&c) else { return };
            let mut h = p1.header(exchange::QUICK, mid, true);
            h.flags |= flags::COMMIT;
            if let Some((msg, _)) = p1.seal(&h, &chain, &last_block) {
                let framed = p1.frame(natt_port, msg);
                if let Some(p1) = self.p1.get_mut(&c) {
                    if p1.connected.len() >= 8 {
                        p1.connected.pop_front();
                    }
                    p1.connected
                        .push_back((mid, LastReply::new(data, framed.clone(), now, None)));
                }
                self.send(local, remote_now, framed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_selectors_cover_the_subnet() {
        let s = selector_of(
            &Identity::Ipv4Subnet(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(255, 255, 255, 0)),
            0,
            0,
        )
        .unwrap_or_else(|| panic!("selector"));
        assert_eq!(s.first, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 0)));
        assert_eq!(s.last, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(selector_of(&Identity::Fqdn(b"x"), 0, 0).is_none());
    }

    #[test]
    fn prefixes() {
        let n = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0));
        assert!(in_prefix(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77)),
            n,
            24
        ));
        assert!(!in_prefix(
            IpAddr::V4(Ipv4Addr::new(198, 51, 101, 1)),
            n,
            24
        ));
        assert!(in_prefix(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), n, 0));
        assert!(!in_prefix(IpAddr::V6(Ipv6Addr::LOCALHOST), n, 0));
    }
}
