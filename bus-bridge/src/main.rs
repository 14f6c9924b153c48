//! `bus-bridge`: joins unix-socket ports into an emulated CAN FD bus.
//!
//! Runs until Ctrl-C or SIGTERM. Stdout carries JSON lines only
//! (`{"ts", "source", "event", "stats"}`): periodic `stats` events with
//! `--stats-every`, then one `final_stats`. Logs go to stderr (`RUST_LOG`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bus_bridge::{BitTiming, BridgeConfig, BusStats, PortConfig};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// An emulated multi-drop CAN FD bus between QEMU chardev sockets.
///
/// Each port is a unix socket the bridge listens on. Connect a QEMU UART
/// with `-chardev socket,id=bus,path=PATH,server=off,reconnect=1`. Every
/// byte on a port is link-codec framed (COBS + CRC-32, zero-delimited).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A port, as NAME=SEGMENT:PATH (repeat for each port). Segments are
    /// created in the order ports first name them.
    #[arg(long = "port", value_name = "NAME=SEGMENT:PATH", required = true, value_parser = parse_port)]
    ports: Vec<PortConfig>,

    /// Bit-rate preset: classic-125k, classic-500k, classic-1m, fd-1m-2m or fd-1m-5m.
    #[arg(long, default_value = "fd-1m-5m", value_parser = parse_preset)]
    preset: BitTiming,

    /// Frames take their real time on the bus (default: as fast as receivers take them).
    #[arg(long)]
    paced: bool,

    /// Print a stats line every SECS seconds.
    #[arg(long, value_name = "SECS")]
    stats_every: Option<f64>,

    /// Frames each port's TX FIFO holds.
    #[arg(long, default_value_t = 4)]
    tx_fifo_depth: usize,

    /// Frames each port's receive queue holds.
    #[arg(long, default_value_t = 256)]
    rx_queue_depth: usize,

    /// Unpaced: how long a full receive queue may hold the bus, in ms.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    stall_timeout_ms: u64,
}

fn parse_port(s: &str) -> Result<PortConfig, String> {
    let (name, rest) = s.split_once('=').ok_or("expected NAME=SEGMENT:PATH")?;
    let (segment, path) = rest.split_once(':').ok_or("expected NAME=SEGMENT:PATH")?;
    if name.is_empty() || segment.is_empty() || path.is_empty() {
        return Err("expected NAME=SEGMENT:PATH, none of them empty".into());
    }
    Ok(PortConfig::new(name, segment, PathBuf::from(path)))
}

fn parse_preset(s: &str) -> Result<BitTiming, String> {
    s.parse()
        .map_err(|e: bus_bridge::UnknownPreset| e.to_string())
}

fn print_stats(event: &str, stats: &BusStats) -> anyhow::Result<()> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let line =
        serde_json::json!({ "ts": ts, "source": "bus-bridge", "event": event, "stats": stats });
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let period = match args.stats_every {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            bail!("--stats-every must be a positive number of seconds")
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let mut segments: Vec<String> = Vec::new();
    for p in &args.ports {
        if !segments.contains(&p.segment) {
            segments.push(p.segment.clone());
        }
    }
    let config = BridgeConfig {
        segments,
        ports: args.ports,
        timing: args.preset,
        paced: args.paced,
        tx_fifo_depth: args.tx_fifo_depth,
        rx_queue_depth: args.rx_queue_depth,
        stall_timeout: Duration::from_millis(args.stall_timeout_ms),
    };
    let bridge = bus_bridge::start(config)
        .await
        .context("starting the bridge")?;
    tracing::info!(ports = bridge.ports().len(), preset = %args.preset, paced = args.paced, "bridge listening");

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut ticker = period.map(tokio::time::interval);
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                break;
            }
            _ = sigterm.recv() => break,
            _ = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => print_stats("stats", &bridge.stats())?,
        }
    }
    let stats = bridge.shutdown().await;
    print_stats("final_stats", &stats)
}
