//! The accounting spool survives `kill -9`: a child process (this test binary, re-executed
//! with an environment variable) writes Starts, Interim-Updates, Stops and acknowledgements as
//! fast as it can and is killed with SIGKILL in the middle. Reopening must show every record
//! it reported as written still pending exactly once, no acknowledged record back, and
//! recovery must give exactly one Stop per session left open, with the counters of its last
//! committed Interim-Update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roadgate::aaa::record::{AcctRecord, AcctStatus, TerminateCause};
use roadgate::aaa::spool::{Counters, Spool, SpoolLimits, set_counters};

const CHILD_ENV: &str = "ROADGATE_SPOOL_CRASH_DIR";

fn limits() -> SpoolLimits {
    SpoolLimits {
        max_depth: 1_000_000,
        warn_depth: 1_000_000,
        send: true,
    }
}

fn record(status: AcctStatus, session: u64, seq: u64) -> AcctRecord {
    let mut r = AcctRecord {
        status: Some(status),
        session_id: format!("sess-{session}"),
        user: format!("user{session}"),
        nas_port: u32::try_from(session).unwrap(),
        session_time_s: u32::try_from(seq).unwrap(),
        // Unique per record: lets the parent spot duplicates.
        event_time: 1_000_000 * session + seq,
        ..AcctRecord::default()
    };
    set_counters(
        &mut r,
        &Counters {
            input_octets: seq * 100,
            input_packets: seq,
            output_octets: seq * 200,
            output_packets: seq * 2,
        },
    );
    r
}

/// The child's work: never returns when run as the child (killed), returns at once otherwise.
#[test]
fn spool_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut spool = Spool::open(Path::new(&dir), limits()).unwrap();
    let mut seq = 0u64;
    for round in 0u64.. {
        // Five sessions at a time: start, three interims each, stop the even ones.
        let base = round * 5;
        for s in base..base + 5 {
            let id = spool
                .push(&record(AcctStatus::Start, s, 0))
                .unwrap()
                .unwrap();
            println!("P push {} {s}", id.0);
        }
        for _ in 0..3 {
            for s in base..base + 5 {
                seq += 1;
                let id = spool
                    .push(&record(AcctStatus::InterimUpdate, s, seq))
                    .unwrap()
                    .unwrap();
                println!("P push {} {s}", id.0);
                println!("P checkpoint {s} {seq}");
                if seq.is_multiple_of(3) {
                    println!("P acking {}", id.0);
                    spool.ack(id).unwrap();
                    println!("P ack {}", id.0);
                }
            }
        }
        for s in (base..base + 5).filter(|s| s.is_multiple_of(2)) {
            seq += 1;
            println!("P stopping {s}");
            let mut stop = record(AcctStatus::Stop, s, seq);
            stop.terminate_cause = Some(TerminateCause::UserRequest);
            let id = spool.push(&stop).unwrap().unwrap();
            println!("P push {} {s}", id.0);
            println!("P closed {s}");
        }
    }
}

fn run_child_and_kill(dir: &Path, lines_before_kill: usize) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "spool_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    // A thread reads everything the child prints, up to the end (after the kill), so that the
    // child never waits on a full pipe and no printed line is missed.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("P ") {
                    seen.lock().unwrap().push(rest.to_string());
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < lines_before_kill {
        assert!(Instant::now() < deadline, "the child wrote too little");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Child::kill is SIGKILL on Unix: no destructor, no clean close of the database.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

#[test]
fn spool_survives_sigkill() {
    for (round, lines) in [(0, 157), (1, 400), (2, 1033)] {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("rg-spool-crash-{}-{round}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let seen = run_child_and_kill(&dir, lines);
        assert!(seen.len() >= lines);

        let mut pushed = BTreeSet::new();
        let mut acked = BTreeSet::new();
        let mut acking = BTreeSet::new();
        let mut stopping = BTreeSet::new();
        let mut last_checkpoint: BTreeMap<u64, u64> = BTreeMap::new();
        let mut started = BTreeSet::new();
        let mut closed = BTreeSet::new();
        for l in &seen {
            let w: Vec<&str> = l.split(' ').collect();
            let n = |i: usize| w[i].parse::<u64>().unwrap();
            match w[0] {
                "push" => {
                    pushed.insert(n(1));
                    started.insert(n(2));
                }
                "ack" => {
                    acked.insert(n(1));
                }
                "acking" => {
                    acking.insert(n(1));
                }
                "stopping" => {
                    stopping.insert(n(1));
                }
                "checkpoint" => {
                    last_checkpoint.insert(n(1), n(2));
                }
                "closed" => {
                    closed.insert(n(1));
                }
                other => panic!("unknown line {other}"),
            }
        }

        let mut spool = Spool::open(&dir, limits()).unwrap();
        let pending = spool.pending(usize::MAX).unwrap();
        assert_eq!(spool.depth(), pending.len() as u64);
        let ids: BTreeSet<i64> = pending.iter().map(|(id, _)| id.0).collect();
        // Every reported push is there unless acked; no acked record came back. (A record
        // being acked when the child died may be either.)
        for id in &pushed {
            if acking.contains(id) && !acked.contains(id) {
                continue;
            }
            let present = ids.contains(&i64::try_from(*id).unwrap());
            assert_eq!(present, !acked.contains(id), "record {id}");
        }
        // No record twice.
        let events: BTreeSet<(u64, Option<u32>)> = pending
            .iter()
            .map(|(_, r)| (r.event_time, r.status.map(AcctStatus::code)))
            .collect();
        assert_eq!(events.len(), pending.len(), "duplicate records");

        // The last committed interim of each session, from the spool itself (acked ones
        // included through the child's report).
        let mut last_interim: BTreeMap<String, u64> = BTreeMap::new();
        for (_, r) in &pending {
            if r.status == Some(AcctStatus::InterimUpdate) {
                let e = last_interim.entry(r.session_id.clone()).or_default();
                *e = (*e).max(r.input_packets);
            }
        }
        // The exact last committed interim, from the history (it has the acked ones too).
        let mut csv = Vec::new();
        spool.export_csv(&mut csv, None).unwrap();
        let mut history_last: BTreeMap<String, u64> = BTreeMap::new();
        for line in String::from_utf8(csv).unwrap().lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f[1] == "Interim-Update" {
                history_last.insert(f[2].to_string(), f[9].parse().unwrap());
            }
        }
        let open_before: BTreeSet<String> = spool.open_sessions().unwrap().into_iter().collect();
        let stops = spool.recover(42, TerminateCause::NasReboot).unwrap();
        let stop_sessions: Vec<&str> = stops.iter().map(|r| r.session_id.as_str()).collect();
        let unique: BTreeSet<&str> = stop_sessions.iter().copied().collect();
        assert_eq!(unique.len(), stops.len(), "two Stops for one session");
        assert_eq!(
            unique,
            open_before
                .iter()
                .map(String::as_str)
                .collect::<BTreeSet<_>>()
        );
        // Sessions reported started and not closed are among them; closed ones are not. (A
        // session being stopped when the child died may be either.)
        for s in &started {
            if stopping.contains(s) && !closed.contains(s) {
                continue;
            }
            let name = format!("sess-{s}");
            assert_eq!(
                unique.contains(name.as_str()),
                !closed.contains(s),
                "session {name}"
            );
        }
        for stop in &stops {
            assert_eq!(stop.terminate_cause, Some(TerminateCause::NasReboot));
            assert_eq!(stop.status, Some(AcctStatus::Stop));
            let s: u64 = stop.session_id["sess-".len()..].parse().unwrap();
            // At least the last reported checkpoint and the last pending interim, and exactly
            // the last committed one (the history's).
            let reported = last_checkpoint.get(&s).copied().unwrap_or(0);
            assert!(stop.input_packets >= reported, "{stop:?} < {reported}");
            if let Some(committed) = last_interim.get(&stop.session_id) {
                assert!(stop.input_packets >= *committed);
            }
            let exact = history_last.get(&stop.session_id).copied().unwrap_or(0);
            assert_eq!(stop.input_packets, exact, "{stop:?}");
            assert_eq!(stop.input_octets, stop.input_packets * 100);
            assert_eq!(u64::from(stop.session_time_s), stop.input_packets);
            assert_eq!(stop.user, format!("user{s}"));
        }
        println!(
            "round {round}: killed after {} lines (asked {lines}), {} records pending, {} Stops recovered",
            seen.len(),
            pending.len(),
            stops.len()
        );
        drop(spool);
        // Recovered Stops are durable and recovery does not run twice.
        let mut spool = Spool::open(&dir, limits()).unwrap();
        assert!(
            spool
                .recover(43, TerminateCause::NasReboot)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            spool.pending(usize::MAX).unwrap().len(),
            pending.len() + stops.len()
        );
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
