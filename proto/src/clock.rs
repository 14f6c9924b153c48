//! The virtual-clock link between a node's QEMU plugin and the bridge.
//!
//! Every record is [`RECORD`] bytes: a kind byte, seven zero bytes, then
//! two little-endian `u64` nanoseconds of the node's virtual clock. Fixed
//! size, so a stream socket needs no framing and a reader knows at once
//! whether it holds a whole record. Times are virtual nanoseconds since the
//! node's power-on; [`NEVER`] stands for "no time".
//!
//! Node → bridge: [`Report`] (where it stopped and why). Bridge → node:
//! [`Grant`] (run until this time, and whether to reset first).

/// The sync hint, `addi x0, x0, 0x7C5`: a RISC-V HINT (it writes `x0`,
/// so it does nothing) that a node executes after handing the bus device a
/// frame. The plugin stops the node at the block that holds it and
/// reports, so the frame's time is that point of the node's clock.
pub const SYNC_HINT: u32 = 0x7C50_0013;

/// Bytes in every record.
pub const RECORD: usize = 24;

/// "No time": an idle node with no timer armed, or a grant without end.
pub const NEVER: u64 = u64::MAX;

/// Why a node stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stop {
    /// It reached its grant while running.
    Barrier = 1,
    /// It is about to sleep (`wfi`) until an interrupt, its timer at
    /// `wake` at the latest.
    Idle = 2,
}

/// What a node tells the bridge: it has stopped at virtual time `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Why.
    pub stop: Stop,
    /// The node's virtual time, ns.
    pub at: u64,
    /// [`Stop::Idle`]: when its timer fires ([`NEVER`]: not armed).
    pub wake: u64,
}

/// What the bridge tells a stopped node: run on until virtual time
/// `until` ([`NEVER`]: without end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The next barrier, ns.
    pub until: u64,
    /// Reset the machine where it stopped, before it runs on (a reset the
    /// host asked for, at a point of virtual time rather than whenever a
    /// monitor command happens to land).
    pub reset: bool,
}

/// Kind byte of a [`Grant`].
const GRANT: u8 = 0x10;
/// A [`Grant`]'s second word: its flags.
const GRANT_RESET: u64 = 1;

/// Why a record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockError {
    /// The kind byte is none of the known ones.
    UnknownKind(u8),
    /// The padding is not zero (a stream out of step).
    BadPadding,
    /// A grant's flags word has bits no version knows.
    UnknownFlags(u64),
}

fn put(out: &mut [u8; RECORD], kind: u8, a: u64, b: u64) {
    *out = [0; RECORD];
    out[0] = kind;
    out[8..16].copy_from_slice(&a.to_le_bytes());
    out[16..24].copy_from_slice(&b.to_le_bytes());
}

fn take(rec: &[u8; RECORD]) -> Result<(u8, u64, u64), ClockError> {
    if rec[1..8].iter().any(|&b| b != 0) {
        return Err(ClockError::BadPadding);
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&rec[8..16]);
    b.copy_from_slice(&rec[16..24]);
    Ok((rec[0], u64::from_le_bytes(a), u64::from_le_bytes(b)))
}

impl Report {
    /// The record.
    pub fn encode(&self) -> [u8; RECORD] {
        let mut out = [0; RECORD];
        let wake = match self.stop {
            Stop::Barrier => NEVER,
            Stop::Idle => self.wake,
        };
        put(&mut out, self.stop as u8, self.at, wake);
        out
    }

    /// Reads a record; never panics.
    pub fn decode(rec: &[u8; RECORD]) -> Result<Report, ClockError> {
        let (kind, at, wake) = take(rec)?;
        let stop = match kind {
            1 => Stop::Barrier,
            2 => Stop::Idle,
            k => return Err(ClockError::UnknownKind(k)),
        };
        Ok(Report { stop, at, wake })
    }
}

impl Grant {
    /// The record.
    pub fn encode(&self) -> [u8; RECORD] {
        let mut out = [0; RECORD];
        let flags = if self.reset { GRANT_RESET } else { 0 };
        put(&mut out, GRANT, self.until, flags);
        out
    }

    /// Reads a record; never panics.
    pub fn decode(rec: &[u8; RECORD]) -> Result<Grant, ClockError> {
        match take(rec)? {
            (GRANT, until, flags) if flags & !GRANT_RESET == 0 => Ok(Grant {
                until,
                reset: flags == GRANT_RESET,
            }),
            (GRANT, _, flags) => Err(ClockError::UnknownFlags(flags)),
            (k, _, _) => Err(ClockError::UnknownKind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for r in [
            Report {
                stop: Stop::Barrier,
                at: 5,
                wake: NEVER,
            },
            Report {
                stop: Stop::Idle,
                at: 7,
                wake: 1_000,
            },
        ] {
            assert_eq!(Report::decode(&r.encode()), Ok(r));
        }
        for reset in [false, true] {
            let g = Grant { until: 42, reset };
            assert_eq!(Grant::decode(&g.encode()), Ok(g));
        }
    }

    #[test]
    fn bad_records_are_refused() {
        let mut r = Grant {
            until: 1,
            reset: false,
        }
        .encode();
        assert_eq!(Report::decode(&r), Err(ClockError::UnknownKind(GRANT)));
        let mut flags = r;
        flags[16] = 2;
        assert_eq!(Grant::decode(&flags), Err(ClockError::UnknownFlags(2)));
        r[3] = 1;
        assert_eq!(Grant::decode(&r), Err(ClockError::BadPadding));
        assert_eq!(Report::decode(&[9; RECORD]), Err(ClockError::BadPadding));
        let mut z = [0u8; RECORD];
        z[0] = 0xEE;
        assert_eq!(Report::decode(&z), Err(ClockError::UnknownKind(0xEE)));
    }
}
