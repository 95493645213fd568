//! CHAP (RFC 1994): the MD5 response (§4.1: `Response = MD5(Identifier || secret || Challenge)`)
//! and the packet formats (§4), including the MS-CHAPv2 Response value (RFC 2759 §4).

use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

use crate::packet::{self, PacketError};

/// CHAP codes (RFC 1994 §4).
pub mod code {
    /// Challenge.
    pub const CHALLENGE: u8 = 1;
    /// Response.
    pub const RESPONSE: u8 = 2;
    /// Success.
    pub const SUCCESS: u8 = 3;
    /// Failure.
    pub const FAILURE: u8 = 4;
}

/// The body of a Challenge or Response: Value-Size, Value, Name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueAndName<'a> {
    /// Value (the challenge, or the response).
    pub value: &'a [u8],
    /// Name (the rest of the packet).
    pub name: &'a [u8],
}

/// Parses the data of a Challenge or Response.
pub fn parse_value(data: &[u8]) -> Result<ValueAndName<'_>, PacketError> {
    let (&size, rest) = data.split_first().ok_or(PacketError::BadBody)?;
    let (value, name) = rest
        .split_at_checked(usize::from(size))
        .ok_or(PacketError::BadBody)?;
    Ok(ValueAndName { value, name })
}

/// Encodes a Challenge or Response packet (`value` is at most 255 octets).
pub fn encode_value(code: u8, id: u8, value: &[u8], name: &[u8]) -> Vec<u8> {
    let value = value.get(..255).unwrap_or(value);
    let mut data = Vec::with_capacity(1 + value.len() + name.len());
    data.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    data.extend_from_slice(value);
    data.extend_from_slice(name);
    packet::encode(code, id, &data)
}

/// The 49-octet MS-CHAPv2 Response value (RFC 2759 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsChapV2Response {
    /// Peer-Challenge.
    pub peer_challenge: [u8; 16],
    /// NT-Response.
    pub nt_response: [u8; 24],
    /// Flags (must be zero).
    pub flags: u8,
}

impl MsChapV2Response {
    /// Length of the value.
    pub const LEN: usize = 49;

    /// Parses a Response value; it must be exactly 49 octets.
    pub fn parse(value: &[u8]) -> Result<Self, PacketError> {
        let value: &[u8; 49] = value.try_into().map_err(|_| PacketError::BadBody)?;
        let (peer, rest) = value.split_at(16);
        let (nt, flags) = rest.split_at(8).1.split_at(24);
        Ok(Self {
            peer_challenge: peer.try_into().map_err(|_| PacketError::BadBody)?,
            nt_response: nt.try_into().map_err(|_| PacketError::BadBody)?,
            flags: flags.first().copied().unwrap_or(0),
        })
    }

    /// Encodes the value (the 8 reserved octets are zero).
    pub fn encode(&self) -> [u8; 49] {
        let mut out = [0u8; 49];
        for (dst, src) in out.iter_mut().zip(
            self.peer_challenge
                .iter()
                .chain(&[0u8; 8])
                .chain(&self.nt_response)
                .chain(&[self.flags]),
        ) {
            *dst = *src;
        }
        out
    }
}

/// The 16-octet CHAP-MD5 response for `identifier`, `secret` and `challenge`.
pub fn chap_md5_response(identifier: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([identifier]);
    md5.update(secret);
    md5.update(challenge);
    md5.finalize().into()
}

/// Checks a peer's CHAP-MD5 response in constant time. A response that is not 16 octets long
/// is rejected.
pub fn verify_chap_md5(identifier: u8, secret: &[u8], challenge: &[u8], response: &[u8]) -> bool {
    let expected = chap_md5_response(identifier, secret, challenge);
    // `ct_eq` on slices of different lengths returns false (length is not secret).
    bool::from(expected.as_slice().ct_eq(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mschapv2::tests::a;

    const CHALLENGE: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    // Produced with:
    // python3 -c 'import hashlib; print(hashlib.md5(bytes([0x2a]) + b"secret" + bytes(range(16))).hexdigest())'
    const EXPECTED: &str = "03dc98c5a832692b49df73cf48fcb4e9";

    #[test]
    fn value_codec() {
        let p = encode_value(code::CHALLENGE, 9, &[1, 2, 3], b"srv");
        let pkt = packet::Packet::parse(&p).unwrap();
        let v = parse_value(pkt.data).unwrap();
        assert_eq!((v.value, v.name), (&[1u8, 2, 3][..], &b"srv"[..]));
        assert_eq!(parse_value(&[4, 1, 2]), Err(PacketError::BadBody));
        assert_eq!(parse_value(&[]), Err(PacketError::BadBody));
        let r = MsChapV2Response {
            peer_challenge: [7; 16],
            nt_response: [9; 24],
            flags: 0,
        };
        let enc = r.encode();
        assert_eq!(&enc[16..24], &[0; 8]);
        assert_eq!(MsChapV2Response::parse(&enc), Ok(r));
        assert!(MsChapV2Response::parse(&enc[..48]).is_err());
    }

    #[test]
    fn chap_md5_known_answer() {
        assert_eq!(
            chap_md5_response(0x2a, b"secret", &CHALLENGE),
            a::<16>(EXPECTED)
        );
        assert!(verify_chap_md5(
            0x2a,
            b"secret",
            &CHALLENGE,
            &a::<16>(EXPECTED)
        ));
    }

    #[test]
    fn chap_md5_rejects_wrong_response() {
        let good = a::<16>(EXPECTED);
        for i in 0..16 {
            let mut bad = good;
            bad[i] ^= 0x80;
            assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE, &bad));
        }
        assert!(!verify_chap_md5(0x2b, b"secret", &CHALLENGE, &good));
        assert!(!verify_chap_md5(0x2a, b"Secret", &CHALLENGE, &good));
        assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE[..15], &good));
        assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE, &good[..15]));
        assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE, &[]));
    }
}
