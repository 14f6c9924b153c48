//! Strapping words: a node's identity, like resistors on a board.
//!
//! The orchestrator passes each word to QEMU as
//! `-device loader,addr=…,data=…,data-len=8`; QEMU writes them into the
//! strapping page at every reset. The boot ROM reads them and trusts nothing
//! else about who it is.

use crate::memory::STRAP_BASE;

/// Magic in the low half of word 0 ("BCS1" little-endian).
pub const MAGIC: u32 = u32::from_le_bytes(*b"BCS1");
/// Number of 8-byte words.
pub const WORDS: usize = 3;

/// A node's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strap {
    /// Node id (1..=`proto::msg::MAX_NODE_ID`).
    pub node: u16,
    /// Node type code.
    pub node_type: u8,
    /// Bus segment index, for diagnostics.
    pub segment: u8,
    /// Lowest image version the node accepts (like a fuse).
    pub min_version: u32,
    /// Seed for the node's retry jitter.
    pub seed: u32,
    /// Which device carries the bus.
    pub transport: Transport,
    /// Which clock the fleet runs on.
    pub clock: Clock,
}

/// The device a node's bus port is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Transport {
    /// The 16550 UART.
    #[default]
    Uart = 0,
    /// A virtio-console on virtio-mmio; the UART is then the debug console.
    Virtio = 1,
}

/// The clock a fleet runs on. On the virtual clock, frames on the link carry
/// their virtual times (`proto::link::CMD_AT`), and a node holds a received
/// frame until its delivery time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Clock {
    /// Every clock is the host's.
    #[default]
    Wall = 0,
    /// One virtual time base, with the bus bridge as its authority.
    Virtual = 1,
}

impl Strap {
    /// The words, in address order.
    pub fn to_words(&self) -> [u64; WORDS] {
        [
            MAGIC as u64,
            self.node as u64
                | (self.node_type as u64) << 16
                | (self.segment as u64) << 24
                | (self.transport as u64) << 32
                | (self.clock as u64) << 40,
            self.min_version as u64 | (self.seed as u64) << 32,
        ]
    }

    /// Parses words; `None` when the magic is missing or the id is zero.
    pub fn from_words(w: [u64; WORDS]) -> Option<Strap> {
        if w[0] as u32 != MAGIC {
            return None;
        }
        let s = Strap {
            node: w[1] as u16,
            node_type: (w[1] >> 16) as u8,
            segment: (w[1] >> 24) as u8,
            min_version: w[2] as u32,
            seed: (w[2] >> 32) as u32,
            transport: match (w[1] >> 32) as u8 {
                0 => Transport::Uart,
                1 => Transport::Virtio,
                _ => return None,
            },
            clock: match (w[1] >> 40) as u8 {
                0 => Clock::Wall,
                1 => Clock::Virtual,
                _ => return None,
            },
        };
        (s.node != 0).then_some(s)
    }

    /// The guest address of word `i`.
    pub fn word_addr(i: usize) -> u64 {
        STRAP_BASE + 8 * i as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let s = Strap {
            node: 513,
            node_type: 3,
            segment: 2,
            min_version: 0x10203,
            seed: 0xFEED,
            transport: Transport::Virtio,
            clock: Clock::Virtual,
        };
        assert_eq!(Strap::from_words(s.to_words()), Some(s));
        let wall = Strap {
            clock: Clock::Wall,
            ..s
        };
        assert_eq!(Strap::from_words(wall.to_words()), Some(wall));
        assert_eq!(Strap::from_words([0, 0, 0]), None);
        let mut zero_id = s.to_words();
        zero_id[1] &= !0xFFFF;
        assert_eq!(Strap::from_words(zero_id), None);
    }
}
