//! Installs what a fresh machine lacks, or says exactly what to run.

use anyhow::{Result, bail};
use std::process::Command;

const QEMU: &str = "qemu-system-riscv64";

/// Everything the testbed and the tests need.
pub fn all() -> Result<()> {
    rust_target()?;
    qemu()
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
                .any(|l| l.trim() == crate::GUEST_TARGET)
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    eprintln!(
        "xtask: installing the Rust target {} (rustup target add)",
        crate::GUEST_TARGET
    );
    if !succeeds(Command::new("rustup").args(["target", "add", crate::GUEST_TARGET])) {
        bail!(
            "could not install the Rust target; run `rustup target add {}` and try again",
            crate::GUEST_TARGET
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

/// QEMU for riscv64, from Debian's qemu-system-misc.
pub fn qemu() -> Result<()> {
    if succeeds(Command::new(QEMU).arg("--version")) {
        return Ok(());
    }
    let cmd = "apt-get update && apt-get install -y qemu-system-misc";
    if !is_root() {
        bail!("{QEMU} is missing; install it as root with: {cmd}");
    }
    eprintln!("xtask: installing QEMU: {cmd}");
    let ok = succeeds(Command::new("apt-get").arg("update"))
        && succeeds(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "qemu-system-misc",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    if !ok || !succeeds(Command::new(QEMU).arg("--version")) {
        bail!("installing QEMU failed; run `{cmd}` and try again");
    }
    Ok(())
}

/// Ignores SIGINT in this process (the child we wait for handles it).
pub fn ignore_sigint() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN runs no code in this process, so no handler can race
    // with anything; xtask installs no other SIGINT disposition.
    let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
}
