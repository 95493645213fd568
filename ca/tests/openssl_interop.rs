//! The CA's outputs checked by the real openssl command: certificate chains and CRLs
//! (`openssl verify -crl_check`), the extensions (`openssl x509 -text`, `openssl crl -text`),
//! PKCS#12 files in both formats, and IKEv1 RSA signatures against `openssl pkeyutl`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ca::{
    ClientKind, ClientParams, KeyKind, P12Format, RevocationReason, ServerParams, export_p12,
    parse_private_key_pem, sign_ike_rsa, verify_ike_rsa,
};
use common::{crl_pem, have_openssl, new_ca, openssl, text, write};

const CRL_URL: &str = "http://vpn.example.com/roadgate.crl";

fn server_params() -> ServerParams {
    let mut p = ServerParams::new("vpn.example.com");
    p.dns = vec!["gw.example.com".into()];
    p.ips = vec!["192.0.2.10".parse::<IpAddr>().unwrap()];
    p
}

fn client_params() -> ClientParams {
    let mut p = ClientParams::new("alice-laptop", ClientKind::User);
    p.user = Some("alice".into());
    p.emails = vec!["alice@example.com".into()];
    p
}

fn verify_with_crl(dir: &std::path::Path, crl_der: &[u8]) -> String {
    write(dir, "crl.pem", crl_pem(crl_der));
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "cert.pem",
        ],
    );
    text(&out)
}

#[test]
fn openssl_verifies_chain_and_sees_revocation() {
    if !have_openssl("openssl_verifies_chain_and_sees_revocation") {
        return;
    }
    for key in [KeyKind::Rsa2048, KeyKind::EcdsaP256] {
        let (tmp, ca) = new_ca("Roadgate Test CA", key, Some(CRL_URL));
        let dir = tmp.path();
        write(dir, "ca.pem", ca.ca_cert_pem().unwrap());
        let issued = ca.issue_client(&client_params()).unwrap();
        write(dir, "cert.pem", issued.cert_pem().unwrap());

        let now = SystemTime::now();
        let good = verify_with_crl(dir, &ca.crl(now, Duration::from_secs(3600)).unwrap());
        assert!(good.contains("cert.pem: OK"), "{key}: {good}");

        ca.revoke(&issued.serial, RevocationReason::KeyCompromise)
            .unwrap();
        let revoked = verify_with_crl(dir, &ca.crl(now, Duration::from_secs(3600)).unwrap());
        assert!(revoked.contains("certificate revoked"), "{key}: {revoked}");
        assert!(!revoked.contains("cert.pem: OK"), "{key}: {revoked}");
    }
}

/// iKEIntermediate in an EKU list: OpenSSL 3.0 prints the number, later versions may print
/// the name they give it ("IP security end entity").
fn shows_ike_intermediate(text: &str) -> bool {
    text.lines()
        .skip_while(|l| !l.contains("X509v3 Extended Key Usage"))
        .nth(1)
        .is_some_and(|eku| {
            eku.contains("1.3.6.1.5.5.8.2.2") || eku.contains("IP security end entity")
        })
}

#[test]
fn openssl_shows_the_extensions() {
    if !have_openssl("openssl_shows_the_extensions") {
        return;
    }
    let (tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, Some(CRL_URL));
    let dir = tmp.path();

    let server = ca.issue_server(&server_params()).unwrap();
    write(dir, "server.pem", server.cert_pem().unwrap());
    let out = openssl(dir, &["x509", "-in", "server.pem", "-noout", "-text"]);
    assert!(out.status.success());
    let shown = text(&out);
    assert!(shown.contains("TLS Web Server Authentication"), "{shown}");
    assert!(shows_ike_intermediate(&shown), "{shown}");
    assert!(!shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(
        shown.contains("Digital Signature, Key Encipherment"),
        "{shown}"
    );
    assert!(shown.contains("DNS:vpn.example.com"), "{shown}");
    assert!(shown.contains("DNS:gw.example.com"), "{shown}");
    assert!(shown.contains("IP Address:192.0.2.10"), "{shown}");
    assert!(shown.contains("X509v3 CRL Distribution Points"), "{shown}");
    assert!(shown.contains(&format!("URI:{CRL_URL}")), "{shown}");
    assert!(shown.contains("CA:FALSE"), "{shown}");
    assert!(
        shown.contains("Subject: O = Roadgate Test, CN = vpn.example.com"),
        "{shown}"
    );
    assert!(shown.contains("X509v3 Authority Key Identifier"), "{shown}");

    let client = ca.issue_client(&client_params()).unwrap();
    write(dir, "client.pem", client.cert_pem().unwrap());
    let shown = text(&openssl(
        dir,
        &["x509", "-in", "client.pem", "-noout", "-text"],
    ));
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(shows_ike_intermediate(&shown), "{shown}");
    assert!(!shown.contains("TLS Web Server Authentication"), "{shown}");
    assert!(shown.contains("email:alice@example.com"), "{shown}");
    assert!(shown.contains(&format!("URI:{CRL_URL}")), "{shown}");

    write(dir, "ca.pem", ca.ca_cert_pem().unwrap());
    let shown = text(&openssl(dir, &["x509", "-in", "ca.pem", "-noout", "-text"]));
    assert!(shown.contains("CA:TRUE, pathlen:0"), "{shown}");
    assert!(shown.contains("Certificate Sign, CRL Sign"), "{shown}");

    ca.revoke(&server.serial, RevocationReason::Superseded)
        .unwrap();
    let crl = ca
        .crl(SystemTime::now(), Duration::from_secs(86_400))
        .unwrap();
    write(dir, "crl.pem", crl_pem(&crl));
    let out = openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(out.status.success());
    let shown = text(&out);
    assert!(shown.contains("Next Update:"), "{shown}");
    assert!(shown.contains("X509v3 CRL Number"), "{shown}");
    assert!(
        shown.contains(&format!("Serial Number: {}", server.serial.to_uppercase())),
        "{shown}"
    );
    assert!(shown.contains("Superseded"), "{shown}");
    assert!(!shown.contains(&client.serial.to_uppercase()), "{shown}");
}

fn p12_info(dir: &std::path::Path, password: &str, legacy: bool) -> (bool, String) {
    let pass = format!("pass:{password}");
    let mut args = vec![
        "pkcs12", "-info", "-nokeys", "-in", "x.p12", "-passin", &pass,
    ];
    if legacy {
        args.push("-legacy");
    }
    let out = openssl(dir, &args);
    (out.status.success(), text(&out))
}

#[test]
fn pkcs12_in_both_formats_reads_back_in_openssl() {
    if !have_openssl("pkcs12_in_both_formats_reads_back_in_openssl") {
        return;
    }
    let (tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let dir = tmp.path();
    let issued = ca.issue_client(&client_params()).unwrap();
    let password = ca::one_time_password().unwrap();

    for format in [P12Format::Legacy, P12Format::Aes256] {
        let p12 = export_p12(
            &issued.cert_der,
            &issued.key_der,
            &[ca.ca_cert_der()],
            &password,
            format,
            "alice-laptop",
        )
        .unwrap();
        write(dir, "x.p12", &p12);

        // The AES file is read by the default provider alone (no -legacy).
        let (ok, shown) = p12_info(dir, &password, format == P12Format::Legacy);
        assert!(ok, "{format:?}: {shown}");
        match format {
            P12Format::Legacy => {
                assert!(shown.contains("MAC: sha1"), "{shown}");
                assert!(
                    shown.contains("pbeWithSHA1And3-KeyTripleDES-CBC"),
                    "{shown}"
                );
                assert!(!shown.contains("AES"), "{shown}");
            }
            P12Format::Aes256 => {
                assert!(shown.contains("MAC: sha256"), "{shown}");
                assert!(shown.contains("AES-256-CBC"), "{shown}");
                assert!(!shown.contains("TripleDES"), "{shown}");
            }
        }

        // A wrong password is refused.
        let (ok, shown) = p12_info(dir, "WRONG-PASS-WORD-0000", true);
        assert!(!ok, "{format:?} opened with a wrong password: {shown}");
        assert!(shown.to_lowercase().contains("mac verify"), "{shown}");

        // Everything comes back out.
        let pass = format!("pass:{password}");
        let mut args = vec!["pkcs12", "-in", "x.p12", "-nodes", "-passin", &pass];
        if format == P12Format::Legacy {
            args.push("-legacy");
        }
        let out = openssl(dir, &args);
        assert!(out.status.success(), "{}", text(&out));
        let pem = String::from_utf8(out.stdout).unwrap();
        let key = parse_private_key_pem(&pem).unwrap();
        assert_eq!(
            key.as_bytes(),
            issued.key_der.as_bytes(),
            "{format:?}: the key differs"
        );
        let certs = ca::certs_from_pem(&pem).unwrap();
        assert_eq!(certs.len(), 2, "{format:?}");
        assert!(certs.contains(&issued.cert_der), "{format:?}");
        assert!(certs.contains(&ca.ca_cert_der().to_vec()), "{format:?}");
    }

    let empty = export_p12(
        &issued.cert_der,
        &issued.key_der,
        &[ca.ca_cert_der()],
        "",
        P12Format::Legacy,
        "x",
    );
    assert!(matches!(empty, Err(ca::CaError::InvalidParams(_))));
}

#[test]
fn ike_rsa_signature_is_byte_identical_to_openssl_pkeyutl() {
    if !have_openssl("ike_rsa_signature_is_byte_identical_to_openssl_pkeyutl") {
        return;
    }
    let (tmp, ca) = new_ca("Roadgate Test CA", KeyKind::Rsa2048, None);
    let dir = tmp.path();
    for key_kind in [KeyKind::Rsa2048, KeyKind::Rsa3072] {
        let mut params = server_params();
        params.key = key_kind;
        let server = ca.issue_server(&params).unwrap();
        write(dir, "key.pem", server.key_der.to_pem().unwrap().as_bytes());
        let peer = ca::inspect_cert(&server.cert_der).unwrap();

        // HASH_I/HASH_R sizes of SHA-1, SHA-256 and SHA-512 PRFs.
        for len in [20usize, 32, 64] {
            let hash: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(37) ^ 0xa5)
                .collect();
            write(dir, "hash.bin", &hash);
            let out = openssl(
                dir,
                &[
                    "pkeyutl", "-sign", "-inkey", "key.pem", "-in", "hash.bin", "-out", "sig.bin",
                ],
            );
            assert!(out.status.success(), "{}", text(&out));
            let theirs = std::fs::read(dir.join("sig.bin")).unwrap();
            let ours = sign_ike_rsa(server.key_der.as_bytes(), &hash).unwrap();
            assert_eq!(ours, theirs, "{key_kind} hash of {len} bytes");

            assert!(verify_ike_rsa(&peer.public_key, &hash, &theirs));
            let mut changed = hash.clone();
            changed[len - 1] ^= 0x01;
            assert!(!verify_ike_rsa(&peer.public_key, &changed, &theirs));

            // And openssl recovers the raw hash from ours: no DigestInfo inside.
            write(dir, "ours.bin", &ours);
            let out = openssl(
                dir,
                &[
                    "pkeyutl",
                    "-verifyrecover",
                    "-inkey",
                    "key.pem",
                    "-in",
                    "ours.bin",
                ],
            );
            assert!(out.status.success(), "{}", text(&out));
            assert_eq!(out.stdout, hash);
        }
    }
}
