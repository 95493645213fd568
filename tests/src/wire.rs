//! A small ISAKMP codec of the test client's own, written from RFC 2408 (§3), RFC 2407 (§4.4-4.6)
//! and RFC 3947 (§3-5) rather than shared with the server, so that the two can disagree.
//!
//! Decoding is total (every slice access checked); encoding panics on nothing.

use std::net::IpAddr;

/// Exchange types (RFC 2408 §3.1, RFC 2409 §4).
pub mod exchange {
    pub const MAIN: u8 = 2;
    pub const AGGRESSIVE: u8 = 4;
    pub const INFORMATIONAL: u8 = 5;
    pub const QUICK: u8 = 32;
}

/// Next-payload types (RFC 2408 §3.1, RFC 3947 §3.2/§5.2, and the NAT-T drafts' private values).
pub mod payload {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 1;
    pub const PROPOSAL: u8 = 2;
    pub const TRANSFORM: u8 = 3;
    pub const KE: u8 = 4;
    pub const ID: u8 = 5;
    pub const CERT: u8 = 6;
    pub const CERT_REQ: u8 = 7;
    pub const HASH: u8 = 8;
    pub const SIG: u8 = 9;
    pub const NONCE: u8 = 10;
    pub const NOTIFY: u8 = 11;
    pub const DELETE: u8 = 12;
    pub const VENDOR_ID: u8 = 13;
    pub const NAT_D: u8 = 20;
    pub const NAT_OA: u8 = 21;
    pub const NAT_D_DRAFT: u8 = 130;
    pub const NAT_OA_DRAFT: u8 = 131;
    /// IKE fragment (the Cisco/racoon scheme announced with the FRAGMENTATION vendor ID).
    pub const FRAGMENT: u8 = 132;
}

/// Header flags (RFC 2408 §3.1).
pub mod flags {
    pub const ENCRYPTION: u8 = 0x01;
    pub const COMMIT: u8 = 0x02;
    pub const AUTH_ONLY: u8 = 0x04;
}

/// Protocol identifiers (RFC 2407 §4.4.1).
pub mod proto {
    pub const ISAKMP: u8 = 1;
    pub const IPSEC_AH: u8 = 2;
    pub const IPSEC_ESP: u8 = 3;
}

/// Phase-1 attribute classes (RFC 2409 Appendix A).
pub mod p1attr {
    pub const ENCRYPTION: u16 = 1;
    pub const HASH: u16 = 2;
    pub const AUTH_METHOD: u16 = 3;
    pub const GROUP_DESCRIPTION: u16 = 4;
    pub const LIFE_TYPE: u16 = 11;
    pub const LIFE_DURATION: u16 = 12;
    pub const KEY_LENGTH: u16 = 14;
    pub const ENC_3DES: u16 = 5;
    pub const ENC_AES_CBC: u16 = 7;
    pub const HASH_SHA1: u16 = 2;
    pub const HASH_SHA256: u16 = 4;
    pub const HASH_SHA384: u16 = 5;
    pub const HASH_SHA512: u16 = 6;
    pub const AUTH_PSK: u16 = 1;
    pub const AUTH_RSA_SIG: u16 = 3;
}

/// Phase-2 (IPsec DOI) SA attributes (RFC 2407 §4.5, RFC 3947 §5.1, RFC 4868).
pub mod p2attr {
    pub const LIFE_TYPE: u16 = 1;
    pub const LIFE_DURATION: u16 = 2;
    pub const GROUP_DESCRIPTION: u16 = 3;
    pub const ENCAPSULATION_MODE: u16 = 4;
    pub const AUTH_ALGORITHM: u16 = 5;
    pub const KEY_LENGTH: u16 = 6;
    pub const MODE_TUNNEL: u16 = 1;
    pub const MODE_TRANSPORT: u16 = 2;
    pub const MODE_UDP_TUNNEL: u16 = 3;
    pub const MODE_UDP_TRANSPORT: u16 = 4;
    pub const MODE_UDP_TUNNEL_DRAFT: u16 = 61443;
    pub const MODE_UDP_TRANSPORT_DRAFT: u16 = 61444;
    pub const AUTH_HMAC_SHA1: u16 = 2;
    pub const AUTH_HMAC_SHA256: u16 = 5;
    pub const AUTH_HMAC_SHA384: u16 = 6;
    pub const AUTH_HMAC_SHA512: u16 = 7;
}

/// Life types, shared by both phases (RFC 2409 App. A, RFC 2407 §4.5).
pub mod life {
    pub const SECONDS: u16 = 1;
    pub const KILOBYTES: u16 = 2;
}

/// ESP transform identifiers (RFC 2407 §4.4.4, RFC 4106).
pub mod esp_id {
    pub const DES3: u8 = 3;
    pub const NULL: u8 = 11;
    pub const AES_CBC: u8 = 12;
    pub const AES_GCM_16: u8 = 20;
}

/// Identification types (RFC 2407 §4.6.2.1).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const USER_FQDN: u8 = 3;
    pub const IPV4_ADDR_SUBNET: u8 = 4;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
}

/// Certificate encodings of CERT and CERTREQ payloads (RFC 2408 §3.9).
pub mod cert_encoding {
    pub const PKCS7: u8 = 1;
    pub const X509_SIG: u8 = 4;
}

/// Notify message types (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706).
pub mod notify {
    pub const INVALID_PAYLOAD_TYPE: u16 = 1;
    pub const DOI_NOT_SUPPORTED: u16 = 2;
    pub const INVALID_EXCHANGE_TYPE: u16 = 7;
    pub const INVALID_FLAGS: u16 = 8;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const BAD_PROPOSAL_SYNTAX: u16 = 15;
    pub const PAYLOAD_MALFORMED: u16 = 16;
    pub const INVALID_KEY_INFORMATION: u16 = 17;
    pub const INVALID_ID_INFORMATION: u16 = 18;
    pub const INVALID_CERT_ENCODING: u16 = 19;
    pub const INVALID_CERTIFICATE: u16 = 20;
    pub const CERT_TYPE_UNSUPPORTED: u16 = 21;
    pub const INVALID_HASH_INFORMATION: u16 = 23;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const INVALID_SIGNATURE: u16 = 25;
    pub const CERTIFICATE_UNAVAILABLE: u16 = 28;
    pub const CONNECTED: u16 = 16384;
    pub const RESPONDER_LIFETIME: u16 = 24576;
    pub const REPLAY_STATUS: u16 = 24577;
    pub const INITIAL_CONTACT: u16 = 24578;
    pub const R_U_THERE: u16 = 36136;
    pub const R_U_THERE_ACK: u16 = 36137;
}

/// Vendor IDs the client can advertise.
pub mod vid {
    /// MD5("RFC 3947").
    pub const RFC3947: [u8; 16] =
        *b"\x4a\x13\x1c\x81\x07\x03\x58\x45\x5c\x57\x28\xf2\x0e\x95\x45\x2f";
    /// MD5("draft-ietf-ipsec-nat-t-ike-02\n").
    pub const NATT_DRAFT_02_N: [u8; 16] =
        *b"\x90\xcb\x80\x91\x3e\xbb\x69\x6e\x08\x63\x81\xb5\xec\x42\x7b\x1f";
    /// RFC 3706 §7: DPD.
    pub const DPD: [u8; 16] = *b"\xaf\xca\xd7\x13\x68\xa1\xf1\xc9\x6b\x86\x96\xfc\x77\x57\x01\x00";
    /// Microsoft "MS NT5 ISAKMPOAKLEY" with version 9 (Windows 8 and later).
    pub const MS_NT5_V9: [u8; 20] =
        *b"\x1e\x2b\x51\x69\x05\x99\x1c\x7d\x7c\x96\xfc\xbf\xb5\x87\xe4\x61\x00\x00\x00\x09";
    /// MD5("FRAGMENTATION"), as Windows sends it (bare, without the capability suffix).
    pub const FRAGMENTATION: [u8; 16] =
        *b"\x40\x48\xb7\xd5\x6e\xbc\xe8\x85\x25\xe7\xde\x7f\x00\xd6\xc2\xd3";
}

pub const HEADER_LEN: usize = 28;

/// The fixed ISAKMP header (RFC 2408 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub icky: [u8; 8],
    pub rcky: [u8; 8],
    pub next: u8,
    pub version: u8,
    pub exchange: u8,
    pub flags: u8,
    pub mid: u32,
    pub length: u32,
}

impl Header {
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let b = buf.get(..HEADER_LEN)?;
        Some(Header {
            icky: b[0..8].try_into().ok()?,
            rcky: b[8..16].try_into().ok()?,
            next: b[16],
            version: b[17],
            exchange: b[18],
            flags: b[19],
            mid: u32::from_be_bytes(b[20..24].try_into().ok()?),
            length: u32::from_be_bytes(b[24..28].try_into().ok()?),
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.icky);
        out.extend_from_slice(&self.rcky);
        out.push(self.next);
        out.push(self.version);
        out.push(self.exchange);
        out.push(self.flags);
        out.extend_from_slice(&self.mid.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// One payload of a chain, as found in a decoded body: `start..end` is the whole payload with its
/// generic header, relative to the body; `body` is the payload without the 4-byte generic header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub kind: u8,
    pub start: usize,
    pub end: usize,
    pub body: Vec<u8>,
}

/// Walks a payload chain starting with `first`. Returns the payloads and the offset just after the
/// last one (anything after it is padding).
pub fn parse_chain(first: u8, body: &[u8]) -> Result<(Vec<Payload>, usize), String> {
    let mut out = Vec::new();
    let mut kind = first;
    let mut pos = 0usize;
    while kind != payload::NONE {
        let gh = body
            .get(pos..pos + 4)
            .ok_or_else(|| format!("payload {kind} at {pos}: truncated generic header"))?;
        let next = gh[0];
        let len = usize::from(u16::from_be_bytes([gh[2], gh[3]]));
        if len < 4 {
            return Err(format!("payload {kind} at {pos}: length {len} < 4"));
        }
        let whole = body
            .get(pos..pos + len)
            .ok_or_else(|| format!("payload {kind} at {pos}: length {len} past the end"))?;
        out.push(Payload {
            kind,
            start: pos,
            end: pos + len,
            body: whole[4..].to_vec(),
        });
        pos += len;
        kind = next;
        if out.len() > 64 {
            return Err("more than 64 payloads".into());
        }
    }
    Ok((out, pos))
}

/// Builds a payload chain, filling in next-payload fields and lengths.
#[derive(Debug, Default, Clone)]
pub struct Chain {
    items: Vec<(u8, Vec<u8>)>,
}

impl Chain {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, kind: u8, body: Vec<u8>) -> &mut Self {
        self.items.push((kind, body));
        self
    }
    pub fn first(&self) -> u8 {
        self.items.first().map_or(payload::NONE, |(k, _)| *k)
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (_, body)) in self.items.iter().enumerate() {
            let next = self.items.get(i + 1).map_or(payload::NONE, |(k, _)| *k);
            let len = u16::try_from(body.len() + 4).unwrap_or(u16::MAX);
            out.push(next);
            out.push(0);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(body);
        }
        out
    }
}

/// A data attribute (RFC 2408 §3.3): TV (basic, AF=1) or TLV (variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    Basic(u16, u16),
    Var(u16, Vec<u8>),
}

impl Attr {
    /// A number: basic when it fits in 16 bits, else a variable attribute of 4 (or 8) bytes.
    pub fn number(kind: u16, v: u64) -> Attr {
        if let Ok(v) = u16::try_from(v) {
            Attr::Basic(kind, v)
        } else if let Ok(v) = u32::try_from(v) {
            Attr::Var(kind, v.to_be_bytes().to_vec())
        } else {
            Attr::Var(kind, v.to_be_bytes().to_vec())
        }
    }
    pub fn kind(&self) -> u16 {
        match self {
            Attr::Basic(k, _) | Attr::Var(k, _) => *k,
        }
    }
    pub fn value(&self) -> Option<u64> {
        match self {
            Attr::Basic(_, v) => Some(u64::from(*v)),
            Attr::Var(_, b) if b.len() <= 8 => {
                Some(b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
            }
            Attr::Var(..) => None,
        }
    }
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Attr::Basic(k, v) => {
                out.extend_from_slice(&(0x8000 | k).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            Attr::Var(k, b) => {
                out.extend_from_slice(&(k & 0x7fff).to_be_bytes());
                out.extend_from_slice(&u16::try_from(b.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

pub fn parse_attrs(mut b: &[u8]) -> Result<Vec<Attr>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = b.get(..4).ok_or("truncated attribute")?;
        let t = u16::from_be_bytes([h[0], h[1]]);
        let v = u16::from_be_bytes([h[2], h[3]]);
        if t & 0x8000 != 0 {
            out.push(Attr::Basic(t & 0x7fff, v));
            b = &b[4..];
        } else {
            let n = usize::from(v);
            let val = b.get(4..4 + n).ok_or("truncated variable attribute")?;
            out.push(Attr::Var(t, val.to_vec()));
            b = &b[4 + n..];
        }
    }
    Ok(out)
}

/// A transform as sent or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub number: u8,
    pub id: u8,
    pub attrs: Vec<Attr>,
}

impl Transform {
    pub fn attr(&self, kind: u16) -> Option<u64> {
        self.attrs
            .iter()
            .find(|a| a.kind() == kind)
            .and_then(Attr::value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// An SA payload body (RFC 2408 §3.4, RFC 2407 §4.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sa {
    pub doi: u32,
    pub situation: u32,
    pub proposals: Vec<Proposal>,
}

pub const DOI_IPSEC: u32 = 1;
pub const SIT_IDENTITY_ONLY: u32 = 1;

impl Sa {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.doi.to_be_bytes());
        out.extend_from_slice(&self.situation.to_be_bytes());
        for (pi, p) in self.proposals.iter().enumerate() {
            let mut pb = vec![p.number, p.protocol, u8::try_from(p.spi.len()).unwrap_or(0)];
            pb.push(u8::try_from(p.transforms.len()).unwrap_or(0));
            pb.extend_from_slice(&p.spi);
            for (ti, t) in p.transforms.iter().enumerate() {
                let mut tb = vec![t.number, t.id, 0, 0];
                for a in &t.attrs {
                    a.write(&mut tb);
                }
                let next = if ti + 1 < p.transforms.len() {
                    payload::TRANSFORM
                } else {
                    0
                };
                pb.push(next);
                pb.push(0);
                pb.extend_from_slice(&u16::try_from(tb.len() + 4).unwrap_or(0).to_be_bytes());
                pb.extend_from_slice(&tb);
            }
            let next = if pi + 1 < self.proposals.len() {
                payload::PROPOSAL
            } else {
                0
            };
            out.push(next);
            out.push(0);
            out.extend_from_slice(&u16::try_from(pb.len() + 4).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&pb);
        }
        out
    }

    pub fn parse(b: &[u8]) -> Result<Sa, String> {
        let h = b.get(..8).ok_or("SA payload shorter than 8 bytes")?;
        let doi = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let situation = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let (ps, _) = parse_chain(payload::PROPOSAL, &b[8..])?;
        let mut proposals = Vec::new();
        for p in ps {
            if p.kind != payload::PROPOSAL {
                return Err(format!("payload {} inside an SA payload", p.kind));
            }
            let pb = &p.body;
            let ph = pb.get(..4).ok_or("proposal shorter than 8 bytes")?;
            let spi_len = usize::from(ph[2]);
            let spi = pb
                .get(4..4 + spi_len)
                .ok_or("proposal SPI truncated")?
                .to_vec();
            let (ts, _) = parse_chain(payload::TRANSFORM, &pb[4 + spi_len..])?;
            let mut transforms = Vec::new();
            for t in ts {
                if t.kind != payload::TRANSFORM {
                    return Err(format!("payload {} inside a proposal", t.kind));
                }
                let th = t.body.get(..4).ok_or("transform shorter than 8 bytes")?;
                transforms.push(Transform {
                    number: th[0],
                    id: th[1],
                    attrs: parse_attrs(&t.body[4..])?,
                });
            }
            if transforms.len() != usize::from(ph[3]) {
                return Err(format!(
                    "proposal says {} transforms, has {}",
                    ph[3],
                    transforms.len()
                ));
            }
            proposals.push(Proposal {
                number: ph[0],
                protocol: ph[1],
                spi,
                transforms,
            });
        }
        Ok(Sa {
            doi,
            situation,
            proposals,
        })
    }
}

/// Identification payload body (RFC 2407 §4.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id {
    pub id_type: u8,
    pub protocol: u8,
    pub port: u16,
    pub data: Vec<u8>,
}

impl Id {
    pub fn ipv4(addr: std::net::Ipv4Addr, protocol: u8, port: u16) -> Id {
        Id {
            id_type: id_type::IPV4_ADDR,
            protocol,
            port,
            data: addr.octets().to_vec(),
        }
    }
    pub fn addr(addr: IpAddr, protocol: u8, port: u16) -> Id {
        match addr {
            IpAddr::V4(a) => Id::ipv4(a, protocol, port),
            IpAddr::V6(a) => Id {
                id_type: id_type::IPV6_ADDR,
                protocol,
                port,
                data: a.octets().to_vec(),
            },
        }
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.id_type, self.protocol];
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }
    pub fn parse(b: &[u8]) -> Result<Id, String> {
        let h = b.get(..4).ok_or("ID payload shorter than 8 bytes")?;
        Ok(Id {
            id_type: h[0],
            protocol: h[1],
            port: u16::from_be_bytes([h[2], h[3]]),
            data: b[4..].to_vec(),
        })
    }
}

/// Notification payload body (RFC 2408 §3.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub doi: u32,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub message_type: u16,
    pub data: Vec<u8>,
}

impl Notify {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.doi.to_be_bytes().to_vec();
        out.push(self.protocol);
        out.push(u8::try_from(self.spi.len()).unwrap_or(0));
        out.extend_from_slice(&self.message_type.to_be_bytes());
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
        out
    }
    pub fn parse(b: &[u8]) -> Result<Notify, String> {
        let h = b.get(..8).ok_or("notify shorter than 12 bytes")?;
        let spi_len = usize::from(h[5]);
        let spi = b
            .get(8..8 + spi_len)
            .ok_or("notify SPI truncated")?
            .to_vec();
        Ok(Notify {
            doi: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            protocol: h[4],
            spi,
            message_type: u16::from_be_bytes([h[6], h[7]]),
            data: b[8 + spi_len..].to_vec(),
        })
    }
}

/// Delete payload body (RFC 2408 §3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub doi: u32,
    pub protocol: u8,
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    pub fn encode(&self) -> Vec<u8> {
        let spi_len = self.spis.first().map_or(0, Vec::len);
        let mut out = self.doi.to_be_bytes().to_vec();
        out.push(self.protocol);
        out.push(u8::try_from(spi_len).unwrap_or(0));
        out.extend_from_slice(&u16::try_from(self.spis.len()).unwrap_or(0).to_be_bytes());
        for s in &self.spis {
            out.extend_from_slice(s);
        }
        out
    }
    pub fn parse(b: &[u8]) -> Result<Delete, String> {
        let h = b.get(..8).ok_or("delete shorter than 12 bytes")?;
        let spi_len = usize::from(h[5]);
        let n = usize::from(u16::from_be_bytes([h[6], h[7]]));
        let mut spis = Vec::new();
        for i in 0..n {
            let s = b
                .get(8 + i * spi_len..8 + (i + 1) * spi_len)
                .ok_or("delete SPIs truncated")?;
            spis.push(s.to_vec());
        }
        Ok(Delete {
            doi: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            protocol: h[4],
            spis,
        })
    }
}

/// NAT-OA payload body (RFC 3947 §5.2): ID type, 3 reserved bytes, address.
pub fn nat_oa(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => {
            let mut v = vec![id_type::IPV4_ADDR, 0, 0, 0];
            v.extend_from_slice(&a.octets());
            v
        }
        IpAddr::V6(a) => {
            let mut v = vec![id_type::IPV6_ADDR, 0, 0, 0];
            v.extend_from_slice(&a.octets());
            v
        }
    }
}

/// A whole unencrypted message: header with the right first payload and length.
pub fn message(mut header: Header, chain: &Chain) -> Vec<u8> {
    let body = chain.bytes();
    header.next = chain.first();
    header.length = u32::try_from(HEADER_LEN + body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    header.write(&mut out);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sa_roundtrip() {
        let sa = Sa {
            doi: DOI_IPSEC,
            situation: SIT_IDENTITY_ONLY,
            proposals: vec![Proposal {
                number: 1,
                protocol: proto::IPSEC_ESP,
                spi: vec![1, 2, 3, 4],
                transforms: vec![
                    Transform {
                        number: 1,
                        id: 12,
                        attrs: vec![Attr::Basic(6, 128), Attr::number(2, 100_000)],
                    },
                    Transform {
                        number: 2,
                        id: 3,
                        attrs: vec![],
                    },
                ],
            }],
        };
        let b = sa.encode();
        assert_eq!(Sa::parse(&b).unwrap(), sa);
        let chain = {
            let mut c = Chain::new();
            c.push(payload::SA, b.clone())
                .push(payload::NONCE, vec![9; 16]);
            c
        };
        let (items, end) = parse_chain(payload::SA, &chain.bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].body, b);
        assert_eq!(end, chain.bytes().len());
    }
}
