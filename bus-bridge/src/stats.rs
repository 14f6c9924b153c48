//! Counters, shared by the tasks as relaxed atomics, and their snapshot.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use proto::link::LinkError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::capture::{CaptureShared, CaptureStatus};
use crate::faults::FaultEntry;
use crate::timing::BitTiming;

/// Every link error kind, in `LinkError` code order.
pub(crate) const LINK_ERRORS: [LinkError; 7] = [
    LinkError::Oversize,
    LinkError::BadCobs,
    LinkError::Truncated,
    LinkError::BadCrc,
    LinkError::LengthMismatch,
    LinkError::BadFrame,
    LinkError::BadControl,
];

fn link_error_slot(e: LinkError) -> usize {
    match e {
        LinkError::Oversize => 0,
        LinkError::BadCobs => 1,
        LinkError::Truncated => 2,
        LinkError::BadCrc => 3,
        LinkError::LengthMismatch => 4,
        LinkError::BadFrame => 5,
        LinkError::BadControl => 6,
    }
}

/// Why a frame did not reach a port's client (receive side), or never
/// reached the bus (`tx_*`, send side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// A loss fault.
    Loss,
    /// A corruption fault: this receiver saw a CRC error.
    Corrupt,
    /// Another receiver's error frame destroyed the frame.
    ErrorFrame,
    /// The receive queue was full.
    Overrun,
    /// No client was connected.
    PortDown,
    /// The port's link (transceiver) was down.
    LinkDown,
    /// A cut link kept the frame on the other side.
    LinkCut,
    /// The client's acceptance filter did not pass it.
    Filtered,
    /// Still in the TX FIFO when the client went away.
    TxFlushed,
    /// Sent while the port's link was down in flush mode.
    TxLinkDown,
    /// Dropped when the sender went bus-off.
    TxBusOff,
    /// An FD frame sent on a classic bus.
    TxFdOnClassic,
}

pub(crate) const CAUSES: [Cause; 12] = [
    Cause::Loss,
    Cause::Corrupt,
    Cause::ErrorFrame,
    Cause::Overrun,
    Cause::PortDown,
    Cause::LinkDown,
    Cause::LinkCut,
    Cause::Filtered,
    Cause::TxFlushed,
    Cause::TxLinkDown,
    Cause::TxBusOff,
    Cause::TxFdOnClassic,
];

impl Cause {
    /// The key in the JSON `drops` maps.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Loss => "loss",
            Cause::Corrupt => "corrupt",
            Cause::ErrorFrame => "error_frame",
            Cause::Overrun => "overrun",
            Cause::PortDown => "port_down",
            Cause::LinkDown => "link_down",
            Cause::LinkCut => "link_cut",
            Cause::Filtered => "filtered",
            Cause::TxFlushed => "tx_flushed",
            Cause::TxLinkDown => "tx_link_down",
            Cause::TxBusOff => "tx_bus_off",
            Cause::TxFdOnClassic => "tx_fd_on_classic",
        }
    }
}

type Drops = [AtomicU64; CAUSES.len()];

fn drops_map(d: &Drops, link_errors: u64) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = CAUSES
        .iter()
        .map(|&c| (c.as_str().to_owned(), d[c as usize].load(Relaxed)))
        .collect();
    m.insert("tx_link_error".into(), link_errors);
    m
}

/// One port's live counters and gauges.
pub(crate) struct PortCounters {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    /// Index of the port's segment (socketcand ports move).
    pub segment: AtomicUsize,
    pub link_up: AtomicBool,
    pub babbling: AtomicBool,
    pub bus_off: AtomicBool,
    pub tec: AtomicU64,
    pub frames_tx: AtomicU64,
    pub bytes_tx: AtomicU64,
    pub busy_ns: AtomicU64,
    pub frames_rx: AtomicU64,
    pub bytes_rx: AtomicU64,
    pub retransmissions: AtomicU64,
    pub babble_frames: AtomicU64,
    pub delayed: AtomicU64,
    pub tx_queued: AtomicU64,
    pub rx_queued: AtomicU64,
    pub delay_queued: AtomicU64,
    drops: Drops,
    link_errors: [AtomicU64; 7],
}

impl PortCounters {
    pub fn new(segment: usize) -> PortCounters {
        PortCounters {
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            segment: AtomicUsize::new(segment),
            link_up: AtomicBool::new(true),
            babbling: AtomicBool::new(false),
            bus_off: AtomicBool::new(false),
            tec: AtomicU64::new(0),
            frames_tx: AtomicU64::new(0),
            bytes_tx: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            frames_rx: AtomicU64::new(0),
            bytes_rx: AtomicU64::new(0),
            retransmissions: AtomicU64::new(0),
            babble_frames: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            tx_queued: AtomicU64::new(0),
            rx_queued: AtomicU64::new(0),
            delay_queued: AtomicU64::new(0),
            drops: Default::default(),
            link_errors: Default::default(),
        }
    }

    fn drop_count(&self, c: Cause) -> u64 {
        self.drops[c as usize].load(Relaxed)
    }
}

/// One segment's live counters.
pub(crate) struct SegmentCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub busy_ns: AtomicU64,
    pub error_frames: AtomicU64,
    /// Bus time (ns) at the end of the last accounted frame or idle gap,
    /// as its domain's arbiter last published it.
    pub bus_ns: AtomicU64,
    /// Unpaced: wall time (ns since start) the bus went idle, or `u64::MAX`
    /// while it is busy.
    pub idle_since_ns: AtomicU64,
    drops: Drops,
    link_errors: AtomicU64,
}

impl Default for SegmentCounters {
    fn default() -> Self {
        // A new bus is idle from the start.
        SegmentCounters {
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            bus_ns: AtomicU64::new(0),
            idle_since_ns: AtomicU64::new(0),
            drops: Default::default(),
            link_errors: AtomicU64::new(0),
        }
    }
}

/// A link between two segments.
pub(crate) struct LinkCounters {
    pub name: String,
    pub a: usize,
    pub b: usize,
    pub up: AtomicBool,
    pub cuts: AtomicU64,
}

/// Everything the tasks share.
pub(crate) struct Shared {
    pub started: Instant,
    pub timing: BitTiming,
    pub paced: bool,
    pub seed: u64,
    pub port_names: Vec<String>,
    pub segment_names: Vec<String>,
    pub ports: Vec<PortCounters>,
    pub segments: Vec<SegmentCounters>,
    pub links: Vec<LinkCounters>,
    /// Current arbitration domains, as segment lists.
    pub domains: Mutex<Vec<Vec<usize>>>,
    pub faults: Mutex<Vec<FaultEntry>>,
    pub capture: Option<std::sync::Arc<CaptureShared>>,
    pub socketcand: Option<SocketcandShared>,
    pub next_seq: AtomicU64,
    pub total_frames: AtomicU64,
    pub total_bytes: AtomicU64,
    pub total_busy_ns: AtomicU64,
}

/// The socketcand server's address and counters.
pub(crate) struct SocketcandShared {
    pub addr: std::net::SocketAddr,
    pub clients: AtomicU64,
    pub refused: AtomicU64,
    pub bad_commands: AtomicU64,
}

impl Shared {
    /// Wall time since the bridge started, ns.
    pub fn wall_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn segment_of(&self, port: usize) -> usize {
        self.ports[port].segment.load(Relaxed)
    }

    /// Counts `n` frames dropped at `port` for `cause`, on the port and
    /// on its segment.
    pub fn drop_frames(&self, port: usize, cause: Cause, n: u64) {
        if n == 0 {
            return;
        }
        self.ports[port].drops[cause as usize].fetch_add(n, Relaxed);
        self.segments[self.segment_of(port)].drops[cause as usize].fetch_add(n, Relaxed);
    }

    pub fn link_error(&self, port: usize, e: LinkError) {
        self.ports[port].link_errors[link_error_slot(e)].fetch_add(1, Relaxed);
        self.segments[self.segment_of(port)]
            .link_errors
            .fetch_add(1, Relaxed);
    }

    /// Bus time elapsed on a segment: wall time when paced; when unpaced,
    /// virtual frame time plus the wall time the bus sat idle.
    fn segment_elapsed_ns(&self, segment: usize, wall: u64) -> u64 {
        if self.paced {
            return wall;
        }
        let c = &self.segments[segment];
        let bus = c.bus_ns.load(Relaxed);
        match c.idle_since_ns.load(Relaxed) {
            u64::MAX => bus,
            since => bus + wall.saturating_sub(since),
        }
    }

    pub fn snapshot(&self) -> BusStats {
        let wall = self.wall_ns();
        let domains = self.domains.lock().map(|d| d.clone()).unwrap_or_default();
        let elapsed: Vec<u64> = (0..self.segments.len())
            .map(|s| {
                self.segment_elapsed_ns(s, wall)
                    .max(self.segments[s].busy_ns.load(Relaxed))
            })
            .collect();
        let ratio = |busy: u64, elapsed: u64| {
            if elapsed == 0 {
                0.0
            } else {
                (busy as f64 / elapsed as f64).min(1.0)
            }
        };
        let ports: Vec<PortStats> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let segment = c.segment.load(Relaxed);
                let link_errors: BTreeMap<String, u64> = LINK_ERRORS
                    .iter()
                    .map(|&e| {
                        (
                            e.as_str().to_owned(),
                            c.link_errors[link_error_slot(e)].load(Relaxed),
                        )
                    })
                    .collect();
                let busy_ns = c.busy_ns.load(Relaxed);
                PortStats {
                    name: self.port_names[i].clone(),
                    segment: self.segment_names[segment].clone(),
                    connected: c.connected.load(Relaxed),
                    connects: c.connects.load(Relaxed),
                    frames_tx: c.frames_tx.load(Relaxed),
                    bytes_tx: c.bytes_tx.load(Relaxed),
                    frames_rx: c.frames_rx.load(Relaxed),
                    bytes_rx: c.bytes_rx.load(Relaxed),
                    overruns: c.drop_count(Cause::Overrun),
                    dropped_port_down: c.drop_count(Cause::PortDown),
                    fd_on_classic_bus: c.drop_count(Cause::TxFdOnClassic),
                    tx_flushed: c.drop_count(Cause::TxFlushed),
                    filtered: c.drop_count(Cause::Filtered),
                    drops: drops_map(&c.drops, link_errors.values().sum()),
                    link_errors,
                    crc_errors: c.drop_count(Cause::Corrupt),
                    link_up: c.link_up.load(Relaxed),
                    babbling: c.babbling.load(Relaxed),
                    bus_off: c.bus_off.load(Relaxed),
                    tec: c.tec.load(Relaxed),
                    busy_ns,
                    utilisation: ratio(busy_ns, elapsed[segment]),
                    retransmissions: c.retransmissions.load(Relaxed),
                    babble_frames: c.babble_frames.load(Relaxed),
                    delayed: c.delayed.load(Relaxed),
                    tx_queued: c.tx_queued.load(Relaxed),
                    rx_queued: c.rx_queued.load(Relaxed),
                    delay_queued: c.delay_queued.load(Relaxed),
                }
            })
            .collect();
        let segments: Vec<SegmentStats> = self
            .segments
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let busy_ns = c.busy_ns.load(Relaxed);
                let domain = domains
                    .iter()
                    .find(|d| d.contains(&i))
                    .map(|d| d.iter().map(|&s| self.segment_names[s].clone()).collect())
                    .unwrap_or_else(|| vec![self.segment_names[i].clone()]);
                SegmentStats {
                    name: self.segment_names[i].clone(),
                    frames: c.frames.load(Relaxed),
                    bytes: c.bytes.load(Relaxed),
                    busy_ns,
                    elapsed_ns: elapsed[i],
                    utilisation: ratio(busy_ns, elapsed[i]),
                    crc_errors: c.drops[Cause::Corrupt as usize].load(Relaxed),
                    error_frames: c.error_frames.load(Relaxed),
                    overruns: c.drops[Cause::Overrun as usize].load(Relaxed),
                    drops: drops_map(&c.drops, c.link_errors.load(Relaxed)),
                    domain,
                }
            })
            .collect();
        let links = self
            .links
            .iter()
            .map(|l| LinkStats {
                name: l.name.clone(),
                a: self.segment_names[l.a].clone(),
                b: self.segment_names[l.b].clone(),
                up: l.up.load(Relaxed),
                cuts: l.cuts.load(Relaxed),
            })
            .collect();
        let capture = self.capture.as_ref().map(|c| c.status());
        let mut totals = Totals {
            frames: self.total_frames.load(Relaxed),
            bytes: self.total_bytes.load(Relaxed),
            busy_ns: self.total_busy_ns.load(Relaxed),
            capture_dropped: capture.as_ref().map_or(0, |c| c.dropped),
            ..Totals::default()
        };
        for s in &segments {
            totals.error_frames += s.error_frames;
        }
        for p in &ports {
            totals.overruns += p.overruns;
            totals.dropped_port_down += p.dropped_port_down;
            totals.fd_on_classic_bus += p.fd_on_classic_bus;
            totals.tx_flushed += p.tx_flushed;
            totals.link_errors += p.link_errors.values().sum::<u64>();
            totals.crc_errors += p.crc_errors;
            for (k, v) in &p.drops {
                *totals.drops.entry(k.clone()).or_default() += v;
            }
        }
        BusStats {
            preset: self.timing,
            nominal_bps: self.timing.nominal_bps(),
            data_bps: self.timing.data_bps(),
            paced: self.paced,
            uptime_ns: wall,
            seed: self.seed,
            segments,
            links,
            ports,
            faults: self.faults.lock().map(|f| f.clone()).unwrap_or_default(),
            capture,
            socketcand: self.socketcand.as_ref().map(|s| SocketcandStatus {
                addr: s.addr.to_string(),
                clients: s.clients.load(Relaxed),
                refused: s.refused.load(Relaxed),
                bad_commands: s.bad_commands.load(Relaxed),
            }),
            totals,
        }
    }
}

/// A snapshot of the whole bridge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusStats {
    /// Bit-rate preset, e.g. `"fd-1m-5m"`.
    pub preset: BitTiming,
    /// Nominal bit rate, bit/s.
    pub nominal_bps: u32,
    /// Data-phase bit rate, bit/s.
    pub data_bps: u32,
    /// Whether frames take their real time.
    pub paced: bool,
    /// Wall time since the bridge started, ns.
    pub uptime_ns: u64,
    /// Seed of the fault decisions.
    #[serde(default)]
    pub seed: u64,
    /// Per segment, in configuration order.
    pub segments: Vec<SegmentStats>,
    /// Per link, in configuration order.
    #[serde(default)]
    pub links: Vec<LinkStats>,
    /// Per port, in configuration order, then the socketcand ports.
    pub ports: Vec<PortStats>,
    /// Fault rules in force.
    #[serde(default)]
    pub faults: Vec<FaultEntry>,
    /// The capture, if one is configured.
    #[serde(default)]
    pub capture: Option<CaptureStatus>,
    /// The socketcand server, if one is configured.
    #[serde(default)]
    pub socketcand: Option<SocketcandStatus>,
    /// Sums over segments and ports.
    pub totals: Totals,
}

/// One segment. A frame crossing joined segments counts on each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentStats {
    /// Segment name.
    pub name: String,
    /// Frames that won the bus.
    pub frames: u64,
    /// Their data bytes.
    pub bytes: u64,
    /// Bus time those frames (and error frames) took, intermission
    /// included, ns.
    pub busy_ns: u64,
    /// Bus time elapsed (paced: wall time; unpaced: frame time plus idle
    /// wall time), ns.
    pub elapsed_ns: u64,
    /// `busy_ns / elapsed_ns`.
    pub utilisation: f64,
    /// CRC errors its ports saw.
    #[serde(default)]
    pub crc_errors: u64,
    /// Error frames on the segment.
    #[serde(default)]
    pub error_frames: u64,
    /// Its ports' overruns.
    #[serde(default)]
    pub overruns: u64,
    /// Frames its ports dropped, by cause (see [`PortStats::drops`]).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// The segments in its arbitration domain now, itself included.
    #[serde(default)]
    pub domain: Vec<String>,
}

/// One link between segments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    /// Link name.
    pub name: String,
    /// One end.
    pub a: String,
    /// The other end.
    pub b: String,
    /// Whether it joins its segments now.
    pub up: bool,
    /// Times it was cut.
    pub cuts: u64,
}

/// One port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortStats {
    /// Port name.
    pub name: String,
    /// Its segment's name.
    pub segment: String,
    /// Whether a client is connected now.
    pub connected: bool,
    /// Connections accepted so far.
    pub connects: u64,
    /// Frames this port sent that won the bus.
    pub frames_tx: u64,
    /// Their data bytes.
    pub bytes_tx: u64,
    /// Frames written to this port's client.
    pub frames_rx: u64,
    /// Their data bytes.
    pub bytes_rx: u64,
    /// Frames dropped because this port's receive queue was full.
    pub overruns: u64,
    /// Frames this port missed because no client was connected (including
    /// frames still queued when its client went away).
    pub dropped_port_down: u64,
    /// FD frames this port sent on a classic bus; they never reach the bus.
    pub fd_on_classic_bus: u64,
    /// Frames this port sent that were still in its TX FIFO when its client
    /// went away; they never reach the bus.
    pub tx_flushed: u64,
    /// Frames this port's acceptance filter kept from its client (not a
    /// loss: the node asked not to get them).
    pub filtered: u64,
    /// Dropped link input by kind (`LinkError::as_str`), every kind listed.
    pub link_errors: BTreeMap<String, u64>,
    /// Every frame this port did not get, or did not get onto the bus, by
    /// cause: `loss`, `corrupt`, `error_frame`, `overrun`, `port_down`,
    /// `link_down`, `link_cut`, `filtered` (receive side); `tx_flushed`,
    /// `tx_link_down`, `tx_bus_off`, `tx_fd_on_classic`, `tx_link_error`
    /// (send side). Every cause is listed.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Frames this port's controller saw fail their CRC.
    #[serde(default)]
    pub crc_errors: u64,
    /// Whether its transceiver is connected (no link-down fault).
    #[serde(default)]
    pub link_up: bool,
    /// Whether the bridge babbles as this port now.
    #[serde(default)]
    pub babbling: bool,
    /// Whether its controller is bus-off now.
    #[serde(default)]
    pub bus_off: bool,
    /// Its transmit error counter.
    #[serde(default)]
    pub tec: u64,
    /// Bus time its frames took, ns.
    #[serde(default)]
    pub busy_ns: u64,
    /// `busy_ns` over its segment's elapsed bus time.
    #[serde(default)]
    pub utilisation: f64,
    /// Its frames destroyed by an error frame or an aborted transmission,
    /// and sent again.
    #[serde(default)]
    pub retransmissions: u64,
    /// Frames the bridge babbled as this port (also in `frames_tx`).
    #[serde(default)]
    pub babble_frames: u64,
    /// Frames that reached this port late through a delay fault.
    #[serde(default)]
    pub delayed: u64,
    /// Frames in its TX FIFO now.
    #[serde(default)]
    pub tx_queued: u64,
    /// Frames in its receive queue now.
    #[serde(default)]
    pub rx_queued: u64,
    /// Frames held by a delay fault for it now.
    #[serde(default)]
    pub delay_queued: u64,
}

/// The socketcand server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocketcandStatus {
    /// Where it listens.
    pub addr: String,
    /// Clients that opened a channel so far.
    pub clients: u64,
    /// Clients turned away (no free port, unknown channel).
    pub refused: u64,
    /// Commands it could not parse.
    pub bad_commands: u64,
}

/// Sums.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Frames that won a bus, each counted once however many joined
    /// segments it crossed (the frame count of a capture).
    pub frames: u64,
    /// Their data bytes.
    pub bytes: u64,
    /// Their bus time, ns.
    pub busy_ns: u64,
    /// All ports' overruns.
    pub overruns: u64,
    /// All ports' `dropped_port_down`.
    pub dropped_port_down: u64,
    /// All ports' `fd_on_classic_bus`.
    pub fd_on_classic_bus: u64,
    /// All ports' `tx_flushed`.
    pub tx_flushed: u64,
    /// All ports' link errors, every kind.
    pub link_errors: u64,
    /// All ports' CRC errors.
    #[serde(default)]
    pub crc_errors: u64,
    /// All segments' error frames.
    #[serde(default)]
    pub error_frames: u64,
    /// All ports' drops, by cause.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Frames the capture could not keep up with.
    #[serde(default)]
    pub capture_dropped: u64,
}
