//! Helpers shared by the in-memory IKEv1 tests (`tests/ike_in_memory.rs` and
//! `tests/ike_cert_in_memory.rs`) on top of a [`Pair`]: client addresses, connecting a client
//! or running it to its failure with the log in the panic message, and checking a negotiated
//! IPsec SA by its keys and by ESP traffic both ways.
//!
//! Every helper panics (with the pair's log) when what it waits for does not happen; they are
//! meant for tests, not for the load generator.

use std::net::Ipv4Addr;
use std::time::Duration;

use roadgate::ike::ChildSa;

use crate::client::Received;
use crate::initiator::{ChildInfo, FailReason, InitiatorEvent, Stage};
use crate::pair::{Pair, PairEvent};

/// The client address `198.51.100.n` (TEST-NET-2, RFC 5737).
pub fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, n)
}

/// The pair's event log, one event a line, each cut to 400 characters: for panic messages.
pub fn dump(pair: &Pair) -> String {
    pair.log
        .iter()
        .map(|e| format!("{e:?}"))
        .map(|s| s.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Connects client `c` (Main Mode and Quick Mode), panicking with the log on failure; returns
/// the client's and the server's view of the IPsec SA.
pub fn connect(pair: &mut Pair, c: usize) -> (ChildInfo, ChildSa) {
    match pair.connect(c) {
        Some(x) => x,
        None => panic!("client {c} did not connect; log:\n{}", dump(pair)),
    }
}

/// The client's (`cc`) and the server's (`sc`) view of an IPsec SA of client `c` agree (SPIs,
/// suite, KEYMAT both ways, UDP encapsulation), and L2TP goes through ESP both ways on it.
/// Panics with the log otherwise.
pub fn check_esp(pair: &mut Pair, c: usize, cc: &ChildInfo, sc: &ChildSa) {
    assert_eq!(cc.inbound_spi, sc.outbound_spi);
    assert_eq!(cc.outbound_spi, sc.inbound_spi);
    assert_eq!(cc.suite, sc.suite);
    assert_eq!(
        cc.inbound_keymat[..],
        sc.outbound_keymat[..],
        "client inbound / server outbound KEYMAT"
    );
    assert_eq!(
        cc.outbound_keymat[..],
        sc.inbound_keymat[..],
        "client outbound / server inbound KEYMAT"
    );
    assert_eq!(cc.udp_encap, sc.udp_encap);
    let up = format!("up {} {}", c, cc.inbound_spi).into_bytes();
    assert!(pair.client_send_l2tp_on(c, cc.inbound_spi, &up));
    let want = up.clone();
    let spi = sc.inbound_spi;
    assert!(
        pair.run_for(Duration::from_secs(5), |e| matches!(e, PairEvent::ServerL2tp { spi: s, payload, .. } if *s == spi && *payload == want)),
        "server did not open the client's ESP; log:\n{}",
        dump(pair)
    );
    let down = format!("down {} {}", c, cc.inbound_spi).into_bytes();
    assert!(pair.server_send_l2tp(sc.inbound_spi, &down));
    let cspi = cc.inbound_spi;
    assert!(
        pair.run_for(Duration::from_secs(5), |e| matches!(e, PairEvent::ClientRx { client, rx: Received::L2tp { spi: s, payload, .. } } if *client == c && *s == cspi && *payload == down)),
        "client did not open the server's ESP; log:\n{}",
        dump(pair)
    );
}

/// Client `c`'s first `Failed` event so far: the stage and the reason.
pub fn client_failure(pair: &Pair, c: usize) -> Option<(Stage, FailReason)> {
    pair.client_events(c).into_iter().find_map(|e| match e {
        InitiatorEvent::Failed { stage, reason } => Some((*stage, reason.clone())),
        _ => None,
    })
}

/// Runs the pair until client `c` fails and returns its [`client_failure`]; panics with the
/// log if it never does.
pub fn run_to_failure(pair: &mut Pair, c: usize) -> (Stage, FailReason) {
    pair.run_until(|e| matches!(e, PairEvent::Client(i, InitiatorEvent::Failed { .. }) if *i == c));
    match client_failure(pair, c) {
        Some(f) => f,
        None => panic!("client {c} did not fail; log:\n{}", dump(pair)),
    }
}

/// Connects client `c` like [`connect`], with the server in deferred-jobs mode: every handshake
/// job the server queues runs on a worker thread (`std::thread`), and its result goes back
/// through `Responder::job_done`. Returns the client's and the server's view of the IPsec SA
/// and how many jobs the worker ran. Panics with the log when the client does not connect.
pub fn connect_deferred(pair: &mut Pair, c: usize) -> (ChildInfo, ChildSa, usize) {
    use roadgate::ike::{Job, JobDone};
    use std::sync::mpsc;

    pair.server.set_deferred_jobs(true);
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (done_tx, done_rx) = mpsc::channel::<JobDone>();
    let caller = std::thread::current().id();
    let worker = std::thread::spawn(move || {
        let mut ran = 0usize;
        for job in job_rx {
            assert_ne!(std::thread::current().id(), caller);
            ran += 1;
            if done_tx.send(job.run()).is_err() {
                break;
            }
        }
        ran
    });
    let mut client_child: Option<ChildInfo> = None;
    let mut server_child: Option<ChildSa> = None;
    for _ in 0..4000 {
        pair.run_for(Duration::from_millis(50), |ev| {
            match ev {
                PairEvent::Client(i, InitiatorEvent::ChildSaUp(info)) if *i == c => {
                    client_child = Some((**info).clone());
                }
                PairEvent::Server(roadgate::ike::Event::ChildSaUp(ch)) => {
                    server_child = Some((**ch).clone());
                }
                _ => {}
            }
            false
        });
        if let (Some(cc), Some(sc)) = (&client_child, &server_child)
            && sc.outbound_spi == cc.inbound_spi
        {
            break;
        }
        while let Some(job) = pair.server.poll_job() {
            let (Ok(()), Ok(done)) = (job_tx.send(job), done_rx.recv()) else {
                panic!("the job worker thread is gone; log:\n{}", dump(pair));
            };
            let now = pair.now;
            pair.server.job_done(now, done);
        }
    }
    drop(job_tx);
    let Ok(ran) = worker.join() else {
        panic!("the job worker thread panicked");
    };
    match (client_child, server_child) {
        (Some(cc), Some(sc)) if sc.outbound_spi == cc.inbound_spi => (cc, sc, ran),
        _ => panic!(
            "client {c} did not connect in deferred mode; log:\n{}",
            dump(pair)
        ),
    }
}

/// Main Mode message 3 of a forged initiator: the KE payload `ke` (any length, for bad-KE
/// floods) and a 16-byte nonce, in clear under the cookies `icky` and `rcky`.
pub fn forged_mm3(icky: [u8; 8], rcky: [u8; 8], ke: &[u8]) -> Vec<u8> {
    use crate::wire::{self, Header, exchange, payload};
    let mut chain = wire::Chain::new();
    chain.push(payload::KE, ke.to_vec());
    chain.push(payload::NONCE, vec![0x42; 16]);
    let header = Header {
        icky,
        rcky,
        next: 0,
        version: 0x10,
        exchange: exchange::MAIN,
        flags: 0,
        mid: 0,
        length: 0,
    };
    wire::message(header, &chain)
}
