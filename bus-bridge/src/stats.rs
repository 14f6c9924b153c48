//! Counters, shared by the tasks as relaxed atomics, and their snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use proto::link::LinkError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

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

/// One port's live counters.
#[derive(Default)]
pub(crate) struct PortCounters {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub frames_tx: AtomicU64,
    pub bytes_tx: AtomicU64,
    pub frames_rx: AtomicU64,
    pub bytes_rx: AtomicU64,
    pub overruns: AtomicU64,
    pub dropped_port_down: AtomicU64,
    pub fd_on_classic_bus: AtomicU64,
    pub tx_flushed: AtomicU64,
    pub filtered: AtomicU64,
    link_errors: [AtomicU64; 7],
}

impl PortCounters {
    pub fn link_error(&self, e: LinkError) {
        self.link_errors[link_error_slot(e)].fetch_add(1, Relaxed);
    }
}

/// One segment's live counters.
#[derive(Default)]
pub(crate) struct SegmentCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub busy_ns: AtomicU64,
}

/// One arbitration domain's clock, as the arbiter last published it.
pub(crate) struct DomainClock {
    /// Bus time (ns) at the end of the last accounted frame or idle gap.
    pub bus_ns: AtomicU64,
    /// Unpaced: wall time (ns since start) the bus went idle, or `u64::MAX`
    /// while it is busy.
    pub idle_since_ns: AtomicU64,
}

impl Default for DomainClock {
    fn default() -> Self {
        // A new bus is idle from the start.
        DomainClock {
            bus_ns: AtomicU64::new(0),
            idle_since_ns: AtomicU64::new(0),
        }
    }
}

/// Everything the tasks share.
pub(crate) struct Shared {
    pub started: Instant,
    pub timing: BitTiming,
    pub paced: bool,
    pub port_names: Vec<String>,
    pub port_segment: Vec<usize>,
    pub segment_names: Vec<String>,
    pub segment_domain: Vec<usize>,
    pub ports: Vec<PortCounters>,
    pub segments: Vec<SegmentCounters>,
    pub domains: Vec<DomainClock>,
    pub next_seq: AtomicU64,
}

impl Shared {
    /// Wall time since the bridge started, ns.
    pub fn wall_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Bus time elapsed in a domain: wall time when paced; when unpaced,
    /// virtual frame time plus the wall time the bus sat idle.
    fn domain_elapsed_ns(&self, domain: usize, wall: u64) -> u64 {
        if self.paced {
            return wall;
        }
        let clock = &self.domains[domain];
        let bus = clock.bus_ns.load(Relaxed);
        match clock.idle_since_ns.load(Relaxed) {
            u64::MAX => bus,
            since => bus + wall.saturating_sub(since),
        }
    }

    pub fn snapshot(&self) -> BusStats {
        let wall = self.wall_ns();
        let ports: Vec<PortStats> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, c)| PortStats {
                name: self.port_names[i].clone(),
                segment: self.segment_names[self.port_segment[i]].clone(),
                connected: c.connected.load(Relaxed),
                connects: c.connects.load(Relaxed),
                frames_tx: c.frames_tx.load(Relaxed),
                bytes_tx: c.bytes_tx.load(Relaxed),
                frames_rx: c.frames_rx.load(Relaxed),
                bytes_rx: c.bytes_rx.load(Relaxed),
                overruns: c.overruns.load(Relaxed),
                dropped_port_down: c.dropped_port_down.load(Relaxed),
                fd_on_classic_bus: c.fd_on_classic_bus.load(Relaxed),
                tx_flushed: c.tx_flushed.load(Relaxed),
                filtered: c.filtered.load(Relaxed),
                link_errors: LINK_ERRORS
                    .iter()
                    .map(|&e| {
                        (
                            e.as_str().to_owned(),
                            c.link_errors[link_error_slot(e)].load(Relaxed),
                        )
                    })
                    .collect(),
            })
            .collect();
        let segments: Vec<SegmentStats> = self
            .segments
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let busy_ns = c.busy_ns.load(Relaxed);
                let elapsed_ns = self
                    .domain_elapsed_ns(self.segment_domain[i], wall)
                    .max(busy_ns);
                SegmentStats {
                    name: self.segment_names[i].clone(),
                    frames: c.frames.load(Relaxed),
                    bytes: c.bytes.load(Relaxed),
                    busy_ns,
                    elapsed_ns,
                    utilisation: if elapsed_ns == 0 {
                        0.0
                    } else {
                        busy_ns as f64 / elapsed_ns as f64
                    },
                }
            })
            .collect();
        let mut totals = Totals::default();
        for s in &segments {
            totals.frames += s.frames;
            totals.bytes += s.bytes;
            totals.busy_ns += s.busy_ns;
        }
        for p in &ports {
            totals.overruns += p.overruns;
            totals.dropped_port_down += p.dropped_port_down;
            totals.fd_on_classic_bus += p.fd_on_classic_bus;
            totals.tx_flushed += p.tx_flushed;
            totals.link_errors += p.link_errors.values().sum::<u64>();
        }
        BusStats {
            preset: self.timing,
            nominal_bps: self.timing.nominal_bps(),
            data_bps: self.timing.data_bps(),
            paced: self.paced,
            uptime_ns: wall,
            segments,
            ports,
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
    /// Per segment, in configuration order.
    pub segments: Vec<SegmentStats>,
    /// Per port, in configuration order.
    pub ports: Vec<PortStats>,
    /// Sums over segments and ports.
    pub totals: Totals,
}

/// One segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentStats {
    /// Segment name.
    pub name: String,
    /// Frames that won the bus.
    pub frames: u64,
    /// Their data bytes.
    pub bytes: u64,
    /// Bus time those frames took, intermission included, ns.
    pub busy_ns: u64,
    /// Bus time elapsed (paced: wall time; unpaced: frame time plus idle
    /// wall time), ns.
    pub elapsed_ns: u64,
    /// `busy_ns / elapsed_ns`.
    pub utilisation: f64,
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
}

/// Sums.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Frames that won a bus, all segments.
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
}
