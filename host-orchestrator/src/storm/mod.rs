//! Storms: a fleet, a timeline of reboots, faults, publishes and rolling
//! updates, and the invariants of DESIGN.md checked on the run.
//!
//! The availability invariant is watched all the time (on every change of
//! any node's state); the others are judged on what the run left behind.

pub mod junit;
pub mod scenario;

use crate::report::Report;
use crate::supervisor::{FleetView, HostState};
use crate::testbed::{Artifacts, Options, Testbed};
use anyhow::{Context, Result};
use proto::NodeType;
use proto::msg::{Message, Reboot};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use scenario::{Action, Scenario, Select};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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

/// One invariant or expectation, judged.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Its name.
    pub name: String,
    /// Whether it held.
    pub pass: bool,
    /// What shows it.
    pub evidence: String,
}

/// A storm's report: the testbed's report plus events and invariants.
#[derive(Clone, Debug, Serialize)]
pub struct StormReport {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
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

/// What the availability watcher saw.
#[derive(Default)]
struct Watch {
    /// Armed once the whole fleet was first verified.
    armed: bool,
    /// Times and groups with no member running, first few kept.
    gaps: Vec<String>,
    /// How many such moments.
    gap_count: u64,
}

fn running(s: HostState) -> bool {
    matches!(s, HostState::Running | HostState::Verified)
}

impl Watch {
    fn look(&mut self, v: &FleetView, groups: &BTreeMap<String, Vec<u16>>, t0: Instant) {
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
                        .map(|id| format!("{id}:{}", v.nodes[id].state.as_str()))
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

/// A storm in progress.
struct Run<'a> {
    tb: Testbed,
    scenario: &'a Scenario,
    rng: StdRng,
    t0: Instant,
    events: Vec<Event>,
    /// Reboots the scenario gave each node.
    authorized: BTreeMap<u16, u32>,
    /// When each node was last rebooted by the scenario.
    rebooted_at: BTreeMap<u16, Instant>,
    /// When each type was last published.
    published_at: BTreeMap<NodeType, Instant>,
    reboots: usize,
    peak_pss_kib: u64,
    tool: Option<crate::busclient::FrameWriter>,
    _tool_reader: Option<crate::busclient::FrameReader>,
}

impl Run<'_> {
    fn at_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn event(&mut self, action: &str, line: usize, nodes: Vec<u16>, detail: String, ok: bool) {
        let t_s = self.at_s();
        if !ok {
            tracing::warn!(action, line, "{detail}");
        }
        eprintln!("[{t_s:7.2}s] {action} {nodes:?}: {detail}");
        self.events.push(Event {
            t_s,
            action: action.to_string(),
            line,
            nodes,
            detail,
            ok,
        });
    }

    fn select(&mut self, s: &Select) -> Vec<u16> {
        let mut ids: Vec<u16> = self
            .scenario
            .fleet
            .nodes
            .iter()
            .filter(|n| s.ids.as_ref().is_none_or(|ids| ids.contains(&n.id)))
            .filter(|n| s.node_type.as_ref().is_none_or(|t| n.node_type.name() == t))
            .filter(|n| s.group.as_ref().is_none_or(|g| n.group.as_ref() == Some(g)))
            .filter(|n| s.segment.as_ref().is_none_or(|g| &n.segment == g))
            .filter(|n| s.set.as_ref().is_none_or(|g| n.set.as_ref() == Some(g)))
            .map(|n| n.id)
            .collect();
        if let Some(k) = s.random {
            ids = ids.choose_multiple(&mut self.rng, k).copied().collect();
            ids.sort();
        }
        ids
    }

    /// Sleeps until scenario time `at`, keeping the testbed attended.
    async fn until(&mut self, at: Duration) {
        let left = (self.t0 + at).saturating_duration_since(Instant::now());
        self.tb.wait_until(left, |_| false).await;
        self.sample_memory();
    }

    fn sample_memory(&mut self) {
        self.peak_pss_kib = self.peak_pss_kib.max(self.tb.fleet_pss_kib());
    }

    fn authorize(&mut self, id: u16) {
        *self.authorized.entry(id).or_default() += 1;
        self.rebooted_at.insert(id, Instant::now());
        self.reboots += 1;
    }

    async fn reboot(&mut self, how: &str, id: u16) -> Result<()> {
        self.authorize(id);
        match how {
            "power-cycle" => self.tb.power_cycle(id).await,
            "reset" => self.tb.reset(id).await,
            _ => self.tb.soft_reboot(id).await,
        }
    }

    async fn run_action(&mut self, line: usize, action: &Action) {
        let name = action.name();
        match action {
            Action::PowerCycle(s)
            | Action::Reset(s)
            | Action::SoftReboot(s)
            | Action::MixedReboot(s) => {
                let ids = self.select(s);
                let mut done = Vec::new();
                let mut errors = Vec::new();
                for id in &ids {
                    let how = match action {
                        Action::MixedReboot(_) => {
                            ["power-cycle", "reset", "soft-reboot"][self.rng.gen_range(0..3)]
                        }
                        _ => name,
                    };
                    match self.reboot(how, *id).await {
                        Ok(()) => done.push(format!("{id}:{how}")),
                        Err(e) => errors.push(format!("node {id}: {e:#}")),
                    }
                }
                let ok = errors.is_empty();
                let detail = if ok {
                    done.join(" ")
                } else {
                    errors.join("; ")
                };
                self.event(name, line, ids, detail, ok);
            }
            Action::Disturb(s) => {
                let ids = self.select(s);
                let mut ok = true;
                for id in &ids {
                    ok &= self.tool_reboot(*id).await.is_ok();
                }
                self.event(
                    name,
                    line,
                    ids,
                    "a Reboot the scenario does not own, from the tool port".into(),
                    ok,
                );
            }
            Action::InjectFault(f) => {
                let r = match self.tb.bus() {
                    Some(bus) => bus.add_fault(f.clone()).await.map_err(anyhow::Error::from),
                    None => Err(anyhow::anyhow!("no bus")),
                };
                let (ok, detail) = match r {
                    Ok(id) => (true, format!("fault {id}: {f:?}")),
                    Err(e) => (false, format!("{e:#}")),
                };
                self.event(name, line, vec![], detail, ok);
            }
            Action::ClearFaults => {
                let r = match self.tb.bus() {
                    Some(bus) => bus.clear_faults().await.map_err(anyhow::Error::from),
                    None => Err(anyhow::anyhow!("no bus")),
                };
                let (ok, detail) = match r {
                    Ok(n) => (true, format!("{n} faults cleared")),
                    Err(e) => (false, format!("{e:#}")),
                };
                self.event(name, line, vec![], detail, ok);
            }
            Action::CutLink(l) | Action::RestoreLink(l) => {
                let cut = matches!(action, Action::CutLink(_));
                let r = match self.tb.bus() {
                    Some(bus) if cut => bus.cut(l).await.map_err(anyhow::Error::from),
                    Some(bus) => bus.restore(l).await.map_err(anyhow::Error::from),
                    None => Err(anyhow::anyhow!("no bus")),
                };
                let (ok, detail) = match r {
                    Ok(changed) => (
                        true,
                        format!(
                            "link {l} {}",
                            if changed { "changed" } else { "already so" }
                        ),
                    ),
                    Err(e) => (false, format!("{e:#}")),
                };
                self.event(name, line, vec![], detail, ok);
            }
            Action::KillMaster => {
                self.tb.kill_primary_master().await;
                self.event(name, line, vec![], "primary master killed".into(), true);
            }
            Action::Publish { node_type, version } => {
                let r = self.tb.publish(*node_type, *version).await;
                self.published_at.insert(*node_type, Instant::now());
                let (ok, detail) = match r {
                    Ok(p) => (
                        true,
                        format!(
                            "{} {} published",
                            node_type.name(),
                            images::build::format_version(p.version)
                        ),
                    ),
                    Err(e) => (false, format!("{e:#}")),
                };
                self.event(name, line, vec![], detail, ok);
            }
            Action::RollingUpdate {
                types,
                version,
                steps,
                step_timeout,
            } => {
                for t in types {
                    match self.tb.publish(*t, *version).await {
                        Ok(_) => {
                            self.published_at.insert(*t, Instant::now());
                        }
                        Err(e) => {
                            self.event(
                                name,
                                line,
                                vec![],
                                format!("publishing {}: {e:#}", t.name()),
                                false,
                            );
                            return;
                        }
                    }
                }
                for (k, step) in steps.iter().enumerate() {
                    let sets = step.sets();
                    let ids: Vec<u16> = self
                        .scenario
                        .fleet
                        .nodes
                        .iter()
                        .filter(|n| {
                            types.contains(&n.node_type)
                                && n.set.as_ref().is_some_and(|s| sets.contains(s))
                        })
                        .map(|n| n.id)
                        .collect();
                    for id in &ids {
                        if let Err(e) = self.reboot("soft-reboot", *id).await {
                            self.event(
                                name,
                                line,
                                ids.clone(),
                                format!("step {k}: node {id}: {e:#}"),
                                false,
                            );
                            return;
                        }
                    }
                    let v = *version;
                    let want = ids.clone();
                    let done = self
                        .tb
                        .wait_until(*step_timeout, |view| {
                            want.iter().all(|id| {
                                view.nodes.get(id).is_some_and(|n| {
                                    n.state == HostState::Verified && n.version == Some(v)
                                })
                            })
                        })
                        .await;
                    let detail = format!(
                        "step {k} (sets {sets:?}): {} on {}",
                        if done {
                            "all verified"
                        } else {
                            "NOT all verified in time"
                        },
                        images::build::format_version(v)
                    );
                    self.event(name, line, ids, detail, done);
                    if !done {
                        return;
                    }
                }
            }
        }
    }

    /// Sends `Reboot` to `id` from the tool port (not the supervisor's).
    async fn tool_reboot(&mut self, id: u16) -> Result<()> {
        if self.tool.is_none() {
            let (r, w) = crate::busclient::connect(&self.tb.tool_port()).await?;
            self.tool = Some(w);
            self._tool_reader = Some(r);
        }
        let frame = Message::Reboot(Reboot {
            target: id,
            target_type: 0,
            reason: proto::msg::RebootReason::Disturbance as u8,
        })
        .to_frame(proto::msg::TOOL)
        .map_err(|e| anyhow::anyhow!("cannot encode: {e:?}"))?;
        self.tool.as_mut().context("tool port")?.send(&frame).await
    }
}

/// Runs a storm to its end and judges it.
pub async fn run(opts: StormOptions) -> Result<StormReport> {
    let scenario = &opts.scenario;
    let seed = opts.seed.unwrap_or(scenario.seed);
    let mut tb_opts = Options::new(scenario.fleet.clone(), opts.artifacts.clone());
    tb_opts.run_dir = Some(opts.run_dir.clone());
    tb_opts.progress = opts.progress;
    tb_opts.master_exe = opts.master_exe.clone();
    tb_opts.interrupt = opts.interrupt.clone();
    let tb = Testbed::start(tb_opts).await?;
    let t0 = Instant::now();
    let groups: BTreeMap<String, Vec<u16>> = {
        let mut g: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for n in &scenario.fleet.nodes {
            if let Some(name) = &n.group {
                g.entry(name.clone()).or_default().push(n.id);
            }
        }
        g
    };
    // The availability watcher: looks at every change of the fleet view.
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watcher = {
        let (mut view, watch, groups) = (tb.watch_fleet(), watch.clone(), groups.clone());
        tokio::spawn(async move {
            loop {
                let v = view.borrow_and_update().clone();
                watch.lock().expect("watch lock").look(&v, &groups, t0);
                if view.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    let mut run = Run {
        tb,
        scenario,
        rng: StdRng::seed_from_u64(seed),
        t0,
        events: Vec::new(),
        authorized: BTreeMap::new(),
        rebooted_at: BTreeMap::new(),
        published_at: BTreeMap::new(),
        reboots: 0,
        peak_pss_kib: 0,
        tool: None,
        _tool_reader: None,
    };
    // Every firing of every entry, in time order (stable: file order at a tie).
    let mut firings: Vec<(Duration, usize)> = Vec::new();
    for (i, e) in scenario.timeline.iter().enumerate() {
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
    let mut stopped_before = None;
    for (at, i) in firings {
        run.until(at).await;
        let e = &scenario.timeline[i];
        if run.tb.interrupted() {
            stopped_before = Some(e.line);
            break;
        }
        run.run_action(e.line, &e.action).await;
    }
    // A reboot takes a moment to show (a node still says it runs until it
    // asks again); then wait until every node is verified (or has failed
    // for good) since its last reboot, until the deadline.
    if let Some(last) = scenario
        .timeline
        .iter()
        .map(|e| e.until.unwrap_or(e.at))
        .max()
    {
        run.until(last + Duration::from_secs(2)).await;
    }
    let deadline = t0 + scenario.expect.all_verified_by;
    let rebooted = run.rebooted_at.clone();
    let since_reboot = move |v: &FleetView| {
        v.settled()
            && v.nodes.iter().all(|(id, n)| {
                n.state == HostState::Failed
                    || rebooted
                        .get(id)
                        .is_none_or(|r| n.verified_at.is_some_and(|at| at > *r))
            })
    };
    run.tb
        .wait_until(
            deadline.saturating_duration_since(Instant::now()),
            since_reboot,
        )
        .await;
    run.sample_memory();
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
            .map(|t| t.saturating_duration_since(t0))
    };
    let testbed = run.tb.shutdown().await;
    watcher.abort();
    let watch = Arc::try_unwrap(watch).map_or_else(
        |w| std::mem::take(&mut *w.lock().expect("watch lock")),
        |m| m.into_inner().expect("watch lock"),
    );
    let mut invariants = judge(
        scenario,
        &testbed,
        &run.events,
        &run.authorized,
        &run.rebooted_at,
        &run.published_at,
        &watch,
        &groups,
        all_verified_at,
    );
    if opts.interrupt.is_cancelled() {
        invariants.push(Check {
            name: "completed".into(),
            pass: false,
            evidence: format!(
                "interrupted at {duration_s:.2} s{}",
                stopped_before.map_or(String::new(), |l| format!(
                    ", before the timeline entry on line {l}"
                ))
            ),
        });
    }
    let mut report = StormReport {
        scenario: scenario.name.clone(),
        seed,
        reboots: run.reboots,
        duration_s,
        peak_fleet_pss_mib: run.peak_pss_kib as f64 / 1024.0,
        events: run.events,
        invariants,
        testbed,
    };
    report.testbed.verdict = if report.invariants.iter().all(|c| c.pass) {
        "pass"
    } else {
        "fail"
    }
    .into();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn judge(
    scenario: &Scenario,
    r: &Report,
    events: &[Event],
    authorized: &BTreeMap<u16, u32>,
    rebooted_at: &BTreeMap<u16, Instant>,
    published_at: &BTreeMap<NodeType, Instant>,
    watch: &Watch,
    groups: &BTreeMap<String, Vec<u16>>,
    all_verified_at: Option<Duration>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut check = |name: &str, pass: bool, evidence: String| {
        checks.push(Check {
            name: name.to_string(),
            pass,
            evidence,
        })
    };

    // 1. Every node runs the image built (or last published) for its type.
    let mut wrong = Vec::new();
    for n in &r.nodes {
        let t = NodeType::from_name(&n.node_type);
        let must_be_latest = t
            .and_then(|t| published_at.get(&t))
            .is_some_and(|p| rebooted_at.get(&n.id).is_some_and(|b| b > p));
        if !n.verified {
            wrong.push(format!("node {} ({}): {}", n.id, n.node_type, diagnose(n)));
        } else if must_be_latest && n.digest.as_deref() != Some(n.expected_digest.as_str()) {
            wrong.push(format!(
                "node {} ({}): rebooted after a publish but runs {} ({})",
                n.id,
                n.node_type,
                n.image_version.as_deref().unwrap_or("?"),
                n.digest.as_deref().unwrap_or("-")
            ));
        }
    }
    let n = r.nodes.len();
    check(
        "right-image",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("all {n} nodes run a verified image for their type")
        } else {
            wrong.join("\n")
        },
    );

    // 2. A running node's generation changes only when the scenario reboots it.
    let mut disturbed = Vec::new();
    for n in &r.nodes {
        let changes = n.generations.len().saturating_sub(1) as u32;
        let allowed = authorized.get(&n.id).copied().unwrap_or(0);
        if changes > allowed {
            disturbed.push(format!(
                "node {} ({}): generations {:?}, but the scenario rebooted it {allowed} times",
                n.id, n.node_type, n.generations
            ));
        }
    }
    let total: usize = r
        .nodes
        .iter()
        .map(|n| n.generations.len().saturating_sub(1))
        .sum();
    check(
        "no-disturbance",
        disturbed.is_empty(),
        if disturbed.is_empty() {
            format!("{total} generation changes, each from a reboot the scenario made")
        } else {
            disturbed.join("\n")
        },
    );

    // 3. Within a window, each type is broadcast once (plus repair): what the
    // bus carried, not what the master says.
    let mut per: BTreeMap<(u32, String), BTreeSet<u32>> = BTreeMap::new();
    for s in &r.observed_sessions {
        per.entry((s.window, s.node_type.clone()))
            .or_default()
            .insert(s.session);
    }
    let max = scenario.expect.max_broadcasts_per_type_per_window;
    let over: Vec<String> = per
        .iter()
        .filter(|(_, s)| s.len() > max)
        .map(|((w, t), s)| format!("window {w}: {t} broadcast in sessions {s:?}"))
        .collect();
    check(
        "one-broadcast-per-type-per-window",
        over.is_empty(),
        if over.is_empty() {
            format!(
                "{} sessions seen on the bus in {} (window, type) pairs, at most {max} each",
                per.values().map(|s| s.len()).sum::<usize>(),
                per.len()
            )
        } else {
            over.join("\n")
        },
    );

    // 4. At least one member of every redundancy group runs at every moment.
    let availability = if groups.is_empty() {
        "no redundancy groups in this fleet".to_string()
    } else if watch.gap_count == 0 {
        format!(
            "watched on every state change: every group ({}) always had a member running",
            groups.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    } else {
        format!(
            "{} moments without a member running; first: {}",
            watch.gap_count,
            watch.gaps.join("\n")
        )
    };
    check("availability", watch.gap_count == 0, availability);

    // 5. Nothing lost or silently wrong: every failure has a reason, every
    // drop is counted by cause.
    let unexplained: Vec<String> = r
        .nodes
        .iter()
        .filter(|n| !n.verified && n.failure.is_none() && n.rejections.is_empty())
        .map(|n| format!("node {} is {:?} with no recorded reason", n.id, n.state))
        .collect();
    let rejections: usize = r.nodes.iter().map(|n| n.rejections.len()).sum();
    let drops = &r.bus["totals"]["drops"];
    check(
        "accounted",
        unexplained.is_empty(),
        if unexplained.is_empty() {
            format!("{rejections} rejected images, each with a reason; bus drops by cause: {drops}")
        } else {
            unexplained.join("\n")
        },
    );

    // The timeline ran as written.
    let failed: Vec<String> = events
        .iter()
        .filter(|e| !e.ok)
        .map(|e| format!("{:.2} s line {}: {} {}", e.t_s, e.line, e.action, e.detail))
        .collect();
    check(
        "actions",
        failed.is_empty(),
        if failed.is_empty() {
            format!("{} actions ran", events.len())
        } else {
            failed.join("\n")
        },
    );

    // Expectation: every node verified by the deadline.
    let by = scenario.expect.all_verified_by;
    let in_time = all_verified_at.is_some_and(|t| t <= by) && r.nodes.iter().all(|n| n.verified);
    check(
        "all-verified-in-time",
        in_time,
        match all_verified_at {
            Some(t) => format!(
                "every node verified at {:.2} s (deadline {:.0} s)",
                t.as_secs_f64(),
                by.as_secs_f64()
            ),
            None => format!(
                "not every node was verified by the end ({}/{}; deadline {:.0} s)",
                r.nodes_verified,
                n,
                by.as_secs_f64()
            ),
        },
    );
    checks
}

/// Why a node is not verified: last state, last message, and its log tail.
pub fn diagnose(n: &crate::report::NodeReport) -> String {
    format!(
        "{:?}; {}; last message {}; log tail: {}",
        n.state,
        n.failure.as_deref().unwrap_or("no failure recorded"),
        if n.last_message.is_empty() {
            "(none)"
        } else {
            &n.last_message
        },
        if n.log_tail.is_empty() {
            "(empty)".to_string()
        } else {
            n.log_tail.join(" | ")
        }
    )
}

impl StormReport {
    /// The verdict table: one row per check, then failing nodes.
    pub fn table(&self) -> String {
        let mut out = format!(
            "storm {} (seed {}): {} reboots in {:.1} s; peak fleet memory {:.0} MiB\n\n| check | result | evidence |\n|---|---|---|\n",
            self.scenario, self.seed, self.reboots, self.duration_s, self.peak_fleet_pss_mib
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
            out += &format!("node {} ({}): {}\n", n.id, n.node_type, diagnose(n));
        }
        out
    }
}
