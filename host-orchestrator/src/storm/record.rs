//! What a storm did while it ran: its events, the reboots and publishes it
//! made (the ledger), and the faults it put on the bus. With the testbed's
//! report (each node's state timeline, sessions, windows, bus drops) this is
//! the typed record the invariants judge; nothing here decides anything.

use super::scenario::Reboot;
use crate::clock::Moment;
use bus_bridge::{Fault, FaultConfig};
use proto::NodeType;
use serde::Serialize;
use std::collections::BTreeMap;

/// One thing the storm did.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Scenario time, seconds.
    pub t_s: f64,
    /// The action.
    pub action: String,
    /// The line of its timeline entry.
    pub line: usize,
    /// The nodes it acted on.
    pub nodes: Vec<u16>,
    /// What it did, or why it could not.
    pub detail: String,
    /// Whether it did what it was asked (nodes skipped aside).
    pub ok: bool,
    /// Nodes it left alone because they were mid-transition, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skip>,
    /// What the seed drew for it: each picked node and how to reboot it
    /// (a replay draws the same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub picked: Vec<Pick>,
}

/// A node an action picked, and how it reboots it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pick {
    /// The node.
    pub node: u16,
    /// `power-cycle`, `reset` or `soft-reboot`.
    pub how: &'static str,
}

/// A node an action left alone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skip {
    /// The node.
    pub node: u16,
    /// Why: the state it was in.
    pub reason: String,
}

/// The reboots and publishes the scenario made: what it owns.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// Reboots the scenario gave each node.
    pub authorized: BTreeMap<u16, u32>,
    /// When each node was last rebooted by the scenario.
    pub rebooted_at: BTreeMap<u16, Moment>,
    /// When each type was last published.
    pub published_at: BTreeMap<NodeType, Moment>,
    /// Reboots in all.
    pub reboots: usize,
    /// Every reboot in order: when, which node, how.
    pub log: Vec<(Moment, u16, Reboot)>,
}

impl Ledger {
    /// The scenario reboots node `id` `how` at `at`.
    pub fn reboot(&mut self, id: u16, how: Reboot, at: Moment) {
        *self.authorized.entry(id).or_default() += 1;
        self.rebooted_at.insert(id, at);
        self.reboots += 1;
        self.log.push((at, id, how));
    }

    /// The scenario publishes a version of type `t` at `at`.
    pub fn publish(&mut self, t: NodeType, at: Moment) {
        self.published_at.insert(t, at);
    }
}

/// Redundancy groups and their members, by name.
pub type Groups = BTreeMap<String, Vec<u16>>;

/// A change to the bus's faults or topology.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultChange {
    /// A rule in force from then on (from the fleet file, or injected).
    Rule(Fault),
    /// Every rule cleared.
    Cleared,
    /// A port's link (transceiver) down from the start.
    LinkDown(String),
    /// A link cut.
    Cut(String),
    /// A link restored.
    Restored(String),
    /// The primary master killed.
    MasterKilled,
    /// A node's power cut and restored (its port loses its client).
    PowerCycled(u16),
}

/// Every fault and topology change the run made, in order, with when.
#[derive(Clone, Debug, Default)]
pub struct FaultLog {
    /// The changes.
    pub changes: Vec<(Moment, FaultChange)>,
}

impl FaultLog {
    /// The faults a fleet has from the start, at `t0`.
    pub fn of_fleet(faults: &FaultConfig, t0: Moment) -> FaultLog {
        let mut log = FaultLog::default();
        for r in &faults.rules {
            log.changes.push((t0, FaultChange::Rule(r.clone())));
        }
        for p in &faults.link_down {
            log.changes.push((t0, FaultChange::LinkDown(p.clone())));
        }
        for l in &faults.cut {
            log.changes.push((t0, FaultChange::Cut(l.clone())));
        }
        log
    }

    /// Records a change at `at`.
    pub fn add(&mut self, at: Moment, change: FaultChange) {
        self.changes.push((at, change));
    }

    /// Rules that were in force at some time.
    pub fn rules(&self) -> impl Iterator<Item = &Fault> {
        self.changes.iter().filter_map(|(_, c)| match c {
            FaultChange::Rule(f) => Some(f),
            _ => None,
        })
    }

    /// Whether any change matches `f`.
    pub fn any(&self, f: impl Fn(&FaultChange) -> bool) -> bool {
        self.changes.iter().any(|(_, c)| f(c))
    }
}

/// What the run made happen, in seconds since the testbed started: the
/// run's event log and timeline show it (the report keeps the storm's own
/// `events`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Made {
    /// Each reboot the scenario made: when, which node, how.
    pub reboots: Vec<(f64, u16, Reboot)>,
    /// Each fault and topology change, in order.
    pub faults: Vec<(f64, FaultChange)>,
}

impl Made {
    /// The ledger's reboots and the fault log's changes, timed from `t0`.
    pub fn of(ledger: &Ledger, faults: &FaultLog, t0: Moment) -> Made {
        let s = |at: Moment| at.saturating_duration_since(t0).as_secs_f64();
        Made {
            reboots: ledger
                .log
                .iter()
                .map(|&(at, id, how)| (s(at), id, how))
                .collect(),
            faults: faults
                .changes
                .iter()
                .map(|(at, c)| (s(*at), c.clone()))
                .collect(),
        }
    }

    /// A fleet's faults from the start (`testbed up`: no scenario).
    pub fn of_fleet(faults: &FaultConfig) -> Made {
        let t0 = Moment::ZERO;
        Made::of(&Ledger::default(), &FaultLog::of_fleet(faults, t0), t0)
    }
}
