//! The link codec: how a [`Frame`] crosses a byte stream between a node (or
//! the master) and the bus-bridge.
//!
//! A link frame is `COBS(flags, id u32 LE, len, data[len], crc32 LE)`
//! followed by one zero byte. COBS leaves no zero inside a frame, so a
//! receiver that starts mid-stream, or meets garbage, resynchronises at the
//! next zero. The CRC-32 covers everything before it.
//!
//! A node may also send its port a control record, which never reaches the
//! bus: `COBS(0xC0, command, count, entries…, crc32 LE)`. [`CMD_SET_FILTER`]
//! sets the port's [`AcceptanceFilter`]; each entry is `id u32 LE` (bit 31:
//! extended) then `mask u32 LE`.
//!
//! On the virtual clock, each frame on the link, either way, follows a
//! time record `COBS(0xC0, CMD_AT, ns u64 LE, crc32 LE)` ([`CMD_AT`]): the
//! sender's virtual time when a node sends, the delivery time when the
//! bridge delivers (the node holds the frame until then).
//!
//! A host program on the virtual clock (a *timed* client: master,
//! supervisor) keeps the bus's time in-band with three more records, each
//! `COBS(0xC0, command, u64 LE, u64 LE, crc32 LE)`: [`CMD_UNTIL`] (bridge →
//! client: everything due before this time has been sent; act up to it),
//! [`CMD_IDLE`] (client → bridge: done with everything before `at`; the
//! next timer is `wake`, [`NEVER`] for none) and [`CMD_TX_FREE`] (bridge →
//! client: places of its TX FIFO freed, at the time of the time record
//! before it).

use crate::crc;
use crate::filter::{AcceptanceFilter, FilterEntry, MAX_ENTRIES};
use crate::frame::{Frame, FrameError, MAX_DATA};

/// First byte of a control record (no frame has these flag bits).
pub const CONTROL_MARK: u8 = 0xC0;
/// Control command: set the port's acceptance filter.
pub const CMD_SET_FILTER: u8 = 1;
/// Control command: the next frame's virtual time.
pub const CMD_AT: u8 = 2;
/// Control command (bridge → timed client): act up to this virtual time.
pub const CMD_UNTIL: u8 = 3;
/// Control command (timed client → bridge): idle from `at` until `wake`.
pub const CMD_IDLE: u8 = 4;
/// Control command (bridge → timed client): TX FIFO places freed.
pub const CMD_TX_FREE: u8 = 5;
/// "No time" in a [`CMD_IDLE`] record: no timer armed.
pub const NEVER: u64 = u64::MAX;
const ENTRY_EXTENDED: u32 = 1 << 31;

/// Largest frame before COBS: header (6) + data (64) + CRC (4).
pub const MAX_RAW: usize = 6 + MAX_DATA + 4;
/// Largest COBS body: one overhead byte per 254 bytes, plus the first.
pub const MAX_BODY: usize = MAX_RAW + MAX_RAW.div_ceil(254);
/// Largest encoded link frame, delimiter included.
pub const MAX_ENCODED: usize = MAX_BODY + 1;
const MIN_RAW: usize = 6 + 4;

/// Why a link frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkError {
    /// More bytes than the largest frame before a delimiter.
    Oversize = 1,
    /// The COBS structure is broken (a code byte points past the end).
    BadCobs = 2,
    /// Too short to hold a header and a CRC.
    Truncated = 3,
    /// The CRC does not match.
    BadCrc = 4,
    /// The length byte disagrees with the bytes received.
    LengthMismatch = 5,
    /// The header decodes to an invalid frame.
    BadFrame = 6,
    /// A control record where only frames may come, or a malformed one.
    BadControl = 7,
}

impl From<FrameError> for LinkError {
    fn from(_: FrameError) -> Self {
        LinkError::BadFrame
    }
}

impl LinkError {
    /// A short name for logs and statistics.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkError::Oversize => "oversize",
            LinkError::BadCobs => "bad_cobs",
            LinkError::Truncated => "truncated",
            LinkError::BadCrc => "bad_crc",
            LinkError::LengthMismatch => "length_mismatch",
            LinkError::BadFrame => "bad_frame",
            LinkError::BadControl => "bad_control",
        }
    }
}

/// What a link frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// A bus frame.
    Frame(Frame),
    /// A control record: set the port's acceptance filter.
    SetFilter(AcceptanceFilter),
    /// A control record: the next frame's virtual time, ns.
    At(u64),
    /// A control record to a timed client: everything due before this
    /// virtual time (ns) has been sent; it may act up to it.
    Until(u64),
    /// A control record from a timed client: it has done everything due
    /// before `at` and sleeps until `wake` ([`NEVER`]: until a frame).
    Idle {
        /// How far it has gone, ns.
        at: u64,
        /// Its next timer, ns.
        wake: u64,
    },
    /// A control record to a timed client: this many of its TX FIFO places
    /// are free again (at the time record's time before it).
    TxFree(u32),
}

/// Encodes `frame` into `out` and returns the number of bytes written,
/// delimiter included.
pub fn encode(frame: &Frame, out: &mut [u8; MAX_ENCODED]) -> usize {
    let mut raw = [0u8; MAX_RAW];
    let data = frame.data();
    raw[0] = frame.flags();
    raw[1..5].copy_from_slice(&frame.id().to_le_bytes());
    raw[5] = data.len() as u8;
    raw[6..6 + data.len()].copy_from_slice(data);
    seal(&mut raw, 6 + data.len(), out)
}

/// Encodes a set-filter control record into `out`.
pub fn encode_filter(filter: &AcceptanceFilter, out: &mut [u8; MAX_ENCODED]) -> usize {
    let mut raw = [0u8; MAX_RAW];
    raw[0] = CONTROL_MARK;
    raw[1] = CMD_SET_FILTER;
    raw[2] = filter.entries().len() as u8;
    let mut at = 3;
    for e in filter.entries() {
        let id = e.id | if e.extended { ENTRY_EXTENDED } else { 0 };
        raw[at..at + 4].copy_from_slice(&id.to_le_bytes());
        raw[at + 4..at + 8].copy_from_slice(&e.mask.to_le_bytes());
        at += 8;
    }
    seal(&mut raw, at, out)
}

/// Encodes a time record (the next frame's virtual time, `ns`) into `out`.
pub fn encode_at(ns: u64, out: &mut [u8; MAX_ENCODED]) -> usize {
    let mut raw = [0u8; MAX_RAW];
    raw[0] = CONTROL_MARK;
    raw[1] = CMD_AT;
    raw[2..10].copy_from_slice(&ns.to_le_bytes());
    seal(&mut raw, 10, out)
}

/// Encodes a two-number clock record (`CMD_UNTIL`, `CMD_IDLE`,
/// `CMD_TX_FREE`) into `out`.
fn encode_pair(command: u8, a: u64, b: u64, out: &mut [u8; MAX_ENCODED]) -> usize {
    let mut raw = [0u8; MAX_RAW];
    raw[0] = CONTROL_MARK;
    raw[1] = command;
    raw[2..10].copy_from_slice(&a.to_le_bytes());
    raw[10..18].copy_from_slice(&b.to_le_bytes());
    seal(&mut raw, 18, out)
}

/// Encodes an [`Item::Until`] record into `out`.
pub fn encode_until(ns: u64, out: &mut [u8; MAX_ENCODED]) -> usize {
    encode_pair(CMD_UNTIL, ns, 0, out)
}

/// Encodes an [`Item::Idle`] record into `out`.
pub fn encode_idle(at: u64, wake: u64, out: &mut [u8; MAX_ENCODED]) -> usize {
    encode_pair(CMD_IDLE, at, wake, out)
}

/// Encodes an [`Item::TxFree`] record into `out`.
pub fn encode_tx_free(places: u32, out: &mut [u8; MAX_ENCODED]) -> usize {
    encode_pair(CMD_TX_FREE, u64::from(places), 0, out)
}

/// Appends the CRC to `raw[..len]`, COBS-encodes it into `out` and adds the
/// delimiter.
fn seal(raw: &mut [u8; MAX_RAW], len: usize, out: &mut [u8; MAX_ENCODED]) -> usize {
    let crc = crc::crc32(&raw[..len]);
    raw[len..len + 4].copy_from_slice(&crc.to_le_bytes());
    let n = cobs_encode(&raw[..len + 4], &mut out[..MAX_BODY]);
    out[n] = 0;
    n + 1
}

/// COBS-encodes `src` into `dst`, which must hold `src.len() + src.len() / 254 + 1` bytes.
fn cobs_encode(src: &[u8], dst: &mut [u8]) -> usize {
    let mut code_at = 0;
    let mut out = 1;
    let mut code: u8 = 1;
    for &b in src {
        if b == 0 {
            dst[code_at] = code;
            code_at = out;
            out += 1;
            code = 1;
        } else {
            dst[out] = b;
            out += 1;
            code += 1;
            if code == 0xFF {
                dst[code_at] = code;
                code_at = out;
                out += 1;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    out
}

/// The decoder's buffer: a power of two above [`MAX_BODY`].
const BUF: usize = MAX_BODY.next_power_of_two();

/// A streaming decoder. Feed it bytes; it yields a result at each delimiter.
/// Its memory is fixed, and no input makes it panic.
///
/// COBS is undone as the bytes arrive, straight into the frame buffer, in
/// the same pass that looks for the delimiter and runs the CRC.
pub struct Decoder {
    /// The frame so far, COBS undone. A power of two past `MAX_BODY`, so
    /// that an index masked to it needs no bounds check (`len` never
    /// reaches `MAX_BODY`: see [`undo_cobs`](Self::undo_cobs)).
    buf: [u8; BUF],
    len: usize,
    /// The CRC state over `buf[..len]`, kept as the bytes come.
    crc: u32,
    /// Encoded bytes since the last delimiter; past `MAX_BODY` the frame is
    /// oversize and nothing more is kept.
    seen: usize,
    /// Bytes left in the current COBS block; 0: the next byte is a code.
    left: u8,
    /// The current block ends in a zero, written once another block follows.
    zero_due: bool,
    /// The last frame [`push_slice`](Self::push_slice) decoded.
    frame: Frame,
    /// The time record that came last, for the next frame.
    at: Option<u64>,
    /// The time record of the last frame `push_slice` decoded.
    frame_at: Option<u64>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// An empty decoder.
    pub const fn new() -> Decoder {
        Decoder {
            buf: [0; BUF],
            len: 0,
            crc: crc::INIT,
            seen: 0,
            left: 0,
            zero_due: false,
            frame: Frame::EMPTY,
            at: None,
            frame_at: None,
        }
    }

    /// Drops any partial frame, e.g. after the peer reconnects.
    pub fn reset(&mut self) {
        self.len = 0;
        self.crc = crc::INIT;
        self.seen = 0;
        self.left = 0;
        self.zero_due = false;
    }

    /// Feeds one byte where only bus frames may come (a node's side of the
    /// link): a control record is an error.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame, LinkError>> {
        let (_, r) = self.push_slice(&[byte]);
        r.map(|r| r.copied())
    }

    /// Feeds one byte. Returns `Some` at the end of a link frame. Empty
    /// frames (back-to-back delimiters) are line idle and yield nothing.
    pub fn push_item(&mut self, byte: u8) -> Option<Result<Item, LinkError>> {
        self.push_slice_item(&[byte]).1
    }

    /// [`push_slice_item`](Self::push_slice_item) where only bus frames (a
    /// node's side of the link) and time records may come: another control
    /// record is an error. A time record yields nothing; it is kept for the
    /// frame after it ([`frame_at`](Self::frame_at)). The frame stays in the
    /// decoder (see [`frame`](Self::frame)) rather than being copied out.
    pub fn push_slice(&mut self, bytes: &[u8]) -> (usize, Option<Result<&Frame, LinkError>>) {
        let (n, end) = self.scan(bytes);
        let Some(end) = end else { return (n, None) };
        let r = match end {
            Err(e) => Err(e),
            Ok(end) => match checked(&self.buf[..end.len], end.crc) {
                Err(e) => Err(e),
                Ok(p) if p[0] == CONTROL_MARK => match decode_at(p) {
                    Ok(t) => {
                        self.at = Some(t);
                        return (n, None);
                    }
                    Err(e) => Err(e),
                },
                Ok(p) => frame_into(p, &mut self.frame),
            },
        };
        self.frame_at = self.at.take();
        (n, Some(r.map(|()| &self.frame)))
    }

    /// The virtual time of the last frame [`push_slice`](Self::push_slice)
    /// decoded, if a time record came just before it.
    pub fn frame_at(&self) -> Option<u64> {
        self.frame_at
    }

    /// Feeds bytes up to and including the first delimiter that ends a link
    /// frame, and returns how many it took with that frame's result; all of
    /// `bytes` and `None` if no frame ends in them. The same as feeding the
    /// bytes one by one to [`push_item`](Self::push_item) until it returns
    /// `Some`, but in one pass over them.
    pub fn push_slice_item(&mut self, bytes: &[u8]) -> (usize, Option<Result<Item, LinkError>>) {
        let (n, end) = self.scan(bytes);
        let r = end.map(|r| {
            let end = r?;
            let payload = checked(&self.buf[..end.len], end.crc)?;
            if payload[0] == CONTROL_MARK {
                return decode_record(payload);
            }
            let mut frame = Frame::EMPTY;
            frame_into(payload, &mut frame)?;
            Ok(Item::Frame(frame))
        });
        (n, r)
    }

    /// The items that end in `bytes`, each decoded in one pass over its
    /// run of bytes: the same as feeding them one by one to
    /// [`push_item`](Self::push_item), without a call per byte. A frame
    /// left unfinished stays in the decoder for the next bytes.
    pub fn items<'a>(&'a mut self, bytes: &'a [u8]) -> Items<'a> {
        Items {
            decoder: self,
            bytes,
        }
    }

    /// The last frame [`push_slice`](Self::push_slice) decoded (an empty
    /// classic frame before the first).
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// Takes bytes up to the first delimiter that ends a link frame, undoing
    /// COBS into `buf` on the way. Returns how many bytes it took and, if a
    /// frame ended, its length in `buf` and CRC state, or why it cannot be one.
    fn scan(&mut self, bytes: &[u8]) -> (usize, Option<Result<Scanned, LinkError>>) {
        let mut i = 0;
        while i < bytes.len() {
            if self.seen > MAX_BODY {
                // Oversize: drop everything up to the delimiter.
                let Some(z) = bytes[i..].iter().position(|&b| b == 0) else {
                    return (bytes.len(), None);
                };
                self.reset();
                return (i + z + 1, Some(Err(LinkError::Oversize)));
            }
            // The bytes that may still belong to a frame, and one more: a
            // delimiter, or the byte that makes the frame oversize.
            let run = &bytes[i..bytes.len().min(i + MAX_BODY - self.seen + 1)];
            let (taken, ended) = self.undo_cobs(run);
            self.seen += taken;
            i += taken;
            if !ended {
                // No delimiter yet: the run ended, or the frame is oversize.
                continue;
            }
            // A delimiter.
            i += 1;
            let (seen, left, len, crc) = (self.seen, self.left, self.len, self.crc);
            self.reset();
            if seen == 0 {
                // Line idle.
                continue;
            }
            let end = if left != 0 {
                // The last code byte pointed past the delimiter.
                Err(LinkError::BadCobs)
            } else {
                Ok(Scanned { len, crc })
            };
            return (i, Some(end));
        }
        (i, None)
    }

    /// Undoes COBS over `run` into `buf` and the CRC, up to its first zero.
    /// Returns how many bytes it took and whether a zero ended them. Each
    /// code byte writes at most one zero, for the block before it, and the
    /// first writes none: the frame stays shorter than what came, so `len`
    /// stays below `MAX_BODY` even with the byte past it.
    // Out of line, in the guests' `.text.hot` page (see `board::linker`).
    #[inline(never)]
    #[unsafe(link_section = ".text.hot")]
    fn undo_cobs(&mut self, run: &[u8]) -> (usize, bool) {
        let (mut len, mut left, mut crc) = (self.len, self.left as usize, self.crc);
        let mut k = 0;
        let mut ended = false;
        while k < run.len() {
            if left == 0 {
                let code = run[k];
                if code == 0 {
                    ended = true;
                    break;
                }
                if self.zero_due {
                    self.buf[len & (BUF - 1)] = 0;
                    len += 1;
                    crc = crc::update_byte(crc, 0);
                }
                left = code as usize - 1;
                self.zero_due = code != 0xFF;
                k += 1;
                continue;
            }
            // The block's data bytes, in tight loops: none is zero, or the
            // frame ends there. Four at a time while four are left and none
            // of them is zero, then one at a time.
            let block = &run[k..run.len().min(k + left)];
            let mut j = 0;
            while let Some(four) = block.get(j..j + 4) {
                let word = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
                let Some(to) = self.buf.get_mut(len + j..len + j + 4) else {
                    break;
                };
                if has_zero_byte(word) {
                    break;
                }
                to.copy_from_slice(four);
                crc = crc::update_word(crc, word);
                j += 4;
            }
            let mut n = block.len();
            for (j, &b) in block.iter().enumerate().skip(j) {
                if b == 0 {
                    n = j;
                    ended = true;
                    break;
                }
                self.buf[(len + j) & (BUF - 1)] = b;
                crc = crc::update_byte(crc, b);
            }
            len += n;
            left -= n;
            k += n;
            if ended {
                break;
            }
        }
        (self.len, self.left, self.crc) = (len, left as u8, crc);
        (k, ended)
    }
}

/// Whether any byte of `word` is zero.
#[inline(always)]
fn has_zero_byte(word: u32) -> bool {
    word.wrapping_sub(0x0101_0101) & !word & 0x8080_8080 != 0
}

/// A link frame that ended well-formed in COBS: its length in the
/// decoder's buffer and the CRC state over it.
struct Scanned {
    len: usize,
    crc: u32,
}

/// The items that end in a run of bytes (see [`Decoder::items`]).
pub struct Items<'a> {
    decoder: &'a mut Decoder,
    bytes: &'a [u8],
}

impl Iterator for Items<'_> {
    type Item = Result<Item, LinkError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.bytes.is_empty() {
            let (n, r) = self.decoder.push_slice_item(self.bytes);
            self.bytes = &self.bytes[n..];
            if r.is_some() {
                return r;
            }
        }
        None
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// What the CRC covers, once it matches: a link frame with its COBS undone.
fn checked(raw: &[u8], crc: u32) -> Result<&[u8], LinkError> {
    let n = raw.len();
    if n < 3 + 4 {
        return Err(LinkError::Truncated);
    }
    if crc != crc::RESIDUE {
        return Err(LinkError::BadCrc);
    }
    Ok(&raw[..n - 4])
}

/// Parses a bus frame's CRC-checked bytes into `frame`.
fn frame_into(payload: &[u8], frame: &mut Frame) -> Result<(), LinkError> {
    if payload.len() + 4 < MIN_RAW {
        return Err(LinkError::Truncated);
    }
    let data_len = payload[5] as usize;
    if payload.len() != 6 + data_len {
        return Err(LinkError::LengthMismatch);
    }
    frame.set(le32(&payload[1..5]), payload[0], &payload[6..])?;
    // A length that the frame format would pad is not canonical: reject it so
    // that every frame has exactly one encoding.
    if frame.data().len() != data_len {
        return Err(LinkError::LengthMismatch);
    }
    Ok(())
}

/// A control record's item.
fn decode_record(payload: &[u8]) -> Result<Item, LinkError> {
    match payload[1] {
        CMD_AT => decode_at(payload).map(Item::At),
        CMD_UNTIL | CMD_IDLE | CMD_TX_FREE => {
            if payload.len() != 18 {
                return Err(LinkError::BadControl);
            }
            let a = le64(&payload[2..10]);
            let b = le64(&payload[10..18]);
            match payload[1] {
                CMD_UNTIL if b == 0 => Ok(Item::Until(a)),
                CMD_IDLE => Ok(Item::Idle { at: a, wake: b }),
                CMD_TX_FREE if b == 0 => u32::try_from(a)
                    .map(Item::TxFree)
                    .map_err(|_| LinkError::BadControl),
                _ => Err(LinkError::BadControl),
            }
        }
        _ => decode_control(payload).map(Item::SetFilter),
    }
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn decode_at(payload: &[u8]) -> Result<u64, LinkError> {
    if payload[1] != CMD_AT || payload.len() != 10 {
        return Err(LinkError::BadControl);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&payload[2..10]);
    Ok(u64::from_le_bytes(b))
}

fn decode_control(payload: &[u8]) -> Result<AcceptanceFilter, LinkError> {
    let count = payload[2] as usize;
    if payload[1] != CMD_SET_FILTER || count > MAX_ENTRIES || payload.len() != 3 + 8 * count {
        return Err(LinkError::BadControl);
    }
    let mut entries = [FilterEntry {
        id: 0,
        mask: 0,
        extended: false,
    }; MAX_ENTRIES];
    for (i, e) in entries.iter_mut().take(count).enumerate() {
        let at = 3 + 8 * i;
        let id = le32(&payload[at..]);
        *e = FilterEntry {
            id: id & !ENTRY_EXTENDED,
            mask: le32(&payload[at + 4..]),
            extended: id & ENTRY_EXTENDED != 0,
        };
    }
    AcceptanceFilter::new(&entries[..count]).ok_or(LinkError::BadControl)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn a_time_record_stamps_the_next_frame() {
        let f = Frame::new(0x123, 0, &[1, 2]).unwrap();
        let mut bytes = std::vec::Vec::new();
        let mut out = [0u8; MAX_ENCODED];
        let n = encode_at(1_234_567, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let n = encode(&f, &mut out);
        bytes.extend_from_slice(&out[..n]);
        bytes.extend_from_slice(&out[..n]);
        // A node's decoder: the record yields nothing, the frame its time.
        let mut d = Decoder::new();
        let (k, r) = d.push_slice(&bytes);
        assert!(r.is_none());
        let (k2, r) = d.push_slice(&bytes[k..]);
        assert_eq!(r, Some(Ok(&f)));
        assert_eq!(d.frame_at(), Some(1_234_567));
        let (_, r) = d.push_slice(&bytes[k + k2..]);
        assert_eq!(r, Some(Ok(&f)));
        assert_eq!(d.frame_at(), None, "a record stamps one frame");
        // The bridge's decoder sees the record as an item.
        let mut d = Decoder::new();
        let items: std::vec::Vec<_> = bytes.iter().filter_map(|&b| d.push_item(b)).collect();
        assert_eq!(items[0], Ok(Item::At(1_234_567)));
        assert_eq!(items[1], Ok(Item::Frame(f)));
        // A filter record is still refused where only frames may come.
        let n = encode_filter(&AcceptanceFilter::accept_all(), &mut out);
        let mut d = Decoder::new();
        assert_eq!(d.push_slice(&out[..n]).1, Some(Err(LinkError::BadControl)));
    }
    use crate::frame::{FLAG_EXTENDED, FLAG_FD};
    use std::vec::Vec;

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = [0u8; MAX_ENCODED];
        let n = encode(frame, &mut out);
        out[..n].to_vec()
    }

    fn decode_all(bytes: &[u8]) -> Vec<Result<Frame, LinkError>> {
        let mut d = Decoder::new();
        bytes.iter().filter_map(|&b| d.push(b)).collect()
    }

    #[test]
    fn round_trip_every_length() {
        for len in [0usize, 1, 7, 8, 12, 20, 48, 64] {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let f = Frame::fd_extended(0x1ABC_DEF0 & 0x1FFF_FFFF, &data).unwrap();
            let bytes = encoded(&f);
            assert!(bytes.len() <= MAX_ENCODED);
            assert_eq!(
                bytes.iter().filter(|&&b| b == 0).count(),
                1,
                "only the delimiter is zero"
            );
            assert_eq!(decode_all(&bytes), [Ok(f)]);
        }
        let classic = Frame::new(0x7FF, 0, &[0, 0, 0]).unwrap();
        assert_eq!(decode_all(&encoded(&classic)), [Ok(classic)]);
    }

    #[test]
    fn all_zero_and_all_ff_payloads() {
        for byte in [0u8, 0xFF] {
            let f = Frame::new(0, FLAG_EXTENDED | FLAG_FD, &[byte; 64]).unwrap();
            assert_eq!(decode_all(&encoded(&f)), [Ok(f)]);
        }
    }

    #[test]
    fn resynchronises_after_garbage() {
        let f = Frame::fd_extended(42, b"hello").unwrap();
        let mut bytes = std::vec![0x13, 0x37, 0x99];
        bytes.extend(encoded(&f));
        let out = decode_all(&bytes);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].is_err(),
            "garbage glued to the first frame is dropped"
        );
        let mut bytes = std::vec![0x13, 0x37, 0x00];
        bytes.extend(encoded(&f));
        let out = decode_all(&bytes);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_err());
        assert_eq!(out[1], Ok(f));
    }

    #[test]
    fn detects_each_kind_of_damage() {
        let f = Frame::fd_extended(7, &[1, 2, 3, 4]).unwrap();
        let good = encoded(&f);
        // A flipped bit in the middle: CRC (or COBS) catches it.
        for i in 0..good.len() - 1 {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            if bad[i] == 0 {
                continue;
            }
            let out = decode_all(&bad);
            assert!(
                out.iter().all(|r| r.is_err()),
                "bit flip at {i} slipped through"
            );
        }
        // Truncation: the frame cut short, then a delimiter.
        for cut in 1..good.len() - 1 {
            let mut bad = good[..cut].to_vec();
            bad.push(0);
            assert!(decode_all(&bad).iter().all(|r| r.is_err()), "cut at {cut}");
        }
        // Oversize: a long run with no delimiter.
        let mut long = std::vec![0x55u8; 500];
        long.push(0);
        assert_eq!(decode_all(&long), [Err(LinkError::Oversize)]);
        // The decoder recovers after oversize.
        long.extend(good.clone());
        assert_eq!(decode_all(&long)[1], Ok(f));
    }

    #[test]
    fn items_of_runs_are_those_of_bytes_fed_one_by_one() {
        let f = Frame::new(0x123, 0, &[0, 1, 0, 2]).unwrap();
        let mut out = [0u8; MAX_ENCODED];
        let mut bytes = std::vec![0u8, 0];
        let n = encode(&f, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let n = encode_at(77, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let n = encode(&f, &mut out);
        let mut damaged = out[..n].to_vec();
        damaged[2] ^= 0x01;
        bytes.extend_from_slice(&damaged);
        bytes.extend_from_slice(&std::vec![0x55u8; 400]);
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&out[..n]);
        let mut d = Decoder::new();
        let want: std::vec::Vec<_> = bytes.iter().filter_map(|&b| d.push_item(b)).collect();
        assert_eq!(want.len(), 5, "{want:?}");
        // Cut anywhere into two runs, and with a frame left unfinished.
        for cut in 0..=bytes.len() {
            let mut d = Decoder::new();
            let mut got: std::vec::Vec<_> = d.items(&bytes[..cut]).collect();
            got.extend(d.items(&bytes[cut..]));
            assert_eq!(got, want, "cut at {cut}");
        }
        let mut d = Decoder::new();
        assert_eq!(d.items(&bytes[..bytes.len() - 1]).count(), 4);
        assert_eq!(
            d.items(&[0]).collect::<std::vec::Vec<_>>(),
            [Ok(Item::Frame(f))]
        );
    }

    #[test]
    fn clock_records_of_timed_clients_round_trip() {
        let mut bytes = std::vec::Vec::new();
        let mut out = [0u8; MAX_ENCODED];
        let n = encode_until(7_000, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let n = encode_idle(7_000, NEVER, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let n = encode_at(9, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let n = encode_tx_free(3, &mut out);
        bytes.extend_from_slice(&out[..n]);
        let mut d = Decoder::new();
        let items: std::vec::Vec<_> = bytes.iter().filter_map(|&b| d.push_item(b)).collect();
        assert_eq!(
            items,
            [
                Ok(Item::Until(7_000)),
                Ok(Item::Idle {
                    at: 7_000,
                    wake: NEVER
                }),
                Ok(Item::At(9)),
                Ok(Item::TxFree(3)),
            ]
        );
        // Where only frames may come (a node), they are refused.
        let mut d = Decoder::new();
        let n = encode_until(1, &mut out);
        let frames: std::vec::Vec<_> = out[..n].iter().filter_map(|&b| d.push(b)).collect();
        assert_eq!(frames, [Err(LinkError::BadControl)]);
        // A record with a stray second number, or too many places.
        for (cmd, a, b) in [(CMD_UNTIL, 1, 2), (CMD_TX_FREE, u64::MAX, 0)] {
            let n = encode_pair(cmd, a, b, &mut out);
            let mut d = Decoder::new();
            let items: std::vec::Vec<_> = out[..n].iter().filter_map(|&b| d.push_item(b)).collect();
            assert_eq!(items, [Err(LinkError::BadControl)]);
        }
    }

    #[test]
    fn rejects_invalid_header_with_valid_crc() {
        // Hand-build a raw frame with an unknown flag and a correct CRC.
        let mut raw = std::vec![0x80u8, 1, 0, 0, 0, 0];
        let crc = crc::crc32(&raw);
        raw.extend(crc.to_le_bytes());
        let mut body = [0u8; MAX_BODY];
        let n = cobs_encode(&raw, &mut body);
        let mut bytes = body[..n].to_vec();
        bytes.push(0);
        assert_eq!(decode_all(&bytes), [Err(LinkError::BadFrame)]);
    }

    #[test]
    fn filter_records_round_trip_and_are_refused_where_frames_belong() {
        use crate::filter::FilterEntry;
        let entries = [
            FilterEntry {
                id: 0x10 << 16,
                mask: 0x1FFE_0000,
                extended: true,
            },
            FilterEntry {
                id: 0x123,
                mask: 0x7FF,
                extended: false,
            },
        ];
        for f in [
            AcceptanceFilter::new(&entries).unwrap(),
            AcceptanceFilter::accept_all(),
        ] {
            let mut out = [0u8; MAX_ENCODED];
            let n = encode_filter(&f, &mut out);
            let mut d = Decoder::new();
            let items: Vec<_> = out[..n].iter().filter_map(|&b| d.push_item(b)).collect();
            assert_eq!(items, [Ok(Item::SetFilter(f))]);
            let mut d = Decoder::new();
            let frames: Vec<_> = out[..n].iter().filter_map(|&b| d.push(b)).collect();
            assert_eq!(frames, [Err(LinkError::BadControl)]);
        }
        // A record whose length disagrees with its count.
        let mut raw = [0u8; MAX_RAW];
        raw[..4].copy_from_slice(&[CONTROL_MARK, CMD_SET_FILTER, 2, 0]);
        let mut out = [0u8; MAX_ENCODED];
        let n = seal(&mut raw, 4, &mut out);
        let mut d = Decoder::new();
        let items: Vec<_> = out[..n].iter().filter_map(|&b| d.push_item(b)).collect();
        assert_eq!(items, [Err(LinkError::BadControl)]);
    }

    #[test]
    fn a_delimiter_first_keeps_a_boots_filter_from_the_record_a_reset_cut_short() {
        // What a node's link carries across a reset: the last boot's frame
        // cut short, then the new boot's filter.
        let f = Frame::fd_extended(7, &[1, 2, 3, 4]).unwrap();
        let cut = &encoded(&f)[..5];
        let mut filter = [0u8; MAX_ENCODED];
        let n = encode_filter(&AcceptanceFilter::accept_all(), &mut filter);
        let items = |bytes: &[u8]| -> std::vec::Vec<_> {
            let mut d = Decoder::new();
            bytes.iter().filter_map(|&b| d.push_item(b)).collect()
        };
        let glued = [cut, &filter[..n]].concat();
        assert!(
            items(&glued).iter().all(|r| r.is_err()),
            "without the delimiter the filter is lost"
        );
        // `BusPort::open` sends a delimiter before anything else.
        let with = [cut, &[0], &filter[..n]].concat();
        let out = items(&with);
        assert!(out[0].is_err());
        assert_eq!(
            out[1..],
            [Ok(Item::SetFilter(AcceptanceFilter::accept_all()))]
        );
        // On an idle link the extra delimiter yields nothing.
        assert_eq!(items(&[&[0], &filter[..n]].concat()).len(), 1);
    }

    /// How a link frame decoded before COBS was undone on the fly: the
    /// encoded body kept whole, then decoded in place at the delimiter.
    fn reference(body: &[u8]) -> Option<Result<Item, LinkError>> {
        if body.len() > MAX_BODY {
            return Some(Err(LinkError::Oversize));
        }
        if body.is_empty() {
            return None;
        }
        let mut buf = body.to_vec();
        let (mut read, mut write) = (0, 0);
        while read < buf.len() {
            let code = buf[read] as usize;
            if code == 0 || read + code > buf.len() {
                return Some(Err(LinkError::BadCobs));
            }
            read += 1;
            for _ in 1..code {
                buf[write] = buf[read];
                write += 1;
                read += 1;
            }
            if code != 0xFF && read < buf.len() {
                buf[write] = 0;
                write += 1;
            }
        }
        // The CRC as it was checked then: over the payload, against the
        // word stored after it.
        let raw = &buf[..write];
        let whole = if raw.len() < 7 {
            Err(LinkError::Truncated)
        } else if crc::crc32(&raw[..write - 4]) != le32(&raw[write - 4..]) {
            Err(LinkError::BadCrc)
        } else {
            Ok(&raw[..write - 4])
        };
        Some(whole.and_then(|payload| {
            if payload[0] == CONTROL_MARK {
                return decode_record(payload);
            }
            let mut frame = Frame::EMPTY;
            frame_into(payload, &mut frame).map(|()| Item::Frame(frame))
        }))
    }

    #[test]
    fn cobs_undone_on_the_fly_matches_undoing_it_at_the_end() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ok = 0;
        for case in 0..20_000 {
            let mut body: Vec<u8> = if case % 2 == 0 {
                // A real frame, maybe damaged, cut or lengthened.
                let data: Vec<u8> = (0..next() % 65)
                    .map(|_| if next() % 3 == 0 { 0 } else { next() as u8 })
                    .collect();
                let f = Frame::new(next() as u32 & 0x7FF, 0x02, &data[..])
                    .unwrap_or(Frame::new(1, 0, &[]).unwrap());
                let mut e = encoded(&f);
                e.pop();
                match next() % 4 {
                    0 => {
                        let at = (next() % e.len() as u64) as usize;
                        e[at] = next() as u8;
                    }
                    1 => e.truncate((next() % e.len() as u64) as usize),
                    2 => e.extend((0..next() % 300).map(|_| next() as u8)),
                    _ => {}
                }
                e
            } else {
                (0..next() % 300)
                    .map(|_| {
                        let v = next();
                        // Small codes now and then, so that blocks end early.
                        if v % 4 == 0 {
                            (v >> 8) as u8 % 8
                        } else {
                            (v >> 8) as u8
                        }
                    })
                    .collect()
            };
            body.retain(|&b| b != 0);
            let want = reference(&body);
            ok += usize::from(matches!(want, Some(Ok(_))));
            let mut d = Decoder::new();
            for &b in &body {
                assert_eq!(d.push_item(b), None);
            }
            assert_eq!(d.push_item(0), want, "body {body:?}");
            // Frames only, the body and its delimiter in one slice.
            // A time record is taken in and yields nothing.
            let want = match want {
                Some(Ok(Item::At(_))) => None,
                w => w.map(|r| match r? {
                    Item::Frame(f) => Ok(f),
                    _ => Err(LinkError::BadControl),
                }),
            };
            let idle = body.is_empty();
            body.push(0);
            let end = body.len();
            // Bytes of a next frame after the delimiter, so that it falls
            // anywhere within a word the decoder reads four bytes at a time
            // (a delimiter on an idle line ends nothing: no bytes follow).
            if !idle {
                body.extend((0..next() % 4).map(|_| next() as u8 | 1));
            }
            let (n, got) = d.push_slice(&body);
            assert_eq!((n, got.map(|r| r.copied())), (end, want));
        }
        assert!(ok > 2_000, "only {ok} good frames among the cases");
    }

    #[test]
    fn pseudo_random_garbage_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut d = Decoder::new();
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Bias towards zeros so that many short frames are tried.
            let b = if x & 0x7 == 0 { 0 } else { (x >> 8) as u8 };
            let _ = d.push_item(b);
        }
    }
}
