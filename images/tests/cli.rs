//! The `images` binary, run as a user would.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use images::build::{Image, hex};
use images::manifest::MANIFEST_LEN;

fn images(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_images"))
        .args(args)
        .output()
        .expect("run images")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs and expects failure with every `needle` in stderr.
fn fails(args: &[&str], needles: &[&str]) {
    let o = images(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded: {}", stdout(&o));
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in stderr:\n{err}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn build_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("drive.elf");
    let out = dir.path().join("drive.img");
    std::fs::write(&elf, ElfSpec::typical().write()).unwrap();

    let o = images(&[
        "build",
        s(&elf),
        "--type",
        "drive",
        "--name",
        "drive",
        "--version",
        "1.2.3",
        "--pad-to",
        "16K",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = Image::parse_verified(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(img.payload.len(), 16 * 1024);
    assert!(
        stdout(&o).contains(&hex(&img.manifest.sha256)),
        "{}",
        stdout(&o)
    );

    let o = images(&["inspect", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "type: drive",
        "name: drive",
        "version: 1.2.3",
        "load_addr: 0x80100000",
        "entry: 0x80100010",
        "size: 16384",
        "mem_size: 16384",
        &format!("sha256: {}", hex(&img.manifest.sha256)),
        "signed: no",
        "digest: ok",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }

    let o = images(&["inspect", "--json", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["node_type"], "drive");
    assert_eq!(v["name"], "drive");
    assert_eq!(v["version"], "1.2.3");
    assert_eq!(v["load_addr"], "0x80100000");
    assert_eq!(v["entry"], "0x80100010");
    assert_eq!(v["size"], 16384);
    assert_eq!(v["mem_size"], 16384);
    assert_eq!(v["sha256"], hex(&img.manifest.sha256));
    assert_eq!(v["payload_sha256"], hex(&img.manifest.sha256));
    assert_eq!(v["signed"], false);
    assert_eq!(v["digest_ok"], true);
}

#[test]
fn inspect_reports_tampering_and_refuses_non_images() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("xy.elf");
    let out = dir.path().join("xy.img");
    std::fs::write(&elf, ElfSpec::typical().write()).unwrap();
    let o = images(&[
        "build",
        s(&elf),
        "--type",
        "xy",
        "--name",
        "xy",
        "--version",
        "0.1.0",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let mut bytes = std::fs::read(&out).unwrap();
    bytes[MANIFEST_LEN] ^= 0xff;
    std::fs::write(&out, &bytes).unwrap();
    let actual = Image::parse(&bytes).unwrap().payload_sha256();
    let o = images(&["inspect", s(&out)]);
    assert!(!o.status.success(), "a tampered image fails inspect");
    assert!(
        stderr(&o).contains("payload digest mismatch"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains(&format!(
            "digest: MISMATCH (payload sha256 {})",
            hex(&actual)
        )),
        "{}",
        stdout(&o)
    );
    let o = images(&["inspect", "--json", s(&out)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["digest_ok"], false);
    assert_eq!(v["payload_sha256"], hex(&actual));

    bytes.push(0);
    std::fs::write(&out, &bytes).unwrap();
    fails(&["inspect", s(&out)], &[s(&out), "trailing bytes"]);
    bytes.truncate(100);
    std::fs::write(&out, &bytes).unwrap();
    fails(&["inspect", s(&out)], &[s(&out), "truncated"]);
    fails(&["inspect", s(&elf)], &[s(&elf), "bad manifest: bad magic"]);
    let missing = dir.path().join("missing.img");
    fails(
        &["inspect", s(&missing)],
        &[s(&missing), "cannot read", "os error 2"],
    );
}

#[test]
fn build_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    let good = dir.path().join("good.elf");
    std::fs::write(&good, ElfSpec::typical().write()).unwrap();
    let build = |elf: &Path, ty: &str, version: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "build",
            s(elf),
            "--type",
            ty,
            "--name",
            "n",
            "--version",
            version,
            "-o",
            s(&out),
        ]
        .map(String::from)
        .into();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let run = |args: Vec<String>, needles: &[&str]| {
        fails(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            needles,
        );
        assert!(!out.exists(), "no output on failure");
    };

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an ELF\n").unwrap();
    run(
        build(&text, "drive", "1.0.0", &[]),
        &[&format!("{}: not an ELF file", s(&text))],
    );

    let missing = dir.path().join("missing.elf");
    run(
        build(&missing, "drive", "1.0.0", &[]),
        &[&format!("{}: cannot read", s(&missing)), "os error 2"],
    );

    let x86 = dir.path().join("x86.elf");
    std::fs::write(
        &x86,
        ElfSpec::typical().with(|s| s.machine = EM_X86_64).write(),
    )
    .unwrap();
    run(
        build(&x86, "drive", "1.0.0", &[]),
        &[&format!("{}: not a RISC-V ELF (e_machine 62)", s(&x86))],
    );

    let cut = dir.path().join("cut.elf");
    std::fs::write(&cut, &ElfSpec::typical().write()[..1000]).unwrap();
    run(
        build(&cut, "drive", "1.0.0", &[]),
        &[&format!(
            "{}: truncated: segment 1 extends to byte 1064 of a 1000-byte file",
            s(&cut)
        )],
    );

    run(
        build(&good, "drive", "1.2", &[]),
        &["--version", "\"1.2\" is not MAJOR.MINOR.PATCH"],
    );
    run(
        build(&good, "drive", "256.0.0", &[]),
        &["--version", "major 256 is out of range"],
    );
    run(
        build(&good, "drive", "1.0.65536", &[]),
        &["--version", "patch 65536 is out of range"],
    );
    run(
        build(&good, "robot", "1.0.0", &[]),
        &["--type", "unknown node type \"robot\"", "op-panel"],
    );
    run(
        build(&good, "drive", "1.0.0", &["--pad-to", "12Q"]),
        &["--pad-to", "\"12Q\""],
    );
    run(
        build(&good, "drive", "1.0.0", &["--pad-to", "1K"]),
        &[s(&good), "more than the pad size 1024"],
    );
    fails(
        &[
            "build",
            s(&good),
            "--type",
            "drive",
            "--name",
            "seventeen-bytes-x",
            "--version",
            "1.0.0",
            "-o",
            s(&out),
        ],
        &["--name", "longer than 16 bytes"],
    );

    // The same arguments with good values work.
    let o = images(
        &build(&good, "op-panel", "255.255.65535", &["--pad-to", "262144"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        MANIFEST_LEN as u64 + 262_144
    );
}

#[test]
fn help_is_the_manual() {
    let o = images(&["--help"]);
    assert!(o.status.success());
    let h = stdout(&o);
    assert!(
        h.contains("build") && h.contains("Build an image from a RISC-V ELF executable"),
        "{h}"
    );
    assert!(
        h.contains("inspect") && h.contains("Print an image's manifest"),
        "{h}"
    );
    let h = stdout(&images(&["build", "--help"]));
    for flag in ["--type", "--name", "--version", "--pad-to", "--output"] {
        assert!(h.contains(flag), "{flag} not in\n{h}");
    }
}
