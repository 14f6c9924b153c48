//! Known-answer tests of the crypto that checks images: SHA-256 (FIPS 180-2's
//! "abc", hashed in two updates as the receiver hashes) and, with
//! `signature-check`, Ed25519 (RFC 8032's first vector, and the same
//! signature damaged). A node that fails them could pass a bad image or
//! refuse every good one, so it reports a failed self-test instead.
//!
//! They run once the first `Request` is out ([`crate::boot::Action::TestCrypto`]),
//! in the hold-off the master waits anyway. Under QEMU that also
//! translates the hash and signature code before the session needs it,
//! rather than on every node at once as the image arrives.

use images::sha256::{Digest, Sha256};

/// Self-test bit: SHA-256 gave a wrong digest.
pub const SHA256_FAILED: u8 = 8;
/// Self-test bit: Ed25519 refused the good signature or passed the bad one.
pub const SIGNATURE_FAILED: u8 = 16;

/// SHA-256("abc"), FIPS 180-2 appendix B.1.
const ABC_SHA256: [u8; 32] = [
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
];

/// Runs the tests; the bits of those that failed, zero for a pass.
pub fn run() -> u8 {
    let mut failed = 0;
    if !sha256_answers(b"ab", b"c", &ABC_SHA256) {
        failed |= SHA256_FAILED;
    }
    #[cfg(feature = "signature-check")]
    if !images::signature::known_answer_test() {
        failed |= SIGNATURE_FAILED;
    }
    failed
}

/// Whether SHA-256 over `a` then `b`, fed as two updates and finished from
/// a clone (as [`crate::receive`] does), gives `digest`.
fn sha256_answers(a: &[u8], b: &[u8], digest: &[u8; 32]) -> bool {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.clone().finalize()[..] == digest[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_pass_and_each_can_fail() {
        assert_eq!(run(), 0);
        assert!(sha256_answers(b"a", b"bc", &ABC_SHA256));
        // Another message, or another digest, fails.
        assert!(!sha256_answers(b"ab", b"d", &ABC_SHA256));
        let mut wrong = ABC_SHA256;
        wrong[31] ^= 1;
        assert!(!sha256_answers(b"ab", b"c", &wrong));
    }
}
