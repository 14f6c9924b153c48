//! What a storm did and saw while it ran: its events, the reboots and
//! publishes it made (the ledger), and the availability watch. The
//! invariants judge these; nothing here decides anything.

use crate::supervisor::{FleetView, HostState};
use proto::NodeType;
use serde::Serialize;
use std::collections::BTreeMap;
use tokio::time::Instant;

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
    /// Whether it did what it was asked.
    pub ok: bool,
}

/// The reboots and publishes the scenario made: what it owns.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// Reboots the scenario gave each node.
    pub authorized: BTreeMap<u16, u32>,
    /// When each node was last rebooted by the scenario.
    pub rebooted_at: BTreeMap<u16, Instant>,
    /// When each type was last published.
    pub published_at: BTreeMap<NodeType, Instant>,
    /// Reboots in all.
    pub reboots: usize,
}

impl Ledger {
    /// The scenario reboots node `id` at `at`.
    pub fn reboot(&mut self, id: u16, at: Instant) {
        *self.authorized.entry(id).or_default() += 1;
        self.rebooted_at.insert(id, at);
        self.reboots += 1;
    }

    /// The scenario publishes a version of type `t` at `at`.
    pub fn publish(&mut self, t: NodeType, at: Instant) {
        self.published_at.insert(t, at);
    }
}

/// Redundancy groups and their members, by name.
pub type Groups = BTreeMap<String, Vec<u16>>;

/// What the availability watcher saw.
#[derive(Debug, Default)]
pub struct Watch {
    /// Armed once the whole fleet was first verified.
    pub armed: bool,
    /// Times and groups with no member running, first few kept.
    pub gaps: Vec<String>,
    /// How many such moments.
    pub gap_count: u64,
}

fn running(s: HostState) -> bool {
    matches!(s, HostState::Running | HostState::Verified)
}

impl Watch {
    /// Looks at one state of the fleet: every group without a running
    /// member is a gap (once the whole fleet was first verified).
    pub fn look(&mut self, v: &FleetView, groups: &Groups, t0: Instant) {
        if v.nodes.values().all(|n| n.state == HostState::Verified) {
            self.armed = true;
        }
        if !self.armed {
            return;
        }
        for (g, members) in groups {
            if members
                .iter()
                .all(|id| v.nodes.get(id).is_none_or(|n| !running(n.state)))
            {
                self.gap_count += 1;
                if self.gaps.len() < 10 {
                    let states: Vec<String> = members
                        .iter()
                        .map(|id| {
                            let state = v.nodes.get(id).map_or("?", |n| n.state.as_str());
                            format!("{id}:{state}")
                        })
                        .collect();
                    self.gaps.push(format!(
                        "{:.2} s: group {g} had no member running ({})",
                        t0.elapsed().as_secs_f64(),
                        states.join(" ")
                    ));
                }
            }
        }
    }
}
