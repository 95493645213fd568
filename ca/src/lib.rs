//! The built-in certificate authority (server and client certificates, CRL, PKCS#12).
//!
//! Not built yet: this crate is filled by the CA and web UI issue. It holds no code so far.
