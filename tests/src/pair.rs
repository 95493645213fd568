//! In-memory harness: test clients and the server's [`Responder`] exchanging datagrams under a
//! fake clock, with optional loss, duplication and reordering (seeded), and a masquerading NAT
//! model in front of clients. ESP is carried too: the harness installs the server's SAs from its
//! `ChildSaUp` events, so tests can send L2TP both ways with the keys each side derived.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use roadgate::esp::{self, InboundSa, OutboundSa, Udp4500};
use roadgate::ike::{Config, Event, Responder, Transmit};

use crate::client::{self, EspDatagram, IpsecClient, Received};
use crate::initiator::{InitiatorConfig, InitiatorEvent};

pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const PSK: &[u8] = b"correct horse battery staple";

/// A masquerading NAT: rewrites a client's private source (address, port) to its public address
/// and a port of its own, and maps replies back.
#[derive(Debug, Clone)]
pub struct Nat {
    pub public_ip: IpAddr,
    next_port: u16,
    out: HashMap<(usize, SocketAddr), u16>,
    back: HashMap<u16, (usize, SocketAddr)>,
}

impl Nat {
    pub fn new(public_ip: IpAddr, first_port: u16) -> Self {
        Self {
            public_ip,
            next_port: first_port,
            out: HashMap::new(),
            back: HashMap::new(),
        }
    }

    /// The public address and port of client `client`'s `private` address and port (a new
    /// mapping on first use).
    pub fn outbound(&mut self, client: usize, private: SocketAddr) -> SocketAddr {
        let port = match self.out.get(&(client, private)) {
            Some(p) => *p,
            None => {
                let p = self.next_port;
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                self.out.insert((client, private), p);
                self.back.insert(p, (client, private));
                p
            }
        };
        SocketAddr::new(self.public_ip, port)
    }

    /// The client and its private address and port behind the public `public`, if mapped.
    pub fn inbound(&self, public: SocketAddr) -> Option<(usize, SocketAddr)> {
        (public.ip() == self.public_ip)
            .then(|| self.back.get(&public.port()).copied())
            .flatten()
    }

    /// Forgets every mapping (a NAT reboot or timeout): the next packets get new ports.
    pub fn flush(&mut self) {
        self.out.clear();
        self.back.clear();
    }
}

/// Impairments of the simulated network.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub latency: Duration,
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a datagram gets an extra random delay of up to `reorder_window`.
    pub reorder: f64,
    pub reorder_window: Duration,
    /// Impair only IKE datagrams (ESP goes through cleanly).
    pub ike_only: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(5),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_window: Duration::from_millis(300),
            ike_only: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Server,
    Client(usize),
}

#[derive(Debug, Clone)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: Dest,
    src: SocketAddr,
    dst: SocketAddr,
    /// Raw ESP (IP protocol 50) rather than UDP.
    raw_esp: bool,
    data: Vec<u8>,
}

/// Which way a datagram goes, for [`Pair::filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToServer(usize),
    ToClient(usize),
}

/// Everything that happened, in order.
#[derive(Debug)]
pub enum PairEvent {
    Server(Event),
    Client(usize, InitiatorEvent),
    /// The harness's server-side ESP opened L2TP from a client.
    ServerL2tp {
        spi: u32,
        from: SocketAddr,
        payload: Vec<u8>,
    },
    /// The server-side ESP refused a packet.
    ServerEspError {
        spi: u32,
        error: String,
    },
    /// A client opened something from the server.
    ClientRx {
        client: usize,
        rx: Received,
    },
}

/// The server's half of an IPsec SA pair, as the data plane would install it.
pub struct ServerSa {
    pub child: roadgate::ike::ChildSa,
    pub inbound: InboundSa,
    pub outbound: OutboundSa,
    pub remote: SocketAddr,
}

impl fmt::Debug for ServerSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSa")
            .field("child", &self.child)
            .field("remote", &self.remote)
            .finish()
    }
}

#[derive(Debug)]
pub struct ClientSlot {
    pub client: IpsecClient,
    /// Index into [`Pair::nats`].
    pub nat: Option<usize>,
    /// A client that is offline sends and receives nothing (it "vanished").
    pub online: bool,
}

/// A datagram filter: returns true to drop.
pub type Filter = Box<dyn FnMut(Direction, &[u8]) -> bool>;

/// The harness. See the module documentation.
pub struct Pair {
    pub base: Instant,
    pub now: Instant,
    pub server: Responder,
    pub server_ip: IpAddr,
    pub natt_port: u16,
    pub clients: Vec<ClientSlot>,
    pub nats: Vec<Nat>,
    pub link: Link,
    /// Returns true to drop a datagram (targeted loss); sees the UDP payload as sent.
    pub filter: Option<Filter>,
    pub log: Vec<PairEvent>,
    pub server_sas: HashMap<u32, ServerSa>,
    /// Datagrams the server sent to addresses that are no client (forged sources).
    pub unrouted: Vec<Transmit>,
    /// The server sits behind a 1:1 NAT with this public address (clients talk to it; the server
    /// sees its own `server_ip`).
    pub server_public_ip: Option<IpAddr>,
    pub dropped: u64,
    /// Events of the harness itself (ESP opened), not yet shown to a predicate.
    pending: Vec<PairEvent>,
    rng: ChaCha20Rng,
    queue: Vec<InFlight>,
    seq: u64,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("now", &(self.now - self.base))
            .field("server", &self.server)
            .field("clients", &self.clients.len())
            .field("in_flight", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// The server configuration the tests start from: the default policy and [`PSK`].
pub fn server_config() -> Config {
    Config {
        psk: roadgate::ike::PskStore::with_default(PSK),
        ..Config::default()
    }
}

/// A client at `ip` (port 500) talking to the server of the harness, with [`PSK`].
pub fn client_config(ip: Ipv4Addr, seed: u64) -> InitiatorConfig {
    let mut c = InitiatorConfig::new(
        SocketAddr::new(IpAddr::V4(ip), 500),
        SocketAddr::new(IpAddr::V4(SERVER_IP), 500),
        PSK,
    );
    // Distinct from the server's seeds, so that cookies and SPIs of the two sides differ.
    c.seed = seed ^ 0xc11e_4700_0000;
    c
}

impl Pair {
    pub fn new(cfg: Config, seed: u64) -> Self {
        let base = Instant::now();
        let natt_port = cfg.natt_port;
        Self {
            base,
            now: base,
            server: Responder::seeded(Arc::new(cfg), seed),
            server_ip: IpAddr::V4(SERVER_IP),
            natt_port,
            clients: Vec::new(),
            nats: Vec::new(),
            link: Link::default(),
            filter: None,
            log: Vec::new(),
            server_sas: HashMap::new(),
            unrouted: Vec::new(),
            server_public_ip: None,
            dropped: 0,
            pending: Vec::new(),
            rng: ChaCha20Rng::seed_from_u64(seed ^ 0x005e_ed0f_1e75),
            queue: Vec::new(),
            seq: 0,
        }
    }

    /// Adds a NAT with this public address; returns its index.
    pub fn add_nat(&mut self, public_ip: Ipv4Addr) -> usize {
        self.nats.push(Nat::new(
            IpAddr::V4(public_ip),
            30_000 + 1000 * self.nats.len() as u16,
        ));
        self.nats.len() - 1
    }

    /// Adds a client (behind NAT `nat` if given) and starts its Main Mode; returns its index.
    pub fn add_client(&mut self, cfg: InitiatorConfig, nat: Option<usize>) -> usize {
        let mut client = IpsecClient::new(cfg);
        client.start(self.now);
        self.clients.push(ClientSlot {
            client,
            nat,
            online: true,
        });
        self.clients.len() - 1
    }

    /// Adds a client without starting it.
    pub fn add_idle_client(&mut self, cfg: InitiatorConfig, nat: Option<usize>) -> usize {
        self.clients.push(ClientSlot {
            client: IpsecClient::new(cfg),
            nat,
            online: true,
        });
        self.clients.len() - 1
    }

    /// Replaces client `i` by a new one (a reboot: new cookies, same NAT) and starts it.
    pub fn replace_client(&mut self, i: usize, cfg: InitiatorConfig) {
        let mut client = IpsecClient::new(cfg);
        client.start(self.now);
        self.clients[i].client = client;
        self.clients[i].online = true;
    }

    pub fn client(&mut self, i: usize) -> &mut IpsecClient {
        &mut self.clients[i].client
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn enqueue(
        &mut self,
        to: Dest,
        src: SocketAddr,
        dst: SocketAddr,
        raw_esp: bool,
        data: Vec<u8>,
    ) {
        let is_ike = !raw_esp
            && !matches!(esp::classify_udp4500(&data), Udp4500::Esp(_) if dst.port() == self.natt_port || src.port() == self.natt_port);
        let impair = is_ike || !self.link.ike_only;
        if let (Some(f), Dest::Client(i)) = (&mut self.filter, to)
            && f(Direction::ToClient(i), &data)
        {
            self.dropped += 1;
            return;
        }
        if impair && self.link.loss > 0.0 && self.rng.random_bool(self.link.loss) {
            self.dropped += 1;
            return;
        }
        let copies =
            if impair && self.link.duplicate > 0.0 && self.rng.random_bool(self.link.duplicate) {
                2
            } else {
                1
            };
        for c in 0..copies {
            let mut at = self.now + self.link.latency;
            if impair && self.link.reorder > 0.0 && self.rng.random_bool(self.link.reorder) {
                let w = self.link.reorder_window.as_micros() as u64;
                at += Duration::from_micros(self.rng.random_range(0..w.max(1)));
            }
            if c == 1 {
                at += Duration::from_millis(1);
            }
            self.seq += 1;
            self.queue.push(InFlight {
                at,
                seq: self.seq,
                to,
                src,
                dst,
                raw_esp,
                data: data.clone(),
            });
        }
    }

    /// A datagram from client `i`'s private `local` to `remote`, through its NAT.
    fn send_from_client(
        &mut self,
        i: usize,
        local: SocketAddr,
        remote: SocketAddr,
        raw_esp: bool,
        data: Vec<u8>,
    ) {
        if !self.clients[i].online {
            self.dropped += 1;
            return;
        }
        let src = match self.clients[i].nat {
            Some(n) if !raw_esp => self.nats[n].outbound(i, local),
            Some(n) => SocketAddr::new(self.nats[n].public_ip, 0),
            None => local,
        };
        if let Some(f) = &mut self.filter
            && f(Direction::ToServer(i), &data)
        {
            self.dropped += 1;
            return;
        }
        self.enqueue(Dest::Server, src, remote, raw_esp, data);
    }

    /// A datagram from the server to `remote`: finds the client (through its NAT).
    fn send_from_server(
        &mut self,
        mut local: SocketAddr,
        remote: SocketAddr,
        raw_esp: bool,
        data: Vec<u8>,
    ) {
        if let Some(public) = self.server_public_ip {
            local.set_ip(public);
        }
        for n in &self.nats {
            if n.public_ip == remote.ip() {
                if raw_esp {
                    // A NAT does not map raw ESP back to a port: deliver to its first client.
                    if let Some(i) = self
                        .clients
                        .iter()
                        .position(|c| c.nat.is_some_and(|k| self.nats[k].public_ip == n.public_ip))
                    {
                        let dst = SocketAddr::new(
                            self.clients[i].client.initiator().config().local.ip(),
                            0,
                        );
                        return self.enqueue(Dest::Client(i), local, dst, true, data);
                    }
                }
                if let Some((i, private)) = n.inbound(remote) {
                    return self.enqueue(Dest::Client(i), local, private, raw_esp, data);
                }
                self.dropped += 1;
                return;
            }
        }
        let found = self.clients.iter().position(|c| {
            c.nat.is_none() && c.client.initiator().config().local.ip() == remote.ip()
        });
        match found {
            Some(i) => self.enqueue(Dest::Client(i), local, remote, raw_esp, data),
            None => self.unrouted.push(Transmit {
                local,
                remote,
                data,
            }),
        }
    }

    /// Injects a datagram at the server as if from `src` (forged messages, floods).
    pub fn inject_to_server(&mut self, src: SocketAddr, dst_port: u16, data: Vec<u8>) {
        let dst = SocketAddr::new(self.server_ip, dst_port);
        self.deliver_to_server(src, dst, false, &data);
    }

    fn deliver_to_server(
        &mut self,
        src: SocketAddr,
        mut dst: SocketAddr,
        raw_esp: bool,
        data: &[u8],
    ) {
        if self.server_public_ip == Some(dst.ip()) {
            dst.set_ip(self.server_ip);
        }
        let now = self.now;
        if raw_esp {
            return self.server_esp(src, data);
        }
        if dst.port() == self.natt_port {
            match esp::classify_udp4500(data) {
                Udp4500::Ike(ike) => self.server.handle_datagram(now, dst, src, ike),
                Udp4500::Esp(p) => {
                    let p = p.to_vec();
                    self.server_esp(src, &p);
                }
                Udp4500::Keepalive | Udp4500::Malformed => {}
            }
        } else {
            self.server.handle_datagram(now, dst, src, data);
        }
    }

    fn server_esp(&mut self, from: SocketAddr, packet: &[u8]) {
        let Some(spi) = esp::peek_spi(packet) else {
            return;
        };
        let Some(sa) = self.server_sas.get_mut(&spi) else {
            self.pending.push(PairEvent::ServerEspError {
                spi,
                error: "unknown SPI".into(),
            });
            return;
        };
        match client::esp_open(&mut sa.inbound, packet) {
            Ok((_, client::IPPROTO_UDP, seg)) => {
                let payload = client::parse_udp(&seg)
                    .map(|(_, _, p)| p.to_vec())
                    .unwrap_or_default();
                self.server.esp_activity(self.now, spi);
                self.pending
                    .push(PairEvent::ServerL2tp { spi, from, payload });
            }
            Ok((_, nh, _)) => {
                self.pending.push(PairEvent::ServerEspError {
                    spi,
                    error: format!("next header {nh}"),
                });
            }
            Err(e) => self.pending.push(PairEvent::ServerEspError {
                spi,
                error: e.to_string(),
            }),
        }
    }

    /// Moves transmits and events out of every party until none is left. Returns whether `pred`
    /// held for one of the new events.
    fn pump(&mut self, pred: &mut dyn FnMut(&PairEvent) -> bool) -> bool {
        let mut hit = false;
        loop {
            let mut progress = false;
            for ev in std::mem::take(&mut self.pending) {
                progress = true;
                hit |= pred(&ev);
                self.log.push(ev);
            }
            while let Some(t) = self.server.poll_transmit() {
                progress = true;
                self.send_from_server(t.local, t.remote, false, t.data);
            }
            while let Some(ev) = self.server.poll_event() {
                progress = true;
                self.server_event(&ev);
                let ev = PairEvent::Server(ev);
                hit |= pred(&ev);
                self.log.push(ev);
            }
            for i in 0..self.clients.len() {
                while let Some(t) = self.clients[i].client.poll_transmit() {
                    progress = true;
                    self.send_from_client(i, t.local, t.remote, false, t.data);
                }
                while let Some(ev) = self.clients[i].client.poll_event() {
                    progress = true;
                    let ev = PairEvent::Client(i, ev);
                    hit |= pred(&ev);
                    self.log.push(ev);
                }
            }
            if !progress {
                return hit;
            }
        }
    }

    fn server_event(&mut self, ev: &Event) {
        match ev {
            Event::ChildSaUp(child) => {
                let inbound = InboundSa::new(child.inbound_spi, child.suite, &child.inbound_keymat);
                let outbound =
                    OutboundSa::new(child.outbound_spi, child.suite, &child.outbound_keymat);
                match (inbound, outbound) {
                    (Ok(inbound), Ok(outbound)) => {
                        self.server_sas.insert(
                            child.inbound_spi,
                            ServerSa {
                                child: (**child).clone(),
                                inbound,
                                outbound,
                                remote: child.remote,
                            },
                        );
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        self.pending.push(PairEvent::ServerEspError {
                            spi: child.inbound_spi,
                            error: e.to_string(),
                        });
                    }
                }
            }
            Event::ChildSaDown { inbound_spi, .. } => {
                self.server_sas.remove(inbound_spi);
            }
            Event::PeerMoved {
                inbound_spis,
                remote,
                ..
            } => {
                for s in inbound_spis {
                    if let Some(sa) = self.server_sas.get_mut(s) {
                        sa.remote = *remote;
                    }
                }
            }
            _ => {}
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut t = self.queue.iter().map(|f| f.at).min();
        let mut see = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |y| y.min(x)));
            }
        };
        see(self.server.poll_timeout());
        for c in &self.clients {
            see(c.client.poll_timeout());
        }
        t
    }

    /// Delivers what is due and fires due timers at `self.now`.
    fn deliver_due(&mut self) {
        let now = self.now;
        while let Some(k) = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, f)| f.at <= now)
            .min_by_key(|(_, f)| (f.at, f.seq))
            .map(|(k, _)| k)
        {
            let f = self.queue.swap_remove(k);
            match f.to {
                Dest::Server => self.deliver_to_server(f.src, f.dst, f.raw_esp, &f.data),
                Dest::Client(i) => {
                    if !self.clients[i].online {
                        self.dropped += 1;
                        continue;
                    }
                    let rx = if f.raw_esp {
                        self.clients[i].client.open(&f.data)
                    } else {
                        self.clients[i]
                            .client
                            .handle_udp(now, f.dst, f.src, &f.data)
                    };
                    if !matches!(rx, Received::Ike | Received::Keepalive) {
                        self.pending.push(PairEvent::ClientRx { client: i, rx });
                    }
                }
            }
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        for c in &mut self.clients {
            if c.client.poll_timeout().is_some_and(|t| t <= now) {
                c.client.handle_timeout(now);
            }
        }
    }

    /// Runs until `pred` holds for a new event, or `limit` of fake time passes. Returns whether
    /// `pred` held.
    pub fn run_for(&mut self, limit: Duration, mut pred: impl FnMut(&PairEvent) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if self.pump(&mut pred) {
                return true;
            }
            match self.next_wakeup() {
                Some(t) if t <= deadline => {
                    self.now = self.now.max(t);
                    self.deliver_due();
                }
                _ => {
                    self.now = deadline;
                    self.deliver_due();
                    return self.pump(&mut pred);
                }
            }
        }
    }

    /// [`Pair::run_for`] with ten minutes of fake time.
    pub fn run_until(&mut self, pred: impl FnMut(&PairEvent) -> bool) -> bool {
        self.run_for(Duration::from_secs(600), pred)
    }

    /// Lets `d` of fake time pass.
    pub fn advance(&mut self, d: Duration) {
        self.run_for(d, |_| false);
    }

    /// Runs until client `i` has an IPsec SA and the server has announced one to it: returns the
    /// client's and the server's view.
    pub fn connect(
        &mut self,
        i: usize,
    ) -> Option<(crate::initiator::ChildInfo, roadgate::ike::ChildSa)> {
        let mut client_child = None;
        let mut server_child: Option<roadgate::ike::ChildSa> = None;
        let done = self.run_until(|ev| {
            match ev {
                PairEvent::Client(c, InitiatorEvent::ChildSaUp(info)) if *c == i => {
                    client_child = Some((**info).clone());
                }
                PairEvent::Server(Event::ChildSaUp(ch)) => {
                    if let Some(cc) = &client_child {
                        if ch.outbound_spi == cc.inbound_spi {
                            server_child = Some((**ch).clone());
                        }
                    } else {
                        server_child = Some((**ch).clone());
                    }
                }
                _ => {}
            }
            matches!((&client_child, &server_child), (Some(c), Some(s)) if s.outbound_spi == c.inbound_spi)
        });
        if done {
            Some((client_child?, server_child?))
        } else {
            None
        }
    }

    /// Client `i` seals `payload` as L2TP on its newest SA and sends it.
    pub fn client_send_l2tp(&mut self, i: usize, payload: &[u8]) -> bool {
        let Some(d) = self.clients[i].client.seal_l2tp(payload) else {
            return false;
        };
        self.send_client_esp(i, d);
        true
    }

    /// Client `i` seals `payload` on the SA with this inbound SPI and sends it.
    pub fn client_send_l2tp_on(&mut self, i: usize, inbound_spi: u32, payload: &[u8]) -> bool {
        let Some(d) = self.clients[i].client.seal_l2tp_on(inbound_spi, payload) else {
            return false;
        };
        self.send_client_esp(i, d);
        true
    }

    fn send_client_esp(&mut self, i: usize, d: EspDatagram) {
        if d.udp_encap {
            self.send_from_client(i, d.local, d.remote, false, d.data);
        } else {
            self.send_from_client(i, d.local, d.remote, true, d.data);
        }
    }

    /// The server sends `payload` as L2TP on the SA with this inbound SPI (of the server).
    pub fn server_send_l2tp(&mut self, inbound_spi: u32, payload: &[u8]) -> bool {
        let Some(sa) = self.server_sas.get_mut(&inbound_spi) else {
            return false;
        };
        let Ok(data) = client::esp_seal(
            &mut sa.outbound,
            &client::udp_l2tp(payload),
            client::IPPROTO_UDP,
        ) else {
            return false;
        };
        let (local, remote, udp) = (sa.child.local, sa.remote, sa.child.udp_encap);
        self.send_from_server(local, remote, !udp, data);
        true
    }

    /// Client events logged so far for client `i`.
    pub fn client_events(&self, i: usize) -> Vec<&InitiatorEvent> {
        self.log
            .iter()
            .filter_map(|e| match e {
                PairEvent::Client(c, ev) if *c == i => Some(ev),
                _ => None,
            })
            .collect()
    }

    /// Server events logged so far.
    pub fn server_events(&self) -> Vec<&Event> {
        self.log
            .iter()
            .filter_map(|e| match e {
                PairEvent::Server(ev) => Some(ev),
                _ => None,
            })
            .collect()
    }
}
