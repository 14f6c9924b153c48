//! bootcast's host side.
//!
//! - [`master`]: the master source (hold-off windows, broadcasts);
//! - [`supervisor`]: watches the bus and verifies nodes against the build;
//! - [`qemu`]: node processes;
//! - [`testbed`]: all of the above plus the bus bridge, started and ended together;
//! - [`clock`]: the time the host's bus clients keep (the host's, or the
//!   bus's virtual time);
//! - [`fleet`], [`store`], [`report`]: inputs and outputs.

pub mod bench;
pub mod child;
pub mod clock;
pub mod exit;
pub mod fleet;
pub mod holdoff;
pub mod live;
pub mod master;
pub mod outputs;
pub mod qemu;
pub mod report;
pub mod rundir;
pub mod seeds;
pub mod store;
pub mod storm;
pub mod supervisor;
pub mod testbed;
