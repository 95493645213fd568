//! End-to-end IKEv1 tests in memory: the test client's initiator (written from the RFCs) against
//! the server's responder, with a fake clock, an impaired link and a NAT model. Every successful
//! negotiation is checked by ESP traffic both ways with the keys each side reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roadgate::esp::{Encryption, Integrity, Suite};
use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use roadgate::ike::{ChildSa, Config, DownReason, Event, Responder};
use roadgate_tests::ike_harness::{
    check_esp, client_failure, connect, connect_deferred, dump, ip, run_to_failure,
};
use roadgate_tests::initiator::{
    self, Deleted, FailReason, InitiatorConfig, InitiatorEvent, NattVids, P1Proposal, Stage,
};
use roadgate_tests::pair::{Direction, Filter, Pair, PairEvent, client_config, server_config};
use roadgate_tests::wire::{self, Header, exchange, notify, payload, vid};

// ------------------------------------------------------------------------------------------------
// helpers

fn suite(encryption: Encryption, integrity: Integrity) -> Suite {
    Suite {
        encryption,
        integrity,
    }
}

fn aes_sha1() -> Suite {
    suite(Encryption::AesCbc { key_len: 16 }, Integrity::HmacSha1_96)
}

fn phase1_up(pair: &Pair, c: usize) -> Option<(String, initiator::NatInfo)> {
    pair.client_events(c).into_iter().find_map(|e| match e {
        InitiatorEvent::Phase1Up {
            algorithms, nat, ..
        } => Some((algorithms.clone(), *nat)),
        _ => None,
    })
}

fn server_downs(pair: &Pair) -> Vec<(u32, DownReason)> {
    pair.server_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::ChildSaDown {
                inbound_spi,
                reason,
                ..
            } => Some((*inbound_spi, *reason)),
            _ => None,
        })
        .collect()
}

fn server_p1_downs(pair: &Pair) -> Vec<DownReason> {
    pair.server_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Phase1Down { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

const GROUPS: [DhGroup; 7] = [
    DhGroup::Modp1024,
    DhGroup::Modp1536,
    DhGroup::Modp2048,
    DhGroup::Modp3072,
    DhGroup::Modp4096,
    DhGroup::Ecp256,
    DhGroup::Ecp384,
];
const CIPHERS: [CipherAlg; 2] = [
    CipherAlg::AesCbc { key_len: 16 },
    CipherAlg::AesCbc { key_len: 32 },
];
const HASHES: [HashAlg; 4] = [
    HashAlg::Sha1,
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
];

// ------------------------------------------------------------------------------------------------
// algorithms

#[test]
fn every_default_group_with_main_and_quick_mode() {
    for (k, group) in GROUPS.into_iter().enumerate() {
        let mut pair = Pair::new(server_config(), 100 + k as u64);
        let mut cfg = client_config(ip(10), k as u64);
        let prop = P1Proposal::new(CIPHERS[k % 2], HASHES[k % 4], group);
        cfg.ike_proposals = vec![prop];
        let c = pair.add_client(cfg, None);
        let (cc, sc) = connect(&mut pair, c);
        let (alg, _) = phase1_up(&pair, c).expect("phase 1 up");
        assert_eq!(alg, prop.describe());
        let Some(Event::Phase1Up { algorithms, .. }) = pair
            .server_events()
            .into_iter()
            .find(|e| matches!(e, Event::Phase1Up { .. }))
        else {
            panic!("no server Phase1Up")
        };
        assert!(
            algorithms.contains(group.name()),
            "{algorithms} vs {}",
            group.name()
        );
        check_esp(&mut pair, c, &cc, &sc);
    }
}

#[test]
fn every_cipher_and_hash_combination() {
    for (k, (cipher, hash)) in CIPHERS
        .into_iter()
        .flat_map(|c| HASHES.map(|h| (c, h)))
        .enumerate()
    {
        let group = if k % 2 == 0 {
            DhGroup::Ecp256
        } else {
            DhGroup::Modp2048
        };
        let mut pair = Pair::new(server_config(), 200 + k as u64);
        let mut cfg = client_config(ip(11), 50 + k as u64);
        cfg.ike_proposals = vec![P1Proposal::new(cipher, hash, group)];
        let c = pair.add_client(cfg, None);
        let (cc, sc) = connect(&mut pair, c);
        check_esp(&mut pair, c, &cc, &sc);
    }
}

#[test]
fn every_esp_suite() {
    let mut server = server_config();
    server.phase2.encryption.push(Encryption::TripleDesCbc);
    let suites = [
        aes_sha1(),
        suite(Encryption::AesCbc { key_len: 32 }, Integrity::HmacSha1_96),
        suite(
            Encryption::AesCbc { key_len: 16 },
            Integrity::HmacSha256_128,
        ),
        suite(
            Encryption::AesCbc { key_len: 32 },
            Integrity::HmacSha384_192,
        ),
        suite(
            Encryption::AesCbc { key_len: 32 },
            Integrity::HmacSha512_256,
        ),
        suite(Encryption::AesGcm16 { key_len: 16 }, Integrity::None),
        suite(Encryption::AesGcm16 { key_len: 32 }, Integrity::None),
        suite(Encryption::TripleDesCbc, Integrity::HmacSha1_96),
    ];
    for (k, s) in suites.into_iter().enumerate() {
        let mut pair = Pair::new(server.clone(), 300 + k as u64);
        let mut cfg = client_config(ip(12), 80 + k as u64);
        cfg.esp_proposals = vec![s];
        let c = pair.add_client(cfg, None);
        let (cc, sc) = connect(&mut pair, c);
        assert_eq!(cc.suite, s);
        check_esp(&mut pair, c, &cc, &sc);
    }
}

#[test]
fn triple_des_esp_is_refused_by_default() {
    let mut pair = Pair::new(server_config(), 5);
    let mut cfg = client_config(ip(13), 5);
    cfg.esp_proposals = vec![suite(Encryption::TripleDesCbc, Integrity::HmacSha1_96)];
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(
        (stage, reason),
        (
            Stage::QuickMode,
            FailReason::PeerNotify(notify::NO_PROPOSAL_CHOSEN)
        )
    );
}

#[test]
fn windows_like_proposals_pick_the_first_allowed() {
    let mut pair = Pair::new(server_config(), 6);
    let mut cfg = client_config(ip(14), 6);
    let aes256 = CipherAlg::AesCbc { key_len: 32 };
    let aes128 = CipherAlg::AesCbc { key_len: 16 };
    cfg.ike_proposals = vec![
        P1Proposal::new(aes256, HashAlg::Sha1, DhGroup::Ecp384),
        P1Proposal::new(aes128, HashAlg::Sha1, DhGroup::Ecp256),
        P1Proposal::new(aes256, HashAlg::Sha1, DhGroup::Modp2048),
        P1Proposal::new(CipherAlg::TripleDesCbc, HashAlg::Sha1, DhGroup::Modp2048),
        P1Proposal::new(aes128, HashAlg::Sha1, DhGroup::Modp2048),
    ];
    cfg.esp_proposals = vec![
        suite(Encryption::AesCbc { key_len: 32 }, Integrity::HmacSha1_96),
        aes_sha1(),
        suite(Encryption::TripleDesCbc, Integrity::HmacSha1_96),
    ];
    cfg.vendor_ids = vec![vid::MS_NT5_V9.to_vec(), vid::FRAGMENTATION.to_vec()];
    let first = cfg.ike_proposals[0];
    let esp_first = cfg.esp_proposals[0];
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(phase1_up(&pair, c).map(|x| x.0), Some(first.describe()));
    assert_eq!(cc.suite, esp_first);
    check_esp(&mut pair, c, &cc, &sc);

    // A Windows list whose first entries are not allowed: the first allowed one (MODP-2048) wins.
    let mut pair = Pair::new(server_config(), 7);
    let mut cfg = client_config(ip(14), 7);
    cfg.ike_proposals = vec![
        P1Proposal::new(CipherAlg::TripleDesCbc, HashAlg::Sha1, DhGroup::Ecp384),
        P1Proposal::new(aes256, HashAlg::Sha1, DhGroup::Modp768),
        P1Proposal::new(aes256, HashAlg::Sha1, DhGroup::Modp2048),
        P1Proposal::new(aes128, HashAlg::Sha1, DhGroup::Ecp256),
    ];
    let want = cfg.ike_proposals[2];
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(phase1_up(&pair, c).map(|x| x.0), Some(want.describe()));
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn android_like_esp_list_gets_hmac_sha1() {
    let mut pair = Pair::new(server_config(), 8);
    let mut cfg = client_config(ip(15), 8);
    cfg.ike_proposals = vec![
        P1Proposal::new(
            CipherAlg::AesCbc { key_len: 32 },
            HashAlg::Sha1,
            DhGroup::Modp1024,
        ),
        P1Proposal::new(
            CipherAlg::AesCbc { key_len: 16 },
            HashAlg::Sha1,
            DhGroup::Modp1024,
        ),
        P1Proposal::new(CipherAlg::TripleDesCbc, HashAlg::Sha1, DhGroup::Modp1024),
    ];
    cfg.esp_proposals = vec![
        suite(Encryption::AesCbc { key_len: 32 }, Integrity::HmacSha256_96),
        suite(Encryption::AesCbc { key_len: 16 }, Integrity::HmacSha256_96),
        suite(Encryption::AesCbc { key_len: 32 }, Integrity::HmacSha1_96),
        suite(Encryption::AesCbc { key_len: 16 }, Integrity::HmacSha1_96),
        suite(Encryption::TripleDesCbc, Integrity::HmacSha1_96),
    ];
    cfg.dpd = false;
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(
        cc.suite,
        suite(Encryption::AesCbc { key_len: 32 }, Integrity::HmacSha1_96)
    );
    check_esp(&mut pair, c, &cc, &sc);
}

// ------------------------------------------------------------------------------------------------
// refusals

#[test]
fn psk_mismatch_fails_and_is_counted() {
    let mut pair = Pair::new(server_config(), 9);
    let mut cfg = client_config(ip(16), 9);
    cfg.psk = b"not the key".to_vec();
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(
        (stage, reason),
        (
            Stage::MainMode,
            FailReason::PeerNotify(notify::AUTHENTICATION_FAILED)
        )
    );
    assert!(
        pair.server_events()
            .iter()
            .all(|e| !matches!(e, Event::Phase1Up { .. }))
    );
    assert_eq!(
        pair.server.stats().auth_failed,
        1,
        "{:?}",
        pair.server.stats()
    );
}

#[test]
fn unknown_phase1_proposal_gets_no_proposal_chosen() {
    let mut pair = Pair::new(server_config(), 10);
    let mut cfg = client_config(ip(17), 10);
    cfg.ike_proposals = vec![
        P1Proposal::new(CipherAlg::TripleDesCbc, HashAlg::Sha1, DhGroup::Modp2048),
        P1Proposal::new(
            CipherAlg::AesCbc { key_len: 16 },
            HashAlg::Sha1,
            DhGroup::Modp768,
        ),
    ];
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(
        (stage, reason),
        (
            Stage::MainMode,
            FailReason::PeerNotify(notify::NO_PROPOSAL_CHOSEN)
        )
    );
    assert_eq!(pair.server.stats().no_proposal_chosen, 1);
    assert_eq!(pair.server.half_open_count(), 0);
}

#[test]
fn unknown_esp_proposal_gets_no_proposal_chosen() {
    let mut pair = Pair::new(server_config(), 11);
    let mut cfg = client_config(ip(18), 11);
    cfg.esp_proposals = vec![suite(Encryption::Null, Integrity::HmacSha1_96)];
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(
        (stage, reason),
        (
            Stage::QuickMode,
            FailReason::PeerNotify(notify::NO_PROPOSAL_CHOSEN)
        )
    );
    assert!(pair.server.stats().quick_mode_refused >= 1);
    assert_eq!(pair.server.child_count(), 0);
}

#[test]
fn aggressive_mode_is_refused_with_a_notify() {
    let mut pair = Pair::new(server_config(), 12);
    let cfg = client_config(ip(19), 12);
    // Message 1 of Aggressive Mode (RFC 2409 §5.4): HDR, SA, KE, Ni, IDii.
    let (mm1, _, _) = initiator::main_mode_1(&cfg, *b"aggrmode");
    let hdr = Header::parse(&mm1).unwrap();
    let (items, _) = wire::parse_chain(hdr.next, &mm1[wire::HEADER_LEN..]).unwrap();
    let mut chain = wire::Chain::new();
    chain
        .push(payload::SA, items[0].body.clone())
        .push(payload::KE, vec![7; 256])
        .push(payload::NONCE, vec![9; 32])
        .push(payload::ID, wire::Id::ipv4(ip(19), 17, 500).encode());
    let am1 = wire::message(
        Header {
            exchange: exchange::AGGRESSIVE,
            ..hdr
        },
        &chain,
    );
    let from = SocketAddr::new(IpAddr::V4(ip(19)), 500);
    pair.inject_to_server(from, 500, am1);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.server.stats().aggressive_refused, 1);
    assert_eq!(pair.server.phase1_count(), 0);
    let reply = pair
        .unrouted
        .iter()
        .find(|t| t.remote == from)
        .expect("a reply to the Aggressive Mode initiator");
    let h = Header::parse(&reply.data).unwrap();
    assert_eq!(h.icky, *b"aggrmode");
    assert_eq!(h.exchange, exchange::INFORMATIONAL);
    assert_eq!(h.flags & wire::flags::ENCRYPTION, 0);
    let (items, _) = wire::parse_chain(h.next, &reply.data[wire::HEADER_LEN..]).unwrap();
    let n = items
        .iter()
        .find(|p| p.kind == payload::NOTIFY)
        .expect("a notify");
    let n = wire::Notify::parse(&n.body).unwrap();
    assert!(
        [notify::INVALID_EXCHANGE_TYPE, notify::NO_PROPOSAL_CHOSEN].contains(&n.message_type),
        "notify {}",
        n.message_type
    );
}

/// A big-endian number of `len` bytes.
fn be(len: usize, tail: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; len - tail.len()];
    v.extend_from_slice(tail);
    v
}

fn bad_ke_values(group: DhGroup) -> Vec<(&'static str, Vec<u8>)> {
    let len = group.public_len();
    match group.modp_prime() {
        Some(p) => {
            let mut pm1 = p.to_vec();
            if let Some(last) = pm1.last_mut() {
                *last -= 1;
            }
            vec![
                ("zero", vec![0; len]),
                ("one", be(len, &[1])),
                ("p-1", pm1),
                ("p", p.to_vec()),
                ("short", vec![0x55; len - 1]),
            ]
        }
        None => {
            let half = len / 2;
            let mut off = be(half, &[1]);
            off.extend_from_slice(&be(half, &[1]));
            vec![
                ("off-curve (1,1)", off),
                ("zero point", vec![0; len]),
                ("short", vec![0x55; len - 1]),
            ]
        }
    }
}

#[test]
fn bad_dh_values_get_invalid_key_information_and_no_sa() {
    for group in [
        DhGroup::Modp1024,
        DhGroup::Modp2048,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
    ] {
        for (what, ke) in bad_ke_values(group) {
            let mut pair = Pair::new(server_config(), 13);
            let mut cfg = client_config(ip(20), 13);
            cfg.ike_proposals = vec![P1Proposal::new(
                CipherAlg::AesCbc { key_len: 16 },
                HashAlg::Sha1,
                group,
            )];
            cfg.hooks.ke_override = Some(ke);
            let c = pair.add_client(cfg, None);
            let (stage, reason) = run_to_failure(&mut pair, c);
            assert_eq!(
                (stage, reason),
                (
                    Stage::MainMode,
                    FailReason::PeerNotify(notify::INVALID_KEY_INFORMATION)
                ),
                "{} {what}",
                group.name()
            );
            assert_eq!(pair.server.stats().invalid_ke, 1, "{} {what}", group.name());
            assert_eq!(
                pair.server.stats().dh_keys_generated,
                0,
                "{} {what}: a key was made for a bad KE",
                group.name()
            );
            assert!(pair.server_events().is_empty(), "{} {what}", group.name());
            assert_eq!(
                pair.server.phase1_count(),
                0,
                "{} {what}: the half-open SA stays",
                group.name()
            );
        }
    }
}

#[test]
fn bad_pfs_dh_value_gets_no_child_sa() {
    let mut pair = Pair::new(server_config(), 14);
    let mut cfg = client_config(ip(21), 14);
    cfg.pfs = Some(DhGroup::Modp2048);
    cfg.hooks.qm_ke_override = Some(be(256, &[1]));
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(
        (stage, reason),
        (
            Stage::QuickMode,
            FailReason::PeerNotify(notify::INVALID_KEY_INFORMATION)
        )
    );
    assert_eq!(pair.server.child_count(), 0);
    // The peer's value is checked before we make a key: only Main Mode's key was made.
    assert_eq!(pair.server.stats().dh_keys_generated, 1);
    assert_eq!(pair.server.stats().invalid_ke, 1);
}

/// The exchange type of an IKE datagram as sent (behind the non-ESP marker on port 4500).
fn exchange_of(data: &[u8]) -> Option<u8> {
    let ike = match data {
        [0, 0, 0, 0, rest @ ..] => rest,
        _ => data,
    };
    ike.get(18).copied()
}

#[test]
fn an_established_phase_1_keeps_no_sa_payload() {
    let mut pair = Pair::new(server_config(), 17);
    let c = pair.add_client(client_config(ip(24), 17), None);
    // While Main Mode runs, message 1's SA payload is kept (for HASH_I and HASH_R) ...
    let now = pair.now;
    let (mm1, _, _) = initiator::main_mode_1(&client_config(ip(25), 18), [7; 8]);
    pair.server
        .handle_datagram(now, SERVER, SocketAddr::new(IpAddr::V4(ip(25)), 500), &mm1);
    assert!(pair.server.stored_sa_payload_bytes() > 0);
    // ... and dropped once phase 1 is up (an insider's 64 KiB offer is not kept for a day).
    let before = pair.server.stored_sa_payload_bytes();
    connect(&mut pair, c);
    assert_eq!(pair.server.phase1_count(), 2);
    assert_eq!(pair.server.stored_sa_payload_bytes(), before);
}

#[test]
fn a_quick_mode_whose_message_3_never_comes_expires() {
    let mut pair = Pair::new(server_config(), 16);
    let c = pair.add_client(client_config(ip(23), 16), None);
    connect(&mut pair, c);
    // Every later Quick Mode message to the server after the rekey's message 1 is lost: its
    // message 3 (and the repeats our retransmitted message 2 asks for) never arrive.
    let mut quick_seen = 0;
    pair.filter = Some(Box::new(move |dir, data| {
        if matches!(dir, Direction::ToServer(_)) && exchange_of(data) == Some(exchange::QUICK) {
            quick_seen += 1;
            return quick_seen > 1;
        }
        false
    }));
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().rekey_child(now));
    pair.advance(Duration::from_secs(5));
    assert_eq!(pair.server.pending_quick_modes(), 1);
    // After our last retransmission of message 2 it is dropped, and its slot is free again.
    pair.advance(Duration::from_secs(90));
    assert_eq!(pair.server.pending_quick_modes(), 0, "{}", dump(&pair));
    assert_eq!(pair.server.stats().quick_mode_expired, 1);
    // The phase 1 can still rekey.
    pair.filter = None;
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().rekey_child(now));
    assert!(
        pair.run_for(Duration::from_secs(30), |e| matches!(
            e,
            PairEvent::Client(i, InitiatorEvent::ChildSaUp(_)) if *i == c
        )),
        "{}",
        dump(&pair)
    );
}

#[test]
fn initiator_gives_up_after_its_retransmissions() {
    let mut pair = Pair::new(server_config(), 15);
    pair.filter = Some(Box::new(|dir, _| matches!(dir, Direction::ToClient(_))));
    let c = pair.add_client(client_config(ip(22), 15), None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!((stage, reason), (Stage::MainMode, FailReason::Timeout));
    assert_eq!(pair.clients[c].client.initiator().stats().retransmits, 5);
}

// ------------------------------------------------------------------------------------------------
// NAT traversal

#[test]
fn client_behind_nat_floats_and_uses_udp_encapsulated_transport() {
    let mut pair = Pair::new(server_config(), 16);
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 77));
    let private = Ipv4Addr::new(192, 168, 1, 10);
    let c = pair.add_client(client_config(private, 16), Some(nat));
    let (cc, sc) = connect(&mut pair, c);
    let (_, natinfo) = phase1_up(&pair, c).unwrap();
    assert!(
        natinfo.local_behind_nat && !natinfo.peer_behind_nat && natinfo.udp_encap,
        "{natinfo:?}"
    );
    assert_eq!(cc.encap_mode, wire::p2attr::MODE_UDP_TRANSPORT);
    assert!(sc.udp_encap);
    assert_eq!(sc.remote.ip(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)));
    assert_ne!(sc.remote.port(), 4500, "the NAT's mapping of port 4500");
    assert_eq!(sc.local.port(), 4500);
    assert_eq!(sc.peer_original, Some(IpAddr::V4(private)), "NAT-OAi");
    // RFC 3947 §5.2: the responder sends NAT-OAi = the address it sees, NAT-OAr = its own.
    assert_eq!(
        cc.peer_nat_oa,
        vec![
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)),
            IpAddr::V4(roadgate_tests::pair::SERVER_IP)
        ],
        "NAT-OA payloads of QM2"
    );
    let Some(Event::Phase1Up {
        nat: st, remote, ..
    }) = pair
        .server_events()
        .into_iter()
        .find(|e| matches!(e, Event::Phase1Up { .. }))
    else {
        panic!()
    };
    assert!(st.peer_behind_nat && !st.local_behind_nat, "{st:?}");
    assert_eq!(
        remote.port(),
        sc.remote.port(),
        "phase 1 floated to the 4500 mapping"
    );
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn force_encap_without_nat() {
    let mut pair = Pair::new(server_config(), 17);
    let mut cfg = client_config(ip(23), 17);
    cfg.force_encap = true;
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    let (_, natinfo) = phase1_up(&pair, c).unwrap();
    assert!(
        !natinfo.local_behind_nat && !natinfo.peer_behind_nat && natinfo.udp_encap,
        "{natinfo:?}"
    );
    assert_eq!(cc.encap_mode, wire::p2attr::MODE_UDP_TRANSPORT);
    assert!(sc.udp_encap);
    assert_eq!(sc.remote, SocketAddr::new(IpAddr::V4(ip(23)), 4500));
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn draft02_only_client_gets_draft_mode_and_payload_numbers() {
    let mut pair = Pair::new(server_config(), 18);
    let kinds = Rc::new(RefCell::new(Vec::<u8>::new()));
    let k2 = kinds.clone();
    pair.filter = Some(Box::new(move |dir, data| {
        // Unencrypted Main Mode from the server: record the payload types (MM2, MM4).
        if let (Direction::ToClient(_), Some(h)) = (dir, Header::parse(data))
            && h.exchange == exchange::MAIN
            && h.flags & 1 == 0
            && let Ok((items, _)) = wire::parse_chain(h.next, &data[wire::HEADER_LEN..])
        {
            k2.borrow_mut().extend(items.iter().map(|p| p.kind));
        }
        false
    }));
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 78));
    let mut cfg = client_config(Ipv4Addr::new(10, 1, 1, 2), 18);
    cfg.natt_vids = NattVids::Draft02Only;
    let c = pair.add_client(cfg, Some(nat));
    let (cc, sc) = connect(&mut pair, c);
    let kinds = kinds.borrow().clone();
    assert!(
        kinds.contains(&payload::NAT_D_DRAFT),
        "server's MM4 payloads {kinds:?}"
    );
    assert!(
        !kinds.contains(&payload::NAT_D),
        "server's MM4 payloads {kinds:?}"
    );
    assert_eq!(cc.encap_mode, wire::p2attr::MODE_UDP_TRANSPORT_DRAFT);
    assert!(sc.udp_encap);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn two_clients_behind_one_nat_with_initial_contact_and_own_ids() {
    let mut pair = Pair::new(server_config(), 45);
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 82));
    let a = pair.add_client(
        client_config(Ipv4Addr::new(192, 168, 0, 100), 45),
        Some(nat),
    );
    let (ac, asc) = connect(&mut pair, a);
    let b = pair.add_client(
        client_config(Ipv4Addr::new(192, 168, 0, 101), 46),
        Some(nat),
    );
    let (bc, bsc) = connect(&mut pair, b);
    assert!(server_downs(&pair).is_empty(), "{:?}", server_downs(&pair));
    check_esp(&mut pair, a, &ac, &asc);
    check_esp(&mut pair, b, &bc, &bsc);
}

#[test]
fn two_clients_behind_one_nat_get_independent_sas() {
    let mut pair = Pair::new(server_config(), 19);
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 79));
    let private = Ipv4Addr::new(192, 168, 0, 100);
    // Two home networks behind a carrier-grade NAT: same private address, same ID, both sending
    // INITIAL-CONTACT as Windows does.
    let a = pair.add_client(client_config(private, 19), Some(nat));
    let (ac, asc) = connect(&mut pair, a);
    let b = pair.add_client(client_config(private, 20), Some(nat));
    let (bc, bsc) = connect(&mut pair, b);
    assert_ne!(asc.inbound_spi, bsc.inbound_spi);
    assert_ne!(asc.remote, bsc.remote);
    assert_eq!(asc.remote.ip(), bsc.remote.ip());
    assert!(
        server_downs(&pair).is_empty(),
        "the second client's INITIAL-CONTACT removed the first one's SAs: {:?}",
        server_downs(&pair)
    );
    check_esp(&mut pair, a, &ac, &asc);
    check_esp(&mut pair, b, &bc, &bsc);
}

#[test]
fn two_clients_behind_one_nat_without_initial_contact() {
    let mut pair = Pair::new(server_config(), 20);
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 80));
    let private = Ipv4Addr::new(192, 168, 0, 100);
    let mut ca = client_config(private, 21);
    ca.initial_contact = false;
    let mut cb = client_config(private, 22);
    cb.initial_contact = false;
    let a = pair.add_client(ca, Some(nat));
    let (ac, asc) = connect(&mut pair, a);
    let b = pair.add_client(cb, Some(nat));
    let (bc, bsc) = connect(&mut pair, b);
    assert!(server_downs(&pair).is_empty(), "{:?}", server_downs(&pair));
    check_esp(&mut pair, a, &ac, &asc);
    check_esp(&mut pair, b, &bc, &bsc);
    // Each client's traffic arrives on its own SA from its own mapping.
    let from: Vec<(u32, SocketAddr)> = pair
        .log
        .iter()
        .filter_map(|e| match e {
            PairEvent::ServerL2tp { spi, from, .. } => Some((*spi, *from)),
            _ => None,
        })
        .collect();
    assert!(
        from.contains(&(asc.inbound_spi, asc.remote))
            && from.contains(&(bsc.inbound_spi, bsc.remote))
    );
}

// ------------------------------------------------------------------------------------------------
// an unreliable network

#[test]
fn loss_duplication_and_reordering_still_complete() {
    for seed in 0..100u64 {
        let mut pair = Pair::new(server_config(), 1000 + seed);
        pair.link.loss = 0.15;
        pair.link.duplicate = 0.15;
        pair.link.reorder = 0.3;
        let nat = (seed % 2 == 0).then(|| pair.add_nat(Ipv4Addr::new(192, 0, 2, 81)));
        let mut cfg = client_config(Ipv4Addr::new(10, 0, 0, 5), seed);
        cfg.pfs = (seed % 3 == 0).then_some(DhGroup::Ecp256);
        cfg.retransmit_tries = 8;
        let c = pair.add_client(cfg, nat);
        let Some((cc, sc)) = pair.connect(c) else {
            panic!("seed {seed}: no connection; log:\n{}", dump(&pair))
        };
        // The client may have taken a duplicated or retransmitted reply: the SAs must still agree.
        assert!(
            client_failure(&pair, c).is_none(),
            "seed {seed}: {:?}",
            client_failure(&pair, c)
        );
        pair.link.loss = 0.0;
        pair.link.duplicate = 0.0;
        pair.link.reorder = 0.0;
        check_esp(&mut pair, c, &cc, &sc);
        assert_eq!(pair.server.child_count(), 1, "seed {seed}");
    }
}

/// Drops the first `n` datagrams toward clients that satisfy `pick`.
fn drop_first(n: usize, pick: impl Fn(&Header) -> bool + 'static) -> Filter {
    let mut left = n;
    Box::new(move |dir, data| {
        let ike = if data.starts_with(&[0, 0, 0, 0]) {
            &data[4..]
        } else {
            data
        };
        match (dir, Header::parse(ike)) {
            (Direction::ToClient(_), Some(h)) if left > 0 && pick(&h) => {
                left -= 1;
                true
            }
            _ => false,
        }
    })
}

#[test]
fn a_repeated_request_gets_the_last_reply_again() {
    let mut pair = Pair::new(server_config(), 21);
    // Lose MM4 once: the client repeats MM3 and the server must answer it again.
    let mut seen_main = 0;
    pair.filter = Some(Box::new(move |dir, data| {
        let ike = if data.starts_with(&[0, 0, 0, 0]) {
            &data[4..]
        } else {
            data
        };
        if let (Direction::ToClient(_), Some(h)) = (dir, Header::parse(ike))
            && h.exchange == exchange::MAIN
        {
            seen_main += 1;
            return seen_main == 2;
        }
        false
    }));
    let c = pair.add_client(client_config(ip(24), 21), None);
    let (cc, sc) = connect(&mut pair, c);
    assert!(
        pair.server.stats().duplicates_resent >= 1,
        "{:?}",
        pair.server.stats()
    );
    assert!(pair.clients[c].client.initiator().stats().retransmits >= 1);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn lost_qm3_is_repeated_when_qm2_comes_again() {
    let mut pair = Pair::new(server_config(), 22);
    let mut left = 1;
    pair.filter = Some(Box::new(move |dir, data| {
        let ike = if data.starts_with(&[0, 0, 0, 0]) {
            &data[4..]
        } else {
            data
        };
        if let (Direction::ToServer(_), Some(h)) = (dir, Header::parse(ike)) {
            // QM3 is the short Quick Mode message of the initiator (only HASH(3)).
            if h.exchange == exchange::QUICK && h.length < 100 && left > 0 {
                left -= 1;
                return true;
            }
        }
        false
    }));
    let c = pair.add_client(client_config(ip(25), 22), None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(pair.clients[c].client.initiator().stats().qm3_resent, 1);
    assert!(pair.server.stats().retransmits >= 1);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn lost_mm2_is_recovered_by_repeating_mm1() {
    let mut pair = Pair::new(server_config(), 23);
    pair.filter = Some(drop_first(1, |h| h.exchange == exchange::MAIN));
    let c = pair.add_client(client_config(ip(26), 23), None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(
        pair.server.phase1_count(),
        1,
        "a repeated MM1 must not make a second SA"
    );
    check_esp(&mut pair, c, &cc, &sc);
}

// ------------------------------------------------------------------------------------------------
// Quick Mode options and lifetimes

#[test]
fn pfs_in_quick_mode() {
    for (k, g) in [
        DhGroup::Modp2048,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Modp1536,
    ]
    .into_iter()
    .enumerate()
    {
        let mut pair = Pair::new(server_config(), 24 + k as u64);
        let mut cfg = client_config(ip(27), 24 + k as u64);
        cfg.pfs = Some(g);
        let c = pair.add_client(cfg, None);
        let (cc, sc) = connect(&mut pair, c);
        assert!(cc.pfs);
        check_esp(&mut pair, c, &cc, &sc);
    }
}

#[test]
fn commit_bit_gets_connected() {
    let mut pair = Pair::new(server_config(), 28);
    let mut cfg = client_config(ip(28), 28);
    cfg.commit_bit = true;
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn commit_bit_connected_is_repeated_when_lost() {
    let mut pair = Pair::new(server_config(), 46);
    // Lose the server's CONNECTED (the only Quick Mode message it sends after QM2) once.
    let mut quick_seen = 0;
    pair.filter = Some(Box::new(move |dir, data| {
        let ike = if data.starts_with(&[0, 0, 0, 0]) {
            &data[4..]
        } else {
            data
        };
        if let (Direction::ToClient(_), Some(h)) = (dir, Header::parse(ike))
            && h.exchange == exchange::QUICK
        {
            quick_seen += 1;
            return quick_seen == 2;
        }
        false
    }));
    let mut cfg = client_config(ip(46), 46);
    cfg.commit_bit = true;
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn client_lifetime_is_accepted() {
    let mut pair = Pair::new(server_config(), 29);
    let mut cfg = client_config(ip(29), 29);
    cfg.lifetimes.p1_seconds = Some(3600);
    cfg.lifetimes.p2_seconds = Some(3600);
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(sc.lifetime, Duration::from_secs(3600));
    assert_eq!(cc.responder_lifetime, None);
    assert!(!cc.transform_altered);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn long_lifetime_is_capped_with_responder_lifetime() {
    let mut pair = Pair::new(server_config(), 30);
    let mut cfg = client_config(ip(30), 30);
    cfg.lifetimes.p1_seconds = Some(30 * 86_400);
    cfg.lifetimes.p2_seconds = Some(30 * 86_400);
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    let max = server_config().phase2.max_lifetime;
    assert_eq!(sc.lifetime, max);
    assert_eq!(
        cc.responder_lifetime.and_then(|l| l.seconds),
        Some(max.as_secs()),
        "{cc:?}"
    );
    assert!(
        !cc.transform_altered,
        "the transform must come back unchanged (RFC 2407 §4.5.4)"
    );
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn kilobyte_lifetime() {
    let mut pair = Pair::new(server_config(), 31);
    let mut cfg = client_config(ip(31), 31);
    cfg.lifetimes.p2_kilobytes = Some(250_000);
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(sc.lifetime_kb, Some(250_000));
    assert_eq!(cc.returned_lifetime.kilobytes, Some(250_000));
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn server_kilobyte_cap_is_announced() {
    let mut server = server_config();
    server.phase2.max_lifetime_kb = Some(100_000);
    let mut pair = Pair::new(server, 32);
    let mut cfg = client_config(ip(32), 32);
    cfg.lifetimes.p2_kilobytes = Some(1_000_000);
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(sc.lifetime_kb, Some(100_000));
    assert_eq!(
        cc.responder_lifetime.and_then(|l| l.kilobytes),
        Some(100_000),
        "{cc:?}"
    );
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn child_sa_expires_on_the_server() {
    let mut pair = Pair::new(server_config(), 33);
    let mut cfg = client_config(ip(33), 33);
    cfg.lifetimes.p2_seconds = Some(600);
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    let spi = sc.inbound_spi;
    assert!(pair.run_for(Duration::from_secs(700), |e| matches!(e, PairEvent::Server(Event::ChildSaDown { inbound_spi, reason: DownReason::Expired, .. }) if *inbound_spi == spi)));
    assert!(pair.elapsed() >= Duration::from_secs(600));
    pair.advance(Duration::from_secs(1));
    // The Delete reached the client, naming the server's own SPI (RFC 2408 §3.15).
    assert_eq!(
        pair.clients[c]
            .client
            .initiator()
            .stats()
            .deletes_by_sender_spi,
        1
    );
    assert!(pair.client_events(c).iter().any(|e| matches!(e, InitiatorEvent::Deleted(Deleted::Child { inbound_spi, by_peer: true, .. }) if *inbound_spi == cc.inbound_spi)));
}

// ------------------------------------------------------------------------------------------------
// rekeying

#[test]
fn phase2_rekey_under_traffic() {
    let mut pair = Pair::new(server_config(), 34);
    let c = pair.add_client(client_config(ip(34), 34), None);
    let (old_c, old_s) = connect(&mut pair, c);
    check_esp(&mut pair, c, &old_c, &old_s);
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().rekey_child(now));
    let mut new_c = None;
    let mut new_s: Option<ChildSa> = None;
    pair.run_until(|e| {
        match e {
            PairEvent::Client(_, InitiatorEvent::ChildSaUp(i)) => new_c = Some((**i).clone()),
            PairEvent::Server(Event::ChildSaUp(ch)) => new_s = Some((**ch).clone()),
            _ => {}
        }
        new_c.is_some() && new_s.is_some()
    });
    let (new_c, new_s) = (new_c.expect("client rekey"), new_s.expect("server rekey"));
    assert_eq!(new_c.replaces, Some(old_c.inbound_spi));
    assert_eq!(
        new_s.replaces,
        vec![old_s.inbound_spi],
        "ChildSaUp.replaces names the old SPI"
    );
    assert!(server_downs(&pair).is_empty());
    // Traffic still in flight on the old SA is accepted until the Delete.
    check_esp(&mut pair, c, &old_c, &old_s);
    check_esp(&mut pair, c, &new_c, &new_s);
    assert!(
        pair.client(c)
            .initiator_mut()
            .delete_child(old_c.inbound_spi)
    );
    let old_spi = old_s.inbound_spi;
    assert!(pair.run_for(Duration::from_secs(5), |e| matches!(e, PairEvent::Server(Event::ChildSaDown { inbound_spi, reason: DownReason::PeerDeleted, .. }) if *inbound_spi == old_spi)));
    check_esp(&mut pair, c, &new_c, &new_s);
    assert_eq!(
        server_downs(&pair),
        vec![(old_spi, DownReason::PeerDeleted)]
    );
    assert_eq!(pair.server.child_count(), 1);
}

#[test]
fn phase1_rekey_keeps_the_ipsec_sas() {
    phase1_rekey_case(false);
}

#[test]
fn phase1_rekey_behind_nat_keeps_the_ipsec_sas() {
    phase1_rekey_case(true);
}

fn phase1_rekey_case(behind_nat: bool) {
    let mut pair = Pair::new(server_config(), 35);
    let nat = behind_nat.then(|| pair.add_nat(Ipv4Addr::new(192, 0, 2, 85)));
    let c = pair.add_client(
        client_config(
            if behind_nat {
                Ipv4Addr::new(192, 168, 4, 4)
            } else {
                ip(35)
            },
            35,
        ),
        nat,
    );
    let (cc, sc) = connect(&mut pair, c);
    let old = pair.clients[c].client.initiator().isakmp_cookies().unwrap();
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().rekey_phase1(now));
    assert!(
        pair.run_until(|e| matches!(e, PairEvent::Server(Event::Phase1Down { .. }))),
        "{}",
        dump(&pair)
    );
    assert_eq!(server_p1_downs(&pair), vec![DownReason::PeerDeleted]);
    let new = pair.clients[c].client.initiator().isakmp_cookies().unwrap();
    assert_ne!(old, new);
    assert_eq!(pair.server.phase1_count(), 1);
    assert!(
        server_downs(&pair).is_empty(),
        "phase-1 rekey cut IPsec SAs: {:?}",
        server_downs(&pair)
    );
    check_esp(&mut pair, c, &cc, &sc);
    // The new ISAKMP SA carries Quick Mode, DPD and Deletes of the old IPsec SAs.
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().rekey_child(now));
    let mut got = None;
    pair.run_until(|e| {
        if let PairEvent::Server(Event::ChildSaUp(ch)) = e {
            got = Some((**ch).clone());
        }
        got.is_some()
    });
    assert_eq!(
        got.expect("QM under the new SA").replaces,
        vec![sc.inbound_spi]
    );
    let seq = pair.client(c).initiator_mut().send_dpd().unwrap();
    assert!(pair.run_for(
        Duration::from_secs(5),
        |e| matches!(e, PairEvent::Client(_, InitiatorEvent::DpdAck { seq: s }) if *s == seq)
    ));
    assert!(pair.client(c).initiator_mut().delete_child(cc.inbound_spi));
    let spi = sc.inbound_spi;
    assert!(pair.run_for(Duration::from_secs(5), |e| matches!(e, PairEvent::Server(Event::ChildSaDown { inbound_spi, .. }) if *inbound_spi == spi)));
}

// ------------------------------------------------------------------------------------------------
// deletes, INITIAL-CONTACT, DPD

#[test]
fn delete_of_an_ipsec_sa_and_of_the_isakmp_sa() {
    let mut pair = Pair::new(server_config(), 36);
    let c = pair.add_client(client_config(ip(36), 36), None);
    let (cc, sc) = connect(&mut pair, c);
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().new_child(now));
    let mut second = None;
    pair.run_until(|e| {
        if let PairEvent::Server(Event::ChildSaUp(ch)) = e {
            second = Some((**ch).clone());
        }
        second.is_some()
    });
    let second = second.unwrap();
    assert!(pair.client(c).initiator_mut().delete_child(cc.inbound_spi));
    let spi = sc.inbound_spi;
    assert!(pair.run_for(Duration::from_secs(5), |e| matches!(e, PairEvent::Server(Event::ChildSaDown { inbound_spi, reason: DownReason::PeerDeleted, .. }) if *inbound_spi == spi)));
    assert_eq!(pair.server.child_count(), 1);
    assert!(pair.client(c).initiator_mut().delete_isakmp());
    assert!(pair.run_for(Duration::from_secs(5), |e| matches!(
        e,
        PairEvent::Server(Event::Phase1Down {
            reason: DownReason::PeerDeleted,
            ..
        })
    )));
    assert_eq!(pair.server.phase1_count(), 0);
    // The server ends IPsec SAs that are left without any ISAKMP SA of their peer (its documented
    // choice: no rekey or DPD would be possible), with the reason of the ISAKMP SA's Delete.
    assert_eq!(
        server_downs(&pair),
        vec![
            (spi, DownReason::PeerDeleted),
            (second.inbound_spi, DownReason::PeerDeleted)
        ]
    );
    assert_eq!(pair.server.child_count(), 0);
    assert!(pair.server.stats().deletes_received >= 2);
}

#[test]
fn delete_all() {
    let mut pair = Pair::new(server_config(), 37);
    let c = pair.add_client(client_config(ip(37), 37), None);
    let (_, sc) = connect(&mut pair, c);
    pair.client(c).initiator_mut().delete_all();
    pair.run_for(Duration::from_secs(5), |_| false);
    assert_eq!(
        server_downs(&pair),
        vec![(sc.inbound_spi, DownReason::PeerDeleted)]
    );
    assert_eq!(server_p1_downs(&pair), vec![DownReason::PeerDeleted]);
    assert_eq!(
        (pair.server.phase1_count(), pair.server.child_count()),
        (0, 0)
    );
}

/// Behind NAT, a peer is (public address and port, ID): a client that comes back through a *new*
/// NAT mapping cannot be told from another customer of the same carrier-grade NAT with the same
/// private ID, so INITIAL-CONTACT leaves the old SAs alone; DPD removes them.
#[test]
fn initial_contact_through_a_new_nat_mapping_leaves_old_sas_to_dpd() {
    let mut pair = Pair::new(server_config(), 39);
    let n = pair.add_nat(Ipv4Addr::new(192, 0, 2, 85));
    let cfg = client_config(Ipv4Addr::new(192, 168, 3, 3), 39);
    let c = pair.add_client(cfg.clone(), Some(n));
    let (_, old) = connect(&mut pair, c);
    let mut rebooted = cfg;
    rebooted.seed = 77;
    pair.nats[n] = roadgate_tests::pair::Nat::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 85)), 50_000);
    pair.replace_client(c, rebooted);
    let (nc, ns) = connect(&mut pair, c);
    assert!(
        server_downs(&pair).is_empty(),
        "the other mapping's SAs must survive INITIAL-CONTACT"
    );
    assert_eq!(
        (pair.server.phase1_count(), pair.server.child_count()),
        (2, 2)
    );
    check_esp(&mut pair, c, &nc, &ns);
    // The old mapping stays silent: DPD declares it dead and removes exactly its SA.
    pair.run_for(Duration::from_secs(400), |_| false);
    assert!(
        server_downs(&pair).contains(&(old.inbound_spi, DownReason::DeadPeer)),
        "{:?}",
        server_downs(&pair)
    );
}

#[test]
fn initial_contact_from_a_rebooted_client_removes_its_old_sas() {
    for behind_nat in [false, true] {
        initial_contact_case(behind_nat);
    }
}

fn initial_contact_case(behind_nat: bool) {
    let mut pair = Pair::new(server_config(), 38);
    let nat = behind_nat.then(|| pair.add_nat(Ipv4Addr::new(192, 0, 2, 84)));
    let cfg = client_config(
        if behind_nat {
            Ipv4Addr::new(192, 168, 3, 3)
        } else {
            ip(38)
        },
        38,
    );
    let c = pair.add_client(cfg.clone(), nat);
    let (_, old) = connect(&mut pair, c);
    let mut rebooted = cfg;
    rebooted.seed = 99;
    // Behind NAT the client comes back through the same NAT mapping (same public port): the
    // server tells peers behind one NAT apart by that port (see the next test).
    pair.replace_client(c, rebooted);
    let (nc, ns) = connect(&mut pair, c);
    assert_ne!(ns.inbound_spi, old.inbound_spi);
    assert_eq!(
        server_downs(&pair),
        vec![(old.inbound_spi, DownReason::InitialContact)]
    );
    assert_eq!(server_p1_downs(&pair), vec![DownReason::InitialContact]);
    assert_eq!(
        (pair.server.phase1_count(), pair.server.child_count()),
        (1, 1)
    );
    check_esp(&mut pair, c, &nc, &ns);
}

#[test]
fn dpd_probe_of_a_silent_client_is_answered() {
    let mut pair = Pair::new(server_config(), 39);
    let c = pair.add_client(client_config(ip(39), 39), None);
    let _ = connect(&mut pair, c);
    let interval = server_config().dpd_interval.unwrap();
    assert!(
        pair.run_for(interval * 2, |e| matches!(
            e,
            PairEvent::Client(_, InitiatorEvent::DpdProbe { answered: true, .. })
        )),
        "no R-U-THERE from the server to a silent client"
    );
    assert!(pair.server.stats().dpd_sent >= 1);
    pair.advance(server_config().dpd_timeout * 3);
    assert!(server_downs(&pair).is_empty() && server_p1_downs(&pair).is_empty());
    assert_eq!(pair.server.stats().dpd_dead, 0);
}

#[test]
fn server_dpd_sequence_starts_random() {
    let mut first = Vec::new();
    for seed in [47u64, 48, 49] {
        let mut pair = Pair::new(server_config(), seed);
        let c = pair.add_client(client_config(ip(47), seed), None);
        let _ = connect(&mut pair, c);
        let mut seq = None;
        pair.run_for(Duration::from_secs(120), |e| {
            if let PairEvent::Client(_, InitiatorEvent::DpdProbe { seq: s, .. }) = e {
                seq = Some(*s);
            }
            seq.is_some()
        });
        first.push(seq.expect("an R-U-THERE"));
    }
    assert!(
        first.iter().all(|s| *s != 0 && *s < 0x8000_0000),
        "{first:?}"
    );
    assert!(first[0] != first[1] || first[1] != first[2], "{first:?}");
}

#[test]
fn nat_rebinding_moves_the_peer() {
    let mut pair = Pair::new(server_config(), 50);
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 83));
    let c = pair.add_client(client_config(Ipv4Addr::new(192, 168, 7, 7), 50), Some(nat));
    let (cc, sc) = connect(&mut pair, c);
    let old_remote = sc.remote;
    pair.nats[nat].flush();
    pair.nats[nat] =
        roadgate_tests::pair::Nat::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 83)), 40_000);
    // An authenticated IKE message from the new mapping.
    let seq = pair.client(c).initiator_mut().send_dpd().unwrap();
    assert!(
        pair.run_for(
            Duration::from_secs(5),
            |e| matches!(e, PairEvent::Client(_, InitiatorEvent::DpdAck { seq: s }) if *s == seq)
        ),
        "{}",
        dump(&pair)
    );
    let moved = pair.server_events().into_iter().find_map(|e| match e {
        Event::PeerMoved {
            remote,
            inbound_spis,
            ..
        } => Some((*remote, inbound_spis.clone())),
        _ => None,
    });
    let (remote, spis) = moved.expect("PeerMoved");
    assert_ne!(remote, old_remote);
    assert_eq!(remote.ip(), old_remote.ip());
    assert_eq!(spis, vec![sc.inbound_spi]);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn client_dpd_is_acknowledged() {
    let mut pair = Pair::new(server_config(), 40);
    let c = pair.add_client(client_config(ip(40), 40), None);
    let _ = connect(&mut pair, c);
    for _ in 0..3 {
        let seq = pair.client(c).initiator_mut().send_dpd().unwrap();
        assert!(pair.run_for(
            Duration::from_secs(5),
            |e| matches!(e, PairEvent::Client(_, InitiatorEvent::DpdAck { seq: s }) if *s == seq)
        ));
    }
}

#[test]
fn vanished_client_is_declared_dead() {
    let mut pair = Pair::new(server_config(), 41);
    let c = pair.add_client(client_config(ip(41), 41), None);
    let (_, sc) = connect(&mut pair, c);
    pair.clients[c].online = false;
    let cfg = server_config();
    let limit = cfg.dpd_interval.unwrap() + cfg.dpd_timeout + Duration::from_secs(60);
    pair.run_for(limit, |e| {
        matches!(e, PairEvent::Server(Event::Phase1Down { .. }))
    });
    assert_eq!(
        server_downs(&pair),
        vec![(sc.inbound_spi, DownReason::DeadPeer)]
    );
    assert_eq!(server_p1_downs(&pair), vec![DownReason::DeadPeer]);
    assert_eq!(pair.server.stats().dpd_dead, 1);
    assert!(
        pair.elapsed() >= cfg.dpd_timeout,
        "declared dead after {:?}",
        pair.elapsed()
    );
}

#[test]
fn esp_traffic_keeps_dpd_quiet() {
    let mut pair = Pair::new(server_config(), 42);
    let c = pair.add_client(client_config(ip(42), 42), None);
    let _ = connect(&mut pair, c);
    for _ in 0..20 {
        pair.client_send_l2tp(c, b"hello");
        pair.advance(Duration::from_secs(10));
    }
    assert_eq!(pair.server.stats().dpd_sent, 0);
}

// ------------------------------------------------------------------------------------------------
// half-open flood

#[test]
fn half_open_flood_does_not_stop_an_established_client() {
    let mut pair = Pair::new(server_config(), 43);
    let c = pair.add_client(client_config(ip(43), 43), None);
    let (cc, sc) = connect(&mut pair, c);
    let forged = client_config(ip(200), 1);
    // 5000 from as many addresses, 5000 from one.
    for n in 0..10_000u32 {
        let mut icky = [0u8; 8];
        icky[..4].copy_from_slice(&n.to_be_bytes());
        icky[4..].copy_from_slice(b"fake");
        let (mm1, _, _) = initiator::main_mode_1(&forged, icky);
        let src = if n < 5000 {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    (n >> 16) as u8 + 100,
                    (n >> 8) as u8,
                    n as u8,
                )),
                500,
            )
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 250)), 500)
        };
        pair.inject_to_server(src, 500, mm1);
    }
    let max_per_source = server_config().max_half_open_per_source;
    assert!(pair.server.half_open_count() <= 5000 + max_per_source);
    // Random early drop (above half of max_half_open) takes some of the one source's first
    // messages before its own limit does.
    let st = pair.server.stats();
    assert!(
        st.half_open_source_limited + st.early_dropped >= (5000 - max_per_source) as u64,
        "{:?}",
        pair.server.stats()
    );
    // The established client still gets Quick Mode and DPD through.
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().rekey_child(now));
    assert!(
        pair.run_for(Duration::from_secs(10), |e| matches!(
            e,
            PairEvent::Client(_, InitiatorEvent::ChildSaUp(_))
        )),
        "{}",
        dump(&pair)
    );
    let seq = pair.client(c).initiator_mut().send_dpd().unwrap();
    assert!(pair.run_for(
        Duration::from_secs(5),
        |e| matches!(e, PairEvent::Client(_, InitiatorEvent::DpdAck { seq: s }) if *s == seq)
    ));
    check_esp(&mut pair, c, &cc, &sc);
    // A new client gets in once the half-open SAs expire.
    pair.advance(server_config().half_open_timeout + Duration::from_secs(5));
    assert_eq!(pair.server.half_open_count(), 0);
    // Every message 1 that was let in (not refused by a limit or random early drop) expired.
    let st = pair.server.stats();
    assert!(
        st.half_open_expired + st.half_open_source_limited + st.early_dropped >= 10_000,
        "{st:?}"
    );
    let d = pair.add_client(client_config(ip(44), 44), None);
    let (dc, ds) = connect(&mut pair, d);
    check_esp(&mut pair, d, &dc, &ds);
}

/// A flood from spoofed addresses fills the half-open table and keeps it full (none of them ever
/// sends message 3): a real client still connects during the flood, because a full table evicts
/// the oldest handshake that waits for message 3.
#[test]
fn a_full_half_open_table_evicts_for_a_real_client() {
    let mut cfg = server_config();
    cfg.max_half_open = 256;
    let max = cfg.max_half_open;
    let mut pair = Pair::new(cfg, 47);
    let forged = client_config(ip(202), 1);
    let mut n = 0u32;
    let mut flood = |pair: &mut Pair, count: u32| {
        for _ in 0..count {
            let mut icky = [0u8; 8];
            icky[..4].copy_from_slice(&n.to_be_bytes());
            icky[4..].copy_from_slice(b"spof");
            let (mm1, _, _) = initiator::main_mode_1(&forged, icky);
            let src = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 200, (n >> 8) as u8, n as u8)),
                500,
            );
            pair.inject_to_server(src, 500, mm1);
            n += 1;
        }
    };
    flood(&mut pair, 4 * max as u32);
    assert_eq!(pair.server.half_open_count(), max);
    let evicted_before = pair.server.stats().half_open_evicted;
    assert!(evicted_before > 0, "{:?}", pair.server.stats());
    // The client starts while the table is full, and the flood goes on between its messages.
    let c = pair.add_client(client_config(ip(45), 45), None);
    flood(&mut pair, 50);
    let (cc, sc) = connect(&mut pair, c);
    check_esp(&mut pair, c, &cc, &sc);
    flood(&mut pair, 50);
    assert!(pair.server.half_open_count() <= max);
    assert!(pair.server.stats().half_open_evicted > evicted_before);
    // The flood's entries were pushed out, never the client's SA, which is up (and not half-open).
    assert_eq!(
        pair.server.phase1_count(),
        pair.server.half_open_count() + 1
    );
    // An evicted SA leaves no deadline behind: one per phase 1 and per IPsec SA, however many
    // came and went (a lazily pruned heap held two per evicted SA until its half-open timeout).
    let live = pair.server.phase1_count() + pair.server.child_count();
    assert!(
        pair.server.timer_count() <= live,
        "{} timers for {live} SAs",
        pair.server.timer_count()
    );
}

#[test]
fn half_open_flood_from_one_address_is_limited() {
    let mut cfg = server_config();
    cfg.max_half_open_per_source = 16;
    let mut pair = Pair::new(cfg, 44);
    let forged = client_config(ip(201), 1);
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 251)), 500);
    for n in 0..1000u32 {
        let mut icky = [1u8; 8];
        icky[..4].copy_from_slice(&n.to_be_bytes());
        let (mm1, _, _) = initiator::main_mode_1(&forged, icky);
        pair.inject_to_server(src, 500, mm1);
    }
    assert_eq!(pair.server.half_open_count(), 16);
    assert_eq!(pair.server.stats().half_open_source_limited, 1000 - 16);
    assert_eq!(pair.server.stats().half_open_limited, 0);
    // Other addresses still get in.
    let c = pair.add_client(client_config(ip(45), 45), None);
    let (cc, sc) = connect(&mut pair, c);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn config_type_is_usable() {
    // Guards the harness against silent Config field renames.
    let c = Config {
        natt_port: 4500,
        ..server_config()
    };
    assert_eq!(c.natt_port, 4500);
    let _ = InitiatorConfig::new(
        SocketAddr::new(IpAddr::V4(ip(1)), 500),
        SocketAddr::new(IpAddr::V4(ip(2)), 500),
        b"k",
    );
}

// ------------------------------------------------------------------------------------------------
// selectors and modes

#[test]
fn quick_mode_without_ids_uses_the_addresses() {
    let mut pair = Pair::new(server_config(), 51);
    let mut cfg = client_config(ip(51), 51);
    cfg.send_ids = false;
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    assert_eq!(sc.remote_selector.first, IpAddr::V4(ip(51)));
    check_esp(&mut pair, c, &cc, &sc);
}

fn tunnel_selectors(client: Ipv4Addr) -> (wire::Id, wire::Id) {
    let mut subnet = Ipv4Addr::new(10, 10, 0, 0).octets().to_vec();
    subnet.extend_from_slice(&Ipv4Addr::new(255, 255, 0, 0).octets());
    (
        wire::Id::ipv4(client, 0, 0),
        wire::Id {
            id_type: wire::id_type::IPV4_ADDR_SUBNET,
            protocol: 0,
            port: 0,
            data: subnet,
        },
    )
}

#[test]
fn tunnel_mode_is_refused_without_tunnel_networks() {
    let mut pair = Pair::new(server_config(), 52);
    let mut cfg = client_config(ip(52), 52);
    cfg.mode = initiator::Mode::Tunnel;
    cfg.selectors = Some(tunnel_selectors(ip(52)));
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(stage, Stage::QuickMode);
    assert!(
        matches!(
            reason,
            FailReason::PeerNotify(notify::NO_PROPOSAL_CHOSEN | notify::INVALID_ID_INFORMATION)
        ),
        "{reason:?}"
    );
    assert_eq!(pair.server.child_count(), 0);
}

#[test]
fn tunnel_mode_with_a_tunnel_network() {
    let mut server = server_config();
    server.phase2.tunnel_local = vec![(IpAddr::V4(Ipv4Addr::new(10, 10, 0, 0)), 16)];
    let mut pair = Pair::new(server, 53);
    let nat = pair.add_nat(Ipv4Addr::new(192, 0, 2, 86));
    let private = Ipv4Addr::new(192, 168, 5, 5);
    let mut cfg = client_config(private, 53);
    cfg.mode = initiator::Mode::Tunnel;
    cfg.selectors = Some(tunnel_selectors(private));
    let c = pair.add_client(cfg, Some(nat));
    let (cc, sc) = connect(&mut pair, c);
    assert!(sc.tunnel && sc.udp_encap);
    assert_eq!(cc.encap_mode, wire::p2attr::MODE_UDP_TUNNEL);
    assert!(
        cc.peer_nat_oa.is_empty(),
        "no NAT-OA in tunnel mode (RFC 3947 §5.2)"
    );
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn server_behind_a_one_to_one_nat() {
    let mut pair = Pair::new(server_config(), 54);
    let public = Ipv4Addr::new(192, 0, 2, 200);
    pair.server_public_ip = Some(IpAddr::V4(public));
    let mut cfg = client_config(ip(54), 54);
    cfg.server = SocketAddr::new(IpAddr::V4(public), 500);
    let c = pair.add_client(cfg, None);
    let (cc, sc) = connect(&mut pair, c);
    let (_, natinfo) = phase1_up(&pair, c).unwrap();
    assert!(
        natinfo.peer_behind_nat && !natinfo.local_behind_nat && natinfo.udp_encap,
        "{natinfo:?}"
    );
    let Some(Event::Phase1Up { nat: st, .. }) = pair
        .server_events()
        .into_iter()
        .find(|e| matches!(e, Event::Phase1Up { .. }))
    else {
        panic!()
    };
    assert!(st.local_behind_nat && !st.peer_behind_nat, "{st:?}");
    assert!(sc.udp_encap);
    assert_eq!(cc.encap_mode, wire::p2attr::MODE_UDP_TRANSPORT);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn quick_mode_for_another_server_address_is_refused() {
    let mut pair = Pair::new(server_config(), 55);
    let mut cfg = client_config(ip(55), 55);
    cfg.selectors = Some((
        wire::Id::ipv4(ip(55), 17, 1701),
        wire::Id::ipv4(Ipv4Addr::new(203, 0, 113, 99), 17, 1701),
    ));
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(stage, Stage::QuickMode);
    assert!(
        matches!(
            reason,
            FailReason::PeerNotify(notify::INVALID_ID_INFORMATION | notify::NO_PROPOSAL_CHOSEN)
        ),
        "{reason:?}"
    );
    assert_eq!(pair.server.child_count(), 0);
}

#[test]
fn many_clients_at_once_over_a_lossy_link() {
    let mut pair = Pair::new(server_config(), 56);
    pair.link.loss = 0.05;
    pair.link.reorder = 0.2;
    let nats = [
        pair.add_nat(Ipv4Addr::new(192, 0, 2, 90)),
        pair.add_nat(Ipv4Addr::new(192, 0, 2, 91)),
    ];
    let mut ids = Vec::new();
    for k in 0..40u8 {
        let (addr, nat) = match k % 3 {
            0 => (ip(100 + k), None),
            n => (
                Ipv4Addr::new(192, 168, 10, 10 + k),
                Some(nats[usize::from(n) - 1]),
            ),
        };
        let mut cfg = client_config(addr, 1000 + u64::from(k));
        cfg.ike_proposals = vec![P1Proposal::new(
            CIPHERS[usize::from(k) % 2],
            HASHES[usize::from(k) % 4],
            GROUPS[usize::from(k) % 7],
        )];
        cfg.retransmit_tries = 8;
        ids.push(pair.add_client(cfg, nat));
    }
    let mut up = std::collections::HashSet::new();
    pair.run_until(|e| {
        if let PairEvent::Client(i, InitiatorEvent::ChildSaUp(_)) = e {
            up.insert(*i);
        }
        up.len() == ids.len()
    });
    assert_eq!(up.len(), ids.len(), "{}", dump(&pair));
    pair.advance(Duration::from_secs(10));
    assert_eq!(pair.server.child_count(), ids.len());
    assert_eq!(pair.server.phase1_count(), ids.len());
    pair.link.loss = 0.0;
    pair.link.reorder = 0.0;
    for &i in &ids {
        let cc = pair.clients[i].client.children()[0].clone();
        let sc = pair.server_sas[&cc.outbound_spi].child.clone();
        check_esp(&mut pair, i, &cc, &sc);
    }
}

#[test]
fn quick_mode_claiming_another_client_address_is_refused() {
    let mut pair = Pair::new(server_config(), 57);
    let mut cfg = client_config(ip(57), 57);
    // Transport mode without NAT: IDci must be the address the client talks from.
    cfg.selectors = Some((
        wire::Id::ipv4(ip(58), 17, 1701),
        wire::Id::ipv4(roadgate_tests::pair::SERVER_IP, 17, 1701),
    ));
    let c = pair.add_client(cfg, None);
    let (stage, reason) = run_to_failure(&mut pair, c);
    assert_eq!(stage, Stage::QuickMode);
    assert!(
        matches!(
            reason,
            FailReason::PeerNotify(notify::INVALID_ID_INFORMATION | notify::NO_PROPOSAL_CHOSEN)
        ),
        "{reason:?}"
    );
    assert_eq!(pair.server.child_count(), 0);
}

#[test]
fn no_dpd_probes_for_a_client_without_the_dpd_vendor_id() {
    let mut pair = Pair::new(server_config(), 58);
    let mut cfg = client_config(ip(59), 58);
    cfg.dpd = false;
    let c = pair.add_client(cfg, None);
    let _ = connect(&mut pair, c);
    pair.advance(Duration::from_secs(600));
    assert_eq!(pair.server.stats().dpd_sent, 0);
    assert!(
        !pair
            .client_events(c)
            .iter()
            .any(|e| matches!(e, InitiatorEvent::DpdProbe { .. }))
    );
    assert!(server_downs(&pair).is_empty());
}

/// CLIENTS.md §1.3: Windows refuses a server behind NAT (error 809) unless its registry is
/// changed. With `windows_nat_workaround` the server answers NAT-D so that Windows sees only
/// itself behind NAT; the server knows the truth and both sides use UDP encapsulation.
#[test]
fn windows_client_and_a_server_behind_nat() {
    for workaround in [true, false] {
        let mut cfg = server_config();
        cfg.windows_nat_workaround = workaround;
        let mut pair = Pair::new(cfg, 56);
        let public = Ipv4Addr::new(192, 0, 2, 201);
        pair.server_public_ip = Some(IpAddr::V4(public));
        let mut ccfg = client_config(ip(56), 56);
        ccfg.server = SocketAddr::new(IpAddr::V4(public), 500);
        ccfg.vendor_ids = vec![vid::MS_NT5_V9.to_vec(), vid::FRAGMENTATION.to_vec()];
        let c = pair.add_client(ccfg, None);
        let (cc, sc) = connect(&mut pair, c);
        let (_, seen_by_client) = phase1_up(&pair, c).unwrap();
        let Some(Event::Phase1Up {
            nat: seen_by_server,
            ..
        }) = pair
            .server_events()
            .into_iter()
            .find(|e| matches!(e, Event::Phase1Up { .. }))
        else {
            panic!("no Phase1Up")
        };
        assert!(
            seen_by_server.local_behind_nat,
            "the server knows it is behind NAT"
        );
        assert!(pair.server.server_behind_nat());
        if workaround {
            assert!(
                seen_by_client.local_behind_nat && !seen_by_client.peer_behind_nat,
                "Windows must see only itself behind NAT: {seen_by_client:?}"
            );
        } else {
            assert!(
                seen_by_client.peer_behind_nat && !seen_by_client.local_behind_nat,
                "strict NAT-D: {seen_by_client:?}"
            );
        }
        assert!(seen_by_client.udp_encap && sc.udp_encap);
        assert_eq!(cc.encap_mode, wire::p2attr::MODE_UDP_TRANSPORT);
        check_esp(&mut pair, c, &cc, &sc);
    }
}

/// The workaround is for Windows only: a strongSwan-like client behind nothing, talking to a
/// server behind NAT, gets the true NAT-D.
#[test]
fn non_windows_client_gets_true_nat_d_from_a_server_behind_nat() {
    let mut pair = Pair::new(server_config(), 57);
    let public = Ipv4Addr::new(192, 0, 2, 202);
    pair.server_public_ip = Some(IpAddr::V4(public));
    let mut ccfg = client_config(ip(57), 57);
    ccfg.server = SocketAddr::new(IpAddr::V4(public), 500);
    let c = pair.add_client(ccfg, None);
    let (cc, sc) = connect(&mut pair, c);
    let (_, seen_by_client) = phase1_up(&pair, c).unwrap();
    assert!(
        seen_by_client.peer_behind_nat && !seen_by_client.local_behind_nat,
        "{seen_by_client:?}"
    );
    check_esp(&mut pair, c, &cc, &sc);
}

/// An authenticated peer cannot make the server hold unbounded IPsec SAs: past 64 its Quick
/// Modes are refused (and counted), and the SAs it already has keep working.
#[test]
fn ipsec_sas_per_peer_are_bounded() {
    let mut pair = Pair::new(server_config(), 58);
    let c = pair.add_client(client_config(ip(58), 58), None);
    let (first_c, first_s) = connect(&mut pair, c);
    for _ in 0..70 {
        let now = pair.now;
        assert!(pair.client(c).initiator_mut().new_child(now));
        pair.run_for(Duration::from_secs(3), |_| false);
    }
    assert_eq!(pair.server.child_count(), 64);
    assert!(
        pair.server.stats().quick_mode_refused >= 6,
        "{:?}",
        pair.server.stats()
    );
    check_esp(&mut pair, c, &first_c, &first_s);
}

// ------------------------------------------------------------------------------------------------
// flood limits and handshake jobs, on a bare responder with a fake clock

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 500);

/// Main Mode message 1 from a forged initiator (MODP-4096 offered, as the measured attack did).
fn forged_mm1(n: u32) -> ([u8; 8], Vec<u8>) {
    forged_mm1_group(n, DhGroup::Modp4096)
}

fn forged_mm1_group(n: u32, group: DhGroup) -> ([u8; 8], Vec<u8>) {
    let mut cfg = client_config(ip(200), 1);
    cfg.ike_proposals = vec![P1Proposal::new(
        CipherAlg::AesCbc { key_len: 16 },
        HashAlg::Sha1,
        group,
    )];
    let mut icky = [0u8; 8];
    icky[..4].copy_from_slice(&n.to_be_bytes());
    icky[4..].copy_from_slice(b"kfld");
    (icky, initiator::main_mode_1(&cfg, icky).0)
}

/// Sends message 1 `n` from `src`: the responder cookie of its message 2, or None if refused.
fn try_mm1(
    server: &mut Responder,
    now: Instant,
    src: SocketAddr,
    n: u32,
) -> Option<([u8; 8], [u8; 8])> {
    let (icky, mm1) = forged_mm1(n);
    server.handle_datagram(now, SERVER, src, &mm1);
    let mut rcky = None;
    while let Some(t) = server.poll_transmit() {
        let h = Header::parse(&t.data).unwrap();
        if h.exchange == exchange::MAIN {
            rcky = Some(h.rcky);
        }
    }
    rcky.map(|r| (icky, r))
}

#[test]
fn bad_ke_flood_from_one_source_hits_the_source_limit_and_makes_no_keys() {
    let cfg = Config {
        max_half_open_per_source: 8,
        ..server_config()
    };
    let timeout = cfg.half_open_timeout;
    let mut server = Responder::seeded(Arc::new(cfg), 5);
    let t0 = Instant::now();
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)), 500);
    let mut accepted = 0;
    let mut invalid_key_notifies = 0;
    for n in 0..100u32 {
        // ~280 pairs per second, as measured.
        let now = t0 + Duration::from_millis(u64::from(n) * 1000 / 280);
        server.handle_timeout(now);
        let Some((icky, rcky)) = try_mm1(&mut server, now, src, n) else {
            continue;
        };
        accepted += 1;
        server.handle_datagram(
            now,
            SERVER,
            src,
            &roadgate_tests::ike_harness::forged_mm3(icky, rcky, &[1]),
        );
        while let Some(t) = server.poll_transmit() {
            let h = Header::parse(&t.data).unwrap();
            assert_eq!(h.exchange, exchange::INFORMATIONAL);
            invalid_key_notifies += 1;
        }
    }
    let st = server.stats().clone();
    assert_eq!(accepted, 8, "{st:?}");
    assert_eq!(invalid_key_notifies, 8);
    assert_eq!(st.invalid_ke, 8);
    assert_eq!(st.half_open_source_limited, 92);
    assert_eq!(st.dh_keys_generated, 0, "no key of ours for a bad KE");
    assert_eq!(server.phase1_count(), 0, "failed SAs are gone");
    assert_eq!(
        server.half_open_count(),
        8,
        "but still charged to the source"
    );
    // Once the half-open timeout has passed, the source may try again.
    let later = t0 + timeout + Duration::from_secs(1);
    server.handle_timeout(later);
    assert_eq!(server.half_open_count(), 0);
    assert!(try_mm1(&mut server, later, src, 1000).is_some());
    // Another source was never affected.
    let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 67)), 500);
    assert!(try_mm1(&mut server, later, other, 1001).is_some());
}

#[test]
fn malformed_message_3_counts_against_its_source_too() {
    let cfg = Config {
        max_half_open_per_source: 3,
        ..server_config()
    };
    let mut server = Responder::seeded(Arc::new(cfg), 6);
    let now = Instant::now();
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 68)), 500);
    for n in 0..3u32 {
        let (icky, rcky) = try_mm1(&mut server, now, src, n).unwrap();
        // A KE but no nonce.
        let mut chain = wire::Chain::new();
        chain.push(payload::KE, vec![1; 512]);
        let header = Header {
            icky,
            rcky,
            next: 0,
            version: 0x10,
            exchange: exchange::MAIN,
            flags: 0,
            mid: 0,
            length: 0,
        };
        server.handle_datagram(now, SERVER, src, &wire::message(header, &chain));
        while server.poll_transmit().is_some() {}
    }
    assert_eq!(server.phase1_count(), 0);
    assert!(try_mm1(&mut server, now, src, 99).is_none());
    assert_eq!(server.stats().half_open_source_limited, 1);
    assert_eq!(server.stats().dh_keys_generated, 0);
}

#[test]
fn ipv6_sources_are_limited_per_64() {
    let cfg = Config {
        max_half_open_per_source: 2,
        max_half_open_per_v6_prefix: 5,
        ..server_config()
    };
    let mut server = Responder::seeded(Arc::new(cfg), 7);
    let now = Instant::now();
    let v6 = |s: &str| SocketAddr::new(s.parse::<IpAddr>().unwrap(), 500);
    let mut accepted = 0;
    for n in 1..=12u32 {
        // Twelve addresses of 2001:db8:1:2::/64, two attempts each.
        let src = v6(&format!("2001:db8:1:2::{n:x}"));
        for k in 0..2 {
            if try_mm1(&mut server, now, src, n * 10 + k).is_some() {
                accepted += 1;
            }
        }
    }
    let st = server.stats().clone();
    assert_eq!(accepted, 5, "{st:?}");
    assert_eq!(st.half_open_prefix_limited, 19, "{st:?}");
    // The per-address limit still applies inside another /64.
    let other = v6("2001:db8:1:3::1");
    assert!(try_mm1(&mut server, now, other, 500).is_some());
    assert!(try_mm1(&mut server, now, other, 501).is_some());
    assert!(try_mm1(&mut server, now, other, 502).is_none());
    assert_eq!(server.stats().half_open_source_limited, 1);
    assert_eq!(server.half_open_count(), 7);
}

#[test]
fn random_early_drop_above_the_threshold() {
    let cfg = Config {
        max_half_open: 1000,
        early_drop_threshold: 0.5,
        ..server_config()
    };
    let mut server = Responder::seeded(Arc::new(cfg), 8);
    let now = Instant::now();
    let src = |n: u32| {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)),
            500,
        )
    };
    let mut n = 0u32;
    // Below half full nothing is dropped.
    while server.half_open_count() < 500 {
        assert!(try_mm1(&mut server, now, src(n), n).is_some());
        n += 1;
    }
    assert_eq!(server.stats().early_dropped, 0);
    // Fill to 75%.
    while server.half_open_count() < 750 {
        try_mm1(&mut server, now, src(n), n);
        n += 1;
    }
    let before = server.stats().early_dropped;
    assert!(before > 0);
    // At 75%, a new message 1 is dropped with probability 0.5 (rising as some get in).
    let tries = 400u32;
    let mut dropped = 0;
    for _ in 0..tries {
        if try_mm1(&mut server, now, src(n), n).is_none() {
            dropped += 1;
        }
        n += 1;
    }
    assert_eq!(server.stats().early_dropped - before, dropped);
    assert_eq!(server.stats().half_open_limited, 0);
    // Expected about 0.5..0.63 of the tries; bounds far outside sampling error.
    assert!(
        (tries as u64 * 40 / 100..=tries as u64 * 80 / 100).contains(&dropped),
        "{dropped} of {tries} dropped"
    );
}

#[test]
fn deferred_jobs_complete_main_and_quick_mode_on_another_thread() {
    let mut pair = Pair::new(server_config(), 60);
    let c = pair.add_client(client_config(ip(60), 60), None);
    let (cc, sc, ran) = connect_deferred(&mut pair, c);
    assert_eq!(ran, 1, "one job: message 3's Diffie-Hellman");
    assert_eq!(pair.server.stats().dh_keys_generated, 1);
    assert_eq!(pair.server.jobs_outstanding(), 0);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn quick_mode_pfs_is_a_job_too() {
    let mut pair = Pair::new(server_config(), 61);
    let mut cfg = client_config(ip(61), 61);
    cfg.pfs = Some(DhGroup::Modp2048);
    let c = pair.add_client(cfg, None);
    let (cc, sc, ran) = connect_deferred(&mut pair, c);
    assert_eq!(
        ran, 2,
        "two jobs: message 3's and Quick Mode's Diffie-Hellman"
    );
    assert!(cc.pfs);
    assert_eq!(pair.server.stats().dh_keys_generated, 2);
    assert_eq!(pair.server.jobs_outstanding(), 0);
    check_esp(&mut pair, c, &cc, &sc);
}

#[test]
fn a_repeated_quick_mode_1_while_its_pfs_job_runs_is_dropped() {
    let mut pair = Pair::new(server_config(), 62);
    let mut cfg = client_config(ip(62), 62);
    cfg.pfs = Some(DhGroup::Ecp256);
    let c = pair.add_client(cfg, None);
    // Connected inline; then a rekey's Quick Mode message 1 waits for its job while the
    // client retransmits it.
    connect(&mut pair, c);
    pair.server.set_deferred_jobs(true);
    let now = pair.now;
    assert!(pair.client(c).initiator_mut().rekey_child(now));
    pair.advance(Duration::from_secs(20));
    let st = pair.server.stats().clone();
    assert!(st.jobs_retransmit_dropped >= 1, "{st:?}");
    assert_eq!(pair.server.jobs_outstanding(), 1, "one job for every copy");
    let job = pair.server.poll_job().unwrap();
    assert_eq!(job.kind(), "quick mode pfs");
    let done = job.run();
    let now = pair.now;
    pair.server.job_done(now, done);
    assert!(
        pair.run_for(Duration::from_secs(30), |e| matches!(
            e,
            PairEvent::Client(i, InitiatorEvent::ChildSaUp(_)) if *i == c
        )),
        "{}",
        dump(&pair)
    );
}

/// A pair with one established client (connected inline), then deferred jobs and a job
/// queue of two, filled by two clients whose message 3 waits.
fn busy_pair(seed: u64) -> (Pair, usize, [usize; 2]) {
    let cfg = Config {
        handshake_queue: 2,
        ..server_config()
    };
    let mut pair = Pair::new(cfg, seed);
    let a = pair.add_client(client_config(ip(70), seed), None);
    connect(&mut pair, a);
    pair.server.set_deferred_jobs(true);
    let b = pair.add_client(client_config(ip(71), seed + 1), None);
    let c = pair.add_client(client_config(ip(72), seed + 2), None);
    pair.advance(Duration::from_millis(500));
    assert_eq!(pair.server.jobs_outstanding(), 2);
    (pair, a, [b, c])
}

#[test]
fn a_full_job_queue_drops_message_1_but_not_established_peers() {
    let (mut pair, a, [b, c]) = busy_pair(70);
    let d = pair.add_client(client_config(ip(73), 73), None);
    pair.advance(Duration::from_secs(5));
    let st = pair.server.stats().clone();
    assert!(st.jobs_busy_dropped >= 1, "{st:?}");
    assert!(
        st.jobs_retransmit_dropped >= 1,
        "retransmitted MM3 while computing: {st:?}"
    );
    assert!(phase1_up(&pair, d).is_none());
    // Quick Mode and DPD of the established client go through without any job being run.
    let now = pair.now;
    assert!(pair.client(a).initiator_mut().rekey_child(now));
    assert!(
        pair.run_for(Duration::from_secs(10), |e| matches!(
            e,
            PairEvent::Client(i, InitiatorEvent::ChildSaUp(_)) if *i == a
        )),
        "{}",
        dump(&pair)
    );
    let seq = pair.client(a).initiator_mut().send_dpd().unwrap();
    assert!(pair.run_for(Duration::from_secs(5), |e| matches!(
        e,
        PairEvent::Client(i, InitiatorEvent::DpdAck { seq: s }) if *i == a && *s == seq
    )));
    assert_eq!(pair.server.jobs_outstanding(), 2);
    // The jobs run (here on the test thread); b and c come up.
    let mut ran = 0;
    while let Some(job) = pair.server.poll_job() {
        let done = job.run();
        let now = pair.now;
        pair.server.job_done(now, done);
        ran += 1;
    }
    assert_eq!(ran, 2);
    pair.advance(Duration::from_secs(10));
    for i in [b, c] {
        assert!(phase1_up(&pair, i).is_some(), "{}", dump(&pair));
    }
}

#[test]
fn a_job_result_for_an_expired_sa_is_ignored() {
    let (mut pair, _a, _) = busy_pair(80);
    let jobs: Vec<_> = std::iter::from_fn(|| pair.server.poll_job()).collect();
    assert_eq!(jobs.len(), 2);
    let timeout = pair.server.config().half_open_timeout;
    pair.advance(timeout + Duration::from_secs(1));
    let expired = pair.server.stats().half_open_expired;
    assert!(expired >= 2, "{:?}", pair.server.stats());
    let sent_before = pair.log.len();
    for job in jobs {
        let done = job.run();
        let now = pair.now;
        pair.server.job_done(now, done);
    }
    assert_eq!(pair.server.stats().jobs_orphaned, 2);
    assert_eq!(pair.server.jobs_outstanding(), 0);
    assert!(pair.server.poll_transmit().is_none());
    assert_eq!(pair.log.len(), sent_before);
}

#[test]
fn a_repeated_message_3_while_its_job_runs_is_dropped_not_recomputed() {
    let mut server = Responder::seeded(Arc::new(server_config()), 9);
    server.set_deferred_jobs(true);
    let now = Instant::now();
    let src = SocketAddr::new(IpAddr::V4(ip(95)), 500);
    let (icky, mm1) = forged_mm1_group(1, DhGroup::Ecp256);
    server.handle_datagram(now, SERVER, src, &mm1);
    let mm2 = server.poll_transmit().unwrap();
    let rcky = Header::parse(&mm2.data).unwrap().rcky;
    let ours = roadgate::ike::crypto::DhPrivate::generate(DhGroup::Ecp256, &mut rand::rng());
    let mm3 = roadgate_tests::ike_harness::forged_mm3(icky, rcky, ours.public());
    for _ in 0..3 {
        server.handle_datagram(now, SERVER, src, &mm3);
    }
    assert!(
        server.poll_transmit().is_none(),
        "nothing is sent while the job waits"
    );
    assert_eq!(server.stats().jobs_retransmit_dropped, 2);
    assert_eq!(server.jobs_outstanding(), 1);
    let job = server.poll_job().unwrap();
    assert_eq!(job.kind(), "main mode 3");
    assert!(server.poll_job().is_none(), "one job for three copies");
    assert_eq!(
        server.stats().dh_keys_generated,
        0,
        "no key before the job runs"
    );
    let done = job.run();
    server.job_done(now, done);
    assert_eq!(server.stats().dh_keys_generated, 1);
    assert_eq!(server.jobs_outstanding(), 0);
    // Message 4 goes out, and a further copy of message 3 gets it again (not a new job).
    let mm4 = server.poll_transmit().unwrap();
    assert_eq!(Header::parse(&mm4.data).unwrap().exchange, exchange::MAIN);
    server.handle_datagram(now, SERVER, src, &mm3);
    assert_eq!(server.poll_transmit().unwrap().data, mm4.data);
    assert!(server.poll_job().is_none());
    assert_eq!(server.stats().duplicates_resent, 1);
}
