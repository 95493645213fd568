//! IKEv1 fragmentation: the proprietary scheme (first Cisco's, then racoon's, strongSwan's and
//! Windows') that carries a message too large for the path, in practice one with certificates,
//! in several datagrams. Announced with the FRAGMENTATION vendor ID (CLIENTS.md §1.9).
//!
//! The whole encoded message (ISAKMP header and, for Main Mode 5 and 6, its encrypted body) is
//! cut into pieces; each piece travels as an unencrypted ISAKMP message of the same cookies,
//! exchange Main Mode and message ID 0, holding one payload of type 132:
//!
//! ```text
//!  next payload (0) | reserved | payload length (2) | fragment ID (2) | number (1) | flags (1)
//!  data ...                                               flags: 1 = the last fragment
//! ```
//! Numbers count from 1. The receiver joins the pieces in order once it has the last one and
//! every number before it, and handles the result as if it had come in one datagram.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::isakmp::{FragmentPayload, HEADER_LEN, Header, fragment_flags, payload_type};

/// The IP datagram size our fragments keep to (strongSwan's default: IPv6's minimum MTU).
pub const FRAGMENT_IP_SIZE: usize = 1280;
/// The largest message we reassemble, and the most fragments we keep for one.
pub const MAX_REASSEMBLED: usize = 32 * 1024;
pub const MAX_FRAGMENTS: usize = 32;

/// The fragments of one message received so far.
#[derive(Debug, Default)]
pub struct Reassembly {
    id: u16,
    parts: BTreeMap<u8, Vec<u8>>,
    last: Option<u8>,
    bytes: usize,
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Stored; more are missing.
    Waiting,
    /// The message is whole: its bytes.
    Complete(Vec<u8>),
    /// Refused (and the partial message dropped): why.
    Refused(&'static str),
}

impl Reassembly {
    /// Adds one fragment.
    pub fn add(&mut self, f: &FragmentPayload<'_>) -> Added {
        if f.number == 0 {
            return Added::Refused("fragment number 0");
        }
        if f.fragment_id != self.id || self.parts.is_empty() && self.last.is_none() {
            // A new message (or the first fragment of any): start over.
            *self = Reassembly {
                id: f.fragment_id,
                ..Reassembly::default()
            };
        }
        if let Some(last) = self.last
            && f.number > last
        {
            *self = Reassembly::default();
            return Added::Refused("fragment numbered after the last one");
        }
        if self.parts.contains_key(&f.number) {
            return Added::Waiting;
        }
        if self.parts.len() >= MAX_FRAGMENTS || self.bytes + f.data.len() > MAX_REASSEMBLED {
            *self = Reassembly::default();
            return Added::Refused("fragmented message too large");
        }
        self.bytes += f.data.len();
        self.parts.insert(f.number, f.data.to_vec());
        if f.is_last() {
            if self.parts.keys().any(|&n| n > f.number) {
                *self = Reassembly::default();
                return Added::Refused("fragment numbered after the last one");
            }
            self.last = Some(f.number);
        }
        match self.last {
            Some(last) if self.parts.len() == usize::from(last) => {
                let mut whole = Vec::with_capacity(self.bytes);
                for part in std::mem::take(&mut self.parts).into_values() {
                    whole.extend_from_slice(&part);
                }
                *self = Reassembly::default();
                Added::Complete(whole)
            }
            _ => Added::Waiting,
        }
    }
}

/// Cuts the encoded message `msg` (header included) into IKE fragments framed for `local` →
/// `remote` (non-ESP marker on the NAT-T port), each datagram at most [`FRAGMENT_IP_SIZE`] on
/// the wire. Empty when the message fits in one datagram.
pub fn split(
    h: &Header,
    msg: &[u8],
    local: SocketAddr,
    remote: SocketAddr,
    natt_port: u16,
) -> Vec<Vec<u8>> {
    let ip = if remote.is_ipv4() { 20 } else { 40 };
    let marker = if local.port() == natt_port || remote.port() == natt_port {
        4
    } else {
        0
    };
    let room = FRAGMENT_IP_SIZE - ip - 8 - marker;
    if msg.len() <= room {
        return Vec::new();
    }
    let per = room - HEADER_LEN - 4 - 4;
    let count = msg.len().div_ceil(per);
    let mut out = Vec::with_capacity(count);
    for (i, piece) in msg.chunks(per).enumerate() {
        let number = u8::try_from(i + 1).unwrap_or(u8::MAX);
        let last = i + 1 == count;
        let mut body = Vec::with_capacity(4 + piece.len());
        body.extend_from_slice(&1u16.to_be_bytes());
        body.push(number);
        body.push(if last { fragment_flags::LAST } else { 0 });
        body.extend_from_slice(piece);
        let mut chain = crate::isakmp::PayloadChain::new();
        chain.push(payload_type::FRAGMENT, &body);
        let fh = Header {
            next_payload: payload_type::FRAGMENT,
            flags: 0,
            message_id: 0,
            length: 0,
            ..*h
        };
        let datagram = crate::isakmp::encode_message(&fh, chain.first(), chain.bytes());
        out.push(super::sa::frame(local, remote, natt_port, datagram));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isakmp::{Message, Payload, exchange};

    fn header() -> Header {
        Header {
            initiator_cookie: [1; 8],
            responder_cookie: [2; 8],
            next_payload: payload_type::ID,
            version: 0x10,
            exchange: exchange::MAIN,
            flags: 1,
            message_id: 0,
            length: 0,
        }
    }

    fn addrs(port: u16) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::from(([192, 0, 2, 1], port)),
            SocketAddr::from(([198, 51, 100, 7], port)),
        )
    }

    /// Splits, decodes every datagram as a fragment message and reassembles (in `order`).
    fn round_trip(msg: &[u8], port: u16, order: impl Fn(&mut Vec<Vec<u8>>)) -> Vec<u8> {
        let (l, r) = addrs(port);
        let mut dgrams = split(&header(), msg, l, r, 4500);
        assert!(dgrams.len() > 1);
        for d in &dgrams {
            assert!(d.len() <= FRAGMENT_IP_SIZE - 28, "{} bytes", d.len());
        }
        order(&mut dgrams);
        let mut re = Reassembly::default();
        let mut whole = None;
        for d in &dgrams {
            let d = if port == 4500 { &d[4..] } else { &d[..] };
            let m = Message::decode(d).expect("fragment message decodes");
            assert_eq!(m.header.initiator_cookie, [1; 8]);
            assert_eq!(m.header.flags, 0, "fragments are not encrypted");
            let Payload::Fragment(f) = &m.items[0].payload else {
                panic!("not a fragment payload")
            };
            match re.add(f) {
                Added::Waiting => {}
                Added::Complete(w) => whole = Some(w),
                Added::Refused(why) => panic!("{why}"),
            }
        }
        whole.expect("complete")
    }

    #[test]
    fn a_large_message_is_split_and_joined_in_any_order() {
        let msg: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(round_trip(&msg, 500, |_| {}), msg);
        assert_eq!(round_trip(&msg, 4500, |d| d.reverse()), msg);
        assert_eq!(
            round_trip(&msg, 4500, |d| {
                let first = d[0].clone();
                d.push(first); // a duplicate
                d.swap(0, 1);
            }),
            msg
        );
    }

    #[test]
    fn a_small_message_is_not_split() {
        let (l, r) = addrs(500);
        assert!(split(&header(), &[0u8; 1200], l, r, 4500).is_empty());
    }

    fn frag(id: u16, number: u8, last: bool, data: &[u8]) -> FragmentPayload<'_> {
        FragmentPayload {
            fragment_id: id,
            number,
            flags: if last { fragment_flags::LAST } else { 0 },
            data,
        }
    }

    #[test]
    fn hostile_fragments_are_refused_and_bounded() {
        let mut re = Reassembly::default();
        assert_eq!(
            re.add(&frag(1, 0, false, b"x")),
            Added::Refused("fragment number 0")
        );
        assert_eq!(re.add(&frag(1, 2, true, b"b")), Added::Waiting);
        assert_eq!(
            re.add(&frag(1, 3, false, b"c")),
            Added::Refused("fragment numbered after the last one")
        );
        // Too many bytes.
        let big = vec![0u8; 2000];
        let mut re = Reassembly::default();
        let mut refused = false;
        for n in 1..=30u8 {
            if let Added::Refused(_) = re.add(&frag(7, n, false, &big)) {
                refused = true;
                break;
            }
        }
        assert!(refused, "{} bytes kept", re.bytes);
        // A new fragment ID starts over.
        let mut re = Reassembly::default();
        assert_eq!(re.add(&frag(1, 1, false, b"a")), Added::Waiting);
        assert_eq!(
            re.add(&frag(2, 1, true, b"z")),
            Added::Complete(b"z".to_vec())
        );
    }
}
