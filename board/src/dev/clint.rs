//! The CLINT's machine timer.

use crate::memory::CLINT_BASE;
pub use crate::time::{ms, to_ms};

const MTIMECMP_HART0: usize = 0x4000;
const MTIME: usize = 0xBFF8;

/// Current `mtime` ticks.
pub fn now() -> u64 {
    // SAFETY: `mtime` is a 64-bit read-only counter of the CLINT on the virt
    // board; an aligned 64-bit read is atomic on rv64.
    unsafe { ((CLINT_BASE as usize + MTIME) as *const u64).read_volatile() }
}

/// Arms the timer interrupt for `deadline` (ticks); `u64::MAX` disarms it.
pub fn set_deadline(deadline: u64) {
    // SAFETY: hart 0's `mtimecmp` register; writing it only moves the timer.
    unsafe { ((CLINT_BASE as usize + MTIMECMP_HART0) as *mut u64).write_volatile(deadline) }
}
