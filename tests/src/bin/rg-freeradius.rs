//! `rg-freeradius`: writes a FreeRADIUS 3 configuration for the shell tests and checks it with
//! `freeradius -C`; the script starts the server itself (in its network namespace).
//!
//! ```text
//! rg-freeradius --dir DIR --auth-port N --acct-port N --secret-file F --users FILE
//!               [--listen 127.0.0.1] [--client 127.0.0.1] [--eap-default md5|mschapv2|tls]
//!               [--eap-tls-cert PEM --eap-tls-key PEM --eap-tls-ca PEM]
//! ```

use std::process::ExitCode;

use std::path::PathBuf;

use roadgate_tests::freeradius::{EapTls, Setup, write_config};

const USAGE: &str = "usage: rg-freeradius --dir DIR --auth-port N --acct-port N --secret-file F \
                     --users FILE [--listen 127.0.0.1] [--client 127.0.0.1] \
                     [--eap-default md5|mschapv2|tls] \
                     [--eap-tls-cert PEM --eap-tls-key PEM --eap-tls-ca PEM]";

fn parse() -> Result<Setup, String> {
    let lo = [127, 0, 0, 1].into();
    let mut s = Setup::new(PathBuf::new(), lo, (0, 0), lo);
    let (mut cert, mut key, mut ca) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        let mut v = || args.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--dir" => s.dir = v()?.into(),
            "--auth-port" => s.auth_port = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            "--acct-port" => s.acct_port = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            "--listen" => s.listen = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            "--client" => s.client = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            "--secret-file" => {
                let f = v()?;
                s.secret = std::fs::read_to_string(&f)
                    .map_err(|e| format!("{f}: {e}"))?
                    .trim_end()
                    .to_string();
            }
            "--users" => {
                let f = v()?;
                s.users = std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?;
            }
            "--eap-default" => s.eap_default = v()?,
            "--eap-tls-cert" => cert = Some(PathBuf::from(v()?)),
            "--eap-tls-key" => key = Some(PathBuf::from(v()?)),
            "--eap-tls-ca" => ca = Some(PathBuf::from(v()?)),
            _ => return Err(USAGE.into()),
        }
    }
    s.eap_tls = match (cert, key, ca) {
        (Some(certificate), Some(private_key), Some(ca)) => Some(EapTls {
            certificate,
            private_key,
            ca,
        }),
        (None, None, None) => None,
        _ => return Err("--eap-tls-cert, --eap-tls-key and --eap-tls-ca go together".into()),
    };
    if s.dir.as_os_str().is_empty() || s.auth_port == 0 || s.acct_port == 0 || s.secret.is_empty() {
        return Err(USAGE.into());
    }
    Ok(s)
}

fn main() -> ExitCode {
    match parse().and_then(|s| write_config(&s)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rg-freeradius: {e}");
            ExitCode::from(2)
        }
    }
}
