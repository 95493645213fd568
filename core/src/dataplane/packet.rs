//! What both sides of the data plane share: where a datagram goes ([`Via`], [`Transmit`]), the
//! room around a packet ([`HEADROOM`], [`TAILROOM`]), the counters ([`Stats`]) and the UDP
//! framing of L2TP inside ESP (RFC 768, RFC 3948 §3.1.2, RFC 8200 §8.1).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use crate::session;

/// The L2TP port (RFC 2661 §8.1).
pub const L2TP_PORT: u16 = 1701;

/// Room to leave in front of a packet read from the TUN device: ESP header and IV (at most
/// 8 + 16), UDP (8), L2TP data header and PPP ([`session::OUTBOUND_HEADER_MAX`]).
pub const HEADROOM: usize = 24 + 8 + session::OUTBOUND_HEADER_MAX;

/// Room to leave behind a packet: ESP padding, pad length, next header and ICV (at most
/// 15 + 2 + 32).
pub const TAILROOM: usize = 15 + 2 + 32;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An IKE datagram (already framed: on the NAT-T port it carries the non-ESP marker) from
    /// our `local` address and port (500 or 4500) to `remote`. Only the [`crate::server::Server`]
    /// sends these; the data plane never does.
    Ike {
        /// Our address and port.
        local: SocketAddr,
        /// The peer's.
        remote: SocketAddr,
    },
    /// ESP in UDP (RFC 3948) from our NAT-T port at `local` to `remote`.
    Udp {
        /// Our address and port (the one the client talks to).
        local: SocketAddr,
        /// The client's address and port.
        remote: SocketAddr,
    },
    /// ESP as IP protocol 50.
    RawEsp {
        /// Our address.
        local: IpAddr,
        /// The client's address.
        remote: IpAddr,
    },
    /// Cleartext L2TP (test-only plain mode) from our UDP 1701.
    PlainL2tp {
        /// The client's address and port.
        remote: SocketAddr,
    },
}

/// A packet to send: `buf[range]` of the buffer given to the call, to `via`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub via: Via,
    /// Where it lies in the caller's buffer.
    pub range: Range<usize>,
}

/// What [`Worker::tun_in`](super::worker::Worker::tun_in) made of a packet from the TUN device.
#[derive(Debug)]
pub enum FromTun<'a> {
    /// Send this.
    Send(Transmit),
    /// Write this ICMP error back to the TUN device (fragmentation needed, RFC 1191).
    Icmp(&'a [u8]),
    /// Dropped (counted).
    Dropped,
}

/// Counters of the data plane (no secrets).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// ESP packets decrypted.
    pub esp_decrypted: u64,
    /// ESP packets for no SA we have.
    pub esp_unknown_spi: u64,
    /// ESP packets whose integrity check failed, or that could not be decrypted.
    pub esp_auth_failed: u64,
    /// ESP packets replayed or too old for the window.
    pub esp_replayed: u64,
    /// ESP packets too short to carry an SPI.
    pub esp_malformed: u64,
    /// Quick Modes completed by authentic ESP before their message 3.
    pub implicit_qm3: u64,
    /// Decrypted packets that were not UDP to port 1701.
    pub esp_not_l2tp: u64,
    /// IPv4 packets written towards the TUN device.
    pub to_tun: u64,
    /// Packets from the TUN device sent to a client.
    pub from_tun: u64,
    /// Packets from the TUN device for no up session.
    pub tun_no_session: u64,
    /// Packets from the TUN device that were not IPv4.
    pub tun_not_ipv4: u64,
    /// ICMP fragmentation-needed answers sent.
    pub icmp_frag_needed: u64,
    /// TCP SYNs whose MSS was lowered.
    pub mss_clamped: u64,
    /// ESP encryption failures (buffer too small, sequence numbers exhausted).
    pub seal_failed: u64,
    /// Cleartext L2TP dropped (plain mode off).
    pub cleartext_l2tp_dropped: u64,
    /// IP packets from a client whose source is not its session's address, dropped.
    pub spoofed: u64,
    /// L2TP data messages older than the last one (sequence numbers), dropped.
    pub l2tp_data_stale: u64,
}

impl Stats {
    /// Adds `o` (another worker's counters) to these.
    pub fn add(&mut self, o: &Stats) {
        let Stats {
            esp_decrypted,
            esp_unknown_spi,
            esp_auth_failed,
            esp_replayed,
            esp_malformed,
            implicit_qm3,
            esp_not_l2tp,
            to_tun,
            from_tun,
            tun_no_session,
            tun_not_ipv4,
            icmp_frag_needed,
            mss_clamped,
            seal_failed,
            cleartext_l2tp_dropped,
            spoofed,
            l2tp_data_stale,
        } = o;
        self.esp_decrypted += esp_decrypted;
        self.esp_unknown_spi += esp_unknown_spi;
        self.esp_auth_failed += esp_auth_failed;
        self.esp_replayed += esp_replayed;
        self.esp_malformed += esp_malformed;
        self.implicit_qm3 += implicit_qm3;
        self.esp_not_l2tp += esp_not_l2tp;
        self.to_tun += to_tun;
        self.from_tun += from_tun;
        self.tun_no_session += tun_no_session;
        self.tun_not_ipv4 += tun_not_ipv4;
        self.icmp_frag_needed += icmp_frag_needed;
        self.mss_clamped += mss_clamped;
        self.seal_failed += seal_failed;
        self.cleartext_l2tp_dropped += cleartext_l2tp_dropped;
        self.spoofed += spoofed;
        self.l2tp_data_stale += l2tp_data_stale;
    }
}

/// A UDP datagram's source port, destination port and payload (RFC 768), if it has a header.
pub fn split_udp(datagram: &[u8]) -> Option<(u16, u16, &[u8])> {
    Some((
        u16::from_be_bytes([*datagram.first()?, *datagram.get(1)?]),
        u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]),
        datagram.get(8..)?,
    ))
}

/// A UDP header from port 1701 to `port` for `len` bytes (header included); checksum 0 (none,
/// allowed on IPv4, and the client's transport-mode NAT-T fix-up would rewrite it anyway:
/// RFC 3948 §3.1.2). Over IPv6 [`Worker::seal`](super::worker::Worker::seal) fills it in ([`set_udp6_checksum`]).
pub(crate) fn write_udp_header(head: &mut [u8], port: u16, len: usize) {
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    if let Some(h) = head.get_mut(..8) {
        h[0..2].copy_from_slice(&L2TP_PORT.to_be_bytes());
        h[2..4].copy_from_slice(&port.to_be_bytes());
        h[4..6].copy_from_slice(&len.to_be_bytes());
        h[6..8].copy_from_slice(&[0, 0]);
    }
}

/// The 16-bit one's-complement sum (RFC 1071) of `data` added to `acc`, unfolded: big-endian
/// 32-bit words add up in 64 bits (2^16 is 1 modulo 2^16 - 1, so folding later gives the sum of
/// the 16-bit words), an odd last byte counts as its word's high byte.
fn ones_sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    match *words.remainder() {
        [a] => acc += u64::from(a) << 8,
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])),
        [a, b, c] => acc += u64::from(u16::from_be_bytes([a, b])) + (u64::from(c) << 8),
        _ => {}
    }
    acc
}

/// Writes the checksum of the UDP `datagram` (header first; its checksum field is ignored) sent
/// over IPv6 between `a` and `b` (either way round: the sum does not depend on the order): the
/// RFC 1071 sum over the pseudo-header of RFC 8200 §8.1 (both addresses, the upper-layer length,
/// next header 17) and the datagram, a result of zero sent as 0xFFFF.
pub fn set_udp6_checksum(datagram: &mut [u8], a: Ipv6Addr, b: Ipv6Addr) {
    let Some(field) = datagram.get_mut(6..8) else {
        return;
    };
    field.copy_from_slice(&[0, 0]);
    let mut sum = ones_sum(0, &a.octets());
    sum = ones_sum(sum, &b.octets());
    sum += datagram.len() as u64 + 17;
    sum = ones_sum(sum, datagram);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    if let Some(field) = datagram.get_mut(6..8) {
        field.copy_from_slice(&c.to_be_bytes());
    }
}

/// What a decrypted transport-mode datagram looks like, for the log.
pub fn describe_inner(next_header: u8, payload: &[u8]) -> String {
    if next_header != 17 {
        return format!("protocol {next_header}, {} bytes", payload.len());
    }
    let Some((sport, dport, body)) = split_udp(payload) else {
        return format!("truncated UDP, {} bytes", payload.len());
    };
    format!(
        "UDP {sport}->{dport}, {} bytes: {}",
        body.len(),
        describe_l2tp(body)
    )
}

/// A peek at an L2TP header (RFC 2661 §3.1) and, for control messages, the Message Type AVP.
pub fn describe_l2tp(b: &[u8]) -> String {
    let Some(flags) = b.get(0..2).map(|f| u16::from_be_bytes([f[0], f[1]])) else {
        return "not L2TP".into();
    };
    if flags & 0x000f != 2 {
        return format!("not L2TPv2 (version {})", flags & 0xf);
    }
    let control = flags & 0x8000 != 0;
    if !control {
        return "L2TP data message".into();
    }
    // Control messages carry L and S: flags(2) length(2) tunnel(2) session(2) Ns(2) Nr(2), then AVPs.
    let tunnel = b.get(4..6).map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
    let Some(avp) = b.get(12..) else {
        return format!("L2TP control, tunnel {tunnel}, no AVPs (ZLB)");
    };
    if avp.len() < 8 {
        return format!("L2TP control, tunnel {tunnel}, ZLB acknowledgement");
    }
    let attr = u16::from_be_bytes([avp[4], avp[5]]);
    let vendor = u16::from_be_bytes([avp[2], avp[3]]);
    let mtype = u16::from_be_bytes([avp[6], avp[7]]);
    if vendor != 0 || attr != 0 {
        return format!("L2TP control, tunnel {tunnel}, first AVP is not Message Type");
    }
    let name = match mtype {
        1 => "SCCRQ",
        2 => "SCCRP",
        3 => "SCCCN",
        4 => "StopCCN",
        6 => "HELLO",
        10 => "ICRQ",
        11 => "ICRP",
        12 => "ICCN",
        14 => "CDN",
        _ => "other",
    };
    format!("L2TP control message {name} (type {mtype}), tunnel {tunnel}")
}

/// The IPv6 UDP checksum (RFC 8200 §8.1).
#[cfg(test)]
mod udp6_tests {
    use super::*;
    use crate::dataplane::icmp;

    /// The reference: RFC 1071 over the pseudo-header and the datagram laid out in one buffer.
    fn reference(datagram: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        let mut v = Vec::new();
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend_from_slice(&(datagram.len() as u32).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 17]);
        v.extend_from_slice(datagram);
        v[40 + 6] = 0;
        v[40 + 7] = 0;
        icmp::checksum(&v)
    }

    fn datagram(len: usize, seed: u8) -> Vec<u8> {
        let mut d: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        write_udp_header(&mut d, 1701, len);
        d
    }

    #[test]
    fn udp6_checksum_matches_rfc1071_over_the_pseudo_header() {
        let src: Ipv6Addr = "2001:db8::2".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let dst: Ipv6Addr = "2001:db8:ffff::fffe".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        // Every remainder of 4, short and long, with garbage in the checksum field first.
        for len in (8..80).chain([1399, 1400, 1401, 1402, 65_000]) {
            let mut d = datagram(len, len as u8);
            d[6] = 0xab;
            set_udp6_checksum(&mut d, src, dst);
            let c = u16::from_be_bytes([d[6], d[7]]);
            assert_ne!(c, 0, "len {len}");
            assert_eq!(c, reference(&d, src, dst), "len {len}");
            // A receiver sums everything, checksum included, and must find zero; either order
            // of the addresses.
            let mut whole = Vec::new();
            whole.extend_from_slice(&dst.octets());
            whole.extend_from_slice(&src.octets());
            whole.extend_from_slice(&(len as u32).to_be_bytes());
            whole.extend_from_slice(&[0, 0, 0, 17]);
            whole.extend_from_slice(&d);
            assert_eq!(icmp::checksum(&whole), 0, "len {len}");
        }
    }

    #[test]
    fn udp6_checksum_zero_is_sent_as_ffff() {
        let (src, dst) = (Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        // Two spare bytes at the end: set them to the checksum of the rest, and the sum of
        // everything becomes 0xFFFF, whose complement (0) must go out as 0xFFFF.
        let mut d = datagram(20, 7);
        d[18] = 0;
        d[19] = 0;
        set_udp6_checksum(&mut d, src, dst);
        let first = [d[6], d[7]];
        d[18..20].copy_from_slice(&first);
        set_udp6_checksum(&mut d, src, dst);
        assert_eq!([d[6], d[7]], [0xff, 0xff]);
        // Different address families never reach it: IPv4 keeps checksum 0.
        let mut v4 = datagram(12, 1);
        write_udp_header(&mut v4, 1701, 12);
        assert_eq!([v4[6], v4[7]], [0, 0]);
    }
}
