//! The messages' bodies, each followed by its layout: the one place that
//! says which bytes of the data field hold which field. Offsets are in the
//! comments; the walk in `fields` is what counts.

use super::codes::RebootReason;
use super::id::BROADCAST;
use super::wire::{Codec, Layout, MsgError};
use crate::frame::MAX_DATA;

/// Bytes of header in a `Data` frame: session (1) and chunk index (3).
pub const DATA_HEADER: usize = 4;
/// Bytes of image data carried by one `Data` frame on CAN FD.
pub const FD_CHUNK: usize = MAX_DATA - DATA_HEADER;
/// Largest chunk index a `Data` frame can carry.
pub const MAX_CHUNK_INDEX: u32 = 0x00FF_FFFF;
/// Most ranges one `Nack` carries.
pub const NACK_RANGES: usize = 8;
/// Bytes of image name carried in a heartbeat.
pub const HEARTBEAT_NAME: usize = 8;

/// Session mode: one type's image, or a bundle of all types.
pub const MODE_SELECTED: u8 = 1;
/// Session mode: a bundle of every type's image; each node keeps its part.
pub const MODE_COMBINED: u8 = 2;
/// Session mode: one node's image for that node alone (the unicast
/// baseline: per-node transfers as TFTP or UDS make them).
pub const MODE_UNICAST: u8 = 3;

/// `Reboot`: go back to the boot ROM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reboot {
    /// Node id, or `BROADCAST`.
    pub target: u16,
    /// With `BROADCAST`: only this type code (0 means every type).
    pub target_type: u8,
    /// A [`RebootReason`] code, echoed in logs; any value is carried.
    pub reason: u8,
}

impl Reboot {
    /// Whether node `node` of type `node_type` must obey.
    pub fn applies_to(&self, node: u16, node_type: u8) -> bool {
        self.target == node
            || (self.target == BROADCAST
                && (self.target_type == 0 || self.target_type == node_type))
    }

    /// The reason, if its code is a known one.
    pub fn reason(&self) -> Option<RebootReason> {
        RebootReason::from_code(self.reason)
    }
}

impl<'a> Layout<'a> for Reboot {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u16(&mut self.target)?; // 0
        c.u8(&mut self.target_type)?; // 2
        c.u8(&mut self.reason) // 3, 4 bytes in all
    }
}

/// `Check`: a challenge over the loaded image bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// The node that must answer.
    pub target: u16,
    /// Fresh random value; the answer is SHA-256(nonce LE ‖ payload).
    pub nonce: u32,
}

impl<'a> Layout<'a> for Check {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u16(&mut self.target)?; // 0
        c.u32(&mut self.nonce) // 2, 6 bytes in all
    }
}

/// `MasterBeacon`: the master is alive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'a> Layout<'a> for MasterBeacon {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u8(&mut self.role)?; // 0
        c.u8(&mut self.state)?; // 1
        c.u32(&mut self.next_session)?; // 2
        c.u32(&mut self.uptime_ms) // 6, 10 bytes in all
    }
}

/// `SessionAnnounce`: an image session starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionAnnounce {
    /// Session number; also the generation of nodes it boots.
    pub session: u32,
    /// The hold-off window that scheduled it.
    pub window: u32,
    /// `MODE_SELECTED`, `MODE_COMBINED` or `MODE_UNICAST`.
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

impl<'a> Layout<'a> for SessionAnnounce {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u32(&mut self.session)?; // 0
        c.u32(&mut self.window)?; // 4
        c.u8(&mut self.mode)?; // 8
        c.u8(&mut self.parts)?; // 9
        c.u8(&mut self.chunk_size)?; // 10
        c.reserved(1)?; // 11
        c.u32(&mut self.object_len)?; // 12
        c.u32(&mut self.total_chunks)?; // 16
        c.u16(&mut self.target) // 20, 22 bytes in all
    }

    /// A node sizes its reception from these fields, so they must agree.
    fn check(&self) -> Result<(), MsgError> {
        let chunk = self.chunk_size as u32;
        let consistent = chunk != 0
            && matches!(self.mode, MODE_SELECTED | MODE_COMBINED | MODE_UNICAST)
            && self.parts != 0
            && self.object_len.div_ceil(chunk) == self.total_chunks
            && self.total_chunks <= MAX_CHUNK_INDEX + 1;
        if consistent {
            Ok(())
        } else {
            Err(MsgError::BadField)
        }
    }
}

/// `SessionPart`: where one node type's image lies in a session's object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'a> Layout<'a> for SessionPart {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u32(&mut self.session)?; // 0
        c.u8(&mut self.index)?; // 4
        c.u8(&mut self.node_type)?; // 5
        c.u16(&mut self.manifest_len)?; // 6
        c.u32(&mut self.offset)?; // 8
        c.u32(&mut self.len)?; // 12
        c.u64(&mut self.load_addr)?; // 16
        c.u32(&mut self.version) // 24, 28 bytes in all
    }
}

/// `SessionEnd`: every chunk has been sent (once, or in a repair round).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'a> Layout<'a> for SessionEnd {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u32(&mut self.session)?; // 0
        c.u32(&mut self.total_chunks)?; // 4
        c.u8(&mut self.round)?; // 8
        c.u8(&mut self.last) // 9, 10 bytes in all
    }
}

/// `Request`: a minimal node asks for its image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'a> Layout<'a> for Request {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u8(&mut self.node_type)?; // 0
        c.u8(&mut self.flags)?; // 1
        c.u16(&mut self.boot_rom_version)?; // 2
        c.u16(&mut self.attempt)?; // 4
        c.reserved(2)?; // 6
        c.u32(&mut self.min_version) // 8, 12 bytes in all
    }
}

/// `Nack`: chunks a node is missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nack {
    /// Session number.
    pub session: u32,
    /// How many of `ranges` are used (at most [`NACK_RANGES`]).
    pub count: u8,
    /// Missing ranges as (first chunk, number of chunks); the unused ones
    /// are zero.
    pub ranges: [(u32, u16); NACK_RANGES],
}

impl<'a> Layout<'a> for Nack {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u32(&mut self.session)?; // 0
        c.u8(&mut self.count)?; // 4
        let used = self
            .ranges
            .get_mut(..self.count as usize)
            .ok_or(MsgError::BadField)?;
        c.reserved(3)?; // 5
        for (start, len) in used {
            c.u24(start)?; // 8 + 5 i
            c.u16(len)?; // 11 + 5 i
        }
        Ok(())
    }

    /// Only the used ranges are sent, so the others must be zero for the
    /// message to arrive as it was sent.
    fn check(&self) -> Result<(), MsgError> {
        let unused = self.ranges.get(self.count as usize..);
        match unused {
            Some(rest) if rest.iter().all(|&r| r == (0, 0)) => Ok(()),
            _ => Err(MsgError::BadField),
        }
    }
}

/// `Reject`: a node refused an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'a> Layout<'a> for Reject {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u8(&mut self.node_type)?; // 0
        c.u8(&mut self.reason)?; // 1
        c.reserved(2)?; // 2
        c.u32(&mut self.session)?; // 4
        c.u32(&mut self.version)?; // 8
        c.bytes(&mut self.measured)?; // 12
        c.bytes(&mut self.expected) // 28, 44 bytes in all
    }
}

/// `Status`: boot ROM progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'a> Layout<'a> for Status {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u8(&mut self.node_type)?; // 0
        c.u8(&mut self.state)?; // 1
        c.u8(&mut self.selftest)?; // 2
        c.u8(&mut self.reset_cause)?; // 3
        c.u32(&mut self.session)?; // 4
        c.u32(&mut self.received)?; // 8
        c.u32(&mut self.total) // 12, 16 bytes in all
    }
}

/// `CheckReply`: the answer to `Check`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckReply {
    /// The challenge's nonce.
    pub nonce: u32,
    /// SHA-256(nonce LE ‖ payload bytes as they are in RAM now).
    pub digest: [u8; 32],
}

impl<'a> Layout<'a> for CheckReply {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u32(&mut self.nonce)?; // 0
        c.bytes(&mut self.digest) // 4, 36 bytes in all
    }
}

/// `Heartbeat`: a running app's identity and health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl<'a> Layout<'a> for Heartbeat {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u8(&mut self.node_type)?; // 0
        c.u8(&mut self.state)?; // 1
        c.u8(&mut self.reset_cause)?; // 2
        c.u8(&mut self.flags)?; // 3
        c.u32(&mut self.generation)?; // 4
        c.u32(&mut self.uptime_ms)?; // 8
        c.u16(&mut self.boot_count)?; // 12
        c.reserved(2)?; // 14
        c.u32(&mut self.version)?; // 16
        c.bytes(&mut self.name)?; // 20
        c.bytes(&mut self.digest)?; // 28
        c.u32(&mut self.ignored) // 60, 64 bytes in all
    }
}

/// `Data`: one chunk of a session's object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Data<'a> {
    /// Low byte of the session number.
    pub session: u8,
    /// Chunk index; the chunk starts at `chunk * chunk_size` in the object.
    pub chunk: u32,
    /// The chunk's bytes, padding included (the object length tells where the
    /// last chunk ends). A frame pads a length no CAN FD length code
    /// expresses with zeros, so those come back longer.
    pub payload: &'a [u8],
}

impl<'a> Layout<'a> for Data<'a> {
    fn fields<C: Codec<'a>>(&mut self, c: &mut C) -> Result<(), MsgError> {
        c.u8(&mut self.session)?; // 0
        c.u24(&mut self.chunk)?; // 1
        c.rest(&mut self.payload) // 4 (DATA_HEADER) to the end of the frame
    }
}
