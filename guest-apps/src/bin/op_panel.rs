//! An operator panel processor: the library's front-panel display.
#![no_std]
#![no_main]

use guest_apps::Personality;
use proto::NodeType;

/// Blinks the panel's ready light once a second.
struct OpPanel;

impl Personality for OpPanel {
    const NODE_TYPE: NodeType = NodeType::OpPanel;

    fn tick(&mut self, uptime_ms: u64) -> u8 {
        ((uptime_ms / 1000) % 2) as u8
    }
}

guest_apps::app!(OpPanel);
