//! The whole server chain (IKE Responder + data plane Gateway: ESP, L2TP, PPP, sessions, MSS
//! clamping, local users in SQLite) in memory on one core, against full-chain clients
//! (`roadgate_tests::chain_world`). Figures, printed, not judged:
//! `cargo bench -p roadgate-tests --bench chain` (`CHAIN_BENCH_SECONDS`, default 2: the time
//! each throughput figure runs for; `CHAIN_MEMORY_SESSIONS`, default `1000,10000`).
//!
//! 1. Throughput of 1400-byte IPv4 packets through the chain, each direction on its own:
//!    client → LAN is `Gateway::esp_in` on ESP packets the client sealed (made beforehand, in
//!    order, so that the replay window takes them all); LAN → client is `Gateway::tun_in` on a
//!    packet copied into the buffer as a TUN read would. Rates are per second of this thread's
//!    CPU time, next to `openssl speed` (which also counts CPU time) for the same cipher and MAC
//!    at its 1024-byte block size, run in the same process: CBC + HMAC combined as
//!    1/(1/cipher + 1/mac), decryption for client → LAN and encryption for LAN → client.
//! 2. Connects per second: clients doing Main Mode + Quick Mode, L2TP, LCP, MS-CHAPv2 (an SQLite
//!    lookup) and IPCP until they have an address, in batches, with no latency. Server CPU time is
//!    the time inside the Responder's and Gateway's calls and the authentication decision; the
//!    whole-world figure includes the clients' side (as much Diffie-Hellman again).
//! 3. Heap per idle session with many sessions up: the bytes the Responder and the Gateway free
//!    when they are dropped (after the clients are gone), divided by the sessions.
//! 4. Data-plane workers: the same 16 clients forwarded by one `Worker` and by two on two threads
//!    (each client's packets on one worker, as the shell's SO_REUSEPORT sockets and TUN queues
//!    keep them), both directions. Each thread seals its own clients' packets (not timed), then
//!    forwards them, and measures its own rate in wall-clock time while the other runs; the
//!    rates add up, as `openssl speed -multi 2` adds its processes' (printed beside it, same
//!    run: what two cores give at all). `CHAIN_WORKER_PACKETS` (default 200) packets per client
//!    per round. The allocations made while forwarding are counted in the one-worker run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use roadgate::dataplane::worker::{EspIn, Update, Worker};
use roadgate::dataplane::{FromTun, HEADROOM, TAILROOM};
use roadgate::esp::{Encryption, Integrity, Suite};
use roadgate::ike::crypto::DhGroup;
use roadgate::l2tp::LnsConfig;
use roadgate_tests::chain_world::{
    ChainWorld, LAN_HOST, Server, Slot, client_config, client_ip, dataplane_config, ike_config,
    pool, sessions, udp_packet,
};
use roadgate_tests::full_client::Datagram;
use roadgate_tests::measure::{Counting, allocations, live, thread_cpu_time};
use roadgate_tests::session_pair;

#[global_allocator]
static GLOBAL: Counting = Counting;

const PACKET: usize = 1400;
const GCM: Suite = Suite {
    encryption: Encryption::AesGcm16 { key_len: 16 },
    integrity: Integrity::None,
};
const MINUTE: Duration = Duration::from_secs(60);

/// A server for `n` clients: a pool of 10.77.0.0/16 and room for every tunnel.
fn big_server(n: usize) -> Server {
    let lns = LnsConfig {
        max_half_open: n + 16,
        max_tunnels: n + 16,
        ..LnsConfig::default()
    };
    let pool = pool(Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 255, 254));
    Server::new(
        ike_config(),
        dataplane_config(),
        sessions(lns, pool),
        session_pair::users(),
        0xbe9c,
    )
}

/// Connects clients `from..to` (each on its own address) in batches; returns how many are up.
fn connect(w: &mut ChainWorld, from: u32, to: u32, group: DhGroup) -> usize {
    const BATCH: u32 = 250;
    let mut next = from;
    while next < to {
        let end = (next + BATCH).min(to);
        for n in next..end {
            let (u, p) = if n % 2 == 0 {
                ("alice", "alice-pw")
            } else {
                ("bob", "bob-pw")
            };
            let mut cfg = client_config(u64::from(n), client_ip(n), u, p);
            cfg.group = group;
            w.add_client(cfg, None);
        }
        w.run_until_up(MINUTE);
        next = end;
    }
    w.clients.iter().filter(|c| c.client.is_up()).count()
}

fn quiet_world(server: Server) -> ChainWorld {
    let mut w = ChainWorld::new(server, 1);
    w.link.latency = Duration::ZERO;
    w.auth_delay = Duration::ZERO;
    w.tap = false;
    w.clock = thread_cpu_time;
    w
}

// ---- 1. throughput -------------------------------------------------------------------------

/// Bytes per second from `openssl speed -mr -bytes 1024` (CPU time), if openssl runs.
fn openssl_rate(seconds: u64, args: &[&str]) -> Option<f64> {
    let seconds = seconds.to_string();
    let out = Command::new("openssl")
        .args(["speed", "-mr", "-seconds", &seconds, "-bytes", "1024"])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("+F:"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<f64>().ok())
        .next_back()
}

/// The openssl limits for a suite, in bytes per second: (decryption side, encryption side).
fn openssl_limits(cipher: &str, mac: Option<&str>, seconds: u64) -> Option<(f64, f64, String)> {
    let enc = openssl_rate(seconds, &["-evp", cipher])?;
    let dec = openssl_rate(seconds, &["-evp", cipher, "-decrypt"])?;
    let mb = |x: f64| x / 1e6;
    Some(match mac {
        Some(m) => {
            let h = openssl_rate(seconds, &["-hmac", m])?;
            let both = |a: f64| 1.0 / (1.0 / a + 1.0 / h);
            (
                both(dec),
                both(enc),
                format!(
                    "openssl speed -evp {cipher}: enc {:.0} MB/s, dec {:.0} MB/s; -hmac {m}: {:.0} MB/s",
                    mb(enc),
                    mb(dec),
                    mb(h)
                ),
            )
        }
        None => (
            dec,
            enc,
            format!(
                "openssl speed -evp {cipher}: enc {:.0} MB/s, dec {:.0} MB/s",
                mb(enc),
                mb(dec)
            ),
        ),
    })
}

/// Client → LAN and LAN → client rates (packets per CPU second) of the chain for one client.
fn chain_rates(mut w: ChainWorld, seconds: f64) -> (f64, f64) {
    let me = w.clients[0].address().expect("up");
    let from = SocketAddr::new(IpAddr::V4(w.clients[0].ip), 0);
    let now = w.now;
    // Client → LAN: batches of packets the client sealed, in sequence order.
    const BATCH: usize = 20_000;
    let (mut made, mut done, mut spent) = (0usize, 0usize, Duration::ZERO);
    let mut id = 0u16;
    while spent.as_secs_f64() < seconds {
        let mut batch: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| {
                id = id.wrapping_add(1);
                let p = udp_packet(me, LAN_HOST, PACKET, false, id);
                let c = &mut w.clients[0].client;
                assert!(c.send_ip(now, &p));
                match c.poll_transmit() {
                    Some(Datagram::Esp { data, .. } | Datagram::Udp { data, .. }) => data,
                    None => panic!("the client sealed nothing"),
                }
            })
            .collect();
        made += batch.len();
        let s = &mut w.server;
        let t0 = thread_cpu_time();
        for p in &mut batch {
            if s.core.handle_esp(now, black_box(p), from).is_some() {
                done += 1;
            }
        }
        spent += thread_cpu_time() - t0;
    }
    assert_eq!(done, made, "every packet reached the TUN side");
    let up = done as f64 / spent.as_secs_f64();

    // LAN → client: the same packet read from the TUN device again and again.
    let packet = udp_packet(LAN_HOST, me, PACKET, false, 1);
    let mut buf = vec![0u8; HEADROOM + PACKET + TAILROOM];
    let s = &mut w.server;
    let (mut n, t0) = (0u64, thread_cpu_time());
    loop {
        for _ in 0..256 {
            buf[HEADROOM..HEADROOM + PACKET].copy_from_slice(&packet);
            match s.core.handle_tun(now, black_box(&mut buf), PACKET) {
                FromTun::Send(t) => {
                    black_box(t);
                }
                other => panic!("not sent: {other:?}"),
            }
        }
        n += 256;
        if (thread_cpu_time() - t0).as_secs_f64() >= seconds {
            break;
        }
    }
    let down = n as f64 / (thread_cpu_time() - t0).as_secs_f64();
    (up, down)
}

fn throughput(seconds: f64, openssl_seconds: Option<u64>) {
    println!(
        "1. Throughput on one core, {PACKET}-byte IPv4 packets through the whole chain (packets per \
         CPU second; Gbit/s of inner IP); limits from openssl speed at 1024-byte blocks (CPU time)"
    );
    let suites = [
        (
            "AES-128-CBC + HMAC-SHA1-96",
            Suite {
                encryption: Encryption::AesCbc { key_len: 16 },
                integrity: Integrity::HmacSha1_96,
            },
            "aes-128-cbc",
            Some("sha1"),
        ),
        (
            "AES-128-GCM-16",
            Suite {
                encryption: Encryption::AesGcm16 { key_len: 16 },
                integrity: Integrity::None,
            },
            "aes-128-gcm",
            None,
        ),
    ];
    for (name, suite, cipher, mac) in suites {
        let mut w = quiet_world(big_server(1));
        let mut cfg = client_config(0, client_ip(0), "alice", "alice-pw");
        cfg.group = DhGroup::Ecp256;
        cfg.esp = vec![suite];
        w.add_client(cfg, None);
        w.run_until_up(MINUTE);
        assert!(w.clients[0].client.is_up(), "{name}: the client is up");
        // One packet each way through the world first: the chain works and is byte-exact.
        let me = w.clients[0].address().unwrap();
        let p = udp_packet(me, LAN_HOST, PACKET, false, 0);
        w.client_send(0, &p);
        let q = udp_packet(LAN_HOST, me, PACKET, false, 0);
        w.lan_send(&q);
        w.run_for(Duration::from_millis(1));
        assert_eq!(w.lan.last(), Some(&p));
        assert_eq!(w.clients[0].tun.last(), Some(&q));
        let esp = w.server.core.gateway().sessions_view(w.now)[0].esp.clone();
        let (up, down) = chain_rates(w, seconds);
        let limits = openssl_seconds.and_then(|s| openssl_limits(cipher, mac, s));
        let gbit = |pps: f64| pps * (PACKET * 8) as f64 / 1e9;
        println!("  {name} (the client proposed it; the server chose {esp})");
        for (dir, pps, limit) in [
            ("client -> LAN (esp_in) ", up, limits.as_ref().map(|l| l.0)),
            (
                "LAN -> client (tun_in) ",
                down,
                limits.as_ref().map(|l| l.1),
            ),
        ] {
            match limit {
                Some(bytes) => {
                    let lim = bytes * 8.0 / 1e9;
                    println!(
                        "    {dir} {pps:>9.0} packets/s  {:>5.2} Gbit/s   cipher+MAC limit {lim:>5.2} Gbit/s   = {:>5.1} %",
                        gbit(pps),
                        100.0 * gbit(pps) / lim
                    );
                }
                None => println!("    {dir} {pps:>9.0} packets/s  {:>5.2} Gbit/s", gbit(pps)),
            }
        }
        match (&limits, openssl_seconds) {
            (Some(l), _) => println!("    ({})", l.2),
            (None, Some(_)) => println!("    (openssl speed did not run: absolute figures only)"),
            (None, None) => {}
        }
    }
}

// ---- 2. connects ---------------------------------------------------------------------------

fn connects(n: u32) {
    println!(
        "2. Connects per second on one core (Main Mode + Quick Mode, L2TP, LCP, MS-CHAPv2 with an \
         SQLite lookup, IPCP), {n} clients in batches of 250, no latency:"
    );
    for group in [DhGroup::Ecp256, DhGroup::Modp2048] {
        let mut w = quiet_world(big_server(n as usize));
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        let up = connect(&mut w, 0, n, group);
        let (wall, cpu) = (wall.elapsed(), thread_cpu_time() - cpu);
        assert_eq!(up, n as usize, "every client came up");
        println!(
            "  {:<10} {:>7.0} connects/s server CPU time ({:.3} s for {n})   {:>6.0}/s whole world \
             CPU time, clients included ({:.2} s; {:.2} s wall)",
            group.name(),
            f64::from(n) / w.server_time.as_secs_f64(),
            w.server_time.as_secs_f64(),
            f64::from(n) / cpu.as_secs_f64(),
            cpu.as_secs_f64(),
            wall.as_secs_f64(),
        );
    }
}

// ---- 3. memory -----------------------------------------------------------------------------

fn memory(counts: &[u32]) {
    println!(
        "3. Heap per idle session (bytes the Responder and the Gateway free when dropped, after \
         the clients are gone), ECP-256 clients:"
    );
    for &n in counts {
        let mut w = quiet_world(big_server(n as usize));
        let up = connect(&mut w, 0, n, DhGroup::Ecp256);
        assert_eq!(up, n as usize);
        let sessions = w.server.core.gateway().sessions().len();
        let Server { core, users } = w.into_server();
        let (ike, gw) = core.into_parts();
        let before = live();
        drop(ike);
        let after_ike = live();
        drop(gw);
        let after_gw = live();
        drop(users);
        let (r, g) = (before - after_ike, after_ike - after_gw);
        let kib = |b: i64| b as f64 / 1024.0 / f64::from(n);
        println!(
            "  {n:>6} sessions up ({sessions} in the table): {:>5.1} KiB per session = Responder \
             {:.1} KiB + Gateway {:.1} KiB   (total {:.1} MiB)",
            kib(r + g),
            kib(r),
            kib(g),
            (r + g) as f64 / 1024.0 / 1024.0
        );
    }
}

// ---- 4. workers ----------------------------------------------------------------------------

/// Each worker's clients and what it measured.
struct Share {
    worker: Worker,
    clients: Vec<Slot>,
    /// One packet to each of its clients' addresses (the TUN direction).
    to: Vec<Vec<u8>>,
}

/// One worker thread: rounds of `per_client` packets from each of its clients, sealed by the
/// clients (not timed), then forwarded in (ESP to TUN) and out (TUN to ESP, the same number);
/// until `seconds` of forwarding. Returns (packets forwarded both ways, forwarding time,
/// allocations made while forwarding, by every thread).
fn worker_thread(
    mut s: Share,
    now: Instant,
    per_client: usize,
    seconds: f64,
) -> (usize, Duration, u64) {
    let mut buf = vec![0u8; HEADROOM + PACKET + TAILROOM];
    let mut esp: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(s.clients.len() * per_client);
    let (mut packets, mut spent, mut allocs) = (0usize, Duration::ZERO, 0u64);
    let mut id = 0u16;
    while spent.as_secs_f64() < seconds {
        esp.clear();
        for c in &mut s.clients {
            let me = c.address().expect("up");
            let from = SocketAddr::new(IpAddr::V4(c.ip), 0);
            for _ in 0..per_client {
                id = id.wrapping_add(1);
                assert!(
                    c.client
                        .send_ip(now, &udp_packet(me, LAN_HOST, PACKET, false, id))
                );
                match c.client.poll_transmit() {
                    Some(Datagram::Esp { data, .. } | Datagram::Udp { data, .. }) => {
                        esp.push((from, data));
                    }
                    None => panic!("the client sealed nothing"),
                }
            }
        }
        let a0 = allocations();
        let t0 = Instant::now();
        let mut up = 0usize;
        for (from, p) in &mut esp {
            if let EspIn::Tun(r) = s.worker.esp_in(now, black_box(p), *from) {
                black_box(r);
                up += 1;
            }
        }
        let mut down = 0usize;
        for _ in 0..per_client {
            for q in &s.to {
                buf[HEADROOM..HEADROOM + PACKET].copy_from_slice(q);
                if let FromTun::Send(t) = s.worker.tun_in(now, black_box(&mut buf), PACKET) {
                    black_box(t);
                    down += 1;
                }
            }
        }
        spent += t0.elapsed();
        allocs += allocations() - a0;
        assert_eq!(up, esp.len(), "every packet reached the TUN side");
        assert_eq!(down, esp.len(), "every packet from the TUN side was sealed");
        packets += up + down;
    }
    (packets, spent, allocs)
}

/// Packets per second with `k` workers over the same clients, each client on one worker (as
/// SO_REUSEPORT and the TUN queues keep them), every worker on its own thread at once. As
/// `openssl speed -multi` does, each thread measures its own rate while the others run, and the
/// rates add up (no barrier between rounds: each seals its own clients' packets). Returns the sum
/// and the allocations made while forwarding (the counting allocator sees every thread, sealing
/// included: a non-zero figure is an upper bound).
fn worker_rate(k: usize, clients: usize, per_client: usize, seconds: f64) -> (f64, u64) {
    let mut server = big_server(clients);
    server.core.set_external_workers(true);
    let mut w = quiet_world(server);
    for n in 0..clients as u32 {
        let mut cfg = client_config(u64::from(n), client_ip(n), "alice", "alice-pw");
        cfg.group = DhGroup::Ecp256;
        cfg.esp = vec![GCM];
        w.add_client(cfg, None);
    }
    w.run_until_up(MINUTE);
    assert!(
        w.clients.iter().all(|c| c.client.is_up()),
        "every client came up"
    );
    let updates: Vec<Update> = std::iter::from_fn(|| w.server.core.poll_update()).collect();
    let cfg = w.server.core.gateway().worker_config();
    let mut shares: Vec<Share> = (0..k)
        .map(|_| {
            let mut worker = Worker::new(cfg);
            for u in &updates {
                worker.update(u.clone());
            }
            Share {
                worker,
                clients: Vec::new(),
                to: Vec::new(),
            }
        })
        .collect();
    for (i, c) in std::mem::take(&mut w.clients).into_iter().enumerate() {
        let me = c.address().expect("up");
        shares[i % k]
            .to
            .push(udp_packet(LAN_HOST, me, PACKET, false, 1));
        shares[i % k].clients.push(c);
    }
    let now = w.now;
    let results: Vec<(usize, Duration, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|s| scope.spawn(move || worker_thread(s, now, per_client, seconds)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rate = results
        .iter()
        .map(|(p, t, _)| *p as f64 / t.as_secs_f64())
        .sum();
    (rate, results.iter().map(|r| r.2).max().unwrap_or(0))
}

fn workers(seconds: f64, smoke: bool) {
    let per_client = std::env::var("CHAIN_WORKER_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (clients, per_client) = if smoke { (4, 16) } else { (16, per_client) };
    println!(
        "4. Data-plane workers in memory: {clients} clients (AES-128-GCM-16), each on one worker, \
         {PACKET}-byte packets both ways, every worker on its own thread (packets per wall-clock \
         second; this machine has {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let (one, a1) = worker_rate(1, clients, per_client, seconds);
    let (two, _) = worker_rate(2, clients, per_client, seconds);
    let ratio = two / one;
    println!(
        "  1 worker : {one:>9.0} packets/s ({a1} allocations while forwarding; exact: one thread)"
    );
    println!("  2 workers: {two:>9.0} packets/s (sum of the two threads' rates)");
    println!(
        "  2 workers / 1 worker = {ratio:.2}x (issue 14's target: at least 1.8x: {})",
        if ratio >= 1.8 { "met" } else { "NOT met" }
    );
    // What two cores give at all here: openssl speed on one process and on two, same cipher.
    if !smoke {
        let s = seconds.ceil() as u64;
        let one = openssl_rate(s, &["-evp", "aes-128-gcm"]);
        let two = openssl_rate(s, &["-evp", "aes-128-gcm", "-multi", "2"]);
        match (one, two) {
            (Some(a), Some(b)) => println!(
                "  reference in the same run: openssl speed -evp aes-128-gcm, 2 processes / 1 = {:.2}x ({:.0} / {:.0} MB/s)",
                b / a,
                b / 1e6,
                a / 1e6
            ),
            _ => println!("  (openssl speed did not run: no reference for what two cores give)"),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --all-targets`) gets a quick
    // smoke run that only checks that the three parts work.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("CHAIN_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let have_openssl = !smoke
        && Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
    if smoke {
        println!("smoke run (no --bench argument): the figures below are not measurements");
    } else if !have_openssl {
        println!("openssl not on PATH: absolute figures only");
    }
    throughput(
        if smoke { 0.01 } else { seconds },
        have_openssl.then_some(seconds.ceil() as u64),
    );
    connects(if smoke { 4 } else { 1000 });
    let counts: Vec<u32> = if smoke {
        vec![4]
    } else {
        std::env::var("CHAIN_MEMORY_SESSIONS")
            .unwrap_or_else(|_| "1000,10000".into())
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    };
    memory(&counts);
    workers(if smoke { 0.01 } else { seconds }, smoke);
}
