//! The fleet's virtual time, held by the bridge: conservative
//! synchronisation of the nodes' clocks with the bus, free of I/O.
//!
//! Every node with a clock (a QEMU plugin) is a *member*. A member runs
//! only up to a *grant*, then stops and reports where it is; one about to
//! sleep past its grant reports when it would wake. The *frontier* is the
//! earliest time any member could still put a frame on the bus: a stopped
//! member's time, a sleeping member's wake-up (or an earlier frame handed
//! to it), a running member's time at its last grant. The bus may run up
//! to the frontier: every frame that could start by then is known.
//!
//! A frame that starts at or after the frontier `F` ends no earlier than
//! `F + L`, `L` being the shortest frame on the wire (the *lookahead*);
//! while every wire carries a frame until `W` or later, a new frame
//! starts no earlier than `W` (arbitration waits for the wire), so it ends
//! no earlier than `max(F, W) + L`. The bus's own next event `B` (the end
//! of a frame on the wire, a delayed delivery) is known. So no member
//! receives anything before `min(max(F, W) + L, B)`: that is every
//! member's grant. (While images flow, that is one round per frame, not
//! one per lookahead.) A sleeping member is let
//! sleep when it wakes by then; otherwise it stays where it is, and a
//! frame for it is handed over early, stamped with its delivery time (the
//! node's port holds it until then and wakes at that time).
//!
//! A *timed host client* (a master, the supervisor: a program on the
//! host, with no clock of its own) is a member too. Its clock is the
//! fleet's (no offset), and it is always idle between grants: it sleeps
//! until its next timer, or until something is handed to it (a frame, a
//! freed TX place). Granted up to `G`, it acts on everything due *before*
//! `G`, in time order, and says so; so it is granted only when its next
//! event lies before the round's limit. Nothing can reach it before `G`
//! once it is granted: every frame sent in the round ends after the
//! frontier plus the lookahead, the bus's own events come no earlier
//! than `B`, and the limit is the earlier of the two.
//!
//! Times: [`WallTime`] is the bridge's clock, here the virtual one.
//! Each node's own clock starts at 0 at its power-on; [`NodeTime`] is that
//! clock, and a member's offset maps one onto the other at its first
//! report. The two are distinct types.

use std::collections::BTreeMap;

use proto::clock::{NEVER, Report, Stop};

use crate::clock::{WallTime, earliest};
use crate::ids::PortId;

/// A time on one node's own clock, ns since its power-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NodeTime(pub u64);

/// Where a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Connected; its first report (at its power-on) is still to come.
    Joining,
    /// Running from `from` (it sends nothing stamped earlier) to `until`.
    Running { from: WallTime, until: WallTime },
    /// Stopped at its grant.
    Stopped { at: WallTime },
    /// About to sleep until `wake` (`None`: until a frame comes).
    Idle {
        at: WallTime,
        wake: Option<WallTime>,
    },
}

#[derive(Debug)]
struct Member {
    /// The fleet's time at the node's 0, from its first report.
    offset: Option<WallTime>,
    state: State,
    /// The earliest delivery handed over since it stopped.
    handed: Option<WallTime>,
    /// A timed host client, not a node.
    host: bool,
}

/// Why a report was not taken as it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anomaly {
    /// A report from a port that is no member (no clock connected).
    NotAMember,
    /// A report while the member was not running (the plugin reports only
    /// when stopping, once per grant).
    NotRunning,
    /// A time before what the member had committed to: taken as that.
    Backwards,
}

/// The synchronisation of every member.
#[derive(Debug)]
pub(crate) struct Sync {
    lookahead_ns: u64,
    members: BTreeMap<PortId, Member>,
    frontier: WallTime,
}

impl Sync {
    /// No members yet, at time zero; `lookahead_ns`: the shortest frame.
    pub fn new(lookahead_ns: u64) -> Sync {
        Sync {
            lookahead_ns: lookahead_ns.max(1),
            members: BTreeMap::new(),
            frontier: WallTime::ZERO,
        }
    }

    /// `port`'s clock connected (at its power-on, or expected from the
    /// start): it holds the frontier until its first report.
    pub fn join(&mut self, port: PortId) {
        self.members.insert(
            port,
            Member {
                offset: None,
                state: State::Joining,
                handed: None,
                host: false,
            },
        );
    }

    /// A timed host client connected to `port`: it starts at the frontier,
    /// running until it says where its first timer is. Returns its first
    /// grant (the frontier: it has nothing to do before it).
    pub fn join_host(&mut self, port: PortId) -> WallTime {
        let at = self.frontier;
        self.members.insert(
            port,
            Member {
                offset: Some(WallTime::ZERO),
                state: State::Running {
                    from: at,
                    until: at,
                },
                // Its FIFO places, handed to it at the frontier.
                handed: Some(at),
                host: true,
            },
        );
        at
    }

    /// The timed host client at `port` has done everything due before `at`
    /// and sleeps until `wake` (or until something is handed to it): that
    /// ends its grant if `at` reaches the grant's end. Also taken while it
    /// already sleeps, or before it has read its grant: its next timer
    /// changed (something outside the bus woke it, e.g. the testbed); the
    /// grant's own answer follows.
    pub fn host_idle(
        &mut self,
        port: PortId,
        at: WallTime,
        wake: Option<WallTime>,
    ) -> Result<(), Anomaly> {
        let m = self.members.get_mut(&port).ok_or(Anomaly::NotAMember)?;
        if !m.host {
            return Err(Anomaly::NotAMember);
        }
        m.state = match m.state {
            State::Running { from, until } if at >= until => State::Idle {
                at: at.max(from),
                wake,
            },
            // Sent before it read its grant (woken from outside): the
            // grant is still to be done, and will say where it ends.
            State::Running { .. } => return Ok(()),
            State::Idle { at, .. } => State::Idle { at, wake },
            State::Joining | State::Stopped { .. } => return Err(Anomaly::NotRunning),
        };
        Ok(())
    }

    /// Lands a reset asked for `port` at `asked`, if it is due: the node
    /// has stopped at `asked` or later, or it sleeps and the frontier has
    /// reached `asked` (the bus holds there while a reset is pending, so
    /// no grant passes it). A sleeping node's clock is mapped on so that
    /// where it is now is `asked` (its QEMU's clock cannot be moved).
    /// Either way it is then stopped there, to be granted as usual; returns
    /// that time, or `None` if the reset is not due (or no member).
    pub fn reset(&mut self, port: PortId, asked: WallTime) -> Option<WallTime> {
        let frontier = self.frontier;
        let m = self.members.get_mut(&port)?;
        let at = match m.state {
            State::Stopped { at } if at >= asked => at,
            State::Idle { at, .. } if frontier >= asked => at,
            _ => return None,
        };
        if at < asked {
            let offset = m.offset?;
            m.offset = Some(offset.saturating_add(asked.saturating_since(at)));
        }
        let at = at.max(asked);
        m.state = State::Stopped { at };
        m.handed = None;
        Some(at)
    }

    /// Whether the fleet has reached `t` and stays there: the frontier is
    /// at `t` or later and no member runs or is still to report (so every
    /// one is stopped at `t` or later, or asleep until then).
    pub fn reached(&self, t: WallTime) -> bool {
        self.frontier >= t
            && self
                .members
                .values()
                .all(|m| !matches!(m.state, State::Running { .. } | State::Joining))
    }

    /// Asks every sleeping timed host client to report once more before
    /// time passes the frontier (a held time is let go): one woken from
    /// outside the bus may have sent a frame that is still on its way, and
    /// its answer to the grant comes after that frame on its socket. So
    /// the frame is taken at the frontier, however late the host reads it.
    pub fn call_hosts(&mut self) {
        let at = Some(self.frontier);
        for m in self.members.values_mut().filter(|m| m.host) {
            if matches!(m.state, State::Idle { .. }) {
                m.handed = earliest(m.handed, at);
            }
        }
    }

    /// `port`'s clock is gone (its QEMU ended).
    pub fn leave(&mut self, port: PortId) {
        self.members.remove(&port);
    }

    pub fn is_member(&self, port: PortId) -> bool {
        self.members.contains_key(&port)
    }

    /// Whether `port` is a node with a clock (not a timed host client).
    pub fn is_node(&self, port: PortId) -> bool {
        self.members.get(&port).is_some_and(|m| !m.host)
    }

    /// Whether `port` is a timed host client.
    pub fn is_host(&self, port: PortId) -> bool {
        self.members.get(&port).is_some_and(|m| m.host)
    }

    /// The member stopped as `r` says; returns where, on the fleet's clock
    /// (`Err` for a report that could not be taken; `Backwards` is taken
    /// as at the committed time, which is returned with it).
    pub fn report(
        &mut self,
        port: PortId,
        r: Report,
    ) -> Result<WallTime, (Anomaly, Option<WallTime>)> {
        let frontier = self.frontier;
        let m = self
            .members
            .get_mut(&port)
            .ok_or((Anomaly::NotAMember, None))?;
        let offset = *m
            .offset
            .get_or_insert(WallTime::from_ns(frontier.as_ns().saturating_sub(r.at)));
        let committed = match m.state {
            State::Joining => offset,
            State::Running { from, .. } => from,
            State::Stopped { .. } | State::Idle { .. } => return Err((Anomaly::NotRunning, None)),
        };
        let at = offset.saturating_add(r.at);
        let (at, result) = if at < committed {
            (committed, Err((Anomaly::Backwards, Some(committed))))
        } else {
            (at, Ok(at))
        };
        m.handed = None;
        m.state = match r.stop {
            Stop::Barrier => State::Stopped { at },
            Stop::Idle => State::Idle {
                at,
                wake: (r.wake != NEVER).then(|| offset.saturating_add(r.wake).max(at)),
            },
        };
        result
    }

    /// When a frame a member handed its device before the report at `at`
    /// is ready on the bus: 1 ns later. The nanosecond means that a member
    /// stopped at `t` can make nothing ready at `t`, so the bus may decide
    /// everything at the frontier itself, ties included.
    pub fn ready_after(at: WallTime) -> WallTime {
        at.saturating_add(1)
    }

    /// When a frame from a client without a clock (a host program) is
    /// ready: at the frontier.
    pub fn now(&self) -> WallTime {
        self.frontier
    }

    /// A delivery for `port` at `at` was handed over while it stopped.
    pub fn handed(&mut self, port: PortId, at: WallTime) {
        if let Some(m) = self.members.get_mut(&port) {
            m.handed = earliest(m.handed, Some(at));
        }
    }

    /// The earliest time a member could still send (see the module
    /// documentation), no later than `ceiling`; where nothing bounds it,
    /// it stays. Never earlier than before.
    pub fn frontier(&mut self, ceiling: Option<WallTime>) -> WallTime {
        let bound = self
            .members
            .values()
            .map(|m| match m.state {
                State::Joining => Some(self.frontier),
                State::Running { from, .. } => Some(from),
                State::Stopped { at } => Some(at),
                State::Idle { wake, .. } => earliest(wake, m.handed),
            })
            .fold(None, earliest);
        if let Some(f) = earliest(bound, ceiling) {
            self.frontier = self.frontier.max(f);
        }
        self.frontier
    }

    /// Grants for stopped members, as their own clocks read them, given
    /// the bus's next event `bus_next`, when every wire is free again
    /// (`wires_busy`, `None` if one is free now) and a `ceiling` no grant
    /// may pass (the wall clock while host clients pace the fleet).
    ///
    /// None while a member still runs: grants come in rounds, each once
    /// every member has stopped, so that where a member stops next (and so
    /// where it is handed frames) follows from the fleet's state alone,
    /// never from the order in which the host let members report.
    pub fn grants(
        &mut self,
        bus_next: Option<WallTime>,
        wires_busy: Option<WallTime>,
        ceiling: Option<WallTime>,
    ) -> Vec<(PortId, NodeTime)> {
        if self
            .members
            .values()
            .any(|m| matches!(m.state, State::Running { .. }))
        {
            return Vec::new();
        }
        let frontier = self.frontier;
        let start = wires_busy.map_or(frontier, |w| w.max(frontier));
        let limit = earliest(
            Some(start.saturating_add(self.lookahead_ns)),
            earliest(bus_next, ceiling),
        )
        .unwrap_or(frontier);
        let mut out = Vec::new();
        for (&port, m) in &mut self.members {
            let Some(offset) = m.offset else { continue };
            let from = match m.state {
                // A host acts on what is due before its grant: only then.
                State::Idle { .. } if m.host => match Self::idle_next(m) {
                    Some(next) if next < limit => next,
                    _ => continue,
                },
                State::Stopped { at } if limit > at => at,
                State::Idle { wake, .. } if wake.is_some_and(|w| w <= limit) => {
                    earliest(wake, m.handed).unwrap_or(limit)
                }
                State::Idle { at, wake } if m.handed.is_some() && limit > at => {
                    earliest(wake, m.handed).unwrap_or(limit)
                }
                _ => continue,
            };
            m.state = State::Running { from, until: limit };
            m.handed = None;
            out.push((port, NodeTime(limit.saturating_since(offset))));
        }
        out
    }

    /// When a sleeping member next acts: its timer or a delivery.
    fn idle_next(m: &Member) -> Option<WallTime> {
        match m.state {
            State::Idle { wake, .. } => earliest(wake, m.handed),
            _ => None,
        }
    }

    /// `port`'s time 0 on the fleet's clock, once it has reported.
    pub fn offset(&self, port: PortId) -> Option<WallTime> {
        self.members.get(&port).and_then(|m| m.offset)
    }

    /// Whether any member waits for a grant.
    pub fn any_stopped(&self) -> bool {
        self.members
            .values()
            .any(|m| matches!(m.state, State::Stopped { .. } | State::Idle { .. }))
    }

    /// Whether `port` is stopped (a frame for it may be handed over now).
    pub fn is_stopped(&self, port: PortId) -> bool {
        self.members
            .get(&port)
            .is_some_and(|m| matches!(m.state, State::Stopped { .. } | State::Idle { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: u64 = 30_000;

    fn t(ns: u64) -> WallTime {
        WallTime::from_ns(ns)
    }

    fn barrier(at: u64) -> Report {
        Report {
            stop: Stop::Barrier,
            at,
            wake: NEVER,
        }
    }

    fn idle(at: u64, wake: u64) -> Report {
        Report {
            stop: Stop::Idle,
            at,
            wake,
        }
    }

    /// Two members at power-on, both reported at their 0.
    fn two() -> Sync {
        let mut s = Sync::new(L);
        s.join(PortId(0));
        s.join(PortId(1));
        assert_eq!(s.frontier(None), t(0));
        s.report(PortId(0), barrier(0)).unwrap();
        s.report(PortId(1), barrier(0)).unwrap();
        s
    }

    #[test]
    fn busy_members_advance_one_lookahead_at_a_time() {
        let mut s = two();
        assert_eq!(s.frontier(None), t(0));
        let g = s.grants(None, None, None);
        assert_eq!(g, [(PortId(0), NodeTime(L)), (PortId(1), NodeTime(L))]);
        // One reports (with a block's overshoot); the other still runs.
        s.report(PortId(0), barrier(L + 7)).unwrap();
        assert_eq!(s.frontier(None), t(0));
        assert_eq!(
            s.grants(None, None, None),
            [],
            "nothing new before the slow one"
        );
        s.report(PortId(1), barrier(L)).unwrap();
        assert_eq!(s.frontier(None), t(L));
        assert_eq!(
            s.grants(None, None, None),
            [(PortId(0), NodeTime(2 * L)), (PortId(1), NodeTime(2 * L))]
        );
    }

    #[test]
    fn the_bus_next_event_and_the_ceiling_cap_the_grant() {
        let mut s = two();
        s.frontier(None);
        let g = s.grants(Some(t(1_000)), None, None);
        assert_eq!(g[0].1, NodeTime(1_000), "a frame ends at 1000");
        let mut s = two();
        s.frontier(None);
        assert_eq!(s.grants(None, None, Some(t(500)))[1].1, NodeTime(500));
        let mut s = two();
        s.frontier(None);
        assert_eq!(
            s.grants(None, None, Some(t(0))),
            [],
            "the wall clock holds them"
        );
    }

    #[test]
    fn while_every_wire_is_busy_the_grant_reaches_the_frame_end() {
        // A frame on the wire until 10 L: nothing new starts before it ends.
        let mut s = two();
        s.frontier(None);
        let g = s.grants(Some(t(10 * L)), Some(t(10 * L)), None);
        assert_eq!(g[0].1, NodeTime(10 * L), "one round to the frame's end");
        // A free wire: only the lookahead.
        let mut s = two();
        s.frontier(None);
        let g = s.grants(Some(t(10 * L)), None, None);
        assert_eq!(g[0].1, NodeTime(L));
        // A wire free before the frontier changes nothing.
        let mut s = two();
        s.frontier(None);
        let g = s.grants(None, Some(t(0)), None);
        assert_eq!(g[1].1, NodeTime(L));
    }

    #[test]
    fn sleepers_skip_to_the_earliest_wake_up() {
        let mut s = two();
        s.frontier(None);
        s.grants(None, None, None);
        s.report(PortId(0), idle(100, 5_000_000)).unwrap();
        s.report(PortId(1), idle(200, 9_000_000)).unwrap();
        // Nothing can happen before the first wakes: time jumps there.
        assert_eq!(s.frontier(None), t(5_000_000));
        let g = s.grants(None, None, None);
        assert_eq!(g, [(PortId(0), NodeTime(5_000_000 + L))]);
        // The other sleeps on; it is let sleep once the grant covers it.
        s.report(PortId(0), idle(5_000_100, 9_500_000)).unwrap();
        assert_eq!(s.frontier(None), t(9_000_000));
        assert_eq!(
            s.grants(None, None, None),
            [(PortId(1), NodeTime(9_000_000 + L))]
        );
    }

    #[test]
    fn a_frame_for_a_sleeper_is_handed_over_and_holds_the_frontier() {
        let mut s = two();
        s.frontier(None);
        s.grants(None, None, None);
        s.report(PortId(0), idle(100, NEVER)).unwrap();
        s.report(PortId(1), barrier(L)).unwrap();
        assert_eq!(s.frontier(None), t(L));
        // Port 1 runs on; a frame it sent ends at 50_000 on the bus.
        s.grants(Some(t(50_000)), None, None);
        s.report(PortId(1), barrier(50_000)).unwrap();
        assert_eq!(s.frontier(None), t(50_000));
        s.handed(PortId(0), t(50_000));
        assert!(s.is_stopped(PortId(0)));
        assert_eq!(s.frontier(None), t(50_000));
        let g = s.grants(None, None, None);
        assert_eq!(
            g,
            [
                (PortId(0), NodeTime(50_000 + L)),
                (PortId(1), NodeTime(50_000 + L))
            ]
        );
        // It runs from its old place, but sends nothing before the frame.
        assert_eq!(
            s.report(PortId(0), barrier(120)),
            Err((Anomaly::Backwards, Some(t(50_000))))
        );
    }

    #[test]
    fn a_node_powered_on_later_starts_at_the_frontier() {
        let mut s = two();
        s.frontier(None);
        s.grants(None, None, None);
        s.report(PortId(0), barrier(L)).unwrap();
        s.report(PortId(1), barrier(L)).unwrap();
        assert_eq!(s.frontier(None), t(L));
        s.join(PortId(2));
        assert_eq!(s.grants(None, None, None).len(), 2);
        assert_eq!(s.frontier(None), t(L), "the newcomer holds the frontier");
        s.report(PortId(2), barrier(0)).unwrap();
        assert_eq!(
            s.grants(None, None, None),
            [],
            "a round ends when all have stopped"
        );
        s.report(PortId(0), barrier(2 * L)).unwrap();
        s.report(PortId(1), barrier(2 * L)).unwrap();
        assert_eq!(s.frontier(None), t(L));
        assert_eq!(s.grants(None, None, None), [(PortId(2), NodeTime(L))]);
        assert_eq!(s.report(PortId(2), barrier(10)), Ok(t(L + 10)));
        s.leave(PortId(2));
        assert!(!s.is_member(PortId(2)));
    }

    #[test]
    fn a_reset_lands_at_the_first_stop_from_its_time_on() {
        let mut s = two();
        s.frontier(None);
        s.grants(None, None, None);
        assert_eq!(s.reset(PortId(0), t(0)), None, "running: not yet");
        s.report(PortId(0), barrier(L)).unwrap();
        s.report(PortId(1), idle(100, 9 * L)).unwrap();
        assert_eq!(s.frontier(Some(t(2 * L))), t(L));
        assert_eq!(s.reset(PortId(0), t(2 * L)), None, "stopped before it");
        // Stopped at L, asked at L: it lands there.
        assert_eq!(s.reset(PortId(0), t(L)), Some(t(L)));
        assert_eq!(s.offset(PortId(0)), Some(t(0)));
        // Asleep since 100 ns, the frontier at L: its clock is mapped on
        // to L, and it is no longer asleep.
        assert_eq!(
            s.reset(PortId(1), t(2 * L)),
            None,
            "the frontier is short of it"
        );
        assert_eq!(s.reset(PortId(1), t(L)), Some(t(L)));
        assert_eq!(s.offset(PortId(1)), Some(t(L - 100)));
        assert!(s.is_stopped(PortId(1)));
        assert_eq!(
            s.grants(None, None, None),
            [(PortId(0), NodeTime(2 * L)), (PortId(1), NodeTime(L + 100))]
        );
        assert_eq!(s.report(PortId(1), barrier(L + 100)), Ok(t(2 * L)));
        assert_eq!(s.reset(PortId(9), t(0)), None, "no member");
    }

    #[test]
    fn the_fleet_reaches_a_time_once_all_have_stopped_there() {
        let mut s = two();
        assert!(s.reached(t(0)), "both stopped at 0");
        assert!(!s.reached(t(L)));
        s.frontier(Some(t(L)));
        s.grants(None, None, Some(t(L)));
        assert!(!s.reached(t(0)), "they run");
        s.report(PortId(0), barrier(L)).unwrap();
        s.report(PortId(1), idle(10, 5 * L)).unwrap();
        assert_eq!(s.frontier(Some(t(L))), t(L));
        assert!(s.reached(t(L)));
        s.join(PortId(2));
        assert!(!s.reached(t(L)), "a node still to report");
    }

    #[test]
    fn odd_reports_are_named_and_never_move_time_back() {
        let mut s = two();
        assert_eq!(
            s.report(PortId(9), barrier(0)),
            Err((Anomaly::NotAMember, None))
        );
        assert_eq!(
            s.report(PortId(0), barrier(5)),
            Err((Anomaly::NotRunning, None))
        );
        s.frontier(None);
        s.grants(None, None, None);
        s.report(PortId(0), idle(100, NEVER)).unwrap();
        s.report(PortId(1), barrier(L)).unwrap();
        s.frontier(None);
        s.handed(PortId(0), t(L));
        s.grants(None, None, None);
        // Woken by a frame due at L, it reports from before it.
        assert_eq!(
            s.report(PortId(0), barrier(200)),
            Err((Anomaly::Backwards, Some(t(L))))
        );
        s.report(PortId(1), barrier(2 * L)).unwrap();
        assert_eq!(s.frontier(None), t(L), "taken as at L");
        assert_eq!(s.now(), t(L), "a host client sends at the frontier");
        assert_eq!(Sync::ready_after(t(L)), t(L + 1));
    }

    #[test]
    fn a_host_client_holds_time_while_it_acts_and_is_granted_before_its_timer() {
        let mut s = two();
        s.frontier(None);
        s.grants(None, None, None);
        s.report(PortId(0), barrier(L)).unwrap();
        s.report(PortId(1), barrier(L)).unwrap();
        assert_eq!(s.frontier(None), t(L));
        // The master connects: it starts at the frontier and holds it.
        assert_eq!(s.join_host(PortId(5)), t(L));
        assert_eq!(s.grants(None, None, None), [], "a round waits for the host");
        // Woken from outside before it read its grant: still running.
        s.host_idle(PortId(5), t(0), Some(t(4 * L))).unwrap();
        assert_eq!(s.grants(None, None, None), []);
        s.host_idle(PortId(5), t(L), Some(t(4 * L))).unwrap();
        assert_eq!(s.frontier(None), t(L));
        // Its FIFO places were handed to it at L: granted with the nodes.
        assert_eq!(s.grants(None, None, None).len(), 3);
        s.host_idle(PortId(5), t(2 * L), Some(t(4 * L))).unwrap();
        s.report(PortId(0), barrier(2 * L)).unwrap();
        s.report(PortId(1), barrier(2 * L)).unwrap();
        // Its first timer is at 4L: the nodes go on, the host sleeps.
        s.frontier(None);
        assert_eq!(s.grants(None, None, None).len(), 2);
        s.report(PortId(0), idle(2 * L, NEVER)).unwrap();
        s.report(PortId(1), idle(2 * L, NEVER)).unwrap();
        // Only the host's timer bounds time: it jumps there. A limit that
        // ends at the timer does not grant it (it acts only before).
        assert_eq!(s.frontier(None), t(4 * L));
        assert_eq!(s.grants(Some(t(4 * L)), None, None), []);
        assert_eq!(s.grants(None, None, None), [(PortId(5), NodeTime(5 * L))]);
        assert_eq!(s.frontier(None), t(4 * L), "it holds the frontier");
        // It sent something at its timer: a frame for the nodes, ending
        // at 4L + 40_000; it has no timer left.
        s.host_idle(PortId(5), t(5 * L), None).unwrap();
        assert_eq!(s.frontier(Some(t(4 * L + 40_000))), t(4 * L + 40_000));
        s.handed(PortId(0), t(4 * L + 40_000));
        s.handed(PortId(5), t(4 * L + 40_000));
        let g = s.grants(None, None, None);
        assert_eq!(
            g.len(),
            2,
            "the node woken by the frame and the host: {g:?}"
        );
    }

    #[test]
    fn a_host_may_move_its_timer_while_it_sleeps_and_strangers_are_named() {
        let mut s = Sync::new(L);
        assert_eq!(s.join_host(PortId(3)), t(0));
        assert_eq!(s.host_idle(PortId(4), t(0), None), Err(Anomaly::NotAMember));
        s.host_idle(PortId(3), t(0), None).unwrap();
        assert_eq!(s.frontier(None), t(0));
        assert_eq!(
            s.grants(None, None, None),
            [(PortId(3), NodeTime(L))],
            "its places"
        );
        s.host_idle(PortId(3), t(L), None).unwrap();
        assert_eq!(s.frontier(None), t(0), "nothing bounds it: it stays");
        assert_eq!(s.grants(None, None, None), []);
        // Woken from outside the bus, it set a timer.
        s.host_idle(PortId(3), t(L), Some(t(3 * L))).unwrap();
        assert_eq!(s.frontier(None), t(3 * L));
        assert_eq!(s.grants(None, None, None), [(PortId(3), NodeTime(4 * L))]);
        s.join(PortId(0));
        assert_eq!(
            s.host_idle(PortId(0), t(0), None),
            Err(Anomaly::NotAMember),
            "a node reports over its clock socket"
        );
    }

    #[test]
    fn hosts_called_before_time_moves_on_hold_the_frontier_until_they_answer() {
        let mut s = Sync::new(L);
        s.join_host(PortId(3));
        s.host_idle(PortId(3), t(0), None).unwrap();
        s.frontier(None);
        assert_eq!(s.grants(None, None, None), [(PortId(3), NodeTime(L))]);
        s.host_idle(PortId(3), t(L), Some(t(10 * L))).unwrap();
        assert_eq!(s.frontier(Some(t(2 * L))), t(2 * L), "held there");
        assert_eq!(s.grants(None, None, None), [], "nothing due");
        s.call_hosts();
        assert_eq!(
            s.frontier(None),
            t(2 * L),
            "held at the frontier for the host"
        );
        assert_eq!(s.grants(None, None, None), [(PortId(3), NodeTime(3 * L))]);
        assert_eq!(s.frontier(None), t(2 * L), "still, while it runs");
        s.host_idle(PortId(3), t(3 * L), Some(t(10 * L))).unwrap();
        assert_eq!(s.frontier(None), t(10 * L), "answered: on to its timer");
    }

    #[test]
    fn where_nothing_bounds_it_the_frontier_follows_the_ceiling_or_stays() {
        let mut s = Sync::new(L);
        assert_eq!(s.frontier(None), t(0));
        assert_eq!(s.frontier(Some(t(70))), t(70));
        s.join(PortId(0));
        s.report(PortId(0), idle(0, NEVER)).unwrap();
        assert_eq!(s.frontier(None), t(70), "a sleeper without timer");
        assert_eq!(s.frontier(Some(t(90))), t(90));
        assert_eq!(s.frontier(Some(t(80))), t(90), "never back");
    }
}
