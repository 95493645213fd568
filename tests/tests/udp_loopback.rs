//! The real tokio shell (`roadgate::io::Shell`) on loopback UDP with the test client over real
//! sockets: IKE on the IKE port, the float to the NAT-T port, UDP-encapsulated ESP both ways (the
//! shell's test echo), Deletes. Unprivileged: high ports, no raw socket.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use roadgate::ike::crypto::DhGroup;
use roadgate_tests::loopback::{LO, LoopbackServer};
use roadgate_tests::udp_client::{Args, run};

fn client_args(server_ike: u16, server_natt: u16, psk: &[u8]) -> Args {
    // The client binds the same port numbers on another loopback address, as a real client does.
    Args {
        server: LO,
        local: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        psk: psk.to_vec(),
        ike_port: server_ike,
        natt_port: server_natt,
        count: 10,
        force_encap: true,
        timeout: Duration::from_secs(20),
        group: DhGroup::Ecp256,
    }
}

#[test]
fn ike_and_esp_over_loopback_udp() {
    let server = LoopbackServer::start(b"loopback-psk", true, Ok);
    let (ike_port, natt_port) = (server.ike_port, server.natt_port);
    let summary = run(&client_args(ike_port, natt_port, b"loopback-psk")).expect("client run");
    assert!(
        summary.contains("ike=up esp=up encap=yes echo=10/10"),
        "{summary}"
    );

    // A second client with another group, then a wrong PSK that must fail cleanly.
    let mut other = client_args(ike_port, natt_port, b"loopback-psk");
    other.local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    other.group = DhGroup::Modp2048;
    let summary = run(&other).expect("second client");
    assert!(summary.contains("echo=10/10"), "{summary}");
    let mut wrong = client_args(ike_port, natt_port, b"not-the-psk");
    wrong.local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
    wrong.timeout = Duration::from_secs(10);
    let err = run(&wrong).expect_err("a wrong PSK must fail");
    assert!(
        err.contains("PeerNotify(24)"),
        "client must see AUTHENTICATION-FAILED, got {err}"
    );

    server.stop();
}
