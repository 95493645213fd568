//! The RADIUS tokio shell: one task owns the client's UDP socket and the sans-IO
//! [`Client`](crate::radius::client::Client), taking [`Command`]s over a channel and answering
//! each on its oneshot; another owns the dynamic authorization socket (UDP 3799) and hands
//! validated Disconnect/CoA requests to the caller with a oneshot for the outcome.
//!
//! The wall clock (for Acct-Delay-Time) is read here, not in the core.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pppd_lite::AuthRequest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::aaa::{AcctRecord, AuthContext};
use crate::radius::client::{
    AcctRequestData, AuthAnswer, AuthFailure, AuthRequestData, Client, ClientConfig, Event,
    RequestId, ServerMetrics,
};
use crate::radius::dynauth::{self, DynAuth, ErrorCause, Handled, Outcome};

/// A request to the RADIUS client task.
#[derive(Debug)]
pub enum Command {
    /// Send an Access-Request; the answer comes on `reply`.
    Authenticate {
        /// The connection.
        ctx: AuthContext,
        /// The PPP request.
        request: AuthRequest,
        /// State from the previous Access-Challenge of an EAP conversation.
        state: Option<Vec<u8>>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<AuthAnswer, AuthFailure>>,
    },
    /// Send an Accounting-Request; `reply` says whether a server acknowledged it (on `false`
    /// the caller keeps the record and retries later).
    Account {
        /// The caller's name for the record, returned with the outcome.
        key: u64,
        /// The record.
        record: AcctRecord,
        /// Where the outcome goes.
        reply: oneshot::Sender<AcctOutcome>,
    },
}

/// The outcome of a [`Command::Account`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcctOutcome {
    /// The caller's key.
    pub key: u64,
    /// Acknowledged by a server.
    pub acked: bool,
}

enum Waiting {
    Auth(oneshot::Sender<Result<AuthAnswer, AuthFailure>>),
    Acct(u64, oneshot::Sender<AcctOutcome>),
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Binds the client socket: on `source` if given, else on the unspecified address of the
/// family of the first server; port 0.
pub async fn bind_client_socket(
    source: Option<IpAddr>,
    config: &ClientConfig,
) -> io::Result<UdpSocket> {
    let ip = source.unwrap_or_else(|| match config.servers.first().map(|s| s.address) {
        Some(SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    UdpSocket::bind(SocketAddr::new(ip, 0)).await
}

/// The client task's per-server metrics, as of its last change: cheap to clone, read by the
/// web UI's `/metrics`.
#[derive(Debug, Clone)]
pub struct RadiusMetricsHandle {
    inner: Arc<Mutex<Vec<ServerMetrics>>>,
}

impl RadiusMetricsHandle {
    fn new(initial: Vec<ServerMetrics>) -> Self {
        RadiusMetricsHandle {
            inner: Arc::new(Mutex::new(initial)),
        }
    }

    /// Each configured server's metrics, in configuration order.
    pub fn snapshot(&self) -> Vec<ServerMetrics> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, metrics: Vec<ServerMetrics>) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = metrics;
    }
}

/// Binds the socket and spawns the client task; commands go to the returned sender. The task
/// ends when every sender is dropped and nothing is in flight.
pub async fn spawn_client(
    config: ClientConfig,
    source: Option<IpAddr>,
) -> io::Result<(mpsc::Sender<Command>, JoinHandle<()>)> {
    let (tx, handle, _metrics) = spawn_client_with_metrics(config, source).await?;
    Ok((tx, handle))
}

/// [`spawn_client`], also returning a handle on the task's per-server metrics.
pub async fn spawn_client_with_metrics(
    config: ClientConfig,
    source: Option<IpAddr>,
) -> io::Result<(mpsc::Sender<Command>, JoinHandle<()>, RadiusMetricsHandle)> {
    let socket = bind_client_socket(source, &config).await?;
    let (tx, rx) = mpsc::channel(1024);
    let client = Client::new(config);
    let metrics = RadiusMetricsHandle::new(client.server_metrics());
    let handle = tokio::spawn(run_client_inner(client, socket, rx, metrics.clone()));
    Ok((tx, handle, metrics))
}

/// The client task's loop: commands in, datagrams both ways, timers, outcomes out.
pub async fn run_client(client: Client, socket: UdpSocket, commands: mpsc::Receiver<Command>) {
    let metrics = RadiusMetricsHandle::new(client.server_metrics());
    run_client_inner(client, socket, commands, metrics).await;
}

async fn run_client_inner(
    mut client: Client,
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
    metrics: RadiusMetricsHandle,
) {
    let mut waiting: HashMap<RequestId, Waiting> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    let mut open = true;
    let mut published = client.metrics_generation();
    loop {
        // After a command, a datagram or a timeout: publish the metrics if they changed.
        if client.metrics_generation() != published {
            published = client.metrics_generation();
            metrics.publish(client.server_metrics());
        }
        while let Some((to, bytes)) = client.poll_transmit() {
            if let Err(e) = socket.send_to(&bytes, to).await {
                debug!(%to, error = %e, "RADIUS: send failed");
            }
        }
        while let Some(event) = client.poll_event() {
            deliver(event, &mut waiting);
        }
        if !open && waiting.is_empty() {
            return;
        }
        let deadline = client.poll_timeout();
        tokio::select! {
            cmd = commands.recv(), if open => match cmd {
                None => open = false,
                Some(Command::Authenticate { ctx, request, state, reply }) => {
                    let id = client.send_auth(Instant::now(), AuthRequestData { ctx, request, state });
                    waiting.insert(id, Waiting::Auth(reply));
                }
                Some(Command::Account { key, record, reply }) => {
                    let id = client.send_acct(Instant::now(), AcctRequestData { record, unix_now: unix_now() });
                    waiting.insert(id, Waiting::Acct(key, reply));
                }
            },
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if let Some(d) = buf.get(..n) {
                        client.handle_datagram(Instant::now(), from, d);
                    }
                }
                Err(e) => debug!(error = %e, "RADIUS: receive failed"),
            },
            () = sleep_until(deadline) => client.handle_timeout(Instant::now()),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

fn deliver(event: Event, waiting: &mut HashMap<RequestId, Waiting>) {
    match event {
        Event::AuthDone { id, result } => {
            if let Some(Waiting::Auth(reply)) = waiting.remove(&id) {
                let _ = reply.send(result.map(|answer| *answer));
            }
        }
        Event::AcctAcked { id } | Event::AcctFailed { id } => {
            let acked = matches!(event, Event::AcctAcked { .. });
            if let Some(Waiting::Acct(key, reply)) = waiting.remove(&id) {
                let _ = reply.send(AcctOutcome { key, acked });
            }
        }
        Event::ServerDead { addr } => warn!(%addr, "RADIUS server dead"),
        Event::ServerAlive { addr } => info!(%addr, "RADIUS server alive again"),
    }
}

/// A validated Disconnect/CoA request for the caller, and where its outcome goes. A dropped
/// `reply` answers NAK with Resources-Unavailable (506).
#[derive(Debug)]
pub struct DynAuthCall {
    /// The request.
    pub request: dynauth::Request,
    /// The caller's outcome.
    pub reply: oneshot::Sender<Outcome>,
}

/// Binds the dynamic authorization socket and spawns its task; validated requests come out of
/// the returned receiver.
pub async fn spawn_dynauth(
    core: DynAuth,
    bind: SocketAddr,
) -> io::Result<(mpsc::Receiver<DynAuthCall>, SocketAddr, JoinHandle<()>)> {
    let socket = UdpSocket::bind(bind).await?;
    let local = socket.local_addr()?;
    let (tx, rx) = mpsc::channel(256);
    let handle = tokio::spawn(run_dynauth(core, socket, tx));
    Ok((rx, local, handle))
}

/// The dynamic authorization task's loop. Ends when the receiver of calls is dropped.
pub async fn run_dynauth(mut core: DynAuth, socket: UdpSocket, calls: mpsc::Sender<DynAuthCall>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(dynauth::Request, Outcome)>();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "dynauth: receive failed");
                        continue;
                    }
                };
                let Some(d) = buf.get(..n) else { continue };
                core.set_unix_time(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |t| t.as_secs()),
                );
                match core.handle(Instant::now(), from, d) {
                    Ok(request) => {
                        if let Some(cause) = request.problem {
                            let answer = core.answer(&request, Outcome::Nak(cause));
                            let _ = socket.send_to(&answer, from).await;
                            continue;
                        }
                        let (reply, rx) = oneshot::channel();
                        let done = done_tx.clone();
                        let keep = request.clone();
                        if calls.send(DynAuthCall { request, reply }).await.is_err() {
                            return;
                        }
                        tokio::spawn(async move {
                            let outcome = rx
                                .await
                                .unwrap_or(Outcome::Nak(ErrorCause::ResourcesUnavailable));
                            let _ = done.send((keep, outcome));
                        });
                    }
                    Err(Handled::Resend(answer)) => {
                        let _ = socket.send_to(&answer, from).await;
                    }
                    Err(Handled::Dropped(_)) => {}
                }
            }
            Some((request, outcome)) = done_rx.recv() => {
                let answer = core.answer(&request, outcome);
                if let Err(e) = socket.send_to(&answer, request.from).await {
                    debug!(to = %request.from, error = %e, "dynauth: send failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pppd_lite::Credentials;
    use zeroize::Zeroizing;

    use super::*;
    use crate::radius::client::{Role, ServerConfig};
    use crate::radius::packet::{Packet, code};

    #[tokio::test]
    async fn metrics_handle_follows_the_task() {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let config = ClientConfig {
            servers: vec![ServerConfig {
                address: server.local_addr().unwrap(),
                secret: Zeroizing::new(b"testing123".to_vec()),
                role: Role::Auth,
            }],
            ..ClientConfig::default()
        };
        let (tx, task, metrics) =
            spawn_client_with_metrics(config, Some(Ipv4Addr::LOCALHOST.into()))
                .await
                .unwrap();
        let before = metrics.snapshot();
        assert_eq!(before.len(), 1);
        assert_eq!((before[0].requests, before[0].latency.count), (0, 0));

        let (reply, answer) = oneshot::channel();
        tx.send(Command::Authenticate {
            ctx: AuthContext::default(),
            request: AuthRequest {
                id: 1,
                user: "bob".into(),
                credentials: Credentials::Pap {
                    password: Zeroizing::new(b"pw".to_vec()),
                },
            },
            state: None,
            reply,
        })
        .await
        .unwrap();
        let mut buf = [0u8; 4096];
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        let req = Packet::decode(&buf[..n]).unwrap();
        let mut resp = Packet::new(code::ACCESS_ACCEPT, req.identifier);
        resp.add_message_authenticator();
        let resp = resp
            .encode_response(&req.authenticator, b"testing123")
            .unwrap();
        server.send_to(&resp, from).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .unwrap()
            .unwrap()
            .unwrap();

        // Published before the answer is delivered.
        let after = metrics.snapshot();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].requests, 1);
        assert_eq!(after[0].timeouts, 0);
        assert_eq!(after[0].latency.count, 1);
        assert_eq!(
            after[0].latency.buckets.last().copied(),
            Some(1),
            "answered within 10 s"
        );
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
