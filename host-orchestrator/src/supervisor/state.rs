//! The fleet state the supervisor task owns: one tracker per node, the
//! sessions seen on the bus, the images each type may run. Pure: frames,
//! commands and the host's observations of nodes in; snapshots, challenges
//! and the host checks that are due out.

use super::inspect::{self, Observation};
use super::tracker::{Challenge, Context, NodeTracker};
use super::view::{FleetView, HostState, NodeRecord, ObservedSession, Published};
use crate::clock::Moment;
use proto::msg::{self, Message};
use proto::{Frame, NodeType};
use rand::RngCore;
use std::collections::BTreeMap;

/// A host check to make: read node `node`'s RAM and CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCheckDue {
    /// The node.
    pub node: u16,
    /// The boot it is for (handed back with the observation).
    pub boot: u64,
    /// Read at most this many bytes of its image: the largest image its
    /// type may run.
    pub limit: u64,
    /// Read its PC even when its record names no image: the bus says an
    /// app should run (it handed off, or it talks).
    pub pc_anyway: bool,
}

/// Everything the supervisor knows.
pub struct FleetState {
    nodes: BTreeMap<u16, NodeTracker>,
    sessions: Vec<ObservedSession>,
    foreign_frames: u64,
    started: Moment,
    max_rejects: usize,
    /// Every image published for each type, oldest first: a node may run
    /// any of them (one rebooted after a publish runs the newest).
    published: BTreeMap<NodeType, Vec<Published>>,
    announces: BTreeMap<u32, msg::SessionAnnounce>,
}

impl FleetState {
    /// Nodes as given, each expecting the newest image of its type.
    pub fn new(
        records: impl IntoIterator<Item = NodeRecord>,
        published: BTreeMap<NodeType, Vec<Published>>,
        max_rejects: usize,
        started: Moment,
    ) -> FleetState {
        FleetState {
            nodes: records
                .into_iter()
                .map(|r| (r.spec.id, NodeTracker::new(r)))
                .collect(),
            sessions: Vec::new(),
            foreign_frames: 0,
            started,
            max_rejects: max_rejects.max(1),
            published,
            announces: BTreeMap::new(),
        }
    }

    /// The view as of now.
    pub fn snapshot(&self) -> FleetView {
        FleetView {
            nodes: self
                .nodes
                .iter()
                .map(|(id, t)| (*id, t.record().clone()))
                .collect(),
            sessions: self.sessions.clone(),
            foreign_frames: self.foreign_frames,
        }
    }

    /// One node's tracker.
    pub fn node(&mut self, id: u16) -> Option<&mut NodeTracker> {
        self.nodes.get_mut(&id)
    }

    /// Every state each node entered, with when, by id.
    pub fn timelines(&self) -> BTreeMap<u16, Vec<(Moment, HostState)>> {
        self.nodes
            .iter()
            .map(|(id, t)| (*id, t.timeline().to_vec()))
            .collect()
    }

    /// Every node's whole kept log, by id.
    pub fn logs(&self) -> BTreeMap<u16, Vec<String>> {
        self.nodes
            .iter()
            .map(|(id, t)| (*id, t.log().cloned().collect()))
            .collect()
    }

    /// Accepts `image` for type `t`: nodes of that type that boot from now
    /// on must run it.
    pub fn publish(&mut self, t: NodeType, image: Published) {
        for n in self.nodes.values_mut() {
            if n.record().spec.node_type == t {
                n.expect(image.digest);
            }
        }
        self.published.entry(t).or_default().push(image);
    }

    /// When the next host check of a node is due.
    pub fn next_host_check(&self) -> Option<Moment> {
        self.nodes
            .values()
            .filter_map(|t| t.next_host_check())
            .min()
    }

    /// The host checks due at `now`, each marked under way.
    pub fn host_checks_due(&mut self, now: Moment) -> Vec<HostCheckDue> {
        let mut due = Vec::new();
        for (id, t) in &mut self.nodes {
            if let Some(boot) = t.host_check_due(now) {
                let limit = self
                    .published
                    .get(&t.record().spec.node_type)
                    .and_then(|p| p.iter().map(|i| i.payload.len() as u64).max())
                    .unwrap_or(0);
                let pc_anyway = matches!(
                    t.record().state,
                    HostState::Handoff | HostState::Running | HostState::Verified
                );
                due.push(HostCheckDue {
                    node: *id,
                    boot,
                    limit,
                    pc_anyway,
                });
            }
        }
        due
    }

    /// Judges what the host read of node `id` for its boot `boot`, at
    /// `now`; returns whether the view changed.
    pub fn on_observation(&mut self, id: u16, boot: u64, obs: &Observation, now: Moment) -> bool {
        let Some(t) = self.nodes.get_mut(&id) else {
            return false;
        };
        let spec = &t.record().spec;
        let published = self
            .published
            .get(&spec.node_type)
            .map_or(&[][..], Vec::as_slice);
        let finding = inspect::judge(obs, spec.id, spec.node_type, published);
        t.on_host_finding(boot, finding, now)
    }

    /// Handles one frame seen on the bus at `now`; returns whether the
    /// view changed and a challenge to send, if one is due.
    pub fn on_frame(
        &mut self,
        frame: &Frame,
        now: Moment,
        rng: &mut dyn RngCore,
    ) -> (bool, Option<Challenge>) {
        let Ok((src, m)) = Message::decode(frame) else {
            self.foreign_frames += 1;
            return (true, None);
        };
        let at_s = now.saturating_duration_since(self.started).as_secs_f64();
        match m {
            Message::SessionAnnounce(a) => {
                self.announces.insert(a.session, a);
                return (false, None);
            }
            Message::SessionPart(p) => {
                // Announced again for a late requester: still one session.
                let name = NodeType::from_code(p.node_type).map_or("?", |t| t.name());
                let again = self
                    .sessions
                    .iter_mut()
                    .rev()
                    .find(|s| s.session == p.session && s.node_type == name);
                if let Some(s) = again {
                    s.announced += 1;
                    return (true, None);
                }
                self.sessions.push(ObservedSession {
                    session: p.session,
                    window: self.announces.get(&p.session).map_or(0, |a| a.window),
                    node_type: name.to_string(),
                    bytes: p.len,
                    at_s,
                    announced: 1,
                });
                return (true, None);
            }
            _ => {}
        }
        let Some(n) = self.nodes.get_mut(&src) else {
            let foreign = src <= msg::MAX_NODE_ID;
            self.foreign_frames += u64::from(foreign);
            return (foreign, None);
        };
        let t = n.record().spec.node_type;
        let cx = Context {
            now,
            at_s,
            published: self.published.get(&t).map_or(&[], Vec::as_slice),
            max_rejects: self.max_rejects,
        };
        (true, n.on_message(&m, &cx, rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::NodeSpec;
    use crate::supervisor::HostState;
    use proto::msg::{SessionAnnounce, SessionPart, Status};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::Arc;
    use std::time::Duration;

    fn fleet() -> FleetState {
        let spec = |id| NodeSpec {
            id,
            node_type: NodeType::Drive,
            segment: "base".into(),
            min_version: 0,
            power_on_after: Duration::ZERO,
            group: None,
            set: None,
        };
        let image = Published {
            digest: [7; 32],
            version: 1,
            load_addr: board::memory::IMAGE_BASE,
            payload: Arc::new(vec![1, 2, 3]),
        };
        FleetState::new(
            [1, 2].map(|id| NodeRecord::new(spec(id), [7; 32])),
            [(NodeType::Drive, vec![image])].into(),
            3,
            Moment::ZERO,
        )
    }

    fn frame(src: u16, m: Message<'_>) -> Frame {
        m.to_frame(src).unwrap()
    }

    #[test]
    fn sessions_are_observed_from_announce_and_part() {
        let (mut s, mut rng) = (fleet(), StdRng::seed_from_u64(0));
        let now = Moment::ZERO;
        let announce = SessionAnnounce {
            session: 5,
            window: 2,
            mode: msg::MODE_SELECTED,
            parts: 1,
            chunk_size: 56,
            object_len: 4096,
            total_chunks: 74,
            target: msg::BROADCAST,
        };
        let (changed, _) = s.on_frame(
            &frame(msg::MASTER_PRIMARY, Message::SessionAnnounce(announce)),
            now,
            &mut rng,
        );
        assert!(!changed, "an announce alone changes no view");
        let part = SessionPart {
            session: 5,
            index: 0,
            node_type: NodeType::Drive as u8,
            manifest_len: 160,
            offset: 0,
            len: 4096,
            load_addr: 0x8000_0000,
            version: 1,
        };
        let (changed, _) = s.on_frame(
            &frame(msg::MASTER_PRIMARY, Message::SessionPart(part)),
            now,
            &mut rng,
        );
        assert!(changed);
        let v = s.snapshot();
        assert_eq!(v.sessions.len(), 1);
        assert_eq!(
            (
                v.sessions[0].session,
                v.sessions[0].window,
                v.sessions[0].bytes
            ),
            (5, 2, 4096)
        );
        assert_eq!(v.sessions[0].node_type, "drive");
        // Announced again for a requester that missed the start: one session.
        s.on_frame(
            &frame(msg::MASTER_PRIMARY, Message::SessionPart(part)),
            now,
            &mut rng,
        );
        let v = s.snapshot();
        assert_eq!(v.sessions.len(), 1);
        assert_eq!(v.sessions[0].announced, 2);
    }

    #[test]
    fn frames_from_strangers_are_counted_and_node_frames_reach_their_tracker() {
        let (mut s, mut rng) = (fleet(), StdRng::seed_from_u64(0));
        let now = Moment::ZERO;
        let st = Message::Status(Status {
            node_type: NodeType::Drive as u8,
            state: proto::msg::NodeState::Receiving as u8,
            selftest: 0,
            reset_cause: 0,
            session: 0,
            received: 0,
            total: 0,
        });
        assert!(s.on_frame(&frame(2, st), now, &mut rng).0);
        assert!(s.on_frame(&frame(40, st), now, &mut rng).0);
        let garbage = Frame::fd_extended(0x1234, b"not bootcast").unwrap();
        assert!(s.on_frame(&garbage, now, &mut rng).0);
        let v = s.snapshot();
        assert_eq!(v.foreign_frames, 2);
        assert_eq!(v.nodes[&2].state, HostState::Receiving);
        assert_eq!(v.nodes[&1].state, HostState::Off);
        assert_eq!(s.logs()[&2].len(), 1);
        assert!(s.logs()[&1].is_empty());
    }

    #[test]
    fn a_published_image_is_expected_and_accepted() {
        let mut s = fleet();
        let new = Published {
            digest: [9; 32],
            version: 2,
            load_addr: board::memory::IMAGE_BASE,
            payload: Arc::new(vec![4]),
        };
        let before = s.snapshot();
        s.publish(NodeType::Drive, new);
        let after = s.snapshot();
        assert_eq!(
            before.nodes[&1].expected_digest, [7; 32],
            "snapshots stay as taken"
        );
        assert_eq!(after.nodes[&1].expected_digest, [9; 32]);
        assert_eq!(s.published[&NodeType::Drive].len(), 2);
    }

    #[test]
    fn host_checks_come_due_per_node_and_their_observations_are_judged() {
        use crate::supervisor::inspect::{Observation, record_bytes};
        let mut s = fleet();
        let t0 = Moment::ZERO;
        assert_eq!(
            s.next_host_check(),
            None,
            "nodes that are off are never read"
        );
        s.node(1).unwrap().spawned(t0);
        s.node(2).unwrap().spawned(t0 + Duration::from_millis(5));
        let first = t0 + crate::supervisor::tracker::HOST_CHECK_PERIOD;
        assert_eq!(s.next_host_check(), Some(first));
        let due = s.host_checks_due(first);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].node, due[0].limit),
            (1, 3),
            "the largest image of its type"
        );
        // Node 1 runs the build's [1, 2, 3] at the image base.
        let record = board::handoff::Handoff {
            magic: board::handoff::MAGIC,
            version: board::handoff::VERSION,
            node: 1,
            node_type: NodeType::Drive as u8,
            reset_cause: 0,
            boot_count: 1,
            soft_reboot: 0,
            generation: 4,
            version_of_image: 1,
            load_addr: board::memory::IMAGE_BASE,
            size: 3,
            entry: board::memory::IMAGE_BASE,
            digest: [7; 32],
            name: [0; 16],
        };
        // Its boot ROM's handoff of session 4 has reached the bus.
        let handoff = Message::Status(Status {
            node_type: NodeType::Drive as u8,
            state: proto::msg::NodeState::Handoff as u8,
            selftest: 0,
            reset_cause: 0,
            session: 4,
            received: 1,
            total: 1,
        });
        s.on_frame(&frame(1, handoff), first, &mut StdRng::seed_from_u64(0));
        let obs = Observation {
            record: Ok(record_bytes(&record)),
            pc: Some(Ok(board::memory::IMAGE_BASE + 1)),
            image: vec![1, 2, 3],
        };
        assert!(s.on_observation(1, due[0].boot, &obs, first));
        let v = s.snapshot();
        assert_eq!(v.nodes[&1].state, HostState::Verified);
        assert_eq!(v.nodes[&2].state, HostState::Booting);
    }
}
