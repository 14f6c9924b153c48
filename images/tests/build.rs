//! The ELF → image builder against synthesised ELFs.

mod common;

use board::memory::{IMAGE_BASE, IMAGE_END};
use common::*;
use images::build::{BuildError, Image, ImageError, Span, build_file, build_from_elf};
use images::manifest::{MANIFEST_LEN, unpack_version};
use proto::NodeType;
use sha2::{Digest, Sha256};

fn build(spec: &ElfSpec) -> Result<Image, BuildError> {
    build_from_elf(&spec.write(), &opts())
}

fn check_err(spec: ElfSpec, want: BuildError) {
    assert_eq!(build(&spec), Err(want), "{spec:#?}");
}

#[test]
fn typical_elf() {
    let spec = ElfSpec::typical();
    let img = build(&spec).unwrap();
    let m = &img.manifest;
    assert_eq!(m.node_type, NodeType::Drive);
    assert_eq!(m.name_str(), Some("drive"));
    assert_eq!(unpack_version(m.version), (1, 2, 3));
    assert_eq!(m.load_addr, IMAGE_BASE);
    assert_eq!(m.entry, IMAGE_BASE + 0x10);
    // Payload ends with the last file byte; bss only counts in mem_size.
    assert_eq!(m.size, 0x2020);
    assert_eq!(m.mem_size, 0x3000);
    assert_eq!(img.payload.len(), 0x2020);

    let mut want = vec![0u8; 0x2020];
    for s in &spec.segments {
        let at = (s.paddr - IMAGE_BASE) as usize;
        want[at..at + s.data.len()].copy_from_slice(&s.data);
    }
    assert_eq!(img.payload, want);
    assert!(
        img.payload[0x300..0x1000].iter().all(|&b| b == 0),
        "gap is zero-filled"
    );
    assert_eq!(m.sha256, <[u8; 32]>::from(Sha256::digest(&want)));
    assert!(!m.is_signed());

    let bytes = img.to_bytes();
    assert_eq!(bytes.len(), MANIFEST_LEN + 0x2020);
    assert_eq!(Image::parse_verified(&bytes), Ok(img));
}

#[test]
fn segment_order_and_other_headers_do_not_matter() {
    let base = build(&ElfSpec::typical()).unwrap();
    let reordered = ElfSpec::typical().with(|s| {
        s.segments.reverse();
        // Neither of these loads anything; the far-away one would be
        // outside the region if it counted.
        s.segments.insert(
            1,
            Seg {
                p_type: PT_NOTE,
                ..seg(0x1000, bytes(8, 9), 8)
            },
        );
        s.segments.push(Seg {
            p_type: PT_GNU_STACK,
            ..seg(0, vec![], 0)
        });
        s.segments.push(seg(0x4000_0000, vec![], 0));
    });
    assert_eq!(build(&reordered), Ok(base));
}

#[test]
fn leading_bss_and_adjacent_segments() {
    // A bss-only segment first: the payload starts with its zeros.
    let img = build(&ElfSpec::riscv(
        IMAGE_BASE + 0x100,
        vec![
            seg(IMAGE_BASE, vec![], 0x100),
            seg(IMAGE_BASE + 0x100, bytes(0x10, 4), 0x10),
        ],
    ))
    .unwrap();
    assert_eq!(img.manifest.load_addr, IMAGE_BASE);
    assert_eq!(img.payload.len(), 0x110);
    assert!(img.payload[..0x100].iter().all(|&b| b == 0));
    assert_eq!(img.manifest.mem_size, 0x110);

    // A segment ending exactly at the region end is inside.
    let img = build(&ElfSpec::riscv(
        IMAGE_END - 0x10,
        vec![seg(IMAGE_END - 0x10, bytes(0x10, 5), 0x10)],
    ))
    .unwrap();
    assert_eq!(img.manifest.load_addr, IMAGE_END - 0x10);
}

#[test]
fn refuses_wrong_kind_of_elf() {
    let t = ElfSpec::typical;
    check_err(
        t().with(|s| s.machine = EM_X86_64),
        BuildError::NotRiscv(62),
    );
    check_err(t().with(|s| s.class64 = false), BuildError::NotElf64(1));
    check_err(
        t().with(|s| s.little = false),
        BuildError::NotLittleEndian(2),
    );
    check_err(
        t().with(|s| s.e_type = ET_DYN),
        BuildError::NotExecutable(3),
    );
    assert_eq!(
        build_from_elf(b"#!/bin/sh\necho hi\n", &opts()),
        Err(BuildError::NotElf)
    );
    assert_eq!(build_from_elf(b"", &opts()), Err(BuildError::NotElf));
}

#[test]
fn refuses_bad_segments() {
    let t = ElfSpec::typical;
    check_err(t().with(|s| s.segments.clear()), BuildError::NoLoadSegments);
    check_err(
        t().with(|s| s.segments.iter_mut().for_each(|g| g.p_type = PT_NOTE)),
        BuildError::NoLoadSegments,
    );

    // Overlap by memory size (bss) counts, reported in program header order.
    check_err(
        t().with(|s| s.segments.push(seg(IMAGE_BASE + 0x2800, bytes(4, 6), 4))),
        BuildError::Overlap(
            Span {
                start: IMAGE_BASE + 0x2000,
                len: 0x1000,
            },
            Span {
                start: IMAGE_BASE + 0x2800,
                len: 4,
            },
        ),
    );
    check_err(
        t().with(|s| {
            s.segments
                .insert(0, seg(IMAGE_BASE + 0x2ff, bytes(2, 6), 2))
        }),
        BuildError::Overlap(
            Span {
                start: IMAGE_BASE + 0x2ff,
                len: 2,
            },
            Span {
                start: IMAGE_BASE,
                len: 0x300,
            },
        ),
    );

    check_err(
        t().with(|s| s.segments.push(seg(0x8000_0000, bytes(4, 7), 0x1000))),
        BuildError::OutsideRegion {
            index: 3,
            span: Span {
                start: 0x8000_0000,
                len: 0x1000,
            },
        },
    );
    check_err(
        t().with(|s| s.segments[2].memsz = IMAGE_END - (IMAGE_BASE + 0x2000) + 1),
        BuildError::OutsideRegion {
            index: 2,
            span: Span {
                start: IMAGE_BASE + 0x2000,
                len: IMAGE_END - (IMAGE_BASE + 0x2000) + 1,
            },
        },
    );
    check_err(
        t().with(|s| s.segments.push(seg(u64::MAX - 1, vec![], 4))),
        BuildError::OutsideRegion {
            index: 3,
            span: Span {
                start: u64::MAX - 1,
                len: 4,
            },
        },
    );

    check_err(
        t().with(|s| s.segments[1].memsz = 0x3f),
        BuildError::FileSizeOverMemSize {
            index: 1,
            filesz: 0x40,
            memsz: 0x3f,
        },
    );
}

#[test]
fn refuses_entry_outside_loaded_bytes() {
    let t = ElfSpec::typical;
    for entry in [
        IMAGE_BASE - 4,
        IMAGE_BASE + 0x300,  // just past text
        IMAGE_BASE + 0x800,  // in the gap
        IMAGE_BASE + 0x2020, // in bss
        IMAGE_END,
    ] {
        check_err(
            t().with(|s| s.entry = entry),
            BuildError::EntryOutside(entry),
        );
    }
    for entry in [
        IMAGE_BASE,
        IMAGE_BASE + 0x2ff,
        IMAGE_BASE + 0x1000,
        IMAGE_BASE + 0x201f,
    ] {
        assert!(build(&t().with(|s| s.entry = entry)).is_ok(), "{entry:#x}");
    }
}

#[test]
fn every_truncation_is_refused() {
    let elf = ElfSpec::typical().write();
    for cut in 0..elf.len() {
        assert!(
            build_from_elf(&elf[..cut], &opts()).is_err(),
            "cut at {cut} of {}",
            elf.len()
        );
    }

    // Typical cut points and what they report. Layout: header 64, three
    // program headers to 232, segment 0 data from 232.
    let what = |cut: usize| match build_from_elf(&elf[..cut], &opts()) {
        Err(BuildError::Truncated { what, len, .. }) => {
            assert_eq!(len, cut);
            what
        }
        other => panic!("cut at {cut}: {other:?}"),
    };
    assert_eq!(what(4), "ELF header");
    assert_eq!(what(63), "ELF header");
    assert_eq!(what(100), "program header table");
    assert_eq!(what(231), "program header table");
    assert_eq!(what(232 + 0x100), "segment 0");
    let text_end = 232 + 0x300;
    assert_eq!(what(text_end + 0x20), "segment 1");
    assert_eq!(what(elf.len() - 1), "section header table");
    // The section header table is last; `.shstrtab` sits just before it.
    let err = build_from_elf(&elf[..elf.len() - 5 * 64 - 8], &opts()).unwrap_err();
    assert!(matches!(err, BuildError::Truncated { .. }), "{err}");

    assert_eq!(
        build_from_elf(&elf[..1000], &opts())
            .unwrap_err()
            .to_string(),
        "truncated: segment 1 extends to byte 1064 of a 1000-byte file"
    );
}

#[test]
fn segment_claiming_bytes_past_the_file() {
    // p_filesz within p_memsz but beyond the end of the file.
    let spec = ElfSpec::typical().with(|s| {
        s.segments[2].filesz = Some(0x800);
    });
    let elf = spec.write();
    match build_from_elf(&elf, &opts()) {
        Err(BuildError::Truncated { what, len, .. }) => {
            assert_eq!(what, "segment 2");
            assert_eq!(len, elf.len());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pad_to() {
    let elf = ElfSpec::typical().write();
    let with_pad = |pad: u32| {
        build_from_elf(
            &elf,
            &images::build::BuildOptions {
                pad_to: Some(pad),
                ..opts()
            },
        )
    };
    let plain = build_from_elf(&elf, &opts()).unwrap();

    let img = with_pad(0x10000).unwrap();
    assert_eq!(img.payload.len(), 0x10000);
    assert_eq!(img.payload[..0x2020], plain.payload[..]);
    // The fill is fixed (the same bytes each build) and not a zero run.
    assert_eq!(with_pad(0x10000).unwrap(), img);
    assert!(img.payload[0x2020..].iter().filter(|&&b| b == 0).count() < 0x1000);
    assert_eq!(img.manifest.size, 0x10000);
    assert_eq!(img.manifest.mem_size, 0x10000);
    assert!(img.verify_digest().is_ok());
    assert_ne!(img.manifest.sha256, plain.manifest.sha256);

    // Padding within the bss keeps mem_size.
    let img = with_pad(0x2800).unwrap();
    assert_eq!((img.manifest.size, img.manifest.mem_size), (0x2800, 0x3000));
    // Padding to the exact size changes nothing.
    assert_eq!(with_pad(0x2020), Ok(plain));

    assert_eq!(
        with_pad(0x201f),
        Err(BuildError::PadTooSmall {
            size: 0x2020,
            pad_to: 0x201f
        })
    );
    let too_big = (IMAGE_END - IMAGE_BASE + 1) as u32;
    assert_eq!(
        with_pad(too_big),
        Err(BuildError::PaddedOutsideRegion(Span {
            start: IMAGE_BASE,
            len: too_big as u64
        }))
    );
    assert!(with_pad((IMAGE_END - IMAGE_BASE) as u32).is_ok());
}

#[test]
fn names_are_checked() {
    let elf = ElfSpec::typical().write();
    let with_name = |n: &str| {
        build_from_elf(
            &elf,
            &images::build::BuildOptions {
                name: n.into(),
                ..opts()
            },
        )
    };
    assert!(with_name("exactly-16-bytes").is_ok());
    assert_eq!(
        with_name("seventeen-bytes-x"),
        Err(BuildError::NameTooLong("seventeen-bytes-x".into()))
    );
    assert_eq!(with_name("a\0"), Err(BuildError::NameHasNul("a\0".into())));
    assert_eq!(with_name(""), Err(BuildError::NameEmpty));
}

#[test]
fn image_file_length_and_digest() {
    let bytes = build(&ElfSpec::typical()).unwrap().to_bytes();
    let expected = bytes.len() as u64;
    assert_eq!(
        Image::parse(&bytes[..bytes.len() - 1]),
        Err(ImageError::Truncated {
            len: bytes.len() - 1,
            expected
        })
    );
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 3]);
    assert_eq!(
        Image::parse(&long),
        Err(ImageError::TrailingBytes {
            len: long.len(),
            expected
        })
    );

    let mut tampered = bytes.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let img = Image::parse(&tampered).expect("a tampered image still parses");
    assert!(matches!(
        img.verify_digest(),
        Err(ImageError::DigestMismatch { .. })
    ));
    assert!(Image::parse_verified(&tampered).is_err());
}

#[test]
fn build_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.elf");
    std::fs::write(
        &path,
        ElfSpec::typical().with(|s| s.machine = EM_X86_64).write(),
    )
    .unwrap();
    let err = build_file(&path, &opts()).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!("{}: not a RISC-V ELF (e_machine 62)", path.display())
    );
    assert_eq!(
        err.downcast_ref::<BuildError>(),
        Some(&BuildError::NotRiscv(62))
    );

    let missing = dir.path().join("missing.elf");
    let err = format!("{:#}", build_file(&missing, &opts()).unwrap_err());
    assert!(
        err.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{err}"
    );

    // Neither a folder nor a device is read: a FIFO's read would never
    // return, nor would /dev/zero's end.
    for odd in [dir.path(), std::path::Path::new("/dev/null")] {
        let err = format!("{:#}", build_file(odd, &opts()).unwrap_err());
        assert_eq!(err, format!("{}: not a regular file", odd.display()));
    }

    std::fs::write(&path, ElfSpec::typical().write()).unwrap();
    assert!(build_file(&path, &opts()).is_ok());
}

#[test]
fn error_messages() {
    let t = ElfSpec::typical;
    let msg = |spec: ElfSpec| build(&spec).unwrap_err().to_string();
    assert_eq!(
        msg(t().with(|s| s.segments.push(seg(IMAGE_BASE + 0x2800, bytes(4, 6), 4)))),
        "PT_LOAD segments overlap: [0x80102000, 0x80103000) and [0x80102800, 0x80102804)"
    );
    assert_eq!(
        msg(t().with(|s| s.segments.push(seg(0x8000_0000, bytes(4, 7), 0x1000)))),
        "segment 3 [0x80000000, 0x80001000) lies outside the image region [0x80100000, 0x81e00000)"
    );
    assert_eq!(
        msg(t().with(|s| s.class64 = false)),
        "not a 64-bit ELF (EI_CLASS 1)"
    );
    assert_eq!(
        msg(t().with(|s| s.e_type = ET_DYN)),
        "not an executable ELF (e_type 3 DYN, want ET_EXEC)"
    );
    assert_eq!(
        msg(t().with(|s| s.entry = IMAGE_BASE + 0x800)),
        "entry point 0x80100800 is not in the file bytes of any PT_LOAD segment"
    );
}

/// Random corruption of a good ELF must give an error or a valid image,
/// never a panic (the builder also reads files it didn't make).
#[test]
fn corrupted_elves_never_panic() {
    let good = ElfSpec::typical().write();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut built = 0;
    // Few rounds: a corrupted address can make a payload of tens of MiB,
    // slow to hash in a debug build.
    const ROUNDS: usize = 2000;
    for _ in 0..ROUNDS {
        let mut elf = good.clone();
        // Mostly the headers, where the interesting fields are.
        for _ in 0..1 + next() % 4 {
            let r = next();
            let at = if r % 4 == 0 {
                (r >> 8) as usize % elf.len()
            } else {
                (r >> 8) as usize % 232
            };
            elf[at] = (r >> 32) as u8;
        }
        if let Ok(img) = build_from_elf(&elf, &opts()) {
            built += 1;
            // Hashing again is slow for the big ones; their digest was
            // computed by the same code anyway.
            let parsed = if img.payload.len() <= 0x10000 {
                Image::parse_verified
            } else {
                Image::parse
            };
            assert_eq!(parsed(&img.to_bytes()), Ok(img));
        }
    }
    // Some corruptions hit padding or don't matter; most must be refused.
    assert!(built > 0 && built < ROUNDS / 2, "{built}");
}

#[test]
fn zero_initialised_app_ram_is_allowed_but_never_sent() {
    let t = ElfSpec::typical;
    use board::memory::{APP_RAM_BASE, APP_RAM_END};
    let base = build_from_elf(&t().write(), &opts()).unwrap();
    // .bss and stack in app RAM: the image is the same as without them.
    let with_bss = t().with(|s| s.segments.push(seg(APP_RAM_BASE, vec![], 0x8000)));
    let img = build_from_elf(&with_bss.write(), &opts()).unwrap();
    assert_eq!(img, base);
    // Initialised bytes there would never reach the node: refused.
    check_err(
        t().with(|s| s.segments.push(seg(APP_RAM_BASE, bytes(16, 9), 16))),
        BuildError::OutsideRegion {
            index: 3,
            span: Span {
                start: APP_RAM_BASE,
                len: 16,
            },
        },
    );
    // Zero-initialised memory must still fit the app RAM.
    check_err(
        t().with(|s| s.segments.push(seg(APP_RAM_END - 8, vec![], 16))),
        BuildError::OutsideRegion {
            index: 3,
            span: Span {
                start: APP_RAM_END - 8,
                len: 16,
            },
        },
    );
}

#[test]
fn padding_an_image_keeps_its_code_and_fixes_its_manifest() {
    let img = build_from_elf(&ElfSpec::typical().write(), &opts()).unwrap();
    let padded = img.padded(64 * 1024).unwrap();
    assert_eq!(padded.payload.len(), 64 * 1024);
    assert_eq!(&padded.payload[..img.payload.len()], &img.payload[..]);
    assert_eq!(img.padded(64 * 1024).unwrap(), padded);
    let fill = &padded.payload[img.payload.len()..];
    assert!(fill.iter().filter(|&&b| b == 0).count() < fill.len() / 16);
    assert_eq!(padded.manifest.size, 64 * 1024);
    assert!(padded.manifest.mem_size >= 64 * 1024);
    padded.verify_digest().unwrap();
    assert_eq!(Image::parse(&padded.to_bytes()).unwrap(), padded);
    assert!(matches!(
        img.padded(10),
        Err(BuildError::PadTooSmall { .. })
    ));
    assert!(matches!(
        img.padded(u32::MAX),
        Err(BuildError::PaddedOutsideRegion(_))
    ));
}
