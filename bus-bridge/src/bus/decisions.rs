//! Fault decisions: what the rules in force do to one frame for one
//! receiver, decided from the seed alone (see [`crate::faults`]); and
//! delay lines, the frames a delay fault holds for a receiver.

use std::collections::VecDeque;

use proto::Frame;
use tracing::debug;

use crate::clock::WallTime;
use crate::faults::{FaultEntry, FaultKind, Rule};
use crate::ids::{ConnId, PortId, SegmentId};

/// Frames a delay fault may hold per port; more are overruns.
pub(crate) const DELAY_LINE_MAX: usize = 4096;

/// What the rules do to one frame for one receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// It fails its CRC here (a corrupt rule without error frame).
    pub corrupt: bool,
    pub lost: bool,
    /// Extra latency, ns; the longest of the delay rules that hit.
    pub delay_ns: u64,
}

/// Where a decision is made: one transmission of one sender, for one
/// receiver on its segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Coordinates<'a> {
    pub sender: PortId,
    /// The sender's transmission count, this one included.
    pub attempt: u64,
    pub receiver: PortId,
    pub segment: SegmentId,
    pub frame: &'a Frame,
}

/// The rules in force and the seed of every decision.
pub(crate) struct Rules {
    seed: u64,
    rules: Vec<Rule>,
    next_id: u64,
}

impl Rules {
    /// `rules` keep their ids; new ones are numbered after them.
    pub fn new(seed: u64, rules: Vec<Rule>) -> Rules {
        Rules {
            seed,
            next_id: rules.iter().map(|r| r.id + 1).max().unwrap_or(0),
            rules,
        }
    }

    /// Puts `rule` in force under a new id; returns the id.
    pub fn add(&mut self, mut rule: Rule) -> u64 {
        rule.id = self.next_id;
        self.next_id += 1;
        debug!(id = rule.id, fault = ?rule.fault, "fault added");
        let id = rule.id;
        self.rules.push(rule);
        id
    }

    /// Whether rule `id` was in force.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() < before
    }

    /// How many rules there were.
    pub fn clear(&mut self) -> usize {
        let n = self.rules.len();
        self.rules.clear();
        n
    }

    /// The rules in force, for listing.
    pub fn entries(&self) -> Vec<FaultEntry> {
        self.rules
            .iter()
            .map(|r| FaultEntry {
                id: r.id,
                fault: r.fault.clone(),
            })
            .collect()
    }

    fn hits(&self, rule: &Rule, at: &Coordinates) -> bool {
        rule.hits(self.seed, at.sender, at.attempt, at.receiver)
    }

    /// Whether any rule makes receivers raise error frames.
    pub fn raises_error_frames(&self) -> bool {
        self.rules.iter().any(is_error_frame_rule)
    }

    /// Whether this receiver raises an error frame.
    pub fn error_frame(&self, at: &Coordinates) -> bool {
        self.rules.iter().any(|rule| {
            is_error_frame_rule(rule)
                && rule.covers(at.receiver, at.segment, at.frame)
                && self.hits(rule, at)
        })
    }

    /// What the other rules do here.
    pub fn verdict(&self, at: &Coordinates) -> Verdict {
        let mut v = Verdict::default();
        for rule in &self.rules {
            if !rule.covers(at.receiver, at.segment, at.frame) {
                continue;
            }
            match rule.kind {
                FaultKind::Corrupt if !rule.error_frame => v.corrupt |= self.hits(rule, at),
                FaultKind::Corrupt => {}
                FaultKind::Loss => v.lost |= self.hits(rule, at),
                FaultKind::Delay => {
                    if self.hits(rule, at) {
                        let d = rule.delay_for(self.seed, at.sender, at.attempt, at.receiver);
                        v.delay_ns = v.delay_ns.max(d);
                    }
                }
            }
        }
        v
    }
}

fn is_error_frame_rule(r: &Rule) -> bool {
    r.kind == FaultKind::Corrupt && r.error_frame
}

/// A frame a delay fault holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    /// Wall time it is due.
    pub due: WallTime,
    /// The client it was for.
    pub conn: ConnId,
    pub frame: Frame,
}

/// The line is full: the frame is an overrun.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LineFull;

/// Frames held for one receiver, in the order they left the bus.
#[derive(Clone, Debug, Default)]
pub(crate) struct DelayLine {
    held: VecDeque<Held>,
}

impl DelayLine {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds `frame` until `now + delay_ns`, and never past a frame
    /// already held: jitter does not reorder a receiver's frames.
    pub fn hold(
        &mut self,
        now: WallTime,
        delay_ns: u64,
        conn: ConnId,
        frame: Frame,
    ) -> Result<(), LineFull> {
        if self.held.len() >= DELAY_LINE_MAX {
            return Err(LineFull);
        }
        let due = self
            .held
            .back()
            .map_or(WallTime::ZERO, |h| h.due)
            .max(now + delay_ns);
        self.held.push_back(Held { due, conn, frame });
        Ok(())
    }

    /// The next frame due by `now`.
    pub fn pop_due(&mut self, now: WallTime) -> Option<Held> {
        if self.held.front()?.due > now {
            return None;
        }
        self.held.pop_front()
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Option<WallTime> {
        self.held.front().map(|h| h.due)
    }

    /// Empties the line; returns how many frames it held.
    pub fn clear(&mut self) -> u64 {
        let n = self.held.len() as u64;
        self.held.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{Fault, compile};

    fn rules(seed: u64, faults: &[Fault]) -> Rules {
        let compiled = faults
            .iter()
            .enumerate()
            .map(|(i, f)| compile(f, i as u64, |_| None, |_| None).unwrap())
            .collect();
        Rules::new(seed, compiled)
    }

    #[test]
    fn a_verdict_combines_every_rule_that_covers_the_receiver() {
        let frame = Frame::new(0x10, 0, &[]).unwrap();
        let at = |receiver| Coordinates {
            sender: PortId(0),
            attempt: 1,
            receiver: PortId(receiver),
            segment: SegmentId(0),
            frame: &frame,
        };
        let r = rules(
            1,
            &[
                Fault::loss(1.0),
                Fault::delay(5),
                Fault::delay(7),
                Fault::corrupt(1.0).with_error_frame(),
            ],
        );
        let v = r.verdict(&at(1));
        assert_eq!((v.lost, v.corrupt, v.delay_ns), (true, false, 7_000));
        assert!(r.raises_error_frames() && r.error_frame(&at(1)));
        let mut r = rules(1, &[Fault::corrupt(1.0)]);
        assert!(r.verdict(&at(2)).corrupt && !r.raises_error_frames());
        assert_eq!(
            r.add(compile(&Fault::loss(0.0), 0, |_| None, |_| None).unwrap()),
            1
        );
        assert!(r.remove(0) && !r.remove(0));
        assert_eq!(r.clear(), 1);
    }

    #[test]
    fn a_delay_line_keeps_order_and_is_bounded() {
        let f = Frame::new(1, 0, &[]).unwrap();
        let (c, t) = (ConnId(1), WallTime::from_ns);
        let mut line = DelayLine::default();
        line.hold(t(0), 100, c, f).unwrap();
        line.hold(t(10), 20, c, f).unwrap();
        assert_eq!(line.next_due(), Some(t(100)), "the first is due first");
        assert_eq!(line.pop_due(t(99)), None);
        assert_eq!(line.pop_due(t(100)).map(|h| h.due), Some(t(100)));
        assert_eq!(
            line.pop_due(t(100)).map(|h| h.due),
            Some(t(100)),
            "never before the one ahead of it"
        );
        for _ in 0..DELAY_LINE_MAX {
            line.hold(t(0), 1, c, f).unwrap();
        }
        assert_eq!(line.hold(t(0), 1, c, f), Err(LineFull));
        assert_eq!(line.clear(), DELAY_LINE_MAX as u64);
    }
}
