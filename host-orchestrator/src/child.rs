//! Child processes the testbed starts (QEMU nodes, a backup master), and
//! always ends: a parent-death signal, its own process group (a terminal's
//! Ctrl-C reaches only the testbed, which then stops its children), kill on
//! drop, and SIGTERM then SIGKILL by its own PID.

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::Instant;

/// How long a child gets to exit after SIGTERM.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// A running child.
pub struct Child {
    /// Process id.
    pub pid: u32,
    inner: tokio::process::Child,
}

impl Child {
    /// Starts `cmd` with the safeguards above. `what` names it in errors.
    pub fn spawn(mut cmd: Command, what: &str) -> Result<Child> {
        cmd.kill_on_drop(true).process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes the prctl system call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let inner = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let pid = inner
            .id()
            .with_context(|| format!("{what} exited at once"))?;
        Ok(Child { pid, inner })
    }

    /// The child's stdout, if it was piped (once).
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.inner.stdout.take()
    }

    /// The child's stderr, if it was piped (once).
    pub fn take_stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.inner.stderr.take()
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.inner.try_wait().ok().flatten()
    }

    /// Asks the process to exit (SIGTERM to its own PID).
    pub fn terminate(&mut self) {
        if self.exited().is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        }
    }

    /// Waits for the process until `deadline`, then kills it. Either way it
    /// is reaped, so no zombie is left.
    pub async fn wait_or_kill(&mut self, deadline: Instant) {
        if tokio::time::timeout_at(deadline, self.inner.wait())
            .await
            .is_err()
        {
            let _ = self.inner.start_kill();
            let _ = self.inner.wait().await;
        }
    }

    /// Waits for the process until `deadline`, then kills its whole process
    /// group (a browser leaves helpers behind it). Returns how it exited,
    /// or `None` when it had to be killed.
    pub async fn wait_or_kill_group(
        &mut self,
        deadline: Instant,
    ) -> Option<std::process::ExitStatus> {
        match tokio::time::timeout_at(deadline, self.inner.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = nix::sys::signal::killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
                let _ = self.inner.wait().await;
                None
            }
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(&mut self) {
        self.terminate();
        self.wait_or_kill(Instant::now() + TERM_GRACE).await;
    }

    /// Kills at once (a power cut) and waits for the process.
    pub async fn kill_now(&mut self) {
        let _ = self.inner.start_kill();
        let _ = self.inner.wait().await;
    }
}
