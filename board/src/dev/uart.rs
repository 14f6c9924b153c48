//! The 16550 UART at `memory::UART0_BASE`, used as the bus port.

use crate::memory::UART0_BASE;

const RBR_THR: usize = 0;
const IER: usize = 1;
const FCR: usize = 2;
const LCR: usize = 3;
const LSR: usize = 5;
const SCR: usize = 7;

const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TX_IDLE: u8 = 0x40;
const IER_RX_AVAILABLE: u8 = 0x01;
const IER_THR_EMPTY: u8 = 0x02;

fn reg(offset: usize) -> *mut u8 {
    (UART0_BASE as usize + offset) as *mut u8
}

fn read(offset: usize) -> u8 {
    // SAFETY: the 16550 registers are at UART0_BASE on the virt board; byte
    // reads of them have no memory-safety effect.
    unsafe { reg(offset).read_volatile() }
}

fn write(offset: usize, value: u8) {
    // SAFETY: as in `read`; writes only change device state.
    unsafe { reg(offset).write_volatile(value) }
}

/// Sets the line up: 8N1, divisor 1, FIFOs on with a 14-byte trigger, and the
/// receive interrupt enabled.
///
/// The divisor only matters for the receive timeout interrupt, which QEMU
/// raises after four character times: at its reset divisor (9600 baud) that
/// is 4 ms per short frame. The FIFO is enabled once and never switched off:
/// switching it off while data flows loses bytes in QEMU 7.2.
pub fn init() {
    write(IER, 0);
    write(LCR, 0x80); // divisor latch access
    write(RBR_THR, 1);
    write(IER, 0);
    write(LCR, 0x03); // 8 data bits, no parity, 1 stop bit
    write(FCR, 0xC7); // FIFO on, clear both FIFOs, trigger at 14 bytes
    write(IER, IER_RX_AVAILABLE);
}

/// A received byte, if the FIFO holds one.
pub fn try_read() -> Option<u8> {
    has_data().then(|| read(RBR_THR))
}

/// Whether the receive FIFO holds a byte.
pub fn has_data() -> bool {
    read(LSR) & LSR_DATA_READY != 0
}

/// Whether the transmitter can take a byte now.
pub fn can_write() -> bool {
    read(LSR) & LSR_THR_EMPTY != 0
}

/// Hands a byte to the transmitter; the caller has checked [`can_write`].
pub fn write_byte(byte: u8) {
    write(RBR_THR, byte);
}

/// Whether every byte written has left the UART.
pub fn tx_idle() -> bool {
    read(LSR) & LSR_TX_IDLE != 0
}

/// Turns the "data received" interrupt on or off (a console has no input).
pub fn set_rx_interrupt(on: bool) {
    write(IER, if on { IER_RX_AVAILABLE } else { 0 });
}

/// Turns the "transmitter empty" interrupt on or off, so a sender waiting for
/// room can sleep in `wfi` instead of spinning.
pub fn set_tx_interrupt(on: bool) {
    write(
        IER,
        if on {
            IER_RX_AVAILABLE | IER_THR_EMPTY
        } else {
            IER_RX_AVAILABLE
        },
    );
}

/// Scratch-register test for the self-test: returns `true` if it holds values.
pub fn scratch_test() -> bool {
    [0x55u8, 0xAA, 0x00].iter().all(|&v| {
        write(SCR, v);
        read(SCR) == v
    })
}
