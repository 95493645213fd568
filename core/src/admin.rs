//! The admin socket's protocol and the admin commands' output (the blocking client,
//! `roadgate::admin::query`, is in the `roadgate` crate).
//!
//! The server listens on a Unix socket (mode 0600, `server.admin_socket`, by default
//! `<state_dir>/admin.sock`). A client connects, writes one [`Request`] as a JSON line, and reads
//! one [`Response`] as a JSON line:
//!
//! ```text
//! → {"cmd":"disconnect","target":"alice"}
//! ← {"result":"disconnected","count":1}
//! ```
//!
//! `roadgate status`, `sessions`, `disconnect` and `reload` are `roadgate::admin::query` plus
//! the printers here.

use serde::{Deserialize, Serialize};

/// The longest request line the server reads.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The longest response line the client reads (a session table of many thousand rows fits).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// What a client asks.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Server-wide figures.
    Status,
    /// Every session.
    Sessions,
    /// End the sessions of a user (by name) or one session (by id).
    Disconnect { target: String },
    /// Read the configuration file again (as SIGHUP does).
    Reload,
    /// Figures for Prometheus (the web UI's `/metrics`).
    Metrics,
}

/// What the server answers.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(StatusInfo),
    Sessions { sessions: Vec<SessionInfo> },
    Disconnected { count: usize },
    Reloaded { summary: String },
    Metrics(Box<MetricsInfo>),
    Error { message: String },
}

/// Figures for Prometheus: the status, and counters since the start.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct MetricsInfo {
    pub status: StatusInfo,
    /// Sessions that came up.
    pub connects_total: u64,
    /// Failed connection attempts by reason (snake_case words).
    pub failures: Vec<(String, u64)>,
    /// Tunnel payload since the start, ended and live sessions together ("in": from clients).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// One entry per RADIUS server.
    pub radius: Vec<RadiusServerInfo>,
    /// Accounting records waiting in the spool.
    pub spool_depth: u64,
}

/// The figures of one RADIUS server.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RadiusServerInfo {
    /// `auth 192.0.2.2:1812` or `acct 192.0.2.2:1813`.
    pub server: String,
    pub requests: u64,
    pub timeouts: u64,
    /// (upper bound in seconds, cumulative count), without +Inf.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_secs: f64,
}

/// One session, as `roadgate sessions` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct SessionInfo {
    pub id: String,
    pub user: Option<String>,
    pub address: Option<std::net::Ipv4Addr>,
    /// The client's public address and port.
    pub client: String,
    /// When the session started (Unix seconds).
    pub since_unix: u64,
    pub state: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// The phase-1 algorithms.
    pub ike: String,
    /// The ESP algorithms.
    pub esp: String,
    /// Acct-Session-Id (RADIUS accounting, Disconnect and CoA requests).
    #[serde(default)]
    pub acct_session_id: String,
    /// How the IPsec peer authenticated: `psk` or `certificate <subject>`.
    #[serde(default)]
    pub auth: String,
}

/// How a check of `roadgate doctor` (and of the start, and the dashboard) came out.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// As it should be.
    Ok,
    /// Works, but an admin should look (e.g. no NAT rule for the pool).
    Warning,
    /// Clients will fail (e.g. UDP 500 not bound).
    Problem,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => "problem",
        }
    }
}

/// One finding of a check, in one plain line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
    /// What was checked, when the same check may run again (e.g. `radius-probe
    /// 192.0.2.5:1812`): a newer finding with the same key replaces the older one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Adds `new` to `findings`: it replaces a finding of the same key, and is left out when the
/// same finding is there already.
pub fn merge_findings(findings: &mut Vec<Finding>, new: impl IntoIterator<Item = Finding>) {
    for f in new {
        match f
            .key
            .as_ref()
            .and_then(|k| findings.iter().position(|g| g.key.as_ref() == Some(k)))
        {
            Some(i) => findings[i] = f,
            None if !findings.contains(&f) => findings.push(f),
            None => {}
        }
    }
}

impl Finding {
    /// The same finding, named by what was checked (see [`Finding::key`]).
    pub fn keyed(self, key: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            ..self
        }
    }

    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            level: Level::Ok,
            text: text.into(),
            key: None,
        }
    }
    pub fn warning(text: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            text: text.into(),
            key: None,
        }
    }
    pub fn problem(text: impl Into<String>) -> Self {
        Self {
            level: Level::Problem,
            text: text.into(),
            key: None,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<8} {}",
            format!("{}:", self.level.as_str()),
            self.text
        )
    }
}

/// Server-wide figures.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct StatusInfo {
    pub version: String,
    pub uptime_s: u64,
    pub sessions_up: usize,
    pub sessions_total: usize,
    pub ike_sas: usize,
    pub ipsec_sas: usize,
    pub pool_used: usize,
    pub pool_size: usize,
    /// Named counters, in the server's order.
    pub counters: Vec<(String, u64)>,
    /// The checks of the start and of what the server has seen since (`roadgate doctor`).
    #[serde(default)]
    pub findings: Vec<Finding>,
}

/// `value` as one JSON line (with its `\n`).
pub fn encode_line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_else(|e| {
        // Not reached with the types here (no maps with non-text keys); still one valid line.
        serde_json::to_vec(&Response::Error {
            message: format!("cannot encode the answer: {e}"),
        })
        .unwrap_or_else(|_| br#"{"result":"error","message":"cannot encode the answer"}"#.to_vec())
    });
    out.push(b'\n');
    out
}

/// The JSON text of one line, without its line end; refuses over-long, empty and non-UTF-8 lines.
fn line_text(line: &[u8], max: usize, what: &str) -> Result<String, String> {
    if line.len() > max {
        return Err(format!(
            "{what} too long ({} bytes; at most {max})",
            line.len()
        ));
    }
    let text = std::str::from_utf8(line).map_err(|_| format!("{what} is not UTF-8"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty {what}"));
    }
    Ok(text.to_owned())
}

/// Decodes one request line (total: any bytes give a request or an error).
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    let text = line_text(line, MAX_REQUEST, "request")?;
    serde_json::from_str(&text).map_err(|e| format!("bad request: {e}"))
}

/// Decodes one response line (total: any bytes give a response or an error).
pub fn decode_response(line: &[u8]) -> Result<Response, String> {
    let text = line_text(line, MAX_RESPONSE, "answer")?;
    serde_json::from_str(&text).map_err(|e| format!("bad answer from the server: {e}"))
}

/// A duration in seconds as `45s`, `3m12s`, `2h05m` or `3d04h`.
pub fn format_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `23.0 MiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Traffic in one direction: bytes, then packets.
fn traffic(bytes: u64, packets: u64) -> String {
    format!("{} ({packets} pkts)", format_bytes(bytes))
}

/// `roadgate status`: `key: value` lines.
pub fn format_status(s: &StatusInfo) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("version".into(), s.version.clone()),
        (
            "uptime".into(),
            format!("{} ({} s)", format_age(s.uptime_s), s.uptime_s),
        ),
        ("sessions up".into(), s.sessions_up.to_string()),
        ("sessions total".into(), s.sessions_total.to_string()),
        ("IKE SAs".into(), s.ike_sas.to_string()),
        ("IPsec SAs".into(), s.ipsec_sas.to_string()),
        (
            "pool".into(),
            format!("{} of {} addresses in use", s.pool_used, s.pool_size),
        ),
    ];
    rows.extend(s.counters.iter().map(|(k, v)| (k.clone(), v.to_string())));
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    if !s.findings.is_empty() {
        out.push_str("\nchecks:\n");
        for f in &s.findings {
            out.push_str(&format!("  {f}\n"));
        }
    }
    out
}

/// `-` for an empty cell.
fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// `roadgate sessions`: a table, ages counted up to `now_unix`.
pub fn format_sessions(sessions: &[SessionInfo], now_unix: u64) -> String {
    if sessions.is_empty() {
        return "no sessions\n".into();
    }
    const HEADER: [&str; 10] = [
        "ID", "USER", "ADDRESS", "CLIENT", "SINCE", "IN", "OUT", "AUTH", "IKE", "ESP",
    ];
    let rows: Vec<[String; 10]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.user.clone().unwrap_or_else(|| "-".into()),
                s.address.map_or_else(|| "-".into(), |a| a.to_string()),
                s.client.clone(),
                if s.since_unix == 0 {
                    "-".into()
                } else {
                    format_age(now_unix.saturating_sub(s.since_unix))
                },
                traffic(s.bytes_in, s.packets_in),
                traffic(s.bytes_out, s.packets_out),
                dash(&s.auth),
                dash(&s.ike),
                dash(&s.esp),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut emit = |cells: &[&str]| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    emit(&HEADER);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        emit(&cells);
    }
    out
}

/// What an admin command prints for `resp` to `req`: `Ok` for standard output (exit 0), `Err`
/// for standard error (exit 1: the server refused, or a disconnect matched nothing). `json`
/// prints the answer as the server's JSON line.
pub fn render(req: &Request, resp: &Response, json: bool, now_unix: u64) -> Result<String, String> {
    if let Response::Error { message } = resp {
        return Err(format!("the server refused: {message}"));
    }
    if json {
        return Ok(String::from_utf8_lossy(&encode_line(resp)).into_owned());
    }
    match (req, resp) {
        (Request::Status, Response::Status(s)) => Ok(format_status(s)),
        (Request::Sessions, Response::Sessions { sessions }) => {
            Ok(format_sessions(sessions, now_unix))
        }
        (Request::Disconnect { target }, Response::Disconnected { count: 0 }) => {
            Err(format!("no session matched {target:?}: nothing ended"))
        }
        (Request::Disconnect { target }, Response::Disconnected { count }) => Ok(format!(
            "{count} session{} of {target:?} ended\n",
            if *count == 1 { "" } else { "s" }
        )),
        (Request::Reload, Response::Reloaded { summary }) => {
            let mut out = format!("configuration reloaded\n{summary}");
            if !out.ends_with('\n') {
                out.push('\n');
            }
            Ok(out)
        }
        (_, other) => Err(format!(
            "unexpected answer from the server: {}",
            String::from_utf8_lossy(&encode_line(other)).trim_end()
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn sample_sessions() -> Vec<SessionInfo> {
        vec![
            SessionInfo {
                id: "7".into(),
                user: Some("alice".into()),
                address: Some("10.77.0.10".parse().unwrap()),
                client: "198.51.100.7:4500".into(),
                since_unix: 1_000_000 - 192,
                state: "up".into(),
                bytes_in: 1536,
                bytes_out: 3 * 1024 * 1024,
                packets_in: 12,
                packets_out: 2100,
                ike: "aes256/sha256/modp2048".into(),
                esp: "aes128gcm16".into(),
                acct_session_id: "5F3A000100000001".into(),
                auth: "certificate CN=alice".into(),
            },
            SessionInfo {
                id: "12".into(),
                user: None,
                address: None,
                client: "203.0.113.9:500".into(),
                since_unix: 1_000_000 - 5,
                state: "authenticating".into(),
                ..SessionInfo::default()
            },
        ]
    }

    #[test]
    fn requests_round_trip_with_the_agreed_wire_form() {
        for (req, wire) in [
            (Request::Status, r#"{"cmd":"status"}"#),
            (Request::Sessions, r#"{"cmd":"sessions"}"#),
            (
                Request::Disconnect {
                    target: "alice".into(),
                },
                r#"{"cmd":"disconnect","target":"alice"}"#,
            ),
            (Request::Reload, r#"{"cmd":"reload"}"#),
        ] {
            let line = encode_line(&req);
            assert_eq!(line, format!("{wire}\n").into_bytes());
            assert_eq!(decode_request(&line).unwrap(), req);
        }
    }

    #[test]
    fn responses_round_trip() {
        let responses = [
            Response::Status(StatusInfo {
                version: "0.1.0".into(),
                uptime_s: 3720,
                sessions_up: 1,
                sessions_total: 2,
                ike_sas: 2,
                ipsec_sas: 4,
                pool_used: 1,
                pool_size: 241,
                counters: vec![("esp_auth_failed".into(), 3)],
                findings: vec![Finding::warning("IPv4 forwarding is off")],
            }),
            Response::Sessions {
                sessions: sample_sessions(),
            },
            Response::Disconnected { count: 2 },
            Response::Reloaded {
                summary: "listen: 0.0.0.0".into(),
            },
            Response::Error {
                message: "no such thing".into(),
            },
        ];
        for resp in responses {
            let line = encode_line(&resp);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            let back = decode_response(&line).unwrap();
            assert_eq!(encode_line(&back), line);
        }
        let line = encode_line(&Response::Disconnected { count: 2 });
        assert_eq!(line, b"{\"result\":\"disconnected\",\"count\":2}\n");
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(decode_request(b"").is_err());
        assert!(decode_request(b"\n").is_err());
        assert!(
            decode_request(b"{\"cmd\":\"reboot\"}")
                .unwrap_err()
                .contains("reboot")
        );
        assert!(decode_request(b"{\"cmd\":\"disconnect\"}").is_err());
        assert!(decode_request(b"\xff\xfe").unwrap_err().contains("UTF-8"));
        let long = vec![b' '; MAX_REQUEST + 1];
        assert!(decode_request(&long).unwrap_err().contains("too long"));
        // A line end and surrounding blanks are fine.
        assert_eq!(
            decode_request(b"  {\"cmd\":\"status\"}\r\n").unwrap(),
            Request::Status
        );
    }

    proptest! {
        #[test]
        fn decode_request_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn json_like_garbage_is_total(s in "[{}\\[\\]\":,a-z0-9 ]{0,64}") {
            let _ = decode_request(s.as_bytes());
            let _ = decode_response(s.as_bytes());
        }

        #[test]
        fn disconnect_targets_round_trip(target in any::<String>()) {
            let req = Request::Disconnect { target };
            prop_assert_eq!(decode_request(&encode_line(&req)).unwrap(), req);
        }
    }

    #[test]
    fn ages_and_sizes() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(192), "3m12s");
        assert_eq!(format_age(3600 + 5 * 60 + 9), "1h05m");
        assert_eq!(format_age(3 * 86400 + 4 * 3600), "3d04h");
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(format_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn session_table() {
        let table = format_sessions(&sample_sessions(), 1_000_000);
        let expected = [
            "ID  USER   ADDRESS     CLIENT             SINCE  IN                 OUT                  AUTH                  IKE                     ESP",
            "7   alice  10.77.0.10  198.51.100.7:4500  3m12s  1.5 KiB (12 pkts)  3.0 MiB (2100 pkts)  certificate CN=alice  aes256/sha256/modp2048  aes128gcm16",
            "12  -      -           203.0.113.9:500    5s     0 B (0 pkts)       0 B (0 pkts)         -                     -                       -",
        ];
        assert_eq!(table, format!("{}\n", expected.join("\n")), "\n{table}");
        assert_eq!(format_sessions(&[], 0), "no sessions\n");
    }

    #[test]
    fn a_newer_finding_of_the_same_check_replaces_the_older() {
        let probe = |t: &str| Finding::ok(t).keyed("radius-probe 192.0.2.5:1812");
        let mut found = vec![
            Finding::ok("UDP 192.0.2.1:500 (IKE) and 4500 bound"),
            probe("RADIUS 192.0.2.5:1812: answers (9 ms) and signs its answers"),
        ];
        merge_findings(
            &mut found,
            [
                Finding::ok("UDP 192.0.2.1:500 (IKE) and 4500 bound"),
                probe("RADIUS 192.0.2.5:1812: answers (2 ms) and signs its answers"),
                Finding::warning("IPv4 forwarding is off"),
            ],
        );
        assert_eq!(
            found.iter().map(|f| f.text.as_str()).collect::<Vec<_>>(),
            [
                "UDP 192.0.2.1:500 (IKE) and 4500 bound",
                "RADIUS 192.0.2.5:1812: answers (2 ms) and signs its answers",
                "IPv4 forwarding is off",
            ]
        );
    }

    #[test]
    fn status_lines() {
        let s = StatusInfo {
            version: "0.1.0".into(),
            uptime_s: 192,
            pool_size: 241,
            pool_used: 3,
            counters: vec![("esp_replayed".into(), 4)],
            ..StatusInfo::default()
        };
        let text = format_status(&s);
        assert!(text.starts_with("version:        0.1.0\n"), "{text}");
        assert!(text.contains("uptime:         3m12s (192 s)\n"), "{text}");
        assert!(
            text.contains("pool:           3 of 241 addresses in use\n"),
            "{text}"
        );
        assert!(text.ends_with("esp_replayed:   4\n"), "{text}");
        let s = StatusInfo {
            findings: vec![
                Finding::ok("UDP 192.0.2.1:500 (IKE) and 4500 bound"),
                Finding::problem("the server certificate names nothing"),
            ],
            ..s
        };
        let text = format_status(&s);
        assert!(
            text.ends_with(
                "\nchecks:\n  ok:      UDP 192.0.2.1:500 (IKE) and 4500 bound\n  problem: the server certificate names nothing\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn rendering_and_exit_status() {
        let d = Request::Disconnect {
            target: "bob".into(),
        };
        assert!(render(&d, &Response::Disconnected { count: 0 }, false, 0).is_err());
        assert_eq!(
            render(&d, &Response::Disconnected { count: 2 }, false, 0).unwrap(),
            "2 sessions of \"bob\" ended\n"
        );
        let err = render(
            &Request::Status,
            &Response::Error {
                message: "busy".into(),
            },
            false,
            0,
        )
        .unwrap_err();
        assert!(err.contains("busy"));
        // An answer of the wrong kind is an error, not a silent success.
        assert!(
            render(
                &Request::Status,
                &Response::Disconnected { count: 1 },
                false,
                0
            )
            .is_err()
        );
        let sessions = Response::Sessions {
            sessions: sample_sessions(),
        };
        let json = render(&Request::Sessions, &sessions, true, 0).unwrap();
        assert!(json.starts_with("{\"result\":\"sessions\",\"sessions\":[{\"id\":\"7\""));
    }
}
