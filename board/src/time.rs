//! `mtime` ticks and milliseconds, for code that computes deadlines without
//! touching the timer (the boot ROM's state machine runs in host tests too).

use crate::memory::MTIME_HZ;

/// Ticks in `ms` milliseconds.
pub const fn ms(ms: u64) -> u64 {
    ms * (MTIME_HZ / 1000)
}

/// Milliseconds in `ticks`.
pub const fn to_ms(ticks: u64) -> u64 {
    ticks / (MTIME_HZ / 1000)
}
