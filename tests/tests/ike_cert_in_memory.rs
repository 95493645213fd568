//! Certificate (RSA signature, RFC 2409 §5.1) Main Mode in memory: the test initiator with a
//! client certificate against the server's responder, whose certificate authority is the real
//! server path (`roadgate::pki::Authority::load` over a CA in a temporary state folder). Good
//! certificates get Phase1Up with the certificate's subject and user, then Quick Mode and ESP;
//! bad input gets the documented notify, no SA, and leaves a pre-shared-key session beside it
//! on the same responder alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use roadgate::ike::{ChildSa, Event};
use roadgate::pki::{Authority, CertSettings};
use roadgate_tests::ike_harness::{check_esp, connect, connect_deferred, dump, ip, run_to_failure};
use roadgate_tests::initiator::{
    CertAuth, CertId, ChildInfo, FailReason, InitiatorConfig, InitiatorEvent, Mm5Tamper,
    P1Proposal, Stage,
};
use roadgate_tests::pair::{Pair, PairEvent, SERVER_IP, client_config, server_config};
use roadgate_tests::wire::{cert_encoding, notify};

// ------------------------------------------------------------------------------------------------
// the certificate authority

/// A CA in a temporary state folder, the server's authority loaded from it as the server
/// loads it, and a handle on the CA database for issuing and revoking.
struct Pki {
    dir: tempfile::TempDir,
    ca: ca::Ca,
    authority: Arc<Authority>,
}

impl Pki {
    /// The built-in CA made by `Authority::load` (RSA 2048), or one made beforehand with `key`.
    fn new(key: Option<ca::KeyKind>) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        if let Some(key) = key {
            let mut p = ca::InitParams::new("Roadgate Test CA");
            p.key = key;
            ca::Ca::init(dir.path(), &p).unwrap();
        }
        let settings = CertSettings {
            enabled: true,
            public_names: vec!["vpn.example.org".into(), SERVER_IP.to_string()],
            ..CertSettings::default()
        };
        let authority = Authority::load(dir.path(), &settings, &[IpAddr::V4(SERVER_IP)])
            .unwrap()
            .expect("certificates enabled");
        let ca = ca::Ca::open(dir.path()).unwrap();
        Pki {
            dir,
            ca,
            authority: Arc::new(authority),
        }
    }

    fn ca_der(&self) -> Vec<u8> {
        self.ca.ca_cert_der().to_vec()
    }

    /// A user certificate for `user` (commonName and user), with an e-mail and a DNS name.
    fn issue(&self, user: &str) -> ca::Issued {
        issue_from(&self.ca, user, 365)
    }
}

fn issue_from(authority: &ca::Ca, user: &str, days: u32) -> ca::Issued {
    issue_named(authority, user, user, days)
}

/// A certificate whose commonName is `cn`, recorded for the VPN user `user`.
fn issue_named(authority: &ca::Ca, cn: &str, user: &str, days: u32) -> ca::Issued {
    let mut p = ca::ClientParams::new(cn, ca::ClientKind::User);
    p.user = Some(user.to_string());
    p.emails = vec![format!("{user}@example.org")];
    p.dns = vec![format!("{user}-laptop.example.org")];
    p.validity_days = days;
    authority.issue_client(&p).unwrap()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn subject_der(cert: &[u8]) -> Vec<u8> {
    ca::inspect_cert(cert).unwrap().subject_der
}

// ------------------------------------------------------------------------------------------------
// the harness

/// A pair whose responder has the certificate authority of `pki` and the wall-clock time.
fn cert_pair(pki: &Pki, seed: u64) -> Pair {
    let mut cfg = server_config();
    cfg.cert = Some(pki.authority.clone());
    let mut pair = Pair::new(cfg, seed);
    let now = pair.now;
    pair.server.set_unix_time(now, unix(SystemTime::now()));
    pair
}

/// A client at `ip` authenticating with `issued`.
fn cert_client(pki: &Pki, issued: &ca::Issued, at: Ipv4Addr, seed: u64) -> InitiatorConfig {
    let mut cfg = client_config(at, seed);
    cfg.psk = Vec::new();
    cfg.cert = Some(CertAuth::new(
        issued.cert_der.clone(),
        issued.key_der.as_bytes(),
        pki.ca_der(),
    ));
    cfg
}

fn cert_mut(cfg: &mut InitiatorConfig) -> &mut CertAuth {
    cfg.cert.as_mut().expect("certificate mode")
}

/// The server's Phase1Up for the peer at `at`: (auth, cert_user).
fn server_phase1_up(pair: &Pair, at: Ipv4Addr) -> Option<(String, Option<String>)> {
    pair.server_events().into_iter().find_map(|e| match e {
        Event::Phase1Up {
            remote,
            auth,
            cert_user,
            ..
        } if remote.ip() == IpAddr::V4(at) => Some((auth.clone(), cert_user.clone())),
        _ => None,
    })
}

/// The client's Phase1Up: the checked subject of the server's certificate.
fn client_peer_cert(pair: &Pair, c: usize) -> Option<Option<String>> {
    pair.client_events(c).into_iter().find_map(|e| match e {
        InitiatorEvent::Phase1Up { peer_cert, .. } => Some(peer_cert.clone()),
        _ => None,
    })
}

/// A certificate client that must connect: the server reports the certificate's subject and
/// user, the client the server's certificate, and ESP works.
fn cert_success(pair: &mut Pair, pki: &Pki, issued: &ca::Issued, cfg: InitiatorConfig) {
    // The user recorded in the CA database for this serial.
    let user = pki.ca.find(&issued.serial).unwrap().unwrap().user;
    let at = match cfg.local.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    };
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(pair, c);
    let (auth, cert_user) = server_phase1_up(pair, at).expect("server Phase1Up");
    assert_eq!(auth, format!("certificate {}", issued.subject));
    assert_eq!(cert_user, user, "the user the certificate was issued for");
    assert_eq!(
        client_peer_cert(pair, c),
        Some(Some(pki.authority.subject.clone()))
    );
    check_esp(pair, c, &cc, &sc);
}

/// A responder with certificates and a pre-shared-key client already connected beside the
/// certificate clients under test.
struct World {
    pki: Pki,
    pair: Pair,
    psk: usize,
    psk_child: (ChildInfo, ChildSa),
}

const PSK_IP: u8 = 250;

fn world(seed: u64) -> World {
    world_with(Pki::new(None), seed)
}

fn world_with(pki: Pki, seed: u64) -> World {
    let mut pair = cert_pair(&pki, seed);
    let psk = pair.add_client(client_config(ip(PSK_IP), seed ^ 0x5c), None);
    let psk_child = connect(&mut pair, psk);
    assert_eq!(
        server_phase1_up(&pair, ip(PSK_IP)),
        Some(("psk".to_string(), None))
    );
    World {
        pki,
        pair,
        psk,
        psk_child,
    }
}

impl World {
    /// Runs `cfg` (a certificate client) to its failure in Main Mode; checks the responder
    /// counted an authentication failure, made no SA and sent `want` (if given), and that the
    /// pre-shared-key neighbour is undisturbed.
    fn refused(&mut self, cfg: InitiatorConfig, want: Option<u16>) -> FailReason {
        let pair = &mut self.pair;
        let at = cfg.local.ip();
        let before = pair.server.stats().clone();
        let phase1s = pair.server.phase1_count();
        let c = pair.add_client(cfg, None);
        let (stage, reason) = run_to_failure(pair, c);
        assert_eq!(stage, Stage::MainMode, "{reason:?}");
        if let Some(code) = want {
            assert_eq!(reason, FailReason::PeerNotify(code), "log:\n{}", dump(pair));
        }
        let after = pair.server.stats();
        assert_eq!(after.auth_failed, before.auth_failed + 1, "{after:?}");
        assert_eq!(after.phase1_established, before.phase1_established);
        assert_eq!(after.child_sas_established, before.child_sas_established);
        assert_eq!(
            pair.server.phase1_count(),
            phase1s,
            "the refused SA is gone"
        );
        assert!(
            pair.server_events().iter().all(
                |e| !matches!(e, Event::Phase1Up { remote, .. } if remote.ip() == at)
                    && !matches!(e, Event::ChildSaUp(ch) if ch.remote.ip() == at)
            ),
            "an SA for a refused peer"
        );
        self.neighbour_undisturbed();
        reason
    }

    /// The pre-shared-key client still has its IPsec SA on the server, ESP works on it, and a
    /// new Quick Mode on its ISAKMP SA succeeds.
    fn neighbour_undisturbed(&mut self) {
        let (cc, sc) = self.psk_child.clone();
        let pair = &mut self.pair;
        let neighbour = IpAddr::V4(ip(PSK_IP));
        assert!(
            pair.server_events().iter().all(|e| !matches!(e, Event::ChildSaDown { inbound_spi, .. } if *inbound_spi == sc.inbound_spi)
                && !matches!(e, Event::Phase1Down { remote, .. } if remote.ip() == neighbour)),
            "the neighbour's SAs went down; log:\n{}",
            dump(pair)
        );
        assert!(pair.server_sas.contains_key(&sc.inbound_spi));
        check_esp(pair, self.psk, &cc, &sc);
        let before = pair.server.stats().child_sas_established;
        let now = pair.now;
        assert!(pair.client(self.psk).initiator_mut().new_child(now));
        let mut new = None;
        pair.run_for(Duration::from_secs(30), |e| {
            if let PairEvent::Server(Event::ChildSaUp(ch)) = e {
                new = Some((**ch).clone());
            }
            new.is_some()
        });
        let new = new.expect("the neighbour's new Quick Mode");
        assert_eq!(new.remote.ip(), IpAddr::V4(ip(PSK_IP)));
        assert_eq!(pair.server.stats().child_sas_established, before + 1);
    }
}

// ------------------------------------------------------------------------------------------------
// success

#[test]
fn certificate_main_mode_then_quick_mode_and_esp() {
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 1);
    let cfg = cert_client(&pki, &alice, ip(10), 1);
    cert_success(&mut pair, &pki, &alice, cfg);
    // One CERTREQ, naming the CA (RFC 2408 §3.10), came in message 4.
    assert_eq!(pair.client(0).initiator().stats().certreqs_received, 1);
    assert_eq!(pair.client(0).initiator().stats().fragments_received, 0);
    let ev = pair
        .server_events()
        .into_iter()
        .find_map(|e| match e {
            Event::Phase1Up { algorithms, .. } => Some(algorithms.clone()),
            _ => None,
        })
        .unwrap();
    assert!(ev.contains("RSA-SIG"), "{ev}");
}

#[test]
fn cert_user_is_the_user_recorded_for_the_certificate() {
    let pki = Pki::new(None);
    let phone = issue_named(&pki.ca, "alice-phone", "alice", 365);
    let mut pair = cert_pair(&pki, 11);
    let cfg = cert_client(&pki, &phone, ip(11), 11);
    cert_success(&mut pair, &pki, &phone, cfg);
    let (auth, user) = server_phase1_up(&pair, ip(11)).unwrap();
    assert!(auth.contains("CN=alice-phone"), "{auth}");
    assert_eq!(user.as_deref(), Some("alice"));
}

#[test]
fn every_identity_the_certificate_names_is_accepted() {
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 2);
    let ids = [
        CertId::Subject,
        CertId::Dn(subject_der(&alice.cert_der)),
        CertId::Fqdn("ALICE-laptop.example.org".into()),
        CertId::UserFqdn("alice@example.org".into()),
        // An address is accepted without a match (Windows sends its private address).
        CertId::Ipv4(Ipv4Addr::new(10, 0, 0, 7)),
    ];
    for (k, id) in ids.into_iter().enumerate() {
        let mut cfg = cert_client(&pki, &alice, ip(20 + k as u8), 20 + k as u64);
        cert_mut(&mut cfg).id = id;
        // And with CERTREQs of ours in messages 3 and 5.
        cert_mut(&mut cfg).certreq = k % 2 == 1;
        cert_success(&mut pair, &pki, &alice, cfg);
    }
}

#[test]
fn other_algorithms_and_the_sha1_hash() {
    let pki = Pki::new(None);
    let bob = pki.issue("bob");
    let mut pair = cert_pair(&pki, 3);
    let props = [
        P1Proposal::new(
            CipherAlg::AesCbc { key_len: 16 },
            HashAlg::Sha1,
            DhGroup::Modp2048,
        ),
        P1Proposal::new(
            CipherAlg::AesCbc { key_len: 32 },
            HashAlg::Sha384,
            DhGroup::Ecp384,
        ),
        P1Proposal::new(
            CipherAlg::AesCbc { key_len: 16 },
            HashAlg::Sha512,
            DhGroup::Ecp256,
        ),
    ];
    for (k, prop) in props.into_iter().enumerate() {
        let mut cfg = cert_client(&pki, &bob, ip(30 + k as u8), 30 + k as u64);
        cfg.ike_proposals = vec![prop];
        cert_success(&mut pair, &pki, &bob, cfg);
    }
}

#[test]
fn four_cert_payloads_are_read() {
    // The leaf and three unrelated copies: within the limit of four payloads.
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 4);
    let mut cfg = cert_client(&pki, &alice, ip(40), 4);
    cfg.hooks.cert_payloads = Some(vec![(cert_encoding::X509_SIG, alice.cert_der.clone()); 4]);
    cert_success(&mut pair, &pki, &alice, cfg);
}

#[test]
fn client_behind_nat_with_certificates() {
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 5);
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 99));
    let mut cfg = cert_client(&pki, &alice, Ipv4Addr::new(10, 1, 2, 3), 5);
    cfg.local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 500);
    let c = pair.add_client(cfg, Some(nat));
    let (cc, sc) = connect(&mut pair, c);
    assert!(cc.udp_encap && sc.udp_encap);
    let (auth, user) = server_phase1_up(&pair, Ipv4Addr::new(192, 0, 2, 99)).unwrap();
    assert_eq!(auth, format!("certificate {}", alice.subject));
    assert_eq!(user.as_deref(), Some("alice"));
    check_esp(&mut pair, c, &cc, &sc);
}

// ------------------------------------------------------------------------------------------------
// fragmentation

#[test]
fn rsa3072_server_certificate_comes_in_fragments() {
    let pki = Pki::new(Some(ca::KeyKind::Rsa3072));
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 6);
    let mut cfg = cert_client(&pki, &alice, ip(60), 6);
    cfg.fragmentation = true;
    cert_success(&mut pair, &pki, &alice, cfg);
    let frags = pair.client(0).initiator().stats().fragments_received;
    assert!(frags >= 2, "message 6 came in {frags} fragments");
    // Without the vendor ID the same message comes whole.
    let mut cfg = cert_client(&pki, &alice, ip(61), 7);
    cfg.fragmentation = false;
    cert_success(&mut pair, &pki, &alice, cfg);
    assert_eq!(pair.client(1).initiator().stats().fragments_received, 0);
}

#[test]
fn large_message_5_goes_in_fragments_and_is_joined_by_the_server() {
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 10);
    let mut cfg = cert_client(&pki, &alice, ip(63), 10);
    cfg.fragmentation = true;
    // Four CERT payloads (the limit): about 3.5 KB.
    cfg.hooks.cert_payloads = Some(vec![(cert_encoding::X509_SIG, alice.cert_der.clone()); 4]);
    cert_success(&mut pair, &pki, &alice, cfg);
    let sent = pair.client(0).initiator().stats().fragments_sent;
    assert!(sent >= 3, "message 5 went in {sent} fragments");
}

#[test]
fn lost_fragment_is_recovered_by_retransmitting_message_5() {
    let pki = Pki::new(Some(ca::KeyKind::Rsa3072));
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 8);
    // Drop the first fragment of message 6 once: the client repeats message 5 and the server
    // sends every fragment again.
    let mut dropped = false;
    pair.filter = Some(Box::new(move |dir, data| {
        let d = if data.len() > 4 && data[..4] == [0; 4] {
            &data[4..]
        } else {
            data
        };
        let frag = d.len() > 32 && d[16] == roadgate_tests::wire::payload::FRAGMENT;
        if matches!(dir, roadgate_tests::pair::Direction::ToClient(_)) && frag && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    let mut cfg = cert_client(&pki, &alice, ip(62), 8);
    cfg.fragmentation = true;
    cert_success(&mut pair, &pki, &alice, cfg);
    assert!(pair.dropped >= 1);
    assert!(pair.client(0).initiator().stats().retransmits >= 1);
}

// ------------------------------------------------------------------------------------------------
// refusals, each beside an undisturbed pre-shared-key session

#[test]
fn forged_signature_gets_invalid_signature() {
    let mut w = world(100);
    let alice = w.pki.issue("alice");
    let mut cfg = cert_client(&w.pki, &alice, ip(100), 100);
    cfg.hooks.flip_signature = true;
    w.refused(cfg, Some(notify::INVALID_SIGNATURE));
}

#[test]
fn someone_elses_certificate_with_our_key_gets_invalid_signature() {
    let mut w = world(101);
    let alice = w.pki.issue("alice");
    let mallory = w.pki.issue("mallory");
    let mut cfg = cert_client(&w.pki, &mallory, ip(101), 101);
    // Alice's certificate, signed with Mallory's key.
    cert_mut(&mut cfg).chain = vec![alice.cert_der.clone()];
    w.refused(cfg, Some(notify::INVALID_SIGNATURE));
}

#[test]
fn wrong_identities_get_invalid_id_information() {
    let mut w = world(102);
    let alice = w.pki.issue("alice");
    let bob = w.pki.issue("bob");
    let wrong = [
        CertId::Dn(subject_der(&bob.cert_der)),
        CertId::Fqdn("bob-laptop.example.org".into()),
        CertId::Fqdn("vpn.example.org".into()),
        CertId::UserFqdn("bob@example.org".into()),
    ];
    for (k, id) in wrong.into_iter().enumerate() {
        let mut cfg = cert_client(&w.pki, &alice, ip(110 + k as u8), 110 + k as u64);
        cert_mut(&mut cfg).id = id;
        w.refused(cfg, Some(notify::INVALID_ID_INFORMATION));
    }
}

#[test]
fn oversized_cert_payload_is_refused() {
    let mut w = world(103);
    let alice = w.pki.issue("alice");
    let mut cfg = cert_client(&w.pki, &alice, ip(103), 103);
    // A DER SEQUENCE header claiming 20 KiB, and 20 KiB.
    let mut big = vec![0x30, 0x82, 0x50, 0x00];
    big.extend(std::iter::repeat_n(0xa5, 20 * 1024));
    cfg.hooks.cert_payloads = Some(vec![(cert_encoding::X509_SIG, big)]);
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    // The real certificate and a large second one: the total counts.
    let mut cfg = cert_client(&w.pki, &alice, ip(104), 104);
    cfg.hooks.cert_payloads = Some(vec![
        (cert_encoding::X509_SIG, alice.cert_der.clone()),
        (cert_encoding::X509_SIG, vec![0x30; 16 * 1024]),
    ]);
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    // The 20 KiB one again, in IKE fragments the server joins before refusing it.
    let mut cfg = cert_client(&w.pki, &alice, ip(105), 105);
    cfg.fragmentation = true;
    let mut big = vec![0x30, 0x82, 0x50, 0x00];
    big.extend(std::iter::repeat_n(0x5a, 20 * 1024));
    cfg.hooks.cert_payloads = Some(vec![(cert_encoding::X509_SIG, big)]);
    let c = w.pair.clients.len();
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    assert!(w.pair.client(c).initiator().stats().fragments_sent >= 16);
}

#[test]
fn garbage_cert_payloads_get_invalid_certificate() {
    let mut w = world(105);
    let alice = w.pki.issue("alice");
    let mut rng = ChaCha20Rng::seed_from_u64(105);
    let mut truncated = alice.cert_der.clone();
    truncated.truncate(truncated.len() / 2);
    let mut flipped = alice.cert_der.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let random: Vec<u8> = (0..700).map(|_| rng.random()).collect();
    let cases = [Vec::new(), vec![0x30, 0x00], truncated, flipped, random];
    for (k, body) in cases.into_iter().enumerate() {
        let mut cfg = cert_client(&w.pki, &alice, ip(120 + k as u8), 120 + k as u64);
        cfg.hooks.cert_payloads = Some(vec![(cert_encoding::X509_SIG, body)]);
        w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    }
}

#[test]
fn no_cert_payload_gets_certificate_unavailable() {
    let mut w = world(106);
    let alice = w.pki.issue("alice");
    let mut cfg = cert_client(&w.pki, &alice, ip(106), 106);
    cfg.hooks.cert_payloads = Some(Vec::new());
    w.refused(cfg, Some(notify::CERTIFICATE_UNAVAILABLE));
}

#[test]
fn five_cert_payloads_are_refused() {
    let mut w = world(107);
    let alice = w.pki.issue("alice");
    let mut cfg = cert_client(&w.pki, &alice, ip(107), 107);
    cfg.hooks.cert_payloads = Some(vec![(cert_encoding::X509_SIG, alice.cert_der.clone()); 5]);
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
}

#[test]
fn pkcs7_encoding_gets_cert_type_unsupported() {
    let mut w = world(108);
    let alice = w.pki.issue("alice");
    let mut cfg = cert_client(&w.pki, &alice, ip(108), 108);
    cfg.hooks.cert_payloads = Some(vec![(cert_encoding::PKCS7, alice.cert_der.clone())]);
    w.refused(cfg, Some(notify::CERT_TYPE_UNSUPPORTED));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let mut w = world(109);
    let alice = issue_from(&w.pki.ca, "alice", 1);
    // The server's clock two days on: Alice's one-day certificate has expired.
    let now = w.pair.now;
    let later = unix(alice.not_after) + 86_400;
    w.pair.server.set_unix_time(now, later);
    let cfg = cert_client(&w.pki, &alice, ip(109), 109);
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    // Before notBefore.
    let now = w.pair.now;
    w.pair
        .server
        .set_unix_time(now, unix(alice.not_before) - 86_400);
    let cfg = cert_client(&w.pki, &alice, ip(110), 110);
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    // Back to the present: accepted.
    let now = w.pair.now;
    w.pair.server.set_unix_time(now, unix(SystemTime::now()));
    let cfg = cert_client(&w.pki, &alice, ip(111), 111);
    let pki = &w.pki;
    cert_success(&mut w.pair, pki, &alice, cfg);
}

#[test]
fn certificate_of_a_foreign_ca_is_refused() {
    let mut w = world(112);
    let other = tempfile::tempdir().unwrap();
    let foreign = ca::Ca::init(other.path(), &ca::InitParams::new("Roadgate Test CA")).unwrap();
    // Same CA name, other key: an impostor.
    let eve = issue_from(&foreign, "alice", 365);
    let cfg = cert_client(&w.pki, &eve, ip(112), 112);
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    // And sending the foreign CA certificate along does not help.
    let mut cfg = cert_client(&w.pki, &eve, ip(113), 113);
    cert_mut(&mut cfg).chain = vec![eve.cert_der.clone(), foreign.ca_cert_der().to_vec()];
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
}

#[test]
fn revoked_certificate_is_refused_at_the_next_connection() {
    let mut w = world(114);
    let alice = w.pki.issue("alice");
    let bob = w.pki.issue("bob");
    // Alice connects before the revocation.
    let cfg = cert_client(&w.pki, &alice, ip(114), 114);
    let pki = &w.pki;
    cert_success(&mut w.pair, pki, &alice, cfg);
    // Revoked in the CA database after the server loaded its authority (`roadgate ca revoke`
    // beside a running server).
    w.pki
        .ca
        .revoke(&alice.serial, ca::RevocationReason::KeyCompromise)
        .unwrap();
    let cfg = cert_client(&w.pki, &alice, ip(115), 115);
    w.refused(cfg, Some(notify::INVALID_CERTIFICATE));
    // Bob is not affected.
    let cfg = cert_client(&w.pki, &bob, ip(116), 116);
    let pki = &w.pki;
    cert_success(&mut w.pair, pki, &bob, cfg);
}

#[test]
fn server_signature_is_checked_by_the_client() {
    // The client trusts another CA: it refuses the server's certificate (and so never sends
    // Quick Mode), while the server did establish its side.
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let other = tempfile::tempdir().unwrap();
    let foreign = ca::Ca::init(other.path(), &ca::InitParams::new("Other CA")).unwrap();
    let mut pair = cert_pair(&pki, 9);
    let mut cfg = cert_client(&pki, &alice, ip(90), 9);
    cert_mut(&mut cfg).ca = foreign.ca_cert_der().to_vec();
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(stage, Stage::MainMode);
    assert!(matches!(reason, FailReason::BadCert(_)), "{reason:?}");
    assert_eq!(pair.server.stats().child_sas_established, 0);
    let _ = &pki.dir;
}

// ------------------------------------------------------------------------------------------------
// mutated message 5

/// Positions of the plaintext of message 5 whose change need not be noticed: the reserved
/// octet of each payload header and the padding after the chain.
fn free_positions(payload_lens: &[usize], padded: usize) -> Vec<usize> {
    let mut free = Vec::new();
    let mut pos = 0;
    for len in payload_lens {
        free.push(pos + 1);
        pos += len;
    }
    free.extend(pos..padded);
    free
}

#[test]
fn mutated_message_5_never_panics_or_establishes() {
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 77);
    // ID | CERT | SIG (RSA 2048), no INITIAL-CONTACT, no CERTREQ; AES blocks.
    let id_len = 4 + 4 + subject_der(&alice.cert_der).len();
    let lens = [id_len, 4 + 1 + alice.cert_der.len(), 4 + 256];
    let chain_len: usize = lens.iter().sum();
    let padded = chain_len.next_multiple_of(16);
    let free = free_positions(&lens, padded);
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let mut established_free = 0;
    for k in 0..160u32 {
        let tamper = match k % 4 {
            0 | 1 => Mm5Tamper::PlainXor {
                at: rng.random_range(0..padded),
                mask: rng.random_range(1..=255),
            },
            2 => Mm5Tamper::PlainTruncate(rng.random_range(0..chain_len)),
            _ => Mm5Tamper::CipherXor {
                at: rng.random_range(0..padded),
                mask: rng.random_range(1..=255),
            },
        };
        let may_pass = matches!(tamper, Mm5Tamper::PlainXor { at, .. } if free.contains(&at));
        let at = Ipv4Addr::new(10, 77, (k / 200) as u8, (k % 200) as u8 + 1);
        let mut cfg = cert_client(&pki, &alice, at, 1000 + u64::from(k));
        cfg.ike_proposals = vec![P1Proposal::new(
            CipherAlg::AesCbc { key_len: 16 },
            HashAlg::Sha256,
            DhGroup::Ecp256,
        )];
        cfg.initial_contact = false;
        cfg.hooks.mm5_tamper = Some(tamper);
        let before = pair.server.stats().phase1_established;
        let c = pair.add_client(cfg, None);
        pair.run_until(|e| {
            matches!(e, PairEvent::Client(i, InitiatorEvent::Failed { .. } | InitiatorEvent::Phase1Up { .. }) if *i == c)
        });
        let established = pair.server.stats().phase1_established - before;
        if may_pass {
            established_free += established;
        } else {
            assert_eq!(
                established,
                0,
                "{tamper:?} was accepted; log:\n{}",
                dump(&pair)
            );
            assert!(server_phase1_up(&pair, at).is_none());
        }
        // Whatever happened, the next good client still gets in.
        if k % 40 == 39 {
            let good = Ipv4Addr::new(10, 78, 0, (k / 40) as u8 + 1);
            let cfg = cert_client(&pki, &alice, good, 5000 + u64::from(k));
            cert_success(&mut pair, &pki, &alice, cfg);
        }
    }
    // Nothing is left half open once the clients gave up.
    pair.advance(Duration::from_secs(120));
    assert_eq!(pair.server.half_open_count(), 0);
    let _ = established_free;
}

// ------------------------------------------------------------------------------------------------
// deferred handshake jobs

#[test]
fn certificate_main_mode_with_deferred_jobs_on_another_thread() {
    let pki = Pki::new(None);
    let alice = pki.issue("alice");
    let mut pair = cert_pair(&pki, 90);
    let c = pair.add_client(cert_client(&pki, &alice, ip(90), 90), None);
    let (cc, sc, ran) = connect_deferred(&mut pair, c);
    assert_eq!(
        ran, 2,
        "message 3's Diffie-Hellman and message 5's certificate work"
    );
    let (auth, _) = server_phase1_up(&pair, ip(90)).expect("server Phase1Up");
    assert_eq!(auth, format!("certificate {}", alice.subject));
    assert_eq!(
        client_peer_cert(&pair, c),
        Some(Some(pki.authority.subject.clone()))
    );
    assert_eq!(pair.server.jobs_outstanding(), 0);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn certificate_refused_by_a_deferred_job_gets_its_notify() {
    let pki = Pki::new(None);
    let other = Pki::new(None);
    // A certificate of another CA: the job's chain check refuses it.
    let mallory = other.issue("mallory");
    let mut pair = cert_pair(&pki, 91);
    pair.server.set_deferred_jobs(true);
    let c = pair.add_client(cert_client(&pki, &mallory, ip(91), 91), None);
    let mut ran = 0;
    for _ in 0..200 {
        pair.run_for(Duration::from_millis(50), |_| false);
        if let Some(job) = pair.server.poll_job() {
            let done = std::thread::spawn(move || job.run()).join().unwrap();
            let now = pair.now;
            pair.server.job_done(now, done);
            ran += 1;
        }
        if pair.server.stats().auth_failed > 0 {
            break;
        }
    }
    assert_eq!(ran, 2, "{}", dump(&pair));
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(stage, Stage::MainMode);
    assert_eq!(reason, FailReason::PeerNotify(notify::INVALID_CERTIFICATE));
    assert_eq!(pair.server.phase1_count(), 0);
    assert_eq!(pair.server.stats().auth_failed, 1);
}
