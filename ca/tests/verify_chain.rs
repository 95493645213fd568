//! `TrustStore::verify_chain`: good certificates, expired and not yet valid ones, the wrong CA,
//! revoked, forged and garbage input, oversized input, paths through intermediates, and the
//! IKE key-usage policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ca::{
    ClientKind, ClientParams, IkeRsaSigner, KeyKind, MAX_CERT_SIZE, PublicKey, RevocationReason,
    ServerParams, TrustStore, VerifyError, inspect_cert, verify_ike_rsa,
};
use common::{have_openssl, new_ca, openssl, text, write};
use der::{Decode, Encode};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};

const DAY: Duration = Duration::from_secs(86_400);
const NO_INTERMEDIATES: &[&[u8]] = &[];

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn good_certificates_verify_and_report_their_names() {
    let (_tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let mut server_params = ServerParams::new("vpn.example.com");
    server_params.dns = vec!["gw.example.com".into()];
    server_params.ips = vec!["2001:db8::1".parse().unwrap()];
    let server = ca.issue_server(&server_params).unwrap();
    let mut client_params = ClientParams::new("alice-phone", ClientKind::User);
    client_params.emails = vec!["alice@example.com".into()];
    let client = ca.issue_client(&client_params).unwrap();
    let store = ca.trust_store(now()).unwrap();

    let peer = store
        .verify_chain(&server.cert_der, NO_INTERMEDIATES, now())
        .unwrap();
    assert_eq!(peer.subject_dn, "CN=vpn.example.com,O=Roadgate Test");
    assert_eq!(peer.issuer_dn, "CN=Roadgate Test CA,O=Roadgate Test");
    let cert = x509_cert::Certificate::from_der(&server.cert_der).unwrap();
    assert_eq!(
        peer.subject_der,
        cert.tbs_certificate().subject().to_der().unwrap()
    );
    assert_eq!(peer.common_name.as_deref(), Some("vpn.example.com"));
    assert_eq!(peer.san_dns, vec!["vpn.example.com", "gw.example.com"]);
    assert_eq!(peer.san_ips, vec!["2001:db8::1".parse::<IpAddr>().unwrap()]);
    assert_eq!(peer.serial, server.serial);
    assert_eq!(peer.not_after, server.not_after);
    assert_eq!(peer.not_before, server.not_before);
    assert_eq!(peer.cert_der, server.cert_der);

    // The reported key is the certificate's key: it checks an IKE signature by it.
    let signer = IkeRsaSigner::new(&server.key_der).unwrap();
    assert_eq!(peer.public_key, signer.public_key());
    assert!(matches!(peer.public_key, PublicKey::Rsa { ref e, .. } if e == &[1, 0, 1]));
    let hash = [7u8; 32];
    assert!(verify_ike_rsa(
        &peer.public_key,
        &hash,
        &signer.sign(&hash).unwrap()
    ));
    assert_eq!(
        PublicKey::from_spki_der(&peer.spki_der).unwrap(),
        peer.public_key
    );

    let peer = store
        .verify_chain(&client.cert_der, NO_INTERMEDIATES, now())
        .unwrap();
    assert_eq!(peer.san_emails, vec!["alice@example.com"]);
    assert!(peer.san_dns.is_empty());
    assert_eq!(peer.common_name.as_deref(), Some("alice-phone"));
}

#[test]
fn ecdsa_ca_and_certificates_verify() {
    let (_tmp, ca) = new_ca("Roadgate EC CA", KeyKind::EcdsaP256, None);
    let mut params = ClientParams::new("router-1", ClientKind::Device);
    params.key = KeyKind::EcdsaP256;
    let device = ca.issue_client(&params).unwrap();
    let store = ca.trust_store(now()).unwrap();
    let peer = store
        .verify_chain(&device.cert_der, NO_INTERMEDIATES, now())
        .unwrap();
    assert!(matches!(peer.public_key, PublicKey::EcP256 { .. }));
    // An RSA certificate from the EC CA too.
    let rsa = ca.issue_client(&ClientParams::new("laptop", ClientKind::Device));
    store
        .verify_chain(&rsa.unwrap().cert_der, NO_INTERMEDIATES, now())
        .unwrap();
}

#[test]
fn expired_and_not_yet_valid_are_refused() {
    let (_tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let mut params = ClientParams::new("bob", ClientKind::User);
    params.validity_days = 30;
    let bob = ca.issue_client(&params).unwrap();
    let store = ca.trust_store(now()).unwrap();
    store
        .verify_chain(&bob.cert_der, NO_INTERMEDIATES, now() + 29 * DAY)
        .unwrap();
    match store.verify_chain(&bob.cert_der, NO_INTERMEDIATES, now() + 31 * DAY) {
        Err(VerifyError::Expired { subject, not_after }) => {
            assert_eq!(subject, "CN=bob,O=Roadgate Test");
            assert_eq!(not_after, bob.not_after);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    // notBefore is backdated by an hour, not more.
    store
        .verify_chain(&bob.cert_der, NO_INTERMEDIATES, now() - ca::BACKDATE / 2)
        .unwrap();
    assert!(matches!(
        store.verify_chain(&bob.cert_der, NO_INTERMEDIATES, now() - 2 * ca::BACKDATE),
        Err(VerifyError::NotYetValid { .. })
    ));
    // The CA certificate itself expires after ten years.
    let mut long = ClientParams::new("long", ClientKind::User);
    long.validity_days = 36_000;
    let long = ca.issue_client(&long).unwrap();
    assert!(
        long.not_after <= now() + 3651 * DAY,
        "capped at the CA's notAfter"
    );
    assert!(matches!(
        store.verify_chain(&long.cert_der, NO_INTERMEDIATES, now() + 3652 * DAY),
        Err(VerifyError::Expired { .. })
    ));
}

#[test]
fn another_ca_is_unknown_and_an_impostor_with_the_same_name_is_a_bad_signature() {
    let (_a, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let (_b, other) = new_ca("Someone Else CA", KeyKind::Rsa2048, None);
    let (_c, impostor) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let store = ca.trust_store(now()).unwrap();

    let stranger = other
        .issue_client(&ClientParams::new("mallory", ClientKind::User))
        .unwrap();
    assert_eq!(
        store.verify_chain(&stranger.cert_der, NO_INTERMEDIATES, now()),
        Err(VerifyError::UnknownIssuer)
    );
    let forged = impostor
        .issue_client(&ClientParams::new("alice", ClientKind::User))
        .unwrap();
    assert_eq!(
        store.verify_chain(&forged.cert_der, NO_INTERMEDIATES, now()),
        Err(VerifyError::BadSignature)
    );
    // The impostor's CRL is refused too.
    let mut store = ca.trust_store(now()).unwrap();
    let crl = impostor.crl(now(), DAY).unwrap();
    assert_eq!(store.add_crl_der(&crl), Err(VerifyError::BadSignature));
    // An empty store trusts nothing.
    let alice = ca
        .issue_client(&ClientParams::new("alice", ClientKind::User))
        .unwrap();
    assert_eq!(
        TrustStore::new().verify_chain(&alice.cert_der, NO_INTERMEDIATES, now()),
        Err(VerifyError::UnknownIssuer)
    );
}

#[test]
fn revoked_certificates_are_refused_with_their_reason() {
    let (_tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let alice = ca
        .issue_client(&ClientParams::new("alice", ClientKind::User))
        .unwrap();
    let bob = ca
        .issue_client(&ClientParams::new("bob", ClientKind::User))
        .unwrap();
    let before = ca.trust_store(now()).unwrap();
    ca.revoke(&alice.serial, RevocationReason::KeyCompromise)
        .unwrap();
    let after = ca.trust_store(now()).unwrap();

    // The store made before the revocation holds the older CRL.
    before
        .verify_chain(&alice.cert_der, NO_INTERMEDIATES, now())
        .unwrap();
    assert_eq!(
        after.verify_chain(&alice.cert_der, NO_INTERMEDIATES, now()),
        Err(VerifyError::Revoked {
            serial: alice.serial.clone(),
            reason: Some(RevocationReason::KeyCompromise),
        })
    );
    after
        .verify_chain(&bob.cert_der, NO_INTERMEDIATES, now())
        .unwrap();

    // The same with a store built by hand from the CA certificate and a CRL file (PEM).
    let tmp = tempfile::tempdir().unwrap();
    let crl = ca.crl(now(), DAY).unwrap();
    let crl_file = write(tmp.path(), "ca.crl", common::crl_pem(&crl));
    let ca_file = write(tmp.path(), "ca.pem", ca.ca_cert_pem().unwrap());
    let mut store = TrustStore::new();
    assert_eq!(store.add_anchors_from_file(&ca_file).unwrap(), 1);
    store.add_crl_file(&crl_file).unwrap();
    assert_eq!((store.anchor_count(), store.crl_count()), (1, 1));
    assert!(matches!(
        store.verify_chain(&alice.cert_der, NO_INTERMEDIATES, now()),
        Err(VerifyError::Revoked { .. })
    ));
    // An older CRL does not replace a newer one.
    store.add_crl_der(&before_crl_of(&ca, now() - DAY)).unwrap();
    assert!(matches!(
        store.verify_chain(&alice.cert_der, NO_INTERMEDIATES, now()),
        Err(VerifyError::Revoked { .. })
    ));
}

/// A CRL of `ca` dated `at` (it lists what is revoked now, but is older by its thisUpdate).
fn before_crl_of(ca: &ca::Ca, at: SystemTime) -> Vec<u8> {
    ca.crl(at, DAY).unwrap()
}

#[test]
fn forged_certificates_are_refused() {
    let (_tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let alice = ca
        .issue_client(&ClientParams::new("alice", ClientKind::User))
        .unwrap();
    let store = ca.trust_store(now()).unwrap();

    let mut sig_flipped = alice.cert_der.clone();
    let last = sig_flipped.len() - 1;
    sig_flipped[last] ^= 0x01;
    assert_eq!(
        store.verify_chain(&sig_flipped, NO_INTERMEDIATES, now()),
        Err(VerifyError::BadSignature)
    );

    // Rename alice to alicf inside the signed part.
    let mut renamed = alice.cert_der.clone();
    let at = renamed
        .windows(5)
        .position(|w| w == b"alice")
        .expect("the CN is in the DER");
    renamed[at + 4] = b'f';
    assert!(inspect_cert(&renamed).is_ok());
    assert_eq!(
        store.verify_chain(&renamed, NO_INTERMEDIATES, now()),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn every_truncation_and_byte_change_is_refused_without_panic() {
    let (_tmp, ca) = new_ca("Roadgate Test CA", KeyKind::EcdsaP256, None);
    let mut params = ClientParams::new("alice", ClientKind::User);
    params.key = KeyKind::EcdsaP256;
    let alice = ca.issue_client(&params).unwrap();
    let store = ca.trust_store(now()).unwrap();
    let der = &alice.cert_der;
    for len in 0..der.len() {
        assert!(
            store
                .verify_chain(&der[..len], NO_INTERMEDIATES, now())
                .is_err()
        );
    }
    for i in 0..der.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut changed = der.clone();
            changed[i] ^= flip;
            let result = store.verify_chain(&changed, NO_INTERMEDIATES, now());
            assert!(result.is_err(), "byte {i} ^ {flip:#x} still verified");
        }
    }
    let mut longer = der.clone();
    longer.push(0);
    assert!(matches!(
        store.verify_chain(&longer, NO_INTERMEDIATES, now()),
        Err(VerifyError::Malformed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let store = TrustStore::new();
        prop_assert!(store.verify_chain(&bytes, NO_INTERMEDIATES, now()).is_err());
        prop_assert!(inspect_cert(&bytes).is_err());
        let mut store = TrustStore::new();
        prop_assert!(store.add_crl_der(&bytes).is_err());
        prop_assert!(store.add_anchor_der(&bytes).is_err());
    }

    #[test]
    fn random_bytes_behind_a_der_sequence_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
        bytes.extend_from_slice(&body);
        prop_assert!(inspect_cert(&bytes).is_err());
        let store = TrustStore::new();
        prop_assert!(store.verify_chain(&bytes, &[&bytes[..]], now()).is_err());
    }
}

#[test]
fn oversized_input_is_refused() {
    let (_tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let alice = ca
        .issue_client(&ClientParams::new("alice", ClientKind::User))
        .unwrap();
    let store = ca.trust_store(now()).unwrap();
    let huge = vec![0x30u8; MAX_CERT_SIZE + 1];
    assert_eq!(
        store.verify_chain(&huge, NO_INTERMEDIATES, now()),
        Err(VerifyError::TooLarge)
    );
    assert_eq!(
        store.verify_chain(&alice.cert_der, &[&huge[..]], now()),
        Err(VerifyError::TooLarge)
    );
    let many: Vec<&[u8]> = vec![&alice.cert_der[..]; ca::MAX_PRESENTED + 1];
    assert_eq!(
        store.verify_chain(&alice.cert_der, &many, now()),
        Err(VerifyError::TooLarge)
    );
    // A certificate with a 65 KiB extension, well-formed otherwise.
    let mut params = CertificateParams::new(vec!["big.example.com".into()]).unwrap();
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 99999, 1],
        der::asn1::OctetString::new(vec![0u8; 65 * 1024])
            .unwrap()
            .to_der()
            .unwrap(),
    )];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let big = params.self_signed(&key).unwrap();
    assert_eq!(inspect_cert(big.der()), Err(VerifyError::TooLarge));
}

/// A CA made with rcgen directly, for paths this crate's `Ca` does not make.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

impl TestCa {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn ca_params(cn: &str, is_ca: IsCa) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = is_ca;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    params
}

fn test_root(cn: &str, path_len: Option<u8>) -> TestCa {
    let constraint = path_len.map_or(
        BasicConstraints::Unconstrained,
        BasicConstraints::Constrained,
    );
    let params = ca_params(cn, IsCa::Ca(constraint));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = params.self_signed(&key).unwrap().der().to_vec();
    TestCa { params, key, der }
}

fn test_sub(parent: &TestCa, cn: &str, is_ca: IsCa) -> TestCa {
    let params = ca_params(cn, is_ca);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = params
        .signed_by(&key, &parent.issuer())
        .unwrap()
        .der()
        .to_vec();
    TestCa { params, key, der }
}

fn test_leaf(
    parent: &TestCa,
    ekus: Vec<ExtendedKeyUsagePurpose>,
    kus: Vec<KeyUsagePurpose>,
) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["peer.example.com".into()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "peer");
    params.extended_key_usages = ekus;
    params.key_usages = kus;
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&[0x42, 0x01]));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    params
        .signed_by(&key, &parent.issuer())
        .unwrap()
        .der()
        .to_vec()
}

fn store_of(root: &TestCa) -> TrustStore {
    let mut store = TrustStore::new();
    store.add_anchor_der(&root.der).unwrap();
    store
}

#[test]
fn paths_through_intermediates() {
    let root = test_root("Root", None);
    let sub = test_sub(
        &root,
        "Issuing CA",
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let leaf = test_leaf(&sub, vec![], vec![]);
    let store = store_of(&root);
    let unrelated = test_root("Unrelated", None);

    store.verify_chain(&leaf, &[&sub.der], now()).unwrap();
    // Junk and unrelated certificates around it do not matter, nor their order.
    store
        .verify_chain(&leaf, &[&unrelated.der[..], &root.der, &sub.der], now())
        .unwrap();
    assert_eq!(
        store.verify_chain(&leaf, NO_INTERMEDIATES, now()),
        Err(VerifyError::UnknownIssuer)
    );

    // A CRL of the intermediate revokes the leaf.
    let crl = CertificateRevocationListParams {
        this_update: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
        next_update: time::OffsetDateTime::now_utc() + time::Duration::days(1),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(&[0x42, 0x01]),
            revocation_time: time::OffsetDateTime::now_utc(),
            reason_code: Some(rcgen::RevocationReason::CessationOfOperation),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&sub.issuer())
    .unwrap();
    let mut revoking = store_of(&root);
    revoking.add_crl_der(crl.der()).unwrap();
    assert_eq!(
        revoking.verify_chain(&leaf, &[&sub.der], now()),
        Err(VerifyError::Revoked {
            serial: "4201".into(),
            reason: Some(RevocationReason::CessationOfOperation),
        })
    );

    // A root that allows no intermediate.
    let strict_root = test_root("Strict Root", Some(0));
    let strict_sub = test_sub(
        &strict_root,
        "Sub",
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let strict_leaf = test_leaf(&strict_sub, vec![], vec![]);
    assert_eq!(
        store_of(&strict_root).verify_chain(&strict_leaf, &[&strict_sub.der], now()),
        Err(VerifyError::PathTooLong)
    );

    // An intermediate that is not a CA.
    let not_ca = test_sub(&root, "Not a CA", IsCa::ExplicitNoCa);
    let below = test_leaf(&not_ca, vec![], vec![]);
    assert!(matches!(
        store.verify_chain(&below, &[&not_ca.der], now()),
        Err(VerifyError::WrongKeyUsage(_))
    ));

    // Four intermediates are accepted, five are too many.
    let mut chain = vec![test_sub(
        &root,
        "L1",
        IsCa::Ca(BasicConstraints::Unconstrained),
    )];
    for level in 2..=5 {
        let next = test_sub(
            chain.last().unwrap(),
            &format!("L{level}"),
            IsCa::Ca(BasicConstraints::Unconstrained),
        );
        chain.push(next);
    }
    let ders: Vec<&[u8]> = chain.iter().map(|c| &c.der[..]).collect();
    let at_four = test_leaf(&chain[3], vec![], vec![]);
    store.verify_chain(&at_four, &ders[..4], now()).unwrap();
    let at_five = test_leaf(&chain[4], vec![], vec![]);
    assert_eq!(
        store.verify_chain(&at_five, &ders, now()),
        Err(VerifyError::PathTooLong)
    );
}

#[test]
fn the_ike_key_usage_policy() {
    use ExtendedKeyUsagePurpose as E;
    use KeyUsagePurpose as K;
    let root = test_root("Root", None);
    let store = store_of(&root);
    let check =
        |ekus, kus| store.verify_chain(&test_leaf(&root, ekus, kus), NO_INTERMEDIATES, now());

    assert!(check(vec![], vec![]).is_ok(), "no EKU, no KU");
    assert!(check(vec![E::ClientAuth], vec![K::DigitalSignature]).is_ok());
    assert!(check(vec![E::ServerAuth], vec![K::DigitalSignature]).is_ok());
    assert!(check(vec![E::Any], vec![]).is_ok());
    assert!(check(vec![E::Other(vec![1, 3, 6, 1, 5, 5, 8, 2, 2])], vec![]).is_ok());
    assert!(check(vec![E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 17])], vec![]).is_ok());
    assert!(check(vec![E::CodeSigning, E::ClientAuth], vec![]).is_ok());
    assert!(matches!(
        check(vec![E::CodeSigning], vec![]),
        Err(VerifyError::WrongKeyUsage(_))
    ));
    assert!(matches!(
        check(vec![E::EmailProtection, E::TimeStamping], vec![]),
        Err(VerifyError::WrongKeyUsage(_))
    ));
    assert!(matches!(
        check(vec![], vec![K::KeyEncipherment]),
        Err(VerifyError::WrongKeyUsage(_))
    ));

    // A CA certificate presented as the peer's own.
    let sub = test_sub(&root, "Sub", IsCa::Ca(BasicConstraints::Unconstrained));
    assert!(matches!(
        store.verify_chain(&sub.der, NO_INTERMEDIATES, now()),
        Err(VerifyError::WrongKeyUsage(_))
    ));
    // An anchor must be a CA.
    let leaf = test_leaf(&root, vec![], vec![]);
    assert!(matches!(
        TrustStore::new().add_anchor_der(&leaf),
        Err(VerifyError::WrongKeyUsage(_))
    ));
}

#[test]
fn chains_made_by_openssl_with_sha1_rsa_and_p384() {
    if !have_openssl("chains_made_by_openssl_with_sha1_rsa_and_p384") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "ee.ext",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:peer.example.org\n",
    );
    let cases: [(&str, &[&str], &str); 2] = [
        ("rsa", &["-newkey", "rsa:2048"], "-sha1"),
        (
            "p384",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "-sha384",
        ),
    ];
    for (name, newkey, digest) in cases {
        let ca_key = format!("{name}-ca.key");
        let ca_pem = format!("{name}-ca.pem");
        let mut args = vec!["req", "-x509", "-nodes", digest, "-days", "30"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&[
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-subj",
            "/O=OpenSSL Test/CN=Old Root",
        ]);
        let out = openssl(dir, &args);
        assert!(out.status.success(), "{}", text(&out));

        let ee_key = format!("{name}-ee.key");
        let ee_csr = format!("{name}-ee.csr");
        let ee_pem = format!("{name}-ee.pem");
        let mut args = vec!["req", "-new", "-nodes"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&["-keyout", &ee_key, "-out", &ee_csr, "-subj", "/CN=peer"]);
        let out = openssl(dir, &args);
        assert!(out.status.success(), "{}", text(&out));
        let out = openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &ee_csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                digest,
                "-days",
                "10",
                "-extfile",
                "ee.ext",
                "-out",
                &ee_pem,
            ],
        );
        assert!(out.status.success(), "{}", text(&out));

        let mut store = TrustStore::new();
        assert_eq!(store.add_anchors_from_file(&dir.join(&ca_pem)).unwrap(), 1);
        let ee = ca::load_certs(&dir.join(&ee_pem)).unwrap().remove(0);
        let peer = store.verify_chain(&ee, NO_INTERMEDIATES, now()).unwrap();
        assert_eq!(peer.subject_dn, "CN=peer", "{name}");
        assert_eq!(peer.san_dns, vec!["peer.example.org"], "{name}");
        assert_eq!(peer.issuer_dn, "CN=Old Root,O=OpenSSL Test", "{name}");
        if name == "p384" {
            assert!(matches!(peer.public_key, PublicKey::EcP384 { .. }));
        }

        // The key file openssl wrote (PKCS#8) loads, and for RSA signs like pkeyutl.
        let key = ca::load_private_key_pem(&dir.join(&ee_key)).unwrap();
        if name == "rsa" {
            let signer = IkeRsaSigner::new(&key).unwrap();
            assert_eq!(signer.public_key(), peer.public_key);
        }

        let mut forged = ee.clone();
        let last = forged.len() - 1;
        forged[last] ^= 0x10;
        assert!(
            store
                .verify_chain(&forged, NO_INTERMEDIATES, now())
                .is_err()
        );
    }
}
