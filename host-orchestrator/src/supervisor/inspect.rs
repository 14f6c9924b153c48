//! The host's own check of a node, which needs nothing from its app: what
//! the node's RAM holds (the boot ROM's handoff record and the image bytes
//! it names) and where its CPU runs, read from outside the node, judged
//! against the images built for its type. Pure: an [`Observation`] in, a
//! [`Finding`] out; `probe` does the reading.
//!
//! What a finding of [`Finding::Runs`] proves: the boot ROM handed off an
//! image (its record names one), that image is one built (or published) for
//! the node's type and for this node, its bytes in RAM are, right now, the
//! build's bytes, every one, and the CPU executes inside them. That is what a
//! heartbeat's digest plus a right answer to a fresh challenge prove, without
//! trusting the app to compute or report anything, and again at every check
//! (a challenge proves the bytes once, when it is answered).

use super::view::Published;
use board::handoff::{self, Handoff};
use board::memory;
use images::build::hex;
use proto::NodeType;

/// What the host read of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The handoff record (`handoff::LEN` bytes at `HANDOFF_BASE`), or why
    /// the node's RAM could not be read.
    pub record: Result<Vec<u8>, String>,
    /// The CPU's program counter, or why it could not be read; `None` when
    /// it was not read (the record names no image: no app runs).
    pub pc: Option<Result<u64, String>>,
    /// The RAM the record names ([`image_span`]), as read.
    pub image: Vec<u8>,
}

/// What the host concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Nothing to judge: no app runs yet (the boot ROM does), or the node
    /// could not be read. Says which.
    NotYet(String),
    /// It runs an image built for its type, unchanged, inside it.
    Runs(Running),
    /// Evidence that it runs something else, or something changed it.
    Wrong(String),
}

/// What a node runs, by its handoff record, once the check holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// The session that delivered the image.
    pub generation: u32,
    /// The image's digest (the boot ROM's measurement, equal to the build's).
    pub digest: [u8; 32],
    /// Its version.
    pub version: u32,
    /// Its name, zero-padded.
    pub name: [u8; 16],
    /// The node type the record names.
    pub node_type: u8,
    /// Boots since power-on.
    pub boot_count: u16,
    /// `proto::msg::ResetCause` code of this boot.
    pub reset_cause: u8,
    /// Where the CPU was.
    pub pc: u64,
}

/// The RAM to read after `record`: the image it names, at most `limit`
/// bytes; `None` when it names none, or one outside the image region.
pub fn image_span(record: &Handoff, limit: u64) -> Option<(u64, u64)> {
    (record.names_an_image() && memory::in_image_region(record.load_addr, record.size))
        .then(|| (record.load_addr, record.size.min(limit)))
}

/// Whether the CPU at `pc` runs code in RAM. The boot ROM never does (it
/// runs from flash, and QEMU's reset code lies below RAM), so an app does,
/// inside its image or not.
fn in_ram(pc: u64) -> bool {
    (memory::RAM_BASE..memory::RAM_BASE + memory::RAM_SIZE).contains(&pc)
}

/// Where a `pc` outside RAM is, in words.
fn place(pc: u64) -> &'static str {
    let flash = memory::FLASH_BASE..memory::FLASH_BASE + memory::FLASH_SIZE;
    if flash.contains(&pc) {
        "in the boot ROM"
    } else {
        "outside RAM"
    }
}

/// What a node whose handoff record names no image is found to be.
fn no_image_yet(record: &Handoff, obs: &Observation) -> Finding {
    // The boot ROM zeroes the record at every boot and fills it in just
    // before it jumps: until then, no app runs.
    let why = if record.is_valid() {
        "the boot ROM has handed no image off yet"
    } else {
        "the boot ROM has not started yet"
    };
    match &obs.pc {
        // An app runs, yet its record names no image: the record was
        // overwritten.
        Some(Ok(pc)) if in_ram(*pc) => Finding::Wrong(format!(
            "the CPU runs in RAM (pc {pc:#x}), but the handoff record at {:#x} names no image (magic {:#010x}, size {})",
            memory::HANDOFF_BASE,
            record.magic,
            record.size
        )),
        _ => Finding::NotYet(why.into()),
    }
}

/// Where the image read from RAM differs from the build, if it does.
fn differ(obs: &Observation, image: &Published) -> Option<Finding> {
    if obs.image == *image.payload {
        return None;
    }
    let differ: Vec<usize> = obs
        .image
        .iter()
        .zip(image.payload.iter())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    Some(Finding::Wrong(format!(
        "{} bytes of its image in RAM differ from the build, the first at {:#x}",
        differ.len(),
        image.load_addr + differ[0] as u64
    )))
}

/// Judges what was read of node `id` of type `node_type`, which may run any
/// of `published` (the images built or published for its type).
pub fn judge(obs: &Observation, id: u16, node_type: NodeType, published: &[Published]) -> Finding {
    let bytes = match &obs.record {
        Ok(b) => b,
        Err(e) => return Finding::NotYet(format!("cannot read its RAM: {e}")),
    };
    let Some(record) = Handoff::from_le_bytes(bytes) else {
        return Finding::NotYet("cannot read its RAM: the handoff record is cut short".into());
    };
    if !record.names_an_image() {
        return no_image_yet(&record, obs);
    }
    let pc = match &obs.pc {
        Some(Ok(pc)) => *pc,
        Some(Err(e)) => return Finding::NotYet(format!("cannot read its program counter: {e}")),
        None => return Finding::NotYet("its program counter was not read".into()),
    };
    if !in_ram(pc) {
        // Handed off but not yet jumped (the boot ROM flushes its port
        // first), or back in the boot ROM after a reboot. In RAM outside
        // its image (app RAM, say) is judged below: no boot ROM runs there.
        return Finding::NotYet(format!(
            "no app runs: the CPU is {} (pc {pc:#x})",
            place(pc)
        ));
    }
    if record.node != id {
        return Finding::Wrong(format!(
            "the handoff record names node {}, not {id}",
            record.node
        ));
    }
    if record.node_type != node_type as u8 {
        let t = NodeType::from_code(record.node_type).map_or("unknown", |t| t.name());
        return Finding::Wrong(format!(
            "running an image for type {t}, but the node is a {}",
            node_type.name()
        ));
    }
    let Some(image) = published.iter().rev().find(|p| p.digest == record.digest) else {
        return Finding::Wrong(format!(
            "running digest {}, which is no image built for type {}",
            hex(&record.digest),
            node_type.name()
        ));
    };
    let len = image.payload.len() as u64;
    if record.load_addr != image.load_addr || record.size != len {
        return Finding::Wrong(format!(
            "the handoff record places {} bytes at {:#x}; the build places {len} at {:#x}",
            record.size, record.load_addr, image.load_addr
        ));
    }
    let span = image.load_addr..image.load_addr + len;
    if obs.image.len() as u64 != len {
        return Finding::NotYet(format!(
            "read {} of its image's {len} bytes",
            obs.image.len()
        ));
    }
    if let Some(wrong) = differ(obs, image) {
        return wrong;
    }
    if !span.contains(&pc) {
        return Finding::Wrong(format!(
            "the CPU runs at {pc:#x}, outside its image [{:#x}, {:#x})",
            span.start, span.end
        ));
    }
    Finding::Runs(Running {
        generation: record.generation,
        digest: record.digest,
        version: record.version_of_image,
        name: record.name,
        node_type: record.node_type,
        boot_count: record.boot_count,
        reset_cause: record.reset_cause,
        pc,
    })
}

/// The record's bytes as a guest would hold them (for tests and tools).
pub fn record_bytes(r: &Handoff) -> Vec<u8> {
    let mut b = Vec::with_capacity(handoff::LEN);
    b.extend_from_slice(&r.magic.to_le_bytes());
    b.extend_from_slice(&r.version.to_le_bytes());
    b.extend_from_slice(&r.node.to_le_bytes());
    b.push(r.node_type);
    b.push(r.reset_cause);
    b.extend_from_slice(&r.boot_count.to_le_bytes());
    b.extend_from_slice(&r.soft_reboot.to_le_bytes());
    b.extend_from_slice(&r.generation.to_le_bytes());
    b.extend_from_slice(&r.version_of_image.to_le_bytes());
    b.extend_from_slice(&r.load_addr.to_le_bytes());
    b.extend_from_slice(&r.size.to_le_bytes());
    b.extend_from_slice(&r.entry.to_le_bytes());
    b.extend_from_slice(&r.digest);
    b.extend_from_slice(&r.name);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::sync::Arc;

    const BASE: u64 = memory::IMAGE_BASE;

    fn image(payload: Vec<u8>) -> Published {
        Published {
            digest: Sha256::digest(&payload).into(),
            version: 0x0100_0000,
            load_addr: BASE,
            payload: Arc::new(payload),
        }
    }

    fn build() -> Published {
        image((0..600u32).map(|i| (i * 7) as u8).collect())
    }

    /// Node 3, a drive, running `p` as the boot ROM handed it off.
    fn record(p: &Published) -> Handoff {
        Handoff {
            magic: handoff::MAGIC,
            version: handoff::VERSION,
            node: 3,
            node_type: NodeType::Drive as u8,
            reset_cause: 0,
            boot_count: 1,
            soft_reboot: 0,
            generation: 9,
            version_of_image: p.version,
            load_addr: p.load_addr,
            size: p.payload.len() as u64,
            entry: p.load_addr,
            digest: p.digest,
            name: *b"drive\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    fn seen(r: &Handoff, pc: u64, image: &[u8]) -> Observation {
        Observation {
            record: Ok(record_bytes(r)),
            pc: Some(Ok(pc)),
            image: image.to_vec(),
        }
    }

    /// Node 3, a drive, judged against the one image `b`.
    fn j(obs: &Observation, b: &Published) -> Finding {
        judge(obs, 3, NodeType::Drive, std::slice::from_ref(b))
    }

    fn wrong(f: Finding) -> String {
        match f {
            Finding::Wrong(why) => why,
            other => panic!("expected Wrong, got {other:?}"),
        }
    }

    fn not_yet(f: Finding) -> String {
        match f {
            Finding::NotYet(why) => why,
            other => panic!("expected NotYet, got {other:?}"),
        }
    }

    #[test]
    fn the_build_in_ram_with_the_cpu_inside_runs() {
        let b = build();
        let f = j(&seen(&record(&b), BASE + 0x40, &b.payload), &b);
        let Finding::Runs(r) = f else { panic!("{f:?}") };
        assert_eq!((r.generation, r.digest, r.pc), (9, b.digest, BASE + 0x40));
        assert_eq!(record_bytes(&record(&b)).len(), handoff::LEN);
    }

    #[test]
    fn a_changed_byte_anywhere_in_the_image_is_caught_and_located() {
        let b = build();
        let mut ram = b.payload.to_vec();
        ram[0x123] ^= 0x10;
        ram[0x200] ^= 1;
        let why = wrong(j(&seen(&record(&b), BASE, &ram), &b));
        assert_eq!(
            why,
            format!(
                "2 bytes of its image in RAM differ from the build, the first at {:#x}",
                BASE + 0x123
            )
        );
    }

    #[test]
    fn before_the_handoff_nothing_is_judged() {
        let b = build();
        // Power-on: RAM zeroed.
        let zeroed = Observation {
            record: Ok(vec![0; handoff::LEN]),
            pc: None,
            image: Vec::new(),
        };
        assert!(not_yet(j(&zeroed, &b)).contains("not started"));
        // The boot ROM's record of this boot, no image yet.
        let mut r = record(&b);
        r.size = 0;
        let booting = Observation {
            pc: Some(Ok(memory::FLASH_BASE + 0x2e38)),
            ..seen(&r, 0, &[])
        };
        assert!(not_yet(j(&booting, &b)).contains("handed no image off"));
        // Filled in, but the boot ROM has not jumped yet.
        let jumping = seen(&record(&b), memory::FLASH_BASE + 0x100, &b.payload);
        let why = not_yet(j(&jumping, &b));
        assert!(
            why.contains("the CPU is in the boot ROM (pc 0x20000100)"),
            "{why}"
        );
        // Unreadable RAM or PC.
        let unreadable = Observation {
            record: Err("no such file".into()),
            pc: None,
            image: Vec::new(),
        };
        assert!(not_yet(j(&unreadable, &b)).contains("no such file"));
        let no_pc = Observation {
            pc: Some(Err("QMP did not answer".into())),
            ..seen(&record(&b), 0, &b.payload)
        };
        assert!(not_yet(j(&no_pc, &b)).contains("QMP did not answer"));
        let short = Observation {
            record: Ok(vec![0; 10]),
            pc: None,
            image: Vec::new(),
        };
        assert!(not_yet(j(&short, &b)).contains("cut short"));
    }

    #[test]
    fn an_app_running_without_a_record_was_overwritten() {
        let b = build();
        let mut r = record(&b);
        r.magic = 0xDEAD_BEEF;
        let why = wrong(j(&seen(&r, BASE + 4, &[]), &b));
        assert!(why.contains("names no image (magic 0xdeadbeef"), "{why}");
    }

    #[test]
    fn another_node_type_or_image_is_wrong_as_a_heartbeat_saying_so_would_be() {
        let b = build();
        let mut r = record(&b);
        r.node_type = NodeType::Xy as u8;
        let why = wrong(j(&seen(&r, BASE, &b.payload), &b));
        assert_eq!(why, "running an image for type xy, but the node is a drive");
        let mut r = record(&b);
        r.node = 4;
        let why = wrong(j(&seen(&r, BASE, &b.payload), &b));
        assert_eq!(why, "the handoff record names node 4, not 3");
        // A validly signed image that is not the build's (a leaked key).
        let other = image(vec![1; 600]);
        let why = wrong(j(&seen(&record(&other), BASE, &other.payload), &b));
        assert!(
            why.starts_with(&format!(
                "running digest {}, which is no image built for type drive",
                hex(&other.digest)
            )),
            "{why}"
        );
        // The record's digest is the build's, but its span is not.
        let mut r = record(&b);
        r.size -= 1;
        let why = wrong(j(&seen(&r, BASE, &b.payload[..599]), &b));
        assert!(
            why.contains("places 599 bytes at 0x80100000; the build places 600"),
            "{why}"
        );
    }

    #[test]
    fn any_published_image_may_run_and_the_newest_match_counts() {
        let old = build();
        let new = image(vec![5; 700]);
        let published = [old.clone(), new.clone()];
        for p in [&old, &new] {
            let f = judge(
                &seen(&record(p), BASE, &p.payload),
                3,
                NodeType::Drive,
                &published,
            );
            assert!(matches!(f, Finding::Runs(_)), "{f:?}");
        }
    }

    #[test]
    fn a_cpu_outside_its_image_is_wrong() {
        let b = build();
        // In the image region, past the image's bytes: unverified memory.
        let why = wrong(j(&seen(&record(&b), BASE + 600, &b.payload), &b));
        assert_eq!(
            why,
            "the CPU runs at 0x80100258, outside its image [0x80100000, 0x80100258)"
        );
        // Anywhere else in RAM (code an app put in its RAM, the handoff
        // page): the image's bytes are intact, but it does not run them.
        for pc in [memory::APP_RAM_BASE + 0x40, memory::HANDOFF_BASE] {
            let why = wrong(j(&seen(&record(&b), pc, &b.payload), &b));
            assert_eq!(
                why,
                format!("the CPU runs at {pc:#x}, outside its image [0x80100000, 0x80100258)")
            );
        }
        // So too without a record.
        let mut r = record(&b);
        r.magic = 0;
        let why = wrong(j(&seen(&r, memory::APP_RAM_BASE, &[]), &b));
        assert!(
            why.starts_with("the CPU runs in RAM (pc 0x80040000)"),
            "{why}"
        );
        // Outside RAM no app runs: QEMU's reset code, on the way to flash.
        let why = not_yet(j(&seen(&record(&b), 0x1000, &b.payload), &b));
        assert_eq!(why, "no app runs: the CPU is outside RAM (pc 0x1000)");
    }

    #[test]
    fn the_span_to_read_is_the_records_bounded_by_the_region_and_the_limit() {
        let b = build();
        let r = record(&b);
        assert_eq!(image_span(&r, 1 << 20), Some((BASE, 600)));
        assert_eq!(image_span(&r, 100), Some((BASE, 100)));
        let mut outside = r;
        outside.load_addr = memory::APP_RAM_BASE;
        assert_eq!(image_span(&outside, 1 << 20), None);
        outside.load_addr = memory::IMAGE_END - 10;
        assert_eq!(image_span(&outside, 1 << 20), None);
        assert_eq!(image_span(&Handoff::zeroed(), 1 << 20), None);
    }
}
