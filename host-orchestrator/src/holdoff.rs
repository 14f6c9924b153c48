//! The master's hold-off window: how long to wait after a request so that
//! every node rebooting at about the same time is served by one broadcast.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::ops::Add;
use std::time::Duration;

/// When a window closes. Every policy is capped by `max_wait` from the
/// first request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Closes T after the first request.
    Fixed,
    /// Closes T after the most recent new requester.
    Renew,
    /// Like `renew`, but the k-th renewal waits only
    /// `max(floor, T − k × shrink_step)`: once a burst of reboots is under
    /// way, stragglers arrive close together, so the wait can tighten.
    Shrink,
    /// Closes as soon as `min_requests` distinct nodes have asked (by
    /// default the whole fleet), else T after the first request.
    Quorum,
}

/// Why a window closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The policy's timer ran out.
    Timer,
    /// Enough nodes asked (`quorum`).
    Quorum,
    /// The `max_wait` cap was reached first.
    MaxWait,
}

/// The hold-off settings as written in a fleet file (`[master]`), before
/// they are checked. Times are milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldOffSettings {
    /// The policy.
    pub policy: Option<Policy>,
    /// T.
    pub hold_off_ms: Option<i64>,
    /// The cap from the first request.
    pub max_wait_ms: Option<i64>,
    /// `shrink`: how much shorter each renewal is.
    pub shrink_step_ms: Option<i64>,
    /// `shrink`: the shortest renewal.
    pub floor_ms: Option<i64>,
    /// `quorum`: distinct requesters that close the window.
    pub min_requests: Option<i64>,
}

/// A checked hold-off configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldOff {
    /// The policy.
    pub policy: Policy,
    /// T: the basic wait.
    pub hold_off: Duration,
    /// The cap from the first request.
    pub max_wait: Duration,
    /// `shrink`: the step.
    pub shrink_step: Duration,
    /// `shrink`: the floor.
    pub floor: Duration,
    /// `quorum`: requesters that close the window.
    pub min_requests: usize,
}

/// What a window's deadline depends on, at times of type `T` (any clock:
/// the policy only adds durations and compares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowClock<T> {
    /// The first request.
    pub first: T,
    /// The most recent request from a node new to the window.
    pub last_new: T,
    /// New requesters after the first.
    pub renewals: u32,
    /// Distinct requesters so far.
    pub requesters: usize,
}

fn positive(field: &str, v: i64) -> Result<Duration> {
    if v <= 0 {
        bail!("master.{field}: must be a positive number of milliseconds, got {v}");
    }
    Ok(Duration::from_millis(v as u64))
}

impl HoldOff {
    /// Checks the settings for a fleet of `fleet_size` nodes. Errors name
    /// the field and the reason.
    pub fn new(s: &HoldOffSettings, fleet_size: usize) -> Result<HoldOff> {
        let policy = s.policy.unwrap_or(Policy::Renew);
        let hold_off = positive("hold_off_ms", s.hold_off_ms.unwrap_or(1500))?;
        let max_wait = positive("max_wait_ms", s.max_wait_ms.unwrap_or(10_000))?;
        if max_wait < hold_off {
            bail!(
                "master.max_wait_ms: {} is below master.hold_off_ms {}",
                max_wait.as_millis(),
                hold_off.as_millis()
            );
        }
        let only = |field: &str, set: bool, for_policy: Policy| -> Result<()> {
            if set && policy != for_policy {
                bail!("master.{field}: only applies to policy {for_policy:?}, not {policy:?}");
            }
            Ok(())
        };
        only("shrink_step_ms", s.shrink_step_ms.is_some(), Policy::Shrink)?;
        only("floor_ms", s.floor_ms.is_some(), Policy::Shrink)?;
        only("min_requests", s.min_requests.is_some(), Policy::Quorum)?;
        let shrink_step = match s.shrink_step_ms {
            Some(v) => positive("shrink_step_ms", v)?,
            None => hold_off / 4,
        };
        let floor = match s.floor_ms {
            Some(v) => positive("floor_ms", v)?,
            None => hold_off / 4,
        };
        if floor > hold_off {
            bail!(
                "master.floor_ms: {} is above master.hold_off_ms {}",
                floor.as_millis(),
                hold_off.as_millis()
            );
        }
        let min_requests = match s.min_requests {
            Some(v) if v < 1 => bail!("master.min_requests: must be at least 1, got {v}"),
            Some(v) if v as usize > fleet_size => {
                bail!("master.min_requests: {v} is more than the fleet's {fleet_size} nodes")
            }
            Some(v) => v as usize,
            None => fleet_size.max(1),
        };
        Ok(HoldOff {
            policy,
            hold_off,
            max_wait,
            shrink_step,
            floor,
            min_requests,
        })
    }

    /// A plain configuration, for tests and tools.
    pub fn simple(policy: Policy, hold_off_ms: i64, max_wait_ms: i64) -> Result<HoldOff> {
        let s = HoldOffSettings {
            policy: Some(policy),
            hold_off_ms: Some(hold_off_ms),
            max_wait_ms: Some(max_wait_ms),
            ..HoldOffSettings::default()
        };
        HoldOff::new(&s, usize::MAX)
    }

    /// When a window in state `w` closes, and why.
    pub fn deadline<T>(&self, w: &WindowClock<T>) -> (T, CloseReason)
    where
        T: Copy + Ord + Add<Duration, Output = T>,
    {
        let timer = match self.policy {
            Policy::Fixed => (w.first + self.hold_off, CloseReason::Timer),
            Policy::Renew => (w.last_new + self.hold_off, CloseReason::Timer),
            Policy::Shrink => {
                let cut = self.shrink_step.saturating_mul(w.renewals);
                (
                    w.last_new + self.hold_off.saturating_sub(cut).max(self.floor),
                    CloseReason::Timer,
                )
            }
            Policy::Quorum if w.requesters >= self.min_requests => {
                (w.last_new, CloseReason::Quorum)
            }
            Policy::Quorum => (w.first + self.hold_off, CloseReason::Timer),
        };
        let cap = w.first + self.max_wait;
        if timer.0 <= cap {
            timer
        } else {
            (cap, CloseReason::MaxWait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &[(&str, i64)], policy: Policy) -> HoldOffSettings {
        let mut s = HoldOffSettings {
            policy: Some(policy),
            ..HoldOffSettings::default()
        };
        for (k, v) in text {
            match *k {
                "hold_off_ms" => s.hold_off_ms = Some(*v),
                "max_wait_ms" => s.max_wait_ms = Some(*v),
                "shrink_step_ms" => s.shrink_step_ms = Some(*v),
                "floor_ms" => s.floor_ms = Some(*v),
                "min_requests" => s.min_requests = Some(*v),
                _ => unreachable!(),
            }
        }
        s
    }

    #[test]
    fn bad_values_name_the_field() {
        type Case<'a> = (&'a [(&'a str, i64)], Policy, &'a str);
        let cases: [Case; 9] = [
            (
                &[("hold_off_ms", 0)],
                Policy::Fixed,
                "master.hold_off_ms: must be a positive",
            ),
            (
                &[("hold_off_ms", -5)],
                Policy::Fixed,
                "master.hold_off_ms: must be a positive",
            ),
            (
                &[("max_wait_ms", -1)],
                Policy::Fixed,
                "master.max_wait_ms: must be a positive",
            ),
            (
                &[("hold_off_ms", 100), ("max_wait_ms", 50)],
                Policy::Renew,
                "master.max_wait_ms: 50 is below",
            ),
            (
                &[("hold_off_ms", 100), ("floor_ms", 150)],
                Policy::Shrink,
                "master.floor_ms: 150 is above",
            ),
            (
                &[("shrink_step_ms", 0)],
                Policy::Shrink,
                "master.shrink_step_ms: must be a positive",
            ),
            (
                &[("floor_ms", 10)],
                Policy::Renew,
                "master.floor_ms: only applies to policy Shrink",
            ),
            (
                &[("min_requests", 0)],
                Policy::Quorum,
                "master.min_requests: must be at least 1",
            ),
            (
                &[("min_requests", 9)],
                Policy::Quorum,
                "master.min_requests: 9 is more than the fleet's 8",
            ),
        ];
        for (fields, policy, want) in cases {
            let e = HoldOff::new(&settings(fields, policy), 8)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{fields:?}: {e}");
        }
    }

    #[test]
    fn caps_and_floors() {
        let t0 = std::time::Instant::now();
        let ms = |n| Duration::from_millis(n);
        let clock = |last: u64, renewals, requesters| WindowClock {
            first: t0,
            last_new: t0 + ms(last),
            renewals,
            requesters,
        };
        let renew = HoldOff::simple(Policy::Renew, 1000, 2500).unwrap();
        assert_eq!(
            renew.deadline(&clock(800, 1, 2)),
            (t0 + ms(1800), CloseReason::Timer)
        );
        assert_eq!(
            renew.deadline(&clock(2000, 2, 3)),
            (t0 + ms(2500), CloseReason::MaxWait)
        );
        let shrink = HoldOff::new(
            &settings(
                &[
                    ("hold_off_ms", 1000),
                    ("shrink_step_ms", 300),
                    ("floor_ms", 200),
                ],
                Policy::Shrink,
            ),
            8,
        )
        .unwrap();
        // Renewals wait 700, 400, then the floor of 200.
        assert_eq!(shrink.deadline(&clock(100, 1, 2)).0, t0 + ms(800));
        assert_eq!(shrink.deadline(&clock(500, 2, 3)).0, t0 + ms(900));
        assert_eq!(shrink.deadline(&clock(800, 3, 4)).0, t0 + ms(1000));
        assert_eq!(shrink.deadline(&clock(900, 9, 10)).0, t0 + ms(1100));
        let quorum = HoldOff::new(&settings(&[("min_requests", 3)], Policy::Quorum), 8).unwrap();
        assert_eq!(
            quorum.deadline(&clock(300, 1, 2)),
            (t0 + ms(1500), CloseReason::Timer)
        );
        assert_eq!(
            quorum.deadline(&clock(400, 2, 3)),
            (t0 + ms(400), CloseReason::Quorum)
        );
        // Without min_requests the whole fleet is the quorum.
        let fleet = HoldOff::new(&settings(&[], Policy::Quorum), 4).unwrap();
        assert_eq!(fleet.min_requests, 4);
    }
}
