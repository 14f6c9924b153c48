//! Bundles: every node type's image in one file, for `combined` broadcasts
//! (the seed's "one code image comprising a combination of the images").
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `BCBN` |
//! | 4 | format version u16 ([`BUNDLE_VERSION`]) |
//! | 6 | entry count u16 |
//! | 8 | total length u32 |
//! | 12 | reserved u32, zero |
//! | 16 + 16·i | entry i: node type u8, reserved [3], offset u32, length u32, reserved u32 |
//!
//! Each entry points at a whole image file (manifest ‖ payload) inside the
//! bundle. Entries are in offset order, do not overlap, lie after the
//! directory and inside the bundle, and name each type at most once.
//! Integers are little-endian.

use crate::manifest::MANIFEST_LEN;
use proto::NodeType;

/// Magic at offset 0.
pub const BUNDLE_MAGIC: [u8; 4] = *b"BCBN";
/// The bundle format this code reads and writes.
pub const BUNDLE_VERSION: u16 = 1;
/// Bytes of header before the directory.
pub const HEADER_LEN: usize = 16;
/// Bytes per directory entry.
pub const ENTRY_LEN: usize = 16;
/// Most entries a bundle holds (one per node type).
pub const MAX_ENTRIES: usize = NodeType::ALL.len();

/// One image's place in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    /// Node type of the image.
    pub node_type: NodeType,
    /// Offset of the image file in the bundle.
    pub offset: u32,
    /// Length of the image file.
    pub len: u32,
}

/// Why a bundle is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Shorter than its header, directory or stated length.
    Truncated,
    /// The magic is not `BCBN`.
    BadMagic,
    /// A format version this code does not read.
    UnsupportedFormat,
    /// The stated total length differs from the bytes given.
    LengthMismatch,
    /// No entries, or more than [`MAX_ENTRIES`].
    BadCount,
    /// Reserved fields are not zero.
    ReservedNotZero,
    /// An entry names an unknown node type.
    UnknownNodeType,
    /// Two entries name the same node type.
    DuplicateType,
    /// An entry is out of order, overlaps another or the directory, or
    /// runs past the end.
    BadExtent,
    /// An entry is too short to hold an image.
    EntryTooShort,
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BundleError::Truncated => "bundle truncated",
            BundleError::BadMagic => "bad magic (not a bootcast bundle)",
            BundleError::UnsupportedFormat => "unsupported bundle format version",
            BundleError::LengthMismatch => "bundle length field disagrees with the file",
            BundleError::BadCount => "bundle entry count is zero or too large",
            BundleError::ReservedNotZero => "reserved bundle fields are not zero",
            BundleError::UnknownNodeType => "bundle entry names an unknown node type",
            BundleError::DuplicateType => "two bundle entries for one node type",
            BundleError::BadExtent => "bundle entry out of order, overlapping, or past the end",
            BundleError::EntryTooShort => "bundle entry too short to hold an image",
        })
    }
}

impl core::error::Error for BundleError {}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A checked view of a bundle's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bundle {
    entries: [Option<BundleEntry>; MAX_ENTRIES],
    count: usize,
}

impl Bundle {
    /// Checks `bytes` as a bundle: header, directory and extents. The images
    /// inside are not parsed here. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let h = bytes.get(..HEADER_LEN).ok_or(BundleError::Truncated)?;
        if h[0..4] != BUNDLE_MAGIC {
            return Err(BundleError::BadMagic);
        }
        if le16(h, 4) != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedFormat);
        }
        let count = le16(h, 6) as usize;
        if count == 0 || count > MAX_ENTRIES {
            return Err(BundleError::BadCount);
        }
        if le32(h, 8) as usize != bytes.len() {
            return Err(if (le32(h, 8) as usize) > bytes.len() {
                BundleError::Truncated
            } else {
                BundleError::LengthMismatch
            });
        }
        if le32(h, 12) != 0 {
            return Err(BundleError::ReservedNotZero);
        }
        let dir_end = HEADER_LEN + count * ENTRY_LEN;
        let dir = bytes
            .get(HEADER_LEN..dir_end)
            .ok_or(BundleError::Truncated)?;
        let mut bundle = Bundle {
            entries: [None; MAX_ENTRIES],
            count,
        };
        let mut next_free = dir_end as u64;
        for i in 0..count {
            let e = &dir[i * ENTRY_LEN..(i + 1) * ENTRY_LEN];
            if e[1..4] != [0, 0, 0] || le32(e, 12) != 0 {
                return Err(BundleError::ReservedNotZero);
            }
            let node_type = NodeType::from_code(e[0]).ok_or(BundleError::UnknownNodeType)?;
            if bundle.entries[..i]
                .iter()
                .flatten()
                .any(|x| x.node_type == node_type)
            {
                return Err(BundleError::DuplicateType);
            }
            let (offset, len) = (le32(e, 4), le32(e, 8));
            if (len as usize) < MANIFEST_LEN {
                return Err(BundleError::EntryTooShort);
            }
            let end = offset as u64 + len as u64;
            if (offset as u64) < next_free || end > bytes.len() as u64 {
                return Err(BundleError::BadExtent);
            }
            next_free = end;
            bundle.entries[i] = Some(BundleEntry {
                node_type,
                offset,
                len,
            });
        }
        Ok(bundle)
    }

    /// The entries, in offset order.
    pub fn entries(&self) -> impl Iterator<Item = BundleEntry> + '_ {
        self.entries[..self.count].iter().flatten().copied()
    }

    /// The entry for `t`, if any.
    pub fn entry(&self, t: NodeType) -> Option<BundleEntry> {
        self.entries().find(|e| e.node_type == t)
    }
}

/// Lays image files out as a bundle, in the order given.
#[cfg(feature = "std")]
pub fn build(images: &[(NodeType, &[u8])]) -> Result<std::vec::Vec<u8>, BundleError> {
    if images.is_empty() || images.len() > MAX_ENTRIES {
        return Err(BundleError::BadCount);
    }
    let dir_end = HEADER_LEN + images.len() * ENTRY_LEN;
    let total: usize = dir_end + images.iter().map(|(_, b)| b.len()).sum::<usize>();
    let total32 = u32::try_from(total).map_err(|_| BundleError::BadExtent)?;
    let mut out = std::vec::Vec::with_capacity(total);
    out.extend_from_slice(&BUNDLE_MAGIC);
    out.extend_from_slice(&BUNDLE_VERSION.to_le_bytes());
    out.extend_from_slice(&(images.len() as u16).to_le_bytes());
    out.extend_from_slice(&total32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut at = dir_end as u32;
    for (t, bytes) in images {
        out.push(*t as u8);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        at += bytes.len() as u32;
    }
    for (_, bytes) in images {
        out.extend_from_slice(bytes);
    }
    // Our own output must satisfy our own parser (types unique, sizes sane).
    Bundle::parse(&out)?;
    Ok(out)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn sample() -> std::vec::Vec<u8> {
        let a = [1u8; MANIFEST_LEN + 10];
        let b = [2u8; MANIFEST_LEN + 3];
        build(&[(NodeType::Drive, &a), (NodeType::Xy, &b)]).unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let b = Bundle::parse(&bytes).unwrap();
        let e: std::vec::Vec<_> = b.entries().collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].node_type, NodeType::Drive);
        assert_eq!(e[0].offset as usize, HEADER_LEN + 2 * ENTRY_LEN);
        assert_eq!(
            &bytes[e[1].offset as usize..][..e[1].len as usize],
            &[2u8; MANIFEST_LEN + 3]
        );
        assert_eq!(b.entry(NodeType::Xy), Some(e[1]));
        assert_eq!(b.entry(NodeType::Comm), None);
    }

    #[test]
    fn every_defect_is_named() {
        let good = sample();
        let check = |edit: &dyn Fn(&mut std::vec::Vec<u8>), want: BundleError| {
            let mut b = good.clone();
            edit(&mut b);
            assert_eq!(Bundle::parse(&b), Err(want));
        };
        check(&|b| b.truncate(10), BundleError::Truncated);
        check(&|b| b.truncate(b.len() - 1), BundleError::Truncated);
        check(&|b| b.push(0), BundleError::LengthMismatch);
        check(&|b| b[0] = b'X', BundleError::BadMagic);
        check(&|b| b[4] = 9, BundleError::UnsupportedFormat);
        check(&|b| b[6] = 0, BundleError::BadCount);
        check(&|b| b[6] = 99, BundleError::BadCount);
        check(&|b| b[12] = 1, BundleError::ReservedNotZero);
        check(&|b| b[16] = 0, BundleError::UnknownNodeType);
        check(
            &|b| b[32] = NodeType::Drive as u8,
            BundleError::DuplicateType,
        );
        check(
            &|b| b[36..40].copy_from_slice(&20u32.to_le_bytes()),
            BundleError::BadExtent,
        );
        check(
            &|b| b[40..44].copy_from_slice(&10u32.to_le_bytes()),
            BundleError::EntryTooShort,
        );
        check(
            &|b| b[40..44].copy_from_slice(&100_000u32.to_le_bytes()),
            BundleError::BadExtent,
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let good = sample();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = good.clone();
            let at = (x % b.len() as u64) as usize;
            b[at] = (x >> 32) as u8;
            b.truncate(((x >> 40) as usize % (b.len() + 1)).max(at));
            let _ = Bundle::parse(&b);
        }
    }
}
