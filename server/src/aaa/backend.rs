//! The authentication backends and which PPP methods each can check.
//!
//! A backend can only check a method if it has what the method needs on the server side:
//!
//! | backend | PAP | CHAP-MD5 | MS-CHAPv2 | EAP |
//! | --- | --- | --- | --- | --- |
//! | `local` | yes | no (needs the clear password; only the NT hash is kept) | yes | no |
//! | `pam`, `system` | yes | no | no (PAM needs the clear password) | no |
//! | `radius` | yes | yes | yes | yes (relayed) |

use pppd_lite::AuthProtocol;
use serde::Deserialize;

/// An authentication backend, as named in the configuration (lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The local user database (NT hashes in SQLite).
    Local,
    /// RADIUS servers.
    Radius,
    /// PAM with a configurable service (default `roadgate`).
    Pam,
    /// The system accounts: PAM with the service `roadgate-system` (pam_unix, /etc/shadow).
    System,
}

impl BackendKind {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Radius => "radius",
            BackendKind::Pam => "pam",
            BackendKind::System => "system",
        }
    }
}

/// The usual name of a PPP authentication method.
pub fn protocol_name(proto: AuthProtocol) -> &'static str {
    match proto {
        AuthProtocol::Pap => "PAP",
        AuthProtocol::ChapMd5 => "CHAP-MD5",
        AuthProtocol::MsChapV2 => "MS-CHAPv2",
        AuthProtocol::Eap => "EAP",
    }
}

/// Whether `backend` can check credentials of method `proto` (the table in the module
/// documentation).
pub fn can_serve(backend: BackendKind, proto: AuthProtocol) -> bool {
    match backend {
        BackendKind::Radius => true,
        BackendKind::Local => matches!(proto, AuthProtocol::Pap | AuthProtocol::MsChapV2),
        BackendKind::Pam | BackendKind::System => proto == AuthProtocol::Pap,
    }
}

/// Warnings for the start-up log: for each method PPP offers, the backends of the chain that
/// cannot check it, and a louder text when none of them can (every client using that method
/// would be refused). Empty when every backend can check every offered method.
pub fn impossible_pairs(chain: &[BackendKind], offered: &[AuthProtocol]) -> Vec<String> {
    let mut out = Vec::new();
    for &proto in offered {
        let unable: Vec<&str> = chain
            .iter()
            .filter(|b| !can_serve(**b, proto))
            .map(|b| b.name())
            .collect();
        if unable.is_empty() && !chain.is_empty() {
            continue;
        }
        let name = protocol_name(proto);
        if unable.len() == chain.len() {
            out.push(format!(
                "{name} is offered to clients but no authentication backend ({}) can check it: \
                 every client that uses {name} will be refused; remove it from the offered \
                 methods or add a backend that can (radius checks all, local PAP and MS-CHAPv2)",
                if chain.is_empty() {
                    "none configured".to_string()
                } else {
                    unable.join(", ")
                }
            ));
        } else {
            out.push(format!(
                "{name} is offered to clients but the backend{} {} cannot check it: users of \
                 {} cannot log in with {name}",
                if unable.len() > 1 { "s" } else { "" },
                unable.join(", "),
                if unable.len() > 1 {
                    "those backends"
                } else {
                    "that backend"
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [AuthProtocol; 4] = [
        AuthProtocol::Pap,
        AuthProtocol::ChapMd5,
        AuthProtocol::MsChapV2,
        AuthProtocol::Eap,
    ];

    #[test]
    fn matrix() {
        let row = |b| ALL.map(|p| can_serve(b, p));
        assert_eq!(row(BackendKind::Local), [true, false, true, false]);
        assert_eq!(row(BackendKind::Radius), [true; 4]);
        assert_eq!(row(BackendKind::Pam), [true, false, false, false]);
        assert_eq!(row(BackendKind::System), [true, false, false, false]);
    }

    #[test]
    fn warnings() {
        assert!(impossible_pairs(&[BackendKind::Radius], &ALL).is_empty());
        assert!(impossible_pairs(&[BackendKind::Pam], &[AuthProtocol::Pap]).is_empty());
        let w = impossible_pairs(
            &[BackendKind::Pam],
            &[AuthProtocol::Pap, AuthProtocol::MsChapV2],
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("MS-CHAPv2 is offered")
                && w[0].contains("no authentication backend (pam)"),
            "{}",
            w[0]
        );
        let w = impossible_pairs(
            &[BackendKind::Local, BackendKind::System, BackendKind::Pam],
            &[AuthProtocol::MsChapV2, AuthProtocol::ChapMd5],
        );
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains("backends system, pam cannot check it"),
            "{}",
            w[0]
        );
        assert!(
            w[1].contains("no authentication backend (local, system, pam)"),
            "{}",
            w[1]
        );
        // An empty chain can check nothing.
        assert_eq!(impossible_pairs(&[], &[AuthProtocol::Pap]).len(), 1);
    }

    #[test]
    fn names_deserialize_lowercase() {
        #[derive(Deserialize)]
        struct C {
            chain: Vec<BackendKind>,
        }
        let c: C = toml::from_str(r#"chain = ["local", "radius", "pam", "system"]"#).unwrap();
        assert_eq!(
            c.chain,
            [
                BackendKind::Local,
                BackendKind::Radius,
                BackendKind::Pam,
                BackendKind::System
            ]
        );
        assert!(toml::from_str::<C>(r#"chain = ["Local"]"#).is_err());
        assert_eq!(BackendKind::System.name(), "system");
    }
}
