//! What the supervisor publishes: a snapshot of the fleet, shared read-only
//! with everyone who watches it.

use crate::clock::Moment;
use crate::fleet::NodeSpec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Lines of a node's log a snapshot carries (the report shows them for
/// nodes that are not verified); the whole log goes to the run folder.
pub const LOG_TAIL_LINES: usize = 8;

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
    /// The host's own check of its RAM and CPU, or its heartbeat's digest
    /// and its answer to a challenge, match the build.
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

/// Which check verified a node's running image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifiedBy {
    /// The host read the node's RAM (handoff record and image bytes) and
    /// its program counter itself: nothing from the app.
    HostCheck,
    /// The app's heartbeat digest and its answer to a fresh challenge.
    Challenge,
}

impl VerifiedBy {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedBy::HostCheck => "host-check",
            VerifiedBy::Challenge => "challenge",
        }
    }
}

/// Everything known about one node.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    /// The node as configured.
    pub spec: NodeSpec,
    /// Current state.
    pub state: HostState,
    /// When its QEMU process was (last) started.
    pub spawned_at: Option<Moment>,
    /// When it was last verified.
    pub verified_at: Option<Moment>,
    /// Which check verified its running image first.
    pub verified_by: Option<VerifiedBy>,
    /// What the host's own check of its RAM and CPU found last.
    pub host_check: Option<String>,
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
    pub reset_cause: Option<proto::msg::ResetCause>,
    /// Image frames its app has ignored.
    pub ignored_image_frames: u32,
    /// Images it refused.
    pub rejections: Vec<Rejection>,
    /// Why it is failed.
    pub failure: Option<String>,
    /// The last message heard, for diagnosis.
    pub last_message: String,
    /// The last lines of what the node said, oldest first (at most
    /// [`LOG_TAIL_LINES`]).
    pub log_tail: Vec<String>,
}

impl NodeRecord {
    /// A node not yet powered on, expected to run `expected_digest`.
    pub fn new(spec: NodeSpec, expected_digest: [u8; 32]) -> NodeRecord {
        NodeRecord {
            spec,
            state: HostState::Off,
            spawned_at: None,
            verified_at: None,
            verified_by: None,
            host_check: None,
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
            log_tail: Vec::new(),
        }
    }
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
    /// Seconds since the testbed started, at its first announcement.
    pub at_s: f64,
    /// Times its part was announced: more than once when the master
    /// announced it again for a requester that missed the start.
    pub announced: u32,
}

/// The fleet as the supervisor saw it at one moment. Snapshots are
/// immutable; a node's record is shared between snapshots until it changes.
#[derive(Clone, Debug, Default)]
pub struct FleetView {
    /// Nodes by id.
    pub nodes: BTreeMap<u16, Arc<NodeRecord>>,
    /// Sessions observed on the bus, in order.
    pub sessions: Vec<ObservedSession>,
    /// Frames from ids that are neither nodes of the fleet nor hosts.
    pub foreign_frames: u64,
}

impl FleetView {
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
}

/// An image the supervisor accepts for a type.
#[derive(Clone, Debug)]
pub struct Published {
    /// SHA-256 of its payload.
    pub digest: [u8; 32],
    /// Its version.
    pub version: u32,
    /// Where its payload is loaded.
    pub load_addr: u64,
    /// Its payload (for challenges, and to compare a node's RAM with).
    pub payload: Arc<Vec<u8>>,
}

impl Published {
    /// The reference image of `s`.
    pub fn of(s: &crate::store::StoredImage) -> Published {
        Published {
            digest: s.payload_sha256,
            version: s.image.manifest.version,
            load_addr: s.image.manifest.load_addr,
            payload: Arc::new(s.image.payload.clone()),
        }
    }
}
