//! bootcast's boot ROM.
//!
//! It runs in place from pflash, keeps its data, bss and stack in its own RAM
//! region, and does only what the minimally operational state needs: a short
//! self-test, asking the bus for the image of its own node type (with
//! backoff and jitter), storing that image straight at its load address,
//! checking its SHA-256 over the bytes actually loaded and its Ed25519
//! signature against the key built in, and handing off with the measured
//! digest. Every other image on the bus is ignored.
//!
//! The decisions are the library's (`guest_boot::boot`, tested on the
//! host); this file is the board's side: start-up, self-test, the port, the
//! timer, RAM, and the jump.
#![no_std]
#![no_main]

/// The trusted public key, from `BOOTCAST_PUBLIC_KEY` at build time.
#[cfg(feature = "signature-check")]
mod trusted {
    include!(concat!(env!("OUT_DIR"), "/trusted_key.rs"));
}

use board::dev::{clint, console, cpu, port::BusPort, uart};
use board::handoff::{self, Handoff};
use board::memory;
use board::strap::{Clock, Strap, Transport};
use board::take::TakeOnce;
use guest_boot::boot::{self, Action, Actions, Boot, Setup};
use guest_boot::receive::{ChunkBitmap, ImageRam, LoadedImage, MAX_CHUNKS};
use proto::msg::{self, Message, NodeState, RejectReason, ResetCause};

/// While frames stream in, they are taken in batches: one wakeup when this
/// many receive buffers are filled (QEMU fills one per read of its socket),
/// or this long after the last batch, whichever comes first. The device
/// goes on reading meanwhile, so frames wait in the node's memory, not on
/// the link.
const GATHER_BUFS: usize = 12;
const GATHER_MS: u64 = 10;

/// The receiver's chunk bits: 64 KiB, more than the stack.
static BITMAP: TakeOnce<ChunkBitmap> = TakeOnce::new([0; MAX_CHUNKS / 64]);

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

/// The image region: RAM the memory map gives to images alone (nothing of
/// the boot ROM's is there), written and read only through the one value
/// of this type, so a slice `load` lends keeps `store` out while it lives.
struct ImageRegion(());

impl ImageRegion {
    /// The region's handle.
    ///
    /// # Safety
    /// At most one may exist: two could write what the other has lent out.
    unsafe fn take() -> ImageRegion {
        ImageRegion(())
    }
}

impl ImageRam for ImageRegion {
    fn store(&mut self, addr: u64, bytes: &[u8]) {
        // Never false: the receiver checked its part's range at session start.
        if !memory::in_image_region(addr, bytes.len() as u64) {
            return;
        }
        // SAFETY: the range lies in the image region, and no reference into
        // it is alive: `load` lends slices that borrow `self`, and this
        // takes `&mut self`.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as usize as *mut u8, bytes.len())
        };
    }

    fn load(&self, addr: u64, len: u32) -> &[u8] {
        // Never true: the receiver checked its part's range at session
        // start. Nothing measured then fails the digest check.
        if !memory::in_image_region(addr, len as u64) {
            return &[];
        }
        // SAFETY: the range lies in the image region, which only `store`
        // writes, and not while this slice (borrowing `self`) lives.
        unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len as usize) }
    }
}

/// The board's side of a boot.
struct Node {
    strap: Strap,
    port: BusPort,
    record: &'static mut Handoff,
    boot_count: u16,
    ram: ImageRegion,
}

impl Node {
    /// Sends `m`, with a console line for the messages worth one.
    fn send(&mut self, m: Message<'_>) {
        match m {
            Message::Reject(r) => {
                console::print("image rejected: ");
                console::print(RejectReason::from_code(r.reason).map_or("?", |r| r.as_str()));
                console::print("\n");
            }
            Message::Status(s) if s.state == NodeState::Receiving as u8 => {
                console::print("receiving session ");
                console::print_u32(s.session);
                console::print("\n");
            }
            _ => {}
        }
        if let Ok(frame) = m.to_frame(self.strap.node) {
            self.port.send(&frame);
        }
    }

    fn perform(&mut self, boot: &mut Boot, actions: &Actions) {
        for action in actions.iter() {
            match *action {
                Action::Send(m) => self.send(m),
                Action::Verify => {
                    // On the virtual clock a node is held until it has
                    // taken what the bus hands it: it stops listening
                    // while the check keeps it from reading its device.
                    let busy = self.strap.clock == Clock::Virtual;
                    if busy {
                        self.port.set_filter(&msg::BUSY_KINDS);
                    }
                    let next = boot.check(&self.ram, clint::now);
                    if busy && !next.hands_off() {
                        self.port.set_filter(&msg::BOOT_ROM_KINDS);
                    }
                    self.perform(boot, &next);
                }
                Action::TestCrypto => {
                    let next = boot.crypto_tested(guest_boot::kat::run());
                    self.perform(boot, &next);
                }
                Action::Record(image) => self.record(image),
                Action::HandOff(image) => self.hand_off(image),
                Action::Halt => {
                    self.port.flush();
                    cpu::halt()
                }
            }
        }
    }

    /// Fills the app's record in.
    fn record(&mut self, image: LoadedImage) {
        let r = &mut *self.record;
        r.generation = image.session;
        r.version_of_image = image.version;
        r.load_addr = image.load_addr;
        r.size = image.size as u64;
        r.entry = image.entry;
        r.digest = image.digest;
        r.name = image.name;
        r.boot_count = self.boot_count;
    }

    /// Starts the recorded image.
    fn hand_off(&mut self, image: LoadedImage) -> ! {
        console::print("image verified, sha256 ");
        console::print_hex(&image.digest);
        console::print("; starting it\n");
        self.port.flush();
        jump(image.entry)
    }

    /// Feeds the machine frames and wakeups, and does what it says, until
    /// it hands off.
    fn run(&mut self, boot: &mut Boot) -> ! {
        let mut frames = false;
        let mut actions = Actions::default();
        loop {
            // Frames are taken in a batch; the timer is read once after it
            // (a device access), and only frames that start a timer read it.
            while let Some(frame) = self.port.recv() {
                frames = true;
                let Ok((_, m)) = Message::decode(frame) else {
                    continue;
                };
                boot.on_message(&m, clint::now, &mut self.ram, &mut actions);
                if !actions.is_empty() {
                    self.perform(boot, &actions);
                }
            }
            let now = clint::now();
            let actions = boot.poll(now);
            self.perform(boot, &actions);
            // No frame waits: measure a slice of the image received so far,
            // then look for frames again. A node the bus keeps busy does it
            // all after the last chunk instead.
            if boot.measure(&self.ram, boot::MEASURE_SLICE) {
                continue;
            }
            let deadline = boot.wake_at();
            if core::mem::take(&mut frames) {
                // Frames are streaming: let the next ones gather and take
                // them in one batch rather than waking for each.
                self.port
                    .sleep_gathering(deadline, now + clint::ms(GATHER_MS), GATHER_BUFS);
            } else {
                self.port.sleep_until(deadline);
            }
        }
    }
}

fn greet(strap: &Strap, selftest: u8) {
    console::print("bootcast boot ROM: node ");
    console::print_u32(strap.node as u32);
    console::print(" type ");
    console::print_u32(strap.node_type as u32);
    console::print(if selftest == 0 {
        ", self-test passed\n"
    } else {
        ", SELF-TEST FAILED\n"
    });
}

#[unsafe(no_mangle)]
extern "C" fn boot_main() -> ! {
    let Some(record) = board::dev::take_handoff() else {
        cpu::halt()
    };
    let (cause, boot_count) = count_boot(record);
    let selftest = self_test();
    // Without an identity the node cannot ask for anything: stay minimal.
    let Some(strap) = board::dev::read_strap() else {
        cpu::halt()
    };
    if strap.transport == Transport::Virtio {
        console::open();
    }
    greet(&strap, selftest);
    let Some(mut port) = BusPort::open(strap.transport, strap.clock) else {
        console::print("no virtio-console for the bus: halted\n");
        cpu::halt()
    };
    port.set_filter(&msg::BOOT_ROM_KINDS);
    record.node = strap.node;
    record.node_type = strap.node_type;
    let setup = Setup {
        strap,
        cause,
        #[cfg(feature = "signature-check")]
        trusted: guest_boot::receive::TrustedKey {
            key: trusted::TRUSTED_KEY,
            id: trusted::TRUSTED_KEY_ID,
        },
    };
    let mut node = Node {
        strap,
        port,
        record,
        boot_count,
        // SAFETY: the only one: `boot_main` runs once and never returns.
        ram: unsafe { ImageRegion::take() },
    };
    for action in boot::report_self_test(&setup, selftest) {
        match action {
            Action::Send(m) => node.send(m),
            // `Halt`, after a failed self-test.
            _ => {
                node.port.flush();
                cpu::halt()
            }
        }
    }
    let Some(bitmap) = BITMAP.take() else {
        cpu::halt()
    };
    let seed = strap.seed ^ (strap.node as u32) << 16 ^ clint::now() as u32 | 1;
    let mut boot = Boot::new(setup, bitmap, seed, clint::now());
    node.run(&mut boot)
}

/// Jumps to the image with `a0` = the handoff record. Never returns.
fn jump(entry: u64) -> ! {
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
