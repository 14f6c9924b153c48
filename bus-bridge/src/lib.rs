//! bootcast's emulated multi-drop CAN FD bus.
//!
//! Each port is one drop on the bus: a unix socket the bridge listens on.
//! A QEMU node's UART connects to it as a chardev socket client
//! (`-chardev socket,path=P,server=off,reconnect=1`); the master, or any
//! tool, connects the same way. Everything on a port is link-codec framed
//! (`proto::link`: COBS + CRC-32, zero-delimited), both ways.
//!
//! Segments joined by links that are up form one arbitration domain, a
//! shared medium. Every port has a TX FIFO; when the bus is free, the head
//! frame with the lowest arbitration key wins and goes to every other
//! connected port of the domain, never back to its sender. Bus time comes
//! from the real frame format ([`timing`]). *Paced*, a frame holds the bus
//! for its real duration; *unpaced*, the bus runs as fast as receivers take
//! frames and bus time is virtual.
//!
//! Faults (loss, corruption, delay, link down, babbling, link cuts) are
//! seeded and set at start ([`FaultConfig`]) or at run time through
//! [`BridgeControl`] or the JSON-lines control socket. Every frame that
//! wins a bus can be captured to pcap and candump files
//! ([`CaptureConfig`]). External tools join through a socketcand-compatible
//! TCP server ([`SocketcandConfig`]).
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
//! and one writer task; one arbiter task for every arbitration domain (so
//! that cutting and restoring links regroups ports without handing state
//! between tasks); a socketcand task and a control task if configured; a
//! capture thread. Readers feed the arbiter over an `mpsc`; the arbiter
//! feeds each port's bounded receive queue, which its writer drains.
//! Shutdown goes out on a `watch` channel.
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
pub mod capture;
mod config;
mod control;
mod error;
mod event;
pub mod faults;
mod port;
mod rxqueue;
mod socketcand;
mod stats;
pub mod timing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::error;

use arbiter::{Arbiter, ArbiterSetup};
pub use capture::{CaptureConfig, CaptureStatus};
pub use config::{
    BridgeConfig, FdFormat, LinkConfig, MAX_SOCKET_PATH, MAX_SOCKETCAND_CLIENTS, PortConfig,
    SocketcandConfig, Topology, socketcand_port_name,
};
pub use control::{BridgeControl, ControlError, LinkStatus, TopologyStatus};
pub use error::BridgeError;
pub use event::{BusEvent, EVENT_BACKLOG};
pub use faults::{Babble, Fault, FaultConfig, FaultEntry, FaultKind, IdMatch};
use port::PortTask;
pub use stats::{BusStats, LinkStats, PortStats, SegmentStats, SocketcandStatus, Totals};
use stats::{LinkCounters, PortCounters, Shared, SocketcandShared};
pub use timing::{BitTiming, FrameBits, UnknownPreset};

/// A running bridge. Dropping it stops every task at once and removes the
/// socket files; [`Bridge::shutdown`] does the same gracefully and flushes
/// the capture files.
pub struct Bridge {
    shared: Arc<Shared>,
    ports: Vec<PortConfig>,
    events: broadcast::Sender<BusEvent>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    sockets: Vec<(std::path::PathBuf, u64)>,
    control: BridgeControl,
    capture_thread: Option<std::thread::JoinHandle<()>>,
}

/// Checks `config`, binds every port's socket (removing stale socket files
/// first), the control socket and the socketcand port, opens the capture
/// files, starts all tasks, and returns once everything is listening.
/// Must run inside a tokio runtime with the time and net drivers enabled.
pub async fn start(config: BridgeConfig) -> Result<Bridge, BridgeError> {
    let checked = config.check()?;
    let mut bound = Vec::with_capacity(config.ports.len());
    let cleanup = |bound: &[port::Bound]| {
        for b in bound {
            port::remove_socket(&b.path, b.inode);
        }
    };
    for port in &config.ports {
        match port::bind(&port.name, &port.socket) {
            Ok(b) => bound.push(b),
            Err(e) => {
                cleanup(&bound);
                return Err(e);
            }
        }
    }
    let control_bound = match &config.control_socket {
        Some(path) => match port::bind("control", path) {
            Ok(b) => Some(b),
            Err(e) => {
                cleanup(&bound);
                return Err(e);
            }
        },
        None => None,
    };
    let mut sockets: Vec<_> = bound.iter().map(|b| (b.path.clone(), b.inode)).collect();
    sockets.extend(control_bound.iter().map(|b| (b.path.clone(), b.inode)));
    let fail = |e| {
        for (path, inode) in &sockets {
            port::remove_socket(path, *inode);
        }
        Err(e)
    };
    let socketcand_listener = match &config.socketcand {
        Some(sc) => match tokio::net::TcpListener::bind(("127.0.0.1", sc.port)).await {
            Ok(l) => Some(l),
            Err(source) => {
                return fail(BridgeError::Socketcand {
                    port: sc.port,
                    source,
                });
            }
        },
        None => None,
    };
    let socketcand_addr = match socketcand_listener.as_ref().map(|l| l.local_addr()) {
        Some(Ok(a)) => Some(a),
        Some(Err(source)) => {
            return fail(BridgeError::Socketcand {
                port: config.socketcand.as_ref().map_or(0, |s| s.port),
                source,
            });
        }
        None => None,
    };
    let epoch_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let (capture_sink, capture_shared, capture_thread) = if config.capture.enabled() {
        match capture::open(&config.capture, epoch_ns, config.segments.clone()) {
            Ok((sink, shared, thread)) => (Some(sink), Some(shared), Some(thread)),
            Err(e) => return fail(e),
        }
    } else {
        (None, None, None)
    };

    let n_ports = checked.port_names.len();
    let mut port_segment = checked.port_segment.clone();
    // socketcand ports sit on the first segment until a client opens one.
    port_segment.resize(n_ports, 0);
    let shared = Arc::new(Shared {
        started: Instant::now(),
        timing: config.timing,
        paced: config.paced,
        seed: config.faults.seed,
        port_names: checked.port_names.clone(),
        segment_names: config.segments.clone(),
        ports: port_segment.iter().map(|&s| PortCounters::new(s)).collect(),
        segments: config.segments.iter().map(|_| Default::default()).collect(),
        links: config
            .links
            .iter()
            .zip(&checked.links)
            .enumerate()
            .map(|(i, (l, &(a, b)))| LinkCounters {
                name: l.name.clone(),
                a,
                b,
                up: AtomicBool::new(!checked.cut.contains(&i)),
                cuts: AtomicU64::new(u64::from(checked.cut.contains(&i))),
            })
            .collect(),
        domains: Default::default(),
        faults: Default::default(),
        capture: capture_shared,
        socketcand: socketcand_addr.map(|addr| SocketcandShared {
            addr,
            clients: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bad_commands: AtomicU64::new(0),
        }),
        next_seq: AtomicU64::new(0),
        total_frames: AtomicU64::new(0),
        total_bytes: AtomicU64::new(0),
        total_busy_ns: AtomicU64::new(0),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let room = Arc::new(Notify::new());
    // Frames in flight are bounded by the FIFO places; two more per port
    // cover connect and disconnect notices.
    let (inbox, inbox_rx) = mpsc::channel(n_ports * (config.tx_fifo_depth + 2) + 16);
    let mut tasks = JoinSet::new();
    for &p in &checked.link_down {
        shared.ports[p].link_up.store(false, Relaxed);
    }
    let arbiter = Arbiter::new(
        ArbiterSetup {
            port_segment,
            links: checked.links,
            tx_fifo_depth: config.tx_fifo_depth,
            stall_timeout: config.stall_timeout,
            rules: checked.rules,
            link_down: checked.link_down,
            babble: checked.babble,
        },
        inbox_rx,
        commands_rx,
        room.clone(),
        shutdown_rx.clone(),
        shared.clone(),
        events.clone(),
        capture_sink,
    );
    tasks.spawn(arbiter.run());
    for (index, bound) in bound.into_iter().enumerate() {
        let task = PortTask {
            index,
            bound,
            inbox: inbox.clone(),
            tx_slots: Arc::new(Semaphore::new(config.tx_fifo_depth)),
            shared: shared.clone(),
            shutdown: shutdown_rx.clone(),
            rx_queue_depth: config.rx_queue_depth,
            room: room.clone(),
        };
        tasks.spawn(task.run());
    }
    if let (Some(listener), Some(sc)) = (socketcand_listener, &config.socketcand) {
        let slots: Vec<usize> = (config.ports.len()..n_ports).collect();
        let server = socketcand::Server {
            listener,
            tx_slots: slots
                .iter()
                .map(|_| Arc::new(Semaphore::new(config.tx_fifo_depth)))
                .collect(),
            slots,
            inbox: inbox.clone(),
            shared: shared.clone(),
            shutdown: shutdown_rx.clone(),
            rx_queue_depth: config.rx_queue_depth,
            fd_format: sc.fd_format,
            room: room.clone(),
        };
        tasks.spawn(server.run());
    }
    drop(inbox);
    let control = BridgeControl {
        commands: commands_tx,
        shared: shared.clone(),
    };
    if let Some(b) = control_bound {
        tasks.spawn(control::serve(
            b.listener,
            control.clone(),
            shutdown_rx.clone(),
        ));
    }
    Ok(Bridge {
        shared,
        ports: config.ports,
        events,
        shutdown: shutdown_tx,
        tasks,
        sockets,
        control,
        capture_thread,
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

    /// The configured ports, in index order. Socketcand ports follow them
    /// in the statistics and in [`BusEvent::port`].
    pub fn ports(&self) -> &[PortConfig] {
        &self.ports
    }

    /// The index of the port called `name` (socketcand ports included).
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.shared.port_names.iter().position(|p| p == name)
    }

    /// The index of the segment called `name`.
    pub fn segment_index(&self, name: &str) -> Option<usize> {
        self.shared.segment_names.iter().position(|s| s == name)
    }

    /// A handle for faults, topology and statistics.
    pub fn control(&self) -> BridgeControl {
        self.control.clone()
    }

    /// Where the socketcand server listens, if configured.
    pub fn socketcand_addr(&self) -> Option<SocketAddr> {
        self.shared.socketcand.as_ref().map(|s| s.addr)
    }

    /// The capture, if configured.
    pub fn capture_status(&self) -> Option<CaptureStatus> {
        self.control.capture_status()
    }

    /// Stops every task, closes every socket, removes the socket files,
    /// flushes the capture files, and returns the final statistics.
    pub async fn shutdown(mut self) -> BusStats {
        let _ = self.shutdown.send(true);
        while let Some(done) = self.tasks.join_next().await {
            if let Err(e) = done
                && e.is_panic()
            {
                error!(error = %e, "bridge task panicked");
            }
        }
        if let Some(thread) = self.capture_thread.take() {
            // The arbiter is gone, so the writer drains and flushes.
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || thread.join()).await {
                error!(error = ?e, "capture thread panicked");
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
