//! The plugin's end of the clock socket: blocking, because the vCPU is
//! meant to wait here.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use proto::clock::{Grant, RECORD, Report};

/// How long the plugin tries to reach the bridge at QEMU's start.
const CONNECT_FOR: Duration = Duration::from_secs(10);

/// A connection to the bridge.
#[derive(Debug)]
pub struct Link {
    sock: UnixStream,
}

impl Link {
    /// Connects to the bridge's clock socket at `path`, retrying while the
    /// socket is not there yet.
    pub fn connect(path: &Path) -> Result<Link, String> {
        let start = Instant::now();
        loop {
            match UnixStream::connect(path) {
                Ok(sock) => return Ok(Link { sock }),
                Err(e) if start.elapsed() >= CONNECT_FOR => {
                    return Err(format!("clock={}: cannot connect: {e}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Tells the bridge where the node stopped and waits for its grant.
    pub fn stop(&mut self, report: Report) -> Result<Grant, String> {
        self.sock
            .write_all(&report.encode())
            .map_err(|e| format!("the bridge is gone: {e}"))?;
        let mut rec = [0u8; RECORD];
        self.sock
            .read_exact(&mut rec)
            .map_err(|e| format!("the bridge is gone: {e}"))?;
        Grant::decode(&rec).map_err(|e| format!("a bad grant from the bridge: {e:?}"))
    }
}
