//! The `pam` and `system` backends: a PAP password checked by PAM.
//!
//! PAM needs the clear-text password, so only PAP credentials can be checked (inside IPsec the
//! PAP password is not exposed on the wire). CHAP-MD5, MS-CHAPv2 and EAP are refused with a log
//! line that says so.
//!
//! Both `authenticate` and `acct_mgmt` run: a wrong password, an unknown user, a locked or
//! expired account and an expired password are all refused. The client sees the same message
//! as from the local backend ([`REJECTED`]); the log says which it was, in plain words.
//!
//! - `pam`: the PAM service is configurable (default [`DEFAULT_SERVICE`], file
//!   `/etc/pam.d/roadgate`, see `deploy/pam.d/roadgate`).
//! - `system`: the system's accounts, the PAM service [`SYSTEM_SERVICE`]
//!   (`/etc/pam.d/roadgate-system`: pam_unix against /etc/passwd and /etc/shadow; the server
//!   must run as root to read /etc/shadow).
//!
//! PAM calls block (modules may sleep after a failure to slow guessing, or ask a network
//! service): call [`pam_decision`] on tokio's blocking pool (`spawn_blocking`).
//!
//! libpam is opened at run time ([`super::libpam`]): building needs no PAM headers and no
//! libclang; running the `pam` and `system` backends needs libpam (Debian: libpam0g). Where it
//! cannot be loaded, each check is refused as [`PamRefusal::Service`] with one plain message
//! ([`available`]), and a chain passes to its next backend.

use std::ffi::{CStr, c_int};
use std::fmt;

use super::libpam::{
    self, Conversation, PAM_ACCT_EXPIRED, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_AUTHTOK_EXPIRED,
    PAM_CRED_INSUFFICIENT, PAM_DISALLOW_NULL_AUTHTOK, PAM_MAXTRIES, PAM_NEW_AUTHTOK_REQD,
    PAM_PERM_DENIED, PAM_SILENT, PAM_USER_UNKNOWN, Transaction,
};
use pppd_lite::{Accept, AuthRequest, Credentials, Verdict};
use tracing::{debug, error, info};
use zeroize::Zeroizing;

use super::backend::protocol_name;
use super::{Authorization, Decision, REJECTED};

/// The PAM service of the `pam` backend unless configured otherwise.
pub const DEFAULT_SERVICE: &str = "roadgate";

/// The PAM service of the `system` backend.
pub const SYSTEM_SERVICE: &str = "roadgate-system";

/// Why PAM refused (or could not check) a request, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PamRefusal {
    /// The credentials are not PAP.
    #[error(
        "PAM can only check PAP passwords; the client used {0}: configure PAP or use the local or RADIUS backend"
    )]
    NotPap(&'static str),
    /// The user name or password cannot be passed to PAM.
    #[error("the user name or password is empty or contains a NUL byte")]
    BadInput,
    /// The PAM service could not be started.
    #[error("PAM service {service:?} could not be started: {message}")]
    Service {
        /// The service name.
        service: String,
        /// What PAM said.
        message: String,
    },
    /// `pam_authenticate` does not know the user (PAM_USER_UNKNOWN): the next backend of the
    /// chain may.
    #[error("PAM does not know this user")]
    UnknownUser,
    /// `pam_authenticate` refused.
    #[error("PAM refused the password: {0}")]
    Authenticate(String),
    /// `pam_acct_mgmt` refused (locked, expired, not allowed now).
    #[error("PAM refused the account: {0}")]
    Account(String),
}

/// Checks `req` against the PAM `service`; blocks. The user name is taken after any
/// `DOMAIN\` prefix. Returns the user name PAM ends with, or why it refused.
pub fn pam_check(service: &str, req: &AuthRequest) -> Result<String, PamRefusal> {
    let Credentials::Pap { password } = &req.credentials else {
        return Err(PamRefusal::NotPap(protocol_name(
            req.credentials.protocol(),
        )));
    };
    let user = pppd_lite::mschapv2::strip_domain(&req.user);
    if user.is_empty() || user.contains('\0') || password.is_empty() || password.contains(&0) {
        return Err(PamRefusal::BadInput);
    }
    let conv = PasswordConversation {
        user: user.to_string(),
        password: Zeroizing::new(password.to_vec()),
    };
    let mut tx = Transaction::start(service, user, conv).map_err(|e| PamRefusal::Service {
        service: service.to_string(),
        message: e.to_string(),
    })?;
    tx.authenticate(PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
        .map_err(|e| match e.code {
            PAM_USER_UNKNOWN => PamRefusal::UnknownUser,
            code => PamRefusal::Authenticate(plain_words(code, &e.to_string())),
        })?;
    tx.acct_mgmt(PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
        .map_err(|e| PamRefusal::Account(plain_words(e.code, &e.to_string())))?;
    Ok(tx.user().unwrap_or_else(|| user.to_string()))
}

/// Whether PAM can be used on this machine (libpam loads): `Err` is the plain message for an
/// admin, e.g. "PAM is not available on this machine: libpam.so.0 could not be loaded
/// (Debian: apt install libpam0g)".
pub fn available() -> Result<(), &'static str> {
    libpam::available()
}

/// Checks `req` against the PAM `service` and logs the outcome; blocks (run it on tokio's
/// blocking pool). Refusals give the client [`REJECTED`], as the local backend does.
pub fn pam_decision(service: &str, req: &AuthRequest) -> Decision {
    decision_of(service, req, pam_check(service, req))
}

/// The decision for what [`pam_check`] said, logged.
fn decision_of(service: &str, req: &AuthRequest, checked: Result<String, PamRefusal>) -> Decision {
    let shown = pppd_lite::mschapv2::strip_domain(&req.user)
        .escape_debug()
        .to_string();
    match checked {
        Ok(user) => {
            info!(user = %user.escape_debug(), service, "authenticated by PAM");
            Decision {
                verdict: Verdict::Accept(Accept::default()),
                user: Some(user),
                static_ip: None,
                max_sessions: None,
                authz: Authorization::default(),
            }
        }
        Err(refusal @ PamRefusal::Service { .. }) => {
            error!(user = %shown, "authentication refused: {refusal}");
            Decision::reject(REJECTED)
        }
        Err(refusal) => {
            info!(user = %shown, service, "authentication refused: {refusal}");
            Decision::reject(REJECTED)
        }
    }
}

/// [`pam_decision`] for a chain: a user PAM does not know, credentials other than PAP and a
/// PAM service that cannot start pass to the next backend; the rest is final.
pub fn pam_outcome(service: &str, req: &AuthRequest) -> super::Outcome {
    match pam_check(service, req) {
        Err(r @ (PamRefusal::UnknownUser | PamRefusal::NotPap(_))) => {
            super::Outcome::Pass(r.to_string())
        }
        Err(r @ PamRefusal::Service { .. }) => {
            error!(service, "{r}");
            super::Outcome::Pass(r.to_string())
        }
        checked => super::Outcome::Decided(Box::new(decision_of(service, req, checked))),
    }
}

/// The `system` backend: [`pam_decision`] with the service [`SYSTEM_SERVICE`].
pub fn system_decision(req: &AuthRequest) -> Decision {
    pam_decision(SYSTEM_SERVICE, req)
}

/// A PAM result code in words an admin understands, with PAM's own text.
fn plain_words(code: c_int, pam_text: &str) -> String {
    let words = match code {
        PAM_AUTH_ERR => "wrong password, unknown user or locked account",
        PAM_USER_UNKNOWN => "no such user",
        PAM_CRED_INSUFFICIENT => "not allowed to check this user's password",
        PAM_AUTHINFO_UNAVAIL => "the user database could not be reached",
        PAM_MAXTRIES => "too many attempts",
        PAM_ACCT_EXPIRED => "the account has expired",
        PAM_NEW_AUTHTOK_REQD => {
            "the password has expired and must be changed (which a VPN login cannot do)"
        }
        PAM_AUTHTOK_EXPIRED => "the password has expired",
        PAM_PERM_DENIED => "access denied (locked account or access rules)",
        _ => "refused",
    };
    format!("{words} ({pam_text})")
}

/// Answers PAM's prompts: the user name to an echoed prompt, the password to a hidden one.
struct PasswordConversation {
    user: String,
    password: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for PasswordConversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordConversation")
            .field("user", &self.user)
            .field("password", &"<secret>")
            .finish()
    }
}

impl Conversation for PasswordConversation {
    fn answer(&mut self, echo: bool, _prompt: &CStr) -> Option<&[u8]> {
        // The password is copied straight into PAM's memory (which PAM frees; the modules wipe
        // their copy); ours is wiped when the conversation is dropped. Never logged.
        Some(if echo {
            self.user.as_bytes()
        } else {
            self.password.as_slice()
        })
    }

    fn message(&mut self, error: bool, text: &CStr) {
        if error {
            debug!(message = %text.to_string_lossy(), "PAM error message");
        } else {
            debug!(message = %text.to_string_lossy(), "PAM info");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(user: &str, credentials: Credentials) -> AuthRequest {
        AuthRequest {
            id: 1,
            user: user.into(),
            credentials,
        }
    }

    fn pap(user: &str, pw: &[u8]) -> AuthRequest {
        req(
            user,
            Credentials::Pap {
                password: Zeroizing::new(pw.to_vec()),
            },
        )
    }

    #[test]
    fn only_pap_is_served() {
        let ms = req(
            "u",
            Credentials::MsChapV2 {
                authenticator_challenge: [0; 16],
                peer_challenge: [0; 16],
                nt_response: [0; 24],
            },
        );
        let e = pam_check(DEFAULT_SERVICE, &ms).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PAM can only check PAP passwords; the client used MS-CHAPv2: configure PAP or use the local or RADIUS backend"
        );
        let chap = req(
            "u",
            Credentials::ChapMd5 {
                ident: 1,
                challenge: vec![1],
                response: [0; 16],
            },
        );
        assert_eq!(
            pam_check(DEFAULT_SERVICE, &chap),
            Err(PamRefusal::NotPap("CHAP-MD5"))
        );
        let eap = req("u", Credentials::Eap { packet: vec![2] });
        assert_eq!(
            pam_check(SYSTEM_SERVICE, &eap),
            Err(PamRefusal::NotPap("EAP"))
        );
        let d = pam_decision(DEFAULT_SERVICE, &ms);
        assert_eq!(d.verdict, Verdict::reject(REJECTED));
    }

    #[test]
    fn unusable_input_is_refused_before_pam() {
        for r in [
            pap("", b"pw"),
            pap("a\0b", b"pw"),
            pap("u", b""),
            pap("u", b"p\0w"),
        ] {
            assert_eq!(pam_check(DEFAULT_SERVICE, &r), Err(PamRefusal::BadInput));
        }
    }

    #[test]
    fn conversation_debug_hides_the_password() {
        let c = PasswordConversation {
            user: "u".into(),
            password: Zeroizing::new(b"hunter2".to_vec()),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("<secret>") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn real_pam_refuses_an_unknown_user() {
        // The real libpam with the machine's PAM configuration: a service without a file of its
        // own gets /etc/pam.d/other. Whatever that says, a user that does not exist is refused
        // by PAM itself (not by a failure to start PAM).
        if let Err(m) = available() {
            eprintln!("SKIP real_pam_refuses_an_unknown_user: {m}");
            return;
        }
        let r = pam_check(
            "roadgate-test-no-such-service",
            &pap("rg-no-such-user-4711", b"pw"),
        );
        assert!(
            matches!(
                r,
                Err(PamRefusal::UnknownUser | PamRefusal::Authenticate(_))
            ),
            "{r:?}"
        );
    }

    #[test]
    fn plain_words_name_the_cause() {
        assert_eq!(
            plain_words(PAM_AUTH_ERR, "Authentication failure"),
            "wrong password, unknown user or locked account (Authentication failure)"
        );
        assert!(plain_words(PAM_ACCT_EXPIRED, "x").starts_with("the account has expired"));
    }
}
