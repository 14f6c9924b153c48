//! A port's receive queue: a bounded FIFO the arbiter fills and the
//! connection's writer drains. Unlike an `mpsc` channel, one `Notify`
//! shared by every queue tells the arbiter that *some* queue made room, so
//! a single task can wait on any number of full queues at once.
//!
//! On the virtual clock each frame carries its delivery time on the node's
//! clock, and the queue also holds the node's next grant: the writer sends
//! it only once every frame queued before it is written. A timed host
//! client's queue also carries its freed TX places, in time order with
//! its frames.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use proto::Frame;
use proto::link::{self, MAX_ENCODED};
use tokio::sync::Notify;

use crate::ids::PortId;
use crate::stats::Shared;

pub(crate) enum PushError {
    Full,
    Closed,
}

/// A frame from the bus with its link encoding, made once and shared by
/// every port the frame reaches: a broadcast to a fleet is one encoding,
/// not one per node.
#[derive(Debug)]
pub(crate) struct LinkFrame {
    pub frame: Frame,
    len: u8,
    bytes: [u8; MAX_ENCODED],
}

impl LinkFrame {
    pub fn new(frame: Frame) -> LinkFrame {
        let mut bytes = [0u8; MAX_ENCODED];
        let len = link::encode(&frame, &mut bytes) as u8;
        LinkFrame { frame, len, bytes }
    }

    /// The frame on the link, delimiter included.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What a port's writer passes on.
#[derive(Clone, Debug)]
pub(crate) enum Delivery {
    /// A frame from the bus.
    Frame(Arc<LinkFrame>),
    /// Places of the client's TX FIFO freed (timed host clients only).
    TxFree(u32),
}

struct Inner {
    /// Frames, each with its delivery time on the receiver's clock (the
    /// virtual clock only).
    frames: VecDeque<(Delivery, Option<u64>)>,
    closed: bool,
    /// The receiver's next grant, on its clock.
    grant: Option<u64>,
    /// The next grant asks the node to reset first.
    reset: bool,
}

pub(crate) struct RxQueue {
    inner: Mutex<Inner>,
    cap: usize,
    /// Wakes the writer: frames arrived.
    pub data: Notify,
    /// Wakes the arbiter: a full queue made room.
    room: Arc<Notify>,
    shared: Arc<Shared>,
    port: PortId,
}

impl RxQueue {
    pub fn new(cap: usize, room: Arc<Notify>, shared: Arc<Shared>, port: PortId) -> RxQueue {
        RxQueue {
            inner: Mutex::new(Inner {
                frames: VecDeque::with_capacity(cap.min(256)),
                closed: false,
                grant: None,
                reset: false,
            }),
            cap,
            data: Notify::new(),
            room,
            shared,
            port,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the deque consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame`, with its delivery time on the receiver's clock on
    /// the virtual clock.
    pub fn push_at(&self, frame: Arc<LinkFrame>, at: Option<u64>) -> Result<(), PushError> {
        let mut q = self.lock();
        if q.closed {
            return Err(PushError::Closed);
        }
        if q.frames.len() >= self.cap {
            return Err(PushError::Full);
        }
        q.frames.push_back((Delivery::Frame(frame), at));
        let len = q.frames.len();
        drop(q);
        self.shared.ports[self.port]
            .rx_queued
            .store(len as u64, Relaxed);
        if len == 1 {
            self.data.notify_one();
        }
        Ok(())
    }

    /// Queues `places` freed TX places for a timed client, at `at` on its
    /// clock; never refused for room (there are only as many as its FIFO
    /// has places).
    pub fn push_tx_free(&self, places: u32, at: u64) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        q.frames.push_back((Delivery::TxFree(places), Some(at)));
        let first = q.frames.len() == 1;
        drop(q);
        if first {
            self.data.notify_one();
        }
    }

    /// Moves up to `max` frames into `out`; returns how many.
    pub fn pop_batch(&self, out: &mut Vec<Arc<LinkFrame>>, max: usize) -> usize {
        self.pop_with(max, |(d, _)| {
            if let Delivery::Frame(f) = d {
                out.push(f)
            }
        })
    }

    /// Moves up to `max` deliveries, with their times, into `out`; returns
    /// how many.
    pub fn pop_timed(&self, out: &mut Vec<(Delivery, Option<u64>)>, max: usize) -> usize {
        self.pop_with(max, |item| out.push(item))
    }

    fn pop_with(&self, max: usize, mut put: impl FnMut((Delivery, Option<u64>))) -> usize {
        let mut q = self.lock();
        let was_full = q.frames.len() >= self.cap;
        let n = q.frames.len().min(max);
        q.frames.drain(..n).for_each(&mut put);
        let len = q.frames.len();
        drop(q);
        self.shared.ports[self.port]
            .rx_queued
            .store(len as u64, Relaxed);
        if was_full && n > 0 {
            self.room.notify_one();
        }
        n
    }

    /// Sets the receiver's next grant (on its clock), to be sent after the
    /// frames queued now.
    pub fn set_grant(&self, until: u64) {
        self.lock().grant = Some(until);
        self.data.notify_one();
    }

    /// Makes the next grant set ask the node to reset first.
    pub fn set_reset(&self) {
        self.lock().reset = true;
    }

    /// The grant, and whether it asks for a reset, once no frame is
    /// queued before it.
    pub fn take_grant(&self) -> Option<(u64, bool)> {
        let mut q = self.lock();
        if !q.frames.is_empty() {
            return None;
        }
        let until = q.grant.take()?;
        Some((until, std::mem::take(&mut q.reset)))
    }

    /// Refuses further frames; returns how many were still queued.
    pub fn close(&self) -> u64 {
        let mut q = self.lock();
        q.closed = true;
        let n = q.frames.len() as u64;
        q.frames.clear();
        drop(q);
        self.shared.ports[self.port].rx_queued.store(0, Relaxed);
        // The arbiter may be waiting for room here; closed is an answer.
        self.room.notify_one();
        n
    }
}
