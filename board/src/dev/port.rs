//! The bus port: link-coded frames over the UART, with an interrupt-driven
//! sleep that wakes on received bytes or a deadline.
//!
//! Received bytes are moved from the UART into a software FIFO whenever the
//! port waits for anything, sending included. A node blocked on sending must
//! keep receiving: the bus may be waiting for this very node to take its
//! frames before it can take the node's own. When the FIFO is full, bytes
//! are dropped and counted, as a controller's receive FIFO overruns.

use super::{clint, cpu, plic, uart};
use crate::memory::UART0_IRQ;
use proto::Frame;
use proto::filter::{AcceptanceFilter, FilterEntry};
use proto::link::{self, Decoder, MAX_ENCODED};

/// Bytes of received data the port buffers beyond the UART's FIFO.
const RX_FIFO: usize = 4096;

/// A guest's connection to the bus.
pub struct BusPort {
    decoder: Decoder,
    fifo: [u8; RX_FIFO],
    head: usize,
    len: usize,
    /// Link frames dropped for a bad CRC, bad COBS, oversize and so on.
    pub link_errors: u32,
    /// Received bytes dropped because the software FIFO was full.
    pub rx_overruns: u32,
}

impl BusPort {
    /// Sets up the UART, routes its interrupt and enables wakeups.
    pub fn open() -> BusPort {
        uart::init();
        plic::enable(UART0_IRQ);
        clint::set_deadline(u64::MAX);
        cpu::enable_wakeups();
        BusPort {
            decoder: Decoder::new(),
            fifo: [0; RX_FIFO],
            head: 0,
            len: 0,
            link_errors: 0,
            rx_overruns: 0,
        }
    }

    /// Moves every byte the UART holds into the software FIFO.
    fn pump(&mut self) {
        while let Some(b) = uart::try_read() {
            if self.len == RX_FIFO {
                self.rx_overruns = self.rx_overruns.wrapping_add(1);
            } else {
                self.fifo[(self.head + self.len) % RX_FIFO] = b;
                self.len += 1;
            }
        }
    }

    /// Sleeps until `ready()` holds, receiving meanwhile. The transmitter
    /// interrupt is on while waiting so that a free transmitter wakes us.
    fn wait_tx(&mut self, ready: fn() -> bool) {
        if ready() {
            return;
        }
        uart::set_tx_interrupt(true);
        loop {
            self.pump();
            if ready() {
                break;
            }
            cpu::wait_for_interrupt();
            plic::claim_and_complete();
        }
        uart::set_tx_interrupt(false);
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.wait_tx(uart::can_write);
            uart::write_byte(b);
        }
    }

    /// Sends one frame, sleeping while the transmitter is full.
    pub fn send(&mut self, frame: &Frame) {
        let mut buf = [0u8; MAX_ENCODED];
        let n = link::encode(frame, &mut buf);
        self.send_bytes(&buf[..n]);
    }

    /// Asks the port's controller to pass only frames matching `entries`,
    /// so the node is not woken for traffic it has no use for.
    pub fn set_filter(&mut self, entries: &[FilterEntry]) {
        let filter = AcceptanceFilter::new(entries).unwrap_or_default();
        let mut buf = [0u8; MAX_ENCODED];
        let n = link::encode_filter(&filter, &mut buf);
        self.send_bytes(&buf[..n]);
    }

    /// Sleeps until every byte sent has left the UART (before a handoff).
    pub fn flush(&mut self) {
        self.wait_tx(uart::tx_idle);
    }

    fn next_byte(&mut self) -> Option<u8> {
        if self.len > 0 {
            let b = self.fifo[self.head];
            self.head = (self.head + 1) % RX_FIFO;
            self.len -= 1;
            return Some(b);
        }
        uart::try_read()
    }

    /// The next complete frame among the bytes received so far, if any.
    /// Bad link frames are counted and skipped.
    pub fn recv(&mut self) -> Option<Frame> {
        while let Some(b) = self.next_byte() {
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
        if self.len == 0 && clint::now() < deadline && !uart::has_data() {
            cpu::wait_for_interrupt();
        }
        plic::claim_and_complete();
    }
}
