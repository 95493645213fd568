//! The admin socket's protocol, its blocking client and the admin commands' output.
//!
//! The protocol (the [`Request`] and [`Response`] JSON lines) and the printers are plain data in
//! [`roadgate_core::admin`], re-exported here; the blocking client, [`query`], which owns a
//! Unix socket, is here.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use roadgate_core::admin::*;

/// Sends `req` to the server at `socket` and reads its answer, waiting at most `timeout` for
/// each step.
pub fn query(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, String> {
    let at = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied on {at}: run as the server's user or root")
        }
        _ => format!("cannot reach the server at {at}: is `roadgate serve` running? ({e})"),
    })?;
    let timeout = timeout.max(Duration::from_millis(1));
    let set = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)));
    set.map_err(|e| format!("{at}: {e}"))?;
    let late = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("the server at {at} did not answer within {timeout:?}")
        }
        _ => format!("talking to the server at {at}: {e}"),
    };
    stream.write_all(&encode_line(req)).map_err(late)?;
    let mut reader = BufReader::new(stream.take(MAX_RESPONSE as u64 + 1));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).map_err(late)?;
    if line.is_empty() {
        return Err(format!(
            "the server at {at} closed the connection without answering"
        ));
    }
    decode_response(&line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::scratch::Scratch;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    /// A fresh socket path in a scratch folder (removed on drop).
    struct TempSocket(Scratch);
    impl TempSocket {
        fn new(tag: &str) -> Self {
            TempSocket(Scratch::new(&format!("admin-{tag}")))
        }
        fn path(&self) -> PathBuf {
            self.0.0.join("admin.sock")
        }
    }

    #[test]
    fn query_talks_to_a_unix_socket() {
        let dir = TempSocket::new("ok");
        let path = dir.path();
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line).unwrap();
            let req = decode_request(&line).unwrap();
            let mut w = stream;
            w.write_all(&encode_line(&Response::Disconnected { count: 3 }))
                .unwrap();
            req
        });
        let req = Request::Disconnect {
            target: "alice".into(),
        };
        let resp = query(&path, &req, Duration::from_secs(5)).unwrap();
        assert!(
            matches!(resp, Response::Disconnected { count: 3 }),
            "{resp:?}"
        );
        assert_eq!(server.join().unwrap(), req);
    }

    #[test]
    fn query_errors_are_plain() {
        let dir = TempSocket::new("err");
        let path = dir.path();
        let e = query(&path, &Request::Status, Duration::from_secs(1)).unwrap_err();
        assert!(e.starts_with("cannot reach the server at "), "{e}");
        assert!(e.contains("is `roadgate serve` running?"), "{e}");

        // A server that never answers.
        let listener = UnixListener::bind(&path).unwrap();
        let hold = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            std::thread::sleep(Duration::from_millis(400));
        });
        let e = query(&path, &Request::Status, Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("did not answer within"), "{e}");
        hold.join().unwrap();

        // A server that hangs up without a word, then one that answers garbage.
        for answer in [&b""[..], b"not json\n"] {
            let listener = {
                let _ = std::fs::remove_file(&path);
                UnixListener::bind(&path).unwrap()
            };
            let t = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
                s.write_all(answer).unwrap();
            });
            let e = query(&path, &Request::Status, Duration::from_secs(5)).unwrap_err();
            if answer.is_empty() {
                assert!(e.contains("closed the connection"), "{e}");
            } else {
                assert!(e.starts_with("bad answer from the server"), "{e}");
            }
            t.join().unwrap();
        }
    }

    #[test]
    fn permission_denied_is_explained() {
        // Root may connect anyway: only meaningful for other users.
        if is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = TempSocket::new("perm");
        let path = dir.path();
        let _listener = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = query(&path, &Request::Status, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
        assert!(e.contains("run as the server's user or root"), "{e}");
    }

    /// Whether this process runs as root (read from /proc, without libc calls).
    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
            })
            .unwrap_or(true)
    }
}
