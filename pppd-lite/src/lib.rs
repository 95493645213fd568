//! pppd-lite: PPP for Roadgate as a sans-IO library.
//!
//! Built so far (self-contained building blocks, each with known-answer tests):
//!
//! - [`mschapv2`]: MS-CHAPv2 computations from RFC 2759 §8 over stored NT hashes
//!   (NT-Response generation and constant-time verification, authenticator response,
//!   Failure-packet text).
//! - [`mppe`]: MPPE master and start keys from MS-CHAPv2 credentials (RFC 3079 §3).
//! - [`chap`]: CHAP-MD5 response and constant-time verification (RFC 1994 §4.1).
//! - [`pool`]: an IPv4 address pool for IPCP (ranges, exclusions, per-user static addresses).
//!
//! Not built yet: PPP framing, the LCP, authentication (PAP/CHAP/MS-CHAPv2) and IPCP state
//! machines and packet codecs, MS-CHAPv1, MPPE session keys/encryption (RC4), and any I/O.
//! Nothing here negotiates a PPP link on its own.

pub mod chap;
pub mod mppe;
pub mod mschapv2;
pub mod pool;
