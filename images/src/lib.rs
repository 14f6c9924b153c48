//! bootcast code images.
//!
//! An image file is a fixed-size [`manifest::Manifest`] followed by the
//! payload: the bytes to place at the manifest's load address. The core (this
//! crate without `std`) parses and checks manifests and is used by the boot
//! ROM; [`bundle`] lays several images out as one file for combined
//! broadcasts; [`signature`] checks a manifest's Ed25519 signature and reads
//! key files; [`challenge`] answers the supervisor's `Check` (app and host
//! alike); [`sha256`] is the hasher they and the boot ROM use. With `std`,
//! [`build`] turns a guest-app ELF into an image, [`sign`] makes keys and
//! signs, and the `images` binary offers `build`, `bundle`, `inspect`,
//! `keygen`, `sign` and `verify`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

pub mod bundle;
pub mod challenge;
mod hex;
pub mod manifest;
pub mod sha256;
pub mod signature;

#[cfg(feature = "std")]
pub mod build;
#[cfg(feature = "std")]
pub mod build_manifest;
#[cfg(feature = "std")]
pub mod sign;

pub use manifest::{Manifest, ManifestError};
