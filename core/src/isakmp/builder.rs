//! Building messages: payload chains and payload-body encoders (owned; IKE is not the packet hot
//! path, so allocation is fine).
//!
//! The encoders take specs that our own code builds. A spec that the wire format cannot carry
//! (a payload body over [`MAX_PAYLOAD_BODY`] bytes, more than 255 transforms, an SPI over 255
//! bytes, ...) is a programming error and panics; every spec converted from a decoded payload
//! (`From<&Proposal>` etc.) is representable, with the same size as the original.

use std::net::IpAddr;

use super::payload::GENERIC_HEADER_LEN;
use super::sa::{AttrValue, Attribute, Proposal, SaPayload, Transform};
use super::{HEADER_LEN, Header, id_type, payload_type};

/// Largest payload body a generic payload header can describe (65535 − 4).
pub const MAX_PAYLOAD_BODY: usize = u16::MAX as usize - GENERIC_HEADER_LEN;

const AF: u16 = 0x8000;

fn len_u16(n: usize, what: &str) -> u16 {
    match u16::try_from(n) {
        Ok(v) => v,
        Err(_) => panic!("ISAKMP encoder: {what} of {n} bytes does not fit a 16-bit length"),
    }
}

fn count_u8(n: usize, what: &str) -> u8 {
    match u8::try_from(n) {
        Ok(v) => v,
        Err(_) => panic!("ISAKMP encoder: {what} of {n} does not fit an 8-bit field"),
    }
}

/// A chain of payloads being built: each [`push`](PayloadChain::push) appends a generic
/// header and a body and links the previous payload to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadChain {
    buf: Vec<u8>,
    first: u8,
    /// Offset of the last payload's generic header.
    last: Option<usize>,
}

impl PayloadChain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a payload of type `kind`: generic header (next payload 0, length) and `body`,
    /// and patches the previous payload's next-payload field to `kind`.
    ///
    /// # Panics
    /// If `body` is longer than [`MAX_PAYLOAD_BODY`].
    pub fn push(&mut self, kind: u8, body: &[u8]) -> &mut Self {
        let len = len_u16(body.len() + GENERIC_HEADER_LEN, "payload");
        match self.last.and_then(|at| self.buf.get_mut(at)) {
            Some(next) => *next = kind,
            None => self.first = kind,
        }
        self.last = Some(self.buf.len());
        self.buf.push(payload_type::NONE);
        self.buf.push(0);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(body);
        self
    }

    /// Appends every payload of `other`, linking this chain's last payload to its first.
    pub fn append(&mut self, other: &PayloadChain) -> &mut Self {
        let Some(other_last) = other.last else {
            return self;
        };
        match self.last.and_then(|at| self.buf.get_mut(at)) {
            Some(next) => *next = other.first,
            None => self.first = other.first,
        }
        self.last = Some(self.buf.len() + other_last);
        self.buf.extend_from_slice(&other.buf);
        self
    }

    /// Type of the first payload; [`payload_type::NONE`] if the chain is empty.
    pub fn first(&self) -> u8 {
        self.first
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Length of the encoded chain in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A bare data-attribute list (TV/TLV, RFC 2408 §3.3), e.g. the notification data of
/// RESPONDER-LIFETIME (RFC 2407 §4.6.3.1).
pub fn encode_attribute_list(attrs: &[AttributeSpec]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_attrs(&mut out, attrs);
    out
}

/// The header (with `next_payload` set to `first_payload` and `length` to 28 + `body.len()`)
/// followed by `body`.
///
/// # Panics
/// If the message would be longer than `u32::MAX` bytes.
pub fn encode_message(header: &Header, first_payload: u8, body: &[u8]) -> Vec<u8> {
    let total = HEADER_LEN + body.len();
    let length = match u32::try_from(total) {
        Ok(v) => v,
        Err(_) => panic!("ISAKMP encoder: message of {total} bytes is too long"),
    };
    let h = Header {
        next_payload: first_payload,
        length,
        ..*header
    };
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(body);
    out
}

/// An SA payload to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSpec {
    pub doi: u32,
    pub situation: u32,
    pub proposals: Vec<ProposalSpec>,
}

/// A proposal to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalSpec {
    pub number: u8,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<TransformSpec>,
}

/// A transform to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformSpec {
    pub number: u8,
    pub id: u8,
    pub attributes: Vec<AttributeSpec>,
}

/// A data attribute to encode. `kind` is given without the AF bit (any AF bit is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeSpec {
    pub kind: u16,
    pub value: AttrValueSpec,
}

/// A data attribute value to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValueSpec {
    Basic(u16),
    Variable(Vec<u8>),
}

impl AttributeSpec {
    /// A basic (TV) attribute.
    pub fn basic(kind: u16, v: u16) -> Self {
        AttributeSpec {
            kind,
            value: AttrValueSpec::Basic(v),
        }
    }

    /// A variable (TLV) attribute.
    pub fn variable(kind: u16, v: Vec<u8>) -> Self {
        AttributeSpec {
            kind,
            value: AttrValueSpec::Variable(v),
        }
    }

    /// An integer attribute: basic if it fits 16 bits, otherwise variable with the fewest of
    /// 4 or 8 big-endian bytes (e.g. a life duration of 86400 s).
    pub fn number(kind: u16, v: u64) -> Self {
        if let Ok(small) = u16::try_from(v) {
            Self::basic(kind, small)
        } else if let Ok(word) = u32::try_from(v) {
            Self::variable(kind, word.to_be_bytes().to_vec())
        } else {
            Self::variable(kind, v.to_be_bytes().to_vec())
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let kind = self.kind & !AF;
        match &self.value {
            AttrValueSpec::Basic(v) => {
                out.extend_from_slice(&(kind | AF).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            AttrValueSpec::Variable(v) => {
                out.extend_from_slice(&kind.to_be_bytes());
                out.extend_from_slice(&len_u16(v.len(), "variable attribute").to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
}

impl From<&AttrValue<'_>> for AttrValueSpec {
    fn from(v: &AttrValue<'_>) -> Self {
        match *v {
            AttrValue::Basic(x) => AttrValueSpec::Basic(x),
            AttrValue::Variable(b) => AttrValueSpec::Variable(b.to_vec()),
        }
    }
}

impl From<&Attribute<'_>> for AttributeSpec {
    fn from(a: &Attribute<'_>) -> Self {
        AttributeSpec {
            kind: a.kind,
            value: AttrValueSpec::from(&a.value),
        }
    }
}

impl From<&Transform<'_>> for TransformSpec {
    fn from(t: &Transform<'_>) -> Self {
        TransformSpec {
            number: t.number,
            id: t.id,
            attributes: t.attributes.iter().map(AttributeSpec::from).collect(),
        }
    }
}

impl From<&Proposal<'_>> for ProposalSpec {
    fn from(p: &Proposal<'_>) -> Self {
        ProposalSpec {
            number: p.number,
            protocol: p.protocol,
            spi: p.spi.to_vec(),
            transforms: p.transforms.iter().map(TransformSpec::from).collect(),
        }
    }
}

impl From<&SaPayload<'_>> for SaSpec {
    fn from(sa: &SaPayload<'_>) -> Self {
        SaSpec {
            doi: sa.doi,
            situation: sa.situation,
            proposals: sa.proposals.iter().map(ProposalSpec::from).collect(),
        }
    }
}

/// Writes a nested generic header placeholder and returns its offset.
fn open_nested(out: &mut Vec<u8>, next: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[next, 0, 0, 0]);
    at
}

/// Patches the length of the nested payload opened at `at`.
fn close_nested(out: &mut [u8], at: usize, what: &str) {
    let len = len_u16(out.len() - at, what).to_be_bytes();
    if let Some(field) = out.get_mut(at + 2..at + 4) {
        field.copy_from_slice(&len);
    }
}

fn encode_attrs(out: &mut Vec<u8>, attrs: &[AttributeSpec]) {
    for a in attrs {
        a.encode(out);
    }
}

/// Encodes an SA payload body (RFC 2407 §4.6.1): DOI, situation, then the proposal chain,
/// each proposal followed by its transform chain.
///
/// # Panics
/// If a proposal has more than 255 transforms or an SPI over 255 bytes, or a nested payload
/// exceeds 65535 bytes.
pub fn encode_sa(spec: &SaSpec) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&spec.doi.to_be_bytes());
    out.extend_from_slice(&spec.situation.to_be_bytes());
    let np = spec.proposals.len();
    for (i, p) in spec.proposals.iter().enumerate() {
        let next = if i + 1 == np {
            payload_type::NONE
        } else {
            payload_type::PROPOSAL
        };
        let at = open_nested(&mut out, next);
        out.push(p.number);
        out.push(p.protocol);
        out.push(count_u8(p.spi.len(), "proposal SPI size"));
        out.push(count_u8(p.transforms.len(), "proposal #transforms"));
        out.extend_from_slice(&p.spi);
        let nt = p.transforms.len();
        for (j, t) in p.transforms.iter().enumerate() {
            let next = if j + 1 == nt {
                payload_type::NONE
            } else {
                payload_type::TRANSFORM
            };
            let tat = open_nested(&mut out, next);
            out.extend_from_slice(&[t.number, t.id, 0, 0]);
            encode_attrs(&mut out, &t.attributes);
            close_nested(&mut out, tat, "transform payload");
        }
        close_nested(&mut out, at, "proposal payload");
    }
    out
}

/// Encodes an ID payload body (RFC 2407 §4.6.2).
pub fn encode_id(id_type: u8, protocol: u8, port: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len());
    out.push(id_type);
    out.push(protocol);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Encodes a notification payload body (RFC 2408 §3.14).
///
/// # Panics
/// If `spi` is longer than 255 bytes.
pub fn encode_notify(
    doi: u32,
    protocol: u8,
    spi: &[u8],
    message_type: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + spi.len() + data.len());
    out.extend_from_slice(&doi.to_be_bytes());
    out.push(protocol);
    out.push(count_u8(spi.len(), "notify SPI size"));
    out.extend_from_slice(&message_type.to_be_bytes());
    out.extend_from_slice(spi);
    out.extend_from_slice(data);
    out
}

/// Encodes a delete payload body (RFC 2408 §3.15). For the ISAKMP SA, `spi_size` is 16 and
/// the SPI is the two cookies; for ESP it is 4.
///
/// # Panics
/// If an SPI is not `spi_size` bytes long, or there are more than 65535 SPIs.
pub fn encode_delete(doi: u32, protocol: u8, spi_size: u8, spis: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + usize::from(spi_size) * spis.len());
    out.extend_from_slice(&doi.to_be_bytes());
    out.push(protocol);
    out.push(spi_size);
    out.extend_from_slice(&len_u16(spis.len(), "delete SPI count").to_be_bytes());
    for spi in spis {
        assert_eq!(
            spi.len(),
            usize::from(spi_size),
            "ISAKMP encoder: delete SPI length differs from the SPI size"
        );
        out.extend_from_slice(spi);
    }
    out
}

/// Encodes a CERT (or CERTREQ) payload body (RFC 2408 §3.9, §3.10).
pub fn encode_cert(encoding: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(encoding);
    out.extend_from_slice(data);
    out
}

/// Encodes a NAT-OA payload body (RFC 3947 §5.2): ID_IPV4_ADDR or ID_IPV6_ADDR, three
/// reserved bytes, the address.
pub fn encode_nat_oa(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => encode_id(id_type::IPV4_ADDR, 0, 0, &a.octets()),
        IpAddr::V6(a) => encode_id(id_type::IPV6_ADDR, 0, 0, &a.octets()),
    }
}

/// Encodes a fragment payload body (type 132): fragment ID, number, flags, data.
pub fn encode_fragment(fragment_id: u16, number: u8, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&fragment_id.to_be_bytes());
    out.push(number);
    out.push(flags);
    out.extend_from_slice(data);
    out
}

/// Encodes a mode-config attribute payload body (draft-dukes-ike-mode-cfg §3.2).
pub fn encode_attributes(attr_type: u8, identifier: u16, attrs: &[AttributeSpec]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(attr_type);
    out.push(0);
    out.extend_from_slice(&identifier.to_be_bytes());
    encode_attrs(&mut out, attrs);
    out
}
