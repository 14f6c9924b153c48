//! The master's hold-off window: how long to wait after a request so that
//! every node rebooting at about the same time is served by one broadcast.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// When a window closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Closes `hold_off` after the first request.
    Fixed,
    /// Closes `hold_off` after the most recent new requester, but never later
    /// than `max_wait` after the first request.
    Renew,
}

/// Why a window closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The policy's timer ran out.
    Timer,
    /// The `max_wait` cap was reached first.
    MaxWait,
}

/// A checked hold-off configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldOff {
    /// The policy.
    pub policy: Policy,
    /// T: the basic wait.
    pub hold_off: Duration,
    /// The cap from the first request.
    pub max_wait: Duration,
}

impl HoldOff {
    /// Checks the values: times are positive and `max_wait` is not below T.
    pub fn new(policy: Policy, hold_off_ms: i64, max_wait_ms: i64) -> Result<HoldOff> {
        if hold_off_ms <= 0 {
            bail!("master.hold_off_ms: must be positive, got {hold_off_ms}");
        }
        if max_wait_ms <= 0 {
            bail!("master.max_wait_ms: must be positive, got {max_wait_ms}");
        }
        if max_wait_ms < hold_off_ms {
            bail!("master.max_wait_ms: {max_wait_ms} is below master.hold_off_ms {hold_off_ms}");
        }
        Ok(HoldOff {
            policy,
            hold_off: Duration::from_millis(hold_off_ms as u64),
            max_wait: Duration::from_millis(max_wait_ms as u64),
        })
    }

    /// When a window with these request times closes, and why.
    /// `last_new` is the time of the most recent request from a node not yet
    /// in the window (retries do not renew it).
    pub fn deadline(&self, first: Instant, last_new: Instant) -> (Instant, CloseReason) {
        let timer = match self.policy {
            Policy::Fixed => first + self.hold_off,
            Policy::Renew => last_new + self.hold_off,
        };
        let cap = first + self.max_wait;
        if timer <= cap {
            (timer, CloseReason::Timer)
        } else {
            (cap, CloseReason::MaxWait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_field() {
        let e = HoldOff::new(Policy::Fixed, 0, 10).unwrap_err().to_string();
        assert!(e.contains("master.hold_off_ms"), "{e}");
        let e = HoldOff::new(Policy::Fixed, 10, -1).unwrap_err().to_string();
        assert!(e.contains("master.max_wait_ms"), "{e}");
        let e = HoldOff::new(Policy::Renew, 100, 50)
            .unwrap_err()
            .to_string();
        assert!(e.contains("below"), "{e}");
    }

    #[test]
    fn renew_is_capped() {
        let h = HoldOff::new(Policy::Renew, 1000, 2500).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            h.deadline(t0, t0 + Duration::from_millis(800)).1,
            CloseReason::Timer
        );
        let (at, why) = h.deadline(t0, t0 + Duration::from_millis(2000));
        assert_eq!(
            (at - t0, why),
            (Duration::from_millis(2500), CloseReason::MaxWait)
        );
    }
}
