//! Authentication, authorisation and accounting.
//!
//! Local users in the embedded SQLite database ([`local`]), PAM and the system accounts
//! ([`pam`]), which backend can check which PPP method ([`backend`]), the chain that walks the
//! configured backends ([`chain`]), the decision a backend hands back to the session layer
//! ([`Decision`]), and durable accounting: the on-disk spool ([`spool`]) and the manager that
//! schedules and hands out the records ([`accounting`]). The RADIUS client and dynamic
//! authorization are in [`crate::radius`].

use std::net::Ipv4Addr;

use pppd_lite::{AuthRequest, Verdict};
use tracing::info;

pub mod accounting;
pub mod backend;
pub mod local;
pub mod pam;
pub mod record;
pub mod spool;
pub mod store;

pub use backend::{BackendKind, can_serve, impossible_pairs};
pub use record::{AcctRecord, AcctStatus, AuthContext, Authorization, TerminateCause};

/// The answer to a PPP authentication request, with what the backend knows of the user.
#[derive(Debug)]
pub struct Decision {
    /// Accept or reject, as PPP needs it.
    pub verdict: Verdict,
    /// The user's canonical name (session limits, the pool), when known.
    pub user: Option<String>,
    /// The address this user always gets.
    pub static_ip: Option<Ipv4Addr>,
    /// Most simultaneous sessions of this user.
    pub max_sessions: Option<u32>,
    /// What the backend said beyond the verdict (RADIUS attributes).
    pub authz: Authorization,
}

impl Decision {
    /// A plain rejection.
    pub fn reject(message: impl Into<String>) -> Self {
        Decision {
            verdict: Verdict::Reject {
                message: message.into(),
            },
            user: None,
            static_ip: None,
            max_sessions: None,
            authz: Authorization::default(),
        }
    }
}

/// What the client is told when authentication fails, whatever the cause: an unknown user, a
/// wrong password and a disabled account look the same from outside (the log says which).
pub const REJECTED: &str = "Authentication failed";

/// What one backend of the chain made of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted or refused: the chain stops here.
    Decided(Box<Decision>),
    /// The backend does not know the user, cannot check this method, or cannot be reached:
    /// the next backend decides (the reason is logged).
    Pass(String),
}

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
