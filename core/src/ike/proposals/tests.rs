use super::*;
use crate::isakmp::{self, AttrValueSpec, Payload, p1enc, p1hash, payload_type};

fn p1t(
    n: u8,
    enc: u16,
    bits: Option<u16>,
    hash: u16,
    group: u16,
    auth: u16,
    life: u64,
) -> TransformSpec {
    let mut attributes = vec![AttributeSpec::basic(p1attr::ENCRYPTION, enc)];
    if let Some(b) = bits {
        attributes.push(AttributeSpec::basic(p1attr::KEY_LENGTH, b));
    }
    attributes.extend([
        AttributeSpec::basic(p1attr::HASH, hash),
        AttributeSpec::basic(p1attr::AUTH_METHOD, auth),
        AttributeSpec::basic(p1attr::GROUP, group),
        AttributeSpec::basic(p1attr::LIFE_TYPE, life_type::SECONDS),
        AttributeSpec::number(p1attr::LIFE_DURATION, life),
    ]);
    TransformSpec {
        number: n,
        id: transform::KEY_IKE,
        attributes,
    }
}

fn sa_bytes(protocol: u8, spi: Vec<u8>, transforms: Vec<TransformSpec>) -> Vec<u8> {
    isakmp::encode_sa(&SaSpec {
        doi: doi::IPSEC,
        situation: situation::IDENTITY_ONLY,
        proposals: vec![ProposalSpec {
            number: 1,
            protocol,
            spi,
            transforms,
        }],
    })
}

fn with_sa<T>(bytes: &[u8], f: impl FnOnce(&SaPayload<'_>) -> T) -> T {
    match Payload::parse(payload_type::SA, bytes) {
        Ok(Payload::Sa(sa)) => f(&sa),
        other => panic!("not an SA: {other:?}"),
    }
}

const PSK: u16 = auth_method::PSK;

#[test]
fn windows_phase1_list_takes_its_first_allowed_transform() {
    // CLIENTS.md §1.1: ECP-384, ECP-256, then MODP-2048 with AES-256, then 3DES.
    let list = vec![
        p1t(1, p1enc::AES_CBC, Some(256), p1hash::SHA1, 20, PSK, 28800),
        p1t(2, p1enc::AES_CBC, Some(128), p1hash::SHA1, 19, PSK, 28800),
        p1t(3, p1enc::AES_CBC, Some(256), p1hash::SHA1, 14, PSK, 28800),
        p1t(4, p1enc::TRIPLE_DES, None, p1hash::SHA1, 14, PSK, 28800),
    ];
    let bytes = sa_bytes(protocol::ISAKMP, vec![], list);
    let c = with_sa(&bytes, |sa| choose_phase1(sa, &Phase1Policy::default())).expect("chosen");
    assert_eq!(c.group, DhGroup::Ecp384);
    assert_eq!(c.cipher, CipherAlg::AesCbc { key_len: 32 });
    assert_eq!(c.transform.number, 1);
    assert_eq!(c.lifetime, Duration::from_secs(28800));

    // Without the ECP groups the server falls through to MODP-2048, never to 3DES.
    let policy = Phase1Policy {
        groups: vec![DhGroup::Modp2048],
        ..Phase1Policy::default()
    };
    let c = with_sa(&bytes, |sa| choose_phase1(sa, &policy)).expect("chosen");
    assert_eq!((c.transform.number, c.group), (3, DhGroup::Modp2048));
}

#[test]
fn android_phase1_gets_modp1024_and_lifetime_is_capped() {
    let list = vec![
        p1t(
            1,
            p1enc::AES_CBC,
            Some(256),
            p1hash::SHA2_256,
            2,
            PSK,
            28800,
        ),
        p1t(2, p1enc::AES_CBC, Some(256), p1hash::SHA1, 2, PSK, 28800),
    ];
    let bytes = sa_bytes(protocol::ISAKMP, vec![], list);
    let policy = Phase1Policy {
        max_lifetime: Duration::from_secs(3600),
        ..Phase1Policy::default()
    };
    let c = with_sa(&bytes, |sa| choose_phase1(sa, &policy)).expect("chosen");
    assert_eq!((c.group, c.hash), (DhGroup::Modp1024, HashAlg::Sha256));
    assert_eq!(c.lifetime, Duration::from_secs(3600));
}

#[test]
fn refusal_names_every_transform_and_why() {
    let list = vec![
        p1t(1, 1 /* DES */, None, p1hash::SHA1, 2, PSK, 28800),
        p1t(
            2,
            p1enc::AES_CBC,
            Some(256),
            1, /* MD5 */
            14,
            PSK,
            28800,
        ),
        p1t(3, p1enc::TRIPLE_DES, None, p1hash::SHA1, 14, PSK, 28800),
        p1t(
            4,
            p1enc::AES_CBC,
            Some(128),
            p1hash::SHA1,
            14,
            auth_method::RSA_SIG,
            28800,
        ),
        p1t(5, p1enc::AES_CBC, Some(128), p1hash::SHA1, 1, PSK, 28800),
    ];
    let bytes = sa_bytes(protocol::ISAKMP, vec![], list);
    // As Main Mode 1 filters the policy when no server certificate is configured.
    let psk_only = Phase1Policy {
        auth: vec![AuthMethod::PreSharedKey],
        ..Phase1Policy::default()
    };
    let r = with_sa(&bytes, |sa| choose_phase1(sa, &psk_only)).expect_err("refused");
    assert_eq!(r.reasons.len(), 5, "{r}");
    let text = r.to_string();
    assert!(
        text.contains("encryption algorithm 1 is not supported"),
        "{text}"
    );
    assert!(text.contains("hash algorithm 1 is not supported"), "{text}");
    assert!(
        text.contains("3DES") && text.contains("not allowed by policy"),
        "{text}"
    );
    assert!(
        text.contains("RSA signature authentication is not enabled"),
        "{text}"
    );
    assert!(text.contains("MODP-768"), "{text}");
}

#[test]
fn phase1_rejects_other_protocols_and_private_groups() {
    let mut t = p1t(1, p1enc::AES_CBC, Some(128), p1hash::SHA1, 14, PSK, 28800);
    t.attributes
        .push(AttributeSpec::basic(p1attr::GROUP_TYPE, 1));
    let bytes = sa_bytes(protocol::ISAKMP, vec![], vec![t]);
    let r = with_sa(&bytes, |sa| choose_phase1(sa, &Phase1Policy::default())).expect_err("refused");
    assert!(r.to_string().contains("private Diffie-Hellman"), "{r}");
    let t = p1t(1, p1enc::AES_CBC, Some(128), p1hash::SHA1, 14, PSK, 28800);
    let bytes = sa_bytes(protocol::IPSEC_ESP, vec![1, 2, 3, 4], vec![t]);
    assert!(with_sa(&bytes, |sa| choose_phase1(sa, &Phase1Policy::default())).is_err());
}

fn esp_t(
    n: u8,
    id: u8,
    bits: Option<u16>,
    auth: Option<u16>,
    extra: Vec<AttributeSpec>,
) -> TransformSpec {
    let mut attributes = vec![
        AttributeSpec::basic(p2attr::SA_LIFE_TYPE, life_type::SECONDS),
        AttributeSpec::number(p2attr::SA_LIFE_DURATION, 3600),
        AttributeSpec::basic(p2attr::ENCAPSULATION_MODE, encap_mode::TRANSPORT),
    ];
    if let Some(b) = bits {
        attributes.push(AttributeSpec::basic(p2attr::KEY_LENGTH, b));
    }
    if let Some(a) = auth {
        attributes.push(AttributeSpec::basic(p2attr::AUTH_ALGORITHM, a));
    }
    attributes.extend(extra);
    TransformSpec {
        number: n,
        id,
        attributes,
    }
}

fn esp_sa(transforms: Vec<TransformSpec>) -> Vec<u8> {
    sa_bytes(
        protocol::IPSEC_ESP,
        0x1234_5678u32.to_be_bytes().to_vec(),
        transforms,
    )
}

#[test]
fn android_esp_list_gets_sha1_not_sha256() {
    // CLIENTS.md §3.2/§5.13: SHA-256 listed first, truncated to 96 bits by Android 6/7.
    let bytes = esp_sa(vec![
        esp_t(
            1,
            transform::AES_CBC,
            Some(256),
            Some(auth_alg::HMAC_SHA2_256),
            vec![],
        ),
        esp_t(
            2,
            transform::AES_CBC,
            Some(256),
            Some(auth_alg::HMAC_SHA1),
            vec![],
        ),
        esp_t(3, transform::AES_CBC, Some(256), Some(1 /* MD5 */), vec![]),
    ]);
    let c = with_sa(&bytes, |sa| {
        choose_phase2(sa, &Phase2Policy::default(), false)
    })
    .expect("chosen");
    assert_eq!(c.transform.number, 2);
    assert_eq!(c.suite.integrity, esp::Integrity::HmacSha1_96);
    assert_eq!(c.peer_spi, 0x1234_5678);
    assert_eq!(c.encapsulation, Encapsulation::Transport);
    assert!(!c.shortened);

    // Only SHA-256 offered: taken, with RFC 4868 truncation unless the policy asks for 96 bits.
    let bytes = esp_sa(vec![esp_t(
        1,
        transform::AES_CBC,
        Some(128),
        Some(auth_alg::HMAC_SHA2_256),
        vec![],
    )]);
    let c = with_sa(&bytes, |sa| {
        choose_phase2(sa, &Phase2Policy::default(), false)
    })
    .expect("chosen");
    assert_eq!(c.suite.integrity, esp::Integrity::HmacSha256_128);
    let p = Phase2Policy {
        sha256_96: true,
        ..Phase2Policy::default()
    };
    let c = with_sa(&bytes, |sa| choose_phase2(sa, &p, false)).expect("chosen");
    assert_eq!(c.suite.integrity, esp::Integrity::HmacSha256_96);
}

#[test]
fn gcm_rules_and_3des_policy() {
    let bytes = esp_sa(vec![
        esp_t(
            1,
            transform::AES_GCM_16,
            Some(256),
            Some(auth_alg::HMAC_SHA1),
            vec![],
        ),
        esp_t(
            2,
            transform::TRIPLE_DES,
            None,
            Some(auth_alg::HMAC_SHA1),
            vec![],
        ),
        esp_t(3, transform::AES_GCM_16, Some(128), None, vec![]),
    ]);
    let c = with_sa(&bytes, |sa| {
        choose_phase2(sa, &Phase2Policy::default(), false)
    })
    .expect("chosen");
    assert_eq!(c.transform.number, 3);
    assert_eq!(
        c.suite,
        esp::Suite {
            encryption: esp::Encryption::AesGcm16 { key_len: 16 },
            integrity: esp::Integrity::None
        }
    );
    let only_bad = esp_sa(vec![esp_t(
        1,
        transform::TRIPLE_DES,
        None,
        Some(auth_alg::HMAC_SHA1),
        vec![],
    )]);
    let r = with_sa(&only_bad, |sa| {
        choose_phase2(sa, &Phase2Policy::default(), false)
    })
    .expect_err("3DES is off by default");
    assert!(r.to_string().contains("3DES-CBC is not allowed"), "{r}");
}

#[test]
fn lifetimes_are_capped_with_responder_lifetime() {
    let long = vec![
        AttributeSpec::basic(p2attr::SA_LIFE_TYPE, life_type::KILOBYTES),
        AttributeSpec::number(p2attr::SA_LIFE_DURATION, 250_000),
    ];
    let mut t = esp_t(
        1,
        transform::AES_CBC,
        Some(128),
        Some(auth_alg::HMAC_SHA1),
        long,
    );
    t.attributes[1] = AttributeSpec::number(p2attr::SA_LIFE_DURATION, 30 * 86400);
    let bytes = esp_sa(vec![t]);
    let c = with_sa(&bytes, |sa| {
        choose_phase2(sa, &Phase2Policy::default(), false)
    })
    .expect("chosen");
    assert_eq!(c.lifetime, Phase2Policy::default().max_lifetime);
    assert_eq!(c.lifetime_kb, Some(250_000));
    assert!(c.shortened);
    let attrs = c.responder_lifetime_attrs();
    assert_eq!(attrs.len(), 4);
    assert_eq!(attrs[1].value, AttrValueSpec::Basic(28800));
}

#[test]
fn pfs_needs_both_group_and_ke() {
    let g = vec![AttributeSpec::basic(p2attr::GROUP, 14)];
    let bytes = esp_sa(vec![esp_t(
        1,
        transform::AES_CBC,
        Some(128),
        Some(auth_alg::HMAC_SHA1),
        g,
    )]);
    assert!(
        with_sa(&bytes, |sa| choose_phase2(
            sa,
            &Phase2Policy::default(),
            false
        ))
        .is_err()
    );
    let c = with_sa(&bytes, |sa| {
        choose_phase2(sa, &Phase2Policy::default(), true)
    })
    .expect("chosen");
    assert_eq!(c.pfs, Some(DhGroup::Modp2048));
    let plain = esp_sa(vec![esp_t(
        1,
        transform::AES_CBC,
        Some(128),
        Some(auth_alg::HMAC_SHA1),
        vec![],
    )]);
    assert!(
        with_sa(&plain, |sa| choose_phase2(
            sa,
            &Phase2Policy::default(),
            true
        ))
        .is_err()
    );
    let p = Phase2Policy {
        require_pfs: true,
        ..Phase2Policy::default()
    };
    assert!(with_sa(&plain, |sa| choose_phase2(sa, &p, false)).is_err());
}

#[test]
fn bundles_and_bad_spis_are_refused() {
    let t = esp_t(
        1,
        transform::AES_CBC,
        Some(128),
        Some(auth_alg::HMAC_SHA1),
        vec![],
    );
    let bundle = isakmp::encode_sa(&SaSpec {
        doi: doi::IPSEC,
        situation: situation::IDENTITY_ONLY,
        proposals: vec![
            ProposalSpec {
                number: 1,
                protocol: protocol::IPSEC_AH,
                spi: vec![0, 0, 1, 0],
                transforms: vec![TransformSpec {
                    number: 1,
                    id: 3,
                    attributes: vec![],
                }],
            },
            ProposalSpec {
                number: 1,
                protocol: protocol::IPSEC_ESP,
                spi: vec![0, 0, 1, 1],
                transforms: vec![t.clone()],
            },
        ],
    });
    let r = with_sa(&bundle, |sa| {
        choose_phase2(sa, &Phase2Policy::default(), false)
    })
    .expect_err("bundle");
    assert!(r.to_string().contains("bundles"), "{r}");
    let bad_spi = sa_bytes(protocol::IPSEC_ESP, vec![0, 0, 0, 5], vec![t]);
    assert!(
        with_sa(&bad_spi, |sa| choose_phase2(
            sa,
            &Phase2Policy::default(),
            false
        ))
        .is_err()
    );
}

#[test]
fn a_zero_phase1_lifetime_means_the_policy_maximum_not_expire_at_once() {
    // strongSwan with rekey_time = reauth_time = 0 proposes a life duration of 0 seconds.
    let list = vec![p1t(1, p1enc::AES_CBC, Some(256), p1hash::SHA1, 2, PSK, 0)];
    let bytes = sa_bytes(protocol::ISAKMP, vec![], list);
    let c = with_sa(&bytes, |sa| choose_phase1(sa, &Phase1Policy::default())).expect("chosen");
    assert_eq!(c.lifetime, Phase1Policy::default().max_lifetime);
}
