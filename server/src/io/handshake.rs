//! The handshake pool: a few threads that run the IKE responder's [`Job`]s (Diffie-Hellman and
//! key derivation of Main Mode message 3, the certificate checks and RSA signature of message
//! 5), so that the thread that forwards packets never does that work.
//!
//! The pool is bounded twice: the responder keeps at most `handshake_queue` jobs outstanding
//! (and drops new Main Mode message 1s beyond that, counted as `jobs_busy_dropped`, as
//! strongSwan's `init_limit_job_load` does), and the queue to the threads holds exactly that
//! many. Results come back through a channel the control loop waits on, in any order; a result
//! for an SA that has gone meanwhile is ignored by the responder.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{debug, warn};

use crate::ike::{Job, JobDone};

/// The running pool. Dropping it ends the threads once their current job is done.
pub struct HandshakePool {
    jobs: Option<SyncSender<Job>>,
    /// Jobs the queue had no room for (not expected: the responder bounds what is
    /// outstanding); handed over as soon as there is room.
    backlog: VecDeque<Job>,
    done: UnboundedReceiver<JobDone>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for HandshakePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakePool")
            .field("threads", &self.threads.len())
            .field("backlog", &self.backlog.len())
            .finish_non_exhaustive()
    }
}

/// How many handshake threads to start when the configuration says 0: one per core beyond the
/// first (the forwarding thread's), at least one, at most four.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .clamp(1, 4)
}

impl HandshakePool {
    /// Starts `threads` threads (named `rg-handshake-N`) with a queue of `queue` jobs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = unbounded_channel();
        let mut handles = Vec::new();
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            let tx = done_tx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("rg-handshake-{n}"))
                    .spawn(move || worker(&rx, &tx))?,
            );
        }
        Ok(HandshakePool {
            jobs: Some(jobs),
            backlog: VecDeque::new(),
            done,
            threads: handles,
        })
    }

    /// Hands `job` to the threads.
    pub fn submit(&mut self, job: Job) {
        self.backlog.push_back(job);
        self.flush();
    }

    /// Moves what waits in the backlog into the queue while it has room.
    fn flush(&mut self) {
        let Some(tx) = &self.jobs else { return };
        while let Some(job) = self.backlog.pop_front() {
            match tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    debug!(
                        backlog = self.backlog.len() + 1,
                        "handshake queue full: job kept until a thread is free"
                    );
                    self.backlog.push_front(job);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    warn!("the handshake threads have stopped: handshakes cannot complete");
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// The next finished job (pending forever once the threads are gone).
    pub async fn next(&mut self) -> Option<JobDone> {
        let done = self.done.recv().await;
        self.flush();
        done
    }

    /// Threads running.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for HandshakePool {
    fn drop(&mut self) {
        // Closing the queue ends every thread after its current job.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, tx: &UnboundedSender<JobDone>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if tx.send(job.run()).is_err() {
            return;
        }
    }
}
