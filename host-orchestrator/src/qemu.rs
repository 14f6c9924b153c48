//! QEMU node processes: spawn one `virt` machine per node, and always end it.
//!
//! Every process is started with a parent-death signal, killed on drop, and
//! stopped (SIGTERM, then SIGKILL) by its own PID, so no QEMU outlives the
//! testbed on success, failure, panic or Ctrl-C.

use crate::child::Child;
use anyhow::{Context, Result};
use board::memory;
use board::strap::{Strap, Transport};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// The QEMU binary bootcast runs.
pub const QEMU: &str = "qemu-system-riscv64";

/// The nice value node processes run at.
pub const GUEST_NICE: libc::c_int = 10;

/// What one node's QEMU needs.
#[derive(Clone, Debug)]
pub struct NodeLaunch {
    /// Node id (for the process name and logs).
    pub id: u16,
    /// The boot ROM: the flash file's bytes without its zero tail, as
    /// [`write_boot_rom`] leaves them (every node of a run shares it).
    pub boot_rom: PathBuf,
    /// The bridge port socket the node's UART connects to.
    pub bus_socket: PathBuf,
    /// Where QEMU listens for QMP.
    pub qmp_socket: PathBuf,
    /// QEMU's own stdout and stderr.
    pub log: PathBuf,
    /// The node's debug console (its UART, when the bus is on virtio).
    pub console: PathBuf,
    /// The node's strapping words (which also say the bus transport).
    pub strap: Strap,
    /// Start with the CPU stopped, until a QMP `cont` releases it.
    pub paused: bool,
    /// On the virtual clock: the node's clock, held by the bridge.
    pub clock: Option<NodeClock>,
    /// The file that backs the node's RAM, shared with the host (which
    /// reads it to check the node); `None`: QEMU's own anonymous memory.
    /// Removed before each power-on: a node's RAM starts empty.
    pub ram: Option<PathBuf>,
    /// A second QMP monitor for the supervisor alone (it reads the CPU's
    /// program counter there), so its reads never wait behind the
    /// testbed's commands on the first.
    pub monitor: Option<PathBuf>,
}

/// How a node runs on the virtual clock.
#[derive(Clone, Debug)]
pub struct NodeClock {
    /// The QEMU (>= 9) and the plugin to run it with.
    pub tools: VirtualTools,
    /// The bridge's clock socket for this node.
    pub socket: PathBuf,
    /// 2^shift ns per instruction.
    pub shift: u32,
}

/// What the virtual clock needs: a QEMU with plugin time control (>= 9)
/// and bootcast's clock plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualTools {
    /// `qemu-system-riscv64`, version 9 or later.
    pub qemu: PathBuf,
    /// The clock plugin (`qemu-clock-plugin.so`).
    pub plugin: PathBuf,
}

/// The major version `bin --version` reports, if it runs.
fn major_version(bin: &std::path::Path) -> Option<u32> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("version ")
        .nth(1)?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

impl VirtualTools {
    /// Finds them: QEMU at `$BOOTCAST_QEMU`, else unpacked beside the
    /// artifacts (`target/qemu10`, where `cargo xtask install
    /// --virtual-clock` puts it), else on `PATH`, the first of version 9 or
    /// later; the plugin at `$BOOTCAST_CLOCK_PLUGIN`, else in `artifacts`
    /// (`cargo xtask build` puts it there). Errors say what to run.
    pub fn find(artifacts: &std::path::Path) -> Result<VirtualTools> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("BOOTCAST_QEMU") {
            candidates.push(p.into());
        }
        candidates.push(artifacts.join("../qemu10/usr/bin").join(QEMU));
        candidates.push(QEMU.into());
        let qemu = candidates
            .into_iter()
            .find(|b| major_version(b).is_some_and(|v| v >= 9))
            .with_context(|| {
                format!(
                    "the virtual clock needs QEMU >= 9 (plugin time control), and neither $BOOTCAST_QEMU, {} nor {QEMU} on PATH is one; run `cargo xtask install --virtual-clock`",
                    artifacts.join("../qemu10/usr/bin").join(QEMU).display()
                )
            })?;
        let plugin = std::env::var_os("BOOTCAST_CLOCK_PLUGIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| artifacts.join("qemu-clock-plugin.so"));
        anyhow::ensure!(
            plugin.exists(),
            "the virtual clock's QEMU plugin {} is missing; run `cargo xtask build`",
            plugin.display()
        );
        Ok(VirtualTools { qemu, plugin })
    }
}

impl NodeClock {
    /// QEMU's arguments for the virtual clock.
    fn args(&self) -> Vec<String> {
        vec![
            // A virtio notify is handled at once, in the guest's own
            // instruction stream; with an ioeventfd QEMU's main loop takes
            // it later, at a point of virtual time that depends on the host.
            "-global".into(),
            "virtio-mmio.ioeventfd=off".into(),
            // Instructions make the time; a sleeping guest jumps to its
            // next timer (sleep=off), once the plugin lets it sleep.
            "-icount".into(),
            format!("shift={},sleep=off", self.shift),
            "-plugin".into(),
            format!(
                "{},clock={},shift={}",
                self.tools.plugin.display(),
                self.socket.display(),
                self.shift
            ),
        ]
    }
}

impl NodeLaunch {
    /// The bus port's chardev. On the virtual clock QEMU connects before
    /// the guest starts: with `reconnect` it connects in the background,
    /// and what the guest sends before QEMU sees the connection up is late
    /// or lost, at a point that depends on the host. The bridge listens
    /// first anyway.
    fn bus_chardev(&self) -> String {
        let reconnect = if self.clock.is_some() {
            ""
        } else {
            ",reconnect=1"
        };
        format!(
            "socket,id=bus,path={}{reconnect}",
            self.bus_socket.display()
        )
    }

    /// The flash as the guest sees it: 32 MiB of read-only pflash holding
    /// the boot ROM, then zeros. Read from a file, every QEMU would keep a
    /// private 32 MiB copy of it; here the pflash reads from a null block
    /// device that leaves its (fresh, zeroed) memory untouched, and the
    /// generic loader writes the boot ROM's few pages into it at every
    /// reset. The same bytes, about 31 MiB less private memory per node.
    fn flash_args(&self) -> [String; 4] {
        [
            "-drive".into(),
            format!(
                "if=pflash,unit=0,format=raw,readonly=on,file=null-co://,file.size={},file.read-zeroes=off",
                memory::FLASH_SIZE
            ),
            "-device".into(),
            format!(
                "loader,file={},addr={:#x},force-raw=on",
                self.boot_rom.display(),
                memory::FLASH_BASE
            ),
        ]
    }

    /// The machine and its RAM: a shared file the host reads, if given.
    fn ram_args(&self, ram_mib: u64) -> Vec<String> {
        let mut a = Vec::new();
        match &self.ram {
            Some(file) => {
                // The guest's RAM is this file's pages: what the guest
                // holds, the host reads (QEMU 7.2 and later).
                a.push("-machine".into());
                a.push("virt,memory-backend=ram".into());
                a.push("-object".into());
                a.push(format!(
                    "memory-backend-file,id=ram,size={ram_mib}M,mem-path={},share=on",
                    file.display()
                ));
            }
            None => {
                a.push("-machine".into());
                a.push("virt".into());
            }
        }
        a
    }

    /// The bus's device on the chardev, and the node's console.
    fn transport_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        match self.strap.transport {
            Transport::Uart => a.extend(["-serial".into(), "chardev:bus".into()]),
            Transport::Virtio => {
                // A modern virtio-console carries the bus; the UART becomes
                // the node's console, written to its log.
                for s in [
                    "-global",
                    "virtio-mmio.force-legacy=false",
                    "-device",
                    "virtio-serial-device",
                    "-device",
                    "virtconsole,chardev=bus",
                    "-chardev",
                ] {
                    a.push(s.into());
                }
                a.push(format!("file,id=console,path={}", self.console.display()));
                a.extend(["-serial".into(), "chardev:console".into()]);
            }
        }
        a
    }

    /// QEMU's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
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
        let ram_mib = memory::RAM_SIZE / (1024 * 1024);
        a.extend(self.ram_args(ram_mib));
        a.push("-m".into());
        a.push(format!("{ram_mib}M"));
        a.push("-name".into());
        a.push(format!("bootcast-node-{}", self.id));
        a.extend(self.flash_args());
        a.push("-chardev".into());
        a.push(self.bus_chardev());
        a.extend(self.transport_args());
        if self.paused {
            a.push("-S".into());
        }
        if let Some(c) = &self.clock {
            a.extend(c.args());
        }
        a.push("-qmp".into());
        a.push(format!(
            "unix:{},server=on,wait=off",
            self.qmp_socket.display()
        ));
        if let Some(monitor) = &self.monitor {
            a.push("-qmp".into());
            a.push(format!("unix:{},server=on,wait=off", monitor.display()));
        }
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

/// The boot ROM's part of a flash file: its bytes up to its zero tail
/// (at least one byte).
pub fn boot_rom_bytes(flash: &[u8]) -> &[u8] {
    let end = flash.iter().rposition(|&b| b != 0).map_or(1, |i| i + 1);
    &flash[..end.min(flash.len())]
}

/// Writes the boot ROM of the flash file `flash` (which must be exactly the
/// flash's size) to `out`, for the nodes' QEMUs to load.
pub fn write_boot_rom(flash: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(flash).with_context(|| format!("cannot read {}", flash.display()))?;
    if bytes.len() as u64 != memory::FLASH_SIZE {
        anyhow::bail!(
            "{}: a flash file must be exactly {} bytes, this one is {}",
            flash.display(),
            memory::FLASH_SIZE,
            bytes.len()
        );
    }
    std::fs::write(out, boot_rom_bytes(&bytes))
        .with_context(|| format!("cannot write {}", out.display()))
}

/// A running node process.
pub struct NodeProcess {
    /// Node id.
    pub id: u16,
    /// The QEMU process.
    pub process: Child,
}

impl NodeProcess {
    /// Starts QEMU for `launch`.
    pub fn spawn(launch: &NodeLaunch) -> Result<NodeProcess> {
        if let Some(ram) = &launch.ram {
            // Power-on: RAM starts empty (QEMU makes a new, zeroed file).
            match std::fs::remove_file(ram) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", ram.display()));
                }
                _ => {}
            }
        }
        let log = std::fs::File::create(&launch.log)
            .with_context(|| format!("cannot create {}", launch.log.display()))?;
        let err = log.try_clone()?;
        let mut cmd = Command::new(
            launch
                .clock
                .as_ref()
                .map_or(std::path::Path::new(QEMU), |c| c.tools.qemu.as_path()),
        );
        // SAFETY: the closure runs in the forked child before exec and only
        // makes the setpriority and prctl system calls, which are
        // async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // Guests are the load; the bus bridge and the master, which
                // keep the bus's time, must not wait behind them for a core.
                if libc::setpriority(libc::PRIO_PROCESS, 0, GUEST_NICE) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // QEMU asks for huge pages for guest memory, so the few KiB
                // a node touches of its flash and of each RAM area would
                // cost 2 MiB each (about 7 MiB a node); it survives exec.
                let (on, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
                if libc::prctl(libc::PR_SET_THP_DISABLE, on, zero, zero, zero) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.args(launch.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let process = Child::spawn(
            cmd,
            &format!("{QEMU} (install it: apt-get install -y qemu-system-misc)"),
        )?;
        Ok(NodeProcess {
            id: launch.id,
            process,
        })
    }
}

/// Checks that QEMU can be run, with the exact command to install it if not.
pub fn check_installed() -> Result<()> {
    match std::process::Command::new(QEMU).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(crate::exit::EnvironmentMissing(format!(
            "{QEMU} is not installed; run `apt-get update && apt-get install -y qemu-system-misc` (or `cargo xtask install`)"
        ))
        .into()),
    }
}

/// A QMP connection past its greeting and capabilities negotiation.
pub struct Qmp {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    wr: tokio::net::unix::OwnedWriteHalf,
}

impl Qmp {
    /// Connects to the QEMU listening on `socket`. QMP greets, then wants
    /// `qmp_capabilities` before it takes commands.
    pub async fn connect(socket: &std::path::Path) -> Result<Qmp> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("cannot connect to QMP at {}", socket.display()))?;
        let (rd, wr) = stream.into_split();
        let mut q = Qmp {
            lines: BufReader::new(rd).lines(),
            wr,
        };
        let greeting = q.answer().await?;
        anyhow::ensure!(
            greeting.get("QMP").is_some(),
            "not a QMP greeting: {greeting}"
        );
        q.execute("qmp_capabilities").await?;
        Ok(q)
    }

    /// [`Qmp::connect`], retrying for up to `timeout` while QEMU starts and
    /// has not created its socket yet.
    pub async fn connect_within(
        socket: &std::path::Path,
        timeout: std::time::Duration,
    ) -> Result<Qmp> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match Qmp::connect(socket).await {
                Ok(q) => return Ok(q),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e.context(format!("QMP not up after {} s", timeout.as_secs())));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// Sends `command` without waiting for its answer (see [`Qmp::result`]).
    pub async fn send(&mut self, command: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.wr
            .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
            .await
            .context("writing to QMP")
    }

    /// The answer to the command sent last, or its error.
    pub async fn result(&mut self, command: &str) -> Result<serde_json::Value> {
        let answer = self.answer().await?;
        if let Some(err) = answer.get("error") {
            anyhow::bail!("QMP {command} failed: {err}");
        }
        Ok(answer["return"].clone())
    }

    /// Runs `command` and returns its result.
    pub async fn execute(&mut self, command: &str) -> Result<serde_json::Value> {
        self.send(command).await?;
        self.result(command).await
    }

    /// The next line that is not an event (events may come at any time).
    async fn answer(&mut self) -> Result<serde_json::Value> {
        loop {
            let line =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.lines.next_line())
                    .await
                    .context("QMP did not answer within 5 s")??
                    .context("QMP closed the connection")?;
            let v: serde_json::Value =
                serde_json::from_str(&line).context("QMP sent something that is not JSON")?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }
}

/// Sends one QMP command to the QEMU listening on `socket` and waits for its
/// answer.
pub async fn qmp(socket: &std::path::Path, command: &str) -> Result<serde_json::Value> {
    Qmp::connect(socket).await?.execute(command).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_rom_is_the_flash_up_to_its_zero_tail() {
        let cases: [(&[u8], &[u8]); 4] = [
            (&[1, 0, 2, 0, 0], &[1, 0, 2]),
            (&[1, 2], &[1, 2]),
            (&[0, 0, 0], &[0]),
            (&[], &[]),
        ];
        for (flash, want) in cases {
            assert_eq!(boot_rom_bytes(flash), want, "{flash:?}");
        }
    }

    #[test]
    fn a_flash_file_of_the_wrong_size_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (flash, out) = (dir.path().join("flash.bin"), dir.path().join("rom.bin"));
        std::fs::write(&flash, [7u8; 100]).unwrap();
        let err = write_boot_rom(&flash, &out).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "{}: a flash file must be exactly 33554432 bytes, this one is 100",
                flash.display()
            )
        );
        let mut image = vec![0u8; memory::FLASH_SIZE as usize];
        image[..3].copy_from_slice(&[9, 0, 9]);
        std::fs::write(&flash, &image).unwrap();
        write_boot_rom(&flash, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), [9, 0, 9]);
    }
}
