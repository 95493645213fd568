//! PPP frames as L2TP carries them (RFC 2661 §5.2, RFC 1661 §2): no HDLC flags, FCS or byte
//! stuffing, an optional `FF 03` address/control prefix (absent when ACFC was negotiated) and a
//! 1- or 2-octet Protocol field (1 octet when PFC was negotiated).
//!
//! Frames we send always carry `FF 03` and a 2-octet protocol, which is always legal.

/// PPP protocol numbers (IANA "PPP DLL Protocol Numbers").
pub mod protocol {
    /// Internet Protocol version 4.
    pub const IPV4: u16 = 0x0021;
    /// Internet Protocol version 6.
    pub const IPV6: u16 = 0x0057;
    /// IP Control Protocol (RFC 1332).
    pub const IPCP: u16 = 0x8021;
    /// IPv6 Control Protocol (RFC 5072).
    pub const IPV6CP: u16 = 0x8057;
    /// Compression Control Protocol (RFC 1962).
    pub const CCP: u16 = 0x80FD;
    /// MPLS Control Protocol (RFC 3032).
    pub const MPLSCP: u16 = 0x8281;
    /// Link Control Protocol (RFC 1661).
    pub const LCP: u16 = 0xC021;
    /// Password Authentication Protocol (RFC 1334).
    pub const PAP: u16 = 0xC023;
    /// Link Quality Report (RFC 1989).
    pub const LQR: u16 = 0xC025;
    /// Bandwidth Allocation Control Protocol (RFC 2125).
    pub const BACP: u16 = 0xC02B;
    /// Challenge Handshake Authentication Protocol (RFC 1994, RFC 2759).
    pub const CHAP: u16 = 0xC223;
    /// Extensible Authentication Protocol (RFC 3748).
    pub const EAP: u16 = 0xC227;
}

/// `FF 03 00 21`: the header of an IPv4 frame, for an allocation-free data path.
pub const IPV4_HEADER: [u8; 4] = [0xFF, 0x03, 0x00, 0x21];
/// `FF 03 00 57`: the header of an IPv6 frame.
pub const IPV6_HEADER: [u8; 4] = [0xFF, 0x03, 0x00, 0x57];

/// Why a frame could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Nothing after the optional address/control field.
    #[error("frame has no protocol field")]
    Empty,
    /// One even octet: the second octet of the Protocol field is missing.
    #[error("truncated protocol field")]
    Truncated,
    /// A 2-octet protocol whose low octet is even or whose high octet is odd (RFC 1661 §2).
    #[error("invalid protocol number {0:#06x}")]
    InvalidProtocol(u16),
}

/// Splits a frame into its protocol number and information field, without copying.
///
/// Strips an optional `FF 03` prefix (ACFC) and accepts a compressed 1-octet protocol (PFC:
/// an odd first octet).
pub fn parse(frame: &[u8]) -> Result<(u16, &[u8]), FrameError> {
    let rest = match frame {
        [0xFF, 0x03, rest @ ..] => rest,
        _ => frame,
    };
    match *rest {
        [] => Err(FrameError::Empty),
        [b, ref tail @ ..] if b & 1 == 1 => Ok((u16::from(b), tail)),
        [hi, lo, ref tail @ ..] => {
            let protocol = u16::from_be_bytes([hi, lo]);
            if lo & 1 == 0 || hi & 1 == 1 {
                Err(FrameError::InvalidProtocol(protocol))
            } else {
                Ok((protocol, tail))
            }
        }
        [_] => Err(FrameError::Truncated),
    }
}

/// Builds a frame: `FF 03`, the 2-octet `protocol` and `information`.
pub fn encode(protocol: u16, information: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(information.len() + 4);
    frame.extend_from_slice(&[0xFF, 0x03]);
    frame.extend_from_slice(&protocol.to_be_bytes());
    frame.extend_from_slice(information);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_compressed_headers() {
        assert_eq!(
            parse(&[0xFF, 0x03, 0xC0, 0x21, 1, 2]),
            Ok((0xC021, &[1u8, 2][..]))
        );
        assert_eq!(parse(&[0xC0, 0x21, 9]), Ok((0xC021, &[9u8][..])));
        assert_eq!(parse(&[0xFF, 0x03, 0x21, 0x45]), Ok((0x21, &[0x45u8][..])));
        assert_eq!(parse(&[0x21, 0x45, 0x00]), Ok((0x21, &[0x45u8, 0][..])));
        assert_eq!(parse(&[0x00, 0x57]), Ok((0x57, &[][..])));
    }

    #[test]
    fn bad_frames() {
        assert_eq!(parse(&[]), Err(FrameError::Empty));
        assert_eq!(parse(&[0xFF, 0x03]), Err(FrameError::Empty));
        assert_eq!(parse(&[0xC0]), Err(FrameError::Truncated));
        assert_eq!(
            parse(&[0xC0, 0x20]),
            Err(FrameError::InvalidProtocol(0xC020))
        );
        assert_eq!(parse(&[0x01, 0x01, 0x00]), Ok((0x01, &[0x01u8, 0][..])));
        assert_eq!(parse(&[0x02, 0x21]), Ok((0x0221, &[][..])));
        assert_eq!(parse(&[0x03, 0x21]), Ok((0x03, &[0x21u8][..])));
    }

    #[test]
    fn encode_then_parse() {
        let f = encode(protocol::IPCP, &[1, 2, 3]);
        assert_eq!(f, [0xFF, 0x03, 0x80, 0x21, 1, 2, 3]);
        assert_eq!(parse(&f), Ok((protocol::IPCP, &[1u8, 2, 3][..])));
        assert_eq!(&encode(protocol::IPV4, &[])[..], &IPV4_HEADER[..]);
        assert_eq!(&encode(protocol::IPV6, &[])[..], &IPV6_HEADER[..]);
    }
}
