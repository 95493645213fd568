//! The certificate authority: its key and certificate, the issued certificates in SQLite,
//! revocation and CRLs.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use crate::keys::{PrivateKeyDer, cert_to_pem, read_text_file};
use crate::store::{self, DB_FILE, Db, KEY_FILE};
use crate::verify::{inspect_cert, serial_hex};
use crate::{CaError, KeyKind, RevocationReason, TrustStore};

/// How far back notBefore is set from the moment of issuing, for peers whose clock is a
/// little behind.
pub const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// The longest validity accepted for anything (100 years).
const MAX_VALIDITY_DAYS: u32 = 36_500;
/// The nextUpdate distance of the CRL that [`Ca::trust_store`] puts in the store.
const TRUST_STORE_CRL_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// iKEIntermediate (1.3.6.1.5.5.8.2.2).
const IKE_INTERMEDIATE: [u64; 9] = [1, 3, 6, 1, 5, 5, 8, 2, 2];
/// Bytes of a serial number (the first is 0x40..=0x7f: positive and no leading zero, so the
/// encoding is always 16 bytes with 126 random bits).
const SERIAL_LEN: usize = 16;

/// The parameters of a new CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitParams {
    /// The CA key (RSA 2048 by default: Apple's IKEv1 needs RSA).
    pub key: KeyKind,
    /// The CA certificate's commonName.
    pub common_name: String,
    /// The organizationName of the CA and of every certificate it issues.
    pub organization: Option<String>,
    /// How long the CA certificate is valid.
    pub validity_days: u32,
    /// The CRL distribution point (an http:// URL) put in every issued certificate.
    pub crl_url: Option<String>,
}

impl InitParams {
    /// RSA 2048, ten years, no organization, no CRL URL.
    pub fn new(common_name: impl Into<String>) -> Self {
        Self {
            key: KeyKind::default(),
            common_name: common_name.into(),
            organization: None,
            validity_days: 3650,
            crl_url: None,
        }
    }
}

/// The parameters of a VPN server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerParams {
    /// The commonName. When it is a host name or an IP address it is also put in the
    /// subjectAltName (Windows matches the typed server address against either).
    pub common_name: String,
    /// subjectAltName dNSName entries.
    pub dns: Vec<String>,
    /// subjectAltName iPAddress entries.
    pub ips: Vec<IpAddr>,
    /// Validity from now (notAfter is capped at the CA's).
    pub validity_days: u32,
    /// The key to generate.
    pub key: KeyKind,
}

impl ServerParams {
    /// RSA 2048, two years, no extra SAN.
    pub fn new(common_name: impl Into<String>) -> Self {
        Self {
            common_name: common_name.into(),
            dns: Vec::new(),
            ips: Vec::new(),
            validity_days: 730,
            key: KeyKind::default(),
        }
    }
}

/// Whom a client certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// A person (maps to a VPN user).
    User,
    /// A machine (a Windows computer certificate, a router).
    Device,
}

/// The parameters of a client (user or device) certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientParams {
    /// The commonName.
    pub common_name: String,
    /// User or device.
    pub kind: ClientKind,
    /// The VPN user the certificate maps to (stored with it, not put in the certificate).
    pub user: Option<String>,
    /// subjectAltName rfc822Name entries.
    pub emails: Vec<String>,
    /// subjectAltName dNSName entries.
    pub dns: Vec<String>,
    /// Validity from now (notAfter is capped at the CA's).
    pub validity_days: u32,
    /// The key to generate.
    pub key: KeyKind,
}

impl ClientParams {
    /// A user certificate: RSA 2048, one year, no SAN.
    pub fn new(common_name: impl Into<String>, kind: ClientKind) -> Self {
        Self {
            common_name: common_name.into(),
            kind,
            user: None,
            emails: Vec::new(),
            dns: Vec::new(),
            validity_days: 365,
            key: KeyKind::default(),
        }
    }
}

/// What a stored certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// The CA certificate itself.
    Ca,
    /// A VPN server certificate.
    Server,
    /// A user's client certificate.
    User,
    /// A device's client certificate.
    Device,
}

impl CertKind {
    /// `ca`, `server`, `user` or `device`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ca => "ca",
            Self::Server => "server",
            Self::User => "user",
            Self::Device => "device",
        }
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertKind {
    type Err = CaError;

    fn from_str(s: &str) -> Result<Self, CaError> {
        match s {
            "ca" => Ok(Self::Ca),
            "server" => Ok(Self::Server),
            "user" => Ok(Self::User),
            "device" => Ok(Self::Device),
            _ => Err(CaError::Corrupt(format!("unknown certificate kind {s:?}"))),
        }
    }
}

/// A newly issued certificate with its private key. The key is not stored by the CA: this is
/// the only copy.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The serial number, lowercase hex.
    pub serial: String,
    /// What it is.
    pub kind: CertKind,
    /// The subject, RFC 4514.
    pub subject: String,
    /// The certificate.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8.
    pub key_der: PrivateKeyDer,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
}

impl Issued {
    /// The certificate as PEM.
    pub fn cert_pem(&self) -> Result<String, CaError> {
        cert_to_pem(&self.cert_der)
    }
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// When [`Ca::revoke`] was called.
    pub at: SystemTime,
    /// Why.
    pub reason: RevocationReason,
}

/// A certificate as the CA database keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    /// The serial number, lowercase hex.
    pub serial: String,
    /// What it is.
    pub kind: CertKind,
    /// The subject, RFC 4514.
    pub subject: String,
    /// The commonName it was issued with.
    pub common_name: String,
    /// The VPN user a client certificate maps to.
    pub user: Option<String>,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// Its revocation, if it is revoked.
    pub revoked: Option<Revocation>,
    /// The certificate.
    pub cert_der: Vec<u8>,
}

impl CertRecord {
    /// Whether it is within its validity period at `now` and not revoked.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.revoked.is_none() && self.not_before <= now && now <= self.not_after
    }
}

/// The built-in CA of one state folder: `ca.db` (the CA certificate, every issued
/// certificate, revocations, the CRL number) and `ca-key.pem` (the CA private key, PKCS#8,
/// mode 0600).
pub struct Ca {
    state_dir: PathBuf,
    db: Db,
    cert_der: Vec<u8>,
    not_after: SystemTime,
    key_kind: KeyKind,
    issuer: Issuer<'static, KeyPair>,
    organization: Option<String>,
    crl_url: Option<String>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("state_dir", &self.state_dir)
            .field("key_kind", &self.key_kind)
            .field("organization", &self.organization)
            .field("crl_url", &self.crl_url)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Whether `state_dir` holds a CA (its database and its key file).
    pub fn exists(state_dir: &Path) -> bool {
        state_dir.join(DB_FILE).is_file() && state_dir.join(KEY_FILE).is_file()
    }

    /// Creates a new CA in `state_dir` (created 0700 if missing): a key, a self-signed CA
    /// certificate, the database. Refuses if a database or key file is there already.
    pub fn init(state_dir: &Path, params: &InitParams) -> Result<Self, CaError> {
        check_text("common name", &params.common_name, 64)?;
        if let Some(org) = &params.organization {
            check_text("organization", org, 64)?;
        }
        check_validity(params.validity_days)?;
        if let Some(url) = &params.crl_url {
            check_crl_url(url)?;
        }
        if state_dir.join(DB_FILE).exists() || state_dir.join(KEY_FILE).exists() {
            return Err(CaError::AlreadyExists(state_dir.to_path_buf()));
        }
        store::ensure_state_dir(state_dir)?;

        let key = params.key.generate()?;
        let now = whole_seconds(SystemTime::now())?;
        let mut cert_params = CertificateParams::default();
        cert_params.distinguished_name =
            distinguished_name(&params.common_name, params.organization.as_deref());
        cert_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        cert_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        cert_params.key_identifier_method = KeyIdMethod::Sha256;
        cert_params.not_before = to_offset(now - BACKDATE)?;
        cert_params.not_after = to_offset(now + days(params.validity_days))?;
        let serial = random_serial()?;
        cert_params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = cert_params.self_signed(&key)?;
        let cert_der = cert.der().to_vec();
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());

        let key_path = store::write_private_file_new(state_dir, KEY_FILE, key_pem.as_bytes())?;
        let created = (|| {
            let db = Db::create(state_dir)?;
            let info = inspect_cert(&cert_der)
                .map_err(|e| CaError::Corrupt(format!("the new CA certificate: {e}")))?;
            db.conn
                .execute(
                    "INSERT INTO authority (id, cert_der, key_kind, organization, crl_url)
                     VALUES (1, ?1, ?2, ?3, ?4)",
                    params![
                        cert_der,
                        params.key.as_str(),
                        params.organization,
                        params.crl_url
                    ],
                )
                .map_err(db.err())?;
            insert_cert(
                &db,
                &NewRow {
                    serial: &hex::encode(serial),
                    kind: CertKind::Ca,
                    subject: &info.subject_dn,
                    common_name: &params.common_name,
                    user: None,
                    not_before: info.not_before,
                    not_after: info.not_after,
                    issued_at: now,
                    cert_der: &cert_der,
                },
            )?;
            Ok(db)
        })();
        match created {
            Ok(db) => drop(db),
            Err(e) => {
                // Leave no half-made CA behind: the next init may try again.
                let _ = std::fs::remove_file(&key_path);
                let _ = std::fs::remove_file(state_dir.join(DB_FILE));
                return Err(e);
            }
        }
        Self::open(state_dir)
    }

    /// Opens the CA of `state_dir`, checking that its key matches its certificate and that
    /// the key file is private.
    pub fn open(state_dir: &Path) -> Result<Self, CaError> {
        let key_path = state_dir.join(KEY_FILE);
        if !Self::exists(state_dir) {
            return Err(CaError::NotFound(state_dir.to_path_buf()));
        }
        store::check_private_mode(&key_path)?;
        let db = Db::open(state_dir)?;
        let (cert_der, key_kind, organization, crl_url): (
            Vec<u8>,
            String,
            Option<String>,
            Option<String>,
        ) = db
            .conn
            .query_row(
                "SELECT cert_der, key_kind, organization, crl_url FROM authority WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db.err())?
            .ok_or_else(|| CaError::Corrupt("the authority row is missing".into()))?;
        let key_kind = KeyKind::from_str(&key_kind)
            .map_err(|_| CaError::Corrupt(format!("unknown CA key kind {key_kind:?}")))?;
        let key_pem = read_text_file(&key_path)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| CaError::Key(format!("{}: {e}", key_path.display())))?;
        let info = inspect_cert(&cert_der)
            .map_err(|e| CaError::Corrupt(format!("the stored CA certificate: {e}")))?;
        if key.subject_public_key_info() != info.spki_der {
            return Err(CaError::Corrupt(format!(
                "{} does not belong to the CA certificate",
                key_path.display()
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)?;
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            db,
            cert_der,
            not_after: info.not_after,
            key_kind,
            issuer,
            organization,
            crl_url,
        })
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The CA key file, `<state_dir>/ca-key.pem`.
    pub fn key_path(&self) -> PathBuf {
        self.state_dir.join(KEY_FILE)
    }

    /// The database file, `<state_dir>/ca.db`.
    pub fn db_path(&self) -> &Path {
        &self.db.path
    }

    /// The CA certificate, DER.
    pub fn ca_cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> Result<String, CaError> {
        cert_to_pem(&self.cert_der)
    }

    /// The CA key's kind.
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// The CRL distribution point put in issued certificates.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// Issues a VPN server certificate: EKU serverAuth and iKEIntermediate, keyUsage
    /// digitalSignature (and keyEncipherment for RSA), the SANs, the CRL distribution point.
    pub fn issue_server(&self, params: &ServerParams) -> Result<Issued, CaError> {
        check_text("common name", &params.common_name, 64)?;
        let mut dns = params.dns.clone();
        let mut ips = params.ips.clone();
        if let Ok(ip) = params.common_name.parse::<IpAddr>() {
            if !ips.contains(&ip) {
                ips.insert(0, ip);
            }
        } else if is_dns_name(&params.common_name)
            && !dns
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&params.common_name))
        {
            dns.insert(0, params.common_name.clone());
        }
        let mut sans = dns_sans(&dns)?;
        sans.extend(ips.into_iter().map(SanType::IpAddress));
        let mut key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if params.key.is_rsa() {
            key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        self.issue(Request {
            kind: CertKind::Server,
            common_name: &params.common_name,
            user: None,
            sans,
            key_usages,
            ekus: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::Other(IKE_INTERMEDIATE.to_vec()),
            ],
            validity_days: params.validity_days,
            key: params.key,
        })
    }

    /// Issues a client certificate for a user or a device: EKU clientAuth and
    /// iKEIntermediate, keyUsage digitalSignature, the SANs, the CRL distribution point.
    pub fn issue_client(&self, params: &ClientParams) -> Result<Issued, CaError> {
        check_text("common name", &params.common_name, 64)?;
        if let Some(user) = &params.user {
            check_text("user", user, 256)?;
        }
        let mut sans = Vec::new();
        for email in &params.emails {
            if !is_email(email) {
                return Err(CaError::InvalidParams(format!(
                    "{email:?} is not an e-mail address"
                )));
            }
            sans.push(SanType::Rfc822Name(email.as_str().try_into()?));
        }
        sans.extend(dns_sans(&params.dns)?);
        self.issue(Request {
            kind: match params.kind {
                ClientKind::User => CertKind::User,
                ClientKind::Device => CertKind::Device,
            },
            common_name: &params.common_name,
            user: params.user.as_deref(),
            sans,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            ekus: vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::Other(IKE_INTERMEDIATE.to_vec()),
            ],
            validity_days: params.validity_days,
            key: params.key,
        })
    }

    fn issue(&self, req: Request<'_>) -> Result<Issued, CaError> {
        check_validity(req.validity_days)?;
        let now = whole_seconds(SystemTime::now())?;
        let not_before = now - BACKDATE;
        let not_after = (now + days(req.validity_days)).min(self.not_after);
        if not_after <= now {
            return Err(CaError::InvalidParams(
                "the CA certificate has expired: no certificate can be issued".into(),
            ));
        }
        let serial = self.fresh_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name =
            distinguished_name(req.common_name, self.organization.as_deref());
        params.subject_alt_names = req.sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = req.key_usages;
        params.extended_key_usages = req.ekus;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = to_offset(not_before)?;
        params.not_after = to_offset(not_after)?;
        if let Some(url) = &self.crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        let key = req.key.generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_der = cert.der().to_vec();
        let key_der = PrivateKeyDer::from_pkcs8_der(key.serialize_der())?;
        let info = inspect_cert(&cert_der)
            .map_err(|e| CaError::Corrupt(format!("the new certificate: {e}")))?;
        let serial = hex::encode(serial);
        insert_cert(
            &self.db,
            &NewRow {
                serial: &serial,
                kind: req.kind,
                subject: &info.subject_dn,
                common_name: req.common_name,
                user: req.user,
                not_before: info.not_before,
                not_after: info.not_after,
                issued_at: now,
                cert_der: &cert_der,
            },
        )?;
        Ok(Issued {
            serial,
            kind: req.kind,
            subject: info.subject_dn,
            cert_der,
            key_der,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// A random serial number not used by any stored certificate.
    fn fresh_serial(&self) -> Result<[u8; SERIAL_LEN], CaError> {
        for _ in 0..8 {
            let serial = random_serial()?;
            let used: bool = self
                .db
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM certs WHERE serial = ?1)",
                    [hex::encode(serial)],
                    |r| r.get(0),
                )
                .map_err(self.db.err())?;
            if !used {
                return Ok(serial);
            }
        }
        Err(CaError::SerialExhausted)
    }

    /// Revokes a certificate (serial in hex, any case, colons allowed). Refuses an unknown
    /// serial, one already revoked, the CA's own certificate, and the reasons
    /// certificateHold and removeFromCRL. The next CRL lists it.
    pub fn revoke(&self, serial: &str, reason: RevocationReason) -> Result<CertRecord, CaError> {
        if matches!(
            reason,
            RevocationReason::CertificateHold | RevocationReason::RemoveFromCrl
        ) {
            return Err(CaError::InvalidParams(format!(
                "revocation reason {reason} is not supported (revocation here is final)"
            )));
        }
        let serial = normalize_serial(serial)?;
        let now = unix(SystemTime::now())?;
        let tx = self
            .db
            .conn
            .unchecked_transaction()
            .map_err(self.db.err())?;
        let record = self
            .find(&serial)?
            .ok_or_else(|| CaError::UnknownSerial(serial.clone()))?;
        if record.kind == CertKind::Ca {
            return Err(CaError::RevokeCa(serial));
        }
        if record.revoked.is_some() {
            return Err(CaError::AlreadyRevoked(serial));
        }
        tx.execute(
            "UPDATE certs SET revoked_at = ?1, reason = ?2 WHERE serial = ?3 AND revoked_at IS NULL",
            params![now, reason.code(), serial],
        )
        .map_err(self.db.err())?;
        tx.execute(
            "UPDATE authority SET revision = revision + 1 WHERE id = 1",
            [],
        )
        .map_err(self.db.err())?;
        tx.commit().map_err(self.db.err())?;
        self.find(&serial)?
            .ok_or_else(|| CaError::UnknownSerial(serial.clone()))
    }

    /// Every stored certificate (the CA's own first), oldest first.
    pub fn list(&self) -> Result<Vec<CertRecord>, CaError> {
        let mut stmt = self
            .db
            .conn
            .prepare(&format!(
                "SELECT {ROW_COLUMNS} FROM certs ORDER BY kind != 'ca', issued_at, serial"
            ))
            .map_err(self.db.err())?;
        let rows = stmt
            .query_map([], RawRow::read)
            .map_err(self.db.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db.err())?;
        rows.into_iter().map(RawRow::into_record).collect()
    }

    /// The certificate with this serial (hex, any case, colons allowed), if this CA issued it.
    pub fn find(&self, serial: &str) -> Result<Option<CertRecord>, CaError> {
        let serial = normalize_serial(serial)?;
        let row = self
            .db
            .conn
            .query_row(
                &format!("SELECT {ROW_COLUMNS} FROM certs WHERE serial = ?1"),
                [&serial],
                RawRow::read,
            )
            .optional()
            .map_err(self.db.err())?;
        row.map(RawRow::into_record).transpose()
    }

    /// Signs a new CRL (X.509 v2, DER): thisUpdate `now`, nextUpdate `now + next_update_in`,
    /// the next CRL number (kept in the database, so it only grows), every revoked
    /// certificate with its reason code. Each call makes a new one: callers serving it
    /// should use [`Ca::current_crl`].
    pub fn crl(&self, now: SystemTime, next_update_in: Duration) -> Result<Vec<u8>, CaError> {
        if next_update_in < Duration::from_secs(1) {
            return Err(CaError::InvalidParams(
                "the CRL's nextUpdate must be after its thisUpdate".into(),
            ));
        }
        let now = whole_seconds(now)?;
        let next_update = now + next_update_in;
        let tx = self
            .db
            .conn
            .unchecked_transaction()
            .map_err(self.db.err())?;
        let (number, revision): (i64, i64) = tx
            .query_row(
                "UPDATE authority SET crl_number = crl_number + 1 WHERE id = 1
                 RETURNING crl_number, revision",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.db.err())?;
        let revoked = self.revoked_entries()?;
        let crl_params = CertificateRevocationListParams {
            this_update: to_offset(now)?,
            next_update: to_offset(next_update)?,
            crl_number: SerialNumber::from_slice(&minimal_be(number)),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = crl_params.signed_by(&self.issuer)?;
        let der = crl.der().to_vec();
        tx.execute(
            "UPDATE authority SET last_crl_der = ?1, last_crl_revision = ?2,
                 last_crl_this_update = ?3, last_crl_next_update = ?4 WHERE id = 1",
            params![der, revision, unix(now)?, unix(next_update)?],
        )
        .map_err(self.db.err())?;
        tx.commit().map_err(self.db.err())?;
        Ok(der)
    }

    /// The CRL entries of every revoked certificate, oldest revocation first.
    fn revoked_entries(&self) -> Result<Vec<RevokedCertParams>, CaError> {
        let mut stmt = self
            .db
            .conn
            .prepare(
                "SELECT serial, revoked_at, reason FROM certs
                 WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial",
            )
            .map_err(self.db.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(self.db.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db.err())?;
        rows.into_iter()
            .map(|(serial, at, code)| {
                let bytes = hex::decode(&serial)
                    .map_err(|_| CaError::Corrupt(format!("stored serial {serial:?}")))?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: to_offset(from_unix(at))?,
                    reason_code: Some(reason_from_db(code)?.to_rcgen()),
                    invalidity_date: None,
                })
            })
            .collect()
    }

    /// The CRL to serve at `now`: the last one signed, while no revocation came after it and
    /// more than half of `next_update_in` is left before its nextUpdate; otherwise a new one
    /// from [`Ca::crl`].
    pub fn current_crl(
        &self,
        now: SystemTime,
        next_update_in: Duration,
    ) -> Result<Vec<u8>, CaError> {
        type Last = (i64, Option<Vec<u8>>, Option<i64>, Option<i64>, Option<i64>);
        let (revision, der, crl_revision, this_update, next_update): Last = self
            .db
            .conn
            .query_row(
                "SELECT revision, last_crl_der, last_crl_revision, last_crl_this_update,
                        last_crl_next_update FROM authority WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(self.db.err())?;
        let now_s = unix(now)?;
        if let (Some(der), Some(crl_revision), Some(this_update), Some(next_update)) =
            (der, crl_revision, this_update, next_update)
        {
            let half = i64::try_from(next_update_in.as_secs() / 2).unwrap_or(i64::MAX);
            if crl_revision == revision
                && this_update <= now_s
                && next_update.saturating_sub(now_s) > half
            {
                return Ok(der);
            }
        }
        self.crl(now, next_update_in)
    }

    /// A trust store for verifying peers with this CA: its certificate as the anchor and its
    /// current CRL ([`Ca::current_crl`], a week's nextUpdate).
    pub fn trust_store(&self, now: SystemTime) -> Result<TrustStore, CaError> {
        let mut store = TrustStore::new();
        store
            .add_anchor_der(&self.cert_der)
            .map_err(|e| CaError::Corrupt(format!("the CA certificate as an anchor: {e}")))?;
        let crl = self.current_crl(now, TRUST_STORE_CRL_VALIDITY)?;
        store
            .add_crl_der(&crl)
            .map_err(|e| CaError::Corrupt(format!("the CA's own CRL: {e}")))?;
        Ok(store)
    }
}

/// What [`Ca::issue`] is asked for.
struct Request<'a> {
    kind: CertKind,
    common_name: &'a str,
    user: Option<&'a str>,
    sans: Vec<SanType>,
    key_usages: Vec<KeyUsagePurpose>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
    validity_days: u32,
    key: KeyKind,
}

/// A row to insert into `certs`.
struct NewRow<'a> {
    serial: &'a str,
    kind: CertKind,
    subject: &'a str,
    common_name: &'a str,
    user: Option<&'a str>,
    not_before: SystemTime,
    not_after: SystemTime,
    issued_at: SystemTime,
    cert_der: &'a [u8],
}

fn insert_cert(db: &Db, row: &NewRow<'_>) -> Result<(), CaError> {
    db.conn
        .execute(
            "INSERT INTO certs (serial, kind, subject, common_name, user, not_before, not_after,
                                issued_at, cert_der)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.serial,
                row.kind.as_str(),
                row.subject,
                row.common_name,
                row.user,
                unix(row.not_before)?,
                unix(row.not_after)?,
                unix(row.issued_at)?,
                row.cert_der
            ],
        )
        .map_err(db.err())?;
    Ok(())
}

const ROW_COLUMNS: &str = "serial, kind, subject, common_name, user, not_before, not_after, \
                           issued_at, revoked_at, reason, cert_der";

/// A `certs` row as SQLite gives it.
struct RawRow {
    serial: String,
    kind: String,
    subject: String,
    common_name: String,
    user: Option<String>,
    not_before: i64,
    not_after: i64,
    issued_at: i64,
    revoked_at: Option<i64>,
    reason: Option<i64>,
    cert_der: Vec<u8>,
}

impl RawRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            serial: r.get(0)?,
            kind: r.get(1)?,
            subject: r.get(2)?,
            common_name: r.get(3)?,
            user: r.get(4)?,
            not_before: r.get(5)?,
            not_after: r.get(6)?,
            issued_at: r.get(7)?,
            revoked_at: r.get(8)?,
            reason: r.get(9)?,
            cert_der: r.get(10)?,
        })
    }

    fn into_record(self) -> Result<CertRecord, CaError> {
        let revoked = match (self.revoked_at, self.reason) {
            (None, _) => None,
            (Some(at), reason) => Some(Revocation {
                at: from_unix(at),
                reason: reason_from_db(reason)?,
            }),
        };
        Ok(CertRecord {
            kind: self.kind.parse()?,
            serial: self.serial,
            subject: self.subject,
            common_name: self.common_name,
            user: self.user,
            not_before: from_unix(self.not_before),
            not_after: from_unix(self.not_after),
            issued_at: from_unix(self.issued_at),
            revoked,
            cert_der: self.cert_der,
        })
    }
}

/// A stored reason code (none counts as unspecified).
fn reason_from_db(code: Option<i64>) -> Result<RevocationReason, CaError> {
    let code = code.unwrap_or(0);
    u8::try_from(code)
        .ok()
        .and_then(RevocationReason::from_code)
        .ok_or_else(|| CaError::Corrupt(format!("revocation reason code {code}")))
}

fn distinguished_name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn dns_sans(names: &[String]) -> Result<Vec<SanType>, CaError> {
    names
        .iter()
        .map(|name| {
            if !is_dns_name(name) {
                return Err(CaError::InvalidParams(format!(
                    "{name:?} is not a DNS name"
                )));
            }
            Ok(SanType::DnsName(name.as_str().try_into()?))
        })
        .collect()
}

/// A host name (letters, digits, hyphens; labels of 1 to 63; a leading `*.` allowed) with at
/// least one dot or made of a single label.
fn is_dns_name(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    !body.is_empty()
        && name.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && body.bytes().any(|b| b.is_ascii_alphabetic())
}

fn is_email(addr: &str) -> bool {
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && addr.is_ascii()
                && !addr
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
                && !domain.contains('@')
                && is_dns_name(domain)
        }
        None => false,
    }
}

fn check_text(what: &str, value: &str, max_chars: usize) -> Result<(), CaError> {
    if value.trim().is_empty() {
        return Err(CaError::InvalidParams(format!("the {what} is empty")));
    }
    if value.chars().count() > max_chars {
        return Err(CaError::InvalidParams(format!(
            "the {what} is longer than {max_chars} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(CaError::InvalidParams(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(())
}

fn check_validity(days: u32) -> Result<(), CaError> {
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(CaError::InvalidParams(format!(
            "validity of {days} days (1 to {MAX_VALIDITY_DAYS})"
        )));
    }
    Ok(())
}

fn check_crl_url(url: &str) -> Result<(), CaError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && url.is_ascii()
        && !url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidParams(format!(
            "CRL URL {url:?} must be an http:// or https:// URL without spaces"
        )))
    }
}

/// The canonical form of a serial typed by a person: lowercase hex, no separators, no
/// leading zero bytes.
fn normalize_serial(serial: &str) -> Result<String, CaError> {
    let digits: String = serial
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CaError::InvalidParams(format!(
            "{serial:?} is not a hexadecimal serial number"
        )));
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_owned()
    };
    let bytes = hex::decode(&padded).map_err(|e| CaError::InvalidParams(format!("serial: {e}")))?;
    Ok(serial_hex(&bytes))
}

fn random_serial() -> Result<[u8; SERIAL_LEN], CaError> {
    let mut serial = [0u8; SERIAL_LEN];
    getrandom::fill(&mut serial)?;
    serial[0] = (serial[0] & 0x3f) | 0x40;
    Ok(serial)
}

/// The shortest big-endian bytes of a positive number (at least one byte).
fn minimal_be(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes[start..].to_vec()
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 24 * 60 * 60)
}

/// `t` cut to whole seconds (certificates and CRLs carry no fractions).
fn whole_seconds(t: SystemTime) -> Result<SystemTime, CaError> {
    Ok(from_unix(unix(t)?))
}

fn unix(t: SystemTime) -> Result<i64, CaError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CaError::InvalidParams("a time before 1970".into()))?
        .as_secs();
    i64::try_from(secs).map_err(|_| CaError::InvalidParams("a time too far ahead".into()))
}

fn from_unix(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}

fn to_offset(t: SystemTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix(t)?)
        .map_err(|e| CaError::InvalidParams(format!("time out of range: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_can_move_between_threads_and_the_trust_store_can_be_shared() {
        fn send<T: Send>() {}
        fn sync<T: Send + Sync>() {}
        send::<Ca>();
        sync::<TrustStore>();
        sync::<crate::IkeRsaSigner>();
    }

    #[test]
    fn serials_are_normalized() {
        assert_eq!(normalize_serial("4A:0b:FF").unwrap(), "4a0bff");
        assert_eq!(normalize_serial("0x00ff").unwrap(), "ff");
        assert_eq!(normalize_serial("abc").unwrap(), "0abc");
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial("").is_err());
    }

    #[test]
    fn random_serials_are_positive_and_full_length() {
        for _ in 0..100 {
            let s = random_serial().unwrap();
            assert!((0x40..0x80).contains(&s[0]));
            assert_eq!(serial_hex(&s).len(), 2 * SERIAL_LEN);
        }
    }

    #[test]
    fn dns_names_and_emails() {
        assert!(is_dns_name("vpn.example.com"));
        assert!(is_dns_name("*.example.com"));
        assert!(is_dns_name("gateway"));
        assert!(!is_dns_name("10.0.0.1"));
        assert!(!is_dns_name("bad_name.example"));
        assert!(!is_dns_name("-a.example"));
        assert!(!is_dns_name(""));
        assert!(is_email("alice@example.com"));
        assert!(!is_email("alice"));
        assert!(!is_email("a b@example.com"));
    }

    #[test]
    fn crl_numbers_are_minimal() {
        assert_eq!(minimal_be(1), vec![1]);
        assert_eq!(minimal_be(256), vec![1, 0]);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(check_text("x", "", 64).is_err());
        assert!(check_text("x", "a\nb", 64).is_err());
        assert!(check_text("x", &"a".repeat(65), 64).is_err());
        assert!(check_validity(0).is_err());
        assert!(check_crl_url("ftp://x").is_err());
        assert!(check_crl_url("http://vpn.example.com/ca.crl").is_ok());
    }
}
