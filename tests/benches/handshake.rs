//! Main Mode + Quick Mode handshakes per second on one core, server side only: the time spent
//! inside the responder's `handle_datagram` for complete PSK handshakes (Main Mode's 3 requests and
//! Quick Mode's 2), driven by the test initiator in memory. Printed next to `openssl speed` for the
//! same Diffie-Hellman group in the same run: a responder handshake does one key generation and one
//! shared-secret computation, so about half of openssl's derive rate is the ceiling DH alone allows.
//! Then a spoofed flood of Main Mode message 1s into a full half-open table (8192, the default):
//! message 1s handled per second (each evicts the oldest waiting SA and answers with message 2),
//! and the live heap the table holds, from a counting allocator (the memory bound of a flood).
//! Figures, not a pass/fail test: `cargo bench -p roadgate-tests --bench handshake`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use roadgate::ike::{self, PskStore, Responder};
use roadgate_tests::initiator::{self, Initiator, InitiatorConfig, P1Proposal};
use roadgate_tests::measure::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn handshakes(group: DhGroup, n: usize) -> (Duration, usize) {
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
    let cfg = ike::Config {
        psk: PskStore::with_default(b"bench-psk".to_vec()),
        dpd_interval: None,
        ..ike::Config::default()
    };
    let mut responder = Responder::new(Arc::new(cfg));
    let mut spent = Duration::ZERO;
    let mut done = 0;
    for i in 0..n {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 250) as u8 + 1)),
            500 + (i / 250) as u16,
        );
        let mut icfg = InitiatorConfig::new(client, server, b"bench-psk");
        icfg.ike_proposals = vec![P1Proposal::new(
            CipherAlg::AesCbc { key_len: 16 },
            HashAlg::Sha1,
            group,
        )];
        icfg.seed = i as u64;
        let mut init = Initiator::new(icfg);
        let now = Instant::now();
        init.start(now);
        for _ in 0..20 {
            let mut moved = false;
            while let Some(t) = init.poll_transmit() {
                moved = true;
                let t0 = Instant::now();
                responder.handle_datagram(now, t.remote, t.local, &t.data);
                spent += t0.elapsed();
            }
            while let Some(t) = responder.poll_transmit() {
                moved = true;
                init.handle_datagram(now, t.remote, t.local, &t.data);
            }
            while let Some(ev) = responder.poll_event() {
                if matches!(ev, ike::Event::ChildSaUp(_)) {
                    done += 1;
                }
            }
            while init.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    }
    (spent, done)
}

/// `openssl speed` op/s for the same DH computation, if openssl is there.
fn openssl_ops(alg: &str) -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "2", alg])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
}

/// Spoofed message 1s (a Windows-like offer) from distinct addresses into a responder whose
/// half-open table is full: (message 1s/s, live heap bytes before and after, half-open SAs,
/// deadlines held).
fn spoofed_flood(n: u32) -> (f64, i64, i64, usize, usize) {
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
    let cfg = ike::Config {
        psk: PskStore::with_default(b"bench-psk".to_vec()),
        dpd_interval: None,
        ..ike::Config::default()
    };
    let max = cfg.max_half_open as u32;
    let mut responder = Responder::new(Arc::new(cfg));
    let forged = InitiatorConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 500),
        server,
        b"bench-psk",
    );
    let mut seq = 0u32;
    let mut send = |responder: &mut Responder, count: u32| {
        let now = Instant::now();
        for _ in 0..count {
            let mut icky = [0u8; 8];
            icky[..4].copy_from_slice(&seq.to_be_bytes());
            icky[4..].copy_from_slice(b"spof");
            let (mm1, _, _) = initiator::main_mode_1(&forged, icky);
            let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | seq)), 500);
            responder.handle_datagram(now, server, src, &mm1);
            while responder.poll_transmit().is_some() {}
            seq += 1;
        }
    };
    let before = measure::live();
    send(&mut responder, 2 * max);
    let t0 = Instant::now();
    send(&mut responder, n);
    let spent = t0.elapsed();
    let after = measure::live();
    (
        f64::from(n) / spent.as_secs_f64(),
        before,
        after,
        responder.half_open_count(),
        responder.timer_count(),
    )
}

fn main() {
    let n: usize = std::env::var("HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    println!(
        "Main Mode + Quick Mode responder handshakes on one core ({n} each, PSK, AES-128/SHA1):"
    );
    for (group, alg) in [
        (DhGroup::Ecp256, "ecdhp256"),
        (DhGroup::Modp2048, "ffdh2048"),
        (DhGroup::Modp1024, ""),
    ] {
        let (spent, done) = handshakes(group, n);
        let rate = done as f64 / spent.as_secs_f64();
        let reference = if alg.is_empty() {
            None
        } else {
            openssl_ops(alg)
        };
        match reference {
            Some(ops) => println!(
                "  {:<10} {:>8.0} handshakes/s ({done} completed)   openssl speed {alg}: {ops:>8.0} derive/s   ratio {:.0}% (DH-bound ceiling ~50%)",
                group.name(),
                rate,
                100.0 * rate / ops
            ),
            None => println!(
                "  {:<10} {:>8.0} handshakes/s ({done} completed)   (no openssl reference for this group)",
                group.name(),
                rate
            ),
        }
    }
    let n = 200_000;
    let (rate, before, after, half_open, timers) = spoofed_flood(n);
    println!("Spoofed Main Mode message 1s into a full half-open table (in memory, one core):");
    println!(
        "  {rate:>8.0} message 1s/s handled (each evicts the oldest waiting SA and sends message 2; {n} measured)"
    );
    println!(
        "  live heap {:.1} MiB for {half_open} half-open SAs = {:.0} bytes each; {timers} deadlines held",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / half_open.max(1) as f64
    );
}
