//! One user's connection: an L2TP session, its PPP link, the user and the address.
//!
//! [`Sessions`] is a sans-IO core like the others. It owns the L2TP LNS, one [`Ppp`] per L2TP
//! session, the address pool and the per-user session counts. It is driven with L2TP datagrams
//! (from a client's IPsec SA, or in clear in the test-only plain mode), timeouts and
//! authentication decisions, and gives back L2TP datagrams to send and events:
//! [`Event::Authenticate`] asks the owner to check credentials (local users, later RADIUS or
//! PAM) without blocking anything; the answer comes back through [`Sessions::authenticated`].
//!
//! Ladder of a session: L2TP `SessionUp` → PPP opened (LCP) → `Authenticate` → decision →
//! PPP `Authenticated` → an address from the pool (the user's static address, or a dynamic
//! one) → IPCP → [`Event::Up`]. Any end (PPP down, L2TP CDN or StopCCN, the IPsec SA gone,
//! administrative disconnect) releases the address and gives one [`Event::Down`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pppd_lite::pool::{AddressPool, PoolError};
use pppd_lite::{AuthRequest, DropReason, Input, Ppp, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tracing::{info, warn};

use crate::aaa::{AcctRecord, AcctStatus, Authorization, Decision, TerminateCause};
use crate::l2tp::{self, Lns, LnsConfig, PeerId, SessionRef};

/// Settings of the session layer.
#[derive(Debug)]
pub struct Config {
    /// The LNS.
    pub lns: LnsConfig,
    /// The PPP template (server role) every session starts from.
    pub ppp: pppd_lite::Config,
    /// Addresses for the clients.
    pub pool: AddressPool,
}

/// Why a session ended ([`Event::Down`]); `Display` gives it in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server is shutting down.
    Shutdown,
    /// The L2TP call or its tunnel was cleared.
    L2tp(l2tp::Cleared),
    /// PPP went down.
    Ppp(pppd_lite::DownReason),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Shutdown => f.write_str("server shutting down"),
            Ended::L2tp(c) => write!(f, "L2TP call cleared: {c}"),
            Ended::Ppp(r) => write!(f, "{r}"),
        }
    }
}

/// What the session layer tells its owner.
#[derive(Debug)]
pub enum Event {
    /// Check these credentials and call [`Sessions::authenticated`].
    Authenticate {
        /// The session asking.
        session: SessionRef,
        /// What the client sent.
        request: AuthRequest,
        /// The session's NAS-Port.
        nas_port: u32,
        /// The session's Acct-Session-Id.
        acct_session_id: String,
    },
    /// PPP is up: the user has an address.
    Up {
        /// The session.
        session: SessionRef,
        /// The authenticated user.
        user: String,
        /// The client's address.
        address: Ipv4Addr,
        /// The accounting Start (the owner fills in the stations and the time).
        start: Box<AcctRecord>,
        /// Acct-Interim-Interval from the backend, seconds.
        interim_interval: Option<u32>,
    },
    /// The session ended.
    Down {
        /// The session.
        session: SessionRef,
        /// The user, if one had authenticated.
        user: Option<String>,
        /// Why (`Display`: in words).
        reason: Ended,
        /// The accounting Stop, for a session that was up (and had its Start).
        stop: Option<Box<AcctRecord>>,
    },
}

/// An IP packet a client sent, for the data plane.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The session it came from.
    pub session: SessionRef,
    /// The IPv4 packet.
    pub packet: &'a [u8],
}

/// Packet and byte counts of one session, both directions (IP packets, PPP/L2TP/ESP overhead
/// not included), and when it last passed a packet.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    /// IP packets from the client.
    pub packets_in: u64,
    /// Bytes of those packets.
    pub bytes_in: u64,
    /// IP packets to the client.
    pub packets_out: u64,
    /// Bytes of those packets.
    pub bytes_out: u64,
    /// When the last IP packet passed, either way (the session's start before any).
    pub last_packet: Instant,
}

/// One session's traffic counters, shared with the data-plane workers that count its packets
/// (relaxed atomics: each counter is exact, a snapshot of all of them need not be).
/// Aligned to a cache line: two workers counting two sessions never write the same line.
#[derive(Debug)]
#[repr(align(64))]
pub struct Counters {
    epoch: Instant,
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    /// When the last packet passed: nanoseconds after `epoch`.
    last_packet: AtomicU64,
}

impl Counters {
    /// Counters that start at zero, the idle clock at `now`.
    pub fn new(now: Instant) -> Self {
        Counters {
            epoch: now,
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            last_packet: AtomicU64::new(0),
        }
    }

    /// A packet passed at `now` (either way): the idle timer starts again.
    pub fn touch(&self, now: Instant) {
        let at = now.saturating_duration_since(self.epoch).as_nanos();
        self.last_packet
            .fetch_max(u64::try_from(at).unwrap_or(u64::MAX), Relaxed);
    }

    /// An IP packet of `bytes` from the client.
    pub fn count_in(&self, now: Instant, bytes: usize) {
        self.packets_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
        self.touch(now);
    }

    /// An IP packet of `bytes` to the client.
    pub fn count_out(&self, now: Instant, bytes: usize) {
        self.packets_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
        self.touch(now);
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            last_packet: self.epoch + Duration::from_nanos(self.last_packet.load(Relaxed)),
        }
    }
}

/// What the data plane needs to forward an up session's IP packets itself ([`RouteChange`]):
/// its address, its L2TP framing and its counters. Shared by the data-plane workers.
#[derive(Debug)]
pub struct Route {
    /// The session.
    pub session: SessionRef,
    /// The client's address (inner source of its packets, destination of ours).
    pub address: Ipv4Addr,
    /// The largest IP packet the client takes.
    pub mtu: u16,
    /// The peer's L2TP Tunnel ID and Session ID (our data messages carry them).
    pub peer_tunnel: u16,
    /// See `peer_tunnel`.
    pub peer_session: u16,
    /// The client's L2TP UDP port (it may change: the last data message's source wins).
    pub port: AtomicU16,
    /// Data message sequence numbers, shared with the LNS.
    pub seq: Arc<l2tp::DataSeq>,
    /// Traffic counters, shared with the session layer.
    pub counters: Arc<Counters>,
}

/// A change of the routes the data plane forwards itself ([`Sessions::poll_route`]).
#[derive(Debug, Clone)]
pub enum RouteChange {
    /// A session came up.
    Up(Arc<Route>),
    /// A session that was up has ended.
    Down {
        /// The session.
        session: SessionRef,
        /// Its address.
        address: Ipv4Addr,
    },
}

/// What the admin sees of a session ([`Sessions::iter`]).
#[derive(Debug, Clone, Copy)]
pub struct SessionInfo<'a> {
    /// The session.
    pub session: SessionRef,
    /// The user, once authentication has begun.
    pub user: Option<&'a str>,
    /// The client's address, once assigned.
    pub address: Option<Ipv4Addr>,
    /// Whether IP passes (IPCP is up).
    pub up: bool,
    /// When the L2TP call came up.
    pub started: Instant,
    /// When IPCP came up.
    pub up_since: Option<Instant>,
    /// Counters.
    pub traffic: Traffic,
    /// Acct-Session-Id.
    pub acct_session_id: &'a str,
}

/// Why [`Sessions::outbound_header`] gives no header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoHeader {
    /// No up session holds the destination address.
    NoSession,
    /// The packet is larger than the client's MTU and has Don't Fragment set: the sender should
    /// get ICMP fragmentation-needed with this MTU (RFC 1191).
    TooBig {
        /// The largest packet the client takes.
        mtu: u16,
    },
}

/// Longest [`OutboundHeader`]: an L2TP data header with every optional field (16) and PPP's 4.
pub const OUTBOUND_HEADER_MAX: usize = 20;

/// What goes in front of an IPv4 packet to a client ([`Sessions::outbound_header`]).
#[derive(Debug, Clone, Copy)]
pub struct OutboundHeader {
    /// The session (its `peer` is the IPsec client to send through).
    pub session: SessionRef,
    /// The client's L2TP UDP port.
    pub port: u16,
    /// L2TP data header then PPP address, control and protocol.
    pub bytes: [u8; OUTBOUND_HEADER_MAX],
    /// How much of `bytes` is used.
    pub len: usize,
}

/// Counters of the session layer (no secrets).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Sessions that reached Up.
    pub up: u64,
    /// Sessions refused: authentication.
    pub auth_rejected: u64,
    /// Sessions refused: per-user limit.
    pub over_limit: u64,
    /// Sessions refused: no address left.
    pub pool_exhausted: u64,
    /// IP packets whose source is not the session's address (spoofing), dropped.
    pub spoofed: u64,
    /// IP packets received before the session was up, or not IPv4, dropped.
    pub not_routable: u64,
    /// PPP frames dropped: malformed frame or control packet.
    pub ppp_malformed: u64,
    /// PPP frames dropped: a protocol before its phase (RFC 1661 §3: silently discarded).
    pub ppp_out_of_phase: u64,
    /// PPP frames of protocols we do not run (Protocol-Rejected once LCP is up).
    pub ppp_unsupported: u64,
    /// The traffic of the sessions that have ended (add the live sessions' for a total).
    pub ended_packets_in: u64,
    pub ended_bytes_in: u64,
    pub ended_packets_out: u64,
    pub ended_bytes_out: u64,
}

/// A timer key: when, then which session (ordered so the earliest comes first).
type TimerKey = (Instant, PeerId, u16, u16);

fn timer_key(at: Instant, s: SessionRef) -> TimerKey {
    (at, s.peer, s.tunnel, s.session)
}

struct Link {
    ppp: Ppp,
    /// Acct-Session-Id: the server's prefix and a counter.
    acct_id: String,
    /// NAS-Port.
    nas_port: u32,
    /// What the backend said of the user.
    authz: Authorization,
    /// Why the server is ending the session, once it has begun to (accounting's cause).
    ending: Option<TerminateCause>,
    /// The user's own idle and session timeouts (RADIUS, CoA), over the server's.
    idle_timeout: Option<Duration>,
    session_timeout: Option<Duration>,
    /// Pending authentication request id and what the backend said of the user.
    user: Option<String>,
    static_ip: Option<Ipv4Addr>,
    /// Counted in `per_user` (authenticated).
    counted: bool,
    /// The named pool the address comes from (RADIUS Framed-Pool); `None`: the main pool.
    pool_name: Option<String>,
    address: Option<Ipv4Addr>,
    up: bool,
    /// This link's entry in `Sessions::timers`.
    deadline: Option<Instant>,
    /// The largest IP packet the client takes (negotiated MRU).
    mtu: u16,
    started: Instant,
    up_since: Option<Instant>,
    counters: Arc<Counters>,
}

/// The session table and the cores it drives.
pub struct Sessions {
    lns: Lns,
    template: pppd_lite::Config,
    pool: AddressPool,
    links: HashMap<SessionRef, Link>,
    by_address: HashMap<Ipv4Addr, SessionRef>,
    per_user: HashMap<String, u32>,
    /// Links touched since the last pump (duplicates allowed): only these are drained.
    dirty: Vec<SessionRef>,
    /// PPP deadlines of every link, earliest first.
    timers: BTreeSet<TimerKey>,
    events: VecDeque<Event>,
    transmits: VecDeque<l2tp::Transmit>,
    routes: VecDeque<RouteChange>,
    rng: ChaCha20Rng,
    stats: Stats,
    /// End a session that passes no IP packet for this long.
    idle_timeout: Option<Duration>,
    /// End a session this long after it came up.
    session_timeout: Option<Duration>,
    /// When the idle and session timeouts are next checked.
    next_sweep: Option<Instant>,
    /// The start of every Acct-Session-Id (unique per server start).
    acct_prefix: String,
    /// The last session number given (NAS-Port and the end of Acct-Session-Id).
    serial: u32,
    /// Pools a backend may name (RADIUS Framed-Pool), besides the main one.
    named_pools: HashMap<String, AddressPool>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("links", &self.links.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// A session layer; `seed` feeds every random choice (tunnel and session ids, PPP magic
    /// numbers and challenges).
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut lns_seed = [0u8; 32];
        rng.fill_bytes(&mut lns_seed);
        let acct_prefix = format!("{:08X}", rng.next_u32());
        Sessions {
            lns: Lns::new(config.lns, lns_seed),
            template: config.ppp,
            pool: config.pool,
            links: HashMap::new(),
            by_address: HashMap::new(),
            per_user: HashMap::new(),
            dirty: Vec::new(),
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            routes: VecDeque::new(),
            rng,
            stats: Stats::default(),
            idle_timeout: None,
            session_timeout: None,
            next_sweep: None,
            acct_prefix,
            serial: 0,
            named_pools: HashMap::new(),
        }
    }

    /// Adds a pool that a backend can name (RADIUS Framed-Pool). Its addresses must be routed
    /// to the server like the main pool's.
    pub fn add_named_pool(&mut self, name: &str, pool: AddressPool) {
        self.named_pools.insert(name.to_string(), pool);
    }

    /// A pool a backend can name (for its use figures).
    pub fn named_pool(&self, name: &str) -> Option<&AddressPool> {
        self.named_pools.get(name)
    }

    /// Sets the start of every Acct-Session-Id from now on (the owner uses the start time, so
    /// that ids stay unique across restarts: 8 hex digits of it).
    pub fn set_acct_prefix(&mut self, prefix: &str) {
        self.acct_prefix = prefix.to_string();
    }

    /// The PPP settings of sessions that start from now on (a reload).
    pub fn set_ppp_template(&mut self, ppp: pppd_lite::Config) {
        self.template = ppp;
    }

    /// Sets the idle timeout (no IP packet either way) and the session timeout (time since the
    /// session came up); `None` turns one off. Takes effect for running sessions too.
    pub fn set_timeouts(&mut self, idle: Option<Duration>, session: Option<Duration>) {
        self.idle_timeout = idle.filter(|d| !d.is_zero());
        self.session_timeout = session.filter(|d| !d.is_zero());
        self.next_sweep = None;
    }

    /// How often the idle and session timeouts are checked: a tenth of the shorter one, between
    /// one and thirty seconds (a session ends at most that much late).
    fn sweep_interval(&self) -> Option<Duration> {
        let own = self
            .links
            .values()
            .flat_map(|l| [l.idle_timeout, l.session_timeout])
            .flatten()
            .min();
        let shortest = [self.idle_timeout, self.session_timeout, own]
            .into_iter()
            .flatten()
            .min()?;
        Some((shortest / 10).clamp(Duration::from_secs(1), Duration::from_secs(30)))
    }

    /// Ends the up sessions that are idle or past their time.
    fn sweep(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (key, link) in &self.links {
            let Some(up_since) = link.up_since else {
                continue;
            };
            if link.ending.is_some() {
                continue;
            }
            let idle = now.saturating_duration_since(link.counters.snapshot().last_packet);
            if let Some(limit) = link.idle_timeout.or(self.idle_timeout)
                && idle >= limit
            {
                expired.push((*key, "idle timeout", TerminateCause::IdleTimeout));
            } else if let Some(limit) = link.session_timeout.or(self.session_timeout)
                && now.saturating_duration_since(up_since) >= limit
            {
                expired.push((*key, "session timeout", TerminateCause::SessionTimeout));
            }
        }
        for (key, reason, cause) in expired {
            if let Some(link) = self.links.get_mut(&key) {
                info!(peer = key.peer, user = %link.user.as_deref().unwrap_or("-"), %reason, "ending the session");
                link.ending = Some(cause);
                link.ppp.close(now, reason);
                self.dirty.push(key);
            }
        }
    }

    /// An L2TP datagram (the UDP payload) from `peer`'s UDP port `src_port`. Control messages
    /// and PPP control frames are handled here; an IPv4 packet from an up session whose source
    /// is the session's address is returned for the data plane.
    pub fn handle_l2tp<'a>(
        &mut self,
        now: Instant,
        peer: PeerId,
        src_port: u16,
        datagram: &'a [u8],
    ) -> Option<Inbound<'a>> {
        let Some((session, range)) = self.lns.handle_datagram(now, peer, src_port, datagram) else {
            // A control message (or a drop): the LNS may have events and replies.
            self.pump(now);
            return None;
        };
        let frame = datagram.get(range)?;
        let link = self.links.get_mut(&session)?;
        let input = link.ppp.handle_frame(now, frame);
        if let Input::Ipv4(packet) = input {
            // The data path: nothing to send, no state to move, no allocation.
            let src = packet
                .get(12..16)
                .map(|s| Ipv4Addr::new(s[0], s[1], s[2], s[3]));
            if link.up && src.is_some() && src == link.address {
                link.counters.count_in(now, packet.len());
                return Some(Inbound { session, packet });
            }
            if link.up {
                self.stats.spoofed += 1;
            } else {
                self.stats.not_routable += 1;
            }
            return None;
        }
        self.dirty.push(session);
        match input {
            Input::Ipv4(_) => {}
            Input::Ipv6(_) => self.stats.not_routable += 1,
            Input::Dropped(reason) => {
                let (counter, what) = match reason {
                    DropReason::MalformedFrame(_) => {
                        (&mut self.stats.ppp_malformed, "malformed frame")
                    }
                    DropReason::MalformedPacket(_) => {
                        (&mut self.stats.ppp_malformed, "malformed control packet")
                    }
                    DropReason::NotOpened => (&mut self.stats.not_routable, "IP before IPCP is up"),
                    DropReason::TooEarly => (
                        &mut self.stats.ppp_out_of_phase,
                        "network-control packet before authentication",
                    ),
                    DropReason::ProtocolRejected(_) | DropReason::UnsupportedProtocol(_) => (
                        &mut self.stats.ppp_unsupported,
                        "protocol not supported (Protocol-Reject)",
                    ),
                };
                dropped!(*counter, peer = session.peer, "PPP frame dropped: {what}");
            }
            Input::Handled => {}
        }
        self.pump(now);
        None
    }

    /// The headers to put in front of `packet` (IPv4) for the client that holds its destination
    /// address (an up session): the L2TP data header and PPP's `FF 03 00 21`, ready to be
    /// followed by the packet and sent to `peer`'s UDP `port`. The packet is counted in the
    /// session's traffic. A packet with Don't Fragment set that is larger than the client's MTU
    /// gets [`NoHeader::TooBig`] (the caller answers with ICMP); a larger one without DF is sent
    /// as it is (PPP peers take frames above their MRU in practice, and it is never above the
    /// TUN's MTU). Nothing is allocated: the caller writes `bytes[..len]` into its headroom.
    pub fn outbound_header(
        &mut self,
        now: Instant,
        packet: &[u8],
    ) -> Result<OutboundHeader, NoHeader> {
        let destination = packet
            .get(16..20)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            .ok_or(NoHeader::NoSession)?;
        let &session = self
            .by_address
            .get(&destination)
            .ok_or(NoHeader::NoSession)?;
        let link = self
            .links
            .get_mut(&session)
            .filter(|l| l.up)
            .ok_or(NoHeader::NoSession)?;
        let dont_fragment = packet.get(6).is_some_and(|f| f & 0x40 != 0);
        if dont_fragment && packet.len() > usize::from(link.mtu) {
            return Err(NoHeader::TooBig { mtu: link.mtu });
        }
        let h = self.lns.data_header(session).ok_or(NoHeader::NoSession)?;
        let mut bytes = [0u8; OUTBOUND_HEADER_MAX];
        let l2tp = h.bytes.get(..h.len).ok_or(NoHeader::NoSession)?;
        bytes
            .get_mut(..h.len)
            .ok_or(NoHeader::NoSession)?
            .copy_from_slice(l2tp);
        bytes
            .get_mut(h.len..h.len + pppd_lite::IPV4_HEADER.len())
            .ok_or(NoHeader::NoSession)?
            .copy_from_slice(&pppd_lite::IPV4_HEADER);
        link.counters.count_out(now, packet.len());
        Ok(OutboundHeader {
            session,
            port: h.port,
            bytes,
            len: h.len + pppd_lite::IPV4_HEADER.len(),
        })
    }

    /// Every session, for the admin.
    pub fn iter(&self) -> impl Iterator<Item = SessionInfo<'_>> {
        self.links.iter().map(|(&session, l)| SessionInfo {
            session,
            user: l.user.as_deref(),
            address: l.address,
            up: l.up,
            started: l.started,
            up_since: l.up_since,
            traffic: l.counters.snapshot(),
            acct_session_id: &l.acct_id,
        })
    }

    /// The answer to an [`Event::Authenticate`].
    pub fn authenticated(
        &mut self,
        now: Instant,
        session: SessionRef,
        id: u64,
        decision: Decision,
    ) {
        let (template_dns, template_nbns) = (self.template_dns(), self.template_nbns());
        let Some(link) = self.links.get_mut(&session) else {
            return; // the session ended meanwhile
        };
        let mut verdict = decision.verdict;
        if matches!(verdict, Verdict::Accept(_)) {
            let user = decision.user.clone().or_else(|| link.user.clone());
            if let (Some(user), Some(max)) = (&user, decision.max_sessions) {
                let active = self.per_user.get(user).copied().unwrap_or(0);
                if active >= max {
                    self.stats.over_limit += 1;
                    warn!(peer = session.peer, user = %user, active, max, "session refused: the user has reached the session limit");
                    verdict = Verdict::Reject {
                        message: format!("at most {max} simultaneous sessions"),
                    };
                }
            }
            if let Some(user) = user {
                link.user = Some(user);
            }
            link.pool_name = match decision.authz.framed_pool.clone() {
                Some(name) if self.named_pools.contains_key(&name) => Some(name),
                Some(name) => {
                    warn!(peer = session.peer, pool = %name.escape_debug(), "Framed-Pool names no pool of this server ([ppp] pools): the main pool is used");
                    None
                }
                None => None,
            };
            apply_authorization(
                link,
                session,
                decision.static_ip,
                decision.authz,
                template_dns,
                template_nbns,
            );
            if link.idle_timeout.is_some() || link.session_timeout.is_some() {
                self.next_sweep = None;
            }
        }
        if matches!(verdict, Verdict::Reject { .. }) {
            self.stats.auth_rejected += 1;
        }
        link.ppp.auth_decision(now, id, verdict);
        self.dirty.push(session);
        self.pump(now);
    }

    /// Ends a session (admin disconnect): PPP terminates, then the call is cleared;
    /// accounting says Admin-Reset.
    pub fn disconnect(&mut self, now: Instant, session: SessionRef, reason: &str) {
        if let Some(link) = self.links.get_mut(&session) {
            link.ending.get_or_insert(TerminateCause::AdminReset);
            link.ppp.close(now, reason);
            self.dirty.push(session);
        }
        self.pump(now);
    }

    /// Changes one session's idle and session timeouts (a RADIUS CoA-Request): `Some(0)` turns
    /// one off, `None` leaves it. Whether the session exists.
    pub fn change_timeouts(
        &mut self,
        session: SessionRef,
        idle: Option<Duration>,
        session_timeout: Option<Duration>,
    ) -> bool {
        let Some(link) = self.links.get_mut(&session) else {
            return false;
        };
        if let Some(d) = idle {
            link.idle_timeout = Some(d).filter(|d| !d.is_zero());
        }
        if let Some(d) = session_timeout {
            link.session_timeout = Some(d).filter(|d| !d.is_zero());
        }
        self.next_sweep = None;
        true
    }

    /// The up sessions a RADIUS Disconnect or CoA request names: by Acct-Session-Id, user name
    /// and framed address, every one given must match.
    pub fn find(
        &self,
        acct_session_id: Option<&str>,
        user: Option<&str>,
        address: Option<Ipv4Addr>,
    ) -> Vec<SessionRef> {
        if acct_session_id.is_none() && user.is_none() && address.is_none() {
            return Vec::new();
        }
        self.links
            .iter()
            .filter(|(_, l)| {
                acct_session_id.is_none_or(|id| l.acct_id == id)
                    && user.is_none_or(|u| l.user.as_deref() == Some(u))
                    && address.is_none_or(|a| l.address == Some(a))
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// An Interim-Update record of an up session (counters and time as of `now`).
    pub fn interim(&self, now: Instant, session: SessionRef) -> Option<AcctRecord> {
        let link = self.links.get(&session).filter(|l| l.up)?;
        Some(acct_record(now, link, AcctStatus::InterimUpdate, None))
    }

    /// The session with this Acct-Session-Id.
    pub fn by_acct_id(&self, acct_session_id: &str) -> Option<SessionRef> {
        self.links
            .iter()
            .find(|(_, l)| l.acct_id == acct_session_id)
            .map(|(k, _)| *k)
    }

    fn template_dns(&self) -> [Option<Ipv4Addr>; 2] {
        match &self.template.role {
            pppd_lite::Role::Server(s) => s.dns,
            pppd_lite::Role::Client(_) => [None, None],
        }
    }

    fn template_nbns(&self) -> [Option<Ipv4Addr>; 2] {
        match &self.template.role {
            pppd_lite::Role::Server(s) => s.nbns,
            pppd_lite::Role::Client(_) => [None, None],
        }
    }

    /// The IPsec SA (all SAs) of `peer` went away: its tunnels end without a word on the wire.
    pub fn peer_gone(&mut self, now: Instant, peer: PeerId) {
        self.lns.peer_gone(peer);
        self.pump(now);
    }

    /// Server shutdown, in the order Windows itself uses: every PPP link sends LCP
    /// Terminate-Request, every call gets a CDN, then every tunnel a StopCCN.
    pub fn shutdown(&mut self, now: Instant) {
        const REASON: &str = "server shutting down";
        let keys: Vec<SessionRef> = self.links.keys().copied().collect();
        for &key in &keys {
            if let Some(link) = self.links.get_mut(&key) {
                link.ending.get_or_insert(TerminateCause::AdminReboot);
                link.ppp.close(now, REASON);
            }
            self.pump_link(now, key);
        }
        while let Some(t) = self.lns.poll_transmit() {
            self.transmits.push_back(t);
        }
        for key in keys {
            self.lns
                .close_session(now, key, l2tp::avp::cdn::ADMINISTRATIVE, REASON);
            self.end_link(now, key, Ended::Shutdown, TerminateCause::AdminReboot);
        }
        self.lns.shutdown(now);
        self.pump(now);
    }

    /// The next change of the routes the data plane forwards itself (sessions up and down).
    pub fn poll_route(&mut self) -> Option<RouteChange> {
        self.routes.pop_front()
    }

    /// The next L2TP datagram to send.
    pub fn poll_transmit(&mut self) -> Option<l2tp::Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ppp = self.timers.first().map(|k| k.0);
        let sweep = self.next_sweep.filter(|_| !self.links.is_empty());
        [ppp, self.lns.poll_timeout(), sweep]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs every due timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.lns.handle_timeout(now);
        if let Some(every) = self.sweep_interval() {
            match self.next_sweep {
                Some(at) if at <= now => {
                    self.sweep(now);
                    self.next_sweep = Some(now + every);
                }
                None => self.next_sweep = Some(now + every),
                Some(_) => {}
            }
        }
        while let Some(&first) = self.timers.first() {
            if first.0 > now {
                break;
            }
            self.timers.remove(&first);
            let key = SessionRef {
                peer: first.1,
                tunnel: first.2,
                session: first.3,
            };
            if let Some(link) = self.links.get_mut(&key) {
                link.deadline = None;
                link.ppp.handle_timeout(now);
                self.dirty.push(key);
            }
        }
        self.pump(now);
    }

    /// Sessions in the table (any state).
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether no session exists.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The LNS (for its counters).
    pub fn lns(&self) -> &Lns {
        &self.lns
    }

    /// The address pool (for its use figures).
    pub fn pool(&self) -> &AddressPool {
        &self.pool
    }

    /// Moves everything the cores produced: L2TP events start and end PPP links, PPP events
    /// become session events, PPP frames go out as L2TP data messages.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(ev) = self.lns.poll_event() {
                progressed = true;
                self.on_l2tp_event(now, ev);
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            for key in dirty.drain(..) {
                progressed |= self.pump_link(now, key);
                self.reschedule(key);
            }
            // Keep the buffer (and its capacity) for the next round.
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
            while let Some(t) = self.lns.poll_transmit() {
                self.transmits.push_back(t);
            }
            if !progressed {
                break;
            }
        }
    }

    /// Puts `key`'s PPP deadline in the timer index.
    fn reschedule(&mut self, key: SessionRef) {
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        let next = link.ppp.poll_timeout();
        if next == link.deadline {
            return;
        }
        if let Some(old) = link.deadline {
            self.timers.remove(&timer_key(old, key));
        }
        if let Some(at) = next {
            self.timers.insert(timer_key(at, key));
        }
        link.deadline = next;
    }

    fn on_l2tp_event(&mut self, now: Instant, ev: l2tp::Event) {
        match ev {
            l2tp::Event::SessionUp { session, .. } => {
                let mut seed = [0u8; 32];
                self.rng.fill_bytes(&mut seed);
                let mut ppp = Ppp::new(self.template.clone(), now, seed);
                ppp.open(now);
                self.serial = self.serial.wrapping_add(1);
                self.links.insert(
                    session,
                    Link {
                        ppp,
                        acct_id: format!("{}{:08X}", self.acct_prefix, self.serial),
                        nas_port: self.serial,
                        authz: Authorization::default(),
                        ending: None,
                        idle_timeout: None,
                        session_timeout: None,
                        user: None,
                        static_ip: None,
                        counted: false,
                        pool_name: None,
                        address: None,
                        up: false,
                        deadline: None,
                        mtu: self.template.mru,
                        started: now,
                        up_since: None,
                        counters: Arc::new(Counters::new(now)),
                    },
                );
                self.dirty.push(session);
            }
            l2tp::Event::SessionDown { session, reason } => {
                // The peer's CDN or StopCCN ends it at the user's request; a peer that stopped
                // answering, or whose IPsec SA went, was lost.
                let cause = match reason {
                    l2tp::Cleared::PeerCdn(_) | l2tp::Cleared::PeerStopCcn(_) => {
                        TerminateCause::UserRequest
                    }
                    l2tp::Cleared::ClosedLocally(_) => TerminateCause::NasRequest,
                    _ => TerminateCause::LostCarrier,
                };
                self.end_link(now, session, Ended::L2tp(reason), cause);
            }
            // The LNS logs tunnels coming and going.
            l2tp::Event::TunnelUp { .. } | l2tp::Event::TunnelDown { .. } => {}
        }
    }

    /// Drains one PPP link; returns whether anything happened.
    fn pump_link(&mut self, now: Instant, key: SessionRef) -> bool {
        let mut progressed = false;
        loop {
            let Some(link) = self.links.get_mut(&key) else {
                return progressed;
            };
            if let Some(frame) = link.ppp.poll_transmit() {
                progressed = true;
                if let Some(h) = self.lns.data_header(key) {
                    let mut payload = Vec::with_capacity(h.len + frame.len());
                    payload.extend_from_slice(h.bytes.get(..h.len).unwrap_or(&[]));
                    payload.extend_from_slice(&frame);
                    self.transmits.push_back(l2tp::Transmit {
                        peer: key.peer,
                        port: h.port,
                        payload,
                    });
                }
                continue;
            }
            let Some(ev) = link.ppp.poll_event() else {
                return progressed;
            };
            progressed = true;
            self.on_ppp_event(now, key, ev);
        }
    }

    fn on_ppp_event(&mut self, now: Instant, key: SessionRef, ev: pppd_lite::Event) {
        match ev {
            pppd_lite::Event::Authenticate(request) => {
                if let Some(link) = self.links.get_mut(&key) {
                    link.user = Some(pppd_lite::mschapv2::strip_domain(&request.user).to_string());
                }
                let (nas_port, acct_session_id) = self
                    .links
                    .get(&key)
                    .map(|l| (l.nas_port, l.acct_id.clone()))
                    .unwrap_or_default();
                self.events.push_back(Event::Authenticate {
                    session: key,
                    request,
                    nas_port,
                    acct_session_id,
                });
            }
            pppd_lite::Event::Authenticated { user, protocol } => {
                let Some(link) = self.links.get_mut(&key) else {
                    return;
                };
                let name = link
                    .user
                    .clone()
                    .unwrap_or_else(|| pppd_lite::mschapv2::strip_domain(&user).to_string());
                info!(peer = key.peer, user = %name, ?protocol, "PPP authentication succeeded");
                link.counted = true;
                *self.per_user.entry(name.clone()).or_insert(0) += 1;
                // A static address (the user's, or Framed-IP-Address) wins over Framed-Pool.
                if link.static_ip.is_some() {
                    link.pool_name = None;
                }
                let pool = match link
                    .pool_name
                    .as_ref()
                    .and_then(|n| self.named_pools.get_mut(n))
                {
                    Some(named) => named,
                    None => &mut self.pool,
                };
                let result = match link.static_ip {
                    Some(ip) => pool.allocate_static(&name, ip),
                    None => pool.allocate(&name),
                };
                match result {
                    Ok(addr) => {
                        link.address = Some(addr);
                        self.by_address.insert(addr, key);
                        link.ppp.assign_address(now, addr);
                    }
                    Err(e) => {
                        self.stats.pool_exhausted += u64::from(e == PoolError::Exhausted);
                        warn!(peer = key.peer, user = %name, error = %e, "no address for the client: session refused");
                        link.ppp.address_unavailable(now);
                    }
                }
            }
            pppd_lite::Event::AuthFailed {
                user,
                protocol,
                reason,
            } => {
                info!(peer = key.peer, user = %user.escape_debug(), ?protocol, %reason, "PPP authentication failed");
            }
            pppd_lite::Event::Up(net) => {
                let Some(link) = self.links.get_mut(&key) else {
                    return;
                };
                link.up = true;
                link.mtu = net.mtu;
                link.up_since = Some(now);
                link.counters.touch(now);
                self.stats.up += 1;
                if let Some(address) = link.address
                    && let Some(d) = self.lns.data_route(key)
                {
                    self.routes.push_back(RouteChange::Up(Arc::new(Route {
                        session: key,
                        address,
                        mtu: link.mtu,
                        peer_tunnel: d.peer_tunnel,
                        peer_session: d.peer_session,
                        port: AtomicU16::new(d.port),
                        seq: d.seq,
                        counters: link.counters.clone(),
                    })));
                }
                let user = link.user.clone().unwrap_or_default();
                let address = link.address.unwrap_or(net.peer);
                info!(peer = key.peer, user = %user, %address, acct_session_id = %link.acct_id, "session up");
                let start = Box::new(acct_record(now, link, AcctStatus::Start, None));
                let interim_interval = link.authz.interim_interval;
                if self.next_sweep.is_none()
                    && let Some(every) = self.sweep_interval()
                {
                    self.next_sweep = Some(now + every);
                }
                self.events.push_back(Event::Up {
                    session: key,
                    user,
                    address,
                    start,
                    interim_interval,
                });
            }
            pppd_lite::Event::Ipv6Up { .. } => {}
            pppd_lite::Event::Down(reason) => {
                let cause = match reason {
                    pppd_lite::DownReason::PeerTerminated(_) => TerminateCause::UserRequest,
                    pppd_lite::DownReason::EchoTimeout => TerminateCause::LostCarrier,
                    pppd_lite::DownReason::Closed(_) => TerminateCause::NasRequest,
                    _ => TerminateCause::NasError,
                };
                // RFC 2661 §4.4.2 result 3: the server ended the call (PPP is down).
                self.lns.close_session(
                    now,
                    key,
                    l2tp::avp::cdn::ADMINISTRATIVE,
                    &reason.to_string(),
                );
                self.end_link(now, key, Ended::Ppp(reason), cause);
            }
        }
    }

    /// Removes a session. `cause` is why it ended, unless the server had already begun to end
    /// it for a reason of its own.
    fn end_link(&mut self, now: Instant, key: SessionRef, reason: Ended, cause: TerminateCause) {
        let Some(link) = self.links.remove(&key) else {
            return;
        };
        let traffic = link.counters.snapshot();
        self.stats.ended_packets_in += traffic.packets_in;
        self.stats.ended_bytes_in += traffic.bytes_in;
        self.stats.ended_packets_out += traffic.packets_out;
        self.stats.ended_bytes_out += traffic.bytes_out;
        if link.up
            && let Some(address) = link.address
        {
            self.routes.push_back(RouteChange::Down {
                session: key,
                address,
            });
        }
        let cause = link.ending.unwrap_or(cause);
        let stop = link
            .up
            .then(|| Box::new(acct_record(now, &link, AcctStatus::Stop, Some(cause))));
        if let Some(at) = link.deadline {
            self.timers.remove(&timer_key(at, key));
        }
        if let Some(addr) = link.address {
            match link
                .pool_name
                .as_ref()
                .and_then(|n| self.named_pools.get_mut(n))
            {
                Some(named) => {
                    named.release(addr);
                }
                None => {
                    self.pool.release(addr);
                }
            }
            self.by_address.remove(&addr);
        }
        if link.counted
            && let Some(user) = &link.user
            && let Some(n) = self.per_user.get_mut(user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_user.remove(user);
            }
        }
        info!(peer = key.peer, user = %link.user.as_deref().unwrap_or("-"), %reason, "session down");
        self.events.push_back(Event::Down {
            session: key,
            user: link.user,
            reason,
            stop,
        });
    }
}

/// Applies what the backend said of an accepted user to its session: the address (the user's
/// static one, else Framed-IP-Address), its own timeouts, DNS and NBNS servers; logs the
/// Reply-Message and what is not honoured.
fn apply_authorization(
    link: &mut Link,
    session: SessionRef,
    static_ip: Option<Ipv4Addr>,
    authz: Authorization,
    template_dns: [Option<Ipv4Addr>; 2],
    template_nbns: [Option<Ipv4Addr>; 2],
) {
    // 255.255.255.254 (the server chooses) and 255.255.255.255 (the user chooses) are not
    // addresses (RFC 2865 §5.8).
    let framed = authz
        .framed_ip
        .filter(|ip| !matches!(ip.octets(), [255, 255, 255, 254 | 255]));
    link.static_ip = static_ip.or(framed);
    let secs = |s: Option<u32>| {
        s.filter(|&s| s > 0)
            .map(|s| Duration::from_secs(u64::from(s)))
    };
    link.idle_timeout = secs(authz.idle_timeout).or(link.idle_timeout);
    link.session_timeout = secs(authz.session_timeout).or(link.session_timeout);
    if !authz.dns.is_empty() || !authz.nbns.is_empty() {
        let two = |v: &[Ipv4Addr], or: [Option<Ipv4Addr>; 2]| {
            if v.is_empty() {
                or
            } else {
                [v.first().copied(), v.get(1).copied()]
            }
        };
        link.ppp.set_name_servers(
            two(&authz.dns, template_dns),
            two(&authz.nbns, template_nbns),
        );
    }
    for text in &authz.reply_message {
        info!(peer = session.peer, reply_message = %text.escape_debug(), "the authentication backend says");
    }
    link.authz = authz;
}

/// An accounting record of `link` as of `now` (the owner fills in the stations and the wall
/// clock time).
fn acct_record(
    now: Instant,
    link: &Link,
    status: AcctStatus,
    cause: Option<TerminateCause>,
) -> AcctRecord {
    let session_time = link
        .up_since
        .map_or(0, |t| now.saturating_duration_since(t).as_secs());
    let traffic = link.counters.snapshot();
    AcctRecord {
        status: Some(status),
        session_id: link.acct_id.clone(),
        user: link.user.clone().unwrap_or_default(),
        nas_port: link.nas_port,
        framed_ip: link.address,
        class: link.authz.class.clone(),
        session_time_s: u32::try_from(session_time).unwrap_or(u32::MAX),
        input_octets: traffic.bytes_in,
        input_packets: traffic.packets_in,
        output_octets: traffic.bytes_out,
        output_packets: traffic.packets_out,
        terminate_cause: cause,
        ..AcctRecord::default()
    }
}
