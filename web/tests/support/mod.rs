//! Test harness: the web UI served over real HTTPS on a loopback socket (certificate made by
//! rcgen), the fixture backend behind it, and a small HTTP/1.1 client that sends paths exactly
//! as written (no normalisation of `..`) and keeps the session cookie by hand.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fixture;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub use fixture::FixtureBackend;
use web::{AdminStore, WebConfig, WebState};

pub const ADMIN: &str = "root";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub backend: Arc<FixtureBackend>,
    pub admins: AdminStore,
    /// The server's state (counters of the password checks).
    pub state: WebState,
    pub connector: tokio_rustls::TlsConnector,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A CA and a `localhost` certificate signed by it: (CA DER, chain PEM, key PEM).
fn test_pki() -> (CertificateDer<'static>, String, String) {
    let ca = fixture::self_signed_ca("web test CA");
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    (ca.der().clone(), leaf.pem(), leaf_key.serialize_pem())
}

/// Starts the UI with the sample fixture, one admin, and `config`.
pub async fn start(config: WebConfig) -> TestServer {
    start_with(config, Arc::new(FixtureBackend::sample())).await
}

pub async fn start_with(config: WebConfig, backend: Arc<FixtureBackend>) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let admins = AdminStore::open(&dir.path().join("web.db")).unwrap();
    admins.create_admin(ADMIN, ADMIN_PASSWORD).unwrap();
    let state = WebState::new(backend.clone(), admins.clone(), config);
    let (ca_der, chain_pem, key_pem) = test_pki();
    let tls = web::tls_config_from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(web::serve(
        listener,
        tls,
        web::router(state.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestServer {
        addr,
        backend,
        admins,
        state,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client_config)),
        stop: Some(stop),
        _dir: dir,
    }
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    pub fn location(&self) -> Option<String> {
        self.header("location")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A browser-like client: one cookie, sent back by hand.
pub struct Client<'a> {
    pub server: &'a TestServer,
    pub cookie: Option<String>,
    /// The CSRF token of the last page that had one.
    pub csrf: Option<String>,
}

impl<'a> Client<'a> {
    pub fn new(server: &'a TestServer) -> Client<'a> {
        Client {
            server,
            cookie: None,
            csrf: None,
        }
    }

    /// Sends one request on a fresh TLS connection; `path` goes on the wire as written.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let tcp = TcpStream::connect(self.server.addr).await.unwrap();
        let tls = self
            .server
            .connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.server.addr.port()));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c.as_str());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let resp = Resp {
            status,
            headers,
            body,
        };
        if let Some(set) = resp.header("set-cookie") {
            let pair = set.split(';').next().unwrap().to_string();
            if pair.ends_with('=') {
                self.cookie = None;
            } else {
                self.cookie = Some(pair);
            }
        }
        if let Some(token) = find_csrf(&resp.text()) {
            self.csrf = Some(token);
        }
        resp
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, &[], Vec::new()).await
    }

    /// POSTs a urlencoded form as written (add `csrf_token` yourself, or use `post_form`).
    pub async fn post_raw_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.into_bytes(),
        )
        .await
    }

    /// POSTs a urlencoded form with this session's CSRF token.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let token = self.csrf.clone().expect("no CSRF token seen yet");
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw_form(path, &all).await
    }

    /// Sends JSON with the CSRF header.
    pub async fn send_json(&mut self, method: &str, path: &str, body: serde_json::Value) -> Resp {
        let token = self.csrf.clone().unwrap_or_default();
        self.send(
            method,
            path,
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", token.as_str()),
            ],
            body.to_string().into_bytes(),
        )
        .await
    }

    /// Logs in as the test admin; panics if that fails.
    pub async fn login(&mut self) {
        let r = self
            .post_raw_form(
                "/login",
                &[
                    ("username", ADMIN),
                    ("password", ADMIN_PASSWORD),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        assert!(self.cookie.is_some());
        let page = self.get("/").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(self.csrf.is_some());
    }
}

/// The value of the first `name="csrf_token" value="..."` in a page.
pub fn find_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf_token\" value=\"")?;
    let rest = &html[at + "name=\"csrf_token\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_string())
}
