//! Property tests for the wire: the link codec and the message decoder take
//! any input without panicking, what they accept encodes back to the same
//! thing, and the link's CRC catches every single-byte change.
//!
//! The cases come from a small seeded generator (these tests predate
//! proptest in `proto`; the message layouts' own properties are in
//! `msg_props.rs`): each property runs a few thousand cases and a failure
//! names the case's seed, which replays it
//! (`CASE_SEED=0x… cargo test -p proto --test props`).

use proto::filter::{AcceptanceFilter, FilterEntry, MAX_ENTRIES};
use proto::frame::{FD_LENGTHS, FLAG_BRS, FLAG_EXTENDED, FLAG_FD, MAX_EXTENDED_ID};
use proto::link::{self, Decoder, Item, LinkError, MAX_ENCODED};
use proto::msg::{self, Kind, Message};
use proto::{Frame, MsgError};

/// xorshift64*: small, seeded, good enough to spread cases.
struct Gen(u64);

impl Gen {
    fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn u32(&mut self) -> u32 {
        (self.u64() >> 32) as u32
    }
    fn u16(&mut self) -> u16 {
        (self.u64() >> 48) as u16
    }
    fn u8(&mut self) -> u8 {
        (self.u64() >> 56) as u8
    }
    /// In `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.u64() % n as u64) as usize
    }
    fn bool(&mut self) -> bool {
        self.u64() & 1 == 1
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u8())
    }
    /// Random bytes, zeros (link delimiters) more often than chance.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n)
            .map(|_| if self.below(8) == 0 { 0 } else { self.u8() })
            .collect()
    }
}

/// Runs `cases` cases of a property, each from its own seed; a failing case
/// is reported with the seed that replays it.
fn check(name: &str, cases: u64, mut property: impl FnMut(&mut Gen)) {
    let base = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let only = std::env::var("CASE_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
    for i in 0..cases {
        let seed = only.unwrap_or((base ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        let mut g = Gen(seed);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(&mut g)));
        if let Err(e) = r {
            eprintln!("{name}: case {i} failed; replay with CASE_SEED={seed:#x}");
            std::panic::resume_unwind(e);
        }
        if only.is_some() {
            break;
        }
    }
}

fn any_frame(g: &mut Gen) -> Frame {
    loop {
        let flags = g.pick(&[
            0,
            FLAG_EXTENDED,
            FLAG_FD,
            FLAG_FD | FLAG_BRS,
            FLAG_EXTENDED | FLAG_FD,
            FLAG_EXTENDED | FLAG_FD | FLAG_BRS,
        ]);
        let id = if flags & FLAG_EXTENDED != 0 {
            g.u32() & MAX_EXTENDED_ID
        } else {
            g.u32() & 0x7FF
        };
        let max = if flags & FLAG_FD != 0 { 64 } else { 8 };
        let data: Vec<u8> = (0..g.below(max + 1)).map(|_| g.u8()).collect();
        if let Ok(f) = Frame::new(id, flags, &data) {
            return f;
        }
    }
}

fn any_filter(g: &mut Gen) -> AcceptanceFilter {
    let n = g.below(MAX_ENTRIES + 1);
    let entries: Vec<FilterEntry> = (0..n)
        .map(|_| {
            let extended = g.bool();
            let bits = if extended { MAX_EXTENDED_ID } else { 0x7FF };
            FilterEntry {
                id: g.u32() & bits,
                mask: g.u32() & bits,
                extended,
            }
        })
        .collect();
    AcceptanceFilter::new(&entries).expect("at most MAX_ENTRIES")
}

/// Every item a stream of bytes decodes to.
fn decode_all(bytes: &[u8]) -> Vec<Result<Item, LinkError>> {
    let mut d = Decoder::new();
    bytes.iter().filter_map(|&b| d.push_item(b)).collect()
}

fn encoded(item: &Item) -> Vec<u8> {
    let mut out = [0u8; MAX_ENCODED];
    let n = match item {
        Item::Frame(f) => link::encode(f, &mut out),
        Item::SetFilter(f) => link::encode_filter(f, &mut out),
        Item::At(t) => link::encode_at(*t, &mut out),
        Item::Until(t) => link::encode_until(*t, &mut out),
        Item::Idle { at, wake } => link::encode_idle(*at, *wake, &mut out),
        Item::TxFree(n) => link::encode_tx_free(*n, &mut out),
    };
    out[..n].to_vec()
}

fn any_item(g: &mut Gen) -> Item {
    if g.below(4) == 0 {
        Item::SetFilter(any_filter(g))
    } else if g.below(4) == 0 {
        match g.below(4) {
            0 => Item::At(g.u64()),
            1 => Item::Until(g.u64()),
            2 => Item::Idle {
                at: g.u64(),
                wake: g.u64(),
            },
            _ => Item::TxFree(g.u64() as u32),
        }
    } else {
        Item::Frame(any_frame(g))
    }
}

#[test]
fn items_round_trip_through_the_link() {
    check("items_round_trip_through_the_link", 4000, |g| {
        let item = any_item(g);
        let bytes = encoded(&item);
        assert_eq!(bytes.last(), Some(&0), "ends with the delimiter");
        assert!(!bytes[..bytes.len() - 1].contains(&0), "no zero inside");
        assert_eq!(decode_all(&bytes), vec![Ok(item)]);
    });
}

#[test]
fn the_link_decoder_takes_any_bytes_and_resynchronises_at_the_next_delimiter() {
    check("link_garbage", 3000, |g| {
        let garbage = g.bytes(300);
        let item = any_item(g);
        // Garbage, a delimiter, then a good item: whatever the garbage did,
        // the good item comes out intact and last.
        let mut stream = garbage.clone();
        stream.push(0);
        stream.extend(encoded(&item));
        let out = decode_all(&stream);
        assert_eq!(out.last(), Some(&Ok(item)), "garbage {garbage:?}");
        // Frames too long for the decoder's buffer are refused, not kept.
        let mut d = Decoder::new();
        for _ in 0..link::MAX_BODY + 1 + g.below(64) {
            assert_eq!(d.push_item(0x55), None);
        }
        assert_eq!(d.push_item(0), Some(Err(LinkError::Oversize)));
    });
}

#[test]
fn every_single_byte_change_on_the_link_is_caught() {
    check("link_single_byte_change", 3000, |g| {
        let item = any_item(g);
        let good = encoded(&item);
        let mut bad = good.clone();
        let at = g.below(good.len() - 1);
        let new = loop {
            let b = g.u8();
            if b != good[at] {
                break b;
            }
        };
        bad[at] = new;
        // A changed byte may also split the frame (a new zero) or hide its
        // end: nothing it turns into may decode.
        bad.push(0);
        let accepted: Vec<_> = decode_all(&bad).into_iter().filter(|r| r.is_ok()).collect();
        assert!(
            accepted.is_empty(),
            "byte {at} {:#04x}→{new:#04x} of {good:?} gave {accepted:?}",
            good[at]
        );
    });
}

/// A stream of good items, garbage, damaged items, idle delimiters and
/// overlong runs, in random order.
fn mixed_stream(g: &mut Gen) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..g.below(12) {
        match g.below(6) {
            0 | 1 => s.extend(encoded(&any_item(g))),
            2 => s.extend(g.bytes(200)),
            3 => {
                let mut bad = encoded(&any_item(g));
                let at = g.below(bad.len());
                bad[at] = g.u8();
                s.extend(bad);
            }
            4 => s.extend(std::iter::repeat_n(0, g.below(3) + 1)),
            _ => s.extend(std::iter::repeat_n(g.u8() | 1, link::MAX_BODY + g.below(3))),
        }
    }
    s
}

/// Feeds `stream` to `d` in pieces of random length, taking every result of
/// each piece with `push_slice_item`; checks what it says it consumed.
fn decode_in_pieces(g: &mut Gen, d: &mut Decoder, stream: &[u8]) -> Vec<Result<Item, LinkError>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let mut piece = &rest[..1 + g.below(rest.len().min(2 * MAX_ENCODED))];
        rest = &rest[piece.len()..];
        // Now and then a single byte the old way, on the same decoder.
        if g.below(8) == 0 {
            out.extend(d.push_item(piece[0]));
            piece = &piece[1..];
        }
        while !piece.is_empty() {
            let (n, r) = d.push_slice_item(piece);
            assert!(n <= piece.len());
            match r {
                Some(r) => {
                    assert_eq!(piece[n - 1], 0, "a result ends at a delimiter");
                    out.push(r);
                }
                None => assert_eq!(n, piece.len(), "no result: everything taken"),
            }
            piece = &piece[n..];
        }
    }
    out
}

#[test]
fn the_bulk_link_decoder_agrees_with_the_bytewise_one() {
    check("link_bulk_equals_bytewise", 3000, |g| {
        let stream = mixed_stream(g);
        let expected = decode_all(&stream);
        let mut d = Decoder::new();
        assert_eq!(
            decode_in_pieces(g, &mut d, &stream),
            expected,
            "stream {stream:?}"
        );
        // The decoders are left in the same state: a good item after the
        // stream (no delimiter first) gives the same result on both.
        let tail = encoded(&any_item(g));
        let mut bytewise = Decoder::new();
        let mut joined = stream.clone();
        joined.extend(&tail);
        let want: Vec<_> = joined
            .iter()
            .filter_map(|&b| bytewise.push_item(b))
            .skip(expected.len())
            .collect();
        assert_eq!(decode_in_pieces(g, &mut d, &tail), want);
        // The frames-only entry points agree too.
        let mut a = Decoder::new();
        let mut b = Decoder::new();
        let bytes: Vec<_> = stream.iter().filter_map(|&x| a.push(x)).collect();
        let mut bulk = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (n, r) = b.push_slice(rest);
            bulk.extend(r.map(|r| r.copied()));
            rest = &rest[n..];
        }
        assert_eq!(bulk, bytes);
    });
}

/// Payload lengths for which a `Data` frame needs no CAN FD padding.
fn data_payload_len(g: &mut Gen) -> usize {
    let lens: Vec<usize> = FD_LENGTHS
        .iter()
        .map(|&l| l as usize)
        .filter(|&l| l >= msg::DATA_HEADER)
        .map(|l| l - msg::DATA_HEADER)
        .collect();
    g.pick(&lens)
}

fn any_message<'a>(g: &mut Gen, payload: &'a [u8]) -> Message<'a> {
    use proto::msg::*;
    match g.below(13) {
        0 => Message::Reboot(Reboot {
            target: g.u16(),
            target_type: g.u8(),
            reason: g.u8(),
        }),
        1 => Message::Check(Check {
            target: g.u16(),
            nonce: g.u32(),
        }),
        2 => Message::MasterBeacon(MasterBeacon {
            role: g.u8(),
            state: g.u8(),
            next_session: g.u32(),
            uptime_ms: g.u32(),
        }),
        3 => {
            let chunk_size = g.u8().max(1);
            let total_chunks = g.u32() % (MAX_CHUNK_INDEX + 2);
            // Any length that needs exactly total_chunks chunks.
            let max = (total_chunks as u64 * chunk_size as u64).min(u32::MAX as u64);
            let min = (total_chunks as u64).saturating_sub(1) * chunk_size as u64
                + (total_chunks > 0) as u64;
            let object_len = (min + g.u64() % (max - min + 1)) as u32;
            Message::SessionAnnounce(SessionAnnounce {
                session: g.u32(),
                window: g.u32(),
                mode: g.pick(&[MODE_SELECTED, MODE_COMBINED, MODE_UNICAST]),
                parts: g.u8().max(1),
                chunk_size,
                object_len,
                total_chunks: object_len.div_ceil(chunk_size as u32),
                target: g.u16(),
            })
        }
        4 => Message::SessionPart(SessionPart {
            session: g.u32(),
            index: g.u8(),
            node_type: g.u8(),
            manifest_len: g.u16(),
            offset: g.u32(),
            len: g.u32(),
            load_addr: g.u64(),
            version: g.u32(),
        }),
        5 => Message::SessionEnd(SessionEnd {
            session: g.u32(),
            total_chunks: g.u32(),
            round: g.u8(),
            last: g.u8(),
        }),
        6 => Message::Request(Request {
            node_type: g.u8(),
            flags: g.u8(),
            boot_rom_version: g.u16(),
            attempt: g.u16(),
            min_version: g.u32(),
        }),
        7 => {
            let count = g.below(NACK_RANGES + 1) as u8;
            let mut ranges = [(0u32, 0u16); NACK_RANGES];
            for r in ranges.iter_mut().take(count as usize) {
                *r = (g.u32() & MAX_CHUNK_INDEX, g.u16());
            }
            Message::Nack(Nack {
                session: g.u32(),
                count,
                ranges,
            })
        }
        8 => Message::Reject(Reject {
            node_type: g.u8(),
            reason: g.u8(),
            session: g.u32(),
            version: g.u32(),
            measured: g.array(),
            expected: g.array(),
        }),
        9 => Message::Status(Status {
            node_type: g.u8(),
            state: g.u8(),
            selftest: g.u8(),
            reset_cause: g.u8(),
            session: g.u32(),
            received: g.u32(),
            total: g.u32(),
        }),
        10 => Message::CheckReply(CheckReply {
            nonce: g.u32(),
            digest: g.array(),
        }),
        11 => Message::Heartbeat(Heartbeat {
            node_type: g.u8(),
            state: g.u8(),
            reset_cause: g.u8(),
            flags: g.u8(),
            generation: g.u32(),
            uptime_ms: g.u32(),
            boot_count: g.u16(),
            version: g.u32(),
            name: g.array(),
            digest: g.array(),
            ignored: g.u32(),
        }),
        _ => Message::Data(Data {
            session: g.u8(),
            chunk: g.u32() & MAX_CHUNK_INDEX,
            payload: &payload[..data_payload_len(g)],
        }),
    }
}

#[test]
fn messages_round_trip() {
    check("messages_round_trip", 5000, |g| {
        let payload: [u8; msg::FD_CHUNK] = g.array();
        let m = any_message(g, &payload);
        let src = g.u16();
        let f = m.to_frame(src).expect("a valid message encodes");
        assert_eq!(Message::decode(&f), Ok((src, m)));
        // And across the link.
        assert_eq!(
            decode_all(&encoded(&Item::Frame(f))),
            vec![Ok(Item::Frame(f))]
        );
    });
}

#[test]
fn any_frame_decodes_to_an_error_or_a_message_that_encodes_back() {
    let kinds: Vec<u32> = (0..=0xFF)
        .filter(|&k| Kind::from_code(k).is_some())
        .collect();
    check("message_decoder_any_frame", 20000, |g| {
        // Mostly frames that look like messages, so decoding gets deep.
        let f = if g.below(4) == 0 {
            any_frame(g)
        } else {
            let id = g.pick(&kinds) << 16 | g.u16() as u32;
            let data: Vec<u8> = (0..g.below(65)).map(|_| g.u8()).collect();
            Frame::fd_extended(id, &data).unwrap()
        };
        match Message::decode(&f) {
            Ok((src, m)) => {
                let again = m.to_frame(src).expect("a decoded message encodes");
                assert_eq!(Message::decode(&again), Ok((src, m)));
            }
            Err(e) => assert!(matches!(
                e,
                MsgError::NotBootcast
                    | MsgError::UnknownKind
                    | MsgError::Truncated
                    | MsgError::BadField
            )),
        }
    });
}
