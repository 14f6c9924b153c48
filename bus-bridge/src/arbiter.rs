//! The arbiter task: the thin loop around the [`Bus`]. It takes in what
//! the port tasks and the control API send, feeds the bus, carries out
//! what the bus decides (frames into receive queues, freed FIFO places,
//! capture, events, published figures) and sleeps until the bus's next
//! wake-up, a message, or a receive queue making room.
//!
//! One task for every arbitration domain, because the bus it drives is
//! one owner of them all (see [`crate::bus`]): a link cut just regroups
//! ports between two frames.

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
use crate::rxqueue::{PushError, RxQueue};
use crate::shutdown::wait_shutdown;
use crate::stats::Shared;

/// Frames the arbiter puts on the buses before it lets other tasks run.
const YIELD_EVERY: u32 = 64;

/// What port tasks tell the arbiter.
pub(crate) enum ToArbiter {
    /// A client connected; frames for it go into `rx`. `segment`: the
    /// port moves to that segment (socketcand ports pick theirs).
    Connected {
        port: PortId,
        conn: ConnId,
        rx: Arc<RxQueue>,
        segment: Option<SegmentId>,
    },
    /// That client is gone.
    Disconnected { port: PortId, conn: ConnId },
    /// That client set its acceptance filter.
    Filter {
        port: PortId,
        conn: ConnId,
        filter: AcceptanceFilter,
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
}

/// Each port's current receive queue.
struct Queues(IdVec<PortId, Option<(ConnId, Arc<RxQueue>)>>);

impl Receivers for Queues {
    fn push(&mut self, port: PortId, conn: ConnId, frame: Frame) -> Push {
        match &self.0[port] {
            Some((c, rx)) if *c == conn => match rx.push(frame) {
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

pub(crate) struct Arbiter {
    bus: Bus,
    queues: Queues,
    w: Wiring,
}

impl Arbiter {
    pub fn new(bus: Bus, wiring: Wiring) -> Arbiter {
        let queues = Queues(wiring.tx_slots.iter().map(|_| None).collect());
        Arbiter {
            bus,
            queues,
            w: wiring,
        }
    }

    pub async fn run(mut self) {
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
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.w.shutdown) => return,
                Some(cmd) = self.w.commands.recv() => self.command(cmd),
                msg = self.w.inbox.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = self.w.room.notified() => {}
                _ = sleep_opt(deadline) => {}
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
            } => {
                self.queues.0[port] = Some((conn, rx));
                let now = self.w.shared.wall_now();
                self.bus.connect(port, conn, segment, now);
            }
            ToArbiter::Disconnected { port, conn } => {
                if self.queues.0[port]
                    .as_ref()
                    .is_some_and(|(c, _)| *c == conn)
                {
                    self.queues.0[port] = None;
                }
                self.bus.disconnect(port, conn);
            }
            ToArbiter::Filter { port, conn, filter } => self.bus.set_filter(port, conn, filter),
            ToArbiter::Frame {
                port,
                conn,
                frame,
                read_at,
            } => self.bus.submit(port, conn, frame, read_at),
        }
    }

    /// Runs a control command.
    fn command(&mut self, cmd: Command) {
        let now = self.w.shared.wall_now();
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
        }
    }

    /// Publishes the command's effect, then replies: the caller sees it.
    fn answer<T>(&mut self, reply: oneshot::Sender<T>, value: T) {
        self.carry_out();
        // The asker may have given up; that is fine.
        let _ = reply.send(value);
    }

    /// Publishes what changed, then carries out the bus's outputs: the
    /// figures are out before the events that report the same frames.
    fn carry_out(&mut self) {
        if self.bus.has_news() {
            self.bus.publish(&mut self.w.shared.bus());
        }
        while let Some(out) = self.bus.next_output() {
            match out {
                Output::TxDone { port, slots } => self.w.tx_slots[port].add_permits(slots),
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

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}
