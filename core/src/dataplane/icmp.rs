//! ICMP "fragmentation needed and DF set" (RFC 792 type 3 code 4, with the next-hop MTU of
//! RFC 1191 §4): the answer to an IPv4 packet with Don't Fragment that is larger than a client's
//! link, so that its sender lowers its path MTU instead of losing the packet silently.

use std::net::Ipv4Addr;

/// Header length of the answer: IPv4 (20) + ICMP (8).
const HEADERS: usize = 28;
/// The original's IP header plus 64 bits of its data (RFC 792), or more, as RFC 1812 §4.3.2.3
/// allows; 548 keeps the answer within 576 bytes.
const QUOTE_MAX: usize = 548;

/// The longest answer [`frag_needed`] writes: a buffer this long takes any of them.
pub const MAX_LEN: usize = HEADERS + QUOTE_MAX;

/// RFC 1071 checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `packet` is an IPv4 packet with DF set that is longer than `mtu`, and may be answered
/// with ICMP (not itself an ICMP error, not a fragment other than the first).
pub fn too_big_with_df(packet: &[u8], mtu: u16) -> bool {
    let (Some(&vihl), Some(total), Some(frag), Some(&proto)) = (
        packet.first(),
        packet.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]])),
        packet.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]])),
        packet.get(9),
    ) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    const DF: u16 = 0x4000;
    if vihl >> 4 != 4 || ihl < 20 || total <= mtu || frag & DF == 0 || frag & 0x1fff != 0 {
        return false;
    }
    // Never answer an ICMP error with an ICMP error (RFC 1812 §4.3.2.7).
    if proto == 1 {
        let icmp_type = packet.get(ihl).copied().unwrap_or(0);
        if !matches!(icmp_type, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
            return false;
        }
    }
    true
}

/// Writes into `out` the ICMP fragmentation-needed answer to `packet` from `from` (the server's
/// address on the client's side), announcing `mtu`. Returns its length, or `None` when `packet`
/// must not be answered ([`too_big_with_df`]) or `out` is too small.
pub fn frag_needed(packet: &[u8], mtu: u16, from: Ipv4Addr, out: &mut [u8]) -> Option<usize> {
    if !too_big_with_df(packet, mtu) {
        return None;
    }
    let src = packet.get(12..16)?;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let quote = packet.get(..total.min(packet.len()).min(QUOTE_MAX))?;
    let len = HEADERS + quote.len();
    let out = out.get_mut(..len)?;
    // IPv4 header: version 4, IHL 5, length, DF clear, TTL 64, protocol ICMP.
    out[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[12..16].copy_from_slice(&from.octets());
    out[16..20].copy_from_slice(src);
    let ip_sum = checksum(&out[..20]);
    out[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    // ICMP: type 3, code 4, checksum, unused, next-hop MTU; then the quote.
    out[20..28].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    out[26..28].copy_from_slice(&mtu.to_be_bytes());
    out[28..].copy_from_slice(quote);
    let icmp_sum = checksum(&out[20..]);
    out[22..24].copy_from_slice(&icmp_sum.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

    fn packet(len: u16, df: bool, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(len)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        if df {
            p[6] = 0x40;
        }
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[198, 51, 100, 7]);
        p[16..20].copy_from_slice(&[10, 77, 0, 10]);
        for (i, b) in p.iter_mut().enumerate().skip(20) {
            *b = i as u8;
        }
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn a_df_packet_over_the_mtu_gets_a_well_formed_answer() {
        let p = packet(1500, true, 6);
        let mut out = [0u8; 1500];
        let n = frag_needed(&p, 1400, SERVER, &mut out).expect("answered");
        let a = &out[..n];
        assert_eq!(n, 576, "header + 548 bytes of the original");
        assert_eq!(checksum(&a[..20]), 0, "IP header checksum verifies");
        assert_eq!(checksum(&a[20..]), 0, "ICMP checksum verifies");
        assert_eq!(&a[12..16], &SERVER.octets());
        assert_eq!(&a[16..20], &[198, 51, 100, 7], "back to the sender");
        assert_eq!((a[20], a[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([a[26], a[27]]), 1400);
        assert_eq!(&a[28..], &p[..548]);
    }

    #[test]
    fn what_must_not_be_answered_is_not() {
        let mut out = [0u8; 1500];
        // Fits; no DF; a later fragment; an ICMP error; a buffer too small.
        assert_eq!(
            frag_needed(&packet(1400, true, 6), 1400, SERVER, &mut out),
            None
        );
        assert_eq!(
            frag_needed(&packet(1500, false, 6), 1400, SERVER, &mut out),
            None
        );
        let mut frag = packet(1500, true, 6);
        frag[7] = 0x10;
        assert_eq!(frag_needed(&frag, 1400, SERVER, &mut out), None);
        let mut err = packet(1500, true, 1);
        err[20] = 3;
        assert_eq!(frag_needed(&err, 1400, SERVER, &mut out), None);
        let mut echo = packet(1500, true, 1);
        echo[20] = 8;
        assert!(
            frag_needed(&echo, 1400, SERVER, &mut out).is_some(),
            "an echo request is answered"
        );
        assert_eq!(
            frag_needed(&packet(1500, true, 6), 1400, SERVER, &mut [0u8; 100]),
            None
        );
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_and_answers_always_verify(
            bytes in proptest::collection::vec(any::<u8>(), 0..700),
            mtu in any::<u16>(),
        ) {
            let mut out = [0u8; 600];
            if let Some(n) = frag_needed(&bytes, mtu, SERVER, &mut out) {
                prop_assert!(n <= MAX_LEN);
                prop_assert_eq!(checksum(&out[..20]), 0);
                prop_assert_eq!(checksum(&out[20..n]), 0);
            }
        }
    }
}
