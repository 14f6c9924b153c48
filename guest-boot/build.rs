//! Links the boot ROM with a script generated from `board::memory`, and,
//! with signature checking, builds in the trusted public key.

use std::path::PathBuf;

/// Names the public key file images must be signed for.
const KEY_VAR: &str = "BOOTCAST_PUBLIC_KEY";

fn main() {
    board::linker::emit(board::linker::Program::BootRom);
    // A boot ROM that trusts no key, or a key that is no key, must not build.
    // A host build (the library's unit tests) builds no boot ROM.
    let guest = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("riscv64");
    if guest
        && std::env::var_os("CARGO_FEATURE_SIGNATURE_CHECK").is_some()
        && let Err(e) = trusted_key()
    {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn trusted_key() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed={KEY_VAR}");
    let path = std::env::var_os(KEY_VAR)
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!(
                "{KEY_VAR} is not set. The boot ROM verifies image signatures against a public key \
             built into it: set {KEY_VAR} to a public key file (KEYFILE.pub from `images keygen`), \
             build through `cargo xtask build`, which sets it to the key it signs with, or build \
             without signature checking (--no-default-features)."
            )
        })?;
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{KEY_VAR}={}: cannot read: {e}", path.display()))?;
    let key = images::signature::parse_public_key_file(&text)
        .map_err(|e| format!("{KEY_VAR}={}: {e}", path.display()))?;
    let id = images::signature::key_id(&key);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let code = format!(
        "/// The public key images must be signed with (from `{KEY_VAR}` at build time).\n\
         pub const TRUSTED_KEY: [u8; 32] = {key:?};\n\
         /// Its key id, for rejections.\n\
         pub const TRUSTED_KEY_ID: [u8; 8] = {id:?};\n"
    );
    std::fs::write(out.join("trusted_key.rs"), code)
        .map_err(|e| format!("cannot write trusted_key.rs: {e}"))
}
