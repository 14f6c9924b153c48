//! The few QEMU plugin API functions this plugin uses, declared by hand
//! from their documentation in QEMU's `include/qemu/qemu-plugin.h` (API
//! version 4, QEMU 10.0). QEMU resolves them when it loads the plugin; the
//! two glib functions come from the glib QEMU itself links.

// Declarations for C: not every field is read.
#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_uint, c_void};

/// The plugin's id, given at install.
pub type PluginId = u64;

/// What QEMU tells the plugin at install (`qemu_info_t`). Only valid
/// during the install call.
#[repr(C)]
pub struct QemuInfo {
    pub target_name: *const c_char,
    pub version_min: c_int,
    pub version_cur: c_int,
    pub system_emulation: bool,
    pub smp_vcpus: c_int,
    pub max_vcpus: c_int,
}

/// A translation block being translated (opaque).
#[repr(C)]
pub struct Tb {
    _opaque: [u8; 0],
}

/// One instruction of a block being translated (opaque).
#[repr(C)]
pub struct Insn {
    _opaque: [u8; 0],
}

/// glib's `GByteArray`.
#[repr(C)]
pub struct GByteArray {
    pub data: *mut u8,
    pub len: c_uint,
}

/// `QEMU_PLUGIN_CB_NO_REGS`: the callback reads no register.
pub const CB_NO_REGS: c_int = 0;

pub type VcpuUdataCb = extern "C" fn(vcpu: c_uint, udata: *mut c_void);
pub type TbTransCb = extern "C" fn(id: PluginId, tb: *mut Tb);

// SAFETY (for the block): these are QEMU's exported plugin API (and two
// glib functions), with the C signatures its header documents.
unsafe extern "C" {
    pub fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: TbTransCb);
    pub fn qemu_plugin_register_vcpu_tb_exec_cb(
        tb: *mut Tb,
        cb: VcpuUdataCb,
        flags: c_int,
        udata: *mut c_void,
    );
    pub fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    pub fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    pub fn qemu_plugin_insn_data(insn: *const Insn, dest: *mut c_void, len: usize) -> usize;
    pub fn qemu_plugin_read_memory_vaddr(addr: u64, data: *mut GByteArray, len: usize) -> bool;
    pub fn g_byte_array_sized_new(reserved: c_uint) -> *mut GByteArray;
    pub fn g_byte_array_free(arr: *mut GByteArray, free_segment: c_int) -> *mut u8;
}

/// `SHUTDOWN_CAUSE_HOST_QMP_SYSTEM_RESET` of QEMU's `ShutdownCause` (its
/// QAPI schema, `run-state.json`): the cause a monitor `system_reset` gives.
pub const CAUSE_HOST_QMP_SYSTEM_RESET: c_int = 3;

/// `qemu_system_reset_request(ShutdownCause)`.
pub type ResetRequest = unsafe extern "C" fn(cause: c_int);

/// QEMU's own `qemu_system_reset_request`, which the plugin API does not
/// offer: Debian's QEMU exports its symbols (it loads modules), so it is
/// looked up at run time; `None` where this QEMU does not export it.
pub fn reset_request() -> Option<ResetRequest> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
    // looks the symbol up; a non-null result is that function, whose C
    // signature is `void qemu_system_reset_request(ShutdownCause)` (an enum,
    // passed as int).
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"qemu_system_reset_request".as_ptr());
        (!f.is_null()).then(|| std::mem::transmute::<*mut c_void, ResetRequest>(f))
    }
}
