//! What the live view shows, as data: made from one fleet snapshot and one
//! masters' log, free of any terminal, so that it is tested as a table.

use crate::master::progress::SessionProgress;
use crate::report::MasterLog;
use crate::supervisor::{FleetView, HostState};
use proto::NodeType;
use std::collections::BTreeMap;

/// Every line of the live view at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Screen {
    /// One per node type in the fleet, in type order.
    pub types: Vec<TypeLine>,
    /// The broadcast being sent, if one is.
    pub session: Option<SessionLine>,
    /// The open hold-off window, if one is.
    pub window: Option<WindowLine>,
    /// Totals.
    pub summary: Summary,
    /// Failed nodes and why, by id.
    pub failures: BTreeMap<u16, String>,
}

/// One node type's nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeLine {
    /// The type.
    pub node_type: NodeType,
    /// Its nodes.
    pub total: usize,
    /// Verified ones.
    pub verified: usize,
    /// Failed ones.
    pub failed: usize,
    /// The others, by state (nodes on their way).
    pub on_the_way: BTreeMap<StateKey, usize>,
}

/// A state, ordered as a node passes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StateKey(u8, &'static str);

impl StateKey {
    fn of(s: HostState) -> StateKey {
        let order = match s {
            HostState::Off => 0,
            HostState::Booting => 1,
            HostState::SelfTest => 2,
            HostState::Requesting => 3,
            HostState::Receiving => 4,
            HostState::Verifying => 5,
            HostState::Handoff => 6,
            HostState::Running => 7,
            HostState::Verified => 8,
            HostState::Failed => 9,
        };
        StateKey(order, s.as_str())
    }

    /// The state's name, lower case for the view.
    pub fn name(self) -> String {
        self.1.to_lowercase()
    }
}

/// The broadcast being sent.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionLine {
    /// Where it is.
    pub progress: SessionProgress,
    /// What it carries: a type, "combined" or "type→node".
    pub kind: String,
    /// Nodes it serves (late joiners included).
    pub requesters: usize,
    /// Object bytes.
    pub bytes: u64,
}

/// The open hold-off window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowLine {
    /// Its number.
    pub window: u32,
    /// Seconds until it closes, if the master said.
    pub closes_in_s: Option<f64>,
    /// Nodes asking for an image now.
    pub requesting: usize,
}

/// Totals for the summary line.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Seconds since the testbed started.
    pub elapsed_s: f64,
    /// Nodes.
    pub total: usize,
    /// Verified nodes.
    pub verified: usize,
    /// Failed nodes.
    pub failed: usize,
    /// Windows so far.
    pub windows: usize,
    /// Broadcasts so far.
    pub broadcasts: usize,
    /// Repair rounds so far, over every broadcast.
    pub repair_rounds: u32,
}

impl Screen {
    /// The view of `fleet` and `log` at `now_s` seconds since the start.
    pub fn of(fleet: &FleetView, log: &MasterLog, now_s: f64) -> Screen {
        let mut types: BTreeMap<NodeType, TypeLine> = BTreeMap::new();
        let mut failures = BTreeMap::new();
        for n in fleet.nodes.values() {
            let t = n.spec.node_type;
            let line = types.entry(t).or_insert_with(|| TypeLine {
                node_type: t,
                total: 0,
                verified: 0,
                failed: 0,
                on_the_way: BTreeMap::new(),
            });
            line.total += 1;
            match n.state {
                HostState::Verified => line.verified += 1,
                HostState::Failed => {
                    line.failed += 1;
                    let why = n.failure.as_deref().unwrap_or("no reason recorded");
                    failures.insert(n.spec.id, why.to_string());
                }
                s => *line.on_the_way.entry(StateKey::of(s)).or_default() += 1,
            }
        }
        let types: Vec<TypeLine> = types.into_values().collect();
        let count = |s| fleet.nodes.values().filter(|n| n.state == s).count();
        let session = log.now.session.map(|progress| {
            let b = log
                .broadcasts
                .iter()
                .find(|b| b.session == progress.session);
            SessionLine {
                progress,
                kind: b.map_or_else(|| "?".into(), |b| b.node_type.clone()),
                requesters: b.map_or(0, |b| b.requesters.len()),
                bytes: b.map_or(0, |b| b.bytes),
            }
        });
        let window = log
            .windows
            .iter()
            .rev()
            .find(|w| w.closed_s.is_none())
            .map(|w| WindowLine {
                window: w.window,
                closes_in_s: log.now.window_closes_s.map(|at| (at - now_s).max(0.0)),
                requesting: count(HostState::Requesting),
            });
        let summary = Summary {
            elapsed_s: now_s,
            total: fleet.nodes.len(),
            verified: count(HostState::Verified),
            failed: count(HostState::Failed),
            windows: log.windows.len(),
            broadcasts: log.broadcasts.len(),
            repair_rounds: log.broadcasts.iter().map(|b| b.repair_rounds as u32).sum(),
        };
        Screen {
            types,
            session,
            window,
            summary,
            failures,
        }
    }
}

impl TypeLine {
    /// "1 receiving, 2 requesting" (the nodes on their way), or "".
    pub fn detail(&self) -> String {
        let mut parts: Vec<String> = self
            .on_the_way
            .iter()
            .rev()
            .map(|(s, n)| format!("{n} {}", s.name()))
            .collect();
        if self.failed > 0 {
            parts.push(format!("{} FAILED", self.failed));
        }
        parts.join(", ")
    }

    /// The whole line without a bar: "drive      6/8 verified  1 receiving".
    pub fn text(&self) -> String {
        format!(
            "{:<9} {:>3}/{:<3} verified  {}",
            self.node_type.name(),
            self.verified,
            self.total,
            self.detail()
        )
        .trim_end()
        .to_string()
    }
}

impl SessionLine {
    /// "session 3 drive to 8 nodes, 24000 bytes: 120/400 chunks", then
    /// ", collecting NACKs" after an end and ", repair round 1: 12 chunks"
    /// while repairing.
    pub fn text(&self) -> String {
        let p = &self.progress;
        let mut s = format!(
            "session {} {} to {} node{}, {} bytes: {}/{} chunks",
            p.session,
            self.kind,
            self.requesters,
            if self.requesters == 1 { "" } else { "s" },
            self.bytes,
            p.chunks,
            p.total_chunks
        );
        match (p.round, p.round_chunks) {
            (0, _) => {}
            (_, 0) => s += ", collecting NACKs",
            (r, n) => s += &format!(", repair round {r}: {n} chunks"),
        }
        s
    }
}

impl WindowLine {
    /// "window 4 open, 3 requesting, closes in 0.4 s".
    pub fn text(&self) -> String {
        let closes = match self.closes_in_s {
            Some(s) if s > 0.0 => format!(", closes in {s:.1} s"),
            Some(_) => ", closing".to_string(),
            None => String::new(),
        };
        format!(
            "window {} open, {} requesting{closes}",
            self.window, self.requesting
        )
    }
}

impl Summary {
    /// "12.3 s  verified 35/40  failed 1  3 windows  5 broadcasts  2 repair rounds".
    pub fn text(&self) -> String {
        let mut s = format!(
            "{:.1} s  verified {}/{}",
            self.elapsed_s, self.verified, self.total
        );
        if self.failed > 0 {
            s += &format!("  FAILED {}", self.failed);
        }
        s += &format!(
            "  {} window{}  {} broadcast{}  {} repair round{}",
            self.windows,
            plural(self.windows),
            self.broadcasts,
            plural(self.broadcasts),
            self.repair_rounds,
            plural(self.repair_rounds as usize)
        );
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use crate::master::{MasterEvent, MasterRecord, Role};
    use crate::supervisor::NodeRecord;
    use std::sync::Arc;

    /// A fleet of the default mix with the given states, by node id order.
    fn fleet(states: &[HostState]) -> FleetView {
        let specs = Fleet::default_mix(states.len()).unwrap().nodes;
        let mut v = FleetView::default();
        for (spec, s) in specs.into_iter().zip(states) {
            let mut r = NodeRecord::new(spec, [0; 32]);
            r.state = *s;
            if *s == HostState::Failed {
                r.failure = Some("digest mismatch".into());
            }
            v.nodes.insert(r.spec.id, Arc::new(r));
        }
        v
    }

    fn log(records: &[(u64, MasterEvent)]) -> MasterLog {
        let mut l = MasterLog::default();
        for (ms, e) in records {
            let r = MasterRecord {
                ts_ms: 1000 + ms,
                vt_ns: None,
                source: Role::Primary,
                event: e.clone(),
            };
            l.record(&r, 1000);
        }
        l
    }

    #[test]
    fn a_line_per_type_counts_verified_failed_and_the_rest_by_state() {
        use HostState::*;
        let v = fleet(&[Verified, Receiving, Requesting, Failed, Verified, Receiving]);
        let s = Screen::of(&v, &MasterLog::default(), 2.0);
        let lines: Vec<(String, String)> = s
            .types
            .iter()
            .map(|t| (t.node_type.name().to_string(), t.text()))
            .collect();
        let by_type: BTreeMap<NodeType, Vec<u16>> =
            v.nodes.values().fold(BTreeMap::new(), |mut m, n| {
                m.entry(n.spec.node_type).or_default().push(n.spec.id);
                m
            });
        assert_eq!(lines.len(), by_type.len(), "{lines:?}");
        let total: usize = s.types.iter().map(|t| t.total).sum();
        assert_eq!(total, 6);
        assert_eq!(s.summary.verified, 2);
        assert_eq!(s.summary.failed, 1);
        assert_eq!(s.failures.values().collect::<Vec<_>>(), ["digest mismatch"]);
        let failed_line = s.types.iter().find(|t| t.failed == 1).unwrap();
        assert!(failed_line.text().ends_with("1 FAILED"), "{lines:?}");
        // Further along first.
        let t = TypeLine {
            node_type: NodeType::Drive,
            total: 8,
            verified: 5,
            failed: 0,
            on_the_way: [(StateKey::of(Requesting), 2), (StateKey::of(Receiving), 1)].into(),
        };
        assert_eq!(
            t.text(),
            "drive       5/8   verified  1 receiving, 2 requesting"
        );
    }

    #[test]
    fn the_session_and_window_lines_follow_the_master() {
        use crate::master::CloseReason;
        let progress = SessionProgress {
            session: 2,
            total_chunks: 400,
            chunks: 120,
            round: 0,
            round_chunks: 0,
        };
        let started = MasterEvent::SessionStarted {
            session: 2,
            window: 1,
            kind: "drive".into(),
            requesters: vec![1, 2, 3],
            bytes: 24_000,
            resumed_at_chunk: None,
        };
        let records = [
            (0, MasterEvent::WindowOpened { window: 1, node: 1 }),
            (
                500,
                MasterEvent::WindowClosed {
                    window: 1,
                    held_ms: 500,
                    reason: CloseReason::Timer,
                    requesters: vec![1, 2, 3],
                },
            ),
            (600, started),
            (700, MasterEvent::WindowOpened { window: 2, node: 4 }),
            (
                800,
                MasterEvent::Progress {
                    window_closes_in_ms: Some(400),
                    session: Some(progress),
                },
            ),
        ];
        let l = log(&records);
        let s = Screen::of(&fleet(&[HostState::Requesting]), &l, 0.9);
        assert_eq!(
            s.session.as_ref().map(SessionLine::text).as_deref(),
            Some("session 2 drive to 3 nodes, 24000 bytes: 120/400 chunks")
        );
        assert_eq!(
            s.window.as_ref().map(WindowLine::text).as_deref(),
            Some("window 2 open, 1 requesting, closes in 0.3 s")
        );
        assert_eq!(
            s.summary.text(),
            "0.9 s  verified 0/1  2 windows  1 broadcast  0 repair rounds"
        );
        let mut line = s.session.unwrap();
        line.progress.round = 1;
        assert!(line.text().ends_with(": 120/400 chunks, collecting NACKs"));
        line.progress.round_chunks = 12;
        assert!(
            line.text()
                .ends_with(": 120/400 chunks, repair round 1: 12 chunks")
        );
        // Past its deadline, the window is closing.
        let s = Screen::of(&fleet(&[HostState::Requesting]), &l, 5.0);
        assert_eq!(
            s.window.unwrap().text(),
            "window 2 open, 1 requesting, closing"
        );
    }

    #[test]
    fn nothing_running_shows_no_session_or_window() {
        let s = Screen::of(&fleet(&[HostState::Verified]), &MasterLog::default(), 1.0);
        assert_eq!((s.session, s.window), (None, None));
        assert!(s.failures.is_empty());
    }
}
