//! `bootcast`: the testbed command line. `cargo xtask testbed up` builds the
//! guests and runs `bootcast testbed up`.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use host_orchestrator::fleet::{self, Fleet};
use host_orchestrator::testbed::{Artifacts, Options, Testbed};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// bootcast: prove that a fleet of diskless nodes comes up running the right code.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Testbeds: a bus, a master and a fleet of QEMU nodes.
    Testbed {
        #[command(subcommand)]
        action: TestbedAction,
    },
    /// Benchmarks on real fleets; each prints one markdown table. Without a
    /// subcommand: broadcast against unicast and against the bus's limit,
    /// on both transports, side by side.
    Bench {
        #[command(subcommand)]
        which: Option<BenchWhich>,
        #[command(flatten)]
        compare: CompareArgs,
    },
    /// Run a scenario (a fleet, a timeline of reboots, faults, publishes and
    /// rolling updates) and judge it against the invariants. Prints progress
    /// and a verdict table; the exit code is the verdict.
    Storm(StormArgs),
    /// Run a master on a bus port (the testbed runs a backup master this
    /// way). Prints its events as JSON lines on stdout; stops on SIGTERM or
    /// Ctrl-C.
    Master(MasterArgs),
}

#[derive(Subcommand)]
enum BenchWhich {
    /// Boot the same staggered fleet under each hold-off policy: windows,
    /// broadcasts, bytes and time to all verified.
    Policies {
        /// Nodes in the fleet (the library mix).
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        /// Milliseconds between one node's power-on and the next.
        #[arg(long, default_value_t = 200)]
        stagger_ms: u64,
        /// Built guest artifacts (default: target/bootcast, or $BOOTCAST_ARTIFACTS).
        #[arg(long)]
        artifacts: Option<PathBuf>,
        /// Also write the rows as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Args)]
struct CompareArgs {
    /// Fleet sizes, comma-separated; the targets speak of the largest.
    #[arg(long, value_delimiter = ',', default_value = "1,10,40")]
    nodes: Vec<usize>,
    /// Pad the drive image to this size (bytes, or with K or M).
    #[arg(long, default_value = "256K", value_parser = parse_image_size)]
    image_size: u32,
    /// Transports, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "uart,virtio", value_parser = ["uart", "virtio"])]
    transports: Vec<String>,
    /// The fixed hold-off window, in milliseconds.
    #[arg(long, default_value_t = 500)]
    hold_off_ms: u64,
    /// Seconds the idle fleet's CPU use is sampled.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Seconds a run may take before it is reported unfinished.
    #[arg(long, default_value_t = 180)]
    run_timeout: u64,
    /// Built guest artifacts (default: target/bootcast, or $BOOTCAST_ARTIFACTS).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Also write every run and figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_image_size(s: &str) -> Result<u32, String> {
    images::build::parse_size(s)
}

#[derive(Args)]
struct StormArgs {
    /// The scenario file (a fleet file alone boots the fleet and judges it).
    #[arg(required_unless_present = "replay")]
    file: Option<PathBuf>,
    /// Replaces the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run a storm again from its JSON report: the same scenario text (and
    /// fleet file) and the same seed, so the same actions and faults.
    #[arg(long, conflicts_with = "file")]
    replay: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Keep logs and the bus capture here (default: a new folder under /tmp).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Built guest artifacts (default: target/bootcast, or $BOOTCAST_ARTIFACTS).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Run on this clock (`wall` or `virtual`), whatever the file says.
    #[arg(long, value_parser = parse_clock)]
    clock: Option<board::strap::Clock>,
}

fn parse_clock(s: &str) -> Result<board::strap::Clock, String> {
    host_orchestrator::fleet::clock(s).map_err(|e| e.to_string())
}

#[derive(Args)]
struct MasterArgs {
    /// `primary`, or `backup` (watches the primary and takes over when it
    /// falls silent).
    #[arg(long, value_parser = parse_role)]
    role: host_orchestrator::master::Role,
    /// The bridge port socket to connect to.
    #[arg(long)]
    port: PathBuf,
    /// The image store (a folder of .bcimg files).
    #[arg(long)]
    store: PathBuf,
    /// The master configuration (JSON, as the testbed writes it).
    #[arg(long)]
    config: PathBuf,
}

fn parse_role(s: &str) -> Result<host_orchestrator::master::Role, String> {
    match s {
        "primary" => Ok(host_orchestrator::master::Role::Primary),
        "backup" => Ok(host_orchestrator::master::Role::Backup),
        _ => Err(format!("unknown role {s:?} (primary or backup)")),
    }
}

#[derive(Subcommand)]
enum TestbedAction {
    /// Boot a fleet, show each node's progress, verify every node against the
    /// build, print a table, and stay up until Ctrl-C (or exit, with
    /// --exit-when-ready). The last line is `verified K/N`.
    Up(UpArgs),
}

#[derive(Args)]
struct UpArgs {
    /// Boot N nodes in the seed's tape-library mix (default 8).
    #[arg(long, conflicts_with = "fleet")]
    nodes: Option<usize>,
    /// Boot the fleet described by this TOML file (types, counts, master policy, bus preset).
    #[arg(long)]
    fleet: Option<PathBuf>,
    /// Run on this clock (`wall` or `virtual`), whatever the file says.
    #[arg(long, value_parser = parse_clock)]
    clock: Option<board::strap::Clock>,
    /// Exit as soon as every node is verified or failed: 0 only if all are verified.
    #[arg(long)]
    exit_when_ready: bool,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Give up after this many seconds (default: 20 + 0.5 per node + the window cap).
    #[arg(long)]
    timeout: Option<f64>,
    /// Built guest artifacts (default: target/bootcast, or $BOOTCAST_ARTIFACTS).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// The master's image store (default: the built images).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Keep logs and sockets in this folder (default: a temporary folder, kept on failure).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// A node that rejects this many images is failed.
    #[arg(long, default_value_t = 3)]
    max_rejects: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Benchmarks print their own progress; the master's window log would
    // bury it.
    let default_filter = match cli.command {
        Command::Bench { .. } => "warn",
        _ => "warn,host_orchestrator::master=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Ctrl-C or SIGTERM: every command ends its run the graceful way
        // (nodes stopped, logs and report written).
        let interrupt = CancellationToken::new();
        cancel_on_signal(interrupt.clone());
        match cli.command {
            Command::Testbed {
                action: TestbedAction::Up(args),
            } => up(args, interrupt).await,
            Command::Master(args) => master(args, interrupt).await.map(|()| true),
            Command::Storm(args) => storm(args, interrupt).await,
            Command::Bench {
                which: None,
                compare,
            } => bench_compare(compare, interrupt).await,
            Command::Bench {
                which:
                    Some(BenchWhich::Policies {
                        nodes,
                        stagger_ms,
                        artifacts,
                        json,
                    }),
                ..
            } => bench_policies(nodes, stagger_ms, artifacts, json, interrupt).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn bench_policies(
    nodes: usize,
    stagger_ms: u64,
    artifacts: Option<PathBuf>,
    json: Option<PathBuf>,
    interrupt: CancellationToken,
) -> Result<bool> {
    use host_orchestrator::bench;
    check_output_folder("--json", json.as_deref())?;
    let artifacts = Artifacts::locate(artifacts)?;
    let (rows, interrupted) = bench::policies(&artifacts, nodes, stagger_ms, &interrupt).await?;
    println!("{}", bench::policy_table(&rows, nodes, stagger_ms));
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if interrupted {
        eprintln!("interrupted: the table holds only the policies that ran");
    }
    Ok(!interrupted)
}

async fn bench_compare(a: CompareArgs, interrupt: CancellationToken) -> Result<bool> {
    use host_orchestrator::bench::compare;
    check_output_folder("--json", a.json.as_deref())?;
    if a.nodes.is_empty() || a.nodes.iter().any(|&n| n == 0 || n > fleet::MAX_NODES) {
        anyhow::bail!(
            "--nodes: each fleet size must be 1 to {}, got {:?}",
            fleet::MAX_NODES,
            a.nodes
        );
    }
    for (flag, v) in [
        ("--hold-off-ms", a.hold_off_ms),
        ("--idle-seconds", a.idle_seconds),
        ("--run-timeout", a.run_timeout),
    ] {
        if v == 0 {
            anyhow::bail!("{flag}: must be positive");
        }
    }
    let artifacts = Artifacts::locate(a.artifacts)?;
    let opts = compare::CompareOptions {
        nodes: a.nodes,
        image_size: a.image_size,
        transports: a.transports,
        hold_off_ms: a.hold_off_ms,
        idle_s: a.idle_seconds,
        run_timeout_s: a.run_timeout,
    };
    // A bad image size is refused before any fleet boots.
    compare::fleet(
        &opts.transports[0],
        1,
        compare::Delivery::Broadcast,
        true,
        &opts,
    )?;
    let c = compare::compare(&artifacts, &opts, &interrupt, |r| {
        eprintln!(
            "bench: {} {:?}{} N={}: {}/{} verified{}",
            r.transport,
            r.delivery,
            if r.paced { "" } else { " (unpaced)" },
            r.nodes,
            r.verified,
            r.nodes,
            r.time_to_all_verified_s
                .map_or(String::new(), |t| format!(" in {t:.2} s"))
        )
    })
    .await?;
    println!("{}", compare::table(&c));
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&c)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if c.interrupted {
        eprintln!("interrupted: the table holds only the fleets that ran");
    }
    Ok(!c.interrupted)
}

async fn up(args: UpArgs, interrupt: CancellationToken) -> Result<bool> {
    let fleet = match (&args.fleet, args.nodes) {
        (Some(path), _) => Fleet::load(path)?,
        (None, n) => Fleet::default_mix(n.unwrap_or(8))?,
    };
    let fleet = match args.clock {
        Some(c) => fleet.with_clock(c)?,
        None => fleet,
    };
    let timeout = match args.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Duration::from_secs_f64(t),
        Some(t) => anyhow::bail!("--timeout: must be a positive number of seconds, got {t}"),
        None => {
            Duration::from_secs(20)
                + Duration::from_millis(500) * fleet.nodes.len() as u32
                + fleet.max_window()
        }
    };
    check_output_folder("--report", args.report.as_deref())?;
    let artifacts = Artifacts::locate(args.artifacts.clone())?;
    let mut opts = Options::new(fleet.clone(), artifacts);
    opts.store = args.store.clone();
    opts.run_dir = args.run_dir.clone();
    opts.max_rejects = args.max_rejects.max(1);
    opts.progress = true;
    opts.master_exe = std::env::current_exe().ok();
    opts.interrupt = interrupt.clone();
    let n = fleet.nodes.len();
    eprintln!(
        "booting {n} nodes ({}); timeout {:.0}s",
        fleet
            .types()
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", "),
        timeout.as_secs_f64()
    );
    let mut tb = Testbed::start(opts).await?;
    eprintln!("run folder {}", tb.run_dir().display());
    if let Some(addr) = tb.socketcand_addr() {
        eprintln!(
            "external tools: socketcand on {addr} (channel = segment name); capture in {}",
            tb.capture_pcap().display()
        );
    }
    let settled = tb.wait_settled(timeout).await;
    let interrupted = tb.interrupted();
    if !settled && !interrupted {
        eprintln!(
            "timeout: not every node settled within {:.0}s",
            timeout.as_secs_f64()
        );
    }
    let report = tb.report();
    println!("{}", report.table());
    if !args.exit_when_ready && !interrupted {
        eprintln!("testbed up; press Ctrl-C to stop it");
        interrupt.cancelled().await;
    }
    if !report.verdict.passed() {
        tb.keep_run_dir();
        eprintln!("logs kept in {}", tb.run_dir().display());
    }
    let report = tb.shutdown().await;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write report {}", path.display()))?;
    }
    println!("{}", report.bus_summary());
    println!("verified {}/{}", report.nodes_verified, report.nodes_total);
    Ok(report.verdict.passed())
}

async fn storm(args: StormArgs, interrupt: CancellationToken) -> Result<bool> {
    use host_orchestrator::storm;
    check_output_folder("--report", args.report.as_deref())?;
    check_output_folder("--junit", args.junit.as_deref())?;
    let (mut scenario, replayed_seed) = match (&args.file, &args.replay) {
        (_, Some(report)) => {
            let (scenario, seed) = storm::replay_of(report)?;
            (scenario, Some(seed))
        }
        (Some(file), None) => (storm::scenario::Scenario::load(file)?, None),
        (None, None) => anyhow::bail!("storm: give a scenario file or --replay REPORT.json"),
    };
    if let Some(c) = args.clock {
        scenario.fleet = scenario.fleet.with_clock(c)?;
    }
    let artifacts = Artifacts::locate(args.artifacts)?;
    let run_dir = match args.run_dir {
        Some(d) => d,
        // Kept: its logs and capture are the run's evidence. Short, for
        // unix socket paths.
        None => tempfile::Builder::new()
            .prefix(&format!(
                "bc-{}-",
                scenario.name.chars().take(16).collect::<String>()
            ))
            .tempdir_in("/tmp")?
            .keep(),
    };
    eprintln!(
        "storm {}: {} nodes, {} timeline entries; run folder {}",
        scenario.name,
        scenario.fleet.nodes.len(),
        scenario.timeline.len(),
        run_dir.display()
    );
    let seed = args.seed.or(replayed_seed).unwrap_or(scenario.seed);
    let name = scenario.name.clone();
    let opts = storm::StormOptions {
        scenario,
        artifacts,
        run_dir,
        seed: Some(seed),
        progress: true,
        master_exe: std::env::current_exe().ok(),
        interrupt,
    };
    // Interrupted, it still ends the testbed, judges what ran and reports.
    let report = match storm::run(opts).await {
        Ok(r) => r,
        Err(e) => {
            // CI still gets a JUnit file: one errored case with the reason.
            if let Some(path) = &args.junit {
                let xml = storm::junit::render_error(&name, seed, &format!("{e:#}"));
                if let Err(w) = std::fs::write(path, xml) {
                    eprintln!("cannot write JUnit {}: {w}", path.display());
                }
            }
            return Err(e);
        }
    };
    println!("{}", report.table());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write report {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, storm::junit::render(&report))
            .with_context(|| format!("cannot write JUnit {}", path.display()))?;
    }
    println!("{}", report.testbed.bus_summary());
    println!(
        "verdict {}: verified {}/{}",
        report.testbed.verdict, report.testbed.nodes_verified, report.testbed.nodes_total
    );
    Ok(report.testbed.verdict.passed())
}

/// Fails at once, naming `flag`, when the folder `path` would be written in
/// does not exist: better than failing after a whole run.
fn check_output_folder(flag: &str, path: Option<&std::path::Path>) -> Result<()> {
    if let Some(p) = path
        .and_then(|p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
    {
        anyhow::ensure!(p.is_dir(), "{flag}: folder {} does not exist", p.display());
    }
    Ok(())
}

async fn master(args: MasterArgs, interrupt: CancellationToken) -> Result<()> {
    use host_orchestrator::master;
    use std::io::Write;
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read master config {}", args.config.display()))?;
    let config: host_orchestrator::master::MasterConfig = serde_json::from_str(&text)
        .with_context(|| format!("master config {}", args.config.display()))?;
    host_orchestrator::store::Store::load(&args.store)?;
    let (events, mut rx) = tokio::sync::mpsc::channel::<master::MasterRecord>(256);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let printer = tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let mut out = std::io::stdout().lock();
            if let Ok(line) = serde_json::to_string(&r) {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    });
    let run = master::run(&args.port, &args.store, config, args.role, events, stopped);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = interrupt.cancelled() => {
            let _ = stop.send(true);
            run.await
        }
    };
    let _ = printer.await;
    result
}

/// Cancels `interrupt` on Ctrl-C (SIGINT) or SIGTERM: either way the run
/// ends its nodes itself, and writes its logs and report, before exiting.
/// A second signal exits at once (the nodes' parent-death signal ends
/// them). The handlers are in place when this returns.
fn cancel_on_signal(interrupt: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action ends us; the nodes'
        // parent-death signal ends them.
        return;
    };
    tokio::spawn(async move {
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                eprintln!("stopped at once");
                std::process::exit(130);
            }
            eprintln!(
                "stopping: ending every node, then writing logs and the report (again to quit at once)"
            );
            interrupt.cancel();
        }
    });
}
