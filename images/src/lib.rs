//! bootcast code images.
//!
//! An image file is a fixed-size [`manifest::Manifest`] followed by the
//! payload: the bytes to place at the manifest's load address. The core (this
//! crate without `std`) parses and checks manifests and is used by the boot
//! ROM; [`bundle`] lays several images out as one file for combined
//! broadcasts. With `std`, [`build`] turns a guest-app ELF into an image and the
//! `images` binary offers `build` and `inspect`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

pub mod bundle;
pub mod manifest;

#[cfg(feature = "std")]
pub mod build;

pub use manifest::{Manifest, ManifestError};
