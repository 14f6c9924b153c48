//! One task per port listens on its socket and keeps at most one client
//! connection. Each connection has a reader task (link bytes -> frames ->
//! the arbiter) and a writer task (receive queue -> link bytes).
//!
//! On the virtual clock a node's port also listens on its clock socket,
//! where the node's QEMU plugin connects: the connection starts once both
//! are there, and ends with either. The reader takes the plugin's reports
//! too, each after every byte the node sent before it (the node wrote them
//! first), so the arbiter learns of a node's frames before it learns the
//! node has moved past them. The writer sends the node's grants, each after
//! the frames queued before it, and only once QEMU has read them all from
//! the socket: the node is held meanwhile, so it takes them at a point of
//! its own clock that does not depend on the host.
//!
//! A timed host client's port (the virtual clock) keeps its time in-band:
//! its reader passes on the client's stamped frames and `Idle` records in
//! the order sent; its writer stamps every frame and freed TX place and
//! sends each `Until` after what was queued before it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use proto::clock::{Grant, RECORD, Report};
use proto::link::{Decoder, Item, LinkError, MAX_ENCODED, encode_at, encode_tx_free, encode_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, TryAcquireError, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::arbiter::ToArbiter;
use crate::bus::Cause;
use crate::error::BridgeError;
use crate::ids::{ConnId, PortId};
use crate::rxqueue::{Delivery, LinkFrame, RxQueue};
use crate::shutdown::wait_shutdown;
use crate::stats::Shared;

/// Frames the writer encodes into one socket write.
pub(crate) const WRITE_BATCH: usize = 32;
/// Bytes the reader takes from the socket at once.
const READ_CHUNK: usize = 4096;
/// How long a held node may take to read its frames from the socket
/// before it is granted on anyway (and the handover counted as late).
const HANDOVER_LIMIT: Duration = Duration::from_secs(2);
/// Once a handover has given up, how long the next ones wait for QEMU to
/// take anything at all: the guest has not made room in its device.
const STUCK_PATIENCE: Duration = Duration::from_millis(5);
/// Kernel send buffer towards a client (Linux doubles it). The default,
/// about 200 KiB, would let a slow node fall thousands of frames behind the
/// bus unseen; a real controller sits a few frames from the wire.
const SEND_BUFFER: usize = 4096;

/// A bound socket and the identity of the file it created.
pub(crate) struct Bound {
    pub listener: UnixListener,
    pub path: PathBuf,
    pub inode: u64,
}

/// Binds `path` for port `port`, removing a stale socket left by a bridge
/// that died. A live listener, or anything that is not a socket, is left
/// alone.
pub(crate) fn bind(port: &str, path: &Path) -> Result<Bound, BridgeError> {
    let bind_err = |source| BridgeError::Bind {
        port: port.to_owned(),
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(BridgeError::SocketInUse {
                    port: port.to_owned(),
                    path: path.to_owned(),
                });
            }
            match std::fs::remove_file(path) {
                Ok(()) => debug!(port, path = %path.display(), "removed stale socket"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(bind_err(e)),
            }
        }
        Ok(_) => {
            return Err(BridgeError::NotASocket {
                port: port.to_owned(),
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    let inode = std::fs::symlink_metadata(path).map_err(bind_err)?.ino();
    Ok(Bound {
        listener,
        path: path.to_owned(),
        inode,
    })
}

/// Removes the socket file if it is still the one we created.
pub(crate) fn remove_socket(path: &Path, inode: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == inode) {
        let _ = std::fs::remove_file(path);
    }
}

pub(crate) struct PortTask {
    pub index: PortId,
    pub bound: Bound,
    /// The node's clock socket, on the virtual clock.
    pub clock: Option<Bound>,
    pub mode: Mode,
    pub inbox: mpsc::Sender<ToArbiter>,
    /// Free places in this port's TX FIFO; the arbiter adds back what
    /// the FIFO lets go.
    pub tx_slots: Arc<Semaphore>,
    pub shared: Arc<Shared>,
    pub shutdown: watch::Receiver<bool>,
    pub rx_queue_depth: usize,
    /// The arbiter's "a receive queue made room" notice.
    pub room: Arc<Notify>,
}

/// How a port's client is served.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mode {
    /// A timed host client's port (the virtual clock): time in-band.
    pub timed: bool,
    /// Frames are written to the client at most this often, together
    /// ([`crate::PortConfig::deliver_every_ms`]).
    pub deliver_every: Option<Duration>,
}

/// Accepts on `listener`, or never without one.
async fn accept_opt(
    listener: Option<&UnixListener>,
) -> std::io::Result<(UnixStream, tokio::net::unix::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// A node's two sockets while the second has not come yet.
#[derive(Default)]
struct Halves {
    port: Option<UnixStream>,
    clock: Option<UnixStream>,
}

/// The current client of a port.
struct Connection {
    id: ConnId,
    /// Its reader and writer; when one ends, the connection is over.
    tasks: JoinSet<()>,
}

/// Resolves when the connection's reader or writer has ended; never if
/// there is no connection.
async fn ended(conn: &mut Option<Connection>) {
    match conn {
        Some(c) => {
            c.tasks.join_next().await;
        }
        None => std::future::pending().await,
    }
}

impl PortTask {
    fn name(&self) -> &str {
        &self.shared.port_names[self.index]
    }

    pub async fn run(mut self) {
        let mut conn: Option<Connection> = None;
        let mut halves = Halves::default();
        let mut next_id = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.shutdown) => break,
                _ = ended(&mut conn) => self.close(conn.take()).await,
                accepted = self.bound.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // A new client replaces the old one: QEMU respawned.
                        self.close(conn.take()).await;
                        halves.port = Some(stream);
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: back off, don't spin.
                        warn!(port = self.name(), error = %e, "accept failed");
                        tokio::select! {
                            _ = wait_shutdown(&mut self.shutdown) => break,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                },
                accepted = accept_opt(self.clock.as_ref().map(|c| &c.listener)) => match accepted {
                    Ok((stream, _)) => {
                        self.close(conn.take()).await;
                        halves.clock = Some(stream);
                    }
                    Err(e) => warn!(port = self.name(), error = %e, "clock accept failed"),
                },
            }
            // A port without a clock starts with its client; one with a
            // clock once both are there.
            if halves.port.is_some() && (self.clock.is_none() || halves.clock.is_some()) {
                let (Some(stream), clock) = (halves.port.take(), halves.clock.take()) else {
                    continue;
                };
                next_id += 1;
                conn = self.open(ConnId(next_id), stream, clock).await;
            }
        }
        self.close(conn.take()).await;
        remove_socket(&self.bound.path, self.bound.inode);
        if let Some(c) = &self.clock {
            remove_socket(&c.path, c.inode);
        }
    }

    async fn open(
        &mut self,
        id: ConnId,
        stream: UnixStream,
        clock: Option<UnixStream>,
    ) -> Option<Connection> {
        if let Err(e) =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER)
        {
            warn!(port = self.name(), error = %e, "cannot shrink the send buffer");
        }
        let rx = Arc::new(RxQueue::new(
            self.rx_queue_depth,
            self.room.clone(),
            self.shared.clone(),
            self.index,
        ));
        let msg = ToArbiter::Connected {
            port: self.index,
            conn: id,
            rx: rx.clone(),
            segment: None,
            clocked: clock.is_some(),
            timed: self.mode.timed,
        };
        self.inbox.send(msg).await.ok()?;
        let (clock_rd, clock_wr) = match clock {
            Some(c) => {
                let (r, w) = c.into_split();
                (Some(r), Some(w))
            }
            None => (None, None),
        };
        let counters = &self.shared.ports[self.index];
        counters.connected.store(true, Relaxed);
        counters.connects.fetch_add(1, Relaxed);
        info!(port = self.name(), conn = id.0, "client connected");
        let (read_half, write_half) = stream.into_split();
        let mut tasks = JoinSet::new();
        let reader = Reader {
            port: self.index,
            conn: id,
            inbox: self.inbox.clone(),
            tx_slots: self.tx_slots.clone(),
            shared: self.shared.clone(),
        };
        let guard = RxGuard {
            rx,
            port: self.index,
            shared: self.shared.clone(),
            in_flight: 0,
            cut: false,
        };
        match (clock_rd, clock_wr) {
            (Some(r), Some(w)) => {
                tasks.spawn(read_clocked(read_half, r, reader));
                tasks.spawn(write_clocked(write_half, w, guard));
            }
            _ if self.mode.timed => {
                tasks.spawn(read_timed(read_half, reader));
                tasks.spawn(write_timed(write_half, guard));
            }
            _ => {
                tasks.spawn(read_link(read_half, reader));
                tasks.spawn(write_link(write_half, guard, self.mode.deliver_every));
            }
        }
        Some(Connection { id, tasks })
    }

    async fn close(&mut self, conn: Option<Connection>) {
        let Some(mut conn) = conn else { return };
        conn.tasks.shutdown().await;
        self.shared.ports[self.index]
            .connected
            .store(false, Relaxed);
        info!(port = self.name(), conn = conn.id.0, "client disconnected");
        let _ = self
            .inbox
            .send(ToArbiter::Disconnected {
                port: self.index,
                conn: conn.id,
            })
            .await;
    }
}

struct Reader {
    port: PortId,
    conn: ConnId,
    inbox: mpsc::Sender<ToArbiter>,
    tx_slots: Arc<Semaphore>,
    shared: Arc<Shared>,
}

/// Takes a TX FIFO place, waiting for one (and marking the port
/// `backlogged`) while none is free; `false` once the port is closed.
async fn take_place(slots: &Semaphore, backlogged: &mut bool) -> bool {
    match slots.try_acquire() {
        Ok(slot) => slot.forget(),
        Err(TryAcquireError::NoPermits) => {
            *backlogged = true;
            let Ok(slot) = slots.acquire().await else {
                return false;
            };
            slot.forget();
        }
        Err(TryAcquireError::Closed) => return false,
    }
    true
}

/// Decodes link frames and queues them in the port's TX FIFO. While the
/// FIFO is full it stops reading, so the sender feels the backpressure.
async fn read_link(mut sock: OwnedReadHalf, r: Reader) {
    let mut decoder = Decoder::new();
    let mut buf = [0u8; READ_CHUNK];
    // Set once we wait for a FIFO place, cleared once the socket runs dry:
    // while set, the sender is ahead of the bus, so what we read now was
    // there before, and a frame is ready as soon as a FIFO place frees.
    let mut backlogged = false;
    loop {
        let read = match sock.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                backlogged = false;
                sock.read(&mut buf).await
            }
            other => other,
        };
        let n = match read {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                debug!(port = r.port.0, error = %e, "read failed");
                return;
            }
        };
        let read_at = (!backlogged).then(|| r.shared.wall_now());
        for item in decoder.items(&buf[..n]) {
            match item {
                Err(e) => {
                    r.shared.link_error(r.port, e);
                    debug!(
                        port = r.port.0,
                        error = e.as_str(),
                        "bad link frame dropped"
                    );
                }
                // Time records matter on the virtual clock only.
                Ok(Item::At(_) | Item::Idle { .. }) => {}
                // Records only the bridge sends.
                Ok(Item::Until(_) | Item::TxFree(_)) => {
                    r.shared.link_error(r.port, LinkError::BadControl)
                }
                Ok(Item::SetFilter(filter)) => {
                    // In line with the port's frames, so it takes effect in order.
                    let msg = ToArbiter::Filter {
                        port: r.port,
                        conn: r.conn,
                        filter,
                    };
                    if r.inbox.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(Item::Frame(frame)) if !r.shared.timing.carries(&frame) => {
                    r.shared.drop_frames(r.port, Cause::TxFdOnClassic, 1);
                }
                Ok(Item::Frame(frame)) => {
                    if !take_place(&r.tx_slots, &mut backlogged).await {
                        return;
                    }
                    let msg = ToArbiter::Frame {
                        port: r.port,
                        conn: r.conn,
                        frame,
                        read_at,
                    };
                    if r.inbox.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The receive side of a connection. Whatever way the writer ends (error,
/// replacement, shutdown), frames still queued are counted as lost.
pub(crate) struct RxGuard {
    pub rx: Arc<RxQueue>,
    pub port: PortId,
    pub shared: Arc<Shared>,
    /// Frames taken from the queue whose write has not completed.
    pub in_flight: u64,
    /// A write was given up part way: the next one starts with a
    /// delimiter, so that the cut record cannot swallow it.
    pub cut: bool,
}

impl Drop for RxGuard {
    fn drop(&mut self) {
        let lost = self.rx.close() + std::mem::take(&mut self.in_flight);
        self.shared.drop_frames(self.port, Cause::PortDown, lost);
    }
}

impl RxGuard {
    /// Waits for frames and moves up to `max` into `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<Arc<LinkFrame>>, max: usize) {
        loop {
            if self.rx.pop_batch(out, max) > 0 {
                return;
            }
            self.rx.data.notified().await;
        }
    }

    /// Counts `frames` (of `bytes` data bytes) as written to the client.
    pub fn written(&mut self, frames: u64, bytes: u64) {
        self.in_flight = 0;
        let counters = &self.shared.ports[self.port];
        counters.frames_rx.fetch_add(frames, Relaxed);
        counters.bytes_rx.fetch_add(bytes, Relaxed);
    }
}

/// What a writer encodes: a frame, or freed TX places (timed clients).
#[derive(Clone, Copy)]
enum Out<'a> {
    Frame(&'a LinkFrame),
    TxFree(u32),
}

impl<'a> From<&'a Delivery> for Out<'a> {
    fn from(d: &'a Delivery) -> Self {
        match d {
            Delivery::Frame(f) => Out::Frame(f),
            Delivery::TxFree(places) => Out::TxFree(*places),
        }
    }
}

/// Encodes `items` (each after its time record, if it has one) and writes
/// them to the client in one write; false once the write failed.
async fn write_batch<'a>(
    sock: &mut OwnedWriteHalf,
    q: &mut RxGuard,
    out: &mut Vec<u8>,
    items: impl Iterator<Item = (Out<'a>, Option<u64>)>,
) -> bool {
    write_batch_within(sock, q, out, items, None).await
}

/// [`write_batch`], giving up after `limit` (if any) on a client that takes
/// nothing: the batch counts as overrun (though part of it may have got
/// through), and a record cut short is dropped by the client's decoder at
/// the delimiter the next write starts with.
async fn write_batch_within<'a>(
    sock: &mut OwnedWriteHalf,
    q: &mut RxGuard,
    out: &mut Vec<u8>,
    items: impl Iterator<Item = (Out<'a>, Option<u64>)>,
    limit: Option<Duration>,
) -> bool {
    let mut encoded = [0u8; MAX_ENCODED];
    out.clear();
    if std::mem::take(&mut q.cut) {
        out.push(0);
    }
    let (mut frames, mut bytes) = (0u64, 0u64);
    for (item, at) in items {
        if let Some(t) = at {
            let n = encode_at(t, &mut encoded);
            out.extend_from_slice(&encoded[..n]);
        }
        match item {
            Out::Frame(link) => {
                frames += 1;
                bytes += link.frame.data().len() as u64;
                out.extend_from_slice(link.bytes());
            }
            Out::TxFree(places) => {
                let n = encode_tx_free(places, &mut encoded);
                out.extend_from_slice(&encoded[..n]);
            }
        }
    }
    q.in_flight = frames;
    let written = match limit {
        None => sock.write_all(out).await,
        Some(limit) => match tokio::time::timeout(limit, sock.write_all(out)).await {
            Ok(r) => r,
            Err(_) => {
                warn!(
                    port = q.port.0,
                    frames, "the held node takes no frames (its device is full): dropped"
                );
                q.shared.drop_frames(q.port, Cause::Overrun, frames);
                q.in_flight = 0;
                q.cut = true;
                return true;
            }
        },
    };
    if let Err(e) = written {
        debug!(port = q.port.0, error = %e, "write failed");
        return false;
    }
    q.written(frames, bytes);
    true
}

/// A plain client's writer: frames as the bus delivers them, or, with
/// `every`, what came within that long of the first in one write.
async fn write_link(mut sock: OwnedWriteHalf, mut q: RxGuard, every: Option<Duration>) {
    let mut out = Vec::with_capacity(WRITE_BATCH * MAX_ENCODED);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        batch.clear();
        q.next_batch(&mut batch, WRITE_BATCH).await;
        if let Some(every) = every.filter(|_| batch.len() < WRITE_BATCH) {
            // Taken from the queue: lost with the connection from now on.
            q.in_flight = batch.len() as u64;
            tokio::time::sleep(every).await;
            let room = WRITE_BATCH - batch.len();
            q.rx.pop_batch(&mut batch, room);
        }
        let items = batch.iter().map(|f| (Out::Frame(f), None));
        if !write_batch(&mut sock, &mut q, &mut out, items).await {
            return;
        }
    }
}

/// A node's reader on the virtual clock: its link bytes and its plugin's
/// reports, in the order the node made them.
async fn read_clocked(mut sock: OwnedReadHalf, mut clock: OwnedReadHalf, r: Reader) {
    let mut decoder = Decoder::new();
    let mut buf = [0u8; READ_CHUNK];
    let mut rec = [0u8; RECORD];
    let mut have = 0;
    loop {
        tokio::select! {
            biased;
            read = clock.read(&mut rec[have..]) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => have += n,
                }
                if have < RECORD {
                    continue;
                }
                have = 0;
                // The node wrote its bytes before its report: all of them
                // are in the socket now. Read them with the system call
                // itself: tokio's readiness may not have caught up yet.
                loop {
                    match recv_now(&sock, &mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if !take_clocked(&r, &mut decoder, &buf[..n]).await {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return,
                    }
                }
                let report = match Report::decode(&rec) {
                    Ok(report) => report,
                    Err(e) => {
                        warn!(port = r.port.0, error = ?e, "bad clock record; the node is cut off");
                        return;
                    }
                };
                let msg = ToArbiter::Clock { port: r.port, conn: r.conn, report };
                if r.inbox.send(msg).await.is_err() {
                    return;
                }
            }
            read = sock.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !take_clocked(&r, &mut decoder, &buf[..n]).await {
                        return;
                    }
                }
            },
        }
    }
}

/// Reads what the kernel holds for `sock` now, without waiting and
/// whatever tokio last saw of its readiness.
fn recv_now(sock: &OwnedReadHalf, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_ref().as_raw_fd();
    nix::sys::socket::recv(fd, buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
        .map_err(std::io::Error::from)
}

/// Decodes a node's bytes on the virtual clock. `false` once the arbiter
/// is gone.
async fn take_clocked(r: &Reader, decoder: &mut Decoder, bytes: &[u8]) -> bool {
    for item in decoder.items(bytes) {
        let msg = match item {
            Err(e) => {
                r.shared.link_error(r.port, e);
                continue;
            }
            // A node's frames take their time from its next report.
            Ok(Item::At(_)) => continue,
            Ok(Item::Until(_) | Item::Idle { .. } | Item::TxFree(_)) => {
                r.shared.link_error(r.port, LinkError::BadControl);
                continue;
            }
            Ok(Item::SetFilter(filter)) => ToArbiter::Filter {
                port: r.port,
                conn: r.conn,
                filter,
            },
            Ok(Item::Frame(frame)) if !r.shared.timing.carries(&frame) => {
                r.shared.drop_frames(r.port, Cause::TxFdOnClassic, 1);
                continue;
            }
            Ok(Item::Frame(frame)) => {
                // The virtual clock's FIFO is sized never to push back (a
                // wait here would depend on the host).
                let Ok(slot) = r.tx_slots.acquire().await else {
                    return false;
                };
                slot.forget();
                ToArbiter::TimedFrame {
                    port: r.port,
                    conn: r.conn,
                    frame,
                }
            }
        };
        if r.inbox.send(msg).await.is_err() {
            return false;
        }
    }
    true
}

/// Whether QEMU has read every byte written to `sock`: a unix socket counts
/// what its peer has not read. It waits at most [`HANDOVER_LIMIT`]; after a
/// handover that gave up (`stuck`: the guest had no room for its frames),
/// only [`STUCK_PATIENCE`] without QEMU taking anything.
async fn drained(sock: &OwnedWriteHalf, stuck: bool) -> bool {
    use std::os::fd::AsRawFd;
    let fd = sock.as_ref().as_raw_fd();
    let start = std::time::Instant::now();
    let mut last = (0, start);
    let mut spins = 0u32;
    loop {
        let mut unread: nix::libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) on a socket we own writes one int,
        // the bytes its peer has not read yet.
        let r = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCOUTQ, &mut unread) };
        if r != 0 || unread == 0 {
            return true;
        }
        let now = std::time::Instant::now();
        if unread != last.0 {
            last = (unread, now);
        }
        if now - start > HANDOVER_LIMIT || (stuck && now - last.1 > STUCK_PATIENCE) {
            return false;
        }
        // QEMU takes them within microseconds: yield first, then sleep.
        spins += 1;
        if spins < 200 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A node's writer on the virtual clock: frames stamped with their delivery
/// times, then each grant once QEMU has read the frames before it.
async fn write_clocked(mut sock: OwnedWriteHalf, mut clock: OwnedWriteHalf, mut q: RxGuard) {
    let mut out = Vec::with_capacity(WRITE_BATCH * 2 * MAX_ENCODED);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut stuck = false;
    loop {
        batch.clear();
        if q.rx.pop_timed(&mut batch, WRITE_BATCH) == 0 {
            if let Some((until, reset)) = q.rx.take_grant() {
                let was = stuck;
                stuck = !drained(&sock, stuck).await;
                if stuck && !was {
                    warn!(
                        port = q.port.0,
                        "the held node did not take its frames (its device is full); granted on anyway"
                    );
                }
                if clock
                    .write_all(&Grant { until, reset }.encode())
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            q.rx.data.notified().await;
            continue;
        }
        let items = batch.iter().map(|(f, at)| (Out::from(f), *at));
        // A node held at its grant reads nothing until the grant comes,
        // which waits behind these frames: never wait for it for ever.
        let limit = if stuck {
            STUCK_PATIENCE
        } else {
            HANDOVER_LIMIT
        };
        if !write_batch_within(&mut sock, &mut q, &mut out, items, Some(limit)).await {
            return;
        }
    }
}

/// A timed host client's reader (the virtual clock): its frames, each
/// with the time record before it, and its `Idle` records, in order.
async fn read_timed(mut sock: OwnedReadHalf, r: Reader) {
    let mut decoder = Decoder::new();
    let mut buf = [0u8; READ_CHUNK];
    let mut at = None;
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for item in decoder.items(&buf[..n]) {
            let msg = match item {
                Err(e) => {
                    r.shared.link_error(r.port, e);
                    continue;
                }
                Ok(Item::At(t)) => {
                    at = Some(t);
                    continue;
                }
                Ok(Item::Idle { at, wake }) => ToArbiter::HostIdle {
                    port: r.port,
                    conn: r.conn,
                    at,
                    wake,
                },
                Ok(Item::Until(_) | Item::TxFree(_)) => {
                    r.shared.link_error(r.port, LinkError::BadControl);
                    continue;
                }
                Ok(Item::SetFilter(filter)) => ToArbiter::Filter {
                    port: r.port,
                    conn: r.conn,
                    filter,
                },
                Ok(Item::Frame(frame)) if !r.shared.timing.carries(&frame) => {
                    r.shared.drop_frames(r.port, Cause::TxFdOnClassic, 1);
                    continue;
                }
                Ok(Item::Frame(frame)) => {
                    // The client counts its FIFO places itself (freed ones
                    // come to it in time); this one never pushes back.
                    let Ok(slot) = r.tx_slots.acquire().await else {
                        return;
                    };
                    slot.forget();
                    ToArbiter::HostFrame {
                        port: r.port,
                        conn: r.conn,
                        frame,
                        at: at.take(),
                    }
                }
            };
            if r.inbox.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// A timed host client's writer (the virtual clock): frames and freed TX
/// places stamped with their times, then each `Until` once what was queued
/// before it is written.
async fn write_timed(mut sock: OwnedWriteHalf, mut q: RxGuard) {
    let mut out = Vec::with_capacity(WRITE_BATCH * 2 * MAX_ENCODED);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        batch.clear();
        if q.rx.pop_timed(&mut batch, WRITE_BATCH) == 0 {
            if let Some((until, _)) = q.rx.take_grant() {
                let mut rec = [0u8; MAX_ENCODED];
                let n = encode_until(until, &mut rec);
                if sock.write_all(&rec[..n]).await.is_err() {
                    return;
                }
                continue;
            }
            q.rx.data.notified().await;
            continue;
        }
        let items = batch.iter().map(|(d, at)| (Out::from(d), *at));
        if !write_batch(&mut sock, &mut q, &mut out, items).await {
            return;
        }
    }
}
