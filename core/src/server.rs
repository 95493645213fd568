//! The sans-IO server: the protocol cores wired together, and the policy between them.
//!
//! [`Server`] plays the part quinn-proto's `Endpoint` plays for QUIC: it owns the IKE
//! [`Responder`] and the data plane [`Gateway`] (IPsec SAs, and through it the session layer:
//! L2TP, PPP, the address pool) and the state of pending AAA decisions (the RADIUS State of EAP
//! conversations), and it holds every rule that decides between them:
//!
//! - IKE's events (SAs up and down, peers that moved) are handed to the data plane at once, so an
//!   SA completed by a datagram is in place for the ESP right behind it;
//! - a login is refused before any backend is asked when the accounting spool is full and
//!   `accounting.block_when_full` is set, or when the IPsec peer authenticated with a user
//!   certificate issued to another user (`certificates.require_user_match`) ([`Refusal`]);
//! - a user's static address outside the pool's routes needs a host route while it is up;
//! - RADIUS Disconnect and CoA requests are applied to the sessions they select.
//!
//! Inputs are bytes with the time ([`Server::handle_ike`], [`Server::handle_udp4500`],
//! [`Server::handle_raw_esp`], [`Server::handle_tun`], [`Server::handle_timeout`], the answers
//! of the backends); outputs are datagrams written into the caller's buffer
//! ([`Server::poll_transmit`]: one contract for IKE and sealed ESP alike) and [`Event`]s for the
//! shell (credentials to check, sessions up and down for accounting, host routes). The shell
//! (`io`) moves bytes, runs the backends and the timers; the in-memory test world
//! (`tests/src/chain_world.rs`) drives this same type without sockets.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use crate::aaa::{AcctRecord, AuthContext, Decision, REJECTED};
use crate::admin::{MetricsInfo, SessionInfo, StatusInfo};
use crate::dataplane::{self, FromTun, Gateway, Via};
use crate::esp::{self, Udp4500};
use crate::ike::{self, Responder};
use crate::l2tp::SessionRef;
use crate::radius::dynauth::{self, ErrorCause, Outcome, RequestKind};
use crate::session::{self, Sessions};

/// Why the server refused a login before any backend was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The accounting spool is full and `accounting.block_when_full` is set.
    SpoolFull,
    /// PPP authenticated another user than the one the IPsec user certificate was issued for.
    CertificateUserMismatch {
        /// The user PPP asked for.
        user: String,
        /// The user of the certificate.
        certificate_user: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SpoolFull => f.write_str(
                "session refused: the accounting spool is full and accounting.block_when_full is set",
            ),
            Refusal::CertificateUserMismatch { .. } => f.write_str(
                "authentication refused: the PPP user is not the one the IPsec certificate was \
                 issued for (certificates.require_user_match)",
            ),
        }
    }
}

/// The rules the server applies between its cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// PPP must authenticate the user that the IPsec peer's user certificate was issued for.
    pub cert_user_match: bool,
    /// A TUN device carries the sessions' traffic (host routes are asked for only then).
    pub tun: bool,
}

/// What the shell must do for the server.
#[derive(Debug)]
pub enum Event {
    /// Check these credentials with the authentication chain and answer with
    /// [`Server::authenticated`].
    Authenticate {
        /// The session asking.
        session: SessionRef,
        /// What the client sent.
        request: pppd_lite::AuthRequest,
        /// NAS-Port, stations, Acct-Session-Id.
        context: AuthContext,
        /// The RADIUS State of this session's EAP conversation, if one is under way.
        eap_state: Option<Vec<u8>>,
    },
    /// A session is up: spool its accounting Start.
    SessionUp {
        /// The session.
        session: SessionRef,
        /// The authenticated user.
        user: String,
        /// Its address.
        address: Ipv4Addr,
        /// The accounting Start.
        start: Box<AcctRecord>,
        /// Acct-Interim-Interval, seconds.
        interim_interval: Option<u32>,
    },
    /// A session ended: spool its accounting Stop (when it was up).
    SessionDown {
        /// The session.
        session: SessionRef,
        /// The user, if one had authenticated.
        user: Option<String>,
        /// Why (`Display`: in words).
        reason: session::Ended,
        /// The accounting Stop, for a session that was up.
        stop: Option<Box<AcctRecord>>,
    },
    /// Add (`add`) or remove a host route to the TUN device for a static address outside the
    /// pool's routes.
    HostRoute {
        /// The client's address.
        address: Ipv4Addr,
        /// Add (or replace) when true, delete when false.
        add: bool,
    },
}

/// A datagram to send: `buf[range]` of the buffer given to [`Server::poll_transmit`], to `via`.
/// The one output shape the shell sees, from the `Server` and from the data-plane workers alike.
pub use crate::dataplane::Transmit;

/// Counters of the server's own rules (no secrets).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Logins refused because the accounting spool was full.
    pub refused_spool_full: u64,
    /// Logins refused because the PPP user was not the certificate's user.
    pub refused_certificate_user: u64,
}

/// What only the shell knows, for [`Server::status`].
#[derive(Debug, Default, Clone)]
pub struct ShellFacts {
    /// Seconds since the start.
    pub uptime_s: u64,
    /// Counters of the shell's own (send errors, batching), appended in this order.
    pub counters: Vec<(String, u64)>,
    /// Accounting records waiting in the spool.
    pub spool_depth: u64,
    /// The shell's checks (ports, forwarding, NAT rule, public name, RADIUS servers).
    pub findings: Vec<crate::admin::Finding>,
}

/// The sans-IO server. See the module documentation.
pub struct Server {
    ike: Responder,
    gw: Gateway,
    policy: Policy,
    /// Set by the shell from the accounting spool: new logins are refused while it holds.
    accounting_full: bool,
    /// RADIUS State of EAP conversations, per session.
    eap_states: HashMap<SessionRef, Vec<u8>>,
    /// Host routes asked for sessions whose static address lies outside the pool's routes.
    host_routes: HashMap<SessionRef, Ipv4Addr>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Sees every IKE event before the data plane does (test taps).
    ike_observer: Option<IkeObserver>,
}

/// A function that sees each IKE event ([`Server::observe_ike`]).
pub type IkeObserver = Box<dyn FnMut(&ike::Event) + Send>;

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("ike", &self.ike)
            .field("gateway", &self.gw)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server over an IKE responder and a data plane.
    pub fn new(ike: Responder, gw: Gateway, policy: Policy) -> Self {
        Server {
            ike,
            gw,
            policy,
            accounting_full: false,
            eap_states: HashMap::new(),
            host_routes: HashMap::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            ike_observer: None,
        }
    }

    /// A server with a seeded responder and the sessions given (tests, benches).
    pub fn seeded(
        ike: ike::Config,
        dataplane: dataplane::Config,
        sessions: Sessions,
        seed: u64,
        policy: Policy,
    ) -> Self {
        Self::new(
            Responder::seeded(Arc::new(ike), seed),
            Gateway::new(dataplane, sessions),
            policy,
        )
    }

    /// The IKE responder (read only: the server wires it).
    pub fn ike(&self) -> &Responder {
        &self.ike
    }

    /// The IKE responder, to tell it the time of day or a new configuration.
    pub fn ike_mut(&mut self) -> &mut Responder {
        &mut self.ike
    }

    /// The data plane.
    pub fn gateway(&self) -> &Gateway {
        &self.gw
    }

    /// The data plane, for test modes and settings.
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gw
    }

    /// The responder and the data plane, the server dropped (benches weigh each).
    pub fn into_parts(self) -> (Responder, Gateway) {
        (self.ike, self.gw)
    }

    /// The rules in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Changes the rules (the shell sets them as it is built).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Counters of the server's rules.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lets `observer` see every IKE event (SAs up and down, with their keys) before the data
    /// plane does. For test taps that decode what the server sends; the shell sets none.
    pub fn observe_ike(&mut self, observer: Option<IkeObserver>) {
        self.ike_observer = observer;
    }

    /// Whether the accounting spool is full and must block new logins (the shell tells).
    pub fn set_accounting_full(&mut self, full: bool) {
        self.accounting_full = full;
    }

    // ---- inputs -----------------------------------------------------------------------------

    /// An IKE datagram received on `local` from `remote` (UDP 500, or 4500 without the
    /// non-ESP marker).
    pub fn handle_ike(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.ike.handle_datagram(now, local, remote, data);
        self.follow(now);
    }

    /// A datagram on UDP 4500: IKE (after the non-ESP marker), ESP, or a NAT keepalive. Returns
    /// where the client's IP packet lies in `data`, for the TUN device.
    pub fn handle_udp4500(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &mut [u8],
    ) -> Option<Range<usize>> {
        match esp::classify_udp4500(data) {
            Udp4500::Keepalive | Udp4500::Malformed => None,
            Udp4500::Ike(msg) => {
                self.handle_ike(now, local, remote, msg);
                None
            }
            Udp4500::Esp(_) => self.handle_esp(now, data, remote),
        }
    }

    /// An ESP packet (raw protocol 50 after its IP header, or from UDP 4500) from `from`.
    /// Returns where the client's IP packet lies in `packet`, for the TUN device.
    pub fn handle_esp(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        from: SocketAddr,
    ) -> Option<Range<usize>> {
        let r = self.gw.esp_in(&mut self.ike, now, packet, from);
        self.follow(now);
        r
    }

    /// An authentic datagram a data-plane worker left to the control plane
    /// ([`EspIn::Control`](dataplane::worker::EspIn::Control)): `datagram` is the client's UDP
    /// datagram. Returns where an IPv4 packet for the TUN device lies in it, if any.
    pub fn handle_worker_datagram(
        &mut self,
        now: Instant,
        client: crate::l2tp::PeerId,
        spi: u32,
        datagram: &mut [u8],
    ) -> Option<Range<usize>> {
        let r = self.gw.control_in(now, client, spi, datagram);
        self.follow(now);
        r
    }

    /// What a data-plane worker says (an SA at its limit).
    pub fn handle_worker_note(&mut self, now: Instant, note: dataplane::worker::Note) {
        self.gw.on_note(&mut self.ike, note);
        self.follow(now);
    }

    /// Data-plane workers besides the server's own will forward: every SA and session change
    /// is queued for [`poll_update`](Self::poll_update) from now on.
    pub fn set_external_workers(&mut self, on: bool) {
        self.gw.set_external_workers(on);
    }

    /// The next message for every data-plane worker.
    pub fn poll_update(&mut self) -> Option<dataplane::worker::Update> {
        self.gw.poll_update()
    }

    /// A datagram on the cleartext L2TP port (dropped unless the test-only plain mode is on).
    pub fn handle_plain_l2tp(
        &mut self,
        now: Instant,
        data: &mut [u8],
        remote: SocketAddr,
    ) -> Option<Range<usize>> {
        let r = self.gw.plain_in(now, data, remote);
        self.follow(now);
        r
    }

    /// A packet read from the TUN device into `buf[HEADROOM..HEADROOM + len]`: sealed in place
    /// for its client ([`dataplane::Gateway::tun_in`]).
    pub fn handle_tun<'a>(&'a mut self, now: Instant, buf: &mut [u8], len: usize) -> FromTun<'a> {
        self.gw.tun_in(&mut self.ike, now, buf, len)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.ike.poll_timeout(), self.gw.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passes: every core's due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Before IKE's timers: a DPD check must see the ESP the workers counted.
        self.gw.report_activity(&mut self.ike, now);
        if self.ike.poll_timeout().is_some_and(|t| t <= now) {
            self.ike.handle_timeout(now);
        }
        if self.gw.poll_timeout().is_some_and(|t| t <= now) {
            self.gw.handle_timeout(now);
        }
        self.follow(now);
    }

    /// The chain's answer to an [`Event::Authenticate`]; `eap_state` is the RADIUS State to
    /// send with the session's next EAP message.
    pub fn authenticated(
        &mut self,
        now: Instant,
        session: SessionRef,
        request_id: u64,
        decision: Decision,
        eap_state: Option<Vec<u8>>,
    ) {
        if let Some(state) = eap_state {
            self.eap_states.insert(session, state);
        }
        self.gw
            .sessions_mut()
            .authenticated(now, session, request_id, decision);
        self.follow(now);
    }

    // ---- outputs ----------------------------------------------------------------------------

    /// The next datagram to send, written into `buf`: IKE first, then the sealed control
    /// traffic of the sessions (L2TP control, PPP control frames). `buf` needs room for 64 KiB
    /// plus [`dataplane::HEADROOM`] and [`dataplane::TAILROOM`].
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            if let Some(t) = self.ike.poll_transmit() {
                let Some(dst) = buf.get_mut(..t.data.len()) else {
                    continue;
                };
                dst.copy_from_slice(&t.data);
                return Some(Transmit {
                    via: Via::Ike {
                        local: t.local,
                        remote: t.remote,
                    },
                    range: 0..t.data.len(),
                });
            }
            if let Some(t) = self.gw.poll_transmit(&mut self.ike, buf) {
                return Some(t);
            }
            // Sealing may end an SA (its lifetime used up): follow what that started.
            if !self.follow(now) {
                return None;
            }
        }
    }

    /// The next handshake job to run on the shell's handshake pool (deferred mode:
    /// [`Responder::set_deferred_jobs`]). Every job taken must come back through
    /// [`job_done`](Self::job_done): an outstanding job keeps its place in the queue.
    pub fn poll_job(&mut self) -> Option<ike::Job> {
        self.ike.poll_job()
    }

    /// A handshake job's result: the exchange goes on (message 4 or 6 is sent).
    pub fn job_done(&mut self, now: Instant, done: ike::JobDone) {
        self.ike.job_done(now, done);
        self.follow(now);
    }

    /// The next thing the shell must do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Hands IKE's events to the data plane and turns the session layer's into the shell's,
    /// applying the server's rules on the way, until neither has more. Returns whether anything
    /// moved.
    fn follow(&mut self, now: Instant) -> bool {
        let mut moved = false;
        loop {
            let mut progressed = false;
            while let Some(ev) = self.ike.poll_event() {
                progressed = true;
                if let Some(observe) = self.ike_observer.as_mut() {
                    observe(&ev);
                }
                self.gw.on_ike_event(now, ev);
            }
            while let Some(ev) = self.gw.sessions_mut().poll_event() {
                progressed = true;
                self.session_event(now, ev);
            }
            if !progressed {
                return moved;
            }
            moved = true;
        }
    }

    fn session_event(&mut self, now: Instant, ev: session::Event) {
        match ev {
            session::Event::Authenticate {
                session,
                request,
                nas_port,
                acct_session_id,
            } => {
                if let Some(refusal) = self.refusal(session, &request) {
                    match &refusal {
                        Refusal::SpoolFull => {
                            self.stats.refused_spool_full += 1;
                            warn!(peer = session.peer, "{refusal}");
                        }
                        Refusal::CertificateUserMismatch {
                            user,
                            certificate_user,
                        } => {
                            self.stats.refused_certificate_user += 1;
                            warn!(peer = session.peer, %user, %certificate_user, "{refusal}");
                        }
                    }
                    self.gw.sessions_mut().authenticated(
                        now,
                        session,
                        request.id,
                        Decision::reject(REJECTED),
                    );
                    return;
                }
                let context = self.context(session, nas_port, acct_session_id);
                let eap_state = self.eap_states.remove(&session);
                self.events.push_back(Event::Authenticate {
                    session,
                    request,
                    context,
                    eap_state,
                });
            }
            session::Event::Up {
                session,
                user,
                address,
                start,
                interim_interval,
            } => {
                self.events.push_back(Event::SessionUp {
                    session,
                    user,
                    address,
                    start,
                    interim_interval,
                });
                if self.policy.tun && !dataplane::covered(&self.gw.config().routes, address) {
                    self.host_routes.insert(session, address);
                    self.events
                        .push_back(Event::HostRoute { address, add: true });
                }
            }
            session::Event::Down {
                session,
                user,
                reason,
                stop,
            } => {
                self.eap_states.remove(&session);
                self.events.push_back(Event::SessionDown {
                    session,
                    user,
                    reason,
                    stop,
                });
                if let Some(address) = self.host_routes.remove(&session) {
                    self.events.push_back(Event::HostRoute {
                        address,
                        add: false,
                    });
                }
            }
        }
    }

    /// Whether a login must be refused before any backend is asked, and why.
    fn refusal(&self, session: SessionRef, request: &pppd_lite::AuthRequest) -> Option<Refusal> {
        if self.accounting_full {
            return Some(Refusal::SpoolFull);
        }
        if self.policy.cert_user_match
            && let Some(owner) = self.gw.cert_user(session.peer)
            && !owner.eq_ignore_ascii_case(pppd_lite::mschapv2::strip_domain(&request.user))
        {
            return Some(Refusal::CertificateUserMismatch {
                user: request.user.clone(),
                certificate_user: owner.to_string(),
            });
        }
        None
    }

    /// The authentication context of a session: NAS-Port, the client's public address
    /// (Calling-Station-Id), the server address it talks to (Called-Station-Id),
    /// Acct-Session-Id.
    pub fn context(
        &self,
        session: SessionRef,
        nas_port: u32,
        acct_session_id: String,
    ) -> AuthContext {
        let (calling, called) = self
            .gw
            .endpoints(session)
            .map(|(remote, local)| (remote.ip().to_string(), local.to_string()))
            .unwrap_or_default();
        AuthContext {
            nas_port,
            calling_station: calling,
            called_station: called,
            acct_session_id,
        }
    }

    // ---- control ----------------------------------------------------------------------------

    /// Applies a RADIUS Disconnect or CoA request (RFC 5176) to the sessions it selects.
    pub fn dynamic_authorization(&mut self, now: Instant, req: &dynauth::Request) -> Outcome {
        let from = req.from;
        let sel = &req.selector;
        let found = self.gw.sessions().find(
            sel.acct_session_id.as_deref(),
            sel.user_name.as_deref(),
            sel.framed_ip,
        );
        let outcome = if let Some(problem) = req.problem {
            Outcome::Nak(problem)
        } else if found.is_empty() {
            info!(%from, kind = ?req.kind, selector = ?sel, "dynamic authorization: no such session");
            Outcome::Nak(ErrorCause::SessionContextNotFound)
        } else {
            match req.kind {
                RequestKind::Disconnect => {
                    for s in &found {
                        self.gw.sessions_mut().disconnect(
                            now,
                            *s,
                            "disconnected by the RADIUS server",
                        );
                    }
                    info!(%from, sessions = found.len(), "RADIUS Disconnect-Request: sessions ended");
                }
                RequestKind::Coa => {
                    let secs =
                        |v: Option<u32>| v.map(|s| std::time::Duration::from_secs(u64::from(s)));
                    for s in &found {
                        self.gw.sessions_mut().change_timeouts(
                            *s,
                            secs(req.changes.idle_timeout),
                            secs(req.changes.session_timeout),
                        );
                    }
                    info!(%from, sessions = found.len(), changes = ?req.changes, "RADIUS CoA-Request applied");
                }
            }
            Outcome::Ack
        };
        self.follow(now);
        outcome
    }

    /// Ends the sessions whose id is `target`, or whose user is `target`. Returns how many.
    pub fn disconnect(&mut self, now: Instant, target: &str) -> usize {
        let n = self.gw.disconnect(now, target.trim());
        self.follow(now);
        n
    }

    /// New settings that can change while running: IKE (new negotiations), the PPP template of
    /// new sessions, the data plane's timeouts, MTU and clamping.
    pub fn reconfigure(
        &mut self,
        ike: Arc<ike::Config>,
        ppp: pppd_lite::Config,
        dataplane: dataplane::Config,
    ) {
        self.ike.set_config(ike);
        self.gw.sessions_mut().set_ppp_template(ppp);
        self.gw.reconfigure(dataplane);
    }

    /// Shutdown, first step: LCP Terminate, CDN and StopCCN to every client.
    pub fn shutdown_sessions(&mut self, now: Instant) {
        self.gw.shutdown(now);
        self.follow(now);
    }

    /// Shutdown, last step: every SA deleted (Deletes to the peers).
    pub fn shutdown_ike(&mut self, now: Instant) {
        self.ike.shutdown();
        self.follow(now);
    }

    /// L2TP tunnels not yet closed (see [`Gateway::tunnels`]).
    pub fn tunnels(&self) -> usize {
        self.gw.tunnels()
    }

    /// Where to send NAT keepalives (RFC 3948 §4): (our address, the client's).
    pub fn keepalive_targets(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.gw.keepalive_targets()
    }

    // ---- what the admin sees ----------------------------------------------------------------

    /// Every session, as `roadgate sessions` shows it.
    pub fn sessions(&self, now: Instant, now_unix: u64) -> Vec<SessionInfo> {
        self.gw
            .sessions_view(now)
            .into_iter()
            .map(|v| SessionInfo {
                id: v.id,
                user: v.user,
                address: v.address,
                client: v.client.map_or_else(|| "-".into(), |c| c.to_string()),
                since_unix: now_unix.saturating_sub(v.age.as_secs()),
                state: if v.up { "up" } else { "connecting" }.into(),
                bytes_in: v.traffic.bytes_in,
                bytes_out: v.traffic.bytes_out,
                packets_in: v.traffic.packets_in,
                packets_out: v.traffic.packets_out,
                ike: v.ike,
                esp: v.esp,
                auth: v.auth,
                acct_session_id: v.acct_session_id,
            })
            .collect()
    }

    /// Server-wide figures; `shell` adds what only the shell knows.
    pub fn status(&self, shell: &ShellFacts) -> StatusInfo {
        let ike = self.ike.stats();
        let mut counters: Vec<(String, u64)> = vec![
            ("ike_phase1_established".into(), ike.phase1_established),
            (
                "ike_child_sas_established".into(),
                ike.child_sas_established,
            ),
            (
                "ike_auth_failed".into(),
                ike.auth_failed + ike.hash_mismatch,
            ),
            ("ike_no_proposal_chosen".into(), ike.no_proposal_chosen),
            ("ike_malformed".into(), ike.malformed),
            ("ike_dpd_dead".into(), ike.dpd_dead),
            ("ike_half_open_limited".into(), ike.half_open_limited),
            (
                "ike_half_open_source_limited".into(),
                ike.half_open_source_limited,
            ),
            (
                "ike_half_open_prefix_limited".into(),
                ike.half_open_prefix_limited,
            ),
            ("ike_early_dropped".into(), ike.early_dropped),
            ("ike_half_open_evicted".into(), ike.half_open_evicted),
            ("ike_invalid_ke".into(), ike.invalid_ke),
            ("ike_dh_keys_generated".into(), ike.dh_keys_generated),
            ("ike_jobs_busy_dropped".into(), ike.jobs_busy_dropped),
            ("ike_jobs_orphaned".into(), ike.jobs_orphaned),
            (
                "ike_jobs_retransmit_dropped".into(),
                ike.jobs_retransmit_dropped,
            ),
            (
                "ike_jobs_outstanding".into(),
                self.ike.jobs_outstanding() as u64,
            ),
            ("ike_half_open".into(), self.ike.half_open_count() as u64),
            ("ike_quick_mode_expired".into(), ike.quick_mode_expired),
        ];
        counters.extend(shell.counters.iter().cloned());
        let gw = &self.gw;
        let d = gw.stats();
        let s = gw.sessions().stats();
        let pool = gw.sessions().pool();
        counters.extend([
            ("esp_decrypted".into(), d.esp_decrypted),
            ("esp_unknown_spi".into(), d.esp_unknown_spi),
            ("esp_auth_failed".into(), d.esp_auth_failed),
            ("esp_replayed".into(), d.esp_replayed),
            ("esp_not_l2tp".into(), d.esp_not_l2tp),
            ("ip_to_tun".into(), d.to_tun),
            ("ip_from_tun".into(), d.from_tun),
            ("ip_from_tun_no_session".into(), d.tun_no_session),
            ("icmp_frag_needed".into(), d.icmp_frag_needed),
            ("tcp_mss_clamped".into(), d.mss_clamped),
            ("cleartext_l2tp_dropped".into(), d.cleartext_l2tp_dropped),
            ("sessions_up_total".into(), s.up),
            ("auth_rejected".into(), s.auth_rejected),
            ("over_session_limit".into(), s.over_limit),
            ("pool_exhausted".into(), s.pool_exhausted),
            ("ip_spoofed_dropped".into(), s.spoofed + d.spoofed),
            ("l2tp_data_stale".into(), d.l2tp_data_stale),
            ("l2tp_tunnels".into(), gw.tunnels() as u64),
            ("refused_spool_full".into(), self.stats.refused_spool_full),
            (
                "refused_certificate_user".into(),
                self.stats.refused_certificate_user,
            ),
        ]);
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: shell.uptime_s,
            sessions_up: gw.sessions().iter().filter(|s| s.up).count(),
            sessions_total: gw.sessions().len(),
            ike_sas: self.ike.phase1_count(),
            ipsec_sas: gw.sa_count(),
            pool_used: pool.in_use(),
            pool_size: pool.capacity(),
            counters,
            findings: self.findings(shell),
        }
    }

    /// The shell's checks and what the server found itself since the start.
    fn findings(&self, shell: &ShellFacts) -> Vec<crate::admin::Finding> {
        use crate::admin::Finding;
        let mut out = shell.findings.clone();
        if self.ike.server_behind_nat() {
            out.push(Finding::warning(
                "this server is behind NAT (NAT-D found its address translated): forward UDP 500 and \
                 4500 to it; Windows clients need the registry value \
                 HKLM\\SYSTEM\\CurrentControlSet\\Services\\PolicyAgent\\AssumeUDPEncapsulationContextOnSendRule \
                 = 2 (DWORD) and a restart, or they fail with error 809",
            ));
        }
        out
    }

    /// Figures for Prometheus: the status, connects, failures by reason, traffic of ended and
    /// live sessions.
    pub fn metrics(&self, shell: &ShellFacts) -> MetricsInfo {
        let ike = self.ike.stats();
        let s = self.gw.sessions().stats();
        let mut m = MetricsInfo {
            status: self.status(shell),
            connects_total: s.up,
            failures: vec![
                (
                    "ike_auth_failed".into(),
                    ike.auth_failed + ike.hash_mismatch,
                ),
                ("ike_no_proposal_chosen".into(), ike.no_proposal_chosen),
                ("ike_malformed".into(), ike.malformed),
                (
                    "ike_half_open_limited".into(),
                    ike.half_open_limited
                        + ike.half_open_source_limited
                        + ike.half_open_prefix_limited
                        + ike.early_dropped,
                ),
                ("ike_handshake_busy".into(), ike.jobs_busy_dropped),
                ("ike_invalid_ke".into(), ike.invalid_ke),
                ("ppp_auth_rejected".into(), s.auth_rejected),
                ("over_session_limit".into(), s.over_limit),
                ("pool_exhausted".into(), s.pool_exhausted),
                ("refused_spool_full".into(), self.stats.refused_spool_full),
                (
                    "refused_certificate_user".into(),
                    self.stats.refused_certificate_user,
                ),
            ],
            bytes_in: s.ended_bytes_in,
            bytes_out: s.ended_bytes_out,
            packets_in: s.ended_packets_in,
            packets_out: s.ended_packets_out,
            spool_depth: shell.spool_depth,
            ..Default::default()
        };
        for live in self.gw.sessions().iter() {
            m.bytes_in += live.traffic.bytes_in;
            m.bytes_out += live.traffic.bytes_out;
            m.packets_in += live.traffic.packets_in;
            m.packets_out += live.traffic.packets_out;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::IpAddr;
    use std::time::Duration;

    use zeroize::Zeroizing;

    use super::*;
    use crate::ike::{ChildSa, NatState, Selector};

    fn server(policy: Policy) -> Server {
        let pool = pppd_lite::pool::AddressPool::builder()
            .range(Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 99))
            .build()
            .unwrap();
        let sessions = Sessions::new(
            session::Config {
                lns: crate::l2tp::LnsConfig::default(),
                ppp: pppd_lite::Config::server(pppd_lite::ServerConfig::default()),
                pool,
            },
            [7; 32],
        );
        let dp = dataplane::Config {
            tun: false,
            ..dataplane::Config::default()
        };
        Server::seeded(ike::Config::default(), dp, sessions, 1, policy)
    }

    #[test]
    fn the_checks_say_when_the_server_is_behind_nat() {
        use crate::admin::{Finding, Level};
        let mut s = server(Policy::default());
        let facts = ShellFacts {
            uptime_s: 1,
            counters: Vec::new(),
            spool_depth: 0,
            findings: vec![Finding::ok("UDP 203.0.113.1:500 (IKE) and 4500 bound")],
        };
        assert_eq!(s.status(&facts).findings, facts.findings);
        // What NAT-D sets when our address arrives translated (ike_in_memory's
        // windows_client_and_a_server_behind_nat drives that part).
        s.ike.behind_nat = true;
        let found = s.status(&facts).findings;
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].level, Level::Warning);
        assert!(
            found[1]
                .text
                .contains("AssumeUDPEncapsulationContextOnSendRule")
                && found[1].text.contains("this server is behind NAT"),
            "{}",
            found[1]
        );
    }

    /// Phase 1 by `cert_user`'s certificate (or a PSK) and one IPsec SA: the gateway's first
    /// IPsec client, peer 1.
    fn ipsec_peer(s: &mut Server, cert_user: Option<&str>) {
        let now = Instant::now();
        let remote: SocketAddr = "198.51.100.7:4500".parse().unwrap();
        let local: SocketAddr = "203.0.113.1:4500".parse().unwrap();
        let gw = s.gateway_mut();
        gw.on_ike_event(
            now,
            ike::Event::Phase1Up {
                id: 9,
                remote,
                peer_id: "peer".into(),
                algorithms: "test".into(),
                nat: NatState::default(),
                auth: "certificate".into(),
                cert_user: cert_user.map(str::to_string),
            },
        );
        let suite = esp::Suite {
            encryption: esp::Encryption::AesCbc { key_len: 16 },
            integrity: esp::Integrity::HmacSha1_96,
        };
        let any = Selector {
            first: IpAddr::from([0, 0, 0, 0]),
            last: IpAddr::from([255, 255, 255, 255]),
            protocol: 0,
            port: 0,
        };
        gw.on_ike_event(
            now,
            ike::Event::ChildSaUp(Box::new(ChildSa {
                phase1: 9,
                peer_id: "peer".into(),
                inbound_spi: 0x1000,
                outbound_spi: 0x2000,
                suite,
                inbound_keymat: Zeroizing::new(vec![1; suite.keymat_len()]),
                outbound_keymat: Zeroizing::new(vec![2; suite.keymat_len()]),
                local,
                remote,
                udp_encap: true,
                tunnel: false,
                peer_original: None,
                local_selector: any.clone(),
                remote_selector: any,
                lifetime: Duration::from_secs(3600),
                lifetime_kb: None,
                replaces: Vec::new(),
                algorithms: "test".into(),
            })),
        );
        assert_eq!(s.gateway().sa_count(), 1);
    }

    fn login(user: &str) -> pppd_lite::AuthRequest {
        pppd_lite::AuthRequest {
            id: 1,
            user: user.into(),
            credentials: pppd_lite::Credentials::Pap {
                password: Zeroizing::new(b"pw".to_vec()),
            },
        }
    }

    const PEER1: SessionRef = SessionRef {
        peer: 1,
        tunnel: 1,
        session: 1,
    };

    #[test]
    fn a_user_certificate_binds_the_ppp_user() {
        let mut s = server(Policy {
            cert_user_match: true,
            tun: false,
        });
        ipsec_peer(&mut s, Some("alice"));
        assert_eq!(s.refusal(PEER1, &login("alice")), None);
        // The comparison ignores a DOMAIN\ prefix and letter case.
        assert_eq!(s.refusal(PEER1, &login("CORP\\Alice")), None);
        assert_eq!(
            s.refusal(PEER1, &login("bob")),
            Some(Refusal::CertificateUserMismatch {
                user: "bob".into(),
                certificate_user: "alice".into(),
            })
        );
        let words = s.refusal(PEER1, &login("bob")).unwrap().to_string();
        assert!(words.contains("certificates.require_user_match"), "{words}");
    }

    #[test]
    fn device_certificates_psks_and_the_switch_bind_nobody() {
        let mut s = server(Policy {
            cert_user_match: true,
            tun: false,
        });
        ipsec_peer(&mut s, None);
        assert_eq!(s.refusal(PEER1, &login("bob")), None);

        let mut off = server(Policy::default());
        ipsec_peer(&mut off, Some("alice"));
        assert_eq!(off.refusal(PEER1, &login("bob")), None);
    }

    #[test]
    fn a_full_spool_refuses_first() {
        let mut s = server(Policy {
            cert_user_match: true,
            tun: false,
        });
        ipsec_peer(&mut s, Some("alice"));
        s.set_accounting_full(true);
        assert_eq!(s.refusal(PEER1, &login("bob")), Some(Refusal::SpoolFull));
        assert!(
            Refusal::SpoolFull
                .to_string()
                .contains("accounting.block_when_full")
        );
        s.set_accounting_full(false);
        assert_eq!(s.refusal(PEER1, &login("alice")), None);
    }
}
