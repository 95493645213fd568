//! `rg-client`: one full L2TP/IPsec client (IKEv1 + ESP + L2TP LAC + PPP) over real sockets, with
//! a TUN device carrying the address PPP got, so that ping and TCP go through the tunnel.
//!
//! ```text
//! rg-client --server IP --local IP --psk-file F --user U --password-file F
//!           [--ike-port 500] [--natt-port 4500] [--server-ike-port 500] [--server-natt-port 4500]
//!           [--pap | --chap] [--force-encap] [--group modp2048|modp1024|ecp256|ecp384]
//!           [--tun NAME | --no-tun] [--tun-mtu N] [--route CIDR]...
//!           [--lifetime-ike S] [--lifetime-esp S] [--connect-timeout S]
//!           [--hold S] [--exit-after-up] [--no-delete] [--no-initial-contact]
//! ```
//!
//! Progress lines on standard output: `IKE up ...`, `L2TP up tunnel=.. session=..`,
//! `PPP up ip=.. dns=..`, `REKEY phase=1|2 ...`, `DOWN reason=..`, `CLOSED`, and a last
//! `RESULT status=PASS|FAIL|DOWN ...` line (a failure names `stage=ike|l2tp|ppp|auth|setup` and
//! a reason). Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, `--hold`, `--exit-after-up`), 1 a
//! failure, 2 bad arguments, 3 the server ended the connection. On a stop it sends LCP Terminate,
//! CDN, StopCCN and IKE Deletes, in that order; with `--no-delete` it leaves without a word.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Duration;

use roadgate_tests::full_client::{Args, Config, Outcome, run};
use roadgate_tests::initiator::group_by_name;

const USAGE: &str =
    "usage: rg-client --server IP --local IP --psk-file F --user U --password-file F
          [--ike-port 500] [--natt-port 4500] [--server-ike-port 500] [--server-natt-port 4500]
          [--pap | --chap] [--force-encap] [--group modp2048|modp1024|ecp256|ecp384]
          [--tun NAME (rgc0) | --no-tun] [--tun-mtu N] [--route CIDR]...
          [--lifetime-ike S] [--lifetime-esp S] [--connect-timeout S]
          [--hold S] [--exit-after-up] [--no-delete] [--no-initial-contact]
          [--blast-to IPV4 [--blast-seconds S (5)] [--blast-size BYTES (1400)]]";

fn read_line_file(path: &str) -> Result<String, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_owned())
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let a: Ipv4Addr = a.parse().map_err(|e| format!("--route {s}: {e}"))?;
    let l: u8 = l.parse().map_err(|e| format!("--route {s}: {e}"))?;
    if l > 32 {
        return Err(format!("--route {s}: prefix length above 32"));
    }
    Ok((a, l))
}

fn secs(k: &str, v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{k}: {e}"))
}

fn parse() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let (mut server, mut local, mut psk, mut user, mut password) = (None, None, None, None, None);
    let mut cfg = Config::new(
        IpAddr::from([0, 0, 0, 0]),
        IpAddr::from([0, 0, 0, 0]),
        b"",
        "",
        "",
    );
    let (mut server_ike, mut server_natt) = (500u16, 4500u16);
    let mut args = Args {
        client: cfg.clone(),
        tun: Some("rgc0".into()),
        tun_mtu: None,
        routes: Vec::new(),
        hold: None,
        exit_after_up: false,
        no_delete: false,
        blast: None,
    };
    let (mut blast_to, mut blast_seconds, mut blast_size) = (None, 5u64, 1400usize);
    while let Some(k) = a.next() {
        let mut v = || a.next().ok_or(format!("{k} needs a value"));
        let port = |x: String| x.parse::<u16>().map_err(|e| format!("{k}: {e}"));
        match k.as_str() {
            "--server" => server = Some(v()?.parse().map_err(|e| format!("--server: {e}"))?),
            "--local" => local = Some(v()?.parse().map_err(|e| format!("--local: {e}"))?),
            "--psk-file" => psk = Some(read_line_file(&v()?)?),
            "--user" => user = Some(v()?),
            "--password-file" => password = Some(read_line_file(&v()?)?),
            "--ike-port" => cfg.local.set_port(port(v()?)?),
            "--natt-port" => cfg.local_natt_port = port(v()?)?,
            "--server-ike-port" => server_ike = port(v()?)?,
            "--server-natt-port" => server_natt = port(v()?)?,
            "--pap" => cfg.pap = true,
            "--chap" => cfg.chap = true,
            "--force-encap" => cfg.force_encap = true,
            "--no-initial-contact" => cfg.initial_contact = false,
            "--group" => {
                let name = v()?;
                cfg.group = group_by_name(&name).ok_or(format!("unknown --group {name}"))?;
            }
            "--tun" => args.tun = Some(v()?),
            "--no-tun" => args.tun = None,
            "--tun-mtu" => {
                args.tun_mtu = Some(v()?.parse().map_err(|e| format!("--tun-mtu: {e}"))?)
            }
            "--route" => args.routes.push(parse_cidr(&v()?)?),
            "--lifetime-ike" => cfg.ike_lifetime = secs(&k, &v()?)?,
            "--lifetime-esp" => cfg.esp_lifetime = secs(&k, &v()?)?,
            "--connect-timeout" => cfg.connect_timeout = secs(&k, &v()?)?,
            "--hold" => args.hold = Some(secs(&k, &v()?)?),
            "--exit-after-up" => args.exit_after_up = true,
            "--no-delete" => args.no_delete = true,
            "--blast-to" => {
                blast_to = Some(
                    v()?.parse::<Ipv4Addr>()
                        .map_err(|e| format!("--blast-to: {e}"))?,
                )
            }
            "--blast-seconds" => {
                blast_seconds = v()?.parse().map_err(|e| format!("--blast-seconds: {e}"))?
            }
            "--blast-size" => {
                blast_size = v()?.parse().map_err(|e| format!("--blast-size: {e}"))?;
                if !(28..=1400).contains(&blast_size) {
                    return Err("--blast-size: 28 to 1400 bytes".into());
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let server: IpAddr = server.ok_or("--server is required")?;
    let local: IpAddr = local.ok_or("--local is required")?;
    cfg.local.set_ip(local);
    cfg.server = std::net::SocketAddr::new(server, server_ike);
    cfg.server_natt_port = server_natt;
    cfg.psk = psk.ok_or("--psk-file is required")?.into_bytes();
    cfg.user = user.ok_or("--user is required")?;
    cfg.password = zeroize::Zeroizing::new(password.ok_or("--password-file is required")?);
    getrandom_seed(&mut cfg.seed);
    args.blast = blast_to.map(|dst| roadgate_tests::full_client::Blast {
        dst,
        len: blast_size,
        batch: 4096,
        duration: Duration::from_secs(blast_seconds),
    });
    args.client = cfg;
    Ok(args)
}

/// A fresh seed from the OS (two clients must not pick the same SPIs, cookies and nonces).
fn getrandom_seed(seed: &mut [u8; 32]) {
    use rand::Rng;
    rand::make_rng::<rand_chacha::ChaCha20Rng>().fill_bytes(seed);
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rg-client: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rg-client: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mut report = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let outcome = rt.block_on(async {
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        run(&args, stop, &mut report).await
    });
    let line = match &outcome {
        Outcome::Stopped => "RESULT status=PASS stopped=clean".to_owned(),
        Outcome::Abandoned => "RESULT status=PASS stopped=abandoned".to_owned(),
        Outcome::Failed { stage, reason } => format!(
            "RESULT status=FAIL stage={} reason={reason:?}",
            stage.as_str()
        ),
        Outcome::Down { reason } => format!("RESULT status=DOWN reason={reason}"),
    };
    report(&line);
    ExitCode::from(outcome.exit_code())
}
