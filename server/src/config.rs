//! The configuration file: one TOML file holds every setting of `roadgate serve`.
//!
//! [`load`] reads and checks a file and gives [`Settings`], from which the server takes the
//! settings of each part: [`ike::Config`], [`Listen`], [`session::Config`] (built by
//! [`Settings::session_config`] against the user database), [`dataplane::Config`], the admin
//! socket, the state folder and the log settings. Without a file the built-in configuration is
//! used (every key at its default); the command line's flags override either ([`Overrides`],
//! [`load_with`]).
//!
//! Loading is a pure function of the file, the flags and the secret files it names: it opens no
//! socket and creates nothing, so `roadgate check-config` and a reload on SIGHUP run exactly the
//! checks `roadgate serve` runs. The state folder and its generated pre-shared key are made later,
//! by [`Settings::prepare_state`].
//!
//! Every refusal names the file, the key as a dotted path (`ppp.pool[1]`) and the reason. Unknown
//! keys are refused, so that a typo is not silently ignored. Paths in a file are relative to the
//! file's folder; paths on the command line are relative to the working folder.
//!
//! `deploy/roadgate.example.toml` documents every key.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pppd_lite::AuthProtocol;
use pppd_lite::pool::{AddressPool, MAX_ADDRESSES};
use rand::Rng;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::aaa::local::UserStore;
use crate::dataplane;
use crate::esp;
use crate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use crate::ike::{self, Phase1Policy, Phase2Policy};
use crate::io::{L2TP_PORT, Listen};
use crate::l2tp::LnsConfig;
use crate::session::{self, Sessions};

/// The state folder when none is configured (relative to the working folder).
pub const DEFAULT_STATE_DIR: &str = "state";
/// The admin socket's file name in the state folder, when none is configured.
pub const ADMIN_SOCKET_FILE: &str = "admin.sock";
/// The generated pre-shared key's file name in the state folder.
pub const STATE_PSK_FILE: &str = "psk";
/// Client addresses when none are configured.
pub const DEFAULT_POOL: &str = "10.77.0.10-10.77.0.250";
/// The server's own PPP address when none is configured.
pub const DEFAULT_PPP_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Where the server listens when nothing is configured: every IPv4 and every IPv6 address.
pub const DEFAULT_LISTEN: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
];
/// The smallest and largest PPP MTU: IPv4's minimum datagram every host takes (RFC 791), and
/// Ethernet's 1500, above which the ESP packets carrying the link could not leave the server
/// unfragmented.
pub const MTU_RANGE: std::ops::RangeInclusive<i64> = 576..=1500;
/// Pre-shared keys shorter than this are accepted with a warning.
pub const WEAK_PSK_CHARS: usize = 8;
/// The longest duration a setting takes (durations are added to clocks).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest path of a Unix socket (`sun_path` less its closing NUL).
const MAX_SOCKET_PATH: usize = 107;

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a configuration was refused: the file, the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `None` for the built-in configuration (with flags).
    pub file: Option<PathBuf>,
    /// The key as a dotted path (`ppp.pool[1]`); `None` for the file as a whole (unreadable,
    /// TOML syntax: the reason then carries toml's line and column).
    pub key: Option<String>,
    /// The command-line flag that set the key, when one did.
    pub flag: Option<&'static str>,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(key) = &self.key {
            f.write_str(key)?;
            if let Some(flag) = self.flag {
                write!(f, " (set by {flag})")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// The file as written (every key optional: absent keys take the defaults)

/// A duration as written: whole seconds, or text such as `"30s"`, `"5m"`, `"1h30m"`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DurationValue {
    Seconds(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration such as \"30s\", \"5m\" or \"1h\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(DurationValue::Seconds(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(DurationValue::Seconds)
                    .map_err(|_| E::custom("the duration is too long"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DurationValue::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    ipsec: IpsecSection,
    #[serde(default)]
    l2tp: L2tpSection,
    #[serde(default)]
    ppp: PppSection,
    #[serde(default)]
    dataplane: DataplaneSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    accounting: AccountingSection,
    radius: Option<crate::radius::config::RadiusConfig>,
    dynauth: Option<crate::radius::config::DynAuthListenConfig>,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    certificates: CertificatesSection,
    #[serde(default)]
    web: WebSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSection {
    enabled: Option<bool>,
    bind: Option<String>,
    show_psk: Option<bool>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    metrics: Option<String>,
    metrics_token_file: Option<PathBuf>,
    metrics_bind: Option<String>,
    crl_bind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificatesSection {
    enabled: Option<bool>,
    public_names: Option<Vec<String>>,
    server_cert: Option<PathBuf>,
    server_key: Option<PathBuf>,
    #[serde(default)]
    extra_ca: Vec<PathBuf>,
    #[serde(default)]
    crl_files: Vec<PathBuf>,
    crl_url: Option<String>,
    require_user_match: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    state_dir: Option<PathBuf>,
    listen: Option<Vec<String>>,
    ike_port: Option<i64>,
    natt_port: Option<i64>,
    raw_esp: Option<bool>,
    socket_buffer: Option<i64>,
    admin_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IpsecSection {
    psk: Option<String>,
    psk_file: Option<PathBuf>,
    #[serde(default)]
    peers: Vec<PeerSection>,
    allow_3des: Option<bool>,
    nat_traversal: Option<bool>,
    windows_nat_workaround: Option<bool>,
    dpd_interval: Option<DurationValue>,
    dpd_timeout: Option<DurationValue>,
    max_half_open: Option<i64>,
    max_half_open_per_source: Option<i64>,
    max_half_open_per_v6_prefix: Option<i64>,
    early_drop_threshold: Option<f64>,
    handshake_queue: Option<i64>,
    handshake_threads: Option<i64>,
    #[serde(default)]
    phase1: Phase1Section,
    #[serde(default)]
    phase2: Phase2Section,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    address: Option<String>,
    psk: Option<String>,
    psk_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Phase1Section {
    ciphers: Option<Vec<String>>,
    hashes: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    max_lifetime: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Phase2Section {
    ciphers: Option<Vec<String>>,
    integrity: Option<Vec<String>>,
    pfs_groups: Option<Vec<String>>,
    require_pfs: Option<bool>,
    sha256_96: Option<bool>,
    max_lifetime: Option<DurationValue>,
    max_lifetime_kb: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct L2tpSection {
    secret_file: Option<PathBuf>,
    host_name: Option<String>,
    hello_interval: Option<DurationValue>,
    receive_window: Option<i64>,
    max_tunnels: Option<i64>,
    max_tunnels_per_peer: Option<i64>,
    max_sessions_per_tunnel: Option<i64>,
    max_half_open: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PppSection {
    local_address: Option<String>,
    pool: Option<Vec<String>>,
    pools: Option<std::collections::BTreeMap<String, Vec<String>>>,
    dns: Option<Vec<String>>,
    wins: Option<Vec<String>>,
    mtu: Option<i64>,
    lcp_echo_interval: Option<DurationValue>,
    lcp_echo_failures: Option<i64>,
    auth: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataplaneSection {
    tun: Option<bool>,
    tun_name: Option<String>,
    mss_clamp: Option<bool>,
    workers: Option<i64>,
    idle_timeout: Option<DurationValue>,
    session_timeout: Option<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    backends: Option<Vec<String>>,
    pam_service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountingSection {
    interim_interval: Option<DurationValue>,
    min_interim_interval: Option<DurationValue>,
    spool_max: Option<i64>,
    spool_warn: Option<i64>,
    block_when_full: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<String>,
    format: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Command-line overrides

/// Settings given on the command line: the flags of `roadgate serve` and `check-config`. Each one
/// replaces the file's key (or the built-in default) before the checks run; relative paths stay
/// relative to the working folder. The field documentation is the flags' help text.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on; repeat for several (0.0.0.0: every IPv4 address, ::: every IPv6
    /// address). Replaces server.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<IpAddr>,
    /// State folder: user database, generated pre-shared key, admin socket (default ./state).
    /// Sets server.state_dir.
    #[arg(long = "state", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Read the pre-shared key from this file instead of the state folder. Replaces ipsec.psk and
    /// ipsec.psk_file.
    #[arg(long, value_name = "FILE")]
    pub psk_file: Option<PathBuf>,
    /// IKE port (default 500).
    #[arg(long, value_name = "PORT")]
    pub ike_port: Option<u16>,
    /// NAT-T port: IKE with the non-ESP marker, and UDP-encapsulated ESP (default 4500).
    #[arg(long, value_name = "PORT")]
    pub natt_port: Option<u16>,
    /// Do not open the raw ESP (protocol 50) socket.
    #[arg(long)]
    pub no_raw_esp: bool,
    /// Also accept 3DES in phase 1 and phase 2 (only very old clients need it).
    #[arg(long = "allow-3des")]
    pub allow_3des: bool,
    /// Client addresses: FIRST-LAST (inclusive) or ADDRESS/LEN; repeat for several ranges
    /// (default 10.77.0.10-10.77.0.250). Replaces ppp.pool.
    #[arg(long, value_name = "FIRST-LAST")]
    pub pool: Vec<String>,
    /// The server's own address on the PPP links, never handed to a client (default 10.77.0.1).
    #[arg(long, value_name = "IPV4")]
    pub ppp_address: Option<Ipv4Addr>,
    /// DNS server given to clients (IPCP, RFC 1877); up to two. Replaces ppp.dns.
    #[arg(long, value_name = "IPV4")]
    pub dns: Vec<Ipv4Addr>,
    /// WINS (NBNS) server given to clients; up to two. Replaces ppp.wins.
    #[arg(long, value_name = "IPV4")]
    pub wins: Vec<Ipv4Addr>,
    /// File holding the L2TP tunnel secret (tunnel authentication, RFC 2661 §5.1.1); most clients
    /// use none.
    #[arg(long, value_name = "FILE")]
    pub l2tp_secret_file: Option<PathBuf>,
    /// Do not open the TUN device (clients connect but pass no traffic).
    #[arg(long)]
    pub no_tun: bool,
    /// The TUN device's name (default rg0).
    #[arg(long, value_name = "NAME")]
    pub tun_name: Option<String>,
    /// Test only: echo every decrypted UDP datagram back through ESP (checks both directions of
    /// ESP before the L2TP layer exists). Never use in production.
    #[arg(long, hide = true)]
    pub test_echo: bool,
    /// Test only: serve L2TP on UDP 1701 WITHOUT IPsec (passwords then cross the network
    /// unprotected). Without it, cleartext L2TP is dropped and logged.
    #[arg(long, hide = true)]
    pub plain_l2tp: bool,
}

impl Overrides {
    /// Writes the flags into the file's keys; returns which flag set which key.
    fn apply(&self, file: &mut FileConfig) -> BTreeMap<&'static str, &'static str> {
        let mut flags = BTreeMap::new();
        if !self.listen.is_empty() {
            file.server.listen = Some(self.listen.iter().map(ToString::to_string).collect());
            flags.insert("server.listen", "--listen");
        }
        if let Some(p) = &self.state_dir {
            file.server.state_dir = Some(p.clone());
            flags.insert("server.state_dir", "--state");
        }
        if let Some(p) = &self.psk_file {
            file.ipsec.psk = None;
            file.ipsec.psk_file = Some(p.clone());
            flags.insert("ipsec.psk_file", "--psk-file");
        }
        if let Some(p) = self.ike_port {
            file.server.ike_port = Some(i64::from(p));
            flags.insert("server.ike_port", "--ike-port");
        }
        if let Some(p) = self.natt_port {
            file.server.natt_port = Some(i64::from(p));
            flags.insert("server.natt_port", "--natt-port");
        }
        if self.no_raw_esp {
            file.server.raw_esp = Some(false);
            flags.insert("server.raw_esp", "--no-raw-esp");
        }
        if self.allow_3des {
            file.ipsec.allow_3des = Some(true);
            flags.insert("ipsec.allow_3des", "--allow-3des");
        }
        if !self.pool.is_empty() {
            file.ppp.pool = Some(self.pool.clone());
            flags.insert("ppp.pool", "--pool");
        }
        if let Some(a) = self.ppp_address {
            file.ppp.local_address = Some(a.to_string());
            flags.insert("ppp.local_address", "--ppp-address");
        }
        if !self.dns.is_empty() {
            file.ppp.dns = Some(self.dns.iter().map(ToString::to_string).collect());
            flags.insert("ppp.dns", "--dns");
        }
        if !self.wins.is_empty() {
            file.ppp.wins = Some(self.wins.iter().map(ToString::to_string).collect());
            flags.insert("ppp.wins", "--wins");
        }
        if let Some(p) = &self.l2tp_secret_file {
            file.l2tp.secret_file = Some(p.clone());
            flags.insert("l2tp.secret_file", "--l2tp-secret-file");
        }
        if self.no_tun {
            file.dataplane.tun = Some(false);
            flags.insert("dataplane.tun", "--no-tun");
        }
        if let Some(n) = &self.tun_name {
            file.dataplane.tun_name = Some(n.clone());
            flags.insert("dataplane.tun_name", "--tun-name");
        }
        flags
    }
}

// ---------------------------------------------------------------------------------------------
// The checked result

/// Where the default pre-shared key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PskSource {
    /// `ipsec.psk` in the file.
    Inline,
    /// `ipsec.psk_file` (or `--psk-file`): read at load.
    File(PathBuf),
    /// `psk` in the state folder, generated on first start ([`Settings::prepare_state`]).
    StateDir,
}

/// Where credentials are checked (`[auth] backends`).
pub type AuthBackend = crate::aaa::BackendKind;

/// A pool a RADIUS Framed-Pool can name: its name and its ranges (inclusive).
pub type NamedPool = (String, Vec<(Ipv4Addr, Ipv4Addr)>);

/// The `[radius]` settings, secrets loaded.
#[derive(Debug, Clone)]
pub struct RadiusSettings {
    pub client: crate::radius::client::ClientConfig,
    /// The local address requests leave from.
    pub source: Option<IpAddr>,
}

impl RadiusSettings {
    /// Whether a server is configured for `role`.
    pub fn has(&self, role: crate::radius::client::Role) -> bool {
        self.client.servers.iter().any(|s| s.role == role)
    }
}

/// The `[accounting]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountingSettings {
    /// Interim-Update interval when RADIUS gives none; `None`: none.
    pub interim_interval: Option<Duration>,
    /// The shortest interval accepted, from RADIUS or here (RFC 2869 §5.16 says 60 s).
    pub min_interim_interval: Duration,
    /// Records the spool holds at most (then Interim-Updates are not queued).
    pub spool_max: u64,
    /// Spool depth that raises the alarm.
    pub spool_warn: u64,
    /// Refuse new sessions while the spool is full (opt-in).
    pub block_when_full: bool,
}

impl Default for AccountingSettings {
    fn default() -> Self {
        Self {
            interim_interval: Some(Duration::from_secs(600)),
            min_interim_interval: Duration::from_secs(60),
            spool_max: 1_000_000,
            spool_warn: 10_000,
            block_when_full: false,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// The log settings: `RUST_LOG`, when set, wins over `level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A tracing filter (`info`, `roadgate=debug,info`).
    pub level: String,
    pub format: LogFormat,
}

impl LogSettings {
    /// Installs the global tracing subscriber (writing to standard error). Does nothing when one
    /// is installed already.
    pub fn install(&self) {
        use std::io::IsTerminal;
        use tracing_subscriber::EnvFilter;
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&self.level))
            .unwrap_or_else(|_| EnvFilter::new("info"));
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let fmt = match self.format {
            LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
            LogFormat::Json => fmt.json().boxed(),
        };
        // The recent-log ring of the web UI sees what standard error sees.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(crate::logring::RingLayer)
            .try_init();
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Every setting of the server, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file read, or `None` for the built-in configuration.
    pub file: Option<PathBuf>,
    /// The state folder (user database, generated key, admin socket by default).
    pub state_dir: PathBuf,
    /// Every address the server listens on (`server.listen` without the addresses a wildcard of
    /// their family covers); `listen.addr` is the first. Bind them with [`crate::io::Shell::bind_all`].
    pub listen_addrs: Vec<IpAddr>,
    /// What the shell binds.
    pub listen: Listen,
    /// The admin socket's path.
    pub admin_socket: PathBuf,
    /// The IKE responder's settings. Its default pre-shared key is set unless `psk_source` is
    /// [`PskSource::StateDir`], where [`Settings::prepare_state`] sets it.
    pub ike: ike::Config,
    pub psk_source: PskSource,
    /// The LNS (with the tunnel secret when one is configured).
    pub lns: LnsConfig,
    /// The PPP template (server role).
    pub ppp: pppd_lite::Config,
    /// Client address ranges (inclusive, disjoint, none holding the PPP address).
    pub pool: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Pools a RADIUS Framed-Pool can name (`[ppp] pools`), each with its ranges.
    pub named_pools: Vec<NamedPool>,
    /// The data plane (routes: the pool's ranges as prefixes; mtu: the PPP MTU).
    pub dataplane: dataplane::Config,
    pub auth_backends: Vec<AuthBackend>,
    /// The PAM service of the `pam` backend.
    pub pam_service: String,
    pub accounting: AccountingSettings,
    /// The RADIUS client (`[radius]`), secrets loaded.
    pub radius: Option<RadiusSettings>,
    /// Dynamic authorization (`[dynauth]`): where to listen and whom to hear, secrets loaded.
    pub dynauth: Option<(std::net::SocketAddr, crate::radius::dynauth::DynAuthConfig)>,
    pub log: LogSettings,
    /// `[certificates]`: certificate authentication in IKE and the server certificate.
    pub certificates: crate::pki::CertSettings,
    /// `[web]`: the admin web UI.
    pub web: crate::io::web::WebSettings,
    /// What is accepted but unwise, in words (for the log and `check-config`).
    pub warnings: Vec<String>,
}

/// Reads and checks `path`: [`load_with`] without command-line overrides. Usable again at run
/// time (SIGHUP): it creates nothing and opens no socket.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    load_with(Some(path), &Overrides::default())
}

/// Reads and checks `path` (or the built-in configuration when `None`) with `overrides` applied.
pub fn load_with(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let text = match path {
        Some(p) => fs::read_to_string(p).map_err(|e| ConfigError {
            file: Some(p.to_path_buf()),
            key: None,
            flag: None,
            reason: format!("cannot read the configuration file: {e}"),
        })?,
        None => String::new(),
    };
    parse(&text, path, overrides)
}

/// Checks configuration `text`, as if read from `path` (which names it in errors and anchors its
/// relative paths; `None`: the built-in configuration, relative to the working folder).
pub fn parse(
    text: &str,
    path: Option<&Path>,
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let (file, ctx) = parse_file(text, path, overrides)?;
    build(file, &ctx, overrides)
}

/// The admin socket a configuration names (`server.admin_socket`, else `<state_dir>/admin.sock`),
/// reading only that much of the file: the admin commands use it without the server's secrets.
pub fn admin_socket_path(
    path: Option<&Path>,
    state_dir: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    let text = match path {
        Some(p) => fs::read_to_string(p).map_err(|e| ConfigError {
            file: Some(p.to_path_buf()),
            key: None,
            flag: None,
            reason: format!("cannot read the configuration file: {e}"),
        })?,
        None => String::new(),
    };
    let overrides = Overrides {
        state_dir: state_dir.map(Path::to_path_buf),
        ..Overrides::default()
    };
    let (file, _) = parse_file(&text, path, &overrides)?;
    Ok(socket_of(&file.server))
}

/// What a check needs to word its errors.
struct Ctx {
    file: Option<PathBuf>,
    flags: BTreeMap<&'static str, &'static str>,
}

impl Ctx {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        let key = key.into();
        let flag = self
            .flags
            .iter()
            .find(|(k, _)| {
                key.strip_prefix(*k)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
            })
            .map(|(_, f)| *f);
        ConfigError {
            file: self.file.clone(),
            key: Some(key),
            flag,
            reason: reason.into(),
        }
    }
}

fn parse_file(
    text: &str,
    path: Option<&Path>,
    overrides: &Overrides,
) -> Result<(FileConfig, Ctx), ConfigError> {
    let mut file: FileConfig = toml::from_str(text).map_err(|e| ConfigError {
        file: path.map(Path::to_path_buf),
        key: None,
        flag: None,
        reason: e.to_string().trim_end().to_string(),
    })?;
    if let Some(base) = path.and_then(Path::parent) {
        anchor_paths(&mut file, base);
    }
    let flags = overrides.apply(&mut file);
    Ok((
        file,
        Ctx {
            file: path.map(Path::to_path_buf),
            flags,
        },
    ))
}

/// Makes the file's relative paths relative to its folder.
fn anchor_paths(file: &mut FileConfig, base: &Path) {
    let anchor = |p: &mut Option<PathBuf>| {
        if let Some(p) = p
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    };
    anchor(&mut file.server.state_dir);
    anchor(&mut file.server.admin_socket);
    anchor(&mut file.ipsec.psk_file);
    anchor(&mut file.l2tp.secret_file);
    anchor(&mut file.certificates.server_cert);
    anchor(&mut file.certificates.server_key);
    anchor(&mut file.web.cert);
    anchor(&mut file.web.key);
    anchor(&mut file.web.metrics_token_file);
    for p in file
        .certificates
        .extra_ca
        .iter_mut()
        .chain(file.certificates.crl_files.iter_mut())
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    for peer in &mut file.ipsec.peers {
        anchor(&mut peer.psk_file);
    }
}

fn state_dir_of(server: &ServerSection) -> PathBuf {
    server
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

fn socket_of(server: &ServerSection) -> PathBuf {
    server
        .admin_socket
        .clone()
        .unwrap_or_else(|| state_dir_of(server).join(ADMIN_SOCKET_FILE))
}

fn build(file: FileConfig, ctx: &Ctx, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let mut warnings = Vec::new();

    // [server]
    let state_dir = state_dir_of(&file.server);
    if state_dir.as_os_str().is_empty() {
        return Err(ctx.err("server.state_dir", "is empty"));
    }
    let admin_socket = socket_of(&file.server);
    let socket_len = admin_socket.as_os_str().len();
    if socket_len > MAX_SOCKET_PATH {
        return Err(ctx.err(
            if file.server.admin_socket.is_some() {
                "server.admin_socket"
            } else {
                "server.state_dir"
            },
            format!(
                "the admin socket {} is {socket_len} bytes long; a Unix socket path has at most \
                 {MAX_SOCKET_PATH}",
                admin_socket.display()
            ),
        ));
    }
    let listen_addrs = listen_addresses(&file.server, ctx, &mut warnings)?;
    let bind = listen_addrs.first().copied().unwrap_or(DEFAULT_LISTEN[0]);
    let ike_port = port(ctx, "server.ike_port", file.server.ike_port, 500)?;
    let natt_port = port(ctx, "server.natt_port", file.server.natt_port, 4500)?;
    if ike_port == natt_port {
        return Err(ctx.err(
            "server.natt_port",
            format!("{natt_port} is server.ike_port too: the two ports must differ"),
        ));
    }
    let listen = Listen {
        addr: bind,
        ike_port,
        natt_port,
        raw_esp: file.server.raw_esp.unwrap_or(true),
        test_echo: overrides.test_echo,
        l2tp_port: Some(L2TP_PORT),
        plain_l2tp: overrides.plain_l2tp,
        socket_buffer: match file.server.socket_buffer {
            None => crate::io::DEFAULT_SOCKET_BUFFER,
            Some(b) if (64 * 1024..=1 << 30).contains(&b) => b as usize,
            Some(b) => {
                return Err(ctx.err(
                    "server.socket_buffer",
                    format!("{b} bytes: give 65536 (64 KiB) to 1073741824 (1 GiB)"),
                ));
            }
        },
        workers: match file.dataplane.workers {
            None => 0,
            Some(n @ 0..=64) => n as usize,
            Some(n) => {
                return Err(ctx.err(
                    "dataplane.workers",
                    format!("{n}: give 1 to 64 threads, or 0 for one per core"),
                ));
            }
        },
    };

    // [auth] before [ppp]: the backends decide which PPP methods can work.
    let auth_backends = auth_backends(&file.auth, ctx)?;
    let pam_service = match &file.auth.pam_service {
        Some(s)
            if s.is_empty() || s.contains(['/', '\0']) || s.chars().any(char::is_whitespace) =>
        {
            return Err(ctx.err(
                "auth.pam_service",
                format!("{s:?} is not a PAM service name"),
            ));
        }
        Some(s) => s.clone(),
        None => crate::aaa::pam::DEFAULT_SERVICE.to_string(),
    };
    let accounting = accounting(&file.accounting, ctx)?;
    let radius = match &file.radius {
        Some(r) => {
            let client = r
                .client_config()
                .map_err(|e| ctx.err("radius.servers", e.to_string()))?;
            Some(RadiusSettings {
                client,
                source: r.source_address,
            })
        }
        None => None,
    };
    if let Some(i) = auth_backends.iter().position(|b| *b == AuthBackend::Radius)
        && !radius
            .as_ref()
            .is_some_and(|r| r.has(crate::radius::client::Role::Auth))
    {
        return Err(ctx.err(
            format!("auth.backends[{i}]"),
            "\"radius\" needs a [radius] section with a server for authentication (role \"auth\" or \"both\")",
        ));
    }
    let dynauth = match &file.dynauth {
        Some(d) => {
            let mut cfg = d
                .dynauth_config()
                .map_err(|e| ctx.err("dynauth.clients", e.to_string()))?;
            // A request naming another NAS is refused (Error-Cause 403): ours are [radius]'s.
            if let Some(r) = &radius {
                cfg.nas_identifier = r.client.nas_identifier.clone();
                cfg.nas_ip = r.client.nas_ip;
            }
            if cfg.clients.is_empty() {
                return Err(ctx.err(
                    "dynauth.clients",
                    "is empty: name the RADIUS servers allowed to send Disconnect and CoA requests",
                ));
            }
            Some((d.bind_address(), cfg))
        }
        None => None,
    };

    // [ipsec]
    let (ike, psk_source) = ipsec(&file.ipsec, natt_port, ctx, &mut warnings)?;

    // [l2tp]
    let lns = l2tp(&file.l2tp, ctx)?;

    // [ppp]
    let ppp_section = &file.ppp;
    let local_address = match &ppp_section.local_address {
        Some(s) => ipv4(ctx, "ppp.local_address", s)?,
        None => DEFAULT_PPP_ADDRESS,
    };
    let pool = pool(ppp_section, local_address, ctx)?;
    let named_pools = named_pools(ppp_section, local_address, &pool, ctx)?;
    let dns = servers(ctx, "ppp.dns", ppp_section.dns.as_deref())?;
    let wins = servers(ctx, "ppp.wins", ppp_section.wins.as_deref())?;
    let mtu = match ppp_section.mtu {
        Some(v) if MTU_RANGE.contains(&v) => v as u16,
        Some(v) => {
            return Err(ctx.err(
                "ppp.mtu",
                format!(
                    "{v} is out of range: {}..={}",
                    MTU_RANGE.start(),
                    MTU_RANGE.end()
                ),
            ));
        }
        None => pppd_lite::Config::default().mru,
    };
    let auth = ppp_auth(ppp_section.auth.as_deref(), &auth_backends, ctx)?;
    warnings.extend(crate::aaa::backend::impossible_pairs(&auth_backends, &auth));
    let mut ppp = pppd_lite::Config::server(pppd_lite::ServerConfig {
        auth,
        local_address,
        dns,
        nbns: wins,
        name: "roadgate".into(),
    });
    ppp.mru = mtu;
    if let Some(v) = &ppp_section.lcp_echo_interval {
        ppp.echo_interval = optional_duration(ctx, "ppp.lcp_echo_interval", v)?;
    }
    if let Some(v) = ppp_section.lcp_echo_failures {
        ppp.echo_failures = int(ctx, "ppp.lcp_echo_failures", v, 1, 100)?;
    }

    // [dataplane]
    let dp = &file.dataplane;
    let defaults = dataplane::Config::default();
    let tun_name = match &dp.tun_name {
        Some(n) => {
            check_tun_name(n).map_err(|why| ctx.err("dataplane.tun_name", why))?;
            n.clone()
        }
        None => defaults.tun_name,
    };
    let dataplane = dataplane::Config {
        tun: dp.tun.unwrap_or(defaults.tun),
        tun_name,
        local_address,
        routes: pool
            .iter()
            .chain(named_pools.iter().flat_map(|(_, r)| r.iter()))
            .flat_map(|&(a, b)| dataplane::range_prefixes(a, b))
            .collect(),
        mtu,
        mss_clamp: dp.mss_clamp.unwrap_or(defaults.mss_clamp),
        idle_timeout: match &dp.idle_timeout {
            Some(v) => optional_duration(ctx, "dataplane.idle_timeout", v)?,
            None => defaults.idle_timeout,
        },
        session_timeout: match &dp.session_timeout {
            Some(v) => optional_duration(ctx, "dataplane.session_timeout", v)?,
            None => defaults.session_timeout,
        },
    };

    // [log]
    let log = log_settings(&file.log, ctx)?;

    // [certificates]
    let c = &file.certificates;
    if c.server_cert.is_some() != c.server_key.is_some() {
        return Err(ctx.err(
            "certificates.server_cert",
            "server_cert and server_key go together",
        ));
    }
    if let Some(url) = &c.crl_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ctx.err(
            "certificates.crl_url",
            format!("{url:?} is not an http:// or https:// address"),
        ));
    }
    let certificates = crate::pki::CertSettings {
        enabled: c.enabled.unwrap_or(true),
        public_names: c.public_names.clone().unwrap_or_default(),
        server_cert: c.server_cert.clone(),
        server_key: c.server_key.clone(),
        extra_ca: c.extra_ca.clone(),
        crl_files: c.crl_files.clone(),
        crl_url: c.crl_url.clone(),
        require_user_match: c.require_user_match.unwrap_or(true),
    };

    let web = web_settings(&file.web, &certificates, ctx)?;

    Ok(Settings {
        file: ctx.file.clone(),
        state_dir,
        listen_addrs,
        listen,
        admin_socket,
        ike,
        psk_source,
        lns,
        ppp,
        pool,
        named_pools,
        dataplane,
        auth_backends,
        pam_service,
        accounting,
        radius,
        dynauth,
        log,
        certificates,
        web,
        warnings,
    })
}

/// `[web]`: the admin UI's listener, its certificate, `/metrics` and the CRL listener.
fn web_settings(
    w: &WebSection,
    certificates: &crate::pki::CertSettings,
    ctx: &Ctx,
) -> Result<crate::io::web::WebSettings, ConfigError> {
    use crate::io::web::{MetricsMode, WebSettings};
    let addr = |key: &str, v: &str| -> Result<std::net::SocketAddr, ConfigError> {
        v.parse().map_err(|_| {
            ctx.err(
                key,
                format!("{v:?} is not an address with a port, such as \"192.0.2.1:8443\""),
            )
        })
    };
    let defaults = WebSettings::default();
    if w.cert.is_some() != w.key.is_some() {
        return Err(ctx.err("web.cert", "cert and key go together"));
    }
    let metrics = match (w.metrics.as_deref(), &w.metrics_token_file) {
        (None | Some("off"), None) => MetricsMode::Off,
        (Some("open"), None) => MetricsMode::Open,
        (Some("token"), Some(f)) => MetricsMode::Token(f.clone()),
        (Some("token"), None) => {
            return Err(ctx.err(
                "web.metrics_token_file",
                "metrics = \"token\" needs the file holding the bearer token",
            ));
        }
        (None | Some("off" | "open"), Some(_)) => {
            return Err(ctx.err(
                "web.metrics_token_file",
                "only used with metrics = \"token\"",
            ));
        }
        (Some(other), _) => {
            return Err(ctx.err(
                "web.metrics",
                format!("{other:?}: use \"off\", \"token\" or \"open\""),
            ));
        }
    };
    let crl_bind = match &w.crl_bind {
        Some(v) => Some(addr("web.crl_bind", v)?),
        None => None,
    };
    if crl_bind.is_some() && certificates.crl_url.is_none() {
        return Err(ctx.err(
            "web.crl_bind",
            "serving the CRL needs certificates.crl_url (the address written into certificates)",
        ));
    }
    Ok(WebSettings {
        enabled: w.enabled.unwrap_or(defaults.enabled),
        bind: match &w.bind {
            Some(v) => addr("web.bind", v)?,
            None => defaults.bind,
        },
        show_psk: w.show_psk.unwrap_or(false),
        cert: w.cert.clone().zip(w.key.clone()),
        metrics,
        metrics_bind: match &w.metrics_bind {
            Some(v) => Some(addr("web.metrics_bind", v)?),
            None => None,
        },
        crl_bind,
    })
}

fn accounting(s: &AccountingSection, ctx: &Ctx) -> Result<AccountingSettings, ConfigError> {
    let mut a = AccountingSettings::default();
    if let Some(v) = &s.interim_interval {
        a.interim_interval = optional_duration(ctx, "accounting.interim_interval", v)?;
    }
    if let Some(v) = &s.min_interim_interval {
        a.min_interim_interval =
            optional_duration(ctx, "accounting.min_interim_interval", v)?.unwrap_or(Duration::ZERO);
    }
    if let Some(v) = s.spool_max {
        a.spool_max = int(ctx, "accounting.spool_max", v, 100, 100_000_000)?;
    }
    if let Some(v) = s.spool_warn {
        a.spool_warn = int(ctx, "accounting.spool_warn", v, 1, 100_000_000)?;
    }
    if a.spool_warn > a.spool_max {
        return Err(ctx.err(
            "accounting.spool_warn",
            format!(
                "{} is above accounting.spool_max ({})",
                a.spool_warn, a.spool_max
            ),
        ));
    }
    a.block_when_full = s.block_when_full.unwrap_or(false);
    Ok(a)
}

fn listen_addresses(
    server: &ServerSection,
    ctx: &Ctx,
    warnings: &mut Vec<String>,
) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(list) = &server.listen else {
        return Ok(DEFAULT_LISTEN.to_vec());
    };
    if list.is_empty() {
        return Err(ctx.err("server.listen", "is empty: name at least one address"));
    }
    let mut addrs: Vec<IpAddr> = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let key = format!("server.listen[{i}]");
        let a: IpAddr = s
            .trim()
            .parse()
            .map_err(|_| ctx.err(&key, format!("{s:?} is not an IP address")))?;
        if addrs.contains(&a) {
            return Err(ctx.err(&key, format!("{a} is listed twice")));
        }
        addrs.push(a);
    }
    let (addrs, covered) = crate::io::listen::distinct_addrs(&addrs);
    for a in covered {
        let wildcard = if a.is_ipv4() { "0.0.0.0" } else { "::" };
        warnings.push(format!(
            "server.listen: {a} is served through {wildcard}, which is listed too"
        ));
    }
    Ok(addrs)
}

fn port(ctx: &Ctx, key: &str, v: Option<i64>, default: u16) -> Result<u16, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let p: u16 = int(ctx, key, v, 1, 65535)?;
    if p == L2TP_PORT {
        return Err(ctx.err(
            key,
            format!("{p} is the L2TP port, which the server watches for cleartext L2TP"),
        ));
    }
    Ok(p)
}

/// `v` as a `T` within `min..=max`.
fn int<T: TryFrom<i64>>(
    ctx: &Ctx,
    key: &str,
    v: i64,
    min: i64,
    max: i64,
) -> Result<T, ConfigError> {
    if v < min || v > max {
        return Err(ctx.err(key, format!("{v} is out of range: {min}..={max}")));
    }
    T::try_from(v).map_err(|_| ctx.err(key, format!("{v} is out of range: {min}..={max}")))
}

fn ipv4(ctx: &Ctx, key: &str, s: &str) -> Result<Ipv4Addr, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| ctx.err(key, format!("{s:?} is not an IPv4 address")))
}

fn duration(ctx: &Ctx, key: &str, v: &DurationValue) -> Result<Duration, ConfigError> {
    let d = match v {
        DurationValue::Seconds(n) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| ctx.err(key, format!("{n} is negative")))?,
        DurationValue::Text(t) => parse_duration(t).map_err(|why| ctx.err(key, why))?,
    };
    if d > MAX_DURATION {
        return Err(ctx.err(key, format!("{} is longer than a year", format_duration(d))));
    }
    Ok(d)
}

/// A duration where 0 means off.
fn optional_duration(
    ctx: &Ctx,
    key: &str,
    v: &DurationValue,
) -> Result<Option<Duration>, ConfigError> {
    let d = duration(ctx, key, v)?;
    Ok((!d.is_zero()).then_some(d))
}

/// A duration that must not be zero, at least `min`.
fn positive_duration(
    ctx: &Ctx,
    key: &str,
    v: &DurationValue,
    min: Duration,
) -> Result<Duration, ConfigError> {
    let d = duration(ctx, key, v)?;
    if d < min {
        return Err(ctx.err(
            key,
            format!(
                "{} is too short: at least {}",
                format_duration(d),
                format_duration(min)
            ),
        ));
    }
    Ok(d)
}

/// Parses a duration: whole seconds (`"90"`) or numbers with units `s`, `m`, `h`, `d`
/// (`"30s"`, `"5m"`, `"1h30m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad =
        |why: String| format!("{text:?} is not a duration: {why} (e.g. \"30s\", \"5m\", \"1h\")");
    if s.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad(format!("a number is missing before {rest:?}")));
        }
        let (number, after) = rest.split_at(digits);
        let n: u64 = number
            .parse()
            .map_err(|_| bad(format!("{number} is too large")))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "" if digits == s.len() => 1,
            "" => return Err(bad(format!("{number} has no unit"))),
            other => {
                return Err(bad(format!("unknown unit {other:?} (units: s, m, h, d)")));
            }
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("it is too long".into()))?;
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

/// A duration the way the configuration writes it (`"1h30m"`, `"45s"`, `"0s"`).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

fn read_key_file(ctx: &Ctx, key: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let secret = read_secret(path)
        .map_err(|e| ctx.err(key, format!("cannot read {}: {e}", path.display())))?;
    if secret.is_empty() {
        return Err(ctx.err(key, format!("{} holds an empty key", path.display())));
    }
    Ok(Zeroizing::new(secret))
}

/// A key read from the configuration or a file.
type Secret = Zeroizing<Vec<u8>>;

/// One pre-shared key: `psk` or `psk_file`, exactly one.
fn one_psk(
    ctx: &Ctx,
    prefix: &str,
    psk: Option<&String>,
    psk_file: Option<&PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<Option<(Secret, PskSource)>, ConfigError> {
    let (key, source) = match (psk, psk_file) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                format!("{prefix}psk"),
                format!("give either {prefix}psk or {prefix}psk_file, not both"),
            ));
        }
        (Some(inline), None) => {
            if inline.is_empty() {
                return Err(ctx.err(format!("{prefix}psk"), "the pre-shared key is empty"));
            }
            (
                Zeroizing::new(inline.as_bytes().to_vec()),
                PskSource::Inline,
            )
        }
        (None, Some(path)) => (
            read_key_file(ctx, &format!("{prefix}psk_file"), path)?,
            PskSource::File(path.clone()),
        ),
        (None, None) => return Ok(None),
    };
    let chars = String::from_utf8_lossy(&key).chars().count();
    if chars < WEAK_PSK_CHARS {
        warnings.push(format!(
            "{prefix}psk: the pre-shared key has only {chars} characters; it can be guessed \
             offline from one captured handshake: use 20 or more random characters"
        ));
    }
    Ok(Some((key, source)))
}

/// Looks `name` up in `table` (case-insensitively); the error lists the valid names.
fn by_name<T: Copy>(
    ctx: &Ctx,
    key: &str,
    what: &str,
    name: &str,
    table: &[(&str, T)],
) -> Result<T, ConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some((_, v)) = table.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    let valid: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let extra = match lower.as_str() {
        "modp768" => " (MODP-768, group 1, is too weak and never allowed)",
        "md5" => " (MD5 is not supported)",
        "des" => " (single DES is not supported)",
        "null" => " (ESP without encryption is not allowed)",
        _ => "",
    };
    Err(ctx.err(
        key,
        format!(
            "unknown {what} {name:?}{extra}; valid: {}",
            valid.join(", ")
        ),
    ))
}

/// A list of names mapped through `table`, refusing an empty list and repeats. `None` when
/// the key is absent.
fn names<T: Copy + PartialEq>(
    ctx: &Ctx,
    key: &str,
    what: &str,
    list: Option<&[String]>,
    table: &[(&str, T)],
) -> Result<Option<Vec<T>>, ConfigError> {
    let Some(list) = list else { return Ok(None) };
    if list.is_empty() {
        return Err(ctx.err(key, format!("is empty: name at least one {what}")));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let v = by_name(ctx, &k, what, name, table)?;
        if out.contains(&v) {
            return Err(ctx.err(&k, format!("{name:?} is listed twice")));
        }
        out.push(v);
    }
    Ok(Some(out))
}

/// Configuration names of algorithms (or methods) and what they are called in errors.
#[derive(Debug)]
pub struct NameTable<T: 'static> {
    /// What an entry is ("cipher", "group").
    pub what: &'static str,
    /// Each name and its value.
    pub names: &'static [(&'static str, T)],
}

impl<T: Copy + PartialEq> NameTable<T> {
    /// The configuration name of `v`.
    pub fn name_of(&self, v: &T) -> &'static str {
        self.names
            .iter()
            .find(|(_, x)| x == v)
            .map_or("?", |(n, _)| n)
    }

    /// The values of `list` at `key`, when the key is set.
    fn parse(
        &self,
        ctx: &Ctx,
        key: &str,
        list: Option<&[String]>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        names(ctx, key, self.what, list, self.names)
    }

    /// Replaces `target` with the values of `list` at `key`, when the key is set.
    fn set(
        &self,
        ctx: &Ctx,
        key: &str,
        list: &Option<Vec<String>>,
        target: &mut Vec<T>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = self.parse(ctx, key, list.as_deref())? {
            *target = v;
        }
        Ok(())
    }
}

/// Phase-1 ciphers by configuration name.
pub const PHASE1_CIPHERS: NameTable<CipherAlg> = NameTable {
    what: "cipher",
    names: &[
        ("aes128", CipherAlg::AesCbc { key_len: 16 }),
        ("aes192", CipherAlg::AesCbc { key_len: 24 }),
        ("aes256", CipherAlg::AesCbc { key_len: 32 }),
        ("3des", CipherAlg::TripleDesCbc),
    ],
};
/// Phase-1 hashes (HMAC PRF) by configuration name.
pub const PHASE1_HASHES: NameTable<HashAlg> = NameTable {
    what: "hash",
    names: &[
        ("sha1", HashAlg::Sha1),
        ("sha256", HashAlg::Sha256),
        ("sha384", HashAlg::Sha384),
        ("sha512", HashAlg::Sha512),
    ],
};
/// Diffie-Hellman groups by configuration name (MODP-768 is never allowed).
pub const DH_GROUPS: NameTable<DhGroup> = NameTable {
    what: "group",
    names: &[
        ("modp1024", DhGroup::Modp1024),
        ("modp1536", DhGroup::Modp1536),
        ("modp2048", DhGroup::Modp2048),
        ("modp3072", DhGroup::Modp3072),
        ("modp4096", DhGroup::Modp4096),
        ("ecp256", DhGroup::Ecp256),
        ("ecp384", DhGroup::Ecp384),
    ],
};
/// ESP ciphers (AEAD and CBC) by configuration name.
pub const PHASE2_CIPHERS: NameTable<esp::Encryption> = NameTable {
    what: "cipher",
    names: &[
        ("aes128gcm16", esp::Encryption::AesGcm16 { key_len: 16 }),
        ("aes192gcm16", esp::Encryption::AesGcm16 { key_len: 24 }),
        ("aes256gcm16", esp::Encryption::AesGcm16 { key_len: 32 }),
        ("aes128", esp::Encryption::AesCbc { key_len: 16 }),
        ("aes192", esp::Encryption::AesCbc { key_len: 24 }),
        ("aes256", esp::Encryption::AesCbc { key_len: 32 }),
        ("3des", esp::Encryption::TripleDesCbc),
    ],
};
/// ESP integrity algorithms by configuration name (HMAC, RFC 2404 / RFC 4868 truncations).
pub const PHASE2_INTEGRITY: NameTable<esp::Integrity> = NameTable {
    what: "integrity algorithm",
    names: &[
        ("sha1", esp::Integrity::HmacSha1_96),
        ("sha256", esp::Integrity::HmacSha256_128),
        ("sha384", esp::Integrity::HmacSha384_192),
        ("sha512", esp::Integrity::HmacSha512_256),
    ],
};

/// PPP authentication methods by configuration name.
pub const PPP_AUTH: NameTable<AuthProtocol> = NameTable {
    what: "authentication method",
    names: &[
        ("mschapv2", AuthProtocol::MsChapV2),
        ("pap", AuthProtocol::Pap),
        ("chap", AuthProtocol::ChapMd5),
        ("eap", AuthProtocol::Eap),
    ],
};

/// 3DES in a list without `allow_3des`: refused, naming the switch.
fn check_3des<T: PartialEq>(
    ctx: &Ctx,
    key: &str,
    list: &[T],
    des: &T,
    allow: bool,
) -> Result<(), ConfigError> {
    if let Some(i) = list.iter().position(|x| x == des)
        && !allow
    {
        return Err(ctx.err(
            format!("{key}[{i}]"),
            "\"3des\" needs ipsec.allow_3des = true (only very old clients need it)",
        ));
    }
    Ok(())
}

fn ipsec(
    s: &IpsecSection,
    natt_port: u16,
    ctx: &Ctx,
    warnings: &mut Vec<String>,
) -> Result<(ike::Config, PskSource), ConfigError> {
    let mut psk = ike::PskStore::default();
    let source = match one_psk(ctx, "ipsec.", s.psk.as_ref(), s.psk_file.as_ref(), warnings)? {
        Some((key, source)) => {
            psk.set_default(key.to_vec());
            source
        }
        None => PskSource::StateDir,
    };
    let mut peers = HashSet::new();
    for (i, peer) in s.peers.iter().enumerate() {
        let prefix = format!("ipsec.peers[{i}].");
        let addr_text = peer
            .address
            .as_ref()
            .ok_or_else(|| ctx.err(format!("{prefix}address"), "is missing"))?;
        let addr: IpAddr = addr_text.trim().parse().map_err(|_| {
            ctx.err(
                format!("{prefix}address"),
                format!("{addr_text:?} is not an IP address"),
            )
        })?;
        if !peers.insert(addr) {
            return Err(ctx.err(
                format!("{prefix}address"),
                format!("{addr} has a key already"),
            ));
        }
        let (key, _) = one_psk(
            ctx,
            &prefix,
            peer.psk.as_ref(),
            peer.psk_file.as_ref(),
            warnings,
        )?
        .ok_or_else(|| {
            ctx.err(
                format!("{prefix}psk"),
                format!("give {prefix}psk or {prefix}psk_file"),
            )
        })?;
        psk.insert(addr, key.to_vec());
    }

    let allow_3des = s.allow_3des.unwrap_or(false);
    let mut phase1 = Phase1Policy::default();
    let (p1, p2) = (&s.phase1, &s.phase2);
    PHASE1_CIPHERS.set(
        ctx,
        "ipsec.phase1.ciphers",
        &p1.ciphers,
        &mut phase1.encryption,
    )?;
    check_3des(
        ctx,
        "ipsec.phase1.ciphers",
        &phase1.encryption,
        &CipherAlg::TripleDesCbc,
        allow_3des,
    )?;
    PHASE1_HASHES.set(ctx, "ipsec.phase1.hashes", &p1.hashes, &mut phase1.hash)?;
    DH_GROUPS.set(ctx, "ipsec.phase1.groups", &p1.groups, &mut phase1.groups)?;
    if let Some(v) = &p1.max_lifetime {
        phase1.max_lifetime =
            positive_duration(ctx, "ipsec.phase1.max_lifetime", v, Duration::from_secs(60))?;
    }

    let mut phase2 = Phase2Policy {
        pfs_groups: phase1.groups.clone(),
        ..Phase2Policy::default()
    };
    PHASE2_CIPHERS.set(
        ctx,
        "ipsec.phase2.ciphers",
        &p2.ciphers,
        &mut phase2.encryption,
    )?;
    check_3des(
        ctx,
        "ipsec.phase2.ciphers",
        &phase2.encryption,
        &esp::Encryption::TripleDesCbc,
        allow_3des,
    )?;
    if p2.integrity.as_ref().is_some_and(Vec::is_empty) {
        // Right when every cipher is AEAD (checked below).
        phase2.integrity = Vec::new();
    } else {
        PHASE2_INTEGRITY.set(
            ctx,
            "ipsec.phase2.integrity",
            &p2.integrity,
            &mut phase2.integrity,
        )?;
    }
    DH_GROUPS.set(
        ctx,
        "ipsec.phase2.pfs_groups",
        &p2.pfs_groups,
        &mut phase2.pfs_groups,
    )?;
    if let Some(v) = p2.require_pfs {
        phase2.require_pfs = v;
    }
    if let Some(v) = p2.sha256_96 {
        phase2.sha256_96 = v;
    }
    if let Some(v) = &p2.max_lifetime {
        phase2.max_lifetime =
            positive_duration(ctx, "ipsec.phase2.max_lifetime", v, Duration::from_secs(60))?;
    }
    if let Some(v) = p2.max_lifetime_kb {
        let kb: u64 = int(ctx, "ipsec.phase2.max_lifetime_kb", v, 0, i64::MAX)?;
        phase2.max_lifetime_kb = (kb > 0).then_some(kb);
    }
    if allow_3des {
        if !phase1.encryption.contains(&CipherAlg::TripleDesCbc) {
            phase1.encryption.push(CipherAlg::TripleDesCbc);
        }
        if !phase2.encryption.contains(&esp::Encryption::TripleDesCbc) {
            phase2.encryption.push(esp::Encryption::TripleDesCbc);
        }
    }
    let needs_integrity = phase2
        .encryption
        .iter()
        .any(|e| !matches!(e, esp::Encryption::AesGcm16 { .. }));
    if needs_integrity && phase2.integrity.is_empty() {
        return Err(ctx.err(
            "ipsec.phase2.integrity",
            "is empty, but ipsec.phase2.ciphers has CBC ciphers, which need an integrity \
             algorithm: name one, or list only AES-GCM ciphers",
        ));
    }
    if phase2.require_pfs && phase2.pfs_groups.is_empty() {
        return Err(ctx.err(
            "ipsec.phase2.require_pfs",
            "PFS is required but ipsec.phase2.pfs_groups is empty",
        ));
    }

    let mut cfg = ike::Config {
        psk,
        phase1,
        phase2,
        natt_port,
        ..ike::Config::default()
    };
    if let Some(v) = s.nat_traversal {
        cfg.nat_t = v;
    }
    if let Some(v) = s.windows_nat_workaround {
        cfg.windows_nat_workaround = v;
    }
    if let Some(v) = &s.dpd_interval {
        cfg.dpd_interval = optional_duration(ctx, "ipsec.dpd_interval", v)?;
    }
    if let Some(v) = &s.dpd_timeout {
        cfg.dpd_timeout = positive_duration(ctx, "ipsec.dpd_timeout", v, Duration::from_secs(1))?;
    }
    // Flood limits of the IKE responder (docs/ipsec.md, "Half-open limits").
    let limit = |key: &str, v: Option<i64>, target: &mut usize| -> Result<(), ConfigError> {
        if let Some(v) = v {
            *target = int(ctx, key, v, 1, 1 << 20)?;
        }
        Ok(())
    };
    limit(
        "ipsec.max_half_open",
        s.max_half_open,
        &mut cfg.max_half_open,
    )?;
    limit(
        "ipsec.max_half_open_per_source",
        s.max_half_open_per_source,
        &mut cfg.max_half_open_per_source,
    )?;
    // Unset, the /64 limit is never below the per-address one.
    cfg.max_half_open_per_v6_prefix = cfg
        .max_half_open_per_v6_prefix
        .max(cfg.max_half_open_per_source);
    limit(
        "ipsec.max_half_open_per_v6_prefix",
        s.max_half_open_per_v6_prefix,
        &mut cfg.max_half_open_per_v6_prefix,
    )?;
    limit(
        "ipsec.handshake_queue",
        s.handshake_queue,
        &mut cfg.handshake_queue,
    )?;
    match s.handshake_threads {
        None => {}
        Some(n @ 0..=64) => cfg.handshake_threads = n as usize,
        Some(n) => {
            return Err(ctx.err(
                "ipsec.handshake_threads",
                format!("{n}: give 1 to 64 threads, or 0 for one per core beyond the first"),
            ));
        }
    }
    if cfg.max_half_open_per_source > cfg.max_half_open {
        return Err(ctx.err(
            "ipsec.max_half_open_per_source",
            format!(
                "{} is above ipsec.max_half_open ({})",
                cfg.max_half_open_per_source, cfg.max_half_open
            ),
        ));
    }
    if cfg.max_half_open_per_v6_prefix < cfg.max_half_open_per_source {
        return Err(ctx.err(
            "ipsec.max_half_open_per_v6_prefix",
            format!(
                "{} is below ipsec.max_half_open_per_source ({}): one address of the /64 could \
                 not use its own limit",
                cfg.max_half_open_per_v6_prefix, cfg.max_half_open_per_source
            ),
        ));
    }
    if let Some(f) = s.early_drop_threshold {
        if !(0.0..=1.0).contains(&f) {
            return Err(ctx.err(
                "ipsec.early_drop_threshold",
                format!("{f} is out of range: a fraction of ipsec.max_half_open, 0.0..=1.0"),
            ));
        }
        cfg.early_drop_threshold = f;
    }
    Ok((cfg, source))
}

fn l2tp(s: &L2tpSection, ctx: &Ctx) -> Result<LnsConfig, ConfigError> {
    let mut lns = LnsConfig::default();
    if let Some(p) = &s.secret_file {
        lns.secret = Some(read_key_file(ctx, "l2tp.secret_file", p)?);
    }
    if let Some(n) = &s.host_name {
        if n.is_empty() || n.len() > 255 {
            return Err(ctx.err("l2tp.host_name", "must be 1 to 255 bytes long"));
        }
        lns.host_name = n.clone();
    }
    if let Some(v) = &s.hello_interval {
        lns.hello_interval = duration(ctx, "l2tp.hello_interval", v)?;
    }
    if let Some(v) = s.receive_window {
        lns.receive_window = int(ctx, "l2tp.receive_window", v, 1, 65535)?;
    }
    let limit = |key: &str, v: Option<i64>, target: &mut usize| -> Result<(), ConfigError> {
        if let Some(v) = v {
            *target = int(ctx, key, v, 1, 1 << 20)?;
        }
        Ok(())
    };
    limit("l2tp.max_tunnels", s.max_tunnels, &mut lns.max_tunnels)?;
    limit(
        "l2tp.max_tunnels_per_peer",
        s.max_tunnels_per_peer,
        &mut lns.max_tunnels_per_peer,
    )?;
    limit(
        "l2tp.max_sessions_per_tunnel",
        s.max_sessions_per_tunnel,
        &mut lns.max_sessions_per_tunnel,
    )?;
    limit(
        "l2tp.max_half_open",
        s.max_half_open,
        &mut lns.max_half_open,
    )?;
    Ok(lns)
}

/// Parses one pool entry: `FIRST-LAST` (inclusive), `ADDRESS/LEN` (its hosts: without the
/// network and broadcast addresses up to /30, every address of a /31 or /32), or one address.
pub fn parse_pool_entry(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let t = s.trim();
    let ip = |x: &str| -> Result<Ipv4Addr, String> {
        x.trim()
            .parse()
            .map_err(|_| format!("{x:?} is not an IPv4 address"))
    };
    if let Some((a, b)) = t.split_once('-') {
        let (a, b) = (ip(a)?, ip(b)?);
        if a > b {
            return Err(format!("{s:?}: the first address is above the last"));
        }
        return Ok((a, b));
    }
    if let Some((a, len)) = t.split_once('/') {
        let a = ip(a)?;
        let len: u32 = len
            .trim()
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let net = u32::from(a) & mask;
        if net != u32::from(a) {
            return Err(format!(
                "{s:?} has host bits set: did you mean {}/{len}?",
                Ipv4Addr::from(net)
            ));
        }
        let last = net | !mask;
        return Ok(if len <= 30 {
            (Ipv4Addr::from(net + 1), Ipv4Addr::from(last - 1))
        } else {
            (Ipv4Addr::from(net), Ipv4Addr::from(last))
        });
    }
    let a = ip(t).map_err(|_| {
        format!("{s:?} is not a pool entry: expected FIRST-LAST, ADDRESS/LEN or one address")
    })?;
    Ok((a, a))
}

/// How many addresses the ranges hold.
fn range_len((a, b): (Ipv4Addr, Ipv4Addr)) -> u64 {
    u64::from(u32::from(b)) - u64::from(u32::from(a)) + 1
}

fn pool(
    s: &PppSection,
    local: Ipv4Addr,
    ctx: &Ctx,
) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>, ConfigError> {
    let default = [DEFAULT_POOL.to_string()];
    let list = s.pool.as_deref().unwrap_or(&default);
    if list.is_empty() {
        return Err(ctx.err("ppp.pool", "is empty: name at least one range"));
    }
    let mut ranges = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let key = format!("ppp.pool[{i}]");
        let r = parse_pool_entry(entry).map_err(|why| ctx.err(&key, why))?;
        if r.0 <= local && local <= r.1 {
            return Err(ctx.err(
                &key,
                format!(
                    "{entry:?} contains ppp.local_address {local}, the server's own address: \
                     leave it out of the pool"
                ),
            ));
        }
        ranges.push(r);
    }
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i]);
    for w in order.windows(2) {
        let (i, j) = (w[0], w[1]);
        if ranges[j].0 <= ranges[i].1 {
            let (later, earlier) = (i.max(j), i.min(j));
            return Err(ctx.err(
                format!("ppp.pool[{later}]"),
                format!(
                    "{:?} overlaps ppp.pool[{earlier}] ({:?})",
                    list[later], list[earlier]
                ),
            ));
        }
    }
    let total: u64 = ranges.iter().map(|r| range_len(*r)).sum();
    if total > u64::from(MAX_ADDRESSES) {
        return Err(ctx.err(
            "ppp.pool",
            format!("{total} addresses; a pool holds at most {MAX_ADDRESSES} (a /12)"),
        ));
    }
    Ok(ranges)
}

/// `[ppp] pools`: named pools for RADIUS Framed-Pool, each a list of ranges like `ppp.pool`,
/// none holding the PPP address or overlapping the main pool or each other.
fn named_pools(
    s: &PppSection,
    local: Ipv4Addr,
    main: &[(Ipv4Addr, Ipv4Addr)],
    ctx: &Ctx,
) -> Result<Vec<NamedPool>, ConfigError> {
    let Some(map) = &s.pools else {
        return Ok(Vec::new());
    };
    let mut taken: Vec<(String, (Ipv4Addr, Ipv4Addr))> = main
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("ppp.pool[{i}]"), *r))
        .collect();
    let mut out = Vec::new();
    for (name, list) in map {
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err(ctx.err(
                format!("ppp.pools.{name}"),
                "is not a pool name (1 to 64 printable characters)",
            ));
        }
        if list.is_empty() {
            return Err(ctx.err(
                format!("ppp.pools.{name}"),
                "is empty: name at least one range",
            ));
        }
        let mut ranges = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            let key = format!("ppp.pools.{name}[{i}]");
            let r = parse_pool_entry(entry).map_err(|why| ctx.err(&key, why))?;
            if r.0 <= local && local <= r.1 {
                return Err(ctx.err(
                    &key,
                    format!("{entry:?} contains ppp.local_address {local}"),
                ));
            }
            if let Some((other, _)) = taken.iter().find(|(_, t)| r.0 <= t.1 && t.0 <= r.1) {
                return Err(ctx.err(&key, format!("{entry:?} overlaps {other}")));
            }
            if range_len(r) > u64::from(MAX_ADDRESSES) {
                return Err(ctx.err(
                    &key,
                    format!("a pool holds at most {MAX_ADDRESSES} addresses"),
                ));
            }
            taken.push((key, r));
            ranges.push(r);
        }
        out.push((name.clone(), ranges));
    }
    Ok(out)
}

fn servers(
    ctx: &Ctx,
    key: &str,
    list: Option<&[String]>,
) -> Result<[Option<Ipv4Addr>; 2], ConfigError> {
    let list = list.unwrap_or_default();
    if list.len() > 2 {
        return Err(ctx.err(
            key,
            format!("{} servers; clients take at most two", list.len()),
        ));
    }
    let mut out = [None, None];
    for (i, s) in list.iter().enumerate() {
        out[i] = Some(ipv4(ctx, &format!("{key}[{i}]"), s)?);
    }
    Ok(out)
}

fn ppp_auth(
    list: Option<&[String]>,
    backends: &[AuthBackend],
    ctx: &Ctx,
) -> Result<Vec<AuthProtocol>, ConfigError> {
    let Some(methods) = PPP_AUTH.parse(ctx, "ppp.auth", list)? else {
        return Ok(vec![AuthProtocol::MsChapV2, AuthProtocol::Pap]);
    };
    for (i, m) in methods.iter().enumerate() {
        let key = format!("ppp.auth[{i}]");
        if backends
            .iter()
            .any(|b| crate::aaa::backend::can_serve(*b, *m))
        {
            continue;
        }
        match m {
            AuthProtocol::ChapMd5 => {
                return Err(ctx.err(
                    key,
                    "\"chap\" (CHAP-MD5) needs each user's clear-text password: local users keep \
                     only the NT hash and PAM checks PAP only; offer \"mschapv2\" or \"pap\", or \
                     add \"radius\" to auth.backends",
                ));
            }
            AuthProtocol::Eap => {
                return Err(ctx.err(
                    key,
                    "\"eap\" needs an EAP server: add \"radius\" to auth.backends",
                ));
            }
            AuthProtocol::MsChapV2 => {
                return Err(ctx.err(
                    key,
                    "\"mschapv2\" needs the NT hash or a RADIUS server, and PAM checks PAP \
                     only: offer \"pap\", or add \"local\" or \"radius\" to auth.backends",
                ));
            }
            AuthProtocol::Pap => {}
        }
    }
    Ok(methods)
}

fn auth_backends(s: &AuthSection, ctx: &Ctx) -> Result<Vec<AuthBackend>, ConfigError> {
    let Some(list) = &s.backends else {
        return Ok(vec![AuthBackend::Local]);
    };
    if list.is_empty() {
        return Err(ctx.err("auth.backends", "is empty: name at least one (\"local\")"));
    }
    let mut out = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let key = format!("auth.backends[{i}]");
        let b = match name.trim().to_ascii_lowercase().as_str() {
            "local" => AuthBackend::Local,
            "radius" => AuthBackend::Radius,
            "pam" => AuthBackend::Pam,
            "system" => AuthBackend::System,
            _ => {
                return Err(ctx.err(
                    key,
                    format!("unknown backend {name:?}; valid: local, radius, pam, system"),
                ));
            }
        };
        if out.contains(&b) {
            return Err(ctx.err(key, format!("{:?} is listed twice", b.name())));
        }
        out.push(b);
    }
    Ok(out)
}

/// A Linux interface name: 1 to 15 bytes, no `/`, white space or `:`, not `.` or `..`.
fn check_tun_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 15 {
        return Err(format!("{n:?} must be 1 to 15 bytes long"));
    }
    if n == "." || n == ".." || n.contains(['/', ':', '%']) || n.chars().any(char::is_whitespace) {
        return Err(format!(
            "{n:?} is not an interface name (no '/', ':', '%' or white space)"
        ));
    }
    Ok(())
}

fn log_settings(s: &LogSection, ctx: &Ctx) -> Result<LogSettings, ConfigError> {
    let mut log = LogSettings::default();
    if let Some(level) = &s.level {
        tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| ctx.err("log.level", format!("{level:?} is not a log filter: {e}")))?;
        log.level = level.clone();
    }
    if let Some(format) = &s.format {
        log.format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ctx.err(
                    "log.format",
                    format!("unknown format {other:?}; valid: text, json"),
                ));
            }
        };
    }
    Ok(log)
}

// ---------------------------------------------------------------------------------------------
// Using the settings

impl Settings {
    /// The built-in configuration (every key at its default) with `overrides`.
    pub fn builtin(overrides: &Overrides) -> Result<Self, ConfigError> {
        parse("", None, overrides)
    }

    /// The server's own PPP address.
    pub fn local_address(&self) -> Ipv4Addr {
        self.dataplane.local_address
    }

    /// How many client addresses the pool's ranges hold.
    pub fn pool_size(&self) -> u64 {
        self.pool.iter().map(|r| range_len(*r)).sum()
    }

    /// The authentication methods PPP offers, preferred first.
    pub fn auth_methods(&self) -> &[AuthProtocol] {
        match &self.ppp.role {
            pppd_lite::Role::Server(s) => &s.auth,
            pppd_lite::Role::Client(_) => &[],
        }
    }

    /// Makes the state folder (mode 0700) and, when no key is configured, reads its `psk` or
    /// generates one there (mode 0600) into `ike.psk`. Returns a newly generated key, to be shown
    /// once.
    pub fn prepare_state(&mut self) -> Result<Option<Zeroizing<String>>, String> {
        let at = |p: &Path| {
            let p = p.to_path_buf();
            move |e: std::io::Error| format!("{}: {e}", p.display())
        };
        fs::create_dir_all(&self.state_dir).map_err(at(&self.state_dir))?;
        fs::set_permissions(&self.state_dir, fs::Permissions::from_mode(0o700))
            .map_err(at(&self.state_dir))?;
        if self.psk_source != PskSource::StateDir {
            return Ok(None);
        }
        let path = self.state_dir.join(STATE_PSK_FILE);
        if path.exists() {
            let psk = read_secret(&path).map_err(at(&path))?;
            if psk.is_empty() {
                return Err(format!(
                    "{}: the pre-shared key is empty (delete the file to have one generated)",
                    path.display()
                ));
            }
            self.ike.psk.set_default(psk);
            return Ok(None);
        }
        let psk = random_text(24);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(at(&path))?;
        writeln!(f, "{}", psk.as_str()).map_err(at(&path))?;
        self.ike.psk.set_default(psk.as_bytes().to_vec());
        Ok(Some(psk))
    }

    /// The session layer's settings: the pool holds the users' static addresses from `users`.
    pub fn session_config(&self, users: &UserStore) -> Result<session::Config, String> {
        let local = self.local_address();
        let mut pool = AddressPool::builder().exclude(local);
        for &(a, b) in &self.pool {
            pool = pool.range(a, b);
        }
        for (user, addr) in users.static_addresses().map_err(|e| e.to_string())? {
            if addr == local {
                return Err(format!(
                    "user {user}'s static address {addr} is the server's PPP address"
                ));
            }
            pool = pool.static_address(user, addr);
        }
        let pool = pool.build().map_err(|e| format!("address pool: {e}"))?;
        Ok(session::Config {
            lns: self.lns.clone(),
            ppp: self.ppp.clone(),
            pool,
        })
    }

    /// The named pools (`[ppp] pools`), built.
    pub fn named_address_pools(&self) -> Result<Vec<(String, AddressPool)>, String> {
        let local = self.local_address();
        self.named_pools
            .iter()
            .map(|(name, ranges)| {
                let mut b = AddressPool::builder().exclude(local);
                for &(a, z) in ranges {
                    b = b.range(a, z);
                }
                b.build()
                    .map(|p| (name.clone(), p))
                    .map_err(|e| format!("address pool {name}: {e}"))
            })
            .collect()
    }

    /// The session layer, seeded from the system's randomness.
    pub fn sessions(&self, users: &UserStore) -> Result<Sessions, String> {
        let mut seed = [0u8; 32];
        rand::make_rng::<rand_chacha::ChaCha20Rng>().fill_bytes(&mut seed);
        let mut sessions = Sessions::new(self.session_config(users)?, seed);
        for (name, pool) in self.named_address_pools()? {
            sessions.add_named_pool(&name, pool);
        }
        Ok(sessions)
    }

    /// A short description: where the server listens, the pool, authentication and proposals.
    pub fn summary(&self) -> String {
        let list = |v: Vec<&str>| v.join(", ");
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<15} {v}\n"));
        line(
            "config:",
            self.file
                .as_ref()
                .map_or("built-in defaults".into(), |p| p.display().to_string()),
        );
        line("state:", self.state_dir.display().to_string());
        let addrs: Vec<String> = self.listen_addrs.iter().map(ToString::to_string).collect();
        line(
            "listen:",
            format!(
                "{} IKE {} NAT-T {} raw ESP {}",
                addrs.join(", "),
                self.listen.ike_port,
                self.listen.natt_port,
                if self.listen.raw_esp { "on" } else { "off" },
            ),
        );
        line("admin socket:", self.admin_socket.display().to_string());
        let peers = self.ike.psk.peers();
        line(
            "pre-shared key:",
            format!(
                "{}{}",
                match &self.psk_source {
                    PskSource::Inline => "inline (ipsec.psk)".to_string(),
                    PskSource::File(p) => format!("from {}", p.display()),
                    PskSource::StateDir => format!(
                        "{} (generated on first start)",
                        self.state_dir.join(STATE_PSK_FILE).display()
                    ),
                },
                if peers == 0 {
                    String::new()
                } else {
                    format!("; {peers} per-peer keys")
                }
            ),
        );
        let ranges: Vec<String> = self
            .pool
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        line(
            "pool:",
            format!(
                "{} ({} addresses); server address {}",
                ranges.join(", "),
                self.pool_size(),
                self.local_address()
            ),
        );
        let auth: Vec<&str> = self
            .auth_methods()
            .iter()
            .map(|m| PPP_AUTH.name_of(m))
            .collect();
        line("authentication:", format!("local users; {}", list(auth)));
        let p1 = &self.ike.phase1;
        line(
            "phase 1:",
            format!(
                "{} / {} / {}; at most {}",
                list(
                    p1.encryption
                        .iter()
                        .map(|c| PHASE1_CIPHERS.name_of(c))
                        .collect()
                ),
                list(p1.hash.iter().map(|h| PHASE1_HASHES.name_of(h)).collect()),
                list(p1.groups.iter().map(|g| DH_GROUPS.name_of(g)).collect()),
                format_duration(p1.max_lifetime)
            ),
        );
        let p2 = &self.ike.phase2;
        line(
            "phase 2:",
            format!(
                "{} / {}; PFS {}{}; at most {}",
                list(
                    p2.encryption
                        .iter()
                        .map(|c| PHASE2_CIPHERS.name_of(c))
                        .collect()
                ),
                list(
                    p2.integrity
                        .iter()
                        .map(|i| PHASE2_INTEGRITY.name_of(i))
                        .collect()
                ),
                if p2.require_pfs {
                    "required: "
                } else {
                    "optional: "
                },
                list(p2.pfs_groups.iter().map(|g| DH_GROUPS.name_of(g)).collect()),
                format_duration(p2.max_lifetime)
            ),
        );
        line(
            "data plane:",
            if self.dataplane.tun {
                format!(
                    "TUN {}, MTU {}, MSS clamping {}",
                    self.dataplane.tun_name,
                    self.dataplane.mtu,
                    if self.dataplane.mss_clamp {
                        "on"
                    } else {
                        "off"
                    }
                )
            } else {
                format!("off (no TUN device), MTU {}", self.dataplane.mtu)
            },
        );
        out
    }
}

/// Reads a secret file: its text without the line end.
pub fn read_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    let s = fs::read_to_string(path)?;
    Ok(s.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
}

/// `len` random characters from an alphabet without look-alikes (5.8 bits each).
pub fn random_text(len: usize) -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::make_rng::<rand_chacha::ChaCha20Rng>();
    Zeroizing::new(
        (0..len)
            .map(|_| char::from(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()]))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
