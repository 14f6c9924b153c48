//! The supervisor: the orchestrator's own port on the bus. It watches every
//! frame, tracks each node from boot to running, and verifies nodes itself:
//! a heartbeat's digest must equal the digest of the image *built* for the
//! node's type, and the node must answer a fresh challenge over the bytes
//! in its RAM. It never takes the master's word for anything.
//!
//! One task owns the fleet state ([`state::FleetState`], a tracker per node
//! in [`tracker`]) and is the only code that changes it. Everyone else holds
//! a [`Supervisor`] handle: commands go in over a channel, and every change
//! comes out as an immutable [`FleetView`] snapshot on a `watch`.

pub mod state;
pub mod tracker;
pub mod view;

pub use tracker::NODE_LOG_LINES;
pub use view::{FleetView, HostState, NodeRecord, ObservedSession, Published, Rejection};

use crate::fleet::NodeSpec;
use crate::store::Store;
use anyhow::{Context as _, Result, anyhow};
use bus_bridge::client::{self, FrameReader, FrameWriter};
use proto::msg::Message;
use proto::{Frame, NodeType};
use rand::SeedableRng;
use rand::rngs::StdRng;
use state::FleetState;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The supervisor's source id on the bus.
pub const SUPERVISOR_ID: u16 = proto::msg::SUPERVISOR;
/// Frames handled before the view is published again while frames keep
/// coming: watchers see every change, at most this many frames late.
const BATCH: usize = 64;

pub use images::build::hex;

/// Hex of a digest.
pub fn digest_hex(d: &[u8; 32]) -> String {
    hex(d)
}

/// What the testbed tells the supervisor. Each is answered once the change
/// is in the published view.
enum Command {
    /// The node's QEMU process (re)started.
    Spawned(u16, Instant),
    /// The node was told to reboot (reset or `Reboot`).
    Rebooting(u16, Instant),
    /// The node's power was cut.
    Off(u16, Instant),
    /// The node failed, for a reason the host saw (its QEMU exited, ...).
    Fail(u16, String, Instant),
    /// A new image for a type.
    Publish(NodeType, Published),
    /// A frame to send from the supervisor's port.
    Send(Frame),
}

/// What the supervisor leaves behind when it stops.
pub struct Stopped {
    /// The last view.
    pub view: Arc<FleetView>,
    /// Every node's kept log (what it said on the bus), by id.
    pub logs: BTreeMap<u16, Vec<String>>,
    /// Every state each node entered, with when, by id.
    pub timelines: BTreeMap<u16, Vec<(Instant, HostState)>>,
}

/// Handle to the running supervisor.
pub struct Supervisor {
    commands: mpsc::Sender<(Command, oneshot::Sender<()>)>,
    view: watch::Receiver<Arc<FleetView>>,
    cancel: CancellationToken,
    task: JoinHandle<Result<Stopped>>,
}

impl Supervisor {
    /// Connects to `port` and starts watching, on `tasks`; `cancel` (or
    /// [`Supervisor::stop`]) ends it.
    pub async fn start(
        port: &Path,
        nodes: &[NodeSpec],
        reference: Arc<Store>,
        max_rejects: usize,
        started: Instant,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Supervisor> {
        let mut records = Vec::new();
        for spec in nodes {
            let digest = reference
                .by_type
                .get(&spec.node_type)
                .map(|s| s.payload_sha256)
                .ok_or_else(|| anyhow!("no built image for node type {}", spec.node_type.name()))?;
            records.push(NodeRecord::new(spec.clone(), digest));
        }
        let published = reference
            .by_type
            .iter()
            .map(|(t, s)| (*t, vec![Published::of(s)]))
            .collect();
        let state = FleetState::new(records, published, max_rejects, started);
        let (view_tx, view) = watch::channel(Arc::new(state.snapshot()));
        let (r, w) = client::connect(port).await?;
        let (frames_tx, frames) = mpsc::channel(1024);
        tasks.spawn(read_frames(r, frames_tx, cancel.clone()));
        let (commands, commands_rx) = mpsc::channel(64);
        let owner = Owner {
            state,
            view: view_tx,
            writer: w,
            rng: StdRng::from_entropy(),
        };
        let task = tasks.spawn(owner.serve(frames, commands_rx, cancel.clone()));
        Ok(Supervisor {
            commands,
            view,
            cancel,
            task,
        })
    }

    /// The fleet as of the last change.
    pub fn snapshot(&self) -> Arc<FleetView> {
        self.view.borrow().clone()
    }

    /// A receiver of every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<FleetView>> {
        self.view.clone()
    }

    async fn command(&self, c: Command) -> Result<()> {
        let (done, applied) = oneshot::channel();
        self.commands
            .send((c, done))
            .await
            .map_err(|_| anyhow!("the supervisor has stopped"))?;
        applied
            .await
            .map_err(|_| anyhow!("the supervisor stopped before the change"))
    }

    /// Sends a frame from the supervisor's port.
    pub async fn send(&self, m: Message<'_>) -> Result<()> {
        let f = m
            .to_frame(SUPERVISOR_ID)
            .map_err(|e| anyhow!("cannot encode: {e:?}"))?;
        self.command(Command::Send(f)).await
    }

    /// Records that node `id`'s QEMU process (re)started now.
    pub async fn mark_spawned(&self, id: u16) -> Result<()> {
        self.command(Command::Spawned(id, Instant::now())).await
    }

    /// Records that node `id` was told to reboot (reset or `Reboot`): it is
    /// not running from now until it says otherwise.
    pub async fn mark_rebooting(&self, id: u16) -> Result<()> {
        self.command(Command::Rebooting(id, Instant::now())).await
    }

    /// Records that node `id` was powered off.
    pub async fn mark_off(&self, id: u16) -> Result<()> {
        self.command(Command::Off(id, Instant::now())).await
    }

    /// Fails node `id` for a reason the host saw itself.
    pub async fn fail(&self, id: u16, why: String) -> Result<()> {
        self.command(Command::Fail(id, why, Instant::now())).await
    }

    /// Accepts a newly published image for type `t`; it becomes the
    /// expected image of every node of that type that boots from now on.
    pub async fn publish(&self, t: NodeType, image: Published) -> Result<()> {
        self.command(Command::Publish(t, image)).await
    }

    /// Waits until `done(view)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&FleetView) -> bool) -> bool {
        let mut view = self.view.clone();
        if let Ok(Ok(_)) = tokio::time::timeout(timeout, view.wait_for(|v| done(v))).await {
            return true;
        }
        // Stopped, or out of time: judge the last view.
        done(&view.borrow())
    }

    /// Stops the supervisor and returns what it knew.
    pub async fn stop(self) -> Result<Stopped> {
        self.cancel.cancel();
        self.task.await.context("the supervisor task failed")?
    }
}

/// The task that owns the fleet state.
struct Owner {
    state: FleetState,
    view: watch::Sender<Arc<FleetView>>,
    writer: FrameWriter,
    rng: StdRng,
}

impl Owner {
    /// Serves frames and commands until cancelled or the bus port closes.
    async fn serve(
        mut self,
        mut frames: mpsc::Receiver<Frame>,
        mut commands: mpsc::Receiver<(Command, oneshot::Sender<()>)>,
        cancel: CancellationToken,
    ) -> Result<Stopped> {
        let mut out = Vec::new();
        loop {
            let (changed, done) = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some((c, reply)) = commands.recv() => (self.command(c, &mut out), Some(reply)),
                f = frames.recv() => {
                    let Some(f) = f else { break };
                    let mut changed = self.frame(&f, &mut out);
                    // Whatever else already arrived goes into the same view.
                    for _ in 1..BATCH {
                        let Ok(f) = frames.try_recv() else { break };
                        changed |= self.frame(&f, &mut out);
                    }
                    (changed, None)
                }
            };
            if changed {
                self.view.send_replace(Arc::new(self.state.snapshot()));
            }
            if let Some(reply) = done {
                let _ = reply.send(());
            }
            for f in out.drain(..) {
                self.writer.send(&f).await?;
            }
        }
        Ok(Stopped {
            view: Arc::new(self.state.snapshot()),
            logs: self.state.logs(),
            timelines: self.state.timelines(),
        })
    }

    fn frame(&mut self, f: &Frame, out: &mut Vec<Frame>) -> bool {
        let (changed, challenge) = self.state.on_frame(f, Instant::now(), &mut self.rng);
        if let Some(c) = challenge
            && let Ok(f) = c.message().to_frame(SUPERVISOR_ID)
        {
            out.push(f);
        }
        changed
    }

    /// Applies a command; returns whether the view changed.
    fn command(&mut self, c: Command, out: &mut Vec<Frame>) -> bool {
        let state = &mut self.state;
        match c {
            Command::Send(f) => {
                out.push(f);
                return false;
            }
            Command::Publish(t, image) => state.publish(t, image),
            Command::Spawned(id, at) => {
                if let Some(n) = state.node(id) {
                    n.spawned(at);
                }
            }
            Command::Rebooting(id, at) => {
                if let Some(n) = state.node(id) {
                    n.rebooting(at);
                }
            }
            Command::Off(id, at) => {
                if let Some(n) = state.node(id) {
                    n.off(at);
                }
            }
            Command::Fail(id, why, at) => {
                if let Some(n) = state.node(id) {
                    n.fail(why, at);
                }
            }
        }
        true
    }
}

/// Feeds frames from the bus port to the owner until cancelled.
async fn read_frames(
    r: FrameReader,
    tx: mpsc::Sender<Frame>,
    cancel: CancellationToken,
) -> Result<(), client::ClientError> {
    tokio::select! {
        _ = cancel.cancelled() => Ok(()),
        r = client::read_frames(r, tx) => r,
    }
}
