//! An in-memory world through the real server cores: the IKE [`Responder`] and the data plane
//! [`Gateway`] (with its [`Sessions`]: LNS, pppd-lite, the address pool; local users in SQLite,
//! checked with [`aaa::local_decision`] as the shell does) against any number of [`FullClient`]s
//! (IKE initiator + ESP + LAC + PPP), on a fake clock.
//!
//! The world plays the shell's part ([`roadgate::io`]) without sockets, driving the same sans-IO
//! [`roadgate::server::Server`] the shell drives (and so the same rules between the cores): IKE
//! on UDP 500 and 4500, ESP raw or in UDP as the server's [`Via`] says, the datagrams and events
//! drained after every input, and authentication answered (after [`ChainWorld::auth_delay`]). Between the two sides: a latency, seeded loss and duplication, and
//! masquerading NATs ([`Nat`]: clients behind one NAT share its address, with ports of their own).
//! On the "LAN" side, what the Gateway writes to the TUN device is collected in
//! [`ChainWorld::lan`], and packets can be injected as if read from it ([`ChainWorld::lan_send`]).
//!
//! A passive tap keyed by the server's outbound SAs decodes what reaches each client (IKE
//! exchange types, L2TP control message types, LCP codes) into [`Slot::seen`], so that tests can
//! check the order of a teardown on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pppd_lite::pool::AddressPool;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use roadgate::aaa::{self, Decision, local::UserStore};
use roadgate::dataplane::{self, FromTun, HEADROOM, TAILROOM, Via};
use roadgate::esp::{self, InboundSa, Udp4500};
use roadgate::ike;
use roadgate::l2tp::{LnsConfig, SessionRef};
use roadgate::server::{self as core, Policy};
use roadgate::session::Sessions;

use crate::client::{IPPROTO_UDP, esp_open, parse_udp};
use crate::full_client::{self, Datagram, Event, FullClient};
use crate::pair::Nat;
use crate::session_pair::{self, SERVER_AUTH, SERVER_PPP};
use crate::{lac, wire};

pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const PSK: &[u8] = b"chain-world-psk";
pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;
/// A host on the server's LAN side.
pub const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// The server: what `roadgate serve` runs, without its sockets: the sans-IO core and the local
/// user database its authentication requests are checked against.
pub struct Server {
    pub core: core::Server,
    pub users: UserStore,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The rules of `roadgate serve`'s defaults (certificate users bound to PPP users), no TUN.
    pub fn new(
        ike: ike::Config,
        dataplane: dataplane::Config,
        sessions: Sessions,
        users: UserStore,
        seed: u64,
    ) -> Self {
        Server {
            core: core::Server::seeded(
                ike,
                dataplane,
                sessions,
                seed,
                Policy {
                    cert_user_match: true,
                    tun: false,
                },
            ),
            users,
        }
    }
}

/// The IKE settings of the world's server: the defaults with [`PSK`].
pub fn ike_config() -> ike::Config {
    ike::Config {
        psk: ike::PskStore::with_default(PSK),
        ..ike::Config::default()
    }
}

/// The data plane's settings: the defaults (MTU 1400, MSS clamping, no timeouts), no TUN device.
pub fn dataplane_config() -> dataplane::Config {
    dataplane::Config {
        tun: false,
        local_address: SERVER_PPP,
        ..dataplane::Config::default()
    }
}

/// A pool of `first..=last` (both inclusive), without the server's own address.
pub fn pool(first: Ipv4Addr, last: Ipv4Addr) -> AddressPool {
    AddressPool::builder()
        .range(first, last)
        .exclude(SERVER_PPP)
        .build()
        .unwrap()
}

/// A session layer with `pool`, MS-CHAPv2, CHAP-MD5 and PAP, and the LNS settings `lns`.
pub fn sessions(lns: LnsConfig, pool: AddressPool) -> Sessions {
    session_pair::server_with(lns, pool, SERVER_AUTH.to_vec())
}

/// The server the tests start from: 10.77.0.10-99, the users of [`session_pair::users`].
pub fn server() -> Server {
    server_with(dataplane_config())
}

/// [`server`] with data plane settings of one's own.
pub fn server_with(dp: dataplane::Config) -> Server {
    let pool = pool(Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 99));
    Server::new(
        ike_config(),
        dp,
        sessions(LnsConfig::default(), pool),
        session_pair::users(),
        0x5e4e,
    )
}

/// A Windows-like client at `ip` of the world's server (MODP-2048, MS-CHAPv2), seeded by `n`.
pub fn client_config(n: u64, ip: Ipv4Addr, user: &str, password: &str) -> full_client::Config {
    let mut c =
        full_client::Config::new(IpAddr::V4(ip), IpAddr::V4(SERVER_IP), PSK, user, password);
    ChaCha20Rng::seed_from_u64(n ^ 0xc11e_0000).fill_bytes(&mut c.seed);
    c
}

/// The address of the `n`th client without NAT: 198.18.0.0/15 (the benchmarking range).
pub fn client_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + n)
}

/// Impairments between the clients and the server (every datagram, IKE and ESP alike).
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub latency: Duration,
    pub loss: f64,
    pub duplicate: f64,
    /// Everything towards the server is lost (the clients' uplink is cut).
    pub upstream_cut: bool,
    /// Datagrams towards the server for which this says `true` (raw ESP?, the bytes) are lost.
    pub drop_to_server: Option<fn(bool, &[u8]) -> bool>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            latency: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
            upstream_cut: false,
            drop_to_server: None,
        }
    }
}

/// What the tap saw reach a client from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// An ISAKMP message of this exchange type (5: Informational, e.g. a Delete).
    Ike(u8),
    /// An L2TP control message of this type (0: a ZLB acknowledgement; 4: StopCCN; 14: CDN).
    L2tp(u16),
    /// An LCP packet with this code (5: Terminate-Request).
    Lcp(u8),
    /// A PPP frame of another protocol (IPCP, CHAP...).
    Ppp(u16),
    /// An IPv4 packet.
    Ip,
    /// ESP the tap has no SA for.
    Esp,
}

pub const LCP_TERMINATE_REQUEST: u8 = 5;
pub const L2TP_STOPCCN: u16 = 4;
pub const L2TP_CDN: u16 = 14;
pub const ISAKMP_INFORMATIONAL: u8 = wire::exchange::INFORMATIONAL;

/// One client and what it got.
#[derive(Debug)]
pub struct Slot {
    pub client: FullClient,
    /// Its own address (a private one behind a NAT).
    pub ip: Ipv4Addr,
    /// Index into [`ChainWorld::nats`].
    pub nat: Option<usize>,
    pub events: Vec<Event>,
    /// IPv4 packets the client received through the tunnel.
    pub tun: Vec<Vec<u8>>,
    /// What reached it from the server, decoded by the tap.
    pub seen: Vec<Seen>,
}

impl Slot {
    /// The address PPP gave it, while it is up.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.client.network().map(|n| n.local)
    }
}

#[derive(Debug, Clone, Copy)]
enum Hop {
    ToServer {
        src: SocketAddr,
        dst: SocketAddr,
        raw: bool,
    },
    ToClient {
        i: usize,
        from: SocketAddr,
        port: u16,
        raw: bool,
    },
}

/// A server → client SA the tap learns of (up, with its key) or forgets (down).
#[derive(Debug)]
enum TapChange {
    Up(u32, Box<InboundSa>),
    Down(u32),
}

/// A datagram on the wire, and what the tap made of it (towards a client, read when sent).
type InFlight = (Hop, Vec<u8>, Option<Seen>);

/// What became of a packet injected on the LAN side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromLan {
    /// Sealed and sent to a client.
    Sent,
    /// Answered with this ICMP error (also put in [`ChainWorld::lan`]).
    Icmp(Vec<u8>),
    Dropped,
}

/// The world's own clock for [`ChainWorld::server_time`]: time since the first call.
pub fn monotonic() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The world. See the module documentation.
pub struct ChainWorld {
    pub base: Instant,
    pub now: Instant,
    pub server: Server,
    pub clients: Vec<Slot>,
    pub nats: Vec<Nat>,
    pub link: Link,
    /// IPv4 packets the Gateway wrote towards the TUN device (ICMP answers included), in order.
    pub lan: Vec<Vec<u8>>,
    pub ups: Vec<(SessionRef, String, Ipv4Addr)>,
    pub downs: Vec<(SessionRef, Option<String>, String)>,
    /// The accounting records the session layer gave (Start at Up, Stop at Down), in order.
    pub acct: Vec<roadgate::aaa::AcctRecord>,
    /// How long the authentication backend takes to answer.
    pub auth_delay: Duration,
    /// Time spent inside the server's calls (Responder, Gateway, the authentication decision),
    /// by [`ChainWorld::clock`].
    pub server_time: Duration,
    /// The clock `server_time` is read from: [`monotonic`] unless a bench puts a CPU clock here.
    pub clock: fn() -> Duration,
    /// Datagrams the link lost, and datagrams the server sent to no client.
    pub lost: u64,
    pub unrouted: u64,
    /// Decode what reaches the clients into [`Slot::seen`] (a decryption per ESP packet: benches
    /// turn it off).
    pub tap: bool,
    /// Route what reaches the TUN side as the server's kernel and LAN would ([`ChainWorld::route`]).
    pub kernel: bool,
    rng: ChaCha20Rng,
    /// Datagrams in flight, and what the tap made of those to a client (read when sent).
    queue: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    auth: VecDeque<(Instant, SessionRef, u64, Decision)>,
    /// Server → client SAs, by SPI, for the tap.
    taps: HashMap<u32, InboundSa>,
    /// SAs the server installed or removed, seen by its IKE observer, for the tap.
    tap_events: Arc<std::sync::Mutex<Vec<TapChange>>>,
    by_ip: HashMap<IpAddr, usize>,
    dirty: Vec<usize>,
    txbuf: Vec<u8>,
}

impl std::fmt::Debug for ChainWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainWorld")
            .field("now", &(self.now - self.base))
            .field("server", &self.server)
            .field("clients", &self.clients.len())
            .field("in_flight", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl ChainWorld {
    pub fn new(mut server: Server, seed: u64) -> Self {
        let base = Instant::now();
        let tap_events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = tap_events.clone();
        server
            .core
            .observe_ike(Some(Box::new(move |ev: &ike::Event| {
                let change = match ev {
                    ike::Event::ChildSaUp(child) => {
                        InboundSa::new(child.outbound_spi, child.suite, &child.outbound_keymat)
                            .ok()
                            .map(|sa| TapChange::Up(child.outbound_spi, Box::new(sa)))
                    }
                    ike::Event::ChildSaDown { outbound_spi, .. } => {
                        Some(TapChange::Down(*outbound_spi))
                    }
                    _ => None,
                };
                if let Some(c) = change {
                    sink.lock().unwrap().push(c);
                }
            })));
        ChainWorld {
            tap_events,
            base,
            now: base,
            server,
            clients: Vec::new(),
            nats: Vec::new(),
            link: Link::default(),
            lan: Vec::new(),
            ups: Vec::new(),
            downs: Vec::new(),
            acct: Vec::new(),
            auth_delay: Duration::from_millis(5),
            server_time: Duration::ZERO,
            clock: monotonic,
            lost: 0,
            unrouted: 0,
            tap: true,
            kernel: false,
            rng: ChaCha20Rng::seed_from_u64(seed),
            queue: BTreeMap::new(),
            seq: 0,
            auth: VecDeque::new(),
            taps: HashMap::new(),
            by_ip: HashMap::new(),
            dirty: Vec::new(),
            txbuf: vec![0u8; HEADROOM + 65536 + TAILROOM],
        }
    }

    /// Fake time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Adds a masquerading NAT with this public address; returns its index.
    pub fn add_nat(&mut self, public: Ipv4Addr) -> usize {
        let first_port = 30_000 + 1000 * self.nats.len() as u16;
        self.nats.push(Nat::new(IpAddr::V4(public), first_port));
        self.nats.len() - 1
    }

    /// Adds a client (behind NAT `nat` if given); it starts Main Mode at once. Returns its index.
    pub fn add_client(&mut self, cfg: full_client::Config, nat: Option<usize>) -> usize {
        let IpAddr::V4(ip) = cfg.local.ip() else {
            panic!("IPv4 clients only");
        };
        let i = self.clients.len();
        if nat.is_none() {
            self.by_ip.insert(IpAddr::V4(ip), i);
        }
        self.clients.push(Slot {
            client: FullClient::new(cfg, self.now),
            ip,
            nat,
            events: Vec::new(),
            tun: Vec::new(),
            seen: Vec::new(),
        });
        self.dirty.push(i);
        i
    }

    /// Replaces client `i` by a new one with `cfg` (a user dialling again, from the same
    /// address or behind the same NAT); it starts Main Mode at once. What the old one got stays.
    pub fn redial(&mut self, i: usize, cfg: full_client::Config) {
        self.clients[i].client = FullClient::new(cfg, self.now);
        self.dirty.push(i);
    }

    /// The server, the rest of the world dropped.
    pub fn into_server(self) -> Server {
        self.server
    }

    /// Runs `f` on the server, adding its time to `server_time`.
    fn timed<R>(&mut self, f: impl FnOnce(&mut Server) -> R) -> R {
        let t0 = (self.clock)();
        let r = f(&mut self.server);
        self.server_time += (self.clock)().saturating_sub(t0);
        r
    }

    // ---- the wire ---------------------------------------------------------------------------

    fn enqueue(&mut self, hop: Hop, data: Vec<u8>, seen: Option<Seen>) {
        let link = self.link;
        let cut = match hop {
            Hop::ToServer { raw, .. } => {
                link.upstream_cut || link.drop_to_server.is_some_and(|f| f(raw, &data))
            }
            _ => false,
        };
        if cut || (link.loss > 0.0 && self.rng.random_bool(link.loss)) {
            self.lost += 1;
            return;
        }
        let copies = if link.duplicate > 0.0 && self.rng.random_bool(link.duplicate) {
            2
        } else {
            1
        };
        for c in 0..copies {
            self.seq += 1;
            let at = self.now + link.latency + Duration::from_micros(c * 100);
            self.queue.insert((at, self.seq), (hop, data.clone(), seen));
        }
    }

    fn send_from_client(&mut self, i: usize, d: Datagram) {
        let (ip, nat) = (self.clients[i].ip, self.clients[i].nat);
        match d {
            Datagram::Udp {
                local_port,
                remote,
                data,
            } => {
                let private = SocketAddr::new(IpAddr::V4(ip), local_port);
                let src = match nat {
                    Some(n) => self.nats[n].outbound(i, private),
                    None => private,
                };
                self.enqueue(
                    Hop::ToServer {
                        src,
                        dst: remote,
                        raw: false,
                    },
                    data,
                    None,
                );
            }
            Datagram::Esp { remote, data } => {
                let src = match nat {
                    Some(n) => self.nats[n].public_ip,
                    None => IpAddr::V4(ip),
                };
                self.enqueue(
                    Hop::ToServer {
                        src: SocketAddr::new(src, 0),
                        dst: SocketAddr::new(remote, 0),
                        raw: true,
                    },
                    data,
                    None,
                );
            }
        }
    }

    /// A datagram from the server's `from` to `to`: finds the client, through its NAT.
    fn send_to_client(&mut self, from: SocketAddr, to: SocketAddr, raw: bool, data: Vec<u8>) {
        let dest = match self.nats.iter().find(|n| n.public_ip == to.ip()) {
            // A NAT maps UDP back by port; it has no port for raw ESP.
            Some(nat) => nat
                .inbound(to)
                .filter(|_| !raw)
                .map(|(i, private)| (i, private.port())),
            None => self.by_ip.get(&to.ip()).map(|&i| (i, to.port())),
        };
        let Some((i, port)) = dest else {
            self.unrouted += 1;
            return;
        };
        let seen = if self.tap {
            self.tapped(port, raw, &data)
        } else {
            None
        };
        self.enqueue(Hop::ToClient { i, from, port, raw }, data, seen);
    }

    fn send_sealed(&mut self, via: Via, data: Vec<u8>) {
        match via {
            Via::Ike { local, remote } | Via::Udp { local, remote } => {
                self.send_to_client(local, remote, false, data)
            }
            Via::RawEsp { local, remote } => self.send_to_client(
                SocketAddr::new(local, 0),
                SocketAddr::new(remote, 0),
                true,
                data,
            ),
            Via::PlainL2tp { .. } => self.unrouted += 1,
        }
    }

    fn deliver(&mut self, hop: Hop, mut data: Vec<u8>, seen: Option<Seen>) {
        match hop {
            Hop::ToServer { src, dst, raw } => self.server_receive(src, dst, raw, &mut data),
            Hop::ToClient { i, from, port, raw } => {
                self.clients[i].seen.extend(seen);
                let now = self.now;
                let c = &mut self.clients[i].client;
                if raw {
                    c.handle_esp(now, &data);
                } else {
                    c.handle_udp(now, port, from, &data);
                }
                self.dirty.push(i);
            }
        }
    }

    /// What the shell does with a datagram on UDP 500 or 4500, or a raw ESP packet.
    fn server_receive(&mut self, src: SocketAddr, dst: SocketAddr, raw: bool, data: &mut [u8]) {
        let now = self.now;
        let ip = if raw {
            self.timed(|s| s.core.handle_esp(now, data, SocketAddr::new(src.ip(), 0)))
        } else if dst.port() == NATT_PORT {
            self.timed(|s| s.core.handle_udp4500(now, dst, src, data))
        } else {
            self.timed(|s| s.core.handle_ike(now, dst, src, data));
            None
        };
        if let Some(ip) = ip.and_then(|r| data.get(r)) {
            let ip = ip.to_vec();
            self.lan.push(ip.clone());
            if self.kernel {
                self.route(&ip);
            }
        }
        self.drain_server();
    }

    /// What the server's kernel and LAN would do with a packet from the TUN device: the LAN host
    /// and the server's PPP address answer pings, and a packet for another client's address goes
    /// back into the TUN device.
    fn route(&mut self, ip: &[u8]) {
        let Some(dst) = ip
            .get(16..20)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
        else {
            return;
        };
        if dst == LAN_HOST || dst == SERVER_PPP {
            if let Some(reply) = echo_reply(ip) {
                self.lan_send(&reply);
            }
        } else if self
            .server
            .core
            .gateway()
            .sessions()
            .iter()
            .any(|s| s.address == Some(dst))
        {
            self.lan_send(ip);
        }
    }

    /// The SAs the server's IKE observer saw come and go, into the tap.
    fn follow_taps(&mut self) {
        let changes = std::mem::take(&mut *self.tap_events.lock().unwrap());
        for c in changes {
            match c {
                TapChange::Up(spi, sa) => {
                    self.taps.insert(spi, *sa);
                }
                TapChange::Down(spi) => {
                    self.taps.remove(&spi);
                }
            }
        }
    }

    /// Sends what the server produced and answers its authentication requests (the shell's
    /// `drain`). Returns whether anything moved.
    fn drain_server(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        loop {
            let mut progressed = false;
            let mut buf = std::mem::take(&mut self.txbuf);
            while let Some(t) = self.timed(|s| s.core.poll_transmit(now, &mut buf)) {
                progressed = true;
                // The SAs a datagram's exchange installed are known before the tap reads it.
                self.follow_taps();
                let data = buf[t.range.clone()].to_vec();
                self.send_sealed(t.via, data);
            }
            self.txbuf = buf;
            self.follow_taps();
            while let Some(ev) = self.timed(|s| s.core.poll_event()) {
                progressed = true;
                match ev {
                    core::Event::Authenticate {
                        session, request, ..
                    } => {
                        let decision = self.timed(|s| aaa::local_decision(&s.users, &request));
                        self.auth
                            .push_back((now + self.auth_delay, session, request.id, decision));
                    }
                    core::Event::SessionUp {
                        session,
                        user,
                        address,
                        start,
                        ..
                    } => {
                        self.acct.push(*start);
                        self.ups.push((session, user, address));
                    }
                    core::Event::SessionDown {
                        session,
                        user,
                        reason,
                        stop,
                    } => {
                        self.acct.extend(stop.map(|s| *s));
                        self.downs.push((session, user, reason.to_string()));
                    }
                    core::Event::HostRoute { .. } => {}
                }
            }
            while self.auth.front().is_some_and(|a| a.0 <= now) {
                let (_, session, id, decision) = self.auth.pop_front().unwrap();
                progressed = true;
                self.timed(|s| s.core.authenticated(now, session, id, decision, None));
            }
            if !progressed {
                return moved;
            }
            moved = true;
        }
    }

    /// What a datagram from the server to a client's `port` is, read with the server's SAs.
    fn tapped(&mut self, port: u16, raw: bool, data: &[u8]) -> Option<Seen> {
        let packet = if raw {
            data
        } else if port == IKE_PORT {
            return wire::Header::parse(data).map(|h| Seen::Ike(h.exchange));
        } else {
            match esp::classify_udp4500(data) {
                Udp4500::Esp(p) => p,
                Udp4500::Ike(m) => return wire::Header::parse(m).map(|h| Seen::Ike(h.exchange)),
                Udp4500::Keepalive | Udp4500::Malformed => return None,
            }
        };
        let Some(sa) = esp::peek_spi(packet).and_then(|spi| self.taps.get_mut(&spi)) else {
            return Some(Seen::Esp);
        };
        match esp_open(sa, packet) {
            Ok((_, IPPROTO_UDP, inner)) => {
                parse_udp(&inner).and_then(|(_, _, l2tp)| decode_l2tp(l2tp))
            }
            _ => None,
        }
    }

    // ---- driving ----------------------------------------------------------------------------

    /// Takes what client `i` produced.
    fn poll_client(&mut self, i: usize) -> bool {
        let mut moved = false;
        while let Some(d) = self.clients[i].client.poll_transmit() {
            moved = true;
            self.send_from_client(i, d);
        }
        let slot = &mut self.clients[i];
        while let Some(ev) = slot.client.poll_event() {
            moved = true;
            slot.events.push(ev);
        }
        while let Some(p) = slot.client.poll_tun() {
            moved = true;
            slot.tun.push(p);
        }
        moved
    }

    /// Moves everything that is due now until nothing moves. Returns whether anything did.
    pub fn settle(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut moved = false;
            while let Some(i) = self.dirty.pop() {
                moved |= self.poll_client(i);
            }
            moved |= self.drain_server();
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (hop, data, seen) = entry.remove();
                moved = true;
                self.deliver(hop, data, seen);
                while let Some(i) = self.dirty.pop() {
                    self.poll_client(i);
                }
            }
            if !moved {
                return any;
            }
            any = true;
        }
    }

    /// The next instant anything is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let server = [
            self.server.core.poll_timeout(),
            self.queue.keys().next().map(|k| k.0),
            self.auth.front().map(|a| a.0),
        ];
        server
            .into_iter()
            .chain(self.clients.iter().map(|c| c.client.poll_timeout()))
            .flatten()
            .min()
    }

    /// Moves the clock to `at` and runs the timers due then.
    fn advance(&mut self, at: Instant) {
        self.now = self.now.max(at);
        let now = self.now;
        if self.server.core.poll_timeout().is_some_and(|t| t <= now) {
            self.timed(|s| s.core.handle_timeout(now));
        }
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i].client;
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
                self.dirty.push(i);
            }
        }
    }

    /// Runs until `done` holds (true) or `limit` of fake time has passed (false).
    pub fn run(&mut self, limit: Duration, mut done: impl FnMut(&ChainWorld) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            match self.next_deadline() {
                Some(next) if next <= end => self.advance(next),
                _ => {
                    self.now = self.now.max(end);
                    return false;
                }
            }
        }
    }

    /// Runs for `d` of fake time.
    pub fn run_for(&mut self, d: Duration) {
        self.run(d, |_| false);
    }

    /// Runs until every client is up (true), or `limit` passes.
    pub fn run_until_up(&mut self, limit: Duration) -> bool {
        self.run(limit, |w| w.clients.iter().all(|c| c.client.is_up()))
    }

    // ---- acting -----------------------------------------------------------------------------

    /// Client `i` sends `packet` into its tunnel (as if read from its TUN device).
    pub fn client_send(&mut self, i: usize, packet: &[u8]) -> bool {
        let now = self.now;
        let sent = self.clients[i].client.send_ip(now, packet);
        self.dirty.push(i);
        sent
    }

    /// Client `i` stops cleanly.
    pub fn client_close(&mut self, i: usize) {
        let now = self.now;
        self.clients[i].client.close(now);
        self.dirty.push(i);
    }

    /// A packet read from the TUN device: the Gateway seals it for its client, answers it with
    /// ICMP, or drops it.
    pub fn lan_send(&mut self, packet: &[u8]) -> FromLan {
        let now = self.now;
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let len = packet.len();
        let out = self.timed(|s| match s.core.handle_tun(now, &mut buf, len) {
            FromTun::Send(t) => Ok(t),
            FromTun::Icmp(answer) => Err(Some(answer.to_vec())),
            FromTun::Dropped => Err(None),
        });
        let r = match out {
            Ok(t) => {
                let data = buf[t.range].to_vec();
                self.send_sealed(t.via, data);
                FromLan::Sent
            }
            Err(Some(icmp)) => {
                self.lan.push(icmp.clone());
                FromLan::Icmp(icmp)
            }
            Err(None) => FromLan::Dropped,
        };
        self.drain_server();
        r
    }

    /// A datagram arriving at the server at once, as if from `src` (floods, forgeries): UDP to
    /// `dst_port`, or raw ESP when `raw`.
    pub fn inject_to_server(&mut self, src: SocketAddr, dst_port: u16, raw: bool, data: &[u8]) {
        let dst = SocketAddr::new(IpAddr::V4(SERVER_IP), dst_port);
        let mut data = data.to_vec();
        self.server_receive(src, dst, raw, &mut data);
    }

    /// Gateway::disconnect, as the admin socket calls it.
    pub fn disconnect(&mut self, target: &str) -> usize {
        let now = self.now;
        let n = self.timed(|s| s.core.disconnect(now, target));
        self.drain_server();
        n
    }

    /// What the shell does on SIGTERM: the Gateway's shutdown (LCP Terminate, CDN, StopCCN), up
    /// to `grace` of fake time for the tunnels to close, then the Responder's (Deletes).
    pub fn shutdown(&mut self, grace: Duration) {
        let now = self.now;
        self.timed(|s| s.core.shutdown_sessions(now));
        self.drain_server();
        self.run(grace, |w| w.server.core.tunnels() == 0);
        let now = self.now;
        self.timed(|s| s.core.shutdown_ike(now));
        self.drain_server();
    }
}

/// An L2TP datagram (the UDP payload) as the tap names it.
fn decode_l2tp(l2tp: &[u8]) -> Option<Seen> {
    let (control, _, _, _, at, end) = lac::parse_header(l2tp)?;
    let body = l2tp.get(at..end)?;
    if control {
        if body.is_empty() {
            return Some(Seen::L2tp(0));
        }
        let avps = lac::parse_avps(body)?;
        let (_, vendor, attr, value) = avps.first()?;
        return (*vendor == 0 && *attr == 0 && value.len() == 2)
            .then(|| Seen::L2tp(u16::from_be_bytes([value[0], value[1]])));
    }
    let ppp = body.strip_prefix(&[0xff, 0x03]).unwrap_or(body);
    let (proto, rest) = match ppp.first()? {
        b if b & 1 == 1 => (u16::from(*b), ppp.get(1..)?),
        _ => (u16::from_be_bytes([ppp[0], *ppp.get(1)?]), ppp.get(2..)?),
    };
    Some(match proto {
        0xc021 => Seen::Lcp(*rest.first()?),
        0x0021 => Seen::Ip,
        p => Seen::Ppp(p),
    })
}

// ---- IPv4 packets for the tests -------------------------------------------------------------

/// RFC 1071 checksum.
pub fn checksum(data: &[u8]) -> u16 {
    roadgate::dataplane::icmp::checksum(data)
}

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize, df: bool, id: u16) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    if df {
        h[6] = 0x40;
    }
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// An IPv4/UDP packet of `len` bytes in all, its payload a pattern seeded by `id`.
pub fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, len: usize, df: bool, id: u16) -> Vec<u8> {
    assert!(len >= 28);
    let mut p = ipv4_header(src, dst, 17, len, df, id);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&9u16.to_be_bytes());
    p.extend_from_slice(&((len - 20) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend((0..len - 28).map(|k| (k as u16 ^ id.rotate_left(5)) as u8));
    p
}

/// The TCP checksum's sum over the pseudo-header (RFC 9293 §3.1) and the segment.
fn tcp_sum(packet: &[u8]) -> u16 {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let seg = &packet[ihl..];
    let mut pseudo = Vec::with_capacity(12 + seg.len());
    pseudo.extend_from_slice(&packet[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(seg);
    checksum(&pseudo)
}

/// A TCP SYN from `src`:40001 to `dst`:80 with an MSS option of `mss` (and a window scale after
/// it), its checksum computed in full.
pub fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, mss: u16) -> Vec<u8> {
    let len = 20 + 28;
    let mut p = ipv4_header(src, dst, 6, len, true, 7);
    let mut tcp = vec![0u8; 28];
    tcp[0..2].copy_from_slice(&40001u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x0123_4567u32.to_be_bytes());
    tcp[12] = 7 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    tcp[24..28].copy_from_slice(&[1, 3, 3, 7]);
    p.extend_from_slice(&tcp);
    let sum = tcp_sum(&p);
    p[20 + 16..20 + 18].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The MSS option of a TCP SYN built by [`tcp_syn`].
pub fn tcp_mss(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[20 + 22], packet[20 + 23]])
}

/// Whether a TCP packet's checksum is right (recomputed over the pseudo-header: sums to zero).
pub fn tcp_checksum_ok(packet: &[u8]) -> bool {
    tcp_sum(packet) == 0
}

/// An IPv4 packet (no options, DF set) carrying `payload` of protocol `proto`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An ICMP echo request with sequence number `seq`.
pub fn ping(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(&[0xab; 56]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 1, &icmp)
}

/// The echo reply to an ICMP echo request, if `ip` is one.
pub fn echo_reply(ip: &[u8]) -> Option<Vec<u8>> {
    let icmp = ip.get(20..)?;
    if ip.get(9) != Some(&1) || icmp.first() != Some(&8) || icmp.len() < 8 {
        return None;
    }
    let mut r = icmp.to_vec();
    r[0] = 0;
    r[2..4].copy_from_slice(&[0, 0]);
    let c = checksum(&r);
    r[2..4].copy_from_slice(&c.to_be_bytes());
    let (src, dst) = (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    );
    Some(ipv4(dst, src, 1, &r))
}

/// Whether `ip` is the echo reply from `from` with sequence number `seq`.
pub fn is_echo_reply(ip: &[u8], from: Ipv4Addr, seq: u16) -> bool {
    ip.len() >= 28
        && ip[9] == 1
        && ip[12..16] == from.octets()
        && ip[20] == 0
        && ip[26..28] == seq.to_be_bytes()
}
