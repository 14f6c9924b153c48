//! The live view of a running testbed, fed by the supervisor's fleet
//! snapshots and the masters' log: bars on a terminal ([`term`]), plain
//! lines elsewhere ([`plain`]), both drawn from one [`screen::Screen`].
//! [`stderr`] keeps other lines above the bars; [`logging`] sends log
//! lines to the run folder's log file and warnings to the terminal.

pub mod logging;
pub mod plain;
pub mod screen;
pub mod stderr;
pub mod term;

use crate::clock::RunClock;
use crate::report::MasterLog;
use crate::supervisor::FleetView;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often bars are redrawn without news (countdowns, the clock).
const TICK: Duration = Duration::from_millis(100);

/// A running live view; [`LiveView::end`] draws the last state and stops it.
pub struct LiveView {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl LiveView {
    /// Starts the view on `tasks`: bars when stderr is a terminal, plain
    /// lines otherwise. It also stops when `cancel` is cancelled.
    pub fn start(
        fleet: watch::Receiver<Arc<FleetView>>,
        masters: watch::Receiver<Arc<MasterLog>>,
        clock: RunClock,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> LiveView {
        let stop = cancel.child_token();
        let bars = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var("TERM").is_ok_and(|t| t != "dumb");
        let task = tasks.spawn(run(fleet, masters, clock, bars, stop.clone()));
        LiveView { stop, task }
    }

    /// Draws the last state and ends the view.
    pub async fn end(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

enum Out {
    Bars(term::Bars),
    Plain(plain::Plain),
}

async fn run(
    mut fleet: watch::Receiver<Arc<FleetView>>,
    mut masters: watch::Receiver<Arc<MasterLog>>,
    clock: RunClock,
    bars: bool,
    stop: CancellationToken,
) {
    let mut out: Option<Out> = None;
    let (mut fleet_open, mut masters_open) = (true, true);
    loop {
        let v = fleet.borrow_and_update().clone();
        let l = masters.borrow_and_update().clone();
        let now_s = clock.now().as_secs_f64();
        let s = screen::Screen::of(&v, &l, now_s);
        match out.get_or_insert_with(|| {
            if bars {
                Out::Bars(term::Bars::new(&s))
            } else {
                Out::Plain(plain::Plain::default())
            }
        }) {
            Out::Bars(b) => b.show(&s),
            Out::Plain(p) => p.show(&v, &l, now_s),
        }
        let tick = if bars {
            TICK
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            r = fleet.changed(), if fleet_open => fleet_open = r.is_ok(),
            r = masters.changed(), if masters_open => masters_open = r.is_ok(),
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => break,
        }
    }
    let v = fleet.borrow().clone();
    let l = masters.borrow().clone();
    let now_s = clock.now().as_secs_f64();
    match out {
        Some(Out::Bars(b)) => b.finish(&screen::Screen::of(&v, &l, now_s)),
        Some(Out::Plain(mut p)) => p.show(&v, &l, now_s),
        None => {}
    }
}
