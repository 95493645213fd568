//! TCP MSS clamping (RFC 879 §7, RFC 6691): a TCP SYN's Maximum Segment Size option is lowered
//! in place so that full-size segments fit the tunnel, and the TCP checksum is updated
//! incrementally (RFC 1624 eqn. 3) rather than recomputed. Total: any bytes are either clamped or
//! left exactly as they were.

/// IPv4 and TCP headers without options: what an MSS leaves out of a packet (RFC 6691 §2).
pub const IPV4_TCP_HEADERS: u16 = 40;

/// The MSS that fits an IPv4 path of `mtu` bytes.
pub fn mss_for_mtu(mtu: u16) -> u16 {
    mtu.saturating_sub(IPV4_TCP_HEADERS)
}

/// One's-complement 16-bit addition (RFC 1071).
fn add(a: u16, b: u16) -> u16 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(u16::from(carry))
}

/// The checksum after a 16-bit word of the summed data changed from `old` to `new`
/// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !add(add(!checksum, !old), new)
}

/// If `packet` is an IPv4 TCP SYN (first fragment) whose MSS option exceeds `max_mss`, lowers it
/// to `max_mss` and fixes the TCP checksum. Returns whether the packet changed.
pub fn clamp_ipv4(packet: &mut [u8], max_mss: u16) -> bool {
    let Some(&vihl) = packet.first() else {
        return false;
    };
    if vihl >> 4 != 4 || packet.get(9) != Some(&6) {
        return false;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let (Some(total), Some(frag)) = (
        packet
            .get(2..4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
        packet.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]])),
    ) else {
        return false;
    };
    // Only the first fragment carries the TCP header.
    if ihl < 20 || frag & 0x1fff != 0 || total > packet.len() || total < ihl + 20 {
        return false;
    }
    let Some(tcp) = packet.get_mut(ihl..total) else {
        return false;
    };
    let (Some(&offset), Some(&flags)) = (tcp.get(12), tcp.get(13)) else {
        return false;
    };
    const SYN: u8 = 0x02;
    let header = usize::from(offset >> 4) * 4;
    if flags & SYN == 0 || header < 20 || header > tcp.len() {
        return false;
    }
    // Walk the options (RFC 9293 §3.1): EOL ends them, NOP is one byte, others carry a length.
    let mut at = 20;
    while at < header {
        match tcp.get(at) {
            Some(0) | None => return false,
            Some(1) => at += 1,
            Some(&kind) => {
                let Some(&len) = tcp.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > header {
                    return false;
                }
                if kind == 2 && len == 4 {
                    return clamp_at(tcp, at + 2, max_mss);
                }
                at += len;
            }
        }
    }
    false
}

/// Lowers the MSS value at `tcp[pos..pos + 2]` to `max_mss` if it is larger.
fn clamp_at(tcp: &mut [u8], pos: usize, max_mss: u16) -> bool {
    let (Some(value), Some(sum)) = (
        tcp.get(pos..pos + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]])),
        tcp.get(16..18).map(|b| u16::from_be_bytes([b[0], b[1]])),
    ) else {
        return false;
    };
    if value <= max_mss {
        return false;
    }
    // The checksum sums 16-bit words from the start of the TCP header: a value at an odd offset
    // straddles two words and counts byte-swapped.
    let (old, new) = if pos.is_multiple_of(2) {
        (value, max_mss)
    } else {
        (value.swap_bytes(), max_mss.swap_bytes())
    };
    let sum = update(sum, old, new);
    if let Some(v) = tcp.get_mut(pos..pos + 2) {
        v.copy_from_slice(&max_mss.to_be_bytes());
    }
    if let Some(c) = tcp.get_mut(16..18) {
        c.copy_from_slice(&sum.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The TCP checksum computed from scratch (RFC 793 pseudo-header + segment), for checking.
    fn tcp_checksum(packet: &[u8]) -> u16 {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let seg = &packet[ihl..total];
        let mut summed = packet[12..20].to_vec();
        summed.extend_from_slice(&[0, 6]);
        summed.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        summed.extend_from_slice(seg);
        let at = 12 + 16;
        summed[at..at + 2].copy_from_slice(&[0, 0]);
        crate::dataplane::icmp::checksum(&summed)
    }

    /// An IPv4 TCP packet with the given flags and options (padded to 4 bytes) and payload.
    fn packet(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let tcp_len = 20 + opts.len();
        let total = 20 + tcp_len + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[10, 77, 0, 10, 198, 51, 100, 7]);
        p.extend_from_slice(&[0xc0, 0x01, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0]);
        p.push(((tcp_len / 4) as u8) << 4);
        p.push(flags);
        p.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        p.extend_from_slice(&opts);
        p.extend_from_slice(payload);
        let c = tcp_checksum(&p);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn mss_of(p: &[u8]) -> Option<u16> {
        let tcp = &p[20..];
        let header = usize::from(tcp[12] >> 4) * 4;
        let mut at = 20;
        while at < header {
            match tcp[at] {
                0 => return None,
                1 => at += 1,
                2 => return Some(u16::from_be_bytes([tcp[at + 2], tcp[at + 3]])),
                _ => at += usize::from(tcp[at + 1]),
            }
        }
        None
    }

    #[test]
    fn a_windows_syn_is_clamped_and_its_checksum_stays_right() {
        // MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted (Windows 10's SYN).
        let mut p = packet(0x02, &[2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2], &[]);
        assert!(clamp_ipv4(&mut p, 1360));
        assert_eq!(mss_of(&p), Some(1360));
        assert_eq!(
            u16::from_be_bytes([p[36], p[37]]),
            tcp_checksum(&p),
            "incremental update equals a full recomputation"
        );
        // Already small enough: untouched.
        let before = p.clone();
        assert!(!clamp_ipv4(&mut p, 1400));
        assert_eq!(p, before);
    }

    #[test]
    fn an_mss_at_an_odd_offset_is_handled() {
        let mut p = packet(0x12, &[1, 2, 4, 0x23, 0x28], &[]);
        assert!(clamp_ipv4(&mut p, 1200));
        assert_eq!(mss_of(&p), Some(1200));
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum(&p));
    }

    #[test]
    fn non_syn_fragments_and_other_protocols_are_left_alone() {
        for mut p in [
            packet(0x10, &[2, 4, 0x05, 0xb4], b"data"),
            {
                let mut p = packet(0x02, &[2, 4, 0x05, 0xb4], &[]);
                p[6..8].copy_from_slice(&0x0010u16.to_be_bytes()); // fragment offset 16
                p
            },
            {
                let mut p = packet(0x02, &[2, 4, 0x05, 0xb4], &[]);
                p[9] = 17; // UDP
                p
            },
            packet(0x02, &[0, 2, 4, 0x05, 0xb4], &[]), // EOL before the MSS
            packet(0x02, &[2, 3, 0x05], &[]),          // malformed MSS length
        ] {
            let before = p.clone();
            assert!(!clamp_ipv4(&mut p, 1000));
            assert_eq!(p, before);
        }
        assert_eq!(mss_for_mtu(1400), 1360);
        assert_eq!(mss_for_mtu(20), 0);
    }

    proptest! {
        #[test]
        fn clamping_keeps_the_checksum_and_touches_nothing_else(
            nops in 0usize..7,
            mss in 0u16..=u16::MAX,
            max in 500u16..1500,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            ack in any::<bool>(),
        ) {
            let mut opts = vec![1u8; nops];
            opts.extend_from_slice(&[2, 4]);
            opts.extend_from_slice(&mss.to_be_bytes());
            opts.extend_from_slice(&[4, 2]);
            let mut p = packet(if ack { 0x12 } else { 0x02 }, &opts, &payload);
            let before = p.clone();
            let changed = clamp_ipv4(&mut p, max);
            prop_assert_eq!(changed, mss > max);
            prop_assert_eq!(mss_of(&p), Some(mss.min(max)));
            prop_assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum(&p));
            let differing = p.iter().zip(&before).filter(|(a, b)| a != b).count();
            prop_assert!(differing <= 4);
        }

        #[test]
        fn any_bytes_are_clamped_or_left_alone_without_panicking(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
            max in any::<u16>(),
        ) {
            let before = bytes.clone();
            if !clamp_ipv4(&mut bytes, max) {
                prop_assert_eq!(bytes, before);
            }
        }
    }
}
