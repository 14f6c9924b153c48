//! bootcast's emulated multi-drop CAN FD bus.
//!
//! Each port is one drop on the bus: a unix socket the bridge listens on.
//! A QEMU node's UART connects to it as a chardev socket client
//! (`-chardev socket,path=P,server=off,reconnect=1`); the master, or any
//! tool, connects the same way. Everything on a port is link-codec framed
//! (`proto::link`: COBS + CRC-32, zero-delimited), both ways.
//!
//! Segments joined by links that are up form one arbitration domain, a
//! shared medium. Every port has a TX FIFO; when the bus is free, the head
//! frame with the lowest arbitration key wins and goes to every other
//! connected port of the domain, never back to its sender. Bus time comes
//! from the real frame format ([`timing`]). *Paced*, a frame holds the bus
//! for its real duration; *unpaced*, the bus runs as fast as receivers take
//! frames and bus time is virtual.
//!
//! Faults (loss, corruption, delay, link down, babbling, link cuts) are
//! seeded and set at start ([`FaultConfig`]) or at run time through
//! [`BridgeControl`] or the JSON-lines control socket. Every frame that
//! wins a bus can be captured to pcap and candump files
//! ([`CaptureConfig`]). External tools join through a socketcand-compatible
//! TCP server ([`SocketcandConfig`]).
//!
//! # Attaching a client from another process
//!
//! Connect a `SOCK_STREAM` unix socket to the port's path (the bridge is
//! the listener; one client per port, a new one replaces the old). Send
//! frames as `proto::link::encode` writes them and feed every byte received
//! to a `proto::link::Decoder`. Input the decoder rejects is dropped and
//! counted per port by `LinkError` kind; it never reaches the bus. A client
//! that sends faster than the bus carries is slowed down: the bridge stops
//! reading its socket while its TX FIFO is full. A client that reads slower
//! than the bus delivers loses frames to overruns (counted), after holding
//! an unpaced bus for at most the stall timeout.
//!
//! Task shape: one listener task per port; per connection one reader task
//! and one writer task; one arbiter task for every arbitration domain (so
//! that cutting and restoring links regroups ports without handing state
//! between tasks), a thin loop around the bus state machine, which does
//! no I/O and reads no clock; a socketcand task and a control task if
//! configured; a capture thread. Readers feed the arbiter over an `mpsc`;
//! the arbiter feeds each port's bounded receive queue, which its writer
//! drains. Shutdown goes out on a `watch` channel. [`client`] is the other
//! end of a port, for tools and tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bus_bridge::BridgeError> {
//! use bus_bridge::{BridgeConfig, PortConfig};
//! let bridge = bus_bridge::start(BridgeConfig {
//!     segments: vec!["base".into()],
//!     ports: vec![
//!         PortConfig::new("master", "base", "/tmp/bc/master.sock"),
//!         PortConfig::new("node1", "base", "/tmp/bc/node1.sock"),
//!     ],
//!     ..BridgeConfig::default()
//! })
//! .await?;
//! let mut events = bridge.subscribe();
//! // ... connect clients, run a storm, read `events` ...
//! let stats = bridge.shutdown().await;
//! # let _ = (events.try_recv(), stats);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod arbiter;
mod bridge;
mod bus;
pub mod capture;
pub mod client;
mod clock;
mod config;
mod control;
mod error;
mod event;
pub mod faults;
mod ids;
mod port;
mod rxqueue;
mod shutdown;
mod socketcand;
mod stats;
// Driven by the arbiter on the virtual clock (being wired).
pub mod timing;
#[allow(dead_code)]
mod vclock;

pub use bridge::{Bridge, TimeReader, start};
pub use bus::Cause as DropCause;
pub use capture::{CaptureConfig, CaptureStatus};
pub use config::{
    BridgeConfig, BusClock, FdFormat, LinkConfig, MAX_SOCKET_PATH, MAX_SOCKETCAND_CLIENTS,
    PortClock, PortConfig, SocketcandConfig, Topology, VirtualClock, socketcand_port_name,
};
pub use control::{BridgeControl, ControlError, LinkStatus, TopologyStatus};
pub use error::BridgeError;
pub use event::{BusEvent, EVENT_BACKLOG};
pub use faults::{Babble, Fault, FaultConfig, FaultEntry, FaultKind, IdMatch};
pub use stats::{BusStats, LinkStats, PortStats, SegmentStats, SocketcandStatus, Totals};
pub use timing::{BitTiming, FrameBits, UnknownPreset};
