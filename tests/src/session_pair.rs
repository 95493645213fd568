//! An in-memory world for the session layer: the server's `Sessions` (LNS + pppd-lite server +
//! local users in SQLite + address pool) against test clients made of the independent test LAC
//! ([`crate::lac`]) and a pppd-lite link in the client role, under a fake clock, with loss. Used by
//! `tests/session_in_memory.rs` and `benches/sessions.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::lac::{Lac, LacConfig, LacEvent};
use pppd_lite::pool::AddressPool;
use pppd_lite::{AuthProtocol, ClientConfig, DownReason, NetworkInfo, Ppp, ServerConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use roadgate::aaa::{self, Decision, local::UserOptions, local::UserStore};
use roadgate::l2tp::{LnsConfig, PeerId, SessionRef};
use roadgate::session::{self, Sessions};

pub const SERVER_PPP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

pub fn pool(first: u8, last: u8) -> AddressPool {
    AddressPool::builder()
        .range(
            Ipv4Addr::new(10, 77, 0, first),
            Ipv4Addr::new(10, 77, 0, last),
        )
        .exclude(SERVER_PPP)
        .build()
        .unwrap()
}

pub fn server(pool: AddressPool, auth: Vec<AuthProtocol>) -> Sessions {
    server_with(LnsConfig::default(), pool, auth)
}

/// [`server`] with LNS settings of one's own.
pub fn server_with(lns: LnsConfig, pool: AddressPool, auth: Vec<AuthProtocol>) -> Sessions {
    let ppp = pppd_lite::Config::server(ServerConfig {
        auth,
        local_address: SERVER_PPP,
        dns: [Some(DNS), None],
        nbns: [None, None],
        name: "roadgate".into(),
    });
    Sessions::new(session::Config { lns, ppp, pool }, [7; 32])
}

pub fn users() -> UserStore {
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

#[derive(Debug)]
pub struct Client {
    pub peer: PeerId,
    pub port: u16,
    pub lac: Lac,
    pub ppp_config: pppd_lite::Config,
    pub ppp: Option<Ppp>,
    pub session: Option<u16>,
    pub up: Option<NetworkInfo>,
    pub down: Option<DownReason>,
    pub lac_events: Vec<LacEvent>,
    /// IP packets the server returned to the data plane from this client.
    pub delivered: usize,
}

pub fn client(now: Instant, spec: Spec) -> Client {
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

#[derive(Debug)]
pub struct World {
    pub now: Instant,
    pub server: Sessions,
    pub users: UserStore,
    pub clients: Vec<Client>,
    /// Probability of losing any L2TP datagram, either way.
    pub loss: f64,
    pub rng: ChaCha20Rng,
    /// How long the authenticator takes; `None`: it never answers.
    pub decision_delay: Option<Duration>,
    /// What the authenticator adds to every acceptance (as RADIUS would).
    pub authz: Option<roadgate::aaa::Authorization>,
    pub pending: VecDeque<(Instant, SessionRef, u64, Decision)>,
    pub ups: Vec<(SessionRef, String, Ipv4Addr)>,
    pub downs: Vec<(SessionRef, Option<String>, String)>,
    /// The accounting records the session layer gave (Start at Up, Stop at Down), in order.
    pub acct: Vec<roadgate::aaa::AcctRecord>,
    /// Wall-clock time spent inside the server (session layer and user lookups), for benches.
    pub server_time: Duration,
}

impl World {
    pub fn new(server: Sessions, specs: Vec<Spec>) -> Self {
        let now = Instant::now();
        World {
            now,
            server,
            users: users(),
            clients: specs.into_iter().map(|s| client(now, s)).collect(),
            loss: 0.0,
            rng: ChaCha20Rng::seed_from_u64(1),
            decision_delay: Some(Duration::from_millis(20)),
            authz: None,
            pending: VecDeque::new(),
            ups: Vec::new(),
            downs: Vec::new(),
            acct: Vec::new(),
            server_time: Duration::ZERO,
        }
    }

    pub fn lost(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss)
    }

    /// Moves everything that can move now; returns whether anything did.
    pub fn shuttle(&mut self) -> bool {
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
                let t0 = Instant::now();
                let inbound = self.server.handle_l2tp(now, peer, port, &d).is_some();
                self.server_time += t0.elapsed();
                if inbound {
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
                let t0 = Instant::now();
                let inbound = self.server.handle_l2tp(now, peer, port, &d).is_some();
                self.server_time += t0.elapsed();
                if inbound {
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
                session::Event::Authenticate {
                    session, request, ..
                } => {
                    let t0 = Instant::now();
                    let mut decision = aaa::local_decision(&self.users, &request);
                    self.server_time += t0.elapsed();
                    if let (Some(authz), pppd_lite::Verdict::Accept(_)) =
                        (&self.authz, &decision.verdict)
                    {
                        decision.authz = authz.clone();
                    }
                    if let Some(delay) = self.decision_delay {
                        self.pending
                            .push_back((now + delay, session, request.id, decision));
                    }
                }
                session::Event::Up {
                    session,
                    user,
                    address,
                    start,
                    ..
                } => {
                    self.acct.push(*start);
                    self.ups.push((session, user, address));
                }
                session::Event::Down {
                    session,
                    user,
                    reason,
                    stop,
                } => {
                    self.acct.extend(stop.map(|s| *s));
                    self.downs.push((session, user, reason.to_string()));
                }
            }
        }
        while self.pending.front().is_some_and(|p| p.0 <= now) {
            if let Some((_, session, id, decision)) = self.pending.pop_front() {
                moved = true;
                let t0 = Instant::now();
                self.server.authenticated(now, session, id, decision);
                self.server_time += t0.elapsed();
            }
        }
        moved
    }

    pub fn next_deadline(&self) -> Option<Instant> {
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
    pub fn run(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) {
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
            let t0 = Instant::now();
            self.server.handle_timeout(self.now);
            self.server_time += t0.elapsed();
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

    pub fn all_settled(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.up.is_some() || c.down.is_some())
    }
}

/// A client to build: its peer id (its IPsec SA), LAC flavour, user, password, accepted methods.
#[derive(Debug)]
pub struct Spec(
    pub PeerId,
    pub LacConfig,
    pub &'static str,
    pub &'static str,
    pub &'static [AuthProtocol],
);

pub fn mk(
    peer: PeerId,
    lac: LacConfig,
    user: &'static str,
    password: &'static str,
    auth: &'static [AuthProtocol],
) -> Spec {
    Spec(peer, lac, user, password, auth)
}

pub const MSCHAP: &[AuthProtocol] = &[AuthProtocol::MsChapV2];
pub const SERVER_AUTH: [AuthProtocol; 3] = [
    AuthProtocol::MsChapV2,
    AuthProtocol::ChapMd5,
    AuthProtocol::Pap,
];

pub fn in_pool(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 10 && o[1] == 77 && o[2] == 0 && (10..=99).contains(&o[3])
}
