//! The invariants every storm is judged by, one small type each, and the
//! scenario's expectations. Each is a pure function of what the run left
//! behind ([`Evidence`]): the testbed's report, the storm's events, its
//! ledger of reboots and publishes, and the availability watch.

use super::record::{Event, Groups, Ledger, Watch};
use crate::report::Report;
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
    /// What the availability watcher saw.
    pub watch: &'a Watch,
    /// The fleet's redundancy groups.
    pub groups: &'a Groups,
    /// When the last node was (last) verified, from the start, if all are.
    pub all_verified_at: Option<Duration>,
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

/// At least one member of every redundancy group runs at every moment
/// (the watcher looked at every state change).
pub struct Availability;

impl Invariant for Availability {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let w = e.watch;
        let evidence = if e.groups.is_empty() {
            "no redundancy groups in this fleet".to_string()
        } else if w.gap_count == 0 {
            format!(
                "watched on every state change: every group ({}) always had a member running",
                e.groups.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!(
                "{} moments without a member running; first: {}",
                w.gap_count,
                w.gaps.join("\n")
            )
        };
        Check {
            name: "availability".into(),
            pass: w.gap_count == 0,
            evidence,
        }
    }
}

/// Nothing lost or silently wrong: every node that is not verified has a
/// recorded reason; the evidence counts rejections and bus drops by cause.
pub struct Accounted;

impl Invariant for Accounted {
    fn judge(&self, e: &Evidence<'_>) -> Check {
        let nodes = &e.report.nodes;
        let unexplained = nodes
            .iter()
            .filter(|n| !n.verified && n.failure.is_none() && n.rejections.is_empty())
            .map(|n| format!("node {} is {:?} with no recorded reason", n.id, n.state))
            .collect();
        Check::unless("accounted", unexplained, || {
            let rejections: usize = nodes.iter().map(|n| n.rejections.len()).sum();
            // As the JSON report has them: `null` without bus statistics.
            let drops = e.report.bus.as_ref().map(|b| &b.totals.drops);
            let drops = serde_json::to_string(&drops).unwrap_or_default();
            format!("{rejections} rejected images, each with a reason; bus drops by cause: {drops}")
        })
    }
}

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
            format!("{} actions ran", e.events.len())
        })
    }
}

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
        &Accounted,
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
    use crate::report::NodeReport;
    use crate::report::tests::{bus_stats, empty, node};
    use crate::supervisor::{HostState, ObservedSession, Rejection};
    use tokio::time::Instant;

    /// What a run left behind, owned, around a report of `nodes`.
    struct Run {
        report: Report,
        events: Vec<Event>,
        ledger: Ledger,
        watch: Watch,
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
                watch: Watch::default(),
                groups: Groups::new(),
                all_verified_at: None,
            }
        }

        fn judge(&self, invariant: &dyn Invariant) -> Check {
            invariant.judge(&Evidence {
                report: &self.report,
                events: &self.events,
                ledger: &self.ledger,
                watch: &self.watch,
                groups: &self.groups,
                all_verified_at: self.all_verified_at,
            })
        }
    }

    fn failed(id: u16) -> NodeReport {
        NodeReport {
            state: HostState::Failed,
            verified: false,
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
        let t0 = Instant::now();
        let mut run = Run::of(vec![node(1), node(2)]);
        passes(run.judge(&RightImage), "all 2 nodes run a verified image");
        // Rebooted before the publish: the old image is still right.
        run.report.nodes[1].digest = Some("cd".repeat(32));
        run.ledger.reboot(2, t0);
        run.ledger
            .publish(NodeType::Drive, t0 + Duration::from_secs(1));
        passes(run.judge(&RightImage), "all 2 nodes");
        // Rebooted after it: it must run the published one.
        run.ledger.reboot(2, t0 + Duration::from_secs(2));
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
        run.ledger.reboot(2, Instant::now());
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
    fn availability_fails_on_any_moment_a_group_had_no_member_running() {
        let mut run = Run::of(vec![node(1), node(2)]);
        passes(run.judge(&Availability), "no redundancy groups");
        run.groups.insert("acc".into(), vec![1, 2]);
        passes(run.judge(&Availability), "every group (acc) always had");
        run.watch.gap_count = 2;
        run.watch.gaps = vec!["3.10 s: group acc had no member running".into()];
        fails(
            run.judge(&Availability),
            "2 moments without a member running",
        );
    }

    #[test]
    fn accounted_wants_a_reason_for_every_node_not_verified() {
        let mut run = Run::of(vec![node(1), failed(2)]);
        fails(
            run.judge(&Accounted),
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
        passes(run.judge(&Accounted), "bus drops by cause: null");
        run.report.bus = Some(bus_stats(&[("loss", 3)]));
        passes(
            run.judge(&Accounted),
            "1 rejected images, each with a reason",
        );
        passes(run.judge(&Accounted), "\"loss\":3");
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
        };
        let mut run = Run::of(vec![node(1)]);
        run.events = vec![event(5, true), event(7, true)];
        passes(run.judge(&ActionsRan), "2 actions ran");
        run.events[1].ok = false;
        fails(
            run.judge(&ActionsRan),
            "1.50 s line 7: reset node 1 is not powered on",
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
        };
        let checks = judge(
            &Evidence {
                report: &run.report,
                events: &run.events,
                ledger: &run.ledger,
                watch: &run.watch,
                groups: &run.groups,
                all_verified_at: Some(Duration::from_secs(3)),
            },
            &expect,
        );
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
