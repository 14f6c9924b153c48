//! The accessor's XY processor: positions the gripper.
#![no_std]
#![no_main]

use guest_apps::Personality;
use proto::NodeType;

/// Moves the gripper around a 16 × 16 grid, one step per tick.
struct Xy {
    x: u8,
    y: u8,
}

impl Personality for Xy {
    const NODE_TYPE: NodeType = NodeType::Xy;

    fn tick(&mut self, _uptime_ms: u64) -> u8 {
        self.x = (self.x + 1) % 16;
        if self.x == 0 {
            self.y = (self.y + 1) % 16;
        }
        self.y << 4 | self.x
    }
}

guest_apps::app!(Xy { x: 0, y: 0 });
