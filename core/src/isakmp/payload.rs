//! The generic payload chain (RFC 2408 §3.2), typed payload views and whole messages.

use super::id::IdPayload;
use super::reader::Reader;
use super::sa::{Attribute, SaPayload, parse_attributes};
use super::{DecodeError, HEADER_LEN, Header, payload_type};

/// Length of the generic payload header (next payload, reserved, payload length).
pub(crate) const GENERIC_HEADER_LEN: usize = 4;

/// One payload as found in a chain. `offset` is where its 4-byte generic header starts within
/// the slice given to [`payloads`]; `len` includes that header; `body` is what follows the
/// generic header (what RFC 2409 calls e.g. `SAi_b` or `IDii_b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPayload<'a> {
    pub kind: u8,
    pub next: u8,
    pub offset: usize,
    pub len: usize,
    pub body: &'a [u8],
}

impl RawPayload<'_> {
    /// Offset just past this payload.
    pub fn end(&self) -> usize {
        self.offset.saturating_add(self.len)
    }
}

/// Iterator over a payload chain; see [`payloads`].
#[derive(Debug, Clone)]
pub struct Payloads<'a> {
    data: &'a [u8],
    next_kind: u8,
    pos: usize,
    done: bool,
}

/// Iterates the payload chain in `data` whose first payload has type `first`. Stops after a
/// payload whose next-payload field is 0 (bytes after it, such as CBC padding of a decrypted
/// message, are ignored). On malformed input (generic length below 4, a payload running past
/// the end) it yields one `Err` and then `None`. `first == 0` gives an empty chain.
pub fn payloads(first: u8, data: &[u8]) -> Payloads<'_> {
    Payloads {
        data,
        next_kind: first,
        pos: 0,
        done: first == payload_type::NONE,
    }
}

impl<'a> Payloads<'a> {
    /// Bytes of `data` covered by the payloads yielded so far (the end of the last one).
    pub fn consumed(&self) -> usize {
        self.pos
    }

    fn read(&mut self) -> Result<RawPayload<'a>, DecodeError> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let mut r = Reader::new(rest);
        let what = "generic payload header";
        let next = r.u8(what)?;
        let _reserved = r.u8(what)?;
        let len = usize::from(r.u16(what)?);
        if len < GENERIC_HEADER_LEN {
            return Err(DecodeError::BadLength {
                what: "payload (generic length field)",
                len,
            });
        }
        let body = r.take(len - GENERIC_HEADER_LEN, "payload")?;
        let raw = RawPayload {
            kind: self.next_kind,
            next,
            offset: self.pos,
            len,
            body,
        };
        self.pos += len;
        self.next_kind = next;
        Ok(raw)
    }
}

impl<'a> Iterator for Payloads<'a> {
    type Item = Result<RawPayload<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read();
        self.done = match &item {
            Ok(raw) => raw.next == payload_type::NONE,
            Err(_) => true,
        };
        Some(item)
    }
}

/// A typed payload view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Sa(SaPayload<'a>),
    Ke(&'a [u8]),
    Id(IdPayload<'a>),
    Cert(CertPayload<'a>),
    /// Certificate request: `encoding` is the requested certificate type, `data` the
    /// certificate authority (RFC 2408 §3.10).
    CertReq(CertPayload<'a>),
    Hash(&'a [u8]),
    Sig(&'a [u8]),
    Nonce(&'a [u8]),
    Notify(NotifyPayload<'a>),
    Delete(DeletePayload<'a>),
    VendorId(&'a [u8]),
    Attributes(AttributesPayload<'a>),
    /// NAT-D in any of its payload numbers (15, 20, 130): the hash.
    NatD(&'a [u8]),
    /// NAT-OA in any of its payload numbers (16, 21, 131).
    NatOa(IdPayload<'a>),
    Fragment(FragmentPayload<'a>),
    /// Any other payload type, proposal and transform included (they only belong inside an SA).
    Unknown {
        kind: u8,
        body: &'a [u8],
    },
}

/// Certificate (RFC 2408 §3.9) or certificate request (§3.10) payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertPayload<'a> {
    pub encoding: u8,
    pub data: &'a [u8],
}

/// Notification payload (RFC 2408 §3.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyPayload<'a> {
    pub doi: u32,
    pub protocol: u8,
    pub spi: &'a [u8],
    pub message_type: u16,
    pub data: &'a [u8],
}

/// Delete payload (RFC 2408 §3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePayload<'a> {
    pub doi: u32,
    pub protocol: u8,
    pub spi_size: u8,
    pub spis: Vec<&'a [u8]>,
}

/// Mode-config attribute payload (draft-dukes-ike-mode-cfg §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributesPayload<'a> {
    /// CFG_REQUEST, CFG_REPLY, CFG_SET or CFG_ACK (see [`super::modecfg`]).
    pub attr_type: u8,
    pub identifier: u16,
    pub attributes: Vec<Attribute<'a>>,
}

/// Cisco / Microsoft IKEv1 fragmentation payload (type 132).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPayload<'a> {
    pub fragment_id: u16,
    /// Fragment number, counted from 1.
    pub number: u8,
    /// [`super::fragment_flags::LAST`] marks the last fragment.
    pub flags: u8,
    pub data: &'a [u8],
}

impl FragmentPayload<'_> {
    /// This is the last fragment of its message.
    pub fn is_last(&self) -> bool {
        self.flags & super::fragment_flags::LAST != 0
    }
}

impl<'a> CertPayload<'a> {
    /// Decodes a CERT or CERTREQ body: one encoding byte, then the data.
    pub fn parse(body: &'a [u8]) -> Result<CertPayload<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let encoding = r.u8("certificate payload")?;
        Ok(CertPayload {
            encoding,
            data: r.rest(),
        })
    }
}

impl<'a> NotifyPayload<'a> {
    /// Decodes a notification body.
    pub fn parse(body: &'a [u8]) -> Result<NotifyPayload<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let what = "notification payload";
        let doi = r.u32(what)?;
        let protocol = r.u8(what)?;
        let spi_size = r.u8(what)?;
        let message_type = r.u16(what)?;
        let spi = r.take(usize::from(spi_size), "notification SPI")?;
        Ok(NotifyPayload {
            doi,
            protocol,
            spi,
            message_type,
            data: r.rest(),
        })
    }
}

impl<'a> DeletePayload<'a> {
    /// Decodes a delete body. The SPIs must fill the rest of the body exactly
    /// (`#SPIs × SPI size` bytes); a non-zero count with SPI size 0 is refused.
    pub fn parse(body: &'a [u8]) -> Result<DeletePayload<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let what = "delete payload";
        let doi = r.u32(what)?;
        let protocol = r.u8(what)?;
        let spi_size = r.u8(what)?;
        let count = usize::from(r.u16(what)?);
        if spi_size == 0 && count != 0 {
            return Err(DecodeError::BadValue {
                what: "delete payload SPI size (0 with SPIs listed)",
                value: 0,
            });
        }
        let size = usize::from(spi_size);
        let rest = r.rest();
        let need = count * size;
        if rest.len() < need {
            return Err(DecodeError::Truncated {
                what: "delete payload SPIs",
                need,
                have: rest.len(),
            });
        }
        if rest.len() > need {
            return Err(DecodeError::TrailingBytes {
                what: "delete payload",
                extra: rest.len() - need,
            });
        }
        let spis = if size == 0 {
            Vec::new()
        } else {
            rest.chunks_exact(size).collect()
        };
        Ok(DeletePayload {
            doi,
            protocol,
            spi_size,
            spis,
        })
    }
}

impl<'a> AttributesPayload<'a> {
    /// Decodes a mode-config attribute payload body.
    pub fn parse(body: &'a [u8]) -> Result<AttributesPayload<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let what = "attribute payload";
        let attr_type = r.u8(what)?;
        let _reserved = r.u8(what)?;
        let identifier = r.u16(what)?;
        Ok(AttributesPayload {
            attr_type,
            identifier,
            attributes: parse_attributes(r.rest())?,
        })
    }
}

impl<'a> FragmentPayload<'a> {
    /// Decodes a fragment payload body.
    pub fn parse(body: &'a [u8]) -> Result<FragmentPayload<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let what = "fragment payload";
        let fragment_id = r.u16(what)?;
        let number = r.u8(what)?;
        let flags = r.u8(what)?;
        Ok(FragmentPayload {
            fragment_id,
            number,
            flags,
            data: r.rest(),
        })
    }
}

impl<'a> Payload<'a> {
    /// Decodes the body of a payload of type `kind`. NAT-D is recognised as 15, 20 and 130,
    /// NAT-OA as 16, 21 and 131; other unassigned types give [`Payload::Unknown`].
    pub fn parse(kind: u8, body: &'a [u8]) -> Result<Payload<'a>, DecodeError> {
        use payload_type::*;
        Ok(match kind {
            SA => Payload::Sa(SaPayload::parse(body)?),
            KE => Payload::Ke(body),
            ID => Payload::Id(IdPayload::parse(body)?),
            CERT => Payload::Cert(CertPayload::parse(body)?),
            CERT_REQ => Payload::CertReq(CertPayload::parse(body)?),
            HASH => Payload::Hash(body),
            SIG => Payload::Sig(body),
            NONCE => Payload::Nonce(body),
            NOTIFY => Payload::Notify(NotifyPayload::parse(body)?),
            DELETE => Payload::Delete(DeletePayload::parse(body)?),
            VENDOR_ID => Payload::VendorId(body),
            ATTRIBUTES => Payload::Attributes(AttributesPayload::parse(body)?),
            NAT_D | NAT_D_DRAFT | NAT_D_APPLE => Payload::NatD(body),
            NAT_OA | NAT_OA_DRAFT | NAT_OA_APPLE => Payload::NatOa(IdPayload::parse(body)?),
            FRAGMENT => Payload::Fragment(FragmentPayload::parse(body)?),
            _ => Payload::Unknown { kind, body },
        })
    }
}

/// One payload of a parsed message: where it sits, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    pub raw: RawPayload<'a>,
    pub payload: Payload<'a>,
}

/// A fully parsed (plaintext) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    /// Payloads in wire order.
    pub items: Vec<Item<'a>>,
    /// From the start of the first payload to the end of the last one (padding excluded).
    /// Item offsets are relative to this slice; Quick Mode hashes cover parts of it.
    pub payload_bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// Parses the payloads of a message. `body` is the plaintext after the 28-byte header
    /// (already decrypted if the message was encrypted); the first payload type is
    /// `header.next_payload`. Bytes after the last payload (padding) are ignored.
    pub fn parse(header: Header, body: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let mut items = Vec::new();
        let mut it = payloads(header.next_payload, body);
        for raw in it.by_ref() {
            let raw = raw?;
            let payload = Payload::parse(raw.kind, raw.body)?;
            items.push(Item { raw, payload });
        }
        let payload_bytes = body.get(..it.consumed()).unwrap_or(body);
        Ok(Message {
            header,
            items,
            payload_bytes,
        })
    }

    /// Decodes an unencrypted datagram: [`Header::decode`], then [`Message::parse`] of
    /// `buf[28..header.length]`. Messages with the encryption flag give
    /// [`DecodeError::Encrypted`].
    pub fn decode(buf: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let header = Header::decode(buf)?;
        if header.is_encrypted() {
            return Err(DecodeError::Encrypted);
        }
        let end = usize::try_from(header.length).unwrap_or(usize::MAX);
        let body = buf.get(HEADER_LEN..end).ok_or(DecodeError::Truncated {
            what: "ISAKMP message",
            need: end,
            have: buf.len(),
        })?;
        Message::parse(header, body)
    }

    /// The first payload of that type.
    pub fn first(&self, kind: u8) -> Option<&Item<'a>> {
        self.items.iter().find(|i| i.raw.kind == kind)
    }

    /// All payloads of that type, in order.
    pub fn all(&self, kind: u8) -> impl Iterator<Item = &Item<'a>> {
        self.items.iter().filter(move |i| i.raw.kind == kind)
    }

    /// The payload types in wire order, for logs.
    pub fn kinds(&self) -> impl Iterator<Item = u8> + '_ {
        self.items.iter().map(|i| i.raw.kind)
    }
}
