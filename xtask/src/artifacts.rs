//! Builds the guests and what the testbed runs: the pflash file and one
//! image per node type, in `target/bootcast`.

use anyhow::{Context, Result, bail};
use board::memory::{FLASH_BASE, FLASH_SIZE};
use goblin::elf::{Elf, program_header::PT_LOAD};
use images::build::{BuildOptions, build_from_elf};
use proto::NodeType;
use std::path::{Path, PathBuf};

/// Version stamped on the images the build produces.
const IMAGE_VERSION: &str = "1.0.0";

/// Builds everything; returns the artifacts folder.
pub fn build(root: &Path) -> Result<PathBuf> {
    crate::run_checked(
        crate::cargo(root).args([
            "build",
            "--quiet",
            "--profile",
            "guest",
            "--target",
            crate::GUEST_TARGET,
            "-p",
            "guest-boot",
            "-p",
            "guest-apps",
        ]),
        "building the guests",
    )?;
    let bins = root.join("target").join(crate::GUEST_TARGET).join("guest");
    let out = root.join("target").join("bootcast");
    let images_dir = out.join("images");
    std::fs::create_dir_all(&images_dir)?;

    let boot_elf = bins.join("guest-boot");
    let elf_bytes =
        std::fs::read(&boot_elf).with_context(|| format!("cannot read {}", boot_elf.display()))?;
    let (flash, size) =
        flash_image(&elf_bytes).with_context(|| format!("{}", boot_elf.display()))?;
    write_if_changed(&out.join("flash.bin"), &flash)?;
    eprintln!(
        "xtask: boot ROM size {} bytes (text {} + rodata {} + data {}); RAM: bss {} + stack {}",
        size.text + size.rodata + size.data,
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
        let image = build_from_elf(&bytes, &opts).with_context(|| format!("{}", elf.display()))?;
        write_if_changed(
            &images_dir.join(format!("{}.bcimg", t.name())),
            &image.to_bytes(),
        )?;
    }
    let summary = serde_json::json!({
        "boot_rom": { "text": size.text, "rodata": size.rodata, "data": size.data, "bss": size.bss, "stack": size.stack,
                      "rom_bytes": size.text + size.rodata + size.data },
    });
    std::fs::write(
        out.join("build.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(out)
}

/// Section sizes of the boot ROM.
struct RomSize {
    text: u64,
    rodata: u64,
    data: u64,
    bss: u64,
    stack: u64,
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

/// Writes only when the content differs, so running testbeds that share the
/// file are never handed a half-written flash.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
