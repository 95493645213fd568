//! The `[radius]` and `[dynauth]` configuration: plain data read from TOML (serde, unknown
//! keys refused), turned into the cores' settings with [`RadiusConfig::client_config`]. The
//! secrets never show in `Debug`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::client::{ClientConfig, RequireMessageAuthenticator, Role, ServerConfig};
use super::dynauth::DynAuthConfig;

/// What a server is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerRole {
    /// Access-Request only.
    Auth,
    /// Accounting-Request only.
    Acct,
    /// Both; the accounting port is `acct_port` (default 1813).
    Both,
}

/// One RADIUS server.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusServer {
    /// The server's address and port (for `both`, the authentication port).
    pub address: SocketAddr,
    /// The accounting port when the role is `both` (default 1813).
    #[serde(default)]
    pub acct_port: Option<u16>,
    /// The shared secret, inline.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the shared secret (trailing newline removed).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// What the server is for.
    pub role: ServerRole,
}

impl fmt::Debug for RadiusServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RadiusServer")
            .field("address", &self.address)
            .field("acct_port", &self.acct_port)
            .field("secret_file", &self.secret_file)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn default_timeout_ms() -> u64 {
    3000
}
fn default_tries() -> u32 {
    3
}
fn default_dead_time_s() -> u64 {
    60
}
fn default_dead_after() -> u32 {
    1
}

/// The RADIUS client settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusConfig {
    /// The servers, in the order they are tried.
    pub servers: Vec<RadiusServer>,
    /// First retransmission timeout in milliseconds; doubled on each retry (default 3000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Transmissions per server before failing over (default 3).
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// How long a dead server is left alone, seconds (default 60).
    #[serde(default = "default_dead_time_s")]
    pub dead_time_s: u64,
    /// Requests in a row that time out before a server is marked dead (default 1).
    #[serde(default = "default_dead_after")]
    pub dead_after: u32,
    /// NAS-Identifier to send.
    #[serde(default)]
    pub nas_identifier: Option<String>,
    /// NAS-IP-Address to send.
    #[serde(default)]
    pub nas_ip: Option<Ipv4Addr>,
    /// The local address requests leave from (port 0).
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// Whether Access-Accept/Reject/Challenge must carry a valid Message-Authenticator (the
    /// BLAST-RADIUS defence): `"auto"` (default: required from a server once it has sent one),
    /// `true` (always) or `false` (never). See [`RequireMessageAuthenticator`].
    #[serde(default, deserialize_with = "require_message_authenticator")]
    pub require_message_authenticator: RequireMessageAuthenticator,
}

/// `require_message_authenticator`: `true`, `false` or `"auto"`; anything else is an error that
/// names the key.
fn require_message_authenticator<'de, D>(d: D) -> Result<RequireMessageAuthenticator, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Str(String),
        Other(toml::Value),
    }
    let wrong = |what: String| {
        serde::de::Error::custom(format!(
            "require_message_authenticator must be true, false or \"auto\", not {what}"
        ))
    };
    match Raw::deserialize(d)? {
        Raw::Bool(true) => Ok(RequireMessageAuthenticator::Yes),
        Raw::Bool(false) => Ok(RequireMessageAuthenticator::No),
        Raw::Str(s) if s == "auto" => Ok(RequireMessageAuthenticator::Auto),
        Raw::Str(s) => Err(wrong(format!("{s:?}"))),
        Raw::Other(v) => Err(wrong(v.to_string())),
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither or both of `secret` and `secret_file`.
    #[error("server {0}: give exactly one of secret and secret_file")]
    Secret(SocketAddr),
    /// The secret file cannot be read.
    #[error("server {0}: cannot read the secret file: {1}")]
    SecretFile(SocketAddr, std::io::Error),
    /// An empty secret.
    #[error("server {0}: empty secret")]
    EmptySecret(SocketAddr),
}

fn load_secret(
    addr: SocketAddr,
    secret: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let s = match (secret, file) {
        (Some(s), None) => Zeroizing::new(s.as_bytes().to_vec()),
        (None, Some(f)) => {
            let mut v =
                Zeroizing::new(std::fs::read(f).map_err(|e| ConfigError::SecretFile(addr, e))?);
            while v.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                v.pop();
            }
            v
        }
        _ => return Err(ConfigError::Secret(addr)),
    };
    if s.is_empty() {
        return Err(ConfigError::EmptySecret(addr));
    }
    Ok(s)
}

impl RadiusConfig {
    /// The client core's settings, secrets loaded (reads `secret_file`s).
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let mut servers = Vec::new();
        for s in &self.servers {
            let secret = load_secret(s.address, &s.secret, &s.secret_file)?;
            match s.role {
                ServerRole::Auth => servers.push(ServerConfig {
                    address: s.address,
                    secret,
                    role: Role::Auth,
                }),
                ServerRole::Acct => servers.push(ServerConfig {
                    address: s.address,
                    secret,
                    role: Role::Acct,
                }),
                ServerRole::Both => {
                    servers.push(ServerConfig {
                        address: s.address,
                        secret: secret.clone(),
                        role: Role::Auth,
                    });
                    servers.push(ServerConfig {
                        address: SocketAddr::new(s.address.ip(), s.acct_port.unwrap_or(1813)),
                        secret,
                        role: Role::Acct,
                    });
                }
            }
        }
        Ok(ClientConfig {
            servers,
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            tries: self.tries.max(1),
            dead_time: Duration::from_secs(self.dead_time_s),
            dead_after: self.dead_after.max(1),
            nas_identifier: self.nas_identifier.clone(),
            nas_ip: self.nas_ip,
            require_message_authenticator: self.require_message_authenticator,
        })
    }
}

/// One client allowed to send Disconnect and CoA requests.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynAuthClient {
    /// Its source address.
    pub address: IpAddr,
    /// The shared secret, inline.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the shared secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

impl fmt::Debug for DynAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynAuthClient")
            .field("address", &self.address)
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

fn default_dynauth_port() -> u16 {
    3799
}

/// The dynamic authorization (RFC 5176) listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynAuthListenConfig {
    /// The address to listen on (default all IPv4 addresses).
    #[serde(default)]
    pub listen: Option<IpAddr>,
    /// The UDP port (default 3799, RFC 5176 §3).
    #[serde(default = "default_dynauth_port")]
    pub port: u16,
    /// The allowed clients.
    pub clients: Vec<DynAuthClient>,
    /// Drop requests without Event-Timestamp (RFC 5176 §6.3); with one, it must be within 300 s
    /// of this server's clock either way.
    #[serde(default)]
    pub require_event_timestamp: bool,
}

impl DynAuthListenConfig {
    /// The socket address to bind.
    pub fn bind_address(&self) -> SocketAddr {
        SocketAddr::new(
            self.listen.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.port,
        )
    }

    /// The core's settings, secrets loaded.
    pub fn dynauth_config(&self) -> Result<DynAuthConfig, ConfigError> {
        let mut clients = Vec::new();
        for c in &self.clients {
            let addr = SocketAddr::new(c.address, 0);
            clients.push((c.address, load_secret(addr, &c.secret, &c.secret_file)?));
        }
        Ok(DynAuthConfig {
            clients,
            require_event_timestamp: self.require_event_timestamp,
            ..DynAuthConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hides_secrets() {
        let c: RadiusConfig = toml::from_str(
            r#"
            servers = [{ address = "127.0.0.1:1812", secret = "hunter2", role = "both" }]
            timeout_ms = 500
            nas_identifier = "rg"
            "#,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let cc = c.client_config().unwrap();
        assert_eq!(cc.servers.len(), 2);
        assert_eq!(cc.servers[1].address.port(), 1813);
        assert!(!format!("{cc:?}").contains("hunter2"));
        assert!(toml::from_str::<RadiusConfig>("servers = []\nbogus = 1").is_err());
        let d: DynAuthListenConfig =
            toml::from_str(r#"clients = [{ address = "10.0.0.1", secret = "x" }]"#).unwrap();
        assert_eq!(d.bind_address().port(), 3799);
        assert_eq!(d.dynauth_config().unwrap().clients.len(), 1);
    }

    /// The example's commented `[radius]` section, uncommented, parses and shows the default.
    #[test]
    fn the_example_radius_section_shows_the_default() {
        let example = include_str!("../../../deploy/roadgate.example.toml");
        let section: String = example
            .lines()
            .skip_while(|l| *l != "#[radius]")
            .skip(1)
            .take_while(|l| l.starts_with('#'))
            // "#key = ..." and "#  { ... }" are settings, "# words" are comments.
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.starts_with(' ') || rest.trim_start().starts_with('{') => {
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        assert!(
            section.contains("require_message_authenticator = \"auto\""),
            "{section}"
        );
        let c: RadiusConfig = toml::from_str(&section).unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(
            c.require_message_authenticator,
            RequireMessageAuthenticator::default()
        );
    }

    #[test]
    fn require_message_authenticator_three_ways() {
        let parse = |line: &str| toml::from_str::<RadiusConfig>(&format!("servers = []\n{line}"));
        assert_eq!(
            parse("").unwrap().require_message_authenticator,
            RequireMessageAuthenticator::Auto
        );
        for (line, want) in [
            (
                "require_message_authenticator = true",
                RequireMessageAuthenticator::Yes,
            ),
            (
                "require_message_authenticator = false",
                RequireMessageAuthenticator::No,
            ),
            (
                "require_message_authenticator = \"auto\"",
                RequireMessageAuthenticator::Auto,
            ),
        ] {
            let c = parse(line).unwrap();
            assert_eq!(c.require_message_authenticator, want, "{line}");
            assert_eq!(
                c.client_config().unwrap().require_message_authenticator,
                want
            );
        }
        for bad in ["\"yes\"", "1", "[true]"] {
            let e = parse(&format!("require_message_authenticator = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("require_message_authenticator must be true, false or \"auto\""),
                "{bad}: {e}"
            );
        }
    }
}
