//! Building images from guest-app ELFs, reading image files, and the views
//! `images inspect` prints.
//!
//! The builder checks the ELF against [`board::memory`] again, although the
//! apps' linker scripts are generated from the same map: a stale or foreign
//! ELF must fail here, with a reason, rather than on a node.

use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use board::memory;
use goblin::container::{Container, Ctx, Endian};
use goblin::elf::Elf;
use goblin::elf::header::{
    self, EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_RISCV, ET_EXEC,
};
use goblin::elf::program_header::{PT_LOAD, ProgramHeader};
use goblin::elf::section_header::{SHT_NOBITS, SectionHeader};
use proto::NodeType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{
    MANIFEST_LEN, Manifest, ManifestError, NAME_LEN, pack_version, unpack_version,
};

/// ELF64 header, program header and section header sizes.
const EHDR_LEN: u64 = 64;
const PHDR_LEN: u64 = 56;
const SHDR_LEN: u64 = 64;

/// The image region as a [`Span`].
pub const IMAGE_REGION: Span = Span {
    start: memory::IMAGE_BASE,
    len: memory::IMAGE_END - memory::IMAGE_BASE,
};

/// An address range `[start, start + len)`, shown in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // u128 so a range running past 2^64 still prints its true end.
        write!(f, "[{:#x}, {:#x})", self.start, self.end())
    }
}

impl Span {
    fn end(&self) -> u128 {
        self.start as u128 + self.len as u128
    }

    fn overlaps(&self, other: &Span) -> bool {
        (self.start as u128) < other.end() && (other.start as u128) < self.end()
    }
}

/// An image file: a manifest followed by the payload.
///
/// The fields are written as they are: [`Image::to_bytes`] recomputes
/// neither size nor digest, so tests can make tampered files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The manifest.
    pub manifest: Manifest,
    /// The bytes placed at `manifest.load_addr`.
    pub payload: Vec<u8>,
}

/// Why an image file is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The manifest does not parse or does not fit the memory map.
    #[error("bad manifest: {0}")]
    Manifest(ManifestError),
    /// The file is shorter than the manifest says.
    #[error("truncated: the file is {len} bytes, the image needs {expected}")]
    Truncated {
        /// File length.
        len: usize,
        /// Manifest plus payload length.
        expected: u64,
    },
    /// The file is longer than the manifest says.
    #[error("trailing bytes: the file is {len} bytes, the image needs {expected}")]
    TrailingBytes {
        /// File length.
        len: usize,
        /// Manifest plus payload length.
        expected: u64,
    },
    /// The payload's SHA-256 differs from the manifest's.
    #[error("payload digest mismatch: payload sha256 {}, manifest says {}", hex(.actual), hex(.expected))]
    DigestMismatch {
        /// The manifest's digest.
        expected: [u8; 32],
        /// The payload's digest.
        actual: [u8; 32],
    },
    /// The signature field is empty.
    #[error("not signed")]
    Unsigned,
    /// Signed, but by another key than the one checked against.
    #[error("signed by key id {}, not by the given key (key id {})", hex(.found), hex(.trusted))]
    WrongKey {
        /// Key id in the manifest.
        found: [u8; 8],
        /// Key id of the key checked against.
        trusted: [u8; 8],
    },
    /// The key id is right but the signature does not verify.
    #[error("bad signature: the manifest was changed after signing, or the signature is forged (key id {})", hex(.key_id))]
    BadSignature {
        /// Key id of the key checked against.
        key_id: [u8; 8],
    },
}

impl Image {
    /// The file bytes: manifest then payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MANIFEST_LEN + self.payload.len());
        b.extend_from_slice(&self.manifest.to_bytes());
        b.extend_from_slice(&self.payload);
        b
    }

    /// Parses an image file: the manifest must parse and the file must be
    /// exactly manifest plus payload. The digest is not checked (see
    /// [`Image::verify_digest`]), so a tampered image still parses.
    pub fn parse(bytes: &[u8]) -> Result<Image, ImageError> {
        let manifest = Manifest::parse(bytes).map_err(|e| match e {
            ManifestError::Truncated => ImageError::Truncated {
                len: bytes.len(),
                expected: MANIFEST_LEN as u64,
            },
            e => ImageError::Manifest(e),
        })?;
        let expected = MANIFEST_LEN as u64 + manifest.size as u64;
        let len = bytes.len();
        if (len as u64) < expected {
            return Err(ImageError::Truncated { len, expected });
        }
        if len as u64 > expected {
            return Err(ImageError::TrailingBytes { len, expected });
        }
        Ok(Image {
            manifest,
            payload: bytes[MANIFEST_LEN..].to_vec(),
        })
    }

    /// [`Image::parse`] then [`Image::verify_digest`].
    pub fn parse_verified(bytes: &[u8]) -> Result<Image, ImageError> {
        let image = Image::parse(bytes)?;
        image.verify_digest()?;
        Ok(image)
    }

    /// SHA-256 of the payload as it is.
    pub fn payload_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.payload).into()
    }

    /// Checks that the payload's SHA-256 is the manifest's.
    pub fn verify_digest(&self) -> Result<(), ImageError> {
        let actual = self.payload_sha256();
        if actual != self.manifest.sha256 {
            return Err(ImageError::DigestMismatch {
                expected: self.manifest.sha256,
                actual,
            });
        }
        Ok(())
    }
}

/// What to put in the manifest besides what the ELF gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Node type the image is for.
    pub node_type: NodeType,
    /// Image name: 1 to [`NAME_LEN`] bytes of UTF-8, no NUL.
    pub name: String,
    /// Packed version (see [`crate::manifest::pack_version`]).
    pub version: u32,
    /// Pad the payload to exactly this many bytes (a fixed pseudo-random fill).
    pub pad_to: Option<u32>,
}

/// Why an ELF cannot become an image.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// `EI_CLASS` is not `ELFCLASS64`.
    #[error("not a 64-bit ELF (EI_CLASS {0})")]
    NotElf64(u8),
    /// `EI_DATA` is not `ELFDATA2LSB`.
    #[error("not a little-endian ELF (EI_DATA {0})")]
    NotLittleEndian(u8),
    /// `e_machine` is not `EM_RISCV`.
    #[error("not a RISC-V ELF (e_machine {0})")]
    NotRiscv(u16),
    /// `e_type` is not `ET_EXEC`.
    #[error("not an executable ELF (e_type {0} {name}, want ET_EXEC)", name = header::et_to_str(*.0))]
    NotExecutable(u16),
    /// Part of the file lies past its end.
    #[error("truncated: {what} extends to byte {end} of a {len}-byte file")]
    Truncated {
        /// What was cut off, e.g. "segment 1".
        what: String,
        /// Where it ends.
        end: u128,
        /// File length.
        len: usize,
    },
    /// goblin or a table size refused the file.
    #[error("malformed ELF: {0}")]
    Malformed(String),
    /// Nothing to load.
    #[error("no PT_LOAD segments")]
    NoLoadSegments,
    /// A segment has more file bytes than memory.
    #[error("segment {index}: p_filesz {filesz:#x} is larger than p_memsz {memsz:#x}")]
    FileSizeOverMemSize {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A segment (by `p_paddr`, `p_memsz`) is not inside the image region.
    #[error("segment {index} {span} lies outside the image region {IMAGE_REGION}")]
    OutsideRegion {
        /// Program header index.
        index: usize,
        /// `[p_paddr, p_paddr + p_memsz)`.
        span: Span,
    },
    /// Two segments share memory.
    #[error("PT_LOAD segments overlap: {0} and {1}")]
    Overlap(Span, Span),
    /// `e_entry` is not in any segment's file bytes.
    #[error("entry point {0:#x} is not in the file bytes of any PT_LOAD segment")]
    EntryOutside(u64),
    /// The name is empty.
    #[error("image name is empty")]
    NameEmpty,
    /// The name does not fit the manifest.
    #[error("image name {0:?} is longer than 16 bytes")]
    NameTooLong(String),
    /// The name would be cut short by the zero padding.
    #[error("image name {0:?} contains a NUL byte")]
    NameHasNul(String),
    /// `pad_to` is smaller than the payload.
    #[error("payload is {size} bytes, more than the pad size {pad_to}")]
    PadTooSmall {
        /// Payload bytes before padding.
        size: u64,
        /// Requested size.
        pad_to: u32,
    },
    /// The padded image no longer fits.
    #[error("padded image {0} lies outside the image region {IMAGE_REGION}")]
    PaddedOutsideRegion(Span),
    /// The finished manifest fails its own checks (a builder bug).
    #[error("built manifest is invalid: {0}")]
    Manifest(ManifestError),
}

/// Checks an image name and zero-pads it for the manifest.
pub fn encode_name(name: &str) -> Result<[u8; NAME_LEN], BuildError> {
    if name.is_empty() {
        return Err(BuildError::NameEmpty);
    }
    if name.len() > NAME_LEN {
        return Err(BuildError::NameTooLong(name.to_string()));
    }
    if name.contains('\0') {
        return Err(BuildError::NameHasNul(name.to_string()));
    }
    let mut b = [0u8; NAME_LEN];
    b[..name.len()].copy_from_slice(name.as_bytes());
    Ok(b)
}

/// A PT_LOAD segment that occupies memory.
struct Load {
    index: usize,
    paddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

impl Load {
    fn span(&self) -> Span {
        Span {
            start: self.paddr,
            len: self.memsz,
        }
    }
}

fn truncated(what: impl Into<String>, end: u128, len: usize) -> BuildError {
    BuildError::Truncated {
        what: what.into(),
        end,
        len,
    }
}

/// Checks that `count` entries of `entsize` bytes from `offset` lie in the file.
fn check_table(
    what: &str,
    offset: u64,
    count: u64,
    entsize: u64,
    len: usize,
) -> Result<(), BuildError> {
    let end = offset as u128 + count as u128 * entsize as u128;
    if end > len as u128 {
        return Err(truncated(what, end, len));
    }
    Ok(())
}

/// Parses and checks everything the builder relies on, before goblin reads
/// the rest, so that a cut-off file is reported as truncated.
fn parse_elf(bytes: &[u8]) -> Result<Elf<'_>, BuildError> {
    let len = bytes.len();
    if bytes.get(..4) != Some(&ELFMAG[..]) {
        return Err(BuildError::NotElf);
    }
    if let Some(&class) = bytes.get(EI_CLASS)
        && class != ELFCLASS64
    {
        return Err(BuildError::NotElf64(class));
    }
    if let Some(&data) = bytes.get(EI_DATA)
        && data != ELFDATA2LSB
    {
        return Err(BuildError::NotLittleEndian(data));
    }
    check_table("ELF header", 0, 1, EHDR_LEN, len)?;
    let h = Elf::parse_header(bytes).map_err(|e| BuildError::Malformed(e.to_string()))?;
    if h.e_machine != EM_RISCV {
        return Err(BuildError::NotRiscv(h.e_machine));
    }
    if h.e_type != ET_EXEC {
        return Err(BuildError::NotExecutable(h.e_type));
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);

    if h.e_phnum > 0 && h.e_phentsize as u64 != PHDR_LEN {
        return Err(BuildError::Malformed(format!(
            "e_phentsize {} (want {PHDR_LEN})",
            h.e_phentsize
        )));
    }
    check_table(
        "program header table",
        h.e_phoff,
        h.e_phnum as u64,
        PHDR_LEN,
        len,
    )?;
    let phdrs = ProgramHeader::parse(bytes, h.e_phoff as usize, h.e_phnum as usize, ctx)
        .map_err(|e| BuildError::Malformed(e.to_string()))?;
    for (i, ph) in phdrs.iter().enumerate() {
        let end = ph.p_offset as u128 + ph.p_filesz as u128;
        if ph.p_type == PT_LOAD && ph.p_filesz > 0 && end > len as u128 {
            return Err(truncated(format!("segment {i}"), end, len));
        }
    }

    // e_shoff == 0: no section headers at all.
    if h.e_shoff != 0 {
        if h.e_shentsize as u64 != SHDR_LEN {
            return Err(BuildError::Malformed(format!(
                "e_shentsize {} (want {SHDR_LEN})",
                h.e_shentsize
            )));
        }
        // e_shnum == 0 with a table means the count is in section 0.
        check_table(
            "section header table",
            h.e_shoff,
            (h.e_shnum as u64).max(1),
            SHDR_LEN,
            len,
        )?;
        let shdrs = SectionHeader::parse(bytes, h.e_shoff as usize, h.e_shnum as usize, ctx)
            .map_err(|e| BuildError::Malformed(e.to_string()))?;
        for (i, sh) in shdrs.iter().enumerate() {
            let end = sh.sh_offset as u128 + sh.sh_size as u128;
            if sh.sh_type != SHT_NOBITS && sh.sh_size > 0 && end > len as u128 {
                return Err(truncated(format!("section {i}"), end, len));
            }
        }
    }

    Elf::parse(bytes).map_err(|e| BuildError::Malformed(e.to_string()))
}

/// Turns a RISC-V ELF executable into an image.
///
/// The payload runs from the lowest `p_paddr` to the end of the highest
/// segment's file bytes, gaps zero-filled; the memory size also covers the
/// zero-initialised tails (`p_memsz > p_filesz`). Placement uses physical
/// addresses, since the boot ROM copies the payload to `p_paddr`.
pub fn build_from_elf(elf_bytes: &[u8], opts: &BuildOptions) -> Result<Image, BuildError> {
    let name = encode_name(&opts.name)?;
    let elf = parse_elf(elf_bytes)?;
    let loads = placed_loads(&elf)?;
    let entry = elf.header.e_entry;
    if !loads
        .iter()
        .any(|l| entry >= l.paddr && entry - l.paddr < l.filesz)
    {
        return Err(BuildError::EntryOutside(entry));
    }
    let (load_addr, mut payload, mut mem_size) = assemble(&loads, elf_bytes);
    if let Some(pad_to) = opts.pad_to {
        pad(&mut payload, &mut mem_size, load_addr, pad_to)?;
    }
    let manifest = Manifest {
        node_type: opts.node_type,
        version: opts.version,
        name,
        load_addr,
        entry,
        size: payload.len() as u32,
        mem_size: mem_size as u32,
        sha256: Sha256::digest(&payload).into(),
        key_id: [0; 8],
        signature: [0; 64],
    };
    manifest.check_placement().map_err(BuildError::Manifest)?;
    Ok(Image { manifest, payload })
}

/// The `PT_LOAD` segments that go into the image, sorted by address: each
/// inside the image region, none overlapping another.
fn placed_loads(elf: &Elf) -> Result<Vec<Load>, BuildError> {
    let mut loads = Vec::new();
    for (index, ph) in elf.program_headers.iter().enumerate() {
        if ph.p_type != PT_LOAD {
            continue;
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(BuildError::FileSizeOverMemSize {
                index,
                filesz: ph.p_filesz,
                memsz: ph.p_memsz,
            });
        }
        if ph.p_memsz == 0 {
            continue;
        }
        if ph.p_filesz == 0 && memory::in_app_ram(ph.p_paddr, ph.p_memsz) {
            // Zero-initialised app RAM (.bss, stack): the app clears it
            // itself, so it is neither sent nor measured.
            continue;
        }
        let load = Load {
            index,
            paddr: ph.p_paddr,
            offset: ph.p_offset,
            filesz: ph.p_filesz,
            memsz: ph.p_memsz,
        };
        if !memory::in_image_region(load.paddr, load.memsz) {
            return Err(BuildError::OutsideRegion {
                index,
                span: load.span(),
            });
        }
        loads.push(load);
    }
    if loads.is_empty() {
        return Err(BuildError::NoLoadSegments);
    }

    // Sorted by address, any overlap shows up between neighbours. Report the
    // pair in program header order so the message matches `readelf -l`.
    loads.sort_by_key(|l| l.paddr);
    for w in loads.windows(2) {
        if w[0].span().overlaps(&w[1].span()) {
            let (a, b) = if w[0].index < w[1].index {
                (&w[0], &w[1])
            } else {
                (&w[1], &w[0])
            };
            return Err(BuildError::Overlap(a.span(), b.span()));
        }
    }
    Ok(loads)
}

/// The payload (file bytes from the lowest address, gaps zero-filled), its
/// load address and the memory it spans. `loads` is sorted and non-empty.
fn assemble(loads: &[Load], elf_bytes: &[u8]) -> (u64, Vec<u8>, u64) {
    // All spans are inside the region, so these fit in u32 and the
    // allocation below is bounded by the region size.
    let load_addr = loads[0].paddr;
    let file_end = loads
        .iter()
        .map(|l| l.paddr + l.filesz)
        .max()
        .unwrap_or(load_addr);
    let mem_end = loads
        .iter()
        .map(|l| l.paddr + l.memsz)
        .max()
        .unwrap_or(load_addr);
    let mut payload = vec![0u8; (file_end - load_addr) as usize];
    for l in loads.iter().filter(|l| l.filesz > 0) {
        let at = (l.paddr - load_addr) as usize;
        let src = &elf_bytes[l.offset as usize..(l.offset + l.filesz) as usize];
        payload[at..at + src.len()].copy_from_slice(src);
    }
    (load_addr, payload, mem_end - load_addr)
}

/// Pads `payload` to `pad_to` bytes, growing `mem_size` to match.
fn pad(
    payload: &mut Vec<u8>,
    mem_size: &mut u64,
    load_addr: u64,
    pad_to: u32,
) -> Result<(), BuildError> {
    let size = payload.len() as u64;
    if size > pad_to as u64 {
        return Err(BuildError::PadTooSmall { size, pad_to });
    }
    let span = Span {
        start: load_addr,
        len: pad_to as u64,
    };
    if !memory::in_image_region(span.start, span.len) {
        return Err(BuildError::PaddedOutsideRegion(span));
    }
    // A fixed pseudo-random fill, not zeros: real code and data look random
    // to CAN's bit stuffing, while a run of zeros gets a stuff bit every
    // fifth bit, and the padding would then weigh more on the bus than code.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while payload.len() < pad_to as usize {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        payload.push(state as u8);
    }
    *mem_size = (*mem_size).max(pad_to as u64);
    Ok(())
}

impl Image {
    /// The same image with its payload padded to `pad_to` bytes (a fixed
    /// pseudo-random fill) and the
    /// manifest's sizes and digest updated: a realistic size for the same
    /// code (benchmarks, long sessions in tests).
    pub fn padded(&self, pad_to: u32) -> Result<Image, BuildError> {
        let mut payload = self.payload.clone();
        let mut mem_size = self.manifest.mem_size as u64;
        pad(&mut payload, &mut mem_size, self.manifest.load_addr, pad_to)?;
        let mut manifest = self.manifest;
        manifest.size = payload.len() as u32;
        manifest.mem_size = mem_size as u32;
        manifest.sha256 = Sha256::digest(&payload).into();
        manifest.check_placement().map_err(BuildError::Manifest)?;
        Ok(Image { manifest, payload })
    }
}

/// [`build_from_elf`] on a file; errors name the file.
pub fn build_file(path: &Path, opts: &BuildOptions) -> anyhow::Result<Image> {
    let cannot_read = || format!("{}: cannot read", path.display());
    // Before reading: a FIFO would block the read for good, and a device
    // such as /dev/zero never ends.
    if !std::fs::metadata(path).with_context(cannot_read)?.is_file() {
        anyhow::bail!("{}: not a regular file", path.display());
    }
    let bytes = std::fs::read(path).with_context(cannot_read)?;
    build_from_elf(&bytes, opts).with_context(|| path.display().to_string())
}

/// Parses `MAJOR.MINOR.PATCH` (major and minor at most 255, patch at most
/// 65535) into a packed version.
pub fn parse_version(s: &str) -> Result<u32, String> {
    let parts: Vec<&str> = s.split('.').collect();
    let [major, minor, patch] = parts[..] else {
        return Err(format!("version {s:?} is not MAJOR.MINOR.PATCH"));
    };
    let num = |what: &str, p: &str, max: u32| -> Result<u32, String> {
        // Digits only: u32::from_str would also take "+1".
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("version {s:?}: {what} {p:?} is not a number"));
        }
        match p.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!(
                "version {s:?}: {what} {p} is out of range (at most {max})"
            )),
        }
    };
    let major = num("major", major, 255)?;
    let minor = num("minor", minor, 255)?;
    let patch = num("patch", patch, 65535)?;
    Ok(pack_version(major as u8, minor as u8, patch as u16))
}

/// Formats a packed version as `MAJOR.MINOR.PATCH`.
pub fn format_version(v: u32) -> String {
    let (major, minor, patch) = unpack_version(v);
    format!("{major}.{minor}.{patch}")
}

/// Parses a byte count: plain (`262144`) or with a binary `K` or `M` suffix
/// (`256K`, `1M`).
pub fn parse_size(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1024u64),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "size {s:?} is not a number of bytes, optionally with K or M (e.g. 262144, 256K, 1M)"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn name_lossy(m: &Manifest) -> String {
    let end = m.name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
    String::from_utf8_lossy(&m.name[..end]).into_owned()
}

/// A manifest as `images inspect --json` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestJson {
    /// Node type name, e.g. `drive`.
    pub node_type: String,
    /// Image name.
    pub name: String,
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Load address, `0x…`.
    pub load_addr: String,
    /// Entry point, `0x…`.
    pub entry: String,
    /// Payload bytes.
    pub size: u32,
    /// Memory bytes.
    pub mem_size: u32,
    /// The manifest's payload SHA-256, hex.
    pub sha256: String,
    /// Whether the signature field is set.
    pub signed: bool,
    /// The signer's key id, hex; `None` when unsigned.
    pub key_id: Option<String>,
}

impl From<&Manifest> for ManifestJson {
    fn from(m: &Manifest) -> Self {
        ManifestJson {
            node_type: m.node_type.name().to_string(),
            name: name_lossy(m),
            version: format_version(m.version),
            load_addr: format!("{:#x}", m.load_addr),
            entry: format!("{:#x}", m.entry),
            size: m.size,
            mem_size: m.mem_size,
            sha256: hex(&m.sha256),
            signed: m.is_signed(),
            key_id: m.is_signed().then(|| hex(&m.key_id)),
        }
    }
}

/// An image as `images inspect --json` shows it: the manifest plus the
/// digest check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageJson {
    /// The manifest fields.
    #[serde(flatten)]
    pub manifest: ManifestJson,
    /// SHA-256 of the payload as it is, hex.
    pub payload_sha256: String,
    /// Whether `payload_sha256` equals the manifest's `sha256`.
    pub digest_ok: bool,
}

impl From<&Image> for ImageJson {
    fn from(img: &Image) -> Self {
        let actual = img.payload_sha256();
        ImageJson {
            manifest: ManifestJson::from(&img.manifest),
            payload_sha256: hex(&actual),
            digest_ok: actual == img.manifest.sha256,
        }
    }
}

/// A manifest as text, one `key: value` line per field.
pub fn render_manifest(m: &Manifest) -> String {
    let j = ManifestJson::from(m);
    format!(
        "type: {}\nname: {}\nversion: {}\nload_addr: {}\nentry: {}\nsize: {}\nmem_size: {}\nsha256: {}\nsigned: {}\n",
        j.node_type,
        j.name,
        j.version,
        j.load_addr,
        j.entry,
        j.size,
        j.mem_size,
        j.sha256,
        match &j.key_id {
            Some(id) => format!("yes (key id {id})"),
            None => "no".into(),
        },
    )
}

/// [`render_manifest`] plus a `digest:` line: `ok`, or `MISMATCH` with the
/// payload's actual digest.
pub fn render_image(img: &Image) -> String {
    let mut s = render_manifest(&img.manifest);
    match img.verify_digest() {
        Ok(()) => s.push_str("digest: ok\n"),
        Err(_) => s.push_str(&format!(
            "digest: MISMATCH (payload sha256 {})\n",
            hex(&img.payload_sha256())
        )),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Image {
        let payload = vec![0x13, 0, 0, 0, 0x6f, 0, 0, 0];
        let manifest = Manifest {
            node_type: NodeType::Xy,
            version: pack_version(2, 0, 7),
            name: encode_name("xy").unwrap(),
            load_addr: memory::IMAGE_BASE,
            entry: memory::IMAGE_BASE + 4,
            size: payload.len() as u32,
            mem_size: 0x100,
            sha256: Sha256::digest(&payload).into(),
            key_id: [0; 8],
            signature: [0; 64],
        };
        Image { manifest, payload }
    }

    #[test]
    fn versions() {
        let check = |s: &str, want: Result<(u8, u8, u16), &str>| {
            let got = parse_version(s);
            match want {
                Ok((a, b, c)) => {
                    assert_eq!(got, Ok(pack_version(a, b, c)), "{s}");
                    assert_eq!(format_version(got.unwrap()), s);
                }
                Err(needle) => {
                    let e = got.expect_err(s);
                    assert!(e.contains(needle), "{s}: {e}");
                }
            }
        };
        check("1.0.0", Ok((1, 0, 0)));
        check("255.255.65535", Ok((255, 255, 65535)));
        check("0.0.0", Ok((0, 0, 0)));
        check("256.0.0", Err("major 256 is out of range (at most 255)"));
        check("0.256.0", Err("minor 256 is out of range"));
        check(
            "0.0.65536",
            Err("patch 65536 is out of range (at most 65535)"),
        );
        check("0.0.99999999999", Err("out of range"));
        check("1.2", Err("not MAJOR.MINOR.PATCH"));
        check("1.2.3.4", Err("not MAJOR.MINOR.PATCH"));
        check("", Err("not MAJOR.MINOR.PATCH"));
        check("1..3", Err("minor \"\" is not a number"));
        check("1.+2.3", Err("is not a number"));
        check("v1.2.3", Err("major \"v1\" is not a number"));
    }

    #[test]
    fn sizes() {
        let check = |s: &str, want: Option<u32>| assert_eq!(parse_size(s).ok(), want, "{s}");
        check("262144", Some(262_144));
        check("256K", Some(262_144));
        check("256k", Some(262_144));
        check("1M", Some(1 << 20));
        check("0", Some(0));
        check("4095M", Some(4095 << 20));
        check("4096M", None);
        check("4294967296", None);
        check("", None);
        check("K", None);
        check("1G", None);
        check("1.5M", None);
        check("-1", None);
        check(" 1K", None);
        assert!(
            parse_size("12Q")
                .unwrap_err()
                .contains("e.g. 262144, 256K, 1M")
        );
    }

    #[test]
    fn names() {
        assert_eq!(&encode_name("drive").unwrap()[..6], b"drive\0");
        assert!(encode_name("sixteen-bytes-ok").is_ok());
        assert_eq!(encode_name(""), Err(BuildError::NameEmpty));
        assert_eq!(
            encode_name("seventeen-bytes-x"),
            Err(BuildError::NameTooLong("seventeen-bytes-x".into()))
        );
        // Nine characters, eighteen bytes.
        assert!(matches!(
            encode_name("ééééééééé"),
            Err(BuildError::NameTooLong(_))
        ));
        assert_eq!(
            encode_name("a\0b"),
            Err(BuildError::NameHasNul("a\0b".into()))
        );
    }

    #[test]
    fn spans() {
        assert_eq!(IMAGE_REGION.to_string(), "[0x80100000, 0x81e00000)");
        assert_eq!(
            Span {
                start: u64::MAX,
                len: 2
            }
            .to_string(),
            "[0xffffffffffffffff, 0x10000000000000001)"
        );
        let a = Span {
            start: 0x100,
            len: 0x100,
        };
        assert!(!a.overlaps(&Span {
            start: 0x200,
            len: 1
        }));
        assert!(a.overlaps(&Span {
            start: 0x1ff,
            len: 1
        }));
        assert!(a.overlaps(&Span {
            start: 0,
            len: 0x101
        }));
        assert!(!a.overlaps(&Span {
            start: 0,
            len: 0x100
        }));
    }

    #[test]
    fn image_round_trip_and_length_checks() {
        let img = sample();
        let bytes = img.to_bytes();
        assert_eq!(bytes.len(), MANIFEST_LEN + 8);
        assert_eq!(Image::parse(&bytes), Ok(img.clone()));
        assert_eq!(Image::parse_verified(&bytes), Ok(img.clone()));

        let expected = bytes.len() as u64;
        for cut in [0, 1, MANIFEST_LEN - 1] {
            assert_eq!(
                Image::parse(&bytes[..cut]),
                Err(ImageError::Truncated {
                    len: cut,
                    expected: MANIFEST_LEN as u64
                })
            );
        }
        for cut in [MANIFEST_LEN, bytes.len() - 1] {
            assert_eq!(
                Image::parse(&bytes[..cut]),
                Err(ImageError::Truncated { len: cut, expected })
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Image::parse(&long),
            Err(ImageError::TrailingBytes {
                len: long.len(),
                expected
            })
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(
            Image::parse(&bad),
            Err(ImageError::Manifest(ManifestError::BadMagic))
        );
    }

    #[test]
    fn tampered_payload_parses_but_fails_digest() {
        let mut bytes = sample().to_bytes();
        bytes[MANIFEST_LEN + 1] ^= 0x40;
        let img = Image::parse(&bytes).unwrap();
        let err = img.verify_digest().unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }));
        assert!(err.to_string().contains(&hex(&img.payload_sha256())));
        assert_eq!(Image::parse_verified(&bytes), Err(err));
        assert!(render_image(&img).contains(&format!(
            "digest: MISMATCH (payload sha256 {})",
            hex(&img.payload_sha256())
        )));
    }

    #[test]
    fn views() {
        let mut img = sample();
        let text = render_image(&img);
        for line in [
            "type: xy",
            "name: xy",
            "version: 2.0.7",
            "load_addr: 0x80100000",
            "entry: 0x80100004",
            "size: 8",
            "mem_size: 256",
            "signed: no",
            "digest: ok",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        img.manifest.signature[63] = 1;
        let j = ImageJson::from(&img);
        assert!(j.manifest.signed && j.digest_ok);
        assert_eq!(j.payload_sha256, j.manifest.sha256);
        let v: serde_json::Value = serde_json::to_value(&j).unwrap();
        assert_eq!(v["node_type"], "xy");
        assert_eq!(v["version"], "2.0.7");
        assert_eq!(v["load_addr"], "0x80100000");
        assert_eq!(v["digest_ok"], true);
        assert_eq!(serde_json::from_value::<ImageJson>(v).unwrap(), j);
    }
}
