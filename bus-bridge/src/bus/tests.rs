//! Tests of the bus alone: no tokio, no sockets; time is a number the
//! test moves, receive queues are a fake with a fixed room.

use std::collections::VecDeque;

use proptest::prelude::*;
use proto::frame::{FLAG_EXTENDED, FLAG_FD};

use super::*;
use crate::faults::{Fault, compile};

fn p(i: usize) -> PortId {
    PortId(i)
}

fn us(n: u64) -> WallTime {
    WallTime::from_ns(n * 1000)
}

/// Ports on `port_segment`, segments chained by links `0-1`, `1-2`, ….
fn setup(timing: BitTiming, paced: bool, port_segment: &[usize]) -> Setup {
    let segments = port_segment.iter().max().map_or(1, |m| m + 1);
    Setup {
        timing,
        paced,
        sof_window: false,
        seed: 0,
        segments,
        port_segment: port_segment.iter().map(|&s| SegmentId(s)).collect(),
        links: (1..segments)
            .map(|s| (SegmentId(s - 1), SegmentId(s)))
            .collect(),
        cut: Vec::new(),
        tx_fifo_depth: 4,
        stall_timeout: Duration::from_millis(1),
        rules: Vec::new(),
        link_down: Vec::new(),
        babble: Vec::new(),
    }
}

/// `fault` with ports named `pN` and segments `sN`.
fn rule(fault: Fault) -> Rule {
    let index = |prefix: char, name: &str| name.strip_prefix(prefix)?.parse().ok();
    compile(
        &fault,
        0,
        |n| index('p', n).map(PortId),
        |n| index('s', n).map(SegmentId),
    )
    .expect("a valid rule")
}

fn std_frame(id: u32, data: &[u8]) -> Frame {
    Frame::new(id, 0, data).unwrap()
}

/// Receive queues, each with room for so many frames.
struct Fake {
    cap: Vec<usize>,
    queues: Vec<VecDeque<Frame>>,
    /// Each port's client, as the driver knows it.
    conns: Vec<Option<ConnId>>,
    closed: Vec<bool>,
    /// Every frame each port took, in order.
    taken: Vec<Vec<Frame>>,
}

impl Receivers for Fake {
    fn push(&mut self, port: PortId, conn: ConnId, frame: Frame) -> Push {
        let i = port.0;
        assert_eq!(
            self.conns[i],
            Some(conn),
            "a frame for a client that is gone"
        );
        if self.closed[i] {
            Push::Closed
        } else if self.queues[i].len() >= self.cap[i] {
            Push::Full
        } else {
            self.queues[i].push_back(frame);
            self.taken[i].push(frame);
            Push::Taken
        }
    }
}

/// A bus, its fake receivers and a clock, driven as the arbiter task
/// drives it, with what came out of it.
struct World {
    bus: Bus,
    rx: Fake,
    now: WallTime,
    ports: usize,
    depth: usize,
    /// TX places each port has; a frame takes one, `TxDone` gives back.
    places: Vec<usize>,
    /// The last client of each port (frames may still come from it).
    last_conn: Vec<ConnId>,
    next_conn: u64,
    /// Frames each port put into its FIFO.
    accepted: Vec<u64>,
    on_bus: Vec<OnBus>,
    error_frames: Vec<(PortId, Frame)>,
    /// What the driver published, one change at a time.
    published: Figures,
}

impl World {
    fn new(setup: Setup, cap: usize) -> World {
        let ports = setup.port_segment.len();
        let depth = setup.tx_fifo_depth;
        let bus = Bus::new(setup);
        let published = bus.figures();
        World {
            bus,
            rx: Fake {
                cap: vec![cap; ports],
                queues: vec![VecDeque::new(); ports],
                conns: vec![None; ports],
                closed: vec![false; ports],
                taken: vec![Vec::new(); ports],
            },
            now: WallTime::ZERO,
            ports,
            depth,
            places: vec![depth; ports],
            last_conn: vec![ConnId(0); ports],
            next_conn: 0,
            accepted: vec![0; ports],
            on_bus: Vec::new(),
            error_frames: Vec::new(),
            published,
        }
    }

    fn connect_all(&mut self) {
        for i in 0..self.ports {
            self.connect(i);
        }
    }

    fn connect(&mut self, port: usize) {
        self.next_conn += 1;
        let c = ConnId(self.next_conn);
        self.last_conn[port] = c;
        self.rx.conns[port] = Some(c);
        self.rx.closed[port] = false;
        self.rx.queues[port].clear();
        self.bus.connect(p(port), c, None, true, self.now);
        self.outputs();
    }

    fn disconnect(&mut self, port: usize) {
        if let Some(c) = self.rx.conns[port].take() {
            self.bus.disconnect(p(port), c);
        }
        self.outputs();
    }

    /// Sends from `port`'s last client, if a TX place is free.
    fn send(&mut self, port: usize, frame: Frame) -> bool {
        if self.places[port] == 0 {
            return false;
        }
        self.places[port] -= 1;
        self.accepted[port] += 1;
        let conn = self.last_conn[port];
        self.bus.submit(p(port), conn, frame, Some(self.now));
        self.outputs();
        true
    }

    /// Carries out the outputs, as the arbiter task does.
    fn outputs(&mut self) {
        while let Some(out) = self.bus.next_output() {
            match out {
                Output::OnBus(f) => self.on_bus.push(f),
                Output::ErrorFrame { port, frame } => self.error_frames.push((port, frame)),
                Output::TxDone { port, slots } => {
                    self.places[port.0] += slots;
                    assert!(self.places[port.0] <= self.depth, "a TX place freed twice");
                }
            }
        }
        self.bus.publish(&mut self.published);
    }

    /// Polls until the bus is idle at `now`; returns its wake-up.
    fn poll(&mut self) -> Option<WallTime> {
        for _ in 0..100_000 {
            let r = self.bus.poll(self.now, &mut self.rx);
            self.outputs();
            if let Poll::Idle(wake) = r {
                return wake;
            }
        }
        panic!("the bus never went idle");
    }

    /// Runs until `until`, waking the bus whenever it asks.
    fn run_to(&mut self, until: WallTime) {
        loop {
            match self.poll() {
                Some(t) if t <= until => {
                    assert!(
                        t > self.now,
                        "a wake-up in the past: {t:?} at {:?}",
                        self.now
                    );
                    self.now = t;
                }
                _ => {
                    self.now = self.now.max(until);
                    self.poll();
                    return;
                }
            }
        }
    }

    fn run_for(&mut self, ns: u64) {
        self.run_to(self.now + ns);
    }

    fn taken_by(&self, port: usize) -> &[Frame] {
        &self.rx.taken[port]
    }

    fn drops(&self, port: usize, cause: Cause) -> u64 {
        self.bus.figures().ports[p(port)].counts.drops.get(cause)
    }
}

#[test]
fn the_lowest_identifier_wins_and_ties_go_to_the_lower_port_babble_first() {
    let mut w = World::new(setup(BitTiming::Fd1m5m, false, &[0; 6]), 64);
    w.connect_all();
    let f = |id, tag| std_frame(id, &[tag]);
    let ext = Frame::new(0x100 << 18 | 1, FLAG_EXTENDED, &[4]).unwrap();
    // Port 0's 0x100 waits behind its 0x300: a FIFO sends in order.
    w.send(0, f(0x300, 0));
    w.send(0, f(0x100, 0));
    w.send(1, f(0x200, 1));
    w.send(2, f(0x100, 2));
    w.send(4, ext);
    // Port 3 babbles 0x100 (ties with port 2's FIFO: the lower port
    // first); port 1 babbles 0x200 (ties with its own FIFO: babble first).
    w.bus.babble_start(p(3), f(0x100, 3), None, Some(1), w.now);
    w.bus
        .babble_start(p(1), f(0x200, 0xB1), None, Some(1), w.now);
    w.poll();
    let order: Vec<(usize, Frame)> = w.on_bus.iter().map(|e| (e.port.0, e.frame)).collect();
    assert_eq!(
        order,
        [
            (2, f(0x100, 2)),
            (3, f(0x100, 3)),
            (4, ext),
            (1, f(0x200, 0xB1)),
            (1, f(0x200, 1)),
            (0, f(0x300, 0)),
            (0, f(0x100, 0)),
        ],
        "standard before extended at the same base id"
    );
    assert_eq!(
        w.on_bus.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    // Everyone else heard every frame, in bus order; nobody its own.
    for port in 0..6 {
        let heard: Vec<Frame> = order
            .iter()
            .filter(|(s, _)| *s != port)
            .map(|(_, f)| *f)
            .collect();
        assert_eq!(w.taken_by(port), heard, "port {port}");
    }
    assert_eq!(w.places, [4; 6], "every TX place came back");
}

#[test]
fn paced_frames_take_their_frame_time_and_the_bus_wakes_the_driver_at_their_end() {
    let t = BitTiming::Classic125k;
    let mut w = World::new(setup(t, true, &[0, 0, 0, 0]), 64);
    w.connect_all();
    let (a, b, c) = (
        std_frame(0x100, &[1; 8]),
        std_frame(0x200, &[2; 8]),
        std_frame(0x050, &[3]),
    );
    let (ta, tb, tc) = (
        t.frame_time_ns(&a).unwrap(),
        t.frame_time_ns(&b).unwrap(),
        t.frame_time_ns(&c).unwrap(),
    );
    w.send(1, b);
    w.send(0, a);
    assert_eq!(w.poll(), Some(WallTime::from_ns(ta)), "a is on the wire");
    w.now = WallTime::from_ns(ta - 1);
    assert_eq!(w.poll(), Some(WallTime::from_ns(ta)));
    assert!(w.on_bus.is_empty(), "not one bit early");
    w.now = WallTime::from_ns(ta);
    assert_eq!(
        w.poll(),
        Some(WallTime::from_ns(ta + tb)),
        "b right after a"
    );
    assert_eq!(w.on_bus[0].end, BusTime::from_ns(ta));
    w.run_to(WallTime::from_ns(ta + tb));
    assert_eq!(w.on_bus[1].end, BusTime::from_ns(ta + tb));
    // A frame read while the bus is idle starts when it was read.
    w.run_to(WallTime::from_ns(ta + tb + 5_000));
    w.send(2, c);
    w.run_for(1_000_000);
    assert_eq!(w.on_bus[2].end, BusTime::from_ns(ta + tb + 5_000 + tc));
    // Paced, bus time is wall time: every segment has elapsed `now`.
    let figures = w.bus.figures();
    assert_eq!(figures.segments[SegmentId(0)].counts.busy_ns, ta + tb + tc);
}

/// The virtual clock's SOF window: on an idle bus, a frame ready within a
/// nominal bit of the first contends with it, so a node's clock tick
/// cannot decide which of two frames goes first.
#[test]
fn with_the_sof_window_a_frame_a_hair_later_still_contends_on_an_idle_bus() {
    let t = BitTiming::Fd1m5m;
    let (hi, lo) = (std_frame(0x200, &[1]), std_frame(0x100, &[2]));
    let order = |window: bool, later_ns: u64| {
        let mut s = setup(t, true, &[0, 0, 0]);
        s.sof_window = window;
        let mut w = World::new(s, 64);
        w.connect_all();
        w.now = WallTime::from_ns(5_000);
        w.send(0, hi);
        w.now = WallTime::from_ns(5_000 + later_ns);
        w.send(1, lo);
        w.run_for(10_000_000);
        let starts: Vec<u64> = w
            .on_bus
            .iter()
            .map(|e| e.end.as_ns() - t.frame_time_ns(&e.frame).unwrap())
            .collect();
        (w.on_bus.iter().map(|e| e.frame).collect::<Vec<_>>(), starts)
    };
    let (frames, starts) = order(true, 300);
    assert_eq!(frames, [lo, hi], "within a bit: the identifiers decide");
    assert_eq!(starts[0], 5_300, "never before it was ready");
    assert_eq!(order(false, 300).0, [hi, lo], "without it: the first ready");
    assert_eq!(
        order(true, 1_200).0,
        [hi, lo],
        "more than a bit later: too late"
    );
}

#[test]
fn paced_the_bus_says_until_when_every_wire_is_busy() {
    let t = BitTiming::Classic125k;
    let a = std_frame(0x100, &[1; 8]);
    let ta = t.frame_time_ns(&a).unwrap();
    // One segment: busy while a is on it, free after.
    let mut w = World::new(setup(t, true, &[0, 0]), 64);
    w.connect_all();
    assert_eq!(w.bus.wires_busy_until(), None, "idle");
    w.send(0, a);
    w.poll();
    assert_eq!(w.bus.wires_busy_until(), Some(WallTime::from_ns(ta)));
    // A frame sent meanwhile waits for the wire.
    w.now = WallTime::from_ns(ta / 2);
    w.send(1, std_frame(0x050, &[]));
    w.poll();
    assert_eq!(w.bus.wires_busy_until(), Some(WallTime::from_ns(ta)));
    w.run_for(10_000_000);
    assert!(w.on_bus[1].end > BusTime::from_ns(ta), "after a");
    assert_eq!(w.bus.wires_busy_until(), None);
    // Two domains (their link cut): one idle wire is enough to start a
    // frame now.
    let mut apart = setup(t, true, &[0, 1]);
    apart.cut = vec![LinkId(0)];
    let mut w = World::new(apart, 64);
    w.connect_all();
    w.send(0, a);
    w.poll();
    assert_eq!(w.bus.wires_busy_until(), None, "segment 1 is free");
    // Unpaced, frames take no wall time: never busy.
    let mut w = World::new(setup(t, false, &[0, 0]), 64);
    w.connect_all();
    w.send(0, a);
    assert_eq!(w.bus.wires_busy_until(), None);
}

/// Which frames (by number) each receiver got, and its drops, when one
/// sender sends `n` frames through lossy, noisy and slow receivers.
fn lossy_run(seed: u64, paced: bool, n: u32) -> (Vec<Vec<u32>>, Vec<Drops>) {
    let mut s = setup(BitTiming::Fd1m5m, paced, &[0, 0, 0, 0]);
    s.seed = seed;
    s.rules = vec![
        rule(Fault::loss(0.3)),
        rule(Fault::corrupt(0.2).on_port("p2")),
        rule(Fault::delay(50).with_jitter(40).on_port("p3")),
        rule(Fault::corrupt(0.05).on_port("p1").with_error_frame()),
    ];
    for (i, r) in s.rules.iter_mut().enumerate() {
        r.id = i as u64;
    }
    let mut w = World::new(s, 10_000);
    w.connect_all();
    for i in 0..n {
        let frame = Frame::fd_extended(0x10, &i.to_le_bytes()).unwrap();
        let mut tries = 0;
        while !w.send(0, frame) {
            tries += 1;
            assert!(tries < 1000, "no TX place came back");
            w.run_for(10_000);
        }
    }
    w.run_for(1_000_000_000);
    let got = (1..4)
        .map(|r| {
            w.taken_by(r)
                .iter()
                .map(|f| u32::from_le_bytes(f.data()[..4].try_into().unwrap()))
                .collect()
        })
        .collect();
    let figures = w.bus.figures();
    let drops = (0..4).map(|r| figures.ports[p(r)].counts.drops).collect();
    (got, drops)
}

#[test]
fn fault_decisions_follow_the_seed_and_nothing_else() {
    let a = lossy_run(42, false, 300);
    assert_eq!(a, lossy_run(42, false, 300), "same seed, same decisions");
    assert_eq!(
        a,
        lossy_run(42, true, 300),
        "paced or not, the same decisions"
    );
    assert_ne!(
        a.0,
        lossy_run(43, false, 300).0,
        "another seed decides otherwise"
    );
    let lost = 300 - a.0[0].len();
    assert!(
        (50..150).contains(&lost),
        "about 30% and some error frames: {lost}"
    );
    assert!(a.1[2].get(Cause::Corrupt) > 20);
    assert!(a.1[1].get(Cause::ErrorFrame) + a.1[1].get(Cause::Corrupt) > 0);
    let delayed = &a.0[2];
    assert!(
        delayed.windows(2).all(|w| w[0] < w[1]),
        "jitter never reorders"
    );
}

#[test]
fn a_cut_regroups_ports_between_two_frames() {
    // base (0) - ext1 (1) - ha (2); ports: a, b on base, e on ext1, h on ha.
    let t = BitTiming::Classic125k;
    let mut w = World::new(setup(t, true, &[0, 0, 1, 2]), 64);
    w.connect_all();
    let f = |id| std_frame(id, &[id as u8; 8]);
    let frame_ns = t.frame_time_ns(&f(0x100)).unwrap();
    w.send(0, f(0x100));
    w.send(0, f(0x101));
    w.run_to(us(300));
    // Mid-frame: the domain splits; the frame on the wire goes again.
    assert!(w.bus.set_link(LinkId(1), false, w.now));
    w.outputs();
    assert!(!w.bus.set_link(LinkId(1), false, w.now), "already cut");
    let figures = w.bus.figures();
    assert_eq!(
        figures.domains,
        [vec![SegmentId(0), SegmentId(1)], vec![SegmentId(2)]]
    );
    assert_eq!(figures.ports[p(0)].counts.retransmissions, 1);
    assert_eq!(figures.links[LinkId(1)], LinkFigures { up: false, cuts: 1 });
    w.run_for(10 * frame_ns);
    assert_eq!(
        w.taken_by(1),
        [f(0x100), f(0x101)],
        "queued frames survive, in order"
    );
    assert_eq!(w.taken_by(2), [f(0x100), f(0x101)]);
    assert!(w.taken_by(3).is_empty());
    assert_eq!(
        w.drops(3, Cause::LinkCut),
        2,
        "the far side counts what it missed"
    );
    // The far side is a bus of its own, with its own clock.
    w.send(3, f(0x7FF));
    w.run_for(10 * frame_ns);
    for port in 0..3 {
        assert_eq!(w.drops(port, Cause::LinkCut), 1, "port {port}");
    }
    let ha_end = w.on_bus.last().unwrap().end;
    let base_end = w.on_bus[1].end;
    assert!(ha_end > base_end);
    // Restored: one bus again, from the later clock.
    assert!(w.bus.set_link(LinkId(1), true, w.now));
    w.outputs();
    let figures = w.bus.figures();
    assert_eq!(figures.domains.len(), 1);
    assert_eq!(figures.segments[SegmentId(0)].clock, ha_end);
    w.send(3, f(0x010));
    w.run_for(10 * frame_ns);
    for port in 0..3 {
        assert_eq!(w.taken_by(port).last(), Some(&f(0x010)), "port {port}");
    }
    assert_eq!(w.published, w.bus.figures());
}

#[test]
fn error_frames_cost_bus_time_and_lead_to_bus_off_then_recovery() {
    let t = BitTiming::Classic1m;
    let mut s = setup(t, false, &[0, 0, 0]);
    s.rules = vec![rule(Fault::corrupt(1.0).on_port("p1").with_error_frame())];
    let mut w = World::new(s, 64);
    w.connect_all();
    let f = std_frame(0x123, &[0x55; 8]);
    let frame_ns = t.frame_time_ns(&f).unwrap();
    w.send(0, f);
    let wake = w.poll();
    // TEC +8 per error: bus-off after the 32nd (TEC 256 > 255).
    assert_eq!(w.error_frames.len(), 32);
    assert!(w.on_bus.is_empty());
    let figures = w.bus.figures();
    let tx = &figures.ports[p(0)];
    assert!(tx.bus_off);
    assert_eq!((tx.tec, tx.counts.retransmissions), (256, 32));
    assert_eq!(
        tx.counts.drops.get(Cause::TxBusOff),
        1,
        "the frame is given up"
    );
    assert_eq!(w.places[0], 4, "and its TX place freed");
    assert_eq!(figures.ports[p(1)].counts.drops.get(Cause::Corrupt), 32);
    assert_eq!(figures.ports[p(2)].counts.drops.get(Cause::ErrorFrame), 32);
    let busy = 32 * (frame_ns + 7_000);
    assert_eq!(figures.segments[SegmentId(0)].counts.busy_ns, busy);
    assert_eq!(figures.segments[SegmentId(0)].counts.error_frames, 32);
    // Unpaced, bus time idles along with the wall clock: the bus wakes
    // the driver when 128 x 11 bits have passed.
    let recovery_ns = 128 * 11 * 1_000;
    assert_eq!(wake, Some(WallTime::from_ns(recovery_ns)));
    w.bus.clear_rules();
    w.send(0, f);
    w.run_to(WallTime::from_ns(recovery_ns - 1));
    assert!(w.on_bus.is_empty(), "bus-off: silent until recovered");
    w.run_to(WallTime::from_ns(recovery_ns));
    assert_eq!(
        w.on_bus[0].end,
        BusTime::from_ns(busy + recovery_ns + frame_ns)
    );
    let tx = w.bus.figures().ports[p(0)];
    assert_eq!((tx.bus_off, tx.tec), (false, 0));
}

#[test]
fn a_full_receiver_holds_an_unpaced_bus_for_one_stall_timeout_at_most() {
    let mut w = World::new(setup(BitTiming::Fd1m5m, false, &[0, 0, 0]), 64);
    w.rx.cap[1] = 1;
    w.connect_all();
    let f = |n: u8| std_frame(0x100, &[n]);
    for n in 0..3 {
        w.send(0, f(n));
    }
    assert_eq!(w.poll(), Some(us(1000)), "held until the stall deadline");
    assert_eq!(w.on_bus.len(), 2, "the second frame found port 1 full");
    assert_eq!(w.taken_by(2), [f(0), f(1)], "port 2 is not held up");
    // Port 1 takes a frame: the held one goes, the bus moves on.
    w.rx.queues[1].clear();
    w.poll();
    assert_eq!(w.taken_by(1), [f(0), f(1)]);
    assert_eq!(w.on_bus.len(), 3);
    // It stays full past the deadline: an overrun, and from then on it
    // no longer holds the bus.
    w.run_to(us(2000));
    assert_eq!(w.drops(1, Cause::Overrun), 1);
    w.send(0, f(3));
    w.poll();
    assert_eq!(w.drops(1, Cause::Overrun), 2, "stalled: dropped at once");
    assert_eq!(w.taken_by(2).last(), Some(&f(3)));
    // Once it takes a frame again, it may hold the bus again.
    w.rx.queues[1].clear();
    w.send(0, f(4));
    w.send(0, f(5));
    w.poll();
    assert_eq!(w.taken_by(1).last(), Some(&f(4)));
    assert!(w.bus.ports.get(p(1)).blocked.is_some(), "f(5) waits for it");
}

#[test]
fn a_full_receiver_on_a_paced_bus_overruns_at_once() {
    let mut w = World::new(setup(BitTiming::Fd1m5m, true, &[0, 0]), 1);
    w.connect_all();
    for n in 0..3 {
        w.send(0, std_frame(0x100, &[n]));
    }
    w.run_for(1_000_000);
    assert_eq!(w.on_bus.len(), 3, "the bus never waits");
    assert_eq!(w.drops(1, Cause::Overrun), 2);
}

#[test]
fn what_a_port_held_is_dropped_once_when_its_client_changes() {
    let mut s = setup(BitTiming::Fd1m5m, false, &[0, 0, 0]);
    s.rules = vec![rule(Fault::delay(100).on_port("p2"))];
    let mut w = World::new(s, 1);
    w.connect_all();
    w.rx.queues[1].push_back(std_frame(1, &[])); // port 1 is full
    w.send(0, std_frame(0x100, &[1]));
    w.poll();
    w.bus.link_down(p(0), false);
    for n in 2..5 {
        w.send(0, std_frame(0x100, &[n]));
    }
    // Port 0 holds 3 frames in its FIFO, port 1 a blocked frame, port 2 a
    // delayed one; new clients replace them all.
    for port in 0..3 {
        w.connect(port);
    }
    assert_eq!(w.drops(0, Cause::TxFlushed), 3);
    assert_eq!(w.drops(1, Cause::PortDown), 1);
    assert_eq!(w.drops(2, Cause::PortDown), 1);
    assert_eq!(w.places[0], 4);
    assert_eq!((w.bus.held.blocked, w.bus.held.delayed), (0, 0));
    w.run_for(1_000_000);
    assert!(
        w.taken_by(2).is_empty(),
        "the delayed frame was for the old client"
    );
}

// ---- The accounting identity, over random mixes ----

const PORTS: usize = 5;
/// Ports 0 and 1 on segment 0, 2 on segment 1, 3 and 4 on segment 2.
const PORT_SEGMENT: [usize; PORTS] = [0, 0, 1, 2, 2];

#[derive(Clone, Debug)]
enum Op {
    Send {
        port: usize,
        id: u32,
        fd: bool,
    },
    Advance {
        us: u64,
    },
    Drain {
        port: usize,
    },
    Connect {
        port: usize,
    },
    Disconnect {
        port: usize,
    },
    /// The client's writer ends before its port says so.
    Close {
        port: usize,
    },
    Link {
        link: usize,
        up: bool,
    },
    LinkDown {
        port: usize,
        flush: bool,
    },
    LinkUp {
        port: usize,
    },
    Fault {
        kind: u8,
        probability: f64,
        port: Option<usize>,
    },
    ClearFaults,
    Babble {
        port: usize,
        count: u64,
        period_us: Option<u64>,
    },
    BabbleStop {
        port: usize,
    },
    Filter {
        port: usize,
        pass_all: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let port = 0..PORTS;
    prop_oneof![
        8 => (port.clone(), 0u32..0x800, any::<bool>())
            .prop_map(|(port, id, fd)| Op::Send { port, id, fd }),
        4 => (0u64..3000).prop_map(|us| Op::Advance { us }),
        3 => port.clone().prop_map(|port| Op::Drain { port }),
        1 => port.clone().prop_map(|port| Op::Connect { port }),
        1 => port.clone().prop_map(|port| Op::Disconnect { port }),
        1 => port.clone().prop_map(|port| Op::Close { port }),
        1 => (0usize..2, any::<bool>()).prop_map(|(link, up)| Op::Link { link, up }),
        1 => (port.clone(), any::<bool>()).prop_map(|(port, flush)| Op::LinkDown { port, flush }),
        1 => port.clone().prop_map(|port| Op::LinkUp { port }),
        2 => (0u8..4, prop::sample::select(vec![0.0, 0.3, 0.7, 1.0]), prop::option::of(port.clone()))
            .prop_map(|(kind, probability, port)| Op::Fault { kind, probability, port }),
        1 => Just(Op::ClearFaults),
        1 => (port.clone(), 1u64..5, prop::option::of(50u64..500))
            .prop_map(|(port, count, period_us)| Op::Babble { port, count, period_us }),
        1 => port.clone().prop_map(|port| Op::BabbleStop { port }),
        1 => (port, any::<bool>()).prop_map(|(port, pass_all)| Op::Filter { port, pass_all }),
    ]
}

/// The fault an `Op::Fault` puts in force.
fn fault_of(kind: u8, probability: f64, port: Option<usize>) -> Fault {
    let f = match kind {
        0 => Fault::loss(probability),
        1 => Fault::corrupt(probability),
        2 => Fault::corrupt(probability).with_error_frame(),
        _ => Fault {
            probability,
            ..Fault::delay(200).with_jitter(300)
        },
    };
    match port {
        Some(i) => f.on_port(format!("p{i}")),
        None => f,
    }
}

/// What each port should account for, from the outputs alone: one
/// outcome per frame on its bus (or cut off from it) and per error frame
/// in its domain.
struct Oracle {
    links_up: [bool; 2],
    expected: [u64; PORTS],
    cut_off: [u64; PORTS],
    /// Bus order of each numbered frame.
    seq_of: std::collections::HashMap<u32, u64>,
}

impl Oracle {
    /// Whether segments `a` and `b` are one bus now (a chain 0-1-2).
    fn joined(&self, a: usize, b: usize) -> bool {
        (a.min(b)..a.max(b)).all(|l| self.links_up[l])
    }

    fn on_bus(&mut self, f: &OnBus) {
        let s = PORT_SEGMENT[f.port.0];
        for q in (0..PORTS).filter(|&q| q != f.port.0) {
            self.expected[q] += 1;
            if !self.joined(s, PORT_SEGMENT[q]) {
                self.cut_off[q] += 1;
            }
        }
        if let Some(n) = number(&f.frame) {
            assert!(
                self.seq_of.insert(n, f.seq).is_none(),
                "a frame on the bus twice"
            );
        }
    }

    fn error_frame(&mut self, port: PortId) {
        let s = PORT_SEGMENT[port.0];
        for q in (0..PORTS).filter(|&q| q != port.0) {
            if self.joined(s, PORT_SEGMENT[q]) {
                self.expected[q] += 1;
            }
        }
    }
}

/// The number a test frame carries; babble frames carry none.
fn number(f: &Frame) -> Option<u32> {
    (f.data().len() >= 8).then(|| u32::from_le_bytes(f.data()[..4].try_into().unwrap()))
}

fn apply(w: &mut World, o: &mut Oracle, op: &Op, next: &mut u32) {
    match *op {
        Op::Send { port, id, fd } => {
            let mut data = [0u8; 12];
            data[..4].copy_from_slice(&next.to_le_bytes());
            let frame = if fd {
                Frame::new(id, FLAG_FD, &data).unwrap()
            } else {
                Frame::new(id, 0, &data[..8]).unwrap()
            };
            if w.send(port, frame) {
                *next += 1;
            }
        }
        Op::Advance { us } => w.run_for(us * 1000),
        Op::Drain { port } => w.rx.queues[port].clear(),
        Op::Connect { port } => w.connect(port),
        Op::Disconnect { port } => w.disconnect(port),
        Op::Close { port } => w.rx.closed[port] = true,
        Op::Link { link, up } => {
            w.bus.set_link(LinkId(link), up, w.now);
            o.links_up[link] = up;
        }
        Op::LinkDown { port, flush } => w.bus.link_down(p(port), flush),
        Op::LinkUp { port } => w.bus.link_up(p(port)),
        Op::Fault {
            kind,
            probability,
            port,
        } => {
            w.bus.add_rule(rule(fault_of(kind, probability, port)));
        }
        Op::ClearFaults => {
            w.bus.clear_rules();
        }
        Op::Babble {
            port,
            count,
            period_us,
        } => {
            let frame = std_frame(0x010, &[0xBB; 2]);
            let period = period_us.map(|us| us * 1000);
            w.bus
                .babble_start(p(port), frame, period, Some(count), w.now);
        }
        Op::BabbleStop { port } => {
            w.bus.babble_stop(p(port));
        }
        Op::Filter { port, pass_all } => {
            let filter = if pass_all {
                AcceptanceFilter::accept_all()
            } else {
                let odd = proto::filter::FilterEntry {
                    id: 1,
                    mask: 1,
                    extended: false,
                };
                AcceptanceFilter::new(&[odd]).unwrap()
            };
            w.bus.set_filter(p(port), w.last_conn[port], filter);
        }
    }
    w.outputs();
}

/// Runs `ops`, then lets everything held settle; checks the identities.
fn check_accounting(paced: bool, timing: BitTiming, cap: usize, ops: &[Op]) {
    let (w, o) = run_mix(paced, timing, cap, ops);
    assert_eq!(
        (w.bus.held.blocked, w.bus.held.delayed),
        (0, 0),
        "something still held"
    );
    let figures = w.bus.figures();
    for q in 0..PORTS {
        check_port(&w, &o, &figures, q);
    }
    for c in CAUSES {
        let by_port: u64 = figures.ports.iter().map(|f| f.counts.drops.get(c)).sum();
        let by_segment: u64 = figures.segments.iter().map(|f| f.counts.drops.get(c)).sum();
        assert_eq!(
            by_port, by_segment,
            "{c:?}: once on the port, once on its segment"
        );
    }
}

/// Runs `ops`; then every queue gets room for good and time runs on until
/// nothing is held. The oracle follows every output; the published
/// figures are compared with the full ones after every step.
fn run_mix(paced: bool, timing: BitTiming, cap: usize, ops: &[Op]) -> (World, Oracle) {
    let mut w = World::new(setup(timing, paced, &PORT_SEGMENT), cap);
    let mut o = Oracle {
        links_up: [true; 2],
        expected: [0; PORTS],
        cut_off: [0; PORTS],
        seq_of: Default::default(),
    };
    w.connect_all();
    let (mut next, mut seen_bus, mut seen_errors) = (0u32, 0, 0);
    for i in 0..=ops.len() {
        match ops.get(i) {
            Some(op) => apply(&mut w, &mut o, op, &mut next),
            None => {
                w.rx.cap = vec![usize::MAX; PORTS];
                w.rx.queues.iter_mut().for_each(VecDeque::clear);
                w.run_for(10_000_000_000);
            }
        }
        for f in &w.on_bus[seen_bus..] {
            o.on_bus(f);
        }
        for (port, _) in &w.error_frames[seen_errors..] {
            o.error_frame(*port);
        }
        (seen_bus, seen_errors) = (w.on_bus.len(), w.error_frames.len());
        assert_eq!(w.published, w.bus.figures(), "published figures went stale");
    }
    (w, o)
}

fn check_port(w: &World, o: &Oracle, figures: &Figures, q: usize) {
    let f = &figures.ports[p(q)];
    let d = &f.counts.drops;
    let tx_causes = [
        Cause::TxFlushed,
        Cause::TxLinkDown,
        Cause::TxBusOff,
        Cause::TxFdOnClassic,
    ];
    let tx_drops: u64 = tx_causes.iter().map(|&c| d.get(c)).sum();
    let rx_drops: u64 = CAUSES.iter().map(|&c| d.get(c)).sum::<u64>() - tx_drops;
    let taken = w.rx.taken[q].len() as u64;
    assert_eq!(
        taken + rx_drops,
        o.expected[q],
        "port {q}: one outcome per frame: {d:?}"
    );
    assert_eq!(d.get(Cause::LinkCut), o.cut_off[q], "port {q}: cut off");
    let sent = f.counts.frames_tx - f.counts.babble_frames;
    assert_eq!(
        sent + tx_drops + f.tx_queued as u64,
        w.accepted[q],
        "port {q}: every frame it sent left its FIFO once"
    );
    assert_eq!(w.places[q] + f.tx_queued, w.depth, "port {q}: TX places");
    let on_bus = w.on_bus.iter().filter(|e| e.port.0 == q).count() as u64;
    assert_eq!(f.counts.frames_tx, on_bus);
    // Receivers get frames in bus order.
    let seqs: Vec<u64> = w.rx.taken[q]
        .iter()
        .filter_map(number)
        .map(|n| o.seq_of[&n])
        .collect();
    assert!(
        seqs.windows(2).all(|s| s[0] < s[1]),
        "port {q} got frames out of order"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_frame_is_delivered_or_dropped_once_per_port(
        paced in any::<bool>(),
        classic in any::<bool>(),
        cap in 1usize..4,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let timing = if classic { BitTiming::Classic500k } else { BitTiming::Fd1m5m };
        check_accounting(paced, timing, cap, &ops);
    }
}
