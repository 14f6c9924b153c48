//! The image manifest: a fixed 160-byte header in front of every payload.
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | magic `BCIM` | |
//! | 4 | format version u16 | [`FORMAT_VERSION`] |
//! | 6 | manifest length u16 | [`MANIFEST_LEN`] |
//! | 8 | node type u8 | `proto::NodeType` code |
//! | 9 | flags u8 | reserved, zero |
//! | 10 | reserved u16 | zero |
//! | 12 | version u32 | `major << 24 \| minor << 16 \| patch` |
//! | 16 | name `[16]` | UTF-8, zero-padded |
//! | 32 | load address u64 | |
//! | 40 | entry u64 | |
//! | 48 | payload size u32 | |
//! | 52 | memory size u32 | payload plus zero-initialised memory |
//! | 56 | SHA-256 of payload `[32]` | |
//! | 88 | key id `[8]` | first 8 bytes of SHA-256 of the signer's public key |
//! | 96 | signature `[64]` | Ed25519 over bytes 0..96; all zero when unsigned |
//!
//! All integers are little-endian. See [`crate::signature`] for the check.

use board::memory;
use proto::NodeType;

/// Magic at offset 0.
pub const MAGIC: [u8; 4] = *b"BCIM";
/// The manifest format this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes in a manifest.
pub const MANIFEST_LEN: usize = 160;
/// Bytes of image name.
pub const NAME_LEN: usize = 16;
/// Offset of the signature field; everything before it is signed.
pub const SIGNATURE_OFFSET: usize = 96;

/// A parsed manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Node type the image is for.
    pub node_type: NodeType,
    /// Image version, `major << 24 | minor << 16 | patch`.
    pub version: u32,
    /// Image name, zero-padded.
    pub name: [u8; NAME_LEN],
    /// Where the payload's first byte goes.
    pub load_addr: u64,
    /// Where execution starts.
    pub entry: u64,
    /// Payload bytes.
    pub size: u32,
    /// Memory the image occupies from `load_addr`, zero-initialised part included.
    pub mem_size: u32,
    /// SHA-256 of the payload.
    pub sha256: [u8; 32],
    /// Key id of the signer.
    pub key_id: [u8; 8],
    /// Ed25519 signature over bytes `0..SIGNATURE_OFFSET`.
    pub signature: [u8; 64],
}

/// Why a manifest is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ManifestError {
    /// Fewer than [`MANIFEST_LEN`] bytes.
    Truncated = 1,
    /// The magic is not `BCIM`.
    BadMagic = 2,
    /// A format version this code does not read.
    UnsupportedFormat = 3,
    /// The length field is not [`MANIFEST_LEN`].
    BadLength = 4,
    /// The node type code is unknown.
    UnknownNodeType = 5,
    /// Reserved fields are not zero.
    ReservedNotZero = 6,
    /// The image (memory size) does not fit the image region.
    OutOfRegion = 7,
    /// The entry point is outside the payload.
    EntryOutsidePayload = 8,
    /// The memory size is smaller than the payload.
    MemSizeTooSmall = 9,
}

impl ManifestError {
    /// A short description.
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestError::Truncated => "manifest truncated",
            ManifestError::BadMagic => "bad magic (not a bootcast image)",
            ManifestError::UnsupportedFormat => "unsupported manifest format version",
            ManifestError::BadLength => "bad manifest length field",
            ManifestError::UnknownNodeType => "unknown node type",
            ManifestError::ReservedNotZero => "reserved manifest fields are not zero",
            ManifestError::OutOfRegion => "image does not fit the image region",
            ManifestError::EntryOutsidePayload => "entry point outside the payload",
            ManifestError::MemSizeTooSmall => "memory size smaller than payload",
        }
    }
}

impl core::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for ManifestError {}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Manifest {
    /// Parses and checks the first [`MANIFEST_LEN`] bytes of `bytes`,
    /// including that the image fits the image region. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let b = bytes.get(..MANIFEST_LEN).ok_or(ManifestError::Truncated)?;
        if b[0..4] != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        if le_u16(b, 4) != FORMAT_VERSION {
            return Err(ManifestError::UnsupportedFormat);
        }
        if le_u16(b, 6) as usize != MANIFEST_LEN {
            return Err(ManifestError::BadLength);
        }
        let node_type = NodeType::from_code(b[8]).ok_or(ManifestError::UnknownNodeType)?;
        if b[9] != 0 || le_u16(b, 10) != 0 {
            return Err(ManifestError::ReservedNotZero);
        }
        let mut m = Manifest {
            node_type,
            version: le_u32(b, 12),
            name: [0; NAME_LEN],
            load_addr: le_u64(b, 32),
            entry: le_u64(b, 40),
            size: le_u32(b, 48),
            mem_size: le_u32(b, 52),
            sha256: [0; 32],
            key_id: [0; 8],
            signature: [0; 64],
        };
        m.name.copy_from_slice(&b[16..32]);
        m.sha256.copy_from_slice(&b[56..88]);
        m.key_id.copy_from_slice(&b[88..96]);
        m.signature.copy_from_slice(&b[96..160]);
        m.check_placement()?;
        Ok(m)
    }

    /// Checks the image against the memory map: it fits the image region and
    /// its entry point lies in the payload.
    pub fn check_placement(&self) -> Result<(), ManifestError> {
        if self.mem_size < self.size {
            return Err(ManifestError::MemSizeTooSmall);
        }
        if !memory::in_image_region(self.load_addr, self.mem_size as u64) {
            return Err(ManifestError::OutOfRegion);
        }
        if self.entry < self.load_addr || self.entry >= self.load_addr + self.size as u64 {
            return Err(ManifestError::EntryOutsidePayload);
        }
        Ok(())
    }

    /// Encodes the manifest.
    pub fn to_bytes(&self) -> [u8; MANIFEST_LEN] {
        let mut b = [0u8; MANIFEST_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&(MANIFEST_LEN as u16).to_le_bytes());
        b[8] = self.node_type as u8;
        b[12..16].copy_from_slice(&self.version.to_le_bytes());
        b[16..32].copy_from_slice(&self.name);
        b[32..40].copy_from_slice(&self.load_addr.to_le_bytes());
        b[40..48].copy_from_slice(&self.entry.to_le_bytes());
        b[48..52].copy_from_slice(&self.size.to_le_bytes());
        b[52..56].copy_from_slice(&self.mem_size.to_le_bytes());
        b[56..88].copy_from_slice(&self.sha256);
        b[88..96].copy_from_slice(&self.key_id);
        b[96..160].copy_from_slice(&self.signature);
        b
    }

    /// Whether the signature field is set (not all zero).
    pub fn is_signed(&self) -> bool {
        self.signature.iter().any(|&b| b != 0)
    }

    /// The name without its zero padding (invalid UTF-8 yields `None`).
    pub fn name_str(&self) -> Option<&str> {
        let end = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.name[..end]).ok()
    }
}

/// Packs a version triple.
pub const fn pack_version(major: u8, minor: u8, patch: u16) -> u32 {
    (major as u32) << 24 | (minor as u32) << 16 | patch as u32
}

/// Splits a packed version into (major, minor, patch).
pub const fn unpack_version(v: u32) -> (u8, u8, u16) {
    ((v >> 24) as u8, (v >> 16) as u8, v as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut name = [0u8; NAME_LEN];
        name[..5].copy_from_slice(b"drive");
        Manifest {
            node_type: NodeType::Drive,
            version: pack_version(1, 2, 3),
            name,
            load_addr: memory::IMAGE_BASE,
            entry: memory::IMAGE_BASE,
            size: 4096,
            mem_size: 8192,
            sha256: [7; 32],
            key_id: [0; 8],
            signature: [0; 64],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes()), Ok(m));
        assert_eq!(m.name_str(), Some("drive"));
        assert_eq!(unpack_version(m.version), (1, 2, 3));
    }

    #[test]
    fn each_field_is_checked() {
        let good = sample().to_bytes();
        let check = |edit: &dyn Fn(&mut [u8; MANIFEST_LEN]), want: ManifestError| {
            let mut b = good;
            edit(&mut b);
            assert_eq!(Manifest::parse(&b), Err(want));
        };
        assert_eq!(
            Manifest::parse(&good[..MANIFEST_LEN - 1]),
            Err(ManifestError::Truncated)
        );
        check(&|b| b[0] = b'X', ManifestError::BadMagic);
        check(&|b| b[4] = 2, ManifestError::UnsupportedFormat);
        check(&|b| b[6] = 0, ManifestError::BadLength);
        check(&|b| b[8] = 0, ManifestError::UnknownNodeType);
        check(&|b| b[9] = 1, ManifestError::ReservedNotZero);
        check(
            &|b| b[32..40].copy_from_slice(&0x8000_0000u64.to_le_bytes()),
            ManifestError::OutOfRegion,
        );
        check(
            &|b| b[52..56].copy_from_slice(&u32::MAX.to_le_bytes()),
            ManifestError::OutOfRegion,
        );
        check(
            &|b| b[52..56].copy_from_slice(&1u32.to_le_bytes()),
            ManifestError::MemSizeTooSmall,
        );
        check(
            &|b| b[40..48].copy_from_slice(&(memory::IMAGE_BASE + 4096).to_le_bytes()),
            ManifestError::EntryOutsidePayload,
        );
    }
}
