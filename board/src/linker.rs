//! Linker scripts generated from the memory map, so that no address is
//! written twice. The guests' build scripts call [`script`].

extern crate std;
use crate::memory::*;
use std::format;
use std::string::String;

/// Which program a script links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// The boot ROM: code in flash, data, bss and stack in its own RAM.
    BootRom,
    /// An app, Rust or C: code, read-only data and `.data`'s initial
    /// values in the image region from its first byte; `.data` (copied
    /// there by the start-up code), `.bss`, stack and heap in the app RAM,
    /// outside the measured image, which the app never writes.
    App,
}

/// The guest page TCG translates and chains blocks within (riscv64).
const TCG_PAGE: u64 = 4096;

/// Stack size of both programs.
pub const STACK_SIZE: u64 = 0x8000;

/// What differs between the two programs' scripts: the memory regions,
/// where code and RAM go, `.data`'s and NOLOAD sections' load placement,
/// the heap symbols and the asserts.
fn layout(
    program: Program,
) -> (
    String,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    String,
) {
    match program {
        Program::BootRom => (
            format!(
                "    FLASH (rx) : ORIGIN = {FLASH_BASE:#x}, LENGTH = {FLASH_SIZE:#x}\n    RAM (rw)   : ORIGIN = {BOOTROM_RAM_BASE:#x}, LENGTH = {BOOTROM_RAM_SIZE:#x}"
            ),
            "FLASH",
            "RAM",
            " AT > FLASH",
            "",
            "",
            format!(
                "ASSERT(_start == {FLASH_BASE:#x}, \"_start must be the first byte of flash: QEMU jumps there\")\n\
                 ASSERT(__stack_top <= {:#x}, \"boot ROM RAM overflows into the image region\")",
                BOOTROM_RAM_BASE + BOOTROM_RAM_SIZE
            ),
        ),
        Program::App => (
            format!(
                "    IMAGE (rx) : ORIGIN = {IMAGE_BASE:#x}, LENGTH = {:#x}\n    APPRAM (rw) : ORIGIN = {APP_RAM_BASE:#x}, LENGTH = {:#x}",
                IMAGE_END - IMAGE_BASE,
                APP_RAM_END - APP_RAM_BASE
            ),
            "IMAGE",
            "APPRAM",
            " AT > IMAGE",
            " AT > APPRAM",
            "    __heap_start = ALIGN(__stack_top, 16);\n    __heap_end = ORIGIN(APPRAM) + LENGTH(APPRAM);\n",
            format!(
                "ASSERT(_start == {IMAGE_BASE:#x}, \"_start must be the image's first byte\")\n\
                 ASSERT(__heap_start <= __heap_end, \"app RAM overflows into the image region\")"
            ),
        ),
    }
}

/// The linker script for `program`.
pub fn script(program: Program) -> String {
    // `bss_at`: after a `.data` loaded elsewhere, NOLOAD sections would be
    // given load addresses past it too; an app's are its RAM, where the
    // image builder expects them.
    let (memory, code, ram, data_at, bss_at, heap, asserts) = layout(program);
    let notes = match program {
        Program::BootRom => "",
        Program::App => {
            "/* For Rust and C apps. Start-up code without the node SDK's: _start is
 * the entry, the image's first byte; set gp to __global_pointer$ and sp to
 * __stack_top, copy __data_load to [__data_start, __data_end), zero
 * [__bss_start, __bss_end). The heap is [__heap_start, __heap_end). */
"
        }
    };
    format!(
        r#"/* Generated from board::memory by board::linker. */
{notes}OUTPUT_ARCH(riscv)
ENTRY(_start)
MEMORY
{{
{memory}
}}
SECTIONS
{{
    .text : {{
        KEEP(*(.text.init))
        /* The loops run per byte or per block (`.text.hot`, and memcpy),
           together and within one page: TCG chains translated blocks only
           within a guest page, and a loop that crosses one looks its next
           block up on every pass. */
        __hot_start = .;
        *(.text.hot .text.hot.*)
        *(.text.memcpy .text.*compiler_builtins3mem6memcpy)
        __hot_end = .;
        *(.text .text.*)
    }} > {code}
    .rodata : ALIGN(8) {{
        *(.srodata .srodata.*)
        *(.rodata .rodata.*)
    }} > {code}
    .data : ALIGN(8) {{
        __data_start = .;
        __global_pointer$ = . + 0x800;
        *(.sdata .sdata.*)
        *(.data .data.*)
        . = ALIGN(8);
        __data_end = .;
    }} > {ram}{data_at}
    __data_load = LOADADDR(.data);
    .bss (NOLOAD) : ALIGN(8) {{
        __bss_start = .;
        *(.sbss .sbss.*)
        *(.bss .bss.*)
        *(COMMON)
        . = ALIGN(8);
        __bss_end = .;
    }} > {ram}{bss_at}
    .stack (NOLOAD) : ALIGN(16) {{
        . += {STACK_SIZE:#x};
        __stack_top = .;
    }} > {ram}{bss_at}
{heap}    /DISCARD/ : {{ *(.eh_frame .eh_frame_hdr) }}
}}
{asserts}
ASSERT(__hot_end == __hot_start || __hot_start / {TCG_PAGE} == (__hot_end - 1) / {TCG_PAGE}, ".text.hot crosses a page: TCG would not chain its loops' blocks")
"#
    )
}

/// Writes `program`'s script to `$OUT_DIR/link.x` and tells cargo to link
/// with it. For build scripts; does nothing unless building for riscv64.
pub fn emit(program: Program) {
    std::println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("riscv64") {
        return;
    }
    let out = std::path::PathBuf::from(
        std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"),
    );
    std::fs::write(out.join("link.x"), script(program)).expect("write link.x");
    std::println!("cargo:rustc-link-search={}", out.display());
    std::println!("cargo:rustc-link-arg=-Tlink.x");
}
