//! bootcast's QEMU TCG plugin: holds a node's virtual clock in step with
//! the bus bridge, the fleet's time authority.
//!
//! QEMU runs the node with `-icount shift=S,sleep=off`: its clock advances
//! by 2^S ns per instruction, and jumps to the next timer when the guest
//! sleeps. The plugin cannot stop or set that clock (QEMU 10's time-control
//! API only moves a clock forward, and with icount not at all), but it can
//! hold the vCPU: at the start of a translation block it compares the clock
//! with the bridge's grant, and at the grant it reports to the bridge and
//! blocks until the next grant. A block that ends in `wfi` is where the
//! guest may sleep: if its timer lies past the grant, the plugin reports
//! "idle until then" and blocks, so that the guest sleeps (and QEMU jumps
//! the clock) only once the bridge knows nothing reaches it earlier.
//!
//! Measured on QEMU 10.0.2 with icount: the idle and resume callbacks never
//! fire (round-robin TCG does not call them), and reading `mtime` from an
//! instruction callback in the middle of a block aborts QEMU ("Bad icount
//! read"); at the start of a block it is allowed. Hence block callbacks.
//!
//! Arguments: `clock=PATH` (the bridge's clock socket for this node),
//! `shift=S` (the same as `-icount shift=S`).
//!
//! Modules: `api` (the QEMU functions, declared by hand), `gate` (when to
//! stop, tested without QEMU), `link` (the socket to the bridge).

mod api;
pub mod gate;
mod link;

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::Mutex;

use board::memory::{CLINT_BASE, MTIME_HZ};
use gate::{Gate, Mark};
use link::Link;
use proto::clock::{NEVER, SYNC_HINT};

/// The plugin API version this plugin was written against.
#[unsafe(no_mangle)]
pub static qemu_plugin_version: c_int = 4;

/// `wfi`.
const WFI: u32 = 0x1050_0073;
const MTIME: u64 = CLINT_BASE + 0xBFF8;
const MTIMECMP_HART0: u64 = CLINT_BASE + 0x4000;
const NS_PER_TICK: u64 = 1_000_000_000 / MTIME_HZ;

/// Marks a block's user data: the block holds a `wfi`.
const HOLDS_WFI: usize = 1 << 31;
/// Marks a block's user data: the block holds the sync hint.
const HOLDS_SYNC: usize = 1 << 30;

struct Node {
    gate: Gate,
    link: Link,
    /// QEMU's reset request, for grants that ask for a reset.
    reset: Option<api::ResetRequest>,
}

static NODE: Mutex<Option<Node>> = Mutex::new(None);

/// Ends QEMU: the bridge is gone or the clock cannot be read, and a node
/// running on unheld would break the fleet's time.
fn fatal(what: &str) -> ! {
    eprintln!("bootcast clock plugin: {what}");
    std::process::exit(1)
}

/// Reads a 64-bit device register through QEMU's debug access.
fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: the array is glib's, allocated here and freed below; QEMU
    // fills it and sets `len`, and we read only the 8 bytes it says it has.
    unsafe {
        let arr = api::g_byte_array_sized_new(8);
        if arr.is_null() {
            return None;
        }
        let ok = api::qemu_plugin_read_memory_vaddr(addr, arr, 8);
        let v = (ok && (*arr).len >= 8).then(|| {
            let mut b = [0u8; 8];
            std::ptr::copy_nonoverlapping((*arr).data, b.as_mut_ptr(), 8);
            u64::from_le_bytes(b)
        });
        api::g_byte_array_free(arr, 1);
        v
    }
}

fn ticks_to_ns(ticks: u64) -> u64 {
    ticks.checked_mul(NS_PER_TICK).unwrap_or(NEVER)
}

extern "C" fn on_block(_vcpu: c_uint, udata: *mut c_void) {
    let data = udata as usize;
    let n = (data & !(HOLDS_WFI | HOLDS_SYNC)) as u64;
    let wfi = data & HOLDS_WFI != 0;
    let synced = data & HOLDS_SYNC != 0;
    let mark = match (wfi, synced) {
        (true, _) => Mark::Wfi,
        (false, true) => Mark::Sync,
        (false, false) => Mark::Plain,
    };
    let mut guard = NODE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(node) = guard.as_mut() else { return };
    if !node.gate.block(n, mark) {
        return;
    }
    let now = read_u64(MTIME).unwrap_or_else(|| fatal("cannot read mtime"));
    let wake = wfi.then(|| {
        let cmp = read_u64(MTIMECMP_HART0).unwrap_or_else(|| fatal("cannot read mtimecmp"));
        ticks_to_ns(cmp)
    });
    if let Some(report) = node.gate.clock(ticks_to_ns(now), wake, synced) {
        let grant = node.link.stop(report).unwrap_or_else(|e| fatal(&e));
        // The bridge grants once QEMU has read the frames it handed over
        // from the socket; QEMU reads and passes them to the device in one
        // go under its big lock. A device read takes that lock too, so once
        // it returns the frames are in the guest's buffers and their
        // interrupt raised: the node resumes with them, whatever the host.
        let _ = read_u64(MTIME);
        if grant.reset {
            let Some(reset) = node.reset else {
                fatal(
                    "the bridge asked for a reset, and this QEMU exports no qemu_system_reset_request",
                )
            };
            // SAFETY: QEMU's own function, as a monitor command calls it;
            // from a vCPU thread it also stops this vCPU, so the reset
            // comes before the guest runs on.
            unsafe { reset(api::CAUSE_HOST_QMP_SYSTEM_RESET) };
        }
        node.gate.granted(grant.until);
    }
}

extern "C" fn on_translate(_id: api::PluginId, tb: *mut api::Tb) {
    // SAFETY: `tb` is valid during this callback, and so are the
    // instruction handles taken from it; `insn_data` copies at most 4 bytes
    // into `w`.
    unsafe {
        let n = api::qemu_plugin_tb_n_insns(tb);
        let mut data = n & !(HOLDS_WFI | HOLDS_SYNC);
        // `wfi` need not end its block: QEMU leaves the block at run time
        // when the hart halts.
        for i in 0..n {
            let insn = api::qemu_plugin_tb_get_insn(tb, i);
            let mut w = [0u8; 4];
            if insn.is_null() || api::qemu_plugin_insn_data(insn, w.as_mut_ptr().cast(), 4) != 4 {
                continue;
            }
            match u32::from_le_bytes(w) {
                WFI => data |= HOLDS_WFI,
                SYNC_HINT => data |= HOLDS_SYNC,
                _ => {}
            }
        }
        api::qemu_plugin_register_vcpu_tb_exec_cb(
            tb,
            on_block,
            api::CB_NO_REGS,
            data as *mut c_void,
        );
    }
}

/// The plugin's arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// The bridge's clock socket for this node.
    pub clock: std::path::PathBuf,
    /// ns per instruction, as a power of two.
    pub shift: u32,
}

/// Reads `key=value` arguments; errors name the argument and the reason.
pub fn parse_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Args, String> {
    let (mut clock, mut shift) = (None, None);
    for a in args {
        match a.split_once('=') {
            Some(("clock", v)) if !v.is_empty() => clock = Some(v.into()),
            Some(("shift", v)) => match v.parse::<u32>() {
                Ok(s) if s <= 10 => shift = Some(s),
                _ => return Err(format!("shift: {v:?} is not 0 to 10")),
            },
            _ => return Err(format!("{a:?}: unknown argument (clock=PATH, shift=S)")),
        }
    }
    Ok(Args {
        clock: clock.ok_or("clock: missing (clock=PATH)")?,
        shift: shift.ok_or("shift: missing (shift=S, as -icount shift=S)")?,
    })
}

/// Called by QEMU when it loads the plugin.
///
/// # Safety
/// QEMU passes `argc` valid C strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qemu_plugin_install(
    id: api::PluginId,
    _info: *const api::QemuInfo,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let arg = |i: usize| {
        // SAFETY: QEMU passes `argc` valid, NUL-terminated strings that
        // live as long as the plugin.
        unsafe { CStr::from_ptr(*argv.add(i)) }
    };
    let strings: Vec<&str> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| arg(i).to_str().unwrap_or(""))
        .collect();
    let args = match parse_args(strings) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bootcast clock plugin: {e}");
            return 1;
        }
    };
    let link = match Link::connect(&args.clock) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bootcast clock plugin: {e}");
            return 1;
        }
    };
    *NODE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Node {
        gate: Gate::new(args.shift),
        link,
        reset: api::reset_request(),
    });
    // SAFETY: registering a callback with QEMU during install, as its API
    // asks.
    unsafe { api::qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate) };
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        assert_eq!(
            parse_args(["clock=/r/c/1.sock", "shift=3"]),
            Ok(Args {
                clock: "/r/c/1.sock".into(),
                shift: 3
            })
        );
        assert!(parse_args(["shift=3"]).unwrap_err().starts_with("clock:"));
        assert!(
            parse_args(["clock=x", "shift=11"])
                .unwrap_err()
                .starts_with("shift:")
        );
        assert!(
            parse_args(["clock=x", "shift=3", "x=1"])
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn ticks_become_nanoseconds() {
        assert_eq!(ticks_to_ns(3), 300);
        assert_eq!(ticks_to_ns(u64::MAX), NEVER);
    }
}
