//! The runtime shared by every node app: the fully operational state, on
//! the node SDK (`node_sdk`, which C apps use too).
//!
//! An app starts at the image's first byte (the SDK's `_start`) with `a0`
//! pointing at the boot ROM's handoff record. It then sends `Heartbeat`s
//! carrying the digest the boot ROM measured, answers `Check` challenges
//! over its own loaded bytes, obeys `Reboot` by going back to the boot ROM,
//! and ignores every image on the bus: its port's acceptance filter keeps
//! image data from it, and the session frames it does see are only
//! counted. A running node is never disturbed by a broadcast.
#![no_std]

use node_sdk::{HEARTBEAT_MS, Node, NodeType};

/// What makes one node type's app its own.
pub trait Personality {
    /// The node type this image is built for; reported in every heartbeat.
    const NODE_TYPE: NodeType;
    /// Called once per heartbeat period; returns the app's status byte.
    fn tick(&mut self, uptime_ms: u64) -> u8;
}

/// Runs the app forever (until a `Reboot` sends it back to the boot ROM).
pub fn run<P: Personality>(mut app: P) -> ! {
    // Not started by the boot ROM, or no bus: nothing to report on.
    let Ok(mut node) = Node::init() else {
        node_sdk::halt()
    };
    node.report_as(P::NODE_TYPE);
    let mut next_beat = node.started();
    loop {
        // The filter is the SDK's alone: no frame is the app's.
        while node.poll().is_some() {}
        if node_sdk::now() >= next_beat {
            let status = app.tick(node.uptime_ms());
            node.heartbeat(status);
            next_beat += node_sdk::ms(HEARTBEAT_MS);
        }
        node.sleep_until(next_beat);
    }
}

/// Defines the app's entry point for a [`Personality`].
#[macro_export]
macro_rules! app {
    ($personality:expr) => {
        #[unsafe(no_mangle)]
        extern "C" fn app_main() -> ! {
            $crate::run($personality)
        }
    };
}
