//! A virtio-console on virtio-mmio (modern, version 2): the fast bus port.
//!
//! Port 0 only: queue 0 receives, queue 1 transmits. Receive buffers are
//! large, so one interrupt hands the guest many frames at once (a 16550
//! hands it 14 bytes). With `VIRTIO_F_EVENT_IDX` the driver can also ask
//! for an interrupt only once several buffers are filled, and is told when
//! the device wants to hear of new buffers.

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
const DESC_F_WRITE: u16 = 2;

/// Descriptors per queue.
const QN: usize = 16;
/// Receive buffers posted (at most `QN`). QEMU fills one per read of its
/// socket, however little it read: many buffers let it go on reading while
/// the driver gathers frames.
pub const RX_BUFS: usize = 16;
/// Bytes per receive buffer: many link frames per interrupt.
const RX_BUF: usize = 2048;
/// Bytes per transmit buffer: a whole link frame or more.
const TX_BUF: usize = 256;

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

#[repr(C, align(2))]
struct Avail {
    flags: u16,
    idx: u16,
    ring: [u16; QN],
    used_event: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UsedElem {
    id: u32,
    len: u32,
}

#[repr(C, align(4))]
struct Used {
    flags: u16,
    idx: u16,
    ring: [UsedElem; QN],
    avail_event: u16,
}

#[repr(C)]
struct Queue {
    desc: [Desc; QN],
    avail: Avail,
    used: Used,
}

impl Queue {
    const fn new() -> Queue {
        Queue {
            desc: [Desc {
                addr: 0,
                len: 0,
                flags: 0,
                next: 0,
            }; QN],
            avail: Avail {
                flags: 0,
                idx: 0,
                ring: [0; QN],
                used_event: 0,
            },
            used: Used {
                flags: 0,
                idx: 0,
                ring: [UsedElem { id: 0, len: 0 }; QN],
                avail_event: 0,
            },
        }
    }
}

/// Everything the device reads or writes, in the guest's own RAM.
#[repr(C, align(4096))]
struct Shared {
    rx: Queue,
    tx: Queue,
    rx_buf: [[u8; RX_BUF]; RX_BUFS],
    tx_buf: [[u8; TX_BUF]; QN],
}

static mut SHARED: Shared = Shared {
    rx: Queue::new(),
    tx: Queue::new(),
    rx_buf: [[0; RX_BUF]; RX_BUFS],
    tx_buf: [[0; TX_BUF]; QN],
};

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
    shared: &'static mut Shared,
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

/// Whether a device that asked to hear of index `event` must be told of a
/// move from `old` to `new` (the virtio specification's `vring_need_event`).
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
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
    /// with every receive buffer posted. Must be called once: it takes the
    /// shared rings. `None` if there is no usable console.
    pub fn open() -> Option<VirtioConsole> {
        let base = (0..VIRTIO_MMIO_SLOTS)
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
            });
        let (slot, base) = base?;
        // SAFETY: called once from a single-threaded guest, so this is the
        // only reference to the shared rings.
        let shared = unsafe { &mut *core::ptr::addr_of_mut!(SHARED) };
        let mut dev = VirtioConsole {
            base,
            irq: VIRTIO_MMIO_IRQ_BASE + slot as u32,
            shared,
            rx_used: 0,
            rx_cur: None,
            rx_notified: false,
            rx_kicked: RX_BUFS as u16,
            tx_used: 0,
            tx_in_flight: 0,
            tx_kicked: 0,
            event_idx: false,
        };
        dev.write(STATUS, 0);
        dev.write(STATUS, STATUS_ACKNOWLEDGE);
        dev.write(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        dev.write(DEVICE_FEATURES_SEL, 1);
        if dev.read(DEVICE_FEATURES) & FEATURE_VERSION_1 == 0 {
            return None;
        }
        dev.write(DEVICE_FEATURES_SEL, 0);
        let ours = dev.read(DEVICE_FEATURES) & FEATURE_EVENT_IDX;
        dev.event_idx = ours != 0;
        dev.write(DRIVER_FEATURES_SEL, 0);
        dev.write(DRIVER_FEATURES, ours);
        dev.write(DRIVER_FEATURES_SEL, 1);
        dev.write(DRIVER_FEATURES, FEATURE_VERSION_1);
        dev.write(
            STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        if dev.read(STATUS) & STATUS_FEATURES_OK == 0 {
            return None;
        }
        for q in 0..2u32 {
            dev.write(QUEUE_SEL, q);
            if (dev.read(QUEUE_NUM_MAX) as usize) < QN {
                return None;
            }
            dev.write(QUEUE_NUM, QN as u32);
            let queue = if q == 0 {
                &dev.shared.rx
            } else {
                &dev.shared.tx
            };
            let (desc, avail, used) = (
                core::ptr::addr_of!(queue.desc) as u64,
                core::ptr::addr_of!(queue.avail) as u64,
                core::ptr::addr_of!(queue.used) as u64,
            );
            dev.write_addr(QUEUE_DESC, desc);
            dev.write_addr(QUEUE_DRIVER, avail);
            dev.write_addr(QUEUE_DEVICE, used);
            dev.write(QUEUE_READY, 1);
        }
        for i in 0..QN {
            if i < RX_BUFS {
                dev.shared.rx.desc[i] = Desc {
                    addr: core::ptr::addr_of!(dev.shared.rx_buf[i]) as u64,
                    len: RX_BUF as u32,
                    flags: DESC_F_WRITE,
                    next: 0,
                };
                dev.shared.rx.avail.ring[i] = i as u16;
            }
            dev.shared.tx.desc[i] = Desc {
                addr: core::ptr::addr_of!(dev.shared.tx_buf[i]) as u64,
                len: 0,
                flags: 0,
                next: 0,
            };
        }
        fence();
        dev.shared.rx.avail.idx = RX_BUFS as u16;
        dev.write(
            STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
        fence();
        dev.write(QUEUE_NOTIFY, 0);
        Some(dev)
    }

    fn used_idx(q: &Queue) -> u16 {
        // SAFETY: the device writes `used.idx`; a volatile read sees it.
        unsafe { core::ptr::addr_of!(q.used.idx).read_volatile() }
    }

    /// The unread bytes of the buffer being read, taking the next one the
    /// device has filled when it is drained; empty when nothing waits. Mark
    /// what was used with [`rx_consume`](Self::rx_consume).
    #[inline]
    pub fn rx_bytes(&mut self) -> &[u8] {
        loop {
            if let Some((id, pos, len)) = self.rx_cur {
                if pos < len {
                    return &self.shared.rx_buf[id as usize][pos..len];
                }
                self.give_back(id);
            }
            if Self::used_idx(&self.shared.rx) == self.rx_used {
                self.ran_dry();
                return &[];
            }
            fence();
            let e = self.shared.rx.used.ring[self.rx_used as usize % QN];
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
        let slot = self.shared.rx.avail.idx as usize % QN;
        self.shared.rx.avail.ring[slot] = id;
        fence();
        self.shared.rx.avail.idx = self.shared.rx.avail.idx.wrapping_add(1);
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
        let new = self.shared.rx.avail.idx;
        let old = core::mem::replace(&mut self.rx_kicked, new);
        if self.must_notify(&self.shared.rx, new, old) {
            self.write(QUEUE_NOTIFY, 0);
        }
    }

    /// Whether the device must hear that queue `q`'s available index moved
    /// from `old` to `new`: with event indices, only if it asked to.
    fn must_notify(&self, q: &Queue, new: u16, old: u16) -> bool {
        if new == old {
            return false;
        }
        // The index must be visible before the device's request is read,
        // and before the notify.
        fence();
        if !self.event_idx {
            return true;
        }
        // SAFETY: the device writes `used.avail_event`; a volatile read sees
        // it.
        let event = unsafe { core::ptr::addr_of!(q.used.avail_event).read_volatile() };
        need_event(event, new, old)
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
            self.shared.rx.avail.used_event = self.rx_used.wrapping_add(n - 1);
        }
        fence();
        self.rx_cur.is_some() || Self::used_idx(&self.shared.rx).wrapping_sub(self.rx_used) >= n
    }

    /// Takes back the transmit buffers the device is done with, and asks
    /// for an interrupt at the next one (a sender may be waiting for it).
    fn reclaim_tx(&mut self) {
        loop {
            while Self::used_idx(&self.shared.tx) != self.tx_used {
                self.tx_used = self.tx_used.wrapping_add(1);
                self.tx_in_flight -= 1;
            }
            if !self.event_idx {
                return;
            }
            self.shared.tx.avail.used_event = self.tx_used;
            fence();
            // One may have finished before the device could see that.
            if Self::used_idx(&self.shared.tx) == self.tx_used {
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
        let id = self.shared.tx.avail.idx as usize % QN;
        self.shared.tx_buf[id][..n].copy_from_slice(&bytes[..n]);
        self.shared.tx.desc[id].len = n as u32;
        self.shared.tx.avail.ring[id] = id as u16;
        fence();
        let new = self.shared.tx.avail.idx.wrapping_add(1);
        self.shared.tx.avail.idx = new;
        self.tx_in_flight += 1;
        let old = core::mem::replace(&mut self.tx_kicked, new);
        if self.must_notify(&self.shared.tx, new, old) {
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
