//! Logins, sessions, CSRF tokens, login throttling and the audit helper.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::admins::AuditEntry;
use crate::util::{now_unix, random_token};
use crate::{LoginLimits, WebState, pages};

/// The session cookie. The `__Host-` prefix makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`.
pub const COOKIE: &str = "__Host-roadgate";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
/// The header that carries the CSRF token (API calls, scripts).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A message shown once on the next page.
#[derive(Debug, Clone)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

/// A freshly issued certificate's files, downloadable once each until `expires`.
pub struct PendingIssue {
    pub serial: String,
    pub common_name: String,
    pub expires: Instant,
    pub password: Option<Zeroizing<String>>,
    pub legacy: Option<Zeroizing<Vec<u8>>>,
    pub aes: Option<Zeroizing<Vec<u8>>>,
    pub mobileconfig: Option<Zeroizing<String>>,
}

/// One logged-in administrator.
pub struct AdminSession {
    pub admin: String,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
    pub flash: Option<Flash>,
    pub issued: Vec<PendingIssue>,
}

/// The sessions, by SHA-256 of their token (the token itself is only in the browser).
#[derive(Default)]
pub struct SessionStore {
    by_hash: HashMap<[u8; 32], AdminSession>,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl SessionStore {
    /// Starts a session; returns its token (for the cookie).
    fn create(&mut self, admin: &str) -> String {
        let token = random_token();
        let now = Instant::now();
        self.by_hash.insert(
            token_hash(&token),
            AdminSession {
                admin: admin.to_string(),
                csrf: random_token(),
                created: now,
                last_seen: now,
                flash: None,
                issued: Vec::new(),
            },
        );
        token
    }

    /// Forgets expired sessions and expired certificate files.
    fn prune(&mut self, idle: Duration, absolute: Duration) {
        let now = Instant::now();
        self.by_hash.retain(|_, s| {
            now.duration_since(s.last_seen) < idle && now.duration_since(s.created) < absolute
        });
        for s in self.by_hash.values_mut() {
            s.issued.retain(|p| p.expires > now);
        }
    }

    /// The live session for `hash`, touched.
    pub fn get_mut(&mut self, hash: &[u8; 32]) -> Option<&mut AdminSession> {
        self.by_hash.get_mut(hash)
    }

    fn remove(&mut self, hash: &[u8; 32]) {
        self.by_hash.remove(hash);
    }
}

/// Who is making a request that passed authentication.
#[derive(Debug, Clone)]
pub struct AdminCtx {
    pub name: String,
    /// The session's token hash; `None` for an API token.
    pub session: Option<[u8; 32]>,
    pub csrf: String,
    pub source: IpAddr,
}

impl AdminCtx {
    /// Writes an audit record of this administrator's `action` on `target` with its `result`
    /// ("ok" or the reason it failed).
    pub async fn audit(&self, state: &WebState, action: &str, target: &str, result: &str) {
        audit(state, &self.name, self.source, action, target, result).await;
    }

    /// [`AdminCtx::audit`] of an outcome: "ok", or the error in the words shown to the admin.
    pub async fn audit_outcome<T, E: std::fmt::Display>(
        &self,
        state: &WebState,
        action: &str,
        target: &str,
        outcome: &Result<T, E>,
    ) {
        let result = match outcome {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        self.audit(state, action, target, &result).await;
    }

    /// Runs `f` on this request's session, if it still exists.
    pub fn with_session<T>(
        &self,
        state: &WebState,
        f: impl FnOnce(&mut AdminSession) -> T,
    ) -> Option<T> {
        let hash = self.session?;
        state.sessions().get_mut(&hash).map(f)
    }

    /// Sets the message for the next page.
    pub fn flash(&self, state: &WebState, ok: bool, text: impl Into<String>) {
        let text = text.into();
        self.with_session(state, |s| s.flash = Some(Flash { ok, text }));
    }

    /// Takes the message set by the previous request.
    pub fn take_flash(&self, state: &WebState) -> Option<Flash> {
        self.with_session(state, |s| s.flash.take()).flatten()
    }
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
    locked_until: Option<Instant>,
}

/// Counts failed logins per account name and per source address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    accounts: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
}

/// At most this many names and addresses are tracked; beyond it the oldest are dropped.
const MAX_TRACKED: usize = 10_000;

fn lockout(limits: &LoginLimits, count: u32, threshold: u32) -> Option<Duration> {
    if count < threshold {
        return None;
    }
    let doublings = (count - threshold).min(20);
    Some(
        limits
            .base_lockout
            .saturating_mul(1u32 << doublings)
            .min(limits.max_lockout),
    )
}

fn remaining(f: Option<&Failures>, now: Instant) -> Option<Duration> {
    let until = f?.locked_until?;
    (until > now).then(|| until - now)
}

fn forget<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Failures>,
    limits: &LoginLimits,
    now: Instant,
) {
    map.retain(|_, f| {
        f.locked_until.is_some_and(|u| u > now)
            || f.last
                .is_some_and(|l| now.duration_since(l) < limits.forget_after)
    });
    if map.len() > MAX_TRACKED {
        let mut by_age: Vec<(K, Option<Instant>)> =
            map.iter().map(|(k, f)| (k.clone(), f.last)).collect();
        by_age.sort_by_key(|(_, last)| *last);
        for (k, _) in by_age.into_iter().take(map.len() - MAX_TRACKED) {
            map.remove(&k);
        }
    }
}

impl LoginThrottle {
    /// How long `name` or `ip` is still locked, if it is.
    fn locked(&mut self, limits: &LoginLimits, name: &str, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        forget(&mut self.accounts, limits, now);
        forget(&mut self.addresses, limits, now);
        let a = remaining(self.accounts.get(name), now);
        let b = remaining(self.addresses.get(&ip), now);
        a.max(b)
    }

    /// Counts a failure; returns the lockout it starts, if any.
    fn failed(&mut self, limits: &LoginLimits, name: &str, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut started = None;
        let mut bump = |f: &mut Failures, threshold: u32| {
            f.count = f.count.saturating_add(1);
            f.last = Some(now);
            if let Some(d) = lockout(limits, f.count, threshold) {
                f.locked_until = Some(now + d);
                started = Some(started.map_or(d, |s: Duration| s.max(d)));
            }
        };
        bump(
            self.accounts.entry(name.to_string()).or_default(),
            limits.per_account,
        );
        bump(self.addresses.entry(ip).or_default(), limits.per_address);
        started
    }

    /// Before a password is checked: refuses it while `name` or `ip` is locked (the time
    /// left), else counts it as a failure now (the lockout that starts if it fails, if any).
    /// Counting before the (slow) hash, in one step with the check, means parallel guesses
    /// cannot all pass the check before any of them is counted.
    fn begin(
        &mut self,
        limits: &LoginLimits,
        name: &str,
        ip: IpAddr,
    ) -> Result<Option<Duration>, Duration> {
        if let Some(wait) = self.locked(limits, name, ip) {
            return Err(wait);
        }
        Ok(self.failed(limits, name, ip))
    }

    /// A successful login clears the account's failures and takes back the failure
    /// [`LoginThrottle::begin`] counted for the address (not its other failures: one good
    /// password must not reset the count of guesses at other accounts).
    fn succeeded(&mut self, limits: &LoginLimits, name: &str, ip: IpAddr) {
        self.accounts.remove(name);
        take_back(self.addresses.get_mut(&ip), limits.per_address);
    }

    /// The password was not checked after all (no permit for the hash): takes back the failure
    /// [`LoginThrottle::begin`] counted, for the account and the address.
    fn not_checked(&mut self, limits: &LoginLimits, name: &str, ip: IpAddr) {
        take_back(self.accounts.get_mut(name), limits.per_account);
        take_back(self.addresses.get_mut(&ip), limits.per_address);
    }
}

/// Takes one failure back; a lockout ends when the count falls below its threshold.
fn take_back(f: Option<&mut Failures>, threshold: u32) {
    if let Some(f) = f {
        f.count = f.count.saturating_sub(1);
        if f.count < threshold {
            f.locked_until = None;
        }
    }
}

/// The client's address (from the connection; `0.0.0.0` if the server did not record it).
pub fn client_ip(req_extensions: &axum::http::Extensions) -> IpAddr {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Writes an audit record (and a log line); failures to write are logged, not fatal.
pub async fn audit(
    state: &WebState,
    admin: &str,
    source: IpAddr,
    action: &str,
    target: &str,
    result: &str,
) {
    let entry = AuditEntry {
        ts: now_unix(),
        admin: admin.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        source: source.to_string(),
        result: result.to_string(),
    };
    tracing::info!(
        admin = %entry.admin, action = %entry.action, target = %entry.target,
        source = %entry.source, result = %entry.result, "web admin action"
    );
    let store = state.admins().clone();
    let written = tokio::task::spawn_blocking(move || store.audit(&entry)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot write the audit record: {e}"),
        Err(e) => tracing::error!("cannot write the audit record: {e}"),
    }
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == COOKIE
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The header the page script sends on its periodic refreshes; such requests do not count as
/// activity, so an open dashboard does not keep a session alive past its idle limit.
pub const BACKGROUND_HEADER: &str = "x-background-refresh";

/// Looks up the session named by the request's cookie and, unless the request is a background
/// refresh, notes the activity.
fn session_from_cookie(
    state: &WebState,
    headers: &HeaderMap,
) -> Option<([u8; 32], String, String)> {
    let token = cookie_value(headers)?;
    let hash = token_hash(&token);
    let cfg = state.config();
    let mut sessions = state.sessions();
    sessions.prune(cfg.session_idle, cfg.session_absolute);
    let s = sessions.get_mut(&hash)?;
    if !headers.contains_key(BACKGROUND_HEADER) {
        s.last_seen = Instant::now();
    }
    Some((hash, s.admin.clone(), s.csrf.clone()))
}

fn session_cookie(token: &str, max_age: Duration) -> HeaderValue {
    let v = format!(
        "{COOKIE}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-roadgate=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
    )
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a request failed the CSRF check.
enum CsrfFailure {
    Missing,
    Wrong,
    TooLarge,
}

/// Checks the CSRF token of an unsafe request (header, or form field of a urlencoded body) and
/// returns the request rebuilt with its body.
async fn check_csrf(req: Request, expected: &str, limit: usize) -> Result<Request, CsrfFailure> {
    let matches = |given: &str| -> bool { bool::from(given.as_bytes().ct_eq(expected.as_bytes())) };
    if let Some(given) = req.headers().get(CSRF_HEADER) {
        let given = given.to_str().unwrap_or("");
        return if matches(given) {
            Ok(req)
        } else {
            Err(CsrfFailure::Wrong)
        };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(CsrfFailure::Missing);
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| CsrfFailure::TooLarge)?;
    let given = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match given {
        None => Err(CsrfFailure::Missing),
        Some(g) if !matches(&g) => Err(CsrfFailure::Wrong),
        Some(_) => Ok(Request::from_parts(parts, Body::from(bytes))),
    }
}

fn csrf_message(f: &CsrfFailure) -> &'static str {
    match f {
        CsrfFailure::Missing => {
            "This request has no CSRF token. Forms of this site send it by themselves: reload the page and try again. API clients send the X-CSRF-Token header (from GET /api/v1/session)."
        }
        CsrfFailure::Wrong => {
            "This request's CSRF token is not this session's (the page was older than your login, or it came from elsewhere). Reload the page and try again."
        }
        CsrfFailure::TooLarge => "The request body is too large.",
    }
}

/// Page routes: a session is required (else a redirect to the login page), and the CSRF token
/// for every unsafe method.
pub async fn require_page_session(
    State(state): State<WebState>,
    mut req: Request,
    next: Next,
) -> Response {
    let source = client_ip(req.extensions());
    let Some((hash, name, csrf)) = session_from_cookie(&state, req.headers()) else {
        if is_unsafe(req.method()) {
            return pages::message_page(
                StatusCode::UNAUTHORIZED,
                "Logged out",
                "Your session has ended. Log in again.",
            );
        }
        let next_path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let target = format!("/login?next={}", urlencode(next_path));
        return Redirect::to(&target).into_response();
    };
    if is_unsafe(req.method()) {
        req = match check_csrf(req, &csrf, state.config().body_limit).await {
            Ok(r) => r,
            Err(CsrfFailure::TooLarge) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            Err(f) => {
                audit(&state, &name, source, "csrf", "", csrf_message(&f)).await;
                return pages::message_page(StatusCode::FORBIDDEN, "Refused", csrf_message(&f));
            }
        };
    }
    req.extensions_mut().insert(AdminCtx {
        name,
        session: Some(hash),
        csrf,
        source,
    });
    next.run(req).await
}

/// API routes: a session cookie (with `X-CSRF-Token` on unsafe methods) or an API token.
pub async fn require_api_auth(
    State(state): State<WebState>,
    mut req: Request,
    next: Next,
) -> Response {
    let source = client_ip(req.extensions());
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let ctx = if let Some(token) = bearer {
        let store = state.admins().clone();
        let found = tokio::task::spawn_blocking(move || store.verify_api_token(&token)).await;
        match found {
            Ok(Ok(Some(name))) => AdminCtx {
                name,
                session: None,
                csrf: String::new(),
                source,
            },
            Ok(Ok(None)) => return api_error(StatusCode::UNAUTHORIZED, "unknown API token"),
            _ => {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot check the API token",
                );
            }
        }
    } else {
        let Some((hash, name, csrf)) = session_from_cookie(&state, req.headers()) else {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "log in first (session cookie) or send Authorization: Bearer <API token>",
            );
        };
        if is_unsafe(req.method()) {
            req = match check_csrf(req, &csrf, state.config().body_limit).await {
                Ok(r) => r,
                Err(CsrfFailure::TooLarge) => {
                    return api_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
                }
                Err(f) => {
                    audit(&state, &name, source, "csrf", "", csrf_message(&f)).await;
                    return api_error(StatusCode::FORBIDDEN, csrf_message(&f));
                }
            };
        }
        AdminCtx {
            name,
            session: Some(hash),
            csrf,
            source,
        }
    };
    req.extensions_mut().insert(ctx);
    next.run(req).await
}

/// `{"error": message}` with `status`.
pub fn api_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only a local absolute path is followed after the login (no `//host`, no `\`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && !n.starts_with("/login") =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if session_from_cookie(&state, &headers).is_some() {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    pages::login_page(StatusCode::OK, q.next.as_deref().unwrap_or("/"), "", None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// `POST /login`.
pub async fn login(
    State(state): State<WebState>,
    ConnectInfoOpt(source): ConnectInfoOpt,
    Form(form): Form<LoginForm>,
) -> Response {
    let limits = state.config().login_limits.clone();
    let name = form.username.trim().to_string();
    let next = form.next.as_deref().unwrap_or("/");
    if name.is_empty() || name.len() > 64 {
        return pages::login_page(
            StatusCode::BAD_REQUEST,
            next,
            &name,
            Some("Enter your administrator name and password."),
        );
    }
    // Counted as a failure before the hash is checked (taken back when it is right).
    let attempt = state.throttle().begin(&limits, &name, source);
    let lockout_if_wrong = match attempt {
        Ok(l) => l,
        Err(wait) => {
            audit(&state, &name, source, "login", &name, "locked").await;
            let secs = wait.as_secs().max(1);
            let mut resp = pages::login_page(
                StatusCode::TOO_MANY_REQUESTS,
                next,
                &name,
                Some(&format!(
                    "Too many failed logins for this account or from this address. Try again in {secs} seconds."
                )),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
    };
    let store = state.admins().clone();
    let (n, pw) = (name.clone(), Zeroizing::new(form.password));
    let verdict = state
        .password_check(move || store.verify_login(&n, &pw))
        .await;
    let ok = match verdict {
        None => {
            // Too many password checks at once: no password was tried, so the failure counted
            // by begin is taken back.
            state.throttle().not_checked(&limits, &name, source);
            tracing::warn!(admin = %name, %source, "login refused: too many password checks at once");
            let mut resp = pages::login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                next,
                &name,
                Some("The server is busy checking other logins. Try again in a moment."),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        Some(Ok(Ok(ok))) => ok,
        Some(Ok(Err(e))) => {
            tracing::error!("login check failed: {e}");
            return pages::login_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                next,
                &name,
                Some("The administrator database cannot be read; see the server log."),
            );
        }
        Some(Err(e)) => {
            tracing::error!("login check failed: {e}");
            return pages::login_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                next,
                &name,
                Some("The login could not be checked; see the server log."),
            );
        }
    };
    if !ok {
        let result = match lockout_if_wrong {
            Some(d) => format!("wrong password; locked for {} s", d.as_secs()),
            None => "wrong password".to_string(),
        };
        audit(&state, &name, source, "login", &name, &result).await;
        return pages::login_page(
            StatusCode::UNAUTHORIZED,
            next,
            &name,
            Some("Wrong administrator name or password."),
        );
    }
    state.throttle().succeeded(&limits, &name, source);
    let store = state.admins().clone();
    let n = name.clone();
    let _ = tokio::task::spawn_blocking(move || store.record_login(&n)).await;
    audit(&state, &name, source, "login", &name, "ok").await;
    let token = {
        let cfg = state.config();
        let mut sessions = state.sessions();
        sessions.prune(cfg.session_idle, cfg.session_absolute);
        sessions.create(&name)
    };
    let mut resp = Redirect::to(&safe_next(Some(next))).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, state.config().session_absolute),
    );
    resp
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<WebState>,
    axum::Extension(ctx): axum::Extension<AdminCtx>,
) -> Response {
    if let Some(hash) = ctx.session {
        state.sessions().remove(&hash);
    }
    audit(&state, &ctx.name, ctx.source, "logout", &ctx.name, "ok").await;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie());
    resp
}

/// The client's address as an extractor (never fails).
pub struct ConnectInfoOpt(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectInfoOpt {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ConnectInfoOpt(client_ip(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_and_caps() {
        let l = LoginLimits {
            per_account: 3,
            base_lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(35),
            ..Default::default()
        };
        assert_eq!(lockout(&l, 2, 3), None);
        assert_eq!(lockout(&l, 3, 3), Some(Duration::from_secs(10)));
        assert_eq!(lockout(&l, 4, 3), Some(Duration::from_secs(20)));
        assert_eq!(lockout(&l, 5, 3), Some(Duration::from_secs(35)));
        assert_eq!(lockout(&l, 500, 3), Some(Duration::from_secs(35)));
    }

    #[test]
    fn throttle_counts_accounts_and_addresses() {
        let l = LoginLimits {
            per_account: 2,
            per_address: 3,
            ..Default::default()
        };
        let mut t = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.failed(&l, "a", ip).is_none());
        assert!(t.failed(&l, "a", ip).is_some());
        assert!(t.locked(&l, "a", ip).is_some());
        // Another account from the same address: the address is not locked yet.
        assert!(t.locked(&l, "b", "192.0.2.2".parse().unwrap()).is_none());
        assert!(t.failed(&l, "b", ip).is_some()); // third failure from ip
        assert!(t.locked(&l, "c", ip).is_some());
    }

    #[test]
    fn begin_counts_before_the_check_and_success_takes_it_back() {
        let l = LoginLimits {
            per_account: 3,
            per_address: 3,
            ..Default::default()
        };
        let mut t = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        // Three attempts begun (none finished yet): the third starts the lockout, the fourth
        // is refused before any hash is checked.
        assert_eq!(t.begin(&l, "a", ip), Ok(None));
        assert_eq!(t.begin(&l, "a", ip), Ok(None));
        assert!(t.begin(&l, "a", ip).unwrap().is_some());
        assert!(t.begin(&l, "a", ip).is_err());
        // A good password from another address for another account: its provisional count
        // is taken back, the address is not locked by it.
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        for _ in 0..5 {
            assert!(t.begin(&l, "b", other).is_ok());
            t.succeeded(&l, "b", other);
        }
        assert!(t.locked(&l, "c", other).is_none());
        // Attempts whose hash was never checked are taken back, lockout included.
        let third: IpAddr = "192.0.2.11".parse().unwrap();
        for _ in 0..5 {
            assert!(t.begin(&l, "d", third).is_ok());
            t.not_checked(&l, "d", third);
        }
        assert!(t.locked(&l, "d", third).is_none());
    }

    #[test]
    fn next_is_local_only() {
        assert_eq!(safe_next(Some("/users")), "/users");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; __Host-roadgate=tok; c=d"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("tok"));
    }
}
