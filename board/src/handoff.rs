//! The handoff record: what the boot ROM tells the app it starts, and what
//! survives a warm reboot.
//!
//! It lives at `memory::HANDOFF_BASE`; the app gets its address in `a0`.
//! The page also keeps the boot counter across resets that keep RAM, guarded
//! by a magic so that power-on (RAM zeroed) is told apart.
//!
//! The host reads it too, from outside the node (the supervisor's own check
//! of a node's RAM): [`Handoff::from_le_bytes`] parses the [`LEN`] bytes at
//! `HANDOFF_BASE` as the riscv64 guest lays them out. The boot ROM zeroes the
//! record at every boot and fills the image fields in just before it jumps,
//! so a record with a non-zero `size` names the image that runs.

/// Magic marking a valid record ("BCH1").
pub const MAGIC: u32 = u32::from_le_bytes(*b"BCH1");
/// Layout version.
pub const VERSION: u16 = 1;

/// The record. `#[repr(C)]`: the boot ROM and the app are separate programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Bytes of the record as the guest lays it out (`#[repr(C)]`, riscv64).
pub const LEN: usize = 96;

impl Handoff {
    /// Parses the record from its bytes in guest RAM (little-endian, the
    /// guest's `#[repr(C)]` layout); `None` when `b` is shorter than [`LEN`].
    pub fn from_le_bytes(b: &[u8]) -> Option<Handoff> {
        let b: &[u8; LEN] = b.get(..LEN)?.try_into().ok()?;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[48..80]);
        let mut name = [0u8; 16];
        name.copy_from_slice(&b[80..96]);
        Some(Handoff {
            magic: u32_at(0),
            version: u16_at(4),
            node: u16_at(6),
            node_type: b[8],
            reset_cause: b[9],
            boot_count: u16_at(10),
            soft_reboot: u32_at(12),
            generation: u32_at(16),
            version_of_image: u32_at(20),
            load_addr: u64_at(24),
            size: u64_at(32),
            entry: u64_at(40),
            digest,
            name,
        })
    }

    /// Whether the boot ROM has filled the image fields in: it has handed
    /// (or is about to hand) an image off.
    pub fn names_an_image(&self) -> bool {
        self.is_valid() && self.size != 0
    }
}

// The record fits its page, whose alignment satisfies it.
const _: () = assert!(
    core::mem::size_of::<Handoff>() <= crate::memory::HANDOFF_SIZE as usize
        && crate::memory::HANDOFF_BASE.is_multiple_of(core::mem::align_of::<Handoff>() as u64)
);

/// Value of `soft_reboot` meaning "the app asked for this reboot".
pub const SOFT_REBOOT_REQUESTED: u32 = 0x5EB0_07ED;

// The layout `from_le_bytes` reads is the one the guest compiles (on every
// 64-bit little-endian target, riscv64 among them).
#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Handoff>() == LEN);
    assert!(offset_of!(Handoff, version) == 4);
    assert!(offset_of!(Handoff, node) == 6);
    assert!(offset_of!(Handoff, node_type) == 8);
    assert!(offset_of!(Handoff, reset_cause) == 9);
    assert!(offset_of!(Handoff, boot_count) == 10);
    assert!(offset_of!(Handoff, soft_reboot) == 12);
    assert!(offset_of!(Handoff, generation) == 16);
    assert!(offset_of!(Handoff, version_of_image) == 20);
    assert!(offset_of!(Handoff, load_addr) == 24);
    assert!(offset_of!(Handoff, size) == 32);
    assert!(offset_of!(Handoff, entry) == 40);
    assert!(offset_of!(Handoff, digest) == 48);
    assert!(offset_of!(Handoff, name) == 80);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_in_ram_parse_back_to_the_record() {
        let r = Handoff {
            magic: MAGIC,
            version: VERSION,
            node: 513,
            node_type: 3,
            reset_cause: 2,
            boot_count: 7,
            soft_reboot: SOFT_REBOOT_REQUESTED,
            generation: 0xA1B2_C3D4,
            version_of_image: 0x0102_0003,
            load_addr: 0x8010_0000,
            size: 0x1_2345,
            entry: 0x8010_0010,
            digest: core::array::from_fn(|i| i as u8),
            name: *b"drive\0\0\0\0\0\0\0\0\0\0\0",
        };
        // The record's bytes, as the guest's memory holds them.
        // SAFETY: `Handoff` is `repr(C)` plain data of LEN bytes with no
        // padding (the offsets above are contiguous).
        let bytes: [u8; LEN] = unsafe { core::mem::transmute(r) };
        let back = Handoff::from_le_bytes(&bytes).unwrap();
        assert_eq!(back, r);
        assert!(back.names_an_image());
        assert!(Handoff::from_le_bytes(&bytes[..LEN - 1]).is_none());
        let mut unfilled = r;
        unfilled.size = 0;
        assert!(!unfilled.names_an_image());
        assert!(!Handoff::zeroed().names_an_image());
    }
}
