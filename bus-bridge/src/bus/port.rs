//! One port as the bus sees it: its client, its controller's TX FIFO and
//! error state, its transceiver, a babble, and what it holds for its
//! client (a blocked delivery, a delay line).

use std::collections::VecDeque;

use proto::Frame;
use proto::filter::AcceptanceFilter;

use super::controller::Controller;
use super::decisions::DelayLine;
use super::metrics::{Changed, PortCounts, PortFigures};
use crate::clock::{BusTime, WallTime};
use crate::ids::{ConnId, IdVec, PortId, SegmentId};

/// A frame in a TX FIFO.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub frame: Frame,
    /// Bus time (paced) from which it may contend; unpaced, zero.
    pub ready: BusTime,
    /// The client that sent it.
    pub conn: ConnId,
}

/// The client of a port.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub id: ConnId,
    /// Unpaced: this receiver already held the bus for a whole stall
    /// timeout and has not taken a frame since, so it does not hold it
    /// again.
    pub stalled: bool,
    /// Frames the client asked to get (its controller's acceptance filter).
    pub filter: AcceptanceFilter,
    /// Its controller takes frames: `false` for a node on the virtual clock
    /// until it sets its filter (its driver is up and has buffers).
    pub listening: bool,
}

/// The bridge sending as this port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Babbler {
    pub frame: Frame,
    /// Bus time between frames, ns; `None`: saturate.
    pub period_ns: Option<u64>,
    /// Bus time the next frame is due.
    pub next_due: BusTime,
    pub remaining: Option<u64>,
}

/// An unpaced delivery a full receive queue holds up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocked {
    pub frame: Frame,
    pub conn: ConnId,
    /// Wall time after which it counts as an overrun.
    pub deadline: WallTime,
}

/// The port's transceiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transceiver {
    Up,
    /// Neither sends nor receives; with `flush`, what it sends is dropped.
    Down {
        flush: bool,
    },
}

/// Where a transmission's frame comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Fifo,
    Babble,
}

/// A frame that may contend: where from, its arbitration key, and the bus
/// time from which it may.
pub(crate) type Candidate = (Source, u64, BusTime);

#[derive(Clone, Debug)]
pub(crate) struct PortState {
    pub segment: SegmentId,
    pub conn: Option<Conn>,
    pub fifo: VecDeque<Pending>,
    /// Bus time the port's last frame ended: a frame that waited for a
    /// FIFO place was ready from then on.
    pub last_end: BusTime,
    pub transceiver: Transceiver,
    pub babble: Option<Babbler>,
    /// Transmissions started, the fault decisions' frame counter.
    pub attempts: u64,
    pub controller: Controller,
    pub blocked: Option<Blocked>,
    pub delay_line: DelayLine,
}

impl PortState {
    pub fn new(segment: SegmentId, fifo_depth: usize) -> PortState {
        PortState {
            segment,
            conn: None,
            fifo: VecDeque::with_capacity(fifo_depth),
            last_end: BusTime::ZERO,
            transceiver: Transceiver::Up,
            babble: None,
            attempts: 0,
            controller: Controller::default(),
            blocked: None,
            delay_line: DelayLine::default(),
        }
    }

    pub fn link_up(&self) -> bool {
        self.transceiver == Transceiver::Up
    }

    /// The current client, if it is `conn`.
    pub fn conn_if(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conn.as_mut().filter(|c| c.id == conn)
    }

    pub fn is_conn(&self, conn: ConnId) -> bool {
        self.conn.as_ref().is_some_and(|c| c.id == conn)
    }

    /// The frames it could send now.
    pub fn candidates(&self) -> impl Iterator<Item = Candidate> + '_ {
        let able = self.link_up() && !self.controller.is_bus_off();
        let fifo = self
            .fifo
            .front()
            .filter(|_| able)
            .map(|f| (Source::Fifo, f.frame.arbitration_key(), f.ready));
        let babble = self
            .babble
            .as_ref()
            .filter(|_| able)
            .map(|b| (Source::Babble, b.frame.arbitration_key(), b.next_due));
        fifo.into_iter().chain(babble)
    }

    /// Takes the frame to send from `source` at bus time `start`: a FIFO
    /// frame leaves the FIFO; a babble frame sets the next one's due time.
    pub fn take(&mut self, source: Source, start: BusTime) -> Option<(Frame, Option<Pending>)> {
        match source {
            Source::Fifo => {
                let pending = self.fifo.pop_front()?;
                Some((pending.frame, Some(pending)))
            }
            Source::Babble => {
                let b = self.babble.as_mut()?;
                let frame = b.frame;
                if let Some(period) = b.period_ns {
                    b.next_due = start + period;
                }
                if let Some(r) = b.remaining.as_mut() {
                    *r -= 1;
                    if *r == 0 {
                        self.babble = None;
                    }
                }
                Some((frame, None))
            }
        }
    }

    pub fn figures(&self, counts: PortCounts) -> PortFigures {
        PortFigures {
            counts,
            segment: self.segment,
            link_up: self.link_up(),
            babbling: self.babble.is_some(),
            bus_off: self.controller.is_bus_off(),
            tec: self.controller.tec(),
            tx_queued: self.fifo.len(),
            delay_queued: self.delay_line.len(),
        }
    }
}

/// Every port's state; mutable access marks the port changed, so that its
/// figures are copied out again.
pub(crate) struct PortTable {
    ports: IdVec<PortId, PortState>,
    changed: Changed<PortId>,
}

impl PortTable {
    pub fn new(ports: IdVec<PortId, PortState>) -> PortTable {
        let n = ports.len();
        PortTable {
            ports,
            changed: Changed::new(n),
        }
    }

    pub fn get(&self, p: PortId) -> &PortState {
        &self.ports[p]
    }

    pub fn get_mut(&mut self, p: PortId) -> &mut PortState {
        self.changed.mark(p);
        &mut self.ports[p]
    }

    pub fn ids(&self) -> impl Iterator<Item = PortId> + use<> {
        self.ports.ids()
    }

    pub fn segments(&self) -> IdVec<PortId, SegmentId> {
        self.ports.iter().map(|p| p.segment).collect()
    }

    pub fn take_changed(&mut self) -> Vec<PortId> {
        self.changed.take()
    }

    pub fn nothing_changed(&self) -> bool {
        self.changed.is_empty()
    }
}
