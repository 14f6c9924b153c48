//! One node as the supervisor follows it: a pure state machine fed the
//! node's messages, the testbed's commands and the findings of the host's
//! own checks of the node. It never does I/O; what it wants sent comes back
//! as a [`Challenge`], and when it wants the node checked, as the time of
//! its next host check.

use super::inspect::{Finding, Running};
use super::view::{HostState, LOG_TAIL_LINES, NodeRecord, Published, Rejection, VerifiedBy};
use crate::clock::Moment;
use images::build::hex;
use proto::NodeType;
use proto::msg::{self, ResetCause, Status};
use proto::msg::{Check, CheckReply, Heartbeat, Message, NodeState, Reject, RejectReason};
use rand::RngCore;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Lines of each node's log kept in memory.
pub const NODE_LOG_LINES: usize = 400;
/// A challenge unanswered for this long is sent again.
pub const CHECK_RETRY: Duration = Duration::from_secs(2);
/// Challenges kept open per node; answers to any of them count.
pub const MAX_OPEN_CHECKS: usize = 8;

/// The host checks a node this long after its boot ROM says it hands off
/// (the boot ROM fills its record in, flushes its port and jumps: all done
/// well within it).
pub const HOST_CHECK_FIRST: Duration = Duration::from_millis(20);
/// A host check that found nothing to judge yet is repeated after this
/// long, then twice as long each time, up to [`HOST_CHECK_PERIOD`].
pub const HOST_CHECK_RETRY: Duration = Duration::from_millis(50);
/// The same after the first look that follows a handoff: a node the host
/// looked at just before its boot ROM jumped (on a loaded host, 2 to 4 of
/// 40 at once) is verified one short retry later. Only there: a fleet of
/// nodes still in their boot ROMs would be read five times as often.
pub const HOST_CHECK_FIRST_RETRY: Duration = Duration::from_millis(10);
/// Every powered node is checked at least this often: one whose status
/// frames were lost is still found running, and a verified one's bytes must
/// stay the build's.
pub const HOST_CHECK_PERIOD: Duration = Duration::from_secs(2);
/// A wrong finding is checked again after this long, and fails the node
/// only if the check finds it wrong again (a reboot while the RAM was read
/// can make one read inconsistent; it cannot make two).
pub const HOST_CHECK_CONFIRM: Duration = Duration::from_millis(100);
/// A host check whose observation has not come back after this long is
/// due again.
pub const HOST_CHECK_LOST: Duration = Duration::from_secs(5);
/// A host check that finds a node running a built image verifies it once
/// the bus has shown the boot ROM's handoff of that image (or a heartbeat
/// of it): the boot ROM's messages before it then all arrived, and none
/// arriving late moves the node back. Reading RAM is faster than a bus
/// that is busy with images. A node whose handoff message was lost is
/// verified when the host check has found it running that image for this
/// long.
pub const HOST_CHECK_GRACE: Duration = Duration::from_secs(4);

/// When the host next checks a node itself, and what it found.
#[derive(Debug)]
struct HostCheck {
    /// `None`: not while it is off or failed.
    next: Option<Moment>,
    /// The wait after the next finding of nothing to judge.
    retry: Duration,
    /// A wrong finding waiting to be confirmed.
    suspect: Option<String>,
}

impl HostCheck {
    fn off() -> HostCheck {
        HostCheck {
            next: None,
            retry: HOST_CHECK_RETRY,
            suspect: None,
        }
    }

    fn at(next: Moment) -> HostCheck {
        HostCheck {
            next: Some(next),
            ..HostCheck::off()
        }
    }
}

/// A challenge to send to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The node.
    pub target: u16,
    /// The fresh nonce.
    pub nonce: u32,
}

impl Challenge {
    /// The `Check` message.
    pub fn message(self) -> Message<'static> {
        Message::Check(Check {
            target: self.target,
            nonce: self.nonce,
        })
    }
}

/// What a message is judged against.
pub struct Context<'a> {
    /// Now.
    pub now: Moment,
    /// Seconds since the testbed started (for logs and rejections).
    pub at_s: f64,
    /// Every image accepted for the node's type, oldest first.
    pub published: &'a [Published],
    /// Rejections after which a node counts as failed.
    pub max_rejects: usize,
}

/// Challenges sent for one generation.
struct OpenChecks {
    nonces: Vec<u32>,
    generation: u32,
    sent_at: Moment,
}

/// One node, followed from power-on to verified.
pub struct NodeTracker {
    record: Arc<NodeRecord>,
    log: VecDeque<String>,
    /// Every state it entered, with when.
    timeline: Vec<(Moment, HostState)>,
    /// Images it refused for what they are (not for chunks missing) since
    /// it last booted.
    refused_since_boot: usize,
    checks: Option<OpenChecks>,
    verified_generation: Option<u32>,
    /// The host's own checks of the node.
    host: HostCheck,
    /// Boots the host has seen (spawns, reboots, power cuts): a host
    /// check's observation counts only for the boot it was made in.
    boots: u64,
    /// The generation whose handoff the bus has shown (the boot ROM's
    /// `Status(Handoff)`, or a heartbeat).
    handed_off: Option<u32>,
    /// Since when the host check has found it running a generation.
    host_runs_since: Option<(u32, Moment)>,
    /// The host's first look after a handoff is pending: a heartbeat waits
    /// for it rather than draw a challenge (see `on_heartbeat`).
    first_look_due: bool,
}

impl NodeTracker {
    /// A node that is off.
    pub fn new(record: NodeRecord) -> NodeTracker {
        NodeTracker {
            record: Arc::new(record),
            log: VecDeque::new(),
            timeline: Vec::new(),
            refused_since_boot: 0,
            checks: None,
            verified_generation: None,
            host: HostCheck::off(),
            boots: 0,
            handed_off: None,
            host_runs_since: None,
            first_look_due: false,
        }
    }

    /// The record as of now (shared with snapshots until it changes).
    pub fn record(&self) -> &Arc<NodeRecord> {
        &self.record
    }

    /// Every state it entered, with when, oldest first.
    pub fn timeline(&self) -> &[(Moment, HostState)] {
        &self.timeline
    }

    /// Everything the node said that is still kept, oldest first.
    pub fn log(&self) -> impl Iterator<Item = &String> {
        self.log.iter()
    }

    fn rec(&mut self) -> &mut NodeRecord {
        Arc::make_mut(&mut self.record)
    }

    fn id(&self) -> u16 {
        self.record.spec.id
    }

    /// Enters `state` at `now`, and keeps it in the timeline if it is new.
    fn enter(&mut self, state: HostState, now: Moment) {
        if self.record.state != state {
            self.timeline.push((now, state));
            self.rec().state = state;
        }
    }

    fn set_state(&mut self, state: HostState, now: Moment) {
        if self.record.state == state || self.record.state == HostState::Failed {
            return;
        }
        info!(
            node = self.id(),
            node_type = self.record.spec.node_type.name(),
            state = state.as_str(),
            "node"
        );
        self.enter(state, now);
    }

    /// Fails the node for good at `now`, unless it already failed.
    pub fn fail(&mut self, why: String, now: Moment) {
        if self.record.state == HostState::Failed {
            return;
        }
        warn!(node = self.id(), node_type = self.record.spec.node_type.name(), reason = %why, "node FAILED");
        self.enter(HostState::Failed, now);
        self.rec().failure = Some(why);
        self.host.next = None;
    }

    fn forget_checks(&mut self) {
        self.checks = None;
        self.verified_generation = None;
        self.handed_off = None;
        self.host_runs_since = None;
        self.first_look_due = false;
    }

    /// The host (re)booted it at `now`: what it refused before no longer
    /// counts, and the host checks it again from the next period on.
    fn new_boot(&mut self, now: Moment) {
        self.forget_checks();
        self.refused_since_boot = 0;
        self.boots += 1;
        self.host = if self.record.state == HostState::Failed {
            HostCheck::off()
        } else {
            HostCheck::at(now + HOST_CHECK_PERIOD)
        };
    }

    /// Its QEMU process (re)started at `now`.
    pub fn spawned(&mut self, now: Moment) {
        self.rec().spawned_at = Some(now);
        if self.record.state != HostState::Failed {
            self.enter(HostState::Booting, now);
        }
        self.new_boot(now);
    }

    /// It was told to reboot at `now`: not running until it says otherwise.
    pub fn rebooting(&mut self, now: Moment) {
        if self.record.state == HostState::Failed {
            return;
        }
        self.enter(HostState::Booting, now);
        self.new_boot(now);
    }

    /// Its power was cut at `now`.
    pub fn off(&mut self, now: Moment) {
        self.enter(HostState::Off, now);
        self.rec().verified_at = None;
        self.new_boot(now);
        self.host = HostCheck::off();
    }

    /// When the host should next check the node itself; `None` while it is
    /// off or failed.
    pub fn next_host_check(&self) -> Option<Moment> {
        self.host.next
    }

    /// If a host check is due at `now`: marks it under way and returns the
    /// boot it is for (its observation is handed back with it, to
    /// [`NodeTracker::on_host_finding`]).
    pub fn host_check_due(&mut self, now: Moment) -> Option<u64> {
        if self.host.next? > now {
            return None;
        }
        // Due again if its observation never comes back.
        self.host.next = Some(now + HOST_CHECK_LOST);
        Some(self.boots)
    }

    /// What the host's check of boot `boot` found at `now`; a finding for
    /// an earlier boot is dropped. Returns whether the record changed.
    pub fn on_host_finding(&mut self, boot: u64, finding: Finding, now: Moment) -> bool {
        if boot != self.boots || self.record.state == HostState::Failed {
            return false;
        }
        self.first_look_due = false;
        let before = (self.record.state, self.record.host_check.clone());
        let finding = match finding {
            Finding::Runs(r) if !self.bus_caught_up(&r, now) => Finding::NotYet(format!(
                "it runs the build's image (generation {}), but its boot ROM's handoff has not reached the bus yet",
                r.generation
            )),
            other => other,
        };
        let note = match finding {
            Finding::Runs(r) => {
                self.host = HostCheck::at(now + HOST_CHECK_PERIOD);
                let note = format!(
                    "ok: its image in RAM is the build's (generation {}) and its CPU runs in it",
                    r.generation
                );
                self.host_verified(&r, now);
                note
            }
            Finding::NotYet(why) => {
                let retry = self.host.retry;
                self.host = HostCheck {
                    next: Some(now + retry),
                    retry: (retry * 2).min(HOST_CHECK_PERIOD),
                    suspect: None,
                };
                format!("not yet: {why}")
            }
            Finding::Wrong(why) => {
                if self.host.suspect.is_some() {
                    self.fail(format!("the host's check of its RAM and CPU: {why}"), now);
                } else {
                    warn!(node = self.id(), finding = %why, "host check: wrong; checking again");
                    self.host.suspect = Some(why.clone());
                    self.host.next = Some(now + HOST_CHECK_CONFIRM);
                }
                format!("wrong: {why}")
            }
        };
        if self.record.host_check.as_deref() != Some(note.as_str()) {
            self.rec().host_check = Some(note);
        }
        before != (self.record.state, self.record.host_check.clone())
    }

    /// Whether a host check that found the node running `r` at `now` may
    /// verify it: the bus has shown its handoff (so no message of the boot
    /// ROM's can arrive after the verdict and move the node back), or the
    /// check has found it running `r` for [`HOST_CHECK_GRACE`].
    fn bus_caught_up(&mut self, r: &Running, now: Moment) -> bool {
        let since = match self.host_runs_since {
            Some((g, t)) if g == r.generation => t,
            _ => {
                self.host_runs_since = Some((r.generation, now));
                now
            }
        };
        self.handed_off == Some(r.generation)
            || self.verified_generation == Some(r.generation)
            || now.saturating_duration_since(since) >= HOST_CHECK_GRACE
    }

    /// The host's check found the node running image `r` unchanged: what
    /// the record names is what it runs, and the generation is verified.
    fn host_verified(&mut self, r: &Running, now: Moment) {
        let rec = self.rec();
        rec.digest = Some(r.digest);
        if rec.generation != Some(r.generation) {
            rec.generations.push(r.generation);
        }
        rec.generation = Some(r.generation);
        rec.version = Some(r.version);
        let end = r.name.iter().position(|&c| c == 0).unwrap_or(r.name.len());
        rec.image_name = Some(String::from_utf8_lossy(&r.name[..end]).into_owned());
        rec.running_type = Some(r.node_type);
        rec.boot_count = r.boot_count;
        rec.reset_cause = ResetCause::from_code(r.reset_cause);
        if self.verified_generation == Some(r.generation) {
            // Still verified, whatever a message that reached the bus late
            // said meanwhile.
            self.set_state(HostState::Verified, now);
            return;
        }
        self.verified_generation = Some(r.generation);
        let rec = self.rec();
        rec.verified_at = Some(now);
        rec.verified_by = Some(VerifiedBy::HostCheck);
        self.set_state(HostState::Verified, now);
    }

    /// Nodes that boot from now on must run `digest`.
    pub fn expect(&mut self, digest: [u8; 32]) {
        self.rec().expected_digest = digest;
    }

    /// Handles one message the node sent.
    pub fn on_message(
        &mut self,
        m: &Message<'_>,
        cx: &Context<'_>,
        rng: &mut dyn RngCore,
    ) -> Option<Challenge> {
        self.note(m, cx.at_s);
        let now = cx.now;
        match m {
            Message::Status(s) => self.on_status(s, now),
            Message::Request(_) if self.record.state != HostState::Requesting => {
                self.forget_checks();
                self.set_state(HostState::Requesting, now);
            }
            Message::Reject(r) => self.on_reject(r, cx),
            Message::Heartbeat(h) => return self.on_heartbeat(h, cx, rng),
            Message::CheckReply(c) => self.on_check_reply(c, cx),
            _ => {}
        }
        None
    }

    /// Logs the message and remembers it as the last one heard.
    fn note(&mut self, m: &Message<'_>, at_s: f64) {
        if self.log.len() == NODE_LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(format!("{at_s:9.3} {}", brief(m)));
        let skip = self.log.len().saturating_sub(LOG_TAIL_LINES);
        let tail = self.log.iter().skip(skip).cloned().collect();
        let r = self.rec();
        r.last_message = format!("{:?}", m.kind());
        r.log_tail = tail;
    }

    fn on_status(&mut self, s: &Status, now: Moment) {
        self.rec().reset_cause = ResetCause::from_code(s.reset_cause);
        match NodeState::from_code(s.state) {
            Some(NodeState::SelfTest) if s.selftest != 0 => self.fail(
                format!("boot ROM self-test failed (bits {:#04x})", s.selftest),
                now,
            ),
            Some(NodeState::Failed) => self.fail(
                format!(
                    "boot ROM reports failure (self-test bits {:#04x})",
                    s.selftest
                ),
                now,
            ),
            Some(NodeState::SelfTest) => self.set_state(HostState::SelfTest, now),
            Some(NodeState::Receiving) => self.set_state(HostState::Receiving, now),
            Some(NodeState::Verifying) => self.set_state(HostState::Verifying, now),
            Some(NodeState::Handoff) => {
                self.handed_off = Some(s.session);
                self.set_state(HostState::Handoff, now);
                // The app starts now: the host looks at it soon.
                if let Some(next) = &mut self.host.next {
                    *next = (*next).min(now + HOST_CHECK_FIRST);
                    self.host.retry = HOST_CHECK_FIRST_RETRY;
                    self.first_look_due = true;
                }
            }
            _ => {}
        }
    }

    /// A refused image. A session that ended with chunks missing is no
    /// failure: the node asks again, and a storm may keep rebooting it. An
    /// image refused for what it is (digest, signature, type, version) is
    /// the same image again and again: after `max_rejects` of those since
    /// the node last booted, it has stopped making progress.
    fn on_reject(&mut self, r: &Reject, cx: &Context<'_>) {
        let reason = RejectReason::from_code(r.reason);
        let text = reason.map_or("unknown reason", |r| r.as_str());
        self.rec().rejections.push(Rejection {
            at_s: cx.at_s,
            session: r.session,
            reason: text.to_string(),
            version: images::build::format_version(r.version),
            measured_prefix: hex(&r.measured),
            manifest_prefix: hex(&r.expected),
        });
        warn!(
            node = self.id(),
            session = r.session,
            reason = text,
            "image rejected by node"
        );
        if reason != Some(RejectReason::Incomplete) {
            self.refused_since_boot += 1;
        }
        let count = self.refused_since_boot;
        if count >= cx.max_rejects {
            self.fail(
                format!(
                    "stopped making progress: refused the image {count} times since it last booted; last: {text} (session {}, measured {}…, manifest says {}…)",
                    r.session,
                    hex(&r.measured[..8]),
                    hex(&r.expected[..8])
                ),
                cx.now,
            );
        } else {
            self.set_state(HostState::Requesting, cx.now);
        }
    }

    fn on_heartbeat(
        &mut self,
        h: &Heartbeat,
        cx: &Context<'_>,
        rng: &mut dyn RngCore,
    ) -> Option<Challenge> {
        self.record_heartbeat(h);
        let expected_type = self.record.spec.node_type;
        if h.node_type != expected_type as u8 {
            let t = NodeType::from_code(h.node_type).map_or("unknown", |t| t.name());
            self.fail(
                format!(
                    "running an image for type {t}, but the node is a {}",
                    expected_type.name()
                ),
                cx.now,
            );
            return None;
        }
        if !cx.published.iter().any(|p| p.digest == h.digest) {
            self.fail(
                format!(
                    "running digest {}, which is no image built for type {} (latest: {})",
                    hex(&h.digest),
                    expected_type.name(),
                    hex(&self.record.expected_digest)
                ),
                cx.now,
            );
            return None;
        }
        if self.verified_generation == Some(h.generation) {
            // Verified; a boot ROM message that reached the bus late (after
            // the host's check saw the app run) may have moved the state.
            self.set_state(HostState::Verified, cx.now);
            return None;
        }
        if self.record.state != HostState::Running {
            self.set_state(HostState::Running, cx.now);
        }
        if self.first_look_due {
            // The host looks at the node within moments of its handoff. A
            // challenge now would have the app hash its whole image while
            // the rest of a fleet still needs the CPU, most often to no
            // end: the look verifies it first. If the look does not, the
            // next heartbeat draws the challenge.
            return None;
        }
        self.challenge_due(h.generation, cx.now, rng)
    }

    /// Copies what a heartbeat says into the record.
    fn record_heartbeat(&mut self, h: &Heartbeat) {
        self.handed_off = Some(h.generation);
        let r = self.rec();
        r.digest = Some(h.digest);
        if r.generation != Some(h.generation) {
            r.generations.push(h.generation);
        }
        r.generation = Some(h.generation);
        r.version = Some(h.version);
        let end = h.name.iter().position(|&c| c == 0).unwrap_or(h.name.len());
        let name = String::from_utf8_lossy(&h.name[..end]).into_owned();
        // A heartbeat carries the name's first bytes; the handoff record
        // (the host's check) the whole of it: a longer name it begins is
        // kept.
        if !r
            .image_name
            .as_deref()
            .is_some_and(|whole| whole.starts_with(&name))
        {
            r.image_name = Some(name);
        }
        r.running_type = Some(h.node_type);
        r.uptime_ms = h.uptime_ms;
        r.boot_count = h.boot_count;
        r.reset_cause = ResetCause::from_code(h.reset_cause);
        r.ignored_image_frames = h.ignored;
    }

    /// A fresh challenge for `generation`, unless one is open and recent.
    fn challenge_due(
        &mut self,
        generation: u32,
        now: Moment,
        rng: &mut dyn RngCore,
    ) -> Option<Challenge> {
        let due = match &self.checks {
            Some(c) => {
                c.generation != generation
                    || now.saturating_duration_since(c.sent_at) >= CHECK_RETRY
            }
            None => true,
        };
        if !due {
            return None;
        }
        let nonce = rng.next_u32();
        match &mut self.checks {
            // A slow node may still answer an earlier challenge.
            Some(c) if c.generation == generation && c.nonces.len() < MAX_OPEN_CHECKS => {
                c.nonces.push(nonce);
                c.sent_at = now;
            }
            _ => {
                self.checks = Some(OpenChecks {
                    nonces: vec![nonce],
                    generation,
                    sent_at: now,
                })
            }
        }
        Some(Challenge {
            target: self.id(),
            nonce,
        })
    }

    fn on_check_reply(&mut self, c: &CheckReply, cx: &Context<'_>) {
        let Some(open) = &self.checks else { return };
        if !open.nonces.contains(&c.nonce) {
            return;
        }
        let generation = open.generation;
        self.checks = None;
        let Some(running) = self.record.digest else {
            return;
        };
        let Some(image) = cx.published.iter().find(|p| p.digest == running) else {
            return;
        };
        if c.digest == images::challenge::answer(c.nonce, &image.payload) {
            if self.verified_generation != Some(generation) {
                self.verified_generation = Some(generation);
                let rec = self.rec();
                rec.verified_at = Some(cx.now);
                rec.verified_by = Some(VerifiedBy::Challenge);
            }
            self.set_state(HostState::Verified, cx.now);
        } else {
            self.fail(
                "answered the challenge wrongly: the bytes in its RAM differ from the build".into(),
                cx.now,
            );
        }
    }
}

/// One line about a message a node sent, for its log.
pub(crate) fn brief(m: &Message<'_>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::NodeSpec;
    use proto::msg::{Request, Status};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const PAYLOAD: &[u8] = b"the drive's code, as built";

    fn published() -> Vec<Published> {
        vec![Published {
            digest: [7; 32],
            version: 0x01_00_00,
            load_addr: board::memory::IMAGE_BASE,
            payload: Arc::new(PAYLOAD.to_vec()),
        }]
    }

    fn drive(id: u16) -> NodeTracker {
        let spec = NodeSpec {
            id,
            node_type: NodeType::Drive,
            segment: "base".into(),
            min_version: 0,
            power_on_after: Duration::ZERO,
            group: None,
            set: None,
        };
        let mut t = NodeTracker::new(NodeRecord::new(spec, [7; 32]));
        t.spawned(Moment::ZERO);
        t
    }

    fn heartbeat(generation: u32, digest: [u8; 32], node_type: NodeType) -> Message<'static> {
        Message::Heartbeat(Heartbeat {
            node_type: node_type as u8,
            state: NodeState::Running as u8,
            reset_cause: 0,
            flags: 0,
            generation,
            uptime_ms: 10,
            boot_count: 1,
            version: 0x01_00_00,
            name: [0; msg::HEARTBEAT_NAME],
            digest,
            ignored: 0,
        })
    }

    fn status(state: NodeState, selftest: u8) -> Message<'static> {
        Message::Status(Status {
            node_type: NodeType::Drive as u8,
            state: state as u8,
            selftest,
            reset_cause: 0,
            session: 0,
            received: 0,
            total: 0,
        })
    }

    fn reject(reason: RejectReason) -> Message<'static> {
        Message::Reject(Reject {
            node_type: NodeType::Drive as u8,
            reason: reason as u8,
            session: 3,
            version: 0x01_00_00,
            measured: [1; 16],
            expected: [2; 16],
        })
    }

    fn reply(nonce: u32, digest: [u8; 32]) -> Message<'static> {
        Message::CheckReply(CheckReply { nonce, digest })
    }

    /// Feeds `m` at `now`, judged against `published`.
    struct Feed {
        rng: StdRng,
        published: Vec<Published>,
        max_rejects: usize,
    }

    impl Feed {
        fn new() -> Feed {
            Feed {
                rng: StdRng::seed_from_u64(1),
                published: published(),
                max_rejects: 3,
            }
        }

        fn at(&mut self, t: &mut NodeTracker, m: Message<'_>, now: Moment) -> Option<Challenge> {
            let cx = Context {
                now,
                at_s: 1.0,
                published: &self.published,
                max_rejects: self.max_rejects,
            };
            t.on_message(&m, &cx, &mut self.rng)
        }

        fn give(&mut self, t: &mut NodeTracker, m: Message<'_>) -> Option<Challenge> {
            self.at(t, m, Moment::ZERO)
        }
    }

    fn answer(c: Challenge) -> Message<'static> {
        reply(c.nonce, images::challenge::answer(c.nonce, PAYLOAD))
    }

    #[test]
    fn boot_rom_progress_moves_the_state() {
        let (mut f, mut t) = (Feed::new(), drive(1));
        for (m, want) in [
            (status(NodeState::SelfTest, 0), HostState::SelfTest),
            (Message::Request(request()), HostState::Requesting),
            (status(NodeState::Receiving, 0), HostState::Receiving),
            (status(NodeState::Verifying, 0), HostState::Verifying),
            (status(NodeState::Handoff, 0), HostState::Handoff),
        ] {
            assert_eq!(f.give(&mut t, m), None);
            assert_eq!(t.record().state, want);
        }
        assert_eq!(t.record().last_message, "Status");
        assert_eq!(t.log().count(), 5);
        assert_eq!(t.record().log_tail.len(), 5);
    }

    fn request() -> Request {
        Request {
            node_type: NodeType::Drive as u8,
            flags: 0,
            boot_rom_version: 1,
            attempt: 1,
            min_version: 0,
        }
    }

    #[test]
    fn a_right_heartbeat_and_answer_verify_the_node() {
        let (mut f, mut t) = (Feed::new(), drive(4));
        let c = f.give(&mut t, heartbeat(9, [7; 32], NodeType::Drive));
        let c = c.expect("a challenge");
        assert_eq!(c.target, 4);
        assert_eq!(t.record().state, HostState::Running);
        assert_eq!(f.give(&mut t, answer(c)), None);
        assert_eq!(t.record().state, HostState::Verified);
        assert!(t.record().verified_at.is_some());
        // The same generation is not challenged again.
        assert_eq!(f.give(&mut t, heartbeat(9, [7; 32], NodeType::Drive)), None);
        assert_eq!(t.record().generations, [9]);
    }

    #[test]
    fn a_wrong_answer_fails_the_node_for_good() {
        let (mut f, mut t) = (Feed::new(), drive(2));
        let c = f
            .give(&mut t, heartbeat(1, [7; 32], NodeType::Drive))
            .unwrap();
        f.give(&mut t, reply(c.nonce, [0; 32]));
        assert_eq!(t.record().state, HostState::Failed);
        assert!(t.record().failure.as_deref().unwrap().contains("challenge"));
        // Failed is final: a later right answer does not verify it.
        let c = f
            .give(&mut t, heartbeat(2, [7; 32], NodeType::Drive))
            .unwrap();
        f.give(&mut t, answer(c));
        assert_eq!(t.record().state, HostState::Failed);
    }

    #[test]
    fn an_answer_to_an_unknown_nonce_is_ignored() {
        let (mut f, mut t) = (Feed::new(), drive(2));
        let c = f
            .give(&mut t, heartbeat(1, [7; 32], NodeType::Drive))
            .unwrap();
        f.give(&mut t, reply(c.nonce.wrapping_add(1), [0; 32]));
        assert_eq!(t.record().state, HostState::Running);
    }

    #[test]
    fn an_unknown_digest_or_a_wrong_type_fails_the_node() {
        let (mut f, mut t) = (Feed::new(), drive(3));
        assert_eq!(f.give(&mut t, heartbeat(1, [8; 32], NodeType::Drive)), None);
        assert_eq!(t.record().state, HostState::Failed);
        assert!(
            t.record()
                .failure
                .as_deref()
                .unwrap()
                .contains("no image built")
        );
        let mut t = drive(3);
        assert_eq!(f.give(&mut t, heartbeat(1, [7; 32], NodeType::Xy)), None);
        assert_eq!(t.record().state, HostState::Failed);
        assert!(t.record().failure.as_deref().unwrap().contains("type xy"));
    }

    #[test]
    fn the_same_bad_image_refused_again_and_again_fails_the_node() {
        let (mut f, mut t) = (Feed::new(), drive(5));
        let bad = || reject(RejectReason::DigestMismatch);
        f.give(&mut t, bad());
        f.give(&mut t, bad());
        assert_eq!(t.record().state, HostState::Requesting);
        f.give(&mut t, bad());
        assert_eq!(t.record().state, HostState::Failed);
        assert_eq!(t.record().rejections.len(), 3);
        let why = t.record().failure.clone().unwrap();
        assert!(
            why.starts_with("stopped making progress: refused the image 3 times")
                && why.contains("digest"),
            "{why}"
        );
    }

    #[test]
    fn sessions_ending_with_chunks_missing_never_fail_a_node() {
        let (mut f, mut t) = (Feed::new(), drive(5));
        for _ in 0..20 {
            f.give(&mut t, reject(RejectReason::Incomplete));
        }
        assert_eq!(t.record().state, HostState::Requesting);
        assert_eq!(t.record().rejections.len(), 20, "each one is in the report");
    }

    #[test]
    fn a_reboot_by_the_host_starts_the_count_of_refusals_again() {
        let (mut f, mut t) = (Feed::new(), drive(5));
        let bad = || reject(RejectReason::BadSignature);
        f.give(&mut t, bad());
        f.give(&mut t, bad());
        t.rebooting(Moment::ZERO);
        f.give(&mut t, bad());
        f.give(&mut t, bad());
        assert_eq!(t.record().state, HostState::Requesting);
        // Asking again is no new boot: the count goes on.
        f.give(&mut t, Message::Request(request()));
        f.give(&mut t, bad());
        assert_eq!(t.record().state, HostState::Failed);
    }

    #[test]
    fn every_state_entered_is_in_the_timeline_once() {
        let (mut f, mut t) = (Feed::new(), drive(11));
        let t0 = Moment::ZERO;
        f.at(&mut t, status(NodeState::Receiving, 0), t0);
        f.at(&mut t, status(NodeState::Receiving, 0), t0);
        let c = f
            .at(&mut t, heartbeat(1, [7; 32], NodeType::Drive), t0)
            .unwrap();
        f.at(&mut t, answer(c), t0 + Duration::from_millis(5));
        t.off(t0 + Duration::from_secs(1));
        let states: Vec<HostState> = t.timeline().iter().map(|(_, s)| *s).collect();
        use HostState::*;
        assert_eq!(states, [Booting, Receiving, Running, Verified, Off]);
        assert_eq!(t.timeline()[3].0, t0 + Duration::from_millis(5));
    }

    #[test]
    fn a_failed_self_test_fails_the_node() {
        let (mut f, mut t) = (Feed::new(), drive(6));
        f.give(&mut t, status(NodeState::SelfTest, 0x04));
        assert_eq!(t.record().state, HostState::Failed);
        assert!(t.record().failure.as_deref().unwrap().contains("0x04"));
    }

    #[test]
    fn an_unanswered_challenge_is_sent_again_after_the_retry_time() {
        let (mut f, mut t) = (Feed::new(), drive(7));
        let t0 = Moment::ZERO;
        let hb = || heartbeat(1, [7; 32], NodeType::Drive);
        let first = f.at(&mut t, hb(), t0).unwrap();
        assert_eq!(f.at(&mut t, hb(), t0 + CHECK_RETRY / 2), None);
        let second = f.at(&mut t, hb(), t0 + CHECK_RETRY).unwrap();
        assert_ne!(first.nonce, second.nonce);
        // A slow node answering the first one still counts.
        f.at(&mut t, answer(first), t0 + CHECK_RETRY);
        assert_eq!(t.record().state, HostState::Verified);
    }

    #[test]
    fn a_reboot_or_a_request_needs_a_new_verification() {
        let (mut f, mut t) = (Feed::new(), drive(8));
        let c = f
            .give(&mut t, heartbeat(1, [7; 32], NodeType::Drive))
            .unwrap();
        f.give(&mut t, answer(c));
        t.rebooting(Moment::ZERO);
        assert_eq!(t.record().state, HostState::Booting);
        // The same generation heard again (the reboot has not shown yet) is
        // challenged again rather than taken as verified.
        assert!(
            f.give(&mut t, heartbeat(1, [7; 32], NodeType::Drive))
                .is_some()
        );
        f.give(&mut t, Message::Request(request()));
        assert_eq!(t.record().state, HostState::Requesting);
        t.off(Moment::ZERO);
        assert_eq!(t.record().state, HostState::Off);
        assert!(t.record().verified_at.is_none());
    }

    #[test]
    fn the_log_keeps_the_newest_lines_and_the_tail_follows() {
        let (mut f, mut t) = (Feed::new(), drive(9));
        for _ in 0..NODE_LOG_LINES + 5 {
            f.give(&mut t, status(NodeState::Receiving, 0));
        }
        assert_eq!(t.log().count(), NODE_LOG_LINES);
        assert_eq!(t.record().log_tail.len(), LOG_TAIL_LINES);
        assert_eq!(
            t.record().log_tail.last(),
            t.log().last(),
            "the tail ends with the newest line"
        );
    }

    #[test]
    fn a_snapshot_is_not_changed_by_later_messages() {
        let (mut f, mut t) = (Feed::new(), drive(10));
        let before = t.record().clone();
        f.give(&mut t, status(NodeState::Receiving, 0));
        assert_eq!(before.state, HostState::Booting);
        assert_eq!(t.record().state, HostState::Receiving);
    }

    fn runs(generation: u32) -> Finding {
        Finding::Runs(Running {
            generation,
            digest: [7; 32],
            version: 0x01_00_00,
            name: *b"drive\0\0\0\0\0\0\0\0\0\0\0",
            node_type: NodeType::Drive as u8,
            boot_count: 1,
            reset_cause: 0,
            pc: board::memory::IMAGE_BASE,
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The boot ROM's `Status(Handoff)` of the image of session `session`.
    fn handoff(session: u32) -> Message<'static> {
        let Message::Status(mut s) = status(NodeState::Handoff, 0) else {
            unreachable!()
        };
        s.session = session;
        Message::Status(s)
    }

    /// Takes the host check due at `now` and hands `finding` back for it.
    fn check(t: &mut NodeTracker, now: Moment, finding: Finding) -> bool {
        let boot = t.host_check_due(now).expect("a host check is due");
        t.on_host_finding(boot, finding, now)
    }

    #[test]
    fn a_node_that_never_talks_is_verified_by_the_host_check_after_its_handoff() {
        let (mut f, mut t) = (Feed::new(), drive(4));
        let t0 = Moment::ZERO;
        // Powered on: checked once a period, in case its status is lost.
        assert_eq!(t.next_host_check(), Some(t0 + HOST_CHECK_PERIOD));
        assert_eq!(t.host_check_due(t0 + ms(10)), None, "not due yet");
        // The boot ROM hands off: checked soon after.
        let handed = t0 + ms(300);
        f.at(&mut t, handoff(12), handed);
        let first = handed + HOST_CHECK_FIRST;
        assert_eq!(t.next_host_check(), Some(first));
        assert!(check(&mut t, first, runs(12)));
        let r = t.record();
        assert_eq!(r.state, HostState::Verified);
        assert_eq!(r.verified_by, Some(VerifiedBy::HostCheck));
        assert_eq!(r.verified_at, Some(first));
        assert_eq!((r.generation, r.generations.clone()), (Some(12), vec![12]));
        assert_eq!(r.digest, Some([7; 32]));
        assert_eq!(r.image_name.as_deref(), Some("drive"));
        assert!(r.host_check.as_deref().unwrap().starts_with("ok: "));
        // Checked again every period; the same finding changes nothing.
        assert_eq!(t.next_host_check(), Some(first + HOST_CHECK_PERIOD));
        assert!(!check(&mut t, first + HOST_CHECK_PERIOD, runs(12)));
        assert_eq!(t.record().verified_at, Some(first));
        let states: Vec<HostState> = t.timeline().iter().map(|(_, s)| *s).collect();
        assert_eq!(
            states,
            [HostState::Booting, HostState::Handoff, HostState::Verified]
        );
    }

    #[test]
    fn nothing_to_judge_yet_is_looked_at_again_sooner_then_later() {
        let mut t = drive(4);
        let mut now = Moment::ZERO + HOST_CHECK_PERIOD;
        let mut waits = Vec::new();
        for _ in 0..8 {
            check(&mut t, now, Finding::NotYet("the boot ROM runs".into()));
            let next = t.next_host_check().unwrap();
            waits.push((next - now).as_millis());
            now = next;
        }
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(t.record().state, HostState::Booting, "no verdict");
        assert_eq!(
            t.record().host_check.as_deref(),
            Some("not yet: the boot ROM runs")
        );
    }

    #[test]
    fn a_wrong_finding_fails_the_node_only_when_the_next_check_confirms_it() {
        let (mut f, mut t) = (Feed::new(), drive(5));
        f.give(&mut t, handoff(1));
        let t0 = Moment::ZERO + HOST_CHECK_FIRST;
        check(&mut t, t0, runs(1));
        assert_eq!(t.record().state, HostState::Verified);
        let bad = || Finding::Wrong("4 bytes of its image in RAM differ from the build".into());
        let at = t0 + HOST_CHECK_PERIOD;
        check(&mut t, at, bad());
        assert_eq!(t.record().state, HostState::Verified, "not on one reading");
        assert_eq!(t.next_host_check(), Some(at + HOST_CHECK_CONFIRM));
        // A reading that finds nothing wrong clears the suspicion.
        check(
            &mut t,
            at + HOST_CHECK_CONFIRM,
            Finding::NotYet("reboot".into()),
        );
        let again = t.next_host_check().unwrap();
        check(&mut t, again, bad());
        assert_eq!(t.record().state, HostState::Verified);
        // Two in a row: failed, with the reason, and no more checks.
        let next = t.next_host_check().unwrap();
        check(&mut t, next, bad());
        assert_eq!(t.record().state, HostState::Failed);
        assert_eq!(
            t.record().failure.as_deref(),
            Some(
                "the host's check of its RAM and CPU: 4 bytes of its image in RAM differ from the build"
            )
        );
        assert_eq!(t.next_host_check(), None);
        assert!(
            !t.on_host_finding(t.boots, runs(1), at + ms(500)),
            "failed is final"
        );
    }

    #[test]
    fn a_finding_for_an_earlier_boot_is_dropped() {
        let mut t = drive(6);
        let at = Moment::ZERO + HOST_CHECK_PERIOD;
        let boot = t.host_check_due(at).unwrap();
        // Under way: not due again until it would be lost.
        assert_eq!(t.host_check_due(at + ms(1)), None);
        assert_eq!(t.next_host_check(), Some(at + HOST_CHECK_LOST));
        t.rebooting(at + ms(1));
        assert!(!t.on_host_finding(boot, runs(1), at + ms(2)));
        assert_eq!(t.record().state, HostState::Booting);
        assert_eq!(t.next_host_check(), Some(at + ms(1) + HOST_CHECK_PERIOD));
        // Off: never checked; on again: checked again.
        t.off(at + ms(3));
        assert_eq!(t.next_host_check(), None);
        t.spawned(at + ms(4));
        assert_eq!(t.next_host_check(), Some(at + ms(4) + HOST_CHECK_PERIOD));
    }

    #[test]
    fn heartbeats_and_host_checks_verify_a_generation_once_whichever_comes_first() {
        // The host check first: heartbeats of that generation add their
        // word (uptime) and no challenge.
        let (mut f, mut t) = (Feed::new(), drive(7));
        let at = Moment::ZERO + HOST_CHECK_PERIOD;
        f.give(&mut t, handoff(3));
        check(&mut t, at, runs(3));
        assert_eq!(f.give(&mut t, heartbeat(3, [7; 32], NodeType::Drive)), None);
        assert_eq!(t.record().state, HostState::Verified);
        assert_eq!(t.record().verified_by, Some(VerifiedBy::HostCheck));
        assert_eq!(t.record().uptime_ms, 10);
        // The heartbeat's name is the record's, cut short: the whole stays.
        let mut hb = heartbeat(3, [7; 32], NodeType::Drive);
        if let Message::Heartbeat(h) = &mut hb {
            h.name = *b"driv\0\0\0\0";
        }
        f.give(&mut t, hb);
        assert_eq!(t.record().image_name.as_deref(), Some("drive"));
        // A heartbeat with a wrong digest still fails it.
        f.give(&mut t, heartbeat(3, [8; 32], NodeType::Drive));
        assert_eq!(t.record().state, HostState::Failed);
        // The challenge first: the host check agrees and changes nothing.
        let (mut f, mut t) = (Feed::new(), drive(8));
        let c = f
            .give(&mut t, heartbeat(3, [7; 32], NodeType::Drive))
            .unwrap();
        f.give(&mut t, answer(c));
        assert_eq!(t.record().verified_by, Some(VerifiedBy::Challenge));
        check(&mut t, at, runs(3));
        assert_eq!(t.record().verified_by, Some(VerifiedBy::Challenge));
        // ... but catches its bytes changed later, which no heartbeat does.
        let bad = || Finding::Wrong("1 bytes of its image in RAM differ from the build".into());
        check(&mut t, at + HOST_CHECK_PERIOD, bad());
        let next = t.next_host_check().unwrap();
        check(&mut t, next, bad());
        assert_eq!(t.record().state, HostState::Failed);
        // A new generation after a reboot is verified again, by either.
        let (mut f, mut t) = (Feed::new(), drive(9));
        f.give(&mut t, handoff(3));
        check(&mut t, at, runs(3));
        t.rebooting(at + ms(10));
        f.at(&mut t, handoff(4), at + ms(20));
        check(&mut t, at + ms(20) + HOST_CHECK_FIRST, runs(4));
        assert_eq!(t.record().generations, [3, 4]);
        assert_eq!(t.record().state, HostState::Verified);
        assert_eq!(t.record().verified_at, Some(at + ms(20) + HOST_CHECK_FIRST));
    }

    #[test]
    fn a_heartbeat_right_after_the_handoff_waits_for_the_hosts_first_look() {
        let (mut f, mut t) = (Feed::new(), drive(5));
        let t0 = Moment::ZERO + ms(100);
        f.at(&mut t, handoff(3), t0);
        // The app's first heartbeat comes before the host's look: no
        // challenge, and the look verifies the node.
        assert_eq!(
            f.at(&mut t, heartbeat(3, [7; 32], NodeType::Drive), t0 + ms(5)),
            None
        );
        assert_eq!(t.record().state, HostState::Running);
        check(&mut t, t0 + HOST_CHECK_FIRST, runs(3));
        assert_eq!(t.record().verified_by, Some(VerifiedBy::HostCheck));
        assert_eq!(
            f.at(&mut t, heartbeat(3, [7; 32], NodeType::Drive), t0 + ms(500)),
            None
        );
        // A look that finds nothing to judge yet: the next heartbeat draws
        // the challenge, and the answer verifies the node.
        let (mut f, mut t) = (Feed::new(), drive(6));
        f.at(&mut t, handoff(3), t0);
        assert_eq!(
            f.at(&mut t, heartbeat(3, [7; 32], NodeType::Drive), t0 + ms(5)),
            None
        );
        check(
            &mut t,
            t0 + HOST_CHECK_FIRST,
            Finding::NotYet("the boot ROM runs".into()),
        );
        let c = f.at(&mut t, heartbeat(3, [7; 32], NodeType::Drive), t0 + ms(505));
        f.at(&mut t, answer(c.expect("a challenge")), t0 + ms(600));
        assert_eq!(t.record().verified_by, Some(VerifiedBy::Challenge));
        // A node the host does not check is challenged at once.
        let (mut f, mut t) = (Feed::new(), drive(7));
        t.off(t0);
        f.at(&mut t, handoff(3), t0);
        let hb = heartbeat(3, [7; 32], NodeType::Drive);
        assert!(f.at(&mut t, hb, t0 + ms(5)).is_some());
    }

    #[test]
    fn the_host_check_verifies_once_the_bus_has_shown_the_handoff() {
        // RAM is read faster than a busy bus carries the boot ROM's last
        // messages: a verdict before them would be undone by them.
        let (mut f, mut t) = (Feed::new(), drive(3));
        let t0 = Moment::ZERO + HOST_CHECK_PERIOD;
        check(&mut t, t0, runs(5));
        assert_eq!(t.record().state, HostState::Booting);
        let note = t.record().host_check.clone().unwrap();
        assert!(
            note.contains("handoff has not reached the bus yet"),
            "{note}"
        );
        // The status arrives (as do the boot ROM's messages before it).
        let at = t0 + ms(30);
        f.at(&mut t, status(NodeState::Receiving, 0), at);
        f.at(&mut t, handoff(5), at);
        assert_eq!(t.next_host_check(), Some(at + HOST_CHECK_FIRST));
        // A first look that finds the boot ROM still running: soon again.
        check(
            &mut t,
            at + HOST_CHECK_FIRST,
            Finding::NotYet("the boot ROM runs".into()),
        );
        let again = at + HOST_CHECK_FIRST + HOST_CHECK_FIRST_RETRY;
        assert_eq!(t.next_host_check(), Some(again));
        check(&mut t, again, runs(5));
        assert_eq!(t.record().state, HostState::Verified);
        // A heartbeat shows it as well as the status does.
        let (mut f, mut t) = (Feed::new(), drive(4));
        let c = f.give(&mut t, heartbeat(5, [7; 32], NodeType::Drive));
        assert!(c.is_some(), "challenged");
        check(&mut t, t0, runs(5));
        assert_eq!(t.record().verified_by, Some(VerifiedBy::HostCheck));
    }

    #[test]
    fn a_node_whose_handoff_message_was_lost_is_verified_after_the_grace() {
        let mut t = drive(3);
        let t0 = Moment::ZERO + HOST_CHECK_PERIOD;
        let mut now = t0;
        while now < t0 + HOST_CHECK_GRACE {
            check(&mut t, now, runs(5));
            assert_eq!(t.record().state, HostState::Booting, "at {now:?}");
            now = t.next_host_check().unwrap();
        }
        check(&mut t, now, runs(5));
        assert_eq!(t.record().state, HostState::Verified);
        // A boot ROM message of that boot arriving later still moves the
        // state; what the node runs puts it back.
        let mut f = Feed::new();
        f.at(&mut t, status(NodeState::Verifying, 0), now + ms(1));
        assert_eq!(t.record().state, HostState::Verifying);
        f.at(&mut t, heartbeat(5, [7; 32], NodeType::Drive), now + ms(2));
        assert_eq!(t.record().state, HostState::Verified);
        f.at(&mut t, status(NodeState::Verifying, 0), now + ms(3));
        let next = t.next_host_check().unwrap();
        check(&mut t, next, runs(5));
        assert_eq!(t.record().state, HostState::Verified);
        assert_eq!(t.record().verified_at, Some(now), "verified once");
    }
}
