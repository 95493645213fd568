//! `roadgate doctor`, and the same checks at start and on the web dashboard: one plain line
//! each, `ok`, `warning` or `problem` ([`Finding`]).
//!
//! - UDP 500 and 4500: bound by the running server (it says so at start); without a running
//!   server, whether another program holds them.
//! - IP forwarding and a NAT rule for the pool, when the pool's clients must reach beyond the
//!   server (a TUN device is on).
//! - The public name: configured, or the machine's address on its default route; and whether
//!   the server certificate names it.
//! - Each RADIUS server: answering Status-Server (RFC 5997) and signing its answers.
//! - The server behind NAT (from NAT-D): only the running server knows ([`crate::io`] adds it).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;

pub use roadgate_core::admin::{Finding, Level};

use crate::config::Settings;

/// Where the public name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// `certificates.public_names`.
    Configured,
    /// A listen address that is not a wildcard.
    ListenAddress,
    /// The machine's address on the interface of its default route.
    MachineAddress,
    /// The host name (nothing better was found).
    HostName,
}

/// The names clients use to reach this server, best first, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicNames {
    pub names: Vec<String>,
    pub source: NameSource,
}

impl PublicNames {
    /// The name shown to clients (setup page, profiles).
    pub fn first(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }
}

/// The public names: configured, else the specific listen addresses, else the machine's
/// address on its default route, else the host name.
pub fn public_names(configured: &[String], listen: &[IpAddr]) -> PublicNames {
    if !configured.is_empty() {
        return PublicNames {
            names: configured.to_vec(),
            source: NameSource::Configured,
        };
    }
    let specific: Vec<String> = listen
        .iter()
        .filter(|a| !a.is_unspecified())
        .map(ToString::to_string)
        .collect();
    if !specific.is_empty() {
        return PublicNames {
            names: specific,
            source: NameSource::ListenAddress,
        };
    }
    if let Some(a) = machine_address() {
        return PublicNames {
            names: vec![a.to_string()],
            source: NameSource::MachineAddress,
        };
    }
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    PublicNames {
        names: if host.is_empty() { vec![] } else { vec![host] },
        source: NameSource::HostName,
    }
}

/// The IPv4 address of the interface that holds the default route (from /proc/net/route and
/// the interface's addresses; nothing is sent).
pub fn machine_address() -> Option<IpAddr> {
    let routes = fs::read_to_string("/proc/net/route").ok()?;
    let iface = default_route_interface(&routes)?;
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        if a.interface_name != iface {
            continue;
        }
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return Some(IpAddr::V4(sin.ip()));
        }
    }
    None
}

/// The interface of the default route in the text of /proc/net/route (destination 0, mask 0,
/// the lowest metric).
fn default_route_interface(text: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, metric, mask) = (f.first()?, f.get(1)?, f.get(6)?, f.get(7)?);
            (*dest == "00000000" && *mask == "00000000")
                .then(|| Some((metric.parse::<u32>().ok()?, iface.to_string())))?
        })
        .min()
        .map(|(_, iface)| iface)
}

/// IP forwarding, when the pool's clients reach beyond the server through the TUN device.
pub fn forwarding(settings: &Settings) -> Option<Finding> {
    if !settings.dataplane.tun {
        return None;
    }
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok()?;
    Some(if text.trim() == "1" {
        Finding::ok("IPv4 forwarding is on (clients can reach beyond this server)")
    } else {
        Finding::warning(
            "IPv4 forwarding is off: clients reach only this server. Turn it on with \
             net.ipv4.ip_forward = 1 (the package installs /usr/share/roadgate/sysctl.conf; \
             deploy/sysctl.conf in the source)",
        )
    })
}

/// The pool's ranges as text, e.g. "10.77.0.10-10.77.0.250".
fn pool_text(settings: &Settings) -> String {
    settings
        .pool
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A NAT rule (masquerade or snat) that covers the pool, from `nft list ruleset`.
pub fn nat_rule(settings: &Settings) -> Option<Finding> {
    if !settings.dataplane.tun || settings.pool.is_empty() {
        return None;
    }
    let out = match Command::new("nft").args(["list", "ruleset"]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            return Some(Finding::warning(format!(
                "cannot check the NAT rule for the pool: nft list ruleset failed ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Err(_) => {
            return Some(Finding::warning(
                "cannot check the NAT rule for the pool: nft is not installed (Debian: apt install nftables)",
            ));
        }
    };
    let pool: Vec<Ipv4Addr> = settings.pool.iter().flat_map(|(a, b)| [*a, *b]).collect();
    Some(if ruleset_nats(&out, &pool) {
        Finding::ok(format!(
            "a NAT rule covers the pool ({})",
            pool_text(settings)
        ))
    } else {
        Finding::warning(format!(
            "no NAT rule (masquerade or snat) for the pool {}: clients reach only this server \
             unless your network routes the pool back to it. The package installs \
             /usr/share/roadgate/nftables.conf (deploy/nftables.conf in the source)",
            pool_text(settings)
        ))
    })
}

/// Whether a masquerade or snat rule in `ruleset` applies to every address of `pool`: one
/// without a source match, or whose `ip saddr` prefix holds them.
fn ruleset_nats(ruleset: &str, pool: &[Ipv4Addr]) -> bool {
    ruleset
        .lines()
        .filter(|l| l.contains("masquerade") || l.contains("snat"))
        .any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.windows(3).find(|w| w[0] == "ip" && w[1] == "saddr") {
                None => true,
                Some(w) => prefix_holds(w[2], pool),
            }
        })
}

/// Whether `text` ("10.77.0.0/24" or an address) holds every address of `pool`.
fn prefix_holds(text: &str, pool: &[Ipv4Addr]) -> bool {
    let (net, len) = text.split_once('/').unwrap_or((text, "32"));
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u8>()) else {
        return false;
    };
    len <= 32
        && pool
            .iter()
            .all(|a| roadgate_core::dataplane::covered(&[(net, len)], *a))
}

/// The public name: configured or derived, and named by the server certificate.
pub fn public_name(settings: &Settings) -> Vec<Finding> {
    let names = public_names(&settings.certificates.public_names, &settings.listen_addrs);
    let mut out = vec![match names.source {
        NameSource::Configured => Finding::ok(format!(
            "public name: {} (certificates.public_names)",
            names.names.join(", ")
        )),
        other => Finding::warning(format!(
            "certificates.public_names is not set: clients are shown {} ({}); set it to the DNS \
             name or address your clients type",
            if names.names.is_empty() {
                "nothing".to_string()
            } else {
                names.first().to_string()
            },
            match other {
                NameSource::ListenAddress => "the listen address",
                NameSource::MachineAddress => "this machine's address on its default route",
                _ => "the host name",
            }
        )),
    }];
    if settings.certificates.enabled
        && let Some(f) = certificate_names(settings, &names)
    {
        out.push(f);
    }
    out
}

/// The server certificate in use: the configured one, else the built-in one.
fn server_cert_path(settings: &Settings) -> PathBuf {
    settings
        .certificates
        .server_cert
        .clone()
        .unwrap_or_else(|| settings.state_dir.join(crate::pki::SERVER_CERT_FILE))
}

fn certificate_names(settings: &Settings, names: &PublicNames) -> Option<Finding> {
    let path = server_cert_path(settings);
    let pem = fs::read_to_string(&path).ok()?;
    let Some(der) = ca::certs_from_pem(&pem)
        .ok()
        .and_then(|c| c.into_iter().next())
    else {
        return Some(Finding::problem(format!(
            "the server certificate {} cannot be read",
            path.display()
        )));
    };
    let cert = match ca::inspect_cert(&der) {
        Ok(c) => c,
        Err(e) => {
            return Some(Finding::problem(format!(
                "the server certificate {}: {e}",
                path.display()
            )));
        }
    };
    let missing: Vec<&String> = names
        .names
        .iter()
        .filter(|n| !cert_names(&cert, n))
        .collect();
    Some(if missing.is_empty() {
        Finding::ok(format!(
            "the server certificate names {} (valid until {})",
            names.names.join(", "),
            ca::utc_date(cert.not_after)
        ))
    } else {
        let named: Vec<String> = cert
            .san_dns
            .iter()
            .cloned()
            .chain(cert.san_ips.iter().map(ToString::to_string))
            .collect();
        Finding::problem(format!(
            "the server certificate {} names {} but not {}: clients that check the name refuse \
             it. With the built-in CA, remove {} (and {}) and restart to have a new one made",
            path.display(),
            if named.is_empty() {
                "nothing".to_string()
            } else {
                named.join(", ")
            },
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            crate::pki::SERVER_CERT_FILE,
            crate::pki::SERVER_KEY_FILE
        ))
    })
}

/// Whether `cert` carries `name` as a subjectAltName (address or DNS name, case-insensitive).
fn cert_names(cert: &ca::PeerCert, name: &str) -> bool {
    match name.parse::<IpAddr>() {
        Ok(ip) => cert.san_ips.contains(&ip),
        Err(_) => cert.san_dns.iter().any(|d| d.eq_ignore_ascii_case(name)),
    }
}

/// Without a running server: whether the IKE ports are free on the listen addresses, or held by
/// another program.
pub fn ports_free(settings: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    for port in [settings.listen.ike_port, settings.listen.natt_port] {
        for addr in &settings.listen_addrs {
            let at = SocketAddr::new(*addr, port);
            match UdpSocket::bind(at) {
                Ok(_) => out.push(Finding::ok(format!(
                    "UDP {at} is free for the server (it is not running)"
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    out.push(Finding::problem(format!(
                        "UDP {at} is held by another program while roadgate is not running \
                         (strongSwan, Libreswan or racoon? `ss -ulpn 'sport = :{port}'` names it)"
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    out.push(Finding::warning(format!(
                        "cannot test UDP {at}: binding it needs root or CAP_NET_BIND_SERVICE"
                    )))
                }
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    out.push(Finding::problem(format!(
                        "UDP {at}: {addr} is not an address of this machine (server.listen)"
                    )))
                }
                Err(e) => out.push(Finding::warning(format!("cannot test UDP {at}: {e}"))),
            }
        }
    }
    out
}

/// The checks that need no running server and no network: forwarding, NAT rule, public name.
pub fn local_checks(settings: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(forwarding(settings));
    out.extend(nat_rule(settings));
    out.extend(public_name(settings));
    out
}

/// Each RADIUS server: does it answer Status-Server (RFC 5997), and sign its answers?
pub async fn radius_checks(settings: &Settings) -> Vec<Finding> {
    use crate::radius::probe::{self, Outcome};
    let Some(radius) = settings.radius.as_ref() else {
        return Vec::new();
    };
    let timeout = radius.client.timeout.clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(5),
    );
    let mut out = Vec::new();
    for s in &radius.client.servers {
        let p = probe::probe(s.address, &s.secret, radius.source, timeout).await;
        let key = format!("radius-probe {}", s.address);
        out.push(match &p.outcome {
            Outcome::Answered { signs: true, .. } => Finding::ok(p.to_string()),
            // RFC 5997 §3: a response SHOULD carry Message-Authenticator; FreeRADIUS before
            // 3.2.5 answers Status-Server unsigned even where it signs its login answers, so
            // this says only what the probe saw (the running server adds what logins show).
            Outcome::Answered { signs: false, .. } => Finding::warning(format!(
                "{p}: its logins may be unsigned too (stock FreeRADIUS before 3.2.5; \
                 require_message_authenticator = yes in its clients.conf makes it sign). With \
                 radius.require_message_authenticator = \"auto\" they are accepted until it signs once"
            )),
            _ => Finding::problem(p.to_string()),
        }
        .keyed(key));
    }
    out
}

/// What the running RADIUS client learned from real answers, per authentication server.
pub fn radius_learned(servers: &[roadgate_core::radius::client::ServerMetrics]) -> Vec<Finding> {
    use roadgate_core::radius::client::Role;
    servers
        .iter()
        .filter(|m| m.role == Role::Auth)
        .filter_map(|m| {
            if m.unsigned_dropped > 0 {
                Some(Finding::problem(format!(
                    "RADIUS {}: {} login answers dropped for lacking Message-Authenticator \
                     (radius.require_message_authenticator = true); the server answers but does not sign",
                    m.address, m.unsigned_dropped
                )))
            } else if m.signs {
                Some(Finding::ok(format!(
                    "RADIUS {}: signs its login answers (seen; unsigned ones are refused from now on)",
                    m.address
                )))
            } else if m.unsigned_accepted > 0 {
                Some(Finding::warning(format!(
                    "RADIUS {}: {} login answers without Message-Authenticator accepted \
                     (radius.require_message_authenticator = \"auto\"); have the server sign them",
                    m.address, m.unsigned_accepted
                )))
            } else {
                None
            }
        })
        .collect()
}

/// Logs each finding at start: `ok` at info, the rest as warnings.
pub fn log(findings: &[Finding]) {
    for f in findings {
        match f.level {
            Level::Ok => tracing::info!("check: {}", f.text),
            Level::Warning => tracing::warn!("check: {}", f.text),
            Level::Problem => tracing::error!("check: {}", f.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_interface_is_found() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth1\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                    eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                    eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface(text).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn a_nat_rule_must_cover_the_pool() {
        let pool = [Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 250)];
        let rules = "table ip roadgate {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr 10.77.0.0/24 oifname != \"rg0\" masquerade\n\t}\n}\n";
        assert!(ruleset_nats(rules, &pool));
        assert!(!ruleset_nats(
            &rules.replace("10.77.0.0/24", "10.78.0.0/24"),
            &pool
        ));
        assert!(ruleset_nats("\t\toifname \"eth0\" masquerade\n", &pool));
        assert!(ruleset_nats(
            "\t\tip saddr 10.0.0.0/8 snat to 192.0.2.1\n",
            &pool
        ));
        assert!(!ruleset_nats("\t\tip saddr 10.77.0.0/24 accept\n", &pool));
        assert!(!ruleset_nats("", &pool));
    }

    #[test]
    fn public_names_prefer_the_configuration_then_the_listen_address() {
        let p = public_names(&["vpn.example.net".into()], &[]);
        assert_eq!(
            (p.first(), p.source),
            ("vpn.example.net", NameSource::Configured)
        );
        let p = public_names(
            &[],
            &["0.0.0.0".parse().unwrap(), "192.0.2.1".parse().unwrap()],
        );
        assert_eq!(
            (p.first(), p.source),
            ("192.0.2.1", NameSource::ListenAddress)
        );
        // With only wildcards: the machine's address or its host name, never a placeholder.
        let p = public_names(&[], &["0.0.0.0".parse().unwrap()]);
        assert!(matches!(
            p.source,
            NameSource::MachineAddress | NameSource::HostName
        ));
        assert!(!p.first().contains("example"));
    }
}
