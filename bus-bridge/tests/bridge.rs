//! The bridge end to end, in process, on unix sockets in a temporary folder.
//! Clients speak the link codec exactly as a QEMU node's UART or the master
//! would.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bus_bridge::{BitTiming, BridgeConfig, BridgeError, BusEvent, BusStats};
use common::*;
use proto::Frame;
use proto::frame::{FLAG_BRS, FLAG_EXTENDED, FLAG_FD};
use tokio::time::{sleep, timeout};

#[tokio::test]
async fn a_frame_reaches_every_other_port_on_its_segment_and_not_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[
            ("a", "s1"),
            ("b", "s1"),
            ("c", "s1"),
            ("d", "s1"),
            ("x", "s2"),
        ],
    );
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut events = bridge.subscribe();
    // `d` never connects.
    let mut cl = connect_all(&bridge, &["a", "b", "c", "x"]).await;
    let f1 = Frame::fd_extended(0x30_0001, b"from a").unwrap();
    let f2 = std_frame(0x123, &[1, 2, 3]);
    cl[0].send(&[f1]).await;
    assert_eq!(cl[1].recv().await, f1);
    assert_eq!(cl[2].recv().await, f1);
    cl[2].send(&[f2]).await;
    assert_eq!(cl[0].recv().await, f2);
    assert_eq!(cl[1].recv().await, f2);
    let stats = wait_for(&bridge, "deliveries", |s| {
        s.ports[0].frames_rx == 1 && s.ports[2].frames_rx == 1
    })
    .await;
    let rx: Vec<u64> = stats.ports.iter().map(|p| p.frames_rx).collect();
    let tx: Vec<u64> = stats.ports.iter().map(|p| p.frames_tx).collect();
    assert_eq!(
        rx,
        [1, 2, 1, 0, 0],
        "no frame goes back to its sender or to another segment"
    );
    assert_eq!(tx, [1, 0, 1, 0, 0]);
    assert_eq!(stats.ports[3].dropped_port_down, 2);
    assert_eq!(
        (stats.segments[0].frames, stats.segments[0].bytes),
        (2, 6 + 3)
    );
    assert_eq!(stats.segments[1].frames, 0);
    assert!(stats.segments[0].busy_ns > 0 && stats.segments[0].utilisation <= 1.0);
    let e1 = events.recv().await.unwrap();
    let e2 = events.recv().await.unwrap();
    assert_eq!((e1.port, e1.segment, e1.frame), (0, 0, f1));
    assert_eq!((e2.port, e2.segment, e2.frame), (2, 0, f2));
    assert!(e2.seq == e1.seq + 1 && e2.bus_time_ns > e1.bus_time_ns);
    // The JSON shape the binary prints.
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["preset"], "fd-1m-5m");
    assert_eq!(json["ports"][0]["link_errors"]["bad_crc"], 0);
    assert_eq!(json["segments"][0]["name"], "s1");
    bridge.shutdown().await;
}

/// The order frames leave the bus: repeatedly the lowest arbitration key
/// among the ports' FIFO heads.
fn arbitration_model(mut fifos: Vec<VecDeque<Frame>>) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(i) = (0..fifos.len())
        .filter(|&i| !fifos[i].is_empty())
        .min_by_key(|&i| (fifos[i][0].arbitration_key(), i))
    {
        out.push(fifos[i].pop_front().unwrap());
    }
    out
}

// Paused clock: socket I/O is still real, but tokio only moves time forward
// when every task waits, so "while the bus is busy" is exact.
#[tokio::test(start_paused = true)]
async fn pending_frames_win_by_identifier_and_each_sender_keeps_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Classic125k,
        &[
            ("a", "s"),
            ("b", "s"),
            ("c", "s"),
            ("d", "s"),
            ("listener", "s"),
        ],
    );
    cfg.paced = true;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut events = bridge.subscribe();
    let mut cl = connect_all(&bridge, &["a", "b", "c", "d", "listener"]).await;
    let ext_123 = Frame::new(0x123 << 18 | 5, FLAG_EXTENDED, &[0xEE]).unwrap();
    let a: Vec<Frame> = (0x700..0x704).map(|id| std_frame(id, &[0xAA; 8])).collect();
    let b = vec![
        std_frame(0x120, &[1]),
        std_frame(0x110, &[2]),
        std_frame(0x400, &[3]),
    ];
    let c = vec![std_frame(0x100, &[4]), ext_123, std_frame(0x050, &[5])];
    let d = vec![std_frame(0x123, &[6]), std_frame(0x300, &[7])];

    // `a`'s first frame takes the idle bus (~1 ms at 125 kbit/s); the rest
    // queue up behind it and contend when it ends.
    cl[0].send(&a).await;
    sleep(Duration::from_micros(1000)).await;
    cl[1].send(&b).await;
    cl[2].send(&c).await;
    cl[3].send(&d).await;

    let ids = |fs: &[Frame]| fs.iter().map(|f| f.id()).collect::<Vec<_>>();
    let heard = cl[4].recv_n(12).await;
    assert_eq!(
        ids(&heard),
        [
            0x700,
            0x701,
            0x100,
            0x120,
            0x110,
            0x123,
            ext_123.id(),
            0x050,
            0x300,
            0x400,
            0x702,
            0x703
        ],
        "lowest id first; 0x110 waits behind 0x120 and 0x050 behind its FIFO; standard 0x123 beats extended 0x123/…"
    );
    // `a`'s first two frames had the bus to themselves (the others arrived
    // during the first); then the model's order.
    let mut expected = a[..2].to_vec();
    expected.extend(arbitration_model(vec![
        a[2..].iter().copied().collect(),
        b.iter().copied().collect(),
        c.iter().copied().collect(),
        d.iter().copied().collect(),
    ]));
    assert_eq!(heard, expected);
    // Every sender hears the same order, minus its own frames.
    for (i, own) in [&a, &b, &c, &d].into_iter().enumerate() {
        let want: Vec<Frame> = expected
            .iter()
            .filter(|f| !own.contains(f))
            .copied()
            .collect();
        assert_eq!(cl[i].recv_n(want.len()).await, want, "port {i}");
    }
    // From the second frame on the bus never idles: each frame ends exactly
    // one frame time after the previous one.
    let evs: Vec<BusEvent> = {
        let mut v = Vec::new();
        for _ in 0..12 {
            v.push(events.recv().await.unwrap());
        }
        v
    };
    assert_eq!(evs.iter().map(|e| e.frame).collect::<Vec<_>>(), expected);
    for w in evs.windows(2) {
        let gap = w[1].bus_time_ns - w[0].bus_time_ns;
        assert_eq!(
            gap,
            BitTiming::Classic125k.frame_time_ns(&w[1].frame).unwrap(),
            "{:?}",
            w[1].frame
        );
    }
    bridge.shutdown().await;
}

/// A mix of every frame format, all from one sender, as `(frames, total bus
/// time)`.
fn frame_mix() -> (Vec<Frame>, u64) {
    let mut frames = Vec::new();
    for i in 0..24u32 {
        let len = [0usize, 1, 8, 12, 20, 64][i as usize % 6];
        let data: Vec<u8> = (0..len as u32).map(|k| (k * 7 + i) as u8).collect();
        let f = match i % 4 {
            0 => Frame::new(0x100 + i, 0, &data[..len.min(8)]).unwrap(),
            1 => Frame::new(0x10_0000 + i, FLAG_EXTENDED, &data[..len.min(8)]).unwrap(),
            2 => Frame::new(0x200 + i, FLAG_FD, &data).unwrap(),
            _ => Frame::fd_extended(0x20_0000 + i, &data).unwrap(),
        };
        frames.push(f);
    }
    let total = frames
        .iter()
        .map(|f| BitTiming::Fd1m2m.frame_time_ns(f).unwrap())
        .sum();
    (frames, total)
}

async fn run_mix(paced: bool) -> (BusStats, Vec<BusEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), BitTiming::Fd1m2m, &[("tx", "s"), ("rx", "s")]);
    cfg.paced = paced;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut events = bridge.subscribe();
    let mut cl = connect_all(&bridge, &["tx", "rx"]).await;
    let (frames, _) = frame_mix();
    cl[0].send(&frames).await;
    assert_eq!(
        cl[1].recv_n(frames.len()).await,
        frames,
        "one sender's frames keep their order"
    );
    let mut evs = Vec::new();
    for _ in 0..frames.len() {
        evs.push(events.recv().await.unwrap());
    }
    (bridge.shutdown().await, evs)
}

#[tokio::test(start_paused = true)]
async fn paced_and_unpaced_account_the_same_bus_time() {
    let (frames, total) = frame_mix();
    let (paced, paced_ev) = run_mix(true).await;
    let (unpaced, unpaced_ev) = run_mix(false).await;
    assert_eq!(paced.segments[0].busy_ns, total);
    assert_eq!(unpaced.segments[0].busy_ns, total);
    assert_eq!(paced.segments[0].frames, frames.len() as u64);
    assert_eq!(unpaced.segments[0].bytes, paced.segments[0].bytes);
    // Frame after frame, back to back, in both modes (the sender's FIFO
    // never runs dry while it has frames).
    for evs in [&paced_ev, &unpaced_ev] {
        for w in evs.windows(2) {
            assert_eq!(
                w[1].bus_time_ns - w[0].bus_time_ns,
                BitTiming::Fd1m2m.frame_time_ns(&w[1].frame).unwrap()
            );
        }
    }
    assert!(paced.paced && !unpaced.paced);
    assert!(paced.segments[0].utilisation > 0.0 && paced.segments[0].utilisation <= 1.0);
}

/// COBS, for hand-made broken link frames.
fn cobs(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    let mut code_at = 0;
    for &b in raw {
        if b == 0 {
            code_at = out.len();
            out.push(0);
        } else {
            out.push(b);
        }
        let code = (out.len() - code_at) as u8;
        out[code_at] = code;
        if code == 0xFF {
            code_at = out.len();
            out.push(0);
        }
    }
    let code = (out.len() - code_at) as u8;
    out[code_at] = code;
    out
}

/// A link frame from a raw header + data, with a CRC (right unless `bad_crc`).
fn link_frame(raw: &[u8], bad_crc: bool) -> Vec<u8> {
    let crc = proto::crc::crc32(raw) ^ u32::from(bad_crc);
    let mut body = raw.to_vec();
    body.extend(crc.to_le_bytes());
    let mut out = cobs(&body);
    out.push(0);
    out
}

#[tokio::test]
async fn bad_link_input_is_counted_by_kind_and_never_reaches_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bus_bridge::start(config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("g", "s"), ("a", "s"), ("b", "s")],
    ))
    .await
    .unwrap();
    let mut cl = connect_all(&bridge, &["g", "a", "b"]).await;
    let mut g = cl.remove(0);
    // Sanity: our hand-made encoder agrees with proto's.
    let good = Frame::fd_extended(0x48_0007, &[9, 0, 9]).unwrap();
    let mut raw = vec![good.flags()];
    raw.extend(good.id().to_le_bytes());
    raw.push(3);
    raw.extend([9, 0, 9]);
    assert_eq!(link_frame(&raw, false), encoded(&[good]));

    // 10 MB with no delimiter, while `a` talks to `b`.
    let flood = tokio::spawn(async move {
        let mut x: u32 = 0x1234_5678;
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..160 {
            for b in chunk.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = (x as u8) | 1; // never zero
            }
            g.send_bytes(&chunk).await;
        }
        g.send_bytes(&[0]).await;
        g
    });
    let talk: Vec<Frame> = (0..50).map(|i| std_frame(0x200 + i, &[i as u8])).collect();
    for f in &talk {
        cl[0].send(&[*f]).await;
    }
    assert_eq!(
        cl[1].recv_n(50).await,
        talk,
        "other ports keep working during the flood"
    );
    let mut g = timeout(PATIENCE, flood)
        .await
        .expect("the bridge kept reading")
        .unwrap();
    wait_for(&bridge, "the oversize drop", |s| {
        s.ports[0].link_errors["oversize"] == 1
    })
    .await;

    let mut bad = Vec::new();
    bad.extend([0x05, 0x11, 0x00]); // COBS code points past the end
    bad.extend(cobs(&[1, 2, 3]).iter().chain(&[0])); // too short for a header and CRC
    bad.extend(link_frame(&raw, true)); // CRC off by one bit
    let mut wrong_len = raw.clone();
    wrong_len[5] = 4;
    bad.extend(link_frame(&wrong_len, false)); // length byte disagrees
    let mut bad_flags = raw.clone();
    bad_flags[0] = 0x80;
    bad.extend(link_frame(&bad_flags, false)); // unknown flag, valid CRC
    bad.extend(encoded(&[good])); // then a good frame: the decoder resynchronised
    g.send_bytes(&bad).await;
    assert_eq!(cl[0].recv().await, good, "only the good frame gets through");
    assert_eq!(cl[1].recv().await, good);
    let stats = wait_for(&bridge, "link error counts", |s| {
        s.ports[0].link_errors.values().sum::<u64>() == 6
    })
    .await;
    for kind in [
        "oversize",
        "bad_cobs",
        "truncated",
        "bad_crc",
        "length_mismatch",
        "bad_frame",
    ] {
        assert_eq!(stats.ports[0].link_errors[kind], 1, "{kind}");
    }
    assert_eq!(stats.totals.link_errors, 6);
    assert_eq!(stats.ports[0].frames_tx, 1);
    assert_eq!(stats.segments[0].frames, 51);
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_never_reads_overruns_alone_after_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("tx", "s"), ("reader", "s"), ("stuck", "s")],
    );
    cfg.rx_queue_depth = 4;
    // Long enough that the reading client, briefly descheduled on a busy
    // 2-core machine, is never taken for a stalled one.
    cfg.stall_timeout = Duration::from_millis(100);
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "reader", "stuck"]).await;
    let stuck = cl.pop().unwrap(); // connected, never read
    let mut reader = cl.pop().unwrap();
    let mut tx = cl.pop().unwrap();
    // The reader checks that it gets every frame, in order.
    let got = Arc::new(AtomicU64::new(0));
    let got2 = got.clone();
    let reading = tokio::spawn(async move {
        loop {
            let f = reader.recv().await;
            let n = u32::from_le_bytes(f.data()[..4].try_into().unwrap());
            assert_eq!(
                u64::from(n),
                got2.load(Ordering::Relaxed),
                "a frame went missing"
            );
            got2.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Send until the stuck port's socket buffer and queue are full and it
    // overruns (a few thousand 64-byte frames).
    let mut sent = 0u32;
    while bridge.stats().ports[2].overruns == 0 {
        assert!(sent < 40_000, "never overran: {:#?}", bridge.stats());
        let batch: Vec<Frame> = (sent..sent + 200).map(numbered).collect();
        tx.send(&batch).await;
        sent += 200;
        sleep(Duration::from_millis(1)).await;
    }
    let n = u64::from(sent);
    wait_for(&bridge, "the reader to get everything", |s| {
        s.ports[1].frames_rx == n
    })
    .await;
    timeout(PATIENCE, async {
        while got.load(Ordering::Relaxed) < n {
            sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the reader got every frame");
    reading.abort();
    // Once the stuck client goes away, its queued frames count as lost too:
    // every frame is accounted for.
    drop(stuck);
    let stats = wait_for(&bridge, "the stuck port to close", |s| {
        !s.ports[2].connected
    })
    .await;
    let p = &stats.ports[2];
    assert!(p.overruns > 0);
    assert_eq!(p.frames_rx + p.overruns + p.dropped_port_down, n, "{p:#?}");
    assert_eq!((stats.ports[0].frames_tx, stats.ports[1].overruns), (n, 0));
    bridge.shutdown().await;
}

fn numbered(n: u32) -> Frame {
    let mut data = [0x5A; 64];
    data[..4].copy_from_slice(&n.to_le_bytes());
    Frame::fd_extended(0xF0_FFF0, &data).unwrap()
}

/// Reads `n` frames and checks they are `numbered(0..n)`, in order.
async fn read_numbered(client: &mut Client, n: u32) {
    for i in 0..n {
        let f = client.recv().await;
        assert_eq!(f, numbered(i), "frame {i} missing or out of order");
    }
}

#[tokio::test]
async fn an_unpaced_bus_waits_for_a_slow_receiver_within_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("tx", "s"), ("fast", "s"), ("slow", "s")],
    );
    cfg.rx_queue_depth = 4;
    cfg.stall_timeout = PATIENCE;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "fast", "slow"]).await;
    let mut slow = cl.pop().unwrap();
    let mut fast = cl.pop().unwrap();
    let mut tx = cl.pop().unwrap();
    // Several times what the slow client's socket buffer and queue hold
    // (the bus stood still after 676 frames here).
    const N: u32 = 3_000;
    let sending = tokio::spawn(async move {
        for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
            tx.send(&chunk.iter().map(|&n| numbered(n)).collect::<Vec<_>>())
                .await;
        }
        tx
    });
    let fast_reading = tokio::spawn(async move { read_numbered(&mut fast, N).await });
    // The slow client does not read yet: once its socket and queue are
    // full, the bus stands still instead of dropping.
    wait_for(&bridge, "the bus to start", |s| s.ports[0].frames_tx > 0).await;
    let held = loop {
        let before = bridge.stats().ports[0].frames_tx;
        sleep(Duration::from_millis(50)).await;
        let after = bridge.stats();
        if after.ports[0].frames_tx == before {
            break after;
        }
    };
    assert!(
        held.ports[0].frames_tx < u64::from(N),
        "the slow client never held the bus"
    );
    assert_eq!(held.totals.overruns, 0);
    // Now it reads, and gets every frame.
    read_numbered(&mut slow, N).await;
    timeout(PATIENCE, fast_reading).await.unwrap().unwrap();
    let _tx = timeout(PATIENCE, sending).await.unwrap().unwrap();
    let stats = bridge.shutdown().await;
    assert_eq!(stats.totals.overruns, 0);
    assert_eq!(stats.ports[0].frames_tx, u64::from(N));
}

/// A port served in batches (`deliver_every_ms`) gets every frame, in
/// order, as a port served frame by frame does.
#[tokio::test]
async fn a_port_served_in_batches_gets_every_frame_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("tx", "s"), ("batched", "s"), ("each", "s")],
    );
    cfg.paced = true;
    cfg.ports[1].deliver_every_ms = 2;
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "batched", "each"]).await;
    let mut each = cl.pop().unwrap();
    let mut batched = cl.pop().unwrap();
    let mut tx = cl.pop().unwrap();
    const N: u32 = 200;
    let sending = tokio::spawn(async move {
        tx.send(&(0..N).map(numbered).collect::<Vec<_>>()).await;
        tx
    });
    read_numbered(&mut batched, N).await;
    read_numbered(&mut each, N).await;
    let _tx = timeout(PATIENCE, sending).await.unwrap();
    let stats = bridge.shutdown().await;
    assert_eq!(stats.ports[1].frames_rx, u64::from(N));
    assert_eq!(stats.totals.overruns, 0);
}

/// A port's own `tx_fifo_depth` bounds how many frames the bridge takes
/// from its client ahead of the bus; the others keep the bridge's.
#[tokio::test]
async fn a_port_with_its_own_fifo_depth_is_taken_that_far_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Classic125k,
        &[("deep", "s"), ("plain", "s"), ("rx", "s")],
    );
    cfg.paced = true;
    cfg.ports[0].tx_fifo_depth = Some(40);
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["deep", "plain", "rx"]).await;
    let mut rx = cl.pop().unwrap();
    let mut plain = cl.pop().unwrap();
    let mut deep = cl.pop().unwrap();
    // About 1 ms a frame: both send far more than their FIFOs hold.
    const N: u32 = 100;
    let frames = |id| {
        (0..N)
            .map(|n: u32| std_frame(id, &n.to_le_bytes()))
            .collect::<Vec<_>>()
    };
    deep.send(&frames(0x200)).await;
    plain.send(&frames(0x300)).await;
    let deepest = BridgeConfig::default().tx_fifo_depth as u64;
    let stats = wait_for(&bridge, "the deep FIFO to fill", |s| {
        s.ports[0].tx_queued >= 30
    })
    .await;
    assert!(stats.ports[0].tx_queued <= 40, "{:?}", stats.ports[0]);
    assert!(stats.ports[1].tx_queued <= deepest, "{:?}", stats.ports[1]);
    assert!(deepest < 30, "the bridge's default is shallower");
    let got = rx.recv_n(2 * N as usize).await;
    for id in [0x200, 0x300] {
        let order: Vec<u32> = got.iter().filter(|f| f.id() == id).map(number_of).collect();
        assert_eq!(order, (0..N).collect::<Vec<_>>(), "{id:#x} in order");
    }
    let stats = bridge.shutdown().await;
    assert_eq!(stats.totals.overruns, 0);
}

#[tokio::test]
async fn a_new_client_replaces_the_old_one_and_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bus_bridge::start(config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("node", "s"), ("master", "s")],
    ))
    .await
    .unwrap();
    let mut cl = connect_all(&bridge, &["node", "master"]).await;
    let mut master = cl.pop().unwrap();
    let mut first = cl.pop().unwrap();
    let f = |n: u8| Frame::fd_extended(0x20_FFF0, &[n]).unwrap();
    master.send(&[f(1)]).await;
    assert_eq!(first.recv().await, f(1));

    // QEMU respawned: a second client on the same socket replaces the first.
    let mut second = Client::connect(&sock(dir.path(), "node")).await;
    first.closed().await;
    wait_for(&bridge, "the second connection", |s| {
        s.ports[0].connects == 2 && s.ports[0].connected
    })
    .await;
    master.send(&[f(2)]).await;
    assert_eq!(second.recv().await, f(2));

    // Half a frame, then the node dies: the next client must not finish it.
    let from_node = Frame::fd_extended(0x30_0001, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let bytes = encoded(&[from_node]);
    second.send_bytes(&bytes[..6]).await;
    drop(second);
    wait_for(&bridge, "the disconnect", |s| !s.ports[0].connected).await;
    master.send(&[f(3)]).await; // nobody on `node` to hear it
    wait_for(&bridge, "the missed frame", |s| {
        s.ports[0].dropped_port_down == 1
    })
    .await;

    let mut third = Client::connect(&sock(dir.path(), "node")).await;
    wait_for(&bridge, "the third connection", |s| {
        s.ports[0].connects == 3 && s.ports[0].connected
    })
    .await;
    third.send_bytes(&bytes[6..]).await;
    third.send(&[from_node]).await;
    assert_eq!(master.recv().await, from_node);
    master.send(&[f(4)]).await;
    assert_eq!(
        third.recv().await,
        f(4),
        "frame 3 was not kept for the new client"
    );
    let stats = bridge.shutdown().await;
    assert_eq!(
        stats.ports[0].frames_tx, 1,
        "the torn frame never reached the bus"
    );
    assert_eq!(stats.ports[0].link_errors.values().sum::<u64>(), 1);
    assert_eq!(stats.ports[0].frames_rx, 3);
}

#[tokio::test]
async fn a_classic_bus_refuses_fd_frames() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bus_bridge::start(config(
        dir.path(),
        BitTiming::Classic500k,
        &[("a", "s"), ("b", "s")],
    ))
    .await
    .unwrap();
    let mut cl = connect_all(&bridge, &["a", "b"]).await;
    let fd = Frame::fd_extended(0x10, &[1; 12]).unwrap();
    let classic = Frame::new(0x10, FLAG_EXTENDED, &[1; 8]).unwrap();
    let fd_no_brs = Frame::new(0x11, FLAG_FD, &[]).unwrap();
    cl[0].send(&[fd, fd_no_brs, classic]).await;
    assert_eq!(cl[1].recv().await, classic);
    let stats = bridge.shutdown().await;
    assert_eq!(stats.ports[0].fd_on_classic_bus, 2);
    assert_eq!(stats.totals.frames, 1);
    let _ = FLAG_BRS;
}

#[tokio::test]
async fn sockets_are_claimed_carefully_and_removed_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A stale socket from a bridge that died is replaced.
    drop(std::os::unix::net::UnixListener::bind(sock(d, "stale")).unwrap());
    assert!(sock(d, "stale").exists());
    // A regular file and a live listener are left alone.
    std::fs::write(sock(d, "file"), b"precious").unwrap();
    let _live = std::os::unix::net::UnixListener::bind(sock(d, "live")).unwrap();

    let err = bus_bridge::start(config(
        d,
        BitTiming::Fd1m5m,
        &[("stale", "s"), ("file", "s")],
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, BridgeError::NotASocket { ref port, .. } if port == "file"),
        "{err}"
    );
    assert!(
        !sock(d, "stale").exists(),
        "a failed start leaves no socket behind"
    );
    assert_eq!(std::fs::read(sock(d, "file")).unwrap(), b"precious");
    let err = bus_bridge::start(config(d, BitTiming::Fd1m5m, &[("live", "s")]))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, BridgeError::SocketInUse { ref port, .. } if port == "live"),
        "{err}"
    );
    let err = bus_bridge::start(BridgeConfig {
        segments: vec![],
        ..config(d, BitTiming::Fd1m5m, &[])
    })
    .await
    .err();
    assert!(matches!(err, Some(BridgeError::NoSegments)));

    drop(std::os::unix::net::UnixListener::bind(sock(d, "stale")).unwrap());
    let bridge = bus_bridge::start(config(
        d,
        BitTiming::Fd1m5m,
        &[("stale", "s"), ("other", "s")],
    ))
    .await
    .unwrap();
    let _c = connect_all(&bridge, &["stale", "other"]).await;
    let stats = bridge.shutdown().await;
    assert_eq!(stats.ports[0].connects, 1);
    assert!(!sock(d, "stale").exists() && !sock(d, "other").exists());

    // Dropping the bridge cleans up too.
    let bridge = bus_bridge::start(config(d, BitTiming::Fd1m5m, &[("dropped", "s")]))
        .await
        .unwrap();
    assert!(sock(d, "dropped").exists());
    drop(bridge);
    assert!(!sock(d, "dropped").exists());
}

#[tokio::test]
async fn a_port_gets_only_what_its_acceptance_filter_passes() {
    use proto::filter::{AcceptanceFilter, FilterEntry};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("node", "s"), ("master", "s"), ("peer", "s")],
    );
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["node", "master", "peer"]).await;
    // The node wants kinds 0x10..=0x11 and 0xF0 only.
    let filter = AcceptanceFilter::new(&[
        FilterEntry {
            id: 0x10 << 16,
            mask: 0x1FFE_0000,
            extended: true,
        },
        FilterEntry {
            id: 0xF0 << 16,
            mask: 0x1FFF_0000,
            extended: true,
        },
    ])
    .unwrap();
    cl[0].writer.set_filter(&filter).await.unwrap();
    let wanted = Frame::fd_extended(0x11 << 16 | 0xFFF0, b"check").unwrap();
    let unwanted = Frame::fd_extended(0x60 << 16 | 3, b"heartbeat").unwrap();
    let data = Frame::fd_extended(0xF0 << 16 | 0xFFF0, b"data").unwrap();
    // The filter reaches the bridge in line with the node's own frames: a
    // frame the node sends after it proves the filter is in place.
    cl[0]
        .send(&[Frame::fd_extended(0x30 << 16 | 1, b"req").unwrap()])
        .await;
    assert_eq!(cl[1].recv().await.data()[..3], *b"req");
    cl[2].send(&[unwanted]).await;
    cl[1].send(&[wanted, data]).await;
    assert_eq!(cl[0].recv_n(2).await, [wanted, data]);
    // The master has no filter and got everything.
    assert_eq!(cl[1].recv().await, unwanted);
    let stats = wait_for(&bridge, "filtering counted", |s| s.ports[0].filtered == 1).await;
    assert_eq!(stats.ports[0].frames_rx, 2);
    assert_eq!(
        stats.totals.link_errors, 0,
        "a filter record is not a link error"
    );
    bridge.shutdown().await;
}
