//! Signing keys and signing images (std side). The file format and the
//! check the boot ROM runs are in [`crate::signature`].

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::build::{BuildError, Image, ImageError, hex};
use crate::manifest::{MANIFEST_LEN, Manifest};
use crate::signature::{
    self, KEY_ID_LEN, KeyFileError, PUBLIC_HEADER, PUBLIC_KEY_LEN, SECRET_HEADER, SEED_LEN,
    SignatureError,
};

/// An Ed25519 signing key.
#[derive(Clone)]
pub struct SigningKey {
    seed: [u8; SEED_LEN],
    pair: ed25519_compact::KeyPair,
}

impl std::fmt::Debug for SigningKey {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(key id {})", hex(&self.key_id()))
    }
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> anyhow::Result<SigningKey> {
        let mut seed = [0u8; SEED_LEN];
        getrandom::getrandom(&mut seed)
            .map_err(|e| anyhow::anyhow!("no random numbers for a new key: {e}"))?;
        Ok(SigningKey::from_seed(seed)?)
    }

    /// The key for a 32-byte seed; an all-zero seed is refused.
    pub fn from_seed(seed: [u8; SEED_LEN]) -> Result<SigningKey, KeyFileError> {
        let pair = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(seed))
            .map_err(|_| KeyFileError::ZeroSeed)?;
        Ok(SigningKey { seed, pair })
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        *self.pair.pk
    }

    /// The key id manifests signed with this key carry.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        signature::key_id(&self.public_key())
    }

    /// Sets the manifest's key id and signs it. The payload is not looked
    /// at: the digest in the manifest is what gets signed.
    pub fn sign_manifest(&self, m: &mut Manifest) {
        m.key_id = self.key_id();
        m.signature = [0; 64];
        let bytes: [u8; MANIFEST_LEN] = m.to_bytes();
        // Deterministic (RFC 8032): the same manifest gives the same signature.
        m.signature = *self.pair.sk.sign(signature::signed_bytes(&bytes), None);
    }

    /// The secret key file's text.
    pub fn to_file_text(&self) -> String {
        format!(
            "# bootcast Ed25519 signing key, key id {}. Keep it secret.\n{SECRET_HEADER}\n{}\n",
            hex(&self.key_id()),
            hex(&self.seed)
        )
    }

    /// Reads a secret key file; errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read key file", path.display()))?;
        signature::parse_secret_key_file(&text)
            .and_then(SigningKey::from_seed)
            .with_context(|| format!("{}: bad key file", path.display()))
    }

    /// Writes the secret key file, readable by its owner only. Refuses to
    /// overwrite an existing file.
    pub fn write_new(&self, path: &Path) -> anyhow::Result<()> {
        write_new(path, &self.to_file_text(), 0o600)
    }
}

/// A public key file's text.
pub fn public_key_file_text(public_key: &[u8; PUBLIC_KEY_LEN]) -> String {
    format!(
        "# bootcast Ed25519 public key, key id {}.\n{PUBLIC_HEADER}\n{}\n",
        hex(&signature::key_id(public_key)),
        hex(public_key)
    )
}

/// Reads a public key file; errors name the file.
pub fn load_public_key(path: &Path) -> anyhow::Result<[u8; PUBLIC_KEY_LEN]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read key file", path.display()))?;
    signature::parse_public_key_file(&text)
        .with_context(|| format!("{}: bad key file", path.display()))
}

/// Writes the public key file. Refuses to overwrite an existing file.
pub fn write_new_public_key(path: &Path, public_key: &[u8; PUBLIC_KEY_LEN]) -> anyhow::Result<()> {
    write_new(path, &public_key_file_text(public_key), 0o644)
}

/// Creates `path` with `text` and `mode`; fails if it exists.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(
                "{}: already exists; refusing to overwrite it",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot create", path.display())),
    };
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    if let Err(e) = written {
        // No half-written key left behind.
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("{}: cannot write", path.display()));
    }
    Ok(())
}

impl Image {
    /// Signs the manifest with `key` (see [`SigningKey::sign_manifest`]).
    pub fn sign(&mut self, key: &SigningKey) {
        key.sign_manifest(&mut self.manifest);
    }

    /// Checks the manifest's signature against `public_key`. The digest is
    /// not checked here (see [`Image::verify`]).
    pub fn verify_signature(&self, public_key: &[u8; PUBLIC_KEY_LEN]) -> Result<(), ImageError> {
        let trusted = signature::key_id(public_key);
        signature::verify_signature(&self.manifest.to_bytes(), public_key).map_err(|e| match e {
            SignatureError::Unsigned => ImageError::Unsigned,
            SignatureError::UnknownKey => ImageError::WrongKey {
                found: self.manifest.key_id,
                trusted,
            },
            SignatureError::Invalid => ImageError::BadSignature { key_id: trusted },
        })
    }

    /// What the boot ROM checks, in its order: the payload digest, then the
    /// signature.
    pub fn verify(&self, public_key: &[u8; PUBLIC_KEY_LEN]) -> Result<(), ImageError> {
        self.verify_digest()?;
        self.verify_signature(public_key)
    }

    /// [`Image::padded`], signed again with `key` only if the image was
    /// valid under `key` before: padding keeps a good image good and a bad
    /// (unsigned, forged, tampered) one bad.
    pub fn padded_signed(&self, pad_to: u32, key: &SigningKey) -> Result<Image, BuildError> {
        let mut padded = self.padded(pad_to)?;
        if self.verify(&key.public_key()).is_ok() {
            padded.sign(key);
        }
        Ok(padded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{NAME_LEN, pack_version};
    use board::memory;
    use proto::NodeType;
    use sha2::{Digest, Sha256};

    fn image() -> Image {
        let payload = vec![0x13, 0, 0, 0, 0x6f, 0, 0, 0];
        let mut name = [0u8; NAME_LEN];
        name[..2].copy_from_slice(b"xy");
        let manifest = Manifest {
            node_type: NodeType::Xy,
            version: pack_version(1, 0, 0),
            name,
            load_addr: memory::IMAGE_BASE,
            entry: memory::IMAGE_BASE,
            size: payload.len() as u32,
            mem_size: 0x100,
            sha256: Sha256::digest(&payload).into(),
            key_id: [0; 8],
            signature: [0; 64],
        };
        Image { manifest, payload }
    }

    #[test]
    fn sign_then_verify_and_every_way_it_fails() {
        let key = SigningKey::from_seed([7; 32]).unwrap();
        let other = SigningKey::from_seed([8; 32]).unwrap();
        let mut img = image();
        assert_eq!(img.verify(&key.public_key()), Err(ImageError::Unsigned));
        img.sign(&key);
        assert_eq!(img.manifest.key_id, key.key_id());
        assert_eq!(img.verify(&key.public_key()), Ok(()));
        // Deterministic: signing again changes nothing.
        let again = {
            let mut i = img.clone();
            i.sign(&key);
            i
        };
        assert_eq!(again, img);
        assert_eq!(
            img.verify(&other.public_key()),
            Err(ImageError::WrongKey {
                found: key.key_id(),
                trusted: other.key_id()
            })
        );
        // A forger who copies our key id still fails.
        let mut forged = image();
        forged.sign(&other);
        forged.manifest.key_id = key.key_id();
        assert_eq!(
            forged.verify(&key.public_key()),
            Err(ImageError::BadSignature {
                key_id: key.key_id()
            })
        );
        // Payload changed, digest not: the digest check comes first.
        let mut tampered = img.clone();
        tampered.payload[0] ^= 1;
        assert!(matches!(
            tampered.verify(&key.public_key()),
            Err(ImageError::DigestMismatch { .. })
        ));
        // Digest updated too: now the signature fails.
        tampered.manifest.sha256 = tampered.payload_sha256();
        assert!(matches!(
            tampered.verify(&key.public_key()),
            Err(ImageError::BadSignature { .. })
        ));
        // Any signed field: the version, for a rollback.
        let mut older = img.clone();
        older.manifest.version -= 1;
        assert!(older.verify(&key.public_key()).is_err());
    }

    #[test]
    fn padding_keeps_good_images_good_and_bad_ones_bad() {
        let key = SigningKey::from_seed([7; 32]).unwrap();
        let pk = key.public_key();
        let mut good = image();
        good.sign(&key);
        let padded = good.padded_signed(4096, &key).unwrap();
        assert_eq!(padded.payload.len(), 4096);
        assert_eq!(padded.verify(&pk), Ok(()));
        // Plain padding leaves a stale signature.
        assert!(matches!(
            good.padded(4096).unwrap().verify(&pk),
            Err(ImageError::BadSignature { .. })
        ));
        let mut tampered = good.clone();
        tampered.payload[0] ^= 1;
        let other = SigningKey::from_seed([8; 32]).unwrap();
        let mut forged = image();
        forged.sign(&other);
        for bad in [image(), tampered, forged] {
            let padded = bad.padded_signed(4096, &key).unwrap();
            assert!(padded.verify(&pk).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_files_round_trip_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let path = dir.path().join("k");
        key.write_new(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            SigningKey::load(&path).unwrap().public_key(),
            key.public_key()
        );
        let err = format!("{:#}", key.write_new(&path).unwrap_err());
        assert!(
            err.contains("already exists; refusing to overwrite"),
            "{err}"
        );
        let pubpath = dir.path().join("k.pub");
        write_new_public_key(&pubpath, &key.public_key()).unwrap();
        assert_eq!(load_public_key(&pubpath).unwrap(), key.public_key());
        let err = format!("{:#}", load_public_key(&path).unwrap_err());
        assert!(err.contains("this is a secret key file"), "{err}");
        let err = format!("{:#}", SigningKey::load(&pubpath).unwrap_err());
        assert!(err.contains("this is a public key file"), "{err}");
        assert!(!format!("{key:?}").contains(&hex(&key.seed)));
    }
}
