//! The supervisor: the orchestrator's own port on the bus. It watches every
//! frame, tracks each node from boot to running, and verifies nodes itself,
//! in two ways, either of which verifies a node:
//!
//! - the host's own check, which needs nothing from the app: it reads the
//!   node's RAM (the boot ROM's handoff record, and the image bytes the
//!   record names) and its CPU's program counter from outside (`probe`),
//!   and the bytes must be those of an image built for the node's type and
//!   the CPU must run inside them (`inspect`); checked again periodically,
//!   so bytes changed behind the app's back fail the node;
//! - the app's own word: a heartbeat's digest must equal the digest of the
//!   image *built* for the node's type, and the node must answer a fresh
//!   challenge over the bytes in its RAM.
//!
//! It never takes the master's word for anything.
//!
//! One task owns the fleet state ([`state::FleetState`], a tracker per node
//! in [`tracker`]) and is the only code that changes it. Everyone else holds
//! a [`Supervisor`] handle: commands go in over a channel, and every change
//! comes out as an immutable [`FleetView`] snapshot on a `watch`.

pub mod inspect;
pub mod probe;
pub mod state;
pub mod tracker;
pub mod view;

pub use tracker::NODE_LOG_LINES;
pub use view::{
    FleetView, HostState, NodeRecord, ObservedSession, Published, Rejection, VerifiedBy,
};

use crate::clock::{Clock, Inbox, Moment, PortWriter, VirtualClient};
use crate::fleet::NodeSpec;
use crate::store::Store;
use anyhow::{Context as _, Result, anyhow};
use board::strap::Clock as ClockKind;
use bus_bridge::client::{self, FrameReader};
use inspect::Observation;
use probe::NodeAccess;
use proto::msg::Message;
use proto::{Frame, NodeType};
use rand::RngCore;
use state::FleetState;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
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
    Spawned(u16, Moment),
    /// The node was told to reboot (reset or `Reboot`).
    Rebooting(u16, Moment),
    /// The node's power was cut.
    Off(u16, Moment),
    /// The node failed, for a reason the host saw (its QEMU exited, ...).
    Fail(u16, String, Moment),
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
    pub timelines: BTreeMap<u16, Vec<(Moment, HostState)>>,
}

/// How to start a supervisor.
pub struct Options {
    /// Its bus port (a timed one on the virtual clock).
    pub port: PathBuf,
    /// The fleet.
    pub nodes: Vec<NodeSpec>,
    /// The images the build made: what nodes must run.
    pub reference: Arc<Store>,
    /// Rejections after which a node counts as failed.
    pub max_rejects: usize,
    /// The clock it keeps: the host's, counted from `t0`, or the bus's
    /// virtual time.
    pub clock: ClockKind,
    /// The testbed's start (the wall clock's zero).
    pub t0: Instant,
    /// Where challenge nonces come from (unpredictable to nodes; from the
    /// run's seed on the virtual clock, so that a run can be repeated).
    pub nonces: Box<dyn RngCore + Send>,
    /// On the virtual clock: once every node is verified or failed, keep
    /// the bus's time there (`Clock::hold_bus`), so that a run that ends
    /// when its fleet settles ends at a point of virtual time.
    pub hold_when_settled: bool,
    /// Where each node's RAM and monitor are, for the host's own checks
    /// (a node without an entry is verified by its heartbeats alone).
    pub access: BTreeMap<u16, NodeAccess>,
}

/// Handle to the running supervisor.
pub struct Supervisor {
    /// Its clock: commands are stamped with its time.
    clock: Clock,
    /// While the fleet's time is held (on the virtual clock), commands are
    /// stamped with that time instead ([`Supervisor::pin`]).
    pinned: std::sync::Mutex<Option<Moment>>,
    commands: mpsc::Sender<(Command, oneshot::Sender<()>)>,
    view: watch::Receiver<Arc<FleetView>>,
    cancel: CancellationToken,
    task: JoinHandle<Result<Stopped>>,
}

impl Supervisor {
    /// Connects to its port and starts watching, on `tasks`; `cancel` (or
    /// [`Supervisor::stop`]) ends it.
    pub async fn start(
        opts: Options,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Supervisor> {
        let mut records = Vec::new();
        for spec in &opts.nodes {
            let digest = opts
                .reference
                .by_type
                .get(&spec.node_type)
                .map(|s| s.payload_sha256)
                .ok_or_else(|| anyhow!("no built image for node type {}", spec.node_type.name()))?;
            records.push(NodeRecord::new(spec.clone(), digest));
        }
        let published = opts
            .reference
            .by_type
            .iter()
            .map(|(t, s)| (*t, vec![Published::of(s)]))
            .collect();
        let state = FleetState::new(records, published, opts.max_rejects, Moment::ZERO);
        let (view_tx, view) = watch::channel(Arc::new(state.snapshot()));
        let (r, w) = client::connect(&opts.port).await?;
        let (commands, commands_rx) = mpsc::channel(64);
        let mut owner = Owner {
            state,
            view: view_tx,
            rng: opts.nonces,
            clock: Clock::wall(opts.t0),
            hold_when_settled: opts.hold_when_settled,
            access: Arc::new(opts.access),
        };
        let (clock, task) = match opts.clock {
            ClockKind::Wall => {
                let (frames_tx, frames) = mpsc::channel(1024);
                tasks.spawn(read_frames(r, frames_tx, cancel.clone()));
                let clock = owner.clock.clone();
                let serving = owner.serve(
                    Inbox::Wall(frames),
                    PortWriter::wall(w),
                    commands_rx,
                    cancel.clone(),
                );
                (clock, tasks.spawn(serving))
            }
            ClockKind::Virtual => {
                let c = VirtualClient::new(r, w);
                owner.clock = c.clock.clone();
                let root =
                    c.clock
                        .spawn(owner.serve(c.inbox, c.writer, commands_rx, cancel.clone()));
                let driving = c.driving;
                let task = tasks.spawn(async move { driving.run(root).await? });
                (c.clock, task)
            }
        };
        Ok(Supervisor {
            clock,
            pinned: std::sync::Mutex::new(None),
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

    /// Stamps what the testbed tells it from now on with `at` (the time
    /// at which the fleet is held), or again with its own time (`None`).
    pub fn pin(&self, at: Option<Moment>) {
        *self.pinned.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    fn stamp(&self) -> Moment {
        let pinned = *self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        pinned.unwrap_or_else(|| self.clock.now())
    }

    /// Records that node `id`'s QEMU process (re)started now.
    pub async fn mark_spawned(&self, id: u16) -> Result<()> {
        self.command(Command::Spawned(id, self.stamp())).await
    }

    /// Records that node `id` was told to reboot (reset or `Reboot`): it is
    /// not running from now until it says otherwise.
    pub async fn mark_rebooting(&self, id: u16) -> Result<()> {
        self.command(Command::Rebooting(id, self.stamp())).await
    }

    /// Records that node `id` was powered off.
    pub async fn mark_off(&self, id: u16) -> Result<()> {
        self.command(Command::Off(id, self.stamp())).await
    }

    /// Fails node `id` for a reason the host saw itself.
    pub async fn fail(&self, id: u16, why: String) -> Result<()> {
        self.command(Command::Fail(id, why, self.stamp())).await
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
    rng: Box<dyn RngCore + Send>,
    clock: Clock,
    /// See [`Options::hold_when_settled`]; cleared once done.
    hold_when_settled: bool,
    /// See [`Options::access`].
    access: Arc<BTreeMap<u16, NodeAccess>>,
}

/// A host check's observation of a node, for a boot of it.
type Observed = (u16, u64, Observation);

impl Owner {
    /// Serves frames and commands until cancelled or the bus port closes.
    async fn serve(
        mut self,
        mut frames: Inbox,
        mut writer: PortWriter,
        mut commands: mpsc::Receiver<(Command, oneshot::Sender<()>)>,
        cancel: CancellationToken,
    ) -> Result<Stopped> {
        let mut out = Vec::new();
        // Frames waiting for a TX FIFO place. Never waited for in the loop:
        // while the testbed holds the bus's time no place frees, and its
        // next command must still be taken.
        let mut queued: VecDeque<Frame> = VecDeque::new();
        // Observations made in blocking tasks (wall clock) come back here.
        let (observed_tx, mut observed) = mpsc::unbounded_channel::<Observed>();
        loop {
            let next_check = if self.access.is_empty() {
                None
            } else {
                self.state.next_host_check()
            };
            let check_due = next_check.map(|at| self.clock.sleep_until(at));
            let room = async {
                match queued.is_empty() {
                    true => std::future::pending().await,
                    false => writer.room().await,
                }
            };
            let (changed, done) = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                () = room => (false, None),
                Some((c, reply)) = commands.recv() => (self.command(c, &mut out), Some(reply)),
                f = frames.recv() => {
                    let Some(f) = f else { break };
                    let mut changed = self.frame(&f, &mut out);
                    // Whatever else already arrived goes into the same view.
                    for _ in 1..BATCH {
                        let Some(f) = frames.try_recv() else { break };
                        changed |= self.frame(&f, &mut out);
                    }
                    (changed, None)
                }
                Some((id, boot, obs)) = observed.recv() => {
                    let now = self.clock.now();
                    (self.state.on_observation(id, boot, &obs, now), None)
                }
                () = async {
                    match check_due {
                        Some(sleep) => sleep.await,
                        None => std::future::pending().await,
                    }
                } => (self.check_nodes(&observed_tx), None),
            };
            if changed {
                let view = Arc::new(self.state.snapshot());
                if self.hold_when_settled && view.settled() {
                    self.hold_when_settled = false;
                    self.clock.hold_bus();
                }
                self.view.send_replace(view);
            }
            if let Some(reply) = done {
                let _ = reply.send(());
            }
            queued.extend(out.drain(..));
            while let Some(f) = queued.front().filter(|_| writer.has_room()) {
                writer.send(f).await?;
                queued.pop_front();
            }
        }
        Ok(Stopped {
            view: Arc::new(self.state.snapshot()),
            logs: self.state.logs(),
            timelines: self.state.timelines(),
        })
    }

    /// Makes the host checks that are due, each node read on a thread of
    /// its own (a loaded QEMU answers its monitor late; the waits overlap).
    /// On the virtual clock they are made here, in the step (which holds
    /// the bus's time), and judged at once, in node order; on the wall
    /// clock blocking tasks make them and send what they read to
    /// `observed`. Returns whether the view changed.
    fn check_nodes(&mut self, observed: &mpsc::UnboundedSender<Observed>) -> bool {
        let now = self.clock.now();
        let due: Vec<(state::HostCheckDue, NodeAccess)> = self
            .state
            .host_checks_due(now)
            .into_iter()
            .filter_map(|d| Some((d, self.access.get(&d.node)?.clone())))
            .collect();
        if self.clock.is_virtual() {
            let read: Vec<Observed> = std::thread::scope(|s| {
                let reading: Vec<_> = due
                    .iter()
                    .map(|(d, a)| (d, s.spawn(move || probe::observe(a, d.limit, d.pc_anyway))))
                    .collect();
                reading
                    .into_iter()
                    .map(|(d, r)| {
                        let obs = r.join().unwrap_or_else(|_| Observation {
                            record: Err("reading it panicked".into()),
                            pc: None,
                            image: Vec::new(),
                        });
                        (d.node, d.boot, obs)
                    })
                    .collect()
            });
            let mut changed = false;
            for (node, boot, obs) in read {
                changed |= self.state.on_observation(node, boot, &obs, now);
            }
            return changed;
        }
        for (d, access) in due {
            let observed = observed.clone();
            tokio::task::spawn_blocking(move || {
                let obs = probe::observe(&access, d.limit, d.pc_anyway);
                let _ = observed.send((d.node, d.boot, obs));
            });
        }
        false
    }

    fn frame(&mut self, f: &Frame, out: &mut Vec<Frame>) -> bool {
        let now = self.clock.now();
        let (changed, challenge) = self.state.on_frame(f, now, &mut *self.rng);
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
