//! The tokio shell: it owns the sockets, the TUN device and the clock, and drives the sans-IO
//! cores: the IKE [`Responder`] and the data plane [`Gateway`] (IPsec SAs, L2TP, PPP, sessions).
//!
//! It carries IKE on UDP 500 and 4500 (non-ESP marker demux, NAT keepalives), ESP over raw
//! protocol 50 (when the process may open a raw socket) and over UDP 4500, on every address it
//! listens on, IPv4 and IPv6 ([`listen`]): each reply leaves from the local address its request
//! came to. Between the TUN device and the clients goes IPv4. One task runs everything; packets
//! that are ready are taken in batches before the task waits again. Credentials are checked off
//! the loop (SQLite is a blocking call) and the answers come back through a channel.
//!
//! Cleartext L2TP on UDP 1701 is dropped and logged, unless the test-only plain mode is on.

pub mod aaa_io;
pub mod admin;
pub mod auth;
pub mod listen;
pub mod radius;
mod tun;
pub mod web;

pub use tun::ip_route;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::aaa::{Decision, local::UserStore};
use crate::admin::{Request, Response, SessionInfo, StatusInfo};
use crate::dataplane::{self, FromTun, Gateway, HEADROOM, TAILROOM, Transmit, Via};
use crate::esp::{self, Udp4500};
use crate::ike::{self, Responder};
use crate::l2tp::SessionRef;
use crate::session::{self, Sessions};
use listen::{Datagram, Kind, Listeners, Outgoing, RecvBatch};

pub use crate::dataplane::gateway::{L2TP_PORT, describe_inner, describe_l2tp};

/// Where to listen, and how.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The address [`Shell::bind`] listens on; [`Shell::bind_all`] takes more.
    pub addr: IpAddr,
    pub ike_port: u16,
    pub natt_port: u16,
    /// Open a raw protocol-50 socket for ESP without UDP encapsulation.
    pub raw_esp: bool,
    /// Test-only: send every decrypted UDP datagram back to its sender through the outbound SA
    /// (ports swapped), so that a test client can check both directions of ESP before the L2TP
    /// layer exists. Off by default; never for production.
    pub test_echo: bool,
    /// UDP port watched for cleartext L2TP (dropped and logged unless `plain_l2tp`); `None`
    /// opens nothing.
    pub l2tp_port: Option<u16>,
    /// Test-only: serve L2TP without IPsec on `l2tp_port`. Never for production.
    pub plain_l2tp: bool,
}

/// The unspecified address of `ip`'s family.
fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Settings read again on SIGHUP (or `roadgate reload`): what can change while running.
#[derive(Debug)]
pub struct Reload {
    /// IKE: pre-shared keys, proposals, DPD, NAT-T behaviour (new negotiations use them).
    pub ike: Arc<ike::Config>,
    /// The PPP template of new sessions (DNS, WINS, MRU, echo, auth methods).
    pub ppp: pppd_lite::Config,
    /// Timeouts, MTU, MSS clamping.
    pub dataplane: dataplane::Config,
    /// What changed, and what needs a restart, in words.
    pub summary: String,
}

/// Reads the settings again.
pub type Reloader = Box<dyn FnMut() -> Result<Reload, String> + Send>;

/// Packets taken from one ready socket (or the TUN device) before the loop looks at the others.
const BATCH: usize = 64;

/// Room for one packet read from the TUN device and sealed in place.
const TUN_SLOT: usize = HEADROOM + 65536 + TAILROOM;

/// How long a shutdown waits for clients to acknowledge StopCCN before the IPsec Deletes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How well the system calls are batched.
#[derive(Debug, Default, Clone, Copy)]
struct Batching {
    rx_datagrams: u64,
    rx_calls: u64,
    tx_datagrams: u64,
    tx_calls: u64,
}

/// A buffer for one packet with the data plane's headroom and tailroom.
fn packet_buffer() -> Vec<u8> {
    vec![0u8; TUN_SLOT]
}

/// Packets from the TUN device, each read at the end of the ones before it (plus the data
/// plane's headroom), sealed in place and moved back to lie end to end, so that the run of
/// datagrams to one client goes out in one GSO send.
struct TxBatch {
    buf: Vec<u8>,
    /// Bytes of sealed datagrams at the start of `buf`.
    used: usize,
    /// The datagrams, in order (capacity [`BATCH`], reserved once).
    out: Vec<Outgoing>,
}

impl TxBatch {
    fn new() -> Self {
        Self {
            // Every packet of a batch: 1400-byte packets grown by at most the headers and
            // padding, and room to read the next one at full size.
            buf: vec![0u8; BATCH * 1600 + TUN_SLOT],
            used: 0,
            out: Vec::with_capacity(BATCH),
        }
    }

    /// Where the next packet from the TUN device is read: after the datagrams so far, past the
    /// headroom. `None` when the batch is full.
    fn read_slot(&mut self) -> Option<&mut [u8]> {
        if self.out.len() >= BATCH {
            return None;
        }
        let start = self.used + HEADROOM;
        self.buf.get_mut(start..start + 65536)
    }

    fn clear(&mut self) {
        self.used = 0;
        self.out.clear();
    }
}

/// An authentication answer for a session: the request id, the decision and the RADIUS
/// State of an EAP conversation.
type Answer = (SessionRef, u64, Decision, Option<Vec<u8>>);

/// The running shell.
pub struct Shell {
    ike: Responder,
    gw: Option<Gateway>,
    listen: Listen,
    /// Every socket, on every address.
    sockets: Listeners,
    tun: Option<tokio_tun::Tun>,
    /// The authentication chain, accounting and dynamic authorization.
    aaa: Option<aaa_io::Aaa>,
    decisions_tx: tokio::sync::mpsc::UnboundedSender<Answer>,
    decisions_rx: tokio::sync::mpsc::UnboundedReceiver<Answer>,
    /// Scratch buffer for sealed control datagrams.
    txbuf: Vec<u8>,
    /// NAT keepalives and IKE datagrams dropped because a socket refused them.
    send_errors: u64,
    /// Batching: datagrams received and the `recvmmsg` calls that took them; data-plane
    /// datagrams sent and the sends (GSO `sendmsg`, `sendmmsg`) that carried them.
    batching: Batching,
    /// Requests from the admin socket, and its path (removed at exit).
    admin: Option<tokio::sync::mpsc::Receiver<admin::Call>>,
    /// Another way into `admin` (the web UI's).
    admin_tx: Option<tokio::sync::mpsc::Sender<admin::Call>>,
    /// The RADIUS client's per-server figures.
    radius_metrics: Vec<radius::RadiusMetricsHandle>,
    /// PPP must authenticate the user a user certificate of the IPsec peer was issued for.
    cert_user_match: bool,
    admin_path: Option<std::path::PathBuf>,
    /// Reads the configuration again (SIGHUP, `roadgate reload`).
    reloader: Option<Reloader>,
    /// Host routes added for sessions whose static address lies outside the pool's routes.
    host_routes: std::collections::HashMap<SessionRef, Ipv4Addr>,
    started: Instant,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("listen", &self.listen)
            .field("gateway", &self.gw)
            .finish_non_exhaustive()
    }
}

impl Shell {
    /// Listens on `listen.addr`.
    pub async fn bind(cfg: Arc<ike::Config>, listen: Listen) -> io::Result<Self> {
        Self::bind_all(cfg, listen, &[]).await
    }

    /// Listens on `listen.addr` and every address of `more` (IPv4 and IPv6, wildcards or not;
    /// an address given twice, or covered by a wildcard of its family, is bound once).
    pub async fn bind_all(
        cfg: Arc<ike::Config>,
        listen: Listen,
        more: &[IpAddr],
    ) -> io::Result<Self> {
        let addrs: Vec<IpAddr> = std::iter::once(listen.addr)
            .chain(more.iter().copied())
            .collect();
        let sockets = Listeners::bind(&listen, &addrs)?;
        if listen.raw_esp && !sockets.has_raw_esp() {
            warn!("no raw ESP socket: clients that are not behind NAT cannot pass ESP");
        }
        if listen.plain_l2tp {
            warn!(
                port = listen.l2tp_port,
                "TEST MODE: L2TP is accepted WITHOUT IPsec; passwords cross the network unprotected"
            );
        }
        let (decisions_tx, decisions_rx) = tokio::sync::mpsc::unbounded_channel();
        let test_echo = listen.test_echo;
        let shell = Self {
            ike: {
                let mut r = Responder::new(cfg);
                r.set_unix_time(Instant::now(), aaa_io::unix_now());
                r
            },
            gw: None,
            listen,
            sockets,
            tun: None,
            aaa: None,
            decisions_tx,
            decisions_rx,
            txbuf: packet_buffer(),
            send_errors: 0,
            batching: Batching::default(),
            admin: None,
            admin_tx: None,
            radius_metrics: Vec::new(),
            cert_user_match: false,
            admin_path: None,
            reloader: None,
            host_routes: std::collections::HashMap::new(),
            started: Instant::now(),
        };
        if test_echo {
            shell.with_test_echo()
        } else {
            Ok(shell)
        }
    }

    /// Adds the data plane: L2TP arriving through IPsec (or in clear, in plain mode) is served,
    /// credentials are checked against `users`, and IP goes between the clients and a TUN
    /// device (when `dataplane.tun`; opening it needs CAP_NET_ADMIN).
    pub fn with_sessions(
        mut self,
        sessions: Sessions,
        users: UserStore,
        dataplane: dataplane::Config,
    ) -> io::Result<Self> {
        if dataplane.tun {
            let t = tun::open(&dataplane)?;
            self.tun = Some(t);
        } else {
            warn!("no TUN device (data plane off): clients connect but pass no traffic");
        }
        let mut gw = Gateway::new(dataplane, sessions);
        gw.set_plain_l2tp(self.listen.plain_l2tp);
        gw.set_test_echo(self.listen.test_echo);
        self.gw = Some(gw);
        self.aaa = Some(aaa_io::Aaa::new(auth::Backends {
            chain: vec![crate::aaa::BackendKind::Local],
            users: Some(Arc::new(std::sync::Mutex::new(users))),
            pam_service: crate::aaa::pam::DEFAULT_SERVICE.to_string(),
            radius: None,
        }));
        Ok(self)
    }

    /// The authentication chain (after [`with_sessions`](Self::with_sessions), whose user
    /// database it keeps), the RADIUS client, durable accounting and dynamic authorization, as
    /// configured. Accounting goes to RADIUS when accounting servers are configured, else to
    /// the local history only.
    pub async fn with_aaa(
        mut self,
        chain: Vec<crate::aaa::BackendKind>,
        pam_service: String,
        radius: Option<&crate::config::RadiusSettings>,
        accounting: Option<crate::aaa::accounting::Accounting>,
        dynauth: Option<(SocketAddr, crate::radius::dynauth::DynAuthConfig)>,
    ) -> io::Result<Self> {
        let users = self.aaa.as_ref().and_then(|a| a.backends.users.clone());
        let client = match radius {
            Some(r) => {
                let (tx, _task, metrics) =
                    radius::spawn_client_with_metrics(r.client.clone(), r.source).await?;
                self.radius_metrics.push(metrics);
                Some((tx, r.has(crate::radius::client::Role::Acct)))
            }
            None => None,
        };
        let mut aaa = aaa_io::Aaa::new(auth::Backends {
            chain,
            users,
            pam_service,
            radius: client.as_ref().map(|c| c.0.clone()),
        });
        if let Some(acct) = accounting {
            let to_radius = client.as_ref().filter(|c| c.1).map(|c| c.0.clone());
            aaa.start_accounting(acct, to_radius);
        }
        if let Some((bind, cfg)) = dynauth {
            let (rx, local, _task) =
                radius::spawn_dynauth(crate::radius::dynauth::DynAuth::new(cfg), bind).await?;
            info!(%local, "listening for RADIUS Disconnect and CoA requests");
            aaa.dynauth = Some(rx);
        }
        self.aaa = Some(aaa);
        Ok(self)
    }

    /// Only IKE and ESP (the test echo), no sessions: for tests of the IPsec half.
    fn with_test_echo(mut self) -> io::Result<Self> {
        let pool = pppd_lite::pool::AddressPool::builder()
            .range(Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 250))
            .build()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut gw = Gateway::new(
            dataplane::Config {
                tun: false,
                ..dataplane::Config::default()
            },
            Sessions::new(
                session::Config {
                    lns: crate::l2tp::LnsConfig::default(),
                    ppp: pppd_lite::Config::server(pppd_lite::ServerConfig::default()),
                    pool,
                },
                [0; 32],
            ),
        );
        gw.set_test_echo(true);
        self.gw = Some(gw);
        Ok(self)
    }

    /// A channel to the control loop's admin requests (after [`Shell::with_admin_socket`]).
    pub fn admin_calls(&self) -> Option<tokio::sync::mpsc::Sender<admin::Call>> {
        self.admin_tx.clone()
    }

    /// Whether PPP must authenticate the user that the IPsec peer's user certificate was
    /// issued for (`certificates.require_user_match`).
    pub fn with_cert_user_match(mut self, on: bool) -> Self {
        self.cert_user_match = on;
        self
    }

    /// The RADIUS client's per-server figures (after [`Shell::with_aaa`]).
    pub fn radius_metrics(&self) -> Vec<radius::RadiusMetricsHandle> {
        self.radius_metrics.clone()
    }

    /// Serves the admin socket at `path` (mode 0600).
    pub fn with_admin_socket(mut self, path: &std::path::Path) -> io::Result<Self> {
        let (tx, rx) = admin::listen(path)?;
        self.admin = Some(rx);
        self.admin_tx = Some(tx);
        self.admin_path = Some(path.to_path_buf());
        Ok(self)
    }

    /// Reads the configuration again with `reloader` on SIGHUP and `roadgate reload`.
    pub fn with_reloader(mut self, reloader: Reloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Runs until `stop` resolves, then ends every session (LCP Terminate, CDN, StopCCN), waits
    /// briefly for the clients' acknowledgements, and deletes every SA.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> io::Result<()> {
        tokio::pin!(stop);
        self.event_loop(&mut stop, false).await?;
        info!("shutting down: ending every session and L2TP tunnel, then deleting every SA");
        if let Some(gw) = self.gw.as_mut() {
            gw.shutdown(Instant::now());
        }
        self.drain().await;
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        if self.gw.as_ref().is_some_and(|g| g.tunnels() > 0) {
            self.event_loop(&mut grace, true).await?;
        }
        self.ike.shutdown();
        self.drain().await;
        if let Some(aaa) = self.aaa.as_mut() {
            aaa.shutdown(SHUTDOWN_GRACE).await;
        }
        if let Some(p) = &self.admin_path {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    /// The loop, until `stop` resolves (or, with `until_tunnels_closed`, during shutdown, until
    /// every L2TP tunnel is closed and its StopCCN acknowledged).
    async fn event_loop<F: std::future::Future<Output = ()>>(
        &mut self,
        stop: &mut std::pin::Pin<&mut F>,
        until_tunnels_closed: bool,
    ) -> io::Result<()> {
        let mut rx = RecvBatch::default();
        let mut tx = TxBatch::new();
        let mut keepalive = tokio::time::interval(Duration::from_secs(20));
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // Which socket is looked at first, so that a busy one does not starve the others.
        let mut turn = 0usize;
        loop {
            turn = turn.wrapping_add(1);
            let deadline = [
                self.ike.poll_timeout(),
                self.gw.as_ref().and_then(Gateway::poll_timeout),
                self.aaa.as_ref().and_then(aaa_io::Aaa::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let sockets = &self.sockets;
            tokio::select! {
                _ = stop.as_mut() => return Ok(()),
                ready = std::future::poll_fn(|cx| sockets.poll_ready(cx, turn)) => {
                    self.socket_batch(ready.index, ready.kind, &mut rx).await;
                }
                r = async {
                    match (&self.tun, tx.read_slot()) {
                        (Some(t), Some(slot)) => t.recv(slot).await,
                        _ => std::future::pending().await,
                    }
                } => {
                    let n = r?;
                    self.tun_batch(&mut tx, n).await;
                }
                d = self.decisions_rx.recv() => {
                    if let (Some((session, id, decision, state)), Some(gw)) = (d, self.gw.as_mut()) {
                        if let (Some(state), Some(aaa)) = (state, self.aaa.as_mut()) {
                            aaa.eap_states.insert(session, state);
                        }
                        gw.sessions_mut().authenticated(Instant::now(), session, id, decision);
                    }
                }
                incoming = async {
                    match self.aaa.as_mut() {
                        Some(a) => a.next().await,
                        None => std::future::pending().await,
                    }
                } => self.aaa_incoming(incoming),
                _ = sleep => {
                    let now = Instant::now();
                    self.ike.set_unix_time(now, aaa_io::unix_now());
                    self.ike.handle_timeout(now);
                    if let Some(gw) = self.gw.as_mut() {
                        gw.handle_timeout(now);
                    }
                    if let (Some(aaa), Some(gw)) = (self.aaa.as_mut(), self.gw.as_ref()) {
                        aaa.timeouts(gw, now);
                    }
                }
                _ = keepalive.tick() => self.keepalives().await,
                call = async {
                    match self.admin.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match call {
                        Some((request, reply)) => {
                            let answer = self.admin_request(request);
                            let _ = reply.send(answer);
                        }
                        None => self.admin = None,
                    }
                }
                _ = async {
                    match hangup.as_mut() {
                        Some(h) => { h.recv().await; }
                        None => std::future::pending().await,
                    }
                } => {
                    info!("SIGHUP: reading the configuration again");
                    let _ = self.reload();
                }
            }
            self.drain().await;
            if until_tunnels_closed && self.gw.as_ref().is_none_or(|g| g.tunnels() == 0) {
                return Ok(());
            }
        }
    }

    /// The datagrams waiting on socket `index` (of `kind`), up to a batch: taken with
    /// `recvmmsg`, each slot cut into the datagrams GRO put together.
    async fn socket_batch(&mut self, index: usize, kind: Kind, rx: &mut RecvBatch) {
        let mut taken = 0;
        while taken < BATCH {
            let Some(sock) = self.sockets.get_mut(index) else {
                return;
            };
            let n = match sock.try_recv_batch(rx) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(socket = %sock.bound(), error = %e, "receive failed");
                    return;
                }
            };
            self.batching.rx_calls += 1;
            for i in 0..n {
                let Some((slot, meta)) = rx.slot_mut(i) else {
                    break;
                };
                let meta = *meta;
                for segment in listen::segments(meta.len, meta.stride) {
                    taken += 1;
                    self.batching.rx_datagrams += 1;
                    let d = match self
                        .sockets
                        .get_mut(index)
                        .map(|s| s.datagram(slot, &meta, segment))
                    {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => {
                            debug!(error = %e, "dropped a datagram");
                            continue;
                        }
                        None => return,
                    };
                    self.datagram_in(kind, slot, d).await;
                }
            }
            if n < listen::RECV_BATCH {
                return;
            }
        }
    }

    /// One datagram (in `slot` at `d.range`) from a socket of `kind`.
    async fn datagram_in(&mut self, kind: Kind, slot: &mut [u8], d: Datagram) {
        match kind {
            Kind::Ike => {
                if let Some(data) = slot.get(d.range) {
                    self.ike
                        .handle_datagram(Instant::now(), d.local, d.remote, data);
                }
            }
            Kind::Natt => self.udp4500_in(slot, d).await,
            Kind::RawEsp => {
                if let Some(esp) = slot.get_mut(d.range) {
                    self.esp_in(esp, d.remote).await;
                }
            }
            Kind::L2tp => self.cleartext_l2tp(slot, d).await,
        }
    }

    async fn udp4500_in(&mut self, buf: &mut [u8], d: Datagram) {
        let Some(data) = buf.get_mut(d.range) else {
            return;
        };
        match esp::classify_udp4500(data) {
            Udp4500::Keepalive => {}
            Udp4500::Ike(msg) => {
                self.ike
                    .handle_datagram(Instant::now(), d.local, d.remote, msg);
                // An SA that this message completed must be in place for the ESP right behind
                // it in the same batch.
                self.follow_ike();
            }
            Udp4500::Esp(_) => self.esp_in(data, d.remote).await,
            Udp4500::Malformed => {}
        }
    }

    /// ESP from a client: the IPv4 packet inside goes to the TUN device.
    async fn esp_in(&mut self, packet: &mut [u8], from: SocketAddr) {
        let Some(gw) = self.gw.as_mut() else { return };
        let Some(range) = gw.esp_in(&mut self.ike, Instant::now(), packet, from) else {
            return;
        };
        if let Some(ip) = packet.get(range) {
            self.write_tun(ip).await;
        }
    }

    /// One IPv4 packet to the TUN device.
    async fn write_tun(&mut self, ip: &[u8]) {
        if let Some(tun) = &self.tun
            && let Err(e) = tun.send(ip).await
        {
            dropped!(self.send_errors, error = %e, "write to the TUN device failed");
        }
    }

    /// A datagram on the cleartext L2TP port.
    async fn cleartext_l2tp(&mut self, buf: &mut [u8], d: Datagram) {
        let Some(gw) = self.gw.as_mut() else { return };
        let Some(data) = buf.get_mut(d.range) else {
            return;
        };
        let Some(range) = gw.plain_in(Instant::now(), data, d.remote) else {
            return;
        };
        if let Some(ip) = data.get(range) {
            self.write_tun(ip).await;
        }
    }

    /// The packet read from the TUN device (`n` bytes in `tx`'s read slot) and whatever else
    /// is ready, up to a batch: each sealed for its client, then all sent.
    async fn tun_batch(&mut self, tx: &mut TxBatch, n: usize) {
        let mut len = Some(n);
        while let Some(n) = len.take() {
            self.tun_in(tx, n).await;
            len = match (&self.tun, tx.read_slot()) {
                (Some(t), Some(slot)) => t.try_recv(slot).ok(),
                _ => None,
            };
        }
        self.flush(tx).await;
    }

    /// Seals the packet in `tx`'s read slot (`n` bytes) for its client and keeps the datagram
    /// at the end of the batch.
    async fn tun_in(&mut self, tx: &mut TxBatch, n: usize) {
        let Some(gw) = self.gw.as_mut() else { return };
        let start = tx.used;
        let Some(room) = tx.buf.get_mut(start..) else {
            return;
        };
        match gw.tun_in(&mut self.ike, Instant::now(), room, n) {
            FromTun::Send(t) => {
                let t = t.clone();
                let Some((socket, from, to)) = self.route(&t.via) else {
                    dropped!(self.send_errors, via = ?t.via, "no socket for this local address");
                    return;
                };
                // Back to the end of the datagrams before it (the headers took less than the
                // headroom).
                room.copy_within(t.range.clone(), 0);
                let len = t.range.len();
                tx.out.push(Outgoing {
                    socket,
                    from,
                    to,
                    range: start..start + len,
                });
                tx.used += len;
            }
            // The answer lives in the gateway: written from there, with no copy.
            FromTun::Icmp(answer) => {
                if let Some(tun) = &self.tun
                    && let Err(e) = tun.send(answer).await
                {
                    dropped!(self.send_errors, error = %e, "write to the TUN device failed");
                }
            }
            FromTun::Dropped => {}
        }
    }

    /// Sends every datagram of `tx` in order: runs to one client over UDP as one GSO send, runs
    /// on a raw socket as one `sendmmsg`; then empties it.
    async fn flush(&mut self, tx: &mut TxBatch) {
        let mut rest = tx.out.as_slice();
        while let Some(first) = rest.first() {
            let Some(sock) = self.sockets.get_mut(first.socket) else {
                break;
            };
            let raw = sock.is_raw();
            let n = listen::send_run(rest, raw, sock.max_gso_segments()).max(1);
            let (run, after) = rest.split_at(n.min(rest.len()));
            self.batching.tx_calls += 1;
            self.batching.tx_datagrams += run.len() as u64;
            let r = if raw {
                sock.send_batch(&tx.buf, run).await
            } else {
                let bytes = first.range.start..run.last().map_or(first.range.end, |o| o.range.end);
                let data = tx.buf.get(bytes).unwrap_or(&[]);
                let segment = (n > 1).then(|| first.range.len());
                sock.send_segments(data, segment, first.from, first.to)
                    .await
            };
            if let Err(e) = r {
                dropped!(self.send_errors, to = %first.to, datagrams = n, error = %e, "send failed");
            }
            rest = after;
        }
        tx.clear();
    }

    /// The socket (index), source address and destination for a datagram sent `via`.
    fn route(&self, via: &Via) -> Option<(usize, IpAddr, SocketAddr)> {
        match *via {
            Via::Udp { local, remote } => Some((
                self.sockets.index_for_local(Kind::Natt, local.ip())?,
                local.ip(),
                remote,
            )),
            Via::RawEsp { local, remote } => Some((
                self.sockets.index_for_local(Kind::RawEsp, local)?,
                local,
                SocketAddr::new(remote, 0),
            )),
            // Test-only plain mode: the kernel picks the source address.
            Via::PlainL2tp { remote } => Some((
                self.sockets.index_for_family(Kind::L2tp, remote.ip())?,
                unspecified(remote.ip()),
                remote,
            )),
        }
    }

    /// Sends `buf[t.range]` where `t.via` says, from the local address it names.
    async fn send(&mut self, t: &Transmit, buf: &[u8]) {
        let Some(pkt) = buf.get(t.range.clone()) else {
            return;
        };
        let r = match self
            .route(&t.via)
            .and_then(|(i, from, to)| Some((self.sockets.get_mut(i)?, from, to)))
        {
            Some((s, from, to)) => s.send(pkt, from, to).await,
            None => Err(io::Error::other("no socket for this local address")),
        };
        if let Err(e) = r {
            dropped!(self.send_errors, via = ?t.via, error = %e, "send failed");
        }
    }

    async fn keepalives(&mut self) {
        // RFC 3948 §4: a host behind NAT keeps the mapping open with 0xFF keepalives.
        let Some(gw) = self.gw.as_ref() else { return };
        for (local, remote) in gw.keepalive_targets() {
            let r = match self.sockets.for_local(Kind::Natt, local.ip()) {
                Some(s) => s.send(&esp::NAT_KEEPALIVE, local.ip(), remote).await,
                None => Err(io::Error::other("no socket for this local address")),
            };
            if let Err(e) = r {
                dropped!(self.send_errors, %local, %remote, error = %e, "NAT keepalive not sent");
            }
        }
    }

    /// Sends what the cores produced, follows IKE's events, and starts authentication checks.
    async fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.ike.poll_transmit() {
                progressed = true;
                let kind = if t.local.port() == self.listen.natt_port {
                    Kind::Natt
                } else {
                    Kind::Ike
                };
                let r = match self.sockets.for_local(kind, t.local.ip()) {
                    Some(s) => s.send(&t.data, t.local.ip(), t.remote).await,
                    None => Err(io::Error::other("no socket for this local address")),
                };
                if let Err(e) = r {
                    warn!(local = %t.local, remote = %t.remote, error = %e, "send failed");
                }
            }
            progressed |= self.follow_ike();
            let mut txbuf = std::mem::take(&mut self.txbuf);
            while let Some(t) = self
                .gw
                .as_mut()
                .and_then(|gw| gw.poll_transmit(&mut self.ike, &mut txbuf))
            {
                progressed = true;
                self.send(&t, &txbuf).await;
            }
            self.txbuf = txbuf;
            while let Some(ev) = self
                .gw
                .as_mut()
                .and_then(|gw| gw.sessions_mut().poll_event())
            {
                progressed = true;
                match ev {
                    session::Event::Authenticate {
                        session,
                        request,
                        nas_port,
                        acct_session_id,
                    } => {
                        self.authenticate(session, request, nas_port, acct_session_id);
                    }
                    session::Event::Up {
                        session,
                        address,
                        start,
                        interim_interval,
                        ..
                    } => {
                        if let (Some(aaa), Some(gw)) = (self.aaa.as_mut(), self.gw.as_ref()) {
                            aaa.session_up(gw, Instant::now(), session, &start, interim_interval);
                        }
                        self.route_outside_pool(session, address);
                    }
                    session::Event::Down { session, stop, .. } => {
                        if let Some(aaa) = self.aaa.as_mut() {
                            match &stop {
                                Some(stop) => aaa.session_down(Instant::now(), session, stop),
                                None => {
                                    aaa.eap_states.remove(&session);
                                }
                            }
                        }
                        if let Some(address) = self.host_routes.remove(&session) {
                            self.host_route("del", address);
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        if let Some(aaa) = self.aaa.as_mut() {
            aaa.send(Instant::now());
        }
    }

    /// Hands IKE's events (SAs up and down) to the data plane; returns whether there were any.
    fn follow_ike(&mut self) -> bool {
        let now = Instant::now();
        let mut any = false;
        while let Some(ev) = self.ike.poll_event() {
            any = true;
            if let Some(gw) = self.gw.as_mut() {
                gw.on_ike_event(now, ev);
            }
        }
        any
    }

    /// A user's static address outside the pool's routes gets a host route to the TUN device
    /// while its session lasts (the pool's own ranges are routed at start).
    fn route_outside_pool(&mut self, session: SessionRef, address: Ipv4Addr) {
        let Some(gw) = &self.gw else { return };
        if self.tun.is_none() || tun::covered(&gw.config().routes, address) {
            return;
        }
        self.host_routes.insert(session, address);
        self.host_route("replace", address);
    }

    /// `ip route ACTION address/32 dev <tun>`, off the loop (it runs a program).
    fn host_route(&self, action: &'static str, address: Ipv4Addr) {
        let Some(dev) = self.tun.as_ref().map(|t| t.name().to_string()) else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            if tun::ip_route(action, &dev, address, 32).is_ok() {
                info!(%address, device = %dev, action, "host route for a static address outside the pool");
            }
        });
    }

    fn authenticate(
        &mut self,
        session: SessionRef,
        request: pppd_lite::AuthRequest,
        nas_port: u32,
        acct_session_id: String,
    ) {
        let (Some(aaa), Some(gw)) = (self.aaa.as_mut(), self.gw.as_ref()) else {
            return;
        };
        let refusal = if aaa
            .accounting
            .as_ref()
            .is_some_and(|a| a.must_block_new_sessions())
        {
            warn!(
                peer = session.peer,
                "session refused: the accounting spool is full and accounting.block_when_full is set"
            );
            true
        } else if self.cert_user_match
            && let Some(owner) = gw.cert_user(session.peer)
            && !owner.eq_ignore_ascii_case(pppd_lite::mschapv2::strip_domain(&request.user))
        {
            warn!(
                peer = session.peer,
                user = %request.user,
                certificate_user = %owner,
                "authentication refused: the PPP user is not the one the IPsec certificate was \
                 issued for (certificates.require_user_match)"
            );
            true
        } else {
            false
        };
        if refusal {
            let _ = self.decisions_tx.send((
                session,
                request.id,
                Decision::reject(crate::aaa::REJECTED),
                None,
            ));
            return;
        }
        let ctx = aaa_io::Aaa::context(gw, session, nas_port, acct_session_id);
        let state = aaa.eap_states.remove(&session);
        let backends = aaa.backends.clone();
        let tx = self.decisions_tx.clone();
        let id = request.id;
        // The backends block (SQLite, PAM) or wait (RADIUS): off the control loop.
        tokio::spawn(async move {
            let (decision, state) = auth::decide(backends, ctx, request, state).await;
            let _ = tx.send((session, id, decision, state));
        });
    }

    /// An accounting outcome or a Disconnect/CoA request.
    fn aaa_incoming(&mut self, incoming: aaa_io::Incoming) {
        let now = Instant::now();
        match incoming {
            aaa_io::Incoming::Acct(Some(o)) => {
                if let Some(aaa) = self.aaa.as_mut() {
                    aaa.acct_outcome(now, o);
                }
            }
            aaa_io::Incoming::Acct(None) => {}
            aaa_io::Incoming::DynAuth(Some(call)) => match self.gw.as_mut() {
                Some(gw) => aaa_io::dynauth(gw, now, call),
                None => {
                    let _ = call.reply.send(crate::radius::dynauth::Outcome::Nak(
                        crate::radius::dynauth::ErrorCause::SessionContextNotFound,
                    ));
                }
            },
            aaa_io::Incoming::DynAuth(None) => {
                if let Some(a) = self.aaa.as_mut() {
                    a.dynauth = None;
                }
            }
        }
    }

    /// Applies the settings the reloader reads; users need nothing (each login reads them).
    fn reload(&mut self) -> Response {
        let Some(reloader) = self.reloader.as_mut() else {
            return Response::Error {
                message: "this server was started without a reloadable configuration".into(),
            };
        };
        match reloader() {
            Ok(r) => {
                self.ike.set_config(r.ike);
                if let Some(gw) = self.gw.as_mut() {
                    gw.sessions_mut().set_ppp_template(r.ppp);
                    gw.reconfigure(r.dataplane);
                }
                info!(summary = %r.summary, "configuration reloaded");
                Response::Reloaded { summary: r.summary }
            }
            Err(e) => {
                warn!(error = %e, "configuration NOT reloaded: the running settings stay");
                Response::Error {
                    message: format!("not reloaded (the running settings stay): {e}"),
                }
            }
        }
    }

    fn admin_request(&mut self, request: Request) -> Response {
        let now = Instant::now();
        match request {
            Request::Status => Response::Status(self.status(now)),
            Request::Sessions => {
                let now_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let sessions = self
                    .gw
                    .as_ref()
                    .map(|gw| gw.sessions_view(now))
                    .unwrap_or_default()
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
                    .collect();
                Response::Sessions { sessions }
            }
            Request::Disconnect { target } => match self.gw.as_mut() {
                Some(gw) => Response::Disconnected {
                    count: gw.disconnect(now, target.trim()),
                },
                None => Response::Disconnected { count: 0 },
            },
            Request::Reload => self.reload(),
            Request::Metrics => Response::Metrics(Box::new(self.metrics(now))),
        }
    }

    fn metrics(&self, now: Instant) -> crate::admin::MetricsInfo {
        let ike = self.ike.stats();
        let mut m = crate::admin::MetricsInfo {
            status: self.status(now),
            failures: vec![
                (
                    "ike_auth_failed".into(),
                    ike.auth_failed + ike.hash_mismatch,
                ),
                ("ike_no_proposal_chosen".into(), ike.no_proposal_chosen),
                ("ike_malformed".into(), ike.malformed),
            ],
            ..Default::default()
        };
        if let Some(gw) = &self.gw {
            let s = gw.sessions().stats();
            m.connects_total = s.up;
            m.failures.extend([
                ("ppp_auth_rejected".into(), s.auth_rejected),
                ("over_session_limit".into(), s.over_limit),
                ("pool_exhausted".into(), s.pool_exhausted),
            ]);
            m.bytes_in = s.ended_bytes_in;
            m.bytes_out = s.ended_bytes_out;
            m.packets_in = s.ended_packets_in;
            m.packets_out = s.ended_packets_out;
            for live in gw.sessions().iter() {
                m.bytes_in += live.traffic.bytes_in;
                m.bytes_out += live.traffic.bytes_out;
                m.packets_in += live.traffic.packets_in;
                m.packets_out += live.traffic.packets_out;
            }
        }
        if let Some(acct) = self.aaa.as_ref().and_then(|a| a.accounting.as_ref()) {
            m.spool_depth = acct.spool().depth();
        }
        m
    }

    fn status(&self, now: Instant) -> StatusInfo {
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
            ("send_errors".into(), self.send_errors),
            ("io_rx_datagrams".into(), self.batching.rx_datagrams),
            ("io_rx_calls".into(), self.batching.rx_calls),
            ("io_tx_datagrams".into(), self.batching.tx_datagrams),
            ("io_tx_calls".into(), self.batching.tx_calls),
        ];
        let (mut up, mut total, mut used, mut size) = (0, 0, 0, 0);
        if let Some(gw) = &self.gw {
            let d = gw.stats();
            let s = gw.sessions().stats();
            let pool = gw.sessions().pool();
            used = pool.in_use();
            size = pool.capacity();
            total = gw.sessions().len();
            up = gw.sessions().iter().filter(|s| s.up).count();
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
                ("ip_spoofed_dropped".into(), s.spoofed),
                ("l2tp_tunnels".into(), gw.tunnels() as u64),
            ]);
        }
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: now.saturating_duration_since(self.started).as_secs(),
            sessions_up: up,
            sessions_total: total,
            ike_sas: self.ike.phase1_count(),
            ipsec_sas: self.gw.as_ref().map_or(0, Gateway::sa_count),
            pool_used: used,
            pool_size: size,
            counters,
        }
    }

    pub fn ike(&self) -> &Responder {
        &self.ike
    }

    /// The data plane, once added.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gw.as_ref()
    }
}
