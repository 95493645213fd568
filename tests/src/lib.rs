//! Test client for Roadgate: an IKEv1 initiator with ESP that drives the server's sans-IO cores
//! in memory, over loopback UDP, or across network namespaces.
//!
//! * [`initiator`]: the IKEv1 initiator (Main Mode, Quick Mode, Informational, NAT-T, DPD),
//!   written from the RFCs independently of the server's responder;
//! * [`client`]: the initiator plus ESP SAs, sealing and opening L2TP in transport mode;
//! * [`pair`]: an in-memory harness with a fake clock, an impaired link and a NAT model;
//! * [`chain_world`]: the real Responder and Gateway against full-chain clients, in memory;
//! * [`ike_harness`]: helpers the in-memory IKEv1 tests share on a [`pair::Pair`] (connect,
//!   run to failure, check ESP both ways, the log for panic messages).

pub mod chain_world;
pub mod client;
pub mod freeradius;
pub mod full_client;
pub mod ike_harness;
pub mod initiator;
pub mod kdf;
pub mod lac;
pub mod loopback;
pub mod measure;
pub mod pair;
pub mod session_pair;
pub mod udp_client;
pub mod wire;
