//! The accessor's work processor: drives the robot between shelves and drives.
#![no_std]
#![no_main]

use guest_apps::Personality;
use proto::NodeType;

/// The accessor shuttles along a row of 16 storage slots.
struct Accessor {
    slot: u8,
    forward: bool,
}

impl Personality for Accessor {
    const NODE_TYPE: NodeType = NodeType::Accessor;

    fn tick(&mut self, _uptime_ms: u64) -> u8 {
        match (self.forward, self.slot) {
            (true, 15) => self.forward = false,
            (false, 0) => self.forward = true,
            (true, _) => self.slot += 1,
            (false, _) => self.slot -= 1,
        }
        self.slot
    }
}

guest_apps::app!(Accessor {
    slot: 0,
    forward: true
});
