//! The hold-off window logic, free of I/O and tested in virtual time.

use crate::clock::Moment;
use crate::holdoff::{CloseReason, HoldOff, WindowClock};
use proto::NodeType;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Broadcast mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One session per requested type, each carrying that type's image.
    #[default]
    Selected,
    /// One session carrying a bundle of every type's image; each node keeps
    /// its own part.
    Combined,
    /// One session per requesting node (the prior art's per-node transfers),
    /// for comparison.
    Unicast,
}

/// Requesters of a window, by type.
pub type Requesters = BTreeMap<NodeType, BTreeSet<u16>>;

/// How long after a session a requester that has not yet said it received
/// it is taken to be behind on the bus rather than in need of a new window.
/// Short: a node that missed its session's start altogether must not wait
/// long, and a window opened for one that was only behind is cancelled as
/// soon as it says it receives.
pub const LAGGING_GRACE: Duration = Duration::from_secs(3);

/// What a session carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionKind {
    /// One type's image for every node of that type.
    Selected(NodeType),
    /// Every type's image in one bundle.
    Combined,
    /// One type's image for one node (the unicast baseline).
    Unicast {
        /// The image's type.
        node_type: NodeType,
        /// The node it is for.
        target: u16,
    },
}

impl SessionKind {
    /// Whether a node of type `t` with id `node` can be served by it.
    pub fn serves(&self, node: u16, t: NodeType) -> bool {
        match *self {
            SessionKind::Selected(k) => k == t,
            SessionKind::Combined => true,
            SessionKind::Unicast { node_type, target } => node_type == t && target == node,
        }
    }

    /// A short label for logs and reports: the type, "combined", or
    /// "drive→7".
    pub fn label(&self) -> String {
        match self {
            SessionKind::Selected(t) => t.name().to_string(),
            SessionKind::Combined => "combined".to_string(),
            SessionKind::Unicast { node_type, target } => format!("{}→{target}", node_type.name()),
        }
    }
}

/// A window's story, as the scheduler tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedEvent {
    /// A request opened a window.
    Opened {
        /// Window number.
        window: u32,
        /// When.
        at: Moment,
        /// The first requester.
        node: u16,
    },
    /// A window closed and its sessions were scheduled.
    Closed {
        /// Window number.
        window: u32,
        /// When it opened.
        opened_at: Moment,
        /// When it closed.
        closed_at: Moment,
        /// Why.
        reason: CloseReason,
        /// Who asked, by type.
        requesters: Requesters,
    },
    /// Every requester of an open window joined a running session instead.
    Cancelled {
        /// Window number.
        window: u32,
    },
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Nothing to do: a retry, or a node still reading its session.
    Absorbed,
    /// Added to a scheduled session that has not started.
    Scheduled,
    /// Added to the running session: re-announce it so the node can join.
    LateJoin {
        /// The running session.
        session: u32,
    },
    /// A requester of the running session asked again: it missed the
    /// session's start (lost frames) or gave the session up (a reset, a
    /// silent spell). Re-announce it; the node gets what it lacks in repair.
    Rejoin {
        /// The running session.
        session: u32,
    },
    /// Added to the open window.
    Added,
    /// Opened a window.
    Opened(SchedEvent),
}

#[derive(Clone, Debug)]
struct Window {
    id: u32,
    opened: Moment,
    last_new: Moment,
    renewals: u32,
    requesters: Requesters,
}

impl Window {
    fn contains(&self, node: u16) -> bool {
        self.requesters.values().any(|s| s.contains(&node))
    }

    fn clock(&self) -> WindowClock<Moment> {
        WindowClock {
            first: self.opened,
            last_new: self.last_new,
            renewals: self.renewals,
            requesters: self.requesters.values().map(|s| s.len()).sum(),
        }
    }
}

/// A session waiting to run, or running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPlan {
    /// Session number (assigned when it starts).
    pub session: u32,
    /// Window that scheduled it.
    pub window: u32,
    /// What it carries.
    pub kind: SessionKind,
    /// The nodes that asked (late joiners included).
    pub requesters: BTreeSet<u16>,
}

/// The hold-off window logic.
pub struct Scheduler {
    hold_off: HoldOff,
    mode: Mode,
    late_join: bool,
    next_window: u32,
    next_session: u32,
    open: Option<Window>,
    pending: VecDeque<SessionPlan>,
    running: Option<SessionPlan>,
    /// Requesters of finished sessions not yet heard receiving one:
    /// node → (type, when its session ended).
    lagging: BTreeMap<u16, (NodeType, Moment)>,
}

impl Scheduler {
    /// A scheduler whose first session number is `first_session`.
    pub fn new(hold_off: HoldOff, mode: Mode, late_join: bool, first_session: u32) -> Scheduler {
        Scheduler {
            hold_off,
            mode,
            late_join,
            next_window: 1,
            next_session: first_session.max(1),
            open: None,
            pending: VecDeque::new(),
            running: None,
            lagging: BTreeMap::new(),
        }
    }

    /// The running session, if any.
    pub fn running(&self) -> Option<&SessionPlan> {
        self.running.as_ref()
    }

    /// A request from `node` for type `t` at `now`.
    pub fn on_request(&mut self, now: Moment, node: u16, t: NodeType) -> RequestOutcome {
        if let Some(&(lt, ended)) = self.lagging.get(&node) {
            if lt == t && now.saturating_duration_since(ended) < LAGGING_GRACE {
                // Sent before the node read its session's start off the bus.
                return RequestOutcome::Absorbed;
            }
            self.lagging.remove(&node);
        }
        let late_join = self.late_join && self.mode != Mode::Unicast;
        if let Some(r) = self.running.as_mut().filter(|r| r.kind.serves(node, t)) {
            if r.requesters.contains(&node) {
                return RequestOutcome::Rejoin { session: r.session };
            }
            if late_join {
                r.requesters.insert(node);
                return RequestOutcome::LateJoin { session: r.session };
            }
        }
        if let Some(p) = self.pending.iter_mut().find(|p| p.kind.serves(node, t)) {
            // Its session is scheduled but not started: it will hear the start.
            return if p.requesters.insert(node) {
                RequestOutcome::Scheduled
            } else {
                RequestOutcome::Absorbed
            };
        }
        match &mut self.open {
            Some(w) if w.contains(node) => RequestOutcome::Absorbed,
            Some(w) => {
                w.requesters.entry(t).or_default().insert(node);
                w.last_new = now;
                w.renewals += 1;
                RequestOutcome::Added
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
                    renewals: 0,
                    requesters,
                });
                RequestOutcome::Opened(SchedEvent::Opened {
                    window: id,
                    at: now,
                    node,
                })
            }
        }
    }

    /// `node` reports it is receiving a session: it needs nothing from a later
    /// window. A window left with no requesters is cancelled.
    pub fn on_receiving(&mut self, node: u16) -> Option<SchedEvent> {
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
            return Some(SchedEvent::Cancelled { window: w.id });
        }
        None
    }

    /// `node` refused an image: its next request is a real one.
    pub fn on_reject(&mut self, node: u16) {
        self.lagging.remove(&node);
    }

    /// When the open window closes, if one is open.
    pub fn deadline(&self) -> Option<(Moment, CloseReason)> {
        self.open
            .as_ref()
            .map(|w| self.hold_off.deadline(&w.clock()))
    }

    /// Closes the open window if its deadline has passed and schedules its
    /// sessions: one per requested type (`selected`), one bundle
    /// (`combined`), or one per requester (`unicast`).
    pub fn close_if_due(&mut self, now: Moment) -> Option<SchedEvent> {
        let (at, reason) = self.deadline()?;
        if now < at {
            return None;
        }
        let w = self.open.take()?;
        let plan = |kind, requesters| SessionPlan {
            session: 0,
            window: w.id,
            kind,
            requesters,
        };
        match self.mode {
            Mode::Selected => {
                for (t, nodes) in &w.requesters {
                    self.pending
                        .push_back(plan(SessionKind::Selected(*t), nodes.clone()));
                }
            }
            Mode::Combined => {
                let all = w.requesters.values().flatten().copied().collect();
                self.pending.push_back(plan(SessionKind::Combined, all));
            }
            Mode::Unicast => {
                for (t, nodes) in &w.requesters {
                    for &n in nodes {
                        let kind = SessionKind::Unicast {
                            node_type: *t,
                            target: n,
                        };
                        self.pending.push_back(plan(kind, BTreeSet::from([n])));
                    }
                }
            }
        }
        Some(SchedEvent::Closed {
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

    /// Another master started session `session` of `kind` (a backup
    /// watching the primary): it becomes the running session, taking over
    /// the scheduled plan it serves, if any.
    pub fn adopt(&mut self, session: u32, window: u32, kind: SessionKind) -> SessionPlan {
        let requesters = match self.pending.iter().position(|p| p.kind == kind) {
            Some(i) => self
                .pending
                .remove(i)
                .map(|p| p.requesters)
                .unwrap_or_default(),
            None => BTreeSet::new(),
        };
        let plan = SessionPlan {
            session,
            window,
            kind,
            requesters,
        };
        self.running = Some(plan.clone());
        self.next_session = self.next_session.max(session.wrapping_add(1)).max(1);
        plan
    }

    /// The running session is over. Its requesters may still be reading
    /// it off the bus.
    pub fn finish(&mut self, now: Moment, session: u32) {
        if let Some(r) = self.running.take_if(|r| r.session == session) {
            for node in r.requesters {
                let t = match r.kind {
                    SessionKind::Selected(t) | SessionKind::Unicast { node_type: t, .. } => Some(t),
                    SessionKind::Combined => None,
                };
                if let Some(t) = t {
                    self.lagging.insert(node, (t, now));
                }
            }
        }
    }

    /// The next session number this scheduler would use.
    pub fn next_session(&self) -> u32 {
        self.next_session
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holdoff::{HoldOffSettings, Policy};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn plain(policy: Policy) -> HoldOff {
        HoldOff::simple(policy, 1000, 5000).unwrap()
    }

    /// Drives a scheduler through requests at given offsets and returns
    /// (window, close time from start, requesters) for each closed window.
    async fn closes(hold_off: HoldOff, requests: &[(u64, u16)]) -> Vec<(u32, Duration, Vec<u16>)> {
        let t0 = Moment::ZERO;
        let mut s = Scheduler::new(hold_off, Mode::Selected, true, 1);
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
            let now = at;
            if let Some(SchedEvent::Closed {
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
        let got = closes(plain(Policy::Fixed), &[(0, 1), (800, 2), (1600, 3)]).await;
        assert_eq!(got, vec![(1, ms(1000), vec![1, 2]), (2, ms(2600), vec![3])]);
    }

    #[tokio::test(start_paused = true)]
    async fn renew_restarts_at_each_new_requester() {
        let got = closes(plain(Policy::Renew), &[(0, 1), (800, 2), (1600, 3)]).await;
        assert_eq!(got, vec![(1, ms(2600), vec![1, 2, 3])]);
    }

    #[tokio::test(start_paused = true)]
    async fn shrink_renews_for_less_each_time() {
        // T = 1 s, step 0.3 s, floor 0.2 s: the second request renews for
        // only 0.7 s, so the window closes at 1.5 s and the third opens the next.
        let s = HoldOffSettings {
            policy: Some(Policy::Shrink),
            hold_off_ms: Some(1000),
            max_wait_ms: Some(5000),
            shrink_step_ms: Some(300),
            floor_ms: Some(200),
            ..Default::default()
        };
        let got = closes(
            HoldOff::new(&s, 10).unwrap(),
            &[(0, 1), (800, 2), (1600, 3)],
        )
        .await;
        assert_eq!(got, vec![(1, ms(1500), vec![1, 2]), (2, ms(2600), vec![3])]);
    }

    #[tokio::test(start_paused = true)]
    async fn quorum_closes_when_enough_nodes_asked() {
        let s = HoldOffSettings {
            policy: Some(Policy::Quorum),
            hold_off_ms: Some(1000),
            max_wait_ms: Some(5000),
            min_requests: Some(2),
            ..Default::default()
        };
        let got = closes(HoldOff::new(&s, 3).unwrap(), &[(0, 1), (800, 2), (1600, 3)]).await;
        assert_eq!(got, vec![(1, ms(800), vec![1, 2]), (2, ms(2600), vec![3])]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_do_not_renew() {
        let got = closes(plain(Policy::Renew), &[(0, 1), (600, 1), (900, 1)]).await;
        assert_eq!(got, vec![(1, ms(1000), vec![1])]);
    }

    #[tokio::test(start_paused = true)]
    async fn renew_is_capped_by_max_wait() {
        let reqs: Vec<(u64, u16)> = (0..10).map(|i| (i * 900, i as u16 + 1)).collect();
        let got = closes(plain(Policy::Renew), &reqs).await;
        assert_eq!(got[0].1, ms(5000));
        assert_eq!(got[0].2, vec![1, 2, 3, 4, 5, 6]);
    }

    fn three_types(mode: Mode) -> Vec<SessionPlan> {
        let t0 = Moment::ZERO;
        let mut s = Scheduler::new(plain(Policy::Fixed), mode, true, 1);
        s.on_request(t0, 1, NodeType::Drive);
        s.on_request(t0, 2, NodeType::Xy);
        s.on_request(t0, 3, NodeType::Drive);
        s.on_request(t0, 4, NodeType::Comm);
        s.close_if_due(t0 + ms(1000)).unwrap();
        let mut plans = Vec::new();
        while let Some(p) = s.start_next() {
            s.finish(t0 + ms(1000), p.session);
            plans.push(p);
        }
        plans
    }

    #[test]
    fn each_mode_schedules_its_own_sessions() {
        let kinds = |plans: Vec<SessionPlan>| {
            plans
                .into_iter()
                .map(|p| (p.kind, p.requesters))
                .collect::<Vec<_>>()
        };
        let set = |v: &[u16]| v.iter().copied().collect::<BTreeSet<u16>>();
        assert_eq!(
            kinds(three_types(Mode::Selected)),
            vec![
                (SessionKind::Selected(NodeType::Xy), set(&[2])),
                (SessionKind::Selected(NodeType::Drive), set(&[1, 3])),
                (SessionKind::Selected(NodeType::Comm), set(&[4])),
            ]
        );
        assert_eq!(
            kinds(three_types(Mode::Combined)),
            vec![(SessionKind::Combined, set(&[1, 2, 3, 4]))]
        );
        let unicast = kinds(three_types(Mode::Unicast));
        assert_eq!(unicast.len(), 4);
        assert_eq!(
            unicast[1].0,
            SessionKind::Unicast {
                node_type: NodeType::Drive,
                target: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_absorbed_and_late_nodes_join() {
        let t0 = Moment::ZERO;
        let mut s = Scheduler::new(
            HoldOff::simple(Policy::Fixed, 1000, 1000).unwrap(),
            Mode::Selected,
            true,
            7,
        );
        s.on_request(t0, 1, NodeType::Drive);
        s.on_request(t0, 2, NodeType::Xy);
        assert!(s.close_if_due(t0 + ms(999)).is_none());
        assert!(matches!(
            s.close_if_due(t0 + ms(1000)),
            Some(SchedEvent::Closed { .. })
        ));
        let first = s.start_next().unwrap();
        assert_eq!(
            (first.session, first.kind),
            (7, SessionKind::Selected(NodeType::Xy))
        );
        assert!(s.start_next().is_none(), "one session at a time");
        // A requester of the running session asking again missed its start
        // (or gave it up): it is announced again.
        assert_eq!(
            s.on_request(t0 + ms(1100), 2, NodeType::Xy),
            RequestOutcome::Rejoin { session: 7 }
        );
        assert_eq!(
            s.on_request(t0 + ms(1100), 1, NodeType::Drive),
            RequestOutcome::Absorbed
        );
        // A new drive node joins the scheduled drive session before it starts.
        assert_eq!(
            s.on_request(t0 + ms(1100), 4, NodeType::Drive),
            RequestOutcome::Scheduled
        );
        // A new xy node while xy runs joins it late.
        assert_eq!(
            s.on_request(t0 + ms(1150), 5, NodeType::Xy),
            RequestOutcome::LateJoin { session: 7 }
        );
        assert!(s.deadline().is_none());
        s.finish(t0 + ms(1200), 7);
        let second = s.start_next().unwrap();
        assert_eq!(second.requesters, BTreeSet::from([1, 4]));
        // A new xy node now: next window.
        assert!(matches!(
            s.on_request(t0 + ms(1300), 6, NodeType::Xy),
            RequestOutcome::Opened(SchedEvent::Opened { window: 2, .. })
        ));
        // It then hears a running session and says so: the window is cancelled.
        assert!(matches!(
            s.on_receiving(6),
            Some(SchedEvent::Cancelled { window: 2 })
        ));
        assert!(s.deadline().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn without_late_join_a_late_node_waits_for_the_next_window() {
        let t0 = Moment::ZERO;
        let mut s = Scheduler::new(plain(Policy::Fixed), Mode::Selected, false, 1);
        s.on_request(t0, 1, NodeType::Drive);
        s.close_if_due(t0 + ms(1000));
        s.start_next().unwrap();
        assert!(matches!(
            s.on_request(t0 + ms(1100), 2, NodeType::Drive),
            RequestOutcome::Opened(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_requester_still_reading_its_session_opens_no_window() {
        let t0 = Moment::ZERO;
        let mut s = Scheduler::new(
            HoldOff::simple(Policy::Fixed, 1000, 1000).unwrap(),
            Mode::Selected,
            true,
            1,
        );
        s.on_request(t0, 1, NodeType::Drive);
        s.on_request(t0, 2, NodeType::Drive);
        s.close_if_due(t0 + ms(1000));
        let p = s.start_next().unwrap();
        s.finish(t0 + ms(1200), p.session);
        // Node 1 is behind: its retry predates the session it has not read yet.
        assert_eq!(
            s.on_request(t0 + ms(1500), 1, NodeType::Drive),
            RequestOutcome::Absorbed
        );
        assert!(s.deadline().is_none());
        // Node 2 read the session but refused it: it needs a new window.
        s.on_receiving(2);
        s.on_reject(2);
        assert!(matches!(
            s.on_request(t0 + ms(1600), 2, NodeType::Drive),
            RequestOutcome::Opened(_)
        ));
        // Past the grace, a silent requester is served again.
        assert_eq!(
            s.on_request(t0 + ms(1200) + LAGGING_GRACE, 1, NodeType::Drive),
            RequestOutcome::Added
        );
    }

    #[test]
    fn a_backup_adopts_what_the_primary_started() {
        let t0 = Moment::ZERO;
        let mut s = Scheduler::new(plain(Policy::Fixed), Mode::Selected, true, 1);
        s.on_request(t0, 1, NodeType::Drive);
        s.on_request(t0, 2, NodeType::Xy);
        s.close_if_due(t0 + ms(1000));
        let p = s.adopt(41, 1, SessionKind::Selected(NodeType::Drive));
        assert_eq!(p.requesters, BTreeSet::from([1]));
        assert_eq!(s.next_session(), 42);
        assert!(s.start_next().is_none(), "the adopted session is running");
        s.finish(t0 + ms(1500), 41);
        let next = s.start_next().unwrap();
        assert_eq!(
            (next.session, next.kind),
            (42, SessionKind::Selected(NodeType::Xy))
        );
    }
}
