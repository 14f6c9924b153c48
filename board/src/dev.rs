//! Drivers for the `virt` devices bootcast guests use: the 16550 UART, the
//! PLIC, the CLINT timer and the `sifive,test` device.
//!
//! Guests run in machine mode with `mstatus.MIE` clear and never take
//! interrupts as traps. They enable sources in `mie` and sleep in `wfi`, which
//! wakes on any enabled pending interrupt; then they service the device and
//! sleep again. No trap vector, no busy-polling.

pub mod clint;
pub mod cpu;
pub mod plic;
pub mod port;
pub mod uart;
