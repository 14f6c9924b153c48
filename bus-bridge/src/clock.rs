//! The bridge's two clocks, in nanoseconds since it started.
//!
//! *Wall time* is the driver's clock: the tokio clock today, a virtual one
//! tomorrow. *Bus time* is the time on the wire: frame ends, bus-off
//! recovery, babble periods. Paced, the two are the same number; unpaced,
//! each arbitration domain's bus time runs ahead by its frames' time and
//! only follows the wall clock while the bus is idle. They are different
//! types so that mixing them does not compile; where one becomes the
//! other, a named conversion says so. Durations are plain `u64` ns.

use std::fmt;
use std::ops::Add;

macro_rules! time_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) struct $name(u64);

        // Each clock uses only part of this.
        #[allow(dead_code)]
        impl $name {
            pub const ZERO: $name = $name(0);

            pub const fn from_ns(ns: u64) -> $name {
                $name(ns)
            }

            pub const fn as_ns(self) -> u64 {
                self.0
            }

            /// Nanoseconds from `earlier` to `self`; 0 if `earlier` is later.
            pub fn saturating_since(self, earlier: $name) -> u64 {
                self.0.saturating_sub(earlier.0)
            }

            pub fn saturating_add(self, ns: u64) -> $name {
                $name(self.0.saturating_add(ns))
            }
        }

        /// `self + ns`.
        impl Add<u64> for $name {
            type Output = $name;
            fn add(self, ns: u64) -> $name {
                $name(self.0 + ns)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({} ns)", stringify!($name), self.0)
            }
        }
    };
}

time_type!(
    /// A point in bus time.
    BusTime
);
time_type!(
    /// A point in wall (driver) time.
    WallTime
);

impl WallTime {
    /// Paced, bus time is wall time.
    pub fn as_paced_bus(self) -> BusTime {
        BusTime(self.0)
    }
}

impl BusTime {
    /// Paced, bus time is wall time.
    pub fn as_paced_wall(self) -> WallTime {
        WallTime(self.0)
    }
}

/// The earlier of two optional times; `None` means never.
pub(crate) fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_add_durations_and_measure_gaps() {
        let t = BusTime::from_ns(10) + 5;
        assert_eq!(t.as_ns(), 15);
        assert_eq!(t.saturating_since(BusTime::from_ns(20)), 0);
        assert_eq!(WallTime::from_ns(7).as_paced_bus(), BusTime::from_ns(7));
        assert_eq!(earliest(Some(3), None), Some(3));
        assert_eq!(earliest(Some(3), Some(2)), Some(2));
        assert_eq!(earliest::<u8>(None, None), None);
    }
}
