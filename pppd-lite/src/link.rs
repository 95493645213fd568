//! The PPP link (RFC 1661 §3): phases, LCP, authentication (server and client side), IPCP and
//! IPV6CP, as a sans-IO state machine. Frames go in through [`Ppp::handle_frame`], control
//! frames come out of [`Ppp::poll_transmit`], decisions and state changes come out of
//! [`Ppp::poll_event`], and time comes in as `Instant` arguments.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::auth::{AuthProtocol, AuthRequest, Credentials, MppeKeys, Verdict};
use crate::chap::{self, MsChapV2Response};
use crate::frame::{self, FrameError, protocol};
use crate::fsm::{Discard, Fsm, Negotiate, Signal, State, Timers, code};
use crate::ipcp::Ipcp;
use crate::ipv6cp::Ipv6cp;
use crate::lcp::{Lcp, LcpRole};
use crate::packet::{self, Packet, PacketError};
use crate::{eap, mschapv2, pap};

/// Link configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server (authenticator, assigns addresses) or client.
    pub role: Role,
    /// Our MRU (default 1400). Requested only when it differs from 1500.
    pub mru: u16,
    /// Restart timer (default 3 s).
    pub restart: Duration,
    /// Max-Configure (default 10).
    pub max_configure: u32,
    /// Max-Terminate (default 2).
    pub max_terminate: u32,
    /// Max-Failure (default 5); also the loop-back detection threshold.
    pub max_failure: u32,
    /// LCP Echo-Request interval (default 30 s); `None` disables keepalives.
    pub echo_interval: Option<Duration>,
    /// Unanswered Echo-Requests before the peer is declared dead (default 4).
    pub echo_failures: u32,
    /// How long the authentication phase may wait for the peer or for a decision (30 s).
    pub auth_timeout: Duration,
    /// MS-CHAPv2 attempts before giving up (default 3).
    pub max_auth_attempts: u32,
    /// Negotiate IPV6CP; when false it is Protocol-Rejected.
    pub ipv6: bool,
}

/// Which end of the link we are.
#[derive(Debug, Clone)]
pub enum Role {
    /// The network access server.
    Server(ServerConfig),
    /// A dial-in client (tests, tools).
    Client(ClientConfig),
}

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Authentication protocols in preference order; empty means no authentication.
    pub auth: Vec<AuthProtocol>,
    /// Our IPCP address.
    pub local_address: Ipv4Addr,
    /// DNS servers for RFC 1877 options 129/131.
    pub dns: [Option<Ipv4Addr>; 2],
    /// NBNS servers for RFC 1877 options 130/132.
    pub nbns: [Option<Ipv4Addr>; 2],
    /// Our CHAP Name.
    pub name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            auth: vec![
                AuthProtocol::MsChapV2,
                AuthProtocol::ChapMd5,
                AuthProtocol::Pap,
            ],
            local_address: Ipv4Addr::new(10, 0, 0, 1),
            dns: [None, None],
            nbns: [None, None],
            name: "roadgate".into(),
        }
    }
}

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// User name (may be `DOMAIN\user` for MS-CHAPv2).
    pub user: String,
    /// Password.
    pub password: Zeroizing<String>,
    /// Protocols we agree to authenticate with, preferred first.
    pub accept_auth: Vec<AuthProtocol>,
    /// Ask for DNS servers (RFC 1877 options 129/131).
    pub request_dns: bool,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("user", &self.user)
            .field("accept_auth", &self.accept_auth)
            .field("request_dns", &self.request_dns)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Server role with the default timers.
    pub fn server(server: ServerConfig) -> Self {
        Self::with_role(Role::Server(server))
    }

    /// Client role with the default timers.
    pub fn client(client: ClientConfig) -> Self {
        Self::with_role(Role::Client(client))
    }

    fn with_role(role: Role) -> Self {
        Self {
            role,
            mru: 1400,
            restart: Duration::from_secs(3),
            max_configure: 10,
            max_terminate: 2,
            max_failure: 5,
            echo_interval: Some(Duration::from_secs(30)),
            echo_failures: 4,
            auth_timeout: Duration::from_secs(30),
            max_auth_attempts: 3,
            ipv6: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::server(ServerConfig::default())
    }
}

/// The link phases (RFC 1661 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not opened, or finished.
    Dead,
    /// LCP negotiation.
    Establish,
    /// Authentication.
    Authenticate,
    /// NCP negotiation and data.
    Network,
    /// Going down.
    Terminate,
}

/// What the network layer got (the IPCP result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Our address.
    pub local: Ipv4Addr,
    /// The peer's address (server: the assigned one; client: the server's, 0.0.0.0 if none).
    pub peer: Ipv4Addr,
    /// DNS servers (server: configured; client: obtained).
    pub dns: [Option<Ipv4Addr>; 2],
    /// Our MRU.
    pub mru: u16,
    /// The largest packet we may send: min(peer's MRU, ours).
    pub mtu: u16,
}

/// Why the link went down. [`Event::Down`] is emitted once and is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The peer sent Terminate-Request (its text).
    PeerTerminated(String),
    /// Echo-Requests went unanswered.
    EchoTimeout,
    /// Authentication failed.
    AuthFailed,
    /// Negotiation failed (which protocol / why).
    Negotiation(&'static str),
    /// The owner had no address to assign.
    PoolExhausted,
    /// [`Ppp::close`] (its reason).
    Closed(String),
    /// The link is looped back (our own magic number keeps coming back).
    LoopbackDetected,
    /// The peer or the owner's decision took longer than `auth_timeout`.
    AuthTimeout,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::PeerTerminated(text) if text.is_empty() => {
                f.write_str("the client ended PPP")
            }
            DownReason::PeerTerminated(text) => {
                write!(f, "the client ended PPP ({})", text.escape_debug())
            }
            DownReason::EchoTimeout => f.write_str("the client stopped answering LCP echo"),
            DownReason::AuthFailed => f.write_str("authentication failed"),
            DownReason::Negotiation(what) => write!(f, "{what} negotiation failed"),
            DownReason::PoolExhausted => f.write_str("no address left in the pool"),
            DownReason::Closed(why) => write!(f, "closed by the server ({why})"),
            DownReason::LoopbackDetected => f.write_str("the link is looped back"),
            DownReason::AuthTimeout => f.write_str("authentication took too long"),
        }
    }
}

/// What the owner must know or do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: decide, then call [`Ppp::auth_decision`] with `id`.
    Authenticate(AuthRequest),
    /// Authentication succeeded. Server: allocate an address and call
    /// [`Ppp::assign_address`] (or [`Ppp::address_unavailable`]).
    Authenticated {
        /// User name as sent.
        user: String,
        /// Protocol used.
        protocol: AuthProtocol,
    },
    /// One authentication attempt failed (MS-CHAPv2 may allow more).
    AuthFailed {
        /// User name as sent.
        user: String,
        /// Protocol used.
        protocol: AuthProtocol,
        /// The verdict's message.
        reason: String,
    },
    /// IPCP is open: IPv4 flows.
    Up(NetworkInfo),
    /// IPV6CP is open: IPv6 flows.
    Ipv6Up {
        /// Our Interface-Identifier.
        local_interface_id: [u8; 8],
        /// The peer's Interface-Identifier.
        peer_interface_id: [u8; 8],
    },
    /// The link is down (final).
    Down(DownReason),
}

/// Why [`Ppp::handle_frame`] did not deliver a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The frame itself is malformed.
    MalformedFrame(FrameError),
    /// A control packet is malformed.
    MalformedPacket(PacketError),
    /// IP before its NCP is Opened.
    NotOpened,
    /// An NCP packet before the network phase (RFC 1661 §3.2: silently discarded).
    TooEarly,
    /// Unsupported protocol answered with Protocol-Reject.
    ProtocolRejected(u16),
    /// Unsupported protocol while LCP is not Opened (no Protocol-Reject then).
    UnsupportedProtocol(u16),
}

/// The result of [`Ppp::handle_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A control frame, consumed (possibly discarded and counted in [`Stats`]).
    Handled,
    /// An IPv4 packet for the network.
    Ipv4(&'a [u8]),
    /// An IPv6 packet for the network.
    Ipv6(&'a [u8]),
    /// Not delivered.
    Dropped(DropReason),
}

/// Malformed packets by cause.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MalformedStats {
    /// Bad frame (protocol field).
    pub frame: u64,
    /// Control packet too short or Length field out of range.
    pub length: u64,
    /// Option list malformed (option length < 2 or running past the packet).
    pub option: u64,
    /// Body not following the protocol's format (auth packets, Echo, Protocol-Reject).
    pub body: u64,
}

/// Counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Frames given to `handle_frame`.
    pub frames_in: u64,
    /// Frames queued for `poll_transmit`.
    pub frames_out: u64,
    /// IPv4 packets delivered.
    pub ipv4_in: u64,
    /// IPv6 packets delivered.
    pub ipv6_in: u64,
    /// Malformed input by cause.
    pub malformed: MalformedStats,
    /// Protocol-Rejects we sent.
    pub protocol_rejected: u64,
    /// Code-Rejects we sent.
    pub code_rejected: u64,
    /// Out-of-state or mismatched packets discarded (RFC 1661 "silently discard").
    pub unexpected: u64,
    /// NCP packets before the network phase.
    pub too_early: u64,
    /// IP packets before their NCP was Opened, or unsupported protocols before LCP Opened.
    pub not_opened: u64,
    /// Discard-Request, Identification and Time-Remaining packets ignored.
    pub ignored: u64,
    /// Authentication responses retransmitted while a decision was pending.
    pub auth_duplicates: u64,
    /// Decisions for unknown or finished requests.
    pub stale_decisions: u64,
    /// Echo-Requests sent.
    pub echo_requests: u64,
    /// Echo-Replies received.
    pub echo_replies: u64,
}

impl Stats {
    fn malformed(&mut self, e: PacketError) {
        match e {
            PacketError::Short | PacketError::BadLength => self.malformed.length += 1,
            PacketError::BadOption => self.malformed.option += 1,
            PacketError::BadBody => self.malformed.body += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Idle,
    /// Waiting for the peer's response (or, client, for the authenticator).
    Awaiting,
    /// Server: waiting for the owner's decision.
    Pending,
    Done,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    ident: u8,
    user: String,
}

/// Server side of the authentication phase.
#[derive(Debug)]
struct ServerAuth {
    protocol: Option<AuthProtocol>,
    progress: Progress,
    ident: u8,
    challenge: [u8; 16],
    failures: u32,
    pending: Option<Pending>,
    eap_identity: Option<String>,
}

/// Client side of the authentication phase.
#[derive(Debug)]
struct ClientAuth {
    protocol: Option<AuthProtocol>,
    progress: Progress,
    /// MS-CHAPv2: the `S=` text the server must send.
    expected: Option<Zeroizing<String>>,
    /// MS-CHAPv2: the (identifier, challenge) last answered.
    answered: Option<(u8, [u8; 16])>,
    failures: u32,
}

/// A control packet we resend on the restart timer.
struct Retransmit {
    protocol: u16,
    packet: Zeroizing<Vec<u8>>,
    deadline: Instant,
    remaining: u32,
}

impl fmt::Debug for Retransmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retransmit")
            .field("protocol", &self.protocol)
            .field("deadline", &self.deadline)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

struct SessionRng(ChaCha20Rng);

impl fmt::Debug for SessionRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionRng")
    }
}

/// One PPP link.
#[derive(Debug)]
pub struct Ppp {
    config: Config,
    rng: SessionRng,
    phase: Phase,
    lcp: Fsm<Lcp>,
    ipcp: Fsm<Ipcp>,
    ipv6cp: Fsm<Ipv6cp>,
    server_auth: ServerAuth,
    client_auth: ClientAuth,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: Stats,
    echo_next: Option<Instant>,
    echo_outstanding: u32,
    auth_deadline: Option<Instant>,
    retransmit: Option<Retransmit>,
    last_auth_reply: Option<(u16, Vec<u8>)>,
    user: Option<String>,
    held_ipcp: Option<Vec<u8>>,
    down: bool,
    next_request: u64,
    mppe: Option<MppeKeys>,
}

fn wire_protocol(p: AuthProtocol) -> u16 {
    match p {
        AuthProtocol::Pap => protocol::PAP,
        AuthProtocol::ChapMd5 | AuthProtocol::MsChapV2 => protocol::CHAP,
        AuthProtocol::Eap => protocol::EAP,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Feeds a packet to an automaton and counts what it discarded; Code-Rejects unknown codes.
fn drive<N: Negotiate>(
    fsm: &mut Fsm<N>,
    now: Instant,
    pkt: Packet<'_>,
    raw: &[u8],
    max_len: usize,
    stats: &mut Stats,
) {
    match fsm.receive(now, pkt) {
        Ok(()) => {}
        Err(Discard::Malformed(e)) => stats.malformed(e),
        Err(Discard::Unexpected) => stats.unexpected += 1,
        Err(Discard::UnknownCode) => {
            stats.code_rejected += 1;
            fsm.code_reject(raw, max_len);
        }
    }
}

/// Parses `C=<32 hex digits>` and `R=<0|1>` out of an MS-CHAPv2 Failure message.
fn parse_mschapv2_failure(message: &[u8]) -> (bool, Option<[u8; 16]>) {
    let text = String::from_utf8_lossy(message);
    let mut retry = false;
    let mut challenge = None;
    for field in text.split(' ') {
        if field == "R=1" {
            retry = true;
        } else if let Some(hex) = field.strip_prefix("C=") {
            challenge = decode_hex16(hex);
        }
    }
    (retry, challenge)
}

fn decode_hex16(hex: &str) -> Option<[u8; 16]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl Ppp {
    /// A link in the Initial state. `seed` drives every random choice (magic numbers,
    /// challenges, identifiers, interface identifiers).
    pub fn new(config: Config, now: Instant, seed: [u8; 32]) -> Self {
        let _ = now;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut child = || {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            ChaCha20Rng::from_seed(s)
        };
        let timers = Timers {
            restart: config.restart,
            max_configure: config.max_configure.max(1),
            max_terminate: config.max_terminate.max(1),
            max_failure: config.max_failure,
        };
        let (lcp_role, ipcp) = match &config.role {
            Role::Server(s) => (
                LcpRole::Server {
                    offer: s.auth.clone(),
                    current: 0,
                },
                Ipcp::Server {
                    local: s.local_address,
                    send_local: true,
                    dns: s.dns,
                    nbns: s.nbns,
                    assigned: None,
                },
            ),
            Role::Client(c) => (
                LcpRole::Client {
                    accept: c.accept_auth.clone(),
                },
                Ipcp::Client {
                    address: Ipv4Addr::UNSPECIFIED,
                    dns: if c.request_dns {
                        [Some(Ipv4Addr::UNSPECIFIED); 2]
                    } else {
                        [None; 2]
                    },
                    server: None,
                },
            ),
        };
        let lcp = Lcp::new(lcp_role, config.mru, child());
        let ipv6cp = Ipv6cp::new(child());
        let mut rng = child();
        let mut ids = [0u8; 3];
        rng.fill_bytes(&mut ids);
        Self {
            lcp: Fsm::new(lcp, timers, ids[0]),
            ipcp: Fsm::new(ipcp, timers, ids[1]),
            ipv6cp: Fsm::new(ipv6cp, timers, ids[2]),
            config,
            rng: SessionRng(rng),
            phase: Phase::Dead,
            server_auth: ServerAuth {
                protocol: None,
                progress: Progress::Idle,
                ident: 0,
                challenge: [0; 16],
                failures: 0,
                pending: None,
                eap_identity: None,
            },
            client_auth: ClientAuth {
                protocol: None,
                progress: Progress::Idle,
                expected: None,
                answered: None,
                failures: 0,
            },
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            echo_next: None,
            echo_outstanding: 0,
            auth_deadline: None,
            retransmit: None,
            last_auth_reply: None,
            user: None,
            held_ipcp: None,
            down: false,
            next_request: 0,
            mppe: None,
        }
    }

    fn is_server(&self) -> bool {
        matches!(self.config.role, Role::Server(_))
    }

    // ----- public API -----------------------------------------------------------------------

    /// Lower layer up and administrative open: starts LCP.
    pub fn open(&mut self, now: Instant) {
        if self.down {
            return;
        }
        self.phase = Phase::Establish;
        self.lcp.open(now);
        self.lcp.up(now);
        self.after_lcp(now);
    }

    /// Administrative close: LCP Terminate-Request carrying `reason`; `Down(Closed)`.
    pub fn close(&mut self, now: Instant, reason: &str) {
        self.fail(now, DownReason::Closed(reason.to_owned()), reason);
    }

    /// The next control frame to send (`FF 03`, protocol, packet).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.lcp.deadline(),
            self.ipcp.deadline(),
            self.ipv6cp.deadline(),
            self.retransmit.as_ref().map(|r| r.deadline),
            self.auth_deadline,
            self.echo_next,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.lcp.timeout(now);
        self.after_lcp(now);
        self.ipcp.timeout(now);
        self.after_ipcp(now);
        self.ipv6cp.timeout(now);
        self.after_ipv6cp(now);
        if let Some(r) = self.retransmit.as_mut().filter(|r| r.deadline <= now) {
            if r.remaining > 0 {
                r.remaining -= 1;
                r.deadline = now + self.config.restart;
                let (proto, pkt) = (r.protocol, r.packet.clone());
                self.send(proto, &pkt);
            } else {
                self.retransmit = None;
                self.fail(now, DownReason::AuthTimeout, "authentication timed out");
            }
        }
        if self.auth_deadline.is_some_and(|d| d <= now) {
            self.auth_deadline = None;
            self.fail(now, DownReason::AuthTimeout, "authentication timed out");
        }
        if let Some(interval) = self.config.echo_interval
            && self.echo_next.is_some_and(|d| d <= now)
        {
            if self.echo_outstanding >= self.config.echo_failures {
                self.echo_next = None;
                self.fail(
                    now,
                    DownReason::EchoTimeout,
                    "peer does not answer echo requests",
                );
            } else {
                self.echo_outstanding += 1;
                self.echo_next = Some(now + interval);
                let id = self.lcp.fresh_id();
                let magic = self.lcp.opts.magic().to_be_bytes();
                self.stats.echo_requests += 1;
                self.send(
                    protocol::LCP,
                    &packet::encode(code::ECHO_REQUEST, id, &magic),
                );
            }
        }
    }

    /// Whether IPCP is open and the link is not going down.
    pub fn is_up(&self) -> bool {
        !self.down && self.ipcp.state() == State::Opened
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Server: the address assigned to the peer. Client: the server's address.
    pub fn peer_address(&self) -> Option<Ipv4Addr> {
        match &self.ipcp.opts {
            Ipcp::Server { assigned, .. } => *assigned,
            Ipcp::Client { server, .. } => *server,
        }
    }

    /// The authenticated user name.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// MPPE keys from the accepted MS-CHAPv2 exchange, if the backend gave them.
    pub fn mppe_keys(&self) -> Option<&MppeKeys> {
        self.mppe.as_ref()
    }

    /// `FF 03 00 21` followed by `packet`.
    pub fn encapsulate_ipv4(&self, packet: &[u8]) -> Vec<u8> {
        frame::encode(protocol::IPV4, packet)
    }

    /// `FF 03 00 57` followed by `packet`.
    pub fn encapsulate_ipv6(&self, packet: &[u8]) -> Vec<u8> {
        frame::encode(protocol::IPV6, packet)
    }

    /// Handles one received frame.
    pub fn handle_frame<'a>(&mut self, now: Instant, frame: &'a [u8]) -> Input<'a> {
        self.stats.frames_in += 1;
        let (proto, info) = match frame::parse(frame) {
            Ok(x) => x,
            Err(e) => {
                self.stats.malformed.frame += 1;
                return Input::Dropped(DropReason::MalformedFrame(e));
            }
        };
        match proto {
            protocol::IPV4 if self.is_up() => {
                self.stats.ipv4_in += 1;
                Input::Ipv4(info)
            }
            protocol::IPV6 if !self.down && self.ipv6cp.state() == State::Opened => {
                self.stats.ipv6_in += 1;
                Input::Ipv6(info)
            }
            protocol::IPV4 | protocol::IPV6 => {
                self.stats.not_opened += 1;
                Input::Dropped(DropReason::NotOpened)
            }
            protocol::LCP => self.receive_lcp(now, info),
            protocol::PAP | protocol::CHAP | protocol::EAP => self.receive_auth(now, proto, info),
            protocol::IPCP => self.receive_ncp(now, proto, info),
            protocol::IPV6CP if self.config.ipv6 => self.receive_ncp(now, proto, info),
            _ => self.protocol_reject(proto, info),
        }
    }

    /// Server: the owner's answer to [`Event::Authenticate`]. Unknown or stale ids are ignored.
    pub fn auth_decision(&mut self, now: Instant, id: u64, verdict: Verdict) {
        let matches = self.server_auth.progress == Progress::Pending
            && self
                .server_auth
                .pending
                .as_ref()
                .is_some_and(|p| p.id == id);
        if !matches || self.down {
            self.stats.stale_decisions += 1;
            return;
        }
        let Some(pending) = self.server_auth.pending.take() else {
            return;
        };
        let Some(method) = self.server_auth.protocol else {
            return;
        };
        match verdict {
            Verdict::Accept(accept) => self.server_accept(now, method, pending, accept),
            Verdict::Reject { message } => self.server_reject(now, method, pending, &message),
            Verdict::EapContinue { packet } => {
                let valid = method == AuthProtocol::Eap
                    && eap::parse(&packet).is_ok_and(|p| p.code == eap::code::REQUEST);
                if !valid {
                    self.server_reject(now, method, pending, "invalid EAP relay packet");
                    return;
                }
                self.server_auth.ident = packet.get(1).copied().unwrap_or(0);
                self.server_auth.progress = Progress::Awaiting;
                self.auth_deadline = Some(now + self.config.auth_timeout);
                self.send_with_retransmit(now, protocol::EAP, packet);
            }
        }
    }

    /// Server: the address for the peer (after [`Event::Authenticated`]). A peer IPCP
    /// Configure-Request held until now is answered at once.
    pub fn assign_address(&mut self, now: Instant, peer: Ipv4Addr) {
        if let Ipcp::Server { assigned, .. } = &mut self.ipcp.opts {
            *assigned = Some(peer);
        }
        if let Some(held) = self.held_ipcp.take() {
            self.receive_ncp(now, protocol::IPCP, &held);
        }
    }

    /// Server: the DNS and NBNS servers to offer this peer (RFC 1877) instead of the
    /// configuration's, e.g. what RADIUS said of the user. Call before IPCP finishes.
    pub fn set_name_servers(&mut self, dns: [Option<Ipv4Addr>; 2], nbns: [Option<Ipv4Addr>; 2]) {
        if let Ipcp::Server {
            dns: d, nbns: n, ..
        } = &mut self.ipcp.opts
        {
            *d = dns;
            *n = nbns;
        }
    }

    /// Server: no address to assign; closes the link with a readable reason.
    pub fn address_unavailable(&mut self, now: Instant) {
        self.fail(now, DownReason::PoolExhausted, "no IP address available");
    }

    // ----- plumbing -------------------------------------------------------------------------

    fn send(&mut self, proto: u16, packet: &[u8]) {
        self.stats.frames_out += 1;
        self.out.push_back(frame::encode(proto, packet));
    }

    fn send_with_retransmit(&mut self, now: Instant, proto: u16, packet: Vec<u8>) {
        self.send(proto, &packet);
        self.retransmit = Some(Retransmit {
            protocol: proto,
            packet: Zeroizing::new(packet),
            deadline: now + self.config.restart,
            remaining: self.config.max_configure.saturating_sub(1),
        });
    }

    fn go_down(&mut self, reason: DownReason) {
        if self.down {
            return;
        }
        self.down = true;
        self.phase = Phase::Terminate;
        self.auth_deadline = None;
        self.retransmit = None;
        self.echo_next = None;
        self.held_ipcp = None;
        self.events.push_back(Event::Down(reason));
    }

    fn fail(&mut self, now: Instant, reason: DownReason, message: &str) {
        self.go_down(reason);
        self.lcp.close(now, message.as_bytes());
        self.after_lcp(now);
    }

    fn after_lcp(&mut self, now: Instant) {
        loop {
            for p in std::mem::take(&mut self.lcp.out) {
                self.send(protocol::LCP, &p);
            }
            let signals = std::mem::take(&mut self.lcp.signals);
            if signals.is_empty() {
                return;
            }
            for s in signals {
                match s {
                    Signal::Up => self.lcp_up(now),
                    Signal::Down => self.lcp_down(now),
                    Signal::Finished => {
                        self.phase = Phase::Dead;
                        let reason = match self.lcp.peer_terminate.as_deref() {
                            Some(t) => DownReason::PeerTerminated(lossy(t)),
                            None => DownReason::Negotiation("LCP: no agreement with the peer"),
                        };
                        self.go_down(reason);
                        self.ipcp.down();
                        self.ipv6cp.down();
                    }
                    Signal::Failed(why) => {
                        self.go_down(DownReason::Negotiation(why));
                        self.lcp.close(now, why.as_bytes());
                    }
                }
            }
        }
    }

    fn after_ipcp(&mut self, now: Instant) {
        for p in std::mem::take(&mut self.ipcp.out) {
            self.send(protocol::IPCP, &p);
        }
        for s in std::mem::take(&mut self.ipcp.signals) {
            if self.down {
                continue;
            }
            match s {
                Signal::Up => {
                    let info = self.network_info();
                    self.events.push_back(Event::Up(info));
                }
                Signal::Down | Signal::Finished => {
                    self.fail(now, DownReason::Negotiation("IPCP"), "IPCP closed");
                }
                Signal::Failed(why) => self.fail(now, DownReason::Negotiation(why), why),
            }
        }
    }

    fn after_ipv6cp(&mut self, now: Instant) {
        for p in std::mem::take(&mut self.ipv6cp.out) {
            self.send(protocol::IPV6CP, &p);
        }
        for s in std::mem::take(&mut self.ipv6cp.signals) {
            match s {
                Signal::Up if !self.down => {
                    let ours = self.ipv6cp.opts.ours;
                    let peer = self.ipv6cp.opts.peer.unwrap_or([0; 8]);
                    self.events.push_back(Event::Ipv6Up {
                        local_interface_id: ours,
                        peer_interface_id: peer,
                    });
                }
                Signal::Failed(why) => {
                    self.ipv6cp.close(now, why.as_bytes());
                    self.after_ipv6cp(now);
                }
                _ => {}
            }
        }
    }

    fn network_info(&self) -> NetworkInfo {
        let mru = self.lcp.opts.mru();
        let mtu = self.lcp.opts.peer_mru.min(mru);
        match &self.ipcp.opts {
            Ipcp::Server {
                local,
                dns,
                assigned,
                ..
            } => NetworkInfo {
                local: *local,
                peer: assigned.unwrap_or(Ipv4Addr::UNSPECIFIED),
                dns: *dns,
                mru,
                mtu,
            },
            Ipcp::Client {
                address,
                dns,
                server,
            } => NetworkInfo {
                local: *address,
                peer: server.unwrap_or(Ipv4Addr::UNSPECIFIED),
                dns: dns.map(|d| d.filter(|a| !a.is_unspecified())),
                mru,
                mtu,
            },
        }
    }

    fn lcp_up(&mut self, now: Instant) {
        if self.down {
            return;
        }
        self.phase = Phase::Authenticate;
        if let Some(interval) = self.config.echo_interval {
            self.echo_next = Some(now + interval);
            self.echo_outstanding = 0;
        }
        let Some(method) = self.lcp.opts.auth else {
            self.enter_network(now);
            return;
        };
        self.auth_deadline = Some(now + self.config.auth_timeout);
        if self.is_server() {
            self.start_server_auth(now, method);
        } else {
            self.client_auth.protocol = Some(method);
            self.client_auth.progress = Progress::Awaiting;
            if method == AuthProtocol::Pap
                && let Role::Client(c) = &self.config.role
            {
                let id = self.lcp.fresh_id();
                let pkt = pap::encode_request(id, c.user.as_bytes(), c.password.as_bytes());
                self.send_with_retransmit(now, protocol::PAP, pkt.to_vec());
            }
        }
    }

    fn lcp_down(&mut self, now: Instant) {
        let reason = match self.lcp.peer_terminate.as_deref() {
            Some(t) => DownReason::PeerTerminated(lossy(t)),
            None => DownReason::Negotiation("LCP renegotiation is not supported"),
        };
        self.go_down(reason);
        self.ipcp.down();
        self.ipv6cp.down();
        self.ipcp.signals.clear();
        self.ipv6cp.signals.clear();
        // Renegotiation (or the peer's Terminate-Request) ends the session for good.
        self.lcp.close(now, b"link going down");
    }

    fn enter_network(&mut self, now: Instant) {
        self.phase = Phase::Network;
        self.auth_deadline = None;
        self.ipcp.up(now);
        self.ipcp.open(now);
        self.after_ipcp(now);
        if self.config.ipv6 {
            self.ipv6cp.up(now);
            self.ipv6cp.open(now);
            self.after_ipv6cp(now);
        }
    }

    /// Parses a control packet, counting a malformed one.
    fn parse_control<'p>(&mut self, info: &'p [u8]) -> Result<Packet<'p>, Input<'static>> {
        Packet::parse(info).map_err(|e| {
            self.stats.malformed(e);
            Input::Dropped(DropReason::MalformedPacket(e))
        })
    }

    fn protocol_reject(&mut self, proto: u16, info: &[u8]) -> Input<'static> {
        if self.lcp.state() != State::Opened {
            self.stats.not_opened += 1;
            return Input::Dropped(DropReason::UnsupportedProtocol(proto));
        }
        // LCP header (4) + rejected protocol (2) + as much information as the peer's MRU allows.
        let room = usize::from(self.lcp.opts.peer_mru).saturating_sub(6);
        let mut data = proto.to_be_bytes().to_vec();
        data.extend_from_slice(info.get(..room).unwrap_or(info));
        let id = self.lcp.fresh_id();
        self.stats.protocol_rejected += 1;
        self.send(
            protocol::LCP,
            &packet::encode(code::PROTOCOL_REJECT, id, &data),
        );
        Input::Dropped(DropReason::ProtocolRejected(proto))
    }

    fn receive_lcp(&mut self, now: Instant, info: &[u8]) -> Input<'static> {
        let pkt = match self.parse_control(info) {
            Ok(p) => p,
            Err(dropped) => return dropped,
        };
        let opened = self.lcp.state() == State::Opened;
        match pkt.code {
            code::PROTOCOL_REJECT if opened => {
                match packet::be16(pkt.data.get(..2).unwrap_or_default()) {
                    Some(p) => self.rejected_by_peer(now, p),
                    None => self.stats.malformed.body += 1,
                }
            }
            code::ECHO_REQUEST if opened => {
                if pkt.data.len() < 4 {
                    self.stats.malformed.body += 1;
                } else {
                    let mut data = self.lcp.opts.magic().to_be_bytes().to_vec();
                    data.extend_from_slice(pkt.data.get(4..).unwrap_or_default());
                    self.send(
                        protocol::LCP,
                        &packet::encode(code::ECHO_REPLY, pkt.id, &data),
                    );
                }
            }
            code::ECHO_REPLY if opened => {
                self.stats.echo_replies += 1;
                self.echo_outstanding = 0;
            }
            code::PROTOCOL_REJECT | code::ECHO_REQUEST | code::ECHO_REPLY => {
                self.stats.unexpected += 1;
            }
            code::DISCARD_REQUEST | code::IDENTIFICATION | code::TIME_REMAINING => {
                self.stats.ignored += 1;
            }
            _ => {
                let max = usize::from(self.lcp.opts.peer_mru);
                drive(&mut self.lcp, now, pkt, info, max, &mut self.stats);
            }
        }
        if self.lcp.opts.looped >= self.config.max_failure.max(1) && !self.down {
            self.fail(now, DownReason::LoopbackDetected, "loop-back detected");
        }
        self.after_lcp(now);
        Input::Handled
    }

    fn rejected_by_peer(&mut self, now: Instant, proto: u16) {
        match proto {
            protocol::LCP => {
                self.lcp.rxj(now, true);
            }
            protocol::IPCP => {
                self.fail(
                    now,
                    DownReason::Negotiation("IPCP rejected by the peer"),
                    "IPCP rejected",
                );
            }
            protocol::IPV6CP => {
                self.ipv6cp.rxj(now, true);
                self.after_ipv6cp(now);
            }
            protocol::PAP | protocol::CHAP | protocol::EAP if self.phase == Phase::Authenticate => {
                self.fail(
                    now,
                    DownReason::Negotiation("authentication protocol rejected by the peer"),
                    "authentication protocol rejected",
                );
            }
            _ => self.stats.unexpected += 1,
        }
    }

    fn receive_ncp<'a>(&mut self, now: Instant, proto: u16, info: &[u8]) -> Input<'a> {
        if self.phase != Phase::Network || self.down {
            self.stats.too_early += 1;
            return Input::Dropped(DropReason::TooEarly);
        }
        let pkt = match self.parse_control(info) {
            Ok(p) => p,
            Err(dropped) => return dropped,
        };
        let max = usize::from(self.lcp.opts.peer_mru);
        if proto == protocol::IPCP {
            let unassigned = matches!(self.ipcp.opts, Ipcp::Server { assigned: None, .. });
            if unassigned && pkt.code == code::CONFIGURE_REQUEST {
                // Answered by assign_address.
                self.held_ipcp = Some(info.to_vec());
                return Input::Handled;
            }
            drive(&mut self.ipcp, now, pkt, info, max, &mut self.stats);
            self.after_ipcp(now);
        } else {
            drive(&mut self.ipv6cp, now, pkt, info, max, &mut self.stats);
            self.after_ipv6cp(now);
        }
        Input::Handled
    }

    fn receive_auth(&mut self, now: Instant, proto: u16, info: &[u8]) -> Input<'static> {
        let pkt = match self.parse_control(info) {
            Ok(p) => p,
            Err(dropped) => return dropped,
        };
        let method = if self.is_server() {
            self.server_auth.protocol
        } else {
            self.client_auth.protocol
        };
        let in_phase = matches!(self.phase, Phase::Authenticate | Phase::Network);
        if self.down || !in_phase || method.map(wire_protocol) != Some(proto) {
            self.stats.unexpected += 1;
            return Input::Handled;
        }
        let result = if self.is_server() {
            self.server_auth_packet(now, pkt, info)
        } else {
            self.client_auth_packet(now, pkt, info)
        };
        match result {
            Ok(()) => Input::Handled,
            Err(Discard::Malformed(e)) => {
                self.stats.malformed(e);
                Input::Dropped(DropReason::MalformedPacket(e))
            }
            Err(_) => {
                self.stats.unexpected += 1;
                Input::Handled
            }
        }
    }

    // ----- server authentication ------------------------------------------------------------

    fn start_server_auth(&mut self, now: Instant, method: AuthProtocol) {
        let sa = &mut self.server_auth;
        sa.protocol = Some(method);
        sa.progress = Progress::Awaiting;
        sa.ident = self.lcp.fresh_id();
        match method {
            AuthProtocol::Pap => {}
            AuthProtocol::ChapMd5 | AuthProtocol::MsChapV2 => self.send_challenge(now),
            AuthProtocol::Eap => {
                let pkt = eap::encode(
                    eap::code::REQUEST,
                    self.server_auth.ident,
                    Some(eap::kind::IDENTITY),
                    &[],
                );
                self.send_with_retransmit(now, protocol::EAP, pkt);
            }
        }
    }

    fn send_challenge(&mut self, now: Instant) {
        self.rng.0.fill_bytes(&mut self.server_auth.challenge);
        let name = match &self.config.role {
            Role::Server(s) => s.name.clone(),
            Role::Client(_) => String::new(),
        };
        let pkt = chap::encode_value(
            chap::code::CHALLENGE,
            self.server_auth.ident,
            &self.server_auth.challenge,
            name.as_bytes(),
        );
        self.send_with_retransmit(now, protocol::CHAP, pkt);
    }

    fn server_auth_packet(
        &mut self,
        now: Instant,
        pkt: Packet<'_>,
        raw: &[u8],
    ) -> Result<(), Discard> {
        let Some(method) = self.server_auth.protocol else {
            return Err(Discard::Unexpected);
        };
        let response_code = match method {
            AuthProtocol::Pap => pap::code::REQUEST,
            AuthProtocol::ChapMd5 | AuthProtocol::MsChapV2 => chap::code::RESPONSE,
            AuthProtocol::Eap => eap::code::RESPONSE,
        };
        if pkt.code != response_code {
            return Err(Discard::Unexpected);
        }
        match self.server_auth.progress {
            Progress::Pending => {
                self.stats.auth_duplicates += 1;
                return Ok(());
            }
            Progress::Done => {
                // RFC 1994 §4.2: the Success (or Ack) may have been lost; repeat it.
                if let Some((proto, reply)) = self.last_auth_reply.clone() {
                    self.send(proto, &reply);
                }
                return Ok(());
            }
            Progress::Idle => return Err(Discard::Unexpected),
            Progress::Awaiting => {}
        }
        let (user, credentials) = match method {
            AuthProtocol::Pap => {
                let req = pap::parse_request(pkt.data).map_err(Discard::Malformed)?;
                let creds = Credentials::Pap {
                    password: Zeroizing::new(req.password.to_vec()),
                };
                (lossy(req.peer_id), creds)
            }
            AuthProtocol::ChapMd5 | AuthProtocol::MsChapV2 => {
                let v = chap::parse_value(pkt.data).map_err(Discard::Malformed)?;
                let creds = if method == AuthProtocol::ChapMd5 {
                    if pkt.id != self.server_auth.ident {
                        return Err(Discard::Unexpected);
                    }
                    let response: [u8; 16] = v
                        .value
                        .try_into()
                        .map_err(|_| Discard::Malformed(PacketError::BadBody))?;
                    Credentials::ChapMd5 {
                        ident: pkt.id,
                        challenge: self.server_auth.challenge.to_vec(),
                        response,
                    }
                } else {
                    // After a Failure with R=1 the peer answers with a new identifier, so any
                    // identifier is taken (the challenge is what binds the response).
                    let r = MsChapV2Response::parse(v.value).map_err(Discard::Malformed)?;
                    Credentials::MsChapV2 {
                        authenticator_challenge: self.server_auth.challenge,
                        peer_challenge: r.peer_challenge,
                        nt_response: r.nt_response,
                    }
                };
                (lossy(v.name), creds)
            }
            AuthProtocol::Eap => {
                let e = eap::parse(raw).map_err(Discard::Malformed)?;
                if e.id != self.server_auth.ident {
                    return Err(Discard::Unexpected);
                }
                if e.kind == Some(eap::kind::IDENTITY) {
                    self.server_auth.eap_identity = Some(lossy(e.type_data));
                }
                let user = self.server_auth.eap_identity.clone().unwrap_or_default();
                (
                    user,
                    Credentials::Eap {
                        packet: raw.to_vec(),
                    },
                )
            }
        };
        self.retransmit = None;
        self.next_request += 1;
        let id = self.next_request;
        self.server_auth.progress = Progress::Pending;
        self.server_auth.pending = Some(Pending {
            id,
            ident: pkt.id,
            user: user.clone(),
        });
        self.auth_deadline = Some(now + self.config.auth_timeout);
        self.events.push_back(Event::Authenticate(AuthRequest {
            id,
            user,
            credentials,
        }));
        Ok(())
    }

    fn server_accept(
        &mut self,
        now: Instant,
        method: AuthProtocol,
        p: Pending,
        accept: crate::auth::Accept,
    ) {
        let reply = match method {
            AuthProtocol::Pap => pap::encode_reply(pap::code::ACK, p.ident, "Welcome"),
            AuthProtocol::ChapMd5 => packet::encode(chap::code::SUCCESS, p.ident, b"Welcome"),
            AuthProtocol::MsChapV2 => {
                let Some(s) = accept.mschapv2_authenticator_response else {
                    self.server_reject(
                        now,
                        method,
                        p,
                        "no authenticator response from the backend",
                    );
                    return;
                };
                let text = format!("{} M=Welcome", mschapv2::authenticator_response_text(&s));
                packet::encode(chap::code::SUCCESS, p.ident, text.as_bytes())
            }
            AuthProtocol::Eap => eap::encode(eap::code::SUCCESS, p.ident, None, &[]),
        };
        let proto = wire_protocol(method);
        self.send(proto, &reply);
        self.last_auth_reply = Some((proto, reply));
        self.server_auth.progress = Progress::Done;
        self.mppe = accept.mppe;
        self.user = Some(p.user.clone());
        self.events.push_back(Event::Authenticated {
            user: p.user,
            protocol: method,
        });
        self.enter_network(now);
    }

    fn server_reject(&mut self, now: Instant, method: AuthProtocol, p: Pending, message: &str) {
        self.server_auth.failures += 1;
        let retry = method == AuthProtocol::MsChapV2
            && self.server_auth.failures < self.config.max_auth_attempts;
        let reply = match method {
            AuthProtocol::Pap => pap::encode_reply(pap::code::NAK, p.ident, message),
            AuthProtocol::ChapMd5 => {
                packet::encode(chap::code::FAILURE, p.ident, message.as_bytes())
            }
            AuthProtocol::MsChapV2 => {
                // RFC 2759 §6: a fresh challenge for the retry.
                self.rng.0.fill_bytes(&mut self.server_auth.challenge);
                let text = mschapv2::failure_message(
                    mschapv2::error::AUTHENTICATION_FAILURE,
                    retry,
                    &self.server_auth.challenge,
                    message,
                );
                packet::encode(chap::code::FAILURE, p.ident, text.as_bytes())
            }
            AuthProtocol::Eap => eap::encode(eap::code::FAILURE, p.ident, None, &[]),
        };
        self.send(wire_protocol(method), &reply);
        self.events.push_back(Event::AuthFailed {
            user: p.user,
            protocol: method,
            reason: message.to_owned(),
        });
        if retry {
            self.server_auth.progress = Progress::Awaiting;
            self.server_auth.ident = p.ident.wrapping_add(1);
            self.auth_deadline = Some(now + self.config.auth_timeout);
        } else {
            self.server_auth.progress = Progress::Done;
            self.fail(now, DownReason::AuthFailed, "authentication failed");
        }
    }

    // ----- client authentication ------------------------------------------------------------

    fn client_auth_packet(
        &mut self,
        now: Instant,
        pkt: Packet<'_>,
        raw: &[u8],
    ) -> Result<(), Discard> {
        let Role::Client(cfg) = &self.config.role else {
            return Err(Discard::Unexpected);
        };
        let (user, password) = (cfg.user.clone(), cfg.password.clone());
        let Some(method) = self.client_auth.protocol else {
            return Err(Discard::Unexpected);
        };
        if self.client_auth.progress != Progress::Awaiting {
            return Err(Discard::Unexpected);
        }
        let malformed = Discard::Malformed(PacketError::BadBody);
        match (method, pkt.code) {
            (AuthProtocol::Pap, pap::code::ACK) => self.client_auth_done(now, user, method),
            (AuthProtocol::Pap, pap::code::NAK) => {
                let msg = lossy(pap::parse_message(pkt.data));
                self.client_auth_failed(now, user, method, msg);
            }
            (AuthProtocol::ChapMd5, chap::code::CHALLENGE) => {
                let v = chap::parse_value(pkt.data).map_err(Discard::Malformed)?;
                let resp = chap::chap_md5_response(pkt.id, password.as_bytes(), v.value);
                let out = chap::encode_value(chap::code::RESPONSE, pkt.id, &resp, user.as_bytes());
                self.send_with_retransmit(now, protocol::CHAP, out);
            }
            (AuthProtocol::MsChapV2, chap::code::CHALLENGE) => {
                let v = chap::parse_value(pkt.data).map_err(Discard::Malformed)?;
                let challenge: [u8; 16] = v.value.try_into().map_err(|_| malformed)?;
                if self.client_auth.answered == Some((pkt.id, challenge)) {
                    // A retransmitted Challenge: repeat the same Response, since a new peer
                    // challenge would change the authenticator response the server sends.
                    if let Some(r) = &self.retransmit {
                        let (proto, again) = (r.protocol, r.packet.clone());
                        self.send(proto, &again);
                    }
                    return Ok(());
                }
                self.mschapv2_respond(now, pkt.id, &challenge, &user, &password);
            }
            (AuthProtocol::ChapMd5, chap::code::SUCCESS) => {
                self.client_auth_done(now, user, method)
            }
            (AuthProtocol::MsChapV2, chap::code::SUCCESS) => {
                let good = match (&self.client_auth.expected, pkt.data.get(..42)) {
                    (Some(expected), Some(got)) => bool::from(expected.as_bytes().ct_eq(got)),
                    _ => false,
                };
                if good {
                    self.client_auth_done(now, user, method);
                } else {
                    let why = "server sent a wrong authenticator response".to_owned();
                    self.client_auth_failed(now, user, method, why);
                }
            }
            (AuthProtocol::ChapMd5, chap::code::FAILURE) => {
                self.client_auth_failed(now, user, method, lossy(pkt.data));
            }
            (AuthProtocol::MsChapV2, chap::code::FAILURE) => {
                self.client_auth.failures += 1;
                let (retry, challenge) = parse_mschapv2_failure(pkt.data);
                match challenge {
                    Some(c)
                        if retry && self.client_auth.failures < self.config.max_auth_attempts =>
                    {
                        self.mschapv2_respond(now, pkt.id.wrapping_add(1), &c, &user, &password);
                    }
                    _ => self.client_auth_failed(now, user, method, lossy(pkt.data)),
                }
            }
            (AuthProtocol::Eap, eap::code::REQUEST) => {
                let e = eap::parse(raw).map_err(Discard::Malformed)?;
                let (kind, data) = match e.kind {
                    Some(eap::kind::IDENTITY) => (eap::kind::IDENTITY, user.as_bytes().to_vec()),
                    Some(eap::kind::MD5_CHALLENGE) => {
                        let v = chap::parse_value(e.type_data).map_err(Discard::Malformed)?;
                        let resp = chap::chap_md5_response(e.id, password.as_bytes(), v.value);
                        let mut d = vec![16];
                        d.extend_from_slice(&resp);
                        d.extend_from_slice(user.as_bytes());
                        (eap::kind::MD5_CHALLENGE, d)
                    }
                    Some(eap::kind::NOTIFICATION) => (eap::kind::NOTIFICATION, Vec::new()),
                    _ => (eap::kind::NAK, vec![eap::kind::MD5_CHALLENGE]),
                };
                let out = eap::encode(eap::code::RESPONSE, e.id, Some(kind), &data);
                self.send_with_retransmit(now, protocol::EAP, out);
            }
            (AuthProtocol::Eap, eap::code::SUCCESS) => self.client_auth_done(now, user, method),
            (AuthProtocol::Eap, eap::code::FAILURE) => {
                self.client_auth_failed(now, user, method, "EAP failure".into());
            }
            _ => return Err(Discard::Unexpected),
        }
        Ok(())
    }

    fn mschapv2_respond(
        &mut self,
        now: Instant,
        ident: u8,
        challenge: &[u8; 16],
        user: &str,
        password: &str,
    ) {
        let mut peer_challenge = [0u8; 16];
        self.rng.0.fill_bytes(&mut peer_challenge);
        self.client_auth.answered = Some((ident, *challenge));
        let hash = Zeroizing::new(mschapv2::nt_password_hash(password));
        let nt_response = mschapv2::generate_nt_response(challenge, &peer_challenge, user, &hash);
        self.client_auth.expected = Some(Zeroizing::new(mschapv2::authenticator_response(
            &hash,
            &nt_response,
            &peer_challenge,
            challenge,
            user,
        )));
        let value = MsChapV2Response {
            peer_challenge,
            nt_response,
            flags: 0,
        }
        .encode();
        let out = chap::encode_value(chap::code::RESPONSE, ident, &value, user.as_bytes());
        self.send_with_retransmit(now, protocol::CHAP, out);
    }

    fn client_auth_done(&mut self, now: Instant, user: String, method: AuthProtocol) {
        self.client_auth.progress = Progress::Done;
        self.retransmit = None;
        self.user = Some(user.clone());
        self.events.push_back(Event::Authenticated {
            user,
            protocol: method,
        });
        self.enter_network(now);
    }

    fn client_auth_failed(
        &mut self,
        now: Instant,
        user: String,
        method: AuthProtocol,
        reason: String,
    ) {
        self.client_auth.progress = Progress::Done;
        self.events.push_back(Event::AuthFailed {
            user,
            protocol: method,
            reason,
        });
        self.fail(now, DownReason::AuthFailed, "authentication failed");
    }
}
