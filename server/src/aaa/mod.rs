//! Authentication, authorisation and accounting.
//!
//! Built so far: local users in the embedded SQLite database ([`local`]). RADIUS, PAM, system
//! accounts and accounting are not built yet.

pub mod local;
