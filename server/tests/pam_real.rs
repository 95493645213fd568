//! The PAM backend against the real PAM and pam_unix: a throw-away system user and PAM service
//! file, removed afterwards even when an assertion fails. Needs root; skipped otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use pppd_lite::{AuthRequest, Credentials, Verdict};
use roadgate::aaa::REJECTED;
use roadgate::aaa::pam::{PamRefusal, pam_check, pam_decision};
use zeroize::Zeroizing;

/// Removes the user and the service file when dropped.
struct Cleanup {
    user: String,
    service_file: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = std::fs::remove_file(&self.service_file);
    }
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

fn pap(user: &str, pw: &str) -> AuthRequest {
    AuthRequest {
        id: 1,
        user: user.into(),
        credentials: Credentials::Pap {
            password: Zeroizing::new(pw.as_bytes().to_vec()),
        },
    }
}

/// Checks that `req` is refused with the outward message of every backend and returns why.
fn refused(service: &str, req: &AuthRequest) -> PamRefusal {
    assert_eq!(
        pam_decision(service, req).verdict,
        Verdict::reject(REJECTED)
    );
    pam_check(service, req).unwrap_err()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn pam_real() {
    if !is_root() {
        println!("SKIP pam_real: needs root (creates a system user and a PAM service file)");
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!("{:x}{:x}", std::process::id(), nanos);
    let user = format!("rgpam{}", &tag[..tag.len().min(20)]);
    let service = format!("roadgate-test-{tag}");
    let guard = Cleanup {
        user: user.clone(),
        service_file: PathBuf::from("/etc/pam.d").join(&service),
    };
    std::fs::write(
        &guard.service_file,
        "auth required pam_unix.so\naccount required pam_unix.so\n",
    )
    .unwrap();
    run("useradd", &["-M", "-s", "/usr/sbin/nologin", &user]);
    let password = "c0rrect-Horse";
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(chpasswd.stdin.take().unwrap(), "{user}:{password}").unwrap();
    assert!(chpasswd.wait().unwrap().success());

    // The right password.
    let d = pam_decision(&service, &pap(&user, password));
    assert!(matches!(d.verdict, Verdict::Accept(_)), "{d:?}");
    assert_eq!(d.user.as_deref(), Some(user.as_str()));
    // A DOMAIN\ prefix is dropped, as for local users.
    let d = pam_decision(&service, &pap(&format!("CORP\\{user}"), password));
    assert!(matches!(d.verdict, Verdict::Accept(_)), "{d:?}");
    println!("pam_real: right password accepted");

    // A wrong password.
    let why = refused(&service, &pap(&user, "wrong-password"));
    assert!(matches!(why, PamRefusal::Authenticate(_)), "{why:?}");
    println!("pam_real: wrong password refused: {why}");

    // An unknown user.
    // pam_unix says PAM_USER_UNKNOWN: the chain passes such a user to its next backend.
    let why = refused(&service, &pap(&format!("{user}x"), password));
    assert!(matches!(why, PamRefusal::UnknownUser), "{why:?}");
    println!("pam_real: unknown user refused: {why}");

    // MS-CHAPv2 cannot be checked by PAM.
    let ms = AuthRequest {
        id: 2,
        user: user.clone(),
        credentials: Credentials::MsChapV2 {
            authenticator_challenge: [1; 16],
            peer_challenge: [2; 16],
            nt_response: [3; 24],
        },
    };
    let why = refused(&service, &ms).to_string();
    assert!(
        why.contains("PAM can only check PAP passwords; the client used MS-CHAPv2"),
        "{why}"
    );
    println!("pam_real: MS-CHAPv2 refused: {why}");

    // An expired account: the password is right, acct_mgmt refuses.
    run("usermod", &["-e", "1970-01-02", &user]);
    let right = pap(&user, password);
    let why = refused(&service, &right);
    assert!(matches!(why, PamRefusal::Account(_)), "{why:?}");
    run("usermod", &["-e", "", &user]);
    assert!(matches!(
        pam_decision(&service, &right).verdict,
        Verdict::Accept(_)
    ));
    println!("pam_real: expired account refused: {why}");

    // A locked account.
    run("usermod", &["-L", &user]);
    let why = refused(&service, &right);
    println!("pam_real: locked account refused: {why}");

    drop(guard);
    assert!(
        !PathBuf::from("/etc/pam.d").join(&service).exists(),
        "service file left behind"
    );
}
