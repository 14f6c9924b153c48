//! The identifier of a bootcast frame, `kind << 16 | source`: message kinds,
//! the reserved source ids, and the acceptance filters built from kinds.

use crate::filter::FilterEntry;
use crate::frame::MAX_EXTENDED_ID;

/// Largest node id; ids above it belong to masters and tools.
pub const MAX_NODE_ID: u16 = 0xFEFF;
/// Source id of the primary master.
pub const MASTER_PRIMARY: u16 = 0xFFF0;
/// Source id of the backup master.
pub const MASTER_BACKUP: u16 = 0xFFF1;
/// Source id of the testbed's tool port: frames the testbed sends that no
/// master or supervisor owns (a storm's disturbances, a test's rogue
/// master).
pub const TOOL: u16 = 0xFFF5;
/// Source id for tools outside the testbed, on its socketcand port (a
/// python-can script in the tests).
pub const EXTERNAL_TOOL: u16 = 0xFFF6;
/// Source id of the supervisor, which verifies nodes (`Check`) and sends
/// the testbed's own `Reboot`s.
pub const SUPERVISOR: u16 = 0xFFF8;
/// Target id meaning "every node".
pub const BROADCAST: u16 = 0xFFFF;

/// Every reserved id: none is a node's, and no two are equal.
const RESERVED: [u16; 6] = [
    MASTER_PRIMARY,
    MASTER_BACKUP,
    TOOL,
    EXTERNAL_TOOL,
    SUPERVISOR,
    BROADCAST,
];

const _: () = {
    let mut i = 0;
    while i < RESERVED.len() {
        assert!(RESERVED[i] > MAX_NODE_ID, "a reserved id in the node range");
        let mut j = i + 1;
        while j < RESERVED.len() {
            assert!(RESERVED[i] != RESERVED[j], "a reserved id used twice");
            j += 1;
        }
        i += 1;
    }
};

/// Message kind: the upper bits of the identifier. Lower values win the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Master → node: go back to the boot ROM.
    Reboot = 0x10,
    /// Master → node: prove the loaded bytes (challenge).
    Check = 0x11,
    /// Master → all: the master is alive (the backup master watches it).
    MasterBeacon = 0x18,
    /// Master → all: an image session starts.
    SessionAnnounce = 0x20,
    /// Master → all: one part (one node type's image) of a session.
    SessionPart = 0x21,
    /// Master → all: the session's data has all been sent.
    SessionEnd = 0x22,
    /// Node → master: send me my image.
    Request = 0x30,
    /// Node → master: these chunks are missing.
    Nack = 0x38,
    /// Node → master: I refused an image, and why.
    Reject = 0x40,
    /// Node → all: boot ROM progress.
    Status = 0x48,
    /// Node → master: answer to `Check`.
    CheckReply = 0x50,
    /// Node → all: the app is running.
    Heartbeat = 0x60,
    /// Master → all: image bytes. Lowest priority: bulk traffic yields.
    Data = 0xF0,
}

impl Kind {
    /// Parses an identifier's kind bits.
    pub fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            0x10 => Kind::Reboot,
            0x11 => Kind::Check,
            0x18 => Kind::MasterBeacon,
            0x20 => Kind::SessionAnnounce,
            0x21 => Kind::SessionPart,
            0x22 => Kind::SessionEnd,
            0x30 => Kind::Request,
            0x38 => Kind::Nack,
            0x40 => Kind::Reject,
            0x48 => Kind::Status,
            0x50 => Kind::CheckReply,
            0x60 => Kind::Heartbeat,
            0xF0 => Kind::Data,
            _ => return None,
        })
    }

    /// The identifier a sender with id `src` uses for this kind.
    pub fn id(self, src: u16) -> u32 {
        ((self as u32) << 16) | src as u32
    }
}

/// Splits a bootcast identifier into kind code and source id.
pub fn split_id(id: u32) -> (u32, u16) {
    (id >> 16, id as u16)
}

/// An acceptance-filter entry passing `span` consecutive kinds from `first`
/// (`span` a power of two, `first` aligned to it), from any sender.
pub const fn kinds_entry(first: Kind, span: u32) -> FilterEntry {
    FilterEntry {
        id: (first as u32) << 16,
        mask: !((span << 16) - 1) & MAX_EXTENDED_ID,
        extended: true,
    }
}

/// What a boot ROM listens to: session control, data, and other nodes'
/// `Nack`s (a node stays quiet when another already asked for its chunks).
pub const BOOT_ROM_KINDS: [FilterEntry; 3] = [
    kinds_entry(Kind::SessionAnnounce, 4),
    kinds_entry(Kind::Data, 1),
    kinds_entry(Kind::Nack, 1),
];

/// What a boot ROM on the virtual clock listens to while it checks an image
/// (work with no use for the bus, long enough for frames to fill its
/// device, which holds the node up): nothing bootcast sends (one standard
/// id; every bootcast message is extended).
pub const BUSY_KINDS: [FilterEntry; 1] = [FilterEntry {
    id: 0x7FF,
    mask: 0x7FF,
    extended: false,
}];

/// What a running app listens to: `Reboot` and `Check`, and session control
/// (which it counts and ignores). Image data never reaches it.
pub const APP_KINDS: [FilterEntry; 2] = [
    kinds_entry(Kind::Reboot, 2),
    kinds_entry(Kind::SessionAnnounce, 4),
];
