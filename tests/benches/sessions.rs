//! Session-layer figures (L2TP LNS + pppd-lite + local users), printed, not judged:
//! `cargo bench -p roadgate-tests --bench sessions` (`SESSIONS=N` to change the count).
//!
//! 1. Session setups per second on one core, server side only: the time spent inside the session
//!    layer and the SQLite user lookups for complete L2TP + PPP + MS-CHAPv2 + IPCP ladders driven
//!    in memory by the test LAC and a pppd-lite client (fake clock, no loss).
//! 2. Heap held per established session (live bytes of the whole process after the setups, less
//!    before, divided by the count: the clients' side is included, so this is an upper bound).
//! 3. The data path: one 1400-byte IPv4 packet in an L2TP data message through
//!    `Sessions::handle_l2tp` (L2TP header, tunnel and session lookup, PPP protocol field, source
//!    address check), with the heap allocations made in the loop, next to the ESP decryption of
//!    the same packet (AES-128-CBC + HMAC-SHA1-96) measured in the same run, the step before it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pppd_lite::pool::AddressPool;
use roadgate::esp::{Encryption, InboundSa, Integrity, OutboundSa, Suite};
use roadgate::l2tp::LnsConfig;
use roadgate_tests::lac::LacConfig;
use roadgate_tests::measure::{Counting, allocations, live};
use roadgate_tests::session_pair::{MSCHAP, SERVER_AUTH, SERVER_PPP, Spec, World, mk, server_with};

#[global_allocator]
static GLOBAL: Counting = Counting;

const PACKET: usize = 1400;

fn big_pool() -> AddressPool {
    AddressPool::builder()
        .range(Ipv4Addr::new(10, 77, 1, 0), Ipv4Addr::new(10, 77, 255, 255))
        .exclude(SERVER_PPP)
        .build()
        .unwrap()
}

fn specs(n: u64) -> Vec<Spec> {
    (1..=n)
        .map(|peer| {
            let (user, pw) = if peer % 2 == 0 {
                ("alice", "alice-pw")
            } else {
                ("bob", "bob-pw")
            };
            mk(peer, LacConfig::windows(), user, pw, MSCHAP)
        })
        .collect()
}

/// Runs `step` for about `duration`; returns calls per second.
fn rate(duration: Duration, mut step: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        for _ in 0..1024 {
            step();
        }
        n += 1024;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);

    // 1 and 2: setups and memory.
    let live_before = live();
    let wall = Instant::now();
    // Every client starts at the same instant of the fake clock: let them all be half-open at
    // once (the default bound, 256, would spread them over the clients' retransmissions).
    let lns = LnsConfig {
        max_half_open: n as usize,
        max_tunnels: n as usize + 16,
        ..LnsConfig::default()
    };
    let mut w = World::new(server_with(lns, big_pool(), SERVER_AUTH.to_vec()), specs(n));
    w.decision_delay = Some(Duration::ZERO);
    w.run(Duration::from_secs(3600), |w| w.ups.len() as u64 == n);
    let wall = wall.elapsed();
    assert_eq!(w.ups.len() as u64, n, "every session came up");
    let live_after = live();
    println!(
        "session setups (L2TP tunnel + call, LCP, MS-CHAPv2 with an SQLite lookup, IPCP): {n} in \
         {:.3} s server time = {:.0} setups/s on one core ({:.0}/s with the clients' side, {:.2} s wall)",
        w.server_time.as_secs_f64(),
        n as f64 / w.server_time.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
    );
    println!(
        "heap held per established session, clients' side included (upper bound): {:.1} KiB",
        (live_after - live_before) as f64 / n as f64 / 1024.0
    );

    // 3: the data path of one session.
    let c = &mut w.clients[0];
    let src = c.up.as_ref().unwrap().local;
    let mut ip = vec![0u8; PACKET];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(PACKET as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&[198, 51, 100, 7]);
    let frame = c.ppp.as_ref().unwrap().encapsulate_ipv4(&ip);
    let datagram = c.lac.send_data(c.session.unwrap(), &frame).unwrap();
    let (peer, port, now) = (c.peer, c.port, w.now);
    let allocs_before = allocations();
    let mut handled = 0u64;
    let l2tp_rate = rate(Duration::from_secs(2), || {
        if w.server
            .handle_l2tp(now, peer, port, black_box(&datagram))
            .is_some()
        {
            handled += 1;
        }
    });
    let allocs = allocations() - allocs_before;
    assert!(handled > 0, "the data packets reached the data plane");

    let suite = Suite {
        encryption: Encryption::AesCbc { key_len: 16 },
        integrity: Integrity::HmacSha1_96,
    };
    let keymat: Vec<u8> = (0..suite.keymat_len()).map(|i| i as u8 ^ 0x5a).collect();
    let head = suite.header_len();
    let inner = datagram.len() + 8;
    // Sealed outside the timing; each round decrypts fresh packets (the replay window refuses a
    // packet seen before) into a new inbound SA.
    const BATCH: usize = 20_000;
    let mut out = OutboundSa::new(9, suite, &keymat).unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut packets: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| {
                let mut buf = vec![0x11u8; head + inner + suite.max_trailer_len()];
                let sealed = out.encrypt(&mut buf, head..head + inner, 17).unwrap();
                buf[sealed].to_vec()
            })
            .collect();
        let inb = InboundSa::new(9, suite, &keymat).unwrap();
        let t0 = Instant::now();
        for p in &mut packets {
            black_box(inb.decrypt(black_box(p)).unwrap());
        }
        best = best.min(t0.elapsed().as_secs_f64() / BATCH as f64);
        out = OutboundSa::new(9, suite, &keymat).unwrap();
    }
    let esp_only = 1.0 / best;
    println!(
        "data path, {PACKET}-byte IPv4 packet: L2TP + PPP demux {:.1} M packets/s ({:.0} ns/packet, \
         {} heap allocations in {} packets); ESP AES-128-CBC/HMAC-SHA1 decryption of the same \
         packet {:.2} M packets/s ({:.0} ns): the L2TP/PPP step costs {:.1} % of the decryption",
        l2tp_rate / 1e6,
        1e9 / l2tp_rate,
        allocs,
        handled,
        esp_only / 1e6,
        1e9 / esp_only,
        100.0 * esp_only / l2tp_rate
    );
}
