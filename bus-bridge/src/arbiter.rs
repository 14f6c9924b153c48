//! The arbiter: one task that owns every port's TX FIFO, every arbitration
//! domain's bus clock, the topology and the faults.
//!
//! A *domain* is a set of segments joined by links that are up; it is one
//! shared medium. Per domain, when the bus is free, the pending frame with
//! the lowest arbitration key wins, holds the bus for its frame time
//! (paced) or only accounts it (unpaced), then goes to every other port of
//! the domain through the fault rules and the acceptance filters.
//!
//! One task rather than one per domain, so that a link cut or restore just
//! regroups ports between two frames: nothing to hand over between tasks,
//! and decisions happen in one order. Waits are events, never blocking:
//! a paced frame in flight is a deadline; an unpaced frame that a full
//! receive queue holds up is a per-port *blocked* frame with a deadline,
//! woken by the queues' shared `room` notice.
//!
//! Topology changes: frames queued in TX FIFOs stay where they are and
//! contend in whatever domain their port is in afterwards; a paced frame
//! in flight in a domain that is split or merged is aborted and sent again
//! (as a real controller does when a cable is pulled mid-frame), counted
//! as a retransmission; a blocked unpaced delivery stays with its port.
//! Merged domains continue from the later of their bus clocks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use proto::Frame;
use proto::filter::AcceptanceFilter;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, OwnedSemaphorePermit, broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, trace};

use crate::capture::Sink;
use crate::event::BusEvent;
use crate::faults::{FaultEntry, FaultKind, Rule};
use crate::rxqueue::{PushError, RxQueue};
use crate::stats::{Cause, Shared};

/// Frames the arbiter puts on the buses before it lets other tasks run.
const YIELD_EVERY: u32 = 64;
/// Frames a delay fault may hold per port; more are overruns.
const DELAY_LINE_MAX: usize = 4096;
/// Bits an error frame adds to a frame that fails its CRC: the error flag
/// (6) + error delimiter (8) + intermission (3) replace EOF (7) +
/// intermission (3). Other nodes' echoed flags overlap the first 6.
pub(crate) const ERROR_FRAME_EXTRA_BITS: u64 = 7;
/// Bus-off recovery: 128 occurrences of 11 recessive bits.
const BUS_OFF_RECOVERY_BITS: u64 = 128 * 11;
/// Transmit error counter above which a controller goes bus-off.
const BUS_OFF_TEC: u32 = 255;

/// What port tasks tell the arbiter.
pub(crate) enum ToArbiter {
    /// A client connected; frames for it go into `rx`. `segment`: the
    /// port moves to that segment (socketcand ports pick theirs).
    Connected {
        port: usize,
        conn: u64,
        rx: Arc<RxQueue>,
        segment: Option<usize>,
    },
    /// That client is gone.
    Disconnected { port: usize, conn: u64 },
    /// That client set its acceptance filter.
    Filter {
        port: usize,
        conn: u64,
        filter: AcceptanceFilter,
    },
    /// A frame for the port's TX FIFO, whose bytes were read at wall time
    /// `read_ns` (0: the sender was ahead of the bus, so long before).
    /// `slot` is the FIFO place the reader took; dropping it frees the
    /// place and lets the reader read on.
    Frame {
        port: usize,
        conn: u64,
        frame: Frame,
        read_ns: u64,
        slot: OwnedSemaphorePermit,
    },
}

/// What the control API asks of the arbiter. Names are resolved and
/// values checked before a command gets here.
pub(crate) enum Command {
    AddFault {
        rule: Rule,
        reply: oneshot::Sender<u64>,
    },
    RemoveFault {
        id: u64,
        reply: oneshot::Sender<bool>,
    },
    ClearFaults {
        reply: oneshot::Sender<usize>,
    },
    LinkDown {
        port: usize,
        flush: bool,
        reply: oneshot::Sender<()>,
    },
    LinkUp {
        port: usize,
        reply: oneshot::Sender<()>,
    },
    SetLink {
        link: usize,
        up: bool,
        reply: oneshot::Sender<bool>,
    },
    BabbleStart {
        port: usize,
        frame: Frame,
        period_ns: Option<u64>,
        count: Option<u64>,
        reply: oneshot::Sender<()>,
    },
    BabbleStop {
        port: usize,
        reply: oneshot::Sender<bool>,
    },
}

/// Resolves once shutdown is signalled (or its sender is gone).
pub(crate) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

struct Pending {
    frame: Frame,
    /// Bus time (paced) from which the frame could contend.
    ready_ns: u64,
    conn: u64,
    /// Its FIFO place, held until the frame is sent or dropped; dropping
    /// it lets the port's reader read on.
    _slot: OwnedSemaphorePermit,
}

struct Conn {
    id: u64,
    rx: Arc<RxQueue>,
    /// Unpaced: this receiver already held the bus for a whole stall
    /// timeout and has not made room since, so it does not hold it again.
    stalled: bool,
    /// Frames the client asked to get (its controller's acceptance filter).
    filter: AcceptanceFilter,
}

struct BabbleState {
    frame: Frame,
    /// `None`: saturate.
    period_ns: Option<u64>,
    /// Bus time the next frame is due.
    next_due_ns: u64,
    remaining: Option<u64>,
}

/// An unpaced delivery a full receive queue holds up.
struct Blocked {
    frame: Frame,
    conn: u64,
    /// Wall time (ns) after which it counts as an overrun.
    deadline_ns: u64,
}

struct PortState {
    segment: usize,
    conn: Option<Conn>,
    fifo: VecDeque<Pending>,
    /// Bus time the port's last frame ended: a frame that waited for a
    /// FIFO place was ready from then on.
    last_end_ns: u64,
    /// `Some(flush)` while the link is down.
    link_down: Option<bool>,
    babble: Option<BabbleState>,
    /// Transmissions started, the fault decisions' frame counter.
    attempts: u64,
    tec: u32,
    /// Bus time the controller recovers from bus-off.
    bus_off_until: Option<u64>,
    blocked: Option<Blocked>,
    /// Frames a delay fault holds: (wall ns due, conn, frame).
    delay_line: VecDeque<(u64, u64, Frame)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Fifo,
    Babble,
}

struct InFlight {
    port: usize,
    source: Source,
    pending: Option<Pending>,
    frame: Frame,
    attempt: u64,
    /// Bus time of the frame alone (no error frame), ns.
    frame_ns: u64,
    /// Bus time taken, error frame included, ns.
    bus_ns: u64,
    end_ns: u64,
    /// Receivers whose corruption fault raised an error frame.
    error_by: Vec<usize>,
}

struct Domain {
    segments: Vec<usize>,
    ports: Vec<usize>,
    /// Ports the domain would reach if every link were up.
    cut_off: Vec<usize>,
    /// Bus time (ns) when the bus last became free.
    clock_ns: u64,
    /// Unpaced: wall time the bus went idle, while it is idle.
    idle_since_ns: Option<u64>,
    in_flight: Option<InFlight>,
}

enum Step {
    Progress,
    /// Nothing to do before this wall time (ns), or until woken.
    Wait(Option<u64>),
}

pub(crate) struct ArbiterSetup {
    pub port_segment: Vec<usize>,
    /// Links as segment pairs, and whether each is up.
    pub links: Vec<(usize, usize)>,
    pub tx_fifo_depth: usize,
    pub stall_timeout: Duration,
    pub rules: Vec<Rule>,
    pub link_down: Vec<usize>,
    pub babble: Vec<(usize, Frame, Option<u64>, Option<u64>)>,
}

pub(crate) struct Arbiter {
    ports: Vec<PortState>,
    links: Vec<(usize, usize)>,
    domains: Vec<Domain>,
    /// Segment -> component when every link is up.
    component: Vec<usize>,
    rules: Vec<Rule>,
    next_rule_id: u64,
    stall_ns: u64,
    inbox: mpsc::Receiver<ToArbiter>,
    commands: mpsc::Receiver<Command>,
    room: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    shared: Arc<Shared>,
    events: broadcast::Sender<BusEvent>,
    capture: Option<Sink>,
    /// Ports with a blocked delivery / a non-empty delay line.
    blocked_count: usize,
    delayed_count: usize,
}

impl Arbiter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        setup: ArbiterSetup,
        inbox: mpsc::Receiver<ToArbiter>,
        commands: mpsc::Receiver<Command>,
        room: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
        shared: Arc<Shared>,
        events: broadcast::Sender<BusEvent>,
        capture: Option<Sink>,
    ) -> Arbiter {
        let ports = setup
            .port_segment
            .iter()
            .map(|&segment| PortState {
                segment,
                conn: None,
                fifo: VecDeque::with_capacity(setup.tx_fifo_depth),
                last_end_ns: 0,
                link_down: None,
                babble: None,
                attempts: 0,
                tec: 0,
                bus_off_until: None,
                blocked: None,
                delay_line: VecDeque::new(),
            })
            .collect();
        let segments = shared.segment_names.len();
        let mut a = Arbiter {
            ports,
            component: components(segments, setup.links.iter().copied()),
            links: setup.links,
            domains: Vec::new(),
            next_rule_id: setup.rules.iter().map(|r| r.id + 1).max().unwrap_or(0),
            rules: setup.rules,
            stall_ns: u64::try_from(setup.stall_timeout.as_nanos()).unwrap_or(u64::MAX),
            inbox,
            commands,
            room,
            shutdown,
            shared,
            events,
            capture,
            blocked_count: 0,
            delayed_count: 0,
        };
        for p in setup.link_down {
            a.ports[p].link_down = Some(false);
            a.shared.ports[p].link_up.store(false, Relaxed);
        }
        for (p, frame, period_ns, count) in setup.babble {
            a.start_babble(p, frame, period_ns, count, 0);
        }
        a.repartition(0);
        a.publish_faults();
        a
    }

    pub async fn run(mut self) {
        let mut budget = YIELD_EVERY;
        loop {
            // Take in everything already sent, so that frames queued while
            // the bus was busy all contend for it.
            if !self.drain() {
                return;
            }
            let now = self.shared.wall_ns();
            let mut wake = self.service_receivers(now);
            let mut progress = false;
            for d in 0..self.domains.len() {
                match self.step(d, now) {
                    Step::Progress => progress = true,
                    Step::Wait(w) => wake = earliest(wake, w),
                }
            }
            if progress {
                budget -= 1;
                if budget == 0 {
                    budget = YIELD_EVERY;
                    tokio::task::yield_now().await;
                }
                continue;
            }
            let deadline = wake.map(|ns| self.shared.started + Duration::from_nanos(ns));
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.shutdown) => return,
                Some(cmd) = self.commands.recv() => self.command(cmd),
                msg = self.inbox.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = self.room.notified() => {}
                _ = sleep_opt(deadline) => {}
            }
        }
    }

    /// Handles every message already waiting; `false` once the ports are
    /// all gone.
    fn drain(&mut self) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            self.command(cmd);
        }
        loop {
            match self.inbox.try_recv() {
                Ok(msg) => self.handle(msg),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle(&mut self, msg: ToArbiter) {
        match msg {
            ToArbiter::Connected {
                port,
                conn,
                rx,
                segment,
            } => {
                self.drop_port_state(port, Cause::PortDown);
                self.ports[port].conn = Some(Conn {
                    id: conn,
                    rx,
                    stalled: false,
                    filter: AcceptanceFilter::accept_all(),
                });
                if let Some(s) = segment
                    && s != self.ports[port].segment
                {
                    self.ports[port].segment = s;
                    self.shared.ports[port].segment.store(s, Relaxed);
                    let now = self.shared.wall_ns();
                    self.repartition(now);
                }
            }
            ToArbiter::Disconnected { port, conn } => {
                if self.ports[port].conn.as_ref().is_some_and(|c| c.id == conn) {
                    self.ports[port].conn = None;
                    self.drop_port_state(port, Cause::PortDown);
                }
            }
            ToArbiter::Filter { port, conn, filter } => {
                if let Some(c) = self.ports[port].conn.as_mut().filter(|c| c.id == conn) {
                    c.filter = filter;
                }
            }
            ToArbiter::Frame {
                port,
                conn,
                frame,
                read_ns,
                slot,
            } => {
                let p = &mut self.ports[port];
                if p.conn.as_ref().is_none_or(|c| c.id != conn) {
                    // Sent by a connection that has since gone away.
                    self.shared.drop_frames(port, Cause::TxFlushed, 1);
                } else if p.link_down == Some(true) {
                    self.shared.drop_frames(port, Cause::TxLinkDown, 1);
                } else {
                    // Stamped when read, not when this task got to it; a
                    // sender held back by a full FIFO was ready as soon as
                    // a place freed, in bus time.
                    let ready_ns = read_ns.max(p.last_end_ns);
                    p.fifo.push_back(Pending {
                        frame,
                        ready_ns,
                        conn,
                        _slot: slot,
                    });
                    self.publish_fifo(port);
                }
            }
        }
    }

    /// A port's client changed: what its controller held is gone. Frames
    /// in the TX FIFO are flushed; frames on their way to the old client
    /// count as `rx_cause`.
    fn drop_port_state(&mut self, port: usize, rx_cause: Cause) {
        let p = &mut self.ports[port];
        let flushed = p.fifo.len() as u64;
        p.fifo.clear();
        let mut lost = p.delay_line.len() as u64;
        if !p.delay_line.is_empty() {
            p.delay_line.clear();
            self.delayed_count -= 1;
        }
        if p.blocked.take().is_some() {
            lost += 1;
            self.blocked_count -= 1;
        }
        self.shared.drop_frames(port, Cause::TxFlushed, flushed);
        self.shared.drop_frames(port, rx_cause, lost);
        self.publish_fifo(port);
        self.shared.ports[port].delay_queued.store(0, Relaxed);
    }

    fn publish_fifo(&self, port: usize) {
        self.shared.ports[port]
            .tx_queued
            .store(self.ports[port].fifo.len() as u64, Relaxed);
    }

    fn publish_faults(&self) {
        let list = self
            .rules
            .iter()
            .map(|r| FaultEntry {
                id: r.id,
                fault: r.fault.clone(),
            })
            .collect();
        if let Ok(mut f) = self.shared.faults.lock() {
            *f = list;
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = self.shared.wall_ns();
        match cmd {
            Command::AddFault { mut rule, reply } => {
                rule.id = self.next_rule_id;
                self.next_rule_id += 1;
                let id = rule.id;
                debug!(id, fault = ?rule.fault, "fault added");
                self.rules.push(rule);
                self.publish_faults();
                let _ = reply.send(id);
            }
            Command::RemoveFault { id, reply } => {
                let before = self.rules.len();
                self.rules.retain(|r| r.id != id);
                self.publish_faults();
                let _ = reply.send(self.rules.len() < before);
            }
            Command::ClearFaults { reply } => {
                let n = self.rules.len();
                self.rules.clear();
                self.publish_faults();
                let _ = reply.send(n);
            }
            Command::LinkDown { port, flush, reply } => {
                self.abort_in_flight_of(port, now);
                let p = &mut self.ports[port];
                p.link_down = Some(flush);
                if flush {
                    let n = p.fifo.len() as u64;
                    p.fifo.clear();
                    self.shared.drop_frames(port, Cause::TxLinkDown, n);
                    self.publish_fifo(port);
                }
                self.shared.ports[port].link_up.store(false, Relaxed);
                let _ = reply.send(());
            }
            Command::LinkUp { port, reply } => {
                self.ports[port].link_down = None;
                self.shared.ports[port].link_up.store(true, Relaxed);
                let _ = reply.send(());
            }
            Command::SetLink { link, up, reply } => {
                let l = &self.shared.links[link];
                let changed = l.up.swap(up, Relaxed) != up;
                if changed {
                    if !up {
                        l.cuts.fetch_add(1, Relaxed);
                    }
                    debug!(link = %l.name, up, "link changed");
                    self.repartition(now);
                }
                let _ = reply.send(changed);
            }
            Command::BabbleStart {
                port,
                frame,
                period_ns,
                count,
                reply,
            } => {
                let d = self.domain_of(port);
                let bus_now = self.bus_now(d, now);
                self.start_babble(port, frame, period_ns, count, bus_now);
                let _ = reply.send(());
            }
            Command::BabbleStop { port, reply } => {
                let was = self.ports[port].babble.take().is_some();
                self.shared.ports[port].babbling.store(false, Relaxed);
                let _ = reply.send(was);
            }
        }
    }

    fn start_babble(
        &mut self,
        port: usize,
        frame: Frame,
        period_ns: Option<u64>,
        count: Option<u64>,
        bus_now: u64,
    ) {
        if count == Some(0) {
            return;
        }
        self.ports[port].babble = Some(BabbleState {
            frame,
            period_ns,
            next_due_ns: bus_now,
            remaining: count,
        });
        self.shared.ports[port].babbling.store(true, Relaxed);
    }

    fn domain_of(&self, port: usize) -> usize {
        let s = self.ports[port].segment;
        self.domains
            .iter()
            .position(|d| d.segments.contains(&s))
            .unwrap_or(0)
    }

    /// The domain's bus time at wall time `now`.
    fn bus_now(&self, d: usize, now: u64) -> u64 {
        if self.shared.paced {
            return now;
        }
        let dom = &self.domains[d];
        match dom.idle_since_ns {
            Some(since) => dom.clock_ns + now.saturating_sub(since),
            None => dom.clock_ns,
        }
    }

    /// Unpaced: the wall time at which an idle domain's bus reaches `bus`.
    fn wall_at(&self, d: usize, bus: u64, now: u64) -> u64 {
        if self.shared.paced {
            return bus;
        }
        let dom = &self.domains[d];
        let since = dom.idle_since_ns.unwrap_or(now);
        since + bus.saturating_sub(dom.clock_ns)
    }

    fn go_idle(&mut self, d: usize, now: u64) {
        if !self.shared.paced && self.domains[d].idle_since_ns.is_none() {
            self.domains[d].idle_since_ns = Some(now);
            self.publish_clock(d);
        }
    }

    fn leave_idle(&mut self, d: usize, now: u64) {
        let dom = &mut self.domains[d];
        if let Some(since) = dom.idle_since_ns.take() {
            if !self.shared.paced {
                dom.clock_ns += now.saturating_sub(since);
            }
            self.publish_clock(d);
        }
    }

    fn publish_clock(&self, d: usize) {
        let dom = &self.domains[d];
        for &s in &dom.segments {
            let c = &self.shared.segments[s];
            c.bus_ns.store(dom.clock_ns, Relaxed);
            c.idle_since_ns
                .store(dom.idle_since_ns.unwrap_or(u64::MAX), Relaxed);
        }
    }

    /// Regroups segments into domains by the links that are up.
    fn repartition(&mut self, now: u64) {
        let paced = self.shared.paced;
        // Settle idle time into the clocks first.
        for d in &mut self.domains {
            if !paced && let Some(since) = d.idle_since_ns {
                d.clock_ns += now.saturating_sub(since);
                d.idle_since_ns = Some(now);
            }
        }
        let up: Vec<(usize, usize)> = self
            .links
            .iter()
            .enumerate()
            .filter(|(i, _)| self.shared.links[*i].up.load(Relaxed))
            .map(|(_, &l)| l)
            .collect();
        let segments = self.component.len();
        let comp = components(segments, up.into_iter());
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut root_group = vec![usize::MAX; segments];
        for (s, &r) in comp.iter().enumerate() {
            if root_group[r] == usize::MAX {
                root_group[r] = groups.len();
                groups.push(Vec::new());
            }
            groups[root_group[r]].push(s);
        }
        let mut old = std::mem::take(&mut self.domains);
        let mut aborted = Vec::new();
        let mut domains = Vec::with_capacity(groups.len());
        for segs in groups {
            let clock_ns = old
                .iter()
                .filter(|d| d.segments.iter().any(|s| segs.contains(s)))
                .map(|d| d.clock_ns)
                .max()
                .unwrap_or(0);
            // A frame in flight survives only if its domain is unchanged.
            let in_flight = old
                .iter_mut()
                .find(|d| d.segments == segs)
                .and_then(|d| d.in_flight.take());
            let ports: Vec<usize> = (0..self.ports.len())
                .filter(|&p| segs.contains(&self.ports[p].segment))
                .collect();
            let cut_off: Vec<usize> = (0..self.ports.len())
                .filter(|&p| {
                    let s = self.ports[p].segment;
                    !segs.contains(&s) && self.component[s] == self.component[segs[0]]
                })
                .collect();
            domains.push(Domain {
                segments: segs,
                ports,
                cut_off,
                clock_ns,
                idle_since_ns: (!paced).then_some(now),
                in_flight,
            });
        }
        for d in &mut old {
            if let Some(f) = d.in_flight.take() {
                aborted.push(f);
            }
        }
        self.domains = domains;
        for f in aborted {
            self.abort(f);
        }
        for d in 0..self.domains.len() {
            self.publish_clock(d);
        }
        if let Ok(mut t) = self.shared.domains.lock() {
            *t = self.domains.iter().map(|d| d.segments.clone()).collect();
        }
    }

    fn abort_in_flight_of(&mut self, port: usize, _now: u64) {
        for d in 0..self.domains.len() {
            if self.domains[d]
                .in_flight
                .as_ref()
                .is_some_and(|f| f.port == port)
                && let Some(f) = self.domains[d].in_flight.take()
            {
                self.abort(f);
            }
        }
    }

    /// A transmission cut short: the frame goes back to the head of its
    /// FIFO to be sent again, as a controller retransmits.
    fn abort(&mut self, f: InFlight) {
        let port = f.port;
        let Some(pending) = f.pending else { return };
        let p = &mut self.ports[port];
        if p.conn.as_ref().is_some_and(|c| c.id == pending.conn) {
            p.fifo.push_front(pending);
            self.shared.ports[port]
                .retransmissions
                .fetch_add(1, Relaxed);
            self.publish_fifo(port);
        } else {
            self.shared.drop_frames(port, Cause::TxFlushed, 1);
        }
    }

    /// Delay lines and blocked deliveries; returns the next wall time
    /// either needs attention.
    fn service_receivers(&mut self, now: u64) -> Option<u64> {
        let mut wake = None;
        if self.delayed_count > 0 {
            for port in 0..self.ports.len() {
                if self.ports[port].delay_line.is_empty() {
                    continue;
                }
                while let Some(&(due, conn, frame)) = self.ports[port].delay_line.front() {
                    if due > now {
                        wake = earliest(wake, Some(due));
                        break;
                    }
                    self.ports[port].delay_line.pop_front();
                    self.release_delayed(port, conn, frame);
                }
                let left = self.ports[port].delay_line.len();
                self.shared.ports[port]
                    .delay_queued
                    .store(left as u64, Relaxed);
                if left == 0 {
                    self.delayed_count -= 1;
                }
            }
        }
        if self.blocked_count > 0 {
            for port in 0..self.ports.len() {
                let p = &mut self.ports[port];
                let Some(b) = p.blocked.as_ref() else {
                    continue;
                };
                let conn = p.conn.as_mut().filter(|c| c.id == b.conn);
                let done = match conn {
                    None => Some(Cause::PortDown),
                    Some(c) => match c.rx.push(b.frame) {
                        Ok(()) => {
                            c.stalled = false;
                            None
                        }
                        Err(PushError::Closed) => Some(Cause::PortDown),
                        Err(PushError::Full) if now >= b.deadline_ns => {
                            debug!(
                                port,
                                "receive queue stalled; dropping for it until it drains"
                            );
                            c.stalled = true;
                            Some(Cause::Overrun)
                        }
                        Err(PushError::Full) => {
                            wake = earliest(wake, Some(b.deadline_ns));
                            continue;
                        }
                    },
                };
                p.blocked = None;
                self.blocked_count -= 1;
                if let Some(cause) = done {
                    self.shared.drop_frames(port, cause, 1);
                }
            }
        }
        wake
    }

    fn release_delayed(&mut self, port: usize, conn: u64, frame: Frame) {
        let p = &mut self.ports[port];
        let cause = match p.conn.as_mut().filter(|c| c.id == conn) {
            None => Some(Cause::PortDown),
            // Never ahead of a frame the bus is still trying to hand over.
            Some(_) if p.blocked.is_some() => Some(Cause::Overrun),
            Some(c) => match c.rx.push(frame) {
                Ok(()) => {
                    self.shared.ports[port].delayed.fetch_add(1, Relaxed);
                    None
                }
                Err(PushError::Closed) => Some(Cause::PortDown),
                // The bus moved on long ago: a late frame never holds it.
                Err(PushError::Full) => Some(Cause::Overrun),
            },
        };
        if let Some(cause) = cause {
            self.shared.drop_frames(port, cause, 1);
        }
    }

    /// Advances domain `d` by at most one frame.
    fn step(&mut self, d: usize, now: u64) -> Step {
        let paced = self.shared.paced;
        if let Some(end) = self.domains[d].in_flight.as_ref().map(|f| f.end_ns) {
            if end > now {
                return Step::Wait(Some(end));
            }
            if let Some(f) = self.domains[d].in_flight.take() {
                self.complete(d, f, now);
            }
            return Step::Progress;
        }
        if self.blocked_count > 0
            && self.domains[d]
                .ports
                .iter()
                .any(|&p| self.ports[p].blocked.is_some())
        {
            // Unpaced: a full receive queue holds the bus.
            return Step::Wait(None);
        }
        let bus_now = self.bus_now(d, now);
        // Controllers whose bus-off recovery is over rejoin.
        for i in 0..self.domains[d].ports.len() {
            let p = self.domains[d].ports[i];
            if self.ports[p].bus_off_until.is_some_and(|t| t <= bus_now) {
                self.ports[p].bus_off_until = None;
                self.ports[p].tec = 0;
                self.shared.ports[p].bus_off.store(false, Relaxed);
                self.shared.ports[p].tec.store(0, Relaxed);
            }
        }
        // Paced: the bus is free at `clock_ns` or when the first frame
        // arrived after that; only frames there by then contend. Unpaced:
        // every pending frame contends at once.
        let mut first: Option<u64> = None;
        let mut later: Option<u64> = None;
        for &p in &self.domains[d].ports {
            for (source, _, ready) in self.candidates(p) {
                let ready = ready_at(paced, source, ready);
                first = Some(first.map_or(ready, |f: u64| f.min(ready)));
            }
            if let Some(t) = self.ports[p].bus_off_until {
                later = earliest(later, Some(t));
            }
        }
        let Some(first) = first else {
            self.go_idle(d, now);
            return Step::Wait(later.map(|t| self.wall_at(d, t, now)));
        };
        let start = if paced {
            self.domains[d].clock_ns.max(first)
        } else {
            bus_now
        };
        if paced && start > now {
            return Step::Wait(Some(start));
        }
        if !paced && first > bus_now {
            // Only a rate-limited babbler, due later.
            self.go_idle(d, now);
            return Step::Wait(Some(self.wall_at(d, first, now)));
        }
        let mut winner: Option<(u64, usize, Source)> = None;
        for &p in &self.domains[d].ports {
            for (source, key, ready) in self.candidates(p) {
                if ready_at(paced, source, ready) > start {
                    continue;
                }
                // Lowest key; on a tie (a port's babble and FIFO), the
                // lower port, babble first.
                let cand = (key, p, source);
                if winner.is_none_or(|w| {
                    (cand.0, cand.1, cand.2 == Source::Fifo) < (w.0, w.1, w.2 == Source::Fifo)
                }) {
                    winner = Some(cand);
                }
            }
        }
        let Some((_, port, source)) = winner else {
            return Step::Wait(None);
        };
        if !paced {
            self.leave_idle(d, now);
        }
        let Some(f) = self.begin(d, port, source, start) else {
            return Step::Progress;
        };
        if paced && f.end_ns > now {
            let end = f.end_ns;
            self.domains[d].in_flight = Some(f);
            return Step::Wait(Some(end));
        }
        self.complete(d, f, now);
        Step::Progress
    }

    /// The frames port `p` could send now: (source, key, ready bus time).
    fn candidates(&self, p: usize) -> impl Iterator<Item = (Source, u64, u64)> + '_ {
        let port = &self.ports[p];
        let able = port.link_down.is_none() && port.bus_off_until.is_none();
        let fifo = port
            .fifo
            .front()
            .filter(|_| able)
            .map(|f| (Source::Fifo, f.frame.arbitration_key(), f.ready_ns));
        let babble = port
            .babble
            .as_ref()
            .filter(|_| able)
            .map(|b| (Source::Babble, b.frame.arbitration_key(), b.next_due_ns));
        fifo.into_iter().chain(babble)
    }

    /// Starts a transmission from `port` at bus time `start`.
    fn begin(&mut self, d: usize, port: usize, source: Source, start: u64) -> Option<InFlight> {
        let p = &mut self.ports[port];
        let (frame, pending) = match source {
            Source::Fifo => {
                let pending = p.fifo.pop_front()?;
                (pending.frame, Some(pending))
            }
            Source::Babble => {
                let b = p.babble.as_mut()?;
                let frame = b.frame;
                b.next_due_ns = match b.period_ns {
                    Some(period) => start + period,
                    None => b.next_due_ns,
                };
                if let Some(r) = b.remaining.as_mut() {
                    *r -= 1;
                    if *r == 0 {
                        p.babble = None;
                        self.shared.ports[port].babbling.store(false, Relaxed);
                    }
                }
                (frame, None)
            }
        };
        p.attempts += 1;
        let attempt = p.attempts;
        self.publish_fifo(port);
        let Some(frame_ns) = self.shared.timing.frame_time_ns(&frame) else {
            // Readers filter these out already; never let one on the bus.
            self.shared.drop_frames(port, Cause::TxFdOnClassic, 1);
            return None;
        };
        let error_by = self.error_frame_raisers(d, port, attempt, &frame);
        let bus_ns = if error_by.is_empty() {
            frame_ns
        } else {
            frame_ns
                + ERROR_FRAME_EXTRA_BITS * 1_000_000_000 / self.shared.timing.nominal_bps() as u64
        };
        Some(InFlight {
            port,
            source,
            pending,
            frame,
            attempt,
            frame_ns,
            bus_ns,
            end_ns: start + bus_ns,
            error_by,
        })
    }

    /// Receivers in domain `d` whose error-frame corruption rule hits.
    fn error_frame_raisers(
        &self,
        d: usize,
        sender: usize,
        attempt: u64,
        frame: &Frame,
    ) -> Vec<usize> {
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.kind == FaultKind::Corrupt && r.error_frame)
            .collect();
        if rules.is_empty() {
            return Vec::new();
        }
        let seed = self.shared.seed;
        self.domains[d]
            .ports
            .iter()
            .copied()
            .filter(|&r| {
                let p = &self.ports[r];
                r != sender
                    && p.link_down.is_none()
                    && p.conn.is_some()
                    && rules.iter().any(|rule| {
                        rule.covers(r, p.segment, frame) && rule.hits(seed, sender, attempt, r)
                    })
            })
            .collect()
    }

    /// A transmission's last bit: account it and hand the frame over.
    fn complete(&mut self, d: usize, f: InFlight, now: u64) {
        let sender = f.port;
        self.domains[d].clock_ns = f.end_ns;
        self.ports[sender].last_end_ns = f.end_ns;
        self.publish_clock(d);
        for &s in &self.domains[d].segments {
            self.shared.segments[s].busy_ns.fetch_add(f.bus_ns, Relaxed);
        }
        self.shared.total_busy_ns.fetch_add(f.bus_ns, Relaxed);
        if !f.error_by.is_empty() {
            self.error_frame(d, f);
            return;
        }
        let frame = f.frame;
        let bytes = frame.data().len() as u64;
        {
            let p = &mut self.ports[sender];
            p.tec = p.tec.saturating_sub(1);
            let c = &self.shared.ports[sender];
            c.tec.store(u64::from(p.tec), Relaxed);
            c.frames_tx.fetch_add(1, Relaxed);
            c.bytes_tx.fetch_add(bytes, Relaxed);
            c.busy_ns.fetch_add(f.frame_ns, Relaxed);
            if f.source == Source::Babble {
                c.babble_frames.fetch_add(1, Relaxed);
            }
        }
        // The FIFO place stays taken until the frame has been sent.
        drop(f.pending);
        for &s in &self.domains[d].segments {
            let seg = &self.shared.segments[s];
            seg.frames.fetch_add(1, Relaxed);
            seg.bytes.fetch_add(bytes, Relaxed);
        }
        self.shared.total_frames.fetch_add(1, Relaxed);
        self.shared.total_bytes.fetch_add(bytes, Relaxed);
        for i in 0..self.domains[d].ports.len() {
            let r = self.domains[d].ports[i];
            if r != sender {
                self.deliver(sender, f.attempt, r, frame, now);
            }
        }
        for &r in &self.domains[d].cut_off {
            self.shared.drop_frames(r, Cause::LinkCut, 1);
        }
        let seq = self.shared.next_seq.fetch_add(1, Relaxed);
        let segment = self.ports[sender].segment;
        trace!(
            seq,
            port = sender,
            id = frame.id(),
            bus_time_ns = f.end_ns,
            "frame on bus"
        );
        if let Some(c) = &self.capture {
            c.offer(f.end_ns, segment, frame);
        }
        // Nobody listening is fine; a lagging subscriber loses old events.
        let _ = self.events.send(BusEvent {
            seq,
            bus_time_ns: f.end_ns,
            segment,
            port: sender,
            frame,
        });
    }

    /// A frame destroyed by an error frame: nobody keeps it; the sender
    /// counts a transmit error and tries again, unless it goes bus-off.
    fn error_frame(&mut self, d: usize, f: InFlight) {
        let sender = f.port;
        for i in 0..self.domains[d].ports.len() {
            let r = self.domains[d].ports[i];
            if r == sender {
                continue;
            }
            let p = &self.ports[r];
            let cause = if p.link_down.is_some() {
                Cause::LinkDown
            } else if p.conn.is_none() {
                Cause::PortDown
            } else if f.error_by.contains(&r) {
                Cause::Corrupt
            } else {
                Cause::ErrorFrame
            };
            self.shared.drop_frames(r, cause, 1);
        }
        for &s in &self.domains[d].segments {
            self.shared.segments[s].error_frames.fetch_add(1, Relaxed);
        }
        let p = &mut self.ports[sender];
        p.tec += 8;
        let c = &self.shared.ports[sender];
        c.tec.store(u64::from(p.tec), Relaxed);
        c.retransmissions.fetch_add(1, Relaxed);
        if p.tec > BUS_OFF_TEC {
            let bit_ns = 1_000_000_000 / self.shared.timing.nominal_bps() as u64;
            p.bus_off_until = Some(f.end_ns + BUS_OFF_RECOVERY_BITS * bit_ns);
            c.bus_off.store(true, Relaxed);
            debug!(port = sender, "bus-off");
            // The frame that took it there is given up.
            if f.pending.is_some() {
                self.shared.drop_frames(sender, Cause::TxBusOff, 1);
            }
            return;
        }
        if let Some(pending) = f.pending {
            if p.conn.as_ref().is_some_and(|c| c.id == pending.conn) {
                p.fifo.push_front(pending);
            } else {
                self.shared.drop_frames(sender, Cause::TxFlushed, 1);
            }
            self.publish_fifo(sender);
        }
    }

    /// Hands `frame` from `sender` to receiver `r`, through link state,
    /// faults and the acceptance filter.
    fn deliver(&mut self, sender: usize, attempt: u64, r: usize, frame: Frame, now: u64) {
        let seed = self.shared.seed;
        let segment = self.ports[r].segment;
        let mut corrupt = false;
        let mut lost = false;
        let mut delay_ns = 0u64;
        for rule in &self.rules {
            if !rule.covers(r, segment, &frame) {
                continue;
            }
            match rule.kind {
                FaultKind::Corrupt if !rule.error_frame => {
                    corrupt |= rule.hits(seed, sender, attempt, r);
                }
                FaultKind::Corrupt => {}
                FaultKind::Loss => lost |= rule.hits(seed, sender, attempt, r),
                FaultKind::Delay => {
                    if rule.hits(seed, sender, attempt, r) {
                        delay_ns = delay_ns.max(rule.delay_for(seed, sender, attempt, r));
                    }
                }
            }
        }
        let paced = self.shared.paced;
        let p = &mut self.ports[r];
        let cause = if p.link_down.is_some() {
            Some(Cause::LinkDown)
        } else if let Some(conn) = p.conn.as_mut() {
            if corrupt {
                // A controller checks the CRC before its filters.
                Some(Cause::Corrupt)
            } else if !conn.filter.accepts(&frame) {
                Some(Cause::Filtered)
            } else if lost {
                Some(Cause::Loss)
            } else if delay_ns > 0 || !p.delay_line.is_empty() {
                if p.delay_line.len() >= DELAY_LINE_MAX {
                    Some(Cause::Overrun)
                } else {
                    // Never before a frame already held for this port.
                    let due = p
                        .delay_line
                        .back()
                        .map_or(0, |&(due, _, _)| due)
                        .max(now + delay_ns);
                    if p.delay_line.is_empty() {
                        self.delayed_count += 1;
                    }
                    p.delay_line.push_back((due, conn.id, frame));
                    self.shared.ports[r]
                        .delay_queued
                        .store(p.delay_line.len() as u64, Relaxed);
                    None
                }
            } else {
                match conn.rx.push(frame) {
                    Ok(()) => {
                        conn.stalled = false;
                        None
                    }
                    Err(PushError::Closed) => Some(Cause::PortDown),
                    Err(PushError::Full) if paced || conn.stalled => Some(Cause::Overrun),
                    Err(PushError::Full) => {
                        // Unpaced: a full queue holds the bus, at most one
                        // stall timeout.
                        p.blocked = Some(Blocked {
                            frame,
                            conn: conn.id,
                            deadline_ns: now.saturating_add(self.stall_ns),
                        });
                        self.blocked_count += 1;
                        None
                    }
                }
            }
        } else {
            Some(Cause::PortDown)
        };
        if let Some(cause) = cause {
            self.shared.drop_frames(r, cause, 1);
        }
    }
}

/// When a candidate can contend, in bus time. Unpaced, a FIFO frame's
/// read stamp is wall time, unrelated to the virtual clock: it is ready.
fn ready_at(paced: bool, source: Source, ready: u64) -> u64 {
    if paced || source == Source::Babble {
        ready
    } else {
        0
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Connected components of `n` segments joined by `links`: each segment's
/// representative.
pub(crate) fn components(n: usize, links: impl Iterator<Item = (usize, usize)>) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (a, b) in links {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    (0..n).map(|x| find(&mut parent, x)).collect()
}

#[cfg(test)]
mod tests {
    use super::components;

    #[test]
    fn components_follow_links() {
        assert_eq!(components(3, [].into_iter()), [0, 1, 2]);
        assert_eq!(components(3, [(0, 1), (1, 2)].into_iter()), [0, 0, 0]);
        assert_eq!(components(4, [(2, 3), (1, 3)].into_iter()), [0, 1, 1, 1]);
    }
}
