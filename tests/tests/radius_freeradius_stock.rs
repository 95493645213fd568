//! The RADIUS client and the Status-Server probe against Debian's STOCK FreeRADIUS 3.2.1
//! configuration (a copy of /etc/freeradius/3.0 as packaged, plus one users-file entry and its
//! ports moved to free ones; the stock `localhost` client with secret `testing123` is used as
//! is), and `require_message_authenticator = "auto"` against the generated configuration,
//! which signs its answers.
//!
//! The stock server answers without Message-Authenticator: with the default `"auto"` PAP and
//! MS-CHAPv2 logins succeed (one warning); with `true` they are refused with a log line that
//! names the server and the setting, and the server is not reported dead.
//!
//! Skipped (with a "SKIP ... because ..." line) when FreeRADIUS is missing or the test does not
//! run as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pppd_lite::{AuthRequest, Credentials, Verdict};
use roadgate::aaa::AuthContext;
use roadgate::radius::client::{
    AuthFailure, AuthRequestData, Client, ClientConfig, Event, RequireMessageAuthenticator, Role,
    ServerConfig, ServerMetrics,
};
use roadgate::radius::packet::{Packet, code};
use roadgate::radius::probe::{Outcome, probe};
use roadgate_tests::freeradius::{
    STOCK_CONFIG, Server, Setup, StockPorts, auth_result, copy_stock_config, drive, free_port,
};
use zeroize::Zeroizing;

/// The stock clients.conf's secret for localhost.
const SECRET: &str = "testing123";

fn skip_reason() -> Option<String> {
    if let Some(why) = roadgate_tests::freeradius::unavailable() {
        return Some(why);
    }
    if !Path::new(STOCK_CONFIG).join("radiusd.conf").exists() {
        return Some(format!(
            "{STOCK_CONFIG} is missing (apt-get install freeradius)"
        ));
    }
    None
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!("roadgate-{name}-{}-{nanos}", std::process::id()))
}

/// A stock FreeRADIUS with the user `stocky` / `stockpass`; its authentication address.
fn start_stock() -> (Server, SocketAddr) {
    let dir = scratch("frstock");
    let ports = StockPorts {
        auth: free_port(),
        acct: free_port(),
        inner_tunnel: free_port(),
    };
    copy_stock_config(&dir, ports, "stocky\tCleartext-Password := \"stockpass\"").unwrap();
    let server = Server::start_in(&dir).unwrap();
    (server, local(ports.auth))
}

fn client(
    server: SocketAddr,
    setting: RequireMessageAuthenticator,
    timeout: Duration,
    tries: u32,
) -> Client {
    Client::new(ClientConfig {
        servers: vec![ServerConfig {
            address: server,
            secret: Zeroizing::new(SECRET.as_bytes().to_vec()),
            role: Role::Auth,
        }],
        timeout,
        tries,
        nas_identifier: Some("roadgate-test".into()),
        nas_ip: Some(Ipv4Addr::LOCALHOST),
        require_message_authenticator: setting,
        ..ClientConfig::default()
    })
}

fn request(user: &str, credentials: Credentials) -> AuthRequestData {
    AuthRequestData {
        ctx: AuthContext {
            nas_port: 7,
            calling_station: "192.0.2.10".into(),
            called_station: "198.51.100.1".into(),
            acct_session_id: "rg-stock-1".into(),
        },
        request: AuthRequest {
            id: 1,
            user: user.into(),
            credentials,
        },
        state: None,
    }
}

fn pap(pw: &str) -> Credentials {
    Credentials::Pap {
        password: Zeroizing::new(pw.as_bytes().to_vec()),
    }
}

fn metrics(c: &Client) -> ServerMetrics {
    c.server_metrics().into_iter().next().unwrap()
}

/// The log lines (plain text, no colours) written while `f` runs on this thread.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::new(Mutex::new(Vec::new())));
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    (out, text)
}

#[test]
fn stock_freeradius_auto_accepts_unsigned_pap_and_mschapv2() {
    if let Some(why) = skip_reason() {
        println!("SKIP stock_freeradius_auto_accepts_unsigned_pap_and_mschapv2 because {why}");
        return;
    }
    let (_server, addr) = start_stock();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut c = client(
        addr,
        ClientConfig::default().require_message_authenticator,
        Duration::from_secs(2),
        3,
    );
    let limit = Duration::from_secs(8);
    let ((), log) = logged(|| {
        let id = c.send_auth(Instant::now(), request("stocky", pap("stockpass")));
        let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
        assert!(matches!(a.verdict, Verdict::Accept(_)), "{a:?}");

        let auth_challenge = [0x33u8; 16];
        let peer_challenge = [0x44u8; 16];
        let nt_response = pppd_lite::mschapv2::generate_nt_response_from_password(
            &auth_challenge,
            &peer_challenge,
            "stocky",
            "stockpass",
        );
        let nt_hash = pppd_lite::mschapv2::nt_password_hash("stockpass");
        let expected_s = pppd_lite::mschapv2::authenticator_response_bytes(
            &nt_hash,
            &nt_response,
            &peer_challenge,
            &auth_challenge,
            "stocky",
        );
        let expected_keys = pppd_lite::MppeKeys::server(&nt_hash, &nt_response);
        let id = c.send_auth(
            Instant::now(),
            request(
                "stocky",
                Credentials::MsChapV2 {
                    authenticator_challenge: auth_challenge,
                    peer_challenge,
                    nt_response,
                },
            ),
        );
        let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
        let Verdict::Accept(acc) = &a.verdict else {
            panic!("MS-CHAPv2 not accepted by the stock server: {a:?}");
        };
        assert_eq!(
            acc.mschapv2_authenticator_response,
            Some(expected_s),
            "MS-CHAP2-Success"
        );
        let keys = acc.mppe.as_ref().expect("MPPE keys");
        assert_eq!(keys.send, expected_keys.send, "MS-MPPE-Send-Key");
        assert_eq!(keys.recv, expected_keys.recv, "MS-MPPE-Recv-Key");
    });
    let m = metrics(&c);
    assert!(!m.signs, "the stock 3.2.1 server does not sign its answers");
    assert_eq!(
        (m.unsigned_accepted, m.unsigned_dropped, m.timeouts),
        (2, 0, 0)
    );
    assert!(!c.is_dead(addr));
    let warning = format!(
        "RADIUS server {addr} answers without Message-Authenticator; accepted because require_message_authenticator = \"auto\""
    );
    assert_eq!(
        log.matches(&warning).count(),
        1,
        "one warning per server:\n{log}"
    );
    assert!(log.contains(" WARN "), "{log}");
    println!(
        "PASS stock FreeRADIUS, default \"auto\": PAP and MS-CHAPv2 accepted (MS-CHAP2-Success, MPPE keys), one warning: {warning}"
    );
}

#[test]
fn stock_freeradius_true_refuses_unsigned_and_says_so() {
    if let Some(why) = skip_reason() {
        println!("SKIP stock_freeradius_true_refuses_unsigned_and_says_so because {why}");
        return;
    }
    let (_server, addr) = start_stock();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut c = client(
        addr,
        RequireMessageAuthenticator::Yes,
        Duration::from_millis(300),
        2,
    );
    let (events, log) = logged(|| {
        let mut all = Vec::new();
        for _ in 0..2 {
            let id = c.send_auth(Instant::now(), request("stocky", pap("stockpass")));
            let events = drive(&mut c, &sock, id, Duration::from_secs(8));
            assert_eq!(
                auth_result(&events, id),
                Err(AuthFailure::Unsigned {
                    server: addr,
                    setting: RequireMessageAuthenticator::Yes,
                    signed_before: false
                })
            );
            all.extend(events);
        }
        all
    });
    assert!(
        !events.iter().any(|e| matches!(e, Event::ServerDead { .. })),
        "an answering server is not dead: {events:?}"
    );
    assert!(!c.is_dead(addr));
    let m = metrics(&c);
    assert_eq!((m.signs, m.timeouts), (false, 0));
    assert!(m.unsigned_dropped >= 2, "{m:?}");
    let line = format!(
        "RADIUS server {addr} answers without Message-Authenticator; dropped because require_message_authenticator = true"
    );
    assert_eq!(
        log.matches(&line).count(),
        1,
        "once per server, then counted:\n{log}"
    );
    assert!(!log.contains("no RADIUS server answered"), "{log}");
    assert!(!log.contains("marked dead"), "{log}");
    let failure = auth_result(
        &events,
        match events.first() {
            Some(Event::AuthDone { id, .. }) => *id,
            other => panic!("{other:?}"),
        },
    )
    .unwrap_err()
    .to_string();
    println!(
        "PASS stock FreeRADIUS, require_message_authenticator = true: refused, not dead; log: {line}; failure: {failure}"
    );
}

#[test]
fn generated_freeradius_auto_learns_that_it_signs_then_requires_it() {
    if let Some(why) = skip_reason() {
        println!(
            "SKIP generated_freeradius_auto_learns_that_it_signs_then_requires_it because {why}"
        );
        return;
    }
    let port = free_port();
    let server = Server::start(&Setup {
        secret: SECRET.into(),
        users: "bob\tCleartext-Password := \"bobpass\"\n".into(),
        ..Setup::new(
            scratch("frgen"),
            Ipv4Addr::LOCALHOST.into(),
            (port, free_port()),
            Ipv4Addr::LOCALHOST.into(),
        )
    })
    .unwrap();
    let addr = local(port);
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut c = client(
        addr,
        RequireMessageAuthenticator::Auto,
        Duration::from_secs(2),
        3,
    );
    let limit = Duration::from_secs(8);
    let ((), log) = logged(|| {
        let id = c.send_auth(Instant::now(), request("bob", pap("bobpass")));
        let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
        assert!(matches!(a.verdict, Verdict::Accept(_)), "{a:?}");
        assert!(
            c.server_signs(addr),
            "learnt: the generated configuration signs"
        );
        // A forged unsigned Access-Accept (as BLAST-RADIUS would make) from the server's address
        // before the real answer: dropped; the real answer (a Reject for a wrong password) wins.
        let id = c.send_auth(Instant::now(), request("bob", pap("wrong")));
        let (to, bytes) = c.poll_transmit().unwrap();
        let req = Packet::decode(&bytes).unwrap();
        let forged = Packet::new(code::ACCESS_ACCEPT, req.identifier)
            .encode_response(&req.authenticator, SECRET.as_bytes())
            .unwrap();
        c.handle_datagram(Instant::now(), addr, &forged);
        assert_eq!(c.poll_event(), None, "the unsigned answer is not used");
        sock.send_to(&bytes, to).unwrap();
        let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
        assert!(matches!(a.verdict, Verdict::Reject { .. }), "{a:?}");
    });
    drop(server);
    let m = metrics(&c);
    assert_eq!(
        (m.signs, m.unsigned_accepted, m.unsigned_dropped),
        (true, 0, 1)
    );
    assert!(
        log.contains(&format!("RADIUS server {addr} signs its answers")),
        "{log}"
    );
    assert!(
        log.contains("although it signed its answers before; dropped"),
        "{log}"
    );
    println!(
        "PASS generated FreeRADIUS, \"auto\": learnt that it signs; a forged unsigned Accept was dropped and the real Reject used"
    );
}

#[test]
fn status_server_probe_against_stock_freeradius() {
    if let Some(why) = skip_reason() {
        println!("SKIP status_server_probe_against_stock_freeradius because {why}");
        return;
    }
    let (server, addr) = start_stock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let timeout = Duration::from_secs(1);
    // Stock radiusd.conf has `status_server = yes`: it answers on the authentication port,
    // with an Access-Accept that carries no Message-Authenticator.
    assert!(
        std::fs::read_to_string(server.dir.join("radiusd.conf"))
            .unwrap()
            .lines()
            .any(|l| l.trim() == "status_server = yes")
    );
    let p = rt.block_on(probe(addr, SECRET.as_bytes(), None, timeout));
    assert!(
        matches!(p.outcome, Outcome::Answered { signs: false, .. }),
        "{p}"
    );
    assert!(
        p.to_string()
            .ends_with("but does not sign its answers (Message-Authenticator missing)"),
        "{p}"
    );
    println!("PASS {p}");
    // A wrong secret: FreeRADIUS drops the Status-Server (its Message-Authenticator fails).
    let p = rt.block_on(probe(addr, b"not-the-secret", None, timeout));
    assert_eq!(p.outcome, Outcome::NoAnswer, "{p}");
    assert!(
        server.output().contains("Message-Authenticator"),
        "the server saw a bad one"
    );
    println!("PASS wrong secret: {p}");
    // A closed port.
    let closed = local(free_port());
    let p = rt.block_on(probe(closed, SECRET.as_bytes(), None, timeout));
    assert_eq!(p.outcome, Outcome::Refused, "{p}");
    println!("PASS closed port: {p}");
}
