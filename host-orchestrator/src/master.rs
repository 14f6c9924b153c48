//! The master source: collects requests in hold-off windows, then broadcasts
//! each requested type's image once for every node that asked.
//!
//! [`Scheduler`] is the window logic, synchronous and tested in virtual time.
//! [`run`] is the master on the bus: a reader task, the scheduler loop, and a
//! broadcaster task that sends one session at a time.

use crate::busclient::{self, FrameReader, FrameWriter};
use crate::fleet::MasterConfig;
use crate::holdoff::{CloseReason, HoldOff};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use proto::msg::{
    self, Data, MODE_SELECTED, Message, NodeState, SessionAnnounce, SessionEnd, SessionPart,
};
use proto::{Frame, NodeType};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Requesters of a window, by type.
pub type Requesters = BTreeMap<NodeType, BTreeSet<u16>>;

/// What the master did, for logs and reports.
#[derive(Clone, Debug)]
pub enum MasterEvent {
    /// A request opened a window.
    WindowOpened {
        /// Window number.
        window: u32,
        /// When.
        at: Instant,
        /// The first requester.
        node: u16,
    },
    /// A window closed and its sessions were scheduled.
    WindowClosed {
        /// Window number.
        window: u32,
        /// When it opened.
        opened_at: Instant,
        /// When it closed.
        closed_at: Instant,
        /// Why.
        reason: CloseReason,
        /// Who asked, by type.
        requesters: Requesters,
    },
    /// Every requester of an open window joined a running session instead.
    WindowCancelled {
        /// Window number.
        window: u32,
        /// When it opened.
        opened_at: Instant,
        /// When it was cancelled.
        at: Instant,
    },
    /// A session started broadcasting.
    SessionStarted {
        /// Session number.
        session: u32,
        /// Window that scheduled it.
        window: u32,
        /// Node type.
        node_type: NodeType,
        /// Nodes it serves.
        requesters: BTreeSet<u16>,
        /// When.
        at: Instant,
    },
    /// A session's last frame was handed to the bus.
    SessionEnded {
        /// Session number.
        session: u32,
        /// Object bytes sent in `Data` frames.
        bytes: u64,
        /// Frames sent.
        frames: u64,
        /// When.
        at: Instant,
    },
    /// A node asked for a type the store has no image for.
    NoImage {
        /// The node.
        node: u16,
        /// Its type code.
        node_type: u8,
    },
}

/// A window collecting requests.
#[derive(Clone, Debug)]
struct Window {
    id: u32,
    opened: Instant,
    last_new: Instant,
    requesters: Requesters,
}

impl Window {
    fn contains(&self, node: u16) -> bool {
        self.requesters.values().any(|s| s.contains(&node))
    }
}

/// A session waiting to run, or running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPlan {
    /// Session number (assigned when it starts).
    pub session: u32,
    /// Window that scheduled it.
    pub window: u32,
    /// The type whose image it carries.
    pub node_type: NodeType,
    /// The nodes that asked.
    pub requesters: BTreeSet<u16>,
}

/// How long after a session a requester that has not yet said it received
/// it is taken to be behind on the bus rather than in need of a new window.
pub const LAGGING_GRACE: Duration = Duration::from_secs(10);

/// The hold-off window logic, free of I/O.
pub struct Scheduler {
    hold_off: HoldOff,
    /// Requesters of finished sessions not yet heard receiving one:
    /// node → (type, when its session ended).
    lagging: BTreeMap<u16, (NodeType, Instant)>,
    next_window: u32,
    next_session: u32,
    open: Option<Window>,
    pending: VecDeque<SessionPlan>,
    running: Option<SessionPlan>,
}

impl Scheduler {
    /// A scheduler whose first session number is `first_session`.
    pub fn new(hold_off: HoldOff, first_session: u32) -> Scheduler {
        Scheduler {
            hold_off,
            next_window: 1,
            next_session: first_session,
            open: None,
            pending: VecDeque::new(),
            running: None,
            lagging: BTreeMap::new(),
        }
    }

    /// A request from `node` for type `t` at `now`.
    pub fn on_request(&mut self, now: Instant, node: u16, t: NodeType) -> Option<MasterEvent> {
        if let Some(&(lt, ended)) = self.lagging.get(&node) {
            if lt == t && now.saturating_duration_since(ended) < LAGGING_GRACE {
                // Sent before the node read its session's start off the bus.
                return None;
            }
            self.lagging.remove(&node);
        }
        if let Some(r) = &self.running
            && r.node_type == t
            && r.requesters.contains(&node)
        {
            return None; // a retry from a node being served right now
        }
        if let Some(p) = self.pending.iter_mut().find(|p| p.node_type == t) {
            // Its type is scheduled but not started: it will hear the start.
            p.requesters.insert(node);
            return None;
        }
        match &mut self.open {
            Some(w) => {
                if !w.contains(node) {
                    w.requesters.entry(t).or_default().insert(node);
                    w.last_new = now;
                }
                None
            }
            None => {
                let id = self.next_window;
                self.next_window += 1;
                let mut requesters = Requesters::new();
                requesters.entry(t).or_default().insert(node);
                self.open = Some(Window {
                    id,
                    opened: now,
                    last_new: now,
                    requesters,
                });
                Some(MasterEvent::WindowOpened {
                    window: id,
                    at: now,
                    node,
                })
            }
        }
    }

    /// `node` reports it is receiving a session: it needs nothing from a later
    /// window. A window left with no requesters is cancelled.
    pub fn on_receiving(&mut self, now: Instant, node: u16) -> Option<MasterEvent> {
        self.lagging.remove(&node);
        for p in &mut self.pending {
            p.requesters.remove(&node);
        }
        self.pending.retain(|p| !p.requesters.is_empty());
        let w = self.open.as_mut()?;
        for set in w.requesters.values_mut() {
            set.remove(&node);
        }
        w.requesters.retain(|_, s| !s.is_empty());
        if w.requesters.is_empty() {
            let w = self.open.take()?;
            return Some(MasterEvent::WindowCancelled {
                window: w.id,
                opened_at: w.opened,
                at: now,
            });
        }
        None
    }

    /// When the open window closes, if one is open.
    pub fn deadline(&self) -> Option<(Instant, CloseReason)> {
        self.open
            .as_ref()
            .map(|w| self.hold_off.deadline(w.opened, w.last_new))
    }

    /// Closes the open window if its deadline has passed, scheduling one
    /// session per requested type in type order.
    pub fn close_if_due(&mut self, now: Instant) -> Option<MasterEvent> {
        let (at, reason) = self.deadline()?;
        if now < at {
            return None;
        }
        let w = self.open.take()?;
        for (t, nodes) in &w.requesters {
            self.pending.push_back(SessionPlan {
                session: 0,
                window: w.id,
                node_type: *t,
                requesters: nodes.clone(),
            });
        }
        Some(MasterEvent::WindowClosed {
            window: w.id,
            opened_at: w.opened,
            closed_at: now,
            reason,
            requesters: w.requesters,
        })
    }

    /// The next session to broadcast, when none is running.
    pub fn start_next(&mut self) -> Option<SessionPlan> {
        if self.running.is_some() {
            return None;
        }
        let mut plan = self.pending.pop_front()?;
        plan.session = self.next_session;
        self.next_session = self.next_session.wrapping_add(1).max(1);
        self.running = Some(plan.clone());
        Some(plan)
    }

    /// `node` refused an image: its next request is a real one.
    pub fn on_reject(&mut self, node: u16) {
        self.lagging.remove(&node);
    }

    /// The running session has been sent. Its requesters may still be
    /// reading it off the bus.
    pub fn finish(&mut self, now: Instant, session: u32) {
        if self.running.as_ref().is_some_and(|r| r.session == session)
            && let Some(r) = self.running.take()
        {
            for node in r.requesters {
                self.lagging.insert(node, (r.node_type, now));
            }
        }
    }
}

fn encode(m: Message<'_>, src: u16) -> Result<Frame> {
    m.to_frame(src)
        .map_err(|e| anyhow::anyhow!("cannot encode {:?}: {e:?}", m.kind()))
}

/// The frames of one selected-mode session: announce, part, data, end.
pub fn session_frames(
    plan: &SessionPlan,
    object: &[u8],
    manifest: &images::Manifest,
    src: u16,
) -> Result<Vec<Frame>> {
    let chunk = msg::FD_CHUNK;
    let total_chunks = object.len().div_ceil(chunk);
    if total_chunks as u64 > msg::MAX_CHUNK_INDEX as u64 + 1 {
        bail!(
            "image of {} bytes needs more chunks than a session can carry",
            object.len()
        );
    }
    let object_len = u32::try_from(object.len()).context("image larger than 4 GiB")?;
    let mut frames = Vec::with_capacity(total_chunks + 3);
    let announce = SessionAnnounce {
        session: plan.session,
        window: plan.window,
        mode: MODE_SELECTED,
        parts: 1,
        chunk_size: chunk as u8,
        object_len,
        total_chunks: total_chunks as u32,
    };
    frames.push(encode(Message::SessionAnnounce(announce), src)?);
    let part = SessionPart {
        session: plan.session,
        index: 0,
        node_type: plan.node_type as u8,
        manifest_len: images::manifest::MANIFEST_LEN as u16,
        offset: 0,
        len: object_len,
        load_addr: manifest.load_addr,
        version: manifest.version,
    };
    frames.push(encode(Message::SessionPart(part), src)?);
    for (i, bytes) in object.chunks(chunk).enumerate() {
        let data = Data {
            session: plan.session as u8,
            chunk: i as u32,
            payload: bytes,
        };
        frames.push(encode(Message::Data(data), src)?);
    }
    let end = SessionEnd {
        session: plan.session,
        total_chunks: total_chunks as u32,
        round: 0,
        last: 1,
    };
    frames.push(encode(Message::SessionEnd(end), src)?);
    Ok(frames)
}

struct Done {
    session: u32,
    bytes: u64,
    frames: u64,
}

async fn broadcaster(
    mut writer: FrameWriter,
    store: Arc<Store>,
    mut plans: mpsc::Receiver<SessionPlan>,
    done: mpsc::Sender<Done>,
) -> Result<()> {
    while let Some(plan) = plans.recv().await {
        let stored = store
            .by_type
            .get(&plan.node_type)
            .context("scheduled a type with no image")?;
        let frames = session_frames(
            &plan,
            &stored.bytes,
            &stored.image.manifest,
            msg::MASTER_PRIMARY,
        )?;
        for f in &frames {
            writer.send(f).await?;
        }
        let sent = Done {
            session: plan.session,
            bytes: stored.bytes.len() as u64,
            frames: frames.len() as u64,
        };
        if done.send(sent).await.is_err() {
            break;
        }
    }
    Ok(())
}

async fn reader(mut r: FrameReader, frames: mpsc::Sender<Frame>) -> Result<()> {
    while let Some(f) = r.next().await? {
        if frames.send(f).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Runs the master on the bus port at `port` until `shutdown` turns true.
pub async fn run(
    port: &Path,
    store: Store,
    config: MasterConfig,
    events: mpsc::Sender<MasterEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let (r, w) = busclient::connect(port).await?;
    let store = Arc::new(store);
    let (frame_tx, mut frame_rx) = mpsc::channel(1024);
    let (plan_tx, plan_rx) = mpsc::channel(1);
    let (done_tx, mut done_rx) = mpsc::channel(1);
    let read_task = tokio::spawn(reader(r, frame_tx));
    let send_task = tokio::spawn(broadcaster(w, store.clone(), plan_rx, done_tx));
    let mut sched = Scheduler::new(config.hold_off, 1);
    let mut reported_no_image = BTreeSet::new();
    let mut happened: Vec<MasterEvent> = Vec::new();
    let result = loop {
        for e in happened.drain(..) {
            log_event(&e);
            // The report's consumer may be gone at shutdown; the log stays.
            let _ = events.send(e).await;
        }
        let mut emit = |e: MasterEvent| happened.push(e);
        let deadline = sched.deadline().map(|d| d.0);
        tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            f = frame_rx.recv() => {
                let Some(frame) = f else { break Err(anyhow::anyhow!("the bus closed the master's port")) };
                let Ok((src, m)) = Message::decode(&frame) else { continue };
                match m {
                    Message::Request(req) => match NodeType::from_code(req.node_type) {
                        Some(t) if store.by_type.contains_key(&t) => {
                            if let Some(e) = sched.on_request(Instant::now(), src, t) {
                                emit(e);
                            }
                        }
                        _ => {
                            if reported_no_image.insert(src) {
                                emit(MasterEvent::NoImage { node: src, node_type: req.node_type });
                            }
                        }
                    },
                    Message::Status(s) if s.state == NodeState::Receiving as u8 => {
                        if let Some(e) = sched.on_receiving(Instant::now(), src) {
                            emit(e);
                        }
                    }
                    Message::Reject(_) => sched.on_reject(src),
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if let Some(e) = sched.close_if_due(Instant::now()) {
                    emit(e);
                }
            }
            d = done_rx.recv() => {
                let Some(d) = d else { break Err(anyhow::anyhow!("the broadcaster stopped")) };
                sched.finish(Instant::now(), d.session);
                emit(MasterEvent::SessionEnded { session: d.session, bytes: d.bytes, frames: d.frames, at: Instant::now() });
            }
        }
        if let Some(plan) = sched.start_next() {
            emit(MasterEvent::SessionStarted {
                session: plan.session,
                window: plan.window,
                node_type: plan.node_type,
                requesters: plan.requesters.clone(),
                at: Instant::now(),
            });
            if plan_tx.send(plan).await.is_err() {
                break Err(anyhow::anyhow!("the broadcaster stopped"));
            }
        }
    };
    read_task.abort();
    drop(plan_tx);
    // The broadcaster may be blocked on a full socket; it is ours to stop.
    send_task.abort();
    let _ = send_task.await;
    let _ = read_task.await;
    result
}

fn log_event(e: &MasterEvent) {
    match e {
        MasterEvent::WindowOpened { window, node, .. } => info!(window, node, "window open"),
        MasterEvent::WindowClosed {
            window,
            opened_at,
            closed_at,
            reason,
            requesters,
        } => {
            let who: Vec<String> = requesters
                .iter()
                .map(|(t, n)| format!("{}:{:?}", t.name(), n))
                .collect();
            info!(window, ?reason, held_ms = (*closed_at - *opened_at).as_millis() as u64, requesters = %who.join(" "), "window closed");
        }
        MasterEvent::WindowCancelled { window, .. } => {
            info!(
                window,
                "window cancelled: every requester joined a running session"
            )
        }
        MasterEvent::SessionStarted {
            session,
            window,
            node_type,
            requesters,
            ..
        } => {
            info!(
                session,
                window,
                node_type = node_type.name(),
                ?requesters,
                "broadcast start"
            )
        }
        MasterEvent::SessionEnded {
            session,
            bytes,
            frames,
            ..
        } => {
            info!(session, bytes, frames, "broadcast end")
        }
        MasterEvent::NoImage { node, node_type } => {
            warn!(
                node,
                node_type, "request for a type with no image in the store"
            )
        }
    }
    debug!(?e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holdoff::Policy;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a scheduler through requests at given offsets and returns
    /// (window, close time from start, requesters) for each closed window.
    async fn closes(policy: Policy, requests: &[(u64, u16)]) -> Vec<(u32, Duration, Vec<u16>)> {
        let t0 = Instant::now();
        let mut s = Scheduler::new(HoldOff::new(policy, 1000, 5000).unwrap(), 1);
        let mut out = Vec::new();
        let mut pending: VecDeque<(u64, u16)> = requests.iter().copied().collect();
        loop {
            let next_req = pending.front().map(|r| t0 + ms(r.0));
            let next_close = s.deadline().map(|d| d.0);
            let at = match (next_req, next_close) {
                (Some(r), Some(c)) => r.min(c),
                (Some(r), None) => r,
                (None, Some(c)) => c,
                (None, None) => break,
            };
            tokio::time::sleep_until(at).await;
            let now = Instant::now();
            if let Some(MasterEvent::WindowClosed {
                window,
                closed_at,
                requesters,
                ..
            }) = s.close_if_due(now)
            {
                out.push((
                    window,
                    closed_at - t0,
                    requesters.values().flatten().copied().collect(),
                ));
                // The session runs and ends at once: the test is about windows.
                while let Some(p) = s.start_next() {
                    s.finish(now, p.session);
                }
            }
            if next_req == Some(now) {
                let (_, node) = pending.pop_front().unwrap();
                s.on_request(now, node, NodeType::Drive);
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_closes_one_period_after_the_first_request() {
        let got = closes(Policy::Fixed, &[(0, 1), (800, 2), (1600, 3)]).await;
        assert_eq!(got, vec![(1, ms(1000), vec![1, 2]), (2, ms(2600), vec![3])]);
    }

    #[tokio::test(start_paused = true)]
    async fn renew_restarts_at_each_new_requester() {
        let got = closes(Policy::Renew, &[(0, 1), (800, 2), (1600, 3)]).await;
        assert_eq!(got, vec![(1, ms(2600), vec![1, 2, 3])]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_do_not_renew() {
        let got = closes(Policy::Renew, &[(0, 1), (600, 1), (900, 1)]).await;
        assert_eq!(got, vec![(1, ms(1000), vec![1])]);
    }

    #[tokio::test(start_paused = true)]
    async fn renew_is_capped_by_max_wait() {
        let reqs: Vec<(u64, u16)> = (0..10).map(|i| (i * 900, i as u16 + 1)).collect();
        let got = closes(Policy::Renew, &reqs).await;
        assert_eq!(got[0].1, ms(5000));
        assert_eq!(got[0].2, vec![1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_session_per_type_and_retries_are_absorbed() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(HoldOff::new(Policy::Fixed, 1000, 1000).unwrap(), 7);
        s.on_request(t0, 1, NodeType::Drive);
        s.on_request(t0, 2, NodeType::Xy);
        s.on_request(t0, 3, NodeType::Drive);
        assert!(s.close_if_due(t0 + ms(999)).is_none());
        assert!(matches!(
            s.close_if_due(t0 + ms(1000)),
            Some(MasterEvent::WindowClosed { .. })
        ));
        let first = s.start_next().unwrap();
        assert_eq!((first.session, first.node_type), (7, NodeType::Xy));
        assert!(s.start_next().is_none(), "one session at a time");
        // Retries from nodes already scheduled open no new window.
        assert!(s.on_request(t0 + ms(1100), 2, NodeType::Xy).is_none());
        assert!(s.on_request(t0 + ms(1100), 1, NodeType::Drive).is_none());
        // A new drive node joins the scheduled drive session before it starts.
        assert!(s.on_request(t0 + ms(1100), 4, NodeType::Drive).is_none());
        assert!(s.deadline().is_none());
        s.finish(t0 + ms(1100), 7);
        let second = s.start_next().unwrap();
        assert_eq!(second.node_type, NodeType::Drive);
        assert_eq!(second.requesters, BTreeSet::from([1, 3, 4]));
        // A new xy node while drive runs: next window.
        assert!(matches!(
            s.on_request(t0 + ms(1200), 5, NodeType::Xy),
            Some(MasterEvent::WindowOpened { window: 2, .. })
        ));
        // It then hears a running xy session (say, a late one) and says so:
        // the window it opened has no one left and is cancelled.
        assert!(matches!(
            s.on_receiving(t0 + ms(1300), 5),
            Some(MasterEvent::WindowCancelled { window: 2, .. })
        ));
        assert!(s.deadline().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_requester_still_reading_its_session_opens_no_window() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(HoldOff::new(Policy::Fixed, 1000, 1000).unwrap(), 1);
        s.on_request(t0, 1, NodeType::Drive);
        s.on_request(t0, 2, NodeType::Drive);
        s.close_if_due(t0 + ms(1000));
        let p = s.start_next().unwrap();
        s.finish(t0 + ms(1200), p.session);
        // Node 1 is behind: its retry predates the session it has not read yet.
        assert!(s.on_request(t0 + ms(1500), 1, NodeType::Drive).is_none());
        assert!(s.deadline().is_none());
        // Node 2 read the session but refused it: it needs a new window.
        s.on_receiving(t0 + ms(1300), 2);
        s.on_reject(2);
        assert!(matches!(
            s.on_request(t0 + ms(1600), 2, NodeType::Drive),
            Some(MasterEvent::WindowOpened { .. })
        ));
        // Past the grace, a silent requester is served again.
        assert!(
            s.on_request(t0 + ms(1200) + LAGGING_GRACE, 1, NodeType::Drive)
                .is_none()
        );
        assert_eq!(s.deadline().map(|d| d.0), Some(t0 + ms(2600)));
        assert!(s.close_if_due(t0 + ms(2600)).is_some());
        assert_eq!(s.start_next().unwrap().requesters, BTreeSet::from([1, 2]));
    }

    #[test]
    fn session_frames_cover_the_object() {
        let manifest = images::Manifest {
            node_type: NodeType::Drive,
            version: 1,
            name: [0; 16],
            load_addr: board::memory::IMAGE_BASE,
            entry: board::memory::IMAGE_BASE,
            size: 100,
            mem_size: 100,
            sha256: [0; 32],
            key_id: [0; 8],
            signature: [0; 64],
        };
        let object: Vec<u8> = (0..260u32).map(|i| i as u8).collect();
        let plan = SessionPlan {
            session: 3,
            window: 1,
            node_type: NodeType::Drive,
            requesters: BTreeSet::new(),
        };
        let frames = session_frames(&plan, &object, &manifest, msg::MASTER_PRIMARY).unwrap();
        assert_eq!(frames.len(), 3 + 5);
        let mut rebuilt = Vec::new();
        for f in &frames[2..7] {
            let Ok((_, Message::Data(d))) = Message::decode(f) else {
                panic!("not data")
            };
            rebuilt.extend_from_slice(d.payload);
        }
        rebuilt.truncate(object.len());
        assert_eq!(rebuilt, object);
        assert!(matches!(
            Message::decode(&frames[7]),
            Ok((_, Message::SessionEnd(_)))
        ));
    }
}
