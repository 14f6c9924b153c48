//! A virtio-console on virtio-mmio (modern, version 2): the fast bus port.
//!
//! Port 0 only: queue 0 receives, queue 1 transmits. Receive buffers are
//! large, so one interrupt hands the guest many frames at once (a 16550
//! hands it 14 bytes). With `VIRTIO_F_EVENT_IDX` the driver can also ask
//! for an interrupt only once several buffers are filled, and is told when
//! the device wants to hear of new buffers. The rings themselves, and how
//! they are touched, are in `virtq`.

use super::virtq::{DESC_F_WRITE, Desc, Q, QN, RX_BUF, Rings, TX_BUF, need_event};
use crate::memory::{
    VIRTIO_MMIO_BASE, VIRTIO_MMIO_IRQ_BASE, VIRTIO_MMIO_SLOTS, VIRTIO_MMIO_STRIDE,
};

const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const DEVICE_FEATURES: usize = 0x010;
const DEVICE_FEATURES_SEL: usize = 0x014;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const STATUS: usize = 0x070;
const QUEUE_DESC: usize = 0x080;
const QUEUE_DRIVER: usize = 0x090;
const QUEUE_DEVICE: usize = 0x0a0;

const STATUS_ACKNOWLEDGE: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
/// VIRTIO_F_VERSION_1, bit 32: feature word 1, bit 0.
const FEATURE_VERSION_1: u32 = 1;
/// VIRTIO_F_EVENT_IDX, bit 29 of feature word 0.
const FEATURE_EVENT_IDX: u32 = 1 << 29;
const DEVICE_CONSOLE: u32 = 3;

pub use super::virtq::RX_BUFS;

fn fence() {
    // SAFETY: a fence only orders this hart's memory and I/O accesses, so
    // the device sees ring entries before the index and the notify.
    unsafe { core::arch::asm!("fence iorw, iorw") }
}

/// The driver of one virtio-console.
pub struct VirtioConsole {
    base: usize,
    /// Its interrupt on the PLIC.
    pub irq: u32,
    rings: Rings,
    /// Receive: last used index consumed, the buffer being read and where.
    rx_used: u16,
    rx_cur: Option<(u16, usize, usize)>,
    /// Receive: whether a notify went out since the reader last ran dry,
    /// and the available index the device last heard of.
    rx_notified: bool,
    rx_kicked: u16,
    /// Transmit: last used index reclaimed, descriptors in flight, and the
    /// available index the device last heard of.
    tx_used: u16,
    tx_in_flight: usize,
    tx_kicked: u16,
    /// `VIRTIO_F_EVENT_IDX` was negotiated.
    event_idx: bool,
}

/// The first virtio-mmio slot holding a modern virtio-console, and its base.
fn find_console() -> Option<(usize, usize)> {
    (0..VIRTIO_MMIO_SLOTS)
        .map(|i| (i, VIRTIO_MMIO_BASE as usize + i * VIRTIO_MMIO_STRIDE))
        .find(|&(_, b)| {
            // SAFETY: every slot of the virt board answers these reads.
            let (magic, version, id) = unsafe {
                (
                    ((b + MAGIC) as *const u32).read_volatile(),
                    ((b + VERSION) as *const u32).read_volatile(),
                    ((b + DEVICE_ID) as *const u32).read_volatile(),
                )
            };
            magic == 0x7472_6976 && version == 2 && id == DEVICE_CONSOLE
        })
}

impl VirtioConsole {
    fn read(&self, off: usize) -> u32 {
        // SAFETY: `base` is a virtio-mmio slot of the virt board, whose
        // registers are 32-bit and side-effect free to read (but for the
        // documented ones).
        unsafe { ((self.base + off) as *const u32).read_volatile() }
    }

    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`; writes drive the device as the virtio
        // specification says.
        unsafe { ((self.base + off) as *mut u32).write_volatile(v) }
    }

    fn write_addr(&self, off: usize, addr: u64) {
        self.write(off, addr as u32);
        self.write(off + 4, (addr >> 32) as u32);
    }

    /// Finds the virtio-console among the virtio-mmio slots and brings it up
    /// with every receive buffer posted. `None` if there is no usable
    /// console, or the rings were taken already (by an earlier call).
    pub fn open() -> Option<VirtioConsole> {
        let (slot, base) = find_console()?;
        let mut dev = VirtioConsole {
            base,
            irq: VIRTIO_MMIO_IRQ_BASE + slot as u32,
            rings: Rings::take()?,
            rx_used: 0,
            rx_cur: None,
            rx_notified: false,
            rx_kicked: RX_BUFS as u16,
            tx_used: 0,
            tx_in_flight: 0,
            tx_kicked: 0,
            event_idx: false,
        };
        dev.negotiate()?;
        dev.set_up_queues()?;
        dev.post_buffers();
        dev.write(
            STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
        fence();
        dev.write(QUEUE_NOTIFY, 0);
        Some(dev)
    }

    /// Resets the device and agrees on features: version 1 required, event
    /// indices if offered.
    fn negotiate(&mut self) -> Option<()> {
        self.write(STATUS, 0);
        self.write(STATUS, STATUS_ACKNOWLEDGE);
        self.write(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        self.write(DEVICE_FEATURES_SEL, 1);
        if self.read(DEVICE_FEATURES) & FEATURE_VERSION_1 == 0 {
            return None;
        }
        self.write(DEVICE_FEATURES_SEL, 0);
        let ours = self.read(DEVICE_FEATURES) & FEATURE_EVENT_IDX;
        self.event_idx = ours != 0;
        self.write(DRIVER_FEATURES_SEL, 0);
        self.write(DRIVER_FEATURES, ours);
        self.write(DRIVER_FEATURES_SEL, 1);
        self.write(DRIVER_FEATURES, FEATURE_VERSION_1);
        self.write(
            STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        (self.read(STATUS) & STATUS_FEATURES_OK != 0).then_some(())
    }

    /// Tells the device where both queues lie.
    fn set_up_queues(&self) -> Option<()> {
        for (i, q) in [(0, Q::Rx), (1, Q::Tx)] {
            self.write(QUEUE_SEL, i);
            if (self.read(QUEUE_NUM_MAX) as usize) < QN {
                return None;
            }
            self.write(QUEUE_NUM, QN as u32);
            let (desc, avail, used) = self.rings.addresses(q);
            self.write_addr(QUEUE_DESC, desc);
            self.write_addr(QUEUE_DRIVER, avail);
            self.write_addr(QUEUE_DEVICE, used);
            self.write(QUEUE_READY, 1);
        }
        Some(())
    }

    /// Fills the descriptor tables and offers every receive buffer.
    fn post_buffers(&self) {
        for i in 0..QN {
            if i < RX_BUFS {
                let desc = Desc {
                    addr: self.rings.buf_addr(Q::Rx, i),
                    len: RX_BUF as u32,
                    flags: DESC_F_WRITE,
                    next: 0,
                };
                self.rings.set_desc(Q::Rx, i, desc);
                self.rings.set_avail_entry(Q::Rx, i, i as u16);
            }
            let desc = Desc {
                addr: self.rings.buf_addr(Q::Tx, i),
                len: 0,
                flags: 0,
                next: 0,
            };
            self.rings.set_desc(Q::Tx, i, desc);
        }
        fence();
        self.rings.set_avail_idx(Q::Rx, RX_BUFS as u16);
    }

    /// The unread bytes of the buffer being read, taking the next one the
    /// device has filled when it is drained; empty when nothing waits. Mark
    /// what was used with [`rx_consume`](Self::rx_consume).
    #[inline]
    pub fn rx_bytes(&mut self) -> &[u8] {
        loop {
            if let Some((id, pos, len)) = self.rx_cur {
                if pos < len {
                    // SAFETY: the device handed buffer `id` back (it came
                    // out of the used ring) and it is offered again only by
                    // `give_back`, which needs `&mut self`, so not while
                    // this borrow lives.
                    return unsafe { self.rings.rx_bytes(id as usize, pos, len) };
                }
                self.give_back(id);
            }
            if self.rings.used_idx(Q::Rx) == self.rx_used {
                self.ran_dry();
                return &[];
            }
            fence();
            let e = self.rings.used_entry(Q::Rx, self.rx_used);
            self.rx_used = self.rx_used.wrapping_add(1);
            let id = (e.id as usize % RX_BUFS) as u16;
            self.rx_cur = Some((id, 0, (e.len as usize).min(RX_BUF)));
        }
    }

    /// Marks the first `n` bytes [`rx_bytes`](Self::rx_bytes) returned as
    /// read. A drained buffer goes back to the device at once.
    #[inline]
    pub fn rx_consume(&mut self, n: usize) {
        if let Some((id, pos, len)) = self.rx_cur {
            let pos = pos.saturating_add(n).min(len);
            self.rx_cur = Some((id, pos, len));
            if pos == len {
                self.give_back(id);
            }
        }
    }

    /// Posts receive buffer `id` again. The first one after the reader ran
    /// dry goes to the device at once, so it refills while we read on; later
    /// ones wait for [`ran_dry`](Self::ran_dry): one notify, not one each.
    fn give_back(&mut self, id: u16) {
        self.rx_cur = None;
        let idx = self.rings.avail_idx(Q::Rx);
        self.rings.set_avail_entry(Q::Rx, idx as usize, id);
        fence();
        self.rings.set_avail_idx(Q::Rx, idx.wrapping_add(1));
        if !self.rx_notified {
            self.rx_notified = true;
            self.kick_rx();
        }
    }

    /// Everything received has been read: tell the device about buffers
    /// given back since the last notify.
    fn ran_dry(&mut self) {
        self.kick_rx();
        self.rx_notified = false;
    }

    fn kick_rx(&mut self) {
        let new = self.rings.avail_idx(Q::Rx);
        let old = core::mem::replace(&mut self.rx_kicked, new);
        if self.must_notify(Q::Rx, new, old) {
            self.write(QUEUE_NOTIFY, 0);
        }
    }

    /// Whether the device must hear that queue `q`'s available index moved
    /// from `old` to `new`: with event indices, only if it asked to.
    fn must_notify(&self, q: Q, new: u16, old: u16) -> bool {
        if new == old {
            return false;
        }
        // The index must be visible before the device's request is read,
        // and before the notify.
        fence();
        if !self.event_idx {
            return true;
        }
        need_event(self.rings.avail_event(q), new, old)
    }

    /// Whether event indices were negotiated, so that
    /// [`rx_wake_after`](Self::rx_wake_after) can wait for several buffers.
    pub fn can_batch(&self) -> bool {
        self.event_idx
    }

    /// Asks for the receive interrupt once `n` (1 to `RX_BUFS`) buffers are
    /// filled that the driver has not taken; without event indices, at every
    /// buffer. Then whether received bytes wait already (`n` buffers, or one
    /// being read), so that the driver does not sleep through them.
    pub fn rx_wake_after(&mut self, n: usize) -> bool {
        let n = n.clamp(1, RX_BUFS) as u16;
        if self.event_idx {
            self.rings
                .set_used_event(Q::Rx, self.rx_used.wrapping_add(n - 1));
        }
        fence();
        self.rx_cur.is_some() || self.rings.used_idx(Q::Rx).wrapping_sub(self.rx_used) >= n
    }

    /// Takes back the transmit buffers the device is done with, and asks
    /// for an interrupt at the next one (a sender may be waiting for it).
    fn reclaim_tx(&mut self) {
        loop {
            while self.rings.used_idx(Q::Tx) != self.tx_used {
                self.tx_used = self.tx_used.wrapping_add(1);
                self.tx_in_flight -= 1;
            }
            if !self.event_idx {
                return;
            }
            self.rings.set_used_event(Q::Tx, self.tx_used);
            fence();
            // One may have finished before the device could see that.
            if self.rings.used_idx(Q::Tx) == self.tx_used {
                return;
            }
        }
    }

    /// Whether a transmit buffer is free.
    pub fn can_write(&mut self) -> bool {
        self.reclaim_tx();
        self.tx_in_flight < QN
    }

    /// Whether everything written has been taken by the device.
    pub fn tx_idle(&mut self) -> bool {
        self.reclaim_tx();
        self.tx_in_flight == 0
    }

    /// Queues up to one buffer of `bytes`; returns how many were taken.
    /// Buffers are used in turn: the console device completes transmits in
    /// order, so the oldest in flight is the next to come back.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> usize {
        if !self.can_write() || bytes.is_empty() {
            return 0;
        }
        let n = bytes.len().min(TX_BUF);
        let idx = self.rings.avail_idx(Q::Tx);
        let id = idx as usize % QN;
        // SAFETY: fewer than QN buffers are in flight and they are used in
        // turn, so buffer `id`, the oldest, has come back.
        let buf = unsafe { self.rings.tx_buf(id) };
        buf[..n].copy_from_slice(&bytes[..n]);
        self.rings.set_desc_len(Q::Tx, id, n as u32);
        self.rings.set_avail_entry(Q::Tx, id, id as u16);
        fence();
        let new = idx.wrapping_add(1);
        self.rings.set_avail_idx(Q::Tx, new);
        self.tx_in_flight += 1;
        let old = core::mem::replace(&mut self.tx_kicked, new);
        if self.must_notify(Q::Tx, new, old) {
            self.write(QUEUE_NOTIFY, 1);
        }
        n
    }

    /// Acknowledges the device's interrupt (before the PLIC's completion).
    pub fn ack(&self) {
        let s = self.read(INTERRUPT_STATUS);
        if s != 0 {
            self.write(INTERRUPT_ACK, s);
        }
    }
}
