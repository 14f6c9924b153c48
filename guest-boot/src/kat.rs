//! Known-answer tests of the crypto that checks images: SHA-256 (FIPS 180-2's
//! "abc", hashed in two updates as the receiver hashes;
//! [`images::sha256::known_answer_test`]) and, with `signature-check`,
//! Ed25519 (RFC 8032's first vector, and the same signature damaged;
//! [`images::signature::known_answer_test`]). A node that fails them could
//! pass a bad image or refuse every good one, so it reports a failed
//! self-test instead.
//!
//! They run once the first `Request` is out ([`crate::boot::Action::TestCrypto`]),
//! in the hold-off the master waits anyway. Under QEMU that also
//! translates the hash and signature code before the session needs it,
//! rather than on every node at once as the image arrives.

/// Self-test bit: SHA-256 gave a wrong digest.
pub const SHA256_FAILED: u8 = 8;
/// Self-test bit: Ed25519 refused the good signature or passed the bad one.
pub const SIGNATURE_FAILED: u8 = 16;

/// Runs the tests; the bits of those that failed, zero for a pass.
pub fn run() -> u8 {
    let mut failed = 0;
    if !images::sha256::known_answer_test() {
        failed |= SHA256_FAILED;
    }
    #[cfg(feature = "signature-check")]
    if !images::signature::known_answer_test() {
        failed |= SIGNATURE_FAILED;
    }
    failed
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tests_pass() {
        assert_eq!(super::run(), 0);
    }
}
