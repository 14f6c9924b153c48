//! The other end of a port: a client that connects to a bridge port's
//! unix socket and speaks the link codec, as a node's UART does. For the
//! host's master and supervisor, tools, benchmarks and tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bus_bridge::client::ClientError> {
//! use bus_bridge::client;
//! let (mut reader, mut writer) = client::connect("/tmp/bc/master.sock".as_ref()).await?;
//! writer.send(&proto::Frame::new(0x123, 0, &[1, 2, 3]).unwrap()).await?;
//! while let Some(frame) = reader.next().await? {
//!     println!("{frame:?}");
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::Frame;
use proto::filter::AcceptanceFilter;
use proto::link::{self, Decoder, Item, LinkError, MAX_ENCODED};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Kernel send buffer towards the bridge that [`connect`] asks for (Linux
/// doubles it): a small one keeps what a client has "sent" close to what
/// the bus has carried.
pub const SEND_BUFFER: usize = 4096;
/// Bytes a [`FrameReader`] takes from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Pause between connection attempts.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// What went wrong on a port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The port's socket did not accept the connection.
    #[error("cannot connect to bus port {}", path.display())]
    Connect {
        /// The port's socket.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The send buffer could not be set.
    #[error("cannot size the send buffer of {}", path.display())]
    SendBuffer {
        /// The port's socket.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: nix::Error,
    },
    /// Reading from the port failed.
    #[error("reading bus port")]
    Read(#[source] io::Error),
    /// Writing to the port failed.
    #[error("writing bus port")]
    Write(#[source] io::Error),
}

/// How [`connect_with`] connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long to keep trying while the socket is not there yet (the
    /// bridge may still be binding it).
    pub retry_for: Duration,
    /// The kernel send buffer towards the bridge; `None` leaves the
    /// system's default.
    pub send_buffer: Option<usize>,
}

impl Default for ConnectOptions {
    /// Two seconds of retries and a [`SEND_BUFFER`]-byte send buffer.
    fn default() -> Self {
        ConnectOptions {
            retry_for: Duration::from_secs(2),
            send_buffer: Some(SEND_BUFFER),
        }
    }
}

impl ConnectOptions {
    /// One attempt, the system's buffers.
    pub const PLAIN: ConnectOptions = ConnectOptions {
        retry_for: Duration::ZERO,
        send_buffer: None,
    };
}

/// Connects to the port socket at `path` with the default options.
pub async fn connect(path: &Path) -> Result<(FrameReader, FrameWriter), ClientError> {
    connect_with(path, ConnectOptions::default()).await
}

/// Connects to the port socket at `path`.
pub async fn connect_with(
    path: &Path,
    options: ConnectOptions,
) -> Result<(FrameReader, FrameWriter), ClientError> {
    let tries = options.retry_for.as_millis() / RETRY_EVERY.as_millis();
    let mut tried = 0;
    let stream = loop {
        match UnixStream::connect(path).await {
            Ok(s) => break s,
            Err(_) if tried < tries => {
                tried += 1;
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(source) => {
                return Err(ClientError::Connect {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    };
    if let Some(size) = options.send_buffer {
        nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &size).map_err(
            |source| ClientError::SendBuffer {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    Ok(split(stream))
}

/// A reader and a writer on a stream already connected (a socket pair in
/// tests, a socket passed in).
pub fn split(stream: UnixStream) -> (FrameReader, FrameWriter) {
    let (rd, wr) = stream.into_split();
    (FrameReader::new(rd), FrameWriter { wr })
}

/// Receives frames from the bus.
pub struct FrameReader {
    rd: OwnedReadHalf,
    decoder: Decoder,
    buf: Box<[u8; READ_CHUNK]>,
    /// Bytes `at..len` of `buf` are still to decode.
    at: usize,
    len: usize,
    /// Link frames dropped as damaged.
    pub link_errors: u64,
    /// The last damage seen.
    pub last_error: Option<LinkError>,
}

impl FrameReader {
    fn new(rd: OwnedReadHalf) -> FrameReader {
        FrameReader {
            rd,
            decoder: Decoder::new(),
            buf: Box::new([0; READ_CHUNK]),
            at: 0,
            len: 0,
            link_errors: 0,
            last_error: None,
        }
    }

    /// The next good frame, or `None` when the bridge closed the port.
    /// Damaged input is counted and skipped. Cancel-safe: nothing read is
    /// lost if the future is dropped.
    pub async fn next(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            while self.at < self.len {
                let (n, r) = self.decoder.push_slice(&self.buf[self.at..self.len]);
                self.at += n;
                match r.map(|r| r.copied()) {
                    Some(Ok(f)) => return Ok(Some(f)),
                    Some(Err(e)) => self.damaged(e),
                    None => {}
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next good item, frame or control record, or `None` when the
    /// bridge closed the port: what a timed client reads (see
    /// [`PortConfig::timed`](crate::PortConfig::timed)). Damaged input is
    /// counted and skipped. Cancel-safe.
    pub async fn next_item(&mut self) -> Result<Option<Item>, ClientError> {
        loop {
            while self.at < self.len {
                let (n, r) = self.decoder.push_slice_item(&self.buf[self.at..self.len]);
                self.at += n;
                match r {
                    Some(Ok(item)) => return Ok(Some(item)),
                    Some(Err(e)) => self.damaged(e),
                    None => {}
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    fn damaged(&mut self, e: LinkError) {
        self.link_errors += 1;
        self.last_error = Some(e);
    }

    /// Reads more bytes; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool, ClientError> {
        let n = self
            .rd
            .read(&mut self.buf[..])
            .await
            .map_err(ClientError::Read)?;
        self.at = 0;
        self.len = n;
        Ok(n > 0)
    }
}

/// Sends frames to the bus.
pub struct FrameWriter {
    wr: OwnedWriteHalf,
}

impl FrameWriter {
    /// Sends one frame; waits while the bridge applies backpressure.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        let mut out = [0u8; MAX_ENCODED];
        let n = link::encode(frame, &mut out);
        self.send_raw(&out[..n]).await
    }

    /// Sends `frames` in one write.
    pub async fn send_all(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        self.send_raw(&encode_frames(frames)).await
    }

    /// Sets the port's acceptance filter: from the frames this client
    /// sends next on, it gets only what the filter passes.
    pub async fn set_filter(&mut self, filter: &AcceptanceFilter) -> Result<(), ClientError> {
        let mut out = [0u8; MAX_ENCODED];
        let n = link::encode_filter(filter, &mut out);
        self.send_raw(&out[..n]).await
    }

    /// Sends bytes as they are: already encoded frames, or damaged input
    /// on purpose.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.wr.write_all(bytes).await.map_err(ClientError::Write)
    }
}

/// `frames`, link-encoded one after the other.
pub fn encode_frames(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.len() * 24);
    let mut buf = [0u8; MAX_ENCODED];
    for f in frames {
        let n = link::encode(f, &mut buf);
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Reads frames into `tx` until the port closes or `tx`'s receiver is
/// gone.
pub async fn read_frames(mut r: FrameReader, tx: mpsc::Sender<Frame>) -> Result<(), ClientError> {
    while let Some(f) = r.next().await? {
        if tx.send(f).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Aborts its task when dropped, so that a task ends with whatever owns
/// it.
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::filter::FilterEntry;

    #[tokio::test]
    async fn a_client_speaks_the_link_codec_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (mut reader, mut writer) = connect(&path).await.unwrap();
        let (bridge_side, _) = listener.accept().await.unwrap();
        let (mut bridge_rd, mut bridge_wr) = bridge_side.into_split();
        let f = |n: u8| Frame::new(0x100 + u32::from(n), 0, &[n]).unwrap();
        // Towards the bridge: frames and a filter record, as the bridge's
        // decoder sees them.
        writer.send_all(&[f(1), f(2)]).await.unwrap();
        let filter = AcceptanceFilter::new(&[FilterEntry {
            id: 0x100,
            mask: 0x700,
            extended: false,
        }])
        .unwrap();
        writer.set_filter(&filter).await.unwrap();
        drop(writer);
        let mut bytes = Vec::new();
        bridge_rd.read_to_end(&mut bytes).await.unwrap();
        let mut d = Decoder::new();
        let items: Vec<_> = bytes.iter().filter_map(|&b| d.push_item(b)).collect();
        assert_eq!(items.len(), 3);
        assert!(matches!(items[2], Ok(link::Item::SetFilter(got)) if got == filter));
        // From the bridge: damage is counted and skipped; frames go on
        // into a channel until the port closes.
        let mut from_bridge = vec![0x05, 0x11, 0x00];
        from_bridge.extend(encode_frames(&[f(3), f(4)]));
        bridge_wr.write_all(&from_bridge).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Some(f(3)));
        assert_eq!(
            (reader.link_errors, reader.last_error),
            (1, Some(LinkError::BadCobs))
        );
        drop(bridge_wr);
        let (tx, mut rx) = mpsc::channel(8);
        read_frames(reader, tx).await.unwrap();
        assert_eq!(rx.recv().await, Some(f(4)));
        assert_eq!(rx.recv().await, None, "the port closed");
    }

    #[tokio::test]
    async fn connecting_names_the_socket_and_a_dropped_guard_aborts_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let err = connect_with(&path, ConnectOptions::PLAIN)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("nobody.sock"), "{err}");
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        }));
        drop(guard);
        assert_eq!(
            rx.recv().await,
            None,
            "the task ended and dropped its sender"
        );
    }
}
