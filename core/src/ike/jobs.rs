//! Handshake cryptography off the packet path.
//!
//! The costly parts of a handshake — our Diffie-Hellman key and g^xy with the key schedule
//! (Main Mode message 3), with certificates the peer's chain and signature check and our own
//! signature (message 5), and the Diffie-Hellman of a Quick Mode with PFS — are not done while
//! a datagram is handled. The responder checks
//! everything cheap first (lengths, the peer's public value, nonces, limits), parks the ISAKMP
//! SA in a "computing" state and queues a [`Job`]: a self-contained `Send` value that owns all it
//! needs. The shell takes jobs with [`Responder::poll_job`], runs [`Job::run`] on any thread, and
//! hands the [`JobDone`] back with [`Responder::job_done`], which sends message 4 or 6.
//!
//! * A result for an SA that has gone meanwhile (expired, deleted) is ignored and counted
//!   ([`super::Stats::jobs_orphaned`]).
//! * A retransmitted message 3 or 5 while its job runs is dropped and counted
//!   ([`super::Stats::jobs_retransmit_dropped`]), not computed again.
//! * While [`super::Config::handshake_queue`] jobs are outstanding (queued or handed out and not
//!   yet done), new Main Mode message 1s are dropped ([`super::Stats::jobs_busy_dropped`]).
//!   Established SAs (Quick Mode, Informational, DPD) never wait for jobs.
//!
//! Inline mode (the default, [`Responder::set_deferred_jobs`]`(false)`) runs every job at once,
//! inside the call that queued it, through the same [`Job::run`] and [`Responder::job_done`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

use super::cert::{CertAuthority, PeerCert, id_matches};
use super::crypto::{self, CipherAlg, DhGroup, DhPrivate, HashAlg, Phase1Keys, Prf};
use super::quick_mode::Qm1Accepted;
use super::responder::Responder;
use super::sa::{Cookies, P1State};
use crate::isakmp::{Header, exchange, notify};

/// Work of one handshake step, to be run off the packet path: see the documentation of
/// [`crate::ike`]. Owns everything it needs; holds secrets (a pre-shared key, nonces, a
/// seed), which its `Debug` does not show.
pub struct Job {
    sa: Cookies,
    phase1: u64,
    work: Work,
}

enum Work {
    Mm3(Box<Mm3Work>),
    Mm5(Box<Mm5Work>),
    Qm1(Box<Qm1Work>),
}

/// Quick Mode PFS: our key and g^xy for the message 1 `mid`.
struct Qm1Work {
    mid: u32,
    group: DhGroup,
    peer_ke: Vec<u8>,
    seed: Zeroizing<[u8; 32]>,
}

struct Mm3Work {
    group: DhGroup,
    gxi: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    psk: Option<Zeroizing<Vec<u8>>>,
    prf: Prf,
    hash: HashAlg,
    cipher: CipherAlg,
    icky: [u8; 8],
    rcky: [u8; 8],
    /// Seeds the generator our private value is drawn from (taken from the responder's).
    seed: Zeroizing<[u8; 32]>,
}

pub(crate) struct Mm5Work {
    pub ca: Arc<dyn CertAuthority>,
    /// The peer's certificates, end entity first.
    pub certs: Vec<Vec<u8>>,
    pub id_type: u8,
    pub id_data: Vec<u8>,
    pub sig: Vec<u8>,
    pub hash_i: Zeroizing<Vec<u8>>,
    pub hash_r: Zeroizing<Vec<u8>>,
    pub unix_now: u64,
}

/// The result of [`Job::run`], for [`Responder::job_done`].
pub struct JobDone {
    sa: Cookies,
    phase1: u64,
    /// The job made one Diffie-Hellman key of ours.
    dh_generated: bool,
    outcome: Outcome,
}

enum Outcome {
    Mm3(Result<Mm3Out, crypto::DhError>),
    Mm5(Result<(PeerCert, Vec<u8>), Mm5Error>),
    /// g^xy and our public value.
    Qm1(u32, Result<(Zeroizing<Vec<u8>>, Vec<u8>), crypto::DhError>),
}

struct Mm3Out {
    gxr: Vec<u8>,
    keys: Phase1Keys,
}

enum Mm5Error {
    /// The peer's authentication failed: the reason and the notify that answers it.
    Auth(String, u16),
    /// We could not sign.
    Sign(String),
}

/// What a parked ISAKMP SA waits for, and what finishing it needs besides the job's result.
pub(crate) enum Pending {
    Mm3(Box<Mm3Pending>),
    Mm5(Box<Mm5Pending>),
}

pub(crate) struct Mm3Pending {
    pub request: Vec<u8>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub natd_out: Vec<(u8, Vec<u8>)>,
    pub ca_subjects: Vec<Vec<u8>>,
}

pub(crate) struct Mm5Pending {
    pub request: Vec<u8>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub last_block: Vec<u8>,
    pub peer_id: String,
    pub peer_id_raw: Vec<u8>,
    pub initial_contact: bool,
    pub idir_b: Vec<u8>,
    pub hash_r: Zeroizing<Vec<u8>>,
    pub peer_certreq: bool,
    pub dpd_seq: u32,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("phase1", &self.phase1)
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JobDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ok = match &self.outcome {
            Outcome::Mm3(r) => r.is_ok(),
            Outcome::Mm5(r) => r.is_ok(),
            Outcome::Qm1(_, r) => r.is_ok(),
        };
        f.debug_struct("JobDone")
            .field("phase1", &self.phase1)
            .field("ok", &ok)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// What the job computes: `"main mode 3"` (Diffie-Hellman and the key schedule),
    /// `"main mode 5"` (certificate and signature checks, our signature) or `"quick mode pfs"`
    /// (the Diffie-Hellman of a Quick Mode with PFS).
    pub fn kind(&self) -> &'static str {
        match self.work {
            Work::Mm3(_) => "main mode 3",
            Work::Mm5(_) => "main mode 5",
            Work::Qm1(_) => "quick mode pfs",
        }
    }

    /// Does the work. Pure: touches no responder state, so it may run on any thread.
    pub fn run(self) -> JobDone {
        let (dh_generated, outcome) = match self.work {
            Work::Mm3(w) => (true, Outcome::Mm3(run_mm3(*w))),
            Work::Mm5(w) => (false, Outcome::Mm5(run_mm5(*w))),
            Work::Qm1(w) => (true, Outcome::Qm1(w.mid, run_qm1(&w))),
        };
        JobDone {
            sa: self.sa,
            phase1: self.phase1,
            dh_generated,
            outcome,
        }
    }
}

fn run_mm3(w: Mm3Work) -> Result<Mm3Out, crypto::DhError> {
    let mut rng = ChaCha20Rng::from_seed(*w.seed);
    let dh = DhPrivate::generate(w.group, &mut rng);
    let gxy = dh.shared_secret(&w.gxi)?;
    // RFC 2409 §5: SKEYID = prf(pre-shared-key, Ni_b | Nr_b) or, for signatures,
    // prf(Ni_b | Nr_b, g^xy).
    let skeyid = match &w.psk {
        Some(psk) => crypto::skeyid_psk(w.prf, psk, &w.ni, &w.nr),
        None => crypto::skeyid_sig(w.prf, &w.ni, &w.nr, &gxy),
    };
    let keys = crypto::derive_phase1(
        w.prf,
        w.hash,
        w.cipher,
        skeyid,
        &gxy,
        &w.icky,
        &w.rcky,
        &w.gxi,
        dh.public(),
    );
    Ok(Mm3Out {
        gxr: dh.public().to_vec(),
        keys,
    })
}

fn run_qm1(w: &Qm1Work) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), crypto::DhError> {
    let mut rng = ChaCha20Rng::from_seed(*w.seed);
    let dh = DhPrivate::generate(w.group, &mut rng);
    let gxy = dh.shared_secret(&w.peer_ke)?;
    Ok((gxy, dh.public().to_vec()))
}

fn run_mm5(w: Mm5Work) -> Result<(PeerCert, Vec<u8>), Mm5Error> {
    let chain: Vec<&[u8]> = w.certs.iter().map(Vec::as_slice).collect();
    let cert = w.ca.verify_chain(&chain, w.unix_now).map_err(|e| {
        Mm5Error::Auth(
            format!("its certificate was refused: {e}"),
            notify::INVALID_CERTIFICATE,
        )
    })?;
    id_matches(w.id_type, &w.id_data, &cert)
        .map_err(|e| Mm5Error::Auth(e, notify::INVALID_ID_INFORMATION))?;
    if !w.ca.verify_signature(&cert, &w.hash_i, &w.sig) {
        return Err(Mm5Error::Auth(
            format!(
                "SIG_I does not verify with the key of its certificate ({})",
                cert.subject
            ),
            notify::INVALID_SIGNATURE,
        ));
    }
    let sig = w.ca.sign(&w.hash_r).map_err(Mm5Error::Sign)?;
    Ok((cert, sig))
}

/// A notify answers with the SA's cookies; only they are read from this header.
fn cookie_header(c: &Cookies) -> Header {
    let mut initiator_cookie = [0u8; 8];
    let mut responder_cookie = [0u8; 8];
    initiator_cookie.copy_from_slice(&c[..8]);
    responder_cookie.copy_from_slice(&c[8..]);
    Header {
        initiator_cookie,
        responder_cookie,
        next_payload: 0,
        version: 0x10,
        exchange: exchange::MAIN,
        flags: 0,
        message_id: 0,
        length: 0,
    }
}

impl Responder {
    /// Deferred (true) or inline (false, the default) handshake jobs: see [`Job`]. In deferred
    /// mode the shell must take every job with [`Responder::poll_job`] and return its result
    /// with [`Responder::job_done`]; a job it drops stays counted against
    /// [`super::Config::handshake_queue`].
    pub fn set_deferred_jobs(&mut self, deferred: bool) {
        self.deferred_jobs = deferred;
    }

    /// The next handshake job to run (deferred mode only; always None inline).
    pub fn poll_job(&mut self) -> Option<Job> {
        self.jobs.pop_front()
    }

    /// Jobs queued or handed out and not yet returned through [`Responder::job_done`].
    pub fn jobs_outstanding(&self) -> usize {
        self.jobs_outstanding
    }

    /// A job's result: finishes the exchange it belongs to (sends message 4 or 6, or the
    /// refusal). A result for an ISAKMP SA that is gone is ignored and counted.
    pub fn job_done(&mut self, now: Instant, done: JobDone) {
        self.jobs_outstanding = self.jobs_outstanding.saturating_sub(1);
        if done.dh_generated {
            self.stats.dh_keys_generated += 1;
        }
        let c = done.sa;
        if let Outcome::Qm1(mid, result) = done.outcome {
            return self.quick_mode_job_done(now, c, done.phase1, mid, result);
        }
        let pending = match self.p1.get_mut(&c) {
            Some(p1) if p1.id == done.phase1 && p1.state == P1State::Computing => p1.pending.take(),
            _ => None,
        };
        match (pending, done.outcome) {
            (Some(Pending::Mm3(p)), Outcome::Mm3(Ok(out))) => {
                self.finish_main_mode_3(now, c, *p, out.gxr, out.keys);
            }
            (Some(Pending::Mm3(p)), Outcome::Mm3(Err(e))) => {
                // validate_public passed, so only a degenerate agreement gets here.
                dropped!(self.stats.invalid_ke, remote = %p.remote, error = %e, "Diffie-Hellman agreement refused the peer's public value");
                self.notify_unprotected(
                    p.local,
                    p.remote,
                    &cookie_header(&c),
                    notify::INVALID_KEY_INFORMATION,
                );
                self.fail_half_open(now, c);
            }
            (Some(Pending::Mm5(p)), Outcome::Mm5(Ok((cert, sig)))) => {
                self.finish_main_mode_5(now, c, *p, Some((cert, sig)));
            }
            (Some(Pending::Mm5(p)), Outcome::Mm5(Err(Mm5Error::Auth(why, code)))) => {
                dropped!(self.stats.auth_failed, remote = %p.remote, "certificate authentication failed in Main Mode message 5: {why}");
                self.notify_unprotected(p.local, p.remote, &cookie_header(&c), code);
                self.fail_half_open(now, c);
            }
            (Some(Pending::Mm5(p)), Outcome::Mm5(Err(Mm5Error::Sign(e)))) => {
                tracing::error!(remote = %p.remote, error = %e, "cannot sign HASH_R with the server key");
                self.fail_half_open(now, c);
            }
            (Some(_), _) => {
                // A result of another step than the one parked: cannot happen with results of
                // this responder's jobs.
                dropped!(
                    self.stats.jobs_orphaned,
                    "handshake job result of the wrong step; the ISAKMP SA is dropped"
                );
                self.fail_half_open(now, c);
            }
            (None, _) => {
                dropped!(
                    self.stats.jobs_orphaned,
                    "handshake job result for an ISAKMP SA that is gone; ignored"
                );
            }
        }
    }

    /// Queues (deferred) or runs (inline) the work for the parked SA `c`.
    fn queue_job(&mut self, now: Instant, c: Cookies, work: Work) {
        let Some(p1) = self.p1.get(&c) else { return };
        let job = Job {
            sa: c,
            phase1: p1.id,
            work,
        };
        self.jobs_outstanding += 1;
        if self.deferred_jobs {
            self.jobs.push_back(job);
        } else {
            let done = job.run();
            self.job_done(now, done);
        }
    }

    /// Keeps an accepted Quick Mode message 1 of the established SA `c` and queues its PFS
    /// Diffie-Hellman job (the peer's value already checked).
    pub(crate) fn queue_quick_mode_job(
        &mut self,
        now: Instant,
        c: Cookies,
        accepted: Qm1Accepted,
        group: DhGroup,
        peer_ke: &[u8],
    ) {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::Rng::fill_bytes(&mut self.rng, seed.as_mut());
        let mid = accepted.mid();
        self.qm_jobs.insert((c, mid), Box::new(accepted));
        let work = Qm1Work {
            mid,
            group,
            peer_ke: peer_ke.to_vec(),
            seed,
        };
        self.queue_job(now, c, Work::Qm1(Box::new(work)));
    }

    /// The PFS job of Quick Mode `mid` under `c` is done: message 2, or INVALID_KEY_INFORMATION.
    fn quick_mode_job_done(
        &mut self,
        now: Instant,
        c: Cookies,
        phase1: u64,
        mid: u32,
        result: Result<(Zeroizing<Vec<u8>>, Vec<u8>), crypto::DhError>,
    ) {
        let accepted = self.qm_jobs.remove(&(c, mid));
        let live = self
            .p1
            .get(&c)
            .is_some_and(|p1| p1.id == phase1 && p1.state == P1State::Established);
        let Some(accepted) = accepted.filter(|_| live) else {
            dropped!(
                self.stats.jobs_orphaned,
                "Quick Mode PFS job result for an ISAKMP SA that is gone; ignored"
            );
            return;
        };
        match result {
            Ok(pfs) => self.reply_quick_mode_1(now, c, *accepted, Some(pfs)),
            Err(e) => {
                // validate_public passed, so only a degenerate agreement gets here.
                self.stats.invalid_ke += 1;
                self.stats.quick_mode_refused += 1;
                tracing::warn!(remote = %accepted.remote(), error = %e, "Quick Mode refused: the PFS agreement failed");
                self.send_notify_protected(
                    c,
                    notify::INVALID_KEY_INFORMATION,
                    crate::isakmp::protocol::IPSEC_ESP,
                    &[],
                    &[],
                );
            }
        }
    }

    /// Parks `c` after an accepted message 3 and queues its Diffie-Hellman job.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn park_main_mode_3(
        &mut self,
        now: Instant,
        c: Cookies,
        pending: Mm3Pending,
        gxi: &[u8],
        ni: &[u8],
        nr: Vec<u8>,
        psk: Option<Zeroizing<Vec<u8>>>,
    ) {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::Rng::fill_bytes(&mut self.rng, seed.as_mut());
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        let work = Mm3Work {
            group: p1.choice.group,
            gxi: gxi.to_vec(),
            ni: ni.to_vec(),
            nr: nr.clone(),
            psk,
            prf: p1.choice.prf,
            hash: p1.choice.hash,
            cipher: p1.choice.cipher,
            icky: p1.icky,
            rcky: p1.rcky,
            seed,
        };
        p1.gxi = gxi.to_vec();
        p1.ni = ni.to_vec();
        p1.nr = nr;
        p1.park(Pending::Mm3(Box::new(pending)));
        self.queue_job(now, c, Work::Mm3(Box::new(work)));
    }

    /// Parks `c` after a structurally sound message 5 with a signature, and queues the
    /// certificate and signature work.
    pub(crate) fn park_main_mode_5(
        &mut self,
        now: Instant,
        c: Cookies,
        pending: Mm5Pending,
        work: Mm5Work,
    ) {
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        p1.park(Pending::Mm5(Box::new(pending)));
        self.queue_job(now, c, Work::Mm5(Box::new(work)));
    }
}

impl super::sa::Phase1 {
    /// Computing state: our previous reply is no longer resent by timer (the peer has it), and
    /// further Main Mode messages are dropped until the job is done.
    fn park(&mut self, pending: Pending) {
        self.state = P1State::Computing;
        self.pending = Some(pending);
        if let Some(last) = self.last.as_mut() {
            last.resend_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn jobs_and_results_are_send() {
        assert_send::<Job>();
        assert_send::<JobDone>();
    }
}
