//! PAP packets (RFC 1334 §2.2).

use crate::packet::{self, PacketError};

/// PAP codes.
pub mod code {
    /// Authenticate-Request.
    pub const REQUEST: u8 = 1;
    /// Authenticate-Ack.
    pub const ACK: u8 = 2;
    /// Authenticate-Nak.
    pub const NAK: u8 = 3;
}

/// The data of an Authenticate-Request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Peer-ID.
    pub peer_id: &'a [u8],
    /// Password.
    pub password: &'a [u8],
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("peer_id", &String::from_utf8_lossy(self.peer_id))
            .finish_non_exhaustive()
    }
}

fn counted(data: &[u8]) -> Result<(&[u8], &[u8]), PacketError> {
    let (&len, rest) = data.split_first().ok_or(PacketError::BadBody)?;
    rest.split_at_checked(usize::from(len))
        .ok_or(PacketError::BadBody)
}

/// Parses the data of an Authenticate-Request.
pub fn parse_request(data: &[u8]) -> Result<Request<'_>, PacketError> {
    let (peer_id, rest) = counted(data)?;
    let (password, _) = counted(rest)?;
    Ok(Request { peer_id, password })
}

/// Parses the message of an Authenticate-Ack/Nak (a missing message is empty).
pub fn parse_message(data: &[u8]) -> &[u8] {
    counted(data).map(|(m, _)| m).unwrap_or_default()
}

fn push_counted(out: &mut Vec<u8>, field: &[u8]) {
    let field = field.get(..255).unwrap_or(field);
    out.push(u8::try_from(field.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(field);
}

/// Encodes an Authenticate-Request packet (fields longer than 255 octets are cut).
pub fn encode_request(id: u8, peer_id: &[u8], password: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let mut data = zeroize::Zeroizing::new(Vec::with_capacity(peer_id.len() + password.len() + 2));
    push_counted(&mut data, peer_id);
    push_counted(&mut data, password);
    zeroize::Zeroizing::new(packet::encode(code::REQUEST, id, &data))
}

/// Encodes an Authenticate-Ack or -Nak packet carrying `message`.
pub fn encode_reply(code: u8, id: u8, message: &str) -> Vec<u8> {
    let mut data = Vec::new();
    push_counted(&mut data, message.as_bytes());
    packet::encode(code, id, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;

    #[test]
    fn request_round_trip_and_truncation() {
        let p = encode_request(7, b"bob", b"pw");
        let pkt = Packet::parse(&p).unwrap();
        assert_eq!((pkt.code, pkt.id), (code::REQUEST, 7));
        let r = parse_request(pkt.data).unwrap();
        assert_eq!((r.peer_id, r.password), (&b"bob"[..], &b"pw"[..]));
        assert!(!format!("{r:?}").contains("pw"));
        assert_eq!(parse_request(&[3, b'b', b'o']), Err(PacketError::BadBody));
        assert_eq!(parse_request(&[1, b'b']), Err(PacketError::BadBody));
        assert_eq!(parse_request(&[]), Err(PacketError::BadBody));
        assert_eq!(parse_message(&[5, b'h', b'i']), b"");
        let reply = encode_reply(code::NAK, 7, "no");
        assert_eq!(parse_message(Packet::parse(&reply).unwrap().data), b"no");
    }
}
