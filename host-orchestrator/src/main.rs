//! `bootcast`: the testbed command line. `cargo xtask testbed up` builds the
//! guests and runs `bootcast testbed up`.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use host_orchestrator::exit::{self, Outcome};
use host_orchestrator::fleet::{self, Fleet};
use host_orchestrator::live::logging::{self, LogFile};
use host_orchestrator::outputs::events::Sources;
use host_orchestrator::outputs::{self, github, json, json::Kind, views};
use host_orchestrator::report::Report;
use host_orchestrator::report::Verdict;
use host_orchestrator::rundir::RunDir;
use host_orchestrator::storm::record::Made;
use host_orchestrator::testbed::{Artifacts, Options, Testbed};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `eprintln!` that keeps the line above the live view's bars.
macro_rules! say {
    ($($t:tt)*) => {
        host_orchestrator::live::stderr::eprintln(&format!($($t)*))
    };
}

/// bootcast: prove that a fleet of diskless nodes comes up running the right code.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Show every log line on the terminal, not only warnings and errors
    /// (the run folder's log/bootcast.log has them all either way).
    #[arg(short, long, global = true)]
    verbose: bool,
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
    /// Print the JSON Schema of the reports (report.json, --report) of
    /// every kind: testbed, storm and bench, with its schema version.
    Schema {
        /// Print the schema of a line of a run's events.jsonl instead.
        #[arg(long)]
        events: bool,
    },
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
        #[command(flatten)]
        out: BenchOutArgs,
    },
    /// Boot ever larger virtio fleets (one node first, for one node's
    /// boot) broadcasting on a paced bus: time to all verified against its
    /// floor, real-time factor, memory and CPU per fleet, overruns.
    Scale(ScaleArgs),
    /// Run storm scenarios on both clocks, side by side: scenario seconds,
    /// host seconds, how much faster than real time, and the virtual
    /// clock's host time against the wall clock's.
    Storms(StormsArgs),
}

/// Where every benchmark takes its build from and leaves its results.
#[derive(Args)]
struct BenchOutArgs {
    /// Built guest artifacts (default: target/bootcast, or $BOOTCAST_ARTIFACTS).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Also write the figures (every run and row) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the log, table, report and what each run left here (default:
    /// target/bootcast/runs/<time>-bench[-policies|-scale|-storms]).
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

#[derive(Args)]
struct StormsArgs {
    /// A scenario file; repeat for more (default: ci/idle-600.toml and
    /// ci/storm-40.toml).
    #[arg(long = "scenario")]
    scenarios: Vec<PathBuf>,
    /// Clocks, comma-separated, in the order they run.
    #[arg(long, value_delimiter = ',', default_value = "wall,virtual", value_parser = parse_clock)]
    clocks: Vec<board::strap::Clock>,
    #[command(flatten)]
    out: BenchOutArgs,
}

#[derive(Args)]
struct ScaleArgs {
    /// Fleet sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "40,100,200")]
    nodes: Vec<usize>,
    /// Pad the drive image to this size (bytes, or with K or M).
    #[arg(long, default_value = "256K", value_parser = parse_image_size)]
    image_size: u32,
    /// The fixed hold-off window, in milliseconds.
    #[arg(long, default_value_t = 500)]
    hold_off_ms: u64,
    /// Seconds each idle fleet's CPU use is sampled.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Seconds a run may take before it is reported unfinished.
    #[arg(long, default_value_t = 300)]
    run_timeout: u64,
    #[command(flatten)]
    out: BenchOutArgs,
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
    #[command(flatten)]
    out: BenchOutArgs,
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
    /// Keep the report, logs and the bus capture here (default:
    /// target/bootcast/runs/<time>-<scenario name>; runs/latest links the
    /// newest).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Built guest artifacts (default: target/bootcast, or $BOOTCAST_ARTIFACTS).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Run on this clock, whatever the file says: `wall` or `virtual`.
    #[arg(long, value_parser = parse_clock)]
    clock: Option<board::strap::Clock>,
}

fn parse_clock(s: &str) -> Result<board::strap::Clock, String> {
    host_orchestrator::fleet::clock(s).map_err(|e| e.to_string())
}

fn parse_transport(s: &str) -> Result<board::strap::Transport, String> {
    host_orchestrator::fleet::transport(s).map_err(|e| e.to_string())
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
    /// The clock it keeps: `wall`, or `virtual` (the bus's time, on a
    /// timed port).
    #[arg(long, value_parser = parse_clock, default_value = "wall")]
    clock: board::strap::Clock,
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
    /// Reach the bus through this device (`virtio`, the default, or
    /// `uart`), whatever the file says.
    #[arg(long, value_parser = parse_transport)]
    transport: Option<board::strap::Transport>,
    /// Exit as soon as every node is verified or failed: 0 only if all are verified.
    #[arg(long)]
    exit_when_ready: bool,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Give up after this many seconds (default: 20 + 0.5 per node + the
    /// window cap + twice the bus time of the images padded to
    /// `image_size`).
    #[arg(long)]
    timeout: Option<f64>,
    /// Built guest artifacts (default: target/bootcast, or $BOOTCAST_ARTIFACTS).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// The master's image store (default: the built images).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Keep the report, logs, capture and sockets in this folder (default:
    /// target/bootcast/runs/<time>-<fleet>; runs/latest links the newest).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// A node that rejects this many images is failed.
    #[arg(long, default_value_t = 3)]
    max_rejects: usize,
    /// The run's seed (node jitter; on the virtual clock the supervisor's
    /// nonces too): on the virtual clock, the same fleet and seed give the
    /// same run. Default: drawn at random.
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A backup master's stderr is its log file in the run folder; every
    // other command logs to its run folder's log/bootcast.log, and shows
    // warnings and errors (everything with -v) on the terminal.
    let log = match (&cli.command, cli.verbose) {
        (Command::Master(_), _) => logging::init("warn,host_orchestrator::master=info", false),
        (_, true) => logging::init("info", true),
        (_, false) => logging::init("warn", true),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
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
            } => up(args, interrupt, log).await,
            Command::Master(args) => master(args, interrupt).await.map(|()| Outcome::Pass),
            Command::Schema { events } => {
                let schema = if events {
                    outputs::schema::events_schema()
                } else {
                    outputs::schema::schema()
                };
                serde_json::to_string_pretty(&schema)
                    .map(|s| println!("{s}"))
                    .map(|()| Outcome::Pass)
                    .context("cannot print the schema")
            }
            Command::Storm(args) => storm(args, interrupt, log).await,
            Command::Bench {
                which: None,
                compare,
            } => bench_compare(compare, interrupt, log).await,
            Command::Bench {
                which:
                    Some(BenchWhich::Policies {
                        nodes,
                        stagger_ms,
                        out,
                    }),
                ..
            } => {
                let out = BenchOut::new(out, log)?;
                bench_policies(nodes, stagger_ms, out, interrupt).await
            }
            Command::Bench {
                which: Some(BenchWhich::Scale(args)),
                ..
            } => bench_scale(args, interrupt, log).await,
            Command::Bench {
                which: Some(BenchWhich::Storms(args)),
                ..
            } => bench_storms(args, interrupt, log).await,
        }
    });
    if let Err(e) = &result {
        say!("error: {e:#}");
    }
    ExitCode::from(exit::code_of(&result))
}

/// Where a benchmark leaves its results: `--json`, and its run folder
/// (log, table.md, report.json).
struct BenchOut {
    args: BenchOutArgs,
    log: LogFile,
}

impl BenchOut {
    /// Where `--json` and `--run-dir` say; a `--json` whose folder is
    /// missing is refused now, before any fleet boots.
    fn new(args: BenchOutArgs, log: LogFile) -> Result<BenchOut> {
        check_output_folder("--json", args.json.as_deref())?;
        Ok(BenchOut { args, log })
    }

    /// The built artifacts `--artifacts` names (or the default ones).
    fn artifacts(&self) -> Result<Artifacts> {
        Artifacts::locate(self.args.artifacts.clone())
    }

    /// The run folder, made now (named `name`), with the log in it.
    fn start(&self, artifacts: &Artifacts, name: &str) -> Result<RunDir> {
        let path = run_folder(self.args.run_dir.clone(), artifacts, name)?;
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let dir = RunDir::at(path);
        open_log(&self.log, dir.path());
        Ok(dir)
    }

    /// Writes the table and the report (versioned) to the run folder, and
    /// `plain` to `--json` as before.
    fn write<R: serde::Serialize, P: serde::Serialize>(
        &self,
        dir: &RunDir,
        table: &str,
        report: &R,
        plain: &P,
    ) -> Result<()> {
        let md = dir.path().join("table.md");
        std::fs::write(&md, table).with_context(|| format!("cannot write {}", md.display()))?;
        json::write(&dir.report(), Kind::Bench, report)?;
        if let Some(path) = &self.args.json {
            std::fs::write(path, serde_json::to_string_pretty(plain)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        say!(
            "run folder {} (table.md, report.json, log/)",
            dir.path().display()
        );
        Ok(())
    }

    /// Prints and writes a bench's table and report, draws its fleets'
    /// timelines, and says what an interrupt left out (`what`: the rows).
    #[allow(clippy::too_many_arguments)]
    async fn finish<R: serde::Serialize, P: serde::Serialize>(
        &self,
        dir: &RunDir,
        table: &str,
        report: &R,
        plain: &P,
        fleets: &[(String, Report)],
        interrupted: bool,
        what: &str,
    ) -> Result<Outcome> {
        println!("{table}");
        self.write(dir, table, report, plain)?;
        fleet_views(dir, fleets).await?;
        if interrupted {
            say!("interrupted: the table holds only the {what} that ran");
            return Ok(Outcome::Interrupted);
        }
        Ok(Outcome::Pass)
    }
}

async fn bench_policies(
    nodes: usize,
    stagger_ms: u64,
    out: BenchOut,
    interrupt: CancellationToken,
) -> Result<Outcome> {
    use host_orchestrator::bench;
    let artifacts = out.artifacts()?;
    let dir = out.start(&artifacts, "bench-policies")?;
    let mut fleets = Vec::new();
    let (rows, interrupted) = bench::policies(&artifacts, nodes, stagger_ms, &interrupt, |p, r| {
        fleets.push((p.to_string(), r.clone()))
    })
    .await?;
    let table = bench::policy_table(&rows, nodes, stagger_ms);
    let report = serde_json::json!({ "rows": &rows });
    out.finish(
        &dir,
        &table,
        &report,
        &rows,
        &fleets,
        interrupted,
        "policies",
    )
    .await
}

async fn bench_scale(a: ScaleArgs, interrupt: CancellationToken, log: LogFile) -> Result<Outcome> {
    use host_orchestrator::bench::{compare, scale};
    let out = BenchOut::new(a.out, log)?;
    check_sizes(&a.nodes)?;
    for (flag, v) in [
        ("--hold-off-ms", a.hold_off_ms),
        ("--idle-seconds", a.idle_seconds),
        ("--run-timeout", a.run_timeout),
    ] {
        if v == 0 {
            anyhow::bail!("{flag}: must be positive");
        }
    }
    let artifacts = out.artifacts()?;
    let opts = scale::ScaleOptions {
        nodes: a.nodes,
        image_size: a.image_size,
        hold_off_ms: a.hold_off_ms,
        idle_s: a.idle_seconds,
        run_timeout_s: a.run_timeout,
    };
    // A bad image size is refused before any fleet boots.
    let copts = compare::CompareOptions {
        image_size: opts.image_size,
        ..compare::CompareOptions::default()
    };
    compare::fleet(
        "virtio",
        1,
        compare::Delivery::Broadcast,
        true,
        board::strap::Clock::Wall,
        &copts,
    )?;
    let dir = out.start(&artifacts, "bench-scale")?;
    let mut fleets = Vec::new();
    let s = scale::scale(&artifacts, &opts, &interrupt, |r, report| {
        fleets.push((compare::label(r), report.clone()));
        say!(
            "bench scale: N={}: {}/{} verified{}",
            r.nodes,
            r.verified,
            r.nodes,
            r.time_to_all_verified_s
                .map_or(String::new(), |t| format!(" in {t:.2} s"))
        )
    })
    .await?;
    let table = scale::table(&s);
    out.finish(&dir, &table, &s, &s, &fleets, s.interrupted, "fleets")
        .await
}

async fn bench_storms(
    a: StormsArgs,
    interrupt: CancellationToken,
    log: LogFile,
) -> Result<Outcome> {
    use host_orchestrator::bench::storms;
    let out = BenchOut::new(a.out, log)?;
    let scenarios = if a.scenarios.is_empty() {
        vec!["ci/idle-600.toml".into(), "ci/storm-40.toml".into()]
    } else {
        a.scenarios
    };
    let opts = storms::StormsOptions {
        scenarios,
        clocks: a.clocks,
    };
    let scenarios = storms::load(&opts)?;
    let artifacts = out.artifacts()?;
    let dir = out.start(&artifacts, "bench-storms")?;
    let s = storms::storms(
        &artifacts,
        &opts,
        &scenarios,
        dir.path(),
        &interrupt,
        |r, report| {
            // Each storm's own report, beside its log and capture.
            if let Err(e) = json::write(&RunDir::at(&r.run_dir).report(), Kind::Storm, report) {
                say!("bench storms: {e:#}");
            }
            say!(
                "bench storms: {} on the {} clock: {}, {:.1} scenario s in {:.1} host s",
                r.scenario,
                r.clock.as_str(),
                r.verdict,
                r.scenario_s,
                r.wall_s
            )
        },
    )
    .await?;
    let table = storms::table(&s);
    // Each storm keeps its own run folder (report, logs, capture) under
    // `dir`; the bench draws no fleet views of its own.
    out.finish(&dir, &table, &s, &s, &[], s.interrupted, "storms")
        .await
}

/// Fleet sizes given with `--nodes`: each one a fleet can have.
fn check_sizes(nodes: &[usize]) -> Result<()> {
    if nodes.is_empty() || nodes.iter().any(|&n| n == 0 || n > fleet::MAX_NODES) {
        anyhow::bail!(
            "--nodes: each fleet size must be 1 to {}, got {:?}",
            fleet::MAX_NODES,
            nodes
        );
    }
    Ok(())
}

async fn bench_compare(
    a: CompareArgs,
    interrupt: CancellationToken,
    log: LogFile,
) -> Result<Outcome> {
    use host_orchestrator::bench::compare;
    let out = BenchOut::new(a.out, log)?;
    check_sizes(&a.nodes)?;
    for (flag, v) in [
        ("--hold-off-ms", a.hold_off_ms),
        ("--idle-seconds", a.idle_seconds),
        ("--run-timeout", a.run_timeout),
    ] {
        if v == 0 {
            anyhow::bail!("{flag}: must be positive");
        }
    }
    let artifacts = out.artifacts()?;
    let dir = out.start(&artifacts, "bench")?;
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
        board::strap::Clock::Wall,
        &opts,
    )?;
    let mut fleets = Vec::new();
    let c = compare::compare(&artifacts, &opts, &interrupt, |r, report| {
        fleets.push((compare::label(r), report.clone()));
        say!(
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
    let table = compare::table(&c);
    out.finish(&dir, &table, &c, &c, &fleets, c.interrupted, "fleets")
        .await
}

async fn up(args: UpArgs, interrupt: CancellationToken, log: LogFile) -> Result<Outcome> {
    let fleet = match (&args.fleet, args.nodes) {
        (Some(path), _) => Fleet::load(path)?,
        (None, n) => Fleet::default_mix(n.unwrap_or(8))?,
    };
    let fleet = match args.transport {
        Some(t) => fleet.with_transport(t)?,
        None => fleet,
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
                + fleet.image_bus_time() * 2
        }
    };
    check_output_folder("--report", args.report.as_deref())?;
    let artifacts = Artifacts::locate(args.artifacts.clone())?;
    let name = match &args.fleet {
        Some(path) => path
            .file_stem()
            .map_or("fleet".into(), |s| s.to_string_lossy().into_owned()),
        None => format!("up-{}", fleet.nodes.len()),
    };
    let run_dir = run_folder(args.run_dir.clone(), &artifacts, &name)?;
    open_log(&log, &run_dir);
    let made = Made::of_fleet(&fleet.faults);
    let mut opts = Options::new(fleet.clone(), artifacts);
    opts.store = args.store.clone();
    opts.run_dir = Some(run_dir);
    opts.max_rejects = args.max_rejects.max(1);
    opts.seeds = args.seed.map(|seed| host_orchestrator::seeds::Seeds {
        bus_faults: fleet.faults.seed,
        ..host_orchestrator::seeds::Seeds::derive(seed, fleet.nodes.iter().map(|n| n.id))
    });
    opts.progress = true;
    opts.master_exe = std::env::current_exe().ok();
    opts.interrupt = interrupt.clone();
    opts.end_when_settled = args.exit_when_ready;
    // The fleet powers on in one instant, as a rack does, not as fast as
    // the host can start QEMUs one after another (seconds for 40): so the
    // master's first window holds every node's request, and the first
    // broadcast serves them all.
    opts.power_on_together = true;
    let n = fleet.nodes.len();
    say!(
        "booting {n} nodes ({}); timeout {:.0}s",
        fleet
            .types()
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", "),
        timeout.as_secs_f64()
    );
    let tb = Testbed::start(opts).await?;
    say!("run folder {}", tb.run_dir().display());
    if let Some(addr) = tb.socketcand_addr() {
        say!(
            "external tools: socketcand on {addr} (channel = segment name); capture in {}",
            tb.capture_pcap().display()
        );
    }
    up_until_settled(tb, timeout, &args, (&name, &made), &interrupt).await
}

/// Waits for the fleet, prints the table, stays up unless told not to,
/// ends the testbed and writes what the run leaves. `run` is the fleet's
/// name and the faults it had from the start.
async fn up_until_settled(
    mut tb: Testbed,
    timeout: Duration,
    args: &UpArgs,
    (name, made): (&str, &Made),
    interrupt: &CancellationToken,
) -> Result<Outcome> {
    let settled = tb.wait_settled(timeout).await;
    // Stopped before the fleet settled: the run did not end. (Ctrl-C once
    // it is up is how a testbed is ended.)
    let interrupted = tb.interrupted();
    let fleet_file = args
        .fleet
        .as_ref()
        .and_then(|f| Some((f.display().to_string(), std::fs::read_to_string(f).ok()?)));
    if !settled && !interrupted {
        say!(
            "timeout: not every node settled within {:.0}s",
            timeout.as_secs_f64()
        );
    }
    // The table comes once the last session is over, below the live view.
    tb.let_sessions_end().await;
    tb.end_live_view().await;
    let report = tb.report();
    println!("{}", report.table());
    if !args.exit_when_ready && !interrupted {
        say!("testbed up; press Ctrl-C to stop it");
        interrupt.cancelled().await;
    }
    let run_dir = RunDir::at(tb.run_dir());
    let report = tb.shutdown().await;
    json::write(&run_dir.report(), Kind::Testbed, &report)?;
    let junit = outputs::junit::testbed(&report, name)?;
    std::fs::write(run_dir.junit(), junit)
        .with_context(|| format!("cannot write {}", run_dir.junit().display()))?;
    if let Some(path) = &args.report {
        json::write(path, Kind::Testbed, &report)?;
    }
    let sources = Sources {
        report: &report,
        actions: &[],
        made,
    };
    let end_s = report.elapsed_s;
    let views = write_views(&run_dir, &format!("testbed {name}"), &sources, end_s).await?;
    say!(
        "run folder {} (report.json, junit.xml, {views}, log/, capture/)",
        run_dir.path().display()
    );
    ci_outputs(
        &github::testbed_summary(&report, name),
        github::testbed_annotations(
            &report,
            fleet_file.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
        ),
    );
    println!("{}", report.bus_summary());
    println!("verified {}/{}", report.nodes_verified, report.nodes_total);
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        verdict(report.verdict)
    })
}

async fn storm(args: StormArgs, interrupt: CancellationToken, log: LogFile) -> Result<Outcome> {
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
    let artifacts = Artifacts::locate(args.artifacts.clone())?;
    let run_dir = run_folder(args.run_dir.clone(), &artifacts, &scenario.name)?;
    open_log(&log, &run_dir);
    say!(
        "storm {}: {} nodes, {} timeline entries; run folder {}",
        scenario.name,
        scenario.fleet.nodes.len(),
        scenario.timeline.len(),
        run_dir.display()
    );
    let files = RunDir::at(&run_dir);
    let interrupted = interrupt.clone();
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
            let xml = storm::junit::render_error(&name, seed, &format!("{e:#}"));
            for path in std::iter::once(files.junit()).chain(args.junit.clone()) {
                if let Err(w) = std::fs::write(&path, &xml) {
                    say!("cannot write JUnit {}: {w}", path.display());
                }
            }
            return Err(e);
        }
    };
    println!("{}", report.table());
    storm_outputs(&report, &args, &files).await?;
    println!("{}", report.testbed.bus_summary());
    println!(
        "verdict {}: verified {}/{}",
        report.testbed.verdict, report.testbed.nodes_verified, report.testbed.nodes_total
    );
    Ok(if interrupted.is_cancelled() {
        Outcome::Interrupted
    } else {
        verdict(report.testbed.verdict)
    })
}

/// What a storm leaves: report and JUnit in the run folder (and where
/// `--report` and `--junit` say), its events, trace and timeline, the step
/// summary and annotations.
async fn storm_outputs(
    report: &host_orchestrator::storm::StormReport,
    args: &StormArgs,
    files: &RunDir,
) -> Result<()> {
    let junit = host_orchestrator::storm::junit::render(report);
    for path in std::iter::once(files.report()).chain(args.report.clone()) {
        json::write(&path, Kind::Storm, report)?;
    }
    for path in std::iter::once(files.junit()).chain(args.junit.clone()) {
        std::fs::write(&path, &junit)
            .with_context(|| format!("cannot write JUnit {}", path.display()))?;
    }
    let sources = Sources {
        report: &report.testbed,
        actions: &report.events,
        made: &report.made,
    };
    let title = format!("storm {} (seed {})", report.scenario, report.seed);
    let views = write_views(files, &title, &sources, report.duration_s).await?;
    say!(
        "run folder {} (report.json, junit.xml, {views}, log/, capture/)",
        files.path().display()
    );
    // Annotations point into the scenario file (a replay's report, else),
    // at lines of the scenario's text as it was read.
    let file = args.file.as_ref().or(args.replay.as_ref());
    ci_outputs(
        &github::storm_summary(report),
        github::storm_annotations(
            report,
            &file.map_or(String::new(), |f| f.display().to_string()),
            &report.scenario_source.text,
        ),
    );
    Ok(())
}

/// Writes the run's events, trace and timeline page (and its screenshot)
/// into `dir`; returns the names of what it wrote.
async fn write_views(
    dir: &RunDir,
    title: &str,
    sources: &Sources<'_>,
    end_s: f64,
) -> Result<String> {
    let written = views::write(dir, title, sources, end_s).await?;
    let mut names = "events.jsonl, trace.json, timeline.html".to_string();
    if written.no_screenshot.is_none() {
        names += ", timeline.png";
    }
    Ok(names)
}

/// A benchmark's views of each fleet it booted, in `fleets/<k>-<label>/`.
async fn fleet_views(dir: &RunDir, fleets: &[(String, Report)]) -> Result<()> {
    let made = Made::default();
    let mut names = String::new();
    for (k, (label, report)) in fleets.iter().enumerate() {
        let sub = RunDir::at(dir.fleet_views(&format!("{:02}-{label}", k + 1)));
        let sources = Sources {
            report,
            actions: &[],
            made: &made,
        };
        names = write_views(&sub, &format!("bench {label}"), &sources, report.elapsed_s).await?;
    }
    if !fleets.is_empty() {
        say!(
            "each fleet's {names} in {}",
            dir.path().join("fleets").display()
        );
    }
    Ok(())
}

/// A verdict as an outcome.
fn verdict(v: Verdict) -> Outcome {
    if v.passed() {
        Outcome::Pass
    } else {
        Outcome::Fail
    }
}

/// For GitHub Actions: the step summary (when `$GITHUB_STEP_SUMMARY` is
/// set) and an `::error` line per failing check (when `GITHUB_ACTIONS` is
/// true).
fn ci_outputs(summary: &str, annotations: Vec<github::Annotation>) {
    if let Err(e) = github::append_step_summary(summary) {
        tracing::warn!("{e:#}");
    }
    if github::in_actions() {
        for a in annotations {
            println!("{}", a.command());
        }
    }
}

/// The run folder: `chosen`, else a new one in `runs/` beside the
/// artifacts, named for the time and `name` (`runs/latest` links to it).
fn run_folder(chosen: Option<PathBuf>, artifacts: &Artifacts, name: &str) -> Result<PathBuf> {
    match chosen {
        Some(d) => Ok(d),
        None => RunDir::new_run(
            &artifacts.dir.join("runs"),
            name,
            std::time::SystemTime::now(),
        ),
    }
}

/// Sends the log to the run folder's log file; a warning if it cannot.
fn open_log(log: &LogFile, run_dir: &std::path::Path) {
    let path = RunDir::at(run_dir).host_log();
    if let Err(e) = log.open(&path) {
        tracing::warn!("log lines stay off the run folder: {e:#}");
    }
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
    let run = master::run(
        &args.port,
        &args.store,
        config,
        args.role,
        events,
        stopped,
        args.clock,
    );
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
                say!("stopped at once");
                std::process::exit(130);
            }
            say!(
                "stopping: ending every node, then writing logs and the report (again to quit at once)"
            );
            interrupt.cancel();
        }
    });
}
