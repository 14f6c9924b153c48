//! Reads a node from outside, for the host's own check (`inspect` judges
//! what it reads): its RAM through the file that backs it (QEMU's
//! `memory-backend-file` with `share=on`: the guest's RAM is that file's
//! pages, so a read sees what the guest holds now), and its program counter
//! through a QEMU monitor of its own (QMP `human-monitor-command` with
//! `info registers`, which QEMU 7.2 and 10 answer alike for riscv64; QMP's
//! `query-cpus-fast` gives no PC for riscv).
//!
//! Blocking, with short timeouts. The supervisor runs it in a blocking task
//! on the wall clock; on the virtual clock it runs inline, in the
//! supervisor's step, which holds the bus's time: the node is read at a
//! point of virtual time.

use super::inspect::{Observation, image_span};
use board::handoff::{self, Handoff};
use board::memory;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one answer from a node's monitor may take.
pub const MONITOR_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a node can be read from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAccess {
    /// The file that backs its RAM (`RAM_BASE` is its first byte).
    pub ram: PathBuf,
    /// Its monitor's QMP socket (one the supervisor alone uses).
    pub monitor: PathBuf,
}

/// Reads node `access`: its handoff record, its PC, the image the record
/// names (at most `limit` bytes), and the record again; a record that
/// changed meanwhile (a reboot) makes the reading unusable.
pub fn observe(access: &NodeAccess, limit: u64) -> Observation {
    let record = read_ram(&access.ram, memory::HANDOFF_BASE, handoff::LEN as u64);
    let Ok(bytes) = &record else {
        return Observation {
            record,
            pc: None,
            image: Vec::new(),
        };
    };
    let pc = Some(read_pc(&access.monitor));
    let span = Handoff::from_le_bytes(bytes).and_then(|r| image_span(&r, limit));
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

/// The CPU's program counter, from the node's monitor.
pub fn read_pc(monitor: &Path) -> Result<u64, String> {
    let text = hmp(monitor, "info registers").map_err(|e| format!("{}: {e}", monitor.display()))?;
    parse_pc(&text).ok_or_else(|| {
        format!(
            "{}: no pc in `info registers`: {}",
            monitor.display(),
            text.lines().take(3).collect::<Vec<_>>().join(" | ")
        )
    })
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

/// Runs one human monitor command over QMP and returns its text.
fn hmp(monitor: &Path, command: &str) -> std::io::Result<String> {
    let stream = UnixStream::connect(monitor)?;
    stream.set_read_timeout(Some(MONITOR_TIMEOUT))?;
    stream.set_write_timeout(Some(MONITOR_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let greeting = answer(&mut lines)?;
    if greeting.get("QMP").is_none() {
        return Err(invalid(format!("not a QMP greeting: {greeting}")));
    }
    writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
    answer(&mut lines)?;
    let request = serde_json::json!({
        "execute": "human-monitor-command",
        "arguments": { "command-line": command },
    });
    writer.write_all(format!("{request}\n").as_bytes())?;
    let a = answer(&mut lines)?;
    match a.get("return").and_then(|r| r.as_str()) {
        Some(text) => Ok(text.to_string()),
        None => Err(invalid(format!("{command}: {a}"))),
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
        let access = NodeAccess {
            ram: dir.path().join("n1.ram"),
            monitor: dir.path().join("m1.sock"),
        };
        let obs = observe(&access, 1 << 20);
        assert!(obs.record.unwrap_err().contains("n1.ram"));
        // RAM there (zeroed: power-on), no monitor.
        std::fs::File::create(&access.ram)
            .unwrap()
            .set_len(memory::RAM_SIZE)
            .unwrap();
        let obs = observe(&access, 1 << 20);
        assert_eq!(obs.record, Ok(vec![0; handoff::LEN]));
        assert!(obs.pc.unwrap().unwrap_err().contains("m1.sock"));
        assert!(obs.image.is_empty());
    }
}
