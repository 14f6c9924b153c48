//! The memory map. Everything that places code or data in a guest reads it
//! from here.

/// QEMU `virt` maps pflash unit 0 here and its reset code jumps to it.
pub const FLASH_BASE: u64 = 0x2000_0000;
/// pflash unit 0 must be exactly this size.
pub const FLASH_SIZE: u64 = 32 * 1024 * 1024;

/// Start of guest RAM.
pub const RAM_BASE: u64 = 0x8000_0000;
/// Guest RAM size (`-m 32M`). Untouched RAM costs the host nothing.
pub const RAM_SIZE: u64 = 32 * 1024 * 1024;
/// QEMU places the device tree in the last 2 MiB-aligned block below the end
/// of RAM and copies it again at every reset, so nothing else may live there.
pub const FDT_RESERVED: u64 = 2 * 1024 * 1024;

/// Strapping page: identity words written by QEMU's generic loader.
pub const STRAP_BASE: u64 = RAM_BASE;
/// Size of the strapping page.
pub const STRAP_SIZE: u64 = 0x1000;
/// Handoff page: the boot ROM's record for the app, and state kept across
/// warm reboots.
pub const HANDOFF_BASE: u64 = STRAP_BASE + STRAP_SIZE;
/// Size of the handoff page.
pub const HANDOFF_SIZE: u64 = 0x1000;
/// The boot ROM's own RAM: `.data`, `.bss` and stack.
pub const BOOTROM_RAM_BASE: u64 = HANDOFF_BASE + HANDOFF_SIZE;
/// Size of the boot ROM's RAM.
pub const BOOTROM_RAM_SIZE: u64 = 0x3_E000;
/// An app's zero-initialised memory (`.bss`, stack): outside the image,
/// so the loaded bytes stay exactly as measured while the app runs.
pub const APP_RAM_BASE: u64 = BOOTROM_RAM_BASE + BOOTROM_RAM_SIZE;
/// End (exclusive) of the app's RAM.
pub const APP_RAM_END: u64 = IMAGE_BASE;
/// Images are loaded here and only here.
pub const IMAGE_BASE: u64 = 0x8010_0000;
/// End (exclusive) of the image region.
pub const IMAGE_END: u64 = RAM_BASE + RAM_SIZE - FDT_RESERVED;

/// 16550 UART.
pub const UART0_BASE: u64 = 0x1000_0000;
/// The UART's interrupt source on the PLIC.
pub const UART0_IRQ: u32 = 10;
/// The first virtio-mmio transport slot.
pub const VIRTIO_MMIO_BASE: u64 = 0x1000_1000;
/// Bytes between slots.
pub const VIRTIO_MMIO_STRIDE: usize = 0x1000;
/// Slots on the virt board.
pub const VIRTIO_MMIO_SLOTS: usize = 8;
/// The first slot's interrupt; slot i has this plus i.
pub const VIRTIO_MMIO_IRQ_BASE: u32 = 1;
/// Platform-level interrupt controller.
pub const PLIC_BASE: u64 = 0x0C00_0000;
/// Core-local interruptor (timer).
pub const CLINT_BASE: u64 = 0x0200_0000;
/// `mtime` ticks per second.
pub const MTIME_HZ: u64 = 10_000_000;
/// `sifive,test` device: write 0x5555 to power off, 0x7777 to reset.
pub const TEST_BASE: u64 = 0x0010_0000;

/// Whether `[start, start + len)` lies inside the image region.
pub fn in_image_region(start: u64, len: u64) -> bool {
    within(start, len, IMAGE_BASE, IMAGE_END)
}

/// Whether `[start, start + len)` lies inside the app's RAM.
pub fn in_app_ram(start: u64, len: u64) -> bool {
    within(start, len, APP_RAM_BASE, APP_RAM_END)
}

fn within(start: u64, len: u64, base: u64, end: u64) -> bool {
    start
        .checked_add(len)
        .is_some_and(|e| start >= base && e <= end)
}

const _: () = assert!(BOOTROM_RAM_BASE + BOOTROM_RAM_SIZE <= APP_RAM_BASE);
const _: () = assert!(APP_RAM_BASE < APP_RAM_END && APP_RAM_END <= IMAGE_BASE);
const _: () = assert!(IMAGE_BASE < IMAGE_END);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_bounds() {
        assert!(in_image_region(IMAGE_BASE, IMAGE_END - IMAGE_BASE));
        assert!(!in_image_region(IMAGE_BASE - 1, 1));
        assert!(!in_image_region(IMAGE_END - 1, 2));
        assert!(!in_image_region(u64::MAX, 2));
        assert!(!in_image_region(BOOTROM_RAM_BASE, 16));
        assert!(in_app_ram(APP_RAM_BASE, APP_RAM_END - APP_RAM_BASE));
        assert!(!in_app_ram(APP_RAM_END - 8, 16));
        assert!(!in_app_ram(BOOTROM_RAM_BASE, 16));
    }
}
