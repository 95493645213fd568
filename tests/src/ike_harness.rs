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
