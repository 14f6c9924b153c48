//! The QEMU riscv64 `virt` board as bootcast uses it.
//!
//! The memory map, the strapping words and the handoff record are plain data,
//! shared by the boot ROM, the apps (through their linker scripts, generated
//! from [`memory`] by build scripts), the image builder (which checks the
//! same map again) and the orchestrator (which writes the strapping words).
//! [`take`] lends a static's `&mut` once; [`time`] converts timer ticks.
//! The device drivers exist only when built for riscv64; the linker
//! script generator only with the `linker` feature (for build scripts).
#![no_std]
#![deny(missing_docs)]

pub mod handoff;
#[cfg(feature = "linker")]
pub mod linker;
pub mod memory;
pub mod strap;
pub mod take;
pub mod time;

#[cfg(target_arch = "riscv64")]
pub mod dev;
#[cfg(any(test, target_arch = "riscv64"))]
mod fifo;
