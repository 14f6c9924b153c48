//! Helpers shared by the integration tests: port clients speaking the link
//! codec, configs on temporary sockets, waiting on statistics.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bus_bridge::{BitTiming, Bridge, BridgeConfig, BusStats, PortConfig};
use proto::Frame;
use proto::link::{Decoder, MAX_ENCODED, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::{Instant, sleep, timeout};

/// Long enough for a loaded 2-core machine; only reached when a test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Ports as (name, segment); segments in the order they are first named.
pub fn config(dir: &Path, timing: BitTiming, ports: &[(&str, &str)]) -> BridgeConfig {
    let mut segments: Vec<String> = Vec::new();
    for (_, seg) in ports {
        if !segments.iter().any(|s| s == seg) {
            segments.push((*seg).to_owned());
        }
    }
    BridgeConfig {
        segments,
        ports: ports
            .iter()
            .map(|(name, seg)| PortConfig::new(*name, *seg, sock(dir, name)))
            .collect(),
        timing,
        ..BridgeConfig::default()
    }
}

pub fn sock(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

pub fn encoded(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_ENCODED];
    for f in frames {
        let n = encode(f, &mut buf);
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A port's client, as a node or the master would be.
pub struct Client {
    pub stream: UnixStream,
    decoder: Decoder,
    received: VecDeque<Frame>,
}

impl Client {
    pub async fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).await.expect("connect to a port");
        Client {
            stream,
            decoder: Decoder::new(),
            received: VecDeque::new(),
        }
    }

    pub async fn send(&mut self, frames: &[Frame]) {
        self.stream
            .write_all(&encoded(frames))
            .await
            .expect("write to the bridge");
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await.unwrap_or(0);
        for &b in &buf[..n] {
            if let Some(r) = self.decoder.push(b) {
                self.received
                    .push_back(r.expect("the bridge sent a bad link frame"));
            }
        }
        n > 0
    }

    pub async fn recv(&mut self) -> Frame {
        timeout(PATIENCE, async {
            loop {
                if let Some(f) = self.received.pop_front() {
                    return f;
                }
                assert!(self.fill().await, "the bridge closed the connection");
            }
        })
        .await
        .expect("no frame arrived")
    }

    pub async fn recv_n(&mut self, n: usize) -> Vec<Frame> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv().await);
        }
        out
    }

    /// A frame if one arrives within `wait`.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Frame> {
        if let Some(f) = self.received.pop_front() {
            return Some(f);
        }
        timeout(wait, self.recv()).await.ok()
    }
}

pub async fn wait_for(bridge: &Bridge, what: &str, cond: impl Fn(&BusStats) -> bool) -> BusStats {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = bridge.stats();
        if cond(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:#?}"
        );
        sleep(Duration::from_millis(2)).await;
    }
}

pub async fn connect_all(bridge: &Bridge, names: &[&str]) -> Vec<Client> {
    let mut clients = Vec::new();
    for name in names {
        let i = bridge.port_index(name).unwrap();
        clients.push(Client::connect(&bridge.ports()[i].socket).await);
    }
    let idx: Vec<usize> = names
        .iter()
        .map(|n| bridge.port_index(n).unwrap())
        .collect();
    wait_for(bridge, "clients to connect", |s| {
        idx.iter().all(|&i| s.ports[i].connected)
    })
    .await;
    clients
}

pub fn std_frame(id: u32, data: &[u8]) -> Frame {
    Frame::new(id, 0, data).unwrap()
}

/// An FD frame carrying `n` in its first 4 bytes.
pub fn numbered(id: u32, n: u32) -> Frame {
    let mut data = [0u8; 8];
    data[..4].copy_from_slice(&n.to_le_bytes());
    Frame::fd_extended(id, &data).unwrap()
}

pub fn number_of(f: &Frame) -> u32 {
    u32::from_le_bytes(f.data()[..4].try_into().unwrap())
}

/// Whether an external tool the test needs is there. In CI (`CI=true`) a
/// missing tool fails the test: CI installs it. Elsewhere the test skips
/// the part that needs it, saying so.
pub fn tool_available(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing, and CI=true: CI must install it");
    }
    eprintln!("note: {what} is not installed here; skipping the part of this test that needs it");
    false
}
