//! The bus port: link-coded frames over the UART or a virtio-console, with
//! an interrupt-driven sleep that wakes on received bytes or a deadline
//! (while frames stream in, on a batch of them).
//!
//! Received bytes are moved from the device into a software FIFO whenever
//! the port waits for anything, sending included. A node blocked on sending
//! must keep receiving: the bus may be waiting for this very node to take
//! its frames before it can take the node's own. When the FIFO is full,
//! bytes are dropped and counted, as a controller's receive FIFO overruns.
//!
//! On the virtual clock ([`Clock::Virtual`]) every frame the bridge sends
//! follows a time record, its delivery time, and the port holds the frame
//! until then. The bridge hands a sleeping node its frames early (its clock
//! cannot be moved to a frame's time from outside); held, they become
//! visible exactly at their time, and the node sleeps until then: nothing
//! it does can depend on a frame before the frame's time. What the port
//! sends it follows with a sync hint ([`cpu::clock_sync_hint`]): the QEMU
//! plugin stops the node there, so the bridge learns the frame's time from
//! the node's clock at that instruction.

use super::virtio::VirtioConsole;
use super::{clint, cpu, plic, uart};
use crate::fifo::Fifo;
use crate::memory::MTIME_HZ;
use crate::memory::UART0_IRQ;
use crate::strap::{Clock, Transport};
use proto::Frame;
use proto::filter::{AcceptanceFilter, FilterEntry};
use proto::link::{self, Decoder, MAX_ENCODED};

/// The device under the port.
enum Link {
    Uart,
    Virtio(VirtioConsole),
}

impl Link {
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

    /// Clears the device's interrupt, then completes it at the PLIC. Only
    /// when one is pending: these are device accesses, and most wakeups
    /// while frames stream in are the timer's.
    fn ack(&self) {
        if !cpu::external_pending() {
            return;
        }
        if let Link::Virtio(v) = self {
            v.ack();
        }
        plic::claim_and_complete();
    }
}

/// Nanoseconds per `mtime` tick: the link's times are nanoseconds.
const NS_PER_TICK: u64 = 1_000_000_000 / MTIME_HZ;

/// A received frame waiting for its delivery time.
#[derive(Clone, Copy)]
struct Held {
    frame: Frame,
    /// Its delivery time, in `mtime` ticks.
    due: u64,
}

/// A guest's connection to the bus.
pub struct BusPort {
    link: Link,
    decoder: Decoder,
    fifo: Fifo,
    /// Link frames dropped for a bad CRC, bad COBS, oversize and so on.
    pub link_errors: u32,
    /// Received bytes dropped because the software FIFO was full.
    pub rx_overruns: u32,
    /// The deadline the timer is armed for.
    armed: u64,
    /// Frames carry virtual times (the virtual clock).
    timed: bool,
    /// The frame received but not yet due.
    held: Option<Held>,
    /// The frame `recv` returned last, once it was held.
    out: Option<Frame>,
}

impl BusPort {
    /// Sets up the device `transport` names, routes its interrupt and
    /// enables wakeups. `None` when a virtio-console was asked for but is
    /// not there.
    pub fn open(transport: Transport, clock: Clock) -> Option<BusPort> {
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
        let mut port = BusPort {
            link,
            decoder: Decoder::new(),
            fifo: Fifo::new(),
            link_errors: 0,
            rx_overruns: 0,
            armed: u64::MAX,
            timed: clock == Clock::Virtual,
            held: None,
            out: None,
        };
        // A reset can cut the previous boot's last record short on the
        // link; a delimiter first ends it there, so it cannot swallow this
        // boot's first record (its filter). An idle link ignores it.
        port.send_bytes(&[0]);
        Some(port)
    }

    /// Moves what the device has received into the software FIFO. Long
    /// work calls it now and then: on the virtual clock frames are handed
    /// to a node while it is held, and a device whose buffers are all full
    /// cannot take them, which holds the whole fleet up.
    pub fn take_pending(&mut self) {
        self.pump();
    }

    /// Moves every byte the device holds into the software FIFO.
    fn pump(&mut self) {
        let mut dropped = 0;
        match &mut self.link {
            Link::Uart => {
                while let Some(b) = uart::try_read() {
                    dropped += self.fifo.put(&[b]);
                }
            }
            Link::Virtio(v) => loop {
                let bytes = v.rx_bytes();
                if bytes.is_empty() {
                    break;
                }
                let n = bytes.len();
                dropped += self.fifo.put(bytes);
                v.rx_consume(n);
            },
        }
        self.rx_overruns = self.rx_overruns.wrapping_add(dropped as u32);
    }

    /// Sleeps until `ready` holds, receiving meanwhile.
    fn wait_tx(&mut self, ready: fn(&mut Link) -> bool) {
        if ready(&mut self.link) {
            return;
        }
        self.link.tx_wakeup(true);
        // A deadline that has passed leaves the timer interrupt pending, and
        // `wfi` would return at once: disarm it while waiting to send.
        if self.armed <= clint::now() {
            self.arm(u64::MAX);
        }
        loop {
            self.pump();
            if ready(&mut self.link) {
                break;
            }
            // Received bytes must wake us too (see the module documentation).
            if let Link::Virtio(v) = &mut self.link
                && v.rx_wake_after(1)
            {
                continue;
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
        if self.timed {
            cpu::clock_sync_hint();
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

    /// The next complete frame among the bytes received so far, if any.
    /// Bad link frames are counted and skipped. Bytes the FIFO holds come
    /// first; the device's are decoded where they lie, a run at a time. The
    /// frame stays in the port's decoder until the next call.
    pub fn recv(&mut self) -> Option<&Frame> {
        if let Some(h) = self.held {
            if clint::now() < h.due {
                return None;
            }
            self.held = None;
            self.out = Some(h.frame);
            return self.out.as_ref();
        }
        loop {
            let ended = if !self.fifo.is_empty() {
                let (n, r) = self.decoder.push_slice(self.fifo.front());
                let ended = r.map(|r| r.is_ok());
                self.fifo.consume(n);
                ended
            } else {
                match &mut self.link {
                    // The 16550 hands over one byte per register read anyway.
                    Link::Uart => {
                        let b = uart::try_read()?;
                        self.decoder.push_slice(&[b]).1.map(|r| r.is_ok())
                    }
                    Link::Virtio(v) => {
                        let bytes = v.rx_bytes();
                        if bytes.is_empty() {
                            return None;
                        }
                        let (n, r) = self.decoder.push_slice(bytes);
                        let ended = r.map(|r| r.is_ok());
                        v.rx_consume(n);
                        ended
                    }
                }
            };
            match ended {
                Some(true) => {
                    if let Some(due) = self.due(self.decoder.frame_at()) {
                        self.held = Some(Held {
                            frame: *self.decoder.frame(),
                            due,
                        });
                        return None;
                    }
                    return Some(self.decoder.frame());
                }
                Some(false) => self.link_errors = self.link_errors.wrapping_add(1),
                None => {}
            }
        }
    }

    /// A received frame's delivery time in ticks, if it is still to come.
    fn due(&self, at_ns: Option<u64>) -> Option<u64> {
        let at = at_ns.filter(|_| self.timed)?;
        let due = at.div_ceil(NS_PER_TICK);
        (due > clint::now()).then_some(due)
    }

    fn arm(&mut self, deadline: u64) {
        clint::set_deadline(deadline);
        self.armed = deadline;
    }

    /// Arms the timer for `deadline` unless an earlier one that has not
    /// passed is armed. Callers move their deadline later after every batch
    /// of frames, and each timer write is a device access; waking before
    /// `deadline` only makes the caller sleep again.
    fn arm_by(&mut self, deadline: u64, now: u64) {
        if deadline < self.armed || self.armed <= now {
            self.arm(deadline);
        }
    }

    /// Sleeps until a byte arrives or `deadline` (mtime ticks) passes.
    pub fn sleep_until(&mut self, deadline: u64) {
        self.sleep(deadline, 1);
    }

    /// [`sleep_until`](Self::sleep_until) for while frames stream in: a
    /// virtio-console wakes the node only once `buffers` (at most
    /// [`RX_BUFS`](super::virtio::RX_BUFS)) receive buffers are filled,
    /// or at `gather_until`, whichever comes first, so that the frames are
    /// taken in batches, one wakeup for many. The device keeps reading
    /// into the buffers still free meanwhile, so frames wait in the node's
    /// memory rather than on the link. The 16550 holds too few bytes for
    /// this, and a device without event indices cannot do it: they sleep as
    /// usual.
    pub fn sleep_gathering(&mut self, deadline: u64, gather_until: u64, buffers: usize) {
        match &self.link {
            // On the virtual clock frames are handed to the node while it is
            // held, and a full ring cannot take more: take each at once.
            Link::Virtio(v) if v.can_batch() && !self.timed => {
                self.sleep(deadline.min(gather_until), buffers)
            }
            _ => self.sleep(deadline, 1),
        }
    }

    /// Sleeps until `deadline`, or received bytes (on a virtio-console: a
    /// `buffers`-th filled buffer).
    fn sleep(&mut self, deadline: u64, buffers: usize) {
        let now = clint::now();
        // A held frame: nothing received after it counts before it, so
        // sleep until it is due, with the device's bytes moved aside (a
        // 16550 holding bytes keeps its interrupt up).
        let held = self.held.map(|h| h.due);
        if held.is_some_and(|due| due <= now) {
            return;
        }
        if held.is_some() {
            self.pump();
        }
        let deadline = held.map_or(deadline, |due| due.min(deadline));
        self.arm_by(deadline, now);
        // An interrupt from before the request below would end the sleep at
        // once.
        self.link.ack();
        let waiting = match &mut self.link {
            _ if held.is_some() => false,
            Link::Uart => uart::has_data(),
            Link::Virtio(v) => v.rx_wake_after(buffers),
        };
        // Bytes that land between this check and `wfi` still wake it: both
        // devices' interrupts are level-triggered and stay pending.
        if (held.is_some() || self.fifo.is_empty()) && now < deadline && !waiting {
            cpu::wait_for_interrupt();
        }
        self.link.ack();
    }
}
