//! Roadgate's sans-IO protocol cores: bytes and time in; bytes, timers and events out.
//!
//! ISAKMP and IKEv1 ([`isakmp`], [`ike`]), ESP ([`esp`]), L2TP ([`l2tp`]), the PPP sessions
//! ([`session`]), the data plane ([`dataplane`]), the RADIUS codec, client and dynamic
//! authorization cores ([`radius`]), the plain data that crosses to the AAA backends ([`aaa`])
//! and the admin socket's protocol ([`admin`]). [`server::Server`] wires them together and holds
//! the policy between them.
//!
//! This crate owns no socket, no clock, no runtime and no database: it does not depend on
//! tokio, rusqlite, axum, hyper, rustls, PAM, tokio-tun, quinn-udp, socket2, nix, nor on the
//! `ca` or `web` crates. The `roadgate` crate is the shell around it (docs/architecture.md).

/// Counts a dropped or refused input in `$counter` and logs it: at info level (with the count)
/// the first time the cause occurs and then at every power of two, otherwise at debug level. Each
/// cause shows in the log at once, a flood does not flood it, and a cause that keeps coming back
/// stays visible.
#[macro_export]
macro_rules! dropped {
    ($counter:expr, $($field:tt)*) => {{
        $counter += 1;
        let count = $counter;
        if count.is_power_of_two() {
            $crate::__tracing::info!(count, $($field)*);
        } else {
            $crate::__tracing::debug!($($field)*);
        }
    }};
}

/// For [`dropped!`] in other crates.
#[doc(hidden)]
pub use tracing as __tracing;

pub mod aaa;
pub mod admin;
pub mod dataplane;
pub mod esp;
pub mod ike;
pub mod isakmp;
pub mod l2tp;
pub mod radius;
pub mod server;
pub mod session;
pub mod timer;
