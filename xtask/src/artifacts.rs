//! Builds the guests and what the testbed runs: the pflash file and one
//! signed image per node type, in `target/bootcast` (under cargo's target
//! directory), and the apps' ELF files in `target/bootcast/elf` (for fleet
//! files' `[images]`; `silent.elf` is an app that never talks).
//!
//! Signing: with `BOOTCAST_SIGNING_KEY` set to a secret key file, images are
//! signed with it; without, with a development key generated once per
//! checkout in `.bootcast/dev-signing.key` (git-ignored). The boot ROM is
//! built to trust that key's public half, written to
//! `target/bootcast/signing.pub`. `build.json` names both files, so tests
//! can sign images the nodes will accept.

use crate::cmd::write_if_changed;
use anyhow::{Context, Result, bail};
use board::memory::{FLASH_BASE, FLASH_SIZE};
use goblin::elf::{Elf, program_header::PT_LOAD};
use images::build::{BuildOptions, build_from_elf, hex};
use images::build_manifest::{self, BootRomSize, BuildManifest, RomBytes, SigningRecord};
use images::sign::{SigningKey, public_key_file_text};
use proto::NodeType;
use std::path::{Path, PathBuf};

/// Version stamped on the images the build produces.
const IMAGE_VERSION: &str = "1.0.0";
/// Names the secret key file to sign with.
pub const SIGNING_KEY_VAR: &str = "BOOTCAST_SIGNING_KEY";
/// Names the public key file the boot ROM trusts (read by its build script).
pub const PUBLIC_KEY_VAR: &str = "BOOTCAST_PUBLIC_KEY";
/// The development key, relative to the workspace root.
const DEV_KEY: &str = ".bootcast/dev-signing.key";

/// The key images are signed with and the boot ROM trusts.
pub struct Signing {
    /// The key.
    pub key: SigningKey,
    /// Its secret key file.
    pub key_file: PathBuf,
    /// Its public key file, as the boot ROM's build reads it.
    pub public_file: PathBuf,
    /// Whether it is this checkout's development key.
    pub development: bool,
}

/// Finds (or, for the development key, makes) the signing key and writes its
/// public key file into `target/bootcast`. `say` prints what key is used.
pub fn signing(root: &Path, say: bool) -> Result<Signing> {
    let (key_file, development) = match std::env::var_os(SIGNING_KEY_VAR) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), false),
        _ => (root.join(DEV_KEY), true),
    };
    if development && !key_file.exists() {
        if let Some(dir) = key_file.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let key = SigningKey::generate()?;
        // Another xtask may have made it meanwhile: then use that one.
        if key.write_new(&key_file).is_ok() && say {
            eprintln!(
                "xtask: generated a development signing key {} for this checkout",
                key_file.display()
            );
        }
    }
    let key = SigningKey::load(&key_file).with_context(|| {
        if development {
            format!("the development key (delete {DEV_KEY} to make a new one)")
        } else {
            SIGNING_KEY_VAR.to_string()
        }
    })?;
    if say {
        if development {
            eprintln!(
                "xtask: signing with the development key {}, generated for this checkout (key id {}; set {SIGNING_KEY_VAR}=KEYFILE to use your own)",
                key_file.display(),
                hex(&key.key_id())
            );
        } else {
            eprintln!(
                "xtask: signing with {SIGNING_KEY_VAR}={} (key id {})",
                key_file.display(),
                hex(&key.key_id())
            );
        }
    }
    let out = crate::cmd::bootcast_dir(root);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let public_file = out.join("signing.pub");
    // Same bytes, same mtime: the boot ROM's build script reruns only when
    // the key really changes.
    write_if_changed(
        &public_file,
        public_key_file_text(&key.public_key()).as_bytes(),
    )?;
    Ok(Signing {
        key,
        key_file: std::path::absolute(&key_file)?,
        public_file,
        development,
    })
}

/// `cargo build` of guest crates for the guest target.
fn build_guests(root: &Path, signing: &Signing, args: &[&str], what: &str) -> Result<()> {
    crate::cmd::run_checked(
        crate::cmd::cargo(root)
            .args([
                "build",
                "--quiet",
                "--profile",
                "guest",
                "--target",
                crate::cmd::GUEST_TARGET,
            ])
            .args(args)
            .env(PUBLIC_KEY_VAR, &signing.public_file),
        what,
    )
}

/// Builds everything; returns the artifacts folder.
pub fn build(root: &Path) -> Result<PathBuf> {
    let signing = signing(root, true)?;
    let bins = crate::cmd::target_dir(root)
        .join(crate::cmd::GUEST_TARGET)
        .join("guest");
    let boot_elf = bins.join("guest-boot");
    // First the boot ROM without signature checking, only to measure it:
    // the build after it leaves the real boot ROM in place.
    build_guests(
        root,
        &signing,
        &["-p", "guest-boot", "--no-default-features"],
        "building the boot ROM without signature checking",
    )?;
    let unchecked = std::fs::read(&boot_elf)
        .with_context(|| format!("cannot read {}", boot_elf.display()))
        .and_then(|b| flash_image(&b).with_context(|| format!("{}", boot_elf.display())))?
        .1;
    build_guests(
        root,
        &signing,
        &["-p", "guest-boot", "-p", "guest-apps"],
        "building the guests",
    )?;
    let out = crate::cmd::bootcast_dir(root);
    let images_dir = out.join("images");
    std::fs::create_dir_all(&images_dir)?;

    let elf_bytes =
        std::fs::read(&boot_elf).with_context(|| format!("cannot read {}", boot_elf.display()))?;
    let (flash, size) =
        flash_image(&elf_bytes).with_context(|| format!("{}", boot_elf.display()))?;
    write_if_changed(&out.join("flash.bin"), &flash)?;
    eprintln!(
        "xtask: boot ROM size {} bytes with signature checking, {} without (text {} + rodata {} + data {}); RAM: bss {} + stack {}",
        size.rom_bytes(),
        unchecked.rom_bytes(),
        size.text,
        size.rodata,
        size.data,
        size.bss,
        size.stack
    );

    let version = images::build::parse_version(IMAGE_VERSION).map_err(anyhow::Error::msg)?;
    for t in NodeType::ALL {
        let elf = bins.join(t.name());
        let opts = BuildOptions {
            node_type: t,
            name: t.name().to_string(),
            version,
            pad_to: None,
        };
        let bytes =
            std::fs::read(&elf).with_context(|| format!("cannot read {}", elf.display()))?;
        let mut image =
            build_from_elf(&bytes, &opts).with_context(|| format!("{}", elf.display()))?;
        image.sign(&signing.key);
        write_if_changed(
            &images_dir.join(format!("{}.bcimg", t.name())),
            &image.to_bytes(),
        )?;
    }
    // The apps' ELF files, for fleet files that name images by their ELF
    // (`[images]`): the five apps, and `silent`, which never talks.
    let elf_dir = out.join("elf");
    std::fs::create_dir_all(&elf_dir)?;
    for name in NodeType::ALL.iter().map(|t| t.name()).chain(["silent"]) {
        let elf = bins.join(name);
        let bytes =
            std::fs::read(&elf).with_context(|| format!("cannot read {}", elf.display()))?;
        write_if_changed(&elf_dir.join(format!("{name}.elf")), &bytes)?;
    }
    manifest(&size, &unchecked, &signing).write(&out.join(build_manifest::FILE_NAME))?;
    crate::sdk::build(root, &out)?;
    crate::qemu_virtual::build_plugin(root, &out)?;
    Ok(out)
}

/// The build's record: the boot ROM's size and the signing key.
fn manifest(size: &RomSize, unchecked: &RomSize, signing: &Signing) -> BuildManifest {
    BuildManifest {
        boot_rom: BootRomSize {
            bss: size.bss,
            data: size.data,
            rodata: size.rodata,
            rom_bytes: size.rom_bytes(),
            stack: size.stack,
            text: size.text,
            without_signature_check: RomBytes {
                data: unchecked.data,
                rodata: unchecked.rodata,
                rom_bytes: unchecked.rom_bytes(),
                text: unchecked.text,
            },
        },
        signing: SigningRecord {
            development: signing.development,
            key: signing.key_file.clone(),
            key_id: hex(&signing.key.key_id()),
            public_key: signing.public_file.clone(),
        },
    }
}

/// Section sizes of the boot ROM.
struct RomSize {
    text: u64,
    rodata: u64,
    data: u64,
    bss: u64,
    stack: u64,
}

impl RomSize {
    /// Bytes in flash: code, constants and `.data`'s initial values.
    fn rom_bytes(&self) -> u64 {
        self.text + self.rodata + self.data
    }
}

/// Lays the ELF's loadable bytes out as the flash sees them (by load
/// address), padded to the exact pflash size.
fn flash_image(elf_bytes: &[u8]) -> Result<(Vec<u8>, RomSize)> {
    let elf = Elf::parse(elf_bytes).context("not an ELF file")?;
    if elf.entry != FLASH_BASE {
        bail!(
            "entry {:#x} is not the flash base {FLASH_BASE:#x}",
            elf.entry
        );
    }
    let mut flash = vec![0u8; FLASH_SIZE as usize];
    for ph in elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.p_filesz > 0)
    {
        let start = ph
            .p_paddr
            .checked_sub(FLASH_BASE)
            .filter(|s| s + ph.p_filesz <= FLASH_SIZE);
        let Some(start) = start else {
            bail!(
                "a loadable segment at {:#x} lies outside the flash",
                ph.p_paddr
            );
        };
        let src = elf_bytes
            .get(ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize)
            .context("truncated segment")?;
        flash[start as usize..(start + ph.p_filesz) as usize].copy_from_slice(src);
    }
    let section = |name: &str| {
        elf.section_headers
            .iter()
            .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(name))
            .map_or(0, |s| s.sh_size)
    };
    let size = RomSize {
        text: section(".text"),
        rodata: section(".rodata"),
        data: section(".data"),
        bss: section(".bss"),
        stack: section(".stack"),
    };
    Ok((flash, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_manifest_names_the_key_and_sums_the_rom() {
        let rom = |text, rodata, data| RomSize {
            text,
            rodata,
            data,
            bss: 7,
            stack: 8,
        };
        let signing = Signing {
            key: SigningKey::from_seed([1; 32]).unwrap(),
            key_file: "/keys/dev.key".into(),
            public_file: "/out/signing.pub".into(),
            development: true,
        };
        let m = manifest(&rom(100, 20, 3), &rom(50, 10, 1), &signing);
        assert_eq!(m.boot_rom.rom_bytes, 123);
        assert_eq!(m.boot_rom.without_signature_check.rom_bytes, 61);
        assert_eq!((m.boot_rom.bss, m.boot_rom.stack), (7, 8));
        assert_eq!(m.signing.key, Path::new("/keys/dev.key"));
        assert_eq!(m.signing.key_id, hex(&signing.key.key_id()));
        // What the testbed reads back is what was written.
        assert_eq!(BuildManifest::parse(m.to_text().as_bytes()).unwrap(), m);
    }
}
