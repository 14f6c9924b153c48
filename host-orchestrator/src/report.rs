//! The JSON report and the human table.

use crate::master::MasterEvent;
use crate::supervisor::{FleetView, HostState, ObservedSession, Rejection, digest_hex};
use serde::Serialize;
use std::collections::BTreeSet;
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
}

/// One broadcast session.
#[derive(Clone, Debug, Serialize)]
pub struct BroadcastReport {
    /// Window that scheduled it.
    pub window: u32,
    /// Session number.
    pub session: u32,
    /// Node type.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Object bytes broadcast.
    pub bytes: u64,
    /// Frames sent.
    pub frames: u64,
    /// Nodes that asked.
    pub requesters: Vec<u16>,
    /// Seconds since start when it began.
    pub started_s: f64,
    /// Seconds since start when it ended.
    pub ended_s: Option<f64>,
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
    /// "timer", "max_wait", or "cancelled".
    pub close_reason: Option<String>,
    /// Requesters, all types.
    pub requesters: Vec<u16>,
}

/// Accumulates master events into report entries.
#[derive(Default, Debug)]
pub struct MasterLog {
    /// Broadcasts so far.
    pub broadcasts: Vec<BroadcastReport>,
    /// Windows so far.
    pub windows: Vec<WindowReport>,
}

impl MasterLog {
    /// Adds one event.
    pub fn record(&mut self, e: &MasterEvent, t0: Instant) {
        let s = |t: &Instant| t.saturating_duration_since(t0).as_secs_f64();
        match e {
            MasterEvent::WindowOpened { window, at, node } => self.windows.push(WindowReport {
                window: *window,
                opened_s: s(at),
                closed_s: None,
                close_reason: None,
                requesters: vec![*node],
            }),
            MasterEvent::WindowClosed {
                window,
                closed_at,
                reason,
                requesters,
                ..
            } => {
                if let Some(w) = self.windows.iter_mut().find(|w| w.window == *window) {
                    w.closed_s = Some(s(closed_at));
                    w.close_reason = Some(
                        serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                    );
                    let all: BTreeSet<u16> = requesters.values().flatten().copied().collect();
                    w.requesters = all.into_iter().collect();
                }
            }
            MasterEvent::WindowCancelled { window, at, .. } => {
                if let Some(w) = self.windows.iter_mut().find(|w| w.window == *window) {
                    w.closed_s = Some(s(at));
                    w.close_reason = Some("cancelled".into());
                    w.requesters.clear();
                }
            }
            MasterEvent::SessionStarted {
                session,
                window,
                node_type,
                requesters,
                at,
            } => self.broadcasts.push(BroadcastReport {
                window: *window,
                session: *session,
                node_type: node_type.name().into(),
                bytes: 0,
                frames: 0,
                requesters: requesters.iter().copied().collect(),
                started_s: s(at),
                ended_s: None,
            }),
            MasterEvent::SessionEnded {
                session,
                bytes,
                frames,
                at,
            } => {
                if let Some(b) = self.broadcasts.iter_mut().find(|b| b.session == *session) {
                    b.bytes = *bytes;
                    b.frames = *frames;
                    b.ended_s = Some(s(at));
                }
            }
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
        bus,
    }
}

impl Report {
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
            out += &format!(
                "window {} session {}: {} image, {} bytes in {} frames, to {:?}\n",
                b.window, b.session, b.node_type, b.bytes, b.frames, b.requesters
            );
        }
        out
    }
}
