//! Acceptance filters: which frames a port's controller hands to its node.
//!
//! Like a CAN controller's ID filters, they spare a node's CPU the frames it
//! has no use for: a boot ROM wants the master's frames, not other nodes'
//! heartbeats. A node sets its filter over the link (a control record, see
//! [`crate::link`]); the bridge applies it when it delivers frames. A port
//! that never sets one receives everything.

use crate::frame::Frame;

/// Most entries a filter holds.
pub const MAX_ENTRIES: usize = 8;

/// One entry: a frame matches when its format (standard or extended) is
/// `extended` and `frame.id & mask == id & mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterEntry {
    /// Identifier bits to compare.
    pub id: u32,
    /// Which bits matter.
    pub mask: u32,
    /// Whether the entry matches extended (29-bit) frames.
    pub extended: bool,
}

/// A set of entries; a frame passes if any entry matches. No entries means
/// no filtering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptanceFilter {
    entries: [FilterEntry; MAX_ENTRIES],
    count: u8,
}

impl Default for AcceptanceFilter {
    fn default() -> Self {
        Self::accept_all()
    }
}

impl AcceptanceFilter {
    /// A filter that passes every frame.
    pub const fn accept_all() -> AcceptanceFilter {
        AcceptanceFilter {
            entries: [FilterEntry {
                id: 0,
                mask: 0,
                extended: false,
            }; MAX_ENTRIES],
            count: 0,
        }
    }

    /// A filter of `entries`; `None` if there are more than [`MAX_ENTRIES`].
    pub fn new(entries: &[FilterEntry]) -> Option<AcceptanceFilter> {
        if entries.len() > MAX_ENTRIES {
            return None;
        }
        let mut f = AcceptanceFilter::accept_all();
        f.entries[..entries.len()].copy_from_slice(entries);
        f.count = entries.len() as u8;
        Some(f)
    }

    /// The entries in use.
    pub fn entries(&self) -> &[FilterEntry] {
        &self.entries[..self.count as usize]
    }

    /// Whether `frame` passes.
    pub fn accepts(&self, frame: &Frame) -> bool {
        self.count == 0
            || self
                .entries()
                .iter()
                .any(|e| e.extended == frame.is_extended() && (frame.id() ^ e.id) & e.mask == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FLAG_EXTENDED;

    #[test]
    fn matching() {
        let kind = |k: u32| FilterEntry {
            id: k << 16,
            mask: 0x1FFF_0000,
            extended: true,
        };
        let f = AcceptanceFilter::new(&[kind(0x10), kind(0xF0)]).unwrap();
        let ext = |id: u32| Frame::new(id, FLAG_EXTENDED, &[]).unwrap();
        assert!(f.accepts(&ext(0x10 << 16 | 0xFFF0)));
        assert!(f.accepts(&ext(0xF0 << 16 | 7)));
        assert!(!f.accepts(&ext(0x60 << 16 | 7)));
        // A standard frame never matches an extended entry.
        assert!(!f.accepts(&Frame::new(0x10, 0, &[]).unwrap()));
        assert!(AcceptanceFilter::accept_all().accepts(&ext(0x60 << 16)));
        assert!(AcceptanceFilter::new(&[kind(1); MAX_ENTRIES + 1]).is_none());
    }
}
