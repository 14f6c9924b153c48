//! The boot state machine on the host, without QEMU: a node on paper (`Sim`)
//! performs the machine's actions the way `main.rs` does on the board,
//! against a made-up clock and a `Vec` for the image region. Times below
//! are milliseconds since the node started asking.

use crate::boot::{
    Action, Actions, Boot, MEASURE_SLICE, NACK_QUIET_MS, RETRY_BASE_MS, RETRY_MAX_MS,
    SESSION_SILENCE_MS, Setup, report_self_test,
};
use crate::receive::{
    ChunkBitmap, ImageRam, LoadedImage, MAX_CHUNKS, NACK_BACKOFF_TICKS, TrustedKey,
};
use board::memory::{IMAGE_BASE, IMAGE_END};
use board::strap::{Strap, Transport};
use board::time::ms;
use images::manifest::{MANIFEST_LEN, Manifest};
use images::sha256::{Digest, Sha256};
use images::sign::SigningKey;
use proto::msg::*;

const NODE: u16 = 7;
const TYPE: NodeType = NodeType::Drive;
const MIN_VERSION: u32 = 0x0001_0000;
const CHUNK: usize = FD_CHUNK;
/// Bytes of the image region the tests use.
const RAM: usize = 64 * 1024;

fn strap() -> Strap {
    Strap {
        node: NODE,
        node_type: TYPE as u8,
        segment: 0,
        min_version: MIN_VERSION,
        seed: 1,
        transport: Transport::Uart,
        clock: board::strap::Clock::Wall,
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed([seed; 32]).unwrap()
}

fn setup() -> Setup {
    let k = key(1);
    Setup {
        strap: strap(),
        cause: ResetCause::PowerOn,
        trusted: TrustedKey {
            key: k.public_key(),
            id: k.key_id(),
        },
    }
}

/// An image file (manifest, then payload) for our type, signed with `signer`
/// (unsigned with `None`).
fn image_with(payload_len: usize, version: u32, signer: Option<&SigningKey>) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + 3) as u8).collect();
    let mut name = [0u8; 16];
    name[..5].copy_from_slice(b"drive");
    let mut m = Manifest {
        node_type: TYPE,
        version,
        name,
        load_addr: IMAGE_BASE,
        entry: IMAGE_BASE,
        size: payload_len as u32,
        mem_size: payload_len as u32,
        sha256: Sha256::digest(&payload).into(),
        key_id: [0; 8],
        signature: [0; 64],
    };
    if let Some(k) = signer {
        k.sign_manifest(&mut m);
    }
    [&m.to_bytes()[..], &payload].concat()
}

/// A good image of `chunks` chunks (manifest included).
fn image(chunks: usize) -> Vec<u8> {
    image_with(
        chunks * CHUNK - MANIFEST_LEN - 7,
        MIN_VERSION,
        Some(&key(1)),
    )
}

/// One session carrying `object` as our type's only part.
struct Session<'o> {
    number: u32,
    object: &'o [u8],
}

impl<'o> Session<'o> {
    fn announce(&self) -> Message<'static> {
        Message::SessionAnnounce(SessionAnnounce {
            session: self.number,
            window: 1,
            mode: MODE_SELECTED,
            parts: 1,
            chunk_size: CHUNK as u8,
            object_len: self.object.len() as u32,
            total_chunks: self.chunks() as u32,
            target: BROADCAST,
        })
    }

    fn part(&self) -> SessionPart {
        SessionPart {
            session: self.number,
            index: 0,
            node_type: TYPE as u8,
            manifest_len: MANIFEST_LEN as u16,
            offset: 0,
            len: self.object.len() as u32,
            load_addr: IMAGE_BASE,
            version: MIN_VERSION,
        }
    }

    fn start(&self) -> [Message<'static>; 2] {
        [self.announce(), Message::SessionPart(self.part())]
    }

    fn chunks(&self) -> usize {
        self.object.len().div_ceil(CHUNK)
    }

    fn data(&self, i: usize) -> Message<'o> {
        let end = ((i + 1) * CHUNK).min(self.object.len());
        Message::Data(Data {
            session: self.number as u8,
            chunk: i as u32,
            payload: &self.object[i * CHUNK..end],
        })
    }

    /// Every chunk but those in `missing`.
    fn data_except(&self, missing: &[usize]) -> Vec<Message<'o>> {
        (0..self.chunks())
            .filter(|i| !missing.contains(i))
            .map(|i| self.data(i))
            .collect()
    }

    fn end(&self, last: bool) -> Message<'static> {
        Message::SessionEnd(SessionEnd {
            session: self.number,
            total_chunks: self.chunks() as u32,
            round: 0,
            last: last as u8,
        })
    }
}

/// The image region from `IMAGE_BASE`, on paper.
struct Ram {
    bytes: Vec<u8>,
    /// Bytes read back to be measured, and those of the last read.
    loaded: usize,
    last_load: usize,
    /// A stored byte at this offset comes back flipped: RAM that does not
    /// keep what was written.
    faulty: Option<usize>,
}

impl ImageRam for Ram {
    fn store(&mut self, addr: u64, bytes: &[u8]) {
        assert!(addr >= IMAGE_BASE && addr + bytes.len() as u64 <= IMAGE_END);
        let at = (addr - IMAGE_BASE) as usize;
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        if let Some(bad) = self.faulty.filter(|b| (at..at + bytes.len()).contains(b)) {
            self.bytes[bad] ^= 0x01;
        }
    }

    fn load(&self, addr: u64, len: u32) -> &[u8] {
        let at = (addr - IMAGE_BASE) as usize;
        &self.bytes[at..at + len as usize]
    }
}

/// Counts what the machine reads back, around a `Ram`.
struct Counted<'r>(&'r mut Ram, std::cell::Cell<(usize, usize)>);

impl ImageRam for Counted<'_> {
    fn store(&mut self, addr: u64, bytes: &[u8]) {
        self.0.store(addr, bytes)
    }

    fn load(&self, addr: u64, len: u32) -> &[u8] {
        let (total, _) = self.1.get();
        self.1.set((total + len as usize, len as usize));
        self.0.load(addr, len)
    }
}

/// A node on paper.
struct Sim {
    boot: Boot<'static>,
    ram: Ram,
    now: u64,
    /// What it did, with the time (ticks).
    log: Vec<(u64, Action)>,
    /// The bits the crypto tests report when asked.
    crypto_failed: u8,
}

impl Sim {
    fn new(seed: u32) -> Sim {
        Sim::with(setup(), seed)
    }

    fn with(setup: Setup, seed: u32) -> Sim {
        let bitmap: Box<ChunkBitmap> = vec![0u64; MAX_CHUNKS / 64].try_into().unwrap();
        Sim {
            boot: Boot::new(setup, Box::leak(bitmap), seed, 0),
            ram: Ram {
                bytes: vec![0; RAM],
                loaded: 0,
                last_load: 0,
                faulty: None,
            },
            now: 0,
            log: Vec::new(),
            crypto_failed: 0,
        }
    }

    /// Performs `actions` as `main.rs` does; returns them.
    fn perform(&mut self, actions: impl IntoIterator<Item = Action>) -> Vec<Action> {
        let mut done = Vec::new();
        for a in actions {
            self.log.push((self.now, a));
            done.push(a);
            if let Action::TestCrypto = a {
                let next = self.boot.crypto_tested(self.crypto_failed);
                done.extend(self.perform(next));
            }
            if let Action::Verify = a {
                let now = self.now;
                let ram = Counted(&mut self.ram, Default::default());
                let next = self.boot.check(&ram, || now);
                let (loaded, _) = ram.1.get();
                (self.ram.loaded, self.ram.last_load) = (self.ram.loaded + loaded, loaded);
                done.extend(self.perform(next));
            }
        }
        done
    }

    /// One batch of frames at `t` ms, then the wakeup after it.
    fn batch(&mut self, t: u64, frames: &[Message]) -> Vec<Action> {
        self.now = ms(t);
        let mut done = Vec::new();
        for m in frames {
            let now = self.now;
            let mut actions = Actions::default();
            self.boot.on_message(m, || now, &mut self.ram, &mut actions);
            self.ram.last_load = 0;
            done.extend(self.perform(actions));
        }
        let actions = self.boot.poll(self.now);
        done.extend(self.perform(actions));
        // No frame waits until the next batch: time to measure.
        while self.measure(MEASURE_SLICE) {}
        done
    }

    /// What the driver does between frames; counts what it read back.
    fn measure(&mut self, max: u32) -> bool {
        let ram = Counted(&mut self.ram, Default::default());
        let more = self.boot.measure(&ram, max);
        let (loaded, _) = ram.1.get();
        self.ram.loaded += loaded;
        more
    }

    /// Sleeps and wakes as the machine asks, with no frames, until `t` ms.
    fn run_until(&mut self, t: u64) -> Vec<(u64, Action)> {
        let from = self.log.len();
        loop {
            let wake = self.boot.wake_at();
            if wake > ms(t) {
                self.now = ms(t);
                break;
            }
            self.now = wake.max(self.now);
            let actions = self.boot.poll(self.now);
            self.perform(actions);
        }
        self.log[from..].to_vec()
    }
}

/// An action in a few words, for tables.
fn show(a: &Action) -> String {
    match a {
        Action::Send(Message::Request(r)) => format!("Request #{}", r.attempt),
        Action::Send(Message::Nack(n)) => format!("Nack {:?}", &n.ranges[..n.count as usize]),
        Action::Send(Message::Status(s)) => {
            format!("Status {:?}", NodeState::from_code(s.state).unwrap())
        }
        Action::Send(Message::Reject(r)) => {
            format!("Reject {:?}", RejectReason::from_code(r.reason).unwrap())
        }
        Action::Send(m) => format!("{:?}", m.kind()),
        Action::Verify => "Verify".into(),
        Action::TestCrypto => "TestCrypto".into(),
        Action::Record(_) => "Record".into(),
        Action::HandOff(_) => "HandOff".into(),
        Action::Halt => "Halt".into(),
    }
}

fn shown(actions: &[Action]) -> Vec<String> {
    actions.iter().map(show).collect()
}

/// The requests in a log, as (ms, attempt).
fn requests(log: &[(u64, Action)]) -> Vec<(f64, u16)> {
    log.iter()
        .filter_map(|(t, a)| match a {
            Action::Send(Message::Request(r)) => Some((*t as f64 / ms(1) as f64, r.attempt)),
            _ => None,
        })
        .collect()
}

fn nacks(log: &[(u64, Action)]) -> Vec<(f64, String)> {
    log.iter()
        .filter(|(_, a)| matches!(a, Action::Send(Message::Nack(_))))
        .map(|(t, a)| (*t as f64 / ms(1) as f64, show(a)))
        .collect()
}

/// Whether `dt_ms` is `base_ms` spread by the jitter, [0.75, 1.25).
fn jittered(dt_ms: f64, base_ms: u64) -> bool {
    dt_ms >= base_ms as f64 * 0.75 && dt_ms < base_ms as f64 * 1.25
}

#[test]
fn the_self_test_is_reported_and_a_failed_one_halts_the_node() {
    let cases: [(u8, &[&str]); 3] = [
        (0, &["Status SelfTest"]),
        (1, &["Status SelfTest", "Status Failed", "Halt"]),
        (6, &["Status SelfTest", "Status Failed", "Halt"]),
    ];
    for (bits, want) in cases {
        let actions: Vec<Action> = report_self_test(&setup(), bits).into_iter().collect();
        assert_eq!(shown(&actions), want, "self-test bits {bits}");
        for a in actions {
            if let Action::Send(Message::Status(s)) = a {
                assert_eq!(
                    (s.selftest, s.reset_cause),
                    (bits, ResetCause::PowerOn as u8)
                );
            }
        }
    }
}

/// The retry policy: at once, then 250 ms doubling up to 2 s, each spread
/// by the jitter; nothing in between.
#[test]
fn requests_back_off_from_250_ms_doubling_to_2_s_with_jitter() {
    let bases = [RETRY_BASE_MS, 500, 1000, RETRY_MAX_MS, 2000, 2000, 2000];
    let mut first_gaps = Vec::new();
    for seed in [1, 0xDEAD_BEEF, 12_345, 0x8000_0001, 977] {
        let mut sim = Sim::new(seed);
        let log = sim.run_until(12_000);
        let asked = requests(&log);
        assert_eq!(
            asked.len() + 1,
            log.len(),
            "only requests, and the crypto test once: {log:?}"
        );
        assert_eq!(asked[0], (0.0, 1), "the first request goes out at once");
        assert_eq!(log[1], (0, Action::TestCrypto), "then the crypto test");
        for (i, base) in bases.iter().enumerate() {
            let (t0, n0) = asked[i];
            let (t1, n1) = asked[i + 1];
            assert_eq!(n1, n0 + 1, "attempts count up");
            assert!(
                jittered(t1 - t0, *base),
                "seed {seed}: request {n1} came {} ms after the last, base {base}",
                t1 - t0
            );
        }
        first_gaps.push(asked[1].0);
        for (_, a) in log.iter().filter(|(_, a)| *a != Action::TestCrypto) {
            let Action::Send(Message::Request(r)) = a else {
                unreachable!()
            };
            assert_eq!(
                (r.node_type, r.boot_rom_version, r.min_version, r.flags),
                (TYPE as u8, 1, MIN_VERSION, 0)
            );
        }
    }
    first_gaps.dedup();
    assert!(
        first_gaps.len() > 1,
        "the jitter spreads nodes apart: {first_gaps:?}"
    );
}

/// A failed crypto test is a failed self-test: the node says so with the
/// test's bits, stops, and never asks again.
#[test]
fn a_failed_crypto_test_reports_its_bits_and_halts() {
    let mut sim = Sim::new(1);
    sim.crypto_failed = crate::kat::SIGNATURE_FAILED;
    let done = sim.batch(0, &[]);
    assert_eq!(
        shown(&done),
        [
            "Request #1",
            "TestCrypto",
            "Status SelfTest",
            "Status Failed",
            "Halt"
        ]
    );
    let Action::Send(Message::Status(s)) = done[2] else {
        unreachable!()
    };
    assert_eq!(s.selftest, crate::kat::SIGNATURE_FAILED);
    // A pass adds nothing.
    let mut sim = Sim::new(1);
    assert_eq!(shown(&sim.batch(0, &[])), ["Request #1", "TestCrypto"]);
}

#[test]
fn a_wakeup_before_the_next_request_is_due_sends_nothing() {
    let mut sim = Sim::new(1);
    assert_eq!(shown(&sim.batch(0, &[])), ["Request #1", "TestCrypto"]);
    let due = sim.boot.wake_at();
    assert!(due > ms(RETRY_BASE_MS) / 2);
    assert!(sim.boot.poll(due - 1).into_iter().next().is_none());
    let actions = sim.boot.poll(due);
    assert_eq!(shown(&sim.perform(actions)), ["Request #2"]);
}

#[test]
fn sessions_not_for_us_change_nothing() {
    let object = image(4);
    let ours = Session {
        number: 3,
        object: &object,
    };
    let mut other_type = ours.part();
    other_type.node_type = NodeType::Comm as u8;
    let mut unicast = ours.announce();
    if let Message::SessionAnnounce(a) = &mut unicast {
        a.mode = MODE_UNICAST;
        a.target = NODE + 1;
    }
    let stray = Session {
        number: 4,
        object: &object,
    };
    let cases: [(&str, Vec<Message>); 4] = [
        (
            "another type's part",
            vec![ours.announce(), Message::SessionPart(other_type)],
        ),
        (
            "another node's unicast",
            vec![unicast, Message::SessionPart(ours.part())],
        ),
        (
            "a part without its announce",
            vec![Message::SessionPart(ours.part())],
        ),
        ("data of no session", stray.data_except(&[])),
    ];
    for (what, frames) in cases {
        let mut sim = Sim::new(1);
        sim.batch(0, &[]);
        assert_eq!(
            shown(&sim.batch(100, &frames)),
            Vec::<String>::new(),
            "{what}"
        );
        let asked = requests(&sim.run_until(5000));
        assert!(asked.len() >= 3, "{what}: the node keeps asking: {asked:?}");
        assert_eq!(sim.ram.bytes[..16], [0; 16], "{what}: nothing stored");
    }
}

#[test]
fn a_complete_image_is_checked_then_handed_off() {
    let object = image(10);
    let s = Session {
        number: 9,
        object: &object,
    };
    let mut sim = Sim::new(1);
    sim.batch(0, &[]);
    assert_eq!(shown(&sim.batch(50, &s.start())), ["Status Receiving"]);
    let mut frames = s.data_except(&[]);
    let last = frames.pop().unwrap();
    assert_eq!(shown(&sim.batch(60, &frames)), Vec::<String>::new());
    let done = sim.batch(70, &[last]);
    assert_eq!(
        shown(&done),
        [
            "Status Verifying",
            "Verify",
            "Record",
            "Status Handoff",
            "HandOff"
        ]
    );
    let payload = &object[MANIFEST_LEN..];
    assert_eq!(
        &sim.ram.bytes[..payload.len()],
        payload,
        "the payload is in RAM"
    );
    let (Action::Record(recorded), Action::HandOff(image)) = (done[2], done[4]) else {
        unreachable!()
    };
    assert_eq!(recorded, image, "the record names the image it starts");
    assert_eq!(
        image,
        LoadedImage {
            session: 9,
            version: MIN_VERSION,
            load_addr: IMAGE_BASE,
            size: payload.len() as u32,
            entry: IMAGE_BASE,
            name: *b"drive\0\0\0\0\0\0\0\0\0\0\0",
            digest: Sha256::digest(payload).into(),
        }
    );
    for a in &done {
        if let Action::Send(Message::Status(st)) = a {
            assert_eq!((st.session, st.received, st.total), (9, 10, 10));
        }
    }
    assert_eq!(requests(&sim.log).len(), 1, "no request while receiving");
}

/// The digest is measured from RAM between frames, in order: each byte
/// once, so with time between frames the check after the last chunk reads
/// only that chunk's bytes. Chunks out of order wait for the gap before
/// them to close; each look between frames reads at most a slice.
#[test]
fn the_image_is_measured_in_order_while_it_comes() {
    let object = image(10);
    let s = Session {
        number: 9,
        object: &object,
    };
    let payload = &object[MANIFEST_LEN..];
    let digest: [u8; 32] = Sha256::digest(payload).into();
    let hands_off = |done: &[Action]| {
        done.iter()
            .find_map(|a| match a {
                Action::HandOff(image) => Some(image.digest),
                _ => None,
            })
            .expect("handed off")
    };
    // In order: the manifest's chunks measure nothing, the first chunk
    // past it the payload's bytes it holds.
    let mut sim = Sim::new(1);
    sim.batch(0, &s.start());
    sim.batch(10, &[s.data(0), s.data(1)]);
    assert_eq!(sim.ram.loaded, 0);
    sim.batch(15, &[s.data(2)]);
    assert_eq!(sim.ram.loaded, 3 * CHUNK - MANIFEST_LEN);
    sim.boot
        .on_message(&s.data(3), || 0, &mut sim.ram, &mut Actions::default());
    assert!(sim.measure(7));
    assert_eq!(
        sim.ram.loaded,
        3 * CHUNK - MANIFEST_LEN + 7,
        "a slice at most"
    );
    let mut frames = s.data_except(&[0, 1, 2, 3]);
    let last = frames.pop().unwrap();
    sim.batch(20, &frames);
    assert_eq!(sim.ram.loaded, 9 * CHUNK - MANIFEST_LEN);
    let done = sim.batch(30, &[last]);
    assert_eq!(
        sim.ram.last_load,
        payload.len() - (9 * CHUNK - MANIFEST_LEN)
    );
    assert_eq!(sim.ram.loaded, payload.len(), "each byte once");
    assert_eq!(hands_off(&done), digest);
    // Backwards: nothing is measured until the first chunk closes the gap.
    let mut sim = Sim::new(1);
    sim.batch(0, &s.start());
    let mut frames = s.data_except(&[]);
    frames.reverse();
    let first = frames.pop().unwrap();
    sim.batch(10, &frames);
    assert_eq!(sim.ram.loaded, 0);
    let done = sim.batch(20, &[first]);
    assert_eq!(sim.ram.loaded, payload.len(), "each byte once");
    assert_eq!(hands_off(&done), digest);
}

/// On the wall clock the signature is checked between frames once the
/// manifest is in, once; the image's bytes come first.
#[test]
fn the_signature_is_checked_between_frames_once_the_manifest_is_in() {
    let object = image(10);
    let s = Session {
        number: 9,
        object: &object,
    };
    let mut sim = Sim::new(1);
    let take = |sim: &mut Sim, m: Message| {
        let mut actions = Actions::default();
        sim.boot.on_message(&m, || 0, &mut sim.ram, &mut actions);
        sim.perform(actions);
    };
    for m in s.start().into_iter().chain([s.data(0), s.data(1)]) {
        take(&mut sim, m);
    }
    assert!(
        !sim.measure(u32::MAX),
        "120 of 160 manifest bytes: nothing to do"
    );
    take(&mut sim, s.data(2));
    assert!(sim.measure(u32::MAX), "the payload bytes of chunk 2");
    assert_eq!(sim.ram.loaded, 3 * CHUNK - MANIFEST_LEN);
    assert!(sim.measure(u32::MAX), "then the signature");
    assert!(!sim.measure(u32::MAX), "once");
    let done = sim.batch(10, &s.data_except(&[0, 1, 2]));
    assert_eq!(
        shown(&done),
        [
            "Status Verifying",
            "Verify",
            "Record",
            "Status Handoff",
            "HandOff"
        ]
    );
    // On the virtual clock it waits for the check after the last chunk.
    let mut on_virtual = setup();
    on_virtual.strap.clock = board::strap::Clock::Virtual;
    let mut sim = Sim::with(on_virtual, 1);
    for m in s.start().into_iter().chain((0..3).map(|i| s.data(i))) {
        take(&mut sim, m);
    }
    assert!(sim.measure(u32::MAX));
    assert!(!sim.measure(u32::MAX), "no signature between frames");
}

/// What is measured is what RAM holds, not what came on the bus: RAM that
/// does not keep a byte fails the digest check.
#[test]
fn a_byte_ram_did_not_keep_fails_the_digest_check() {
    let object = image(10);
    let s = Session {
        number: 9,
        object: &object,
    };
    let mut sim = Sim::new(1);
    sim.ram.faulty = Some(200);
    sim.batch(0, &s.start());
    let done = sim.batch(10, &s.data_except(&[]));
    let reject = done
        .iter()
        .find_map(|a| match a {
            Action::Send(Message::Reject(r)) => Some(*r),
            _ => None,
        })
        .expect("refused");
    assert_eq!(reject.reason, RejectReason::DigestMismatch as u8);
    let mut held = object[MANIFEST_LEN..].to_vec();
    held[200] ^= 0x01;
    let measured: [u8; 32] = Sha256::digest(&held).into();
    assert_eq!(reject.measured, measured[..16]);
}

type Edit = fn(&mut Vec<u8>, &mut SessionPart);

/// Sends a session of an image changed by `edit` to a node that asked at
/// 0 ms; checks that it refuses it for `reason` after `before`, and asks
/// again about 250 ms later. Returns the `Reject`.
fn refusal(what: &str, edit: Edit, before: &[&str], reason: RejectReason) -> (Reject, Vec<u8>) {
    let mut object = image(6);
    let mut part = Session {
        number: 5,
        object: &object,
    }
    .part();
    edit(&mut object, &mut part);
    let s = Session {
        number: 5,
        object: &object,
    };
    let mut sim = Sim::new(1);
    sim.batch(0, &[]);
    // The manifest's chunks first: between the batches the node checks
    // the signature early, and reports it in its place all the same.
    let mut frames = vec![s.announce(), Message::SessionPart(part)];
    frames.extend((0..3).map(|i| s.data(i)));
    let mut done = sim.batch(50, &frames);
    done.extend(sim.batch(50, &s.data_except(&[0, 1, 2])));
    let mut want: Vec<String> = before.iter().map(|s| s.to_string()).collect();
    want.push(format!("Reject {reason:?}"));
    assert_eq!(shown(&done), want, "{what}");
    let Some(Action::Send(Message::Reject(r))) = done.last() else {
        unreachable!()
    };
    assert_eq!((r.session, r.node_type), (5, TYPE as u8), "{what}");
    let asked = requests(&sim.run_until(1000));
    assert_eq!(asked[0].1, 2, "{what}: asks again");
    let after = asked[0].0 - 50.0;
    assert!(jittered(after, RETRY_BASE_MS), "{what}: after {after} ms");
    (*r, object)
}

/// What to do with a refused image: say why, and ask again after about
/// 250 ms. A part that cannot be ours is refused as it starts.
#[test]
fn a_part_that_cannot_be_ours_is_refused_at_once() {
    let cases: [(&str, Edit, RejectReason); 4] = [
        (
            "manifest length",
            |_, p| p.manifest_len = 128,
            RejectReason::BadManifest,
        ),
        (
            "part past the object",
            |_, p| p.offset = 1,
            RejectReason::Inconsistent,
        ),
        (
            "outside the image region",
            |_, p| p.load_addr = IMAGE_END,
            RejectReason::OutOfRegion,
        ),
        (
            "version below the floor",
            |_, p| p.version = MIN_VERSION - 1,
            RejectReason::VersionTooLow,
        ),
    ];
    for (what, edit, reason) in cases {
        refusal(what, edit, &[], reason);
    }
}

fn sign_with_other_key(o: &mut Vec<u8>, _: &mut SessionPart) {
    let mut m = Manifest::parse(o).unwrap();
    key(2).sign_manifest(&mut m);
    o[..MANIFEST_LEN].copy_from_slice(&m.to_bytes());
}

/// The rest is refused once every chunk is in, checked in this order:
/// manifest, type, agreement with the part, digest, signature.
#[test]
fn a_complete_image_that_fails_a_check_is_refused() {
    let checked = &["Status Receiving", "Status Verifying", "Verify"];
    let cases: [(&str, Edit, RejectReason); 6] = [
        (
            "a changed payload",
            |o, _| o[MANIFEST_LEN + 5] ^= 1,
            RejectReason::DigestMismatch,
        ),
        (
            "another type's image",
            |o, _| o[8] = NodeType::Comm as u8,
            RejectReason::WrongType,
        ),
        (
            "a version the part does not say",
            |_, p| p.version += 1,
            RejectReason::Inconsistent,
        ),
        (
            "signed by another key",
            sign_with_other_key,
            RejectReason::BadSignature,
        ),
        (
            "unsigned",
            |o, _| o[88..MANIFEST_LEN].fill(0),
            RejectReason::BadSignature,
        ),
        (
            "unsigned, with a changed payload",
            |o, _| {
                o[88..MANIFEST_LEN].fill(0);
                o[MANIFEST_LEN] ^= 1;
            },
            RejectReason::DigestMismatch,
        ),
    ];
    for (what, edit, reason) in cases {
        let (r, object) = refusal(what, edit, checked, reason);
        if reason == RejectReason::BadSignature {
            assert_eq!(r.measured[..8], key(1).key_id(), "{what}: the key we trust");
            let signer = if what == "unsigned" {
                [0; 8]
            } else {
                key(2).key_id()
            };
            assert_eq!(r.expected[..8], signer, "{what}: the key that signed");
        }
        if reason == RejectReason::DigestMismatch {
            let measured: [u8; 32] = Sha256::digest(&object[MANIFEST_LEN..]).into();
            assert_eq!(r.measured, measured[..16], "{what}");
            assert_eq!(r.expected, object[56..72], "{what}: the manifest's digest");
        }
    }
}

/// The `Nack` policy after an end: ask for exactly what is missing, after a
/// random wait under 120 ms, unless another node's `Nack` already covers it.
#[test]
fn missing_chunks_are_nacked_after_an_end_unless_another_node_asked_for_them() {
    let object = image(10);
    let s = Session {
        number: 2,
        object: &object,
    };
    let mine = "Nack [(3, 2), (7, 1)]";
    let theirs = |count: u8, ranges: &[(u32, u16)], session: u32| {
        let mut r = [(0, 0); NACK_RANGES];
        r[..ranges.len()].copy_from_slice(ranges);
        Message::Nack(Nack {
            session,
            count,
            ranges: r,
        })
    };
    let cases: [(&str, Option<Message>, bool); 5] = [
        ("no other node asks", None, true),
        (
            "another asks for the same",
            Some(theirs(2, &[(3, 2), (7, 1)], 2)),
            false,
        ),
        (
            "another asks for more",
            Some(theirs(1, &[(0, 10)], 2)),
            false,
        ),
        ("another asks for less", Some(theirs(1, &[(3, 2)], 2)), true),
        (
            "another asks in another session",
            Some(theirs(1, &[(0, 10)], 1)),
            true,
        ),
    ];
    for (what, other, we_ask) in cases {
        let mut sim = Sim::new(0x5EED);
        sim.batch(0, &[]);
        sim.batch(50, &s.start());
        sim.batch(60, &s.data_except(&[3, 4, 7]));
        assert_eq!(
            shown(&sim.batch(100, &[s.end(false)])),
            Vec::<String>::new(),
            "{what}"
        );
        assert!(sim.boot.wake_at() > ms(100), "{what}: not due at once");
        if let Some(n) = other {
            sim.batch(100, &[n]);
        }
        let asked = nacks(&sim.run_until(100 + NACK_QUIET_MS - 1));
        if we_ask {
            assert_eq!(asked.len(), 1, "{what}: {asked:?}");
            assert_eq!(asked[0].1, mine, "{what}");
            let wait = asked[0].0 - 100.0;
            assert!((0.0..120.0).contains(&wait), "{what}: waited {wait} ms");
        } else {
            assert_eq!(asked, vec![], "{what}");
        }
    }
    assert_eq!(NACK_BACKOFF_TICKS, ms(120));
}

/// A session gone quiet with chunks missing is `Nack`ed once per quiet
/// spell, for chunks the master has already sent; a session silent for 3 s
/// is given up and the node asks again at once.
#[test]
fn a_quiet_session_is_nacked_once_and_a_silent_one_given_up() {
    let object = image(10);
    let s = Session {
        number: 4,
        object: &object,
    };
    let mut sim = Sim::new(77);
    sim.batch(0, &[]);
    sim.batch(50, &s.start());
    let sent: Vec<Message> = (0..6).filter(|&i| i != 2).map(|i| s.data(i)).collect();
    sim.batch(100, &sent);
    let log = sim.run_until(1000);
    let asked = nacks(&log);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].1, "Nack [(2, 1)]",
        "not chunks 6..10, not sent yet"
    );
    let quiet = 100.0 + NACK_QUIET_MS as f64;
    assert!(
        (quiet..quiet + 120.0).contains(&asked[0].0),
        "at {} ms",
        asked[0].0
    );
    // Other traffic wakes the node in the same quiet spell: no second `Nack`.
    let elsewhere = Session {
        number: 5,
        object: &object,
    };
    let done = sim.batch(1000, &elsewhere.data_except(&[]));
    assert_eq!(shown(&done), Vec::<String>::new());
    assert_eq!(nacks(&sim.run_until(1000 + NACK_QUIET_MS + 200)), vec![]);
    // A new frame of the session starts a new quiet spell.
    sim.batch(1500, &[s.data(6)]);
    let asked = nacks(&sim.run_until(2500));
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].0 >= 1500.0 + NACK_QUIET_MS as f64);
    // Silence from the last frame (1500 ms) for more than 3 s: give up, ask.
    let log = sim.run_until(6000);
    assert_eq!(nacks(&log), vec![]);
    let asked = requests(&log);
    let gave_up = 1500.0 + SESSION_SILENCE_MS as f64;
    assert_eq!(asked[0].1, 2);
    assert!(
        asked[0].0 > gave_up && asked[0].0 < gave_up + 0.001,
        "at {} ms",
        asked[0].0
    );
}

#[test]
fn frames_of_the_session_keep_it_alive() {
    let object = image(10);
    let s = Session {
        number: 4,
        object: &object,
    };
    let mut sim = Sim::new(3);
    sim.batch(0, &[]);
    sim.batch(50, &s.start());
    for (i, t) in (0..5).zip((2000..).step_by(2900)) {
        sim.run_until(t);
        sim.batch(t, &[s.data(i)]);
    }
    assert_eq!(requests(&sim.log).len(), 1, "never gave up");
}

#[test]
fn a_last_end_with_chunks_missing_refuses_the_image() {
    let object = image(5);
    let s = Session {
        number: 6,
        object: &object,
    };
    let mut sim = Sim::new(1);
    sim.batch(0, &[]);
    sim.batch(50, &s.start());
    sim.batch(60, &s.data_except(&[1]));
    assert_eq!(
        shown(&sim.batch(100, &[s.end(true)])),
        ["Reject Incomplete"]
    );
    let asked = requests(&sim.run_until(1000));
    assert!(jittered(asked[0].0 - 100.0, RETRY_BASE_MS));
}

#[test]
fn an_announce_again_goes_on_and_a_newer_session_starts_over() {
    let object = image(6);
    let first = Session {
        number: 1,
        object: &object,
    };
    let newer = Session {
        number: 2,
        object: &object,
    };
    let mut sim = Sim::new(1);
    sim.batch(0, &[]);
    sim.batch(10, &first.start());
    sim.batch(20, &[first.data(0), first.data(1)]);
    // Restated for a late joiner: nothing starts again.
    assert_eq!(shown(&sim.batch(30, &first.start())), Vec::<String>::new());
    let done = sim.batch(40, &newer.start());
    assert_eq!(shown(&done), ["Status Receiving"]);
    let Action::Send(Message::Status(st)) = done[0] else {
        unreachable!()
    };
    assert_eq!((st.session, st.received), (2, 0));
    // The old session's data no longer counts; the new one completes.
    sim.batch(50, &first.data_except(&[]));
    let done = sim.batch(60, &newer.data_except(&[]));
    assert_eq!(shown(&done).last().unwrap(), "HandOff");
}

#[test]
fn many_missing_ranges_take_at_most_four_nacks_of_eight() {
    let object = image(90);
    let s = Session {
        number: 8,
        object: &object,
    };
    let mut sim = Sim::new(1);
    sim.batch(0, &[]);
    sim.batch(10, &s.start());
    let odd: Vec<usize> = (0..90).filter(|i| i % 2 == 1).collect();
    sim.batch(20, &s.data_except(&odd));
    sim.batch(30, &[s.end(false)]);
    let log = sim.run_until(30 + NACK_QUIET_MS - 1);
    let sent: Vec<Nack> = log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Send(Message::Nack(n)) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 4);
    let ranges: Vec<(u32, u16)> = sent.iter().flat_map(|n| n.ranges).collect();
    let want: Vec<(u32, u16)> = odd.iter().take(32).map(|&i| (i as u32, 1)).collect();
    assert_eq!(ranges, want, "the first 32 holes, in order");
}
