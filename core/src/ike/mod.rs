//! IKEv1 (RFC 2409) responder, sans-IO.
//!
//! [`Responder`] owns every ISAKMP SA and Quick Mode exchange of the server. It is driven from
//! outside, in the shape of quinn-proto: datagrams and time in ([`Responder::handle_datagram`],
//! [`Responder::handle_timeout`]), datagrams, timers and events out ([`Responder::poll_transmit`],
//! [`Responder::poll_timeout`], [`Responder::poll_event`]). It never touches a socket or a clock.
//!
//! Handshake cryptography (Main Mode message 3's Diffie-Hellman, certificate message 5's chain
//! and signature work) can run off the packet path: with [`Responder::set_deferred_jobs`]`(true)`
//! the responder parks the ISAKMP SA and queues a [`Job`] ([`Responder::poll_job`]); the shell runs
//! [`Job::run`] on any thread and returns the [`JobDone`] with [`Responder::job_done`]. By default
//! (inline) the responder runs each job itself at once, through the same path. See `jobs`.
//!
//! Flood limits, all before any key is made: the peer's KE is validated first
//! ([`crypto::validate_public`]); half-open SAs are bounded in total, per source address and per
//! IPv6 /64, with random early drop above [`Config::early_drop_threshold`]; a failed handshake
//! stays charged to its source until its half-open timeout; new message 1s wait for fewer than
//! [`Config::handshake_queue`] outstanding jobs. Each refusal has its own counter in [`Stats`].
//!
//! Module map: `proposals` (policy and transform matching), `nat_t` (RFC 3947 and drafts),
//! `crypto` (RFC 2409 key material), `sa` (phase-1 and phase-2 state), `main_mode`,
//! `quick_mode`, `informational` (the exchanges), `jobs` (handshake work off the packet path),
//! `responder` (demux, timers, limits).

pub mod cert;
pub mod crypto;
mod fragment;
mod informational;
mod jobs;
mod main_mode;
pub mod nat_t;
pub mod proposals;
pub(crate) mod quick_mode;
mod responder;
mod sa;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use zeroize::Zeroizing;

pub use jobs::{Job, JobDone};
pub use proposals::{AuthMethod, Encapsulation, Phase1Policy, Phase2Policy};
pub use responder::{Responder, Stats};

use crate::esp;

/// Pre-shared keys: one per peer address, and a server-wide default for road warriors whose
/// addresses are unknown in advance (Main Mode hides the peer's ID until the key is in use, so a
/// key can only be chosen by address: CLIENTS.md §3.5).
#[derive(Clone, Default)]
pub struct PskStore {
    by_addr: HashMap<IpAddr, Zeroizing<Vec<u8>>>,
    default: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for PskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PskStore")
            .field("peers", &self.by_addr.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl PskStore {
    pub fn with_default(psk: impl Into<Vec<u8>>) -> Self {
        Self {
            by_addr: HashMap::new(),
            default: Some(Zeroizing::new(psk.into())),
        }
    }
    pub fn set_default(&mut self, psk: impl Into<Vec<u8>>) {
        self.default = Some(Zeroizing::new(psk.into()));
    }
    pub fn insert(&mut self, peer: IpAddr, psk: impl Into<Vec<u8>>) {
        self.by_addr.insert(peer, Zeroizing::new(psk.into()));
    }
    /// The key of peers without one of their own.
    pub fn default_key(&self) -> Option<&[u8]> {
        self.default.as_deref().map(Vec::as_slice)
    }
    /// How many peers have a key of their own.
    pub fn peers(&self) -> usize {
        self.by_addr.len()
    }
    pub fn lookup(&self, peer: IpAddr) -> Option<&[u8]> {
        self.by_addr
            .get(&peer)
            .or(self.default.as_ref())
            .map(|k| k.as_slice())
    }
}

/// Everything the responder needs to know; shared, read-only while it runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub psk: PskStore,
    /// Certificate authentication (RSA signatures): our certificate and key, and the trust
    /// anchors for clients. None: RSA-signature proposals are refused.
    pub cert: Option<std::sync::Arc<dyn cert::CertAuthority>>,
    pub phase1: Phase1Policy,
    pub phase2: Phase2Policy,
    /// Negotiate NAT traversal (RFC 3947 and the 02/03 drafts).
    pub nat_t: bool,
    /// The NAT-T port: datagrams to or from it carry the non-ESP marker.
    pub natt_port: u16,
    /// When this server is behind NAT and the client is Windows, answer NAT-D so that Windows
    /// sees "client behind NAT, server not": Windows then uses UDP encapsulation without the
    /// AssumeUDPEncapsulationContextOnSendRule registry change (error 809, CLIENTS.md §1.3). The
    /// server itself knows the truth and encapsulates. A deliberate misstatement of NAT-D towards
    /// Windows only; off means strict RFC 3947 behaviour.
    pub windows_nat_workaround: bool,
    /// Send DPD R-U-THERE after this much silence from a peer that advertised DPD (RFC 3706).
    pub dpd_interval: Option<Duration>,
    /// A peer that answers no R-U-THERE for this long is declared dead.
    pub dpd_timeout: Duration,
    /// A phase 1 that is not complete after this long is dropped.
    pub half_open_timeout: Duration,
    /// Limits on phase-1 negotiations in progress, per source address, per IPv6 /64 and in
    /// total. Established peers are looked up before these limits apply, so a flood of first
    /// messages cannot starve them. A negotiation that fails (a bad message 3 or 5) stays charged
    /// until its `half_open_timeout` would have run out.
    pub max_half_open_per_source: usize,
    pub max_half_open_per_v6_prefix: usize,
    pub max_half_open: usize,
    /// Random early drop: above this fraction of `max_half_open`, a new message 1 is dropped
    /// with a probability rising linearly to 1 at `max_half_open` (1.0 turns it off).
    pub early_drop_threshold: f64,
    /// At most this many handshake jobs outstanding (see [`Job`]); while they are, new message
    /// 1s are dropped.
    pub handshake_queue: usize,
    /// Threads that run the jobs in `roadgate serve` (the shell's handshake pool); 0: one per
    /// core beyond the forwarding one, 1 to 4. The responder itself does not read it.
    pub handshake_threads: usize,
    /// Retransmission of our last reply when the peer's next message does not come.
    pub retransmit_initial: Duration,
    pub retransmit_tries: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            psk: PskStore::default(),
            cert: None,
            phase1: Phase1Policy::default(),
            phase2: Phase2Policy::default(),
            nat_t: true,
            natt_port: 4500,
            windows_nat_workaround: true,
            dpd_interval: Some(Duration::from_secs(30)),
            dpd_timeout: Duration::from_secs(120),
            half_open_timeout: Duration::from_secs(30),
            max_half_open_per_source: 64,
            max_half_open_per_v6_prefix: 256,
            max_half_open: 8192,
            early_drop_threshold: 0.5,
            handshake_queue: 64,
            handshake_threads: 0,
            retransmit_initial: Duration::from_secs(2),
            retransmit_tries: 4,
        }
    }
}

/// A datagram to send: from `local` to `remote`. `data` is the exact UDP payload (with the
/// non-ESP marker already in front when either port is the NAT-T port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// The NAT situation found by NAT-D (RFC 3947 §3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatState {
    pub nat_t: Option<nat_t::Variant>,
    /// Our address as the peer addressed it differs from ours: the server is behind NAT.
    pub local_behind_nat: bool,
    /// The peer's source differs from what it thinks its address is: the client is behind NAT.
    pub peer_behind_nat: bool,
}

impl NatState {
    /// ESP goes in UDP (RFC 3948) when NAT-T was agreed and a NAT was found (or faked by a peer
    /// that forces encapsulation).
    pub fn udp_encap(&self) -> bool {
        self.nat_t.is_some() && (self.local_behind_nat || self.peer_behind_nat)
    }
}

/// A traffic selector from a Quick Mode ID payload (or the peers' addresses when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub first: IpAddr,
    pub last: IpAddr,
    /// 0: any.
    pub protocol: u8,
    /// 0: any.
    pub port: u16,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)?;
        } else {
            write!(f, "{}-{}", self.first, self.last)?;
        }
        write!(f, "[{}/{}]", self.protocol, self.port)
    }
}

/// An IPsec SA pair agreed in Quick Mode: what the data plane needs to install it.
#[derive(Clone)]
pub struct ChildSa {
    pub phase1: u64,
    pub peer_id: String,
    pub inbound_spi: u32,
    pub outbound_spi: u32,
    pub suite: esp::Suite,
    pub inbound_keymat: Zeroizing<Vec<u8>>,
    pub outbound_keymat: Zeroizing<Vec<u8>>,
    /// Where ESP is sent to and from (the NAT-T port when `udp_encap`).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub udp_encap: bool,
    pub tunnel: bool,
    /// The peer's own idea of its address (IDci or NAT-OAi): its private address behind NAT.
    pub peer_original: Option<IpAddr>,
    pub local_selector: Selector,
    pub remote_selector: Selector,
    pub lifetime: Duration,
    pub lifetime_kb: Option<u64>,
    /// Inbound SPIs of older SAs with the same selectors to the same peer (a rekey): the data plane
    /// keeps them for inbound until they are deleted or expire, and sends on the new one.
    pub replaces: Vec<u32>,
    pub algorithms: String,
}

impl fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSa")
            .field("phase1", &self.phase1)
            .field("peer_id", &self.peer_id)
            .field("inbound_spi", &format_args!("{:08x}", self.inbound_spi))
            .field("outbound_spi", &format_args!("{:08x}", self.outbound_spi))
            .field("suite", &self.suite)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("udp_encap", &self.udp_encap)
            .field("tunnel", &self.tunnel)
            .field("local_selector", &self.local_selector)
            .field("remote_selector", &self.remote_selector)
            .field("lifetime", &self.lifetime)
            .field("replaces", &self.replaces)
            .finish_non_exhaustive()
    }
}

/// Why an SA went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The peer sent a Delete.
    PeerDeleted,
    /// Our lifetime ran out.
    Expired,
    /// DPD found the peer dead.
    DeadPeer,
    /// The peer came back with INITIAL-CONTACT: it lost its old state.
    InitialContact,
    /// Asked for by the admin or the shell (session end, kilobyte lifetime, shutdown).
    Local,
}

/// What the responder tells the shell.
#[derive(Debug)]
pub enum Event {
    Phase1Up {
        id: u64,
        remote: SocketAddr,
        peer_id: String,
        algorithms: String,
        nat: NatState,
        /// How the peer authenticated: `psk`, or `certificate <subject>`.
        auth: String,
        /// The VPN user the peer's certificate was issued for, if any.
        cert_user: Option<String>,
    },
    Phase1Down {
        id: u64,
        remote: SocketAddr,
        reason: DownReason,
    },
    ChildSaUp(Box<ChildSa>),
    ChildSaDown {
        inbound_spi: u32,
        outbound_spi: u32,
        reason: DownReason,
    },
    /// The peer's NAT mapping moved (an authenticated message came from a new address or port):
    /// outbound ESP of its SAs goes to `remote` from now on.
    PeerMoved {
        phase1: u64,
        inbound_spis: Vec<u32>,
        remote: SocketAddr,
    },
}
