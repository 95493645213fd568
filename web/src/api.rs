//! The JSON API under `/api/v1` (see [`crate::openapi`] for its description) and `/metrics`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::auth::{AdminCtx, api_error};
use crate::backend::{
    Backend, BackendError, CertKind, IssueRequest, RevocationReason, UserOptions,
};
use crate::{MetricsAccess, WebState, metrics, openapi, pages};

/// The API routes (authentication is layered on by [`crate::router`]).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/session", get(session))
        .route("/api/v1/status", get(status))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}/disconnect", post(disconnect))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route(
            "/api/v1/users/{name}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route("/api/v1/users/{name}/password", put(set_password))
        .route("/api/v1/certs", get(list_certs).post(issue_cert))
        .route("/api/v1/certs/{serial}/revoke", post(revoke_cert))
        .route("/api/v1/ca.pem", get(ca_pem))
        .route("/api/v1/crl", get(crl))
        .route("/api/v1/accounting", get(accounting))
        .route("/api/v1/accounting.csv", get(accounting_csv))
        .route("/api/v1/settings", get(settings))
        .route("/api/v1/logs", get(logs))
        .route("/api/v1/setup", get(setup))
        .route("/api/v1/audit", get(audit_log))
}

fn status_of(e: &BackendError) -> StatusCode {
    match e {
        BackendError::Refused(_) => StatusCode::BAD_REQUEST,
        BackendError::NotFound(_) => StatusCode::NOT_FOUND,
        BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn fail(e: &BackendError) -> Response {
    api_error(status_of(e), &e.to_string())
}

fn json_or_fail<T: serde::Serialize>(r: Result<T, BackendError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => fail(&e),
    }
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Box<Response>> {
    b.map(|Json(v)| v)
        .map_err(|e| Box::new(api_error(e.status(), &e.body_text())))
}

/// Audits a mutation and answers it: `ok` as JSON, or the error.
async fn finish<T: serde::Serialize>(
    state: &WebState,
    ctx: &AdminCtx,
    action: &str,
    target: &str,
    r: Result<T, BackendError>,
    ok_status: StatusCode,
) -> Response {
    ctx.audit_outcome(state, action, target, &r).await;
    match r {
        Ok(v) => (ok_status, Json(v)).into_response(),
        Err(e) => fail(&e),
    }
}

async fn session(Extension(ctx): Extension<AdminCtx>) -> Response {
    Json(json!({
        "admin": ctx.name,
        "csrf_token": if ctx.session.is_some() { Some(ctx.csrf) } else { None },
    }))
    .into_response()
}

async fn status(State(state): State<WebState>) -> Response {
    json_or_fail(state.backend().status().await)
}

async fn sessions(State(state): State<WebState>) -> Response {
    json_or_fail(state.backend().sessions().await)
}

async fn disconnect(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(id): Path<String>,
) -> Response {
    let r = state
        .backend()
        .disconnect(&id)
        .await
        .map(|n| json!({ "disconnected": n }));
    finish(&state, &ctx, "session.disconnect", &id, r, StatusCode::OK).await
}

async fn list_users(State(state): State<WebState>) -> Response {
    json_or_fail(state.backend().list_users().await)
}

async fn get_user(State(state): State<WebState>, Path(name): Path<String>) -> Response {
    let r = state.backend().list_users().await.and_then(|list| {
        list.into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| BackendError::NotFound(format!("There is no user named {name}.")))
    });
    json_or_fail(r)
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    static_ip: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    max_sessions: Option<u32>,
}

fn yes() -> bool {
    true
}

async fn add_user(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    b: Result<Json<NewUser>, JsonRejection>,
) -> Response {
    let u = match body(b) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let password = Zeroizing::new(u.password);
    let opts = UserOptions {
        enabled: u.enabled,
        static_ip: u.static_ip,
        max_sessions: u.max_sessions,
    };
    let r = if u.name.trim().is_empty() || password.is_empty() {
        Err(BackendError::Refused(
            "A user needs a name and a password.".into(),
        ))
    } else {
        state
            .backend()
            .add_user(u.name.trim(), &password, &opts)
            .await
    };
    let r = r.map(|()| json!({ "name": u.name.trim() }));
    finish(
        &state,
        &ctx,
        "user.add",
        u.name.trim(),
        r,
        StatusCode::CREATED,
    )
    .await
}

async fn update_user(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
    b: Result<Json<UserOptions>, JsonRejection>,
) -> Response {
    let opts = match body(b) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let r = state
        .backend()
        .update_user(&name, &opts)
        .await
        .map(|()| json!({ "name": name }));
    finish(&state, &ctx, "user.update", &name, r, StatusCode::OK).await
}

async fn delete_user(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
) -> Response {
    let r = state
        .backend()
        .delete_user(&name)
        .await
        .map(|()| json!({ "deleted": name }));
    finish(&state, &ctx, "user.delete", &name, r, StatusCode::OK).await
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
    b: Result<Json<NewPassword>, JsonRejection>,
) -> Response {
    let p = match body(b) {
        Ok(p) => Zeroizing::new(p.password),
        Err(r) => return *r,
    };
    let r = if p.is_empty() {
        Err(BackendError::Refused("The new password is empty.".into()))
    } else {
        state.backend().set_password(&name, &p).await
    };
    let r = r.map(|()| json!({ "name": name }));
    finish(&state, &ctx, "user.password", &name, r, StatusCode::OK).await
}

async fn list_certs(State(state): State<WebState>) -> Response {
    json_or_fail(state.backend().list_certs().await)
}

#[derive(Deserialize)]
struct NewCert {
    common_name: String,
    kind: CertKind,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    validity_days: Option<u32>,
}

async fn issue_cert(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    b: Result<Json<NewCert>, JsonRejection>,
) -> Response {
    let n = match body(b) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let days = n.validity_days.unwrap_or(365).to_string();
    let req = pages::parse_issue(
        &n.common_name,
        n.kind.as_str(),
        n.user.as_deref().unwrap_or(""),
        &days,
    );
    let r = match req {
        Err(msg) => Err(BackendError::Refused(msg)),
        Ok(req) => state.backend().issue_cert(&req).await.map(|c| (req, c)),
    };
    let target = n.common_name.trim().to_string();
    let r = r.map(|(req, c): (IssueRequest, _)| {
        let b64 = base64::engine::general_purpose::STANDARD;
        json!({
            "serial": c.serial,
            "common_name": req.common_name,
            "password": c.password,
            "p12_legacy_base64": b64.encode(&c.p12_legacy),
            "p12_aes_base64": b64.encode(&c.p12_aes),
        })
    });
    finish(&state, &ctx, "cert.issue", &target, r, StatusCode::CREATED).await
}

#[derive(Deserialize)]
struct Revoke {
    reason: RevocationReason,
}

async fn revoke_cert(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(serial): Path<String>,
    b: Result<Json<Revoke>, JsonRejection>,
) -> Response {
    let rv = match body(b) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let r = state
        .backend()
        .revoke_cert(&serial, rv.reason)
        .await
        .map(|()| json!({ "revoked": serial }));
    let target = format!("{serial} {}", rv.reason.as_str());
    finish(&state, &ctx, "cert.revoke", &target, r, StatusCode::OK).await
}

fn typed(content_type: &'static str, body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn ca_pem(State(state): State<WebState>) -> Response {
    match state.backend().ca_cert_pem().await {
        Ok(pem) => typed("application/x-pem-file", pem.into_bytes()),
        Err(e) => fail(&e),
    }
}

async fn crl(State(state): State<WebState>) -> Response {
    match state.backend().crl_der().await {
        Ok(der) => typed("application/pkix-crl", der),
        Err(e) => fail(&e),
    }
}

#[derive(Deserialize)]
struct AcctQuery {
    since: Option<String>,
    limit: Option<usize>,
}

async fn accounting(State(state): State<WebState>, Query(q): Query<AcctQuery>) -> Response {
    let since = match pages::parse_since(q.since.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(msg) => return api_error(StatusCode::BAD_REQUEST, &msg),
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    json_or_fail(state.backend().accounting(since, limit).await)
}

async fn accounting_csv(State(state): State<WebState>, Query(q): Query<AcctQuery>) -> Response {
    let since = match pages::parse_since(q.since.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(msg) => return api_error(StatusCode::BAD_REQUEST, &msg),
    };
    match state.backend().accounting_csv(since).await {
        Ok(csv) => typed("text/csv; charset=utf-8", csv.into_bytes()),
        Err(e) => fail(&e),
    }
}

async fn settings(State(state): State<WebState>) -> Response {
    json_or_fail(state.backend().settings().await)
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn logs(State(state): State<WebState>, Query(q): Query<LimitQuery>) -> Response {
    let limit = q.limit.unwrap_or(300).clamp(1, 5000);
    json_or_fail(state.backend().recent_logs(limit).await)
}

async fn setup(State(state): State<WebState>) -> Response {
    json_or_fail(state.backend().client_setup().await)
}

async fn audit_log(State(state): State<WebState>, Query(q): Query<LimitQuery>) -> Response {
    let limit = q.limit.unwrap_or(300).clamp(1, 5000);
    let store = state.admins().clone();
    match tokio::task::spawn_blocking(move || store.recent_audit(limit)).await {
        Ok(Ok(entries)) => Json(entries).into_response(),
        _ => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the audit log cannot be read",
        ),
    }
}

/// `GET /api/v1/openapi.json` (public: it holds no secret).
pub async fn openapi_doc() -> Response {
    Json(openapi::document()).into_response()
}

/// The exposition for `backend`'s figures.
pub async fn metrics_response(backend: &dyn Backend, version: &str) -> Response {
    match backend.metrics().await {
        Ok(m) => {
            let mut resp = metrics::render(&m, version).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            resp
        }
        Err(e) => (status_of(&e), e.to_string()).into_response(),
    }
}

/// `GET /metrics` on the main router, as [`MetricsAccess`] allows.
pub async fn metrics_main(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match &state.config().metrics {
        MetricsAccess::Disabled => pages::not_found().await,
        MetricsAccess::Open => metrics_response(state.backend(), &state.config().version).await,
        MetricsAccess::BearerToken(expected) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                metrics_response(state.backend(), &state.config().version).await
            } else {
                let mut resp =
                    (StatusCode::UNAUTHORIZED, "bearer token required\n").into_response();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"roadgate metrics\""),
                );
                resp
            }
        }
    }
}
