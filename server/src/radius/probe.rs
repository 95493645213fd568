//! A Status-Server probe (RFC 5997) of one RADIUS server, for `roadgate doctor`: does it answer,
//! how fast, and does it sign its answers (Message-Authenticator, RFC 3579 §3.2)? The packet is
//! built and checked by the sans-IO [`roadgate_core::radius::status`]; this is only the UDP
//! exchange: one query, no retransmission, the first answer with our Identifier decides.
//!
//! Note what a probe can and cannot tell:
//! - A server must have Status-Server enabled (FreeRADIUS: `status_server = yes` in the
//!   `security` section of radiusd.conf, the Debian default); one without it stays silent.
//! - A wrong shared secret usually shows as no answer: FreeRADIUS drops a Status-Server whose
//!   Message-Authenticator does not check. A server that answers anyway gives an answer whose
//!   Response Authenticator fails, reported as [`Outcome::BadAuthenticator`].
//! - "Signs its answers" is about the Status-Server answer. Stock FreeRADIUS 3.2.1 signs neither
//!   it nor its Access-Accepts; a server that signs one but not the other is possible.

use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use roadgate_core::radius::status::{StatusError, StatusQuery};
use tokio::net::UdpSocket;

use super::config::{ConfigError, RadiusConfig};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A valid answer (Access-Accept or Accounting-Response) came.
    Answered {
        /// Round-trip time.
        rtt: Duration,
        /// It carried a valid Message-Authenticator.
        signs: bool,
    },
    /// An answer came whose Response Authenticator (or Message-Authenticator) does not check:
    /// the shared secret differs.
    BadAuthenticator {
        /// Round-trip time.
        rtt: Duration,
    },
    /// An answer that checks but with another code than Access-Accept or Accounting-Response.
    UnexpectedCode {
        /// Round-trip time.
        rtt: Duration,
        /// The code.
        code: u8,
    },
    /// ICMP port unreachable: nothing listens on that port.
    Refused,
    /// Nothing within the timeout.
    NoAnswer,
    /// The probe could not be sent (no socket, no route).
    Local(String),
}

/// The result of [`probe`]: the server, the timeout used and the outcome. Its `Display` is one
/// line in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The server probed.
    pub server: SocketAddr,
    /// How long the probe waited.
    pub timeout: Duration,
    /// What it found.
    pub outcome: Outcome,
}

impl Probe {
    /// The server answered validly.
    pub fn answered(&self) -> bool {
        matches!(self.outcome, Outcome::Answered { .. })
    }

    /// The server's valid answer carried a valid Message-Authenticator.
    pub fn signs(&self) -> bool {
        matches!(self.outcome, Outcome::Answered { signs: true, .. })
    }
}

/// A duration in whole milliseconds ("2 ms") or seconds ("3 s").
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_millis(1) {
        "under 1 ms".into()
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RADIUS {}: ", self.server)?;
        match &self.outcome {
            Outcome::Answered { rtt, signs: true } => {
                write!(f, "answers ({}) and signs its answers", human(*rtt))
            }
            Outcome::Answered { rtt, signs: false } => write!(
                f,
                "answers ({}) but does not sign its answers (Message-Authenticator missing)",
                human(*rtt)
            ),
            Outcome::BadAuthenticator { rtt } => write!(
                f,
                "answers ({}) but the answer fails the Response Authenticator check: the shared secret differs",
                human(*rtt)
            ),
            Outcome::UnexpectedCode { rtt, code } => write!(
                f,
                "answers ({}) with code {code} instead of Access-Accept or Accounting-Response",
                human(*rtt)
            ),
            Outcome::Refused => write!(
                f,
                "refused (ICMP port unreachable: nothing listens on that port)"
            ),
            Outcome::NoAnswer => write!(
                f,
                "no answer within {} (down, filtered, Status-Server not enabled, or a wrong shared secret: FreeRADIUS drops a Status-Server whose Message-Authenticator does not check)",
                human(self.timeout)
            ),
            Outcome::Local(e) => write!(f, "cannot send the probe: {e}"),
        }
    }
}

/// Probes `server` with one Status-Server signed with `secret`, from `source` (any address of
/// the server's family when `None`), waiting at most `timeout`.
pub async fn probe(
    server: SocketAddr,
    secret: &[u8],
    source: Option<IpAddr>,
    timeout: Duration,
) -> Probe {
    let outcome = exchange(server, secret, source, timeout).await;
    Probe {
        server,
        timeout,
        outcome,
    }
}

/// Probes every server of a `[radius]` section (a `both` server on its authentication and its
/// accounting port), one after the other, from its `source_address`. Reads the secret files.
pub async fn probe_all(
    config: &RadiusConfig,
    timeout: Duration,
) -> Result<Vec<Probe>, ConfigError> {
    let client = config.client_config()?;
    let mut out = Vec::new();
    for s in &client.servers {
        out.push(probe(s.address, &s.secret, config.source_address, timeout).await);
    }
    Ok(out)
}

async fn exchange(
    server: SocketAddr,
    secret: &[u8],
    source: Option<IpAddr>,
    timeout: Duration,
) -> Outcome {
    let mut random = [0u8; 17];
    rand::make_rng::<rand_chacha::ChaCha20Rng>().fill_bytes(&mut random);
    let [identifier, rest @ ..] = random;
    let authenticator: [u8; 16] = rest;
    let query = match StatusQuery::new(identifier, authenticator, secret, Some("roadgate")) {
        Ok(q) => q,
        Err(e) => return Outcome::Local(e.to_string()),
    };
    let local = source.unwrap_or(match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let sock = match UdpSocket::bind((local, 0)).await {
        Ok(s) => s,
        Err(e) => return Outcome::Local(format!("bind {local}: {e}")),
    };
    // Connected: only the server's datagrams come in, and ICMP errors show on receive.
    if let Err(e) = sock.connect(server).await {
        return Outcome::Local(format!("connect {server}: {e}"));
    }
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + timeout);
    match sock.send(query.bytes()).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(e) => return Outcome::Local(format!("send to {server}: {e}")),
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let got = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Outcome::NoAnswer,
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => return Outcome::Refused,
            Ok(Err(e)) => return Outcome::Local(format!("receive from {server}: {e}")),
            Ok(Ok(n)) => buf.get(..n).unwrap_or_default(),
        };
        let rtt = start.elapsed();
        return match query.check(got, secret) {
            Ok(a) => Outcome::Answered {
                rtt,
                signs: a.signed,
            },
            Err(StatusError::NotOurs) => continue,
            Err(StatusError::Code(code)) => Outcome::UnexpectedCode { rtt, code },
            Err(StatusError::Authenticator(_)) => Outcome::BadAuthenticator { rtt },
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use roadgate_core::radius::packet::{Packet, code};

    fn probe_of(outcome: Outcome) -> Probe {
        Probe {
            server: "127.0.0.1:1812".parse().unwrap(),
            timeout: Duration::from_secs(3),
            outcome,
        }
    }

    #[test]
    fn one_line_in_plain_words() {
        let ms2 = Duration::from_millis(2);
        assert_eq!(
            probe_of(Outcome::Answered {
                rtt: ms2,
                signs: true
            })
            .to_string(),
            "RADIUS 127.0.0.1:1812: answers (2 ms) and signs its answers"
        );
        assert_eq!(
            probe_of(Outcome::Answered {
                rtt: ms2,
                signs: false
            })
            .to_string(),
            "RADIUS 127.0.0.1:1812: answers (2 ms) but does not sign its answers (Message-Authenticator missing)"
        );
        assert_eq!(
            probe_of(Outcome::Answered {
                rtt: Duration::from_micros(300),
                signs: true
            })
            .to_string(),
            "RADIUS 127.0.0.1:1812: answers (under 1 ms) and signs its answers"
        );
        assert!(
            probe_of(Outcome::NoAnswer)
                .to_string()
                .starts_with("RADIUS 127.0.0.1:1812: no answer within 3 s")
        );
        assert!(
            probe_of(Outcome::BadAuthenticator { rtt: ms2 })
                .to_string()
                .contains("the shared secret differs")
        );
    }

    /// A server that answers a Status-Server with `answer_secret`: the probe with `secret`.
    async fn against_fake(secret: &[u8], answer_secret: &'static [u8], sign: bool) -> Probe {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let q = Packet::decode(&buf[..n]).unwrap();
            assert_eq!(q.code, code::STATUS_SERVER);
            let mut a = Packet::new(code::ACCESS_ACCEPT, q.identifier);
            if sign {
                a.add_message_authenticator();
            }
            let bytes = a.encode_response(&q.authenticator, answer_secret).unwrap();
            server.send_to(&bytes, from).await.unwrap();
        });
        probe(addr, secret, None, Duration::from_secs(2)).await
    }

    #[tokio::test]
    async fn fake_servers() {
        let p = against_fake(b"s3cret", b"s3cret", true).await;
        assert!(
            matches!(p.outcome, Outcome::Answered { signs: true, .. }),
            "{p}"
        );
        assert!(p.signs());
        let p = against_fake(b"s3cret", b"s3cret", false).await;
        assert!(
            matches!(p.outcome, Outcome::Answered { signs: false, .. }),
            "{p}"
        );
        assert!(p.answered() && !p.signs());
        let p = against_fake(b"s3cret", b"other", false).await;
        assert!(matches!(p.outcome, Outcome::BadAuthenticator { .. }), "{p}");
        assert!(!p.answered());
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = probe(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            b"s3cret",
            None,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(p.outcome, Outcome::Refused, "{p}");
        assert!(p.to_string().contains("refused"));
    }
}
