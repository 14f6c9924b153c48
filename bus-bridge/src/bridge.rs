//! Starting a bridge, and the handle on a running one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::Frame;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tracing::error;

use crate::arbiter::{Arbiter, ToArbiter, Virtual, Wiring};
use crate::bus::{self, Bus};
use crate::capture::{self, CaptureShared, CaptureStatus, Sink};
use crate::config::{BridgeConfig, BusClock, Checked, PortConfig};
use crate::control::{self, BridgeControl};
use crate::error::BridgeError;
use crate::event::{BusEvent, EVENT_BACKLOG};
use crate::ids::{IdVec, PortId, SegmentId};
use crate::port::{self, PortTask};
use crate::socketcand;
use crate::stats::{BusStats, LinkInfo, Shared, SharedSetup, SocketcandShared};
use crate::timing::BitTiming;

/// A running bridge. Dropping it stops every task at once and removes the
/// socket files; [`Bridge::shutdown`] does the same gracefully and flushes
/// the capture files.
pub struct Bridge {
    shared: Arc<Shared>,
    ports: Vec<PortConfig>,
    events: broadcast::Sender<BusEvent>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    sockets: Vec<(PathBuf, u64)>,
    control: BridgeControl,
    capture_thread: Option<JoinHandle<()>>,
}

/// The unix sockets a bridge listens on.
struct Bound {
    ports: Vec<port::Bound>,
    /// Each port's clock socket, on the virtual clock.
    clocks: Vec<Option<port::Bound>>,
    control: Option<port::Bound>,
}

impl Bound {
    fn files(&self) -> Vec<(PathBuf, u64)> {
        self.ports
            .iter()
            .chain(self.clocks.iter().flatten())
            .chain(&self.control)
            .map(|b| (b.path.clone(), b.inode))
            .collect()
    }

    fn remove(&self) {
        for (path, inode) in self.files() {
            port::remove_socket(&path, inode);
        }
    }
}

/// The capture's three parts.
type Capture = (Sink, Arc<CaptureShared>, JoinHandle<()>);

/// Checks `config`, binds every port's socket (removing stale socket files
/// first), the control socket and the socketcand port, opens the capture
/// files, starts all tasks, and returns once everything is listening.
/// Must run inside a tokio runtime with the time and net drivers enabled.
pub async fn start(config: BridgeConfig) -> Result<Bridge, BridgeError> {
    let checked = config.check()?;
    let bound = bind(&config)?;
    let socketcand = match listen_socketcand(&config).await {
        Ok(s) => s,
        Err(e) => {
            bound.remove();
            return Err(e);
        }
    };
    let capture = match open_capture(&config) {
        Ok(c) => c,
        Err(e) => {
            bound.remove();
            return Err(e);
        }
    };
    Ok(launch(config, checked, bound, socketcand, capture))
}

/// Binds the ports' sockets and the control socket; on failure, removes
/// those already bound.
fn bind(config: &BridgeConfig) -> Result<Bound, BridgeError> {
    let mut bound = Bound {
        ports: Vec::with_capacity(config.ports.len()),
        clocks: Vec::with_capacity(config.ports.len()),
        control: None,
    };
    for port in &config.ports {
        match port::bind(&port.name, &port.socket) {
            Ok(b) => bound.ports.push(b),
            Err(e) => {
                bound.remove();
                return Err(e);
            }
        }
        let clock = match &port.clock {
            Some(c) => port::bind(&format!("{} clock", port.name), &c.socket).map(Some),
            None => Ok(None),
        };
        match clock {
            Ok(c) => bound.clocks.push(c),
            Err(e) => {
                bound.remove();
                return Err(e);
            }
        }
    }
    if let Some(path) = &config.control_socket {
        match port::bind("control", path) {
            Ok(b) => bound.control = Some(b),
            Err(e) => {
                bound.remove();
                return Err(e);
            }
        }
    }
    Ok(bound)
}

async fn listen_socketcand(
    config: &BridgeConfig,
) -> Result<Option<(TcpListener, SocketAddr)>, BridgeError> {
    let Some(sc) = &config.socketcand else {
        return Ok(None);
    };
    let fail = |source| BridgeError::Socketcand {
        port: sc.port,
        source,
    };
    let listener = TcpListener::bind(("127.0.0.1", sc.port))
        .await
        .map_err(fail)?;
    let addr = listener.local_addr().map_err(fail)?;
    Ok(Some((listener, addr)))
}

fn open_capture(config: &BridgeConfig) -> Result<Option<Capture>, BridgeError> {
    if !config.capture.enabled() {
        return Ok(None);
    }
    let epoch_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    capture::open(&config.capture, epoch_ns, config.segments.clone()).map(Some)
}

fn is_virtual(config: &BridgeConfig) -> bool {
    matches!(config.clock, BusClock::Virtual(_))
}

/// The shortest time from a frame's start to its end on `timing`'s bus: a
/// bound under every frame (empty ones, three quarters of the shortest
/// stuffed length, as stuffing adds at most a fifth). No node can hear a
/// frame sooner than this after it was sent: the virtual clock's lookahead.
fn lookahead_ns(timing: BitTiming) -> u64 {
    use proto::frame::{FLAG_BRS, FLAG_FD};
    let mut shortest = u64::MAX;
    for flags in [0, FLAG_FD, FLAG_FD | FLAG_BRS] {
        for id in [0, 0x2AA, 0x555, 0x7FF] {
            if let Some(ns) = Frame::new(id, flags, &[])
                .ok()
                .and_then(|f| timing.frame_time_ns(&f))
            {
                shortest = shortest.min(ns);
            }
        }
    }
    shortest.saturating_mul(3) / 4
}

/// Port `i`'s TX FIFO depth (socketcand clients, after the configured
/// ports, have the bridge's).
fn fifo_depth(config: &BridgeConfig, i: usize) -> usize {
    config
        .ports
        .get(i)
        .and_then(|p| p.tx_fifo_depth)
        .unwrap_or(config.tx_fifo_depth)
}

/// The arbiter's virtual clock, if `config` runs on one.
fn virtual_clock(config: &BridgeConfig) -> Option<Virtual> {
    let BusClock::Virtual(v) = &config.clock else {
        return None;
    };
    let from_start: Vec<PortId> = config
        .ports
        .iter()
        .enumerate()
        .filter(|(_, p)| p.clock.as_ref().is_some_and(|c| c.from_start))
        .map(|(i, _)| PortId(i))
        .collect();
    Some(Virtual::new(
        lookahead_ns(config.timing),
        &from_start,
        v.pace_with_wall,
        (0..config.ports.len() + config.socketcand.as_ref().map_or(0, |s| s.max_clients))
            .map(|i| u32::try_from(fifo_depth(config, i)).unwrap_or(u32::MAX))
            .collect(),
        v.held_at_start.map(crate::clock::WallTime::from_ns),
    ))
}

/// The bus as `config` starts it.
fn new_bus(config: &BridgeConfig, checked: &Checked) -> Bus {
    let mut port_segment = checked.port_segment.clone();
    // socketcand ports sit on the first segment until a client opens one.
    port_segment.resize(checked.port_names.len(), SegmentId(0));
    Bus::new(bus::Setup {
        timing: config.timing,
        // On the virtual clock frames take their time, in virtual time.
        paced: config.paced || is_virtual(config),
        sof_window: is_virtual(config),
        seed: config.faults.seed,
        segments: config.segments.len(),
        port_segment,
        links: checked.links.clone(),
        cut: checked.cut.clone(),
        tx_fifo_depth: config.tx_fifo_depth,
        stall_timeout: config.stall_timeout,
        rules: checked.rules.clone(),
        link_down: checked.link_down.clone(),
        babble: checked.babble.clone(),
    })
}

fn new_shared(
    config: &BridgeConfig,
    checked: Checked,
    bus: &Bus,
    capture: Option<Arc<CaptureShared>>,
    socketcand: Option<SocketAddr>,
) -> Shared {
    Shared::new(SharedSetup {
        timing: config.timing,
        paced: config.paced,
        seed: config.faults.seed,
        port_names: checked.port_names,
        segment_names: config.segments.clone(),
        links: config
            .links
            .iter()
            .zip(&checked.links)
            .map(|(l, &(a, b))| LinkInfo {
                name: l.name.clone(),
                a,
                b,
            })
            .collect(),
        figures: bus.figures(),
        capture,
        virtual_clock: is_virtual(config),
        socketcand: socketcand.map(|addr| SocketcandShared {
            addr,
            clients: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bad_commands: AtomicU64::new(0),
        }),
    })
}

/// What every port-side task gets.
struct Common {
    inbox: mpsc::Sender<ToArbiter>,
    tx_slots: IdVec<PortId, Arc<Semaphore>>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    room: Arc<Notify>,
    rx_queue_depth: usize,
}

/// Starts every task.
fn launch(
    config: BridgeConfig,
    checked: Checked,
    bound: Bound,
    socketcand: Option<(TcpListener, SocketAddr)>,
    capture: Option<Capture>,
) -> Bridge {
    let bus = new_bus(&config, &checked);
    let n_ports = checked.port_names.len();
    let (sink, capture_shared, capture_thread) = match capture {
        Some((s, c, t)) => (Some(s), Some(c), Some(t)),
        None => (None, None, None),
    };
    let addr = socketcand.as_ref().map(|(_, a)| *a);
    let shared = Arc::new(new_shared(&config, checked, &bus, capture_shared, addr));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let (commands_tx, commands_rx) = mpsc::channel(64);
    // Frames in flight are bounded by the FIFO places; two more per port
    // cover connect and disconnect notices.
    let places: usize = (0..n_ports).map(|i| fifo_depth(&config, i) + 2).sum();
    let (inbox, inbox_rx) = mpsc::channel(places + 16);
    let common = new_common(&config, n_ports, inbox, shared.clone(), shutdown_rx.clone());
    let mut tasks = JoinSet::new();
    let wiring = Wiring {
        inbox: inbox_rx,
        commands: commands_rx,
        room: common.room.clone(),
        shutdown: shutdown_rx.clone(),
        shared: shared.clone(),
        events: events.clone(),
        capture: sink,
        tx_slots: common.tx_slots.clone(),
    };
    tasks.spawn(Arbiter::new(bus, wiring, virtual_clock(&config)).run());
    let sockets = bound.files();
    let modes: Vec<port::Mode> = config
        .ports
        .iter()
        .map(|p| port::Mode {
            timed: p.timed && is_virtual(&config),
            deliver_every: (config.paced && !is_virtual(&config) && p.deliver_every_ms > 0)
                .then(|| Duration::from_millis(p.deliver_every_ms)),
        })
        .collect();
    spawn_ports(&mut tasks, &common, bound.ports, bound.clocks, &modes);
    if let (Some((listener, _)), Some(sc)) = (socketcand, &config.socketcand) {
        spawn_socketcand(
            &mut tasks,
            &common,
            listener,
            config.ports.len(),
            sc.fd_format,
        );
    }
    let control = BridgeControl {
        commands: commands_tx,
        shared: shared.clone(),
    };
    if let Some(b) = bound.control {
        tasks.spawn(control::serve(b.listener, control.clone(), shutdown_rx));
    }
    Bridge {
        shared,
        ports: config.ports,
        events,
        shutdown: shutdown_tx,
        tasks,
        sockets,
        control,
        capture_thread,
    }
}

/// What every port task shares; `n_ports`: socketcand's included.
fn new_common(
    config: &BridgeConfig,
    n_ports: usize,
    inbox: mpsc::Sender<ToArbiter>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> Common {
    // On the virtual clock a sender is never held back by the host: its
    // frames wait in the bus's FIFO, in virtual time.
    let tx_places = |i| {
        if is_virtual(config) {
            Semaphore::MAX_PERMITS / 2
        } else {
            fifo_depth(config, i)
        }
    };
    Common {
        inbox,
        tx_slots: (0..n_ports)
            .map(|i| Arc::new(Semaphore::new(tx_places(i))))
            .collect(),
        shared,
        shutdown,
        room: Arc::new(Notify::new()),
        rx_queue_depth: config.rx_queue_depth,
    }
}

/// A task per configured port, in its `modes`.
fn spawn_ports(
    tasks: &mut JoinSet<()>,
    c: &Common,
    ports: Vec<port::Bound>,
    clocks: Vec<Option<port::Bound>>,
    modes: &[port::Mode],
) {
    for (index, (bound, clock)) in ports.into_iter().zip(clocks).enumerate() {
        let task = PortTask {
            index: PortId(index),
            bound,
            clock,
            mode: modes[index],
            inbox: c.inbox.clone(),
            tx_slots: c.tx_slots[PortId(index)].clone(),
            shared: c.shared.clone(),
            shutdown: c.shutdown.clone(),
            rx_queue_depth: c.rx_queue_depth,
            room: c.room.clone(),
        };
        tasks.spawn(task.run());
    }
}

/// The socketcand server; its clients are the ports after the first
/// `configured`.
fn spawn_socketcand(
    tasks: &mut JoinSet<()>,
    c: &Common,
    listener: TcpListener,
    configured: usize,
    fd_format: crate::config::FdFormat,
) {
    let slots: Vec<PortId> = c.tx_slots.ids().skip(configured).collect();
    let server = socketcand::Server {
        listener,
        tx_slots: slots.iter().map(|&p| c.tx_slots[p].clone()).collect(),
        slots,
        inbox: c.inbox.clone(),
        shared: c.shared.clone(),
        shutdown: c.shutdown.clone(),
        rx_queue_depth: c.rx_queue_depth,
        fd_format,
        room: c.room.clone(),
    };
    tasks.spawn(server.run());
}

/// Reads a bridge's time, cheaply, from any task: on the virtual clock the
/// fleet's virtual time (the frontier: every member has got that far),
/// else the host's time since the bridge started; nanoseconds.
#[derive(Clone)]
pub struct TimeReader(Arc<Shared>);

impl TimeReader {
    /// Now, in nanoseconds since the bridge started.
    pub fn now_ns(&self) -> u64 {
        self.0.wall_now().as_ns()
    }
}

impl Bridge {
    /// Its time, for other tasks to read (see [`TimeReader`]).
    pub fn time(&self) -> TimeReader {
        TimeReader(self.shared.clone())
    }

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
        self.shared.port_index(name).map(|p| p.0)
    }

    /// The index of the segment called `name`.
    pub fn segment_index(&self, name: &str) -> Option<usize> {
        self.shared.segment_index(name).map(|s| s.0)
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

#[cfg(test)]
mod lookahead_tests {
    use super::*;

    #[test]
    fn the_lookahead_lies_under_every_frame() {
        for t in BitTiming::ALL {
            let l = lookahead_ns(t);
            for flags in [
                0,
                proto::frame::FLAG_FD,
                proto::frame::FLAG_FD | proto::frame::FLAG_BRS,
            ] {
                for len in [0usize, 8, 64] {
                    let f = Frame::new(0x7FF, flags, &vec![0xFF; len]);
                    if let Some(ns) = f.ok().and_then(|f| t.frame_time_ns(&f)) {
                        assert!(
                            l < ns,
                            "{t}: {l} ns is not under a {len}-byte frame's {ns} ns"
                        );
                    }
                }
            }
        }
        // The figures the README gives.
        assert_eq!(lookahead_ns(BitTiming::Fd1m5m), 26_700);
        assert_eq!(lookahead_ns(BitTiming::Classic1m), 36_000);
    }
}
