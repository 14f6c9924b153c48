//! The scale benchmark: fleets of virtio drive nodes (40, 100 and 200 by
//! default) broadcast one padded image on a paced CAN FD 1M/5M bus, every
//! node powered on at once. Per size: time to all verified against its
//! floor (hold-off + the image's bus time + one node's boot, that boot
//! measured by a 1-node run first), private memory per node, the host CPU
//! the fleet used, and receive-queue overruns.

use super::compare::{self, CompareOptions, Delivery, Run, Shape};
use crate::report::Report;
use crate::testbed::Artifacts;
use anyhow::{Context, Result};
use board::strap::Clock;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleOptions {
    /// Fleet sizes.
    pub nodes: Vec<usize>,
    /// The drive image is padded to this many bytes.
    pub image_size: u32,
    /// The fixed hold-off window.
    pub hold_off_ms: u64,
    /// How long each idle fleet's CPU use is sampled.
    pub idle_s: u64,
    /// A run that has not settled by then is reported as such.
    pub run_timeout_s: u64,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            nodes: vec![40, 100, 200],
            image_size: 256 * 1024,
            hold_off_ms: 500,
            idle_s: 5,
            run_timeout_s: 300,
        }
    }
}

impl ScaleOptions {
    /// The comparison's options for the same runs (virtio only).
    fn compare(&self) -> CompareOptions {
        CompareOptions {
            nodes: self.nodes.clone(),
            image_size: self.image_size,
            transports: vec!["virtio".into()],
            hold_off_ms: self.hold_off_ms,
            idle_s: self.idle_s,
            run_timeout_s: self.run_timeout_s,
        }
    }
}

/// One fleet size, measured.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleRow {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Nodes verified when the run ended.
    pub verified: usize,
    /// From the fleet's power-on to the last node verified; `None` when
    /// not every node was verified in time.
    pub time_to_all_verified_s: Option<f64>,
    /// Hold-off window + the first pass's bus time + one node's boot.
    pub floor_s: Option<f64>,
    /// Time to all verified over its floor.
    pub over_floor: Option<f64>,
    /// The first pass's bus time over its wall time.
    pub real_time_factor: Option<f64>,
    /// Proportional set size per node process, MiB, with the fleet idle.
    pub pss_per_node_mib: Option<f64>,
    /// CPU the node processes used together while the first pass ran, in
    /// cores.
    pub cpu_receiving_fleet: Option<f64>,
    /// CPU the idle fleet used, in cores.
    pub cpu_idle_fleet: Option<f64>,
    /// Frames a node's full receive queue could not take.
    pub overruns: u64,
    /// Object bytes sent again in repair.
    pub repair_bytes: u64,
}

/// Everything one scale run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Scale {
    /// What was run.
    pub options: ScaleOptions,
    /// One node's own boot: the 1-node run's time to verified less its
    /// hold-off window and its first pass's wall time.
    pub one_node_boot_s: Option<f64>,
    /// A row per fleet size, in the order run.
    pub rows: Vec<ScaleRow>,
    /// Stopped by the user before every fleet ran.
    pub interrupted: bool,
}

/// The row of one run, given one node's boot.
pub fn row(r: &Run, one_node_boot_s: Option<f64>, hold_off_ms: u64) -> ScaleRow {
    let floor_s = one_node_boot_s.map(|boot| hold_off_ms as f64 / 1e3 + r.first_pass_bus_s + boot);
    ScaleRow {
        nodes: r.nodes,
        verified: r.verified,
        time_to_all_verified_s: r.time_to_all_verified_s,
        floor_s,
        over_floor: r.time_to_all_verified_s.zip(floor_s).map(|(t, f)| t / f),
        real_time_factor: (r.first_pass_wall_s > 0.0)
            .then(|| r.first_pass_bus_s / r.first_pass_wall_s),
        pss_per_node_mib: r.pss_per_node_mib,
        cpu_receiving_fleet: r.cpu_receiving_per_node.map(|c| c * r.nodes as f64),
        cpu_idle_fleet: r.cpu_idle_fleet,
        overruns: r.overruns,
        repair_bytes: r.repair_bytes,
    }
}

/// One node's boot from the 1-node run.
fn one_node_boot(r: &Run, hold_off_ms: u64) -> Option<f64> {
    Some(r.time_to_all_verified_s? - hold_off_ms as f64 / 1e3 - r.first_pass_wall_s)
}

/// Boots one node, then each fleet size; `progress` hears about each run
/// as it ends, with its fleet's report. Once `interrupt` is cancelled the
/// fleet running ends, and the rows so far come back.
pub async fn scale(
    artifacts: &Artifacts,
    opts: &ScaleOptions,
    interrupt: &CancellationToken,
    mut progress: impl FnMut(&Run, &Report),
) -> Result<Scale> {
    let copts = opts.compare();
    let shape = |nodes| Shape {
        transport: "virtio",
        nodes,
        delivery: Delivery::Broadcast,
        paced: true,
        host_cost: nodes > 1,
        clock: Clock::Wall,
    };
    let mut out = Scale {
        options: opts.clone(),
        one_node_boot_s: None,
        rows: Vec::new(),
        interrupted: false,
    };
    for nodes in std::iter::once(1).chain(opts.nodes.iter().copied()) {
        let (r, report) = compare::run(artifacts, shape(nodes), &copts, interrupt)
            .await
            .with_context(|| format!("virtio, {nodes} nodes"))?;
        progress(&r, &report);
        if nodes == 1 && out.one_node_boot_s.is_none() {
            out.one_node_boot_s = one_node_boot(&r, opts.hold_off_ms);
        } else {
            out.rows
                .push(row(&r, out.one_node_boot_s, opts.hold_off_ms));
        }
        if interrupt.is_cancelled() {
            out.interrupted = true;
            break;
        }
    }
    Ok(out)
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "—".into(), f)
}

/// The scale run as one markdown table: a row per fleet size.
pub fn table(s: &Scale) -> String {
    let o = &s.options;
    let mut out = format!(
        "Scale: virtio drive nodes, the drive image padded to {} bytes, paced CAN FD 1M/5M, fixed hold-off {} ms, every node powered on at once; one node's boot {}.\n\n\
         | nodes | verified | time to all verified | floor | / floor (≤ 1.2) | real-time factor | PSS per node | fleet CPU, first pass | idle fleet CPU | overruns | repair bytes |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        o.image_size,
        o.hold_off_ms,
        opt(s.one_node_boot_s, |b| format!("{b:.2} s")),
    );
    let secs = |v| opt(v, |t| format!("{t:.2} s"));
    let cores = |v| opt(v, |c| format!("{c:.2} cores"));
    for r in &s.rows {
        out += &format!(
            "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.nodes,
            r.verified,
            r.nodes,
            secs(r.time_to_all_verified_s),
            secs(r.floor_s),
            opt(r.over_floor, |x| format!("{x:.2}")),
            opt(r.real_time_factor, |x| format!("{x:.3}")),
            opt(r.pss_per_node_mib, |m| format!("{m:.1} MiB")),
            cores(r.cpu_receiving_fleet),
            cores(r.cpu_idle_fleet),
            r.overruns,
            r.repair_bytes,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(nodes: usize, ttav: Option<f64>) -> Run {
        Run {
            transport: "virtio".into(),
            delivery: Delivery::Broadcast,
            paced: true,
            clock: crate::clock::ClockKind::Wall,
            wall_s: 0.0,
            first_pass_host_s: None,
            nodes,
            verified: if ttav.is_some() { nodes } else { nodes - 1 },
            time_to_all_verified_s: ttav,
            sessions: 1,
            object_bytes: 262_304,
            bytes_sent: 262_304,
            repair_bytes: 0,
            bus_s: 0.7,
            first_pass_bus_s: 0.6,
            first_pass_wall_s: 0.75,
            first_session_s: 0.9,
            overruns: 2,
            cpu_receiving_per_node: Some(0.01),
            cpu_idle_fleet: Some(0.05),
            pss_per_node_mib: Some(18.5),
        }
    }

    #[test]
    fn a_row_sets_the_time_against_the_floor_of_its_own_bus_time() {
        let one = run(1, Some(1.5));
        // 1.5 s - 0.5 s window - 0.75 s first pass.
        let boot = one_node_boot(&one, 500).unwrap();
        assert!((boot - 0.25).abs() < 1e-9, "{boot}");
        let r = row(&run(40, Some(1.62)), Some(boot), 500);
        let floor = r.floor_s.unwrap();
        assert!((floor - (0.5 + 0.6 + 0.25)).abs() < 1e-9, "{floor}");
        assert!((r.over_floor.unwrap() - 1.2).abs() < 1e-9);
        assert!((r.cpu_receiving_fleet.unwrap() - 0.4).abs() < 1e-9);
        assert!((r.real_time_factor.unwrap() - 0.8).abs() < 1e-9);
        // Unfinished: no time, so no ratio; no boot, no floor.
        let r = row(&run(200, None), Some(boot), 500);
        assert_eq!((r.verified, r.over_floor), (199, None));
        assert_eq!(row(&run(40, Some(1.0)), None, 500).floor_s, None);
    }

    #[test]
    fn the_table_has_a_row_per_fleet_size() {
        let s = Scale {
            options: ScaleOptions::default(),
            one_node_boot_s: Some(0.25),
            rows: vec![
                row(&run(40, Some(1.62)), Some(0.25), 500),
                row(&run(200, None), Some(0.25), 500),
            ],
            interrupted: false,
        };
        let text = table(&s);
        assert!(text.contains("one node's boot 0.25 s"), "{text}");
        assert!(
            text.contains("| 40 | 40/40 | 1.62 s | 1.35 s | 1.20 | 0.800 | 18.5 MiB | 0.40 cores | 0.05 cores | 2 | 0 |"),
            "{text}"
        );
        assert!(
            text.contains("| 200 | 199/200 | — | 1.35 s | — | 0.800 | 18.5 MiB | 2.00 cores | 0.05 cores | 2 | 0 |"),
            "{text}"
        );
    }
}
