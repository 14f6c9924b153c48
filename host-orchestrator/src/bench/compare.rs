//! The comparison benchmark: the seed's headline claim measured. The same
//! padded image goes to N nodes by one broadcast and by per-node (unicast)
//! sessions on a paced CAN FD 1M/5M bus, on each transport, all in one run;
//! the figures (bus-time ratio, bus efficiency, time to all verified against
//! its floor, real-time factor, host cost per node) come from those runs.

use crate::clock::{ClockKind, Moment};
use crate::fleet::{BusSettings, Fleet, FleetBuilder, MasterSettings, NodeGroup};
use crate::holdoff::Policy;
use crate::master::Mode;
use crate::report::Report;
use crate::testbed::{Artifacts, Options, Testbed};
use anyhow::{Context, Result};
use board::strap::Clock;
use bus_bridge::BitTiming;
use proto::msg::{Kind, MASTER_PRIMARY};
use proto::{Frame, NodeType};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The bus every run uses, paced (in real time).
pub const TIMING: BitTiming = BitTiming::Fd1m5m;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct CompareOptions {
    /// Fleet sizes; the largest is the one the targets speak of.
    pub nodes: Vec<usize>,
    /// The drive image is padded to this many bytes.
    pub image_size: u32,
    /// Transports, by name (`uart`, `virtio`).
    pub transports: Vec<String>,
    /// The fixed hold-off window.
    pub hold_off_ms: u64,
    /// How long the idle fleet's CPU use is sampled.
    pub idle_s: u64,
    /// A run that has not settled by then is reported as such.
    pub run_timeout_s: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            nodes: vec![1, 10, 40],
            image_size: 256 * 1024,
            transports: vec!["uart".into(), "virtio".into()],
            hold_off_ms: 500,
            idle_s: 5,
            run_timeout_s: 180,
        }
    }
}

/// How the master sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// One session for every node (the seed).
    Broadcast,
    /// One session per node, one after another (the prior art).
    Unicast,
}

/// One fleet boot, measured.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// `uart` or `virtio`.
    pub transport: String,
    /// Broadcast or unicast.
    pub delivery: Delivery,
    /// Whether the bus ran in real time; unpaced, it waits for its slowest
    /// receiver, so the run shows how fast the host can go.
    pub paced: bool,
    /// The clock it ran on: on the virtual clock every time below is
    /// virtual (and `paced` means nothing), but `wall_s` and
    /// `first_pass_host_s`.
    pub clock: ClockKind,
    /// Host seconds the whole run took, QEMU start-up included.
    pub wall_s: f64,
    /// Host seconds of the first session's first pass (on the wall clock
    /// its `first_pass_wall_s`; on the virtual clock read off samples of
    /// both clocks every 0.1 s of virtual time).
    pub first_pass_host_s: Option<f64>,
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Nodes verified when the run ended.
    pub verified: usize,
    /// From the fleet's power-on (all at once) to the last node verified;
    /// `None` when not every node was verified within the run's timeout.
    pub time_to_all_verified_s: Option<f64>,
    /// Sessions the master ran.
    pub sessions: usize,
    /// Bytes of the object one session carries (manifest and image).
    pub object_bytes: u64,
    /// Object bytes the master sent, repair included.
    pub bytes_sent: u64,
    /// Of which, repair.
    pub repair_bytes: u64,
    /// Bus time of everything the master sent (sessions only).
    pub bus_s: f64,
    /// Bus time of the first session's first pass.
    pub first_pass_bus_s: f64,
    /// Wall time of the first session's first pass.
    pub first_pass_wall_s: f64,
    /// Seconds from the first session's start to its end.
    pub first_session_s: f64,
    /// Frames the bridge could not hand to a node because its receive
    /// queue was full.
    pub overruns: u64,
    /// CPU the node processes used per node while the first session's
    /// first pass ran, as a fraction of one core.
    pub cpu_receiving_per_node: Option<f64>,
    /// CPU the whole fleet used while idle (every node running its app),
    /// as a fraction of one core; measured on the largest broadcast run.
    pub cpu_idle_fleet: Option<f64>,
    /// Proportional set size per node process, MiB; largest broadcast run.
    pub pss_per_node_mib: Option<f64>,
}

/// The fleet file of one run: `nodes` drives on one paced FD 1M/5M segment.
pub fn fleet(
    transport: &str,
    nodes: usize,
    delivery: Delivery,
    paced: bool,
    clock: Clock,
    opts: &CompareOptions,
) -> Result<Fleet> {
    let mode = match delivery {
        Delivery::Broadcast => Mode::Selected,
        Delivery::Unicast => Mode::Unicast,
    };
    // Out of range is refused by the fleet's own checks, naming the field.
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    FleetBuilder {
        image_size: Some(opts.image_size),
        bus: BusSettings {
            preset: TIMING,
            paced,
            transport: crate::fleet::transport(transport)?,
            clock: Some(clock),
            ..BusSettings::default()
        },
        master: MasterSettings {
            policy: Some(Policy::Fixed),
            hold_off_ms: Some(int(opts.hold_off_ms)),
            mode,
            ..MasterSettings::default()
        },
        nodes: vec![NodeGroup {
            count: int(nodes as u64),
            ..NodeGroup::new(NodeType::Drive)
        }],
        images: Default::default(),
    }
    .build()
}

/// One run's shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'a> {
    /// `uart` or `virtio`.
    pub transport: &'a str,
    /// Fleet size.
    pub nodes: usize,
    /// Broadcast or unicast.
    pub delivery: Delivery,
    /// Real-time bus or not.
    pub paced: bool,
    /// Also measure the idle fleet's CPU and memory.
    pub host_cost: bool,
    /// The clock.
    pub clock: Clock,
}

/// Boots one fleet with every node powered on at once, and measures it;
/// returns the fleet's report too. `interrupt` ends the run early (its
/// nodes stopped the graceful way); it is then measured as far as it got.
pub async fn run(
    artifacts: &Artifacts,
    shape: Shape<'_>,
    opts: &CompareOptions,
    interrupt: &CancellationToken,
) -> Result<(Run, Report)> {
    let Shape {
        transport,
        nodes,
        delivery,
        paced,
        host_cost,
        clock,
    } = shape;
    let fleet = fleet(transport, nodes, delivery, paced, clock, opts)?;
    let mut options = Options::new(fleet, artifacts.clone());
    options.power_on_together = true;
    options.interrupt = interrupt.clone();
    let mut tb = Testbed::start(options).await?;
    let timeout = Duration::from_secs(opts.run_timeout_s);
    let deadline = Instant::now() + timeout;
    // CPU samples while the fleet boots, to cut out the first pass later,
    // and the run's clock beside the host's.
    let mut cpu = vec![(Instant::now(), tb.fleet_cpu_time())];
    let mut clocks = vec![(Instant::now(), tb.now())];
    let mut settled = false;
    while Instant::now() < deadline {
        settled = tb
            .wait_settled(Duration::from_millis(100).min(deadline - Instant::now()))
            .await;
        cpu.push((Instant::now(), tb.fleet_cpu_time()));
        clocks.push((Instant::now(), tb.now()));
        if settled || tb.interrupted() {
            break;
        }
    }
    let ttav = settled.then(|| time_to_all_verified(&tb)).flatten();
    let (mut cpu_idle_fleet, mut pss_per_node_mib) = (None, None);
    if host_cost && settled {
        // Let the last session's repair wait run out first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (t0, c0) = (Instant::now(), tb.fleet_cpu_time());
        tokio::time::sleep(Duration::from_secs(opts.idle_s)).await;
        let used = tb.fleet_cpu_time().saturating_sub(c0);
        cpu_idle_fleet = Some(used.as_secs_f64() / t0.elapsed().as_secs_f64());
        pss_per_node_mib = Some(tb.fleet_pss_kib() as f64 / 1024.0 / nodes as f64);
    }
    let t0 = tb.started_at().into_std();
    let report = tb.shutdown().await;
    let mut run = measure(
        shape,
        ttav,
        &report,
        cpu_during_first_pass(&report, t0, &cpu, nodes),
        cpu_idle_fleet,
        pss_per_node_mib,
    );
    run.first_pass_host_s = match report.clock {
        ClockKind::Wall => Some(run.first_pass_wall_s).filter(|s| *s > 0.0),
        ClockKind::Virtual => first_pass_host_s(&report, &clocks),
    };
    Ok((run, report))
}

/// A run's name: transport, size, delivery (`virtio-40-broadcast`), and
/// `-unpaced` for the unpaced one, `-virtual` for the one on the virtual
/// clock.
pub fn label(r: &Run) -> String {
    let delivery = match r.delivery {
        Delivery::Broadcast => "broadcast",
        Delivery::Unicast => "unicast",
    };
    let paced = if r.paced { "" } else { "-unpaced" };
    let clock = match r.clock {
        ClockKind::Wall => "",
        ClockKind::Virtual => "-virtual",
    };
    format!("{}-{}-{delivery}{paced}{clock}", r.transport, r.nodes)
}

/// Power-on (the earliest) to the last node verified.
fn time_to_all_verified(tb: &Testbed) -> Option<f64> {
    let v = tb.fleet();
    let on = v.nodes.values().filter_map(|n| n.spawned_at).min()?;
    let mut last = on;
    for n in v.nodes.values() {
        last = last.max(n.verified_at?);
    }
    Some((last - on).as_secs_f64())
}

/// On the virtual clock: the host seconds between the samples that bracket
/// the first session's first pass (its times are virtual). Samples come
/// every 0.1 s of virtual time, so it is within about two samples' host
/// time.
fn first_pass_host_s(report: &Report, clocks: &[(Instant, Moment)]) -> Option<f64> {
    let b = report.broadcasts.first()?;
    let start = Moment::from_duration(Duration::from_secs_f64(b.started_s));
    let end = start + Duration::from_secs_f64(b.first_pass_wall_s);
    let before = clocks.iter().rev().find(|(_, at)| *at <= start)?;
    let after = clocks.iter().find(|(_, at)| *at >= end)?;
    Some((after.0 - before.0).as_secs_f64())
}

/// CPU per node, as a fraction of one core, between the samples that
/// bracket the first session's first pass.
fn cpu_during_first_pass(
    report: &Report,
    t0: Instant,
    samples: &[(Instant, Duration)],
    nodes: usize,
) -> Option<f64> {
    let b = report.broadcasts.first()?;
    let start = t0 + Duration::from_secs_f64(b.started_s);
    let end = start + Duration::from_secs_f64(b.first_pass_wall_s);
    let before = samples.iter().rev().find(|(at, _)| *at <= start)?;
    let after = samples.iter().find(|(at, _)| *at >= end)?;
    let wall = (after.0 - before.0).as_secs_f64();
    (wall > 0.0).then(|| (after.1 - before.1).as_secs_f64() / wall / nodes as f64)
}

fn measure(
    shape: Shape<'_>,
    ttav: Option<f64>,
    report: &Report,
    cpu_receiving_per_node: Option<f64>,
    cpu_idle_fleet: Option<f64>,
    pss_per_node_mib: Option<f64>,
) -> Run {
    let first = report.broadcasts.first();
    let overruns = report
        .bus
        .as_ref()
        .map_or(0, |b| b.segments.iter().map(|s| s.overruns).sum());
    Run {
        transport: shape.transport.to_string(),
        delivery: shape.delivery,
        paced: shape.paced,
        clock: report.clock,
        wall_s: report.wall_s,
        first_pass_host_s: None,
        nodes: shape.nodes,
        verified: report.nodes_verified,
        time_to_all_verified_s: ttav,
        sessions: report.broadcasts.len(),
        object_bytes: first.map_or(0, |b| b.bytes),
        bytes_sent: report
            .broadcasts
            .iter()
            .map(|b| b.bytes + b.repair_bytes)
            .sum(),
        repair_bytes: report.broadcasts.iter().map(|b| b.repair_bytes).sum(),
        bus_s: report.broadcasts.iter().map(|b| b.bus_s).sum(),
        first_pass_bus_s: first.map_or(0.0, |b| b.first_pass_bus_s),
        first_pass_wall_s: first.map_or(0.0, |b| b.first_pass_wall_s),
        first_session_s: first
            .and_then(|b| Some(b.ended_s? - b.started_s))
            .unwrap_or(0.0),
        overruns,
        cpu_receiving_per_node,
        cpu_idle_fleet,
        pss_per_node_mib,
    }
}

/// The best a CAN FD frame can do: 64 data bytes in the shortest frame the
/// format allows with bootcast's identifier (no dynamic stuff bits), as
/// payload bits per data-rate bit time.
pub fn frame_format_max_efficiency(timing: BitTiming) -> f64 {
    let id = Kind::Data.id(MASTER_PRIMARY);
    let shortest_ns = (0..=255u8)
        .filter_map(|b| Frame::fd_extended(id, &[b; 64]).ok())
        .filter_map(|f| timing.frame_time_ns(&f))
        .min()
        .unwrap_or(u64::MAX);
    efficiency(64, shortest_ns as f64 / 1e9, timing)
}

/// Payload bits over the bits the data rate could carry in `bus_s`.
pub fn efficiency(payload_bytes: u64, bus_s: f64, timing: BitTiming) -> f64 {
    8.0 * payload_bytes as f64 / (bus_s * timing.data_bps() as f64)
}

/// The figures the targets speak of, for one transport.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    /// `uart` or `virtio`.
    pub transport: String,
    /// The fleet size they are for (the largest run).
    pub nodes: usize,
    /// Unicast bus time over broadcast bus time.
    pub bus_time_ratio: Option<f64>,
    /// Broadcast: object bits over the bus time of everything the session
    /// sent (announce, data, ends, repair) at the data rate.
    pub efficiency: Option<f64>,
    /// The same for the first pass alone (no repair).
    pub first_pass_efficiency: Option<f64>,
    /// The frame format's best (see [`frame_format_max_efficiency`]).
    pub frame_format_max: f64,
    /// One node's own boot: the 1-node broadcast run's time to verified,
    /// less its hold-off window and its first pass's wall time.
    pub one_node_boot_s: Option<f64>,
    /// Hold-off window + the image's bus time + one node's boot.
    pub floor_s: Option<f64>,
    /// Broadcast time to all verified over its floor.
    pub over_floor: Option<f64>,
    /// The broadcast's first pass: its bus time over its wall time.
    pub real_time_factor: Option<f64>,
    /// The same on an unpaced bus, which waits for the slowest receiver:
    /// how much faster than real time the host could carry the broadcast.
    pub unpaced_speed: Option<f64>,
    /// The same broadcast on the virtual clock: host seconds of its first
    /// pass over its virtual seconds (how much slower than real time the
    /// host keeps the fleet in step).
    pub virtual_slowdown: Option<f64>,
    /// Its time to all verified, in virtual seconds.
    pub virtual_time_to_all_verified_s: Option<f64>,
    /// Host seconds its whole run took.
    pub virtual_wall_s: Option<f64>,
}

/// The paced run of `transport`, `delivery` and `nodes`, if it ran.
fn paced_run<'a>(
    runs: &'a [Run],
    transport: &str,
    delivery: Delivery,
    nodes: usize,
) -> Option<&'a Run> {
    runs.iter().find(|r| {
        r.transport == transport
            && r.delivery == delivery
            && r.nodes == nodes
            && r.paced
            && r.clock == ClockKind::Wall
    })
}

/// Derives the figures from one transport's runs.
pub fn figures(transport: &str, runs: &[Run], opts: &CompareOptions) -> Figures {
    let n = opts.nodes.iter().copied().max().unwrap_or(0);
    let find = |d: Delivery, nodes: usize| paced_run(runs, transport, d, nodes);
    let unpaced = runs
        .iter()
        .find(|r| r.transport == transport && r.nodes == n && !r.paced)
        .filter(|r| r.first_pass_wall_s > 0.0);
    let on_virtual = runs
        .iter()
        .find(|r| r.transport == transport && r.nodes == n && r.clock == ClockKind::Virtual);
    let bcast = find(Delivery::Broadcast, n).filter(|r| r.sessions > 0);
    let ucast = find(Delivery::Unicast, n).filter(|r| r.sessions > 0);
    let smallest = opts.nodes.iter().copied().min().unwrap_or(0);
    let single = find(Delivery::Broadcast, smallest);
    let hold_off_s = opts.hold_off_ms as f64 / 1e3;
    let one_node_boot_s =
        single.and_then(|r| Some(r.time_to_all_verified_s? - hold_off_s - r.first_pass_wall_s));
    let floor_s = bcast
        .zip(one_node_boot_s)
        .map(|(b, boot)| hold_off_s + b.first_pass_bus_s + boot);
    let complete = |r: &&Run| r.verified == r.nodes;
    Figures {
        transport: transport.to_string(),
        nodes: n,
        bus_time_ratio: bcast
            .filter(complete)
            .zip(ucast.filter(complete))
            .map(|(b, u)| u.bus_s / b.bus_s),
        efficiency: bcast.map(|b| efficiency(b.object_bytes, b.bus_s, TIMING)),
        first_pass_efficiency: bcast
            .map(|b| efficiency(b.object_bytes, b.first_pass_bus_s, TIMING)),
        frame_format_max: frame_format_max_efficiency(TIMING),
        one_node_boot_s,
        floor_s,
        over_floor: bcast
            .and_then(|b| b.time_to_all_verified_s)
            .zip(floor_s)
            .map(|(t, f)| t / f),
        real_time_factor: bcast
            .filter(|b| b.first_pass_wall_s > 0.0)
            .map(|b| b.first_pass_bus_s / b.first_pass_wall_s),
        unpaced_speed: unpaced.map(|b| b.first_pass_bus_s / b.first_pass_wall_s),
        virtual_slowdown: on_virtual
            .filter(|v| v.first_pass_wall_s > 0.0)
            .and_then(|v| Some(v.first_pass_host_s? / v.first_pass_wall_s)),
        virtual_time_to_all_verified_s: on_virtual.and_then(|v| v.time_to_all_verified_s),
        virtual_wall_s: on_virtual.map(|v| v.wall_s),
    }
}

/// Everything one `bench` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// What was run.
    pub options: CompareOptions,
    /// Each fleet boot.
    pub runs: Vec<Run>,
    /// The figures, per transport.
    pub figures: Vec<Figures>,
    /// Stopped by the user before every fleet ran: `runs` holds those that
    /// did (the last one perhaps cut short).
    pub interrupted: bool,
}

/// Runs every fleet: for each transport and size, broadcast then unicast
/// on the paced bus, then the largest broadcast once more unpaced.
/// `progress` hears about each run as it ends, with its fleet's report.
/// Once `interrupt` is cancelled the fleet running ends, and the
/// comparison holds the runs so far.
pub async fn compare(
    artifacts: &Artifacts,
    opts: &CompareOptions,
    interrupt: &CancellationToken,
    mut progress: impl FnMut(&Run, &Report),
) -> Result<Comparison> {
    let largest = opts.nodes.iter().copied().max().unwrap_or(0);
    let mut runs = Vec::new();
    'transports: for transport in &opts.transports {
        let mut shapes = Vec::new();
        for &nodes in &opts.nodes {
            for delivery in [Delivery::Broadcast, Delivery::Unicast] {
                shapes.push(Shape {
                    transport,
                    nodes,
                    delivery,
                    paced: true,
                    host_cost: delivery == Delivery::Broadcast && nodes == largest,
                    clock: Clock::Wall,
                });
            }
        }
        shapes.push(Shape {
            transport,
            nodes: largest,
            delivery: Delivery::Broadcast,
            paced: false,
            host_cost: false,
            clock: Clock::Wall,
        });
        // Side by side: the largest broadcast on the virtual clock, where
        // it can run (virtio, QEMU >= 9).
        if transport == "virtio" && crate::qemu::VirtualTools::find(&artifacts.dir).is_ok() {
            shapes.push(Shape {
                transport,
                nodes: largest,
                delivery: Delivery::Broadcast,
                paced: true,
                host_cost: false,
                clock: Clock::Virtual,
            });
        }
        for shape in shapes {
            let (r, report) = run(artifacts, shape, opts, interrupt)
                .await
                .with_context(|| {
                    format!(
                        "{transport}, {} nodes, {:?}{}{}",
                        shape.nodes,
                        shape.delivery,
                        if shape.paced { "" } else { ", unpaced" },
                        if shape.clock == Clock::Virtual {
                            ", virtual clock"
                        } else {
                            ""
                        }
                    )
                })?;
            progress(&r, &report);
            runs.push(r);
            if interrupt.is_cancelled() {
                break 'transports;
            }
        }
    }
    let figures = opts
        .transports
        .iter()
        .map(|t| figures(t, &runs, opts))
        .collect();
    Ok(Comparison {
        options: opts.clone(),
        runs,
        figures,
        interrupted: interrupt.is_cancelled(),
    })
}

fn secs(s: f64) -> String {
    format!("{s:.2} s")
}

fn pct(f: f64) -> String {
    format!("{:.1}%", f * 100.0)
}

/// A time to all verified, or how far the run got.
fn ttav_cell(r: Option<&Run>, timeout_s: u64) -> String {
    match r {
        None => "—".into(),
        Some(r) => match r.time_to_all_verified_s {
            Some(t) => secs(t),
            None => format!("— ({}/{} in {timeout_s} s)", r.verified, r.nodes),
        },
    }
}

/// One row of the table: a label, a cell per transport, the target.
struct Row {
    label: String,
    cells: Vec<String>,
    target: &'static str,
}

/// What the table's cells read: the runs and figures of one comparison.
struct Cells<'a> {
    c: &'a Comparison,
    /// The largest fleet, which the figures are about.
    n: usize,
}

impl Cells<'_> {
    fn row(&self, label: String, target: &'static str, cell: impl Fn(&str) -> String) -> Row {
        let cells = self.c.options.transports.iter().map(|t| cell(t)).collect();
        Row {
            label,
            cells,
            target,
        }
    }

    fn run(&self, t: &str, d: Delivery, nodes: usize) -> Option<&Run> {
        paced_run(&self.c.runs, t, d, nodes)
    }

    fn figures(&self, t: &str) -> Option<&Figures> {
        self.c.figures.iter().find(|f| f.transport == t)
    }

    /// A figure of `t`, or a dash.
    fn figure(&self, t: &str, of: impl Fn(&Figures) -> Option<String>) -> String {
        self.figures(t).and_then(of).unwrap_or_else(|| "—".into())
    }

    /// A figure of `t`'s largest paced broadcast, or a dash.
    fn largest(&self, t: &str, of: impl Fn(&Run) -> Option<String>) -> String {
        self.run(t, Delivery::Broadcast, self.n)
            .and_then(of)
            .unwrap_or_else(|| "—".into())
    }

    /// Time to all verified and bus time, broadcast against unicast, of
    /// each fleet size.
    fn per_size(&self) -> Vec<Row> {
        let timeout_s = self.c.options.run_timeout_s;
        let mut rows = Vec::new();
        for &k in &self.c.options.nodes {
            let pair = |t: &str, cell: &dyn Fn(Option<&Run>) -> String| {
                let b = cell(self.run(t, Delivery::Broadcast, k));
                format!("{b} / {}", cell(self.run(t, Delivery::Unicast, k)))
            };
            rows.push(self.row(
                format!("N={k}: time to all verified, broadcast / unicast"),
                "",
                |t| pair(t, &|r| ttav_cell(r, timeout_s)),
            ));
            rows.push(
                self.row(format!("N={k}: bus time, broadcast / unicast"), "", |t| {
                    pair(t, &|r| r.map_or("—".into(), |r| secs(r.bus_s)))
                }),
            );
        }
        rows
    }

    /// The bus figures of the largest fleet: the ratio, the efficiency and
    /// the time against its floor.
    fn bus_figures(&self) -> Vec<Row> {
        let n = self.n;
        let max = self.c.figures.first().map_or_else(
            || frame_format_max_efficiency(TIMING),
            |f| f.frame_format_max,
        );
        vec![
            self.row(format!("N={n}: bus-time ratio, unicast / broadcast"), "≥ 36", |t| {
                self.figure(t, |f| Some(format!("{:.1}", f.bus_time_ratio?)))
            }),
            self.row(
                format!(
                    "N={n}: broadcast bus efficiency (payload bits / bus time × data rate), repair included (first pass); frame-format maximum {max:.3}"
                ),
                "≥ 90% of max",
                |t| {
                    self.figure(t, |f| {
                        let (e, p) = (f.efficiency?, f.first_pass_efficiency?);
                        let of_max = |x: f64| pct(x / f.frame_format_max);
                        Some(format!("{e:.3} = {} of max ({})", of_max(e), of_max(p)))
                    })
                },
            ),
            self.row(
                format!(
                    "N={n}: broadcast time to all verified / floor (hold-off + image bus time + one node's boot)"
                ),
                "≤ 1.2",
                |t| {
                    let b = self.run(t, Delivery::Broadcast, n);
                    let b = b.and_then(|r| r.time_to_all_verified_s);
                    self.figure(t, |f| {
                        let (fl, r, boot) = (f.floor_s?, f.over_floor?, f.one_node_boot_s?);
                        let (b, fl, boot) = (secs(b?), secs(fl), secs(boot));
                        Some(format!("{b} / {fl} (boot {boot}) = {r:.2}"))
                    })
                },
            ),
        ]
    }

    /// What the largest broadcast cost the host, and how it kept time.
    fn host_figures(&self) -> Vec<Row> {
        let n = self.n;
        let core = |c: Option<f64>| Some(format!("{} of one core", pct(c?)));
        vec![
            self.row(
                format!("N={n}: real-time factor of the broadcast's first pass (bus time / wall time)"),
                "≥ 1.0",
                |t| self.figure(t, |f| Some(format!("{:.3}", f.real_time_factor?))),
            ),
            self.row(
                format!(
                    "N={n}: the same broadcast on an unpaced bus (it waits for its slowest receiver): bus time / wall time"
                ),
                "",
                |t| self.figure(t, |f| Some(format!("{:.3}", f.unpaced_speed?))),
            ),
            self.row(
                format!("N={n}: broadcast receive-queue overruns / repair bytes"),
                "",
                |t| self.largest(t, |r| Some(format!("{} / {}", r.overruns, r.repair_bytes))),
            ),
            self.row(
                format!("N={n}: CPU per node while the broadcast's first pass runs"),
                "",
                |t| self.largest(t, |r| core(r.cpu_receiving_per_node)),
            ),
            self.row(
                format!("N={n}: CPU of the whole idle fleet"),
                "< 5% of one core",
                |t| self.largest(t, |r| core(r.cpu_idle_fleet)),
            ),
            self.row(
                format!(
                    "N={n}: the broadcast on the virtual clock: time to all verified (virtual) / the run in host seconds; first pass host / virtual time"
                ),
                "",
                |t| {
                    self.figure(t, |f| {
                        let ttav = f.virtual_time_to_all_verified_s.map_or("—".into(), secs);
                        let slow = f.virtual_slowdown.map_or("—".into(), |s| format!("{s:.1}×"));
                        Some(format!("{ttav} / {}; {slow}", secs(f.virtual_wall_s?)))
                    })
                },
            ),
            self.row("private memory (PSS) per node".into(), "", |t| {
                self.largest(t, |r| Some(format!("{:.1} MiB", r.pss_per_node_mib?)))
            }),
        ]
    }
}

/// The comparison as one markdown table: a column per transport.
pub fn table(c: &Comparison) -> String {
    let o = &c.options;
    let object = c.runs.iter().map(|r| r.object_bytes).max().unwrap_or(0);
    let mut out = format!(
        "Broadcast against unicast: drive nodes, the drive image padded to {} bytes ({object}-byte object with its manifest), \
         paced CAN FD 1M/5M, fixed hold-off {} ms, every node powered on at once.\n\n| |",
        o.image_size, o.hold_off_ms
    );
    for t in &o.transports {
        out += &format!(" {t} |");
    }
    out += " target |\n|---|";
    out += &"---:|".repeat(o.transports.len());
    out += "---|\n";
    let cells = Cells {
        c,
        n: o.nodes.iter().copied().max().unwrap_or(0),
    };
    let rows = [cells.per_size(), cells.bus_figures(), cells.host_figures()];
    for row in rows.iter().flatten() {
        out += &format!("| {} |", row.label);
        for cell in &row.cells {
            out += &format!(" {cell} |");
        }
        out += &format!(" {} |\n", row.target);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_format_maximum_is_that_of_a_64_byte_fd_frame_without_stuff_bits() {
        // 29-bit identifier with BRS at 1M/5M: the arbitration phase, ACK and
        // end of frame at 1 Mbit/s, 64 data bytes and CRC-21 at 5 Mbit/s.
        let max = frame_format_max_efficiency(TIMING);
        assert!(max > 0.5 && max < 0.8, "{max}");
        // No stuffing pattern makes a 64-byte frame shorter than the best.
        let id = Kind::Data.id(MASTER_PRIMARY);
        let zeros = Frame::fd_extended(id, &[0; 64]).unwrap();
        let zeros_eff = efficiency(
            64,
            TIMING.frame_time_ns(&zeros).unwrap() as f64 / 1e9,
            TIMING,
        );
        assert!(zeros_eff < max, "{zeros_eff} vs {max}");
    }

    #[test]
    fn a_run_fleet_is_the_one_its_file_text_made() {
        let opts = CompareOptions::default();
        for (transport, delivery, mode, paced) in [
            ("uart", Delivery::Broadcast, "selected", true),
            ("virtio", Delivery::Unicast, "unicast", false),
        ] {
            let built = fleet(transport, 10, delivery, paced, Clock::Wall, &opts).unwrap();
            let parsed = Fleet::parse(&format!(
                "image_size = \"262144\"\n[bus]\npreset = \"fd-1m-5m\"\npaced = {paced}\nclock = \"wall\"\n\
                 transport = \"{transport}\"\n[master]\npolicy = \"fixed\"\nhold_off_ms = 500\n\
                 mode = \"{mode}\"\n[[nodes]]\ntype = \"drive\"\ncount = 10\n"
            ))
            .unwrap();
            assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
        }
        let err = fleet("can", 1, Delivery::Broadcast, true, Clock::Wall, &opts).unwrap_err();
        assert!(
            format!("{err:#}").contains("bus.transport: unknown transport \"can\""),
            "{err:#}"
        );
    }

    /// Runs on two transports: uart complete with host costs, virtio with
    /// an unfinished broadcast and no unicast at N=4.
    fn two_transports() -> Comparison {
        let opts = CompareOptions {
            nodes: vec![1, 4],
            ..CompareOptions::default()
        };
        let run = |transport: &str, delivery, nodes, paced, ttav: Option<f64>, bus_s| Run {
            transport: transport.into(),
            delivery,
            paced,
            clock: ClockKind::Wall,
            wall_s: 0.0,
            first_pass_host_s: None,
            nodes,
            verified: if ttav.is_some() { nodes } else { nodes - 1 },
            time_to_all_verified_s: ttav,
            sessions: if delivery == Delivery::Broadcast {
                1
            } else {
                nodes
            },
            object_bytes: 262_304,
            bytes_sent: 262_304,
            repair_bytes: 128,
            bus_s,
            first_pass_bus_s: 0.6,
            first_pass_wall_s: 0.62,
            first_session_s: 0.9,
            overruns: 3,
            cpu_receiving_per_node: (nodes == 4).then_some(0.031),
            cpu_idle_fleet: (nodes == 4 && paced).then_some(0.012),
            pss_per_node_mib: (nodes == 4 && paced).then_some(41.25),
        };
        let b = Delivery::Broadcast;
        let u = Delivery::Unicast;
        let mut runs = vec![
            run("uart", b, 1, true, Some(2.0), 0.61),
            run("uart", u, 1, true, Some(2.1), 0.61),
            run("uart", b, 4, true, Some(2.4), 0.63),
            run("uart", u, 4, true, Some(6.5), 2.44),
            run("uart", b, 4, false, Some(1.2), 0.63),
            run("virtio", b, 1, true, Some(1.8), 0.61),
            run("virtio", u, 1, true, Some(1.9), 0.61),
            run("virtio", b, 4, true, None, 0.7),
        ];
        runs[4].first_pass_wall_s = 0.2;
        // virtio's N=4 broadcast again on the virtual clock: its times are
        // virtual, so it is none of the paced runs above.
        let mut on_virtual = run("virtio", b, 4, true, Some(1.1), 0.7);
        on_virtual.clock = ClockKind::Virtual;
        on_virtual.wall_s = 9.5;
        on_virtual.first_pass_host_s = Some(4.96);
        runs.push(on_virtual);
        let figures = opts
            .transports
            .iter()
            .map(|t| figures(t, &runs, &opts))
            .collect();
        Comparison {
            options: opts,
            runs,
            figures,
            interrupted: false,
        }
    }

    #[test]
    fn the_table_has_a_row_per_figure_and_a_column_per_transport() {
        let text = table(&two_transports());
        assert_eq!(text, GOLDEN);
    }

    /// The table as it was before it was split into rows.
    const GOLDEN: &str = r#"Broadcast against unicast: drive nodes, the drive image padded to 262144 bytes (262304-byte object with its manifest), paced CAN FD 1M/5M, fixed hold-off 500 ms, every node powered on at once.

| | uart | virtio | target |
|---|---:|---:|---|
| N=1: time to all verified, broadcast / unicast | 2.00 s / 2.10 s | 1.80 s / 1.90 s |  |
| N=1: bus time, broadcast / unicast | 0.61 s / 0.61 s | 0.61 s / 0.61 s |  |
| N=4: time to all verified, broadcast / unicast | 2.40 s / 6.50 s | — (3/4 in 180 s) / — |  |
| N=4: bus time, broadcast / unicast | 0.63 s / 2.44 s | 0.70 s / — |  |
| N=4: bus-time ratio, unicast / broadcast | 3.9 | — | ≥ 36 |
| N=4: broadcast bus efficiency (payload bits / bus time × data rate), repair included (first pass); frame-format maximum 0.632 | 0.666 = 105.4% of max (110.7%) | 0.600 = 94.9% of max (110.7%) | ≥ 90% of max |
| N=4: broadcast time to all verified / floor (hold-off + image bus time + one node's boot) | 2.40 s / 1.98 s (boot 0.88 s) = 1.21 | — | ≤ 1.2 |
| N=4: real-time factor of the broadcast's first pass (bus time / wall time) | 0.968 | 0.968 | ≥ 1.0 |
| N=4: the same broadcast on an unpaced bus (it waits for its slowest receiver): bus time / wall time | 3.000 | — |  |
| N=4: broadcast receive-queue overruns / repair bytes | 3 / 128 | 3 / 128 |  |
| N=4: CPU per node while the broadcast's first pass runs | 3.1% of one core | 3.1% of one core |  |
| N=4: CPU of the whole idle fleet | 1.2% of one core | 1.2% of one core | < 5% of one core |
| N=4: the broadcast on the virtual clock: time to all verified (virtual) / the run in host seconds; first pass host / virtual time | — | 1.10 s / 9.50 s; 8.0× |  |
| private memory (PSS) per node | 41.2 MiB | 41.2 MiB |  |
"#;

    #[test]
    fn figures_compare_the_largest_fleet_and_subtract_the_window_for_one_boot() {
        let opts = CompareOptions {
            nodes: vec![1, 4],
            transports: vec!["virtio".into()],
            ..CompareOptions::default()
        };
        let run = |delivery, nodes, ttav: f64, bus: f64| Run {
            transport: "virtio".into(),
            delivery,
            paced: true,
            clock: ClockKind::Wall,
            wall_s: 0.0,
            first_pass_host_s: None,
            nodes,
            verified: nodes,
            time_to_all_verified_s: Some(ttav),
            sessions: if delivery == Delivery::Broadcast {
                1
            } else {
                nodes
            },
            object_bytes: 60_000,
            bytes_sent: 60_000,
            repair_bytes: 0,
            bus_s: bus,
            first_pass_bus_s: 0.2,
            first_pass_wall_s: 0.25,
            first_session_s: 0.7,
            overruns: 0,
            cpu_receiving_per_node: None,
            cpu_idle_fleet: None,
            pss_per_node_mib: None,
        };
        let runs = vec![
            run(Delivery::Broadcast, 1, 1.0, 0.2),
            run(Delivery::Unicast, 1, 1.0, 0.2),
            run(Delivery::Broadcast, 4, 1.5, 0.2),
            run(Delivery::Unicast, 4, 3.0, 0.8),
        ];
        let f = figures("virtio", &runs, &opts);
        assert_eq!(f.nodes, 4);
        assert_eq!(f.bus_time_ratio, Some(4.0));
        // 1.0 s - 0.5 s window - 0.25 s first pass.
        let boot = f.one_node_boot_s.unwrap();
        assert!((boot - 0.25).abs() < 1e-9, "{boot}");
        let floor = f.floor_s.unwrap();
        assert!((floor - (0.5 + 0.2 + 0.25)).abs() < 1e-9, "{floor}");
        assert!((f.real_time_factor.unwrap() - 0.8).abs() < 1e-9);
        // An unfinished unicast run gives no ratio.
        let mut partial = runs.clone();
        partial[3].verified = 2;
        assert_eq!(figures("virtio", &partial, &opts).bus_time_ratio, None);
        let text = table(&Comparison {
            options: opts.clone(),
            runs,
            figures: vec![f],
            interrupted: false,
        });
        assert!(
            text.contains("| N=4: bus-time ratio, unicast / broadcast | 4.0 | ≥ 36 |"),
            "{text}"
        );
    }
}
