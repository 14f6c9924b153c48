//! The bus port: link-coded frames over the UART or a virtio-console, with
//! an interrupt-driven sleep that wakes on received bytes or a deadline.
//!
//! Received bytes are moved from the device into a software FIFO whenever
//! the port waits for anything, sending included. A node blocked on sending
//! must keep receiving: the bus may be waiting for this very node to take
//! its frames before it can take the node's own. When the FIFO is full,
//! bytes are dropped and counted, as a controller's receive FIFO overruns.

use super::virtio::VirtioConsole;
use super::{clint, cpu, plic, uart};
use crate::memory::UART0_IRQ;
use crate::strap::Transport;
use proto::Frame;
use proto::filter::{AcceptanceFilter, FilterEntry};
use proto::link::{self, Decoder, MAX_ENCODED};

/// Bytes of received data the port buffers beyond the device's own.
const RX_FIFO: usize = 4096;

/// The device under the port.
enum Link {
    Uart,
    Virtio(VirtioConsole),
}

impl Link {
    fn has_data(&self) -> bool {
        match self {
            Link::Uart => uart::has_data(),
            Link::Virtio(v) => v.has_data(),
        }
    }

    fn try_read(&mut self) -> Option<u8> {
        match self {
            Link::Uart => uart::try_read(),
            Link::Virtio(v) => v.try_read(),
        }
    }

    fn can_write(&mut self) -> bool {
        match self {
            Link::Uart => uart::can_write(),
            Link::Virtio(v) => v.can_write(),
        }
    }

    fn tx_idle(&mut self) -> bool {
        match self {
            Link::Uart => uart::tx_idle(),
            Link::Virtio(v) => v.tx_idle(),
        }
    }

    /// Hands the device what it takes now of `bytes`.
    fn write(&mut self, bytes: &[u8]) -> usize {
        match self {
            Link::Uart => {
                let mut n = 0;
                while n < bytes.len() && uart::can_write() {
                    uart::write_byte(bytes[n]);
                    n += 1;
                }
                n
            }
            Link::Virtio(v) => v.write_bytes(bytes),
        }
    }

    /// The UART raises "transmitter empty" only when asked; virtio always
    /// interrupts when it hands a buffer back.
    fn tx_wakeup(&self, on: bool) {
        if let Link::Uart = self {
            uart::set_tx_interrupt(on);
        }
    }

    /// Clears the device's interrupt, then completes it at the PLIC.
    fn ack(&self) {
        if let Link::Virtio(v) = self {
            v.ack();
        }
        plic::claim_and_complete();
    }
}

/// A guest's connection to the bus.
pub struct BusPort {
    link: Link,
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
    /// Sets up the device `transport` names, routes its interrupt and
    /// enables wakeups. `None` when a virtio-console was asked for but is
    /// not there.
    pub fn open(transport: Transport) -> Option<BusPort> {
        let link = match transport {
            Transport::Uart => {
                uart::init();
                plic::enable(UART0_IRQ);
                Link::Uart
            }
            Transport::Virtio => {
                let v = VirtioConsole::open()?;
                plic::enable(v.irq);
                Link::Virtio(v)
            }
        };
        clint::set_deadline(u64::MAX);
        cpu::enable_wakeups();
        Some(BusPort {
            link,
            decoder: Decoder::new(),
            fifo: [0; RX_FIFO],
            head: 0,
            len: 0,
            link_errors: 0,
            rx_overruns: 0,
        })
    }

    /// Moves every byte the device holds into the software FIFO.
    fn pump(&mut self) {
        while let Some(b) = self.link.try_read() {
            if self.len == RX_FIFO {
                self.rx_overruns = self.rx_overruns.wrapping_add(1);
            } else {
                self.fifo[(self.head + self.len) % RX_FIFO] = b;
                self.len += 1;
            }
        }
    }

    /// Sleeps until `ready` holds, receiving meanwhile.
    fn wait_tx(&mut self, ready: fn(&mut Link) -> bool) {
        if ready(&mut self.link) {
            return;
        }
        self.link.tx_wakeup(true);
        loop {
            self.pump();
            if ready(&mut self.link) {
                break;
            }
            cpu::wait_for_interrupt();
            self.link.ack();
        }
        self.link.tx_wakeup(false);
    }

    fn send_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            self.wait_tx(Link::can_write);
            let n = self.link.write(bytes);
            bytes = &bytes[n..];
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

    /// Sleeps until every byte sent has left the device (before a handoff).
    pub fn flush(&mut self) {
        self.wait_tx(Link::tx_idle);
    }

    fn next_byte(&mut self) -> Option<u8> {
        if self.len > 0 {
            let b = self.fifo[self.head];
            self.head = (self.head + 1) % RX_FIFO;
            self.len -= 1;
            return Some(b);
        }
        self.link.try_read()
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
        // A byte that lands between this check and `wfi` still wakes it: both
        // devices' interrupts are level-triggered and stay pending.
        if self.len == 0 && clint::now() < deadline && !self.link.has_data() {
            cpu::wait_for_interrupt();
        }
        self.link.ack();
    }
}
