//! A communication processor: the library's link to its hosts.
#![no_std]
#![no_main]

use guest_apps::Personality;
use proto::NodeType;

/// Reports the host link as up once the node has run for a second.
struct Comm;

impl Personality for Comm {
    const NODE_TYPE: NodeType = NodeType::Comm;

    fn tick(&mut self, uptime_ms: u64) -> u8 {
        (uptime_ms >= 1000) as u8
    }
}

guest_apps::app!(Comm);
