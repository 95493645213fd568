//! The sans-IO RADIUS client: Access-Requests (RFC 2865) and Accounting-Requests (RFC 2866)
//! to several servers, with identifiers per server, retransmission with exponential back-off,
//! failover, and dead-server detection.
//!
//! Shaped like `quinn-proto`: [`Client::send_auth`] and [`Client::send_acct`] queue a request,
//! [`Client::poll_transmit`] hands out datagrams, [`Client::handle_datagram`] takes the answers,
//! [`Client::poll_timeout`] and [`Client::handle_timeout`] drive the timers, and
//! [`Client::poll_event`] reports outcomes. No sockets, no clocks: time comes in as `Instant`,
//! the wall clock for Acct-Delay-Time as `unix_now`.
//!
//! Identifiers (RFC 2865 §3) are allocated per server, so 256 requests can be in flight to each;
//! a request waiting for a free identifier is queued. An Access-Request is retransmitted
//! unchanged (same Identifier and Request Authenticator, RFC 2865 §3 Identifier). An
//! Accounting-Request is re-encoded on every retransmission with the current Acct-Delay-Time,
//! which makes it a new request: new Identifier, new Request Authenticator (RFC 2866 §5.2).
//!
//! Every request carries a Message-Authenticator (RFC 3579 §3.2); every response is matched
//! by source address and Identifier, then its Response Authenticator and Message-Authenticator
//! are checked (required on Access-* responses unless configured otherwise). A response that
//! fails is dropped and counted, and the request keeps waiting.
//!
//! Per server, [`Client::server_metrics`] reports requests sent, timeouts and a latency
//! histogram of valid answers, measured with the `Instant`s the caller passes in.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pppd_lite::{Accept, AuthRequest, Credentials, MppeKeys, Verdict};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use super::packet::{
    AuthError, EncodeError, Packet, attr, code, decrypt_mppe_key, hide_password, ms,
    verify_response_signed,
};
use crate::aaa::{AcctRecord, AcctStatus, AuthContext, Authorization};

/// NAS-Port-Type Virtual (RFC 2865 §5.41).
const NAS_PORT_TYPE_VIRTUAL: u32 = 5;
/// Service-Type Framed (RFC 2865 §5.6).
const SERVICE_TYPE_FRAMED: u32 = 2;
/// Framed-Protocol PPP (RFC 2865 §5.7).
const FRAMED_PROTOCOL_PPP: u32 = 1;
/// Tunnel-Type L2TP (RFC 2868 §3.1), tag 0.
const TUNNEL_TYPE_L2TP: [u8; 4] = [0, 0, 0, 3];
/// Tunnel-Medium-Type IPv4 (RFC 2868 §3.2), tag 0.
const TUNNEL_MEDIUM_IPV4: [u8; 4] = [0, 0, 0, 1];
/// The longest back-off between two transmissions.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a server is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Access-Requests.
    Auth,
    /// Accounting-Requests.
    Acct,
}

/// One server: its address, the shared secret (never printed) and its role.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where requests go and where answers must come from.
    pub address: SocketAddr,
    /// The shared secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// Authentication or accounting.
    pub role: Role,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("address", &self.address)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The client's settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The servers, in failover order (each role uses its own in this order).
    pub servers: Vec<ServerConfig>,
    /// The first retransmission timeout; doubled after each transmission to one server.
    pub timeout: Duration,
    /// Transmissions to one server before failing over to the next.
    pub tries: u32,
    /// How long a dead server is passed over before it is tried again.
    pub dead_time: Duration,
    /// Requests in a row that time out on a server before it is marked dead.
    pub dead_after: u32,
    /// NAS-Identifier (RFC 2865 §5.32). With neither this nor `nas_ip`, "roadgate" is sent.
    pub nas_identifier: Option<String>,
    /// NAS-IP-Address (RFC 2865 §5.4).
    pub nas_ip: Option<Ipv4Addr>,
    /// Whether Access-Accept/Reject/Challenge must carry a Message-Authenticator.
    pub require_message_authenticator: RequireMessageAuthenticator,
}

/// Whether answers to Access-Requests must carry a Message-Authenticator (RFC 3579 §3.2; its
/// absence is what the BLAST-RADIUS attack relies on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequireMessageAuthenticator {
    /// Accepted without one from a server until that server has once sent an answer with a
    /// valid one; from then on required from it (as FreeRADIUS 3.2.5+ treats its own clients).
    /// A server that never signs (FreeRADIUS 3.2.1 stock) works, with one warning.
    #[default]
    Auto,
    /// Always required: an answer without one is dropped.
    Yes,
    /// Never required (one present is still checked).
    No,
}

impl fmt::Display for RequireMessageAuthenticator {
    /// The setting as it is written in the configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequireMessageAuthenticator::Auto => "\"auto\"",
            RequireMessageAuthenticator::Yes => "true",
            RequireMessageAuthenticator::No => "false",
        })
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(3),
            tries: 3,
            dead_time: Duration::from_secs(60),
            dead_after: 1,
            nas_identifier: None,
            nas_ip: None,
            require_message_authenticator: RequireMessageAuthenticator::Auto,
        }
    }
}

/// Names one request from submission to its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// What an Access-Request is built from.
#[derive(Debug, Clone)]
pub struct AuthRequestData {
    /// The connection (NAS-Port, stations, Acct-Session-Id).
    pub ctx: AuthContext,
    /// The PPP layer's request: user name and credentials.
    pub request: AuthRequest,
    /// State from the previous Access-Challenge of this EAP conversation (RFC 2865 §5.24).
    pub state: Option<Vec<u8>>,
}

/// What an Accounting-Request is built from.
#[derive(Debug, Clone)]
pub struct AcctRequestData {
    /// The record.
    pub record: AcctRecord,
    /// The wall clock when the request is submitted, seconds since the Unix epoch; with
    /// `record.event_time` it gives Acct-Delay-Time (RFC 2866 §5.2).
    pub unix_now: u64,
}

/// An answered authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAnswer {
    /// What PPP is to do.
    pub verdict: Verdict,
    /// What the Access-Accept said of the user (empty otherwise).
    pub authz: Authorization,
    /// State of an Access-Challenge: pass it back in the next request of this conversation.
    pub state: Option<Vec<u8>>,
    /// The server that answered.
    pub server: SocketAddr,
}

/// Why an authentication got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No server is configured for authentication.
    #[error("no RADIUS server for authentication")]
    NoServer,
    /// Every server timed out.
    #[error("no RADIUS server answered")]
    Timeout,
    /// A server answered, but without the Message-Authenticator the setting requires; no
    /// server gave an answer that could be used.
    #[error(
        "RADIUS server {server} answered, but without Message-Authenticator, and require_message_authenticator = {setting} refuses such answers"
    )]
    Unsigned {
        /// The (last) server whose answers were refused.
        server: SocketAddr,
        /// The setting in force.
        setting: RequireMessageAuthenticator,
        /// The server had signed earlier answers (`auto` learnt it signs).
        signed_before: bool,
    },
    /// The request cannot be encoded (a value too long).
    #[error("request cannot be encoded: {0}")]
    Encode(EncodeError),
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An authentication is answered, or failed.
    AuthDone {
        /// The request.
        id: RequestId,
        /// The answer (boxed: it is much larger than the other events).
        result: Result<Box<AuthAnswer>, AuthFailure>,
    },
    /// An Accounting-Response came.
    AcctAcked {
        /// The request.
        id: RequestId,
    },
    /// No accounting server answered (or none is configured): keep the record, retry later.
    AcctFailed {
        /// The request.
        id: RequestId,
    },
    /// A server timed out `dead_after` requests in a row and is passed over for `dead_time`.
    ServerDead {
        /// The server.
        addr: SocketAddr,
    },
    /// A server marked dead answered again.
    ServerAlive {
        /// The server.
        addr: SocketAddr,
    },
}

/// Counters of what the client dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Datagrams from an address that is not a server.
    pub unknown_source: u64,
    /// Datagrams too short to carry an Identifier, or not a RADIUS packet.
    pub malformed: u64,
    /// Responses to no request in flight (late, duplicate).
    pub unmatched: u64,
    /// Responses whose authenticators do not check.
    pub bad_authenticator: u64,
    /// Responses with a code that does not answer the request.
    pub bad_code: u64,
}

/// Upper bounds, in seconds, of the latency histogram's buckets (Prometheus `le`); a last,
/// implicit `+Inf` bucket holds everything.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The latencies of answered requests to one server: from the first transmission of a request
/// to that server until its valid response.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// The buckets' upper bounds in seconds: [`LATENCY_BUCKETS`].
    pub bounds: &'static [f64],
    /// Cumulative counts, one per bound: `buckets[i]` is the number of answered requests that
    /// took at most `bounds[i]` seconds (Prometheus `_bucket{le=...}`). The `+Inf` bucket is
    /// `count`.
    pub buckets: Vec<u64>,
    /// Answered requests (Prometheus `_count`).
    pub count: u64,
    /// The sum of their latencies in seconds (Prometheus `_sum`).
    pub sum_secs: f64,
}

/// What one server has seen, for Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerMetrics {
    /// The server.
    pub address: SocketAddr,
    /// What it is used for.
    pub role: Role,
    /// Requests sent to it (counter). A retransmission is not counted again (an
    /// Accounting-Request re-encoded with a new Identifier neither); a request failing over to
    /// it counts as a new request here.
    pub requests: u64,
    /// Requests that got no answer from it after all their transmissions to it (counter).
    pub timeouts: u64,
    /// Latency of its valid answers.
    pub latency: LatencyHistogram,
    /// It has sent an answer to an Access-Request with a valid Message-Authenticator: with
    /// `require_message_authenticator = "auto"` it is required from it from then on.
    pub signs: bool,
    /// Answers to Access-Requests without Message-Authenticator accepted from it (`auto`
    /// before it signed, or `false`) (counter).
    pub unsigned_accepted: u64,
    /// Answers to Access-Requests without Message-Authenticator dropped (counter).
    pub unsigned_dropped: u64,
}

/// Per-server counters as kept on the hot path: fixed arrays, no allocation.
#[derive(Debug, Clone, Copy, Default)]
struct Metrics {
    requests: u64,
    timeouts: u64,
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    latency_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    latency_count: u64,
    latency_sum_secs: f64,
}

impl Metrics {
    fn observe_latency(&mut self, latency: Duration) {
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(b) = self.latency_buckets.get_mut(bucket) {
            *b = b.saturating_add(1);
        }
        self.latency_count = self.latency_count.saturating_add(1);
        self.latency_sum_secs += secs;
    }

    fn histogram(&self) -> LatencyHistogram {
        let mut total = 0u64;
        let buckets = self
            .latency_buckets
            .iter()
            .take(LATENCY_BUCKETS.len())
            .map(|&n| {
                total = total.saturating_add(n);
                total
            })
            .collect();
        LatencyHistogram {
            bounds: &LATENCY_BUCKETS,
            buckets,
            count: self.latency_count,
            sum_secs: self.latency_sum_secs,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Auth(AuthRequestData),
    Acct(AcctRequestData, Instant),
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    role: Role,
    /// Index into `Client::servers`.
    server: usize,
    /// Servers of the role tried so far, including the current one.
    servers_tried: usize,
    /// Transmissions to the current server.
    sent: u32,
    /// The Identifier in use, if one is held.
    identifier: Option<u8>,
    /// The Request Authenticator of the bytes in flight.
    authenticator: [u8; 16],
    /// The bytes in flight, for unchanged retransmission.
    bytes: Vec<u8>,
    /// When to retransmit or fail over; `None` while queued for an identifier.
    deadline: Option<Instant>,
    /// The first transmission to the current server (latency is measured from it); `None`
    /// until then, and again after a failover.
    first_sent: Option<Instant>,
    /// A server of this request answered it without the Message-Authenticator required: the
    /// server and whether it had signed before.
    unsigned_from: Option<(SocketAddr, bool)>,
    /// The current server answered it unsigned (its expiry is not a timeout).
    answered_unsigned: bool,
}

#[derive(Debug)]
struct Server {
    cfg: ServerConfig,
    /// Request in flight per Identifier.
    in_flight: Vec<Option<u64>>,
    in_flight_count: usize,
    next_identifier: u8,
    /// Requests waiting for a free Identifier.
    waiting: VecDeque<u64>,
    consecutive_timeouts: u32,
    dead: bool,
    dead_until: Option<Instant>,
    metrics: Metrics,
    /// Has sent a valid Message-Authenticator in an answer to an Access-Request.
    signs: bool,
    /// The warning about an accepted unsigned answer was logged.
    warned_accepted: bool,
    /// The warning about a dropped unsigned answer was logged.
    warned_dropped: bool,
    unsigned_accepted: u64,
    unsigned_dropped: u64,
}

impl Server {
    fn usable(&self, now: Instant) -> bool {
        !self.dead || self.dead_until.is_some_and(|t| now >= t)
    }

    fn allocate(&mut self, request: u64) -> Option<u8> {
        if self.in_flight_count >= 256 {
            return None;
        }
        for _ in 0..256 {
            let id = self.next_identifier;
            self.next_identifier = self.next_identifier.wrapping_add(1);
            if let Some(slot) = self.in_flight.get_mut(usize::from(id))
                && slot.is_none()
            {
                *slot = Some(request);
                self.in_flight_count += 1;
                return Some(id);
            }
        }
        None
    }

    fn release(&mut self, id: u8) {
        if let Some(slot) = self.in_flight.get_mut(usize::from(id))
            && slot.take().is_some()
        {
            self.in_flight_count = self.in_flight_count.saturating_sub(1);
        }
    }
}

/// The RADIUS client core. See the module documentation.
pub struct Client {
    config: ClientConfig,
    servers: Vec<Server>,
    pending: BTreeMap<u64, Pending>,
    next_request: u64,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    rng: ChaCha20Rng,
    stats: ClientStats,
    /// Bumped whenever a server's metrics change.
    metrics_generation: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.config.servers)
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with a ChaCha20 generator seeded from the OS for Request Authenticators and
    /// password hiding.
    pub fn new(config: ClientConfig) -> Self {
        Self::with_rng(config, rand::make_rng::<ChaCha20Rng>())
    }

    /// A client with the given generator (tests).
    pub fn with_rng(config: ClientConfig, rng: ChaCha20Rng) -> Self {
        let servers = config
            .servers
            .iter()
            .map(|cfg| Server {
                cfg: cfg.clone(),
                in_flight: vec![None; 256],
                in_flight_count: 0,
                next_identifier: 0,
                waiting: VecDeque::new(),
                consecutive_timeouts: 0,
                dead: false,
                dead_until: None,
                metrics: Metrics::default(),
                signs: false,
                warned_accepted: false,
                warned_dropped: false,
                unsigned_accepted: 0,
                unsigned_dropped: 0,
            })
            .collect();
        Client {
            config,
            servers,
            pending: BTreeMap::new(),
            next_request: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            stats: ClientStats::default(),
            metrics_generation: 0,
        }
    }

    /// What was dropped so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Each configured server's metrics, in configuration order.
    pub fn server_metrics(&self) -> Vec<ServerMetrics> {
        self.servers
            .iter()
            .map(|s| ServerMetrics {
                address: s.cfg.address,
                role: s.cfg.role,
                requests: s.metrics.requests,
                timeouts: s.metrics.timeouts,
                latency: s.metrics.histogram(),
                signs: s.signs,
                unsigned_accepted: s.unsigned_accepted,
                unsigned_dropped: s.unsigned_dropped,
            })
            .collect()
    }

    /// A number that changes whenever [`Client::server_metrics`] would return something
    /// different: a shell can skip taking a snapshot while it stays the same.
    pub fn metrics_generation(&self) -> u64 {
        self.metrics_generation
    }

    /// Requests not yet answered or failed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the server at `addr` is currently marked dead.
    pub fn is_dead(&self, addr: SocketAddr) -> bool {
        self.servers.iter().any(|s| s.cfg.address == addr && s.dead)
    }

    /// Whether the server at `addr` has sent a valid Message-Authenticator in an answer to an
    /// Access-Request (with `"auto"`, it is required from it from then on).
    pub fn server_signs(&self, addr: SocketAddr) -> bool {
        self.servers
            .iter()
            .any(|s| s.cfg.address == addr && s.signs)
    }

    /// Starts an Access-Request; the answer comes as [`Event::AuthDone`].
    pub fn send_auth(&mut self, now: Instant, data: AuthRequestData) -> RequestId {
        self.submit(now, Kind::Auth(data), Role::Auth)
    }

    /// Starts an Accounting-Request; the answer comes as [`Event::AcctAcked`] or
    /// [`Event::AcctFailed`].
    pub fn send_acct(&mut self, now: Instant, data: AcctRequestData) -> RequestId {
        self.submit(now, Kind::Acct(data, now), Role::Acct)
    }

    /// The next datagram to send: destination and bytes.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.deadline).min()
    }

    fn role_servers(&self, role: Role) -> Vec<usize> {
        self.servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cfg.role == role)
            .map(|(i, _)| i)
            .collect()
    }

    /// The first usable server of `role` from position `from` in the role's list, else the
    /// next one in order (all dead: try them anyway).
    fn pick_server(&self, role: Role, from: usize, now: Instant) -> Option<usize> {
        let list = self.role_servers(role);
        let rest = list.get(from..).unwrap_or(&[]);
        rest.iter()
            .copied()
            .find(|&i| self.servers.get(i).is_some_and(|s| s.usable(now)))
            .or_else(|| rest.first().copied())
    }

    fn position_in_role(&self, role: Role, server: usize) -> usize {
        self.role_servers(role)
            .iter()
            .position(|&i| i == server)
            .unwrap_or(0)
    }

    fn submit(&mut self, now: Instant, kind: Kind, role: Role) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        let Some(server) = self.pick_server(role, 0, now) else {
            self.fail(id, role, AuthFailure::NoServer);
            return RequestId(id);
        };
        let servers_tried = self.position_in_role(role, server) + 1;
        self.pending.insert(
            id,
            Pending {
                kind,
                role,
                server,
                servers_tried,
                sent: 0,
                identifier: None,
                authenticator: [0; 16],
                bytes: Vec::new(),
                deadline: None,
                first_sent: None,
                unsigned_from: None,
                answered_unsigned: false,
            },
        );
        self.start_on_server(now, id);
        RequestId(id)
    }

    fn fail(&mut self, id: u64, role: Role, why: AuthFailure) {
        self.events.push_back(match role {
            Role::Auth => Event::AuthDone {
                id: RequestId(id),
                result: Err(why),
            },
            Role::Acct => Event::AcctFailed { id: RequestId(id) },
        });
    }

    /// Takes an identifier on the request's server and sends a fresh encoding, or queues the
    /// request for an identifier.
    fn start_on_server(&mut self, now: Instant, id: u64) {
        let Some(p) = self.pending.get(&id) else {
            return;
        };
        let server = p.server;
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        match s.allocate(id) {
            Some(identifier) => self.transmit_fresh(now, id, identifier),
            None => {
                s.waiting.push_back(id);
                if let Some(p) = self.pending.get_mut(&id) {
                    p.deadline = None;
                }
            }
        }
    }

    /// Encodes the request anew with `identifier` and a new authenticator, and sends it.
    fn transmit_fresh(&mut self, now: Instant, id: u64, identifier: u8) {
        let mut authenticator = [0u8; 16];
        self.rng.fill_bytes(&mut authenticator);
        let Some(p) = self.pending.get(&id) else {
            return;
        };
        let Some(server) = self.servers.get(p.server) else {
            return;
        };
        let built = match &p.kind {
            Kind::Auth(d) => build_access_request(
                &self.config,
                d,
                identifier,
                authenticator,
                &server.cfg.secret,
            ),
            Kind::Acct(d, submitted) => build_accounting_request(
                &self.config,
                d,
                identifier,
                now.saturating_duration_since(*submitted),
                &server.cfg.secret,
            ),
        };
        let address = server.cfg.address;
        let server_index = p.server;
        let role = p.role;
        match built {
            Ok(bytes) => {
                let auth = bytes
                    .get(4..20)
                    .and_then(|a| <[u8; 16]>::try_from(a).ok())
                    .unwrap_or(authenticator);
                if let Some(p) = self.pending.get_mut(&id) {
                    p.identifier = Some(identifier);
                    p.authenticator = auth;
                    p.bytes = bytes.clone();
                    p.sent = p.sent.saturating_add(1);
                    p.deadline = Some(now + backoff_for(self.config.timeout, p.sent));
                    // An Accounting-Request re-encoded for a retransmission comes here again:
                    // only its first transmission to this server counts.
                    if p.first_sent.is_none() {
                        p.first_sent = Some(now);
                        if let Some(s) = self.servers.get_mut(server_index) {
                            s.metrics.requests = s.metrics.requests.saturating_add(1);
                            self.metrics_generation = self.metrics_generation.wrapping_add(1);
                        }
                    }
                }
                self.transmits.push_back((address, bytes));
            }
            Err(e) => {
                if let Some(s) = self.servers.get_mut(server_index) {
                    s.release(identifier);
                }
                self.pending.remove(&id);
                self.fail(id, role, AuthFailure::Encode(e));
                self.dequeue(now, server_index);
            }
        }
    }

    /// Gives freed identifiers on `server` to waiting requests.
    fn dequeue(&mut self, now: Instant, server: usize) {
        loop {
            let Some(s) = self.servers.get_mut(server) else {
                return;
            };
            if s.in_flight_count >= 256 {
                return;
            }
            let Some(next) = s.waiting.pop_front() else {
                return;
            };
            if self.pending.contains_key(&next) {
                self.start_on_server(now, next);
            }
        }
    }

    /// Handles one datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Some(server_index) = self.servers.iter().position(|s| s.cfg.address == from) else {
            dropped!(self.stats.unknown_source, %from, "RADIUS: datagram from an unknown source dropped");
            return;
        };
        let Some(&identifier) = bytes.get(1) else {
            dropped!(self.stats.malformed, %from, "RADIUS: runt datagram dropped");
            return;
        };
        let Some(request) = self
            .servers
            .get(server_index)
            .and_then(|s| s.in_flight.get(usize::from(identifier)).copied().flatten())
        else {
            dropped!(self.stats.unmatched, %from, identifier, "RADIUS: response to no request in flight dropped");
            return;
        };
        let Some(p) = self.pending.get(&request) else {
            return;
        };
        let Some(server) = self.servers.get(server_index) else {
            return;
        };
        let response_code = bytes.first().copied().unwrap_or(0);
        let code_ok = match p.role {
            Role::Auth => matches!(
                response_code,
                code::ACCESS_ACCEPT | code::ACCESS_REJECT | code::ACCESS_CHALLENGE
            ),
            Role::Acct => response_code == code::ACCOUNTING_RESPONSE,
        };
        if !code_ok {
            dropped!(self.stats.bad_code, %from, identifier, response_code, "RADIUS: response with a code that does not answer the request dropped");
            return;
        }
        let (packet, signed) = match verify_response_signed(
            bytes,
            &p.authenticator,
            &server.cfg.secret,
        ) {
            Ok(v) => v,
            Err(AuthError::Malformed(e)) => {
                dropped!(self.stats.malformed, %from, identifier, error = %e, "RADIUS: malformed response dropped");
                return;
            }
            Err(e) => {
                dropped!(self.stats.bad_authenticator, %from, identifier, error = %e, "RADIUS: response failing the authenticator checks dropped");
                return;
            }
        };
        if p.role == Role::Auth && !self.message_authenticator_policy(server_index, from, signed) {
            if let Some(p) = self.pending.get_mut(&request) {
                p.answered_unsigned = true;
                let before = self.servers.get(server_index).is_some_and(|s| s.signs);
                p.unsigned_from = Some((from, before));
            }
            return;
        }
        let Some(p) = self.pending.remove(&request) else {
            return;
        };
        let mut alive = None;
        if let Some(s) = self.servers.get_mut(server_index) {
            s.release(identifier);
            if let Some(first) = p.first_sent {
                s.metrics
                    .observe_latency(now.saturating_duration_since(first));
                self.metrics_generation = self.metrics_generation.wrapping_add(1);
            }
            s.consecutive_timeouts = 0;
            if s.dead {
                s.dead = false;
                s.dead_until = None;
                alive = Some(s.cfg.address);
            }
        }
        if let Some(addr) = alive {
            tracing::info!(%addr, "RADIUS server answers again");
            self.events.push_back(Event::ServerAlive { addr });
        }
        let secret = self
            .servers
            .get(server_index)
            .map(|s| s.cfg.secret.clone())
            .unwrap_or_default();
        match p.kind {
            Kind::Auth(d) => {
                let answer =
                    interpret_access_response(&packet, &d, &p.authenticator, &secret, from);
                self.events.push_back(Event::AuthDone {
                    id: RequestId(request),
                    result: Ok(Box::new(answer)),
                });
            }
            Kind::Acct(..) => self.events.push_back(Event::AcctAcked {
                id: RequestId(request),
            }),
        }
        self.dequeue(now, server_index);
    }

    /// Applies `require_message_authenticator` to an answer to an Access-Request from
    /// `server_index` whose authenticators checked: `true` to use it. Learns that the server
    /// signs (`auto`), counts, and warns once per server and case.
    fn message_authenticator_policy(
        &mut self,
        server_index: usize,
        from: SocketAddr,
        signed: bool,
    ) -> bool {
        let setting = self.config.require_message_authenticator;
        let Some(s) = self.servers.get_mut(server_index) else {
            return false;
        };
        if signed {
            if !s.signs {
                s.signs = true;
                self.metrics_generation = self.metrics_generation.wrapping_add(1);
                if setting == RequireMessageAuthenticator::Auto {
                    tracing::info!(server = %from, "RADIUS server {from} signs its answers (Message-Authenticator): require_message_authenticator = \"auto\" now requires it from this server");
                }
            }
            return true;
        }
        let accept = match setting {
            RequireMessageAuthenticator::No => true,
            RequireMessageAuthenticator::Auto => !s.signs,
            RequireMessageAuthenticator::Yes => false,
        };
        self.metrics_generation = self.metrics_generation.wrapping_add(1);
        if accept {
            s.unsigned_accepted = s.unsigned_accepted.saturating_add(1);
            if setting == RequireMessageAuthenticator::Auto && !s.warned_accepted {
                s.warned_accepted = true;
                tracing::warn!(server = %from, "RADIUS server {from} answers without Message-Authenticator; accepted because require_message_authenticator = \"auto\" (set it to true once the server signs its answers: FreeRADIUS 3.2.5+ or require_message_authenticator = yes in its clients.conf)");
            }
            return true;
        }
        s.unsigned_dropped = s.unsigned_dropped.saturating_add(1);
        if s.warned_dropped {
            tracing::debug!(server = %from, count = s.unsigned_dropped, "RADIUS: answer without Message-Authenticator dropped");
        } else {
            s.warned_dropped = true;
            if setting == RequireMessageAuthenticator::Auto {
                tracing::warn!(server = %from, "RADIUS server {from} answered without Message-Authenticator although it signed its answers before; dropped because require_message_authenticator = \"auto\" requires it from a server once it has signed (a forged answer, BLAST-RADIUS, or the server's configuration changed); further drops are counted");
            } else {
                tracing::warn!(server = %from, "RADIUS server {from} answers without Message-Authenticator; dropped because require_message_authenticator = true (the server does answer: make it sign its answers, FreeRADIUS 3.2.5+ or require_message_authenticator = yes in its clients.conf, or set require_message_authenticator = \"auto\"); further drops are counted");
            }
        }
        false
    }

    /// Retransmits, fails over and fails requests whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.expire(now, id);
        }
    }

    fn expire(&mut self, now: Instant, id: u64) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let server_index = p.server;
        let role = p.role;
        if p.sent < self.config.tries {
            match p.kind {
                Kind::Auth(_) => {
                    // Unchanged retransmission (RFC 2865 §3 Identifier).
                    p.sent += 1;
                    p.deadline = Some(now + backoff_for(self.config.timeout, p.sent));
                    let bytes = p.bytes.clone();
                    if let Some(s) = self.servers.get(server_index) {
                        tracing::debug!(addr = %s.cfg.address, try_ = p.sent, "RADIUS: retransmitting Access-Request");
                        self.transmits.push_back((s.cfg.address, bytes));
                    }
                }
                Kind::Acct(..) => {
                    // New Acct-Delay-Time: new Identifier and authenticator (RFC 2866 §5.2).
                    let old = p.identifier.take();
                    if let (Some(s), Some(old)) = (self.servers.get_mut(server_index), old) {
                        s.release(old);
                    }
                    self.start_on_server(now, id);
                    self.dequeue(now, server_index);
                }
            }
            return;
        }
        // This server is done with: count the timeout, fail over.
        let old = p.identifier.take();
        let tried = p.servers_tried;
        let answered_unsigned = std::mem::take(&mut p.answered_unsigned);
        let unsigned_from = p.unsigned_from;
        let mut dead = None;
        if let Some(s) = self.servers.get_mut(server_index)
            && answered_unsigned
        {
            // It answered, unsigned: neither a timeout nor a sign of death.
            if let Some(old) = old {
                s.release(old);
            }
        } else if let Some(s) = self.servers.get_mut(server_index) {
            if let Some(old) = old {
                s.release(old);
            }
            s.metrics.timeouts = s.metrics.timeouts.saturating_add(1);
            self.metrics_generation = self.metrics_generation.wrapping_add(1);
            s.consecutive_timeouts = s.consecutive_timeouts.saturating_add(1);
            if s.consecutive_timeouts >= self.config.dead_after {
                if !s.dead {
                    dead = Some(s.cfg.address);
                }
                s.dead = true;
                s.dead_until = Some(now + self.config.dead_time);
            }
        }
        if let Some(addr) = dead {
            tracing::warn!(%addr, "RADIUS server marked dead");
            self.events.push_back(Event::ServerDead { addr });
        }
        let role_count = self.role_servers(role).len();
        let failure = match unsigned_from {
            Some((server, signed_before)) => AuthFailure::Unsigned {
                server,
                setting: self.config.require_message_authenticator,
                signed_before,
            },
            None => AuthFailure::Timeout,
        };
        if tried >= role_count {
            self.pending.remove(&id);
            self.fail(id, role, failure);
        } else if let Some(next) = self.pick_server(role, tried, now) {
            let position = self.position_in_role(role, next);
            if let Some(p) = self.pending.get_mut(&id) {
                p.server = next;
                p.servers_tried = position + 1;
                p.sent = 0;
                p.first_sent = None;
            }
            self.start_on_server(now, id);
        } else {
            self.pending.remove(&id);
            self.fail(id, role, failure);
        }
        self.dequeue(now, server_index);
    }
}

/// The wait after the `sent`-th transmission: timeout × 2^(sent−1), at most 30 s.
fn backoff_for(timeout: Duration, sent: u32) -> Duration {
    let shift = sent.saturating_sub(1).min(16);
    timeout
        .saturating_mul(1 << shift)
        .min(MAX_BACKOFF.max(timeout))
}

fn add_nas(p: &mut Packet, config: &ClientConfig) {
    if let Some(ip) = config.nas_ip {
        p.add_ipv4(attr::NAS_IP_ADDRESS, ip);
    }
    match (&config.nas_identifier, config.nas_ip) {
        (Some(id), _) if !id.is_empty() => p.add_str(attr::NAS_IDENTIFIER, id),
        (_, None) => p.add_str(attr::NAS_IDENTIFIER, "roadgate"),
        _ => {}
    }
}

fn add_nonempty(p: &mut Packet, typ: u8, value: &str) {
    if !value.is_empty() {
        p.add_str(typ, value);
    }
}

/// Builds and signs an Access-Request (RFC 2865 §4.1) with the connection's attributes, the
/// credentials and a Message-Authenticator (RFC 3579 §3.2).
pub fn build_access_request(
    config: &ClientConfig,
    data: &AuthRequestData,
    identifier: u8,
    authenticator: [u8; 16],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut p = Packet::new(code::ACCESS_REQUEST, identifier);
    p.authenticator = authenticator;
    add_nonempty(&mut p, attr::USER_NAME, &data.request.user);
    add_nas(&mut p, config);
    p.add_u32(attr::NAS_PORT, data.ctx.nas_port);
    p.add_u32(attr::NAS_PORT_TYPE, NAS_PORT_TYPE_VIRTUAL);
    p.add_u32(attr::SERVICE_TYPE, SERVICE_TYPE_FRAMED);
    p.add_u32(attr::FRAMED_PROTOCOL, FRAMED_PROTOCOL_PPP);
    add_nonempty(&mut p, attr::CALLING_STATION_ID, &data.ctx.calling_station);
    add_nonempty(&mut p, attr::CALLED_STATION_ID, &data.ctx.called_station);
    p.add(attr::TUNNEL_TYPE, TUNNEL_TYPE_L2TP);
    p.add(attr::TUNNEL_MEDIUM_TYPE, TUNNEL_MEDIUM_IPV4);
    add_nonempty(
        &mut p,
        attr::TUNNEL_CLIENT_ENDPOINT,
        &data.ctx.calling_station,
    );
    add_nonempty(&mut p, attr::ACCT_SESSION_ID, &data.ctx.acct_session_id);
    match &data.request.credentials {
        Credentials::Pap { password } => {
            p.add(
                attr::USER_PASSWORD,
                hide_password(password, secret, &authenticator)?,
            );
        }
        Credentials::ChapMd5 {
            ident,
            challenge,
            response,
        } => {
            // RFC 2865 §5.3 CHAP-Password, §5.40 CHAP-Challenge.
            let mut v = Vec::with_capacity(17);
            v.push(*ident);
            v.extend_from_slice(response);
            p.add(attr::CHAP_PASSWORD, v);
            p.add(attr::CHAP_CHALLENGE, challenge.clone());
        }
        Credentials::MsChapV2 {
            authenticator_challenge,
            peer_challenge,
            nt_response,
        } => {
            // RFC 2548 §2.3.2 MS-CHAP2-Response: Ident, Flags (0), Peer-Challenge, 8 reserved
            // zeros, NT-Response. The PPP layer keeps the CHAP Identifier; 0 is sent.
            p.add_vsa(ms::VENDOR_ID, ms::CHAP_CHALLENGE, authenticator_challenge);
            let mut v = Vec::with_capacity(50);
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(peer_challenge);
            v.extend_from_slice(&[0; 8]);
            v.extend_from_slice(nt_response);
            p.add_vsa(ms::VENDOR_ID, ms::CHAP2_RESPONSE, &v);
        }
        Credentials::Eap { packet } => p.add_eap_message(packet),
    }
    if let Some(state) = &data.state {
        p.add(attr::STATE, state.clone());
    }
    p.add_message_authenticator();
    p.encode_request(secret)
}

/// Builds and signs an Accounting-Request (RFC 2866 §4.1) from a record; `waited` is how
/// long the request has been waiting in this client, added to Acct-Delay-Time.
pub fn build_accounting_request(
    config: &ClientConfig,
    data: &AcctRequestData,
    identifier: u8,
    waited: Duration,
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let r = &data.record;
    let mut p = Packet::new(code::ACCOUNTING_REQUEST, identifier);
    let status = r.status.unwrap_or(AcctStatus::InterimUpdate);
    p.add_u32(attr::ACCT_STATUS_TYPE, status.code());
    add_nonempty(&mut p, attr::ACCT_SESSION_ID, &r.session_id);
    add_nas(&mut p, config);
    if matches!(status, AcctStatus::AccountingOn | AcctStatus::AccountingOff) {
        p.add_message_authenticator();
        return p.encode_request(secret);
    }
    add_nonempty(&mut p, attr::USER_NAME, &r.user);
    p.add_u32(attr::NAS_PORT, r.nas_port);
    p.add_u32(attr::NAS_PORT_TYPE, NAS_PORT_TYPE_VIRTUAL);
    p.add_u32(attr::SERVICE_TYPE, SERVICE_TYPE_FRAMED);
    p.add_u32(attr::FRAMED_PROTOCOL, FRAMED_PROTOCOL_PPP);
    if let Some(ip) = r.framed_ip {
        p.add_ipv4(attr::FRAMED_IP_ADDRESS, ip);
    }
    add_nonempty(&mut p, attr::CALLING_STATION_ID, &r.calling_station);
    add_nonempty(&mut p, attr::CALLED_STATION_ID, &r.called_station);
    for c in &r.class {
        p.add(attr::CLASS, c.clone());
    }
    if status != AcctStatus::Start {
        p.add_u32(attr::ACCT_SESSION_TIME, r.session_time_s);
        // RFC 2866 §5.3/5.4 low 32 bits, RFC 2869 §5.1/5.2 the overflows.
        p.add_u32(attr::ACCT_INPUT_OCTETS, r.input_octets as u32);
        p.add_u32(attr::ACCT_OUTPUT_OCTETS, r.output_octets as u32);
        p.add_u32(
            attr::ACCT_INPUT_GIGAWORDS,
            u32::try_from(r.input_octets >> 32).unwrap_or(u32::MAX),
        );
        p.add_u32(
            attr::ACCT_OUTPUT_GIGAWORDS,
            u32::try_from(r.output_octets >> 32).unwrap_or(u32::MAX),
        );
        p.add_u32(
            attr::ACCT_INPUT_PACKETS,
            u32::try_from(r.input_packets).unwrap_or(u32::MAX),
        );
        p.add_u32(
            attr::ACCT_OUTPUT_PACKETS,
            u32::try_from(r.output_packets).unwrap_or(u32::MAX),
        );
    }
    if status == AcctStatus::Stop
        && let Some(cause) = r.terminate_cause
    {
        p.add_u32(attr::ACCT_TERMINATE_CAUSE, cause.code());
    }
    if r.event_time != 0 {
        p.add_u32(
            attr::EVENT_TIMESTAMP,
            u32::try_from(r.event_time).unwrap_or(u32::MAX),
        );
        let delay = data
            .unix_now
            .saturating_sub(r.event_time)
            .saturating_add(waited.as_secs());
        p.add_u32(
            attr::ACCT_DELAY_TIME,
            u32::try_from(delay).unwrap_or(u32::MAX),
        );
    }
    p.add_message_authenticator();
    p.encode_request(secret)
}

/// MS-CHAP2-Success (RFC 2548 §2.3.3): Ident then "S=" and 40 hex digits.
fn parse_mschap2_success(value: &[u8]) -> Option<[u8; 20]> {
    let text = value.get(1..)?;
    let hex_digits = text.strip_prefix(b"S=")?.get(..40)?;
    let mut out = [0u8; 20];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

fn mppe_keys(packet: &Packet, request_authenticator: &[u8; 16], secret: &[u8]) -> Option<MppeKeys> {
    let send = packet.get_vsa(ms::VENDOR_ID, ms::MPPE_SEND_KEY)?;
    let recv = packet.get_vsa(ms::VENDOR_ID, ms::MPPE_RECV_KEY)?;
    let send = decrypt_mppe_key(send, secret, request_authenticator).ok()?;
    let recv = decrypt_mppe_key(recv, secret, request_authenticator).ok()?;
    let mut keys = MppeKeys {
        send: [0; 16],
        recv: [0; 16],
    };
    keys.send.copy_from_slice(send.get(..16)?);
    keys.recv.copy_from_slice(recv.get(..16)?);
    Some(keys)
}

fn authorization(packet: &Packet) -> Authorization {
    let ms_addr = |t| packet.get_vsa(ms::VENDOR_ID, t).and_then(packet_ipv4);
    Authorization {
        framed_ip: packet.get_ipv4(attr::FRAMED_IP_ADDRESS),
        framed_pool: packet.get_str(attr::FRAMED_POOL),
        session_timeout: packet.get_u32(attr::SESSION_TIMEOUT),
        idle_timeout: packet.get_u32(attr::IDLE_TIMEOUT),
        class: packet.get_all(attr::CLASS).map(<[u8]>::to_vec).collect(),
        interim_interval: packet.get_u32(attr::ACCT_INTERIM_INTERVAL),
        dns: [ms::PRIMARY_DNS_SERVER, ms::SECONDARY_DNS_SERVER]
            .into_iter()
            .filter_map(ms_addr)
            .collect(),
        nbns: [ms::PRIMARY_NBNS_SERVER, ms::SECONDARY_NBNS_SERVER]
            .into_iter()
            .filter_map(ms_addr)
            .collect(),
        reply_message: packet
            .get_all(attr::REPLY_MESSAGE)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
    }
}

fn packet_ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
}

/// Maps a verified Access-Accept, -Reject or -Challenge to the PPP verdict and the
/// authorization. Accept: `Verdict::Accept` with the MPPE keys (MS-MPPE-Send/Recv-Key, the
/// first 16 octets of each) and, for MS-CHAPv2, the authenticator response from
/// MS-CHAP2-Success (RFC 2548 §2.3.3; without it the answer is a reject). Reject: the text of
/// MS-CHAP-Error (RFC 2548 §2.1.5, "E=691 R=0 ..."), else Reply-Message, else "Authentication
/// failed". Challenge: `Verdict::EapContinue` with the joined EAP-Message and the State to
/// echo (RFC 3579 §2.6.1); a challenge without EAP-Message is a reject.
fn interpret_access_response(
    packet: &Packet,
    data: &AuthRequestData,
    request_authenticator: &[u8; 16],
    secret: &[u8],
    server: SocketAddr,
) -> AuthAnswer {
    let is_mschapv2 = matches!(data.request.credentials, Credentials::MsChapV2 { .. });
    let reject = |message: String| AuthAnswer {
        verdict: Verdict::Reject { message },
        authz: Authorization::default(),
        state: None,
        server,
    };
    match packet.code {
        code::ACCESS_ACCEPT => {
            let mschapv2_authenticator_response = if is_mschapv2 {
                match packet
                    .get_vsa(ms::VENDOR_ID, ms::CHAP2_SUCCESS)
                    .and_then(parse_mschap2_success)
                {
                    Some(r) => Some(r),
                    None => {
                        tracing::warn!(%server, "RADIUS: MS-CHAPv2 Access-Accept without a valid MS-CHAP2-Success, rejected");
                        return reject("Authentication failed".into());
                    }
                }
            } else {
                None
            };
            AuthAnswer {
                verdict: Verdict::Accept(Accept {
                    mschapv2_authenticator_response,
                    mppe: mppe_keys(packet, request_authenticator, secret),
                }),
                authz: authorization(packet),
                state: None,
                server,
            }
        }
        code::ACCESS_CHALLENGE => match packet.eap_message() {
            Some(eap) => AuthAnswer {
                verdict: Verdict::EapContinue { packet: eap },
                authz: Authorization::default(),
                state: packet.get(attr::STATE).map(<[u8]>::to_vec),
                server,
            },
            None => reject("Access-Challenge without EAP-Message is not supported".into()),
        },
        _ => {
            // MS-CHAP-Error is a whole failure text ("E=691 R=1 C=... V=3 M=..."); PPP builds
            // its own around our challenge, so only the M= text is passed on.
            let message = packet
                .get_vsa(ms::VENDOR_ID, ms::CHAP_ERROR)
                .and_then(|v| v.get(1..))
                .map(|v| {
                    let text = String::from_utf8_lossy(v).into_owned();
                    match text.find("M=") {
                        Some(i) => text.get(i + 2..).unwrap_or_default().to_string(),
                        None => text,
                    }
                })
                .or_else(|| packet.get_str(attr::REPLY_MESSAGE))
                .unwrap_or_else(|| "Authentication failed".into());
            reject(message)
        }
    }
}

#[cfg(test)]
mod tests;
