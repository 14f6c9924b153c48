//! The bus port: link-coded frames over the UART, with an interrupt-driven
//! sleep that wakes on received bytes or a deadline.

use super::{clint, cpu, plic, uart};
use crate::memory::UART0_IRQ;
use proto::link::{self, Decoder, MAX_ENCODED};
use proto::Frame;

/// A guest's connection to the bus.
pub struct BusPort {
    decoder: Decoder,
    /// Link frames dropped for a bad CRC, bad COBS, oversize and so on.
    pub link_errors: u32,
}

impl BusPort {
    /// Sets up the UART, routes its interrupt and enables wakeups.
    pub fn open() -> BusPort {
        uart::init();
        plic::enable(UART0_IRQ);
        clint::set_deadline(u64::MAX);
        cpu::enable_wakeups();
        BusPort { decoder: Decoder::new(), link_errors: 0 }
    }

    /// Sends one frame, sleeping while the transmitter is full.
    pub fn send(&mut self, frame: &Frame) {
        let mut buf = [0u8; MAX_ENCODED];
        let n = link::encode(frame, &mut buf);
        for &b in &buf[..n] {
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
    }

    /// Sleeps until every byte sent has left the UART (before a handoff).
    pub fn flush(&mut self) {
        uart::set_tx_interrupt(true);
        while !uart::tx_idle() {
            cpu::wait_for_interrupt();
            plic::claim_and_complete();
        }
        uart::set_tx_interrupt(false);
    }

    /// The next complete frame among the bytes received so far, if any.
    /// Bad link frames are counted and skipped.
    pub fn recv(&mut self) -> Option<Frame> {
        while let Some(b) = uart::try_read() {
            match self.decoder.push(b) {
                Some(Ok(frame)) => return Some(frame),
                Some(Err(_)) => self.link_errors = self.link_errors.wrapping_add(1),
                None => {}
            }
        }
        None
    }

    /// Sleeps until a byte arrives or `deadline` (mtime ticks) passes.
    pub fn sleep_until(&mut self, deadline: u64) {
        clint::set_deadline(deadline);
        // A byte that lands between this check and `wfi` still wakes it: the
        // UART's interrupt is level-triggered and stays pending.
        if clint::now() < deadline && !uart::has_data() {
            cpu::wait_for_interrupt();
        }
        plic::claim_and_complete();
    }
}
