//! The handoff record: what the boot ROM tells the app it starts, and what
//! survives a warm reboot.
//!
//! It lives at `memory::HANDOFF_BASE`; the app gets its address in `a0`.
//! The page also keeps the boot counter across resets that keep RAM, guarded
//! by a magic so that power-on (RAM zeroed) is told apart.

/// Magic marking a valid record ("BCH1").
pub const MAGIC: u32 = u32::from_le_bytes(*b"BCH1");
/// Layout version.
pub const VERSION: u16 = 1;

/// The record. `#[repr(C)]`: the boot ROM and the app are separate programs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Handoff {
    /// `MAGIC` when the record is valid.
    pub magic: u32,
    /// `VERSION`.
    pub version: u16,
    /// Node id from the strapping words.
    pub node: u16,
    /// Node type code.
    pub node_type: u8,
    /// `proto::msg::ResetCause` code of this boot.
    pub reset_cause: u8,
    /// Boots since RAM was last lost.
    pub boot_count: u16,
    /// Set by the app before it jumps back to the boot ROM on `Reboot`.
    pub soft_reboot: u32,
    /// Session that delivered the image (the node's generation).
    pub generation: u32,
    /// Image version.
    pub version_of_image: u32,
    /// Payload load address.
    pub load_addr: u64,
    /// Payload size in bytes.
    pub size: u64,
    /// Entry point.
    pub entry: u64,
    /// SHA-256 the boot ROM measured over the loaded payload.
    pub digest: [u8; 32],
    /// Image name, zero-padded.
    pub name: [u8; 16],
}

impl Handoff {
    /// An all-zero record (invalid).
    pub const fn zeroed() -> Handoff {
        Handoff {
            magic: 0,
            version: 0,
            node: 0,
            node_type: 0,
            reset_cause: 0,
            boot_count: 0,
            soft_reboot: 0,
            generation: 0,
            version_of_image: 0,
            load_addr: 0,
            size: 0,
            entry: 0,
            digest: [0; 32],
            name: [0; 16],
        }
    }

    /// Whether the magic and layout version match.
    pub fn is_valid(&self) -> bool {
        self.magic == MAGIC && self.version == VERSION
    }
}

// The record fits its page, whose alignment satisfies it.
const _: () = assert!(
    core::mem::size_of::<Handoff>() <= crate::memory::HANDOFF_SIZE as usize
        && crate::memory::HANDOFF_BASE.is_multiple_of(core::mem::align_of::<Handoff>() as u64)
);

/// Value of `soft_reboot` meaning "the app asked for this reboot".
pub const SOFT_REBOOT_REQUESTED: u32 = 0x5EB0_07ED;
