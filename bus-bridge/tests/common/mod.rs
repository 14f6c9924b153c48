//! Helpers shared by the integration tests: port clients speaking the link
//! codec, configs on temporary sockets, waiting on statistics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bus_bridge::client::{self, ConnectOptions, FrameReader, FrameWriter};
use bus_bridge::{BitTiming, Bridge, BridgeConfig, BusStats, PortConfig};
use proto::Frame;
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
    client::encode_frames(frames)
}

/// A port's client, as a node or the master would be: `bus_bridge::client`
/// with the system's socket buffers, failing the test on any error.
pub struct Client {
    pub reader: FrameReader,
    pub writer: FrameWriter,
}

impl Client {
    pub async fn connect(path: &Path) -> Client {
        let (reader, writer) = client::connect_with(path, ConnectOptions::PLAIN)
            .await
            .expect("connect to a port");
        Client { reader, writer }
    }

    pub async fn send(&mut self, frames: &[Frame]) {
        self.writer
            .send_all(frames)
            .await
            .expect("write to the bridge");
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer
            .send_raw(bytes)
            .await
            .expect("write to the bridge");
    }

    /// The next frame; `None` at end of stream.
    async fn next(&mut self) -> Option<Frame> {
        let f = self.reader.next().await.unwrap_or(None);
        assert_eq!(
            self.reader.link_errors, 0,
            "the bridge sent a bad link frame"
        );
        f
    }

    pub async fn recv(&mut self) -> Frame {
        timeout(PATIENCE, async {
            self.next().await.expect("the bridge closed the connection")
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
        timeout(wait, self.recv()).await.ok()
    }

    /// Waits for the bridge to close this connection.
    pub async fn closed(&mut self) {
        timeout(PATIENCE, async { while self.next().await.is_some() {} })
            .await
            .expect("connection still open");
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
