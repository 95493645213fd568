//! The `roadgate` binary's configuration and admin commands, run as a person would: exit codes,
//! what they print, and that `check-config` and a refused `serve` leave nothing behind. The admin
//! commands talk to a stand-in server on a Unix socket that answers canned lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::JoinHandle;

use roadgate::admin::{self, Request, Response, SessionInfo};

const BIN: &str = env!("CARGO_BIN_EXE_roadgate");
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/roadgate.example.toml"
);

/// A fresh folder under the temp folder, removed on drop.
struct Scratch(PathBuf);
impl Scratch {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rg-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_config_summarises_a_good_file() {
    let out = run(&["check-config", "--config", EXAMPLE]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for want in [
        "listen:         0.0.0.0, :: IKE 500 NAT-T 4500",
        "pool:           10.77.0.10-10.77.0.250 (241 addresses)",
        "authentication: local users; mschapv2, pap",
        "phase 1:        aes256, aes192, aes128",
        "phase 2:        aes256gcm16",
    ] {
        assert!(stdout.contains(want), "{want:?} not in\n{stdout}");
    }
}

#[test]
fn a_bad_file_is_refused_with_exit_2_by_check_config_and_serve_alike() {
    let dir = Scratch::new("bad");
    let state = dir.0.join("state");
    let cfg = dir.write(
        "roadgate.toml",
        &format!(
            "[server]\nstate_dir = {:?}\n[ppp]\ndns = [\"8.8.8.888\"]\n",
            state.display().to_string()
        ),
    );
    let want = format!(
        "roadgate: {}: ppp.dns[0]: \"8.8.8.888\" is not an IPv4 address\n",
        cfg.display()
    );
    for cmd in ["check-config", "serve"] {
        let out = run(&[cmd, "--config", cfg.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert_eq!(text(&out.stderr), want, "{cmd}");
        assert!(!state.exists(), "{cmd} made the state folder");
    }
    // A flag's error says which flag.
    let out = run(&["check-config", "--pool", "10.77.0.0-10.77.0.9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("roadgate: ppp.pool[0] (set by --pool): "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_makes_no_state() {
    let dir = Scratch::new("nostate");
    let state = dir.0.join("st");
    let out = run(&[
        "check-config",
        "--state",
        state.to_str().unwrap(),
        "--no-tun",
        "--pool",
        "10.9.0.0/24",
        "--ppp-address",
        "10.8.0.1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("10.9.0.1-10.9.0.254 (254 addresses)"));
    assert!(text(&out.stdout).contains("data plane:     off"));
    assert!(!state.exists());
}

/// A stand-in server: answers each of `answers` to one connection, returns the requests.
fn stand_in(socket: &Path, answers: Vec<Response>) -> JoinHandle<Vec<Request>> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            BufReader::new(&stream)
                .read_until(b'\n', &mut line)
                .unwrap();
            seen.push(admin::decode_request(&line).unwrap());
            (&stream).write_all(&admin::encode_line(&answer)).unwrap();
        }
        seen
    })
}

#[test]
fn admin_commands_print_and_exit_as_documented() {
    let dir = Scratch::new("admin");
    let socket = dir.0.join("admin.sock");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = SessionInfo {
        id: "7".into(),
        user: Some("alice".into()),
        address: Some("10.77.0.10".parse().unwrap()),
        client: "198.51.100.7:4500".into(),
        since_unix: now - 3600,
        state: "up".into(),
        bytes_in: 2048,
        packets_in: 3,
        ike: "aes256/sha256/ecp256".into(),
        esp: "aes128gcm16".into(),
        ..SessionInfo::default()
    };
    let server = stand_in(
        &socket,
        vec![
            Response::Sessions {
                sessions: vec![session],
            },
            Response::Sessions { sessions: vec![] },
            Response::Disconnected { count: 0 },
            Response::Disconnected { count: 1 },
            Response::Reloaded {
                summary: "pool: 10.77.0.10-10.77.0.250".into(),
            },
            Response::Error {
                message: "not ready".into(),
            },
        ],
    );
    let s = socket.to_str().unwrap();

    let out = run(&["sessions", "--socket", s]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    let mut lines = table.lines();
    assert!(
        lines.next().unwrap().starts_with("ID  USER   ADDRESS"),
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("7   alice  10.77.0.10  198.51.100.7:4500  1h00m"),
        "{table}"
    );
    assert!(row.contains("2.0 KiB (3 pkts)"), "{table}");

    let out = run(&["sessions", "--json", "--socket", s]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "{\"result\":\"sessions\",\"sessions\":[]}\n"
    );

    let out = run(&["disconnect", "bob", "--socket", s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no session matched \"bob\""));

    let out = run(&["disconnect", "alice", "--socket", s]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "1 session of \"alice\" ended\n");

    let out = run(&["reload", "--socket", s]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "configuration reloaded\npool: 10.77.0.10-10.77.0.250\n"
    );

    let out = run(&["status", "--socket", s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the server refused: not ready"));

    assert_eq!(
        server.join().unwrap(),
        vec![
            Request::Sessions,
            Request::Sessions,
            Request::Disconnect {
                target: "bob".into()
            },
            Request::Disconnect {
                target: "alice".into()
            },
            Request::Reload,
            Request::Status,
        ]
    );
}

#[test]
fn admin_commands_find_the_socket_from_the_state_folder_or_the_config() {
    let dir = Scratch::new("find");
    let state = dir.0.join("st");
    std::fs::create_dir_all(&state).unwrap();
    let server = stand_in(
        &state.join("admin.sock"),
        vec![
            Response::Disconnected { count: 2 },
            Response::Disconnected { count: 2 },
        ],
    );
    let out = run(&["disconnect", "x", "--state", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cfg = dir.write("rg.toml", "[server]\nstate_dir = \"st\"\n");
    let out = run(&["disconnect", "x", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2 sessions of \"x\" ended\n");
    assert_eq!(server.join().unwrap().len(), 2);

    // Nobody listening: a plain error.
    let out = run(&["status", "--state", dir.0.join("none").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("roadgate: cannot reach the server at "),
        "{err}"
    );
    assert!(err.contains("is `roadgate serve` running?"), "{err}");
}

/// `roadgate accounting export --csv` writes the state folder's accounting history: a header,
/// then one line per record, oldest first; `--since` leaves older ones out; no database is an
/// error that says where it looked.
#[test]
fn accounting_export_writes_the_history_as_csv() {
    use roadgate::aaa::spool::{Spool, SpoolLimits};
    use roadgate::aaa::{AcctRecord, AcctStatus, TerminateCause};
    let dir = Scratch::new("acct");
    let missing = run(&[
        "accounting",
        "export",
        "--csv",
        "--state",
        dir.0.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("accounting.db"),
        "{}",
        text(&missing.stderr)
    );
    {
        let mut spool = Spool::open(
            &dir.0,
            SpoolLimits {
                send: false,
                ..SpoolLimits::default()
            },
        )
        .unwrap();
        let start = AcctRecord {
            status: Some(AcctStatus::Start),
            session_id: "5F00000100000001".into(),
            user: "alice, \"the admin\"".into(),
            framed_ip: Some("10.77.0.10".parse().unwrap()),
            calling_station: "198.51.100.7".into(),
            event_time: 1_000,
            ..AcctRecord::default()
        };
        spool.push(&start).unwrap();
        spool
            .push(&AcctRecord {
                status: Some(AcctStatus::Stop),
                session_time_s: 60,
                input_octets: 1280,
                input_packets: 10,
                output_octets: 5_000_000_000,
                output_packets: 3,
                terminate_cause: Some(TerminateCause::UserRequest),
                event_time: 1_060,
                ..start
            })
            .unwrap();
    }
    let out = run(&[
        "accounting",
        "export",
        "--csv",
        "--state",
        dir.0.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].contains("Start") && lines[1].contains("\"alice, \"\"the admin\"\"\""),
        "{csv}"
    );
    assert!(
        lines[2].contains("Stop")
            && lines[2].contains("1280")
            && lines[2].contains("5000000000")
            && lines[2].contains("User-Request"),
        "{csv}"
    );
    let since = run(&[
        "accounting",
        "export",
        "--csv",
        "--since",
        "1030",
        "--state",
        dir.0.to_str().unwrap(),
    ]);
    assert_eq!(
        text(&since.stdout).lines().count(),
        2,
        "{}",
        text(&since.stdout)
    );
}
