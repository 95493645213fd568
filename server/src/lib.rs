//! Roadgate: an L2TP/IPsec remote-access VPN server.
//!
//! Every protocol core here is a sans-IO state machine: bytes and time in; bytes, timers and
//! events out. [`server::Server`] wires them together and holds the policy between them; the
//! tokio shell in `io` owns the sockets and the clock. docs/architecture.md is the map.

/// Counts a dropped or refused input in `$counter` and logs it: at info level (with the count)
/// the first time the cause occurs and then at every power of two, otherwise at debug level. Each
/// cause shows in the log at once, a flood does not flood it, and a cause that keeps coming back
/// stays visible.
macro_rules! dropped {
    ($counter:expr, $($field:tt)*) => {{
        $counter += 1;
        let count = $counter;
        if count.is_power_of_two() {
            tracing::info!(count, $($field)*);
        } else {
            tracing::debug!($($field)*);
        }
    }};
}

pub mod aaa;
pub mod admin;
pub mod config;
pub mod dataplane;
pub mod esp;
pub mod ike;
pub mod io;
pub mod isakmp;
pub mod l2tp;
pub mod logring;
pub mod pki;
pub mod radius;
pub mod server;
pub mod session;

#[cfg(test)]
mod scratch;
