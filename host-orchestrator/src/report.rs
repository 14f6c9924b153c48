//! The JSON report and the human table.

use crate::clock::{ClockKind, Moment};
use crate::master::progress::SessionProgress;
use crate::master::session::RepairEnd;
use crate::master::{MasterEvent, MasterRecord, Role};
use crate::seeds::Seeds;
use crate::supervisor::{FleetView, HostState, ObservedSession, Rejection, VerifiedBy, digest_hex};
use bus_bridge::BusStats;
use serde::{Deserialize, Serialize};

/// A run's verdict; "pass" or "fail" in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Everything held.
    Pass,
    /// Something did not.
    Fail,
}

impl Verdict {
    /// `Pass` when `held`.
    pub fn of(held: bool) -> Verdict {
        if held { Verdict::Pass } else { Verdict::Fail }
    }

    /// Whether it is a pass.
    pub fn passed(self) -> bool {
        self == Verdict::Pass
    }

    /// "pass" or "fail".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole report of one testbed run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Pass when every node is verified.
    pub verdict: Verdict,
    /// Nodes in the fleet.
    pub nodes_total: usize,
    /// Nodes verified.
    pub nodes_verified: usize,
    /// Seconds from the first spawn to the last node verified (or to the end).
    pub elapsed_s: f64,
    /// Which clock every time in the report is on.
    pub clock: ClockKind,
    /// Host seconds the run took, from the bridge's start to the report
    /// (the one wall-clock figure of a run on the virtual clock).
    pub wall_s: f64,
    /// The run folder (logs).
    pub run_dir: String,
    /// Per node.
    pub nodes: Vec<NodeReport>,
    /// Per broadcast (the master's log).
    pub broadcasts: Vec<BroadcastReport>,
    /// Per hold-off window (the master's log).
    pub windows: Vec<WindowReport>,
    /// Sessions the supervisor saw on the bus itself.
    pub observed_sessions: Vec<ObservedSession>,
    /// Takeovers by a backup master: (seconds since start, resumed session).
    pub takeovers: Vec<(f64, Option<u32>)>,
    /// Bus statistics from the bridge (`null` without one).
    pub bus: Option<BusStats>,
    /// Every seed the run used (`null` where none is known).
    pub seeds: Option<Seeds>,
}

/// One node in the report.
#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    /// Node id.
    pub id: u16,
    /// Node type.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Bus segment.
    pub segment: String,
    /// Final state.
    pub state: HostState,
    /// Whether it is verified: the host's own check of its RAM and CPU, or
    /// its heartbeat's digest and its answer to a challenge, matched the
    /// build.
    pub verified: bool,
    /// Which check verified its running image first: "host-check" (the
    /// host read its RAM and PC) or "challenge" (its heartbeat and answer).
    pub verified_by: Option<VerifiedBy>,
    /// What the host's own check of its RAM and CPU found last ("ok: ...",
    /// "not yet: ...", "wrong: ...").
    pub host_check: Option<String>,
    /// Digest the node measured (hex), if it ran.
    pub digest: Option<String>,
    /// Digest of the build's image for its type (hex).
    pub expected_digest: String,
    /// Generation (session that delivered its image).
    pub generation: Option<u32>,
    /// Every generation it ran.
    pub generations: Vec<u32>,
    /// Image name from the heartbeat.
    pub image_name: Option<String>,
    /// Image version "M.m.p".
    pub image_version: Option<String>,
    /// Seconds from its (last) spawn to verified.
    pub time_to_verified_s: Option<f64>,
    /// Boots since power-on.
    pub boot_count: u16,
    /// Reset cause of its last boot.
    pub reset_cause: Option<String>,
    /// Image frames the app ignored while running.
    pub ignored_image_frames: u32,
    /// Images it refused.
    pub rejections: Vec<Rejection>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Last message heard from it.
    pub last_message: String,
    /// For a node that is not verified: the last lines of its log.
    pub log_tail: Vec<String>,
    /// Every state it entered, in order (empty until the run has ended).
    pub states: Vec<StateChange>,
}

/// A node entering a state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StateChange {
    /// Seconds since the testbed started.
    pub t_s: f64,
    /// The state entered.
    pub state: HostState,
}

impl NodeReport {
    /// Why it is not verified: last state, failure, last message and the
    /// tail of its log.
    pub fn diagnosis(&self) -> String {
        let since = self
            .states
            .last()
            .map_or(String::new(), |c| format!(" since {:.2} s", c.t_s));
        format!(
            "{:?}{since}; {}; last message {}; log tail: {}",
            self.state,
            self.failure.as_deref().unwrap_or("no failure recorded"),
            if self.last_message.is_empty() {
                "(none)"
            } else {
                &self.last_message
            },
            if self.log_tail.is_empty() {
                "(empty)".to_string()
            } else {
                self.log_tail.join(" | ")
            }
        )
    }
}

/// One broadcast session.
#[derive(Clone, Debug, Serialize)]
pub struct BroadcastReport {
    /// Window that scheduled it.
    pub window: u32,
    /// Session number.
    pub session: u32,
    /// Node type, "combined", or "type→node" (unicast).
    #[serde(rename = "type")]
    pub node_type: String,
    /// Object bytes broadcast in the first pass.
    pub bytes: u64,
    /// Frames sent, repair included.
    pub frames: u64,
    /// Nodes that asked.
    pub requesters: Vec<u16>,
    /// Nodes that joined while it ran.
    pub late_joiners: Vec<u16>,
    /// Seconds since start when it began.
    pub started_s: f64,
    /// Seconds since start when it ended.
    pub ended_s: Option<f64>,
    /// Repair rounds.
    pub repair_rounds: u8,
    /// Bytes re-sent in repair.
    pub repair_bytes: u64,
    /// Chunks re-sent in each repair round.
    pub chunks_per_round: Vec<u32>,
    /// Why its repair ended (the last master's word).
    pub repair_end: Option<RepairEnd>,
    /// Bus time of every frame it sent (repair included), by the frame
    /// format at the bus's bit rates.
    pub bus_s: f64,
    /// Bus time of its first pass: announce, data and the first end.
    pub first_pass_bus_s: f64,
    /// Wall time of its first pass. Paced, `first_pass_bus_s /
    /// first_pass_wall_s` is the bus's real-time factor while it ran.
    pub first_pass_wall_s: f64,
    /// The masters that served it ("primary", "backup"; both if one took over).
    pub masters: Vec<Role>,
    /// After a takeover: the chunk the backup resumed at.
    pub resumed_at_chunk: Option<u32>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One hold-off window.
#[derive(Clone, Debug, Serialize)]
pub struct WindowReport {
    /// Window number.
    pub window: u32,
    /// Seconds since start when it opened.
    pub opened_s: f64,
    /// Seconds since start when it closed.
    pub closed_s: Option<f64>,
    /// "timer", "quorum", "max_wait", or "cancelled".
    pub close_reason: Option<String>,
    /// Requesters, all types.
    pub requesters: Vec<u16>,
    /// The master that ran it.
    pub master: Role,
}

/// Accumulates master events into report entries.
#[derive(Clone, Default, Debug)]
pub struct MasterLog {
    /// Broadcasts so far.
    pub broadcasts: Vec<BroadcastReport>,
    /// Windows so far.
    pub windows: Vec<WindowReport>,
    /// Takeovers by a backup: (seconds since start, resumed session).
    pub takeovers: Vec<(f64, Option<u32>)>,
    /// Where the active master is now (live views; not in the report).
    pub now: MasterNow,
}

/// Where the active master is now, from its `Progress` events.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MasterNow {
    /// Seconds since start when the open window closes.
    pub window_closes_s: Option<f64>,
    /// The running session, by the frames written so far.
    pub session: Option<SessionProgress>,
}

impl MasterLog {
    /// Adds one event; `t0_ms` is the testbed's start in Unix milliseconds
    /// (an event on the virtual clock carries its own time since it).
    pub fn record(&mut self, r: &MasterRecord, t0_ms: u64) {
        let at = match r.vt_ns {
            Some(ns) => Moment::from_ns(ns).as_secs_f64(),
            None => r.ts_ms.saturating_sub(t0_ms) as f64 / 1000.0,
        };
        match &r.event {
            MasterEvent::WindowOpened { window, node } => {
                self.windows.retain(|w| w.window != *window);
                let mut w = WindowReport::opened(*window, at, r.source);
                w.requesters.push(*node);
                self.windows.push(w);
            }
            MasterEvent::WindowClosed {
                window,
                reason,
                requesters,
                held_ms,
            } => {
                // Opened before this master took over: when, it says.
                let opened = at - *held_ms as f64 / 1000.0;
                let w = self.window(*window, opened, r.source);
                w.closed_s = Some(at);
                w.close_reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from));
                w.requesters = requesters.clone();
                w.master = r.source;
                self.now.window_closes_s = None;
            }
            MasterEvent::WindowCancelled { window } => {
                if let Some(w) = self.windows.iter_mut().find(|w| w.window == *window) {
                    w.closed_s = Some(at);
                    w.close_reason = Some("cancelled".into());
                    w.requesters.clear();
                }
                self.now.window_closes_s = None;
            }
            MasterEvent::SessionStarted { session, .. } => {
                match self.broadcasts.iter_mut().find(|b| b.session == *session) {
                    Some(b) => b.resumed_by(r),
                    None => self.broadcasts.extend(BroadcastReport::started(r, at)),
                }
            }
            MasterEvent::LateJoin { session, node } => {
                if let Some(b) = self.broadcast(*session) {
                    b.late_joiners.push(*node);
                    b.requesters.push(*node);
                }
            }
            MasterEvent::SessionEnded { session, .. } => {
                if let Some(b) = self.broadcast(*session) {
                    b.ended(&r.event, at);
                }
                if self.now.session.is_some_and(|p| p.session == *session) {
                    self.now.session = None;
                }
            }
            MasterEvent::Progress {
                window_closes_in_ms,
                session,
            } => {
                self.now = MasterNow {
                    window_closes_s: window_closes_in_ms.map(|ms| at + ms as f64 / 1000.0),
                    session: *session,
                };
            }
            MasterEvent::TookOver {
                resumed_session, ..
            } => self.takeovers.push((at, *resumed_session)),
            MasterEvent::NoImage { .. } => {}
        }
    }

    /// Window `n`, added as opened at `opened_s` by `master` if it is new.
    fn window(&mut self, n: u32, opened_s: f64, master: Role) -> &mut WindowReport {
        match self.windows.iter().position(|w| w.window == n) {
            Some(i) => &mut self.windows[i],
            None => {
                self.windows.push(WindowReport::opened(n, opened_s, master));
                let last = self.windows.len() - 1;
                &mut self.windows[last]
            }
        }
    }

    fn broadcast(&mut self, session: u32) -> Option<&mut BroadcastReport> {
        self.broadcasts.iter_mut().find(|b| b.session == session)
    }
}

impl WindowReport {
    /// Window `window`, opened at `opened_s` by `master`, with no requester yet.
    fn opened(window: u32, opened_s: f64, master: Role) -> WindowReport {
        WindowReport {
            window,
            opened_s,
            closed_s: None,
            close_reason: None,
            requesters: Vec::new(),
            master,
        }
    }
}

impl BroadcastReport {
    /// The broadcast a `SessionStarted` record begins; `None` for any
    /// other record.
    fn started(r: &MasterRecord, at: f64) -> Option<BroadcastReport> {
        let MasterEvent::SessionStarted {
            session,
            window,
            kind,
            requesters,
            bytes,
            resumed_at_chunk,
        } = &r.event
        else {
            return None;
        };
        Some(BroadcastReport {
            window: *window,
            session: *session,
            node_type: kind.clone(),
            bytes: *bytes,
            frames: 0,
            requesters: requesters.clone(),
            late_joiners: Vec::new(),
            started_s: at,
            ended_s: None,
            repair_rounds: 0,
            repair_bytes: 0,
            chunks_per_round: Vec::new(),
            repair_end: None,
            bus_s: 0.0,
            first_pass_bus_s: 0.0,
            first_pass_wall_s: 0.0,
            masters: vec![r.source],
            resumed_at_chunk: *resumed_at_chunk,
            error: None,
        })
    }

    /// A backup master resumed it (`r` is its `SessionStarted`).
    fn resumed_by(&mut self, r: &MasterRecord) {
        if let MasterEvent::SessionStarted {
            resumed_at_chunk, ..
        } = &r.event
        {
            self.masters.push(r.source);
            self.resumed_at_chunk = *resumed_at_chunk;
        }
    }

    /// A master ended it (`e` is its `SessionEnded`); a resumed session
    /// ends once per master.
    fn ended(&mut self, e: &MasterEvent, at: f64) {
        let MasterEvent::SessionEnded {
            frames,
            repair_rounds,
            repair_bytes,
            chunks_per_round,
            bus_ms,
            first_pass_bus_ms,
            first_pass_wall_ms,
            repair_end,
            error,
            ..
        } = e
        else {
            return;
        };
        self.bus_s += bus_ms / 1e3;
        // The first end reported counts (a killed primary reports none).
        if self.first_pass_wall_s == 0.0 {
            self.first_pass_bus_s = first_pass_bus_ms / 1e3;
            self.first_pass_wall_s = first_pass_wall_ms / 1e3;
        }
        self.frames += frames;
        self.repair_rounds = *repair_rounds;
        self.repair_bytes += repair_bytes;
        self.chunks_per_round.extend(chunks_per_round);
        self.repair_end = Some(*repair_end);
        self.ended_s = Some(at);
        self.error = error.clone();
    }
}

/// Builds the report; `now` is where the run's clock is (times count from
/// the testbed's start on it).
pub fn build(
    view: &FleetView,
    log: &MasterLog,
    bus: Option<BusStats>,
    now: Moment,
    run_dir: String,
) -> Report {
    let nodes: Vec<NodeReport> = view
        .nodes
        .values()
        .map(|n| NodeReport {
            id: n.spec.id,
            node_type: n.spec.node_type.name().into(),
            segment: n.spec.segment.clone(),
            state: n.state,
            verified: n.state == HostState::Verified,
            verified_by: n.verified_by,
            host_check: n.host_check.clone(),
            digest: n.digest.as_ref().map(digest_hex),
            expected_digest: digest_hex(&n.expected_digest),
            generation: n.generation,
            generations: n.generations.clone(),
            image_name: n.image_name.clone(),
            image_version: n.version.map(images::build::format_version),
            time_to_verified_s: match (n.spawned_at, n.verified_at, n.state) {
                (Some(s), Some(v), HostState::Verified) => {
                    Some(v.saturating_duration_since(s).as_secs_f64())
                }
                _ => None,
            },
            boot_count: n.boot_count,
            reset_cause: n.reset_cause.map(|c| format!("{c:?}")),
            ignored_image_frames: n.ignored_image_frames,
            rejections: n.rejections.clone(),
            failure: n.failure.clone(),
            last_message: n.last_message.clone(),
            log_tail: if n.state == HostState::Verified {
                Vec::new()
            } else {
                n.log_tail.clone()
            },
            states: Vec::new(),
        })
        .collect();
    let verified = nodes.iter().filter(|n| n.verified).count();
    let last_verified = view
        .nodes
        .values()
        .filter_map(|n| n.verified_at)
        .max()
        .filter(|_| verified == nodes.len());
    let elapsed_s = last_verified.unwrap_or(now).as_secs_f64();
    Report {
        verdict: Verdict::of(verified == nodes.len()),
        nodes_total: nodes.len(),
        nodes_verified: verified,
        elapsed_s,
        clock: ClockKind::Wall,
        wall_s: 0.0,
        run_dir,
        nodes,
        broadcasts: log.broadcasts.clone(),
        windows: log.windows.clone(),
        observed_sessions: view.sessions.clone(),
        takeovers: log.takeovers.clone(),
        bus,
        seeds: None,
    }
}

impl Report {
    /// Gives each node its state timeline.
    pub fn attach_timelines(
        &mut self,
        timelines: &std::collections::BTreeMap<u16, Vec<(Moment, HostState)>>,
    ) {
        for n in &mut self.nodes {
            n.states = timelines
                .get(&n.id)
                .into_iter()
                .flatten()
                .map(|&(at, state)| StateChange {
                    t_s: at.as_secs_f64(),
                    state,
                })
                .collect();
        }
    }

    /// One line of bus statistics: frames, bus time, and every drop by cause.
    pub fn bus_summary(&self) -> String {
        let t = self
            .bus
            .as_ref()
            .map(|b| b.totals.clone())
            .unwrap_or_default();
        let drops: Vec<String> = t
            .drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "bus: {} frames, {} data bytes, {:.3} s bus time; drops: {}",
            t.frames,
            t.bytes,
            t.busy_ns as f64 / 1e9,
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        )
    }

    /// The human table: one row per node, then failures and broadcasts.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>4}  {:<9} {:<10} {:<10} {:<8} {:<18} {:>9}\n",
            "node", "type", "state", "image", "version", "digest", "verified"
        );
        for n in &self.nodes {
            out += &format!(
                "{:>4}  {:<9} {:<10} {:<10} {:<8} {:<18} {:>9}\n",
                n.id,
                n.node_type,
                format!("{:?}", n.state).to_uppercase(),
                n.image_name.as_deref().unwrap_or("-"),
                n.image_version.as_deref().unwrap_or("-"),
                n.digest.as_deref().map_or("-".to_string(), |d| format!(
                    "{}…",
                    d.get(..16).unwrap_or(d)
                )),
                n.time_to_verified_s
                    .map_or("-".to_string(), |t| format!("{t:.2}s")),
            );
        }
        for n in self.nodes.iter().filter(|n| n.failure.is_some()) {
            out += &format!(
                "node {} FAILED: {}\n",
                n.id,
                n.failure.as_deref().unwrap_or("")
            );
        }
        for b in &self.broadcasts {
            let sent = match b.ended_s {
                Some(_) if b.repair_rounds > 0 => format!(
                    "{} frames, {} repair rounds ({} bytes)",
                    b.frames, b.repair_rounds, b.repair_bytes
                ),
                Some(_) => format!("{} frames", b.frames),
                None => "still sending".to_string(),
            };
            out += &format!(
                "window {} session {}: {} image, {} bytes, {sent}, to {:?}\n",
                b.window, b.session, b.node_type, b.bytes, b.requesters
            );
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report of no nodes, no master log and no bus.
    pub(crate) fn empty() -> Report {
        Report {
            verdict: Verdict::Pass,
            nodes_total: 0,
            nodes_verified: 0,
            elapsed_s: 0.0,
            clock: ClockKind::Wall,
            wall_s: 0.0,
            run_dir: "/tmp/run".into(),
            nodes: Vec::new(),
            broadcasts: Vec::new(),
            windows: Vec::new(),
            observed_sessions: Vec::new(),
            takeovers: Vec::new(),
            bus: None,
            seeds: None,
        }
    }

    /// Node `id`, a verified drive running the expected image since
    /// generation 1.
    pub(crate) fn node(id: u16) -> NodeReport {
        NodeReport {
            id,
            node_type: "drive".into(),
            segment: "base".into(),
            state: HostState::Verified,
            verified: true,
            verified_by: None,
            host_check: None,
            digest: Some("ab".repeat(32)),
            expected_digest: "ab".repeat(32),
            generation: Some(1),
            generations: vec![1],
            image_name: Some("drive".into()),
            image_version: Some("1.0.0".into()),
            time_to_verified_s: Some(1.0),
            boot_count: 1,
            reset_cause: None,
            ignored_image_frames: 0,
            rejections: Vec::new(),
            failure: None,
            last_message: String::new(),
            log_tail: Vec::new(),
            states: Vec::new(),
        }
    }

    /// Bus statistics as the bridge serialises them, with `drops` totals.
    pub(crate) fn bus_stats(drops: &[(&str, u64)]) -> BusStats {
        let drops: serde_json::Map<String, serde_json::Value> = drops
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        serde_json::from_value(serde_json::json!({
            "preset": "fd-1m-5m", "nominal_bps": 1_000_000, "data_bps": 5_000_000,
            "paced": false, "uptime_ns": 1, "segments": [], "ports": [],
            "totals": { "frames": 10, "bytes": 640, "busy_ns": 2_000_000, "overruns": 0,
                        "dropped_port_down": 0, "fd_on_classic_bus": 0, "tx_flushed": 0,
                        "link_errors": 0, "drops": drops },
        }))
        .expect("bus statistics")
    }

    fn rec(ms: u64, source: Role, event: MasterEvent) -> MasterRecord {
        MasterRecord {
            ts_ms: 10_000 + ms,
            vt_ns: None,
            source,
            event,
        }
    }

    fn ended(session: u32, frames: u64, bus_ms: f64, first_pass_wall_ms: f64) -> MasterEvent {
        MasterEvent::SessionEnded {
            session,
            bytes: 1000,
            frames,
            repair_rounds: 1,
            repair_bytes: 64,
            chunks_per_round: vec![1],
            bus_ms,
            first_pass_bus_ms: bus_ms / 2.0,
            first_pass_wall_ms,
            repair_end: RepairEnd::Complete,
            error: None,
        }
    }

    #[test]
    fn the_master_log_follows_windows_sessions_and_a_takeover() {
        use crate::master::CloseReason;
        use Role::{Backup, Primary};
        let started = |session, window, resumed_at_chunk| MasterEvent::SessionStarted {
            session,
            window,
            kind: "drive".into(),
            requesters: vec![1, 2],
            bytes: 1000,
            resumed_at_chunk,
        };
        let records = [
            rec(
                500,
                Primary,
                MasterEvent::WindowOpened { window: 1, node: 1 },
            ),
            rec(
                1500,
                Primary,
                MasterEvent::WindowClosed {
                    window: 1,
                    held_ms: 1000,
                    reason: CloseReason::Timer,
                    requesters: vec![1, 2],
                },
            ),
            rec(1600, Primary, started(1, 1, None)),
            rec(
                1700,
                Primary,
                MasterEvent::LateJoin {
                    session: 1,
                    node: 3,
                },
            ),
            rec(
                2000,
                Primary,
                MasterEvent::WindowOpened { window: 2, node: 4 },
            ),
            rec(2100, Primary, MasterEvent::WindowCancelled { window: 2 }),
            rec(
                3000,
                Backup,
                MasterEvent::TookOver {
                    silent_ms: 1000,
                    resumed_session: Some(1),
                },
            ),
            rec(3000, Backup, started(1, 1, Some(40))),
            rec(4000, Backup, ended(1, 100, 80.0, 900.0)),
            // A window the backup closes but did not see open.
            rec(
                6000,
                Backup,
                MasterEvent::WindowClosed {
                    window: 3,
                    held_ms: 500,
                    reason: CloseReason::MaxWait,
                    requesters: vec![5],
                },
            ),
            rec(
                6100,
                Backup,
                MasterEvent::NoImage {
                    node: 9,
                    node_type: 7,
                },
            ),
        ];
        let mut log = MasterLog::default();
        for r in &records {
            log.record(r, 10_000);
        }
        let w: Vec<_> = log
            .windows
            .iter()
            .map(|w| {
                (
                    w.window,
                    w.opened_s,
                    w.closed_s,
                    w.close_reason.as_deref(),
                    w.requesters.clone(),
                    w.master,
                )
            })
            .collect();
        assert_eq!(
            w,
            [
                (1, 0.5, Some(1.5), Some("timer"), vec![1, 2], Primary),
                (2, 2.0, Some(2.1), Some("cancelled"), vec![], Primary),
                (3, 5.5, Some(6.0), Some("max_wait"), vec![5], Backup),
            ]
        );
        let [b] = &log.broadcasts[..] else {
            panic!("{:?}", log.broadcasts)
        };
        assert_eq!(
            (b.window, b.session, b.started_s, b.ended_s),
            (1, 1, 1.6, Some(4.0))
        );
        assert_eq!(b.requesters, [1, 2, 3]);
        assert_eq!(b.late_joiners, [3]);
        assert_eq!(b.masters, [Primary, Backup]);
        assert_eq!(b.resumed_at_chunk, Some(40));
        assert_eq!((b.frames, b.repair_rounds, b.repair_bytes), (100, 1, 64));
        assert_eq!(
            (b.bus_s, b.first_pass_bus_s, b.first_pass_wall_s),
            (0.08, 0.04, 0.9)
        );
        assert_eq!(log.takeovers, [(3.0, Some(1))]);
        // A second end (the primary's, late) adds to the first, whose first
        // pass counts.
        log.record(&rec(4500, Primary, ended(1, 10, 20.0, 300.0)), 10_000);
        let b = &log.broadcasts[0];
        assert_eq!((b.frames, b.repair_bytes, b.ended_s), (110, 128, Some(4.5)));
        assert!((b.bus_s - 0.1).abs() < 1e-12, "{}", b.bus_s);
        assert_eq!(b.first_pass_wall_s, 0.9);
        assert_eq!(b.chunks_per_round, [1, 1]);
    }

    #[test]
    fn progress_events_say_where_the_master_is_now_until_the_window_or_session_ends() {
        use crate::master::CloseReason;
        let progress = SessionProgress {
            session: 1,
            total_chunks: 10,
            chunks: 4,
            round: 0,
            round_chunks: 0,
        };
        let mut log = MasterLog::default();
        let p = |ms, closes: Option<u64>, session| {
            rec(
                ms,
                Role::Primary,
                MasterEvent::Progress {
                    window_closes_in_ms: closes,
                    session,
                },
            )
        };
        log.record(&p(500, Some(250), Some(progress)), 10_000);
        assert_eq!(
            log.now,
            MasterNow {
                window_closes_s: Some(0.75),
                session: Some(progress)
            }
        );
        let closed = MasterEvent::WindowClosed {
            window: 1,
            held_ms: 250,
            reason: CloseReason::Timer,
            requesters: vec![1],
        };
        log.record(&rec(750, Role::Primary, closed), 10_000);
        assert_eq!(log.now.window_closes_s, None);
        assert_eq!(log.now.session, Some(progress));
        // Another session's end leaves it; its own ends it.
        log.record(&rec(800, Role::Primary, ended(2, 1, 1.0, 1.0)), 10_000);
        assert_eq!(log.now.session, Some(progress));
        log.record(&rec(900, Role::Primary, ended(1, 1, 1.0, 1.0)), 10_000);
        assert_eq!(log.now, MasterNow::default());
        // Progress is no broadcast or window of the report.
        assert!(log.windows.iter().all(|w| w.window == 1) && log.broadcasts.is_empty());
    }

    #[test]
    fn verdict_and_bus_statistics_serialise_as_before() {
        let mut r = empty();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["verdict"], "pass");
        assert!(v["bus"].is_null());
        r.verdict = Verdict::Fail;
        let stats = bus_stats(&[("loss", 3)]);
        r.bus = Some(stats.clone());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["bus"], serde_json::to_value(&stats).unwrap());
        assert_eq!(v["bus"]["totals"]["drops"]["loss"], 3);
    }

    #[test]
    fn the_bus_summary_names_every_cause_that_dropped() {
        let mut r = empty();
        assert_eq!(
            r.bus_summary(),
            "bus: 0 frames, 0 data bytes, 0.000 s bus time; drops: none"
        );
        r.bus = Some(bus_stats(&[("loss", 3), ("overrun", 0), ("filtered", 2)]));
        assert_eq!(
            r.bus_summary(),
            "bus: 10 frames, 640 data bytes, 0.002 s bus time; drops: filtered 2, loss 3"
        );
    }
}
