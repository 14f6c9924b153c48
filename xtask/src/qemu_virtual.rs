//! QEMU ≥ 9 for fleets on the virtual clock, beside the system's QEMU.
//!
//! Debian 12's own QEMU (7.2) has no plugin time control; bookworm-backports
//! has 10.0.2. Installing that package would replace the system QEMU that
//! wall-clock runs use, so the .debs are downloaded and unpacked into
//! `target/qemu10` instead: the binary there links only libraries Debian 12
//! already has. The testbed looks there (after `$BOOTCAST_QEMU` and before
//! `PATH`).

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the unpacked QEMU lives, under the workspace.
pub const DIR: &str = "target/qemu10";

/// The packages unpacked: the emulator, its common files and its data.
const PACKAGES: [&str; 3] = [
    "qemu-system-riscv",
    "qemu-system-common",
    "qemu-system-data",
];

const SUITE: &str = "bookworm-backports";

const SOURCES_FILE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";

const SOURCES: &str = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// The binary under `root`'s unpacked folder.
pub fn binary(root: &Path) -> PathBuf {
    root.join(DIR).join("usr/bin/qemu-system-riscv64")
}

/// The major version `bin --version` reports, if it runs.
fn major_version(bin: &Path) -> Option<u32> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.split("version ").nth(1)?;
    rest.split('.').next()?.trim().parse().ok()
}

/// A QEMU ≥ 9 the testbed will find, if there is one.
fn found(root: &Path) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("BOOTCAST_QEMU") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(binary(root));
    candidates.push(PathBuf::from("qemu-system-riscv64"));
    candidates
        .into_iter()
        .find(|b| major_version(b).is_some_and(|v| v >= 9))
}

/// The commands that install it, for a person to run.
fn commands(root: &Path) -> String {
    let dir = root.join(DIR);
    format!(
        "as root: printf '{}' > {SOURCES_FILE} && apt-get update; then: mkdir -p {d}/debs && cd {d}/debs && apt-get download -t {SUITE} {p} && for f in *.deb; do dpkg -x \"$f\" {d}; done",
        SOURCES.replace('\n', "\\n"),
        d = dir.display(),
        p = PACKAGES.join(" "),
    )
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Makes sure a QEMU ≥ 9 is there for the virtual clock: adds the suite
/// (root only), downloads the .debs and unpacks them into [`DIR`]. Not
/// root and without the suite: fails with the exact commands.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    if let Some(bin) = found(root) {
        return Ok(bin);
    }
    let has_suite = Path::new(SOURCES_FILE).exists();
    if !has_suite && !crate::install::is_root() {
        bail!(
            "the virtual clock needs QEMU >= 9 (Debian 12: 10.0.2 from {SUITE}); {}",
            commands(root)
        );
    }
    eprintln!("xtask: unpacking QEMU 10 from {SUITE} into {DIR}");
    if !has_suite
        && (std::fs::write(SOURCES_FILE, SOURCES).is_err()
            || !succeeds(Command::new("apt-get").arg("update")))
    {
        bail!("adding {SUITE} failed; {}", commands(root));
    }
    let dir = root.join(DIR);
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let ok = succeeds(
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", "-t", SUITE])
            .args(PACKAGES),
    );
    if !ok {
        bail!("downloading QEMU 10 failed; {}", commands(root));
    }
    for deb in std::fs::read_dir(&debs)?.flatten() {
        let path = deb.path();
        if path.extension().is_some_and(|e| e == "deb")
            && !succeeds(Command::new("dpkg").arg("-x").arg(&path).arg(&dir))
        {
            bail!("unpacking {} failed; {}", path.display(), commands(root));
        }
    }
    match found(root) {
        Some(bin) => Ok(bin),
        None => bail!(
            "{} does not run after unpacking; {}",
            binary(root).display(),
            commands(root)
        ),
    }
}

/// Whether `bootcast` arguments ask for the virtual clock: `--clock
/// virtual`, or a fleet or scenario file whose `[bus]` says so.
pub fn wanted(args: &[String]) -> bool {
    args.windows(2)
        .any(|w| w[0] == "--clock" && w[1] == "virtual")
        || args.iter().any(|a| a == "--clock=virtual")
        || args.iter().filter(|a| a.ends_with(".toml")).any(|a| {
            std::fs::read_to_string(a).is_ok_and(|t| {
                t.lines().any(|l| {
                    let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
                    l.starts_with("clock=\"virtual\"")
                })
            })
        })
}

/// The clock plugin's file name in the artifacts folder.
pub const PLUGIN: &str = "qemu-clock-plugin.so";

/// Builds the node plugin for the host and puts it beside the guest
/// artifacts in `out`, where the testbed looks for it.
pub fn build_plugin(root: &Path, out: &Path) -> Result<()> {
    crate::cmd::run_checked(
        crate::cmd::cargo(root).args(["build", "--quiet", "--release", "-p", "qemu-clock-plugin"]),
        "building the QEMU clock plugin",
    )?;
    let built = root.join("target/release/libqemu_clock_plugin.so");
    let bytes = std::fs::read(&built)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", built.display()))?;
    let dest = out.join(PLUGIN);
    if std::fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&dest, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_flag_asks_for_it() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wanted(&a(&["up", "--clock", "virtual"])));
        assert!(wanted(&a(&["--clock=virtual"])));
        assert!(!wanted(&a(&["up", "--clock", "wall"])));
        assert!(!wanted(&a(&["up", "missing.toml"])));
    }

    #[test]
    fn the_commands_name_the_suite_and_the_folder() {
        let c = commands(Path::new("/w"));
        assert!(c.contains("apt-get download -t bookworm-backports qemu-system-riscv"));
        assert!(c.contains("/w/target/qemu10"));
    }
}
