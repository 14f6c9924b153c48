//! What every task uses: the guest target, cargo, and running a command.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest target.
pub const GUEST_TARGET: &str = "riscv64imac-unknown-none-elf";

/// `cargo` as invoked us (`$CARGO`), in the workspace root.
pub fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root);
    c
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (or
/// `$CARGO_BUILD_TARGET_DIR`) when set, relative ones taken from the folder
/// cargo was run in, as cargo takes them; else `target` in the workspace.
pub fn target_dir(root: &Path) -> PathBuf {
    ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(PathBuf::from)
        .map(|d| std::path::absolute(&d).unwrap_or(d))
        .unwrap_or_else(|| root.join("target"))
}

/// Where xtask puts what it builds for the testbed (`target/bootcast`,
/// under cargo's target directory).
pub fn bootcast_dir(root: &Path) -> PathBuf {
    target_dir(root).join("bootcast")
}

/// Runs a command and fails, naming it, if it does not succeed.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Writes only when the content differs, so running testbeds that share the
/// file are never handed a half-written flash.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
