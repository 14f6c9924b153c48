//! Faults: what can go wrong on the bus, and the seeded decisions.
//!
//! A decision (is this frame lost for that receiver?) is a pure function of
//! the seed, the rule, the sending port, how many transmissions that port
//! has started, and the receiving port. It depends on nothing else: not on
//! timing, not on how other senders interleave, not on other rules. So the
//! same seed and the same frames from each sender give the same decisions,
//! run after run, paced or unpaced.

use std::collections::BTreeMap;

use proto::Frame;
use serde::{Deserialize, Serialize};

use crate::ids::{PortId, SegmentId};

/// What a fault rule does to the frames it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The receiver never gets the frame (counted as `loss`).
    Loss,
    /// The receiver sees a CRC error and drops the frame (counted as
    /// `corrupt`, also in `crc_errors`); the others get it. With
    /// `error_frame`, the receiver signals an error frame, as a real
    /// controller does: every receiver drops the frame (the others count
    /// `error_frame`); the bus carries the frame up to its ACK delimiter,
    /// then a 6-bit error flag, an 8-bit error delimiter and the 3-bit
    /// intermission, 7 nominal bits more than the frame; the sender's
    /// transmit error counter goes up by 8 (down by 1 per good frame) and
    /// it sends the frame again, until the counter passes 255: then it is
    /// bus-off, the frame is dropped (`tx_bus_off`), and it sends nothing
    /// for 128 × 11 bit times.
    Corrupt,
    /// The frame reaches the receiver `delay_us` (+ up to `jitter_us`)
    /// later than it left the bus.
    Delay,
}

/// Which identifiers a rule applies to: `frame.id & mask == id & mask`,
/// and, if `extended` is given, only frames of that format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMatch {
    /// Identifier bits to compare.
    pub id: u32,
    /// Which bits matter (default: all).
    #[serde(default = "all_bits")]
    pub mask: u32,
    /// Only extended (`true`) or only standard (`false`) frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<bool>,
}

fn all_bits() -> u32 {
    u32::MAX
}

impl IdMatch {
    /// Whether `frame` matches.
    pub fn matches(&self, frame: &Frame) -> bool {
        (frame.id() ^ self.id) & self.mask == 0
            && self.extended.is_none_or(|e| e == frame.is_extended())
    }
}

/// One fault rule. It applies to the frames each *receiving* port gets:
/// on one port (`port`), on every port of one segment (`segment`), or, with
/// neither, on every port.
///
/// ```
/// use bus_bridge::Fault;
/// let f = Fault::loss(0.1).on_segment("ext1").ids(0x10 << 16, 0x1FFF_0000);
/// assert_eq!(f.probability, 0.1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What the rule does.
    pub kind: FaultKind,
    /// Only this receiving port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Only receiving ports on this segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Only these identifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<IdMatch>,
    /// Chance, 0 to 1, that a matching frame is hit (default 1).
    #[serde(default = "one")]
    pub probability: f64,
    /// One decision per frame for all the ports the rule covers, instead
    /// of one per receiving port.
    #[serde(default)]
    pub correlated: bool,
    /// `corrupt` only: the receiver signals an error frame (see
    /// [`FaultKind::Corrupt`]).
    #[serde(default)]
    pub error_frame: bool,
    /// `delay` only: added latency, µs.
    #[serde(default)]
    pub delay_us: u64,
    /// `delay` only: extra latency, uniform in `0..=jitter_us` µs. A
    /// port's frames keep their order whatever the jitter.
    #[serde(default)]
    pub jitter_us: u64,
}

fn one() -> f64 {
    1.0
}

impl Fault {
    fn new(kind: FaultKind, probability: f64) -> Fault {
        Fault {
            kind,
            port: None,
            segment: None,
            ids: None,
            probability,
            correlated: false,
            error_frame: false,
            delay_us: 0,
            jitter_us: 0,
        }
    }

    /// Frames lost with `probability`.
    pub fn loss(probability: f64) -> Fault {
        Fault::new(FaultKind::Loss, probability)
    }

    /// Frames that fail their CRC with `probability`.
    pub fn corrupt(probability: f64) -> Fault {
        Fault::new(FaultKind::Corrupt, probability)
    }

    /// Every matching frame delivered `delay_us` late.
    pub fn delay(delay_us: u64) -> Fault {
        Fault {
            delay_us,
            ..Fault::new(FaultKind::Delay, 1.0)
        }
    }

    /// Only on receiving port `port`.
    pub fn on_port(mut self, port: impl Into<String>) -> Fault {
        self.port = Some(port.into());
        self
    }

    /// Only on receiving ports of `segment`.
    pub fn on_segment(mut self, segment: impl Into<String>) -> Fault {
        self.segment = Some(segment.into());
        self
    }

    /// Only frames with `id & mask` (either format).
    pub fn ids(mut self, id: u32, mask: u32) -> Fault {
        self.ids = Some(IdMatch {
            id,
            mask,
            extended: None,
        });
        self
    }

    /// One decision per frame for every covered port.
    pub fn correlated(mut self) -> Fault {
        self.correlated = true;
        self
    }

    /// `corrupt`: receivers signal an error frame.
    pub fn with_error_frame(mut self) -> Fault {
        self.error_frame = true;
        self
    }

    /// `delay`: up to `jitter_us` more.
    pub fn with_jitter(mut self, jitter_us: u64) -> Fault {
        self.jitter_us = jitter_us;
        self
    }
}

/// A babbling port: the bridge sends `id` frames as if from that port,
/// either back to back (`rate_hz` absent: it takes the bus whenever it
/// wins arbitration) or at most `rate_hz` a second of bus time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Babble {
    /// Identifier (default 0, the highest priority).
    pub id: u32,
    /// 29-bit identifier.
    pub extended: bool,
    /// CAN FD frame with bit-rate switch (FD buses only).
    pub fd: bool,
    /// Data bytes (default 8; FD lengths are padded as a controller does).
    pub len: usize,
    /// Frames per second; absent: saturate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
    /// Stop after this many frames; absent: until stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Default for Babble {
    fn default() -> Self {
        Babble {
            id: 0,
            extended: false,
            fd: false,
            len: 8,
            rate_hz: None,
            count: None,
        }
    }
}

impl Babble {
    /// The frame the babbler sends, or why it cannot be built.
    pub(crate) fn frame(&self) -> Result<Frame, Invalid> {
        let mut flags = 0;
        if self.extended {
            flags |= proto::frame::FLAG_EXTENDED;
        }
        if self.fd {
            flags |= proto::frame::FLAG_FD | proto::frame::FLAG_BRS;
        }
        let max = if self.fd { 64 } else { 8 };
        if self.len > max {
            return Err(Invalid::new("len", format!("{} exceeds {max}", self.len)));
        }
        let data = [0xA5u8; 64];
        Frame::new(self.id, flags, &data[..self.len]).map_err(|e| match e {
            proto::frame::FrameError::IdOutOfRange => Invalid::new(
                "id",
                format!(
                    "{:#x} does not fit a {} identifier",
                    self.id,
                    if self.extended { "29-bit" } else { "11-bit" }
                ),
            ),
            other => Invalid::new("len", format!("{other:?}")),
        })
    }

    /// Bus time between frames, ns; `None` saturates.
    pub(crate) fn period_ns(&self) -> Result<Option<u64>, Invalid> {
        match self.rate_hz {
            None => Ok(None),
            Some(r) if r.is_finite() && r > 0.0 && r <= 1e7 => Ok(Some((1e9 / r) as u64)),
            Some(r) => Err(Invalid::new(
                "rate_hz",
                format!("{r} is not a rate between 0 (exclusive) and 10^7 per second"),
            )),
        }
    }
}

/// Faults in force when the bridge starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Seed of every random decision.
    pub seed: u64,
    /// Loss, corruption and delay rules; they get ids 0, 1, … in order.
    pub rules: Vec<Fault>,
    /// Ports whose link is down from the start (their TX frames wait).
    pub link_down: Vec<String>,
    /// Ports that babble from the start, by port name.
    pub babble: BTreeMap<String, Babble>,
    /// Links cut from the start, by link name.
    pub cut: Vec<String>,
}

/// A rule in force and its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultEntry {
    /// Id for [`BridgeControl::remove_fault`](crate::BridgeControl::remove_fault).
    pub id: u64,
    /// The rule.
    pub fault: Fault,
}

/// A field that is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error for a field inside `outer`.
    pub fn within(mut self, outer: &str) -> Invalid {
        self.field = format!("{outer}.{}", self.field);
        self
    }
}

/// Which receiving ports a rule covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    All,
    Segment(SegmentId),
    Port(PortId),
}

/// A checked rule, with names resolved.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub id: u64,
    pub kind: FaultKind,
    pub target: Target,
    pub ids: Option<IdMatch>,
    pub probability: f64,
    pub correlated: bool,
    pub error_frame: bool,
    pub delay_ns: u64,
    pub jitter_ns: u64,
    /// As given, for listing.
    pub fault: Fault,
}

/// Longest delay a rule may add: a frame held longer is no longer "late",
/// it is lost, and should be a loss rule.
pub const MAX_DELAY_US: u64 = 60_000_000;

/// Checks `fault` and resolves its names (`port_index`, `segment_index`).
pub(crate) fn compile(
    fault: &Fault,
    id: u64,
    port_index: impl Fn(&str) -> Option<PortId>,
    segment_index: impl Fn(&str) -> Option<SegmentId>,
) -> Result<Rule, Invalid> {
    let target = match (&fault.port, &fault.segment) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new("segment", "give port or segment, not both"));
        }
        (Some(p), None) => Target::Port(
            port_index(p).ok_or_else(|| Invalid::new("port", format!("no port named {p:?}")))?,
        ),
        (None, Some(s)) => Target::Segment(
            segment_index(s)
                .ok_or_else(|| Invalid::new("segment", format!("no segment named {s:?}")))?,
        ),
        (None, None) => Target::All,
    };
    if !(0.0..=1.0).contains(&fault.probability) {
        return Err(Invalid::new(
            "probability",
            format!("{} is not between 0 and 1", fault.probability),
        ));
    }
    if fault.error_frame && fault.kind != FaultKind::Corrupt {
        return Err(Invalid::new("error_frame", "applies to corrupt rules only"));
    }
    if fault.kind != FaultKind::Delay && (fault.delay_us != 0 || fault.jitter_us != 0) {
        let field = if fault.delay_us != 0 {
            "delay_us"
        } else {
            "jitter_us"
        };
        return Err(Invalid::new(field, "applies to delay rules only"));
    }
    if fault.kind == FaultKind::Delay {
        if fault.delay_us == 0 && fault.jitter_us == 0 {
            return Err(Invalid::new(
                "delay_us",
                "a delay rule needs delay_us or jitter_us",
            ));
        }
        for (field, v) in [("delay_us", fault.delay_us), ("jitter_us", fault.jitter_us)] {
            if v > MAX_DELAY_US {
                return Err(Invalid::new(
                    field,
                    format!("{v} exceeds {MAX_DELAY_US} (60 s)"),
                ));
            }
        }
    }
    if let Some(m) = &fault.ids
        && m.id & !m.mask != 0
    {
        // Harmless, but almost always a mistake: bits set outside the mask.
        return Err(Invalid::new(
            "ids.id",
            format!("{:#x} has bits outside mask {:#x}", m.id, m.mask),
        ));
    }
    Ok(Rule {
        id,
        kind: fault.kind,
        target,
        ids: fault.ids,
        probability: fault.probability,
        correlated: fault.correlated,
        error_frame: fault.error_frame,
        delay_ns: fault.delay_us * 1000,
        jitter_ns: fault.jitter_us * 1000,
        fault: fault.clone(),
    })
}

impl Rule {
    /// Whether the rule covers receiver `port` (on `segment`) for `frame`.
    pub fn covers(&self, port: PortId, segment: SegmentId, frame: &Frame) -> bool {
        let target = match self.target {
            Target::All => true,
            Target::Segment(s) => s == segment,
            Target::Port(p) => p == port,
        };
        target && self.ids.is_none_or(|m| m.matches(frame))
    }

    /// The seeded decision for this rule on one frame and receiver.
    pub fn hits(&self, seed: u64, sender: PortId, attempt: u64, receiver: PortId) -> bool {
        if self.probability >= 1.0 {
            return true;
        }
        if self.probability <= 0.0 {
            return false;
        }
        let receiver = if self.correlated {
            u64::MAX
        } else {
            receiver.0 as u64
        };
        unit(decide(seed, self.id, sender.0 as u64, attempt, receiver, 0)) < self.probability
    }

    /// The delay this rule adds for one frame and receiver, ns.
    pub fn delay_for(&self, seed: u64, sender: PortId, attempt: u64, receiver: PortId) -> u64 {
        if self.jitter_ns == 0 {
            return self.delay_ns;
        }
        let r = decide(
            seed,
            self.id,
            sender.0 as u64,
            attempt,
            receiver.0 as u64,
            1,
        );
        self.delay_ns + (unit(r) * (self.jitter_ns + 1) as f64) as u64
    }
}

/// splitmix64's output function: a bijection that mixes every input bit
/// into every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random word from the decision's coordinates (a counter-based PRNG).
pub(crate) fn decide(
    seed: u64,
    rule: u64,
    sender: u64,
    attempt: u64,
    receiver: u64,
    purpose: u64,
) -> u64 {
    [rule, sender, attempt, receiver, purpose]
        .into_iter()
        .fold(mix(seed), |h, x| mix(h ^ x))
}

/// Maps a random word to [0, 1).
fn unit(r: u64) -> f64 {
    (r >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(fault: Fault) -> Rule {
        compile(
            &fault,
            7,
            |p| (p == "n1").then_some(PortId(1)),
            |s| (s == "ext1").then_some(SegmentId(2)),
        )
        .unwrap()
    }

    #[test]
    fn decisions_depend_only_on_their_coordinates() {
        let r = rule(Fault::loss(0.3));
        let run = |seed| -> Vec<bool> {
            (0..2000)
                .map(|i| r.hits(seed, PortId(i % 5), i as u64 / 5, PortId((i * 7) % 11)))
                .collect()
        };
        assert_eq!(run(42), run(42), "same seed, same decisions");
        assert_ne!(run(42), run(43), "another seed, other decisions");
        let hits = run(42).iter().filter(|&&h| h).count();
        assert!((500..700).contains(&hits), "about 30% of 2000: {hits}");
        // Correlated: every receiver gets the same answer for a frame.
        let c = rule(Fault::loss(0.5).correlated());
        for attempt in 0..100 {
            let first = c.hits(1, PortId(0), attempt, PortId(0));
            assert!((1..20).all(|rx| c.hits(1, PortId(0), attempt, PortId(rx)) == first));
        }
        let p0 = PortId(0);
        assert!(rule(Fault::loss(1.0)).hits(0, p0, 0, p0));
        assert!(!rule(Fault::loss(0.0)).hits(0, p0, 0, p0));
        // The coordinates as numbers: decisions do not change with the types.
        assert_eq!(decide(1, 2, 3, 4, 5, 0), 0xBE60_9735_50B0_A242);
    }

    #[test]
    fn jitter_stays_in_range() {
        let r = rule(Fault::delay(1000).with_jitter(500));
        for a in 0..1000 {
            let d = r.delay_for(3, PortId(0), a, PortId(1));
            assert!((1_000_000..=1_500_000).contains(&d), "{d}");
        }
        assert_eq!(
            rule(Fault::delay(1000)).delay_for(3, PortId(0), 0, PortId(1)),
            1_000_000
        );
    }

    #[test]
    fn coverage_by_port_segment_and_id() {
        let f = |id, flags| Frame::new(id, flags, &[]).unwrap();
        let ext = proto::frame::FLAG_EXTENDED;
        let on_port = rule(Fault::loss(1.0).on_port("n1"));
        assert!(
            on_port.covers(PortId(1), SegmentId(0), &f(5, 0))
                && !on_port.covers(PortId(2), SegmentId(0), &f(5, 0))
        );
        let on_seg = rule(Fault::loss(1.0).on_segment("ext1"));
        assert!(
            on_seg.covers(PortId(9), SegmentId(2), &f(5, 0))
                && !on_seg.covers(PortId(9), SegmentId(1), &f(5, 0))
        );
        let mut by_id = Fault::loss(1.0).ids(0x10 << 16, 0x1FFF_0000);
        assert!(rule(by_id.clone()).covers(PortId(0), SegmentId(0), &f(0x10_0003, ext)));
        assert!(!rule(by_id.clone()).covers(PortId(0), SegmentId(0), &f(0x11_0003, ext)));
        by_id.ids.as_mut().unwrap().extended = Some(false);
        assert!(!rule(by_id).covers(PortId(0), SegmentId(0), &f(0x10_0003, ext)));
    }

    #[test]
    fn bad_rules_name_the_field() {
        let check = |fault: Fault, field: &str| {
            let err = compile(&fault, 0, |_| None, |_| None).unwrap_err();
            assert_eq!(err.field, field, "{err:?}");
        };
        check(Fault::loss(1.5), "probability");
        check(Fault::loss(f64::NAN), "probability");
        check(Fault::loss(0.1).on_port("nope"), "port");
        check(Fault::loss(0.1).on_segment("nope"), "segment");
        check(Fault::loss(0.1).with_error_frame(), "error_frame");
        check(Fault::loss(0.1).with_jitter(3), "jitter_us");
        check(Fault::delay(0), "delay_us");
        check(Fault::delay(MAX_DELAY_US + 1), "delay_us");
        check(Fault::loss(0.1).ids(0x1F, 0xF0), "ids.id");
        let err = Babble {
            id: 0x800,
            ..Babble::default()
        }
        .frame()
        .unwrap_err();
        assert_eq!(err.field, "id");
        let err = Babble {
            len: 9,
            ..Babble::default()
        }
        .frame()
        .unwrap_err();
        assert_eq!(err.field, "len");
        let err = Babble {
            rate_hz: Some(-1.0),
            ..Babble::default()
        }
        .period_ns()
        .unwrap_err();
        assert_eq!(err.field, "rate_hz");
    }

    #[test]
    fn rules_parse_from_json_and_toml() {
        let f: Fault = serde_json::from_str(
            r#"{"kind":"corrupt","segment":"ext1","probability":0.2,"error_frame":true,"ids":{"id":256,"mask":1792}}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            Fault::corrupt(0.2)
                .on_segment("ext1")
                .with_error_frame()
                .ids(0x100, 0x700)
        );
        let c: FaultConfig = toml::from_str(
            "seed = 9\ncut = [\"ext1-ha\"]\nlink_down = [\"n3\"]\n[[rules]]\nkind = \"delay\"\nport = \"n2\"\ndelay_us = 2000\n[babble.n4]\nrate_hz = 100.0\n",
        )
        .unwrap();
        assert_eq!(c.seed, 9);
        assert_eq!(c.rules, [Fault::delay(2000).on_port("n2")]);
        assert_eq!(c.babble["n4"].rate_hz, Some(100.0));
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"loss","probabilty":0.1}"#).is_err());
    }
}
