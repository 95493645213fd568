//! The first start of `roadgate serve` on a fresh state folder: the pre-shared key, the first VPN
//! user and the first web administrator are made here, and their secrets are written to
//! [`FIRST_START_FILE`] (mode 0600) in the state folder, because nobody reads a service's standard
//! output. The log gets one line naming that file and no secret.
//!
//! It happens once: only when the state folder has neither that file nor a user or admin
//! database. The file is created with `O_EXCL` and never overwritten; the admin deletes it after
//! reading it. When standard output is not the journal (an interactive start, a test), the same
//! secrets are also printed there as before.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::aaa::local::{DATABASE_FILE, UserOptions, UserStore};
use crate::config::{self, PskSource, Settings};
use crate::io::web::{FIRST_ADMIN, WEB_DB_FILE};

/// The file in the state folder that holds what the first start made.
pub const FIRST_START_FILE: &str = "first-start.txt";

/// The VPN user a fresh state folder starts with.
pub const FIRST_USER: &str = "vpnuser";

/// What the first start made, for the file and (off the journal) standard output.
struct Made {
    psk: Option<Zeroizing<String>>,
    user_password: Zeroizing<String>,
    admin_password: Option<Zeroizing<String>>,
}

/// Makes the pre-shared key (if the key comes from the state folder), the first VPN user and, if
/// the web UI is on, the first web admin, when the state folder is fresh; writes them to
/// [`FIRST_START_FILE`] and logs its path. Returns that path, or `None` when the folder was not
/// fresh (then nothing is made or written).
pub fn run(settings: &mut Settings) -> Result<Option<PathBuf>, String> {
    let state = settings.state_dir.clone();
    let file = state.join(FIRST_START_FILE);
    if file.exists() || state.join(DATABASE_FILE).exists() || state.join(WEB_DB_FILE).exists() {
        return Ok(None);
    }
    // Creates the folder (0700) and the key file, unless the key is configured elsewhere.
    let psk = settings.prepare_state()?;
    let user_password = config::random_text(16);
    UserStore::open(&state)
        .and_then(|users| users.add(FIRST_USER, &user_password, &UserOptions::default()))
        .map_err(|e| format!("first start: the first VPN user: {e}"))?;
    let admin_password = if settings.web.enabled {
        let db = state.join(WEB_DB_FILE);
        let password = config::random_text(16);
        web::AdminStore::open(&db)
            .and_then(|admins| admins.create_admin(FIRST_ADMIN, &password))
            .map_err(|e| format!("first start: the web admin ({}): {e}", db.display()))?;
        Some(password)
    } else {
        None
    };
    let made = Made {
        psk,
        user_password,
        admin_password,
    };
    let text = render(settings, &made);
    write_new(&file, text.as_bytes()).map_err(|e| {
        format!(
            "first start: {}: {e} (the key is in {}; set new passwords with `roadgate user passwd \
             {FIRST_USER}` and `roadgate admin passwd {FIRST_ADMIN}`)",
            file.display(),
            state.join(config::STATE_PSK_FILE).display()
        )
    })?;
    tracing::info!(
        file = %file.display(),
        "first start: the pre-shared key, the first VPN user and the web admin are in this file \
         (mode 0600, readable by root and the service user); delete it once read"
    );
    if !stdout_is_journal() {
        print_once(settings, &made);
    }
    Ok(Some(file))
}

/// The first-start file: `key: value` lines (the secrets on lines of their own) with comments.
fn render(settings: &Settings, made: &Made) -> Zeroizing<String> {
    let state = settings.state_dir.display();
    let mut t = Zeroizing::new(String::new());
    t.push_str(
        "# Roadgate: what the first start made. Written once, never again; delete this file once\n\
         # the secrets are kept somewhere safe.\n",
    );
    let psk_path = settings.state_dir.join(config::STATE_PSK_FILE);
    match (&made.psk, &settings.psk_source) {
        (Some(psk), _) => {
            t.push_str(&format!("psk: {}\n", psk.as_str()));
            t.push_str(&format!("psk_file: {}\n", psk_path.display()));
        }
        (None, PskSource::StateDir) => {
            t.push_str(&format!("psk_file: {}\n", psk_path.display()));
        }
        (None, PskSource::File(p)) => t.push_str(&format!("psk_file: {}\n", p.display())),
        (None, PskSource::Inline) => {
            t.push_str("# psk: ipsec.psk in the configuration file\n");
        }
    }
    t.push_str(&format!("vpn_user: {FIRST_USER}\n"));
    t.push_str(&format!("vpn_password: {}\n", made.user_password.as_str()));
    t.push_str(&format!(
        "# more VPN users: roadgate user --state {state} add NAME\n"
    ));
    match &made.admin_password {
        Some(pw) => {
            t.push_str(&format!("web_admin: {FIRST_ADMIN}\n"));
            t.push_str(&format!("web_password: {}\n", pw.as_str()));
            t.push_str(&format!("web_url: {}\n", web_url(settings)));
            t.push_str(&format!(
                "# change it: roadgate admin --state {state} passwd {FIRST_ADMIN}\n"
            ));
        }
        None => t.push_str("# web UI: off ([web] enabled = false)\n"),
    }
    t
}

/// The web UI's address as an admin types it.
fn web_url(settings: &Settings) -> String {
    let bind = settings.web.bind;
    if bind.ip().is_unspecified() {
        format!("https://<this server's address>:{}/", bind.port())
    } else {
        format!("https://{bind}/")
    }
}

/// The lines `serve` printed before the first-start file existed (tests and interactive users
/// read them).
fn print_once(settings: &Settings, made: &Made) {
    let state = settings.state_dir.display();
    if let Some(psk) = &made.psk {
        println!(
            "Generated pre-shared key (shown once; kept in {}): {}",
            settings.state_dir.join(config::STATE_PSK_FILE).display(),
            psk.as_str()
        );
    }
    println!(
        "Created the first VPN user (password shown once): {FIRST_USER} / {}\n\
         Add more with: roadgate user --state {state} add NAME",
        made.user_password.as_str()
    );
    if let Some(pw) = &made.admin_password {
        println!(
            "Created the web admin (password shown once): {FIRST_ADMIN} / {}\n\
             Change it with: roadgate admin --state {state} passwd {FIRST_ADMIN}",
            pw.as_str()
        );
    }
}

/// Creates `path` (mode 0600; an existing file is an error, never overwritten) with `bytes`, and
/// syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Whether standard output goes to the systemd journal: systemd sets `JOURNAL_STREAM` to the
/// stream's `device:inode` (systemd.exec(5)), and a service's standard output is the journal by
/// default. Secrets printed there would be logged.
fn stdout_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = fs::metadata("/proc/self/fd/1") else {
        // Cannot tell: do not risk printing secrets into a log.
        return true;
    };
    is_journal_stream(&stream, meta.dev(), meta.ino())
}

fn is_journal_stream(stream: &str, dev: u64, ino: u64) -> bool {
    match stream.split_once(':') {
        Some((d, i)) => d.parse() == Ok(dev) && i.parse() == Ok(ino),
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::scratch::Scratch;

    fn settings(state: &Path, web: bool) -> Settings {
        let s = Scratch::new("first-start-cfg");
        let cfg = s.write(
            "roadgate.toml",
            &format!(
                "[server]\nstate_dir = \"{}\"\n[web]\nenabled = {web}\n",
                state.display()
            ),
        );
        config::load_with(Some(&cfg), &Overrides::default()).unwrap()
    }

    /// `key: value` of the file.
    fn field(text: &str, key: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_string))
    }

    #[test]
    fn fresh_state_gets_secrets_in_a_0600_file_once() {
        let scratch = Scratch::new("first-start");
        let state = scratch.0.join("state");
        let mut s = settings(&state, true);
        let file = run(&mut s).unwrap().expect("a fresh folder gets the file");
        assert_eq!(file, state.join(FIRST_START_FILE));
        let meta = fs::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
        let text = fs::read_to_string(&file).unwrap();

        // The key in the file is the key the server uses (the psk file in the state folder).
        let psk = field(&text, "psk").unwrap();
        assert_eq!(psk.len(), 24);
        let kept = fs::read_to_string(state.join(config::STATE_PSK_FILE)).unwrap();
        assert_eq!(kept.trim(), psk);

        // The VPN user logs in with the password in the file.
        assert_eq!(field(&text, "vpn_user").as_deref(), Some(FIRST_USER));
        let pw = field(&text, "vpn_password").unwrap();
        let user = UserStore::open(&state)
            .unwrap()
            .find(FIRST_USER)
            .unwrap()
            .unwrap();
        assert_eq!(
            *user.nt_hash,
            pppd_lite::mschapv2::nt_password_hash(&pw),
            "the stored user's password is the one in the file"
        );

        // So does the web admin.
        assert_eq!(field(&text, "web_admin").as_deref(), Some(FIRST_ADMIN));
        let admin_pw = field(&text, "web_password").unwrap();
        let admins = web::AdminStore::open(&state.join(WEB_DB_FILE)).unwrap();
        assert!(admins.verify_login(FIRST_ADMIN, &admin_pw).unwrap());
        assert!(!admins.verify_login(FIRST_ADMIN, "wrong password!").unwrap());
        assert_eq!(
            field(&text, "web_url").as_deref(),
            Some("https://127.0.0.1:8443/")
        );

        // A second start: nothing made, nothing rewritten, the same key and password.
        let mut again = settings(&state, true);
        assert_eq!(run(&mut again).unwrap(), None);
        assert_eq!(fs::read_to_string(&file).unwrap(), text);
        assert_eq!(
            fs::read_to_string(state.join(config::STATE_PSK_FILE)).unwrap(),
            kept
        );
        assert_eq!(UserStore::open(&state).unwrap().list().unwrap().len(), 1);

        // Even with the file deleted (read by the admin), the databases mark the folder as used.
        fs::remove_file(&file).unwrap();
        let mut third = settings(&state, true);
        assert_eq!(run(&mut third).unwrap(), None);
        assert!(!file.exists());
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let scratch = Scratch::new("first-start-keep");
        let state = scratch.0.join("state");
        fs::create_dir_all(&state).unwrap();
        fs::write(state.join(FIRST_START_FILE), "mine\n").unwrap();
        let mut s = settings(&state, true);
        assert_eq!(run(&mut s).unwrap(), None);
        assert_eq!(
            fs::read_to_string(state.join(FIRST_START_FILE)).unwrap(),
            "mine\n"
        );
        assert!(!state.join(DATABASE_FILE).exists(), "no user was made");
        assert!(!state.join(WEB_DB_FILE).exists(), "no admin was made");
    }

    #[test]
    fn a_used_state_folder_is_not_a_first_start() {
        let scratch = Scratch::new("first-start-used");
        let state = scratch.0.join("state");
        fs::create_dir_all(&state).unwrap();
        UserStore::open(&state)
            .unwrap()
            .add("alice", "alice's password", &UserOptions::default())
            .unwrap();
        let mut s = settings(&state, true);
        assert_eq!(run(&mut s).unwrap(), None);
        assert!(!state.join(FIRST_START_FILE).exists());
        assert!(
            UserStore::open(&state)
                .unwrap()
                .find(FIRST_USER)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn web_off_makes_no_admin() {
        let scratch = Scratch::new("first-start-noweb");
        let state = scratch.0.join("state");
        let mut s = settings(&state, false);
        let file = run(&mut s).unwrap().unwrap();
        let text = fs::read_to_string(file).unwrap();
        assert!(field(&text, "vpn_password").is_some());
        assert!(field(&text, "web_admin").is_none());
        assert!(!state.join(WEB_DB_FILE).exists());
    }

    #[test]
    fn journal_stream_is_matched_by_device_and_inode() {
        assert!(is_journal_stream("8:12345", 8, 12345));
        assert!(!is_journal_stream("8:12345", 8, 12346));
        assert!(!is_journal_stream("9:12345", 8, 12345));
        assert!(!is_journal_stream("garbage", 8, 12345));
    }
}
