//! A demonstration of the web UI with the in-memory TEST FIXTURE backend (no VPN server):
//! `cargo run -p web --example demo -- 127.0.0.1:8443`, then open https://127.0.0.1:8443/ and log
//! in as `admin` / `demo-password` (the certificate is a throw-away self-signed one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::sync::Arc;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8443".into());
    let admins = web::AdminStore::open_in_memory().unwrap();
    admins.create_admin("admin", "demo-password").unwrap();
    let state = web::WebState::new(
        Arc::new(fixture::FixtureBackend::sample()),
        admins,
        web::WebConfig::default(),
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls =
        web::tls_config_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("serving https://{addr}/ (admin / demo-password)");
    web::serve(listener, tls, web::router(state), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .unwrap();
}
