//! The virtio-console's two split virtqueues and their buffers, in the
//! guest's own RAM and shared with the device.
//!
//! The device writes the used rings and the receive buffers whenever it
//! likes, so no Rust reference to them may exist: [`Rings`] reaches them
//! only through a raw pointer, reading what the device writes and writing
//! what it reads with volatile accesses, and lends a buffer only while the
//! driver owns it. Ordering against the device is the driver's business
//! (fences around index updates).

use crate::take::TakeOnce;
use core::ptr::NonNull;

/// Descriptors per queue.
pub const QN: usize = 16;
/// Receive buffers posted (at most `QN`). QEMU fills one per read of its
/// socket, however little it read: many buffers let it go on reading while
/// the driver gathers frames.
pub const RX_BUFS: usize = 16;
/// Bytes per receive buffer: many link frames per interrupt.
pub const RX_BUF: usize = 2048;
/// Bytes per transmit buffer: a whole link frame or more.
pub const TX_BUF: usize = 256;
/// Descriptor flag: the device writes this buffer.
pub const DESC_F_WRITE: u16 = 2;

/// A descriptor: one buffer.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct Desc {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// `DESC_F_*` bits.
    pub flags: u16,
    /// Next descriptor of a chain (unused: one buffer per chain).
    pub next: u16,
}

#[repr(C, align(2))]
struct Avail {
    flags: u16,
    idx: u16,
    ring: [u16; QN],
    used_event: u16,
}

/// An entry of a used ring: which buffer came back, with how many bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UsedElem {
    /// The descriptor's index.
    pub id: u32,
    /// Bytes the device wrote into it.
    pub len: u32,
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

const EMPTY_DESC: Desc = Desc {
    addr: 0,
    len: 0,
    flags: 0,
    next: 0,
};

impl Queue {
    const fn new() -> Queue {
        Queue {
            desc: [EMPTY_DESC; QN],
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

/// Everything the device reads or writes. All zeros, so it lives in `.bss`.
/// Modern virtio asks only 16-byte alignment of a descriptor table (and less
/// of the rings); no page alignment, which would cost `TakeOnce` a page for
/// its flag.
#[repr(C)]
struct Shared {
    rx: Queue,
    tx: Queue,
    rx_buf: [[u8; RX_BUF]; RX_BUFS],
    tx_buf: [[u8; TX_BUF]; QN],
}

static SHARED: TakeOnce<Shared> = TakeOnce::new(Shared {
    rx: Queue::new(),
    tx: Queue::new(),
    rx_buf: [[0; RX_BUF]; RX_BUFS],
    tx_buf: [[0; TX_BUF]; QN],
});

/// One of the two queues.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Q {
    /// Queue 0: the device writes received bytes.
    Rx,
    /// Queue 1: the device reads bytes to send.
    Tx,
}

/// The shared memory, taken once.
pub struct Rings(NonNull<Shared>);

impl Rings {
    /// The rings, the first time; `None` after.
    pub fn take() -> Option<Rings> {
        SHARED.take().map(|s| Rings(NonNull::from(s)))
    }

    fn queue(&self, q: Q) -> *mut Queue {
        let s = self.0.as_ptr();
        // SAFETY: `s` points at the `Shared` taken once, valid for the rest
        // of the program; this computes a field's address, it reads nothing.
        unsafe {
            match q {
                Q::Rx => &raw mut (*s).rx,
                Q::Tx => &raw mut (*s).tx,
            }
        }
    }

    /// Addresses of queue `q`'s descriptor table, available ring and used
    /// ring, for the device's registers.
    pub fn addresses(&self, q: Q) -> (u64, u64, u64) {
        let p = self.queue(q);
        // SAFETY: as in `queue`: addresses only.
        unsafe {
            (
                &raw const (*p).desc as u64,
                &raw const (*p).avail as u64,
                &raw const (*p).used as u64,
            )
        }
    }

    /// Address of receive buffer `i` (or transmit buffer `i`).
    pub fn buf_addr(&self, q: Q, i: usize) -> u64 {
        let s = self.0.as_ptr();
        // SAFETY: as in `queue`: addresses only; indexing is bounds-checked.
        unsafe {
            match q {
                Q::Rx => &raw const (*s).rx_buf[i] as u64,
                Q::Tx => &raw const (*s).tx_buf[i] as u64,
            }
        }
    }

    /// Writes descriptor `i`, which the device reads.
    pub fn set_desc(&self, q: Q, i: usize, desc: Desc) {
        let p = self.queue(q);
        // SAFETY: a valid, aligned place in the taken rings (index checked);
        // a volatile write, since only the device reads it.
        unsafe { (&raw mut (*p).desc[i]).write_volatile(desc) }
    }

    /// Sets the length of descriptor `i`.
    pub fn set_desc_len(&self, q: Q, i: usize, len: u32) {
        let p = self.queue(q);
        // SAFETY: as in `set_desc`.
        unsafe { (&raw mut (*p).desc[i].len).write_volatile(len) }
    }

    /// The available index: the driver's own count of buffers offered.
    pub fn avail_idx(&self, q: Q) -> u16 {
        let p = self.queue(q);
        // SAFETY: as in `set_desc`; only the driver writes it.
        unsafe { (&raw const (*p).avail.idx).read_volatile() }
    }

    /// Publishes the available index (after a fence, for the entries).
    pub fn set_avail_idx(&self, q: Q, idx: u16) {
        let p = self.queue(q);
        // SAFETY: as in `set_desc`.
        unsafe { (&raw mut (*p).avail.idx).write_volatile(idx) }
    }

    /// Offers descriptor `id` in slot `slot % QN` of the available ring.
    pub fn set_avail_entry(&self, q: Q, slot: usize, id: u16) {
        let p = self.queue(q);
        // SAFETY: as in `set_desc`.
        unsafe { (&raw mut (*p).avail.ring[slot % QN]).write_volatile(id) }
    }

    /// Asks the device to interrupt once its used index passes `idx`.
    pub fn set_used_event(&self, q: Q, idx: u16) {
        let p = self.queue(q);
        // SAFETY: as in `set_desc`.
        unsafe { (&raw mut (*p).avail.used_event).write_volatile(idx) }
    }

    /// The used index, which the device moves.
    pub fn used_idx(&self, q: Q) -> u16 {
        let p = self.queue(q);
        // SAFETY: as in `set_desc`; volatile, for the device writes it.
        unsafe { (&raw const (*p).used.idx).read_volatile() }
    }

    /// Used-ring entry number `n` (taken modulo the ring size).
    pub fn used_entry(&self, q: Q, n: u16) -> UsedElem {
        let p = self.queue(q);
        // SAFETY: as in `used_idx`.
        unsafe { (&raw const (*p).used.ring[n as usize % QN]).read_volatile() }
    }

    /// The available index the device wants to hear of next.
    pub fn avail_event(&self, q: Q) -> u16 {
        let p = self.queue(q);
        // SAFETY: as in `used_idx`.
        unsafe { (&raw const (*p).used.avail_event).read_volatile() }
    }

    /// Receive buffer `id`, bytes `from..to`.
    ///
    /// # Safety
    ///
    /// The device must have handed buffer `id` back in the used ring, and
    /// the driver must not offer it again while the slice lives.
    pub unsafe fn rx_bytes(&self, id: usize, from: usize, to: usize) -> &[u8] {
        let s = self.0.as_ptr();
        // SAFETY: the device no longer writes the buffer (the caller's
        // promise), and the fence after reading the used index ordered its
        // bytes before our reads; indexing is bounds-checked.
        let buf: &[u8; RX_BUF] = unsafe { &(*s).rx_buf[id] };
        &buf[from..to]
    }

    /// Transmit buffer `id`.
    ///
    /// # Safety
    ///
    /// Buffer `id` must not be in flight (offered and not yet used).
    pub unsafe fn tx_buf(&mut self, id: usize) -> &mut [u8; TX_BUF] {
        let s = self.0.as_ptr();
        // SAFETY: the device does not read the buffer (the caller's
        // promise), and `&mut self` makes this the only reference.
        unsafe { &mut (*s).tx_buf[id] }
    }
}

/// Whether a device that asked to hear of index `event` must be told of a
/// move from `old` to `new` (the virtio specification's `vring_need_event`).
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}
