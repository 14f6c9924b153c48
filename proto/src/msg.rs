//! bootcast messages and how they map onto frames.
//!
//! Every bootcast frame is a CAN FD frame with an extended identifier and
//! bit-rate switch. The identifier is `kind << 16 | source`: the kind sets the
//! priority (lower wins arbitration) and the source is the sender's node id,
//! so two senders never use the same identifier. Multi-byte fields are
//! little-endian.

use crate::filter::FilterEntry;
use crate::frame::{Frame, MAX_DATA, MAX_EXTENDED_ID};

/// Source id of the primary master.
pub const MASTER_PRIMARY: u16 = 0xFFF0;
/// Source id of the backup master.
pub const MASTER_BACKUP: u16 = 0xFFF1;
/// Target id meaning "every node".
pub const BROADCAST: u16 = 0xFFFF;
/// Largest node id; ids above it belong to masters and tools.
pub const MAX_NODE_ID: u16 = 0xFEFF;
/// Bytes of image data carried by one `Data` frame on CAN FD.
pub const FD_CHUNK: usize = MAX_DATA - DATA_HEADER;
/// Bytes of header in a `Data` frame: session (1) and chunk index (3).
pub const DATA_HEADER: usize = 4;
/// Largest chunk index a `Data` frame can carry.
pub const MAX_CHUNK_INDEX: u32 = 0x00FF_FFFF;
/// Most ranges one `Nack` carries.
pub const NACK_RANGES: usize = 8;
/// Bytes of image name carried in a heartbeat.
pub const HEARTBEAT_NAME: usize = 8;

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

/// What a running app listens to: `Reboot` and `Check`, and session control
/// (which it counts and ignores). Image data never reaches it.
pub const APP_KINDS: [FilterEntry; 2] = [
    kinds_entry(Kind::Reboot, 2),
    kinds_entry(Kind::SessionAnnounce, 4),
];

/// Splits a bootcast identifier into kind code and source id.
pub fn split_id(id: u32) -> (u32, u16) {
    (id >> 16, id as u16)
}

/// Node types, named after the seed's tape-library modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum NodeType {
    /// The accessor's work processor (robot controller).
    Accessor = 1,
    /// The accessor's XY motion processor.
    Xy = 2,
    /// A data storage drive's processor.
    Drive = 3,
    /// A communication processor (host interface).
    Comm = 4,
    /// An operator panel processor.
    OpPanel = 5,
}

impl NodeType {
    /// Every node type.
    pub const ALL: [NodeType; 5] = [
        NodeType::Accessor,
        NodeType::Xy,
        NodeType::Drive,
        NodeType::Comm,
        NodeType::OpPanel,
    ];

    /// The type with wire code `code`.
    pub fn from_code(code: u8) -> Option<NodeType> {
        NodeType::ALL.iter().copied().find(|t| *t as u8 == code)
    }

    /// The type's name as used in fleet files and reports.
    pub fn name(self) -> &'static str {
        match self {
            NodeType::Accessor => "accessor",
            NodeType::Xy => "xy",
            NodeType::Drive => "drive",
            NodeType::Comm => "comm",
            NodeType::OpPanel => "op-panel",
        }
    }

    /// The type called `name`.
    pub fn from_name(name: &str) -> Option<NodeType> {
        NodeType::ALL.iter().copied().find(|t| t.name() == name)
    }
}

/// Where a node is in its boot, as reported in `Status` and `Heartbeat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeState {
    /// Boot ROM self-test.
    SelfTest = 1,
    /// Minimal: asking for an image.
    Requesting = 2,
    /// Minimal: receiving a session for its type.
    Receiving = 3,
    /// All bytes in; checking the digest.
    Verifying = 4,
    /// Image accepted; jumping to it.
    Handoff = 5,
    /// The app is running.
    Running = 6,
    /// Self-test failed; the node stays minimal.
    Failed = 7,
}

impl NodeState {
    /// The state with wire code `code`.
    pub fn from_code(code: u8) -> Option<NodeState> {
        use NodeState::*;
        [
            SelfTest, Requesting, Receiving, Verifying, Handoff, Running, Failed,
        ]
        .into_iter()
        .find(|s| *s as u8 == code)
    }
}

/// Why a node refused an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    /// The SHA-256 of the loaded bytes differs from the manifest's.
    DigestMismatch = 1,
    /// The manifest names another node type.
    WrongType = 2,
    /// The manifest does not parse.
    BadManifest = 3,
    /// The image does not fit the image region, or its entry is outside it.
    OutOfRegion = 4,
    /// The session ended before every chunk arrived.
    Incomplete = 5,
    /// The session's part disagrees with the manifest it carried.
    Inconsistent = 6,
    /// The image version is below the node's minimum.
    VersionTooLow = 7,
    /// The signature does not verify.
    BadSignature = 8,
}

impl RejectReason {
    /// The reason with wire code `code`.
    pub fn from_code(code: u8) -> Option<RejectReason> {
        use RejectReason::*;
        [
            DigestMismatch,
            WrongType,
            BadManifest,
            OutOfRegion,
            Incomplete,
            Inconsistent,
            VersionTooLow,
            BadSignature,
        ]
        .into_iter()
        .find(|r| *r as u8 == code)
    }

    /// A short description for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::DigestMismatch => "digest mismatch",
            RejectReason::WrongType => "image is for another node type",
            RejectReason::BadManifest => "manifest does not parse",
            RejectReason::OutOfRegion => "image outside the image region",
            RejectReason::Incomplete => "session ended with chunks missing",
            RejectReason::Inconsistent => "session part disagrees with manifest",
            RejectReason::VersionTooLow => "version below the node's minimum",
            RejectReason::BadSignature => "bad signature",
        }
    }
}

/// How a node came to be in its boot ROM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResetCause {
    /// RAM was lost: power-on.
    PowerOn = 1,
    /// A reset with RAM kept (e.g. QMP `system_reset`).
    Reset = 2,
    /// The app obeyed `Reboot`.
    SoftReboot = 3,
}

impl ResetCause {
    /// The cause with wire code `code`.
    pub fn from_code(code: u8) -> Option<ResetCause> {
        use ResetCause::*;
        [PowerOn, Reset, SoftReboot]
            .into_iter()
            .find(|r| *r as u8 == code)
    }
}

/// Session mode: one type's image, or a bundle of all types.
pub const MODE_SELECTED: u8 = 1;
/// Session mode: a bundle of every type's image; each node keeps its part.
pub const MODE_COMBINED: u8 = 2;
/// Session mode: one node's image for that node alone (the unicast
/// baseline: per-node transfers as TFTP or UDS make them).
pub const MODE_UNICAST: u8 = 3;

/// `Request`: a minimal node asks for its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The node's type code.
    pub node_type: u8,
    /// Reserved flags.
    pub flags: u8,
    /// The boot ROM's version.
    pub boot_rom_version: u16,
    /// How many requests this boot has sent, this one included.
    pub attempt: u16,
    /// The lowest image version the node accepts.
    pub min_version: u32,
}

/// `SessionAnnounce`: an image session starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionAnnounce {
    /// Session number; also the generation of nodes it boots.
    pub session: u32,
    /// The hold-off window that scheduled it.
    pub window: u32,
    /// `MODE_SELECTED` or `MODE_COMBINED`.
    pub mode: u8,
    /// How many `SessionPart`s follow.
    pub parts: u8,
    /// Image bytes per `Data` frame.
    pub chunk_size: u8,
    /// Bytes in the session's object (image or bundle).
    pub object_len: u32,
    /// `Data` frames in the session.
    pub total_chunks: u32,
    /// `MODE_UNICAST`: the one node the session is for; otherwise `BROADCAST`.
    pub target: u16,
}

/// `SessionPart`: where one node type's image lies in a session's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPart {
    /// Session number.
    pub session: u32,
    /// Part index, from 0.
    pub index: u8,
    /// Node type code this part is for.
    pub node_type: u8,
    /// Bytes of manifest at the start of the part.
    pub manifest_len: u16,
    /// Offset of the part in the object.
    pub offset: u32,
    /// Bytes in the part: manifest plus payload.
    pub len: u32,
    /// RAM address of the payload's first byte.
    pub load_addr: u64,
    /// Image version (also in the manifest).
    pub version: u32,
}

/// `Data`: one chunk of a session's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    /// Low byte of the session number.
    pub session: u8,
    /// Chunk index; the chunk starts at `chunk * chunk_size` in the object.
    pub chunk: u32,
    /// The chunk's bytes, padding included (the object length tells where the
    /// last chunk ends).
    pub payload: &'a [u8],
}

/// `SessionEnd`: every chunk has been sent (once, or in a repair round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    /// Session number.
    pub session: u32,
    /// `Data` frames in the session.
    pub total_chunks: u32,
    /// 0 for the first pass, then the repair round.
    pub round: u8,
    /// Nonzero when the master will send no more repair rounds.
    pub last: u8,
}

/// `Nack`: chunks a node is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nack {
    /// Session number.
    pub session: u32,
    /// How many of `ranges` are used.
    pub count: u8,
    /// Missing ranges as (first chunk, number of chunks).
    pub ranges: [(u32, u16); NACK_RANGES],
}

/// `Heartbeat`: a running app's identity and health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Node type code.
    pub node_type: u8,
    /// `NodeState::Running` for an app.
    pub state: u8,
    /// `ResetCause` of the boot that loaded this image.
    pub reset_cause: u8,
    /// Reserved flags.
    pub flags: u8,
    /// Session number that delivered the running image.
    pub generation: u32,
    /// Milliseconds since the app started.
    pub uptime_ms: u32,
    /// Boots since power-on.
    pub boot_count: u16,
    /// Image version.
    pub version: u32,
    /// First bytes of the image name, zero-padded.
    pub name: [u8; HEARTBEAT_NAME],
    /// SHA-256 the boot ROM measured over the loaded bytes.
    pub digest: [u8; 32],
    /// Session frames the app has seen and ignored (its acceptance filter
    /// keeps `Data` frames from it altogether).
    pub ignored: u32,
}

/// `Status`: boot ROM progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Node type code.
    pub node_type: u8,
    /// `NodeState` code.
    pub state: u8,
    /// Self-test result bits; zero is a pass.
    pub selftest: u8,
    /// `ResetCause` code.
    pub reset_cause: u8,
    /// Session being received or checked (0 if none).
    pub session: u32,
    /// Chunks received so far.
    pub received: u32,
    /// Chunks in the session.
    pub total: u32,
}

/// `Reject`: a node refused an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Node type code.
    pub node_type: u8,
    /// `RejectReason` code.
    pub reason: u8,
    /// Session that carried the image.
    pub session: u32,
    /// Version the manifest claimed.
    pub version: u32,
    /// First 16 bytes of the digest the node measured.
    pub measured: [u8; 16],
    /// First 16 bytes of the digest the manifest claimed.
    pub expected: [u8; 16],
}

/// `Reboot`: go back to the boot ROM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reboot {
    /// Node id, or `BROADCAST`.
    pub target: u16,
    /// With `BROADCAST`: only this type code (0 means every type).
    pub target_type: u8,
    /// Free-form reason code, echoed in logs.
    pub reason: u8,
}

impl Reboot {
    /// Whether node `node` of type `node_type` must obey.
    pub fn applies_to(&self, node: u16, node_type: u8) -> bool {
        self.target == node
            || (self.target == BROADCAST
                && (self.target_type == 0 || self.target_type == node_type))
    }
}

/// `Check`: a challenge over the loaded image bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The node that must answer.
    pub target: u16,
    /// Fresh random value; the answer is SHA-256(nonce LE ‖ payload).
    pub nonce: u32,
}

/// `CheckReply`: the answer to `Check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckReply {
    /// The challenge's nonce.
    pub nonce: u32,
    /// SHA-256(nonce LE ‖ payload bytes as they are in RAM now).
    pub digest: [u8; 32],
}

/// `MasterBeacon`: the master is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterBeacon {
    /// 1 primary, 2 backup.
    pub role: u8,
    /// 0 idle, 1 window open, 2 broadcasting.
    pub state: u8,
    /// Next session number the master will use.
    pub next_session: u32,
    /// Milliseconds since the master started.
    pub uptime_ms: u32,
}

/// A decoded bootcast message. `Data` borrows from its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Message<'a> {
    Reboot(Reboot),
    Check(Check),
    MasterBeacon(MasterBeacon),
    SessionAnnounce(SessionAnnounce),
    SessionPart(SessionPart),
    SessionEnd(SessionEnd),
    Request(Request),
    Nack(Nack),
    Reject(Reject),
    Status(Status),
    CheckReply(CheckReply),
    Heartbeat(Heartbeat),
    Data(Data<'a>),
}

/// Why a frame is not a bootcast message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgError {
    /// Not an extended-identifier frame.
    NotBootcast = 1,
    /// The identifier's kind bits name no message.
    UnknownKind = 2,
    /// The data field is shorter than the message.
    Truncated = 3,
    /// A field holds a value the message does not allow.
    BadField = 4,
    /// The message does not fit one frame (encoding only).
    TooLong = 5,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgError> {
        let end = self.at.checked_add(n).ok_or(MsgError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(MsgError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, MsgError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, MsgError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Result<u32, MsgError> {
        let b = self.take(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }
    fn u32(&mut self) -> Result<u32, MsgError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, MsgError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], MsgError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

struct Writer {
    buf: [u8; MAX_DATA],
    at: usize,
}

impl Writer {
    fn put(&mut self, bytes: &[u8]) -> Result<(), MsgError> {
        let end = self.at + bytes.len();
        self.buf
            .get_mut(self.at..end)
            .ok_or(MsgError::TooLong)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), MsgError> {
        self.put(&[v])
    }
    fn u16(&mut self, v: u16) -> Result<(), MsgError> {
        self.put(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> Result<(), MsgError> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<(), MsgError> {
        self.put(&v.to_le_bytes())
    }
}

impl<'a> Message<'a> {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Reboot(_) => Kind::Reboot,
            Message::Check(_) => Kind::Check,
            Message::MasterBeacon(_) => Kind::MasterBeacon,
            Message::SessionAnnounce(_) => Kind::SessionAnnounce,
            Message::SessionPart(_) => Kind::SessionPart,
            Message::SessionEnd(_) => Kind::SessionEnd,
            Message::Request(_) => Kind::Request,
            Message::Nack(_) => Kind::Nack,
            Message::Reject(_) => Kind::Reject,
            Message::Status(_) => Kind::Status,
            Message::CheckReply(_) => Kind::CheckReply,
            Message::Heartbeat(_) => Kind::Heartbeat,
            Message::Data(_) => Kind::Data,
        }
    }

    /// Decodes a frame into its sender id and message. Trailing bytes (CAN
    /// FD padding) are ignored. Any extended-identifier frame may carry a
    /// message: the short ones (`Reboot`, `Check`) fit a classic CAN frame,
    /// so a classic-CAN tool can send them. Never panics.
    pub fn decode(frame: &'a Frame) -> Result<(u16, Message<'a>), MsgError> {
        if !frame.is_extended() {
            return Err(MsgError::NotBootcast);
        }
        let (code, src) = split_id(frame.id());
        let kind = Kind::from_code(code).ok_or(MsgError::UnknownKind)?;
        let mut r = Reader {
            bytes: frame.data(),
            at: 0,
        };
        let msg = match kind {
            Kind::Reboot => Message::Reboot(Reboot {
                target: r.u16()?,
                target_type: r.u8()?,
                reason: r.u8()?,
            }),
            Kind::Check => Message::Check(Check {
                target: r.u16()?,
                nonce: r.u32()?,
            }),
            Kind::MasterBeacon => Message::MasterBeacon(MasterBeacon {
                role: r.u8()?,
                state: r.u8()?,
                next_session: r.u32()?,
                uptime_ms: r.u32()?,
            }),
            Kind::SessionAnnounce => {
                let a = SessionAnnounce {
                    session: r.u32()?,
                    window: r.u32()?,
                    mode: r.u8()?,
                    parts: r.u8()?,
                    chunk_size: r.u8()?,
                    object_len: {
                        r.u8()?;
                        r.u32()?
                    },
                    total_chunks: r.u32()?,
                    target: r.u16()?,
                };
                let chunk = a.chunk_size as u32;
                let consistent = chunk != 0
                    && matches!(a.mode, MODE_SELECTED | MODE_COMBINED | MODE_UNICAST)
                    && a.parts != 0
                    && a.object_len.div_ceil(chunk) == a.total_chunks
                    && a.total_chunks <= MAX_CHUNK_INDEX + 1;
                if !consistent {
                    return Err(MsgError::BadField);
                }
                Message::SessionAnnounce(a)
            }
            Kind::SessionPart => Message::SessionPart(SessionPart {
                session: r.u32()?,
                index: r.u8()?,
                node_type: r.u8()?,
                manifest_len: r.u16()?,
                offset: r.u32()?,
                len: r.u32()?,
                load_addr: r.u64()?,
                version: r.u32()?,
            }),
            Kind::SessionEnd => Message::SessionEnd(SessionEnd {
                session: r.u32()?,
                total_chunks: r.u32()?,
                round: r.u8()?,
                last: r.u8()?,
            }),
            Kind::Request => Message::Request(Request {
                node_type: r.u8()?,
                flags: r.u8()?,
                boot_rom_version: r.u16()?,
                attempt: r.u16()?,
                min_version: {
                    r.u16()?;
                    r.u32()?
                },
            }),
            Kind::Nack => {
                let session = r.u32()?;
                let count = r.u8()?;
                if count as usize > NACK_RANGES {
                    return Err(MsgError::BadField);
                }
                r.take(3)?;
                let mut ranges = [(0u32, 0u16); NACK_RANGES];
                for range in ranges.iter_mut().take(count as usize) {
                    *range = (r.u24()?, r.u16()?);
                }
                Message::Nack(Nack {
                    session,
                    count,
                    ranges,
                })
            }
            Kind::Reject => Message::Reject(Reject {
                node_type: r.u8()?,
                reason: r.u8()?,
                session: {
                    r.u16()?;
                    r.u32()?
                },
                version: r.u32()?,
                measured: r.array()?,
                expected: r.array()?,
            }),
            Kind::Status => Message::Status(Status {
                node_type: r.u8()?,
                state: r.u8()?,
                selftest: r.u8()?,
                reset_cause: r.u8()?,
                session: r.u32()?,
                received: r.u32()?,
                total: r.u32()?,
            }),
            Kind::CheckReply => Message::CheckReply(CheckReply {
                nonce: r.u32()?,
                digest: r.array()?,
            }),
            Kind::Heartbeat => Message::Heartbeat(Heartbeat {
                node_type: r.u8()?,
                state: r.u8()?,
                reset_cause: r.u8()?,
                flags: r.u8()?,
                generation: r.u32()?,
                uptime_ms: r.u32()?,
                boot_count: r.u16()?,
                version: {
                    r.u16()?;
                    r.u32()?
                },
                name: r.array()?,
                digest: r.array()?,
                ignored: r.u32()?,
            }),
            Kind::Data => Message::Data(Data {
                session: r.u8()?,
                chunk: r.u24()?,
                payload: r.take(frame.data().len() - DATA_HEADER)?,
            }),
        };
        Ok((src, msg))
    }

    /// Encodes the message as a frame sent by `src`.
    pub fn to_frame(&self, src: u16) -> Result<Frame, MsgError> {
        let mut w = Writer {
            buf: [0; MAX_DATA],
            at: 0,
        };
        match self {
            Message::Reboot(m) => {
                w.u16(m.target)?;
                w.u8(m.target_type)?;
                w.u8(m.reason)?;
            }
            Message::Check(m) => {
                w.u16(m.target)?;
                w.u32(m.nonce)?;
            }
            Message::MasterBeacon(m) => {
                w.u8(m.role)?;
                w.u8(m.state)?;
                w.u32(m.next_session)?;
                w.u32(m.uptime_ms)?;
            }
            Message::SessionAnnounce(m) => {
                w.u32(m.session)?;
                w.u32(m.window)?;
                w.u8(m.mode)?;
                w.u8(m.parts)?;
                w.u8(m.chunk_size)?;
                w.u8(0)?;
                w.u32(m.object_len)?;
                w.u32(m.total_chunks)?;
                w.u16(m.target)?;
            }
            Message::SessionPart(m) => {
                w.u32(m.session)?;
                w.u8(m.index)?;
                w.u8(m.node_type)?;
                w.u16(m.manifest_len)?;
                w.u32(m.offset)?;
                w.u32(m.len)?;
                w.u64(m.load_addr)?;
                w.u32(m.version)?;
            }
            Message::SessionEnd(m) => {
                w.u32(m.session)?;
                w.u32(m.total_chunks)?;
                w.u8(m.round)?;
                w.u8(m.last)?;
            }
            Message::Request(m) => {
                w.u8(m.node_type)?;
                w.u8(m.flags)?;
                w.u16(m.boot_rom_version)?;
                w.u16(m.attempt)?;
                w.u16(0)?;
                w.u32(m.min_version)?;
            }
            Message::Nack(m) => {
                if m.count as usize > NACK_RANGES {
                    return Err(MsgError::BadField);
                }
                w.u32(m.session)?;
                w.u8(m.count)?;
                w.put(&[0; 3])?;
                for &(start, len) in &m.ranges[..m.count as usize] {
                    if start > MAX_CHUNK_INDEX {
                        return Err(MsgError::BadField);
                    }
                    w.put(&start.to_le_bytes()[..3])?;
                    w.u16(len)?;
                }
            }
            Message::Reject(m) => {
                w.u8(m.node_type)?;
                w.u8(m.reason)?;
                w.u16(0)?;
                w.u32(m.session)?;
                w.u32(m.version)?;
                w.put(&m.measured)?;
                w.put(&m.expected)?;
            }
            Message::Status(m) => {
                w.u8(m.node_type)?;
                w.u8(m.state)?;
                w.u8(m.selftest)?;
                w.u8(m.reset_cause)?;
                w.u32(m.session)?;
                w.u32(m.received)?;
                w.u32(m.total)?;
            }
            Message::CheckReply(m) => {
                w.u32(m.nonce)?;
                w.put(&m.digest)?;
            }
            Message::Heartbeat(m) => {
                w.u8(m.node_type)?;
                w.u8(m.state)?;
                w.u8(m.reset_cause)?;
                w.u8(m.flags)?;
                w.u32(m.generation)?;
                w.u32(m.uptime_ms)?;
                w.u16(m.boot_count)?;
                w.u16(0)?;
                w.u32(m.version)?;
                w.put(&m.name)?;
                w.put(&m.digest)?;
                w.u32(m.ignored)?;
            }
            Message::Data(m) => {
                if m.chunk > MAX_CHUNK_INDEX {
                    return Err(MsgError::BadField);
                }
                w.u8(m.session)?;
                w.put(&m.chunk.to_le_bytes()[..3])?;
                w.put(m.payload)?;
            }
        }
        Frame::fd_extended(self.kind().id(src), &w.buf[..w.at]).map_err(|_| MsgError::TooLong)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn samples() -> Vec<Message<'static>> {
        static CHUNK: [u8; FD_CHUNK] = [0xA5; FD_CHUNK];
        let mut ranges = [(0, 0); NACK_RANGES];
        ranges[0] = (5, 3);
        ranges[1] = (MAX_CHUNK_INDEX, 1);
        std::vec![
            Message::Reboot(Reboot {
                target: 7,
                target_type: 0,
                reason: 2
            }),
            Message::Check(Check {
                target: 3,
                nonce: 0xDEAD_BEEF
            }),
            Message::MasterBeacon(MasterBeacon {
                role: 1,
                state: 2,
                next_session: 9,
                uptime_ms: 77
            }),
            Message::SessionAnnounce(SessionAnnounce {
                session: 0x0102_0304,
                window: 3,
                mode: MODE_SELECTED,
                parts: 1,
                chunk_size: FD_CHUNK as u8,
                object_len: 1000,
                total_chunks: 17,
                target: BROADCAST,
            }),
            Message::SessionPart(SessionPart {
                session: 1,
                index: 0,
                node_type: NodeType::Drive as u8,
                manifest_len: 160,
                offset: 0,
                len: 1000,
                load_addr: 0x8010_0000,
                version: 0x0001_0203,
            }),
            Message::SessionEnd(SessionEnd {
                session: 1,
                total_chunks: 17,
                round: 0,
                last: 1
            }),
            Message::Request(Request {
                node_type: 3,
                flags: 0,
                boot_rom_version: 1,
                attempt: 4,
                min_version: 0x10000,
            }),
            Message::Nack(Nack {
                session: 1,
                count: 2,
                ranges
            }),
            Message::Reject(Reject {
                node_type: 2,
                reason: RejectReason::DigestMismatch as u8,
                session: 5,
                version: 1,
                measured: [1; 16],
                expected: [2; 16],
            }),
            Message::Status(Status {
                node_type: 1,
                state: NodeState::Receiving as u8,
                selftest: 0,
                reset_cause: 1,
                session: 2,
                received: 10,
                total: 20,
            }),
            Message::CheckReply(CheckReply {
                nonce: 1,
                digest: [9; 32]
            }),
            Message::Heartbeat(Heartbeat {
                node_type: 4,
                state: NodeState::Running as u8,
                reset_cause: 3,
                flags: 0,
                generation: 12,
                uptime_ms: 123_456,
                boot_count: 2,
                version: 0x0001_0000,
                name: *b"comm\0\0\0\0",
                digest: [0x5A; 32],
                ignored: 99,
            }),
            Message::Data(Data {
                session: 4,
                chunk: 0x00AB_CDEF,
                payload: &CHUNK
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in samples() {
            let frame = msg.to_frame(0x0102).unwrap();
            assert!(frame.data().len() <= MAX_DATA);
            let (src, back) = Message::decode(&frame).unwrap();
            assert_eq!(src, 0x0102);
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for msg in samples() {
            let frame = msg.to_frame(1).unwrap();
            let full = frame.data().len();
            let min = match msg {
                Message::Data(_) => DATA_HEADER,
                _ => full,
            };
            for cut in 0..min {
                // Cut to `cut` bytes; the frame layer pads to a DLC length,
                // so only lengths that stay short of the message matter.
                let short = Frame::fd_extended(frame.id(), &frame.data()[..cut]).unwrap();
                if short.data().len() >= min {
                    continue;
                }
                assert!(
                    Message::decode(&short).is_err(),
                    "{:?} decoded from {cut} bytes",
                    msg.kind()
                );
            }
        }
    }

    #[test]
    fn foreign_frames_are_not_messages() {
        let classic = Frame::new(0x123, 0, &[1, 2]).unwrap();
        assert_eq!(Message::decode(&classic), Err(MsgError::NotBootcast));
        // A classic extended frame can carry a short message.
        let check = Frame::new(
            Kind::Check.id(7),
            crate::frame::FLAG_EXTENDED,
            &[3, 0, 1, 0, 0, 0],
        )
        .unwrap();
        assert_eq!(
            Message::decode(&check),
            Ok((
                7,
                Message::Check(Check {
                    target: 3,
                    nonce: 1
                })
            ))
        );
        let unknown = Frame::fd_extended(0x77 << 16, &[0; 8]).unwrap();
        assert_eq!(Message::decode(&unknown), Err(MsgError::UnknownKind));
    }

    #[test]
    fn bad_fields_are_rejected() {
        let mut nack = [0u8; 8];
        nack[4] = NACK_RANGES as u8 + 1;
        let f = Frame::fd_extended(Kind::Nack.id(1), &nack).unwrap();
        assert_eq!(Message::decode(&f), Err(MsgError::BadField));
        let announce = Message::SessionAnnounce(SessionAnnounce {
            session: 1,
            window: 1,
            mode: MODE_SELECTED,
            parts: 1,
            chunk_size: 0,
            object_len: 10,
            total_chunks: 1,
            target: BROADCAST,
        });
        let f = announce.to_frame(MASTER_PRIMARY).unwrap();
        assert_eq!(Message::decode(&f), Err(MsgError::BadField));
    }

    #[test]
    fn priorities_put_control_first_and_bulk_last() {
        assert!(Kind::Reboot.id(MASTER_PRIMARY) < Kind::Request.id(1));
        assert!(Kind::Request.id(MAX_NODE_ID) < Kind::Heartbeat.id(1));
        assert!(Kind::Heartbeat.id(MAX_NODE_ID) < Kind::Data.id(MASTER_PRIMARY));
        assert!(Kind::Data.id(BROADCAST) <= crate::frame::MAX_EXTENDED_ID);
    }

    #[test]
    fn node_filters_pass_exactly_their_kinds() {
        use crate::filter::AcceptanceFilter;
        let boot = AcceptanceFilter::new(&BOOT_ROM_KINDS).unwrap();
        let app = AcceptanceFilter::new(&APP_KINDS).unwrap();
        for code in 0..=0xFFu32 {
            let Some(kind) = Kind::from_code(code) else {
                continue;
            };
            let f = Frame::fd_extended(kind.id(MASTER_PRIMARY), &[]).unwrap();
            let session = matches!(
                kind,
                Kind::SessionAnnounce | Kind::SessionPart | Kind::SessionEnd
            );
            assert_eq!(
                boot.accepts(&f),
                session || matches!(kind, Kind::Data | Kind::Nack),
                "{kind:?}"
            );
            assert_eq!(
                app.accepts(&f),
                session || matches!(kind, Kind::Reboot | Kind::Check),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn node_type_names_round_trip() {
        for t in NodeType::ALL {
            assert_eq!(NodeType::from_name(t.name()), Some(t));
            assert_eq!(NodeType::from_code(t as u8), Some(t));
        }
        assert_eq!(NodeType::from_code(0), None);
        assert_eq!(NodeType::from_name("robot"), None);
    }

    #[test]
    fn random_frames_never_panic() {
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = [
                0x10u32, 0x11, 0x18, 0x20, 0x21, 0x22, 0x30, 0x38, 0x40, 0x48, 0x50, 0x60, 0xF0,
            ][(x % 13) as usize];
            let len = ((x >> 8) % 65) as usize;
            let data: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            let f = Frame::fd_extended(kind << 16 | (x >> 40) as u32 & 0xFFFF, &data).unwrap();
            let _ = Message::decode(&f);
        }
    }
}
