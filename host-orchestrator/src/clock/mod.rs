//! Time for the host's bus clients (the masters, the supervisor): the one
//! seam between their logic and the clock a run keeps.
//!
//! Their logic (hold-off windows, repair, the trackers) takes time as an
//! input, a [`Moment`]; their tasks read it, sleep and spawn through a
//! [`Clock`]. On the wall clock that is tokio's clock and runtime, as
//! before. On the virtual clock each client runs on an executor of its own
//! (`virt`), stepped through the bus's virtual time by a driver that
//! takes part in the bridge's synchronisation: the bridge is the only time
//! authority, and a client acts only at the times it hands out.

mod moment;
mod source;
mod virt;

pub use moment::Moment;
pub use source::{
    AbortOnDrop, Clock, ClockKind, Driving, Elapsed, Inbox, PortWriter, RunClock, Sleep, Task,
    TaskEnded, Ticker, VirtualClient,
};
