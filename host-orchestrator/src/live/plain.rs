//! The live view where stderr is no terminal (CI logs, pipes): a plain line
//! for every node state change, window, broadcast and failure.

use super::stderr;
use crate::report::MasterLog;
use crate::supervisor::{FleetView, HostState};
use std::collections::BTreeMap;

/// What has been said so far.
#[derive(Default)]
pub struct Plain {
    states: BTreeMap<u16, HostState>,
    windows_closed: usize,
    broadcasts_started: usize,
    broadcasts_ended: usize,
}

impl Plain {
    /// The lines for what changed since the last call, `now_s` being the
    /// seconds since the start: node changes, then the masters' news in
    /// time order.
    pub fn lines(&mut self, fleet: &FleetView, log: &MasterLog, now_s: f64) -> Vec<String> {
        let mut out = self.node_lines(fleet, now_s);
        let mut news = self.master_lines(log, now_s);
        news.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.extend(news.into_iter().map(|(_, l)| l));
        out
    }

    fn node_lines(&mut self, fleet: &FleetView, now_s: f64) -> Vec<String> {
        let mut out = Vec::new();
        for (id, n) in &fleet.nodes {
            if self.states.get(id) == Some(&n.state) {
                continue;
            }
            self.states.insert(*id, n.state);
            let mut line = format!(
                "[{now_s:7.2}s] node {id:>3} {:<9} {}",
                n.spec.node_type.name(),
                n.state.as_str()
            );
            if let (HostState::Failed, Some(why)) = (n.state, &n.failure) {
                line += &format!(": {why}");
            }
            out.push(line);
        }
        out
    }

    /// Windows closed, broadcasts started and ended, with their times.
    fn master_lines(&mut self, log: &MasterLog, now_s: f64) -> Vec<(f64, String)> {
        let mut out = Vec::new();
        let closed: Vec<_> = log
            .windows
            .iter()
            .filter(|w| w.closed_s.is_some())
            .collect();
        for w in closed.iter().skip(self.windows_closed) {
            let at = w.closed_s.unwrap_or(now_s);
            out.push((
                at,
                format!(
                    "[{at:7.2}s] window {} closed ({}): {} requester{}",
                    w.window,
                    w.close_reason.as_deref().unwrap_or("?"),
                    w.requesters.len(),
                    if w.requesters.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        self.windows_closed = self.windows_closed.max(closed.len());
        for b in log.broadcasts.iter().skip(self.broadcasts_started) {
            out.push((
                b.started_s,
                format!(
                    "[{:7.2}s] broadcast session {} {} to {:?}, {} bytes",
                    b.started_s, b.session, b.node_type, b.requesters, b.bytes
                ),
            ));
        }
        self.broadcasts_started = log.broadcasts.len();
        let ended: Vec<_> = log
            .broadcasts
            .iter()
            .filter(|b| b.ended_s.is_some())
            .collect();
        for b in ended.iter().skip(self.broadcasts_ended) {
            let at = b.ended_s.unwrap_or(now_s);
            let mut line = format!(
                "[{at:7.2}s] broadcast session {} ended: {} frames",
                b.session, b.frames
            );
            if b.repair_rounds > 0 {
                line += &format!(
                    ", {} repair round{} ({} bytes)",
                    b.repair_rounds,
                    if b.repair_rounds == 1 { "" } else { "s" },
                    b.repair_bytes
                );
            }
            if let Some(e) = &b.error {
                line += &format!(", FAILED: {e}");
            }
            out.push((at, line));
        }
        self.broadcasts_ended = self.broadcasts_ended.max(ended.len());
        out
    }

    /// Prints the lines for what changed.
    pub fn show(&mut self, fleet: &FleetView, log: &MasterLog, now_s: f64) {
        for line in self.lines(fleet, log, now_s) {
            stderr::eprintln(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use crate::master::{CloseReason, MasterEvent, MasterRecord, Role};
    use crate::supervisor::NodeRecord;
    use std::sync::Arc;

    fn with_state(v: &mut FleetView, id: u16, s: HostState, failure: Option<&str>) {
        let mut r = (*v.nodes[&id]).clone();
        r.state = s;
        r.failure = failure.map(String::from);
        v.nodes.insert(id, Arc::new(r));
    }

    fn record(log: &mut MasterLog, ms: u64, event: MasterEvent) {
        let r = MasterRecord {
            ts_ms: ms,
            vt_ns: None,
            source: Role::Primary,
            event,
        };
        log.record(&r, 0);
    }

    #[test]
    fn each_change_is_said_once() {
        let mut v = FleetView::default();
        for spec in Fleet::default_mix(2).unwrap().nodes {
            v.nodes
                .insert(spec.id, Arc::new(NodeRecord::new(spec, [0; 32])));
        }
        let mut p = Plain::default();
        assert_eq!(p.lines(&v, &MasterLog::default(), 0.0).len(), 2, "both OFF");
        assert!(p.lines(&v, &MasterLog::default(), 0.1).is_empty());
        let mut log = MasterLog::default();
        record(
            &mut log,
            100,
            MasterEvent::WindowOpened { window: 1, node: 1 },
        );
        assert!(
            p.lines(&v, &log, 0.2).is_empty(),
            "an open window says nothing"
        );
        record(
            &mut log,
            600,
            MasterEvent::WindowClosed {
                window: 1,
                held_ms: 500,
                reason: CloseReason::Timer,
                requesters: vec![1, 2],
            },
        );
        record(
            &mut log,
            700,
            MasterEvent::SessionStarted {
                session: 1,
                window: 1,
                kind: "drive".into(),
                requesters: vec![1, 2],
                bytes: 100,
                resumed_at_chunk: None,
            },
        );
        with_state(&mut v, 2, HostState::Failed, Some("digest mismatch"));
        let type2 = v.nodes[&2].spec.node_type.name();
        assert_eq!(
            p.lines(&v, &log, 0.8),
            [
                format!("[   0.80s] node   2 {type2:<9} FAILED: digest mismatch"),
                "[   0.60s] window 1 closed (timer): 2 requesters".to_string(),
                "[   0.70s] broadcast session 1 drive to [1, 2], 100 bytes".to_string(),
            ]
        );
        record(
            &mut log,
            900,
            MasterEvent::SessionEnded {
                session: 1,
                bytes: 100,
                frames: 5,
                repair_rounds: 1,
                repair_bytes: 60,
                chunks_per_round: vec![1],
                bus_ms: 1.0,
                first_pass_bus_ms: 1.0,
                first_pass_wall_ms: 1.0,
                repair_end: Default::default(),
                error: None,
            },
        );
        record(
            &mut log,
            950,
            MasterEvent::SessionStarted {
                session: 2,
                window: 1,
                kind: "xy".into(),
                requesters: vec![1],
                bytes: 100,
                resumed_at_chunk: None,
            },
        );
        assert_eq!(
            p.lines(&v, &log, 1.0),
            [
                "[   0.90s] broadcast session 1 ended: 5 frames, 1 repair round (60 bytes)",
                "[   0.95s] broadcast session 2 xy to [1], 100 bytes",
            ]
        );
        assert!(p.lines(&v, &log, 1.1).is_empty());
    }
}
