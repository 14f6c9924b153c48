//! The supervisor: the orchestrator's own port on the bus. It watches every
//! frame, tracks each node from boot to running, and verifies nodes itself:
//! a heartbeat's digest must equal the digest of the image *built* for the
//! node's type, and the node must answer a fresh challenge over the bytes
//! in its RAM. It never takes the master's word for anything.

use crate::busclient::{self, FrameReader};
use crate::fleet::NodeSpec;
use crate::store::Store;
use anyhow::Result;
use proto::msg::{self, Check, Message, NodeState, RejectReason, ResetCause};
use proto::{Frame, NodeType};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// The supervisor's source id on the bus.
pub const SUPERVISOR_ID: u16 = 0xFFF8;
/// A challenge unanswered for this long is sent again.
const CHECK_RETRY: Duration = Duration::from_secs(2);
/// One line about a message a node sent, for its log.
fn brief(m: &Message<'_>) -> String {
    let v = images::build::format_version;
    match m {
        Message::Heartbeat(h) => format!(
            "Heartbeat gen {} v{} digest {}… up {} ms boots {} cause {} ignored {}",
            h.generation,
            v(h.version),
            hex(&h.digest[..8]),
            h.uptime_ms,
            h.boot_count,
            h.reset_cause,
            h.ignored
        ),
        Message::Status(s) => format!(
            "Status {:?} session {} {}/{} selftest {:#x}",
            NodeState::from_code(s.state),
            s.session,
            s.received,
            s.total,
            s.selftest
        ),
        Message::Request(r) => format!("Request attempt {} min v{}", r.attempt, v(r.min_version)),
        Message::Reject(r) => format!(
            "Reject session {} v{}: {}",
            r.session,
            v(r.version),
            RejectReason::from_code(r.reason).map_or("unknown reason", |r| r.as_str())
        ),
        Message::Nack(n) => format!(
            "Nack session {} {:?}",
            n.session,
            &n.ranges[..(n.count as usize).min(msg::NACK_RANGES)]
        ),
        Message::CheckReply(c) => {
            format!("CheckReply nonce {:#x} {}…", c.nonce, hex(&c.digest[..8]))
        }
        other => format!("{:?}", other.kind()),
    }
}

/// Lines of each node's log kept in memory.
pub const NODE_LOG_LINES: usize = 400;
/// Challenges kept open per node; answers to any of them count.
const MAX_OPEN_CHECKS: usize = 8;

/// A node's state as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HostState {
    /// Not started.
    Off,
    /// QEMU started; nothing heard yet.
    Booting,
    /// Boot ROM self-test reported.
    SelfTest,
    /// Asking for an image.
    Requesting,
    /// Receiving a session.
    Receiving,
    /// Checking a complete image.
    Verifying,
    /// Jumping to the image.
    Handoff,
    /// Heartbeats arrive; not yet verified.
    Running,
    /// Digest and challenge match the build.
    Verified,
    /// Settled in failure; see the record's `failure`.
    Failed,
}

impl HostState {
    /// Upper-case name for progress lines.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Off => "OFF",
            HostState::Booting => "BOOTING",
            HostState::SelfTest => "SELFTEST",
            HostState::Requesting => "REQUESTING",
            HostState::Receiving => "RECEIVING",
            HostState::Verifying => "VERIFYING",
            HostState::Handoff => "HANDOFF",
            HostState::Running => "RUNNING",
            HostState::Verified => "VERIFIED",
            HostState::Failed => "FAILED",
        }
    }
}

/// An image a node refused.
#[derive(Clone, Debug, Serialize)]
pub struct Rejection {
    /// Seconds since the testbed started.
    pub at_s: f64,
    /// Session that carried it.
    pub session: u32,
    /// Reason, as text.
    pub reason: String,
    /// Version the image claimed.
    pub version: String,
    /// First 16 bytes of what the node measured (hex).
    pub measured_prefix: String,
    /// First 16 bytes of what the manifest claimed (hex).
    pub manifest_prefix: String,
}

/// Everything known about one node.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    /// The node as configured.
    pub spec: NodeSpec,
    /// Current state.
    pub state: HostState,
    /// When its QEMU process was (last) started.
    pub spawned_at: Option<Instant>,
    /// When it was last verified.
    pub verified_at: Option<Instant>,
    /// Digest of the built image for its type.
    pub expected_digest: [u8; 32],
    /// Digest from its latest heartbeat.
    pub digest: Option<[u8; 32]>,
    /// Generation from its latest heartbeat.
    pub generation: Option<u32>,
    /// Every generation it has run, in order.
    pub generations: Vec<u32>,
    /// Image version from its latest heartbeat.
    pub version: Option<u32>,
    /// Image name from its latest heartbeat.
    pub image_name: Option<String>,
    /// Type its running image says it is.
    pub running_type: Option<u8>,
    /// Uptime from its latest heartbeat.
    pub uptime_ms: u32,
    /// Boot count from its latest heartbeat.
    pub boot_count: u16,
    /// Reset cause of its latest boot.
    pub reset_cause: Option<ResetCause>,
    /// Image frames its app has ignored.
    pub ignored_image_frames: u32,
    /// Images it refused.
    pub rejections: Vec<Rejection>,
    /// Why it is failed.
    pub failure: Option<String>,
    /// The last message heard, for diagnosis.
    pub last_message: String,
    /// What the node said lately, one line per frame, oldest first: its
    /// console, as far as the host can see it.
    pub log: std::collections::VecDeque<String>,
    /// Challenges sent for the current generation: (nonces, generation, last sent).
    pending_check: Option<(Vec<u32>, u32, Instant)>,
    verified_generation: Option<u32>,
}

/// A session seen on the bus (from its announce and part frames).
#[derive(Clone, Debug, Serialize)]
pub struct ObservedSession {
    /// Session number.
    pub session: u32,
    /// Window number the master gave.
    pub window: u32,
    /// Node type the part was for.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Object bytes announced.
    pub bytes: u32,
    /// Seconds since the testbed started.
    pub at_s: f64,
}

/// An image the supervisor accepts for a type.
#[derive(Clone, Debug)]
pub struct Published {
    /// SHA-256 of its payload.
    pub digest: [u8; 32],
    /// Its version.
    pub version: u32,
    /// Its payload (for challenges).
    pub payload: Arc<Vec<u8>>,
}

impl Published {
    /// The reference image of `s`.
    pub fn of(s: &crate::store::StoredImage) -> Published {
        Published {
            digest: s.payload_sha256,
            version: s.image.manifest.version,
            payload: Arc::new(s.image.payload.clone()),
        }
    }
}

/// The fleet as the supervisor sees it.
pub struct FleetView {
    /// Nodes by id.
    pub nodes: BTreeMap<u16, NodeRecord>,
    /// Sessions observed on the bus, in order.
    pub sessions: Vec<ObservedSession>,
    /// Frames from ids that are neither nodes of the fleet nor hosts.
    pub foreign_frames: u64,
    started: Instant,
    max_rejects: usize,
    /// Every image published for each type, oldest first: a node may run
    /// any of them (one rebooted after a publish runs the newest).
    published: BTreeMap<NodeType, Vec<Published>>,
    announces: BTreeMap<u32, msg::SessionAnnounce>,
}

use images::build::hex;

/// Hex of a digest.
pub fn digest_hex(d: &[u8; 32]) -> String {
    hex(d)
}

impl FleetView {
    fn at_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Whether every node is verified or failed.
    pub fn settled(&self) -> bool {
        self.nodes
            .values()
            .all(|n| matches!(n.state, HostState::Verified | HostState::Failed))
    }

    /// How many nodes are verified.
    pub fn verified(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.state == HostState::Verified)
            .count()
    }

    fn set_state(&mut self, id: u16, state: HostState) {
        if let Some(n) = self.nodes.get_mut(&id)
            && n.state != state
            && n.state != HostState::Failed
        {
            info!(
                node = id,
                node_type = n.spec.node_type.name(),
                state = state.as_str(),
                "node"
            );
            n.state = state;
        }
    }

    fn fail(&mut self, id: u16, why: String) {
        if let Some(n) = self.nodes.get_mut(&id)
            && n.state != HostState::Failed
        {
            warn!(node = id, node_type = n.spec.node_type.name(), reason = %why, "node FAILED");
            n.state = HostState::Failed;
            n.failure = Some(why);
        }
    }

    /// Handles one frame; returns a challenge to send, if one is due.
    fn on_frame(&mut self, frame: &Frame) -> Option<Frame> {
        let Ok((src, m)) = Message::decode(frame) else {
            self.foreign_frames += 1;
            return None;
        };
        match m {
            Message::SessionAnnounce(a) => {
                self.announces.insert(a.session, a);
                return None;
            }
            Message::SessionPart(p) => {
                let window = self.announces.get(&p.session).map_or(0, |a| a.window);
                let node_type = NodeType::from_code(p.node_type)
                    .map_or("?", |t| t.name())
                    .to_string();
                let at_s = self.at_s();
                self.sessions.push(ObservedSession {
                    session: p.session,
                    window,
                    node_type,
                    bytes: p.len,
                    at_s,
                });
                return None;
            }
            _ => {}
        }
        if !self.nodes.contains_key(&src) {
            if src <= msg::MAX_NODE_ID {
                self.foreign_frames += 1;
            }
            return None;
        }
        let at_s = self.at_s();
        let max_rejects = self.max_rejects;
        let n = self.nodes.get_mut(&src)?;
        n.last_message = format!("{:?}", m.kind());
        if n.log.len() == NODE_LOG_LINES {
            n.log.pop_front();
        }
        n.log.push_back(format!("{at_s:9.3} {}", brief(&m)));
        match m {
            Message::Status(s) => {
                n.reset_cause = ResetCause::from_code(s.reset_cause);
                match NodeState::from_code(s.state) {
                    Some(NodeState::SelfTest) if s.selftest != 0 => self.fail(
                        src,
                        format!("boot ROM self-test failed (bits {:#04x})", s.selftest),
                    ),
                    Some(NodeState::Failed) => self.fail(
                        src,
                        format!(
                            "boot ROM reports failure (self-test bits {:#04x})",
                            s.selftest
                        ),
                    ),
                    Some(NodeState::SelfTest) => self.set_state(src, HostState::SelfTest),
                    Some(NodeState::Receiving) => self.set_state(src, HostState::Receiving),
                    Some(NodeState::Verifying) => self.set_state(src, HostState::Verifying),
                    Some(NodeState::Handoff) => self.set_state(src, HostState::Handoff),
                    _ => {}
                }
            }
            Message::Request(_) if n.state != HostState::Requesting => {
                n.verified_generation = None;
                n.pending_check = None;
                self.set_state(src, HostState::Requesting);
            }
            Message::Reject(r) => {
                let reason =
                    RejectReason::from_code(r.reason).map_or("unknown reason", |r| r.as_str());
                n.rejections.push(Rejection {
                    at_s,
                    session: r.session,
                    reason: reason.to_string(),
                    version: images::build::format_version(r.version),
                    measured_prefix: hex(&r.measured),
                    manifest_prefix: hex(&r.expected),
                });
                let count = n.rejections.len();
                warn!(
                    node = src,
                    session = r.session,
                    reason,
                    "image rejected by node"
                );
                if count >= max_rejects {
                    let why = format!(
                        "node rejected the image {count} times; last: {reason} (session {}, measured {}…, manifest says {}…)",
                        r.session,
                        hex(&r.measured[..8]),
                        hex(&r.expected[..8])
                    );
                    self.fail(src, why);
                } else {
                    self.set_state(src, HostState::Requesting);
                }
            }
            Message::Heartbeat(h) => {
                n.digest = Some(h.digest);
                if n.generation != Some(h.generation) {
                    n.generations.push(h.generation);
                }
                n.generation = Some(h.generation);
                n.version = Some(h.version);
                let end = h.name.iter().position(|&c| c == 0).unwrap_or(h.name.len());
                n.image_name = Some(String::from_utf8_lossy(&h.name[..end]).into_owned());
                n.running_type = Some(h.node_type);
                n.uptime_ms = h.uptime_ms;
                n.boot_count = h.boot_count;
                n.reset_cause = ResetCause::from_code(h.reset_cause);
                n.ignored_image_frames = h.ignored;
                let expected_type = n.spec.node_type;
                let expected = n.expected_digest;
                let known = self
                    .published
                    .get(&expected_type)
                    .is_some_and(|v| v.iter().any(|p| p.digest == h.digest));
                if h.node_type != expected_type as u8 {
                    let t = NodeType::from_code(h.node_type).map_or("unknown", |t| t.name());
                    self.fail(
                        src,
                        format!(
                            "running an image for type {t}, but the node is a {}",
                            expected_type.name()
                        ),
                    );
                    return None;
                }
                if !known {
                    self.fail(
                        src,
                        format!(
                            "running digest {}, which is no image built for type {} (latest: {})",
                            hex(&h.digest),
                            expected_type.name(),
                            hex(&expected)
                        ),
                    );
                    return None;
                }
                if n.verified_generation == Some(h.generation) {
                    return None;
                }
                if n.state != HostState::Failed && n.state != HostState::Running {
                    self.set_state(src, HostState::Running);
                }
                let n = self.nodes.get_mut(&src)?;
                let due = match &n.pending_check {
                    Some((_, g, at)) => *g != h.generation || at.elapsed() >= CHECK_RETRY,
                    None => true,
                };
                if due {
                    let nonce: u32 = rand::random();
                    match &mut n.pending_check {
                        // A slow node may still answer an earlier challenge.
                        Some((nonces, g, at))
                            if *g == h.generation && nonces.len() < MAX_OPEN_CHECKS =>
                        {
                            nonces.push(nonce);
                            *at = Instant::now();
                        }
                        _ => n.pending_check = Some((vec![nonce], h.generation, Instant::now())),
                    }
                    return Message::Check(Check { target: src, nonce })
                        .to_frame(SUPERVISOR_ID)
                        .ok();
                }
            }
            Message::CheckReply(c) => {
                let Some((nonces, generation, _)) = &n.pending_check else {
                    return None;
                };
                if !nonces.contains(&c.nonce) {
                    return None;
                }
                let (nonce, generation) = (c.nonce, *generation);
                n.pending_check = None;
                let t = n.spec.node_type;
                let running = n.digest?;
                let payload = &self
                    .published
                    .get(&t)?
                    .iter()
                    .find(|p| p.digest == running)?
                    .payload;
                let mut h = Sha256::new();
                h.update(nonce.to_le_bytes());
                h.update(payload.as_slice());
                let want: [u8; 32] = h.finalize().into();
                if c.digest == want {
                    let n = self.nodes.get_mut(&src)?;
                    n.verified_generation = Some(generation);
                    n.verified_at = Some(Instant::now());
                    self.set_state(src, HostState::Verified);
                } else {
                    self.fail(src, "answered the challenge wrongly: the bytes in its RAM differ from the build".into());
                }
            }
            _ => {}
        }
        None
    }
}

/// Tells watchers the view changed, once the lock taken after it is gone.
struct Notify<'a>(&'a watch::Sender<u64>);

impl Drop for Notify<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|v| *v += 1);
    }
}

/// Handle to the running supervisor.
pub struct Supervisor {
    /// The fleet view, shared with the testbed.
    pub view: Arc<Mutex<FleetView>>,
    /// Bumped on every change.
    pub changes: watch::Receiver<u64>,
    changed: Arc<watch::Sender<u64>>,
    outbox: mpsc::Sender<Frame>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Supervisor {
    /// Connects to `port` and starts watching.
    pub async fn start(
        port: &Path,
        nodes: &[NodeSpec],
        reference: Arc<Store>,
        max_rejects: usize,
        started: Instant,
    ) -> Result<Supervisor> {
        let mut records = BTreeMap::new();
        for spec in nodes {
            let expected_digest = reference
                .by_type
                .get(&spec.node_type)
                .map(|s| s.payload_sha256)
                .ok_or_else(|| {
                    anyhow::anyhow!("no built image for node type {}", spec.node_type.name())
                })?;
            records.insert(
                spec.id,
                NodeRecord {
                    spec: spec.clone(),
                    state: HostState::Off,
                    spawned_at: None,
                    verified_at: None,
                    expected_digest,
                    digest: None,
                    generation: None,
                    generations: Vec::new(),
                    version: None,
                    image_name: None,
                    running_type: None,
                    uptime_ms: 0,
                    boot_count: 0,
                    reset_cause: None,
                    ignored_image_frames: 0,
                    rejections: Vec::new(),
                    failure: None,
                    last_message: String::new(),
                    log: Default::default(),
                    pending_check: None,
                    verified_generation: None,
                },
            );
        }
        let view = Arc::new(Mutex::new(FleetView {
            nodes: records,
            sessions: Vec::new(),
            foreign_frames: 0,
            started,
            max_rejects: max_rejects.max(1),
            published: reference
                .by_type
                .iter()
                .map(|(t, s)| (*t, vec![Published::of(s)]))
                .collect(),
            announces: BTreeMap::new(),
        }));
        let (r, mut w) = busclient::connect(port).await?;
        let (tx, mut outbox) = mpsc::channel::<Frame>(64);
        let (changed_tx, changes) = watch::channel(0u64);
        let changed_tx = Arc::new(changed_tx);
        let changed = changed_tx.clone();
        let shared = view.clone();
        let task = tokio::spawn(async move {
            let (frames_tx, mut frames) = mpsc::channel(1024);
            let reader = tokio::spawn(read_frames(r, frames_tx));
            let result = loop {
                tokio::select! {
                    f = frames.recv() => {
                        let Some(f) = f else { break Ok(()) };
                        let reply = shared.lock().expect("fleet view lock").on_frame(&f);
                        changed_tx.send_modify(|v| *v += 1);
                        if let Some(reply) = reply
                            && let Err(e) = w.send(&reply).await {
                                break Err(e);
                            }
                    }
                    f = outbox.recv() => {
                        let Some(f) = f else { break Ok(()) };
                        if let Err(e) = w.send(&f).await {
                            break Err(e);
                        }
                    }
                }
            };
            reader.abort();
            result
        });
        Ok(Supervisor {
            view,
            changes,
            changed,
            outbox: tx,
            task,
        })
    }

    /// Sends a frame from the supervisor's port.
    pub async fn send(&self, m: Message<'_>) -> Result<()> {
        let f = m
            .to_frame(SUPERVISOR_ID)
            .map_err(|e| anyhow::anyhow!("cannot encode: {e:?}"))?;
        self.outbox
            .send(f)
            .await
            .map_err(|_| anyhow::anyhow!("supervisor stopped"))
    }

    /// Records that node `id`'s QEMU process (re)started now.
    pub fn mark_spawned(&self, id: u16) {
        let _notify = Notify(&self.changed);
        let mut v = self.view.lock().expect("fleet view lock");
        if let Some(n) = v.nodes.get_mut(&id) {
            n.spawned_at = Some(Instant::now());
            if n.state != HostState::Failed {
                n.state = HostState::Booting;
            }
        }
    }

    /// Accepts a newly published image for type `t`; it becomes the
    /// expected image of every node of that type that boots from now on.
    pub fn publish(&self, t: NodeType, image: Published) {
        let mut v = self.view.lock().expect("fleet view lock");
        for n in v.nodes.values_mut().filter(|n| n.spec.node_type == t) {
            n.expected_digest = image.digest;
        }
        v.published.entry(t).or_default().push(image);
    }

    /// Changes the view and tells its watchers.
    pub fn update(&self, f: impl FnOnce(&mut FleetView)) {
        let _notify = Notify(&self.changed);
        f(&mut self.view.lock().expect("fleet view lock"));
    }

    /// Records that node `id` was told to reboot (reset or `Reboot`): it is
    /// not running from now until it says otherwise.
    pub fn mark_rebooting(&self, id: u16) {
        self.update(|v| {
            if let Some(n) = v
                .nodes
                .get_mut(&id)
                .filter(|n| n.state != HostState::Failed)
            {
                n.state = HostState::Booting;
                n.verified_generation = None;
                n.pending_check = None;
            }
        });
    }

    /// Records that node `id` was powered off.
    pub fn mark_off(&self, id: u16) {
        let _notify = Notify(&self.changed);
        let mut v = self.view.lock().expect("fleet view lock");
        if let Some(n) = v.nodes.get_mut(&id) {
            n.state = HostState::Off;
            n.verified_at = None;
            n.verified_generation = None;
            n.pending_check = None;
        }
    }

    /// Waits until `done(view)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&FleetView) -> bool) -> bool {
        let mut changes = self.changes.clone();
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.view.lock().expect("fleet view lock")) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return done(&self.view.lock().expect("fleet view lock")),
            }
        }
    }

    /// Stops the supervisor.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn read_frames(mut r: FrameReader, tx: mpsc::Sender<Frame>) -> Result<()> {
    while let Some(f) = r.next().await? {
        if tx.send(f).await.is_err() {
            break;
        }
    }
    Ok(())
}
