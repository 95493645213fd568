//! The listening layer: for every address the server listens on, UDP on the IKE and NAT-T ports,
//! a raw ESP socket (IP protocol 50) when the process may open one, and the cleartext L2TP port
//! when asked; IPv4 and IPv6 alike.
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `::`) learns the address each datagram came
//! to (IP_PKTINFO, IPV6_RECVPKTINFO; a raw IPv4 socket reads it from the IP header it hands over)
//! and sends from the local address it is given (IP_PKTINFO / IPV6_PKTINFO on `sendmsg`), so that
//! a multi-homed server answers from the address each client talks to: IKE replies, ESP and NAT
//! keepalives alike. A socket bound to one address receives and sends on that address only.
//! IPv6 sockets are IPv6-only (IPV6_V6ONLY), so that `::` and `0.0.0.0` are bound side by side.
//! Every socket lets the kernel fragment the outer packets (IP_PMTUDISC_DONT, IPV6_PMTUDISC_DONT).
//!
//! Receiving and sending allocate nothing: each socket keeps its control-message buffers.

#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll};

use nix::cmsg_space;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmsg,
    sendmmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::Listen;

/// IP protocol number of ESP (RFC 4303).
const IPPROTO_ESP: i32 = 50;

/// What a socket carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// IKE on the IKE port (500).
    Ike,
    /// The NAT-T port (4500): IKE behind the non-ESP marker, ESP in UDP, keepalives.
    Natt,
    /// ESP as IP protocol 50.
    RawEsp,
    /// Cleartext L2TP (1701), watched and dropped unless the test-only plain mode is on.
    L2tp,
}

/// A datagram taken from a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where its payload lies in the buffer given (after the IP header a raw IPv4 socket hands
    /// over).
    pub range: Range<usize>,
    /// Who sent it (port 0 for raw ESP).
    pub remote: SocketAddr,
    /// The address it came to, with the socket's port (0 for raw ESP).
    pub local: SocketAddr,
}

/// The OS socket under a [`DgramSocket`].
enum Io {
    Udp(UdpSocket),
    Raw(AsyncFd<Socket>),
}

/// nix's preallocated message header for `sendmmsg`, used for one message at a time: the
/// control-message buffer is allocated once per socket, not per datagram (nix's `sendmsg`
/// allocates one on every call).
#[derive(Debug)]
struct SendHeader(MultiHeaders<SockaddrStorage>);

// SAFETY: `MultiHeaders` is not `Send` only because it holds raw pointers: into its own heap
// buffers (the control-message buffer and the address slots, which move with it and are reached
// through `&mut self` only), and, after a call, stale pointers to the caller's data and address,
// which `sendmmsg` overwrites before every use and nothing else reads. No pointer refers to
// anything another thread could touch, so moving the header to another thread is sound.
unsafe impl Send for SendHeader {}

/// One datagram socket (UDP or raw ESP) that knows the local address of what it receives and
/// sends from a given local address.
pub struct DgramSocket {
    io: Io,
    /// The address bound (port 0 for raw ESP).
    bound: SocketAddr,
    /// Bound to a wildcard address: local addresses come with each datagram and go with each send.
    wildcard: bool,
    /// Room for one IP_PKTINFO / IPV6_PKTINFO control message on receive.
    recv_cmsg: Vec<u8>,
    /// The header that sends with a source address (wildcard sockets only).
    send_hdr: Option<SendHeader>,
}

impl std::fmt::Debug for DgramSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DgramSocket")
            .field("bound", &self.bound)
            .field("raw", &matches!(self.io, Io::Raw(_)))
            .field("wildcard", &self.wildcard)
            .finish_non_exhaustive()
    }
}

/// The control-message buffer that holds one packet-info message of `addr`'s family.
fn pktinfo_space(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(_) => cmsg_space!(libc::in_pktinfo),
        IpAddr::V6(_) => cmsg_space!(libc::in6_pktinfo),
    }
}

/// Lets the kernel fragment our outer packets instead of refusing them (IP_PMTUDISC_DONT): a
/// full-size ESP packet must still reach a client whose path has a smaller MTU, and clients and
/// their NATs reassemble (the inner MSS is clamped, so this is rare).
fn allow_fragmentation(fd: BorrowedFd<'_>, v6: bool) -> io::Result<()> {
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
    };
    // SAFETY: `fd` is an open socket for the duration of the call (a borrowed descriptor), and
    // the option value is a c_int on the stack whose size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for the destination address of each datagram (wildcard sockets).
fn want_pktinfo(fd: BorrowedFd<'_>, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
    } else {
        a.as_sockaddr_in6()
            .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
    }
}

/// What one `recvmsg` gave: length, sender, the destination address from packet info.
type Received = (usize, Option<SocketAddr>, Option<IpAddr>);

fn recv_with_pktinfo(fd: RawFd, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut dst = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(pi) => {
                    dst = Some(IpAddr::V4(Ipv4Addr::from(pi.ipi_addr.s_addr.to_ne_bytes())));
                }
                ControlMessageOwned::Ipv6PacketInfo(pi) => {
                    dst = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
        }
    }
    Ok((
        msg.bytes,
        msg.address.as_ref().and_then(to_socket_addr),
        dst,
    ))
}

/// Sends `data` to `to` from the local address `from` (IP_PKTINFO / IPV6_PKTINFO), through the
/// preallocated header.
fn send_from(
    fd: RawFd,
    hdr: &mut SendHeader,
    data: &[u8],
    from: IpAddr,
    to: SocketAddr,
) -> io::Result<()> {
    let iov = [IoSlice::new(data)];
    let addrs = [Some(SockaddrStorage::from(to))];
    match from {
        IpAddr::V4(src) => {
            let pi = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(src.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let cmsgs = [ControlMessage::Ipv4PacketInfo(&pi)];
            sendmmsg(fd, &mut hdr.0, [&iov], addrs, cmsgs, MsgFlags::empty())?;
        }
        IpAddr::V6(src) => {
            let pi = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: 0,
            };
            let cmsgs = [ControlMessage::Ipv6PacketInfo(&pi)];
            sendmmsg(fd, &mut hdr.0, [&iov], addrs, cmsgs, MsgFlags::empty())?;
        }
    }
    Ok(())
}

impl DgramSocket {
    /// A UDP socket bound to `addr` (IPv6: IPv6-only).
    pub fn udp(addr: SocketAddr) -> io::Result<Self> {
        let v6 = addr.is_ipv6();
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        if v6 {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)?;
        allow_fragmentation(s.as_fd(), v6)?;
        let wildcard = addr.ip().is_unspecified();
        if wildcard {
            want_pktinfo(s.as_fd(), v6)?;
        }
        s.bind(&addr.into())?;
        let bound = s
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound to no IP address"))?;
        Ok(Self {
            io: Io::Udp(UdpSocket::from_std(s.into())?),
            bound,
            wildcard,
            recv_cmsg: pktinfo_space(addr.ip()),
            send_hdr: wildcard
                .then(|| SendHeader(MultiHeaders::preallocate(1, Some(pktinfo_space(addr.ip()))))),
        })
    }

    /// A raw IP socket for protocol 50 (ESP) bound to `addr` (needs CAP_NET_RAW). An IPv4 one
    /// hands over the IP header with each packet, an IPv6 one does not.
    pub fn raw_esp(addr: IpAddr) -> io::Result<Self> {
        let v6 = addr.is_ipv6();
        let sa = SocketAddr::new(addr, 0);
        let s = Socket::new(
            Domain::for_address(sa),
            Type::RAW,
            Some(Protocol::from(IPPROTO_ESP)),
        )?;
        s.set_nonblocking(true)?;
        allow_fragmentation(s.as_fd(), v6)?;
        let wildcard = addr.is_unspecified();
        // IPv4 reads the destination from the IP header; IPv6 needs packet info.
        if wildcard && v6 {
            want_pktinfo(s.as_fd(), v6)?;
        }
        s.bind(&sa.into())?;
        // SAFETY: `Socket` owns its file descriptor, keeps it open until it is dropped, and
        // `as_raw_fd` always returns that same descriptor; the AsyncFd owns the Socket.
        let fd = unsafe { AsyncFd::register(s) }.map_err(io::Error::from)?;
        Ok(Self {
            io: Io::Raw(fd),
            bound: sa,
            wildcard,
            recv_cmsg: pktinfo_space(addr),
            send_hdr: wildcard
                .then(|| SendHeader(MultiHeaders::preallocate(1, Some(pktinfo_space(addr))))),
        })
    }

    /// The address bound (the port the kernel chose, if 0 was asked for).
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }

    /// Whether this socket serves `local`: bound to it, or to the wildcard of its family.
    pub fn serves(&self, local: IpAddr) -> bool {
        self.bound.ip() == local || (self.wildcard && self.bound.is_ipv4() == local.is_ipv4())
    }

    /// Ready when a datagram may be waiting (then [`try_recv`](Self::try_recv)).
    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.io {
            Io::Udp(s) => s.poll_recv_ready(cx).map(|_| ()),
            Io::Raw(fd) => fd.poll_read_ready(cx).map(|_| ()),
        }
    }

    fn raw_fd(&self) -> RawFd {
        match &self.io {
            Io::Udp(s) => s.as_raw_fd(),
            Io::Raw(fd) => fd.get_ref().as_raw_fd(),
        }
    }

    /// The next datagram into `buf`, if one is waiting (`WouldBlock` otherwise, which makes the
    /// next [`poll_recv_ready`](Self::poll_recv_ready) wait).
    pub fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Datagram> {
        let fd = self.raw_fd();
        let cmsg = &mut self.recv_cmsg;
        let (n, remote, dst) = match &self.io {
            Io::Udp(s) => s.try_io(Interest::READABLE, || recv_with_pktinfo(fd, buf, cmsg))?,
            Io::Raw(a) => a.try_io(Interest::READABLE, |_| recv_with_pktinfo(fd, buf, cmsg))?,
        };
        let remote = remote.ok_or_else(|| io::Error::other("datagram without a sender"))?;
        let port = self.bound.port();
        if matches!(self.io, Io::Raw(_)) && self.bound.is_ipv4() {
            // The IPv4 header comes first: its source and destination are the addresses.
            let pkt = buf.get(..n).unwrap_or(&[]);
            let ihl = usize::from(pkt.first().map_or(0, |v| v & 0x0f)) * 4;
            let (Some(src), Some(dst)) = (pkt.get(12..16), pkt.get(16..20)) else {
                return Err(io::Error::other("short IPv4 packet"));
            };
            if pkt.first().is_none_or(|v| v >> 4 != 4) || ihl < 20 || ihl > n {
                return Err(io::Error::other("not an IPv4 packet"));
            }
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            return Ok(Datagram {
                range: ihl..n,
                remote: SocketAddr::new(ip(src), 0),
                local: SocketAddr::new(ip(dst), 0),
            });
        }
        let local = match dst {
            Some(ip) if self.wildcard => ip,
            _ => self.bound.ip(),
        };
        Ok(Datagram {
            range: 0..n,
            remote,
            local: SocketAddr::new(local, port),
        })
    }

    /// Sends `data` to `to` (port ignored for raw ESP) from the local address `from`: on a
    /// wildcard socket the kernel is told the source address, otherwise the bound one is used.
    pub async fn send(&mut self, data: &[u8], from: IpAddr, to: SocketAddr) -> io::Result<()> {
        let fd = self.raw_fd();
        let to = match self.io {
            Io::Raw(_) => SocketAddr::new(to.ip(), 0),
            Io::Udp(_) => to,
        };
        match (&self.io, self.send_hdr.as_mut()) {
            (io, Some(hdr)) if !from.is_unspecified() && from.is_ipv4() == to.is_ipv4() => {
                let mut f = || send_from(fd, hdr, data, from, to);
                match io {
                    Io::Udp(s) => s.async_io(Interest::WRITABLE, f).await,
                    Io::Raw(a) => a.async_io(Interest::WRITABLE, |_| f()).await,
                }
            }
            (Io::Udp(s), _) => s.send_to(data, to).await.map(|_| ()),
            (Io::Raw(a), _) => a
                .async_io(Interest::WRITABLE, |s| s.send_to(data, &to.into()))
                .await
                .map(|_| ()),
        }
    }
}

/// One socket of a [`Listeners`] set, with what it carries.
#[derive(Debug)]
pub struct Endpoint {
    pub kind: Kind,
    pub socket: DgramSocket,
}

/// Which socket of a [`Listeners`] set is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Its index ([`Listeners::get_mut`]).
    pub index: usize,
    pub kind: Kind,
}

/// Every socket the server listens on: per address, UDP on the IKE and NAT-T ports, raw ESP and
/// the cleartext L2TP port when asked for.
#[derive(Debug, Default)]
pub struct Listeners {
    endpoints: Vec<Endpoint>,
}

/// Whether this host has IPv6 at all (a kernel booted with `ipv6.disable=1` has not).
fn ipv6_available() -> bool {
    !matches!(
        Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
    )
}

/// `addrs` without repeats and without addresses a wildcard of their family in the list covers
/// (a raw socket bound to `0.0.0.0` already receives what one bound to `192.0.2.1` would, and
/// both would take every packet).
pub fn distinct_addrs(addrs: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let (mut keep, mut covered) = (Vec::new(), Vec::new());
    for &a in addrs {
        let wildcard_of_family = addrs
            .iter()
            .any(|w| w.is_unspecified() && w.is_ipv4() == a.is_ipv4());
        if keep.contains(&a) || covered.contains(&a) {
            continue;
        }
        if wildcard_of_family && !a.is_unspecified() {
            covered.push(a);
        } else {
            keep.push(a);
        }
    }
    (keep, covered)
}

impl Listeners {
    /// Binds every address of `addrs` with the ports and options of `listen` (`listen.addr` is
    /// not used). An address covered by a wildcard of its family in the list is served through
    /// the wildcard. A raw ESP socket that cannot be opened (no CAP_NET_RAW) is a warning, as is
    /// a cleartext L2TP port taken by another program (unless `plain_l2tp`); so is `::` on a
    /// host without IPv6, when other addresses are bound.
    pub fn bind(listen: &Listen, addrs: &[IpAddr]) -> io::Result<Self> {
        let (addrs, covered) = distinct_addrs(addrs);
        for a in &covered {
            info!(address = %a, "served through the wildcard address of its family");
        }
        let mut endpoints = Vec::new();
        for &addr in &addrs {
            if addr == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && addrs.len() > 1 && !ipv6_available() {
                warn!("IPv6 is not available on this host: not listening on ::");
                continue;
            }
            Self::bind_one(listen, addr, &mut endpoints)?;
        }
        if endpoints.is_empty() {
            return Err(io::Error::other("no address to listen on"));
        }
        Ok(Self { endpoints })
    }

    fn bind_one(listen: &Listen, addr: IpAddr, out: &mut Vec<Endpoint>) -> io::Result<()> {
        // The error names the socket: "UDP 192.0.2.1:500: Address already in use".
        let udp = |port| {
            let sa = SocketAddr::new(addr, port);
            DgramSocket::udp(sa).map_err(|e| io::Error::new(e.kind(), format!("UDP {sa}: {e}")))
        };
        let ike = udp(listen.ike_port)?;
        let natt = udp(listen.natt_port)?;
        let raw = if listen.raw_esp {
            match DgramSocket::raw_esp(addr) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(%addr, error = %e, "cannot open a raw ESP socket (needs CAP_NET_RAW): only UDP-encapsulated ESP will work");
                    None
                }
            }
        } else {
            None
        };
        let l2tp = match listen.l2tp_port {
            Some(port) => match udp(port) {
                Ok(s) => Some(s),
                Err(e) if listen.plain_l2tp => return Err(e),
                Err(e) => {
                    warn!(port, %addr, error = %e, "cannot watch UDP {port} for cleartext L2TP (is xl2tpd running?); continuing");
                    None
                }
            },
            None => None,
        };
        info!(
            ike = %ike.bound(),
            natt = %natt.bound(),
            raw_esp = raw.is_some(),
            "listening"
        );
        out.push(Endpoint {
            kind: Kind::Ike,
            socket: ike,
        });
        out.push(Endpoint {
            kind: Kind::Natt,
            socket: natt,
        });
        if let Some(socket) = raw {
            out.push(Endpoint {
                kind: Kind::RawEsp,
                socket,
            });
        }
        if let Some(socket) = l2tp {
            out.push(Endpoint {
                kind: Kind::L2tp,
                socket,
            });
        }
        Ok(())
    }

    /// The socket at `index` ([`Ready::index`]).
    pub fn get_mut(&mut self, index: usize) -> Option<&mut DgramSocket> {
        self.endpoints.get_mut(index).map(|e| &mut e.socket)
    }

    /// The socket of `kind` that serves the local address `local` (bound to it, or the wildcard
    /// of its family).
    pub fn for_local(&mut self, kind: Kind, local: IpAddr) -> Option<&mut DgramSocket> {
        // An exact binding wins over the wildcard.
        let i = self
            .endpoints
            .iter()
            .position(|e| e.kind == kind && e.socket.bound.ip() == local)
            .or_else(|| {
                self.endpoints
                    .iter()
                    .position(|e| e.kind == kind && e.socket.serves(local))
            })?;
        self.get_mut(i)
    }

    /// The first socket of `kind` for `remote`'s address family.
    pub fn for_family(&mut self, kind: Kind, remote: IpAddr) -> Option<&mut DgramSocket> {
        self.endpoints
            .iter_mut()
            .find(|e| e.kind == kind && e.socket.bound.is_ipv4() == remote.is_ipv4())
            .map(|e| &mut e.socket)
    }

    /// Whether any raw ESP socket is open.
    pub fn has_raw_esp(&self) -> bool {
        self.endpoints.iter().any(|e| e.kind == Kind::RawEsp)
    }

    /// A socket that may have a datagram waiting, looking first at the one `turn` names (so that
    /// a busy socket does not starve the others).
    pub fn poll_ready(&self, cx: &mut Context<'_>, turn: usize) -> Poll<Ready> {
        let n = self.endpoints.len();
        for i in 0..n {
            let index = (turn + i) % n;
            if let Some(e) = self.endpoints.get(index)
                && e.socket.poll_recv_ready(cx).is_ready()
            {
                return Poll::Ready(Ready {
                    index,
                    kind: e.kind,
                });
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcards_cover_their_family() {
        let (keep, covered) = distinct_addrs(&[
            ip("192.0.2.1"),
            ip("0.0.0.0"),
            ip("2001:db8::1"),
            ip("192.0.2.1"),
            ip("::"),
            ip("198.51.100.1"),
        ]);
        assert_eq!(keep, vec![ip("0.0.0.0"), ip("::")]);
        assert_eq!(
            covered,
            vec![ip("192.0.2.1"), ip("2001:db8::1"), ip("198.51.100.1")]
        );
        let (keep, covered) = distinct_addrs(&[ip("192.0.2.1"), ip("::"), ip("203.0.113.5")]);
        assert_eq!(keep, vec![ip("192.0.2.1"), ip("::"), ip("203.0.113.5")]);
        assert!(covered.is_empty());
    }

    async fn roundtrip(server: &mut DgramSocket, client: &std::net::UdpSocket) -> Datagram {
        let mut buf = [0u8; 64];
        loop {
            std::future::poll_fn(|cx| server.poll_recv_ready(cx)).await;
            match server.try_recv(&mut buf) {
                Ok(d) => {
                    assert_eq!(&buf[d.range.clone()], b"ping");
                    assert_eq!(d.remote, client.local_addr().unwrap());
                    return d;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A wildcard socket learns which loopback address each datagram came to, and answers from
    /// it; without the source address the kernel would answer from 127.0.0.1.
    #[tokio::test]
    async fn wildcard_udp_answers_from_the_address_asked() {
        let mut server = DgramSocket::udp((Ipv4Addr::UNSPECIFIED, 0).into()).unwrap();
        let port = server.bound().port();
        let client = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for asked in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 5)] {
            client.send_to(b"ping", (asked, port)).unwrap();
            let d = roundtrip(&mut server, &client).await;
            assert_eq!(d.local, SocketAddr::from((asked, port)));
            server.send(b"pong", d.local.ip(), d.remote).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"pong");
            assert_eq!(from, SocketAddr::from((asked, port)), "reply source");
        }
    }

    /// `::` is IPv6-only, so it is bound next to `0.0.0.0` on the same port, and learns `::1`.
    #[tokio::test]
    async fn v6_wildcard_next_to_v4() {
        let mut v6 = DgramSocket::udp((Ipv6Addr::UNSPECIFIED, 0).into()).unwrap();
        let port = v6.bound().port();
        let _v4 = DgramSocket::udp((Ipv4Addr::UNSPECIFIED, port).into()).unwrap();
        let client = std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        client
            .send_to(b"ping", (Ipv6Addr::LOCALHOST, port))
            .unwrap();
        let d = roundtrip(&mut v6, &client).await;
        assert_eq!(d.local, SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        v6.send(b"pong", d.local.ip(), d.remote).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], d.local));
    }
}
