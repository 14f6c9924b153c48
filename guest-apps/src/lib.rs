//! The runtime shared by every node app: the fully operational state.
//!
//! An app starts at the image's first byte with `a0` pointing at the boot
//! ROM's handoff record, which it takes (once) from its place in the memory
//! map, the same address. It then sends `Heartbeat`s carrying the digest the
//! boot ROM measured, answers `Check` challenges over its own loaded bytes,
//! obeys `Reboot` by going back to the boot ROM, and ignores every image
//! on the bus: its port's acceptance filter keeps image data from it, and
//! the session frames it does see are only counted. A running node is never
//! disturbed by a broadcast.
#![no_std]

use board::dev::{clint, console, cpu, port::BusPort};
use board::handoff;
use board::memory;
use board::strap::{Clock, Transport};
use proto::msg::{self, CheckReply, Heartbeat, Message, NodeState, NodeType};

/// How often a running node says it is alive.
pub const HEARTBEAT_MS: u64 = 500;

core::arch::global_asm!(
    r#"
    .section .text.init, "ax"
    .globl _start
_start:
    csrw mie, zero
    csrci mstatus, 8
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, __stack_top
    la t0, _app_halt
    csrw mtvec, t0
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call app_main

    .align 2
_app_halt:
    csrw mie, zero
3:  wfi
    j 3b
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cpu::halt()
}

/// What makes one node type's app its own.
pub trait Personality {
    /// The node type this image is built for; reported in every heartbeat.
    const NODE_TYPE: NodeType;
    /// Called once per heartbeat period; returns the app's status byte.
    fn tick(&mut self, uptime_ms: u64) -> u8;
}

/// Runs the app forever (until a `Reboot` sends it back to the boot ROM).
pub fn run<P: Personality>(mut app: P) -> ! {
    let Some(record) = board::dev::take_handoff() else {
        cpu::halt()
    };
    if !record.is_valid() {
        // Not started by the boot ROM: nothing to report on.
        cpu::halt();
    }
    let (transport, clock) =
        board::dev::read_strap().map_or((Transport::Uart, Clock::Wall), |s| (s.transport, s.clock));
    if transport == Transport::Virtio {
        console::open();
    }
    console::print("app ");
    console::print(P::NODE_TYPE.name());
    console::print(" running, generation ");
    console::print_u32(record.generation);
    console::print("\n");
    let Some(mut port) = BusPort::open(transport, clock) else {
        cpu::halt()
    };
    port.set_filter(&msg::APP_KINDS);
    let started = clint::now();
    let mut next_beat = started;
    let mut ignored: u32 = 0;
    let mut name = [0u8; msg::HEARTBEAT_NAME];
    name.copy_from_slice(&record.name[..msg::HEARTBEAT_NAME]);
    loop {
        while let Some(frame) = port.recv() {
            let Ok((_, m)) = Message::decode(frame) else {
                continue;
            };
            match m {
                Message::Reboot(r) if r.applies_to(record.node, record.node_type) => {
                    console::print("reboot requested\n");
                    port.flush();
                    reboot(record)
                }
                Message::Check(c) if c.target == record.node => {
                    let reply = CheckReply {
                        nonce: c.nonce,
                        digest: challenge(record, c.nonce),
                    };
                    send(&mut port, record.node, Message::CheckReply(reply));
                }
                Message::SessionAnnounce(_) | Message::SessionPart(_) | Message::SessionEnd(_) => {
                    ignored = ignored.wrapping_add(1)
                }
                _ => {}
            }
        }
        let now = clint::now();
        if now >= next_beat {
            let uptime_ms = clint::to_ms(now - started);
            let status = app.tick(uptime_ms);
            let beat = Heartbeat {
                node_type: P::NODE_TYPE as u8,
                state: NodeState::Running as u8,
                reset_cause: record.reset_cause,
                flags: status,
                generation: record.generation,
                uptime_ms: uptime_ms as u32,
                boot_count: record.boot_count,
                version: record.version_of_image,
                name,
                digest: record.digest,
                ignored,
            };
            send(&mut port, record.node, Message::Heartbeat(beat));
            next_beat += clint::ms(HEARTBEAT_MS);
        }
        port.sleep_until(next_beat);
    }
}

fn send(port: &mut BusPort, node: u16, m: Message<'_>) {
    if let Ok(frame) = m.to_frame(node) {
        port.send(&frame);
    }
}

/// The challenge's answer over the payload as it is in RAM now. Apps keep
/// no mutable state inside the payload (their linker script asserts `.data`
/// is empty), so this equals the host's answer over the built image.
fn challenge(record: &Handoff, nonce: u32) -> [u8; 32] {
    let size = record
        .size
        .min(memory::IMAGE_END - record.load_addr.min(memory::IMAGE_END));
    // SAFETY: the boot ROM loaded and checked `size` bytes at `load_addr`
    // inside the image region; they are this very program's code and
    // read-only data, never written while it runs.
    let payload = unsafe {
        core::slice::from_raw_parts(record.load_addr as usize as *const u8, size as usize)
    };
    images::challenge::answer(nonce, payload)
}

/// Back to the boot ROM, as after a reset but telling it why.
fn reboot(record: &mut Handoff) -> ! {
    record.soft_reboot = handoff::SOFT_REBOOT_REQUESTED;
    cpu::disable_wakeups();
    // SAFETY: the boot ROM's `_start` at the flash base sets up its own stack
    // and state from scratch and expects nothing from us.
    unsafe { core::arch::asm!("jr {rom}", rom = in(reg) memory::FLASH_BASE, options(noreturn)) }
}

/// Defines the app's entry point for a [`Personality`].
#[macro_export]
macro_rules! app {
    ($personality:expr) => {
        #[unsafe(no_mangle)]
        extern "C" fn app_main() -> ! {
            $crate::run($personality)
        }
    };
}

pub use board::handoff::Handoff;
