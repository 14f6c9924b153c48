//! `bus-bridge`: joins unix-socket ports into an emulated CAN FD bus.
//!
//! Runs until Ctrl-C or SIGTERM. Stdout carries JSON lines only
//! (`{"ts", "source", "event", ...}`): one `listening` event (socketcand
//! address, control socket), periodic `stats` events with `--stats-every`,
//! then one `final_stats`. Logs go to stderr (`RUST_LOG`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bus_bridge::{
    Babble, BitTiming, BridgeConfig, BusStats, CaptureConfig, Fault, FaultConfig, FdFormat,
    LinkConfig, PortConfig, SocketcandConfig, Topology,
};
use clap::Parser;
use serde::Deserialize;
use tokio::signal::unix::{SignalKind, signal};

/// An emulated multi-drop CAN FD bus between QEMU chardev sockets.
///
/// Each port is a unix socket the bridge listens on. Connect a QEMU UART
/// with `-chardev socket,id=bus,path=PATH,server=off,reconnect=1`. Every
/// byte on a port is link-codec framed (COBS + CRC-32, zero-delimited).
///
/// Everything can come from a config file (`--config`, TOML, or JSON if the
/// name ends in .json); flags add to it or override it.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A config file: TOML, or JSON if its name ends in .json. Its fields:
    /// preset, paced, tx_fifo_depth, rx_queue_depth, stall_timeout_ms,
    /// library ({extensions, ha}), segments, links ([{name, a, b}]), ports
    /// ([{name, segment, socket}]), faults ({seed, rules, link_down,
    /// babble, cut}), capture ({pcap, candump}), socketcand ({port,
    /// max_clients, fd_format}), control_socket.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// A port, as NAME=SEGMENT:PATH (repeat for each port). Segments not
    /// listed otherwise are created in the order ports first name them.
    #[arg(long = "port", value_name = "NAME=SEGMENT:PATH", value_parser = parse_port)]
    ports: Vec<PortConfig>,

    /// A segment (repeat), e.g. one that only socketcand clients use.
    #[arg(long = "segment", value_name = "NAME")]
    segments: Vec<String>,

    /// The seed's library topology: segments base, ext1..extN and ha,
    /// each joined to the previous by a link (base-ext1, ext1-ha, ...).
    #[arg(long)]
    library: bool,

    /// Extension frames in the --library topology.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "library")]
    extensions: usize,

    /// A link joining two segments, as A:B; it is called A-B (repeat).
    #[arg(long = "link", value_name = "A:B", value_parser = parse_link)]
    links: Vec<LinkConfig>,

    /// Bit-rate preset: classic-125k, classic-500k, classic-1m, fd-1m-2m or
    /// fd-1m-5m [default: fd-1m-5m].
    #[arg(long, value_parser = parse_preset)]
    preset: Option<BitTiming>,

    /// Frames take their real time on the bus (default: as fast as receivers take them).
    #[arg(long)]
    paced: bool,

    /// Print a stats line every SECS seconds.
    #[arg(long, value_name = "SECS")]
    stats_every: Option<f64>,

    /// Frames each port's TX FIFO holds [default: 4].
    #[arg(long)]
    tx_fifo_depth: Option<usize>,

    /// Frames each port's receive queue holds [default: 256].
    #[arg(long)]
    rx_queue_depth: Option<usize>,

    /// Unpaced: how long a full receive queue may hold the bus, in ms
    /// [default: 500].
    #[arg(long, value_name = "MS")]
    stall_timeout_ms: Option<u64>,

    /// Seed of every fault decision.
    #[arg(long)]
    seed: Option<u64>,

    /// A fault rule as JSON (repeat), e.g.
    /// '{"kind":"loss","segment":"ext1","probability":0.01}'.
    #[arg(long = "fault", value_name = "JSON", value_parser = parse_fault)]
    faults: Vec<Fault>,

    /// A port whose link is down from the start (repeat).
    #[arg(long = "link-down", value_name = "PORT")]
    link_down: Vec<String>,

    /// A link cut from the start (repeat).
    #[arg(long = "cut", value_name = "LINK")]
    cut: Vec<String>,

    /// A port that babbles from the start, as PORT or PORT=JSON (repeat),
    /// e.g. 'n7={"id":0,"rate_hz":1000}'.
    #[arg(long = "babble", value_name = "PORT[=JSON]", value_parser = parse_babble)]
    babble: Vec<(String, Babble)>,

    /// Capture every frame to this pcap file (LINKTYPE_CAN_SOCKETCAN).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Capture every frame to this candump log file.
    #[arg(long, value_name = "FILE")]
    candump: Option<PathBuf>,

    /// Serve socketcand on 127.0.0.1:PORT (0: any free port).
    #[arg(long, value_name = "PORT")]
    socketcand_port: Option<u16>,

    /// socketcand clients at once [default: 4].
    #[arg(long, value_name = "N")]
    socketcand_clients: Option<usize>,

    /// Send FD frames to socketcand clients as `< fdframe >` (newer
    /// socketcand) instead of `< frame >` (python-can 4.x).
    #[arg(long)]
    socketcand_fdframe: bool,

    /// Serve JSON-lines control commands on this unix socket.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

/// The config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
struct BridgeFile {
    preset: Option<BitTiming>,
    paced: Option<bool>,
    tx_fifo_depth: Option<usize>,
    rx_queue_depth: Option<usize>,
    stall_timeout_ms: Option<u64>,
    library: Option<LibraryFile>,
    segments: Vec<String>,
    links: Vec<LinkConfig>,
    ports: Vec<PortConfig>,
    faults: FaultConfig,
    capture: CaptureConfig,
    socketcand: Option<SocketcandConfig>,
    control_socket: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct LibraryFile {
    extensions: usize,
    ha: bool,
}

impl Default for LibraryFile {
    fn default() -> Self {
        LibraryFile {
            extensions: 1,
            ha: true,
        }
    }
}

fn parse_port(s: &str) -> Result<PortConfig, String> {
    let (name, rest) = s.split_once('=').ok_or("expected NAME=SEGMENT:PATH")?;
    let (segment, path) = rest.split_once(':').ok_or("expected NAME=SEGMENT:PATH")?;
    if name.is_empty() || segment.is_empty() || path.is_empty() {
        return Err("expected NAME=SEGMENT:PATH, none of them empty".into());
    }
    Ok(PortConfig::new(name, segment, PathBuf::from(path)))
}

fn parse_link(s: &str) -> Result<LinkConfig, String> {
    match s.split_once(':') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok(LinkConfig::between(a, b)),
        _ => Err("expected A:B, two segment names".into()),
    }
}

fn parse_preset(s: &str) -> Result<BitTiming, String> {
    s.parse()
        .map_err(|e: bus_bridge::UnknownPreset| e.to_string())
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    serde_json::from_str(s).map_err(|e| format!("bad fault rule: {e}"))
}

fn parse_babble(s: &str) -> Result<(String, Babble), String> {
    match s.split_once('=') {
        None if !s.is_empty() => Ok((s.to_owned(), Babble::default())),
        Some((port, json)) if !port.is_empty() => serde_json::from_str(json)
            .map(|b| (port.to_owned(), b))
            .map_err(|e| format!("bad babble settings: {e}")),
        _ => Err("expected PORT or PORT=JSON".into()),
    }
}

fn read_file(path: &Path) -> anyhow::Result<BridgeFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    } else {
        toml::from_str(&text).map_err(anyhow::Error::from)
    };
    parsed.with_context(|| format!("{} is not a valid bridge config", path.display()))
}

/// The file, then the flags on top.
fn build_config(args: Args) -> anyhow::Result<BridgeConfig> {
    let mut file = match &args.config {
        Some(path) => read_file(path)?,
        None => BridgeFile::default(),
    };
    let (segments, links, ports) = layout(&args, &mut file);
    let faults = merge_faults(&args, std::mem::take(&mut file.faults));
    let mut capture = std::mem::take(&mut file.capture);
    if args.pcap.is_some() {
        capture.pcap = args.pcap.clone();
    }
    if args.candump.is_some() {
        capture.candump = args.candump.clone();
    }
    let socketcand = merge_socketcand(&args, file.socketcand.take());
    if ports.is_empty() && socketcand.is_none() {
        bail!("no ports: give --port, ports in --config, or a socketcand server");
    }
    let defaults = BridgeConfig::default();
    Ok(BridgeConfig {
        segments,
        links,
        ports,
        timing: args.preset.or(file.preset).unwrap_or(defaults.timing),
        paced: args.paced || file.paced.unwrap_or(false),
        tx_fifo_depth: args
            .tx_fifo_depth
            .or(file.tx_fifo_depth)
            .unwrap_or(defaults.tx_fifo_depth),
        rx_queue_depth: args
            .rx_queue_depth
            .or(file.rx_queue_depth)
            .unwrap_or(defaults.rx_queue_depth),
        stall_timeout: args
            .stall_timeout_ms
            .or(file.stall_timeout_ms)
            .map_or(defaults.stall_timeout, Duration::from_millis),
        faults,
        capture,
        socketcand,
        control_socket: args.control.or(file.control_socket),
        // The virtual clock needs nodes with clock sockets: the testbed's.
        clock: defaults.clock,
    })
}

/// Segments, links and ports: the library topology if asked for, then
/// the file's, then the flags'; segments ports name are added in order.
fn layout(args: &Args, file: &mut BridgeFile) -> (Vec<String>, Vec<LinkConfig>, Vec<PortConfig>) {
    let mut segments: Vec<String> = Vec::new();
    let mut links: Vec<LinkConfig> = Vec::new();
    let library = if args.library {
        Some(LibraryFile {
            extensions: args.extensions,
            ha: true,
        })
    } else {
        file.library.take()
    };
    if let Some(l) = library {
        let t = Topology::library(l.extensions, l.ha);
        segments = t.segments;
        links = t.links;
    }
    let add = |segments: &mut Vec<String>, s: &str| {
        if !segments.iter().any(|x| x == s) {
            segments.push(s.to_owned());
        }
    };
    for s in file.segments.iter().chain(&args.segments) {
        add(&mut segments, s);
    }
    let mut ports = std::mem::take(&mut file.ports);
    ports.extend(args.ports.iter().cloned());
    for p in &ports {
        add(&mut segments, &p.segment);
    }
    links.append(&mut file.links);
    links.extend(args.links.iter().cloned());
    (segments, links, ports)
}

fn merge_faults(args: &Args, mut faults: FaultConfig) -> FaultConfig {
    if let Some(seed) = args.seed {
        faults.seed = seed;
    }
    faults.rules.extend(args.faults.iter().cloned());
    faults.link_down.extend(args.link_down.iter().cloned());
    faults.cut.extend(args.cut.iter().cloned());
    faults.babble.extend(args.babble.iter().cloned());
    faults
}

fn merge_socketcand(args: &Args, file: Option<SocketcandConfig>) -> Option<SocketcandConfig> {
    let mut socketcand = file;
    if args.socketcand_port.is_some()
        || args.socketcand_clients.is_some()
        || args.socketcand_fdframe
    {
        let sc = socketcand.get_or_insert_with(SocketcandConfig::default);
        if let Some(p) = args.socketcand_port {
            sc.port = p;
        }
        if let Some(n) = args.socketcand_clients {
            sc.max_clients = n;
        }
        if args.socketcand_fdframe {
            sc.fd_format = FdFormat::Fdframe;
        }
    }
    socketcand
}

fn print_event(event: &str, fields: serde_json::Value) -> anyhow::Result<()> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut line = serde_json::json!({ "ts": ts, "source": "bus-bridge", "event": event });
    if let (Some(l), serde_json::Value::Object(f)) = (line.as_object_mut(), fields) {
        l.extend(f);
    }
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

fn print_stats(event: &str, stats: &BusStats) -> anyhow::Result<()> {
    print_event(event, serde_json::json!({ "stats": stats }))
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
    let config = build_config(args)?;
    let control_path = config.control_socket.clone();
    let (preset, paced) = (config.timing, config.paced);
    let bridge = bus_bridge::start(config)
        .await
        .context("starting the bridge")?;
    tracing::info!(ports = bridge.ports().len(), %preset, paced, "bridge listening");
    print_event(
        "listening",
        serde_json::json!({
            "socketcand": bridge.socketcand_addr().map(|a| a.to_string()),
            "control": control_path,
            "capture": bridge.capture_status(),
        }),
    )?;

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
    if let Some(err) = stats.capture.as_ref().and_then(|c| c.error.clone()) {
        tracing::error!(error = %err, "the capture failed");
    }
    print_stats("final_stats", &stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::parse_from(["bus-bridge"].iter().chain(extra))
    }

    #[test]
    fn flags_and_a_config_file_make_one_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridge.toml");
        std::fs::write(
            &file,
            r#"
preset = "classic-500k"
stall_timeout_ms = 50
library = {}
control_socket = "/tmp/bc-control.sock"
[[ports]]
name = "master"
segment = "base"
socket = "/tmp/m.sock"
[faults]
seed = 3
cut = ["ext1-ha"]
[[faults.rules]]
kind = "loss"
segment = "ha"
probability = 0.5
[capture]
pcap = "/tmp/x.pcap"
[socketcand]
port = 0
"#,
        )
        .unwrap();
        let c = build_config(args(&[
            "--config",
            file.to_str().unwrap(),
            "--port",
            "n1=ha:/tmp/n1.sock",
            "--seed",
            "7",
            "--fault",
            r#"{"kind":"delay","port":"n1","delay_us":100}"#,
            "--babble",
            "n1={\"rate_hz\":10}",
        ]))
        .unwrap();
        assert_eq!(c.segments, ["base", "ext1", "ha"]);
        assert_eq!(c.links.len(), 2);
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.timing, BitTiming::Classic500k);
        assert_eq!(c.stall_timeout, Duration::from_millis(50));
        assert_eq!(c.faults.seed, 7);
        assert_eq!(c.faults.rules.len(), 2);
        assert_eq!(c.faults.babble["n1"].rate_hz, Some(10.0));
        assert_eq!(c.capture.pcap.as_deref(), Some(Path::new("/tmp/x.pcap")));
        assert!(c.socketcand.is_some());
        assert!(c.validate().is_ok());

        std::fs::write(&file, "prest = \"fd-1m-5m\"\n").unwrap();
        let err = build_config(args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `prest`"),
            "{err:#}"
        );
        assert!(build_config(args(&[])).is_err(), "no ports at all");
    }
}
