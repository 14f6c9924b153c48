//! bootcast messages and how they map onto frames.
//!
//! Every bootcast frame is a CAN FD frame with an extended identifier and
//! bit-rate switch. The identifier is `kind << 16 | source`: the kind sets the
//! priority (lower wins arbitration) and the source is the sender's node id,
//! so two senders never use the same identifier. Multi-byte fields are
//! little-endian.
//!
//! Each body's byte layout is written once, in `body`, and both [`Message::decode`]
//! and [`Message::to_frame`] run it, so whatever `to_frame` builds, `decode`
//! takes back as it was sent (a `Data` payload only gains CAN FD padding).

mod body;
mod codes;
mod id;
mod wire;

pub use body::{
    Check, CheckReply, DATA_HEADER, Data, FD_CHUNK, HEARTBEAT_NAME, Heartbeat, MAX_CHUNK_INDEX,
    MODE_COMBINED, MODE_SELECTED, MODE_UNICAST, MasterBeacon, NACK_RANGES, Nack, Reboot, Reject,
    Request, SessionAnnounce, SessionEnd, SessionPart, Status,
};
pub use codes::{NodeState, NodeType, RebootReason, RejectReason, ResetCause};
pub use id::{
    APP_KINDS, BOOT_ROM_KINDS, BROADCAST, BUSY_KINDS, EXTERNAL_TOOL, Kind, MASTER_BACKUP,
    MASTER_PRIMARY, MAX_NODE_ID, SUPERVISOR, TOOL, kinds_entry, split_id,
};
pub use wire::MsgError;

use crate::frame::{Frame, MAX_DATA};
use wire::{read, write};

/// A decoded bootcast message. `Data` borrows from its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Message<'a> {
    Reboot(Reboot),
    Check(Check),
    MasterBeacon(MasterBeacon),
    SessionAnnounce(SessionAnnounce),
    SessionPart(SessionPart),
    SessionEnd(SessionEnd),
    Request(Request),
    Nack(Nack),
    Reject(Reject),
    Status(Status),
    CheckReply(CheckReply),
    Heartbeat(Heartbeat),
    Data(Data<'a>),
}

impl<'a> Message<'a> {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Reboot(_) => Kind::Reboot,
            Message::Check(_) => Kind::Check,
            Message::MasterBeacon(_) => Kind::MasterBeacon,
            Message::SessionAnnounce(_) => Kind::SessionAnnounce,
            Message::SessionPart(_) => Kind::SessionPart,
            Message::SessionEnd(_) => Kind::SessionEnd,
            Message::Request(_) => Kind::Request,
            Message::Nack(_) => Kind::Nack,
            Message::Reject(_) => Kind::Reject,
            Message::Status(_) => Kind::Status,
            Message::CheckReply(_) => Kind::CheckReply,
            Message::Heartbeat(_) => Kind::Heartbeat,
            Message::Data(_) => Kind::Data,
        }
    }

    /// Decodes a frame into its sender id and message. Trailing bytes (CAN
    /// FD padding) are ignored. Any extended-identifier frame may carry a
    /// message: the short ones (`Reboot`, `Check`) fit a classic CAN frame,
    /// so a classic-CAN tool can send them. Never panics.
    pub fn decode(frame: &'a Frame) -> Result<(u16, Message<'a>), MsgError> {
        if !frame.is_extended() {
            return Err(MsgError::NotBootcast);
        }
        let (code, src) = split_id(frame.id());
        let kind = Kind::from_code(code).ok_or(MsgError::UnknownKind)?;
        let b = frame.data();
        let msg = match kind {
            Kind::Reboot => Message::Reboot(read(b)?),
            Kind::Check => Message::Check(read(b)?),
            Kind::MasterBeacon => Message::MasterBeacon(read(b)?),
            Kind::SessionAnnounce => Message::SessionAnnounce(read(b)?),
            Kind::SessionPart => Message::SessionPart(read(b)?),
            Kind::SessionEnd => Message::SessionEnd(read(b)?),
            Kind::Request => Message::Request(read(b)?),
            Kind::Nack => Message::Nack(read(b)?),
            Kind::Reject => Message::Reject(read(b)?),
            Kind::Status => Message::Status(read(b)?),
            Kind::CheckReply => Message::CheckReply(read(b)?),
            Kind::Heartbeat => Message::Heartbeat(read(b)?),
            Kind::Data => Message::Data(read(b)?),
        };
        Ok((src, msg))
    }

    /// Encodes the message as a frame sent by `src`. Refuses (`BadField`)
    /// exactly the field values [`decode`](Self::decode) refuses, and values
    /// the wire cannot carry: a chunk index above 24 bits, more than
    /// [`NACK_RANGES`] ranges, a nonzero unused range; `TooLong` when it
    /// does not fit one frame.
    pub fn to_frame(&self, src: u16) -> Result<Frame, MsgError> {
        let mut buf = [0u8; MAX_DATA];
        let b = &mut buf;
        let len = match *self {
            Message::Reboot(m) => write(m, b),
            Message::Check(m) => write(m, b),
            Message::MasterBeacon(m) => write(m, b),
            Message::SessionAnnounce(m) => write(m, b),
            Message::SessionPart(m) => write(m, b),
            Message::SessionEnd(m) => write(m, b),
            Message::Request(m) => write(m, b),
            Message::Nack(m) => write(m, b),
            Message::Reject(m) => write(m, b),
            Message::Status(m) => write(m, b),
            Message::CheckReply(m) => write(m, b),
            Message::Heartbeat(m) => write(m, b),
            Message::Data(m) => write(m, b),
        }?;
        Frame::fd_extended(self.kind().id(src), &buf[..len]).map_err(|_| MsgError::TooLong)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn samples() -> Vec<Message<'static>> {
        static CHUNK: [u8; FD_CHUNK] = [0xA5; FD_CHUNK];
        let mut ranges = [(0, 0); NACK_RANGES];
        ranges[0] = (5, 3);
        ranges[1] = (MAX_CHUNK_INDEX, 1);
        std::vec![
            Message::Reboot(Reboot {
                target: 7,
                target_type: 0,
                reason: RebootReason::Requested as u8
            }),
            Message::Check(Check {
                target: 3,
                nonce: 0xDEAD_BEEF
            }),
            Message::MasterBeacon(MasterBeacon {
                role: 1,
                state: 2,
                next_session: 9,
                uptime_ms: 77
            }),
            Message::SessionAnnounce(SessionAnnounce {
                session: 0x0102_0304,
                window: 3,
                mode: MODE_SELECTED,
                parts: 1,
                chunk_size: FD_CHUNK as u8,
                object_len: 1000,
                total_chunks: 17,
                target: BROADCAST,
            }),
            Message::SessionPart(SessionPart {
                session: 1,
                index: 0,
                node_type: NodeType::Drive as u8,
                manifest_len: 160,
                offset: 0,
                len: 1000,
                load_addr: 0x8010_0000,
                version: 0x0001_0203,
            }),
            Message::SessionEnd(SessionEnd {
                session: 1,
                total_chunks: 17,
                round: 0,
                last: 1
            }),
            Message::Request(Request {
                node_type: 3,
                flags: 0,
                boot_rom_version: 1,
                attempt: 4,
                min_version: 0x10000,
            }),
            Message::Nack(Nack {
                session: 1,
                count: 2,
                ranges
            }),
            Message::Reject(Reject {
                node_type: 2,
                reason: RejectReason::DigestMismatch as u8,
                session: 5,
                version: 1,
                measured: [1; 16],
                expected: [2; 16],
            }),
            Message::Status(Status {
                node_type: 1,
                state: NodeState::Receiving as u8,
                selftest: 0,
                reset_cause: 1,
                session: 2,
                received: 10,
                total: 20,
            }),
            Message::CheckReply(CheckReply {
                nonce: 1,
                digest: [9; 32]
            }),
            Message::Heartbeat(Heartbeat {
                node_type: 4,
                state: NodeState::Running as u8,
                reset_cause: 3,
                flags: 0,
                generation: 12,
                uptime_ms: 123_456,
                boot_count: 2,
                version: 0x0001_0000,
                name: *b"comm\0\0\0\0",
                digest: [0x5A; 32],
                ignored: 99,
            }),
            Message::Data(Data {
                session: 4,
                chunk: 0x00AB_CDEF,
                payload: &CHUNK
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in samples() {
            let frame = msg.to_frame(0x0102).unwrap();
            assert!(frame.data().len() <= MAX_DATA);
            let (src, back) = Message::decode(&frame).unwrap();
            assert_eq!(src, 0x0102);
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for msg in samples() {
            let frame = msg.to_frame(1).unwrap();
            let full = frame.data().len();
            let min = match msg {
                Message::Data(_) => DATA_HEADER,
                _ => full,
            };
            for cut in 0..min {
                // Cut to `cut` bytes; the frame layer pads to a DLC length,
                // so only lengths that stay short of the message matter.
                let short = Frame::fd_extended(frame.id(), &frame.data()[..cut]).unwrap();
                if short.data().len() >= min {
                    continue;
                }
                assert!(
                    Message::decode(&short).is_err(),
                    "{:?} decoded from {cut} bytes",
                    msg.kind()
                );
            }
        }
    }

    #[test]
    fn foreign_frames_are_not_messages() {
        let classic = Frame::new(0x123, 0, &[1, 2]).unwrap();
        assert_eq!(Message::decode(&classic), Err(MsgError::NotBootcast));
        // A classic extended frame can carry a short message.
        let check = Frame::new(
            Kind::Check.id(7),
            crate::frame::FLAG_EXTENDED,
            &[3, 0, 1, 0, 0, 0],
        )
        .unwrap();
        assert_eq!(
            Message::decode(&check),
            Ok((
                7,
                Message::Check(Check {
                    target: 3,
                    nonce: 1
                })
            ))
        );
        let unknown = Frame::fd_extended(0x77 << 16, &[0; 8]).unwrap();
        assert_eq!(Message::decode(&unknown), Err(MsgError::UnknownKind));
    }

    #[test]
    fn bad_fields_are_rejected() {
        let mut nack = [0u8; 8];
        nack[4] = NACK_RANGES as u8 + 1;
        let f = Frame::fd_extended(Kind::Nack.id(1), &nack).unwrap();
        assert_eq!(Message::decode(&f), Err(MsgError::BadField));
        // An announce with chunk size 0, written byte by byte: the encoder
        // refuses to build it.
        let mut announce = [0u8; 22];
        announce[0] = 1; // session
        announce[4] = 1; // window
        announce[8] = MODE_SELECTED;
        announce[9] = 1; // parts
        announce[12] = 10; // object length
        announce[16] = 1; // total chunks
        announce[20..].copy_from_slice(&BROADCAST.to_le_bytes());
        let f = Frame::fd_extended(Kind::SessionAnnounce.id(MASTER_PRIMARY), &announce).unwrap();
        assert_eq!(Message::decode(&f), Err(MsgError::BadField));
        announce[10] = 1; // chunk size 1: ten chunks, not one
        let f = Frame::fd_extended(Kind::SessionAnnounce.id(MASTER_PRIMARY), &announce).unwrap();
        assert_eq!(Message::decode(&f), Err(MsgError::BadField));
        announce[16] = 10;
        let f = Frame::fd_extended(Kind::SessionAnnounce.id(MASTER_PRIMARY), &announce).unwrap();
        assert!(Message::decode(&f).is_ok());
    }

    /// What `decode` would refuse, or what would not arrive as sent,
    /// `to_frame` refuses.
    #[test]
    fn the_encoder_refuses_what_the_decoder_would_not_give_back() {
        let good = SessionAnnounce {
            session: 1,
            window: 1,
            mode: MODE_SELECTED,
            parts: 1,
            chunk_size: 10,
            object_len: 95,
            total_chunks: 10,
            target: BROADCAST,
        };
        let mut ranges = [(0, 0); NACK_RANGES];
        ranges[0] = (1, 1);
        let nack = Nack {
            session: 1,
            count: 1,
            ranges,
        };
        let mut stray = nack;
        stray.ranges[1] = (9, 1);
        let big = [0u8; FD_CHUNK + 1];
        let data = |chunk, payload| {
            Message::Data(Data {
                session: 1,
                chunk,
                payload,
            })
        };
        let announce = |f: fn(&mut SessionAnnounce)| {
            let mut a = good;
            f(&mut a);
            Message::SessionAnnounce(a)
        };
        let cases: [(Message, Result<(), MsgError>); 12] = [
            (Message::SessionAnnounce(good), Ok(())),
            (announce(|a| a.chunk_size = 0), Err(MsgError::BadField)),
            (announce(|a| a.mode = 0), Err(MsgError::BadField)),
            (
                announce(|a| a.mode = MODE_UNICAST + 1),
                Err(MsgError::BadField),
            ),
            (announce(|a| a.parts = 0), Err(MsgError::BadField)),
            (announce(|a| a.total_chunks = 9), Err(MsgError::BadField)),
            (Message::Nack(nack), Ok(())),
            (
                Message::Nack(Nack {
                    count: NACK_RANGES as u8 + 1,
                    ..nack
                }),
                Err(MsgError::BadField),
            ),
            (Message::Nack(stray), Err(MsgError::BadField)),
            (data(MAX_CHUNK_INDEX, &big[..FD_CHUNK]), Ok(())),
            (
                data(MAX_CHUNK_INDEX + 1, &big[..1]),
                Err(MsgError::BadField),
            ),
            (data(0, &big), Err(MsgError::TooLong)),
        ];
        for (m, want) in cases {
            let got = m.to_frame(1);
            assert_eq!(got.map(|_| ()), want, "{m:?}");
            if let Ok(f) = got {
                assert_eq!(Message::decode(&f), Ok((1, m)));
            }
        }
    }

    /// Hosts and captures rely on these numbers: they never change.
    #[test]
    fn reserved_ids_and_reboot_reasons_keep_their_codes() {
        let ids = [
            (MASTER_PRIMARY, 0xFFF0),
            (MASTER_BACKUP, 0xFFF1),
            (TOOL, 0xFFF5),
            (EXTERNAL_TOOL, 0xFFF6),
            (SUPERVISOR, 0xFFF8),
            (BROADCAST, 0xFFFF),
        ];
        for (id, code) in ids {
            assert_eq!(id, code);
            assert!(id > MAX_NODE_ID);
        }
        for (reason, code) in [
            (RebootReason::Requested, 1),
            (RebootReason::Disturbance, 99),
        ] {
            assert_eq!(reason as u8, code);
            assert_eq!(RebootReason::from_code(code), Some(reason));
            let r = Reboot {
                target: 1,
                target_type: 0,
                reason: code,
            };
            assert_eq!(r.reason(), Some(reason));
        }
        assert_eq!(RebootReason::from_code(0), None);
    }

    #[test]
    fn priorities_put_control_first_and_bulk_last() {
        assert!(Kind::Reboot.id(MASTER_PRIMARY) < Kind::Request.id(1));
        assert!(Kind::Request.id(MAX_NODE_ID) < Kind::Heartbeat.id(1));
        assert!(Kind::Heartbeat.id(MAX_NODE_ID) < Kind::Data.id(MASTER_PRIMARY));
        assert!(Kind::Data.id(BROADCAST) <= crate::frame::MAX_EXTENDED_ID);
    }

    #[test]
    fn node_filters_pass_exactly_their_kinds() {
        use crate::filter::AcceptanceFilter;
        let boot = AcceptanceFilter::new(&BOOT_ROM_KINDS).unwrap();
        let app = AcceptanceFilter::new(&APP_KINDS).unwrap();
        let busy = AcceptanceFilter::new(&BUSY_KINDS).unwrap();
        for code in 0..=0xFFu32 {
            let Some(kind) = Kind::from_code(code) else {
                continue;
            };
            let f = Frame::fd_extended(kind.id(MASTER_PRIMARY), &[]).unwrap();
            assert!(!busy.accepts(&f), "{kind:?}");
            let session = matches!(
                kind,
                Kind::SessionAnnounce | Kind::SessionPart | Kind::SessionEnd
            );
            assert_eq!(
                boot.accepts(&f),
                session || matches!(kind, Kind::Data | Kind::Nack),
                "{kind:?}"
            );
            assert_eq!(
                app.accepts(&f),
                session || matches!(kind, Kind::Reboot | Kind::Check),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn node_type_names_round_trip() {
        for t in NodeType::ALL {
            assert_eq!(NodeType::from_name(t.name()), Some(t));
            assert_eq!(NodeType::from_code(t as u8), Some(t));
        }
        assert_eq!(NodeType::from_code(0), None);
        assert_eq!(NodeType::from_name("robot"), None);
    }

    #[test]
    fn random_frames_never_panic() {
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = [
                0x10u32, 0x11, 0x18, 0x20, 0x21, 0x22, 0x30, 0x38, 0x40, 0x48, 0x50, 0x60, 0xF0,
            ][(x % 13) as usize];
            let len = ((x >> 8) % 65) as usize;
            let data: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            let f = Frame::fd_extended(kind << 16 | (x >> 40) as u32 & 0xFFFF, &data).unwrap();
            let _ = Message::decode(&f);
        }
    }
}
