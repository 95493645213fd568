//! The control side of the data plane: IPsec SAs, the clients they belong to, the session
//! layer, and what the data-plane workers must know of them.
//!
//! The forwarding itself is a [`Worker`]'s: the gateway keeps one inline worker (the server's
//! own, for a single-threaded shell and the in-memory tests) and tells it, and through
//! [`Gateway::poll_update`] every other worker, of each SA and session change as an
//! [`Update`]. A packet's way in: [`Gateway::esp_in`] gives it to the inline worker; what the
//! worker does not forward itself (L2TP control, PPP control, data of sessions not yet up)
//! comes back to [`Gateway::control_in`], which drives the session layer. ESP for an unknown SPI
//! may complete a Quick Mode waiting for its message 3.
//!
//! And out: [`Gateway::tun_in`] is the worker's. The L2TP control channel and PPP control
//! frames come out of [`Gateway::poll_transmit`], sealed with the client's newest SA.
//!
//! An IPsec client is one [`PeerId`]: its first IPsec SA gets a new id, an SA that replaces
//! another (a rekey) inherits it, so an L2TP tunnel outlives rekeys and two clients behind one
//! NAT are two peers. When a client's last SA goes, its tunnels end.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Config;
use super::packet::write_udp_header;
pub use super::packet::{
    FromTun, HEADROOM, L2TP_PORT, Stats, TAILROOM, Transmit, Via, describe_inner, describe_l2tp,
    set_udp6_checksum, split_udp,
};
use super::worker::{
    EspIn, Note, PeerOut, SaPath, SharedSa, Update, Worker, WorkerConfig, offset_in,
};
use crate::esp::{InboundSa, OutboundSa};
use crate::ike::{self, ChildSa, Responder};
use crate::l2tp::{self, PeerId, SessionRef};
use crate::session::{self, RouteChange, Sessions};
use std::sync::Arc;

/// Plain-mode (test-only) peers get ids from here up, apart from IPsec clients' ids.
const PLAIN_PEER_BASE: PeerId = 1 << 48;

struct SaPair {
    sa: Arc<SharedSa>,
    child: ChildSa,
    /// The inbound packet count last reported to IKE as activity (DPD).
    seen_packets: u64,
    /// The IPsec client (L2TP peer) this SA belongs to.
    client: PeerId,
}

/// What the admin sees of one session ([`Gateway::sessions`]).
#[derive(Debug, Clone)]
pub struct SessionView {
    /// `peer-tunnel-session`, unique while the session lasts.
    pub id: String,
    /// The session.
    pub session: SessionRef,
    /// The user, once known.
    pub user: Option<String>,
    /// The client's address, once assigned.
    pub address: Option<Ipv4Addr>,
    /// The client's public address and port (as the server sees it, after any NAT).
    pub client: Option<SocketAddr>,
    /// `up`, or `connecting` before IPCP is up.
    pub up: bool,
    /// How long ago the L2TP call came up.
    pub age: Duration,
    /// Counters.
    pub traffic: session::Traffic,
    /// IKE (phase 1) algorithms.
    pub ike: String,
    /// ESP algorithms, mode and encapsulation.
    pub esp: String,
    /// How the IPsec peer authenticated: `psk` or `certificate <subject>`.
    pub auth: String,
    /// Acct-Session-Id (RADIUS accounting).
    pub acct_session_id: String,
}

/// The session id an admin types: `peer-tunnel-session`.
pub fn session_id(s: SessionRef) -> String {
    format!("{}-{}-{}", s.peer, s.tunnel, s.session)
}

/// The control side of the data plane.
pub struct Gateway {
    config: Config,
    sessions: Sessions,
    /// SAs by inbound SPI.
    sas: HashMap<u32, SaPair>,
    /// Inbound SPIs per IPsec client, oldest first.
    clients: HashMap<PeerId, Vec<u32>>,
    next_client: PeerId,
    /// Phase-1 algorithms and authentication, by phase-1 id.
    phase1: HashMap<u64, (String, String, Option<String>)>,
    /// Plain mode (test only): peers by address and back.
    plain: bool,
    plain_peers: HashMap<SocketAddr, PeerId>,
    plain_addrs: HashMap<PeerId, SocketAddr>,
    /// Test-only: reflect every decrypted UDP datagram back to its sender.
    test_echo: bool,
    echo: VecDeque<(u32, Vec<u8>)>,
    /// The server's own forwarding path (single-threaded shells, tests, and packets the
    /// control plane handles itself).
    worker: Worker,
    /// Updates for the other workers, when there are any.
    outbox: VecDeque<Update>,
    external_workers: bool,
    /// Counters of the other workers, as last reported.
    worker_stats: Stats,
    /// When ESP activity was last reported to IKE.
    activity_reported: Option<Instant>,
    stats: Stats,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("sas", &self.sas.len())
            .field("clients", &self.clients.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A data plane over `sessions`.
    pub fn new(config: Config, mut sessions: Sessions) -> Self {
        sessions.set_timeouts(config.idle_timeout, config.session_timeout);
        Gateway {
            worker: Worker::new(worker_config(&config)),
            outbox: VecDeque::new(),
            external_workers: false,
            worker_stats: Stats::default(),
            activity_reported: None,
            config,
            sessions,
            sas: HashMap::new(),
            clients: HashMap::new(),
            next_client: 1,
            phase1: HashMap::new(),
            plain: false,
            plain_peers: HashMap::new(),
            plain_addrs: HashMap::new(),
            test_echo: false,
            echo: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Data-plane workers besides the inline one will forward: from now on every change is
    /// also queued for [`poll_update`](Self::poll_update). Call before the first SA.
    pub fn set_external_workers(&mut self, on: bool) {
        self.external_workers = on;
    }

    /// What the workers need of the settings.
    pub fn worker_config(&self) -> WorkerConfig {
        worker_config(&self.config)
    }

    /// The next message for the data-plane workers (each gets every message, in order).
    pub fn poll_update(&mut self) -> Option<Update> {
        self.sync_routes();
        self.outbox.pop_front()
    }

    /// The other workers' counters, summed (the shell reports them now and then).
    pub fn set_worker_stats(&mut self, stats: Stats) {
        self.worker_stats = stats;
    }

    fn publish(&mut self, u: Update) {
        if self.external_workers {
            self.outbox.push_back(u.clone());
        }
        self.worker.update(u);
    }

    /// Hands the session layer's route changes to the workers.
    fn sync_routes(&mut self) {
        while let Some(r) = self.sessions.poll_route() {
            let u = match r {
                RouteChange::Up(route) => Update::RouteUp(route),
                RouteChange::Down { session, address } => Update::RouteDown { session, address },
            };
            self.publish(u);
        }
    }

    /// How `client`'s packets leave now: its newest SA, its plain-mode address, or none.
    fn publish_peer(&mut self, client: PeerId) {
        let out = match self.clients.get(&client).and_then(|s| s.last()) {
            Some(&spi) => Some(PeerOut::Sa(spi)),
            None => self.plain_addrs.get(&client).map(|&a| PeerOut::Plain(a)),
        };
        self.publish(Update::Peer { peer: client, out });
    }

    /// Test-only: serve L2TP in clear ([`Gateway::plain_in`]). Never for production.
    pub fn set_plain_l2tp(&mut self, on: bool) {
        self.plain = on;
    }

    /// Test-only: send every decrypted UDP datagram back through the SA, ports swapped.
    pub fn set_test_echo(&mut self, on: bool) {
        self.test_echo = on;
    }

    /// New settings that can change while running (timeouts, MTU, MSS clamping); the TUN
    /// device's name, address and routes stay as they were.
    pub fn reconfigure(&mut self, config: Config) {
        self.sessions
            .set_timeouts(config.idle_timeout, config.session_timeout);
        self.config = Config {
            tun: self.config.tun,
            tun_name: self.config.tun_name.clone(),
            local_address: self.config.local_address,
            routes: self.config.routes.clone(),
            ..config
        };
        self.publish(Update::Config(worker_config(&self.config)));
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session layer.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The session layer, to drive it (authentication answers).
    pub fn sessions_mut(&mut self) -> &mut Sessions {
        &mut self.sessions
    }

    /// Counters: the control plane's, the inline worker's and the other workers'.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.add(self.worker.stats());
        s.add(&self.worker_stats);
        s
    }

    /// IPsec SAs installed.
    pub fn sa_count(&self) -> usize {
        self.sas.len()
    }

    /// The clients' public addresses for NAT keepalives (RFC 3948 §4): one per UDP-encapsulated
    /// client, with the local address to send from.
    pub fn keepalive_targets(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let mut t: Vec<(SocketAddr, SocketAddr)> = self
            .sas
            .values()
            .filter(|p| p.child.udp_encap)
            .map(|p| (p.child.local, p.child.remote))
            .collect();
        t.sort();
        t.dedup();
        t
    }

    // ---- IKE events -------------------------------------------------------------------------

    /// Follows the IKE responder: SAs installed and removed, peers that moved.
    pub fn on_ike_event(&mut self, now: Instant, ev: ike::Event) {
        match ev {
            ike::Event::Phase1Up {
                id,
                algorithms,
                auth,
                cert_user,
                ..
            } => {
                self.phase1.insert(id, (algorithms, auth, cert_user));
            }
            ike::Event::Phase1Down { id, .. } => {
                self.phase1.remove(&id);
            }
            ike::Event::ChildSaUp(child) => self.install(now, *child),
            ike::Event::ChildSaDown {
                inbound_spi,
                reason,
                ..
            } => {
                if let Some(pair) = self.sas.remove(&inbound_spi) {
                    info!(
                        spi_in = format_args!("{inbound_spi:08x}"),
                        ?reason,
                        "IPsec SA removed"
                    );
                    self.publish(Update::SaDown { spi: inbound_spi });
                    self.sa_gone(now, pair.client, inbound_spi);
                }
            }
            ike::Event::PeerMoved {
                inbound_spis,
                remote,
                ..
            } => {
                for s in inbound_spis {
                    if let Some(p) = self.sas.get_mut(&s) {
                        p.child.remote = remote;
                        self.publish(Update::SaMoved { spi: s, remote });
                    }
                }
            }
        }
    }

    fn install(&mut self, now: Instant, child: ChildSa) {
        let inbound = InboundSa::new(child.inbound_spi, child.suite, &child.inbound_keymat);
        let outbound = OutboundSa::new(child.outbound_spi, child.suite, &child.outbound_keymat);
        let (inbound, outbound) = match (inbound, outbound) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "cannot install IPsec SA");
                return;
            }
        };
        info!(
            remote = %child.remote,
            spi_in = format_args!("{:08x}", child.inbound_spi),
            spi_out = format_args!("{:08x}", child.outbound_spi),
            udp_encap = child.udp_encap,
            "IPsec SA installed"
        );
        let client = child
            .replaces
            .iter()
            .find_map(|spi| self.sas.get(spi).map(|p| p.client))
            .unwrap_or_else(|| {
                let c = self.next_client;
                self.next_client += 1;
                info!(peer = c, remote = %child.remote, id = %child.peer_id, "new IPsec client (L2TP peer)");
                c
            });
        self.clients
            .entry(client)
            .or_default()
            .push(child.inbound_spi);
        let spi = child.inbound_spi;
        let sa = Arc::new(SharedSa::new(inbound, outbound, client, child.lifetime_kb));
        let path = SaPath {
            local: child.local,
            remote: child.remote,
            udp_encap: child.udp_encap,
        };
        self.publish(Update::SaUp {
            spi,
            sa: sa.clone(),
            path,
        });
        self.publish_peer(client);
        let _ = now;
        self.sas.insert(
            spi,
            SaPair {
                sa,
                child,
                seen_packets: 0,
                client,
            },
        );
    }

    /// An SA of `client` is gone; with its last one, its L2TP tunnels end.
    fn sa_gone(&mut self, now: Instant, client: PeerId, inbound_spi: u32) {
        let Some(spis) = self.clients.get_mut(&client) else {
            return;
        };
        spis.retain(|&s| s != inbound_spi);
        if spis.is_empty() {
            self.clients.remove(&client);
            self.sessions.peer_gone(now, client);
        }
        self.publish_peer(client);
        self.sync_routes();
    }

    /// Tells IKE which SAs passed authentic ESP since the last report (for DPD: a peer that
    /// sends is alive), at most once a second. The workers count; the control plane looks.
    pub fn report_activity(&mut self, ike: &mut Responder, now: Instant) {
        if self
            .activity_reported
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.activity_reported = Some(now);
        for (&spi, pair) in &mut self.sas {
            let n = pair.sa.inbound.packets();
            if n != pair.seen_packets {
                pair.seen_packets = n;
                ike.esp_activity(now, spi);
            }
        }
    }

    /// What a worker says (an SA limit reached).
    pub fn on_note(&mut self, ike: &mut Responder, note: Note) {
        match note {
            Note::SaLimit { spi, reason } => {
                if let Some(pair) = self.sas.get(&spi) {
                    info!(
                        spi_in = format_args!("{spi:08x}"),
                        bytes = pair.sa.inbound.bytes() + pair.sa.outbound.bytes(),
                        %reason,
                        "deleting the IPsec SA so that the client negotiates a new one"
                    );
                    ike.close_child(spi);
                }
            }
        }
    }

    /// The inline worker's notes.
    fn worker_notes(&mut self, ike: &mut Responder) {
        while let Some(n) = self.worker.poll_note() {
            self.on_note(ike, n);
        }
    }

    // ---- the way in -------------------------------------------------------------------------

    /// An ESP packet (from UDP 4500 after the non-ESP-marker check, or from a raw socket after
    /// its IP header) from `from`, through the inline worker. Returns where the client's IPv4
    /// packet lies in `packet`, for the TUN device; control traffic is handled and may leave
    /// datagrams for [`poll_transmit`](Self::poll_transmit).
    pub fn esp_in(
        &mut self,
        ike: &mut Responder,
        now: Instant,
        packet: &mut [u8],
        from: SocketAddr,
    ) -> Option<Range<usize>> {
        self.sync_routes();
        let mut r = self.worker.esp_in(now, packet, from);
        if let EspIn::UnknownSpi(spi) = r {
            r = if self.confirm_pending(ike, now, spi, packet) {
                self.worker.esp_in(now, packet, from)
            } else {
                dropped!(self.stats.esp_unknown_spi, %from, spi = format_args!("{spi:08x}"), "ESP for an unknown SPI dropped");
                EspIn::Dropped
            };
        }
        self.worker_notes(ike);
        match r {
            EspIn::Tun(range) => Some(range),
            EspIn::Control {
                client,
                spi,
                datagram,
            } => {
                let at = datagram.start;
                let inner = self.control_in(now, client, spi, packet.get_mut(datagram)?)?;
                Some(inner.start + at..inner.end + at)
            }
            EspIn::UnknownSpi(_) | EspIn::Dropped => None,
        }
    }

    /// An authentic UDP datagram (header included) from IPsec `client` through SA `spi` that
    /// the worker left to the control plane: L2TP control, PPP control, data of a session not
    /// yet up. Returns where an IPv4 packet for the TUN device lies in it, if it holds one.
    pub fn control_in(
        &mut self,
        now: Instant,
        client: PeerId,
        spi: u32,
        datagram: &mut [u8],
    ) -> Option<Range<usize>> {
        if self.test_echo {
            let mut e = datagram.to_vec();
            if e.len() >= 8 {
                e.swap(0, 2);
                e.swap(1, 3);
                e[6..8].copy_from_slice(&[0, 0]);
                self.echo.push_back((spi, e));
            }
            return None;
        }
        let (sport, dport, body) = split_udp(datagram)?;
        if dport != L2TP_PORT {
            dropped!(
                self.stats.esp_not_l2tp,
                spi = format_args!("{spi:08x}"),
                dport,
                "decrypted UDP not for L2TP; dropped"
            );
            return None;
        }
        let ip = self.sessions.handle_l2tp(now, client, sport, body)?;
        let start = offset_in(datagram, ip.packet);
        let range = start..start + ip.packet.len();
        self.sync_routes();
        match self.worker.finish_inbound(datagram, range) {
            EspIn::Tun(r) => Some(r),
            _ => None,
        }
    }

    /// ESP for an SPI of a Quick Mode that waits for its message 3 (lost, or overtaken by this
    /// packet on another socket): if the pending keys authenticate the packet, the exchange is
    /// complete and its SA installed (the responder's events are followed here). Costs one trial
    /// decryption of a copy, and only for an SPI the responder just handed out.
    fn confirm_pending(
        &mut self,
        ike: &mut Responder,
        now: Instant,
        spi: u32,
        packet: &[u8],
    ) -> bool {
        let Some((suite, keymat)) = ike.pending_child_keys(spi) else {
            return false;
        };
        let Ok(trial) = InboundSa::new(spi, suite, &keymat) else {
            return false;
        };
        let mut copy = packet.to_vec();
        if trial.decrypt(&mut copy).is_err() || !ike.confirm_quick_mode(now, spi) {
            return false;
        }
        self.stats.implicit_qm3 += 1;
        while let Some(ev) = ike.poll_event() {
            self.on_ike_event(now, ev);
        }
        self.worker.has_sa(spi)
    }

    /// A datagram on the cleartext L2TP port: dropped and counted unless plain mode is on.
    pub fn plain_in(
        &mut self,
        now: Instant,
        data: &mut [u8],
        remote: SocketAddr,
    ) -> Option<Range<usize>> {
        if !self.plain {
            self.stats.cleartext_l2tp_dropped += 1;
            if self.stats.cleartext_l2tp_dropped.is_power_of_two() {
                warn!(%remote, dropped = self.stats.cleartext_l2tp_dropped, "L2TP without IPsec dropped: clients must connect with L2TP/IPsec");
            }
            return None;
        }
        let peer = match self.plain_peers.get(&remote) {
            Some(&p) => p,
            None => {
                let p = PLAIN_PEER_BASE + self.plain_peers.len() as PeerId;
                info!(peer = p, %remote, "new cleartext L2TP peer (test mode)");
                self.plain_peers.insert(remote, p);
                self.plain_addrs.insert(p, remote);
                self.publish_peer(p);
                p
            }
        };
        let ip = self.sessions.handle_l2tp(now, peer, remote.port(), data)?;
        let start = offset_in(data, ip.packet);
        let range = start..start + ip.packet.len();
        self.sync_routes();
        match self.worker.finish_inbound(data, range) {
            EspIn::Tun(r) => Some(r),
            _ => None,
        }
    }

    // ---- the way out ------------------------------------------------------------------------

    /// A packet read from the TUN device into `buf[HEADROOM..HEADROOM + len]` (`buf` has at
    /// least [`TAILROOM`] bytes after it), through the inline worker: sealed in place for its
    /// client.
    pub fn tun_in(
        &mut self,
        ike: &mut Responder,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> FromTun<'_> {
        self.sync_routes();
        while let Some(n) = self.worker.poll_note() {
            self.on_note(ike, n);
        }
        let r = self.worker.tun_in(now, buf, len);
        // Notes of this packet wait for the next call (the result borrows the worker).
        r
    }

    /// The next control datagram (L2TP control, PPP control frames, test echoes), sealed into
    /// `buf` (at least 64 KiB + [`HEADROOM`] + [`TAILROOM`] covers every datagram).
    pub fn poll_transmit(&mut self, ike: &mut Responder, buf: &mut [u8]) -> Option<Transmit> {
        self.sync_routes();
        let t = self.next_transmit(buf);
        self.worker_notes(ike);
        t
    }

    fn next_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            if let Some((spi, datagram)) = self.echo.pop_front() {
                let Some(end) = HEADROOM.checked_add(datagram.len()) else {
                    continue;
                };
                let Some(dst) = buf.get_mut(HEADROOM..end) else {
                    continue;
                };
                dst.copy_from_slice(&datagram);
                if let Some(t) = self.worker.seal(spi, buf, HEADROOM..end) {
                    return Some(t);
                }
                continue;
            }
            let t = self.sessions.poll_transmit()?;
            if let Some(sent) = self.seal_l2tp(&t, buf) {
                return Some(sent);
            }
        }
    }

    fn seal_l2tp(&mut self, t: &l2tp::Transmit, buf: &mut [u8]) -> Option<Transmit> {
        let udp_start = HEADROOM - 8;
        let end = HEADROOM.checked_add(t.payload.len())?;
        buf.get_mut(HEADROOM..end)?.copy_from_slice(&t.payload);
        if let Some(&addr) = self.plain_addrs.get(&t.peer) {
            return Some(Transmit {
                via: Via::PlainL2tp {
                    remote: SocketAddr::new(addr.ip(), t.port),
                },
                range: HEADROOM..end,
            });
        }
        write_udp_header(
            buf.get_mut(udp_start..HEADROOM)?,
            t.port,
            8 + t.payload.len(),
        );
        self.worker.seal_for(t.peer, buf, udp_start..end)
    }

    // ---- control ----------------------------------------------------------------------------

    /// The public address (and port) of a session's client and the server address it talks
    /// to, from its newest IPsec SA (or the plain-mode peer): RADIUS's Calling-Station-Id and
    /// Called-Station-Id.
    pub fn endpoints(&self, session: SessionRef) -> Option<(SocketAddr, IpAddr)> {
        let newest = self
            .clients
            .get(&session.peer)
            .and_then(|spis| spis.last())
            .and_then(|spi| self.sas.get(spi));
        match newest {
            Some(p) => Some((p.child.remote, p.child.local.ip())),
            None => self
                .plain_addrs
                .get(&session.peer)
                .map(|a| (*a, IpAddr::from([0, 0, 0, 0]))),
        }
    }

    /// The VPN user that the certificate of `peer`'s IPsec peer was issued for, when it
    /// authenticated with a certificate that maps to a user (not with a PSK or a device
    /// certificate).
    pub fn cert_user(&self, peer: PeerId) -> Option<&str> {
        let spi = self.clients.get(&peer)?.last()?;
        let phase1 = self.sas.get(spi)?.child.phase1;
        self.phase1.get(&phase1)?.2.as_deref()
    }

    /// Every session, for the admin.
    pub fn sessions_view(&self, now: Instant) -> Vec<SessionView> {
        let mut v: Vec<SessionView> = self
            .sessions
            .iter()
            .map(|s| {
                let newest = self
                    .clients
                    .get(&s.session.peer)
                    .and_then(|spis| spis.last())
                    .and_then(|spi| self.sas.get(spi));
                let client = newest
                    .map(|p| p.child.remote)
                    .or_else(|| self.plain_addrs.get(&s.session.peer).copied());
                let (ike, auth, _) = newest
                    .and_then(|p| self.phase1.get(&p.child.phase1))
                    .cloned()
                    .unwrap_or_default();
                let esp = newest.map_or_else(
                    || "none (plain L2TP, test mode)".into(),
                    |p| p.child.algorithms.clone(),
                );
                SessionView {
                    id: session_id(s.session),
                    session: s.session,
                    user: s.user.map(str::to_string),
                    address: s.address,
                    client,
                    up: s.up,
                    age: now.saturating_duration_since(s.started),
                    traffic: s.traffic,
                    ike,
                    esp,
                    auth,
                    acct_session_id: s.acct_session_id.to_string(),
                }
            })
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.age));
        v
    }

    /// Ends the sessions whose id is `target`, or whose user is `target` (any case). Returns how
    /// many.
    pub fn disconnect(&mut self, now: Instant, target: &str) -> usize {
        let hits: Vec<SessionRef> = self
            .sessions
            .iter()
            .filter(|s| {
                session_id(s.session) == target
                    || s.user.is_some_and(|u| u.eq_ignore_ascii_case(target))
            })
            .map(|s| s.session)
            .collect();
        for &s in &hits {
            info!(id = %session_id(s), "administrative disconnect");
            self.sessions
                .disconnect(now, s, "administrative disconnect");
        }
        hits.len()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions.poll_timeout()
    }

    /// Runs every due timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sessions.handle_timeout(now);
    }

    /// Server shutdown: LCP Terminate, CDN and StopCCN to every client (through
    /// [`poll_transmit`](Self::poll_transmit)); the caller then deletes the IPsec SAs.
    pub fn shutdown(&mut self, now: Instant) {
        self.sessions.shutdown(now);
    }

    /// Tunnels still open, closing ones included until the client has acknowledged their StopCCN
    /// (or stopped answering): after [`shutdown`](Self::shutdown), the caller waits for this to
    /// reach zero before deleting the IPsec SAs.
    pub fn tunnels(&self) -> usize {
        self.sessions.lns().unfinished_tunnel_count()
    }
}

/// What a worker needs of the data-plane settings.
fn worker_config(c: &Config) -> WorkerConfig {
    WorkerConfig {
        mss_clamp: c.mss_clamp,
        mtu: c.mtu,
        local_address: c.local_address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::{Encryption, Integrity, Suite};
    use crate::ike::Selector;
    use zeroize::Zeroizing;

    const SPI_IN: u32 = 0x1000_0001;
    const SPI_OUT: u32 = 0x2000_0002;

    fn suite() -> Suite {
        Suite {
            encryption: Encryption::AesCbc { key_len: 16 },
            integrity: Integrity::HmacSha1_96,
        }
    }

    fn keymat(byte: u8) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(vec![byte; suite().keymat_len()])
    }

    fn any_selector() -> Selector {
        Selector {
            first: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            last: IpAddr::V4(Ipv4Addr::BROADCAST),
            protocol: 17,
            port: 1701,
        }
    }

    /// A gateway with one installed SA from 192.0.2.100:4500, and the client's halves of it.
    fn world() -> (Gateway, Responder, OutboundSa, InboundSa) {
        let pool = pppd_lite::pool::AddressPool::builder()
            .range(Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 20))
            .build()
            .unwrap();
        let sessions = Sessions::new(
            session::Config {
                lns: l2tp::LnsConfig::default(),
                ppp: pppd_lite::Config::server(pppd_lite::ServerConfig::default()),
                pool,
            },
            [3; 32],
        );
        let mut gw = Gateway::new(
            Config {
                tun: false,
                ..Config::default()
            },
            sessions,
        );
        let ike = Responder::seeded(Arc::new(ike::Config::default()), 1);
        let child = ChildSa {
            phase1: 1,
            peer_id: "192.0.2.100".into(),
            inbound_spi: SPI_IN,
            outbound_spi: SPI_OUT,
            suite: suite(),
            inbound_keymat: keymat(1),
            outbound_keymat: keymat(2),
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "192.0.2.100:4500".parse().unwrap(),
            udp_encap: true,
            tunnel: false,
            peer_original: None,
            local_selector: any_selector(),
            remote_selector: any_selector(),
            lifetime: Duration::from_secs(3600),
            lifetime_kb: None,
            replaces: Vec::new(),
            algorithms: "AES-CBC-128/HMAC-SHA1-96".into(),
        };
        gw.on_ike_event(Instant::now(), ike::Event::ChildSaUp(Box::new(child)));
        let client_out = OutboundSa::new(SPI_IN, suite(), &keymat(1)).unwrap();
        let client_in = InboundSa::new(SPI_OUT, suite(), &keymat(2)).unwrap();
        (gw, ike, client_out, client_in)
    }

    /// `datagram` (UDP) sealed by the client for the server.
    fn seal(out: &mut OutboundSa, datagram: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADROOM + datagram.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + datagram.len()].copy_from_slice(datagram);
        let r = out
            .encrypt(&mut buf, HEADROOM..HEADROOM + datagram.len(), 17)
            .unwrap();
        buf[r].to_vec()
    }

    fn udp_1701(body: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 8];
        write_udp_header(&mut d, 1701, 8 + body.len());
        d.extend_from_slice(body);
        d
    }

    #[test]
    fn sccrq_through_esp_gets_a_sealed_answer_to_the_client() {
        let (mut gw, mut ike, mut out, inb) = world();
        // A minimal SCCRQ (RFC 2661 §6.1): Message Type, Protocol Version, Host Name, Framing
        // Capabilities, Assigned Tunnel ID.
        let mut avps = Vec::new();
        let mut avp = |attr: u16, value: &[u8]| {
            let len = (6 + value.len()) as u16 | 0x8000;
            avps.extend_from_slice(&len.to_be_bytes());
            avps.extend_from_slice(&0u16.to_be_bytes());
            avps.extend_from_slice(&attr.to_be_bytes());
            avps.extend_from_slice(value);
        };
        avp(0, &1u16.to_be_bytes());
        avp(2, &[1, 0]);
        avp(7, b"client");
        avp(3, &3u32.to_be_bytes());
        avp(9, &77u16.to_be_bytes());
        let mut l2tp = vec![0xc8, 0x02];
        l2tp.extend_from_slice(&((12 + avps.len()) as u16).to_be_bytes());
        l2tp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        l2tp.extend_from_slice(&avps);
        let mut esp = seal(&mut out, &udp_1701(&l2tp));
        let from: SocketAddr = "192.0.2.100:4500".parse().unwrap();
        assert!(
            gw.esp_in(&mut ike, Instant::now(), &mut esp, from)
                .is_none()
        );
        let mut buf = vec![0u8; HEADROOM + 65536 + TAILROOM];
        let t = gw.poll_transmit(&mut ike, &mut buf).expect("the SCCRP");
        assert_eq!(
            t.via,
            Via::Udp {
                local: "192.0.2.1:4500".parse().unwrap(),
                remote: from
            }
        );
        let mut packet = buf[t.range].to_vec();
        let d = inb.decrypt(&mut packet).expect("the client opens it");
        let inner = &packet[d.payload];
        let (sport, dport, body) = split_udp(inner).unwrap();
        assert_eq!((sport, dport), (1701, 1701));
        assert_eq!(&body[..2], &[0xc8, 0x02], "an L2TP control message");
        assert_eq!(
            u16::from_be_bytes([body[4], body[5]]),
            77,
            "to the client's tunnel"
        );
        assert!(describe_l2tp(body).contains("SCCRP"));
    }

    #[test]
    fn packets_for_no_session_are_counted_not_sent() {
        let (mut gw, mut ike, _, _) = world();
        let mut buf = vec![0u8; HEADROOM + 1500 + TAILROOM];
        let packet = [
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 51, 100, 7, 10, 77, 0, 15, 0, 53, 0,
            53, 0, 8, 0, 0,
        ];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(&packet);
        assert!(matches!(
            gw.tun_in(&mut ike, Instant::now(), &mut buf, packet.len()),
            FromTun::Dropped
        ));
        buf[HEADROOM] = 0x60;
        assert!(matches!(
            gw.tun_in(&mut ike, Instant::now(), &mut buf, packet.len()),
            FromTun::Dropped
        ));
        assert_eq!(gw.stats().tun_no_session, 1);
        assert_eq!(gw.stats().tun_not_ipv4, 1);
        // ESP for an SPI we do not have, and a tampered packet.
        let mut stray = vec![0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 1, 2, 3];
        let from: SocketAddr = "203.0.113.9:4500".parse().unwrap();
        assert!(
            gw.esp_in(&mut ike, Instant::now(), &mut stray, from)
                .is_none()
        );
        assert_eq!(gw.stats().esp_unknown_spi, 1);
    }

    #[test]
    fn a_rekeyed_sa_keeps_the_client_and_its_last_sa_going_ends_it() {
        let (mut gw, _ike, _, _) = world();
        let now = Instant::now();
        let peer = gw.sas[&SPI_IN].client;
        // The client's phase-2 rekey: a new SA that replaces the first one.
        let mut child = gw.sas[&SPI_IN].child.clone();
        child.inbound_spi = SPI_IN + 1;
        child.outbound_spi = SPI_OUT + 1;
        child.replaces = vec![SPI_IN];
        gw.on_ike_event(now, ike::Event::ChildSaUp(Box::new(child)));
        assert_eq!(gw.sas[&(SPI_IN + 1)].client, peer, "same L2TP peer");
        let down = |spi: u32| ike::Event::ChildSaDown {
            inbound_spi: spi,
            outbound_spi: 0,
            reason: ike::DownReason::Expired,
        };
        gw.on_ike_event(now, down(SPI_IN));
        assert_eq!(gw.clients[&peer], vec![SPI_IN + 1], "the client stays");
        gw.on_ike_event(now, down(SPI_IN + 1));
        assert_eq!(gw.sa_count(), 0);
        assert!(
            gw.clients.is_empty(),
            "its last SA gone, the client is gone"
        );
    }

    proptest::proptest! {
        #[test]
        fn esp_in_is_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), spi_ok in proptest::bool::ANY) {
            let (mut gw, mut ike, _, _) = world();
            let mut packet = bytes;
            if spi_ok && packet.len() >= 4 {
                packet[..4].copy_from_slice(&SPI_IN.to_be_bytes());
            }
            let from: SocketAddr = "192.0.2.100:4500".parse().unwrap();
            let _ = gw.esp_in(&mut ike, Instant::now(), &mut packet, from);
        }

        #[test]
        fn anything_inside_valid_esp_is_total(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300), port in 1700u16..1703) {
            let (mut gw, mut ike, mut out, _) = world();
            let mut d = udp_1701(&body);
            d[2..4].copy_from_slice(&port.to_be_bytes());
            let mut esp = seal(&mut out, &d);
            let from: SocketAddr = "192.0.2.100:4500".parse().unwrap();
            let _ = gw.esp_in(&mut ike, Instant::now(), &mut esp, from);
            let mut buf = vec![0u8; HEADROOM + 65536 + TAILROOM];
            while gw.poll_transmit(&mut ike, &mut buf).is_some() {}
        }

        #[test]
        fn tun_in_is_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1600)) {
            let (mut gw, mut ike, _, _) = world();
            let mut buf = vec![0u8; HEADROOM + bytes.len() + TAILROOM];
            buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(&bytes);
            let _ = gw.tun_in(&mut ike, Instant::now(), &mut buf, bytes.len());
        }
    }
}
