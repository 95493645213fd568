//! EAP packet framing (RFC 3748 §4): enough to relay EAP between the peer and an EAP server,
//! plus the Identity, Nak and MD5-Challenge types a client needs.

use crate::packet::{self, Packet, PacketError};

/// EAP codes.
pub mod code {
    /// Request.
    pub const REQUEST: u8 = 1;
    /// Response.
    pub const RESPONSE: u8 = 2;
    /// Success.
    pub const SUCCESS: u8 = 3;
    /// Failure.
    pub const FAILURE: u8 = 4;
}

/// EAP method types (RFC 3748 §5).
pub mod kind {
    /// Identity.
    pub const IDENTITY: u8 = 1;
    /// Notification.
    pub const NOTIFICATION: u8 = 2;
    /// Legacy Nak (Response only).
    pub const NAK: u8 = 3;
    /// MD5-Challenge.
    pub const MD5_CHALLENGE: u8 = 4;
}

/// A parsed EAP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EapPacket<'a> {
    /// Code.
    pub code: u8,
    /// Identifier.
    pub id: u8,
    /// Type, present on Request and Response.
    pub kind: Option<u8>,
    /// Type-Data (empty for Success and Failure).
    pub type_data: &'a [u8],
}

/// Parses an EAP packet: Request/Response need a Type, Success/Failure carry no data
/// (RFC 3748 §4.2), unknown codes are errors.
pub fn parse(bytes: &[u8]) -> Result<EapPacket<'_>, PacketError> {
    let pkt = Packet::parse(bytes)?;
    match pkt.code {
        code::REQUEST | code::RESPONSE => {
            let (&kind, type_data) = pkt.data.split_first().ok_or(PacketError::BadBody)?;
            Ok(EapPacket {
                code: pkt.code,
                id: pkt.id,
                kind: Some(kind),
                type_data,
            })
        }
        code::SUCCESS | code::FAILURE if pkt.data.is_empty() => Ok(EapPacket {
            code: pkt.code,
            id: pkt.id,
            kind: None,
            type_data: &[],
        }),
        _ => Err(PacketError::BadBody),
    }
}

/// Encodes an EAP packet; `kind` is required for Request and Response.
pub fn encode(code: u8, id: u8, kind: Option<u8>, type_data: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(type_data.len() + 1);
    data.extend(kind);
    data.extend_from_slice(type_data);
    packet::encode(code, id, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules() {
        let identity = encode(code::RESPONSE, 3, Some(kind::IDENTITY), b"bob");
        let p = parse(&identity).unwrap();
        assert_eq!(
            (p.code, p.id, p.kind, p.type_data),
            (2, 3, Some(1), &b"bob"[..])
        );
        assert_eq!(
            parse(&encode(code::SUCCESS, 4, None, &[])).unwrap().kind,
            None
        );
        assert_eq!(parse(&[1, 1, 0, 4]), Err(PacketError::BadBody));
        assert_eq!(parse(&[3, 1, 0, 5, 0]), Err(PacketError::BadBody));
        assert_eq!(parse(&[9, 1, 0, 4]), Err(PacketError::BadBody));
        assert_eq!(parse(&[1, 1, 0]), Err(PacketError::Short));
    }
}
