//! The master's settings, checked: what `fleet` files and the backup
//! master's `--config` turn into.

use super::scheduler::Mode;
use super::session::Repair;
use crate::holdoff::HoldOff;
use bus_bridge::BitTiming;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The master's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MasterConfig {
    /// The hold-off window.
    pub hold_off: HoldOff,
    /// The broadcast mode.
    pub mode: Mode,
    /// Whether a node asking while its type's session runs joins it (and
    /// gets what it missed in repair) rather than waiting for a new window.
    pub late_join: bool,
    /// NACK-driven repair.
    pub repair: Repair,
    /// A backup master takes over after the primary is silent this long.
    pub takeover_after: Duration,
    /// Whether the testbed runs a backup master (a separate process).
    pub backup: bool,
    /// The bus's bit rates, to account each session's bus time.
    pub bus_timing: BitTiming,
}

impl MasterConfig {
    /// Defaults around `hold_off`.
    pub fn new(hold_off: HoldOff) -> MasterConfig {
        MasterConfig {
            hold_off,
            mode: Mode::Selected,
            late_join: true,
            repair: Repair {
                wait: Duration::from_millis(400),
                stall: Duration::from_millis(2000),
                budget: Duration::from_secs(30),
                max_rounds: None,
            },
            takeover_after: Duration::from_millis(1000),
            backup: false,
            bus_timing: BitTiming::Fd1m5m,
        }
    }
}
