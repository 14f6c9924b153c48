//! bootcast's node SDK: what an app does to take part in the protocol once
//! the boot ROM has started it, for Rust apps (this crate) and C apps
//! (`libbootcast.a` and `include/bootcast.h`, built from this same code).
//!
//! # The entry contract
//!
//! What an app may assume when its first instruction runs, SDK or not:
//!
//! - **Where**: the boot ROM loaded the image's payload at its manifest's
//!   load address, inside the image region
//!   `[board::memory::IMAGE_BASE, IMAGE_END)` (`0x8010_0000` up to
//!   `0x81E0_0000`), checked its SHA-256 and signature, and jumped to its
//!   entry point. Apps linked with the generated script (`bootcast.ld`,
//!   [`board::linker`]) start at `_start`, the image's first byte.
//! - **Registers**: machine mode, hart 0 (the only one); `a0` holds the
//!   address of the boot ROM's handoff record (`HANDOFF_BASE`,
//!   [`board::handoff::Handoff`]); `sp`, `gp` and the rest are undefined.
//! - **Interrupts**: `mie` is zero and `mstatus.MIE` was never set; no trap
//!   vector is set up. The boot ROM left the bus device's source enabled
//!   at the PLIC and may have left the timer armed.
//! - **Memory**: the image region from the load address holds the loaded
//!   bytes, measured, which the app must never write (the challenge and the
//!   host's check read them); app RAM `[APP_RAM_BASE, APP_RAM_END)`
//!   (`0x8004_0000` up to the image region) is the app's for `.data`,
//!   `.bss`, stack and heap; the strap page (`STRAP_BASE`) and the handoff
//!   page (`HANDOFF_BASE`) are read-only to it, but for the record's
//!   `soft_reboot`; the boot ROM's RAM and the device tree's 2 MiB at the
//!   top of RAM are not the app's.
//! - **Devices**: the app owns the hart, the CLINT, the PLIC, the 16550 UART
//!   and the virtio-mmio slots. The bus port is the device the strap names
//!   (the UART, or a virtio-console with the UART as debug console); the
//!   SDK drives it, the PLIC and the timer once [`Node::init`] (or
//!   `bootcast_init`) ran. Until then the port keeps the boot ROM's filter,
//!   and an app that never reads it only loses frames.
//! - **Leaving**: jumping to the flash base (`FLASH_BASE`) restarts the boot
//!   ROM, which loads the node's image again ([`Node::reboot`] does that,
//!   marking the record so the next boot's reset cause is a soft reboot).
//!
//! # The protocol
//!
//! A node is verified by the host; heartbeats add liveness and the app's own
//! state. With the SDK an app sends a heartbeat every [`HEARTBEAT_MS`]
//! ([`Node::heartbeat`]) carrying the digest the boot ROM measured; the
//! SDK answers the supervisor's `Check` challenges over the loaded bytes,
//! counts the image sessions it ignores, and obeys `Reboot` (all in
//! [`Node::poll`], which hands every other frame to the app). The port's
//! acceptance filter always passes what the SDK needs; the app adds its
//! own entries ([`Node::set_filter`]).
//!
//! # Modules
//!
//! [`protocol`] is the logic without devices (tested on the host); `node`
//! runs it on the board; `rt` is `_start` and the panic handler; [`cabi`]
//! holds the C API's types, and `ffi` (feature `c-api`) its functions.
#![no_std]
#![deny(missing_docs)]

pub mod cabi;
#[cfg(all(target_arch = "riscv64", feature = "c-api"))]
mod ffi;
#[cfg(target_arch = "riscv64")]
mod node;
pub mod protocol;
#[cfg(target_arch = "riscv64")]
mod rt;

#[cfg(target_arch = "riscv64")]
pub use node::{InitError, Node, halt, ms, now, print};
pub use protocol::{HEARTBEAT_MS, MAX_APP_FILTER_ENTRIES};

pub use board::handoff::Handoff;
pub use board::strap::Strap;
pub use proto::Frame;
pub use proto::filter::FilterEntry;
pub use proto::msg::NodeType;
