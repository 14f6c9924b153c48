//! The run's event log, `events.jsonl`: one JSON object per line, in time
//! order, for everything that happened in the run: node state changes,
//! hold-off windows, broadcast sessions, storm actions (skipped nodes with
//! their reason), reboots, faults and link changes. Each line has `t_s`
//! (seconds since the testbed started) and `kind`.
//!
//! Nothing new is recorded for it: it is derived from what the run already
//! keeps (the report's state timelines, windows, broadcasts and observed
//! sessions; a storm's events and what it made), typed here as
//! [`RunEvent`] and serialised only in [`jsonl`]. Enums are written as the
//! report writes them (states `VERIFIED`, roles `primary`).

use crate::master::Role;
use crate::master::session::RepairEnd;
use crate::report::Report;
use crate::storm::record::{Event, FaultChange, Made, Skip};
use crate::storm::scenario::Reboot;
use crate::supervisor::HostState;
use anyhow::{Result, bail};
use bus_bridge::Fault;
use serde::Serialize;

/// One thing that happened, at `t_s`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunEvent {
    /// Seconds since the testbed started.
    pub t_s: f64,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// What happened; `kind` in JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// A node entered a state.
    State {
        /// The node.
        node: u16,
        /// The state it entered.
        state: HostState,
    },
    /// A hold-off window opened.
    WindowOpened {
        /// Window number.
        window: u32,
        /// The master that opened it.
        master: Role,
    },
    /// A hold-off window closed.
    WindowClosed {
        /// Window number.
        window: u32,
        /// `timer`, `quorum`, `max_wait` or `cancelled`, as the report says.
        reason: Option<String>,
        /// The nodes that asked in it.
        requesters: Vec<u16>,
    },
    /// A master began a broadcast session.
    SessionStart {
        /// Session number.
        session: u32,
        /// The window that scheduled it.
        window: u32,
        /// Node type, `combined`, or `type→node` (unicast).
        #[serde(rename = "type")]
        node_type: String,
        /// Object bytes of its first pass.
        bytes: u64,
        /// The nodes it is for.
        requesters: Vec<u16>,
    },
    /// A broadcast session ended, repair included.
    SessionEnd(SessionEnd),
    /// The supervisor saw a session announced on the bus.
    SessionSeen {
        /// Session number.
        session: u32,
        /// Window number.
        window: u32,
        /// Node type of the part.
        #[serde(rename = "type")]
        node_type: String,
        /// Object bytes announced.
        bytes: u32,
        /// Times its part was announced.
        announced: u32,
    },
    /// A backup master took over.
    Takeover {
        /// The session it resumed, if one was running.
        resumed_session: Option<u32>,
    },
    /// A node refused an image.
    Rejected {
        /// The node.
        node: u16,
        /// The session that carried it.
        session: u32,
        /// Why.
        reason: String,
    },
    /// A storm action ran.
    Action {
        /// Its name in the timeline (`power-cycle`, `cut-link`, ...).
        action: String,
        /// The line of its timeline entry.
        line: usize,
        /// The nodes it acted on.
        nodes: Vec<u16>,
        /// Whether it did what it was asked.
        ok: bool,
        /// What it did, or why it could not.
        detail: String,
        /// Nodes it left alone, and why.
        skipped: Vec<Skip>,
    },
    /// The scenario rebooted a node.
    Reboot {
        /// The node.
        node: u16,
        /// `power-cycle`, `reset` or `soft-reboot`.
        how: Reboot,
    },
    /// A fault rule in force from then on.
    Fault {
        /// The rule, as a fleet or scenario file writes it.
        rule: Fault,
    },
    /// Every fault rule cleared.
    FaultsCleared,
    /// The primary master killed.
    MasterKilled,
    /// A port's link down (from the start).
    LinkDown {
        /// The port.
        port: String,
    },
    /// A link between segments cut.
    LinkCut {
        /// The link.
        link: String,
    },
    /// A cut link restored.
    LinkRestored {
        /// The link.
        link: String,
    },
}

/// The end of a broadcast session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionEnd {
    /// Session number.
    pub session: u32,
    /// The window that scheduled it.
    pub window: u32,
    /// Node type, `combined`, or `type→node` (unicast).
    #[serde(rename = "type")]
    pub node_type: String,
    /// Object bytes of its first pass.
    pub bytes: u64,
    /// Frames sent, repair included.
    pub frames: u64,
    /// The nodes that asked.
    pub requesters: Vec<u16>,
    /// Nodes that joined while it ran.
    pub late_joiners: Vec<u16>,
    /// Repair rounds.
    pub repair_rounds: u8,
    /// Bytes sent again in repair.
    pub repair_bytes: u64,
    /// Why its repair ended.
    pub repair_end: Option<RepairEnd>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What a run's event log is made from.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// The testbed's report (a storm's `testbed`).
    pub report: &'a Report,
    /// A storm's actions (none for `testbed up` and benchmarks).
    pub actions: &'a [Event],
    /// The reboots and faults the run made, timed.
    pub made: &'a Made,
}

/// Every event of the run, in time order (ties keep the order below:
/// windows and sessions, node states, storm records). Fails, naming the
/// record, on a time that is not a finite number of seconds.
pub fn collect(s: &Sources<'_>) -> Result<Vec<RunEvent>> {
    let mut out = master_events(s.report);
    out.extend(node_events(s.report));
    out.extend(storm_events(s.actions, s.made));
    for e in &out {
        if !e.t_s.is_finite() {
            bail!("a {} event has no valid time ({})", kind(&e.what), e.t_s);
        }
    }
    out.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    Ok(out)
}

/// The `kind` an event is written with.
pub fn kind(w: &What) -> String {
    serde_json::to_value(w)
        .ok()
        .and_then(|v| v["kind"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Windows, sessions and takeovers, from the master's log.
fn master_events(r: &Report) -> Vec<RunEvent> {
    let at = |t_s, what| RunEvent { t_s, what };
    let mut out = Vec::new();
    for w in &r.windows {
        out.push(at(
            w.opened_s,
            What::WindowOpened {
                window: w.window,
                master: w.master,
            },
        ));
        if let Some(t) = w.closed_s {
            let what = What::WindowClosed {
                window: w.window,
                reason: w.close_reason.clone(),
                requesters: w.requesters.clone(),
            };
            out.push(at(t, what));
        }
    }
    for b in &r.broadcasts {
        let what = What::SessionStart {
            session: b.session,
            window: b.window,
            node_type: b.node_type.clone(),
            bytes: b.bytes,
            requesters: b.requesters.clone(),
        };
        out.push(at(b.started_s, what));
        if let Some(t) = b.ended_s {
            let end = SessionEnd {
                session: b.session,
                window: b.window,
                node_type: b.node_type.clone(),
                bytes: b.bytes,
                frames: b.frames,
                requesters: b.requesters.clone(),
                late_joiners: b.late_joiners.clone(),
                repair_rounds: b.repair_rounds,
                repair_bytes: b.repair_bytes,
                repair_end: b.repair_end,
                error: b.error.clone(),
            };
            out.push(at(t, What::SessionEnd(end)));
        }
    }
    for s in &r.observed_sessions {
        let what = What::SessionSeen {
            session: s.session,
            window: s.window,
            node_type: s.node_type.clone(),
            bytes: s.bytes,
            announced: s.announced,
        };
        out.push(at(s.at_s, what));
    }
    for &(t, resumed_session) in &r.takeovers {
        out.push(at(t, What::Takeover { resumed_session }));
    }
    out
}

/// Each node's state changes and refused images.
fn node_events(r: &Report) -> Vec<RunEvent> {
    let mut out = Vec::new();
    for n in &r.nodes {
        for c in &n.states {
            out.push(RunEvent {
                t_s: c.t_s,
                what: What::State {
                    node: n.id,
                    state: c.state,
                },
            });
        }
        for j in &n.rejections {
            out.push(RunEvent {
                t_s: j.at_s,
                what: What::Rejected {
                    node: n.id,
                    session: j.session,
                    reason: j.reason.clone(),
                },
            });
        }
    }
    out
}

/// A storm's actions, and the reboots and faults the run made.
fn storm_events(actions: &[Event], made: &Made) -> Vec<RunEvent> {
    let mut out: Vec<RunEvent> = actions
        .iter()
        .map(|e| RunEvent {
            t_s: e.t_s,
            what: What::Action {
                action: e.action.clone(),
                line: e.line,
                nodes: e.nodes.clone(),
                ok: e.ok,
                detail: e.detail.clone(),
                skipped: e.skipped.clone(),
            },
        })
        .collect();
    for &(t_s, node, how) in &made.reboots {
        out.push(RunEvent {
            t_s,
            what: What::Reboot { node, how },
        });
    }
    for (t_s, change) in &made.faults {
        let what = match change {
            FaultChange::Rule(rule) => What::Fault { rule: rule.clone() },
            FaultChange::Cleared => What::FaultsCleared,
            FaultChange::LinkDown(port) => What::LinkDown { port: port.clone() },
            FaultChange::Cut(link) => What::LinkCut { link: link.clone() },
            FaultChange::Restored(link) => What::LinkRestored { link: link.clone() },
            FaultChange::MasterKilled => What::MasterKilled,
            // Its reboot is in `made.reboots` already.
            FaultChange::PowerCycled(_) => continue,
        };
        out.push(RunEvent { t_s: *t_s, what });
    }
    out
}

/// The events as JSON lines, one object per line.
pub fn jsonl(events: &[RunEvent]) -> Result<String> {
    let mut out = String::new();
    for e in events {
        out += &serde_json::to_string(e)?;
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::tests::{empty, node};
    use crate::report::{BroadcastReport, StateChange, WindowReport};
    use crate::supervisor::{ObservedSession, Rejection};
    use serde_json::{Value, json};

    fn change(t_s: f64, state: HostState) -> StateChange {
        StateChange { t_s, state }
    }

    /// A broadcast of session `session` for `node_type`, from `from` to `to`.
    pub(crate) fn broadcast(
        session: u32,
        node_type: &str,
        from: f64,
        to: Option<f64>,
    ) -> BroadcastReport {
        BroadcastReport {
            window: 1,
            session,
            node_type: node_type.into(),
            bytes: 4096,
            frames: 80,
            requesters: vec![1, 2],
            late_joiners: vec![],
            started_s: from,
            ended_s: to,
            repair_rounds: 1,
            repair_bytes: 64,
            chunks_per_round: vec![1],
            repair_end: Some(RepairEnd::Complete),
            bus_s: 0.1,
            first_pass_bus_s: 0.05,
            first_pass_wall_s: 0.2,
            masters: vec![Role::Primary],
            resumed_at_chunk: None,
            error: None,
        }
    }

    /// A run of two drives on one window with two sessions, one of which
    /// never ended, a rejection, a takeover and a storm's record.
    pub(crate) fn sample() -> (Report, Vec<Event>, Made) {
        let mut r = empty();
        let mut a = node(1);
        a.states = vec![
            change(0.0, HostState::Booting),
            change(0.5, HostState::Requesting),
            change(1.5, HostState::Receiving),
            change(2.5, HostState::Verified),
        ];
        let mut b = node(2);
        b.node_type = "xy".into();
        b.states = vec![
            change(0.1, HostState::Booting),
            change(3.0, HostState::Failed),
        ];
        b.rejections = vec![Rejection {
            at_s: 2.9,
            session: 2,
            reason: "digest".into(),
            version: "1.0.0".into(),
            measured_prefix: String::new(),
            manifest_prefix: String::new(),
        }];
        r.nodes = vec![a, b];
        r.windows = vec![WindowReport {
            window: 1,
            opened_s: 0.6,
            closed_s: Some(1.4),
            close_reason: Some("timer".into()),
            requesters: vec![1, 2],
            master: Role::Primary,
        }];
        r.broadcasts = vec![
            broadcast(1, "drive", 1.5, Some(2.4)),
            broadcast(2, "xy", 1.5, None),
        ];
        r.observed_sessions = vec![ObservedSession {
            session: 1,
            window: 1,
            node_type: "drive".into(),
            bytes: 4096,
            at_s: 1.55,
            announced: 1,
        }];
        r.takeovers = vec![(2.0, Some(2))];
        let actions = vec![Event {
            t_s: 2.6,
            action: "power-cycle".into(),
            line: 9,
            nodes: vec![1, 2],
            detail: "1:power-cycle".into(),
            ok: true,
            skipped: vec![Skip {
                node: 2,
                reason: "is powered off (power-cycle skipped)".into(),
            }],
            picked: vec![],
        }];
        let made = Made {
            reboots: vec![(2.6, 1, Reboot::PowerCycle)],
            faults: vec![
                (0.0, FaultChange::Cut("a-b".into())),
                (2.6, FaultChange::PowerCycled(1)),
                (2.7, FaultChange::Restored("a-b".into())),
                (2.8, FaultChange::MasterKilled),
            ],
        };
        (r, actions, made)
    }

    fn lines(r: &Report, actions: &[Event], made: &Made) -> Vec<Value> {
        let events = collect(&Sources {
            report: r,
            actions,
            made,
        })
        .unwrap();
        let text = jsonl(&events).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn every_record_becomes_a_line_in_time_order_with_its_kind() {
        let (r, actions, made) = sample();
        let v = lines(&r, &actions, &made);
        let got: Vec<(f64, &str)> = v
            .iter()
            .map(|e| (e["t_s"].as_f64().unwrap(), e["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (0.0, "state"),
                (0.0, "link_cut"),
                (0.1, "state"),
                (0.5, "state"),
                (0.6, "window_opened"),
                (1.4, "window_closed"),
                (1.5, "session_start"),
                (1.5, "session_start"),
                (1.5, "state"),
                (1.55, "session_seen"),
                (2.0, "takeover"),
                (2.4, "session_end"),
                (2.5, "state"),
                (2.6, "action"),
                (2.6, "reboot"),
                (2.7, "link_restored"),
                (2.8, "master_killed"),
                (2.9, "rejected"),
                (3.0, "state"),
            ]
        );
        // The power cycle is one reboot, not a fault as well.
        assert_eq!(v.iter().filter(|e| e["kind"] == "reboot").count(), 1);
    }

    #[test]
    fn lines_carry_what_the_report_says_in_its_casing() {
        let (r, actions, made) = sample();
        let v = lines(&r, &actions, &made);
        let first = |kind: &str| v.iter().find(|e| e["kind"] == kind).unwrap().clone();
        assert_eq!(
            first("state"),
            json!({"t_s": 0.0, "kind": "state", "node": 1, "state": "BOOTING"})
        );
        assert_eq!(first("window_opened")["master"], "primary");
        let end = first("session_end");
        assert_eq!(
            (
                &end["type"],
                &end["bytes"],
                &end["requesters"],
                &end["repair_end"]
            ),
            (
                &json!("drive"),
                &json!(4096),
                &json!([1, 2]),
                &json!("complete")
            )
        );
        assert_eq!(end["repair_rounds"], 1);
        let action = first("action");
        assert_eq!(action["skipped"][0]["node"], 2);
        assert!(
            action["skipped"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("powered off")
        );
        assert_eq!(first("reboot")["how"], "power-cycle");
        assert_eq!(first("takeover")["resumed_session"], 2);
        // The session that never ended starts and has no end.
        let xy = |k: &str| {
            v.iter()
                .filter(|e| e["kind"] == k && e["type"] == "xy")
                .count()
        };
        assert_eq!((xy("session_start"), xy("session_end")), (1, 0));
        // A key order people can read: time, then kind.
        let text = jsonl(&[RunEvent {
            t_s: 1.0,
            what: What::FaultsCleared,
        }])
        .unwrap();
        assert_eq!(text, "{\"t_s\":1.0,\"kind\":\"faults_cleared\"}\n");
    }

    #[test]
    fn a_time_that_is_no_number_is_refused_naming_the_kind() {
        let (mut r, actions, made) = sample();
        r.windows[0].opened_s = f64::NAN;
        let err = collect(&Sources {
            report: &r,
            actions: &actions,
            made: &made,
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a window_opened event has no valid time (NaN)"
        );
    }
}
