//! L2TPv2 network server (LNS, RFC 2661), sans-IO.
//!
//! [`Lns`] holds every tunnel and session of the server. Like the IKE responder it is driven
//! from outside: datagrams and time in ([`Lns::handle_datagram`], [`Lns::handle_timeout`]),
//! datagrams, timers and events out ([`Lns::poll_transmit`], [`Lns::poll_timeout`],
//! [`Lns::poll_event`]). Tunnels belong to a [`PeerId`] (one IPsec client), never to an address,
//! so two clients behind one NAT that both use UDP 1701 and Assigned Tunnel ID 1 are two tunnels.
//!
//! What is built: the tunnel (SCCRQ/SCCRP/SCCCN with the optional challenge, HELLO, StopCCN,
//! the reliable control channel), incoming calls (ICRQ/ICRP/ICCN, §7.4.2) and outgoing calls
//! placed by us ([`Lns::place_call`]: OCRQ/OCRP/OCCN, §7.5.2). Both kinds of call share
//! wait-connect → established, the data path and CDN; [`CallInfo::direction`] tells them apart.
//! An outgoing call is reported from the moment it is placed: [`Event::SessionDown`] follows
//! when the LAC refuses it (CDN, e.g. result 2 error 6), SessionUp when OCCN comes.
//! A call message the session's state does not take is answered with CDN result 2 (§7.4.2,
//! §7.5.2); an OCRQ from a peer with CDN result 5 (only the LNS asks for outgoing calls). Not
//! A call not up [`CALL_SETUP_TIMEOUT`] after ICRQ / OCRQ is cleared with CDN result 3. Not
//! built: WEN and SLI are counted only; tunnels are only ever answered, never opened by us
//! (§7.5.2 wait-tunnel); no slow start on the control channel (Appendix A is optional).
//!
//! Module map: `wire` (header and AVP codec, hidden AVPs), `avp` (attribute and message types,
//! result codes, message decoding), `reliable` (Ns/Nr, window, retransmission), `tunnel`,
//! `session`.

pub mod avp;
pub mod reliable;
mod session;
mod tunnel;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use avp::{Fault, Message, attr, cdn, error, msg, stopccn};
use reliable::{Arrival, Channel, Timing};
pub use session::{CallDirection, CallInfo, DataSeq, OutgoingCall};
use session::{Session, SessionState, text};
use tunnel::{Tunnel, TunnelState};
use wire::{Header, HeaderError};

/// Opaque handle from the shell: one per IPsec client (its SA pair), or per UDP source in the
/// plain test mode.
pub type PeerId = u64;

/// How long a tunnel lingers after StopCCN to acknowledge retransmissions (§5.7: one full
/// retransmission cycle; 1 + 2 + 4 + 8 + 8 + 8 s with the defaults).
pub const CLOSE_LINGER: Duration = Duration::from_secs(31);
/// How long a tunnel may stay half-open (SCCRP sent, no SCCCN).
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(31);
/// How long a call may take to come up (ICRQ to ICCN, OCRQ to OCCN) before it is cleared with
/// a CDN: the RFC sets no limit, and a call stuck half-way would hold a session slot for good.
pub const CALL_SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Receive Window Size assumed when the peer sends none (§4.4.3).
pub const DEFAULT_PEER_WINDOW: u16 = 4;

#[derive(Clone, PartialEq, Eq)]
pub struct LnsConfig {
    pub host_name: String,
    pub vendor_name: String,
    pub receive_window: u16,
    /// Tunnel secret (§5.1.1): when set, every peer must answer our challenge.
    pub secret: Option<Zeroizing<Vec<u8>>>,
    /// HELLO after this much silence from the peer; zero disables.
    pub hello_interval: Duration,
    pub retransmit_initial: Duration,
    pub retransmit_cap: Duration,
    pub max_retransmits: u32,
    pub max_tunnels: usize,
    pub max_tunnels_per_peer: usize,
    pub max_sessions_per_tunnel: usize,
    /// Tunnels answered with SCCRP but not yet confirmed by SCCCN, in total (SCCRQ flood bound).
    pub max_half_open: usize,
}

impl Default for LnsConfig {
    fn default() -> Self {
        Self {
            host_name: "roadgate".into(),
            vendor_name: "roadgate".into(),
            receive_window: 16,
            secret: None,
            hello_interval: Duration::from_secs(60),
            retransmit_initial: Duration::from_secs(1),
            retransmit_cap: Duration::from_secs(8),
            max_retransmits: 5,
            max_tunnels: 4096,
            max_tunnels_per_peer: 4,
            max_sessions_per_tunnel: 16,
            max_half_open: 256,
        }
    }
}

impl std::fmt::Debug for LnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LnsConfig")
            .field("host_name", &self.host_name)
            .field("receive_window", &self.receive_window)
            .field("secret", &self.secret.is_some())
            .field("hello_interval", &self.hello_interval)
            .field("max_tunnels", &self.max_tunnels)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SessionRef {
    pub peer: PeerId,
    /// Our tunnel ID.
    pub tunnel: u16,
    /// Our session ID.
    pub session: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: PeerId,
    /// Destination port: the source port the client last used.
    pub port: u16,
    pub payload: Vec<u8>,
}

/// Why an L2TP call or tunnel ended ([`Event::SessionDown`], [`Event::TunnelDown`]). Its
/// `Display` gives the words the log has always carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// The peer sent CDN (with its result, in words, if it gave one).
    PeerCdn(Option<String>),
    /// The peer sent StopCCN.
    PeerStopCcn(Option<String>),
    /// The client refused an outgoing call we had placed (CDN before OCCN).
    OutgoingRefused(Option<String>),
    /// We closed it ([`Lns::close_session`], [`Lns::close_tunnel`]) with this message.
    ClosedLocally(String),
    /// We closed it for an error in what the peer sent.
    ProtocolError(String),
    /// The tunnel's challenge response was wrong or missing.
    AuthFailed,
    /// The peer stopped acknowledging control messages.
    PeerNotResponding,
    /// The IPsec SA that carried the tunnel went.
    IpsecGone,
    /// The server is shutting down.
    ShuttingDown,
}

impl std::fmt::Display for Cleared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with = |f: &mut std::fmt::Formatter<'_>, what: &str, r: &Option<String>| match r {
            Some(r) => write!(f, "{what}: {r}"),
            None => f.write_str(what),
        };
        match self {
            Cleared::PeerCdn(r) => with(f, "peer sent CDN", r),
            Cleared::PeerStopCcn(r) => with(f, "peer sent StopCCN", r),
            Cleared::OutgoingRefused(r) => with(f, "the client refused the outgoing call", r),
            Cleared::ClosedLocally(m) => write!(f, "closed locally: {m}"),
            Cleared::ProtocolError(t) => f.write_str(t),
            Cleared::AuthFailed => f.write_str("tunnel authentication failed"),
            Cleared::PeerNotResponding => f.write_str("peer not responding"),
            Cleared::IpsecGone => f.write_str("IPsec SA gone"),
            Cleared::ShuttingDown => f.write_str("server shutting down"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    TunnelUp {
        peer: PeerId,
        tunnel: u16,
        host_name: String,
        vendor: Option<String>,
    },
    /// Only for tunnels that were up.
    TunnelDown {
        peer: PeerId,
        tunnel: u16,
        reason: Cleared,
    },
    SessionUp {
        session: SessionRef,
        call: CallInfo,
    },
    /// Only for sessions that were up.
    SessionDown {
        session: SessionRef,
        reason: Cleared,
    },
}

/// An L2TP data header: the PPP frame goes right after `bytes[..len]`; send it to `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub bytes: [u8; 16],
    pub len: usize,
    pub port: u16,
}

/// How to frame one session's data messages ([`Lns::data_route`]).
#[derive(Debug, Clone)]
pub struct DataRoute {
    /// The peer's Tunnel ID.
    pub peer_tunnel: u16,
    /// The peer's Session ID.
    pub peer_session: u16,
    /// The peer's UDP port.
    pub port: u16,
    /// Data sequence numbers, shared with the LNS.
    pub seq: std::sync::Arc<DataSeq>,
}

/// Counters for metrics and tests. Each names one cause; none holds a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams: u64,
    pub malformed_header: u64,
    pub unsupported_version: u64,
    pub malformed_avp: u64,
    pub missing_avp: u64,
    pub bad_avp_length: u64,
    pub unknown_mandatory_avp: u64,
    pub hidden_avp_failed: u64,
    pub unknown_message_type: u64,
    pub unexpected_message: u64,
    pub unknown_tunnel: u64,
    pub unknown_session: u64,
    pub tunnel0_stray: u64,
    pub out_of_window: u64,
    pub duplicates: u64,
    pub held_out_of_order: u64,
    pub duplicate_sccrq: u64,
    pub duplicate_icrq: u64,
    pub flood_half_open: u64,
    pub flood_per_peer: u64,
    pub tunnel_limit: u64,
    pub session_limit: u64,
    pub auth_failed: u64,
    pub no_secret_configured: u64,
    pub protocol_version_refused: u64,
    /// OCRQs from a peer, refused (a LAC does not send them).
    pub peer_ocrq_refused: u64,
    /// Outgoing calls we asked for ([`Lns::place_call`]): OCRQ sent, OCCN received, and
    /// cleared by the peer's CDN before OCCN.
    pub outgoing_calls_placed: u64,
    pub outgoing_calls_connected: u64,
    pub outgoing_calls_refused: u64,
    /// A call message the session's state does not take (§7.4.2, §7.5.2): answered with CDN.
    pub call_state_errors: u64,
    /// ICCN, OCRP or OCCN repeated (with a new Ns) for a session already past it: ignored.
    pub repeated_call_messages: u64,
    pub data_stale: u64,
    pub data_received: u64,
    pub zlb_sent: u64,
    pub retransmits: u64,
    pub hellos_sent: u64,
    pub tunnels_established: u64,
    pub tunnels_timed_out: u64,
    pub half_open_expired: u64,
    pub sessions_established: u64,
    pub stopccn_received: u64,
    pub cdn_received: u64,
    pub wen_received: u64,
    pub sli_received: u64,
    pub call_setup_expired: u64,
}

/// The sans-IO L2TP network server. See the module documentation.
pub struct Lns {
    cfg: LnsConfig,
    rng: ChaCha20Rng,
    tunnels: HashMap<u16, Tunnel>,
    /// (peer, its Assigned Tunnel ID) → our tunnel ID: recognises a repeated SCCRQ.
    by_peer_tunnel: HashMap<(PeerId, u16), u16>,
    per_peer: HashMap<PeerId, usize>,
    half_open: usize,
    timers: crate::timer::Timers<u16>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Call Serial Number of our next OCRQ; 0 until the first one draws a random start.
    next_call_serial: u32,
}

impl std::fmt::Debug for Lns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lns")
            .field("tunnels", &self.tunnels.len())
            .field("half_open", &self.half_open)
            .finish_non_exhaustive()
    }
}

/// What a fault is answered with: (result code 2, error code, text).
fn fault_answer(f: Fault) -> (u16, String) {
    match f {
        Fault::UnknownMandatory { vendor, attr } => (
            error::UNKNOWN_MANDATORY_AVP,
            format!("unknown mandatory AVP (vendor {vendor}, type {attr})"),
        ),
        Fault::BadLength { attr } => (error::LENGTH, format!("AVP type {attr} has a wrong length")),
        Fault::Hidden { attr } => (
            error::OUT_OF_RANGE,
            format!("hidden AVP type {attr} cannot be recovered"),
        ),
    }
}

impl Lns {
    pub fn new(config: LnsConfig, seed: [u8; 32]) -> Self {
        Self {
            cfg: config,
            rng: ChaCha20Rng::from_seed(seed),
            tunnels: HashMap::new(),
            by_peer_tunnel: HashMap::new(),
            per_peer: HashMap::new(),
            half_open: 0,
            timers: crate::timer::Timers::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            next_call_serial: 0,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Tunnels not closing.
    pub fn tunnel_count(&self) -> usize {
        self.tunnels.values().filter(|t| !t.is_closing()).count()
    }

    /// Tunnels not closing, and closing ones whose last messages (the StopCCN) the peer has not
    /// acknowledged yet: what a shutdown waits for before the IPsec SAs go.
    pub fn unfinished_tunnel_count(&self) -> usize {
        self.tunnels
            .values()
            .filter(|t| !t.is_closing() || !t.channel.idle())
            .count()
    }

    /// Tunnels answered with SCCRP, waiting for SCCCN.
    pub fn half_open_count(&self) -> usize {
        self.half_open
    }

    pub fn session_count(&self) -> usize {
        self.tunnels.values().map(|t| t.sessions.len()).sum()
    }

    /// Unacknowledged control messages towards one tunnel's peer (for tests and metrics).
    pub fn in_flight(&self, tunnel: u16) -> usize {
        self.tunnels
            .get(&tunnel)
            .map_or(0, |t| t.channel.in_flight())
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Lns::handle_timeout`] should be called next (possibly early: a spurious call is
    /// harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn timing(&self) -> Timing {
        Timing {
            initial: self.cfg.retransmit_initial,
            cap: self.cfg.retransmit_cap,
            max_retransmits: self.cfg.max_retransmits,
        }
    }

    fn secret(&self) -> Option<&[u8]> {
        self.cfg.secret.as_ref().map(|s| s.as_slice())
    }

    /// One datagram from `peer`, UDP source port `src_port`. Control messages are processed;
    /// a data message returns its session and the byte range of its PPP frame in `datagram`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        peer: PeerId,
        src_port: u16,
        datagram: &[u8],
    ) -> Option<(SessionRef, Range<usize>)> {
        self.stats.datagrams += 1;
        let h = match Header::decode(datagram) {
            Ok(h) => h,
            Err(HeaderError::Version(v)) => {
                dropped!(
                    self.stats.unsupported_version,
                    peer,
                    version = v,
                    "dropped L2TP datagram of another version (L2F or L2TPv3)"
                );
                return None;
            }
            Err(e) => {
                dropped!(self.stats.malformed_header, peer, error = %e, "dropped malformed L2TP datagram");
                return None;
            }
        };
        if !h.control {
            return self.data(now, peer, src_port, h);
        }
        let body = datagram.get(h.payload.clone()).unwrap_or_default();
        self.control(now, peer, src_port, &h, body);
        None
    }

    fn data(
        &mut self,
        now: Instant,
        peer: PeerId,
        port: u16,
        h: Header,
    ) -> Option<(SessionRef, Range<usize>)> {
        let Some(t) = self
            .tunnels
            .get_mut(&h.tunnel)
            .filter(|t| t.peer == peer && t.state == TunnelState::Established)
        else {
            dropped!(
                self.stats.unknown_tunnel,
                peer,
                tunnel = h.tunnel,
                "dropped data for an unknown tunnel"
            );
            return None;
        };
        let Some(s) = t
            .sessions
            .get_mut(&h.session)
            .filter(|s| s.state == SessionState::Established)
        else {
            dropped!(
                self.stats.unknown_session,
                peer,
                tunnel = h.tunnel,
                session = h.session,
                "dropped data for an unknown session"
            );
            return None;
        };
        if !s.data.on_data(h.seq) {
            self.stats.data_stale += 1;
            return None;
        }
        t.port = port;
        t.last_heard = now;
        self.stats.data_received += 1;
        Some((
            SessionRef {
                peer,
                tunnel: h.tunnel,
                session: h.session,
            },
            h.payload,
        ))
    }

    fn control(&mut self, now: Instant, peer: PeerId, port: u16, h: &Header, body: &[u8]) {
        let Some((ns, nr)) = h.seq else {
            self.stats.malformed_header += 1;
            return;
        };
        if h.tunnel == 0 {
            let m = if body.is_empty() {
                None
            } else {
                Message::decode(body, self.secret()).ok()
            };
            match m {
                Some(m) if m.msg_type == msg::SCCRQ => self.sccrq(now, peer, port, ns, m),
                _ => {
                    // Apple's pre-IPsec HELLO bursts, stray ZLBs: no reply (CLIENTS.md §2.3).
                    dropped!(
                        self.stats.tunnel0_stray,
                        peer,
                        "ignored control message for tunnel 0 that is not SCCRQ"
                    );
                }
            }
            return;
        }
        let tid = h.tunnel;
        if self.tunnels.get(&tid).is_none_or(|t| t.peer != peer) {
            dropped!(
                self.stats.unknown_tunnel,
                peer,
                tunnel = tid,
                "dropped control message for an unknown tunnel"
            );
            return;
        }
        // Decode before touching the channel: a message we cannot identify is not acknowledged.
        let m = if body.is_empty() {
            None
        } else {
            match Message::decode(body, self.secret()) {
                Ok(m) => Some(m),
                Err(e) => {
                    dropped!(self.stats.malformed_avp, peer, tunnel = tid, error = %e, "dropped control message with malformed AVPs");
                    return;
                }
            }
        };
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        t.port = port;
        t.last_heard = now;
        t.channel.on_nr(now, nr);
        if let Some(m) = m {
            match t.channel.arrival(ns) {
                Arrival::InOrder => {
                    t.channel.accept();
                    let mut next = Some((h.session, m));
                    while let Some((session, m)) = next {
                        self.deliver(now, tid, session, m);
                        next = self
                            .tunnels
                            .get_mut(&tid)
                            .and_then(|t| t.channel.next_held());
                    }
                }
                Arrival::Duplicate => {
                    dropped!(
                        self.stats.duplicates,
                        peer,
                        tunnel = tid,
                        ns,
                        "duplicate control message acknowledged again"
                    );
                }
                Arrival::Ahead => {
                    if t.channel.hold(ns, (h.session, m)) {
                        self.stats.held_out_of_order += 1;
                    } else {
                        self.stats.duplicates += 1;
                    }
                }
                Arrival::Beyond => {
                    dropped!(
                        self.stats.out_of_window,
                        peer,
                        tunnel = tid,
                        ns,
                        "dropped control message beyond our receive window"
                    );
                }
            }
        }
        self.flush(now, tid);
    }

    fn alloc_tunnel_id(&mut self) -> Option<u16> {
        for _ in 0..64 {
            let id = (self.rng.next_u32() & 0xffff) as u16;
            if id != 0 && !self.tunnels.contains_key(&id) {
                return Some(id);
            }
        }
        (1..=u16::MAX).find(|id| !self.tunnels.contains_key(id))
    }

    fn sccrq(&mut self, now: Instant, peer: PeerId, port: u16, ns: u16, m: Message) {
        let Some(peer_tid) = m.assigned_tunnel.filter(|&t| t != 0) else {
            dropped!(
                self.stats.missing_avp,
                peer,
                "dropped SCCRQ without an Assigned Tunnel ID"
            );
            return;
        };
        if let Some(&tid) = self.by_peer_tunnel.get(&(peer, peer_tid)) {
            // A retransmitted SCCRQ: acknowledge it on the tunnel it created.
            self.stats.duplicate_sccrq += 1;
            if let Some(t) = self.tunnels.get_mut(&tid) {
                t.port = port;
                if t.channel.arrival(ns) == Arrival::Duplicate {
                    self.stats.duplicates += 1;
                }
            }
            self.flush(now, tid);
            return;
        }
        let of_peer = self.per_peer.get(&peer).copied().unwrap_or(0);
        if of_peer >= self.cfg.max_tunnels_per_peer {
            dropped!(
                self.stats.flood_per_peer,
                peer,
                "dropped SCCRQ: the peer has too many tunnels"
            );
            return;
        }
        if self.half_open >= self.cfg.max_half_open {
            dropped!(
                self.stats.flood_half_open,
                peer,
                "dropped SCCRQ: too many half-open tunnels"
            );
            return;
        }
        if self.tunnels.len() >= self.cfg.max_tunnels {
            dropped!(
                self.stats.tunnel_limit,
                peer,
                "dropped SCCRQ: tunnel limit reached"
            );
            return;
        }
        let Some(local_id) = self.alloc_tunnel_id() else {
            self.stats.tunnel_limit += 1;
            return;
        };
        let peer_window = m.receive_window.unwrap_or(DEFAULT_PEER_WINDOW);
        let mut channel = Channel::new(self.cfg.receive_window, peer_window, self.timing());
        channel.start_at(ns);
        let mut t = Tunnel {
            peer,
            port,
            local_id,
            peer_id: peer_tid,
            state: TunnelState::WaitConnect,
            host_name: text(&m.host_name).unwrap_or_default(),
            vendor: text(&m.vendor_name),
            bearer_capabilities: m.bearer_capabilities,
            framing_capabilities: m.framing_capabilities,
            our_challenge: None,
            channel,
            sessions: HashMap::new(),
            by_peer_session: HashMap::new(),
            created: now,
            last_heard: now,
        };
        let refusal = if let Some(f) = m.fault {
            self.count_fault(f);
            let (e, text) = fault_answer(f);
            Some((stopccn::GENERAL_ERROR, Some(e), text))
        } else if m.protocol_version.is_some_and(|v| v != (1, 0)) {
            self.stats.protocol_version_refused += 1;
            Some((
                stopccn::PROTOCOL_VERSION,
                None,
                "only L2TP version 1.0 (RFC 2661)".into(),
            ))
        } else if m.challenge.is_some() && self.cfg.secret.is_none() {
            self.stats.no_secret_configured += 1;
            warn!(peer, host = %t.host_name, "client uses an L2TP secret, none configured; refused the tunnel");
            Some((
                stopccn::NOT_AUTHORIZED,
                None,
                "no tunnel secret configured".into(),
            ))
        } else {
            None
        };
        if let Some((result, err, text)) = refusal {
            debug!(peer, result, ?err, text, "refused SCCRQ");
            t.state = TunnelState::Closing {
                until: now + CLOSE_LINGER,
            };
            t.stopccn(result, err, &text);
        } else {
            let mut r = t.message(0, msg::SCCRP);
            wire::put_avp(&mut r, true, attr::PROTOCOL_VERSION, &[1, 0]);
            wire::put_avp(
                &mut r,
                true,
                attr::FRAMING_CAPABILITIES,
                &3u32.to_be_bytes(),
            );
            wire::put_avp(
                &mut r,
                false,
                attr::BEARER_CAPABILITIES,
                &3u32.to_be_bytes(),
            );
            wire::put_avp(&mut r, true, attr::HOST_NAME, self.cfg.host_name.as_bytes());
            wire::put_avp(
                &mut r,
                false,
                attr::VENDOR_NAME,
                self.cfg.vendor_name.as_bytes(),
            );
            wire::put_avp(
                &mut r,
                true,
                attr::ASSIGNED_TUNNEL_ID,
                &local_id.to_be_bytes(),
            );
            wire::put_avp(
                &mut r,
                true,
                attr::RECEIVE_WINDOW_SIZE,
                &self.cfg.receive_window.to_be_bytes(),
            );
            if let Some(secret) = self.cfg.secret.as_ref() {
                let mut ch = Zeroizing::new(vec![0u8; 16]);
                self.rng.fill_bytes(&mut ch);
                wire::put_avp(&mut r, true, attr::CHALLENGE, &ch);
                if let Some(theirs) = &m.challenge {
                    let resp = wire::challenge_response(msg::SCCRP as u8, secret, theirs);
                    wire::put_avp(&mut r, true, attr::CHALLENGE_RESPONSE, &resp);
                }
                t.our_challenge = Some(ch);
            }
            t.send(r);
            self.half_open += 1;
        }
        self.tunnels.insert(local_id, t);
        self.by_peer_tunnel.insert((peer, peer_tid), local_id);
        *self.per_peer.entry(peer).or_default() += 1;
        self.flush(now, local_id);
    }

    fn count_fault(&mut self, f: Fault) {
        match f {
            Fault::UnknownMandatory { .. } => self.stats.unknown_mandatory_avp += 1,
            Fault::BadLength { .. } => self.stats.bad_avp_length += 1,
            Fault::Hidden { .. } => self.stats.hidden_avp_failed += 1,
        }
    }

    /// An in-order control message (not a ZLB) for tunnel `tid`; `session` is the header's.
    fn deliver(&mut self, now: Instant, tid: u16, session: u16, m: Message) {
        let Some(t) = self.tunnels.get(&tid) else {
            return;
        };
        let state = t.state;
        if t.is_closing() {
            // Only acknowledgements now; a repeated StopCCN is acked by the flush.
            return;
        }
        if let Some(f) = m.fault {
            self.count_fault(f);
            let (e, text) = fault_answer(f);
            debug!(
                tunnel = tid,
                msg = msg::name(m.msg_type),
                text,
                "answered a faulty control message"
            );
            if msg::is_session_level(m.msg_type) {
                self.session_fault(now, tid, session, &m, e, &text);
            } else {
                self.close_inner(
                    now,
                    tid,
                    stopccn::GENERAL_ERROR,
                    Some(e),
                    &text,
                    Cleared::ProtocolError(text.clone()),
                );
            }
            return;
        }
        let established = state == TunnelState::Established;
        match m.msg_type {
            msg::SCCCN if state == TunnelState::WaitConnect => self.scccn(now, tid, &m),
            msg::STOPCCN => self.peer_stopccn(now, tid, &m),
            msg::HELLO => {}
            msg::ICRQ if established => self.icrq(now, tid, &m),
            msg::ICRP | msg::ICCN | msg::OCRP | msg::OCCN if established => {
                self.call_message(now, tid, session, &m)
            }
            msg::CDN if established => self.peer_cdn(tid, session, &m),
            msg::WEN if established => self.stats.wen_received += 1,
            msg::SLI if established => self.stats.sli_received += 1,
            msg::OCRQ if established => {
                // An LNS places outgoing calls; it does not take them (§5.5).
                self.stats.peer_ocrq_refused += 1;
                if let (Some(peer_sid), Some(t)) = (m.assigned_session, self.tunnels.get_mut(&tid))
                {
                    t.cdn(
                        peer_sid,
                        0,
                        cdn::NO_FACILITIES_PERMANENT,
                        None,
                        "this LNS does not place outgoing calls",
                    );
                }
            }
            msg::SCCRQ
            | msg::SCCRP
            | msg::SCCCN
            | msg::OCRQ
            | msg::OCRP
            | msg::OCCN
            | msg::ICRQ
            | msg::ICRP
            | msg::ICCN
            | msg::CDN
            | msg::WEN
            | msg::SLI => {
                dropped!(
                    self.stats.unexpected_message,
                    tunnel = tid,
                    msg = msg::name(m.msg_type),
                    ?state,
                    "ignored control message unexpected in this state"
                );
            }
            other => {
                self.stats.unknown_message_type += 1;
                if m.type_mandatory {
                    let text = format!("unknown message type {other}");
                    self.close_inner(
                        now,
                        tid,
                        stopccn::GENERAL_ERROR,
                        Some(error::OUT_OF_RANGE),
                        &text,
                        Cleared::ProtocolError(text.clone()),
                    );
                }
            }
        }
    }

    fn scccn(&mut self, now: Instant, tid: u16, m: &Message) {
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        if let (Some(ch), Some(secret)) = (&t.our_challenge, self.cfg.secret.as_ref()) {
            let want = wire::challenge_response(msg::SCCCN as u8, secret, ch);
            let ok = m
                .challenge_response
                .is_some_and(|r| bool::from(r.ct_eq(&want)));
            if !ok {
                self.stats.auth_failed += 1;
                warn!(peer = t.peer, host = %t.host_name, "L2TP tunnel authentication failed (wrong or missing challenge response)");
                self.close_inner(
                    now,
                    tid,
                    stopccn::NOT_AUTHORIZED,
                    None,
                    "tunnel authentication failed",
                    Cleared::AuthFailed,
                );
                return;
            }
        }
        t.state = TunnelState::Established;
        t.our_challenge = None;
        self.half_open = self.half_open.saturating_sub(1);
        self.stats.tunnels_established += 1;
        info!(peer = t.peer, tunnel = tid, host = %t.host_name, "L2TP tunnel up");
        self.events.push_back(Event::TunnelUp {
            peer: t.peer,
            tunnel: tid,
            host_name: t.host_name.clone(),
            vendor: t.vendor.clone(),
        });
    }

    fn peer_stopccn(&mut self, now: Instant, tid: u16, m: &Message) {
        self.stats.stopccn_received += 1;
        let reason = Cleared::PeerStopCcn(m.result.as_ref().map(|r| r.to_string()));
        self.down_events(tid, &reason);
        if let Some(t) = self.enter_closing(now, tid) {
            info!(
                peer = t.peer,
                tunnel = tid,
                %reason,
                "L2TP tunnel closed by the peer"
            );
            t.channel.drop_outgoing();
        }
    }

    fn icrq(&mut self, now: Instant, tid: u16, m: &Message) {
        let max = self.cfg.max_sessions_per_tunnel;
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        let Some(peer_sid) = m.assigned_session.filter(|&s| s != 0) else {
            dropped!(
                self.stats.missing_avp,
                tunnel = tid,
                "ignored ICRQ without an Assigned Session ID"
            );
            return;
        };
        if t.by_peer_session.contains_key(&peer_sid) {
            self.stats.duplicate_icrq += 1;
            return;
        }
        if t.sessions.len() >= max {
            self.stats.session_limit += 1;
            t.cdn(
                peer_sid,
                0,
                cdn::NO_FACILITIES_TEMPORARY,
                None,
                "session limit reached",
            );
            return;
        }
        let Some(local) = t.alloc_session_id(&mut self.rng) else {
            return;
        };
        let call = CallInfo {
            call_serial: m.call_serial.unwrap_or(0),
            calling_number: text(&m.calling_number),
            called_number: text(&m.called_number),
            bearer_type: m.bearer_type,
            ..CallInfo::default()
        };
        t.sessions
            .insert(local, Session::new(local, peer_sid, call, now));
        t.by_peer_session.insert(peer_sid, local);
        let mut r = t.message(peer_sid, msg::ICRP);
        wire::put_avp(
            &mut r,
            true,
            attr::ASSIGNED_SESSION_ID,
            &local.to_be_bytes(),
        );
        t.send(r);
    }

    /// ICRP, ICCN, OCRP or OCCN for a session: the LNS call state machines of §7.4.2 (incoming)
    /// and §7.5.2 (outgoing), which share wait-connect → established.
    fn call_message(&mut self, now: Instant, tid: u16, session: u16, m: &Message) {
        use CallDirection::{Incoming, Outgoing};
        use SessionState::{Established, WaitConnect, WaitReply};
        let Some(s) = self
            .tunnels
            .get(&tid)
            .and_then(|t| t.sessions.get(&session))
        else {
            // idle: "Receive ICCN / OCRP / OCCN → clean up", there is nothing to clean.
            dropped!(
                self.stats.unknown_session,
                tunnel = tid,
                session,
                msg = msg::name(m.msg_type),
                "ignored call message for an unknown session"
            );
            return;
        };
        let (direction, state) = (s.direction(), s.state);
        let same_peer_session = m.assigned_session == Some(s.peer_id);
        match (direction, state, m.msg_type) {
            (Outgoing, WaitReply, msg::OCRP) => self.ocrp(now, tid, session, m),
            (Incoming, WaitConnect, msg::ICCN) | (Outgoing, WaitConnect, msg::OCCN) => {
                self.connected(tid, session, m)
            }
            // A repeat (new Ns) of the message that moved the session on: harmless, ignored.
            (Incoming, Established, msg::ICCN)
            | (Outgoing, Established, msg::OCCN)
            | (Outgoing, WaitConnect | Established, msg::OCRP)
                if m.msg_type != msg::OCRP || same_peer_session =>
            {
                dropped!(
                    self.stats.repeated_call_messages,
                    tunnel = tid,
                    session,
                    msg = msg::name(m.msg_type),
                    "ignored a repeated call message"
                );
            }
            _ => {
                self.stats.call_state_errors += 1;
                let text = format!(
                    "{} unexpected: {} call in state {state:?}",
                    msg::name(m.msg_type),
                    match direction {
                        Incoming => "incoming",
                        Outgoing => "outgoing",
                    }
                );
                info!(tunnel = tid, session, text, "L2TP call cleared");
                self.session_fault(now, tid, session, m, error::NONE, &text);
            }
        }
    }

    /// OCRP in wait-reply: the LAC is placing the call; wait for OCCN.
    fn ocrp(&mut self, now: Instant, tid: u16, local: u16, m: &Message) {
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        let peer_sid = m.assigned_session.unwrap_or(0);
        let taken = t.by_peer_session.contains_key(&peer_sid);
        if peer_sid == 0 || taken {
            // Not acceptable (§7.5.2): CDN.
            let text = if taken {
                "OCRP names a session ID already in use"
            } else {
                "OCRP without an Assigned Session ID"
            };
            self.session_fault(now, tid, local, m, error::INVALID_SESSION_ID, text);
            return;
        }
        let Some(s) = t.sessions.get_mut(&local) else {
            return;
        };
        s.peer_id = peer_sid;
        s.state = SessionState::WaitConnect;
        t.by_peer_session.insert(peer_sid, local);
        debug!(
            tunnel = tid,
            session = local,
            peer_session = peer_sid,
            "outgoing call in progress (OCRP)"
        );
    }

    /// ICCN or OCCN in wait-connect: the call is up.
    fn connected(&mut self, tid: u16, session: u16, m: &Message) {
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        let Some(s) = t.sessions.get_mut(&session) else {
            return;
        };
        s.state = SessionState::Established;
        s.call.tx_connect_speed = m.tx_connect_speed.unwrap_or(0);
        s.call.rx_connect_speed = m.rx_connect_speed;
        s.call.framing_type = m.framing_type.unwrap_or(s.call.framing_type);
        s.call.sequencing_required = m.sequencing_required;
        if m.sequencing_required {
            s.data.require();
        }
        self.stats.sessions_established += 1;
        if s.direction() == CallDirection::Outgoing {
            self.stats.outgoing_calls_connected += 1;
        }
        let sref = SessionRef {
            peer: t.peer,
            tunnel: tid,
            session,
        };
        info!(peer = t.peer, tunnel = tid, session, direction = ?s.direction(), "L2TP session up");
        self.events.push_back(Event::SessionUp {
            session: sref,
            call: s.call.clone(),
        });
    }

    /// Our session for a session-level message: the header's session ID, or (a CDN sent before
    /// our ICRP arrived carries 0) the peer's Assigned Session ID.
    fn find_session(t: &Tunnel, session: u16, m: &Message) -> Option<u16> {
        if t.sessions.contains_key(&session) {
            return Some(session);
        }
        if session == 0 {
            return m
                .assigned_session
                .and_then(|p| t.by_peer_session.get(&p).copied());
        }
        None
    }

    fn peer_cdn(&mut self, tid: u16, session: u16, m: &Message) {
        self.stats.cdn_received += 1;
        let Some(local) = self
            .tunnels
            .get(&tid)
            .and_then(|t| Self::find_session(t, session, m))
        else {
            self.stats.unknown_session += 1;
            return;
        };
        let mut reason = Cleared::PeerCdn(m.result.as_ref().map(|r| r.to_string()));
        if let Some(t) = self.tunnels.get(&tid)
            && let Some(s) = t.sessions.get(&local)
            && s.direction() == CallDirection::Outgoing
            && s.state != SessionState::Established
        {
            self.stats.outgoing_calls_refused += 1;
            reason = Cleared::OutgoingRefused(m.result.as_ref().map(|r| r.to_string()));
            info!(
                peer = t.peer,
                tunnel = tid,
                session = local,
                called = s.call.called_number.as_deref().unwrap_or(""),
                %reason,
                "L2TP outgoing call refused"
            );
        }
        self.remove_session(tid, local, &reason);
    }

    /// A session-level message with a fault: CDN with result 2 and `err` (§4.1), session gone.
    fn session_fault(
        &mut self,
        now: Instant,
        tid: u16,
        session: u16,
        m: &Message,
        err: u16,
        text: &str,
    ) {
        let Some(t) = self.tunnels.get(&tid) else {
            return;
        };
        if let Some(local) = Self::find_session(t, session, m) {
            let mut peer_sid = t.sessions.get(&local).map_or(0, |s| s.peer_id);
            if peer_sid == 0 && m.msg_type == msg::OCRP {
                // A call in wait-reply learns the peer's ID from this (faulty) OCRP, unless it
                // is another call's: that call must not get this CDN.
                peer_sid = m
                    .assigned_session
                    .filter(|p| !t.by_peer_session.contains_key(p))
                    .unwrap_or(0);
            }
            self.remove_session(tid, local, &Cleared::ProtocolError(text.to_owned()));
            if let Some(t) = self.tunnels.get_mut(&tid) {
                t.cdn(peer_sid, local, cdn::GENERAL_ERROR, Some(err), text);
            }
        } else if m.msg_type == msg::ICRQ
            && let Some(peer_sid) = m.assigned_session
            && let Some(t) = self.tunnels.get_mut(&tid)
        {
            t.cdn(peer_sid, 0, cdn::GENERAL_ERROR, Some(err), text);
        } else {
            self.stats.unknown_session += 1;
        }
        let _ = now;
    }

    fn remove_session(&mut self, tid: u16, local: u16, reason: &Cleared) {
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        let Some(s) = t.sessions.remove(&local) else {
            return;
        };
        if t.by_peer_session.get(&s.peer_id) == Some(&local) {
            t.by_peer_session.remove(&s.peer_id);
        }
        if s.announced() {
            info!(
                peer = t.peer,
                tunnel = tid,
                session = local,
                %reason,
                "L2TP session down"
            );
            self.events.push_back(Event::SessionDown {
                session: SessionRef {
                    peer: t.peer,
                    tunnel: tid,
                    session: local,
                },
                reason: reason.clone(),
            });
        }
    }

    /// SessionDown for every established session, TunnelDown if the tunnel was up.
    fn down_events(&mut self, tid: u16, reason: &Cleared) {
        let Some(t) = self.tunnels.get(&tid) else {
            return;
        };
        for s in t.sessions.values().filter(|s| s.announced()) {
            self.events.push_back(Event::SessionDown {
                session: SessionRef {
                    peer: t.peer,
                    tunnel: tid,
                    session: s.local_id,
                },
                reason: reason.clone(),
            });
        }
        if t.state == TunnelState::Established {
            self.events.push_back(Event::TunnelDown {
                peer: t.peer,
                tunnel: tid,
                reason: reason.clone(),
            });
        }
    }

    /// Sends StopCCN with `message` and lets the tunnel linger; `reason` goes to the events.
    fn close_inner(
        &mut self,
        now: Instant,
        tid: u16,
        result: u16,
        err: Option<u16>,
        message: &str,
        reason: Cleared,
    ) {
        self.down_events(tid, &reason);
        if let Some(t) = self.enter_closing(now, tid) {
            info!(
                peer = t.peer,
                tunnel = tid,
                result,
                %reason,
                "L2TP tunnel closing"
            );
            t.stopccn(result, err, message);
        }
    }

    /// Moves a tunnel to Closing: its sessions are forgotten (the caller emitted their events)
    /// and it lingers for [`CLOSE_LINGER`]. None if it is absent or already closing.
    fn enter_closing(&mut self, now: Instant, tid: u16) -> Option<&mut Tunnel> {
        let t = self.tunnels.get_mut(&tid).filter(|t| !t.is_closing())?;
        if t.state == TunnelState::WaitConnect {
            self.half_open = self.half_open.saturating_sub(1);
        }
        t.state = TunnelState::Closing {
            until: now + CLOSE_LINGER,
        };
        t.sessions.clear();
        t.by_peer_session.clear();
        Some(t)
    }

    fn remove_tunnel(&mut self, tid: u16) {
        let Some(t) = self.tunnels.remove(&tid) else {
            return;
        };
        self.timers.cancel(tid);
        if t.state == TunnelState::WaitConnect {
            self.half_open = self.half_open.saturating_sub(1);
        }
        self.by_peer_tunnel.remove(&(t.peer, t.peer_id));
        if let Some(n) = self.per_peer.get_mut(&t.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&t.peer);
            }
        }
    }

    /// Sends what the tunnel's channel allows (or a ZLB) and re-arms its timer.
    fn flush(&mut self, now: Instant, tid: u16) {
        let (hello, half_open) = (self.cfg.hello_interval, HALF_OPEN_TIMEOUT);
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        for payload in t.channel.flush(now, t.peer_id) {
            if payload.len() == wire::CONTROL_HEADER_LEN {
                self.stats.zlb_sent += 1;
            }
            self.out.push_back(Transmit {
                peer: t.peer,
                port: t.port,
                payload,
            });
        }
        if let Some(d) = t.deadline(hello, half_open) {
            self.timers.arm(d, tid);
        }
    }

    /// Time passes: retransmissions, HELLO, half-open expiry, lingering tunnels.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(tid) = self.timers.pop_due(now) {
            self.service(now, tid);
        }
    }

    fn service(&mut self, now: Instant, tid: u16) {
        let hello_interval = self.cfg.hello_interval;
        let Some(t) = self.tunnels.get_mut(&tid) else {
            return;
        };
        match t.channel.on_timeout(now) {
            Ok(resend) => {
                self.stats.retransmits += resend.len() as u64;
                for payload in resend {
                    self.out.push_back(Transmit {
                        peer: t.peer,
                        port: t.port,
                        payload,
                    });
                }
            }
            Err(reliable::GaveUp) => {
                let closing = t.is_closing();
                let peer = t.peer;
                if !closing {
                    self.stats.tunnels_timed_out += 1;
                    info!(
                        peer,
                        tunnel = tid,
                        "L2TP peer stopped acknowledging; tunnel torn down"
                    );
                    self.down_events(tid, &Cleared::PeerNotResponding);
                }
                self.remove_tunnel(tid);
                return;
            }
        }
        match t.state {
            TunnelState::Closing { until } if now >= until => {
                self.remove_tunnel(tid);
                return;
            }
            TunnelState::WaitConnect if now >= t.created + HALF_OPEN_TIMEOUT => {
                dropped!(
                    self.stats.half_open_expired,
                    peer = t.peer,
                    tunnel = tid,
                    "half-open tunnel expired without SCCCN"
                );
                self.remove_tunnel(tid);
                return;
            }
            TunnelState::Established if t.calls_stuck(now, CALL_SETUP_TIMEOUT) => {
                let peer = t.peer;
                let stuck: Vec<u16> = t
                    .sessions
                    .values()
                    .filter(|s| s.state != SessionState::Established)
                    .filter(|s| now >= s.created + CALL_SETUP_TIMEOUT)
                    .map(|s| s.local_id)
                    .collect();
                for session in stuck {
                    dropped!(
                        self.stats.call_setup_expired,
                        peer,
                        tunnel = tid,
                        session,
                        "call setup timed out; clearing it"
                    );
                    let s = SessionRef {
                        peer,
                        tunnel: tid,
                        session,
                    };
                    self.close_session(now, s, cdn::ADMINISTRATIVE, "call setup timed out");
                }
            }
            TunnelState::Established
                if t.channel.idle()
                    && !hello_interval.is_zero()
                    && now >= t.last_heard + hello_interval =>
            {
                self.stats.hellos_sent += 1;
                let m = t.message(0, msg::HELLO);
                t.send(m);
            }
            _ => {}
        }
        self.flush(now, tid);
    }

    /// The L2TP data header for a PPP frame to `session`.
    pub fn data_header(&mut self, session: SessionRef) -> Option<DataHeader> {
        let t = self
            .tunnels
            .get_mut(&session.tunnel)
            .filter(|t| t.peer == session.peer && t.state == TunnelState::Established)?;
        let s = t
            .sessions
            .get_mut(&session.session)
            .filter(|s| s.state == SessionState::Established)?;
        let (bytes, len) = wire::data_header(t.peer_id, s.peer_id, s.data.next());
        Some(DataHeader {
            bytes,
            len,
            port: t.port,
        })
    }

    /// What the data plane needs to frame `session`'s data messages itself: the peer's tunnel
    /// and session ids, its UDP port and the shared sequence numbers. None unless the session
    /// and its tunnel are established.
    pub fn data_route(&self, session: SessionRef) -> Option<DataRoute> {
        let t = self
            .tunnels
            .get(&session.tunnel)
            .filter(|t| t.peer == session.peer && t.state == TunnelState::Established)?;
        let s = t
            .sessions
            .get(&session.session)
            .filter(|s| s.state == SessionState::Established)?;
        Some(DataRoute {
            peer_tunnel: t.peer_id,
            peer_session: s.peer_id,
            port: t.port,
            seq: s.data.clone(),
        })
    }

    /// Asks the LAC of `peer`'s established `tunnel` to place a call (RFC 2661 §7.5.2): sends
    /// OCRQ and returns the new session, in wait-reply. Later [`Event::SessionUp`] (OCCN: data
    /// may flow) or [`Event::SessionDown`] (CDN: the LAC refused or the call failed) follows.
    /// The Bearer and Framing Type bits are limited to the capabilities the LAC announced.
    /// None when the tunnel is not established, not `peer`'s, full, or its LAC sent no Bearer
    /// Capabilities (§6.9: it cannot place calls).
    pub fn place_call(
        &mut self,
        now: Instant,
        peer: PeerId,
        tunnel: u16,
        call: OutgoingCall,
    ) -> Option<SessionRef> {
        let max = self.cfg.max_sessions_per_tunnel;
        let t = self
            .tunnels
            .get_mut(&tunnel)
            .filter(|t| t.peer == peer && t.state == TunnelState::Established)?;
        let Some(bearer_caps) = t.bearer_capabilities else {
            info!(
                peer,
                tunnel, "cannot place an outgoing call: the LAC sent no Bearer Capabilities"
            );
            return None;
        };
        if t.sessions.len() >= max {
            self.stats.session_limit += 1;
            return None;
        }
        let local = t.alloc_session_id(&mut self.rng)?;
        if self.next_call_serial == 0 {
            self.next_call_serial = self.rng.next_u32().max(1);
        }
        let serial = self.next_call_serial;
        self.next_call_serial = serial.wrapping_add(1).max(1);
        let call = OutgoingCall {
            bearer_type: call.bearer_type & bearer_caps,
            framing_type: t
                .framing_capabilities
                .map_or(call.framing_type, |caps| call.framing_type & caps),
            ..call
        };
        let info = CallInfo {
            direction: CallDirection::Outgoing,
            call_serial: serial,
            called_number: Some(call.called_number.clone()),
            bearer_type: Some(call.bearer_type),
            sub_address: call.sub_address.clone(),
            framing_type: call.framing_type,
            ..CallInfo::default()
        };
        t.sessions.insert(local, Session::new(local, 0, info, now));
        let mut m = t.message(0, msg::OCRQ);
        avp::put_ocrq(&mut m, local, serial, &call);
        t.send(m);
        self.stats.outgoing_calls_placed += 1;
        info!(
            peer,
            tunnel,
            session = local,
            called = call.called_number,
            serial,
            "L2TP outgoing call requested (OCRQ)"
        );
        self.flush(now, tunnel);
        Some(SessionRef {
            peer,
            tunnel,
            session: local,
        })
    }

    /// Ends one session with a CDN (RFC 2661 §5.7). Emits SessionDown.
    pub fn close_session(&mut self, now: Instant, session: SessionRef, result: u16, message: &str) {
        let Some(t) = self
            .tunnels
            .get(&session.tunnel)
            .filter(|t| t.peer == session.peer && !t.is_closing())
        else {
            return;
        };
        let Some(peer_sid) = t.sessions.get(&session.session).map(|s| s.peer_id) else {
            return;
        };
        self.remove_session(
            session.tunnel,
            session.session,
            &Cleared::ClosedLocally(message.to_owned()),
        );
        if let Some(t) = self.tunnels.get_mut(&session.tunnel) {
            t.cdn(peer_sid, session.session, result, None, message);
        }
        self.flush(now, session.tunnel);
    }

    /// Ends a tunnel with StopCCN (§5.7). Emits SessionDown and TunnelDown.
    pub fn close_tunnel(
        &mut self,
        now: Instant,
        peer: PeerId,
        tunnel: u16,
        result: u16,
        message: &str,
    ) {
        if self.tunnels.get(&tunnel).is_none_or(|t| t.peer != peer) {
            return;
        }
        self.close_inner(
            now,
            tunnel,
            result,
            None,
            message,
            Cleared::ClosedLocally(message.to_owned()),
        );
        self.flush(now, tunnel);
    }

    /// The IPsec SA under `peer` is gone: forget its tunnels silently (events, no messages).
    pub fn peer_gone(&mut self, peer: PeerId) {
        let tids: Vec<u16> = self
            .tunnels
            .iter()
            .filter(|(_, t)| t.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for tid in tids {
            self.down_events(tid, &Cleared::IpsecGone);
            self.remove_tunnel(tid);
        }
    }

    /// StopCCN to every tunnel (result 6, "requester is being shut down").
    pub fn shutdown(&mut self, now: Instant) {
        let tids: Vec<u16> = self
            .tunnels
            .iter()
            .filter(|(_, t)| !t.is_closing())
            .map(|(id, _)| *id)
            .collect();
        for tid in tids {
            self.close_inner(
                now,
                tid,
                stopccn::SHUTTING_DOWN,
                None,
                "server shutting down",
                Cleared::ShuttingDown,
            );
            self.flush(now, tid);
        }
    }
}

#[cfg(test)]
mod tests;
