//! An IPsec client for tests: the [`Initiator`] plus the ESP SAs it negotiates, sealing and
//! opening L2TP-over-UDP in transport mode (RFC 4303; RFC 3948 UDP encapsulation on port 4500).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use roadgate::esp::{self, EspError, InboundSa, OutboundSa, Udp4500};
use roadgate::ike::Transmit;

use crate::initiator::{ChildInfo, Deleted, Initiator, InitiatorConfig, InitiatorEvent};

/// IP protocol number of UDP: the next header of transport-mode L2TP.
pub const IPPROTO_UDP: u8 = 17;
pub const L2TP_PORT: u16 = 1701;

/// A UDP header (1701 → 1701, checksum 0: RFC 3948 §3.1.2 lets the receiver skip it in transport
/// mode, and the inner checksum is covered by ESP integrity; over IPv6 [`set_udp6_checksum`]
/// fills it in) and `payload`.
pub fn udp_l2tp(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 8).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(&L2TP_PORT.to_be_bytes());
    v.extend_from_slice(&L2TP_PORT.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// The RFC 1071 sum (roadgate's ICMP `checksum`, independent of its UDP code) over the IPv6
/// pseudo-header of RFC 8200 §8.1 and `seg` as it is: 0 when `seg` carries a right checksum.
pub fn udp6_verify(seg: &[u8], a: Ipv6Addr, b: Ipv6Addr) -> u16 {
    let mut v = Vec::with_capacity(40 + seg.len());
    v.extend_from_slice(&a.octets());
    v.extend_from_slice(&b.octets());
    v.extend_from_slice(&u32::try_from(seg.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, IPPROTO_UDP]);
    v.extend_from_slice(seg);
    roadgate::dataplane::icmp::checksum(&v)
}

/// Fills in the checksum of the UDP segment `seg` sent over IPv6 between `a` and `b`.
pub fn set_udp6_checksum(seg: &mut [u8], a: Ipv6Addr, b: Ipv6Addr) {
    if seg.len() < 8 {
        return;
    }
    seg[6..8].copy_from_slice(&[0, 0]);
    let c = match udp6_verify(seg, a, b) {
        0 => 0xffff,
        c => c,
    };
    seg[6..8].copy_from_slice(&c.to_be_bytes());
}

/// The payload of a UDP segment, checking its length field. Returns (source port, destination
/// port, payload).
pub fn parse_udp(seg: &[u8]) -> Option<(u16, u16, &[u8])> {
    let h = seg.get(..8)?;
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if len < 8 || len > seg.len() {
        return None;
    }
    Some((
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
        &seg[8..len],
    ))
}

/// Seals `inner` (a transport-mode payload with its next header) with `sa`.
pub fn esp_seal(sa: &mut OutboundSa, inner: &[u8], next_header: u8) -> Result<Vec<u8>, EspError> {
    let suite = sa.suite();
    let head = suite.header_len();
    let mut buf = vec![0u8; head + inner.len() + suite.max_trailer_len()];
    buf[head..head + inner.len()].copy_from_slice(inner);
    let r = sa.encrypt(&mut buf, head..head + inner.len(), next_header)?;
    Ok(buf[r].to_vec())
}

/// Opens an ESP packet (starting at the SPI). Returns (sequence number, next header, payload).
pub fn esp_open(sa: &mut InboundSa, packet: &[u8]) -> Result<(u32, u8, Vec<u8>), EspError> {
    let mut buf = packet.to_vec();
    let d = sa.decrypt(&mut buf)?;
    Ok((d.seq, d.next_header, buf[d.payload].to_vec()))
}

/// An ESP packet to send: in UDP from `local` to `remote` (port 4500) when `udp_encap`, else raw
/// IP protocol 50 between the addresses' IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspDatagram {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub udp_encap: bool,
    /// The ESP packet, from the SPI on.
    pub data: Vec<u8>,
}

/// What a datagram turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// IKE, handed to the initiator.
    Ike,
    Keepalive,
    /// Transport-mode L2TP (UDP to 1701) on the SA with this inbound SPI.
    L2tp {
        spi: u32,
        seq: u32,
        payload: Vec<u8>,
    },
    /// Some other authentic ESP payload.
    Other {
        spi: u32,
        next_header: u8,
        payload: Vec<u8>,
    },
    /// An ESP packet for no SA of ours.
    UnknownSpi(u32),
    /// Transport-mode UDP over IPv6 with a zero or wrong checksum (RFC 8200 §8.1).
    BadUdpChecksum {
        spi: u32,
        checksum: u16,
    },
    EspError {
        spi: u32,
        error: EspError,
    },
    Malformed,
}

struct ClientSa {
    info: ChildInfo,
    out: OutboundSa,
    inb: InboundSa,
}

/// The test client: initiator plus ESP.
pub struct IpsecClient {
    init: Initiator,
    sas: Vec<ClientSa>,
}

impl fmt::Debug for IpsecClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpsecClient")
            .field("initiator", &self.init)
            .field(
                "sas",
                &self
                    .sas
                    .iter()
                    .map(|s| s.info.inbound_spi)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl IpsecClient {
    pub fn new(cfg: InitiatorConfig) -> Self {
        Self {
            init: Initiator::new(cfg),
            sas: Vec::new(),
        }
    }

    pub fn initiator(&self) -> &Initiator {
        &self.init
    }

    pub fn initiator_mut(&mut self) -> &mut Initiator {
        &mut self.init
    }

    pub fn start(&mut self, now: Instant) {
        self.init.start(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.init.poll_transmit()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.init.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.init.handle_timeout(now);
    }

    /// The initiator's next event, after installing or removing the ESP SAs it announces.
    pub fn poll_event(&mut self) -> Option<InitiatorEvent> {
        let ev = self.init.poll_event()?;
        match &ev {
            InitiatorEvent::ChildSaUp(info) => {
                let out = OutboundSa::new(info.outbound_spi, info.suite, &info.outbound_keymat);
                let inb = InboundSa::new(info.inbound_spi, info.suite, &info.inbound_keymat);
                match (out, inb) {
                    (Ok(out), Ok(inb)) => self.sas.push(ClientSa {
                        info: (**info).clone(),
                        out,
                        inb,
                    }),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "client could not install the ESP SA");
                    }
                }
            }
            InitiatorEvent::Deleted(Deleted::Child { inbound_spi, .. }) => {
                self.sas.retain(|s| s.info.inbound_spi != *inbound_spi);
            }
            _ => {}
        }
        Some(ev)
    }

    /// The installed SAs (newest last).
    pub fn children(&self) -> Vec<&ChildInfo> {
        self.sas.iter().map(|s| &s.info).collect()
    }

    /// Seals an L2TP payload with the newest SA.
    pub fn seal_l2tp(&mut self, payload: &[u8]) -> Option<EspDatagram> {
        let spi = self.sas.last()?.info.inbound_spi;
        self.seal_l2tp_on(spi, payload)
    }

    /// Seals an L2TP payload with the SA of this inbound SPI.
    pub fn seal_l2tp_on(&mut self, inbound_spi: u32, payload: &[u8]) -> Option<EspDatagram> {
        let sa = self
            .sas
            .iter_mut()
            .find(|s| s.info.inbound_spi == inbound_spi)?;
        let mut seg = udp_l2tp(payload);
        if let (IpAddr::V6(a), IpAddr::V6(b)) = (sa.info.local.ip(), sa.info.remote.ip()) {
            set_udp6_checksum(&mut seg, a, b);
        }
        let data = esp_seal(&mut sa.out, &seg, IPPROTO_UDP).ok()?;
        Some(EspDatagram {
            local: sa.info.local,
            remote: sa.info.remote,
            udp_encap: sa.info.udp_encap,
            data,
        })
    }

    /// A UDP datagram received on `local` from `remote` (port 500 or 4500, with the marker as on
    /// the wire).
    pub fn handle_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Received {
        let (natt, local_natt) = (
            self.init.config().natt_port,
            self.init.config().local_natt_port(),
        );
        if local.port() != local_natt && remote.port() != natt {
            self.init.handle_datagram(now, local, remote, data);
            return Received::Ike;
        }
        match esp::classify_udp4500(data) {
            Udp4500::Keepalive => Received::Keepalive,
            Udp4500::Ike(ike) => {
                self.init.handle_datagram(now, local, remote, ike);
                Received::Ike
            }
            Udp4500::Esp(p) => self.open(p),
            Udp4500::Malformed => Received::Malformed,
        }
    }

    /// Opens an ESP packet (from the SPI on).
    pub fn open(&mut self, packet: &[u8]) -> Received {
        let Some(spi) = esp::peek_spi(packet) else {
            return Received::Malformed;
        };
        let Some(sa) = self.sas.iter_mut().find(|s| s.info.inbound_spi == spi) else {
            return Received::UnknownSpi(spi);
        };
        let v6 = match (sa.info.local.ip(), sa.info.remote.ip()) {
            (IpAddr::V6(a), IpAddr::V6(b)) => Some((a, b)),
            _ => None,
        };
        match esp_open(&mut sa.inb, packet) {
            Ok((_, IPPROTO_UDP, seg))
                if v6.is_some_and(|(a, b)| {
                    seg.len() < 8 || seg[6..8] == [0, 0] || udp6_verify(&seg, a, b) != 0
                }) =>
            {
                Received::BadUdpChecksum {
                    spi,
                    checksum: seg
                        .get(6..8)
                        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]])),
                }
            }
            Ok((seq, IPPROTO_UDP, seg)) => match parse_udp(&seg) {
                Some((_, L2TP_PORT, p)) => Received::L2tp {
                    spi,
                    seq,
                    payload: p.to_vec(),
                },
                _ => Received::Other {
                    spi,
                    next_header: IPPROTO_UDP,
                    payload: seg,
                },
            },
            Ok((_, next_header, payload)) => Received::Other {
                spi,
                next_header,
                payload,
            },
            Err(error) => Received::EspError { spi, error },
        }
    }
}
