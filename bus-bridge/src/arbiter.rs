//! One arbiter per arbitration domain (a set of segments that share one
//! medium). It owns every port's TX FIFO in the domain, picks the frame that
//! wins the bus, keeps the bus clock, and hands each frame to every other
//! port's receive queue.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use proto::Frame;
use proto::filter::AcceptanceFilter;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout_at};
use tracing::{debug, trace};

use crate::BusEvent;
use crate::stats::Shared;

/// What port tasks tell the arbiter.
pub(crate) enum ToArbiter {
    /// A client connected; frames for it go into `rx`.
    Connected {
        port: usize,
        conn: u64,
        rx: mpsc::Sender<Frame>,
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

/// Resolves once shutdown is signalled (or its sender is gone).
pub(crate) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

struct Pending {
    frame: Frame,
    /// Bus time (paced) from which the frame could contend.
    ready_ns: u64,
    /// Its FIFO place; dropping it lets the port's reader read on.
    slot: OwnedSemaphorePermit,
}

struct Conn {
    id: u64,
    rx: mpsc::Sender<Frame>,
    /// Unpaced: this receiver already held the bus for a whole stall
    /// timeout and has not made room since, so it does not hold it again.
    stalled: bool,
    /// Frames the client asked to get (its controller's acceptance filter).
    filter: AcceptanceFilter,
}

struct Port {
    /// Index among all the bridge's ports.
    index: usize,
    conn: Option<Conn>,
    fifo: VecDeque<Pending>,
    /// Bus time the port's last frame ended: a frame that waited for a
    /// FIFO place was ready from then on.
    last_end_ns: u64,
}

/// Settings an arbiter needs from the bridge configuration.
pub(crate) struct ArbiterSetup {
    pub domain: usize,
    pub segments: Vec<usize>,
    pub ports: Vec<usize>,
    pub tx_fifo_depth: usize,
    pub stall_timeout: Duration,
}

pub(crate) struct Arbiter {
    setup: ArbiterSetup,
    ports: Vec<Port>,
    /// Bridge port index -> index in `ports`.
    local: Vec<Option<usize>>,
    inbox: mpsc::Receiver<ToArbiter>,
    shutdown: watch::Receiver<bool>,
    shared: Arc<Shared>,
    events: broadcast::Sender<BusEvent>,
    /// Bus time (ns) when the bus last became free.
    clock_ns: u64,
    /// Unpaced: wall time the bus went idle, while it is idle.
    idle_since_ns: Option<u64>,
}

impl Arbiter {
    pub fn new(
        setup: ArbiterSetup,
        inbox: mpsc::Receiver<ToArbiter>,
        shutdown: watch::Receiver<bool>,
        shared: Arc<Shared>,
        events: broadcast::Sender<BusEvent>,
    ) -> Arbiter {
        let mut local = vec![None; shared.ports.len()];
        let ports = setup
            .ports
            .iter()
            .enumerate()
            .map(|(i, &index)| {
                local[index] = Some(i);
                Port {
                    index,
                    conn: None,
                    fifo: VecDeque::with_capacity(setup.tx_fifo_depth),
                    last_end_ns: 0,
                }
            })
            .collect();
        Arbiter {
            setup,
            ports,
            local,
            inbox,
            shutdown,
            shared,
            events,
            clock_ns: 0,
            idle_since_ns: Some(0),
        }
    }

    pub async fn run(mut self) {
        loop {
            // Take in everything already sent, so that frames queued while
            // the bus was busy all contend for it.
            loop {
                match self.inbox.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if self.ports.iter().all(|p| p.fifo.is_empty()) {
                self.go_idle();
                let msg = tokio::select! {
                    biased;
                    _ = wait_shutdown(&mut self.shutdown) => return,
                    msg = self.inbox.recv() => msg,
                };
                match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                }
                continue;
            }
            if !self.transmit_one().await {
                return;
            }
        }
    }

    fn port(&mut self, index: usize) -> Option<&mut Port> {
        let i = (*self.local.get(index)?)?;
        self.ports.get_mut(i)
    }

    fn handle(&mut self, msg: ToArbiter) {
        match msg {
            ToArbiter::Connected { port, conn, rx } => {
                let shared = self.shared.clone();
                if let Some(p) = self.port(port) {
                    flush(&shared, p);
                    p.conn = Some(Conn {
                        id: conn,
                        rx,
                        stalled: false,
                        filter: AcceptanceFilter::accept_all(),
                    });
                }
            }
            ToArbiter::Disconnected { port, conn } => {
                let shared = self.shared.clone();
                if let Some(p) = self.port(port)
                    && p.conn.as_ref().is_some_and(|c| c.id == conn)
                {
                    p.conn = None;
                    flush(&shared, p);
                }
            }
            ToArbiter::Filter { port, conn, filter } => {
                if let Some(c) = self
                    .port(port)
                    .and_then(|p| p.conn.as_mut())
                    .filter(|c| c.id == conn)
                {
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
                let now = self.shared.wall_ns();
                let Some(p) = self.port(port) else { return };
                if p.conn.as_ref().is_some_and(|c| c.id == conn) {
                    // Stamped when read, not when this task got to it; a
                    // sender held back by a full FIFO was ready as soon as
                    // a place freed, in bus time.
                    let ready_ns = read_ns.max(p.last_end_ns);
                    p.fifo.push_back(Pending {
                        frame,
                        ready_ns,
                        slot,
                    });
                    self.leave_idle(now);
                } else {
                    // Sent by a connection that has since gone away.
                    self.shared.ports[port].tx_flushed.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Unpaced: the bus clock counts idle gaps in wall time.
    fn go_idle(&mut self) {
        if !self.shared.paced && self.idle_since_ns.is_none() {
            let now = self.shared.wall_ns();
            self.idle_since_ns = Some(now);
            self.shared.domains[self.setup.domain]
                .idle_since_ns
                .store(now, Relaxed);
        }
    }

    fn leave_idle(&mut self, wall_ns: u64) {
        if let Some(since) = self.idle_since_ns.take() {
            if !self.shared.paced {
                self.clock_ns += wall_ns.saturating_sub(since);
            }
            let clock = &self.shared.domains[self.setup.domain];
            clock.bus_ns.store(self.clock_ns, Relaxed);
            clock.idle_since_ns.store(u64::MAX, Relaxed);
        }
    }

    /// Picks the next frame, holds the bus for it (paced), delivers it.
    /// Returns `false` on shutdown.
    async fn transmit_one(&mut self) -> bool {
        let paced = self.shared.paced;
        // Paced: the bus is free at `clock_ns` or when the first frame
        // arrived after that; only frames there by then contend. Unpaced:
        // every pending frame contends at once.
        let start = if paced {
            let first = self
                .ports
                .iter()
                .filter_map(|p| p.fifo.front())
                .map(|f| f.ready_ns)
                .min();
            self.clock_ns.max(first.unwrap_or(0))
        } else {
            self.clock_ns
        };
        let winner = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.fifo.front().map(|f| (i, f)))
            .filter(|(_, f)| !paced || f.ready_ns <= start)
            .min_by_key(|(i, f)| (f.frame.arbitration_key(), *i))
            .map(|(i, _)| i);
        let Some(winner) = winner else { return true };
        let Some(pending) = self.ports[winner].fifo.pop_front() else {
            return true;
        };
        let sender = self.ports[winner].index;
        let frame = pending.frame;
        let Some(duration_ns) = self.shared.timing.frame_time_ns(&frame) else {
            // Readers filter these out already; never let one on the bus.
            self.shared.ports[sender]
                .fd_on_classic_bus
                .fetch_add(1, Relaxed);
            return true;
        };
        let end = start + duration_ns;
        if paced {
            // The frame holds the bus until its last bit. Timers are coarse
            // (1 ms), but the next frame starts at `end`, not at wake-up, so
            // lateness never adds up: frames that are due go out at once.
            let deadline = self.shared.started + Duration::from_nanos(end);
            if Instant::now() < deadline && self.serve_until(sleep_until(deadline)).await.is_none()
            {
                return false;
            }
        }
        self.clock_ns = end;
        self.ports[winner].last_end_ns = end;
        self.shared.domains[self.setup.domain]
            .bus_ns
            .store(end, Relaxed);
        // The FIFO place stays taken until the frame has been sent.
        drop(pending.slot);
        if !self.deliver(winner, frame).await {
            return false;
        }
        let bytes = frame.data().len() as u64;
        let counters = &self.shared.ports[sender];
        counters.frames_tx.fetch_add(1, Relaxed);
        counters.bytes_tx.fetch_add(bytes, Relaxed);
        for &s in &self.setup.segments {
            let seg = &self.shared.segments[s];
            seg.frames.fetch_add(1, Relaxed);
            seg.bytes.fetch_add(bytes, Relaxed);
            seg.busy_ns.fetch_add(duration_ns, Relaxed);
        }
        let seq = self.shared.next_seq.fetch_add(1, Relaxed);
        trace!(
            seq,
            port = sender,
            id = frame.id(),
            bus_time_ns = end,
            "frame on bus"
        );
        // Nobody listening is fine; a lagging subscriber loses old events.
        let _ = self.events.send(BusEvent {
            seq,
            bus_time_ns: end,
            segment: self.shared.port_segment[sender],
            port: sender,
            frame,
        });
        true
    }

    /// Hands `frame` to every port of the domain but its sender (`from`).
    /// Returns `false` on shutdown.
    async fn deliver(&mut self, from: usize, frame: Frame) -> bool {
        let paced = self.shared.paced;
        let mut waits: Vec<(usize, u64, mpsc::Sender<Frame>)> = Vec::new();
        for (i, p) in self.ports.iter_mut().enumerate() {
            if i == from {
                continue;
            }
            let counters = &self.shared.ports[p.index];
            let Some(conn) = p.conn.as_mut() else {
                counters.dropped_port_down.fetch_add(1, Relaxed);
                continue;
            };
            if !conn.filter.accepts(&frame) {
                counters.filtered.fetch_add(1, Relaxed);
                continue;
            }
            match conn.rx.try_send(frame) {
                Ok(()) => conn.stalled = false,
                Err(TrySendError::Closed(_)) => {
                    counters.dropped_port_down.fetch_add(1, Relaxed);
                }
                Err(TrySendError::Full(_)) if paced || conn.stalled => {
                    counters.overruns.fetch_add(1, Relaxed);
                }
                Err(TrySendError::Full(_)) => waits.push((i, conn.id, conn.rx.clone())),
            }
        }
        if waits.is_empty() {
            return true;
        }
        // Unpaced: full queues hold the bus, together at most one stall
        // timeout per frame.
        let deadline = Instant::now() + self.setup.stall_timeout;
        for (i, conn_id, tx) in waits {
            let Some(sent) = self.serve_until(timeout_at(deadline, tx.send(frame))).await else {
                return false;
            };
            let p = &mut self.ports[i];
            let counters = &self.shared.ports[p.index];
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    counters.dropped_port_down.fetch_add(1, Relaxed);
                }
                Err(_elapsed) => {
                    counters.overruns.fetch_add(1, Relaxed);
                    if let Some(conn) = p.conn.as_mut().filter(|c| c.id == conn_id) {
                        debug!(
                            port = p.index,
                            "receive queue stalled; dropping for it until it drains"
                        );
                        conn.stalled = true;
                    }
                }
            }
        }
        true
    }

    /// Runs `fut` to completion while still taking in port messages.
    /// `None` on shutdown.
    async fn serve_until<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            let msg = tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.shutdown) => return None,
                out = &mut fut => return Some(out),
                msg = self.inbox.recv() => msg,
            };
            self.handle(msg?);
        }
    }
}

/// A port lost its client: its controller's mailboxes are gone.
fn flush(shared: &Shared, port: &mut Port) {
    let n = port.fifo.len() as u64;
    if n > 0 {
        shared.ports[port.index].tx_flushed.fetch_add(n, Relaxed);
        port.fifo.clear();
    }
}
