//! A sans-IO L2TP access concentrator (LAC, the client side of RFC 2661), written from the RFC
//! independently of the server's `roadgate::l2tp` (its own small codec), to drive the LNS in
//! tests. It can imitate the native clients of CLIENTS.md: NUL-terminated host name (Apple),
//! Microsoft vendor AVPs and window 8 (Windows), window 1 and a tunnel secret (Android).
//!
//! Shape: `handle_datagram` / `poll_transmit` / `poll_event` / `poll_timeout` /
//! `handle_timeout`, plus `connect`, `open_session`, `send_data`, `close_session`,
//! `close_tunnel`. An OCRQ from the LNS (an outgoing call, §7.5.1) is refused with CDN result 2
//! error 6 (a client that takes no calls), or, with `accept_outgoing`, answered with OCRP and
//! OCCN at once (the "call" connects instantly).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

// Message types and attribute numbers, RFC 2661 §3.2 and §4.4.
pub const SCCRQ: u16 = 1;
pub const SCCRP: u16 = 2;
pub const SCCCN: u16 = 3;
pub const STOPCCN: u16 = 4;
pub const HELLO: u16 = 6;
pub const OCRQ: u16 = 7;
pub const OCRP: u16 = 8;
pub const OCCN: u16 = 9;
pub const ICRQ: u16 = 10;
pub const ICRP: u16 = 11;
pub const ICCN: u16 = 12;
pub const CDN: u16 = 14;
pub const WEN: u16 = 15;

const A_MSG_TYPE: u16 = 0;
const A_RESULT: u16 = 1;
const A_PROTO_VER: u16 = 2;
const A_FRAMING_CAPS: u16 = 3;
const A_BEARER_CAPS: u16 = 4;
const A_FIRMWARE: u16 = 6;
const A_HOST_NAME: u16 = 7;
const A_VENDOR_NAME: u16 = 8;
const A_TUNNEL_ID: u16 = 9;
const A_RWS: u16 = 10;
const A_CHALLENGE: u16 = 11;
const A_CHALLENGE_RESP: u16 = 13;
const A_SESSION_ID: u16 = 14;
const A_CALL_SERIAL: u16 = 15;
const A_MIN_BPS: u16 = 16;
const A_MAX_BPS: u16 = 17;
const A_BEARER_TYPE: u16 = 18;
const A_FRAMING_TYPE: u16 = 19;
const A_CALLED_NUMBER: u16 = 21;
const A_SUB_ADDRESS: u16 = 23;
const A_TX_SPEED: u16 = 24;
const A_RANDOM_VECTOR: u16 = 36;
const A_SEQ_REQUIRED: u16 = 39;

pub const M: u16 = 0x8000;
pub const H: u16 = 0x4000;

/// One AVP to add to a message: flags (M/H), vendor, attribute, value.
pub type ExtraAvp = (u16, u16, u16, Vec<u8>);

#[derive(Debug, Clone)]
pub struct LacConfig {
    /// Sent as is (Apple appends a NUL).
    pub host_name: Vec<u8>,
    pub vendor_name: Option<Vec<u8>>,
    /// Windows' Microsoft correlation ID AVP (vendor 311, attribute 1, M clear).
    pub ms_correlation_id: bool,
    pub receive_window: u16,
    pub assigned_tunnel: u16,
    pub secret: Option<Vec<u8>>,
    /// Put a Challenge in SCCRQ (needs `secret`; without it, a random one is still sent to
    /// imitate a misconfigured client).
    pub challenge: bool,
    /// HELLO after this much silence; None: never.
    pub hello_interval: Option<Duration>,
    pub retransmit: Duration,
    pub max_retransmits: u32,
    /// Sequencing Required in ICCN and the S bit on our data messages.
    pub data_sequencing: bool,
    /// Hide the Assigned Session ID and Call Serial Number of ICRQ (§4.3; needs `secret`).
    pub hide_session_avps: bool,
    /// Extra AVPs appended to SCCRQ / ICRQ (to send unknown mandatory ones, short values...).
    pub extra_sccrq_avps: Vec<ExtraAvp>,
    pub extra_icrq_avps: Vec<ExtraAvp>,
    pub extra_ocrp_avps: Vec<ExtraAvp>,
    /// Call Serial Number value bytes (normally 4).
    pub call_serial: Vec<u8>,
    /// Answer an OCRQ with OCRP + OCCN; false: refuse it with CDN result 2 error 6.
    pub accept_outgoing: bool,
    /// Answer an OCRQ with this message type (carrying the OCCN AVPs) instead of either (to
    /// drive the LNS's call state machine into a wrong message).
    pub outgoing_reply_type: Option<u16>,
}

impl LacConfig {
    /// A Windows 10-like LAC: port 1701, window 8, vendor "Microsoft", correlation ID.
    pub fn windows() -> Self {
        Self {
            host_name: b"DESKTOP-TEST".to_vec(),
            vendor_name: Some(b"Microsoft".to_vec()),
            ms_correlation_id: true,
            receive_window: 8,
            assigned_tunnel: 1,
            secret: None,
            challenge: false,
            hello_interval: None,
            retransmit: Duration::from_secs(1),
            max_retransmits: 5,
            data_sequencing: false,
            hide_session_avps: false,
            extra_sccrq_avps: Vec::new(),
            extra_icrq_avps: Vec::new(),
            extra_ocrp_avps: Vec::new(),
            call_serial: 1u32.to_be_bytes().to_vec(),
            accept_outgoing: false,
            outgoing_reply_type: None,
        }
    }

    /// macOS / iOS: NUL-terminated host name, window 4, no vendor name.
    pub fn apple() -> Self {
        Self {
            host_name: b"MacBook.local\0".to_vec(),
            vendor_name: None,
            ms_correlation_id: false,
            receive_window: 4,
            assigned_tunnel: 3,
            ..Self::windows()
        }
    }

    /// Android mtpd: "anonymous", window 1, 2 s retransmissions.
    pub fn android() -> Self {
        Self {
            host_name: b"anonymous".to_vec(),
            vendor_name: None,
            ms_correlation_id: false,
            receive_window: 1,
            assigned_tunnel: 0x5a5a,
            retransmit: Duration::from_secs(2),
            ..Self::windows()
        }
    }

    /// xl2tpd: window 4, vendor "xelerance.com".
    pub fn xl2tpd() -> Self {
        Self {
            host_name: b"linux-box".to_vec(),
            vendor_name: Some(b"xelerance.com".to_vec()),
            ms_correlation_id: false,
            receive_window: 4,
            assigned_tunnel: 17,
            ..Self::windows()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LacEvent {
    TunnelUp {
        remote_tunnel: u16,
    },
    /// `result` is from the peer's StopCCN (result, error); None when we gave up or closed.
    TunnelDown {
        result: Option<(u16, Option<u16>)>,
    },
    SessionUp {
        session: u16,
        remote_session: u16,
    },
    SessionDown {
        session: u16,
        result: Option<(u16, Option<u16>)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LacState {
    Idle,
    WaitReply,
    Established,
    Closed,
}

/// What the LAC saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct LacStats {
    pub retransmits: u64,
    pub zlb_received: u64,
    pub duplicates_received: u64,
    /// Control message types received in order (not ZLBs).
    pub received: Vec<u16>,
    pub hellos_sent: u64,
    pub auth_failed: u64,
    /// Every OCRQ received, accepted or not.
    pub ocrq: Vec<ReceivedOcrq>,
}

/// What an OCRQ asked for (RFC 2661 §6.9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedOcrq {
    /// The LNS's session ID (its Assigned Session ID).
    pub lns_session: Option<u16>,
    pub call_serial: Option<u32>,
    pub minimum_bps: Option<u32>,
    pub maximum_bps: Option<u32>,
    pub bearer_type: Option<u32>,
    pub framing_type: Option<u32>,
    pub called_number: Option<Vec<u8>>,
    pub sub_address: Option<Vec<u8>>,
}

#[derive(Debug)]
struct LacSession {
    remote: u16,
    up: bool,
    ns: u16,
    nr: u16,
}

/// A decoded AVP: (flags, vendor, attribute, value).
type Avp = (u16, u16, u16, Vec<u8>);

#[derive(Debug)]
pub struct Lac {
    pub cfg: LacConfig,
    rng: ChaCha20Rng,
    pub state: LacState,
    pub remote_tunnel: u16,
    ns: u16,
    nr: u16,
    peer_window: u16,
    queue: VecDeque<Vec<u8>>,
    in_flight: VecDeque<(u16, Vec<u8>)>,
    held: HashMap<u16, (u16, Vec<u8>)>,
    rto: Duration,
    retries: u32,
    retransmit_at: Option<Instant>,
    our_challenge: Option<Vec<u8>>,
    sessions: HashMap<u16, LacSession>,
    last_heard: Instant,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<LacEvent>,
    pub stats: LacStats,
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(h.finalize().as_slice());
    out
}

fn push_avp(m: &mut Vec<u8>, flags: u16, vendor: u16, attr: u16, value: &[u8]) {
    let len = (6 + value.len()) as u16;
    m.extend_from_slice(&(flags | len).to_be_bytes());
    m.extend_from_slice(&vendor.to_be_bytes());
    m.extend_from_slice(&attr.to_be_bytes());
    m.extend_from_slice(value);
}

/// (control, tunnel, session, Some((ns, nr)), body offset, end).
pub type ParsedHeader = (bool, u16, u16, Option<(u16, u16)>, usize, usize);

/// Parses an L2TP header: (control, tunnel, session, Some((ns, nr)), body offset, end).
pub fn parse_header(d: &[u8]) -> Option<ParsedHeader> {
    let word = |i: usize| d.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let flags = word(0)?;
    if flags & 0x000f != 2 {
        return None;
    }
    let mut at = 2;
    let mut end = d.len();
    if flags & 0x4000 != 0 {
        end = usize::from(word(2)?).min(d.len());
        at = 4;
    }
    let tunnel = word(at)?;
    let session = word(at + 2)?;
    at += 4;
    let mut seq = None;
    if flags & 0x0800 != 0 {
        seq = Some((word(at)?, word(at + 2)?));
        at += 4;
    }
    if flags & 0x0200 != 0 {
        at += 2 + usize::from(word(at)?);
    }
    (at <= end).then_some((flags & 0x8000 != 0, tunnel, session, seq, at, end))
}

/// Parses AVPs into a list; None on a framing error.
pub fn parse_avps(mut b: &[u8]) -> Option<Vec<Avp>> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let w = |i: usize| b.get(i..i + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
        let bits = w(0)?;
        let len = usize::from(bits & 0x03ff);
        if len < 6 || len > b.len() {
            return None;
        }
        v.push((bits & 0xfc00, w(2)?, w(4)?, b[6..len].to_vec()));
        b = &b[len..];
    }
    Some(v)
}

fn find(avps: &[Avp], attr: u16) -> Option<&[u8]> {
    avps.iter()
        .find(|(f, v, a, _)| *v == 0 && *a == attr && f & H == 0)
        .map(|(_, _, _, val)| val.as_slice())
}

fn u16_avp(avps: &[Avp], attr: u16) -> Option<u16> {
    find(avps, attr).and_then(|v| Some(u16::from_be_bytes(v.try_into().ok()?)))
}

fn u32_avp(avps: &[Avp], attr: u16) -> Option<u32> {
    find(avps, attr).and_then(|v| Some(u32::from_be_bytes(v.try_into().ok()?)))
}

fn result_avp(avps: &[Avp]) -> Option<(u16, Option<u16>)> {
    let v = find(avps, A_RESULT)?;
    let r = u16::from_be_bytes(v.get(..2)?.try_into().ok()?);
    let e = v.get(2..4).map(|e| u16::from_be_bytes([e[0], e[1]]));
    Some((r, e))
}

impl Lac {
    pub fn new(cfg: LacConfig, seed: u64, now: Instant) -> Self {
        let rto = cfg.retransmit;
        Self {
            cfg,
            rng: ChaCha20Rng::seed_from_u64(seed),
            state: LacState::Idle,
            remote_tunnel: 0,
            ns: 0,
            nr: 0,
            peer_window: 4,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            held: HashMap::new(),
            rto,
            retries: 0,
            retransmit_at: None,
            our_challenge: None,
            sessions: HashMap::new(),
            last_heard: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: LacStats::default(),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LacEvent> {
        self.events.pop_front()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Our Nr: how many of the server's messages we have accepted.
    pub fn nr(&self) -> u16 {
        self.nr
    }

    pub fn session_up(&self, session: u16) -> bool {
        self.sessions.get(&session).is_some_and(|s| s.up)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let hello = match (self.state, self.cfg.hello_interval) {
            (LacState::Established, Some(i)) if self.in_flight.is_empty() => {
                Some(self.last_heard + i)
            }
            _ => None,
        };
        [self.retransmit_at, hello].into_iter().flatten().min()
    }

    /// Builds a control message (header + Message Type AVP + `avps`) and queues it.
    pub fn send_message(&mut self, now: Instant, session: u16, msg_type: u16, avps: &[ExtraAvp]) {
        let mut m = vec![0xc8, 0x02, 0, 0];
        m.extend_from_slice(&self.remote_tunnel.to_be_bytes());
        m.extend_from_slice(&session.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        push_avp(&mut m, M, 0, A_MSG_TYPE, &msg_type.to_be_bytes());
        for (f, v, a, val) in avps {
            push_avp(&mut m, *f, *v, *a, val);
        }
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        self.queue.push_back(m);
        self.flush(now);
    }

    fn flush(&mut self, now: Instant) {
        let mut sent = false;
        while self.in_flight.len() < usize::from(self.peer_window) {
            let Some(mut m) = self.queue.pop_front() else {
                break;
            };
            m[8..10].copy_from_slice(&self.ns.to_be_bytes());
            m[10..12].copy_from_slice(&self.nr.to_be_bytes());
            self.out.push_back(m.clone());
            self.in_flight.push_back((self.ns, m));
            self.ns = self.ns.wrapping_add(1);
            sent = true;
        }
        if sent && self.retransmit_at.is_none() {
            self.retransmit_at = Some(now + self.rto);
        }
    }

    fn zlb(&mut self) {
        let mut m = vec![0xc8, 0x02, 0, 12];
        m.extend_from_slice(&self.remote_tunnel.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&self.ns.to_be_bytes());
        m.extend_from_slice(&self.nr.to_be_bytes());
        self.out.push_back(m);
    }

    /// Sends SCCRQ.
    pub fn connect(&mut self, now: Instant) {
        let c = self.cfg.clone();
        let mut avps: Vec<ExtraAvp> = vec![
            (M, 0, A_PROTO_VER, vec![1, 0]),
            (M, 0, A_FRAMING_CAPS, 3u32.to_be_bytes().to_vec()),
            (0, 0, A_BEARER_CAPS, Vec::new()),
            (0, 0, A_FIRMWARE, 0x0a00u16.to_be_bytes().to_vec()),
            (M, 0, A_HOST_NAME, c.host_name.clone()),
        ];
        if let Some(v) = &c.vendor_name {
            avps.push((0, 0, A_VENDOR_NAME, v.clone()));
        }
        avps.push((M, 0, A_TUNNEL_ID, c.assigned_tunnel.to_be_bytes().to_vec()));
        avps.push((M, 0, A_RWS, c.receive_window.to_be_bytes().to_vec()));
        if c.challenge {
            let mut ch = vec![0u8; 32];
            self.rng.fill_bytes(&mut ch);
            avps.push((M, 0, A_CHALLENGE, ch.clone()));
            self.our_challenge = Some(ch);
        }
        if c.ms_correlation_id {
            let mut guid = vec![0u8; 16];
            self.rng.fill_bytes(&mut guid);
            // Microsoft vendor 311, attribute 1 (collides with Result Code if the vendor is ignored)
            avps.push((0, 311, 1, guid));
        }
        avps.extend(c.extra_sccrq_avps.iter().cloned());
        self.remote_tunnel = 0;
        self.state = LacState::WaitReply;
        self.send_message(now, 0, SCCRQ, &avps);
    }

    /// Apple's pre-IPsec Hello burst: a HELLO to tunnel 0, outside the reliable channel.
    pub fn tunnel0_hello(&self) -> Vec<u8> {
        let mut m = vec![0xc8, 0x02, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0];
        push_avp(&mut m, M, 0, A_MSG_TYPE, &HELLO.to_be_bytes());
        m
    }

    /// A new session (not up) with the LNS's session ID `remote`; returns our random ID.
    fn new_session(&mut self, remote: u16) -> u16 {
        let sid = loop {
            let s = (self.rng.next_u32() & 0xffff) as u16;
            if s != 0 && !self.sessions.contains_key(&s) {
                break s;
            }
        };
        self.sessions.insert(
            sid,
            LacSession {
                remote,
                up: false,
                ns: 0,
                nr: 0,
            },
        );
        sid
    }

    /// The (Tx) Connect Speed, Framing Type and maybe Sequencing Required of ICCN / OCCN.
    fn connected_avps(&self) -> Vec<ExtraAvp> {
        let mut v: Vec<ExtraAvp> = vec![
            (M, 0, A_TX_SPEED, 100_000_000u32.to_be_bytes().to_vec()),
            (M, 0, A_FRAMING_TYPE, 3u32.to_be_bytes().to_vec()),
        ];
        if self.cfg.data_sequencing {
            v.push((M, 0, A_SEQ_REQUIRED, Vec::new()));
        }
        v
    }

    /// Sends ICRQ; returns our session ID.
    pub fn open_session(&mut self, now: Instant) -> u16 {
        let sid = self.new_session(0);
        let mut avps: Vec<ExtraAvp> = Vec::new();
        match (&self.cfg.secret, self.cfg.hide_session_avps) {
            (Some(secret), true) => {
                let mut rv = vec![0u8; 16];
                self.rng.fill_bytes(&mut rv);
                avps.push((M, 0, A_RANDOM_VECTOR, rv.clone()));
                avps.push((
                    M | H,
                    0,
                    A_SESSION_ID,
                    hide(A_SESSION_ID, secret, &rv, &sid.to_be_bytes()),
                ));
                avps.push((
                    M | H,
                    0,
                    A_CALL_SERIAL,
                    hide(A_CALL_SERIAL, secret, &rv, &self.cfg.call_serial),
                ));
            }
            _ => {
                avps.push((M, 0, A_SESSION_ID, sid.to_be_bytes().to_vec()));
                avps.push((M, 0, A_CALL_SERIAL, self.cfg.call_serial.clone()));
            }
        }
        avps.push((M, 0, A_BEARER_TYPE, 2u32.to_be_bytes().to_vec()));
        avps.extend(self.cfg.extra_icrq_avps.iter().cloned());
        self.send_message(now, 0, ICRQ, &avps);
        sid
    }

    /// Sends CDN for our session.
    pub fn close_session(&mut self, now: Instant, session: u16, result: u16) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        let avps = vec![
            (M, 0, A_RESULT, result.to_be_bytes().to_vec()),
            (M, 0, A_SESSION_ID, session.to_be_bytes().to_vec()),
        ];
        self.send_message(now, s.remote, CDN, &avps);
    }

    /// Sends StopCCN.
    pub fn close_tunnel(&mut self, now: Instant, result: u16) {
        let avps = vec![
            (
                M,
                0,
                A_TUNNEL_ID,
                self.cfg.assigned_tunnel.to_be_bytes().to_vec(),
            ),
            (M, 0, A_RESULT, result.to_be_bytes().to_vec()),
        ];
        self.send_message(now, 0, STOPCCN, &avps);
        self.state = LacState::Closed;
        self.sessions.clear();
    }

    /// A data message for our session carrying `frame`.
    pub fn send_data(&mut self, session: u16, frame: &[u8]) -> Option<Vec<u8>> {
        let seq = self.cfg.data_sequencing;
        let s = self.sessions.get_mut(&session).filter(|s| s.up)?;
        let mut d = vec![0x00, 0x02];
        if seq {
            d[0] = 0x08;
        }
        d.extend_from_slice(&self.remote_tunnel.to_be_bytes());
        d.extend_from_slice(&s.remote.to_be_bytes());
        if seq {
            d.extend_from_slice(&s.ns.to_be_bytes());
            d.extend_from_slice(&s.nr.to_be_bytes());
            s.ns = s.ns.wrapping_add(1);
        }
        d.extend_from_slice(frame);
        Some(d)
    }

    /// A datagram from the server. Returns (our session, PPP frame, had sequence numbers) for
    /// data messages.
    pub fn handle_datagram(&mut self, now: Instant, d: &[u8]) -> Option<(u16, Vec<u8>, bool)> {
        let (control, tunnel, session, seq, body, end) = parse_header(d)?;
        if tunnel != self.cfg.assigned_tunnel {
            return None;
        }
        self.last_heard = now;
        if !control {
            let s = self.sessions.get_mut(&session).filter(|s| s.up)?;
            if let Some((ns, _)) = seq {
                s.nr = ns.wrapping_add(1);
            }
            return Some((session, d[body..end].to_vec(), seq.is_some()));
        }
        let (ns, nr) = seq?;
        // acknowledgements
        if nr.wrapping_sub(self.in_flight.front().map_or(nr, |f| f.0)) < 0x8000 {
            let before = self.in_flight.len();
            while self
                .in_flight
                .front()
                .is_some_and(|(n, _)| nr.wrapping_sub(*n).wrapping_sub(1) < 0x8000)
            {
                self.in_flight.pop_front();
            }
            if self.in_flight.len() != before {
                self.retries = 0;
                self.rto = self.cfg.retransmit;
                self.retransmit_at = (!self.in_flight.is_empty()).then(|| now + self.rto);
            }
        }
        if body == end {
            self.stats.zlb_received += 1;
            self.flush(now);
            return None;
        }
        let ahead = ns.wrapping_sub(self.nr);
        if ahead >= 0x8000 {
            self.stats.duplicates_received += 1;
            self.zlb();
            return None;
        }
        if ahead != 0 {
            if ahead < self.cfg.receive_window {
                self.held.insert(ns, (session, d[body..end].to_vec()));
            }
            return None;
        }
        let mut next = Some((session, d[body..end].to_vec()));
        while let Some((session, b)) = next {
            self.nr = self.nr.wrapping_add(1);
            self.on_message(now, session, &b);
            next = self.held.remove(&self.nr);
        }
        let before = self.out.len();
        self.flush(now);
        if self.out.len() == before {
            self.zlb();
        }
        None
    }

    fn on_message(&mut self, now: Instant, session: u16, body: &[u8]) {
        let Some(avps) = parse_avps(body) else { return };
        let Some(t) = u16_avp(&avps, A_MSG_TYPE) else {
            return;
        };
        self.stats.received.push(t);
        match t {
            SCCRP if self.state == LacState::WaitReply => {
                let Some(remote) = u16_avp(&avps, A_TUNNEL_ID) else {
                    return;
                };
                self.remote_tunnel = remote;
                self.peer_window = u16_avp(&avps, A_RWS).unwrap_or(4).max(1);
                let mut reply: Vec<ExtraAvp> = Vec::new();
                if let Some(ch) = &self.our_challenge {
                    let secret = self.cfg.secret.clone().unwrap_or_default();
                    let want = md5(&[&[SCCRP as u8], &secret, ch]);
                    if find(&avps, A_CHALLENGE_RESP) != Some(&want[..]) {
                        self.stats.auth_failed += 1;
                        self.close_tunnel(now, 4);
                        self.events.push_back(LacEvent::TunnelDown { result: None });
                        return;
                    }
                }
                if let Some(ch) = find(&avps, A_CHALLENGE) {
                    let secret = self.cfg.secret.clone().unwrap_or_default();
                    reply.push((
                        M,
                        0,
                        A_CHALLENGE_RESP,
                        md5(&[&[SCCCN as u8], &secret, ch]).to_vec(),
                    ));
                }
                self.send_message(now, 0, SCCCN, &reply);
                self.state = LacState::Established;
                self.events.push_back(LacEvent::TunnelUp {
                    remote_tunnel: remote,
                });
            }
            STOPCCN => {
                for (sid, s) in self.sessions.drain() {
                    if s.up {
                        self.events.push_back(LacEvent::SessionDown {
                            session: sid,
                            result: None,
                        });
                    }
                }
                self.state = LacState::Closed;
                self.queue.clear();
                self.in_flight.clear();
                self.retransmit_at = None;
                self.events.push_back(LacEvent::TunnelDown {
                    result: result_avp(&avps),
                });
            }
            ICRP => {
                let Some(s) = self.sessions.get_mut(&session).filter(|s| !s.up) else {
                    return;
                };
                let Some(remote) = u16_avp(&avps, A_SESSION_ID) else {
                    return;
                };
                s.remote = remote;
                s.up = true;
                let iccn = self.connected_avps();
                self.send_message(now, remote, ICCN, &iccn);
                self.events.push_back(LacEvent::SessionUp {
                    session,
                    remote_session: remote,
                });
            }
            OCRQ if self.state == LacState::Established => self.ocrq(now, &avps),
            CDN => {
                // Session 0: a CDN for a call whose ID the sender never learnt; its Assigned
                // Session ID is the one it gave us.
                let sid = if session != 0 {
                    Some(session)
                } else {
                    u16_avp(&avps, A_SESSION_ID).and_then(|r| {
                        self.sessions
                            .iter()
                            .find(|(_, s)| s.remote == r)
                            .map(|(k, _)| *k)
                    })
                };
                if let Some(sid) = sid
                    && let Some(s) = self.sessions.remove(&sid)
                {
                    let _ = s;
                    self.events.push_back(LacEvent::SessionDown {
                        session: sid,
                        result: result_avp(&avps),
                    });
                }
            }
            _ => {}
        }
    }

    /// An outgoing call request from the LNS (§7.5.1).
    fn ocrq(&mut self, now: Instant, avps: &[Avp]) {
        let req = ReceivedOcrq {
            lns_session: u16_avp(avps, A_SESSION_ID),
            call_serial: u32_avp(avps, A_CALL_SERIAL),
            minimum_bps: u32_avp(avps, A_MIN_BPS),
            maximum_bps: u32_avp(avps, A_MAX_BPS),
            bearer_type: u32_avp(avps, A_BEARER_TYPE),
            framing_type: u32_avp(avps, A_FRAMING_TYPE),
            called_number: find(avps, A_CALLED_NUMBER).map(<[u8]>::to_vec),
            sub_address: find(avps, A_SUB_ADDRESS).map(<[u8]>::to_vec),
        };
        let remote = req.lns_session.unwrap_or(0);
        self.stats.ocrq.push(req);
        let refuse = !self.cfg.accept_outgoing && self.cfg.outgoing_reply_type.is_none();
        if refuse || remote == 0 {
            let mut result = 2u16.to_be_bytes().to_vec();
            result.extend_from_slice(&6u16.to_be_bytes());
            result.extend_from_slice(b"outgoing calls not supported");
            let cdn = vec![
                (M, 0, A_RESULT, result),
                (M, 0, A_SESSION_ID, 0u16.to_be_bytes().to_vec()),
            ];
            self.send_message(now, remote, CDN, &cdn);
            return;
        }
        let sid = self.new_session(remote);
        if let Some(t) = self.cfg.outgoing_reply_type {
            let avps = self.connected_avps();
            self.send_message(now, remote, t, &avps);
            return;
        }
        let mut ocrp: Vec<ExtraAvp> = vec![(M, 0, A_SESSION_ID, sid.to_be_bytes().to_vec())];
        ocrp.extend(self.cfg.extra_ocrp_avps.iter().cloned());
        self.send_message(now, remote, OCRP, &ocrp);
        let occn = self.connected_avps();
        self.send_message(now, remote, OCCN, &occn);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.up = true;
        }
        self.events.push_back(LacEvent::SessionUp {
            session: sid,
            remote_session: remote,
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(at) = self.retransmit_at
            && at <= now
        {
            if self.retries >= self.cfg.max_retransmits {
                self.retransmit_at = None;
                self.in_flight.clear();
                self.queue.clear();
                if self.state != LacState::Closed {
                    self.state = LacState::Closed;
                    self.events.push_back(LacEvent::TunnelDown { result: None });
                }
                return;
            }
            self.retries += 1;
            self.rto = (self.rto * 2).min(Duration::from_secs(8));
            self.retransmit_at = Some(now + self.rto);
            for (ns, m) in &mut self.in_flight {
                m[8..10].copy_from_slice(&ns.to_be_bytes());
                m[10..12].copy_from_slice(&self.nr.to_be_bytes());
                self.out.push_back(m.clone());
                self.stats.retransmits += 1;
            }
        }
        if let (LacState::Established, Some(i)) = (self.state, self.cfg.hello_interval)
            && self.in_flight.is_empty()
            && now >= self.last_heard + i
        {
            self.stats.hellos_sent += 1;
            self.last_heard = now;
            self.send_message(now, 0, HELLO, &[]);
        }
    }
}

/// Hides an AVP value (RFC 2661 §4.3).
pub fn hide(attr: u16, secret: &[u8], rv: &[u8], value: &[u8]) -> Vec<u8> {
    let mut plain = (value.len() as u16).to_be_bytes().to_vec();
    plain.extend_from_slice(value);
    // some random-looking padding, as the RFC suggests, to check it is skipped
    plain.extend_from_slice(&[0xa5; 5]);
    while !plain.len().is_multiple_of(16) {
        plain.push(0x5a);
    }
    let mut out: Vec<u8> = Vec::new();
    let mut key = md5(&[&attr.to_be_bytes(), secret, rv]);
    for block in plain.chunks(16) {
        let c: Vec<u8> = block.iter().zip(key.iter()).map(|(p, k)| p ^ k).collect();
        key = md5(&[secret, &c]);
        out.extend_from_slice(&c);
    }
    out
}
