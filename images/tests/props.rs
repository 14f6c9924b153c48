//! Property tests (proptest) for the image formats: manifests, image files,
//! bundles and key files take any bytes without panicking, what they accept
//! encodes back to the same bytes, and signing catches every change: any
//! single byte of a signed image's manifest or payload.

use board::memory::{IMAGE_BASE, IMAGE_END};
use images::build::{Image, ImageError};
use images::bundle::{self, Bundle, MAX_ENTRIES};
use images::manifest::{MANIFEST_LEN, Manifest, NAME_LEN};
use images::sign::SigningKey;
use images::signature::{self, parse_key_file};
use proptest::prelude::*;
use proto::NodeType;
use sha2::{Digest, Sha256};

fn node_type() -> impl Strategy<Value = NodeType> {
    prop::sample::select(NodeType::ALL.to_vec())
}

/// A valid image: a payload somewhere in the image region, entry inside it.
fn image() -> impl Strategy<Value = Image> {
    (
        node_type(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 1..600),
        0u64..0x10_0000,
        any::<u16>(),
        0u32..0x1000,
        "[a-z0-9-]{1,16}",
    )
        .prop_map(|(t, version, payload, at, entry, extra, name)| {
            let load_addr = (IMAGE_BASE + at) & !3;
            let size = payload.len() as u32;
            let mut n = [0u8; NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            let manifest = Manifest {
                node_type: t,
                version,
                name: n,
                load_addr,
                entry: load_addr + (entry as u64 % size as u64),
                size,
                mem_size: size + extra,
                sha256: Sha256::digest(&payload).into(),
                key_id: [0; 8],
                signature: [0; 64],
            };
            assert!(load_addr + manifest.mem_size as u64 <= IMAGE_END);
            Image { manifest, payload }
        })
}

fn key() -> SigningKey {
    SigningKey::from_seed([0x42; 32]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn manifests_of_any_bytes_parse_or_fail_and_round_trip(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        if let Ok(m) = Manifest::parse(&bytes) {
            prop_assert_eq!(&m.to_bytes()[..], &bytes[..MANIFEST_LEN]);
        }
        if let Some(b) = bytes.first_chunk::<MANIFEST_LEN>() {
            prop_assert!(signature::verify_signature(b, &key().public_key()).is_err());
        }
    }

    #[test]
    fn valid_manifests_round_trip(img in image()) {
        let bytes = img.manifest.to_bytes();
        prop_assert_eq!(Manifest::parse(&bytes), Ok(img.manifest));
    }

    #[test]
    fn image_files_of_any_bytes_parse_or_fail_and_round_trip(
        img in image(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = img.to_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(parsed) = Image::parse(&bytes) {
            prop_assert_eq!(parsed.to_bytes(), bytes);
            let _ = parsed.verify(&key().public_key());
            let _ = images::build::render_image(&parsed);
        }
    }

    #[test]
    fn every_single_byte_change_to_a_signed_image_is_caught(
        img in image(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let key = key();
        let mut signed = img;
        signed.sign(&key);
        let mut bytes = signed.to_bytes();
        prop_assert_eq!(Image::parse(&bytes).unwrap().verify(&key.public_key()), Ok(()));
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        // Refused either as a file, by its digest, or by its signature.
        if let Ok(changed) = Image::parse(&bytes) {
            let err = changed.verify(&key.public_key());
            prop_assert!(err.is_err(), "byte {} changed, still verifies", i);
            if i >= MANIFEST_LEN {
                let is_digest_mismatch = matches!(err, Err(ImageError::DigestMismatch { .. }));
                prop_assert!(is_digest_mismatch);
            }
        }
    }

    #[test]
    fn bundles_of_any_bytes_parse_or_fail(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Ok(b) = Bundle::parse(&bytes) {
            for e in b.entries() {
                prop_assert!(e.offset as usize + e.len as usize <= bytes.len());
            }
        }
    }

    #[test]
    fn bundles_round_trip_and_any_damage_is_an_error_or_a_bundle_within_bounds(
        imgs in prop::collection::vec(image(), 1..=MAX_ENTRIES),
        at in any::<prop::sample::Index>(),
        b in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        // One image per type.
        let mut seen = std::collections::BTreeSet::new();
        let files: Vec<(NodeType, Vec<u8>)> = imgs
            .into_iter()
            .filter(|i| seen.insert(i.manifest.node_type))
            .map(|i| (i.manifest.node_type, i.to_bytes()))
            .collect();
        let parts: Vec<(NodeType, &[u8])> = files.iter().map(|(t, f)| (*t, f.as_slice())).collect();
        let bytes = bundle::build(&parts).unwrap();
        let view = Bundle::parse(&bytes).unwrap();
        let got: Vec<(NodeType, &[u8])> = view
            .entries()
            .map(|e| (e.node_type, &bytes[e.offset as usize..(e.offset + e.len) as usize]))
            .collect();
        prop_assert_eq!(got, parts);
        let mut damaged = bytes.clone();
        let i = at.index(damaged.len());
        damaged[i] = b;
        damaged.truncate(cut.index(damaged.len() + 1).max(i));
        if let Ok(v) = Bundle::parse(&damaged) {
            for e in v.entries() {
                prop_assert!(e.offset as usize + e.len as usize <= damaged.len());
            }
        }
    }

    #[test]
    fn key_files_of_any_text_parse_or_fail(text in "\\PC{0,200}", header in any::<bool>()) {
        // With a real header, the parser gets past the first line.
        let text = if header {
            format!("{}\n{text}", signature::PUBLIC_HEADER)
        } else {
            text
        };
        let _ = parse_key_file(&text);
        let _ = signature::parse_public_key_file(&text);
        let _ = signature::parse_secret_key_file(&text);
    }
}
