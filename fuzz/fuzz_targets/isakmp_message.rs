//! Fuzzes the ISAKMP decoder: it must be total (no panic on any input), and whatever it
//! accepts must re-encode into bytes that decode to the same thing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roadgate_core::isakmp::{
    self, AttributeSpec, Header, Message, Payload, PayloadChain, SaSpec, encode_attributes,
    encode_cert, encode_delete, encode_fragment, encode_id, encode_message, encode_notify,
    encode_sa,
};

/// Re-encodes a decoded payload body from its owned spec; `None` for raw-bytes payloads.
fn reencode(p: &Payload<'_>) -> Option<Vec<u8>> {
    Some(match p {
        Payload::Sa(sa) => encode_sa(&SaSpec::from(sa)),
        Payload::Id(id) | Payload::NatOa(id) => {
            encode_id(id.id_type, id.protocol, id.port, id.data)
        }
        Payload::Cert(c) | Payload::CertReq(c) => encode_cert(c.encoding, c.data),
        Payload::Notify(n) => encode_notify(n.doi, n.protocol, n.spi, n.message_type, n.data),
        Payload::Delete(d) => encode_delete(d.doi, d.protocol, d.spi_size, &d.spis),
        Payload::Attributes(a) => {
            let attrs: Vec<AttributeSpec> = a.attributes.iter().map(AttributeSpec::from).collect();
            encode_attributes(a.attr_type, a.identifier, &attrs)
        }
        Payload::Fragment(f) => encode_fragment(f.fragment_id, f.number, f.flags, f.data),
        _ => return None,
    })
}

/// Equal up to reserved bytes (which the encoders zero, so an SA's raw body may differ).
fn same(a: &Payload<'_>, b: &Payload<'_>) -> bool {
    match (a, b) {
        (Payload::Sa(x), Payload::Sa(y)) => SaSpec::from(x) == SaSpec::from(y),
        _ => a == b,
    }
}

fn check_roundtrip(kind: u8, p: &Payload<'_>) {
    let Some(bytes) = reencode(p) else { return };
    match Payload::parse(kind, &bytes) {
        Ok(again) => assert!(same(&again, p), "payload {kind} changed when re-encoded"),
        Err(e) => panic!("payload {kind} re-encoded into undecodable bytes: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // Every payload parser on the raw input: must not panic.
    for kind in 0..=u8::MAX {
        if let Ok(p) = Payload::parse(kind, data) {
            check_roundtrip(kind, &p);
            if let Payload::Id(id) | Payload::NatOa(id) = &p {
                if let Ok(identity) = id.identity() {
                    let _ = identity.to_string();
                }
            }
        }
    }
    let _ = isakmp::vendor_id::classify(data);

    // Header alone, and the header's own round trip.
    if let Ok(h) = Header::decode(data) {
        let mut out = [0u8; isakmp::HEADER_LEN];
        h.encode(&mut out);
        assert_eq!(data.get(..isakmp::HEADER_LEN), Some(&out[..]));
    }

    // Whole message; as an encrypted one would be handled too (plaintext after the header).
    if let Ok(h) = Header::decode(data) {
        let _ = Message::parse(h, data.get(isakmp::HEADER_LEN..).unwrap_or(&[]));
    }
    let Ok(msg) = Message::decode(data) else {
        return;
    };
    let _ = msg.header.is_encrypted();

    // Rebuild the message from re-encoded payloads and check it decodes to the same payloads.
    let mut chain = PayloadChain::new();
    for item in &msg.items {
        check_roundtrip(item.raw.kind, &item.payload);
        let body = reencode(&item.payload).unwrap_or_else(|| item.raw.body.to_vec());
        chain.push(item.raw.kind, &body);
        assert_eq!(
            msg.payload_bytes
                .get(item.raw.offset..item.raw.end())
                .map(<[u8]>::len),
            Some(item.raw.len)
        );
    }
    let rebuilt = encode_message(&msg.header, chain.first(), chain.bytes());
    let again = Message::decode(&rebuilt).expect("re-encoded message must decode");
    assert_eq!(again.items.len(), msg.items.len());
    for (a, b) in again.items.iter().zip(&msg.items) {
        assert_eq!(a.raw.kind, b.raw.kind);
        assert!(same(&a.payload, &b.payload));
    }
});
