//! The real tokio shell (`roadgate::io::Shell`) on loopback UDP with the test client over real
//! sockets: IKE on the IKE port, the float to the NAT-T port, UDP-encapsulated ESP both ways (the
//! shell's test echo), Deletes; over IPv4 and IPv6, on specific and on wildcard addresses. The
//! test client fails on any datagram that does not come from the address it talks to, and on
//! echoed UDP over IPv6 without a right checksum. Unprivileged: high ports, no raw socket.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use roadgate::ike::crypto::DhGroup;
use roadgate_tests::loopback::{LO, LO6, LoopbackServer, free_port};
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
        local_ports: None,
        raw_esp: false,
    }
}

/// A client on `local` for the server at `server`, on ports of its own (a wildcard listener or
/// `::1`, the only IPv6 loopback address, leaves it no other way to share the host).
fn client_to(server: IpAddr, local: IpAddr, ports: (u16, u16), psk: &[u8]) -> Args {
    Args {
        server,
        local,
        local_ports: Some((free_port(), free_port())),
        ..client_args(ports.0, ports.1, psk)
    }
}

/// Starts the shell on `addrs`, then runs one client per (address asked, client address), each
/// on ports of its own: each must echo 10 datagrams through ESP, every reply from the address
/// asked.
fn clients_against(addrs: &[IpAddr], psk: &[u8], clients: &[(IpAddr, IpAddr)]) {
    let server = LoopbackServer::start_on(addrs, psk, true, Ok);
    let ports = (server.ike_port, server.natt_port);
    for &(asked, local) in clients {
        let summary = run(&client_to(asked, local, ports, psk))
            .unwrap_or_else(|e| panic!("client {local} -> {asked}: {e}"));
        assert!(
            summary.contains(&format!(
                "ike=up esp=up encap=yes echo=10/10 replies_from={asked}"
            )),
            "{summary}"
        );
    }
    server.stop();
}

#[test]
fn ike_and_esp_over_ipv6_loopback() {
    clients_against(&[LO6], b"loopback-v6-psk", &[(LO6, LO6)]);
}

/// The server on 0.0.0.0 and :: (side by side on the same ports); clients ask it on 127.0.0.1,
/// on 127.0.0.5 (another address of the host: every reply, IKE and ESP, must come from it, not
/// from the address the routing table would pick) and on ::1.
#[test]
fn wildcard_listeners_answer_from_the_address_asked() {
    let wildcards = [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    let v4 = |d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d));
    clients_against(
        &wildcards,
        b"wildcard-psk",
        &[(LO, v4(2)), (v4(5), v4(3)), (LO6, LO6)],
    );
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
