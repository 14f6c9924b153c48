//! The answer to the supervisor's `Check` challenge, computed the same way
//! by the app (over the bytes in its RAM) and by the host (over the built
//! image): SHA-256 over the nonce's little-endian bytes, then the payload.
//! A fresh nonce makes an answer worthless for any other challenge.

use sha2::{Digest, Sha256};

/// SHA-256(nonce LE ‖ payload).
pub fn answer(nonce: u32, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(nonce.to_le_bytes());
    h.update(payload);
    h.finalize().into()
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
    fn another_nonce_gives_another_answer() {
        assert_ne!(answer(1, b"image"), answer(2, b"image"));
    }
}
