//! The virtual clock on real nodes: the same fleet run twice, the second
//! time with both host cores kept busy, puts the same frames on the bus in
//! the same order, at the same virtual times up to [`BOUND_NS`].
//!
//! Measured on QEMU 10.0.2: with no frame for the nodes to take in, the
//! traces are equal to the nanosecond. With frames handed to the nodes
//! (here the babbler's), a node's time read at the start of a translation
//! block now and then differs by one or two `mtime` ticks (100 ns each)
//! between runs, and so does the time of a frame sent after it: QEMU's
//! icount counts a whole block when the block starts, and where blocks
//! begin can differ with the host. The differences do not add up: every
//! sleep ends exactly at its timer.
//!
//! No master: nodes boot, find no image and keep asking for one with
//! backoff and jitter (seeded from their strapping and their clocks), so
//! the trace is the nodes' own requests, arbitrated on one bus, and the
//! frames of a babbling port that every node takes in (`Nack`s, which boot
//! ROMs listen to), some lost to a seeded fault. One node is reset at a
//! virtual time given in advance, through its clock plugin: the reset and
//! what the node does after it repeat too. Needs QEMU >= 9; without it the
//! test says so and passes (`cargo xtask test` installs it).
//!
//! Then the whole testbed on the virtual clock (masters, supervisor, bus
//! and nodes on one time base): a small fleet verifies every node, and the
//! same fleet and seed run again on a loaded host gives the same run: the
//! same windows, sessions and state timelines at the same virtual times,
//! and the same frames on the bus at the same times.

mod common;

use board::strap::{Clock, Strap, Transport};
use bus_bridge::{
    Babble, BridgeConfig, BusClock, Fault, FaultConfig, PortClock, PortConfig, VirtualClock,
};
use host_orchestrator::fleet::Fleet;
use host_orchestrator::qemu::{NodeClock, NodeLaunch, NodeProcess, VirtualTools};
use host_orchestrator::report::{Report, Verdict};
use host_orchestrator::seeds::Seeds;
use host_orchestrator::testbed::Testbed;
use std::path::Path;
use std::time::{Duration, Instant};

const NODES: u16 = 3;
/// Virtual time each run covers.
const SPAN_NS: u64 = 10_000_000_000;
/// 8 ns per instruction (125 MIPS).
const SHIFT: u32 = 3;
/// How far a frame's virtual time may differ between the runs (measured:
/// at most 200 ns).
const BOUND_NS: u64 = 1_000;
/// The node reset during the run, and when.
const RESET_NODE: u16 = 2;
const RESET_AT_NS: u64 = 4_000_000_000;

/// One frame on the bus: (sequence, virtual end time, port, id, data).
type Entry = (u64, u64, usize, u32, Vec<u8>);

/// The virtual clock's QEMU and plugin; without them the test stops,
/// saying why (under CI it fails: CI runs on the virtual clock).
fn tools() -> Option<VirtualTools> {
    match VirtualTools::find(&common::artifacts().dir) {
        Ok(t) => Some(t),
        Err(e) => {
            common::available("QEMU >= 9 and the clock plugin", false, &format!("{e:#}"));
            None
        }
    }
}

fn bridge_config(dir: &Path) -> BridgeConfig {
    let mut ports: Vec<PortConfig> = (1..=NODES)
        .map(|id| PortConfig {
            clock: Some(PortClock {
                socket: dir.join(format!("c{id}")),
                from_start: true,
            }),
            ..PortConfig::new(format!("n{id}"), "base", dir.join(format!("p{id}")))
        })
        .collect();
    // No client: the bridge babbles as it.
    ports.push(PortConfig::new("tool", "base", dir.join("t")));
    let mut faults = FaultConfig {
        seed: 7,
        rules: vec![Fault::loss(0.2)],
        ..FaultConfig::default()
    };
    faults.babble.insert(
        "tool".into(),
        Babble {
            // A `Nack` from node 0x77: boot ROMs take it in.
            id: 0x38_0077,
            extended: true,
            fd: true,
            len: 12,
            rate_hz: Some(10.0),
            count: None,
        },
    );
    BridgeConfig {
        segments: vec!["base".into()],
        ports,
        faults,
        clock: BusClock::Virtual(VirtualClock::default()),
        ..BridgeConfig::default()
    }
}

fn launch(dir: &Path, id: u16, tools: &VirtualTools) -> NodeLaunch {
    NodeLaunch {
        id,
        boot_rom: dir.join("boot-rom.bin"),
        bus_socket: dir.join(format!("p{id}")),
        qmp_socket: dir.join(format!("q{id}")),
        log: dir.join(format!("qemu{id}.log")),
        console: dir.join(format!("console{id}.log")),
        strap: Strap {
            node: id,
            node_type: proto::NodeType::Drive as u8,
            segment: 0,
            min_version: 0,
            seed: 0x5EED_0000 | u32::from(id),
            transport: Transport::Virtio,
            clock: Clock::Virtual,
        },
        paused: false,
        clock: Some(NodeClock {
            tools: tools.clone(),
            socket: dir.join(format!("c{id}")),
            shift: SHIFT,
        }),
        ram: None,
        monitor: None,
    }
}

/// Boots the fleet, records every frame until virtual time passes
/// `SPAN_NS`, ends it; returns the trace and the wall time it took.
async fn run_once(tools: &VirtualTools) -> (Vec<Entry>, Duration) {
    let dir = tempfile::Builder::new()
        .prefix("bc")
        .tempdir_in("/tmp")
        .expect("temp dir");
    host_orchestrator::qemu::write_boot_rom(
        &common::artifacts().flash(),
        &dir.path().join("boot-rom.bin"),
    )
    .expect("boot ROM");
    let bridge = bus_bridge::start(bridge_config(dir.path()))
        .await
        .expect("bridge");
    let mut events = bridge.subscribe();
    let started = Instant::now();
    let mut nodes: Vec<NodeProcess> = (1..=NODES)
        .map(|id| NodeProcess::spawn(&launch(dir.path(), id, tools)).expect("QEMU"))
        .collect();
    let asked = bridge
        .control()
        .reset_node(&format!("n{RESET_NODE}"), Some(RESET_AT_NS))
        .await;
    assert_eq!(asked, Ok(true), "the bridge takes the reset");
    let mut trace = Vec::new();
    let deadline = started + common::SETTLE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if e.bus_time_ns > SPAN_NS => break,
            Ok(Ok(e)) => trace.push((
                e.seq,
                e.bus_time_ns,
                e.port,
                e.frame.id(),
                e.frame.data().to_vec(),
            )),
            Ok(Err(e)) => panic!("lost bus events: {e}"),
            Err(_) => {
                let logs = (1..=NODES)
                    .map(|id| std::fs::read_to_string(dir.path().join(format!("qemu{id}.log"))))
                    .collect::<Vec<_>>();
                panic!(
                    "virtual time did not reach {SPAN_NS} ns within {:?}; stats {:?}; QEMU logs {logs:?}",
                    common::SETTLE,
                    bridge.stats().uptime_ns
                );
            }
        }
    }
    let wall = started.elapsed();
    for n in &mut nodes {
        n.process.stop().await;
    }
    let stats = bridge.shutdown().await;
    assert!(stats.virtual_clock);
    for id in 1..=NODES {
        let console = std::fs::read_to_string(dir.path().join(format!("console{id}.log")))
            .unwrap_or_default();
        let boots = console.matches("bootcast boot ROM: node").count();
        let expected = if id == RESET_NODE { 2 } else { 1 };
        assert_eq!(
            boots, expected,
            "node {id}'s boots; its console:\n{console}"
        );
    }
    (trace, wall)
}

/// Busy loops on every core, ended by PID when dropped.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start() -> Hogs {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hogs(
            (0..cores)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_loaded_host_gives_the_same_trace() {
    let Some(tools) = tools() else { return };
    common::run(async move {
        let (quiet, quiet_wall) = run_once(&tools).await;
        let (loaded, loaded_wall) = {
            let _hogs = (std::env::var_os("NOHOGS").is_none()).then(Hogs::start);
            run_once(&tools).await
        };
        eprintln!(
            "{} frames in {} s of virtual time: {quiet_wall:?} wall quiet, {loaded_wall:?} loaded",
            quiet.len(),
            SPAN_NS / 1_000_000_000
        );
        assert!(
            quiet.len() >= usize::from(NODES) * 3,
            "too few frames to compare: {quiet:?}"
        );
        let key = |e: &Entry| (e.0, e.2, e.3, e.4.clone());
        let first_other_frame = quiet
            .iter()
            .zip(&loaded)
            .position(|(a, b)| key(a) != key(b));
        assert_eq!(
            (first_other_frame, quiet.len()),
            (None, loaded.len()),
            "not the same frames in the same order: quiet {quiet:?}\nloaded {loaded:?}"
        );
        let divergence = quiet
            .iter()
            .zip(&loaded)
            .map(|(a, b)| a.1.abs_diff(b.1))
            .max()
            .unwrap_or(0);
        let differing = quiet
            .iter()
            .zip(&loaded)
            .filter(|(a, b)| a.1 != b.1)
            .count();
        eprintln!(
            "{differing} of {} frames at another virtual time, by at most {divergence} ns",
            quiet.len()
        );
        assert!(
            divergence <= BOUND_NS,
            "a frame's virtual time moved by {divergence} ns, more than {BOUND_NS}"
        );
    });
}

/// Nodes in the testbed runs (the seed's library: three segments).
const FLEET: usize = 6;

/// One testbed run on the virtual clock with seed 42: its report (what
/// the wall clock decides taken out), the frames on the bus (relative to
/// the first one's time, which holds the capture's wall-clock epoch) and
/// the wall time it took.
async fn testbed_once() -> (serde_json::Value, Vec<Entry>, Duration) {
    let dir = tempfile::Builder::new()
        .prefix("bc")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let mut fleet = Fleet::default_mix(FLEET).unwrap();
    fleet.transport = Transport::Virtio;
    let fleet = fleet.with_clock(Clock::Virtual).unwrap();
    let mut opts = common::options(fleet.clone());
    opts.run_dir = Some(dir.path().join("run"));
    opts.end_when_settled = true;
    opts.seeds = Some(Seeds {
        bus_faults: fleet.faults.seed,
        ..Seeds::derive(42, fleet.nodes.iter().map(|n| n.id))
    });
    let started = Instant::now();
    let mut tb = Testbed::start(opts).await.expect("testbed starts");
    let pcap = tb.capture_pcap();
    let settled = tb.wait_settled(common::SETTLE).await;
    let report = tb.shutdown().await;
    let wall = started.elapsed();
    if !(settled && report.verdict == Verdict::Pass) {
        common::dump(&report);
        panic!("the fleet did not verify on the virtual clock");
    }
    assert_eq!(report.nodes_verified, FLEET);
    assert!(report.bus.as_ref().is_some_and(|b| b.virtual_clock));
    (comparable(&report), pcap_trace(&pcap), wall)
}

/// The report without what differs by nature between two runs: where the
/// run folder and the capture files are, and the socketcand address.
fn comparable(report: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("run_dir");
    o.remove("wall_s");
    let bus = o["bus"].as_object_mut().unwrap();
    bus.remove("capture");
    bus.remove("socketcand");
    v
}

/// Every frame in a pcap file: (index, time after the first, 0, id, data).
fn pcap_trace(path: &Path) -> Vec<Entry> {
    let bytes = std::fs::read(path).expect("capture");
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let mut out = Vec::new();
    let (mut i, mut first) = (24, None);
    while i + 16 <= bytes.len() {
        let ts = u64::from(u32_at(i)) * 1_000_000_000 + u64::from(u32_at(i + 4));
        let len = u32_at(i + 8) as usize;
        let rec = &bytes[i + 16..i + 16 + len];
        let id = u32::from_be_bytes(rec[0..4].try_into().unwrap());
        let data = rec[8..8 + usize::from(rec[4])].to_vec();
        let t0 = *first.get_or_insert(ts);
        out.push((out.len() as u64, ts - t0, 0, id, data));
        i += 16 + len;
    }
    out
}

#[test]
fn a_testbed_on_the_virtual_clock_verifies_and_repeats_itself_on_a_loaded_host() {
    if tools().is_none() {
        return;
    }
    common::run(async {
        let (quiet, quiet_trace, quiet_wall) = testbed_once().await;
        let (loaded, loaded_trace, loaded_wall) = {
            let _hogs = (std::env::var_os("NOHOGS").is_none()).then(Hogs::start);
            testbed_once().await
        };
        eprintln!(
            "{} frames in {:.3} s of virtual time: {quiet_wall:?} wall quiet, {loaded_wall:?} loaded",
            quiet_trace.len(),
            quiet["elapsed_s"].as_f64().unwrap_or(0.0),
        );
        for key in [
            "windows",
            "observed_sessions",
            "broadcasts",
            "nodes",
            "elapsed_s",
        ] {
            assert_eq!(quiet[key], loaded[key], "{key} differ");
        }
        let first_other_frame = quiet_trace
            .iter()
            .zip(&loaded_trace)
            .position(|(a, b)| a != b);
        assert_eq!(
            (first_other_frame, quiet_trace.len()),
            (None, loaded_trace.len()),
            "not the same frames at the same times"
        );
        let mut differ = Vec::new();
        json_diff("", &quiet, &loaded, &mut differ);
        assert!(differ.is_empty(), "the reports differ: {differ:#?}");
    });
}

/// Where two JSON values differ: (path, one, other).
fn json_diff(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<(String, String, String)>,
) {
    json_diff_within(path, a, b, 0.0, out);
}

/// [`json_diff`], numbers within `tolerance` of each other counting as
/// equal.
fn json_diff_within(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    tolerance: f64,
    out: &mut Vec<(String, String, String)>,
) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                json_diff_within(&format!("{path}.{k}"), va, vb, tolerance, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff_within(&format!("{path}[{i}]"), va, vb, tolerance, out);
            }
        }
        // A figure in nanoseconds (`elapsed_ns`) gets the bound in its own
        // unit.
        (Value::Number(x), Value::Number(y))
            if x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| {
                let bound = if path.ends_with("_ns") {
                    tolerance * 1e9
                } else {
                    tolerance
                };
                (x - y).abs() <= bound
            }) => {}
        _ if a != b => out.push((path.to_string(), a.to_string(), b.to_string())),
        _ => {}
    }
}

/// A storm on the virtual clock: every kind of reboot, a fault and its
/// clearing at scenario times.
const STORM: &str = "name = \"virtual-storm\"\nseed = 9\n\
    [bus]\ntransport = \"virtio\"\nclock = \"virtual\"\n\
    [master]\nhold_off_ms = 500\n\
    [[nodes]]\ntype = \"accessor\"\n\
    [[nodes]]\ntype = \"drive\"\ncount = 4\n\
    [[timeline]]\nat_s = 3\naction = \"reset\"\nselect = { ids = [2] }\n\
    [[timeline]]\nat_s = 4\naction = \"power-cycle\"\nselect = { ids = [3] }\n\
    [[timeline]]\nat_s = 5\naction = \"inject-fault\"\nfault = { kind = \"loss\", probability = 0.02 }\n\
    [[timeline]]\nat_s = 6\naction = \"soft-reboot\"\nselect = { ids = [4] }\n\
    [[timeline]]\nat_s = 8\naction = \"clear-faults\"\n\
    [[timeline]]\nat_s = 9\naction = \"mixed-reboot\"\nselect = { ids = [1, 5], random = 1 }\n\
    [expect]\nall_verified_by_s = 40\n";

/// One run of [`STORM`]: its report without what differs by nature (paths,
/// the host's memory), and the wall time it took.
async fn storm_once() -> (serde_json::Value, Duration) {
    use host_orchestrator::storm::scenario::Scenario;
    use host_orchestrator::storm::{StormOptions, run as storm};
    let dir = tempfile::Builder::new()
        .prefix("bc")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let scenario = Scenario::parse(STORM, Path::new("."), None).expect("the scenario");
    let started = Instant::now();
    let r = storm(StormOptions {
        scenario,
        artifacts: common::artifacts(),
        run_dir: dir.path().join("run"),
        seed: None,
        progress: false,
        master_exe: Some(env!("CARGO_BIN_EXE_bootcast").into()),
        interrupt: Default::default(),
    })
    .await
    .expect("the storm runs");
    let wall = started.elapsed();
    assert_eq!(r.testbed.verdict, Verdict::Pass, "{}", r.table());
    assert_eq!(r.reboots, 4, "{}", r.table());
    let mut v = serde_json::to_value(&r).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("run_dir");
    o.remove("wall_s");
    o.remove("peak_fleet_pss_mib");
    let bus = o["bus"].as_object_mut().unwrap();
    bus.remove("capture");
    bus.remove("socketcand");
    (v, wall)
}

#[test]
fn a_storm_on_the_virtual_clock_repeats_itself_on_a_loaded_host() {
    if tools().is_none() {
        return;
    }
    common::run(async {
        let (quiet, quiet_wall) = storm_once().await;
        let (loaded, loaded_wall) = {
            let _hogs = (std::env::var_os("NOHOGS").is_none()).then(Hogs::start);
            storm_once().await
        };
        eprintln!(
            "storm of {:.3} s of virtual time: {quiet_wall:?} wall quiet, {loaded_wall:?} loaded",
            quiet["duration_s"].as_f64().unwrap_or(0.0),
        );
        // Times may differ by a node's clock tick or two (see the module
        // documentation): seconds within the frames' bound; every count
        // exactly.
        let mut differ = Vec::new();
        json_diff_within("", &quiet, &loaded, BOUND_NS as f64 / 1e9, &mut differ);
        assert!(differ.is_empty(), "the reports differ: {differ:#?}");
    });
}
