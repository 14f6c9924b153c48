//! [`Clock`]: where a host client's time comes from, and the few things
//! that depend on it (sleeping, ticking, spawning, its bus port).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bus_bridge::client::{ClientError, FrameReader, FrameWriter};
use proto::Frame;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::moment::Moment;
use super::virt;

/// The time source of a host client (a master, the supervisor). Its logic
/// reads time only through it, as a [`Moment`].
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    /// The host's clock, counted from `t0`.
    Wall { t0: Instant },
    /// The bus's virtual time, stepped by the client's driver.
    Virtual(virt::Handle),
}

impl Clock {
    /// The host's clock, `Moment::ZERO` at `t0`.
    pub fn wall(t0: Instant) -> Clock {
        Clock(Source::Wall { t0 })
    }

    /// Whether this is the bus's virtual time.
    pub fn is_virtual(&self) -> bool {
        matches!(self.0, Source::Virtual(_))
    }

    /// Now.
    pub fn now(&self) -> Moment {
        match &self.0 {
            Source::Wall { t0 } => {
                Moment::from_duration(Instant::now().saturating_duration_since(*t0))
            }
            Source::Virtual(h) => h.now(),
        }
    }

    /// On the virtual clock, keeps the bus's time where this client's step
    /// is, from the end of the step on (see `virt::Handle::hold_bus`): the
    /// run ends at a point of virtual time. On the wall clock, nothing.
    pub fn hold_bus(&self) {
        if let Source::Virtual(h) = &self.0 {
            h.hold_bus();
        }
    }

    /// Ready at `at`.
    pub fn sleep_until(&self, at: Moment) -> Sleep {
        match &self.0 {
            Source::Wall { t0 } => {
                let deadline = *t0 + Duration::from_nanos(at.as_ns());
                Sleep(SleepOn::Wall(Box::pin(tokio::time::sleep_until(deadline))))
            }
            Source::Virtual(h) => Sleep(SleepOn::Virtual(h.sleep_until(at))),
        }
    }

    /// `Ok` with `f`'s output if it is ready before `at`, else `Err`.
    pub async fn timeout_at<F: Future>(&self, at: Moment, f: F) -> Result<F::Output, Elapsed> {
        tokio::select! {
            biased;
            v = f => Ok(v),
            () = self.sleep_until(at) => Err(Elapsed),
        }
    }

    /// Ticks now, then every `period` (as `tokio::time::interval`).
    pub fn interval(&self, period: Duration) -> Ticker {
        match &self.0 {
            Source::Wall { .. } => Ticker(TickOn::Wall(tokio::time::interval(period))),
            Source::Virtual(h) => Ticker(TickOn::Virtual {
                clock: h.clone(),
                next: h.now(),
                period,
            }),
        }
    }

    /// Runs `f` as a task of the client: on the tokio runtime (wall), or
    /// on the client's own executor (virtual).
    pub fn spawn<T, F>(&self, f: F) -> Task<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match &self.0 {
            Source::Wall { .. } => Task(TaskOn::Wall(tokio::spawn(f))),
            Source::Virtual(h) => {
                let (rx, abort) = h.spawn(f);
                Task(TaskOn::Virtual(rx, abort))
            }
        }
    }
}

/// The run's time as the testbed reads it, for reports and the live view:
/// the host's clock from the testbed's start, or the bridge's virtual time
/// (the time every member of the bus has reached).
#[derive(Clone)]
pub enum RunClock {
    /// The host's clock, `Moment::ZERO` at `t0`.
    Wall {
        /// The testbed's start.
        t0: Instant,
    },
    /// The bus's virtual time.
    Bus(bus_bridge::TimeReader),
}

impl RunClock {
    /// Which clock it is, as reports name it.
    pub fn kind(&self) -> ClockKind {
        match self {
            RunClock::Wall { .. } => ClockKind::Wall,
            RunClock::Bus(_) => ClockKind::Virtual,
        }
    }

    /// Now.
    pub fn now(&self) -> Moment {
        match self {
            RunClock::Wall { t0 } => {
                Moment::from_duration(Instant::now().saturating_duration_since(*t0))
            }
            RunClock::Bus(r) => Moment::from_ns(r.now_ns()),
        }
    }
}

/// Which clock a run's times are on; "virtual" or "wall" in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    /// The host's clock.
    Wall,
    /// The bus's virtual time.
    Virtual,
}

impl ClockKind {
    /// Its name, as JSON and the command line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::Wall => "wall",
            ClockKind::Virtual => "virtual",
        }
    }
}

impl From<board::strap::Clock> for ClockKind {
    fn from(c: board::strap::Clock) -> ClockKind {
        match c {
            board::strap::Clock::Wall => ClockKind::Wall,
            board::strap::Clock::Virtual => ClockKind::Virtual,
        }
    }
}

/// The deadline of [`Clock::timeout_at`] came first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

/// A sleep on a [`Clock`].
pub struct Sleep(SleepOn);

enum SleepOn {
    Wall(Pin<Box<tokio::time::Sleep>>),
    Virtual(virt::Sleep),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            SleepOn::Wall(s) => s.as_mut().poll(cx),
            SleepOn::Virtual(s) => Pin::new(s).poll(cx),
        }
    }
}

/// Ticks at a fixed period on a [`Clock`].
pub struct Ticker(TickOn);

enum TickOn {
    Wall(tokio::time::Interval),
    /// Never late on the virtual clock, so every tick is on time.
    Virtual {
        clock: virt::Handle,
        next: Moment,
        period: Duration,
    },
}

impl Ticker {
    /// Waits for the next tick. Cancel-safe.
    pub async fn tick(&mut self) {
        match &mut self.0 {
            TickOn::Wall(i) => {
                i.tick().await;
            }
            TickOn::Virtual {
                clock,
                next,
                period,
            } => {
                clock.sleep_until(*next).await;
                *next += *period;
            }
        }
    }
}

/// A task of a host client, as [`Clock::spawn`] started it. Dropping it
/// lets the task run on; [`Task::abort`] ends it.
pub struct Task<T>(TaskOn<T>);

enum TaskOn<T> {
    Wall(tokio::task::JoinHandle<T>),
    Virtual(oneshot::Receiver<T>, virt::Abort),
}

/// Ends its task when dropped.
pub struct AbortOnDrop<T>(pub Task<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a task gave no result: it panicked or was aborted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaskEnded(pub String);

impl<T> Task<T> {
    /// Ends the task.
    pub fn abort(&self) {
        match &self.0 {
            TaskOn::Wall(h) => h.abort(),
            TaskOn::Virtual(_, a) => a.abort(),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, TaskEnded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            TaskOn::Wall(h) => Pin::new(h)
                .poll(cx)
                .map(|r| r.map_err(|e| TaskEnded(e.to_string()))),
            TaskOn::Virtual(rx, _) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.map_err(|_| TaskEnded("task ended without a result".into()))),
        }
    }
}

/// The frames a host client hears.
pub enum Inbox {
    /// Read from its port by a task of its own (wall).
    Wall(mpsc::Receiver<Frame>),
    /// Handed over by its driver at their bus times (virtual).
    Virtual(mpsc::UnboundedReceiver<Frame>),
}

impl Inbox {
    /// The next frame; `None` once the port has closed.
    pub async fn recv(&mut self) -> Option<Frame> {
        match self {
            Inbox::Wall(rx) => rx.recv().await,
            Inbox::Virtual(rx) => rx.recv().await,
        }
    }

    /// A frame that is already there.
    pub fn try_recv(&mut self) -> Option<Frame> {
        match self {
            Inbox::Wall(rx) => rx.try_recv().ok(),
            Inbox::Virtual(rx) => rx.try_recv().ok(),
        }
    }
}

/// How a host client sends.
pub struct PortWriter(WriteTo);

enum WriteTo {
    /// Straight to its port; the bridge pushes back when its FIFO is full.
    Wall(FrameWriter),
    /// Through its driver, once a FIFO place is free in virtual time.
    Virtual(virt::Handle),
}

impl PortWriter {
    /// Writes straight to a port (wall).
    pub fn wall(w: FrameWriter) -> PortWriter {
        PortWriter(WriteTo::Wall(w))
    }

    /// Sends `frame`, waiting for room on the bus.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        match &mut self.0 {
            WriteTo::Wall(w) => w.send(frame).await,
            WriteTo::Virtual(h) => h.send(*frame).await,
        }
    }

    /// Whether a send would go at once: on the virtual clock, whether a
    /// FIFO place is free; on the wall clock always (the socket pushes
    /// back, and nothing holds the bus's time meanwhile).
    pub fn has_room(&self) -> bool {
        match &self.0 {
            WriteTo::Wall(_) => true,
            WriteTo::Virtual(h) => h.has_room(),
        }
    }

    /// Returns once [`PortWriter::has_room`] holds.
    pub async fn room(&self) {
        match &self.0 {
            WriteTo::Wall(_) => {}
            WriteTo::Virtual(h) => h.room().await,
        }
    }

    /// Sends `frames` in order, waiting for room on the bus: on the wall
    /// clock in one write, on the virtual clock one FIFO place at a time.
    pub async fn send_all(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        match &mut self.0 {
            WriteTo::Wall(w) => w.send_all(frames).await,
            WriteTo::Virtual(h) => {
                for f in frames {
                    h.send(*f).await?;
                }
                Ok(())
            }
        }
    }
}

/// A host client on the virtual clock, before it runs: its clock and port,
/// and [`Driving`], which runs it.
pub struct VirtualClient {
    /// The client's clock.
    pub clock: Clock,
    /// What it hears.
    pub inbox: Inbox,
    /// How it sends.
    pub writer: PortWriter,
    /// Runs it.
    pub driving: Driving,
}

/// Runs a host client on the virtual clock (see [`VirtualClient`]).
pub struct Driving(virt::Driver);

impl VirtualClient {
    /// A client on a timed port (`bus_bridge::PortConfig::timed`).
    pub fn new(reader: FrameReader, writer: FrameWriter) -> VirtualClient {
        let (driver, handle, inbox) = virt::Driver::new(reader, writer);
        VirtualClient {
            clock: Clock(Source::Virtual(handle.clone())),
            inbox: Inbox::Virtual(inbox),
            writer: PortWriter(WriteTo::Virtual(handle)),
            driving: Driving(driver),
        }
    }
}

impl Driving {
    /// Steps the client through the bus's time until `root` (spawned on
    /// its clock) ends; its result, or why there is none. Every task of the
    /// client ends with it.
    pub async fn run<T>(self, root: Task<T>) -> Result<T, TaskEnded> {
        match root.0 {
            TaskOn::Virtual(rx, _) => self
                .0
                .run(rx)
                .await
                .ok_or_else(|| TaskEnded("aborted".into())),
            TaskOn::Wall(h) => h.await.map_err(|e| TaskEnded(e.to_string())),
        }
    }
}
