//! How far the running session is, as its frames are written to the bus:
//! a pure tracker fed every frame the master's writer sends, so that the
//! live view can show a broadcast's first pass and its repair rounds.

use proto::Frame;
use proto::msg::Message;
use serde::{Deserialize, Serialize};

/// Where a session is, by the frames written so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionProgress {
    /// Session number.
    pub session: u32,
    /// `Data` frames in the session.
    pub total_chunks: u32,
    /// First-pass chunks written (a resumed session counts from where it
    /// resumed: the highest chunk written, plus one).
    pub chunks: u32,
    /// 0 in the first pass, then the repair round being sent.
    pub round: u8,
    /// Chunks written in this repair round.
    pub round_chunks: u32,
}

/// The session being written, if any: fed every frame the writer sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireProgress(pub Option<SessionProgress>);

impl WireProgress {
    /// Takes one written frame into account; returns whether anything
    /// changed.
    pub fn on_frame(&mut self, frame: &Frame) -> bool {
        let Ok((_, m)) = Message::decode(frame) else {
            return false;
        };
        let before = self.0;
        match m {
            Message::SessionAnnounce(a) if self.0.is_none_or(|p| p.session != a.session) => {
                self.0 = Some(SessionProgress {
                    session: a.session,
                    total_chunks: a.total_chunks,
                    ..SessionProgress::default()
                });
            }
            Message::Data(d) => {
                if let Some(p) = self.0.as_mut().filter(|p| p.session as u8 == d.session) {
                    if p.round == 0 {
                        p.chunks = p.chunks.max(d.chunk.saturating_add(1)).min(p.total_chunks);
                    } else {
                        p.round_chunks += 1;
                    }
                }
            }
            Message::SessionEnd(e) if self.0.is_some_and(|p| p.session == e.session) => {
                if e.last != 0 {
                    self.0 = None;
                } else if let Some(p) = self.0.as_mut() {
                    p.chunks = p.total_chunks;
                    p.round = e.round.saturating_add(1);
                    p.round_chunks = 0;
                }
            }
            _ => {}
        }
        self.0 != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::msg::{self, Data, SessionAnnounce, SessionEnd};

    fn announce(session: u32, total_chunks: u32) -> Frame {
        Message::SessionAnnounce(SessionAnnounce {
            session,
            total_chunks,
            object_len: total_chunks * msg::FD_CHUNK as u32,
            chunk_size: msg::FD_CHUNK as u8,
            parts: 1,
            mode: msg::MODE_SELECTED,
            target: msg::BROADCAST,
            window: 1,
        })
        .to_frame(1)
        .unwrap()
    }

    fn data(session: u32, chunk: u32) -> Frame {
        Message::Data(Data {
            session: session as u8,
            chunk,
            payload: &[0; msg::FD_CHUNK],
        })
        .to_frame(1)
        .unwrap()
    }

    fn end(session: u32, round: u8, last: bool) -> Frame {
        Message::SessionEnd(SessionEnd {
            session,
            total_chunks: 4,
            round,
            last: last as u8,
        })
        .to_frame(1)
        .unwrap()
    }

    fn p(chunks: u32, round: u8, round_chunks: u32) -> Option<SessionProgress> {
        Some(SessionProgress {
            session: 7,
            total_chunks: 4,
            chunks,
            round,
            round_chunks,
        })
    }

    #[test]
    fn it_follows_the_first_pass_and_each_repair_round() {
        let steps: &[(Frame, bool, Option<SessionProgress>)] = &[
            (data(7, 0), false, None),
            (announce(7, 4), true, p(0, 0, 0)),
            (data(7, 0), true, p(1, 0, 0)),
            (data(7, 1), true, p(2, 0, 0)),
            // A late joiner's re-announcement changes nothing.
            (announce(7, 4), false, p(2, 0, 0)),
            // Another session's data (low byte 8) is not this one's.
            (data(8, 3), false, p(2, 0, 0)),
            (data(7, 3), true, p(4, 0, 0)),
            (end(7, 0, false), true, p(4, 1, 0)),
            (data(7, 2), true, p(4, 1, 1)),
            (data(7, 3), true, p(4, 1, 2)),
            (end(7, 1, false), true, p(4, 2, 0)),
            (end(6, 2, true), false, p(4, 2, 0)),
            (end(7, 2, true), true, None),
        ];
        let mut w = WireProgress::default();
        for (i, (frame, changed, want)) in steps.iter().enumerate() {
            assert_eq!(w.on_frame(frame), *changed, "step {i}");
            assert_eq!(w.0, *want, "step {i}");
        }
    }

    #[test]
    fn a_resumed_session_counts_from_where_it_resumed() {
        let mut w = WireProgress::default();
        w.on_frame(&announce(7, 4));
        w.on_frame(&data(7, 2));
        assert_eq!(w.0, p(3, 0, 0));
    }
}
