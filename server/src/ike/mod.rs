//! IKEv1 (RFC 2409) responder, sans-IO.

pub mod crypto;
