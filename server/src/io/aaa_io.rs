//! The AAA side of the shell: the authentication chain's tasks, accounting (the durable
//! manager fed by session events, its records sent through the RADIUS client task), and
//! dynamic authorization requests applied to the sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::auth::Backends;
use super::radius::{AcctOutcome, Command, DynAuthCall};
use crate::aaa::accounting::{Accounting, SessionInfo};
use crate::aaa::spool::{Counters, SpoolId};
use crate::aaa::{AcctRecord, AuthContext, TerminateCause};
use crate::dataplane::Gateway;
use crate::l2tp::SessionRef;
use roadgate_core::dropped;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Accounting records sent to RADIUS at once at most.
const IN_FLIGHT: usize = 256;

/// What [`Aaa::next`] gives.
#[derive(Debug)]
pub enum Incoming {
    /// A record's outcome (`None`: the channel closed, which it does not while `Aaa` lives).
    Acct(Option<AcctOutcome>),
    /// A Disconnect or CoA request (`None`: the dynamic authorization task ended).
    DynAuth(Option<DynAuthCall>),
}

/// The AAA state the shell keeps.
#[derive(Debug)]
pub struct Aaa {
    pub backends: Arc<Backends>,
    /// RADIUS State of EAP conversations, per session.
    pub eap_states: HashMap<SessionRef, Vec<u8>>,
    /// Accounting, when on.
    pub accounting: Option<Accounting>,
    /// The RADIUS client task, when accounting servers are configured.
    pub acct_radius: Option<mpsc::Sender<Command>>,
    acct_tx: mpsc::UnboundedSender<AcctOutcome>,
    pub acct_rx: mpsc::UnboundedReceiver<AcctOutcome>,
    /// Accounted sessions by Acct-Session-Id.
    sessions: HashMap<String, SessionRef>,
    /// Disconnect and CoA requests.
    pub dynauth: Option<mpsc::Receiver<DynAuthCall>>,
    /// Spool failures (disk full...), counted and logged.
    pub spool_errors: u64,
    /// Records handed to the RADIUS client whose outcome has not come back.
    outstanding: usize,
}

impl Aaa {
    /// The chain only; no accounting, no dynamic authorization.
    pub fn new(backends: Backends) -> Self {
        let (acct_tx, acct_rx) = mpsc::unbounded_channel();
        Aaa {
            backends: Arc::new(backends),
            eap_states: HashMap::new(),
            accounting: None,
            acct_radius: None,
            acct_tx,
            acct_rx,
            sessions: HashMap::new(),
            dynauth: None,
            spool_errors: 0,
            outstanding: 0,
        }
    }

    /// Starts accounting: the Stops of sessions a crash left open, then Accounting-On.
    pub fn start_accounting(
        &mut self,
        mut accounting: Accounting,
        radius: Option<mpsc::Sender<Command>>,
    ) {
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
        self.accounting = Some(accounting);
        self.acct_radius = radius;
    }

    /// The next accounting outcome or dynamic authorization request.
    pub async fn next(&mut self) -> Incoming {
        let dynauth = async {
            match self.dynauth.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            o = self.acct_rx.recv() => Incoming::Acct(o),
            c = dynauth => Incoming::DynAuth(c),
        }
    }

    /// When accounting next needs the clock: the next Interim-Update, and the next spooled
    /// record due when there is room to send it (else an outcome coming back makes room, and
    /// the shell sends after it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let acct = self.accounting.as_ref()?;
        let spool = if self.room() > 0 {
            acct.spool_due()
        } else {
            None
        };
        acct.interim_timeout().into_iter().chain(spool).min()
    }

    /// Whether new sessions must be refused (the spool is full and the opt-in is set).
    pub fn must_block_new_sessions(&self) -> bool {
        self.accounting
            .as_ref()
            .is_some_and(Accounting::must_block_new_sessions)
    }

    /// Records waiting in the spool for an acknowledgement.
    pub fn spool_depth(&self) -> u64 {
        self.accounting.as_ref().map_or(0, |a| a.spool().depth())
    }

    /// How many more records may be handed to the RADIUS client now.
    fn room(&self) -> usize {
        let Some(radius) = self.acct_radius.as_ref() else {
            return 0;
        };
        IN_FLIGHT
            .saturating_sub(self.outstanding)
            .min(radius.capacity())
    }

    /// The authentication context of a session.
    pub fn context(
        gw: &Gateway,
        session: SessionRef,
        nas_port: u32,
        acct_session_id: String,
    ) -> AuthContext {
        let (calling, called) = gw
            .endpoints(session)
            .map(|(remote, local)| (remote.ip().to_string(), local.to_string()))
            .unwrap_or_default();
        AuthContext {
            nas_port,
            calling_station: calling,
            called_station: called,
            acct_session_id,
        }
    }

    /// A session came up: its Start.
    pub fn session_up(
        &mut self,
        gw: &Gateway,
        now: Instant,
        session: SessionRef,
        start: &AcctRecord,
        interim_interval: Option<u32>,
    ) {
        let Some(acct) = self.accounting.as_mut() else {
            return;
        };
        let info = SessionInfo {
            context: Self::context(gw, session, start.nas_port, start.session_id.clone()),
            user: start.user.clone(),
            framed_ip: start.framed_ip,
            class: start.class.clone(),
            interim_interval: interim_interval
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(u64::from(s))),
        };
        self.sessions.insert(start.session_id.clone(), session);
        if let Err(e) = acct.session_started(now, unix_now(), info) {
            dropped!(self.spool_errors, error = %e, "accounting Start not spooled");
        }
    }

    /// A session ended: its Stop.
    pub fn session_down(&mut self, now: Instant, session: SessionRef, stop: &AcctRecord) {
        self.eap_states.remove(&session);
        let Some(acct) = self.accounting.as_mut() else {
            return;
        };
        self.sessions.remove(&stop.session_id);
        let cause = stop.terminate_cause.unwrap_or(TerminateCause::NasRequest);
        if let Err(e) =
            acct.session_stopped(now, unix_now(), &stop.session_id, &counters(stop), cause)
        {
            dropped!(self.spool_errors, error = %e, "accounting Stop not spooled");
        }
    }

    /// Due Interim-Updates, with each session's counters now.
    pub fn timeouts(&mut self, gw: &Gateway, now: Instant) {
        let Some(acct) = self.accounting.as_mut() else {
            return;
        };
        let sessions = &self.sessions;
        let r = acct.poll_interims(now, unix_now(), |id| {
            let s = sessions.get(id)?;
            gw.sessions().interim(now, *s).map(|r| counters(&r))
        });
        if let Err(e) = r {
            dropped!(self.spool_errors, error = %e, "accounting Interim-Update not spooled");
        }
    }

    /// Hands the records that are due to the RADIUS client task; the outcomes come back on
    /// `acct_rx` ([`Aaa::acct_outcome`]). Does not touch SQLite when nothing is due or there
    /// is no room (called after every pass of the shell's loop).
    pub fn send(&mut self, now: Instant) {
        let room = self.room();
        let (Some(acct), Some(radius)) = (self.accounting.as_mut(), self.acct_radius.as_ref())
        else {
            return;
        };
        if room == 0 || !acct.spool_due_at(now) {
            return;
        }
        let records = match acct.poll_send(now, room.min(64)) {
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
            let back = self.acct_tx.clone();
            tokio::spawn(async move {
                let outcome = answer.await.unwrap_or(AcctOutcome { key, acked: false });
                let _ = back.send(outcome);
            });
        }
        if let Err(e) = acct.outcomes(now, &refused) {
            dropped!(self.spool_errors, error = %e, "accounting spool: cannot note a failed send");
        }
    }

    /// What became of a record sent, and of the others whose outcomes already wait in the
    /// channel: all applied in one spool transaction.
    pub fn acct_outcome(&mut self, now: Instant, o: AcctOutcome) {
        let mut all = vec![(SpoolId(o.key as i64), o.acked)];
        while all.len() < IN_FLIGHT {
            match self.acct_rx.try_recv() {
                Ok(o) => all.push((SpoolId(o.key as i64), o.acked)),
                Err(_) => break,
            }
        }
        self.outstanding = self.outstanding.saturating_sub(all.len());
        let Some(acct) = self.accounting.as_mut() else {
            return;
        };
        if let Err(e) = acct.outcomes(now, &all) {
            dropped!(self.spool_errors, error = %e, "accounting spool: cannot record the outcomes of sent records (acknowledged ones are sent again)");
        }
    }

    /// Spools Accounting-Off (clean shutdown) and waits up to `grace` for the spool's records
    /// to be acknowledged; what is left stays in the spool for the next start.
    pub async fn shutdown(&mut self, grace: Duration) {
        let Some(acct) = self.accounting.as_mut() else {
            return;
        };
        if let Err(e) = acct.accounting_off(unix_now()) {
            error!(error = %e, "accounting spool: Accounting-Off not spooled");
        }
        if self.acct_radius.is_none() {
            return;
        }
        let until = tokio::time::Instant::now() + grace;
        loop {
            self.send(Instant::now());
            let depth = self.accounting.as_ref().map_or(0, |a| a.spool().depth());
            if depth == 0 {
                return;
            }
            tokio::select! {
                o = self.acct_rx.recv() => match o {
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

/// The counters of a record.
fn counters(r: &AcctRecord) -> Counters {
    Counters {
        input_octets: r.input_octets,
        input_packets: r.input_packets,
        output_octets: r.output_octets,
        output_packets: r.output_packets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aaa::accounting::AccountingConfig;
    use crate::aaa::spool::{Spool, SpoolLimits};

    fn aaa() -> Aaa {
        Aaa::new(Backends {
            chain: Vec::new(),
            users: None,
            pam_service: String::new(),
            radius: None,
        })
    }

    fn reads(a: &Aaa) -> u64 {
        a.accounting.as_ref().unwrap().spool().reads()
    }

    #[tokio::test]
    async fn send_reads_the_spool_only_when_a_record_is_due_and_there_is_room() {
        let mut a = aaa();
        let (radius, mut rx) = mpsc::channel(1);
        let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
        a.start_accounting(
            Accounting::new(spool, AccountingConfig::default(), 1),
            Some(radius),
        );
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
        a.accounting.as_mut().unwrap().accounting_off(1).unwrap();
        a.send(t0);
        assert_eq!(reads(&a), 1);
        assert_eq!(a.poll_timeout(), None);
        // The server does not answer: the record backs off.
        let Some(Command::Account { reply, .. }) = rx.recv().await else {
            panic!("no record sent")
        };
        drop(reply);
        let Incoming::Acct(Some(o)) = a.next().await else {
            panic!("no outcome")
        };
        a.acct_outcome(t0, o);
        // Room again: the Accounting-Off (due) is read and sent, the failed one is not.
        a.send(t0);
        assert_eq!(reads(&a), 2);
        let Some(Command::Account { key, record, reply }) = rx.recv().await else {
            panic!("no record sent")
        };
        assert_eq!(record.status, Some(crate::aaa::AcctStatus::AccountingOff));
        let _ = reply.send(AcctOutcome { key, acked: true });
        let Incoming::Acct(Some(o)) = a.next().await else {
            panic!("no outcome")
        };
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
        assert_eq!(record.status, Some(crate::aaa::AcctStatus::AccountingOn));
        let _ = reply.send(AcctOutcome { key, acked: true });
        let Incoming::Acct(Some(o)) = a.next().await else {
            panic!("no outcome")
        };
        a.acct_outcome(due, o);
        assert_eq!(a.spool_depth(), 0);
        assert!(!a.must_block_new_sessions());
        assert_eq!(a.poll_timeout(), None);
    }
}
