//! A real FreeRADIUS 3 server for tests (Debian's `freeradius`): a complete configuration
//! generated into a folder of the test's own (its users file, one client, PAP, CHAP, MS-CHAP,
//! EAP-MD5, EAP-MSCHAPv2 and optionally EAP-TLS, accounting into a detail file), started in the foreground and killed
//! when dropped. Used by the Rust tests and, through `rg-freeradius`, by the shell tests.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the server.
pub const FREERADIUS: &str = "/usr/sbin/freeradius";

/// Why FreeRADIUS tests cannot run here, if they cannot (not installed, or not root: the
/// server wants to read its configuration as root).
pub fn unavailable() -> Option<String> {
    if !Path::new(FREERADIUS).exists() {
        return Some(format!(
            "{FREERADIUS} is missing (apt-get install freeradius freeradius-utils)"
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if uid != "0" {
        return Some(format!("the test runs as uid {uid}, not root"));
    }
    None
}

/// What a generated server looks like.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The folder of its configuration, logs and detail file.
    pub dir: PathBuf,
    /// Where it listens (authentication and accounting ports).
    pub listen: IpAddr,
    pub auth_port: u16,
    pub acct_port: u16,
    /// The NAS it answers (its `client` entry) and the shared secret.
    pub client: IpAddr,
    pub secret: String,
    /// The users file's text (FreeRADIUS `files` module syntax).
    pub users: String,
    /// The EAP method the server proposes first (`md5`, `mschapv2` or, with `eap_tls`, `tls`).
    pub eap_default: String,
    /// EAP-TLS, when set: the server's certificate and key and the CA its clients' certificates
    /// must chain to.
    pub eap_tls: Option<EapTls>,
}

impl Setup {
    /// A server on `listen` with the NAS at `client`, proposing EAP-MD5 and with no EAP-TLS.
    pub fn new(dir: PathBuf, listen: IpAddr, ports: (u16, u16), client: IpAddr) -> Self {
        Setup {
            dir,
            listen,
            auth_port: ports.0,
            acct_port: ports.1,
            client,
            secret: String::new(),
            users: String::new(),
            eap_default: "md5".into(),
            eap_tls: None,
        }
    }
}

/// The PEM files of the EAP-TLS server side.
#[derive(Debug, Clone)]
pub struct EapTls {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub ca: PathBuf,
}

/// The `tls-config` and `tls` sections of the eap module, or nothing.
fn eap_tls_conf(tls: Option<&EapTls>) -> String {
    let Some(t) = tls else {
        return String::new();
    };
    format!(
        r#"		tls-config tls-common {{
			private_key_file = {key}
			certificate_file = {cert}
			ca_file = {ca}
			cipher_list = "DEFAULT"
			tls_min_version = "1.2"
			tls_max_version = "1.2"
			ecdh_curve = "prime256v1"
			fragment_size = 1024
			check_crl = no
			cache {{
				enable = no
			}}
			verify {{
			}}
		}}
		tls {{
			tls = tls-common
		}}
"#,
        key = t.private_key.display(),
        cert = t.certificate.display(),
        ca = t.ca.display(),
    )
}

/// The text of `radiusd.conf` for `s`. FreeRADIUS 3.2.1 predates the BlastRADIUS fixes and
/// does not sign every reply by itself: post-auth adds Message-Authenticator to each, as
/// current servers do.
pub fn radiusd_conf(s: &Setup) -> String {
    let dir = s.dir.display();
    let (listen, auth_port, acct_port, client, secret) =
        (s.listen, s.auth_port, s.acct_port, s.client, &s.secret);
    let eap_default = &s.eap_default;
    let eap_tls = eap_tls_conf(s.eap_tls.as_ref());
    format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddir = {dir}
confdir = ${{raddir}}
logdir = ${{raddir}}/log
radacctdir = ${{raddir}}/acct
run_dir = ${{raddir}}/run
db_dir = ${{raddir}}
libdir = /usr/lib/freeradius
certdir = ${{confdir}}
cadir = ${{confdir}}
modconfdir = ${{confdir}}
pidfile = ${{run_dir}}/radiusd.pid
name = freeradius
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
	destination = files
	file = ${{logdir}}/radius.log
	auth = yes
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}
thread pool {{
	start_servers = 1
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 2
	max_requests_per_server = 0
}}
client nas {{
	ipaddr = {client}
	secret = "{secret}"
	require_message_authenticator = yes
}}
modules {{
	pap {{
	}}
	chap {{
	}}
	mschap {{
	}}
	files {{
		filename = ${{confdir}}/users
	}}
	detail {{
		filename = ${{radacctdir}}/detail
		permissions = 0600
		header = "%t"
	}}
	eap {{
		default_eap_type = {eap_default}
		timer_expire = 60
		ignore_unknown_eap_types = no
		max_sessions = 64
		md5 {{
		}}
		mschapv2 {{
		}}
{eap_tls}	}}
}}
server default {{
	listen {{
		type = auth
		ipaddr = {listen}
		port = {auth_port}
	}}
	listen {{
		type = acct
		ipaddr = {listen}
		port = {acct_port}
	}}
	authorize {{
		chap
		mschap
		eap {{
			ok = return
		}}
		files
		pap
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
		Auth-Type CHAP {{
			chap
		}}
		Auth-Type MS-CHAP {{
			mschap
		}}
		eap
	}}
	accounting {{
		detail
	}}
	post-auth {{
		update reply {{
			Message-Authenticator := 0x00
		}}
		Post-Auth-Type REJECT {{
			update reply {{
				Message-Authenticator := 0x00
			}}
		}}
	}}
}}
"#
    )
}

/// Writes the configuration of `s` into `s.dir` (made if missing; the secret-bearing files
/// 0600) and checks it with `freeradius -C`.
pub fn write_config(s: &Setup) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for sub in ["log", "run", "acct"] {
        std::fs::create_dir_all(s.dir.join(sub))
            .map_err(|e| format!("{}: {e}", s.dir.display()))?;
    }
    let write = |name: &str, text: &str| -> Result<(), String> {
        let p = s.dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    write("dictionary", "")?;
    write("users", &s.users)?;
    write("radiusd.conf", &radiusd_conf(s))?;
    let check = Command::new(FREERADIUS)
        .args(["-C", "-d"])
        .arg(&s.dir)
        .output()
        .map_err(|e| format!("{FREERADIUS}: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "freeradius -C failed: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    Ok(())
}

/// A running FreeRADIUS, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Its folder (detail file: `acct/detail`).
    pub dir: PathBuf,
}

impl Server {
    /// Writes `s`'s configuration and starts the server in the foreground with debug output
    /// (`-X`) into `out.log`; waits until it is ready.
    pub fn start(s: &Setup) -> Result<Self, String> {
        write_config(s)?;
        Self::start_in(&s.dir)
    }

    /// The detail file's text (accounting records as FreeRADIUS wrote them).
    pub fn detail(&self) -> String {
        std::fs::read_to_string(self.dir.join("acct").join("detail")).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The records of a detail file: each a list of (attribute, value) pairs, values unquoted.
pub fn detail_records(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rec = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !rec.is_empty() {
                out.push(std::mem::take(&mut rec));
            }
            continue;
        }
        if line.starts_with(['\t', ' '])
            && let Some((k, v)) = line.trim().split_once(" = ")
        {
            rec.push((k.to_string(), v.trim_matches('"').to_string()));
        }
    }
    if !rec.is_empty() {
        out.push(rec);
    }
    out
}

/// Debian's own configuration, as the package installs it.
pub const STOCK_CONFIG: &str = "/etc/freeradius/3.0";

/// Where a copy of the stock configuration listens.
#[derive(Debug, Clone, Copy)]
pub struct StockPorts {
    /// The authentication port (stock: 1812, `port = 0` in sites-available/default).
    pub auth: u16,
    /// The accounting port (stock: 1813).
    pub acct: u16,
    /// The inner-tunnel virtual server's port (stock: 127.0.0.1:18120).
    pub inner_tunnel: u16,
}

/// The `listen` sections of a virtual server with `port = 0` set to `auth` or `acct` by their
/// `type`; the rest of the text unchanged.
fn move_listen_ports(text: &str, auth: u16, acct: u16) -> String {
    let code = |l: &str| l.split('#').next().unwrap_or("").trim().to_string();
    let mut out = Vec::new();
    let mut block: Option<(Vec<&str>, i32)> = None;
    for line in text.split('\n') {
        let c = code(line);
        match block.as_mut() {
            None if c.starts_with("listen {") => block = Some((vec![line], 1)),
            None => out.push(line.to_string()),
            Some((lines, depth)) => {
                lines.push(line);
                *depth += c.matches('{').count() as i32 - c.matches('}').count() as i32;
                if *depth == 0 {
                    let acct_block = lines.iter().any(|l| code(l) == "type = acct");
                    let port = if acct_block { acct } else { auth };
                    for l in lines.iter() {
                        if code(l) == "port = 0" {
                            out.push(l.replacen("port = 0", &format!("port = {port}"), 1));
                        } else {
                            out.push((*l).to_string());
                        }
                    }
                    block = None;
                }
            }
        }
    }
    out.join("\n")
}

/// Copies Debian's stock configuration ([`STOCK_CONFIG`], untouched) into `dir` and changes
/// only what a test must: `users_entry` is put first in the users file
/// (mods-config/files/authorize), and the listening ports move to `ports` so that tests can
/// run side by side (sites-available/default's `port = 0` lines, inner-tunnel's 18120). The
/// clients (localhost, secret testing123), modules, policies and security settings stay as
/// packaged. Checked with `freeradius -C`.
pub fn copy_stock_config(dir: &Path, ports: StockPorts, users_entry: &str) -> Result<(), String> {
    if !Path::new(STOCK_CONFIG).join("radiusd.conf").exists() {
        return Err(format!("{STOCK_CONFIG}/radiusd.conf is missing"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let copy = Command::new("cp")
        .arg("-a")
        .arg(format!("{STOCK_CONFIG}/."))
        .arg(dir)
        .output()
        .map_err(|e| format!("cp: {e}"))?;
    if !copy.status.success() {
        return Err(format!(
            "cp -a {STOCK_CONFIG}: {}",
            String::from_utf8_lossy(&copy.stderr)
        ));
    }
    let edit = |rel: &str, f: &dyn Fn(String) -> String| -> Result<(), String> {
        let p = dir.join(rel);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::write(&p, f(text)).map_err(|e| format!("{}: {e}", p.display()))
    };
    edit("mods-config/files/authorize", &|t| {
        format!("{users_entry}\n\n{t}")
    })?;
    edit("sites-available/default", &|t| {
        move_listen_ports(&t, ports.auth, ports.acct)
    })?;
    edit("sites-available/inner-tunnel", &|t| {
        t.replacen("port = 18120", &format!("port = {}", ports.inner_tunnel), 1)
    })?;
    let check = Command::new(FREERADIUS)
        .args(["-C", "-d"])
        .arg(dir)
        .output()
        .map_err(|e| format!("{FREERADIUS}: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "freeradius -C failed: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    Ok(())
}

impl Server {
    /// Starts FreeRADIUS with the configuration already in `dir` (e.g. from
    /// [`copy_stock_config`]), in the foreground with debug output (`-X`) into `dir/out.log`;
    /// waits until it is ready.
    pub fn start_in(dir: &Path) -> Result<Self, String> {
        let log = dir.join("out.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(FREERADIUS)
            .args(["-X", "-d"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{FREERADIUS}: {e}"))?;
        let server = Server {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&log) {
                let _ = f.read_to_string(&mut text);
            }
            if text.contains("Ready to process requests") {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("FreeRADIUS did not start:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's debug output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }
}

/// A UDP port free on 127.0.0.1 just now (for a FreeRADIUS listener or a test client).
#[allow(clippy::expect_used)] // a test helper: its failure is the test's
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs a RADIUS `client` over `sock` until an event about `id` comes (an authentication's
/// outcome, an accounting record acknowledged or given up); returns every event seen. Panics
/// when none comes within `limit`.
#[allow(clippy::expect_used)] // a test helper: its failure is the test's
pub fn drive(
    client: &mut roadgate::radius::client::Client,
    sock: &std::net::UdpSocket,
    id: roadgate::radius::client::RequestId,
    limit: Duration,
) -> Vec<roadgate::radius::client::Event> {
    use roadgate::radius::client::Event;
    let until = Instant::now() + limit;
    let mut events = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some((to, bytes)) = client.poll_transmit() {
            sock.send_to(&bytes, to).expect("send to the RADIUS server");
        }
        while let Some(e) = client.poll_event() {
            events.push(e);
        }
        let done = events.iter().any(|e| match e {
            Event::AuthDone { id: got, .. }
            | Event::AcctAcked { id: got }
            | Event::AcctFailed { id: got } => *got == id,
            _ => false,
        });
        if done {
            return events;
        }
        let now = Instant::now();
        assert!(
            now < until,
            "no answer in {limit:?}; events so far {events:?}"
        );
        let wait = client
            .poll_timeout()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        sock.set_read_timeout(Some(wait)).expect("a read timeout");
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            client.handle_datagram(Instant::now(), from, &buf[..n]);
        }
        client.handle_timeout(Instant::now());
    }
}

/// The outcome of authentication `id` among `events` (panics when there is none).
#[allow(clippy::expect_used)] // a test helper: its failure is the test's
pub fn auth_result(
    events: &[roadgate::radius::client::Event],
    id: roadgate::radius::client::RequestId,
) -> Result<roadgate::radius::client::AuthAnswer, roadgate::radius::client::AuthFailure> {
    events
        .iter()
        .find_map(|e| match e {
            roadgate::radius::client::Event::AuthDone { id: got, result } if *got == id => {
                Some(result.clone().map(|answer| *answer))
            }
            _ => None,
        })
        .expect("an AuthDone event for the request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_ports_move_by_type() {
        let text = "listen {\n\ttype = auth\n\tipaddr = *\n\tport = 0\n\tlimit {\n\t}\n}\n\
                    listen {\n\tipaddr = *\n\tport = 0\n\ttype = acct\n}\n# port = 0\n";
        let moved = move_listen_ports(text, 11812, 11813);
        assert_eq!(
            moved,
            "listen {\n\ttype = auth\n\tipaddr = *\n\tport = 11812\n\tlimit {\n\t}\n}\n\
             listen {\n\tipaddr = *\n\tport = 11813\n\ttype = acct\n}\n# port = 0\n"
        );
    }
}
