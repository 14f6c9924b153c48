//! [`Moment`]: a point on a run's clock.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point on the clock a run keeps, in nanoseconds since the run began:
/// the host's clock counted from the testbed's start (wall), or the bus's
/// virtual time (virtual). A type of its own, not an `Instant`, so that the
/// master's and the supervisor's logic take time as an input and never
/// read the host's clock by accident.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(u64);

impl Moment {
    /// The run's start.
    pub const ZERO: Moment = Moment(0);

    /// `ns` nanoseconds after the start.
    pub const fn from_ns(ns: u64) -> Moment {
        Moment(ns)
    }

    /// `d` after the start.
    pub fn from_duration(d: Duration) -> Moment {
        Moment(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the start.
    pub const fn as_ns(self) -> u64 {
        self.0
    }

    /// Seconds since the start, for reports.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// How long after `earlier` this is; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Moment {
    type Output = Moment;

    /// Saturates at the end of time rather than overflowing.
    fn add(self, d: Duration) -> Moment {
        Moment(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl AddAssign<Duration> for Moment {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Moment> for Moment {
    type Output = Duration;

    /// [`Moment::saturating_duration_since`].
    fn sub(self, earlier: Moment) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Moment({:.9} s)", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_add_durations_and_measure_gaps_without_overflow() {
        let t = Moment::from_ns(10) + Duration::from_nanos(5);
        assert_eq!(t.as_ns(), 15);
        assert_eq!(t - Moment::from_ns(20), Duration::ZERO);
        assert_eq!(Moment::from_ns(2_500_000_000).as_secs_f64(), 2.5);
        assert_eq!(
            (Moment::from_ns(u64::MAX - 1) + Duration::MAX).as_ns(),
            u64::MAX
        );
        assert_eq!(
            Moment::from_duration(Duration::from_millis(3)).as_ns(),
            3_000_000
        );
    }
}
