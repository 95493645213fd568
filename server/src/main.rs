//! `roadgate`: the server binary.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use pppd_lite::pool::AddressPool;
use rand::Rng;
use roadgate::aaa::local::{UserOptions, UserStore};
use roadgate::ike;
use roadgate::io::{Listen, Shell};
use roadgate::l2tp::LnsConfig;
use roadgate::session::Sessions;
use tracing_subscriber::EnvFilter;

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
    /// Manage local users (kept in the SQLite database of the state folder).
    User(UserArgs),
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

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (0.0.0.0: all IPv4 addresses).
    #[arg(long, default_value = "0.0.0.0")]
    listen: IpAddr,
    /// State folder (pre-shared key, later the database and the CA).
    #[arg(long, default_value = "state")]
    state: PathBuf,
    /// Read the pre-shared key from this file instead of the state folder.
    #[arg(long)]
    psk_file: Option<PathBuf>,
    /// IKE port.
    #[arg(long, default_value_t = 500)]
    ike_port: u16,
    /// NAT-T port (IKE with the non-ESP marker, and UDP-encapsulated ESP).
    #[arg(long, default_value_t = 4500)]
    natt_port: u16,
    /// Do not open the raw ESP (protocol 50) socket.
    #[arg(long)]
    no_raw_esp: bool,
    /// Test only: echo every decrypted UDP datagram back through ESP (checks both directions of
    /// ESP before the L2TP layer exists). Never use in production.
    #[arg(long, hide = true)]
    test_echo: bool,
    /// Also accept 3DES in phase 1 and phase 2 (only very old clients need it).
    #[arg(long)]
    allow_3des: bool,
    /// Client addresses, as FIRST-LAST (IPv4, inclusive).
    #[arg(long, default_value = "10.77.0.10-10.77.0.250", value_parser = parse_range)]
    pool: (Ipv4Addr, Ipv4Addr),
    /// The server's own address on the PPP links (never handed to a client).
    #[arg(long, default_value = "10.77.0.1")]
    ppp_address: Ipv4Addr,
    /// DNS server given to clients (IPCP, RFC 1877); up to two.
    #[arg(long, value_name = "IPV4")]
    dns: Vec<Ipv4Addr>,
    /// WINS (NBNS) server given to clients; up to two.
    #[arg(long, value_name = "IPV4")]
    wins: Vec<Ipv4Addr>,
    /// File holding the L2TP tunnel secret (tunnel authentication, RFC 2661 §5.1.1); most
    /// clients use none.
    #[arg(long)]
    l2tp_secret_file: Option<PathBuf>,
    /// Test only: serve L2TP on UDP 1701 WITHOUT IPsec (passwords then cross the network
    /// unprotected). Without it, cleartext L2TP is dropped and logged.
    #[arg(long, hide = true)]
    plain_l2tp: bool,
    /// No TUN device: clients connect but pass no traffic (for machines without CAP_NET_ADMIN).
    #[arg(long)]
    no_tun: bool,
    /// Name of the TUN device.
    #[arg(long, default_value = "rg0")]
    tun_name: String,
}

fn parse_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected FIRST-LAST, e.g. 10.77.0.10-10.77.0.250"))?;
    let a: Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
    let b: Ipv4Addr = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not an IPv4 address"))?;
    if a > b {
        return Err(format!("{s:?}: the first address is above the last"));
    }
    Ok((a, b))
}

/// The session layer (LNS, PPP template, pool) from the command line and the user database.
fn sessions(args: &ServeArgs, users: &UserStore) -> Result<Sessions, String> {
    if args.dns.len() > 2 || args.wins.len() > 2 {
        return Err("at most two --dns and two --wins servers".into());
    }
    let mut pool = AddressPool::builder()
        .range(args.pool.0, args.pool.1)
        .exclude(args.ppp_address);
    for (user, addr) in users.static_addresses().map_err(|e| e.to_string())? {
        if addr == args.ppp_address {
            return Err(format!(
                "user {user}'s static address {addr} is the server's PPP address"
            ));
        }
        pool = pool.static_address(user, addr);
    }
    let pool = pool.build().map_err(|e| format!("address pool: {e}"))?;
    let secret = match &args.l2tp_secret_file {
        Some(p) => Some(zeroize::Zeroizing::new(
            read_secret(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => None,
    };
    let lns = LnsConfig {
        secret,
        ..LnsConfig::default()
    };
    let ppp = pppd_lite::Config::server(pppd_lite::ServerConfig {
        auth: vec![
            pppd_lite::AuthProtocol::MsChapV2,
            pppd_lite::AuthProtocol::Pap,
        ],
        local_address: args.ppp_address,
        dns: [args.dns.first().copied(), args.dns.get(1).copied()],
        nbns: [args.wins.first().copied(), args.wins.get(1).copied()],
        name: "roadgate".into(),
    });
    let mut seed = [0u8; 32];
    rand::make_rng::<rand_chacha::ChaCha20Rng>().fill_bytes(&mut seed);
    Ok(Sessions::new(
        roadgate::session::Config { lns, ppp, pool },
        seed,
    ))
}

fn read_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    let s = fs::read_to_string(path)?;
    Ok(s.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
}

/// The pre-shared key of the state folder, made on first start and printed once.
fn state_psk(state: &Path) -> std::io::Result<Vec<u8>> {
    fs::create_dir_all(state)?;
    fs::set_permissions(state, fs::Permissions::from_mode(0o700))?;
    let path = state.join("psk");
    if path.exists() {
        return read_secret(&path);
    }
    let psk = random_text(24);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{}", psk.as_str())?;
    println!(
        "Generated pre-shared key (shown once; kept in {}): {}",
        path.display(),
        psk.as_str()
    );
    Ok(psk.as_bytes().to_vec())
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let psk = match &args.psk_file {
        Some(p) => read_secret(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => state_psk(&args.state).map_err(|e| format!("{}: {e}", args.state.display()))?,
    };
    if psk.is_empty() {
        return Err("the pre-shared key is empty".into());
    }
    let mut cfg = ike::Config {
        psk: ike::PskStore::with_default(psk),
        natt_port: args.natt_port,
        ..ike::Config::default()
    };
    if args.allow_3des {
        cfg.phase1
            .encryption
            .push(ike::crypto::CipherAlg::TripleDesCbc);
        cfg.phase2
            .encryption
            .push(roadgate::esp::Encryption::TripleDesCbc);
    }
    let listen = Listen {
        addr: args.listen,
        ike_port: args.ike_port,
        natt_port: args.natt_port,
        raw_esp: !args.no_raw_esp,
        test_echo: args.test_echo,
        l2tp_port: Some(roadgate::io::L2TP_PORT),
        plain_l2tp: args.plain_l2tp,
    };
    let fresh = !args
        .state
        .join(roadgate::aaa::local::DATABASE_FILE)
        .exists();
    let users = UserStore::open(&args.state).map_err(|e| e.to_string())?;
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
            args.state.display()
        );
    }
    let sessions = sessions(&args, &users)?;
    let dataplane = roadgate::dataplane::Config {
        tun: !args.no_tun,
        tun_name: args.tun_name.clone(),
        local_address: args.ppp_address,
        routes: roadgate::dataplane::range_prefixes(args.pool.0, args.pool.1),
        ..roadgate::dataplane::Config::default()
    };
    if users.list().map_err(|e| e.to_string())?.is_empty() {
        tracing::warn!(
            "no users yet: nobody can log in. Add one with: roadgate user --state {} add NAME",
            args.state.display()
        );
    }
    // aws-lc collects its entropy on first use (tens of ms): do it now, not in the first handshake.
    let _ = aws_lc_rs::rand::generate::<[u8; 16]>(&aws_lc_rs::rand::SystemRandom::new());
    let shell = Shell::bind(Arc::new(cfg), listen)
        .await
        .map_err(|e| format!("cannot listen: {e}"))?
        .with_sessions(sessions, users, dataplane)
        .map_err(|e| e.to_string())?;
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

/// The user a fresh state folder starts with.
const FIRST_USER: &str = "vpnuser";

/// `len` random characters from an alphabet without look-alikes (5.8 bits each).
fn random_text(len: usize) -> zeroize::Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::make_rng::<rand_chacha::ChaCha20Rng>();
    zeroize::Zeroizing::new(
        (0..len)
            .map(|_| char::from(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()]))
            .collect(),
    )
}

/// A user password: 16 characters (about 93 bits).
fn generate_password() -> zeroize::Zeroizing<String> {
    random_text(16)
}

/// The password for `user add` / `user passwd`.
fn read_password(args: &PasswordArgs) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::{BufRead, IsTerminal};
    if args.generate_password {
        let pw = generate_password();
        println!("Generated password (shown once): {}", pw.as_str());
        return Ok(pw);
    }
    if std::io::stdin().is_terminal() {
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

fn main() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roadgate: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => rt.block_on(serve(args)),
        Command::User(args) => user(args),
    };
    if let Err(e) = result {
        eprintln!("roadgate: {e}");
        std::process::exit(1);
    }
}
