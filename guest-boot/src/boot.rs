//! The boot ROM's policy as a state machine: when to ask for an image, when
//! to ask for missed chunks, when to give a session up, what to do with a
//! refused image.
//!
//! It touches no device. Its inputs are events — a message from the bus
//! ([`Boot::on_message`]), the check of a complete image
//! ([`Boot::check`]), a wakeup ([`Boot::poll`]) — and the time; its
//! outputs are [`Action`]s in the order they must happen, and the time to
//! wake up next ([`Boot::wake_at`]). `main.rs` performs them on the board;
//! the unit tests below perform them on paper. Times are `mtime` ticks.

use crate::jitter::Jitter;
#[cfg(feature = "signature-check")]
use crate::receive::TrustedKey;
use crate::receive::{ChunkBitmap, ImageRam, LoadedImage, Progress, Receiver};
use board::strap::{Clock, Strap};
use board::time::ms;
use proto::msg::{Message, NodeState, Reject, Request, ResetCause, Status};

/// Reported in every `Request`.
pub const BOOT_ROM_VERSION: u16 = 1;
/// First retry interval; it doubles up to `RETRY_MAX_MS`.
pub const RETRY_BASE_MS: u64 = 250;
/// Longest retry interval.
pub const RETRY_MAX_MS: u64 = 2000;
/// A session quiet this long with chunks missing gets a `Nack` even without
/// an end: the end itself may have been lost. Shorter than the master's wait
/// for `Nack`s after an end.
pub const NACK_QUIET_MS: u64 = 250;
/// A session that sends nothing for this long is abandoned.
pub const SESSION_SILENCE_MS: u64 = 3000;
/// Image bytes the driver hashes between two looks for frames: a fraction
/// of a millisecond, while a virtio-console's 16 buffers hold many frames.
pub const MEASURE_SLICE: u32 = 2048;
/// Most actions one event gives: four `Nack`s, a `Request` and the crypto
/// test (a wakeup that sends the last `Nack`s of a session it joined
/// unasked, gives it up and asks for the first time).
pub const MAX_ACTIONS: usize = 6;

/// Something the node must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this message from the node's id.
    Send(Message<'static>),
    /// Every chunk is in and measured: run [`Boot::check`].
    Verify,
    /// The image passed every check: fill the app's handoff record in. It
    /// comes before the `Handoff` status, so a host that looks when the bus
    /// shows that status finds the record final.
    Record(LoadedImage),
    /// Start the recorded image: send what is queued and jump.
    HandOff(LoadedImage),
    /// The first `Request` is out: run the crypto known-answer tests
    /// ([`crate::kat`]) and report them with [`Boot::crypto_tested`]. They
    /// run while the node waits for its session, not before it asks.
    TestCrypto,
    /// The self-test failed: send what is queued and stop.
    Halt,
}

/// The actions of one event, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Actions {
    list: [Option<Action>; MAX_ACTIONS],
    len: usize,
}

impl Actions {
    /// The actions, in order, read in place (the list is large to copy).
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.list[..self.len].iter().flatten()
    }

    /// Empties the list for reuse (what sat in it is no longer read).
    fn clear(&mut self) {
        self.len = 0;
    }

    /// Whether there are none (after most frames of a session).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether one of them starts the image.
    pub fn hands_off(&self) -> bool {
        self.iter().any(|a| matches!(a, Action::HandOff(_)))
    }

    fn push(&mut self, a: Action) {
        debug_assert!(self.len < MAX_ACTIONS, "more actions than MAX_ACTIONS");
        if let Some(slot) = self.list.get_mut(self.len) {
            *slot = Some(a);
            self.len += 1;
        }
    }
}

impl IntoIterator for Actions {
    type Item = Action;
    type IntoIter =
        core::iter::Flatten<core::iter::Take<core::array::IntoIter<Option<Action>, MAX_ACTIONS>>>;

    /// The first `len`: slots past it may hold a reused list's old actions.
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter().take(self.len).flatten()
    }
}

/// Who the node is and what it trusts.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Its strapping words.
    pub strap: Strap,
    /// Why it is in the boot ROM.
    pub cause: ResetCause,
    /// The key images must be signed with.
    #[cfg(feature = "signature-check")]
    pub trusted: TrustedKey,
}

/// The first actions of a boot: report the self-test (`selftest`: failed
/// bits, zero for a pass). A node that failed it reports that too and
/// stays minimal.
pub fn report_self_test(setup: &Setup, selftest: u8) -> Actions {
    self_test_actions(&setup.strap, setup.cause, selftest)
}

fn self_test_actions(strap: &Strap, cause: ResetCause, selftest: u8) -> Actions {
    let status = |state: NodeState| {
        Action::Send(Message::Status(Status {
            node_type: strap.node_type,
            state: state as u8,
            selftest,
            reset_cause: cause as u8,
            session: 0,
            received: 0,
            total: 0,
        }))
    };
    let mut out = Actions::default();
    out.push(status(NodeState::SelfTest));
    if selftest != 0 {
        out.push(status(NodeState::Failed));
        out.push(Action::Halt);
    }
    out
}

/// A boot in progress, from the passed self-test to the handoff.
pub struct Boot<'b> {
    strap: Strap,
    cause: ResetCause,
    rx: Receiver<'b>,
    jitter: Jitter,
    /// Requests sent so far.
    attempt: u16,
    /// When to ask again, while no session of ours runs.
    next_request: u64,
    /// When a frame of our session last came (as of the end of its batch).
    last_session_frame: u64,
    /// Whether this quiet spell of the session has already caused a `Nack`.
    asked_in_quiet: bool,
    /// Whether the batch since the last poll held frames of our session.
    session_frames: bool,
    /// Whether the crypto test was asked for (with the first `Request`).
    crypto_test_asked: bool,
}

impl<'b> Boot<'b> {
    /// Starts asking at once (`now`); `seed` (nonzero) seeds the jitter.
    pub fn new(setup: Setup, bitmap: &'b mut ChunkBitmap, seed: u32, now: u64) -> Boot<'b> {
        Boot {
            strap: setup.strap,
            cause: setup.cause,
            rx: Receiver::new(
                setup.strap,
                #[cfg(feature = "signature-check")]
                setup.trusted,
                bitmap,
            ),
            jitter: Jitter(seed),
            attempt: 0,
            next_request: now,
            last_session_frame: 0,
            asked_in_quiet: false,
            session_frames: false,
            crypto_test_asked: false,
        }
    }

    fn status(&self, state: NodeState) -> Action {
        let (session, received, total) = self.rx.progress();
        Action::Send(Message::Status(Status {
            node_type: self.strap.node_type,
            state: state as u8,
            selftest: 0,
            reset_cause: self.cause as u8,
            session,
            received,
            total,
        }))
    }

    /// A refused image: say why, and ask again after about the first retry
    /// interval.
    fn rejected(&mut self, reject: Reject, now: u64, out: &mut Actions) {
        out.push(Action::Send(Message::Reject(reject)));
        self.next_request = now + ms(self.jitter.spread(RETRY_BASE_MS));
    }

    /// A message from the bus: its actions go to `out`, which it clears
    /// first (a frame's are mostly none, and the list is kept rather than
    /// built and copied out per frame). `now` reads the clock, which only
    /// the few messages that start a timer need (the driver reads it once
    /// per batch of frames otherwise); `ram` is the image region, where
    /// image bytes are written at once and read back to be measured.
    pub fn on_message(
        &mut self,
        m: &Message<'_>,
        mut now: impl FnMut() -> u64,
        ram: &mut impl ImageRam,
        out: &mut Actions,
    ) {
        out.clear();
        let random = self.jitter.next();
        match self.rx.on_message(m, random, &mut now, ram) {
            Progress::Ignored => {}
            Progress::Accepted => self.session_frames = true,
            Progress::Started => {
                out.push(self.status(NodeState::Receiving));
                self.session_frames = true;
            }
            Progress::Rejected(reject) => self.rejected(reject, now(), out),
            Progress::Complete => {
                out.push(self.status(NodeState::Verifying));
                out.push(Action::Verify);
            }
        }
    }

    /// The check `Action::Verify` asked for, over the image measured as it
    /// came (`ram`: the image region): hand off if the image passes every
    /// check, else refuse it.
    pub fn check(&mut self, ram: &impl ImageRam, now: impl FnOnce() -> u64) -> Actions {
        let mut out = Actions::default();
        match self.rx.verify(ram) {
            Ok(image) => {
                out.push(Action::Record(image));
                out.push(self.status(NodeState::Handoff));
                out.push(Action::HandOff(image));
            }
            Err(reject) => self.rejected(reject, now(), &mut out),
        }
        out
    }

    /// Time between frames: hashes at most `max` more bytes of the image
    /// received so far, in order, from `ram` (the image region), or, with
    /// nothing to hash and the manifest in, checks its signature (on the
    /// wall clock: on the virtual clock a node that long away from its
    /// device would hold the fleet up, so it checks in [`Boot::check`]).
    /// Whether it did anything (then the driver looks for frames again
    /// before doing more).
    pub fn measure(&mut self, ram: &impl ImageRam, max: u32) -> bool {
        self.rx.measure(ram, max) || (self.strap.clock == Clock::Wall && self.rx.check_signature())
    }

    /// A wakeup, after each batch of frames and whenever the timer fires:
    /// `Nack`s that are due, giving up a silent session, the next `Request`.
    pub fn poll(&mut self, now: u64) -> Actions {
        let mut out = Actions::default();
        if core::mem::take(&mut self.session_frames) {
            self.last_session_frame = now;
            self.asked_in_quiet = false;
        }
        let quiet_at = self.last_session_frame + ms(NACK_QUIET_MS);
        if self.rx.active() && !self.asked_in_quiet && now >= quiet_at {
            self.asked_in_quiet = true;
            self.rx.quiet(now, self.jitter.next());
        }
        self.rx
            .take_nacks(now, |nack| out.push(Action::Send(Message::Nack(nack))));
        if self.rx.active() && now > self.last_session_frame + ms(SESSION_SILENCE_MS) {
            // The master went quiet mid-session: ask again.
            self.rx.abandon();
            self.next_request = now;
        }
        if !self.rx.active() && now >= self.next_request {
            self.attempt = self.attempt.saturating_add(1);
            out.push(Action::Send(Message::Request(Request {
                node_type: self.strap.node_type,
                flags: 0,
                boot_rom_version: BOOT_ROM_VERSION,
                attempt: self.attempt,
                min_version: self.strap.min_version,
            })));
            let backoff = RETRY_BASE_MS << (self.attempt.min(8) - 1).min(3);
            self.next_request = now + ms(self.jitter.spread(backoff.min(RETRY_MAX_MS)));
            if !core::mem::replace(&mut self.crypto_test_asked, true) {
                out.push(Action::TestCrypto);
            }
        }
        out
    }

    /// The crypto tests' result (`failed`: [`crate::kat`]'s bits, zero for a
    /// pass). A failure is a failed self-test: the node reports it and
    /// stops, as after the power-on self-test.
    pub fn crypto_tested(&self, failed: u8) -> Actions {
        if failed == 0 {
            return Actions::default();
        }
        self_test_actions(&self.strap, self.cause, failed)
    }

    /// When the next [`poll`](Self::poll) is due if no frame comes first:
    /// while a session runs, the earliest of a pending `Nack`, the quiet
    /// `Nack` and giving up; otherwise the next `Request`.
    pub fn wake_at(&self) -> u64 {
        if !self.rx.active() {
            return self.next_request;
        }
        let silence = self.last_session_frame + ms(SESSION_SILENCE_MS) + 1;
        let quiet = if self.asked_in_quiet {
            silence
        } else {
            self.last_session_frame + ms(NACK_QUIET_MS)
        };
        self.rx
            .nack_due()
            .map_or(silence, |at| at.min(silence))
            .min(quiet)
    }
}
