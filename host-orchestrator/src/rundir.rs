//! The run folder: where a testbed keeps its sockets, logs, capture and
//! image stores. Every path in it is named here and nowhere else.
//!
//! ```text
//! p/<port>.sock        bus ports (master, supervisor, backup, tool, n<id>)
//! p/control.sock       the bridge's control API
//! q/n<id>.sock         each node's QMP
//! log/n<id>.qemu.log   QEMU's own output
//! log/n<id>.console.log  the node's debug console (virtio transport)
//! log/n<id>.bus.log    what the node said on the bus, as the supervisor saw it
//! log/backup-master.log
//! capture/bus.pcap, capture/bus.candump
//! store/               the master's image store (publishing writes here)
//! reference/           padded reference images, when the fleet pads
//! master.json          the backup master's configuration
//! ```

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A run folder: a temporary one (removed at the end unless kept) or one
/// the user chose.
pub struct RunDir {
    root: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl RunDir {
    /// `chosen`, created if missing, else a fresh temporary folder; its
    /// subfolders are created too.
    pub fn create(chosen: Option<&Path>) -> Result<RunDir> {
        let dir = match chosen {
            Some(p) => {
                std::fs::create_dir_all(p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
                RunDir {
                    root: p.to_path_buf(),
                    temp: None,
                }
            }
            // Short and under /tmp: unix socket paths are limited to 108 bytes.
            None => {
                let t = tempfile::Builder::new()
                    .prefix("bc-")
                    .tempdir_in("/tmp")
                    .context("cannot create a run folder in /tmp")?;
                RunDir {
                    root: t.path().to_path_buf(),
                    temp: Some(t),
                }
            }
        };
        for sub in ["p", "q", "log", "capture"] {
            let p = dir.root.join(sub);
            std::fs::create_dir_all(&p)
                .with_context(|| format!("cannot create {}", p.display()))?;
        }
        Ok(dir)
    }

    /// An existing run folder, to find things in (tests, tools).
    pub fn at(root: impl Into<PathBuf>) -> RunDir {
        RunDir {
            root: root.into(),
            temp: None,
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
        self.root.join("p").join(format!("{name}.sock"))
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
        self.root.join("p").join("control.sock")
    }

    /// Node `id`'s QMP socket.
    pub fn qmp_socket(&self, id: u16) -> PathBuf {
        self.root.join("q").join(format!("n{id}.sock"))
    }

    /// A log file in `log/`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join("log").join(name)
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

    /// The backup master's configuration file.
    pub fn master_config(&self) -> PathBuf {
        self.root.join("master.json")
    }
}
