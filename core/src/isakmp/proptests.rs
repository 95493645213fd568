//! Property tests: encode∘decode round trips for every encoder, and decoders that never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn attr_spec() -> impl Strategy<Value = AttributeSpec> {
    let kind = 0u16..0x8000;
    prop_oneof![
        (kind.clone(), any::<u16>()).prop_map(|(k, v)| AttributeSpec::basic(k, v)),
        (kind.clone(), bytes(40)).prop_map(|(k, v)| AttributeSpec::variable(k, v)),
        (kind, any::<u64>()).prop_map(|(k, v)| AttributeSpec::number(k, v)),
    ]
}

fn transform_spec() -> impl Strategy<Value = TransformSpec> {
    (any::<u8>(), any::<u8>(), vec(attr_spec(), 0..8)).prop_map(|(number, id, attributes)| {
        TransformSpec {
            number,
            id,
            attributes,
        }
    })
}

fn proposal_spec() -> impl Strategy<Value = ProposalSpec> {
    (
        any::<u8>(),
        any::<u8>(),
        bytes(20),
        vec(transform_spec(), 0..5),
    )
        .prop_map(|(number, protocol, spi, transforms)| ProposalSpec {
            number,
            protocol,
            spi,
            transforms,
        })
}

fn sa_spec() -> impl Strategy<Value = SaSpec> {
    let doi_sit = prop_oneof![
        any::<u32>().prop_map(|s| (doi::ISAKMP, s)),
        any::<u32>().prop_map(|s| (doi::IPSEC, s & !(situation::SECRECY | situation::INTEGRITY))),
    ];
    (doi_sit, vec(proposal_spec(), 1..5)).prop_map(|((doi, situation), proposals)| SaSpec {
        doi,
        situation,
        proposals,
    })
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<[u8; 8]>(),
        any::<[u8; 8]>(),
        any::<u8>(),
        0x10u8..=0x1f,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(ci, cr, np, version, exchange, flags, message_id)| Header {
                initiator_cookie: ci,
                responder_cookie: cr,
                next_payload: np,
                version,
                exchange,
                flags,
                message_id,
                length: 0,
            },
        )
}

/// A payload of some kind with a body produced by the matching encoder.
fn any_payload() -> impl Strategy<Value = (u8, Vec<u8>)> {
    use payload_type as pt;
    prop_oneof![
        sa_spec().prop_map(|s| (pt::SA, encode_sa(&s))),
        (any::<u8>(), any::<u8>(), any::<u16>(), bytes(40))
            .prop_map(|(t, p, port, d)| (pt::ID, encode_id(t, p, port, &d))),
        (any::<u8>(), bytes(60)).prop_map(|(e, d)| (pt::CERT, encode_cert(e, &d))),
        (any::<u8>(), bytes(20)).prop_map(|(e, d)| (pt::CERT_REQ, encode_cert(e, &d))),
        (
            any::<u32>(),
            any::<u8>(),
            bytes(16),
            any::<u16>(),
            bytes(16)
        )
            .prop_map(|(doi, p, spi, t, d)| (pt::NOTIFY, encode_notify(doi, p, &spi, t, &d))),
        delete_args().prop_map(|(doi, p, size, spis)| {
            let refs: Vec<&[u8]> = spis.iter().map(Vec::as_slice).collect();
            (pt::DELETE, encode_delete(doi, p, size, &refs))
        }),
        (any::<u8>(), any::<u16>(), vec(attr_spec(), 0..6))
            .prop_map(|(t, id, a)| (pt::ATTRIBUTES, encode_attributes(t, id, &a))),
        (any::<u16>(), any::<u8>(), any::<u8>(), bytes(40))
            .prop_map(|(id, n, f, d)| (pt::FRAGMENT, encode_fragment(id, n, f, &d))),
        ip().prop_map(|a| (pt::NAT_OA, encode_nat_oa(a))),
        (
            prop::sample::select(vec![
                pt::KE,
                pt::HASH,
                pt::SIG,
                pt::NONCE,
                pt::VENDOR_ID,
                pt::NAT_D,
                pt::NAT_D_DRAFT,
                pt::NAT_D_APPLE,
                99,
            ]),
            bytes(64)
        ),
    ]
}

fn delete_args() -> impl Strategy<Value = (u32, u8, u8, Vec<Vec<u8>>)> {
    (any::<u32>(), any::<u8>(), 1u8..=16, 0usize..8).prop_flat_map(|(doi, p, size, n)| {
        (
            Just(doi),
            Just(p),
            Just(size),
            vec(vec(any::<u8>(), usize::from(size)), n),
        )
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

/// Re-encodes a decoded payload with the matching encoder (raw bodies as they are).
fn reencode(p: &Payload<'_>, raw_body: &[u8]) -> Vec<u8> {
    match p {
        Payload::Sa(sa) => encode_sa(&SaSpec::from(sa)),
        Payload::Id(id) | Payload::NatOa(id) => {
            encode_id(id.id_type, id.protocol, id.port, id.data)
        }
        Payload::Cert(c) | Payload::CertReq(c) => encode_cert(c.encoding, c.data),
        Payload::Notify(n) => encode_notify(n.doi, n.protocol, n.spi, n.message_type, n.data),
        Payload::Delete(d) => encode_delete(d.doi, d.protocol, d.spi_size, &d.spis),
        Payload::Attributes(a) => {
            let specs: Vec<_> = a.attributes.iter().map(AttributeSpec::from).collect();
            encode_attributes(a.attr_type, a.identifier, &specs)
        }
        Payload::Fragment(f) => encode_fragment(f.fragment_id, f.number, f.flags, f.data),
        _ => raw_body.to_vec(),
    }
}

proptest! {
    #[test]
    fn sa_round_trip(spec in sa_spec()) {
        let body = encode_sa(&spec);
        let sa = SaPayload::parse(&body).unwrap();
        prop_assert_eq!(sa.body, &body[..]);
        prop_assert_eq!(SaSpec::from(&sa), spec);
        // Each proposal echoed back on its own decodes to itself.
        for p in &sa.proposals {
            let one = encode_sa(&SaSpec { doi: sa.doi, situation: sa.situation, proposals: vec![ProposalSpec::from(p)] });
            prop_assert_eq!(&SaPayload::parse(&one).unwrap().proposals[0], p);
        }
    }

    #[test]
    fn attribute_number_round_trip(kind in 0u16..0x8000, v in any::<u64>()) {
        let body = encode_attributes(modecfg::CFG_SET, 1, &[AttributeSpec::number(kind, v)]);
        let a = AttributesPayload::parse(&body).unwrap();
        prop_assert_eq!(a.attributes.len(), 1);
        prop_assert_eq!(a.attributes[0].kind, kind);
        prop_assert_eq!(a.attributes[0].value.as_u64(), Some(v));
    }

    #[test]
    fn id_round_trip(t in any::<u8>(), p in any::<u8>(), port in any::<u16>(), data in bytes(80)) {
        let body = encode_id(t, p, port, &data);
        let id = IdPayload::parse(&body).unwrap();
        prop_assert_eq!((id.id_type, id.protocol, id.port, id.data, id.body), (t, p, port, &data[..], &body[..]));
        // identity() is total and Display never panics.
        if let Ok(i) = id.identity() {
            let _ = i.to_string();
        }
    }

    #[test]
    fn nat_oa_round_trip(a in ip()) {
        let body = encode_nat_oa(a);
        let Payload::NatOa(oa) = Payload::parse(payload_type::NAT_OA, &body).unwrap() else {
            panic!("not a NAT-OA");
        };
        let got = match oa.identity().unwrap() {
            Identity::Ipv4(x) => IpAddr::V4(x),
            Identity::Ipv6(x) => IpAddr::V6(x),
            other => panic!("{other:?}"),
        };
        prop_assert_eq!(got, a);
    }

    #[test]
    fn notify_round_trip(doi in any::<u32>(), p in any::<u8>(), spi in bytes(255), t in any::<u16>(), data in bytes(64)) {
        let body = encode_notify(doi, p, &spi, t, &data);
        let n = NotifyPayload::parse(&body).unwrap();
        prop_assert_eq!(n, NotifyPayload { doi, protocol: p, spi: &spi, message_type: t, data: &data });
    }

    #[test]
    fn delete_round_trip((doi, p, size, spis) in delete_args()) {
        let refs: Vec<&[u8]> = spis.iter().map(Vec::as_slice).collect();
        let body = encode_delete(doi, p, size, &refs);
        let d = DeletePayload::parse(&body).unwrap();
        prop_assert_eq!(d, DeletePayload { doi, protocol: p, spi_size: size, spis: refs });
    }

    #[test]
    fn fragment_round_trip(id in any::<u16>(), n in any::<u8>(), f in any::<u8>(), data in bytes(100)) {
        let body = encode_fragment(id, n, f, &data);
        let fr = FragmentPayload::parse(&body).unwrap();
        prop_assert_eq!(fr, FragmentPayload { fragment_id: id, number: n, flags: f, data: &data });
    }

    #[test]
    fn attributes_round_trip(t in any::<u8>(), ident in any::<u16>(), attrs in vec(attr_spec(), 0..10)) {
        let body = encode_attributes(t, ident, &attrs);
        let a = AttributesPayload::parse(&body).unwrap();
        prop_assert_eq!((a.attr_type, a.identifier), (t, ident));
        let back: Vec<_> = a.attributes.iter().map(AttributeSpec::from).collect();
        prop_assert_eq!(back, attrs);
    }

    #[test]
    fn header_round_trip(h in header(), len in 28u32..600, extra in 0usize..8) {
        let h = Header { length: len, ..h };
        let mut buf = vec![0u8; len as usize + extra];
        let mut hb = [0u8; HEADER_LEN];
        h.encode(&mut hb);
        buf[..HEADER_LEN].copy_from_slice(&hb);
        prop_assert_eq!(Header::decode(&buf), Ok(h));
        prop_assert_eq!(h.to_bytes(), hb);
    }

    #[test]
    fn message_round_trip(h in header(), items in vec(any_payload(), 0..8), padding in bytes(16)) {
        let h = Header { flags: h.flags & !flags::ENCRYPTION, ..h };
        let mut chain = PayloadChain::new();
        for (kind, body) in &items {
            chain.push(*kind, body);
        }
        let wire = encode_message(&h, chain.first(), chain.bytes());
        prop_assert_eq!(wire.len(), HEADER_LEN + chain.len());
        let m = Message::decode(&wire).unwrap();
        prop_assert_eq!(m.header.next_payload, items.first().map_or(0, |i| i.0));
        prop_assert_eq!(m.header.length as usize, wire.len());
        prop_assert_eq!(m.items.len(), items.len());
        prop_assert_eq!(m.payload_bytes, chain.bytes());
        for (item, (kind, body)) in m.items.iter().zip(&items) {
            prop_assert_eq!(item.raw.kind, *kind);
            prop_assert_eq!(item.raw.body, &body[..]);
            prop_assert_eq!(&reencode(&item.payload, item.raw.body), body);
        }
        // The same payloads followed by padding parse the same (decrypted-body case).
        let mut padded = chain.bytes().to_vec();
        padded.extend_from_slice(&padding);
        let hp = Header { next_payload: chain.first(), ..h };
        let mp = Message::parse(hp, &padded).unwrap();
        prop_assert_eq!(mp.items, m.items);
        prop_assert_eq!(mp.payload_bytes, chain.bytes());
    }

    #[test]
    fn decode_never_panics(data in bytes(600)) {
        let _ = Message::decode(&data);
        if let Ok(h) = Header::decode(&data) {
            let _ = Message::parse(h, data.get(HEADER_LEN..).unwrap_or(&[]));
        }
        for kind in 0..=u8::MAX {
            if let Ok(Payload::Id(id) | Payload::NatOa(id)) = Payload::parse(kind, &data)
                && let Ok(i) = id.identity()
            {
                let _ = i.to_string();
            }
        }
        let _ = vendor_id::classify(&data);
        let _ = payloads(data.first().copied().unwrap_or(0), &data).count();
        let _ = attributes(&data).count();
    }

    #[test]
    fn mutated_messages_never_panic(
        h in header(),
        items in vec(any_payload(), 1..6),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let h = Header { flags: 0, ..h };
        let mut chain = PayloadChain::new();
        for (kind, body) in &items {
            chain.push(*kind, body);
        }
        let mut wire = encode_message(&h, chain.first(), chain.bytes());
        for (at, v) in flips {
            let i = at.index(wire.len());
            wire[i] = v;
        }
        let _ = Message::decode(&wire);
        let n = cut.index(wire.len() + 1);
        let _ = Message::decode(&wire[..n]);
        let body = &wire[HEADER_LEN.min(n)..n];
        for kind in 0..=u8::MAX {
            let _ = Payload::parse(kind, body);
        }
    }
}
