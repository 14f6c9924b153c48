//! A host client on the virtual clock: its tasks run on a small executor of
//! their own, stepped through the bus's virtual time by a driver that
//! speaks the bridge's timed-client records (`proto::link`).
//!
//! The bridge hands the client its frames and freed TX places stamped with
//! their bus times, then `Until(G)`: nothing more is due before `G`. The
//! driver then takes the client's events before `G` in time order (what
//! was handed, its own timers), and at each one sets the time, hands the
//! event over and runs every task until none can go on. What the client
//! sends in that step goes out stamped with the step's time. Then it tells
//! the bridge `Idle { at: G, wake }`, `wake` being its earliest timer: until
//! then, the bridge holds every node short of any time at which the client
//! could act. While the client runs, it holds the bus's time too.
//!
//! So a client's behaviour is a function of what the bus hands it, never
//! of how fast the host runs it: tasks are polled in the order they were
//! woken, one at a time, and time moves only between steps. Only a wake
//! from outside the bus (a command from the testbed) is taken when it
//! comes, at the time the client has reached.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};

use bus_bridge::client::{ClientError, FrameReader, FrameWriter};
use proto::Frame;
use proto::link::{self, Item, MAX_ENCODED, NEVER};
use tokio::sync::{Notify, mpsc, oneshot};

use super::moment::Moment;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One task of the client.
struct TaskCell {
    /// `None` once it has finished or was aborted.
    future: Mutex<Option<BoxFuture>>,
    /// In the ready queue already.
    queued: AtomicBool,
    /// Finished or aborted.
    done: AtomicBool,
    shared: Weak<Shared>,
}

impl Wake for TaskCell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().ready.push_back(self.clone());
            // Woken from outside a step, the driver must look.
            shared.poke.notify_one();
        }
    }
}

/// The client's time, tasks, timers and TX FIFO places.
struct State {
    now: Moment,
    ready: VecDeque<Arc<TaskCell>>,
    /// Every task not yet finished (so that all end with the client).
    tasks: Vec<Arc<TaskCell>>,
    /// Sleeping tasks by (time, arming order).
    timers: BTreeMap<(Moment, u64), Waker>,
    next_timer: u64,
    /// Frames the client sent in this step.
    out: Vec<Frame>,
    /// TX FIFO places free on the bus.
    places: u32,
    /// The task waiting for a place.
    place_waiter: Option<Waker>,
    /// The bus port has closed.
    closed: bool,
    /// The client keeps the bus's time where it is ([`Handle::hold_bus`]).
    holding: bool,
}

pub struct Shared {
    state: Mutex<State>,
    /// Something was woken from outside a step.
    poke: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves the state usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle on the client's clock and executor.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

impl Handle {
    /// The client's time: the step's, or where it has got to.
    pub fn now(&self) -> Moment {
        self.0.lock().now
    }

    /// Ready once the client's time reaches `at`.
    pub fn sleep_until(&self, at: Moment) -> Sleep {
        Sleep {
            shared: self.0.clone(),
            at,
            key: None,
        }
    }

    /// Runs `f` as a task of the client; its result (or `None` if it was
    /// aborted) comes through the receiver.
    pub fn spawn<T, F>(&self, f: F) -> (oneshot::Receiver<T>, Abort)
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        // Tokio's cooperative budget belongs to the driver's task; a
        // client task must never be told "later" by it (that would depend
        // on how much ran before).
        let future = tokio::task::unconstrained(async move {
            let _ = tx.send(f.await);
        });
        let cell = Arc::new(TaskCell {
            future: Mutex::new(Some(Box::pin(future))),
            queued: AtomicBool::new(true),
            done: AtomicBool::new(false),
            shared: Arc::downgrade(&self.0),
        });
        let mut s = self.0.lock();
        s.tasks.retain(|c| !c.done.load(Ordering::Acquire));
        s.tasks.push(cell.clone());
        s.ready.push_back(cell.clone());
        drop(s);
        self.0.poke.notify_one();
        (rx, Abort(Arc::downgrade(&cell)))
    }

    /// From the end of this step on, the client never says it is done: the
    /// bus's time stays where it is (nothing on the bus gets past the
    /// step's time), at a point of virtual time, not of the host's. The
    /// client still takes wakes from outside the bus. For the end of a run.
    pub fn hold_bus(&self) {
        self.0.lock().holding = true;
    }

    /// Whether a TX FIFO place is free (or the port is closed: a send
    /// then says so at once).
    pub fn has_room(&self) -> bool {
        let s = self.0.lock();
        s.closed || s.places > 0
    }

    /// Returns once a TX FIFO place is free (or the port closed).
    pub async fn room(&self) {
        std::future::poll_fn(|cx| {
            let mut s = self.0.lock();
            if s.closed || s.places > 0 {
                return Poll::Ready(());
            }
            s.place_waiter = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Sends `frame` once a TX FIFO place is free.
    pub async fn send(&self, frame: Frame) -> Result<(), ClientError> {
        std::future::poll_fn(|cx| {
            let mut s = self.0.lock();
            if s.closed {
                return Poll::Ready(Err(ClientError::Write(
                    std::io::ErrorKind::BrokenPipe.into(),
                )));
            }
            if s.places == 0 {
                s.place_waiter = Some(cx.waker().clone());
                return Poll::Pending;
            }
            s.places -= 1;
            s.out.push(frame);
            Poll::Ready(Ok(()))
        })
        .await
    }
}

/// Ends a task of the client.
pub struct Abort(Weak<TaskCell>);

impl Abort {
    /// Drops the task's future (its result never comes).
    pub fn abort(&self) {
        if let Some(cell) = self.0.upgrade() {
            cell.done.store(true, Ordering::Release);
            let future = lock(&cell.future).take();
            drop(future);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A timer of the client.
pub struct Sleep {
    shared: Arc<Shared>,
    at: Moment,
    /// Its place among the timers, once armed.
    key: Option<(Moment, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = self.shared.clone();
        let mut s = shared.lock();
        if s.now >= self.at {
            if let Some(key) = self.key.take() {
                s.timers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                s.next_timer += 1;
                let k = (self.at, s.next_timer);
                self.key = Some(k);
                k
            }
        };
        s.timers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.shared.lock().timers.remove(&key);
        }
    }
}

/// Something handed to the client, at a bus time.
enum Input {
    Frame(Frame),
    Places(u32),
}

/// Steps the client through the bus's time (see the module's
/// documentation).
pub struct Driver {
    shared: Arc<Shared>,
    reader: FrameReader,
    writer: FrameWriter,
    /// The client's inbox; `None` once the port closed.
    frames: Option<mpsc::UnboundedSender<Frame>>,
    /// Handed but not yet due, in time order.
    inputs: VecDeque<(Moment, Input)>,
    /// The time record before the next item.
    stamp: Option<u64>,
    /// Records to send, in order.
    outbox: Vec<u8>,
    /// The timer the bridge was last told of.
    told_wake: Option<Moment>,
    /// The first `Until` came (the client runs from there: it joined the
    /// bus's time then).
    started: bool,
}

impl Driver {
    /// A driver for a client on the timed port `reader`/`writer`, with
    /// the handle its tasks use and the inbox of the frames it hears.
    pub fn new(
        reader: FrameReader,
        writer: FrameWriter,
    ) -> (Driver, Handle, mpsc::UnboundedReceiver<Frame>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                now: Moment::ZERO,
                ready: VecDeque::new(),
                tasks: Vec::new(),
                timers: BTreeMap::new(),
                next_timer: 0,
                out: Vec::new(),
                places: 0,
                place_waiter: None,
                closed: false,
                holding: false,
            }),
            poke: Notify::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            shared: shared.clone(),
            reader,
            writer,
            frames: Some(tx),
            inputs: VecDeque::new(),
            stamp: None,
            outbox: Vec::new(),
            told_wake: None,
            started: false,
        };
        (driver, Handle(shared), rx)
    }

    /// Drives the client until `root` (one of its tasks) ends; returns
    /// its result (`None`: it was aborted). Every task of the client ends
    /// with it.
    pub async fn run<T>(mut self, mut root: oneshot::Receiver<T>) -> Option<T> {
        loop {
            // What was woken from outside runs at the time reached.
            if self.started {
                self.step_outside().await;
            }
            match root.try_recv() {
                Ok(v) => return Some(v),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let open = self.frames.is_some();
            tokio::select! {
                biased;
                item = self.reader.next_item(), if open => match item {
                    Ok(Some(item)) => self.take(item).await,
                    Ok(None) | Err(_) => self.close(),
                },
                _ = self.shared.poke.notified() => {}
            }
        }
    }

    /// The port closed: the client hears the end, and sends no more.
    fn close(&mut self) {
        self.frames = None;
        let waiter = {
            let mut s = self.shared.lock();
            s.closed = true;
            s.place_waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    }

    async fn take(&mut self, item: Item) {
        let at = match self.stamp.take() {
            Some(t) => Moment::from_ns(t),
            None => self.shared.lock().now,
        };
        match item {
            Item::At(t) => self.stamp = Some(t),
            Item::Frame(f) => self.inputs.push_back((at, Input::Frame(f))),
            Item::TxFree(n) => self.inputs.push_back((at, Input::Places(n))),
            Item::Until(g) => {
                self.started = true;
                self.until(Moment::from_ns(g)).await
            }
            // Only a client sends these.
            Item::Idle { .. } | Item::SetFilter(_) => {}
        }
    }

    /// Takes every event before `g` in time order, then says how far the
    /// client has got and when its next timer is.
    async fn until(&mut self, g: Moment) {
        loop {
            let input = self.inputs.front().map(|(t, _)| *t);
            let timer = self.shared.lock().timers.keys().next().map(|k| k.0);
            let next = match (input, timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next >= g {
                break;
            }
            self.step(next);
        }
        {
            let mut s = self.shared.lock();
            s.now = s.now.max(g);
        }
        self.flush().await;
    }

    /// One step at `t`: the time moves there (never back), what is due is
    /// handed over, timers fire, and every task runs until none can go on.
    fn step(&mut self, t: Moment) {
        let now = {
            let mut s = self.shared.lock();
            s.now = s.now.max(t);
            s.now
        };
        let mut wakers = Vec::new();
        while self.inputs.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, input)) = self.inputs.pop_front() else {
                break;
            };
            match input {
                Input::Frame(f) => {
                    if let Some(tx) = &self.frames {
                        let _ = tx.send(f);
                    }
                }
                Input::Places(n) => {
                    let mut s = self.shared.lock();
                    s.places = s.places.saturating_add(n);
                    wakers.extend(s.place_waiter.take());
                }
            }
        }
        {
            let mut s = self.shared.lock();
            while let Some(entry) = s.timers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                wakers.push(entry.remove());
            }
        }
        wakers.into_iter().for_each(Waker::wake);
        self.run_ready();
        self.collect(now);
    }

    /// Polls ready tasks, in the order they were woken, until none is.
    fn run_ready(&self) {
        loop {
            let Some(cell) = self.shared.lock().ready.pop_front() else {
                return;
            };
            cell.queued.store(false, Ordering::Release);
            let waker = Waker::from(cell.clone());
            let mut cx = Context::from_waker(&waker);
            let mut slot = lock(&cell.future);
            if let Some(f) = slot.as_mut()
                && f.as_mut().poll(&mut cx).is_ready()
            {
                *slot = None;
                cell.done.store(true, Ordering::Release);
            }
        }
    }

    /// What the client sent in the step at `now`, stamped, into the outbox.
    fn collect(&mut self, now: Moment) {
        let frames = std::mem::take(&mut self.shared.lock().out);
        let mut buf = [0u8; MAX_ENCODED];
        for f in frames {
            let n = link::encode_at(now.as_ns(), &mut buf);
            self.outbox.extend_from_slice(&buf[..n]);
            let n = link::encode(&f, &mut buf);
            self.outbox.extend_from_slice(&buf[..n]);
        }
    }

    /// Runs what was woken from outside the bus, at the time reached; tells
    /// the bridge if that sent something or moved the next timer.
    async fn step_outside(&mut self) {
        self.run_ready();
        let now = self.shared.lock().now;
        self.collect(now);
        let wake = self.next_timer();
        if !self.outbox.is_empty() || wake != self.told_wake {
            self.flush().await;
        }
    }

    fn next_timer(&self) -> Option<Moment> {
        self.shared.lock().timers.keys().next().map(|k| k.0)
    }

    /// Sends the outbox, then (unless it holds the bus's time) where the
    /// client is and its next timer.
    async fn flush(&mut self) {
        // Separate statements: a lock's guard lives to the end of its
        // statement.
        let now = self.shared.lock().now;
        let holding = self.shared.lock().holding;
        let wake = self.next_timer();
        self.told_wake = wake;
        if !holding {
            let mut buf = [0u8; MAX_ENCODED];
            let wake_ns = wake.map_or(NEVER, Moment::as_ns);
            let n = link::encode_idle(now.as_ns(), wake_ns, &mut buf);
            self.outbox.extend_from_slice(&buf[..n]);
        }
        if self.outbox.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.outbox);
        if self.frames.is_some() && self.writer.send_raw(&bytes).await.is_err() {
            self.close();
        }
    }
}

impl Drop for Driver {
    /// Every task of the client ends with it (their futures hold handles
    /// on the executor, so they would otherwise keep each other alive).
    fn drop(&mut self) {
        let tasks = {
            let mut s = self.shared.lock();
            s.ready.clear();
            s.timers.clear();
            std::mem::take(&mut s.tasks)
        };
        for cell in tasks {
            let future = lock(&cell.future).take();
            drop(future);
        }
        self.shared.lock().ready.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver on a socket pair, the far end standing in for the bridge.
    fn pair() -> (
        Driver,
        Handle,
        mpsc::UnboundedReceiver<Frame>,
        tokio::net::UnixStream,
    ) {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (reader, writer) = bus_bridge::client::split(a);
        let (d, h, rx) = Driver::new(reader, writer);
        (d, h, rx, b)
    }

    #[tokio::test]
    async fn tasks_run_in_wake_order_and_timers_fire_in_time_order() {
        let (mut d, h, _rx, _far) = pair();
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, ms) in [("b", 20), ("a", 10), ("c", 10)] {
            let (h2, log) = (h.clone(), log.clone());
            h.spawn(async move {
                h2.sleep_until(Moment::from_ns(ms * 1_000_000)).await;
                lock(&log).push((name, h2.now().as_ns() / 1_000_000));
            });
        }
        d.run_ready();
        assert_eq!(d.next_timer(), Some(Moment::from_ns(10_000_000)));
        d.step(Moment::from_ns(10_000_000));
        d.step(Moment::from_ns(15_000_000));
        assert_eq!(*lock(&log), [("a", 10), ("c", 10)], "armed order at a tie");
        d.step(Moment::from_ns(20_000_000));
        assert_eq!(lock(&log).len(), 3);
        assert_eq!(d.next_timer(), None);
    }

    #[tokio::test]
    async fn sends_wait_for_places_and_go_out_stamped_with_their_step() {
        let (mut d, h, _rx, _far) = pair();
        let f = |n: u8| Frame::new(0x100 + u32::from(n), 0, &[n]).unwrap();
        let h2 = h.clone();
        let (done, _) = h.spawn(async move {
            for n in 0..3 {
                h2.send(f(n)).await.unwrap();
            }
        });
        d.run_ready();
        assert!(d.outbox.is_empty(), "no place yet");
        d.inputs.push_back((Moment::from_ns(500), Input::Places(2)));
        d.step(Moment::from_ns(500));
        let mut dec = proto::link::Decoder::new();
        let items: Vec<_> = d
            .outbox
            .iter()
            .filter_map(|&b| dec.push_item(b))
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            items,
            [
                Item::At(500),
                Item::Frame(f(0)),
                Item::At(500),
                Item::Frame(f(1))
            ]
        );
        drop(done);
    }
}
