//! The LNS against the independent test LAC, in memory, with a fake clock and an impaired link.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use roadgate::l2tp::{
    CallDirection, CallInfo, Cleared, Event, Lns, LnsConfig, OutgoingCall, PeerId, SessionRef,
};
use roadgate_tests::lac::{self, Lac, LacConfig, LacEvent, LacState};

struct Client {
    peer: PeerId,
    port: u16,
    lac: Lac,
    /// Highest Nr of this LAC the LNS has actually received: what the LNS knows is acked.
    nr_seen_by_lns: Option<u16>,
    events: Vec<LacEvent>,
    data: Vec<(u16, Vec<u8>, bool)>,
    /// Largest number of unacknowledged LNS messages seen on the wire towards this client.
    max_in_flight: u16,
}

struct Net {
    now: Instant,
    lns: Lns,
    clients: Vec<Client>,
    loss: f64,
    rng: ChaCha20Rng,
    /// Reorder: deliver each batch in reverse.
    reorder: bool,
    /// Deliver every datagram twice.
    duplicate: bool,
    events: Vec<Event>,
    lns_data: Vec<(SessionRef, Vec<u8>)>,
    control_from_lns: usize,
}

fn cfg() -> LnsConfig {
    LnsConfig {
        max_tunnels: 10_000,
        max_sessions_per_tunnel: 64,
        ..LnsConfig::default()
    }
}

impl Net {
    fn new(config: LnsConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            lns: Lns::new(config, [7; 32]),
            clients: Vec::new(),
            loss: 0.0,
            rng: ChaCha20Rng::seed_from_u64(99),
            reorder: false,
            duplicate: false,
            events: Vec::new(),
            lns_data: Vec::new(),
            control_from_lns: 0,
        }
    }

    fn add(&mut self, peer: PeerId, port: u16, c: LacConfig) -> usize {
        let lac = Lac::new(c, peer, self.now);
        self.clients.push(Client {
            peer,
            port,
            lac,
            nr_seen_by_lns: None,
            events: Vec::new(),
            data: Vec::new(),
            max_in_flight: 0,
        });
        self.clients.len() - 1
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < self.loss
    }

    /// Moves datagrams until nothing is pending. Returns whether anything moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        for _ in 0..10_000 {
            let mut batch: Vec<(usize, Vec<u8>, bool)> = Vec::new(); // (client, bytes, to_lns)
            for (i, c) in self.clients.iter_mut().enumerate() {
                while let Some(d) = c.lac.poll_transmit() {
                    batch.push((i, d, true));
                }
            }
            while let Some(t) = self.lns.poll_transmit() {
                // peers without a client object (flood tests) are a black hole
                let Some(i) = self.clients.iter().position(|c| c.peer == t.peer) else {
                    continue;
                };
                assert_eq!(
                    t.port, self.clients[i].port,
                    "reply goes to the client's source port"
                );
                batch.push((i, t.payload, false));
            }
            while let Some(e) = self.lns.poll_event() {
                self.events.push(e);
            }
            if batch.is_empty() {
                break;
            }
            moved = true;
            if self.reorder {
                batch.reverse();
            }
            for (i, d, to_lns) in batch {
                let copies = if self.duplicate { 2 } else { 1 };
                for _ in 0..copies {
                    if self.lost() {
                        continue;
                    }
                    self.deliver(i, &d, to_lns);
                }
            }
        }
        for c in &mut self.clients {
            while let Some(e) = c.lac.poll_event() {
                c.events.push(e);
            }
        }
        moved
    }

    fn deliver(&mut self, i: usize, d: &[u8], to_lns: bool) {
        let now = self.now;
        let c = &mut self.clients[i];
        if to_lns {
            if let Some((true, _, _, Some((_, nr)), _, _)) = lac::parse_header(d) {
                let prev = c.nr_seen_by_lns.unwrap_or(nr);
                if c.nr_seen_by_lns.is_none() || nr.wrapping_sub(prev) < 0x8000 {
                    c.nr_seen_by_lns = Some(nr);
                }
            }
            if let Some((sref, range)) = self.lns.handle_datagram(now, c.peer, c.port, d) {
                assert_eq!(sref.peer, c.peer, "data attributed to the right peer");
                self.lns_data.push((sref, d[range].to_vec()));
            }
        } else {
            if let Some((true, _, _, Some((ns, _)), body, end)) = lac::parse_header(d)
                && body != end
            {
                self.control_from_lns += 1;
                let acked = c.nr_seen_by_lns.unwrap_or(0);
                let in_flight = ns.wrapping_sub(acked).wrapping_add(1);
                if in_flight < 0x8000 {
                    c.max_in_flight = c.max_in_flight.max(in_flight);
                }
            }
            if let Some(x) = c.lac.handle_datagram(now, d) {
                c.data.push(x);
            }
        }
    }

    /// Runs the network for `dur` of fake time.
    fn run(&mut self, dur: Duration) {
        let end = self.now + dur;
        loop {
            self.pump();
            let mut next = self.lns.poll_timeout();
            for c in &self.clients {
                next = [next, c.lac.poll_timeout()].into_iter().flatten().min();
            }
            let Some(next) = next.filter(|t| *t <= end) else {
                self.now = end;
                self.lns.handle_timeout(end);
                for c in &mut self.clients {
                    c.lac.handle_timeout(end);
                }
                self.pump();
                return;
            };
            self.now = self.now.max(next);
            self.lns.handle_timeout(self.now);
            let now = self.now;
            for c in &mut self.clients {
                c.lac.handle_timeout(now);
            }
        }
    }

    fn connect(&mut self, i: usize) {
        let now = self.now;
        self.clients[i].lac.connect(now);
        self.run(Duration::from_millis(10));
    }

    fn open(&mut self, i: usize) -> u16 {
        let now = self.now;
        let sid = self.clients[i].lac.open_session(now);
        self.run(Duration::from_millis(10));
        sid
    }

    fn session_ups(&self) -> Vec<SessionRef> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::SessionUp { session, .. } => Some(*session),
                _ => None,
            })
            .collect()
    }

    fn tunnel_downs(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::TunnelDown { .. }))
            .count()
    }

    /// PPP frames both ways over session `sref` / LAC session `sid` of client `i`.
    fn exchange_data(&mut self, i: usize, sid: u16, sref: SessionRef, tag: u8) -> bool {
        let up = vec![0xff, 0x03, 0xc0, 0x21, tag];
        let d = self.clients[i]
            .lac
            .send_data(sid, &up)
            .expect("LAC session up");
        let now = self.now;
        let got = self
            .lns
            .handle_datagram(now, self.clients[i].peer, self.clients[i].port, &d);
        let Some((r, range)) = got else { return false };
        assert_eq!(r, sref);
        assert_eq!(&d[range], &up[..]);
        let h = self.lns.data_header(sref).expect("session known");
        assert_eq!(h.port, self.clients[i].port);
        let mut down = h.bytes[..h.len].to_vec();
        down.extend_from_slice(&[0xff, 0x03, 0x80, 0x21, tag]);
        let before = self.clients[i].data.len();
        self.deliver(i, &down, false);
        self.clients[i].data.len() == before + 1
            && self.clients[i].data.last().map(|x| x.1.clone())
                == Some(vec![0xff, 0x03, 0x80, 0x21, tag])
    }
}

impl Net {
    /// Our tunnel ID for client `i` (from its TunnelUp).
    fn tunnel_of(&self, i: usize) -> u16 {
        let peer = self.clients[i].peer;
        self.events
            .iter()
            .find_map(|e| match e {
                Event::TunnelUp {
                    peer: p, tunnel, ..
                } if *p == peer => Some(*tunnel),
                _ => None,
            })
            .expect("tunnel up")
    }

    /// place_call on client `i`'s tunnel, then the network runs for `dur`.
    fn place(&mut self, i: usize, call: OutgoingCall, dur: Duration) -> Option<SessionRef> {
        let (now, peer, tunnel) = (self.now, self.clients[i].peer, self.tunnel_of(i));
        let r = self.lns.place_call(now, peer, tunnel, call);
        self.run(dur);
        r
    }

    fn call_up(&self, sref: SessionRef) -> Option<CallInfo> {
        self.events.iter().find_map(|e| match e {
            Event::SessionUp { session, call } if *session == sref => Some(call.clone()),
            _ => None,
        })
    }

    fn call_down(&self, sref: SessionRef) -> Option<Cleared> {
        self.events.iter().find_map(|e| match e {
            Event::SessionDown { session, reason } if *session == sref => Some(reason.clone()),
            _ => None,
        })
    }

    /// The LAC's session for an outgoing call (its SessionUp naming our session).
    fn lac_session_of(&self, i: usize, sref: SessionRef) -> Option<u16> {
        self.clients[i].events.iter().find_map(|e| match e {
            LacEvent::SessionUp {
                session,
                remote_session,
            } if *remote_session == sref.session => Some(*session),
            _ => None,
        })
    }
}

fn accepting(mut c: LacConfig) -> LacConfig {
    c.accept_outgoing = true;
    c
}

fn establish(net: &mut Net, i: usize) -> (u16, SessionRef) {
    net.connect(i);
    assert_eq!(net.clients[i].lac.state, LacState::Established);
    let sid = net.open(i);
    assert!(net.clients[i].lac.session_up(sid), "ICRP received");
    let sref = *net.session_ups().last().expect("SessionUp");
    assert_eq!(sref.peer, net.clients[i].peer);
    (sid, sref)
}

#[test]
fn windows_like_client() {
    let mut net = Net::new(cfg());
    let i = net.add(1, 1701, LacConfig::windows());
    let (sid, sref) = establish(&mut net, i);
    match &net.events[0] {
        Event::TunnelUp {
            host_name, vendor, ..
        } => {
            assert_eq!(host_name, "DESKTOP-TEST");
            assert_eq!(vendor.as_deref(), Some("Microsoft"));
        }
        e => panic!("{e:?}"),
    }
    assert!(net.exchange_data(i, sid, sref, 1));
    assert!(
        !net.clients[i].data[0].2,
        "no sequence numbers unless asked"
    );
    assert_eq!(net.lns.tunnel_count(), 1);
    assert_eq!(net.lns.session_count(), 1);
    // CDN from the client, then StopCCN
    let now = net.now;
    net.clients[i].lac.close_session(now, sid, 3);
    net.run(Duration::from_millis(10));
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, Event::SessionDown { .. }))
    );
    assert_eq!(net.lns.session_count(), 0);
    let now = net.now;
    net.clients[i].lac.close_tunnel(now, 1);
    net.run(Duration::from_millis(10));
    assert_eq!(net.tunnel_downs(), 1);
    assert_eq!(net.lns.tunnel_count(), 0);
    assert_eq!(net.lns.stats().stopccn_received, 1);
    // the closing tunnel lingers, then is gone
    net.run(Duration::from_secs(40));
    assert_eq!(net.lns.poll_timeout(), None);
}

#[test]
fn apple_like_client_with_tunnel0_hello_burst() {
    let mut net = Net::new(cfg());
    let i = net.add(2, 50123, LacConfig::apple());
    let hello = net.clients[i].lac.tunnel0_hello();
    for _ in 0..10 {
        let now = net.now;
        assert!(net.lns.handle_datagram(now, 2, 50123, &hello).is_none());
    }
    assert!(
        net.lns.poll_transmit().is_none(),
        "no reply to stray tunnel-0 messages"
    );
    assert_eq!(net.lns.stats().tunnel0_stray, 10);
    let (sid, sref) = establish(&mut net, i);
    match &net.events[0] {
        Event::TunnelUp {
            host_name, vendor, ..
        } => {
            assert_eq!(host_name, "MacBook.local", "trailing NUL trimmed");
            assert_eq!(vendor, &None);
        }
        e => panic!("{e:?}"),
    }
    assert!(net.exchange_data(i, sid, sref, 2));
    assert!(net.clients[i].max_in_flight <= 4);
}

fn android_with_secret(lns_secret: Option<&[u8]>, lac_secret: &[u8]) -> Net {
    let mut c = cfg();
    c.secret = lns_secret.map(|s| s.to_vec().into());
    let mut net = Net::new(c);
    let mut a = LacConfig::android();
    a.secret = Some(lac_secret.to_vec());
    a.challenge = true;
    net.add(3, 40000, a);
    net.connect(0);
    net
}

#[test]
fn android_like_client_window_one_with_secret() {
    let mut net = android_with_secret(Some(b"l2tp-secret"), b"l2tp-secret");
    assert_eq!(net.clients[0].lac.state, LacState::Established);
    let sid = net.open(0);
    let sref = net.session_ups()[0];
    for k in 0..5 {
        assert!(net.exchange_data(0, sid, sref, k));
    }
    // more control traffic: a few more sessions, closed by the server at once
    let mut refs = Vec::new();
    for _ in 0..3 {
        net.open(0);
        refs.push(*net.session_ups().last().unwrap());
    }
    let now = net.now;
    for r in refs {
        net.lns.close_session(now, r, 3, "admin");
    }
    net.run(Duration::from_secs(5));
    assert_eq!(
        net.clients[0].max_in_flight, 1,
        "never more than one message in flight to a window-1 peer"
    );
    assert!(net.control_from_lns >= 6);
    assert_eq!(net.lns.session_count(), 1);
    assert_eq!(net.lns.stats().auth_failed, 0);
}

#[test]
fn hidden_avps_from_the_lac() {
    let mut c = cfg();
    c.secret = Some(b"hush".to_vec().into());
    let mut net = Net::new(c);
    let mut x = LacConfig::xl2tpd();
    x.secret = Some(b"hush".to_vec());
    x.hide_session_avps = true;
    x.call_serial = 0x01020304u32.to_be_bytes().to_vec();
    net.add(9, 1701, x);
    let (sid, sref) = establish(&mut net, 0);
    let call = net.events.iter().find_map(|e| match e {
        Event::SessionUp { call, .. } => Some(call.clone()),
        _ => None,
    });
    assert_eq!(call.unwrap().call_serial, 0x01020304);
    assert!(net.exchange_data(0, sid, sref, 9));
}

#[test]
fn secret_mismatch_is_refused() {
    let net = android_with_secret(Some(b"server"), b"client");
    assert_ne!(net.clients[0].lac.state, LacState::Established);
    assert_eq!(
        net.clients[0].lac.stats.auth_failed, 1,
        "the client rejects our response"
    );
    assert_eq!(net.lns.tunnel_count(), 0);
}

#[test]
fn lns_rejects_wrong_challenge_response() {
    // the client has no challenge of its own but answers ours with the wrong secret
    let mut c = cfg();
    c.secret = Some(b"server".to_vec().into());
    let mut net = Net::new(c);
    let mut a = LacConfig::windows();
    a.secret = Some(b"wrong".to_vec());
    net.add(4, 1701, a);
    net.connect(0);
    assert_eq!(net.lns.stats().auth_failed, 1);
    assert_eq!(net.lns.tunnel_count(), 0);
    let downs: Vec<_> = net.clients[0]
        .events
        .iter()
        .filter(|e| matches!(e, LacEvent::TunnelDown { .. }))
        .collect();
    assert_eq!(
        downs,
        vec![&LacEvent::TunnelDown {
            result: Some((4, Some(0)))
        }]
    );
    assert!(
        !net.events
            .iter()
            .any(|e| matches!(e, Event::TunnelUp { .. }))
    );
}

#[test]
fn client_secret_without_server_secret_is_refused() {
    let net = android_with_secret(None, b"client");
    assert_eq!(net.lns.stats().no_secret_configured, 1);
    assert!(net.clients[0].events.contains(&LacEvent::TunnelDown {
        result: Some((4, Some(0)))
    }));
}

#[test]
fn data_with_sequencing() {
    let mut net = Net::new(cfg());
    let mut x = LacConfig::xl2tpd();
    x.data_sequencing = true;
    net.add(5, 1701, x);
    let (sid, sref) = establish(&mut net, 0);
    let call = net.events.iter().find_map(|e| match e {
        Event::SessionUp { call, .. } => Some(call.clone()),
        _ => None,
    });
    assert!(call.unwrap().sequencing_required);
    for k in 0..3 {
        assert!(net.exchange_data(0, sid, sref, k));
    }
    assert!(
        net.clients[0].data.iter().all(|d| d.2),
        "our data carries Ns/Nr"
    );
}

/// Two clients (peers 10 and 11, the second with window 1) connecting over a link that loses
/// 30% of the datagrams (loss pattern from `seed`), after 20 s.
fn lossy_pair(seed: u64, a: LacConfig, b: LacConfig) -> Net {
    let mut net = Net::new(cfg());
    net.rng = ChaCha20Rng::seed_from_u64(seed);
    net.loss = 0.3;
    net.add(10, 1701, a);
    net.add(11, 40001, b);
    for i in 0..2 {
        let now = net.now;
        net.clients[i].lac.connect(now);
    }
    net.run(Duration::from_secs(20));
    net
}

#[test]
fn lossy_link_still_establishes() {
    for seed in 0..8u64 {
        let mut net = lossy_pair(seed, LacConfig::windows(), LacConfig::android());
        for i in 0..2 {
            if net.clients[i].lac.state == LacState::Established {
                let now = net.now;
                net.clients[i].lac.open_session(now);
            }
        }
        net.run(Duration::from_secs(20));
        let ups = net.session_ups().len();
        assert_eq!(ups, 2, "seed {seed}: both sessions up despite 30% loss");
        assert!(
            net.lns.stats().retransmits
                + net
                    .clients
                    .iter()
                    .map(|c| c.lac.stats.retransmits)
                    .sum::<u64>()
                > 0
        );
        assert!(net.clients[1].max_in_flight <= 1);
    }
}

#[test]
fn duplicated_and_reordered_deliveries() {
    let mut net = Net::new(cfg());
    net.duplicate = true;
    net.reorder = true;
    net.add(12, 1701, LacConfig::windows());
    let (_sid, _sref) = establish(&mut net, 0);
    // pipeline several ICRQs, delivered reversed and twice
    let now = net.now;
    for _ in 0..4 {
        net.clients[0].lac.open_session(now);
    }
    net.run(Duration::from_secs(3));
    assert_eq!(net.lns.session_count(), 5, "each ICRQ once");
    assert_eq!(net.session_ups().len(), 5);
    assert!(net.lns.stats().duplicates > 0);
    assert!(net.lns.stats().held_out_of_order > 0);
    assert_eq!(
        net.lns.tunnel_count(),
        1,
        "duplicate SCCRQ did not make a second tunnel"
    );
    assert!(net.lns.stats().duplicate_sccrq > 0);
}

#[test]
fn silent_peer_is_torn_down() {
    let mut net = Net::new(cfg());
    net.add(13, 1701, LacConfig::windows());
    establish(&mut net, 0);
    net.loss = 1.0; // the peer vanishes
    net.run(Duration::from_secs(60 + 40));
    assert!(net.lns.stats().hellos_sent >= 1);
    assert_eq!(net.lns.stats().tunnels_timed_out, 1);
    assert_eq!(net.tunnel_downs(), 1);
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, Event::SessionDown { .. }))
    );
    assert_eq!(net.lns.tunnel_count(), 0);
    assert_eq!(net.lns.session_count(), 0);
}

#[test]
fn hello_keepalive_while_idle() {
    let mut net = Net::new(cfg());
    let mut x = LacConfig::xl2tpd();
    x.hello_interval = Some(Duration::from_secs(45));
    net.add(14, 1701, x);
    establish(&mut net, 0);
    net.run(Duration::from_secs(600));
    let hellos_from_lns = net.clients[0]
        .lac
        .stats
        .received
        .iter()
        .filter(|t| **t == lac::HELLO)
        .count();
    assert!(net.clients[0].lac.stats.hellos_sent >= 5);
    assert_eq!(net.lns.tunnel_count(), 1, "keepalives keep it up");
    assert_eq!(net.tunnel_downs(), 0);
    // the LAC's hellos every 45 s keep the LNS (60 s) quiet
    assert_eq!(hellos_from_lns, 0);

    let mut net = Net::new(cfg());
    net.add(15, 1701, LacConfig::windows());
    establish(&mut net, 0);
    net.run(Duration::from_secs(600));
    assert!(
        net.lns.stats().hellos_sent >= 9,
        "LNS sends HELLO every 60 s of silence"
    );
    assert_eq!(net.tunnel_downs(), 0);
}

#[test]
fn server_side_cdn_and_stopccn() {
    let mut net = Net::new(cfg());
    net.add(16, 1701, LacConfig::windows());
    let (sid, sref) = establish(&mut net, 0);
    let now = net.now;
    net.lns.close_session(now, sref, 3, "admin");
    net.run(Duration::from_millis(10));
    assert!(net.clients[0].events.contains(&LacEvent::SessionDown {
        session: sid,
        result: Some((3, Some(0)))
    }));
    assert!(net.lns.data_header(sref).is_none());
    let (_, sref2) = {
        let s = net.open(0);
        (s, *net.session_ups().last().unwrap())
    };
    let now = net.now;
    net.lns.close_tunnel(now, 16, sref2.tunnel, 1, "bye");
    net.run(Duration::from_millis(10));
    assert!(net.clients[0].events.contains(&LacEvent::TunnelDown {
        result: Some((1, Some(0)))
    }));
    assert_eq!(net.tunnel_downs(), 1);
    assert_eq!(net.lns.in_flight(sref2.tunnel), 0, "StopCCN acknowledged");
}

#[test]
fn unknown_mandatory_avp_tunnel_and_session() {
    let mut net = Net::new(cfg());
    let mut w = LacConfig::windows();
    w.extra_sccrq_avps.push((lac::M, 0, 200, vec![1, 2]));
    net.add(17, 1701, w);
    net.connect(0);
    assert!(net.clients[0].events.contains(&LacEvent::TunnelDown {
        result: Some((2, Some(8)))
    }));
    assert_eq!(net.lns.stats().unknown_mandatory_avp, 1);

    let mut w = LacConfig::windows();
    w.extra_icrq_avps.push((lac::M, 9999, 1, vec![1]));
    w.assigned_tunnel = 2;
    net.add(18, 1701, w);
    net.connect(1);
    let sid = net.open(1);
    // the LAC's session is "up" (it got ICRP? no: it got CDN 2/8)
    assert!(net.clients[1].events.contains(&LacEvent::SessionDown {
        session: sid,
        result: Some((2, Some(8)))
    }));
    assert_eq!(net.lns.session_count(), 0);
    assert_eq!(net.lns.tunnel_count(), 1, "only the session is refused");
    // Microsoft vendor AVP without M is fine (the windows() config sends one)
    assert_eq!(net.lns.stats().unknown_mandatory_avp, 2);
}

#[test]
fn short_call_serial_number_answered_with_cdn() {
    let mut net = Net::new(cfg());
    let mut w = LacConfig::windows();
    w.call_serial = vec![0, 1];
    net.add(19, 1701, w);
    net.connect(0);
    let sid = net.open(0);
    assert!(net.clients[0].events.contains(&LacEvent::SessionDown {
        session: sid,
        result: Some((2, Some(2)))
    }));
    assert_eq!(net.lns.stats().bad_avp_length, 1);
    assert_eq!(net.lns.tunnel_count(), 1);
}

#[test]
fn unknown_ids_are_dropped() {
    let mut net = Net::new(cfg());
    net.add(20, 1701, LacConfig::windows());
    let (_sid, sref) = establish(&mut net, 0);
    let now = net.now;
    // data for an unknown session of a known tunnel, an unknown tunnel, a known tunnel of another peer
    let mk = |t: u16, s: u16| {
        let mut d = vec![0x00, 0x02];
        d.extend_from_slice(&t.to_be_bytes());
        d.extend_from_slice(&s.to_be_bytes());
        d.extend_from_slice(&[0xff, 0x03]);
        d
    };
    assert!(
        net.lns
            .handle_datagram(
                now,
                20,
                1701,
                &mk(sref.tunnel, sref.session.wrapping_add(1))
            )
            .is_none()
    );
    assert!(
        net.lns
            .handle_datagram(
                now,
                20,
                1701,
                &mk(sref.tunnel.wrapping_add(1), sref.session)
            )
            .is_none()
    );
    assert!(
        net.lns
            .handle_datagram(now, 21, 1701, &mk(sref.tunnel, sref.session))
            .is_none()
    );
    assert_eq!(net.lns.stats().unknown_session, 1);
    assert_eq!(net.lns.stats().unknown_tunnel, 2);
    // a control message for an unknown tunnel: no reply
    let zlb = [0xc8, 0x02, 0, 12, 0x77, 0x77, 0, 0, 0, 0, 0, 0];
    net.lns.handle_datagram(now, 20, 1701, &zlb);
    assert!(net.lns.poll_transmit().is_none());
    // version 3 and garbage
    net.lns
        .handle_datagram(now, 20, 1701, &[0xc8, 0x03, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
    net.lns.handle_datagram(now, 20, 1701, &[0xc8]);
    assert_eq!(net.lns.stats().unsupported_version, 1);
    assert_eq!(net.lns.stats().malformed_header, 1);
}

#[test]
fn sccrq_flood_is_bounded() {
    let mut c = cfg();
    c.max_half_open = 50;
    let mut net = Net::new(c);
    net.add(30, 1701, LacConfig::windows());
    let (sid, sref) = establish(&mut net, 0);
    // 1000 SCCRQs from one peer with different tunnel ids
    for k in 0..1000u16 {
        let mut w = LacConfig::windows();
        w.assigned_tunnel = k + 2;
        let mut l = Lac::new(w, 1, net.now);
        l.connect(net.now);
        let d = l.poll_transmit().unwrap();
        let now = net.now;
        net.lns.handle_datagram(now, 31, 1701, &d);
    }
    while net.lns.poll_transmit().is_some() {}
    assert_eq!(net.lns.half_open_count(), 4, "max_tunnels_per_peer");
    assert_eq!(net.lns.stats().flood_per_peer, 996);
    // and from 1000 peers
    for k in 0..1000u64 {
        let mut l = Lac::new(LacConfig::windows(), k, net.now);
        l.connect(net.now);
        let d = l.poll_transmit().unwrap();
        let now = net.now;
        net.lns.handle_datagram(now, 1000 + k, 1701, &d);
    }
    while net.lns.poll_transmit().is_some() {}
    assert_eq!(net.lns.half_open_count(), 50);
    assert!(net.lns.stats().flood_half_open >= 950);
    assert!(
        net.exchange_data(0, sid, sref, 7),
        "the established tunnel still works"
    );
    // half-open tunnels expire; then new clients get in
    net.run(Duration::from_secs(40));
    assert_eq!(net.lns.half_open_count(), 0);
    assert!(net.exchange_data(0, sid, sref, 8));
    let j = net.add(40, 1701, LacConfig::apple());
    establish(&mut net, j);
}

#[test]
fn two_clients_behind_one_nat() {
    let mut net = Net::new(cfg());
    // both from UDP 1701 with Assigned Tunnel ID 1, two IPsec SAs → two peers
    net.add(50, 1701, LacConfig::windows());
    net.add(51, 1701, LacConfig::windows());
    let (s0, r0) = establish(&mut net, 0);
    let (s1, r1) = establish(&mut net, 1);
    assert_ne!(r0.tunnel, r1.tunnel);
    assert_eq!(net.lns.tunnel_count(), 2);
    assert!(net.exchange_data(0, s0, r0, 1));
    assert!(net.exchange_data(1, s1, r1, 2));
    // client 0's data replayed as if from peer 51 is not delivered to client 0's session
    let d = net.clients[0].lac.send_data(s0, &[1, 2, 3]).unwrap();
    let now = net.now;
    assert!(net.lns.handle_datagram(now, 51, 1701, &d).map(|x| x.0) != Some(r0));
    // teardown of one leaves the other
    let now = net.now;
    net.clients[0].lac.close_tunnel(now, 1);
    net.run(Duration::from_millis(10));
    assert_eq!(net.lns.tunnel_count(), 1);
    assert!(net.exchange_data(1, s1, r1, 3));
    assert!(net.lns_data.iter().all(|(r, _)| *r == r0 || *r == r1));
}

#[test]
fn port_change_is_followed() {
    let mut net = Net::new(cfg());
    net.add(60, 50000, LacConfig::apple());
    let (sid, sref) = establish(&mut net, 0);
    net.clients[0].port = 50001;
    assert!(net.exchange_data(0, sid, sref, 1));
    let now = net.now;
    net.lns.close_session(now, sref, 3, "x");
    net.run(Duration::from_millis(10));
    assert_eq!(net.lns.session_count(), 0);
}

#[test]
fn peer_gone_and_shutdown() {
    let mut net = Net::new(cfg());
    net.add(70, 1701, LacConfig::windows());
    net.add(71, 1701, LacConfig::apple());
    establish(&mut net, 0);
    establish(&mut net, 1);
    net.lns.peer_gone(70);
    assert!(net.lns.poll_transmit().is_none(), "nothing sent");
    net.pump();
    assert_eq!(net.tunnel_downs(), 1);
    assert_eq!(net.lns.tunnel_count(), 1);
    let now = net.now;
    net.lns.shutdown(now);
    net.run(Duration::from_millis(10));
    assert_eq!(net.tunnel_downs(), 2);
    assert!(net.clients[1].events.contains(&LacEvent::TunnelDown {
        result: Some((6, Some(0)))
    }));
}

#[test]
fn many_tunnels_many_sessions() {
    let mut net = Net::new(cfg());
    for k in 0..100u64 {
        let mut w = LacConfig::xl2tpd();
        w.assigned_tunnel = 1;
        net.add(100 + k, 1701, w);
    }
    for i in 0..100 {
        let now = net.now;
        net.clients[i].lac.connect(now);
    }
    net.run(Duration::from_millis(10));
    for i in 0..100 {
        let now = net.now;
        for _ in 0..10 {
            net.clients[i].lac.open_session(now);
        }
    }
    net.run(Duration::from_secs(2));
    assert_eq!(net.lns.tunnel_count(), 100);
    assert_eq!(net.lns.session_count(), 1000);
    assert_eq!(net.session_ups().len(), 1000);
    let mut ids: Vec<u16> = net.session_ups().iter().map(|r| r.tunnel).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "tunnel ids unique");
}

#[test]
fn outgoing_call_accepted() {
    let mut net = Net::new(cfg());
    let mut x = accepting(LacConfig::xl2tpd());
    x.data_sequencing = true;
    let i = net.add(80, 1701, x);
    net.connect(i);
    let call = OutgoingCall {
        called_number: "5551234".into(),
        minimum_bps: 9600,
        maximum_bps: 56_000,
        sub_address: Some("42".into()),
        ..OutgoingCall::default()
    };
    let sref = net
        .place(i, call, Duration::from_millis(10))
        .expect("call placed");
    assert_eq!(sref.peer, 80);
    // what the LAC was asked
    let req = &net.clients[i].lac.stats.ocrq[0];
    assert_eq!(req.called_number.as_deref(), Some(&b"5551234"[..]));
    assert_eq!(req.sub_address.as_deref(), Some(&b"42"[..]));
    assert_eq!(
        (req.minimum_bps, req.maximum_bps),
        (Some(9600), Some(56_000))
    );
    assert_eq!(req.lns_session, Some(sref.session));
    assert_eq!(req.framing_type, Some(3), "the LAC can do both framings");
    assert_eq!(
        req.bearer_type,
        Some(0),
        "limited to the LAC's (empty) Bearer Capabilities"
    );
    // both sides see the session
    let call = net.call_up(sref).expect("SessionUp for the outgoing call");
    assert_eq!(call.direction, CallDirection::Outgoing);
    assert_eq!(call.called_number.as_deref(), Some("5551234"));
    assert_eq!(call.sub_address.as_deref(), Some("42"));
    assert_eq!(Some(call.call_serial), req.call_serial);
    assert_eq!((call.tx_connect_speed, call.framing_type), (100_000_000, 3));
    assert!(call.sequencing_required);
    let sid = net.lac_session_of(i, sref).expect("LAC SessionUp");
    assert!(net.clients[i].lac.session_up(sid));
    for k in 0..3 {
        assert!(net.exchange_data(i, sid, sref, k), "data both ways");
    }
    let st = net.lns.stats();
    assert_eq!(
        (
            st.outgoing_calls_placed,
            st.outgoing_calls_connected,
            st.outgoing_calls_refused
        ),
        (1, 1, 0)
    );
    // an incoming call beside it is still incoming
    let (isid, iref) = {
        let s = net.open(i);
        (s, *net.session_ups().last().unwrap())
    };
    assert_eq!(
        net.call_up(iref).unwrap().direction,
        CallDirection::Incoming
    );
    assert!(net.exchange_data(i, isid, iref, 9));
    // OCCN and ICCN repeated with new Ns (a confused LAC): ignored, both calls stay up
    let now = net.now;
    let occn = [(lac::M, 0, 24, 1u32.to_be_bytes().to_vec())];
    net.clients[i]
        .lac
        .send_message(now, sref.session, lac::OCCN, &occn);
    net.clients[i]
        .lac
        .send_message(now, iref.session, lac::ICCN, &occn);
    net.run(Duration::from_millis(10));
    assert_eq!(net.lns.stats().repeated_call_messages, 2);
    assert_eq!(net.lns.stats().call_state_errors, 0);
    assert_eq!(net.session_ups().len(), 2);
    assert!(net.exchange_data(i, sid, sref, 10));
    assert!(net.exchange_data(i, isid, iref, 11));
    // the LAC hangs up the outgoing call
    let now = net.now;
    net.clients[i].lac.close_session(now, sid, 1);
    net.run(Duration::from_millis(10));
    assert!(net.call_down(sref).is_some());
    assert_eq!(net.lns.session_count(), 1);
}

#[test]
fn outgoing_call_refused_by_the_client() {
    let mut net = Net::new(cfg());
    let i = net.add(81, 1701, LacConfig::android());
    net.connect(i);
    let call = OutgoingCall {
        called_number: "100".into(),
        ..OutgoingCall::default()
    };
    let sref = net.place(i, call, Duration::from_millis(10)).unwrap();
    assert_eq!(
        net.clients[i].lac.stats.ocrq[0].called_number.as_deref(),
        Some(&b"100"[..])
    );
    let reason = net
        .call_down(sref)
        .expect("SessionDown for the refused call");
    assert!(
        matches!(&reason, Cleared::OutgoingRefused(Some(r)) if r.contains("result 2 error 6")),
        "{reason:?}"
    );
    assert!(
        reason
            .to_string()
            .starts_with("the client refused the outgoing call: ")
    );
    assert!(net.call_up(sref).is_none());
    assert_eq!(net.lns.session_count(), 0);
    assert_eq!(net.lns.stats().outgoing_calls_refused, 1);
    assert_eq!(net.lns.stats().outgoing_calls_connected, 0);
    assert_eq!(net.lns.tunnel_count(), 1, "only the call is gone");
    assert!(net.lns.data_header(sref).is_none());
}

#[test]
fn outgoing_call_over_a_lossy_link() {
    for seed in 0..8u64 {
        let mut net = lossy_pair(
            seed,
            accepting(LacConfig::windows()),
            accepting(LacConfig::android()),
        );
        let mut refs = Vec::new();
        for i in 0..2 {
            let r = net.place(i, OutgoingCall::default(), Duration::ZERO);
            refs.push(r.expect("tunnel up, call placed"));
        }
        net.run(Duration::from_secs(30));
        for (i, r) in refs.into_iter().enumerate() {
            assert!(
                net.call_up(r).is_some(),
                "seed {seed}: call {i} up despite 30% loss"
            );
            assert!(net.lac_session_of(i, r).is_some());
            assert_eq!(net.clients[i].lac.stats.ocrq.len(), 1, "one OCRQ taken");
        }
        assert_eq!(net.session_ups().len(), 2, "each call up once");
        assert!(net.clients[1].max_in_flight <= 1);
    }
}

#[test]
fn outgoing_call_with_duplicated_and_reordered_deliveries() {
    let mut net = Net::new(cfg());
    net.duplicate = true;
    net.reorder = true;
    net.add(84, 1701, accepting(LacConfig::windows()));
    net.connect(0);
    let now = net.now;
    let t = net.tunnel_of(0);
    let refs: Vec<_> = (0..3)
        .map(|_| {
            net.lns
                .place_call(now, 84, t, OutgoingCall::default())
                .unwrap()
        })
        .collect();
    net.run(Duration::from_secs(3));
    for r in &refs {
        assert!(net.call_up(*r).is_some());
    }
    assert_eq!(net.session_ups().len(), 3, "each OCCN counted once");
    assert_eq!(
        net.clients[0].lac.stats.ocrq.len(),
        3,
        "each OCRQ taken once"
    );
    assert!(net.lns.stats().duplicates > 0);
    assert_eq!(net.lns.stats().call_state_errors, 0);
}

#[test]
fn place_call_refused_locally() {
    let mut c = cfg();
    c.max_sessions_per_tunnel = 1;
    let mut net = Net::new(c);
    net.add(85, 1701, accepting(LacConfig::windows()));
    net.add(86, 1701, accepting(LacConfig::apple()));
    net.connect(0);
    net.connect(1);
    let (t0, t1) = (net.tunnel_of(0), net.tunnel_of(1));
    let now = net.now;
    let unknown = (1..=u16::MAX).find(|t| *t != t0 && *t != t1).unwrap();
    assert_eq!(
        net.lns
            .place_call(now, 85, unknown, OutgoingCall::default()),
        None
    );
    assert_eq!(
        net.lns.place_call(now, 85, t1, OutgoingCall::default()),
        None,
        "another peer's tunnel"
    );
    assert!(net.lns.poll_transmit().is_none(), "nothing sent");
    // the session limit counts outgoing calls too
    assert!(
        net.place(0, OutgoingCall::default(), Duration::from_millis(10))
            .is_some()
    );
    let now = net.now;
    assert_eq!(
        net.lns.place_call(now, 85, t0, OutgoingCall::default()),
        None
    );
    assert_eq!(net.lns.stats().session_limit, 1);
    // a closing tunnel takes no calls
    net.lns.close_tunnel(now, 86, t1, 1, "bye");
    assert_eq!(
        net.lns.place_call(now, 86, t1, OutgoingCall::default()),
        None
    );
    assert_eq!(net.lns.stats().outgoing_calls_placed, 1);
}

#[test]
fn wrong_answer_to_ocrq_gets_cdn() {
    for wrong in [lac::ICCN, lac::OCCN] {
        let mut net = Net::new(cfg());
        let mut w = LacConfig::windows();
        w.outgoing_reply_type = Some(wrong);
        net.add(87, 1701, w);
        net.connect(0);
        let sref = net
            .place(0, OutgoingCall::default(), Duration::from_millis(10))
            .unwrap();
        let reason = net.call_down(sref).expect("SessionDown").to_string();
        assert!(reason.contains("unexpected"), "{reason}");
        assert!(net.call_up(sref).is_none());
        assert!(
            net.clients[0].events.iter().any(|e| matches!(
                e,
                LacEvent::SessionDown {
                    result: Some((2, Some(0))),
                    ..
                }
            )),
            "the LAC got CDN 2: {:?}",
            net.clients[0].events
        );
        assert_eq!(net.lns.stats().call_state_errors, 1);
        assert_eq!(net.lns.session_count(), 0);
        assert_eq!(net.lns.tunnel_count(), 1);
    }
}

#[test]
fn unknown_mandatory_avp_in_ocrp_gets_cdn_2_8() {
    let mut net = Net::new(cfg());
    let mut w = accepting(LacConfig::windows());
    w.extra_ocrp_avps.push((lac::M, 0, 200, vec![1]));
    net.add(88, 1701, w);
    net.connect(0);
    let sref = net
        .place(0, OutgoingCall::default(), Duration::from_millis(10))
        .unwrap();
    let sid = net
        .lac_session_of(0, sref)
        .expect("the LAC thought it was up");
    assert!(net.clients[0].events.contains(&LacEvent::SessionDown {
        session: sid,
        result: Some((2, Some(8)))
    }));
    assert!(net.call_down(sref).is_some());
    assert!(net.call_up(sref).is_none(), "the OCCN after it is ignored");
    assert_eq!(net.lns.stats().unknown_mandatory_avp, 1);
    assert_eq!(net.lns.session_count(), 0);
}

#[test]
fn outgoing_call_closed_before_the_reply() {
    let mut net = Net::new(cfg());
    net.add(89, 1701, accepting(LacConfig::windows()));
    net.connect(0);
    let (now, t) = (net.now, net.tunnel_of(0));
    let sref = net
        .lns
        .place_call(now, 89, t, OutgoingCall::default())
        .unwrap();
    // wait-reply, local close: CDN (to session 0, naming ours), SessionDown at once
    net.lns.close_session(now, sref, 3, "changed my mind");
    net.run(Duration::from_millis(10));
    assert_eq!(
        net.call_down(sref),
        Some(Cleared::ClosedLocally("changed my mind".into()))
    );
    assert!(
        net.call_up(sref).is_none(),
        "the crossing OCRP/OCCN are ignored"
    );
    let sid = net.lac_session_of(0, sref).unwrap();
    assert!(net.clients[0].events.contains(&LacEvent::SessionDown {
        session: sid,
        result: Some((3, Some(0)))
    }));
    assert_eq!(net.lns.session_count(), 0);
    assert_eq!(net.lns.tunnel_count(), 1);
}

#[test]
fn ocrq_from_the_client_is_still_refused() {
    let mut net = Net::new(cfg());
    net.add(90, 1701, LacConfig::windows());
    net.connect(0);
    let now = net.now;
    net.clients[0].lac.send_message(
        now,
        0,
        lac::OCRQ,
        &[(lac::M, 0, 14, 77u16.to_be_bytes().to_vec())],
    );
    net.run(Duration::from_millis(10));
    assert_eq!(net.lns.stats().peer_ocrq_refused, 1);
    assert!(net.clients[0].lac.stats.received.contains(&lac::CDN));
    assert_eq!(net.lns.session_count(), 0);
}

#[test]
fn a_call_that_never_completes_is_cleared() {
    let mut net = Net::new(cfg());
    net.add(40, 1701, LacConfig::windows());
    net.connect(0);
    // An ICRQ the LAC itself forgets (no ICCN will follow): Assigned Session ID 77, serial 5.
    let now = net.now;
    net.clients[0].lac.send_message(
        now,
        0,
        lac::ICRQ,
        &[
            (lac::M, 0, 14, 77u16.to_be_bytes().to_vec()),
            (lac::M, 0, 15, 5u32.to_be_bytes().to_vec()),
        ],
    );
    net.run(Duration::from_secs(5));
    assert_eq!(net.lns.session_count(), 1, "ICRP sent, waiting for ICCN");
    net.run(Duration::from_secs(70));
    assert_eq!(net.lns.session_count(), 0);
    assert_eq!(net.lns.stats().call_setup_expired, 1);
    // Never announced, so never reported down; the tunnel itself lives on.
    assert!(net.session_ups().is_empty());
    assert_eq!(net.lns.tunnel_count(), 1);
}
