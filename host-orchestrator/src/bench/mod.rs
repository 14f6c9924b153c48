//! Benchmarks that boot real fleets. They report measured figures side by
//! side from one run; they assert nothing (tests do that).

use crate::fleet::Fleet;
use crate::report::Report;
use crate::testbed::{Artifacts, Options, Testbed};
use anyhow::{Result, bail};
use serde::Serialize;
use std::time::Duration;

pub mod compare;

/// One policy's run of the staggered boot.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyRow {
    /// Policy name.
    pub policy: String,
    /// Hold-off windows opened.
    pub windows: usize,
    /// Sessions broadcast.
    pub broadcasts: usize,
    /// Object bytes on the bus, repair included.
    pub bytes: u64,
    /// Of which, repair.
    pub repair_bytes: u64,
    /// Nodes that joined a running session late.
    pub late_joins: usize,
    /// Seconds from the first power-on to the last node verified.
    pub time_to_all_verified_s: f64,
    /// Nodes verified.
    pub verified: usize,
    /// Nodes in the fleet.
    pub nodes: usize,
}

/// The staggered fleet: the library mix of `nodes` nodes, one powering on
/// every `stagger_ms`, under `[master]` settings `master`.
pub fn staggered_fleet(nodes: usize, stagger_ms: u64, master: &str) -> Result<Fleet> {
    let mix = Fleet::default_mix(nodes)?;
    let mut text = format!("[master]\n{master}\n");
    for (k, n) in mix.nodes.iter().enumerate() {
        text += &format!(
            "[[nodes]]\ntype = \"{}\"\nstart_after_ms = {}\n",
            n.node_type.name(),
            k as u64 * stagger_ms
        );
    }
    Fleet::parse(&text)
}

fn row(policy: &str, r: &Report) -> PolicyRow {
    PolicyRow {
        policy: policy.to_string(),
        windows: r.windows.len(),
        broadcasts: r.broadcasts.len(),
        bytes: r.broadcasts.iter().map(|b| b.bytes + b.repair_bytes).sum(),
        repair_bytes: r.broadcasts.iter().map(|b| b.repair_bytes).sum(),
        late_joins: r.broadcasts.iter().map(|b| b.late_joiners.len()).sum(),
        time_to_all_verified_s: r.elapsed_s,
        verified: r.nodes_verified,
        nodes: r.nodes_total,
    }
}

/// Boots the same staggered fleet under each hold-off policy.
pub async fn policies(
    artifacts: &Artifacts,
    nodes: usize,
    stagger_ms: u64,
) -> Result<Vec<PolicyRow>> {
    let runs = [
        ("fixed", "policy = \"fixed\"\nhold_off_ms = 1500"),
        (
            "renew",
            "policy = \"renew\"\nhold_off_ms = 1500\nmax_wait_ms = 10000",
        ),
        (
            "shrink",
            "policy = \"shrink\"\nhold_off_ms = 1500\nmax_wait_ms = 10000\nshrink_step_ms = 300\nfloor_ms = 300",
        ),
        (
            "quorum",
            "policy = \"quorum\"\nhold_off_ms = 1500\nmax_wait_ms = 10000",
        ),
    ];
    let mut rows = Vec::new();
    for (name, master) in runs {
        let fleet = staggered_fleet(nodes, stagger_ms, master)?;
        let timeout = Duration::from_secs(60) + Duration::from_millis(stagger_ms * nodes as u64);
        let mut tb = Testbed::start(Options::new(fleet, artifacts.clone())).await?;
        let settled = tb.wait_settled(timeout).await;
        let report = tb.shutdown().await;
        if !settled {
            bail!(
                "policy {name}: the fleet did not settle in {}s",
                timeout.as_secs()
            );
        }
        rows.push(row(name, &report));
    }
    Ok(rows)
}

/// A markdown table of policy rows.
pub fn policy_table(rows: &[PolicyRow], nodes: usize, stagger_ms: u64) -> String {
    let mut out = format!(
        "Staggered boot: {nodes} nodes, one powering on every {stagger_ms} ms; hold-off T = 1.5 s, max_wait = 10 s\n\n\
         | policy | windows | broadcasts | late joins | bytes on bus (repair) | time to all verified | verified |\n\
         |---|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} ({}) | {:.2} s | {}/{} |\n",
            r.policy,
            r.windows,
            r.broadcasts,
            r.late_joins,
            r.bytes,
            r.repair_bytes,
            r.time_to_all_verified_s,
            r.verified,
            r.nodes
        );
    }
    out
}
