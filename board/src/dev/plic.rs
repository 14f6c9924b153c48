//! The PLIC, routing one source to hart 0's machine-mode context.

use crate::memory::PLIC_BASE;

const CONTEXT_M_ENABLE: usize = 0x2000;
const CONTEXT_M_THRESHOLD: usize = 0x20_0000;
const CONTEXT_M_CLAIM: usize = 0x20_0004;

fn reg(offset: usize) -> *mut u32 {
    (PLIC_BASE as usize + offset) as *mut u32
}

/// Enables `irq` at priority 1 for hart 0 in machine mode, threshold 0.
pub fn enable(irq: u32) {
    let word = (irq / 32) as usize * 4;
    // SAFETY: these are the PLIC's priority, enable and threshold registers on
    // the virt board; 32-bit accesses to them only change routing.
    unsafe {
        reg(4 * irq as usize).write_volatile(1);
        let enables = reg(CONTEXT_M_ENABLE + word);
        enables.write_volatile(enables.read_volatile() | 1 << (irq % 32));
        reg(CONTEXT_M_THRESHOLD).write_volatile(0);
    }
}

/// Claims the highest pending source (0 if none) and completes it at once.
///
/// Call after servicing the device: a level source that is still asserted
/// pends again right after completion, so nothing is missed.
pub fn claim_and_complete() {
    // SAFETY: claim/complete register of hart 0's M context; reading claims,
    // writing the same id back completes.
    unsafe {
        let id = reg(CONTEXT_M_CLAIM).read_volatile();
        if id != 0 {
            reg(CONTEXT_M_CLAIM).write_volatile(id);
        }
    }
}
