//! Roadgate's built-in certificate authority, and the certificate checks of IKE.
//!
//! * [`Ca`]: a CA kept in a state folder (`ca.db`, SQLite, and `ca-key.pem`, both 0600) that
//!   issues the VPN server's certificate ([`Ca::issue_server`]) and client certificates for
//!   users and devices ([`Ca::issue_client`]), revokes them and signs CRLs ([`Ca::crl`],
//!   [`Ca::current_crl`]).
//! * [`export_p12`]: PKCS#12 files of a certificate, its key and the CA certificate, in the
//!   legacy 3DES/SHA-1 scheme Apple and old Windows need or in AES-256/SHA-256;
//!   [`one_time_password`] for their passwords.
//! * [`TrustStore::verify_chain`]: checks an IKE peer's certificate against trusted anchors
//!   and CRLs, with the IKE key-usage policy, and reports its names and key ([`PeerCert`]).
//! * [`sign_ike_rsa`] / [`verify_ike_rsa`]: the IKEv1 RSA signatures of RFC 2409 §5.1.
//!
//! The crate does no network IO and starts no threads; its only IO is its own files. See
//! `README.md` beside this crate for the formats and the reasons behind the extension choices.

mod authority;
mod error;
mod export;
mod ike;
mod keys;
mod reason;
mod sig;
mod store;
mod verify;

pub use authority::{
    BACKDATE, Ca, CertKind, CertRecord, ClientKind, ClientParams, InitParams, Issued, Revocation,
    ServerParams,
};
pub use error::CaError;
pub use export::{P12_ITERATIONS, P12Format, export_p12, one_time_password};
pub use ike::{IkeRsaSigner, sign_ike_rsa, verify_ike_rsa};
pub use keys::{
    KeyKind, PrivateKeyDer, cert_to_pem, certs_from_pem, load_certs, load_private_key_pem,
    parse_private_key_pem,
};
pub use reason::RevocationReason;
pub use sig::PublicKey;
pub use verify::{
    MAX_CERT_SIZE, MAX_CRL_SIZE, MAX_INTERMEDIATES_IN_PATH, MAX_PRESENTED, OID_IKE_INTERMEDIATE,
    OID_KP_IPSEC_IKE, PeerCert, TrustStore, VerifyError, inspect_cert,
};

/// `t` as a UTC date and time for people, e.g. "2036-12-06 23:01 UTC" (command output,
/// certificate validity).
pub fn utc_date(t: std::time::SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute()
    )
}

#[cfg(test)]
mod date_tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_for_people() {
        assert_eq!(super::utc_date(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        // 2036-12-06 23:01:30 UTC
        let t = UNIX_EPOCH + Duration::from_secs(2_112_217_290);
        assert_eq!(super::utc_date(t), "2036-12-06 23:01 UTC");
    }
}
