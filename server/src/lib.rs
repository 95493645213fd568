//! Roadgate: an L2TP/IPsec remote-access VPN server.
//!
//! Every protocol core is a sans-IO state machine: bytes and time in; bytes, timers and events
//! out. They live in the `roadgate-core` crate ([`roadgate_core`]) and are re-exported here under
//! their old paths; [`server::Server`] wires them together and holds the policy between them.
//! This crate is the shell: the tokio runtime in `io` owns the sockets and the clock, and the
//! configuration, the AAA backends (SQLite, PAM, the accounting spool) and the PKI live here.
//! docs/architecture.md is the map.

pub use roadgate_core::{dataplane, esp, ike, isakmp, l2tp, server, session};

pub mod aaa;
pub mod admin;
pub mod config;
pub mod doctor;
pub mod first_start;
pub mod io;
pub mod logring;
pub mod pki;
pub mod radius;

#[cfg(test)]
mod scratch;
