//! The packet path between clients and the network.
//!
//! Built so far, as building blocks: TCP MSS clamping ([`mss`]) and ICMP
//! fragmentation-needed answers ([`icmp`]). The TUN device and the per-packet path through PPP,
//! L2TP and ESP are not built yet.

pub mod icmp;
pub mod mss;
