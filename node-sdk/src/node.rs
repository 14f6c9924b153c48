//! A running app's node: the handoff record, the strap, the bus port and
//! the protocol ([`crate::protocol`]) on the board's devices.

use crate::protocol::{self, FilterFull, Protocol, Reaction};
use board::dev::{clint, console, cpu, port::BusPort};
use board::handoff::{self, Handoff};
use board::memory;
use board::strap::{Clock, Strap, Transport};
use proto::Frame;
use proto::filter::{FilterEntry, MAX_ENTRIES};
use proto::msg::{self, Message, NodeType};

/// Why [`Node::init`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// `init` ran before: there is one node per program run.
    AlreadyInitialised,
    /// The handoff record is not valid: the boot ROM did not start this
    /// program, so there is nothing to report on.
    NoHandoff,
    /// The strap names a virtio-console for the bus and there is none.
    NoBusPort,
}

/// The app's side of the node: one per program run, from [`Node::init`].
///
/// Every method that waits sleeps in `wfi`, never busy-polls, and keeps
/// receiving while it waits to send.
pub struct Node {
    port: BusPort,
    record: &'static mut Handoff,
    strap: Option<Strap>,
    protocol: Protocol,
    started: u64,
}

impl Node {
    /// Takes the handoff record, reads the strap, opens the debug console
    /// (when the bus is on virtio) and the bus port, and sets the port's
    /// acceptance filter to the SDK's own ([`msg::APP_KINDS`]: `Reboot`,
    /// `Check`, session control). Uptime counts from here.
    pub fn init() -> Result<Node, InitError> {
        let record = board::dev::take_handoff().ok_or(InitError::AlreadyInitialised)?;
        if !record.is_valid() {
            return Err(InitError::NoHandoff);
        }
        let strap = board::dev::read_strap();
        let (transport, clock) =
            strap.map_or((Transport::Uart, Clock::Wall), |s| (s.transport, s.clock));
        if transport == Transport::Virtio {
            console::open();
        }
        console::print("app ");
        console::print(NodeType::from_code(record.node_type).map_or("?", NodeType::name));
        console::print(" running, generation ");
        console::print_u32(record.generation);
        console::print("\n");
        let mut port = BusPort::open(transport, clock).ok_or(InitError::NoBusPort)?;
        port.set_filter(&msg::APP_KINDS);
        Ok(Node {
            port,
            protocol: Protocol::new(record),
            record,
            strap,
            started: clint::now(),
        })
    }

    /// Makes heartbeats name `node_type` rather than the record's (a Rust
    /// app names the type it was built for; the boot ROM started it only if
    /// its image is of the node's type).
    pub fn report_as(&mut self, node_type: NodeType) {
        self.protocol.report_as(node_type as u8);
    }

    /// The boot ROM's record: node id and type, the image (version, name,
    /// where it lies, its measured digest), the generation, why and how
    /// often the node booted.
    pub fn handoff(&self) -> &Handoff {
        self.record
    }

    /// The strapping words: the node's identity as the testbed wired it,
    /// bus transport and clock. `None` if they are missing.
    pub fn strap(&self) -> Option<Strap> {
        self.strap
    }

    /// Milliseconds since [`init`](Self::init).
    pub fn uptime_ms(&self) -> u64 {
        clint::to_ms(clint::now() - self.started)
    }

    /// `mtime` when [`init`](Self::init) ran.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Sends a heartbeat with the app's `status` byte: the node's state,
    /// the measured digest of its image, its uptime, and how many session
    /// frames it ignored. Send one every [`protocol::HEARTBEAT_MS`].
    pub fn heartbeat(&mut self, status: u8) {
        let beat = self
            .protocol
            .heartbeat(self.record, self.uptime_ms(), status);
        self.send_message(Message::Heartbeat(beat));
    }

    /// The next frame for the app, after the SDK has dealt with the
    /// protocol's: it answers a `Check` for this node, counts session
    /// frames, and on a `Reboot` for this node goes back to the boot ROM
    /// (this call then does not return). `None` when no frame is waiting.
    pub fn poll(&mut self) -> Option<Frame> {
        loop {
            let frame = *self.port.recv()?;
            let (record, port) = (&*self.record, &mut self.port);
            match self
                .protocol
                .on_frame(&frame, |nonce| answer(record, nonce, port))
            {
                Reaction::Reboot => {
                    console::print("reboot requested\n");
                    self.reboot()
                }
                Reaction::Answer(reply) => self.send_message(Message::CheckReply(reply)),
                Reaction::Ignored | Reaction::NotForUs => {}
                Reaction::App => return Some(frame),
            }
        }
    }

    /// Sends `frame` as it is (any identifier: the app's own traffic
    /// should use standard identifiers, which no bootcast message uses),
    /// sleeping while the transmitter is full.
    pub fn send(&mut self, frame: &Frame) {
        self.port.send(frame);
    }

    /// Sends a bootcast message from this node.
    pub fn send_message(&mut self, m: Message<'_>) {
        if let Ok(frame) = m.to_frame(self.protocol.node()) {
            self.port.send(&frame);
        }
    }

    /// Lets `extra` through the port's acceptance filter besides the SDK's
    /// own entries (at most [`protocol::MAX_APP_FILTER_ENTRIES`]); `&[]`
    /// goes back to the SDK's alone.
    pub fn set_filter(&mut self, extra: &[FilterEntry]) -> Result<(), FilterFull> {
        let mut entries = [msg::APP_KINDS[0]; MAX_ENTRIES];
        let n = protocol::app_filter(extra, &mut entries)?;
        self.port.set_filter(&entries[..n]);
        Ok(())
    }

    /// Sleeps until a frame arrives or `mtime` reaches `deadline`
    /// (ticks; [`now`], [`ms`]). May return early: check the time.
    pub fn sleep_until(&mut self, deadline: u64) {
        self.port.sleep_until(deadline);
    }

    /// Sleeps until every byte sent has left the device.
    pub fn flush(&mut self) {
        self.port.flush();
    }

    /// Goes back to the boot ROM, as after a reset but telling it the app
    /// asked for it (the next boot's reset cause is a soft reboot): sends
    /// what is queued, masks every interrupt and jumps to the flash base.
    pub fn reboot(&mut self) -> ! {
        self.port.flush();
        reboot(self.record)
    }
}

/// The current `mtime`, in ticks of [`memory::MTIME_HZ`].
pub fn now() -> u64 {
    clint::now()
}

/// `ms` milliseconds in `mtime` ticks.
pub fn ms(ms: u64) -> u64 {
    clint::ms(ms)
}

/// Prints `s` on the node's debug console (the 16550, when the bus is on
/// virtio; nothing otherwise).
pub fn print(s: &str) {
    console::print(s);
}

/// Stops for good: every interrupt masked, `wfi` forever.
pub fn halt() -> ! {
    cpu::halt()
}

/// Goes back to the boot ROM without a [`Node`]: as
/// [`Node::reboot`] when the handoff record is still there to take
/// (before [`Node::init`]), else as after a reset.
#[cfg(feature = "c-api")]
pub fn reboot_without_node() -> ! {
    match board::dev::take_handoff() {
        Some(record) if record.is_valid() => reboot(record),
        _ => jump_to_boot_rom(),
    }
}

/// The answer to a `Check` over the loaded image as it is in RAM now,
/// hashed a slice at a time with the port's received bytes taken between
/// slices: frames keep coming while it runs (every other node's `Check`
/// among them), and the device must not fill up meanwhile.
fn answer(record: &Handoff, nonce: u32, port: &mut BusPort) -> [u8; 32] {
    let (start, size) = protocol::image_span(record);
    // SAFETY: the span lies inside the image region (`image_span` clamps
    // it), which is RAM; the boot ROM loaded and checked these bytes, and
    // an app keeps its mutable memory outside them (the linker script puts
    // `.data`, `.bss` and the stack in app RAM), so they are only read.
    let payload =
        unsafe { core::slice::from_raw_parts(start as usize as *const u8, size as usize) };
    let mut check = images::challenge::Answer::new(nonce);
    for slice in payload.chunks(ANSWER_SLICE) {
        check.update(slice);
        port.take_pending();
    }
    check.finish()
}

/// Bytes hashed between two looks at the port: about 1 ms of a node's time.
const ANSWER_SLICE: usize = 2048;

/// Back to the boot ROM with the record saying the app asked for it.
fn reboot(record: &mut Handoff) -> ! {
    record.soft_reboot = handoff::SOFT_REBOOT_REQUESTED;
    jump_to_boot_rom()
}

/// The boot ROM's `_start`, with every interrupt masked.
fn jump_to_boot_rom() -> ! {
    cpu::disable_wakeups();
    // SAFETY: the boot ROM's `_start` at the flash base sets up its own stack
    // and state from scratch and expects nothing from us.
    unsafe { core::arch::asm!("jr {rom}", rom = in(reg) memory::FLASH_BASE, options(noreturn)) }
}
