//! `rg-testclient`: the test client over real UDP sockets. It runs Main Mode and Quick Mode against
//! a server, sends `--count` ESP-protected UDP/1701 datagrams and expects each back from a server
//! started with `--test-echo`, then deletes its SAs. One line starting with RESULT says what
//! happened; exit 0 only if IKE, ESP both ways and the deletes worked.
//!
//! ```text
//! rg-testclient --server ADDR --local ADDR --psk-file FILE [--ike-port 500] [--natt-port 4500]
//!               [--local-ports IKE,NATT] [--count 5] [--force-encap] [--raw-esp] [--timeout-s 20]
//!               [--proposal modp2048|ecp256|modp1024]
//! ```
//! Addresses are IPv4 or IPv6. ESP goes over UDP (NAT found, or `--force-encap`) or, with
//! `--raw-esp` (needs CAP_NET_RAW), as IP protocol 50 when the server chooses it. Every datagram
//! must come from `--server` (a multi-homed server answers from the address it was asked on).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use roadgate::ike::crypto::DhGroup;
use roadgate_tests::initiator::group_by_name;
use roadgate_tests::udp_client::{Args, run};

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
        local_ports: None,
        raw_esp: false,
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
            "--raw-esp" => args.raw_esp = true,
            "--local-ports" => {
                let v = v()?;
                let (i, n) = v
                    .split_once(',')
                    .ok_or("--local-ports wants IKE,NATT (two ports)")?;
                let p = |s: &str| s.parse::<u16>().map_err(|e| format!("--local-ports: {e}"));
                args.local_ports = Some((p(i)?, p(n)?));
            }
            "--proposal" => {
                let name = v()?;
                args.group = group_by_name(&name).ok_or(format!("unknown --proposal {name}"))?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    args.server = server.ok_or("--server is required")?;
    args.local = local.ok_or("--local is required")?;
    args.psk = psk.ok_or("--psk-file is required")?;
    Ok(args)
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
