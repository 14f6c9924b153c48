//! The figures the statistics and the control API show, and their
//! snapshot ([`BusStats`]).
//!
//! Each figure has one owner. The bus task owns the bus's ([`Figures`]:
//! frames on the bus, drops the bus decides, gauges, topology, faults)
//! and publishes them here after every change. The port tasks own what
//! they see (connections, frames written to clients, link errors, and
//! drops outside the bus: a queue still full when its client goes away,
//! an FD frame read on a classic bus) as relaxed atomics. A snapshot puts
//! both together; a port's `drops` is the sum of the two owners' counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use proto::link::LinkError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::bus::{CAUSES, Cause, Figures, PortFigures};
use crate::capture::{CaptureShared, CaptureStatus};
use crate::clock::WallTime;
use crate::faults::FaultEntry;
use crate::ids::{IdVec, LinkId, PortId, SegmentId};
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

type Drops = [AtomicU64; CAUSES.len()];

/// The bus's drops plus the tasks' drops, by cause.
fn all_drops(bus: &crate::bus::Drops, tasks: &Drops) -> crate::bus::Drops {
    let mut d = *bus;
    for c in CAUSES {
        d.add(c, tasks[c as usize].load(Relaxed));
    }
    d
}

fn drops_map(d: &crate::bus::Drops, link_errors: u64) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = CAUSES
        .iter()
        .map(|&c| (c.as_str().to_owned(), d.get(c)))
        .collect();
    m.insert("tx_link_error".into(), link_errors);
    m
}

/// What the port tasks count about one port.
#[derive(Default)]
pub(crate) struct PortCounters {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub frames_rx: AtomicU64,
    pub bytes_rx: AtomicU64,
    pub rx_queued: AtomicU64,
    drops: Drops,
    link_errors: [AtomicU64; 7],
}

/// What the port tasks count about one segment's ports.
#[derive(Default)]
pub(crate) struct SegmentCounters {
    drops: Drops,
    link_errors: AtomicU64,
}

/// A link between two segments.
pub(crate) struct LinkInfo {
    pub name: String,
    pub a: SegmentId,
    pub b: SegmentId,
}

/// Everything the tasks share.
pub(crate) struct Shared {
    pub started: Instant,
    pub timing: BitTiming,
    pub paced: bool,
    pub seed: u64,
    pub port_names: IdVec<PortId, String>,
    pub segment_names: IdVec<SegmentId, String>,
    pub links: IdVec<LinkId, LinkInfo>,
    pub ports: IdVec<PortId, PortCounters>,
    pub segments: IdVec<SegmentId, SegmentCounters>,
    /// The bus's figures, as its task last published them.
    bus: Mutex<Figures>,
    pub capture: Option<std::sync::Arc<CaptureShared>>,
    pub socketcand: Option<SocketcandShared>,
    /// On the virtual clock: its time, ns, as the arbiter last polled.
    pub virtual_now: Option<AtomicU64>,
}

/// The socketcand server's address and counters.
pub(crate) struct SocketcandShared {
    pub addr: std::net::SocketAddr,
    pub clients: AtomicU64,
    pub refused: AtomicU64,
    pub bad_commands: AtomicU64,
}

/// What a [`Shared`] is made of, besides the counters.
pub(crate) struct SharedSetup {
    pub timing: BitTiming,
    pub paced: bool,
    pub seed: u64,
    pub port_names: Vec<String>,
    pub segment_names: Vec<String>,
    pub links: Vec<LinkInfo>,
    /// The bus's figures at the start.
    pub figures: Figures,
    pub capture: Option<std::sync::Arc<CaptureShared>>,
    pub socketcand: Option<SocketcandShared>,
    /// The bus runs on the virtual clock.
    pub virtual_clock: bool,
}

impl Shared {
    pub fn new(s: SharedSetup) -> Shared {
        Shared {
            started: Instant::now(),
            timing: s.timing,
            paced: s.paced,
            seed: s.seed,
            ports: s
                .port_names
                .iter()
                .map(|_| PortCounters::default())
                .collect(),
            segments: s
                .segment_names
                .iter()
                .map(|_| SegmentCounters::default())
                .collect(),
            port_names: IdVec::from_vec(s.port_names),
            segment_names: IdVec::from_vec(s.segment_names),
            links: IdVec::from_vec(s.links),
            bus: Mutex::new(s.figures),
            capture: s.capture,
            socketcand: s.socketcand,
            virtual_now: s.virtual_clock.then(|| AtomicU64::new(0)),
        }
    }

    /// The driver's time since the bridge started: the host's, or on the
    /// virtual clock the virtual time.
    pub fn wall_now(&self) -> WallTime {
        match &self.virtual_now {
            Some(v) => WallTime::from_ns(v.load(std::sync::atomic::Ordering::Relaxed)),
            None => self.host_now(),
        }
    }

    /// The host's time since the bridge started, whichever clock runs.
    pub fn host_now(&self) -> WallTime {
        WallTime::from_ns(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The instant wall time `t` falls on.
    pub fn instant_at(&self, t: WallTime) -> Instant {
        self.started + Duration::from_nanos(t.as_ns())
    }

    /// The bus's figures, to read or (the bus task only) to update.
    pub fn bus(&self) -> MutexGuard<'_, Figures> {
        // Figures are plain data: a panic elsewhere leaves them whole.
        self.bus.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn port_index(&self, name: &str) -> Option<PortId> {
        self.port_names.ids().find(|&p| self.port_names[p] == name)
    }

    pub fn segment_index(&self, name: &str) -> Option<SegmentId> {
        self.segment_names
            .ids()
            .find(|&s| self.segment_names[s] == name)
    }

    pub fn link_index(&self, name: &str) -> Option<LinkId> {
        self.links.ids().find(|&l| self.links[l].name == name)
    }

    pub fn segment_of(&self, port: PortId) -> SegmentId {
        self.bus().ports[port].segment
    }

    /// Counts `n` frames a task dropped at `port` for `cause`, on the port
    /// and on its segment.
    pub fn drop_frames(&self, port: PortId, cause: Cause, n: u64) {
        if n == 0 {
            return;
        }
        self.ports[port].drops[cause as usize].fetch_add(n, Relaxed);
        self.segments[self.segment_of(port)].drops[cause as usize].fetch_add(n, Relaxed);
    }

    pub fn link_error(&self, port: PortId, e: LinkError) {
        self.ports[port].link_errors[link_error_slot(e)].fetch_add(1, Relaxed);
        self.segments[self.segment_of(port)]
            .link_errors
            .fetch_add(1, Relaxed);
    }

    /// Bus time elapsed on each segment: wall time when paced; when
    /// unpaced, virtual frame time plus the wall time the bus sat idle;
    /// never less than the bus time its frames took.
    fn elapsed(&self, figures: &Figures, wall: WallTime) -> IdVec<SegmentId, u64> {
        figures
            .segments
            .iter()
            .map(|f| {
                let elapsed = match (self.paced, f.idle_since) {
                    (true, _) => wall.as_ns(),
                    (false, None) => f.clock.as_ns(),
                    (false, Some(since)) => f.clock.as_ns() + wall.saturating_since(since),
                };
                elapsed.max(f.counts.busy_ns)
            })
            .collect()
    }

    pub fn snapshot(&self) -> BusStats {
        let wall = self.wall_now();
        let figures = self.bus().clone();
        let elapsed = self.elapsed(&figures, wall);
        let ports: Vec<PortStats> = figures
            .ports
            .enumerate()
            .map(|(p, f)| self.port_stats(p, f, &elapsed))
            .collect();
        let segments: Vec<SegmentStats> = figures
            .segments
            .ids()
            .map(|s| self.segment_stats(s, &figures, elapsed[s]))
            .collect();
        let links = figures
            .links
            .enumerate()
            .map(|(l, f)| LinkStats {
                name: self.links[l].name.clone(),
                a: self.segment_names[self.links[l].a].clone(),
                b: self.segment_names[self.links[l].b].clone(),
                up: f.up,
                cuts: f.cuts,
            })
            .collect();
        let capture = self.capture.as_ref().map(|c| c.status());
        let totals = totals(&figures, &ports, &segments, capture.as_ref());
        BusStats {
            preset: self.timing,
            nominal_bps: self.timing.nominal_bps(),
            data_bps: self.timing.data_bps(),
            paced: self.paced,
            uptime_ns: wall.as_ns(),
            virtual_clock: self.virtual_now.is_some(),
            seed: self.seed,
            segments,
            links,
            ports,
            faults: figures.faults,
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

    fn port_stats(&self, p: PortId, f: &PortFigures, elapsed: &IdVec<SegmentId, u64>) -> PortStats {
        let c = &self.ports[p];
        let link_errors: BTreeMap<String, u64> = LINK_ERRORS
            .iter()
            .map(|&e| {
                let n = c.link_errors[link_error_slot(e)].load(Relaxed);
                (e.as_str().to_owned(), n)
            })
            .collect();
        let drops = all_drops(&f.counts.drops, &c.drops);
        let busy_ns = f.counts.busy_ns;
        PortStats {
            name: self.port_names[p].clone(),
            segment: self.segment_names[f.segment].clone(),
            connected: c.connected.load(Relaxed),
            connects: c.connects.load(Relaxed),
            frames_tx: f.counts.frames_tx,
            bytes_tx: f.counts.bytes_tx,
            frames_rx: c.frames_rx.load(Relaxed),
            bytes_rx: c.bytes_rx.load(Relaxed),
            overruns: drops.get(Cause::Overrun),
            dropped_port_down: drops.get(Cause::PortDown),
            fd_on_classic_bus: drops.get(Cause::TxFdOnClassic),
            tx_flushed: drops.get(Cause::TxFlushed),
            filtered: drops.get(Cause::Filtered),
            drops: drops_map(&drops, link_errors.values().sum()),
            link_errors,
            crc_errors: drops.get(Cause::Corrupt),
            link_up: f.link_up,
            babbling: f.babbling,
            bus_off: f.bus_off,
            tec: u64::from(f.tec),
            busy_ns,
            utilisation: ratio(busy_ns, elapsed[f.segment]),
            retransmissions: f.counts.retransmissions,
            babble_frames: f.counts.babble_frames,
            delayed: f.counts.delayed,
            tx_queued: f.tx_queued as u64,
            rx_queued: c.rx_queued.load(Relaxed),
            delay_queued: f.delay_queued as u64,
        }
    }

    fn segment_stats(&self, s: SegmentId, figures: &Figures, elapsed: u64) -> SegmentStats {
        let f = &figures.segments[s];
        let c = &self.segments[s];
        let drops = all_drops(&f.counts.drops, &c.drops);
        let domain = figures
            .domains
            .iter()
            .find(|d| d.contains(&s))
            .map(|d| d.iter().map(|&x| self.segment_names[x].clone()).collect())
            .unwrap_or_else(|| vec![self.segment_names[s].clone()]);
        SegmentStats {
            name: self.segment_names[s].clone(),
            frames: f.counts.frames,
            bytes: f.counts.bytes,
            busy_ns: f.counts.busy_ns,
            elapsed_ns: elapsed,
            utilisation: ratio(f.counts.busy_ns, elapsed),
            crc_errors: drops.get(Cause::Corrupt),
            error_frames: f.counts.error_frames,
            overruns: drops.get(Cause::Overrun),
            drops: drops_map(&drops, c.link_errors.load(Relaxed)),
            domain,
        }
    }
}

fn ratio(busy: u64, elapsed: u64) -> f64 {
    if elapsed == 0 {
        0.0
    } else {
        (busy as f64 / elapsed as f64).min(1.0)
    }
}

fn totals(
    figures: &Figures,
    ports: &[PortStats],
    segments: &[SegmentStats],
    capture: Option<&CaptureStatus>,
) -> Totals {
    let mut totals = Totals {
        frames: figures.totals.frames,
        bytes: figures.totals.bytes,
        busy_ns: figures.totals.busy_ns,
        capture_dropped: capture.map_or(0, |c| c.dropped),
        ..Totals::default()
    };
    for s in segments {
        totals.error_frames += s.error_frames;
    }
    for p in ports {
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
    totals
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
    /// Time since the bridge started, ns: wall time, or on the virtual
    /// clock virtual time.
    pub uptime_ns: u64,
    /// The bus ran on the virtual clock: every time here is virtual.
    #[serde(default)]
    pub virtual_clock: bool,
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
