//! The accounting spool's own thread: every SQLite call of accounting (Starts, Stops,
//! Interim-Updates, the backlog sent to RADIUS and the acknowledgements) happens here, never
//! on the thread that forwards packets.
//!
//! The control loop talks to it through a [`SpoolThread`] handle whose calls never block:
//! session events go over a channel, and what the control loop must know at once (whether the
//! spool is full and new logins must be refused, its depth, its errors) is published in atomics
//! after every step. Interim-Updates need each session's counters, which only the control loop
//! has: when some are due, the thread asks for the counters of exactly those sessions
//! ([`SpoolThread::wanted`]) and the control loop answers ([`SpoolThread::counters`]).
//!
//! Inside, [`AcctEngine`] is the accounting manager (`aaa::accounting`) driven by the thread's
//! own current-thread tokio runtime: the backlog is polled by timer (the spool's indexed
//! next-try time), at most [`IN_FLIGHT`] records are handed to the RADIUS client at once, and
//! their outcomes are applied in one transaction. At shutdown it spools Accounting-Off and waits
//! a grace period for acknowledgements; what is left stays in the spool for the next start.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use roadgate_core::dropped;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::aaa_io::unix_now;
use super::radius::{AcctOutcome, Command};
use crate::aaa::TerminateCause;
use crate::aaa::accounting::{Accounting, SessionInfo};
use crate::aaa::spool::{Counters, SpoolId};

/// Accounting records handed to the RADIUS client at once at most.
pub const IN_FLIGHT: usize = 256;

/// How long the thread waits for the control loop's counters before it asks again.
const COUNTERS_WAIT: Duration = Duration::from_secs(5);

/// The accounting manager with its RADIUS sending. Runs on the spool thread (tests drive it
/// directly).
#[derive(Debug)]
pub struct AcctEngine {
    accounting: Accounting,
    /// The RADIUS client task, when accounting servers are configured.
    radius: Option<mpsc::Sender<Command>>,
    outcome_tx: mpsc::UnboundedSender<AcctOutcome>,
    outcome_rx: mpsc::UnboundedReceiver<AcctOutcome>,
    /// Records handed to the RADIUS client whose outcome has not come back.
    outstanding: usize,
    /// Spool failures (disk full...), counted and logged.
    spool_errors: u64,
}

impl AcctEngine {
    /// Starts accounting: the Stops of sessions a crash left open, then Accounting-On.
    pub fn start(mut accounting: Accounting, radius: Option<mpsc::Sender<Command>>) -> Self {
        match accounting.start(unix_now()) {
            Ok(stops) => {
                for s in &stops {
                    warn!(acct_session_id = %s.session_id, user = %s.user.escape_debug(), "a session was open when the server last stopped without a clean shutdown: its Stop is sent now");
                }
            }
            Err(e) => {
                error!(error = %e, "accounting spool: cannot recover the previous run's sessions")
            }
        }
        let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
        AcctEngine {
            accounting,
            radius,
            outcome_tx,
            outcome_rx,
            outstanding: 0,
            spool_errors: 0,
        }
    }

    /// The accounting manager.
    pub fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    /// The accounting manager, to drive it (tests).
    pub fn accounting_mut(&mut self) -> &mut Accounting {
        &mut self.accounting
    }

    /// The next outcome of a record sent.
    pub async fn next_outcome(&mut self) -> Option<AcctOutcome> {
        self.outcome_rx.recv().await
    }

    /// When a spooled record is next due and there is room to send it (else an outcome
    /// coming back makes room).
    pub fn spool_timeout(&self) -> Option<Instant> {
        if self.room() > 0 {
            self.accounting.spool_due()
        } else {
            None
        }
    }

    /// When the next Interim-Update is due.
    pub fn interim_timeout(&self) -> Option<Instant> {
        self.accounting.interim_timeout()
    }

    /// Both timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.interim_timeout()
            .into_iter()
            .chain(self.spool_timeout())
            .min()
    }

    /// Whether new sessions must be refused (the spool is full and the opt-in is set).
    pub fn must_block_new_sessions(&self) -> bool {
        self.accounting.must_block_new_sessions()
    }

    /// Records waiting in the spool for an acknowledgement.
    pub fn spool_depth(&self) -> u64 {
        self.accounting.spool().depth()
    }

    /// Spool failures so far.
    pub fn spool_errors(&self) -> u64 {
        self.spool_errors
    }

    /// How many more records may be handed to the RADIUS client now.
    fn room(&self) -> usize {
        let Some(radius) = self.radius.as_ref() else {
            return 0;
        };
        IN_FLIGHT
            .saturating_sub(self.outstanding)
            .min(radius.capacity())
    }

    /// A session came up: its Start.
    pub fn started(&mut self, now: Instant, info: SessionInfo) {
        if let Err(e) = self.accounting.session_started(now, unix_now(), info) {
            dropped!(self.spool_errors, error = %e, "accounting Start not spooled");
        }
    }

    /// A session ended: its Stop.
    pub fn stopped(&mut self, now: Instant, id: &str, counters: &Counters, cause: TerminateCause) {
        if let Err(e) = self
            .accounting
            .session_stopped(now, unix_now(), id, counters, cause)
        {
            dropped!(self.spool_errors, error = %e, "accounting Stop not spooled");
        }
    }

    /// The Acct-Session-Ids whose Interim-Update is due.
    pub fn due_interims(&self, now: Instant) -> Vec<String> {
        self.accounting.due_interims(now)
    }

    /// The due Interim-Updates, with the counters the control loop gave (a session it did not
    /// name has ended or is ending: skipped, its Stop comes).
    pub fn interims(&mut self, now: Instant, counters: &HashMap<String, Counters>) {
        let r = self
            .accounting
            .poll_interims(now, unix_now(), |id| counters.get(id).copied());
        if let Err(e) = r {
            dropped!(self.spool_errors, error = %e, "accounting Interim-Update not spooled");
        }
    }

    /// Hands the records that are due to the RADIUS client task; the outcomes come back
    /// through [`next_outcome`](Self::next_outcome). Touches SQLite only when a record is due
    /// and there is room.
    pub fn send(&mut self, now: Instant) {
        let room = self.room();
        let Some(radius) = self.radius.as_ref() else {
            return;
        };
        if room == 0 || !self.accounting.spool_due_at(now) {
            return;
        }
        let records = match self.accounting.poll_send(now, room.min(64)) {
            Ok(r) => r,
            Err(e) => {
                dropped!(self.spool_errors, error = %e, "accounting spool unreadable");
                return;
            }
        };
        let mut refused = Vec::new();
        for (id, record) in records {
            let (reply, answer) = oneshot::channel();
            let key = id.0 as u64;
            if radius
                .try_send(Command::Account { key, record, reply })
                .is_err()
            {
                refused.push((id, false));
                continue;
            }
            self.outstanding += 1;
            let back = self.outcome_tx.clone();
            tokio::spawn(async move {
                let outcome = answer.await.unwrap_or(AcctOutcome { key, acked: false });
                let _ = back.send(outcome);
            });
        }
        if let Err(e) = self.accounting.outcomes(now, &refused) {
            dropped!(self.spool_errors, error = %e, "accounting spool: cannot note a failed send");
        }
    }

    /// What became of a record sent, and of the others whose outcomes already wait in the
    /// channel: all applied in one spool transaction.
    pub fn acct_outcome(&mut self, now: Instant, o: AcctOutcome) {
        let mut all = vec![(SpoolId(o.key as i64), o.acked)];
        while all.len() < IN_FLIGHT {
            match self.outcome_rx.try_recv() {
                Ok(o) => all.push((SpoolId(o.key as i64), o.acked)),
                Err(_) => break,
            }
        }
        self.outstanding = self.outstanding.saturating_sub(all.len());
        if let Err(e) = self.accounting.outcomes(now, &all) {
            dropped!(self.spool_errors, error = %e, "accounting spool: cannot record the outcomes of sent records (acknowledged ones are sent again)");
        }
    }

    /// Spools Accounting-Off (clean shutdown) and waits up to `grace` for the spool's records
    /// to be acknowledged; what is left stays in the spool for the next start.
    pub async fn shutdown(&mut self, grace: Duration) {
        if let Err(e) = self.accounting.accounting_off(unix_now()) {
            error!(error = %e, "accounting spool: Accounting-Off not spooled");
        }
        if self.radius.is_none() {
            return;
        }
        let until = tokio::time::Instant::now() + grace;
        loop {
            self.send(Instant::now());
            let depth = self.spool_depth();
            if depth == 0 {
                return;
            }
            tokio::select! {
                o = self.outcome_rx.recv() => match o {
                    Some(o) => self.acct_outcome(Instant::now(), o),
                    None => return,
                },
                _ = tokio::time::sleep_until(until) => {
                    info!(records = depth, "accounting records still unacknowledged at shutdown: kept in the spool for the next start");
                    return;
                }
            }
        }
    }
}

/// What the control loop tells the spool thread.
#[derive(Debug)]
enum ToSpool {
    Started(Box<SessionInfo>),
    Stopped {
        id: String,
        counters: Counters,
        cause: TerminateCause,
    },
    Counters(HashMap<String, Counters>),
    Shutdown(Duration, oneshot::Sender<()>),
}

/// What the spool thread publishes for the control loop.
#[derive(Debug, Default)]
struct Shared {
    must_block: AtomicBool,
    depth: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn publish(&self, e: &AcctEngine) {
        self.must_block
            .store(e.must_block_new_sessions(), Ordering::Relaxed);
        self.depth.store(e.spool_depth(), Ordering::Relaxed);
        self.errors.store(e.spool_errors(), Ordering::Relaxed);
    }
}

/// The control loop's handle on the spool thread. See the module documentation.
#[derive(Debug)]
pub struct SpoolThread {
    tx: mpsc::UnboundedSender<ToSpool>,
    wants: mpsc::UnboundedReceiver<Vec<String>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SpoolThread {
    /// Starts the thread (`roadgate-spool`) with `accounting`, sending to `radius` when
    /// accounting servers are configured. Returns once the previous run's sessions are
    /// recovered and Accounting-On is spooled, so that the published state is current.
    pub fn start(
        accounting: Accounting,
        radius: Option<mpsc::Sender<Command>>,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (wants_tx, wants) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let published = shared.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("roadgate-spool".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        error!(error = %e, "accounting spool thread: no runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    let engine = AcctEngine::start(accounting, radius);
                    published.publish(&engine);
                    let _ = ready_tx.send(());
                    run(engine, rx, wants_tx, &published).await;
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the accounting spool thread did not start"))?;
        Ok(SpoolThread {
            tx,
            wants,
            shared,
            thread: Some(thread),
        })
    }

    /// A session came up: its Start.
    pub fn started(&self, info: SessionInfo) {
        self.send(ToSpool::Started(Box::new(info)));
    }

    /// A session ended: its Stop.
    pub fn stopped(&self, id: String, counters: Counters, cause: TerminateCause) {
        self.send(ToSpool::Stopped {
            id,
            counters,
            cause,
        });
    }

    /// The counters the thread asked for ([`wanted`](Self::wanted)), of the sessions that
    /// still exist.
    pub fn counters(&self, counters: HashMap<String, Counters>) {
        self.send(ToSpool::Counters(counters));
    }

    fn send(&self, m: ToSpool) {
        if self.tx.send(m).is_err() {
            error!("the accounting spool thread has stopped: accounting records are not written");
        }
    }

    /// The Acct-Session-Ids whose counters the thread needs for their Interim-Updates.
    pub async fn wanted(&mut self) -> Option<Vec<String>> {
        self.wants.recv().await
    }

    /// Whether new sessions must be refused (the spool is full and the opt-in is set).
    pub fn must_block_new_sessions(&self) -> bool {
        self.shared.must_block.load(Ordering::Relaxed)
    }

    /// Records waiting in the spool for an acknowledgement.
    pub fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Spool failures so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Spools Accounting-Off, waits up to `grace` for acknowledgements, and ends the thread.
    pub async fn shutdown(&mut self, grace: Duration) {
        let (done_tx, done) = oneshot::channel();
        if self.tx.send(ToSpool::Shutdown(grace, done_tx)).is_ok() {
            let _ = done.await;
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The thread's loop: session events, outcomes, and the timers of the backlog and the
/// Interim-Updates.
async fn run(
    mut engine: AcctEngine,
    mut rx: mpsc::UnboundedReceiver<ToSpool>,
    wants: mpsc::UnboundedSender<Vec<String>>,
    shared: &Shared,
) {
    // When the counters of due Interim-Updates were asked for and not yet given.
    let mut asked: Option<Instant> = None;
    loop {
        let interim = match asked {
            Some(at) => Some(at + COUNTERS_WAIT),
            None => engine.interim_timeout(),
        };
        let deadline = interim
            .into_iter()
            .chain(engine.spool_timeout())
            .min()
            .map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = rx.recv() => {
                let now = Instant::now();
                match m {
                    Some(ToSpool::Started(info)) => engine.started(now, *info),
                    Some(ToSpool::Stopped { id, counters, cause }) => {
                        engine.stopped(now, &id, &counters, cause);
                    }
                    Some(ToSpool::Counters(c)) => {
                        engine.interims(now, &c);
                        asked = None;
                    }
                    Some(ToSpool::Shutdown(grace, done)) => {
                        engine.shutdown(grace).await;
                        shared.publish(&engine);
                        let _ = done.send(());
                        return;
                    }
                    // The control loop is gone without a shutdown (it failed): keep what is
                    // spooled for the next start.
                    None => return,
                }
            }
            o = engine.next_outcome() => {
                if let Some(o) = o {
                    engine.acct_outcome(Instant::now(), o);
                }
            }
            _ = sleep => {
                let now = Instant::now();
                if asked.is_none_or(|at| now >= at + COUNTERS_WAIT) {
                    let due = engine.due_interims(now);
                    asked = None;
                    if !due.is_empty() {
                        // Unanswered (the control loop busy or gone): asked again later.
                        let _ = wants.send(due);
                        asked = Some(now);
                    }
                }
            }
        }
        engine.send(Instant::now());
        shared.publish(&engine);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::aaa::accounting::AccountingConfig;
    use crate::aaa::spool::{Spool, SpoolLimits};
    use crate::aaa::{AcctStatus, AuthContext};

    fn engine(radius: mpsc::Sender<Command>) -> AcctEngine {
        let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
        AcctEngine::start(
            Accounting::new(spool, AccountingConfig::default(), 1),
            Some(radius),
        )
    }

    fn reads(e: &AcctEngine) -> u64 {
        e.accounting().spool().reads()
    }

    #[tokio::test]
    async fn send_reads_the_spool_only_when_a_record_is_due_and_there_is_room() {
        let (radius, mut rx) = mpsc::channel(1);
        let mut a = engine(radius);
        let t0 = Instant::now();
        // Accounting-On is due: read once, sent.
        a.send(t0);
        assert_eq!(reads(&a), 1);
        // In flight and the channel full: passes of the loop read nothing.
        for _ in 0..100 {
            a.send(t0);
        }
        assert_eq!(reads(&a), 1);
        // A new record while there is no room: still nothing read, and no timer for it.
        a.accounting_mut().accounting_off(1).unwrap();
        a.send(t0);
        assert_eq!(reads(&a), 1);
        assert_eq!(a.poll_timeout(), None);
        // The server does not answer: the record backs off.
        let Some(Command::Account { reply, .. }) = rx.recv().await else {
            panic!("no record sent")
        };
        drop(reply);
        let o = a.next_outcome().await.expect("an outcome");
        a.acct_outcome(t0, o);
        // Room again: the Accounting-Off (due) is read and sent, the failed one is not.
        a.send(t0);
        assert_eq!(reads(&a), 2);
        let Some(Command::Account { key, record, reply }) = rx.recv().await else {
            panic!("no record sent")
        };
        assert_eq!(record.status, Some(AcctStatus::AccountingOff));
        let _ = reply.send(AcctOutcome { key, acked: true });
        let o = a.next_outcome().await.expect("an outcome");
        a.acct_outcome(t0, o);
        for _ in 0..100 {
            a.send(t0);
        }
        assert_eq!(reads(&a), 2);
        assert_eq!(a.spool_depth(), 1);
        // The timer says when the backed-off record is due; then it is read and sent again.
        let due = a.poll_timeout().unwrap();
        assert_eq!((due - t0).as_secs(), 5);
        a.send(due);
        assert_eq!(reads(&a), 3);
        let Some(Command::Account { key, record, reply }) = rx.recv().await else {
            panic!("no record sent")
        };
        assert_eq!(record.status, Some(AcctStatus::AccountingOn));
        let _ = reply.send(AcctOutcome { key, acked: true });
        let o = a.next_outcome().await.expect("an outcome");
        a.acct_outcome(due, o);
        assert_eq!(a.spool_depth(), 0);
        assert!(!a.must_block_new_sessions());
        assert_eq!(a.poll_timeout(), None);
    }

    /// The next record the fake RADIUS server gets, acknowledged.
    async fn ack_next(rx: &mut mpsc::Receiver<Command>) -> crate::aaa::AcctRecord {
        let cmd = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a record in time")
            .expect("the channel open");
        let Command::Account { key, record, reply } = cmd else {
            panic!("not an accounting record")
        };
        let _ = reply.send(AcctOutcome { key, acked: true });
        record
    }

    /// The whole way through the thread: Start, an Interim-Update with the counters the
    /// control loop gives when asked, Stop, Accounting-Off at shutdown; every record
    /// acknowledged, the published depth back to zero, the thread ended.
    #[tokio::test]
    async fn the_spool_thread_accounts_a_session_off_the_control_loop() {
        let (radius, mut rx) = mpsc::channel(16);
        let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
        let cfg = AccountingConfig {
            interim_interval: Some(Duration::from_millis(200)),
            min_interim_interval: Duration::from_millis(100),
            ..AccountingConfig::default()
        };
        let mut t = SpoolThread::start(Accounting::new(spool, cfg, 3), Some(radius)).unwrap();
        let on = ack_next(&mut rx).await;
        assert_eq!(on.status, Some(AcctStatus::AccountingOn));

        t.started(SessionInfo {
            context: AuthContext {
                acct_session_id: "S1".into(),
                ..AuthContext::default()
            },
            user: "alice".into(),
            ..SessionInfo::default()
        });
        let start = ack_next(&mut rx).await;
        assert_eq!(start.status, Some(AcctStatus::Start));
        assert_eq!(start.session_id, "S1");

        // The thread asks for S1's counters when its Interim-Update is due.
        let wanted = tokio::time::timeout(Duration::from_secs(10), t.wanted())
            .await
            .expect("asked in time")
            .expect("the thread alive");
        assert_eq!(wanted, vec!["S1".to_string()]);
        let c = Counters {
            input_octets: 1000,
            input_packets: 10,
            output_octets: 2000,
            output_packets: 20,
        };
        t.counters(HashMap::from([("S1".to_string(), c)]));
        let interim = ack_next(&mut rx).await;
        assert_eq!(interim.status, Some(AcctStatus::InterimUpdate));
        assert_eq!(interim.input_octets, 1000);
        assert_eq!(interim.output_packets, 20);

        t.stopped("S1".into(), c, TerminateCause::UserRequest);
        // Interim-Updates may still be asked for until the Stop is in; the Stop comes.
        let stop = loop {
            let r = ack_next(&mut rx).await;
            if r.status == Some(AcctStatus::Stop) {
                break r;
            }
        };
        assert_eq!(stop.session_id, "S1");

        let shut = tokio::spawn(async move {
            t.shutdown(Duration::from_secs(5)).await;
            t
        });
        let off = loop {
            let r = ack_next(&mut rx).await;
            if r.status == Some(AcctStatus::AccountingOff) {
                break r;
            }
        };
        assert_eq!(off.status, Some(AcctStatus::AccountingOff));
        let t = shut.await.unwrap();
        assert_eq!(t.depth(), 0);
        assert_eq!(t.errors(), 0);
        assert!(t.thread.is_none());
    }
}
