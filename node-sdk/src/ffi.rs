//! The C API: `bootcast_*` functions over the one [`Node`] the SDK keeps for
//! the program. Built into `libbootcast.a` (feature `c-api`); declared in
//! `include/bootcast.h`.
//!
//! The node lives in a static guarded by a flag: a call made while another
//! runs (from a trap handler) gets `BOOTCAST_ERR_BUSY` rather than a second
//! reference to it.

use crate::cabi::*;
use crate::node::{self, InitError, Node};
use core::cell::UnsafeCell;
use core::ffi::{CStr, c_char};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};
use proto::filter::FilterEntry;

/// The program's node, once `bootcast_init` made it. All zeros until then
/// (in `.bss`: an `Option<Node>` would be a `.data` image of its own).
struct Slot {
    busy: AtomicBool,
    ready: AtomicBool,
    node: UnsafeCell<MaybeUninit<Node>>,
}

// SAFETY: the node is reached only through `with_slot`, which hands out
// one `&mut` at a time under the `busy` flag; guests have one hart.
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot {
    busy: AtomicBool::new(false),
    ready: AtomicBool::new(false),
    node: UnsafeCell::new(MaybeUninit::uninit()),
};

/// Runs `f` on the node, or, with `init`, makes it first; `f`'s code or
/// the error.
fn with_slot(init: bool, f: impl FnOnce(&mut Node) -> i32) -> i32 {
    if SLOT.busy.swap(true, Ordering::Acquire) {
        return BOOTCAST_ERR_BUSY;
    }
    // SAFETY: the flag was clear and is now set: no other reference to
    // the slot's value exists until it is cleared below.
    let node = unsafe { &mut *SLOT.node.get() };
    let ready = SLOT.ready.load(Ordering::Relaxed);
    let code = match (ready, init) {
        (true, true) => BOOTCAST_ERR_ALREADY_INITIALISED,
        (false, false) => BOOTCAST_ERR_NOT_INITIALISED,
        (false, true) => match Node::init() {
            Ok(n) => {
                node.write(n);
                SLOT.ready.store(true, Ordering::Relaxed);
                BOOTCAST_OK
            }
            Err(InitError::AlreadyInitialised) => BOOTCAST_ERR_ALREADY_INITIALISED,
            Err(InitError::NoHandoff) => BOOTCAST_ERR_NO_HANDOFF,
            Err(InitError::NoBusPort) => BOOTCAST_ERR_NO_BUS_PORT,
        },
        // SAFETY: `ready` is set only once the node was written.
        (true, false) => f(unsafe { node.assume_init_mut() }),
    };
    SLOT.busy.store(false, Ordering::Release);
    code
}

/// Runs `f` on the node; its code, or the error.
fn with_node(f: impl FnOnce(&mut Node) -> i32) -> i32 {
    with_slot(false, f)
}

/// Starts the SDK: takes the handoff record, opens the debug console (when
/// the bus is on virtio) and the bus port, and sets the port's acceptance
/// filter to the SDK's own (`Reboot`, `Check`, session control). Call it
/// once, first. Returns `BOOTCAST_OK`, or `BOOTCAST_ERR_NO_HANDOFF` (not
/// started by the boot ROM), `BOOTCAST_ERR_NO_BUS_PORT`,
/// `BOOTCAST_ERR_ALREADY_INITIALISED`.
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_init() -> i32 {
    with_slot(true, |_| BOOTCAST_OK)
}

/// Sends a heartbeat with the app's `status` byte (the heartbeat's
/// `flags`): node type, generation, uptime, boot count, image version and
/// name, the digest the boot ROM measured, and the session frames ignored.
/// Call it every `BOOTCAST_HEARTBEAT_MS`.
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_heartbeat(status: u8) -> i32 {
    with_node(|n| {
        n.heartbeat(status);
        BOOTCAST_OK
    })
}

/// Takes the next received frame meant for the app into `*out`: returns 1
/// when it wrote one, 0 when none is waiting, or an error. The SDK deals
/// with the protocol's frames on the way: it answers a `Check` for this
/// node, counts session frames, and on a `Reboot` for this node goes back
/// to the boot ROM (this call then never returns). Call it whenever the
/// node wakes, until it returns 0.
///
/// # Safety
///
/// `out` is null (`BOOTCAST_ERR_INVALID`) or points to a writable
/// `bootcast_frame`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bootcast_poll(out: *mut BootcastFrame) -> i32 {
    if out.is_null() {
        return BOOTCAST_ERR_INVALID;
    }
    with_node(|n| match n.poll() {
        Some(f) => {
            // SAFETY: non-null, and writable by the caller's contract.
            unsafe { out.write(BootcastFrame::from(&f)) };
            1
        }
        None => 0,
    })
}

/// Sends `*frame` as it is, sleeping while the transmitter is full.
/// `BOOTCAST_ERR_INVALID` for a frame that is not valid.
///
/// # Safety
///
/// `frame` is null or points to a readable `bootcast_frame`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bootcast_send(frame: *const BootcastFrame) -> i32 {
    // SAFETY: null or readable, by the caller's contract.
    let Some(frame) = (unsafe { frame.as_ref() }).and_then(BootcastFrame::to_frame) else {
        return BOOTCAST_ERR_INVALID;
    };
    with_node(|n| {
        n.send(&frame);
        BOOTCAST_OK
    })
}

/// Lets frames matching any of `entries[0..count]` through the port's
/// acceptance filter, besides the SDK's own entries (at most
/// `BOOTCAST_MAX_FILTER_ENTRIES`; `count` 0 goes back to the SDK's alone).
/// Until it is called, the app receives only what the SDK needs.
///
/// # Safety
///
/// `entries` points to `count` readable entries (or `count` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bootcast_set_filter(
    entries: *const BootcastFilterEntry,
    count: usize,
) -> i32 {
    if count > BOOTCAST_MAX_FILTER_ENTRIES as usize {
        return BOOTCAST_ERR_FILTER_FULL;
    }
    if entries.is_null() && count > 0 {
        return BOOTCAST_ERR_INVALID;
    }
    let mut extra = [FilterEntry {
        id: 0,
        mask: 0,
        extended: false,
    }; BOOTCAST_MAX_FILTER_ENTRIES as usize];
    for (i, e) in extra.iter_mut().take(count).enumerate() {
        // SAFETY: `i < count` readable entries, by the caller's contract.
        *e = FilterEntry::from(unsafe { &*entries.add(i) });
    }
    with_node(|n| match n.set_filter(&extra[..count]) {
        Ok(()) => BOOTCAST_OK,
        Err(_) => BOOTCAST_ERR_FILTER_FULL,
    })
}

/// Sleeps in `wfi` until a frame arrives or `bootcast_now()` reaches
/// `deadline`. It may return early: check the time and poll.
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_sleep_until(deadline: u64) -> i32 {
    with_node(|n| {
        n.sleep_until(deadline);
        BOOTCAST_OK
    })
}

/// Copies the boot ROM's handoff record into `*out`.
///
/// # Safety
///
/// `out` is null (`BOOTCAST_ERR_INVALID`) or points to a writable
/// `bootcast_handoff`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bootcast_get_handoff(out: *mut BootcastHandoff) -> i32 {
    if out.is_null() {
        return BOOTCAST_ERR_INVALID;
    }
    with_node(|n| {
        // SAFETY: non-null, and writable by the caller's contract.
        unsafe { out.write(BootcastHandoff::from(n.handoff())) };
        BOOTCAST_OK
    })
}

/// Copies the node's strapping words into `*out`; `BOOTCAST_ERR_NO_STRAP`
/// when they are missing.
///
/// # Safety
///
/// `out` is null (`BOOTCAST_ERR_INVALID`) or points to a writable
/// `bootcast_strap`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bootcast_get_strap(out: *mut BootcastStrap) -> i32 {
    if out.is_null() {
        return BOOTCAST_ERR_INVALID;
    }
    with_node(|n| match n.strap() {
        Some(s) => {
            // SAFETY: non-null, and writable by the caller's contract.
            unsafe { out.write(BootcastStrap::from(&s)) };
            BOOTCAST_OK
        }
        None => BOOTCAST_ERR_NO_STRAP,
    })
}

/// The machine timer, `mtime`: `BOOTCAST_MTIME_HZ` ticks a second. Works
/// before `bootcast_init` too.
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_now() -> u64 {
    node::now()
}

/// `ms` milliseconds in `mtime` ticks.
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_ticks_from_ms(ms: u64) -> u64 {
    node::ms(ms)
}

/// Milliseconds since `bootcast_init` (0 before it).
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_uptime_ms() -> u64 {
    let mut up = 0;
    with_node(|n| {
        up = n.uptime_ms();
        BOOTCAST_OK
    });
    up
}

/// Prints the NUL-terminated `s` on the node's debug console (the 16550,
/// when the bus is on virtio; the testbed writes it to
/// `log/nN.console.log`). Prints nothing when the bus is on the UART, or
/// before `bootcast_init`.
///
/// # Safety
///
/// `s` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bootcast_print(s: *const c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: NUL-terminated, by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(s) }.to_bytes();
    // Whole UTF-8 runs as they are; the console takes bytes anyway.
    for chunk in bytes.utf8_chunks() {
        node::print(chunk.valid());
        if !chunk.invalid().is_empty() {
            node::print("?");
        }
    }
}

/// Goes back to the boot ROM as after a reset, telling it the app asked
/// for it (the next boot's reset cause is a soft reboot): what was sent
/// leaves first, every interrupt is masked, and the hart jumps to the
/// flash base. The boot ROM then asks the bus for the node's image again.
/// Called from a trap handler that interrupted another SDK call, it
/// reboots without marking the record (the next boot reads as a reset).
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_reboot() -> ! {
    with_node(|n| n.reboot());
    // Not initialised (or called from inside another call).
    node::reboot_without_node()
}

/// Stops for good: every interrupt masked, `wfi` forever.
#[unsafe(no_mangle)]
pub extern "C" fn bootcast_halt() -> ! {
    node::halt()
}

// What the app defines, declared for the header.
unsafe extern "C" {
    #[expect(
        dead_code,
        reason = "declared for the header: `_start` calls it from assembly"
    )]
    /// The app's entry point, which the app defines: libbootcast.a's
    /// `_start` calls it with the boot ROM's handoff record (`a0` at
    /// entry). Should it return, the hart halts.
    pub fn app_main(handoff: *const BootcastHandoff);
}
