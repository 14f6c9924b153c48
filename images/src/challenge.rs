//! The answer to the supervisor's `Check` challenge, computed the same way
//! by the app (over the bytes in its RAM) and by the host (over the built
//! image): SHA-256 over the nonce's little-endian bytes, then the payload.
//! A fresh nonce makes an answer worthless for any other challenge.

use crate::sha256::{Digest, Sha256};

/// SHA-256(nonce LE ‖ payload).
pub fn answer(nonce: u32, payload: &[u8]) -> [u8; 32] {
    let mut a = Answer::new(nonce);
    a.update(payload);
    a.finish()
}

/// [`answer`] over a payload given a piece at a time, for an app that must
/// do other work between pieces.
pub struct Answer(Sha256);

impl Answer {
    /// An answer to the challenge with `nonce`, no payload yet.
    pub fn new(nonce: u32) -> Answer {
        let mut h = Sha256::new();
        h.update(nonce.to_le_bytes());
        Answer(h)
    }

    /// The next bytes of the payload.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The answer over everything given.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> [u8; 32] {
        core::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
    }

    /// Values from Python's hashlib, as the bus tests compute them:
    /// `sha256(struct.pack("<I", nonce) + payload)`.
    #[test]
    fn answers_match_an_independent_computation() {
        let cases: [(u32, &[u8], &str); 2] = [
            (
                0x1234_ABCD,
                b"bootcast",
                "a6386230f62edeac3b02d2c5d067db8da288890378f1b9aebaad4418dc0db333",
            ),
            (
                0,
                b"",
                "df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119",
            ),
        ];
        for (nonce, payload, want) in cases {
            assert_eq!(answer(nonce, payload), unhex(want), "nonce {nonce:#x}");
        }
    }

    #[test]
    fn an_answer_in_pieces_is_the_answer_in_one() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        for piece in [1, 64, 2048, 4999, 5000] {
            let mut a = Answer::new(42);
            payload.chunks(piece).for_each(|c| a.update(c));
            assert_eq!(a.finish(), answer(42, &payload), "pieces of {piece}");
        }
    }

    #[test]
    fn another_nonce_gives_another_answer() {
        assert_ne!(answer(1, b"image"), answer(2, b"image"));
    }
}
