//! Manifest parsing and the signature check on arbitrary bytes: never
//! panics, and an accepted manifest encodes back to exactly its bytes.
#![no_main]

use images::manifest::{MANIFEST_LEN, Manifest};
use libfuzzer_sys::fuzz_target;

/// Any valid Ed25519 point will do: the check must fail cleanly.
const KEY: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        assert_eq!(&m.to_bytes()[..], &data[..MANIFEST_LEN]);
    }
    if let Some(b) = data.first_chunk::<MANIFEST_LEN>() {
        let _ = images::signature::verify_signature(b, &KEY);
    }
});
