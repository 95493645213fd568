//! The accounting manager: turns session events into accounting records, schedules the
//! Interim-Updates, writes every record to the [`Spool`] before anything may send it, and hands
//! out what to send.
//!
//! Sans-IO apart from the spool's file: no clocks, no sockets. Time comes in as `Instant`
//! (scheduling) and as seconds since the Unix epoch (the records' Event-Timestamp); the RADIUS
//! client that sends is the caller's. The cycle:
//!
//! 1. [`Accounting::start`] after the server starts: Stops for the sessions the previous run
//!    left open (see [`Spool::recover`]), then an Accounting-On.
//! 2. [`Accounting::session_started`], [`Accounting::poll_interims`] (at
//!    [`Accounting::poll_timeout`]) and [`Accounting::session_stopped`] as sessions come and go.
//! 3. [`Accounting::poll_send`] gives the records to send; each ends in [`Accounting::sent_ok`]
//!    (removed from the spool) or [`Accounting::send_failed`] (tried again after a back-off
//!    that doubles up to [`AccountingConfig::retry_max`]; a record is never dropped).
//! 4. [`Accounting::accounting_off`] at a clean shutdown, after the sessions' Stops.
//!
//! Accounting never blocks or ends a session: a spool error is returned for the caller to log
//! and the session goes on. Only with [`AccountingConfig::block_new_sessions_when_full`] set
//! does [`Accounting::must_block_new_sessions`] say to refuse new sessions while the spool is
//! full.
//!
//! Records a server has not acknowledged are handed out again after a restart (the spool makes
//! every pending record due when it opens): a record can reach a server twice, never zero times.
//!
//! When a record is due is kept in the spool (`next_try`, Unix milliseconds): a record handed
//! out is leased (not due for [`IN_FLIGHT_LEASE`]), a failed one is due after its back-off.
//! The earliest due time is cached here, so that [`Accounting::poll_send`] touches SQLite only
//! when something is due and [`Accounting::poll_timeout`] can say when that is: a new record is
//! due at once; after a poll the cache is the spool's earliest `next_try` (one index lookup); a
//! failure lowers it to the record's retry time. The cache may be early (a record acknowledged
//! meanwhile: one query finds nothing), never late.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tracing::warn;

use super::record::{AcctRecord, AcctStatus, AuthContext, TerminateCause};
use super::spool::{Counters, Spool, SpoolError, SpoolId, set_counters};

/// How long a record handed out by [`Accounting::poll_send`] is not handed out again while its
/// outcome is awaited. Longer than any RADIUS client's retries; should an outcome be lost, the
/// record is sent again after it (a duplicate at worst, never a loss).
pub const IN_FLIGHT_LEASE: Duration = Duration::from_secs(600);

/// Settings of the accounting manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountingConfig {
    /// Interim-Update interval when RADIUS gives none; `None`: no Interim-Updates.
    pub interim_interval: Option<Duration>,
    /// Shortest interval accepted (RFC 2869 §5.16 says not less than 60 s); shorter ones,
    /// from RADIUS or the configuration, are raised to it.
    pub min_interim_interval: Duration,
    /// First retry delay after a failed send.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Acct-Terminate-Cause of the Stops made at start for sessions the previous run left open.
    pub crash_cause: TerminateCause,
    /// Opt-in: refuse new sessions while the spool is full (see
    /// [`Accounting::must_block_new_sessions`]).
    pub block_new_sessions_when_full: bool,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig {
            interim_interval: None,
            min_interim_interval: Duration::from_secs(60),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            crash_cause: TerminateCause::NasReboot,
            block_new_sessions_when_full: false,
        }
    }
}

/// What accounting needs to know of a new session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Acct-Session-Id (`acct_session_id`), NAS-Port, Calling- and Called-Station-Id.
    pub context: AuthContext,
    /// User-Name as authenticated.
    pub user: String,
    /// Framed-IP-Address.
    pub framed_ip: Option<Ipv4Addr>,
    /// Class attributes from the Access-Accept.
    pub class: Vec<Vec<u8>>,
    /// Acct-Interim-Interval from RADIUS; `None` takes the configured one.
    pub interim_interval: Option<Duration>,
}

#[derive(Debug)]
struct Session {
    info: SessionInfo,
    started: Instant,
    interval: Option<Duration>,
    next_interim: Option<Instant>,
}

/// The accounting manager (see the module documentation).
#[derive(Debug)]
pub struct Accounting {
    spool: Spool,
    cfg: AccountingConfig,
    rng: ChaCha20Rng,
    sessions: HashMap<String, Session>,
    /// The instant and Unix milliseconds of the same moment: maps `Instant`s to `next_try`.
    origin: (Instant, i64),
    /// The earliest `next_try` of the pending records, Unix milliseconds (never later than the
    /// truth; `i64::MIN` after a record was written: due now); `None`: none pending.
    next_due: Option<i64>,
}

impl Accounting {
    /// A manager writing to `spool`. `seed` drives the interval jitter (give a random one in
    /// the server, a fixed one in tests).
    pub fn new(spool: Spool, cfg: AccountingConfig, seed: u64) -> Self {
        Accounting {
            cfg,
            rng: ChaCha20Rng::seed_from_u64(seed),
            sessions: HashMap::new(),
            origin: (Instant::now(), unix_ms()),
            // The spool may hold records from the previous run, all due at start.
            next_due: (spool.depth() > 0).then_some(i64::MIN),
            spool,
        }
    }

    /// `now` as Unix milliseconds (rounded up, so that a time computed from it is never before
    /// the instant it stands for).
    fn ms(&self, now: Instant) -> i64 {
        let (at, ms) = self.origin;
        let up = |d: Duration| i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX);
        let down = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match now.checked_duration_since(at) {
            Some(d) => ms.saturating_add(up(d)),
            None => ms.saturating_sub(down(at - now)),
        }
    }

    /// The instant of Unix milliseconds `ms` (at or after it).
    fn instant(&self, ms: i64) -> Instant {
        let (at, origin) = self.origin;
        let d = ms.saturating_sub(origin);
        let abs = Duration::from_millis(d.unsigned_abs());
        if d >= 0 {
            at.checked_add(abs).unwrap_or(at)
        } else {
            at.checked_sub(abs).unwrap_or(at)
        }
    }

    /// Notes that a record was written (`Some` id): it is due now.
    fn wrote(
        &mut self,
        r: Result<Option<SpoolId>, SpoolError>,
    ) -> Result<Option<SpoolId>, SpoolError> {
        if matches!(r, Ok(Some(_))) {
            self.next_due = Some(i64::MIN);
        }
        r
    }

    /// When the earliest spooled record is due (a past instant when one is due now), `None`
    /// when none is pending. No SQLite.
    pub fn spool_due(&self) -> Option<Instant> {
        self.next_due.map(|ms| self.instant(ms))
    }

    /// Whether a spooled record is due at `now`. No SQLite.
    pub fn spool_due_at(&self, now: Instant) -> bool {
        self.next_due.is_some_and(|ms| ms <= self.ms(now))
    }

    /// The spool (depth, export).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// After the server started: spools a Stop (with the configured crash cause) for every
    /// session the previous run left open, then an Accounting-On. Returns the Stops.
    pub fn start(&mut self, unix_now: u64) -> Result<Vec<AcctRecord>, SpoolError> {
        let stops = self.spool.recover(unix_now, self.cfg.crash_cause)?;
        let on = self
            .spool
            .push(&server_record(AcctStatus::AccountingOn, unix_now));
        self.wrote(on)?;
        if !stops.is_empty() && self.spool.depth() > 0 {
            self.next_due = Some(i64::MIN);
        }
        Ok(stops)
    }

    /// At a clean shutdown, after the sessions' Stops: spools an Accounting-Off.
    pub fn accounting_off(&mut self, unix_now: u64) -> Result<Option<SpoolId>, SpoolError> {
        let r = self
            .spool
            .push(&server_record(AcctStatus::AccountingOff, unix_now));
        self.wrote(r)
    }

    /// Whether new sessions must be refused: only when the opt-in
    /// [`AccountingConfig::block_new_sessions_when_full`] is set and the spool is full.
    pub fn must_block_new_sessions(&self) -> bool {
        self.cfg.block_new_sessions_when_full && self.spool.is_full()
    }

    /// A session started: spools its Start (which also records it as open) and schedules its
    /// Interim-Updates.
    pub fn session_started(
        &mut self,
        now: Instant,
        unix_now: u64,
        info: SessionInfo,
    ) -> Result<Option<SpoolId>, SpoolError> {
        let interval = info
            .interim_interval
            .or(self.cfg.interim_interval)
            .filter(|d| !d.is_zero())
            .map(|d| d.max(self.cfg.min_interim_interval));
        let session = Session {
            next_interim: interval.map(|d| now + self.jitter(d)),
            interval,
            started: now,
            info,
        };
        let mut rec = session_record(&session, AcctStatus::Start, now, unix_now);
        rec.session_time_s = 0;
        let id = session.info.context.acct_session_id.clone();
        self.sessions.insert(id, session);
        let r = self.spool.push(&rec);
        self.wrote(r)
    }

    /// A session ended: spools its Stop with the final counters and `cause` (which also
    /// closes it in the open-session table). An unknown session id is logged and ignored.
    pub fn session_stopped(
        &mut self,
        now: Instant,
        unix_now: u64,
        session_id: &str,
        counters: &Counters,
        cause: TerminateCause,
    ) -> Result<Option<SpoolId>, SpoolError> {
        let Some(session) = self.sessions.remove(session_id) else {
            warn!(session = %session_id.escape_debug(), "accounting: Stop for an unknown session ignored");
            return Ok(None);
        };
        let mut rec = session_record(&session, AcctStatus::Stop, now, unix_now);
        set_counters(&mut rec, counters);
        rec.terminate_cause = Some(cause);
        let r = self.spool.push(&rec);
        self.wrote(r)
    }

    /// Spools an Interim-Update for every session whose time has come, with the counters
    /// `counters` gives for it (`None`: none this time, e.g. the session is going; it is
    /// skipped), and schedules the next. Returns the records written; a full spool refuses Interim-Updates
    /// (logged by the spool) and the others go on. Other spool errors end the round.
    pub fn poll_interims(
        &mut self,
        now: Instant,
        unix_now: u64,
        mut counters: impl FnMut(&str) -> Option<Counters>,
    ) -> Result<usize, SpoolError> {
        let due = self.due_interims(now);
        if due.is_empty() {
            return Ok(0);
        }
        let mut records = Vec::new();
        for id in due {
            let interval = self.sessions.get(&id).and_then(|s| s.interval);
            let jittered = interval.map(|d| self.jitter(d));
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            // Rescheduled even when no counters come, so that the caller is not woken at once.
            session.next_interim = jittered.map(|j| now + j);
            let Some(c) = counters(&id) else { continue };
            let mut rec = session_record(session, AcctStatus::InterimUpdate, now, unix_now);
            set_counters(&mut rec, &c);
            records.push(rec);
        }
        if records.is_empty() {
            return Ok(0);
        }
        // One transaction (one disk sync) for the round.
        let (written, spooled) = self.spool.batch(|b| {
            let (mut written, mut spooled) = (0, false);
            for rec in &records {
                match b.push(rec) {
                    Ok(id) => {
                        written += 1;
                        spooled |= id.is_some();
                    }
                    Err(SpoolError::Full { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((written, spooled))
        })?;
        if spooled {
            self.next_due = Some(i64::MIN);
        }
        Ok(written)
    }

    /// When [`Accounting::poll_interims`] or [`Accounting::poll_send`] next has work: the
    /// earliest Interim-Update or spooled record due (a past instant when a record is due now,
    /// e.g. just written). `None`: nothing scheduled. No SQLite.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.interim_timeout()
            .into_iter()
            .chain(self.spool_due())
            .min()
    }

    /// The Acct-Session-Ids whose Interim-Update is due at `now` (what
    /// [`poll_interims`](Self::poll_interims) will ask counters for), in order. No SQLite.
    pub fn due_interims(&self, now: Instant) -> Vec<String> {
        let mut due: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.next_interim.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        due.sort();
        due
    }

    /// When the earliest Interim-Update is due.
    pub fn interim_timeout(&self) -> Option<Instant> {
        self.sessions.values().filter_map(|s| s.next_interim).min()
    }

    /// Up to `limit` records to send now, earliest due first: those not in flight and not
    /// waiting out a back-off. Touches SQLite only when something is due (see the module
    /// documentation); then reads only due rows. Each is counted as a try and leased for
    /// [`IN_FLIGHT_LEASE`] in one transaction, and is in flight until [`Accounting::sent_ok`]
    /// or [`Accounting::send_failed`].
    pub fn poll_send(
        &mut self,
        now: Instant,
        limit: usize,
    ) -> Result<Vec<(SpoolId, AcctRecord)>, SpoolError> {
        if limit == 0 || !self.spool_due_at(now) {
            return Ok(Vec::new());
        }
        let now_ms = self.ms(now);
        let out = self.spool.due(now_ms, limit)?;
        if !out.is_empty() {
            let lease = now_ms.saturating_add(ms_of(IN_FLIGHT_LEASE));
            self.spool.batch(|b| {
                for (id, _) in &out {
                    b.note_try(*id, Some(lease))?;
                }
                Ok(())
            })?;
        }
        self.next_due = self.spool.earliest_due()?;
        Ok(out)
    }

    /// A server acknowledged the record: it leaves the spool for good.
    pub fn sent_ok(&mut self, id: SpoolId) -> Result<(), SpoolError> {
        self.outcomes(Instant::now(), &[(id, true)])
    }

    /// Every server failed for this record: it stays in the spool and is handed out again
    /// after a back-off (`retry_base`, doubled at each try, at most `retry_max`).
    pub fn send_failed(&mut self, now: Instant, id: SpoolId) -> Result<(), SpoolError> {
        self.outcomes(now, &[(id, false)])
    }

    /// Several outcomes at once (`true`: acknowledged, removed; `false`: failed, backed off),
    /// in one transaction. On an error none is applied: the acknowledged records stay pending
    /// (sent again after their lease: a duplicate, not a loss).
    pub fn outcomes(
        &mut self,
        now: Instant,
        outcomes: &[(SpoolId, bool)],
    ) -> Result<(), SpoolError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now_ms = self.ms(now);
        let (base, max) = (ms_of(self.cfg.retry_base), ms_of(self.cfg.retry_max));
        let earliest = self.spool.batch(|b| {
            let mut earliest: Option<i64> = None;
            for &(id, acked) in outcomes {
                if acked {
                    b.ack(id)?;
                } else if let Some(at) = b.retry_later(id, now_ms, base, max)? {
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                }
            }
            Ok(earliest)
        })?;
        if let Some(ms) = earliest {
            self.next_due = Some(self.next_due.map_or(ms, |d| d.min(ms)));
        }
        if self.spool.depth() == 0 {
            self.next_due = None;
        }
        Ok(())
    }

    /// Sessions being accounted.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// `d` moved by a random amount within ±10 %.
    fn jitter(&mut self, d: Duration) -> Duration {
        // A uniform factor in [0.9, 1.1] with 1/10000 steps.
        let step = self.rng.next_u32() % 2001;
        let millis = d.as_millis().saturating_mul(9000 + u128::from(step)) / 10_000;
        Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// Now as Unix milliseconds.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration in milliseconds.
fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An Accounting-On or -Off.
fn server_record(status: AcctStatus, unix_now: u64) -> AcctRecord {
    let name = match status {
        AcctStatus::AccountingOff => "off",
        _ => "on",
    };
    AcctRecord {
        status: Some(status),
        session_id: format!("accounting-{name}-{unix_now}"),
        event_time: unix_now,
        ..AcctRecord::default()
    }
}

/// A session's record without counters.
fn session_record(s: &Session, status: AcctStatus, now: Instant, unix_now: u64) -> AcctRecord {
    let secs = now.saturating_duration_since(s.started).as_secs();
    AcctRecord {
        status: Some(status),
        session_id: s.info.context.acct_session_id.clone(),
        user: s.info.user.clone(),
        nas_port: s.info.context.nas_port,
        framed_ip: s.info.framed_ip,
        calling_station: s.info.context.calling_station.clone(),
        called_station: s.info.context.called_station.clone(),
        class: s.info.class.clone(),
        session_time_s: u32::try_from(secs).unwrap_or(u32::MAX),
        terminate_cause: None,
        event_time: unix_now,
        ..AcctRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aaa::spool::SpoolLimits;

    fn info(id: &str, interval: Option<u64>) -> SessionInfo {
        SessionInfo {
            context: AuthContext {
                nas_port: 3,
                calling_station: "203.0.113.5".into(),
                called_station: "198.51.100.1".into(),
                acct_session_id: id.into(),
            },
            user: "bob".into(),
            framed_ip: Some(Ipv4Addr::new(10, 9, 0, 3)),
            class: vec![b"gold".to_vec()],
            interim_interval: interval.map(Duration::from_secs),
        }
    }

    fn manager(cfg: AccountingConfig, max: u64) -> Accounting {
        let spool = Spool::in_memory(SpoolLimits {
            max_depth: max,
            warn_depth: max,
            send: true,
        })
        .unwrap();
        Accounting::new(spool, cfg, 7)
    }

    fn c(n: u64) -> Counters {
        Counters {
            input_octets: n,
            input_packets: n / 10,
            output_octets: 2 * n,
            output_packets: n / 5,
        }
    }

    fn statuses(a: &mut Accounting, now: Instant) -> Vec<(SpoolId, AcctStatus)> {
        a.poll_send(now, 100)
            .unwrap()
            .into_iter()
            .map(|(id, r)| (id, r.status.unwrap()))
            .collect()
    }

    #[test]
    fn life_of_a_session() {
        let t0 = Instant::now();
        let mut a = manager(AccountingConfig::default(), 1000);
        assert!(a.start(1000).unwrap().is_empty());
        a.session_started(t0, 1000, info("s1", Some(100))).unwrap();
        let sent = statuses(&mut a, t0);
        assert_eq!(
            sent.iter().map(|x| x.1).collect::<Vec<_>>(),
            [AcctStatus::AccountingOn, AcctStatus::Start]
        );
        // In flight: not handed out twice.
        assert!(a.poll_send(t0, 100).unwrap().is_empty());
        for (id, _) in &sent {
            a.sent_ok(*id).unwrap();
        }
        // The first interim is due within 90..110 s.
        let due = a.poll_timeout().unwrap();
        let d = due - t0;
        assert!(
            d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
            "{d:?}"
        );
        assert_eq!(
            a.poll_interims(due - Duration::from_millis(1), 1089, |_| Some(c(1)))
                .unwrap(),
            0
        );
        assert_eq!(a.poll_interims(due, 1100, |_| Some(c(500))).unwrap(), 1);
        let p = a.poll_send(due, 10).unwrap();
        assert_eq!(p.len(), 1);
        let r = &p[0].1;
        assert_eq!(r.status, Some(AcctStatus::InterimUpdate));
        assert_eq!((r.input_octets, r.output_octets), (500, 1000));
        assert_eq!(u64::from(r.session_time_s), d.as_secs());
        assert_eq!(r.class, vec![b"gold".to_vec()]);
        a.sent_ok(p[0].0).unwrap();
        let next = a.poll_timeout().unwrap() - due;
        assert!(next >= Duration::from_secs(90) && next <= Duration::from_secs(110));
        let end = t0 + Duration::from_secs(250);
        a.session_stopped(end, 1250, "s1", &c(900), TerminateCause::UserRequest)
            .unwrap();
        assert_eq!(a.sessions(), 0);
        // No more interims; the Stop just written is due at once.
        assert_eq!(a.interim_timeout(), None);
        assert!(a.poll_timeout().unwrap() <= end);
        let p = a.poll_send(end, 10).unwrap();
        let stop = &p[0].1;
        assert_eq!(stop.status, Some(AcctStatus::Stop));
        assert_eq!(stop.session_time_s, 250);
        assert_eq!(stop.input_octets, 900);
        assert_eq!(stop.terminate_cause, Some(TerminateCause::UserRequest));
        assert_eq!(stop.event_time, 1250);
        a.sent_ok(p[0].0).unwrap();
        a.accounting_off(1300).unwrap();
        assert_eq!(statuses(&mut a, end)[0].1, AcctStatus::AccountingOff);
        assert!(a.spool().open_sessions().unwrap().is_empty());
        // Unknown sessions are ignored.
        assert_eq!(
            a.session_stopped(end, 1, "nope", &c(0), TerminateCause::UserRequest)
                .unwrap(),
            None
        );
    }

    #[test]
    fn intervals_config_minimum_and_none() {
        let t0 = Instant::now();
        let cfg = AccountingConfig {
            interim_interval: Some(Duration::from_secs(600)),
            ..AccountingConfig::default()
        };
        let mut a = manager(cfg, 1000);
        a.session_started(t0, 1, info("cfg", None)).unwrap();
        let d = a.interim_timeout().unwrap() - t0;
        assert!(d >= Duration::from_secs(540) && d <= Duration::from_secs(660));
        // RADIUS's 10 s is raised to the 60 s minimum.
        let mut a = manager(AccountingConfig::default(), 1000);
        a.session_started(t0, 1, info("short", Some(10))).unwrap();
        let d = a.interim_timeout().unwrap() - t0;
        assert!(
            d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
            "{d:?}"
        );
        // No counters this time: skipped, and not due again at once.
        let at = a.interim_timeout().unwrap();
        assert_eq!(a.poll_interims(at, 2, |_| None).unwrap(), 0);
        assert!(a.interim_timeout().unwrap() > at);
        // No interval anywhere: no interims.
        let mut a = manager(AccountingConfig::default(), 1000);
        a.session_started(t0, 1, info("none", None)).unwrap();
        a.session_started(t0, 1, info("zero", Some(0))).unwrap();
        assert_eq!(a.interim_timeout(), None);
        assert_eq!(
            a.poll_interims(t0 + Duration::from_secs(9999), 2, |_| Some(c(1)))
                .unwrap(),
            0
        );
    }

    #[test]
    fn jitter_is_deterministic_and_spread() {
        let t0 = Instant::now();
        let due = |seed| {
            let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
            let mut a = Accounting::new(spool, AccountingConfig::default(), seed);
            (0..50)
                .map(|i| {
                    a.session_started(t0, 1, info(&format!("s{i}"), Some(1000)))
                        .unwrap();
                    a.sessions[&format!("s{i}")].next_interim.unwrap() - t0
                })
                .collect::<Vec<_>>()
        };
        let a = due(1);
        assert_eq!(a, due(1));
        assert_ne!(a, due(2));
        assert!(
            a.iter()
                .all(|d| *d >= Duration::from_secs(900) && *d <= Duration::from_secs(1100))
        );
        assert!(a.iter().any(|d| *d < Duration::from_secs(980)));
        assert!(a.iter().any(|d| *d > Duration::from_secs(1020)));
    }

    #[test]
    fn failed_sends_back_off_and_are_never_dropped() {
        let t0 = Instant::now();
        let mut a = manager(AccountingConfig::default(), 1000);
        a.session_started(t0, 1, info("s", None)).unwrap();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            let p = a.poll_send(now, 10).unwrap();
            assert_eq!(p.len(), 1);
            a.send_failed(now, p[0].0).unwrap();
            assert!(a.poll_send(now, 10).unwrap().is_empty());
            let at = a.poll_timeout().unwrap();
            waits.push((at - now).as_secs());
            now = at;
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        let p = a.poll_send(now, 10).unwrap();
        assert_eq!(a.spool().tries(p[0].0).unwrap(), Some(10));
        a.sent_ok(p[0].0).unwrap();
        assert_eq!(a.spool().depth(), 0);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn spool_is_read_only_when_a_record_is_due() {
        let t0 = Instant::now();
        let mut a = manager(AccountingConfig::default(), 1000);
        // Nothing spooled: no read, no timeout.
        assert!(a.poll_send(t0, 10).unwrap().is_empty());
        assert_eq!((a.spool().reads(), a.poll_timeout()), (0, None));
        for i in 0..3 {
            a.session_started(t0, 1, info(&format!("s{i}"), None))
                .unwrap();
        }
        // Written: due at once.
        assert!(a.poll_timeout().unwrap() <= t0);
        let p = a.poll_send(t0, 10).unwrap();
        assert_eq!((p.len(), a.spool().reads()), (3, 1));
        // In flight, then all failed in one transaction: nothing due for 5 s, and polling
        // meanwhile (as the shell does after every pass) reads nothing.
        let failed: Vec<_> = p.iter().map(|(id, _)| (*id, false)).collect();
        a.outcomes(t0, &failed).unwrap();
        for ms in [0, 1000, 4990] {
            let now = t0 + Duration::from_millis(ms);
            assert!(!a.spool_due_at(now));
            assert!(a.poll_send(now, 10).unwrap().is_empty());
        }
        assert_eq!(a.spool().reads(), 1);
        let due = a.poll_timeout().unwrap();
        assert_eq!((due - t0).as_secs(), 5);
        // A new record is due at once, and the backlog is not: only it is read.
        a.session_started(t0 + Duration::from_secs(1), 2, info("new", None))
            .unwrap();
        let p = a.poll_send(t0 + Duration::from_secs(1), 10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.session_id, "new");
        a.sent_ok(p[0].0).unwrap();
        // At the retry time the three come back; acknowledged together.
        let p = a.poll_send(due, 10).unwrap();
        assert_eq!(p.len(), 3);
        let acked: Vec<_> = p.iter().map(|(id, _)| (*id, true)).collect();
        a.outcomes(due, &acked).unwrap();
        assert_eq!(a.spool().depth(), 0);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn poll_send_limits_and_skips() {
        let t0 = Instant::now();
        let mut a = manager(AccountingConfig::default(), 1000);
        for i in 0..5 {
            a.session_started(t0, 1, info(&format!("s{i}"), None))
                .unwrap();
        }
        let first = a.poll_send(t0, 2).unwrap();
        assert_eq!(first.len(), 2);
        a.send_failed(t0, first[0].0).unwrap();
        let next = a.poll_send(t0, 2).unwrap();
        assert_eq!(
            next.iter()
                .map(|x| x.1.session_id.as_str())
                .collect::<Vec<_>>(),
            ["s2", "s3"]
        );
        assert!(a.poll_send(t0, 0).unwrap().is_empty());
    }

    #[test]
    fn full_spool_and_the_opt_in_block() {
        let t0 = Instant::now();
        let mut a = manager(AccountingConfig::default(), 2);
        a.session_started(t0, 1, info("a", Some(60))).unwrap();
        a.session_started(t0, 1, info("b", Some(60))).unwrap();
        assert!(a.spool().is_full());
        assert!(!a.must_block_new_sessions());
        // Interims refused, the round goes on, Stops kept.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(a.poll_interims(later, 2, |_| Some(c(1))).unwrap(), 0);
        a.session_stopped(later, 3, "a", &c(5), TerminateCause::IdleTimeout)
            .unwrap()
            .unwrap();
        assert_eq!(a.spool().depth(), 3);
        let cfg = AccountingConfig {
            block_new_sessions_when_full: true,
            ..AccountingConfig::default()
        };
        let mut b = manager(cfg, 1);
        assert!(!b.must_block_new_sessions());
        b.session_started(t0, 1, info("a", None)).unwrap();
        assert!(b.must_block_new_sessions());
    }

    #[test]
    fn start_recovers_open_sessions_before_accounting_on() {
        let t0 = Instant::now();
        let dir = std::env::temp_dir().join(format!("rg-acct-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let spool = Spool::open(&dir, SpoolLimits::default()).unwrap();
            let mut a = Accounting::new(spool, AccountingConfig::default(), 1);
            a.start(10).unwrap();
            a.session_started(t0, 10, info("x", Some(60))).unwrap();
            a.poll_interims(t0 + Duration::from_secs(70), 80, |_| Some(c(777)))
                .unwrap();
            // Dropped without a Stop: as after kill -9.
        }
        let spool = Spool::open(&dir, SpoolLimits::default()).unwrap();
        let mut a = Accounting::new(spool, AccountingConfig::default(), 1);
        let stops = a.start(500).unwrap();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].input_octets, 777);
        assert_eq!(stops[0].terminate_cause, Some(TerminateCause::NasReboot));
        let all: Vec<_> = statuses(&mut a, t0).into_iter().map(|x| x.1).collect();
        assert_eq!(
            all,
            [
                AcctStatus::AccountingOn,
                AcctStatus::Start,
                AcctStatus::InterimUpdate,
                AcctStatus::Stop,
                AcctStatus::AccountingOn
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
