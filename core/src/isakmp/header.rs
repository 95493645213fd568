//! The fixed ISAKMP header (RFC 2408 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! !                          Initiator                            !
//! !                            Cookie                             !
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! !                          Responder                            !
//! !                            Cookie                             !
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! !  Next Payload ! MjVer ! MnVer ! Exchange Type !     Flags     !
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! !                          Message ID                           !
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! !                            Length                             !
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::reader::Reader;
use super::{DecodeError, flags};

/// Size of the ISAKMP header.
pub const HEADER_LEN: usize = 28;

/// The ISAKMP header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub initiator_cookie: [u8; 8],
    pub responder_cookie: [u8; 8],
    /// Type of the first payload after the header.
    pub next_payload: u8,
    /// Major version in the high nibble, minor in the low one: 0x10 for IKEv1.
    pub version: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    /// Length of the whole message, header included.
    pub length: u32,
}

impl Header {
    /// The version byte of IKEv1 (major 1, minor 0).
    pub const VERSION_1_0: u8 = 0x10;

    /// Decodes the header at the start of `buf`.
    ///
    /// Checks: at least 28 bytes; major version 1 ([`DecodeError::BadVersion`] otherwise, e.g.
    /// for IKEv2's 0x20); `length` at least 28 and not beyond `buf`. Bytes after `length` are
    /// the caller's business (they are ignored by [`super::Message::decode`]).
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(buf);
        let initiator_cookie = r.array("ISAKMP header")?;
        let responder_cookie = r.array("ISAKMP header")?;
        let next_payload = r.u8("ISAKMP header")?;
        let version = r.u8("ISAKMP header")?;
        let exchange = r.u8("ISAKMP header")?;
        let flags = r.u8("ISAKMP header")?;
        let message_id = r.u32("ISAKMP header")?;
        let length = r.u32("ISAKMP header")?;
        if version >> 4 != 1 {
            return Err(DecodeError::BadVersion(version));
        }
        let len = usize::try_from(length).unwrap_or(usize::MAX);
        if len < HEADER_LEN {
            return Err(DecodeError::BadLength {
                what: "ISAKMP message length field",
                len,
            });
        }
        if len > buf.len() {
            return Err(DecodeError::Truncated {
                what: "ISAKMP message",
                need: len,
                have: buf.len(),
            });
        }
        Ok(Header {
            initiator_cookie,
            responder_cookie,
            next_payload,
            version,
            exchange,
            flags,
            message_id,
            length,
        })
    }

    /// Writes the header, fields as they are.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        let (cookies, rest) = out.split_at_mut(16);
        let (ci, cr) = cookies.split_at_mut(8);
        ci.copy_from_slice(&self.initiator_cookie);
        cr.copy_from_slice(&self.responder_cookie);
        let (fixed, rest) = rest.split_at_mut(4);
        fixed.copy_from_slice(&[self.next_payload, self.version, self.exchange, self.flags]);
        let (mid, len) = rest.split_at_mut(4);
        mid.copy_from_slice(&self.message_id.to_be_bytes());
        len.copy_from_slice(&self.length.to_be_bytes());
    }

    /// The header as a 28-byte array.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.encode(&mut out);
        out
    }

    /// The encryption flag is set: the payloads are ciphertext.
    pub fn is_encrypted(&self) -> bool {
        self.flags & flags::ENCRYPTION != 0
    }

    /// The commit flag is set.
    pub fn is_commit(&self) -> bool {
        self.flags & flags::COMMIT != 0
    }

    /// Major version (1 for IKEv1).
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }

    /// Minor version (0 for IKEv1).
    pub fn minor_version(&self) -> u8 {
        self.version & 0x0f
    }
}
