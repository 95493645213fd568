//! The test client over real UDP sockets (loopback, network namespaces): Main Mode and Quick Mode,
//! then `count` ESP-protected UDP/1701 datagrams that a server started with `--test-echo` sends
//! back, then Deletes. ESP goes over UDP (NAT found, or `force_encap`) or, with `raw_esp` (root),
//! as IP protocol 50. Every datagram must come from the address the client sends to (a
//! multi-homed server answers from the address it was asked on), and over IPv6 the echoed UDP
//! must carry a right checksum.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::socket::{SockaddrStorage, recvfrom};
use socket2::{Domain, Protocol, Socket, Type};

use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};

use crate::client::{IpsecClient, Received};
use crate::initiator::{InitiatorConfig, InitiatorEvent, P1Proposal};

/// What to run.
#[derive(Debug, Clone)]
pub struct Args {
    pub server: IpAddr,
    pub local: IpAddr,
    pub psk: Vec<u8>,
    pub ike_port: u16,
    pub natt_port: u16,
    pub count: usize,
    pub force_encap: bool,
    pub timeout: Duration,
    pub group: DhGroup,
    /// The client's own IKE and NAT-T ports, when they must differ from the server's (client and
    /// server on one host); `None`: the server's.
    pub local_ports: Option<(u16, u16)>,
    /// Accept ESP without UDP encapsulation over a raw protocol-50 socket (needs CAP_NET_RAW).
    pub raw_esp: bool,
}

/// A raw socket for IP protocol 50 (ESP) bound to `local`.
fn raw_esp_socket(local: IpAddr) -> Result<Socket, String> {
    let sa = SocketAddr::new(local, 0);
    let s = Socket::new(Domain::for_address(sa), Type::RAW, Some(Protocol::from(50)))
        .map_err(|e| format!("raw ESP socket (needs CAP_NET_RAW): {e}"))?;
    s.bind(&sa.into())
        .map_err(|e| format!("bind raw {local}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// One ESP packet from a raw socket: (its sender, where the ESP starts in `buf`, its end). An
/// IPv4 raw socket hands over the IP header, an IPv6 one does not.
fn raw_recv(s: &Socket, buf: &mut [u8]) -> Option<(IpAddr, usize, usize)> {
    use std::os::fd::AsRawFd;
    let (n, from) = recvfrom::<SockaddrStorage>(s.as_raw_fd(), buf).ok()?;
    if let Some(v6) = from.as_ref().and_then(|a| a.as_sockaddr_in6()) {
        return Some((IpAddr::V6(v6.ip()), 0, n));
    }
    let ihl = usize::from(buf.first()? & 0x0f) * 4;
    let src = buf.get(12..16)?;
    let src = IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]));
    (ihl >= 20 && ihl <= n).then_some((src, ihl, n))
}

/// Runs one client; `Ok` holds the summary fields of a RESULT line.
pub fn run(args: &Args) -> Result<String, String> {
    let (my_ike, my_natt) = args.local_ports.unwrap_or((args.ike_port, args.natt_port));
    let s500 = UdpSocket::bind((args.local, my_ike))
        .map_err(|e| format!("bind {}:{my_ike}: {e}", args.local))?;
    let s4500 = UdpSocket::bind((args.local, my_natt))
        .map_err(|e| format!("bind {}:{my_natt}: {e}", args.local))?;
    for s in [&s500, &s4500] {
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
    }
    let raw = if args.raw_esp {
        Some(raw_esp_socket(args.local)?)
    } else {
        None
    };
    let local = SocketAddr::new(args.local, my_ike);
    let server = SocketAddr::new(args.server, args.ike_port);
    let mut cfg = InitiatorConfig::new(local, server, &args.psk);
    cfg.natt_port = args.natt_port;
    cfg.force_encap = args.force_encap;
    cfg.seed = u64::from(std::process::id());
    cfg.ike_proposals = vec![P1Proposal::new(
        CipherAlg::AesCbc { key_len: 32 },
        HashAlg::Sha256,
        args.group,
    )];
    let mut client = IpsecClient::new(cfg);
    let start = Instant::now();
    client.start(start);
    let deadline = start + args.timeout;
    let mut buf = vec![0u8; 65536];
    let (mut algorithms, mut encap, mut sent, mut echoed, mut deleting) =
        (String::new(), false, 0usize, 0usize, false);
    let mut esp_up = false;
    // A datagram not echoed in time is sent again (as a real client's L2TP would be): raw ESP
    // and the Quick Mode message that installs its SA reach the server on different sockets,
    // so the first ESP packet may be read, and dropped, before its SA exists.
    let (mut last_sent, mut resent) = (start, 0usize);
    let mut ipsec_ms = 0u128;
    loop {
        let now = Instant::now();
        if now > deadline {
            return Err(format!(
                "timeout (ike={} echo={echoed}/{})",
                if algorithms.is_empty() { "down" } else { "up" },
                args.count
            ));
        }
        while let Some(t) = client.poll_transmit() {
            let sock = if t.local.port() == args.natt_port {
                &s4500
            } else {
                &s500
            };
            sock.send_to(&t.data, t.remote)
                .map_err(|e| format!("send: {e}"))?;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                InitiatorEvent::Phase1Up { algorithms: a, .. } => algorithms = a,
                InitiatorEvent::ChildSaUp(info) => {
                    encap = info.udp_encap;
                    esp_up = true;
                    ipsec_ms = start.elapsed().as_millis();
                    if !encap && raw.is_none() {
                        return Err("server chose raw ESP; without --raw-esp this client speaks UDP-encapsulated ESP only (use --force-encap)".into());
                    }
                }
                InitiatorEvent::Failed { stage, reason } => {
                    return Err(format!("{stage:?} failed: {reason:?}"));
                }
                InitiatorEvent::Deleted(_) if deleting => {}
                _ => {}
            }
        }
        if deleting && client.poll_transmit().is_none() {
            break;
        }
        // Send the test datagrams once the SA is up.
        let overdue = sent > echoed && last_sent.elapsed() > Duration::from_millis(500);
        if overdue {
            sent -= 1;
            resent += 1;
        }
        if esp_up && sent < args.count && sent == echoed {
            last_sent = Instant::now();
            let payload = format!("roadgate-echo-{sent}");
            let d = client
                .seal_l2tp(payload.as_bytes())
                .ok_or("no SA to seal with")?;
            match (&raw, d.udp_encap) {
                (_, true) => s4500.send_to(&d.data, d.remote).map(|_| ()),
                (Some(r), false) => r
                    .send_to(&d.data, &SocketAddr::new(d.remote.ip(), 0).into())
                    .map(|_| ()),
                (None, false) => Ok(()),
            }
            .map_err(|e| format!("send ESP: {e}"))?;
            sent += 1;
        }
        if esp_up && echoed == args.count && !deleting {
            client.initiator_mut().delete_all();
            deleting = true;
            continue;
        }
        let mut received = Vec::new();
        for (sock, port) in [(&s500, args.ike_port), (&s4500, args.natt_port)] {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                check_source(from.ip(), args.server)?;
                let here = SocketAddr::new(args.local, port);
                received.push(client.handle_udp(Instant::now(), here, from, &buf[..n]));
            }
        }
        if let Some(r) = &raw
            && let Some((from, start, end)) = raw_recv(r, &mut buf)
        {
            check_source(from, args.server)?;
            received.push(client.open(&buf[start..end]));
        }
        for rx in received {
            match rx {
                Received::L2tp { payload, .. } => {
                    let want = format!("roadgate-echo-{echoed}");
                    let earlier =
                        (0..echoed).any(|k| payload == format!("roadgate-echo-{k}").as_bytes());
                    if payload == want.as_bytes() {
                        echoed += 1;
                    } else if !earlier {
                        return Err(format!(
                            "echo mismatch: got {:?}",
                            String::from_utf8_lossy(&payload)
                        ));
                    }
                }
                Received::EspError { error, .. } => {
                    return Err(format!("ESP from server rejected: {error}"));
                }
                Received::BadUdpChecksum { checksum, .. } => {
                    return Err(format!(
                        "echoed UDP over IPv6 with checksum {checksum:#06x}, which is not right"
                    ));
                }
                _ => {}
            }
        }
        if let Some(t) = client.poll_timeout()
            && Instant::now() >= t
        {
            client.handle_timeout(Instant::now());
        }
    }
    Ok(format!(
        "ike=up esp=up encap={} echo={echoed}/{} replies_from={} ike_alg={} ipsec_ms={ipsec_ms} resent={resent}",
        if encap { "yes" } else { "no" },
        args.count,
        args.server,
        algorithms.replace(' ', "_")
    ))
}

/// Every datagram must come from the address the client talks to.
fn check_source(from: IpAddr, server: IpAddr) -> Result<(), String> {
    if from == server {
        Ok(())
    } else {
        Err(format!(
            "reply from {from}, but the client talks to {server} (a reply must leave from the address its request came to)"
        ))
    }
}
