//! The tokio shell: it owns the sockets and the clock and drives the sans-IO cores.
//!
//! It carries IKE on UDP 500 and 4500 (non-ESP marker demux, NAT keepalives), ESP over raw
//! protocol 50 (when the process may open a raw socket) and over UDP 4500, the IPsec SA table,
//! and the session layer (L2TP LNS + PPP + local users): decrypted UDP/1701 goes to
//! [`Sessions`], whose L2TP datagrams go back through the client's newest outbound SA.
//!
//! An IPsec client is one [`PeerId`]: its first IPsec SA gets a new id, and an SA that replaces
//! another (a rekey) inherits it, so an L2TP tunnel outlives rekeys and two clients behind one
//! NAT are two peers. When a client's last SA goes, its tunnels end.
//!
//! Cleartext L2TP on UDP 1701 is dropped and logged, unless the test-only plain mode is on.
//! The TUN data plane is not built yet: IP packets from clients are counted and dropped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::aaa::{self, Decision, local::UserStore};
use crate::esp::{self, InboundSa, OutboundSa, Udp4500};
use crate::ike::{self, ChildSa, Event, Responder};
use crate::l2tp::{PeerId, SessionRef};
use crate::session::{self, Sessions};

/// The L2TP port (RFC 2661 §8.1).
pub const L2TP_PORT: u16 = 1701;

/// Plain-mode peers get ids from here up, apart from IPsec clients' ids.
const PLAIN_PEER_BASE: PeerId = 1 << 48;

/// Where to listen.
#[derive(Debug, Clone)]
pub struct Listen {
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

/// Counters of the ESP path (no secrets).
#[derive(Debug, Default, Clone)]
pub struct EspStats {
    pub decrypted: u64,
    pub unknown_spi: u64,
    pub auth_failed: u64,
    pub replayed: u64,
    pub malformed: u64,
    pub keepalives: u64,
}

struct SaPair {
    inbound: InboundSa,
    outbound: OutboundSa,
    child: ChildSa,
    last_activity_report: Instant,
    /// The IPsec client (L2TP peer) this SA belongs to.
    client: PeerId,
    /// Whether the first decrypted packet has been logged.
    first_logged: bool,
}

/// The L2TP side: sessions and where credentials are checked.
struct L2tpSide {
    sessions: Sessions,
    users: Arc<std::sync::Mutex<UserStore>>,
    decisions_tx: tokio::sync::mpsc::UnboundedSender<(SessionRef, u64, Decision)>,
    decisions_rx: tokio::sync::mpsc::UnboundedReceiver<(SessionRef, u64, Decision)>,
    /// Inbound SPIs per IPsec client, oldest first.
    clients: HashMap<PeerId, Vec<u32>>,
    next_client: PeerId,
    /// Plain mode: peers by address and back.
    plain_peers: HashMap<SocketAddr, PeerId>,
    plain_addrs: HashMap<PeerId, SocketAddr>,
    /// Cleartext L2TP dropped (plain mode off).
    cleartext_dropped: u64,
}

/// The running shell.
pub struct Shell {
    ike: Responder,
    listen: Listen,
    udp500: UdpSocket,
    udp4500: UdpSocket,
    raw: Option<AsyncFd<Socket>>,
    sas: HashMap<u32, SaPair>,
    udp1701: Option<UdpSocket>,
    l2tp: Option<L2tpSide>,
    /// Test-echo datagrams waiting to be sent (inbound SPI, UDP datagram).
    echo: Vec<(u32, Vec<u8>)>,
    pub esp_stats: EspStats,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("listen", &self.listen)
            .field("sas", &self.sas.len())
            .finish_non_exhaustive()
    }
}

fn udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

#[allow(unsafe_code)]
fn raw_esp(addr: IpAddr) -> io::Result<AsyncFd<Socket>> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(addr, 0)),
        Type::RAW,
        Some(Protocol::from(50)),
    )?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(addr, 0).into())?;
    // SAFETY: `Socket` owns its file descriptor, keeps it open until it is dropped, and
    // `as_raw_fd` always returns that same descriptor; the AsyncFd owns the Socket.
    unsafe { AsyncFd::register(s) }.map_err(io::Error::from)
}

/// The local address the kernel would use towards `remote` (for a wildcard listener).
fn route_source(remote: SocketAddr) -> Option<IpAddr> {
    let unspecified: SocketAddr = match remote {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = StdUdpSocket::bind(unspecified).ok()?;
    s.connect(remote).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// A UDP datagram's source port, destination port and payload (RFC 768), if it has a header.
fn split_udp(datagram: &[u8]) -> Option<(u16, u16, &[u8])> {
    Some((
        u16::from_be_bytes([*datagram.first()?, *datagram.get(1)?]),
        u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]),
        datagram.get(8..)?,
    ))
}

/// What a decrypted transport-mode datagram looks like, for the log.
pub fn describe_inner(next_header: u8, payload: &[u8]) -> String {
    if next_header != 17 {
        return format!("protocol {next_header}, {} bytes", payload.len());
    }
    let Some((sport, dport, body)) = split_udp(payload) else {
        return format!("truncated UDP, {} bytes", payload.len());
    };
    format!(
        "UDP {sport}->{dport}, {} bytes: {}",
        body.len(),
        describe_l2tp(body)
    )
}

/// A peek at an L2TP header (RFC 2661 §3.1) and, for control messages, the Message Type AVP.
pub fn describe_l2tp(b: &[u8]) -> String {
    let Some(flags) = b.get(0..2).map(|f| u16::from_be_bytes([f[0], f[1]])) else {
        return "not L2TP".into();
    };
    if flags & 0x000f != 2 {
        return format!("not L2TPv2 (version {})", flags & 0xf);
    }
    let control = flags & 0x8000 != 0;
    if !control {
        return "L2TP data message".into();
    }
    // Control messages carry L and S: flags(2) length(2) tunnel(2) session(2) Ns(2) Nr(2), then AVPs.
    let tunnel = b.get(4..6).map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
    let Some(avp) = b.get(12..) else {
        return format!("L2TP control, tunnel {tunnel}, no AVPs (ZLB)");
    };
    if avp.len() < 8 {
        return format!("L2TP control, tunnel {tunnel}, ZLB acknowledgement");
    }
    let attr = u16::from_be_bytes([avp[4], avp[5]]);
    let vendor = u16::from_be_bytes([avp[2], avp[3]]);
    let mtype = u16::from_be_bytes([avp[6], avp[7]]);
    if vendor != 0 || attr != 0 {
        return format!("L2TP control, tunnel {tunnel}, first AVP is not Message Type");
    }
    let name = match mtype {
        1 => "SCCRQ",
        2 => "SCCRP",
        3 => "SCCCN",
        4 => "StopCCN",
        6 => "HELLO",
        10 => "ICRQ",
        11 => "ICRP",
        12 => "ICCN",
        14 => "CDN",
        _ => "other",
    };
    format!("L2TP control message {name} (type {mtype}), tunnel {tunnel}")
}

impl Shell {
    pub async fn bind(cfg: Arc<ike::Config>, listen: Listen) -> io::Result<Self> {
        let udp500 = udp(SocketAddr::new(listen.addr, listen.ike_port))?;
        let udp4500 = udp(SocketAddr::new(listen.addr, listen.natt_port))?;
        let raw = if listen.raw_esp {
            match raw_esp(listen.addr) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(error = %e, "cannot open a raw ESP socket (needs CAP_NET_RAW): only UDP-encapsulated ESP will work");
                    None
                }
            }
        } else {
            None
        };
        info!(
            ike = %SocketAddr::new(listen.addr, listen.ike_port),
            natt = %SocketAddr::new(listen.addr, listen.natt_port),
            raw_esp = raw.is_some(),
            "listening"
        );
        let udp1701 = match listen.l2tp_port {
            Some(port) => match udp(SocketAddr::new(listen.addr, port)) {
                Ok(s) => Some(s),
                Err(e) if listen.plain_l2tp => return Err(e),
                Err(e) => {
                    warn!(port, error = %e, "cannot watch UDP {port} for cleartext L2TP (is xl2tpd running?); continuing");
                    None
                }
            },
            None => None,
        };
        if listen.plain_l2tp {
            warn!(
                port = listen.l2tp_port,
                "TEST MODE: L2TP is accepted WITHOUT IPsec; passwords cross the network unprotected"
            );
        }
        Ok(Self {
            ike: Responder::new(cfg),
            listen,
            udp500,
            udp4500,
            raw,
            sas: HashMap::new(),
            udp1701,
            l2tp: None,
            echo: Vec::new(),
            esp_stats: EspStats::default(),
        })
    }

    /// Adds the session layer: L2TP arriving through IPsec (or in clear, in plain mode) is
    /// served, with credentials checked against `users`.
    pub fn with_sessions(mut self, sessions: Sessions, users: UserStore) -> Self {
        let (decisions_tx, decisions_rx) = tokio::sync::mpsc::unbounded_channel();
        self.l2tp = Some(L2tpSide {
            sessions,
            users: Arc::new(std::sync::Mutex::new(users)),
            decisions_tx,
            decisions_rx,
            clients: HashMap::new(),
            next_client: 1,
            plain_peers: HashMap::new(),
            plain_addrs: HashMap::new(),
            cleartext_dropped: 0,
        });
        self
    }

    fn local_for(&self, sock_port: u16, remote: SocketAddr) -> SocketAddr {
        let ip = if self.listen.addr.is_unspecified() {
            route_source(remote).unwrap_or(self.listen.addr)
        } else {
            self.listen.addr
        };
        SocketAddr::new(ip, sock_port)
    }

    /// Runs until `stop` resolves, then sends Deletes for every SA.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> io::Result<()> {
        tokio::pin!(stop);
        let mut buf500 = vec![0u8; 65536];
        let mut buf4500 = vec![0u8; 65536];
        let mut rawbuf = vec![0u8; 65536];
        let mut buf1701 = vec![0u8; 65536];
        let mut keepalive = tokio::time::interval(Duration::from_secs(20));
        loop {
            let session_deadline = self.l2tp.as_ref().and_then(|l| l.sessions.poll_timeout());
            let deadline = [self.ike.poll_timeout(), session_deadline]
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
            tokio::select! {
                _ = &mut stop => break,
                r = self.udp500.recv_from(&mut buf500) => {
                    let (n, remote) = r?;
                    let local = self.local_for(self.listen.ike_port, remote);
                    if let Some(data) = buf500.get(..n) {
                        self.ike.handle_datagram(Instant::now(), local, remote, data);
                    }
                }
                r = self.udp4500.recv_from(&mut buf4500) => {
                    let (n, remote) = r?;
                    let local = self.local_for(self.listen.natt_port, remote);
                    let Some(data) = buf4500.get_mut(..n) else { continue };
                    match esp::classify_udp4500(data) {
                        Udp4500::Keepalive => self.esp_stats.keepalives += 1,
                        Udp4500::Ike(msg) => { let msg = msg.to_vec(); self.ike.handle_datagram(Instant::now(), local, remote, &msg) }
                        Udp4500::Esp(_) => self.esp_in(data, remote),
                        Udp4500::Malformed => self.esp_stats.malformed += 1,
                    }
                }
                r = async {
                    match &self.raw {
                        Some(fd) => fd.readable().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let mut guard = r?;
                    let res = guard.try_io(|inner| {
                        let sock: &Socket = inner.get_ref();
                        let mut b = sock;
                        io::Read::read(&mut b, &mut rawbuf).map(|n| (n, ()))
                    });
                    if let Ok(Ok((n, ()))) = res {
                        self.raw_in(&mut rawbuf[..n]);
                    }
                }
                r = async {
                    match &self.udp1701 {
                        Some(s) => s.recv_from(&mut buf1701).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let (n, remote) = r?;
                    if let Some(data) = buf1701.get(..n) {
                        self.cleartext_l2tp(data, remote);
                    }
                }
                d = async {
                    match self.l2tp.as_mut() {
                        Some(l) => l.decisions_rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let (Some((session, id, decision)), Some(l)) = (d, self.l2tp.as_mut()) {
                        l.sessions.authenticated(Instant::now(), session, id, decision);
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    self.ike.handle_timeout(now);
                    if let Some(l) = self.l2tp.as_mut() {
                        l.sessions.handle_timeout(now);
                    }
                }
                _ = keepalive.tick() => self.keepalives().await,
            }
            self.drain().await;
        }
        info!("shutting down: ending every L2TP tunnel and deleting every SA");
        if let Some(l) = self.l2tp.as_mut() {
            l.sessions.shutdown(Instant::now());
        }
        self.drain().await;
        self.ike.shutdown();
        self.drain().await;
        Ok(())
    }

    fn raw_in(&mut self, pkt: &mut [u8]) {
        // A raw IPv4 socket hands over the IP header too.
        let Some(&vihl) = pkt.first() else { return };
        if vihl >> 4 != 4 {
            return;
        }
        let ihl = usize::from(vihl & 0x0f) * 4;
        let Some(src) = pkt
            .get(12..16)
            .map(|s| Ipv4Addr::new(s[0], s[1], s[2], s[3]))
        else {
            return;
        };
        let Some(esp) = pkt.get_mut(ihl..) else {
            return;
        };
        self.esp_in(esp, SocketAddr::new(IpAddr::V4(src), 0));
    }

    fn esp_in(&mut self, packet: &mut [u8], from: SocketAddr) {
        let Some((spi, payload, next_header)) = self.esp_decrypt(packet, from) else {
            return;
        };
        let Some(inner) = packet.get(payload) else {
            return;
        };
        if next_header != 17 || inner.len() < 8 {
            return;
        }
        if self.listen.test_echo {
            let mut e = inner.to_vec();
            e.swap(0, 2);
            e.swap(1, 3);
            e[6..8].copy_from_slice(&[0, 0]);
            self.echo.push((spi, e));
            return;
        }
        // Transport mode: the client's UDP datagram to our port 1701 (RFC 3193 §4).
        let Some((sport, dport, body)) = split_udp(inner) else {
            return;
        };
        let (Some(l), Some(pair)) = (self.l2tp.as_mut(), self.sas.get(&spi)) else {
            return;
        };
        if dport != L2TP_PORT {
            debug!(
                spi = format_args!("{spi:08x}"),
                dport, "decrypted UDP not for L2TP; dropped"
            );
            return;
        }
        let client = pair.client;
        let _ip = l.sessions.handle_l2tp(Instant::now(), client, sport, body);
        // The TUN data plane is not built: client IP packets end here.
    }

    /// A datagram on the cleartext L2TP port.
    fn cleartext_l2tp(&mut self, data: &[u8], remote: SocketAddr) {
        let Some(l) = self.l2tp.as_mut() else { return };
        if !self.listen.plain_l2tp {
            l.cleartext_dropped += 1;
            if l.cleartext_dropped.is_power_of_two() {
                warn!(%remote, dropped = l.cleartext_dropped, "L2TP without IPsec dropped: clients must connect with L2TP/IPsec");
            }
            return;
        }
        let peer = match l.plain_peers.get(&remote) {
            Some(&p) => p,
            None => {
                let p = PLAIN_PEER_BASE + l.plain_peers.len() as PeerId;
                info!(peer = p, %remote, "new cleartext L2TP peer (test mode)");
                l.plain_peers.insert(remote, p);
                l.plain_addrs.insert(p, remote);
                p
            }
        };
        let _ip = l
            .sessions
            .handle_l2tp(Instant::now(), peer, remote.port(), data);
    }

    /// Decrypts in place; returns the SA, where the inner datagram lies in `packet`, and its
    /// protocol.
    fn esp_decrypt(
        &mut self,
        packet: &mut [u8],
        from: SocketAddr,
    ) -> Option<(u32, std::ops::Range<usize>, u8)> {
        let Some(spi) = esp::peek_spi(packet) else {
            self.esp_stats.malformed += 1;
            return None;
        };
        let Some(pair) = self.sas.get_mut(&spi) else {
            self.esp_stats.unknown_spi += 1;
            debug!(%from, spi = format_args!("{spi:08x}"), "ESP for an unknown SPI; dropped");
            return None;
        };
        match pair.inbound.decrypt(packet) {
            Ok(d) => {
                self.esp_stats.decrypted += 1;
                let inner = packet.get(d.payload.clone()).unwrap_or(&[]);
                if pair.first_logged {
                    debug!(%from, spi = format_args!("{spi:08x}"), seq = d.seq, "ESP decrypted: {}", describe_inner(d.next_header, inner));
                } else {
                    pair.first_logged = true;
                    info!(
                        %from,
                        spi = format_args!("{spi:08x}"),
                        seq = d.seq,
                        "ESP decrypted (first packet of the SA): {}",
                        describe_inner(d.next_header, inner)
                    );
                }
                let now = Instant::now();
                if now.duration_since(pair.last_activity_report) > Duration::from_secs(1) {
                    pair.last_activity_report = now;
                    self.ike.esp_activity(now, spi);
                }
                self.check_limits(spi);
                Some((spi, d.payload, d.next_header))
            }
            Err(esp::EspError::Replay) => {
                self.esp_stats.replayed += 1;
                None
            }
            Err(e) => {
                self.esp_stats.auth_failed += 1;
                debug!(%from, spi = format_args!("{spi:08x}"), error = %e, "ESP packet rejected");
                None
            }
        }
    }

    async fn keepalives(&mut self) {
        // RFC 3948 §4: a host behind NAT keeps the mapping open with 0xFF keepalives.
        let mut targets: Vec<SocketAddr> = self
            .sas
            .values()
            .filter(|p| p.child.udp_encap)
            .map(|p| p.child.remote)
            .collect();
        targets.sort();
        targets.dedup();
        for t in targets {
            let _ = self.udp4500.send_to(&esp::NAT_KEEPALIVE, t).await;
        }
    }

    async fn drain(&mut self) {
        for (spi, datagram) in std::mem::take(&mut self.echo) {
            if let Err(e) = self.deliver(spi, &datagram, 17).await {
                warn!(error = %e, "test echo failed");
            }
        }
        while let Some(t) = self.ike.poll_transmit() {
            let sock = if t.local.port() == self.listen.natt_port {
                &self.udp4500
            } else {
                &self.udp500
            };
            if let Err(e) = sock.send_to(&t.data, t.remote).await {
                warn!(remote = %t.remote, error = %e, "send failed");
            }
        }
        while let Some(ev) = self.ike.poll_event() {
            self.on_event(ev);
        }
        self.drain_sessions().await;
    }

    /// Sends what the session layer produced and starts authentication checks.
    async fn drain_sessions(&mut self) {
        let Some(l) = self.l2tp.as_mut() else { return };
        let mut out = Vec::new();
        while let Some(t) = l.sessions.poll_transmit() {
            out.push(t);
        }
        while let Some(ev) = l.sessions.poll_event() {
            match ev {
                session::Event::Authenticate { session, request } => {
                    let users = l.users.clone();
                    let tx = l.decisions_tx.clone();
                    let id = request.id;
                    // SQLite is a blocking call: keep it off the control loop.
                    tokio::task::spawn_blocking(move || {
                        let decision = match users.lock() {
                            Ok(store) => aaa::local_decision(&store, &request),
                            Err(_) => Decision::reject(aaa::REJECTED),
                        };
                        let _ = tx.send((session, id, decision));
                    });
                }
                session::Event::Up { .. } | session::Event::Down { .. } => {}
            }
        }
        for t in out {
            self.send_l2tp(t).await;
        }
    }

    /// One L2TP datagram to a peer: in clear (plain mode) or as UDP in the client's newest SA.
    async fn send_l2tp(&mut self, t: crate::l2tp::Transmit) {
        let Some(l) = self.l2tp.as_ref() else { return };
        if let Some(&addr) = l.plain_addrs.get(&t.peer) {
            if let Some(s) = &self.udp1701 {
                let to = SocketAddr::new(addr.ip(), t.port);
                if let Err(e) = s.send_to(&t.payload, to).await {
                    warn!(%to, error = %e, "L2TP send failed");
                }
            }
            return;
        }
        let Some(&spi) = l.clients.get(&t.peer).and_then(|s| s.last()) else {
            return;
        };
        // UDP header (RFC 768): 1701 -> the client's port; checksum 0 (none, allowed on IPv4,
        // and the client's transport-mode NAT-T fix-up would rewrite it anyway: RFC 3948 §3.1.2).
        let len = 8 + t.payload.len();
        let Ok(len16) = u16::try_from(len) else {
            return;
        };
        let mut datagram = Vec::with_capacity(len);
        datagram.extend_from_slice(&L2TP_PORT.to_be_bytes());
        datagram.extend_from_slice(&t.port.to_be_bytes());
        datagram.extend_from_slice(&len16.to_be_bytes());
        datagram.extend_from_slice(&[0, 0]);
        datagram.extend_from_slice(&t.payload);
        if let Err(e) = self.deliver(spi, &datagram, 17).await {
            warn!(error = %e, "L2TP send through ESP failed");
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::ChildSaUp(child) => {
                let inbound = InboundSa::new(child.inbound_spi, child.suite, &child.inbound_keymat);
                let outbound =
                    OutboundSa::new(child.outbound_spi, child.suite, &child.outbound_keymat);
                match (inbound, outbound) {
                    (Ok(inbound), Ok(outbound)) => {
                        info!(
                            remote = %child.remote,
                            spi_in = format_args!("{:08x}", child.inbound_spi),
                            spi_out = format_args!("{:08x}", child.outbound_spi),
                            udp_encap = child.udp_encap,
                            "IPsec SA installed"
                        );
                        let client = self.client_for(&child);
                        self.sas.insert(
                            child.inbound_spi,
                            SaPair {
                                inbound,
                                outbound,
                                child: *child,
                                last_activity_report: Instant::now(),
                                client,
                                first_logged: false,
                            },
                        );
                    }
                    (Err(e), _) | (_, Err(e)) => warn!(error = %e, "cannot install IPsec SA"),
                }
            }
            Event::ChildSaDown {
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
                    self.sa_gone(pair.client, inbound_spi);
                }
            }
            Event::PeerMoved {
                inbound_spis,
                remote,
                ..
            } => {
                for s in inbound_spis {
                    if let Some(p) = self.sas.get_mut(&s) {
                        p.child.remote = remote;
                    }
                }
            }
            Event::Phase1Up { .. } | Event::Phase1Down { .. } => {}
        }
    }

    /// The L2TP peer of a new SA: that of the SA it replaces (a rekey), else a new client.
    fn client_for(&mut self, child: &ChildSa) -> PeerId {
        let inherited = child
            .replaces
            .iter()
            .find_map(|spi| self.sas.get(spi).map(|p| p.client));
        let Some(l) = self.l2tp.as_mut() else {
            return inherited.unwrap_or(0);
        };
        let client = inherited.unwrap_or_else(|| {
            let c = l.next_client;
            l.next_client += 1;
            info!(peer = c, remote = %child.remote, id = %child.peer_id, "new IPsec client (L2TP peer)");
            c
        });
        l.clients.entry(client).or_default().push(child.inbound_spi);
        client
    }

    /// An SA of `client` is gone; with its last one, its L2TP tunnels end.
    fn sa_gone(&mut self, client: PeerId, inbound_spi: u32) {
        let Some(l) = self.l2tp.as_mut() else { return };
        let Some(spis) = l.clients.get_mut(&client) else {
            return;
        };
        spis.retain(|&s| s != inbound_spi);
        if spis.is_empty() {
            l.clients.remove(&client);
            l.sessions.peer_gone(Instant::now(), client);
        }
    }

    /// Sends `payload` (an upper-layer datagram, e.g. UDP carrying L2TP) to the peer of the IPsec
    /// SA `inbound_spi` through its outbound SA. Used by the L2TP layer.
    pub async fn deliver(
        &mut self,
        inbound_spi: u32,
        payload: &[u8],
        next_header: u8,
    ) -> io::Result<()> {
        let Some(pair) = self.sas.get_mut(&inbound_spi) else {
            return Ok(());
        };
        let suite = pair.child.suite;
        let head = suite.header_len();
        let mut buf = vec![0u8; head + payload.len() + suite.max_trailer_len()];
        buf[head..head + payload.len()].copy_from_slice(payload);
        let range = pair
            .outbound
            .encrypt(&mut buf, head..head + payload.len(), next_header)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let pkt = &buf[range];
        let remote = pair.child.remote;
        if pair.child.udp_encap {
            self.udp4500.send_to(pkt, remote).await?;
        } else if let Some(raw) = &self.raw {
            raw.get_ref()
                .send_to(pkt, &SocketAddr::new(remote.ip(), 0).into())?;
        }
        self.check_limits(inbound_spi);
        Ok(())
    }

    /// Ends an IPsec SA whose kilobyte lifetime is used up or whose outbound sequence numbers run
    /// out (RFC 4303 §3.3.3). The server never starts a Quick Mode (NATed Windows clients reject
    /// it, CLIENTS.md §5.11): it deletes the SA and the client negotiates a new one.
    fn check_limits(&mut self, inbound_spi: u32) {
        let Some(pair) = self.sas.get(&inbound_spi) else {
            return;
        };
        let bytes = pair.inbound.bytes() + pair.outbound.bytes();
        let kb_used = pair.child.lifetime_kb.is_some_and(|kb| bytes / 1024 >= kb);
        let seq_used = pair.outbound.needs_rekey();
        if kb_used || seq_used {
            info!(
                spi_in = format_args!("{inbound_spi:08x}"),
                bytes,
                reason = if kb_used {
                    "kilobyte lifetime reached"
                } else {
                    "sequence numbers nearly exhausted"
                },
                "deleting the IPsec SA so that the client negotiates a new one"
            );
            self.ike.close_child(inbound_spi);
        }
    }

    pub fn ike(&self) -> &Responder {
        &self.ike
    }
}
