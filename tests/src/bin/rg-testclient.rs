//! `rg-testclient`: the test client over real UDP sockets. It runs Main Mode and Quick Mode against
//! a server, sends `--count` ESP-protected UDP/1701 datagrams and expects each back from a server
//! started with `--test-echo`, then deletes its SAs. One line starting with RESULT says what
//! happened; exit 0 only if IKE, ESP both ways and the deletes worked.
//!
//! ```text
//! rg-testclient --server ADDR --local ADDR --psk-file FILE [--ike-port 500] [--natt-port 4500]
//!               [--count 5] [--force-encap] [--timeout-s 20] [--proposal modp2048|ecp256|modp1024]
//! ```
//! ESP goes over UDP only (NAT found, or `--force-encap`); raw protocol-50 ESP is exercised by the
//! strongSwan interop test instead.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use roadgate::ike::crypto::{CipherAlg, DhGroup, HashAlg};
use roadgate_tests::client::{IpsecClient, Received};
use roadgate_tests::initiator::{InitiatorConfig, InitiatorEvent, P1Proposal};

struct Args {
    server: IpAddr,
    local: IpAddr,
    psk: Vec<u8>,
    ike_port: u16,
    natt_port: u16,
    count: usize,
    force_encap: bool,
    timeout: Duration,
    group: DhGroup,
}

fn parse() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let (mut server, mut local, mut psk) = (None, None, None);
    let mut args = Args {
        server: IpAddr::from([0, 0, 0, 0]),
        local: IpAddr::from([0, 0, 0, 0]),
        psk: Vec::new(),
        ike_port: 500,
        natt_port: 4500,
        count: 5,
        force_encap: false,
        timeout: Duration::from_secs(20),
        group: DhGroup::Modp2048,
    };
    while let Some(k) = a.next() {
        let mut v = || a.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--server" => server = Some(v()?.parse().map_err(|e| format!("--server: {e}"))?),
            "--local" => local = Some(v()?.parse().map_err(|e| format!("--local: {e}"))?),
            "--psk-file" => {
                let p = v()?;
                let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
                psk = Some(s.trim_end_matches(['\r', '\n']).as_bytes().to_vec());
            }
            "--ike-port" => args.ike_port = v()?.parse().map_err(|e| format!("--ike-port: {e}"))?,
            "--natt-port" => {
                args.natt_port = v()?.parse().map_err(|e| format!("--natt-port: {e}"))?
            }
            "--count" => args.count = v()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--timeout-s" => {
                args.timeout =
                    Duration::from_secs(v()?.parse().map_err(|e| format!("--timeout-s: {e}"))?)
            }
            "--force-encap" => args.force_encap = true,
            "--proposal" => {
                args.group = match v()?.as_str() {
                    "modp2048" => DhGroup::Modp2048,
                    "modp1024" => DhGroup::Modp1024,
                    "ecp256" => DhGroup::Ecp256,
                    "ecp384" => DhGroup::Ecp384,
                    other => return Err(format!("unknown --proposal {other}")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    args.server = server.ok_or("--server is required")?;
    args.local = local.ok_or("--local is required")?;
    args.psk = psk.ok_or("--psk-file is required")?;
    Ok(args)
}

fn run(args: &Args) -> Result<String, String> {
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

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rg-testclient: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(line) => {
            println!("RESULT status=PASS {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("RESULT status=FAIL error={e:?}");
            ExitCode::FAILURE
        }
    }
}
