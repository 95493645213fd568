//! Data-plane worker threads: each forwards packets and does nothing else.
//!
//! A worker owns its UDP sockets on the NAT-T port (one per listening address, bound with
//! SO_REUSEPORT so that the kernel spreads the clients over the workers by their address and
//! port, and one client's packets stay on one worker, in order), worker 0 also the raw ESP
//! sockets, and one queue of the multi-queue TUN device (the kernel keeps one flow on one
//! queue). It runs a [`Worker`] (the sans-IO forwarding path of `roadgate_core`) on a
//! current-thread runtime of its own.
//!
//! The control thread tells every worker of each SA and session change ([`Update`]) and asks
//! worker 0 to send its IKE datagrams on the NAT-T port, its sealed control datagrams and NAT
//! keepalives. A worker hands the control thread what it does not forward itself
//! ([`FromWorker`]): IKE datagrams behind the non-ESP marker, authentic L2TP/PPP control
//! traffic, ESP for an SPI it does not know, SA limits. That queue is bounded: when the control
//! thread falls behind, a worker drops and counts, and never waits.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Listen;
use super::listen::{self, Kind, Listeners, Outgoing, RecvBatch};
use crate::dataplane::gateway::Stats;
use crate::dataplane::worker::{EspIn, Note, Update, Worker, WorkerConfig};
use crate::dataplane::{FromTun, HEADROOM, TAILROOM, Transmit, Via};
use crate::esp::{self, Udp4500};
use crate::l2tp::PeerId;

/// Datagrams taken from one socket, or packets from the TUN device, before the others get a
/// turn.
pub const BATCH: usize = 64;

/// Room for one packet read from the TUN device and sealed in place.
pub const TUN_SLOT: usize = HEADROOM + 65536 + TAILROOM;

/// Messages from the workers the control thread may hold before a worker drops.
pub const TO_CONTROL_QUEUE: usize = 4096;

/// The number of workers when none is configured: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A message from the control thread to a worker.
#[derive(Debug)]
pub enum ToWorker {
    /// An SA or session change.
    Update(Update),
    /// Send `data` through this worker's socket of `kind` from `from` to `to`.
    Send {
        kind: Kind,
        from: IpAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// Write this IPv4 packet to the TUN device.
    TunWrite(Vec<u8>),
    /// This worker's queue of the TUN device.
    Tun(OwnedFd),
}

/// What a worker hands the control thread.
#[derive(Debug)]
pub enum FromWorker {
    /// An IKE datagram that came to the NAT-T port (marker removed).
    Ike {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    /// An authentic UDP datagram from `client` for the control plane (L2TP control, PPP).
    Control {
        client: PeerId,
        spi: u32,
        data: Vec<u8>,
    },
    /// ESP for an SPI the worker does not know (a Quick Mode may be waiting for it).
    UnknownEsp { from: SocketAddr, data: Vec<u8> },
    /// An SA reached a limit.
    Note(Note),
    /// Cleartext L2TP to send (test-only plain mode) through the control thread's socket.
    Plain { remote: SocketAddr, data: Vec<u8> },
}

/// What a worker shows the control thread (for `roadgate status` and /metrics).
#[derive(Debug, Default)]
pub struct WorkerShared {
    stats: Mutex<Stats>,
    /// Datagrams the kernel dropped on this worker's sockets (full receive buffer).
    drops: AtomicU64,
    /// The smallest receive buffer the kernel granted to one of its sockets.
    receive_buffer: AtomicU64,
    /// Messages for the control thread dropped because its queue was full.
    control_queue_full: AtomicU64,
    /// Datagrams received, and the `recvmmsg` calls that took them.
    rx_datagrams: AtomicU64,
    rx_calls: AtomicU64,
    /// Datagrams sent, and the sends (GSO `sendmsg`, `sendmmsg`) that carried them.
    tx_datagrams: AtomicU64,
    tx_calls: AtomicU64,
    /// Sends and TUN writes that failed.
    send_errors: AtomicU64,
}

/// The data-plane workers, as the control thread holds them.
#[derive(Debug)]
pub struct Workers {
    txs: Vec<mpsc::UnboundedSender<ToWorker>>,
    shared: Vec<Arc<WorkerShared>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` workers (at least one), each with its NAT-T sockets on every address of
    /// `addrs` (worker 0 also raw ESP, as `listen` says); returns once all are bound.
    pub async fn start(
        n: usize,
        listen: &Listen,
        addrs: &[IpAddr],
        config: WorkerConfig,
        to_control: mpsc::Sender<FromWorker>,
    ) -> io::Result<Self> {
        let n = n.max(1);
        let (mut txs, mut shared, mut threads) = (Vec::new(), Vec::new(), Vec::new());
        for index in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let s = Arc::new(WorkerShared::default());
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let (listen, addrs, s2, to_control) = (
                listen.clone(),
                addrs.to_vec(),
                s.clone(),
                to_control.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("rg-data-{index}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let sockets = match Listeners::bind_data(&listen, &addrs, index == 0) {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok(()));
                        WorkerLoop::new(index, sockets, config, rx, to_control, s2)
                            .run()
                            .await;
                    });
                })?;
            ready_rx
                .await
                .map_err(|_| io::Error::other("a data-plane worker died while starting"))??;
            txs.push(tx);
            shared.push(s);
            threads.push(thread);
        }
        info!(
            workers = n,
            "data-plane workers started (SO_REUSEPORT sockets, one TUN queue each)"
        );
        Ok(Self {
            txs,
            shared,
            threads,
        })
    }

    /// Lets every worker finish what it was given (the last Deletes and CDNs among it), then
    /// waits for the threads to end.
    pub async fn stop(self) {
        drop(self.txs);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether there are none (never, once started).
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Tells every worker of a change.
    pub fn broadcast(&self, u: &Update) {
        for t in &self.txs {
            let _ = t.send(ToWorker::Update(u.clone()));
        }
    }

    /// Sends a datagram through worker 0's socket of `kind`.
    pub fn send(&self, kind: Kind, from: IpAddr, to: SocketAddr, data: Vec<u8>) {
        if let Some(t) = self.txs.first() {
            let _ = t.send(ToWorker::Send {
                kind,
                from,
                to,
                data,
            });
        }
    }

    /// Writes a packet to the TUN device through worker 0.
    pub fn tun_write(&self, packet: Vec<u8>) {
        if let Some(t) = self.txs.first() {
            let _ = t.send(ToWorker::TunWrite(packet));
        }
    }

    /// Gives each worker its queue of the TUN device.
    pub fn give_tun(&self, queues: Vec<OwnedFd>) {
        for (t, q) in self.txs.iter().zip(queues) {
            let _ = t.send(ToWorker::Tun(q));
        }
    }

    /// The workers' counters, summed.
    pub fn stats(&self) -> Stats {
        let mut sum = Stats::default();
        for s in &self.shared {
            sum.add(&s.stats.lock().unwrap_or_else(|e| e.into_inner()));
        }
        sum
    }

    /// Named counters of the workers' I/O, summed.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let sum = |f: fn(&WorkerShared) -> &AtomicU64| -> u64 {
            self.shared.iter().map(|s| f(s).load(Relaxed)).sum()
        };
        vec![
            (
                "data_to_control_dropped".into(),
                sum(|s| &s.control_queue_full),
            ),
            ("io_rx_datagrams".into(), sum(|s| &s.rx_datagrams)),
            ("io_rx_calls".into(), sum(|s| &s.rx_calls)),
            ("io_tx_datagrams".into(), sum(|s| &s.tx_datagrams)),
            ("io_tx_calls".into(), sum(|s| &s.tx_calls)),
            ("data_send_errors".into(), sum(|s| &s.send_errors)),
            ("dataplane_workers".into(), self.len() as u64),
        ]
    }

    /// Datagrams the kernel dropped on the workers' sockets.
    pub fn drops(&self) -> u64 {
        self.shared.iter().map(|s| s.drops.load(Relaxed)).sum()
    }

    /// The smallest receive buffer granted to a worker's socket.
    pub fn receive_buffer(&self) -> u64 {
        self.shared
            .iter()
            .map(|s| s.receive_buffer.load(Relaxed))
            .min()
            .unwrap_or(0)
    }
}

/// One queue of the TUN device, read and written without blocking.
struct TunQueue(AsyncFd<std::fs::File>);

impl TunQueue {
    #[allow(unsafe_code)]
    fn new(fd: OwnedFd) -> io::Result<Self> {
        // The queue was opened non-blocking (tokio-tun); the flag belongs to the open file,
        // which the duplicate shares.
        let file = std::fs::File::from(fd);
        // SAFETY: the File owns its descriptor and keeps it open until dropped, and the
        // AsyncFd owns the File.
        let fd = unsafe { AsyncFd::register(file) }.map_err(io::Error::from)?;
        Ok(Self(fd))
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.get_ref().read(buf)
    }

    fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_ref().write(buf)
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|_| self.try_recv(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|_| self.try_send(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Duplicates the file descriptor of each TUN queue (the caller may then drop the queues).
#[allow(unsafe_code)]
pub fn tun_fds(queues: &[tokio_tun::Tun]) -> io::Result<Vec<OwnedFd>> {
    queues
        .iter()
        .map(|q| {
            // SAFETY: the queue's descriptor is open while `q` lives; it is cloned at once.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(q.as_raw_fd()) };
            fd.try_clone_to_owned()
        })
        .collect()
}

/// Packets from the TUN device, each read at the end of the ones before it (plus the data
/// plane's headroom), sealed in place and moved back to lie end to end, so that the run of
/// datagrams to one client goes out in one GSO send.
struct TxBatch {
    buf: Vec<u8>,
    /// Bytes of sealed datagrams at the start of `buf`.
    used: usize,
    /// The datagrams, in order (capacity [`BATCH`], reserved once).
    out: Vec<Outgoing>,
}

impl TxBatch {
    fn new() -> Self {
        Self {
            // Every packet of a batch: 1400-byte packets grown by at most the headers and
            // padding, and room to read the next one at full size.
            buf: vec![0u8; BATCH * 1600 + TUN_SLOT],
            used: 0,
            out: Vec::with_capacity(BATCH),
        }
    }

    /// Where the next packet from the TUN device is read: after the datagrams so far, past the
    /// headroom. `None` when the batch is full.
    fn read_slot(&mut self) -> Option<&mut [u8]> {
        if self.out.len() >= BATCH {
            return None;
        }
        let start = self.used + HEADROOM;
        self.buf.get_mut(start..start + 65536)
    }

    fn clear(&mut self) {
        self.used = 0;
        self.out.clear();
    }
}

/// One worker thread's loop.
struct WorkerLoop {
    index: usize,
    core: Worker,
    sockets: Listeners,
    tun: Option<TunQueue>,
    rx: mpsc::UnboundedReceiver<ToWorker>,
    to_control: mpsc::Sender<FromWorker>,
    /// Notes the control queue had no room for yet (never dropped).
    pending_notes: VecDeque<Note>,
    shared: Arc<WorkerShared>,
}

impl WorkerLoop {
    fn new(
        index: usize,
        sockets: Listeners,
        config: WorkerConfig,
        rx: mpsc::UnboundedReceiver<ToWorker>,
        to_control: mpsc::Sender<FromWorker>,
        shared: Arc<WorkerShared>,
    ) -> Self {
        shared
            .receive_buffer
            .store(sockets.receive_buffer() as u64, Relaxed);
        Self {
            index,
            core: Worker::new(config),
            sockets,
            tun: None,
            rx,
            to_control,
            pending_notes: VecDeque::new(),
            shared,
        }
    }

    async fn run(mut self) {
        let mut rx = RecvBatch::default();
        let mut tx = TxBatch::new();
        let mut turn = 0usize;
        loop {
            turn = turn.wrapping_add(1);
            let sockets = &self.sockets;
            tokio::select! {
                m = self.rx.recv() => match m {
                    Some(m) => self.message(m).await,
                    None => break,
                },
                ready = std::future::poll_fn(|cx| sockets.poll_ready(cx, turn)) => {
                    self.socket_batch(ready.index, ready.kind, &mut rx).await;
                }
                r = async {
                    match (&self.tun, tx.read_slot()) {
                        (Some(t), Some(slot)) => t.recv(slot).await,
                        _ => std::future::pending().await,
                    }
                } => match r {
                    Ok(n) => self.tun_batch(&mut tx, n).await,
                    Err(e) => {
                        warn!(worker = self.index, error = %e, "cannot read the TUN device; this worker stops reading it");
                        self.tun = None;
                    }
                },
            }
            self.after_batch();
        }
        debug!(worker = self.index, "data-plane worker stopped");
    }

    /// Notes to the control thread, counters to share.
    fn after_batch(&mut self) {
        while let Some(n) = self.core.poll_note() {
            self.pending_notes.push_back(n);
        }
        while let Some(&n) = self.pending_notes.front() {
            if self.to_control.try_send(FromWorker::Note(n)).is_err() {
                break;
            }
            self.pending_notes.pop_front();
        }
        if let Ok(mut s) = self.shared.stats.lock() {
            s.clone_from(self.core.stats());
        }
        self.shared.drops.store(self.sockets.drops(), Relaxed);
    }

    async fn message(&mut self, m: ToWorker) {
        match m {
            ToWorker::Update(u) => self.core.update(u),
            ToWorker::Send {
                kind,
                from,
                to,
                data,
            } => {
                let r = match self.sockets.for_local(kind, from) {
                    Some(s) => s.send(&data, from, to).await,
                    None => Err(io::Error::other("no socket for this local address")),
                };
                if let Err(e) = r {
                    self.shared.send_errors.fetch_add(1, Relaxed);
                    debug!(%from, %to, error = %e, "send failed");
                }
            }
            ToWorker::TunWrite(p) => self.write_tun(&p).await,
            ToWorker::Tun(fd) => match TunQueue::new(fd) {
                Ok(q) => self.tun = Some(q),
                Err(e) => {
                    warn!(worker = self.index, error = %e, "cannot use the TUN queue");
                }
            },
        }
    }

    /// Hands a message to the control thread, or drops and counts it when its queue is full.
    fn to_control(&self, m: FromWorker) {
        if self.to_control.try_send(m).is_err() {
            self.shared.control_queue_full.fetch_add(1, Relaxed);
        }
    }

    /// The datagrams waiting on socket `index` (of `kind`), up to a batch: taken with
    /// `recvmmsg`, each slot cut into the datagrams GRO put together.
    async fn socket_batch(&mut self, index: usize, kind: Kind, rx: &mut RecvBatch) {
        let mut taken = 0;
        while taken < BATCH {
            let Some(got) = self.sockets.receive(index, rx) else {
                return;
            };
            self.shared.rx_calls.fetch_add(1, Relaxed);
            self.shared
                .rx_datagrams
                .fetch_add(got.segments as u64, Relaxed);
            taken += got.segments;
            for k in 0..got.datagrams {
                let Some((data, d)) = rx.datagram_mut(k) else {
                    continue;
                };
                let esp = match kind {
                    Kind::Natt => match esp::classify_udp4500(data) {
                        Udp4500::Keepalive | Udp4500::Malformed => continue,
                        Udp4500::Ike(msg) => {
                            self.to_control(FromWorker::Ike {
                                local: d.local,
                                remote: d.remote,
                                data: msg.to_vec(),
                            });
                            continue;
                        }
                        Udp4500::Esp(_) => true,
                    },
                    Kind::RawEsp => true,
                    Kind::Ike | Kind::L2tp => false,
                };
                if esp {
                    self.esp_in(data, d.remote).await;
                }
            }
            if got.slots < listen::RECV_BATCH {
                return;
            }
        }
    }

    async fn esp_in(&mut self, data: &mut [u8], from: SocketAddr) {
        match self.core.esp_in(Instant::now(), data, from) {
            EspIn::Tun(r) => {
                if let Some(ip) = data.get(r) {
                    self.write_tun(ip).await;
                }
            }
            EspIn::Control {
                client,
                spi,
                datagram,
            } => self.to_control(FromWorker::Control {
                client,
                spi,
                data: data.get(datagram).unwrap_or(&[]).to_vec(),
            }),
            EspIn::UnknownSpi(_) => self.to_control(FromWorker::UnknownEsp {
                from,
                data: data.to_vec(),
            }),
            EspIn::Dropped => {}
        }
    }

    /// One IPv4 packet to the TUN device.
    async fn write_tun(&mut self, ip: &[u8]) {
        if let Some(tun) = &self.tun
            && let Err(e) = tun.send(ip).await
        {
            self.shared.send_errors.fetch_add(1, Relaxed);
            debug!(error = %e, "write to the TUN device failed");
        }
    }

    /// The packet read from the TUN device (`n` bytes in `tx`'s read slot) and whatever else
    /// is ready, up to a batch: each sealed for its client, then all sent.
    async fn tun_batch(&mut self, tx: &mut TxBatch, n: usize) {
        let mut len = Some(n);
        while let Some(n) = len.take() {
            self.tun_in(tx, n).await;
            len = match (&self.tun, tx.read_slot()) {
                (Some(t), Some(slot)) => t.try_recv(slot).ok(),
                _ => None,
            };
        }
        self.flush(tx).await;
    }

    /// Seals the packet in `tx`'s read slot (`n` bytes) for its client and keeps the datagram
    /// at the end of the batch.
    async fn tun_in(&mut self, tx: &mut TxBatch, n: usize) {
        let start = tx.used;
        let Some(room) = tx.buf.get_mut(start..) else {
            return;
        };
        match self.core.tun_in(Instant::now(), room, n) {
            FromTun::Send(Transmit { via, range }) => {
                let Some((socket, from, to)) = route(&self.sockets, &via) else {
                    if let Via::PlainL2tp { remote } = via {
                        let data = room.get(range).unwrap_or(&[]).to_vec();
                        self.to_control(FromWorker::Plain { remote, data });
                    } else {
                        self.shared.send_errors.fetch_add(1, Relaxed);
                    }
                    return;
                };
                // Back to the end of the datagrams before it (the headers took less than the
                // headroom).
                room.copy_within(range.clone(), 0);
                let len = range.len();
                tx.out.push(Outgoing {
                    socket,
                    from,
                    to,
                    range: start..start + len,
                });
                tx.used += len;
            }
            // The answer lives in the worker: written from there, with no copy.
            FromTun::Icmp(answer) => {
                if let Some(tun) = &self.tun
                    && let Err(e) = tun.send(answer).await
                {
                    self.shared.send_errors.fetch_add(1, Relaxed);
                    debug!(error = %e, "write to the TUN device failed");
                }
            }
            FromTun::Dropped => {}
        }
    }

    /// Sends every datagram of `tx` in order: runs to one client over UDP as one GSO send, runs
    /// on a raw socket as one `sendmmsg`; then empties it.
    async fn flush(&mut self, tx: &mut TxBatch) {
        let mut rest = tx.out.as_slice();
        while let Some(first) = rest.first() {
            let Some(sock) = self.sockets.get_mut(first.socket) else {
                break;
            };
            let raw = sock.is_raw();
            let n = listen::send_run(rest, raw, sock.max_gso_segments()).max(1);
            let (run, after) = rest.split_at(n.min(rest.len()));
            self.shared.tx_calls.fetch_add(1, Relaxed);
            self.shared
                .tx_datagrams
                .fetch_add(run.len() as u64, Relaxed);
            let r = if raw {
                sock.send_batch(&tx.buf, run).await
            } else {
                let bytes = first.range.start..run.last().map_or(first.range.end, |o| o.range.end);
                let data = tx.buf.get(bytes).unwrap_or(&[]);
                let segment = (n > 1).then(|| first.range.len());
                sock.send_segments(data, segment, first.from, first.to)
                    .await
            };
            if let Err(e) = r {
                self.shared.send_errors.fetch_add(1, Relaxed);
                debug!(to = %first.to, datagrams = n, error = %e, "send failed");
            }
            rest = after;
        }
        tx.clear();
    }
}

/// The socket (index), source address and destination for ESP sent `via`; `None` for what a
/// worker does not send (cleartext L2TP, IKE).
fn route(sockets: &Listeners, via: &Via) -> Option<(usize, IpAddr, SocketAddr)> {
    match *via {
        Via::Udp { local, remote } => Some((
            sockets.index_for_local(Kind::Natt, local.ip())?,
            local.ip(),
            remote,
        )),
        Via::RawEsp { local, remote } => Some((
            sockets.index_for_local(Kind::RawEsp, local)?,
            local,
            SocketAddr::new(remote, 0),
        )),
        Via::Ike { .. } | Via::PlainL2tp { .. } => None,
    }
}
