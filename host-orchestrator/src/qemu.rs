//! QEMU node processes: spawn one `virt` machine per node, and always end it.
//!
//! Every process is started with a parent-death signal, killed on drop, and
//! stopped (SIGTERM, then SIGKILL) by its own PID, so no QEMU outlives the
//! testbed on success, failure, panic or Ctrl-C.

use anyhow::{Context, Result};
use board::memory;
use board::strap::Strap;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The QEMU binary bootcast runs.
pub const QEMU: &str = "qemu-system-riscv64";
/// How long a node gets to exit after SIGTERM.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// What one node's QEMU needs.
#[derive(Clone, Debug)]
pub struct NodeLaunch {
    /// Node id (for the process name and logs).
    pub id: u16,
    /// The shared 32 MiB boot ROM flash file.
    pub flash: PathBuf,
    /// The bridge port socket the node's UART connects to.
    pub bus_socket: PathBuf,
    /// Where QEMU listens for QMP.
    pub qmp_socket: PathBuf,
    /// QEMU's own stdout and stderr.
    pub log: PathBuf,
    /// The node's strapping words.
    pub strap: Strap,
}

impl NodeLaunch {
    /// QEMU's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-machine",
            "virt",
            "-bios",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            // Each guest otherwise reserves 1 GiB for translated code.
            "-accel",
            "tcg,tb-size=32",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push("-m".into());
        a.push(format!("{}M", memory::RAM_SIZE / (1024 * 1024)));
        a.push("-name".into());
        a.push(format!("bootcast-node-{}", self.id));
        a.push("-drive".into());
        a.push(format!(
            "if=pflash,unit=0,format=raw,readonly=on,file={}",
            self.flash.display()
        ));
        a.push("-chardev".into());
        a.push(format!(
            "socket,id=bus,path={},reconnect=1",
            self.bus_socket.display()
        ));
        a.push("-serial".into());
        a.push("chardev:bus".into());
        a.push("-qmp".into());
        a.push(format!(
            "unix:{},server=on,wait=off",
            self.qmp_socket.display()
        ));
        for (i, w) in self.strap.to_words().iter().enumerate() {
            a.push("-device".into());
            a.push(format!(
                "loader,addr={:#x},data={w:#x},data-len=8",
                Strap::word_addr(i)
            ));
        }
        a
    }
}

/// A running node process.
pub struct NodeProcess {
    /// Node id.
    pub id: u16,
    /// Process id.
    pub pid: u32,
    child: Child,
}

impl NodeProcess {
    /// Starts QEMU for `launch`.
    pub fn spawn(launch: &NodeLaunch) -> Result<NodeProcess> {
        let log = std::fs::File::create(&launch.log)
            .with_context(|| format!("cannot create {}", launch.log.display()))?;
        let err = log.try_clone()?;
        let mut cmd = Command::new(QEMU);
        cmd.args(launch.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            // Its own process group: a terminal's Ctrl-C reaches the testbed,
            // which then stops the node itself.
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes the prctl system call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!("cannot start {QEMU} (install it: apt-get install -y qemu-system-misc)")
        })?;
        let pid = child.id().context("QEMU exited at once")?;
        Ok(NodeProcess {
            id: launch.id,
            pid,
            child,
        })
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the process to exit (SIGTERM to its own PID).
    pub fn terminate(&mut self) {
        if self.exited().is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        }
    }

    /// Waits for the process until `deadline`, then kills it. Either way it is
    /// reaped, so no zombie is left.
    pub async fn wait_or_kill(&mut self, deadline: tokio::time::Instant) {
        if tokio::time::timeout_at(deadline, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(&mut self) {
        self.terminate();
        self.wait_or_kill(tokio::time::Instant::now() + TERM_GRACE)
            .await;
    }

    /// Kills at once (a power cut) and waits for the process.
    pub async fn power_off(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Checks that QEMU can be run, with the exact command to install it if not.
pub fn check_installed() -> Result<()> {
    match std::process::Command::new(QEMU).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => anyhow::bail!(
            "{QEMU} is not installed; run `apt-get update && apt-get install -y qemu-system-misc` (or `cargo xtask install`)"
        ),
    }
}
