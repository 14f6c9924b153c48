//! The node SDK for C: its header (cbindgen over `node-sdk`'s sources, with
//! the memory map from `board::memory`), its static library, the linker
//! script, and the C examples built with them.
//!
//! Into the artifacts folder: `sdk/include/bootcast.h`,
//! `sdk/lib/libbootcast.a`, `sdk/bootcast.ld`, and one ELF per example in
//! `examples/NAME.elf`. The header is also checked in
//! (`node-sdk/include/bootcast.h`, for readers and for C builds outside
//! xtask); `cargo xtask header` rewrites it, and `lint` fails when it is
//! not what the sources give.

use anyhow::{Context, Result, bail};
use board::memory;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The checked-in header, relative to the workspace root.
pub const HEADER: &str = "node-sdk/include/bootcast.h";
use crate::install::CC;
/// What every C app of the fleet is compiled for: the guests' ISA and ABI
/// (ISA spec 2.2, whose base ISA still has the CSR instructions: GCC 12
/// links libgcc for `rv64imac` only, not for `rv64imac_zicsr`); `medany`
/// because the image region lies above 2 GiB.
pub const CFLAGS: [&str; 10] = [
    "-march=rv64imac",
    "-misa-spec=2.2",
    "-mabi=lp64",
    "-mcmodel=medany",
    "-Os",
    "-ffreestanding",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
];

/// A C example in `examples/`: its folder and whether it links the SDK.
pub struct Example {
    /// Folder name under `examples/`, and the ELF's name.
    pub name: &'static str,
    /// Linked with `libbootcast.a` (whose `_start` calls `app_main`); else
    /// it brings its own start-up code and calls nothing of the SDK.
    pub uses_sdk: bool,
}

/// The examples xtask builds.
pub const EXAMPLES: [Example; 2] = [
    Example {
        name: "c-blinky",
        uses_sdk: true,
    },
    Example {
        name: "c-bare",
        uses_sdk: false,
    },
];

/// The memory map's C macros: (name after `BOOTCAST_`, value, what).
const MEMORY_DEFINES: [(&str, u64, &str); 19] = [
    (
        "FLASH_BASE",
        memory::FLASH_BASE,
        "pflash: the boot ROM; jumping here restarts it",
    ),
    ("RAM_BASE", memory::RAM_BASE, "start of RAM"),
    ("RAM_SIZE", memory::RAM_SIZE, "RAM size"),
    (
        "FDT_RESERVED",
        memory::FDT_RESERVED,
        "bytes at the top of RAM where QEMU puts the device tree",
    ),
    (
        "STRAP_BASE",
        memory::STRAP_BASE,
        "the strapping words (read-only to apps)",
    ),
    (
        "HANDOFF_BASE",
        memory::HANDOFF_BASE,
        "the boot ROM's handoff record; a0 at entry",
    ),
    (
        "BOOTROM_RAM_BASE",
        memory::BOOTROM_RAM_BASE,
        "the boot ROM's RAM: not the app's",
    ),
    (
        "APP_RAM_BASE",
        memory::APP_RAM_BASE,
        "app RAM: .data, .bss, stack, heap",
    ),
    (
        "APP_RAM_END",
        memory::APP_RAM_END,
        "end (exclusive) of app RAM",
    ),
    (
        "IMAGE_BASE",
        memory::IMAGE_BASE,
        "the image region: images load here, entry at its first byte with bootcast.ld",
    ),
    (
        "IMAGE_END",
        memory::IMAGE_END,
        "end (exclusive) of the image region",
    ),
    ("UART0_BASE", memory::UART0_BASE, "16550 UART"),
    (
        "UART0_IRQ",
        memory::UART0_IRQ as u64,
        "the UART's PLIC source",
    ),
    (
        "VIRTIO_MMIO_BASE",
        memory::VIRTIO_MMIO_BASE,
        "first virtio-mmio slot",
    ),
    (
        "VIRTIO_MMIO_STRIDE",
        memory::VIRTIO_MMIO_STRIDE as u64,
        "bytes between virtio-mmio slots",
    ),
    (
        "PLIC_BASE",
        memory::PLIC_BASE,
        "platform-level interrupt controller",
    ),
    (
        "CLINT_BASE",
        memory::CLINT_BASE,
        "core-local interruptor (mtime, mtimecmp)",
    ),
    (
        "TEST_BASE",
        memory::TEST_BASE,
        "sifive,test: write 0x5555 to power off, 0x7777 to reset",
    ),
    (
        "STACK_SIZE",
        board::linker::STACK_SIZE,
        "the stack bootcast.ld reserves in app RAM",
    ),
];

/// The memory map as C macros, from `board::memory`.
fn memory_defines() -> String {
    let mut s = String::from("\n/* The memory map (board::memory). */\n");
    for (name, value, what) in MEMORY_DEFINES {
        s += &format!("/** {what} */\n#define BOOTCAST_{name} {value:#x}ull\n");
    }
    s += &format!(
        "/** `bootcast_handoff.magic` of a valid record (\"BCH1\") */\n#define BOOTCAST_HANDOFF_MAGIC {:#x}u\n",
        board::handoff::MAGIC
    );
    s += &format!(
        "/** `bootcast_handoff.version` this header describes */\n#define BOOTCAST_HANDOFF_VERSION {}u\n",
        board::handoff::VERSION
    );
    s
}

/// The header, as cbindgen makes it from the SDK's sources.
pub fn header(root: &Path) -> Result<String> {
    let dir = root.join("node-sdk");
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .map_err(|e| anyhow::anyhow!("node-sdk/cbindgen.toml: {e}"))?;
    config.after_includes = Some(memory_defines());
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .context("cbindgen could not read node-sdk's sources")?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    let text = String::from_utf8(out).context("cbindgen wrote no UTF-8")?;
    Ok(parenthesise_negatives(&text))
}

/// `#define X -5` → `#define X (-5)`, so that `a-X` stays `a - (-5)`.
fn parenthesise_negatives(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for line in text.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("#define"), Some(name), Some(v))
                if v.starts_with('-') && v[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                s += &format!("#define {name} ({v})");
            }
            _ => s += line,
        }
        s.push('\n');
    }
    s
}

/// Rewrites the checked-in header (`cargo xtask header`).
pub fn write_header(root: &Path) -> Result<()> {
    let path = root.join(HEADER);
    std::fs::write(&path, header(root)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: wrote {HEADER}");
    Ok(())
}

/// Fails when the checked-in header is not what the sources give.
pub fn check_header(root: &Path) -> Result<()> {
    let want = header(root)?;
    let have = std::fs::read_to_string(root.join(HEADER)).unwrap_or_default();
    if have != want {
        bail!(
            "{HEADER} is not what node-sdk's sources give: run `cargo xtask header` and commit it"
        );
    }
    Ok(())
}

/// Builds the static library (the SDK with its C API, for the guest
/// target), writes the header and linker script, and compiles the examples
/// into `out`.
pub fn build(root: &Path, out: &Path) -> Result<()> {
    crate::cmd::run_checked(
        crate::cmd::cargo(root).args([
            "rustc",
            "--quiet",
            "--profile",
            "guest",
            "--target",
            crate::cmd::GUEST_TARGET,
            "-p",
            "node-sdk",
            "--lib",
            "--features",
            "c-api",
            "--crate-type",
            "staticlib",
        ]),
        "building the node SDK's static library",
    )?;
    let built = crate::cmd::target_dir(root)
        .join(crate::cmd::GUEST_TARGET)
        .join("guest/libnode_sdk.a");
    let sdk = out.join("sdk");
    let include = sdk.join("include");
    let lib_dir = sdk.join("lib");
    for d in [&include, &lib_dir, &out.join("examples")] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let lib = lib_dir.join("libbootcast.a");
    let bytes =
        std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    crate::cmd::write_if_changed(&lib, &bytes)?;
    crate::cmd::write_if_changed(&include.join("bootcast.h"), header(root)?.as_bytes())?;
    let script = sdk.join("bootcast.ld");
    crate::cmd::write_if_changed(
        &script,
        board::linker::script(board::linker::Program::App).as_bytes(),
    )?;
    for e in &EXAMPLES {
        let elf = out.join("examples").join(format!("{}.elf", e.name));
        compile(root, e, &include, &lib, &script, &elf)?;
    }
    Ok(())
}

/// The C sources of an example, in a stable order.
fn sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c" || x == "S"))
        .collect();
    v.sort();
    Ok(v)
}

/// The compiler command that builds `example` into `elf`.
pub fn compile_command(
    example: &Example,
    sources: &[PathBuf],
    include: &Path,
    lib: &Path,
    script: &Path,
    elf: &Path,
) -> Command {
    let mut c = Command::new(CC);
    c.args(CFLAGS)
        .arg("-Werror")
        .arg("-nostdlib")
        .arg("-I")
        .arg(include)
        .arg("-T")
        .arg(script)
        .arg("-Wl,--gc-sections")
        .arg("-o")
        .arg(elf)
        .args(sources);
    if example.uses_sdk {
        c.arg(lib);
    }
    c.arg("-lgcc");
    c
}

fn compile(
    root: &Path,
    example: &Example,
    include: &Path,
    lib: &Path,
    script: &Path,
    elf: &Path,
) -> Result<()> {
    let dir = root.join("examples").join(example.name);
    let srcs = sources(&dir)?;
    if srcs.is_empty() {
        bail!("{}: no C or assembly sources", dir.display());
    }
    let output = compile_command(example, &srcs, include, lib, script, elf)
        .output()
        .with_context(|| format!("cannot run {CC} (cargo xtask install installs it)"))?;
    if !output.status.success() {
        bail!(
            "building the C example {} failed ({}):\n{}",
            example.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // What the boot ROM will load: the image builder's checks, here too.
    let bytes = std::fs::read(elf).with_context(|| format!("cannot read {}", elf.display()))?;
    let opts = images::build::BuildOptions {
        node_type: proto::NodeType::Drive,
        name: example.name.to_string(),
        version: 1,
        pad_to: None,
    };
    images::build::build_from_elf(&bytes, &opts)
        .with_context(|| format!("{}: not a bootcast image", elf.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[test]
    fn negative_defines_get_parentheses() {
        let t = "#define A -5\n#define B 7\n#define C -x\nint -1;\n";
        assert_eq!(
            parenthesise_negatives(t),
            "#define A (-5)\n#define B 7\n#define C -x\nint -1;\n"
        );
    }

    #[test]
    fn the_header_declares_the_api_and_the_memory_map() {
        let h = header(&root()).unwrap();
        for needle in [
            "#ifndef BOOTCAST_H",
            "int32_t bootcast_init(void);",
            "int32_t bootcast_heartbeat(uint8_t status);",
            "int32_t bootcast_poll(struct bootcast_frame *out);",
            "void bootcast_reboot(void) __attribute__((noreturn));",
            "extern void app_main(const struct bootcast_handoff *handoff);",
            "typedef struct bootcast_handoff {",
            "#define BOOTCAST_IMAGE_BASE 0x80100000ull",
            "#define BOOTCAST_HANDOFF_BASE 0x80001000ull",
            "#define BOOTCAST_ERR_BUSY (-5)",
            "a0 = the address of",
        ] {
            assert!(h.contains(needle), "{needle:?} missing from the header");
        }
        // Only the C API's names: the Rust API's constants stay out.
        assert!(!h.contains("#define HEARTBEAT_MS"));
    }

    #[test]
    fn the_app_script_loads_data_from_the_image_into_app_ram() {
        use board::linker::{Program, script};
        let app = script(Program::App);
        // `.data` runs in app RAM from initial values in the image; what
        // takes no file bytes has app RAM for its load address too, where
        // the image builder leaves it out of the payload.
        assert!(
            app.contains("} > APPRAM AT > IMAGE\n    __data_load"),
            "{app}"
        );
        assert_eq!(app.matches("} > APPRAM AT > APPRAM").count(), 2, "{app}");
        assert!(app.contains("__heap_start = ALIGN(__stack_top, 16);"));
        assert!(app.contains(&format!("ASSERT(_start == {:#x}", memory::IMAGE_BASE)));
        let rom = script(Program::BootRom);
        assert!(rom.contains("} > RAM AT > FLASH\n    __data_load"), "{rom}");
        assert!(!rom.contains("__heap"));
    }

    #[test]
    fn the_checked_in_header_is_current() {
        check_header(&root()).unwrap();
    }

    #[test]
    fn only_the_sdk_example_links_the_library() {
        let e = &EXAMPLES;
        let cmd = |x: &Example| {
            compile_command(
                x,
                &[PathBuf::from("main.c")],
                Path::new("inc"),
                Path::new("libbootcast.a"),
                Path::new("bootcast.ld"),
                Path::new("out.elf"),
            )
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
        };
        let blinky = cmd(&e[0]);
        let bare = cmd(&e[1]);
        assert!(blinky.contains(&"libbootcast.a".to_string()));
        assert!(!bare.contains(&"libbootcast.a".to_string()));
        for args in [&blinky, &bare] {
            assert!(args.contains(&"-mcmodel=medany".to_string()));
            assert!(args.windows(2).any(|w| w == ["-T", "bootcast.ld"]));
        }
    }
}
