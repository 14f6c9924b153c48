//! Reads a node from outside, for the host's own check (`inspect` judges
//! what it reads): its RAM through the file that backs it (QEMU's
//! `memory-backend-file` with `share=on`: the guest's RAM is that file's
//! pages, so a read sees what the guest holds now), and its program counter
//! through a QEMU monitor of its own (QMP `human-monitor-command` with
//! `info registers`, which QEMU 7.2 and 10 answer alike for riscv64; QMP's
//! `query-cpus-fast` gives no PC for riscv).
//!
//! Blocking, with short timeouts. The supervisor runs it in blocking tasks
//! on the wall clock; on the virtual clock in threads it waits for, in the
//! supervisor's step, which holds the bus's time: the node is read at a
//! point of virtual time. Either way the nodes due at once are read side by
//! side: a loaded QEMU answers its monitor late, and the waits overlap.
//!
//! Each node's monitor connection is kept between reads (a new one costs
//! three round trips: greeting, capabilities, command) and made again when
//! it fails (the node's QEMU was restarted).

use super::inspect::{Observation, image_span};
use board::handoff::{self, Handoff};
use board::memory;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one answer from a node's monitor may take.
pub const MONITOR_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a node can be read from outside.
#[derive(Clone, Debug)]
pub struct NodeAccess {
    /// The file that backs its RAM (`RAM_BASE` is its first byte).
    pub ram: PathBuf,
    /// Its monitor's QMP socket (one the supervisor alone uses).
    pub monitor: PathBuf,
    /// The monitor connection, kept between reads.
    link: Arc<Mutex<Option<Monitor>>>,
}

impl NodeAccess {
    /// A node whose RAM is backed by `ram`, with its monitor at `monitor`.
    pub fn new(ram: PathBuf, monitor: PathBuf) -> NodeAccess {
        NodeAccess {
            ram,
            monitor,
            link: Arc::default(),
        }
    }

    /// The CPU's program counter, from the node's monitor: on the kept
    /// connection, or a new one when that fails (once).
    pub fn read_pc(&self) -> Result<u64, String> {
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        let mut failure = String::new();
        for _ in 0..2 {
            if link.is_none() {
                let m = Monitor::connect(&self.monitor)
                    .map_err(|e| format!("{}: {e}", self.monitor.display()))?;
                *link = Some(m);
            }
            let Some(m) = link.as_mut() else { break };
            match m.hmp("info registers") {
                Ok(text) => {
                    return parse_pc(&text).ok_or_else(|| {
                        format!(
                            "{}: no pc in `info registers`: {}",
                            self.monitor.display(),
                            text.lines().take(3).collect::<Vec<_>>().join(" | ")
                        )
                    });
                }
                Err(e) => {
                    // A QEMU restarted since, or an answer cut short:
                    // this connection is done with.
                    *link = None;
                    failure = format!("{}: {e}", self.monitor.display());
                }
            }
        }
        Err(failure)
    }
}

/// Reads node `access`: its handoff record, its PC, the image the record
/// names (at most `limit` bytes), and the record again; a record that
/// changed meanwhile (a reboot) makes the reading unusable. The PC is read
/// only when the record names an image, or when `pc_anyway` (the bus says
/// an app should run: one that overwrote its record is caught too).
pub fn observe(access: &NodeAccess, limit: u64, pc_anyway: bool) -> Observation {
    let record = read_ram(&access.ram, memory::HANDOFF_BASE, handoff::LEN as u64);
    let Ok(bytes) = &record else {
        return Observation {
            record,
            pc: None,
            image: Vec::new(),
        };
    };
    let parsed = Handoff::from_le_bytes(bytes);
    let pc = (pc_anyway || parsed.is_some_and(|r| r.names_an_image())).then(|| access.read_pc());
    let span = parsed.and_then(|r| image_span(&r, limit));
    let image = match span {
        Some((addr, len)) => match read_ram(&access.ram, addr, len) {
            Ok(b) => b,
            Err(e) => {
                return Observation {
                    record: Err(e),
                    pc,
                    image: Vec::new(),
                };
            }
        },
        None => Vec::new(),
    };
    let again = read_ram(&access.ram, memory::HANDOFF_BASE, handoff::LEN as u64);
    let record = match again {
        Ok(b) if b == *bytes => record,
        Ok(_) => Err("the handoff record changed while it was read (a reboot)".into()),
        Err(e) => Err(e),
    };
    Observation { record, pc, image }
}

/// `len` bytes of guest RAM at guest address `addr`.
pub fn read_ram(file: &Path, addr: u64, len: u64) -> Result<Vec<u8>, String> {
    let offset = addr
        .checked_sub(memory::RAM_BASE)
        .filter(|o| o + len <= memory::RAM_SIZE)
        .ok_or_else(|| format!("{addr:#x}+{len:#x} is not in RAM"))?;
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(buf)
}

/// Writes `bytes` into guest RAM at guest address `addr`, behind the
/// guest's back (tests: a node whose loaded bytes change after the load).
pub fn write_ram(file: &Path, addr: u64, bytes: &[u8]) -> Result<(), String> {
    let offset = addr
        .checked_sub(memory::RAM_BASE)
        .filter(|o| o + bytes.len() as u64 <= memory::RAM_SIZE)
        .ok_or_else(|| format!("{addr:#x}+{:#x} is not in RAM", bytes.len()))?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    f.write_all_at(bytes, offset)
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// The `pc` line of `info registers` (` pc       0000000080101270`).
pub fn parse_pc(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("pc"))
            .then(|| u64::from_str_radix(words.next()?.trim_start_matches("0x"), 16).ok())
            .flatten()
    })
}

/// A QMP connection to a node's monitor, past its greeting.
#[derive(Debug)]
struct Monitor {
    writer: UnixStream,
    lines: BufReader<UnixStream>,
}

impl Monitor {
    /// Connects, and negotiates capabilities.
    fn connect(socket: &Path) -> std::io::Result<Monitor> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(MONITOR_TIMEOUT))?;
        stream.set_write_timeout(Some(MONITOR_TIMEOUT))?;
        let mut m = Monitor {
            writer: stream.try_clone()?,
            lines: BufReader::new(stream),
        };
        let greeting = answer(&mut m.lines)?;
        if greeting.get("QMP").is_none() {
            return Err(invalid(format!("not a QMP greeting: {greeting}")));
        }
        m.writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
        answer(&mut m.lines)?;
        Ok(m)
    }

    /// Runs one human monitor command and returns its text.
    fn hmp(&mut self, command: &str) -> std::io::Result<String> {
        let request = serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": command },
        });
        self.writer.write_all(format!("{request}\n").as_bytes())?;
        let a = answer(&mut self.lines)?;
        match a.get("return").and_then(|r| r.as_str()) {
            Some(text) => Ok(text.to_string()),
            None => Err(invalid(format!("{command}: {a}"))),
        }
    }
}

/// The next QMP line that is not an event.
fn answer(lines: &mut BufReader<UnixStream>) -> std::io::Result<serde_json::Value> {
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Err(invalid("QMP closed the connection".into()));
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if v.get("error").is_some() {
            return Err(invalid(format!("QMP error: {v}")));
        }
        if v.get("event").is_none() {
            return Ok(v);
        }
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU 7.2 and 10 print (the first lines; the rest alike).
    const INFO_REGISTERS: &str = "\r\nCPU#0\r\n V      =   0\r\n pc       0000000080101270\r\n mhartid  0000000000000000\r\n mepc     0000000020000080\r\n";

    #[test]
    fn the_pc_is_read_from_info_registers() {
        assert_eq!(parse_pc(INFO_REGISTERS), Some(0x8010_1270));
        assert_eq!(parse_pc(" mepc 0000000020000080\n sepc 0\n"), None);
        assert_eq!(parse_pc(" pc zz\n"), None);
        assert_eq!(parse_pc(""), None);
    }

    #[test]
    fn ram_is_read_and_written_at_guest_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ram = dir.path().join("n1.ram");
        std::fs::File::create(&ram)
            .unwrap()
            .set_len(memory::RAM_SIZE)
            .unwrap();
        write_ram(&ram, memory::IMAGE_BASE + 2, b"abc").unwrap();
        assert_eq!(
            read_ram(&ram, memory::IMAGE_BASE, 6).unwrap(),
            b"\0\0abc\0".to_vec()
        );
        assert!(read_ram(&ram, memory::RAM_BASE - 1, 4).is_err());
        assert!(read_ram(&ram, memory::RAM_BASE + memory::RAM_SIZE - 2, 4).is_err());
        assert!(read_ram(&dir.path().join("none"), memory::RAM_BASE, 4).is_err());
    }

    #[test]
    fn a_node_that_cannot_be_read_gives_reasons_not_findings() {
        let dir = tempfile::tempdir().unwrap();
        let access = NodeAccess::new(dir.path().join("n1.ram"), dir.path().join("m1.sock"));
        let obs = observe(&access, 1 << 20, true);
        assert!(obs.record.unwrap_err().contains("n1.ram"));
        // RAM there (zeroed: power-on), no monitor.
        std::fs::File::create(&access.ram)
            .unwrap()
            .set_len(memory::RAM_SIZE)
            .unwrap();
        let obs = observe(&access, 1 << 20, true);
        assert_eq!(obs.record, Ok(vec![0; handoff::LEN]));
        assert!(obs.pc.unwrap().unwrap_err().contains("m1.sock"));
        assert!(obs.image.is_empty());
        // No image named, and the bus says no app should run: no PC read.
        assert_eq!(observe(&access, 1 << 20, false).pc, None);
    }
}
