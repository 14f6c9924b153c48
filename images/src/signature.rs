//! Ed25519 signatures over the manifest, and the key file format.
//!
//! The signature covers manifest bytes `0..SIGNATURE_OFFSET`: every field,
//! the payload's SHA-256 and the signer's key id included. A signature thus
//! vouches for the payload through its digest, so a check is only complete
//! with the digest check too (the boot ROM checks the digest first, then the
//! signature).
//!
//! The key id is the first 8 bytes of SHA-256 over the 32-byte public key.
//!
//! ## Key files
//!
//! Text, one key per file:
//!
//! ```text
//! # any comment lines
//! bootcast-ed25519-secret-key-v1
//! 64 hex digits
//! ```
//!
//! The header line is [`SECRET_HEADER`] for a secret key (its 64 hex digits
//! are the 32-byte Ed25519 seed) or [`PUBLIC_HEADER`] for a public key.
//! Empty lines and lines starting with `#` are ignored; surrounding
//! whitespace is trimmed; nothing may follow the key line.
//!
//! This part is `no_std`: the boot ROM verifies with it and its build script
//! reads the trusted public key with it.

use crate::hex::{hex32, parse_hex32};
use crate::manifest::{MANIFEST_LEN, SIGNATURE_OFFSET};
use crate::sha256::{Digest, Sha256};

/// Bytes in a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes in a secret key file's seed.
pub const SEED_LEN: usize = 32;
/// Bytes in a key id.
pub const KEY_ID_LEN: usize = 8;
/// Offset of the key id in the manifest.
pub const KEY_ID_OFFSET: usize = 88;
/// First line of a secret key file.
pub const SECRET_HEADER: &str = "bootcast-ed25519-secret-key-v1";
/// First line of a public key file.
pub const PUBLIC_HEADER: &str = "bootcast-ed25519-public-key-v1";

/// Why a manifest's signature is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature field is all zero.
    Unsigned,
    /// The key id is not the trusted key's.
    UnknownKey,
    /// The signature does not verify with the trusted key.
    Invalid,
}

impl SignatureError {
    /// A short description.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Unsigned => "image is not signed",
            SignatureError::UnknownKey => "image is signed by another key",
            SignatureError::Invalid => "signature does not verify",
        }
    }
}

impl core::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for SignatureError {}

/// The key id of `public_key`: the first 8 bytes of its SHA-256.
pub fn key_id(public_key: &[u8; PUBLIC_KEY_LEN]) -> [u8; KEY_ID_LEN] {
    let d = Sha256::digest(public_key);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&d[..KEY_ID_LEN]);
    id
}

/// The manifest bytes a signature covers.
pub fn signed_bytes(manifest: &[u8; MANIFEST_LEN]) -> &[u8] {
    &manifest[..SIGNATURE_OFFSET]
}

/// Checks an encoded manifest's signature against `public_key`: it must be
/// signed, name that key's id, and verify. The payload digest is not
/// checked here. Never panics.
pub fn verify_signature(
    manifest: &[u8; MANIFEST_LEN],
    public_key: &[u8; PUBLIC_KEY_LEN],
) -> Result<(), SignatureError> {
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&manifest[SIGNATURE_OFFSET..]);
    if sig.iter().all(|&b| b == 0) {
        return Err(SignatureError::Unsigned);
    }
    if manifest[KEY_ID_OFFSET..SIGNATURE_OFFSET] != key_id(public_key) {
        return Err(SignatureError::UnknownKey);
    }
    verify_bytes(public_key, signed_bytes(manifest), sig)
}

/// The Ed25519 check itself: the one path both images and the known-answer
/// test take.
fn verify_bytes(
    public_key: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    sig: [u8; 64],
) -> Result<(), SignatureError> {
    ed25519_compact::PublicKey::new(*public_key)
        .verify(message, &ed25519_compact::Signature::new(sig))
        .map_err(|_| SignatureError::Invalid)
}

/// RFC 8032, section 7.1, TEST 1: a public key, and its signature of the
/// empty message.
const KAT_PUBLIC_KEY: [u8; PUBLIC_KEY_LEN] =
    hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
const KAT_SIGNATURE: [[u8; 32]; 2] = [
    hex32("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"),
    hex32("5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
];

/// Whether signature checking works: RFC 8032's first test vector must
/// pass through the code that checks images, and the same signature with
/// one bit flipped must fail. A boot ROM runs it while it waits for its
/// image: under QEMU that also translates the check's code before the
/// session needs it.
pub fn known_answer_test() -> bool {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&KAT_SIGNATURE[0]);
    sig[32..].copy_from_slice(&KAT_SIGNATURE[1]);
    let good = verify_bytes(&KAT_PUBLIC_KEY, &[], sig).is_ok();
    sig[0] ^= 1;
    good && verify_bytes(&KAT_PUBLIC_KEY, &[], sig).is_err()
}

/// What a key file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A secret key (seed).
    Secret,
    /// A public key.
    Public,
}

/// Why a key file is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFileError {
    /// The first line is no key file header.
    NotAKeyFile,
    /// A public key file where a secret key was needed.
    PublicNotSecret,
    /// A secret key file where a public key was needed.
    SecretNotPublic,
    /// The header has no key line after it.
    MissingKey,
    /// The key line is not 64 hex digits.
    BadKey,
    /// Text after the key line.
    TrailingText,
    /// A secret key of all zero bytes (no key at all).
    ZeroSeed,
    /// A public key that is no usable Ed25519 point: nothing could ever
    /// verify with it.
    InvalidPublicKey,
}

impl KeyFileError {
    /// A short description.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFileError::NotAKeyFile => {
                "not a bootcast key file (the first line must be bootcast-ed25519-secret-key-v1 or bootcast-ed25519-public-key-v1)"
            }
            KeyFileError::PublicNotSecret => {
                "this is a public key file; signing needs the secret key file"
            }
            KeyFileError::SecretNotPublic => {
                "this is a secret key file; give the public key file (KEYFILE.pub) instead"
            }
            KeyFileError::MissingKey => "the key line after the header is missing",
            KeyFileError::BadKey => "the key line is not 64 hexadecimal digits",
            KeyFileError::TrailingText => "unexpected text after the key line",
            KeyFileError::ZeroSeed => "the secret key is all zero",
            KeyFileError::InvalidPublicKey => "the public key is not a valid Ed25519 key",
        }
    }
}

impl core::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for KeyFileError {}

/// Parses a key file's text into its kind and 32 key bytes. Never panics.
pub fn parse_key_file(text: &str) -> Result<(KeyKind, [u8; 32]), KeyFileError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let kind = match lines.next() {
        Some(SECRET_HEADER) => KeyKind::Secret,
        Some(PUBLIC_HEADER) => KeyKind::Public,
        _ => return Err(KeyFileError::NotAKeyFile),
    };
    let key =
        parse_hex32(lines.next().ok_or(KeyFileError::MissingKey)?).ok_or(KeyFileError::BadKey)?;
    if lines.next().is_some() {
        return Err(KeyFileError::TrailingText);
    }
    Ok((kind, key))
}

/// Parses a public key file; the key must be a valid Ed25519 point.
pub fn parse_public_key_file(text: &str) -> Result<[u8; PUBLIC_KEY_LEN], KeyFileError> {
    match parse_key_file(text)? {
        (KeyKind::Public, key) => {
            ed25519_compact::PublicKey::new(key)
                .validate()
                .map_err(|_| KeyFileError::InvalidPublicKey)?;
            Ok(key)
        }
        (KeyKind::Secret, _) => Err(KeyFileError::SecretNotPublic),
    }
}

/// Parses a secret key file into its seed, which must not be all zero.
pub fn parse_secret_key_file(text: &str) -> Result<[u8; SEED_LEN], KeyFileError> {
    match parse_key_file(text)? {
        (KeyKind::Secret, seed) if seed == [0; SEED_LEN] => Err(KeyFileError::ZeroSeed),
        (KeyKind::Secret, seed) => Ok(seed),
        (KeyKind::Public, _) => Err(KeyFileError::PublicNotSecret),
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn the_known_answer_test_is_rfc_8032_test_1_and_can_fail() {
        // The vector is what RFC 8032's TEST 1 secret key gives.
        let seed = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        assert_eq!(*pair.pk, KAT_PUBLIC_KEY);
        let sig = pair.sk.sign([], None);
        assert_eq!(sig[..32], KAT_SIGNATURE[0]);
        assert_eq!(sig[32..], KAT_SIGNATURE[1]);
        assert!(known_answer_test());
        // A flipped bit anywhere in the key, the signature or the message
        // fails the check the test relies on.
        let mut key = KAT_PUBLIC_KEY;
        key[7] ^= 0x10;
        assert!(verify_bytes(&key, &[], *sig).is_err());
        assert!(verify_bytes(&KAT_PUBLIC_KEY, &[0], *sig).is_err());
        let mut bad = *sig;
        bad[40] ^= 2;
        assert!(verify_bytes(&KAT_PUBLIC_KEY, &[], bad).is_err());
    }

    #[test]
    fn key_files() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let mut want = [0u8; 32];
        for (i, w) in want.iter_mut().enumerate() {
            *w = ((i % 16) as u8) * 0x11;
        }
        let public = |body: &str| match parse_key_file(body)? {
            (KeyKind::Public, k) => Ok(k),
            (KeyKind::Secret, _) => Err(KeyFileError::SecretNotPublic),
        };
        assert_eq!(
            public(&format!("# c\n\n{PUBLIC_HEADER}\n  {hex}  \n# end\n")),
            Ok(want)
        );
        assert_eq!(
            parse_secret_key_file(&format!("{SECRET_HEADER}\r\n{hex}\r\n")),
            Ok(want)
        );
        let check = |text: &str, want: KeyFileError| {
            assert_eq!(public(text), Err(want), "{text:?}");
        };
        check("", KeyFileError::NotAKeyFile);
        check(hex, KeyFileError::NotAKeyFile);
        check(&format!("{PUBLIC_HEADER}\n"), KeyFileError::MissingKey);
        check(
            &format!("{PUBLIC_HEADER}\n{}\n", &hex[1..]),
            KeyFileError::BadKey,
        );
        check(
            &format!("{PUBLIC_HEADER}\n{}x\n", &hex[1..]),
            KeyFileError::BadKey,
        );
        check(
            &format!("{PUBLIC_HEADER}\n{hex}\nmore\n"),
            KeyFileError::TrailingText,
        );
        check(
            &format!("{SECRET_HEADER}\n{hex}\n"),
            KeyFileError::SecretNotPublic,
        );
        assert_eq!(
            parse_secret_key_file(&format!("{PUBLIC_HEADER}\n{hex}\n")),
            Err(KeyFileError::PublicNotSecret)
        );
        // Multi-byte UTF-8 of the right byte length is not hex, not a panic.
        check(
            &format!("{PUBLIC_HEADER}\n{}é\n", &hex[2..]),
            KeyFileError::BadKey,
        );
        let zeros = "0".repeat(64);
        assert_eq!(
            parse_secret_key_file(&format!("{SECRET_HEADER}\n{zeros}\n")),
            Err(KeyFileError::ZeroSeed)
        );
        // The identity point: small order, so no signature could verify.
        let identity = format!("01{}", "0".repeat(62));
        assert_eq!(
            parse_public_key_file(&format!("{PUBLIC_HEADER}\n{identity}\n")),
            Err(KeyFileError::InvalidPublicKey)
        );
    }

    #[test]
    fn unsigned_and_unknown_keys_are_named() {
        let mut m = [0u8; MANIFEST_LEN];
        let pk = [9u8; 32];
        assert_eq!(verify_signature(&m, &pk), Err(SignatureError::Unsigned));
        m[SIGNATURE_OFFSET] = 1;
        assert_eq!(verify_signature(&m, &pk), Err(SignatureError::UnknownKey));
        m[KEY_ID_OFFSET..SIGNATURE_OFFSET].copy_from_slice(&key_id(&pk));
        assert_eq!(verify_signature(&m, &pk), Err(SignatureError::Invalid));
    }
}
