//! The app side of the bootcast protocol as plain logic, without devices:
//! what to do with a received frame, what a heartbeat says, which filter the
//! port gets, which bytes a `Check` is answered over. [`crate::Node`] runs it
//! on the board; the host tests run it as it is.

use board::handoff::Handoff;
use board::memory;
use proto::Frame;
use proto::filter::{FilterEntry, MAX_ENTRIES};
use proto::msg::{self, CheckReply, Heartbeat, Message, NodeState};

/// How often the Rust apps say they are alive, and what C apps are advised
/// to use: the supervisor's liveness checks are tuned for it.
pub const HEARTBEAT_MS: u64 = 500;

/// Filter entries an app may add to the SDK's own ([`msg::APP_KINDS`], which
/// keeps `Reboot` and `Check` reaching it).
pub const MAX_APP_FILTER_ENTRIES: usize = MAX_ENTRIES - msg::APP_KINDS.len();

/// What the SDK does with a frame the port received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// A `Reboot` for this node (by id, or broadcast to it or its type):
    /// back to the boot ROM.
    Reboot,
    /// A `Check` for this node: send this answer.
    Answer(CheckReply),
    /// Session control (an image on the bus): counted in the heartbeat's
    /// `ignored`, never acted on. A running node is not disturbed by a
    /// broadcast.
    Ignored,
    /// A `Reboot` or `Check` for another node: nothing to do.
    NotForUs,
    /// Anything else (the app's own traffic, or other bootcast messages its
    /// filter lets in): handed to the app.
    App,
}

/// The protocol state of one running app: who it is and what it counted.
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    node: u16,
    node_type: u8,
    reported_type: u8,
    ignored: u32,
}

impl Protocol {
    /// The state for the app the boot ROM's `record` describes. Heartbeats
    /// report the record's node type (the type of the image the boot ROM
    /// checked and started) until [`report_as`](Self::report_as) says
    /// otherwise.
    pub fn new(record: &Handoff) -> Protocol {
        Protocol {
            node: record.node,
            node_type: record.node_type,
            reported_type: record.node_type,
            ignored: 0,
        }
    }

    /// Makes heartbeats name `node_type` (a Rust app names the type it was
    /// built for).
    pub fn report_as(&mut self, node_type: u8) {
        self.reported_type = node_type;
    }

    /// This node's id.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// Session frames seen and ignored so far.
    pub fn ignored(&self) -> u32 {
        self.ignored
    }

    /// Decides what to do with `frame`; `answer` computes a `Check`'s
    /// answer for a nonce (over the loaded bytes, see [`answer_check`]),
    /// and is called only for a `Check` addressed to this node.
    pub fn on_frame(&mut self, frame: &Frame, answer: impl FnOnce(u32) -> [u8; 32]) -> Reaction {
        let Ok((_, m)) = Message::decode(frame) else {
            return Reaction::App;
        };
        match m {
            Message::Reboot(r) if r.applies_to(self.node, self.node_type) => Reaction::Reboot,
            Message::Check(c) if c.target == self.node => Reaction::Answer(CheckReply {
                nonce: c.nonce,
                digest: answer(c.nonce),
            }),
            Message::Reboot(_) | Message::Check(_) => Reaction::NotForUs,
            Message::SessionAnnounce(_) | Message::SessionPart(_) | Message::SessionEnd(_) => {
                self.ignored = self.ignored.wrapping_add(1);
                Reaction::Ignored
            }
            _ => Reaction::App,
        }
    }

    /// The heartbeat of an app that has run `uptime_ms` and reports
    /// `status` (its own state byte, carried in the heartbeat's `flags`).
    pub fn heartbeat(&self, record: &Handoff, uptime_ms: u64, status: u8) -> Heartbeat {
        let mut name = [0u8; msg::HEARTBEAT_NAME];
        name.copy_from_slice(&record.name[..msg::HEARTBEAT_NAME]);
        Heartbeat {
            node_type: self.reported_type,
            state: NodeState::Running as u8,
            reset_cause: record.reset_cause,
            flags: status,
            generation: record.generation,
            uptime_ms: uptime_ms as u32,
            boot_count: record.boot_count,
            version: record.version_of_image,
            name,
            digest: record.digest,
            ignored: self.ignored,
        }
    }
}

/// Why a filter cannot be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterFull;

/// The port's filter for an app that also wants `extra`: the SDK's own
/// entries first, then the app's. The result lies in `out`; its length is
/// returned. Fails when `extra` has more than [`MAX_APP_FILTER_ENTRIES`].
pub fn app_filter(
    extra: &[FilterEntry],
    out: &mut [FilterEntry; MAX_ENTRIES],
) -> Result<usize, FilterFull> {
    if extra.len() > MAX_APP_FILTER_ENTRIES {
        return Err(FilterFull);
    }
    let own = msg::APP_KINDS.len();
    out[..own].copy_from_slice(&msg::APP_KINDS);
    out[own..own + extra.len()].copy_from_slice(extra);
    Ok(own + extra.len())
}

/// Where the loaded image lies, as the boot ROM recorded it, clamped to the
/// image region: `(address, length)`. A record that points elsewhere gives
/// an empty span.
pub fn image_span(record: &Handoff) -> (u64, u64) {
    let start = record
        .load_addr
        .clamp(memory::IMAGE_BASE, memory::IMAGE_END);
    let size = record.size.min(memory::IMAGE_END - start);
    (start, size)
}

/// The answer to a `Check` with `nonce` over `payload`, the loaded image as
/// it is in RAM now: SHA-256(nonce LE ‖ payload). It equals the host's
/// answer over the built image only while the loaded bytes are unchanged.
pub fn answer_check(nonce: u32, payload: &[u8]) -> [u8; 32] {
    images::challenge::answer(nonce, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::msg::{BROADCAST, Check, MASTER_PRIMARY, Reboot, SUPERVISOR, SessionEnd};

    fn record() -> Handoff {
        let mut r = Handoff::zeroed();
        r.magic = board::handoff::MAGIC;
        r.version = board::handoff::VERSION;
        r.node = 7;
        r.node_type = proto::NodeType::Drive as u8;
        r.reset_cause = 2;
        r.boot_count = 3;
        r.generation = 41;
        r.version_of_image = 0x0102_0003;
        r.load_addr = memory::IMAGE_BASE;
        r.size = 4096;
        r.entry = memory::IMAGE_BASE;
        r.digest = [0xAB; 32];
        r.name[..12].copy_from_slice(b"drive-c-demo");
        r
    }

    fn frame(m: Message<'_>, src: u16) -> Frame {
        m.to_frame(src).unwrap()
    }

    fn no_answer(_: u32) -> [u8; 32] {
        panic!("only a Check for this node is answered")
    }

    #[test]
    fn reboots_for_this_node_its_type_or_everyone() {
        let mut p = Protocol::new(&record());
        let reboot = |target, target_type| {
            frame(
                Message::Reboot(Reboot {
                    target,
                    target_type,
                    reason: 1,
                }),
                SUPERVISOR,
            )
        };
        let drive = proto::NodeType::Drive as u8;
        let xy = proto::NodeType::Xy as u8;
        assert_eq!(p.on_frame(&reboot(7, 0), no_answer), Reaction::Reboot);
        assert_eq!(
            p.on_frame(&reboot(BROADCAST, 0), no_answer),
            Reaction::Reboot
        );
        assert_eq!(
            p.on_frame(&reboot(BROADCAST, drive), no_answer),
            Reaction::Reboot
        );
        assert_eq!(
            p.on_frame(&reboot(BROADCAST, xy), no_answer),
            Reaction::NotForUs
        );
        assert_eq!(p.on_frame(&reboot(8, 0), no_answer), Reaction::NotForUs);
    }

    #[test]
    fn answers_checks_for_this_node_only() {
        let mut p = Protocol::new(&record());
        let payload = [0x13u8, 0, 0, 0];
        let check = |target| frame(Message::Check(Check { target, nonce: 99 }), SUPERVISOR);
        let r = p.on_frame(&check(7), |n| answer_check(n, &payload));
        assert_eq!(
            r,
            Reaction::Answer(CheckReply {
                nonce: 99,
                digest: images::challenge::answer(99, &payload)
            })
        );
        assert_eq!(p.on_frame(&check(8), no_answer), Reaction::NotForUs);
    }

    #[test]
    fn counts_session_frames_and_hands_the_rest_to_the_app() {
        let mut p = Protocol::new(&record());
        let end = frame(
            Message::SessionEnd(SessionEnd {
                session: 5,
                total_chunks: 9,
                round: 0,
                last: 1,
            }),
            MASTER_PRIMARY,
        );
        assert_eq!(p.on_frame(&end, no_answer), Reaction::Ignored);
        assert_eq!(p.on_frame(&end, no_answer), Reaction::Ignored);
        assert_eq!(p.ignored(), 2);
        // An application frame: a standard identifier, no bootcast message.
        let app = Frame::new(0x123, 0, &[1, 2, 3]).unwrap();
        assert_eq!(p.on_frame(&app, no_answer), Reaction::App);
        // Another node's heartbeat, let in by the app's own filter.
        let beat = frame(Message::Heartbeat(p.heartbeat(&record(), 0, 0)), 9);
        assert_eq!(p.on_frame(&beat, no_answer), Reaction::App);
        assert_eq!(p.ignored(), 2);
    }

    #[test]
    fn heartbeats_carry_the_record_and_the_status() {
        let r = record();
        let mut p = Protocol::new(&r);
        p.ignored = 4;
        let h = p.heartbeat(&r, 1234, 0x5A);
        assert_eq!(h.node_type, proto::NodeType::Drive as u8);
        assert_eq!(h.state, NodeState::Running as u8);
        assert_eq!((h.reset_cause, h.flags), (2, 0x5A));
        assert_eq!((h.generation, h.uptime_ms, h.boot_count), (41, 1234, 3));
        assert_eq!(h.version, 0x0102_0003);
        assert_eq!(&h.name, b"drive-c-");
        assert_eq!((h.digest, h.ignored), ([0xAB; 32], 4));
        // What it encodes is what the supervisor decodes.
        let f = frame(Message::Heartbeat(h), r.node);
        assert_eq!(Message::decode(&f).unwrap(), (7, Message::Heartbeat(h)));
        p.report_as(proto::NodeType::Xy as u8);
        assert_eq!(p.heartbeat(&r, 0, 0).node_type, proto::NodeType::Xy as u8);
    }

    #[test]
    fn the_app_filter_keeps_the_sdks_entries_first() {
        let mut out = [FilterEntry {
            id: 0,
            mask: 0,
            extended: false,
        }; MAX_ENTRIES];
        assert_eq!(app_filter(&[], &mut out), Ok(msg::APP_KINDS.len()));
        assert_eq!(out[..2], msg::APP_KINDS);
        let mine = FilterEntry {
            id: 0x100,
            mask: 0x700,
            extended: false,
        };
        let n = app_filter(&[mine; MAX_APP_FILTER_ENTRIES], &mut out).unwrap();
        assert_eq!(n, MAX_ENTRIES);
        assert_eq!(out[..2], msg::APP_KINDS);
        assert!(out[2..].iter().all(|e| *e == mine));
        assert_eq!(
            app_filter(&[mine; MAX_APP_FILTER_ENTRIES + 1], &mut out),
            Err(FilterFull)
        );
        // Reboot and Check still pass a filter with the app's entries.
        let f = proto::filter::AcceptanceFilter::new(&out[..n]).unwrap();
        let check = frame(
            Message::Check(Check {
                target: 7,
                nonce: 1,
            }),
            SUPERVISOR,
        );
        assert!(f.accepts(&check));
        assert!(f.accepts(&Frame::new(0x123, 0, &[]).unwrap()));
        assert!(!f.accepts(&Frame::new(0x223, 0, &[]).unwrap()));
    }

    #[test]
    fn the_image_span_stays_inside_the_image_region() {
        let mut r = record();
        assert_eq!(image_span(&r), (memory::IMAGE_BASE, 4096));
        r.size = u64::MAX;
        assert_eq!(
            image_span(&r),
            (memory::IMAGE_BASE, memory::IMAGE_END - memory::IMAGE_BASE)
        );
        r.load_addr = 0;
        assert_eq!(image_span(&r).0, memory::IMAGE_BASE);
        r.load_addr = u64::MAX;
        assert_eq!(image_span(&r), (memory::IMAGE_END, 0));
    }
}
