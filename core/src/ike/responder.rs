//! The IKEv1 responder: demultiplexing by cookies, limits on half-open SAs, timers, and the
//! tables of phase-1 and IPsec SAs.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tracing::{debug, info, warn};

use super::sa::{Cookies, HashedError, P1State, PeerKey, Phase1, cookies};
use super::{ChildSa, Config, DownReason, Event, Transmit};
use crate::isakmp::{self, Header, Message, Payload, exchange, payload_type};

/// Counters for metrics and tests. Each names one cause; none holds a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams: u64,
    pub malformed: u64,
    pub unknown_cookies: u64,
    pub duplicates_resent: u64,
    pub half_open_limited: u64,
    pub half_open_expired: u64,
    pub aggressive_refused: u64,
    pub no_proposal_chosen: u64,
    pub invalid_ke: u64,
    pub auth_failed: u64,
    pub hash_mismatch: u64,
    pub phase1_established: u64,
    pub quick_mode_refused: u64,
    /// Quick Modes dropped because message 3 never came (they would otherwise hold one of the
    /// phase 1's slots for pending exchanges for its whole lifetime).
    pub quick_mode_expired: u64,
    pub child_sas_established: u64,
    pub deletes_received: u64,
    pub dpd_sent: u64,
    pub dpd_dead: u64,
    pub retransmits: u64,
    pub unsupported_exchange: u64,
    /// Diffie-Hellman keys of ours made (Main Mode message 3 jobs, Quick Mode PFS).
    pub dh_keys_generated: u64,
    /// Message 1 refused: `max_half_open_per_source` of its address are half open (failed
    /// attempts stay charged until their half-open timeout would have run out).
    pub half_open_source_limited: u64,
    /// Message 1 refused: `max_half_open_per_v6_prefix` of its IPv6 /64 are half open.
    pub half_open_prefix_limited: u64,
    /// Message 1 dropped by random early drop (half-open SAs above `early_drop_threshold`).
    pub early_dropped: u64,
    /// Half-open SAs still waiting for message 3 evicted, oldest first, to make room for a new
    /// message 1 when the table was full (spoofed floods never send message 3).
    pub half_open_evicted: u64,
    /// Message 1 dropped: `handshake_queue` jobs are outstanding.
    pub jobs_busy_dropped: u64,
    /// A job result for an ISAKMP SA that had gone meanwhile; ignored.
    pub jobs_orphaned: u64,
    /// A Main Mode message for an SA whose job is running; dropped (not computed again).
    pub jobs_retransmit_dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    Phase1(Cookies),
    Child(u32),
    /// A failed half-open SA whose charge against its source ends (by phase-1 ID).
    Tombstone(u64),
}

/// What we keep per installed IPsec SA pair.
pub(crate) struct ChildEntry {
    pub phase1: Cookies,
    pub peer: PeerKey,
    pub outbound_spi: u32,
    pub expires: Instant,
    pub local_selector: super::Selector,
    pub remote_selector: super::Selector,
}

/// The sans-IO IKEv1 responder. See the module documentation of [`crate::ike`].
pub struct Responder {
    pub(crate) cfg: Arc<Config>,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) p1: HashMap<Cookies, Phase1>,
    /// Quick Mode message 1s whose PFS job runs, by ISAKMP SA and message ID.
    pub(crate) qm_jobs: HashMap<(Cookies, u32), Box<super::quick_mode::Qm1Accepted>>,
    /// (initiator cookie, peer) → responder cookie, to recognise a repeated message 1.
    pub(crate) mm1_index: HashMap<([u8; 8], SocketAddr), [u8; 8]>,
    pub(crate) half_open_by_src: HashMap<IpAddr, usize>,
    /// Half-open SAs per IPv6 /64 (the first 8 bytes of the source).
    pub(crate) half_open_by_prefix: HashMap<[u8; 8], usize>,
    /// Half-open SAs in the order their message 2 went out, oldest first (entries that have
    /// moved on or gone are skipped when met): what a full table evicts.
    pub(crate) mm2_order: VecDeque<Cookies>,
    /// Failed half-open SAs still charged to their source: phase-1 ID → source address.
    pub(crate) tombstones: HashMap<u64, IpAddr>,
    pub(crate) half_open: usize,
    /// Handshake jobs queued for [`Responder::poll_job`] (deferred mode).
    pub(crate) jobs: VecDeque<super::Job>,
    pub(crate) jobs_outstanding: usize,
    pub(crate) deferred_jobs: bool,
    pub(crate) children: HashMap<u32, ChildEntry>,
    /// Our SPI of every Quick Mode whose message 2 is out and message 3 awaited → its phase 1
    /// and message ID (entries of exchanges that ended otherwise are checked and dropped).
    pub(crate) pending_spis: HashMap<u32, (Cookies, u32)>,
    pub(crate) timers: crate::timer::Timers<TimerKey>,
    pub(crate) out: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    /// NAT-D showed that our address is translated on the way to some peer.
    pub(crate) behind_nat: bool,
    /// Wall-clock anchor for certificate validity: (monotonic time, Unix seconds then).
    wall: Option<(Instant, u64)>,
    next_id: u64,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("phase1_sas", &self.p1.len())
            .field("half_open", &self.half_open)
            .field("child_sas", &self.children.len())
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder seeded from the operating system's random source.
    pub fn new(cfg: Arc<Config>) -> Self {
        Self::with_rng(cfg, rand::make_rng::<ChaCha20Rng>())
    }

    /// A responder with a given random generator (tests use a seeded one).
    pub fn with_rng(cfg: Arc<Config>, rng: ChaCha20Rng) -> Self {
        Self {
            cfg,
            rng,
            p1: HashMap::new(),
            qm_jobs: HashMap::new(),
            mm1_index: HashMap::new(),
            half_open_by_src: HashMap::new(),
            half_open_by_prefix: HashMap::new(),
            mm2_order: VecDeque::new(),
            tombstones: HashMap::new(),
            half_open: 0,
            jobs: VecDeque::new(),
            jobs_outstanding: 0,
            deferred_jobs: false,
            children: HashMap::new(),
            pending_spis: HashMap::new(),
            timers: crate::timer::Timers::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            behind_nat: false,
            wall: None,
            next_id: 1,
        }
    }

    /// A responder with a deterministic generator, for tests.
    pub fn seeded(cfg: Arc<Config>, seed: u64) -> Self {
        Self::with_rng(cfg, ChaCha20Rng::seed_from_u64(seed))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Tells the responder the wall-clock time (Unix seconds) at `now`, for certificate
    /// validity; the shell calls it as time passes.
    pub fn set_unix_time(&mut self, now: Instant, unix_secs: u64) {
        self.wall = Some((now, unix_secs));
    }

    /// Unix seconds at `now` (0 if the shell never said: every certificate is then "not yet
    /// valid").
    pub(crate) fn unix_time(&self, now: Instant) -> u64 {
        match self.wall {
            Some((at, secs)) if now >= at => secs + now.duration_since(at).as_secs(),
            Some((at, secs)) => secs.saturating_sub(at.duration_since(now).as_secs()),
            None => 0,
        }
    }

    /// Replaces the configuration (SIGHUP). Established SAs keep what they negotiated.
    pub fn set_config(&mut self, cfg: Arc<Config>) {
        self.cfg = cfg;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// True once NAT-D has shown that this server's address is translated (it sits behind NAT).
    pub fn server_behind_nat(&self) -> bool {
        self.behind_nat
    }

    pub fn phase1_count(&self) -> usize {
        self.p1.len()
    }

    /// Phase-1 negotiations in progress, plus failed ones still charged to their source (until
    /// their half-open timeout would have run out).
    pub fn half_open_count(&self) -> usize {
        self.half_open
    }

    /// Deadlines held: at most one per phase 1, IPsec SA and failed handshake still charged.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Bytes of message 1 SA payloads held (only by ISAKMP SAs not yet established).
    pub fn stored_sa_payload_bytes(&self) -> usize {
        self.p1.values().map(|p| p.sa_body.len()).sum()
    }

    /// Quick Modes waiting for their message 3, under every ISAKMP SA.
    pub fn pending_quick_modes(&self) -> usize {
        self.p1.values().map(|p| p.quick.len()).sum()
    }

    pub fn child_count(&self) -> usize {
        self.children.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Responder::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    pub(crate) fn random_u32_nonzero(&mut self) -> u32 {
        loop {
            let v = self.rng.next_u32();
            if v != 0 {
                return v;
            }
        }
    }

    pub(crate) fn arm(&mut self, at: Instant, key: TimerKey) {
        self.timers.arm(at, key);
    }

    pub(crate) fn send(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>) {
        self.out.push_back(Transmit {
            local,
            remote,
            data,
        });
    }

    /// An IKE fragment (see [`super::fragment`]) of a message for the ISAKMP SA `key`: kept until
    /// the message is whole, which is then handled as if it had come in one datagram.
    fn fragment_in(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        key: [u8; 16],
        header: &Header,
        data: &[u8],
    ) {
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                debug!(%remote, error = %e, "malformed IKE fragment; dropped");
                return;
            }
        };
        let Some(Payload::Fragment(f)) = msg.first(payload_type::FRAGMENT).map(|i| &i.payload)
        else {
            self.stats.malformed += 1;
            return;
        };
        let Some(p1) = self.p1.get_mut(&key) else {
            return;
        };
        if remote.ip() != p1.remote.ip() {
            self.stats.malformed += 1;
            debug!(%remote, "IKE fragment from another address than the ISAKMP SA's; dropped");
            return;
        }
        match p1.frags.add(f) {
            super::fragment::Added::Waiting => {}
            super::fragment::Added::Refused(why) => {
                dropped!(self.stats.malformed, %remote, "IKE fragments refused: {why}");
            }
            super::fragment::Added::Complete(whole) => {
                // The joined message must belong to the same SA and not be a fragment itself.
                match Header::decode(&whole) {
                    Ok(h)
                        if h.initiator_cookie == header.initiator_cookie
                            && h.responder_cookie == header.responder_cookie
                            && h.next_payload != payload_type::FRAGMENT =>
                    {
                        debug!(%remote, bytes = whole.len(), "IKE fragments joined");
                        self.handle_datagram(now, local, remote, &whole);
                    }
                    _ => {
                        dropped!(self.stats.malformed, %remote, "joined IKE fragments are not a message of this ISAKMP SA");
                    }
                }
            }
        }
    }

    /// One IKE datagram received on `local` from `remote`. On the NAT-T port the caller has
    /// already removed the non-ESP marker (see [`crate::esp::classify_udp4500`]).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.stats.datagrams += 1;
        let header = match Header::decode(data) {
            Ok(h) => h,
            Err(e) => {
                self.stats.malformed += 1;
                debug!(%remote, error = %e, "dropped malformed ISAKMP datagram");
                return;
            }
        };
        let Some(data) = data.get(..header.length as usize) else {
            self.stats.malformed += 1;
            return;
        };
        if header.responder_cookie == [0; 8] {
            self.handle_first(now, local, remote, &header, data);
            return;
        }
        let key = cookies(&header);
        let Some(p1) = self.p1.get(&key) else {
            self.stats.unknown_cookies += 1;
            debug!(%remote, exchange = header.exchange, "dropped message for an unknown ISAKMP SA");
            return;
        };
        if header.next_payload == payload_type::FRAGMENT {
            self.fragment_in(now, local, remote, key, &header, data);
            return;
        }
        // A repeated request gets our last reply again (RFC 2408 §5.? retransmission rules).
        if let Some(last) = &p1.last
            && last.request == data
        {
            let reply = last.reply.clone();
            let more = last.more.clone();
            let (l, r) = (p1.local, p1.remote);
            self.stats.duplicates_resent += 1;
            self.send(l, r, reply);
            for d in more {
                self.send(l, r, d);
            }
            return;
        }
        match header.exchange {
            exchange::MAIN => match p1.state {
                P1State::SentMm2 => self.main_mode_3(now, local, remote, key, &header, data),
                P1State::SentMm4 => self.main_mode_5(now, local, remote, key, &header, data),
                P1State::Computing => {
                    dropped!(self.stats.jobs_retransmit_dropped, %remote, "Main Mode message while its handshake job runs; dropped");
                }
                P1State::Established => {
                    self.stats.malformed += 1;
                    debug!(%remote, "dropped Main Mode message for an established SA");
                }
            },
            exchange::QUICK => self.quick_mode(now, local, remote, key, &header, data),
            exchange::INFORMATIONAL => self.informational(now, local, remote, key, &header, data),
            other => {
                dropped!(self.stats.unsupported_exchange, %remote, exchange = other, "exchange type not supported; dropped");
            }
        }
    }

    fn handle_first(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        match header.exchange {
            exchange::MAIN => self.main_mode_1(now, local, remote, header, data),
            exchange::AGGRESSIVE => {
                dropped!(
                    self.stats.aggressive_refused,
                    %remote,
                    "refused Aggressive Mode: its pre-shared-key hash can be cracked offline; \
                     configure the client for Main Mode (on Apple and Android clients: leave the \
                     IPsec identifier / local identifier empty)"
                );
                self.notify_unprotected(
                    local,
                    remote,
                    header,
                    isakmp::notify::INVALID_EXCHANGE_TYPE,
                );
            }
            exchange::INFORMATIONAL => self.informational_unprotected(remote, header, data),
            other => {
                self.stats.unknown_cookies += 1;
                debug!(%remote, exchange = other, "dropped message without a responder cookie");
            }
        }
    }

    /// Time passes: retransmissions, half-open expiry, lifetimes, DPD.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Phase1(c) => self.service_phase1(now, c),
                TimerKey::Child(spi) => self.service_child(now, spi),
                TimerKey::Tombstone(id) => {
                    if let Some(ip) = self.tombstones.remove(&id) {
                        self.release_half_open(ip);
                    }
                }
            }
        }
    }

    fn service_phase1(&mut self, now: Instant, c: Cookies) {
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        if now >= p1.expires {
            let established = p1.state == P1State::Established;
            if established {
                info!(remote = %p1.remote, peer = %p1.peer_id, "ISAKMP SA lifetime ended");
                self.delete_phase1(c, DownReason::Expired, true);
            } else {
                self.stats.half_open_expired += 1;
                debug!(remote = %p1.remote, state = ?p1.state, "half-open ISAKMP SA expired");
                self.remove_phase1(c);
            }
            return;
        }
        // Quick Modes whose message 3 never came: their slot and SPI are freed.
        let expired: Vec<u32> = p1
            .quick
            .iter()
            .filter(|(_, qm)| now >= qm.expires)
            .map(|(mid, _)| *mid)
            .collect();
        for mid in expired {
            if let Some(qm) = p1.quick.remove(&mid) {
                self.pending_spis.remove(&qm.our_spi);
                self.stats.quick_mode_expired += 1;
                debug!(remote = %p1.remote, mid, "Quick Mode expired: message 3 never came");
            }
        }
        let mut resend = Vec::new();
        let mut next = vec![p1.expires];
        next.extend(p1.quick.values().map(|qm| qm.expires));
        let replies = p1
            .last
            .iter_mut()
            .chain(p1.quick.values_mut().map(|qm| &mut qm.last));
        for last in replies {
            if let Some(reply) = last.due(now) {
                resend.push(reply);
            }
            next.extend(last.resend_at);
        }
        let (local, remote) = (p1.local, p1.remote);
        for r in resend {
            self.stats.retransmits += 1;
            self.send(local, remote, r);
        }
        if let Some(at) = self.service_dpd(now, c) {
            next.push(at);
        }
        if self.p1.contains_key(&c)
            && let Some(at) = next.into_iter().min()
        {
            self.arm(at, TimerKey::Phase1(c));
        }
    }

    fn service_child(&mut self, now: Instant, spi: u32) {
        let Some(child) = self.children.get(&spi) else {
            return;
        };
        if now < child.expires {
            let at = child.expires;
            self.arm(at, TimerKey::Child(spi));
            return;
        }
        info!(spi = format_args!("{spi:08x}"), "IPsec SA lifetime ended");
        self.delete_child(spi, DownReason::Expired, true);
    }

    /// Removes a phase 1 and its bookkeeping, with no message and no event.
    pub(crate) fn remove_phase1(&mut self, c: Cookies) -> Option<Phase1> {
        let p1 = self.p1.remove(&c)?;
        self.timers.cancel(TimerKey::Phase1(c));
        self.mm1_index.remove(&(p1.icky, p1.mm1_from));
        for qm in p1.quick.values() {
            self.pending_spis.remove(&qm.our_spi);
        }
        if p1.state != P1State::Established {
            self.release_half_open(p1.mm1_from.ip());
        }
        Some(p1)
    }

    /// A failed handshake (message 3 or 5 refused): the SA goes, but its half-open charge stays
    /// with its source (and the totals) until its half-open timeout would have run out, so that
    /// a peer that loops message 1 and a bad message 3 meets the per-source limit.
    pub(crate) fn fail_half_open(&mut self, now: Instant, c: Cookies) {
        let Some(p1) = self.p1.remove(&c) else {
            return;
        };
        self.timers.cancel(TimerKey::Phase1(c));
        self.mm1_index.remove(&(p1.icky, p1.mm1_from));
        for qm in p1.quick.values() {
            self.pending_spis.remove(&qm.our_spi);
        }
        if p1.state == P1State::Established {
            return;
        }
        let ip = p1.mm1_from.ip();
        if p1.expires > now {
            self.tombstones.insert(p1.id, ip);
            self.arm(p1.expires, TimerKey::Tombstone(p1.id));
        } else {
            self.release_half_open(ip);
        }
    }

    /// The /64 of an IPv6 source (None for IPv4).
    fn v6_prefix(ip: IpAddr) -> Option<[u8; 8]> {
        match ip {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => {
                let mut p = [0u8; 8];
                p.copy_from_slice(&a.octets()[..8]);
                Some(p)
            }
            _ => None,
        }
    }

    /// May a new message 1 from `ip` start a half-open SA? Counts and logs each refusal by its
    /// cause. Established peers never come here (they are found by their cookies first).
    pub(crate) fn admit_half_open(&mut self, remote: SocketAddr) -> bool {
        let ip = remote.ip();
        let cfg = Arc::clone(&self.cfg);
        if self.jobs_outstanding >= cfg.handshake_queue {
            dropped!(self.stats.jobs_busy_dropped, %remote, jobs = self.jobs_outstanding, "handshake job queue full; Main Mode message 1 dropped");
            return false;
        }
        let from_src = self.half_open_by_src.get(&ip).copied().unwrap_or(0);
        if from_src >= cfg.max_half_open_per_source {
            dropped!(self.stats.half_open_source_limited, %remote, from_src, "half-open limit of the source address reached; Main Mode message 1 dropped");
            return false;
        }
        if let Some(prefix) = Self::v6_prefix(ip) {
            let n = self.half_open_by_prefix.get(&prefix).copied().unwrap_or(0);
            if n >= cfg.max_half_open_per_v6_prefix {
                dropped!(self.stats.half_open_prefix_limited, %remote, from_prefix = n, "half-open limit of the source's IPv6 /64 reached; Main Mode message 1 dropped");
                return false;
            }
        }
        // A full table makes room by evicting the oldest SA that still waits for message 3:
        // a flood from spoofed addresses never sends one, so a real client's handshake gets in
        // and completes while the flood's entries are pushed out.
        if self.half_open >= cfg.max_half_open {
            if self.evict_oldest_waiting() {
                return true;
            }
            dropped!(self.stats.half_open_limited, %remote, half_open = self.half_open, "half-open limit reached (none waiting for message 3 to evict); Main Mode message 1 dropped");
            return false;
        }
        // Random early drop: above the threshold a new message 1 is dropped with a probability
        // rising linearly from 0 to 1 at the total limit.
        let threshold = early_drop_start(cfg.early_drop_threshold, cfg.max_half_open);
        if self.half_open >= threshold && cfg.max_half_open > threshold {
            // P(drop) = (half_open - threshold) / (max - threshold); the modulo bias of a 64-bit
            // draw over a range this small is negligible.
            let range = (cfg.max_half_open - threshold) as u64;
            let draw = self.rng.next_u64() % range;
            if draw < (self.half_open - threshold) as u64 {
                dropped!(self.stats.early_dropped, %remote, half_open = self.half_open, "random early drop of Main Mode message 1");
                return false;
            }
        }
        true
    }

    /// Removes the oldest half-open SA that still waits for message 3 (its message 2 answered
    /// nothing). Returns whether one was found.
    fn evict_oldest_waiting(&mut self) -> bool {
        while let Some(c) = self.mm2_order.pop_front() {
            let waiting = self
                .p1
                .get(&c)
                .is_some_and(|p| p.state == P1State::SentMm2 && p.pending.is_none());
            if waiting {
                self.remove_phase1(c);
                self.stats.half_open_evicted += 1;
                if self.stats.half_open_evicted.is_power_of_two() {
                    info!(
                        evicted = self.stats.half_open_evicted,
                        "half-open table full: the oldest handshakes waiting for message 3 make room"
                    );
                }
                return true;
            }
        }
        false
    }

    /// Notes a half-open SA whose message 2 went out, for eviction; entries that moved on or
    /// went are dropped from the front, and the queue is compacted when it grows past four
    /// times the table.
    pub(crate) fn note_mm2(&mut self, c: Cookies) {
        self.mm2_order.push_back(c);
        if self.mm2_order.len() > 4 * self.cfg.max_half_open.max(16) {
            let p1 = &self.p1;
            self.mm2_order
                .retain(|c| p1.get(c).is_some_and(|p| p.state == P1State::SentMm2));
        }
    }

    /// Charges a new half-open SA to `ip`, its /64 and the total.
    pub(crate) fn charge_half_open(&mut self, ip: IpAddr) {
        self.half_open += 1;
        *self.half_open_by_src.entry(ip).or_insert(0) += 1;
        if let Some(prefix) = Self::v6_prefix(ip) {
            *self.half_open_by_prefix.entry(prefix).or_insert(0) += 1;
        }
    }

    pub(crate) fn release_half_open(&mut self, ip: IpAddr) {
        self.half_open = self.half_open.saturating_sub(1);
        if let Some(n) = self.half_open_by_src.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.half_open_by_src.remove(&ip);
            }
        }
        if let Some(prefix) = Self::v6_prefix(ip)
            && let Some(n) = self.half_open_by_prefix.get_mut(&prefix)
        {
            *n -= 1;
            if *n == 0 {
                self.half_open_by_prefix.remove(&prefix);
            }
        }
    }

    /// Ends an ISAKMP SA. Its IPsec SAs move to a newer ISAKMP SA of the same peer if there is one
    /// (a phase-1 rekey must not cut traffic); otherwise they end too.
    pub(crate) fn delete_phase1(&mut self, c: Cookies, reason: DownReason, notify_peer: bool) {
        if notify_peer {
            self.send_delete_isakmp(c);
        }
        let Some(p1) = self.remove_phase1(c) else {
            return;
        };
        let successor = self
            .p1
            .iter()
            .filter(|(_, q)| q.state == P1State::Established && q.peer == p1.peer)
            .max_by_key(|(_, q)| q.created)
            .map(|(k, _)| *k);
        let owned: Vec<u32> = self
            .children
            .iter()
            .filter(|(_, ch)| ch.phase1 == c)
            .map(|(spi, _)| *spi)
            .collect();
        match successor {
            Some(s) if reason != DownReason::DeadPeer => {
                for spi in owned {
                    if let Some(ch) = self.children.get_mut(&spi) {
                        ch.phase1 = s;
                    }
                }
            }
            _ => {
                for spi in owned {
                    self.delete_child(spi, reason, false);
                }
            }
        }
        if p1.state == P1State::Established {
            self.events.push_back(Event::Phase1Down {
                id: p1.id,
                remote: p1.remote,
                reason,
            });
        }
    }

    /// Ends an IPsec SA pair (by our inbound SPI), telling the peer when asked to.
    pub(crate) fn delete_child(&mut self, inbound_spi: u32, reason: DownReason, notify_peer: bool) {
        if notify_peer && let Some(ch) = self.children.get(&inbound_spi) {
            let c = ch.phase1;
            self.send_delete_esp(c, inbound_spi);
        }
        if let Some(ch) = self.children.remove(&inbound_spi) {
            self.timers.cancel(TimerKey::Child(inbound_spi));
            self.events.push_back(Event::ChildSaDown {
                inbound_spi,
                outbound_spi: ch.outbound_spi,
                reason,
            });
        }
    }

    /// The shell ends an IPsec SA (session closed, kilobyte lifetime reached, admin action): a
    /// Delete goes to the peer and a `ChildSaDown` event follows.
    pub fn close_child(&mut self, inbound_spi: u32) {
        self.delete_child(inbound_spi, DownReason::Local, true);
    }

    /// Ends everything of the peer that owns `inbound_spi`: its IPsec SAs and ISAKMP SAs, with
    /// Deletes (admin disconnect).
    pub fn close_peer_of(&mut self, inbound_spi: u32) {
        let Some(ch) = self.children.get(&inbound_spi) else {
            return;
        };
        let peer = ch.peer.clone();
        let spis = self.child_sas_of(&peer);
        for s in spis {
            self.delete_child(s, DownReason::Local, true);
        }
        let p1s: Vec<Cookies> = self
            .p1
            .iter()
            .filter(|(_, p)| p.peer == peer)
            .map(|(c, _)| *c)
            .collect();
        for c in p1s {
            self.delete_phase1(c, DownReason::Local, true);
        }
    }

    /// Clean shutdown: Deletes for every IPsec SA and ISAKMP SA.
    pub fn shutdown(&mut self) {
        let spis: Vec<u32> = self.children.keys().copied().collect();
        for s in spis {
            self.delete_child(s, DownReason::Local, true);
        }
        let p1s: Vec<Cookies> = self.p1.keys().copied().collect();
        for c in p1s {
            let est = self
                .p1
                .get(&c)
                .is_some_and(|p| p.state == P1State::Established);
            self.delete_phase1(c, DownReason::Local, est);
        }
    }

    /// The data plane saw authentic ESP on `inbound_spi`: the peer is alive (no DPD probe needed).
    pub fn esp_activity(&mut self, now: Instant, inbound_spi: u32) {
        let Some(ch) = self.children.get(&inbound_spi) else {
            return;
        };
        let c = ch.phase1;
        if let Some(p1) = self.p1.get_mut(&c) {
            p1.dpd.last_activity = now;
        }
    }

    /// IPsec SAs of the peer with this (IP, ID): INITIAL-CONTACT and rekey matching.
    pub(crate) fn child_sas_of(&self, peer: &PeerKey) -> Vec<u32> {
        self.children
            .iter()
            .filter(|(_, c)| c.peer == *peer)
            .map(|(s, _)| *s)
            .collect()
    }

    pub(crate) fn register_child(
        &mut self,
        child: &ChildSa,
        phase1: Cookies,
        peer: PeerKey,
        now: Instant,
    ) {
        let expires = now + child.lifetime;
        self.children.insert(
            child.inbound_spi,
            ChildEntry {
                phase1,
                peer,
                outbound_spi: child.outbound_spi,
                expires,
                local_selector: child.local_selector.clone(),
                remote_selector: child.remote_selector.clone(),
            },
        );
        self.arm(expires, TimerKey::Child(child.inbound_spi));
    }

    /// Counts and logs a protected message dropped by [`Phase1::open_hashed`].
    pub(crate) fn hashed_dropped(&mut self, remote: SocketAddr, what: &str, e: &HashedError) {
        match e {
            HashedError::Mismatch => {
                self.stats.hash_mismatch += 1;
                warn!(%remote, "{what}: HASH(1) does not match; message dropped");
            }
            HashedError::Malformed(err) => {
                self.stats.malformed += 1;
                info!(%remote, error = %err, "{what} did not decrypt to valid payloads");
            }
            HashedError::NoHash => {
                self.stats.malformed += 1;
                info!(%remote, "{what} does not start with HASH(1); dropped");
            }
            HashedError::Undecryptable => self.stats.malformed += 1,
        }
    }

    /// A fresh inbound SPI: random, outside the reserved 1-255, unused.
    pub(crate) fn new_spi(&mut self) -> u32 {
        loop {
            let spi = self.random_u32_nonzero();
            if spi > 255
                && !self.children.contains_key(&spi)
                && !self.pending_spis.contains_key(&spi)
            {
                return spi;
            }
        }
    }
}

/// The half-open count from which random early drop starts: `fraction` of `max`, rounded up
/// (a fraction of 1 or more, or a NaN, disables it).
pub(crate) fn early_drop_start(fraction: f64, max: usize) -> usize {
    if fraction.is_nan() || fraction >= 1.0 {
        return max;
    }
    let f = fraction.max(0.0);
    ((max as f64) * f).ceil() as usize
}
