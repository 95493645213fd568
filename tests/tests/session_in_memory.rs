//! The whole L2TP → PPP ladder in memory: the server's session layer (LNS + pppd-lite server +
//! local users in SQLite + address pool) against test clients made of the independent test LAC
//! (`roadgate_tests::lac`) and a pppd-lite link in the client role, under a fake clock, with loss.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use pppd_lite::{AuthProtocol, DownReason};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use roadgate::session::NoHeader;
use roadgate_tests::lac::{LacConfig, LacEvent};
use roadgate_tests::session_pair::*;

#[test]
fn windows_apple_android_and_linux_clients_get_addresses_with_mschapv2() {
    let clients = vec![
        mk(1, LacConfig::windows(), "CORP\\alice", "alice-pw", MSCHAP),
        mk(2, LacConfig::apple(), "bob", "bob-pw", MSCHAP),
        mk(3, LacConfig::android(), "alice", "alice-pw", MSCHAP),
        mk(4, LacConfig::xl2tpd(), "bob", "bob-pw", MSCHAP),
    ];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(60), |w| w.all_settled());
    let mut addrs = Vec::new();
    for c in &w.clients {
        let up =
            c.up.as_ref()
                .unwrap_or_else(|| panic!("peer {} not up: {:?}", c.peer, c.down));
        assert!(in_pool(up.local), "{}", up.local);
        assert_eq!(up.peer, SERVER_PPP);
        assert_eq!(up.dns[0], Some(DNS));
        addrs.push(up.local);
    }
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 4, "no address handed out twice");
    assert_eq!(w.ups.len(), 4);
    // The DOMAIN\ prefix is gone from the server's idea of the user.
    assert!(w.ups.iter().any(|(s, u, _)| s.peer == 1 && u == "alice"));
    assert_eq!(w.server.pool().in_use(), 4);
    assert_eq!(w.server.stats().up, 4);
}

#[test]
fn pap_works_against_the_nt_hash_record_and_chap_md5_is_refused_for_local_users() {
    let clients = vec![
        mk(
            1,
            LacConfig::windows(),
            "alice",
            "alice-pw",
            &[AuthProtocol::Pap],
        ),
        mk(
            2,
            LacConfig::windows(),
            "bob",
            "bob-pw",
            &[AuthProtocol::ChapMd5],
        ),
    ];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(120), |w| w.all_settled());
    assert!(w.clients[0].up.is_some(), "PAP: {:?}", w.clients[0].down);
    assert!(
        w.clients[1].up.is_none(),
        "CHAP-MD5 needs the clear password, which is not kept"
    );
    assert_eq!(w.server.pool().in_use(), 1);
}

#[test]
fn wrong_password_unknown_and_disabled_users_are_refused_and_get_no_address() {
    let clients = vec![
        mk(1, LacConfig::windows(), "alice", "not-the-password", MSCHAP),
        mk(2, LacConfig::windows(), "nobody", "x", MSCHAP),
        mk(3, LacConfig::windows(), "off", "off-pw", MSCHAP),
        mk(
            4,
            LacConfig::windows(),
            "alice",
            "wrong",
            &[AuthProtocol::Pap],
        ),
    ];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(300), |w| {
        w.all_settled() && w.downs.len() == 4
    });
    for c in &w.clients {
        assert!(c.up.is_none(), "peer {} came up", c.peer);
        assert!(c.down.is_some(), "peer {} still negotiating", c.peer);
    }
    assert_eq!(w.server.pool().in_use(), 0);
    assert_eq!(w.downs.len(), 4, "{:?}", w.downs);
    assert!(w.server.stats().auth_rejected >= 4);
    assert!(w.server.is_empty());
}

#[test]
fn pool_exhaustion_is_reported_and_the_address_comes_back_on_teardown() {
    let clients = vec![
        mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP),
        mk(2, LacConfig::windows(), "bob", "bob-pw", MSCHAP),
    ];
    let mut w = World::new(server(pool(10, 10), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(60), |w| w.all_settled());
    let up: Vec<_> = w
        .clients
        .iter()
        .filter(|c| c.up.is_some())
        .map(|c| c.peer)
        .collect();
    assert_eq!(up.len(), 1, "one address, one client");
    assert_eq!(w.server.stats().pool_exhausted, 1);
    let loser = w.clients.iter().find(|c| c.up.is_none()).unwrap();
    assert!(
        matches!(&loser.down, Some(DownReason::PeerTerminated(t)) if t.contains("address")),
        "the client is told why: {:?}",
        loser.down
    );
    // The winner hangs up: its address is free again.
    let winner = w.clients.iter_mut().find(|c| c.up.is_some()).unwrap();
    let now = w.now;
    winner.ppp.as_mut().unwrap().close(now, "bye");
    w.run(Duration::from_secs(30), |w| {
        w.server.pool().in_use() == 0 && w.server.is_empty()
    });
    assert_eq!(w.server.pool().in_use(), 0);
}

#[test]
fn session_limit_and_static_address_come_from_the_user_record() {
    let clients = vec![
        mk(1, LacConfig::windows(), "solo", "solo-pw", MSCHAP),
        mk(2, LacConfig::apple(), "solo", "solo-pw", MSCHAP),
        mk(3, LacConfig::windows(), "fixed", "fixed-pw", MSCHAP),
    ];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(300), |w| w.all_settled());
    let solo_up = w.clients[..2].iter().filter(|c| c.up.is_some()).count();
    assert_eq!(solo_up, 1, "max-sessions 1");
    // Each MS-CHAPv2 retry of the second client is refused again.
    assert!(w.server.stats().over_limit >= 1);
    assert_eq!(
        w.clients[2].up.as_ref().map(|u| u.local),
        Some(Ipv4Addr::new(10, 77, 0, 200))
    );
}

#[test]
fn ip_packets_reach_the_data_plane_only_from_the_clients_own_address() {
    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(60), |w| w.all_settled());
    let mine = w.clients[0].up.as_ref().unwrap().local;
    let packet = |src: Ipv4Addr| {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&[198, 51, 100, 7]);
        p.extend_from_slice(&[0; 8]);
        p
    };
    let before = w.clients[0].delivered;
    for src in [mine, Ipv4Addr::new(10, 77, 0, 55)] {
        let c = &mut w.clients[0];
        let frame = c.ppp.as_ref().unwrap().encapsulate_ipv4(&packet(src));
        let d = c.lac.send_data(c.session.unwrap(), &frame).unwrap();
        let got = w
            .server
            .handle_l2tp(w.now, 1, 1701, &d)
            .map(|i| i.packet.to_vec());
        assert_eq!(got.is_some(), src == mine, "source {src}");
        if let Some(p) = got {
            assert_eq!(p, packet(mine));
        }
    }
    assert_eq!(before, w.clients[0].delivered);
    assert_eq!(w.server.stats().spoofed, 1);
}

#[test]
fn two_clients_behind_one_nat_are_two_sessions_and_one_leaving_keeps_the_other() {
    // Both come from UDP 1701 with Assigned Tunnel ID 1 (Windows); only the IPsec SA (peer) differs.
    let clients = vec![
        mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP),
        mk(2, LacConfig::windows(), "bob", "bob-pw", MSCHAP),
    ];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(60), |w| w.all_settled());
    assert!(w.clients.iter().all(|c| c.up.is_some()));
    let a = w.clients[0].up.as_ref().unwrap().local;
    let b = w.clients[1].up.as_ref().unwrap().local;
    assert_ne!(a, b);
    // Client 1's IPsec SA goes away: its session ends silently, client 2 stays.
    let now = w.now;
    w.server.peer_gone(now, 1);
    w.run(Duration::from_millis(10), |_| false);
    assert_eq!(w.downs.len(), 1);
    assert_eq!(w.downs[0].0.peer, 1);
    assert_eq!(w.server.len(), 1);
    assert_eq!(w.server.pool().in_use(), 1);
    // Client 2 keeps working for minutes (keepalives answered).
    w.run(Duration::from_secs(300), |_| false);
    assert!(w.clients[1].down.is_none(), "{:?}", w.clients[1].down);
    assert_eq!(w.server.len(), 1);
}

#[test]
fn thirty_percent_loss_still_brings_every_client_up() {
    for seed in 0..6u64 {
        let clients = vec![
            mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP),
            mk(2, LacConfig::android(), "bob", "bob-pw", MSCHAP),
            mk(
                3,
                LacConfig::apple(),
                "alice",
                "alice-pw",
                &[AuthProtocol::Pap],
            ),
        ];
        let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
        w.loss = 0.3;
        w.rng = ChaCha20Rng::seed_from_u64(seed);
        w.run(Duration::from_secs(600), |w| {
            w.clients.iter().all(|c| c.up.is_some()) && w.ups.len() == 3
        });
        for c in &w.clients {
            assert!(
                c.up.is_some(),
                "seed {seed} peer {}: {:?} {:?}",
                c.peer,
                c.down,
                c.lac_events
            );
        }
        assert_eq!(w.ups.len(), 3, "seed {seed}");
    }
}

#[test]
fn a_slow_authenticator_is_waited_for_and_a_silent_one_times_out() {
    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.decision_delay = Some(Duration::from_secs(8));
    w.run(Duration::from_secs(60), |w| w.all_settled());
    assert!(w.clients[0].up.is_some(), "{:?}", w.clients[0].down);

    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.decision_delay = None;
    w.run(Duration::from_secs(120), |w| !w.downs.is_empty());
    assert_eq!(w.downs.len(), 1, "the pending decision expires");
    assert!(w.downs[0].2.contains("too long"), "{}", w.downs[0].2);
    assert_eq!(w.server.pool().in_use(), 0);
}

#[test]
fn a_client_that_vanishes_is_detected_and_its_address_released() {
    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(60), |w| w.all_settled());
    assert_eq!(w.server.pool().in_use(), 1);
    // The client disappears without a word (iOS sends no Delete): drop everything it would send.
    w.loss = 1.0;
    w.run(Duration::from_secs(600), |w| !w.downs.is_empty());
    assert_eq!(w.downs.len(), 1);
    assert_eq!(w.server.pool().in_use(), 0);
    assert!(w.server.is_empty());
}

#[test]
fn administrative_disconnect_ends_ppp_then_the_call() {
    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(60), |w| w.all_settled());
    let session = w.ups[0].0;
    let now = w.now;
    w.server
        .disconnect(now, session, "disconnected by the administrator");
    w.run(Duration::from_secs(30), |w| {
        w.clients[0].down.is_some() && !w.downs.is_empty()
    });
    assert!(
        matches!(&w.clients[0].down, Some(DownReason::PeerTerminated(t)) if t.contains("administrator")),
        "{:?}",
        w.clients[0].down
    );
    w.run(Duration::from_secs(5), |_| false);
    assert!(
        w.clients[0]
            .lac_events
            .iter()
            .any(|e| matches!(e, LacEvent::SessionDown { .. })),
        "CDN after PPP: {:?}",
        w.clients[0].lac_events
    );
    assert_eq!(w.server.pool().in_use(), 0);
}

#[test]
fn two_hundred_clients_come_up_and_stay_up_through_keepalives() {
    let users: [(&str, &str); 2] = [("alice", "alice-pw"), ("bob", "bob-pw")];
    let specs = (1..=200u64)
        .map(|peer| {
            let (u, p) = users[(peer % 2) as usize];
            let lac = match peer % 3 {
                0 => LacConfig::windows(),
                1 => LacConfig::apple(),
                _ => LacConfig::android(),
            };
            mk(peer, lac, u, p, MSCHAP)
        })
        .collect();
    let mut w = World::new(server(pool(10, 250), SERVER_AUTH.to_vec()), specs);
    w.run(Duration::from_secs(120), |w| w.ups.len() == 200);
    assert_eq!(w.ups.len(), 200);
    assert_eq!(w.server.pool().in_use(), 200);
    // Ten quiet minutes: LCP echoes and L2TP HELLOs keep every session.
    w.run(Duration::from_secs(600), |_| false);
    assert!(w.downs.is_empty(), "{:?}", w.downs.first());
    assert_eq!(w.server.len(), 200);
}

#[test]
fn packets_to_a_clients_address_reach_its_ppp_link_and_nowhere_else() {
    let specs = vec![
        mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP),
        mk(2, LacConfig::android(), "bob", "bob-pw", MSCHAP),
    ];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), specs);
    w.run(Duration::from_secs(60), |w| w.ups.len() == 2);
    let udp_to = |dst: Ipv4Addr, len: u16, df: bool| {
        let mut p = vec![
            0x45,
            0,
            0,
            0,
            0,
            0,
            if df { 0x40 } else { 0 },
            0,
            64,
            17,
            0,
            0,
        ];
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[198, 51, 100, 7]);
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&[0, 53, 0x30, 0x39]);
        p.extend_from_slice(&(len - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.resize(usize::from(len), 0xab);
        p
    };
    for i in 0..2 {
        let dst = w.clients[i].up.as_ref().unwrap().local;
        let packet = udp_to(dst, 28, true);
        let now = w.now;
        let h = w
            .server
            .outbound_header(now, &packet)
            .expect("an up session holds the address");
        assert_eq!(h.session.peer, w.clients[i].peer);
        assert_eq!(h.port, w.clients[i].port);
        let mut datagram = h.bytes[..h.len].to_vec();
        datagram.extend_from_slice(&packet);
        let c = &mut w.clients[i];
        let (_session, frame, _seq) = c
            .lac
            .handle_datagram(now, &datagram)
            .expect("a data message");
        match c.ppp.as_mut().unwrap().handle_frame(now, &frame) {
            pppd_lite::Input::Ipv4(p) => assert_eq!(p, &packet[..]),
            other => panic!("client {i} got {other:?}"),
        }
        // Over the client's MTU (the PPP MRU, 1400 by default): with DF the sender is told
        // (ICMP frag-needed), without DF it is sent.
        let big = udp_to(dst, 1401, true);
        assert_eq!(
            w.server.outbound_header(now, &big).unwrap_err(),
            NoHeader::TooBig { mtu: 1400 }
        );
        assert!(
            w.server
                .outbound_header(now, &udp_to(dst, 1401, false))
                .is_ok()
        );
    }
    // Counted once per packet sent (the refused one is not counted).
    let info: Vec<_> = w.server.iter().filter(|s| s.up).collect();
    assert_eq!(info.len(), 2);
    for s in &info {
        assert_eq!(s.traffic.packets_out, 2);
        assert_eq!(s.traffic.bytes_out, 28 + 1401);
    }
    let now = w.now;
    assert_eq!(
        w.server
            .outbound_header(now, &udp_to(Ipv4Addr::new(10, 77, 0, 98), 28, false))
            .unwrap_err(),
        NoHeader::NoSession,
        "no such client"
    );
    // After the session ends, its address leads nowhere.
    let gone = w.clients[0].up.as_ref().unwrap().local;
    w.server.peer_gone(now, 1);
    assert!(
        w.server
            .outbound_header(now, &udp_to(gone, 28, false))
            .is_err()
    );
}

/// The session layer's accounting records: a Start when IPCP is up and a Stop when the session
/// ends, with the same Acct-Session-Id and NAS-Port, the address, the IP counters of the
/// session and the cause (an administrative disconnect: Admin-Reset).
#[test]
fn accounting_start_and_stop_carry_the_counters_and_the_cause() {
    use roadgate::aaa::{AcctStatus, TerminateCause};
    let clients = vec![
        mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP),
        mk(2, LacConfig::windows(), "bob", "bob-pw", MSCHAP),
    ];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.run(Duration::from_secs(60), |w| w.all_settled());
    assert_eq!(w.acct.len(), 2, "two Starts: {:?}", w.acct);
    let mine = w.clients[0].up.as_ref().unwrap().local;
    let mut packet = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17, 0, 0];
    packet.extend_from_slice(&mine.octets());
    packet.extend_from_slice(&[198, 51, 100, 7]);
    packet.extend_from_slice(&[0; 20]);
    for _ in 0..3 {
        let c = &mut w.clients[0];
        let frame = c.ppp.as_ref().unwrap().encapsulate_ipv4(&packet);
        let d = c.lac.send_data(c.session.unwrap(), &frame).unwrap();
        assert!(w.server.handle_l2tp(w.now, 1, 1701, &d).is_some());
    }
    let session = w.ups.iter().find(|u| u.2 == mine).unwrap().0;
    let interim = w.server.interim(w.now, session).unwrap();
    assert_eq!(interim.status, Some(AcctStatus::InterimUpdate));
    assert_eq!((interim.input_packets, interim.input_octets), (3, 120));
    let now = w.now;
    w.server
        .disconnect(now, session, "disconnected by the administrator");
    w.run(Duration::from_secs(30), |w| !w.downs.is_empty());
    let start = w
        .acct
        .iter()
        .find(|r| r.framed_ip == Some(mine))
        .unwrap()
        .clone();
    let stop = w.acct.last().unwrap();
    assert_eq!(start.status, Some(AcctStatus::Start));
    assert_eq!(start.user, "alice");
    assert_eq!(stop.status, Some(AcctStatus::Stop));
    assert_eq!(stop.session_id, start.session_id);
    assert_eq!(stop.nas_port, start.nas_port);
    assert_eq!(stop.framed_ip, Some(mine));
    assert_eq!((stop.input_packets, stop.input_octets), (3, 120));
    assert_eq!(stop.terminate_cause, Some(TerminateCause::AdminReset));
    let other = w.acct.iter().find(|r| r.user == "bob").unwrap();
    assert_ne!(other.session_id, start.session_id, "ids are unique");
    assert_ne!(other.nas_port, start.nas_port);
}

/// What RADIUS says of a user is honoured: Framed-IP-Address, the DNS servers, Session-Timeout
/// (the session ends with Session-Timeout as the cause) and Class (echoed in the Stop).
#[test]
fn the_backends_authorization_is_honoured() {
    use roadgate::aaa::{Authorization, TerminateCause};
    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut w = World::new(server(pool(10, 99), SERVER_AUTH.to_vec()), clients);
    w.authz = Some(Authorization {
        framed_ip: Some(Ipv4Addr::new(10, 77, 0, 42)),
        session_timeout: Some(20),
        dns: vec![Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)],
        class: vec![b"billing-class-1".to_vec()],
        ..Authorization::default()
    });
    w.run(Duration::from_secs(60), |w| w.all_settled());
    let up = w.clients[0].up.unwrap();
    assert_eq!(up.local, Ipv4Addr::new(10, 77, 0, 42));
    assert_eq!(
        up.dns,
        [
            Some(Ipv4Addr::new(192, 0, 2, 53)),
            Some(Ipv4Addr::new(192, 0, 2, 54))
        ]
    );
    let t0 = w.now;
    w.run(Duration::from_secs(60), |w| !w.downs.is_empty());
    let after = w.now.duration_since(t0);
    assert!(
        after >= Duration::from_secs(18) && after <= Duration::from_secs(25),
        "ended after {after:?}"
    );
    let stop = w.acct.last().unwrap();
    assert_eq!(stop.terminate_cause, Some(TerminateCause::SessionTimeout));
    assert_eq!(stop.class, vec![b"billing-class-1".to_vec()]);
}

/// RADIUS Framed-Pool: the address comes from the named pool and goes back to it at the end; a
/// name the server does not have falls back to the main pool.
#[test]
fn framed_pool_takes_the_address_from_the_named_pool() {
    use roadgate::aaa::Authorization;
    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut server = server(pool(10, 99), SERVER_AUTH.to_vec());
    let guests = pppd_lite::pool::AddressPool::builder()
        .range(Ipv4Addr::new(10, 78, 0, 5), Ipv4Addr::new(10, 78, 0, 6))
        .build()
        .unwrap();
    server.add_named_pool("guests", guests);
    let mut w = World::new(server, clients);
    w.authz = Some(Authorization {
        framed_pool: Some("guests".into()),
        ..Authorization::default()
    });
    w.run(Duration::from_secs(60), |w| w.all_settled());
    let got = w.clients[0].up.unwrap().local;
    assert_eq!(got, Ipv4Addr::new(10, 78, 0, 5));
    assert_eq!(w.server.named_pool("guests").unwrap().in_use(), 1);
    assert_eq!(w.server.pool().in_use(), 0);
    let session = w.ups[0].0;
    let now = w.now;
    w.server.disconnect(now, session, "test");
    w.run(Duration::from_secs(30), |w| !w.downs.is_empty());
    assert_eq!(
        w.server.named_pool("guests").unwrap().in_use(),
        0,
        "back to its pool"
    );

    let clients = vec![mk(1, LacConfig::windows(), "alice", "alice-pw", MSCHAP)];
    let mut w = World::new(server_with_no_named_pool(), clients);
    w.authz = Some(Authorization {
        framed_pool: Some("nosuchpool".into()),
        ..Authorization::default()
    });
    w.run(Duration::from_secs(60), |w| w.all_settled());
    assert!(in_pool(w.clients[0].up.unwrap().local), "the main pool");
}

fn server_with_no_named_pool() -> roadgate::session::Sessions {
    server(pool(10, 99), SERVER_AUTH.to_vec())
}
