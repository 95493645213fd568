//! Verifying the certificate an IKE peer presents: a path to a trusted anchor, signatures,
//! validity, key usage for IKE, and revocation by CRLs.
//!
//! The IKE extended-key-usage policy differs from TLS's: an end-entity certificate with no
//! extendedKeyUsage is accepted, and one that has it must list serverAuth, clientAuth,
//! iKEIntermediate (1.3.6.1.5.5.8.2.2), id-kp-ipsecIKE (1.3.6.1.5.5.7.3.17, RFC 4945 §5.1.3.12)
//! or anyExtendedKeyUsage. A keyUsage, when present, must allow digitalSignature.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use const_oid::db::{rfc4519, rfc5280, rfc5912};
use der::asn1::{
    BmpString, Ia5StringRef, ObjectIdentifier, PrintableStringRef, TeletexStringRef, Utf8StringRef,
};
use der::{Decode, Encode, Header, Reader, SliceReader};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::CrlReason;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::name::Name;

use crate::keys::{CERT_LABEL, read_small_file};
use crate::sig::{PublicKey, SigError, verify_signed};
use crate::{CaError, RevocationReason};

/// The largest certificate accepted (end entity or intermediate).
pub const MAX_CERT_SIZE: usize = 64 * 1024;
/// The largest CRL accepted.
pub const MAX_CRL_SIZE: usize = 16 * 1024 * 1024;
/// The most intermediate CAs between an end-entity certificate and its anchor.
pub const MAX_INTERMEDIATES_IN_PATH: usize = 4;
/// The most intermediate certificates a peer may present.
pub const MAX_PRESENTED: usize = 16;

/// iKEIntermediate (1.3.6.1.5.5.8.2.2): the EKU Windows looks for on IKE certificates.
pub const OID_IKE_INTERMEDIATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.8.2.2");
/// id-kp-ipsecIKE (1.3.6.1.5.5.7.3.17, RFC 4945).
pub const OID_KP_IPSEC_IKE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.17");

/// Extensions this module understands well enough to accept them when marked critical.
const KNOWN_CRITICAL: [ObjectIdentifier; 5] = [
    rfc5280::ID_CE_BASIC_CONSTRAINTS,
    rfc5280::ID_CE_KEY_USAGE,
    rfc5280::ID_CE_EXT_KEY_USAGE,
    rfc5280::ID_CE_SUBJECT_ALT_NAME,
    // Policies are not enforced (as if the initial policy set were anyPolicy).
    rfc5280::ID_CE_CERTIFICATE_POLICIES,
];

/// Why a peer certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No trusted anchor (directly or through the presented intermediates) issued it.
    #[error("the certificate was not issued by a trusted CA")]
    UnknownIssuer,
    /// A signature in the path (or on a CRL of a trusted issuer) is wrong.
    #[error("bad signature")]
    BadSignature,
    /// A certificate of the path is past its notAfter.
    #[error("certificate {subject} expired")]
    Expired {
        /// The expired certificate's subject (RFC 4514).
        subject: String,
        /// Its notAfter.
        not_after: SystemTime,
    },
    /// A certificate of the path is before its notBefore.
    #[error("certificate {subject} is not valid yet")]
    NotYetValid {
        /// The certificate's subject (RFC 4514).
        subject: String,
        /// Its notBefore.
        not_before: SystemTime,
    },
    /// A CRL of the issuer lists the certificate.
    #[error("certificate {serial} is revoked ({})", reason.map_or("no reason given", |r| r.as_str()))]
    Revoked {
        /// The revoked certificate's serial, lowercase hex.
        serial: String,
        /// The CRL entry's reason code, if it has one.
        reason: Option<RevocationReason>,
    },
    /// The key usage, extended key usage or basic constraints do not allow this use.
    #[error("wrong key usage: {0}")]
    WrongKeyUsage(String),
    /// The path would need more intermediate CAs than allowed.
    #[error("the certification path is too long")]
    PathTooLong,
    /// A signature or key algorithm this crate does not check.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The bytes are not a well-formed certificate or CRL.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The input is larger than accepted ([`MAX_CERT_SIZE`], [`MAX_CRL_SIZE`],
    /// [`MAX_PRESENTED`]).
    #[error("input too large")]
    TooLarge,
}

impl VerifyError {
    fn malformed(e: impl std::fmt::Display) -> Self {
        Self::Malformed(e.to_string())
    }

    fn from_sig(e: SigError) -> Self {
        match e {
            SigError::Bad => Self::BadSignature,
            SigError::Unsupported(what) => Self::UnsupportedAlgorithm(what),
        }
    }
}

/// What a certificate says about its subject (from [`TrustStore::verify_chain`] after all
/// checks passed, or from [`inspect_cert`] without any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject as an RFC 4514 string (`CN=alice,O=Example`).
    pub subject_dn: String,
    /// The subject Name exactly as encoded in the certificate (to compare with an IKE
    /// ID_DER_ASN1_DN payload).
    pub subject_der: Vec<u8>,
    /// The issuer as an RFC 4514 string.
    pub issuer_dn: String,
    /// The last (most specific) commonName of the subject, if it has one.
    pub common_name: Option<String>,
    /// subjectAltName dNSName entries.
    pub san_dns: Vec<String>,
    /// subjectAltName iPAddress entries.
    pub san_ips: Vec<IpAddr>,
    /// subjectAltName rfc822Name (e-mail) entries.
    pub san_emails: Vec<String>,
    /// The serial number, lowercase hex without leading zero bytes.
    pub serial: String,
    /// The subject's public key.
    pub public_key: PublicKey,
    /// The SubjectPublicKeyInfo in DER.
    pub spki_der: Vec<u8>,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The whole certificate.
    pub cert_der: Vec<u8>,
}

/// Parses a certificate and reports what it says, checking nothing but its form.
pub fn inspect_cert(der: &[u8]) -> Result<PeerCert, VerifyError> {
    Parsed::new(der)?.describe()
}

/// The lowercase hex of a serial number without leading zero bytes (`00` for zero).
pub(crate) fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let trimmed = &bytes[start..];
    if trimmed.is_empty() {
        "00".into()
    } else {
        hex::encode(trimmed)
    }
}

/// A decoded certificate with the raw bytes its checks need.
#[derive(Debug, Clone)]
struct Parsed {
    der: Vec<u8>,
    cert: Certificate,
    tbs_der: Vec<u8>,
    issuer_der: Vec<u8>,
    subject_der: Vec<u8>,
}

impl Parsed {
    fn new(der: &[u8]) -> Result<Self, VerifyError> {
        if der.len() > MAX_CERT_SIZE {
            return Err(VerifyError::TooLarge);
        }
        let cert = Certificate::from_der(der).map_err(VerifyError::malformed)?;
        let (tbs_der, issuer_der, subject_der) =
            raw_cert_parts(der).map_err(VerifyError::malformed)?;
        let tbs = cert.tbs_certificate();
        if tbs.signature() != cert.signature_algorithm() {
            return Err(VerifyError::Malformed(
                "the signature algorithms inside and outside the signed part differ".into(),
            ));
        }
        Ok(Self {
            der: der.to_vec(),
            cert,
            tbs_der,
            issuer_der,
            subject_der,
        })
    }

    fn subject_dn(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    fn serial(&self) -> String {
        serial_hex(self.cert.tbs_certificate().serial_number().as_bytes())
    }

    /// Whether `self` signed `child`: `child`'s signature checks with `self`'s key.
    fn signed(&self, child: &Self) -> Result<(), VerifyError> {
        let sig = child.cert.signature().as_bytes().ok_or_else(|| {
            VerifyError::Malformed("signature bit string is not whole bytes".into())
        })?;
        verify_signed(
            self.cert.tbs_certificate().subject_public_key_info(),
            child.cert.signature_algorithm(),
            &child.tbs_der,
            sig,
        )
        .map_err(VerifyError::from_sig)
    }

    fn ext<'a, T>(&'a self) -> Result<Option<T>, VerifyError>
    where
        T: Decode<'a, Error = der::Error> + const_oid::AssociatedOid,
    {
        self.cert
            .tbs_certificate()
            .get_extension::<T>()
            .map(|found| found.map(|(_, value)| value))
            .map_err(VerifyError::malformed)
    }

    fn basic_constraints(&self) -> Result<Option<BasicConstraints>, VerifyError> {
        self.ext::<BasicConstraints>()
    }

    fn key_usage(&self) -> Result<Option<KeyUsage>, VerifyError> {
        self.ext::<KeyUsage>()
    }

    /// Refuses a critical extension this module does not process.
    fn check_critical(&self) -> Result<(), VerifyError> {
        for ext in self
            .cert
            .tbs_certificate()
            .extensions()
            .into_iter()
            .flatten()
        {
            if ext.critical && !KNOWN_CRITICAL.contains(&ext.extn_id) {
                return Err(VerifyError::Malformed(format!(
                    "unsupported critical extension {}",
                    ext.extn_id
                )));
            }
        }
        Ok(())
    }

    /// The checks on a CA certificate (anchor or intermediate): it is a CA by its basic
    /// constraints (a v1 certificate without extensions counts as one when it is an anchor)
    /// and its key usage, if present, allows certificate signing.
    fn check_ca(&self, is_anchor: bool) -> Result<Option<u8>, VerifyError> {
        let path_len = match self.basic_constraints()? {
            Some(bc) if bc.ca => bc.path_len_constraint,
            Some(_) => {
                return Err(VerifyError::WrongKeyUsage(format!(
                    "{} is not a CA certificate",
                    self.subject_dn()
                )));
            }
            None if is_anchor && self.cert.tbs_certificate().extensions().is_none() => None,
            None => {
                return Err(VerifyError::WrongKeyUsage(format!(
                    "{} has no basicConstraints CA flag",
                    self.subject_dn()
                )));
            }
        };
        if let Some(ku) = self.key_usage()?
            && !ku.key_cert_sign()
        {
            return Err(VerifyError::WrongKeyUsage(format!(
                "{} may not sign certificates (keyUsage lacks keyCertSign)",
                self.subject_dn()
            )));
        }
        Ok(path_len)
    }

    /// The checks on the peer's own certificate for IKE signatures.
    fn check_end_entity(&self) -> Result<(), VerifyError> {
        self.check_critical()?;
        if let Some(bc) = self.basic_constraints()?
            && bc.ca
        {
            return Err(VerifyError::WrongKeyUsage(
                "the peer presented a CA certificate as its own".into(),
            ));
        }
        if let Some(ku) = self.key_usage()?
            && !ku.digital_signature()
        {
            return Err(VerifyError::WrongKeyUsage(
                "keyUsage lacks digitalSignature".into(),
            ));
        }
        if let Some(eku) = self.ext::<ExtendedKeyUsage>()? {
            let allowed = [
                rfc5912::ID_KP_SERVER_AUTH,
                rfc5912::ID_KP_CLIENT_AUTH,
                OID_IKE_INTERMEDIATE,
                OID_KP_IPSEC_IKE,
                rfc5280::ANY_EXTENDED_KEY_USAGE,
            ];
            if !eku.0.iter().any(|oid| allowed.contains(oid)) {
                return Err(VerifyError::WrongKeyUsage(
                    "extendedKeyUsage allows none of serverAuth, clientAuth, iKEIntermediate, \
                     ipsecIKE, anyExtendedKeyUsage"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    fn check_time(&self, now: SystemTime) -> Result<(), VerifyError> {
        let validity = self.cert.tbs_certificate().validity();
        let not_before = validity.not_before.to_system_time();
        let not_after = validity.not_after.to_system_time();
        if now < not_before {
            return Err(VerifyError::NotYetValid {
                subject: self.subject_dn(),
                not_before,
            });
        }
        if now > not_after {
            return Err(VerifyError::Expired {
                subject: self.subject_dn(),
                not_after,
            });
        }
        Ok(())
    }

    fn describe(&self) -> Result<PeerCert, VerifyError> {
        let tbs = self.cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        let mut out = PeerCert {
            subject_dn: self.subject_dn(),
            subject_der: self.subject_der.clone(),
            issuer_dn: tbs.issuer().to_string(),
            common_name: common_name(tbs.subject()),
            san_dns: Vec::new(),
            san_ips: Vec::new(),
            san_emails: Vec::new(),
            serial: self.serial(),
            public_key: PublicKey::from_spki(spki),
            spki_der: spki.to_der().map_err(VerifyError::malformed)?,
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
            cert_der: self.der.clone(),
        };
        if let Some(san) = self.ext::<SubjectAltName>()? {
            for name in san.0 {
                match name {
                    GeneralName::DnsName(dns) => out.san_dns.push(dns.to_string()),
                    GeneralName::Rfc822Name(mail) => out.san_emails.push(mail.to_string()),
                    GeneralName::IpAddress(ip) => {
                        let bytes = ip.as_bytes();
                        if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
                            out.san_ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
                            out.san_ips.push(IpAddr::from(v6));
                        } else {
                            return Err(VerifyError::Malformed(
                                "subjectAltName iPAddress is neither 4 nor 16 bytes".into(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

/// The most specific commonName of a Name as text, when it is in a string type read here.
fn common_name(name: &Name) -> Option<String> {
    let atv = name.iter().filter(|atv| atv.oid == rfc4519::CN).last()?;
    let value = &atv.value;
    if let Ok(s) = value.decode_as::<Utf8StringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = value.decode_as::<PrintableStringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = value.decode_as::<Ia5StringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = value.decode_as::<TeletexStringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    value.decode_as::<BmpString>().ok().map(|s| s.to_string())
}

/// The signed part (the first element) of a signed structure, and a reader over its contents.
fn signed_part(der: &[u8]) -> der::Result<(&[u8], SliceReader<'_>)> {
    let mut outer = SliceReader::new(der)?;
    Header::decode(&mut outer)?;
    let tbs = outer.tlv_bytes()?;
    let mut inner = SliceReader::new(tbs)?;
    Header::decode(&mut inner)?;
    Ok((tbs, inner))
}

/// The signed part, issuer and subject of a certificate as their exact bytes.
fn raw_cert_parts(der: &[u8]) -> der::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let (tbs, mut r) = signed_part(der)?;
    // version [0] EXPLICIT, optional
    if r.peek_byte() == Some(0xa0) {
        r.tlv_bytes()?;
    }
    r.tlv_bytes()?; // serialNumber
    r.tlv_bytes()?; // signature
    let issuer = r.tlv_bytes()?;
    r.tlv_bytes()?; // validity
    let subject = r.tlv_bytes()?;
    Ok((tbs.to_vec(), issuer.to_vec(), subject.to_vec()))
}

/// The signed part and issuer of a CRL as their exact bytes.
fn raw_crl_parts(der: &[u8]) -> der::Result<(Vec<u8>, Vec<u8>)> {
    let (tbs, mut r) = signed_part(der)?;
    // version INTEGER, optional
    if r.peek_byte() == Some(0x02) {
        r.tlv_bytes()?;
    }
    r.tlv_bytes()?; // signature
    let issuer = r.tlv_bytes()?;
    Ok((tbs.to_vec(), issuer.to_vec()))
}

/// A decoded CRL with its revoked serials.
#[derive(Debug, Clone)]
struct Crl {
    crl: CertificateList,
    tbs_der: Vec<u8>,
    issuer_der: Vec<u8>,
    this_update: SystemTime,
    /// Revoked serial (as encoded) -> reason code, if the entry has one.
    revoked: HashMap<Vec<u8>, Option<RevocationReason>>,
}

impl Crl {
    fn new(der: &[u8]) -> Result<Self, VerifyError> {
        if der.len() > MAX_CRL_SIZE {
            return Err(VerifyError::TooLarge);
        }
        let crl = CertificateList::from_der(der).map_err(VerifyError::malformed)?;
        let (tbs_der, issuer_der) = raw_crl_parts(der).map_err(VerifyError::malformed)?;
        if crl.tbs_cert_list.signature != crl.signature_algorithm {
            return Err(VerifyError::Malformed(
                "the CRL's signature algorithms inside and outside the signed part differ".into(),
            ));
        }
        let mut revoked = HashMap::new();
        for entry in crl.tbs_cert_list.revoked_certificates.iter().flatten() {
            let mut reason = None;
            for ext in entry.crl_entry_extensions.iter().flatten() {
                if ext.extn_id == rfc5280::ID_CE_CRL_REASONS {
                    let code = CrlReason::from_der(ext.extn_value.as_bytes())
                        .map_err(VerifyError::malformed)?;
                    reason = RevocationReason::from_code(code as u8);
                }
            }
            revoked.insert(entry.serial_number.as_bytes().to_vec(), reason);
        }
        Ok(Self {
            this_update: crl.tbs_cert_list.this_update.to_system_time(),
            crl,
            tbs_der,
            issuer_der,
            revoked,
        })
    }

    /// Whether `issuer` signed this CRL.
    fn signed_by(&self, issuer: &Parsed) -> Result<(), VerifyError> {
        let sig = self
            .crl
            .signature
            .as_bytes()
            .ok_or_else(|| VerifyError::Malformed("CRL signature is not whole bytes".into()))?;
        verify_signed(
            issuer.cert.tbs_certificate().subject_public_key_info(),
            &self.crl.signature_algorithm,
            &self.tbs_der,
            sig,
        )
        .map_err(VerifyError::from_sig)
    }
}

/// Trusted CA certificates and the CRLs to check revocation with.
///
/// Anchors are trusted by name and key; their own validity period is checked too. CRLs are
/// matched to a certificate's issuer by name and used only when the issuer's key verifies
/// them; a CRL past its nextUpdate is still used (a revoked certificate stays revoked), and
/// a certificate whose issuer has no CRL here is not refused for that.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<Parsed>,
    crls: Vec<Crl>,
}

impl TrustStore {
    /// An empty store: it trusts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts a CA certificate (DER). It must be a CA by its basic constraints (or a v1
    /// certificate without extensions) and, if it has a keyUsage, allow keyCertSign.
    pub fn add_anchor_der(&mut self, der: &[u8]) -> Result<(), VerifyError> {
        let anchor = Parsed::new(der)?;
        anchor.check_ca(true)?;
        if !self.anchors.iter().any(|a| a.der == anchor.der) {
            self.anchors.push(anchor);
        }
        Ok(())
    }

    /// Trusts every certificate of a file: PEM (each `CERTIFICATE` block) or one DER
    /// certificate. Returns how many were read.
    pub fn add_anchors_from_file(&mut self, path: &Path) -> Result<usize, CaError> {
        let certs = crate::keys::load_certs(path)?;
        if certs.is_empty() {
            return Err(CaError::Encoding(format!(
                "{} holds no {CERT_LABEL} block",
                path.display()
            )));
        }
        for der in &certs {
            self.add_anchor_der(der).map_err(|e| {
                CaError::Encoding(format!("{}: trust anchor refused: {e}", path.display()))
            })?;
        }
        Ok(certs.len())
    }

    /// Adds a CRL (DER). When its issuer is one of the anchors, its signature is checked
    /// now and a bad one is refused; otherwise it is checked when a path through its issuer
    /// is verified (and ignored if it does not verify). A CRL replaces an older one (by
    /// thisUpdate) of the same issuer name.
    pub fn add_crl_der(&mut self, der: &[u8]) -> Result<(), VerifyError> {
        let crl = Crl::new(der)?;
        let anchors: Vec<&Parsed> = self
            .anchors
            .iter()
            .filter(|a| a.subject_der == crl.issuer_der)
            .collect();
        if !anchors.is_empty() && !anchors.iter().any(|a| crl.signed_by(a).is_ok()) {
            return Err(VerifyError::BadSignature);
        }
        match self
            .crls
            .iter_mut()
            .find(|c| c.issuer_der == crl.issuer_der)
        {
            Some(old) if old.this_update <= crl.this_update => *old = crl,
            Some(_) => {}
            None => self.crls.push(crl),
        }
        Ok(())
    }

    /// Adds a CRL file: PEM (`X509 CRL`) or DER.
    pub fn add_crl_file(&mut self, path: &Path) -> Result<(), CaError> {
        let bytes = read_small_file(path)?;
        let der = match std::str::from_utf8(&bytes) {
            Ok(text) if text.contains("-----BEGIN") => {
                let start = text.find("-----BEGIN").unwrap_or(0);
                let (label, der) = der::pem::decode_vec(text[start..].trim_end().as_bytes())
                    .map_err(|e| CaError::Encoding(format!("{}: {e}", path.display())))?;
                if label != "X509 CRL" {
                    return Err(CaError::Encoding(format!(
                        "{}: expected an X509 CRL block, found {label}",
                        path.display()
                    )));
                }
                der
            }
            _ => bytes,
        };
        self.add_crl_der(&der)
            .map_err(|e| CaError::Encoding(format!("{}: CRL refused: {e}", path.display())))
    }

    /// How many anchors are trusted.
    pub fn anchor_count(&self) -> usize {
        self.anchors.len()
    }

    /// How many CRLs are held.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// The subject Names of the anchors as DER (for IKE CERTREQ payloads).
    pub fn anchor_subjects_der(&self) -> Vec<Vec<u8>> {
        self.anchors.iter().map(|a| a.subject_der.clone()).collect()
    }

    /// Verifies a peer's certificate for IKE signature authentication at `now`: a path from
    /// it through at most [`MAX_INTERMEDIATES_IN_PATH`] of the presented `intermediates` to an
    /// anchor, every signature, every validity period, the CA flags, key usages and path
    /// lengths, the IKE key-usage policy on the end entity, and the CRLs of every issuer.
    pub fn verify_chain<I: AsRef<[u8]>>(
        &self,
        end_entity_der: &[u8],
        intermediates: &[I],
        now: SystemTime,
    ) -> Result<PeerCert, VerifyError> {
        if end_entity_der.len() > MAX_CERT_SIZE
            || intermediates.len() > MAX_PRESENTED
            || intermediates
                .iter()
                .any(|i| i.as_ref().len() > MAX_CERT_SIZE)
        {
            return Err(VerifyError::TooLarge);
        }
        let ee = Parsed::new(end_entity_der)?;
        let presented = intermediates
            .iter()
            .map(|i| Parsed::new(i.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        ee.check_end_entity()?;
        let mut path = vec![&ee];
        let anchor = self.build(&mut path, &presented)?;
        for cert in path.iter().chain(std::iter::once(&anchor)) {
            cert.check_time(now)?;
        }
        for (i, cert) in path.iter().enumerate() {
            let issuer = path.get(i + 1).copied().unwrap_or(anchor);
            self.check_revocation(cert, issuer)?;
        }
        ee.describe()
    }

    /// Extends `path` (end entity first) until an anchor signed its last certificate, and
    /// returns that anchor. Tries the anchors first, then each presented CA that signed the
    /// last certificate, backtracking; reports the most telling failure.
    fn build<'a>(
        &'a self,
        path: &mut Vec<&'a Parsed>,
        presented: &'a [Parsed],
    ) -> Result<&'a Parsed, VerifyError> {
        let Some(&last) = path.last() else {
            return Err(VerifyError::UnknownIssuer);
        };
        let intermediates_below = path.len() - 1;
        let mut failure = None;
        for anchor in self
            .anchors
            .iter()
            .filter(|a| a.subject_der == last.issuer_der)
        {
            let found = anchor.signed(last).and_then(|()| {
                let path_len = anchor.check_ca(true)?;
                match path_len {
                    Some(max) if intermediates_below > usize::from(max) => {
                        Err(VerifyError::PathTooLong)
                    }
                    _ => Ok(()),
                }
            });
            match found {
                Ok(()) => return Ok(anchor),
                Err(e) => failure = Some(e),
            }
        }
        for ca in presented
            .iter()
            .filter(|c| c.subject_der == last.issuer_der)
        {
            if path.iter().any(|p| p.der == ca.der) {
                continue;
            }
            if intermediates_below >= MAX_INTERMEDIATES_IN_PATH {
                failure.get_or_insert(VerifyError::PathTooLong);
                continue;
            }
            let step = ca.signed(last).and_then(|()| {
                ca.check_critical()?;
                match ca.check_ca(false)? {
                    Some(max) if intermediates_below > usize::from(max) => {
                        Err(VerifyError::PathTooLong)
                    }
                    _ => Ok(()),
                }
            });
            if let Err(e) = step {
                failure = Some(e);
                continue;
            }
            path.push(ca);
            match self.build(path, presented) {
                Ok(anchor) => return Ok(anchor),
                Err(VerifyError::UnknownIssuer) => {}
                Err(e) => failure = Some(e),
            }
            path.pop();
        }
        Err(failure.unwrap_or(VerifyError::UnknownIssuer))
    }

    /// Refuses `cert` when a CRL that `issuer` signed lists it.
    fn check_revocation(&self, cert: &Parsed, issuer: &Parsed) -> Result<(), VerifyError> {
        let serial = cert.cert.tbs_certificate().serial_number().as_bytes();
        for crl in self
            .crls
            .iter()
            .filter(|c| c.issuer_der == issuer.subject_der)
        {
            if crl.signed_by(issuer).is_err() {
                continue;
            }
            if let Some(reason) = crl.revoked.get(serial) {
                return Err(VerifyError::Revoked {
                    serial: cert.serial(),
                    reason: *reason,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_leading_zeros() {
        assert_eq!(serial_hex(&[0, 0, 0x12, 0xab]), "12ab");
        assert_eq!(serial_hex(&[0x80]), "80");
        assert_eq!(serial_hex(&[0, 0]), "00");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x03\x02\x01\x01",
            b"\x30\x80\x00\x00",
        ] {
            assert!(matches!(
                inspect_cert(input),
                Err(VerifyError::Malformed(_))
            ));
            let store = TrustStore::new();
            assert!(
                store
                    .verify_chain(input, &[] as &[&[u8]], SystemTime::now())
                    .is_err()
            );
        }
        assert_eq!(
            inspect_cert(&vec![0u8; MAX_CERT_SIZE + 1]),
            Err(VerifyError::TooLarge)
        );
    }
}
