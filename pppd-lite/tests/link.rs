//! A server `Ppp` against a client `Ppp` (and against hand-crafted peers) with a fake clock.
// Test helpers outside `#[test]` functions: a panic is a test failure here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pppd_lite::auth::{Accept, AuthProtocol, AuthRequest, Credentials, Verdict};
use pppd_lite::frame::{self, protocol};
use pppd_lite::packet::{self, Packet};
use pppd_lite::pool::AddressPool;
use pppd_lite::{
    ClientConfig, Config, DownReason, DropReason, Event, Input, Ppp, ServerConfig, chap, eap,
    nt_hash, verify_with_nt_hash, verify_with_password,
};
use zeroize::Zeroizing;

const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 53);

fn server_config(auth: Vec<AuthProtocol>) -> Config {
    Config::server(ServerConfig {
        auth,
        local_address: SERVER_ADDR,
        dns: [Some(DNS), None],
        nbns: [None, None],
        name: "roadgate".into(),
    })
}

fn client_config(user: &str, password: &str, accept: Vec<AuthProtocol>) -> Config {
    Config::client(ClientConfig {
        user: user.into(),
        password: Zeroizing::new(password.into()),
        accept_auth: accept,
        request_dns: true,
    })
}

fn pool(size: u8) -> AddressPool {
    AddressPool::builder()
        .range(
            Ipv4Addr::new(10, 8, 0, 10),
            Ipv4Addr::new(10, 8, 0, 9 + size),
        )
        .build()
        .unwrap()
}

/// How the in-test owner answers `Event::Authenticate`.
enum Backend {
    NtHash(HashMap<String, [u8; 16]>),
    Password(HashMap<String, String>),
    /// Scripted EAP-MD5 server for one password.
    EapMd5 {
        password: String,
        challenge: [u8; 16],
    },
    /// Answer after this delay.
    Late(Duration, Box<Backend>),
    Never,
}

struct Net {
    now: Instant,
    server: Ppp,
    client: Ppp,
    pool: AddressPool,
    backend: Backend,
    server_events: Vec<Event>,
    client_events: Vec<Event>,
    /// (deadline, id, verdict) for late decisions.
    queued: Vec<(Instant, u64, Verdict)>,
    /// Drop control frames with this probability (seeded).
    loss: Option<(u64, u32)>,
    cut: bool,
    delivered: u64,
}

fn users(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect()
}

impl Net {
    fn new(server: Config, client: Config, backend: Backend) -> Self {
        let now = Instant::now();
        let mut net = Net {
            now,
            server: Ppp::new(server, now, [1; 32]),
            client: Ppp::new(client, now, [2; 32]),
            pool: pool(4),
            backend,
            server_events: Vec::new(),
            client_events: Vec::new(),
            queued: Vec::new(),
            loss: None,
            cut: false,
            delivered: 0,
        };
        net.server.open(now);
        net.client.open(now);
        net
    }

    fn decide(&mut self, req: &AuthRequest) -> Option<(Duration, Verdict)> {
        fn answer(b: &Backend, req: &AuthRequest) -> Option<(Duration, Verdict)> {
            match b {
                Backend::NtHash(m) => Some((
                    Duration::ZERO,
                    match m.get(mschap_user(&req.user)) {
                        Some(h) => verify_with_nt_hash(req, h),
                        None => Verdict::reject("unknown user"),
                    },
                )),
                Backend::Password(m) => Some((
                    Duration::ZERO,
                    match m.get(&req.user) {
                        Some(p) => verify_with_password(req, p.as_bytes()),
                        None => Verdict::reject("unknown user"),
                    },
                )),
                Backend::EapMd5 {
                    password,
                    challenge,
                } => Some((Duration::ZERO, eap_md5(req, password, challenge))),
                Backend::Late(d, inner) => answer(inner, req).map(|(_, v)| (*d, v)),
                Backend::Never => None,
            }
        }
        answer(&self.backend, req)
    }

    fn lose(&mut self) -> bool {
        match &mut self.loss {
            Some((state, percent)) => {
                // xorshift64*: deterministic loss pattern.
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                (*state % 100) < u64::from(*percent)
            }
            None => false,
        }
    }

    /// Moves frames and events until nothing is left to do at `now`.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            while let Some(f) = self.server.poll_transmit() {
                busy = true;
                if !self.cut && !self.lose() {
                    self.delivered += 1;
                    self.client.handle_frame(self.now, &f);
                }
            }
            while let Some(f) = self.client.poll_transmit() {
                busy = true;
                if !self.cut && !self.lose() {
                    self.delivered += 1;
                    self.server.handle_frame(self.now, &f);
                }
            }
            while let Some(e) = self.server.poll_event() {
                busy = true;
                match &e {
                    Event::Authenticate(req) => {
                        if let Some((delay, v)) = self.decide(req) {
                            if delay.is_zero() {
                                self.server.auth_decision(self.now, req.id, v);
                            } else {
                                self.queued.push((self.now + delay, req.id, v));
                            }
                        }
                    }
                    Event::Authenticated { user, .. } => match self.pool.allocate(user) {
                        Ok(a) => self.server.assign_address(self.now, a),
                        Err(_) => self.server.address_unavailable(self.now),
                    },
                    Event::Down(_) => {
                        if let Some(a) = self.server.peer_address() {
                            self.pool.release(a);
                        }
                    }
                    _ => {}
                }
                self.server_events.push(e);
            }
            while let Some(e) = self.client.poll_event() {
                busy = true;
                self.client_events.push(e);
            }
            let due: Vec<_> = self
                .queued
                .iter()
                .filter(|q| q.0 <= self.now)
                .map(|q| q.1)
                .collect();
            for id in due {
                if let Some(i) = self.queued.iter().position(|q| q.1 == id) {
                    let (_, id, v) = self.queued.remove(i);
                    self.server.auth_decision(self.now, id, v);
                    busy = true;
                }
            }
            if !busy {
                return;
            }
        }
        panic!("livelock");
    }

    /// Runs until `done` holds or `limit` of fake time has passed.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            let next = [
                self.server.poll_timeout(),
                self.client.poll_timeout(),
                self.queued.iter().map(|q| q.0).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.server.handle_timeout(self.now);
                    self.client.handle_timeout(self.now);
                }
                _ => return false,
            }
        }
    }

    fn both_up(&self) -> bool {
        self.server.is_up() && self.client.is_up()
    }
}

fn mschap_user(user: &str) -> &str {
    user.rsplit_once('\\').map_or(user, |(_, u)| u)
}

/// A scripted EAP-MD5 server: Identity → MD5-Challenge → Success/Failure.
fn eap_md5(req: &AuthRequest, password: &str, challenge: &[u8; 16]) -> Verdict {
    let Credentials::Eap { packet } = &req.credentials else {
        return Verdict::reject("expected EAP");
    };
    let Ok(p) = eap::parse(packet) else {
        return Verdict::reject("bad EAP");
    };
    match p.kind {
        Some(eap::kind::IDENTITY) => {
            let mut data = vec![16];
            data.extend_from_slice(challenge);
            data.extend_from_slice(b"roadgate");
            Verdict::EapContinue {
                packet: eap::encode(
                    eap::code::REQUEST,
                    p.id.wrapping_add(1),
                    Some(eap::kind::MD5_CHALLENGE),
                    &data,
                ),
            }
        }
        Some(eap::kind::MD5_CHALLENGE) => {
            let value = p.type_data.get(1..17).unwrap_or_default();
            if chap::verify_chap_md5(p.id, password.as_bytes(), challenge, value) {
                Verdict::Accept(Accept::default())
            } else {
                Verdict::reject("bad EAP-MD5 response")
            }
        }
        _ => Verdict::reject("unexpected EAP type"),
    }
}

fn ladder(auth: AuthProtocol, user: &str, backend: Backend) -> Net {
    let mut net = Net::new(
        server_config(vec![auth]),
        client_config(user, "correct horse", vec![auth]),
        backend,
    );
    assert!(
        net.run_until(Duration::from_secs(60), Net::both_up),
        "{:?}",
        net.server_events
    );
    net
}

fn assert_up_events(net: &Net, user: &str, auth: AuthProtocol) {
    let peer = net.server.peer_address().unwrap();
    assert_eq!(
        net.server_events
            .iter()
            .filter(|e| matches!(e, Event::Authenticate(_)))
            .count(),
        if auth == AuthProtocol::Eap { 2 } else { 1 }
    );
    assert!(net.server_events.contains(&Event::Authenticated {
        user: user.into(),
        protocol: auth
    }));
    let up = net.server_events.iter().find_map(|e| match e {
        Event::Up(i) => Some(*i),
        _ => None,
    });
    let up = up.unwrap();
    assert_eq!(
        (up.local, up.peer, up.dns),
        (SERVER_ADDR, peer, [Some(DNS), None])
    );
    assert_eq!(up.mtu, 1400);
    let cup = net.client_events.iter().find_map(|e| match e {
        Event::Up(i) => Some(*i),
        _ => None,
    });
    let cup = cup.unwrap();
    assert_eq!(
        (cup.local, cup.peer, cup.dns),
        (peer, SERVER_ADDR, [Some(DNS), None])
    );
    assert_eq!(net.server.user(), Some(user));
    assert!(net.pool.is_allocated(peer));
}

fn data_flows(net: &mut Net) {
    let ip = [0x45, 0, 0, 20, 1, 2, 3, 4];
    let f = net.client.encapsulate_ipv4(&ip);
    assert_eq!(&f[..4], &pppd_lite::IPV4_HEADER);
    assert_eq!(net.server.handle_frame(net.now, &f), Input::Ipv4(&ip));
    // PFC + ACFC compressed form.
    let mut short = vec![0x21];
    short.extend_from_slice(&ip);
    assert_eq!(net.client.handle_frame(net.now, &short), Input::Ipv4(&ip));
}

#[test]
fn pap_ladder() {
    let mut net = ladder(
        AuthProtocol::Pap,
        "alice",
        Backend::Password(users(&[("alice", "correct horse")])),
    );
    assert_up_events(&net, "alice", AuthProtocol::Pap);
    data_flows(&mut net);
}

#[test]
fn chap_md5_ladder() {
    let mut net = ladder(
        AuthProtocol::ChapMd5,
        "bob",
        Backend::Password(users(&[("bob", "correct horse")])),
    );
    assert_up_events(&net, "bob", AuthProtocol::ChapMd5);
    data_flows(&mut net);
}

#[test]
fn mschapv2_ladder_with_domain() {
    let hashes = HashMap::from([("carol".to_string(), nt_hash("correct horse"))]);
    let mut net = ladder(
        AuthProtocol::MsChapV2,
        "CORP\\carol",
        Backend::NtHash(hashes),
    );
    assert_up_events(&net, "CORP\\carol", AuthProtocol::MsChapV2);
    assert!(net.server.mppe_keys().is_some());
    data_flows(&mut net);
    // Keepalives keep both ends up for a long idle period.
    assert!(!net.run_until(Duration::from_secs(600), |n| !n.both_up()));
    assert!(net.server.stats().echo_replies >= 15);
}

#[test]
fn eap_md5_relay_ladder() {
    let net = ladder(
        AuthProtocol::Eap,
        "dave",
        Backend::EapMd5 {
            password: "correct horse".into(),
            challenge: [0x5a; 16],
        },
    );
    assert_up_events(&net, "dave", AuthProtocol::Eap);
    let reqs: Vec<_> = net
        .server_events
        .iter()
        .filter_map(|e| match e {
            Event::Authenticate(r) => Some(r.user.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reqs, ["dave", "dave"]);
}

#[test]
fn eap_md5_wrong_password_fails() {
    let mut net = Net::new(
        server_config(vec![AuthProtocol::Eap]),
        client_config("dave", "wrong", vec![AuthProtocol::Eap]),
        Backend::EapMd5 {
            password: "correct horse".into(),
            challenge: [1; 16],
        },
    );
    assert!(net.run_until(Duration::from_secs(60), |n| {
        n.client_events
            .contains(&Event::Down(DownReason::AuthFailed))
    }));
    assert!(
        net.server_events
            .contains(&Event::Down(DownReason::AuthFailed))
    );
}

#[test]
fn auth_protocol_fallback_on_client_nak() {
    // The server prefers MS-CHAPv2, the client only does CHAP-MD5 and Naks with it.
    let mut net = Net::new(
        server_config(vec![AuthProtocol::MsChapV2, AuthProtocol::ChapMd5]),
        client_config("bob", "correct horse", vec![AuthProtocol::ChapMd5]),
        Backend::Password(users(&[("bob", "correct horse")])),
    );
    assert!(net.run_until(Duration::from_secs(60), Net::both_up));
    assert_up_events(&net, "bob", AuthProtocol::ChapMd5);
}

#[test]
fn no_common_auth_protocol_fails() {
    let mut net = Net::new(
        server_config(vec![AuthProtocol::MsChapV2]),
        client_config("bob", "x", vec![AuthProtocol::Pap]),
        Backend::Never,
    );
    assert!(net.run_until(Duration::from_secs(60), |n| !n.server_events.is_empty()));
    assert_eq!(
        net.server_events,
        [Event::Down(DownReason::Negotiation(
            "LCP: no authentication protocol in common"
        ))]
    );
}

#[test]
fn mschapv2_wrong_password_retries_then_fails() {
    let hashes = HashMap::from([("carol".to_string(), nt_hash("correct horse"))]);
    let mut net = Net::new(
        server_config(vec![AuthProtocol::MsChapV2]),
        client_config("carol", "wrong", vec![AuthProtocol::MsChapV2]),
        Backend::NtHash(hashes),
    );
    assert!(net.run_until(Duration::from_secs(120), |n| {
        n.client_events.iter().any(|e| matches!(e, Event::Down(_)))
    }));
    let failures = net
        .server_events
        .iter()
        .filter(|e| matches!(e, Event::AuthFailed { .. }))
        .count();
    assert_eq!(failures, 3);
    assert_eq!(
        net.server_events.last(),
        Some(&Event::Down(DownReason::AuthFailed))
    );
    let Some(Event::AuthFailed { reason, .. }) = net
        .client_events
        .iter()
        .find(|e| matches!(e, Event::AuthFailed { .. }))
    else {
        panic!("client saw no failure")
    };
    assert!(reason.starts_with("E=691 R=0 C="), "{reason}");
    assert_eq!(
        net.client_events.last(),
        Some(&Event::Down(DownReason::AuthFailed))
    );
    assert!(!net.server.is_up());
    assert_eq!(net.pool.in_use(), 0);
}

#[test]
fn pap_wrong_password_is_naked() {
    let mut net = Net::new(
        server_config(vec![AuthProtocol::Pap]),
        client_config("alice", "wrong", vec![AuthProtocol::Pap]),
        Backend::Password(users(&[("alice", "correct horse")])),
    );
    assert!(net.run_until(Duration::from_secs(60), |n| n.client_events.len() >= 2));
    assert_eq!(
        net.client_events,
        [
            Event::AuthFailed {
                user: "alice".into(),
                protocol: AuthProtocol::Pap,
                reason: "authentication failed".into()
            },
            Event::Down(DownReason::AuthFailed)
        ]
    );
}

#[test]
fn client_rejects_a_wrong_authenticator_response() {
    struct Liar;
    let mut net = Net::new(
        server_config(vec![AuthProtocol::MsChapV2]),
        client_config("carol", "pw", vec![AuthProtocol::MsChapV2]),
        Backend::Never,
    );
    let _ = Liar;
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.server_events
            .iter()
            .any(|e| matches!(e, Event::Authenticate(_)))
    }));
    let Some(Event::Authenticate(req)) = net.server_events.first().cloned() else {
        panic!()
    };
    net.server.auth_decision(
        net.now,
        req.id,
        Verdict::Accept(Accept {
            mschapv2_authenticator_response: Some([0x11; 20]),
            mppe: None,
        }),
    );
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.client_events
            .contains(&Event::Down(DownReason::AuthFailed))
    }));
}

#[test]
fn pool_exhausted() {
    let mut net = Net::new(
        server_config(vec![AuthProtocol::Pap]),
        client_config("alice", "correct horse", vec![AuthProtocol::Pap]),
        Backend::Password(users(&[("alice", "correct horse")])),
    );
    net.pool = pool(1);
    net.pool.allocate("someone else").unwrap();
    assert!(net.run_until(Duration::from_secs(60), |n| {
        n.client_events.iter().any(|e| matches!(e, Event::Down(_)))
    }));
    assert_eq!(
        net.server_events.last(),
        Some(&Event::Down(DownReason::PoolExhausted))
    );
    assert_eq!(
        net.client_events.last(),
        Some(&Event::Down(DownReason::PeerTerminated(
            "no IP address available".into()
        )))
    );
}

#[test]
fn silent_peer_exhausts_max_configure() {
    let now = Instant::now();
    let mut s = Ppp::new(server_config(vec![AuthProtocol::MsChapV2]), now, [9; 32]);
    s.open(now);
    let mut sent = 0;
    let mut t = now;
    loop {
        while s.poll_transmit().is_some() {
            sent += 1;
        }
        if let Some(e) = s.poll_event() {
            assert_eq!(
                e,
                Event::Down(DownReason::Negotiation("LCP: no agreement with the peer"))
            );
            break;
        }
        t = s.poll_timeout().expect("a timer while negotiating");
        s.handle_timeout(t);
    }
    assert_eq!(sent, 10);
    assert_eq!(t - now, Duration::from_secs(30));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn echo_timeout_detects_dead_peer() {
    let mut net = ladder(
        AuthProtocol::Pap,
        "alice",
        Backend::Password(users(&[("alice", "correct horse")])),
    );
    let up_at = net.now;
    net.cut = true;
    assert!(net.run_until(Duration::from_secs(600), |n| {
        n.server_events
            .contains(&Event::Down(DownReason::EchoTimeout))
    }));
    let dead_after = net.now - up_at;
    assert!(
        dead_after >= Duration::from_secs(120) && dead_after <= Duration::from_secs(160),
        "{dead_after:?}"
    );
    assert!(!net.server.is_up());
}

#[test]
fn comes_up_despite_30_percent_loss() {
    for seed in 1..=60u64 {
        let hashes = HashMap::from([("carol".to_string(), nt_hash("correct horse"))]);
        // With 30% loss a request/ack round trip succeeds with p = 0.49, so 10 tries fail
        // with p = 0.51^10 ≈ 0.1% per negotiation: over 60 links x 3 negotiations that does
        // happen (seed 16 exhausts IPCP's Max-Configure). 20 tries make it ≈ 1e-6.
        let mut server = server_config(vec![AuthProtocol::MsChapV2]);
        let mut client = client_config("carol", "correct horse", vec![AuthProtocol::MsChapV2]);
        server.max_configure = 20;
        client.max_configure = 20;
        let mut net = Net::new(server, client, Backend::NtHash(hashes));
        net.loss = Some((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 30));
        assert!(
            net.run_until(Duration::from_secs(120), Net::both_up),
            "seed {seed}: {:?} / {:?}",
            net.server_events,
            net.client_events
        );
        assert_eq!(
            net.server_events
                .iter()
                .filter(|e| matches!(e, Event::Authenticate(_)))
                .count(),
            1,
            "seed {seed}"
        );
    }
}

#[test]
fn late_decision_still_works_and_duplicates_are_absorbed() {
    let backend = Backend::Late(
        Duration::from_secs(20),
        Box::new(Backend::Password(users(&[("bob", "correct horse")]))),
    );
    let mut net = Net::new(
        server_config(vec![AuthProtocol::ChapMd5]),
        client_config("bob", "correct horse", vec![AuthProtocol::ChapMd5]),
        backend,
    );
    assert!(net.run_until(Duration::from_secs(60), Net::both_up));
    assert!(net.server.stats().auth_duplicates >= 3);
    assert_eq!(
        net.server_events
            .iter()
            .filter(|e| matches!(e, Event::Authenticate(_)))
            .count(),
        1
    );
}

#[test]
fn decision_never_arrives() {
    let mut net = Net::new(
        server_config(vec![AuthProtocol::MsChapV2]),
        client_config("carol", "pw", vec![AuthProtocol::MsChapV2]),
        Backend::Never,
    );
    assert!(net.run_until(Duration::from_secs(120), |n| {
        n.server_events
            .contains(&Event::Down(DownReason::AuthTimeout))
    }));
    let Some(Event::Authenticate(req)) = net.server_events.first().cloned() else {
        panic!()
    };
    // A decision after the timeout is stale.
    net.server
        .auth_decision(net.now, req.id, Verdict::Accept(Accept::default()));
    assert_eq!(net.server.stats().stale_decisions, 1);
    assert!(!net.server.is_up());
}

#[test]
fn stale_decision_id_is_ignored() {
    let mut net = Net::new(
        server_config(vec![AuthProtocol::Pap]),
        client_config("alice", "correct horse", vec![AuthProtocol::Pap]),
        Backend::Never,
    );
    assert!(net.run_until(Duration::from_secs(10), |n| !n.server_events.is_empty()));
    let Some(Event::Authenticate(req)) = net.server_events.first().cloned() else {
        panic!()
    };
    net.server
        .auth_decision(net.now, req.id + 1, Verdict::Accept(Accept::default()));
    assert_eq!(net.server.stats().stale_decisions, 1);
    net.server
        .auth_decision(net.now, req.id, Verdict::Accept(Accept::default()));
    assert!(net.run_until(Duration::from_secs(10), Net::both_up));
}

#[test]
fn ipv6cp_negotiated_when_enabled() {
    let mut s = server_config(vec![AuthProtocol::Pap]);
    let mut c = client_config("alice", "correct horse", vec![AuthProtocol::Pap]);
    s.ipv6 = true;
    c.ipv6 = true;
    let mut net = Net::new(
        s,
        c,
        Backend::Password(users(&[("alice", "correct horse")])),
    );
    assert!(net.run_until(Duration::from_secs(60), |n| {
        n.client_events
            .iter()
            .any(|e| matches!(e, Event::Ipv6Up { .. }))
    }));
    let ids = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::Ipv6Up {
                local_interface_id,
                peer_interface_id,
            } => Some((*local_interface_id, *peer_interface_id)),
            _ => None,
        })
    };
    let (sl, sp) = ids(&net.server_events).unwrap();
    let (cl, cp) = ids(&net.client_events).unwrap();
    assert_eq!((sl, sp), (cp, cl));
    assert_ne!(sl, [0; 8]);
    let f = frame::encode(protocol::IPV6, &[0x60, 0, 0, 0]);
    assert_eq!(
        net.server.handle_frame(net.now, &f),
        Input::Ipv6(&[0x60, 0, 0, 0])
    );
}

#[test]
fn administrative_close_reaches_the_peer() {
    let mut net = ladder(
        AuthProtocol::Pap,
        "alice",
        Backend::Password(users(&[("alice", "correct horse")])),
    );
    net.server.close(net.now, "server shutting down");
    assert!(net.run_until(Duration::from_secs(30), |n| {
        n.client_events.iter().any(|e| matches!(e, Event::Down(_)))
    }));
    assert_eq!(
        net.client_events.last(),
        Some(&Event::Down(DownReason::PeerTerminated(
            "server shutting down".into()
        )))
    );
    assert_eq!(
        net.server_events.last(),
        Some(&Event::Down(DownReason::Closed(
            "server shutting down".into()
        )))
    );
    assert_eq!(net.pool.in_use(), 0);
    assert_eq!(net.server.poll_timeout(), None);
}

// ----- hand-crafted peers ------------------------------------------------------------------

fn lcp(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    frame::encode(protocol::LCP, &packet::encode(code, id, data))
}

fn ncp(proto: u16, code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    frame::encode(proto, &packet::encode(code, id, data))
}

/// Splits one of our frames into (protocol, code, id, data).
fn decode(f: &[u8]) -> (u16, u8, u8, Vec<u8>) {
    let (proto, info) = frame::parse(f).unwrap();
    let p = Packet::parse(info).unwrap();
    (proto, p.code, p.id, p.data.to_vec())
}

fn drain(p: &mut Ppp) -> Vec<(u16, u8, u8, Vec<u8>)> {
    std::iter::from_fn(|| p.poll_transmit())
        .map(|f| decode(&f))
        .collect()
}

const PEER_MAGIC: [u8; 6] = [5, 6, 0x12, 0x34, 0x56, 0x78];

/// A server with no authentication whose LCP is opened by a hand-crafted peer.
fn crafted_server(now: Instant, ipv6: bool) -> Ppp {
    let mut cfg = server_config(vec![]);
    cfg.ipv6 = ipv6;
    let mut s = Ppp::new(cfg, now, [4; 32]);
    s.open(now);
    let out = drain(&mut s);
    let (proto, code, id, data) = out[0].clone();
    assert_eq!((proto, code), (protocol::LCP, 1));
    s.handle_frame(now, &lcp(2, id, &data));
    s.handle_frame(now, &lcp(1, 1, &PEER_MAGIC));
    let out = drain(&mut s);
    assert_eq!(out[0], (protocol::LCP, 2, 1, PEER_MAGIC.to_vec()));
    // No authentication configured: straight to the network phase, IPCP ConfReq out.
    assert_eq!((out[1].0, out[1].1), (protocol::IPCP, 1));
    assert_eq!(out[1].3, [3, 6, 10, 8, 0, 1]);
    s
}

#[test]
fn windows_lcp_request_gets_exactly_the_multilink_and_callback_options_rejected() {
    let now = Instant::now();
    let mut s = Ppp::new(server_config(vec![AuthProtocol::MsChapV2]), now, [4; 32]);
    s.open(now);
    drain(&mut s);
    let callback = [13, 3, 6];
    let mrru = [17, 4, 0x06, 0x4e];
    let enddisc = [19, 9, 1, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01];
    let mut req = vec![1, 4, 0x05, 0x78, 5, 6, 1, 2, 3, 4, 7, 2, 8, 2];
    req.extend_from_slice(&callback);
    req.extend_from_slice(&mrru);
    req.extend_from_slice(&enddisc);
    s.handle_frame(now, &lcp(1, 0x33, &req));
    let mut rejected = callback.to_vec();
    rejected.extend_from_slice(&mrru);
    rejected.extend_from_slice(&enddisc);
    assert_eq!(drain(&mut s), [(protocol::LCP, 4, 0x33, rejected)]);
    // Without them, the rest is acked verbatim.
    let plain = &req[..14];
    s.handle_frame(now, &lcp(1, 0x34, plain));
    assert_eq!(drain(&mut s), [(protocol::LCP, 2, 0x34, plain.to_vec())]);
}

#[test]
fn server_request_carries_mru_auth_and_magic() {
    let now = Instant::now();
    let mut s = Ppp::new(server_config(vec![AuthProtocol::MsChapV2]), now, [4; 32]);
    s.open(now);
    let (_, code, _, data) = drain(&mut s).remove(0);
    assert_eq!(code, 1);
    assert_eq!(&data[..9], &[1, 4, 0x05, 0x78, 3, 5, 0xC2, 0x23, 0x81]);
    assert_eq!(data[9..11], [5, 6]);
    assert_eq!(data.len(), 15);
}

#[test]
fn apple_ipcp_request_with_vj_is_rejected() {
    let now = Instant::now();
    let mut s = crafted_server(now, false);
    let vj = [2, 6, 0x00, 0x2d, 0x0f, 0x01];
    let mut req = vj.to_vec();
    req.extend_from_slice(&[3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0]);
    // Held until the owner assigns an address.
    assert_eq!(
        s.handle_frame(now, &ncp(protocol::IPCP, 1, 7, &req)),
        Input::Handled
    );
    assert!(drain(&mut s).is_empty());
    s.assign_address(now, Ipv4Addr::new(10, 8, 0, 77));
    assert_eq!(drain(&mut s), [(protocol::IPCP, 4, 7, vj.to_vec())]);
    // Next round: Nak with the assigned address and the DNS server.
    s.handle_frame(now, &ncp(protocol::IPCP, 1, 8, &req[6..]));
    assert_eq!(
        drain(&mut s),
        [(
            protocol::IPCP,
            3,
            8,
            vec![3, 6, 10, 8, 0, 77, 129, 6, 10, 8, 0, 53]
        )]
    );
}

#[test]
fn identification_time_remaining_and_discard_are_ignored() {
    let now = Instant::now();
    let mut s = crafted_server(now, false);
    drain(&mut s);
    let mut ident = vec![0x12, 0x34, 0x56, 0x78];
    ident.extend_from_slice(b"MSRASV5.20");
    for code in [12, 13, 11] {
        assert_eq!(s.handle_frame(now, &lcp(code, 3, &ident)), Input::Handled);
    }
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.stats().ignored, 3);
    // An unknown code is Code-Rejected.
    let unknown = lcp(42, 4, &[1, 2]);
    s.handle_frame(now, &unknown);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1), (protocol::LCP, 7));
    assert_eq!(out[0].3, unknown[4..]);
    assert_eq!(s.stats().code_rejected, 1);
}

#[test]
fn ccp_mplscp_bacp_and_disabled_ipv6cp_are_protocol_rejected() {
    let now = Instant::now();
    let mut s = crafted_server(now, false);
    drain(&mut s);
    for proto in [
        protocol::CCP,
        protocol::MPLSCP,
        protocol::BACP,
        protocol::IPV6CP,
        0x3021,
    ] {
        let f = ncp(proto, 1, 1, &[18, 3, 1]);
        assert_eq!(
            s.handle_frame(now, &f),
            Input::Dropped(DropReason::ProtocolRejected(proto))
        );
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        let (p, code, _, data) = &out[0];
        assert_eq!((*p, *code), (protocol::LCP, 8));
        assert_eq!(&data[..2], &proto.to_be_bytes());
        assert_eq!(&data[2..], &f[4..]);
    }
    assert_eq!(s.stats().protocol_rejected, 5);
}

#[test]
fn protocol_reject_is_truncated_to_the_peer_mru() {
    let now = Instant::now();
    let mut cfg = server_config(vec![]);
    cfg.mru = 1500;
    let mut s = Ppp::new(cfg, now, [4; 32]);
    s.open(now);
    let (_, _, id, data) = drain(&mut s).remove(0);
    s.handle_frame(now, &lcp(2, id, &data));
    s.handle_frame(now, &lcp(1, 1, &[1, 4, 0, 200]));
    drain(&mut s);
    let big = ncp(protocol::CCP, 1, 1, &[0xAB; 1000]);
    s.handle_frame(now, &big);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].3.len() + 4, 200);
}

#[test]
fn ncp_frames_before_the_network_phase_are_dropped_silently() {
    let now = Instant::now();
    let mut s = Ppp::new(server_config(vec![AuthProtocol::Pap]), now, [4; 32]);
    s.open(now);
    drain(&mut s);
    let f = ncp(protocol::IPCP, 1, 1, &[3, 6, 0, 0, 0, 0]);
    assert_eq!(
        s.handle_frame(now, &f),
        Input::Dropped(DropReason::TooEarly)
    );
    let ip = frame::encode(protocol::IPV4, &[0x45]);
    assert_eq!(
        s.handle_frame(now, &ip),
        Input::Dropped(DropReason::NotOpened)
    );
    // CCP before LCP is Opened: no Protocol-Reject yet.
    let ccp = ncp(protocol::CCP, 1, 1, &[]);
    assert_eq!(
        s.handle_frame(now, &ccp),
        Input::Dropped(DropReason::UnsupportedProtocol(protocol::CCP))
    );
    assert!(drain(&mut s).is_empty());
}

#[test]
fn malformed_packets_are_counted_by_cause() {
    let now = Instant::now();
    let mut s = crafted_server(now, false);
    drain(&mut s);
    let bad_len = frame::encode(protocol::LCP, &[1, 1, 0, 50, 1, 4]);
    let short = frame::encode(protocol::LCP, &[1, 1, 0]);
    let bad_opt = lcp(1, 2, &[1, 1]);
    let trunc_opt = lcp(1, 3, &[1, 4, 5]);
    let bad_frame = [0xFF, 0x03, 0xC0];
    for f in [&bad_len[..], &short, &bad_opt, &trunc_opt, &bad_frame] {
        assert!(matches!(
            s.handle_frame(now, f),
            Input::Dropped(_) | Input::Handled
        ));
    }
    let m = &s.stats().malformed;
    assert_eq!((m.length, m.option, m.frame), (2, 2, 1));
    assert!(drain(&mut s).is_empty());
    assert!(s.is_up() || s.peer_address().is_none());
}

#[test]
fn loopback_is_detected() {
    let now = Instant::now();
    let mut s = Ppp::new(server_config(vec![AuthProtocol::MsChapV2]), now, [5; 32]);
    s.open(now);
    let mut t = now;
    let mut down = None;
    for _ in 0..200 {
        while let Some(f) = s.poll_transmit() {
            s.handle_frame(t, &f);
        }
        if let Some(e) = s.poll_event() {
            down = Some(e);
            break;
        }
        match s.poll_timeout() {
            Some(d) => {
                t = d;
                s.handle_timeout(t);
            }
            None => break,
        }
    }
    assert_eq!(down, Some(Event::Down(DownReason::LoopbackDetected)));
}

#[test]
fn debug_output_hides_the_client_password() {
    let cfg = client_config("alice", "s3cret-pw", vec![AuthProtocol::Pap]);
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("s3cret-pw"));
    let now = Instant::now();
    let mut p = Ppp::new(cfg, now, [1; 32]);
    p.open(now);
    assert!(!format!("{p:?}").contains("s3cret-pw"));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Servers in several states: Initial, opening, network phase, and fully up.
    fn servers(now: Instant) -> Vec<Ppp> {
        let initial = Ppp::new(server_config(vec![AuthProtocol::MsChapV2]), now, [1; 32]);
        let mut opening = Ppp::new(server_config(vec![AuthProtocol::Eap]), now, [2; 32]);
        opening.open(now);
        let network = crafted_server(now, true);
        let mut up = crafted_server(now, true);
        drain(&mut up);
        up.handle_frame(now, &ncp(protocol::IPCP, 1, 1, &[3, 6, 10, 8, 0, 9]));
        up.assign_address(now, Ipv4Addr::new(10, 8, 0, 9));
        vec![initial, opening, network, up]
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = frame::parse(&bytes);
            let _ = Packet::parse(&bytes);
            let _ = eap::parse(&bytes);
            let _ = packet::validate_options(&bytes);
        }

        #[test]
        fn handle_frame_never_panics(
            frames in proptest::collection::vec(
                (prop_oneof![
                    Just(vec![0xFF, 0x03, 0xC0, 0x21]),
                    Just(vec![0xFF, 0x03, 0x80, 0x21]),
                    Just(vec![0xFF, 0x03, 0x80, 0x57]),
                    Just(vec![0xC2, 0x23]),
                    Just(vec![0xC2, 0x27]),
                    Just(vec![0xC0, 0x23]),
                    Just(vec![0x21]),
                    Just(vec![]),
                ], proptest::collection::vec(any::<u8>(), 0..40)),
                1..8),
            tick in 0u64..100,
        ) {
            let now = Instant::now();
            for mut s in servers(now) {
                for (head, body) in &frames {
                    let mut f = head.clone();
                    f.extend_from_slice(body);
                    let _ = s.handle_frame(now, &f);
                    while s.poll_transmit().is_some() {}
                    while s.poll_event().is_some() {}
                }
                s.handle_timeout(now + Duration::from_secs(tick));
                s.auth_decision(now, 1, Verdict::reject("no"));
            }
        }
    }
}
