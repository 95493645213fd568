//! The full-chain test client: one L2TP/IPsec client as a native one is, in one process. The IKEv1
//! initiator with its ESP SAs ([`IpsecClient`]), the test LAC ([`Lac`]) and a pppd-lite link in the
//! client role, and (in [`run`]) real sockets and a TUN device carrying the address PPP got, so
//! that the kernel's ping and TCP go through the tunnel.
//!
//! Two parts:
//! * [`FullClient`], sans-IO: datagrams, IP packets and time go in; datagrams, IP packets for the
//!   TUN device and [`Event`]s come out. It connects (Main Mode, Quick Mode, SCCRQ/ICRQ, LCP,
//!   MS-CHAPv2 or PAP, IPCP), rekeys phase 2 and phase 1 before their lifetimes end, answers what
//!   the server starts (DPD, HELLO, LCP echo), reports a teardown by the server, and on
//!   [`FullClient::close`] tears down in Windows' order: LCP Terminate, CDN, StopCCN, IKE Delete.
//!   Many of them can share one socket loop (a load generator).
//! * [`run`] (`full_client/net.rs`), the tokio loop for one client: UDP sockets on the IKE and
//!   NAT-T ports, a raw ESP (protocol 50) socket when there is no NAT, the TUN device and its
//!   routes once PPP is up.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pppd_lite::{AuthProtocol, ClientConfig, DownReason, Input, NetworkInfo, Ppp};
use roadgate::esp::NAT_KEEPALIVE;
use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use zeroize::Zeroizing;

use crate::client::{IpsecClient, Received};
use crate::initiator::{
    Deleted, FailReason, InitiatorConfig, InitiatorEvent, Lifetimes, NatInfo, P1Proposal,
};
use crate::lac::{Lac, LacConfig, LacEvent, LacState};

mod net;
pub use net::{Args, Blast, Outcome, run};

/// Where a connection attempt failed, as the RESULT line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Sockets or the TUN device could not be set up.
    Setup,
    Ike,
    L2tp,
    Ppp,
    /// PPP authentication (MS-CHAPv2 or PAP) was refused.
    Auth,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Ike => "ike",
            Stage::L2tp => "l2tp",
            Stage::Ppp => "ppp",
            Stage::Auth => "auth",
        }
    }
}

/// One client's settings.
#[derive(Clone)]
pub struct Config {
    /// Our address and IKE port.
    pub local: SocketAddr,
    /// Our NAT-T port.
    pub local_natt_port: u16,
    /// The server's address and IKE port.
    pub server: SocketAddr,
    /// The server's NAT-T port.
    pub server_natt_port: u16,
    pub psk: Vec<u8>,
    pub user: String,
    pub password: Zeroizing<String>,
    /// PAP instead of MS-CHAPv2.
    pub pap: bool,
    /// CHAP-MD5 instead of MS-CHAPv2 (for RADIUS users with clear-text passwords).
    pub chap: bool,
    /// UDP-encapsulated ESP even without NAT (strongSwan's `encap=yes`).
    pub force_encap: bool,
    pub group: DhGroup,
    /// Proposed phase-1 lifetime; rekeyed at four fifths of it.
    pub ike_lifetime: Duration,
    /// Proposed phase-2 lifetime (or the server's, if shorter); rekeyed at four fifths of it.
    pub esp_lifetime: Duration,
    pub initial_contact: bool,
    /// The ESP transforms proposed, in order; empty: the initiator's default (AES-128-CBC +
    /// HMAC-SHA1-96, as Windows offers first).
    pub esp: Vec<roadgate::esp::Suite>,
    /// Give up when PPP is not up this long after the start.
    pub connect_timeout: Duration,
    /// Seeds the IKE, L2TP and PPP randomness (a fresh random one for real use).
    pub seed: [u8; 32],
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("local", &self.local)
            .field("server", &self.server)
            .field("user", &self.user)
            .field("pap", &self.pap)
            .field("chap", &self.chap)
            .field("force_encap", &self.force_encap)
            .field("ike_lifetime", &self.ike_lifetime)
            .field("esp_lifetime", &self.esp_lifetime)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A Windows-like client of `server` on the standard ports, MS-CHAPv2, lifetimes of 8 h and
    /// 1 h, INITIAL-CONTACT.
    pub fn new(local: IpAddr, server: IpAddr, psk: &[u8], user: &str, password: &str) -> Self {
        Self {
            local: SocketAddr::new(local, 500),
            local_natt_port: 4500,
            server: SocketAddr::new(server, 500),
            server_natt_port: 4500,
            psk: psk.to_vec(),
            user: user.to_owned(),
            password: Zeroizing::new(password.to_owned()),
            pap: false,
            chap: false,
            force_encap: false,
            group: DhGroup::Modp2048,
            ike_lifetime: Duration::from_secs(8 * 3600),
            esp_lifetime: Duration::from_secs(3600),
            initial_contact: true,
            esp: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            seed: [1; 32],
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// UDP from our port `local_port` (the IKE or the NAT-T one) to `remote`.
    Udp {
        local_port: u16,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    /// Raw ESP (IP protocol 50) to `remote`, from the SPI on.
    Esp { remote: IpAddr, data: Vec<u8> },
}

/// Why the client stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// [`FullClient::close`]: a clean stop.
    Stopped,
    /// Connecting failed.
    Failed { stage: Stage, reason: String },
    /// The server ended the connection (or stopped answering) after it was up.
    Down { reason: String, detail: String },
}

/// What happened, in order. Each has a progress line ([`Event::line`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    IkeUp {
        /// Phase 1, then the ESP suite.
        algorithms: String,
        /// What NAT-D found.
        nat: NatInfo,
        /// ESP goes in UDP (NAT, or forced).
        encap: bool,
        spi_in: u32,
        spi_out: u32,
        elapsed: Duration,
    },
    L2tpUp {
        tunnel: u16,
        remote_tunnel: u16,
        session: u16,
        remote_session: u16,
        elapsed: Duration,
    },
    PppUp {
        info: NetworkInfo,
        elapsed: Duration,
    },
    /// A new ISAKMP SA replaced the old one.
    Phase1Rekeyed { elapsed: Duration },
    /// A new IPsec SA pair replaced the one with inbound SPI `old_spi`.
    Phase2Rekeyed {
        old_spi: Option<u32>,
        spi_in: u32,
        spi_out: u32,
        elapsed: Duration,
    },
    /// The end (failure or teardown by the server); the client now tears down what is left.
    Ended(Ending),
    /// Everything is torn down: nothing more will happen.
    Closed { elapsed: Duration },
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn ip_or_dash(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "-".into(), |a| a.to_string())
}

impl Event {
    /// The machine-readable progress line.
    pub fn line(&self) -> String {
        match self {
            Event::IkeUp {
                algorithms,
                nat,
                encap,
                spi_in,
                spi_out,
                elapsed,
            } => format!(
                "IKE up alg={} encap={} behind_nat={} spi_in={spi_in:08x} spi_out={spi_out:08x} ms={}",
                algorithms.replace(' ', "_"),
                if *encap { "yes" } else { "no" },
                nat.local_behind_nat,
                ms(*elapsed)
            ),
            Event::L2tpUp {
                tunnel,
                remote_tunnel,
                session,
                remote_session,
                elapsed,
            } => format!(
                "L2TP up tunnel={tunnel}/{remote_tunnel} session={session}/{remote_session} ms={}",
                ms(*elapsed)
            ),
            Event::PppUp { info, elapsed } => format!(
                "PPP up ip={} peer={} dns={},{} mtu={} ms={}",
                info.local,
                info.peer,
                ip_or_dash(info.dns[0]),
                ip_or_dash(info.dns[1]),
                info.mtu,
                ms(*elapsed)
            ),
            Event::Phase1Rekeyed { elapsed } => {
                format!("REKEY phase=1 ms={}", ms(*elapsed))
            }
            Event::Phase2Rekeyed {
                old_spi,
                spi_in,
                spi_out,
                elapsed,
            } => format!(
                "REKEY phase=2 old_spi_in={} spi_in={spi_in:08x} spi_out={spi_out:08x} ms={}",
                old_spi.map_or_else(|| "-".into(), |s| format!("{s:08x}")),
                ms(*elapsed)
            ),
            Event::Ended(Ending::Failed { stage, reason }) => {
                format!("FAILED stage={} reason={reason:?}", stage.as_str())
            }
            Event::Ended(Ending::Down { reason, detail }) => {
                format!("DOWN reason={reason} detail={detail:?}")
            }
            Event::Ended(Ending::Stopped) => "STOPPING".into(),
            Event::Closed { elapsed } => format!("CLOSED ms={}", ms(*elapsed)),
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// IPv4 packets sent into the tunnel / received from it.
    pub ip_out: u64,
    pub ip_in: u64,
    pub ip_bytes_out: u64,
    pub ip_bytes_in: u64,
    /// IP packets that could not be sent (PPP not up, not IPv4, no SA).
    pub ip_dropped: u64,
    /// ESP packets that failed to open (bad ICV, replay) or named no SA of ours.
    pub esp_errors: u64,
    pub unknown_spi: u64,
    pub phase1_rekeys: u64,
    pub phase2_rekeys: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connecting,
    Up,
    /// Tearing down: waiting for LCP to finish.
    ClosePpp,
    /// Waiting for the CDN and StopCCN to be acknowledged.
    CloseL2tp,
    Finished,
}

/// How long each teardown step may wait for the server.
const PPP_CLOSE_WAIT: Duration = Duration::from_secs(1);
const L2TP_CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long an old IPsec SA is kept after its replacement is up, for packets in flight.
const OLD_SA_GRACE: Duration = Duration::from_secs(2);
/// RFC 3948 §4 keepalives from behind a NAT.
const NAT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a rekey that is due waits when the other phase's rekey is under way.
const REKEY_WAIT: Duration = Duration::from_millis(200);

/// A short name of an ESP suite, e.g. `AES-CBC-128/HMAC-SHA1-96`.
fn suite_name(s: &roadgate::esp::Suite) -> String {
    format!("{:?}/{:?}", s.encryption, s.integrity).replace(' ', "")
}

/// When to rekey an SA of lifetime `life` that came up at `now`: at four fifths of it.
fn rekey_time(now: Instant, life: Duration) -> Instant {
    now + life.mul_f64(0.8)
}

/// One client, sans-IO. See the module documentation.
pub struct FullClient {
    cfg: Config,
    started: Instant,
    ipsec: IpsecClient,
    lac: Lac,
    ppp_config: pppd_lite::Config,
    ppp: Option<Ppp>,
    /// Our session ID once ICRQ is sent.
    session: Option<u16>,
    step: Step,
    step_deadline: Option<Instant>,
    ending: Option<Ending>,
    ike_reported: bool,
    /// The first phase 1's algorithms and NAT-D result.
    p1_summary: Option<(String, NatInfo)>,
    net: Option<NetworkInfo>,
    p1_rekey_at: Option<Instant>,
    p2_rekey_at: Option<Instant>,
    /// A phase-1 (Main Mode) or phase-2 (Quick Mode) rekey is under way: the other waits, since
    /// a new ISAKMP SA deletes the old one, and a Quick Mode under it would be cut off.
    p1_rekeying: bool,
    p2_rekeying: bool,
    /// Old IPsec SAs (inbound SPI) to delete once their replacement has settled.
    retire: Vec<(Instant, u32)>,
    keepalive_at: Option<Instant>,
    out: VecDeque<Datagram>,
    tun_out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl fmt::Debug for FullClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FullClient")
            .field("cfg", &self.cfg)
            .field("step", &self.step)
            .field("ending", &self.ending)
            .field("net", &self.net)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FullClient {
    /// A client that starts Main Mode at once.
    pub fn new(cfg: Config, now: Instant) -> Self {
        let seed = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&cfg.seed[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let mut ic = InitiatorConfig::new(
            cfg.local,
            SocketAddr::new(cfg.server.ip(), cfg.server.port()),
            &cfg.psk,
        );
        ic.natt_port = cfg.server_natt_port;
        ic.local_natt_port = Some(cfg.local_natt_port);
        ic.force_encap = cfg.force_encap;
        ic.initial_contact = cfg.initial_contact;
        ic.seed = seed(0);
        ic.ike_proposals = vec![P1Proposal::new(
            CipherAlg::AesCbc { key_len: 32 },
            HashAlg::Sha256,
            cfg.group,
        )];
        if !cfg.esp.is_empty() {
            ic.esp_proposals = cfg.esp.clone();
        }
        ic.lifetimes = Lifetimes {
            p1_seconds: Some(cfg.ike_lifetime.as_secs().max(1)),
            p2_seconds: Some(cfg.esp_lifetime.as_secs().max(1)),
            p2_kilobytes: None,
        };
        let mut ipsec = IpsecClient::new(ic);
        ipsec.start(now);
        let mut lac_cfg = LacConfig::windows();
        lac_cfg.assigned_tunnel = (seed(1) as u16).max(1);
        lac_cfg.hello_interval = Some(Duration::from_secs(60));
        let lac = Lac::new(lac_cfg, seed(2), now);
        let ppp_config = pppd_lite::Config::client(ClientConfig {
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            accept_auth: vec![if cfg.pap {
                AuthProtocol::Pap
            } else if cfg.chap {
                AuthProtocol::ChapMd5
            } else {
                AuthProtocol::MsChapV2
            }],
            request_dns: true,
        });
        let mut c = Self {
            cfg,
            started: now,
            ipsec,
            lac,
            ppp_config,
            ppp: None,
            session: None,
            step: Step::Connecting,
            step_deadline: None,
            ending: None,
            ike_reported: false,
            p1_summary: None,
            net: None,
            p1_rekey_at: None,
            p2_rekey_at: None,
            p1_rekeying: false,
            p2_rekeying: false,
            retire: Vec::new(),
            keepalive_at: None,
            out: VecDeque::new(),
            tun_out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        c.pump(now);
        c
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What IPCP gave us, while PPP is up.
    pub fn network(&self) -> Option<&NetworkInfo> {
        self.net.as_ref()
    }

    /// Whether IP packets flow.
    pub fn is_up(&self) -> bool {
        self.step == Step::Up
    }

    /// Everything is torn down.
    pub fn is_finished(&self) -> bool {
        self.step == Step::Finished
    }

    /// Why it ended (once it has).
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    /// The installed IPsec SAs' inbound SPIs, oldest first.
    pub fn spis(&self) -> Vec<u32> {
        self.ipsec
            .children()
            .iter()
            .map(|c| c.inbound_spi)
            .collect()
    }

    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    /// The next IPv4 packet from the tunnel, for the TUN device.
    pub fn poll_tun(&mut self) -> Option<Vec<u8>> {
        self.tun_out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.step == Step::Finished {
            return None;
        }
        let connect =
            (self.step == Step::Connecting).then(|| self.started + self.cfg.connect_timeout);
        [
            self.ipsec.poll_timeout(),
            self.lac.poll_timeout(),
            self.ppp.as_ref().and_then(Ppp::poll_timeout),
            self.p1_rekey_at,
            self.p2_rekey_at,
            self.retire.iter().map(|r| r.0).min(),
            self.keepalive_at,
            self.step_deadline,
            connect,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A UDP datagram that arrived on our port `local_port` from `remote`.
    pub fn handle_udp(&mut self, now: Instant, local_port: u16, remote: SocketAddr, data: &[u8]) {
        let local = SocketAddr::new(self.cfg.local.ip(), local_port);
        let r = self.ipsec.handle_udp(now, local, remote, data);
        self.on_received(now, r);
        self.pump(now);
    }

    /// A raw ESP packet (IP protocol 50), from the SPI on.
    pub fn handle_esp(&mut self, now: Instant, packet: &[u8]) {
        let r = self.ipsec.open(packet);
        self.on_received(now, r);
        self.pump(now);
    }

    /// An IPv4 packet to send through the tunnel (read from the TUN device). False when it
    /// could not go (PPP not up, not IPv4).
    pub fn send_ip(&mut self, now: Instant, packet: &[u8]) -> bool {
        let sent = self.send_ip_inner(packet);
        if sent {
            self.stats.ip_out += 1;
            self.stats.ip_bytes_out += packet.len() as u64;
        } else {
            self.stats.ip_dropped += 1;
        }
        self.pump(now);
        sent
    }

    fn send_ip_inner(&mut self, packet: &[u8]) -> bool {
        if self.step != Step::Up || packet.first().is_none_or(|v| v >> 4 != 4) {
            return false;
        }
        let (Some(ppp), Some(session)) = (self.ppp.as_ref(), self.session) else {
            return false;
        };
        if !ppp.is_up() {
            return false;
        }
        let frame = ppp.encapsulate_ipv4(packet);
        let Some(l2tp) = self.lac.send_data(session, &frame) else {
            return false;
        };
        self.seal(&l2tp)
    }

    /// Runs what is due at `now`: retransmissions, keepalives, rekeys, the connect timeout and
    /// the teardown steps.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.step == Step::Finished {
            return;
        }
        self.ipsec.handle_timeout(now);
        self.lac.handle_timeout(now);
        if let Some(p) = self.ppp.as_mut() {
            p.handle_timeout(now);
        }
        if self.step == Step::Connecting && now >= self.started + self.cfg.connect_timeout {
            let stage = self.stage();
            let reason = format!(
                "timeout: not connected after {} s",
                self.cfg.connect_timeout.as_secs()
            );
            self.fail(now, stage, reason);
        }
        let live = matches!(self.step, Step::Connecting | Step::Up);
        if live && self.p2_rekey_at.is_some_and(|t| t <= now) {
            if self.p1_rekeying {
                self.p2_rekey_at = Some(now + REKEY_WAIT);
            } else {
                self.p2_rekey_at = None;
                self.p2_rekeying = true;
                if !self.ipsec.initiator_mut().rekey_child(now) {
                    self.peer_down(
                        now,
                        "ike-rekey-failed",
                        "no ISAKMP SA to rekey the IPsec SA under",
                    );
                }
            }
        }
        if live && self.p1_rekey_at.is_some_and(|t| t <= now) {
            if self.p2_rekeying {
                self.p1_rekey_at = Some(now + REKEY_WAIT);
            } else {
                self.p1_rekey_at = None;
                self.p1_rekeying = true;
                if !self.ipsec.initiator_mut().rekey_phase1(now) {
                    self.peer_down(now, "ike-rekey-failed", "no ISAKMP SA to rekey");
                }
            }
        }
        let due: Vec<u32> = self
            .retire
            .iter()
            .filter(|r| r.0 <= now)
            .map(|r| r.1)
            .collect();
        self.retire.retain(|r| r.0 > now);
        for spi in due {
            self.ipsec.initiator_mut().delete_child(spi);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.keepalive_at = Some(now + NAT_KEEPALIVE_INTERVAL);
            if let Some(c) = self.ipsec.children().last() {
                let remote = c.remote;
                self.out.push_back(Datagram::Udp {
                    local_port: self.cfg.local_natt_port,
                    remote,
                    data: NAT_KEEPALIVE.to_vec(),
                });
            }
        }
        if self.step_deadline.is_some_and(|t| t <= now) {
            self.step_deadline = None;
            self.advance_teardown(now, true);
        }
        self.pump(now);
    }

    /// Gives up because something outside the protocols failed (a socket, the TUN device): the
    /// ending is a failure at stage `setup`, and the teardown starts.
    pub fn fail_setup(&mut self, now: Instant, reason: String) {
        self.fail(now, Stage::Setup, reason);
        self.pump(now);
    }

    /// A clean stop: LCP Terminate-Request, then CDN and StopCCN, then IKE Deletes.
    pub fn close(&mut self, now: Instant) {
        if self.ending.is_none() {
            self.end(now, Ending::Stopped);
        }
        self.pump(now);
    }

    // ----- internals ------------------------------------------------------------------------

    /// The layer being set up.
    fn stage(&self) -> Stage {
        if !self.ike_reported {
            Stage::Ike
        } else if self.ppp.is_none() {
            Stage::L2tp
        } else {
            Stage::Ppp
        }
    }

    fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    fn seal(&mut self, l2tp: &[u8]) -> bool {
        let Some(d) = self.ipsec.seal_l2tp(l2tp) else {
            return false;
        };
        self.out.push_back(if d.udp_encap {
            Datagram::Udp {
                local_port: self.cfg.local_natt_port,
                remote: d.remote,
                data: d.data,
            }
        } else {
            Datagram::Esp {
                remote: d.remote.ip(),
                data: d.data,
            }
        });
        true
    }

    fn on_received(&mut self, now: Instant, r: Received) {
        match r {
            Received::L2tp { payload, .. } => {
                let Some((_session, frame, _)) = self.lac.handle_datagram(now, &payload) else {
                    return;
                };
                let Some(ppp) = self.ppp.as_mut() else { return };
                if let Input::Ipv4(p) = ppp.handle_frame(now, &frame) {
                    self.stats.ip_in += 1;
                    self.stats.ip_bytes_in += p.len() as u64;
                    self.tun_out.push_back(p.to_vec());
                }
            }
            Received::UnknownSpi(_) => self.stats.unknown_spi += 1,
            Received::EspError { .. } | Received::BadUdpChecksum { .. } => {
                self.stats.esp_errors += 1;
            }
            Received::Ike | Received::Keepalive | Received::Other { .. } | Received::Malformed => {}
        }
    }

    /// Moves everything between the layers until nothing moves.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(t) = self.ipsec.poll_transmit() {
                moved = true;
                self.out.push_back(Datagram::Udp {
                    local_port: t.local.port(),
                    remote: t.remote,
                    data: t.data,
                });
            }
            while let Some(ev) = self.ipsec.poll_event() {
                moved = true;
                self.on_ike(now, ev);
            }
            while let Some(d) = self.lac.poll_transmit() {
                moved = true;
                self.seal(&d);
            }
            while let Some(ev) = self.lac.poll_event() {
                moved = true;
                self.on_lac(now, ev);
            }
            let (mut frames, mut events) = (Vec::new(), Vec::new());
            if let Some(ppp) = self.ppp.as_mut() {
                while let Some(f) = ppp.poll_transmit() {
                    frames.push(f);
                }
                while let Some(e) = ppp.poll_event() {
                    events.push(e);
                }
            }
            if let Some(session) = self.session {
                for f in &frames {
                    moved = true;
                    if let Some(d) = self.lac.send_data(session, f) {
                        self.seal(&d);
                    }
                }
            }
            for e in events {
                moved = true;
                self.on_ppp(now, e);
            }
            if self.advance_teardown(now, false) {
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn on_ike(&mut self, now: Instant, ev: InitiatorEvent) {
        match ev {
            InitiatorEvent::Phase1Up {
                rekey,
                algorithms,
                nat,
                ..
            } => {
                self.p1_rekey_at = Some(rekey_time(now, self.cfg.ike_lifetime));
                self.p1_rekeying = false;
                if self.p1_summary.is_none() {
                    self.p1_summary = Some((algorithms, nat));
                }
                if rekey {
                    self.stats.phase1_rekeys += 1;
                    self.events.push_back(Event::Phase1Rekeyed {
                        elapsed: self.elapsed(now),
                    });
                }
            }
            InitiatorEvent::ChildSaUp(info) => {
                let life = [
                    Some(self.cfg.esp_lifetime.as_secs()),
                    info.returned_lifetime.seconds,
                    info.responder_lifetime.and_then(|l| l.seconds),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(3600)
                .max(1);
                let life = Duration::from_secs(life);
                self.p2_rekey_at = Some(rekey_time(now, life));
                self.p2_rekeying = false;
                if info.udp_encap && self.keepalive_at.is_none() {
                    self.keepalive_at = Some(now + NAT_KEEPALIVE_INTERVAL);
                }
                if self.ike_reported {
                    self.stats.phase2_rekeys += 1;
                    let old = info.replaces;
                    if let Some(old) = old {
                        let grace = OLD_SA_GRACE.min(life / 10);
                        self.retire.push((now + grace, old));
                    }
                    self.events.push_back(Event::Phase2Rekeyed {
                        old_spi: old,
                        spi_in: info.inbound_spi,
                        spi_out: info.outbound_spi,
                        elapsed: self.elapsed(now),
                    });
                    return;
                }
                self.ike_reported = true;
                let (p1, nat) = self.p1_summary.clone().unwrap_or_default();
                self.events.push_back(Event::IkeUp {
                    algorithms: format!("{p1} esp={}", suite_name(&info.suite)),
                    nat,
                    encap: info.udp_encap,
                    spi_in: info.inbound_spi,
                    spi_out: info.outbound_spi,
                    elapsed: self.elapsed(now),
                });
                if self.step == Step::Connecting {
                    self.lac.connect(now);
                }
            }
            InitiatorEvent::Failed { stage, reason } => {
                let text = match &reason {
                    FailReason::PeerNotify(24) => {
                        "the server refused our authentication (AUTHENTICATION-FAILED notify): wrong pre-shared key".to_owned()
                    }
                    FailReason::PeerNotify(n) => format!("the server sent notify {n}"),
                    FailReason::Timeout => "no answer from the server".to_owned(),
                    other => format!("{other:?}"),
                };
                let text = format!("{stage:?}: {text}");
                if !self.ike_reported {
                    self.fail(now, Stage::Ike, text);
                } else {
                    self.peer_down(now, "ike-rekey-failed", &text);
                }
            }
            InitiatorEvent::Deleted(Deleted::Child {
                inbound_spi,
                by_peer,
                ..
            }) => {
                self.retire.retain(|r| r.1 != inbound_spi);
                if by_peer && self.ipsec.children().is_empty() {
                    self.peer_down(now, "ike-delete", "the server deleted the IPsec SA");
                }
            }
            InitiatorEvent::Deleted(Deleted::Phase1 { by_peer: true, .. }) => {
                if !self.ipsec.initiator().is_up() {
                    self.peer_down(now, "ike-delete", "the server deleted the ISAKMP SA");
                }
            }
            InitiatorEvent::Deleted(Deleted::Phase1 { .. })
            | InitiatorEvent::DpdAck { .. }
            | InitiatorEvent::DpdProbe { .. }
            | InitiatorEvent::Notify { .. } => {}
        }
    }

    fn on_lac(&mut self, now: Instant, ev: LacEvent) {
        match ev {
            LacEvent::TunnelUp { .. } => {
                if self.step == Step::Connecting {
                    self.session = Some(self.lac.open_session(now));
                }
            }
            LacEvent::SessionUp {
                session,
                remote_session,
            } => {
                if self.step != Step::Connecting || self.ppp.is_some() {
                    return;
                }
                self.events.push_back(Event::L2tpUp {
                    tunnel: self.lac.cfg.assigned_tunnel,
                    remote_tunnel: self.lac.remote_tunnel,
                    session,
                    remote_session,
                    elapsed: self.elapsed(now),
                });
                let mut seed = self.cfg.seed;
                seed[0] ^= 0x5a;
                let mut ppp = Ppp::new(self.ppp_config.clone(), now, seed);
                ppp.open(now);
                self.ppp = Some(ppp);
            }
            LacEvent::TunnelDown { result } => {
                let detail = match result {
                    Some((r, e)) => format!("StopCCN from the server: result {r} error {e:?}"),
                    None => "the L2TP control channel got no answer".to_owned(),
                };
                match self.step {
                    Step::Connecting => self.fail(now, Stage::L2tp, detail),
                    Step::Up => self.peer_down(
                        now,
                        if result.is_some() {
                            "stopccn"
                        } else {
                            "l2tp-timeout"
                        },
                        &detail,
                    ),
                    _ => {}
                }
            }
            // A StopCCN ends the session too; the LAC reports that with no result, followed by
            // the TunnelDown that says what happened.
            LacEvent::SessionDown { result: None, .. } => self.session = None,
            LacEvent::SessionDown { result, .. } => {
                self.session = None;
                let detail = match result {
                    Some((r, e)) => format!("CDN from the server: result {r} error {e:?}"),
                    None => "CDN from the server".to_owned(),
                };
                match self.step {
                    Step::Connecting => {
                        let stage = self.stage();
                        self.fail(now, stage, detail);
                    }
                    Step::Up => self.peer_down(now, "cdn", &detail),
                    _ => {}
                }
            }
        }
    }

    fn on_ppp(&mut self, now: Instant, ev: pppd_lite::Event) {
        match ev {
            pppd_lite::Event::Up(info) => {
                if self.step != Step::Connecting {
                    return;
                }
                self.step = Step::Up;
                self.net = Some(info);
                self.events.push_back(Event::PppUp {
                    info,
                    elapsed: self.elapsed(now),
                });
            }
            pppd_lite::Event::AuthFailed { reason, .. } => {
                self.fail(now, Stage::Auth, reason);
            }
            pppd_lite::Event::Down(reason) => {
                let detail = match &reason {
                    DownReason::PeerTerminated(t) => {
                        format!("LCP Terminate-Request from the server: {t:?}")
                    }
                    DownReason::EchoTimeout => "the server stopped answering LCP echo".into(),
                    other => other.to_string(),
                };
                match (self.step, &reason) {
                    (_, DownReason::Closed(_)) => {}
                    (Step::Connecting, DownReason::AuthFailed | DownReason::AuthTimeout) => {
                        self.fail(now, Stage::Auth, detail)
                    }
                    (Step::Connecting, _) => self.fail(now, Stage::Ppp, detail),
                    (Step::Up, DownReason::PeerTerminated(_)) => {
                        self.peer_down(now, "lcp-terminate", &detail)
                    }
                    (Step::Up, DownReason::EchoTimeout) => {
                        self.peer_down(now, "lcp-echo-timeout", &detail)
                    }
                    (Step::Up, _) => self.peer_down(now, "ppp-down", &detail),
                    _ => {}
                }
            }
            pppd_lite::Event::Authenticated { .. }
            | pppd_lite::Event::Authenticate(_)
            | pppd_lite::Event::Ipv6Up { .. } => {}
        }
    }

    fn fail(&mut self, now: Instant, stage: Stage, reason: String) {
        if self.ending.is_none() {
            self.end(now, Ending::Failed { stage, reason });
        }
    }

    fn peer_down(&mut self, now: Instant, reason: &str, detail: &str) {
        if self.ending.is_none() {
            self.end(
                now,
                Ending::Down {
                    reason: reason.to_owned(),
                    detail: detail.to_owned(),
                },
            );
        }
    }

    /// Records the ending and starts the teardown with the first layer still up.
    fn end(&mut self, now: Instant, ending: Ending) {
        self.events.push_back(Event::Ended(ending.clone()));
        self.ending = Some(ending);
        self.net = None;
        self.tun_out.clear();
        self.p1_rekey_at = None;
        self.p2_rekey_at = None;
        self.step = Step::ClosePpp;
        self.step_deadline = Some(now + PPP_CLOSE_WAIT);
        if let Some(p) = self.ppp.as_mut()
            && p.phase() != pppd_lite::Phase::Dead
            && p.phase() != pppd_lite::Phase::Terminate
        {
            p.close(now, "User request");
        }
    }

    /// Moves the teardown on when its step is done (or `expired`). Returns whether it moved.
    fn advance_teardown(&mut self, now: Instant, expired: bool) -> bool {
        match self.step {
            Step::ClosePpp => {
                // A clean stop waits for the Terminate-Ack; after a failure or a teardown by the
                // server there is nothing to wait for.
                let stopping = self.ending == Some(Ending::Stopped);
                let ppp_done = !stopping
                    || self
                        .ppp
                        .as_ref()
                        .is_none_or(|p| p.phase() == pppd_lite::Phase::Dead);
                if !(ppp_done || expired) {
                    return false;
                }
                if let Some(s) = self.session.take()
                    && self.lac.session_up(s)
                {
                    self.lac.close_session(now, s, 3);
                }
                if self.lac.state == LacState::Established {
                    self.lac.close_tunnel(now, 1);
                }
                self.step = Step::CloseL2tp;
                self.step_deadline = Some(now + L2TP_CLOSE_WAIT);
                true
            }
            Step::CloseL2tp => {
                if !(self.lac.in_flight() == 0 || expired) {
                    return false;
                }
                self.ipsec.initiator_mut().delete_all();
                self.retire.clear();
                self.keepalive_at = None;
                self.step = Step::Finished;
                self.step_deadline = None;
                self.events.push_back(Event::Closed {
                    elapsed: self.elapsed(now),
                });
                true
            }
            _ => false,
        }
    }
}
