//! What every task uses: the guest target, cargo, and running a command.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// The guest target.
pub const GUEST_TARGET: &str = "riscv64imac-unknown-none-elf";

/// `cargo` as invoked us (`$CARGO`), in the workspace root.
pub fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root);
    c
}

/// Runs a command and fails, naming it, if it does not succeed.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
