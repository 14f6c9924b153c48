//! Capture: every frame that wins a bus, written to a pcap file
//! (LINKTYPE_CAN_SOCKETCAN, nanosecond timestamps) and/or a candump log.
//!
//! Timestamps are the bridge's start time on the wall clock plus the
//! frame's bus time at its end (as in [`BusEvent::bus_time_ns`]): paced,
//! that is wall time; unpaced, gaps between frames are their bus time, so
//! a capture shows the bus load the bridge accounted. Unpaced domains keep
//! their own virtual clocks, so frames from different partitions may
//! interleave out of time order.
//!
//! One record per frame, however many joined segments it crossed; the
//! candump interface name is the sending port's segment.
//!
//! The arbiter never waits for the disk: it offers each frame to a bounded
//! queue that a writer thread drains through buffered files. A full queue
//! drops the record and counts it (`dropped`). What it writes reaches the
//! files within [`FLUSH_WITHIN`] (so Wireshark opens a capture mid-run),
//! and everything when the bridge shuts down.
//!
//! [`BusEvent::bus_time_ns`]: crate::BusEvent::bus_time_ns

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proto::Frame;
use serde::{Deserialize, Serialize};

use crate::clock::BusTime;
use crate::error::BridgeError;
use crate::ids::SegmentId;

/// Frames the capture queue holds before it drops (about 5 MB).
pub const CAPTURE_QUEUE: usize = 65_536;

/// A written record reaches the file at most this long after.
pub const FLUSH_WITHIN: Duration = Duration::from_millis(500);

/// When buffered records are due on disk: the first unflushed write starts
/// the clock, a flush stops it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FlushClock {
    /// When the oldest unflushed write must be flushed.
    due: Option<Instant>,
}

impl FlushClock {
    /// A record was written at `now`.
    fn wrote(&mut self, now: Instant) {
        self.due.get_or_insert(now + FLUSH_WITHIN);
    }

    /// How long the writer may wait for the next record: until the flush
    /// is due, or for ever with nothing to flush.
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.due.map(|d| d.saturating_duration_since(now))
    }

    /// Whether to flush now (and then the clock stops).
    fn take_due(&mut self, now: Instant) -> bool {
        let due = self.due.is_some_and(|d| now >= d);
        if due {
            self.due = None;
        }
        due
    }
}

/// pcap link type of SocketCAN frames.
pub const LINKTYPE_CAN_SOCKETCAN: u32 = 227;
/// pcap magic for nanosecond timestamps.
const PCAP_MAGIC_NS: u32 = 0xA1B2_3C4D;
/// SocketCAN: extended frame format flag in `can_id`.
pub const CAN_EFF_FLAG: u32 = 0x8000_0000;
/// SocketCAN CAN FD flags.
pub const CANFD_BRS: u8 = 0x01;
/// Marks a CAN FD frame in the flags byte (libpcap and Wireshark read it).
pub const CANFD_FDF: u8 = 0x04;

/// Where to capture. Either, both or neither.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// pcap file (LINKTYPE_CAN_SOCKETCAN), created or truncated.
    pub pcap: Option<PathBuf>,
    /// candump log file, created or truncated.
    pub candump: Option<PathBuf>,
}

impl CaptureConfig {
    /// Whether anything is captured.
    pub fn enabled(&self) -> bool {
        self.pcap.is_some() || self.candump.is_some()
    }
}

/// How the capture is going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStatus {
    /// The pcap file.
    pub pcap: Option<PathBuf>,
    /// The candump file.
    pub candump: Option<PathBuf>,
    /// Frames written.
    pub frames: u64,
    /// Frames not written: the writer fell behind or failed.
    pub dropped: u64,
    /// The write error that stopped the capture, if any.
    pub error: Option<String>,
}

pub(crate) struct CaptureShared {
    pcap: Option<PathBuf>,
    candump: Option<PathBuf>,
    frames: AtomicU64,
    dropped: AtomicU64,
    error: Mutex<Option<String>>,
}

impl CaptureShared {
    pub fn status(&self) -> CaptureStatus {
        CaptureStatus {
            pcap: self.pcap.clone(),
            candump: self.candump.clone(),
            frames: self.frames.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            error: self.error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

struct Record {
    bus_time_ns: u64,
    segment: usize,
    frame: Frame,
}

/// The bus task's end of the capture queue.
pub(crate) struct Sink {
    tx: SyncSender<Record>,
    shared: Arc<CaptureShared>,
}

impl Sink {
    pub fn offer(&self, end: BusTime, segment: SegmentId, frame: Frame) {
        let rec = Record {
            bus_time_ns: end.as_ns(),
            segment: segment.0,
            frame,
        };
        match self.tx.try_send(rec) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Creates the files, writes the pcap header, and starts the writer.
pub(crate) fn open(
    config: &CaptureConfig,
    epoch_ns: u64,
    segment_names: Vec<String>,
) -> Result<(Sink, Arc<CaptureShared>, JoinHandle<()>), BridgeError> {
    let create = |field: &'static str, path: &PathBuf| {
        File::create(path)
            .map(|f| BufWriter::with_capacity(256 * 1024, f))
            .map_err(|source| BridgeError::Capture {
                field,
                path: path.clone(),
                source,
            })
    };
    let mut pcap = config
        .pcap
        .as_ref()
        .map(|p| create("pcap", p))
        .transpose()?;
    let candump = config
        .candump
        .as_ref()
        .map(|p| create("candump", p))
        .transpose()?;
    if let (Some(w), Some(path)) = (pcap.as_mut(), config.pcap.as_ref()) {
        w.write_all(&pcap_header())
            .map_err(|source| BridgeError::Capture {
                field: "pcap",
                path: path.clone(),
                source,
            })?;
    }
    let shared = Arc::new(CaptureShared {
        pcap: config.pcap.clone(),
        candump: config.candump.clone(),
        frames: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        error: Mutex::new(None),
    });
    let (tx, rx) = sync_channel(CAPTURE_QUEUE);
    let writer = Writer {
        rx,
        pcap,
        candump,
        epoch_ns,
        segment_names,
        shared: shared.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("bus-capture".into())
        .spawn(move || writer.run())
        .map_err(|source| BridgeError::Capture {
            field: "pcap",
            path: config
                .pcap
                .clone()
                .or(config.candump.clone())
                .unwrap_or_default(),
            source,
        })?;
    Ok((
        Sink {
            tx,
            shared: shared.clone(),
        },
        shared,
        handle,
    ))
}

struct Writer {
    rx: Receiver<Record>,
    pcap: Option<BufWriter<File>>,
    candump: Option<BufWriter<File>>,
    epoch_ns: u64,
    segment_names: Vec<String>,
    shared: Arc<CaptureShared>,
}

impl Writer {
    fn run(mut self) {
        let mut failed = false;
        let mut line = String::with_capacity(256);
        let mut packet = Vec::with_capacity(16 + 88);
        let mut clock = FlushClock::default();
        // Ends when the arbiter drops its end: bridge shutdown.
        loop {
            let next = match clock.wait(Instant::now()) {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => self.rx.recv_timeout(wait),
            };
            let rec = match next {
                Ok(rec) => rec,
                Err(RecvTimeoutError::Timeout) => {
                    if clock.take_due(Instant::now()) && !failed {
                        failed = self.flush_all().is_err();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if failed {
                self.shared.dropped.fetch_add(1, Relaxed);
                continue;
            }
            let ts = self.epoch_ns + rec.bus_time_ns;
            let result = (|| -> std::io::Result<()> {
                if let Some(w) = self.pcap.as_mut() {
                    packet.clear();
                    pcap_record(ts, &rec.frame, &mut packet);
                    w.write_all(&packet)?;
                }
                if let Some(w) = self.candump.as_mut() {
                    line.clear();
                    let ifname = self
                        .segment_names
                        .get(rec.segment)
                        .map_or("bus", String::as_str);
                    candump_line(ts, ifname, &rec.frame, &mut line);
                    w.write_all(line.as_bytes())?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => {
                    self.shared.frames.fetch_add(1, Relaxed);
                    clock.wrote(Instant::now());
                    if clock.take_due(Instant::now()) {
                        failed = self.flush_all().is_err();
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "capture write failed; capture stopped");
                    self.fail(e);
                    self.shared.dropped.fetch_add(1, Relaxed);
                    failed = true;
                }
            }
        }
        for w in [self.pcap.as_mut(), self.candump.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = w.flush() {
                tracing::error!(error = %e, "capture flush failed");
                if let Ok(mut slot) = self.shared.error.lock() {
                    slot.get_or_insert(e.to_string());
                }
            }
        }
    }

    /// Flushes both files; a failure stops the capture.
    fn flush_all(&mut self) -> std::io::Result<()> {
        for w in [self.pcap.as_mut(), self.candump.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = w.flush() {
                tracing::error!(error = %e, "capture flush failed; capture stopped");
                let text = e.to_string();
                if let Ok(mut slot) = self.shared.error.lock() {
                    slot.get_or_insert(text);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn fail(&self, e: std::io::Error) {
        if let Ok(mut slot) = self.shared.error.lock() {
            slot.get_or_insert(e.to_string());
        }
    }
}

/// The pcap global header: little-endian, version 2.4, nanosecond stamps,
/// snap length of a CAN FD frame.
pub(crate) fn pcap_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&72u32.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_CAN_SOCKETCAN.to_le_bytes());
    h
}

/// One pcap record: header, then the SocketCAN frame as Linux hands it to
/// libpcap (`struct can_frame`, 16 bytes, or `struct canfd_frame`, 72
/// bytes), `can_id` big-endian. FD frames carry CANFD_FDF in their flags
/// byte and are 72 bytes long, so both old (by length) and new (by flag)
/// readers know them.
pub(crate) fn pcap_record(ts_ns: u64, frame: &Frame, out: &mut Vec<u8>) {
    let data = frame.data();
    let size: u32 = if frame.is_fd() { 72 } else { 16 };
    out.extend_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    let mut can_id = frame.id();
    if frame.is_extended() {
        can_id |= CAN_EFF_FLAG;
    }
    out.extend_from_slice(&can_id.to_be_bytes());
    out.push(data.len() as u8);
    let flags = if frame.is_fd() {
        CANFD_FDF | if frame.is_brs() { CANFD_BRS } else { 0 }
    } else {
        0
    };
    out.push(flags);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(data);
    out.resize(out.len() + (size as usize - 8 - data.len()), 0);
}

/// One candump log line: `(sec.usec) ifname ID#DATA`, or `ID##FDATA` for
/// CAN FD with F the flags nibble (1 = bit-rate switch). Standard ids are
/// 3 hex digits, extended ids 8, data upper-case hex.
pub(crate) fn candump_line(ts_ns: u64, ifname: &str, frame: &Frame, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "({}.{:06}) {} ",
        ts_ns / 1_000_000_000,
        ts_ns % 1_000_000_000 / 1000,
        ifname
    );
    let _ = if frame.is_extended() {
        write!(out, "{:08X}#", frame.id())
    } else {
        write!(out, "{:03X}#", frame.id())
    };
    if frame.is_fd() {
        let _ = write!(out, "#{:X}", if frame.is_brs() { CANFD_BRS } else { 0 });
    }
    for b in frame.data() {
        let _ = write!(out, "{b:02X}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_flushed_within_the_bound_and_the_clock_stops_after() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = FlushClock::default();
        assert_eq!(c.wait(t0), None, "nothing to flush: wait for a record");
        assert!(!c.take_due(ms(5000)));
        c.wrote(t0);
        // Later writes do not push the flush back.
        c.wrote(ms(300));
        assert_eq!(
            c.wait(ms(300)),
            Some(FLUSH_WITHIN - Duration::from_millis(300))
        );
        assert!(!c.take_due(ms(499)));
        assert!(c.take_due(ms(500)));
        assert_eq!(c.wait(ms(501)), None);
        assert!(FLUSH_WITHIN <= Duration::from_secs(1));
    }
    use proto::frame::{FLAG_EXTENDED, FLAG_FD};

    #[test]
    fn candump_lines_follow_can_utils() {
        let check = |frame: Frame, expected: &str| {
            let mut s = String::new();
            candump_line(1_436_509_053_850_870_123, "base", &frame, &mut s);
            assert_eq!(s, expected);
        };
        check(
            Frame::new(0x123, 0, &[0xDE, 0xAD, 0xBE, 0xEF]).unwrap(),
            "(1436509053.850870) base 123#DEADBEEF\n",
        );
        check(
            Frame::new(0x5, 0, &[]).unwrap(),
            "(1436509053.850870) base 005#\n",
        );
        check(
            Frame::new(0x1234_5678, FLAG_EXTENDED, &[1]).unwrap(),
            "(1436509053.850870) base 12345678#01\n",
        );
        check(
            Frame::fd_extended(0x10_0001, &[0xAA; 12]).unwrap(),
            "(1436509053.850870) base 00100001##1AAAAAAAAAAAAAAAAAAAAAAAA\n",
        );
        check(
            Frame::new(0x7FF, FLAG_FD, &[1, 2]).unwrap(),
            "(1436509053.850870) base 7FF##00102\n",
        );
    }

    #[test]
    fn pcap_records_are_socketcan_frames() {
        let mut out = Vec::new();
        pcap_record(
            5_000_000_123,
            &Frame::new(0x123, 0, &[9, 8]).unwrap(),
            &mut out,
        );
        assert_eq!(out.len(), 16 + 16);
        assert_eq!(&out[0..4], &5u32.to_le_bytes());
        assert_eq!(&out[4..8], &123u32.to_le_bytes());
        assert_eq!(&out[8..12], &16u32.to_le_bytes());
        assert_eq!(&out[16..24], &[0, 0, 0x01, 0x23, 2, 0, 0, 0]);
        assert_eq!(&out[24..26], &[9, 8]);
        out.clear();
        pcap_record(
            0,
            &Frame::fd_extended(0x1ABC_DEF0, &[7; 20]).unwrap(),
            &mut out,
        );
        assert_eq!(out.len(), 16 + 72);
        assert_eq!(&out[16..20], &(0x1ABC_DEF0u32 | CAN_EFF_FLAG).to_be_bytes());
        assert_eq!(out[20], 20);
        assert_eq!(out[21], CANFD_FDF | CANFD_BRS);
        let h = pcap_header();
        assert_eq!(&h[0..4], &[0x4D, 0x3C, 0xB2, 0xA1]);
        assert_eq!(&h[20..24], &227u32.to_le_bytes());
    }
}
