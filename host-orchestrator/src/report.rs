//! The JSON report and the human table.

use crate::master::{MasterEvent, MasterRecord, Role};
use crate::supervisor::{FleetView, HostState, ObservedSession, Rejection, digest_hex};
use serde::Serialize;
use tokio::time::Instant;

/// The whole report of one testbed run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// "pass" when every node is verified, else "fail".
    pub verdict: String,
    /// Nodes in the fleet.
    pub nodes_total: usize,
    /// Nodes verified.
    pub nodes_verified: usize,
    /// Seconds from the first spawn to the last node verified (or to the end).
    pub elapsed_s: f64,
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
    /// Bus statistics from the bridge.
    pub bus: serde_json::Value,
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
    /// Whether digest and challenge matched the build.
    pub verified: bool,
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
}

impl MasterLog {
    /// Adds one event; `t0_ms` is the testbed's start in Unix milliseconds.
    pub fn record(&mut self, r: &MasterRecord, t0_ms: u64) {
        let at = r.ts_ms.saturating_sub(t0_ms) as f64 / 1000.0;
        match &r.event {
            MasterEvent::WindowOpened { window, node } => {
                self.windows.retain(|w| w.window != *window);
                self.windows.push(WindowReport {
                    window: *window,
                    opened_s: at,
                    closed_s: None,
                    close_reason: None,
                    requesters: vec![*node],
                    master: r.source,
                })
            }
            MasterEvent::WindowClosed {
                window,
                reason,
                requesters,
                held_ms,
            } => {
                let w = match self.windows.iter_mut().find(|w| w.window == *window) {
                    Some(w) => w,
                    None => {
                        // Opened before this master took over.
                        self.windows.push(WindowReport {
                            window: *window,
                            opened_s: at - *held_ms as f64 / 1000.0,
                            closed_s: None,
                            close_reason: None,
                            requesters: Vec::new(),
                            master: r.source,
                        });
                        self.windows.last_mut().expect("just pushed")
                    }
                };
                w.closed_s = Some(at);
                w.close_reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from));
                w.requesters = requesters.clone();
                w.master = r.source;
            }
            MasterEvent::WindowCancelled { window } => {
                if let Some(w) = self.windows.iter_mut().find(|w| w.window == *window) {
                    w.closed_s = Some(at);
                    w.close_reason = Some("cancelled".into());
                    w.requesters.clear();
                }
            }
            MasterEvent::SessionStarted {
                session,
                window,
                kind,
                requesters,
                bytes,
                resumed_at_chunk,
            } => {
                if let Some(b) = self.broadcasts.iter_mut().find(|b| b.session == *session) {
                    // A backup resumed it.
                    b.masters.push(r.source);
                    b.resumed_at_chunk = *resumed_at_chunk;
                    return;
                }
                self.broadcasts.push(BroadcastReport {
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
                    bus_s: 0.0,
                    first_pass_bus_s: 0.0,
                    first_pass_wall_s: 0.0,
                    masters: vec![r.source],
                    resumed_at_chunk: *resumed_at_chunk,
                    error: None,
                })
            }
            MasterEvent::LateJoin { session, node } => {
                if let Some(b) = self.broadcasts.iter_mut().find(|b| b.session == *session) {
                    b.late_joiners.push(*node);
                    b.requesters.push(*node);
                }
            }
            MasterEvent::SessionEnded {
                session,
                frames,
                repair_rounds,
                repair_bytes,
                chunks_per_round,
                bus_ms,
                first_pass_bus_ms,
                first_pass_wall_ms,
                error,
                ..
            } => {
                if let Some(b) = self.broadcasts.iter_mut().find(|b| b.session == *session) {
                    b.bus_s += bus_ms / 1e3;
                    // The first end reported counts (a killed primary reports none).
                    if b.first_pass_wall_s == 0.0 {
                        b.first_pass_bus_s = first_pass_bus_ms / 1e3;
                        b.first_pass_wall_s = first_pass_wall_ms / 1e3;
                    }
                    b.frames += frames;
                    b.repair_rounds = *repair_rounds;
                    b.repair_bytes += repair_bytes;
                    b.chunks_per_round.extend(chunks_per_round);
                    b.ended_s = Some(at);
                    b.error = error.clone();
                }
            }
            MasterEvent::TookOver {
                resumed_session, ..
            } => self.takeovers.push((at, *resumed_session)),
            MasterEvent::NoImage { .. } => {}
        }
    }
}

/// Builds the report.
pub fn build(
    view: &FleetView,
    log: &MasterLog,
    bus: serde_json::Value,
    t0: Instant,
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
        })
        .collect();
    let verified = nodes.iter().filter(|n| n.verified).count();
    let last_verified = view
        .nodes
        .values()
        .filter_map(|n| n.verified_at)
        .max()
        .filter(|_| verified == nodes.len());
    let elapsed_s = last_verified
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(t0)
        .as_secs_f64();
    Report {
        verdict: if verified == nodes.len() {
            "pass"
        } else {
            "fail"
        }
        .into(),
        nodes_total: nodes.len(),
        nodes_verified: verified,
        elapsed_s,
        run_dir,
        nodes,
        broadcasts: log.broadcasts.clone(),
        windows: log.windows.clone(),
        observed_sessions: view.sessions.clone(),
        takeovers: log.takeovers.clone(),
        bus,
    }
}

impl Report {
    /// One line of bus statistics: frames, bus time, and every drop by cause.
    pub fn bus_summary(&self) -> String {
        let t = &self.bus["totals"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        let drops: Vec<String> = t["drops"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "bus: {} frames, {} data bytes, {:.3} s bus time; drops: {}",
            n("frames"),
            n("bytes"),
            n("busy_ns") as f64 / 1e9,
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
                n.digest
                    .as_deref()
                    .map_or("-".to_string(), |d| format!("{}…", &d[..16])),
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
