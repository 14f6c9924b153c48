//! The run as spans and marks on lanes: what `trace.json` and
//! `timeline.html` draw, derived from the run's events ([`RunEvent`]) once
//! so the two pictures agree. Node lanes are grouped by segment, then type
//! (in the fleet's order); windows and sessions that overlap go on rows of
//! their own.

use super::events::{RunEvent, What};
use crate::master::Role;
use crate::master::session::RepairEnd;
use crate::report::NodeReport;
use crate::supervisor::HostState;
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything a picture of the run shows.
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    /// What ran (`testbed up-8`, `storm storm-40 (seed 7)`).
    pub title: String,
    /// Seconds from the testbed's start to the last thing shown.
    pub end_s: f64,
    /// One lane per node, grouped by segment then type.
    pub lanes: Vec<Lane>,
    /// Each node's states, one span per state entered.
    pub states: Vec<StateSpan>,
    /// Hold-off windows.
    pub windows: Vec<WindowSpan>,
    /// Broadcast sessions.
    pub sessions: Vec<SessionSpan>,
    /// Cut links, while cut.
    pub cuts: Vec<CutSpan>,
    /// Reboots, faults, actions and the like, at one time.
    pub marks: Vec<Mark>,
}

/// A node's lane.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lane {
    /// The node.
    pub node: u16,
    /// Its type.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Its segment.
    pub segment: String,
}

/// A node in one state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateSpan {
    /// The node.
    pub node: u16,
    /// The state.
    pub state: HostState,
    /// Seconds since start when it entered it.
    pub from: f64,
    /// When it left it (or the end).
    pub to: f64,
}

/// A hold-off window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowSpan {
    /// Window number.
    pub window: u32,
    /// The master that opened it.
    pub master: Role,
    /// Opened.
    pub from: f64,
    /// Closed (or the end, if `reason` is none).
    pub to: f64,
    /// Why it closed; none while it was still open at the end.
    pub reason: Option<String>,
    /// The nodes that asked in it.
    pub requesters: Vec<u16>,
    /// The row it is drawn on (overlapping windows get their own).
    pub row: usize,
}

/// A broadcast session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionSpan {
    /// Session number.
    pub session: u32,
    /// The window that scheduled it.
    pub window: u32,
    /// Node type, `combined`, or `type→node`.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Object bytes of its first pass.
    pub bytes: u64,
    /// The nodes that asked (and joined late).
    pub requesters: Vec<u16>,
    /// Nodes that joined while it ran.
    pub late_joiners: Vec<u16>,
    /// Frames sent, repair included (0 when it did not end).
    pub frames: u64,
    /// Repair rounds.
    pub repair_rounds: u8,
    /// Bytes sent again in repair.
    pub repair_bytes: u64,
    /// Why its repair ended.
    pub repair_end: Option<RepairEnd>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Began.
    pub from: f64,
    /// Ended (or the end of the run, when `ended` is false).
    pub to: f64,
    /// Whether it ended within the run.
    pub ended: bool,
    /// The row it is drawn on (overlapping sessions get their own).
    pub row: usize,
}

/// A link while it was cut.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CutSpan {
    /// The link.
    pub link: String,
    /// Cut.
    pub from: f64,
    /// Restored (or the end, if `restored` is false).
    pub to: f64,
    /// Whether it was restored within the run.
    pub restored: bool,
}

/// Something at one time: on a node's lane when it has a node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mark {
    /// Seconds since start.
    pub t: f64,
    /// What it is.
    pub kind: MarkKind,
    /// The node it concerns, if one.
    pub node: Option<u16>,
    /// A short label.
    pub label: String,
    /// Everything known about it.
    pub detail: String,
}

/// The kinds of mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// The scenario rebooted the node.
    Reboot,
    /// An action left the node alone.
    Skipped,
    /// The node refused an image.
    Rejected,
    /// A storm action (that did what it was asked).
    Action,
    /// A storm action that did not.
    ActionFailed,
    /// A fault rule, rules cleared, a port's link down.
    Fault,
    /// A link cut or restored.
    Link,
    /// The primary master killed, or a backup taking over.
    Master,
}

impl Timeline {
    /// The timeline of `events` over `nodes`, shown to at least `end_s`.
    pub fn of(title: &str, nodes: &[NodeReport], events: &[RunEvent], end_s: f64) -> Timeline {
        let end_s = events.iter().map(|e| e.t_s).fold(end_s.max(0.0), f64::max);
        let mut windows = windows(events, end_s);
        let rows = pack(windows.iter().map(|w| (w.from, w.to)));
        windows.iter_mut().zip(rows).for_each(|(w, r)| w.row = r);
        let mut sessions = sessions(events, end_s);
        let rows = pack(sessions.iter().map(|s| (s.from, s.to)));
        sessions.iter_mut().zip(rows).for_each(|(s, r)| s.row = r);
        Timeline {
            title: title.to_string(),
            end_s,
            lanes: lanes(nodes),
            states: states(events, end_s),
            windows,
            sessions,
            cuts: cuts(events, end_s),
            marks: events.iter().flat_map(marks).collect(),
        }
    }

    /// Rows the window lane needs (at least one).
    pub fn window_rows(&self) -> usize {
        self.windows.iter().map(|w| w.row + 1).max().unwrap_or(1)
    }

    /// Rows the session lane needs (at least one).
    pub fn session_rows(&self) -> usize {
        self.sessions.iter().map(|s| s.row + 1).max().unwrap_or(1)
    }

    /// The cut links, in the order they were first cut.
    pub fn links(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for c in &self.cuts {
            if !names.contains(&c.link.as_str()) {
                names.push(&c.link);
            }
        }
        names
    }

    /// The lanes' groups, `(segment, type)`, in order.
    pub fn groups(&self) -> Vec<(&str, &str)> {
        let mut g: Vec<(&str, &str)> = Vec::new();
        for l in &self.lanes {
            let key = (l.segment.as_str(), l.node_type.as_str());
            if g.last() != Some(&key) {
                g.push(key);
            }
        }
        g
    }
}

/// Lanes by segment, then type, each in the order the fleet first names
/// it, then node id.
fn lanes(nodes: &[NodeReport]) -> Vec<Lane> {
    let first = |f: &dyn Fn(&NodeReport) -> &str| {
        let mut order: Vec<String> = Vec::new();
        for n in nodes {
            if !order.iter().any(|o| o == f(n)) {
                order.push(f(n).to_string());
            }
        }
        order
    };
    let (segments, types) = (first(&|n| &n.segment), first(&|n| &n.node_type));
    let pos = |order: &[String], v: &str| order.iter().position(|o| o == v);
    let mut lanes: Vec<Lane> = nodes
        .iter()
        .map(|n| Lane {
            node: n.id,
            node_type: n.node_type.clone(),
            segment: n.segment.clone(),
        })
        .collect();
    lanes.sort_by_key(|l| {
        (
            pos(&segments, &l.segment),
            pos(&types, &l.node_type),
            l.node,
        )
    });
    lanes
}

/// One span per state a node entered, to its next state or `end_s`.
fn states(events: &[RunEvent], end_s: f64) -> Vec<StateSpan> {
    let mut by_node: BTreeMap<u16, Vec<(f64, HostState)>> = BTreeMap::new();
    for e in events {
        if let What::State { node, state } = e.what {
            by_node.entry(node).or_default().push((e.t_s, state));
        }
    }
    let mut out = Vec::new();
    for (node, changes) in by_node {
        for (k, &(from, state)) in changes.iter().enumerate() {
            let to = changes.get(k + 1).map_or(end_s, |c| c.0);
            out.push(StateSpan {
                node,
                state,
                from,
                to,
            });
        }
    }
    out
}

/// Windows from their opening to their closing (or `end_s`).
fn windows(events: &[RunEvent], end_s: f64) -> Vec<WindowSpan> {
    let mut out: Vec<WindowSpan> = Vec::new();
    for e in events {
        match &e.what {
            What::WindowOpened { window, master } => out.push(WindowSpan {
                window: *window,
                master: *master,
                from: e.t_s,
                to: end_s,
                reason: None,
                requesters: Vec::new(),
                row: 0,
            }),
            What::WindowClosed {
                window,
                reason,
                requesters,
            } => {
                if let Some(w) = out.iter_mut().rev().find(|w| w.window == *window) {
                    w.to = e.t_s;
                    w.reason = reason.clone().or(Some("closed".into()));
                    w.requesters = requesters.clone();
                }
            }
            _ => {}
        }
    }
    out
}

/// Sessions from their start to their end (or `end_s`).
fn sessions(events: &[RunEvent], end_s: f64) -> Vec<SessionSpan> {
    let mut out: Vec<SessionSpan> = Vec::new();
    for e in events {
        match &e.what {
            What::SessionStart {
                session,
                window,
                node_type,
                bytes,
                requesters,
            } => out.push(SessionSpan {
                session: *session,
                window: *window,
                node_type: node_type.clone(),
                bytes: *bytes,
                requesters: requesters.clone(),
                late_joiners: Vec::new(),
                frames: 0,
                repair_rounds: 0,
                repair_bytes: 0,
                repair_end: None,
                error: None,
                from: e.t_s,
                to: end_s,
                ended: false,
                row: 0,
            }),
            What::SessionEnd(end) => {
                if let Some(s) = out.iter_mut().rev().find(|s| s.session == end.session) {
                    s.to = e.t_s.max(s.from);
                    s.ended = true;
                    s.requesters = end.requesters.clone();
                    s.late_joiners = end.late_joiners.clone();
                    s.frames = end.frames;
                    s.repair_rounds = end.repair_rounds;
                    s.repair_bytes = end.repair_bytes;
                    s.repair_end = end.repair_end;
                    s.error = end.error.clone();
                }
            }
            _ => {}
        }
    }
    out
}

/// Each link's cuts, to their restoring (or `end_s`).
fn cuts(events: &[RunEvent], end_s: f64) -> Vec<CutSpan> {
    let mut out: Vec<CutSpan> = Vec::new();
    for e in events {
        match &e.what {
            // Cut again while cut: still the one cut.
            What::LinkCut { link } if !out.iter().any(|c| c.link == *link && !c.restored) => out
                .push(CutSpan {
                    link: link.clone(),
                    from: e.t_s,
                    to: end_s,
                    restored: false,
                }),
            What::LinkRestored { link } => {
                if let Some(c) = out.iter_mut().find(|c| c.link == *link && !c.restored) {
                    c.to = e.t_s;
                    c.restored = true;
                }
            }
            _ => {}
        }
    }
    out
}

/// The marks an event makes: none for states, windows and sessions (they
/// are spans).
fn marks(e: &RunEvent) -> Vec<Mark> {
    let mark = |kind, node, label: &str, detail: String| Mark {
        t: e.t_s,
        kind,
        node,
        label: label.to_string(),
        detail,
    };
    match &e.what {
        What::Reboot { node, how } => {
            let how = serde_json::to_value(how).ok();
            let how = how.as_ref().and_then(|v| v.as_str()).unwrap_or("reboot");
            let text = format!("node {node}: {how} by the scenario");
            vec![mark(MarkKind::Reboot, Some(*node), how, text)]
        }
        What::Rejected {
            node,
            session,
            reason,
        } => {
            let text = format!("node {node} refused the image of session {session}: {reason}");
            vec![mark(MarkKind::Rejected, Some(*node), "rejected", text)]
        }
        What::Action {
            action,
            line,
            nodes,
            ok,
            detail,
            skipped,
        } => {
            let kind = if *ok {
                MarkKind::Action
            } else {
                MarkKind::ActionFailed
            };
            let text = format!("{action} (line {line}) on {nodes:?}: {detail}");
            let mut out = vec![mark(kind, None, action, text)];
            for s in skipped {
                let text = format!(
                    "{action} (line {line}) left node {} alone: it {}",
                    s.node, s.reason
                );
                out.push(mark(MarkKind::Skipped, Some(s.node), "skipped", text));
            }
            out
        }
        other => bus_mark(other)
            .map(|(kind, label, text)| mark(kind, None, label, text))
            .into_iter()
            .collect(),
    }
}

/// The mark of a fault, link or master event: kind, label and detail.
fn bus_mark(w: &What) -> Option<(MarkKind, &'static str, String)> {
    Some(match w {
        What::Fault { rule } => {
            let rule = serde_json::to_string(rule).unwrap_or_default();
            (MarkKind::Fault, "fault", format!("fault rule {rule}"))
        }
        What::FaultsCleared => (
            MarkKind::Fault,
            "cleared",
            "every fault rule cleared".into(),
        ),
        What::LinkDown { port } => (
            MarkKind::Fault,
            "link down",
            format!("port {port}'s link down"),
        ),
        What::LinkCut { link } => (MarkKind::Link, "cut", format!("link {link} cut")),
        What::LinkRestored { link } => {
            (MarkKind::Link, "restored", format!("link {link} restored"))
        }
        What::MasterKilled => (
            MarkKind::Master,
            "master killed",
            "the primary master killed".into(),
        ),
        What::Takeover { resumed_session } => (
            MarkKind::Master,
            "takeover",
            match resumed_session {
                Some(s) => format!("the backup master took over, resuming session {s}"),
                None => "the backup master took over".into(),
            },
        ),
        _ => return None,
    })
}

/// A row for each span, `(from, to)` in start order, so that spans on one
/// row do not overlap: the first row free by then.
fn pack(spans: impl Iterator<Item = (f64, f64)>) -> Vec<usize> {
    let spans: Vec<(f64, f64)> = spans.collect();
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by(|&a, &b| spans[a].0.total_cmp(&spans[b].0));
    let mut ends: Vec<f64> = Vec::new();
    let mut rows = vec![0; spans.len()];
    for i in order {
        let (from, to) = spans[i];
        let row = match ends.iter().position(|&e| e <= from) {
            Some(r) => r,
            None => {
                ends.push(f64::NEG_INFINITY);
                ends.len() - 1
            }
        };
        ends[row] = to;
        rows[i] = row;
    }
    rows
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::outputs::events::tests::sample;
    use crate::outputs::events::{Sources, collect};

    /// The timeline of the events' sample run.
    pub(crate) fn timeline() -> Timeline {
        let (r, actions, made) = sample();
        let events = collect(&Sources {
            report: &r,
            actions: &actions,
            made: &made,
        })
        .unwrap();
        Timeline::of("storm sample", &r.nodes, &events, 3.5)
    }

    #[test]
    fn states_run_to_the_next_state_and_the_last_to_the_end() {
        let t = timeline();
        assert_eq!(t.end_s, 3.5);
        let node1: Vec<(HostState, f64, f64)> = t
            .states
            .iter()
            .filter(|s| s.node == 1)
            .map(|s| (s.state, s.from, s.to))
            .collect();
        assert_eq!(
            node1,
            [
                (HostState::Booting, 0.0, 0.5),
                (HostState::Requesting, 0.5, 1.5),
                (HostState::Receiving, 1.5, 2.5),
                (HostState::Verified, 2.5, 3.5),
            ]
        );
        assert_eq!(t.states.len(), 6);
    }

    #[test]
    fn sessions_windows_cuts_and_marks_come_from_the_events() {
        let t = timeline();
        let s: Vec<(u32, f64, f64, bool, usize)> = t
            .sessions
            .iter()
            .map(|s| (s.session, s.from, s.to, s.ended, s.row))
            .collect();
        // Two at once: two rows; the unended one runs to the end.
        assert_eq!(s, [(1, 1.5, 2.4, true, 0), (2, 1.5, 3.5, false, 1)]);
        assert_eq!(t.session_rows(), 2);
        assert_eq!(t.sessions[0].frames, 80);
        assert_eq!(t.sessions[0].repair_end, Some(RepairEnd::Complete));
        let [w] = &t.windows[..] else { panic!() };
        assert_eq!(
            (w.from, w.to, w.reason.as_deref()),
            (0.6, 1.4, Some("timer"))
        );
        assert_eq!(
            t.cuts,
            [CutSpan {
                link: "a-b".into(),
                from: 0.0,
                to: 2.7,
                restored: true
            }]
        );
        let kinds: Vec<(MarkKind, Option<u16>)> =
            t.marks.iter().map(|m| (m.kind, m.node)).collect();
        assert_eq!(
            kinds,
            [
                (MarkKind::Link, None),
                (MarkKind::Master, None),
                (MarkKind::Action, None),
                (MarkKind::Skipped, Some(2)),
                (MarkKind::Reboot, Some(1)),
                (MarkKind::Link, None),
                (MarkKind::Master, None),
                (MarkKind::Rejected, Some(2)),
            ]
        );
        assert_eq!(t.marks[4].label, "power-cycle");
    }

    #[test]
    fn lanes_group_by_segment_then_type_in_the_fleets_order() {
        let mut nodes = Vec::new();
        for (id, ty, seg) in [
            (1, "drive", "a"),
            (2, "xy", "b"),
            (3, "xy", "a"),
            (4, "drive", "b"),
        ] {
            let mut n = crate::report::tests::node(id);
            n.node_type = ty.into();
            n.segment = seg.into();
            nodes.push(n);
        }
        let t = Timeline::of("t", &nodes, &[], 0.0);
        let ids: Vec<u16> = t.lanes.iter().map(|l| l.node).collect();
        assert_eq!(ids, [1, 3, 4, 2]);
        assert_eq!(
            t.groups(),
            [("a", "drive"), ("a", "xy"), ("b", "drive"), ("b", "xy")]
        );
    }

    #[test]
    fn packing_reuses_a_row_once_it_is_free() {
        let rows = pack([(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (0.5, 0.6)].into_iter());
        assert_eq!(rows, [0, 1, 0, 1]);
    }
}
