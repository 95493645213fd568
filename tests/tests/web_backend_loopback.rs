//! The web UI's backend in the server (`roadgate::io::web::ServerBackend`) against the real
//! tokio shell on loopback, with a full-chain client up: the session as the dashboard shows it,
//! a disconnect from the UI that the client sees, the metrics, and users, certificates
//! (issue, PKCS#12 in both formats, revoke, CRL) and the accounting history on a state folder.
//! The HTTP side (pages, API, CSRF, login limits) is tested in the web crate and in headless
//! Chromium (tests/netns/web_ui.sh). Unprivileged: high ports, no TUN device.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use roadgate::aaa::local::{UserOptions, UserStore};
use roadgate::io::web::{Facts, ServerBackend};
use roadgate_tests::full_client::{Args, Outcome, run};
use roadgate_tests::loopback::LoopbackServer;
use roadgate_tests::session_pair;
use web::{Backend, BackendError, CertKind, IssueRequest, RevocationReason};

const PSK: &[u8] = b"web-backend-psk";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("rg-web-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn client_args(srv: &LoopbackServer) -> Args {
    let mut a = roadgate_tests::loopback::full_client_args(srv, PSK, 9, "alice", "alice-pw");
    a.hold = Some(Duration::from_secs(60));
    a.exit_after_up = false;
    a
}

#[test]
fn the_servers_backend_drives_sessions_users_and_certificates() {
    // The recent-log ring, as `roadgate serve` installs it.
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(roadgate::logring::RingLayer)
            .try_init();
    }
    let dir = TempDir::new("backend");
    let state = dir.0.clone();
    let sock = state.join("admin.sock");
    let users = UserStore::in_memory().unwrap();
    users
        .add("alice", "alice-pw", &UserOptions::default())
        .unwrap();
    let sessions = session_pair::server(
        session_pair::pool(10, 20),
        vec![pppd_lite::AuthProtocol::MsChapV2],
    );
    let (calls_tx, calls_rx) = std::sync::mpsc::channel();
    let srv = LoopbackServer::start(PSK, false, move |shell| {
        let shell = shell
            .with_sessions(
                sessions,
                users,
                roadgate::dataplane::Config {
                    tun: false,
                    ..roadgate::dataplane::Config::default()
                },
            )?
            .with_admin_socket(&sock)?;
        calls_tx.send(shell.admin_calls().unwrap()).unwrap();
        Ok(shell)
    });
    let calls = calls_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    ca::Ca::init(&state, &ca::InitParams::new("Web test CA")).unwrap();
    let facts = Facts {
        local_address: Some(Ipv4Addr::new(10, 77, 0, 1)),
        ..Facts::default()
    };
    let backend = ServerBackend::open(calls, &state, facts, Vec::new()).unwrap();

    // A client that stays up until the UI ends it.
    let args = client_args(&srv);
    let (tx, rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut lines = Vec::new();
        let outcome = rt.block_on(run(&args, std::future::pending(), &mut |l: &str| {
            lines.push(l.to_owned())
        }));
        tx.send((outcome, lines)).unwrap();
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The session as the dashboard lists it.
        let mut up = None;
        for _ in 0..100 {
            let list = backend.sessions().await.unwrap();
            if let Some(s) = list.into_iter().find(|s| s.state == "up") {
                up = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let s = up.expect("the client's session shows as up");
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert!(s.address.is_some_and(|a| a.octets()[3] >= 10));
        assert!(s.client.starts_with("127.0.0.9:"), "{}", s.client);
        assert_eq!(s.auth, "psk");
        assert!(!s.ike.is_empty() && !s.esp.is_empty(), "{s:?}");

        let status = backend.status().await.unwrap();
        assert_eq!((status.sessions_up, status.pool_used), (1, 1));
        let m = backend.metrics().await.unwrap();
        assert_eq!((m.sessions_up, m.connects_total), (1, 1));
        assert!(
            m.connect_failures
                .iter()
                .any(|(r, _)| r == "ppp_auth_rejected")
        );

        // A user name is not a session id: nothing ends.
        assert_eq!(backend.disconnect("alice").await.unwrap(), 0);
        assert_eq!(backend.disconnect(&s.id).await.unwrap(), 1);
        assert!(
            backend
                .sessions()
                .await
                .unwrap()
                .iter()
                .all(|x| x.id != s.id)
        );
        assert!(
            backend
                .recent_logs(500)
                .await
                .unwrap()
                .iter()
                .any(|l| l.message.contains("disconnected from the web UI")),
        );

        // Users on the state folder's database.
        let opts = web::UserOptions {
            static_ip: Some(Ipv4Addr::new(10, 77, 0, 30)),
            ..web::UserOptions::default()
        };
        backend
            .add_user("carol", "carol-pass-1", &opts)
            .await
            .unwrap();
        assert!(matches!(
            backend
                .add_user("carol", "x-password", &web::UserOptions::default())
                .await,
            Err(BackendError::Refused(_))
        ));
        let taken = backend
            .add_user("dave", "dave-pass-1", &opts)
            .await
            .unwrap_err();
        assert!(taken.to_string().contains("carol"), "{taken}");
        let own = web::UserOptions {
            static_ip: Some(Ipv4Addr::new(10, 77, 0, 1)),
            ..web::UserOptions::default()
        };
        assert!(matches!(
            backend.add_user("erin", "erin-pass-1", &own).await,
            Err(BackendError::Refused(_))
        ));
        let list = backend.list_users().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].static_ip, Some(Ipv4Addr::new(10, 77, 0, 30)));
        backend
            .update_user(
                "carol",
                &web::UserOptions {
                    enabled: false,
                    static_ip: None,
                    max_sessions: Some(2),
                },
            )
            .await
            .unwrap();
        let list = backend.list_users().await.unwrap();
        assert!(!list[0].enabled);
        assert_eq!(list[0].max_sessions, Some(2));
        assert!(matches!(
            backend.set_password("nobody", "whatever-1").await,
            Err(BackendError::NotFound(_))
        ));
        backend.set_password("carol", "carol-pass-2").await.unwrap();
        let db = UserStore::open(&state).unwrap();
        assert!(db.find("carol").unwrap().is_some());
        backend.delete_user("carol").await.unwrap();
        assert!(backend.list_users().await.unwrap().is_empty());

        // Certificates from the state folder's CA.
        let issued = backend
            .issue_cert(&IssueRequest {
                common_name: "carol".into(),
                kind: CertKind::User,
                user: None,
                validity_days: 30,
            })
            .await
            .unwrap();
        assert!(issued.password.len() >= 12);
        assert!(!issued.p12_legacy.is_empty() && !issued.p12_aes.is_empty());
        assert_ne!(issued.p12_legacy, issued.p12_aes);
        assert!(matches!(
            backend
                .issue_cert(&IssueRequest {
                    common_name: "vpn".into(),
                    kind: CertKind::Server,
                    user: None,
                    validity_days: 30,
                })
                .await,
            Err(BackendError::Refused(_))
        ));
        assert!(matches!(
            backend
                .issue_cert(&IssueRequest {
                    common_name: "x".into(),
                    kind: CertKind::Device,
                    user: None,
                    validity_days: 0,
                })
                .await,
            Err(BackendError::Refused(_))
        ));
        let certs = backend.list_certs().await.unwrap();
        let c = certs.iter().find(|c| c.serial == issued.serial).unwrap();
        assert_eq!((c.kind, c.user.as_deref()), (CertKind::User, Some("carol")));
        assert!(c.revoked.is_none());
        backend
            .revoke_cert(&issued.serial, RevocationReason::KeyCompromise)
            .await
            .unwrap();
        assert!(matches!(
            backend
                .revoke_cert(&issued.serial, RevocationReason::KeyCompromise)
                .await,
            Err(BackendError::Refused(_))
        ));
        assert!(matches!(
            backend
                .revoke_cert("00ff", RevocationReason::Unspecified)
                .await,
            Err(BackendError::NotFound(_))
        ));
        let certs = backend.list_certs().await.unwrap();
        let c = certs.iter().find(|c| c.serial == issued.serial).unwrap();
        assert_eq!(
            c.revoked.as_ref().map(|r| r.reason),
            Some(RevocationReason::KeyCompromise)
        );
        // The CRL lists it, signed by the CA.
        let crl = backend.crl_der().await.unwrap();
        let pem = backend.ca_cert_pem().await.unwrap();
        let mut store = ca::TrustStore::new();
        store
            .add_anchor_der(&ca::certs_from_pem(&pem).unwrap()[0])
            .unwrap();
        store.add_crl_der(&crl).unwrap();

        // The accounting history (none configured here: empty, but readable).
        assert!(backend.accounting(None, 10).await.unwrap().is_empty());
        let csv = backend.accounting_csv(None).await.unwrap();
        assert!(csv.starts_with("time,status,session_id"), "{csv}");
    });

    let (outcome, lines) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("client ended");
    client.join().unwrap();
    assert!(
        matches!(outcome, Outcome::Down { .. }),
        "the client saw the disconnect: {outcome:?} {lines:#?}"
    );
    srv.stop();
}
