//! The server's certificates: the built-in CA of the state folder (the `ca` crate), the VPN
//! server's own certificate and key, and [`Authority`], the [`CertAuthority`] the IKE responder
//! signs and checks with (RFC 2409 §5.1).
//!
//! On first start the state folder gets a CA (`ca.db`, `ca-key.pem`) and a server certificate
//! (`server-cert.pem`, `server-key.pem`, 0600) for the configured public names and the listen
//! addresses, so that certificate authentication works out of the box once a client
//! certificate is issued (`roadgate ca issue`). An admin may give a certificate and key of
//! another CA instead (`[certificates] server_cert`, `server_key`).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::ike::cert::{CertAuthority, CertRefusal, PeerCert};

/// Files of the server's own certificate in the state folder.
pub const SERVER_CERT_FILE: &str = "server-cert.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";

/// `[certificates]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSettings {
    /// Certificate authentication in IKE (RSA signatures).
    pub enabled: bool,
    /// Names the server certificate carries (DNS names or addresses clients type).
    pub public_names: Vec<String>,
    /// A server certificate (PEM, chain allowed) and key of another CA, instead of the
    /// built-in one's.
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    /// More CA certificates (PEM) whose clients are accepted.
    pub extra_ca: Vec<PathBuf>,
    /// CRLs (DER or PEM) of those CAs.
    pub crl_files: Vec<PathBuf>,
    /// The CRL distribution point written into issued certificates.
    pub crl_url: Option<String>,
    /// A peer that authenticated IPsec with a user certificate must log in to PPP as that
    /// certificate's user.
    pub require_user_match: bool,
}

/// The server's certificate authority for IKE.
#[derive(Debug)]
pub struct Authority {
    chain: Vec<Vec<u8>>,
    subject_der: Vec<u8>,
    signer: ca::IkeRsaSigner,
    store: Mutex<ca::TrustStore>,
    /// The built-in CA: the user a serial was issued for, and revocations newer than the CRL
    /// in the store (a `roadgate ca revoke` takes effect at the next connection).
    builtin: Option<Mutex<ca::Ca>>,
    /// Our certificate's subject, for logs.
    pub subject: String,
}

/// Writes `text` to a new file of mode 0600 (replacing none).
fn write_private(path: &Path, text: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes an issued certificate (PEM) and its key (PEM, a new file of mode 0600).
fn write_issued(issued: &ca::Issued, cert: &Path, key: &Path) -> Result<(), String> {
    let key_pem = issued.key_der.to_pem().map_err(|e| e.to_string())?;
    write_private(key, key_pem.as_bytes())?;
    let pem = issued.cert_pem().map_err(|e| e.to_string())?;
    fs::write(cert, pem).map_err(|e| format!("{}: {e}", cert.display()))
}

/// The built-in CA of `state_dir`, made on first use.
pub fn open_or_init_ca(state_dir: &Path, settings: &CertSettings) -> Result<ca::Ca, String> {
    let authority = open_or_make_ca(state_dir, settings)?;
    // The CA certificate beside it, for browsers and clients to import (public, 0644).
    let pem_path = state_dir.join(CA_CERT_FILE);
    if !pem_path.exists() {
        let pem = authority.ca_cert_pem().map_err(|e| e.to_string())?;
        fs::write(&pem_path, pem).map_err(|e| format!("{}: {e}", pem_path.display()))?;
    }
    // The distribution point is the CA's, fixed when it was made (`roadgate ca init --crl-url`).
    if settings.crl_url.is_some() && settings.crl_url.as_deref() != authority.crl_url() {
        warn!(
            configured = settings.crl_url.as_deref().unwrap_or("-"),
            in_certificates = authority.crl_url().unwrap_or("none"),
            "certificates.crl_url differs from the CA's distribution point, which was fixed when \
             the CA was made: issued certificates name the CA's"
        );
    }
    Ok(authority)
}

/// The CA certificate's file in the state folder (PEM), written when the CA is first used.
pub const CA_CERT_FILE: &str = "ca-cert.pem";

fn open_or_make_ca(state_dir: &Path, settings: &CertSettings) -> Result<ca::Ca, String> {
    if ca::Ca::exists(state_dir) {
        return ca::Ca::open(state_dir)
            .map_err(|e| format!("the CA in {}: {e}", state_dir.display()));
    }
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut params = ca::InitParams::new(if host.is_empty() {
        "Roadgate VPN CA".to_string()
    } else {
        format!("Roadgate VPN CA ({host})")
    });
    params.crl_url = settings.crl_url.clone();
    let made = ca::Ca::init(state_dir, &params)
        .map_err(|e| format!("making a CA in {}: {e}", state_dir.display()))?;
    info!(dir = %state_dir.display(), "made a certificate authority (ca.db, ca-key.pem)");
    Ok(made)
}

/// Names for a new server certificate: [`crate::doctor::public_names`] (the configured public
/// names, else the listen addresses that are not wildcards, else the machine's address, else the
/// host name).
fn server_names(settings: &CertSettings, listen: &[IpAddr]) -> (String, Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in crate::doctor::public_names(&settings.public_names, listen).names {
        match n.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(n),
        }
    }
    let cn = dns
        .first()
        .cloned()
        .or_else(|| ips.first().map(IpAddr::to_string))
        .unwrap_or_else(|| "roadgate".into());
    (cn, dns, ips)
}

/// The built-in server certificate and key of the CA's state folder (`server-cert.pem`,
/// `server-key.pem` 0600), issued now if missing: the names clients type
/// (`certificates.public_names`, else the listen addresses, else the host name), EKU
/// serverAuth and IP-security-IKE-intermediate. IKE and the web UI's HTTPS use it.
pub fn ensure_server_cert(
    authority: &ca::Ca,
    settings: &CertSettings,
    listen: &[IpAddr],
) -> Result<(PathBuf, PathBuf), String> {
    let state_dir = authority.state_dir();
    let cert_path = state_dir.join(SERVER_CERT_FILE);
    let key_path = state_dir.join(SERVER_KEY_FILE);
    if !cert_path.exists() || !key_path.exists() {
        let (cn, dns, ips) = server_names(settings, listen);
        let mut p = ca::ServerParams::new(cn);
        p.dns = dns;
        p.ips = ips;
        let issued = authority.issue_server(&p).map_err(|e| e.to_string())?;
        let _ = fs::remove_file(&key_path);
        write_issued(&issued, &cert_path, &key_path)?;
        info!(subject = %issued.subject, serial = %issued.serial, "issued the server certificate ({SERVER_CERT_FILE})");
    }
    Ok((cert_path, key_path))
}

impl Authority {
    /// The authority of `settings` for a server on `listen`, making the built-in CA and the
    /// server certificate in `state_dir` when they are missing. None when certificate
    /// authentication is off.
    pub fn load(
        state_dir: &Path,
        settings: &CertSettings,
        listen: &[IpAddr],
    ) -> Result<Option<Authority>, String> {
        if !settings.enabled {
            return Ok(None);
        }
        let now = SystemTime::now();
        let (chain, key, builtin) = match (&settings.server_cert, &settings.server_key) {
            (Some(cert), Some(key)) => {
                let chain = ca::load_certs(cert).map_err(|e| e.to_string())?;
                let key = ca::load_private_key_pem(key).map_err(|e| e.to_string())?;
                // The built-in CA's clients are still accepted when it exists.
                let builtin = if ca::Ca::exists(state_dir) {
                    Some(ca::Ca::open(state_dir).map_err(|e| e.to_string())?)
                } else {
                    None
                };
                (chain, key, builtin)
            }
            (None, None) => {
                let authority = open_or_init_ca(state_dir, settings)?;
                let (cert_path, key_path) = ensure_server_cert(&authority, settings, listen)?;
                let chain = ca::load_certs(&cert_path).map_err(|e| e.to_string())?;
                let key = ca::load_private_key_pem(&key_path).map_err(|e| e.to_string())?;
                (chain, key, Some(authority))
            }
            _ => {
                return Err(
                    "certificates.server_cert and certificates.server_key go together".into(),
                );
            }
        };
        let Some(leaf) = chain.first() else {
            return Err("the server certificate file holds no certificate".into());
        };
        let info = ca::inspect_cert(leaf).map_err(|e| format!("the server certificate: {e}"))?;
        let signer = ca::IkeRsaSigner::new(&key)
            .map_err(|e| format!("the server key (IKEv1 clients need an RSA key): {e}"))?;
        if signer.public_key() != info.public_key {
            return Err("the server key does not belong to the server certificate".into());
        }
        let mut store = match &builtin {
            Some(c) => c.trust_store(now).map_err(|e| e.to_string())?,
            None => ca::TrustStore::new(),
        };
        for f in &settings.extra_ca {
            store
                .add_anchors_from_file(f)
                .map_err(|e| format!("certificates.extra_ca {}: {e}", f.display()))?;
        }
        for f in &settings.crl_files {
            store
                .add_crl_file(f)
                .map_err(|e| format!("certificates.crl_files {}: {e}", f.display()))?;
        }
        if store.anchor_count() == 0 {
            return Err("certificate authentication has no CA to trust".into());
        }
        Ok(Some(Authority {
            chain: vec![leaf.clone()],
            subject_der: info.subject_der,
            subject: info.subject_dn,
            signer,
            store: Mutex::new(store),
            builtin: builtin.map(Mutex::new),
        }))
    }

    /// How many CAs' clients are accepted.
    pub fn anchor_count(&self) -> usize {
        self.store.lock().map_or(0, |s| s.anchor_count())
    }
}

impl CertAuthority for Authority {
    fn our_chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn our_subject(&self) -> &[u8] {
        &self.subject_der
    }

    fn trusted_ca_subjects(&self) -> Vec<Vec<u8>> {
        self.store
            .lock()
            .map(|s| s.anchor_subjects_der())
            .unwrap_or_default()
    }

    fn sign(&self, hash: &[u8]) -> Result<Vec<u8>, String> {
        self.signer.sign(hash).map_err(|e| e.to_string())
    }

    fn verify_chain(&self, chain: &[&[u8]], unix_now: u64) -> Result<PeerCert, CertRefusal> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(CertRefusal("no certificate".into()));
        };
        let now = UNIX_EPOCH + Duration::from_secs(unix_now);
        let checked = {
            let store = self
                .store
                .lock()
                .map_err(|_| CertRefusal("trust store unavailable".into()))?;
            store
                .verify_chain(leaf, intermediates, now)
                .map_err(|e| CertRefusal(e.to_string()))?
        };
        // The database knows of revocations the CRL in the store may predate, and which user
        // a certificate of ours was issued for.
        let mut user = None;
        if let Some(db) = &self.builtin
            && let Ok(db) = db.lock()
            && let Ok(Some(rec)) = db.find(&checked.serial)
            && rec.cert_der == checked.cert_der
        {
            if let Some(r) = rec.revoked {
                return Err(CertRefusal(format!(
                    "certificate {} ({}) was revoked ({}) at {}",
                    checked.serial,
                    checked.subject_dn,
                    r.reason,
                    ca::utc_date(r.at)
                )));
            }
            user = rec.user;
        }
        Ok(PeerCert {
            user: user.or_else(|| checked.common_name.clone()),
            subject: checked.subject_dn,
            subject_der: checked.subject_der,
            dns: checked.san_dns,
            ips: checked.san_ips,
            emails: checked.san_emails,
            serial: checked.serial,
            der: checked.cert_der,
        })
    }

    fn verify_signature(&self, peer: &PeerCert, hash: &[u8], signature: &[u8]) -> bool {
        match ca::inspect_cert(&peer.der) {
            Ok(c) => ca::verify_ike_rsa(&c.public_key, hash, signature),
            Err(_) => false,
        }
    }
}

// ---- `roadgate ca ...` -------------------------------------------------------------------

/// `roadgate ca init`: a CA in `state_dir` (refused if one exists).
pub fn cli_init(
    state_dir: &Path,
    common_name: Option<&str>,
    key: Option<&str>,
    crl_url: Option<&str>,
) -> Result<String, String> {
    fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let mut params = ca::InitParams::new(common_name.unwrap_or("Roadgate VPN CA"));
    if let Some(k) = key {
        params.key = k.parse().map_err(|e: ca::CaError| e.to_string())?;
    }
    params.crl_url = crl_url.map(str::to_string);
    let made = ca::Ca::init(state_dir, &params).map_err(|e| e.to_string())?;
    let info = ca::inspect_cert(made.ca_cert_der()).map_err(|e| e.to_string())?;
    Ok(format!(
        "CA made in {}: {} ({}), valid until {}\n",
        state_dir.display(),
        info.subject_dn,
        made.key_kind().as_str(),
        ca::utc_date(info.not_after)
    ))
}

/// What `roadgate ca issue` writes.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub name: String,
    pub device: bool,
    pub user: Option<String>,
    pub days: Option<u32>,
    pub out_dir: PathBuf,
}

/// `roadgate ca issue`: a client certificate, written as `NAME.p12` (legacy: Apple, older
/// Windows), `NAME-aes.p12`, `NAME.pem` and `NAME.key` (0600) into `out_dir`, with the
/// one-time password of the .p12 files in the output (shown once).
pub fn cli_issue(state_dir: &Path, r: &IssueRequest) -> Result<String, String> {
    let authority = ca::Ca::open(state_dir).map_err(|e| e.to_string())?;
    let kind = if r.device {
        ca::ClientKind::Device
    } else {
        ca::ClientKind::User
    };
    let mut p = ca::ClientParams::new(r.name.clone(), kind);
    p.user = match (&r.user, r.device) {
        (Some(u), _) => Some(u.clone()),
        (None, false) => Some(r.name.clone()),
        (None, true) => None,
    };
    if let Some(d) = r.days {
        p.validity_days = d;
    }
    let issued = authority.issue_client(&p).map_err(|e| e.to_string())?;
    let password = ca::one_time_password().map_err(|e| e.to_string())?;
    let ca_der = authority.ca_cert_der().to_vec();
    let base = r.out_dir.join(&r.name);
    let file = |suffix: &str| PathBuf::from(format!("{}{suffix}", base.display()));
    fs::create_dir_all(&r.out_dir).map_err(|e| format!("{}: {e}", r.out_dir.display()))?;
    for (suffix, format) in [
        (".p12", ca::P12Format::Legacy),
        ("-aes.p12", ca::P12Format::Aes256),
    ] {
        let p12 = ca::export_p12(
            &issued.cert_der,
            &issued.key_der,
            &[&ca_der],
            &password,
            format,
            &r.name,
        )
        .map_err(|e| e.to_string())?;
        write_private(&file(suffix), &p12)?;
    }
    write_issued(&issued, &file(".pem"), &file(".key"))?;
    Ok(format!(
        "issued {} serial {} for {}\n  {}.p12 (legacy 3DES/SHA-1: macOS, iOS, older Windows)\n  \
         {}-aes.p12 (AES-256/SHA-256: Windows 10/11)\n  {}.pem and {}.key (Linux, strongSwan)\n\
         password of the .p12 files (shown once): {}\n",
        kind_name(issued.kind),
        issued.serial,
        issued.subject,
        base.display(),
        base.display(),
        base.display(),
        base.display(),
        password
    ))
}

fn kind_name(k: ca::CertKind) -> &'static str {
    k.as_str()
}

/// `roadgate ca revoke`.
pub fn cli_revoke(state_dir: &Path, serial: &str, reason: Option<&str>) -> Result<String, String> {
    let authority = ca::Ca::open(state_dir).map_err(|e| e.to_string())?;
    let reason = match reason {
        Some(r) => r.parse().map_err(|e: ca::CaError| e.to_string())?,
        None => ca::RevocationReason::Unspecified,
    };
    let rec = authority
        .revoke(serial, reason)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "revoked {} ({}): {reason}; a running server refuses it from its next connection\n",
        rec.serial, rec.subject
    ))
}

/// `roadgate ca list`.
pub fn cli_list(state_dir: &Path) -> Result<String, String> {
    let authority = ca::Ca::open(state_dir).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:<34} {:<7} {:<12} {:<11} {:<20} SUBJECT\n",
        "SERIAL", "KIND", "USER", "STATE", "EXPIRES"
    );
    let now = SystemTime::now();
    for r in authority.list().map_err(|e| e.to_string())? {
        let state = match (&r.revoked, r.is_valid_at(now)) {
            (Some(_), _) => "revoked",
            (None, true) => "valid",
            (None, false) => "expired",
        };
        out.push_str(&format!(
            "{:<34} {:<7} {:<12} {:<11} {:<20} {}\n",
            r.serial,
            r.kind.as_str(),
            r.user.as_deref().unwrap_or("-"),
            state,
            ca::utc_date(r.not_after),
            r.subject
        ));
    }
    Ok(out)
}

/// `roadgate ca crl`: a newly signed CRL (DER) valid for `days`.
pub fn cli_crl(state_dir: &Path, days: u32) -> Result<Vec<u8>, String> {
    let authority = ca::Ca::open(state_dir).map_err(|e| e.to_string())?;
    authority
        .crl(
            SystemTime::now(),
            Duration::from_secs(u64::from(days.max(1)) * 86_400),
        )
        .map_err(|e| e.to_string())
}

/// `roadgate ca cert`: the CA certificate (PEM), for clients to trust.
pub fn cli_ca_cert(state_dir: &Path) -> Result<String, String> {
    let authority = ca::Ca::open(state_dir).map_err(|e| e.to_string())?;
    authority.ca_cert_pem().map_err(|e| e.to_string())
}
