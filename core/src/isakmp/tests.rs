//! Unit tests: hand-built messages from the RFC layouts, every payload type, error paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::vendor_id::{self, KnownVendor, NatTVariant};
use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.split_whitespace().collect();
    hex::decode(clean).unwrap()
}

/// Main Mode message 1 as a Windows 10 / strongSwan initiator sends it, written byte by byte
/// from RFC 2408 §3.1-3.6 / RFC 2407 §4.6.1: one SA with one ISAKMP proposal of three KEY_IKE
/// transforms (life durations as 4-byte variable attributes), then five vendor IDs.
const MM1: &str = "
    0123456789abcdef 0000000000000000 01 10 02 00 00000000 0000010c

    0d 00 0088  00000001 00000001
      00 00 007c  01 01 00 03
        03 00 0028  01 01 0000
          80010007 800e0100 80020002 80030001 8004000e 800b0001 000c0004 00007080
        03 00 0028  02 01 0000
          80010007 800e0080 80020002 80030001 80040013 800b0001 000c0004 00007080
        00 00 0024  03 01 0000
          80010005 80020002 80030001 8004000e 800b0001 000c0004 00015180

    0d 00 0018  1e2b516905991c7d7c96fcbfb587e461 00000009
    0d 00 0014  4a131c81070358455c5728f20e95452f
    0d 00 0014  90cb80913ebb696e086381b5ec427b1f
    0d 00 0014  4048b7d56ebce88525e7de7f00d6c2d3
    00 00 0014  26244d38eddb61b3172a36e3d0cfb819
";

/// Offsets into MM1 (from the start of the datagram).
const SA_AT: usize = 28;
const PROP_AT: usize = SA_AT + 12;
const T1_AT: usize = PROP_AT + 8;
const T3_AT: usize = T1_AT + 40 + 40;

fn mm1() -> Vec<u8> {
    let b = unhex(MM1);
    assert_eq!(b.len(), 0x10c);
    b
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn sa_of<'a>(m: &'a Message<'_>) -> &'a SaPayload<'a> {
    match &m.first(payload_type::SA).unwrap().payload {
        Payload::Sa(sa) => sa,
        other => panic!("not an SA: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Main Mode message 1

#[test]
fn main_mode_1_decodes() {
    let buf = mm1();
    let m = Message::decode(&buf).unwrap();
    assert_eq!(
        m.header.initiator_cookie,
        *b"\x01\x23\x45\x67\x89\xab\xcd\xef"
    );
    assert_eq!(m.header.responder_cookie, [0; 8]);
    assert_eq!(m.header.exchange, exchange::MAIN);
    assert_eq!(m.header.version, 0x10);
    assert!(!m.header.is_encrypted());
    assert_eq!(m.header.length, 268);
    assert_eq!(m.kinds().collect::<Vec<_>>(), vec![1u8, 13, 13, 13, 13, 13]);
    assert_eq!(m.payload_bytes, &buf[28..]);

    let sa = sa_of(&m);
    assert_eq!(sa.doi, doi::IPSEC);
    assert_eq!(sa.situation, situation::IDENTITY_ONLY);
    assert_eq!(sa.body, &buf[SA_AT + 4..SA_AT + 0x88]);
    assert_eq!(sa.proposals.len(), 1);
    let p = &sa.proposals[0];
    assert_eq!(
        (p.number, p.protocol, p.spi),
        (1, protocol::ISAKMP, &[][..])
    );
    assert_eq!(p.transforms.len(), 3);

    let t1 = &p.transforms[0];
    assert_eq!((t1.number, t1.id), (1, transform::KEY_IKE));
    assert_eq!(
        t1.attr(p1attr::ENCRYPTION),
        Some(AttrValue::Basic(p1enc::AES_CBC))
    );
    assert_eq!(t1.attr(p1attr::KEY_LENGTH).unwrap().as_u64(), Some(256));
    assert_eq!(t1.attr(p1attr::HASH).unwrap().as_u16(), Some(p1hash::SHA1));
    assert_eq!(
        t1.attr(p1attr::AUTH_METHOD).unwrap().as_u16(),
        Some(auth_method::PSK)
    );
    assert_eq!(
        t1.attr(p1attr::GROUP).unwrap().as_u16(),
        Some(group::MODP2048)
    );
    assert_eq!(
        t1.attr(p1attr::LIFE_TYPE).unwrap().as_u16(),
        Some(life_type::SECONDS)
    );
    let life = t1.attr(p1attr::LIFE_DURATION).unwrap();
    assert_eq!(life, AttrValue::Variable(&[0, 0, 0x70, 0x80]));
    assert_eq!(life.as_u64(), Some(28800));
    assert_eq!(t1.attributes.len(), 7);

    let t2 = &p.transforms[1];
    assert_eq!(
        t2.attr(p1attr::GROUP).unwrap().as_u16(),
        Some(group::ECP256)
    );
    assert_eq!(t2.attr(p1attr::KEY_LENGTH).unwrap().as_u16(), Some(128));

    let t3 = &p.transforms[2];
    assert_eq!(t3.number, 3);
    assert_eq!(
        t3.attr(p1attr::ENCRYPTION).unwrap().as_u16(),
        Some(p1enc::TRIPLE_DES)
    );
    assert_eq!(
        t3.attr(p1attr::LIFE_DURATION).unwrap().as_u64(),
        Some(86400)
    );
    assert_eq!(t3.attr(p1attr::KEY_LENGTH), None);

    let vids: Vec<_> = m
        .all(payload_type::VENDOR_ID)
        .map(|i| match i.payload {
            Payload::VendorId(v) => vendor_id::classify(v),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        vids,
        [
            Some(KnownVendor::MsNt5 { version: Some(9) }),
            Some(KnownVendor::NatT(NatTVariant::Rfc3947)),
            Some(KnownVendor::NatT(NatTVariant::Draft02N)),
            Some(KnownVendor::Fragmentation { capabilities: None }),
            Some(KnownVendor::MsInitialContact),
        ]
    );
}

#[test]
fn main_mode_1_raw_offsets() {
    let buf = mm1();
    let m = Message::decode(&buf).unwrap();
    let offsets: Vec<_> = m.items.iter().map(|i| (i.raw.offset, i.raw.len)).collect();
    assert_eq!(
        offsets,
        [
            (0, 136),
            (136, 24),
            (160, 20),
            (180, 20),
            (200, 20),
            (220, 20)
        ]
    );
    for i in &m.items {
        assert_eq!(&m.payload_bytes[i.raw.offset + 4..i.raw.end()], i.raw.body);
    }
    assert_eq!(
        m.first(payload_type::SA).unwrap().raw.next,
        payload_type::VENDOR_ID
    );
    assert_eq!(m.items.last().unwrap().raw.next, payload_type::NONE);
    assert!(m.first(payload_type::KE).is_none());
    assert_eq!(m.all(payload_type::VENDOR_ID).count(), 5);
}

#[test]
fn main_mode_1_reencodes_identically() {
    let buf = mm1();
    let m = Message::decode(&buf).unwrap();
    let sa = sa_of(&m);
    let spec = SaSpec::from(sa);
    assert_eq!(encode_sa(&spec), sa.body);

    let mut chain = PayloadChain::new();
    chain.push(payload_type::SA, &encode_sa(&spec));
    for item in m.all(payload_type::VENDOR_ID) {
        chain.push(payload_type::VENDOR_ID, item.raw.body);
    }
    assert_eq!(chain.first(), payload_type::SA);
    let out = encode_message(&m.header, chain.first(), chain.bytes());
    assert_eq!(out, buf);
}

#[test]
fn main_mode_1_echo_chosen_proposal() {
    // A responder answers with the initiator's proposal reduced to the chosen transform.
    let buf = mm1();
    let m = Message::decode(&buf).unwrap();
    let sa = sa_of(&m);
    let mut chosen = ProposalSpec::from(&sa.proposals[0]);
    chosen.transforms = vec![chosen.transforms.remove(2)];
    let body = encode_sa(&SaSpec {
        doi: sa.doi,
        situation: sa.situation,
        proposals: vec![chosen],
    });
    let back = SaPayload::parse(&body).unwrap();
    assert_eq!(
        back.proposals[0].transforms,
        vec![sa.proposals[0].transforms[2].clone()]
    );
    // Proposal: 8 + transform 36; SA: 8 + 44.
    assert_eq!(body.len(), 8 + 8 + 36);
}

#[test]
fn trailing_bytes_after_length_are_ignored() {
    let mut buf = mm1();
    buf.extend_from_slice(&[0xde, 0xad]);
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.payload_bytes.len(), 268 - 28);
}

#[test]
fn padding_after_last_payload_is_ignored() {
    // A decrypted body: payloads, then CBC padding (RFC 2409 §5.3 style).
    let buf = mm1();
    let header = Header::decode(&buf).unwrap();
    let mut body = buf[28..].to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
    let m = Message::parse(header, &body).unwrap();
    assert_eq!(m.items.len(), 6);
    assert_eq!(m.payload_bytes, &buf[28..]);
}

#[test]
fn no_payloads() {
    let mut buf = mm1()[..28].to_vec();
    buf[16] = payload_type::NONE;
    set_u32(&mut buf, 24, 28);
    let m = Message::decode(&buf).unwrap();
    assert!(m.items.is_empty());
    assert!(m.payload_bytes.is_empty());
}

// ---------------------------------------------------------------------------------------
// Error paths on MM1

#[test]
fn every_header_truncation_fails() {
    let buf = mm1();
    for n in 0..HEADER_LEN {
        assert!(matches!(
            Header::decode(&buf[..n]),
            Err(DecodeError::Truncated { have, .. }) if have == n
        ));
        assert!(Message::decode(&buf[..n]).is_err());
    }
}

#[test]
fn every_message_truncation_fails() {
    let buf = mm1();
    for n in HEADER_LEN..buf.len() {
        // Cut the datagram but keep the header's length: the header itself refuses.
        assert!(matches!(
            Message::decode(&buf[..n]),
            Err(DecodeError::Truncated { what: "ISAKMP message", need: 268, have }) if have == n
        ));
        // Cut and fix up the length: the payload chain runs out.
        let mut cut = buf[..n].to_vec();
        set_u32(&mut cut, 24, n as u32);
        let r = Message::decode(&cut);
        assert!(r.is_err(), "prefix of {n} bytes decoded: {r:?}");
    }
}

#[test]
fn header_errors() {
    let mut buf = mm1();
    buf[17] = 0x20; // IKEv2
    assert_eq!(Message::decode(&buf), Err(DecodeError::BadVersion(0x20)));
    assert_eq!(
        DecodeError::BadVersion(0x20).to_string(),
        "ISAKMP version 2.0 is not supported (only IKEv1, version 1.x)"
    );
    buf[17] = 0x11; // minor versions are tolerated
    assert!(Message::decode(&buf).is_ok());

    let mut buf = mm1();
    set_u32(&mut buf, 24, 27);
    assert_eq!(
        Header::decode(&buf),
        Err(DecodeError::BadLength {
            what: "ISAKMP message length field",
            len: 27
        })
    );
    set_u32(&mut buf, 24, 269);
    assert_eq!(
        Header::decode(&buf),
        Err(DecodeError::Truncated {
            what: "ISAKMP message",
            need: 269,
            have: 268
        })
    );
    set_u32(&mut buf, 24, u32::MAX);
    assert!(matches!(
        Header::decode(&buf),
        Err(DecodeError::Truncated { .. })
    ));

    let mut buf = mm1();
    buf[19] = flags::ENCRYPTION;
    assert_eq!(Message::decode(&buf), Err(DecodeError::Encrypted));
    assert!(Header::decode(&buf).unwrap().is_encrypted());
}

#[test]
fn generic_length_below_four() {
    let mut buf = mm1();
    set_u16(&mut buf, SA_AT + 0x88 + 2, 3); // first VID
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::BadLength {
            what: "payload (generic length field)",
            len: 3
        })
    );
    let mut it = payloads(payload_type::SA, &buf[28..]);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[test]
fn top_level_payload_past_the_end() {
    let mut buf = mm1();
    set_u16(&mut buf, 268 - 20 + 2, 21); // last VID one byte too long
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::Truncated {
            what: "payload",
            need: 21,
            have: 20
        })
    );
}

#[test]
fn last_payload_claims_a_successor() {
    let mut buf = mm1();
    buf[268 - 20] = payload_type::NONCE;
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::Truncated {
            what: "generic payload header",
            ..
        })
    ));
}

#[test]
fn sa_situation_and_doi() {
    let mut buf = mm1();
    set_u32(
        &mut buf,
        SA_AT + 8,
        situation::IDENTITY_ONLY | situation::SECRECY,
    );
    let e = Message::decode(&buf).unwrap_err();
    assert!(matches!(e, DecodeError::Unsupported(_)));
    assert_eq!(e.notify_type(), notify::SITUATION_NOT_SUPPORTED);
    set_u32(&mut buf, SA_AT + 8, situation::INTEGRITY);
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::Unsupported(_))
    ));

    let mut buf = mm1();
    set_u32(&mut buf, SA_AT + 4, 2); // GDOI
    let e = Message::decode(&buf).unwrap_err();
    assert!(matches!(e, DecodeError::Unsupported(_)));
    assert_eq!(e.notify_type(), notify::DOI_NOT_SUPPORTED);

    let mut buf = mm1();
    set_u32(&mut buf, SA_AT + 4, doi::ISAKMP);
    set_u32(&mut buf, SA_AT + 8, 0xffff_ffff); // situation is opaque for DOI 0
    assert_eq!(sa_of(&Message::decode(&buf).unwrap()).doi, doi::ISAKMP);
}

#[test]
fn sa_too_short_for_doi_and_situation() {
    for n in 0..8 {
        assert!(matches!(
            SaPayload::parse(&[0u8; 8][..n]),
            Err(DecodeError::Truncated {
                what: "SA payload",
                ..
            })
        ));
    }
    // DOI and situation but no proposal.
    assert!(matches!(
        SaPayload::parse(&unhex("00000001 00000001")),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn transforms_count_lying() {
    for declared in [0u8, 1, 2, 4, 255] {
        let mut buf = mm1();
        buf[PROP_AT + 7] = declared;
        let e = Message::decode(&buf).unwrap_err();
        assert_eq!(
            e,
            DecodeError::CountMismatch {
                what: "proposal's #transforms",
                declared: usize::from(declared),
                found: 3
            }
        );
        assert_eq!(e.notify_type(), notify::BAD_PROPOSAL_SYNTAX);
    }
}

#[test]
fn transform_chain_ends_early() {
    // Transform 2 says it is the last one: transform 3 is left over inside the proposal.
    let mut buf = mm1();
    buf[T1_AT + 40] = payload_type::NONE;
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::TrailingBytes {
            what: "proposal payload",
            extra: 36
        })
    );
}

#[test]
fn spi_size_lying() {
    let mut buf = mm1();
    buf[PROP_AT + 6] = 200;
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::Truncated {
            what: "proposal SPI",
            need: 4 + 200,
            have: 0x7c - 4
        })
    );
    // An SPI size that fits but swallows the start of the first transform.
    for size in [1u8, 4, 16] {
        let mut buf = mm1();
        buf[PROP_AT + 6] = size;
        assert!(Message::decode(&buf).is_err(), "spi size {size}");
    }
}

#[test]
fn nested_length_mismatches() {
    // Proposal claims more than the SA holds.
    let mut buf = mm1();
    set_u16(&mut buf, PROP_AT + 2, 0x7d);
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::Truncated {
            what: "payload",
            need: 0x7d,
            have: 0x7c
        })
    );
    // Proposal claims less: the last transform runs past the proposal.
    let mut buf = mm1();
    set_u16(&mut buf, PROP_AT + 2, 0x7b);
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::Truncated {
            what: "payload",
            ..
        })
    ));
    // SA longer than its proposal: trailing bytes inside the SA. Grow the SA by 4 bytes.
    let mut buf = mm1();
    let at = SA_AT + 0x88;
    buf.splice(at..at, [0u8; 4]);
    set_u16(&mut buf, SA_AT + 2, 0x88 + 4);
    set_u32(&mut buf, 24, 268 + 4);
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::TrailingBytes {
            what: "SA payload",
            extra: 4
        })
    );
    // Transform length shorter than its fixed part.
    let mut buf = mm1();
    set_u16(&mut buf, T1_AT + 2, 6);
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::Truncated {
            what: "transform payload",
            need: 4,
            have: 2
        })
    );
    let t = Transform::parse(&[1, 1]);
    assert_eq!(
        t,
        Err(DecodeError::Truncated {
            what: "transform payload",
            need: 4,
            have: 2
        })
    );
    // Generic length under 4 inside the SA.
    let mut buf = mm1();
    set_u16(&mut buf, T3_AT + 2, 2);
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::BadLength { .. })
    ));
}

#[test]
fn wrong_payload_types_in_nested_chains() {
    let mut buf = mm1();
    buf[T1_AT] = payload_type::PROPOSAL;
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::UnexpectedPayload {
            what: "transform payload",
            kind: payload_type::PROPOSAL,
            expected: payload_type::TRANSFORM
        })
    );
    let sa = encode_sa(&SaSpec {
        doi: 1,
        situation: 1,
        proposals: vec![ProposalSpec {
            number: 1,
            protocol: protocol::IPSEC_ESP,
            spi: vec![1, 2, 3, 4],
            transforms: vec![],
        }],
    });
    let mut bad = sa.clone();
    bad[8] = payload_type::KE;
    assert!(matches!(
        SaPayload::parse(&bad),
        Err(DecodeError::UnexpectedPayload {
            what: "proposal payload",
            kind: 4,
            ..
        })
    ));
    assert_eq!(
        SaPayload::parse(&sa).unwrap().proposals[0].transforms.len(),
        0
    );
}

#[test]
fn attribute_tlv_overrun() {
    // Life duration in transform 3 claims 5 bytes (only 4 there).
    let mut buf = mm1();
    let life_at = T3_AT + 8 + 20; // 5 basic attributes of 4 bytes
    assert_eq!(&buf[life_at..life_at + 2], &[0x00, 0x0c]);
    set_u16(&mut buf, life_at + 2, 5);
    assert_eq!(
        Message::decode(&buf),
        Err(DecodeError::Truncated {
            what: "variable attribute value",
            need: 20 + 4 + 5,
            have: 28
        })
    );
    // A lone half attribute header at the end of a transform.
    let body = unhex("01 01 0000 80010005 8002");
    assert_eq!(
        Transform::parse(&body),
        Err(DecodeError::Truncated {
            what: "data attribute header",
            need: 8,
            have: 6
        })
    );
    // Attribute iterator stops after its error.
    let mut it = attributes(&[0x80, 0x01, 0x00, 0x05, 0x00, 0x0c, 0xff, 0xff, 1]);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

// ---------------------------------------------------------------------------------------
// Attributes

#[test]
fn attribute_values() {
    assert_eq!(AttrValue::Basic(7).as_u64(), Some(7));
    assert_eq!(AttrValue::Variable(&[]).as_u64(), None);
    assert_eq!(AttrValue::Variable(&[1]).as_u64(), Some(1));
    assert_eq!(
        AttrValue::Variable(&[0, 1, 0x51, 0x80]).as_u64(),
        Some(86400)
    );
    assert_eq!(AttrValue::Variable(&[0xff; 8]).as_u64(), Some(u64::MAX));
    assert_eq!(AttrValue::Variable(&[1; 9]).as_u64(), None);
    assert_eq!(AttrValue::Variable(&[1, 0, 0]).as_u16(), None);
    assert_eq!(AttrValue::Variable(&[1, 0]).as_u16(), Some(256));
    assert_eq!(AttrValue::Variable(&[1, 2]).bytes(), Some(&[1u8, 2][..]));
    assert_eq!(AttrValue::Basic(1).bytes(), None);
}

#[test]
fn attribute_spec_number() {
    assert_eq!(
        AttributeSpec::number(2, 3600),
        AttributeSpec::basic(2, 3600)
    );
    assert_eq!(
        AttributeSpec::number(2, 0xffff),
        AttributeSpec::basic(2, 0xffff)
    );
    assert_eq!(
        AttributeSpec::number(2, 28800 * 3),
        AttributeSpec::variable(2, vec![0, 1, 0x51, 0x80])
    );
    assert_eq!(
        AttributeSpec::number(2, u64::from(u32::MAX)),
        AttributeSpec::variable(2, vec![0xff; 4])
    );
    assert_eq!(
        AttributeSpec::number(2, 1 << 32),
        AttributeSpec::variable(2, vec![0, 0, 0, 1, 0, 0, 0, 0])
    );
    // Encodings: TV with AF set, TLV without; an AF bit in `kind` is ignored.
    let body = encode_attributes(
        modecfg::CFG_REPLY,
        7,
        &[
            AttributeSpec::basic(0x8000 | p2attr::SA_LIFE_TYPE, life_type::SECONDS),
            AttributeSpec::number(p2attr::SA_LIFE_DURATION, 86400),
        ],
    );
    assert_eq!(body, unhex("02 00 0007 80010001 0002 0004 00015180"));
}

// ---------------------------------------------------------------------------------------
// Quick Mode message 1 (plaintext after decryption), with NAT-OA

/// HASH(1) SA Ni IDci IDcr NAT-OAi NAT-OAr, as Windows sends it behind NAT (RFC 2409 §5.5,
/// RFC 3947 §5.2): ESP, transport over UDP, AES-256 + HMAC-SHA1, 3600 s.
const QM1_BODY: &str = "
    01 00 0018  00112233445566778899aabbccddeeff00112233
    0a 00 0044  00000001 00000001
      00 00 0038  01 03 04 01 c0ffee01
        00 00 002c  01 0c 0000
          80040004 80050002 80060100 80010001 00020004 00000e10 80010002 00020004 0003d090
    05 00 0018  0123456789abcdef0123456789abcdef01234567
    05 00 000c  01 11 06a5 c0a80164
    15 00 000c  01 11 06a5 cb007105
    15 00 000c  01 000000 c0a80164
    00 00 000c  01 000000 cb007105
    00000000 00000007
";

#[test]
fn quick_mode_1_decodes() {
    let body = unhex(QM1_BODY);
    let header = Header {
        initiator_cookie: [1; 8],
        responder_cookie: [2; 8],
        next_payload: payload_type::HASH,
        version: 0x10,
        exchange: exchange::QUICK,
        flags: flags::ENCRYPTION,
        message_id: 0xdead_beef,
        length: (28 + body.len()) as u32,
    };
    let m = Message::parse(header, &body).unwrap();
    assert_eq!(m.kinds().collect::<Vec<_>>(), vec![8, 1, 10, 5, 5, 21, 21]);
    assert_eq!(m.payload_bytes.len(), body.len() - 8);

    // HASH(1) covers everything after the HASH payload.
    let hash = m.first(payload_type::HASH).unwrap();
    assert!(matches!(hash.payload, Payload::Hash(h) if h.len() == 20));
    assert_eq!(
        m.payload_bytes[hash.raw.end()..].len(),
        body.len() - 8 - 0x18
    );

    let sa = sa_of(&m);
    let p = &sa.proposals[0];
    assert_eq!(p.protocol, protocol::IPSEC_ESP);
    assert_eq!(p.spi, &[0xc0, 0xff, 0xee, 0x01]);
    let t = &p.transforms[0];
    assert_eq!(t.id, transform::AES_CBC);
    assert_eq!(
        t.attr(p2attr::ENCAPSULATION_MODE).unwrap().as_u16(),
        Some(encap_mode::UDP_TRANSPORT)
    );
    assert_eq!(
        t.attr(p2attr::AUTH_ALGORITHM).unwrap().as_u16(),
        Some(auth_alg::HMAC_SHA1)
    );
    assert_eq!(t.attr(p2attr::KEY_LENGTH).unwrap().as_u16(), Some(256));
    // Two life type/duration pairs: seconds then kilobytes.
    let lives: Vec<_> = t
        .attributes
        .iter()
        .filter(|a| a.kind == p2attr::SA_LIFE_DURATION)
        .map(|a| a.value.as_u64().unwrap())
        .collect();
    assert_eq!(lives, [3600, 250_000]);

    let ids: Vec<_> = m
        .all(payload_type::ID)
        .map(|i| match &i.payload {
            Payload::Id(id) => (id.protocol, id.port, id.identity().unwrap().to_string()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        ids,
        [
            (17, 1701, "192.168.1.100".to_string()),
            (17, 1701, "203.0.113.5".to_string())
        ]
    );
    let oas: Vec<_> = m
        .all(payload_type::NAT_OA)
        .map(|i| match &i.payload {
            Payload::NatOa(id) => id.identity().unwrap(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        oas,
        [
            Identity::Ipv4(Ipv4Addr::new(192, 168, 1, 100)),
            Identity::Ipv4(Ipv4Addr::new(203, 0, 113, 5))
        ]
    );
    // IDci_b is the body after the generic header.
    let idci = m.first(payload_type::ID).unwrap();
    match &idci.payload {
        Payload::Id(id) => assert_eq!(id.body, unhex("01 11 06a5 c0a80164")),
        _ => unreachable!(),
    }
    // An encrypted header does not go through Message::decode.
    let wire = encode_message(&header, payload_type::HASH, &body);
    assert_eq!(Message::decode(&wire), Err(DecodeError::Encrypted));
}

// ---------------------------------------------------------------------------------------
// Individual payload types

#[test]
fn id_payload_all_types() {
    let v4 = Ipv4Addr::new(10, 1, 2, 3);
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let m4 = Ipv4Addr::new(255, 255, 255, 0);
    let m6: Ipv6Addr = "ffff:ffff:ffff:ffff::".parse().unwrap();
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    let cases: Vec<(u8, Vec<u8>, Identity<'static>, &str)> = vec![
        (
            id_type::IPV4_ADDR,
            v4.octets().to_vec(),
            Identity::Ipv4(v4),
            "10.1.2.3",
        ),
        (
            id_type::IPV6_ADDR,
            v6.octets().to_vec(),
            Identity::Ipv6(v6),
            "2001:db8::1",
        ),
        (
            id_type::FQDN,
            b"vpn.example.com".to_vec(),
            Identity::Fqdn(b"vpn.example.com"),
            "vpn.example.com",
        ),
        (
            id_type::USER_FQDN,
            b"a@b.c".to_vec(),
            Identity::UserFqdn(b"a@b.c"),
            "a@b.c",
        ),
        (
            id_type::DER_ASN1_DN,
            vec![0x30, 0x00],
            Identity::DerAsn1Dn(&[0x30, 0x00]),
            "DN:3000",
        ),
        (
            id_type::DER_ASN1_GN,
            vec![0xa0],
            Identity::DerAsn1Gn(&[0xa0]),
            "GN:a0",
        ),
        (
            id_type::KEY_ID,
            b"grp".to_vec(),
            Identity::KeyId(b"grp"),
            "KEYID:677270",
        ),
        (
            id_type::IPV4_ADDR_SUBNET,
            cat(&v4.octets(), &m4.octets()),
            Identity::Ipv4Subnet(v4, m4),
            "10.1.2.3/24",
        ),
        (
            id_type::IPV4_ADDR_RANGE,
            cat(&v4.octets(), &m4.octets()),
            Identity::Ipv4Range(v4, m4),
            "10.1.2.3-255.255.255.0",
        ),
        (
            id_type::IPV6_ADDR_SUBNET,
            cat(&v6.octets(), &m6.octets()),
            Identity::Ipv6Subnet(v6, m6),
            "2001:db8::1/64",
        ),
        (
            id_type::IPV6_ADDR_RANGE,
            cat(&v6.octets(), &v6.octets()),
            Identity::Ipv6Range(v6, v6),
            "2001:db8::1-2001:db8::1",
        ),
    ];
    for (t, data, want, shown) in cases {
        let body = encode_id(t, 17, 1701, &data);
        let Payload::Id(id) = Payload::parse(payload_type::ID, &body).unwrap() else {
            panic!()
        };
        assert_eq!(
            (id.id_type, id.protocol, id.port, id.data),
            (t, 17, 1701, &data[..])
        );
        assert_eq!(id.body, &body[..]);
        let got = id.identity().unwrap();
        // Compare through Display and variant (the expected value borrows static data).
        assert_eq!(got.to_string(), shown);
        assert_eq!(got.to_string(), want.to_string());
        // Wrong data lengths for the address types.
        if matches!(t, 1 | 4..=8) {
            let short = encode_id(t, 0, 0, &data[..data.len() - 1]);
            let id = IdPayload::parse(&short).unwrap();
            assert!(
                matches!(id.identity(), Err(DecodeError::BadLength { .. })),
                "type {t}"
            );
        }
    }
    let unknown_body = encode_id(42, 0, 0, b"x");
    let unknown = IdPayload::parse(&unknown_body).unwrap();
    let e = unknown.identity().unwrap_err();
    assert_eq!(
        e,
        DecodeError::BadValue {
            what: "identification type",
            value: 42
        }
    );
    assert_eq!(e.notify_type(), notify::INVALID_ID_INFORMATION);
    for n in 0..4 {
        assert!(matches!(
            Payload::parse(payload_type::ID, &[1, 2, 3][..n]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}

#[test]
fn identity_display_is_safe_and_short() {
    assert_eq!(
        Identity::Fqdn(b"bad\n\xffname").to_string(),
        "bad\\n\u{fffd}name"
    );
    assert_eq!(
        Identity::DerAsn1Dn(&[0u8; 100]).to_string(),
        "DN(100 bytes)"
    );
    let odd_mask = Identity::Ipv4Subnet(Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(255, 0, 255, 0));
    assert_eq!(odd_mask.to_string(), "10.0.0.0/255.0.255.0");
    assert_eq!(
        Identity::Ipv4Subnet(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED).to_string(),
        "0.0.0.0/0"
    );
}

#[test]
fn cert_and_certreq() {
    let body = encode_cert(cert_encoding::X509_SIG, &[0x30, 0x82, 0x01, 0x00]);
    assert_eq!(
        Payload::parse(payload_type::CERT, &body).unwrap(),
        Payload::Cert(CertPayload {
            encoding: cert_encoding::X509_SIG,
            data: &[0x30, 0x82, 0x01, 0x00]
        })
    );
    // A CR with no CA named is just the type byte.
    assert_eq!(
        Payload::parse(payload_type::CERT_REQ, &[cert_encoding::X509_SIG]).unwrap(),
        Payload::CertReq(CertPayload {
            encoding: cert_encoding::X509_SIG,
            data: &[]
        })
    );
    assert!(matches!(
        Payload::parse(payload_type::CERT, &[]),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn notify_payloads() {
    // INITIAL-CONTACT for the ISAKMP SA (SPI = both cookies).
    let spi = [[1u8; 8], [2u8; 8]].concat();
    let body = encode_notify(
        doi::IPSEC,
        protocol::ISAKMP,
        &spi,
        notify::INITIAL_CONTACT,
        &[],
    );
    assert_eq!(body.len(), 8 + 16);
    let Payload::Notify(n) = Payload::parse(payload_type::NOTIFY, &body).unwrap() else {
        panic!()
    };
    assert_eq!(
        n,
        NotifyPayload {
            doi: doi::IPSEC,
            protocol: protocol::ISAKMP,
            spi: &spi,
            message_type: notify::INITIAL_CONTACT,
            data: &[]
        }
    );
    // R-U-THERE with its sequence number (RFC 3706 §5.3).
    let body = encode_notify(1, 1, &spi, notify::R_U_THERE, &[0, 0, 0x12, 0x34]);
    let n = NotifyPayload::parse(&body).unwrap();
    assert_eq!(
        (n.message_type, n.data),
        (notify::R_U_THERE, &[0, 0, 0x12, 0x34][..])
    );
    // NO-PROPOSAL-CHOSEN without SPI.
    let body = unhex("00000001 03 00 000e");
    let n = NotifyPayload::parse(&body).unwrap();
    assert_eq!(
        (n.spi, n.message_type),
        (&[][..], notify::NO_PROPOSAL_CHOSEN)
    );
    // SPI size lying.
    let body = unhex("00000001 03 04 000e 0102");
    assert_eq!(
        NotifyPayload::parse(&body),
        Err(DecodeError::Truncated {
            what: "notification SPI",
            need: 12,
            have: 10
        })
    );
    for n in 0..8 {
        assert!(NotifyPayload::parse(&[0u8; 8][..n]).is_err());
    }
}

#[test]
fn delete_payloads() {
    let ck = [[1u8; 8], [2u8; 8]].concat();
    let body = encode_delete(doi::IPSEC, protocol::ISAKMP, 16, &[&ck]);
    let Payload::Delete(d) = Payload::parse(payload_type::DELETE, &body).unwrap() else {
        panic!()
    };
    assert_eq!(
        (d.protocol, d.spi_size, d.spis.clone()),
        (1, 16, vec![&ck[..]])
    );

    let body = encode_delete(
        doi::IPSEC,
        protocol::IPSEC_ESP,
        4,
        &[&[1, 2, 3, 4], &[5, 6, 7, 8]],
    );
    assert_eq!(body, unhex("00000001 03 04 0002 01020304 05060708"));
    let d = DeletePayload::parse(&body).unwrap();
    assert_eq!(d.spis, vec![&[1u8, 2, 3, 4][..], &[5, 6, 7, 8][..]]);

    // Count lying: more SPIs declared than present, and fewer.
    let mut more = body.clone();
    more[7] = 3;
    assert_eq!(
        DeletePayload::parse(&more),
        Err(DecodeError::Truncated {
            what: "delete payload SPIs",
            need: 12,
            have: 8
        })
    );
    let mut fewer = body.clone();
    fewer[7] = 1;
    assert_eq!(
        DeletePayload::parse(&fewer),
        Err(DecodeError::TrailingBytes {
            what: "delete payload",
            extra: 4
        })
    );
    let mut huge = body.clone();
    huge[6] = 0xff;
    huge[7] = 0xff;
    assert!(matches!(
        DeletePayload::parse(&huge),
        Err(DecodeError::Truncated { .. })
    ));
    // SPI size 0 with SPIs.
    assert!(matches!(
        DeletePayload::parse(&unhex("00000001 03 00 0002")),
        Err(DecodeError::BadValue { .. })
    ));
    assert_eq!(
        DeletePayload::parse(&unhex("00000001 03 00 0000"))
            .unwrap()
            .spis
            .len(),
        0
    );
    for n in 0..8 {
        assert!(matches!(
            DeletePayload::parse(&body[..n]),
            Err(DecodeError::Truncated {
                what: "delete payload",
                ..
            })
        ));
    }
}

#[test]
fn attributes_payload_modecfg() {
    // CFG_REQUEST for an address (empty TLV) and XAUTH user name.
    let body = unhex("01 00 1234  0001 0000  4089 0003 626f62");
    let Payload::Attributes(a) = Payload::parse(payload_type::ATTRIBUTES, &body).unwrap() else {
        panic!()
    };
    assert_eq!((a.attr_type, a.identifier), (modecfg::CFG_REQUEST, 0x1234));
    assert_eq!(
        a.attributes,
        vec![
            Attribute {
                kind: modecfg::INTERNAL_IP4_ADDRESS,
                value: AttrValue::Variable(&[])
            },
            Attribute {
                kind: modecfg::XAUTH_USER_NAME,
                value: AttrValue::Variable(b"bob")
            },
        ]
    );
    let specs: Vec<_> = a.attributes.iter().map(AttributeSpec::from).collect();
    assert_eq!(encode_attributes(a.attr_type, a.identifier, &specs), body);
    assert!(matches!(
        AttributesPayload::parse(&body[..body.len() - 1]),
        Err(DecodeError::Truncated {
            what: "variable attribute value",
            ..
        })
    ));
    assert!(AttributesPayload::parse(&[1, 0, 0]).is_err());
}

#[test]
fn nat_d_and_nat_oa_all_numbers() {
    let hash = [7u8; 20];
    for kind in [
        payload_type::NAT_D,
        payload_type::NAT_D_DRAFT,
        payload_type::NAT_D_APPLE,
    ] {
        assert_eq!(Payload::parse(kind, &hash).unwrap(), Payload::NatD(&hash));
    }
    let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    for kind in [
        payload_type::NAT_OA,
        payload_type::NAT_OA_DRAFT,
        payload_type::NAT_OA_APPLE,
    ] {
        let body = encode_nat_oa(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(body, unhex("01 000000 c0000201"));
        let Payload::NatOa(oa) = Payload::parse(kind, &body).unwrap() else {
            panic!()
        };
        assert_eq!(
            oa.identity().unwrap(),
            Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
        );
        let body = encode_nat_oa(IpAddr::V6(v6));
        let Payload::NatOa(oa) = Payload::parse(kind, &body).unwrap() else {
            panic!()
        };
        assert_eq!(oa.identity().unwrap(), Identity::Ipv6(v6));
        assert!(Payload::parse(kind, &[1, 0]).is_err());
    }
}

#[test]
fn fragment_payload() {
    let body = encode_fragment(0x0102, 3, fragment_flags::LAST, b"tail");
    assert_eq!(body, unhex("0102 03 01 7461696c"));
    let Payload::Fragment(f) = Payload::parse(payload_type::FRAGMENT, &body).unwrap() else {
        panic!()
    };
    assert_eq!(
        (f.fragment_id, f.number, f.flags, f.data),
        (0x0102, 3, 1, &b"tail"[..])
    );
    assert!(f.is_last());
    assert!(!FragmentPayload::parse(&[0, 1, 1, 0]).unwrap().is_last());
    for n in 0..4 {
        assert!(FragmentPayload::parse(&body[..n]).is_err());
    }
}

#[test]
fn opaque_payloads() {
    let b = [1u8, 2, 3];
    assert_eq!(
        Payload::parse(payload_type::KE, &b).unwrap(),
        Payload::Ke(&b)
    );
    assert_eq!(
        Payload::parse(payload_type::HASH, &b).unwrap(),
        Payload::Hash(&b)
    );
    assert_eq!(
        Payload::parse(payload_type::SIG, &b).unwrap(),
        Payload::Sig(&b)
    );
    assert_eq!(
        Payload::parse(payload_type::NONCE, &b).unwrap(),
        Payload::Nonce(&b)
    );
    assert_eq!(
        Payload::parse(payload_type::VENDOR_ID, &b).unwrap(),
        Payload::VendorId(&b)
    );
    for kind in [0u8, 2, 3, 17, 33, 128, 255] {
        assert_eq!(
            Payload::parse(kind, &b).unwrap(),
            Payload::Unknown { kind, body: &b }
        );
    }
}

// ---------------------------------------------------------------------------------------
// Builders

#[test]
fn payload_chain_links_payloads() {
    let mut c = PayloadChain::new();
    assert_eq!(c.first(), payload_type::NONE);
    assert!(c.is_empty());
    c.push(payload_type::HASH, &[9; 4]).push(
        payload_type::NOTIFY,
        &encode_notify(1, 1, &[], notify::R_U_THERE_ACK, &[0, 0, 0, 1]),
    );
    assert_eq!(c.first(), payload_type::HASH);
    assert_eq!(c.len(), 8 + 16);
    assert_eq!(
        c.bytes(),
        &unhex("0b 00 0008 09090909  00 00 0010 00000001 01 00 8d29 00000001")[..]
    );
    let h = Header {
        initiator_cookie: [1; 8],
        responder_cookie: [2; 8],
        next_payload: 0xee, // overwritten
        version: Header::VERSION_1_0,
        exchange: exchange::INFORMATIONAL,
        flags: 0,
        message_id: 5,
        length: 0, // overwritten
    };
    let first = c.first();
    let msg = encode_message(&h, first, &c.into_bytes());
    let m = Message::decode(&msg).unwrap();
    assert_eq!(m.header.next_payload, payload_type::HASH);
    assert_eq!(m.header.length as usize, msg.len());
    assert_eq!(m.items.len(), 2);
    assert!(matches!(
        m.first(payload_type::NOTIFY).unwrap().payload,
        Payload::Notify(NotifyPayload {
            message_type: notify::R_U_THERE_ACK,
            ..
        })
    ));
}

#[test]
fn header_round_trip_and_accessors() {
    let h = Header {
        initiator_cookie: *b"ABCDEFGH",
        responder_cookie: *b"IJKLMNOP",
        next_payload: 1,
        version: 0x10,
        exchange: exchange::AGGRESSIVE,
        flags: flags::COMMIT | flags::AUTH_ONLY,
        message_id: 0x0102_0304,
        length: 28,
    };
    let mut out = [0u8; HEADER_LEN];
    h.encode(&mut out);
    assert_eq!(&out[..16], b"ABCDEFGHIJKLMNOP");
    assert_eq!(&out[16..], &unhex("01 10 04 06 01020304 0000001c")[..]);
    assert_eq!(Header::decode(&out), Ok(h));
    assert!(h.is_commit() && !h.is_encrypted());
    assert_eq!((h.major_version(), h.minor_version()), (1, 0));
}

#[test]
#[should_panic(expected = "does not fit")]
fn oversized_payload_panics_in_builder() {
    PayloadChain::new().push(payload_type::CERT, &vec![0; MAX_PAYLOAD_BODY + 1]);
}

#[test]
fn largest_payload_fits() {
    let mut c = PayloadChain::new();
    c.push(payload_type::CERT, &vec![0; MAX_PAYLOAD_BODY]);
    let items: Vec<_> = payloads(c.first(), c.bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(items[0].len, 0xffff);
}

// ---------------------------------------------------------------------------------------
// Names and vendor IDs

#[test]
fn names_for_logs() {
    assert_eq!(
        notify_name(notify::NO_PROPOSAL_CHOSEN),
        "NO-PROPOSAL-CHOSEN"
    );
    assert_eq!(notify_name(notify::R_U_THERE), "R-U-THERE");
    assert_eq!(
        notify_name(notify::RESPONDER_LIFETIME),
        "RESPONDER-LIFETIME"
    );
    assert_eq!(notify_name(9000), "private-use error");
    assert_eq!(notify_name(30000), "DOI-specific status");
    assert_eq!(notify_name(65535), "reserved status");
    for t in 1..=30 {
        assert!(!notify_name(t).contains(' '), "{t} has no name");
        assert!(notify::is_error(t));
    }
    assert!(!notify::is_error(notify::INITIAL_CONTACT));
    assert_eq!(payload_name(payload_type::NAT_D), "NAT-D");
    assert_eq!(payload_name(payload_type::FRAGMENT), "FRAG");
    assert_eq!(payload_name(200), "unknown");
    assert_eq!(exchange_name(exchange::QUICK), "QUICK_MODE");
}

#[test]
fn vendor_ids_are_md5_of_their_strings() {
    use md5::{Digest, Md5};
    let md5 = |s: &str| -> [u8; 16] { Md5::digest(s.as_bytes()).as_slice().try_into().unwrap() };
    let cases: [(&[u8], &str); 18] = [
        (&vendor_id::RFC3947, "RFC 3947"),
        (&vendor_id::NATT_DRAFT_00, "draft-ietf-ipsec-nat-t-ike-00"),
        (&vendor_id::NATT_DRAFT_01, "draft-ietf-ipsec-nat-t-ike-01"),
        (&vendor_id::NATT_DRAFT_02, "draft-ietf-ipsec-nat-t-ike-02"),
        (
            &vendor_id::NATT_DRAFT_02_N,
            "draft-ietf-ipsec-nat-t-ike-02\n",
        ),
        (&vendor_id::NATT_DRAFT_03, "draft-ietf-ipsec-nat-t-ike-03"),
        (&vendor_id::NATT_DRAFT_04, "draft-ietf-ipsec-nat-t-ike-04"),
        (&vendor_id::NATT_DRAFT_05, "draft-ietf-ipsec-nat-t-ike-05"),
        (&vendor_id::NATT_DRAFT_06, "draft-ietf-ipsec-nat-t-ike-06"),
        (&vendor_id::NATT_DRAFT_07, "draft-ietf-ipsec-nat-t-ike-07"),
        (&vendor_id::NATT_DRAFT_08, "draft-ietf-ipsec-nat-t-ike-08"),
        (&vendor_id::NATT_APPLE, "draft-ietf-ipsec-nat-t-ike"),
        (&vendor_id::FRAGMENTATION, "FRAGMENTATION"),
        (&vendor_id::MS_NT5, "MS NT5 ISAKMPOAKLEY"),
        (&vendor_id::MS_VID_INITIAL_CONTACT, "Vid-Initial-Contact"),
        (
            &vendor_id::MS_NEGOTIATION_DISCOVERY,
            "MS-Negotiation Discovery Capable",
        ),
        (&vendor_id::MS_IKE_CGA_V1, "IKE CGA version 1"),
        (&vendor_id::XAUTH, "draft-ietf-ipsra-isakmp-xauth-06.txt"),
    ];
    for (vid, s) in cases {
        assert_eq!(vid, &md5(s)[..vid.len()], "{s:?}");
    }
    // Cisco Unity: MD5 prefix, then version 1.0.
    assert_eq!(&vendor_id::CISCO_UNITY[..14], &md5("CISCO-UNITY")[..14]);
    assert_eq!(&vendor_id::CISCO_UNITY[14..], &[1, 0]);
    // Spot checks against the hex quoted in the brief and CLIENTS.md.
    assert_eq!(
        hex::encode(vendor_id::NATT_DRAFT_02_N),
        "90cb80913ebb696e086381b5ec427b1f"
    );
    assert_eq!(
        hex::encode(vendor_id::DPD),
        "afcad71368a1f1c96b8696fc77570100"
    );
    assert_eq!(hex::encode(vendor_id::XAUTH), "09002689dfd6b712");
}

#[test]
fn dpd_vendor_id_matches_rfc3706() {
    // RFC 3706 §5.1: HASHED_VENDOR_ID then MJR=1, MNR=0.
    assert_eq!(vendor_id::DPD[..14], vendor_id::DPD_PREFIX);
    assert_eq!(vendor_id::DPD[14..], [1, 0]);
    assert_eq!(
        vendor_id::classify(&vendor_id::DPD),
        Some(KnownVendor::Dpd { major: 1, minor: 0 })
    );
}

#[test]
fn classify_vendor_ids() {
    use vendor_id::classify;
    let with = |p: &[u8], s: &[u8]| [p, s].concat();
    assert_eq!(
        classify(&with(&vendor_id::FRAGMENTATION, &[0x80, 0, 0, 0])),
        Some(KnownVendor::Fragmentation {
            capabilities: Some(0x8000_0000)
        })
    );
    assert_eq!(
        classify(&vendor_id::FRAGMENTATION),
        Some(KnownVendor::Fragmentation { capabilities: None })
    );
    assert_eq!(classify(&with(&vendor_id::FRAGMENTATION, &[1, 2])), None);
    assert_eq!(
        classify(&vendor_id::MS_NT5),
        Some(KnownVendor::MsNt5 { version: None })
    );
    assert_eq!(
        classify(&with(&vendor_id::MS_AUTHIP_KEY_MODS, &[0, 0, 0, 1])),
        Some(KnownVendor::MsAuthIpKeyMods)
    );
    assert_eq!(classify(&vendor_id::XAUTH), Some(KnownVendor::Xauth));
    assert_eq!(
        classify(&vendor_id::CISCO_UNITY),
        Some(KnownVendor::CiscoUnity)
    );
    assert_eq!(
        classify(&vendor_id::MS_IKE_CGA_V1),
        Some(KnownVendor::MsIkeCga)
    );
    assert_eq!(
        classify(&vendor_id::MS_NEGOTIATION_DISCOVERY),
        Some(KnownVendor::MsNegotiationDiscovery)
    );
    for (vid, v) in [
        (vendor_id::NATT_DRAFT_00, NatTVariant::Draft00),
        (vendor_id::NATT_DRAFT_01, NatTVariant::Draft01),
        (vendor_id::NATT_DRAFT_02, NatTVariant::Draft02),
        (vendor_id::NATT_DRAFT_03, NatTVariant::Draft03),
        (vendor_id::NATT_DRAFT_04, NatTVariant::Draft04),
        (vendor_id::NATT_DRAFT_05, NatTVariant::Draft05),
        (vendor_id::NATT_DRAFT_06, NatTVariant::Draft06),
        (vendor_id::NATT_DRAFT_07, NatTVariant::Draft07),
        (vendor_id::NATT_DRAFT_08, NatTVariant::Draft08),
        (vendor_id::NATT_APPLE, NatTVariant::Apple),
    ] {
        assert_eq!(classify(&vid), Some(KnownVendor::NatT(v)));
    }
    assert_eq!(classify(&vendor_id::RFC3947[..15]), None);
    assert_eq!(classify(&[]), None);
    assert_eq!(classify(&[0u8; 16]), None);

    // NAT-T flavours pick payload numbers and encapsulation modes (CLIENTS.md §5.3).
    assert_eq!(NatTVariant::Rfc3947.nat_d_payload(), payload_type::NAT_D);
    assert_eq!(
        NatTVariant::Rfc3947.udp_transport_mode(),
        encap_mode::UDP_TRANSPORT
    );
    assert_eq!(
        NatTVariant::Draft02N.nat_oa_payload(),
        payload_type::NAT_OA_DRAFT
    );
    assert_eq!(
        NatTVariant::Draft02N.udp_transport_mode(),
        encap_mode::UDP_TRANSPORT_DRAFT
    );
    assert_eq!(
        NatTVariant::Draft03.udp_tunnel_mode(),
        encap_mode::UDP_TUNNEL_DRAFT
    );
    assert_eq!(
        NatTVariant::Apple.nat_d_payload(),
        payload_type::NAT_D_APPLE
    );
    assert_eq!(
        NatTVariant::Draft08.udp_transport_mode(),
        encap_mode::UDP_TRANSPORT
    );
    assert!(!NatTVariant::Draft01.floats_to_4500() && NatTVariant::Draft02.floats_to_4500());
    assert!(
        NatTVariant::Rfc3947 > NatTVariant::Apple && NatTVariant::Draft03 > NatTVariant::Draft02N
    );
    assert_eq!(
        KnownVendor::MsNt5 { version: Some(9) }.to_string(),
        "MS NT5 ISAKMPOAKLEY version 9"
    );
}

#[test]
fn error_messages_are_plain_words() {
    let e = DecodeError::Truncated {
        what: "proposal SPI",
        need: 20,
        have: 8,
    };
    assert_eq!(
        e.to_string(),
        "proposal SPI is truncated: it needs 20 bytes but only 8 are there"
    );
    assert_eq!(e.notify_type(), notify::PAYLOAD_MALFORMED);
    assert_eq!(
        DecodeError::CountMismatch {
            what: "proposal's #transforms",
            declared: 2,
            found: 3
        }
        .to_string(),
        "proposal's #transforms declares 2 but holds 3"
    );
}
