//! pppd-lite: PPP for Roadgate as a sans-IO library.

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
pub use link::{
    ClientConfig, Config, DownReason, DropReason, Event, Input, NetworkInfo, Phase, Ppp, Role,
    ServerConfig, Stats,
};
