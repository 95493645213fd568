//! The full-chain client (`full_client::run`: IKE + ESP + L2TP LAC + PPP) against the real tokio
//! shell with its session layer on loopback UDP: MS-CHAPv2 and PAP logins up to the address, a
//! wrong password (MS-CHAPv2 error 691) and a wrong PSK each failing at its stage, a clean stop
//! (LCP Terminate, CDN, StopCCN, Deletes), phase-1 and phase-2 rekeys with short lifetimes, and
//! the server's shutdown reaching a client that is up.
//! Unprivileged: high ports, UDP-encapsulated ESP, no TUN device.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use roadgate::aaa::local::{UserOptions, UserStore};
use roadgate_tests::full_client::{Args, Outcome, Stage, run};
use roadgate_tests::loopback::LoopbackServer;
use roadgate_tests::session_pair;

const PSK: &[u8] = b"full-chain-psk";

/// The shell with its session layer (users alice and bob, MS-CHAPv2 and PAP) and no TUN device.
fn start_server() -> LoopbackServer {
    let users = UserStore::in_memory().unwrap();
    for (u, p) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        users.add(u, p, &UserOptions::default()).unwrap();
    }
    let sessions = session_pair::server(
        session_pair::pool(10, 20),
        vec![
            pppd_lite::AuthProtocol::MsChapV2,
            pppd_lite::AuthProtocol::Pap,
        ],
    );
    LoopbackServer::start(PSK, false, move |shell| {
        shell.with_sessions(
            sessions,
            users,
            roadgate::dataplane::Config {
                tun: false,
                ..roadgate::dataplane::Config::default()
            },
        )
    })
}

/// A client on 127.0.0.N with the server's port numbers, as a real client binds them.
fn args(srv: &LoopbackServer, n: u8, user: &str, password: &str) -> Args {
    roadgate_tests::loopback::full_client_args(srv, PSK, n, user, password)
}

/// Runs a client to its end; its outcome and progress lines.
fn connect(rt: &tokio::runtime::Runtime, a: &Args) -> (Outcome, Vec<String>) {
    let mut lines = Vec::new();
    let outcome = rt.block_on(async {
        run(a, std::future::pending(), &mut |l: &str| {
            lines.push(l.to_owned())
        })
        .await
    });
    (outcome, lines)
}

fn has(lines: &[String], prefix: &str) -> bool {
    lines.iter().any(|l| l.starts_with(prefix))
}

#[test]
fn full_chain_over_loopback() {
    let srv = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // MS-CHAPv2, up to the address, then a clean stop.
    let (outcome, lines) = connect(&rt, &args(&srv, 2, "alice", "alice-pw"));
    assert_eq!(outcome, Outcome::Stopped, "{lines:#?}");
    for p in ["IKE up ", "L2TP up tunnel=", "PPP up ip=10.77.0.", "CLOSED"] {
        assert!(has(&lines, p), "no {p:?} line: {lines:#?}");
    }
    assert!(lines.iter().any(|l| l.contains("encap=yes")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PPP up") && l.contains("peer=10.77.0.1")),
        "{lines:#?}"
    );

    // PAP.
    let mut pap = args(&srv, 3, "bob", "bob-pw");
    pap.client.pap = true;
    let (outcome, lines) = connect(&rt, &pap);
    assert_eq!(outcome, Outcome::Stopped, "{lines:#?}");
    assert!(has(&lines, "PPP up ip=10.77.0."), "{lines:#?}");

    // A wrong password: MS-CHAPv2 failure 691, stage auth.
    let (outcome, lines) = connect(&rt, &args(&srv, 4, "bob", "not-bobs"));
    match &outcome {
        Outcome::Failed {
            stage: Stage::Auth,
            reason,
        } => assert!(reason.contains("E=691"), "{reason}"),
        other => panic!("expected an auth failure, got {other:?}: {lines:#?}"),
    }
    assert!(!has(&lines, "PPP up"), "{lines:#?}");

    // A wrong pre-shared key: stage ike.
    let mut wrong = args(&srv, 5, "alice", "alice-pw");
    wrong.client.psk = b"not-the-psk".to_vec();
    let (outcome, lines) = connect(&rt, &wrong);
    match &outcome {
        Outcome::Failed {
            stage: Stage::Ike,
            reason,
        } => assert!(reason.contains("pre-shared key"), "{reason}"),
        other => panic!("expected an IKE failure, got {other:?}: {lines:#?}"),
    }

    // Short lifetimes: phase 2 rekeyed at 2.4 s and 4.8 s, phase 1 at 4 s (after the Quick Mode
    // under way, if they meet); the old IPsec SAs are deleted, and the link stays up throughout.
    let mut rekey = args(&srv, 7, "alice", "alice-pw");
    rekey.exit_after_up = false;
    rekey.hold = Some(Duration::from_secs(6));
    rekey.client.esp_lifetime = Duration::from_secs(3);
    rekey.client.ike_lifetime = Duration::from_secs(5);
    let (outcome, lines) = connect(&rt, &rekey);
    assert_eq!(outcome, Outcome::Stopped, "{lines:#?}");
    let count = |p: &str| lines.iter().filter(|l| l.starts_with(p)).count();
    assert!(count("REKEY phase=2") >= 2, "{lines:#?}");
    assert_eq!(count("REKEY phase=1"), 1, "{lines:#?}");
    assert!(!has(&lines, "DOWN"), "{lines:#?}");

    // A client that stays up, and the server shutting down: the client is told and says so.
    let mut hold = args(&srv, 6, "alice", "alice-pw");
    hold.exit_after_up = false;
    hold.hold = Some(Duration::from_secs(60));
    let (tx, rx) = std::sync::mpsc::channel::<(Outcome, Vec<String>)>();
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tx.send(connect(&rt, &hold)).unwrap();
    });
    // Give it time to come up, then stop the server.
    std::thread::sleep(Duration::from_secs(3));
    srv.stop();
    let (outcome, lines) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("client ended");
    client.join().unwrap();
    assert!(has(&lines, "PPP up"), "{lines:#?}");
    match &outcome {
        Outcome::Down { .. } => assert_eq!(outcome.exit_code(), 3),
        other => panic!("expected DOWN, got {other:?}: {lines:#?}"),
    }
    assert!(has(&lines, "DOWN reason="), "{lines:#?}");
}
