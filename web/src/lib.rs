//! The admin web UI and JSON API (axum).
//!
//! Not built yet: this crate is filled by the CA and web UI issue. It holds no code so far.
