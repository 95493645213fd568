//! The control-packet format shared by LCP, the NCPs and the authentication protocols
//! (RFC 1661 §5: Code, Identifier, Length, Data) and the option TLVs of Configure-* packets
//! (RFC 1661 §6). Every decoder here is total.

/// Why a control packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than the 4 header octets.
    #[error("packet shorter than its 4-octet header")]
    Short,
    /// The Length field is below 4 or beyond the received octets (RFC 1661 §5).
    #[error("length field out of range")]
    BadLength,
    /// An option shorter than 2 octets or running past the end of the packet.
    #[error("malformed option")]
    BadOption,
    /// The packet is well framed but its contents do not follow the protocol's format.
    #[error("malformed packet body")]
    BadBody,
}

/// A control packet. Octets after `Length` are padding and are ignored (RFC 1661 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Code.
    pub code: u8,
    /// Identifier.
    pub id: u8,
    /// Data, exactly `Length - 4` octets.
    pub data: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses a control packet.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        let &[code, id, hi, lo, ..] = bytes else {
            return Err(PacketError::Short);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let data = bytes.get(4..len).ok_or(PacketError::BadLength)?;
        Ok(Packet { code, id, data })
    }
}

/// Encodes a control packet; `data` beyond what a 16-bit Length can describe is cut off.
pub fn encode(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let data = data.get(..usize::from(u16::MAX) - 4).unwrap_or(data);
    let len = u16::try_from(data.len() + 4).unwrap_or(u16::MAX);
    let mut packet = Vec::with_capacity(data.len() + 4);
    packet.extend_from_slice(&[code, id]);
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(data);
    packet
}

/// One configuration option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigOption<'a> {
    /// Type.
    pub kind: u8,
    /// The option's data (after Type and Length).
    pub data: &'a [u8],
    /// The whole option as received.
    pub raw: &'a [u8],
}

/// Iterator over the options of a Configure-* packet; yields an error (then stops) on a
/// malformed option.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

/// The options in `data`.
pub fn options(data: &[u8]) -> Options<'_> {
    Options { rest: data }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<ConfigOption<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let &[kind, len, ..] = rest else {
            self.rest = &[];
            return (!rest.is_empty()).then_some(Err(PacketError::BadOption));
        };
        let len = usize::from(len);
        match rest.split_at_checked(len).filter(|_| len >= 2) {
            Some((raw, tail)) => {
                self.rest = tail;
                let data = raw.get(2..).unwrap_or_default();
                Some(Ok(ConfigOption { kind, data, raw }))
            }
            None => {
                self.rest = &[];
                Some(Err(PacketError::BadOption))
            }
        }
    }
}

/// Checks that `data` is a well-formed option list.
pub fn validate_options(data: &[u8]) -> Result<(), PacketError> {
    options(data).try_for_each(|o| o.map(drop))
}

/// Encodes one option (`data` longer than 253 octets is cut off).
pub fn option(kind: u8, data: &[u8]) -> Vec<u8> {
    let data = data.get(..253).unwrap_or(data);
    let mut out = Vec::with_capacity(data.len() + 2);
    out.push(kind);
    out.push(u8::try_from(data.len() + 2).unwrap_or(u8::MAX));
    out.extend_from_slice(data);
    out
}

/// What a negotiator thinks of one option of the peer's Configure-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Judgement {
    Ack,
    /// Nak with this whole option (the value we would accept).
    Nak(Vec<u8>),
    Reject,
}

/// The answer to a Configure-Request (RFC 1661 §5.2-§5.4): Reject wins over Nak, which wins
/// over Ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Ack,
    /// `nak` holds the suggested options; `original` the peer's versions of them, for turning
    /// the Nak into a Reject after Max-Failure.
    Nak {
        nak: Vec<u8>,
        original: Vec<u8>,
    },
    Reject(Vec<u8>),
}

/// Judges every option of a Configure-Request with `judge` and builds the reply. A malformed
/// option list is an error and `judge` is not called at all.
pub(crate) fn judge_request(
    data: &[u8],
    mut judge: impl FnMut(&ConfigOption<'_>) -> Judgement,
) -> Result<Reply, PacketError> {
    validate_options(data)?;
    let (mut nak, mut original, mut reject) = (Vec::new(), Vec::new(), Vec::new());
    for opt in options(data).flatten() {
        match judge(&opt) {
            Judgement::Ack => {}
            Judgement::Nak(suggested) => {
                nak.extend_from_slice(&suggested);
                original.extend_from_slice(opt.raw);
            }
            Judgement::Reject => reject.extend_from_slice(opt.raw),
        }
    }
    Ok(if !reject.is_empty() {
        Reply::Reject(reject)
    } else if !nak.is_empty() {
        Reply::Nak { nak, original }
    } else {
        Reply::Ack
    })
}

/// Reads a 4-octet option value (IPv4 address, magic number, ACCM).
pub(crate) fn be32(data: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(data).ok().map(u32::from_be_bytes)
}

/// Reads a 2-octet option value.
pub(crate) fn be16(data: &[u8]) -> Option<u16> {
    <[u8; 2]>::try_from(data).ok().map(u16::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_length_rules() {
        assert_eq!(Packet::parse(&[1, 2, 0]), Err(PacketError::Short));
        assert_eq!(Packet::parse(&[1, 2, 0, 3]), Err(PacketError::BadLength));
        assert_eq!(Packet::parse(&[1, 2, 0, 6, 9]), Err(PacketError::BadLength));
        let p = Packet::parse(&[1, 2, 0, 5, 9, 0xAA]).unwrap();
        assert_eq!((p.code, p.id, p.data), (1, 2, &[9u8][..]));
        assert_eq!(encode(5, 7, &[1, 2]), [5, 7, 0, 6, 1, 2]);
    }

    #[test]
    fn option_rules() {
        let ok: Vec<_> = options(&[1, 4, 5, 0x78, 7, 2]).collect();
        assert_eq!(ok.len(), 2);
        assert_eq!(validate_options(&[1, 1]), Err(PacketError::BadOption));
        assert_eq!(validate_options(&[1, 0]), Err(PacketError::BadOption));
        assert_eq!(validate_options(&[1, 5, 0]), Err(PacketError::BadOption));
        assert_eq!(validate_options(&[7]), Err(PacketError::BadOption));
        assert_eq!(validate_options(&[]), Ok(()));
        assert_eq!(option(7, &[]), [7, 2]);
    }

    #[test]
    fn reject_wins_over_nak() {
        let data = [1, 4, 0, 10, 13, 3, 6, 7, 2];
        let reply = judge_request(&data, |o| match o.kind {
            1 => Judgement::Nak(option(1, &[2, 64])),
            13 => Judgement::Reject,
            _ => Judgement::Ack,
        });
        assert_eq!(reply, Ok(Reply::Reject(vec![13, 3, 6])));
        let reply = judge_request(&data, |o| match o.kind {
            1 => Judgement::Nak(option(1, &[2, 64])),
            _ => Judgement::Ack,
        });
        assert_eq!(
            reply,
            Ok(Reply::Nak {
                nak: vec![1, 4, 2, 64],
                original: vec![1, 4, 0, 10]
            })
        );
        assert_eq!(judge_request(&data, |_| Judgement::Ack), Ok(Reply::Ack));
        assert!(judge_request(&[1, 9], |_| Judgement::Ack).is_err());
    }
}
