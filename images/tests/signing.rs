//! `images keygen`, `images sign` and `images verify`, run as a user would:
//! the good path, and every error a user can reach with a bad file or flag
//! (clear message naming the file, non-zero exit, nothing half-written).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use images::build::{Image, hex};
use images::manifest::MANIFEST_LEN;
use images::sign::SigningKey;

fn images(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_images"))
        .args(args)
        .output()
        .expect("run images")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = images(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Runs and expects failure with every `needle` in stderr, and no panic.
fn fails(args: &[&str], needles: &[&str]) {
    let o = images(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded: {}", stdout(&o));
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in stderr:\n{err}");
    }
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A built, unsigned image file in `dir`.
fn image_file(dir: &Path) -> PathBuf {
    let elf = dir.join("drive.elf");
    let out = dir.join("drive.img");
    std::fs::write(&elf, ElfSpec::typical().write()).unwrap();
    ok(&[
        "build",
        s(&elf),
        "--type",
        "drive",
        "--name",
        "drive",
        "--version",
        "1.2.3",
        "-o",
        s(&out),
    ]);
    out
}

/// `images keygen -o dir/name`; returns (secret, public) paths.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(name);
    let out = ok(&["keygen", "-o", s(&key)]);
    let public = dir.join(format!("{name}.pub"));
    assert!(out.contains("key id") && out.contains(s(&public)), "{out}");
    (key, public)
}

#[test]
fn keygen_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "k");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the secret key is the owner's only");
    let id = hex(&SigningKey::load(&key).unwrap().key_id());

    let img = image_file(dir.path());
    let signed = dir.path().join("signed.img");
    let out = ok(&["sign", "--key", s(&key), s(&img), "-o", s(&signed)]);
    assert!(out.contains(&format!("signed, key id {id}")), "{out}");
    let out = ok(&["verify", "--pubkey", s(&public), s(&signed)]);
    assert!(out.contains("ok: payload digest and signature"), "{out}");
    let out = ok(&["inspect", s(&signed)]);
    assert!(out.contains(&format!("signed: yes (key id {id})")), "{out}");
    // The input is untouched with -o; without it, it is signed in place.
    fails(
        &["verify", "--pubkey", s(&public), s(&img)],
        &["not signed"],
    );
    ok(&["sign", "--key", s(&key), s(&img)]);
    assert_eq!(
        std::fs::read(&img).unwrap(),
        std::fs::read(&signed).unwrap()
    );
    assert!(!dir.path().join("drive.img.tmp").exists());
}

#[test]
fn keygen_refuses_to_overwrite_and_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "k");
    let before = std::fs::read(&key).unwrap();
    fails(
        &["keygen", "-o", s(&key)],
        &[s(&key), "already exists; refusing to overwrite it"],
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // Only the .pub exists: still refused, and no secret key is left behind.
    let lone = dir.path().join("lone");
    std::fs::copy(&public, dir.path().join("lone.pub")).unwrap();
    fails(
        &["keygen", "-o", s(&lone)],
        &["lone.pub", "already exists; refusing to overwrite it"],
    );
    assert!(!lone.exists());
    let nowhere = dir.path().join("no/such/dir/k");
    fails(
        &["keygen", "-o", s(&nowhere)],
        &[s(&nowhere), "cannot create"],
    );
    fails(&["keygen"], &["--output <KEYFILE>"]);
}

#[test]
fn sign_refuses_bad_keys_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(d, "k");
    let img = image_file(d);
    let missing = d.join("missing.key");
    fails(
        &["sign", "--key", s(&missing), s(&img)],
        &[s(&missing), "cannot read key file", "os error 2"],
    );
    fails(
        &["sign", "--key", s(&public), s(&img)],
        &[
            s(&public),
            "this is a public key file; signing needs the secret key file",
        ],
    );
    let garbage = d.join("garbage.key");
    std::fs::write(&garbage, "hello\n").unwrap();
    fails(
        &["sign", "--key", s(&garbage), s(&garbage)],
        &[s(&garbage), "not a bootcast key file"],
    );
    let short = d.join("short.key");
    std::fs::write(&short, "bootcast-ed25519-secret-key-v1\nabcd\n").unwrap();
    fails(
        &["sign", "--key", s(&short), s(&img)],
        &[s(&short), "not 64 hexadecimal digits"],
    );
    let zero = d.join("zero.key");
    std::fs::write(
        &zero,
        format!("bootcast-ed25519-secret-key-v1\n{}\n", "0".repeat(64)),
    )
    .unwrap();
    fails(
        &["sign", "--key", s(&zero), s(&img)],
        &[s(&zero), "all zero"],
    );
    let binary = d.join("binary.key");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    fails(
        &["sign", "--key", s(&binary), s(&img)],
        &[s(&binary), "cannot read key file"],
    );

    // Images: missing, not an image, tampered (never signed: that would
    // bless the tampering).
    let no_img = d.join("none.img");
    fails(
        &["sign", "--key", s(&key), s(&no_img)],
        &[s(&no_img), "cannot read"],
    );
    fails(
        &["sign", "--key", s(&key), s(&key)],
        &[s(&key), "bad manifest: bad magic"],
    );
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[MANIFEST_LEN + 2] ^= 1;
    std::fs::write(&img, &bytes).unwrap();
    fails(
        &["sign", "--key", s(&key), s(&img)],
        &[s(&img), "refusing to sign", "payload digest mismatch"],
    );
    assert_eq!(std::fs::read(&img).unwrap(), bytes, "input untouched");
    let out_dir = d.join("no/such/dir/out.img");
    let good = image_file(d);
    fails(
        &["sign", "--key", s(&key), s(&good), "-o", s(&out_dir)],
        &[s(&out_dir), "cannot write"],
    );
    fails(&["sign", s(&good)], &["--key <KEYFILE>"]);
}

#[test]
fn verify_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(d, "k");
    let (_other, other_public) = keygen(d, "other");
    let img = image_file(d);
    ok(&["sign", "--key", s(&key), s(&img)]);
    let signed = std::fs::read(&img).unwrap();
    let id = hex(&SigningKey::load(&key).unwrap().key_id());

    // Keys.
    fails(
        &["verify", "--pubkey", s(&key), s(&img)],
        &[
            s(&key),
            "this is a secret key file; give the public key file",
        ],
    );
    let missing = d.join("missing.pub");
    fails(
        &["verify", "--pubkey", s(&missing), s(&img)],
        &[s(&missing), "cannot read key file"],
    );
    let not_a_point = d.join("bad.pub");
    std::fs::write(
        &not_a_point,
        format!("bootcast-ed25519-public-key-v1\n01{}\n", "0".repeat(62)),
    )
    .unwrap();
    fails(
        &["verify", "--pubkey", s(&not_a_point), s(&img)],
        &[s(&not_a_point), "not a valid Ed25519 key"],
    );
    let trailing = d.join("trailing.pub");
    let mut text = std::fs::read_to_string(&public).unwrap();
    text += "extra\n";
    std::fs::write(&trailing, text).unwrap();
    fails(
        &["verify", "--pubkey", s(&trailing), s(&img)],
        &[s(&trailing), "unexpected text after the key line"],
    );
    // Another key.
    fails(
        &["verify", "--pubkey", s(&other_public), s(&img)],
        &[
            s(&img),
            &format!("signed by key id {id}, not by the given key"),
        ],
    );
    // A changed manifest field: the version, as for a rollback.
    let mut b = signed.clone();
    b[12] ^= 1;
    std::fs::write(&img, &b).unwrap();
    fails(
        &["verify", "--pubkey", s(&public), s(&img)],
        &[s(&img), "bad signature"],
    );
    // A changed payload: the digest check comes first.
    let mut b = signed.clone();
    b[MANIFEST_LEN] ^= 1;
    std::fs::write(&img, &b).unwrap();
    fails(
        &["verify", "--pubkey", s(&public), s(&img)],
        &[s(&img), "payload digest mismatch"],
    );
    // Payload and digest changed, signature not.
    let mut i = Image::parse(&signed).unwrap();
    i.payload[0] ^= 1;
    i.manifest.sha256 = i.payload_sha256();
    std::fs::write(&img, i.to_bytes()).unwrap();
    fails(
        &["verify", "--pubkey", s(&public), s(&img)],
        &[s(&img), "bad signature"],
    );
    // Not an image, unsigned.
    fails(
        &["verify", "--pubkey", s(&public), s(&public)],
        &[s(&public), "truncated: the file is"],
    );
    let unsigned = image_file(d);
    fails(
        &["verify", "--pubkey", s(&public), s(&unsigned)],
        &[s(&unsigned), "not signed"],
    );
    fails(&["verify", s(&img)], &["--pubkey <PUBFILE>"]);
}
