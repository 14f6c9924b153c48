//! When a node must stop: the plugin's decisions, free of QEMU and I/O.
//!
//! The node's clock is QEMU's icount clock: `shift` ns per instruction,
//! plus the jumps QEMU makes when the guest sleeps in `wfi` (`sleep=off`
//! warps to the next timer). Reading it (the CLINT's `mtime`) costs a
//! device access, so the gate predicts it from the instructions counted
//! since the last reading and reads it only when the prediction reaches
//! the grant, after a sleep, or before a `wfi`.

use proto::clock::{NEVER, Report, Stop};

/// What a block holds that matters to the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Neither of the below.
    Plain,
    /// A `wfi`: the node may sleep.
    Wfi,
    /// The sync hint (`proto::clock::SYNC_HINT`): the node has just handed
    /// the bus device a frame.
    Sync,
}

/// A node's gate.
#[derive(Debug)]
pub struct Gate {
    shift: u32,
    /// The node may run until this virtual time, ns.
    grant: u64,
    /// The clock at the last reading, and the instructions counted then.
    base_ns: u64,
    base_insns: u64,
    insns: u64,
    /// A sleep may have moved the clock since the last reading.
    stale: bool,
}

impl Gate {
    /// A gate at power-on: nothing granted yet, so the first block stops.
    pub fn new(shift: u32) -> Gate {
        Gate {
            shift,
            grant: 0,
            base_ns: 0,
            base_insns: 0,
            insns: 0,
            stale: true,
        }
    }

    /// A block of `n` instructions starts; `mark` says what it holds.
    /// Whether the clock must be read now.
    pub fn block(&mut self, n: u64, mark: Mark) -> bool {
        self.insns += n;
        mark != Mark::Plain || self.stale || self.predicted() >= self.grant
    }

    fn predicted(&self) -> u64 {
        let run = (self.insns - self.base_insns).saturating_mul(1 << self.shift);
        self.base_ns.saturating_add(run)
    }

    /// The clock read `now` ns; for a block that holds a `wfi`, `wake` is
    /// the armed timer ([`NEVER`] if none). Returns the report to send
    /// (then wait for a grant) if the node must stop: it has reached its
    /// grant, it would sleep past it, or (`synced`) it has just handed the
    /// bus device a frame.
    pub fn clock(&mut self, now: u64, wfi: Option<u64>, synced: bool) -> Option<Report> {
        self.base_ns = now;
        self.base_insns = self.insns;
        self.stale = false;
        if let Some(wake) = wfi {
            // The `wfi` may sleep, and QEMU then moves the clock.
            self.stale = true;
            // A timer already due keeps `wfi` from sleeping; one due
            // within the grant lets it sleep no further than allowed.
            if wake > now && wake > self.grant {
                return Some(Report {
                    stop: Stop::Idle,
                    at: now,
                    wake,
                });
            }
        }
        (synced || now >= self.grant).then_some(Report {
            stop: Stop::Barrier,
            at: now,
            wake: NEVER,
        })
    }

    /// The bridge let the node run until `until`.
    pub fn granted(&mut self, until: u64) {
        self.grant = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_block_stops_at_power_on() {
        let mut g = Gate::new(0);
        assert!(g.block(5, Mark::Plain));
        assert_eq!(
            g.clock(0, None, false),
            Some(Report {
                stop: Stop::Barrier,
                at: 0,
                wake: NEVER
            })
        );
    }

    #[test]
    fn it_reads_the_clock_only_near_the_grant() {
        let mut g = Gate::new(3); // 8 ns per instruction
        g.block(1, Mark::Plain);
        g.clock(0, None, false);
        g.granted(1_000);
        assert!(!g.block(100, Mark::Plain)); // 800 ns predicted
        assert!(g.block(25, Mark::Plain)); // 1000 ns predicted
        // The clock says less (a block was cut short): run on.
        assert_eq!(g.clock(992, None, false), None);
        assert!(g.block(1, Mark::Plain));
        assert!(g.clock(1_000, None, false).is_some());
    }

    #[test]
    fn a_sleep_past_the_grant_is_reported_and_one_within_is_not() {
        let mut g = Gate::new(0);
        g.granted(5_000);
        g.block(3, Mark::Wfi);
        assert_eq!(
            g.clock(100, Some(4_000), false),
            None,
            "wakes within the grant"
        );
        assert!(g.block(1, Mark::Plain), "the sleep made the clock stale");
        g.clock(4_000, None, false);
        g.block(2, Mark::Wfi);
        assert_eq!(
            g.clock(4_010, Some(9_000), false),
            Some(Report {
                stop: Stop::Idle,
                at: 4_010,
                wake: 9_000
            })
        );
        // No timer armed: it may sleep for ever.
        g.block(2, Mark::Wfi);
        assert_eq!(
            g.clock(4_020, Some(NEVER), false).map(|r| r.stop),
            Some(Stop::Idle)
        );
        // A frame was just sent: stop, though the grant is far.
        g.granted(1_000_000);
        assert!(g.block(1, Mark::Sync));
        assert_eq!(
            g.clock(5_000, None, true).map(|r| (r.stop, r.at)),
            Some((Stop::Barrier, 5_000))
        );
        // A timer already due: `wfi` will not sleep.
        g.block(2, Mark::Wfi);
        assert_eq!(g.clock(4_030, Some(4_000), false), None);
    }
}
