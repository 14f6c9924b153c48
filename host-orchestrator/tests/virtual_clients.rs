//! Host clients on the virtual clock, without QEMU: two programs on timed
//! ports of a virtual bridge, each on its own [`VirtualClient`]. Their
//! timers and frames happen at the bus's times, idle time is skipped, and
//! a command from outside the bus is taken at once.

use std::time::Duration;

use bus_bridge::client;
use bus_bridge::{BitTiming, BridgeConfig, BusClock, PortConfig, VirtualClock};
use host_orchestrator::clock::{Clock, Inbox, Moment, PortWriter, VirtualClient};
use proto::Frame;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

fn config(dir: &std::path::Path) -> BridgeConfig {
    let port = |name: &str| PortConfig {
        timed: true,
        ..PortConfig::new(name, "base", dir.join(format!("{name}.sock")))
    };
    BridgeConfig {
        segments: vec!["base".into()],
        ports: vec![port("ping"), port("pong")],
        timing: BitTiming::Fd1m5m,
        clock: BusClock::Virtual(VirtualClock::default()),
        ..BridgeConfig::default()
    }
}

async fn connect(dir: &std::path::Path, name: &str) -> VirtualClient {
    let (r, w) = client::connect(&dir.join(format!("{name}.sock")))
        .await
        .expect("connect");
    VirtualClient::new(r, w)
}

/// Sends a frame every 5 s of virtual time, three times; returns when each
/// was sent and its answer came. (The same bytes each time: a frame's
/// length on the wire depends on its bits.)
async fn ping(clock: Clock, mut inbox: Inbox, mut writer: PortWriter) -> Vec<(u64, u64)> {
    let mut heard = Vec::new();
    for n in 1..=3u8 {
        clock
            .sleep_until(Moment::from_ns(u64::from(n) * 5_000_000_000))
            .await;
        let sent = clock.now();
        writer
            .send(&Frame::new(0x100, 0, &[7]).unwrap())
            .await
            .unwrap();
        let answer = inbox.recv().await.expect("an answer");
        assert_eq!(answer.data(), [7]);
        heard.push((sent.as_ns(), clock.now().as_ns()));
    }
    heard
}

/// Answers every frame at once; also answers a command from outside.
async fn pong(
    clock: Clock,
    mut inbox: Inbox,
    mut writer: PortWriter,
    mut outside: mpsc::Receiver<oneshot::Sender<u64>>,
) {
    loop {
        tokio::select! {
            biased;
            Some(reply) = outside.recv() => { let _ = reply.send(clock.now().as_ns()); }
            f = inbox.recv() => match f {
                Some(f) => writer.send(&Frame::new(0x101, 0, f.data()).unwrap()).await.unwrap(),
                None => return,
            },
        }
    }
}

#[tokio::test]
async fn virtual_clients_meet_at_bus_times_and_skip_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bus_bridge::start(config(dir.path())).await.unwrap();
    let ponger = connect(dir.path(), "pong").await;
    let (ask, outside) = mpsc::channel(1);
    let root = ponger.clock.spawn(pong(
        ponger.clock.clone(),
        ponger.inbox,
        ponger.writer,
        outside,
    ));
    let pong_task = tokio::spawn(ponger.driving.run(root));
    // A command from outside the bus is taken at once, at the time reached.
    let (tx, rx) = oneshot::channel();
    ask.send(tx).await.unwrap();
    assert_eq!(timeout(PATIENCE, rx).await.unwrap().unwrap(), 0);
    let pinger = connect(dir.path(), "ping").await;
    let root = pinger
        .clock
        .spawn(ping(pinger.clock.clone(), pinger.inbox, pinger.writer));
    let started = std::time::Instant::now();
    let heard = timeout(PATIENCE, pinger.driving.run(root))
        .await
        .expect("15 s of virtual time in much less wall time")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    // Each ping goes out at its timer; its answer comes two frames later
    // (each about 50 us on CAN FD 1M/5M), the same every time.
    let frame_ns = BitTiming::Fd1m5m
        .frame_time_ns(&Frame::new(0x100, 0, &[7]).unwrap())
        .unwrap();
    let rtt: Vec<u64> = heard.iter().map(|(s, h)| h - s).collect();
    assert_eq!(heard[0].0, 5_000_000_000);
    assert_eq!(heard[2].0, 15_000_000_000);
    assert!(rtt.iter().all(|&r| r == rtt[0]), "{heard:?}");
    assert!(
        rtt[0] > 2 * frame_ns && rtt[0] < 4 * frame_ns,
        "{rtt:?} vs {frame_ns}"
    );
    let (tx, rx) = oneshot::channel();
    ask.send(tx).await.unwrap();
    let pong_now = timeout(PATIENCE, rx).await.unwrap().unwrap();
    assert!(pong_now >= heard[2].0, "{pong_now}");
    drop(ask);
    bridge.shutdown().await;
    pong_task.await.unwrap().unwrap();
}
