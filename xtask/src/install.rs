//! Installs what a fresh machine lacks, or says exactly what to run.

use anyhow::{Context, Result, bail};
use std::process::Command;

const QEMU: &str = "qemu-system-riscv64";
/// The bare-metal RISC-V C compiler (Debian's `gcc-riscv64-unknown-elf`).
pub const CC: &str = "riscv64-unknown-elf-gcc";

/// An install step failed: the machine lacks what a run needs. xtask exits
/// with bootcast's "environment missing" code (3) then.
#[derive(Debug)]
pub struct Missing;

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("environment missing")
    }
}

/// What the testbed needs (the build includes the C examples).
pub fn all() -> Result<()> {
    rust_target()
        .and_then(|()| qemu())
        .and_then(|()| c_toolchain())
        .context(Missing)
}

/// What the test suite needs besides the testbed: the tools that read the
/// bus from outside, and Chromium, which draws the timeline page (the
/// page's test, and each run's screenshot of it).
/// Returns the Python interpreter that has python-can.
pub fn test_tools() -> Result<std::ffi::OsString> {
    tshark()
        .and_then(|()| chromium())
        .and_then(|()| python_can())
        .context(Missing)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// The riscv64 target for the active toolchain, through rustup.
pub fn rust_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == crate::cmd::GUEST_TARGET)
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    eprintln!(
        "xtask: installing the Rust target {} (rustup target add)",
        crate::cmd::GUEST_TARGET
    );
    if !succeeds(Command::new("rustup").args(["target", "add", crate::cmd::GUEST_TARGET])) {
        bail!(
            "could not install the Rust target; run `rustup target add {}` and try again",
            crate::cmd::GUEST_TARGET
        );
    }
    Ok(())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs Debian `package` when `probe` fails: through apt-get when root,
/// else fails with the exact command to run.
fn debian_package(what: &str, probe: &[&str], package: &str) -> Result<()> {
    let runs = |p: &[&str]| succeeds(Command::new(p[0]).args(&p[1..]));
    if runs(probe) {
        return Ok(());
    }
    let cmd =
        format!("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {package}");
    if !is_root() {
        bail!("{what} is missing; install it as root with: {cmd}");
    }
    eprintln!("xtask: installing {what}: {cmd}");
    static UPDATED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let updated = *UPDATED.get_or_init(|| succeeds(Command::new("apt-get").arg("update")));
    let ok = updated
        && succeeds(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    if !ok || !runs(probe) {
        bail!("installing {what} failed; run `{cmd}` and try again");
    }
    Ok(())
}

/// QEMU for riscv64, from Debian's qemu-system-misc.
pub fn qemu() -> Result<()> {
    debian_package("QEMU", &[QEMU, "--version"], "qemu-system-misc")
}

/// The bare-metal RISC-V C compiler the node SDK's C examples are built
/// with, from Debian's gcc-riscv64-unknown-elf (its libgcc has an
/// `rv64imac/lp64` multilib; the examples need no libc).
pub fn c_toolchain() -> Result<()> {
    debian_package(
        "the RISC-V C compiler",
        &[CC, "--version"],
        "gcc-riscv64-unknown-elf",
    )
}

/// tshark, which the capture test reads the bus capture with.
pub fn tshark() -> Result<()> {
    debian_package("tshark", &["tshark", "-v"], "tshark")
}

/// Headless Chromium, from Debian's chromium: it renders each run's
/// timeline.html to timeline.png, and the page's test reads its DOM.
pub fn chromium() -> Result<()> {
    debian_package("Chromium", &["chromium", "--version"], "chromium")
}

/// Names the Python interpreter that has python-can, for the tests that
/// join the bus with it.
pub const PYTHON_VAR: &str = "BOOTCAST_PYTHON";

/// Interpreters tried for python-can, in order: `$BOOTCAST_PYTHON`, the
/// `python3` on PATH, then Debian's (where apt puts `python3-can`).
fn python_candidates() -> Vec<std::ffi::OsString> {
    let mut c: Vec<std::ffi::OsString> = std::env::var_os(PYTHON_VAR)
        .filter(|v| !v.is_empty())
        .into_iter()
        .collect();
    c.push("python3".into());
    c.push("/usr/bin/python3".into());
    c
}

fn python_with_can() -> Option<std::ffi::OsString> {
    python_candidates()
        .into_iter()
        .find(|p| succeeds(Command::new(p).args(["-c", "import can"])))
}

/// A Python with python-can, which the socketcand tests join the bus with:
/// one that has it already, else Debian's `python3-can` (apt-get, as
/// root; Debian's Python refuses `pip install`). Returns the interpreter.
pub fn python_can() -> Result<std::ffi::OsString> {
    if let Some(p) = python_with_can() {
        return Ok(p);
    }
    if let Err(e) = debian_package(
        "python-can",
        &["/usr/bin/python3", "-c", "import can"],
        "python3-can",
    ) {
        bail!(
            "{e:#}; or set {PYTHON_VAR} to a Python that has python-can (e.g. a virtualenv's, after `pip install python-can`)"
        );
    }
    python_with_can().context("python-can was installed but no Python imports it")
}

/// Ignores SIGINT in this process (the child we wait for handles it).
pub fn ignore_sigint() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN runs no code in this process, so no handler can race
    // with anything; xtask installs no other SIGINT disposition.
    let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
}
