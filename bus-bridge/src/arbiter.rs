//! The arbiter task: the thin loop around the [`Bus`]. It takes in what
//! the port tasks and the control API send, feeds the bus, carries out
//! what the bus decides (frames into receive queues, freed FIFO places,
//! capture, events, published figures) and sleeps until the bus's next
//! wake-up, a message, or a receive queue making room.
//!
//! One task for every arbitration domain, because the bus it drives is
//! one owner of them all (see [`crate::bus`]): a link cut just regroups
//! ports between two frames.
//!
//! On the virtual clock the same task is the fleet's time authority: it
//! keeps the nodes' clocks in step ([`crate::vclock`]), polls the bus at
//! each of its events up to the frontier, hands frames to held nodes
//! stamped with their delivery times, and grants every stopped node its
//! next stretch. It waits on messages only, never on the host's clock
//! (unless host clients pace it). Timed host clients (master, supervisor)
//! are members of the same synchronisation: their frames come stamped,
//! and their freed TX places go back to them stamped, as events of theirs.

use std::sync::Arc;

use proto::Frame;
use proto::filter::AcceptanceFilter;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::debug;

use crate::bus::{Bus, Output, Poll, Push, Receivers};
use crate::capture::Sink;
use crate::clock::WallTime;
use crate::event::BusEvent;
use crate::faults::Rule;
use crate::ids::{ConnId, IdVec, LinkId, PortId, SegmentId};
use crate::rxqueue::{LinkFrame, PushError, RxQueue};
use crate::shutdown::wait_shutdown;
use crate::stats::Shared;
use crate::vclock::Sync;

/// Frames the arbiter puts on the buses before it lets other tasks run.
const YIELD_EVERY: u32 = 64;
/// On the virtual clock: bus events the arbiter runs through before it
/// looks at its messages (and shutdown) again. Where no member bounds
/// time (a babbler and no nodes), the bus would otherwise run on forever.
const EVENTS_PER_ADVANCE: u32 = 4096;

/// What port tasks tell the arbiter.
pub(crate) enum ToArbiter {
    /// A client connected; frames for it go into `rx`. `segment`: the
    /// port moves to that segment (socketcand ports pick theirs).
    Connected {
        port: PortId,
        conn: ConnId,
        rx: Arc<RxQueue>,
        segment: Option<SegmentId>,
        /// A node whose clock connected with it (the virtual clock): it
        /// takes frames only once it sets its filter.
        clocked: bool,
        /// A timed host client (the virtual clock): it keeps time in-band.
        timed: bool,
    },
    /// That client is gone.
    Disconnected { port: PortId, conn: ConnId },
    /// That client set its acceptance filter.
    Filter {
        port: PortId,
        conn: ConnId,
        filter: AcceptanceFilter,
    },
    /// A node stopped, as its plugin reports (the virtual clock); every
    /// frame it sent before came first.
    Clock {
        port: PortId,
        conn: ConnId,
        report: proto::clock::Report,
    },
    /// A timed host client sent `frame` at virtual time `at` (the virtual
    /// clock).
    HostFrame {
        port: PortId,
        conn: ConnId,
        frame: Frame,
        at: Option<u64>,
    },
    /// A timed host client has done everything due before `at`; its next
    /// timer is `wake` (`proto::link::NEVER`: none).
    HostIdle {
        port: PortId,
        conn: ConnId,
        at: u64,
        wake: u64,
    },
    /// A frame for the port's TX FIFO from a node on the virtual clock: it
    /// is on the bus from the node's next report.
    TimedFrame {
        port: PortId,
        conn: ConnId,
        frame: Frame,
    },
    /// A frame for the port's TX FIFO, whose bytes were read at wall time
    /// `read_at` (`None`: the sender was ahead of the bus, so long
    /// before). The reader took one of the port's TX places (and forgot
    /// the permit); the arbiter gives it back once the FIFO lets go.
    Frame {
        port: PortId,
        conn: ConnId,
        frame: Frame,
        read_at: Option<WallTime>,
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
        port: PortId,
        flush: bool,
        reply: oneshot::Sender<()>,
    },
    LinkUp {
        port: PortId,
        reply: oneshot::Sender<()>,
    },
    SetLink {
        link: LinkId,
        up: bool,
        reply: oneshot::Sender<bool>,
    },
    BabbleStart {
        port: PortId,
        frame: Frame,
        period_ns: Option<u64>,
        count: Option<u64>,
        reply: oneshot::Sender<()>,
    },
    BabbleStop {
        port: PortId,
        reply: oneshot::Sender<bool>,
    },
    /// The run is over: the virtual clock stops where it is.
    HoldTime {
        reply: oneshot::Sender<()>,
    },
    /// Hold the fleet's time at `at` (never before the frontier): the
    /// reply comes once every member has reached it, with that time; at
    /// once with `None` on the wall clock. Until [`Command::Resume`].
    PauseAt {
        at: WallTime,
        /// A pause let go once this one is in place (a pause moved on).
        releasing: Option<WallTime>,
        reply: oneshot::Sender<Option<WallTime>>,
    },
    /// Lets the fleet's time go on past a pause.
    Resume {
        at: WallTime,
        reply: oneshot::Sender<()>,
    },
    /// Reply once a node's clock or a timed host client has joined on
    /// `port` (at once if it has, or on the wall clock).
    AwaitClock {
        port: PortId,
        reply: oneshot::Sender<()>,
    },
    /// Reset the node on `port` at virtual time `at` (`None`: now); false
    /// if the bus is not on the virtual clock or the port has no clock.
    ResetNode {
        port: PortId,
        at: Option<WallTime>,
        reply: oneshot::Sender<bool>,
    },
}

/// Each port's current receive queue.
struct Queues {
    rx: IdVec<PortId, Option<(ConnId, Arc<RxQueue>)>>,
    /// On the virtual clock: what stamps deliveries.
    stamp: Option<Stamp>,
    /// The frame delivered last, encoded: the bus hands one frame to each
    /// of its receivers in turn, and they share its encoding.
    last: Option<Arc<LinkFrame>>,
}

/// Deliveries on the virtual clock: each is stamped with the time of the
/// poll that made it, on its receiver's clock, and noted.
struct Stamp {
    now: WallTime,
    /// Each node's time 0 on the fleet's clock, once known.
    offsets: IdVec<PortId, Option<WallTime>>,
    /// Nodes handed a frame in this poll.
    handed: Vec<PortId>,
}

impl Queues {
    /// `frame` encoded: the last frame's encoding again if it is the same
    /// frame (its next receiver), else a new one.
    fn link(&mut self, frame: Frame) -> Arc<LinkFrame> {
        match &self.last {
            Some(l) if l.frame == frame => l.clone(),
            _ => self.last.insert(Arc::new(LinkFrame::new(frame))).clone(),
        }
    }
}

impl Receivers for Queues {
    fn push(&mut self, port: PortId, conn: ConnId, frame: Frame) -> Push {
        let at = self.stamp.as_mut().and_then(|s| {
            let offset = s.offsets[port]?;
            s.handed.push(port);
            Some(s.now.saturating_since(offset))
        });
        let link = self.link(frame);
        match &self.rx[port] {
            Some((c, rx)) if *c == conn => match rx.push_at(link, at) {
                Ok(()) => Push::Taken,
                Err(PushError::Full) => Push::Full,
                Err(PushError::Closed) => Push::Closed,
            },
            _ => Push::Closed,
        }
    }
}

/// The channels and handles the arbiter works with.
pub(crate) struct Wiring {
    pub inbox: mpsc::Receiver<ToArbiter>,
    pub commands: mpsc::Receiver<Command>,
    /// Some receive queue made room.
    pub room: Arc<Notify>,
    pub shutdown: watch::Receiver<bool>,
    pub shared: Arc<Shared>,
    pub events: broadcast::Sender<BusEvent>,
    pub capture: Option<Sink>,
    /// Each port's TX FIFO places.
    pub tx_slots: IdVec<PortId, Arc<Semaphore>>,
}

/// The virtual clock, when it drives the bus.
pub(crate) struct Virtual {
    sync: Sync,
    /// Where the bus was last polled.
    at: WallTime,
    /// The bus's next event after that.
    next: Option<WallTime>,
    /// Host clients pace the fleet: no grant past the host's clock.
    pace_with_wall: bool,
    /// What each node sent since its last report: it takes effect at the
    /// node's next report, the point of its clock where it was sent.
    sent: IdVec<PortId, Vec<Sent>>,
    /// Filter changes waiting for their time: (from when, port, client,
    /// filter), in time order.
    filters: std::collections::VecDeque<(WallTime, PortId, ConnId, AcceptanceFilter)>,
    /// The TX FIFO places a timed host client starts with, per port.
    host_places: IdVec<PortId, u32>,
    /// The run is over ([`Command::HoldTime`]): the bus is polled no more,
    /// host clients are granted nothing, nodes run on unheld.
    held: bool,
    /// Resets asked for and not yet landed: (at, node). The bus's time
    /// holds at the earliest until it has landed ([`Sync::reset`]).
    resets: std::collections::BTreeSet<(WallTime, PortId)>,
    /// Pauses: the time no grant passes, with who waits for it to be
    /// reached, and how many asked for it.
    pauses: std::collections::BTreeMap<WallTime, Pause>,
    /// Who waits for a node's clock to join ([`Command::AwaitClock`]).
    awaiting_clock: Vec<(PortId, oneshot::Sender<()>)>,
}

/// A pause of the fleet's time ([`Command::PauseAt`]).
#[derive(Default)]
struct Pause {
    holders: usize,
    waiting: Vec<oneshot::Sender<Option<WallTime>>>,
}

/// Something a node on the virtual clock sent.
enum Sent {
    Frame(ConnId, Frame),
    Filter(ConnId, AcceptanceFilter),
}

impl Virtual {
    /// `lookahead_ns`: the shortest frame; `from_start`: nodes that power
    /// on with the bridge (time waits for them); `host_places`: each
    /// port's TX FIFO places (one per port).
    pub fn new(
        lookahead_ns: u64,
        from_start: &[PortId],
        pace_with_wall: bool,
        host_places: IdVec<PortId, u32>,
        held_at_start: Option<WallTime>,
    ) -> Virtual {
        let mut sync = Sync::new(lookahead_ns);
        for &p in from_start {
            sync.join(p);
        }
        let mut pauses = std::collections::BTreeMap::new();
        if let Some(at) = held_at_start {
            pauses.insert(
                at,
                Pause {
                    holders: 1,
                    waiting: Vec::new(),
                },
            );
        }
        Virtual {
            sync,
            at: WallTime::ZERO,
            next: None,
            pace_with_wall,
            sent: host_places.iter().map(|_| Vec::new()).collect(),
            filters: std::collections::VecDeque::new(),
            host_places,
            held: false,
            resets: std::collections::BTreeSet::new(),
            pauses,
            awaiting_clock: Vec::new(),
        }
    }
}

pub(crate) struct Arbiter {
    bus: Bus,
    queues: Queues,
    w: Wiring,
    vt: Option<Virtual>,
}

impl Arbiter {
    /// An arbiter on the wall clock, or with `vt` on the virtual one.
    pub fn new(bus: Bus, wiring: Wiring, vt: Option<Virtual>) -> Arbiter {
        let queues = Queues {
            rx: wiring.tx_slots.iter().map(|_| None).collect(),
            stamp: vt.as_ref().map(|_| Stamp {
                now: WallTime::ZERO,
                offsets: wiring.tx_slots.iter().map(|_| None).collect(),
                handed: Vec::new(),
            }),
            last: None,
        };
        Arbiter {
            bus,
            queues,
            w: wiring,
            vt,
        }
    }

    /// The driver's time: the host's, or the virtual clock's.
    fn now(&self) -> WallTime {
        match &self.vt {
            Some(v) => v.at,
            None => self.w.shared.wall_now(),
        }
    }

    pub async fn run(self) {
        if self.vt.is_some() {
            self.run_virtual().await
        } else {
            self.run_wall().await
        }
    }

    async fn run_wall(mut self) {
        let mut budget = YIELD_EVERY;
        loop {
            // Take in everything already sent, so that frames queued while
            // the bus was busy all contend for it.
            if !self.drain() {
                return;
            }
            let now = self.w.shared.wall_now();
            let poll = self.bus.poll(now, &mut self.queues);
            self.carry_out();
            let wake = match poll {
                Poll::Progress => {
                    budget -= 1;
                    if budget == 0 {
                        budget = YIELD_EVERY;
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
                Poll::Idle(wake) => wake,
            };
            let deadline = wake.map(|t| self.w.shared.instant_at(t));
            if !self.wait(deadline).await {
                return;
            }
        }
    }

    /// Handles every message already waiting; `false` once the ports are
    /// all gone.
    fn drain(&mut self) -> bool {
        while let Ok(cmd) = self.w.commands.try_recv() {
            self.command(cmd);
        }
        // What the messages changed is carried out after the next poll.
        loop {
            match self.w.inbox.try_recv() {
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
                clocked,
                timed,
            } => self.on_connect(port, conn, rx, segment, clocked, timed),
            ToArbiter::Disconnected { port, conn } => {
                if self.queues.rx[port]
                    .as_ref()
                    .is_some_and(|(c, _)| *c == conn)
                {
                    self.queues.rx[port] = None;
                    if let Some(v) = &mut self.vt {
                        v.sync.leave(port);
                        v.sent[port].clear();
                    }
                }
                self.bus.disconnect(port, conn);
            }
            ToArbiter::Filter { port, conn, filter } => match &mut self.vt {
                Some(v) if v.sync.is_node(port) => v.sent[port].push(Sent::Filter(conn, filter)),
                _ => self.bus.set_filter(port, conn, filter),
            },
            ToArbiter::HostFrame {
                port,
                conn,
                frame,
                at,
            } => {
                // Ready 1 ns after it was sent, like a node's; never before
                // the frontier (a client woken from outside the bus sends
                // late, at the frontier).
                let ready = self.vt.as_ref().map(|v| {
                    let at = WallTime::from_ns(at.unwrap_or(0));
                    Sync::ready_after(at.max(v.sync.now()))
                });
                self.bus.submit(port, conn, frame, ready)
            }
            ToArbiter::HostIdle {
                port,
                conn,
                at,
                wake,
            } => {
                if let (true, Some(v)) = (self.is_current(port, conn), &mut self.vt) {
                    let wake = (wake != proto::link::NEVER).then(|| WallTime::from_ns(wake));
                    if let Err(anomaly) = v.sync.host_idle(port, WallTime::from_ns(at), wake) {
                        debug!(port = port.0, ?anomaly, "idle record not taken");
                    }
                }
            }
            ToArbiter::Frame {
                port,
                conn,
                frame,
                read_at,
            } => {
                // On the virtual clock a client without one sends now.
                let read_at = match &self.vt {
                    Some(v) => Some(v.sync.now()),
                    None => read_at,
                };
                self.bus.submit(port, conn, frame, read_at)
            }
            ToArbiter::Clock { port, conn, report } => self.on_report(port, conn, report),
            ToArbiter::TimedFrame { port, conn, frame } => match &mut self.vt {
                Some(v) => v.sent[port].push(Sent::Frame(conn, frame)),
                None => self.bus.submit(port, conn, frame, None),
            },
        }
    }

    /// A client connected. On the virtual clock a node with a clock joins
    /// the synchronisation at its first report; a timed host client at
    /// once, at the frontier, with its FIFO places and its first grant.
    fn on_connect(
        &mut self,
        port: PortId,
        conn: ConnId,
        rx: Arc<RxQueue>,
        segment: Option<SegmentId>,
        clocked: bool,
        timed: bool,
    ) {
        let now = self.now();
        self.bus.connect(port, conn, segment, !clocked, now);
        if let Some(v) = &mut self.vt {
            v.sent[port].clear();
            if timed || clocked {
                for (_, w) in v.awaiting_clock.extract_if(.., |(p, _)| *p == port) {
                    let _ = w.send(());
                }
            }
            let offset = if timed {
                let at = v.sync.join_host(port);
                rx.push_tx_free(v.host_places[port], at.as_ns());
                rx.set_grant(at.as_ns());
                Some(WallTime::ZERO)
            } else {
                if clocked {
                    v.sync.join(port);
                }
                None
            };
            if let Some(s) = &mut self.queues.stamp {
                s.offsets[port] = offset;
            }
        }
        self.queues.rx[port] = Some((conn, rx));
    }

    fn is_current(&self, port: PortId, conn: ConnId) -> bool {
        self.queues.rx[port]
            .as_ref()
            .is_some_and(|(c, _)| *c == conn)
    }

    /// A node stopped: take its report, learn its time 0, and put what it
    /// sent before on the bus at this point of its clock.
    fn on_report(&mut self, port: PortId, conn: ConnId, report: proto::clock::Report) {
        if !self.is_current(port, conn) {
            return;
        }
        let Some(v) = &mut self.vt else { return };
        if v.held {
            v.sent[port].clear();
            if let Some((_, rx)) = &self.queues.rx[port] {
                rx.set_grant(proto::clock::NEVER);
            }
            return;
        }
        let at = match v.sync.report(port, report) {
            Ok(at) => at,
            Err((anomaly, at)) => {
                debug!(port = port.0, ?anomaly, "clock report taken as it could be");
                match at {
                    Some(at) => at,
                    None => return,
                }
            }
        };
        if let Some(s) = &mut self.queues.stamp {
            s.offsets[port] = v.sync.offset(port);
        }
        let ready = Sync::ready_after(at);
        for sent in std::mem::take(&mut v.sent[port]) {
            match sent {
                Sent::Frame(conn, frame) => self.bus.submit(port, conn, frame, Some(ready)),
                Sent::Filter(conn, filter) => v.filters.push_back((ready, port, conn, filter)),
            }
        }
        self.land_resets();
    }

    /// Runs a control command.
    fn command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::AddFault { rule, reply } => {
                let id = self.bus.add_rule(rule);
                self.answer(reply, id);
            }
            Command::RemoveFault { id, reply } => {
                let was = self.bus.remove_rule(id);
                self.answer(reply, was);
            }
            Command::ClearFaults { reply } => {
                let n = self.bus.clear_rules();
                self.answer(reply, n);
            }
            Command::LinkDown { port, flush, reply } => {
                self.bus.link_down(port, flush);
                self.answer(reply, ());
            }
            Command::LinkUp { port, reply } => {
                self.bus.link_up(port);
                self.answer(reply, ());
            }
            Command::SetLink { link, up, reply } => {
                let changed = self.bus.set_link(link, up, now);
                if changed {
                    debug!(link = %self.w.shared.links[link].name, up, "link changed");
                }
                self.answer(reply, changed);
            }
            Command::BabbleStart {
                port,
                frame,
                period_ns,
                count,
                reply,
            } => {
                self.bus.babble_start(port, frame, period_ns, count, now);
                self.answer(reply, ());
            }
            Command::BabbleStop { port, reply } => {
                let was = self.bus.babble_stop(port);
                self.answer(reply, was);
            }
            Command::HoldTime { reply } => {
                self.hold_time();
                self.answer(reply, ());
            }
            Command::PauseAt {
                at,
                releasing,
                reply,
            } => {
                self.pause_at(at, reply);
                if let Some(was) = releasing {
                    self.release_pause(was);
                }
            }
            Command::Resume { at, reply } => {
                self.release_pause(at);
                self.answer(reply, ());
            }
            Command::AwaitClock { port, reply } => match &mut self.vt {
                Some(v) if !v.sync.is_member(port) => v.awaiting_clock.push((port, reply)),
                _ => self.answer(reply, ()),
            },
            Command::ResetNode { port, at, reply } => {
                let taken = self.ask_reset(port, at);
                self.answer(reply, taken);
            }
        }
    }

    /// Holds the fleet's time at `at` (no earlier than the frontier); the
    /// reply waits until it is reached ([`Arbiter::reply_pauses`]).
    fn pause_at(&mut self, at: WallTime, reply: oneshot::Sender<Option<WallTime>>) {
        let Some(v) = &mut self.vt else {
            self.answer(reply, None);
            return;
        };
        let at = at.max(v.sync.now());
        let p = v.pauses.entry(at).or_default();
        p.holders += 1;
        p.waiting.push(reply);
        self.reply_pauses();
    }

    /// Lets go of one hold of the pause at `at`.
    fn release_pause(&mut self, at: WallTime) {
        if let Some(v) = &mut self.vt
            && let Some(p) = v.pauses.get_mut(&at)
        {
            p.holders -= 1;
            if p.holders == 0 {
                v.pauses.remove(&at);
                v.sync.call_hosts();
            }
        }
    }

    /// Tells who waits for the first pause once the fleet has reached it.
    fn reply_pauses(&mut self) {
        let Some(v) = &mut self.vt else { return };
        let Some((&at, p)) = v.pauses.iter_mut().next() else {
            return;
        };
        if p.waiting.is_empty() || !v.sync.reached(at) {
            return;
        }
        for w in p.waiting.drain(..) {
            // The asker may have given up; that is fine.
            let _ = w.send(Some(at));
        }
    }

    /// A reset of the node on `port` at `at` (no earlier than the bus's
    /// time now): it lands at the node's first stop from then on, and goes
    /// to it with its next grant.
    fn ask_reset(&mut self, port: PortId, at: Option<WallTime>) -> bool {
        let Some(v) = &mut self.vt else { return false };
        if !v.sync.is_node(port) {
            return false;
        }
        let now = v.sync.now();
        v.resets.insert((at.map_or(now, |a| a.max(now)), port));
        self.land_resets();
        true
    }

    /// The first pause's time, which no grant may pass.
    fn first_pause(&self) -> Option<WallTime> {
        self.vt.as_ref()?.pauses.keys().next().copied()
    }

    /// Lands every reset that is due: the node's next grant asks its QEMU
    /// to reset where it stopped. Returns the earliest still pending, which
    /// no grant may pass.
    fn land_resets(&mut self) -> Option<WallTime> {
        let v = self.vt.as_mut()?;
        let pending: Vec<_> = v.resets.iter().copied().collect();
        for (asked, port) in pending {
            if !v.sync.is_node(port) {
                // Its QEMU is gone: nothing to reset.
                v.resets.remove(&(asked, port));
                continue;
            }
            let Some(at) = v.sync.reset(port, asked) else {
                continue;
            };
            v.resets.remove(&(asked, port));
            v.sent[port].clear();
            if let Some(s) = &mut self.queues.stamp {
                s.offsets[port] = v.sync.offset(port);
            }
            if let Some((_, rx)) = &self.queues.rx[port] {
                rx.set_reset();
            }
            debug!(port = port.0, at = at.as_ns(), "reset lands");
        }
        v.resets.first().map(|r| r.0)
    }

    /// Stops the virtual clock where it is, for a run's end: what happens
    /// next does not count. Nodes are let go without end (each new report
    /// gets the same answer, and what they send is dropped), so their
    /// QEMUs stop as usual; host clients are granted nothing more.
    fn hold_time(&mut self) {
        let Some(v) = &mut self.vt else { return };
        v.held = true;
        for (port, q) in self.queues.rx.enumerate() {
            if let Some((_, rx)) = q
                && v.sync.is_node(port)
                && v.sync.is_stopped(port)
            {
                v.sent[port].clear();
                rx.set_grant(proto::clock::NEVER);
            }
        }
    }

    /// Publishes the command's effect, then replies: the caller sees it.
    fn answer<T>(&mut self, reply: oneshot::Sender<T>, value: T) {
        self.carry_out();
        // The asker may have given up; that is fine.
        let _ = reply.send(value);
    }

    /// A timed host client counts its own FIFO places: freed ones go to it
    /// stamped with the bus's time, as an event of its own.
    fn tx_free_to_host(&mut self, port: PortId, slots: usize) {
        let Some(v) = &mut self.vt else { return };
        if !v.sync.is_host(port) {
            return;
        }
        let Some((_, rx)) = &self.queues.rx[port] else {
            return;
        };
        let at = v.at;
        rx.push_tx_free(u32::try_from(slots).unwrap_or(u32::MAX), at.as_ns());
        v.sync.handed(port, at);
    }

    /// Publishes what changed, then carries out the bus's outputs: the
    /// figures are out before the events that report the same frames.
    fn carry_out(&mut self) {
        if self.bus.has_news() {
            self.bus.publish(&mut self.w.shared.bus());
        }
        while let Some(out) = self.bus.next_output() {
            match out {
                Output::TxDone { port, slots } => {
                    self.w.tx_slots[port].add_permits(slots);
                    self.tx_free_to_host(port, slots);
                }
                Output::ErrorFrame { .. } => {}
                Output::OnBus(f) => {
                    if let Some(c) = &self.w.capture {
                        c.offer(f.end, f.segment, f.frame);
                    }
                    // Nobody listening is fine; a lagging subscriber loses
                    // old events.
                    let _ = self.w.events.send(BusEvent {
                        seq: f.seq,
                        bus_time_ns: f.end.as_ns(),
                        segment: f.segment.0,
                        port: f.port.0,
                        frame: f.frame,
                    });
                }
            }
        }
    }
}

impl Arbiter {
    /// Waits for the next thing to do (a command, a message, room in a
    /// queue, or `deadline`) and does it; false once the arbiter must stop.
    async fn wait(&mut self, deadline: Option<Instant>) -> bool {
        tokio::select! {
            biased;
            _ = wait_shutdown(&mut self.w.shutdown) => return false,
            Some(cmd) = self.w.commands.recv() => self.command(cmd),
            msg = self.w.inbox.recv() => match msg {
                Some(msg) => self.handle(msg),
                None => return false,
            },
            _ = self.w.room.notified() => {}
            _ = sleep_opt(deadline) => {}
        }
        true
    }

    /// The virtual clock's loop: messages in, then the bus up to the
    /// frontier and the grants; it waits on messages only (and, paced by
    /// the host, on the host's clock).
    async fn run_virtual(mut self) {
        loop {
            if !self.drain() {
                return;
            }
            let wake = self.advance();
            if wake.is_some_and(|w| w <= Instant::now()) {
                // More to do at once: let the other tasks run first.
                tokio::task::yield_now().await;
            }
            if !self.wait(wake).await {
                return;
            }
        }
    }

    /// Polls the bus at each of its events up to the frontier, then grants
    /// every stopped node what it may run. Returns when to look again if
    /// the host's clock holds nodes back, or now if it stopped short (see
    /// [`EVENTS_PER_ADVANCE`]).
    fn advance(&mut self) -> Option<Instant> {
        let Some(v) = &mut self.vt else { return None };
        if v.held {
            return None;
        }
        let pace = v.pace_with_wall.then(|| self.w.shared.host_now());
        // No grant passes a reset still to land (nor the host's clock when
        // it paces the fleet).
        let ceiling = crate::clock::earliest(pace, self.land_resets());
        let ceiling = crate::clock::earliest(ceiling, self.first_pause());
        let mut budget = EVENTS_PER_ADVANCE;
        loop {
            budget -= 1;
            if budget == 0 {
                self.publish_time();
                return Some(Instant::now());
            }
            let Some(v) = &mut self.vt else { return None };
            let at = v.at;
            while v.filters.front().is_some_and(|f| f.0 <= at) {
                if let Some((_, port, conn, filter)) = v.filters.pop_front() {
                    self.bus.set_filter(port, conn, filter);
                }
            }
            if let Some(s) = &mut self.queues.stamp {
                s.now = at;
            }
            let poll = self.bus.poll(at, &mut self.queues);
            self.carry_out();
            let Some(v) = &mut self.vt else { return None };
            if let Some(s) = &mut self.queues.stamp {
                for p in s.handed.drain(..) {
                    v.sync.handed(p, at);
                }
            }
            match poll {
                Poll::Progress => continue,
                Poll::Idle(next) => {
                    v.next = next;
                    // Where no member bounds time (all asleep without a
                    // timer), the bus runs on to its own next event.
                    let bound = crate::clock::earliest(pace.or(next), ceiling);
                    let frontier = v.sync.frontier(bound);
                    match next {
                        Some(n) if n <= frontier => v.at = n.max(at),
                        _ => break,
                    }
                }
            }
        }
        self.publish_time();
        // Sleepers whose reset time the frontier has reached; once landed,
        // a reset bounds the grants no more.
        let ceiling = crate::clock::earliest(pace, self.land_resets());
        let ceiling = crate::clock::earliest(ceiling, self.first_pause());
        self.reply_pauses();
        let v = self.vt.as_mut()?;
        let wires_busy = self.bus.wires_busy_until();
        for (port, until) in v.sync.grants(v.next, wires_busy, ceiling) {
            if let Some((_, rx)) = &self.queues.rx[port] {
                rx.set_grant(until.0);
            }
        }
        // Paced by the host: look again in a millisecond while anyone waits.
        (pace.is_some() && v.sync.any_stopped())
            .then(|| Instant::now() + std::time::Duration::from_millis(1))
    }
}

impl Arbiter {
    /// The fleet's time for readers: the frontier (the bus may have been
    /// idle).
    fn publish_time(&self) {
        if let (Some(v), Some(virt)) = (&self.vt, &self.w.shared.virtual_now) {
            virt.store(v.sync.now().as_ns(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_of_one_frame_share_its_encoding() {
        let mut q = Queues {
            rx: IdVec::from_vec(Vec::new()),
            stamp: None,
            last: None,
        };
        let f = Frame::new(0x123, 0, &[1, 0, 2]).unwrap();
        let g = Frame::new(0x124, 0, &[1, 0, 2]).unwrap();
        let a = q.link(f);
        assert!(Arc::ptr_eq(&a, &q.link(f)), "the next receiver shares it");
        let mut want = [0u8; proto::link::MAX_ENCODED];
        let n = proto::link::encode(&f, &mut want);
        assert_eq!(a.bytes(), &want[..n]);
        // Another frame gets its own; the first frame again, a fresh one
        // with the same bytes.
        let b = q.link(g);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_ne!(a.bytes(), b.bytes());
        let c = q.link(f);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(a.bytes(), c.bytes());
    }
}
