//! `roadgate`: the server binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use roadgate::aaa::local::{UserOptions, UserStore};
use roadgate::admin::{self, Request, Response};
use roadgate::config::{self, LogSettings, Overrides, Settings};
use roadgate::io::Shell;

#[derive(Parser, Debug)]
#[command(
    name = "roadgate",
    version,
    about = "L2TP/IPsec VPN server for the built-in clients of Windows, macOS/iOS and Android"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server. With no options it uses ./state for its state and a generated pre-shared key.
    Serve(ServeArgs),
    /// Check a configuration as `serve` would (no sockets, no state), print a summary: exit 0 when
    /// it is good, 2 when it is not.
    CheckConfig(ServeArgs),
    /// Check what clients need, one plain line each: UDP 500/4500, forwarding and the NAT rule
    /// for the pool, the server behind NAT, the public name and its certificate, each RADIUS
    /// server answering and signing. Asks the running server when there is one. Exit 1 when a
    /// problem was found.
    Doctor(ServeArgs),
    /// Manage local users (kept in the SQLite database of the state folder).
    User(UserArgs),
    /// Show the running server's figures.
    Status {
        #[command(flatten)]
        target: AdminTarget,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List the running server's sessions.
    Sessions {
        #[command(flatten)]
        target: AdminTarget,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// End the sessions of a user, or one session by its id (exit 1 when none matched).
    Disconnect {
        /// A user name or a session id (as `roadgate sessions` shows them).
        #[arg(value_name = "USER|ID")]
        target_name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Have the running server read its configuration file again (as SIGHUP does).
    Reload {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// The accounting history (kept in the state folder's accounting.db).
    Accounting {
        #[command(subcommand)]
        command: AccountingCommand,
    },
    /// The built-in certificate authority (ca.db and ca-key.pem in the state folder).
    Ca(CaArgs),
    /// Administrators of the web UI (kept in the state folder's web.db).
    Admin(AdminArgs),
}

#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// State folder holding web.db.
    #[arg(long, default_value = "state", global = true)]
    state: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Add an administrator. The password is asked for (or read from standard input, or
    /// generated); at least 10 characters.
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set an administrator's password.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Remove an administrator.
    Delete { name: String },
    /// List the administrators.
    List,
    /// Make an API token for an administrator (for scripts: `Authorization: Bearer ...`),
    /// printed once.
    Token {
        name: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

#[derive(clap::Args, Debug)]
struct CaArgs {
    /// State folder holding the CA.
    #[arg(long, default_value = "state", global = true)]
    state: PathBuf,
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Make the CA (`serve` makes one on first start when certificates are enabled).
    Init {
        /// The CA's common name.
        #[arg(long)]
        cn: Option<String>,
        /// rsa2048 (default; Apple's IKEv1 needs RSA), rsa3072 or ecdsa-p256.
        #[arg(long)]
        key: Option<String>,
        /// The CRL distribution point written into issued certificates (http://...).
        #[arg(long)]
        crl_url: Option<String>,
    },
    /// Issue a client certificate: NAME.p12 (legacy, for Apple and older Windows), NAME-aes.p12,
    /// NAME.pem and NAME.key; the .p12 password is printed once.
    Issue {
        /// Its common name (and, for a user certificate, the VPN user unless --user says).
        name: String,
        /// A device (computer) certificate rather than a user's.
        #[arg(long)]
        device: bool,
        /// The VPN user the certificate maps to.
        #[arg(long)]
        user: Option<String>,
        /// Validity in days (default 365).
        #[arg(long)]
        days: Option<u32>,
        /// Folder to write the files into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Revoke a certificate by serial (as `list` shows it).
    Revoke {
        serial: String,
        /// unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation...
        #[arg(long)]
        reason: Option<String>,
    },
    /// List issued certificates.
    List,
    /// Write a newly signed CRL (DER) to standard output or a file.
    Crl {
        /// Days until its nextUpdate.
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the CA certificate (PEM), for clients to trust.
    Cert,
}

#[derive(Subcommand, Debug)]
enum AccountingCommand {
    /// Write every accounting record (Start, Interim-Update, Stop...) as CSV to standard output.
    Export {
        /// State folder holding accounting.db.
        #[arg(long, default_value = "state")]
        state: PathBuf,
        /// CSV (the only format; the flag says so in scripts).
        #[arg(long)]
        csv: bool,
        /// Only records from this Unix time on.
        #[arg(long, value_name = "UNIX_SECONDS")]
        since: Option<u64>,
    },
}

#[derive(clap::Args, Debug)]
struct UserArgs {
    /// State folder holding the database.
    #[arg(long, default_value = "state", global = true)]
    state: PathBuf,
    #[command(subcommand)]
    command: UserCommand,
}

/// How a command gets a password: prompted on a terminal, else one line from standard input.
#[derive(clap::Args, Debug)]
struct PasswordArgs {
    /// Make up a random password and print it once.
    #[arg(long)]
    generate_password: bool,
    /// Read the password as one line from standard input, even on a terminal.
    #[arg(long, conflicts_with = "generate_password")]
    password_stdin: bool,
}

#[derive(clap::Args, Debug, Default)]
struct UserOptionArgs {
    /// Give the user this address every time (IPCP); `none` clears it.
    #[arg(long, value_name = "IPV4|none")]
    static_ip: Option<String>,
    /// Most simultaneous sessions of this user; 0 removes the limit.
    #[arg(long, value_name = "N")]
    max_sessions: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user. The password is asked for (or read from standard input, or generated).
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        options: UserOptionArgs,
        /// Create the user disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Delete a user.
    Del { name: String },
    /// List users (never their passwords or hashes).
    List,
    /// Set a new password.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Stop a user from connecting (the record is kept).
    Disable { name: String },
    /// Allow a disabled user to connect again.
    Enable { name: String },
    /// Change a user's static address or session limit.
    Set {
        name: String,
        #[command(flatten)]
        options: UserOptionArgs,
    },
}

/// The `serve` and `check-config` options: the configuration file, and flags that override its keys.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// The configuration file (TOML; see deploy/roadgate.example.toml). Without it every setting
    /// has its default and the flags below adjust them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

impl ServeArgs {
    /// A copy of the arguments (the overrides are plain values).
    fn settings_args(&self) -> ServeArgs {
        ServeArgs {
            config: self.config.clone(),
            overrides: self.overrides.clone(),
        }
    }

    /// The settings exactly as `serve` takes them.
    fn settings(&self) -> Result<Settings, config::ConfigError> {
        config::load_with(self.config.as_deref(), &self.overrides)
    }
}

/// How the admin commands find the server's socket.
#[derive(clap::Args, Debug)]
struct AdminTarget {
    /// The admin socket.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["config", "state"])]
    socket: Option<PathBuf>,
    /// The server's configuration file (its server.admin_socket, or admin.sock in its state folder).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The server's state folder (its admin.sock).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// How long to wait for the server.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = config::parse_duration)]
    timeout: Duration,
}

/// Where deploy/install.sh puts the configuration.
const INSTALLED_CONFIG: &str = "/etc/roadgate/roadgate.toml";

/// Asks the server and prints its answer; the exit status.
fn admin(target: &AdminTarget, req: Request, json: bool) -> ExitCode {
    let socket = match &target.socket {
        Some(p) => p.clone(),
        None => {
            // An installed server (deploy/install.sh) has its file here: the commands find its
            // socket without options.
            let installed = std::path::Path::new(INSTALLED_CONFIG);
            let config = match (&target.config, &target.state) {
                (None, None) if installed.exists() => Some(installed),
                (c, _) => c.as_deref(),
            };
            match config::admin_socket_path(config, target.state.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("roadgate: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match admin::query(&socket, &req, target.timeout)
        .and_then(|resp| admin::render(&req, &resp, json, now))
    {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roadgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `doctor`: the running server's checks (when it answers on its admin socket) and the checks
/// made now; exit 1 when one is a problem, 2 when the configuration cannot be read.
fn doctor(args: &ServeArgs) -> ExitCode {
    use roadgate::admin::merge_findings;
    use roadgate::doctor::{self, Finding, Level};
    let mut args_with_installed = args.settings_args();
    if args_with_installed.config.is_none() && std::path::Path::new(INSTALLED_CONFIG).exists() {
        args_with_installed.config = Some(INSTALLED_CONFIG.into());
    }
    let settings = match args_with_installed.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roadgate: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "configuration: {}",
        settings
            .file
            .as_ref()
            .map_or("built-in defaults".into(), |p| p.display().to_string())
    );
    let mut findings: Vec<Finding> = Vec::new();
    match admin::query(
        &settings.admin_socket,
        &Request::Status,
        Duration::from_secs(3),
    ) {
        Ok(Response::Status(status)) => {
            println!(
                "the server is running (up {} s); its checks, then today's:",
                status.uptime_s
            );
            findings.extend(status.findings);
        }
        _ => {
            println!(
                "the server is not running (no answer on {}); checks made now:",
                settings.admin_socket.display()
            );
            findings.extend(doctor::ports_free(&settings));
        }
    }
    // Today's checks replace the start's of the same key (the RADIUS probes) and add the rest.
    merge_findings(&mut findings, doctor::local_checks(&settings));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    if let Ok(rt) = runtime {
        merge_findings(&mut findings, rt.block_on(doctor::radius_checks(&settings)));
    }
    for f in &findings {
        println!("{f}");
    }
    if findings.iter().any(|f| f.level == Level::Problem) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `check-config`: the summary and exit 0, or the error and exit 2.
fn check_config(args: &ServeArgs) -> ExitCode {
    match args.settings() {
        Ok(settings) => {
            print!("{}", settings.summary());
            for w in &settings.warnings {
                eprintln!("roadgate: warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roadgate: {e}");
            ExitCode::from(2)
        }
    }
}

/// What SIGHUP (and `roadgate reload`) does: reads the file again with the same flags, and
/// says which changes wait for a restart.
fn reloader(running: Settings, args: ServeArgs) -> roadgate::io::Reloader {
    Box::new(move || {
        let mut new = args.settings().map_err(|e| e.to_string())?;
        // A pre-shared key kept in the state folder: read it again.
        new.prepare_state()?;
        // The certificate authority stays the running one (revocations in the built-in CA's
        // database apply at once; other changes wait for a restart).
        new.ike.cert = running.ike.cert.clone();
        let mut restart = Vec::new();
        if new.certificates != running.certificates {
            restart.push("certificates");
        }
        if new.listen_addrs != running.listen_addrs
            || new.listen.ike_port != running.listen.ike_port
            || new.listen.natt_port != running.listen.natt_port
            || new.listen.raw_esp != running.listen.raw_esp
        {
            restart.push("server.listen, ports and raw_esp");
        }
        if new.state_dir != running.state_dir || new.admin_socket != running.admin_socket {
            restart.push("server.state_dir and admin_socket");
        }
        if new.pool != running.pool
            || new.named_pools != running.named_pools
            || new.local_address() != running.local_address()
        {
            restart.push("ppp.pool, ppp.pools and ppp.local_address");
        }
        if new.dataplane.tun != running.dataplane.tun
            || new.dataplane.tun_name != running.dataplane.tun_name
            || new.listen.workers != running.listen.workers
        {
            restart.push("dataplane.tun, tun_name and workers");
        }
        if new.lns != running.lns {
            restart.push("[l2tp]");
        }
        if new.auth_backends != running.auth_backends || new.pam_service != running.pam_service {
            restart.push("[auth]");
        }
        if new.accounting != running.accounting {
            restart.push("[accounting]");
        }
        // Secrets do not show in Debug: a changed secret alone also waits for a restart.
        if format!("{:?}", new.radius) != format!("{:?}", running.radius) {
            restart.push("[radius]");
        }
        if format!("{:?}", new.dynauth) != format!("{:?}", running.dynauth) {
            restart.push("[dynauth]");
        }
        let mut summary = "applied: [ipsec] (keys, proposals, DPD), [ppp] DNS, WINS, MTU, echo and \
                           methods for new sessions, [dataplane] timeouts and MSS clamping; users are \
                           always read at login; RADIUS secrets, [auth], [accounting], [radius] and \
                           [dynauth] wait for a restart"
            .to_string();
        if !restart.is_empty() {
            summary.push_str("; changed but waiting for a restart: ");
            summary.push_str(&restart.join(", "));
        }
        Ok(roadgate::io::Reload {
            ike: Arc::new(new.ike),
            ppp: new.ppp,
            dataplane: new.dataplane,
            summary,
        })
    })
}

async fn serve(mut settings: Settings, args: ServeArgs) -> Result<(), String> {
    tracing::info!(
        config = %settings.file.as_ref().map_or("built-in defaults".into(), |p| p.display().to_string()),
        "configuration loaded"
    );
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let state = settings.state_dir.clone();
    roadgate::first_start::run(&mut settings)?;
    if let Some(psk) = settings.prepare_state()? {
        println!(
            "Generated pre-shared key (shown once; kept in {}): {}",
            state.join(config::STATE_PSK_FILE).display(),
            psk.as_str()
        );
    }
    match roadgate::pki::Authority::load(&state, &settings.certificates, &settings.listen_addrs) {
        Ok(Some(authority)) => {
            tracing::info!(
                server_certificate = %authority.subject,
                trusted_cas = authority.anchor_count(),
                "certificate authentication (IKE RSA signatures) is on"
            );
            settings.ike.cert = Some(std::sync::Arc::new(authority));
        }
        Ok(None) => {
            tracing::info!("certificate authentication is off ([certificates] enabled = false)")
        }
        Err(e) => return Err(format!("certificates: {e}")),
    }
    let fresh = !state.join(roadgate::aaa::local::DATABASE_FILE).exists();
    let users = UserStore::open(&state).map_err(|e| e.to_string())?;
    if fresh {
        // A new state folder: one user to connect with at once, its password shown this once.
        let password = generate_password();
        users
            .add(FIRST_USER, &password, &UserOptions::default())
            .map_err(|e| e.to_string())?;
        println!(
            "Created the first VPN user (password shown once): {FIRST_USER} / {}\n\
             Add more with: roadgate user --state {} add NAME",
            password.as_str(),
            state.display()
        );
    }
    let mut sessions = settings.sessions(&users)?;
    // Acct-Session-Ids start with the start time: unique across restarts.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    sessions.set_acct_prefix(&format!("{:08X}", started as u32));
    if users.list().map_err(|e| e.to_string())?.is_empty() {
        tracing::warn!(
            "no users yet: nobody can log in. Add one with: roadgate user --state {} add NAME",
            state.display()
        );
    }
    // aws-lc collects its entropy on first use (tens of ms): do it now, not in the first handshake.
    let _ = aws_lc_rs::rand::generate::<[u8; 16]>(&aws_lc_rs::rand::SystemRandom::new());
    let dataplane = settings.dataplane.clone();
    let shell = Shell::bind_all(
        Arc::new(settings.ike.clone()),
        settings.listen.clone(),
        &settings.listen_addrs,
    )
    .await
    .map_err(|e| format!("cannot listen: {e}"))?
    .with_sessions(sessions, users, dataplane)
    .map_err(|e| e.to_string())?
    .with_aaa(
        settings.auth_backends.clone(),
        settings.pam_service.clone(),
        settings.radius.as_ref(),
        Some(accounting(&settings)?),
        settings.dynauth.clone(),
    )
    .await
    .map_err(|e| format!("AAA: {e}"))?
    .with_admin_socket(&settings.admin_socket)
    .map_err(|e| format!("admin socket: {e}"))?
    .with_cert_user_match(
        settings.certificates.enabled && settings.certificates.require_user_match,
    );
    {
        // The start's checks (`roadgate doctor`, `roadgate status`, the dashboard), logged.
        let mut findings = shell.port_findings();
        findings.extend(roadgate::doctor::local_checks(&settings));
        roadgate::doctor::log(&findings);
        let kept = shell.findings();
        if let Ok(mut k) = kept.lock() {
            *k = findings;
        }
        let radius_settings = settings.clone();
        tokio::spawn(async move {
            let found = roadgate::doctor::radius_checks(&radius_settings).await;
            roadgate::doctor::log(&found);
            if let Ok(mut k) = kept.lock() {
                k.extend(found);
            }
        });
    }
    if let Some(calls) = shell.admin_calls() {
        roadgate::io::web::start(&settings, calls, shell.radius_metrics()).await?;
    }
    let shell = shell.with_reloader(reloader(settings.clone(), args));
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    shell.run(stop).await.map_err(|e| e.to_string())
}

/// The accounting manager on the state folder's spool: records go to RADIUS when accounting
/// servers are configured, else to the local history only.
fn accounting(settings: &Settings) -> Result<roadgate::aaa::accounting::Accounting, String> {
    use roadgate::aaa::accounting::{Accounting, AccountingConfig};
    use roadgate::aaa::spool::{Spool, SpoolLimits};
    let a = &settings.accounting;
    let send = settings
        .radius
        .as_ref()
        .is_some_and(|r| r.has(roadgate::radius::client::Role::Acct));
    let spool = Spool::open(
        &settings.state_dir,
        SpoolLimits {
            max_depth: a.spool_max,
            warn_depth: a.spool_warn,
            send,
        },
    )
    .map_err(|e| format!("accounting spool: {e}"))?;
    let seed = u64::from_le_bytes(
        aws_lc_rs::rand::generate(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| "no randomness".to_string())?
            .expose(),
    );
    Ok(Accounting::new(
        spool,
        AccountingConfig {
            interim_interval: a.interim_interval,
            min_interim_interval: a.min_interim_interval,
            crash_cause: roadgate::aaa::TerminateCause::NasReboot,
            block_new_sessions_when_full: a.block_when_full,
            ..AccountingConfig::default()
        },
        seed,
    ))
}

/// The user a fresh state folder starts with.
const FIRST_USER: &str = "vpnuser";

/// A user password: 16 characters (about 93 bits).
fn generate_password() -> zeroize::Zeroizing<String> {
    config::random_text(16)
}

/// The password for `user add` / `user passwd`.
fn read_password(args: &PasswordArgs) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::{BufRead, IsTerminal};
    if args.generate_password {
        let pw = generate_password();
        println!("Generated password (shown once): {}", pw.as_str());
        return Ok(pw);
    }
    if std::io::stdin().is_terminal() && !args.password_stdin {
        let a = zeroize::Zeroizing::new(
            rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?,
        );
        let b = zeroize::Zeroizing::new(
            rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?,
        );
        if a != b {
            return Err("the passwords differ".into());
        }
        return Ok(a);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    Ok(zeroize::Zeroizing::new(pw))
}

fn user_options(args: &UserOptionArgs) -> Result<UserOptions, String> {
    let static_ip = match args.static_ip.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(s) => {
            Some(Some(s.parse::<std::net::Ipv4Addr>().map_err(|_| {
                format!("--static-ip {s:?} is not an IPv4 address")
            })?))
        }
    };
    Ok(UserOptions {
        static_ip,
        max_sessions: args.max_sessions.map(|n| (n > 0).then_some(n)),
        enabled: None,
    })
}

fn user(args: UserArgs) -> Result<(), String> {
    let store = UserStore::open(&args.state).map_err(|e| e.to_string())?;
    let e = |e: roadgate::aaa::local::UserError| e.to_string();
    match args.command {
        UserCommand::Add {
            name,
            password,
            options,
            disabled,
        } => {
            roadgate::aaa::local::check_name(&name).map_err(e)?;
            let mut opts = user_options(&options)?;
            opts.enabled = Some(!disabled);
            let pw = read_password(&password)?;
            store.add(&name, &pw, &opts).map_err(e)?;
            println!("added user {name}");
        }
        UserCommand::Del { name } => {
            store.delete(&name).map_err(e)?;
            println!("deleted user {name}");
        }
        UserCommand::List => {
            println!(
                "{:<24} {:<8} {:<15} max-sessions",
                "name", "enabled", "static-ip"
            );
            for u in store.list().map_err(e)? {
                println!(
                    "{:<24} {:<8} {:<15} {}",
                    u.name,
                    if u.enabled { "yes" } else { "no" },
                    u.static_ip.map_or("-".to_string(), |a| a.to_string()),
                    u.max_sessions.map_or("-".to_string(), |n| n.to_string())
                );
            }
        }
        UserCommand::Passwd { name, password } => {
            if store.find(&name).map_err(e)?.is_none() {
                return Err(format!("no user named {name:?}"));
            }
            let pw = read_password(&password)?;
            store.set_password(&name, &pw).map_err(e)?;
            println!("password of {name} changed");
        }
        UserCommand::Disable { name } => {
            let opts = UserOptions {
                enabled: Some(false),
                ..UserOptions::default()
            };
            store.set_options(&name, &opts).map_err(e)?;
            println!("user {name} disabled");
        }
        UserCommand::Enable { name } => {
            let opts = UserOptions {
                enabled: Some(true),
                ..UserOptions::default()
            };
            store.set_options(&name, &opts).map_err(e)?;
            println!("user {name} enabled");
        }
        UserCommand::Set { name, options } => {
            store
                .set_options(&name, &user_options(&options)?)
                .map_err(e)?;
            println!("user {name} changed");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = match args.settings() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("roadgate: {e}");
                    return ExitCode::from(2);
                }
            };
            settings.log.install();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("roadgate: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            report(rt.block_on(serve(settings, args)))
        }
        Command::CheckConfig(args) => check_config(&args),
        Command::Doctor(args) => doctor(&args),
        Command::User(args) => {
            LogSettings::default().install();
            report(user(args))
        }
        Command::Status { target, json } => admin(&target, Request::Status, json),
        Command::Sessions { target, json } => admin(&target, Request::Sessions, json),
        Command::Disconnect {
            target_name,
            target,
        } => admin(
            &target,
            Request::Disconnect {
                target: target_name,
            },
            false,
        ),
        Command::Reload { target } => admin(&target, Request::Reload, false),
        Command::Accounting {
            command:
                AccountingCommand::Export {
                    state,
                    csv: _,
                    since,
                },
        } => report(export_accounting(&state, since)),
        Command::Ca(args) => report(ca_command(args)),
        Command::Admin(args) => report(admin_command(args)),
    }
}

/// `roadgate admin ...`.
fn admin_command(args: AdminArgs) -> Result<(), String> {
    let db = args.state.join(roadgate::io::web::WEB_DB_FILE);
    std::fs::create_dir_all(&args.state).map_err(|e| format!("{}: {e}", args.state.display()))?;
    let store = web::AdminStore::open(&db).map_err(|e| format!("{}: {e}", db.display()))?;
    match args.command {
        AdminCommand::Add { name, password } => {
            let pw = read_password(&password)?;
            store.create_admin(&name, &pw).map_err(|e| e.to_string())?;
            println!("administrator {name} added");
        }
        AdminCommand::Passwd { name, password } => {
            let pw = read_password(&password)?;
            store.set_password(&name, &pw).map_err(|e| e.to_string())?;
            println!("password of {name} set");
        }
        AdminCommand::Delete { name } => {
            store.delete_admin(&name).map_err(|e| e.to_string())?;
            println!("administrator {name} removed");
        }
        AdminCommand::List => {
            println!("{:<24} {:<12} LAST LOGIN", "NAME", "CREATED");
            for a in store.list_admins().map_err(|e| e.to_string())? {
                println!(
                    "{:<24} {:<12} {}",
                    a.name,
                    a.created,
                    a.last_login.map_or("never".into(), |t| t.to_string())
                );
            }
        }
        AdminCommand::Token { name, label } => {
            let token = store
                .create_api_token(&name, &label)
                .map_err(|e| e.to_string())?;
            println!("API token of {name} (shown once): {token}");
        }
    }
    Ok(())
}

/// `roadgate ca ...`.
fn ca_command(args: CaArgs) -> Result<(), String> {
    use roadgate::pki;
    use std::io::Write;
    let state = &args.state;
    let text = match args.command {
        CaCommand::Init { cn, key, crl_url } => {
            pki::cli_init(state, cn.as_deref(), key.as_deref(), crl_url.as_deref())?
        }
        CaCommand::Issue {
            name,
            device,
            user,
            days,
            out,
        } => pki::cli_issue(
            state,
            &pki::IssueRequest {
                name,
                device,
                user,
                days,
                out_dir: out,
            },
        )?,
        CaCommand::Revoke { serial, reason } => pki::cli_revoke(state, &serial, reason.as_deref())?,
        CaCommand::List => pki::cli_list(state)?,
        CaCommand::Crl { days, out } => {
            let der = pki::cli_crl(state, days)?;
            match out {
                Some(p) => {
                    std::fs::write(&p, &der).map_err(|e| format!("{}: {e}", p.display()))?;
                    format!("CRL written to {} ({} bytes)\n", p.display(), der.len())
                }
                None => {
                    std::io::stdout()
                        .write_all(&der)
                        .map_err(|e| e.to_string())?;
                    String::new()
                }
            }
        }
        CaCommand::Cert => pki::cli_ca_cert(state)?,
    };
    print!("{text}");
    Ok(())
}

/// `roadgate accounting export --csv`.
fn export_accounting(state: &std::path::Path, since: Option<u64>) -> Result<(), String> {
    use roadgate::aaa::spool::{SPOOL_FILE, Spool, SpoolLimits};
    if !state.join(SPOOL_FILE).exists() {
        return Err(format!(
            "{}: no accounting database here (the server writes it once it runs)",
            state.join(SPOOL_FILE).display()
        ));
    }
    let spool = Spool::open(state, SpoolLimits::default()).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    spool
        .export_csv(&mut out, since)
        .map_err(|e| e.to_string())?;
    std::io::Write::flush(&mut out).map_err(|e| e.to_string())
}

/// Exit 0, or print the error and exit 1.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roadgate: {e}");
            ExitCode::FAILURE
        }
    }
}
