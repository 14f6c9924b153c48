//! A port's receive queue: a bounded FIFO the arbiter fills and the
//! connection's writer drains. Unlike an `mpsc` channel, one `Notify`
//! shared by every queue tells the arbiter that *some* queue made room, so
//! a single task can wait on any number of full queues at once.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use proto::Frame;
use tokio::sync::Notify;

use crate::ids::PortId;
use crate::stats::Shared;

pub(crate) enum PushError {
    Full,
    Closed,
}

struct Inner {
    frames: VecDeque<Frame>,
    closed: bool,
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

    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        let mut q = self.lock();
        if q.closed {
            return Err(PushError::Closed);
        }
        if q.frames.len() >= self.cap {
            return Err(PushError::Full);
        }
        q.frames.push_back(frame);
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

    /// Moves up to `max` frames into `out`; returns how many.
    pub fn pop_batch(&self, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut q = self.lock();
        let was_full = q.frames.len() >= self.cap;
        let n = q.frames.len().min(max);
        out.extend(q.frames.drain(..n));
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
