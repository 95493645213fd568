//! The whole server chain in memory: the real IKE Responder and the data plane Gateway (sessions,
//! LNS, pppd-lite, the pool, local users in SQLite) against full-chain clients (IKE + ESP + LAC +
//! PPP) on a fake clock, through `roadgate_tests::chain_world`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use roadgate::dataplane;
use roadgate_tests::chain_world::*;
use roadgate_tests::full_client::{Ending, Event};
use roadgate_tests::session_pair::SERVER_PPP;

const MINUTE: Duration = Duration::from_secs(60);

/// A world with clients `users` (user, password) on their own addresses, all up.
fn world_up(server: Server, users: &[(&str, &str)]) -> ChainWorld {
    let mut w = ChainWorld::new(server, 1);
    for (n, (u, p)) in users.iter().enumerate() {
        w.add_client(client_config(n as u64, client_ip(n as u32), u, p), None);
    }
    assert!(w.run_until_up(MINUTE), "not up: {:?}", events(&w));
    w
}

fn events(w: &ChainWorld) -> Vec<Vec<String>> {
    w.clients
        .iter()
        .map(|c| c.events.iter().map(Event::line).collect())
        .collect()
}

fn addr(w: &ChainWorld, i: usize) -> Ipv4Addr {
    w.clients[i].address().expect("up")
}

#[test]
fn ip_goes_both_ways_byte_exact() {
    let mut w = world_up(server(), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let (a, b) = (addr(&w, 0), addr(&w, 1));
    assert_ne!(a, b);
    assert_eq!(w.server.gw.sessions().len(), 2);
    // Client → LAN, several sizes, both clients.
    let mut sent = Vec::new();
    for (k, len) in [28usize, 100, 576, 1400].into_iter().enumerate() {
        for (i, src) in [(0, a), (1, b)] {
            let p = udp_packet(src, LAN_HOST, len, k % 2 == 0, (k * 2 + i) as u16);
            assert!(w.client_send(i, &p));
            sent.push(p);
        }
    }
    w.run_for(Duration::from_millis(50));
    // Each client's packets in its order; the two clients' interleaved in any order.
    for src in [a, b] {
        let from = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
            v.iter()
                .filter(|p| p[12..16] == src.octets())
                .cloned()
                .collect()
        };
        assert!(
            from(&w.lan) == from(&sent),
            "the LAN got exactly what {src} sent"
        );
    }
    assert_eq!(w.lan.len(), sent.len());
    // LAN → client.
    for (k, len) in [28usize, 99, 1000, 1400].into_iter().enumerate() {
        for (i, dst) in [(0, a), (1, b)] {
            let p = udp_packet(LAN_HOST, dst, len, true, 100 + k as u16);
            assert_eq!(w.lan_send(&p), FromLan::Sent);
            w.run_for(Duration::from_millis(10));
            assert_eq!(
                w.clients[i].tun.last(),
                Some(&p),
                "client {i} got it unchanged"
            );
        }
    }
    assert_eq!(w.clients[0].tun.len(), 4);
    assert_eq!(w.clients[1].tun.len(), 4);
    let st = w.server.gw.stats();
    assert_eq!((st.to_tun, st.from_tun), (8, 8));
    // Traffic counters per session.
    let view = w.server.gw.sessions_view(w.now);
    for s in &view {
        assert!(s.up);
        assert_eq!(s.traffic.packets_in, 4);
        assert_eq!(s.traffic.packets_out, 4);
        assert!(s.esp.contains("ESP"), "{}", s.esp);
    }
    // Nothing for an address no session holds.
    let stray = udp_packet(LAN_HOST, Ipv4Addr::new(10, 77, 0, 98), 100, false, 1);
    assert_eq!(w.lan_send(&stray), FromLan::Dropped);
    assert_eq!(w.server.gw.stats().tun_no_session, 1);
}
