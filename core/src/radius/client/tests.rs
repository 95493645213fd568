//! Client core tests against a scripted server.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pppd_lite::{AuthRequest, Credentials, Verdict};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use super::*;
use crate::aaa::{AcctRecord, AcctStatus, AuthContext, TerminateCause};
use crate::radius::packet::{Packet, attr, code, encrypt_mppe_key, ms, unhide_password};

const S1: &str = "10.0.0.1:1812";
const S2: &str = "10.0.0.2:1812";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(servers: &[(&str, Role)]) -> ClientConfig {
    ClientConfig {
        servers: servers
            .iter()
            .map(|(a, role)| ServerConfig {
                address: addr(a),
                secret: Zeroizing::new(b"testing123".to_vec()),
                role: *role,
            })
            .collect(),
        nas_identifier: Some("rg".into()),
        ..ClientConfig::default()
    }
}

fn client(servers: &[(&str, Role)]) -> Client {
    Client::with_rng(config(servers), ChaCha20Rng::from_seed([7; 32]))
}

fn pap(user: &str, pw: &str) -> AuthRequestData {
    AuthRequestData {
        ctx: AuthContext {
            nas_port: 4,
            calling_station: "192.0.2.7".into(),
            called_station: "198.51.100.1".into(),
            acct_session_id: "sess-1".into(),
        },
        request: AuthRequest {
            id: 1,
            user: user.into(),
            credentials: Credentials::Pap {
                password: Zeroizing::new(pw.as_bytes().to_vec()),
            },
        },
        state: None,
    }
}

fn record(status: AcctStatus) -> AcctRecord {
    AcctRecord {
        status: Some(status),
        session_id: "sess-1".into(),
        user: "bob".into(),
        nas_port: 4,
        framed_ip: Some(Ipv4Addr::new(10, 9, 0, 2)),
        calling_station: "192.0.2.7".into(),
        called_station: "198.51.100.1".into(),
        class: vec![b"c1".to_vec(), b"c2".to_vec()],
        session_time_s: 60,
        input_octets: (5u64 << 32) + 1000,
        input_packets: 10,
        output_octets: 2000,
        output_packets: 20,
        terminate_cause: Some(TerminateCause::UserRequest),
        event_time: 1_700_000_000,
    }
}

/// A response to `request` signed with `secret`, with `attrs` and a Message-Authenticator.
fn respond(
    request: &[u8],
    code: u8,
    secret: &[u8],
    build: impl FnOnce(&mut Packet, &[u8; 16]),
) -> Vec<u8> {
    let req = Packet::decode(request).unwrap();
    let mut p = Packet::new(code, req.identifier);
    build(&mut p, &req.authenticator);
    p.add_message_authenticator();
    p.encode_response(&req.authenticator, secret).unwrap()
}

#[test]
fn pap_request_attributes_and_accept() {
    let mut c = client(&[(S1, Role::Auth)]);
    let now = Instant::now();
    let id = c.send_auth(now, pap("bob", "secretpw"));
    let (to, bytes) = c.poll_transmit().unwrap();
    assert_eq!(to, addr(S1));
    let req = Packet::decode(&bytes).unwrap();
    assert_eq!(req.code, code::ACCESS_REQUEST);
    assert_eq!(req.get_str(attr::USER_NAME).as_deref(), Some("bob"));
    let pw = unhide_password(
        req.get(attr::USER_PASSWORD).unwrap(),
        b"testing123",
        &req.authenticator,
    )
    .unwrap();
    assert_eq!(pw.as_slice(), b"secretpw");
    assert_eq!(req.get_u32(attr::NAS_PORT_TYPE), Some(5));
    assert_eq!(req.get_u32(attr::SERVICE_TYPE), Some(2));
    assert_eq!(req.get_u32(attr::FRAMED_PROTOCOL), Some(1));
    assert_eq!(req.get(attr::TUNNEL_TYPE), Some(&[0u8, 0, 0, 3][..]));
    assert_eq!(req.get_str(attr::NAS_IDENTIFIER).as_deref(), Some("rg"));
    assert_eq!(
        req.get_str(attr::ACCT_SESSION_ID).as_deref(),
        Some("sess-1")
    );
    assert!(req.get(attr::MESSAGE_AUTHENTICATOR).is_some());

    let reply = respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |p, _| {
        p.add_ipv4(attr::FRAMED_IP_ADDRESS, Ipv4Addr::new(10, 9, 0, 5));
        p.add_u32(attr::SESSION_TIMEOUT, 3600);
        p.add(attr::CLASS, b"k1".to_vec());
        p.add(attr::CLASS, b"k2".to_vec());
        p.add_vsa(ms::VENDOR_ID, ms::PRIMARY_DNS_SERVER, &[1, 1, 1, 1]);
        p.add_vsa(ms::VENDOR_ID, ms::SECONDARY_DNS_SERVER, &[8, 8, 8, 8]);
    });
    c.handle_datagram(now, addr(S1), &reply);
    match c.poll_event() {
        Some(Event::AuthDone {
            id: got,
            result: Ok(a),
        }) => {
            assert_eq!(got, id);
            assert!(matches!(a.verdict, Verdict::Accept(_)));
            assert_eq!(a.authz.framed_ip, Some(Ipv4Addr::new(10, 9, 0, 5)));
            assert_eq!(a.authz.session_timeout, Some(3600));
            assert_eq!(a.authz.class, vec![b"k1".to_vec(), b"k2".to_vec()]);
            assert_eq!(
                a.authz.dns,
                vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.pending(), 0);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn mschapv2_success_mppe_and_error() {
    let mut c = client(&[(S1, Role::Auth)]);
    let now = Instant::now();
    let data = AuthRequestData {
        request: AuthRequest {
            id: 2,
            user: "alice".into(),
            credentials: Credentials::MsChapV2 {
                authenticator_challenge: [1; 16],
                peer_challenge: [2; 16],
                nt_response: [3; 24],
            },
        },
        ..pap("x", "y")
    };
    c.send_auth(now, data.clone());
    let (_, bytes) = c.poll_transmit().unwrap();
    let req = Packet::decode(&bytes).unwrap();
    assert_eq!(
        req.get_vsa(ms::VENDOR_ID, ms::CHAP_CHALLENGE),
        Some(&[1u8; 16][..])
    );
    let r = req.get_vsa(ms::VENDOR_ID, ms::CHAP2_RESPONSE).unwrap();
    assert_eq!(r.len(), 50);
    assert_eq!(&r[2..18], &[2; 16]);
    assert_eq!(&r[18..26], &[0; 8]);
    assert_eq!(&r[26..], &[3; 24]);
    let reply = respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |p, ra| {
        let mut s = vec![0u8];
        s.extend_from_slice(b"S=00112233445566778899AABBCCDDEEFF00112233");
        p.add_vsa(ms::VENDOR_ID, ms::CHAP2_SUCCESS, &s);
        p.add_vsa(
            ms::VENDOR_ID,
            ms::MPPE_SEND_KEY,
            &encrypt_mppe_key(&[0x55; 16], b"testing123", ra, [0x80, 1]),
        );
        p.add_vsa(
            ms::VENDOR_ID,
            ms::MPPE_RECV_KEY,
            &encrypt_mppe_key(&[0x66; 16], b"testing123", ra, [0x80, 2]),
        );
    });
    c.handle_datagram(now, addr(S1), &reply);
    let Some(Event::AuthDone { result: Ok(a), .. }) = c.poll_event() else {
        panic!()
    };
    let Verdict::Accept(acc) = a.verdict else {
        panic!()
    };
    assert_eq!(
        acc.mschapv2_authenticator_response.unwrap().to_vec(),
        hex::decode("00112233445566778899AABBCCDDEEFF00112233").unwrap()
    );
    let keys = acc.mppe.unwrap();
    assert_eq!(keys.send, [0x55; 16]);
    assert_eq!(keys.recv, [0x66; 16]);

    // An Accept without MS-CHAP2-Success is a reject; a Reject passes MS-CHAP-Error through.
    c.send_auth(now, data.clone());
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    let Some(Event::AuthDone { result: Ok(a), .. }) = c.poll_event() else {
        panic!()
    };
    assert!(matches!(a.verdict, Verdict::Reject { .. }));
    c.send_auth(now, data);
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_REJECT, b"testing123", |p, _| {
            p.add_vsa(ms::VENDOR_ID, ms::CHAP_ERROR, b"\x00E=691 R=0");
        }),
    );
    let Some(Event::AuthDone { result: Ok(a), .. }) = c.poll_event() else {
        panic!()
    };
    assert_eq!(a.verdict, Verdict::reject("E=691 R=0"));
}

#[test]
fn eap_challenge_keeps_state() {
    let mut c = client(&[(S1, Role::Auth)]);
    let now = Instant::now();
    let mut data = pap("bob", "");
    data.request.credentials = Credentials::Eap {
        packet: vec![2, 1, 0, 9, 1, b'b', b'o', b'b', b'!'],
    };
    c.send_auth(now, data);
    let (_, bytes) = c.poll_transmit().unwrap();
    let req = Packet::decode(&bytes).unwrap();
    assert_eq!(req.eap_message().unwrap().len(), 9);
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_CHALLENGE, b"testing123", |p, _| {
            p.add_eap_message(&[1, 2, 0, 6, 4, 16]);
            p.add(attr::STATE, b"st".to_vec());
        }),
    );
    let Some(Event::AuthDone { result: Ok(a), .. }) = c.poll_event() else {
        panic!()
    };
    assert_eq!(
        a.verdict,
        Verdict::EapContinue {
            packet: vec![1, 2, 0, 6, 4, 16]
        }
    );
    assert_eq!(a.state, Some(b"st".to_vec()));
}

#[test]
fn retransmit_backoff_then_fail_and_dead() {
    let mut c = client(&[(S1, Role::Auth)]);
    let t0 = Instant::now();
    let id = c.send_auth(t0, pap("bob", "pw"));
    let (_, first) = c.poll_transmit().unwrap();
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(3)));
    c.handle_timeout(t0 + Duration::from_secs(2));
    assert!(c.poll_transmit().is_none());
    let t1 = t0 + Duration::from_secs(3);
    c.handle_timeout(t1);
    let (_, second) = c.poll_transmit().unwrap();
    assert_eq!(first, second, "Access-Request retransmitted unchanged");
    assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(6)));
    let t2 = t1 + Duration::from_secs(6);
    c.handle_timeout(t2);
    assert!(c.poll_transmit().is_some());
    assert_eq!(c.poll_timeout(), Some(t2 + Duration::from_secs(12)));
    c.handle_timeout(t2 + Duration::from_secs(12));
    assert!(c.poll_transmit().is_none());
    assert_eq!(c.poll_event(), Some(Event::ServerDead { addr: addr(S1) }));
    assert_eq!(
        c.poll_event(),
        Some(Event::AuthDone {
            id,
            result: Err(AuthFailure::Timeout)
        })
    );
    assert!(c.is_dead(addr(S1)));
}

#[test]
fn failover_dead_and_return() {
    let mut cfg = config(&[(S1, Role::Auth), (S2, Role::Auth)]);
    cfg.tries = 2;
    cfg.timeout = Duration::from_secs(1);
    cfg.dead_time = Duration::from_secs(60);
    let mut c = Client::with_rng(cfg, ChaCha20Rng::from_seed([1; 32]));
    let t0 = Instant::now();
    c.send_auth(t0, pap("bob", "pw"));
    assert_eq!(c.poll_transmit().unwrap().0, addr(S1));
    c.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(c.poll_transmit().unwrap().0, addr(S1));
    let t = t0 + Duration::from_secs(3);
    c.handle_timeout(t);
    let (to, bytes) = c.poll_transmit().unwrap();
    assert_eq!(to, addr(S2));
    assert_eq!(c.poll_event(), Some(Event::ServerDead { addr: addr(S1) }));
    c.handle_datagram(
        t,
        addr(S2),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert!(matches!(
        c.poll_event(),
        Some(Event::AuthDone { result: Ok(_), .. })
    ));

    // While dead, S1 is passed over.
    c.send_auth(t, pap("bob", "pw"));
    let (to, bytes) = c.poll_transmit().unwrap();
    assert_eq!(to, addr(S2));
    c.handle_datagram(
        t,
        addr(S2),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    c.poll_event();

    // After dead_time it is tried again, and its answer makes it alive.
    let later = t + Duration::from_secs(61);
    c.send_auth(later, pap("bob", "pw"));
    let (to, bytes) = c.poll_transmit().unwrap();
    assert_eq!(to, addr(S1));
    c.handle_datagram(
        later,
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert_eq!(c.poll_event(), Some(Event::ServerAlive { addr: addr(S1) }));
    assert!(matches!(
        c.poll_event(),
        Some(Event::AuthDone { result: Ok(_), .. })
    ));
    assert!(!c.is_dead(addr(S1)));
}

#[test]
fn wrong_authenticator_and_garbage_dropped() {
    let mut c = Client::with_rng(
        ClientConfig {
            require_message_authenticator: RequireMessageAuthenticator::Yes,
            ..config(&[(S1, Role::Auth)])
        },
        ChaCha20Rng::from_seed([7; 32]),
    );
    let now = Instant::now();
    let id = c.send_auth(now, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"wrongsecret", |_, _| {}),
    );
    c.handle_datagram(now, addr(S1), &[0xff; 3]);
    c.handle_datagram(now, addr(S1), &[]);
    c.handle_datagram(
        now,
        addr(S2),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    // Without Message-Authenticator.
    let req = Packet::decode(&bytes).unwrap();
    let no_ma = Packet::new(code::ACCESS_ACCEPT, req.identifier)
        .encode_response(&req.authenticator, b"testing123")
        .unwrap();
    c.handle_datagram(now, addr(S1), &no_ma);
    assert_eq!(c.poll_event(), None);
    let st = c.stats();
    assert_eq!(st.bad_authenticator, 1);
    assert_eq!(metrics_of(&c, S1).unsigned_dropped, 1);
    assert_eq!(st.unknown_source, 1);
    assert_eq!(st.malformed + st.unmatched + st.bad_code, 2);
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_REJECT, b"testing123", |_, _| {}),
    );
    assert_eq!(
        c.poll_event(),
        Some(Event::AuthDone {
            id,
            result: Ok(Box::new(AuthAnswer {
                verdict: Verdict::reject("Authentication failed"),
                authz: Authorization::default(),
                state: None,
                server: addr(S1),
            }))
        })
    );
}

#[test]
fn identifier_exhaustion_queues() {
    let mut c = client(&[(S1, Role::Acct)]);
    let now = Instant::now();
    let ids: Vec<RequestId> = (0..300)
        .map(|_| {
            c.send_acct(
                now,
                AcctRequestData {
                    record: record(AcctStatus::InterimUpdate),
                    unix_now: 1_700_000_000,
                },
            )
        })
        .collect();
    let mut sent = Vec::new();
    while let Some((_, b)) = c.poll_transmit() {
        sent.push(b);
    }
    assert_eq!(sent.len(), 256);
    let mut idents: Vec<u8> = sent.iter().map(|b| b[1]).collect();
    idents.sort_unstable();
    idents.dedup();
    assert_eq!(idents.len(), 256);
    assert_eq!(c.pending(), 300);
    // Answer all; the 44 queued go out as identifiers free up.
    let mut acked = 0;
    while let Some(b) = sent.pop() {
        let reply = {
            let req = Packet::decode(&b).unwrap();
            Packet::new(code::ACCOUNTING_RESPONSE, req.identifier)
                .encode_response(&req.authenticator, b"testing123")
                .unwrap()
        };
        c.handle_datagram(now, addr(S1), &reply);
        while let Some((_, b)) = c.poll_transmit() {
            sent.insert(0, b);
        }
        while let Some(e) = c.poll_event() {
            assert!(matches!(e, Event::AcctAcked { .. }));
            acked += 1;
        }
    }
    assert_eq!(acked, ids.len());
    assert_eq!(c.pending(), 0);
}

#[test]
fn accounting_attributes_and_retransmission() {
    let mut c = client(&[(S1, Role::Acct)]);
    let t0 = Instant::now();
    let id = c.send_acct(
        t0,
        AcctRequestData {
            record: record(AcctStatus::Stop),
            unix_now: 1_700_000_002,
        },
    );
    let (_, b1) = c.poll_transmit().unwrap();
    assert!(crate::radius::packet::verify_request(&b1, b"testing123").is_ok());
    let p = Packet::decode(&b1).unwrap();
    assert_eq!(p.get_u32(attr::ACCT_STATUS_TYPE), Some(2));
    assert_eq!(p.get_u32(attr::ACCT_INPUT_OCTETS), Some(1000));
    assert_eq!(p.get_u32(attr::ACCT_INPUT_GIGAWORDS), Some(5));
    assert_eq!(p.get_u32(attr::ACCT_OUTPUT_GIGAWORDS), Some(0));
    assert_eq!(p.get_u32(attr::ACCT_TERMINATE_CAUSE), Some(1));
    assert_eq!(p.get_u32(attr::ACCT_DELAY_TIME), Some(2));
    assert_eq!(p.get_u32(attr::EVENT_TIMESTAMP), Some(1_700_000_000));
    assert_eq!(p.get_all(attr::CLASS).count(), 2);
    c.handle_timeout(t0 + Duration::from_secs(3));
    let (_, b2) = c.poll_transmit().unwrap();
    let p2 = Packet::decode(&b2).unwrap();
    assert_ne!(
        p.identifier, p2.identifier,
        "new Identifier (RFC 2866 §5.2)"
    );
    assert_ne!(p.authenticator, p2.authenticator);
    assert_eq!(p2.get_u32(attr::ACCT_DELAY_TIME), Some(5));
    // The answer to the old identifier is no longer matched; the new one is.
    let old = Packet::new(code::ACCOUNTING_RESPONSE, p.identifier)
        .encode_response(&p.authenticator, b"testing123")
        .unwrap();
    c.handle_datagram(t0, addr(S1), &old);
    assert_eq!(c.poll_event(), None);
    let new = Packet::new(code::ACCOUNTING_RESPONSE, p2.identifier)
        .encode_response(&p2.authenticator, b"testing123")
        .unwrap();
    c.handle_datagram(t0, addr(S1), &new);
    assert_eq!(c.poll_event(), Some(Event::AcctAcked { id }));

    // Accounting-On carries only NAS attributes, status and a session id.
    c.send_acct(
        t0,
        AcctRequestData {
            record: AcctRecord {
                status: Some(AcctStatus::AccountingOn),
                session_id: "on1".into(),
                ..AcctRecord::default()
            },
            unix_now: 0,
        },
    );
    let (_, b) = c.poll_transmit().unwrap();
    let types: Vec<u8> = Packet::decode(&b)
        .unwrap()
        .attributes
        .iter()
        .map(|a| a.typ)
        .collect();
    assert_eq!(
        types,
        vec![
            attr::ACCT_STATUS_TYPE,
            attr::ACCT_SESSION_ID,
            attr::NAS_IDENTIFIER,
            attr::MESSAGE_AUTHENTICATOR
        ]
    );
}

#[test]
fn acct_fails_when_all_servers_time_out_and_no_server() {
    let mut c = client(&[(S1, Role::Auth)]);
    let now = Instant::now();
    let id = c.send_acct(
        now,
        AcctRequestData {
            record: record(AcctStatus::Start),
            unix_now: 0,
        },
    );
    assert_eq!(c.poll_event(), Some(Event::AcctFailed { id }));
    let mut cfg = config(&[(S1, Role::Acct)]);
    cfg.tries = 1;
    let mut c = Client::with_rng(cfg, ChaCha20Rng::from_seed([2; 32]));
    let id = c.send_acct(
        now,
        AcctRequestData {
            record: record(AcctStatus::Start),
            unix_now: 0,
        },
    );
    c.poll_transmit().unwrap();
    c.handle_timeout(now + Duration::from_secs(3));
    assert_eq!(c.poll_event(), Some(Event::ServerDead { addr: addr(S1) }));
    assert_eq!(c.poll_event(), Some(Event::AcctFailed { id }));
}

#[test]
fn debug_hides_secrets() {
    let c = client(&[(S1, Role::Auth)]);
    assert!(!format!("{c:?}").contains("testing123"));
    assert!(!format!("{:?}", config(&[(S1, Role::Auth)])).contains("testing123"));
}

proptest::proptest! {
    #[test]
    fn handle_datagram_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let mut c = client(&[(S1, Role::Auth)]);
        let now = Instant::now();
        c.send_auth(now, pap("bob", "pw"));
        let (_, req) = c.poll_transmit().unwrap();
        let mut b = bytes.clone();
        if b.len() > 1 { b[1] = req[1]; }
        c.handle_datagram(now, addr(S1), &b);
        c.handle_datagram(now, addr(S1), &bytes);
    }
}

fn metrics_of(c: &Client, server: &str) -> ServerMetrics {
    c.server_metrics()
        .into_iter()
        .find(|m| m.address == addr(server))
        .unwrap()
}

/// Cumulative buckets with `n` observations from bucket `from` (an index into
/// `LATENCY_BUCKETS`) on.
fn cumulative(from: usize, n: u64) -> Vec<u64> {
    (0..LATENCY_BUCKETS.len())
        .map(|i| if i >= from { n } else { 0 })
        .collect()
}

#[test]
fn metrics_start_at_zero_for_every_server() {
    let c = client(&[(S1, Role::Auth), (S2, Role::Acct)]);
    let empty = LatencyHistogram {
        bounds: &LATENCY_BUCKETS,
        buckets: vec![0; 11],
        count: 0,
        sum_secs: 0.0,
    };
    assert_eq!(
        c.server_metrics(),
        vec![
            ServerMetrics {
                address: addr(S1),
                role: Role::Auth,
                requests: 0,
                timeouts: 0,
                signs: false,
                unsigned_accepted: 0,
                unsigned_dropped: 0,
                latency: empty.clone(),
            },
            ServerMetrics {
                address: addr(S2),
                role: Role::Acct,
                requests: 0,
                timeouts: 0,
                signs: false,
                unsigned_accepted: 0,
                unsigned_dropped: 0,
                latency: empty,
            },
        ]
    );
}

#[test]
fn metrics_answer_after_30ms_lands_in_the_50ms_bucket() {
    let mut c = client(&[(S1, Role::Auth)]);
    let t0 = Instant::now();
    c.send_auth(t0, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        t0 + Duration::from_millis(30),
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert!(matches!(
        c.poll_event(),
        Some(Event::AuthDone { result: Ok(_), .. })
    ));
    assert_eq!(
        metrics_of(&c, S1),
        ServerMetrics {
            address: addr(S1),
            role: Role::Auth,
            requests: 1,
            timeouts: 0,
            signs: true,
            unsigned_accepted: 0,
            unsigned_dropped: 0,
            latency: LatencyHistogram {
                bounds: &LATENCY_BUCKETS,
                // le 0.005, 0.01, 0.025: 0; le 0.05 and up: 1.
                buckets: vec![0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
                count: 1,
                sum_secs: 0.03,
            },
        }
    );
}

#[test]
fn metrics_retransmission_counts_once_and_latency_runs_from_the_first() {
    // Access-Request: retransmitted unchanged.
    let mut c = client(&[(S1, Role::Auth)]);
    let t0 = Instant::now();
    c.send_auth(t0, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_timeout(t0 + Duration::from_secs(3));
    assert!(c.poll_transmit().is_some(), "retransmitted");
    c.handle_datagram(
        t0 + Duration::from_millis(3500),
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert!(matches!(
        c.poll_event(),
        Some(Event::AuthDone { result: Ok(_), .. })
    ));
    let m = metrics_of(&c, S1);
    assert_eq!(m.requests, 1);
    assert_eq!(m.timeouts, 0);
    assert_eq!(m.latency.count, 1);
    assert_eq!(m.latency.sum_secs, 3.5);
    assert_eq!(m.latency.buckets, cumulative(9, 1), "le 5");

    // Accounting-Request: re-encoded with a new Identifier, still one request.
    let mut c = client(&[(S1, Role::Acct)]);
    let id = c.send_acct(
        t0,
        AcctRequestData {
            record: record(AcctStatus::Stop),
            unix_now: 1_700_000_002,
        },
    );
    c.poll_transmit().unwrap();
    c.handle_timeout(t0 + Duration::from_secs(3));
    let (_, b2) = c.poll_transmit().unwrap();
    c.handle_timeout(t0 + Duration::from_secs(9));
    let (_, b3) = c.poll_transmit().unwrap();
    assert_ne!(b2[1], b3[1], "new Identifier");
    let p3 = Packet::decode(&b3).unwrap();
    let ack = Packet::new(code::ACCOUNTING_RESPONSE, p3.identifier)
        .encode_response(&p3.authenticator, b"testing123")
        .unwrap();
    c.handle_datagram(t0 + Duration::from_millis(9250), addr(S1), &ack);
    assert_eq!(c.poll_event(), Some(Event::AcctAcked { id }));
    let m = metrics_of(&c, S1);
    assert_eq!(m.requests, 1);
    assert_eq!(m.timeouts, 0);
    assert_eq!(m.latency.count, 1);
    assert_eq!(m.latency.sum_secs, 9.25);
    assert_eq!(m.latency.buckets, cumulative(10, 1), "le 10");
}

#[test]
fn metrics_timeout_on_a_then_request_on_b() {
    let mut cfg = config(&[(S1, Role::Auth), (S2, Role::Auth)]);
    cfg.tries = 2;
    cfg.timeout = Duration::from_secs(1);
    let mut c = Client::with_rng(cfg, ChaCha20Rng::from_seed([1; 32]));
    let t0 = Instant::now();
    c.send_auth(t0, pap("bob", "pw"));
    assert_eq!(c.poll_transmit().unwrap().0, addr(S1));
    c.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(c.poll_transmit().unwrap().0, addr(S1));
    // Before the last deadline, S1 has one request and no timeout yet.
    let m1 = metrics_of(&c, S1);
    assert_eq!((m1.requests, m1.timeouts), (1, 0));
    let t = t0 + Duration::from_secs(3);
    c.handle_timeout(t);
    let (to, bytes) = c.poll_transmit().unwrap();
    assert_eq!(to, addr(S2));
    c.handle_datagram(
        t + Duration::from_millis(20),
        addr(S2),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert_eq!(c.poll_event(), Some(Event::ServerDead { addr: addr(S1) }));
    assert!(matches!(
        c.poll_event(),
        Some(Event::AuthDone { result: Ok(_), .. })
    ));
    assert_eq!(
        c.server_metrics(),
        vec![
            ServerMetrics {
                address: addr(S1),
                role: Role::Auth,
                requests: 1,
                timeouts: 1,
                signs: false,
                unsigned_accepted: 0,
                unsigned_dropped: 0,
                latency: LatencyHistogram {
                    bounds: &LATENCY_BUCKETS,
                    buckets: vec![0; 11],
                    count: 0,
                    sum_secs: 0.0,
                },
            },
            ServerMetrics {
                address: addr(S2),
                role: Role::Auth,
                requests: 1,
                timeouts: 0,
                signs: true,
                unsigned_accepted: 0,
                unsigned_dropped: 0,
                // From the first transmission to S2, not to S1.
                latency: LatencyHistogram {
                    bounds: &LATENCY_BUCKETS,
                    buckets: cumulative(2, 1),
                    count: 1,
                    sum_secs: 0.02,
                },
            },
        ]
    );
}

#[test]
fn metrics_bad_authenticator_not_observed() {
    let mut c = client(&[(S1, Role::Auth)]);
    let t0 = Instant::now();
    c.send_auth(t0, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    let generation = c.metrics_generation();
    c.handle_datagram(
        t0 + Duration::from_millis(10),
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"wrongsecret", |_, _| {}),
    );
    assert_eq!(c.stats().bad_authenticator, 1);
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.metrics_generation(), generation);
    let m = metrics_of(&c, S1);
    assert_eq!(m.requests, 1);
    assert_eq!(m.latency.count, 0);
    assert_eq!(m.latency.sum_secs, 0.0);
    assert_eq!(m.latency.buckets, vec![0; 11]);
    // The valid answer that follows is the one observed.
    c.handle_datagram(
        t0 + Duration::from_millis(200),
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert_ne!(c.metrics_generation(), generation);
    let m = metrics_of(&c, S1);
    assert_eq!(m.requests, 1);
    assert_eq!(m.latency.count, 1);
    assert_eq!(m.latency.sum_secs, 0.2);
    assert_eq!(m.latency.buckets, cumulative(5, 1), "le 0.25");
}

/// An answer to `request` without Message-Authenticator.
fn respond_unsigned(request: &[u8], code: u8) -> Vec<u8> {
    let req = Packet::decode(request).unwrap();
    Packet::new(code, req.identifier)
        .encode_response(&req.authenticator, b"testing123")
        .unwrap()
}

fn client_with(setting: RequireMessageAuthenticator, tries: u32) -> Client {
    Client::with_rng(
        ClientConfig {
            require_message_authenticator: setting,
            tries,
            ..config(&[(S1, Role::Auth)])
        },
        ChaCha20Rng::from_seed([7; 32]),
    )
}

fn accepted(c: &mut Client, id: RequestId) -> bool {
    matches!(
        c.poll_event(),
        Some(Event::AuthDone { id: got, result: Ok(a) }) if got == id && matches!(a.verdict, Verdict::Accept(_))
    )
}

#[test]
fn auto_accepts_unsigned_until_the_server_signs_then_requires_it() {
    let mut c = client_with(RequireMessageAuthenticator::Auto, 3);
    let now = Instant::now();
    // Unsigned answers are accepted while the server has not signed.
    for _ in 0..2 {
        let id = c.send_auth(now, pap("bob", "pw"));
        let (_, bytes) = c.poll_transmit().unwrap();
        c.handle_datagram(
            now,
            addr(S1),
            &respond_unsigned(&bytes, code::ACCESS_ACCEPT),
        );
        assert!(accepted(&mut c, id));
    }
    let m = metrics_of(&c, S1);
    assert_eq!(
        (m.signs, m.unsigned_accepted, m.unsigned_dropped),
        (false, 2, 0)
    );
    assert!(!c.server_signs(addr(S1)));
    // A signed answer: learnt.
    let id = c.send_auth(now, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert!(accepted(&mut c, id));
    assert!(c.server_signs(addr(S1)));
    // From now on an unsigned answer is dropped; the signed one that follows is taken.
    let id = c.send_auth(now, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        now,
        addr(S1),
        &respond_unsigned(&bytes, code::ACCESS_ACCEPT),
    );
    assert_eq!(c.poll_event(), None);
    let m = metrics_of(&c, S1);
    assert_eq!(
        (m.signs, m.unsigned_accepted, m.unsigned_dropped),
        (true, 2, 1)
    );
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert!(accepted(&mut c, id));
    // Only unsigned answers: the request fails saying so, and the server is not dead.
    let id = c.send_auth(now, pap("bob", "pw"));
    let mut t = now;
    while let Some((_, bytes)) = c.poll_transmit() {
        c.handle_datagram(t, addr(S1), &respond_unsigned(&bytes, code::ACCESS_ACCEPT));
        t = c.poll_timeout().unwrap();
        c.handle_timeout(t);
    }
    let e = c.poll_event();
    assert_eq!(
        e,
        Some(Event::AuthDone {
            id,
            result: Err(AuthFailure::Unsigned {
                server: addr(S1),
                setting: RequireMessageAuthenticator::Auto,
                signed_before: true,
            })
        })
    );
    assert_eq!(c.poll_event(), None);
    assert!(!c.is_dead(addr(S1)));
    assert_eq!(metrics_of(&c, S1).timeouts, 0);
}

#[test]
fn yes_refuses_unsigned_answers_and_says_the_server_answered() {
    let mut c = client_with(RequireMessageAuthenticator::Yes, 2);
    let now = Instant::now();
    let id = c.send_auth(now, pap("bob", "pw"));
    let mut t = now;
    let mut sent = 0;
    while let Some((_, bytes)) = c.poll_transmit() {
        sent += 1;
        c.handle_datagram(t, addr(S1), &respond_unsigned(&bytes, code::ACCESS_ACCEPT));
        t = c.poll_timeout().unwrap();
        c.handle_timeout(t);
    }
    assert_eq!(sent, 2);
    let Some(Event::AuthDone {
        id: got,
        result: Err(e),
    }) = c.poll_event()
    else {
        panic!("no failure");
    };
    assert_eq!(got, id);
    assert_eq!(
        e.to_string(),
        "RADIUS server 10.0.0.1:1812 answered, but without Message-Authenticator, and require_message_authenticator = true refuses such answers"
    );
    assert_eq!(c.poll_event(), None, "not marked dead");
    assert!(!c.is_dead(addr(S1)));
    let m = metrics_of(&c, S1);
    assert_eq!((m.signs, m.unsigned_dropped, m.timeouts), (false, 2, 0));
    // A server that does not answer at all is still a timeout.
    let id = c.send_auth(t, pap("bob", "pw"));
    while c.poll_transmit().is_some() {
        t = c.poll_timeout().unwrap();
        c.handle_timeout(t);
    }
    assert_eq!(c.poll_event(), Some(Event::ServerDead { addr: addr(S1) }));
    assert_eq!(
        c.poll_event(),
        Some(Event::AuthDone {
            id,
            result: Err(AuthFailure::Timeout)
        })
    );
}

#[test]
fn no_accepts_unsigned_always() {
    let mut c = client_with(RequireMessageAuthenticator::No, 3);
    let now = Instant::now();
    let id = c.send_auth(now, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        now,
        addr(S1),
        &respond(&bytes, code::ACCESS_ACCEPT, b"testing123", |_, _| {}),
    );
    assert!(accepted(&mut c, id));
    let id = c.send_auth(now, pap("bob", "pw"));
    let (_, bytes) = c.poll_transmit().unwrap();
    c.handle_datagram(
        now,
        addr(S1),
        &respond_unsigned(&bytes, code::ACCESS_ACCEPT),
    );
    assert!(accepted(&mut c, id));
    let m = metrics_of(&c, S1);
    assert_eq!(
        (m.signs, m.unsigned_accepted, m.unsigned_dropped),
        (true, 1, 0)
    );
}
