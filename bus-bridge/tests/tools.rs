//! What outside tools see: the capture files (read back by our own parser
//! and by tshark) and the socketcand server (spoken to by hand and by
//! python-can). tshark and python-can are optional here and required in CI
//! (`CI=true`), which installs them.

mod common;

use std::path::Path;
use std::process::Command;

use bus_bridge::{BitTiming, BusStats, CaptureConfig, FdFormat, SocketcandConfig};
use common::*;
use proto::Frame;
use proto::frame::{FLAG_EXTENDED, FLAG_FD};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A frame as a capture shows it.
#[derive(Debug, PartialEq)]
struct Captured {
    ts_ns: u64,
    can_id: u32,
    len: u8,
    flags: u8,
    data: Vec<u8>,
    caplen: u32,
}

/// Our own reading of a nanosecond LINKTYPE_CAN_SOCKETCAN pcap.
fn parse_pcap(bytes: &[u8]) -> Vec<Captured> {
    let le32 = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap());
    assert!(bytes.len() >= 24, "no pcap header");
    assert_eq!(le32(&bytes[0..]), 0xA1B2_3C4D, "nanosecond pcap magic");
    assert_eq!(&bytes[4..8], &[2, 0, 4, 0], "version 2.4");
    assert_eq!(le32(&bytes[20..]), 227, "LINKTYPE_CAN_SOCKETCAN");
    let mut out = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let h = &bytes[at..at + 16];
        let caplen = le32(&h[8..]);
        assert_eq!(caplen, le32(&h[12..]), "whole packets");
        let p = &bytes[at + 16..at + 16 + caplen as usize];
        let len = p[4];
        out.push(Captured {
            ts_ns: u64::from(le32(h)) * 1_000_000_000 + u64::from(le32(&h[4..])),
            can_id: u32::from_be_bytes(p[..4].try_into().unwrap()),
            len,
            flags: p[5],
            data: p[8..8 + len as usize].to_vec(),
            caplen,
        });
        at += 16 + caplen as usize;
    }
    out
}

fn mix() -> Vec<Frame> {
    vec![
        Frame::new(0x123, 0, &[0xDE, 0xAD]).unwrap(),
        Frame::new(0x1ABC_DEF0, FLAG_EXTENDED, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
        Frame::fd_extended(0x10_0001, &[0x11; 20]).unwrap(),
        Frame::new(0x7FF, FLAG_FD, &[0x22; 64]).unwrap(),
        Frame::new(0x000, 0, &[]).unwrap(),
    ]
}

/// Sends `frames` (several times over) and returns the final statistics.
async fn capture_run(dir: &Path, frames: &[Frame], rounds: usize) -> BusStats {
    let mut cfg = config(dir, BitTiming::Fd1m5m, &[("tx", "base"), ("rx", "base")]);
    cfg.capture = CaptureConfig {
        pcap: Some(dir.join("bus.pcap")),
        candump: Some(dir.join("bus.log")),
    };
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "rx"]).await;
    for _ in 0..rounds {
        cl[0].send(frames).await;
        assert_eq!(cl[1].recv_n(frames.len()).await, frames);
    }
    let stats = bridge.shutdown().await;
    let c = stats.capture.as_ref().expect("capture status");
    assert_eq!(
        (c.frames, c.dropped, c.error.as_deref()),
        (stats.totals.frames, 0, None)
    );
    stats
}

#[tokio::test]
async fn a_running_capture_reaches_its_files_without_a_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("tx", "base"), ("rx", "base")],
    );
    cfg.capture = CaptureConfig {
        pcap: Some(dir.path().join("bus.pcap")),
        candump: Some(dir.path().join("bus.log")),
    };
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["tx", "rx"]).await;
    let frames = mix();
    cl[0].send(&frames).await;
    assert_eq!(cl[1].recv_n(frames.len()).await, frames);
    // No more frames, no shutdown: the writer flushes by itself (within
    // capture::FLUSH_WITHIN; the bound here only stops a hung test).
    let (pcap, log) = (dir.path().join("bus.pcap"), dir.path().join("bus.log"));
    let flushed = timeout(Duration::from_secs(30), async {
        loop {
            let bytes = std::fs::read(&pcap).unwrap_or_default();
            let records = if bytes.len() < 24 {
                0
            } else {
                parse_pcap(&bytes).len()
            };
            let lines = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
            if (records, lines) == (frames.len(), frames.len()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        flushed.is_ok(),
        "the capture files stayed short while the bridge ran"
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_capture_holds_every_frame_in_pcap_and_candump() {
    let dir = tempfile::tempdir().unwrap();
    let frames = mix();
    let stats = capture_run(dir.path(), &frames, 3).await;
    let pcap = parse_pcap(&std::fs::read(dir.path().join("bus.pcap")).unwrap());
    assert_eq!(pcap.len() as u64, stats.totals.frames);
    assert_eq!(pcap.len(), 15);
    for (c, f) in pcap.iter().zip(frames.iter().cycle()) {
        let eff = if f.is_extended() { 0x8000_0000 } else { 0 };
        assert_eq!(c.can_id, f.id() | eff);
        assert_eq!(c.data, f.data());
        assert_eq!(c.len as usize, f.data().len());
        let (caplen, flags) = match (f.is_fd(), f.is_brs()) {
            (false, _) => (16, 0),
            (true, false) => (72, 0x04),
            (true, true) => (72, 0x05),
        };
        assert_eq!((c.caplen, c.flags), (caplen, flags), "{f:?}");
    }
    // Stamps: the bridge's start on the wall clock plus bus time, so
    // increasing, and about now.
    assert!(pcap.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        now - pcap[0].ts_ns < 600_000_000_000,
        "within minutes of now"
    );

    let log = std::fs::read_to_string(dir.path().join("bus.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 15);
    let words: Vec<&str> = lines[..5]
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(
        words,
        [
            "123#DEAD",
            "1ABCDEF0#0102030405060708",
            &format!("00100001##1{}", "11".repeat(20)),
            &format!("7FF##0{}", "22".repeat(64)),
            "000#",
        ]
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('(') && l.contains(") base "))
    );
}

#[tokio::test]
async fn tshark_reads_the_capture_as_the_bridge_counted_it() {
    let present = Command::new("tshark").arg("--version").output().is_ok();
    if !tool_available("tshark", present) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let frames = mix();
    let stats = capture_run(dir.path(), &frames, 4).await;
    let out = Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join("bus.pcap"))
        .args(["-T", "fields", "-e", "can.id", "-e", "can.len"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<(u32, usize)> = text
        .lines()
        .map(|l| {
            let (id, len) = l.split_once('\t').unwrap_or((l, ""));
            let id = match id.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => id.parse(),
            };
            (
                id.unwrap_or_else(|_| panic!("tshark id {l:?}")),
                len.parse().unwrap_or_else(|_| panic!("tshark len {l:?}")),
            )
        })
        .collect();
    assert_eq!(rows.len() as u64, stats.totals.frames, "{text}");
    let expected: Vec<(u32, usize)> = frames
        .iter()
        .cycle()
        .take(rows.len())
        .map(|f| (f.id(), f.data().len()))
        .collect();
    assert_eq!(
        rows, expected,
        "tshark sees our ids and lengths, FD frames included"
    );
}

/// A socketcand client speaking the protocol by hand.
struct Tcp {
    s: TcpStream,
    buf: String,
}

impl Tcp {
    async fn connect(addr: std::net::SocketAddr) -> Tcp {
        Tcp {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: String::new(),
        }
    }

    async fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next `< … >` message.
    async fn next(&mut self) -> String {
        timeout(PATIENCE, async {
            loop {
                if let (Some(a), Some(b)) = (self.buf.find('<'), self.buf.find('>')) {
                    let msg = self.buf[a..=b].to_owned();
                    self.buf.drain(..=b);
                    return msg;
                }
                let mut chunk = [0u8; 1024];
                let n = self.s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed; had {:?}", self.buf);
                self.buf.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
            }
        })
        .await
        .expect("no message from the socketcand server")
    }

    async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 64];
        matches!(
            timeout(PATIENCE, self.s.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// `< frame ID STAMP DATA >` without the stamp.
fn strip_stamp(msg: &str) -> String {
    let w: Vec<&str> = msg.split(' ').collect();
    let mut kept: Vec<&str> = w.clone();
    let stamp_at = if w[1] == "fdframe" { 4 } else { 3 };
    assert!(w[stamp_at].contains('.'), "{msg}");
    kept.remove(stamp_at);
    kept.join(" ")
}

#[tokio::test]
async fn socketcand_clients_are_nodes_on_the_segment_they_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("node", "base"), ("other", "ha")],
    );
    cfg.socketcand = Some(SocketcandConfig {
        max_clients: 2,
        ..SocketcandConfig::default()
    });
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let addr = bridge.socketcand_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let mut cl = connect_all(&bridge, &["node", "other"]).await;
    let mut t = Tcp::connect(addr).await;
    assert_eq!(t.next().await, "< hi >");
    t.send("< open base >").await;
    assert_eq!(t.next().await, "< ok >");
    // BCM mode: sending works; nothing is forwarded yet.
    t.send("< send 123 2 a 1 >").await;
    assert_eq!(cl[0].recv().await, std_frame(0x123, &[0xA, 1]));
    t.send("< echo >").await;
    assert_eq!(t.next().await, "< echo >");
    t.send("< rawmode >").await;
    assert_eq!(t.next().await, "< ok >");
    let fd = Frame::fd_extended(0x10_0002, &[0xAB; 12]).unwrap();
    cl[0]
        .send(&[std_frame(0x42, &[1, 2, 3]), std_frame(0x43, &[]), fd])
        .await;
    assert_eq!(strip_stamp(&t.next().await), "< frame 042 010203 >");
    assert_eq!(strip_stamp(&t.next().await), "< frame 043  >");
    assert_eq!(
        strip_stamp(&t.next().await),
        format!("< frame 00100002 {} >", "AB".repeat(12))
    );
    // Extended, FD (fdsend, no BRS), and a frame on another segment.
    t.send("< send 1AAAAAAA 2 1 F1 >< fdsend 456 0 9 1 2 3 4 5 6 7 8 9 >")
        .await;
    assert_eq!(
        cl[0].recv().await,
        Frame::new(0x1AAA_AAAA, FLAG_EXTENDED, &[1, 0xF1]).unwrap()
    );
    assert_eq!(
        cl[0].recv().await,
        Frame::new(0x456, FLAG_FD, &[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap()
    );
    cl[1].send(&[std_frame(0x99, &[9])]).await;
    // Junk is counted and ignored; the client keeps working.
    t.send("junk< send zz 1 2 >< send 123 3 1 >").await;
    cl[0].send(&[std_frame(0x44, &[4])]).await;
    assert_eq!(
        strip_stamp(&t.next().await),
        "< frame 044 04 >",
        "nothing from ha"
    );
    let s = wait_for(&bridge, "the bad commands", |s| {
        s.socketcand.as_ref().unwrap().bad_commands == 2
    })
    .await;
    let sc_port = bridge.port_index("socketcand0").unwrap();
    assert_eq!(s.ports[sc_port].segment, "base");
    assert_eq!(s.ports[sc_port].frames_tx, 3);
    assert_eq!(s.ports[sc_port].frames_rx, 4);
    assert_eq!(
        s.ports[sc_port].filtered, 0,
        "BCM mode saw nothing to filter"
    );

    // The second client takes the last port; a third is turned away, as
    // is a client naming a channel that does not exist.
    let mut t2 = Tcp::connect(addr).await;
    assert_eq!(t2.next().await, "< hi >");
    t2.send("< open ha >< rawmode >").await;
    assert_eq!(t2.next().await, "< ok >");
    assert_eq!(t2.next().await, "< ok >");
    let mut t3 = Tcp::connect(addr).await;
    assert_eq!(t3.next().await, "< hi >");
    t3.send("< open base >").await;
    assert_eq!(t3.next().await, "< error no free port >");
    assert!(t3.closed().await);
    // Once the first leaves, its port is free again.
    drop(t);
    wait_for(&bridge, "the first client to leave", |s| {
        !s.ports[sc_port].connected
    })
    .await;
    let mut t4 = Tcp::connect(addr).await;
    assert_eq!(t4.next().await, "< hi >");
    t4.send("< open mars >").await;
    assert_eq!(t4.next().await, "< error no such channel >");
    let mut t5 = Tcp::connect(addr).await;
    assert_eq!(t5.next().await, "< hi >");
    t5.send("< open base >").await;
    assert_eq!(t5.next().await, "< ok >");
    let s = bridge.shutdown().await;
    let sc = s.socketcand.unwrap();
    assert_eq!((sc.clients, sc.refused), (3, 2));
}

#[tokio::test]
async fn socketcand_can_send_fd_frames_as_fdframe() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), BitTiming::Fd1m5m, &[("node", "base")]);
    cfg.socketcand = Some(SocketcandConfig {
        fd_format: FdFormat::Fdframe,
        ..SocketcandConfig::default()
    });
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let mut cl = connect_all(&bridge, &["node"]).await;
    let mut t = Tcp::connect(bridge.socketcand_addr().unwrap()).await;
    assert_eq!(t.next().await, "< hi >");
    t.send("< open base >< rawmode >").await;
    assert_eq!(t.next().await, "< ok >");
    assert_eq!(t.next().await, "< ok >");
    cl[0]
        .send(&[Frame::fd_extended(0x10_0002, &[1, 2]).unwrap()])
        .await;
    assert_eq!(strip_stamp(&t.next().await), "< fdframe 00100002 01 0102 >");
    bridge.shutdown().await;
}

const PYTHON_CLIENT: &str = r#"
import sys, can
host, port = sys.argv[1], int(sys.argv[2])
bus = can.interface.Bus(interface="socketcand", host=host, port=port, channel="base")
print("ready", can.__version__, flush=True)
got = []
while len(got) < 3:
    msg = bus.recv(timeout=10)
    if msg is None:
        sys.exit("timed out waiting for frames")
    got.append("%x:%s:%s" % (msg.arbitration_id, int(msg.is_extended_id), msg.data.hex()))
print(" ".join(got), flush=True)
bus.send(can.Message(arbitration_id=0x1F0000AB, is_extended_id=True, data=[1, 2, 3]))
bus.send(can.Message(arbitration_id=0x7A, is_extended_id=False, data=b""))
# Wait for the bridge to take the frames before closing.
line = sys.stdin.readline()
bus.shutdown()
"#;

/// The Python with python-can: `$BOOTCAST_PYTHON` (`cargo xtask test` sets
/// it to the one it found or installed), else `python3`.
fn python() -> std::ffi::OsString {
    std::env::var_os("BOOTCAST_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// The extended flag python-can `version` gives a standard frame it reads
/// over socketcand: 0, or 1 before 4.2.0, whose parser ignored the width
/// of the identifier and marked every frame extended (python-can bug
/// #1504; Debian 12 ships 4.1.0). The bridge's side, 3 digits for a
/// standard identifier, is checked on the wire by the socketcand tests.
fn standard_flag_as_read(version: &str) -> u8 {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    u8::from((major, minor) < (4, 2))
}

#[test]
fn python_can_before_4_2_reads_every_socketcand_frame_as_extended() {
    for (version, flag) in [
        ("4.1.0", 1),
        ("3.3.4", 1),
        ("4.2.0", 0),
        ("4.6.1", 0),
        ("5.0", 0),
    ] {
        assert_eq!(standard_flag_as_read(version), flag, "{version}");
    }
}

#[tokio::test]
async fn python_can_sees_the_bus_and_sends_onto_it() {
    let present = Command::new(python())
        .args(["-c", "import can"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !tool_available("python-can (python3 -c 'import can')", present) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        BitTiming::Fd1m5m,
        &[("node", "base"), ("master", "base")],
    );
    cfg.socketcand = Some(SocketcandConfig::default());
    let bridge = bus_bridge::start(cfg).await.unwrap();
    let addr = bridge.socketcand_addr().unwrap();
    let mut cl = connect_all(&bridge, &["node", "master"]).await;
    let mut py = tokio::process::Command::new(python())
        .args([
            "-c",
            PYTHON_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3");
    let mut out = tokio::io::BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    timeout(PATIENCE, out.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let version = line
        .trim()
        .strip_prefix("ready ")
        .expect("ready and a version");
    let std_flag = standard_flag_as_read(version);
    // The Rust nodes talk; python-can hears them (FD frames included).
    let fd = Frame::fd_extended(0x20_0001, &[0xC0; 12]).unwrap();
    cl[0].send(&[std_frame(0x123, &[1, 2]), fd]).await;
    cl[1]
        .send(&[Frame::new(0x1234, FLAG_EXTENDED, &[]).unwrap()])
        .await;
    line.clear();
    timeout(PATIENCE, out.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    // In bus order: the extended 0x1234 (base id 0) may win over 0x123.
    let mut heard: Vec<&str> = line.split_whitespace().collect();
    heard.sort();
    let fd_text = format!("200001:1:{}", "c0".repeat(12));
    let std_text = format!("123:{std_flag}:0102");
    assert_eq!(heard, ["1234:1:", &std_text, &fd_text]);
    // The nodes heard each other.
    assert_eq!(cl[0].recv().await.id(), 0x1234);
    assert_eq!(cl[1].recv_n(2).await, [std_frame(0x123, &[1, 2]), fd]);
    // python-can sends; both Rust nodes hear it.
    let ext = Frame::new(0x1F00_00AB, FLAG_EXTENDED, &[1, 2, 3]).unwrap();
    let short = std_frame(0x7A, &[]);
    assert_eq!(cl[0].recv_n(2).await, [ext, short]);
    assert_eq!(cl[1].recv_n(2).await, [ext, short]);
    let mut stdin = py.stdin.take().unwrap();
    stdin.write_all(b"done\n").await.unwrap();
    let status = timeout(PATIENCE, py.wait()).await.unwrap().unwrap();
    assert!(status.success(), "python-can client failed");
    let stats = bridge.shutdown().await;
    let sc = bridge_port(&stats, "socketcand0");
    assert_eq!((sc.frames_tx, sc.frames_rx), (2, 3));
}

fn bridge_port<'a>(stats: &'a BusStats, name: &str) -> &'a bus_bridge::PortStats {
    stats.ports.iter().find(|p| p.name == name).unwrap()
}
