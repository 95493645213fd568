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
    assert_eq!(w.server.core.gateway().sessions().len(), 2);
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
    let st = w.server.core.gateway().stats();
    assert_eq!((st.to_tun, st.from_tun), (8, 8));
    // Traffic counters per session.
    let view = w.server.core.gateway().sessions_view(w.now);
    for s in &view {
        assert!(s.up);
        assert_eq!(s.traffic.packets_in, 4);
        assert_eq!(s.traffic.packets_out, 4);
        assert!(s.esp.ends_with(" transport"), "raw ESP: {}", s.esp);
    }
    // Nothing for an address no session holds.
    let stray = udp_packet(LAN_HOST, Ipv4Addr::new(10, 77, 0, 98), 100, false, 1);
    assert_eq!(w.lan_send(&stray), FromLan::Dropped);
    assert_eq!(w.server.core.gateway().stats().tun_no_session, 1);
}

#[test]
fn a_client_spoofing_another_source_is_dropped_and_counted() {
    let mut w = world_up(server(), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let (a, b) = (addr(&w, 0), addr(&w, 1));
    // Alice claims Bob's address, then a foreign one; Bob sends as himself.
    let forged = udp_packet(b, LAN_HOST, 300, false, 1);
    let foreign = udp_packet(Ipv4Addr::new(192, 0, 2, 99), LAN_HOST, 300, false, 2);
    assert!(w.client_send(0, &forged));
    assert!(w.client_send(0, &foreign));
    let honest = udp_packet(b, LAN_HOST, 300, false, 3);
    assert!(w.client_send(1, &honest));
    w.run_for(Duration::from_millis(50));
    assert_eq!(w.lan, vec![honest], "only Bob's own packet reached the LAN");
    // The data-plane worker drops them (the session layer sees none).
    assert_eq!(w.server.core.gateway().stats().spoofed, 2);
    // Bob's session is undisturbed both ways, and Alice's own address still works.
    let to_bob = udp_packet(LAN_HOST, b, 500, false, 4);
    assert_eq!(w.lan_send(&to_bob), FromLan::Sent);
    let own = udp_packet(a, LAN_HOST, 64, false, 5);
    assert!(w.client_send(0, &own));
    w.run_for(Duration::from_millis(50));
    assert_eq!(w.clients[1].tun, vec![to_bob]);
    assert!(w.clients[0].tun.is_empty());
    assert_eq!(w.lan.last(), Some(&own));
    assert!(w.clients.iter().all(|c| c.client.is_up()));
    assert_eq!(w.server.core.gateway().sessions_view(w.now).len(), 2);
}

#[test]
fn tcp_syn_mss_is_clamped_both_ways_with_a_valid_checksum() {
    let mut w = world_up(server(), &[("alice", "alice-pw")]);
    let a = addr(&w, 0);
    let fits = dataplane::mss::mss_for_mtu(dataplane_config().mtu);
    assert_eq!(fits, 1360);
    // Client → LAN.
    let syn = tcp_syn(a, LAN_HOST, 1460);
    assert!(tcp_checksum_ok(&syn));
    assert!(w.client_send(0, &syn));
    w.run_for(Duration::from_millis(20));
    let got = w.lan.last().expect("the SYN reached the LAN").clone();
    assert_eq!(tcp_mss(&got), fits);
    assert!(tcp_checksum_ok(&got), "TCP checksum valid after clamping");
    assert_eq!(icmp_ip_checksum(&got), 0, "IP header untouched and valid");
    let mut expect = syn.clone();
    expect[42..44].copy_from_slice(&fits.to_be_bytes());
    assert_eq!(got[..36], expect[..36]);
    assert_eq!(
        got[38..],
        expect[38..],
        "only the MSS and the checksum changed"
    );
    // LAN → client.
    let syn = tcp_syn(LAN_HOST, a, 1460);
    assert_eq!(w.lan_send(&syn), FromLan::Sent);
    w.run_for(Duration::from_millis(20));
    let got = w.clients[0]
        .tun
        .last()
        .expect("the SYN reached the client")
        .clone();
    assert_eq!(tcp_mss(&got), fits);
    assert!(tcp_checksum_ok(&got));
    // A SYN that already fits passes unchanged, either way.
    let small = tcp_syn(a, LAN_HOST, 1200);
    assert!(w.client_send(0, &small));
    let small_in = tcp_syn(LAN_HOST, a, 536);
    assert_eq!(w.lan_send(&small_in), FromLan::Sent);
    w.run_for(Duration::from_millis(20));
    assert_eq!(w.lan.last(), Some(&small));
    assert_eq!(w.clients[0].tun.last(), Some(&small_in));
    assert_eq!(w.server.core.gateway().stats().mss_clamped, 2);
}

fn icmp_ip_checksum(p: &[u8]) -> u16 {
    checksum(&p[..20])
}

#[test]
fn a_df_packet_over_the_clients_mtu_from_the_lan_gets_icmp_frag_needed() {
    let mut w = world_up(server(), &[("alice", "alice-pw")]);
    let a = addr(&w, 0);
    let mtu = w.clients[0].client.network().unwrap().mtu;
    assert_eq!(mtu, 1400, "the PPP MTU both sides agreed");
    let big = udp_packet(LAN_HOST, a, usize::from(mtu) + 1, true, 9);
    let r = w.lan_send(&big);
    let FromLan::Icmp(icmp) = r else {
        panic!(
            "no ICMP answer: {r:?} {:?}",
            w.server.core.gateway().sessions_view(w.now)
        );
    };
    assert_eq!(
        w.lan.last(),
        Some(&icmp),
        "the answer goes back toward the TUN"
    );
    assert_eq!(icmp[9], 1, "ICMP");
    assert_eq!(
        icmp[12..16],
        SERVER_PPP.octets(),
        "from the server's tunnel address"
    );
    assert_eq!(icmp[16..20], LAN_HOST.octets(), "to the sender");
    assert_eq!(checksum(&icmp[..20]), 0, "IP header checksum");
    assert_eq!(
        (icmp[20], icmp[21]),
        (3, 4),
        "destination unreachable, fragmentation needed"
    );
    assert_eq!(
        u16::from_be_bytes([icmp[26], icmp[27]]),
        mtu,
        "next-hop MTU"
    );
    assert_eq!(checksum(&icmp[20..]), 0, "ICMP checksum");
    assert_eq!(icmp[28..56], big[..28], "quotes the original's headers");
    w.run_for(Duration::from_millis(20));
    assert!(
        w.clients[0].tun.is_empty(),
        "the big packet did not go through"
    );
    assert_eq!(w.server.core.gateway().stats().icmp_frag_needed, 1);
    // At the MTU, or without DF, it goes through.
    let at_mtu = udp_packet(LAN_HOST, a, usize::from(mtu), true, 10);
    assert_eq!(w.lan_send(&at_mtu), FromLan::Sent);
    let no_df = udp_packet(LAN_HOST, a, usize::from(mtu) + 1, false, 11);
    assert_eq!(w.lan_send(&no_df), FromLan::Sent);
    w.run_for(Duration::from_millis(20));
    assert_eq!(w.clients[0].tun.first(), Some(&at_mtu));
}

/// Where `what` first appears in what client `i` got from the server.
fn first(w: &ChainWorld, i: usize, what: Seen) -> Option<usize> {
    w.clients[i].seen.iter().position(|s| *s == what)
}

fn ended_by_server(w: &ChainWorld, i: usize) -> Option<String> {
    w.clients[i].events.iter().find_map(|e| match e {
        Event::Ended(Ending::Down { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
}

/// Client `i` saw LCP Terminate-Request, then a CDN, from the server.
fn terminated_then_cdn(w: &ChainWorld, i: usize) {
    let lcp = first(w, i, Seen::Lcp(LCP_TERMINATE_REQUEST)).expect("LCP Terminate-Request");
    let cdn = first(w, i, Seen::L2tp(L2TP_CDN)).expect("CDN");
    assert!(
        lcp < cdn,
        "LCP Terminate before the CDN: {:?}",
        w.clients[i].seen
    );
}

#[test]
fn idle_timeout_ends_the_idle_session_only_and_frees_its_address() {
    let dp = dataplane::Config {
        idle_timeout: Some(MINUTE),
        ..dataplane_config()
    };
    let mut w = world_up(server_with(dp), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let (a, b) = (addr(&w, 0), addr(&w, 1));
    assert_eq!(w.server.core.gateway().sessions().pool().in_use(), 2);
    // Bob sends a packet every 10 s; Alice nothing.
    for k in 0..5 {
        assert!(w.client_send(1, &udp_packet(b, LAN_HOST, 100, false, k)));
        w.run_for(Duration::from_secs(10));
    }
    assert!(w.clients[0].client.is_up(), "not before a minute (50 s)");
    for k in 5..12 {
        assert!(w.client_send(1, &udp_packet(b, LAN_HOST, 100, false, k)));
        w.run_for(Duration::from_secs(10));
    }
    assert_eq!(ended_by_server(&w, 0).as_deref(), Some("lcp-terminate"));
    terminated_then_cdn(&w, 0);
    assert!(w.clients[1].client.is_up(), "the busy session stays");
    assert!(
        w.clients[1]
            .seen
            .iter()
            .all(|s| *s != Seen::Lcp(LCP_TERMINATE_REQUEST))
    );
    let downs: Vec<_> = w.downs.iter().map(|d| d.2.as_str()).collect();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert!(downs[0].contains("idle timeout"), "{downs:?}");
    let pool = w.server.core.gateway().sessions().pool();
    assert!(!pool.is_allocated(a), "Alice's address is back in the pool");
    assert!(pool.is_allocated(b));
    assert_eq!(pool.in_use(), 1);
    assert_eq!(w.server.core.gateway().sessions().len(), 1);
}

#[test]
fn session_timeout_ends_sessions_however_busy() {
    let dp = dataplane::Config {
        session_timeout: Some(2 * MINUTE),
        ..dataplane_config()
    };
    let mut w = world_up(server_with(dp), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let (a, b) = (addr(&w, 0), addr(&w, 1));
    for k in 0..11 {
        assert!(w.client_send(0, &udp_packet(a, LAN_HOST, 100, false, k)));
        assert!(w.client_send(1, &udp_packet(b, LAN_HOST, 100, false, k)));
        w.run_for(Duration::from_secs(10));
    }
    assert!(w.clients.iter().all(|c| c.client.is_up()), "up at 110 s");
    // The sweep runs every 12 s (a tenth of the timeout): ended by 132 s.
    w.run_for(Duration::from_secs(25));
    for i in 0..2 {
        assert_eq!(ended_by_server(&w, i).as_deref(), Some("lcp-terminate"));
        terminated_then_cdn(&w, i);
    }
    assert!(
        w.downs.iter().all(|d| d.2.contains("session timeout")),
        "{:?}",
        w.downs
    );
    assert_eq!(w.server.core.gateway().sessions().pool().in_use(), 0);
}

#[test]
fn disconnect_by_id_and_by_user() {
    let mut w = world_up(
        server(),
        &[
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("alice", "alice-pw"),
        ],
    );
    let view = w.server.core.gateway().sessions_view(w.now);
    assert_eq!(view.len(), 3);
    let bob = view
        .iter()
        .find(|s| s.user.as_deref() == Some("bob"))
        .unwrap();
    assert_eq!(bob.address, Some(addr(&w, 1)));
    assert_eq!(w.disconnect("no-such-user"), 0);
    assert_eq!(w.disconnect(&bob.id.clone()), 1);
    w.run_for(Duration::from_secs(5));
    assert_eq!(ended_by_server(&w, 1).as_deref(), Some("lcp-terminate"));
    terminated_then_cdn(&w, 1);
    assert!(w.clients[0].client.is_up() && w.clients[2].client.is_up());
    assert_eq!(w.server.core.gateway().sessions().pool().in_use(), 2);
    // By user, in any case: both of Alice's sessions.
    assert_eq!(w.disconnect("ALICE"), 2);
    w.run_for(Duration::from_secs(5));
    for i in [0, 2] {
        assert_eq!(ended_by_server(&w, i).as_deref(), Some("lcp-terminate"));
        terminated_then_cdn(&w, i);
    }
    assert_eq!(w.server.core.gateway().sessions().pool().in_use(), 0);
    assert!(w.server.core.gateway().sessions_view(w.now).is_empty());
    // The clients tore down everything: no tunnel, no SA left on the server.
    assert_eq!(w.server.core.gateway().tunnels(), 0);
    assert_eq!(w.server.core.gateway().sa_count(), 0);
    assert!(w.clients.iter().all(|c| c.client.is_finished()));
}

/// Two clients, one behind a NAT, both up.
fn two_clients_one_behind_nat(seed: u64) -> ChainWorld {
    let mut w = ChainWorld::new(server(), seed);
    let nat = w.add_nat(Ipv4Addr::new(198, 51, 100, 7));
    w.add_client(client_config(0, client_ip(0), "alice", "alice-pw"), None);
    w.add_client(
        client_config(1, Ipv4Addr::new(192, 168, 77, 10), "bob", "bob-pw"),
        Some(nat),
    );
    assert!(w.run_until_up(MINUTE));
    w
}

/// Client `i` saw LCP Terminate-Request, CDN and StopCCN from the server in that order, and
/// then `deletes` Informational exchanges (the Deletes). Returns how many it saw.
fn shutdown_order(w: &ChainWorld, i: usize) -> usize {
    let seen = &w.clients[i].seen;
    let lcp = first(w, i, Seen::Lcp(LCP_TERMINATE_REQUEST)).expect("LCP Terminate");
    let cdn = first(w, i, Seen::L2tp(L2TP_CDN)).expect("CDN");
    let stop = first(w, i, Seen::L2tp(L2TP_STOPCCN)).expect("StopCCN");
    assert!(lcp < cdn && cdn < stop, "client {i}: {seen:?}");
    let deletes: Vec<usize> = (0..seen.len())
        .filter(|&k| seen[k] == Seen::Ike(ISAKMP_INFORMATIONAL))
        .collect();
    assert!(
        deletes.iter().all(|&d| d > stop),
        "client {i}: Deletes only after the StopCCN: {seen:?}"
    );
    assert_eq!(ended_by_server(w, i).as_deref(), Some("lcp-terminate"));
    deletes.len()
}

fn server_is_empty(w: &ChainWorld) {
    assert_eq!(w.server.core.gateway().tunnels(), 0);
    assert_eq!(w.server.core.gateway().sa_count(), 0);
    assert_eq!(w.server.core.ike().child_count(), 0);
    assert_eq!(w.server.core.ike().phase1_count(), 0);
    assert_eq!(w.server.core.gateway().sessions().pool().in_use(), 0);
    assert!(w.server.core.gateway().sessions().is_empty());
}

#[test]
fn shutdown_sends_lcp_terminate_cdn_stopccn_and_waits_for_the_acks_before_the_deletes() {
    let mut w = two_clients_one_behind_nat(3);
    let grace = Duration::from_secs(2);
    let t0 = w.elapsed();
    w.shutdown(grace);
    assert!(
        w.elapsed() - t0 < grace / 10,
        "the clients acknowledged the StopCCNs at once: no need to wait the grace out"
    );
    w.run_for(Duration::from_secs(5));
    for i in 0..2 {
        // The clients acknowledged and deleted their SAs themselves: any Delete of the
        // server's comes after the L2TP teardown.
        shutdown_order(&w, i);
        assert!(w.clients[i].client.is_finished());
    }
    server_is_empty(&w);
}

#[test]
fn shutdown_deletes_the_sas_of_clients_that_do_not_answer_after_the_grace() {
    let mut w = two_clients_one_behind_nat(8);
    // The clients hear the server, but nothing they send arrives.
    w.link.upstream_cut = true;
    let grace = Duration::from_secs(2);
    let t0 = w.elapsed();
    w.shutdown(grace);
    assert!(w.elapsed() - t0 >= grace, "waited for acknowledgements");
    w.run_for(Duration::from_secs(5));
    for i in 0..2 {
        let deletes = shutdown_order(&w, i);
        assert_eq!(deletes, 2, "client {i}: Deletes of the ESP and ISAKMP SAs");
    }
    server_is_empty(&w);
}

#[test]
fn phase2_rekey_under_traffic_loses_no_packet() {
    let mut w = ChainWorld::new(server(), 4);
    let mut cfg = client_config(0, client_ip(0), "alice", "alice-pw");
    cfg.esp_lifetime = Duration::from_secs(100);
    w.add_client(cfg, None);
    assert!(w.run_until_up(MINUTE));
    let a = addr(&w, 0);
    let spi_before = w.clients[0].client.spis();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    // 200 s of traffic both ways every 20 ms: two rekeys (at 80 s and 160 s of the SA's life).
    for k in 0..10_000u32 {
        let id = k as u16;
        let p = udp_packet(a, LAN_HOST, 200 + (k % 7) as usize * 150, false, id);
        assert!(w.client_send(0, &p), "client could not send packet {k}");
        up.push(p);
        let q = udp_packet(LAN_HOST, a, 300 + (k % 5) as usize * 200, false, id);
        assert_eq!(w.lan_send(&q), FromLan::Sent, "packet {k} to the client");
        down.push(q);
        w.run_for(Duration::from_millis(20));
    }
    w.run_for(Duration::from_millis(50));
    let stats = *w.clients[0].client.stats();
    assert!(stats.phase2_rekeys >= 2, "{stats:?}");
    assert_ne!(w.clients[0].client.spis(), spi_before);
    assert_eq!(w.lan.len(), up.len(), "client → LAN: none lost");
    assert!(w.lan == up, "client → LAN: all in order, byte-exact");
    assert_eq!(
        w.clients[0].tun.len(),
        down.len(),
        "LAN → client: none lost"
    );
    assert!(
        w.clients[0].tun == down,
        "LAN → client: all in order, byte-exact"
    );
    assert_eq!(w.server.core.gateway().stats().esp_unknown_spi, 0);
    assert_eq!(w.server.core.gateway().stats().esp_replayed, 0);
    assert_eq!(stats.esp_errors + stats.unknown_spi, 0);
    assert!(w.server.core.ike().stats().child_sas_established >= 3);
    // The old SAs are gone on both sides.
    assert_eq!(w.clients[0].client.spis().len(), 1);
    assert_eq!(w.server.core.gateway().sa_count(), 1);
}

#[test]
fn two_clients_behind_one_nat_get_two_sessions() {
    let mut w = ChainWorld::new(server(), 5);
    let public = Ipv4Addr::new(198, 51, 100, 7);
    let nat = w.add_nat(public);
    for (n, (u, p)) in [("alice", "alice-pw"), ("bob", "bob-pw")]
        .iter()
        .enumerate()
    {
        let ip = Ipv4Addr::new(192, 168, 77, 10 + n as u8);
        w.add_client(client_config(n as u64, ip, u, p), Some(nat));
    }
    assert!(w.run_until_up(MINUTE), "{:?}", events(&w));
    for c in &w.clients {
        let encap = c
            .events
            .iter()
            .any(|e| matches!(e, Event::IkeUp { encap: true, .. }));
        assert!(encap, "UDP-encapsulated ESP behind the NAT");
    }
    let view = w.server.core.gateway().sessions_view(w.now);
    assert_eq!(view.len(), 2);
    let remotes: Vec<SocketAddr> = view.iter().map(|s| s.client.unwrap()).collect();
    assert!(remotes.iter().all(|r| r.ip() == IpAddr::V4(public)));
    assert_ne!(remotes[0].port(), remotes[1].port());
    assert!(view.iter().all(|s| s.esp.ends_with("transport UDP-encap")));
    let (a, b) = (addr(&w, 0), addr(&w, 1));
    assert_ne!(a, b);
    for (i, me) in [(0, a), (1, b)] {
        let p = udp_packet(me, LAN_HOST, 700, true, i as u16);
        assert!(w.client_send(i, &p));
        w.run_for(Duration::from_millis(20));
        assert_eq!(w.lan.last(), Some(&p));
        let q = udp_packet(LAN_HOST, me, 900, true, 10 + i as u16);
        assert_eq!(w.lan_send(&q), FromLan::Sent);
        w.run_for(Duration::from_millis(20));
        assert_eq!(
            w.clients[i].tun,
            vec![q],
            "client {i} got its own packet only"
        );
    }
}

#[test]
fn a_flood_of_unknown_spis_and_garbage_disturbs_no_session() {
    use rand::{Rng, RngExt, SeedableRng};
    let mut w = two_clients_one_behind_nat(6);
    // The server's inbound SPIs: real SPIs with garbage behind them fail authentication.
    let real: Vec<u32> = w
        .clients
        .iter()
        .flat_map(|c| c.events.iter())
        .filter_map(|e| match e {
            Event::IkeUp { spi_out, .. } => Some(*spi_out),
            _ => None,
        })
        .collect();
    assert_eq!(real.len(), 2);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(66);
    for k in 0..3000u32 {
        let len = rng.random_range(0..300usize);
        let mut junk = vec![0u8; len];
        rng.fill_bytes(&mut junk);
        if k % 3 == 1 && len >= 8 {
            junk[..4].copy_from_slice(&real[k as usize % 2].to_be_bytes());
        }
        let src = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, rng.random_range(1..255))),
            rng.random_range(1..u16::MAX),
        );
        match k % 4 {
            0 => w.inject_to_server(src, NATT_PORT, false, &junk),
            1 => w.inject_to_server(src, NATT_PORT, true, &junk),
            2 => w.inject_to_server(src, IKE_PORT, false, &junk),
            _ => {
                // Looks like IKE behind the marker on 4500.
                let mut m = vec![0u8; 4];
                m.extend_from_slice(&junk);
                w.inject_to_server(src, NATT_PORT, false, &m);
            }
        }
        if k.is_multiple_of(100) {
            w.run_for(Duration::from_millis(100));
        }
    }
    let st = w.server.core.gateway().stats().clone();
    assert!(st.esp_unknown_spi > 100, "{st:?}");
    assert!(st.esp_auth_failed > 100, "{st:?}");
    assert!(
        w.server.core.ike().stats().malformed + w.server.core.ike().stats().unknown_cookies > 100
    );
    // Every session still passes traffic both ways.
    for i in 0..2 {
        let me = addr(&w, i);
        let p = udp_packet(me, LAN_HOST, 1000, false, 77);
        assert!(w.client_send(i, &p));
        w.run_for(Duration::from_millis(20));
        assert_eq!(w.lan.last(), Some(&p));
        let q = udp_packet(LAN_HOST, me, 1000, false, 78);
        assert_eq!(w.lan_send(&q), FromLan::Sent);
        w.run_for(Duration::from_millis(20));
        assert_eq!(w.clients[i].tun.last(), Some(&q));
        assert!(w.clients[i].client.is_up());
    }
    assert_eq!(w.server.core.gateway().sessions_view(w.now).len(), 2);
    assert!(w.downs.is_empty());
}

#[test]
fn thirty_percent_loss_still_brings_clients_up() {
    lossy(7);
}

/// Six clients (three behind a NAT) over a link that loses 30 % of datagrams and duplicates 5 %.
fn lossy(seed: u64) {
    let mut w = ChainWorld::new(server(), seed);
    w.link.loss = 0.3;
    w.link.duplicate = 0.05;
    let nat = w.add_nat(Ipv4Addr::new(198, 51, 100, 9));
    let config = |n: u32, attempt: u64| {
        let (u, p) = if n.is_multiple_of(2) {
            ("alice", "alice-pw")
        } else {
            ("bob", "bob-pw")
        };
        let ip = if n < 3 {
            client_ip(n)
        } else {
            Ipv4Addr::new(192, 168, 77, n as u8)
        };
        let mut cfg = client_config(u64::from(n) + 100 * attempt + 1000 * seed, ip, u, p);
        cfg.connect_timeout = Duration::from_secs(120);
        cfg
    };
    for n in 0..6u32 {
        w.add_client(config(n, 0), (n >= 3).then_some(nat));
    }
    // Each round trip gets through half the time: the clients' own retry budgets (IKE, L2TP,
    // LCP) may run out, and a client that gives up dials again, as a user (or Windows' redial
    // setting) would. Every client must be up within 10 minutes.
    let mut redials = Vec::new();
    let limit = Duration::from_secs(600);
    loop {
        let left = limit.saturating_sub(w.elapsed());
        let all_up = w.run(left, |w| {
            w.clients.iter().all(|c| c.client.is_up())
                || w.clients.iter().any(|c| c.client.is_finished())
        });
        assert!(all_up, "not all up after {limit:?}: {:#?}", events(&w));
        if w.clients.iter().all(|c| c.client.is_up()) {
            break;
        }
        for i in 0..w.clients.len() {
            if w.clients[i].client.is_finished() {
                redials.push(w.clients[i].events.iter().rev().nth(1).map(Event::line));
                w.redial(i, config(i as u32, redials.len() as u64));
            }
        }
    }
    eprintln!(
        "up after {:?} of fake time, {} datagrams lost, {} redials: {redials:#?}",
        w.elapsed(),
        w.lost,
        redials.len()
    );
    assert!(w.lost > 50, "the link lost {} datagrams", w.lost);
    assert!(redials.len() <= 6, "{redials:#?}");
    // A clean link again. Whatever the failed attempts left on the server expires (half-open
    // IKE and L2TP, DPD for SAs whose Deletes were lost): then the server holds exactly the six
    // clients, and each passes traffic.
    w.link.loss = 0.0;
    w.link.duplicate = 0.0;
    w.run_for(Duration::from_secs(300));
    assert!(w.clients.iter().all(|c| c.client.is_up()));
    let view = w.server.core.gateway().sessions_view(w.now);
    assert_eq!(view.len(), 6, "{view:#?}");
    assert!(view.iter().all(|s| s.up));
    assert_eq!(w.server.core.gateway().sessions().pool().in_use(), 6);
    assert_eq!(w.server.core.gateway().tunnels(), 6);
    assert_eq!(w.server.core.ike().half_open_count(), 0);
    assert_eq!(
        w.server.core.gateway().sa_count(),
        6,
        "{:?}",
        w.server.core.ike()
    );
    assert_eq!(w.server.core.ike().child_count(), 6);
    assert_eq!(w.server.core.ike().phase1_count(), 6);
    for i in 0..6 {
        let me = addr(&w, i);
        let p = udp_packet(me, LAN_HOST, 500, false, i as u16);
        assert!(w.client_send(i, &p));
        w.run_for(Duration::from_millis(20));
        assert_eq!(w.lan.last(), Some(&p));
        let q = udp_packet(LAN_HOST, me, 500, false, 50 + i as u16);
        assert_eq!(w.lan_send(&q), FromLan::Sent);
        w.run_for(Duration::from_millis(20));
        assert_eq!(w.clients[i].tun.last(), Some(&q));
    }
}

/// Quick Mode message 3 (only a HASH: short) from a client on UDP 500.
fn is_qm3(raw: bool, d: &[u8]) -> bool {
    !raw && d.len() >= 28 && d.len() < 100 && d[18] == 32
}

#[test]
fn authentic_esp_completes_a_quick_mode_whose_message_3_is_lost() {
    // Every message 3 is lost: only the client's ESP can tell the server that the client has
    // the keys. Without that the client never gets its SA installed (the server would wait for
    // message 3 for ever) and L2TP never starts.
    let mut w = ChainWorld::new(server(), 7);
    w.link.drop_to_server = Some(is_qm3);
    w.add_client(client_config(0, client_ip(0), "alice", "alice-pw"), None);
    assert!(w.run_until_up(Duration::from_secs(60)), "the client is up");
    assert!(w.server.core.gateway().stats().implicit_qm3 >= 1);
    assert!(w.lost >= 1, "message 3 was dropped");
    let a = addr(&w, 0);
    let p = udp_packet(a, LAN_HOST, 200, false, 1);
    assert!(w.client_send(0, &p));
    w.run_for(Duration::from_millis(50));
    assert_eq!(w.lan.last(), Some(&p));
    // ESP with a wrong ICV on a pending SPI completes nothing: checked by the other tests'
    // garbage floods, which never install an SA.
    assert_eq!(w.server.core.gateway().sa_count(), 1);
}

#[test]
fn twenty_clients_reach_the_lan_the_server_and_each_other() {
    let mut w = ChainWorld::new(server(), 20);
    w.kernel = true;
    for n in 0..20u32 {
        let (u, p) = if n % 2 == 0 {
            ("alice", "alice-pw")
        } else {
            ("bob", "bob-pw")
        };
        let mut cfg = client_config(u64::from(n), client_ip(n), u, p);
        cfg.force_encap = n % 2 == 0;
        cfg.pap = n % 4 == 1;
        w.add_client(cfg, None);
    }
    assert!(w.run_until_up(MINUTE), "not up: {:?}", events(&w));
    let mut addrs: Vec<Ipv4Addr> = (0..20).map(|i| addr(&w, i)).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 20, "every client has its own address");
    for i in 0..20 {
        let (me, next) = (addr(&w, i), addr(&w, (i + 1) % 20));
        let seq = i as u16;
        assert!(w.client_send(i, &ping(me, LAN_HOST, seq)));
        assert!(w.client_send(i, &ping(me, SERVER_PPP, 1000 + seq)));
        // Client to client: through the server's TUN side and back in, unchanged.
        let p = ping(me, next, 2000 + seq);
        assert!(w.client_send(i, &p));
        w.run_for(Duration::from_millis(50));
        assert!(
            w.clients[(i + 1) % 20].tun.contains(&p),
            "client {i} -> {} not delivered",
            (i + 1) % 20
        );
    }
    for (i, c) in w.clients.iter().enumerate() {
        let seq = i as u16;
        assert!(
            c.tun.iter().any(|p| is_echo_reply(p, LAN_HOST, seq)),
            "client {i}: no reply from the LAN host"
        );
        assert!(
            c.tun
                .iter()
                .any(|p| is_echo_reply(p, SERVER_PPP, 1000 + seq)),
            "client {i}: no reply from 10.77.0.1"
        );
        assert_eq!(c.client.stats().esp_errors, 0);
    }
    assert_eq!(w.server.core.gateway().stats().esp_auth_failed, 0);
}

#[test]
fn two_hours_of_rekeys_under_traffic_lose_nothing_and_leave_no_old_sa() {
    // ESP 10 min (the client rekeys at 8), IKE 30 min (at 24); a ping every 5 s.
    let mut w = ChainWorld::new(server(), 21);
    w.kernel = true;
    for n in 0..2u32 {
        let mut cfg = client_config(u64::from(n), client_ip(n), "alice", "alice-pw");
        cfg.force_encap = n == 0;
        cfg.ike_lifetime = Duration::from_secs(1800);
        cfg.esp_lifetime = Duration::from_secs(600);
        w.add_client(cfg, None);
    }
    assert!(w.run_until_up(MINUTE));
    let mut sent = 0u16;
    for _ in 0..(2 * 3600 / 5) {
        for i in 0..2 {
            let me = addr(&w, i);
            assert!(w.client_send(i, &ping(me, LAN_HOST, sent)));
        }
        sent += 1;
        w.run_for(Duration::from_secs(5));
    }
    for (i, c) in w.clients.iter().enumerate() {
        let answered = (0..sent)
            .filter(|&s| c.tun.iter().any(|p| is_echo_reply(p, LAN_HOST, s)))
            .count();
        assert_eq!(answered, usize::from(sent), "client {i} lost pings");
        let count = |f: fn(&Event) -> bool| c.events.iter().filter(|e| f(e)).count();
        let p2 = count(|e| matches!(e, Event::Phase2Rekeyed { .. }));
        let p1 = count(|e| matches!(e, Event::Phase1Rekeyed { .. }));
        assert!(p2 >= 14, "client {i}: {p2} phase-2 rekeys");
        assert!(p1 >= 4, "client {i}: {p1} phase-1 rekeys");
        assert!(
            c.client.is_up(),
            "client {i} went down: {:?}",
            c.client.ending()
        );
        assert_eq!(c.client.spis().len(), 1, "client {i} keeps old SAs");
    }
    assert_eq!(
        w.server.core.gateway().sa_count(),
        2,
        "the server keeps old SAs"
    );
}

#[test]
fn a_client_that_stops_leaves_nothing_behind_on_the_server() {
    let mut w = world_up(
        server(),
        &[
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("alice", "alice-pw"),
        ],
    );
    assert_eq!(w.server.core.gateway().tunnels(), 3);
    // Client 0 stops as Windows does: LCP Terminate, CDN, StopCCN, Deletes.
    w.client_close(0);
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.clients[0].client.ending(), Some(&Ending::Stopped));
    assert_eq!(w.server.core.gateway().tunnels(), 2);
    assert_eq!(w.server.core.gateway().sa_count(), 2);
    assert_eq!(w.server.core.gateway().sessions().len(), 2);
    assert_eq!(
        w.server.core.gateway().sessions().pool().in_use(),
        2,
        "its address is back"
    );
}

/// The server's rule, without sockets: while the accounting spool is full (and
/// `accounting.block_when_full` set), a login is refused before any backend is asked; once it
/// drains, the next client connects.
#[test]
fn a_full_accounting_spool_refuses_logins_before_the_backends() {
    let mut w = ChainWorld::new(server(), 7);
    w.server.core.set_accounting_full(true);
    w.add_client(client_config(0, client_ip(0), "alice", "alice-pw"), None);
    w.run(MINUTE, |w| w.clients[0].client.ending().is_some());
    assert!(!w.clients[0].client.is_up(), "{:?}", events(&w));
    assert!(
        matches!(w.clients[0].client.ending(), Some(Ending::Failed { .. })),
        "{:?}",
        events(&w)
    );
    // Every try (PPP allows a few per link) was refused by the rule, none by a backend.
    let refused = w.server.core.stats().refused_spool_full;
    assert!(refused >= 1);
    assert_eq!(
        w.server.core.gateway().sessions().stats().auth_rejected,
        refused
    );
    assert!(w.ups.is_empty());

    w.server.core.set_accounting_full(false);
    w.add_client(client_config(1, client_ip(1), "bob", "bob-pw"), None);
    assert!(
        w.run(MINUTE, |w| w.clients[1].client.is_up()),
        "{:?}",
        events(&w)
    );
    assert_eq!(w.server.core.stats().refused_spool_full, refused);
    assert_eq!(w.ups.len(), 1);
}
