//! Timed host clients on the virtual clock, without QEMU: two programs that
//! keep the bus's time in-band (`PortConfig::timed`). Each is granted only
//! up to its next event, acts on what is due before its grant, and its
//! frames and freed TX places come back stamped with the bus's times.

mod common;

use bus_bridge::client::{self, ConnectOptions, FrameReader, FrameWriter};
use bus_bridge::{BitTiming, BridgeConfig, BusClock, VirtualClock};
use proto::Frame;
use proto::link::{self, Item, MAX_ENCODED, NEVER};
use tokio::time::timeout;

/// One timed client, driven by hand.
struct Timed {
    reader: FrameReader,
    writer: FrameWriter,
}

/// What a timed client was handed before its grant: (time, item).
type Handed = Vec<(u64, Item)>;

impl Timed {
    async fn connect(path: &std::path::Path) -> Timed {
        let (reader, writer) = client::connect_with(path, ConnectOptions::PLAIN)
            .await
            .expect("connect");
        Timed { reader, writer }
    }

    /// Everything handed to it up to its next grant, and the grant.
    async fn until(&mut self) -> (Handed, u64) {
        let mut handed = Vec::new();
        let mut at = None;
        loop {
            let item = timeout(common::PATIENCE, self.reader.next_item())
                .await
                .expect("a grant in time")
                .expect("read")
                .expect("the port stays open");
            match item {
                Item::At(t) => at = Some(t),
                Item::Until(g) => return (handed, g),
                other => handed.push((at.take().expect("stamped"), other)),
            }
        }
    }

    async fn send_at(&mut self, at: u64, frame: &Frame) {
        let mut out = [0u8; MAX_ENCODED];
        let mut bytes = Vec::new();
        let n = link::encode_at(at, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let n = link::encode(frame, &mut out);
        bytes.extend_from_slice(&out[..n]);
        self.writer.send_raw(&bytes).await.expect("write");
    }

    async fn idle(&mut self, at: u64, wake: u64) {
        let mut out = [0u8; MAX_ENCODED];
        let n = link::encode_idle(at, wake, &mut out);
        self.writer.send_raw(&out[..n]).await.expect("write");
    }
}

fn config(dir: &std::path::Path) -> BridgeConfig {
    let mut c = common::config(dir, BitTiming::Fd1m5m, &[("a", "base"), ("b", "base")]);
    for p in &mut c.ports {
        p.timed = true;
    }
    c.clock = BusClock::Virtual(VirtualClock::default());
    c
}

#[tokio::test]
async fn timed_clients_act_at_their_timers_and_hear_each_other_at_bus_times() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bus_bridge::start(config(dir.path())).await.unwrap();
    let mut events = bridge.subscribe();
    let mut a = Timed::connect(&common::sock(dir.path(), "a")).await;
    let (handed, g) = a.until().await;
    assert_eq!(
        (handed, g),
        (vec![(0, Item::TxFree(4))], 0),
        "it joins at 0 with its FIFO places"
    );
    let mut b = Timed::connect(&common::sock(dir.path(), "b")).await;
    assert_eq!(b.until().await.1, 0);
    b.idle(0, NEVER).await;
    a.idle(0, 1_000_000).await;
    // Both are granted at once to take their places (handed at 0).
    let (_, g) = a.until().await;
    a.idle(g, 1_000_000).await;
    let (_, g) = b.until().await;
    b.idle(g, NEVER).await;
    // A's first timer is at 1 ms: time skips there, and A acts before it
    // is told that anything after has come.
    let (handed, g) = a.until().await;
    assert!(handed.is_empty(), "{handed:?}");
    assert!(g > 1_000_000, "granted past its timer: {g}");
    let x = Frame::new(0x123, 0, &[1, 2, 3]).unwrap();
    a.send_at(1_000_000, &x).await;
    a.idle(g, NEVER).await;
    // B hears X at the end of its frame on the bus, and answers then.
    let (handed, g_b) = b.until().await;
    let on_bus = events.recv().await.unwrap();
    assert_eq!(on_bus.frame, x);
    let end = on_bus.bus_time_ns;
    let frame_ns = BitTiming::Fd1m5m.frame_time_ns(&x).unwrap();
    assert!(
        end > 1_000_000 + frame_ns && end < 1_000_000 + 2 * frame_ns,
        "X from 1 ms + 1 ns on: {end}"
    );
    assert_eq!(handed, vec![(end, Item::Frame(x))]);
    assert!(g_b > end);
    let y = Frame::new(0x124, 0, &[4]).unwrap();
    b.send_at(end, &y).await;
    b.idle(g_b, NEVER).await;
    // A gets its FIFO place back when X ended (granted in the same round
    // as B), then Y once it has ended on the bus.
    let (handed, g_a) = a.until().await;
    assert_eq!(handed, vec![(end, Item::TxFree(1))]);
    a.idle(g_a, NEVER).await;
    let (handed, _) = a.until().await;
    let y_end = events.recv().await.unwrap().bus_time_ns;
    assert!(y_end > end + BitTiming::Fd1m5m.frame_time_ns(&y).unwrap());
    assert_eq!(handed, vec![(y_end, Item::Frame(y))]);
    bridge.shutdown().await;
}

#[tokio::test]
async fn awaiting_a_timed_client_returns_once_it_has_joined() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bus_bridge::start(config(dir.path())).await.unwrap();
    let control = bridge.control();
    let waiting = tokio::spawn({
        let control = control.clone();
        async move { control.await_clock("a").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "returned before the client joined");
    let _a = Timed::connect(&common::sock(dir.path(), "a")).await;
    let joined = timeout(common::PATIENCE, waiting).await;
    assert!(matches!(joined, Ok(Ok(Ok(())))), "{joined:?}");
    // Once joined, at once.
    let again = timeout(common::PATIENCE, control.await_clock("a")).await;
    assert!(matches!(again, Ok(Ok(()))), "{again:?}");
    bridge.shutdown().await;
}

#[tokio::test]
async fn held_time_stops_where_it_is_and_grants_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bus_bridge::start(config(dir.path())).await.unwrap();
    let mut a = Timed::connect(&common::sock(dir.path(), "a")).await;
    let (_, g) = a.until().await;
    a.idle(g, 1_000_000).await;
    // Granted to take its FIFO places (handed at 0).
    let (_, g) = a.until().await;
    bridge.control().hold_time().await.unwrap();
    // Its timer at 1 ms would have moved time there; held, nothing moves.
    a.idle(g, 1_000_000).await;
    let next = timeout(std::time::Duration::from_millis(300), a.reader.next_item()).await;
    assert!(next.is_err(), "an item after the hold: {next:?}");
    assert!(
        bridge.time().now_ns() < 1_000_000,
        "{}",
        bridge.time().now_ns()
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn with_no_member_a_babbling_bus_runs_on_and_still_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.faults.babble.insert(
        "a".into(),
        bus_bridge::Babble {
            rate_hz: Some(1000.0),
            ..bus_bridge::Babble::default()
        },
    );
    let bridge = bus_bridge::start(c).await.unwrap();
    // Nothing holds time: it runs on, a babbled frame at a time.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        bridge.time().now_ns() > 1_000_000_000,
        "{}",
        bridge.time().now_ns()
    );
    timeout(common::PATIENCE, bridge.shutdown())
        .await
        .expect("the arbiter hears the shutdown");
}

/// A timed client counts its own FIFO places: it is handed its port's
/// depth when it joins, the bridge's where the port names none.
#[tokio::test]
async fn a_timed_client_joins_with_its_own_ports_fifo_places() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.ports[1].tx_fifo_depth = Some(9);
    let bridge = bus_bridge::start(c).await.unwrap();
    let mut a = Timed::connect(&common::sock(dir.path(), "a")).await;
    assert_eq!(a.until().await, (vec![(0, Item::TxFree(4))], 0));
    let mut b = Timed::connect(&common::sock(dir.path(), "b")).await;
    assert_eq!(b.until().await, (vec![(0, Item::TxFree(9))], 0));
    bridge.shutdown().await;
}
