//! The debug console: the 16550, when the bus is on virtio. Lines go to the
//! node's log file on the host.

use super::{cpu, plic, uart};
use crate::memory::UART0_IRQ;
use core::sync::atomic::{AtomicBool, Ordering};

/// Whether the console is up (the bus is not on the UART).
static ON: AtomicBool = AtomicBool::new(false);

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Takes the UART for the console. Call only when the bus is elsewhere.
pub fn open() {
    uart::init();
    uart::set_rx_interrupt(false);
    plic::enable(UART0_IRQ);
    ON.store(true, Ordering::Relaxed);
}

fn put(b: u8) {
    if !uart::can_write() {
        uart::set_tx_interrupt(true);
        while !uart::can_write() {
            cpu::wait_for_interrupt();
            plic::claim_and_complete();
        }
        uart::set_tx_interrupt(false);
    }
    uart::write_byte(b);
}

/// Prints `s` (nothing when the console is not up).
pub fn print(s: &str) {
    if on() {
        s.bytes().for_each(put);
    }
}

/// Prints `v` in decimal.
pub fn print_u32(v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if on() {
        buf[i..].iter().copied().for_each(put);
    }
}

/// Prints `bytes` in hex.
pub fn print_hex(bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if on() {
        for &b in bytes {
            put(HEX[(b >> 4) as usize]);
            put(HEX[(b & 15) as usize]);
        }
    }
}
