//! A socketcand-compatible TCP server on 127.0.0.1, so that tools such as
//! python-can (`interface='socketcand'`) can join the bus.
//!
//! Each client is a node of its own: it takes one of the `socketcandN`
//! ports when it opens a channel, the channel being a segment name, and
//! its frames contend for the bus like any other port's. What it implements
//! of the protocol: the `< hi >` greeting; `< open CHANNEL >`; `< rawmode >`
//! (frames flow) and `< bcmmode >` (frames stop, as no BCM subscription is
//! kept); `< send ID LEN B0 B1 … >` and `< fdsend ID FLAGS LEN B0 … >`;
//! `< echo >`. Frames go to the client as `< frame ID SECS.USECS DATA >`,
//! or, with [`FdFormat::Fdframe`], FD frames as
//! `< fdframe ID FLAGS SECS.USECS DATA >`; the time stamp is the wall clock
//! when the bridge writes the frame. Like socketcand, a client never gets
//! its own frames back.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::Frame;
use proto::filter::{AcceptanceFilter, FilterEntry};
use proto::frame::{FLAG_BRS, FLAG_EXTENDED, FLAG_FD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::arbiter::ToArbiter;
use crate::bus::Cause;
use crate::client::AbortOnDrop;
use crate::config::FdFormat;
use crate::ids::{ConnId, PortId};
use crate::port::{RxGuard, WRITE_BATCH};
use crate::rxqueue::{LinkFrame, RxQueue};
use crate::shutdown::wait_shutdown;
use crate::stats::Shared;

/// After `< rawmode >` is answered, frames wait this long: python-can reads
/// the `< ok >` with one `recv` and fails if a frame arrives in the same
/// read.
const RAWMODE_GRACE: Duration = Duration::from_millis(100);
/// Longest command the server waits for the end of.
const MAX_COMMAND: usize = 4096;

pub(crate) struct Server {
    pub listener: TcpListener,
    /// Port of each client slot.
    pub slots: Vec<PortId>,
    /// Each client slot's TX FIFO places.
    pub tx_slots: Vec<Arc<Semaphore>>,
    pub inbox: mpsc::Sender<ToArbiter>,
    pub shared: Arc<Shared>,
    pub shutdown: watch::Receiver<bool>,
    pub rx_queue_depth: usize,
    pub fd_format: FdFormat,
    pub room: Arc<Notify>,
}

struct Ctx {
    slots: Vec<PortId>,
    tx_slots: Vec<Arc<Semaphore>>,
    busy: Mutex<Vec<bool>>,
    next_conn: AtomicU64,
    inbox: mpsc::Sender<ToArbiter>,
    shared: Arc<Shared>,
    rx_queue_depth: usize,
    fd_format: FdFormat,
    room: Arc<Notify>,
}

impl Server {
    pub async fn run(mut self) {
        let ctx = Arc::new(Ctx {
            busy: Mutex::new(vec![false; self.slots.len()]),
            slots: self.slots,
            tx_slots: self.tx_slots,
            next_conn: AtomicU64::new(1),
            inbox: self.inbox,
            shared: self.shared,
            rx_queue_depth: self.rx_queue_depth,
            fd_format: self.fd_format,
            room: self.room,
        });
        let mut clients = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.shutdown) => break,
                Some(_) = clients.join_next() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        debug!(%peer, "socketcand client");
                        clients.spawn(client(stream, ctx.clone()));
                    }
                    Err(e) => {
                        warn!(error = %e, "socketcand accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        clients.shutdown().await;
    }
}

/// What the command side asks the writer to do.
enum Out {
    Text(String),
    /// Frames for this client come from here once forwarding.
    Attach(RxGuard),
    /// Forward frames from this instant on.
    Forward(Instant),
    /// Stop forwarding.
    Stop,
}

/// A claimed client slot; freeing it tells the arbiter the client left.
struct Slot {
    ctx: Arc<Ctx>,
    index: usize,
    conn: ConnId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let port = self.ctx.slots[self.index];
        self.ctx.shared.ports[port].connected.store(false, Relaxed);
        // Never blocks: on shutdown the arbiter may be gone already.
        let _ = self.ctx.inbox.try_send(ToArbiter::Disconnected {
            port,
            conn: self.conn,
        });
        if let Ok(mut busy) = self.ctx.busy.lock() {
            busy[self.index] = false;
        }
    }
}

fn reject_all() -> AcceptanceFilter {
    // No standard identifier has all 32 bits set.
    AcceptanceFilter::new(&[FilterEntry {
        id: u32::MAX,
        mask: u32::MAX,
        extended: false,
    }])
    .unwrap_or_default()
}

#[derive(PartialEq)]
enum Mode {
    NoBus,
    Bcm,
    Raw,
}

async fn client(stream: TcpStream, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (out, out_rx) = mpsc::channel::<Out>(16);
    // Ends the writer (and its socket) however this task ends.
    let mut writer = AbortOnDrop(tokio::spawn(writer(wr, out_rx, ctx.fd_format)));
    serve(rd, &ctx, &out).await;
    // Let the writer send a last reply (an error) before the socket closes.
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer.0).await;
}

/// Reads and runs commands until the client leaves or is turned away.
async fn serve(mut rd: OwnedReadHalf, ctx: &Arc<Ctx>, out: &mpsc::Sender<Out>) {
    if out.send(Out::Text("< hi >".into())).await.is_err() {
        return;
    }
    let mut mode = Mode::NoBus;
    // Held until this returns: dropping it frees the port.
    let mut slot: Option<Slot> = None;
    serve_commands(&mut rd, ctx, out, &mut mode, &mut slot).await;
    if let Some(s) = &slot {
        // Awaited here; the slot's drop only tries, and a repeat is ignored.
        let _ = ctx
            .inbox
            .send(ToArbiter::Disconnected {
                port: ctx.slots[s.index],
                conn: s.conn,
            })
            .await;
    }
}

async fn serve_commands(
    rd: &mut OwnedReadHalf,
    ctx: &Arc<Ctx>,
    out: &mpsc::Sender<Out>,
    mode: &mut Mode,
    slot: &mut Option<Slot>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // Skip anything before a '<'.
            match buf.iter().position(|&b| b == b'<') {
                Some(start) => {
                    buf.drain(..start);
                }
                None => {
                    buf.clear();
                    break;
                }
            }
            let Some(end) = buf.iter().position(|&b| b == b'>') else {
                if buf.len() > MAX_COMMAND {
                    ctx.shared.socketcand_bad_command();
                    let _ = out
                        .send(Out::Text("< error command too long >".into()))
                        .await;
                    return;
                }
                break;
            };
            let text = String::from_utf8_lossy(&buf[1..end]).into_owned();
            buf.drain(..=end);
            match command(ctx, out, mode, slot, &text).await {
                Flow::Continue => {}
                Flow::Close => return,
            }
        }
    }
}

enum Flow {
    Continue,
    Close,
}

async fn reply(out: &mpsc::Sender<Out>, text: &str) -> Flow {
    match out.send(Out::Text(text.to_owned())).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close,
    }
}

/// A command from a client, parsed; what it may do depends on the
/// client's mode.
#[derive(Debug, PartialEq)]
pub(crate) enum Request<'a> {
    Echo,
    Open {
        channel: &'a str,
    },
    /// `rawmode` (`raw`) or `bcmmode`.
    Mode {
        raw: bool,
    },
    Send(Frame),
}

/// A command that does not parse.
#[derive(Debug, PartialEq)]
pub(crate) enum BadRequest {
    /// `open` without a channel.
    MissingChannel,
    /// `send` or `fdsend` with bad arguments, and why.
    BadSend(&'static str),
    /// Anything else.
    Unknown,
}

/// Parses what stands between `<` and `>`.
pub(crate) fn parse_request(line: &str) -> Result<Request<'_>, BadRequest> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["echo", ..] => Ok(Request::Echo),
        ["open"] => Err(BadRequest::MissingChannel),
        ["open", channel, ..] => Ok(Request::Open { channel }),
        ["rawmode", ..] => Ok(Request::Mode { raw: true }),
        ["bcmmode", ..] => Ok(Request::Mode { raw: false }),
        [kind @ ("send" | "fdsend"), args @ ..] => parse_send(*kind == "fdsend", args)
            .map(Request::Send)
            .map_err(BadRequest::BadSend),
        _ => Err(BadRequest::Unknown),
    }
}

/// Runs one command in the client's mode.
async fn command(
    ctx: &Arc<Ctx>,
    out: &mpsc::Sender<Out>,
    mode: &mut Mode,
    slot: &mut Option<Slot>,
    line: &str,
) -> Flow {
    let shared = &ctx.shared;
    match (parse_request(line), &*mode) {
        (Ok(Request::Echo), _) => reply(out, "< echo >").await,
        (Ok(Request::Open { channel }), Mode::NoBus) => open(ctx, out, mode, slot, channel).await,
        (Err(BadRequest::MissingChannel), Mode::NoBus) => {
            shared.socketcand_bad_command();
            reply(out, "< error missing channel >").await
        }
        (Ok(Request::Mode { raw }), Mode::Bcm | Mode::Raw) => {
            set_mode(ctx, out, mode, slot.as_ref(), raw).await
        }
        (Ok(Request::Send(frame)), Mode::Bcm | Mode::Raw) => send(ctx, slot.as_ref(), frame).await,
        (Err(BadRequest::BadSend(e)), Mode::Bcm | Mode::Raw) => {
            // socketcand only logs these; an `< error >` line would make
            // python-can's reader raise.
            debug!(error = e, "bad socketcand send");
            shared.socketcand_bad_command();
            Flow::Continue
        }
        _ => {
            shared.socketcand_bad_command();
            if *mode == Mode::NoBus {
                reply(out, "< error unknown command >").await
            } else {
                Flow::Continue
            }
        }
    }
}

/// `< open CHANNEL >`: the client takes a free port on that segment.
async fn open(
    ctx: &Arc<Ctx>,
    out: &mpsc::Sender<Out>,
    mode: &mut Mode,
    slot: &mut Option<Slot>,
    channel: &str,
) -> Flow {
    let shared = &ctx.shared;
    let Some(segment) = shared.segment_index(channel) else {
        shared.socketcand_refused();
        let _ = reply(out, "< error no such channel >").await;
        return Flow::Close;
    };
    let Some(index) = ctx.busy.lock().ok().and_then(|mut busy| {
        let i = busy.iter().position(|b| !b)?;
        busy[i] = true;
        Some(i)
    }) else {
        shared.socketcand_refused();
        let _ = reply(out, "< error no free port >").await;
        return Flow::Close;
    };
    let conn = ConnId(ctx.next_conn.fetch_add(1, Relaxed));
    let port = ctx.slots[index];
    *slot = Some(Slot {
        ctx: ctx.clone(),
        index,
        conn,
    });
    let rx = Arc::new(RxQueue::new(
        ctx.rx_queue_depth,
        ctx.room.clone(),
        shared.clone(),
        port,
    ));
    let guard = RxGuard {
        rx: rx.clone(),
        port,
        shared: shared.clone(),
        in_flight: 0,
        cut: false,
    };
    let msgs = [
        ToArbiter::Connected {
            port,
            conn,
            rx,
            segment: Some(segment),
            clocked: false,
            timed: false,
        },
        // BCM mode: nothing is forwarded until `rawmode`.
        ToArbiter::Filter {
            port,
            conn,
            filter: reject_all(),
        },
    ];
    for msg in msgs {
        if ctx.inbox.send(msg).await.is_err() {
            return Flow::Close;
        }
    }
    let c = &shared.ports[port];
    c.connected.store(true, Relaxed);
    c.connects.fetch_add(1, Relaxed);
    if let Some(s) = &shared.socketcand {
        s.clients.fetch_add(1, Relaxed);
    }
    info!(port = %shared.port_names[port], channel, "socketcand client opened a channel");
    if out.send(Out::Attach(guard)).await.is_err() {
        return Flow::Close;
    }
    *mode = Mode::Bcm;
    reply(out, "< ok >").await
}

/// `< rawmode >` (frames flow) or `< bcmmode >` (they stop).
async fn set_mode(
    ctx: &Arc<Ctx>,
    out: &mpsc::Sender<Out>,
    mode: &mut Mode,
    slot: Option<&Slot>,
    raw: bool,
) -> Flow {
    let Some(s) = slot else {
        return Flow::Close;
    };
    let filter = if raw {
        AcceptanceFilter::accept_all()
    } else {
        reject_all()
    };
    // In line with the arbiter's other input, so a frame sent after the
    // client saw `< ok >` is forwarded.
    let msg = ToArbiter::Filter {
        port: ctx.slots[s.index],
        conn: s.conn,
        filter,
    };
    if ctx.inbox.send(msg).await.is_err() {
        return Flow::Close;
    }
    if let Flow::Close = reply(out, "< ok >").await {
        return Flow::Close;
    }
    *mode = if raw { Mode::Raw } else { Mode::Bcm };
    let next = if raw {
        Out::Forward(Instant::now() + RAWMODE_GRACE)
    } else {
        Out::Stop
    };
    match out.send(next).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close,
    }
}

/// `< send … >`: the frame goes into the client's TX FIFO.
async fn send(ctx: &Arc<Ctx>, slot: Option<&Slot>, frame: Frame) -> Flow {
    let Some(s) = slot else {
        return Flow::Close;
    };
    let shared = &ctx.shared;
    let port = ctx.slots[s.index];
    if !shared.timing.carries(&frame) {
        shared.drop_frames(port, Cause::TxFdOnClassic, 1);
        return Flow::Continue;
    }
    let read_at = Some(shared.wall_now());
    let Ok(place) = ctx.tx_slots[s.index].acquire().await else {
        return Flow::Close;
    };
    // The arbiter gives the place back once the FIFO lets go of the frame.
    place.forget();
    let msg = ToArbiter::Frame {
        port,
        conn: s.conn,
        frame,
        read_at,
    };
    match ctx.inbox.send(msg).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close,
    }
}

/// Parses the arguments of `send ID LEN B…` or `fdsend ID FLAGS LEN B…`.
/// An 8-digit identifier is extended, and so is one of 4 to 7 digits that
/// does not fit 11 bits: python-can before 4.2 (Debian 12 has 4.1) writes
/// extended identifiers unpadded. LEN is read as decimal or, as python-can
/// writes it, hex: whichever matches the byte count.
pub(crate) fn parse_send(fd: bool, args: &[&str]) -> Result<Frame, &'static str> {
    let (id_text, rest) = args.split_first().ok_or("missing identifier")?;
    let id = u32::from_str_radix(id_text, 16).map_err(|_| "identifier is not hex")?;
    let extended = id_text.len() == 8 || (id_text.len() > 3 && id > 0x7FF);
    let (flags, rest) = if fd {
        let (f, rest) = rest.split_first().ok_or("missing flags")?;
        (
            u8::from_str_radix(f, 16).map_err(|_| "flags are not hex")?,
            rest,
        )
    } else {
        (0, rest)
    };
    let (len_text, bytes) = rest.split_first().ok_or("missing length")?;
    let count = bytes.len();
    let len_dec = len_text.parse::<usize>().ok();
    let len_hex = usize::from_str_radix(len_text, 16).ok();
    if len_dec != Some(count) && len_hex != Some(count) {
        return Err("length does not match the data bytes");
    }
    let mut data = Vec::with_capacity(count);
    for b in bytes {
        if b.len() > 2 {
            return Err("a data byte has more than 2 hex digits");
        }
        data.push(u8::from_str_radix(b, 16).map_err(|_| "a data byte is not hex")?);
    }
    let mut frame_flags = if extended { FLAG_EXTENDED } else { 0 };
    if fd || count > 8 {
        frame_flags |= FLAG_FD;
        if !fd || flags & crate::capture::CANFD_BRS != 0 {
            frame_flags |= FLAG_BRS;
        }
    }
    Frame::new(id, frame_flags, &data).map_err(|e| match e {
        proto::frame::FrameError::IdOutOfRange => "identifier out of range",
        _ => "bad length",
    })
}

/// `< frame … >` (or `< fdframe … >`) for one frame at wall time `now`.
pub(crate) fn format_frame(frame: &Frame, now: Duration, fd_format: FdFormat, out: &mut String) {
    use std::fmt::Write as _;
    let id = if frame.is_extended() {
        format!("{:08X}", frame.id())
    } else {
        format!("{:03X}", frame.id())
    };
    let stamp = format!("{}.{:06}", now.as_secs(), now.subsec_micros());
    let _ = if frame.is_fd() && fd_format == FdFormat::Fdframe {
        let flags = if frame.is_brs() {
            crate::capture::CANFD_BRS
        } else {
            0
        };
        write!(out, "< fdframe {id} {flags:02X} {stamp} ")
    } else {
        write!(out, "< frame {id} {stamp} ")
    };
    for b in frame.data() {
        let _ = write!(out, "{b:02X}");
    }
    out.push_str(" >");
}

enum Event {
    Msg(Option<Out>),
    Started,
    Batch,
}

async fn wait_start(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn next_batch(guard: Option<&mut RxGuard>, batch: &mut Vec<Arc<LinkFrame>>) {
    match guard {
        Some(g) => g.next_batch(batch, WRITE_BATCH).await,
        None => std::future::pending().await,
    }
}

async fn writer(mut sock: OwnedWriteHalf, mut rx: mpsc::Receiver<Out>, fd_format: FdFormat) {
    let mut guard: Option<RxGuard> = None;
    let mut start_at: Option<Instant> = None;
    let mut forwarding = false;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut text = String::with_capacity(WRITE_BATCH * 160);
    loop {
        batch.clear();
        let event = tokio::select! {
            biased;
            msg = rx.recv() => Event::Msg(msg),
            _ = wait_start(start_at), if !forwarding => Event::Started,
            _ = next_batch(guard.as_mut(), &mut batch), if forwarding => Event::Batch,
        };
        let is_batch = matches!(event, Event::Batch);
        let write = match event {
            Event::Msg(None) => return,
            Event::Msg(Some(Out::Text(t))) => t,
            Event::Msg(Some(Out::Attach(g))) => {
                guard = Some(g);
                continue;
            }
            Event::Msg(Some(Out::Forward(at))) => {
                start_at = Some(at);
                continue;
            }
            Event::Msg(Some(Out::Stop)) => {
                start_at = None;
                forwarding = false;
                continue;
            }
            Event::Started => {
                forwarding = true;
                continue;
            }
            Event::Batch => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                text.clear();
                for f in &batch {
                    format_frame(&f.frame, now, fd_format, &mut text);
                }
                if let Some(g) = guard.as_mut() {
                    g.in_flight = batch.len() as u64;
                }
                text.clone()
            }
        };
        if sock.write_all(write.as_bytes()).await.is_err() {
            return;
        }
        if let (true, Some(g)) = (is_batch, guard.as_mut()) {
            let bytes = batch.iter().map(|f| f.frame.data().len() as u64).sum();
            g.written(batch.len() as u64, bytes);
        }
    }
}

impl Shared {
    fn socketcand_bad_command(&self) {
        if let Some(s) = &self.socketcand {
            s.bad_commands.fetch_add(1, Relaxed);
        }
    }

    fn socketcand_refused(&self) {
        if let Some(s) = &self.socketcand {
            s.refused.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_commands_parse_like_socketcand_and_python_can() {
        let f = |args: &str| parse_send(false, &args.split(' ').collect::<Vec<_>>());
        assert_eq!(f("123 0"), Ok(Frame::new(0x123, 0, &[]).unwrap()));
        assert_eq!(
            f("1AAAAAAA 2 1 F1"),
            Ok(Frame::new(0x1AAA_AAAA, FLAG_EXTENDED, &[1, 0xF1]).unwrap())
        );
        // python-can writes the length in hex and bytes without padding.
        let twelve = f("00000010 C 1 2 3 4 5 6 7 8 9 a b c").unwrap();
        assert!(twelve.is_fd() && twelve.is_brs() && twelve.is_extended());
        assert_eq!(twelve.data(), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(f("123 3 1 2").is_err(), "length mismatch");
        assert!(f("800 0").is_err(), "11-bit id out of range");
        // python-can 4.1 writes extended ids without padding.
        assert_eq!(
            f("110063 6 1 0 cd ab 34 12"),
            Ok(Frame::new(0x11_0063, FLAG_EXTENDED, &[1, 0, 0xCD, 0xAB, 0x34, 0x12]).unwrap())
        );
        assert_eq!(f("0123 0"), Ok(Frame::new(0x123, 0, &[]).unwrap()));
        assert!(f("123456789 0").is_err(), "29-bit id out of range");
        assert!(f("12g 0").is_err());
        assert!(f("123 1 100").is_err());
        assert!(f("").is_err());
        let fd = parse_send(true, &["123", "0", "2", "AA", "BB"]).unwrap();
        assert!(fd.is_fd() && !fd.is_brs());
        let fd = parse_send(true, &["123", "1", "2", "AA", "BB"]).unwrap();
        assert!(fd.is_brs());
    }

    #[test]
    fn requests_parse_without_regard_to_mode() {
        let frame = |id, data: &[u8]| Frame::new(id, 0, data).unwrap();
        let cases: [(&str, Result<Request, BadRequest>); 12] = [
            ("echo", Ok(Request::Echo)),
            (" echo extra ", Ok(Request::Echo)),
            ("open base", Ok(Request::Open { channel: "base" })),
            ("open base more", Ok(Request::Open { channel: "base" })),
            ("open", Err(BadRequest::MissingChannel)),
            ("rawmode", Ok(Request::Mode { raw: true })),
            ("bcmmode", Ok(Request::Mode { raw: false })),
            (
                "send 123 2 AA BB",
                Ok(Request::Send(frame(0x123, &[0xAA, 0xBB]))),
            ),
            (
                "fdsend 123 0 0",
                Ok(Request::Send(Frame::new(0x123, FLAG_FD, &[]).unwrap())),
            ),
            (
                "send 12g 0",
                Err(BadRequest::BadSend("identifier is not hex")),
            ),
            ("", Err(BadRequest::Unknown)),
            ("subscribe 0 0 123", Err(BadRequest::Unknown)),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_request(line), expected, "{line:?}");
        }
    }

    #[test]
    fn frames_are_written_as_socketcand_writes_them() {
        let at = Duration::new(23, 424_242_999);
        let mut s = String::new();
        format_frame(
            &Frame::new(0x123, 0, &[0x11, 0x22, 0x33, 0x44]).unwrap(),
            at,
            FdFormat::Frame,
            &mut s,
        );
        assert_eq!(s, "< frame 123 23.424242 11223344 >");
        s.clear();
        // No data: two spaces, as python-can's split expects.
        format_frame(
            &Frame::new(0x5, 0, &[]).unwrap(),
            at,
            FdFormat::Frame,
            &mut s,
        );
        assert_eq!(s, "< frame 005 23.424242  >");
        s.clear();
        let fd = Frame::fd_extended(0x10_0001, &[1; 12]).unwrap();
        format_frame(&fd, at, FdFormat::Frame, &mut s);
        assert_eq!(s, "< frame 00100001 23.424242 010101010101010101010101 >");
        s.clear();
        format_frame(&fd, at, FdFormat::Fdframe, &mut s);
        assert_eq!(
            s,
            "< fdframe 00100001 01 23.424242 010101010101010101010101 >"
        );
    }
}
