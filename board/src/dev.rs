//! Drivers for the `virt` devices bootcast guests use: the 16550 UART, a
//! virtio-console, the PLIC, the CLINT timer and the `sifive,test` device.
//!
//! Guests run in machine mode with `mstatus.MIE` clear and never take
//! interrupts as traps. They enable sources in `mie` and sleep in `wfi`, which
//! wakes on any enabled pending interrupt; then they service the device and
//! sleep again. No trap vector, no busy-polling.

pub mod clint;
pub mod console;
pub mod cpu;
pub mod plic;
pub mod port;
pub mod uart;
pub mod virtio;
mod virtq;

/// This node's strapping words, as QEMU's loader wrote them at reset.
pub fn read_strap() -> Option<crate::strap::Strap> {
    use crate::strap::{Strap, WORDS};
    let mut words = [0u64; WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        // SAFETY: the strapping page is RAM reserved by the memory map; QEMU's
        // loader fills it before the first instruction runs.
        *w = unsafe { (Strap::word_addr(i) as *const u64).read_volatile() };
    }
    Strap::from_words(words)
}

/// The handoff record, the first time; `None` after. The boot ROM fills it
/// in, and the app it starts reads it: one program at a time, and only one
/// reference to it in each.
pub fn take_handoff() -> Option<&'static mut crate::handoff::Handoff> {
    use core::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: the memory map reserves the aligned handoff page in RAM for
    // this record and nothing else; it holds only integers, so any bytes
    // there are a valid `Handoff`; the flag makes this the only reference.
    Some(unsafe { &mut *(crate::memory::HANDOFF_BASE as usize as *mut crate::handoff::Handoff) })
}
