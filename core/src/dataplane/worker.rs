//! A data-plane worker: the forwarding path of one thread, sans-IO.
//!
//! The control plane (the [`Gateway`](super::Gateway) inside the [`Server`](crate::server::Server))
//! owns IKE, L2TP control, PPP and the pool. What a worker needs to forward reaches it as
//! [`Update`] messages: IPsec SAs ([`SharedSa`]: keys, the atomic outbound sequence number and
//! the inbound replay window with its own lock) and up sessions ([`Route`]: address, L2TP
//! framing, shared counters). Each worker keeps its own lookup tables built from those
//! messages, so a packet takes no lock but its SA's replay-window lock, twice, for an instant.
//!
//! The way in ([`Worker::esp_in`]): SPI lookup, decryption in place, UDP to 1701, an L2TP data
//! message of a routed session, PPP protocol IPv4, the inner source checked, MSS clamped: the
//! packet's range is returned for the TUN device. Anything else that is authentic (L2TP
//! control, LCP echoes, data of a session not yet up) is [`EspIn::Control`]: the caller hands
//! it to the control plane. ESP for an SPI the worker does not know is [`EspIn::UnknownSpi`]:
//! a Quick Mode may be waiting for it (its message 3 lost, or overtaken).
//!
//! The way out ([`Worker::tun_in`]): the destination's route, the PPP, L2TP and UDP headers
//! written into the headroom, sealed in place with the client's newest SA.
//!
//! Neither way allocates; [`Worker::poll_note`] gives what the control plane must hear (an SA
//! whose kilobyte lifetime or sequence numbers ran out).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use tracing::info;

use super::packet::{
    FromTun, HEADROOM, L2TP_PORT, Stats, Transmit, Via, describe_inner, set_udp6_checksum,
    split_udp, write_udp_header,
};
use super::{icmp, mss};
use crate::esp::{self, InboundSa, OutboundSa};
use crate::l2tp::{PeerId, SessionRef, wire};
use crate::session::Route;

/// How often an SA's byte and sequence limits are checked: every this many packets.
const LIMIT_CHECK_EVERY: u64 = 64;

/// One IPsec SA pair as the workers share it (aligned to a cache line, so that the counters of
/// two SAs on two workers never share one).
#[repr(align(64))]
pub struct SharedSa {
    /// Our inbound SA (decryption, replay window).
    pub inbound: InboundSa,
    /// The client's (encryption, atomic sequence number).
    pub outbound: OutboundSa,
    /// The IPsec client (L2TP peer) it belongs to.
    pub client: PeerId,
    /// Kilobyte lifetime, if the client asked for one.
    lifetime_kb: Option<u64>,
    /// The control plane has been told that a limit was reached.
    limit_noted: AtomicBool,
    /// The first decrypted packet has been logged.
    first_logged: AtomicBool,
}

impl std::fmt::Debug for SharedSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSa")
            .field("spi_in", &format_args!("{:08x}", self.inbound.spi()))
            .field("spi_out", &format_args!("{:08x}", self.outbound.spi()))
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl SharedSa {
    /// An SA pair of `client`.
    pub fn new(
        inbound: InboundSa,
        outbound: OutboundSa,
        client: PeerId,
        lifetime_kb: Option<u64>,
    ) -> Self {
        SharedSa {
            inbound,
            outbound,
            client,
            lifetime_kb,
            limit_noted: AtomicBool::new(false),
            first_logged: AtomicBool::new(false),
        }
    }

    /// Why the SA must end now, if it must: its kilobyte lifetime is used up or its outbound
    /// sequence numbers run out (RFC 4303 §3.3.3).
    pub fn limit_reached(&self) -> Option<&'static str> {
        let bytes = self.inbound.bytes() + self.outbound.bytes();
        if self.lifetime_kb.is_some_and(|kb| bytes / 1024 >= kb) {
            Some("kilobyte lifetime reached")
        } else if self.outbound.needs_rekey() {
            Some("sequence numbers nearly exhausted")
        } else {
            None
        }
    }
}

/// Where an SA's packets go: our address and the client's, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaPath {
    /// Our address (and NAT-T port).
    pub local: SocketAddr,
    /// The client's (after any NAT).
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948) rather than IP protocol 50.
    pub udp_encap: bool,
}

/// How a client's packets leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerOut {
    /// Through this SA (the client's newest).
    Sa(u32),
    /// In clear to this address (test-only plain mode).
    Plain(SocketAddr),
}

/// What the worker's settings are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Clamp the MSS of TCP SYNs to fit `mtu`.
    pub mss_clamp: bool,
    /// The largest IPv4 packet towards a client.
    pub mtu: u16,
    /// The source of our ICMP errors (the server's TUN address).
    pub local_address: Ipv4Addr,
}

/// A message from the control plane to every worker.
#[derive(Debug, Clone)]
pub enum Update {
    /// An SA pair, by its inbound SPI.
    SaUp {
        /// Our inbound SPI.
        spi: u32,
        /// The keys and state.
        sa: Arc<SharedSa>,
        /// Where its packets go.
        path: SaPath,
    },
    /// The SA is gone.
    SaDown {
        /// Our inbound SPI.
        spi: u32,
    },
    /// The client moved (NAT mapping changed, RFC 3947 §5.2 / RFC 3948).
    SaMoved {
        /// Our inbound SPI.
        spi: u32,
        /// The client's new address and port.
        remote: SocketAddr,
    },
    /// How a client's packets leave now (`None`: the client is gone).
    Peer {
        /// The client.
        peer: PeerId,
        /// Its way out.
        out: Option<PeerOut>,
    },
    /// A session is up: forward its packets.
    RouteUp(Arc<Route>),
    /// A session has ended.
    RouteDown {
        /// The session.
        session: SessionRef,
        /// Its address.
        address: Ipv4Addr,
    },
    /// New settings.
    Config(WorkerConfig),
}

/// What [`Worker::esp_in`] made of an ESP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EspIn {
    /// Write `packet[range]` (an IPv4 packet) to the TUN device.
    Tun(Range<usize>),
    /// Authentic, and for the control plane: `packet[datagram]` is the client's UDP datagram
    /// (header included) to our port 1701.
    Control {
        /// The IPsec client.
        client: PeerId,
        /// The SA it came through.
        spi: u32,
        /// Where the datagram lies in the packet.
        datagram: Range<usize>,
    },
    /// For an SPI this worker does not know: the control plane may have a Quick Mode waiting
    /// for it.
    UnknownSpi(u32),
    /// Dropped (counted).
    Dropped,
}

/// What the control plane must hear from a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// The SA reached a limit (kilobyte lifetime, sequence numbers): delete it so that the
    /// client negotiates a new one.
    SaLimit {
        /// Our inbound SPI.
        spi: u32,
        /// Which limit.
        reason: &'static str,
    },
}

struct SaEntry {
    sa: Arc<SharedSa>,
    path: SaPath,
}

/// One data-plane worker's state: its tables, counters and scratch room.
pub struct Worker {
    config: WorkerConfig,
    sas: HashMap<u32, SaEntry>,
    peers: HashMap<PeerId, PeerOut>,
    /// Routes by (peer, our tunnel id, our session id): the way in.
    by_session: HashMap<SessionRef, Arc<Route>>,
    /// Routes by the client's address: the way out.
    by_address: HashMap<Ipv4Addr, Arc<Route>>,
    notes: VecDeque<Note>,
    icmp: [u8; icmp::MAX_LEN],
    stats: Stats,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("sas", &self.sas.len())
            .field("routes", &self.by_address.len())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker with empty tables.
    pub fn new(config: WorkerConfig) -> Self {
        Worker {
            config,
            sas: HashMap::new(),
            peers: HashMap::new(),
            by_session: HashMap::new(),
            by_address: HashMap::new(),
            notes: VecDeque::with_capacity(16),
            icmp: [0; icmp::MAX_LEN],
            stats: Stats::default(),
        }
    }

    /// Counters (this worker's share).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Routes (up sessions) known.
    pub fn route_count(&self) -> usize {
        self.by_address.len()
    }

    /// Applies a message of the control plane.
    pub fn update(&mut self, u: Update) {
        match u {
            Update::SaUp { spi, sa, path } => {
                self.sas.insert(spi, SaEntry { sa, path });
            }
            Update::SaDown { spi } => {
                self.sas.remove(&spi);
            }
            Update::SaMoved { spi, remote } => {
                if let Some(e) = self.sas.get_mut(&spi) {
                    e.path.remote = remote;
                }
            }
            Update::Peer { peer, out } => match out {
                Some(o) => {
                    self.peers.insert(peer, o);
                }
                None => {
                    self.peers.remove(&peer);
                }
            },
            Update::RouteUp(r) => {
                self.by_address.insert(r.address, r.clone());
                self.by_session.insert(r.session, r);
            }
            Update::RouteDown { session, address } => {
                self.by_session.remove(&session);
                if self
                    .by_address
                    .get(&address)
                    .is_some_and(|r| r.session == session)
                {
                    self.by_address.remove(&address);
                }
            }
            Update::Config(c) => self.config = c,
        }
    }

    /// What the control plane must hear, oldest first.
    pub fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    /// Whether this worker knows the SA with inbound `spi`.
    pub fn has_sa(&self, spi: u32) -> bool {
        self.sas.contains_key(&spi)
    }

    fn check_limits(&mut self, spi: u32, sa: &SharedSa) {
        if let Some(reason) = sa.limit_reached()
            && !sa.limit_noted.swap(true, Relaxed)
        {
            self.notes.push_back(Note::SaLimit { spi, reason });
        }
    }

    // ---- the way in -------------------------------------------------------------------------

    /// An ESP packet (from UDP 4500 after the non-ESP-marker check, or from a raw socket after
    /// its IP header) from `from`, decrypted in place.
    pub fn esp_in(&mut self, now: Instant, packet: &mut [u8], from: SocketAddr) -> EspIn {
        let Some(spi) = esp::peek_spi(packet) else {
            dropped!(self.stats.esp_malformed, %from, len = packet.len(), "ESP packet too short for an SPI; dropped");
            return EspIn::Dropped;
        };
        let Some(entry) = self.sas.get(&spi) else {
            return EspIn::UnknownSpi(spi);
        };
        let sa = entry.sa.clone();
        let d = match sa.inbound.decrypt(packet) {
            Ok(d) => d,
            Err(esp::EspError::Replay) => {
                dropped!(self.stats.esp_replayed, %from, spi = format_args!("{spi:08x}"), "ESP packet replayed or older than the replay window; dropped");
                return EspIn::Dropped;
            }
            Err(e) => {
                dropped!(self.stats.esp_auth_failed, %from, spi = format_args!("{spi:08x}"), error = %e, "ESP packet rejected");
                return EspIn::Dropped;
            }
        };
        self.stats.esp_decrypted += 1;
        if !sa.first_logged.load(Relaxed) && !sa.first_logged.swap(true, Relaxed) {
            let inner = packet.get(d.payload.clone()).unwrap_or(&[]);
            info!(
                %from,
                spi = format_args!("{spi:08x}"),
                seq = d.seq,
                "ESP decrypted (first packet of the SA): {}",
                describe_inner(d.next_header, inner)
            );
        }
        if sa.inbound.packets() % LIMIT_CHECK_EVERY == 0 {
            self.check_limits(spi, &sa);
        }
        if d.next_header != 17 {
            dropped!(
                self.stats.esp_not_l2tp,
                spi = format_args!("{spi:08x}"),
                next_header = d.next_header,
                "decrypted packet is not UDP; dropped"
            );
            return EspIn::Dropped;
        }
        let control = EspIn::Control {
            client: sa.client,
            spi,
            datagram: d.payload.clone(),
        };
        // Transport mode: the client's UDP datagram to our port 1701 (RFC 3193 §4).
        let Some((sport, dport, body)) = packet.get(d.payload.clone()).and_then(split_udp) else {
            return control;
        };
        if dport != L2TP_PORT {
            return control;
        }
        let Ok(h) = wire::Header::decode(body) else {
            return control;
        };
        if h.control {
            return control;
        }
        let key = SessionRef {
            peer: sa.client,
            tunnel: h.tunnel,
            session: h.session,
        };
        let Some(route) = self.by_session.get(&key) else {
            return control;
        };
        let Some(frame) = body.get(h.payload.clone()) else {
            return control;
        };
        let Ok((pppd_lite::frame::protocol::IPV4, ip)) = pppd_lite::frame::parse(frame) else {
            return control;
        };
        if !route.seq.on_data(h.seq) {
            self.stats.l2tp_data_stale += 1;
            return EspIn::Dropped;
        }
        if ip.get(12..16) != Some(&route.address.octets()[..])
            || ip.first().is_none_or(|v| v >> 4 != 4)
        {
            dropped!(
                self.stats.spoofed,
                peer = sa.client,
                "IP packet whose source is not the session's address; dropped"
            );
            return EspIn::Dropped;
        }
        if route.port.load(Relaxed) != sport {
            route.port.store(sport, Relaxed);
        }
        route.counters.count_in(now, ip.len());
        let start = offset_in(packet, ip);
        let range = start..start + ip.len();
        self.finish_inbound(packet, range)
    }

    /// The last step in: MSS clamping, counting.
    pub(crate) fn finish_inbound(&mut self, buf: &mut [u8], range: Range<usize>) -> EspIn {
        let Some(packet) = buf.get_mut(range.clone()) else {
            return EspIn::Dropped;
        };
        if self.config.mss_clamp && mss::clamp_ipv4(packet, mss::mss_for_mtu(self.config.mtu)) {
            self.stats.mss_clamped += 1;
        }
        self.stats.to_tun += 1;
        EspIn::Tun(range)
    }

    // ---- the way out ------------------------------------------------------------------------

    /// A packet read from the TUN device into `buf[HEADROOM..HEADROOM + len]` (`buf` has at
    /// least [`TAILROOM`](super::TAILROOM) bytes after it). Seals it in place for its client.
    pub fn tun_in(&mut self, now: Instant, buf: &mut [u8], len: usize) -> FromTun<'_> {
        let range = HEADROOM..HEADROOM + len;
        let Some(packet) = buf.get_mut(range.clone()) else {
            return FromTun::Dropped;
        };
        if packet.first().is_none_or(|v| v >> 4 != 4) {
            dropped!(
                self.stats.tun_not_ipv4,
                "packet from the TUN device is not IPv4; dropped"
            );
            return FromTun::Dropped;
        }
        let Some(route) = packet
            .get(16..20)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            .and_then(|d| self.by_address.get(&d))
        else {
            dropped!(
                self.stats.tun_no_session,
                "packet from the TUN device for an address with no session; dropped"
            );
            return FromTun::Dropped;
        };
        let dont_fragment = packet.get(6).is_some_and(|f| f & 0x40 != 0);
        if dont_fragment && packet.len() > usize::from(route.mtu) {
            let from = self.config.local_address;
            return match icmp::frag_needed(packet, route.mtu, from, &mut self.icmp) {
                Some(n) => {
                    self.stats.icmp_frag_needed += 1;
                    FromTun::Icmp(self.icmp.get(..n).unwrap_or(&[]))
                }
                None => FromTun::Dropped,
            };
        }
        if self.config.mss_clamp && mss::clamp_ipv4(packet, mss::mss_for_mtu(self.config.mtu)) {
            self.stats.mss_clamped += 1;
        }
        let Some(&out) = self.peers.get(&route.session.peer) else {
            self.stats.tun_no_session += 1;
            return FromTun::Dropped;
        };
        route.counters.count_out(now, len);
        let port = route.port.load(Relaxed);
        // L2TP data header (RFC 2661 §3.1) and PPP's FF 03 00 21, in front of the packet.
        let (l2tp, l2tp_len) =
            wire::data_header(route.peer_tunnel, route.peer_session, route.seq.next());
        let head_len = l2tp_len + pppd_lite::IPV4_HEADER.len();
        let l2tp_start = HEADROOM - head_len;
        let Some(head) = buf.get_mut(l2tp_start..HEADROOM) else {
            return FromTun::Dropped;
        };
        let (h, p) = head.split_at_mut(l2tp_len);
        h.copy_from_slice(l2tp.get(..l2tp_len).unwrap_or(&[]));
        p.copy_from_slice(&pppd_lite::IPV4_HEADER);
        let spi = match out {
            PeerOut::Sa(spi) => spi,
            PeerOut::Plain(addr) => {
                // A plain-mode peer (test only): the caller sends L2TP in clear.
                self.stats.from_tun += 1;
                return FromTun::Send(Transmit {
                    via: Via::PlainL2tp {
                        remote: SocketAddr::new(addr.ip(), port),
                    },
                    range: l2tp_start..range.end,
                });
            }
        };
        let udp_start = l2tp_start - 8;
        if let Some(udp) = buf.get_mut(udp_start..l2tp_start) {
            write_udp_header(udp, port, 8 + head_len + len);
        }
        match self.seal(spi, buf, udp_start..range.end) {
            Some(t) => {
                self.stats.from_tun += 1;
                FromTun::Send(t)
            }
            None => FromTun::Dropped,
        }
    }

    /// Encrypts `buf[datagram]` (a UDP datagram) with `spi`'s outbound SA, in place. Over IPv6
    /// its checksum is filled in first.
    pub fn seal(&mut self, spi: u32, buf: &mut [u8], datagram: Range<usize>) -> Option<Transmit> {
        let entry = self.sas.get(&spi)?;
        let (sa, path) = (entry.sa.clone(), entry.path);
        // Transport mode: the datagram's pseudo-header has the outer packet's addresses, ours and
        // the client's. IPv6 forbids a zero UDP checksum (RFC 8200 §8.1); IPv4 keeps none.
        if let (IpAddr::V6(ours), IpAddr::V6(theirs)) = (path.local.ip(), path.remote.ip()) {
            set_udp6_checksum(buf.get_mut(datagram.clone())?, ours, theirs);
        }
        let range = match sa.outbound.encrypt(buf, datagram, 17) {
            Ok(r) => r,
            Err(e) => {
                dropped!(self.stats.seal_failed, spi = format_args!("{spi:08x}"), error = %e, "ESP encryption failed");
                return None;
            }
        };
        if sa.outbound.packets() % LIMIT_CHECK_EVERY == 0 {
            self.check_limits(spi, &sa);
        }
        let via = if path.udp_encap {
            Via::Udp {
                local: path.local,
                remote: path.remote,
            }
        } else {
            Via::RawEsp {
                local: path.local.ip(),
                remote: path.remote.ip(),
            }
        };
        Some(Transmit { via, range })
    }

    /// Seals `buf[datagram]` for `peer`'s newest SA, or frames it for a plain-mode peer.
    pub fn seal_for(
        &mut self,
        peer: PeerId,
        buf: &mut [u8],
        datagram: Range<usize>,
    ) -> Option<Transmit> {
        match *self.peers.get(&peer)? {
            PeerOut::Sa(spi) => self.seal(spi, buf, datagram),
            PeerOut::Plain(_) => None,
        }
    }
}

/// Where `inner` lies within `outer` (`inner` must be a subslice of it).
pub(crate) fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::dataplane::TAILROOM;
    use crate::esp::{Encryption, Integrity, Suite};
    use crate::l2tp::DataSeq;
    use crate::session::Counters;
    use std::sync::atomic::AtomicU16;

    const SPI_IN: u32 = 0x1000_0001;
    const SPI_OUT: u32 = 0x2000_0002;
    const GCM: Suite = Suite {
        encryption: Encryption::AesGcm16 { key_len: 16 },
        integrity: Integrity::None,
    };
    const ME: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
    const LAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    fn keymat(b: u8) -> Vec<u8> {
        vec![b; GCM.keymat_len()]
    }

    fn session() -> SessionRef {
        SessionRef {
            peer: 1,
            tunnel: 5,
            session: 7,
        }
    }

    /// A worker with one client (peer 1) and its session up; and the client's two SAs.
    fn world() -> (Worker, OutboundSa, InboundSa) {
        let ours = SharedSa::new(
            InboundSa::new(SPI_IN, GCM, &keymat(1)).unwrap(),
            OutboundSa::new(SPI_OUT, GCM, &keymat(2)).unwrap(),
            1,
            None,
        );
        let mut w = Worker::new(WorkerConfig {
            mss_clamp: true,
            mtu: 1400,
            local_address: Ipv4Addr::new(10, 77, 0, 1),
        });
        w.update(Update::SaUp {
            spi: SPI_IN,
            sa: Arc::new(ours),
            path: SaPath {
                local: "203.0.113.2:4500".parse().unwrap(),
                remote: "203.0.113.3:4500".parse().unwrap(),
                udp_encap: true,
            },
        });
        w.update(Update::Peer {
            peer: 1,
            out: Some(PeerOut::Sa(SPI_IN)),
        });
        w.update(Update::RouteUp(Arc::new(Route {
            session: session(),
            address: ME,
            mtu: 1400,
            peer_tunnel: 50,
            peer_session: 70,
            port: AtomicU16::new(1701),
            seq: Arc::new(DataSeq::default()),
            counters: Arc::new(Counters::new(Instant::now())),
        })));
        (
            w,
            OutboundSa::new(SPI_IN, GCM, &keymat(1)).unwrap(),
            InboundSa::new(SPI_OUT, GCM, &keymat(2)).unwrap(),
        )
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        p
    }

    /// What the client sends: UDP 1701 → 1701, an L2TP data header for our tunnel 5 session 7,
    /// a PPP frame of `protocol` with `info`, sealed with the client's SA.
    fn from_client(sa: &OutboundSa, protocol: [u8; 2], info: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 8];
        d[0..2].copy_from_slice(&1701u16.to_be_bytes());
        d[2..4].copy_from_slice(&1701u16.to_be_bytes());
        d.extend_from_slice(&[0x00, 0x02, 0, 5, 0, 7, 0xff, 0x03]);
        d.extend_from_slice(&protocol);
        d.extend_from_slice(info);
        let len = d.len() as u16;
        d[4..6].copy_from_slice(&len.to_be_bytes());
        let mut buf = vec![0u8; HEADROOM + d.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + d.len()].copy_from_slice(&d);
        let r = sa
            .encrypt(&mut buf, HEADROOM..HEADROOM + d.len(), 17)
            .unwrap();
        buf[r].to_vec()
    }

    #[test]
    fn ip_of_a_routed_session_is_forwarded_and_the_rest_goes_to_control() {
        let (mut w, client_out, client_in) = world();
        let now = Instant::now();
        let from: SocketAddr = "203.0.113.3:4500".parse().unwrap();
        // IPv4 from the session's own address: to the TUN device, byte for byte.
        let ip = ipv4(ME, LAN, 100);
        let mut p = from_client(&client_out, [0x00, 0x21], &ip);
        match w.esp_in(now, &mut p, from) {
            EspIn::Tun(r) => assert_eq!(&p[r], &ip[..]),
            other => panic!("{other:?}"),
        }
        // LCP: authentic, for the control plane, the whole UDP datagram.
        let mut p = from_client(&client_out, [0xc0, 0x21], &[9, 1, 0, 8, 0, 0, 0, 0]);
        match w.esp_in(now, &mut p, from) {
            EspIn::Control {
                client: 1,
                spi: SPI_IN,
                datagram,
            } => assert_eq!(p[datagram.start + 8..][..4], [0x00, 0x02, 0, 5]),
            other => panic!("{other:?}"),
        }
        // Another source address: dropped and counted.
        let mut p = from_client(&client_out, [0x00, 0x21], &ipv4(LAN, LAN, 60));
        assert_eq!(w.esp_in(now, &mut p, from), EspIn::Dropped);
        assert_eq!(w.stats().spoofed, 1);
        // A replay: dropped.
        let mut again = from_client(&client_out, [0x00, 0x21], &ip);
        let copy = again.clone();
        assert!(matches!(w.esp_in(now, &mut again, from), EspIn::Tun(_)));
        assert_eq!(w.esp_in(now, &mut copy.clone(), from), EspIn::Dropped);
        assert_eq!(w.stats().esp_replayed, 1);
        // An SPI the worker does not know.
        let mut p = copy;
        p[0..4].copy_from_slice(&0x0bad_0badu32.to_be_bytes());
        assert_eq!(w.esp_in(now, &mut p, from), EspIn::UnknownSpi(0x0bad_0bad));

        // The way out: sealed for the client, with the peer's tunnel and session ids.
        let down = ipv4(LAN, ME, 200);
        let mut buf = vec![0u8; HEADROOM + down.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + down.len()].copy_from_slice(&down);
        let (via, range) = match w.tun_in(now, &mut buf, down.len()) {
            FromTun::Send(Transmit { via, range }) => (via, range),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            via,
            Via::Udp {
                local: "203.0.113.2:4500".parse().unwrap(),
                remote: from
            }
        );
        let mut esp = buf[range].to_vec();
        let d = client_in.decrypt(&mut esp).unwrap();
        let plain = &esp[d.payload];
        assert_eq!(&plain[8..14], &[0x00, 0x02, 0, 50, 0, 70]);
        assert_eq!(&plain[14..18], &pppd_lite::IPV4_HEADER);
        assert_eq!(&plain[18..], &down[..]);

        // The session ends: nothing more goes out to its address.
        w.update(Update::RouteDown {
            session: session(),
            address: ME,
        });
        buf[HEADROOM..HEADROOM + down.len()].copy_from_slice(&down);
        assert!(matches!(
            w.tun_in(now, &mut buf, down.len()),
            FromTun::Dropped
        ));
        assert_eq!(w.stats().tun_no_session, 1);
    }

    #[test]
    fn an_sa_at_its_kilobyte_lifetime_is_noted_once() {
        let sa = Arc::new(SharedSa::new(
            InboundSa::new(SPI_IN, GCM, &keymat(1)).unwrap(),
            OutboundSa::new(SPI_OUT, GCM, &keymat(2)).unwrap(),
            1,
            Some(1),
        ));
        let (mut w, _, _) = world();
        w.update(Update::SaUp {
            spi: SPI_IN,
            sa,
            path: SaPath {
                local: "203.0.113.2:4500".parse().unwrap(),
                remote: "203.0.113.3:4500".parse().unwrap(),
                udp_encap: true,
            },
        });
        let down = ipv4(LAN, ME, 1000);
        let mut buf = vec![0u8; HEADROOM + down.len() + TAILROOM];
        for _ in 0..2 * LIMIT_CHECK_EVERY {
            buf[HEADROOM..HEADROOM + down.len()].copy_from_slice(&down);
            assert!(matches!(
                w.tun_in(Instant::now(), &mut buf, down.len()),
                FromTun::Send(_)
            ));
        }
        assert_eq!(
            w.poll_note(),
            Some(Note::SaLimit {
                spi: SPI_IN,
                reason: "kilobyte lifetime reached"
            })
        );
        assert_eq!(w.poll_note(), None, "noted once");
    }

    #[test]
    fn two_threads_on_one_sa_never_reuse_a_number_and_accept_each_packet_once() {
        let out = Arc::new(OutboundSa::new(SPI_IN, GCM, &keymat(1)).unwrap());
        let sealed: Vec<Vec<u8>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let out = out.clone();
                    s.spawn(move || {
                        (0..500)
                            .map(|_| {
                                let mut b = vec![0u8; HEADROOM + 100 + TAILROOM];
                                let r = out.encrypt(&mut b, HEADROOM..HEADROOM + 100, 17).unwrap();
                                b[r].to_vec()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut seqs: Vec<u32> = sealed
            .iter()
            .map(|p| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=1000).collect::<Vec<u32>>(), "every number once");
        // Both threads get every packet: each is accepted exactly once between them.
        let inb = InboundSa::new(SPI_IN, GCM, &keymat(1)).unwrap();
        let accepted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (inb, sealed) = (&inb, &sealed);
                    s.spawn(move || {
                        sealed
                            .iter()
                            .filter(|p| inb.decrypt(&mut p.to_vec()).is_ok())
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(accepted, 1000);
        assert_eq!(inb.packets(), 1000);
    }
}
