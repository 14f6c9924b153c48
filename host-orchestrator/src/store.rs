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

/// Where one image lies in a session's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartSpec {
    /// Node type of the image.
    pub node_type: NodeType,
    /// Offset of the image file in the object.
    pub offset: u32,
    /// Length of the image file.
    pub len: u32,
    /// Payload load address.
    pub load_addr: u64,
    /// Image version.
    pub version: u32,
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

    /// The part describing one stored image sent on its own.
    pub fn part(&self, t: NodeType) -> Option<PartSpec> {
        let s = self.by_type.get(&t)?;
        Some(PartSpec {
            node_type: t,
            offset: 0,
            len: s.bytes.len() as u32,
            load_addr: s.image.manifest.load_addr,
            version: s.image.manifest.version,
        })
    }

    /// Every stored image as one bundle (type order), with its parts.
    pub fn bundle(&self) -> Result<(Vec<u8>, Vec<PartSpec>)> {
        let files: Vec<(NodeType, &[u8])> = self
            .by_type
            .iter()
            .map(|(t, s)| (*t, s.bytes.as_slice()))
            .collect();
        let bytes = images::bundle::build(&files)
            .map_err(|e| anyhow::anyhow!("cannot bundle the store: {e}"))?;
        let view = images::bundle::Bundle::parse(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let parts = view
            .entries()
            .filter_map(|e| {
                let m = &self.by_type.get(&e.node_type)?.image.manifest;
                Some(PartSpec {
                    node_type: e.node_type,
                    offset: e.offset,
                    len: e.len,
                    load_addr: m.load_addr,
                    version: m.version,
                })
            })
            .collect();
        Ok((bytes, parts))
    }

    /// What identifies the content of `dir`'s images without reading them:
    /// names, lengths and modification times. A master compares it before
    /// each session to pick up newly published images.
    pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let p = e.path();
                let m = e.metadata().ok()?;
                let modified = m.modified().ok()?;
                (p.extension().is_some_and(|x| x == "bcimg")).then_some((p, m.len(), modified))
            })
            .collect();
        out.sort();
        out
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
