//! A data storage drive's processor: loads, reads and unloads cartridges.
#![no_std]
#![no_main]

use guest_apps::Personality;
use proto::NodeType;

/// The drive's mechanism cycle: empty → loading → reading → unloading.
struct Drive {
    phase: u8,
}

impl Personality for Drive {
    const NODE_TYPE: NodeType = NodeType::Drive;

    fn tick(&mut self, _uptime_ms: u64) -> u8 {
        self.phase = (self.phase + 1) % 4;
        self.phase
    }
}

guest_apps::app!(Drive { phase: 0 });
