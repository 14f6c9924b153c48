//! `cargo xtask`: bootcast's one entry point for people and CI.
//!
//! It installs what a fresh machine lacks, builds the guests for
//! riscv64imac-unknown-none-elf and their images, and runs testbeds, the test
//! suite and benchmarks.

mod artifacts;
mod cmd;
mod fuzz;
mod install;
mod modgraph;
mod qemu_virtual;
mod sdk;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cmd::{GUEST_TARGET, cargo, run_checked};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// bootcast developer tasks.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks: the riscv64 Rust target (rustup),
    /// QEMU, the RISC-V C compiler (gcc-riscv64-unknown-elf), tshark and
    /// Chromium (apt-get, when run as root; otherwise print
    /// the command) and python-can (Debian's python3-can; tests use the first
    /// of $BOOTCAST_PYTHON, python3 and /usr/bin/python3 that has it), and
    /// QEMU 10 from bookworm-backports, unpacked into target/qemu10 beside
    /// the system's QEMU, for the virtual clock (where that fails: a
    /// warning with the commands, and fleets run on the wall clock).
    Install {
        /// Fail, rather than warn, when QEMU 10 cannot be installed.
        #[arg(long)]
        virtual_clock: bool,
    },
    /// Build the boot ROM, the apps and their signed images into
    /// target/bootcast, the node SDK for C (sdk/: header, libbootcast.a,
    /// bootcast.ld) and the C examples (examples/NAME.elf), and print the
    /// boot ROM's size with and without signature checking. Signs with $BOOTCAST_SIGNING_KEY (a secret key
    /// file from `images keygen`), else with a development key generated
    /// once for this checkout in .bootcast/.
    Build,
    /// Testbeds. `cargo xtask testbed up --help` lists the options.
    Testbed {
        /// `up` and its options, passed to `bootcast testbed`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks (release build), each printing one markdown table. With no
    /// name: broadcast against unicast and against the bus's limit, on both
    /// transports (`--json FILE`, `--nodes`, `--image-size`, ...); `bus`: the
    /// bridge alone (routing rate, added latency, paced utilisation);
    /// `policies`: hold-off policies on a staggered boot of real nodes.
    Bench {
        /// Which benchmark and its options, passed to `bootcast bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a storm scenario (e.g. ci/storm-40.toml); options are passed to
    /// `bootcast storm` (`--seed`, `--report`, `--junit`, `--run-dir`).
    Storm {
        /// The scenario file and options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Check formatting and run clippy on the host crates and, for the
    /// guest target, on the guest crates (the node SDK with its C API too);
    /// check that node-sdk/include/bootcast.h is current.
    Lint,
    /// Rewrite node-sdk/include/bootcast.h from the node SDK's sources
    /// (cbindgen) and board::memory.
    Header,
    /// Run the whole test suite: lints, host unit and integration tests (the
    /// QEMU fleet tests included), a check of `proto` for the guest target,
    /// then the CI job's storms: ci/fleet-40.toml, ci/storm-40.toml,
    /// ci/faults.toml and ci/rolling-update.toml (reports and JUnit in
    /// target/bootcast/ci).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The soak, too long for the test command: ci/soak-40.toml, 40 nodes
    /// and over 1,000 reboots on a lossy bus with a partition (about 10
    /// minutes), `--runs N` times in a row (default 1); reports and JUnit in
    /// target/bootcast/soak.
    Soak {
        /// How many runs in a row; each must pass.
        #[arg(long, default_value_t = 1)]
        runs: u32,
    },
    /// Fuzz the parsers with cargo-fuzz (installs it and a nightly
    /// toolchain if missing): each target for N seconds, then a summary.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            // bootcast's "environment missing" when an install step failed.
            if e.downcast_ref::<install::Missing>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Task::Install { virtual_clock } => {
            install::all()?;
            install::test_tools()?;
            if let Some(bin) = virtual_qemu(&root, virtual_clock)? {
                eprintln!("xtask: QEMU for the virtual clock: {}", bin.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Task::Build => {
            install::rust_target()?;
            install::c_toolchain().context(install::Missing)?;
            artifacts::build(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Testbed { args } => built_bootcast(&root, "testbed", &args),
        Task::Bench { args } if args.first().map(String::as_str) == Some("bus") => {
            let status = cargo(&root)
                .args([
                    "run",
                    "--release",
                    "--quiet",
                    "-p",
                    "bus-bridge",
                    "--bin",
                    "bus-bench",
                    "--",
                ])
                .args(&args[1..])
                .status_ignoring_ctrl_c()?;
            Ok(exit_code(status))
        }
        Task::Bench { args } => built_bootcast(&root, "bench", &args),
        Task::Storm { args } => built_bootcast(&root, "storm", &args),
        Task::Header => {
            sdk::write_header(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Lint => {
            install::rust_target()?;
            lint(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Fuzz(args) => {
            fuzz::run(&root, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Test { args } => test(&root, &args),
        Task::Soak { runs } => soak(&root, runs),
    }
}

/// Runs the soak `runs` times in a row, stopping at the first failure.
fn soak(root: &Path, runs: u32) -> Result<ExitCode> {
    anyhow::ensure!(runs >= 1, "--runs: must be at least 1");
    install::all()?;
    let out = artifacts::build(root)?;
    let names: Vec<String> = (1..=runs).map(|k| format!("soak-40-run{k}")).collect();
    storms(root, &out, "soak", "soak-40", &names, true)
}

/// Makes sure the virtual clock's QEMU is there: fleets that name no clock
/// run on it where it is. Without it they run on the wall clock, so its
/// failure is a warning, unless `needed` (the run asks for the virtual
/// clock).
fn virtual_qemu(root: &Path, needed: bool) -> Result<Option<PathBuf>> {
    match qemu_virtual::ensure(root) {
        Ok(bin) => Ok(Some(bin)),
        Err(e) if needed => Err(e),
        Err(e) => {
            eprintln!("xtask: warning: {e:#}; fleets that name no clock run on the wall clock");
            Ok(None)
        }
    }
}

/// Installs what is missing, builds the artifacts, then runs `bootcast
/// <command> <args>` (release) on them.
fn built_bootcast(root: &Path, command: &str, args: &[String]) -> Result<ExitCode> {
    install::all()?;
    virtual_qemu(root, qemu_virtual::wanted(args))?;
    // Chromium only draws the run's timeline.png: a run goes on without it.
    if let Err(e) = install::chromium() {
        eprintln!("xtask: warning: {e:#}; runs keep no timeline.png");
    }
    let out = artifacts::build(root)?;
    let status = bootcast(root, &out, true)
        .arg(command)
        .args(args)
        .status_ignoring_ctrl_c()?;
    Ok(exit_code(status))
}

/// The whole suite: lints, the guest check of `proto`, every host test
/// (`args` go to `cargo test`), then, without `args`, the CI job's storms.
fn test(root: &Path, args: &[String]) -> Result<ExitCode> {
    install::all()?;
    let python = install::test_tools()?;
    // The virtual-clock tests skip, saying why, where this fails.
    virtual_qemu(root, false)?;
    let out = artifacts::build(root)?;
    lint(root)?;
    run_checked(
        cargo(root).args(["check", "--quiet", "-p", "proto", "--target", GUEST_TARGET]),
        "cargo check -p proto for the guest target",
    )?;
    // guest-boot's library (the boot state machine) runs on the host
    // too; its binary and guest-apps are built for the guest only.
    let status = cargo(root)
        .args(["test", "--workspace", "--exclude", "guest-apps"])
        .args(args)
        .env("BOOTCAST_ARTIFACTS", &out)
        .env(install::PYTHON_VAR, python)
        .status_ignoring_ctrl_c()?;
    if !status.success() || !args.is_empty() {
        return Ok(exit_code(status));
    }
    ci_storms(root, &out)
}

/// The CI job: 40 nodes booted, then stormed. Reports and JUnit land in
/// target/bootcast/ci.
fn ci_storms(root: &Path, out: &Path) -> Result<ExitCode> {
    for name in ["fleet-40", "storm-40", "faults", "rolling-update"] {
        let code = storms(root, out, "ci", name, &[name.to_string()], false)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ci/<scenario>.toml` once per report name in `runs`, writing each
/// report and JUnit into `out/<folder>`; stops at the first failure.
fn storms(
    root: &Path,
    out: &Path,
    folder: &str,
    scenario: &str,
    runs: &[String],
    release: bool,
) -> Result<ExitCode> {
    let reports = out.join(folder);
    std::fs::create_dir_all(&reports)?;
    for name in runs {
        let status = bootcast(root, out, release)
            .arg("storm")
            .arg(root.join("ci").join(format!("{scenario}.toml")))
            .arg("--report")
            .arg(reports.join(format!("{name}.json")))
            .arg("--junit")
            .arg(reports.join(format!("{name}.junit.xml")))
            .status_ignoring_ctrl_c()?;
        if !status.success() {
            eprintln!(
                "xtask: storm {name} failed; its report is in {}",
                reports.display()
            );
            return Ok(exit_code(status));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The workspace's crates, by folder.
const MEMBERS: [&str; 10] = [
    "proto",
    "board",
    "images",
    "guest-boot",
    "guest-apps",
    "node-sdk",
    "bus-bridge",
    "host-orchestrator",
    "xtask",
    "qemu-clock-plugin",
];

/// What ARCHITECTURE.md says a module never depends on, checked by `lint`
/// (`["*"]`: no other module of its crate).
const ABSENCES: [modgraph::Absence; 27] = {
    use modgraph::Absence as A;
    const HOST: &str = "host-orchestrator";
    const BUS: &str = "bus-bridge";
    const SDK: &str = "node-sdk";
    [
        A {
            krate: HOST,
            module: "holdoff",
            never: &["*"],
        },
        A {
            krate: HOST,
            module: "store",
            never: &["*"],
        },
        A {
            krate: HOST,
            module: "child",
            never: &["*"],
        },
        A {
            krate: HOST,
            module: "rundir",
            never: &["*"],
        },
        A {
            krate: HOST,
            module: "exit",
            never: &["*"],
        },
        A {
            krate: HOST,
            module: "clock",
            never: &["*"],
        },
        A {
            krate: HOST,
            module: "master",
            never: &["fleet", "supervisor", "testbed", "report", "storm", "bench"],
        },
        A {
            krate: HOST,
            module: "fleet",
            never: &["supervisor", "testbed", "report", "storm", "bench"],
        },
        A {
            krate: HOST,
            module: "supervisor",
            never: &["testbed", "report", "storm", "bench"],
        },
        A {
            krate: HOST,
            module: "report",
            never: &["testbed", "storm", "bench"],
        },
        // The supervisor's decisions are free of I/O: the host's reads of
        // a node (`probe`) stay out of them. (tokio cannot be named: they
        // take time as a `clock::Moment`, and `clock` holds the runtime's
        // side too.)
        A {
            krate: HOST,
            module: "supervisor::inspect",
            never: &["supervisor::probe"],
        },
        A {
            krate: HOST,
            module: "supervisor::tracker",
            never: &["supervisor::probe"],
        },
        A {
            krate: HOST,
            module: "supervisor::state",
            never: &["supervisor::probe"],
        },
        A {
            krate: HOST,
            module: "storm::invariants",
            never: &["testbed"],
        },
        A {
            krate: HOST,
            module: "outputs::events",
            never: &["testbed"],
        },
        A {
            krate: HOST,
            module: "outputs::spans",
            never: &["testbed"],
        },
        A {
            krate: HOST,
            module: "storm::scenario",
            never: &["testbed", "supervisor", "report"],
        },
        A {
            krate: BUS,
            module: "bus",
            never: &[
                "arbiter",
                "port",
                "rxqueue",
                "stats",
                "control",
                "socketcand",
                "capture",
                "config",
                "bridge",
                "extern tokio",
            ],
        },
        A {
            krate: BUS,
            module: "client",
            never: &["*"],
        },
        A {
            krate: BUS,
            module: "ids",
            never: &["*"],
        },
        A {
            krate: BUS,
            module: "clock",
            never: &["*"],
        },
        A {
            krate: BUS,
            module: "vclock",
            never: &[
                "arbiter",
                "port",
                "rxqueue",
                "bus",
                "bridge",
                "config",
                "extern tokio",
            ],
        },
        A {
            krate: "qemu-clock-plugin",
            module: "gate",
            never: &["*"],
        },
        A {
            krate: SDK,
            module: "protocol",
            never: &["*"],
        },
        A {
            krate: SDK,
            module: "rt",
            never: &["*"],
        },
        A {
            krate: SDK,
            module: "cabi",
            never: &["node", "ffi", "rt"],
        },
        A {
            krate: SDK,
            module: "node",
            never: &["ffi", "cabi", "rt"],
        },
    ]
};

fn lint(root: &Path) -> Result<()> {
    modgraph::check(root, &MEMBERS, &ABSENCES)?;
    sdk::check_header(root)?;
    run_checked(
        cargo(root).args(["fmt", "--all", "--check"]),
        "cargo fmt --check",
    )?;
    run_checked(
        cargo(root).args(["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"]),
        "clippy on the host crates",
    )?;
    run_checked(
        cargo(root)
            .args([
                "clippy",
                "--quiet",
                "--profile",
                "guest",
                "--target",
                GUEST_TARGET,
                "-p",
                "guest-boot",
                "-p",
                "guest-apps",
                "-p",
                "node-sdk",
                "--features",
                "node-sdk/c-api",
                "--",
                "-D",
                "warnings",
            ])
            .env(
                artifacts::PUBLIC_KEY_VAR,
                artifacts::signing(root, false)?.public_file,
            ),
        "clippy on the guest crates",
    )
}

/// `bootcast` from this workspace, through cargo, with the artifacts.
fn bootcast(root: &Path, artifacts: &Path, release: bool) -> Command {
    let mut c = cargo(root);
    c.args([
        "run",
        "--quiet",
        "-p",
        "host-orchestrator",
        "--bin",
        "bootcast",
    ]);
    if release {
        c.arg("--release");
    }
    c.arg("--").env("BOOTCAST_ARTIFACTS", artifacts);
    c
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    }
}

trait StatusIgnoringCtrlC {
    /// Runs the child to completion. Ctrl-C reaches the child through the
    /// terminal's process group; xtask itself must outlive it so the child
    /// can clean up and report.
    fn status_ignoring_ctrl_c(&mut self) -> Result<std::process::ExitStatus>;
}

impl StatusIgnoringCtrlC for Command {
    fn status_ignoring_ctrl_c(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.spawn().context("cannot start cargo")?;
        install::ignore_sigint();
        let status = child.wait().context("waiting for cargo")?;
        Ok(status)
    }
}
