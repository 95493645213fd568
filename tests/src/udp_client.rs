//! The test client over real UDP sockets (loopback, network namespaces): Main Mode and Quick Mode,
//! then `count` ESP-protected UDP/1701 datagrams that a server started with `--test-echo` sends
//! back, then Deletes. ESP goes over UDP only (NAT found, or `force_encap`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

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
}

/// Runs one client; `Ok` holds the summary fields of a RESULT line.
pub fn run(args: &Args) -> Result<String, String> {
    let s500 = UdpSocket::bind((args.local, args.ike_port))
        .map_err(|e| format!("bind {}:{}: {e}", args.local, args.ike_port))?;
    let s4500 = UdpSocket::bind((args.local, args.natt_port))
        .map_err(|e| format!("bind {}:{}: {e}", args.local, args.natt_port))?;
    for s in [&s500, &s4500] {
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
    }
    let local = SocketAddr::new(args.local, args.ike_port);
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
                    ipsec_ms = start.elapsed().as_millis();
                    if !encap {
                        return Err("server chose raw ESP; this client speaks UDP-encapsulated ESP only (use --force-encap)".into());
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
        if encap && sent < args.count && sent == echoed {
            let payload = format!("roadgate-echo-{sent}");
            let d = client
                .seal_l2tp(payload.as_bytes())
                .ok_or("no SA to seal with")?;
            s4500
                .send_to(&d.data, d.remote)
                .map_err(|e| format!("send ESP: {e}"))?;
            sent += 1;
        }
        if encap && echoed == args.count && !deleting {
            client.initiator_mut().delete_all();
            deleting = true;
            continue;
        }
        for (sock, port) in [(&s500, args.ike_port), (&s4500, args.natt_port)] {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let here = SocketAddr::new(args.local, port);
                match client.handle_udp(Instant::now(), here, from, &buf[..n]) {
                    Received::L2tp { payload, .. } => {
                        let want = format!("roadgate-echo-{echoed}");
                        if payload == want.as_bytes() {
                            echoed += 1;
                        } else {
                            return Err(format!(
                                "echo mismatch: got {:?}",
                                String::from_utf8_lossy(&payload)
                            ));
                        }
                    }
                    Received::EspError { error, .. } => {
                        return Err(format!("ESP from server rejected: {error}"));
                    }
                    _ => {}
                }
            }
        }
        if let Some(t) = client.poll_timeout()
            && Instant::now() >= t
        {
            client.handle_timeout(Instant::now());
        }
    }
    Ok(format!(
        "ike=up esp=up encap={} echo={echoed}/{} ike_alg={} ipsec_ms={ipsec_ms}",
        if encap { "yes" } else { "no" },
        args.count,
        algorithms.replace(' ', "_")
    ))
}
