//! Serving a router over HTTPS (rustls) or, when asked, plain HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no certificate in the certificate chain")]
    NoCertificate,
    #[error("certificate chain: {0}")]
    Chain(String),
    #[error("private key: {0}")]
    Key(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 512;
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The request head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long open connections get to finish after the shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A rustls server configuration (TLS 1.2 and 1.3, HTTP/1.1) from a PEM certificate chain (leaf
/// first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_config_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, ServeError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Chain(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| ServeError::Key(e.to_string()))?;
    build(chain, key)
}

/// The same from DER: the chain's certificates (leaf first) and a PKCS#8 private key.
pub fn tls_config_from_der(
    chain: Vec<Vec<u8>>,
    pkcs8_key: Vec<u8>,
) -> Result<Arc<ServerConfig>, ServeError> {
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(pkcs8_key.into());
    build(chain, key)
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, ServeError> {
    if chain.is_empty() {
        return Err(ServeError::NoCertificate);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over HTTPS on `listener` until `shutdown` completes, then lets open
/// connections finish for a few seconds. The client's address reaches the handlers as
/// `ConnectInfo<SocketAddr>` (used for the audit log and login throttling).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    run(listener, app, shutdown, move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    None
                }
                Err(_) => None,
            }
        }
    })
    .await
}

/// Serves `app` over plain HTTP. Only for tests and for a metrics listener on a private
/// address: the admin UI itself must be served with [`serve`].
pub async fn serve_plain_http(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    run(listener, app, shutdown, |tcp| async move { Some(tcp) }).await
}

async fn run<S, F, Fut>(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
    wrap: F,
) -> std::io::Result<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("web: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let stream = wrap(tcp);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(stream) = stream.await else { return };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                app.clone().oneshot(req.map(Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!("web: connection from {peer} ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {}
    }
    Ok(())
}
