//! Full-chain clients ([`FullClient`], sans-IO: IKE + ESP + L2TP LAC + PPP) against the server's
//! own sans-IO cores in memory: the IKE responder, the data plane ([`Gateway`]: SAs, L2TP, PPP,
//! sessions, MSS clamping) and local users, under a fake clock. A small model of the server's
//! kernel stands behind the gateway's TUN side: it answers ICMP echo for the LAN host 192.0.2.10
//! and for 10.77.0.1, routes packets between clients, and records what reaches the LAN.
//!
//! What the netns test shows with real sockets and kernels, this shows for many clients and for
//! hours of fake time: every client up with its own address and both directions of IP; phase-1
//! and phase-2 rekeys under traffic for two hours with no loss and no SA left behind; MSS clamping
//! both ways with valid checksums; a clean stop and the server's shutdown reaching every client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roadgate::aaa::{self, local::UserOptions, local::UserStore};
use roadgate::dataplane::gateway::{FromTun, Gateway, HEADROOM, TAILROOM, Via};
use roadgate::dataplane::icmp::checksum;
use roadgate::esp::{self, Udp4500};
use roadgate::ike::{self, PskStore, Responder};
use roadgate::session;
use roadgate_tests::full_client::{Config, Datagram, Ending, Event, FullClient};
use roadgate_tests::session_pair;

const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PSK: &[u8] = b"in-memory-psk";

struct Client {
    c: FullClient,
    ip: Ipv4Addr,
    events: Vec<Event>,
    /// IPv4 packets the client's TUN device got.
    got: Vec<Vec<u8>>,
}

impl Client {
    fn address(&self) -> Ipv4Addr {
        self.c.network().expect("up").local
    }
    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }
}

struct World {
    now: Instant,
    ike: Responder,
    gw: Gateway,
    users: UserStore,
    clients: Vec<Client>,
    buf: Vec<u8>,
    /// Packets that reached the LAN host.
    lan: Vec<Vec<u8>>,
}

impl World {
    fn new() -> Self {
        let cfg = ike::Config {
            psk: PskStore::with_default(PSK.to_vec()),
            ..ike::Config::default()
        };
        let users = UserStore::in_memory().unwrap();
        users
            .add("alice", "alice-pw", &UserOptions::default())
            .unwrap();
        let sessions = session_pair::server(
            session_pair::pool(10, 250),
            vec![
                pppd_lite::AuthProtocol::MsChapV2,
                pppd_lite::AuthProtocol::Pap,
            ],
        );
        let dp = roadgate::dataplane::Config {
            tun: false,
            ..roadgate::dataplane::Config::default()
        };
        World {
            now: Instant::now(),
            ike: Responder::new(Arc::new(cfg)),
            gw: Gateway::new(dp, sessions),
            users,
            clients: Vec::new(),
            buf: vec![0u8; HEADROOM + 65536 + TAILROOM],
            lan: Vec::new(),
        }
    }

    /// Adds client `n` at 198.51.100.n: raw ESP, or UDP-encapsulated with `encap`.
    fn add(&mut self, n: u8, encap: bool, pap: bool, lifetimes: Option<(u64, u64)>) -> usize {
        let ip = Ipv4Addr::new(198, 51, 100, n);
        let mut cfg = Config::new(IpAddr::V4(ip), IpAddr::V4(SERVER), PSK, "alice", "alice-pw");
        cfg.force_encap = encap;
        cfg.pap = pap;
        cfg.group = roadgate::ike::crypto::DhGroup::Ecp256;
        cfg.seed = [n; 32];
        if let Some((ike_s, esp_s)) = lifetimes {
            cfg.ike_lifetime = Duration::from_secs(ike_s);
            cfg.esp_lifetime = Duration::from_secs(esp_s);
        }
        self.clients.push(Client {
            c: FullClient::new(cfg, self.now),
            ip,
            events: Vec::new(),
            got: Vec::new(),
        });
        self.clients.len() - 1
    }

    fn client_by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.clients.iter().position(|c| IpAddr::V4(c.ip) == ip)
    }

    /// Moves everything that can move now; returns whether anything did.
    fn shuttle(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        // Clients → server.
        for i in 0..self.clients.len() {
            while let Some(ev) = self.clients[i].c.poll_event() {
                moved = true;
                self.clients[i].events.push(ev);
            }
            while let Some(p) = self.clients[i].c.poll_tun() {
                moved = true;
                self.clients[i].got.push(p);
            }
            let ip = self.clients[i].ip;
            while let Some(d) = self.clients[i].c.poll_transmit() {
                moved = true;
                match d {
                    Datagram::Udp {
                        local_port,
                        remote,
                        mut data,
                    } => {
                        let from = SocketAddr::new(IpAddr::V4(ip), local_port);
                        if remote.port() == 500 {
                            self.ike.handle_datagram(now, remote, from, &data);
                            continue;
                        }
                        match esp::classify_udp4500(&data) {
                            Udp4500::Ike(m) => {
                                let m = m.to_vec();
                                self.ike.handle_datagram(now, remote, from, &m);
                                self.follow_ike();
                            }
                            Udp4500::Esp(_) => self.esp_in(&mut data, from),
                            Udp4500::Keepalive | Udp4500::Malformed => {}
                        }
                    }
                    Datagram::Esp { mut data, .. } => {
                        self.esp_in(&mut data, SocketAddr::new(IpAddr::V4(ip), 0));
                    }
                }
            }
        }
        // Server → clients.
        while let Some(t) = self.ike.poll_transmit() {
            moved = true;
            if let Some(i) = self.client_by_ip(t.remote.ip()) {
                self.clients[i]
                    .c
                    .handle_udp(now, t.remote.port(), t.local, &t.data);
            }
        }
        moved |= self.follow_ike();
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(t) = self.gw.poll_transmit(&mut self.ike, &mut buf) {
            moved = true;
            self.deliver(&t.via, &buf[t.range]);
        }
        self.buf = buf;
        while let Some(ev) = self.gw.sessions_mut().poll_event() {
            moved = true;
            if let session::Event::Authenticate { session, request } = ev {
                let d = aaa::local_decision(&self.users, &request);
                self.gw
                    .sessions_mut()
                    .authenticated(now, session, request.id, d);
            }
        }
        moved
    }

    fn follow_ike(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.ike.poll_event() {
            any = true;
            self.gw.on_ike_event(self.now, ev);
        }
        any
    }

    fn deliver(&mut self, via: &Via, pkt: &[u8]) {
        let now = self.now;
        match via {
            Via::Udp { local, remote } => {
                if let Some(i) = self.client_by_ip(remote.ip()) {
                    self.clients[i]
                        .c
                        .handle_udp(now, remote.port(), *local, pkt);
                }
            }
            Via::RawEsp { remote, .. } => {
                if let Some(i) = self.client_by_ip(*remote) {
                    self.clients[i].c.handle_esp(now, pkt);
                }
            }
            Via::PlainL2tp { .. } => panic!("no cleartext L2TP here"),
        }
    }

    fn esp_in(&mut self, data: &mut [u8], from: SocketAddr) {
        if let Some(r) = self.gw.esp_in(&mut self.ike, self.now, data, from) {
            let ip = data[r].to_vec();
            self.kernel(&ip);
        }
    }

    /// The server's kernel: an IPv4 packet written to the TUN device.
    fn kernel(&mut self, ip: &[u8]) {
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        if dst == LAN_HOST {
            self.lan.push(ip.to_vec());
        }
        if dst == LAN_HOST || dst == GATEWAY {
            if let Some(reply) = echo_reply(ip) {
                self.route_to_tun(&reply);
            }
        } else if dst.octets()[..3] == [10, 77, 0] {
            self.route_to_tun(ip);
        }
    }

    /// A packet the kernel routes into the TUN device, towards a client.
    fn route_to_tun(&mut self, ip: &[u8]) {
        let mut buf = std::mem::take(&mut self.buf);
        buf[HEADROOM..HEADROOM + ip.len()].copy_from_slice(ip);
        let t = match self.gw.tun_in(&mut self.ike, self.now, &mut buf, ip.len()) {
            FromTun::Send(t) => Some(t),
            FromTun::Icmp(_) | FromTun::Dropped => None,
        };
        if let Some(t) = t {
            let pkt = buf[t.range.clone()].to_vec();
            self.deliver(&t.via, &pkt);
        }
        self.buf = buf;
    }

    fn deadline(&self) -> Option<Instant> {
        let mut t = [self.ike.poll_timeout(), self.gw.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        for c in &self.clients {
            if let Some(x) = c.c.poll_timeout() {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        }
        t
    }

    /// Runs for `d` of fake time.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            while self.shuttle() {}
            let next = self.deadline().filter(|&t| t <= end);
            let Some(next) = next else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            self.ike.handle_timeout(now);
            self.gw.handle_timeout(now);
            for c in &mut self.clients {
                if c.c.poll_timeout().is_some_and(|t| t <= now) {
                    c.c.handle_timeout(now);
                }
            }
        }
    }

    /// Client `i` sends `ip` into its tunnel; then everything moves.
    fn send(&mut self, i: usize, ip: &[u8]) -> bool {
        let now = self.now;
        let ok = self.clients[i].c.send_ip(now, ip);
        while self.shuttle() {}
        ok
    }
}

// ---- packets -------------------------------------------------------------------------------------

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(20 + payload.len()).unwrap();
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn ping(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(&[0xab; 56]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 1, &icmp)
}

/// The echo reply to an ICMP echo request, if `ip` is one.
fn echo_reply(ip: &[u8]) -> Option<Vec<u8>> {
    let icmp = ip.get(20..)?;
    if ip[9] != 1 || icmp.first() != Some(&8) {
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

fn is_echo_reply(ip: &[u8], from: Ipv4Addr, seq: u16) -> bool {
    ip.len() >= 28
        && ip[9] == 1
        && ip[12..16] == from.octets()
        && ip[20] == 0
        && ip[26..28] == seq.to_be_bytes()
}

/// A TCP SYN offering `mss`, with a correct checksum.
fn syn(src: Ipv4Addr, dst: Ipv4Addr, mss: u16) -> Vec<u8> {
    let mut tcp = vec![
        0x9c, 0x40, 0x13, 0x8b, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0,
    ];
    tcp.extend_from_slice(&[0, 0, 0, 0, 2, 4]);
    tcp.extend_from_slice(&mss.to_be_bytes());
    let c = tcp_checksum(src, dst, &tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 6, &tcp)
}

fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&u16::try_from(tcp.len()).unwrap().to_be_bytes());
    pseudo.extend_from_slice(tcp);
    checksum(&pseudo)
}

/// The MSS of a SYN, and whether its IPv4 and TCP checksums verify.
fn syn_mss(ip: &[u8]) -> (u16, bool) {
    let tcp = &ip[20..];
    let mss = u16::from_be_bytes([tcp[22], tcp[23]]);
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    (
        mss,
        checksum(&ip[..20]) == 0 && tcp_checksum(src, dst, tcp) == 0,
    )
}

fn all_up(w: &World) -> bool {
    w.clients.iter().all(|c| c.c.is_up())
}

// ---- tests ---------------------------------------------------------------------------------------

#[test]
fn twenty_clients_up_with_traffic_both_ways() {
    let mut w = World::new();
    for n in 0..20u8 {
        w.add(10 + n, n % 2 == 0, n % 4 == 1, None);
    }
    w.run_for(Duration::from_secs(5));
    assert!(all_up(&w), "not all up");
    let mut addrs: Vec<Ipv4Addr> = w.clients.iter().map(Client::address).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 20, "every client has its own address");
    for i in 0..w.clients.len() {
        let me = w.clients[i].address();
        let next = w.clients[(i + 1) % 20].address();
        assert!(w.send(i, &ping(me, LAN_HOST, i as u16)));
        assert!(w.send(i, &ping(me, GATEWAY, 1000 + i as u16)));
        // Client to client: the request reaches the next client's TUN device unchanged.
        let p = ping(me, next, 2000 + i as u16);
        assert!(w.send(i, &p));
        assert!(
            w.clients[(i + 1) % 20].got.contains(&p),
            "client {i} -> {} not delivered",
            (i + 1) % 20
        );
    }
    for (i, c) in w.clients.iter().enumerate() {
        let seq = i as u16;
        assert!(
            c.got.iter().any(|p| is_echo_reply(p, LAN_HOST, seq)),
            "client {i}: no echo reply from the LAN host"
        );
        assert!(
            c.got.iter().any(|p| is_echo_reply(p, GATEWAY, 1000 + seq)),
            "client {i}: no echo reply from 10.77.0.1"
        );
        assert_eq!(c.c.stats().esp_errors, 0);
    }
    assert_eq!(w.lan.len(), 20);
    assert_eq!(w.gw.stats().esp_auth_failed, 0);
}

#[test]
fn two_hours_of_rekeys_under_traffic() {
    // ESP 10 min (rekeyed at 8 min), IKE 30 min (rekeyed at 24 min); a ping every 5 s.
    let mut w = World::new();
    w.add(10, true, false, Some((1800, 600)));
    w.add(11, false, false, Some((1800, 600)));
    w.run_for(Duration::from_secs(2));
    assert!(all_up(&w));
    let mut sent = 0u16;
    for _ in 0..(2 * 3600 / 5) {
        for i in 0..2 {
            let me = w.clients[i].address();
            w.send(i, &ping(me, LAN_HOST, sent));
        }
        sent += 1;
        w.run_for(Duration::from_secs(5));
    }
    for (i, c) in w.clients.iter().enumerate() {
        let answered = (0..sent)
            .filter(|&s| c.got.iter().any(|p| is_echo_reply(p, LAN_HOST, s)))
            .count();
        assert_eq!(answered, usize::from(sent), "client {i} lost pings");
        let p2 = c.count(|e| matches!(e, Event::Phase2Rekeyed { .. }));
        let p1 = c.count(|e| matches!(e, Event::Phase1Rekeyed { .. }));
        assert!(p2 >= 14, "client {i}: {p2} phase-2 rekeys");
        assert!(p1 >= 4, "client {i}: {p1} phase-1 rekeys");
        assert!(c.c.is_up(), "client {i} went down: {:?}", c.c.ending());
        assert_eq!(c.c.spis().len(), 1, "client {i} keeps old SAs");
    }
    assert_eq!(w.gw.sa_count(), 2, "the server keeps old SAs");
}

#[test]
fn mss_clamped_both_ways() {
    let mut w = World::new();
    let i = w.add(10, false, false, None);
    w.run_for(Duration::from_secs(2));
    let me = w.clients[i].address();
    assert!(w.send(i, &syn(me, LAN_HOST, 1460)));
    let (mss, sums) = syn_mss(w.lan.last().expect("SYN at the LAN"));
    assert!(mss <= 1360, "client -> LAN SYN arrived with MSS {mss}");
    assert!(sums, "checksums after clamping");
    w.route_to_tun(&syn(LAN_HOST, me, 1460));
    while w.shuttle() {}
    let got = w.clients[i].got.last().expect("SYN at the client").clone();
    let (mss, sums) = syn_mss(&got);
    assert!(mss <= 1360, "LAN -> client SYN arrived with MSS {mss}");
    assert!(sums);
    // A SYN already small enough is left alone.
    assert!(w.send(i, &syn(me, LAN_HOST, 1200)));
    assert_eq!(syn_mss(w.lan.last().unwrap()), (1200, true));
}

#[test]
fn clean_stop_and_server_shutdown() {
    let mut w = World::new();
    for n in 0..4u8 {
        w.add(10 + n, n % 2 == 0, false, None);
    }
    w.run_for(Duration::from_secs(2));
    assert!(all_up(&w));
    assert_eq!(w.gw.tunnels(), 4);

    // Client 0 stops: LCP Terminate, CDN, StopCCN, Deletes; the server lets go of everything.
    let now = w.now;
    w.clients[0].c.close(now);
    w.run_for(Duration::from_secs(3));
    assert!(w.clients[0].c.is_finished());
    assert_eq!(w.clients[0].c.ending(), Some(&Ending::Stopped));
    assert_eq!(w.gw.tunnels(), 3);
    assert_eq!(w.gw.sa_count(), 3);

    // The server shuts down as the shell does: sessions and tunnels first, then the SAs.
    let now = w.now;
    w.gw.shutdown(now);
    w.run_for(Duration::from_secs(1));
    w.ike.shutdown();
    w.run_for(Duration::from_secs(5));
    let mut reasons = HashMap::new();
    for c in &w.clients[1..] {
        assert!(c.c.is_finished(), "{:?}", c.c.ending());
        match c.c.ending() {
            Some(Ending::Down { reason, .. }) => *reasons.entry(reason.clone()).or_insert(0) += 1,
            other => panic!("expected DOWN, got {other:?}"),
        }
    }
    // The server says goodbye with LCP Terminate first.
    assert_eq!(reasons.get("lcp-terminate"), Some(&3), "{reasons:?}");
}
