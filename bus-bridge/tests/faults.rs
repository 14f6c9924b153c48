//! Topology, faults, the control API and floods, end to end on temporary
//! unix sockets.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bus_bridge::{Babble, BitTiming, BridgeConfig, BusEvent, Fault, PortConfig, Topology};
use common::*;
use proto::Frame;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::{Instant, sleep, timeout};

fn library(dir: &std::path::Path, timing: BitTiming, ports: &[(&str, &str)]) -> BridgeConfig {
    BridgeConfig {
        ports: ports
            .iter()
            .map(|(n, s)| PortConfig::new(*n, *s, sock(dir, n)))
            .collect(),
        timing,
        ..BridgeConfig::default()
    }
    .with_topology(Topology::default_library())
}

#[tokio::test]
async fn linked_segments_are_one_bus_until_a_link_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = library(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("m", "base"), ("b2", "base"), ("e", "ext1"), ("h", "ha")],
    );
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let control = bridge.control();
    assert_eq!(
        control.topology().domains,
        [["base", "ext1", "ha"]],
        "all links up: one domain"
    );
    let mut cl = connect_all(&bridge, &["m", "b2", "e", "h"]).await;
    let f = |n| numbered(0x10_0000, n);
    cl[0].send(&[f(1)]).await;
    for c in &mut cl[1..] {
        assert_eq!(c.recv().await, f(1), "a frame crosses both links");
    }
    // Cut ext1-ha: the HA frame is on its own.
    assert!(control.cut("ext1-ha").await.unwrap());
    assert!(!control.cut("ext1-ha").await.unwrap(), "already cut");
    assert_eq!(
        control.topology().domains,
        [vec!["base", "ext1"], vec!["ha"]]
    );
    cl[0].send(&[f(2)]).await;
    assert_eq!(cl[1].recv().await, f(2));
    assert_eq!(cl[2].recv().await, f(2));
    cl[3].send(&[f(3)]).await; // alone on ha: nobody hears it
    let stats = wait_for(&bridge, "the cut drops", |s| {
        s.ports[3].drops["link_cut"] == 1 && s.ports[0].drops["link_cut"] == 1
    })
    .await;
    assert_eq!(stats.ports[1].drops["link_cut"], 1);
    assert_eq!(stats.ports[2].drops["link_cut"], 1);
    assert_eq!(stats.segments[2].drops["link_cut"], 1);
    assert_eq!(stats.segments[0].drops["link_cut"], 2);
    assert_eq!(stats.segments[2].domain, ["ha"]);
    assert!(!stats.links[1].up && stats.links[1].cuts == 1);
    assert_eq!(cl[3].try_recv(Duration::from_millis(50)).await, None);
    // Restore: one bus again.
    assert!(control.restore("ext1-ha").await.unwrap());
    cl[3].send(&[f(4)]).await;
    for c in &mut cl[..3] {
        assert_eq!(c.recv().await, f(4));
    }
    let stats = bridge.shutdown().await;
    // A frame counts once in the totals, and on every segment it crossed.
    assert_eq!(stats.totals.frames, 4);
    let seg: Vec<u64> = stats.segments.iter().map(|s| s.frames).collect();
    assert_eq!(seg, [3, 3, 3], "frame 2 stayed off ha, frame 3 on ha only");
    assert_eq!(
        control.cut("nope").await.unwrap_err().to_string(),
        "link: no link named \"nope\""
    );
}

// Paused clock: "at the same time" is exact.
#[tokio::test(start_paused = true)]
async fn joined_segments_share_one_bus_clock_and_a_cut_splits_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = library(
        dir.path(),
        BitTiming::Classic125k,
        &[("a", "base"), ("la", "base"), ("h", "ha"), ("lh", "ha")],
    );
    cfg.paced = true;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut events = bridge.subscribe();
    let mut cl = connect_all(&bridge, &["a", "la", "h", "lh"]).await;
    let fa = std_frame(0x300, &[1; 8]);
    let fh = std_frame(0x200, &[2; 8]);
    let t = BitTiming::Classic125k;
    let send_both = async |cl: &mut Vec<Client>| {
        let (x, y) = cl.split_at_mut(2);
        let (ba, bh) = ([fa], [fh]);
        tokio::join!(x[0].send(&ba), y[0].send(&bh));
    };
    send_both(&mut cl).await;
    let e1: BusEvent = events.recv().await.unwrap();
    let e2: BusEvent = events.recv().await.unwrap();
    assert_eq!(
        (e1.frame, e2.frame),
        (fh, fa),
        "one arbitration: the lower id first"
    );
    assert_eq!(
        e2.bus_time_ns - e1.bus_time_ns,
        t.frame_time_ns(&fa).unwrap(),
        "one bus: the second frame waits for the first"
    );
    assert_eq!(cl[1].recv_n(2).await, [fh, fa]);
    assert_eq!(cl[3].recv_n(2).await, [fh, fa]);
    // Cut: two buses, each frame has one to itself.
    bridge.control().cut("base-ext1").await.unwrap();
    sleep(Duration::from_millis(5)).await;
    send_both(&mut cl).await;
    let e3 = events.recv().await.unwrap();
    let e4 = events.recv().await.unwrap();
    let start = |e: &BusEvent| e.bus_time_ns - t.frame_time_ns(&e.frame).unwrap();
    assert_eq!(
        start(&e3),
        start(&e4),
        "two buses: both frames start at once"
    );
    assert_eq!(cl[1].recv().await, fa);
    assert_eq!(cl[3].recv().await, fh);
    bridge.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_frame_on_the_wire_when_its_link_is_cut_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = library(
        dir.path(),
        BitTiming::Classic125k,
        &[("s", "base"), ("l", "base"), ("far", "ha")],
    );
    cfg.paced = true;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["s", "l", "far"]).await;
    let frames: Vec<Frame> = (0..4)
        .map(|i| std_frame(0x100 + i, &[i as u8; 8]))
        .collect();
    cl[0].send(&frames).await;
    // Mid-way through the first frame (~0.9 ms at 125 kbit/s).
    sleep(Duration::from_micros(300)).await;
    bridge.control().cut("base-ext1").await.unwrap();
    assert_eq!(
        cl[1].recv_n(4).await,
        frames,
        "queued frames survive, in order"
    );
    let stats = wait_for(&bridge, "the far side's drops", |s| {
        s.ports[2].drops["link_cut"] == 4
    })
    .await;
    assert_eq!(
        stats.ports[0].retransmissions, 1,
        "the cut frame went again"
    );
    assert_eq!(stats.ports[0].frames_tx, 4);
    assert_eq!(cl[2].try_recv(Duration::from_millis(10)).await, None);
    bridge.control().restore("base-ext1").await.unwrap();
    cl[0].send(&[frames[0]]).await;
    assert_eq!(cl[2].recv().await, frames[0]);
    bridge.shutdown().await;
}

#[tokio::test]
async fn loss_and_corruption_are_counted_by_cause_on_port_and_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("tx", "s"), ("lossy", "s"), ("noisy", "s"), ("clean", "s")],
    );
    // Kind 0x20 only, for `lossy`.
    cfg.faults.rules = vec![
        Fault::loss(1.0)
            .on_port("lossy")
            .ids(0x20 << 16, 0x1FFF_0000),
        Fault::corrupt(1.0).on_port("noisy"),
    ];
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "lossy", "noisy", "clean"]).await;
    let kind20 = numbered(0x20 << 16 | 1, 1);
    let kind30 = numbered(0x30 << 16 | 1, 2);
    cl[0].send(&[kind20, kind30, kind20]).await;
    assert_eq!(cl[3].recv_n(3).await, [kind20, kind30, kind20]);
    assert_eq!(cl[1].recv().await, kind30, "only kind 0x20 is lost");
    let stats = wait_for(&bridge, "the drops", |s| s.ports[2].crc_errors == 3).await;
    let drops = |p: usize| -> BTreeMap<String, u64> {
        stats.ports[p]
            .drops
            .iter()
            .filter(|&(_, &v)| v > 0)
            .map(|(k, &v)| (k.clone(), v))
            .collect()
    };
    assert_eq!(drops(1), BTreeMap::from([("loss".into(), 2)]));
    assert_eq!(drops(2), BTreeMap::from([("corrupt".into(), 3)]));
    assert!(drops(3).is_empty());
    assert_eq!(stats.segments[0].crc_errors, 3);
    assert_eq!(stats.segments[0].drops["loss"], 2);
    assert_eq!(stats.totals.crc_errors, 3);
    assert_eq!(stats.totals.drops["loss"], 2);
    assert_eq!(stats.faults.len(), 2);
    // Rules go away at run time.
    let control = bridge.control();
    assert_eq!(control.faults()[1].id, 1);
    control.remove_fault(1).await.unwrap();
    assert!(control.remove_fault(1).await.is_err());
    cl[0].send(&[kind30]).await;
    assert_eq!(cl[2].recv().await, kind30, "no longer corrupted");
    assert_eq!(control.clear_faults().await.unwrap(), 1);
    cl[0].send(&[kind20]).await;
    assert_eq!(cl[1].recv_n(2).await, [kind30, kind20], "no longer lost");
    bridge.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_error_frame_costs_bus_time_and_the_sender_retransmits_until_bus_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Classic1m,
        &[("tx", "s"), ("noisy", "s"), ("other", "s")],
    );
    cfg.faults.rules = vec![Fault::corrupt(1.0).on_port("noisy").with_error_frame()];
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "noisy", "other"]).await;
    let f = std_frame(0x123, &[0x55; 8]);
    let frame_ns = BitTiming::Classic1m.frame_time_ns(&f).unwrap();
    cl[0].send(&[f]).await;
    // TEC +8 per error: bus-off after the 32nd (TEC 256 > 255).
    let stats = wait_for(&bridge, "bus-off", |s| s.ports[0].bus_off).await;
    let p = &stats.ports;
    assert_eq!(p[0].retransmissions, 32);
    assert_eq!(p[0].drops["tx_bus_off"], 1, "the frame is given up");
    assert_eq!(p[0].frames_tx, 0);
    assert_eq!(
        p[1].crc_errors, 32,
        "the noisy receiver saw every CRC error"
    );
    assert_eq!(
        p[2].drops["error_frame"], 32,
        "the other threw each copy away"
    );
    assert_eq!(stats.segments[0].error_frames, 32);
    assert_eq!(
        stats.segments[0].busy_ns,
        32 * (frame_ns + 7_000),
        "each attempt: the frame up to its ACK delimiter plus a 17-bit error frame"
    );
    assert_eq!(cl[2].try_recv(Duration::from_millis(1)).await, None);
    // Without the fault, after bus-off recovery (128 x 11 bits), it sends.
    bridge.control().clear_faults().await.unwrap();
    cl[0].send(&[f]).await;
    assert_eq!(cl[2].recv().await, f);
    assert_eq!(cl[1].recv().await, f);
    let stats = wait_for(&bridge, "recovery", |s| s.ports[0].frames_tx == 1).await;
    assert!(!stats.ports[0].bus_off);
    bridge.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_delay_fault_delivers_late_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("tx", "s"), ("slow", "s"), ("fast", "s")],
    );
    cfg.faults.rules = vec![Fault::delay(20_000).with_jitter(5_000).on_port("slow")];
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "slow", "fast"]).await;
    let frames: Vec<Frame> = (0..20).map(|n| numbered(0x40_0000, n)).collect();
    let sent = Instant::now();
    cl[0].send(&frames).await;
    assert_eq!(cl[2].recv_n(20).await, frames);
    assert!(
        sent.elapsed() < Duration::from_millis(20),
        "no delay for `fast`"
    );
    assert_eq!(cl[1].recv().await, frames[0]);
    assert!(
        sent.elapsed() >= Duration::from_millis(20),
        "20 ms late at least"
    );
    assert_eq!(cl[1].recv_n(19).await, frames[1..], "jitter never reorders");
    assert!(sent.elapsed() <= Duration::from_millis(30));
    let stats = bridge.shutdown().await;
    assert_eq!(stats.ports[1].delayed, 20);
    assert_eq!(stats.ports[1].delay_queued, 0);
}

#[tokio::test]
async fn a_port_whose_link_is_down_neither_sends_nor_receives() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), BitTiming::Fd1m5m, &[("n", "s"), ("m", "s")]);
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let control = bridge.control();
    let mut cl = connect_all(&bridge, &["n", "m"]).await;
    control.link_down("n", false).await.unwrap();
    let from_n: Vec<Frame> = (0..3).map(|i| numbered(0x30_0001, i)).collect();
    cl[0].send(&from_n).await;
    cl[1].send(&[numbered(0x10_FFF0, 9)]).await;
    let stats = wait_for(&bridge, "n's frames to wait", |s| {
        s.ports[0].tx_queued == 3 && s.ports[0].drops["link_down"] == 1
    })
    .await;
    assert!(!stats.ports[0].link_up);
    assert_eq!(
        cl[1].try_recv(Duration::from_millis(30)).await,
        None,
        "n is silent"
    );
    // Up again: its held frames go out; it hears new frames.
    control.link_up("n").await.unwrap();
    assert_eq!(cl[1].recv_n(3).await, from_n);
    cl[1].send(&[numbered(0x10_FFF0, 10)]).await;
    assert_eq!(
        cl[0].recv().await,
        numbered(0x10_FFF0, 10),
        "frame 9 is not replayed"
    );
    // Flush mode: what it sends while down is dropped and counted.
    control.link_down("n", true).await.unwrap();
    cl[0].send(&from_n).await;
    wait_for(&bridge, "n's frames dropped", |s| {
        s.ports[0].drops["tx_link_down"] == 3
    })
    .await;
    control.link_up("n").await.unwrap();
    cl[0].send(&[from_n[0]]).await;
    assert_eq!(cl[1].recv().await, from_n[0]);
    assert!(control.link_down("nobody", false).await.is_err());
    bridge.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_babbling_port_starves_higher_ids_until_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Classic1m,
        &[("babbler", "s"), ("node", "s"), ("l", "s")],
    );
    cfg.paced = true;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let control = bridge.control();
    let mut cl = connect_all(&bridge, &["babbler", "node", "l"]).await;
    control
        .babble_start("babbler", Babble::default())
        .await
        .unwrap();
    let wanted = std_frame(0x100, &[1]);
    cl[1].send(&[wanted]).await;
    // Only babble (id 0) gets through, back to back.
    let s0 = bridge.stats();
    for _ in 0..200 {
        assert_eq!(cl[2].recv().await.id(), 0);
    }
    let s = bridge.stats();
    assert!(s.ports[0].babbling && s.ports[0].babble_frames >= 200);
    assert_eq!(s.ports[1].frames_tx, 0, "starved, as on a real bus");
    let load = (s.segments[0].busy_ns - s0.segments[0].busy_ns) as f64
        / (s.uptime_ns - s0.uptime_ns) as f64;
    assert!(load > 0.95, "the babbler saturates the bus: {load}");
    assert!(control.babble_stop("babbler").await.unwrap());
    loop {
        let f = cl[2].recv().await;
        if f.id() != 0 {
            assert_eq!(f, wanted);
            break;
        }
    }
    // Rate-limited: 1 kHz for 100 ms of bus time.
    let before = bridge.stats().ports[0].babble_frames;
    control
        .babble_start(
            "babbler",
            Babble {
                rate_hz: Some(1000.0),
                ..Babble::default()
            },
        )
        .await
        .unwrap();
    sleep(Duration::from_millis(100)).await;
    control.babble_stop("babbler").await.unwrap();
    let n = bridge.stats().ports[0].babble_frames - before;
    assert!((99..=102).contains(&n), "{n} frames in 100 ms at 1 kHz");
    let err = control
        .babble_start(
            "babbler",
            Babble {
                fd: true,
                ..Babble::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("babble.fd:"), "{err}");
    bridge.shutdown().await;
}

async fn c_try(c: &mut Client) -> Option<Frame> {
    c.try_recv(Duration::from_millis(20)).await
}

/// Which numbered frames each receiver got, and the stats, for one seed.
async fn lossy_run(seed: u64) -> (Vec<Vec<u32>>, Vec<BTreeMap<String, u64>>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("tx", "s"), ("r1", "s"), ("r2", "s"), ("r3", "s")],
    );
    cfg.faults.seed = seed;
    cfg.rx_queue_depth = 1024;
    cfg.faults.rules = vec![
        Fault::loss(0.3),
        Fault::corrupt(0.2).on_port("r2"),
        Fault::loss(0.5).on_port("r3").correlated(),
    ];
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut events = bridge.subscribe();
    let mut cl = connect_all(&bridge, &["tx", "r1", "r2", "r3"]).await;
    const N: u32 = 300;
    for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
        let frames: Vec<Frame> = chunk.iter().map(|&n| numbered(0x50_0000, n)).collect();
        cl[0].send(&frames).await;
    }
    for _ in 0..N {
        events.recv().await.unwrap();
    }
    // Every frame has been on the bus, so every decision is made: a
    // receiver gets what it did not drop.
    let stats = bridge.stats();
    let mut got = Vec::new();
    for (i, c) in cl[1..].iter_mut().enumerate() {
        let n = u64::from(N) - stats.ports[i + 1].drops.values().sum::<u64>();
        got.push(c.recv_n(n as usize).await.iter().map(number_of).collect());
    }
    assert_eq!(c_try(&mut cl[1]).await, None, "nothing beyond");
    let drops = stats.ports.iter().map(|p| p.drops.clone()).collect();
    bridge.shutdown().await;
    (got, drops)
}

#[tokio::test]
async fn seeded_faults_decide_the_same_on_the_same_frames() {
    let (a, drops_a) = lossy_run(42).await;
    let (b, drops_b) = lossy_run(42).await;
    assert_eq!(a, b, "same seed, same frames: same decisions");
    assert_eq!(drops_a, drops_b);
    let (c, _) = lossy_run(43).await;
    assert_ne!(a, c, "another seed decides otherwise");
    // Roughly the probabilities asked for (300 frames each).
    let lost = |r: usize| 300 - a[r].len();
    assert!((50..130).contains(&lost(0)), "30%: {}", lost(0));
    assert!((100..190).contains(&lost(1)), "30% + 20%·70%: {}", lost(1));
    assert!(drops_a[2]["corrupt"] > 20);
}

/// A JSON-lines control client.
struct Ctl {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    w: tokio::net::unix::OwnedWriteHalf,
}

impl Ctl {
    async fn ask(&mut self, req: &str) -> Value {
        self.w
            .write_all(format!("{req}\n").as_bytes())
            .await
            .unwrap();
        let line = timeout(PATIENCE, self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

#[tokio::test]
async fn the_control_socket_runs_commands_and_names_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = library(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("m", "base"), ("n1", "ext1"), ("n2", "ha")],
    );
    let path = dir.path().join("control.sock");
    cfg.control_socket = Some(path.clone());
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["m", "n1", "n2"]).await;
    let (r, w) = tokio::net::UnixStream::connect(&path)
        .await
        .unwrap()
        .into_split();
    let mut ctl = Ctl {
        lines: BufReader::new(r).lines(),
        w,
    };
    let ok = |v: &Value| assert_eq!(v["ok"], true, "{v}");
    let a = ctl
        .ask(r#"{"cmd":"add_fault","fault":{"kind":"loss","port":"n2","probability":1}}"#)
        .await;
    ok(&a);
    assert_eq!(a["id"], 0);
    let f = ctl.ask(r#"{"cmd":"faults"}"#).await;
    assert_eq!(f["faults"][0]["fault"]["port"], "n2");
    cl[0].send(&[numbered(0x10_0000, 1)]).await;
    assert_eq!(cl[1].recv().await, numbered(0x10_0000, 1));
    ok(&ctl.ask(r#"{"cmd":"cut","link":"base-ext1"}"#).await);
    let t = ctl.ask(r#"{"cmd":"topology"}"#).await;
    assert_eq!(t["topology"]["domains"], json!([["base"], ["ext1", "ha"]]));
    ok(&ctl.ask(r#"{"cmd":"restore","link":"base-ext1"}"#).await);
    ok(&ctl
        .ask(r#"{"cmd":"link_down","port":"n1","flush":true}"#)
        .await);
    ok(&ctl.ask(r#"{"cmd":"link_up","port":"n1"}"#).await);
    ok(&ctl
        .ask(r#"{"cmd":"babble_start","port":"n2","babble":{"id":5,"count":3}}"#)
        .await);
    for _ in 0..3 {
        assert_eq!(cl[0].recv().await.id(), 5);
    }
    let b = ctl.ask(r#"{"cmd":"babble_stop","port":"n2"}"#).await;
    assert_eq!(b["was_babbling"], false, "it stopped after its count");
    let s = ctl.ask(r#"{"cmd":"stats"}"#).await;
    assert_eq!(s["stats"]["ports"][2]["drops"]["loss"], 1);
    assert_eq!(s["stats"]["ports"][2]["babble_frames"], 3);
    assert_eq!(s["stats"]["links"][0]["cuts"], 1);
    let c = ctl.ask(r#"{"cmd":"capture_status"}"#).await;
    assert_eq!(c, json!({"ok": true, "capture": null}));
    ok(&ctl.ask(r#"{"cmd":"remove_fault","id":0}"#).await);
    ok(&ctl.ask(r#"{"cmd":"clear_faults"}"#).await);

    // Bad requests: the field and the reason.
    let cases = [
        ("not json", "(request)"),
        ("[1]", "(request)"),
        (r#"{"x":1}"#, "cmd"),
        (r#"{"cmd":7}"#, "cmd"),
        (r#"{"cmd":"explode"}"#, "cmd"),
        (r#"{"cmd":"stats","extra":1}"#, "extra"),
        (r#"{"cmd":"cut"}"#, "link"),
        (r#"{"cmd":"cut","link":"nope"}"#, "link"),
        (r#"{"cmd":"cut","link":5}"#, "link"),
        (r#"{"cmd":"link_down","port":"n1","flush":"yes"}"#, "flush"),
        (r#"{"cmd":"link_up","port":"ghost"}"#, "port"),
        (r#"{"cmd":"remove_fault","id":99}"#, "id"),
        (
            r#"{"cmd":"add_fault","fault":{"kind":"loss","probability":1.5}}"#,
            "fault.probability",
        ),
        (
            r#"{"cmd":"add_fault","fault":{"kind":"loss","probability":"x"}}"#,
            "fault.probability",
        ),
        (
            r#"{"cmd":"add_fault","fault":{"kind":"lose"}}"#,
            "fault.kind",
        ),
        (
            r#"{"cmd":"add_fault","fault":{"kind":"loss","prob":1}}"#,
            "fault.prob",
        ),
        (
            r#"{"cmd":"add_fault","fault":{"kind":"loss","segment":"moon"}}"#,
            "fault.segment",
        ),
        (
            r#"{"cmd":"add_fault","fault":{"probability":1}}"#,
            "fault.kind",
        ),
        (
            r#"{"cmd":"babble_start","port":"n1","babble":{"id":4096}}"#,
            "babble.id",
        ),
        (
            r#"{"cmd":"babble_start","port":"n1","babble":{"rate_hz":0}}"#,
            "babble.rate_hz",
        ),
    ];
    for (req, field) in cases {
        let v = ctl.ask(req).await;
        assert_eq!(v["ok"], false, "{req}: {v}");
        assert_eq!(v["error"]["field"], field, "{req}: {v}");
        assert!(
            v["error"]["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{req}: {v}"
        );
    }
    // Still serving.
    ok(&ctl.ask(r#"{"cmd":"stats"}"#).await);
    bridge.shutdown().await;
    assert!(!path.exists(), "the control socket is removed");
}

#[tokio::test]
async fn a_flood_leaves_memory_bounded_and_the_bridge_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("flood", "s"), ("node", "s"), ("l", "s")],
    );
    cfg.rx_queue_depth = 64;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let control = bridge.control();
    let cl = connect_all(&bridge, &["flood", "node", "l"]).await;
    let mut it = cl.into_iter();
    let (mut flooder, mut node, mut l) =
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    // The listener reads everything and counts ids.
    let node_frames = Arc::new(AtomicU64::new(0));
    let seen = node_frames.clone();
    let listening = tokio::spawn(async move {
        loop {
            let f = l.recv().await;
            if f.id() == 0x100 {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // The flooder writes lowest-priority frames as fast as it can, then
    // highest-priority ones; counting the bytes the bridge accepted.
    let low_prio = encoded(&vec![std_frame(0x7FF, &[0xEE; 8]); 512]);
    let high_prio = encoded(&vec![std_frame(0x000, &[0xEE; 8]); 512]);
    let prio_high = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ph, acc, st) = (prio_high.clone(), accepted.clone(), stop.clone());
    let flooding = tokio::spawn(async move {
        while !st.load(Ordering::Relaxed) {
            let chunk = if ph.load(Ordering::Relaxed) {
                &high_prio
            } else {
                &low_prio
            };
            // Bounded: at most 4 GB in any case.
            if acc.load(Ordering::Relaxed) > 4 << 30 {
                break;
            }
            if timeout(Duration::from_millis(20), flooder.writer.send_raw(chunk))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                acc.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        flooder
    });
    // 1. A lower-priority flood: the node's frames still flow.
    wait_for(&bridge, "the flood", |s| s.ports[0].frames_tx > 2000).await;
    let n: u32 = 200;
    for i in 0..n {
        node.send(&[std_frame(0x100, &i.to_le_bytes())]).await;
    }
    timeout(PATIENCE, async {
        while node_frames.load(Ordering::Relaxed) < u64::from(n) {
            sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the node's frames got through the flood");
    // 2. A highest-priority flood: control stays responsive, queues stay
    // within their bounds.
    prio_high.store(true, Ordering::Relaxed);
    wait_for(&bridge, "id 0 on the bus", |s| s.ports[0].frames_tx > 4000).await;
    for _ in 0..20 {
        let t = Instant::now();
        let s = control.stats();
        control.add_fault(Fault::loss(0.0)).await.unwrap();
        assert!(t.elapsed() < PATIENCE);
        for p in &s.ports {
            assert!(
                p.tx_queued <= 4 && p.rx_queued <= 64 && p.delay_queued == 0,
                "{p:#?}"
            );
        }
        sleep(Duration::from_millis(5)).await;
    }
    // 3. Link down: the flooder is silent and held back; the node's frames
    // flow; what the bridge accepts from the flooder stays small.
    control.link_down("flood", false).await.unwrap();
    let tx_before = bridge.stats().ports[0].frames_tx;
    sleep(Duration::from_millis(50)).await;
    let held_at = accepted.load(Ordering::Relaxed);
    let before = node_frames.load(Ordering::Relaxed);
    for i in 0..n {
        node.send(&[std_frame(0x100, &i.to_le_bytes())]).await;
    }
    timeout(PATIENCE, async {
        while node_frames.load(Ordering::Relaxed) < before + u64::from(n) {
            sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the node's frames flow once the flooder's link is down");
    sleep(Duration::from_millis(100)).await;
    let s = bridge.stats();
    assert!(
        s.ports[0].frames_tx <= tx_before + 4,
        "the flooder got frames out while its link was down"
    );
    let grew = accepted.load(Ordering::Relaxed) - held_at;
    assert!(
        grew < 1 << 20,
        "the bridge kept reading a held-back flooder: {grew} bytes"
    );
    assert!(s.ports[0].tx_queued <= 4);
    stop.store(true, Ordering::Relaxed);
    let _ = timeout(PATIENCE, flooding).await;
    listening.abort();
    bridge.shutdown().await;
}
