//! The master source: collects requests in hold-off windows, then sends each
//! requested image once for every node that asked, repairs what nodes
//! missed, lets late nodes join, and (as a backup) takes over from a primary
//! that falls silent.
//!
//! [`scheduler`] is the window logic, free of I/O. [`session`] sends one
//! session. [`run`] is a master on the bus: a reader, a writer that puts
//! beacons and re-announcements ahead of bulk data, the scheduler loop, and
//! one session task at a time.

mod config;
pub mod progress;
pub mod scheduler;
pub mod session;

use crate::clock::{Clock, Inbox, Moment, PortWriter, Task, VirtualClient};
use crate::store::{PartSpec, Store};
use anyhow::{Context, Result};
use board::strap::Clock as ClockKind;
use bus_bridge::client::{self, AbortOnDrop, read_frames};
use progress::{SessionProgress, WireProgress};
use proto::msg::{self, MasterBeacon, Message, NodeState};
use proto::{Frame, NodeType};
use scheduler::{RequestOutcome, SchedEvent, Scheduler, SessionKind, SessionPlan};
use serde::{Deserialize, Serialize};
use session::{Content, Outbox, Outgoing, SessionCtl};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

pub use crate::holdoff::CloseReason;
pub use config::MasterConfig;
pub use scheduler::Mode;
pub use session::Repair;

/// Which master this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Serves from the start.
    Primary,
    /// Watches the primary and serves once it falls silent.
    Backup,
}

impl Role {
    /// Its source id on the bus.
    pub fn src(self) -> u16 {
        match self {
            Role::Primary => msg::MASTER_PRIMARY,
            Role::Backup => msg::MASTER_BACKUP,
        }
    }
}

/// How often an active master says it is alive.
pub const BEACON_EVERY: Duration = Duration::from_millis(250);

/// What a master did. Serialised as one JSON line per event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MasterEvent {
    /// A request opened a window.
    WindowOpened {
        /// Window number.
        window: u32,
        /// The first requester.
        node: u16,
    },
    /// A window closed and its sessions were scheduled.
    WindowClosed {
        /// Window number.
        window: u32,
        /// How long it was open.
        held_ms: u64,
        /// Why it closed.
        reason: CloseReason,
        /// Who asked.
        requesters: Vec<u16>,
    },
    /// Every requester of an open window joined a running session instead.
    WindowCancelled {
        /// Window number.
        window: u32,
    },
    /// A session started (or, after a takeover, resumed).
    SessionStarted {
        /// Session number.
        session: u32,
        /// Window that scheduled it.
        window: u32,
        /// Type name, "combined", or "type→node" for unicast.
        kind: String,
        /// Nodes it serves.
        requesters: Vec<u16>,
        /// Object bytes.
        bytes: u64,
        /// After a takeover: the first chunk this master sent.
        resumed_at_chunk: Option<u32>,
    },
    /// A node joined a running session late.
    LateJoin {
        /// Session number.
        session: u32,
        /// The node.
        node: u16,
    },
    /// A session is over.
    SessionEnded {
        /// Session number.
        session: u32,
        /// Object bytes sent in the first pass.
        bytes: u64,
        /// Frames sent.
        frames: u64,
        /// Repair rounds.
        repair_rounds: u8,
        /// Bytes re-sent in repair.
        repair_bytes: u64,
        /// Chunks re-sent in each repair round.
        chunks_per_round: Vec<u32>,
        /// Bus time of every frame it sent, in milliseconds.
        #[serde(default)]
        bus_ms: f64,
        /// Bus time of its first pass (announce, data, first end).
        #[serde(default)]
        first_pass_bus_ms: f64,
        /// Wall time of its first pass.
        #[serde(default)]
        first_pass_wall_ms: f64,
        /// Why its repair ended.
        #[serde(default)]
        repair_end: session::RepairEnd,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// A node asked for a type the store has no image for.
    NoImage {
        /// The node.
        node: u16,
        /// Its type code.
        node_type: u8,
    },
    /// Where the active master is, for a live view: sent with a beacon
    /// when it changed (a window's countdown changes while it is open).
    Progress {
        /// When the open window closes, in milliseconds from now.
        window_closes_in_ms: Option<u64>,
        /// The running session, by the frames written so far.
        session: Option<SessionProgress>,
    },
    /// The backup took over from a silent primary.
    TookOver {
        /// How long the primary had been silent.
        silent_ms: u64,
        /// The session it resumed, if one was cut short.
        resumed_session: Option<u32>,
    },
}

/// One event with its time and source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MasterRecord {
    /// Wall-clock milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// On the virtual clock: the bus's virtual time of the event, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vt_ns: Option<u64>,
    /// Which master.
    pub source: Role,
    /// What happened.
    #[serde(flatten)]
    pub event: MasterEvent,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Running {
    plan: SessionPlan,
    ctl: mpsc::Sender<SessionCtl>,
    task: Task<Result<session::Outcome>>,
    /// Requesters the session was told have every chunk (told once each).
    completed: BTreeSet<u16>,
}

impl Drop for Running {
    /// A master that stops (or is killed) stops sending its session too.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a backup has seen of the primary's current session.
#[derive(Clone, Debug)]
struct Observed {
    announce: msg::SessionAnnounce,
    kind: Option<SessionKind>,
    highest: Option<u32>,
    parts: Vec<PartSpec>,
}

struct Master {
    /// Where its time comes from: every time it reads, sleeps or spawns.
    clock: Clock,
    role: Role,
    active: bool,
    config: MasterConfig,
    /// The master's non-volatile memory: a folder of images.
    store_dir: std::path::PathBuf,
    store_seen: Vec<(std::path::PathBuf, u64, SystemTime)>,
    store: Arc<Store>,
    bundle: Arc<(Arc<Vec<u8>>, Vec<PartSpec>)>,
    sched: Scheduler,
    out: Outbox,
    events: mpsc::Sender<MasterRecord>,
    running: Option<Running>,
    observed: Option<Observed>,
    primary_heard: Moment,
    started: Moment,
    reported_no_image: BTreeSet<u16>,
    /// The running session as its frames are written (the writer owns it).
    progress: watch::Receiver<WireProgress>,
    /// What the last `Progress` event said.
    progress_said: (Option<Moment>, Option<SessionProgress>),
}

impl Master {
    async fn emit(&self, event: MasterEvent) {
        log_event(self.role, &event);
        let record = MasterRecord {
            ts_ms: now_ms(),
            vt_ns: self.clock.is_virtual().then(|| self.clock.now().as_ns()),
            source: self.role,
            event,
        };
        // The report's reader may be gone at shutdown; the log stays.
        let _ = self.events.send(record).await;
    }

    async fn emit_sched(&self, e: SchedEvent) {
        if !self.active {
            return;
        }
        let event = match e {
            SchedEvent::Opened { window, node, .. } => MasterEvent::WindowOpened { window, node },
            SchedEvent::Closed {
                window,
                opened_at,
                closed_at,
                reason,
                requesters,
            } => MasterEvent::WindowClosed {
                window,
                held_ms: (closed_at - opened_at).as_millis() as u64,
                reason,
                requesters: requesters
                    .values()
                    .flatten()
                    .copied()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            },
            SchedEvent::Cancelled { window } => MasterEvent::WindowCancelled { window },
        };
        self.emit(event).await;
    }

    async fn on_frame(&mut self, frame: &Frame) {
        let Ok((src, m)) = Message::decode(frame) else {
            return;
        };
        let now = self.clock.now();
        if src == msg::MASTER_PRIMARY && self.role == Role::Backup {
            self.primary_heard = now;
            if !self.active {
                self.observe_primary(&m);
            }
            return;
        }
        match m {
            Message::Request(req) => match NodeType::from_code(req.node_type) {
                Some(t) if self.store.by_type.contains_key(&t) => {
                    match self.sched.on_request(now, src, t) {
                        RequestOutcome::Opened(e) => self.emit_sched(e).await,
                        RequestOutcome::LateJoin { session } if self.active => {
                            if let Some(r) = &self.running {
                                let _ = r.ctl.send(SessionCtl::Reannounce { from: src }).await;
                            }
                            self.emit(MasterEvent::LateJoin { session, node: src })
                                .await;
                        }
                        RequestOutcome::Rejoin { session } if self.active => {
                            if let Some(r) = &self.running {
                                let _ = r.ctl.send(SessionCtl::Reannounce { from: src }).await;
                            }
                            tracing::debug!(session, node = src, "a requester asked again");
                        }
                        _ => {}
                    }
                }
                _ => {
                    if self.active && self.reported_no_image.insert(src) {
                        self.emit(MasterEvent::NoImage {
                            node: src,
                            node_type: req.node_type,
                        })
                        .await;
                    }
                }
            },
            Message::Status(s) if s.state == NodeState::Receiving as u8 => {
                if let Some(e) = self.sched.on_receiving(src) {
                    self.emit_sched(e).await;
                }
            }
            // A node with every chunk: its session need not wait for it.
            Message::Status(s)
                if s.state == NodeState::Verifying as u8 || s.state == NodeState::Handoff as u8 =>
            {
                self.complete(src).await
            }
            Message::Heartbeat(_) => self.complete(src).await,
            Message::Reject(_) => self.sched.on_reject(src),
            Message::Nack(n) if self.active => {
                if let Some(r) = self
                    .running
                    .as_ref()
                    .filter(|r| r.plan.session == n.session)
                {
                    let ranges = n.ranges[..(n.count as usize).min(msg::NACK_RANGES)].to_vec();
                    let _ = r.ctl.send(SessionCtl::Nack { from: src, ranges }).await;
                }
            }
            _ => {}
        }
    }

    /// A passive backup follows the primary's sessions.
    fn observe_primary(&mut self, m: &Message<'_>) {
        match *m {
            Message::SessionAnnounce(a) => {
                self.observed = Some(Observed {
                    announce: a,
                    kind: None,
                    highest: None,
                    parts: Vec::new(),
                })
            }
            Message::SessionPart(p) => {
                let Some(o) = self
                    .observed
                    .as_mut()
                    .filter(|o| o.announce.session == p.session)
                else {
                    return;
                };
                if let Some(t) = NodeType::from_code(p.node_type) {
                    o.parts.push(PartSpec {
                        node_type: t,
                        offset: p.offset,
                        len: p.len,
                        load_addr: p.load_addr,
                        version: p.version,
                    });
                    if o.kind.is_none() {
                        let kind = match o.announce.mode {
                            msg::MODE_COMBINED => SessionKind::Combined,
                            msg::MODE_UNICAST => SessionKind::Unicast {
                                node_type: t,
                                target: o.announce.target,
                            },
                            _ => SessionKind::Selected(t),
                        };
                        o.kind = Some(kind);
                        self.sched.adopt(p.session, o.announce.window, kind);
                    }
                }
            }
            Message::Data(d) => {
                if let Some(o) = self
                    .observed
                    .as_mut()
                    .filter(|o| o.announce.session as u8 == d.session)
                {
                    o.highest = Some(o.highest.map_or(d.chunk, |h| h.max(d.chunk)));
                }
            }
            Message::SessionEnd(e) if e.last != 0 => {
                self.sched.finish(self.clock.now(), e.session);
                self.observed = None;
            }
            _ => {}
        }
    }

    async fn close_due(&mut self) {
        if let Some(e) = self.sched.close_if_due(self.clock.now()) {
            self.emit_sched(e).await;
        }
    }

    fn content(&self, kind: SessionKind) -> Result<Content> {
        Content::of(kind, &self.store, &self.bundle)
    }

    /// Starts the next scheduled session, if none is running.
    async fn start_next(&mut self) {
        if !self.active || self.running.is_some() {
            return;
        }
        let Some(plan) = self.sched.start_next() else {
            return;
        };
        self.refresh_store();
        self.launch(plan, 0).await;
    }

    /// Reloads the store if its folder changed (an image was published),
    /// so that every session sends what the store holds now.
    fn refresh_store(&mut self) {
        let seen = Store::fingerprint(&self.store_dir);
        if seen == self.store_seen {
            return;
        }
        match Store::load(&self.store_dir).and_then(|s| {
            let (b, parts) = s.bundle()?;
            Ok((s, (Arc::new(b), parts)))
        }) {
            Ok((store, bundle)) => {
                info!(role = ?self.role, "image store changed; reloaded");
                self.store = Arc::new(store);
                self.bundle = Arc::new(bundle);
                self.store_seen = seen;
            }
            Err(e) => warn!("image store changed but cannot be loaded, keeping the old one: {e:#}"),
        }
    }

    async fn launch(&mut self, plan: SessionPlan, start_chunk: u32) {
        let content = match self.content(plan.kind) {
            Ok(c) => c,
            Err(e) => {
                warn!("cannot send session {}: {e:#}", plan.session);
                self.sched.finish(self.clock.now(), plan.session);
                return;
            }
        };
        self.emit(MasterEvent::SessionStarted {
            session: plan.session,
            window: plan.window,
            kind: plan.kind.label(),
            requesters: plan.requesters.iter().copied().collect(),
            bytes: content.object.len() as u64,
            resumed_at_chunk: (start_chunk > 0).then_some(start_chunk),
        })
        .await;
        let (ctl, mut ctl_rx) = mpsc::channel(64);
        let out = self.out.clone();
        let sending = session::Sending {
            repair: self.config.repair,
            timing: self.config.bus_timing,
            src: self.role.src(),
        };
        let p = plan.clone();
        let clock = self.clock.clone();
        let task = self.clock.spawn(async move {
            session::run(&p, &content, start_chunk, &out, &mut ctl_rx, sending, clock).await
        });
        self.running = Some(Running {
            plan,
            ctl,
            task,
            completed: BTreeSet::new(),
        });
    }

    async fn session_done(
        &mut self,
        result: Result<Result<session::Outcome>, crate::clock::TaskEnded>,
    ) {
        let Some(r) = self.running.take() else { return };
        self.sched.finish(self.clock.now(), r.plan.session);
        let (o, error) = match result {
            Ok(Ok(o)) => (o, None),
            Ok(Err(e)) => (session::Outcome::default(), Some(format!("{e:#}"))),
            Err(e) => (session::Outcome::default(), Some(e.to_string())),
        };
        self.emit(MasterEvent::SessionEnded {
            session: r.plan.session,
            bytes: o.bytes,
            frames: o.frames,
            repair_rounds: o.repair_rounds,
            repair_bytes: o.repair_bytes,
            chunks_per_round: o.rounds,
            bus_ms: o.bus_time.as_secs_f64() * 1e3,
            first_pass_bus_ms: o.first_pass_bus_time.as_secs_f64() * 1e3,
            first_pass_wall_ms: o.first_pass_wall.as_secs_f64() * 1e3,
            repair_end: o.repair_end,
            error,
        })
        .await;
    }

    /// Tells the running session, once, that its requester `node` has
    /// every chunk.
    async fn complete(&mut self, node: u16) {
        let requester = self
            .sched
            .running()
            .is_some_and(|p| p.requesters.contains(&node));
        if let Some(r) = self.running.as_mut().filter(|_| requester)
            && r.completed.insert(node)
        {
            let _ = r.ctl.send(SessionCtl::Complete { from: node }).await;
        }
    }

    /// Says where the window and the session are, if that changed.
    async fn report_progress(&mut self) {
        let now = (
            self.sched.deadline().map(|d| d.0),
            *self.progress.borrow_and_update(),
        );
        let now = (now.0, now.1.0);
        if now == self.progress_said {
            return;
        }
        self.progress_said = now;
        self.emit(MasterEvent::Progress {
            window_closes_in_ms: now
                .0
                .map(|at| at.saturating_duration_since(self.clock.now()).as_millis() as u64),
            session: now.1,
        })
        .await;
    }

    async fn beacon(&self) {
        let state = if self.running.is_some() {
            2
        } else if self.sched.deadline().is_some() {
            1
        } else {
            0
        };
        let b = MasterBeacon {
            role: if self.role == Role::Primary { 1 } else { 2 },
            state,
            next_session: self.sched.next_session(),
            uptime_ms: (self.clock.now() - self.started).as_millis() as u32,
        };
        if let Ok(frame) = Message::MasterBeacon(b).to_frame(self.role.src()) {
            let _ = self
                .out
                .urgent
                .send(Outgoing {
                    frame,
                    written: None,
                })
                .await;
        }
    }

    /// A backup becomes active once the primary has been silent too long,
    /// finishing any session the primary cut short.
    async fn maybe_take_over(&mut self) {
        let silent = self.clock.now() - self.primary_heard;
        if self.active || silent < self.config.takeover_after {
            return;
        }
        self.active = true;
        let resume = self.observed.take().and_then(|o| Some((o.kind?, o)));
        let mut resumed_session = None;
        if let (Some((kind, o)), Some(plan)) = (resume, self.sched.running().cloned()) {
            match self.content(kind) {
                // The same object as the primary's: carry on where it stopped.
                Ok(c) if c.object.len() as u32 == o.announce.object_len && c.parts == o.parts => {
                    resumed_session = Some(plan.session);
                    let start = o.highest.map_or(0, |h| h + 1);
                    self.emit(MasterEvent::TookOver {
                        silent_ms: silent.as_millis() as u64,
                        resumed_session,
                    })
                    .await;
                    self.launch(plan, start).await;
                    return;
                }
                // Another object: end that session; its nodes ask again.
                _ => self.sched.finish(self.clock.now(), plan.session),
            }
        }
        self.emit(MasterEvent::TookOver {
            silent_ms: silent.as_millis() as u64,
            resumed_session,
        })
        .await;
    }
}

fn log_event(role: Role, e: &MasterEvent) {
    let role = match role {
        Role::Primary => "primary",
        Role::Backup => "backup",
    };
    match e {
        MasterEvent::WindowOpened { window, node } => info!(role, window, node, "window open"),
        MasterEvent::WindowClosed {
            window,
            held_ms,
            reason,
            requesters,
        } => info!(role, window, ?reason, held_ms, ?requesters, "window closed"),
        MasterEvent::WindowCancelled { window } => {
            info!(
                role,
                window, "window cancelled: every requester joined a running session"
            )
        }
        MasterEvent::SessionStarted {
            session,
            window,
            kind,
            requesters,
            bytes,
            resumed_at_chunk,
        } => {
            info!(
                role,
                session,
                window,
                kind,
                bytes,
                ?requesters,
                ?resumed_at_chunk,
                "broadcast start"
            )
        }
        MasterEvent::LateJoin { session, node } => info!(role, session, node, "late join"),
        MasterEvent::SessionEnded {
            session,
            bytes,
            frames,
            repair_rounds,
            repair_bytes,
            error,
            ..
        } => {
            info!(
                role,
                session,
                bytes,
                frames,
                repair_rounds,
                repair_bytes,
                ?error,
                "broadcast end"
            )
        }
        MasterEvent::NoImage { node, node_type } => {
            warn!(
                role,
                node, node_type, "request for a type with no image in the store"
            )
        }
        MasterEvent::Progress { .. } => {}
        MasterEvent::TookOver {
            silent_ms,
            resumed_session,
        } => {
            warn!(
                role,
                silent_ms,
                ?resumed_session,
                "took over from a silent primary"
            )
        }
    }
}

/// Most frames the writer sends in one write.
const WRITE_BATCH: usize = 32;

/// Writes urgent frames before bulk ones, signals writes that asked, and
/// follows the session in `progress`. Whatever is queued when it wakes
/// goes in one write (up to [`WRITE_BATCH`] frames): a paced bus takes a
/// frame every ~130 µs, and a write per frame left the master only a few
/// frames ahead of the bus, so any wait for a core became a gap on it.
async fn write_frames(
    mut w: PortWriter,
    mut bulk: mpsc::Receiver<Outgoing>,
    mut urgent: mpsc::Receiver<Outgoing>,
    progress: watch::Sender<WireProgress>,
) -> Result<()> {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(WRITE_BATCH);
    let mut frames: Vec<Frame> = Vec::with_capacity(WRITE_BATCH);
    loop {
        let o = tokio::select! {
            biased;
            Some(o) = urgent.recv() => o,
            Some(o) = bulk.recv() => o,
            else => return Ok(()),
        };
        batch.push(o);
        while batch.len() < WRITE_BATCH {
            match urgent.try_recv().or_else(|_| bulk.try_recv()) {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        frames.clear();
        frames.extend(batch.iter().map(|o| o.frame));
        w.send_all(&frames).await?;
        for o in batch.drain(..) {
            progress.send_if_modified(|p| p.on_frame(&o.frame));
            if let Some(done) = o.written {
                let _ = done.send(());
            }
        }
    }
}

/// What a master starts with.
struct Setup {
    config: MasterConfig,
    role: Role,
    store_dir: std::path::PathBuf,
    store_seen: Vec<(std::path::PathBuf, u64, SystemTime)>,
    store: Store,
    bundle: (Arc<Vec<u8>>, Vec<PartSpec>),
    events: mpsc::Sender<MasterRecord>,
}

/// Runs a master on the bus port at `port` until `shutdown` turns true,
/// on the host's clock or (`clock`) the bus's virtual time, the port then
/// being a timed one. Every event goes to `events`.
pub async fn run(
    port: &Path,
    store_dir: &Path,
    config: MasterConfig,
    role: Role,
    events: mpsc::Sender<MasterRecord>,
    shutdown: watch::Receiver<bool>,
    clock: ClockKind,
) -> Result<()> {
    let store_seen = Store::fingerprint(store_dir);
    let store = Store::load(store_dir)?;
    let (reader, writer) = client::connect(port).await?;
    let bundle = if store.by_type.is_empty() {
        (Arc::new(Vec::new()), Vec::new())
    } else {
        let (b, parts) = store.bundle().context("building the combined bundle")?;
        (Arc::new(b), parts)
    };
    let setup = Setup {
        config,
        role,
        store_dir: store_dir.to_path_buf(),
        store_seen,
        store,
        bundle,
        events,
    };
    match clock {
        ClockKind::Wall => {
            let (frames_tx, frames) = mpsc::channel(1024);
            let _read_task = AbortOnDrop(tokio::spawn(read_frames(reader, frames_tx)));
            let clock = Clock::wall(tokio::time::Instant::now());
            serve(
                clock,
                Inbox::Wall(frames),
                PortWriter::wall(writer),
                setup,
                shutdown,
            )
            .await
        }
        ClockKind::Virtual => {
            let c = VirtualClient::new(reader, writer);
            let root = c
                .clock
                .spawn(serve(c.clock.clone(), c.inbox, c.writer, setup, shutdown));
            c.driving.run(root).await?
        }
    }
}

/// The master's loop: frames, its window's deadline, its session, its
/// beacon and (as a backup) its watchdog, all on `clock`.
async fn serve(
    clock: Clock,
    mut frames: Inbox,
    writer: PortWriter,
    setup: Setup,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let (bulk, bulk_rx) = mpsc::channel(16);
    let (urgent, urgent_rx) = mpsc::channel(16);
    let (progress_tx, progress) = watch::channel(WireProgress::default());
    let writing = clock.spawn(write_frames(writer, bulk_rx, urgent_rx, progress_tx));
    let _write_task = crate::clock::AbortOnDrop(writing);
    let now = clock.now();
    let mut m = Master {
        role: setup.role,
        active: setup.role == Role::Primary,
        sched: Scheduler::new(
            setup.config.hold_off,
            setup.config.mode,
            setup.config.late_join,
            1,
        ),
        config: setup.config,
        store_dir: setup.store_dir,
        store_seen: setup.store_seen,
        store: Arc::new(setup.store),
        bundle: Arc::new(setup.bundle),
        out: Outbox { bulk, urgent },
        events: setup.events,
        running: None,
        observed: None,
        primary_heard: now,
        started: now,
        reported_no_image: BTreeSet::new(),
        progress,
        progress_said: (None, None),
        clock: clock.clone(),
    };
    let mut beacon = clock.interval(BEACON_EVERY);
    let mut watchdog = clock.interval(Duration::from_millis(100));
    loop {
        let deadline = m.sched.deadline().map(|d| d.0);
        let active = m.active;
        let busy = m.running.is_some();
        // Biased: on the virtual clock every choice must follow from what
        // is ready, never from chance. Timers first, so frames never
        // starve them.
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            r = async { m.running.as_mut().map(|r| &mut r.task).expect("guarded").await }, if busy => {
                m.session_done(r).await
            }
            _ = clock.sleep_until(deadline.unwrap_or(now)), if deadline.is_some() => m.close_due().await,
            _ = beacon.tick(), if active => {
                m.beacon().await;
                m.report_progress().await;
            }
            _ = watchdog.tick(), if !active => m.maybe_take_over().await,
            f = frames.recv() => match f {
                Some(f) => m.on_frame(&f).await,
                None => break Err(anyhow::anyhow!("the bus closed the master's port")),
            },
        }
        m.start_next().await;
    }
}
