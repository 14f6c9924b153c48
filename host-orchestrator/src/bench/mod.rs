//! Benchmarks that boot real fleets. They report measured figures side by
//! side from one run; they assert nothing (tests do that).

use crate::fleet::{Fleet, FleetBuilder, MasterSettings, NodeGroup};
use crate::holdoff::Policy;
use crate::report::Report;
use crate::testbed::{Artifacts, Options, Testbed};
use anyhow::{Result, bail};
use serde::Serialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub mod compare;
pub mod scale;
pub mod storms;

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

/// The staggered fleet: the library mix of `nodes` nodes on one segment,
/// one powering on every `stagger_ms`, under `master`.
pub fn staggered_fleet(nodes: usize, stagger_ms: u64, master: MasterSettings) -> Result<Fleet> {
    let mix = Fleet::default_mix(nodes)?;
    let mut fleet = FleetBuilder {
        master,
        ..FleetBuilder::default()
    };
    for (k, n) in mix.nodes.iter().enumerate() {
        // Too late to express is too late to allow: the check names it.
        let at = (k as u64).checked_mul(stagger_ms).map(i64::try_from);
        fleet.nodes.push(NodeGroup {
            start_after_ms: Some(at.and_then(Result::ok).unwrap_or(i64::MAX)),
            ..NodeGroup::new(n.node_type)
        });
    }
    fleet.build()
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

/// Boots the same staggered fleet under each hold-off policy; `each`
/// gets each policy's name and its fleet's report. Once `interrupt` is
/// cancelled the fleet running ends, and the rows so far come back with
/// `true`.
pub async fn policies(
    artifacts: &Artifacts,
    nodes: usize,
    stagger_ms: u64,
    interrupt: &CancellationToken,
    mut each: impl FnMut(&str, &Report),
) -> Result<(Vec<PolicyRow>, bool)> {
    // T = 1.5 s for every policy; the cap 10 s where the policy renews.
    let settings = |policy, max_wait_ms, shrink: Option<i64>| MasterSettings {
        policy: Some(policy),
        hold_off_ms: Some(1500),
        max_wait_ms,
        shrink_step_ms: shrink,
        floor_ms: shrink,
        ..MasterSettings::default()
    };
    let runs = [
        ("fixed", settings(Policy::Fixed, None, None)),
        ("renew", settings(Policy::Renew, Some(10_000), None)),
        ("shrink", settings(Policy::Shrink, Some(10_000), Some(300))),
        ("quorum", settings(Policy::Quorum, Some(10_000), None)),
    ];
    let mut rows = Vec::new();
    for (name, master) in runs {
        let fleet = staggered_fleet(nodes, stagger_ms, master)?;
        let timeout = Duration::from_secs(60) + Duration::from_millis(stagger_ms * nodes as u64);
        let mut options = Options::new(fleet, artifacts.clone());
        options.interrupt = interrupt.clone();
        let mut tb = Testbed::start(options).await?;
        let settled = tb.wait_settled(timeout).await;
        let report = tb.shutdown().await;
        each(name, &report);
        if interrupt.is_cancelled() {
            return Ok((rows, true));
        }
        if !settled {
            bail!(
                "policy {name}: the fleet did not settle in {}s",
                timeout.as_secs()
            );
        }
        rows.push(row(name, &report));
    }
    Ok((rows, false))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staggered_fleet_is_the_one_its_file_text_made() {
        let master = MasterSettings {
            policy: Some(Policy::Shrink),
            hold_off_ms: Some(1500),
            max_wait_ms: Some(10_000),
            shrink_step_ms: Some(300),
            floor_ms: Some(300),
            ..MasterSettings::default()
        };
        let built = staggered_fleet(20, 200, master).unwrap();
        let mut text = "[master]\npolicy = \"shrink\"\nhold_off_ms = 1500\nmax_wait_ms = 10000\n\
                        shrink_step_ms = 300\nfloor_ms = 300\n"
            .to_string();
        for (k, n) in Fleet::default_mix(20).unwrap().nodes.iter().enumerate() {
            text += &format!(
                "[[nodes]]\ntype = \"{}\"\nstart_after_ms = {}\n",
                n.node_type.name(),
                k * 200
            );
        }
        let parsed = Fleet::parse(&text).unwrap();
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
        assert_eq!(
            built.nodes[19].power_on_after,
            Duration::from_millis(19 * 200)
        );
        // Too late a power-on is refused by the fleet's check, not wrapped.
        let err = staggered_fleet(20, u64::MAX, MasterSettings::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("nodes[1].start_after_ms"),
            "{err:#}"
        );
    }
}
