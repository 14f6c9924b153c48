//! The comparison benchmark: the seed's headline claim measured. The same
//! padded image goes to N nodes by one broadcast and by per-node (unicast)
//! sessions on a paced CAN FD 1M/5M bus, on each transport, all in one run;
//! the figures (bus-time ratio, bus efficiency, time to all verified against
//! its floor, real-time factor, host cost per node) come from those runs.

use crate::fleet::Fleet;
use crate::report::Report;
use crate::testbed::{Artifacts, Options, Testbed};
use anyhow::{Context, Result};
use bus_bridge::BitTiming;
use proto::Frame;
use proto::msg::{Kind, MASTER_PRIMARY};
use serde::Serialize;
use std::time::{Duration, Instant};

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
    opts: &CompareOptions,
) -> Result<Fleet> {
    let mode = match delivery {
        Delivery::Broadcast => "selected",
        Delivery::Unicast => "unicast",
    };
    Fleet::parse(&format!(
        "image_size = \"{size}\"\n\
         [bus]\npreset = \"{preset}\"\npaced = {paced}\ntransport = \"{transport}\"\n\
         [master]\npolicy = \"fixed\"\nhold_off_ms = {hold}\nmode = \"{mode}\"\n\
         [[nodes]]\ntype = \"drive\"\ncount = {nodes}\n",
        size = opts.image_size,
        preset = TIMING.name(),
        hold = opts.hold_off_ms,
    ))
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
}

/// Boots one fleet with every node powered on at once, and measures it.
pub async fn run(artifacts: &Artifacts, shape: Shape<'_>, opts: &CompareOptions) -> Result<Run> {
    let Shape {
        transport,
        nodes,
        delivery,
        paced,
        host_cost,
    } = shape;
    let fleet = fleet(transport, nodes, delivery, paced, opts)?;
    let mut options = Options::new(fleet, artifacts.clone());
    options.power_on_together = true;
    let mut tb = Testbed::start(options).await?;
    let timeout = Duration::from_secs(opts.run_timeout_s);
    let deadline = Instant::now() + timeout;
    // CPU samples while the fleet boots, to cut out the first pass later.
    let mut cpu = vec![(Instant::now(), tb.fleet_cpu_time())];
    let mut settled = false;
    while Instant::now() < deadline {
        settled = tb
            .wait_settled(Duration::from_millis(100).min(deadline - Instant::now()))
            .await;
        cpu.push((Instant::now(), tb.fleet_cpu_time()));
        if settled {
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
    Ok(measure(
        shape,
        ttav,
        &report,
        cpu_during_first_pass(&report, t0, &cpu, nodes),
        cpu_idle_fleet,
        pss_per_node_mib,
    ))
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
    let overruns = report.bus["segments"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["overruns"].as_u64()).sum())
        .unwrap_or(0);
    Run {
        transport: shape.transport.to_string(),
        delivery: shape.delivery,
        paced: shape.paced,
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
}

/// The paced run of `transport`, `delivery` and `nodes`, if it ran.
fn paced_run<'a>(
    runs: &'a [Run],
    transport: &str,
    delivery: Delivery,
    nodes: usize,
) -> Option<&'a Run> {
    runs.iter()
        .find(|r| r.transport == transport && r.delivery == delivery && r.nodes == nodes && r.paced)
}

/// Derives the figures from one transport's runs.
pub fn figures(transport: &str, runs: &[Run], opts: &CompareOptions) -> Figures {
    let n = opts.nodes.iter().copied().max().unwrap_or(0);
    let find = |d: Delivery, nodes: usize| paced_run(runs, transport, d, nodes);
    let unpaced = runs
        .iter()
        .find(|r| r.transport == transport && r.nodes == n && !r.paced)
        .filter(|r| r.first_pass_wall_s > 0.0);
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
}

/// Runs every fleet: for each transport and size, broadcast then unicast
/// on the paced bus, then the largest broadcast once more unpaced.
/// `progress` hears about each run as it ends.
pub async fn compare(
    artifacts: &Artifacts,
    opts: &CompareOptions,
    mut progress: impl FnMut(&Run),
) -> Result<Comparison> {
    let largest = opts.nodes.iter().copied().max().unwrap_or(0);
    let mut runs = Vec::new();
    for transport in &opts.transports {
        let mut shapes = Vec::new();
        for &nodes in &opts.nodes {
            for delivery in [Delivery::Broadcast, Delivery::Unicast] {
                shapes.push(Shape {
                    transport,
                    nodes,
                    delivery,
                    paced: true,
                    host_cost: delivery == Delivery::Broadcast && nodes == largest,
                });
            }
        }
        shapes.push(Shape {
            transport,
            nodes: largest,
            delivery: Delivery::Broadcast,
            paced: false,
            host_cost: false,
        });
        for shape in shapes {
            let r = run(artifacts, shape, opts).await.with_context(|| {
                format!(
                    "{transport}, {} nodes, {:?}{}",
                    shape.nodes,
                    shape.delivery,
                    if shape.paced { "" } else { ", unpaced" }
                )
            })?;
            progress(&r);
            runs.push(r);
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

/// The comparison as one markdown table: a column per transport.
pub fn table(c: &Comparison) -> String {
    let o = &c.options;
    let n = o.nodes.iter().copied().max().unwrap_or(0);
    let find = |t: &str, d: Delivery, nodes: usize| paced_run(&c.runs, t, d, nodes);
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
    let mut row = |label: String, cell: &dyn Fn(&str) -> String, target: &str| {
        out += &format!("| {label} |");
        for t in &o.transports {
            out += &format!(" {} |", cell(t));
        }
        out += &format!(" {target} |\n");
    };
    let figs = |t: &str| c.figures.iter().find(|f| f.transport == t);
    for &k in &o.nodes {
        row(
            format!("N={k}: time to all verified, broadcast / unicast"),
            &|t| {
                format!(
                    "{} / {}",
                    ttav_cell(find(t, Delivery::Broadcast, k), o.run_timeout_s),
                    ttav_cell(find(t, Delivery::Unicast, k), o.run_timeout_s)
                )
            },
            "",
        );
        row(
            format!("N={k}: bus time, broadcast / unicast"),
            &|t| {
                let bus = |d| find(t, d, k).map_or("—".into(), |r: &Run| secs(r.bus_s));
                format!("{} / {}", bus(Delivery::Broadcast), bus(Delivery::Unicast))
            },
            "",
        );
    }
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("—".into(), f);
    row(
        format!("N={n}: bus-time ratio, unicast / broadcast"),
        &|t| {
            opt(figs(t).and_then(|f| f.bus_time_ratio), &|r| {
                format!("{r:.1}")
            })
        },
        "≥ 36",
    );
    let max = c.figures.first().map_or_else(
        || frame_format_max_efficiency(TIMING),
        |f| f.frame_format_max,
    );
    row(
        format!(
            "N={n}: broadcast bus efficiency (payload bits / bus time × data rate), repair included (first pass); frame-format maximum {max:.3}"
        ),
        &|t| {
            let Some(f) = figs(t) else {
                return "—".into();
            };
            match (f.efficiency, f.first_pass_efficiency) {
                (Some(e), Some(p)) => format!(
                    "{e:.3} = {} of max ({})",
                    pct(e / f.frame_format_max),
                    pct(p / f.frame_format_max)
                ),
                _ => "—".into(),
            }
        },
        "≥ 90% of max",
    );
    row(
        format!(
            "N={n}: broadcast time to all verified / floor (hold-off + image bus time + one node's boot)"
        ),
        &|t| {
            let Some(f) = figs(t) else {
                return "—".into();
            };
            let b = find(t, Delivery::Broadcast, n).and_then(|r| r.time_to_all_verified_s);
            match (b, f.floor_s, f.over_floor, f.one_node_boot_s) {
                (Some(b), Some(fl), Some(r), Some(boot)) => {
                    format!("{} / {} (boot {}) = {r:.2}", secs(b), secs(fl), secs(boot))
                }
                _ => "—".into(),
            }
        },
        "≤ 1.2",
    );
    row(
        format!("N={n}: real-time factor of the broadcast's first pass (bus time / wall time)"),
        &|t| {
            opt(figs(t).and_then(|f| f.real_time_factor), &|r| {
                format!("{r:.3}")
            })
        },
        "≥ 1.0",
    );
    row(
        format!(
            "N={n}: the same broadcast on an unpaced bus (it waits for its slowest receiver): bus time / wall time"
        ),
        &|t| {
            opt(figs(t).and_then(|f| f.unpaced_speed), &|r| {
                format!("{r:.3}")
            })
        },
        "",
    );
    row(
        format!("N={n}: broadcast receive-queue overruns / repair bytes"),
        &|t| {
            find(t, Delivery::Broadcast, n).map_or("—".into(), |r| {
                format!("{} / {}", r.overruns, r.repair_bytes)
            })
        },
        "",
    );
    // A figure of the largest paced broadcast, as a share of one core.
    let core_share = |t: &str, of: fn(&Run) -> Option<f64>| {
        opt(find(t, Delivery::Broadcast, n).and_then(of), &|c| {
            format!("{} of one core", pct(c))
        })
    };
    row(
        format!("N={n}: CPU per node while the broadcast's first pass runs"),
        &|t| core_share(t, |r| r.cpu_receiving_per_node),
        "",
    );
    row(
        format!("N={n}: CPU of the whole idle fleet"),
        &|t| core_share(t, |r| r.cpu_idle_fleet),
        "< 5% of one core",
    );
    row(
        "private memory (PSS) per node".into(),
        &|t| {
            let r = find(t, Delivery::Broadcast, n);
            opt(r.and_then(|r| r.pss_per_node_mib), &|m| {
                format!("{m:.1} MiB")
            })
        },
        "",
    );
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
        });
        assert!(
            text.contains("| N=4: bus-time ratio, unicast / broadcast | 4.0 | ≥ 36 |"),
            "{text}"
        );
    }
}
