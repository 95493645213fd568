//! The tokio shell: it owns the sockets, the TUN device and the clock, and drives the sans-IO
//! [`Server`] (the IKE responder, the sessions and the rules between them). It moves datagrams,
//! runs the authentication backends, accounting and timers; it decides nothing about the
//! protocols.
//!
//! The control thread (this [`Shell`]) carries IKE on UDP 500 and, through the workers, 4500;
//! the data-plane workers ([`workers`]) carry ESP over UDP 4500 and raw protocol 50 (when the
//! process may open a raw socket) and the TUN device, on every address the server listens on,
//! IPv4 and IPv6 ([`listen`]): each reply leaves from the local address its request came to.
//! The control thread tells the workers of every SA and session change; they hand it what is
//! not plain forwarding. Credentials are checked off the loop (SQLite is a blocking call) and
//! the answers come back through a channel.
//!
//! Cleartext L2TP on UDP 1701 is dropped and logged, unless the test-only plain mode is on.

pub mod aaa_io;
pub mod acct_thread;
pub mod admin;
pub mod auth;
pub mod handshake;
pub mod listen;
pub mod radius;
mod tun;
pub mod web;
pub mod workers;

pub use tun::ip_route;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::aaa::{Decision, local::UserStore};
use crate::admin::{Request, Response};
use crate::dataplane::{self, Gateway, Via};
use crate::esp;
use crate::ike::{self, Responder};
use crate::l2tp::SessionRef;
use crate::server::{self, Server, ShellFacts, Transmit};
use crate::session::{self, Sessions};
use listen::{Datagram, Kind, Listeners, RecvBatch};
use roadgate_core::dropped;
use workers::{FromWorker, Workers};

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
    /// Receive and send buffer of every socket, bytes (0: the kernel's default).
    pub socket_buffer: usize,
    /// Data-plane worker threads (0: one per core).
    pub workers: usize,
}

/// The sockets' buffers unless configured: 8 MiB, as SoftEther sets; the kernel's 208 KiB
/// default lost a fifth of a client's packets at 1 Gbit/s.
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;

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

/// The unspecified address of `ip`'s family.
fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// How long a shutdown waits for clients to acknowledge StopCCN before the IPsec Deletes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Datagrams taken from one socket before the others get a turn.
const BATCH: usize = workers::BATCH;

/// A buffer for one sealed control datagram with the data plane's headroom and tailroom.
fn packet_buffer() -> Vec<u8> {
    vec![0u8; workers::TUN_SLOT]
}

/// An authentication answer for a session: the request id, the decision and the RADIUS
/// State of an EAP conversation.
type Answer = (SessionRef, u64, Decision, Option<Vec<u8>>);

/// The running shell.
pub struct Shell {
    /// The protocol cores and the rules between them.
    server: Server,
    /// The threads that run the handshakes' Diffie-Hellman and signature work.
    handshakes: handshake::HandshakePool,
    listen: Listen,
    /// The control thread's sockets (IKE, cleartext L2TP), on every address.
    sockets: Listeners,
    /// The data-plane workers, and what they hand this thread.
    workers: Workers,
    from_workers: tokio::sync::mpsc::Receiver<FromWorker>,
    /// The TUN device's name, once it is open.
    tun_name: Option<String>,
    /// The authentication chain, accounting and dynamic authorization.
    aaa: Option<aaa_io::Aaa>,
    decisions_tx: tokio::sync::mpsc::UnboundedSender<Answer>,
    decisions_rx: tokio::sync::mpsc::UnboundedReceiver<Answer>,
    /// Scratch buffer for sealed control datagrams.
    txbuf: Vec<u8>,
    /// IKE datagrams dropped because a socket refused them.
    send_errors: u64,
    /// Requests from the admin socket, and its path (removed at exit).
    admin: Option<tokio::sync::mpsc::Receiver<admin::Call>>,
    /// Another way into `admin` (the web UI's).
    admin_tx: Option<tokio::sync::mpsc::Sender<admin::Call>>,
    /// The RADIUS client's per-server figures.
    radius_metrics: Vec<radius::RadiusMetricsHandle>,
    admin_path: Option<std::path::PathBuf>,
    /// Reads the configuration again (SIGHUP, `roadgate reload`).
    reloader: Option<Reloader>,
    started: Instant,
    /// The checks of the start (`roadgate doctor`), added to by tasks that finish later (the
    /// RADIUS probes).
    findings: Arc<std::sync::Mutex<Vec<crate::doctor::Finding>>>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("listen", &self.listen)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A data plane without a TUN device and with a small pool, for a shell that serves no
/// sessions of its own ([`Shell::bind_all`] before [`Shell::with_sessions`]; the test echo).
fn bare_gateway(test_echo: bool) -> io::Result<Gateway> {
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
    gw.set_test_echo(test_echo);
    Ok(gw)
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
        let sockets = Listeners::bind_control(&listen, &addrs)?;
        let n = match listen.workers {
            0 => workers::default_workers(),
            n => n,
        };
        let (to_control, from_workers) = tokio::sync::mpsc::channel(workers::TO_CONTROL_QUEUE);
        let gateway = bare_gateway(listen.test_echo)?;
        let workers =
            Workers::start(n, &listen, &addrs, gateway.worker_config(), to_control).await?;
        if listen.plain_l2tp {
            warn!(
                port = listen.l2tp_port,
                "TEST MODE: L2TP is accepted WITHOUT IPsec; passwords cross the network unprotected"
            );
        }
        let (decisions_tx, decisions_rx) = tokio::sync::mpsc::unbounded_channel();
        let threads = match cfg.handshake_threads {
            0 => handshake::default_threads(),
            n => n,
        };
        let handshakes = handshake::HandshakePool::start(threads, cfg.handshake_queue)?;
        info!(
            threads,
            queue = cfg.handshake_queue,
            "handshake pool: Diffie-Hellman and signatures off the forwarding thread"
        );
        let mut ike = Responder::new(cfg);
        ike.set_unix_time(Instant::now(), aaa_io::unix_now());
        ike.set_deferred_jobs(true);
        let mut server = Server::new(ike, gateway, server::Policy::default());
        server.set_external_workers(true);
        Ok(Self {
            server,
            handshakes,
            listen,
            sockets,
            workers,
            from_workers,
            tun_name: None,
            aaa: None,
            decisions_tx,
            decisions_rx,
            txbuf: packet_buffer(),
            send_errors: 0,
            admin: None,
            admin_tx: None,
            radius_metrics: Vec::new(),
            admin_path: None,
            reloader: None,
            started: Instant::now(),
            findings: Arc::default(),
        })
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
            let queues = tun::open(&dataplane, self.workers.len())?;
            self.tun_name = queues.first().map(|q| q.name().to_string());
            self.workers.give_tun(workers::tun_fds(&queues)?);
        } else {
            warn!("no TUN device (data plane off): clients connect but pass no traffic");
        }
        let mut gw = Gateway::new(dataplane, sessions);
        gw.set_plain_l2tp(self.listen.plain_l2tp);
        gw.set_test_echo(self.listen.test_echo);
        gw.set_external_workers(true);
        self.workers
            .broadcast(&dataplane::worker::Update::Config(gw.worker_config()));
        *self.server.gateway_mut() = gw;
        let policy = server::Policy {
            tun: self.tun_name.is_some(),
            ..self.server.policy()
        };
        self.server.set_policy(policy);
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
        if chain.iter().any(|b| {
            matches!(
                b,
                crate::aaa::BackendKind::Pam | crate::aaa::BackendKind::System
            )
        }) {
            // Said once at start: PAM is loaded at run time and may be missing on this machine.
            match crate::aaa::pam::available() {
                Ok(()) => info!("PAM: libpam loaded for the pam/system backends"),
                Err(e) => warn!(
                    "{e}; the pam/system backends refuse every check and a chain passes to its next backend"
                ),
            }
        }
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
            aaa.start_accounting(acct, to_radius)?;
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

    /// A channel to the control loop's admin requests (after [`Shell::with_admin_socket`]).
    pub fn admin_calls(&self) -> Option<tokio::sync::mpsc::Sender<admin::Call>> {
        self.admin_tx.clone()
    }

    /// Whether PPP must authenticate the user that the IPsec peer's user certificate was
    /// issued for (`certificates.require_user_match`).
    pub fn with_cert_user_match(mut self, on: bool) -> Self {
        let policy = server::Policy {
            cert_user_match: on,
            ..self.server.policy()
        };
        self.server.set_policy(policy);
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
        self.server.shutdown_sessions(Instant::now());
        self.drain().await;
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        if self.server.tunnels() > 0 {
            self.event_loop(&mut grace, true).await?;
        }
        self.server.shutdown_ike(Instant::now());
        self.drain().await;
        if let Some(aaa) = self.aaa.as_mut() {
            aaa.shutdown(SHUTDOWN_GRACE).await;
        }
        if let Some(p) = &self.admin_path {
            let _ = std::fs::remove_file(p);
        }
        self.workers.stop().await;
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
        let mut keepalive = tokio::time::interval(Duration::from_secs(20));
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // Which socket is looked at first, so that a busy one does not starve the others.
        let mut turn = 0usize;
        loop {
            turn = turn.wrapping_add(1);
            let deadline = [self.server.poll_timeout()]
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
                m = self.from_workers.recv() => {
                    if let Some(m) = m {
                        self.worker_message(m).await;
                    }
                }
                done = self.handshakes.next() => {
                    if let Some(done) = done {
                        self.server.job_done(Instant::now(), done);
                    }
                }
                d = self.decisions_rx.recv() => {
                    if let Some((session, id, decision, state)) = d {
                        self.server.authenticated(Instant::now(), session, id, decision, state);
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
                    self.server.ike_mut().set_unix_time(now, aaa_io::unix_now());
                    self.server.handle_timeout(now);
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
            if until_tunnels_closed && self.server.tunnels() == 0 {
                return Ok(());
            }
        }
    }

    /// The datagrams waiting on socket `index` (of `kind`), up to a batch: taken with
    /// `recvmmsg`, each slot cut into the datagrams GRO put together.
    async fn socket_batch(&mut self, index: usize, kind: Kind, rx: &mut RecvBatch) {
        let mut taken = 0;
        while taken < BATCH {
            let Some(got) = self.sockets.receive(index, rx) else {
                return;
            };
            taken += got.segments;
            for k in 0..got.datagrams {
                if let Some((data, d)) = rx.datagram_mut(k) {
                    self.datagram_in(kind, data, d).await;
                }
            }
            if got.slots < listen::RECV_BATCH {
                return;
            }
        }
    }

    /// One datagram (`data`, which `d` describes) from a socket of `kind`.
    async fn datagram_in(&mut self, kind: Kind, data: &mut [u8], d: Datagram) {
        let now = Instant::now();
        let ip = match kind {
            Kind::Ike => {
                self.server.handle_ike(now, d.local, d.remote, data);
                None
            }
            // The workers own these sockets.
            Kind::Natt | Kind::RawEsp => None,
            Kind::L2tp => self.server.handle_plain_l2tp(now, data, d.remote),
        };
        if let Some(ip) = ip.and_then(|r| data.get(r)) {
            self.workers.tun_write(ip.to_vec());
        }
    }

    /// What a worker hands over: IKE on the NAT-T port, authentic control traffic, ESP for an
    /// SPI it does not know, an SA at its limit, cleartext L2TP to send.
    async fn worker_message(&mut self, m: FromWorker) {
        let now = Instant::now();
        let (mut data, ip) = match m {
            FromWorker::Ike {
                local,
                remote,
                data,
            } => {
                self.server.handle_ike(now, local, remote, &data);
                return;
            }
            FromWorker::Control {
                client,
                spi,
                mut data,
            } => {
                let ip = self
                    .server
                    .handle_worker_datagram(now, client, spi, &mut data);
                (data, ip)
            }
            FromWorker::UnknownEsp { from, mut data } => {
                let ip = self.server.handle_esp(now, &mut data, from);
                (data, ip)
            }
            FromWorker::Note(n) => {
                self.server.handle_worker_note(now, n);
                return;
            }
            FromWorker::Plain { remote, data } => {
                let t = Transmit {
                    via: Via::PlainL2tp { remote },
                    range: 0..data.len(),
                };
                self.send(&t, &data).await;
                return;
            }
        };
        if let Some(r) = ip {
            data.truncate(r.end);
            data.drain(..r.start);
            self.workers.tun_write(data);
        }
    }

    /// The socket (index), source address and destination for a datagram sent `via`.
    /// `None` for what the workers send (the NAT-T port, raw ESP).
    fn route(&self, via: &Via) -> Option<(usize, IpAddr, SocketAddr)> {
        match *via {
            Via::Ike { local, remote } if local.port() != self.listen.natt_port => Some((
                self.sockets.index_for_local(Kind::Ike, local.ip())?,
                local.ip(),
                remote,
            )),
            Via::Ike { .. } | Via::Udp { .. } | Via::RawEsp { .. } => None,
            // Test-only plain mode: the kernel picks the source address.
            Via::PlainL2tp { remote } => Some((
                self.sockets.index_for_family(Kind::L2tp, remote.ip())?,
                unspecified(remote.ip()),
                remote,
            )),
        }
    }

    /// Sends `buf[t.range]` where `t.via` says, from the local address it names: on this
    /// thread's sockets, or through a worker's.
    async fn send(&mut self, t: &Transmit, buf: &[u8]) {
        let Some(pkt) = buf.get(t.range.clone()) else {
            return;
        };
        let through_worker = match t.via {
            Via::Ike { local, remote } if local.port() == self.listen.natt_port => {
                Some((Kind::Natt, local.ip(), remote))
            }
            Via::Udp { local, remote } => Some((Kind::Natt, local.ip(), remote)),
            Via::RawEsp { local, remote } => {
                Some((Kind::RawEsp, local, SocketAddr::new(remote, 0)))
            }
            Via::Ike { .. } | Via::PlainL2tp { .. } => None,
        };
        if let Some((kind, from, to)) = through_worker {
            self.workers.send(kind, from, to, pkt.to_vec());
            return;
        }
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
        for (local, remote) in self.server.keepalive_targets() {
            self.workers
                .send(Kind::Natt, local.ip(), remote, esp::NAT_KEEPALIVE.to_vec());
        }
    }

    /// Sends what the server produced and does what it asks (authentication checks,
    /// accounting, host routes), until it has nothing more.
    async fn drain(&mut self) {
        loop {
            let mut progressed = false;
            let mut txbuf = std::mem::take(&mut self.txbuf);
            while let Some(t) = self.server.poll_transmit(Instant::now(), &mut txbuf) {
                progressed = true;
                self.send(&t, &txbuf).await;
            }
            self.txbuf = txbuf;
            while let Some(ev) = self.server.poll_event() {
                progressed = true;
                self.server_event(ev);
            }
            while let Some(job) = self.server.poll_job() {
                self.handshakes.submit(job);
            }
            while let Some(u) = self.server.poll_update() {
                self.workers.broadcast(&u);
            }
            if !progressed {
                break;
            }
        }
        if let Some(aaa) = self.aaa.as_ref() {
            self.server
                .set_accounting_full(aaa.must_block_new_sessions());
        }
    }

    /// What the server asks of the shell.
    fn server_event(&mut self, ev: server::Event) {
        match ev {
            server::Event::Authenticate {
                session,
                request,
                context,
                eap_state,
            } => {
                let Some(aaa) = self.aaa.as_ref() else {
                    return;
                };
                let backends = aaa.backends.clone();
                let tx = self.decisions_tx.clone();
                let id = request.id;
                // The backends block (SQLite, PAM) or wait (RADIUS): off the control loop.
                tokio::spawn(async move {
                    let (decision, state) =
                        auth::decide(backends, context, request, eap_state).await;
                    let _ = tx.send((session, id, decision, state));
                });
            }
            server::Event::SessionUp {
                session,
                start,
                interim_interval,
                ..
            } => {
                if let Some(aaa) = self.aaa.as_mut() {
                    aaa.session_up(self.server.gateway(), session, &start, interim_interval);
                }
            }
            server::Event::SessionDown { stop, .. } => {
                if let (Some(aaa), Some(stop)) = (self.aaa.as_mut(), stop) {
                    aaa.session_down(&stop);
                }
            }
            server::Event::HostRoute { address, add } => {
                self.host_route(if add { "replace" } else { "del" }, address);
            }
        }
    }

    /// `ip route ACTION address/32 dev <tun>`, off the loop (it runs a program).
    fn host_route(&self, action: &'static str, address: Ipv4Addr) {
        let Some(dev) = self.tun_name.clone() else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            if tun::ip_route(action, &dev, address, 32).is_ok() {
                info!(%address, device = %dev, action, "host route for a static address outside the pool");
            }
        });
    }

    /// An accounting outcome or a Disconnect/CoA request.
    fn aaa_incoming(&mut self, incoming: aaa_io::Incoming) {
        let now = Instant::now();
        match incoming {
            aaa_io::Incoming::Counters(Some(ids)) => {
                if let Some(aaa) = self.aaa.as_ref() {
                    aaa.answer_counters(self.server.gateway(), now, &ids);
                }
            }
            aaa_io::Incoming::Counters(None) => {}
            aaa_io::Incoming::DynAuth(Some(call)) => {
                let outcome = self.server.dynamic_authorization(now, &call.request);
                let _ = call.reply.send(outcome);
            }
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
                self.server.reconfigure(r.ike, r.ppp, r.dataplane);
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
        self.server
            .gateway_mut()
            .set_worker_stats(self.workers.stats());
        match request {
            Request::Status => Response::Status(self.server.status(&self.facts(now))),
            Request::Sessions => Response::Sessions {
                sessions: self.server.sessions(now, aaa_io::unix_now()),
            },
            Request::Disconnect { target } => Response::Disconnected {
                count: self.server.disconnect(now, &target),
            },
            Request::Reload => self.reload(),
            Request::Metrics => Response::Metrics(Box::new(self.server.metrics(&self.facts(now)))),
        }
    }

    /// What only the shell knows, for the status and metrics.
    fn facts(&self, now: Instant) -> ShellFacts {
        ShellFacts {
            uptime_s: now.saturating_duration_since(self.started).as_secs(),
            counters: vec![
                ("send_errors".into(), self.send_errors),
                (
                    "spool_errors".into(),
                    self.aaa.as_ref().map_or(0, aaa_io::Aaa::spool_errors),
                ),
                (
                    "udp_rcvbuf_drops".into(),
                    self.sockets.drops() + self.workers.drops(),
                ),
                (
                    "socket_receive_buffer_bytes".into(),
                    (self.sockets.receive_buffer() as u64).min(self.workers.receive_buffer()),
                ),
            ]
            .into_iter()
            .chain(self.workers.counters())
            .collect(),
            spool_depth: self.aaa.as_ref().map_or(0, aaa_io::Aaa::spool_depth),
            findings: self
                .findings
                .lock()
                .map(|f| f.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(
                    self.radius_metrics
                        .iter()
                        .flat_map(|h| crate::doctor::radius_learned(&h.snapshot())),
                )
                .collect(),
        }
    }

    /// Where the start's checks are kept: `roadgate status`, `roadgate doctor` and the
    /// dashboard show them.
    pub fn findings(&self) -> Arc<std::sync::Mutex<Vec<crate::doctor::Finding>>> {
        Arc::clone(&self.findings)
    }

    /// The IKE ports this shell has bound, as a check.
    pub fn port_findings(&self) -> Vec<crate::doctor::Finding> {
        // The IKE port is two sockets of one SO_REUSEPORT group per address (listen.rs).
        let mut bound = self.sockets.bound(listen::Kind::Ike);
        bound.sort();
        bound.dedup();
        let ike: Vec<String> = bound.iter().map(ToString::to_string).collect();
        if ike.is_empty() {
            return vec![crate::doctor::Finding::problem(
                "no UDP socket for IKE is bound: no client can connect",
            )];
        }
        vec![crate::doctor::Finding::ok(format!(
            "UDP {} (IKE) and {} (NAT-T, on {} data-plane worker{}) bound",
            ike.join(", "),
            self.listen.natt_port,
            self.workers.len(),
            if self.workers.len() == 1 { "" } else { "s" }
        ))]
    }

    /// The sans-IO server this shell drives.
    pub fn server(&self) -> &Server {
        &self.server
    }
}
