//! The admin socket's server side: a Unix socket (mode 0600) where `roadgate status`,
//! `sessions`, `disconnect` and `reload` ask (protocol in [`crate::admin`]). Connections are
//! served on their own tasks; each request goes to the control loop through a channel and its
//! answer comes back the same way, so the loop never waits on a client.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::admin::{self, Request, Response};

/// One request and where its answer goes.
pub type Call = (Request, oneshot::Sender<Response>);

/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `path` (a stale socket left by a previous run is replaced; a live one is an error),
/// makes it 0600, and serves connections until the receiver is dropped. The sender returned
/// beside it feeds the same receiver (the web UI asks the control loop that way).
pub fn listen(path: &Path) -> io::Result<(mpsc::Sender<Call>, mpsc::Receiver<Call>)> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{}: another roadgate is running with this admin socket",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    info!(socket = %path.display(), "admin socket ready");
    let (tx, rx) = mpsc::channel(64);
    let more = tx.clone();
    let owned: PathBuf = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                break;
            }
            tokio::spawn(serve(stream, tx.clone()));
        }
        let _ = std::fs::remove_file(&owned);
    });
    Ok((more, rx))
}

/// Sends `req` to the control loop and waits for its answer.
pub async fn ask(calls: &mpsc::Sender<Call>, req: Request) -> Response {
    let gone = || Response::Error {
        message: "the server is shutting down".into(),
    };
    let (tx, rx) = oneshot::channel();
    if calls.send((req, tx)).await.is_err() {
        return gone();
    }
    rx.await.unwrap_or_else(|_| gone())
}

async fn serve(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(admin::MAX_REQUEST as u64 + 1);
    let answer = match tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await
    {
        Err(_) => Response::Error {
            message: "no request line within 5 s".into(),
        },
        Ok(Err(e)) => Response::Error {
            message: format!("read error: {e}"),
        },
        Ok(Ok(_)) if line.len() > admin::MAX_REQUEST => Response::Error {
            message: format!("request longer than {} bytes", admin::MAX_REQUEST),
        },
        Ok(Ok(_)) => match admin::decode_request(&line) {
            Err(e) => Response::Error { message: e },
            Ok(req) => {
                debug!(?req, "admin request");
                ask(&calls, req).await
            }
        },
    };
    let _ = write.write_all(&admin::encode_line(&answer)).await;
    let _ = write.shutdown().await;
}
