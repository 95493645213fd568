//! Roadgate: an L2TP/IPsec remote-access VPN server.
//!
//! Every protocol core here is a sans-IO state machine: bytes and time in; bytes, timers and
//! events out. The tokio shell in `io` owns the sockets and the clock.

pub mod aaa;
pub mod dataplane;
pub mod esp;
pub mod ike;
pub mod io;
pub mod isakmp;
pub mod l2tp;
pub mod session;
