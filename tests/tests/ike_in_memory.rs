//! End-to-end IKEv1 tests in memory: the test client's initiator against the server's responder.

use std::net::Ipv4Addr;

use roadgate::ike::Event;
use roadgate_tests::initiator::InitiatorEvent;
use roadgate_tests::pair::{Pair, PairEvent, client_config, server_config};

#[test]
fn smoke() {
    let mut pair = Pair::new(server_config(), 1);
    let c = pair.add_client(client_config(Ipv4Addr::new(198, 51, 100, 10), 7), None);
    let r = pair.connect(c);
    for e in &pair.log {
        eprintln!("{e:?}");
    }
    let _ = (InitiatorEvent::DpdAck { seq: 0 }, PairEvent::ClientRx { client: 0, rx: roadgate_tests::client::Received::Ike });
    let _: Option<&Event> = None;
    assert!(r.is_some());
}
