//! Property tests of the message layouts, with proptest: a message with any
//! field values either encodes and decodes back to itself, or is refused by
//! `to_frame` for exactly the reasons an independent statement of the rules
//! (`allowed`, below) gives; and decoding takes any frame without panicking.

use proptest::prelude::*;
use proto::frame::{FLAG_BRS, FLAG_EXTENDED, FLAG_FD, MAX_EXTENDED_ID, fd_padded_len};
use proto::msg::*;
use proto::{Frame, MsgError};

/// A message with any field values, valid or not. `Data` owns its payload
/// here so that proptest can hold it.
#[derive(Clone, Debug)]
enum Any {
    Fixed(Message<'static>),
    Data {
        session: u8,
        chunk: u32,
        payload: Vec<u8>,
    },
}

impl Any {
    fn message(&self) -> Message<'_> {
        match self {
            Any::Fixed(m) => *m,
            Any::Data {
                session,
                chunk,
                payload,
            } => Message::Data(Data {
                session: *session,
                chunk: *chunk,
                payload,
            }),
        }
    }
}

/// The rules, stated again from the protocol's description rather than
/// taken from the codec: what `to_frame` must refuse, and why.
fn allowed(m: &Message) -> Result<(), MsgError> {
    let bad = Err(MsgError::BadField);
    match m {
        Message::SessionAnnounce(a) => {
            let chunk = a.chunk_size as u64;
            let chunks_needed = (a.object_len as u64).div_ceil(chunk.max(1));
            if chunk == 0
                || !(1..=3).contains(&a.mode)
                || a.parts == 0
                || chunks_needed != a.total_chunks as u64
                || a.total_chunks > 1 << 24
            {
                return bad;
            }
        }
        Message::Nack(n) => {
            let used = n.count as usize;
            if used > NACK_RANGES
                || n.ranges[used..].iter().any(|&r| r != (0, 0))
                || n.ranges[..used].iter().any(|&(start, _)| start >= 1 << 24)
            {
                return bad;
            }
        }
        Message::Data(d) => {
            if d.chunk >= 1 << 24 {
                return bad;
            }
            if d.payload.len() > 60 {
                return Err(MsgError::TooLong);
            }
        }
        _ => {}
    }
    Ok(())
}

/// What `decode` gives back for `m`: the same, but a `Data` payload padded
/// with zeros to the next CAN FD length.
fn as_received<'a>(m: Message<'a>, padded: &'a mut Vec<u8>) -> Message<'a> {
    let Message::Data(d) = m else {
        return m;
    };
    let len = fd_padded_len(DATA_HEADER + d.payload.len()).expect("fits") - DATA_HEADER;
    padded.clear();
    padded.extend_from_slice(d.payload);
    padded.resize(len, 0);
    Message::Data(Data {
        payload: padded,
        ..d
    })
}

/// Chunk indices: mostly ones the wire carries, sometimes any.
fn chunk() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0..=MAX_CHUNK_INDEX, 1 => any::<u32>()]
}

fn announce() -> impl Strategy<Value = SessionAnnounce> {
    let any_fields = (any::<(u32, u32, u8, u8, u8)>(), any::<(u32, u32, u16)>()).prop_map(
        |((session, window, mode, parts, chunk_size), (object_len, total_chunks, target))| {
            SessionAnnounce {
                session,
                window,
                mode,
                parts,
                chunk_size,
                object_len,
                total_chunks,
                target,
            }
        },
    );
    // Consistent ones, each then maybe broken in one field, or hardly any
    // case would be valid and hardly any invalid one near the line.
    let near = (
        any::<(u32, u32, u16)>(),
        1..=3u8,
        1..=255u8,
        1..=255u8,
        0..=(1u32 << 24) * 60,
        0..8u8,
    )
        .prop_map(
            |((session, window, target), mode, parts, chunk_size, len, flaw)| {
                let object_len = len.min((1 << 24) * chunk_size as u32);
                let mut a = SessionAnnounce {
                    session,
                    window,
                    mode,
                    parts,
                    chunk_size,
                    object_len,
                    total_chunks: object_len.div_ceil(chunk_size as u32),
                    target,
                };
                match flaw {
                    0 => a.chunk_size = 0,
                    1 => a.mode = [0, 4, 255][session as usize % 3],
                    2 => a.parts = 0,
                    3 => a.total_chunks = a.total_chunks.wrapping_add(1),
                    4 => a.total_chunks = a.total_chunks.wrapping_sub(1),
                    5 => {
                        a.chunk_size = 1;
                        a.object_len = (1 << 24) + 1 + window % 1000;
                        a.total_chunks = a.object_len;
                    }
                    _ => {}
                }
                a
            },
        );
    prop_oneof![any_fields, near]
}

fn nack() -> impl Strategy<Value = Nack> {
    (
        any::<u32>(),
        0..=NACK_RANGES as u8 + 2,
        prop::array::uniform8((chunk(), any::<u16>())),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(session, count, mut ranges, canonical)| {
            if canonical {
                ranges
                    .iter_mut()
                    .skip(count as usize)
                    .for_each(|r| *r = (0, 0));
            }
            Nack {
                session,
                count,
                ranges,
            }
        })
}

fn control() -> impl Strategy<Value = Message<'static>> {
    prop_oneof![
        any::<(u16, u8, u8)>().prop_map(|(target, target_type, reason)| Message::Reboot(Reboot {
            target,
            target_type,
            reason
        })),
        any::<(u16, u32)>().prop_map(|(target, nonce)| Message::Check(Check { target, nonce })),
        any::<(u8, u8, u32, u32)>().prop_map(|(role, state, next_session, uptime_ms)| {
            Message::MasterBeacon(MasterBeacon {
                role,
                state,
                next_session,
                uptime_ms,
            })
        }),
        announce().prop_map(Message::SessionAnnounce),
        (any::<(u32, u8, u8, u16)>(), any::<(u32, u32, u64, u32)>()).prop_map(
            |((session, index, node_type, manifest_len), (offset, len, load_addr, version))| {
                Message::SessionPart(SessionPart {
                    session,
                    index,
                    node_type,
                    manifest_len,
                    offset,
                    len,
                    load_addr,
                    version,
                })
            }
        ),
        any::<(u32, u32, u8, u8)>().prop_map(|(session, total_chunks, round, last)| {
            Message::SessionEnd(SessionEnd {
                session,
                total_chunks,
                round,
                last,
            })
        }),
    ]
}

fn node_messages() -> impl Strategy<Value = Message<'static>> {
    prop_oneof![
        any::<(u8, u8, u16, u16, u32)>().prop_map(
            |(node_type, flags, boot_rom_version, attempt, min_version)| {
                Message::Request(Request {
                    node_type,
                    flags,
                    boot_rom_version,
                    attempt,
                    min_version,
                })
            }
        ),
        nack().prop_map(Message::Nack),
        (any::<(u8, u8, u32, u32)>(), any::<([u8; 16], [u8; 16])>()).prop_map(
            |((node_type, reason, session, version), (measured, expected))| {
                Message::Reject(Reject {
                    node_type,
                    reason,
                    session,
                    version,
                    measured,
                    expected,
                })
            }
        ),
        any::<(u8, u8, u8, u8, u32, u32, u32)>().prop_map(
            |(node_type, state, selftest, reset_cause, session, received, total)| {
                Message::Status(Status {
                    node_type,
                    state,
                    selftest,
                    reset_cause,
                    session,
                    received,
                    total,
                })
            }
        ),
        any::<(u32, [u8; 32])>()
            .prop_map(|(nonce, digest)| Message::CheckReply(CheckReply { nonce, digest })),
        (
            any::<(u8, u8, u8, u8, u32, u32, u16, u32)>(),
            any::<([u8; 8], [u8; 32], u32)>()
        )
            .prop_map(
                |(
                    (
                        node_type,
                        state,
                        reset_cause,
                        flags,
                        generation,
                        uptime_ms,
                        boot_count,
                        version,
                    ),
                    (name, digest, ignored),
                )| {
                    Message::Heartbeat(Heartbeat {
                        node_type,
                        state,
                        reset_cause,
                        flags,
                        generation,
                        uptime_ms,
                        boot_count,
                        version,
                        name,
                        digest,
                        ignored,
                    })
                }
            ),
    ]
}

fn any_message() -> impl Strategy<Value = Any> {
    let data = (
        any::<u8>(),
        chunk(),
        prop::collection::vec(any::<u8>(), 0..=64),
    )
        .prop_map(|(session, chunk, payload)| Any::Data {
            session,
            chunk,
            payload,
        });
    prop_oneof![
        6 => control().prop_map(Any::Fixed),
        6 => node_messages().prop_map(Any::Fixed),
        2 => data,
    ]
}

/// Frames of every format; mostly ones whose identifier names a message, so
/// that decoding gets past the kind.
fn any_frame() -> impl Strategy<Value = Frame> {
    let kinds: Vec<u32> = (0..=0xFF)
        .filter(|&k| Kind::from_code(k).is_some())
        .collect();
    let id = prop_oneof![
        3 => (prop::sample::select(kinds), any::<u16>()).prop_map(|(k, src)| k << 16 | src as u32),
        1 => 0..=MAX_EXTENDED_ID,
    ];
    let flags = prop::sample::select(vec![
        0,
        FLAG_EXTENDED,
        FLAG_FD,
        FLAG_FD | FLAG_BRS,
        FLAG_EXTENDED | FLAG_FD,
        FLAG_EXTENDED | FLAG_FD | FLAG_BRS,
    ]);
    (id, flags, prop::collection::vec(any::<u8>(), 0..=64)).prop_filter_map(
        "not a frame",
        |(id, flags, data)| {
            let id = if flags & FLAG_EXTENDED != 0 {
                id
            } else {
                id & 0x7FF
            };
            Frame::new(id, flags, &data).ok()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Every message `to_frame` accepts decodes to itself, from the same
    /// sender; and it refuses exactly what the rules forbid.
    #[test]
    fn every_encodable_message_decodes_to_itself(m in any_message(), src in any::<u16>()) {
        let m = m.message();
        let encoded = m.to_frame(src);
        prop_assert_eq!(encoded.map(|_| ()), allowed(&m), "{:?}", m);
        if let Ok(frame) = encoded {
            let mut padded = Vec::new();
            prop_assert_eq!(Message::decode(&frame), Ok((src, as_received(m, &mut padded))));
        }
    }

    /// Decoding takes any frame without panicking; what it accepts encodes
    /// again and decodes to the same message.
    #[test]
    fn decoding_never_panics_and_what_it_accepts_encodes(frame in any_frame()) {
        match Message::decode(&frame) {
            Ok((src, m)) => {
                let again = m.to_frame(src);
                prop_assert!(again.is_ok(), "{:?} does not encode: {:?}", m, again);
                let again = again.unwrap();
                prop_assert_eq!(Message::decode(&again), Ok((src, m)));
            }
            Err(e) => prop_assert!(matches!(
                e,
                MsgError::NotBootcast | MsgError::UnknownKind | MsgError::Truncated | MsgError::BadField
            )),
        }
    }
}
