//! Image stores: the master's non-volatile memory (what it serves), and the
//! build's reference images (what the verifier expects). They are separate on
//! purpose: a store can be tampered with, the reference cannot.

use anyhow::{Context, Result, bail};
use images::build::Image;
use proto::NodeType;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One stored image.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// Where it was read from.
    pub path: PathBuf,
    /// Manifest and payload.
    pub image: Arc<Image>,
    /// The whole file (manifest ‖ payload), the object a session sends.
    pub bytes: Arc<Vec<u8>>,
    /// SHA-256 of the payload as stored, whatever the manifest says.
    pub payload_sha256: [u8; 32],
}

impl StoredImage {
    /// Image name from the manifest.
    pub fn name(&self) -> String {
        self.image.manifest.name_str().unwrap_or("?").to_string()
    }
}

/// Images by node type.
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// One image per type.
    pub by_type: BTreeMap<NodeType, StoredImage>,
}

/// The file name of a type's image in a store directory.
pub fn image_file_name(t: NodeType) -> String {
    format!("{}.bcimg", t.name())
}

impl Store {
    /// Loads every `*.bcimg` in `dir`. A file that does not parse, or two
    /// files for one type, is an error naming the file.
    pub fn load(dir: &Path) -> Result<Store> {
        let mut store = Store::default();
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read image store {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "bcimg"))
            .collect();
        paths.sort();
        for path in paths {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let image =
                Image::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let t = image.manifest.node_type;
            if let Some(other) = store.by_type.get(&t) {
                bail!(
                    "{}: a second image for node type {} (first: {})",
                    path.display(),
                    t.name(),
                    other.path.display()
                );
            }
            let payload_sha256 = Sha256::digest(&image.payload).into();
            store.by_type.insert(
                t,
                StoredImage {
                    path,
                    image: Arc::new(image),
                    bytes: Arc::new(bytes),
                    payload_sha256,
                },
            );
        }
        Ok(store)
    }

    /// Checks that every type in `types` has an image.
    pub fn require(&self, types: &[NodeType], dir: &Path) -> Result<()> {
        for t in types {
            if !self.by_type.contains_key(t) {
                bail!(
                    "image store {} has no image for node type {}",
                    dir.display(),
                    t.name()
                );
            }
        }
        Ok(())
    }
}
