//! The run folder: where a testbed keeps its sockets, logs, capture and
//! image stores, and the command its report. Every path in it is named
//! here and nowhere else.
//!
//! The command line keeps every run in `runs/<time>-<name>/` beside the
//! built artifacts (`target/bootcast/runs/`), with `runs/latest` linking
//! the newest ([`RunDir::new_run`]).
//!
//! ```text
//! report.json          the report (`schema_version` first)
//! junit.xml            the checks as JUnit
//! events.jsonl         every state change, window, session, action, fault
//! trace.json           the run as Chrome trace events (Perfetto)
//! timeline.html        the run as one self-contained page
//! timeline.png         a screenshot of it (when Chromium is there)
//! p/<port>.sock        bus ports (master, supervisor, backup, tool, n<id>)
//! p/control.sock       the bridge's control API
//! q/n<id>.sock         each node's QMP
//! q/m<id>.sock         each node's second QMP monitor, the supervisor's
//! log/bootcast.log     every log line of the run (bootcast's own)
//! log/n<id>.qemu.log   QEMU's own output
//! log/n<id>.console.log  the node's debug console (virtio transport)
//! log/n<id>.bus.log    what the node said on the bus, as the supervisor saw it
//! log/backup-master.log
//! capture/bus.pcap, capture/bus.candump
//! store/               the master's image store (publishing writes here)
//! reference/           padded reference images, when the fleet pads
//! master.json          the backup master's configuration
//! boot-rom.bin         the boot ROM the nodes' flash holds (the flash file
//!                      without its zero tail)
//! ```
//!
//! A unix socket's path must fit in 108 bytes: when the run folder's path
//! is too long for that, `p/` and `q/` are links to a short folder in
//! /tmp that lives as long as the run.
//!
//! Each node's RAM is a file, `n<id>.ram`, that QEMU maps shared and the
//! supervisor reads: in a folder of its own in /dev/shm (tmpfs: guest
//! writes never reach a disk) that lives as long as the run, else in
//! `ram/`. A folder left by a run that was killed is removed by the next.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A run folder: a temporary one (removed at the end unless kept) or one
/// the user chose.
pub struct RunDir {
    root: PathBuf,
    /// Where `p/` and `q/` really are: `root`, or `short` when `root`'s path
    /// is too long for socket paths.
    sockets: PathBuf,
    temp: Option<tempfile::TempDir>,
    short: Option<tempfile::TempDir>,
    /// Where the nodes' RAM files are.
    ram: PathBuf,
    /// The RAM folder in /dev/shm, removed with the run.
    ram_temp: Option<tempfile::TempDir>,
}

/// Where RAM folders go: a tmpfs.
const RAM_TMPFS: &str = "/dev/shm";
/// The prefix of a RAM folder's name; the process id follows.
const RAM_PREFIX: &str = "bootcast-ram-";

/// Removes RAM folders in `tmpfs` whose process is gone (a run that was
/// killed leaves its folder behind).
fn remove_stale_ram(tmpfs: &Path) {
    let Ok(entries) = std::fs::read_dir(tmpfs) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(RAM_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The longest path of a socket below a run folder.
const LONGEST_SOCKET: &str = "/p/supervisor.sock";

/// Bytes of a unix socket path, without its terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

/// Whether every socket path under `root` fits a unix socket address.
pub fn sockets_fit(root: &Path) -> bool {
    root.as_os_str().len() + LONGEST_SOCKET.len() <= SOCKET_PATH_MAX
}

/// `YYYYMMDDTHHMMSSZ` (UTC) of `t`, for run folder names that sort by time.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `name` as a folder name: letters, digits, `.`, `_` and `-`, others
/// replaced by `-`, at most 40 characters.
fn folder_name(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if n.is_empty() { "run".into() } else { n }
}

impl RunDir {
    /// A new folder `runs/<time>-<name>` (`-2`, `-3`, ... if taken) for a
    /// run that starts at `at`, and `runs/latest` made a link to it.
    /// Returns its path; [`RunDir::create`] fills it.
    pub fn new_run(runs: &Path, name: &str, at: SystemTime) -> Result<PathBuf> {
        std::fs::create_dir_all(runs)
            .with_context(|| format!("cannot create {}", runs.display()))?;
        let base = format!("{}-{}", timestamp(at), folder_name(name));
        let mut leaf = base.clone();
        let mut n = 1;
        loop {
            match std::fs::create_dir(runs.join(&leaf)) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                    n += 1;
                    leaf = format!("{base}-{n}");
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create {}", runs.join(&leaf).display()));
                }
            }
        }
        // Replaced in one step: a reader never finds no `latest`.
        let link = runs.join("latest");
        let tmp = runs.join(format!(".latest-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&leaf, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &link))
            .with_context(|| format!("cannot link {} to {leaf}", link.display()))?;
        Ok(runs.join(leaf))
    }

    /// `chosen`, created if missing, else a fresh temporary folder; its
    /// subfolders are created too.
    pub fn create(chosen: Option<&Path>) -> Result<RunDir> {
        let mut dir = match chosen {
            Some(p) => {
                std::fs::create_dir_all(p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
                RunDir::at(p)
            }
            // Short and under /tmp: unix socket paths are limited to 108 bytes.
            None => {
                let t = tempfile::Builder::new()
                    .prefix("bc-")
                    .tempdir_in("/tmp")
                    .context("cannot create a run folder in /tmp")?;
                let mut d = RunDir::at(t.path());
                d.temp = Some(t);
                d
            }
        };
        if !sockets_fit(&dir.root) {
            dir.short_sockets()?;
        }
        for sub in ["p", "q", "log", "capture"] {
            let p = dir.root.join(sub);
            std::fs::create_dir_all(&p)
                .with_context(|| format!("cannot create {}", p.display()))?;
        }
        dir.ram_folder()?;
        Ok(dir)
    }

    /// Makes the folder for the nodes' RAM files: in /dev/shm when it can,
    /// else `ram/`.
    fn ram_folder(&mut self) -> Result<()> {
        let tmpfs = Path::new(RAM_TMPFS);
        remove_stale_ram(tmpfs);
        let made = tempfile::Builder::new()
            .prefix(&format!("{RAM_PREFIX}{}-", std::process::id()))
            .tempdir_in(tmpfs);
        match made {
            Ok(t) => {
                self.ram = t.path().to_path_buf();
                self.ram_temp = Some(t);
            }
            Err(_) => {
                std::fs::create_dir_all(&self.ram)
                    .with_context(|| format!("cannot create {}", self.ram.display()))?;
            }
        }
        Ok(())
    }

    /// Puts `p/` and `q/` in a short folder in /tmp, linked from the run
    /// folder.
    fn short_sockets(&mut self) -> Result<()> {
        let short = tempfile::Builder::new()
            .prefix("bc-s-")
            .tempdir_in("/tmp")
            .context("cannot create a socket folder in /tmp")?;
        for sub in ["p", "q"] {
            let (real, link) = (short.path().join(sub), self.root.join(sub));
            std::fs::create_dir(&real)
                .with_context(|| format!("cannot create {}", real.display()))?;
            if link.is_symlink() {
                let _ = std::fs::remove_file(&link);
            }
            std::os::unix::fs::symlink(&real, &link)
                .with_context(|| format!("cannot link {} to {}", link.display(), real.display()))?;
        }
        self.sockets = short.path().to_path_buf();
        self.short = Some(short);
        Ok(())
    }

    /// An existing run folder, to find things in (tests, tools).
    pub fn at(root: impl Into<PathBuf>) -> RunDir {
        let root = root.into();
        RunDir {
            sockets: root.clone(),
            ram: root.join("ram"),
            root,
            temp: None,
            short: None,
            ram_temp: None,
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Keeps a temporary folder after the run (for diagnosis).
    pub fn keep(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = t.keep();
        }
    }

    /// The bus port name of node `id`.
    pub fn node_port_name(id: u16) -> String {
        format!("n{id}")
    }

    /// The node whose bus port is named `name`, if it is a node's.
    pub fn node_of_port_name(name: &str) -> Option<u16> {
        name.strip_prefix('n')?.parse().ok()
    }

    /// The socket of the bus port `name`.
    pub fn port_socket(&self, name: &str) -> PathBuf {
        self.sockets.join("p").join(format!("{name}.sock"))
    }

    /// The socket of node `id`'s bus port.
    pub fn node_socket(&self, id: u16) -> PathBuf {
        self.port_socket(&Self::node_port_name(id))
    }

    /// The socket of node `id`'s clock (the virtual clock's plugin).
    pub fn clock_socket(&self, id: u16) -> PathBuf {
        self.root.join("p").join(format!("c{id}.sock"))
    }

    /// The bridge's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.sockets.join("p").join("control.sock")
    }

    /// Node `id`'s QMP socket.
    pub fn qmp_socket(&self, id: u16) -> PathBuf {
        self.sockets.join("q").join(format!("n{id}.sock"))
    }

    /// Node `id`'s second QMP monitor, which only the supervisor uses.
    pub fn monitor_socket(&self, id: u16) -> PathBuf {
        self.sockets.join("q").join(format!("m{id}.sock"))
    }

    /// The file that backs node `id`'s RAM.
    pub fn ram_file(&self, id: u16) -> PathBuf {
        self.ram.join(format!("n{id}.ram"))
    }

    /// A log file in `log/`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join("log").join(name)
    }

    /// bootcast's own log: every log line of the run (the terminal shows
    /// only warnings and errors unless `-v`).
    pub fn host_log(&self) -> PathBuf {
        self.log("bootcast.log")
    }

    /// QEMU's own output for node `id`.
    pub fn qemu_log(&self, id: u16) -> PathBuf {
        self.log(&format!("n{id}.qemu.log"))
    }

    /// Node `id`'s debug console.
    pub fn console_log(&self, id: u16) -> PathBuf {
        self.log(&format!("n{id}.console.log"))
    }

    /// What node `id` said on the bus.
    pub fn bus_log(&self, id: u16) -> PathBuf {
        self.log(&format!("n{id}.bus.log"))
    }

    /// The pcap capture of the bus.
    pub fn capture_pcap(&self) -> PathBuf {
        self.root.join("capture").join("bus.pcap")
    }

    /// The candump capture of the bus.
    pub fn capture_candump(&self) -> PathBuf {
        self.root.join("capture").join("bus.candump")
    }

    /// The master's image store.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Padded reference images.
    pub fn reference(&self) -> PathBuf {
        self.root.join("reference")
    }

    /// The boot ROM the nodes' flash holds.
    pub fn boot_rom(&self) -> PathBuf {
        self.root.join("boot-rom.bin")
    }

    /// The backup master's configuration file.
    pub fn master_config(&self) -> PathBuf {
        self.root.join("master.json")
    }

    /// The run's report.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }

    /// The run's checks as JUnit XML.
    pub fn junit(&self) -> PathBuf {
        self.root.join("junit.xml")
    }

    /// The run's event log, one JSON object per line.
    pub fn events(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }

    /// The run as Chrome trace events.
    pub fn trace(&self) -> PathBuf {
        self.root.join("trace.json")
    }

    /// The run's timeline page.
    pub fn timeline_html(&self) -> PathBuf {
        self.root.join("timeline.html")
    }

    /// A screenshot of the timeline page.
    pub fn timeline_png(&self) -> PathBuf {
        self.root.join("timeline.png")
    }

    /// A benchmark's folder for the views of one of its fleets.
    pub fn fleet_views(&self, label: &str) -> PathBuf {
        self.root.join("fleets").join(folder_name(label))
    }
}

impl Drop for RunDir {
    /// Links to a short socket folder go with it.
    fn drop(&mut self) {
        if self.short.is_some() {
            for sub in ["p", "q"] {
                let link = self.root.join(sub);
                if link.is_symlink() {
                    let _ = std::fs::remove_file(link);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_and_sort_as_text() {
        let at = |s| timestamp(UNIX_EPOCH + Duration::from_secs(s));
        for (secs, want) in [
            (0, "19700101T000000Z"),
            (951_782_400, "20000229T000000Z"),
            (1_709_251_199, "20240229T235959Z"),
            (1_795_855_994, "20261128T085314Z"),
        ] {
            assert_eq!(at(secs), want, "{secs}");
        }
    }

    #[test]
    fn new_runs_get_their_own_folder_and_latest_follows() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_855_994);
        let a = RunDir::new_run(&runs, "storm 40/x", t).unwrap();
        assert_eq!(a, runs.join("20261128T085314Z-storm-40-x"));
        let b = RunDir::new_run(&runs, "storm 40/x", t).unwrap();
        assert_eq!(b, runs.join("20261128T085314Z-storm-40-x-2"));
        assert!(a.is_dir() && b.is_dir());
        let latest = std::fs::read_link(runs.join("latest")).unwrap();
        assert_eq!(latest, Path::new("20261128T085314Z-storm-40-x-2"));
        assert_eq!(
            std::fs::canonicalize(runs.join("latest")).unwrap(),
            std::fs::canonicalize(&b).unwrap()
        );
    }

    #[test]
    fn ram_files_live_in_a_folder_of_the_run_that_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let rd = RunDir::create(Some(&dir.path().join("r"))).unwrap();
        let folder = rd.ram_file(3).parent().unwrap().to_path_buf();
        assert!(folder.is_dir());
        assert_eq!(rd.ram_file(3).file_name().unwrap(), "n3.ram");
        drop(rd);
        if folder.starts_with(RAM_TMPFS) {
            assert!(!folder.exists(), "removed with the run");
        }
        // A folder whose process is gone is removed by the next run.
        let tmpfs = tempfile::tempdir().unwrap();
        let stale = tmpfs.path().join(format!("{RAM_PREFIX}{}-x", u32::MAX));
        let live = tmpfs
            .path()
            .join(format!("{RAM_PREFIX}{}-y", std::process::id()));
        let other = tmpfs.path().join("something-else");
        for d in [&stale, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        remove_stale_ram(tmpfs.path());
        assert!(!stale.exists() && live.exists() && other.exists());
    }

    #[test]
    fn a_run_folder_too_deep_for_sockets_keeps_them_in_a_short_linked_folder() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(40));
        assert!(!sockets_fit(&deep));
        let rd = RunDir::create(Some(&deep)).unwrap();
        let sock = rd.port_socket("supervisor");
        assert!(
            sock.as_os_str().len() <= SOCKET_PATH_MAX,
            "{}",
            sock.display()
        );
        assert!(rd.qmp_socket(40).as_os_str().len() <= SOCKET_PATH_MAX);
        assert!(rd.monitor_socket(250).as_os_str().len() <= SOCKET_PATH_MAX);
        // The run folder links to where they are.
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(deep.join("p").join("supervisor.sock").exists());
        drop(listener);
        let short = sock.parent().unwrap().parent().unwrap().to_path_buf();
        drop(rd);
        assert!(!deep.join("p").exists() && !short.exists(), "cleaned up");
        assert!(deep.join("log").is_dir(), "the rest stays");
        // A short one keeps its sockets in itself.
        let rd = RunDir::create(Some(&dir.path().join("r"))).unwrap();
        assert!(
            rd.port_socket("n1")
                .starts_with(dir.path().join("r").join("p"))
        );
    }
}
