//! TEST FIXTURE: an in-memory `Backend` that records what the web UI asked of it. It stands in
//! for the VPN server in the HTTP tests (and in `examples/demo.rs`); it is not the server.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use web::{
    AcctRow, AcctStatus, Backend, BackendError, BackendResult, CertKind, CertView, Histogram,
    IssueRequest, IssuedCert, LogLine, MetricsView, RadiusMetrics, Revocation, RevocationReason,
    SessionView, Setting, SetupInfo, StatusView, UserOptions, UserView, async_trait,
};

/// The fixture's state, open for tests to look at and change.
#[derive(Debug, Default)]
pub struct FixtureData {
    pub users: BTreeMap<String, (String, UserOptions)>,
    pub sessions: Vec<SessionView>,
    pub certs: Vec<CertView>,
    pub disconnected: Vec<String>,
    pub next_serial: u64,
    pub setup: SetupInfo,
    pub logs: Vec<LogLine>,
    pub acct: Vec<AcctRow>,
    pub ca_pem: String,
}

/// The in-memory backend (test fixture).
#[derive(Debug, Default)]
pub struct FixtureBackend {
    pub data: Mutex<FixtureData>,
}

/// A self-signed CA (rcgen) named `cn`.
pub fn self_signed_ca(cn: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    rcgen::CertifiedIssuer::self_signed(params, key).unwrap()
}

/// A real self-signed CA certificate, PEM.
fn fixture_ca_pem() -> String {
    self_signed_ca("Roadgate fixture CA").pem()
}

impl FixtureBackend {
    /// A fixture with two users, two sessions, a certificate, log lines and accounting rows.
    pub fn sample() -> FixtureBackend {
        let mut d = FixtureData {
            next_serial: 0x1001,
            ca_pem: fixture_ca_pem(),
            ..Default::default()
        };
        d.users.insert(
            "alice".into(),
            (
                "alice-pw".into(),
                UserOptions {
                    enabled: true,
                    static_ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
                    max_sessions: Some(2),
                },
            ),
        );
        d.users
            .insert("bob".into(), ("bob-pw".into(), UserOptions::default()));
        let now = web_now();
        d.sessions = vec![
            SessionView {
                id: "s1".into(),
                user: Some("alice".into()),
                address: Some(Ipv4Addr::new(10, 0, 0, 5)),
                client: "198.51.100.7:4500".into(),
                since_unix: now - 3725,
                state: "up".into(),
                bytes_in: 1_234_567,
                bytes_out: 98_765_432,
                packets_in: 2000,
                packets_out: 70_000,
                ike: "AES-256-CBC/SHA1/ECP-384".into(),
                esp: "AES-256-CBC/HMAC-SHA1".into(),
                acct_session_id: "5F3A000100000001".into(),
                auth: "psk".into(),
            },
            SessionView {
                id: "s2".into(),
                user: Some("bob".into()),
                address: Some(Ipv4Addr::new(10, 0, 0, 17)),
                client: "203.0.113.40:61234".into(),
                since_unix: now - 42,
                state: "up".into(),
                bytes_in: 5120,
                bytes_out: 812,
                packets_in: 12,
                packets_out: 9,
                ike: "AES-128-CBC/SHA256/MODP-2048".into(),
                esp: "AES-128-CBC/HMAC-SHA2-256".into(),
                acct_session_id: "5F3A000100000002".into(),
                auth: "CN=bob-laptop".into(),
            },
        ];
        d.certs.push(CertView {
            serial: "0FFF".into(),
            subject: "CN=bob-laptop".into(),
            kind: CertKind::Device,
            user: None,
            not_before: now as i64 - 86_400,
            not_after: now as i64 + 300 * 86_400,
            revoked: None,
        });
        d.setup = SetupInfo {
            server_name: "vpn.example.com".into(),
            server_addresses: vec!["192.0.2.10".into()],
            psk_mode_enabled: true,
            cert_mode_enabled: true,
            psk: Some("s3cret-psk".into()),
        };
        d.logs = vec![
            LogLine {
                time: now as i64 - 60,
                level: "INFO".into(),
                message: "session up user=alice address=10.0.0.5".into(),
            },
            LogLine {
                time: now as i64 - 30,
                level: "WARN".into(),
                message: "authentication refused user=mallory reason=wrong password".into(),
            },
        ];
        d.acct = vec![AcctRow {
            time: now as i64 - 100,
            status: AcctStatus::Stop,
            user: "carol".into(),
            session_id: "5F3A0001000000AA".into(),
            address: Some(Ipv4Addr::new(10, 0, 0, 9)),
            client: "192.0.2.99:4500".into(),
            input_octets: 1000,
            output_octets: 2000,
            input_packets: 10,
            output_packets: 20,
            session_time: 600,
            cause: Some("User-Request".into()),
        }];
        FixtureBackend {
            data: Mutex::new(d),
        }
    }

    pub fn data(&self) -> std::sync::MutexGuard<'_, FixtureData> {
        self.data.lock().unwrap()
    }
}

fn web_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn check_static_ip(d: &FixtureData, name: &str, opts: &UserOptions) -> BackendResult<()> {
    if let Some(ip) = opts.static_ip {
        for (other, (_, o)) in &d.users {
            if other != name && o.static_ip == Some(ip) {
                return Err(BackendError::Refused(format!(
                    "the address {ip} is already {other}'s"
                )));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Backend for FixtureBackend {
    async fn status(&self) -> BackendResult<StatusView> {
        let d = self.data();
        Ok(StatusView {
            version: "0.1.0-fixture".into(),
            uptime_secs: 90_061,
            sessions_up: d.sessions.len() as u64,
            ike_sas: d.sessions.len() as u64,
            pool_used: d.sessions.len() as u64,
            pool_size: 253,
            counters: vec![("ike_refused".into(), 3), ("ppp_auth_failed".into(), 1)],
            checks: vec![
                web::CheckView {
                    level: "ok".into(),
                    text: "UDP 192.0.2.1:500 (IKE) and 4500 bound".into(),
                },
                web::CheckView {
                    level: "warning".into(),
                    text: "IPv4 forwarding is off: clients reach only this server".into(),
                },
            ],
        })
    }

    async fn sessions(&self) -> BackendResult<Vec<SessionView>> {
        Ok(self.data().sessions.clone())
    }

    async fn disconnect(&self, id: &str) -> BackendResult<usize> {
        let mut d = self.data();
        d.disconnected.push(id.to_string());
        let before = d.sessions.len();
        d.sessions.retain(|s| s.id != id);
        Ok(before - d.sessions.len())
    }

    async fn list_users(&self) -> BackendResult<Vec<UserView>> {
        Ok(self
            .data()
            .users
            .iter()
            .map(|(name, (_, o))| UserView {
                name: name.clone(),
                enabled: o.enabled,
                static_ip: o.static_ip,
                max_sessions: o.max_sessions,
            })
            .collect())
    }

    async fn add_user(&self, name: &str, password: &str, opts: &UserOptions) -> BackendResult<()> {
        let mut d = self.data();
        if d.users.contains_key(name) {
            return Err(BackendError::Refused(format!(
                "there is already a user named {name}"
            )));
        }
        check_static_ip(&d, name, opts)?;
        d.users
            .insert(name.to_string(), (password.to_string(), opts.clone()));
        Ok(())
    }

    async fn update_user(&self, name: &str, opts: &UserOptions) -> BackendResult<()> {
        let mut d = self.data();
        check_static_ip(&d, name, opts)?;
        match d.users.get_mut(name) {
            Some(u) => {
                u.1 = opts.clone();
                Ok(())
            }
            None => Err(BackendError::NotFound(format!("no user named {name}"))),
        }
    }

    async fn set_password(&self, name: &str, password: &str) -> BackendResult<()> {
        match self.data().users.get_mut(name) {
            Some(u) => {
                u.0 = password.to_string();
                Ok(())
            }
            None => Err(BackendError::NotFound(format!("no user named {name}"))),
        }
    }

    async fn delete_user(&self, name: &str) -> BackendResult<()> {
        match self.data().users.remove(name) {
            Some(_) => Ok(()),
            None => Err(BackendError::NotFound(format!("no user named {name}"))),
        }
    }

    async fn list_certs(&self) -> BackendResult<Vec<CertView>> {
        let mut c = self.data().certs.clone();
        c.reverse();
        Ok(c)
    }

    async fn issue_cert(&self, req: &IssueRequest) -> BackendResult<IssuedCert> {
        let mut d = self.data();
        let serial = format!("{:04X}", d.next_serial);
        d.next_serial += 1;
        let now = web_now() as i64;
        d.certs.push(CertView {
            serial: serial.clone(),
            subject: format!("CN={}", req.common_name),
            kind: req.kind,
            user: req.user.clone(),
            not_before: now,
            not_after: now + i64::from(req.validity_days) * 86_400,
            revoked: None,
        });
        Ok(IssuedCert {
            serial: serial.clone(),
            p12_legacy: format!("LEGACY-P12-{serial}").into_bytes(),
            p12_aes: format!("AES-P12-{serial}").into_bytes(),
            password: format!("Pw-{serial}-one-time"),
        })
    }

    async fn revoke_cert(&self, serial: &str, reason: RevocationReason) -> BackendResult<()> {
        let mut d = self.data();
        let Some(c) = d.certs.iter_mut().find(|c| c.serial == serial) else {
            return Err(BackendError::NotFound(format!("no certificate {serial}")));
        };
        if c.revoked.is_some() {
            return Err(BackendError::Refused(format!(
                "the certificate {serial} is already revoked"
            )));
        }
        c.revoked = Some(Revocation {
            time: web_now() as i64,
            reason,
        });
        Ok(())
    }

    async fn ca_cert_pem(&self) -> BackendResult<String> {
        Ok(self.data().ca_pem.clone())
    }

    async fn crl_der(&self) -> BackendResult<Vec<u8>> {
        Ok(vec![0x30, 0x03, 0x02, 0x01, 0x00])
    }

    async fn accounting(&self, since: Option<i64>, limit: usize) -> BackendResult<Vec<AcctRow>> {
        Ok(self
            .data()
            .acct
            .iter()
            .filter(|r| since.is_none_or(|s| r.time >= s))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn accounting_csv(&self, since: Option<i64>) -> BackendResult<String> {
        let mut out = String::from("time,status,user,session_id\n");
        for r in self.accounting(since, usize::MAX).await? {
            out.push_str(&format!(
                "{},{},{},{}\n",
                r.time,
                r.status.as_str(),
                r.user,
                r.session_id
            ));
        }
        Ok(out)
    }

    async fn settings(&self) -> BackendResult<Vec<Setting>> {
        let s = |section: &str, key: &str, value: &str| Setting {
            section: section.into(),
            key: key.into(),
            value: value.into(),
        };
        Ok(vec![
            s("server", "public_name", "vpn.example.com"),
            s("server", "state_dir", "/var/lib/roadgate"),
            s("ike", "psk", "********"),
            s("ike", "dh_groups", "[14, 19, 20]"),
            s("ppp", "pool", "10.0.0.2-10.0.0.254"),
        ])
    }

    async fn recent_logs(&self, limit: usize) -> BackendResult<Vec<LogLine>> {
        let d = self.data();
        let skip = d.logs.len().saturating_sub(limit);
        Ok(d.logs[skip..].to_vec())
    }

    async fn client_setup(&self) -> BackendResult<SetupInfo> {
        Ok(self.data().setup.clone())
    }

    async fn metrics(&self) -> BackendResult<MetricsView> {
        let d = self.data();
        Ok(MetricsView {
            uptime_secs: 90_061,
            sessions_up: d.sessions.len() as u64,
            ike_sas: d.sessions.len() as u64,
            pool_used: d.sessions.len() as u64,
            pool_size: 253,
            connects_total: 17,
            connect_failures: vec![
                ("auth_failed".into(), 3),
                ("weird \"reason\"\\\n".into(), 1),
            ],
            bytes_in: 1_239_687,
            bytes_out: 98_766_244,
            packets_in: 2012,
            packets_out: 70_009,
            radius: vec![RadiusMetrics {
                server: "10.0.0.2:1812".into(),
                requests: 20,
                timeouts: 1,
                latency: Histogram {
                    buckets: vec![(0.005, 2), (0.05, 15), (0.5, 19)],
                    count: 19,
                    sum_secs: 0.61,
                },
            }],
            accounting_spool_depth: 4,
        })
    }
}
