//! Helpers shared by the integration tests: temporary CAs and the openssl command.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ca::{Ca, InitParams, KeyKind};

/// A CA in a fresh temporary folder (kept alive by the returned guard).
pub fn new_ca(cn: &str, key: KeyKind, crl_url: Option<&str>) -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let mut params = InitParams::new(cn);
    params.key = key;
    params.organization = Some("Roadgate Test".into());
    params.crl_url = crl_url.map(str::to_owned);
    let ca = Ca::init(&state, &params).expect("Ca::init");
    (dir, ca)
}

/// Whether the openssl command can be run; prints why a test is skipped when it cannot.
pub fn have_openssl(test: &str) -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("SKIPPED {test}: the openssl command is not installed");
            false
        }
    }
}

/// Runs openssl with `args` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl")
}

/// stdout and stderr of a command, as one text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

/// A CRL in PEM.
pub fn crl_pem(der: &[u8]) -> String {
    der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, der).expect("pem")
}
