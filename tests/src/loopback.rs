//! The real tokio shell (`roadgate::io::Shell`) on loopback UDP in a thread of its own, for tests
//! that drive it with clients over real sockets. High ports, no raw socket: unprivileged.

#![allow(clippy::expect_used)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use roadgate::ike::{self, PskStore};
use roadgate::io::{Listen, Shell};

pub const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A UDP port free on IPv4 and IPv6 just now (a dual-stack `::` socket takes both).
pub fn free_port() -> u16 {
    UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running server; [`LoopbackServer::stop`] ends it (as SIGTERM does) and waits for it.
#[derive(Debug)]
pub struct LoopbackServer {
    pub ike_port: u16,
    pub natt_port: u16,
    thread: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl LoopbackServer {
    /// Binds a shell on 127.0.0.1 (two free ports) with this PSK, lets `setup` add to it (the
    /// session layer), and runs it.
    pub fn start<F>(psk: &[u8], test_echo: bool, setup: F) -> Self
    where
        F: FnOnce(Shell) -> io::Result<Shell> + Send + 'static,
    {
        Self::start_on(&[LO], psk, test_echo, setup)
    }

    /// The same on every address of `addrs` (wildcards too).
    pub fn start_on<F>(addrs: &[IpAddr], psk: &[u8], test_echo: bool, setup: F) -> Self
    where
        F: FnOnce(Shell) -> io::Result<Shell> + Send + 'static,
    {
        let more = addrs.get(1..).unwrap_or(&[]).to_vec();
        let (ike_port, natt_port) = (free_port(), free_port());
        let cfg = ike::Config {
            psk: PskStore::with_default(psk.to_vec()),
            natt_port,
            ..ike::Config::default()
        };
        let listen = Listen {
            addr: addrs.first().copied().unwrap_or(LO),
            ike_port,
            natt_port,
            raw_esp: false,
            test_echo,
            l2tp_port: None,
            plain_l2tp: false,
            socket_buffer: roadgate::io::DEFAULT_SOCKET_BUFFER,
            // Two workers: the kernel spreads the test clients over them (SO_REUSEPORT).
            workers: 2,
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let shell = Shell::bind_all(Arc::new(cfg), listen, &more)
                    .await
                    .expect("bind");
                let shell = setup(shell).expect("server setup");
                ready_tx.send(()).expect("ready");
                shell
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("run");
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server ready");
        Self {
            ike_port,
            natt_port,
            thread,
            stop,
        }
    }

    /// Shuts the server down and waits until it has.
    pub fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("server thread");
    }
}

/// Arguments for the full-chain client on 127.0.0.`n` against `srv`, with the server's port
/// numbers as a real client binds them, UDP-encapsulated ESP and ECP-256: it connects, and exits
/// once up.
pub fn full_client_args(
    srv: &LoopbackServer,
    psk: &[u8],
    n: u8,
    user: &str,
    password: &str,
) -> crate::full_client::Args {
    let mut c = crate::full_client::Config::new(
        IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n)),
        LO,
        psk,
        user,
        password,
    );
    c.local.set_port(srv.ike_port);
    c.local_natt_port = srv.natt_port;
    c.server.set_port(srv.ike_port);
    c.server_natt_port = srv.natt_port;
    c.force_encap = true;
    c.group = roadgate::ike::crypto::DhGroup::Ecp256;
    c.connect_timeout = std::time::Duration::from_secs(20);
    c.seed = [n; 32];
    crate::full_client::Args {
        client: c,
        tun: None,
        tun_mtu: None,
        routes: Vec::new(),
        hold: None,
        exit_after_up: true,
        no_delete: false,
        blast: None,
    }
}
