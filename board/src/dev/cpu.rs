//! Hart control: interrupt enables, sleeping, and leaving to other code.

const MIE_MTIE: usize = 1 << 7;
const MIE_MEIE: usize = 1 << 11;

/// Enables the timer and external interrupts in `mie`, with `mstatus.MIE`
/// cleared: interrupts wake `wfi` but never trap.
pub fn enable_wakeups() {
    // SAFETY: CSR writes in machine mode; clearing mstatus.MIE first means no
    // trap can be taken, so no vector is needed.
    unsafe {
        core::arch::asm!(
            "csrci mstatus, 8",
            "csrw mie, {bits}",
            bits = in(reg) MIE_MTIE | MIE_MEIE,
        );
    }
}

/// Disables every interrupt source in `mie`.
pub fn disable_wakeups() {
    // SAFETY: machine-mode CSR write; it only masks interrupts.
    unsafe { core::arch::asm!("csrw mie, zero") }
}

const MIP_MEIP: usize = 1 << 11;

/// Whether an external interrupt (from the PLIC) is pending.
pub fn external_pending() -> bool {
    let mip: usize;
    // SAFETY: reading `mip` in machine mode has no side effect.
    unsafe { core::arch::asm!("csrr {0}, mip", out(reg) mip) };
    mip & MIP_MEIP != 0
}

/// Sleeps until an enabled interrupt is pending.
///
/// Not at all if one is pending already (`wfi` would return at once): then
/// every `wfi` executed is a real sleep, which is what the virtual clock's
/// plugin takes it for.
pub fn wait_for_interrupt() {
    let (mip, mie): (usize, usize);
    // SAFETY: reading `mip` and `mie` in machine mode has no side effect.
    unsafe { core::arch::asm!("csrr {0}, mip", "csrr {1}, mie", out(reg) mip, out(reg) mie) };
    if mip & mie != 0 {
        return;
    }
    // SAFETY: `wfi` only stalls the hart; with mstatus.MIE clear it resumes at
    // the next instruction.
    unsafe { core::arch::asm!("wfi") }
}

/// Executes the sync hint ([`proto::clock::SYNC_HINT`]): on the virtual
/// clock, after a frame was handed to the device, so that the frame's time
/// on the bus is this point of the node's clock, whatever the host.
pub fn clock_sync_hint() {
    // SAFETY: a HINT: it writes only `x0`, which stays zero.
    unsafe { core::arch::asm!(".word {hint}", hint = const proto::clock::SYNC_HINT) }
}

/// Stops for good: sleeps forever with every source masked, and no timer
/// armed (on the virtual clock, the fleet's time then passes it by).
pub fn halt() -> ! {
    disable_wakeups();
    super::clint::set_deadline(u64::MAX);
    loop {
        wait_for_interrupt();
    }
}

/// Makes instruction fetch see bytes just written to memory.
pub fn sync_instruction_stream() {
    // SAFETY: `fence.i` orders instruction fetches after prior stores; it has
    // no other effect.
    unsafe { core::arch::asm!("fence.i") }
}

/// Resets the whole machine through the `sifive,test` device.
pub fn reset_machine() -> ! {
    // SAFETY: writing 0x7777 to the virt board's test device resets the
    // machine; nothing runs after it.
    unsafe { (crate::memory::TEST_BASE as usize as *mut u32).write_volatile(0x7777) };
    halt()
}
