//! The bus as a state machine, free of I/O: it owns every port's TX FIFO,
//! every arbitration domain's bus clock, the topology and the faults.
//!
//! A *domain* is a set of segments joined by links that are up; it is one
//! shared medium. Per domain, when the bus is free, the pending frame with
//! the lowest arbitration key wins, holds the bus for its frame time
//! (paced) or only accounts it (unpaced), then goes to every other port of
//! the domain through the fault rules and the acceptance filters.
//!
//! One owner for every domain rather than one per domain, so that a link
//! cut or restore just regroups ports between two frames: nothing to hand
//! over, and decisions happen in one order. Waits are events, never
//! blocking: a paced frame in flight is a deadline; an unpaced frame that
//! a full receive queue holds up is a per-port *blocked* frame with a
//! deadline, retried whenever the driver polls again.
//!
//! Topology changes: frames queued in TX FIFOs stay where they are and
//! contend in whatever domain their port is in afterwards; a paced frame
//! in flight in a domain that is split or merged is aborted and sent again
//! (as a real controller does when a cable is pulled mid-frame), counted
//! as a retransmission; a blocked unpaced delivery stays with its port.
//! Merged domains continue from the later of their bus clocks.
//!
//! Input: frames and client changes ([`Bus::submit`], [`Bus::connect`],
//! …), control commands, and wall time, always given ([`Bus::poll`]);
//! nothing here reads a clock. Output: deliveries through [`Receivers`],
//! drops counted by cause in its metrics, [`Output`]s (frames on the bus,
//! freed FIFO places), and the next wall time it needs a poll at.
//!
//! Modules, by concern: `topology` (links, domains, their clocks),
//! `controller` (TEC, error frames, bus-off), `decisions` (seeded fault
//! rules, delay lines), `receive` (delivery, and what receivers hold),
//! `metrics` (counters and figures), `port` (one port's state).

mod controller;
mod decisions;
mod metrics;
mod port;
mod receive;
mod topology;

use std::collections::VecDeque;
use std::time::Duration;

use proto::Frame;
use proto::filter::AcceptanceFilter;
use tracing::{debug, trace};

use crate::clock::{BusTime, WallTime, earliest};
use crate::faults::Rule;
use crate::ids::{ConnId, LinkId, PortId, SegmentId};
use crate::timing::BitTiming;
use controller::{AfterError, error_frame_ns};
use decisions::{Coordinates, Rules};
pub use metrics::Cause;
pub(crate) use metrics::{CAUSES, Drops, Figures, LinkFigures, PortFigures, SegmentFigures};
use metrics::{Metrics, PortCounts};
use port::{Babbler, Conn, Pending, PortState, PortTable, Source, Transceiver};
use receive::{Delivery, HeldCount};
pub(crate) use receive::{Push, Receivers};
use topology::{Domain, Links, regroup};

/// A frame that won a bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OnBus {
    /// Increases by one per frame, across all domains.
    pub seq: u64,
    /// Bus time at its end, intermission included.
    pub end: BusTime,
    /// The sender's segment.
    pub segment: SegmentId,
    pub port: PortId,
    pub frame: Frame,
}

/// What the driver carries out, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// A frame won a bus (for the capture and the events).
    OnBus(OnBus),
    /// A transmission destroyed by an error frame.
    ErrorFrame { port: PortId, frame: Frame },
    /// `slots` of `port`'s TX FIFO places are free again.
    TxDone { port: PortId, slots: usize },
}

/// What a poll achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poll {
    /// Something happened: poll again.
    Progress,
    /// Nothing to do before this wall time, or (`None`) before an input.
    Idle(Option<WallTime>),
}

/// A port that babbles from the start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BabbleSetup {
    pub port: PortId,
    pub frame: Frame,
    pub period_ns: Option<u64>,
    pub count: Option<u64>,
}

/// A bus as it starts.
pub(crate) struct Setup {
    pub timing: BitTiming,
    pub paced: bool,
    /// Paced: frames ready within a nominal bit of the first on an idle
    /// bus contend with it (see [`Bus::step`]). For the virtual clock,
    /// whose times are exact; the wall clock's timers are far coarser.
    pub sof_window: bool,
    pub seed: u64,
    pub segments: usize,
    /// Each port's segment.
    pub port_segment: Vec<SegmentId>,
    pub links: Vec<(SegmentId, SegmentId)>,
    /// Links cut from the start.
    pub cut: Vec<LinkId>,
    pub tx_fifo_depth: usize,
    pub stall_timeout: Duration,
    pub rules: Vec<Rule>,
    pub link_down: Vec<PortId>,
    pub babble: Vec<BabbleSetup>,
}

/// A transmission on a wire.
#[derive(Debug)]
struct InFlight {
    port: PortId,
    source: Source,
    pending: Option<Pending>,
    frame: Frame,
    attempt: u64,
    /// Bus time of the frame alone (no error frame), ns.
    frame_ns: u64,
    /// Bus time taken, error frame included, ns.
    bus_ns: u64,
    end: BusTime,
    /// Receivers whose corruption fault raised an error frame.
    error_by: Vec<PortId>,
}

enum Step {
    Progress,
    Wait(Option<WallTime>),
}

pub(crate) struct Bus {
    timing: BitTiming,
    paced: bool,
    /// Whether idle-bus arbitration waits a nominal bit for contenders.
    sof_window: bool,
    stall_ns: u64,
    segments: usize,
    ports: PortTable,
    links: Links,
    domains: Vec<Domain<InFlight>>,
    rules: Rules,
    metrics: Metrics,
    outputs: VecDeque<Output>,
    held: HeldCount,
    next_seq: u64,
    topology_changed: bool,
    faults_changed: bool,
}

impl Bus {
    /// A bus at wall and bus time zero.
    pub fn new(setup: Setup) -> Bus {
        let ports = setup
            .port_segment
            .iter()
            .map(|&s| PortState::new(s, setup.tx_fifo_depth))
            .collect();
        let mut bus = Bus {
            timing: setup.timing,
            paced: setup.paced,
            sof_window: setup.sof_window && setup.paced,
            stall_ns: u64::try_from(setup.stall_timeout.as_nanos()).unwrap_or(u64::MAX),
            segments: setup.segments,
            ports: PortTable::new(ports),
            links: Links::new(setup.segments, &setup.links, &setup.cut),
            domains: Vec::new(),
            rules: Rules::new(setup.seed, setup.rules),
            metrics: Metrics::new(setup.port_segment.len(), setup.segments),
            outputs: VecDeque::new(),
            held: HeldCount::default(),
            next_seq: 0,
            topology_changed: true,
            faults_changed: true,
        };
        for p in setup.link_down {
            bus.ports.get_mut(p).transceiver = Transceiver::Down { flush: false };
        }
        for b in setup.babble {
            bus.start_babble(b.port, b.frame, b.period_ns, b.count, BusTime::ZERO);
        }
        bus.repartition(WallTime::ZERO);
        bus
    }

    // ---- Inputs from the ports ----

    /// Client `conn` connected to `port`: what the port's controller held
    /// is gone. With `segment`, the port moves there (socketcand ports
    /// pick theirs). `listening`: its controller takes frames now, else
    /// only once it sets its filter.
    pub fn connect(
        &mut self,
        port: PortId,
        conn: ConnId,
        segment: Option<SegmentId>,
        listening: bool,
        now: WallTime,
    ) {
        self.drop_port_state(port, Cause::PortDown);
        let p = self.ports.get_mut(port);
        p.conn = Some(Conn {
            id: conn,
            stalled: false,
            filter: AcceptanceFilter::accept_all(),
            listening,
        });
        if let Some(s) = segment
            && s != p.segment
        {
            p.segment = s;
            self.repartition(now);
        }
    }

    /// Client `conn` of `port` is gone.
    pub fn disconnect(&mut self, port: PortId, conn: ConnId) {
        if self.ports.get(port).is_conn(conn) {
            self.ports.get_mut(port).conn = None;
            self.drop_port_state(port, Cause::PortDown);
        }
    }

    /// Client `conn` of `port` set its acceptance filter (and so takes
    /// frames from now on).
    pub fn set_filter(&mut self, port: PortId, conn: ConnId, filter: AcceptanceFilter) {
        if let Some(c) = self.ports.get_mut(port).conn_if(conn) {
            c.filter = filter;
            c.listening = true;
        }
    }

    /// A frame for `port`'s TX FIFO from client `conn`, whose bytes were
    /// read at wall time `read_at` (`None`: the sender was ahead of the
    /// bus, so long before). It holds a FIFO place until an
    /// [`Output::TxDone`] frees it; the driver lets no more frames in
    /// than the FIFO has places.
    pub fn submit(&mut self, port: PortId, conn: ConnId, frame: Frame, read_at: Option<WallTime>) {
        let p = self.ports.get(port);
        let refused = if !p.is_conn(conn) {
            // Sent by a connection that has since gone away.
            Some(Cause::TxFlushed)
        } else if p.transceiver == (Transceiver::Down { flush: true }) {
            Some(Cause::TxLinkDown)
        } else {
            None
        };
        if let Some(cause) = refused {
            self.drop_frames(port, cause, 1);
            self.tx_done(port, 1);
            return;
        }
        // Paced: ready when read, not when we got to it; a sender held
        // back by a full FIFO was ready as soon as a place freed. Unpaced,
        // the read stamp is wall time, unrelated to the virtual bus clock:
        // the frame is ready at once.
        let ready = if self.paced {
            let read = read_at.map_or(BusTime::ZERO, WallTime::as_paced_bus);
            read.max(p.last_end)
        } else {
            BusTime::ZERO
        };
        let pending = Pending { frame, ready, conn };
        self.ports.get_mut(port).fifo.push_back(pending);
    }

    // ---- Control commands ----

    /// Puts `rule` in force under a new id; returns the id.
    pub fn add_rule(&mut self, rule: Rule) -> u64 {
        self.faults_changed = true;
        self.rules.add(rule)
    }

    /// Whether rule `id` was in force.
    pub fn remove_rule(&mut self, id: u64) -> bool {
        self.faults_changed = true;
        self.rules.remove(id)
    }

    /// Removes every rule; returns how many there were.
    pub fn clear_rules(&mut self) -> usize {
        self.faults_changed = true;
        self.rules.clear()
    }

    /// Disconnects `port`'s transceiver; with `flush`, its FIFO and what
    /// it sends while down are dropped.
    pub fn link_down(&mut self, port: PortId, flush: bool) {
        self.abort_in_flight_of(port);
        let p = self.ports.get_mut(port);
        p.transceiver = Transceiver::Down { flush };
        if flush {
            let n = p.fifo.len();
            p.fifo.clear();
            self.drop_frames(port, Cause::TxLinkDown, n as u64);
            self.tx_done(port, n);
        }
    }

    pub fn link_up(&mut self, port: PortId) {
        self.ports.get_mut(port).transceiver = Transceiver::Up;
    }

    /// Cuts or restores `link` at wall time `now`; whether it changed.
    pub fn set_link(&mut self, link: LinkId, up: bool, now: WallTime) -> bool {
        let changed = self.links.set(link, up);
        if changed {
            self.repartition(now);
        }
        changed
    }

    /// The bridge babbles as `port` from wall time `now` on.
    pub fn babble_start(
        &mut self,
        port: PortId,
        frame: Frame,
        period_ns: Option<u64>,
        count: Option<u64>,
        now: WallTime,
    ) {
        let bus_now = self.domains[self.domain_of(port)].bus_now(self.paced, now);
        self.start_babble(port, frame, period_ns, count, bus_now);
    }

    /// Whether `port` was babbling.
    pub fn babble_stop(&mut self, port: PortId) -> bool {
        self.ports.get_mut(port).babble.take().is_some()
    }

    fn start_babble(
        &mut self,
        port: PortId,
        frame: Frame,
        period_ns: Option<u64>,
        count: Option<u64>,
        bus_now: BusTime,
    ) {
        if count == Some(0) {
            return;
        }
        self.ports.get_mut(port).babble = Some(Babbler {
            frame,
            period_ns,
            next_due: bus_now,
            remaining: count,
        });
    }

    // ---- Time ----

    /// Runs what is due at wall time `now`: held frames for their
    /// receivers, then at most one frame per domain.
    pub fn poll(&mut self, now: WallTime, rx: &mut impl Receivers) -> Poll {
        let mut wake = self.delivery(now, rx).service();
        let mut progress = false;
        for d in 0..self.domains.len() {
            match self.step(d, now, rx) {
                Step::Progress => progress = true,
                Step::Wait(w) => wake = earliest(wake, w),
            }
        }
        if progress {
            Poll::Progress
        } else {
            Poll::Idle(wake)
        }
    }

    /// Paced: when every domain's wire is free again, if each carries a
    /// frame now (`None`: some wire is free, or the bus is unpaced). A
    /// frame not yet on a wire starts no earlier than that: arbitration
    /// waits for the frame on the wire to end.
    pub fn wires_busy_until(&self) -> Option<WallTime> {
        if !self.paced {
            return None;
        }
        self.domains
            .iter()
            .map(|d| d.in_flight.as_ref().map(|f| f.end.as_paced_wall()))
            .try_fold(None, |min, end| Some(earliest(min, Some(end?))))
            .flatten()
    }

    /// The next thing for the driver to carry out.
    pub fn next_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ---- Figures ----

    /// Every figure now.
    pub fn figures(&self) -> Figures {
        Figures {
            ports: self.ports.ids().map(|p| self.port_figures(p)).collect(),
            segments: (0..self.segments)
                .map(|s| self.segment_figures(SegmentId(s)))
                .collect(),
            links: self
                .links
                .ids()
                .map(|l| LinkFigures {
                    up: self.links.is_up(l),
                    cuts: self.links.cuts(l),
                })
                .collect(),
            domains: self.domain_list(),
            faults: self.rules.entries(),
            totals: *self.metrics.totals(),
        }
    }

    /// Whether any figure changed since the last [`Bus::publish`].
    pub fn has_news(&self) -> bool {
        !(self.metrics.nothing_changed() && self.ports.nothing_changed())
            || self.topology_changed
            || self.faults_changed
    }

    /// Brings `into` (a copy of [`Bus::figures`]) up to date, copying
    /// only what changed.
    pub fn publish(&mut self, into: &mut Figures) {
        let (ports, segments) = self.metrics.take_changed();
        for p in ports.into_iter().chain(self.ports.take_changed()) {
            into.ports[p] = self.port_figures(p);
        }
        for s in segments {
            into.segments[s] = self.segment_figures(s);
        }
        into.totals = *self.metrics.totals();
        if std::mem::take(&mut self.topology_changed) {
            for l in self.links.ids() {
                into.links[l] = LinkFigures {
                    up: self.links.is_up(l),
                    cuts: self.links.cuts(l),
                };
            }
            into.domains = self.domain_list();
        }
        if std::mem::take(&mut self.faults_changed) {
            into.faults = self.rules.entries();
        }
    }

    fn port_figures(&self, p: PortId) -> PortFigures {
        let counts: PortCounts = *self.metrics.port(p);
        self.ports.get(p).figures(counts)
    }

    fn segment_figures(&self, s: SegmentId) -> SegmentFigures {
        let (clock, idle_since) = self
            .domains
            .iter()
            .find(|d| d.group.segments.contains(&s))
            .map_or((BusTime::ZERO, None), |d| (d.clock, d.idle_since));
        SegmentFigures {
            counts: *self.metrics.segment(s),
            clock,
            idle_since,
        }
    }

    fn domain_list(&self) -> Vec<Vec<SegmentId>> {
        self.domains
            .iter()
            .map(|d| d.group.segments.clone())
            .collect()
    }

    // ---- Arbitration ----

    /// Advances domain `d` by at most one frame.
    fn step(&mut self, d: usize, now: WallTime, rx: &mut impl Receivers) -> Step {
        let paced = self.paced;
        if let Some(end) = self.domains[d].in_flight.as_ref().map(|f| f.end) {
            let end = self.domains[d].wall_at(paced, end, now);
            if end > now {
                return Step::Wait(Some(end));
            }
            if let Some(f) = self.domains[d].in_flight.take() {
                self.complete(d, f, now, rx);
            }
            return Step::Progress;
        }
        if self.held.blocked > 0
            && self
                .domain_ports(d)
                .any(|p| self.ports.get(p).blocked.is_some())
        {
            // Unpaced: a full receive queue holds the bus.
            return Step::Wait(None);
        }
        let bus_now = self.domains[d].bus_now(paced, now);
        self.recover_controllers(d, bus_now);
        // Paced: the bus is free at its clock or when the first frame
        // arrived after that; only frames there by then contend. Unpaced:
        // every pending frame contends at once.
        let (first, later) = self.earliest_ready(d);
        let Some(first) = first else {
            self.go_idle(d, now);
            return Step::Wait(later.map(|t| self.domains[d].wall_at(paced, t, now)));
        };
        let start = if paced {
            self.domains[d].clock.max(first)
        } else {
            bus_now
        };
        // With the SOF window, on a bus that was idle: a frame ready within
        // one nominal bit of the first starts its SOF in the same bit and
        // contends, as controllers do. So which of two frames a hair apart
        // goes first (a node's clock tick on the virtual clock) is the
        // identifiers' call, not the hair's.
        let contend_by = if self.sof_window && first > self.domains[d].clock {
            start + self.sof_window_ns()
        } else {
            start
        };
        if paced && contend_by.as_paced_wall() > now {
            return Step::Wait(Some(contend_by.as_paced_wall()));
        }
        if !paced && first > bus_now {
            // Only a rate-limited babbler, due later.
            self.go_idle(d, now);
            return Step::Wait(Some(self.domains[d].wall_at(paced, first, now)));
        }
        let Some((port, source, ready)) = self.winner(d, contend_by) else {
            return Step::Wait(None);
        };
        let start = start.max(ready);
        if !paced {
            self.leave_idle(d, now);
        }
        let Some(f) = self.begin(d, port, source, start) else {
            return Step::Progress;
        };
        if paced && f.end.as_paced_wall() > now {
            let end = f.end.as_paced_wall();
            self.domains[d].in_flight = Some(f);
            return Step::Wait(Some(end));
        }
        self.complete(d, f, now, rx);
        Step::Progress
    }

    fn domain_ports(&self, d: usize) -> impl Iterator<Item = PortId> + '_ {
        self.domains[d].group.ports.iter().copied()
    }

    /// Controllers whose bus-off recovery is over rejoin.
    fn recover_controllers(&mut self, d: usize, bus_now: BusTime) {
        for i in 0..self.domains[d].group.ports.len() {
            let p = self.domains[d].group.ports[i];
            if self.ports.get(p).controller.recovers_by(bus_now) {
                self.ports.get_mut(p).controller.recover();
            }
        }
    }

    /// When the first candidate may contend, and when the first bus-off
    /// controller rejoins.
    fn earliest_ready(&self, d: usize) -> (Option<BusTime>, Option<BusTime>) {
        let mut first = None;
        let mut later = None;
        for p in self.domain_ports(d) {
            let port = self.ports.get(p);
            for (_, _, ready) in port.candidates() {
                first = earliest(first, Some(ready));
            }
            later = earliest(later, port.controller.bus_off_until());
        }
        (first, later)
    }

    /// The candidate ready by `start` with the lowest key, and when it was
    /// ready; on a tie (a port's babble and FIFO), the lower port, babble
    /// first.
    fn winner(&self, d: usize, start: BusTime) -> Option<(PortId, Source, BusTime)> {
        let rank =
            |(key, p, source, _): (u64, PortId, Source, BusTime)| (key, p, source == Source::Fifo);
        let mut winner: Option<(u64, PortId, Source, BusTime)> = None;
        for p in self.domain_ports(d) {
            for (source, key, ready) in self.ports.get(p).candidates() {
                if ready > start {
                    continue;
                }
                let cand = (key, p, source, ready);
                if winner.is_none_or(|w| rank(cand) < rank(w)) {
                    winner = Some(cand);
                }
            }
        }
        winner.map(|(_, p, source, ready)| (p, source, ready))
    }

    /// One nominal bit: how late a frame may be ready on an idle bus and
    /// still contend with the first.
    fn sof_window_ns(&self) -> u64 {
        1_000_000_000 / u64::from(self.timing.nominal_bps())
    }

    /// Starts a transmission from `port` at bus time `start`.
    fn begin(
        &mut self,
        d: usize,
        port: PortId,
        source: Source,
        start: BusTime,
    ) -> Option<InFlight> {
        let p = self.ports.get_mut(port);
        let (frame, pending) = p.take(source, start)?;
        p.attempts += 1;
        let attempt = p.attempts;
        let Some(frame_ns) = self.timing.frame_time_ns(&frame) else {
            // Readers filter these out already; never let one on the bus.
            self.drop_frames(port, Cause::TxFdOnClassic, 1);
            if pending.is_some() {
                self.tx_done(port, 1);
            }
            return None;
        };
        let error_by = self.error_frame_raisers(d, port, attempt, &frame);
        let bus_ns = if error_by.is_empty() {
            frame_ns
        } else {
            frame_ns + error_frame_ns(self.timing)
        };
        Some(InFlight {
            port,
            source,
            pending,
            frame,
            attempt,
            frame_ns,
            bus_ns,
            end: start + bus_ns,
            error_by,
        })
    }

    /// Receivers in domain `d` whose error-frame corruption rule hits.
    fn error_frame_raisers(
        &self,
        d: usize,
        sender: PortId,
        attempt: u64,
        frame: &Frame,
    ) -> Vec<PortId> {
        if !self.rules.raises_error_frames() {
            return Vec::new();
        }
        self.domain_ports(d)
            .filter(|&receiver| {
                let p = self.ports.get(receiver);
                receiver != sender
                    && p.link_up()
                    && p.conn.is_some()
                    && self.rules.error_frame(&Coordinates {
                        sender,
                        attempt,
                        receiver,
                        segment: p.segment,
                        frame,
                    })
            })
            .collect()
    }

    /// A transmission's last bit: account it and hand the frame over.
    fn complete(&mut self, d: usize, f: InFlight, now: WallTime, rx: &mut impl Receivers) {
        let sender = f.port;
        self.domains[d].clock = f.end;
        self.touch_domain(d);
        self.ports.get_mut(sender).last_end = f.end;
        for i in 0..self.domains[d].group.segments.len() {
            let s = self.domains[d].group.segments[i];
            self.metrics.segment_mut(s).busy_ns += f.bus_ns;
        }
        self.metrics.totals_mut().busy_ns += f.bus_ns;
        if !f.error_by.is_empty() {
            self.error_frame(d, f);
            return;
        }
        self.account_sent(d, &f);
        if f.pending.is_some() {
            // The FIFO place stays taken until the frame has been sent.
            self.tx_done(sender, 1);
        }
        for i in 0..self.domains[d].group.ports.len() {
            let r = self.domains[d].group.ports[i];
            if r != sender {
                let verdict = self.rules.verdict(&Coordinates {
                    sender,
                    attempt: f.attempt,
                    receiver: r,
                    segment: self.ports.get(r).segment,
                    frame: &f.frame,
                });
                self.delivery(now, rx).deliver(r, f.frame, verdict);
            }
        }
        for i in 0..self.domains[d].group.cut_off.len() {
            let r = self.domains[d].group.cut_off[i];
            self.drop_frames(r, Cause::LinkCut, 1);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let segment = self.ports.get(sender).segment;
        trace!(
            seq,
            port = sender.0,
            id = f.frame.id(),
            bus_time_ns = f.end.as_ns(),
            "frame on bus"
        );
        self.outputs.push_back(Output::OnBus(OnBus {
            seq,
            end: f.end,
            segment,
            port: sender,
            frame: f.frame,
        }));
    }

    /// Counts a frame that went through, on its sender and its domain.
    fn account_sent(&mut self, d: usize, f: &InFlight) {
        let bytes = f.frame.data().len() as u64;
        self.ports.get_mut(f.port).controller.sent();
        let c = self.metrics.port_mut(f.port);
        c.frames_tx += 1;
        c.bytes_tx += bytes;
        c.busy_ns += f.frame_ns;
        if f.source == Source::Babble {
            c.babble_frames += 1;
        }
        for i in 0..self.domains[d].group.segments.len() {
            let s = self.domains[d].group.segments[i];
            let seg = self.metrics.segment_mut(s);
            seg.frames += 1;
            seg.bytes += bytes;
        }
        let t = self.metrics.totals_mut();
        t.frames += 1;
        t.bytes += bytes;
    }

    /// A frame destroyed by an error frame: nobody keeps it; the sender
    /// counts a transmit error and tries again, unless it goes bus-off.
    fn error_frame(&mut self, d: usize, f: InFlight) {
        let sender = f.port;
        for i in 0..self.domains[d].group.ports.len() {
            let r = self.domains[d].group.ports[i];
            if r == sender {
                continue;
            }
            let p = self.ports.get(r);
            let cause = if !p.link_up() {
                Cause::LinkDown
            } else if p.conn.is_none() {
                Cause::PortDown
            } else if f.error_by.contains(&r) {
                Cause::Corrupt
            } else {
                Cause::ErrorFrame
            };
            self.drop_frames(r, cause, 1);
        }
        for i in 0..self.domains[d].group.segments.len() {
            let s = self.domains[d].group.segments[i];
            self.metrics.segment_mut(s).error_frames += 1;
        }
        let after = self
            .ports
            .get_mut(sender)
            .controller
            .error_frame(f.end, self.timing);
        self.metrics.port_mut(sender).retransmissions += 1;
        self.outputs.push_back(Output::ErrorFrame {
            port: sender,
            frame: f.frame,
        });
        if after == AfterError::BusOff {
            debug!(port = sender.0, "bus-off");
            // The frame that took it there is given up.
            if f.pending.is_some() {
                self.drop_frames(sender, Cause::TxBusOff, 1);
                self.tx_done(sender, 1);
            }
            return;
        }
        if let Some(pending) = f.pending {
            self.requeue(sender, pending);
        }
    }

    // ---- Ports, topology ----

    /// A port's client changed: what its controller held is gone. Frames
    /// in the TX FIFO are flushed; frames on their way to the old client
    /// count as `rx_cause`.
    fn drop_port_state(&mut self, port: PortId, rx_cause: Cause) {
        let p = self.ports.get_mut(port);
        let flushed = p.fifo.len();
        p.fifo.clear();
        let lost = self.held.forget(p);
        self.drop_frames(port, Cause::TxFlushed, flushed as u64);
        self.drop_frames(port, rx_cause, lost);
        self.tx_done(port, flushed);
    }

    fn abort_in_flight_of(&mut self, port: PortId) {
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
        if let Some(pending) = f.pending
            && self.requeue(f.port, pending)
        {
            self.metrics.port_mut(f.port).retransmissions += 1;
        }
    }

    /// Puts a frame back at the head of its FIFO, if its client is still
    /// there; whether it did.
    fn requeue(&mut self, port: PortId, pending: Pending) -> bool {
        if self.ports.get(port).is_conn(pending.conn) {
            self.ports.get_mut(port).fifo.push_front(pending);
            true
        } else {
            self.drop_frames(port, Cause::TxFlushed, 1);
            self.tx_done(port, 1);
            false
        }
    }

    /// Regroups segments into domains by the links that are up.
    fn repartition(&mut self, now: WallTime) {
        let groups = self.links.groups(&self.ports.segments());
        let old = std::mem::take(&mut self.domains);
        let (domains, aborted) = regroup(old, groups, self.paced, now);
        self.domains = domains;
        for f in aborted {
            self.abort(f);
        }
        for s in 0..self.segments {
            self.metrics.touch_segment(SegmentId(s));
        }
        self.topology_changed = true;
    }

    fn domain_of(&self, port: PortId) -> usize {
        let s = self.ports.get(port).segment;
        self.domains
            .iter()
            .position(|d| d.group.segments.contains(&s))
            .unwrap_or(0)
    }

    fn go_idle(&mut self, d: usize, now: WallTime) {
        if self.domains[d].go_idle(self.paced, now) {
            self.touch_domain(d);
        }
    }

    fn leave_idle(&mut self, d: usize, now: WallTime) {
        if self.domains[d].leave_idle(self.paced, now) {
            self.touch_domain(d);
        }
    }

    /// Domain `d`'s clock changed: its segments' figures too.
    fn touch_domain(&mut self, d: usize) {
        for i in 0..self.domains[d].group.segments.len() {
            self.metrics
                .touch_segment(self.domains[d].group.segments[i]);
        }
    }

    /// The receive side, at wall time `now`.
    fn delivery<'a, R: Receivers>(&'a mut self, now: WallTime, rx: &'a mut R) -> Delivery<'a, R> {
        Delivery {
            ports: &mut self.ports,
            metrics: &mut self.metrics,
            held: &mut self.held,
            paced: self.paced,
            stall_ns: self.stall_ns,
            now,
            rx,
        }
    }

    /// Counts `n` frames dropped at `port` for `cause`.
    fn drop_frames(&mut self, port: PortId, cause: Cause, n: u64) {
        let segment = self.ports.get(port).segment;
        self.metrics.drop_frames(port, segment, cause, n);
    }

    fn tx_done(&mut self, port: PortId, slots: usize) {
        if slots > 0 {
            self.outputs.push_back(Output::TxDone { port, slots });
        }
    }
}

#[cfg(test)]
mod tests;
