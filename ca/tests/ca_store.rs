//! The CA's state folder: reopening, unique serials, file modes, refusals, CRL numbers and
//! the cached CRL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use ca::{
    Ca, CaError, CertKind, ClientKind, ClientParams, InitParams, KeyKind, RevocationReason,
    ServerParams,
};
use common::new_ca;
use der::Decode;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::CrlNumber;

const DAY: Duration = Duration::from_secs(86_400);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn crl_number(der: &[u8]) -> Vec<u8> {
    let crl: CertificateList = CertificateList::from_der(der).unwrap();
    let ext = crl
        .tbs_cert_list
        .crl_extensions
        .unwrap()
        .into_iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_CRL_NUMBER)
        .unwrap();
    CrlNumber::from_der(ext.extn_value.as_bytes())
        .unwrap()
        .0
        .as_bytes()
        .to_vec()
}

#[test]
fn files_are_private() {
    let (tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let state = tmp.path().join("state");
    assert_eq!(mode(&state.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&state.join("ca.db")), 0o600);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(ca.key_path(), state.join("ca-key.pem"));
    assert_eq!(ca.db_path(), state.join("ca.db"));
    // Only the two files (no temporary file left behind).
    let mut names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["ca-key.pem", "ca.db"]);
    let key = std::fs::read_to_string(state.join("ca-key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    // The Debug output shows no key.
    let shown = format!("{ca:?}");
    assert!(!shown.contains("PRIVATE"), "{shown}");

    // A key file others can read is refused on open.
    std::fs::set_permissions(
        state.join("ca-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(matches!(Ca::open(&state), Err(CaError::KeyFileMode(_))));
}

#[test]
fn reopening_sees_everything_and_keeps_issuing_into_the_same_chain() {
    let (tmp, ca) = new_ca(
        "Roadgate Test CA",
        KeyKind::Rsa2048,
        Some("http://x.example/c.crl"),
    );
    let state = tmp.path().join("state");
    let server = ca
        .issue_server(&ServerParams::new("vpn.example.com"))
        .unwrap();
    let mut params = ClientParams::new("alice", ClientKind::User);
    params.user = Some("alice".into());
    let alice = ca.issue_client(&params).unwrap();
    let device = ca
        .issue_client(&ClientParams::new("pc-7", ClientKind::Device))
        .unwrap();
    ca.revoke(&device.serial, RevocationReason::CessationOfOperation)
        .unwrap();
    let ca_der = ca.ca_cert_der().to_vec();
    drop(ca);

    assert!(Ca::exists(&state));
    let ca = Ca::open(&state).unwrap();
    assert_eq!(ca.ca_cert_der(), ca_der.as_slice());
    assert_eq!(ca.crl_url(), Some("http://x.example/c.crl"));
    assert_eq!(ca.key_kind(), KeyKind::Rsa2048);
    let list = ca.list().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0].kind, CertKind::Ca);
    assert_eq!(list[0].cert_der, ca_der);

    let found = ca.find(&alice.serial).unwrap().unwrap();
    assert_eq!(found.kind, CertKind::User);
    assert_eq!(found.user.as_deref(), Some("alice"));
    assert_eq!(found.common_name, "alice");
    assert_eq!(found.subject, "CN=alice,O=Roadgate Test");
    assert_eq!(found.cert_der, alice.cert_der);
    assert_eq!(found.not_after, alice.not_after);
    assert!(found.is_valid_at(SystemTime::now()));
    assert!(found.revoked.is_none());
    // Serials are found in any case and with colons.
    let colons: Vec<String> = server
        .serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert_eq!(
        ca.find(&colons.join(":")).unwrap().unwrap().kind,
        CertKind::Server
    );
    let revoked = ca.find(&device.serial).unwrap().unwrap();
    assert_eq!(
        revoked.revoked.map(|r| r.reason),
        Some(RevocationReason::CessationOfOperation)
    );
    assert!(!revoked.is_valid_at(SystemTime::now()));
    assert!(ca.find("0123abcd").unwrap().is_none());

    // Certificates issued after reopening chain to the same CA, and the revocation made
    // before reopening is in the trust store's CRL.
    let bob = ca
        .issue_client(&ClientParams::new("bob", ClientKind::User))
        .unwrap();
    let store = ca.trust_store(SystemTime::now()).unwrap();
    let none: &[&[u8]] = &[];
    store
        .verify_chain(&bob.cert_der, none, SystemTime::now())
        .unwrap();
    store
        .verify_chain(&alice.cert_der, none, SystemTime::now())
        .unwrap();
    assert!(matches!(
        store.verify_chain(&device.cert_der, none, SystemTime::now()),
        Err(ca::VerifyError::Revoked { .. })
    ));
}

#[test]
fn serials_are_unique_and_large() {
    let (_tmp, ca) = new_ca("Roadgate Test CA", KeyKind::EcdsaP256, None);
    let mut serials = HashSet::new();
    serials.insert(ca.list().unwrap()[0].serial.clone());
    for i in 0..60 {
        let mut params = ClientParams::new(format!("device-{i}"), ClientKind::Device);
        params.key = KeyKind::EcdsaP256;
        let issued = ca.issue_client(&params).unwrap();
        // At least 64 random bits; positive (no high bit) and no leading zero byte.
        assert_eq!(issued.serial.len(), 32);
        let first = u8::from_str_radix(&issued.serial[..2], 16).unwrap();
        assert!((0x40..0x80).contains(&first), "{}", issued.serial);
        assert!(serials.insert(issued.serial.clone()), "repeated serial");
        let peer = ca::inspect_cert(&issued.cert_der).unwrap();
        assert_eq!(peer.serial, issued.serial);
    }
    assert_eq!(ca.list().unwrap().len(), 61);
}

#[test]
fn refusals() {
    let (tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let state = tmp.path().join("state");
    assert!(matches!(
        Ca::init(&state, &InitParams::new("Again")),
        Err(CaError::AlreadyExists(_))
    ));
    let empty = tmp.path().join("empty");
    assert!(!Ca::exists(&empty));
    assert!(matches!(Ca::open(&empty), Err(CaError::NotFound(_))));

    assert!(matches!(
        ca.revoke("7f00112233", RevocationReason::Unspecified),
        Err(CaError::UnknownSerial(_))
    ));
    assert!(matches!(
        ca.revoke("not hex", RevocationReason::Unspecified),
        Err(CaError::InvalidParams(_))
    ));
    let alice = ca
        .issue_client(&ClientParams::new("alice", ClientKind::User))
        .unwrap();
    assert!(matches!(
        ca.revoke(&alice.serial, RevocationReason::CertificateHold),
        Err(CaError::InvalidParams(_))
    ));
    let record = ca
        .revoke(&alice.serial, RevocationReason::AffiliationChanged)
        .unwrap();
    assert!(record.revoked.is_some());
    assert!(matches!(
        ca.revoke(&alice.serial, RevocationReason::KeyCompromise),
        Err(CaError::AlreadyRevoked(_))
    ));
    let ca_serial = ca.list().unwrap()[0].serial.clone();
    assert!(matches!(
        ca.revoke(&ca_serial, RevocationReason::Superseded),
        Err(CaError::RevokeCa(_))
    ));

    let mut bad = ClientParams::new("", ClientKind::User);
    assert!(matches!(
        ca.issue_client(&bad),
        Err(CaError::InvalidParams(_))
    ));
    bad.common_name = "ok".into();
    bad.emails = vec!["nobody".into()];
    assert!(matches!(
        ca.issue_client(&bad),
        Err(CaError::InvalidParams(_))
    ));
    let mut bad = ServerParams::new("vpn.example.com");
    bad.dns = vec!["under_score.example".into()];
    assert!(matches!(
        ca.issue_server(&bad),
        Err(CaError::InvalidParams(_))
    ));
    let mut bad = ServerParams::new("vpn.example.com");
    bad.validity_days = 0;
    assert!(matches!(
        ca.issue_server(&bad),
        Err(CaError::InvalidParams(_))
    ));
    let mut bad = InitParams::new("CA");
    bad.crl_url = Some("file:///etc/passwd".into());
    assert!(matches!(
        Ca::init(&tmp.path().join("other"), &bad),
        Err(CaError::InvalidParams(_))
    ));
    assert!(!Ca::exists(&tmp.path().join("other")));
}

#[test]
fn crl_numbers_grow_and_the_served_crl_is_cached_until_a_revocation() {
    let (tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let now = SystemTime::now();
    let first = ca.crl(now, DAY).unwrap();
    let second = ca.crl(now, DAY).unwrap();
    assert_eq!(crl_number(&first), vec![1]);
    assert_eq!(crl_number(&second), vec![2]);

    let served = ca.current_crl(now, DAY).unwrap();
    assert_eq!(served, second, "the last CRL is still fresh");
    assert_eq!(ca.current_crl(now + DAY / 4, DAY).unwrap(), second);
    // Past half of its life a new one is made.
    let later = ca.current_crl(now + DAY * 3 / 4, DAY).unwrap();
    assert_eq!(crl_number(&later), vec![3]);

    let alice = ca
        .issue_client(&ClientParams::new("alice", ClientKind::User))
        .unwrap();
    ca.revoke(&alice.serial, RevocationReason::KeyCompromise)
        .unwrap();
    let after = ca.current_crl(now + DAY * 3 / 4, DAY).unwrap();
    assert_eq!(crl_number(&after), vec![4]);
    let list: CertificateList = CertificateList::from_der(&after).unwrap();
    let revoked = list.tbs_cert_list.revoked_certificates.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        hex::encode(revoked[0].serial_number.as_bytes()),
        alice.serial
    );
    let next = list.tbs_cert_list.next_update.unwrap().to_system_time();
    let this = list.tbs_cert_list.this_update.to_system_time();
    assert_eq!(next.duration_since(this).unwrap(), DAY);

    // The number survives reopening.
    drop(ca);
    let ca = Ca::open(&tmp.path().join("state")).unwrap();
    assert_eq!(crl_number(&ca.crl(now + DAY, DAY).unwrap()), vec![5]);
    assert!(matches!(
        ca.crl(now, Duration::ZERO),
        Err(CaError::InvalidParams(_))
    ));
}
