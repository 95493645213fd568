//! The [`Backend`] trait: everything the web UI needs from the VPN server, and nothing more.
//!
//! The web crate knows nothing of the server's types. The server implements [`Backend`] on a
//! handle of its own (a channel to its control plane, its user and CA stores, its log ring
//! buffer) and hands it to [`crate::WebState::new`] as an `Arc<dyn Backend>`.
//!
//! # The contract
//!
//! * Every method is `async` and may be called concurrently from many requests; the futures are
//!   `Send` (the trait uses [`macro@async_trait`]), so a method may await the control plane.
//! * Methods that change something are called only after the web crate has checked that an
//!   administrator is logged in and that the request carries the session's CSRF token. The
//!   backend does not check permissions again; it validates its own input (names, addresses,
//!   limits) and refuses bad input with [`BackendError::Refused`].
//! * The text of a [`BackendError`] is shown to the administrator as it is, on the page or in the
//!   API's `{"error": ...}`. Write it for a person: "the address 10.0.0.5 is already alice's",
//!   not "UNIQUE constraint failed". Never put a secret in it.
//! * Times are Unix seconds (UTC) unless a field says otherwise.
//! * Secrets: [`Backend::settings`] masks secrets itself; [`Backend::client_setup`] returns the
//!   pre-shared key only when the administrator chose to show it in the web UI; the one-time
//!   PKCS#12 password of [`IssuedCert`] is made by the backend and not kept by it.
//! * The web crate audits every administrator action itself (in its own database); the backend
//!   need not.

use std::net::Ipv4Addr;

pub use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// What a backend call returns.
pub type BackendResult<T> = Result<T, BackendError>;

/// Why a backend call did not do what was asked. The message is shown to the administrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The input was refused (bad value, conflict, limit): HTTP 400/409 with this message.
    #[error("{0}")]
    Refused(String),
    /// The thing named (user, session, certificate) does not exist: HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// The feature is not available on this server (no CA configured, certificate mode off):
    /// HTTP 503.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the server (database, control plane not answering): HTTP 500.
    #[error("{0}")]
    Internal(String),
}

/// Server-wide figures for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// The server's version, e.g. "0.1.0".
    pub version: String,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Sessions with PPP up.
    pub sessions_up: u64,
    /// IKE (phase 1) security associations.
    pub ike_sas: u64,
    /// Addresses of the pool in use.
    pub pool_used: u64,
    /// Addresses in the pool.
    pub pool_size: u64,
    /// Named counters in the server's order (e.g. "ike_refused" = 3), shown as they are.
    pub counters: Vec<(String, u64)>,
    /// The server's checks (`roadgate doctor`), one plain line each.
    #[serde(default)]
    pub checks: Vec<CheckView>,
}

/// One check of the server: `level` is "ok", "warning" or "problem".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub level: String,
    pub text: String,
}

/// One VPN session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    /// The server's id for the session; [`Backend::disconnect`] takes it back.
    pub id: String,
    /// The authenticated user, if PPP authentication has finished.
    pub user: Option<String>,
    /// The address given to the client inside the tunnel.
    pub address: Option<Ipv4Addr>,
    /// The client's public address and port, e.g. "198.51.100.7:4500".
    pub client: String,
    /// When the session started (Unix seconds).
    pub since_unix: u64,
    /// The session's state in the server's words (e.g. "up", "authenticating").
    pub state: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// The phase-1 algorithms, e.g. "AES-256-CBC/SHA1/ECP-384".
    pub ike: String,
    /// The ESP algorithms, e.g. "AES-128-CBC/HMAC-SHA1".
    pub esp: String,
    /// RADIUS Acct-Session-Id.
    pub acct_session_id: String,
    /// How the IPsec peer authenticated: "psk", or the certificate's subject.
    pub auth: String,
}

/// A local VPN user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub enabled: bool,
    /// The address this user always gets, instead of one from the pool.
    pub static_ip: Option<Ipv4Addr>,
    /// How many sessions the user may have at once; `None` is the server's default.
    pub max_sessions: Option<u32>,
}

/// The changeable settings of a user (everything but the name and password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOptions {
    pub enabled: bool,
    pub static_ip: Option<Ipv4Addr>,
    pub max_sessions: Option<u32>,
}

impl Default for UserOptions {
    fn default() -> Self {
        UserOptions {
            enabled: true,
            static_ip: None,
            max_sessions: None,
        }
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// A person's certificate, tied to a user.
    User,
    /// A machine's certificate (Windows machine certificate, a router).
    Device,
    /// The VPN server's own certificate.
    Server,
}

impl CertKind {
    /// The lower-case name used in forms and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::User => "user",
            CertKind::Device => "device",
            CertKind::Server => "server",
        }
    }

    /// The kind named `s` (as [`CertKind::as_str`] writes it).
    pub fn parse(s: &str) -> Option<CertKind> {
        match s {
            "user" => Some(CertKind::User),
            "device" => Some(CertKind::Device),
            "server" => Some(CertKind::Server),
            _ => None,
        }
    }
}

/// Why a certificate is revoked (the RFC 5280 CRLReason values an administrator picks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

impl RevocationReason {
    /// Every reason, in the order the form lists them.
    pub const ALL: [RevocationReason; 5] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
    ];

    /// The snake_case name used in forms and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key_compromise",
            RevocationReason::AffiliationChanged => "affiliation_changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation_of_operation",
        }
    }

    /// Words for a person.
    pub fn label(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "Unspecified",
            RevocationReason::KeyCompromise => "Key compromised",
            RevocationReason::AffiliationChanged => "Affiliation changed",
            RevocationReason::Superseded => "Superseded",
            RevocationReason::CessationOfOperation => "No longer used",
        }
    }

    /// The reason named `s` (as [`RevocationReason::as_str`] writes it).
    pub fn parse(s: &str) -> Option<RevocationReason> {
        RevocationReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Unix seconds.
    pub time: i64,
    pub reason: RevocationReason,
}

/// A certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertView {
    /// The serial number in hexadecimal, as [`Backend::revoke_cert`] takes it back.
    pub serial: String,
    /// The subject, e.g. "CN=alice".
    pub subject: String,
    pub kind: CertKind,
    /// The user a user certificate belongs to.
    pub user: Option<String>,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub revoked: Option<Revocation>,
}

/// What to issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    /// The subject's common name (a user name, a device name).
    pub common_name: String,
    pub kind: CertKind,
    /// The user the certificate belongs to (for [`CertKind::User`]).
    pub user: Option<String>,
    /// How long the certificate is valid.
    pub validity_days: u32,
}

/// A freshly issued certificate with its private key, in two PKCS#12 encodings.
///
/// The web crate keeps it in memory for a few minutes so that the administrator can download
/// each file once, shows the password once, and wipes all of it afterwards (and on drop).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The serial number in hexadecimal.
    pub serial: String,
    /// PKCS#12 with PBE-SHA1-3DES and a SHA-1 MAC, for Apple devices and older Windows.
    pub p12_legacy: Vec<u8>,
    /// PKCS#12 with PBES2 (PBKDF2, AES-256-CBC) and a SHA-256 MAC.
    pub p12_aes: Vec<u8>,
    /// The one-time password of both files, made by the backend; it does not keep it.
    pub password: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field(
                "p12_legacy",
                &format_args!("<{} bytes>", self.p12_legacy.len()),
            )
            .field("p12_aes", &format_args!("<{} bytes>", self.p12_aes.len()))
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Drop for IssuedCert {
    fn drop(&mut self) {
        self.p12_legacy.zeroize();
        self.p12_aes.zeroize();
        self.password.zeroize();
    }
}

/// The kind of an accounting record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcctStatus {
    Start,
    Interim,
    Stop,
}

impl AcctStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AcctStatus::Start => "Start",
            AcctStatus::Interim => "Interim",
            AcctStatus::Stop => "Stop",
        }
    }
}

/// One accounting record from the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcctRow {
    /// Unix seconds.
    pub time: i64,
    pub status: AcctStatus,
    pub user: String,
    /// Acct-Session-Id.
    pub session_id: String,
    pub address: Option<Ipv4Addr>,
    /// The client's public address and port.
    pub client: String,
    pub input_octets: u64,
    pub output_octets: u64,
    pub input_packets: u64,
    pub output_packets: u64,
    /// Seconds the session had lasted at this record.
    pub session_time: u64,
    /// Acct-Terminate-Cause on a Stop, e.g. "User-Request".
    pub cause: Option<String>,
}

/// One configuration value, read-only; secrets are already masked by the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// The TOML section, e.g. "ike".
    pub section: String,
    pub key: String,
    /// The value as the configuration file would write it, or "********" for a secret.
    pub value: String,
}

/// One line of the server's recent log (the backend keeps a ring buffer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Unix seconds.
    pub time: i64,
    /// "ERROR", "WARN", "INFO", "DEBUG" or "TRACE".
    pub level: String,
    /// The message with its fields, e.g. `refused remote=203.0.113.5:500 reason=no proposal chosen`.
    pub message: String,
}

/// What the client setup page needs to write profiles and scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupInfo {
    /// The name clients connect to (DNS name or address), e.g. "vpn.example.com".
    pub server_name: String,
    /// The server's public addresses, for the administrator's information.
    pub server_addresses: Vec<String>,
    /// Clients may authenticate IPsec with the pre-shared key.
    pub psk_mode_enabled: bool,
    /// Clients may authenticate IPsec with certificates from the CA.
    pub cert_mode_enabled: bool,
    /// The pre-shared key, only if the administrator chose to show it in the web UI; scripts
    /// and profiles then contain it, otherwise they carry a placeholder to fill in.
    pub psk: Option<String>,
}

/// Figures for the Prometheus exposition at `/metrics` (the web crate writes the text).
///
/// Counters only grow while the server runs; gauges are current values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsView {
    /// Seconds since the server started (gauge).
    pub uptime_secs: u64,
    /// Sessions with PPP up (gauge).
    pub sessions_up: u64,
    /// IKE security associations (gauge).
    pub ike_sas: u64,
    /// Pool addresses in use and in all (gauges).
    pub pool_used: u64,
    pub pool_size: u64,
    /// Sessions that came up since the start (counter).
    pub connects_total: u64,
    /// Connection attempts that failed, by reason (counters), e.g. ("auth_failed", 3),
    /// ("no_proposal_chosen", 1). Reasons are short snake_case words.
    pub connect_failures: Vec<(String, u64)>,
    /// Payload bytes and packets through the tunnels since the start (counters); "in" is from
    /// the clients.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// One entry per configured RADIUS server.
    pub radius: Vec<RadiusMetrics>,
    /// Accounting records waiting in the spool to be sent (gauge).
    pub accounting_spool_depth: u64,
}

/// The figures of one RADIUS server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RadiusMetrics {
    /// The server as configured, e.g. "10.0.0.2:1812".
    pub server: String,
    /// Requests sent (counter; each retransmission is not counted again).
    pub requests: u64,
    /// Requests that got no answer in time, after all retransmissions (counter).
    pub timeouts: u64,
    /// Round-trip time of the answered requests.
    pub latency: Histogram,
}

/// A latency histogram in Prometheus' shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// (upper bound in seconds, how many observations were at most that), bounds increasing,
    /// counts cumulative; the `+Inf` bucket is not listed (it is `count`).
    pub buckets: Vec<(f64, u64)>,
    /// Observations in all.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_secs: f64,
}

/// What the web UI asks of the VPN server. See the module documentation for the contract.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Server-wide figures for the dashboard and `GET /api/v1/status`.
    async fn status(&self) -> BackendResult<StatusView>;

    /// Every session, in the server's order.
    async fn sessions(&self) -> BackendResult<Vec<SessionView>>;

    /// Ends the session with this id (as in [`SessionView::id`]); returns how many sessions
    /// ended (0 if it was already gone, which is not an error).
    async fn disconnect(&self, id: &str) -> BackendResult<usize>;

    /// Every local user, sorted by name.
    async fn list_users(&self) -> BackendResult<Vec<UserView>>;

    /// Creates a user. Refuses a taken name, a bad name, an empty password, a static address
    /// outside what the server can give or already another user's.
    async fn add_user(&self, name: &str, password: &str, opts: &UserOptions) -> BackendResult<()>;

    /// Changes a user's settings. Disabling a user does not end its sessions (the web UI offers
    /// that separately).
    async fn update_user(&self, name: &str, opts: &UserOptions) -> BackendResult<()>;

    /// Sets a user's password.
    async fn set_password(&self, name: &str, password: &str) -> BackendResult<()>;

    /// Deletes a user.
    async fn delete_user(&self, name: &str) -> BackendResult<()>;

    /// Every certificate the CA issued, newest first.
    async fn list_certs(&self) -> BackendResult<Vec<CertView>>;

    /// Issues a certificate with a new key and returns it as PKCS#12 with a one-time password.
    async fn issue_cert(&self, req: &IssueRequest) -> BackendResult<IssuedCert>;

    /// Revokes a certificate (by hexadecimal serial); the next CRL lists it.
    async fn revoke_cert(&self, serial: &str, reason: RevocationReason) -> BackendResult<()>;

    /// The CA certificate, PEM.
    async fn ca_cert_pem(&self) -> BackendResult<String>;

    /// The current CRL, DER.
    async fn crl_der(&self) -> BackendResult<Vec<u8>>;

    /// Accounting history, newest first: at most `limit` records, only those at or after
    /// `since` (Unix seconds) if given.
    async fn accounting(&self, since: Option<i64>, limit: usize) -> BackendResult<Vec<AcctRow>>;

    /// The accounting history as CSV (the server's `roadgate accounting export --csv`).
    async fn accounting_csv(&self, since: Option<i64>) -> BackendResult<String>;

    /// The running configuration, read-only, secrets masked.
    async fn settings(&self) -> BackendResult<Vec<Setting>>;

    /// The last `limit` log lines, oldest first.
    async fn recent_logs(&self, limit: usize) -> BackendResult<Vec<LogLine>>;

    /// What client profiles and scripts need.
    async fn client_setup(&self) -> BackendResult<SetupInfo>;

    /// Figures for `/metrics`.
    async fn metrics(&self) -> BackendResult<MetricsView>;
}
