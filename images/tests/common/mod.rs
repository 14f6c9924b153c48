//! A test-only ELF writer: just enough ELF to exercise the image builder.
//!
//! Layout: ELF header, program headers, segment data (8-byte aligned),
//! `.shstrtab`, section headers (null, one PROGBITS per segment with data,
//! `.shstrtab`), the way linkers put the section table last.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use board::memory::IMAGE_BASE;
use images::build::BuildOptions;
use proto::NodeType;

pub const EM_RISCV: u16 = 243;
pub const EM_X86_64: u16 = 62;
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
pub const PT_GNU_STACK: u32 = 0x6474_e551;

/// One program header and the bytes it loads.
#[derive(Clone, Debug)]
pub struct Seg {
    pub p_type: u32,
    pub paddr: u64,
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    /// Overrides `p_filesz` (normally `data.len()`).
    pub filesz: Option<u64>,
}

/// A PT_LOAD at `paddr` (= vaddr) with `data` as file bytes.
pub fn seg(paddr: u64, data: Vec<u8>, memsz: u64) -> Seg {
    Seg {
        p_type: PT_LOAD,
        paddr,
        vaddr: paddr,
        data,
        memsz,
        filesz: None,
    }
}

/// `n` recognisable bytes.
pub fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[derive(Clone, Debug)]
pub struct ElfSpec {
    pub class64: bool,
    pub little: bool,
    pub machine: u16,
    pub e_type: u16,
    pub entry: u64,
    pub segments: Vec<Seg>,
}

impl ElfSpec {
    pub fn riscv(entry: u64, segments: Vec<Seg>) -> ElfSpec {
        ElfSpec {
            class64: true,
            little: true,
            machine: EM_RISCV,
            e_type: ET_EXEC,
            entry,
            segments,
        }
    }

    /// The usual app shape: text at the region base, rodata after a gap,
    /// data with bss.
    pub fn typical() -> ElfSpec {
        ElfSpec::riscv(
            IMAGE_BASE + 0x10,
            vec![
                seg(IMAGE_BASE, bytes(0x300, 1), 0x300),
                seg(IMAGE_BASE + 0x1000, bytes(0x40, 2), 0x40),
                seg(IMAGE_BASE + 0x2000, bytes(0x20, 3), 0x1000),
            ],
        )
    }

    pub fn with(mut self, f: impl FnOnce(&mut ElfSpec)) -> ElfSpec {
        f(&mut self);
        self
    }

    pub fn write(&self) -> Vec<u8> {
        let (ehsize, phentsize, shentsize) = if self.class64 {
            (64, 56, 64)
        } else {
            (52, 32, 40)
        };
        let align = |n: usize| n.next_multiple_of(8);

        // Lay out the file first, then write it.
        let phoff = ehsize;
        let mut at = align(phoff + phentsize * self.segments.len());
        let mut offsets = Vec::new();
        for s in &self.segments {
            offsets.push(at);
            at = align(at + s.data.len());
        }
        let mut shstrtab = b"\0.shstrtab\0".to_vec();
        let mut sections = Vec::new(); // (name offset, segment index)
        for (i, s) in self.segments.iter().enumerate() {
            if !s.data.is_empty() {
                sections.push((shstrtab.len(), i));
                shstrtab.extend_from_slice(format!(".s{i}\0").as_bytes());
            }
        }
        let shstrtab_off = at;
        let shoff = align(shstrtab_off + shstrtab.len());
        let shnum = sections.len() + 2;

        let mut w = W {
            b: Vec::new(),
            little: self.little,
            wide: self.class64,
        };
        w.b.extend_from_slice(b"\x7fELF");
        w.b.push(if self.class64 { 2 } else { 1 });
        w.b.push(if self.little { 1 } else { 2 });
        w.b.push(1); // EI_VERSION
        w.b.resize(16, 0);
        w.u16(self.e_type);
        w.u16(self.machine);
        w.u32(1);
        w.addr(self.entry);
        w.addr(phoff as u64);
        w.addr(shoff as u64);
        w.u32(0);
        w.u16(ehsize as u16);
        w.u16(phentsize as u16);
        w.u16(self.segments.len() as u16);
        w.u16(shentsize as u16);
        w.u16(shnum as u16);
        w.u16(shnum as u16 - 1);
        assert_eq!(w.b.len(), ehsize);

        for (s, &off) in self.segments.iter().zip(&offsets) {
            let filesz = s.filesz.unwrap_or(s.data.len() as u64);
            let flags = 7;
            if self.class64 {
                w.u32(s.p_type);
                w.u32(flags);
                w.addr(off as u64);
                w.addr(s.vaddr);
                w.addr(s.paddr);
                w.addr(filesz);
                w.addr(s.memsz);
                w.addr(8);
            } else {
                w.u32(s.p_type);
                w.addr(off as u64);
                w.addr(s.vaddr);
                w.addr(s.paddr);
                w.addr(filesz);
                w.addr(s.memsz);
                w.u32(flags);
                w.addr(8);
            }
        }
        for (s, &off) in self.segments.iter().zip(&offsets) {
            w.b.resize(off, 0);
            w.b.extend_from_slice(&s.data);
        }
        w.b.resize(shstrtab_off, 0);
        w.b.extend_from_slice(&shstrtab);
        w.b.resize(shoff, 0);

        w.b.resize(shoff + shentsize, 0); // null section
        for &(name, i) in &sections {
            let s = &self.segments[i];
            w.shdr(
                name as u32,
                1,
                s.vaddr,
                offsets[i] as u64,
                s.data.len() as u64,
            );
        }
        w.shdr(1, 3, 0, shstrtab_off as u64, shstrtab.len() as u64);
        assert_eq!(w.b.len(), shoff + shentsize * shnum);
        w.b
    }
}

struct W {
    b: Vec<u8>,
    little: bool,
    wide: bool,
}

impl W {
    fn put(&mut self, le: &[u8]) {
        if self.little {
            self.b.extend_from_slice(le);
        } else {
            self.b.extend(le.iter().rev());
        }
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    /// An address, offset or size: the class's word.
    fn addr(&mut self, v: u64) {
        if self.wide {
            self.put(&v.to_le_bytes());
        } else {
            self.u32(v as u32);
        }
    }
    fn shdr(&mut self, name: u32, sh_type: u32, addr: u64, offset: u64, size: u64) {
        self.u32(name);
        self.u32(sh_type);
        self.addr(if sh_type == 1 { 6 } else { 0 }); // SHF_ALLOC | SHF_EXECINSTR
        self.addr(addr);
        self.addr(offset);
        self.addr(size);
        self.u32(0);
        self.u32(0);
        self.addr(1);
        self.addr(0);
    }
}

pub fn opts() -> BuildOptions {
    BuildOptions {
        node_type: NodeType::Drive,
        name: "drive".into(),
        version: images::manifest::pack_version(1, 2, 3),
        pad_to: None,
    }
}
