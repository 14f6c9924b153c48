//! `bus-bench`: how fast the bridge routes frames, how much latency it
//! adds, and how close a paced bus comes to the frame-format maximum.
//!
//! Runs the bridge in process with real unix-socket clients speaking the
//! link codec, as QEMU nodes do. Build with `--release`; run as
//! `cargo xtask bench bus` or `cargo run --release -p bus-bridge --bin
//! bus-bench`. Prints one markdown table; `--json FILE` writes the figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bus_bridge::client::{self, ConnectOptions, FrameReader, FrameWriter, encode_frames};
use bus_bridge::{BitTiming, Bridge, BridgeConfig, PortConfig};
use clap::Parser;
use proto::Frame;
use proto::link::{MAX_ENCODED, encode};
use serde::Serialize;
use tokio::sync::mpsc;

/// Measures the bus bridge.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Ports on the bus.
    #[arg(long, default_value_t = 40)]
    ports: usize,
    /// Throughput: frames each sender sends.
    #[arg(long, default_value_t = 2000)]
    frames: u32,
    /// Latency: frames timed one at a time.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Paced run: seconds of saturating load measured.
    #[arg(long, default_value_t = 10.0)]
    paced_secs: f64,
    /// Paced run: ports that keep their TX FIFO full.
    #[arg(long, default_value_t = 4)]
    paced_senders: usize,
    /// Bit-rate preset of the paced run.
    #[arg(long, default_value = "fd-1m-5m")]
    preset: BitTiming,
    /// Also write the figures to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
struct Report {
    ports: usize,
    broadcast: Throughput,
    all_to_all: Throughput,
    latency: Latency,
    paced: Paced,
}

#[derive(Serialize, Debug)]
struct Throughput {
    senders: usize,
    frames: u64,
    seconds: f64,
    /// Frames won the bus per second.
    frames_per_s: f64,
    /// Frames handed to receiving clients per second.
    deliveries_per_s: f64,
    overruns: u64,
}

#[derive(Serialize, Debug)]
struct Latency {
    samples: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(Serialize, Debug)]
struct Paced {
    preset: String,
    senders: usize,
    seconds: f64,
    frames: u64,
    /// Bus time of the frames sent over the wall time measured.
    utilisation: f64,
    /// Frames sent over the most that fit back to back in that time.
    frames_vs_max: f64,
    /// `1 - utilisation`: the shortfall from the frame-format maximum.
    shortfall: f64,
}

fn frame(id: u32, n: u32) -> Frame {
    let mut data = [0x5Au8; 8];
    data[..4].copy_from_slice(&n.to_le_bytes());
    Frame::fd_extended(id, &data).expect("a valid frame")
}

fn encode_all(frames: impl Iterator<Item = Frame>) -> Vec<u8> {
    encode_frames(&frames.collect::<Vec<_>>())
}

async fn bridge(
    dir: &Path,
    ports: usize,
    timing: BitTiming,
    paced: bool,
) -> anyhow::Result<Bridge> {
    let config = BridgeConfig {
        segments: vec!["base".into()],
        ports: (0..ports)
            .map(|i| PortConfig::new(format!("p{i}"), "base", dir.join(format!("p{i}.sock"))))
            .collect(),
        timing,
        paced,
        rx_queue_depth: 256,
        ..BridgeConfig::default()
    };
    bus_bridge::start(config)
        .await
        .context("starting the bridge")
}

/// A client per port, with the system's socket buffers, as QEMU has.
async fn connect(bridge: &Bridge) -> anyhow::Result<Vec<(FrameReader, FrameWriter)>> {
    let mut out = Vec::new();
    for p in bridge.ports() {
        out.push(client::connect_with(&p.socket, ConnectOptions::PLAIN).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bridge.stats().ports.iter().all(|p| p.connected) {
        if Instant::now() > deadline {
            bail!("clients did not connect");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(out)
}

/// Reads frames until `want` have arrived; `None` means forever.
async fn count_frames(
    mut rd: FrameReader,
    want: Option<u64>,
    seen: Option<mpsc::UnboundedSender<Instant>>,
) -> u64 {
    let mut got = 0u64;
    while want.is_none_or(|w| got < w) {
        let Ok(Some(_)) = rd.next().await else {
            break;
        };
        got += 1;
        if let Some(tx) = &seen {
            let _ = tx.send(Instant::now());
        }
    }
    got
}

/// `senders` ports each send `frames` frames; everyone reads everything.
async fn throughput(ports: usize, senders: usize, frames: u32) -> anyhow::Result<Throughput> {
    let dir = tempfile::Builder::new()
        .prefix("bc-bench-")
        .tempdir_in("/tmp")?;
    let bridge = bridge(dir.path(), ports, BitTiming::Fd1m5m, false).await?;
    let clients = connect(&bridge).await?;
    let total = u64::from(frames) * senders as u64;
    let start = Instant::now();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, (rd, mut wr)) in clients.into_iter().enumerate() {
        let own = if i < senders { u64::from(frames) } else { 0 };
        readers.push(tokio::spawn(count_frames(rd, Some(total - own), None)));
        if i < senders {
            let bytes = encode_all((0..frames).map(|n| frame(0x100_0000 + i as u32, n)));
            writers.push(tokio::spawn(async move {
                let _ = wr.send_raw(&bytes).await;
                wr
            }));
        } else {
            writers.push(tokio::spawn(async move { wr }));
        }
    }
    let mut delivered = 0;
    for r in readers {
        delivered += r.await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let stats = bridge.shutdown().await;
    drop(writers);
    Ok(Throughput {
        senders,
        frames: stats.totals.frames,
        seconds,
        frames_per_s: stats.totals.frames as f64 / seconds,
        deliveries_per_s: delivered as f64 / seconds,
        overruns: stats.totals.overruns,
    })
}

/// One frame at a time from port 0 to port 1, every other port listening.
async fn latency(ports: usize, samples: usize) -> anyhow::Result<Latency> {
    let dir = tempfile::Builder::new()
        .prefix("bc-bench-")
        .tempdir_in("/tmp")?;
    let bridge = bridge(dir.path(), ports, BitTiming::Fd1m5m, false).await?;
    let mut clients = connect(&bridge).await?.into_iter();
    let (_rd0, mut wr0) = clients.next().context("port 0")?;
    let (rd1, _wr1) = clients.next().context("port 1")?;
    let mut rest = Vec::new();
    for (rd, wr) in clients {
        rest.push((tokio::spawn(count_frames(rd, None, None)), wr));
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(count_frames(rd1, Some(samples as u64 + 100), Some(tx)));
    let mut lat = Vec::with_capacity(samples);
    let mut buf = [0u8; MAX_ENCODED];
    for i in 0..samples + 100 {
        let n = encode(&frame(0x100_0000, i as u32), &mut buf);
        let t0 = Instant::now();
        wr0.send_raw(&buf[..n]).await?;
        let t1 = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("a frame never arrived")?
            .context("the reader stopped")?;
        // The first 100 warm up.
        if i >= 100 {
            lat.push(t1.duration_since(t0).as_secs_f64() * 1e6);
        }
    }
    reader.abort();
    for (r, _) in rest {
        r.abort();
    }
    bridge.shutdown().await;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    Ok(Latency {
        samples,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: lat[lat.len() - 1],
    })
}

/// `senders` ports keep their FIFOs full on a paced bus for `secs`.
async fn paced(
    ports: usize,
    senders: usize,
    timing: BitTiming,
    secs: f64,
) -> anyhow::Result<Paced> {
    let dir = tempfile::Builder::new()
        .prefix("bc-bench-")
        .tempdir_in("/tmp")?;
    let bridge = Arc::new(bridge(dir.path(), ports, timing, true).await?);
    let clients = connect(&bridge).await?;
    let mut tasks = Vec::new();
    for (i, (rd, mut wr)) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            count_frames(rd, None, None).await;
        }));
        if i < senders {
            // 64-byte frames, written ahead: the bridge reads as the bus
            // takes them, so the FIFO never runs dry.
            tasks.push(tokio::spawn(async move {
                let mut data = [0u8; 64];
                let mut n = 0u32;
                loop {
                    let bytes = encode_all((0..64).map(|_| {
                        n += 1;
                        data[..4].copy_from_slice(&n.to_le_bytes());
                        Frame::fd_extended(0x100_0000 + i as u32, &data).expect("frame")
                    }));
                    if wr.send_raw(&bytes).await.is_err() {
                        return;
                    }
                }
            }));
        }
    }
    // Let the load settle, then measure a window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s0 = bridge.stats();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let s1 = bridge.stats();
    let wall_ns = t0.elapsed().as_nanos() as f64;
    for t in tasks {
        t.abort();
    }
    let frames = s1.totals.frames - s0.totals.frames;
    let busy = (s1.totals.busy_ns - s0.totals.busy_ns) as f64;
    // Every frame here has the same layout but for its counter bytes;
    // the mean frame time gives the most that fit back to back.
    let mean_ns = busy / frames.max(1) as f64;
    let utilisation = busy / wall_ns;
    if let Ok(b) = Arc::try_unwrap(bridge) {
        b.shutdown().await;
    }
    Ok(Paced {
        preset: timing.to_string(),
        senders,
        seconds: wall_ns / 1e9,
        frames,
        utilisation,
        frames_vs_max: frames as f64 / (wall_ns / mean_ns),
        shortfall: 1.0 - utilisation,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.ports < 2 || args.paced_senders == 0 || args.paced_senders > args.ports {
        bail!("need at least 2 ports and 1..=ports paced senders");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        anyhow::Ok(Report {
            ports: args.ports,
            broadcast: throughput(args.ports, 1, args.frames * 10).await?,
            all_to_all: throughput(args.ports, args.ports, args.frames).await?,
            latency: latency(args.ports, args.samples).await?,
            paced: paced(args.ports, args.paced_senders, args.preset, args.paced_secs).await?,
        })
    })?;
    let r = &report;
    println!("| bus-bridge, {} ports | figure |", r.ports);
    println!("|---|---|");
    for (name, t) in [
        ("broadcast (1 sender)", &r.broadcast),
        ("all to all", &r.all_to_all),
    ] {
        println!(
            "| unpaced {name}: frames/s on the bus | {:.0} ({} frames in {:.2} s, {} overruns) |",
            t.frames_per_s, t.frames, t.seconds, t.overruns
        );
        println!(
            "| unpaced {name}: deliveries/s to clients | {:.0} |",
            t.deliveries_per_s
        );
    }
    println!(
        "| added latency, write to read, idle bus (p50 / p99 / max) | {:.1} / {:.1} / {:.1} µs |",
        r.latency.p50_us, r.latency.p99_us, r.latency.max_us
    );
    println!(
        "| paced {} utilisation, {} saturating senders over {:.1} s | {:.4} ({:.2}% short of the frame-format maximum) |",
        r.paced.preset,
        r.paced.senders,
        r.paced.seconds,
        r.paced.utilisation,
        r.paced.shortfall * 100.0
    );
    println!(
        "| paced frames vs back-to-back maximum | {:.4} ({} frames) |",
        r.paced.frames_vs_max, r.paced.frames
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if r.paced.shortfall > 0.02 {
        bail!(
            "paced utilisation {:.4} is more than 2% short of the maximum",
            r.paced.utilisation
        );
    }
    Ok(())
}
