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
//! Batching: one `recvmmsg` takes up to [`RECV_BATCH`] datagrams ([`RecvBatch`]), and a UDP
//! socket asks for GRO, so one slot may hold several datagrams of one sender laid end to end
//! (their size is the slot's stride). On the way out, datagrams to one client are sent with
//! GSO (UDP_SEGMENT: one `sendmsg`, the kernel cuts the segments), and raw ESP datagrams with
//! one `sendmmsg`. quinn-udp does the UDP system calls. Nothing here allocates per packet.

#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll};

use nix::cmsg_space;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::Listen;

/// IP protocol number of ESP (RFC 4303).
const IPPROTO_ESP: i32 = 50;

/// Datagrams one receive call takes at most (`recvmmsg`).
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// Room for one received datagram, or for what GRO put together (at most 64 KiB).
pub const RECV_SLOT: usize = 65536;

/// Datagrams one `sendmmsg` on a raw ESP socket sends at most.
pub const SEND_BATCH: usize = 64;

/// Bytes of one GSO send at most: the segments must fit one 64 KiB IP packet.
const GSO_BYTES: usize = 65_000;

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
    /// Where its payload lies in its slot (after the IP header a raw IPv4 socket hands over).
    pub range: Range<usize>,
    /// Who sent it (port 0 for raw ESP).
    pub remote: SocketAddr,
    /// The address it came to, with the socket's port (0 for raw ESP).
    pub local: SocketAddr,
}

/// The buffers of one `recvmmsg`: [`RECV_BATCH`] slots of [`RECV_SLOT`] bytes and what the
/// kernel said about each. Allocated once and used for every socket in turn.
pub struct RecvBatch {
    buf: Vec<u8>,
    meta: [RecvMeta; RECV_BATCH],
    /// The datagrams of the last [`Listeners::receive`]: slot and where each lies in it.
    found: Vec<(usize, Datagram)>,
}

/// How many segments GRO puts in one slot at most (the kernel's UDP_GRO_CNT_MAX).
const GRO_SEGMENTS: usize = 64;

/// What one [`Listeners::receive`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Slots the `recvmmsg` filled ([`RECV_BATCH`]: more may wait).
    pub slots: usize,
    /// Datagrams in them, GRO's cut apart.
    pub segments: usize,
    /// Of those, the ones read ([`RecvBatch::datagram_mut`]); the others were not valid
    /// (a short raw packet) and were dropped.
    pub datagrams: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buf: vec![0u8; RECV_BATCH * RECV_SLOT],
            meta: [RecvMeta::default(); RECV_BATCH],
            found: Vec::with_capacity(RECV_BATCH * GRO_SEGMENTS),
        }
    }
}

impl RecvBatch {
    /// Slot `i` (of the last receive) and what was received into it.
    pub fn slot_mut(&mut self, i: usize) -> Option<(&mut [u8], &RecvMeta)> {
        let meta = self.meta.get(i)?;
        let slot = self.buf.get_mut(i * RECV_SLOT..(i + 1) * RECV_SLOT)?;
        Some((slot, meta))
    }

    /// Datagram `k` of the last [`Listeners::receive`]: its bytes, in place, and who sent it
    /// to which address.
    pub fn datagram_mut(&mut self, k: usize) -> Option<(&mut [u8], Datagram)> {
        let (slot, d) = self.found.get(k)?.clone();
        let bytes = self
            .buf
            .get_mut(slot * RECV_SLOT..(slot + 1) * RECV_SLOT)?
            .get_mut(d.range.clone())?;
        Some((bytes, d))
    }
}

/// The datagrams in one received slot: `len` bytes cut at every `stride` bytes (GRO), the last
/// one possibly shorter. A stride of 0 (never from the kernel) counts as one datagram.
pub fn segments(len: usize, stride: usize) -> impl Iterator<Item = Range<usize>> {
    let stride = if stride == 0 { len.max(1) } else { stride };
    (0..len)
        .step_by(stride)
        .map(move |start| start..len.min(start + stride))
}

/// A datagram waiting in a send batch: its bytes in the batch's buffer and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The socket ([`Listeners::get_mut`]) it leaves through.
    pub socket: usize,
    /// The local address it leaves from (unspecified: the kernel chooses).
    pub from: IpAddr,
    /// Where it goes (port 0 for raw ESP).
    pub to: SocketAddr,
    /// Its bytes in the buffer.
    pub range: Range<usize>,
}

/// How many of `out` (at least one when not empty) one send can take, starting at its first:
/// for UDP, the run that GSO can send as one (same socket, source and destination, laid end to
/// end, all of the first one's size but the last, which may be shorter, at most `max_segments`
/// and [`GSO_BYTES`]); for a raw socket, the run with the same socket and source (`sendmmsg`
/// sends each to its own destination), at most [`SEND_BATCH`].
pub fn send_run(out: &[Outgoing], raw: bool, max_segments: usize) -> usize {
    let Some(first) = out.first() else { return 0 };
    let seg = first.range.len();
    let mut n = 1;
    while let Some(next) = out.get(n) {
        let same_socket = next.socket == first.socket && next.from == first.from;
        let fits = if raw {
            same_socket && n < SEND_BATCH
        } else {
            same_socket
                && next.to == first.to
                && n < max_segments
                && out.get(n - 1).is_some_and(|p| p.range.len() == seg)
                && next.range.start == out.get(n - 1).map_or(0, |p| p.range.end)
                && next.range.len() <= seg
                && next.range.end - first.range.start <= GSO_BYTES
        };
        if !fits {
            break;
        }
        n += 1;
    }
    n
}

/// One classic BPF instruction.
const fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Attaches a classic BPF filter of one instruction, `ret #0`, to `fd`: the socket is given no
/// packet (send-only raw sockets).
fn take_nothing(fd: BorrowedFd<'_>) -> io::Result<()> {
    attach_cbpf(
        fd,
        libc::SO_ATTACH_FILTER,
        &mut [bpf(libc::BPF_RET | libc::BPF_K, 0, 0, 0)],
    )
}

/// Steers the IKE port's datagrams between the two sockets of its SO_REUSEPORT group (`fd` is
/// the first one bound): a datagram whose responder cookie is zero (Main Mode message 1, a new
/// handshake) to the second socket, everything else (the later messages of handshakes under
/// way, Quick Mode, Informational) to the first. The program sees the UDP payload: the ISAKMP
/// header, the responder cookie at bytes 8 to 15 (RFC 2408 §3.1). A flood of message 1s then
/// fills only the second socket's buffer, and the control thread reads the first one first.
fn steer_new_handshakes(fd: BorrowedFd<'_>) -> io::Result<()> {
    let (ld, jeq, ret) = (
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    attach_cbpf(
        fd,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        &mut [
            bpf(ld, 0, 0, 8),
            bpf(jeq, 0, 3, 0),
            bpf(ld, 0, 0, 12),
            bpf(jeq, 0, 1, 0),
            bpf(ret, 0, 0, 1),
            bpf(ret, 0, 0, 0),
        ],
    )
}

/// Attaches the classic BPF program `code` to `fd` with the socket option `opt`.
fn attach_cbpf(fd: BorrowedFd<'_>, opt: i32, code: &mut [libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `code`, both alive for the call; the kernel copies the program.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            std::ptr::from_ref(&prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which sockets a [`Listeners`] set binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every kind on one thread.
    All,
    /// The control thread's: IKE and cleartext L2TP.
    Control,
    /// A data-plane worker's: the NAT-T port with SO_REUSEPORT, and raw ESP (received when
    /// `receive_raw`, else send-only).
    Data {
        /// This worker receives raw ESP.
        receive_raw: bool,
    },
}

/// The OS socket under a [`DgramSocket`].
enum Io {
    Udp(UdpSocket),
    Raw(AsyncFd<Socket>),
}

/// nix's preallocated message headers for `sendmmsg` on a raw ESP socket: the control-message
/// buffers are allocated once per socket, not per batch.
#[derive(Debug)]
struct SendHeaders(MultiHeaders<SockaddrStorage>);

// SAFETY: `MultiHeaders` is not `Send` only because it holds raw pointers: into its own heap
// buffers (the control-message buffer and the address slots, which move with it and are reached
// through `&mut self` only), and, after a call, stale pointers to the caller's data and address,
// which `sendmmsg` overwrites before every use and nothing else reads. No pointer refers to
// anything another thread could touch, so moving the headers to another thread is sound.
unsafe impl Send for SendHeaders {}

/// One datagram socket (UDP or raw ESP) that knows the local address of what it receives and
/// sends from a given local address.
pub struct DgramSocket {
    io: Io,
    /// quinn-udp's view of the socket: GSO and GRO support, send fallbacks.
    state: UdpSocketState,
    /// The address bound (port 0 for raw ESP).
    bound: SocketAddr,
    /// Bound to a wildcard address: local addresses come with each datagram and go with each send.
    wildcard: bool,
    /// The headers of a raw socket's `sendmmsg`.
    send_hdrs: Option<SendHeaders>,
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

/// Sets an integer socket option.
fn set_int_option(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
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

/// Gives the socket `bytes` of receive and send buffer. The kernel caps SO_RCVBUF/SO_SNDBUF at
/// net.core.rmem_max/wmem_max (208 KiB on a stock Linux): as root (CAP_NET_ADMIN) the FORCE
/// variants pass that cap, otherwise the capped size is what we get. At 1 Gbit/s of 1400-byte
/// packets a 208 KiB buffer holds under 2 ms of traffic; a burst longer than that while the
/// loop is busy is lost in the kernel (seen as `udp_rcvbuf_drops`). Returns the receive buffer
/// the kernel granted (it reports twice what it accounts for payload).
fn size_buffers(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let want = i32::try_from(bytes).unwrap_or(i32::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int_option(fd, libc::SOL_SOCKET, force, want).is_err() {
            set_int_option(fd, libc::SOL_SOCKET, plain, want)?;
        }
    }
    get_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| usize::try_from(v).unwrap_or(0))
}

/// Reads an integer socket option.
fn get_int_option(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket for the duration of the call, `value` and `len` are valid
    // for writes and `len` holds the size of `value`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Datagrams the kernel dropped on this socket because its receive buffer was full (or for
/// lack of memory): the socket's `sk_drops`, the same counter SO_RXQ_OVFL reports with each
/// datagram, read with SO_MEMINFO (Linux 3.17+). `None` where the kernel does not say.
fn socket_drops(fd: BorrowedFd<'_>) -> Option<u64> {
    /// SK_MEMINFO_VARS in linux/sock_diag.h; SK_MEMINFO_DROPS is the last one.
    const VARS: usize = 9;
    const DROPS: usize = 8;
    let mut info = [0u32; VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `fd` is an open socket for the duration of the call; `info` is valid for `len`
    // bytes of writes and the kernel writes at most `len` bytes (and sets `len`).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (r == 0 && len as usize > DROPS * 4).then(|| u64::from(info[DROPS]))
}

/// Lets the kernel fragment our outer packets instead of refusing them (IP_PMTUDISC_DONT, and
/// no IPV6_DONTFRAG): a full-size ESP packet must still reach a client whose path has a smaller
/// MTU, and clients and their NATs reassemble (the inner MSS is clamped, so this is rare).
/// Set after quinn-udp's own options, which forbid fragmentation (QUIC probes the path MTU).
fn allow_fragmentation(fd: BorrowedFd<'_>, v6: bool) -> io::Result<()> {
    if v6 {
        set_int_option(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        )?;
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0)
    } else {
        set_int_option(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
    }
}

/// Sends every datagram of `out` (bytes in `buf`) from `from` with `sendmmsg`: one system call
/// for up to [`SEND_BATCH`] datagrams; `Ok` with how many went (fewer when the socket's buffer
/// filled up).
fn send_many(
    fd: RawFd,
    hdrs: &mut SendHeaders,
    buf: &[u8],
    out: &[Outgoing],
    from: Option<IpAddr>,
) -> io::Result<usize> {
    let slot = |i: usize| {
        out.get(i)
            .and_then(|o| buf.get(o.range.clone()))
            .unwrap_or(&[])
    };
    let iovs: [[IoSlice<'_>; 1]; SEND_BATCH] = std::array::from_fn(|i| [IoSlice::new(slot(i))]);
    let addrs: [Option<SockaddrStorage>; SEND_BATCH] =
        std::array::from_fn(|i| out.get(i).map(|o| SockaddrStorage::from(o.to)));
    let count = out.len().min(SEND_BATCH);
    let slices = iovs.iter().take(count);
    let addrs = addrs.get(..count).unwrap_or(&[]);
    let sent = match from {
        Some(IpAddr::V4(src)) => {
            let pi = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(src.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let cmsgs = [ControlMessage::Ipv4PacketInfo(&pi)];
            sendmmsg(fd, &mut hdrs.0, slices, addrs, cmsgs, MsgFlags::empty())?.count()
        }
        Some(IpAddr::V6(src)) => {
            let pi = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: 0,
            };
            let cmsgs = [ControlMessage::Ipv6PacketInfo(&pi)];
            sendmmsg(fd, &mut hdrs.0, slices, addrs, cmsgs, MsgFlags::empty())?.count()
        }
        None => {
            let cmsgs: [ControlMessage<'_>; 0] = [];
            sendmmsg(fd, &mut hdrs.0, slices, addrs, cmsgs, MsgFlags::empty())?.count()
        }
    };
    Ok(sent)
}

impl DgramSocket {
    /// A UDP socket bound to `addr` (IPv6: IPv6-only), with `buffer` bytes of receive and send
    /// buffer (0: the kernel's default).
    pub fn udp(addr: SocketAddr, buffer: usize) -> io::Result<Self> {
        Self::udp_with(addr, buffer, false)
    }

    /// A UDP socket like [`udp`](Self::udp) with SO_REUSEPORT: each data-plane worker binds
    /// one to the same address and port, and the kernel spreads the senders over them by
    /// their address and port (one sender always to the same socket).
    pub fn udp_shared(addr: SocketAddr, buffer: usize) -> io::Result<Self> {
        Self::udp_with(addr, buffer, true)
    }

    fn udp_with(addr: SocketAddr, buffer: usize, reuse_port: bool) -> io::Result<Self> {
        let v6 = addr.is_ipv6();
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        if v6 {
            s.set_only_v6(true)?;
        }
        s.bind(&addr.into())?;
        // Packet info, GRO, non-blocking.
        let state = UdpSocketState::new(UdpSockRef::from(&s))?;
        allow_fragmentation(s.as_fd(), v6)?;
        if buffer > 0 {
            size_buffers(s.as_fd(), buffer)?;
        }
        let bound = s
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound to no IP address"))?;
        Ok(Self {
            io: Io::Udp(UdpSocket::from_std(s.into())?),
            state,
            bound,
            wildcard: addr.ip().is_unspecified(),
            send_hdrs: None,
        })
    }

    /// A raw IP socket for protocol 50 (ESP) bound to `addr` (needs CAP_NET_RAW). An IPv4 one
    /// hands over the IP header with each packet, an IPv6 one does not.
    pub fn raw_esp(addr: IpAddr, buffer: usize) -> io::Result<Self> {
        Self::raw_esp_with(addr, buffer, true)
    }

    /// A raw ESP socket only for sending: a filter that takes nothing keeps the kernel from
    /// queueing a copy of every ESP packet on it (every raw socket gets each one). The
    /// data-plane workers other than the one that receives raw ESP send through these.
    pub fn raw_esp_send_only(addr: IpAddr) -> io::Result<Self> {
        Self::raw_esp_with(addr, 0, false)
    }

    fn raw_esp_with(addr: IpAddr, buffer: usize, receive: bool) -> io::Result<Self> {
        let v6 = addr.is_ipv6();
        let sa = SocketAddr::new(addr, 0);
        let s = Socket::new(
            Domain::for_address(sa),
            Type::RAW,
            Some(Protocol::from(IPPROTO_ESP)),
        )?;
        if !receive {
            take_nothing(s.as_fd())?;
        }
        s.bind(&sa.into())?;
        // Packet info (IPv6 needs it for the destination; IPv4 reads the IP header), non-blocking;
        // the UDP-only options (GRO) fail quietly.
        let state = UdpSocketState::new(UdpSockRef::from(&s))?;
        allow_fragmentation(s.as_fd(), v6)?;
        if buffer > 0 {
            size_buffers(s.as_fd(), buffer)?;
        }
        let wildcard = addr.is_unspecified();
        // SAFETY: `Socket` owns its file descriptor, keeps it open until it is dropped, and
        // `as_raw_fd` always returns that same descriptor; the AsyncFd owns the Socket.
        let fd = unsafe { AsyncFd::register(s) }.map_err(io::Error::from)?;
        Ok(Self {
            io: Io::Raw(fd),
            state,
            bound: sa,
            wildcard,
            send_hdrs: Some(SendHeaders(MultiHeaders::preallocate(
                SEND_BATCH,
                wildcard.then(|| pktinfo_space(addr)),
            ))),
        })
    }

    /// Runs `f` on the socket's file descriptor.
    fn with_fd<T>(&self, f: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
        // SAFETY: the descriptor stays open while `self` lives, and `f` only borrows it.
        f(unsafe { BorrowedFd::borrow_raw(self.raw_fd()) })
    }

    /// The address bound (the port the kernel chose, if 0 was asked for).
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }

    /// Whether this socket serves `local`: bound to it, or to the wildcard of its family.
    pub fn serves(&self, local: IpAddr) -> bool {
        self.bound.ip() == local || (self.wildcard && self.bound.is_ipv4() == local.is_ipv4())
    }

    /// Datagrams the kernel dropped because this socket's receive buffer was full.
    pub fn drops(&self) -> u64 {
        // SAFETY: the descriptor belongs to this socket, which outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(self.raw_fd()) };
        socket_drops(fd).unwrap_or(0)
    }

    /// The receive buffer the kernel granted, bytes (as the kernel reports it).
    pub fn receive_buffer(&self) -> usize {
        // SAFETY: the descriptor belongs to this socket, which outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(self.raw_fd()) };
        get_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map_or(0, |v| usize::try_from(v).unwrap_or(0))
    }

    /// Whether this is a raw ESP socket.
    pub fn is_raw(&self) -> bool {
        matches!(self.io, Io::Raw(_))
    }

    /// How many datagrams one GSO send may carry (1: no GSO).
    pub fn max_gso_segments(&self) -> usize {
        if self.is_raw() {
            1
        } else {
            self.state.max_gso_segments()
        }
    }

    /// Ready when a datagram may be waiting (then [`try_recv_batch`](Self::try_recv_batch)).
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

    /// The datagrams waiting, up to [`RECV_BATCH`] slots, into `batch` with one `recvmmsg`:
    /// how many slots were filled (`WouldBlock` when none was waiting, which makes the next
    /// [`poll_recv_ready`](Self::poll_recv_ready) wait). Then [`datagram`](Self::datagram)
    /// reads each one.
    pub fn try_recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let mut chunks = batch.buf.chunks_exact_mut(RECV_SLOT);
        let mut iovs: [IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let meta = &mut batch.meta;
        let state = &self.state;
        match &self.io {
            Io::Udp(s) => s.try_io(Interest::READABLE, || {
                state.recv(UdpSockRef::from(s), &mut iovs, meta)
            }),
            Io::Raw(a) => a.try_io(Interest::READABLE, |inner| {
                state.recv(UdpSockRef::from(inner), &mut iovs, meta)
            }),
        }
    }

    /// The datagram at `segment` of a slot this socket received into (`meta` says from whom and
    /// to which address). A raw IPv4 socket's datagram starts with the IP header, which gives
    /// the addresses and is left out of the range.
    pub fn datagram(
        &self,
        slot: &[u8],
        meta: &RecvMeta,
        segment: Range<usize>,
    ) -> io::Result<Datagram> {
        let port = self.bound.port();
        if self.is_raw() && self.bound.is_ipv4() {
            // The IPv4 header comes first: its source and destination are the addresses.
            let pkt = slot.get(segment.clone()).unwrap_or(&[]);
            let n = pkt.len();
            let ihl = usize::from(pkt.first().map_or(0, |v| v & 0x0f)) * 4;
            let (Some(src), Some(dst)) = (pkt.get(12..16), pkt.get(16..20)) else {
                return Err(io::Error::other("short IPv4 packet"));
            };
            if pkt.first().is_none_or(|v| v >> 4 != 4) || ihl < 20 || ihl > n {
                return Err(io::Error::other("not an IPv4 packet"));
            }
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            return Ok(Datagram {
                range: segment.start + ihl..segment.end,
                remote: SocketAddr::new(ip(src), 0),
                local: SocketAddr::new(ip(dst), 0),
            });
        }
        let local = match meta.dst_ip {
            Some(ip) if self.wildcard => ip,
            _ => self.bound.ip(),
        };
        Ok(Datagram {
            range: segment,
            remote: meta.addr,
            local: SocketAddr::new(local, port),
        })
    }

    /// The source address to put on a datagram to `to`: only a wildcard socket names it.
    fn source(&self, from: IpAddr, to: SocketAddr) -> Option<IpAddr> {
        (self.wildcard && !from.is_unspecified() && from.is_ipv4() == to.is_ipv4()).then_some(from)
    }

    /// Sends `data` to `to` (port ignored for raw ESP) from the local address `from`: on a
    /// wildcard socket the kernel is told the source address, otherwise the bound one is used.
    pub async fn send(&mut self, data: &[u8], from: IpAddr, to: SocketAddr) -> io::Result<()> {
        self.send_segments(data, None, from, to).await
    }

    /// Sends `data` to `to` from `from` as datagrams of `segment` bytes each (the last may be
    /// shorter) with one GSO `sendmsg`, or as one datagram when `segment` is `None`. UDP only:
    /// raw sockets take [`send_batch`](Self::send_batch).
    pub async fn send_segments(
        &mut self,
        data: &[u8],
        segment: Option<usize>,
        from: IpAddr,
        to: SocketAddr,
    ) -> io::Result<()> {
        let to = match self.io {
            Io::Raw(_) => SocketAddr::new(to.ip(), 0),
            Io::Udp(_) => to,
        };
        let t = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents: data,
            segment_size: segment.filter(|&s| s < data.len()),
            src_ip: self.source(from, to),
        };
        let state = &self.state;
        match &self.io {
            Io::Udp(s) => {
                s.async_io(Interest::WRITABLE, || {
                    state.try_send(UdpSockRef::from(s), &t)
                })
                .await
            }
            Io::Raw(a) => {
                a.async_io(Interest::WRITABLE, |inner| {
                    state.try_send(UdpSockRef::from(inner), &t)
                })
                .await
            }
        }
    }

    /// Sends the datagrams of `out` (bytes in `buf`, all from the same source) on this raw
    /// socket with as few `sendmmsg` calls as the socket's buffer allows. A datagram the kernel
    /// refuses is skipped and the others still go; the last refusal is the error.
    pub async fn send_batch(&mut self, buf: &[u8], out: &[Outgoing]) -> io::Result<()> {
        let Some(first) = out.first() else {
            return Ok(());
        };
        let from = self.source(first.from, first.to);
        if from.is_none() && self.wildcard {
            // The headers carry room for a source address; without one, send one by one.
            let mut last = Ok(());
            for o in out {
                let data = buf.get(o.range.clone()).unwrap_or(&[]);
                if let Err(e) = self.send_segments(data, None, o.from, o.to).await {
                    last = Err(e);
                }
            }
            return last;
        }
        let fd = self.raw_fd();
        let (Io::Raw(a), Some(hdrs)) = (&self.io, self.send_hdrs.as_mut()) else {
            return Err(io::Error::other("send_batch is for raw sockets"));
        };
        let (mut done, mut last) = (0, Ok(()));
        while let Some(rest) = out.get(done..).filter(|r| !r.is_empty()) {
            match a
                .async_io(Interest::WRITABLE, |_| send_many(fd, hdrs, buf, rest, from))
                .await
            {
                Ok(sent) => done += sent.max(1),
                // The first of `rest` was refused: skip it.
                Err(e) => {
                    done += 1;
                    last = Err(e);
                }
            }
        }
        last
    }
}

/// One socket of a [`Listeners`] set, with what it carries.
#[derive(Debug)]
pub struct Endpoint {
    pub kind: Kind,
    pub socket: DgramSocket,
    /// Looked at before the others whenever the loop waits ([`Listeners::poll_ready`]).
    pub priority: bool,
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
        Self::bind_role(listen, addrs, Role::All)
    }

    /// The control thread's sockets ([`Role::Control`]) on every address of `addrs`.
    pub fn bind_control(listen: &Listen, addrs: &[IpAddr]) -> io::Result<Self> {
        Self::bind_role(listen, addrs, Role::Control)
    }

    /// A data-plane worker's sockets ([`Role::Data`]) on every address of `addrs`.
    pub fn bind_data(listen: &Listen, addrs: &[IpAddr], receive_raw: bool) -> io::Result<Self> {
        Self::bind_role(listen, addrs, Role::Data { receive_raw })
    }

    fn bind_role(listen: &Listen, addrs: &[IpAddr], role: Role) -> io::Result<Self> {
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
            Self::bind_one(listen, addr, role, &mut endpoints)?;
        }
        if endpoints.is_empty() {
            return Err(io::Error::other("no address to listen on"));
        }
        Ok(Self { endpoints })
    }

    fn bind_one(
        listen: &Listen,
        addr: IpAddr,
        role: Role,
        out: &mut Vec<Endpoint>,
    ) -> io::Result<()> {
        // The error names the socket: "UDP 192.0.2.1:500: Address already in use".
        let udp = |port, shared| {
            let sa = SocketAddr::new(addr, port);
            let s = if shared {
                DgramSocket::udp_shared(sa, listen.socket_buffer)
            } else {
                DgramSocket::udp(sa, listen.socket_buffer)
            };
            s.map_err(|e| io::Error::new(e.kind(), format!("UDP {sa}: {e}")))
        };
        let (control, data) = match role {
            Role::All => (true, true),
            Role::Control => (true, false),
            Role::Data { .. } => (false, true),
        };
        // The control thread's IKE port is two sockets: handshakes under way and new ones
        // (steer_new_handshakes); one socket where everything is one thread's.
        let (ike, ike_new) = match role {
            Role::Control => {
                let est = udp(listen.ike_port, true)?;
                let new = udp(listen.ike_port, true)?;
                if let Err(e) = est.with_fd(steer_new_handshakes) {
                    warn!(%addr, error = %e, "cannot steer new IKE handshakes to a socket of their own: a flood of Main Mode message 1s shares the queue with handshakes under way");
                }
                (Some(est), Some(new))
            }
            Role::All => (Some(udp(listen.ike_port, false)?), None),
            Role::Data { .. } => (None, None),
        };
        let natt = if data {
            Some(udp(listen.natt_port, matches!(role, Role::Data { .. }))?)
        } else {
            None
        };
        let raw = match role {
            _ if !listen.raw_esp || !data => None,
            Role::Data { receive_raw: false } => match DgramSocket::raw_esp_send_only(addr) {
                Ok(r) => Some(r),
                Err(e) => {
                    debug!(%addr, error = %e, "no send-only raw ESP socket");
                    None
                }
            },
            _ => match DgramSocket::raw_esp(addr, listen.socket_buffer) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(%addr, error = %e, "cannot open a raw ESP socket (needs CAP_NET_RAW): only UDP-encapsulated ESP will work");
                    None
                }
            },
        };
        let l2tp = match listen.l2tp_port {
            Some(port) if control => match udp(port, false) {
                Ok(s) => Some(s),
                Err(e) if listen.plain_l2tp => return Err(e),
                Err(e) => {
                    warn!(port, %addr, error = %e, "cannot watch UDP {port} for cleartext L2TP (is xl2tpd running?); continuing");
                    None
                }
            },
            _ => None,
        };
        match (&ike, &natt) {
            (Some(ike), _) => info!(
                ike = %ike.bound(),
                natt = %SocketAddr::new(addr, listen.natt_port),
                raw_esp = listen.raw_esp,
                "listening"
            ),
            (None, Some(natt)) => debug!(
                natt = %natt.bound(),
                raw_esp = raw.is_some(),
                receive_buffer = natt.receive_buffer(),
                "listening (data plane)"
            ),
            (None, None) => {}
        }
        if let Some(socket) = ike {
            out.push(Endpoint {
                kind: Kind::Ike,
                socket,
                priority: ike_new.is_some(),
            });
        }
        if let Some(socket) = ike_new {
            out.push(Endpoint {
                kind: Kind::Ike,
                socket,
                priority: false,
            });
        }
        if let Some(socket) = natt {
            out.push(Endpoint {
                kind: Kind::Natt,
                socket,
                priority: false,
            });
        }
        if let Some(socket) = raw {
            out.push(Endpoint {
                kind: Kind::RawEsp,
                socket,
                priority: false,
            });
        }
        if let Some(socket) = l2tp {
            out.push(Endpoint {
                kind: Kind::L2tp,
                socket,
                priority: false,
            });
        }
        Ok(())
    }

    /// Datagrams the kernel dropped on every socket because a receive buffer was full.
    pub fn drops(&self) -> u64 {
        self.endpoints.iter().map(|e| e.socket.drops()).sum()
    }

    /// The smallest receive buffer the kernel granted to a socket, bytes.
    pub fn receive_buffer(&self) -> usize {
        self.endpoints
            .iter()
            .map(|e| e.socket.receive_buffer())
            .min()
            .unwrap_or(0)
    }

    /// Takes what waits on socket `index` into `batch` with one `recvmmsg` and cuts each slot
    /// into the datagrams GRO put together; read them with [`RecvBatch::datagram_mut`]. `None`
    /// when nothing waited (the next [`poll_ready`](Self::poll_ready) then waits) or the receive
    /// failed (logged).
    pub fn receive(&mut self, index: usize, batch: &mut RecvBatch) -> Option<Received> {
        let sock = &mut self.endpoints.get_mut(index)?.socket;
        let slots = match sock.try_recv_batch(batch) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                debug!(socket = %sock.bound(), error = %e, "receive failed");
                return None;
            }
        };
        batch.found.clear();
        let mut segments_seen = 0;
        for (i, meta) in batch.meta.iter().enumerate().take(slots) {
            let Some(slot) = batch.buf.get(i * RECV_SLOT..(i + 1) * RECV_SLOT) else {
                break;
            };
            for segment in segments(meta.len, meta.stride) {
                segments_seen += 1;
                match sock.datagram(slot, meta, segment) {
                    Ok(d) => batch.found.push((i, d)),
                    Err(e) => debug!(error = %e, "dropped a datagram"),
                }
            }
        }
        Some(Received {
            slots,
            segments: segments_seen,
            datagrams: batch.found.len(),
        })
    }

    /// The socket at `index` ([`Ready::index`]).
    pub fn get_mut(&mut self, index: usize) -> Option<&mut DgramSocket> {
        self.endpoints.get_mut(index).map(|e| &mut e.socket)
    }

    /// The index of the socket of `kind` that serves the local address `local` (bound to it,
    /// or the wildcard of its family).
    /// The addresses the sockets of `kind` are bound to.
    pub fn bound(&self, kind: Kind) -> Vec<SocketAddr> {
        self.endpoints
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.socket.bound())
            .collect()
    }

    pub fn index_for_local(&self, kind: Kind, local: IpAddr) -> Option<usize> {
        // An exact binding wins over the wildcard.
        self.endpoints
            .iter()
            .position(|e| e.kind == kind && e.socket.bound.ip() == local)
            .or_else(|| {
                self.endpoints
                    .iter()
                    .position(|e| e.kind == kind && e.socket.serves(local))
            })
    }

    /// The socket of `kind` that serves the local address `local`.
    pub fn for_local(&mut self, kind: Kind, local: IpAddr) -> Option<&mut DgramSocket> {
        let i = self.index_for_local(kind, local)?;
        self.get_mut(i)
    }

    /// The index of the first socket of `kind` for `remote`'s address family.
    pub fn index_for_family(&self, kind: Kind, remote: IpAddr) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|e| e.kind == kind && e.socket.bound.is_ipv4() == remote.is_ipv4())
    }

    /// The first socket of `kind` for `remote`'s address family.
    pub fn for_family(&mut self, kind: Kind, remote: IpAddr) -> Option<&mut DgramSocket> {
        let i = self.index_for_family(kind, remote)?;
        self.get_mut(i)
    }

    /// Whether any raw ESP socket is open.
    pub fn has_raw_esp(&self) -> bool {
        self.endpoints.iter().any(|e| e.kind == Kind::RawEsp)
    }

    /// A socket that may have a datagram waiting, looking first at the one `turn` names (so that
    /// a busy socket does not starve the others).
    pub fn poll_ready(&self, cx: &mut Context<'_>, turn: usize) -> Poll<Ready> {
        let n = self.endpoints.len();
        for (index, e) in self.endpoints.iter().enumerate() {
            if e.priority && e.socket.poll_recv_ready(cx).is_ready() {
                return Poll::Ready(Ready {
                    index,
                    kind: e.kind,
                });
            }
        }
        for i in 0..n {
            let index = (turn + i) % n;
            if let Some(e) = self.endpoints.get(index)
                && !e.priority
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

    /// The datagrams `server` receives until `count` have come (GRO slots cut up), with their
    /// bytes.
    async fn receive(server: &mut DgramSocket, count: usize) -> Vec<(Datagram, Vec<u8>)> {
        receive_slots(server, count).await.0
    }

    /// [`receive`], and how many slots the datagrams came in.
    async fn receive_slots(
        server: &mut DgramSocket,
        count: usize,
    ) -> (Vec<(Datagram, Vec<u8>)>, usize) {
        let mut rx = RecvBatch::default();
        let mut got = Vec::new();
        let mut slots = 0;
        while got.len() < count {
            std::future::poll_fn(|cx| server.poll_recv_ready(cx)).await;
            let n = match server.try_recv_batch(&mut rx) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            };
            slots += n;
            for i in 0..n {
                let (slot, meta) = rx.slot_mut(i).unwrap();
                let meta = *meta;
                for seg in segments(meta.len, meta.stride) {
                    let d = server.datagram(slot, &meta, seg).unwrap();
                    got.push((d.clone(), slot[d.range].to_vec()));
                }
            }
        }
        (got, slots)
    }

    async fn roundtrip(server: &mut DgramSocket, client: &std::net::UdpSocket) -> Datagram {
        let (d, data) = receive(server, 1).await.remove(0);
        assert_eq!(data, b"ping");
        assert_eq!(d.remote, client.local_addr().unwrap());
        d
    }

    fn out(socket: usize, to: &str, range: Range<usize>) -> Outgoing {
        Outgoing {
            socket,
            from: ip("192.0.2.1"),
            to: to.parse().unwrap(),
            range,
        }
    }

    /// The control thread's IKE port: new handshakes (responder cookie zero) land on the second
    /// socket, the rest on the first, which is looked at first; whoever sends, however many.
    #[tokio::test]
    async fn new_handshakes_are_steered_to_their_own_socket() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = Listen {
            addr: ip("127.0.0.1"),
            ike_port: port,
            natt_port: 0,
            raw_esp: false,
            test_echo: false,
            l2tp_port: None,
            plain_l2tp: false,
            socket_buffer: 0,
            workers: 1,
        };
        let mut l = Listeners::bind_control(&listen, &[ip("127.0.0.1")]).unwrap();
        assert_eq!(l.endpoints.len(), 2);
        assert!(l.endpoints[0].priority && !l.endpoints[1].priority);
        let new = |i: u8| [&[i; 8][..], &[0; 8], &[1, 16, 2, 0], &[0; 8]].concat();
        let later = |i: u8| [&[i; 8][..], &[7; 8], &[5, 16, 2, 1], &[0; 8]].concat();
        for i in 0..8u8 {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            c.send_to(&new(i), ("127.0.0.1", port)).unwrap();
            c.send_to(&later(i), ("127.0.0.1", port)).unwrap();
        }
        let est = receive(l.get_mut(0).unwrap(), 8).await;
        let fresh = receive(l.get_mut(1).unwrap(), 8).await;
        assert!(est.iter().all(|(_, d)| d[8..16] == [7; 8]));
        assert!(fresh.iter().all(|(_, d)| d[8..16] == [0; 8]));
    }

    /// A socket whose buffer fills up counts what the kernel dropped, and a sized buffer is
    /// granted (beyond net.core.rmem_max when the FORCE options are allowed).
    #[tokio::test]
    async fn receive_buffer_overflows_are_counted() {
        let small = DgramSocket::udp((Ipv4Addr::LOCALHOST, 0).into(), 4096).unwrap();
        assert!(
            small.receive_buffer() < 64 * 1024,
            "{}",
            small.receive_buffer()
        );
        assert_eq!(small.drops(), 0);
        let peer = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let datagram = [0u8; 1400];
        for _ in 0..200 {
            peer.send_to(&datagram, small.bound()).unwrap();
        }
        let drops = small.drops();
        assert!(drops > 100, "the kernel dropped {drops} of 200 datagrams");

        let big = DgramSocket::udp((Ipv4Addr::LOCALHOST, 0).into(), 8 << 20).unwrap();
        let forced = unsafe { libc::geteuid() } == 0;
        if forced {
            assert!(big.receive_buffer() >= 8 << 20, "{}", big.receive_buffer());
        } else {
            eprintln!(
                "not root: the 8 MiB buffer is capped at net.core.rmem_max ({} granted)",
                big.receive_buffer()
            );
        }
    }

    #[test]
    fn gro_slots_are_cut_at_the_stride() {
        let cut = |len, stride| segments(len, stride).collect::<Vec<_>>();
        assert_eq!(cut(3000, 1000), vec![0..1000, 1000..2000, 2000..3000]);
        assert_eq!(cut(2500, 1000), vec![0..1000, 1000..2000, 2000..2500]);
        assert_eq!(cut(700, 700), vec![0..700]);
        assert_eq!(cut(700, 0), vec![0..700]);
        assert!(cut(0, 1000).is_empty());
    }

    /// A GSO run: same socket, source and destination, end to end, equal sizes but the last.
    #[test]
    fn send_runs() {
        let a = "198.51.100.7:4500";
        let b = "198.51.100.8:4500";
        let o = [
            out(1, a, 0..100),
            out(1, a, 100..200),
            out(1, a, 200..250),
            out(1, a, 250..350),
        ];
        // The short one ends the run.
        assert_eq!(send_run(&o, false, 64), 3);
        assert_eq!(send_run(&o[3..], false, 64), 1);
        assert_eq!(send_run(&o, false, 2), 2, "the socket's GSO limit");
        assert_eq!(send_run(&o, false, 1), 1, "no GSO");
        // Another destination or socket ends it; a larger one after the first too.
        let o = [out(1, a, 0..100), out(1, b, 100..200)];
        assert_eq!(send_run(&o, false, 64), 1);
        assert_eq!(send_run(&o, true, 1), 2, "sendmmsg sends to each its own");
        let o = [out(1, a, 0..100), out(2, a, 100..200)];
        assert_eq!(send_run(&o, true, 1), 1);
        let o = [out(1, a, 0..100), out(1, a, 100..300)];
        assert_eq!(send_run(&o, false, 64), 1);
        // At most 64 KiB.
        let o: Vec<_> = (0..64)
            .map(|i| out(1, a, i * 1400..(i + 1) * 1400))
            .collect();
        assert_eq!(send_run(&o, false, 64), GSO_BYTES / 1400);
        assert_eq!(send_run(&o, true, 1), 64);
        assert_eq!(send_run(&[], false, 64), 0);
    }

    /// Datagrams sent with GSO arrive one by one, each with its own bytes, from the address
    /// asked; a receiver with GRO cuts them apart again.
    #[tokio::test]
    async fn gso_out_and_gro_in() {
        let mut server = DgramSocket::udp((Ipv4Addr::UNSPECIFIED, 0).into(), 0).unwrap();
        let port = server.bound().port();
        let mut peer = DgramSocket::udp((Ipv4Addr::new(127, 0, 0, 3), 0).into(), 0).unwrap();
        let asked = Ipv4Addr::new(127, 0, 0, 9);
        let mut data = Vec::new();
        for i in 0..5u8 {
            let len = if i == 4 { 300 } else { 1200 };
            data.extend(std::iter::repeat_n(i, len));
        }
        let segment = (server.max_gso_segments() > 1).then_some(1200);
        // Both ways: server → peer (the peer's GRO), peer → server (the server's GRO).
        peer.send_segments(&data, segment, IpAddr::V4(asked), (asked, port).into())
            .await
            .unwrap();
        let (got, slots) = receive_slots(&mut server, 5).await;
        if segment.is_some() {
            // Over loopback a GSO send reaches a socket with GRO in one piece.
            assert_eq!(slots, 1, "GSO and GRO on this kernel");
        } else {
            eprintln!("no UDP GSO on this kernel: five sends, five slots");
        }
        for (i, (d, bytes)) in got.iter().enumerate() {
            assert_eq!(d.local, SocketAddr::from((asked, port)));
            assert_eq!(d.remote, peer.bound());
            assert_eq!(bytes.len(), if i == 4 { 300 } else { 1200 });
            assert!(bytes.iter().all(|&b| usize::from(b) == i));
        }
        server
            .send_segments(&data, segment, IpAddr::V4(asked), peer.bound())
            .await
            .unwrap();
        let got = receive(&mut peer, 5).await;
        assert_eq!(got.len(), 5);
        for (i, (d, bytes)) in got.iter().enumerate() {
            assert_eq!(d.remote, SocketAddr::from((asked, port)), "reply source");
            assert!(bytes.iter().all(|&b| usize::from(b) == i));
        }
    }

    /// `sendmmsg` on a raw ESP socket: every datagram reaches its destination, in order.
    #[tokio::test]
    async fn raw_batch() {
        let (mut tx, mut rx) = match (
            DgramSocket::raw_esp(ip("127.0.0.1"), 0),
            DgramSocket::raw_esp(ip("127.0.0.2"), 0),
        ) {
            (Ok(t), Ok(r)) => (t, r),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!(
                    "SKIP raw_batch: cannot open a raw ESP socket ({e}); needs root or CAP_NET_RAW"
                );
                return;
            }
        };
        let mut buf = Vec::new();
        let mut o = Vec::new();
        for i in 0..10u8 {
            let start = buf.len();
            // An ESP header with a made-up SPI, then bytes naming the datagram.
            buf.extend([0xde, 0xad, 0xbe, i, 0, 0, 0, 1]);
            buf.extend(std::iter::repeat_n(i, 100 + usize::from(i)));
            o.push(Outgoing {
                socket: 0,
                from: ip("127.0.0.1"),
                to: "127.0.0.2:0".parse().unwrap(),
                range: start..buf.len(),
            });
        }
        tx.send_batch(&buf, &o).await.unwrap();
        let got: Vec<_> = receive(&mut rx, 10)
            .await
            .into_iter()
            .filter(|(d, b)| d.local.ip() == ip("127.0.0.2") && b.starts_with(&[0xde, 0xad, 0xbe]))
            .collect();
        assert_eq!(got.len(), 10);
        for (i, (d, b)) in got.iter().enumerate() {
            assert_eq!(d.remote.ip(), ip("127.0.0.1"));
            assert_eq!(b.as_slice(), &buf[o[i].range.clone()]);
        }
    }

    /// A wildcard socket learns which loopback address each datagram came to, and answers from
    /// it; without the source address the kernel would answer from 127.0.0.1.
    #[tokio::test]
    async fn wildcard_udp_answers_from_the_address_asked() {
        let mut server = DgramSocket::udp((Ipv4Addr::UNSPECIFIED, 0).into(), 0).unwrap();
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
        let mut v6 = DgramSocket::udp((Ipv6Addr::UNSPECIFIED, 0).into(), 0).unwrap();
        let port = v6.bound().port();
        let _v4 = DgramSocket::udp((Ipv4Addr::UNSPECIFIED, port).into(), 0).unwrap();
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
