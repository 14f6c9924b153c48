//! What subscribers hear: every frame that wins a bus.

use proto::Frame;

/// Bus events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BACKLOG: usize = 4096;

/// A frame that won the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusEvent {
    /// Increases by one per frame, across all segments.
    pub seq: u64,
    /// Bus time at the frame's end (intermission included), ns since the
    /// bridge started: wall time when paced, virtual time when unpaced.
    pub bus_time_ns: u64,
    /// Index of the sender's segment.
    pub segment: usize,
    /// Index of the sending port.
    pub port: usize,
    /// The frame.
    pub frame: Frame,
}
