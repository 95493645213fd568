//! The authentication chain at run time: each login walks `[auth] backends` in order (see
//! docs/aaa.md): a backend that cannot check the method, does not know the user or cannot be
//! reached passes to the next; any other answer is final. Local users and PAM block, so they
//! run on tokio's blocking pool; RADIUS answers through its client task.

use std::sync::{Arc, Mutex};

use pppd_lite::AuthRequest;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::radius::Command;
use crate::aaa::backend::{can_serve, protocol_name};
use crate::aaa::local::UserStore;
use crate::aaa::{self, AuthContext, BackendKind, Decision, Outcome, REJECTED};
use crate::radius::client::AuthFailure;

/// What the chain needs: the backends in order and how to reach each.
#[derive(Debug)]
pub struct Backends {
    pub chain: Vec<BackendKind>,
    pub users: Option<Arc<Mutex<UserStore>>>,
    pub pam_service: String,
    pub radius: Option<mpsc::Sender<Command>>,
}

/// Runs the chain for one request; `state` is the RADIUS State of an EAP conversation (it
/// comes back changed with an Access-Challenge).
pub async fn decide(
    backends: Arc<Backends>,
    ctx: AuthContext,
    request: AuthRequest,
    state: Option<Vec<u8>>,
) -> (Decision, Option<Vec<u8>>) {
    let proto = request.credentials.protocol();
    let shown = pppd_lite::mschapv2::strip_domain(&request.user)
        .escape_debug()
        .to_string();
    let mut why = Vec::new();
    for &backend in &backends.chain {
        if !can_serve(backend, proto) {
            why.push(format!(
                "{}: cannot check {}",
                backend.name(),
                protocol_name(proto)
            ));
            continue;
        }
        let outcome = match backend {
            BackendKind::Local => {
                let Some(users) = backends.users.clone() else {
                    why.push("local: no user database".into());
                    continue;
                };
                let req = request.clone();
                blocking(move || match users.lock() {
                    Ok(store) => aaa::local_outcome(&store, &req),
                    Err(_) => Outcome::Pass("the local user database is unavailable".into()),
                })
                .await
            }
            BackendKind::Pam | BackendKind::System => {
                let service = if backend == BackendKind::Pam {
                    backends.pam_service.clone()
                } else {
                    aaa::pam::SYSTEM_SERVICE.to_string()
                };
                let req = request.clone();
                blocking(move || aaa::pam::pam_outcome(&service, &req)).await
            }
            BackendKind::Radius => match radius(&backends, &ctx, &request, state.clone()).await {
                Ok((decision, new_state)) => return (decision, new_state),
                Err(e) => Outcome::Pass(e),
            },
        };
        match outcome {
            Outcome::Decided(d) => return (*d, None),
            Outcome::Pass(reason) => why.push(format!("{}: {reason}", backend.name())),
        }
    }
    info!(user = %shown, method = protocol_name(proto), "authentication refused: no backend accepted the user ({})", why.join("; "));
    (Decision::reject(REJECTED), None)
}

/// One blocking backend on tokio's blocking pool.
async fn blocking(f: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Outcome::Pass(format!("the check failed: {e}")))
}

/// Asks RADIUS; `Err` when no server answered (the chain goes on).
async fn radius(
    backends: &Backends,
    ctx: &AuthContext,
    request: &AuthRequest,
    state: Option<Vec<u8>>,
) -> Result<(Decision, Option<Vec<u8>>), String> {
    let Some(tx) = &backends.radius else {
        return Err("no RADIUS client".into());
    };
    let (reply, answer) = oneshot::channel();
    tx.send(Command::Authenticate {
        ctx: ctx.clone(),
        request: request.clone(),
        state,
        reply,
    })
    .await
    .map_err(|_| "the RADIUS client has stopped".to_string())?;
    let user = pppd_lite::mschapv2::strip_domain(&request.user).to_string();
    match answer.await {
        Ok(Ok(a)) => {
            let accepted = matches!(a.verdict, pppd_lite::Verdict::Accept(_));
            if accepted {
                info!(user = %user.escape_debug(), server = %a.server, "authenticated by RADIUS");
            } else if let pppd_lite::Verdict::Reject { message } = &a.verdict {
                info!(user = %user.escape_debug(), server = %a.server, reason = %message.escape_debug(), "authentication refused by RADIUS (Access-Reject)");
            }
            Ok((
                Decision {
                    verdict: a.verdict,
                    user: accepted.then_some(user),
                    static_ip: None,
                    max_sessions: None,
                    authz: a.authz,
                },
                a.state,
            ))
        }
        Ok(Err(
            e @ (AuthFailure::Timeout | AuthFailure::NoServer | AuthFailure::Unsigned { .. }),
        )) => {
            warn!(user = %user.escape_debug(), "RADIUS: {e}");
            Err(e.to_string())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the RADIUS client dropped the request".into()),
    }
}
