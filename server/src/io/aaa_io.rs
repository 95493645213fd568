//! The AAA side of the shell: the authentication chain's tasks, accounting (its own thread,
//! [`super::acct_thread`], fed by session events), and dynamic authorization requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::acct_thread::SpoolThread;
use super::auth::Backends;
use super::radius::{Command, DynAuthCall};
use crate::aaa::accounting::{Accounting, SessionInfo};
use crate::aaa::spool::Counters;
use crate::aaa::{AcctRecord, AuthContext, TerminateCause};
use crate::dataplane::Gateway;
use crate::l2tp::SessionRef;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What [`Aaa::next`] gives.
#[derive(Debug)]
pub enum Incoming {
    /// The spool thread needs the counters of these sessions for their Interim-Updates
    /// (answer with [`Aaa::answer_counters`]; `None`: the thread has ended).
    Counters(Option<Vec<String>>),
    /// A Disconnect or CoA request (`None`: the dynamic authorization task ended).
    DynAuth(Option<DynAuthCall>),
}

/// The AAA state the shell keeps.
#[derive(Debug)]
pub struct Aaa {
    pub backends: Arc<Backends>,
    /// Accounting (its own thread), when on.
    spool: Option<SpoolThread>,
    /// Accounted sessions by Acct-Session-Id.
    sessions: HashMap<String, SessionRef>,
    /// Disconnect and CoA requests.
    pub dynauth: Option<mpsc::Receiver<DynAuthCall>>,
}

impl Aaa {
    /// The chain only; no accounting, no dynamic authorization.
    pub fn new(backends: Backends) -> Self {
        Aaa {
            backends: Arc::new(backends),
            spool: None,
            sessions: HashMap::new(),
            dynauth: None,
        }
    }

    /// Starts accounting on its own thread: the Stops of sessions a crash left open, then
    /// Accounting-On; records go to `radius` when accounting servers are configured.
    pub fn start_accounting(
        &mut self,
        accounting: Accounting,
        radius: Option<mpsc::Sender<Command>>,
    ) -> std::io::Result<()> {
        self.spool = Some(SpoolThread::start(accounting, radius)?);
        Ok(())
    }

    /// The next request of the spool thread or of dynamic authorization.
    pub async fn next(&mut self) -> Incoming {
        let dynauth = async {
            match self.dynauth.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let wanted = async {
            match self.spool.as_mut() {
                Some(s) => s.wanted().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = wanted => Incoming::Counters(c),
            c = dynauth => Incoming::DynAuth(c),
        }
    }

    /// Whether new sessions must be refused (the spool is full and the opt-in is set).
    pub fn must_block_new_sessions(&self) -> bool {
        self.spool
            .as_ref()
            .is_some_and(SpoolThread::must_block_new_sessions)
    }

    /// Records waiting in the spool for an acknowledgement.
    pub fn spool_depth(&self) -> u64 {
        self.spool.as_ref().map_or(0, SpoolThread::depth)
    }

    /// Spool failures (disk full...) so far.
    pub fn spool_errors(&self) -> u64 {
        self.spool.as_ref().map_or(0, SpoolThread::errors)
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

    /// A session came up: its Start, spooled by the spool thread.
    pub fn session_up(
        &mut self,
        gw: &Gateway,
        session: SessionRef,
        start: &AcctRecord,
        interim_interval: Option<u32>,
    ) {
        let Some(spool) = self.spool.as_ref() else {
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
        spool.started(info);
    }

    /// A session ended: its Stop, spooled by the spool thread.
    pub fn session_down(&mut self, stop: &AcctRecord) {
        let Some(spool) = self.spool.as_ref() else {
            return;
        };
        self.sessions.remove(&stop.session_id);
        let cause = stop.terminate_cause.unwrap_or(TerminateCause::NasRequest);
        spool.stopped(stop.session_id.clone(), counters(stop), cause);
    }

    /// The counters of the sessions `ids` names that still exist, for their Interim-Updates.
    pub fn answer_counters(&self, gw: &Gateway, now: Instant, ids: &[String]) {
        let Some(spool) = self.spool.as_ref() else {
            return;
        };
        let answer = ids
            .iter()
            .filter_map(|id| {
                let s = self.sessions.get(id)?;
                let r = gw.sessions().interim(now, *s)?;
                Some((id.clone(), counters(&r)))
            })
            .collect();
        spool.counters(answer);
    }

    /// Spools Accounting-Off (clean shutdown) and waits up to `grace` for the spool's records
    /// to be acknowledged; what is left stays in the spool for the next start.
    pub async fn shutdown(&mut self, grace: Duration) {
        if let Some(spool) = self.spool.as_mut() {
            spool.shutdown(grace).await;
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
