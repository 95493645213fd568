//! `roadgate`: the server binary.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rand::Rng;
use roadgate::aaa::local::{UserOptions, UserStore};
use roadgate::ike;
use roadgate::io::{Listen, Shell};
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
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::make_rng::<rand_chacha::ChaCha20Rng>();
    let psk: String = (0..24)
        .map(|_| char::from(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()]))
        .collect();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{psk}")?;
    println!(
        "Generated pre-shared key (shown once; kept in {}): {psk}",
        path.display()
    );
    Ok(psk.into_bytes())
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
    };
    // aws-lc collects its entropy on first use (tens of ms): do it now, not in the first handshake.
    let _ = aws_lc_rs::rand::generate::<[u8; 16]>(&aws_lc_rs::rand::SystemRandom::new());
    let shell = Shell::bind(Arc::new(cfg), listen)
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
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

/// The password for `user add` / `user passwd`.
fn read_password(args: &PasswordArgs) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::{BufRead, IsTerminal};
    if args.generate_password {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut rng = rand::make_rng::<rand_chacha::ChaCha20Rng>();
        let pw: String = (0..16)
            .map(|_| char::from(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()]))
            .collect();
        println!("Generated password (shown once): {pw}");
        return Ok(zeroize::Zeroizing::new(pw));
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
