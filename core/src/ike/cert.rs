//! Certificate authentication in Main Mode (RFC 2409 §5.1, RSA signatures): what the core needs
//! from a certificate authority, as a trait the shell implements (with the `ca` crate), so that
//! the core holds no key files, trust stores or clocks of its own.
//!
//! ```text
//!  HDR, SA, VID*                  -->
//!                                 <--  HDR, SA, VID*
//!  HDR, KE, Ni [, CR]             -->
//!                                 <--  HDR, KE, Nr, CR              (our trusted CAs)
//!  HDR*, IDii, [CERT,] SIG_I [,CR] -->
//!                                 <--  HDR*, IDir, CERT, SIG_R      (fragmented if asked)
//! ```
//! SKEYID = prf(Ni_b | Nr_b, g^xy); HASH_I and HASH_R are computed as with pre-shared keys and
//! then signed: PKCS#1 v1.5 type 1 over the raw hash, with no DigestInfo (RFC 2409 §5.1 leaves
//! the encoding to the signature scheme; every IKEv1 implementation signs the bare hash).

use std::fmt;
use std::net::IpAddr;

/// A peer's certificate after its chain was checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCert {
    /// The subject, as text (RFC 4514), for logs and the user mapping.
    pub subject: String,
    /// The subject Name as DER: what an ID_DER_ASN1_DN payload must equal.
    pub subject_der: Vec<u8>,
    /// subjectAltName entries.
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub emails: Vec<String>,
    /// The serial number, hex.
    pub serial: String,
    /// The VPN user this certificate was issued for, when the CA recorded one (the subject's
    /// CN otherwise).
    pub user: Option<String>,
    /// The end-entity certificate as received (for the signature check).
    pub der: Vec<u8>,
}

/// Why a peer's certificate was refused, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRefusal(pub String);

impl fmt::Display for CertRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server's side of certificate authentication.
pub trait CertAuthority: Send + Sync + fmt::Debug {
    /// Our certificate chain, end entity first (DER), sent in CERT payloads.
    fn our_chain(&self) -> &[Vec<u8>];
    /// Our end-entity certificate's subject Name (DER): our ID_DER_ASN1_DN.
    fn our_subject(&self) -> &[u8];
    /// The subject Names (DER) of the CAs whose clients we accept, one CERTREQ each.
    fn trusted_ca_subjects(&self) -> Vec<Vec<u8>>;
    /// Signs an IKEv1 hash (PKCS#1 v1.5 type 1, no DigestInfo) with our private key.
    fn sign(&self, hash: &[u8]) -> Result<Vec<u8>, String>;
    /// Checks a peer's chain (end entity first, then any intermediates it sent) against the
    /// trust anchors, validity at `unix_now` and the CRLs.
    fn verify_chain(&self, chain: &[&[u8]], unix_now: u64) -> Result<PeerCert, CertRefusal>;
    /// Checks an IKEv1 signature over `hash` by the key of `peer`'s certificate.
    fn verify_signature(&self, peer: &PeerCert, hash: &[u8], signature: &[u8]) -> bool;
}

/// The largest certificate (or chain) we read from one peer; larger ones are refused.
pub const MAX_PEER_CERT: usize = 16 * 1024;
/// The most CERT payloads we look at in one message.
pub const MAX_PEER_CERTS: usize = 4;

/// Does the identity the peer claimed match its certificate? ID_DER_ASN1_DN must be the
/// subject; FQDN and USER_FQDN must be a subjectAltName. An address identity is accepted
/// without a match: Windows and others send their local (often private) address, which no
/// certificate names; the certificate, not the address, says who the peer is.
pub fn id_matches(id_type: u8, id_data: &[u8], cert: &PeerCert) -> Result<(), String> {
    use crate::isakmp::id_type as t;
    match id_type {
        t::DER_ASN1_DN => {
            if id_data == cert.subject_der.as_slice() {
                Ok(())
            } else {
                Err(format!(
                    "its ID_DER_ASN1_DN is not the subject of its certificate ({})",
                    cert.subject
                ))
            }
        }
        t::FQDN => {
            let name = String::from_utf8_lossy(id_data);
            if cert.dns.iter().any(|d| d.eq_ignore_ascii_case(&name)) {
                Ok(())
            } else {
                Err(format!(
                    "its ID_FQDN {name:?} is not a DNS name of its certificate ({})",
                    cert.subject
                ))
            }
        }
        t::USER_FQDN => {
            let name = String::from_utf8_lossy(id_data);
            if cert.emails.iter().any(|d| d.eq_ignore_ascii_case(&name)) {
                Ok(())
            } else {
                Err(format!(
                    "its ID_USER_FQDN {name:?} is not an e-mail address of its certificate ({})",
                    cert.subject
                ))
            }
        }
        t::IPV4_ADDR | t::IPV6_ADDR => Ok(()),
        other => Err(format!(
            "ID type {other} cannot be matched with a certificate"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isakmp::id_type as t;

    fn cert() -> PeerCert {
        PeerCert {
            subject: "CN=alice".into(),
            subject_der: vec![0x30, 0x03, 1, 2, 3],
            dns: vec!["laptop.example.org".into()],
            emails: vec!["alice@example.org".into()],
            ..PeerCert::default()
        }
    }

    #[test]
    fn ids_are_matched_against_the_certificate() {
        let c = cert();
        assert!(id_matches(t::DER_ASN1_DN, &[0x30, 0x03, 1, 2, 3], &c).is_ok());
        assert!(id_matches(t::DER_ASN1_DN, &[0x30, 0x03, 1, 2, 4], &c).is_err());
        assert!(id_matches(t::FQDN, b"LAPTOP.example.org", &c).is_ok());
        assert!(id_matches(t::FQDN, b"other.example.org", &c).is_err());
        assert!(id_matches(t::USER_FQDN, b"alice@example.org", &c).is_ok());
        assert!(id_matches(t::USER_FQDN, b"bob@example.org", &c).is_err());
        assert!(id_matches(t::IPV4_ADDR, &[192, 168, 1, 2], &c).is_ok());
        assert!(id_matches(t::KEY_ID, b"x", &c).is_err());
    }
}
