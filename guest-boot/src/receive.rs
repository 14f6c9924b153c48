//! Receiving one image from a session: keep only the part for our node type,
//! hand its bytes to the caller to store at their load address, ask for
//! what was missed, and check the result before use. Free of devices: the
//! time and the image region ([`ImageRam`]) come from the caller.
//!
//! The payload's SHA-256 is measured while the image arrives, in the time
//! between frames ([`Receiver::measure`], a slice at a time): the bytes of
//! the chunks received from the start of the part are read back from RAM
//! and hashed, in order. Chunks that come out of order (repair) wait in RAM
//! until the gap before them closes. So after the last chunk only what the
//! node had no time for remains (with time to spare, its own bytes), not a
//! second pass over the image; and a node that cannot keep up with the bus
//! spends no time on it until the last chunk is in.

use board::memory;
use board::strap::Strap;
use board::time;
use images::manifest::{MANIFEST_LEN, Manifest, ManifestError, NAME_LEN};
use images::sha256::{Digest, Sha256};
use proto::msg::{
    self, MODE_UNICAST, Message, NACK_RANGES, Nack, Reject, RejectReason, SessionAnnounce,
};

/// Chunks one session part may have: one bit each. At 60-byte chunks this
/// covers the whole image region.
pub const MAX_CHUNKS: usize = 64 * 8192;
/// One bit per chunk of the part being received: 64 KiB, more than the
/// boot ROM's stack, so the caller lends a static.
pub type ChunkBitmap = [u64; MAX_CHUNKS / 64];
/// Most `Nack` frames one repair round gets from a node.
pub const NACK_FRAMES: usize = 4;
/// Longest random wait before a `Nack`, so that one node's `Nack` can spare
/// the others theirs.
pub const NACK_BACKOFF_TICKS: u64 = time::ms(120);

/// The key images must be signed with, built into the boot ROM.
#[cfg(feature = "signature-check")]
#[derive(Clone, Copy, Debug)]
pub struct TrustedKey {
    /// The Ed25519 public key.
    pub key: [u8; 32],
    /// Its key id, reported when a signature does not verify.
    pub id: [u8; 8],
}

/// The image region as the receiver uses it.
pub trait ImageRam {
    /// Writes `bytes` at `addr` at once (always inside the image region).
    fn store(&mut self, addr: u64, bytes: &[u8]);
    /// The `len` bytes at `addr` as they are in RAM now (always inside the
    /// image region, and stored before). Only [`store`](Self::store) writes
    /// the region, and never bytes already measured.
    fn load(&self, addr: u64, len: u32) -> &[u8];
}

/// What a message did to the reception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not ours.
    Ignored,
    /// Part of our session.
    Accepted,
    /// A session for our type started (or replaced an incomplete one).
    Started,
    /// Our session's image was refused; reception is reset.
    Rejected(Reject),
    /// Every chunk is in and measured; check the image with
    /// [`Receiver::verify`].
    Complete,
}

/// An image that passed every check: what the app's handoff record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The session that delivered it.
    pub session: u32,
    /// Its version.
    pub version: u32,
    /// Where its payload lies.
    pub load_addr: u64,
    /// Payload bytes.
    pub size: u32,
    /// Where it starts.
    pub entry: u64,
    /// Its name, zero-padded.
    pub name: [u8; NAME_LEN],
    /// SHA-256 measured over the payload in RAM.
    pub digest: [u8; 32],
}

struct Current {
    session: u32,
    chunk_size: u32,
    object_len: u32,
    part_offset: u32,
    part_len: u32,
    load_addr: u64,
    version: u32,
    first_chunk: u32,
    chunks: u32,
    received: u32,
    /// When to send the pending `Nack` (mtime ticks), if one is pending.
    nack_at: Option<u64>,
    /// Bits below this may be asked for: everything after an end, only
    /// what the master has sent already (below the highest chunk seen)
    /// when the session merely went quiet.
    nack_limit: usize,
    /// One past the highest chunk bit received.
    seen_limit: usize,
    /// Chunk bits received from the start of the part, without a gap.
    prefix: usize,
    /// Payload bytes measured so far, from its start, into `hash`.
    measured: u32,
    hash: Sha256,
    /// Whether the manifest's signature verified, once checked before the
    /// image was complete ([`Receiver::check_signature`]).
    #[cfg(feature = "signature-check")]
    signed: Option<bool>,
}

impl Current {
    fn payload_len(&self) -> u32 {
        self.part_len - MANIFEST_LEN as u32
    }
}

/// The reception of one session part at a time.
pub struct Receiver<'b> {
    strap: Strap,
    #[cfg(feature = "signature-check")]
    trusted: TrustedKey,
    announce: Option<SessionAnnounce>,
    current: Option<Current>,
    bitmap: &'b mut ChunkBitmap,
    manifest: [u8; MANIFEST_LEN],
}

impl<'b> Receiver<'b> {
    /// A receiver for node `strap`, keeping its chunk bits in `bitmap`.
    pub fn new(
        strap: Strap,
        #[cfg(feature = "signature-check")] trusted: TrustedKey,
        bitmap: &'b mut ChunkBitmap,
    ) -> Receiver<'b> {
        Receiver {
            strap,
            #[cfg(feature = "signature-check")]
            trusted,
            announce: None,
            current: None,
            bitmap,
            manifest: [0; MANIFEST_LEN],
        }
    }

    /// Whether a session for our type is being received.
    pub fn active(&self) -> bool {
        self.current.is_some()
    }

    /// Gives up the current session.
    pub fn abandon(&mut self) {
        self.current = None;
    }

    /// (session, chunks received, chunks in our part).
    pub fn progress(&self) -> (u32, u32, u32) {
        self.current
            .as_ref()
            .map_or((0, 0, 0), |c| (c.session, c.received, c.chunks))
    }

    /// When a pending `Nack` is due, if one is.
    pub fn nack_due(&self) -> Option<u64> {
        self.current.as_ref().and_then(|c| c.nack_at)
    }

    /// Where the current part's payload goes: (load address, bytes).
    pub fn payload_span(&self) -> Option<(u64, u32)> {
        self.current
            .as_ref()
            .map(|c| (c.load_addr, c.payload_len()))
    }

    /// The session went quiet with chunks still missing (its end, or the
    /// repair that followed, was lost): ask after a random backoff, as
    /// after an end.
    pub fn quiet(&mut self, now: u64, random: u32) {
        if let Some(c) = self
            .current
            .as_mut()
            .filter(|c| c.received < c.chunks && c.nack_at.is_none())
        {
            c.nack_at = Some(now + random as u64 % NACK_BACKOFF_TICKS);
            c.nack_limit = c.seen_limit;
        }
    }

    /// Ends the reception and describes why.
    fn refuse(&mut self, reason: RejectReason, session: u32, version: u32) -> Reject {
        self.current = None;
        Reject {
            node_type: self.strap.node_type,
            reason: reason as u8,
            session,
            version,
            measured: [0; 16],
            expected: [0; 16],
        }
    }

    fn reject(&mut self, reason: RejectReason, session: u32, version: u32) -> Progress {
        Progress::Rejected(self.refuse(reason, session, version))
    }

    fn has(&self, bit: usize) -> bool {
        has(self.bitmap, bit)
    }

    /// Our missing chunks from bit `from` on, as at most [`NACK_RANGES`]
    /// ranges, and the bit to continue from.
    fn missing(&self, from: usize) -> Option<(Nack, usize)> {
        let c = self.current.as_ref()?;
        let mut nack = Nack {
            session: c.session,
            count: 0,
            ranges: [(0, 0); NACK_RANGES],
        };
        let limit = c.nack_limit.min(c.chunks as usize);
        let mut i = from;
        while i < limit && (nack.count as usize) < NACK_RANGES {
            if self.has(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < limit && !self.has(i) && i - start < u16::MAX as usize {
                i += 1;
            }
            nack.ranges[nack.count as usize] = (c.first_chunk + start as u32, (i - start) as u16);
            nack.count += 1;
        }
        Some((nack, i))
    }

    /// Hands `send` the `Nack`s due now (several when more ranges are
    /// missing than one holds), clearing the timer. Nothing when none is due
    /// or it was suppressed.
    pub fn take_nacks(&mut self, now: u64, mut send: impl FnMut(Nack)) {
        let Some(due) = self.current.as_ref().and_then(|c| c.nack_at) else {
            return;
        };
        if now < due {
            return;
        }
        if let Some(c) = self.current.as_mut() {
            c.nack_at = None;
        }
        let mut from = 0;
        for _ in 0..NACK_FRAMES {
            match self.missing(from) {
                Some((nack, next)) if nack.count > 0 => {
                    send(nack);
                    from = next;
                }
                _ => break,
            }
        }
    }

    /// Takes one message. `random` is a fresh random number; `now` reads
    /// the clock, for the one message that starts a timer; `ram` takes the
    /// image's bytes and gives them back to be measured.
    pub fn on_message(
        &mut self,
        m: &Message<'_>,
        random: u32,
        now: impl FnOnce() -> u64,
        ram: &mut impl ImageRam,
    ) -> Progress {
        match *m {
            Message::SessionAnnounce(a) => {
                self.announce = Some(a);
                Progress::Ignored
            }
            Message::SessionPart(p) => self.on_part(p),
            Message::Data(d) => self.on_data(d.session, d.chunk, d.payload, ram),
            Message::SessionEnd(e) => {
                let Some(c) = self.current.as_mut().filter(|c| c.session == e.session) else {
                    return Progress::Ignored;
                };
                if c.received == c.chunks {
                    return Progress::Accepted;
                }
                if e.last != 0 {
                    let (s, v) = (c.session, c.version);
                    return self.reject(RejectReason::Incomplete, s, v);
                }
                c.nack_at = Some(now() + random as u64 % NACK_BACKOFF_TICKS);
                c.nack_limit = c.chunks as usize;
                Progress::Accepted
            }
            Message::Nack(n) => {
                // Another node asked: if that covers all we miss, stay quiet.
                let waiting = self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.session == n.session && c.nack_at.is_some());
                if !waiting {
                    return Progress::Ignored;
                }
                if let Some((want, _)) = self.missing(0) {
                    let theirs = &n.ranges[..(n.count as usize).min(NACK_RANGES)];
                    let covered = want.ranges[..want.count as usize].iter().all(|&(s, l)| {
                        theirs
                            .iter()
                            .any(|&(ts, tl)| ts <= s && s + l as u32 <= ts + tl as u32)
                    });
                    if let Some(c) = self.current.as_mut().filter(|_| covered) {
                        c.nack_at = None;
                    }
                }
                Progress::Ignored
            }
            _ => Progress::Ignored,
        }
    }

    fn on_part(&mut self, p: msg::SessionPart) -> Progress {
        let Some(a) = self.announce.filter(|a| a.session == p.session) else {
            return Progress::Ignored;
        };
        if p.node_type != self.strap.node_type
            || (a.mode == MODE_UNICAST && a.target != self.strap.node)
        {
            return Progress::Ignored;
        }
        match &self.current {
            // The same session announced again (for a late joiner): go on.
            Some(c) if c.session == p.session => return Progress::Accepted,
            // A newer session for our type replaces an incomplete one.
            _ => self.current = None,
        }
        if p.manifest_len as usize != MANIFEST_LEN || p.len <= MANIFEST_LEN as u32 {
            return self.reject(RejectReason::BadManifest, p.session, p.version);
        }
        if p.offset
            .checked_add(p.len)
            .is_none_or(|end| end > a.object_len)
        {
            return self.reject(RejectReason::Inconsistent, p.session, p.version);
        }
        let payload_len = (p.len - MANIFEST_LEN as u32) as u64;
        if !memory::in_image_region(p.load_addr, payload_len) {
            return self.reject(RejectReason::OutOfRegion, p.session, p.version);
        }
        if p.version < self.strap.min_version {
            return self.reject(RejectReason::VersionTooLow, p.session, p.version);
        }
        let cs = a.chunk_size as u32;
        let first_chunk = p.offset / cs;
        let chunks = (p.offset + p.len - 1) / cs - first_chunk + 1;
        if chunks as usize > MAX_CHUNKS {
            return self.reject(RejectReason::OutOfRegion, p.session, p.version);
        }
        self.bitmap[..(chunks as usize).div_ceil(64)].fill(0);
        self.current = Some(Current {
            session: p.session,
            chunk_size: cs,
            object_len: a.object_len,
            part_offset: p.offset,
            part_len: p.len,
            load_addr: p.load_addr,
            version: p.version,
            first_chunk,
            chunks,
            received: 0,
            nack_at: None,
            nack_limit: 0,
            seen_limit: 0,
            prefix: 0,
            measured: 0,
            hash: Sha256::new(),
            #[cfg(feature = "signature-check")]
            signed: None,
        });
        Progress::Started
    }

    fn on_data(
        &mut self,
        session: u8,
        chunk: u32,
        payload: &[u8],
        ram: &mut impl ImageRam,
    ) -> Progress {
        let Some(c) = self.current.as_ref() else {
            return Progress::Ignored;
        };
        if session != c.session as u8 {
            return Progress::Ignored;
        }
        if chunk < c.first_chunk || chunk - c.first_chunk >= c.chunks {
            // Another part of a combined session.
            return Progress::Accepted;
        }
        let bit = (chunk - c.first_chunk) as usize;
        if self.has(bit) {
            return Progress::Accepted;
        }
        // The chunk's bytes in the object, clipped to our part.
        let start = chunk as u64 * c.chunk_size as u64;
        let end = (start + c.chunk_size as u64).min(c.object_len as u64);
        let from = start.max(c.part_offset as u64);
        let to = end.min(c.part_offset as u64 + c.part_len as u64);
        if to <= from || (end - start) as usize > payload.len() {
            return Progress::Accepted;
        }
        let manifest_end = c.part_offset as u64 + MANIFEST_LEN as u64;
        for pos in from..to.min(manifest_end) {
            self.manifest[(pos - c.part_offset as u64) as usize] = payload[(pos - start) as usize];
        }
        let ram_from = from.max(manifest_end);
        if ram_from < to {
            // Inside the payload range [load_addr, load_addr + payload_len),
            // which was checked to lie in the image region when the session
            // started.
            let src = &payload[(ram_from - start) as usize..(to - start) as usize];
            ram.store(c.load_addr + (ram_from - manifest_end), src);
        }
        self.bitmap[bit / 64] |= 1 << (bit % 64);
        let Some(c) = self.current.as_mut() else {
            return Progress::Ignored;
        };
        c.received += 1;
        c.seen_limit = c.seen_limit.max(bit + 1);
        if c.received == c.chunks {
            c.nack_at = None;
            Progress::Complete
        } else {
            Progress::Accepted
        }
    }

    /// Hashes at most `max` more payload bytes of those the chunks received
    /// from the part's start cover, reading them from RAM; whether it
    /// hashed any.
    pub fn measure(&mut self, ram: &impl ImageRam, max: u32) -> bool {
        match self.current.as_mut() {
            Some(c) => measure_prefix(c, self.bitmap, ram, max),
            None => false,
        }
    }

    /// Checks the manifest's signature once all of the manifest is in, if
    /// not done yet; whether it did so now (the result waits for
    /// [`verify`](Self::verify), which reports it in its place among the
    /// checks). The signature covers the manifest alone, so checking it
    /// before the payload is complete checks the same bytes.
    pub fn check_signature(&mut self) -> bool {
        #[cfg(feature = "signature-check")]
        if let Some(c) = self.current.as_mut().filter(|c| c.signed.is_none()) {
            let manifest_end = c.part_offset as u64 + MANIFEST_LEN as u64;
            if covered(c, self.bitmap) >= manifest_end {
                let key = &self.trusted.key;
                c.signed = Some(images::signature::verify_signature(&self.manifest, key).is_ok());
                return true;
            }
        }
        false
    }

    /// Checks a complete image, in this order: manifest, type, consistency
    /// with the session, version floor, SHA-256 over the payload (measured
    /// as it came, from the bytes in RAM at
    /// [`payload_span`](Self::payload_span)), then (with `signature-check`)
    /// the signature over the manifest, which covers that digest. So a
    /// changed payload is reported as a digest mismatch, a changed manifest
    /// as a bad signature. Any failure ends the reception.
    pub fn verify(&mut self, ram: &impl ImageRam) -> Result<LoadedImage, Reject> {
        self.measure(ram, u32::MAX);
        let Some(c) = self
            .current
            .as_ref()
            .filter(|c| c.measured == c.payload_len())
        else {
            let (s, v) = self
                .current
                .as_ref()
                .map_or((0, 0), |c| (c.session, c.version));
            return Err(self.refuse(RejectReason::Incomplete, s, v));
        };
        let (session, version) = (c.session, c.version);
        let manifest = match Manifest::parse(&self.manifest[..]) {
            Ok(m) => m,
            Err(ManifestError::OutOfRegion | ManifestError::EntryOutsidePayload) => {
                return Err(self.refuse(RejectReason::OutOfRegion, session, version));
            }
            Err(_) => return Err(self.refuse(RejectReason::BadManifest, session, version)),
        };
        if manifest.node_type as u8 != self.strap.node_type {
            return Err(self.refuse(RejectReason::WrongType, session, version));
        }
        if manifest.load_addr != c.load_addr
            || manifest.size != c.payload_len()
            || manifest.version != c.version
        {
            return Err(self.refuse(RejectReason::Inconsistent, session, version));
        }
        if manifest.version < self.strap.min_version {
            return Err(self.refuse(RejectReason::VersionTooLow, session, version));
        }
        let digest: [u8; 32] = c.hash.clone().finalize().into();
        #[cfg(feature = "signature-check")]
        let signed = c.signed;
        if digest != manifest.sha256 {
            let mut reject = self.refuse(RejectReason::DigestMismatch, session, version);
            reject.measured.copy_from_slice(&digest[..16]);
            reject.expected.copy_from_slice(&manifest.sha256[..16]);
            return Err(reject);
        }
        #[cfg(feature = "signature-check")]
        if !signed.unwrap_or_else(|| {
            images::signature::verify_signature(&self.manifest, &self.trusted.key).is_ok()
        }) {
            // Which key signed it, against which key we trust: unsigned
            // images show zeros.
            let mut reject = self.refuse(RejectReason::BadSignature, session, version);
            reject.measured[..8].copy_from_slice(&self.trusted.id);
            reject.expected[..8].copy_from_slice(&manifest.key_id);
            return Err(reject);
        }
        Ok(LoadedImage {
            session,
            version: manifest.version,
            load_addr: manifest.load_addr,
            size: manifest.size,
            entry: manifest.entry,
            name: manifest.name,
            digest,
        })
    }
}

fn has(bitmap: &ChunkBitmap, bit: usize) -> bool {
    bitmap[bit / 64] & (1 << (bit % 64)) != 0
}

/// Where, in the object, the chunks received from the part's start without
/// a gap end (clipped to the part), moving `c.prefix` on over new ones.
fn covered(c: &mut Current, bitmap: &ChunkBitmap) -> u64 {
    while c.prefix < c.chunks as usize && has(bitmap, c.prefix) {
        c.prefix += 1;
    }
    let part_end = c.part_offset as u64 + c.part_len as u64;
    ((c.first_chunk as u64 + c.prefix as u64) * c.chunk_size as u64).min(part_end)
}

/// Hashes up to `max` payload bytes that the chunks received from the
/// start of the part cover and that are not measured yet, reading them
/// from RAM; whether it hashed any.
fn measure_prefix(c: &mut Current, bitmap: &ChunkBitmap, ram: &impl ImageRam, max: u32) -> bool {
    let covered = covered(c, bitmap);
    let manifest_end = c.part_offset as u64 + MANIFEST_LEN as u64;
    let end = (covered.saturating_sub(manifest_end) as u32).min(c.measured.saturating_add(max));
    if end <= c.measured {
        return false;
    }
    c.hash
        .update(ram.load(c.load_addr + c.measured as u64, end - c.measured));
    c.measured = end;
    true
}
