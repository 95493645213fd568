//! pppd-lite: PPP for Roadgate as a sans-IO library.
//!
//! No sockets, no clocks, no async: frames go in through [`Ppp::handle_frame`], control frames
//! come out of [`Ppp::poll_transmit`], decisions and state changes come out of
//! [`Ppp::poll_event`], and time comes in as `Instant` arguments ([`Ppp::poll_timeout`],
//! [`Ppp::handle_timeout`]). Every random choice comes from the `[u8; 32]` seed given to
//! [`Ppp::new`] (ChaCha20), so runs are reproducible.
//!
//! Built:
//!
//! - [`frame`]: PPP frames as L2TP carries them (optional `FF 03`, 1- or 2-octet protocol).
//! - [`packet`]: the RFC 1661 control-packet and option codecs (total decoders).
//! - [`fsm`]: the RFC 1661 §4 option negotiation automaton (all ten states, restart timer,
//!   Max-Configure/Terminate/Failure, Code-Reject). Deviation: a Configure-Request identical
//!   (same identifier and options) to the one we acked while Opened is acked again instead of
//!   restarting negotiation, and retransmissions keep their identifier (RFC 1661 §5.1 allows
//!   it), so a lost Ack does not take the link down.
//! - [`lcp`]: MRU, ACCM, Auth-Protocol, Magic-Number (loop-back detection), PFC, ACFC; everything
//!   else (Callback, MRRU, Endpoint Discriminator, Quality-Protocol, ...) is Configure-Rejected.
//!   Echo keepalive with dead-peer detection, Protocol-Reject, Discard/Identification/
//!   Time-Remaining ignored.
//! - [`ipcp`] (RFC 1332, RFC 1877 DNS/NBNS; VJ compression rejected) and [`ipv6cp`]
//!   (Interface-Identifier only).
//! - Authentication, server side: [`pap`], CHAP-MD5 and MS-CHAPv2 ([`chap`], [`mschapv2`];
//!   retry with a new challenge after `E=691 R=1`), and EAP relay ([`eap`]: Request/Identity,
//!   then every Response goes to the owner, which answers with further Requests). Decisions are
//!   asynchronous ([`Event::Authenticate`] / [`Ppp::auth_decision`]) with a timeout.
//! - Authentication, client side: PAP, CHAP-MD5, MS-CHAPv2 (checks the server's `S=`, retries
//!   after `R=1` while `max_auth_attempts` allows) and EAP Identity/MD5-Challenge (any other
//!   EAP type is answered with a legacy Nak for MD5-Challenge).
//! - [`auth`]: [`verify_with_nt_hash`] / [`verify_with_password`] for local user databases.
//! - [`mppe`]: MPPE start keys (RFC 3079 §3) handed over on MS-CHAPv2 acceptance.
//! - [`pool`]: an IPv4 address pool for IPCP, used by the owner.
//!
//! Not built: LCP renegotiation after Opened (it ends the session with
//! `Down(Negotiation(..))`; [`Event::Down`] is final), CCP/MPPE encryption (CCP is
//! Protocol-Rejected: MPPE inside IPsec is pointless), MS-CHAPv1, MS-CHAPv2 password change,
//! VJ header compression, multilink, callback, LQR, EAP methods other than MD5-Challenge on the
//! client side, and any I/O.

pub mod auth;
pub mod chap;
pub mod eap;
pub mod frame;
pub mod fsm;
pub mod ipcp;
pub mod ipv6cp;
pub mod lcp;
pub mod link;
pub mod mppe;
pub mod mschapv2;
pub mod packet;
pub mod pap;
pub mod pool;

pub use auth::{
    Accept, AuthProtocol, AuthRequest, Credentials, MppeKeys, Verdict, nt_hash,
    verify_with_nt_hash, verify_with_password,
};
pub use frame::{IPV4_HEADER, IPV6_HEADER};
pub use link::MalformedStats;
pub use link::{
    ClientConfig, Config, DownReason, DropReason, Event, Input, NetworkInfo, Phase, Ppp, Role,
    ServerConfig, Stats,
};
