//! The invariants every storm is judged by, one small type each, and the
//! scenario's expectations. Each is a pure function of what the run left
//! behind ([`Evidence`]): the testbed's report (with each node's state
//! timeline), the storm's events, its ledger of reboots and publishes, the
//! faults it made, and the bus's drops when the run ended.

use super::record::{Event, FaultChange, FaultLog, Groups, Ledger};
use crate::report::{NodeReport, Report};
use crate::supervisor::HostState;
use bus_bridge::{BusStats, DropCause, FaultKind, PortStats};
use proto::NodeType;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

impl Check {
    /// Passes when `problems` is empty, with `fine` as evidence; else fails
    /// with one problem a line.
    fn unless(name: &str, problems: Vec<String>, fine: impl FnOnce() -> String) -> Check {
        Check {
            name: name.into(),
            pass: problems.is_empty(),
            evidence: if problems.is_empty() {
                fine()
            } else {
                problems.join("\n")
            },
        }
    }
}

/// What a storm run left behind.
pub struct Evidence<'a> {
    /// The testbed's final report.
    pub report: &'a Report,
    /// What the storm did.
    pub events: &'a [Event],
    /// Its reboots and publishes.
    pub ledger: &'a Ledger,
    /// The faults and link cuts the run had.
    pub faults: &'a FaultLog,
    /// The bus's statistics when the run ended, before the testbed's own
    /// teardown (`None` without a bus).
    pub bus_at_end: Option<&'a BusStats>,
    /// The fleet's redundancy groups.
    pub groups: &'a Groups,
    /// When the last node was (last) verified, from the start, if all are.
    pub all_verified_at: Option<Duration>,
    /// When the run ended, seconds since the start (as the timelines count).
    pub end_s: f64,
}

/// An invariant or expectation.
pub trait Invariant {
    /// Judges it on `e`.
    fn judge(&self, e: &Evidence<'_>) -> Check;
}

/// Every node runs a verified image for its type, and one rebooted after
/// a publish of its type runs the published one.
pub struct RightImage;

impl Invariant for RightImage {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let (published, rebooted) = (&e.ledger.published_at, &e.ledger.rebooted_at);
        let mut wrong = Vec::new();
        for n in &e.report.nodes {
            let must_be_latest = NodeType::from_name(&n.node_type)
                .and_then(|t| published.get(&t))
                .is_some_and(|p| rebooted.get(&n.id).is_some_and(|b| b > p));
            if !n.verified {
                wrong.push(format!(
                    "node {} ({}): {}",
                    n.id,
                    n.node_type,
                    n.diagnosis()
                ));
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
        Check::unless("right-image", wrong, || {
            format!(
                "all {} nodes run a verified image for their type",
                e.report.nodes.len()
            )
        })
    }
}

/// A running node's generation changes only when the scenario reboots it.
pub struct NoDisturbance;

impl Invariant for NoDisturbance {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let changes = |gens: &[u32]| gens.len().saturating_sub(1);
        let disturbed = e
            .report
            .nodes
            .iter()
            .filter_map(|n| {
                let allowed = e.ledger.authorized.get(&n.id).copied().unwrap_or(0);
                (changes(&n.generations) as u32 > allowed).then(|| {
                    format!(
                        "node {} ({}): generations {:?}, but the scenario rebooted it {allowed} times",
                        n.id, n.node_type, n.generations
                    )
                })
            })
            .collect();
        Check::unless("no-disturbance", disturbed, || {
            let total: usize = e.report.nodes.iter().map(|n| changes(&n.generations)).sum();
            format!("{total} generation changes, each from a reboot the scenario made")
        })
    }
}

/// Within a window, each type is broadcast at most `max` times (repair
/// aside): what the bus carried, not what the master says.
pub struct OneBroadcastPerWindow {
    /// Sessions allowed per (window, type).
    pub max: usize,
}

impl Invariant for OneBroadcastPerWindow {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let mut per: BTreeMap<(u32, &str), BTreeSet<u32>> = BTreeMap::new();
        for s in &e.report.observed_sessions {
            per.entry((s.window, &s.node_type))
                .or_default()
                .insert(s.session);
        }
        let max = self.max;
        let over = per
            .iter()
            .filter(|(_, s)| s.len() > max)
            .map(|((w, t), s)| format!("window {w}: {t} broadcast in sessions {s:?}"))
            .collect();
        Check::unless("one-broadcast-per-type-per-window", over, || {
            format!(
                "{} sessions seen on the bus in {} (window, type) pairs, at most {max} each",
                per.values().map(|s| s.len()).sum::<usize>(),
                per.len()
            )
        })
    }
}

/// At least one member of every redundancy group runs at every moment,
/// judged over the members' state timelines: a group is watched from its
/// first verified member to the end of the run, and one never watched fails.
pub struct Availability;

fn running(s: HostState) -> bool {
    matches!(s, HostState::Running | HostState::Verified)
}

/// What the watch of one group saw.
struct GroupWatch {
    armed_at: Option<f64>,
    changes: usize,
    gaps: Vec<String>,
}

/// Replays the members' timelines in time order; every instant after the
/// first verified member with no member running is a gap.
fn watch_group(members: &[&NodeReport]) -> GroupWatch {
    let mut changes: Vec<(f64, usize, HostState)> = members
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.states.iter().map(move |c| (c.t_s, i, c.state)))
        .collect();
    changes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut state = vec![HostState::Off; members.len()];
    let mut w = GroupWatch {
        armed_at: None,
        changes: 0,
        gaps: Vec::new(),
    };
    let mut i = 0;
    while i < changes.len() {
        let t = changes[i].0;
        // Every change at one instant, then one look.
        while i < changes.len() && changes[i].0 == t {
            state[changes[i].1] = changes[i].2;
            i += 1;
            w.changes += usize::from(w.armed_at.is_some());
        }
        if w.armed_at.is_none() && state.contains(&HostState::Verified) {
            w.armed_at = Some(t);
        }
        if w.armed_at.is_some() && !state.iter().any(|&s| running(s)) {
            let states: Vec<String> = members
                .iter()
                .zip(&state)
                .map(|(n, s)| format!("{}:{}", n.id, s.as_str()))
                .collect();
            w.gaps.push(format!("{t:.2} s ({})", states.join(" ")));
        }
    }
    w
}

impl Invariant for Availability {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        if e.groups.is_empty() {
            return Check::unless("availability", vec![], || {
                "no redundancy groups in this fleet".into()
            });
        }
        let (mut problems, mut fine) = (Vec::new(), Vec::new());
        for (g, ids) in e.groups {
            let members: Vec<&NodeReport> = ids
                .iter()
                .filter_map(|id| e.report.nodes.iter().find(|n| n.id == *id))
                .collect();
            let w = watch_group(&members);
            match w.armed_at {
                None => problems.push(format!(
                    "group {g}: not watched: no member was ever verified"
                )),
                Some(_) if !w.gaps.is_empty() => problems.push(format!(
                    "group {g}: {} moments without a member running; first: {}",
                    w.gaps.len(),
                    w.gaps[..w.gaps.len().min(5)].join("; ")
                )),
                Some(at) => fine.push(format!(
                    "group {g}: watched {at:.2}–{:.2} s, {} state changes, always a member running",
                    e.end_s, w.changes
                )),
            }
        }
        Check::unless("availability", problems, || fine.join("\n"))
    }
}

/// Nothing lost or silently wrong: every node that is not verified has a
/// recorded reason, and every frame the bus dropped has a cause the
/// scenario made (a fault rule, a cut link, a node powered off, a filter),
/// or one its `[expect] allow_drops` allows.
pub struct Accounted {
    /// Causes the scenario allows without a reason of its own.
    pub allowed: Vec<DropCause>,
}

impl Invariant for Accounted {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let nodes = &e.report.nodes;
        let mut problems: Vec<String> = nodes
            .iter()
            .filter(|n| !n.verified && n.failure.is_none() && n.rejections.is_empty())
            .map(|n| format!("node {} is {:?} with no recorded reason", n.id, n.state))
            .collect();
        let mut explained: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
        for p in e.bus_at_end.map(|b| b.ports.as_slice()).unwrap_or_default() {
            for (key, &count) in p.drops.iter().filter(|(_, c)| **c > 0) {
                let cause = DropCause::from_key(key);
                match cause.and_then(|c| self.explain(c, p, e)) {
                    Some(why) => {
                        let c = cause.map_or("?", DropCause::as_str);
                        *explained.entry((c, why)).or_default() += count;
                    }
                    None => problems.push(format!(
                        "{count} frames dropped at port {} as {key}, which nothing in the scenario explains",
                        p.name
                    )),
                }
            }
        }
        Check::unless("accounted", problems, || {
            let rejections: usize = nodes.iter().map(|n| n.rejections.len()).sum();
            let drops: Vec<String> = explained
                .iter()
                .map(|((c, why), n)| format!("{n} {c} ({why})"))
                .collect();
            format!(
                "{rejections} rejected images, each with a reason; bus drops, each explained: {}",
                if drops.is_empty() {
                    "none".into()
                } else {
                    drops.join(", ")
                }
            )
        })
    }
}

impl Accounted {
    /// What in the scenario explains dropping frames at port `p` as `c`.
    fn explain(&self, c: DropCause, p: &PortStats, e: &Evidence<'_>) -> Option<String> {
        use DropCause as D;
        if self.allowed.contains(&c) {
            return Some("allowed by [expect]".into());
        }
        let rule = |kind: FaultKind, frames: bool| {
            e.faults.rules().any(|f| {
                f.kind == kind
                    && (!frames || f.error_frame)
                    && f.port.as_ref().is_none_or(|x| *x == p.name)
                    && f.segment.as_ref().is_none_or(|x| *x == p.segment)
            })
        };
        let error_frames = e
            .faults
            .rules()
            .any(|f| f.kind == FaultKind::Corrupt && f.error_frame);
        let node = crate::rundir::RunDir::node_of_port_name(&p.name);
        let why = match c {
            D::Filtered => "acceptance filtering",
            D::Loss if rule(FaultKind::Loss, false) => "a loss rule",
            D::Corrupt if rule(FaultKind::Corrupt, false) => "a corruption rule",
            D::ErrorFrame | D::TxBusOff if error_frames => "corruption with error frames",
            D::LinkCut if e.faults.any(|c| matches!(c, FaultChange::Cut(_))) => "a cut link",
            D::LinkDown | D::TxLinkDown
                if e.faults
                    .any(|c| matches!(c, FaultChange::LinkDown(x) if *x == p.name)) =>
            {
                "its link down"
            }
            D::PortDown | D::TxFlushed if node.is_some() => {
                "its node not connected: starting up or powered off"
            }
            D::PortDown | D::TxFlushed if SPARE_PORTS.iter().any(|s| p.name.starts_with(s)) => {
                "a spare port with no client"
            }
            D::PortDown | D::TxFlushed
                if p.name == "master" && e.faults.any(|c| *c == FaultChange::MasterKilled) =>
            {
                "the master killed"
            }
            D::TxLinkError if node.is_some_and(|id| e.ledger.authorized.contains_key(&id)) => {
                "its node rebooted mid-frame"
            }
            _ => return None,
        };
        Some(why.into())
    }
}

/// Host ports a client may never use: the backup master's, the tool's,
/// the socketcand ports.
const SPARE_PORTS: [&str; 3] = ["backup", "tool", "socketcand"];

/// The timeline ran as written: every action did what it was asked.
pub struct ActionsRan;

impl Invariant for ActionsRan {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let failed = e
            .events
            .iter()
            .filter(|ev| !ev.ok)
            .map(|ev| {
                format!(
                    "{:.2} s line {}: {} {}",
                    ev.t_s, ev.line, ev.action, ev.detail
                )
            })
            .collect();
        Check::unless("actions", failed, || {
            let skipped: Vec<String> = e
                .events
                .iter()
                .flat_map(|ev| {
                    ev.skipped
                        .iter()
                        .map(move |s| format!("line {}: node {} {}", ev.line, s.node, s.reason))
                })
                .collect();
            if skipped.is_empty() {
                return format!("{} actions ran", e.events.len());
            }
            let shown = skipped.len().min(SKIPS_SHOWN);
            format!(
                "{} actions ran; {} nodes left alone mid-transition; first: {}",
                e.events.len(),
                skipped.len(),
                skipped[..shown].join("; ")
            )
        })
    }
}

/// Skipped nodes the `actions` evidence names (the report has them all).
const SKIPS_SHOWN: usize = 5;

/// The expectation: every node verified by the scenario's deadline.
pub struct AllVerifiedInTime {
    /// The deadline, scenario time.
    pub by: Duration,
}

impl Invariant for AllVerifiedInTime {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let (by, r) = (self.by, e.report);
        let in_time =
            e.all_verified_at.is_some_and(|t| t <= by) && r.nodes.iter().all(|n| n.verified);
        Check {
            name: "all-verified-in-time".into(),
            pass: in_time,
            evidence: match e.all_verified_at {
                Some(t) => format!(
                    "every node verified at {:.2} s (deadline {:.0} s)",
                    t.as_secs_f64(),
                    by.as_secs_f64()
                ),
                None => format!(
                    "not every node was verified by the end ({}/{}; deadline {:.0} s)",
                    r.nodes_verified,
                    r.nodes.len(),
                    by.as_secs_f64()
                ),
            },
        }
    }
}

/// A run the user stopped (Ctrl-C) did not complete: judged as far as it
/// ran, it fails.
pub struct Interrupted {
    /// When, scenario time.
    pub at_s: f64,
    /// The timeline entry (its line) it stopped before, if any.
    pub stopped_before: Option<usize>,
}

impl Interrupted {
    /// The failing `completed` check.
    pub fn check(&self) -> Check {
        let before = self.stopped_before.map_or(String::new(), |l| {
            format!(", before the timeline entry on line {l}")
        });
        Check {
            name: "completed".into(),
            pass: false,
            evidence: format!("interrupted at {:.2} s{before}", self.at_s),
        }
    }
}

/// Every invariant, then the expectations of `expect`, in report order.
pub fn judge(e: &Evidence<'_>, expect: &super::scenario::Expect) -> Vec<Check> {
    let invariants: [&dyn Invariant; 7] = [
        &RightImage,
        &NoDisturbance,
        &OneBroadcastPerWindow {
            max: expect.max_broadcasts_per_type_per_window,
        },
        &Availability,
        &Accounted {
            allowed: expect.allow_drops.clone(),
        },
        &ActionsRan,
        &AllVerifiedInTime {
            by: expect.all_verified_by,
        },
    ];
    invariants.iter().map(|i| i.judge(e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Moment;
    use crate::report::StateChange;
    use crate::report::tests::{bus_stats, empty, node};
    use crate::storm::scenario::Reboot;
    use crate::supervisor::{ObservedSession, Rejection};
    use bus_bridge::Fault;

    /// What a run left behind, owned, around a report of `nodes`.
    struct Run {
        report: Report,
        events: Vec<Event>,
        ledger: Ledger,
        faults: FaultLog,
        bus_at_end: Option<BusStats>,
        groups: Groups,
        all_verified_at: Option<Duration>,
    }

    impl Run {
        fn of(nodes: Vec<NodeReport>) -> Run {
            let mut report = empty();
            report.nodes_total = nodes.len();
            report.nodes_verified = nodes.iter().filter(|n| n.verified).count();
            report.nodes = nodes;
            Run {
                report,
                events: Vec::new(),
                ledger: Ledger::default(),
                faults: FaultLog::default(),
                bus_at_end: None,
                groups: Groups::new(),
                all_verified_at: None,
            }
        }

        fn evidence(&self) -> Evidence<'_> {
            Evidence {
                report: &self.report,
                events: &self.events,
                ledger: &self.ledger,
                faults: &self.faults,
                bus_at_end: self.bus_at_end.as_ref(),
                groups: &self.groups,
                all_verified_at: self.all_verified_at,
                end_s: 100.0,
            }
        }

        fn judge(&self, invariant: &dyn Invariant) -> Check {
            invariant.judge(&self.evidence())
        }

        /// Node `id`'s timeline: (seconds, state) in order.
        fn states(&mut self, id: u16, states: &[(f64, HostState)]) {
            let n = self.report.nodes.iter_mut().find(|n| n.id == id).unwrap();
            n.states = states
                .iter()
                .map(|&(t_s, state)| StateChange { t_s, state })
                .collect();
        }
    }

    /// One port's drops: (port, segment, (cause, count)…).
    type PortDrops<'a> = (&'a str, &'a str, &'a [(&'a str, u64)]);

    /// Bus statistics whose ports dropped frames.
    fn drops_at(ports: &[PortDrops<'_>]) -> BusStats {
        let mut b = bus_stats(&[]);
        b.ports = ports
            .iter()
            .map(|(name, segment, drops)| {
                serde_json::from_value(serde_json::json!({
                    "name": name, "segment": segment, "connected": true, "connects": 1,
                    "frames_tx": 0, "bytes_tx": 0, "frames_rx": 0, "bytes_rx": 0,
                    "overruns": 0, "dropped_port_down": 0, "fd_on_classic_bus": 0,
                    "tx_flushed": 0, "filtered": 0, "link_errors": {},
                    "drops": drops.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
                }))
                .expect("port statistics")
            })
            .collect();
        b
    }

    fn failed(id: u16) -> NodeReport {
        NodeReport {
            state: HostState::Failed,
            verified: false,
            verified_by: None,
            host_check: None,
            digest: None,
            ..node(id)
        }
    }

    /// Passes, with evidence containing `says`.
    fn passes(c: Check, says: &str) {
        assert!(c.pass, "{} should pass: {}", c.name, c.evidence);
        assert!(c.evidence.contains(says), "{}: {:?}", c.name, c.evidence);
    }

    /// Fails, with evidence containing `says`.
    fn fails(c: Check, says: &str) {
        assert!(!c.pass, "{} should fail: {}", c.name, c.evidence);
        assert!(c.evidence.contains(says), "{}: {:?}", c.name, c.evidence);
    }

    #[test]
    fn right_image_wants_every_node_verified_and_the_published_image_after_a_reboot() {
        let t0 = Moment::ZERO;
        let mut run = Run::of(vec![node(1), node(2)]);
        passes(run.judge(&RightImage), "all 2 nodes run a verified image");
        // Rebooted before the publish: the old image is still right.
        run.report.nodes[1].digest = Some("cd".repeat(32));
        run.ledger.reboot(2, Reboot::Reset, t0);
        run.ledger
            .publish(NodeType::Drive, t0 + Duration::from_secs(1));
        passes(run.judge(&RightImage), "all 2 nodes");
        // Rebooted after it: it must run the published one.
        run.ledger
            .reboot(2, Reboot::Reset, t0 + Duration::from_secs(2));
        fails(
            run.judge(&RightImage),
            "node 2 (drive): rebooted after a publish but runs 1.0.0",
        );
        let run = Run::of(vec![node(1), failed(2)]);
        fails(run.judge(&RightImage), "node 2 (drive): Failed;");
    }

    #[test]
    fn no_disturbance_allows_one_generation_change_per_scenario_reboot() {
        let mut run = Run::of(vec![node(1), node(2)]);
        run.report.nodes[1].generations = vec![1, 4];
        run.ledger.reboot(2, Reboot::Reset, Moment::ZERO);
        passes(run.judge(&NoDisturbance), "1 generation changes");
        run.report.nodes[1].generations = vec![1, 4, 6];
        fails(
            run.judge(&NoDisturbance),
            "node 2 (drive): generations [1, 4, 6], but the scenario rebooted it 1 times",
        );
    }

    #[test]
    fn one_broadcast_per_window_counts_sessions_the_bus_carried() {
        let seen = |window, node_type: &str, session| ObservedSession {
            session,
            window,
            node_type: node_type.into(),
            bytes: 1000,
            at_s: 1.0,
            announced: 1,
        };
        let mut run = Run::of(vec![node(1)]);
        run.report.observed_sessions = vec![
            seen(1, "drive", 1),
            seen(1, "drive", 1),
            seen(1, "xy", 2),
            seen(2, "drive", 3),
        ];
        let one = OneBroadcastPerWindow { max: 1 };
        passes(
            run.judge(&one),
            "3 sessions seen on the bus in 3 (window, type) pairs",
        );
        run.report.observed_sessions.push(seen(1, "drive", 4));
        fails(
            run.judge(&one),
            "window 1: drive broadcast in sessions {1, 4}",
        );
        passes(
            run.judge(&OneBroadcastPerWindow { max: 2 }),
            "at most 2 each",
        );
    }

    #[test]
    fn availability_is_watched_per_group_from_its_first_verified_member() {
        use HostState::*;
        let mut run = Run::of(vec![node(1), node(2), node(3)]);
        passes(run.judge(&Availability), "no redundancy groups");
        run.groups.insert("acc".into(), vec![1, 2]);
        run.states(
            1,
            &[
                (1.0, Booting),
                (5.0, Verified),
                (30.0, Booting),
                (36.0, Verified),
            ],
        );
        run.states(
            2,
            &[
                (1.0, Booting),
                (7.0, Verified),
                (50.0, Requesting),
                (55.0, Running),
            ],
        );
        // Node 2 booting alone before 5 s is no gap: not armed yet.
        passes(
            run.judge(&Availability),
            "group acc: watched 5.00–100.00 s, 5 state changes, always a member running",
        );
        // Both rebooted at once: a gap, with the time and the states.
        run.states(
            2,
            &[
                (1.0, Booting),
                (7.0, Verified),
                (31.0, Booting),
                (40.0, Verified),
            ],
        );
        fails(
            run.judge(&Availability),
            "group acc: 1 moments without a member running; first: 31.00 s (1:BOOTING 2:BOOTING)",
        );
        // A group none of whose members was ever verified was never watched.
        run.groups.insert("xy".into(), vec![3]);
        run.states(3, &[(1.0, Booting), (2.0, Requesting)]);
        fails(run.judge(&Availability), "group xy: not watched");
    }

    #[test]
    fn accounted_wants_a_reason_for_every_node_not_verified() {
        let mut run = Run::of(vec![node(1), failed(2)]);
        fails(
            run.judge(&Accounted { allowed: vec![] }),
            "node 2 is Failed with no recorded reason",
        );
        run.report.nodes[1].rejections.push(Rejection {
            at_s: 2.0,
            session: 1,
            reason: "digest".into(),
            version: "1.0.0".into(),
            measured_prefix: String::new(),
            manifest_prefix: String::new(),
        });
        passes(
            run.judge(&Accounted { allowed: vec![] }),
            "1 rejected images, each with a reason; bus drops, each explained: none",
        );
    }

    #[test]
    fn accounted_explains_every_drop_by_what_the_scenario_made() {
        let accounted = Accounted { allowed: vec![] };
        let mut run = Run::of(vec![node(1)]);
        run.bus_at_end = Some(drops_at(&[
            ("n1", "base", &[("filtered", 50), ("port_down", 3)]),
            ("tool", "base", &[("port_down", 7)]),
        ]));
        passes(run.judge(&accounted), "50 filtered (acceptance filtering)");
        // Losses with no loss rule: unexplained, with count, port and cause.
        run.bus_at_end = Some(drops_at(&[("n1", "base", &[("loss", 4)])]));
        fails(
            run.judge(&accounted),
            "4 frames dropped at port n1 as loss, which nothing in the scenario explains",
        );
        // A loss rule on another segment does not explain them either...
        let mut rule = Fault::loss(0.02);
        rule.segment = Some("ha".into());
        run.faults
            .add(Moment::ZERO, FaultChange::Rule(rule.clone()));
        assert!(!run.judge(&accounted).pass);
        // ... one covering the port does.
        rule.segment = None;
        run.faults.add(Moment::ZERO, FaultChange::Rule(rule));
        passes(run.judge(&accounted), "4 loss (a loss rule)");
        // Overruns only where [expect] allows them.
        run.bus_at_end = Some(drops_at(&[("n1", "base", &[("overrun", 2)])]));
        fails(run.judge(&accounted), "as overrun");
        let allowing = Accounted {
            allowed: vec![DropCause::Overrun],
        };
        passes(run.judge(&allowing), "2 overrun (allowed by [expect])");
        // The supervisor's port never loses its client.
        run.bus_at_end = Some(drops_at(&[("supervisor", "base", &[("port_down", 1)])]));
        fails(run.judge(&accounted), "port supervisor as port_down");
        // A cut link explains link_cut drops.
        run.bus_at_end = Some(drops_at(&[("n1", "base", &[("link_cut", 9)])]));
        fails(run.judge(&accounted), "as link_cut");
        run.faults
            .add(Moment::ZERO, FaultChange::Cut("ext1-ha".into()));
        passes(run.judge(&accounted), "9 link_cut (a cut link)");
    }

    #[test]
    fn actions_fail_when_one_did_not_do_what_it_was_asked() {
        let event = |line, ok| Event {
            t_s: 1.5,
            action: "reset".into(),
            line,
            nodes: vec![1],
            detail: "node 1 is not powered on".into(),
            ok,
            skipped: Vec::new(),
            picked: Vec::new(),
        };
        let mut run = Run::of(vec![node(1)]);
        run.events = vec![event(5, true), event(7, true)];
        passes(run.judge(&ActionsRan), "2 actions ran");
        run.events[1].ok = false;
        fails(
            run.judge(&ActionsRan),
            "1.50 s line 7: reset node 1 is not powered on",
        );
        // A node left alone mid-transition is no failure, but it is said.
        run.events[1].ok = true;
        run.events[1].skipped = vec![super::super::record::Skip {
            node: 1,
            reason: "is REQUESTING: a soft reboot needs its app running".into(),
        }];
        passes(
            run.judge(&ActionsRan),
            "1 nodes left alone mid-transition; first: line 7: node 1 is REQUESTING",
        );
    }

    #[test]
    fn all_verified_in_time_wants_every_node_verified_by_the_deadline() {
        let by = AllVerifiedInTime {
            by: Duration::from_secs(20),
        };
        let mut run = Run::of(vec![node(1), node(2)]);
        run.all_verified_at = Some(Duration::from_secs(12));
        passes(
            run.judge(&by),
            "every node verified at 12.00 s (deadline 20 s)",
        );
        run.all_verified_at = Some(Duration::from_secs(21));
        fails(run.judge(&by), "verified at 21.00 s");
        let mut run = Run::of(vec![node(1), failed(2)]);
        fails(
            run.judge(&by),
            "not every node was verified by the end (1/2;",
        );
        run.all_verified_at = Some(Duration::from_secs(12));
        assert!(!run.judge(&by).pass, "a node not verified fails it anyway");
    }

    #[test]
    fn an_interrupted_run_fails_completed_saying_where() {
        let c = Interrupted {
            at_s: 12.345,
            stopped_before: Some(14),
        }
        .check();
        fails(
            c,
            "interrupted at 12.35 s, before the timeline entry on line 14",
        );
        let c = Interrupted {
            at_s: 3.0,
            stopped_before: None,
        }
        .check();
        assert_eq!(
            (c.name.as_str(), c.evidence.as_str()),
            ("completed", "interrupted at 3.00 s")
        );
    }

    #[test]
    fn judge_reports_every_check_in_order() {
        let run = Run::of(vec![node(1)]);
        let expect = super::super::scenario::Expect {
            all_verified_by: Duration::from_secs(20),
            max_broadcasts_per_type_per_window: 1,
            allow_drops: Vec::new(),
        };
        let mut run = run;
        run.all_verified_at = Some(Duration::from_secs(3));
        let checks = judge(&run.evidence(), &expect);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "right-image",
                "no-disturbance",
                "one-broadcast-per-type-per-window",
                "availability",
                "accounted",
                "actions",
                "all-verified-in-time"
            ]
        );
        assert!(checks.iter().all(|c| c.pass), "{checks:?}");
    }
}
