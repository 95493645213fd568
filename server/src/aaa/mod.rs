//! Authentication, authorisation and accounting.
//!
//! Local users in the embedded SQLite database ([`local`]), PAM and the system accounts
//! ([`pam`]), which backend can check which PPP method ([`backend`]), the chain that walks the
//! configured backends ([`chain`]), and durable accounting: the on-disk spool ([`spool`]) and
//! the manager that schedules and hands out the records ([`accounting`]). The decision a backend
//! hands back to the session layer ([`Decision`], [`Outcome`]) and the records ([`record`]) are
//! plain data in [`roadgate_core::aaa`], re-exported here. The RADIUS client and dynamic
//! authorization are in [`crate::radius`].

use pppd_lite::{AuthRequest, Verdict};
use tracing::info;

pub mod accounting;
pub mod backend;
mod libpam;
pub mod local;
pub mod pam;
pub mod spool;
pub mod store;

pub use backend::{BackendKind, can_serve, impossible_pairs};
pub use roadgate_core::aaa::{
    AcctRecord, AcctStatus, AuthContext, Authorization, Decision, Outcome, REJECTED,
    TerminateCause, record,
};

/// Checks `req` against the local user store. The user is looked up by the name after any
/// `DOMAIN\` prefix. An unknown user costs the same computation as a known one, and is refused.
pub fn local_decision(store: &local::UserStore, req: &AuthRequest) -> Decision {
    match local_outcome(store, req) {
        Outcome::Decided(d) => *d,
        Outcome::Pass(why) => {
            info!(user = %pppd_lite::mschapv2::strip_domain(&req.user).escape_debug(), "authentication refused: {why}");
            Decision::reject(REJECTED)
        }
    }
}

/// [`local_decision`] for a chain: an unknown user or an unreadable database passes to the
/// next backend.
pub fn local_outcome(store: &local::UserStore, req: &AuthRequest) -> Outcome {
    let name = pppd_lite::mschapv2::strip_domain(&req.user);
    let user = match store.find(name) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "user database unavailable");
            return Outcome::Pass("the local user database is unavailable".into());
        }
    };
    let Some(user) = user else {
        // Same work as for a real user, then refuse.
        let _ = pppd_lite::auth::verify_with_nt_hash(req, &[0u8; 16]);
        return Outcome::Pass("no such local user".into());
    };
    let verdict = pppd_lite::auth::verify_with_nt_hash(req, &user.nt_hash);
    if !user.enabled {
        info!(user = %user.name, "authentication refused: the account is disabled");
        return Outcome::Decided(Box::new(Decision::reject(REJECTED)));
    }
    if let Verdict::Reject { message } = &verdict {
        info!(user = %user.name, reason = %message, "authentication refused");
        return Outcome::Decided(Box::new(Decision::reject(REJECTED)));
    }
    Outcome::Decided(Box::new(Decision {
        verdict,
        user: Some(user.name),
        static_ip: user.static_ip,
        max_sessions: user.max_sessions,
        authz: Authorization::default(),
    }))
}
