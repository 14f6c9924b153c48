//! The `bootcast testbed up` command line: its contract (exit code, last
//! line, JSON report), its errors, and that Ctrl-C leaves no QEMU behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bootcast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bootcast"))
}

fn up(args: &[&str]) -> Output {
    bootcast()
        .args(["testbed", "up"])
        .args(args)
        .output()
        .expect("bootcast runs")
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn exit_when_ready_reports_every_node_and_ends_with_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = up(&[
        "--nodes",
        "3",
        "--exit-when-ready",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status,
        stderr(&out)
    );
    assert_eq!(last_line(&out), "verified 3/3");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["verdict"], "pass");
    let nodes = r["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        for field in [
            "id",
            "type",
            "state",
            "verified",
            "digest",
            "expected_digest",
            "generation",
        ] {
            assert!(!n[field].is_null(), "node field {field} missing: {n}");
        }
        assert_eq!(n["verified"], true);
        assert_eq!(n["digest"], n["expected_digest"]);
    }
    let broadcasts = r["broadcasts"].as_array().unwrap();
    assert_eq!(broadcasts.len(), 3, "three types, one broadcast each");
    for b in broadcasts {
        assert!(b["window"].is_u64() && b["type"].is_string() && b["bytes"].as_u64() > Some(0));
        assert_eq!(b["requesters"].as_array().map(|a| a.len()), Some(1));
    }
    assert!(
        r["bus"]["totals"]["frames"].as_u64() > Some(0),
        "bus statistics merged"
    );
    assert_eq!(
        (r["schema_version"].as_u64(), r["kind"].as_str()),
        (Some(1), Some("testbed"))
    );
    // A pass keeps its run folder too, with the same report, JUnit and log.
    let run_dir = Path::new(r["run_dir"].as_str().unwrap());
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(kept["nodes"], r["nodes"]);
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 3, "{junit}");
    assert!(run_dir.join("log").join("bootcast.log").is_file());
    assert!(run_dir.join("capture").join("bus.pcap").is_file());
    let runs = run_dir.parent().unwrap();
    assert!(runs.ends_with("bootcast/runs"), "{}", runs.display());
    assert!(runs.join("latest").is_symlink());
    views_of_a_run(run_dir, 3, 3, &stderr(&out));
}

/// A run folder's events, trace and timeline for `nodes` nodes and
/// `sessions` sessions; the screenshot too where Chromium is installed
/// (else the run said why it made none).
fn views_of_a_run(run_dir: &Path, nodes: usize, sessions: usize, stderr: &str) {
    let text = std::fs::read_to_string(run_dir.join("events.jsonl")).expect("events.jsonl");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    let kind = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
    assert_eq!(kind("session_start"), sessions, "{text}");
    assert_eq!(kind("session_end"), sessions, "{text}");
    assert!(
        kind("window_opened") >= 1 && kind("state") >= 4 * nodes,
        "{text}"
    );
    let times: Vec<f64> = events.iter().map(|e| e["t_s"].as_f64().unwrap()).collect();
    assert!(
        times.windows(2).all(|t| t[0] <= t[1]),
        "in time order: {times:?}"
    );
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("trace.json")).expect("trace.json"))
            .unwrap();
    let trace = trace["traceEvents"].as_array().unwrap();
    let node_tracks = trace
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .filter(|e| {
            e["args"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("node "))
        })
        .count();
    assert_eq!(node_tracks, nodes);
    let spans = |cat: &str| {
        trace
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == cat)
            .count()
    };
    assert_eq!(spans("session"), sessions);
    assert_eq!(spans("state"), kind("state"));
    let page = std::fs::read_to_string(run_dir.join("timeline.html")).expect("timeline.html");
    assert!(page.contains("\"lanes\":[") && !page.contains("{{RUN_DATA}}"));
    let png = run_dir.join("timeline.png");
    if host_orchestrator::outputs::chromium::find().is_ok() {
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 0),
            "timeline.png: {stderr}"
        );
    } else {
        assert!(stderr.contains("timeline.png not made"), "{stderr}");
    }
}

#[test]
fn a_fleet_with_a_failed_node_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let built = host_orchestrator::testbed::Artifacts::locate(None)
        .unwrap()
        .images();
    for t in ["accessor", "xy"] {
        std::fs::copy(
            built.join(format!("{t}.bcimg")),
            store.join(format!("{t}.bcimg")),
        )
        .unwrap();
    }
    let xy = store.join("xy.bcimg");
    let mut bytes = std::fs::read(&xy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&xy, bytes).unwrap();
    let report = dir.path().join("r.json");
    let summary = dir.path().join("summary.md");
    let out = bootcast()
        .args(["testbed", "up"])
        .args([
            "--nodes",
            "2",
            "--exit-when-ready",
            "--max-rejects",
            "2",
            "--store",
            store.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("bootcast runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(last_line(&out), "verified 1/2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node 2 FAILED") && stdout.contains("digest mismatch"),
        "{stdout}"
    );
    // In GitHub Actions: an annotation for the failed node, and the table
    // in the step summary.
    assert!(
        stdout.contains("::error title=node 2 (xy) not verified::"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("**FAIL**") && md.contains("| xy | 0/1 |"),
        "{md}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["verdict"], "fail");
    assert!(
        r["nodes"][1]["failure"]
            .as_str()
            .unwrap()
            .contains("digest mismatch")
    );
}

#[test]
fn bad_flags_and_files_get_a_clear_error_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let bad_fleet = dir.path().join("bad.toml");
    std::fs::write(&bad_fleet, "[[nodes]]\ntype = \"robot\"\n").unwrap();
    let missing = dir.path().join("missing.toml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--nodes".into(), "0".into()],
            "--nodes: must be between 1 and 250",
        ),
        (
            vec!["--nodes".into(), "many".into()],
            "invalid value 'many' for '--nodes",
        ),
        (
            vec!["--fleet".into(), missing.display().to_string()],
            "cannot read fleet file",
        ),
        (
            vec!["--fleet".into(), bad_fleet.display().to_string()],
            "nodes[0].type: unknown node type \"robot\"",
        ),
        (
            vec![
                "--nodes".into(),
                "2".into(),
                "--report".into(),
                "/nonexistent-dir/r.json".into(),
            ],
            "--report: folder /nonexistent-dir does not exist",
        ),
        (
            vec!["--nodes".into(), "2".into(), "--timeout=-3".into()],
            "--timeout: must be a positive",
        ),
        (
            vec!["--nodes".into(), "2".into(), "--timeout".into(), "0".into()],
            "--timeout: must be a positive",
        ),
        (
            vec![
                "--nodes".into(),
                "2".into(),
                "--artifacts".into(),
                "/nonexistent-artifacts".into(),
            ],
            "guest artifacts missing: /nonexistent-artifacts/flash.bin does not exist; run `cargo xtask build`",
        ),
        (
            vec![
                "--nodes".into(),
                "2".into(),
                "--store".into(),
                "/nonexistent-store".into(),
            ],
            "cannot read image store /nonexistent-store",
        ),
        (
            vec![
                "--nodes".into(),
                "2".into(),
                "--fleet".into(),
                bad_fleet.display().to_string(),
            ],
            "cannot be used with",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = up(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.contains(want),
            "{args:?}: stderr {err:?} lacks {want:?}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

/// Children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    // Tokio spawns from worker threads: look at every thread's children.
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let f = t.path().join("children");
            if let Ok(s) = std::fs::read_to_string(f) {
                all.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    all
}

#[test]
fn ctrl_c_ends_every_qemu_the_testbed_started() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = bootcast()
        .args(["testbed", "up", "--nodes", "2", "--run-dir"])
        .arg(&run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until it is up: the table and the count come once all are settled.
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = Instant::now();
    let mut table = String::new();
    while let Some(Ok(line)) = lines.next() {
        table += &line;
        table += "\n";
        if line.starts_with("window") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "testbed never came up: {table}"
        );
    }
    let nodes = children(pid);
    assert_eq!(nodes.len(), 2, "two QEMU children: {nodes:?}\n{table}");
    for n in &nodes {
        let cmd = std::fs::read_to_string(format!("/proc/{n}/cmdline")).unwrap_or_default();
        assert!(cmd.contains("qemu-system-riscv64"), "{cmd}");
    }
    nix_kill(pid, "INT");
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("verified 2/2"),
        "{rest:?}"
    );
    assert!(status.success(), "{status:?}");
    for n in nodes {
        assert!(
            !Path::new(&format!("/proc/{n}")).exists(),
            "QEMU {n} outlived the testbed"
        );
    }
    // The graceful path wrote what each node said on the bus.
    let run_dir = host_orchestrator::rundir::RunDir::at(run_dir);
    for id in [1, 2] {
        let log = std::fs::read_to_string(run_dir.bus_log(id)).unwrap_or_default();
        assert!(log.contains("Heartbeat"), "node {id}'s bus log: {log:?}");
    }
    // Interrupted, it still leaves its events and timeline.
    let events = std::fs::read_to_string(run_dir.events()).expect("events.jsonl");
    assert!(events.contains("\"state\":\"VERIFIED\""), "{events}");
    assert!(run_dir.timeline_html().is_file() && run_dir.trace().is_file());
}

#[test]
fn ctrl_c_ends_a_storm_gracefully_and_it_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("long.toml");
    // The one timeline entry is far away: the storm is waiting for it when
    // it is interrupted.
    std::fs::write(
        &scenario,
        "name = \"long\"\n[[nodes]]\ntype = \"drive\"\ncount = 2\n\
         [[timeline]]\nat_s = 600\naction = \"soft-reboot\"\nselect = { ids = [1] }\n\
         [expect]\nall_verified_by_s = 700\n",
    )
    .unwrap();
    let (report, junit, run_dir) = (
        dir.path().join("r.json"),
        dir.path().join("j.xml"),
        dir.path().join("run"),
    );
    let mut child = bootcast()
        .arg("storm")
        .arg(&scenario)
        .arg("--report")
        .arg(&report)
        .arg("--junit")
        .arg(&junit)
        .arg("--run-dir")
        .arg(&run_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (started, mut seen, mut verified) = (Instant::now(), String::new(), 0);
    while verified < 2 {
        let line = lines.next().expect("stderr ended").unwrap();
        verified += usize::from(line.ends_with("VERIFIED"));
        seen += &line;
        seen += "\n";
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the fleet never came up: {seen}"
        );
    }
    let nodes = children(pid);
    assert_eq!(nodes.len(), 2, "two QEMU children: {nodes:?}");
    nix_kill(pid, "INT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    // Interrupted: its own exit code (130), no longer the verdict's 1; the
    // verdict in the report is still fail.
    assert_eq!(status.code(), Some(130), "interrupted: {rest:?}");
    for n in nodes {
        assert!(
            !Path::new(&format!("/proc/{n}")).exists(),
            "QEMU {n} outlived the storm"
        );
    }
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written")).unwrap();
    assert_eq!(r["verdict"], "fail");
    let completed = r["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "completed")
        .expect("a completed check");
    assert_eq!(completed["pass"], false);
    let evidence = completed["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("interrupted") && evidence.contains("line"),
        "{evidence}"
    );
    assert!(
        r["events"].as_array().unwrap().is_empty(),
        "the timeline did not run"
    );
    let junit = std::fs::read_to_string(&junit).expect("JUnit written");
    assert!(junit.contains("completed"), "{junit}");
    let run_dir = host_orchestrator::rundir::RunDir::at(run_dir);
    for id in [1, 2] {
        let log = std::fs::read_to_string(run_dir.bus_log(id)).unwrap_or_default();
        assert!(log.contains("Heartbeat"), "node {id}'s bus log: {log:?}");
    }
    // Interrupted, it still leaves its events and timeline.
    let events = std::fs::read_to_string(run_dir.events()).expect("events.jsonl");
    assert!(events.contains("\"state\":\"VERIFIED\""), "{events}");
    assert!(run_dir.timeline_html().is_file() && run_dir.trace().is_file());
}

fn nix_kill(pid: u32, sig: &str) {
    // nix, not kill(1): a minimal Debian has no /bin/kill.
    let sig: nix::sys::signal::Signal = format!("SIG{sig}").parse().unwrap();
    let ok = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).is_ok();
    assert!(ok, "kill -{sig} {pid}");
}

#[test]
fn bench_compares_broadcast_with_unicast_on_real_nodes_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = bootcast()
        .args([
            "bench",
            "--nodes",
            "1,2",
            "--transports",
            "virtio",
            "--image-size",
            "64K",
            "--idle-seconds",
            "1",
            "--json",
            json.to_str().unwrap(),
            "--run-dir",
            dir.path().join("run").to_str().unwrap(),
        ])
        .output()
        .expect("bootcast runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| N=2: bus-time ratio, unicast / broadcast |"),
        "{table}"
    );
    // Each fleet's events, trace and timeline, in the order they ran.
    let fleets = dir.path().join("run").join("fleets");
    let mut names: Vec<String> = std::fs::read_dir(&fleets)
        .expect("fleets/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The largest broadcast once more on the virtual clock, where it runs.
    let artifacts = host_orchestrator::testbed::Artifacts::locate(None).unwrap();
    let on_virtual = host_orchestrator::qemu::VirtualTools::find(&artifacts.dir).is_ok();
    let mut want = vec![
        "01-virtio-1-broadcast",
        "02-virtio-1-unicast",
        "03-virtio-2-broadcast",
        "04-virtio-2-unicast",
        "05-virtio-2-broadcast-unpaced",
    ];
    if on_virtual {
        want.push("06-virtio-2-broadcast-virtual");
    }
    assert_eq!(names, want);
    for n in &names {
        for file in ["events.jsonl", "trace.json", "timeline.html"] {
            assert!(fleets.join(n).join(file).is_file(), "{n}/{file}");
        }
    }
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = c["runs"].as_array().unwrap();
    // Broadcast and unicast for each size, and the largest broadcast unpaced
    // (and on the virtual clock).
    assert_eq!(runs.len(), want.len());
    for r in runs {
        assert_eq!(r["verified"], r["nodes"], "{r}");
        assert!(r["bus_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    let unicast_2 = runs
        .iter()
        .find(|r| r["delivery"] == "unicast" && r["nodes"] == 2)
        .unwrap();
    // One session per node, each carrying the whole image.
    assert_eq!(unicast_2["sessions"], 2);
    let f = &c["figures"][0];
    let ratio = f["bus_time_ratio"].as_f64().unwrap();
    assert!(
        (1.5..2.5).contains(&ratio),
        "unicast/broadcast bus time {ratio}"
    );
    let broadcast_2 = runs
        .iter()
        .find(|r| r["delivery"] == "broadcast" && r["nodes"] == 2 && r["paced"] == true)
        .unwrap();
    // Host cost is measured on the largest broadcast only.
    assert!(broadcast_2["pss_per_node_mib"].as_f64().unwrap() > 0.0);
    assert!(broadcast_2["cpu_idle_fleet"].as_f64().is_some());
    assert!(runs[0]["cpu_idle_fleet"].is_null());
    if on_virtual {
        // Its first pass took host time, and the figure says how much
        // slower than real time that was.
        let v = runs.iter().find(|r| r["clock"] == "virtual").unwrap();
        assert!(v["first_pass_host_s"].as_f64().unwrap() > 0.0, "{v}");
        assert!(f["virtual_slowdown"].as_f64().unwrap() > 0.0, "{f}");
        assert!(table.contains("on the virtual clock"), "{table}");
    }
}

#[test]
fn ctrl_c_ends_a_bench_with_the_fleets_that_ran() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut child = bootcast()
        .args([
            "bench",
            "--nodes",
            "1,2",
            "--transports",
            "virtio",
            "--image-size",
            "64K",
            "--idle-seconds",
            "1",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The first fleet has been measured...
    let first = lines.next().expect("a progress line").unwrap();
    assert!(first.starts_with("bench: virtio Broadcast"), "{first}");
    // ... and the next one is running.
    let started = Instant::now();
    let nodes = loop {
        let nodes = children(pid);
        if !nodes.is_empty() {
            break nodes;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no second fleet"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    nix_kill(pid, "INT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    // Interrupted: its own exit code (130), no longer 1.
    assert_eq!(status.code(), Some(130), "{rest:?}");
    for n in nodes {
        assert!(
            !Path::new(&format!("/proc/{n}")).exists(),
            "QEMU {n} outlived the bench"
        );
    }
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(c["interrupted"], true);
    let runs = c["runs"].as_array().unwrap();
    assert!((1..=2).contains(&runs.len()), "{runs:?}");
    assert_eq!(runs[0]["verified"], 1, "the first fleet ran whole");
}

/// Runs `bootcast storm` with `args` and returns its parsed report.
fn storm_report(args: &[&std::ffi::OsStr], report: &Path) -> serde_json::Value {
    let out = bootcast()
        .arg("storm")
        .args(args)
        .arg("--report")
        .arg(report)
        .output()
        .expect("bootcast runs");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    serde_json::from_slice(&std::fs::read(report).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}): {err}"))
}

#[test]
fn a_storm_replayed_from_its_report_draws_the_same_picks_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("picks.toml");
    std::fs::write(
        &scenario,
        "name = \"picks\"\nseed = 77\n[[nodes]]\ntype = \"drive\"\ncount = 4\n\
         [[timeline]]\nat_s = 1\naction = \"inject-fault\"\nfault = { kind = \"loss\", probability = 0.05 }\n\
         [[timeline]]\nat_s = 12\nevery_s = 4\nuntil_s = 20\naction = \"mixed-reboot\"\nselect = { type = \"drive\", random = 2 }\n\
         [expect]\nall_verified_by_s = 100\n",
    )
    .unwrap();
    let (first, again) = (dir.path().join("first.json"), dir.path().join("again.json"));
    let a = storm_report(&[scenario.as_os_str()], &first);
    let b = storm_report(&["--replay".as_ref(), first.as_os_str()], &again);
    let picks = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "mixed-reboot")
            .map(|e| e["picked"].clone())
            .collect()
    };
    assert_eq!(picks(&a).len(), 3, "{}", a["events"]);
    assert_eq!(
        picks(&a),
        picks(&b),
        "the same nodes, rebooted the same ways"
    );
    assert_eq!(a["seeds"], b["seeds"], "the same node and fault seeds");
    assert_eq!(a["scenario_source"], b["scenario_source"]);
    let seeds = host_orchestrator::seeds::Seeds::derive(77, 1..=4);
    assert_eq!(a["seeds"]["bus_faults"], seeds.bus_faults);
    assert_eq!(a["seeds"]["run"], 77);
    // Another seed draws otherwise.
    let other = dir.path().join("other.json");
    let c = storm_report(
        &[scenario.as_os_str(), "--seed".as_ref(), "78".as_ref()],
        &other,
    );
    assert_ne!(picks(&a), picks(&c));
    assert_ne!(a["seeds"]["bus_faults"], c["seeds"]["bus_faults"]);
}
