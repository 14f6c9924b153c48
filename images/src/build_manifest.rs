//! `build.json`: what `cargo xtask build` put in `target/bootcast`, with the
//! key it signed the images with. The xtask writes it; the testbed and the
//! tests read it (the key signs images they make, so that nodes accept them).
//!
//! Fields are in name order, so the file reads as it did when it was
//! written from an untyped JSON map.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the artifacts folder.
pub const FILE_NAME: &str = "build.json";

/// What one build made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildManifest {
    /// The boot ROM's size.
    pub boot_rom: BootRomSize,
    /// The signing key.
    pub signing: SigningRecord,
}

/// The boot ROM's sections, bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRomSize {
    /// `.bss`.
    pub bss: u64,
    /// `.data`.
    pub data: u64,
    /// `.rodata`.
    pub rodata: u64,
    /// Bytes in flash: text, rodata and data.
    pub rom_bytes: u64,
    /// `.stack`.
    pub stack: u64,
    /// `.text`.
    pub text: u64,
    /// The same boot ROM built without signature checking.
    pub without_signature_check: RomBytes,
}

/// A boot ROM's flash sections, bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RomBytes {
    /// `.data`.
    pub data: u64,
    /// `.rodata`.
    pub rodata: u64,
    /// Bytes in flash: text, rodata and data.
    pub rom_bytes: u64,
    /// `.text`.
    pub text: u64,
}

/// The key the images are signed with and the boot ROM trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningRecord {
    /// Whether it is the checkout's development key.
    pub development: bool,
    /// The secret key file (absolute).
    pub key: PathBuf,
    /// The key id, hex.
    pub key_id: String,
    /// The public key file the boot ROM was built with.
    pub public_key: PathBuf,
}

/// Why a build manifest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BuildManifestError {
    /// The file cannot be read.
    #[error("{}: cannot read the build manifest; run `cargo xtask build`", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a build manifest (or one of another version).
    #[error("{}: not a build manifest; run `cargo xtask build`", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file cannot be written.
    #[error("{}: cannot write the build manifest", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl BuildManifest {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<BuildManifest, BuildManifestError> {
        let text = std::fs::read(path).map_err(|source| BuildManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        BuildManifest::parse(&text).map_err(|source| BuildManifestError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses the file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<BuildManifest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The file's text: pretty JSON.
    pub fn to_text(&self) -> String {
        // A struct of plain fields always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes it to `path`.
    pub fn write(&self, path: &Path) -> Result<(), BuildManifestError> {
        std::fs::write(path, self.to_text()).map_err(|source| BuildManifestError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as the xtask wrote it before this type existed.
    const WRITTEN: &str = r#"{
  "boot_rom": {
    "bss": 106664,
    "data": 0,
    "rodata": 3821,
    "rom_bytes": 49569,
    "stack": 32768,
    "text": 45748,
    "without_signature_check": {
      "data": 0,
      "rodata": 1881,
      "rom_bytes": 33821,
      "text": 31940
    }
  },
  "signing": {
    "development": true,
    "key": "/src/bootcast/.bootcast/dev-signing.key",
    "key_id": "4a2157ae9c002ae3",
    "public_key": "/src/bootcast/target/bootcast/signing.pub"
  }
}"#;

    #[test]
    fn reads_and_writes_the_file_as_before() {
        let m = BuildManifest::parse(WRITTEN.as_bytes()).unwrap();
        assert_eq!(
            m.signing.key,
            Path::new("/src/bootcast/.bootcast/dev-signing.key")
        );
        assert_eq!(m.boot_rom.without_signature_check.rom_bytes, 33821);
        assert_eq!(m.to_text(), WRITTEN);
    }

    #[test]
    fn errors_name_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join(FILE_NAME);
        let e = BuildManifest::load(&missing).unwrap_err();
        assert!(matches!(e, BuildManifestError::Read { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read", missing.display())),
            "{e}"
        );
        let no_key = WRITTEN.replace("\"key\":", "\"kay\":");
        std::fs::write(&missing, no_key).unwrap();
        let e = BuildManifest::load(&missing).unwrap_err();
        assert!(e.to_string().contains("not a build manifest"), "{e}");
        let BuildManifestError::Parse { source, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            source.to_string().contains("missing field `key`"),
            "{source}"
        );
    }
}
