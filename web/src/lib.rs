//! Roadgate's admin web UI and JSON API.
//!
//! The crate knows nothing of the VPN server: it asks for everything through the [`Backend`]
//! trait ([`backend`] documents the contract), which the server implements and hands over as an
//! `Arc<dyn Backend>`. The server runs the UI in-process on its tokio runtime:
//!
//! ```no_run
//! # async fn run(backend: std::sync::Arc<dyn web::Backend>) -> Result<(), Box<dyn std::error::Error>> {
//! let admins = web::AdminStore::open(std::path::Path::new("/var/lib/roadgate/web.db"))?;
//! let state = web::WebState::new(backend, admins, web::WebConfig::default());
//! let tls = web::tls_config_from_pem(&std::fs::read("web.crt")?, &std::fs::read("web.key")?)?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! web::serve(listener, tls, web::router(state), std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! # What it serves
//!
//! * Pages (server-rendered HTML, one embedded stylesheet, one small script that only enhances:
//!   auto-refresh of the session table, confirmation dialogs): `/login`, `/` (dashboard with the
//!   live sessions), `/users`, `/certs`, `/setup` (client profiles), `/accounting`, `/settings`,
//!   `/logs`, `/audit`.
//! * The JSON API under `/api/v1` (same operations; [`openapi`] describes it, served at
//!   `/api/v1/openapi.json`).
//! * `/metrics` in the Prometheus text format, as [`MetricsAccess`] allows; or on a separate
//!   listener with [`metrics_router`].
//!
//! # Security
//!
//! * HTTPS only ([`serve`] with rustls); [`serve_plain_http`] exists for tests and for a
//!   loopback-only metrics listener.
//! * Administrators live in the crate's own SQLite file ([`admins`]), passwords as Argon2id.
//!   A login makes a 256-bit random session token, sent as the cookie `__Host-roadgate` with
//!   `Secure; HttpOnly; SameSite=Strict; Path=/`; only its SHA-256 is kept in memory. Sessions end
//!   after 30 minutes idle or 12 hours in all ([`WebConfig`]).
//! * Every POST/PUT/PATCH/DELETE needs the session's CSRF token (form field `csrf_token` or
//!   header `X-CSRF-Token`), compared in constant time; a request whose `Origin` or
//!   `Sec-Fetch-Site` says another site is refused too. API requests with
//!   `Authorization: Bearer <API token>` need no CSRF token.
//! * Failed logins are counted per source address and per account name; past the limit the
//!   login is locked for a doubling time ([`LoginLimits`]). Every login and every change is
//!   written to the audit table.
//! * Responses carry a strict Content-Security-Policy (no inline script or style),
//!   `X-Frame-Options: DENY`, `Referrer-Policy: same-origin` (a browser then still sends
//!   `Origin` on this site's own form posts) and `Cache-Control: no-store`.
//!   Request bodies over [`WebConfig::body_limit`] get 413; paths with `..` segments get 400.
//!
//! # Stable hooks for browser tests
//!
//! Forms and the elements a test clicks carry `data-testid` attributes: `login-form`,
//! `user-form`, `user-edit-form`, `password-form`, `cert-issue-form`, `p12-password`,
//! `download-legacy`, `download-aes`, `download-mobileconfig`, `session-row` (with
//! `data-session-id`), `disconnect-button`, `logout-button`, `flash`, `error`.
//! The confirmation of a disconnect or delete is a page of its own when scripts are off, a
//! `confirm()` dialog when they are on.

pub mod admins;
mod api;
mod assets;
mod auth;
pub mod backend;
pub mod metrics;
pub mod openapi;
mod pages;
pub mod profiles;
mod security;
mod serve;
mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

pub use admins::{AdminError, AdminStore, create_admin, set_admin_password};
pub use backend::{
    AcctRow, AcctStatus, Backend, BackendError, BackendResult, CertKind, CertView, CheckView,
    Histogram, IssueRequest, IssuedCert, LogLine, MetricsView, RadiusMetrics, Revocation,
    RevocationReason, SessionView, Setting, SetupInfo, StatusView, UserOptions, UserView,
    async_trait,
};
pub use serve::{ServeError, serve, serve_plain_http, tls_config_from_der, tls_config_from_pem};

/// Limits on failed logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures of one account name before it is locked.
    pub per_account: u32,
    /// Failures from one source address before it is locked.
    pub per_address: u32,
    /// The first lockout; each further failure doubles it.
    pub base_lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// Failures older than this (with no lockout running) are forgotten.
    pub forget_after: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_account: 5,
            per_address: 20,
            base_lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
        }
    }
}

/// Who may read `/metrics` on the main router.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum MetricsAccess {
    /// No `/metrics` on the main listener (404); serve [`metrics_router`] on a separate,
    /// private bind instead (e.g. `127.0.0.1:9469`, unauthenticated, plain HTTP).
    #[default]
    Disabled,
    /// `/metrics` on the main listener, for `Authorization: Bearer <this token>` only (the
    /// `bearer_token` of a Prometheus scrape job).
    BearerToken(String),
    /// `/metrics` on the main listener without authentication. Only for a listener that only
    /// trusted hosts reach.
    Open,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAccess::Disabled => f.write_str("Disabled"),
            MetricsAccess::BearerToken(_) => f.write_str("BearerToken(<hidden>)"),
            MetricsAccess::Open => f.write_str("Open"),
        }
    }
}

/// Settings of the web UI.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after the login, whatever happens.
    pub session_absolute: Duration,
    pub login_limits: LoginLimits,
    /// How long the files of a freshly issued certificate stay downloadable.
    pub p12_ttl: Duration,
    /// The largest request body, in bytes (413 beyond).
    pub body_limit: usize,
    pub metrics: MetricsAccess,
    /// The server's version, for the page footer and `roadgate_build_info`.
    pub version: String,
    /// Send `Strict-Transport-Security` (leave on when serving HTTPS).
    pub hsts: bool,
    /// Password hashes (Argon2id) checked at once at most: each costs ~20 MB and tens of ms
    /// of a core, so a burst of logins must not take the machine.
    pub argon2_permits: usize,
    /// How long a login waits for one of those; after it the answer is 503 with Retry-After.
    pub argon2_wait: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 60 * 60),
            login_limits: LoginLimits::default(),
            p12_ttl: Duration::from_secs(10 * 60),
            body_limit: 64 * 1024,
            metrics: MetricsAccess::Disabled,
            version: env!("CARGO_PKG_VERSION").to_string(),
            hsts: true,
            argon2_permits: 2,
            argon2_wait: Duration::from_secs(3),
        }
    }
}

/// Everything the handlers share: the backend, the admin database, the sessions.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    admins: AdminStore,
    config: WebConfig,
    sessions: Mutex<auth::SessionStore>,
    throttle: Mutex<auth::LoginThrottle>,
    /// Bounds the password checks running at once ([`WebConfig::argon2_permits`]).
    argon2: Arc<tokio::sync::Semaphore>,
    /// Password checks running now, and the most seen at once.
    argon2_active: AtomicUsize,
    argon2_peak: AtomicUsize,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl WebState {
    /// The state for [`router`].
    pub fn new(backend: Arc<dyn Backend>, admins: AdminStore, config: WebConfig) -> WebState {
        WebState {
            inner: Arc::new(Inner {
                backend,
                admins,
                sessions: Mutex::new(auth::SessionStore::default()),
                throttle: Mutex::new(auth::LoginThrottle::default()),
                argon2: Arc::new(tokio::sync::Semaphore::new(config.argon2_permits.max(1))),
                argon2_active: AtomicUsize::new(0),
                argon2_peak: AtomicUsize::new(0),
                config,
            }),
        }
    }

    /// The most password checks (Argon2id) that ran at once since the start.
    pub fn argon2_peak(&self) -> usize {
        self.inner.argon2_peak.load(Ordering::SeqCst)
    }

    /// The semaphore bounding the password checks (tests hold its permits to see the 503).
    #[doc(hidden)]
    pub fn argon2_semaphore(&self) -> Arc<tokio::sync::Semaphore> {
        self.inner.argon2.clone()
    }

    /// Runs the password check `f` on the blocking pool under a permit, counting it. The
    /// permit moves into the blocking task, so that it is held until the hash is done even if
    /// the request is dropped meanwhile. `None`: no permit within [`WebConfig::argon2_wait`].
    async fn password_check<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<Result<T, tokio::task::JoinError>> {
        let wait = self.config().argon2_wait;
        let permit = tokio::time::timeout(wait, self.inner.argon2.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let state = self.clone();
        Some(
            tokio::task::spawn_blocking(move || {
                let inner = &state.inner;
                let now = inner.argon2_active.fetch_add(1, Ordering::SeqCst) + 1;
                inner.argon2_peak.fetch_max(now, Ordering::SeqCst);
                let out = f();
                inner.argon2_active.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
                out
            })
            .await,
        )
    }

    fn backend(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    fn admins(&self) -> &AdminStore {
        &self.inner.admins
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, auth::SessionStore> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, auth::LoginThrottle> {
        self.inner
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The whole web UI: pages, API, static files, `/metrics` (per [`WebConfig::metrics`]).
pub fn router(state: WebState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::dashboard))
        .route("/sessions/table", get(pages::sessions_fragment))
        .route("/sessions/{id}/disconnect", post(pages::disconnect))
        .route("/users", get(pages::users).post(pages::add_user))
        .route(
            "/users/{name}",
            get(pages::edit_user).post(pages::update_user),
        )
        .route("/users/{name}/enabled", post(pages::set_enabled))
        .route("/users/{name}/password", post(pages::set_password))
        .route("/users/{name}/delete", post(pages::delete_user))
        .route("/certs", get(pages::certs).post(pages::issue_cert))
        .route("/certs/issued/{serial}", get(pages::issued))
        .route("/certs/issued/{serial}/{file}", get(pages::issued_download))
        .route("/certs/{serial}/revoke", post(pages::revoke_cert))
        .route("/certs/ca.crt", get(pages::ca_cert))
        .route("/certs/crl.der", get(pages::crl))
        .route("/setup", get(pages::setup))
        .route("/setup/{file}", get(pages::setup_file))
        .route("/accounting", get(pages::accounting))
        .route("/accounting.csv", get(pages::accounting_csv))
        .route("/settings", get(pages::settings))
        .route("/logs", get(pages::logs))
        .route("/audit", get(pages::audit_page))
        .route("/logout", post(auth::logout))
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::require_page_session,
        ));

    let api = api::routes().route_layer(from_fn_with_state(state.clone(), auth::require_api_auth));

    let public = Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/static/{file}", get(assets::file))
        .route("/api/v1/openapi.json", get(api::openapi_doc))
        .route("/metrics", get(api::metrics_main));

    Router::new()
        .merge(public)
        .merge(pages)
        .merge(api)
        .fallback(pages::not_found)
        .layer(from_fn_with_state(state.clone(), security::origin_check))
        .layer(DefaultBodyLimit::max(state.config().body_limit))
        .layer(from_fn_with_state(state.clone(), security::body_limit))
        .layer(axum::middleware::from_fn(security::reject_bad_paths))
        .layer(from_fn_with_state(state.clone(), security::headers))
        .with_state(state)
}

/// Only `GET /metrics`, unauthenticated: for a separate, private listener (see
/// [`MetricsAccess::Disabled`]), e.g. `serve_plain_http(127.0.0.1:9469, metrics_router(b), ..)`.
pub fn metrics_router(backend: Arc<dyn Backend>, version: String) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let backend = backend.clone();
            let version = version.clone();
            async move { api::metrics_response(backend.as_ref(), &version).await }
        }),
    )
}
