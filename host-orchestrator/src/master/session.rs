//! One session on the bus: announce, data, end, then NACK-driven repair.

use super::scheduler::{SessionKind, SessionPlan};
use crate::clock::{Clock, Moment};
use crate::store::{PartSpec, Store};
use anyhow::{Context, Result, bail};
use bus_bridge::BitTiming;
use proto::Frame;
use proto::msg::{
    self, BROADCAST, Data, MODE_COMBINED, MODE_SELECTED, MODE_UNICAST, Message, SessionAnnounce,
    SessionEnd, SessionPart,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a session sends: the object and where each image lies in it.
#[derive(Clone, Debug)]
pub struct Content {
    /// The bytes the `Data` frames carry.
    pub object: Arc<Vec<u8>>,
    /// The images in the object.
    pub parts: Vec<PartSpec>,
    /// `MODE_*`.
    pub mode: u8,
    /// The one node a unicast session is for, else `BROADCAST`.
    pub target: u16,
}

impl Content {
    /// The content of a session of `kind` from `store`. `bundle` is the
    /// store's bundle, built once.
    pub fn of(
        kind: SessionKind,
        store: &Store,
        bundle: &(Arc<Vec<u8>>, Vec<PartSpec>),
    ) -> Result<Content> {
        let single = |t| -> Result<(Arc<Vec<u8>>, Vec<PartSpec>)> {
            let s = store
                .by_type
                .get(&t)
                .with_context(|| format!("no image for type {}", t.name()))?;
            Ok((s.bytes.clone(), vec![store.part(t).context("part")?]))
        };
        Ok(match kind {
            SessionKind::Selected(t) => {
                let (object, parts) = single(t)?;
                Content {
                    object,
                    parts,
                    mode: MODE_SELECTED,
                    target: BROADCAST,
                }
            }
            SessionKind::Combined => Content {
                object: bundle.0.clone(),
                parts: bundle.1.clone(),
                mode: MODE_COMBINED,
                target: BROADCAST,
            },
            SessionKind::Unicast { node_type, target } => {
                let (object, parts) = single(node_type)?;
                Content {
                    object,
                    parts,
                    mode: MODE_UNICAST,
                    target,
                }
            }
        })
    }

    /// `Data` frames in the session.
    pub fn total_chunks(&self) -> u32 {
        self.object.len().div_ceil(msg::FD_CHUNK) as u32
    }

    /// The bytes of chunk `i`.
    pub fn chunk(&self, i: u32) -> &[u8] {
        let start = i as usize * msg::FD_CHUNK;
        &self.object[start.min(self.object.len())..(start + msg::FD_CHUNK).min(self.object.len())]
    }
}

fn encode(m: Message<'_>, src: u16) -> Result<Frame> {
    m.to_frame(src)
        .map_err(|e| anyhow::anyhow!("cannot encode {:?}: {e:?}", m.kind()))
}

/// How many times a session's start is sent before its first chunk.
const START_COPIES: usize = 2;

/// The announce and part frames that start (or restate) a session.
pub fn announce_frames(plan: &SessionPlan, content: &Content, src: u16) -> Result<Vec<Frame>> {
    let total_chunks = content.total_chunks();
    if total_chunks > msg::MAX_CHUNK_INDEX + 1 {
        bail!(
            "an object of {} bytes needs more chunks than a session can carry",
            content.object.len()
        );
    }
    let announce = SessionAnnounce {
        session: plan.session,
        window: plan.window,
        mode: content.mode,
        parts: content.parts.len() as u8,
        chunk_size: msg::FD_CHUNK as u8,
        object_len: u32::try_from(content.object.len()).context("object larger than 4 GiB")?,
        total_chunks,
        target: content.target,
    };
    let mut frames = vec![encode(Message::SessionAnnounce(announce), src)?];
    for (i, p) in content.parts.iter().enumerate() {
        let part = SessionPart {
            session: plan.session,
            index: i as u8,
            node_type: p.node_type as u8,
            manifest_len: images::manifest::MANIFEST_LEN as u16,
            offset: p.offset,
            len: p.len,
            load_addr: p.load_addr,
            version: p.version,
        };
        frames.push(encode(Message::SessionPart(part), src)?);
    }
    Ok(frames)
}

/// The `Data` frame for chunk `i`.
pub fn data_frame(session: u32, content: &Content, i: u32, src: u16) -> Result<Frame> {
    encode(
        Message::Data(Data {
            session: session as u8,
            chunk: i,
            payload: content.chunk(i),
        }),
        src,
    )
}

fn end_frame(session: u32, content: &Content, round: u8, last: bool, src: u16) -> Result<Frame> {
    let end = SessionEnd {
        session,
        total_chunks: content.total_chunks(),
        round,
        last: last as u8,
    };
    encode(Message::SessionEnd(end), src)
}

/// A frame for the writer, with an optional "it has been written" signal.
pub struct Outgoing {
    /// The frame.
    pub frame: Frame,
    /// Fired once the frame is on its way to the bridge.
    pub written: Option<oneshot::Sender<()>>,
}

/// Where sessions put their frames: bulk (in order) and urgent (beacons,
/// re-announcements), which the writer sends first.
#[derive(Clone)]
pub struct Outbox {
    /// Session frames, in order.
    pub bulk: mpsc::Sender<Outgoing>,
    /// Frames that must not wait behind a session.
    pub urgent: mpsc::Sender<Outgoing>,
}

impl Outbox {
    async fn bulk(&self, frame: Frame) -> Result<()> {
        self.bulk
            .send(Outgoing {
                frame,
                written: None,
            })
            .await
            .map_err(|_| anyhow::anyhow!("writer stopped"))
    }

    /// Sends `frame` in order and waits until it has been written.
    async fn bulk_and_wait(&self, frame: Frame) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.bulk
            .send(Outgoing {
                frame,
                written: Some(tx),
            })
            .await
            .map_err(|_| anyhow::anyhow!("writer stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("writer stopped"))
    }
}

/// What the master tells a running session.
#[derive(Clone, Debug)]
pub enum SessionCtl {
    /// Node `from` asked for these (first chunk, count) ranges.
    Nack {
        /// The node.
        from: u16,
        /// The ranges.
        ranges: Vec<(u32, u16)>,
    },
    /// Node `from` joins late, or asks again: state the session again.
    Reannounce {
        /// The node.
        from: u16,
    },
    /// Node `from` has every chunk (it said it is verifying, handing off or
    /// running).
    Complete {
        /// The node.
        from: u16,
    },
}

/// Repair settings: repair goes on while requesters still miss chunks and
/// make progress, bounded by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Repair {
    /// How long to collect `Nack`s after an end.
    pub wait: Duration,
    /// Repair stops once this long has passed without progress.
    pub stall: Duration,
    /// Repair never goes on longer than this after the first pass, so that
    /// other sessions get their turn; nodes still missing chunks ask again.
    pub budget: Duration,
    /// At most this many rounds (`None`: as many as make progress).
    pub max_rounds: Option<u8>,
}

/// Why a session's repair ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepairEnd {
    /// Nobody asked for anything: every requester has every chunk.
    #[default]
    Complete,
    /// Rounds no longer shrank what was asked for, for `stall`.
    Stalled,
    /// The time budget ran out while nodes still asked.
    Budget,
    /// The fleet's `repair_rounds` cap.
    RoundCap,
}

/// Chunks each node asked for in one round, by node.
pub type Asked = BTreeMap<u16, u32>;

/// Decides, after each collection of `Nack`s, whether repair goes on. A
/// round shows progress when any requester made some: it asked for fewer
/// chunks than it ever did, or stopped asking (it has them all, or is
/// gone), or asked for the first time, or a node joined late.
#[derive(Clone, Debug)]
pub struct RepairProgress {
    repair: Repair,
    started: Moment,
    last_progress: Moment,
    /// The fewest chunks each node ever asked for.
    fewest: Asked,
    /// The nodes that asked in the round before.
    before: Vec<u16>,
    rounds: u8,
}

impl RepairProgress {
    /// Repair after a first pass that ended at `now`.
    pub fn new(repair: Repair, now: Moment) -> RepairProgress {
        RepairProgress {
            repair,
            started: now,
            last_progress: now,
            fewest: Asked::new(),
            before: Vec::new(),
            rounds: 0,
        }
    }

    /// Whether `asked` shows progress, remembering what it shows.
    fn progress(&mut self, asked: &Asked) -> bool {
        let stopped = self.before.iter().any(|n| !asked.contains_key(n));
        let mut fewer = false;
        for (&n, &c) in asked {
            let best = self.fewest.entry(n).or_insert(u32::MAX);
            fewer |= c < *best;
            *best = (*best).min(c);
        }
        self.before = asked.keys().copied().collect();
        stopped || fewer
    }

    /// The nodes asked for `asked` chunks (`joined`: a node joined late),
    /// `waiting` requesters are not yet known to have every chunk, by
    /// `now`: `Ok` to send another round, or why repair ends.
    pub fn next(
        &mut self,
        asked: &Asked,
        joined: bool,
        waiting: usize,
        now: Moment,
    ) -> Result<(), RepairEnd> {
        if asked.is_empty() && !joined && waiting == 0 {
            return Err(RepairEnd::Complete);
        }
        if self.progress(asked) || joined {
            self.last_progress = now;
        }
        if self.repair.max_rounds.is_some_and(|m| self.rounds >= m) {
            return Err(RepairEnd::RoundCap);
        }
        if now.saturating_duration_since(self.last_progress) >= self.repair.stall {
            return Err(RepairEnd::Stalled);
        }
        if now.saturating_duration_since(self.started) >= self.repair.budget {
            return Err(RepairEnd::Budget);
        }
        self.rounds = self.rounds.saturating_add(1);
        Ok(())
    }
}

/// How a session sends: repair settings, the bus's bit timing (to account
/// bus time) and the master's source address.
#[derive(Clone, Copy, Debug)]
pub struct Sending {
    /// Repair settings.
    pub repair: Repair,
    /// The bus's bit rates.
    pub timing: BitTiming,
    /// The master's source address.
    pub src: u16,
}

/// What a session did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Object bytes sent in the first pass.
    pub bytes: u64,
    /// Frames sent, repair included.
    pub frames: u64,
    /// Repair rounds sent.
    pub repair_rounds: u8,
    /// Object bytes re-sent in repair.
    pub repair_bytes: u64,
    /// Repair rounds and their chunk counts, for the log.
    pub rounds: Vec<u32>,
    /// Why repair ended.
    pub repair_end: RepairEnd,
    /// Bus time of every frame sent, by the frame format at the bus's bit
    /// rates (what the bridge accounts for them).
    pub bus_time: Duration,
    /// Bus time of the first pass: announce, data and the first end.
    pub first_pass_bus_time: Duration,
    /// Time on the run's clock (the host's, or the bus's virtual time)
    /// from the first frame handed to the writer until the first end was
    /// written.
    pub first_pass_wall: Duration,
}

/// A set of chunk indices.
struct Missing {
    bits: Vec<u64>,
    total: u32,
}

impl Missing {
    fn new(total: u32) -> Missing {
        Missing {
            bits: vec![0; (total as usize).div_ceil(64)],
            total,
        }
    }
    fn add(&mut self, start: u32, len: u16) {
        let end = start.saturating_add(len as u32).min(self.total);
        for i in start..end {
            self.bits[i as usize / 64] |= 1 << (i % 64);
        }
    }
    fn take(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for (w, word) in self.bits.iter_mut().enumerate() {
            while *word != 0 {
                let b = word.trailing_zeros();
                out.push(w as u32 * 64 + b);
                *word &= *word - 1;
            }
        }
        out
    }
}

/// One session being sent: what it sends and how, what nodes still miss,
/// and what it did so far.
struct Sender<'a> {
    plan: &'a SessionPlan,
    content: &'a Content,
    out: &'a Outbox,
    sending: Sending,
    /// The frames that state the session (sent again for late joiners).
    announce: Vec<Frame>,
    missing: Missing,
    /// Chunks each node asked for since the last repair decision.
    asked: Asked,
    /// Requesters not yet known to have every chunk.
    outstanding: BTreeSet<u16>,
    o: Outcome,
    started: Moment,
    clock: Clock,
}

impl Sender<'_> {
    /// Counts `f` in the session's bus time.
    fn account(&mut self, f: &Frame) {
        let ns = self.sending.timing.frame_time_ns(f).unwrap_or(0);
        self.o.bus_time += Duration::from_nanos(ns);
    }

    /// A message from the master. NACKed ranges join the missing set (up
    /// to `sent`: chunks not sent yet are coming); a late joiner is owed
    /// the announcement again, which is returned.
    fn handle(&mut self, c: SessionCtl, sent: u32) -> Option<Vec<Frame>> {
        match c {
            SessionCtl::Nack { from, ranges } => {
                self.outstanding.insert(from);
                let mut n = 0;
                for (s, l) in ranges {
                    let l = (l as u32).min(sent.saturating_sub(s)) as u16;
                    self.missing.add(s, l);
                    n += u32::from(l);
                }
                *self.asked.entry(from).or_default() += n;
                None
            }
            SessionCtl::Reannounce { from } => {
                self.outstanding.insert(from);
                Some(self.announce.clone())
            }
            SessionCtl::Complete { from } => {
                self.outstanding.remove(&from);
                None
            }
        }
    }

    /// The announcement, then `Data` from `start_chunk` on; messages from
    /// the master are served between chunks, first.
    async fn first_pass(
        &mut self,
        start_chunk: u32,
        ctl: &mut mpsc::Receiver<SessionCtl>,
    ) -> Result<()> {
        let out = self.out;
        // Twice: a receiver that loses the start misses the whole first
        // pass, and one repeat makes that rare for two frames' cost.
        for _ in 0..START_COPIES {
            for f in self.announce.clone() {
                out.bulk(f).await?;
                self.account(&f);
            }
            self.o.frames += self.announce.len() as u64;
        }
        let total = self.content.total_chunks();
        let mut i = start_chunk.min(total);
        while i < total {
            tokio::select! {
                biased;
                Some(c) = ctl.recv() => {
                    for frame in self.handle(c, i).unwrap_or_default() {
                        self.account(&frame);
                        out.urgent.send(Outgoing { frame, written: None }).await.map_err(|_| anyhow::anyhow!("writer stopped"))?;
                    }
                }
                permit = out.bulk.reserve() => {
                    let permit = permit.map_err(|_| anyhow::anyhow!("writer stopped"))?;
                    let frame = data_frame(self.plan.session, self.content, i, self.sending.src)?;
                    self.account(&frame);
                    permit.send(Outgoing { frame, written: None });
                    self.o.bytes += self.content.chunk(i).len() as u64;
                    self.o.frames += 1;
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Sends the end of `round` and waits until it is written; the first
    /// end closes the first pass.
    async fn end(&mut self, round: u8, last: bool) -> Result<()> {
        let end = end_frame(
            self.plan.session,
            self.content,
            round,
            last,
            self.sending.src,
        )?;
        self.out.bulk_and_wait(end).await?;
        self.account(&end);
        self.o.frames += 1;
        if round == 0 && self.o.first_pass_wall.is_zero() {
            self.o.first_pass_wall = self.clock.now() - self.started;
            self.o.first_pass_bus_time = self.o.bus_time;
        }
        Ok(())
    }

    /// Collects NACKs after an end: each one extends the wait a little,
    /// within a cap; a late joiner extends it fully. Says whether one joined.
    async fn collect_nacks(&mut self, ctl: &mut mpsc::Receiver<SessionCtl>) -> Result<bool> {
        let mut anyone_joined = false;
        let wait = self.sending.repair.wait;
        let total = self.content.total_chunks();
        let clock = self.clock.clone();
        let mut cap = clock.now() + wait * 3;
        let mut until = clock.now() + wait;
        loop {
            let c = match clock.timeout_at(until.min(cap), ctl.recv()).await {
                Ok(Some(c)) => c,
                // Nobody can tell it more: the wait still runs its course.
                Ok(None) => {
                    clock.sleep_until(until.min(cap)).await;
                    break;
                }
                Err(_) => break,
            };
            let joined = matches!(c, SessionCtl::Reannounce { .. });
            anyone_joined |= joined;
            for f in self.handle(c, total).unwrap_or_default() {
                self.account(&f);
                self.out.bulk(f).await?;
            }
            if joined {
                // A node joined after the data: it lacks all of it, so the
                // next repair round sends everything once more.
                let mut start = 0u32;
                while start < total {
                    let len = (total - start).min(u16::MAX as u32);
                    self.missing.add(start, len as u16);
                    start += len;
                }
                until = clock.now() + wait;
                cap = cap.max(until);
            } else if !self.outstanding.is_empty() {
                until = clock.now() + wait / 2;
            } else {
                // Every requester has everything: nothing more will come.
                break;
            }
        }
        Ok(anyone_joined)
    }

    /// Sends repair round `round`: the `chunks` nodes asked for.
    async fn repair(&mut self, round: u8, chunks: Vec<u32>) -> Result<()> {
        self.o.repair_rounds = round;
        self.o.rounds.push(chunks.len() as u32);
        for c in chunks {
            let frame = data_frame(self.plan.session, self.content, c, self.sending.src)?;
            self.account(&frame);
            self.out.bulk(frame).await?;
            self.o.repair_bytes += self.content.chunk(c).len() as u64;
            self.o.frames += 1;
        }
        Ok(())
    }
}

/// Runs one session: announce, data from `start_chunk`, end, then repair
/// rounds re-sending the union of the chunks nodes asked for, while they
/// make progress (see [`RepairProgress`]), then the last end. Nodes still
/// incomplete after that ask again in a new window. Its waits are on
/// `clock`.
pub async fn run(
    plan: &SessionPlan,
    content: &Content,
    start_chunk: u32,
    out: &Outbox,
    ctl: &mut mpsc::Receiver<SessionCtl>,
    sending: Sending,
    clock: Clock,
) -> Result<Outcome> {
    let started = clock.now();
    let mut s = Sender {
        plan,
        content,
        out,
        sending,
        announce: announce_frames(plan, content, sending.src)?,
        missing: Missing::new(content.total_chunks()),
        asked: Asked::new(),
        outstanding: plan.requesters.clone(),
        o: Outcome::default(),
        started,
        clock,
    };
    s.first_pass(start_chunk, ctl).await?;
    let mut round = 0u8;
    s.end(round, false).await?;
    let mut progress = RepairProgress::new(sending.repair, s.clock.now());
    loop {
        let joined = s.collect_nacks(ctl).await?;
        let chunks = s.missing.take();
        let asked = std::mem::take(&mut s.asked);
        let waiting = s.outstanding.len();
        if let Err(end) = progress.next(&asked, joined, waiting, s.clock.now()) {
            s.o.repair_end = end;
            break;
        }
        // With nothing asked for, a requester not yet done gets the end
        // again (its NACK may have come late or been lost).
        if !chunks.is_empty() {
            round = round.saturating_add(1);
            s.repair(round, chunks).await?;
        }
        s.end(round, false).await?;
    }
    // Said at once, so nodes still missing chunks ask again at once.
    s.end(round, true).await?;
    Ok(s.o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::NodeType;
    use std::collections::BTreeSet;

    fn content(len: usize) -> Content {
        Content {
            object: Arc::new((0..len).map(|i| i as u8).collect()),
            parts: vec![PartSpec {
                node_type: NodeType::Drive,
                offset: 0,
                len: len as u32,
                load_addr: board::memory::IMAGE_BASE,
                version: 1,
            }],
            mode: MODE_SELECTED,
            target: BROADCAST,
        }
    }

    fn plan() -> SessionPlan {
        SessionPlan {
            session: 3,
            window: 1,
            kind: SessionKind::Selected(NodeType::Drive),
            requesters: BTreeSet::new(),
        }
    }

    /// Runs a session against a writer that records frames and acks writes.
    async fn record(
        content: Content,
        repair: Repair,
        during: impl FnOnce(mpsc::Sender<SessionCtl>) -> tokio::task::JoinHandle<()>,
    ) -> (Outcome, Vec<Frame>) {
        record_plan(plan(), content, repair, during).await
    }

    /// [`record`] for `plan`.
    async fn record_plan(
        plan: SessionPlan,
        content: Content,
        repair: Repair,
        during: impl FnOnce(mpsc::Sender<SessionCtl>) -> tokio::task::JoinHandle<()>,
    ) -> (Outcome, Vec<Frame>) {
        let (bulk, mut bulk_rx) = mpsc::channel::<Outgoing>(4);
        let (urgent, mut urgent_rx) = mpsc::channel::<Outgoing>(4);
        let (ctl_tx, mut ctl) = mpsc::channel(8);
        let writer = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let o = tokio::select! {
                    biased;
                    Some(o) = urgent_rx.recv() => o,
                    Some(o) = bulk_rx.recv() => o,
                    else => break,
                };
                seen.push(o.frame);
                if let Some(w) = o.written {
                    let _ = w.send(());
                }
            }
            seen
        });
        let feeder = during(ctl_tx);
        let out = Outbox { bulk, urgent };
        let outcome = run(
            &plan,
            &content,
            0,
            &out,
            &mut ctl,
            Sending {
                repair,
                timing: BitTiming::Fd1m5m,
                src: msg::MASTER_PRIMARY,
            },
            Clock::wall(tokio::time::Instant::now()),
        )
        .await
        .unwrap();
        drop(out);
        feeder.abort();
        (outcome, writer.await.unwrap())
    }

    fn data_chunks(frames: &[Frame]) -> Vec<u32> {
        frames
            .iter()
            .filter_map(|f| match Message::decode(f) {
                Ok((_, Message::Data(d))) => Some(d.chunk),
                _ => None,
            })
            .collect()
    }

    fn ends(frames: &[Frame]) -> Vec<(u8, u8)> {
        frames
            .iter()
            .filter_map(|f| match Message::decode(f) {
                Ok((_, Message::SessionEnd(e))) => Some((e.round, e.last)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn without_nacks_a_session_is_one_pass_and_a_final_end() {
        let repair = repair(300);
        let (o, frames) = record(content(250), repair, |_| tokio::spawn(async {})).await;
        assert_eq!(data_chunks(&frames), vec![0, 1, 2, 3, 4]);
        assert_eq!(ends(&frames), vec![(0, 0), (0, 1)]);
        assert_eq!((o.bytes, o.repair_rounds, o.repair_bytes), (250, 0, 0));
        assert!(matches!(
            Message::decode(&frames[0]),
            Ok((_, Message::SessionAnnounce(_)))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn nacked_chunks_are_resent_once_as_a_union_per_round() {
        let repair = repair(300);
        let (o, frames) = record(content(600), repair, |ctl| {
            tokio::spawn(async move {
                // Two nodes ask for overlapping ranges after the first end.
                tokio::time::sleep(Duration::from_millis(50)).await;
                ctl.send(SessionCtl::Nack {
                    from: 1,
                    ranges: vec![(2, 3)],
                })
                .await
                .unwrap();
                ctl.send(SessionCtl::Nack {
                    from: 2,
                    ranges: vec![(3, 2), (9, 5)],
                })
                .await
                .unwrap();
                // After round 1's end, one chunk is still missing.
                tokio::time::sleep(Duration::from_millis(250)).await;
                ctl.send(SessionCtl::Nack {
                    from: 1,
                    ranges: vec![(4, 1)],
                })
                .await
                .unwrap();
                // Then both have everything (they say they are verifying).
                tokio::time::sleep(Duration::from_millis(200)).await;
                ctl.send(SessionCtl::Complete { from: 1 }).await.unwrap();
                ctl.send(SessionCtl::Complete { from: 2 }).await.unwrap();
            })
        })
        .await;
        assert_eq!(
            data_chunks(&frames),
            vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 9, 4]
        );
        assert_eq!(ends(&frames), vec![(0, 0), (1, 0), (2, 0), (2, 1)]);
        assert_eq!((o.repair_rounds, o.rounds.clone()), (2, vec![4, 1]));
        assert_eq!(o.repair_bytes, 60 * 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_joiner_gets_the_announce_again() {
        let repair = repair(100);
        let (_, frames) = record(content(60 * 40), repair, |ctl| {
            tokio::spawn(async move {
                ctl.send(SessionCtl::Reannounce { from: 9 }).await.unwrap();
            })
        })
        .await;
        let announces = frames
            .iter()
            .filter(|f| matches!(Message::decode(f), Ok((_, Message::SessionAnnounce(_)))))
            .count();
        assert_eq!(announces, START_COPIES + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_start_is_sent_twice_before_the_first_chunk() {
        let (_, frames) = record(content(60 * 4), repair(100), |_| tokio::spawn(async {})).await;
        let kinds: Vec<&str> = frames
            .iter()
            .take(5)
            .map(|f| match Message::decode(f) {
                Ok((_, Message::SessionAnnounce(_))) => "announce",
                Ok((_, Message::SessionPart(_))) => "part",
                Ok((_, Message::Data(_))) => "data",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["announce", "part", "announce", "part", "data"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_joining_after_the_data_gets_all_of_it_in_repair() {
        let repair = repair(300);
        let (o, frames) = record(content(300), repair, |ctl| {
            tokio::spawn(async move {
                // After the first end (sent at once in paused time).
                tokio::time::sleep(Duration::from_millis(50)).await;
                ctl.send(SessionCtl::Reannounce { from: 9 }).await.unwrap();
            })
        })
        .await;
        assert_eq!(data_chunks(&frames), vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
        assert_eq!((o.repair_rounds, o.repair_bytes), (1, 300));
    }

    fn repair(wait_ms: u64) -> Repair {
        Repair {
            wait: Duration::from_millis(wait_ms),
            stall: Duration::from_secs(2),
            budget: Duration::from_secs(30),
            max_rounds: None,
        }
    }

    fn asked(counts: &[(u16, u32)]) -> Asked {
        counts.iter().copied().collect()
    }

    #[test]
    fn repair_goes_on_while_requesters_make_progress_and_ends_when_none_asks() {
        let t0 = Moment::ZERO;
        let mut p = RepairProgress::new(repair(400), t0);
        let s = Duration::from_secs;
        assert_eq!(p.next(&asked(&[(1, 90), (2, 80)]), false, 0, t0), Ok(()));
        // Node 1 asks for less: progress, though node 2 asks for more.
        assert_eq!(
            p.next(&asked(&[(1, 3), (2, 85)]), false, 0, t0 + s(1)),
            Ok(())
        );
        // Node 1 has everything now: it stopped asking.
        assert_eq!(p.next(&asked(&[(2, 85)]), false, 0, t0 + s(2)), Ok(()));
        assert_eq!(
            p.next(&asked(&[]), false, 0, t0 + s(3)),
            Err(RepairEnd::Complete)
        );
    }

    #[test]
    fn repair_stops_once_no_requester_makes_progress_for_the_stall_time() {
        let t0 = Moment::ZERO;
        let ms = Duration::from_millis;
        let mut p = RepairProgress::new(repair(400), t0);
        let same = asked(&[(1, 10), (2, 4)]);
        assert_eq!(p.next(&same, false, 0, t0), Ok(()));
        // The same chunks again and again: no progress.
        assert_eq!(p.next(&same, false, 0, t0 + ms(900)), Ok(()));
        assert_eq!(
            p.next(&asked(&[(1, 12), (2, 4)]), false, 0, t0 + ms(1800)),
            Ok(())
        );
        assert_eq!(
            p.next(&same, false, 0, t0 + ms(2000)),
            Err(RepairEnd::Stalled)
        );
        // A late joiner is progress: it needs everything.
        let mut p = RepairProgress::new(repair(400), t0);
        assert_eq!(p.next(&same, false, 0, t0), Ok(()));
        assert_eq!(p.next(&same, false, 0, t0 + ms(1900)), Ok(()));
        assert_eq!(p.next(&same, true, 0, t0 + ms(2100)), Ok(()));
        // So is a node asking for the first time.
        assert_eq!(
            p.next(&asked(&[(1, 10), (2, 4), (3, 60)]), false, 0, t0 + ms(3900)),
            Ok(())
        );
    }

    #[test]
    fn repair_stops_at_its_budget_or_its_round_cap() {
        let t0 = Moment::ZERO;
        let s = Duration::from_secs;
        let mut p = RepairProgress::new(repair(400), t0);
        assert_eq!(p.next(&asked(&[(1, 1000)]), false, 0, t0 + s(29)), Ok(()));
        assert_eq!(
            p.next(&asked(&[(1, 900)]), false, 0, t0 + s(30)),
            Err(RepairEnd::Budget)
        );
        let mut p = RepairProgress::new(
            Repair {
                max_rounds: Some(1),
                ..repair(400)
            },
            t0,
        );
        assert_eq!(p.next(&asked(&[(1, 1000)]), false, 0, t0), Ok(()));
        assert_eq!(
            p.next(&asked(&[(1, 10)]), false, 0, t0 + s(1)),
            Err(RepairEnd::RoundCap)
        );
        let mut none = RepairProgress::new(
            Repair {
                max_rounds: Some(0),
                ..repair(400)
            },
            t0,
        );
        assert_eq!(
            none.next(&asked(&[(1, 5)]), false, 0, t0),
            Err(RepairEnd::RoundCap)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_requester_that_keeps_missing_the_same_chunks_ends_repair_as_stalled() {
        let (o, frames) = record(content(300), repair(300), |ctl| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                for _ in 0..20 {
                    ctl.send(SessionCtl::Nack {
                        from: 1,
                        ranges: vec![(1, 1)],
                    })
                    .await
                    .unwrap();
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
            })
        })
        .await;
        assert_eq!(o.repair_end, RepairEnd::Stalled);
        assert!(o.repair_rounds >= 2, "{o:?}");
        assert_eq!(ends(&frames).last(), Some(&(o.repair_rounds, 1)));
    }

    /// [`record`] with requesters 1 and 2.
    async fn record_for_two(
        during: impl FnOnce(mpsc::Sender<SessionCtl>) -> tokio::task::JoinHandle<()>,
    ) -> (Outcome, Vec<Frame>) {
        record_plan(
            SessionPlan {
                requesters: BTreeSet::from([1, 2]),
                ..plan()
            },
            content(300),
            repair(300),
            during,
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_at_once_when_every_requester_has_every_chunk() {
        let (o, frames) = record_for_two(|ctl| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ctl.send(SessionCtl::Complete { from: 1 }).await.unwrap();
                ctl.send(SessionCtl::Complete { from: 2 }).await.unwrap();
            })
        })
        .await;
        assert_eq!(o.repair_end, RepairEnd::Complete);
        assert_eq!(ends(&frames), vec![(0, 0), (0, 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_requester_not_done_gets_the_end_again_until_it_stalls() {
        let (o, frames) = record_for_two(|ctl| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ctl.send(SessionCtl::Complete { from: 1 }).await.unwrap();
            })
        })
        .await;
        // Node 2 never says: the end goes out again, with nothing to
        // re-send, until the stall time has passed without progress.
        assert_eq!(o.repair_end, RepairEnd::Stalled);
        let ends = ends(&frames);
        assert!(ends.len() > 3, "{ends:?}");
        assert_eq!(ends.last(), Some(&(0, 1)));
        assert_eq!(o.repair_bytes, 0);
    }

    #[test]
    fn missing_sets_clip_and_sort() {
        let mut m = Missing::new(10);
        m.add(8, 5);
        m.add(1, 2);
        m.add(1, 1);
        assert_eq!(m.take(), vec![1, 2, 8, 9]);
        assert!(m.take().is_empty());
    }
}
