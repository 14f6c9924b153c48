//! bootcast's wire protocol, shared by the boot ROM, the apps, the bus-bridge
//! and the master.
//!
//! Three layers, each with its own decoder that never panics:
//! - [`frame`]: a CAN FD-like bus frame (identifier, flags, 0–64 data bytes);
//! - [`link`]: how a frame crosses a byte stream (a UART or a socket): COBS
//!   with a CRC-32, delimited by a zero byte;
//! - [`msg`]: the bootcast messages carried in a frame's identifier and data;
//! - [`filter`]: acceptance filters a node sets on its port over the link;
//! - [`clock`]: the virtual-clock records between a node's QEMU plugin and
//!   the bridge.
//!
//! Nothing here allocates. Nothing else in the project defines wire formats.
#![no_std]
#![deny(missing_docs)]

pub mod clock;
pub mod crc;
pub mod filter;
pub mod frame;
pub mod link;
pub mod msg;

pub use frame::{Frame, FrameError};
pub use msg::{Message, MsgError, NodeType};
