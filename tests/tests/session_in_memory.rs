//! The whole L2TP → PPP ladder in memory: the server's session layer (LNS + pppd-lite server +
//! local users in SQLite + address pool) against test clients made of the independent test LAC
//! (`roadgate_tests::lac`) and a pppd-lite link in the client role, under a fake clock, with loss.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pppd_lite::pool::AddressPool;
use pppd_lite::{AuthProtocol, ClientConfig, DownReason, NetworkInfo, Ppp, ServerConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use roadgate::aaa::{self, Decision, local::UserOptions, local::UserStore};
use roadgate::l2tp::{LnsConfig, PeerId, SessionRef};
use roadgate::session::{self, Sessions};
use roadgate_tests::lac::{Lac, LacConfig, LacEvent};

const SERVER_PPP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn pool(first: u8, last: u8) -> AddressPool {
    AddressPool::builder()
        .range(
            Ipv4Addr::new(10, 77, 0, first),
            Ipv4Addr::new(10, 77, 0, last),
        )
        .exclude(SERVER_PPP)
        .build()
        .unwrap()
}

fn server(pool: AddressPool, auth: Vec<AuthProtocol>) -> Sessions {
    let ppp = pppd_lite::Config::server(ServerConfig {
        auth,
        local_address: SERVER_PPP,
        dns: [Some(DNS), None],
        nbns: [None, None],
        name: "roadgate".into(),
    });
    Sessions::new(
        session::Config {
            lns: LnsConfig::default(),
            ppp,
            pool,
        },
        [7; 32],
    )
}

fn users() -> UserStore {
    let s = UserStore::in_memory().unwrap();
    s.add("alice", "alice-pw", &UserOptions::default()).unwrap();
    s.add("bob", "bob-pw", &UserOptions::default()).unwrap();
    s.add(
        "solo",
        "solo-pw",
        &UserOptions {
            max_sessions: Some(Some(1)),
            ..Default::default()
        },
    )
    .unwrap();
    s.add(
        "fixed",
        "fixed-pw",
        &UserOptions {
            static_ip: Some(Some(Ipv4Addr::new(10, 77, 0, 200))),
            ..Default::default()
        },
    )
    .unwrap();
    s.add(
        "off",
        "off-pw",
        &UserOptions {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    s
}

struct Client {
    peer: PeerId,
    port: u16,
    lac: Lac,
    ppp_config: pppd_lite::Config,
    ppp: Option<Ppp>,
    session: Option<u16>,
    up: Option<NetworkInfo>,
    down: Option<DownReason>,
    lac_events: Vec<LacEvent>,
    /// IP packets the server returned to the data plane from this client.
    delivered: usize,
}

fn client(now: Instant, spec: Spec) -> Client {
    let Spec(peer, lac, user, password, auth) = spec;
    let mut lac = Lac::new(lac, peer, now);
    lac.connect(now);
    Client {
        peer,
        port: 1701,
        lac,
        ppp_config: pppd_lite::Config::client(ClientConfig {
            user: user.into(),
            password: zeroize::Zeroizing::new(password.into()),
            accept_auth: auth.to_vec(),
            request_dns: true,
        }),
        ppp: None,
        session: None,
        up: None,
        down: None,
        lac_events: Vec::new(),
        delivered: 0,
    }
}

struct World {
    now: Instant,
    server: Sessions,
    users: UserStore,
    clients: Vec<Client>,
    /// Probability of losing any L2TP datagram, either way.
    loss: f64,
    rng: ChaCha20Rng,
    /// How long the authenticator takes; `None`: it never answers.
    decision_delay: Option<Duration>,
    pending: VecDeque<(Instant, SessionRef, u64, Decision)>,
    ups: Vec<(SessionRef, String, Ipv4Addr)>,
    downs: Vec<(SessionRef, Option<String>, String)>,
}

impl World {
    fn new(server: Sessions, specs: Vec<Spec>) -> Self {
        let now = Instant::now();
        World {
            now,
            server,
            users: users(),
            clients: specs.into_iter().map(|s| client(now, s)).collect(),
            loss: 0.0,
            rng: ChaCha20Rng::seed_from_u64(1),
            decision_delay: Some(Duration::from_millis(20)),
            pending: VecDeque::new(),
            ups: Vec::new(),
            downs: Vec::new(),
        }
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss)
    }

    /// Moves everything that can move now; returns whether anything did.
    fn shuttle(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for i in 0..self.clients.len() {
            // Client LAC → server.
            while let Some(d) = self.clients[i].lac.poll_transmit() {
                moved = true;
                if self.lost() {
                    continue;
                }
                let (peer, port) = (self.clients[i].peer, self.clients[i].port);
                if self.server.handle_l2tp(now, peer, port, &d).is_some() {
                    self.clients[i].delivered += 1;
                }
            }
            let c = &mut self.clients[i];
            while let Some(ev) = c.lac.poll_event() {
                moved = true;
                if let LacEvent::TunnelUp { .. } = ev {
                    c.lac.open_session(now);
                }
                if let LacEvent::SessionUp { session, .. } = ev {
                    let mut ppp = Ppp::new(c.ppp_config.clone(), now, [c.peer as u8; 32]);
                    ppp.open(now);
                    c.ppp = Some(ppp);
                    c.session = Some(session);
                }
                c.lac_events.push(ev);
            }
            // Client PPP → its LAC → server.
            let mut frames = Vec::new();
            if let Some(ppp) = c.ppp.as_mut() {
                while let Some(frame) = ppp.poll_transmit() {
                    frames.push(frame);
                }
                while let Some(ev) = ppp.poll_event() {
                    moved = true;
                    match ev {
                        pppd_lite::Event::Up(info) => c.up = Some(info),
                        pppd_lite::Event::Down(r) => c.down = Some(r),
                        _ => {}
                    }
                }
            }
            let datagrams: Vec<Vec<u8>> = match c.session {
                Some(session) => frames
                    .iter()
                    .filter_map(|f| c.lac.send_data(session, f))
                    .collect(),
                None => Vec::new(),
            };
            let (peer, port) = (c.peer, c.port);
            for d in datagrams {
                moved = true;
                if self.lost() {
                    continue;
                }
                if self.server.handle_l2tp(now, peer, port, &d).is_some() {
                    self.clients[i].delivered += 1;
                }
            }
        }
        // Server → clients.
        while let Some(t) = self.server.poll_transmit() {
            moved = true;
            if self.lost() {
                continue;
            }
            let Some(c) = self.clients.iter_mut().find(|c| c.peer == t.peer) else {
                continue;
            };
            assert_eq!(t.port, c.port, "replies go to the client's source port");
            if let Some((_session, frame, _seq)) = c.lac.handle_datagram(now, &t.payload)
                && let Some(ppp) = c.ppp.as_mut()
            {
                let _ = ppp.handle_frame(now, &frame);
            }
        }
        while let Some(ev) = self.server.poll_event() {
            moved = true;
            match ev {
                session::Event::Authenticate { session, request } => {
                    let decision = aaa::local_decision(&self.users, &request);
                    if let Some(delay) = self.decision_delay {
                        self.pending
                            .push_back((now + delay, session, request.id, decision));
                    }
                }
                session::Event::Up {
                    session,
                    user,
                    address,
                } => self.ups.push((session, user, address)),
                session::Event::Down {
                    session,
                    user,
                    reason,
                } => self.downs.push((session, user, reason)),
            }
        }
        while self.pending.front().is_some_and(|p| p.0 <= now) {
            if let Some((_, session, id, decision)) = self.pending.pop_front() {
                moved = true;
                self.server.authenticated(now, session, id, decision);
            }
        }
        moved
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t = self.server.poll_timeout();
        let mut take = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for c in &self.clients {
            take(c.lac.poll_timeout());
            take(c.ppp.as_ref().and_then(|p| p.poll_timeout()));
        }
        take(self.pending.front().map(|p| p.0));
        t
    }

    /// Runs until `until` (fake time) or until `done` holds.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) {
        let end = self.now + limit;
        loop {
            while self.shuttle() {}
            if done(self) {
                return;
            }
            let Some(next) = self.next_deadline() else {
                return;
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            self.server.handle_timeout(self.now);
            let now = self.now;
            for c in &mut self.clients {
                if c.lac.poll_timeout().is_some_and(|t| t <= now) {
                    c.lac.handle_timeout(now);
                }
                if let Some(p) = c.ppp.as_mut()
                    && p.poll_timeout().is_some_and(|t| t <= now)
                {
                    p.handle_timeout(now);
                }
            }
        }
    }

    fn all_settled(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.up.is_some() || c.down.is_some())
    }
}

/// A client to build: its peer id (its IPsec SA), LAC flavour, user, password, accepted methods.
struct Spec(
    PeerId,
    LacConfig,
    &'static str,
    &'static str,
    &'static [AuthProtocol],
);

fn mk(
    peer: PeerId,
    lac: LacConfig,
    user: &'static str,
    password: &'static str,
    auth: &'static [AuthProtocol],
) -> Spec {
    Spec(peer, lac, user, password, auth)
}

const MSCHAP: &[AuthProtocol] = &[AuthProtocol::MsChapV2];
const SERVER_AUTH: [AuthProtocol; 3] = [
    AuthProtocol::MsChapV2,
    AuthProtocol::ChapMd5,
    AuthProtocol::Pap,
];

fn in_pool(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 10 && o[1] == 77 && o[2] == 0 && (10..=99).contains(&o[3])
}

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
