//! One task per port listens on its socket and keeps at most one client
//! connection. Each connection has a reader task (link bytes -> frames ->
//! the arbiter) and a writer task (receive queue -> link bytes).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use proto::Frame;
use proto::link::{Decoder, Item, MAX_ENCODED, encode};
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
use crate::rxqueue::RxQueue;
use crate::shutdown::wait_shutdown;
use crate::stats::Shared;

/// Frames the writer encodes into one socket write.
pub(crate) const WRITE_BATCH: usize = 32;
/// Bytes the reader takes from the socket at once.
const READ_CHUNK: usize = 4096;
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
                        next_id += 1;
                        conn = self.open(ConnId(next_id), stream).await;
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
            }
        }
        self.close(conn.take()).await;
        remove_socket(&self.bound.path, self.bound.inode);
    }

    async fn open(&mut self, id: ConnId, stream: UnixStream) -> Option<Connection> {
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
        };
        self.inbox.send(msg).await.ok()?;
        let counters = &self.shared.ports[self.index];
        counters.connected.store(true, Relaxed);
        counters.connects.fetch_add(1, Relaxed);
        info!(port = self.name(), conn = id.0, "client connected");
        let (read_half, write_half) = stream.into_split();
        let mut tasks = JoinSet::new();
        tasks.spawn(read_link(
            read_half,
            Reader {
                port: self.index,
                conn: id,
                inbox: self.inbox.clone(),
                tx_slots: self.tx_slots.clone(),
                shared: self.shared.clone(),
            },
        ));
        tasks.spawn(write_link(
            write_half,
            RxGuard {
                rx,
                port: self.index,
                shared: self.shared.clone(),
                in_flight: 0,
            },
        ));
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
        for &byte in &buf[..n] {
            match decoder.push_item(byte) {
                None => {}
                Some(Err(e)) => {
                    r.shared.link_error(r.port, e);
                    debug!(
                        port = r.port.0,
                        error = e.as_str(),
                        "bad link frame dropped"
                    );
                }
                // Time records matter on the virtual clock only.
                Some(Ok(Item::At(_))) => {}
                Some(Ok(Item::SetFilter(filter))) => {
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
                Some(Ok(Item::Frame(frame))) if !r.shared.timing.carries(&frame) => {
                    r.shared.drop_frames(r.port, Cause::TxFdOnClassic, 1);
                }
                Some(Ok(Item::Frame(frame))) => {
                    match r.tx_slots.try_acquire() {
                        Ok(slot) => slot.forget(),
                        Err(TryAcquireError::NoPermits) => {
                            backlogged = true;
                            let Ok(slot) = r.tx_slots.acquire().await else {
                                return;
                            };
                            slot.forget();
                        }
                        Err(TryAcquireError::Closed) => return,
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
}

impl Drop for RxGuard {
    fn drop(&mut self) {
        let lost = self.rx.close() + std::mem::take(&mut self.in_flight);
        self.shared.drop_frames(self.port, Cause::PortDown, lost);
    }
}

impl RxGuard {
    /// Waits for frames and moves up to `max` into `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<Frame>, max: usize) {
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

async fn write_link(mut sock: OwnedWriteHalf, mut q: RxGuard) {
    let mut out = Vec::with_capacity(WRITE_BATCH * MAX_ENCODED);
    let mut encoded = [0u8; MAX_ENCODED];
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        batch.clear();
        q.next_batch(&mut batch, WRITE_BATCH).await;
        out.clear();
        let mut bytes = 0u64;
        for frame in &batch {
            let n = encode(frame, &mut encoded);
            out.extend_from_slice(&encoded[..n]);
            bytes += frame.data().len() as u64;
        }
        q.in_flight = batch.len() as u64;
        if let Err(e) = sock.write_all(&out).await {
            debug!(port = q.port.0, error = %e, "write failed");
            return;
        }
        q.written(batch.len() as u64, bytes);
    }
}
