//! Security Association payload (RFC 2408 §3.4, RFC 2407 §4.6.1) with its nested proposal
//! (§3.5) and transform (§3.6) payloads and their data attributes (§3.3).

use super::payload::payloads;
use super::reader::Reader;
use super::{DecodeError, doi, payload_type, situation};

pub(crate) const SITUATION_UNSUPPORTED: &str =
    "IPsec DOI situation with labelled secrecy or integrity (SIT_SECRECY / SIT_INTEGRITY)";
pub(crate) const DOI_UNSUPPORTED: &str =
    "domain of interpretation other than ISAKMP (0) or IPsec (1)";

/// Attribute Format bit: set for a basic (TV) attribute, clear for a variable (TLV) one.
const AF: u16 = 0x8000;

/// An SA payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaPayload<'a> {
    pub doi: u32,
    pub situation: u32,
    /// The whole payload body after the generic header (RFC 2409's `SAi_b`).
    pub body: &'a [u8],
    /// Proposals in wire order. Proposals sharing a number form one AND-ed offer (e.g. AH+ESP).
    pub proposals: Vec<Proposal<'a>>,
}

/// A proposal payload inside an SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal<'a> {
    pub number: u8,
    pub protocol: u8,
    pub spi: &'a [u8],
    /// Transforms in wire order (the initiator's preference order).
    pub transforms: Vec<Transform<'a>>,
}

/// A transform payload inside a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform<'a> {
    pub number: u8,
    pub id: u8,
    pub attributes: Vec<Attribute<'a>>,
}

/// A data attribute (RFC 2408 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Attribute type with the AF bit stripped.
    pub kind: u16,
    pub value: AttrValue<'a>,
}

/// The value of a data attribute: basic (TV) or variable (TLV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrValue<'a> {
    Basic(u16),
    Variable(&'a [u8]),
}

impl AttrValue<'_> {
    /// The value as an integer: a basic value as is; a variable one of 1..=8 bytes as a
    /// big-endian integer (life durations arrive as 4-byte variables); otherwise `None`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            AttrValue::Basic(v) => Some(u64::from(v)),
            AttrValue::Variable(b) if (1..=8).contains(&b.len()) => {
                Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            }
            AttrValue::Variable(_) => None,
        }
    }

    /// The value as a `u16` when it is basic, or variable and small enough.
    pub fn as_u16(&self) -> Option<u16> {
        self.as_u64().and_then(|v| u16::try_from(v).ok())
    }

    /// The raw bytes of a variable value; `None` for a basic one.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            AttrValue::Basic(_) => None,
            AttrValue::Variable(b) => Some(b),
        }
    }
}

impl<'a> Attribute<'a> {
    /// First attribute of the given type in a list.
    pub fn find(attrs: &[Attribute<'a>], kind: u16) -> Option<AttrValue<'a>> {
        attrs.iter().find(|a| a.kind == kind).map(|a| a.value)
    }
}

impl<'a> Transform<'a> {
    /// First attribute of the given type.
    pub fn attr(&self, kind: u16) -> Option<AttrValue<'a>> {
        Attribute::find(&self.attributes, kind)
    }
}

/// Iterator over a run of data attributes that fills `data` exactly. Yields an error once
/// (an attribute header or value running past the end) and then stops.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    r: Reader<'a>,
    failed: bool,
}

/// Iterates the data attributes in `data` (a transform's or a mode-config payload's tail).
pub fn attributes(data: &[u8]) -> Attributes<'_> {
    Attributes {
        r: Reader::new(data),
        failed: false,
    }
}

impl<'a> Attributes<'a> {
    fn read(&mut self) -> Result<Attribute<'a>, DecodeError> {
        let t = self.r.u16("data attribute header")?;
        let v = self.r.u16("data attribute header")?;
        let kind = t & !AF;
        if t & AF != 0 {
            return Ok(Attribute {
                kind,
                value: AttrValue::Basic(v),
            });
        }
        let value = self.r.take(usize::from(v), "variable attribute value")?;
        Ok(Attribute {
            kind,
            value: AttrValue::Variable(value),
        })
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<Attribute<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.remaining() == 0 {
            return None;
        }
        let item = self.read();
        self.failed = item.is_err();
        Some(item)
    }
}

pub(crate) fn parse_attributes(data: &[u8]) -> Result<Vec<Attribute<'_>>, DecodeError> {
    attributes(data).collect()
}

impl<'a> SaPayload<'a> {
    /// Decodes an SA payload body (after the generic header).
    ///
    /// Accepts DOI 0 (ISAKMP) and DOI 1 (IPsec); for IPsec, situations with SIT_SECRECY or
    /// SIT_INTEGRITY (which add labelled-domain fields) give [`DecodeError::Unsupported`].
    /// The proposals must fill the rest of the body exactly, each proposal's transforms must
    /// fill the proposal exactly and match its #transforms, and the SPI must fit.
    pub fn parse(body: &'a [u8]) -> Result<SaPayload<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let doi_value = r.u32("SA payload")?;
        let situation_value = r.u32("SA payload")?;
        match doi_value {
            doi::ISAKMP => {}
            doi::IPSEC => {
                if situation_value & (situation::SECRECY | situation::INTEGRITY) != 0 {
                    return Err(DecodeError::Unsupported(SITUATION_UNSUPPORTED));
                }
            }
            _ => return Err(DecodeError::Unsupported(DOI_UNSUPPORTED)),
        }
        let chain = r.rest();
        let mut proposals = Vec::new();
        let mut it = payloads(payload_type::PROPOSAL, chain);
        for raw in it.by_ref() {
            let raw = raw?;
            check_next(raw.next, payload_type::PROPOSAL, "proposal payload")?;
            proposals.push(Proposal::parse(raw.body)?);
        }
        let extra = chain.len().saturating_sub(it.consumed());
        if extra != 0 {
            return Err(DecodeError::TrailingBytes {
                what: "SA payload",
                extra,
            });
        }
        Ok(SaPayload {
            doi: doi_value,
            situation: situation_value,
            body,
            proposals,
        })
    }
}

fn check_next(next: u8, expected: u8, what: &'static str) -> Result<(), DecodeError> {
    if next == payload_type::NONE || next == expected {
        Ok(())
    } else {
        Err(DecodeError::UnexpectedPayload {
            what,
            kind: next,
            expected,
        })
    }
}

impl<'a> Proposal<'a> {
    /// Decodes a proposal payload body (after its generic header).
    pub fn parse(body: &'a [u8]) -> Result<Proposal<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let number = r.u8("proposal payload")?;
        let protocol = r.u8("proposal payload")?;
        let spi_size = r.u8("proposal payload")?;
        let declared = r.u8("proposal payload")?;
        let spi = r.take(usize::from(spi_size), "proposal SPI")?;
        let chain = r.rest();
        let mut transforms = Vec::new();
        if !chain.is_empty() {
            let mut it = payloads(payload_type::TRANSFORM, chain);
            for raw in it.by_ref() {
                let raw = raw?;
                check_next(raw.next, payload_type::TRANSFORM, "transform payload")?;
                transforms.push(Transform::parse(raw.body)?);
            }
            let extra = chain.len().saturating_sub(it.consumed());
            if extra != 0 {
                return Err(DecodeError::TrailingBytes {
                    what: "proposal payload",
                    extra,
                });
            }
        }
        if transforms.len() != usize::from(declared) {
            return Err(DecodeError::CountMismatch {
                what: "proposal's #transforms",
                declared: usize::from(declared),
                found: transforms.len(),
            });
        }
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }
}

impl<'a> Transform<'a> {
    /// Decodes a transform payload body (after its generic header).
    pub fn parse(body: &'a [u8]) -> Result<Transform<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let number = r.u8("transform payload")?;
        let id = r.u8("transform payload")?;
        let _reserved = r.u16("transform payload")?;
        let attributes = parse_attributes(r.rest())?;
        Ok(Transform {
            number,
            id,
            attributes,
        })
    }
}
