//! A host-side bus port: connects to one of the bridge's port sockets and
//! speaks the link codec, like a node's UART does.

use anyhow::{Context, Result};
use proto::Frame;
use proto::link::{self, Decoder, LinkError, MAX_ENCODED};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Kernel send buffer towards the bridge (Linux doubles it).
const SEND_BUFFER: usize = 4096;

/// Receives frames from the bus.
pub struct FrameReader {
    rd: OwnedReadHalf,
    decoder: Decoder,
    buf: Box<[u8; 4096]>,
    at: usize,
    len: usize,
    /// Link frames dropped as damaged.
    pub link_errors: u64,
    /// The last damage seen.
    pub last_error: Option<LinkError>,
}

/// Sends frames to the bus.
pub struct FrameWriter {
    wr: OwnedWriteHalf,
}

/// Connects to a port socket, retrying for up to two seconds while the
/// bridge binds it.
pub async fn connect(path: &Path) -> Result<(FrameReader, FrameWriter)> {
    let mut tries = 0;
    let stream = loop {
        match UnixStream::connect(path).await {
            Ok(s) => break s,
            Err(_) if tries < 40 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot connect to bus port {}", path.display()));
            }
        }
    };
    // A small send buffer keeps what we have "sent" close to what the bus
    // has carried: the master's session end times then mean something.
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER)
        .with_context(|| format!("cannot size the send buffer of {}", path.display()))?;
    let (rd, wr) = stream.into_split();
    Ok((
        FrameReader {
            rd,
            decoder: Decoder::new(),
            buf: Box::new([0; 4096]),
            at: 0,
            len: 0,
            link_errors: 0,
            last_error: None,
        },
        FrameWriter { wr },
    ))
}

impl FrameReader {
    /// The next good frame, or `None` when the bridge closed the port.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        loop {
            while self.at < self.len {
                let b = self.buf[self.at];
                self.at += 1;
                match self.decoder.push(b) {
                    Some(Ok(f)) => return Ok(Some(f)),
                    Some(Err(e)) => {
                        self.link_errors += 1;
                        self.last_error = Some(e);
                    }
                    None => {}
                }
            }
            let n = self
                .rd
                .read(&mut self.buf[..])
                .await
                .context("reading bus port")?;
            if n == 0 {
                return Ok(None);
            }
            self.at = 0;
            self.len = n;
        }
    }
}

impl FrameWriter {
    /// Sends one frame; waits while the bridge applies backpressure.
    pub async fn send(&mut self, frame: &Frame) -> Result<()> {
        let mut out = [0u8; MAX_ENCODED];
        let n = link::encode(frame, &mut out);
        self.wr
            .write_all(&out[..n])
            .await
            .context("writing bus port")?;
        Ok(())
    }
}
