//! The plain data of authentication, authorisation and accounting that the protocol cores
//! use: the decision a backend hands back to the session layer ([`Decision`], [`Outcome`]) and
//! the records that cross between sessions, backends and accounting ([`record`]). The backends
//! themselves (local users in SQLite, PAM, the accounting spool) are in `roadgate::aaa`; the
//! RADIUS client and dynamic authorization are in [`crate::radius`].

use std::net::Ipv4Addr;

use pppd_lite::Verdict;

pub mod record;

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
