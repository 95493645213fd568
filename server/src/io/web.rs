//! The admin web UI in the server's process: the `web` crate's router over HTTPS, with this
//! module's [`ServerBackend`] behind it.
//!
//! The backend asks the control loop for live figures (status, sessions, disconnect, metrics)
//! through the same channel as the admin socket, and works on the state folder's databases
//! (users, the CA, the accounting history) on the blocking pool, never on the control loop.
//! Optional listeners beside the UI: `/metrics` in plain HTTP on a private address, and the CRL
//! (with the CA certificate) in plain HTTP at the distribution point written in certificates.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tracing::{info, warn};
use web::{
    AcctRow, AcctStatus, Backend, BackendError, BackendResult, CertKind, CertView, IssueRequest,
    IssuedCert, LogLine, MetricsView, RevocationReason, SessionView, Setting, SetupInfo,
    StatusView, UserOptions, UserView, async_trait,
};

use super::admin::{Call, ask};
use crate::aaa::local::{UserError, UserStore};
use crate::aaa::spool::{Spool, SpoolLimits};
use crate::admin::{Request, Response};

/// The admin database's file in the state folder.
pub const WEB_DB_FILE: &str = "web.db";
/// The administrator a fresh state folder gets.
pub const FIRST_ADMIN: &str = "admin";
/// How long a served CRL stays valid (nextUpdate); it is signed again at half of that.
const CRL_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// The longest certificate validity the UI issues.
const MAX_CERT_DAYS: u32 = 3650;

/// Who may read `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MetricsMode {
    /// Not on the UI's listener (a `metrics_bind` listener may still serve it).
    #[default]
    Off,
    /// On the UI's listener, for `Authorization: Bearer <the file's token>`.
    Token(PathBuf),
    /// On the UI's listener, unauthenticated.
    Open,
}

/// `[web]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    pub enabled: bool,
    /// The HTTPS listener.
    pub bind: SocketAddr,
    /// Whether client scripts and profiles on the setup page carry the pre-shared key.
    pub show_psk: bool,
    /// Another certificate and key (PEM) for HTTPS; by default the built-in server certificate.
    pub cert: Option<(PathBuf, PathBuf)>,
    pub metrics: MetricsMode,
    /// A plain-HTTP, unauthenticated listener for `/metrics` only (a private address).
    pub metrics_bind: Option<SocketAddr>,
    /// A plain-HTTP listener for the CRL at `certificates.crl_url`'s path, and `/ca.crt`.
    pub crl_bind: Option<SocketAddr>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            enabled: true,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8443)),
            show_psk: false,
            cert: None,
            metrics: MetricsMode::Off,
            metrics_bind: None,
            crl_bind: None,
        }
    }
}

/// What the backend shows that does not change while the server runs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The running configuration, secrets masked.
    pub settings: Vec<Setting>,
    /// For the client setup page.
    pub setup: SetupInfo,
    /// The server's own PPP address (no user may have it as a static address).
    pub local_address: Option<Ipv4Addr>,
}

/// The server's side of the web UI.
pub struct ServerBackend {
    calls: mpsc::Sender<Call>,
    state_dir: PathBuf,
    users: Arc<Mutex<UserStore>>,
    ca: Option<Arc<Mutex<ca::Ca>>>,
    spool: Arc<Mutex<Option<Spool>>>,
    facts: Facts,
    radius: Vec<super::radius::RadiusMetricsHandle>,
}

impl std::fmt::Debug for ServerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBackend")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on the blocking pool (SQLite, key generation).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> BackendResult<T> + Send + 'static,
) -> BackendResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(internal(format!("the task failed: {e}"))))
}

fn user_error(e: UserError) -> BackendError {
    match e {
        UserError::NoSuchUser(_) => BackendError::NotFound(e.to_string()),
        UserError::Exists(_)
        | UserError::InvalidName(..)
        | UserError::InvalidPassword(_)
        | UserError::AddressTaken { .. } => BackendError::Refused(e.to_string()),
        UserError::Store(_) => BackendError::Internal(e.to_string()),
    }
}

fn ca_error(e: ca::CaError) -> BackendError {
    match e {
        ca::CaError::InvalidParams(_)
        | ca::CaError::AlreadyRevoked(_)
        | ca::CaError::RevokeCa(_) => BackendError::Refused(e.to_string()),
        ca::CaError::UnknownSerial(_) => BackendError::NotFound(e.to_string()),
        _ => BackendError::Internal(e.to_string()),
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn cert_view(r: &ca::CertRecord) -> Option<CertView> {
    let kind = match r.kind {
        ca::CertKind::User => CertKind::User,
        ca::CertKind::Device => CertKind::Device,
        ca::CertKind::Server => CertKind::Server,
        ca::CertKind::Ca => return None,
    };
    Some(CertView {
        serial: r.serial.clone(),
        subject: r.subject.clone(),
        kind,
        user: r.user.clone(),
        not_before: unix(r.not_before),
        not_after: unix(r.not_after),
        revoked: r.revoked.map(|rv| web::Revocation {
            time: unix(rv.at),
            reason: match rv.reason {
                ca::RevocationReason::KeyCompromise => RevocationReason::KeyCompromise,
                ca::RevocationReason::AffiliationChanged => RevocationReason::AffiliationChanged,
                ca::RevocationReason::Superseded => RevocationReason::Superseded,
                ca::RevocationReason::CessationOfOperation => {
                    RevocationReason::CessationOfOperation
                }
                _ => RevocationReason::Unspecified,
            },
        }),
    })
}

fn session_view(s: crate::admin::SessionInfo) -> SessionView {
    SessionView {
        id: s.id,
        user: s.user,
        address: s.address,
        client: s.client,
        since_unix: s.since_unix,
        state: s.state,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        packets_in: s.packets_in,
        packets_out: s.packets_out,
        ike: s.ike,
        esp: s.esp,
        acct_session_id: s.acct_session_id,
        auth: s.auth,
    }
}

/// Refuses a static address no client can hold.
fn check_static_ip(addr: Option<Ipv4Addr>, local: Option<Ipv4Addr>) -> BackendResult<()> {
    let Some(a) = addr else { return Ok(()) };
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
        return Err(BackendError::Refused(format!(
            "{a} cannot be a client's address"
        )));
    }
    if Some(a) == local {
        return Err(BackendError::Refused(format!(
            "{a} is the server's own PPP address"
        )));
    }
    Ok(())
}

impl ServerBackend {
    /// A backend over the state folder `state_dir`, asking the control loop through `calls`.
    pub fn open(
        calls: mpsc::Sender<Call>,
        state_dir: &Path,
        facts: Facts,
        radius: Vec<super::radius::RadiusMetricsHandle>,
    ) -> Result<Self, String> {
        let users = UserStore::open(state_dir).map_err(|e| e.to_string())?;
        let ca = if ca::Ca::exists(state_dir) {
            Some(Arc::new(Mutex::new(
                ca::Ca::open(state_dir).map_err(|e| format!("the CA: {e}"))?,
            )))
        } else {
            None
        };
        Ok(ServerBackend {
            calls,
            state_dir: state_dir.to_path_buf(),
            users: Arc::new(Mutex::new(users)),
            ca,
            spool: Arc::new(Mutex::new(None)),
            facts,
            radius,
        })
    }

    async fn ask(&self, req: Request) -> BackendResult<Response> {
        match ask(&self.calls, req).await {
            Response::Error { message } => Err(BackendError::Internal(message)),
            r => Ok(r),
        }
    }

    fn ca(&self) -> BackendResult<Arc<Mutex<ca::Ca>>> {
        self.ca.clone().ok_or_else(|| {
            BackendError::Unavailable(
                "this server has no built-in CA ([certificates] enabled = false and no CA was \
                 made): make one with `roadgate ca init`"
                    .into(),
            )
        })
    }

    async fn users<T: Send + 'static>(
        &self,
        f: impl FnOnce(&UserStore) -> Result<T, UserError> + Send + 'static,
    ) -> BackendResult<T> {
        let users = self.users.clone();
        blocking(move || f(&locked(&users)).map_err(user_error)).await
    }

    async fn with_ca<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ca::Ca) -> BackendResult<T> + Send + 'static,
    ) -> BackendResult<T> {
        let authority = self.ca()?;
        blocking(move || f(&locked(&authority))).await
    }

    async fn with_spool<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Spool) -> BackendResult<T> + Send + 'static,
    ) -> BackendResult<T> {
        let spool = self.spool.clone();
        let state = self.state_dir.clone();
        blocking(move || {
            let mut guard = locked(&spool);
            if guard.is_none() {
                // Opened for reading the history; the control loop owns the writing.
                let opened = Spool::open(&state, SpoolLimits::default()).map_err(internal)?;
                *guard = Some(opened);
            }
            match guard.as_ref() {
                Some(s) => f(s),
                None => Err(internal("the accounting history is not open")),
            }
        })
        .await
    }
}

#[async_trait]
impl Backend for ServerBackend {
    async fn status(&self) -> BackendResult<StatusView> {
        match self.ask(Request::Status).await? {
            Response::Status(s) => Ok(StatusView {
                version: s.version,
                uptime_secs: s.uptime_s,
                sessions_up: s.sessions_up as u64,
                ike_sas: s.ike_sas as u64,
                pool_used: s.pool_used as u64,
                pool_size: s.pool_size as u64,
                counters: s.counters,
                checks: s
                    .findings
                    .into_iter()
                    .map(|f| web::CheckView {
                        level: f.level.as_str().into(),
                        text: f.text,
                    })
                    .collect(),
            }),
            _ => Err(internal("unexpected answer to a status request")),
        }
    }

    async fn sessions(&self) -> BackendResult<Vec<SessionView>> {
        match self.ask(Request::Sessions).await? {
            Response::Sessions { sessions } => Ok(sessions.into_iter().map(session_view).collect()),
            _ => Err(internal("unexpected answer to a sessions request")),
        }
    }

    async fn disconnect(&self, id: &str) -> BackendResult<usize> {
        // Only a session id: a user name here would end all of that user's sessions.
        let known = self.sessions().await?.iter().any(|s| s.id == id);
        if !known {
            return Ok(0);
        }
        match self
            .ask(Request::Disconnect {
                target: id.to_string(),
            })
            .await?
        {
            Response::Disconnected { count } => {
                info!(session = id, count, "disconnected from the web UI");
                Ok(count)
            }
            _ => Err(internal("unexpected answer to a disconnect request")),
        }
    }

    async fn list_users(&self) -> BackendResult<Vec<UserView>> {
        self.users(|u| u.list()).await.map(|list| {
            list.into_iter()
                .map(|u| UserView {
                    name: u.name,
                    enabled: u.enabled,
                    static_ip: u.static_ip,
                    max_sessions: u.max_sessions,
                })
                .collect()
        })
    }

    async fn add_user(&self, name: &str, password: &str, opts: &UserOptions) -> BackendResult<()> {
        check_static_ip(opts.static_ip, self.facts.local_address)?;
        let (name, password) = (
            name.to_string(),
            zeroize::Zeroizing::new(password.to_string()),
        );
        let o = crate::aaa::local::UserOptions {
            static_ip: Some(opts.static_ip),
            max_sessions: Some(opts.max_sessions),
            enabled: Some(opts.enabled),
        };
        self.users(move |u| u.add(&name, &password, &o)).await
    }

    async fn update_user(&self, name: &str, opts: &UserOptions) -> BackendResult<()> {
        check_static_ip(opts.static_ip, self.facts.local_address)?;
        let name = name.to_string();
        let o = crate::aaa::local::UserOptions {
            static_ip: Some(opts.static_ip),
            max_sessions: Some(opts.max_sessions),
            enabled: Some(opts.enabled),
        };
        self.users(move |u| u.set_options(&name, &o)).await
    }

    async fn set_password(&self, name: &str, password: &str) -> BackendResult<()> {
        let (name, password) = (
            name.to_string(),
            zeroize::Zeroizing::new(password.to_string()),
        );
        self.users(move |u| u.set_password(&name, &password)).await
    }

    async fn delete_user(&self, name: &str) -> BackendResult<()> {
        let name = name.to_string();
        self.users(move |u| u.delete(&name)).await
    }

    async fn list_certs(&self) -> BackendResult<Vec<CertView>> {
        self.with_ca(|c| {
            let mut list: Vec<CertView> = c
                .list()
                .map_err(ca_error)?
                .iter()
                .filter_map(cert_view)
                .collect();
            list.sort_by_key(|c| std::cmp::Reverse(c.not_before));
            Ok(list)
        })
        .await
    }

    async fn issue_cert(&self, req: &IssueRequest) -> BackendResult<IssuedCert> {
        let kind = match req.kind {
            CertKind::User => ca::ClientKind::User,
            CertKind::Device => ca::ClientKind::Device,
            CertKind::Server => {
                return Err(BackendError::Refused(
                    "server certificates are made by the server itself (server-cert.pem); \
                     issue user or device certificates here"
                        .into(),
                ));
            }
        };
        if !(1..=MAX_CERT_DAYS).contains(&req.validity_days) {
            return Err(BackendError::Refused(format!(
                "validity must be 1 to {MAX_CERT_DAYS} days"
            )));
        }
        let user = match kind {
            ca::ClientKind::User => Some(
                req.user
                    .clone()
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| req.common_name.clone()),
            ),
            ca::ClientKind::Device => req.user.clone().filter(|u| !u.is_empty()),
        };
        if let Some(u) = &user {
            let name = u.clone();
            let known = self.users(move |s| s.find(&name)).await?.is_some();
            if !known {
                // The certificate would authenticate IPsec, but PPP still needs the user.
                warn!(user = %u, "certificate issued for a user who is not in the local database");
            }
        }
        let mut params = ca::ClientParams::new(req.common_name.clone(), kind);
        params.user = user;
        params.validity_days = req.validity_days;
        let name = req.common_name.clone();
        let issued = self
            .with_ca(move |c| {
                let issued = c.issue_client(&params).map_err(ca_error)?;
                let password = ca::one_time_password().map_err(ca_error)?;
                let ca_der = c.ca_cert_der().to_vec();
                let p12 = |format| {
                    ca::export_p12(
                        &issued.cert_der,
                        &issued.key_der,
                        &[&ca_der],
                        &password,
                        format,
                        &name,
                    )
                    .map_err(ca_error)
                };
                Ok(IssuedCert {
                    serial: issued.serial.clone(),
                    p12_legacy: p12(ca::P12Format::Legacy)?,
                    p12_aes: p12(ca::P12Format::Aes256)?,
                    password,
                })
            })
            .await?;
        info!(serial = %issued.serial, common_name = %req.common_name, kind = req.kind.as_str(), "certificate issued from the web UI");
        Ok(issued)
    }

    async fn revoke_cert(&self, serial: &str, reason: RevocationReason) -> BackendResult<()> {
        let reason = match reason {
            RevocationReason::Unspecified => ca::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => ca::RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged => ca::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => ca::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => ca::RevocationReason::CessationOfOperation,
        };
        let serial = serial.to_string();
        let rec = self
            .with_ca(move |c| c.revoke(&serial, reason).map_err(ca_error))
            .await?;
        info!(serial = %rec.serial, subject = %rec.subject, "certificate revoked from the web UI");
        Ok(())
    }

    async fn ca_cert_pem(&self) -> BackendResult<String> {
        self.with_ca(|c| c.ca_cert_pem().map_err(ca_error)).await
    }

    async fn crl_der(&self) -> BackendResult<Vec<u8>> {
        self.with_ca(|c| {
            c.current_crl(SystemTime::now(), CRL_VALIDITY)
                .map_err(ca_error)
        })
        .await
    }

    async fn accounting(&self, since: Option<i64>, limit: usize) -> BackendResult<Vec<AcctRow>> {
        let since = since.map(|s| u64::try_from(s).unwrap_or(0));
        self.with_spool(move |s| {
            let rows = s.history(since, limit).map_err(internal)?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let status = match r.status.as_str() {
                        "Start" => AcctStatus::Start,
                        "Stop" => AcctStatus::Stop,
                        "Interim-Update" => AcctStatus::Interim,
                        _ => return None,
                    };
                    Some(AcctRow {
                        time: r.time,
                        status,
                        user: r.user,
                        session_id: r.session_id,
                        address: r.framed_ip,
                        client: r.calling_station,
                        input_octets: r.input_octets,
                        output_octets: r.output_octets,
                        input_packets: r.input_packets,
                        output_packets: r.output_packets,
                        session_time: r.session_time,
                        cause: r.terminate_cause,
                    })
                })
                .collect())
        })
        .await
    }

    async fn accounting_csv(&self, since: Option<i64>) -> BackendResult<String> {
        let since = since.map(|s| u64::try_from(s).unwrap_or(0));
        self.with_spool(move |s| {
            let mut out = Vec::new();
            s.export_csv(&mut out, since).map_err(internal)?;
            String::from_utf8(out).map_err(internal)
        })
        .await
    }

    async fn settings(&self) -> BackendResult<Vec<Setting>> {
        Ok(self.facts.settings.clone())
    }

    async fn recent_logs(&self, limit: usize) -> BackendResult<Vec<LogLine>> {
        Ok(crate::logring::global()
            .recent(limit)
            .into_iter()
            .map(|l| LogLine {
                time: l.time,
                level: l.level.to_string(),
                message: l.text,
            })
            .collect())
    }

    async fn client_setup(&self) -> BackendResult<SetupInfo> {
        Ok(self.facts.setup.clone())
    }

    async fn metrics(&self) -> BackendResult<MetricsView> {
        let m = match self.ask(Request::Metrics).await? {
            Response::Metrics(m) => m,
            _ => return Err(internal("unexpected answer to a metrics request")),
        };
        let radius = self
            .radius
            .iter()
            .flat_map(|h| h.snapshot())
            .map(radius_view)
            .collect();
        Ok(MetricsView {
            uptime_secs: m.status.uptime_s,
            sessions_up: m.status.sessions_up as u64,
            ike_sas: m.status.ike_sas as u64,
            pool_used: m.status.pool_used as u64,
            pool_size: m.status.pool_size as u64,
            connects_total: m.connects_total,
            connect_failures: m.failures,
            bytes_in: m.bytes_in,
            bytes_out: m.bytes_out,
            packets_in: m.packets_in,
            packets_out: m.packets_out,
            radius,
            accounting_spool_depth: m.spool_depth,
        })
    }
}

/// What a RADIUS server is used for, in the words of the config file.
fn role_name(role: crate::radius::client::Role) -> &'static str {
    match role {
        crate::radius::client::Role::Auth => "auth",
        crate::radius::client::Role::Acct => "acct",
    }
}

/// One RADIUS server's figures as the web crate writes them.
fn radius_view(m: crate::radius::client::ServerMetrics) -> web::RadiusMetrics {
    web::RadiusMetrics {
        server: format!("{} {}", role_name(m.role), m.address),
        requests: m.requests,
        timeouts: m.timeouts,
        latency: web::Histogram {
            buckets: m
                .latency
                .bounds
                .iter()
                .copied()
                .zip(m.latency.buckets.iter().copied())
                .collect(),
            count: m.latency.count,
            sum_secs: m.latency.sum_secs,
        },
    }
}

/// The masked running configuration for the settings page.
pub fn settings_view(s: &crate::config::Settings) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut add = |section: &str, key: &str, value: String| {
        out.push(Setting {
            section: section.into(),
            key: key.into(),
            value,
        });
    };
    let list = |v: &[String]| v.join(", ");
    add(
        "server",
        "config_file",
        s.file
            .as_ref()
            .map_or("built-in defaults".into(), |p| p.display().to_string()),
    );
    add("server", "state_dir", s.state_dir.display().to_string());
    add(
        "server",
        "listen",
        list(
            &s.listen_addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        ),
    );
    add("server", "ike_port", s.listen.ike_port.to_string());
    add("server", "natt_port", s.listen.natt_port.to_string());
    add("server", "raw_esp", s.listen.raw_esp.to_string());
    add(
        "ipsec",
        "psk",
        match s.psk_source {
            crate::config::PskSource::Inline => "******** (in the file)".into(),
            crate::config::PskSource::File(ref p) => format!("******** (from {})", p.display()),
            crate::config::PskSource::StateDir => {
                "******** (generated, in the state folder)".into()
            }
        },
    );
    add(
        "ipsec",
        "certificates",
        if s.certificates.enabled {
            "on (RSA signatures with the built-in CA)".into()
        } else {
            "off".into()
        },
    );
    add("ipsec", "public_names", list(&s.certificates.public_names));
    add(
        "ipsec",
        "crl_url",
        s.certificates.crl_url.clone().unwrap_or_else(|| "-".into()),
    );
    add(
        "ppp",
        "pool",
        list(
            &s.pool
                .iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect::<Vec<_>>(),
        ),
    );
    add("ppp", "local_address", s.local_address().to_string());
    add("ppp", "mtu", s.dataplane.mtu.to_string());
    add(
        "auth",
        "backends",
        list(
            &s.auth_backends
                .iter()
                .map(|b| b.name().to_string())
                .collect::<Vec<_>>(),
        ),
    );
    add("auth", "pam_service", s.pam_service.clone());
    add(
        "radius",
        "servers",
        match &s.radius {
            Some(r) => list(
                &r.client
                    .servers
                    .iter()
                    .map(|srv| {
                        format!("{} ({}, secret ********)", srv.address, role_name(srv.role))
                    })
                    .collect::<Vec<_>>(),
            ),
            None => "none".into(),
        },
    );
    add("web", "bind", s.web.bind.to_string());
    add("web", "show_psk", s.web.show_psk.to_string());
    add(
        "web",
        "metrics",
        match &s.web.metrics {
            MetricsMode::Off => "off".into(),
            MetricsMode::Token(p) => format!("token (from {})", p.display()),
            MetricsMode::Open => "open".into(),
        },
    );
    add("log", "level", s.log.level.clone());
    out
}

/// What the client setup page needs.
pub fn setup_view(s: &crate::config::Settings) -> SetupInfo {
    let addresses: Vec<String> = s
        .listen_addrs
        .iter()
        .filter(|a| !a.is_unspecified())
        .map(ToString::to_string)
        .collect();
    // The configured name, else the listen address, else this machine's address: the same
    // names the server certificate is made for (never a placeholder).
    let server_name = crate::doctor::public_names(&s.certificates.public_names, &s.listen_addrs)
        .first()
        .to_string();
    let psk = s
        .web
        .show_psk
        .then(|| {
            s.ike
                .psk
                .default_key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
        })
        .flatten();
    SetupInfo {
        server_name,
        server_addresses: addresses,
        psk_mode_enabled: true,
        cert_mode_enabled: s.certificates.enabled,
        psk,
    }
}

/// A random administrator password (about 93 bits), shown once.
fn first_admin(db: &Path) -> Result<Option<zeroize::Zeroizing<String>>, String> {
    let store = web::AdminStore::open(db).map_err(|e| format!("{}: {e}", db.display()))?;
    if !store.list_admins().map_err(|e| e.to_string())?.is_empty() {
        return Ok(None);
    }
    let password = crate::config::random_text(16);
    store
        .create_admin(FIRST_ADMIN, &password)
        .map_err(|e| e.to_string())?;
    Ok(Some(password))
}

/// The HTTPS certificate chain and key (PEM).
fn tls_files(settings: &crate::config::Settings) -> Result<(PathBuf, PathBuf), String> {
    if let Some((c, k)) = &settings.web.cert {
        return Ok((c.clone(), k.clone()));
    }
    if let (Some(c), Some(k)) = (
        &settings.certificates.server_cert,
        &settings.certificates.server_key,
    ) {
        return Ok((c.clone(), k.clone()));
    }
    let authority = crate::pki::open_or_init_ca(&settings.state_dir, &settings.certificates)?;
    crate::pki::ensure_server_cert(&authority, &settings.certificates, &settings.listen_addrs)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{what} cannot listen on {addr}: {e}"))
}

/// Starts the web UI (and the metrics and CRL listeners), if `[web]` enables it, on an OS
/// thread of its own ("roadgate-web") with its own tokio runtime: page rendering, TLS and
/// password hashing never run on the control loop's thread or runtime. Returns once the
/// listeners are bound (their errors are returned). Prints the first administrator's password
/// once when the admin database is new.
pub async fn start(
    settings: &crate::config::Settings,
    calls: mpsc::Sender<Call>,
    radius: Vec<super::radius::RadiusMetricsHandle>,
) -> Result<(), String> {
    let w = &settings.web;
    if !w.enabled {
        info!("admin web UI is off ([web] enabled = false)");
        return Ok(());
    }
    let state = &settings.state_dir;
    let db = state.join(WEB_DB_FILE);
    if let Some(password) = first_admin(&db)? {
        println!(
            "Created the web admin (password shown once): {FIRST_ADMIN} / {}\n\
             Change it with: roadgate admin --state {} passwd {FIRST_ADMIN}",
            password.as_str(),
            state.display()
        );
    }
    let (cert, key) = tls_files(settings)?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("web: {}: {e}", p.display()));
    let tls = web::tls_config_from_pem(&read(&cert)?, &read(&key)?)
        .map_err(|e| format!("web: the HTTPS certificate {}: {e}", cert.display()))?;
    let facts = Facts {
        settings: settings_view(settings),
        setup: setup_view(settings),
        local_address: Some(settings.local_address()),
    };
    let backend: Arc<dyn Backend> = Arc::new(ServerBackend::open(calls, state, facts, radius)?);
    let metrics = match &w.metrics {
        MetricsMode::Off => web::MetricsAccess::Disabled,
        MetricsMode::Open => web::MetricsAccess::Open,
        MetricsMode::Token(f) => {
            let token = std::fs::read_to_string(f)
                .map_err(|e| format!("web.metrics_token_file {}: {e}", f.display()))?;
            let token = token.trim().to_string();
            if token.len() < 16 {
                return Err(format!(
                    "web.metrics_token_file {}: the token must have at least 16 characters",
                    f.display()
                ));
            }
            web::MetricsAccess::BearerToken(token)
        }
    };
    let config = web::WebConfig {
        metrics,
        version: env!("CARGO_PKG_VERSION").into(),
        ..web::WebConfig::default()
    };
    let admins = web::AdminStore::open(&db).map_err(|e| format!("{}: {e}", db.display()))?;
    let app = web::router(web::WebState::new(backend.clone(), admins, config));
    let crl = settings
        .certificates
        .crl_url
        .as_ref()
        .and_then(|url| w.crl_bind.map(|addr| (addr, crl_path(url))));
    let (main_bind, metrics_bind) = (w.bind, w.metrics_bind);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WEB_WORKERS)
        .max_blocking_threads(WEB_BLOCKING_THREADS)
        .thread_name("roadgate-web-rt")
        .enable_all()
        .build()
        .map_err(|e| format!("web: cannot start its runtime: {e}"))?;
    std::thread::Builder::new()
        .name("roadgate-web".into())
        .spawn(move || {
            runtime.block_on(async move {
                let bound = async {
                    let main = bind(main_bind, "web.bind").await?;
                    let metrics = match metrics_bind {
                        Some(addr) => Some((addr, bind(addr, "web.metrics_bind").await?)),
                        None => None,
                    };
                    let crl = match crl {
                        Some((addr, path)) => Some((addr, path, bind(addr, "web.crl_bind").await?)),
                        None => None,
                    };
                    Ok::<_, String>((main, metrics, crl))
                }
                .await;
                let (listener, metrics, crl) = match bound {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                info!(addr = %main_bind, certificate = %cert.display(), "admin web UI listening");
                tokio::spawn(async move {
                    if let Err(e) = web::serve(listener, tls, app, std::future::pending()).await {
                        warn!(error = %e, "admin web UI stopped");
                    }
                });
                if let Some((addr, listener)) = metrics {
                    let app =
                        web::metrics_router(backend.clone(), env!("CARGO_PKG_VERSION").into());
                    info!(%addr, "Prometheus /metrics listening (plain HTTP)");
                    tokio::spawn(async move {
                        if let Err(e) =
                            web::serve_plain_http(listener, app, std::future::pending()).await
                        {
                            warn!(error = %e, "metrics listener stopped");
                        }
                    });
                }
                if let Some((addr, path, listener)) = crl {
                    info!(%addr, path = %path, "CRL distribution point listening (plain HTTP)");
                    let app = crl_router(backend, &path);
                    tokio::spawn(async move {
                        if let Err(e) =
                            web::serve_plain_http(listener, app, std::future::pending()).await
                        {
                            warn!(error = %e, "CRL listener stopped");
                        }
                    });
                }
                let _ = ready_tx.send(Ok(()));
                // Serves until the process ends.
                std::future::pending::<()>().await;
            });
        })
        .map_err(|e| format!("web: cannot start its thread: {e}"))?;
    ready_rx
        .await
        .unwrap_or_else(|_| Err("web: its thread ended before listening".into()))
}

/// Worker threads of the web UI's runtime (requests, TLS).
const WEB_WORKERS: usize = 2;
/// Blocking threads of the web UI's runtime (SQLite, password hashes, key generation); the
/// password hashes among them are bounded further by [`web::WebConfig::argon2_permits`].
const WEB_BLOCKING_THREADS: usize = 16;

/// The path part of a CRL URL (`http://vpn.example.com/crl.der` → `/crl.der`).
pub fn crl_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..]
            .split(['?', '#'])
            .next()
            .unwrap_or("/")
            .to_string(),
        None => "/".into(),
    }
}

/// `GET <path>`: the current CRL (DER, `application/pkix-crl`); `GET /ca.crt`: the CA
/// certificate (PEM). Nothing else.
pub fn crl_router(backend: Arc<dyn Backend>, path: &str) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let crl_backend = backend.clone();
    axum::Router::new()
        .route(
            path,
            axum::routing::get(move || {
                let backend = crl_backend.clone();
                async move {
                    match backend.crl_der().await {
                        Ok(der) => (
                            [
                                (header::CONTENT_TYPE, "application/pkix-crl"),
                                (header::CACHE_CONTROL, "max-age=3600"),
                            ],
                            der,
                        )
                            .into_response(),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
                    }
                }
            }),
        )
        .route(
            "/ca.crt",
            axum::routing::get(move || {
                let backend = backend.clone();
                async move {
                    match backend.ca_cert_pem().await {
                        Ok(pem) => ([(header::CONTENT_TYPE, "application/x-pem-file")], pem)
                            .into_response(),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_paths() {
        assert_eq!(crl_path("http://vpn.example.com/crl.der"), "/crl.der");
        assert_eq!(
            crl_path("http://192.0.2.1:8080/pki/roadgate.crl?x=1"),
            "/pki/roadgate.crl"
        );
        assert_eq!(crl_path("http://vpn.example.com"), "/");
    }

    #[test]
    fn static_addresses_clients_cannot_hold_are_refused() {
        let local = Some(Ipv4Addr::new(10, 77, 0, 1));
        assert!(check_static_ip(None, local).is_ok());
        assert!(check_static_ip(Some(Ipv4Addr::new(10, 77, 0, 20)), local).is_ok());
        for bad in [
            Ipv4Addr::new(10, 77, 0, 1),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
        ] {
            assert!(matches!(
                check_static_ip(Some(bad), local),
                Err(BackendError::Refused(_))
            ));
        }
    }
}
