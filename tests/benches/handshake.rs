//! Main Mode + Quick Mode handshakes per second on one core, server side only: the time spent
//! inside the responder's `handle_datagram` for complete PSK handshakes (Main Mode's 3 requests and
//! Quick Mode's 2), driven by the test initiator in memory. Printed next to `openssl speed` for the
//! same Diffie-Hellman group in the same run: a responder handshake does one key generation and one
//! shared-secret computation, so about half of openssl's derive rate is the ceiling DH alone allows.
//! Figures, not a pass/fail test: `cargo bench -p roadgate-tests --bench handshake`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use roadgate::ike::{self, PskStore, Responder};
use roadgate_tests::initiator::{Initiator, InitiatorConfig, P1Proposal};

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
}
