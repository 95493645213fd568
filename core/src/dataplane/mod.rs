//! The packet path between clients and the network.
//!
//! [`Gateway`] (in [`gateway`]) is the sans-IO data plane: it owns the IPsec SAs, binds them to
//! L2TP peers and drives the session layer. ESP from a client is decrypted in place, its
//! L2TP/PPP framing removed, the inner IPv4 packet checked (source = the session's address) and
//! MSS-clamped, and handed back as a slice for the TUN device; an IPv4 packet read from the TUN
//! device gets its PPP, L2TP and UDP headers written into headroom in front of it and is
//! encrypted in place for the client that holds its destination address. The tokio shell in
//! `io` owns the TUN device and the sockets.

pub mod gateway;
pub mod icmp;
pub mod mss;
pub mod packet;
pub mod worker;

pub use gateway::Gateway;
pub use packet::{FromTun, HEADROOM, TAILROOM, Transmit, Via};

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Settings of the data plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// Open a TUN device (needs CAP_NET_ADMIN). Without it clients connect but pass no traffic.
    pub tun: bool,
    /// The TUN device's name.
    pub tun_name: String,
    /// The server's own address on the TUN device (the PPP local address clients see).
    pub local_address: Ipv4Addr,
    /// Routes to put on the TUN device: the pool's ranges as prefixes (address, length).
    pub routes: Vec<(Ipv4Addr, u8)>,
    /// The largest IPv4 packet towards a client (the PPP MRU we grant; 1400 by default, as
    /// Windows asks). Larger DF packets get ICMP fragmentation-needed.
    pub mtu: u16,
    /// Clamp the MSS of TCP SYNs in both directions to fit `mtu`.
    pub mss_clamp: bool,
    /// End a session that passes no IP packet for this long.
    pub idle_timeout: Option<Duration>,
    /// End a session this long after it came up.
    pub session_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tun: true,
            tun_name: "rg0".into(),
            local_address: Ipv4Addr::new(10, 77, 0, 1),
            routes: vec![(Ipv4Addr::new(10, 77, 0, 0), 24)],
            mtu: 1400,
            mss_clamp: true,
            idle_timeout: None,
            session_timeout: None,
        }
    }
}

/// Whether `addr` lies in one of `routes` (prefix, length).
pub fn covered(routes: &[(Ipv4Addr, u8)], addr: Ipv4Addr) -> bool {
    routes.iter().any(|&(net, len)| {
        crate::ike::quick_mode::in_prefix(IpAddr::V4(addr), IpAddr::V4(net), len)
    })
}

/// The shortest list of prefixes that covers exactly `first..=last`.
pub fn range_prefixes(first: Ipv4Addr, last: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    let (mut a, b) = (u64::from(u32::from(first)), u64::from(u32::from(last)));
    let mut out = Vec::new();
    while a <= b {
        // The largest block aligned at `a` that does not go past `b`.
        let mut size = if a == 0 {
            1u64 << 32
        } else {
            1u64 << a.trailing_zeros().min(32)
        };
        while a + size - 1 > b {
            size >>= 1;
        }
        let len = 32 - size.trailing_zeros() as u8;
        out.push((Ipv4Addr::from(a as u32), len));
        a += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cover_ranges_exactly() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            range_prefixes(ip("10.77.0.10"), ip("10.77.0.250")),
            vec![
                (ip("10.77.0.10"), 31),
                (ip("10.77.0.12"), 30),
                (ip("10.77.0.16"), 28),
                (ip("10.77.0.32"), 27),
                (ip("10.77.0.64"), 26),
                (ip("10.77.0.128"), 26),
                (ip("10.77.0.192"), 27),
                (ip("10.77.0.224"), 28),
                (ip("10.77.0.240"), 29),
                (ip("10.77.0.248"), 31),
                (ip("10.77.0.250"), 32),
            ]
        );
        assert_eq!(
            range_prefixes(ip("10.0.0.0"), ip("10.0.255.255")),
            vec![(ip("10.0.0.0"), 16)]
        );
        assert_eq!(
            range_prefixes(ip("0.0.0.0"), ip("255.255.255.255")),
            vec![(ip("0.0.0.0"), 0)]
        );
        assert_eq!(
            range_prefixes(ip("1.2.3.4"), ip("1.2.3.4")),
            vec![(ip("1.2.3.4"), 32)]
        );
        assert!(range_prefixes(ip("1.2.3.5"), ip("1.2.3.4")).is_empty());
    }

    #[test]
    fn coverage_of_the_pool_routes() {
        let routes = range_prefixes(Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 99));
        assert!(covered(&routes, Ipv4Addr::new(10, 77, 0, 10)));
        assert!(covered(&routes, Ipv4Addr::new(10, 77, 0, 99)));
        assert!(!covered(&routes, Ipv4Addr::new(10, 77, 0, 9)));
        assert!(!covered(&routes, Ipv4Addr::new(10, 77, 0, 200)));
        assert!(covered(
            &[(Ipv4Addr::UNSPECIFIED, 0)],
            Ipv4Addr::new(1, 2, 3, 4)
        ));
        assert!(!covered(&[], Ipv4Addr::new(1, 2, 3, 4)));
    }
}
