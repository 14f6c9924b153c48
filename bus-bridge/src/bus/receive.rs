//! Delivery: a frame on the bus reaching one receiver, through its
//! transceiver, the fault verdict and its acceptance filter, into its
//! receive queue, onto its delay line, or (unpaced, queue full) into a
//! blocked delivery that holds the bus; and the release of what is held.
//! Frames reach receive queues from here only.

use proto::Frame;
use tracing::debug;

use super::decisions::{Held, LineFull, Verdict};
use super::metrics::{Cause, Metrics};
use super::port::{Blocked, PortState, PortTable};
use crate::clock::{WallTime, earliest};
use crate::ids::{ConnId, PortId};

/// What a receive queue said to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    Taken,
    Full,
    /// The client is gone.
    Closed,
}

/// The ports' receive queues, as the driver keeps them.
pub(crate) trait Receivers {
    /// Offers `frame` to `port`'s client `conn`.
    fn push(&mut self, port: PortId, conn: ConnId, frame: Frame) -> Push;
}

/// Ports holding something for their client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeldCount {
    /// Ports with a blocked delivery.
    pub blocked: usize,
    /// Ports with a non-empty delay line.
    pub delayed: usize,
}

impl HeldCount {
    /// `p`'s client changed: what the port held for the old one is gone.
    /// Returns how many frames that was.
    pub fn forget(&mut self, p: &mut PortState) -> u64 {
        let mut lost = p.delay_line.clear();
        if lost > 0 {
            self.delayed -= 1;
        }
        if p.blocked.take().is_some() {
            lost += 1;
            self.blocked -= 1;
        }
        lost
    }
}

/// How a blocked delivery turned out.
enum Retry {
    Delivered,
    Dropped(Cause),
    Waiting,
}

/// The bus's receive side, borrowed at wall time `now`.
pub(crate) struct Delivery<'a, R> {
    pub ports: &'a mut PortTable,
    pub metrics: &'a mut Metrics,
    pub held: &'a mut HeldCount,
    pub paced: bool,
    /// How long a full queue may hold an unpaced bus, ns.
    pub stall_ns: u64,
    pub now: WallTime,
    pub rx: &'a mut R,
}

impl<R: Receivers> Delivery<'_, R> {
    /// Hands `frame` to receiver `r` as the rules decided (`v`); counts
    /// the drop if it does not get it.
    pub fn deliver(&mut self, r: PortId, frame: Frame, v: Verdict) {
        if let Some(cause) = self.receive(r, frame, v) {
            self.drop_frames(r, cause, 1);
        }
    }

    /// Why receiver `r` does not get `frame`, if it does not (a frame it
    /// holds, delayed or blocked, is not dropped yet).
    fn receive(&mut self, r: PortId, frame: Frame, v: Verdict) -> Option<Cause> {
        let p = self.ports.get(r);
        if !p.link_up() {
            return Some(Cause::LinkDown);
        }
        let Some(conn) = &p.conn else {
            return Some(Cause::PortDown);
        };
        // A controller checks the CRC before its filters.
        if v.corrupt {
            return Some(Cause::Corrupt);
        }
        if !conn.listening || !conn.filter.accepts(&frame) {
            return Some(Cause::Filtered);
        }
        if v.lost {
            return Some(Cause::Loss);
        }
        let (conn, stalled) = (conn.id, conn.stalled);
        if v.delay_ns > 0 || !p.delay_line.is_empty() {
            return self.hold(r, conn, frame, v.delay_ns);
        }
        match self.rx.push(r, conn, frame) {
            Push::Taken => {
                if stalled {
                    self.set_stalled(r, false);
                }
                None
            }
            Push::Closed => Some(Cause::PortDown),
            Push::Full if self.paced || stalled => Some(Cause::Overrun),
            Push::Full => {
                // Unpaced: a full queue holds the bus, at most one stall
                // timeout.
                self.ports.get_mut(r).blocked = Some(Blocked {
                    frame,
                    conn,
                    deadline: self.now.saturating_add(self.stall_ns),
                });
                self.held.blocked += 1;
                None
            }
        }
    }

    fn set_stalled(&mut self, r: PortId, stalled: bool) {
        if let Some(c) = self.ports.get_mut(r).conn.as_mut() {
            c.stalled = stalled;
        }
    }

    /// Puts `frame` on `r`'s delay line; an overrun if the line is full.
    fn hold(&mut self, r: PortId, conn: ConnId, frame: Frame, delay_ns: u64) -> Option<Cause> {
        let line = &mut self.ports.get_mut(r).delay_line;
        let was_empty = line.is_empty();
        match line.hold(self.now, delay_ns, conn, frame) {
            Err(LineFull) => Some(Cause::Overrun),
            Ok(()) => {
                if was_empty {
                    self.held.delayed += 1;
                }
                None
            }
        }
    }

    /// Delay lines and blocked deliveries; returns the next wall time
    /// either needs attention.
    pub fn service(&mut self) -> Option<WallTime> {
        let mut wake = None;
        if self.held.delayed > 0 {
            wake = self.release_delay_lines();
        }
        if self.held.blocked > 0 {
            wake = earliest(wake, self.retry_blocked());
        }
        wake
    }

    fn release_delay_lines(&mut self) -> Option<WallTime> {
        let mut wake = None;
        for port in self.ports.ids() {
            if self.ports.get(port).delay_line.is_empty() {
                continue;
            }
            while let Some(held) = self.ports.get_mut(port).delay_line.pop_due(self.now) {
                self.release_delayed(port, held);
            }
            match self.ports.get(port).delay_line.next_due() {
                Some(due) => wake = earliest(wake, Some(due)),
                None => self.held.delayed -= 1,
            }
        }
        wake
    }

    fn release_delayed(&mut self, port: PortId, held: Held) {
        let p = self.ports.get(port);
        let cause = if !p.is_conn(held.conn) {
            Some(Cause::PortDown)
        } else if p.blocked.is_some() {
            // Never ahead of a frame the bus is still trying to hand over.
            Some(Cause::Overrun)
        } else {
            match self.rx.push(port, held.conn, held.frame) {
                Push::Taken => {
                    self.metrics.port_mut(port).delayed += 1;
                    None
                }
                Push::Closed => Some(Cause::PortDown),
                // The bus moved on long ago: a late frame never holds it.
                Push::Full => Some(Cause::Overrun),
            }
        };
        if let Some(cause) = cause {
            self.drop_frames(port, cause, 1);
        }
    }

    fn retry_blocked(&mut self) -> Option<WallTime> {
        let mut wake = None;
        for port in self.ports.ids() {
            let Some(b) = self.ports.get(port).blocked else {
                continue;
            };
            match self.retry(port, b) {
                Retry::Waiting => wake = earliest(wake, Some(b.deadline)),
                retry => {
                    self.ports.get_mut(port).blocked = None;
                    self.held.blocked -= 1;
                    if let Retry::Dropped(cause) = retry {
                        self.drop_frames(port, cause, 1);
                    }
                }
            }
        }
        wake
    }

    /// Tries a blocked delivery again.
    fn retry(&mut self, port: PortId, b: Blocked) -> Retry {
        if !self.ports.get(port).is_conn(b.conn) {
            return Retry::Dropped(Cause::PortDown);
        }
        match self.rx.push(port, b.conn, b.frame) {
            Push::Taken => {
                self.set_stalled(port, false);
                Retry::Delivered
            }
            Push::Closed => Retry::Dropped(Cause::PortDown),
            Push::Full if self.now >= b.deadline => {
                debug!(
                    port = port.0,
                    "receive queue stalled; dropping for it until it drains"
                );
                self.set_stalled(port, true);
                Retry::Dropped(Cause::Overrun)
            }
            Push::Full => Retry::Waiting,
        }
    }

    fn drop_frames(&mut self, port: PortId, cause: Cause, n: u64) {
        let segment = self.ports.get(port).segment;
        self.metrics.drop_frames(port, segment, cause, n);
    }
}
