//! HTTP-level tests: the router served over real HTTPS on a loopback socket, driven by a plain
//! HTTP/1.1 client, with the in-memory test fixture as the backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use hyper::StatusCode;
use support::{ADMIN, ADMIN_PASSWORD, Client, start};
use web::{LoginLimits, MetricsAccess, WebConfig};

fn config() -> WebConfig {
    WebConfig::default()
}

fn audit_actions(server: &support::TestServer) -> Vec<(String, String, String)> {
    server
        .admins
        .recent_audit(1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.target, e.result))
        .collect()
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_pages_carry_security_headers() {
    let server = start(config()).await;
    let mut c = Client::new(&server);

    let r = c.get("/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location().as_deref(), Some("/login?next=/"));

    let page = c.get("/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("data-testid=\"login-form\""));

    let r = c
        .post_raw_form(
            "/login",
            &[
                ("username", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("next", "/users"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(r.location().as_deref(), Some("/users"));
    let cookie = r.header("set-cookie").unwrap();
    let (pair, attrs) = cookie.split_once(';').unwrap();
    let token = pair.strip_prefix("__Host-roadgate=").unwrap();
    assert_eq!(token.len(), 64, "256-bit token in hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            attrs.split(';').any(|a| a.trim() == flag),
            "{flag} in {cookie}"
        );
    }

    let dash = c.get("/").await;
    assert_eq!(dash.status, StatusCode::OK);
    let html = dash.text();
    assert!(html.contains("data-testid=\"session-row\" data-session-id=\"s1\""));
    assert!(html.contains("198.51.100.7:4500"));
    assert!(html.contains("AES-256-CBC/SHA1/ECP-384"));
    // The server's checks, one line each; the panel opens when one needs a look.
    assert!(html.contains("data-testid=\"checks\""));
    assert!(html.contains("(1 to look at)"));
    assert!(html.contains("IPv4 forwarding is off: clients reach only this server"));
    assert!(html.contains("class=\"check check-warning\""));
    let csp = dash.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(dash.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(dash.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        dash.header("referrer-policy").as_deref(),
        Some("same-origin")
    );
    assert_eq!(
        dash.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    // No inline script or style anywhere in the page.
    assert!(!html.contains("<script>") && !html.contains("style="));

    let audit = audit_actions(&server);
    assert!(audit.contains(&("login".into(), ADMIN.into(), "ok".into())));
}

#[tokio::test]
async fn wrong_passwords_lock_the_account() {
    let mut cfg = config();
    cfg.login_limits = LoginLimits {
        per_account: 3,
        per_address: 100,
        base_lockout: Duration::from_secs(60),
        ..LoginLimits::default()
    };
    let server = start(cfg).await;
    let mut c = Client::new(&server);
    for i in 0..3 {
        let r = c
            .post_raw_form(
                "/login",
                &[("username", ADMIN), ("password", "not it at all")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(r.text().contains("Wrong administrator name or password"));
        assert!(r.header("set-cookie").is_none());
    }
    // Locked now, even with the right password.
    let r = c
        .post_raw_form(
            "/login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().contains("Too many failed logins"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(c.cookie.is_none());

    // An unknown name is answered the same way as a wrong password.
    let r = c
        .post_raw_form(
            "/login",
            &[("username", "ghost"), ("password", "whatever it is")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let audit = audit_actions(&server);
    let login_results: Vec<&str> = audit
        .iter()
        .filter(|(a, t, _)| a == "login" && t == ADMIN)
        .map(|(_, _, r)| r.as_str())
        .collect();
    assert!(login_results.contains(&"locked"), "{login_results:?}");
    assert!(
        login_results.contains(&"wrong password; locked for 60 s"),
        "{login_results:?}"
    );
    assert_eq!(
        login_results
            .iter()
            .filter(|r| r.starts_with("wrong password"))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_checks_are_bounded_by_the_semaphore() {
    let mut cfg = config();
    cfg.argon2_permits = 2;
    cfg.argon2_wait = Duration::from_secs(120);
    cfg.login_limits = LoginLimits {
        per_account: 1000,
        per_address: 1000,
        ..LoginLimits::default()
    };
    let server = std::sync::Arc::new(start(cfg).await);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(&server);
            let pw = if i % 3 == 0 {
                ADMIN_PASSWORD
            } else {
                "wrong guess!"
            };
            c.post_raw_form("/login", &[("username", ADMIN), ("password", pw)])
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SEE_OTHER || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    // Counted inside the blocking task around the hash: never more than the permits.
    let peak = server.state.argon2_peak();
    assert!((1..=2).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn a_login_waits_for_a_permit_then_gets_503() {
    let mut cfg = config();
    cfg.argon2_permits = 1;
    cfg.argon2_wait = Duration::from_millis(50);
    let server = start(cfg).await;
    // Every permit is taken (as by long hashes).
    let held = server
        .state
        .argon2_semaphore()
        .acquire_owned()
        .await
        .unwrap();
    let mut c = Client::new(&server);
    let r = c
        .post_raw_form(
            "/login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(server.state.argon2_peak(), 0);
    // No password was tried: not counted against the account (per_account is 5).
    for _ in 0..6 {
        let r = c
            .post_raw_form("/login", &[("username", ADMIN), ("password", "a guess")])
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    drop(held);
    c.login().await;
    assert_eq!(server.state.argon2_peak(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_are_all_counted() {
    let mut cfg = config();
    cfg.login_limits = LoginLimits {
        per_account: 3,
        per_address: 1000,
        base_lockout: Duration::from_secs(60),
        ..LoginLimits::default()
    };
    cfg.argon2_wait = Duration::from_secs(120);
    let server = std::sync::Arc::new(start(cfg).await);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(&server);
            c.post_raw_form(
                "/login",
                &[("username", ADMIN), ("password", "guess guess")],
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    // Each attempt is counted before its hash: only the first three reach a hash, however
    // they interleave; the other seven are refused as locked.
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let locked = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, locked), (3, 7), "{statuses:?}");
}

#[tokio::test]
async fn logout_ends_the_session_and_next_stays_local() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    let r = c
        .post_raw_form(
            "/login",
            &[
                ("username", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("next", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(r.location().as_deref(), Some("/"));
    let old_cookie = c.cookie.clone().unwrap();
    c.get("/").await;
    let r = c.post_form("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(c.cookie.is_none());
    c.cookie = Some(old_cookie);
    let r = c.get("/users").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the old token is dead");
    let r = c.get("/api/v1/status").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let mut cfg = config();
    cfg.session_idle = Duration::from_millis(700);
    let server = start(cfg).await;
    let mut c = Client::new(&server);
    c.login().await;
    // The dashboard's auto-refresh does not count as activity.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = c
            .send(
                "GET",
                "/sessions/table",
                &[("x-background-refresh", "1")],
                vec![],
            )
            .await;
    }
    let r = c.get("/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().unwrap().starts_with("/login"));
}

#[tokio::test]
async fn csrf_missing_or_wrong_is_refused_and_nothing_changes() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    c.login().await;
    let fields = [("name", "mallory"), ("password", "pw"), ("enabled", "on")];

    let r = c.post_raw_form("/users", &fields).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("no CSRF token"), "{}", r.text());

    let mut wrong = vec![("csrf_token", "00000000000000000000000000000000")];
    wrong.extend_from_slice(&fields);
    let r = c.post_raw_form("/users", &wrong).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("not this session"));

    // The right token from another site's page is refused by the Origin check.
    let token = c.csrf.clone().unwrap();
    let body = format!("csrf_token={token}&name=mallory&password=pw");
    let r = c
        .send(
            "POST",
            "/users",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "https://evil.example"),
            ],
            body.into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for headers in [
        [("origin", "null"), ("x-none", "")],
        [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
        [("sec-fetch-site", "same-site"), ("x-none", "")],
    ] {
        let body = format!("csrf_token={token}&name=mallory&password=pw");
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(&headers);
        let r = c.send("POST", "/users", &all, body.into_bytes()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
    }

    // The API wants the header.
    let r = c
        .send(
            "POST",
            "/api/v1/users",
            &[("content-type", "application/json")],
            br#"{"name":"mallory","password":"pw"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("CSRF"));
    let r = c
        .send(
            "POST",
            "/sessions/s1/disconnect",
            &[("x-csrf-token", "wrong")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    assert!(!server.backend.data().users.contains_key("mallory"));
    assert!(server.backend.data().disconnected.is_empty());
    assert!(audit_actions(&server).iter().any(|(a, _, _)| a == "csrf"));
}

#[tokio::test]
async fn users_round_trip_through_the_backend() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    c.login().await;
    let users = c.get("/users").await;
    assert!(users.text().contains("data-testid=\"user-form\""));

    let r = c
        .post_form(
            "/users",
            &[
                ("name", "carol"),
                ("password", "carol-secret"),
                ("static_ip", "10.0.0.9"),
                ("max_sessions", "3"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    {
        let d = server.backend.data();
        let (pw, opts) = &d.users["carol"];
        assert_eq!(pw, "carol-secret");
        assert!(opts.enabled);
        assert_eq!(opts.static_ip, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(opts.max_sessions, Some(3));
    }
    let page = c.get("/users").await.text();
    assert!(page.contains("Added the user carol."));
    assert!(page.contains("data-user=\"carol\""));

    // The backend's refusal reaches the admin as it is, and the form keeps its values.
    let r = c
        .post_form(
            "/users",
            &[
                ("name", "dave"),
                ("password", "x"),
                ("static_ip", "10.0.0.5"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .contains("the address 10.0.0.5 is already alice&#39;s")
            || r.text().contains("the address 10.0.0.5 is already alice's"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("value=\"dave\""));
    let r = c
        .post_form(
            "/users",
            &[
                ("name", "dave"),
                ("password", "x"),
                ("static_ip", "10.0.0.300"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("is not an IPv4 address"));
    assert!(!server.backend.data().users.contains_key("dave"));

    // Edit: disable, drop the static address, limit 1.
    let edit = c.get("/users/carol").await;
    assert!(edit.text().contains("data-testid=\"user-edit-form\""));
    let r = c
        .post_form("/users/carol", &[("static_ip", ""), ("max_sessions", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    {
        let d = server.backend.data();
        let opts = &d.users["carol"].1;
        assert!(!opts.enabled);
        assert_eq!(opts.static_ip, None);
        assert_eq!(opts.max_sessions, Some(1));
    }
    // A browser's own form post: Origin may be null, Sec-Fetch-Site says same-origin.
    let token = c.csrf.clone().unwrap();
    let r = c
        .send(
            "POST",
            "/users/carol/enabled",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin"),
            ],
            format!("csrf_token={token}&enabled=true").into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(server.backend.data().users["carol"].1.enabled);

    // Password reset.
    let r = c
        .post_form(
            "/users/carol/password",
            &[("password", "a"), ("password2", "b")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("The two passwords differ."));
    let r = c
        .post_form(
            "/users/carol/password",
            &[("password", "new-one"), ("password2", "new-one")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(server.backend.data().users["carol"].0, "new-one");

    // Delete: first a confirmation page, then the deletion.
    let r = c.post_form("/users/carol/delete", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("data-testid=\"confirm-form\""));
    assert!(server.backend.data().users.contains_key("carol"));
    let r = c
        .post_form("/users/carol/delete", &[("confirm", "yes")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!server.backend.data().users.contains_key("carol"));

    let actions: Vec<String> = audit_actions(&server)
        .into_iter()
        .filter(|(_, t, r)| t == "carol" && r == "ok")
        .map(|(a, _, _)| a)
        .collect();
    for a in [
        "user.add",
        "user.update",
        "user.enable",
        "user.password",
        "user.delete",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn an_issued_certificate_shows_its_password_once_and_each_file_downloads_once() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    c.login().await;
    let page = c.get("/certs").await;
    assert!(page.text().contains("data-testid=\"cert-issue-form\""));

    let r = c
        .post_form(
            "/certs",
            &[
                ("kind", "user"),
                ("common_name", "alice"),
                ("user", "alice"),
                ("validity_days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(r.location().as_deref(), Some("/certs/issued/1001"));

    let first = c.get("/certs/issued/1001").await;
    assert_eq!(first.status, StatusCode::OK);
    let html = first.text();
    assert!(
        html.contains("data-testid=\"p12-password\">Pw-1001-one-time<"),
        "{html}"
    );
    assert!(html.contains("data-testid=\"download-legacy\""));
    assert!(html.contains("data-testid=\"download-aes\""));
    assert_eq!(first.header("cache-control").as_deref(), Some("no-store"));

    let second = c.get("/certs/issued/1001").await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(!second.text().contains("Pw-1001-one-time"));
    assert!(second.text().contains("data-testid=\"p12-password-gone\""));

    // Another administrator's session does not see them.
    let mut other = Client::new(&server);
    other.login().await;
    assert_eq!(
        other.get("/certs/issued/1001/legacy.p12").await.status,
        StatusCode::NOT_FOUND
    );

    let legacy = c.get("/certs/issued/1001/legacy.p12").await;
    assert_eq!(legacy.status, StatusCode::OK);
    assert_eq!(legacy.body, b"LEGACY-P12-1001");
    assert_eq!(
        legacy.header("content-type").as_deref(),
        Some("application/x-pkcs12")
    );
    assert!(
        legacy
            .header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(
        c.get("/certs/issued/1001/legacy.p12").await.status,
        StatusCode::GONE
    );
    let aes = c.get("/certs/issued/1001/aes.p12").await;
    assert_eq!(aes.body, b"AES-P12-1001");
    assert_eq!(
        c.get("/certs/issued/1001/aes.p12").await.status,
        StatusCode::GONE
    );

    let profile = c.get("/certs/issued/1001/roadgate.mobileconfig").await;
    assert_eq!(profile.status, StatusCode::OK);
    let plist = plist::Value::from_reader_xml(std::io::Cursor::new(&profile.body)).unwrap();
    let content = plist.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap();
    let types: Vec<&str> = content
        .iter()
        .map(|p| {
            p.as_dictionary().unwrap()["PayloadType"]
                .as_string()
                .unwrap()
        })
        .collect();
    assert_eq!(
        types,
        [
            "com.apple.security.root",
            "com.apple.security.pkcs12",
            "com.apple.vpn.managed"
        ]
    );
    let p12 = content[1].as_dictionary().unwrap();
    assert_eq!(p12["PayloadContent"].as_data().unwrap(), b"LEGACY-P12-1001");
    let vpn = content[2].as_dictionary().unwrap();
    let ipsec = vpn["IPSec"].as_dictionary().unwrap();
    assert_eq!(
        ipsec["AuthenticationMethod"].as_string(),
        Some("Certificate")
    );
    assert_eq!(ipsec["PayloadCertificateUUID"], p12["PayloadUUID"]);
    assert_eq!(
        c.get("/certs/issued/1001/roadgate.mobileconfig")
            .await
            .status,
        StatusCode::GONE
    );
    assert_eq!(
        c.get("/certs/issued/1001/other.p12").await.status,
        StatusCode::NOT_FOUND
    );

    let audit = audit_actions(&server);
    assert!(audit.contains(&("cert.issue".into(), "1001 alice".into(), "ok".into())));
    for f in ["legacy.p12", "aes.p12", "roadgate.mobileconfig"] {
        assert!(
            audit.contains(&("p12.download".into(), format!("1001 {f}"), "ok".into())),
            "{f}"
        );
    }

    // Revoke with a reason (confirmed).
    let r = c
        .post_form(
            "/certs/1001/revoke",
            &[("reason", "key_compromise"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let revoked = server
        .backend
        .data()
        .certs
        .iter()
        .find(|c| c.serial == "1001")
        .unwrap()
        .revoked
        .clone();
    assert_eq!(
        revoked.unwrap().reason,
        web::RevocationReason::KeyCompromise
    );
    let crl = c.get("/certs/crl.der").await;
    assert_eq!(
        crl.header("content-type").as_deref(),
        Some("application/pkix-crl")
    );
    let ca = c.get("/certs/ca.crt").await;
    assert!(ca.text().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn issued_files_are_forgotten_after_their_time() {
    let mut cfg = config();
    cfg.p12_ttl = Duration::from_millis(500);
    let server = start(cfg).await;
    let mut c = Client::new(&server);
    c.login().await;
    let r = c
        .post_form(
            "/certs",
            &[("kind", "device"), ("common_name", "laptop-17")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        c.get("/certs/issued/1001/aes.p12").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get("/certs/issued/1001").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn disconnect_asks_first_then_calls_the_backend() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    c.login().await;
    let html = c.get("/").await.text();
    assert!(html.contains("data-testid=\"disconnect-button\" data-session-id=\"s1\""));

    let r = c.post_form("/sessions/s1/disconnect", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("data-testid=\"confirm-form\""));
    assert!(server.backend.data().disconnected.is_empty());

    let r = c
        .post_form("/sessions/s1/disconnect", &[("confirm", "yes")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(server.backend.data().disconnected, ["s1"]);
    let html = c.get("/").await.text();
    assert!(html.contains("Disconnected session s1."));
    assert!(!html.contains("data-session-id=\"s1\""));

    // The refresh fragment and the API.
    let rows = c.get("/sessions/table").await.text();
    assert!(rows.contains("data-session-id=\"s2\"") && !rows.contains("<html"));
    let r = c
        .send_json(
            "POST",
            "/api/v1/sessions/s2/disconnect",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["disconnected"], 1);
    assert_eq!(server.backend.data().disconnected, ["s1", "s2"]);
    assert!(audit_actions(&server).contains(&(
        "session.disconnect".into(),
        "s2".into(),
        "ok".into()
    )));
}

#[tokio::test]
async fn path_traversal_and_unknown_paths_are_refused() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    let css = c.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    let js = c.get("/static/app.js").await;
    assert_eq!(js.status, StatusCode::OK);
    // Every page links the icon, so a browser does not ask for a missing /favicon.ico.
    let login = c.get("/login").await;
    assert!(
        login
            .text()
            .contains(r#"<link rel="icon" href="/static/icon.svg""#)
    );
    let icon = c.get("/static/icon.svg").await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(
        icon.header("content-type").as_deref(),
        Some("image/svg+xml")
    );
    assert!(icon.text().starts_with("<svg"));

    for path in [
        "/static/../../etc/passwd",
        "/static/..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/static/%252e%252e/%252e%252e/etc/passwd",
        "/static/.%2e/.%2e/etc/passwd",
        "/static/..%5c..%5cetc%5cpasswd",
        "/static/style.css%00.txt",
        "/../../etc/passwd",
        "/certs/issued/..%2f..%2f/legacy.p12",
        "/static/passwd",
        "/etc/passwd",
        "/nope",
    ] {
        let r = c.get(path).await;
        assert!(
            r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
            "{path}: {}",
            r.status
        );
        assert!(!r.text().contains("root:"), "{path}");
    }
    c.login().await;
    // Logged in, still nothing.
    for path in [
        "/static/../../etc/passwd",
        "/users/..%2f..%2fetc%2fpasswd",
        "/nope",
    ] {
        let r = c.get(path).await;
        assert!(
            r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
            "{path}: {}",
            r.status
        );
    }
}

#[tokio::test]
async fn huge_bodies_get_413() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    let big = vec![b'a'; 100 * 1024];
    let r = c
        .send(
            "POST",
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            big.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    c.login().await;
    let token = c.csrf.clone().unwrap();
    let mut body = format!("csrf_token={token}&name=x&password=").into_bytes();
    body.extend_from_slice(&big);
    let r = c
        .send(
            "POST",
            "/users",
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = c
        .send(
            "POST",
            "/api/v1/users",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", token.as_str()),
            ],
            big,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!server.backend.data().users.contains_key("x"));
}

/// One sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Checks the text exposition format line by line; returns (family -> type, samples).
fn parse_exposition(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut types: Vec<(String, String)> = Vec::new();
    let mut helps: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "{line}");
            assert!(!help.is_empty());
            assert!(!helps.contains(&name.to_string()), "HELP twice: {name}");
            helps.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(!types.iter().any(|(n, _)| n == name), "TYPE twice: {name}");
            assert!(
                helps.last().map(String::as_str) == Some(name),
                "HELP before TYPE: {name}"
            );
            types.push((name.to_string(), kind.to_string()));
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            // name{labels} value
            let (name_labels, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match name_labels.split_once('{') {
                None => (name_labels, Vec::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                    let mut labels = Vec::new();
                    let mut chars = inner.chars().peekable();
                    while chars.peek().is_some() {
                        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                        assert!(valid_name(&key), "{line}");
                        assert_eq!(chars.next(), Some('"'), "{line}");
                        let mut val = String::new();
                        loop {
                            match chars
                                .next()
                                .unwrap_or_else(|| panic!("unterminated: {line}"))
                            {
                                '\\' => match chars.next() {
                                    Some('\\') => val.push('\\'),
                                    Some('"') => val.push('"'),
                                    Some('n') => val.push('\n'),
                                    other => panic!("bad escape {other:?} in {line}"),
                                },
                                '"' => break,
                                '\n' => panic!("raw newline"),
                                c => val.push(c),
                            }
                        }
                        labels.push((key, val));
                        match chars.next() {
                            None => break,
                            Some(',') => {}
                            Some(c) => panic!("unexpected {c} in {line}"),
                        }
                    }
                    (name, labels)
                }
            };
            assert!(valid_name(name), "{line}");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
            };
            let family = types
                .iter()
                .find(|(n, kind)| {
                    n == name
                        || (kind == "histogram"
                            && [
                                format!("{n}_bucket"),
                                format!("{n}_sum"),
                                format!("{n}_count"),
                            ]
                            .contains(&name.to_string()))
                })
                .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
            assert_eq!(
                &family.0,
                &types.last().unwrap().0,
                "samples of a family together: {line}"
            );
            samples.push((name.to_string(), labels, value));
        }
    }
    (types, samples)
}

#[tokio::test]
async fn metrics_exposition_is_well_formed_and_guarded() {
    let mut cfg = config();
    cfg.metrics = MetricsAccess::BearerToken("scrape-token".into());
    let server = start(cfg).await;
    let mut c = Client::new(&server);
    let r = c.get("/metrics").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = c
        .send(
            "GET",
            "/metrics",
            &[("authorization", "Bearer wrong")],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = c
        .send(
            "GET",
            "/metrics",
            &[("authorization", "Bearer scrape-token")],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text();
    let (types, samples) = parse_exposition(&text);
    let kind = |n: &str| types.iter().find(|(t, _)| t == n).map(|(_, k)| k.as_str());
    assert_eq!(kind("roadgate_sessions"), Some("gauge"));
    assert_eq!(kind("roadgate_connect_failures_total"), Some("counter"));
    assert_eq!(
        kind("roadgate_radius_request_duration_seconds"),
        Some("histogram")
    );
    let find = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name && label.is_none_or(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
    };
    assert_eq!(find("roadgate_sessions", None), Some(2.0));
    assert_eq!(find("roadgate_accounting_spool_records", None), Some(4.0));
    assert_eq!(
        find(
            "roadgate_connect_failures_total",
            Some(("reason", "weird \"reason\"\\\n"))
        ),
        Some(1.0),
        "label escaping round-trips"
    );
    assert_eq!(
        find(
            "roadgate_radius_timeouts_total",
            Some(("server", "10.0.0.2:1812"))
        ),
        Some(1.0)
    );
    // Histogram: cumulative buckets ending in +Inf == count.
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| n == "roadgate_radius_request_duration_seconds_bucket")
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(buckets, [2.0, 15.0, 19.0, 19.0]);
    assert_eq!(
        find(
            "roadgate_radius_request_duration_seconds_bucket",
            Some(("le", "+Inf"))
        ),
        Some(19.0)
    );
    assert_eq!(
        find("roadgate_radius_request_duration_seconds_count", None),
        Some(19.0)
    );

    // Disabled by default on the main router; the separate metrics router is unauthenticated.
    let server2 = start(config()).await;
    assert_eq!(
        Client::new(&server2).get("/metrics").await.status,
        StatusCode::NOT_FOUND
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(web::serve_plain_http(
        listener,
        web::metrics_router(server2.backend.clone(), "0.1.0".into()),
        async move {
            let _ = stopped.await;
        },
    ));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/metrics")
        .header("host", "localhost")
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let (types, _) = parse_exposition(std::str::from_utf8(&body).unwrap());
    assert!(types.iter().any(|(n, _)| n == "roadgate_build_info"));
    let _ = stop.send(());
}

#[tokio::test]
async fn openapi_lists_every_route_and_the_router_answers_every_operation() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    let r = c.get("/api/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // Every route the API has (kept by hand, beside api::routes()).
    let routes = [
        ("get", "/api/v1/session"),
        ("get", "/api/v1/status"),
        ("get", "/api/v1/sessions"),
        ("post", "/api/v1/sessions/{id}/disconnect"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{name}"),
        ("put", "/api/v1/users/{name}"),
        ("delete", "/api/v1/users/{name}"),
        ("put", "/api/v1/users/{name}/password"),
        ("get", "/api/v1/certs"),
        ("post", "/api/v1/certs"),
        ("post", "/api/v1/certs/{serial}/revoke"),
        ("get", "/api/v1/ca.pem"),
        ("get", "/api/v1/crl"),
        ("get", "/api/v1/accounting"),
        ("get", "/api/v1/accounting.csv"),
        ("get", "/api/v1/settings"),
        ("get", "/api/v1/logs"),
        ("get", "/api/v1/setup"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/openapi.json"),
    ];
    for (method, path) in routes {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        listed,
        routes.len(),
        "the document lists no route that the test does not know"
    );

    // Every documented operation is routed (answered by its handler, not the 404 fallback or
    // a 405), logged in; mutations with the CSRF header.
    c.login().await;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "s1")
                .replace("{name}", "bob")
                .replace("{serial}", "0FFF");
            let r = c
                .send_json(&method.to_uppercase(), &concrete, serde_json::json!({}))
                .await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !r.text().contains("There is no page at this address"),
                "{method} {path} fell through to the 404 page"
            );
        }
    }
}

#[tokio::test]
async fn api_users_with_session_or_token() {
    let server = start(config()).await;
    let token = server.admins.create_api_token(ADMIN, "test").unwrap();
    let mut t = Client::new(&server);
    let bearer = format!("Bearer {token}");
    let r = t
        .send(
            "GET",
            "/api/v1/users",
            &[("authorization", bearer.as_str())],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()[0]["name"], "alice");
    assert_eq!(r.json()[0]["static_ip"], "10.0.0.5");
    let r = t
        .send(
            "POST",
            "/api/v1/users",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            br#"{"name":"erin","password":"pw","max_sessions":2}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(server.backend.data().users["erin"].1.max_sessions, Some(2));
    let r = t
        .send(
            "GET",
            "/api/v1/users",
            &[("authorization", "Bearer rgw_bogus")],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let mut c = Client::new(&server);
    c.login().await;
    let s = c.get("/api/v1/session").await.json();
    assert_eq!(s["admin"], ADMIN);
    c.csrf = Some(s["csrf_token"].as_str().unwrap().to_string());
    let r = c
        .send_json(
            "PUT",
            "/api/v1/users/erin",
            serde_json::json!({ "enabled": false, "static_ip": "10.0.0.5", "max_sessions": null }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "the address 10.0.0.5 is already alice's");
    let r = c
        .send_json(
            "PUT",
            "/api/v1/users/erin",
            serde_json::json!({ "enabled": false }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(!server.backend.data().users["erin"].1.enabled);
    let r = c
        .send_json(
            "PUT",
            "/api/v1/users/erin/password",
            serde_json::json!({ "password": "n3w" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(server.backend.data().users["erin"].0, "n3w");
    let r = c
        .send_json("DELETE", "/api/v1/users/erin", serde_json::json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!server.backend.data().users.contains_key("erin"));
    let r = c
        .send_json("DELETE", "/api/v1/users/erin", serde_json::json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = c
        .send_json(
            "POST",
            "/api/v1/certs",
            serde_json::json!({ "common_name": "router-1", "kind": "device", "validity_days": 90 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let j = r.json();
    assert_eq!(j["password"], "Pw-1001-one-time");
    assert_eq!(j["p12_aes_base64"], "QUVTLVAxMi0xMDAx");
}

/// The value of a PowerShell single-quoted literal at the start of `s`, and what follows it.
fn ps_single_quoted(s: &str) -> (String, &str) {
    let quote = |c: char| matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}');
    let mut chars = s.char_indices().peekable();
    let (_, first) = chars.next().unwrap();
    assert!(quote(first), "not a single-quoted string: {s}");
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if quote(c) {
            if let Some(&(_, d)) = chars.peek()
                && quote(d)
            {
                value.push(c);
                chars.next();
                continue;
            }
            return (value, &s[i + c.len_utf8()..]);
        }
        value.push(c);
    }
    panic!("unterminated string: {s}");
}

#[tokio::test]
async fn powershell_script_quotes_hostile_values() {
    let server = start(config()).await;
    let hostile_server = "vpn.example.com'; Remove-Item C:\\ -Recurse; '";
    let hostile_psk = "a'b\u{2019}c$(whoami)`n\"d";
    {
        let mut d = server.backend.data();
        d.setup.server_name = hostile_server.into();
        d.setup.psk = Some(hostile_psk.into());
    }
    let mut c = Client::new(&server);
    c.login().await;
    let page = c.get("/setup").await.text();
    assert!(page.contains("data-testid=\"server-name-warning\""));
    assert!(page.contains("data-testid=\"download-ps1-psk\""));

    let r = c.get("/setup/roadgate-psk.ps1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-disposition")
            .unwrap()
            .contains("roadgate-psk.ps1")
    );
    let text = r.text();
    assert!(
        text.starts_with('\u{feff}'),
        "UTF-8 BOM for Windows PowerShell"
    );
    assert!(text.contains("\r\n"));
    assert!(text.contains(
        "Add-VpnConnection -Name $Name -ServerAddress $Server -TunnelType L2tp -L2tpPsk $Psk"
    ));
    assert!(text.contains("-AuthenticationMethod MSChapv2 -EncryptionLevel Required"));
    assert!(text.contains("AssumeUDPEncapsulationContextOnSendRule"));
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix}"))
            .to_string()
    };
    let server_line = line("$Server = ");
    let (server_value, rest) = ps_single_quoted(&server_line);
    assert_eq!(server_value, hostile_server);
    assert_eq!(rest, "", "nothing runs after the server name");
    let psk_line = line("$Psk = ");
    let (psk_value, rest) = ps_single_quoted(&psk_line);
    assert_eq!(psk_value, hostile_psk);
    assert_eq!(rest, "");

    let cert = c.get("/setup/roadgate-cert.ps1").await.text();
    assert!(
        !cert
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("-L2tpPsk")),
        "certificate mode passes no PSK"
    );
    assert!(cert.contains("Import-PfxCertificate") && cert.contains("Cert:\\LocalMachine\\My"));
    assert!(cert.contains("-TunnelType L2tp"));
    let (server_value, _) = ps_single_quoted(
        cert.lines()
            .find_map(|l| l.strip_prefix("$Server = "))
            .unwrap(),
    );
    assert_eq!(server_value, hostile_server);
    assert!(
        audit_actions(&server)
            .iter()
            .any(|(a, t, _)| a == "setup.download" && t == "roadgate-psk.ps1")
    );
}

#[tokio::test]
async fn mobileconfig_is_well_formed_xml_with_escaped_values() {
    let server = start(config()).await;
    let psk = "it's <&> \"quoted\"";
    server.backend.data().setup.psk = Some(psk.into());
    server.backend.data().setup.server_name = "vpn.example.com".into();
    let mut c = Client::new(&server);
    c.login().await;
    let r = c.get("/setup/roadgate.mobileconfig").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-apple-aspen-config")
    );
    let v = plist::Value::from_reader_xml(std::io::Cursor::new(&r.body)).unwrap();
    let root = v.as_dictionary().unwrap();
    assert_eq!(root["PayloadType"].as_string(), Some("Configuration"));
    let content = root["PayloadContent"].as_array().unwrap();
    let vpn = content[0].as_dictionary().unwrap();
    assert_eq!(
        vpn["PayloadType"].as_string(),
        Some("com.apple.vpn.managed")
    );
    assert_eq!(vpn["VPNType"].as_string(), Some("L2TP"));
    let ppp = vpn["PPP"].as_dictionary().unwrap();
    assert_eq!(
        ppp["CommRemoteAddress"].as_string(),
        Some("vpn.example.com")
    );
    let ipsec = vpn["IPSec"].as_dictionary().unwrap();
    assert_eq!(
        ipsec["AuthenticationMethod"].as_string(),
        Some("SharedSecret")
    );
    assert_eq!(ipsec["SharedSecret"].as_data(), Some(psk.as_bytes()));
    // UUIDs are unique.
    let uuids: std::collections::HashSet<&str> = [root, vpn]
        .iter()
        .map(|d| d["PayloadUUID"].as_string().unwrap())
        .collect();
    assert_eq!(uuids.len(), 2);

    // A server name full of XML specials still gives a well-formed document.
    server.backend.data().setup.server_name = "<a&b>\"'".into();
    let r = c.get("/setup/roadgate.mobileconfig").await;
    let v = plist::Value::from_reader_xml(std::io::Cursor::new(&r.body)).unwrap();
    let vpn = v.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap()[0]
        .clone();
    assert_eq!(
        vpn.as_dictionary().unwrap()["PPP"].as_dictionary().unwrap()["CommRemoteAddress"]
            .as_string(),
        Some("<a&b>\"'")
    );

    // Without the key shown, no PSK profile.
    server.backend.data().setup.psk = None;
    assert_eq!(
        c.get("/setup/roadgate.mobileconfig").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn read_only_pages_show_the_backend_data() {
    let server = start(config()).await;
    let mut c = Client::new(&server);
    c.login().await;
    let logs = c.get("/logs").await.text();
    assert!(
        logs.contains("<mark>reason=wrong password</mark>"),
        "{logs}"
    );
    assert!(logs.contains("class=\"level-warn\""));
    let settings = c.get("/settings").await.text();
    assert!(settings.contains("[ike]") && settings.contains("********"));
    let acct = c.get("/accounting").await.text();
    assert!(acct.contains("carol") && acct.contains("User-Request"));
    assert_eq!(
        c.get("/accounting?since=nonsense").await.status,
        StatusCode::BAD_REQUEST
    );
    let csv = c.get("/accounting.csv?since=1970-01-02").await;
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    assert!(csv.text().starts_with("time,status,user,session_id\n"));
    assert!(csv.text().contains("carol"));
    let setup = c.get("/setup").await.text();
    assert!(setup.contains("vpn.example.com") && setup.contains("s3cret-psk"));
    let audit = c.get("/audit").await.text();
    assert!(audit.contains("login"));
    let api = c.get("/api/v1/accounting?limit=1").await.json();
    assert_eq!(api[0]["status"], "Stop");
}
