//! What the bus counts: plain numbers, owned by the [`Bus`](super::Bus)
//! and copied out by its driver ([`Figures`]).
//!
//! Every frame a port does not get, or does not get onto the bus, is
//! counted once, by [`Cause`], on the port and on the segment the port is
//! on at that moment. Drops that happen outside the bus (a receive queue
//! still full when its client goes away, input the reader refuses) are
//! counted by the tasks that see them, with the same causes.

use crate::clock::{BusTime, WallTime};
use crate::faults::FaultEntry;
use crate::ids::{Id, IdVec, LinkId, PortId, SegmentId};

/// Why a frame did not reach a port's client (receive side), or never
/// reached the bus (`Tx*`, send side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
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
    /// Bytes from the client that were no good link frame (counted by the
    /// port's reader, never by the bus).
    TxLinkError,
}

/// Every cause, in the order of the counters.
pub(crate) const CAUSES: [Cause; 13] = [
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
    Cause::TxLinkError,
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
            Cause::TxLinkError => "tx_link_error",
        }
    }

    /// Every cause.
    pub const ALL: [Cause; 13] = CAUSES;

    /// The cause whose JSON key is `key`.
    pub fn from_key(key: &str) -> Option<Cause> {
        CAUSES.into_iter().find(|c| c.as_str() == key)
    }
}

/// Drops by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Drops([u64; CAUSES.len()]);

impl Drops {
    pub fn get(&self, cause: Cause) -> u64 {
        self.0[cause as usize]
    }

    pub fn add(&mut self, cause: Cause, n: u64) {
        self.0[cause as usize] += n;
    }
}

/// One port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PortCounts {
    /// Frames it sent that won the bus (babble included).
    pub frames_tx: u64,
    pub bytes_tx: u64,
    /// Bus time of those frames, ns.
    pub busy_ns: u64,
    /// Its frames destroyed by an error frame or cut short, sent again.
    pub retransmissions: u64,
    pub babble_frames: u64,
    /// Frames a delay fault handed over late.
    pub delayed: u64,
    pub drops: Drops,
}

/// One segment's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentCounts {
    pub frames: u64,
    pub bytes: u64,
    /// Bus time of frames and error frames, ns.
    pub busy_ns: u64,
    pub error_frames: u64,
    pub drops: Drops,
}

/// Sums over the whole bridge; a frame counts once however many joined
/// segments it crossed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub frames: u64,
    pub bytes: u64,
    pub busy_ns: u64,
}

/// Ids whose figures changed since they were last copied out.
#[derive(Clone, Debug)]
pub(crate) struct Changed<I> {
    flag: Vec<bool>,
    list: Vec<I>,
}

impl<I: Id> Changed<I> {
    pub fn new(n: usize) -> Self {
        Changed {
            flag: vec![false; n],
            list: Vec::new(),
        }
    }

    pub fn mark(&mut self, id: I) {
        if let Some(f) = self.flag.get_mut(id.index())
            && !*f
        {
            *f = true;
            self.list.push(id);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The ids marked since the last call, each once.
    pub fn take(&mut self) -> Vec<I> {
        for id in &self.list {
            self.flag[id.index()] = false;
        }
        std::mem::take(&mut self.list)
    }
}

/// The bus's counters.
pub(crate) struct Metrics {
    ports: IdVec<PortId, PortCounts>,
    segments: IdVec<SegmentId, SegmentCounts>,
    totals: Totals,
    changed_ports: Changed<PortId>,
    changed_segments: Changed<SegmentId>,
}

impl Metrics {
    pub fn new(ports: usize, segments: usize) -> Metrics {
        Metrics {
            ports: (0..ports).map(|_| PortCounts::default()).collect(),
            segments: (0..segments).map(|_| SegmentCounts::default()).collect(),
            totals: Totals::default(),
            changed_ports: Changed::new(ports),
            changed_segments: Changed::new(segments),
        }
    }

    pub fn port(&self, p: PortId) -> &PortCounts {
        &self.ports[p]
    }

    pub fn segment(&self, s: SegmentId) -> &SegmentCounts {
        &self.segments[s]
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    pub fn port_mut(&mut self, p: PortId) -> &mut PortCounts {
        self.changed_ports.mark(p);
        &mut self.ports[p]
    }

    pub fn segment_mut(&mut self, s: SegmentId) -> &mut SegmentCounts {
        self.changed_segments.mark(s);
        &mut self.segments[s]
    }

    pub fn totals_mut(&mut self) -> &mut Totals {
        &mut self.totals
    }

    /// Counts `n` frames dropped at `port` (on `segment`) for `cause`.
    pub fn drop_frames(&mut self, port: PortId, segment: SegmentId, cause: Cause, n: u64) {
        if n == 0 {
            return;
        }
        self.port_mut(port).drops.add(cause, n);
        self.segment_mut(segment).drops.add(cause, n);
    }

    /// A segment's figures changed outside its counters (its bus clock).
    pub fn touch_segment(&mut self, s: SegmentId) {
        self.changed_segments.mark(s);
    }

    pub fn take_changed(&mut self) -> (Vec<PortId>, Vec<SegmentId>) {
        (self.changed_ports.take(), self.changed_segments.take())
    }

    pub fn nothing_changed(&self) -> bool {
        self.changed_ports.is_empty() && self.changed_segments.is_empty()
    }
}

/// A port's figures as the statistics show them: counters and gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortFigures {
    pub counts: PortCounts,
    pub segment: SegmentId,
    pub link_up: bool,
    pub babbling: bool,
    pub bus_off: bool,
    pub tec: u32,
    pub tx_queued: usize,
    pub delay_queued: usize,
}

/// A segment's figures: counters and its domain's bus clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentFigures {
    pub counts: SegmentCounts,
    /// Bus time at the end of the last frame or settled idle gap.
    pub clock: BusTime,
    /// Unpaced: since when the bus has been idle, while it is.
    pub idle_since: Option<WallTime>,
}

/// A link's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkFigures {
    pub up: bool,
    pub cuts: u64,
}

/// Everything the bus shows the statistics and the control API.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Figures {
    pub ports: IdVec<PortId, PortFigures>,
    pub segments: IdVec<SegmentId, SegmentFigures>,
    pub links: IdVec<LinkId, LinkFigures>,
    /// Arbitration domains, as segments in index order.
    pub domains: Vec<Vec<SegmentId>>,
    pub faults: Vec<FaultEntry>,
    pub totals: Totals,
}
