//! The storm benchmark: the same scenarios on both clocks, side by side.
//! Per run: the scenario's time, the host's time for it, and how much
//! faster than real time it ran; per scenario: the virtual clock's host
//! time against the wall clock's. By default `ci/idle-600.toml` (ten
//! minutes of mostly waiting) and `ci/storm-40.toml` (51 reboots of a
//! 40-node library).

use crate::clock::ClockKind;
use crate::report::Verdict;
use crate::storm::{self, StormOptions, StormReport, scenario::Scenario};
use crate::testbed::Artifacts;
use anyhow::{Context, Result};
use board::strap::Clock;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct StormsOptions {
    /// Scenario files, each run on every clock.
    pub scenarios: Vec<PathBuf>,
    /// The clocks, in the order they run (each run says its own).
    #[serde(skip)]
    pub clocks: Vec<Clock>,
}

/// One scenario on one clock.
#[derive(Clone, Debug, Serialize)]
pub struct StormRun {
    /// The scenario's name.
    pub scenario: String,
    /// The clock that ran.
    pub clock: ClockKind,
    pub verdict: Verdict,
    pub nodes_verified: usize,
    pub nodes_total: usize,
    pub reboots: usize,
    /// The storm's length in scenario seconds (on its clock).
    pub scenario_s: f64,
    /// Host seconds the run took.
    pub wall_s: f64,
    /// Scenario seconds per host second: above 1, faster than real time.
    pub speed_vs_real_time: f64,
    /// The storm's run folder.
    pub run_dir: PathBuf,
}

/// One scenario's two clocks compared.
#[derive(Clone, Debug, Serialize)]
pub struct StormFigure {
    pub scenario: String,
    /// The virtual-clock run's host time over the wall-clock run's: below
    /// 1, the virtual clock finished sooner.
    pub virtual_over_wall_host_time: f64,
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct Storms {
    pub options: StormsOptions,
    pub runs: Vec<StormRun>,
    pub figures: Vec<StormFigure>,
    /// Stopped by Ctrl-C: the runs hold only what ran.
    pub interrupted: bool,
}

/// Loads every scenario first, so that a bad file is refused before any
/// fleet boots.
pub fn load(opts: &StormsOptions) -> Result<Vec<Scenario>> {
    anyhow::ensure!(!opts.scenarios.is_empty(), "--scenario: give at least one");
    anyhow::ensure!(!opts.clocks.is_empty(), "--clocks: give at least one");
    opts.scenarios
        .iter()
        .map(|p| Scenario::load(p).with_context(|| format!("--scenario {}", p.display())))
        .collect()
}

/// Runs every scenario (`scenarios`, as [`load`] read them) on every clock,
/// one after another, each in its own run folder under `dir`; `on_run`
/// sees each as it ends.
pub async fn storms(
    artifacts: &Artifacts,
    opts: &StormsOptions,
    scenarios: &[Scenario],
    dir: &Path,
    interrupt: &CancellationToken,
    mut on_run: impl FnMut(&StormRun, &StormReport),
) -> Result<Storms> {
    let mut runs = Vec::new();
    for scenario in scenarios {
        for &clock in &opts.clocks {
            if interrupt.is_cancelled() {
                break;
            }
            let name = format!("{}-{}", scenario.name, ClockKind::from(clock).as_str());
            let mut scenario = scenario.clone();
            scenario.fleet = scenario.fleet.with_clock(clock)?;
            let run_dir = dir.join(&name);
            let report = storm::run(StormOptions {
                scenario,
                artifacts: artifacts.clone(),
                run_dir: run_dir.clone(),
                seed: None,
                progress: false,
                master_exe: std::env::current_exe().ok(),
                interrupt: interrupt.child_token(),
            })
            .await
            .with_context(|| format!("storm {name}"))?;
            let run = run_of(&report, run_dir);
            on_run(&run, &report);
            runs.push(run);
        }
    }
    Ok(Storms {
        options: opts.clone(),
        figures: figures(&runs),
        runs,
        interrupted: interrupt.is_cancelled(),
    })
}

fn run_of(r: &StormReport, run_dir: PathBuf) -> StormRun {
    let t = &r.testbed;
    StormRun {
        scenario: r.scenario.clone(),
        clock: t.clock,
        verdict: t.verdict,
        nodes_verified: t.nodes_verified,
        nodes_total: t.nodes_total,
        reboots: r.reboots,
        scenario_s: r.duration_s,
        wall_s: t.wall_s,
        speed_vs_real_time: ratio(r.duration_s, t.wall_s),
        run_dir,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// For each scenario that ran on both clocks, the host times compared.
fn figures(runs: &[StormRun]) -> Vec<StormFigure> {
    let on = |name: &str, clock| {
        runs.iter()
            .find(|r| r.scenario == name && r.clock == clock)
            .map(|r| r.wall_s)
    };
    let mut names: Vec<&str> = runs.iter().map(|r| r.scenario.as_str()).collect();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (v, w) = (on(name, ClockKind::Virtual)?, on(name, ClockKind::Wall)?);
            Some(StormFigure {
                scenario: name.to_string(),
                virtual_over_wall_host_time: ratio(v, w),
            })
        })
        .collect()
}

/// The markdown table: a row per run, then the figures.
pub fn table(s: &Storms) -> String {
    let mut t = String::from(
        "| scenario | clock | verdict | verified | reboots | scenario s | host s | × real time |\n\
         |---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in &s.runs {
        t += &format!(
            "| {} | {} | {} | {}/{} | {} | {:.1} | {:.1} | {:.2} |\n",
            r.scenario,
            r.clock.as_str(),
            r.verdict,
            r.nodes_verified,
            r.nodes_total,
            r.reboots,
            r.scenario_s,
            r.wall_s,
            r.speed_vs_real_time
        );
    }
    for f in &s.figures {
        t += &format!(
            "\n{}: the virtual clock took {:.2} × the wall clock's host time",
            f.scenario, f.virtual_over_wall_host_time
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, clock: ClockKind, scenario_s: f64, wall_s: f64) -> StormRun {
        StormRun {
            scenario: scenario.into(),
            clock,
            verdict: Verdict::Pass,
            nodes_verified: 1,
            nodes_total: 1,
            reboots: 0,
            scenario_s,
            wall_s,
            speed_vs_real_time: ratio(scenario_s, wall_s),
            run_dir: PathBuf::new(),
        }
    }

    #[test]
    fn figures_pair_a_scenario_s_two_clocks() {
        let runs = vec![
            run("idle", ClockKind::Wall, 600.0, 601.0),
            run("idle", ClockKind::Virtual, 600.0, 50.0),
            run("only-virtual", ClockKind::Virtual, 10.0, 20.0),
        ];
        let f = figures(&runs);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].scenario, "idle");
        assert!((f[0].virtual_over_wall_host_time - 50.0 / 601.0).abs() < 1e-12);
        assert!((runs[1].speed_vs_real_time - 12.0).abs() < 1e-12);
        let t = table(&Storms {
            options: StormsOptions {
                scenarios: vec![],
                clocks: vec![],
            },
            runs,
            figures: f,
            interrupted: false,
        });
        assert!(
            t.contains("| idle | virtual | pass | 1/1 | 0 | 600.0 | 50.0 | 12.00 |"),
            "{t}"
        );
        assert!(
            t.contains("idle: the virtual clock took 0.08 × the wall clock's host time"),
            "{t}"
        );
    }

    #[test]
    fn bad_inputs_are_refused_before_anything_runs() {
        let none = StormsOptions {
            scenarios: vec![],
            clocks: vec![Clock::Virtual],
        };
        assert!(
            load(&none)
                .unwrap_err()
                .to_string()
                .starts_with("--scenario")
        );
        let missing = StormsOptions {
            scenarios: vec!["no/such/scenario.toml".into()],
            clocks: vec![Clock::Virtual],
        };
        let e = format!("{:#}", load(&missing).unwrap_err());
        assert!(e.contains("no/such/scenario.toml"), "{e}");
    }
}
