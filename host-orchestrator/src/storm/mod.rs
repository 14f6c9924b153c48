//! Storms: a fleet, a timeline of reboots, faults, publishes and rolling
//! updates, and the invariants of DESIGN.md checked on the run.
//!
//! The availability invariant is watched all the time (on every change of
//! any node's state); the others are judged on what the run left behind.
//! [`scenario`] reads scenario files, this module runs their timeline,
//! [`record`] keeps what the run did and saw, [`invariants`] judges it and
//! [`junit`] writes the verdict for CI.

pub mod invariants;
pub mod junit;
pub mod record;
pub mod scenario;

use crate::clock::Moment;
use crate::fleet::Fleet;
use crate::report::{Report, Verdict};
use crate::seeds::{self, Seeds};
use crate::supervisor::{FleetView, HostState};
use crate::testbed::{Artifacts, Options, Testbed};
use anyhow::{Context, Result};
use bus_bridge::client::{FrameReader, FrameWriter};
use invariants::{Evidence, Interrupted};
use proto::msg::{self, Message};
use rand_chacha::ChaCha8Rng;
use record::{FaultChange, FaultLog, Groups, Ledger, Made, Pick, Skip};
use scenario::{Action, Entry, Reboot, Scenario, Select, Step};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use invariants::Check;
pub use record::Event;

/// A storm's report: the testbed's report plus events and invariants.
#[derive(Clone, Debug, Serialize)]
pub struct StormReport {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used (every seed of the run derives from it; the testbed's
    /// report lists them under `seeds`).
    pub seed: u64,
    /// The scenario as read: `bootcast storm --replay` runs it again.
    pub scenario_source: scenario::Source,
    /// Reboots the storm ran (power cycles, resets, soft reboots).
    pub reboots: usize,
    /// Scenario seconds until the run ended.
    pub duration_s: f64,
    /// Largest memory (PSS) of all node processes together, MiB.
    pub peak_fleet_pss_mib: f64,
    /// What the storm did.
    pub events: Vec<Event>,
    /// The invariants and expectations.
    pub invariants: Vec<Check>,
    /// The reboots and faults it made, timed (the run's event log and
    /// timeline; `events` says the same for the report).
    #[serde(skip)]
    pub made: Made,
    /// The testbed's report (its verdict is the storm's).
    #[serde(flatten)]
    pub testbed: Report,
}

/// How to run a storm.
pub struct StormOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// Built artifacts.
    pub artifacts: Artifacts,
    /// The run folder (kept: logs and the bus capture stay there).
    pub run_dir: PathBuf,
    /// Replaces the scenario's seed.
    pub seed: Option<u64>,
    /// Print progress lines.
    pub progress: bool,
    /// The `bootcast` executable (for a backup master).
    pub master_exe: Option<PathBuf>,
    /// Cancelled when the user asks the storm to stop: the timeline stops,
    /// the testbed ends the graceful way, and the storm is judged as far as
    /// it ran (and fails).
    pub interrupt: CancellationToken,
}

/// A storm in progress.
struct Run {
    tb: Testbed,
    rng: ChaCha8Rng,
    t0: Instant,
    events: Vec<Event>,
    ledger: Ledger,
    faults: FaultLog,
    peak_pss_kib: u64,
    tool: Option<FrameWriter>,
    _tool_reader: Option<FrameReader>,
}

impl Run {
    fn new(tb: Testbed, seeds: &Seeds, faults: FaultLog) -> Run {
        Run {
            t0: tb.started_at(),
            tb,
            rng: seeds.actions(),
            events: Vec::new(),
            ledger: Ledger::default(),
            faults,
            peak_pss_kib: 0,
            tool: None,
            _tool_reader: None,
        }
    }

    /// Scenario time now, on the run's clock.
    fn at_s(&self) -> f64 {
        self.tb.now().as_secs_f64()
    }

    fn event(&mut self, action: &str, line: usize, nodes: Vec<u16>, detail: String, ok: bool) {
        self.event_skipping(action, line, nodes, detail, ok, Vec::new(), Vec::new());
    }

    #[allow(clippy::too_many_arguments)]
    fn event_skipping(
        &mut self,
        action: &str,
        line: usize,
        nodes: Vec<u16>,
        detail: String,
        ok: bool,
        skipped: Vec<Skip>,
        picked: Vec<Pick>,
    ) {
        let t_s = self.at_s();
        if !ok {
            tracing::warn!(action, line, "{detail}");
        }
        crate::live::stderr::eprintln(&format!("[{t_s:7.2}s] {action} {nodes:?}: {detail}"));
        self.events.push(Event {
            t_s,
            action: action.to_string(),
            line,
            nodes,
            detail,
            ok,
            skipped,
            picked,
        });
    }

    /// Records an action on no node in particular: what it did, or its error.
    fn outcome(&mut self, action: &str, line: usize, r: Result<String>) {
        let (ok, detail) = match r {
            Ok(detail) => (true, detail),
            Err(e) => (false, format!("{e:#}")),
        };
        self.event(action, line, vec![], detail, ok);
    }

    /// The selected nodes; `random = k` draws from the scenario's seed.
    fn select(&mut self, s: &Select) -> Vec<u16> {
        let mut ids = s.nodes.clone();
        if let Some(k) = s.random {
            ids = seeds::choose(&mut self.rng, &ids, k);
            ids.sort();
        }
        ids
    }

    /// Sleeps until scenario time `at`, keeping the testbed attended. On
    /// the virtual clock the fleet is then held at `at` until the next
    /// wait, so that the action that follows lands at that point of
    /// virtual time, whatever the host's speed.
    async fn until(&mut self, at: Duration) {
        if self.tb.on_virtual_clock() {
            self.tb.pause_until(Moment::from_duration(at)).await;
        } else {
            let left = (self.t0 + at).saturating_duration_since(Instant::now());
            self.tb.wait_until(left, |_| false).await;
        }
        self.sample_memory();
    }

    fn sample_memory(&mut self) {
        self.peak_pss_kib = self.peak_pss_kib.max(self.tb.fleet_pss_kib());
    }

    /// Why node `id` cannot be rebooted `how` now, if it cannot: it is
    /// powered off, or (a soft reboot) its app is not running.
    fn cannot_reboot(&self, id: u16, how: Reboot) -> Option<String> {
        if !self.tb.powered().contains(&id) {
            return Some("is powered off".into());
        }
        let state = self.tb.fleet().nodes.get(&id).map(|n| n.state);
        let running = matches!(state, Some(HostState::Running | HostState::Verified));
        (how == Reboot::SoftReboot && !running).then(|| {
            let state = state.map_or("unknown", |s| s.as_str());
            format!("is {state}: a soft reboot needs its app running")
        })
    }

    async fn reboot(&mut self, how: Reboot, id: u16) -> Result<()> {
        self.ledger.reboot(id, how, self.tb.now());
        if how == Reboot::PowerCycle {
            self.faults.add(self.tb.now(), FaultChange::PowerCycled(id));
        }
        match how {
            Reboot::PowerCycle => self.tb.power_cycle(id).await,
            Reboot::Reset => self.tb.reset(id).await,
            Reboot::SoftReboot => self.tb.soft_reboot(id).await,
        }
    }

    /// The bus's control handle.
    fn bus(&self) -> Result<bus_bridge::BridgeControl> {
        self.tb.bus().context("no bus")
    }

    /// Carries out a fault or link action on the bus: what it did, and the
    /// change for the fault log.
    async fn bus_action(&self, action: &Action) -> Result<(String, FaultChange)> {
        let bus = self.bus()?;
        let said = |changed: bool| if changed { "changed" } else { "already so" };
        Ok(match action {
            Action::InjectFault(f) => {
                let id = bus.add_fault(f.clone()).await?;
                (format!("fault {id}: {f:?}"), FaultChange::Rule(f.clone()))
            }
            Action::ClearFaults => {
                let n = bus.clear_faults().await?;
                (format!("{n} faults cleared"), FaultChange::Cleared)
            }
            Action::CutLink(l) => (
                format!("link {l} {}", said(bus.cut(l).await?)),
                FaultChange::Cut(l.clone()),
            ),
            Action::RestoreLink(l) => (
                format!("link {l} {}", said(bus.restore(l).await?)),
                FaultChange::Restored(l.clone()),
            ),
            other => anyhow::bail!("{} is no bus action", other.name()),
        })
    }

    async fn run_action(&mut self, line: usize, action: &Action) {
        let name = action.name();
        match action {
            Action::Reboot(how, s) => self.reboot_nodes(name, line, s, Some(*how)).await,
            Action::MixedReboot(s) => self.reboot_nodes(name, line, s, None).await,
            Action::Disturb(s) => self.disturb(name, line, s).await,
            Action::InjectFault(_)
            | Action::ClearFaults
            | Action::CutLink(_)
            | Action::RestoreLink(_) => {
                let r = self.bus_action(action).await;
                let r = r.map(|(detail, change)| {
                    self.faults.add(self.tb.now(), change);
                    detail
                });
                self.outcome(name, line, r);
            }
            Action::KillMaster => {
                self.tb.kill_primary_master().await;
                self.faults.add(self.tb.now(), FaultChange::MasterKilled);
                self.event(name, line, vec![], "primary master killed".into(), true);
            }
            Action::Publish { node_type, version } => {
                let r = self.tb.publish(*node_type, *version).await;
                self.ledger.publish(*node_type, self.tb.now());
                let r = r.map(|p| {
                    let v = images::build::format_version(p.version);
                    format!("{} {v} published", node_type.name())
                });
                self.outcome(name, line, r);
            }
            Action::RollingUpdate {
                types,
                version,
                steps,
                step_timeout,
            } => {
                self.rolling_update(name, line, types, *version, steps, *step_timeout)
                    .await
            }
        }
    }

    /// Reboots the selected nodes `how`, or each one of the three ways
    /// drawn from the scenario's seed. A node mid-transition (powered off,
    /// or not running its app for a soft reboot) is left alone and recorded
    /// as skipped.
    async fn reboot_nodes(&mut self, name: &str, line: usize, s: &Select, how: Option<Reboot>) {
        let ids = self.select(s);
        // Every draw first, so that what the seed picks does not depend on
        // what the nodes were doing.
        let picks: Vec<(u16, Reboot)> = ids
            .iter()
            .map(|&id| {
                let how = how.unwrap_or_else(|| {
                    Reboot::ALL[seeds::below(&mut self.rng, Reboot::ALL.len() as u64) as usize]
                });
                (id, how)
            })
            .collect();
        let (mut done, mut errors, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        for &(id, how) in &picks {
            if let Some(reason) = self.cannot_reboot(id, how) {
                skipped.push(Skip {
                    node: id,
                    reason: format!("{reason} ({} skipped)", how.name()),
                });
                continue;
            }
            match self.reboot(how, id).await {
                Ok(()) => done.push(format!("{id}:{}", how.name())),
                Err(e) => errors.push(format!("node {id}: {e:#}")),
            }
        }
        let ok = errors.is_empty();
        let mut detail = if ok { done } else { errors }.join(" ");
        for s in &skipped {
            detail += &format!(" (node {} {})", s.node, s.reason);
        }
        let picked = picks
            .iter()
            .map(|&(node, how)| Pick {
                node,
                how: how.name(),
            })
            .collect();
        self.event_skipping(name, line, ids, detail, ok, skipped, picked);
    }

    /// A `Reboot` the scenario does not own, from the tool port, to nodes
    /// whose app runs (others are skipped: nothing would see it).
    async fn disturb(&mut self, name: &str, line: usize, s: &Select) {
        let ids = self.select(s);
        let (mut ok, mut skipped) = (true, Vec::new());
        for id in &ids {
            match self.cannot_reboot(*id, Reboot::SoftReboot) {
                Some(reason) => skipped.push(Skip { node: *id, reason }),
                None => ok &= self.tool_reboot(*id).await.is_ok(),
            }
        }
        let detail = "a Reboot the scenario does not own, from the tool port";
        self.event_skipping(name, line, ids, detail.into(), ok, skipped, Vec::new());
    }

    /// Publishes `version` of `types`, then runs the steps in order; stops
    /// at the first that fails.
    async fn rolling_update(
        &mut self,
        name: &str,
        line: usize,
        types: &[proto::NodeType],
        version: u32,
        steps: &[Step],
        step_timeout: Duration,
    ) {
        for t in types {
            match self.tb.publish(*t, version).await {
                Ok(_) => self.ledger.publish(*t, self.tb.now()),
                Err(e) => {
                    let detail = format!("publishing {}: {e:#}", t.name());
                    self.event(name, line, vec![], detail, false);
                    return;
                }
            }
        }
        for (k, step) in steps.iter().enumerate() {
            if !self
                .rolling_step(name, line, k, step, version, step_timeout)
                .await
            {
                return;
            }
        }
    }

    /// Soft-reboots step `k`'s nodes and waits until they all run
    /// `version`; says whether they do in time.
    async fn rolling_step(
        &mut self,
        name: &str,
        line: usize,
        k: usize,
        step: &Step,
        version: u32,
        timeout: Duration,
    ) -> bool {
        let ids = step.nodes.clone();
        // A member mid-transition is waited for: the step reboots running apps.
        let running = |v: &FleetView| {
            ids.iter().all(|id| {
                v.nodes
                    .get(id)
                    .is_some_and(|n| matches!(n.state, HostState::Running | HostState::Verified))
            })
        };
        if !self.tb.wait_until(timeout, running).await {
            let detail =
                format!("step {k}: its nodes were not all running within the step timeout");
            self.event(name, line, ids.clone(), detail, false);
            return false;
        }
        for id in &ids {
            if let Err(e) = self.reboot(Reboot::SoftReboot, *id).await {
                let detail = format!("step {k}: node {id}: {e:#}");
                self.event(name, line, ids.clone(), detail, false);
                return false;
            }
        }
        let done = self
            .tb
            .wait_until(timeout, |view| {
                ids.iter().all(|id| {
                    view.nodes.get(id).is_some_and(|n| {
                        n.state == HostState::Verified && n.version == Some(version)
                    })
                })
            })
            .await;
        let detail = format!(
            "step {k} (sets {:?}): {} on {}",
            step.sets,
            if done {
                "all verified"
            } else {
                "NOT all verified in time"
            },
            images::build::format_version(version)
        );
        self.event(name, line, ids, detail, done);
        done
    }

    /// Runs every firing of the timeline in time order. Stops early when
    /// the user interrupts, saying before which entry (its line).
    async fn play(&mut self, timeline: &[Entry]) -> Option<usize> {
        for (at, i) in firings(timeline) {
            self.until(at).await;
            let e = &timeline[i];
            if self.tb.interrupted() {
                return Some(e.line);
            }
            self.run_action(e.line, &e.action).await;
        }
        None
    }

    /// After the last action: a reboot takes a moment to show (a node still
    /// says it runs until it asks again); then waits until every node is
    /// verified (or has failed for good) since its last reboot, until the
    /// deadline.
    async fn settle(&mut self, scenario: &Scenario) {
        if let Some(last) = last_action_at(&scenario.timeline) {
            self.until(last + Duration::from_secs(2)).await;
        }
        let left = scenario
            .expect
            .all_verified_by
            .saturating_sub(self.tb.now().saturating_duration_since(Moment::ZERO));
        let rebooted = self.ledger.rebooted_at.clone();
        let since_reboot = move |v: &FleetView| {
            v.settled()
                && v.nodes.iter().all(|(id, n)| {
                    n.state == HostState::Failed
                        || rebooted
                            .get(id)
                            .is_none_or(|r| n.verified_at.is_some_and(|at| at > *r))
                })
        };
        self.tb.wait_until(left, since_reboot).await;
        self.sample_memory();
    }

    /// Sends `Reboot` to `id` from the tool port (not the supervisor's).
    async fn tool_reboot(&mut self, id: u16) -> Result<()> {
        if self.tool.is_none() {
            let (r, w) = bus_bridge::client::connect(&self.tb.tool_port()).await?;
            self.tool = Some(w);
            self._tool_reader = Some(r);
        }
        let frame = Message::Reboot(msg::Reboot {
            target: id,
            target_type: 0,
            reason: proto::msg::RebootReason::Disturbance as u8,
        })
        .to_frame(proto::msg::TOOL)
        .map_err(|e| anyhow::anyhow!("cannot encode: {e:?}"))?;
        self.tool
            .as_mut()
            .context("tool port")?
            .send(&frame)
            .await?;
        Ok(())
    }
}

/// Every firing of every entry, in time order (stable: file order at a
/// tie), as (scenario time, entry index).
fn firings(timeline: &[Entry]) -> Vec<(Duration, usize)> {
    let mut firings = Vec::new();
    for (i, e) in timeline.iter().enumerate() {
        let mut at = e.at;
        loop {
            firings.push((at, i));
            match (e.every, e.until) {
                (Some(every), Some(until)) if at + every <= until => at += every,
                _ => break,
            }
        }
    }
    firings.sort_by_key(|f| f.0);
    firings
}

/// When the timeline's last action runs (its last repetition).
fn last_action_at(timeline: &[Entry]) -> Option<Duration> {
    timeline.iter().map(|e| e.until.unwrap_or(e.at)).max()
}

/// The fleet's redundancy groups.
fn groups(fleet: &Fleet) -> Groups {
    let mut g = Groups::new();
    for n in &fleet.nodes {
        if let Some(name) = &n.group {
            g.entry(name.clone()).or_default().push(n.id);
        }
    }
    g
}

fn testbed_options(opts: &StormOptions, seeds: &Seeds) -> Options {
    let mut tb_opts = Options::new(opts.scenario.fleet.clone(), opts.artifacts.clone());
    tb_opts.seeds = Some(seeds.clone());
    tb_opts.run_dir = Some(opts.run_dir.clone());
    tb_opts.progress = opts.progress;
    tb_opts.master_exe = opts.master_exe.clone();
    tb_opts.interrupt = opts.interrupt.clone();
    tb_opts
}

/// The scenario and seed of a storm's JSON report, to run it again.
pub fn replay_of(report: &std::path::Path) -> Result<(Scenario, u64)> {
    #[derive(serde::Deserialize)]
    struct Replay {
        seed: u64,
        scenario_source: scenario::Source,
    }
    let text = std::fs::read_to_string(report)
        .with_context(|| format!("--replay: cannot read {}", report.display()))?;
    let r: Replay = serde_json::from_str(&text).with_context(|| {
        format!(
            "--replay: {} is not a storm report (it needs `seed` and `scenario_source`)",
            report.display()
        )
    })?;
    let scenario = Scenario::from_source(r.scenario_source)
        .with_context(|| format!("--replay: the scenario in {}", report.display()))?;
    Ok((scenario, r.seed))
}

/// Runs a storm to its end and judges it.
pub async fn run(opts: StormOptions) -> Result<StormReport> {
    let scenario = &opts.scenario;
    let seed = opts.seed.unwrap_or(scenario.seed);
    let seeds = Seeds::derive(seed, scenario.fleet.nodes.iter().map(|n| n.id));
    let tb = Testbed::start(testbed_options(&opts, &seeds)).await?;
    let groups = groups(&scenario.fleet);
    let faults = FaultLog::of_fleet(&scenario.fleet.faults, Moment::ZERO);
    let mut run = Run::new(tb, &seeds, faults);
    let stopped_before = run.play(&scenario.timeline).await;
    run.settle(scenario).await;
    let duration_s = run.at_s();
    // When the last node was (last) verified, if all are.
    let all_verified_at = {
        let v = run.tb.fleet();
        v.nodes
            .values()
            .map(|n| {
                (n.state == HostState::Verified)
                    .then_some(n.verified_at)
                    .flatten()
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|t| t.into_iter().max())
            .map(|t| t.saturating_duration_since(Moment::ZERO))
    };
    // Judged before the testbed's own teardown drops frames.
    let bus_at_end = run.tb.bus_stats();
    let testbed = run.tb.shutdown().await;
    let evidence = Evidence {
        report: &testbed,
        events: &run.events,
        ledger: &run.ledger,
        faults: &run.faults,
        bus_at_end: bus_at_end.as_ref(),
        groups: &groups,
        all_verified_at,
        end_s: duration_s,
    };
    let mut invariants = invariants::judge(&evidence, &scenario.expect);
    if opts.interrupt.is_cancelled() {
        let at_s = duration_s;
        invariants.push(
            Interrupted {
                at_s,
                stopped_before,
            }
            .check(),
        );
    }
    let mut report = StormReport {
        scenario: scenario.name.clone(),
        seed,
        scenario_source: scenario.source.clone(),
        reboots: run.ledger.reboots,
        duration_s,
        peak_fleet_pss_mib: run.peak_pss_kib as f64 / 1024.0,
        made: Made::of(&run.ledger, &run.faults, Moment::ZERO),
        events: run.events,
        invariants,
        testbed,
    };
    report.testbed.verdict = Verdict::of(report.invariants.iter().all(|c| c.pass));
    Ok(report)
}

impl StormReport {
    /// The verdict table: one row per check, then failing nodes.
    pub fn table(&self) -> String {
        let mut out = format!(
            "storm {} (seed {}): {} reboots in {:.1} s ({} clock; {:.1} s wall); peak fleet memory {:.0} MiB\n\n| check | result | evidence |\n|---|---|---|\n",
            self.scenario,
            self.seed,
            self.reboots,
            self.duration_s,
            self.testbed.clock.as_str(),
            self.testbed.wall_s,
            self.peak_fleet_pss_mib
        );
        for c in &self.invariants {
            let first = c.evidence.lines().next().unwrap_or("");
            let more = c.evidence.lines().count().saturating_sub(1);
            out += &format!(
                "| {} | {} | {}{} |\n",
                c.name,
                if c.pass { "pass" } else { "FAIL" },
                first,
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            );
        }
        for n in self.testbed.nodes.iter().filter(|n| !n.verified) {
            out += &format!("node {} ({}): {}\n", n.id, n.node_type, n.diagnosis());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firings_repeat_entries_and_keep_file_order_at_a_tie() {
        let entry = |at: u64, every: Option<u64>, until: Option<u64>| Entry {
            line: 1,
            at: Duration::from_secs(at),
            action: Action::KillMaster,
            every: every.map(Duration::from_secs),
            until: until.map(Duration::from_secs),
        };
        let timeline = [
            entry(5, Some(3), Some(12)),
            entry(5, None, None),
            entry(2, None, None),
        ];
        let got: Vec<(u64, usize)> = firings(&timeline)
            .into_iter()
            .map(|(at, i)| (at.as_secs(), i))
            .collect();
        assert_eq!(got, [(2, 2), (5, 0), (5, 1), (8, 0), (11, 0)]);
        assert_eq!(last_action_at(&timeline), Some(Duration::from_secs(12)));
    }
}
