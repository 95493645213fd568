//! RADIUS. The sans-IO codec, client and dynamic authorization cores are in
//! [`roadgate_core::radius`] (re-exported here under their old paths); the `[radius]` and
//! `[dynauth]` configuration, which reads the secret files, is here ([`config`]); the
//! Status-Server probe (RFC 5997) for `roadgate doctor` is [`probe`]. The tokio
//! shell is `crate::io::radius`.

pub use roadgate_core::radius::{client, dynauth, packet, status};

pub mod config;
pub mod probe;
