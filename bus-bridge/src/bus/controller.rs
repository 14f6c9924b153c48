//! A CAN controller's error model, as far as the bus needs it: the
//! transmit error counter (TEC), error frames, bus-off and recovery.

use crate::clock::BusTime;
use crate::timing::BitTiming;

/// Bits an error frame adds to a frame that fails its CRC: the error flag
/// (6) + error delimiter (8) + intermission (3) replace EOF (7) +
/// intermission (3). Other nodes' echoed flags overlap the first 6.
pub(crate) const ERROR_FRAME_EXTRA_BITS: u64 = 7;
/// Bus-off recovery: 128 occurrences of 11 recessive bits.
const BUS_OFF_RECOVERY_BITS: u64 = 128 * 11;
/// Transmit error counter above which a controller goes bus-off.
const BUS_OFF_TEC: u32 = 255;
/// What an error frame adds to the counter; a good frame takes 1 off.
const TEC_PER_ERROR: u32 = 8;

/// One nominal bit, ns.
fn bit_ns(timing: BitTiming) -> u64 {
    1_000_000_000 / u64::from(timing.nominal_bps())
}

/// Bus time an error frame adds to the frame it destroys, ns.
pub(crate) fn error_frame_ns(timing: BitTiming) -> u64 {
    ERROR_FRAME_EXTRA_BITS * 1_000_000_000 / u64::from(timing.nominal_bps())
}

/// After an error frame: send again, or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterError {
    Retry,
    BusOff,
}

/// One port's controller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Controller {
    tec: u32,
    /// Bus time it recovers from bus-off.
    bus_off_until: Option<BusTime>,
}

impl Controller {
    pub fn tec(&self) -> u32 {
        self.tec
    }

    pub fn is_bus_off(&self) -> bool {
        self.bus_off_until.is_some()
    }

    pub fn bus_off_until(&self) -> Option<BusTime> {
        self.bus_off_until
    }

    /// One of its frames went through.
    pub fn sent(&mut self) {
        self.tec = self.tec.saturating_sub(1);
    }

    /// One of its frames was destroyed by an error frame ending at `end`.
    pub fn error_frame(&mut self, end: BusTime, timing: BitTiming) -> AfterError {
        self.tec += TEC_PER_ERROR;
        if self.tec > BUS_OFF_TEC {
            self.bus_off_until = Some(end + BUS_OFF_RECOVERY_BITS * bit_ns(timing));
            AfterError::BusOff
        } else {
            AfterError::Retry
        }
    }

    /// Whether it is bus-off and its recovery is over at `now`.
    pub fn recovers_by(&self, now: BusTime) -> bool {
        self.bus_off_until.is_some_and(|t| t <= now)
    }

    /// Rejoins the bus with a clean counter.
    pub fn recover(&mut self) {
        self.bus_off_until = None;
        self.tec = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_errors_in_a_row_put_a_controller_bus_off() {
        let timing = BitTiming::Classic1m;
        let mut c = Controller::default();
        let end = BusTime::from_ns(1000);
        for i in 1..32 {
            assert_eq!(c.error_frame(end, timing), AfterError::Retry, "error {i}");
        }
        assert_eq!(c.tec(), 248);
        c.sent();
        assert_eq!(c.tec(), 247, "a good frame takes one off");
        assert_eq!(c.error_frame(end, timing), AfterError::Retry);
        assert_eq!(c.error_frame(end, timing), AfterError::BusOff);
        // 128 x 11 bits at 1 Mbit/s.
        let back = BusTime::from_ns(1000 + 1408 * 1000);
        assert_eq!(c.bus_off_until(), Some(back));
        assert!(!c.recovers_by(BusTime::from_ns(back.as_ns() - 1)));
        assert!(c.recovers_by(back));
        c.recover();
        assert_eq!((c.tec(), c.is_bus_off()), (0, false));
        assert_eq!(error_frame_ns(timing), 7_000);
    }
}
