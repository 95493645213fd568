//! The RADIUS client and the dynamic authorization server against a real FreeRADIUS 3:
//! a complete minimal configuration is generated in a temporary directory (users file with
//! Cleartext-Password users, pap, chap, mschap, eap, files, detail), `freeradius -X` runs it
//! on free local ports, and the sans-IO `Client` is driven over a real UDP socket. `radclient`
//! sends Disconnect-Requests to the dynauth task.
//!
//! Skipped (with a "SKIP ... because ..." line) when FreeRADIUS or radclient is missing or the
//! test does not run as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pppd_lite::{AuthRequest, Credentials, Verdict};
use roadgate::aaa::{AcctRecord, AcctStatus, AuthContext, TerminateCause};
use roadgate::radius::client::{
    AcctRequestData, AuthRequestData, Client, ClientConfig, Event, Role, ServerConfig,
};
use roadgate_tests::freeradius::{Server, Setup, auth_result, drive, free_port};
use zeroize::Zeroizing;

const SECRET: &str = "testing123";
const RADCLIENT: &str = "/usr/bin/radclient";

fn skip_reason() -> Option<String> {
    if !Path::new(RADCLIENT).exists() {
        return Some(format!("{RADCLIENT} is not installed"));
    }
    roadgate_tests::freeradius::unavailable()
}

const USERS: &str = r#"bob	Cleartext-Password := "bobpass"
	Framed-IP-Address = 10.9.0.5,
	Session-Timeout = 3600,
	Class = "class-one",
	Class = "class-two",
	Reply-Message = "hello bob"

alice	Cleartext-Password := "alicepass"
	Framed-IP-Address = 10.9.0.6,
	MS-Primary-DNS-Server = 10.9.0.1
"#;

fn start_freeradius() -> (Server, u16, u16) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!("roadgate-fr-{}-{nanos}", std::process::id()));
    let auth_port = free_port();
    let acct_port = free_port();
    let server = Server::start(&Setup {
        secret: SECRET.into(),
        users: USERS.into(),
        ..Setup::new(
            dir,
            Ipv4Addr::LOCALHOST.into(),
            (auth_port, acct_port),
            Ipv4Addr::LOCALHOST.into(),
        )
    })
    .unwrap();
    (server, auth_port, acct_port)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn client_for(servers: &[(SocketAddr, Role)], timeout: Duration, tries: u32) -> Client {
    Client::new(ClientConfig {
        servers: servers
            .iter()
            .map(|&(address, role)| ServerConfig {
                address,
                secret: Zeroizing::new(SECRET.as_bytes().to_vec()),
                role,
            })
            .collect(),
        timeout,
        tries,
        nas_identifier: Some("roadgate-test".into()),
        nas_ip: Some(Ipv4Addr::LOCALHOST),
        ..ClientConfig::default()
    })
}

fn ctx() -> AuthContext {
    AuthContext {
        nas_port: 7,
        calling_station: "192.0.2.10".into(),
        called_station: "198.51.100.1".into(),
        acct_session_id: "rg-test-1".into(),
    }
}

fn auth(user: &str, credentials: Credentials) -> AuthRequestData {
    AuthRequestData {
        ctx: ctx(),
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

#[test]
fn radius_against_freeradius() {
    if let Some(why) = skip_reason() {
        println!("SKIP radius_against_freeradius because {why}");
        return;
    }
    let (server, auth_port, acct_port) = start_freeradius();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut c = client_for(
        &[
            (local(auth_port), Role::Auth),
            (local(acct_port), Role::Acct),
        ],
        Duration::from_secs(2),
        3,
    );
    let limit = Duration::from_secs(8);

    // PAP accept, with the users file's reply attributes.
    let id = c.send_auth(Instant::now(), auth("bob", pap("bobpass")));
    let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
    assert!(matches!(a.verdict, Verdict::Accept(_)), "{a:?}");
    assert_eq!(a.authz.framed_ip, Some(Ipv4Addr::new(10, 9, 0, 5)));
    assert_eq!(a.authz.session_timeout, Some(3600));
    assert_eq!(
        a.authz.class,
        vec![b"class-one".to_vec(), b"class-two".to_vec()]
    );
    assert_eq!(a.authz.reply_message, vec!["hello bob".to_string()]);
    println!("PASS PAP accept with Framed-IP-Address, Session-Timeout, Class x2, Reply-Message");

    // PAP reject.
    let id = c.send_auth(Instant::now(), auth("bob", pap("wrong")));
    let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
    assert!(matches!(a.verdict, Verdict::Reject { .. }), "{a:?}");
    println!("PASS PAP reject: {:?}", a.verdict);

    // CHAP accept.
    let challenge = [0x42u8; 16];
    let response = pppd_lite::chap::chap_md5_response(9, b"bobpass", &challenge);
    let id = c.send_auth(
        Instant::now(),
        auth(
            "bob",
            Credentials::ChapMd5 {
                ident: 9,
                challenge: challenge.to_vec(),
                response,
            },
        ),
    );
    let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
    assert!(matches!(a.verdict, Verdict::Accept(_)), "{a:?}");
    println!("PASS CHAP accept");

    // EAP-MD5: Identity, then the challenge answered with the State echoed.
    let mut identity = vec![2u8, 1, 0, 8, 1];
    identity.extend_from_slice(b"bob");
    let id = c.send_auth(
        Instant::now(),
        auth("bob", Credentials::Eap { packet: identity }),
    );
    let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
    let Verdict::EapContinue { packet: request } = &a.verdict else {
        panic!("no EAP challenge: {a:?}");
    };
    assert_eq!(request.get(4), Some(&4), "EAP-MD5 challenge: {request:?}");
    let eap_id = request[1];
    let size = usize::from(request[5]);
    let value = &request[6..6 + size];
    let digest = {
        use md5::Digest as _;
        let mut h = md5::Md5::new();
        h.update([eap_id]);
        h.update(b"bobpass");
        h.update(value);
        h.finalize()
    };
    let mut response = vec![2u8, eap_id, 0, 22, 4, 16];
    response.extend_from_slice(&digest);
    let mut next = auth("bob", Credentials::Eap { packet: response });
    next.state = a.state.clone();
    assert!(next.state.is_some(), "Access-Challenge without State");
    let id = c.send_auth(Instant::now(), next);
    let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
    assert!(matches!(a.verdict, Verdict::Accept(_)), "{a:?}");
    println!("PASS EAP-MD5 accept over Access-Challenge with State echoed");

    // MS-CHAPv2 accept: the authenticator response and the MPPE keys as we compute them.
    let auth_challenge = [0x11u8; 16];
    let peer_challenge = [0x22u8; 16];
    let nt_response = pppd_lite::mschapv2::generate_nt_response_from_password(
        &auth_challenge,
        &peer_challenge,
        "alice",
        "alicepass",
    );
    let nt_hash = pppd_lite::mschapv2::nt_password_hash("alicepass");
    let expected_s = pppd_lite::mschapv2::authenticator_response_bytes(
        &nt_hash,
        &nt_response,
        &peer_challenge,
        &auth_challenge,
        "alice",
    );
    let expected_keys = pppd_lite::MppeKeys::server(&nt_hash, &nt_response);
    let mschap = |nt_response| Credentials::MsChapV2 {
        authenticator_challenge: auth_challenge,
        peer_challenge,
        nt_response,
    };
    let id = c.send_auth(Instant::now(), auth("alice", mschap(nt_response)));
    let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
    let Verdict::Accept(acc) = &a.verdict else {
        panic!("MS-CHAPv2 not accepted: {a:?}");
    };
    assert_eq!(acc.mschapv2_authenticator_response, Some(expected_s));
    let keys = acc.mppe.as_ref().expect("MPPE keys");
    assert_eq!(keys.send, expected_keys.send, "MS-MPPE-Send-Key");
    assert_eq!(keys.recv, expected_keys.recv, "MS-MPPE-Recv-Key");
    assert_eq!(a.authz.framed_ip, Some(Ipv4Addr::new(10, 9, 0, 6)));
    assert_eq!(a.authz.dns, vec![Ipv4Addr::new(10, 9, 0, 1)]);
    println!(
        "PASS MS-CHAPv2 accept: MS-CHAP2-Success matches, MPPE send/recv keys match, MS-Primary-DNS-Server"
    );

    // MS-CHAPv2 wrong password.
    let bad = pppd_lite::mschapv2::generate_nt_response_from_password(
        &auth_challenge,
        &peer_challenge,
        "alice",
        "nope",
    );
    let id = c.send_auth(Instant::now(), auth("alice", mschap(bad)));
    let a = auth_result(&drive(&mut c, &sock, id, limit), id).unwrap();
    match &a.verdict {
        // The M= text of FreeRADIUS's MS-CHAP-Error ("E=691 R=1 C=... V=3 M=Authentication
        // rejected"); PPP wraps it in its own failure text.
        Verdict::Reject { message } => assert_eq!(message, "Authentication rejected"),
        other => panic!("{other:?}"),
    }
    println!("PASS MS-CHAPv2 reject: {:?}", a.verdict);

    // Accounting Start, Interim-Update, Stop.
    let record = |status, input: u64| AcctRecord {
        status: Some(status),
        session_id: "rg-test-1".into(),
        user: "bob".into(),
        nas_port: 7,
        framed_ip: Some(Ipv4Addr::new(10, 9, 0, 5)),
        calling_station: "192.0.2.10".into(),
        called_station: "198.51.100.1".into(),
        class: vec![b"class-one".to_vec()],
        session_time_s: 30,
        input_octets: input,
        input_packets: 100,
        output_octets: 5555,
        output_packets: 50,
        terminate_cause: Some(TerminateCause::UserRequest),
        event_time: 1_700_000_000,
    };
    for (status, input) in [
        (AcctStatus::Start, 0),
        (AcctStatus::InterimUpdate, 1234),
        (AcctStatus::Stop, (3u64 << 32) + 12345),
    ] {
        let id = c.send_acct(
            Instant::now(),
            AcctRequestData {
                record: record(status, input),
                unix_now: 1_700_000_004,
            },
        );
        let events = drive(&mut c, &sock, id, limit);
        assert!(events.contains(&Event::AcctAcked { id }), "{events:?}");
    }
    let detail = server.detail();
    for want in [
        "Acct-Status-Type = Start",
        "Acct-Status-Type = Interim-Update",
        "Acct-Status-Type = Stop",
        "Acct-Input-Octets = 1234",
        "Acct-Input-Octets = 12345",
        "Acct-Input-Gigawords = 3",
        "Acct-Terminate-Cause = User-Request",
        "Acct-Session-Id = \"rg-test-1\"",
        "Acct-Delay-Time = 4",
    ] {
        assert!(
            detail.contains(want),
            "{want} not in the detail file:\n{detail}"
        );
    }
    println!(
        "PASS accounting Start/Interim-Update/Stop acknowledged; detail file has Acct-Input-Octets/Gigawords, Terminate-Cause, Delay-Time"
    );

    // Failover: a dead port first, FreeRADIUS second.
    let dead = local(free_port());
    let mut c = client_for(
        &[(dead, Role::Auth), (local(auth_port), Role::Auth)],
        Duration::from_millis(300),
        2,
    );
    let start = Instant::now();
    let id = c.send_auth(Instant::now(), auth("bob", pap("bobpass")));
    let events = drive(&mut c, &sock, id, limit);
    assert!(
        events.contains(&Event::ServerDead { addr: dead }),
        "{events:?}"
    );
    let a = auth_result(&events, id).unwrap();
    assert!(matches!(a.verdict, Verdict::Accept(_)));
    assert_eq!(a.server, local(auth_port));
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(c.is_dead(dead));
    println!(
        "PASS failover: dead first server marked dead, accepted by FreeRADIUS after {:?}",
        start.elapsed()
    );

    client_task(auth_port, acct_port);
    dynauth_with_radclient();
    drop(server);
}

/// The tokio client task: an Authenticate and an Account command through its channel.
fn client_task(auth_port: u16, acct_port: u16) {
    use roadgate::io::radius::{AcctOutcome, Command, spawn_client};
    use tokio::sync::oneshot;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = ClientConfig {
            servers: [(auth_port, Role::Auth), (acct_port, Role::Acct)]
                .into_iter()
                .map(|(port, role)| ServerConfig {
                    address: local(port),
                    secret: Zeroizing::new(SECRET.as_bytes().to_vec()),
                    role,
                })
                .collect(),
            ..ClientConfig::default()
        };
        let (tx, task) = spawn_client(config, Some(Ipv4Addr::LOCALHOST.into()))
            .await
            .unwrap();
        let (reply, rx) = oneshot::channel();
        let data = auth("bob", pap("bobpass"));
        tx.send(Command::Authenticate {
            ctx: data.ctx,
            request: data.request,
            state: None,
            reply,
        })
        .await
        .unwrap();
        let answer = rx.await.unwrap().unwrap();
        assert!(matches!(answer.verdict, Verdict::Accept(_)), "{answer:?}");
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Account {
            key: 77,
            record: AcctRecord {
                status: Some(AcctStatus::Start),
                session_id: "rg-task-1".into(),
                user: "bob".into(),
                ..AcctRecord::default()
            },
            reply,
        })
        .await
        .unwrap();
        assert_eq!(
            rx.await.unwrap(),
            AcctOutcome {
                key: 77,
                acked: true
            }
        );
        drop(tx);
        task.await.unwrap();
    });
    println!("PASS tokio client task: Authenticate (PAP accept) and Account (Start acknowledged)");
}

/// radclient sends Disconnect-Requests to the dynauth task; a known session is ACKed, an
/// unknown one NAKed with Error-Cause 503.
fn dynauth_with_radclient() {
    use roadgate::io::radius::spawn_dynauth;
    use roadgate::radius::dynauth::{DynAuth, DynAuthConfig, ErrorCause, Outcome};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let (mut rx, _local, _task) = rt
        .block_on(spawn_dynauth(
            DynAuth::new(DynAuthConfig {
                clients: vec![(
                    Ipv4Addr::LOCALHOST.into(),
                    Zeroizing::new(b"dasecret".to_vec()),
                )],
                ..DynAuthConfig::default()
            }),
            local(port),
        ))
        .unwrap();
    let _answerer = rt.spawn(async move {
        while let Some(call) = rx.recv().await {
            let outcome = if call.request.selector.acct_session_id.as_deref() == Some("rg-test-1") {
                Outcome::Ack
            } else {
                Outcome::Nak(ErrorCause::SessionContextNotFound)
            };
            let _ = call.reply.send(outcome);
        }
    });
    let run = |attrs: &str| -> String {
        let mut child = Command::new(RADCLIENT)
            .args(["-x", "-r", "2", "-t", "2"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["disconnect", "dasecret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(attrs.as_bytes()).unwrap();
        }
        // Keep the runtime turning while radclient waits.
        let out = rt.block_on(async {
            tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .unwrap()
                .unwrap()
        });
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = run("Acct-Session-Id = \"rg-test-1\", Message-Authenticator = 0x00\n");
    assert!(out.contains("Received Disconnect-ACK"), "{out}");
    println!("PASS radclient Disconnect-Request for a known session: Disconnect-ACK");
    let out = run("Acct-Session-Id = \"nosuch\"\n");
    assert!(out.contains("Received Disconnect-NAK"), "{out}");
    assert!(out.contains("Session-Context-Not-Found"), "{out}");
    println!(
        "PASS radclient Disconnect-Request for an unknown session: Disconnect-NAK, Error-Cause = Session-Context-Not-Found"
    );
    let out = run("User-Name = \"bob\", Filter-Id = \"x\"\n");
    assert!(out.contains("Received Disconnect-NAK"), "{out}");
    assert!(out.contains("Unsupported-Attribute"), "{out}");
    println!(
        "PASS radclient Disconnect-Request with an unsupported attribute: NAK, Unsupported-Attribute"
    );
}
