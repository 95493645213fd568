//! The socket loop of one full-chain client: UDP sockets on the IKE and NAT-T ports, a raw ESP
//! socket (read by a thread of its own) when there is no NAT, and the TUN device with its routes
//! once PPP is up. The protocols are all in [`FullClient`].

use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pppd_lite::NetworkInfo;

use super::{Config, Datagram, Ending, Event, FullClient, Stage};
/// What [`run`] does.
#[derive(Clone)]
pub struct Args {
    pub client: Config,
    /// The TUN device to create once PPP is up; `None`: none (IP packets from the tunnel are
    /// counted and dropped).
    pub tun: Option<String>,
    /// The TUN device's MTU; default: the PPP MTU.
    pub tun_mtu: Option<u16>,
    /// Routes to put on the TUN device.
    pub routes: Vec<(Ipv4Addr, u8)>,
    /// Stop cleanly this long after PPP is up.
    pub hold: Option<Duration>,
    /// Stop cleanly as soon as PPP is up.
    pub exit_after_up: bool,
    /// On the stop signal, leave at once without telling the server anything (a killed client).
    pub no_delete: bool,
    /// Once PPP is up, send sealed packets as fast as `sendmmsg` goes (a load generator), then
    /// stop.
    pub blast: Option<Blast>,
}

/// A load run ([`Args::blast`]): rounds of `batch` UDP/IPv4 packets of `len` bytes to `dst`, each
/// round sealed first, then sent with `sendmmsg` on the NAT-T socket (ESP in UDP), until
/// `duration` is over. Prints `BLAST sent=N seconds=S sealing_seconds=T` at the end.
#[derive(Debug, Clone, Copy)]
pub struct Blast {
    pub dst: Ipv4Addr,
    pub len: usize,
    pub batch: usize,
    pub duration: Duration,
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("client", &self.client)
            .field("tun", &self.tun)
            .field("routes", &self.routes)
            .field("hold", &self.hold)
            .field("blast", &self.blast)
            .finish_non_exhaustive()
    }
}

/// How [`run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Torn down cleanly after a stop request, the hold time or `exit_after_up`.
    Stopped,
    Failed {
        stage: Stage,
        reason: String,
    },
    /// The server ended the connection.
    Down {
        reason: String,
    },
    /// Stopped with `no_delete`: nothing was sent.
    Abandoned,
}

impl Outcome {
    /// The process exit code: 0 stopped (or abandoned), 1 failed, 3 ended by the server.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Stopped | Outcome::Abandoned => 0,
            Outcome::Failed { .. } => 1,
            Outcome::Down { .. } => 3,
        }
    }
}

fn setup_error(reason: impl Into<String>) -> Outcome {
    Outcome::Failed {
        stage: Stage::Setup,
        reason: reason.into(),
    }
}

/// A raw IPv4 socket for ESP (protocol 50), bound to `local`, and a thread that reads it: the
/// packets (without their IP header) come out of the channel. The thread ends soon after the
/// receiver is dropped.
fn raw_esp_socket(
    local: IpAddr,
) -> io::Result<(
    std::sync::Arc<socket2::Socket>,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
)> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(50)))?;
    s.bind(&SockAddr::from(SocketAddr::new(local, 0)))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let s = std::sync::Arc::new(s);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = s.clone();
    std::thread::Builder::new()
        .name("raw-esp".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !tx.is_closed() {
                match (&*reader).read(&mut buf) {
                    // A raw IPv4 socket hands over the IP header too.
                    Ok(n) => {
                        let ihl = usize::from(buf[0] & 0x0f) * 4;
                        if let Some(esp) = buf.get(ihl..n) {
                            let _ = tx.send(esp.to_vec());
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
        })?;
    Ok((s, rx))
}

async fn raw_recv(
    rx: Option<&mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>>,
) -> Option<Vec<u8>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn tun_recv(tun: Option<&tokio_tun::Tun>, buf: &mut [u8]) -> io::Result<usize> {
    match tun {
        Some(t) => t.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// Creates the TUN device for `net` and puts `routes` on it.
fn open_tun(
    name: &str,
    net: &NetworkInfo,
    mtu: Option<u16>,
    routes: &[(Ipv4Addr, u8)],
) -> Result<tokio_tun::Tun, String> {
    let mut tuns = tokio_tun::Tun::builder()
        .name(name)
        .address(net.local)
        .destination(net.peer)
        .netmask(Ipv4Addr::BROADCAST)
        .mtu(i32::from(mtu.unwrap_or(net.mtu)))
        .up()
        .build()
        .map_err(|e| format!("TUN device {name}: {e}"))?;
    let tun = tuns.pop().ok_or("no TUN queue")?;
    for &(addr, len) in routes {
        roadgate::io::ip_route("replace", name, addr, len).map_err(|e| e.to_string())?;
    }
    Ok(tun)
}

/// The load run of [`Blast`]: the client seals each round (its sequence numbers in order), then
/// the round goes out with `sendmmsg`, 64 datagrams a call, until the time is over.
fn blast(
    client: &mut FullClient,
    sock: &tokio::net::UdpSocket,
    natt_port: u16,
    b: Blast,
    report: &mut dyn FnMut(&str),
) {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::os::fd::AsRawFd;
    let Some(me) = client.network().map(|n| n.local) else {
        return;
    };
    let start = Instant::now();
    let (mut sent, mut sealing, mut id) = (0u64, Duration::ZERO, 0u16);
    let mut round: Vec<Vec<u8>> = Vec::with_capacity(b.batch);
    let mut to: Option<SockaddrStorage> = None;
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(64, None);
    while start.elapsed() < b.duration {
        let t0 = Instant::now();
        round.clear();
        for _ in 0..b.batch {
            id = id.wrapping_add(1);
            let p = crate::chain_world::udp_packet(me, b.dst, b.len, false, id);
            if !client.send_ip(t0, &p) {
                break;
            }
            while let Some(d) = client.poll_transmit() {
                if let Datagram::Udp {
                    local_port,
                    remote,
                    data,
                } = d
                    && local_port == natt_port
                {
                    to = Some(SockaddrStorage::from(remote));
                    round.push(data);
                }
            }
        }
        sealing += t0.elapsed();
        let Some(dest) = to else {
            report("BLAST failed: the client sealed nothing for UDP 4500 (use --force-encap)");
            return;
        };
        for chunk in round.chunks(64) {
            let iovs: Vec<[std::io::IoSlice<'_>; 1]> =
                chunk.iter().map(|p| [std::io::IoSlice::new(p)]).collect();
            let addrs = vec![Some(dest); chunk.len()];
            let mut done = 0;
            while done < chunk.len() {
                let cmsgs: [nix::sys::socket::ControlMessage<'_>; 0] = [];
                match sendmmsg(
                    sock.as_raw_fd(),
                    &mut headers,
                    &iovs[done..],
                    &addrs[done..],
                    cmsgs,
                    MsgFlags::empty(),
                ) {
                    Ok(r) => {
                        let n = r.count().max(1);
                        done += n;
                        sent += n as u64;
                    }
                    // A full socket buffer: wait for room, as a sender at line rate would.
                    Err(nix::errno::Errno::EAGAIN) => std::thread::yield_now(),
                    Err(_) => done += 1,
                }
            }
        }
    }
    report(&format!(
        "BLAST sent={sent} seconds={:.3} sealing_seconds={:.3}",
        start.elapsed().as_secs_f64(),
        sealing.as_secs_f64()
    ));
}

/// Runs one client over real sockets until it is torn down. `stop` asks for a clean stop (or,
/// with `no_delete`, for leaving at once); `report` gets each progress line.
pub async fn run(
    args: &Args,
    stop: impl Future<Output = ()>,
    report: &mut dyn FnMut(&str),
) -> Outcome {
    let c = &args.client;
    let local_ip = c.local.ip();
    let ike_port = c.local.port();
    let natt_port = c.local_natt_port;
    let udp_ike = match tokio::net::UdpSocket::bind((local_ip, ike_port)).await {
        Ok(s) => s,
        Err(e) => return setup_error(format!("bind {local_ip}:{ike_port}: {e}")),
    };
    let udp_natt = match tokio::net::UdpSocket::bind((local_ip, natt_port)).await {
        Ok(s) => s,
        Err(e) => return setup_error(format!("bind {local_ip}:{natt_port}: {e}")),
    };
    let (raw, mut raw_rx, raw_error) = if c.force_encap {
        (None, None, "not opened (--force-encap)".to_owned())
    } else {
        match raw_esp_socket(local_ip) {
            Ok((s, rx)) => (Some(s), Some(rx), String::new()),
            Err(e) => (None, None, e.to_string()),
        }
    };
    let mut client = FullClient::new(c.clone(), Instant::now());
    let mut tun: Option<tokio_tun::Tun> = None;
    let mut hold_until: Option<Instant> = None;
    let mut stop = std::pin::pin!(stop);
    let mut stop_asked = false;
    let (mut b_ike, mut b_natt, mut b_tun) = (vec![0u8; 65536], vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        let now = Instant::now();
        while let Some(ev) = client.poll_event() {
            report(&ev.line());
            match &ev {
                Event::IkeUp { encap: false, .. } if raw.is_none() => {
                    client.fail_setup(
                        now,
                        format!(
                            "the server chose raw ESP, and the raw ESP socket failed: {raw_error}"
                        ),
                    );
                }
                Event::PppUp { info, .. } => {
                    if let Some(name) = &args.tun {
                        match open_tun(name, info, args.tun_mtu, &args.routes) {
                            Ok(t) => tun = Some(t),
                            Err(e) => client.fail_setup(now, e),
                        }
                    }
                    if let Some(b) = args.blast {
                        blast(&mut client, &udp_natt, natt_port, b, report);
                        client.close(Instant::now());
                    } else if args.exit_after_up {
                        client.close(now);
                    } else if let Some(h) = args.hold {
                        hold_until = Some(now + h);
                    }
                }
                Event::Ended(_) => {
                    tun = None;
                    hold_until = None;
                }
                _ => {}
            }
        }
        while let Some(d) = client.poll_transmit() {
            let r = match &d {
                Datagram::Udp {
                    local_port,
                    remote,
                    data,
                } => {
                    let s = if *local_port == natt_port {
                        &udp_natt
                    } else {
                        &udp_ike
                    };
                    s.send_to(data, remote).await.map(|_| ())
                }
                Datagram::Esp { remote, data } => match &raw {
                    Some(r) => r
                        .send_to(data, &socket2::SockAddr::from(SocketAddr::new(*remote, 0)))
                        .map(|_| ()),
                    None => Ok(()),
                },
            };
            if let Err(e) = r {
                // A full socket buffer or an unreachable network: the packet is lost, as on a
                // real link; the protocols retransmit.
                let _ = e;
            }
        }
        if let Some(t) = &tun {
            while let Some(p) = client.poll_tun() {
                let _ = t.send(&p).await;
            }
        } else {
            while client.poll_tun().is_some() {}
        }
        if client.is_finished() {
            break;
        }
        let deadline = [client.poll_timeout(), hold_until]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            r = udp_ike.recv_from(&mut b_ike) => {
                if let Ok((n, from)) = r {
                    client.handle_udp(Instant::now(), ike_port, from, &b_ike[..n]);
                }
            }
            r = udp_natt.recv_from(&mut b_natt) => {
                if let Ok((n, from)) = r {
                    client.handle_udp(Instant::now(), natt_port, from, &b_natt[..n]);
                }
            }
            r = raw_recv(raw_rx.as_mut()) => {
                match r {
                    Some(esp) => client.handle_esp(Instant::now(), &esp),
                    None => raw_rx = None,
                }
            }
            r = tun_recv(tun.as_ref(), &mut b_tun) => {
                if let Ok(n) = r {
                    client.send_ip(Instant::now(), &b_tun[..n]);
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                if hold_until.is_some_and(|h| h <= now) {
                    hold_until = None;
                    client.close(now);
                }
                client.handle_timeout(now);
            }
            () = &mut stop, if !stop_asked => {
                stop_asked = true;
                if args.no_delete {
                    return Outcome::Abandoned;
                }
                client.close(Instant::now());
            }
        }
    }
    match client.ending() {
        Some(Ending::Failed { stage, reason }) => Outcome::Failed {
            stage: *stage,
            reason: reason.clone(),
        },
        Some(Ending::Down { reason, .. }) => Outcome::Down {
            reason: reason.clone(),
        },
        Some(Ending::Stopped) | None => Outcome::Stopped,
    }
}
