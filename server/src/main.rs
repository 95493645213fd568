//! `roadgate`: the server binary.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rand::Rng;
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
    };
    if let Err(e) = result {
        eprintln!("roadgate: {e}");
        std::process::exit(1);
    }
}
