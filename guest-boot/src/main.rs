//! bootcast's boot ROM.
//!
//! It runs in place from pflash, keeps its data, bss and stack in its own RAM
//! region, and does only what the minimally operational state needs: a short
//! self-test, asking the bus for the image of its own node type (with
//! backoff and jitter), storing that image straight at its load address,
//! checking its SHA-256 over the bytes actually loaded and its Ed25519
//! signature against the key built in, and handing off with the measured
//! digest. Every other image on the bus is ignored.
#![no_std]
#![no_main]

mod receive;

/// The trusted public key, from `BOOTCAST_PUBLIC_KEY` at build time.
#[cfg(feature = "signature-check")]
mod trusted {
    include!(concat!(env!("OUT_DIR"), "/trusted_key.rs"));
}

use board::dev::{clint, console, cpu, port::BusPort, uart};
use board::handoff::{self, Handoff};
use board::memory;
use board::strap::{Strap, Transport};
use proto::msg::{self, Message, NodeState, Request, ResetCause, Status};
use receive::{Progress, Receiver};

/// Reported in every `Request`.
const BOOT_ROM_VERSION: u16 = 1;
/// First retry interval; it doubles up to `RETRY_MAX_MS`.
const RETRY_BASE_MS: u64 = 250;
const RETRY_MAX_MS: u64 = 2000;
/// A session quiet this long with chunks missing gets a `Nack` even without
/// an end: the end itself may have been lost. Shorter than the master's wait
/// for `Nack`s after an end.
const NACK_QUIET_MS: u64 = 250;
/// A session that sends nothing for this long is abandoned.
const SESSION_SILENCE_MS: u64 = 3000;
/// While frames stream in, they are taken in batches: one wakeup when this
/// many receive buffers are filled (QEMU fills one per read of its socket),
/// or this long after the last batch, whichever comes first. The device
/// goes on reading meanwhile, so frames wait in the node's memory, not on
/// the link.
const GATHER_BUFS: usize = 12;
const GATHER_MS: u64 = 10;

core::arch::global_asm!(
    r#"
    .section .text.init, "ax"
    .globl _start
_start:
    csrw mie, zero
    csrci mstatus, 8
    csrr t0, mhartid
    bnez t0, _halt
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, __stack_top
    la t0, _halt
    csrw mtvec, t0
    la t0, __data_load
    la t1, __data_start
    la t2, __data_end
1:  bgeu t1, t2, 2f
    ld t3, 0(t0)
    sd t3, 0(t1)
    addi t0, t0, 8
    addi t1, t1, 8
    j 1b
2:  la t0, __bss_start
    la t1, __bss_end
3:  bgeu t0, t1, 4f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 3b
4:  call boot_main

    .align 2
    .globl _halt
_halt:
    csrw mie, zero
5:  wfi
    j 5b
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cpu::halt()
}

fn handoff_record() -> &'static mut Handoff {
    // SAFETY: the handoff page is reserved by the memory map for this record,
    // is aligned, and nothing else aliases it while the boot ROM runs.
    unsafe { &mut *(memory::HANDOFF_BASE as *mut Handoff) }
}

/// Works out why we are here and counts the boot, in RAM that survives
/// resets but not power loss.
fn count_boot(record: &mut Handoff) -> (ResetCause, u16) {
    let (cause, count) = if record.is_valid() {
        let cause = if record.soft_reboot == handoff::SOFT_REBOOT_REQUESTED {
            ResetCause::SoftReboot
        } else {
            ResetCause::Reset
        };
        (cause, record.boot_count.wrapping_add(1))
    } else {
        (ResetCause::PowerOn, 1)
    };
    *record = Handoff::zeroed();
    record.magic = handoff::MAGIC;
    record.version = handoff::VERSION;
    record.boot_count = count;
    record.reset_cause = cause as u8;
    (cause, count)
}

/// Self-test bits: 1 = RAM pattern, 2 = UART scratch register, 4 = timer.
fn self_test() -> u8 {
    let mut failed = 0;
    let probe = memory::IMAGE_BASE as *mut u64;
    for pattern in [0x5555_5555_5555_5555u64, 0xAAAA_AAAA_AAAA_AAAA, 0] {
        for i in 0..512 {
            // SAFETY: the first 4 KiB of the image region is RAM that holds
            // no image yet; nothing else refers to it.
            unsafe { probe.add(i).write_volatile(pattern ^ i as u64) };
        }
        for i in 0..512 {
            // SAFETY: as above.
            if unsafe { probe.add(i).read_volatile() } != pattern ^ i as u64 {
                failed |= 1;
            }
        }
    }
    if !uart::scratch_test() {
        failed |= 2;
    }
    let t0 = clint::now();
    let mut spins = 0u32;
    while clint::now() == t0 && spins < 1_000_000 {
        spins += 1;
    }
    if clint::now() == t0 {
        failed |= 4;
    }
    failed
}

/// xorshift32: jitter only, not security.
struct Jitter(u32);

impl Jitter {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// `ms` scaled by a random factor in [0.75, 1.25).
    fn spread(&mut self, ms: u64) -> u64 {
        ms * (750 + (self.next() % 500) as u64) / 1000
    }
}

struct Node {
    strap: Strap,
    port: BusPort,
    cause: ResetCause,
}

impl Node {
    fn send(&mut self, m: Message<'_>) {
        if let Ok(frame) = m.to_frame(self.strap.node) {
            self.port.send(&frame);
        }
    }

    fn reject(&mut self, r: proto::msg::Reject) {
        console::print("image rejected: ");
        console::print(proto::msg::RejectReason::from_code(r.reason).map_or("?", |r| r.as_str()));
        console::print("\n");
        self.send(Message::Reject(r));
    }

    fn status(&mut self, state: NodeState, selftest: u8, p: Option<&Receiver>) {
        let (session, received, total) = p.map_or((0, 0, 0), |r| r.progress());
        self.send(Message::Status(Status {
            node_type: self.strap.node_type,
            state: state as u8,
            selftest,
            reset_cause: self.cause as u8,
            session,
            received,
            total,
        }));
    }
}

#[unsafe(no_mangle)]
extern "C" fn boot_main() -> ! {
    let record = handoff_record();
    let (cause, boot_count) = count_boot(record);
    let selftest = self_test();
    // Without an identity the node cannot ask for anything: stay minimal.
    let Some(strap) = board::dev::read_strap() else {
        cpu::halt()
    };
    if strap.transport == Transport::Virtio {
        console::open();
    }
    console::print("bootcast boot ROM: node ");
    console::print_u32(strap.node as u32);
    console::print(" type ");
    console::print_u32(strap.node_type as u32);
    console::print(if selftest == 0 {
        ", self-test passed\n"
    } else {
        ", SELF-TEST FAILED\n"
    });
    let Some(mut port) = BusPort::open(strap.transport) else {
        console::print("no virtio-console for the bus: halted\n");
        cpu::halt()
    };
    port.set_filter(&msg::BOOT_ROM_KINDS);
    record.node = strap.node;
    record.node_type = strap.node_type;
    let mut node = Node { strap, port, cause };
    node.status(NodeState::SelfTest, selftest, None);
    if selftest != 0 {
        node.status(NodeState::Failed, selftest, None);
        node.port.flush();
        cpu::halt();
    }

    let mut jitter = Jitter(strap.seed ^ (strap.node as u32) << 16 ^ clint::now() as u32 | 1);
    let mut attempt: u16 = 0;
    let mut next_request = clint::now();
    let mut rx = Receiver::new(strap);
    let mut last_session_frame = 0u64;
    // Whether this quiet spell of the session has already caused a `Nack`.
    let mut asked_in_quiet = false;

    loop {
        // Whether this batch held frames of our session. Their time is taken
        // once, after the batch: reading the timer is a device access.
        let mut session_frames = false;
        let mut frames = false;
        while let Some(frame) = node.port.recv() {
            frames = true;
            let Ok((_, m)) = Message::decode(frame) else {
                continue;
            };
            match rx.on_message(&m, jitter.next()) {
                Progress::Ignored => continue,
                Progress::Accepted => {}
                Progress::Started => {
                    console::print("receiving session ");
                    console::print_u32(rx.progress().0);
                    console::print("\n");
                    node.status(NodeState::Receiving, 0, Some(&rx))
                }
                Progress::Rejected(reject) => {
                    node.reject(reject);
                    next_request = clint::now() + clint::ms(jitter.spread(RETRY_BASE_MS));
                    continue;
                }
                Progress::Complete => {
                    node.status(NodeState::Verifying, 0, Some(&rx));
                    match rx.verify() {
                        Ok(image) => {
                            record.generation = image.session;
                            record.version_of_image = image.manifest.version;
                            record.load_addr = image.manifest.load_addr;
                            record.size = image.manifest.size as u64;
                            record.entry = image.manifest.entry;
                            record.digest = image.digest;
                            record.name = image.manifest.name;
                            record.boot_count = boot_count;
                            console::print("image verified, sha256 ");
                            console::print_hex(&image.digest);
                            console::print("; starting it\n");
                            node.status(NodeState::Handoff, 0, Some(&rx));
                            node.port.flush();
                            hand_off(image.manifest.entry)
                        }
                        Err(reject) => {
                            node.reject(reject);
                            next_request = clint::now() + clint::ms(jitter.spread(RETRY_BASE_MS));
                            continue;
                        }
                    }
                }
            }
            session_frames = true;
        }

        let now = clint::now();
        if session_frames {
            last_session_frame = now;
            asked_in_quiet = false;
        }
        let quiet_at = last_session_frame + clint::ms(NACK_QUIET_MS);
        if rx.active() && !asked_in_quiet && now >= quiet_at {
            asked_in_quiet = true;
            rx.quiet(now, jitter.next());
        }
        rx.take_nacks(now, |nack| node.send(Message::Nack(nack)));
        if rx.active() && now > last_session_frame + clint::ms(SESSION_SILENCE_MS) {
            // The master went quiet mid-session: ask again.
            rx.abandon();
            next_request = now;
        }
        if !rx.active() && now >= next_request {
            attempt = attempt.saturating_add(1);
            node.send(Message::Request(Request {
                node_type: strap.node_type,
                flags: 0,
                boot_rom_version: BOOT_ROM_VERSION,
                attempt,
                min_version: strap.min_version,
            }));
            let backoff = RETRY_BASE_MS << (attempt.min(8) - 1).min(3);
            next_request = now + clint::ms(jitter.spread(backoff.min(RETRY_MAX_MS)));
        }
        let deadline = if rx.active() {
            let silence = last_session_frame + clint::ms(SESSION_SILENCE_MS) + 1;
            let quiet = if asked_in_quiet { silence } else { quiet_at };
            rx.nack_due()
                .map_or(silence, |at| at.min(silence))
                .min(quiet)
        } else {
            next_request
        };
        if frames {
            // Frames are streaming: let the next ones gather and take them
            // in one batch rather than waking for each.
            node.port
                .sleep_gathering(deadline, now + clint::ms(GATHER_MS), GATHER_BUFS);
        } else {
            node.port.sleep_until(deadline);
        }
    }
}

/// Jumps to the image with `a0` = the handoff record. Never returns.
fn hand_off(entry: u64) -> ! {
    cpu::disable_wakeups();
    cpu::sync_instruction_stream();
    // SAFETY: `entry` lies in the payload just loaded and checked against its
    // manifest's SHA-256; the image region holds nothing of the boot ROM's.
    unsafe {
        core::arch::asm!(
            "jr {entry}",
            entry = in(reg) entry,
            in("a0") memory::HANDOFF_BASE,
            options(noreturn),
        )
    }
}
