//! bootcast's emulated multi-drop CAN FD bus.
//!
//! Each port is one drop on the bus: a unix socket the bridge listens on.
//! A QEMU node's UART connects to it as a chardev socket client
//! (`-chardev socket,path=P,server=off,reconnect=1`); the master, or any
//! tool, connects the same way. Everything on a port is link-codec framed
//! (`proto::link`: COBS + CRC-32, zero-delimited), both ways.
//!
//! Each segment is a shared medium. Every port has a TX FIFO; when the bus
//! is free, the head frame with the lowest arbitration key wins and goes to
//! every other connected port on the segment, never back to its sender. Bus
//! time comes from the real frame format ([`timing`]). *Paced*, a frame
//! holds the bus for its real duration; *unpaced*, the bus runs as fast as
//! receivers take frames and bus time is virtual.
//!
//! # Attaching a client from another process
//!
//! Connect a `SOCK_STREAM` unix socket to the port's path (the bridge is
//! the listener; one client per port, a new one replaces the old). Send
//! frames as `proto::link::encode` writes them and feed every byte received
//! to a `proto::link::Decoder`. Input the decoder rejects is dropped and
//! counted per port by `LinkError` kind; it never reaches the bus. A client
//! that sends faster than the bus carries is slowed down: the bridge stops
//! reading its socket while its TX FIFO is full. A client that reads slower
//! than the bus delivers loses frames to overruns (counted), after holding
//! an unpaced bus for at most the stall timeout.
//!
//! Task shape: one listener task per port; per connection one reader task
//! and one writer task; one arbiter task per arbitration domain (a set of
//! segments; today each segment is its own domain). Readers feed the
//! arbiter over an `mpsc`; the arbiter feeds each port's bounded receive
//! queue, which its writer drains. Shutdown goes out on a `watch` channel.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bus_bridge::BridgeError> {
//! use bus_bridge::{BridgeConfig, PortConfig};
//! let bridge = bus_bridge::start(BridgeConfig {
//!     segments: vec!["base".into()],
//!     ports: vec![
//!         PortConfig::new("master", "base", "/tmp/bc/master.sock"),
//!         PortConfig::new("node1", "base", "/tmp/bc/node1.sock"),
//!     ],
//!     ..BridgeConfig::default()
//! })
//! .await?;
//! let mut events = bridge.subscribe();
//! // ... connect clients, run a storm, read `events` ...
//! let stats = bridge.shutdown().await;
//! # let _ = (events.try_recv(), stats);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod arbiter;
mod config;
mod port;
mod stats;
pub mod timing;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use proto::Frame;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::error;

use arbiter::{Arbiter, ArbiterSetup};
pub use config::{BridgeConfig, BridgeError, MAX_SOCKET_PATH, PortConfig};
use port::PortTask;
use stats::Shared;
pub use stats::{BusStats, PortStats, SegmentStats, Totals};
pub use timing::{BitTiming, FrameBits, UnknownPreset};

/// Bus events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BACKLOG: usize = 4096;

/// A frame that won the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusEvent {
    /// Increases by one per frame, across all segments.
    pub seq: u64,
    /// Bus time at the frame's end (intermission included), ns since the
    /// bridge started: wall time when paced, virtual time when unpaced.
    pub bus_time_ns: u64,
    /// Index of the sender's segment.
    pub segment: usize,
    /// Index of the sending port.
    pub port: usize,
    /// The frame.
    pub frame: Frame,
}

/// A running bridge. Dropping it stops every task at once and removes the
/// socket files; [`Bridge::shutdown`] does the same gracefully.
pub struct Bridge {
    shared: Arc<Shared>,
    ports: Vec<PortConfig>,
    events: broadcast::Sender<BusEvent>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    sockets: Vec<(std::path::PathBuf, u64)>,
}

/// Checks `config`, binds every port's socket (removing stale socket files
/// first), starts all tasks, and returns once every socket is listening.
/// Must run inside a tokio runtime with the time and net drivers enabled.
pub async fn start(config: BridgeConfig) -> Result<Bridge, BridgeError> {
    let port_segment = config.validate()?;
    let mut bound = Vec::with_capacity(config.ports.len());
    for port in &config.ports {
        match port::bind(&port.name, &port.socket) {
            Ok(b) => bound.push(b),
            Err(e) => {
                for b in &bound {
                    port::remove_socket(&b.path, b.inode);
                }
                return Err(e);
            }
        }
    }
    let sockets = bound.iter().map(|b| (b.path.clone(), b.inode)).collect();

    // One arbitration domain per segment until segments can be linked.
    let domains: Vec<Vec<usize>> = (0..config.segments.len()).map(|s| vec![s]).collect();
    let mut segment_domain = vec![0; config.segments.len()];
    for (d, segments) in domains.iter().enumerate() {
        for &s in segments {
            segment_domain[s] = d;
        }
    }
    let shared = Arc::new(Shared {
        started: Instant::now(),
        timing: config.timing,
        paced: config.paced,
        port_names: config.ports.iter().map(|p| p.name.clone()).collect(),
        port_segment: port_segment.clone(),
        segment_names: config.segments.clone(),
        segment_domain: segment_domain.clone(),
        ports: config.ports.iter().map(|_| Default::default()).collect(),
        segments: config.segments.iter().map(|_| Default::default()).collect(),
        domains: domains.iter().map(|_| Default::default()).collect(),
        next_seq: AtomicU64::new(0),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let mut tasks = JoinSet::new();

    let mut inboxes = Vec::with_capacity(domains.len());
    for (domain, segments) in domains.into_iter().enumerate() {
        let ports: Vec<usize> = (0..config.ports.len())
            .filter(|&p| segment_domain[port_segment[p]] == domain)
            .collect();
        // Frames in flight are bounded by the FIFO places; two more per
        // port cover connect and disconnect notices.
        let (tx, rx) = mpsc::channel(ports.len() * (config.tx_fifo_depth + 2) + 16);
        let setup = ArbiterSetup {
            domain,
            segments,
            ports,
            tx_fifo_depth: config.tx_fifo_depth,
            stall_timeout: config.stall_timeout,
        };
        let arbiter = Arbiter::new(
            setup,
            rx,
            shutdown_rx.clone(),
            shared.clone(),
            events.clone(),
        );
        tasks.spawn(arbiter.run());
        inboxes.push(tx);
    }
    for (index, bound) in bound.into_iter().enumerate() {
        let task = PortTask {
            index,
            bound,
            inbox: inboxes[segment_domain[port_segment[index]]].clone(),
            tx_slots: Arc::new(Semaphore::new(config.tx_fifo_depth)),
            shared: shared.clone(),
            shutdown: shutdown_rx.clone(),
            rx_queue_depth: config.rx_queue_depth,
        };
        tasks.spawn(task.run());
    }
    Ok(Bridge {
        shared,
        ports: config.ports,
        events,
        shutdown: shutdown_tx,
        tasks,
        sockets,
    })
}

impl Bridge {
    /// A snapshot of every counter.
    pub fn stats(&self) -> BusStats {
        self.shared.snapshot()
    }

    /// Every frame that wins the bus from now on, in bus order per segment.
    /// A subscriber more than [`EVENT_BACKLOG`] events behind gets
    /// `RecvError::Lagged` and loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.events.subscribe()
    }

    /// The ports, in index order.
    pub fn ports(&self) -> &[PortConfig] {
        &self.ports
    }

    /// The index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    /// Stops every task, closes every socket, removes the socket files, and
    /// returns the final statistics.
    pub async fn shutdown(mut self) -> BusStats {
        let _ = self.shutdown.send(true);
        while let Some(done) = self.tasks.join_next().await {
            if let Err(e) = done
                && e.is_panic()
            {
                error!(error = %e, "bridge task panicked");
            }
        }
        self.stats()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.tasks.abort_all();
        for (path, inode) in &self.sockets {
            port::remove_socket(path, *inode);
        }
    }
}
