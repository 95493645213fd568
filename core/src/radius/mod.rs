//! RADIUS: the client for authentication and accounting (RFC 2865, RFC 2866, RFC 2869,
//! RFC 2548 Microsoft attributes, RFC 3579 EAP) and the dynamic authorization server
//! (RFC 5176 Disconnect and CoA), and the Status-Server query (RFC 5997, [`status`]). All sans-IO; the tokio shell is `roadgate::io::radius`, and
//! the `[radius]`/`[dynauth]` configuration (which reads the secret files) is
//! `roadgate::radius::config`.
//!
//! Why our own codec and not the `radius` crate (0.4.0, checked on crates.io): it has no
//! RFC 2548 dictionary (no MS-CHAP2-Success, no MS-MPPE key salt decryption), no
//! Message-Authenticator handling on every request and response, it uses the `md5` crate
//! rather than the workspace's `md-5`/`hmac`, indexes wire data directly (decoding is not
//! total by construction), and brings an async client/server that owns sockets. The codec we
//! need is small ([`packet`]).

pub mod client;
pub mod dynauth;
pub mod packet;
pub mod status;
