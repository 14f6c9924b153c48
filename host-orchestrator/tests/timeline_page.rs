//! The run folder's views of a synthetic storm run of 8 nodes: the event
//! log, the trace, and the timeline page as headless Chromium draws it
//! (one lane per node, one span per session, a marker per reboot), with
//! its screenshot.
//!
//! Chromium comes from `cargo xtask install` (Debian's `chromium`). Under
//! CI=true a missing Chromium fails the test; elsewhere the test says what
//! to install and stops, as the other tool tests do.

mod common;

use host_orchestrator::master::Role;
use host_orchestrator::master::session::RepairEnd;
use host_orchestrator::outputs::events::Sources;
use host_orchestrator::outputs::{chromium, page, views};
use host_orchestrator::report::{
    BroadcastReport, NodeReport, Report, StateChange, Verdict, WindowReport,
};
use host_orchestrator::rundir::RunDir;
use host_orchestrator::storm::record::{Event, FaultChange, Made, Skip};
use host_orchestrator::storm::scenario::Reboot;
use host_orchestrator::supervisor::HostState;
use serde_json::Value;

fn node(id: u16, node_type: &str, segment: &str) -> NodeReport {
    use HostState::*;
    let at = f64::from(id) * 0.05;
    let states = [
        (0.0, Booting),
        (0.2, Requesting),
        (1.5, Receiving),
        (2.6, Verifying),
        (2.7, Running),
        (3.0, Verified),
    ];
    NodeReport {
        id,
        node_type: node_type.into(),
        segment: segment.into(),
        state: Verified,
        verified: true,
        verified_by: None,
        host_check: None,
        digest: None,
        expected_digest: "00".into(),
        generation: Some(1),
        generations: vec![1],
        image_name: None,
        image_version: None,
        time_to_verified_s: Some(3.0),
        boot_count: 1,
        reset_cause: None,
        ignored_image_frames: 0,
        rejections: Vec::new(),
        failure: None,
        last_message: String::new(),
        log_tail: Vec::new(),
        states: states
            .iter()
            .map(|&(t, state)| StateChange { t_s: t + at, state })
            .collect(),
    }
}

fn session(
    session: u32,
    node_type: &str,
    requesters: Vec<u16>,
    from: f64,
    to: f64,
) -> BroadcastReport {
    BroadcastReport {
        window: 1,
        session,
        node_type: node_type.into(),
        bytes: 65_536,
        frames: 1100,
        requesters,
        late_joiners: Vec::new(),
        started_s: from,
        ended_s: Some(to),
        repair_rounds: 1,
        repair_bytes: 128,
        chunks_per_round: vec![2],
        repair_end: Some(RepairEnd::Complete),
        bus_s: 0.4,
        first_pass_bus_s: 0.3,
        first_pass_wall_s: 0.9,
        masters: vec![Role::Primary],
        resumed_at_chunk: None,
        error: None,
    }
}

/// 8 nodes on two segments, three types; four sessions (two at once), two
/// windows, a cut link, three reboots and an action that skipped a node.
fn run() -> (Report, Vec<Event>, Made) {
    let nodes = vec![
        node(1, "drive", "base"),
        node(2, "drive", "base"),
        node(3, "xy", "base"),
        node(4, "xy", "base"),
        node(5, "accessor", "ext1"),
        node(6, "accessor", "ext1"),
        node(7, "drive", "ext1"),
        node(8, "comm", "ext1"),
    ];
    let window = |window, from, to| WindowReport {
        window,
        opened_s: from,
        closed_s: Some(to),
        close_reason: Some("timer".into()),
        requesters: vec![1, 2, 3],
        master: Role::Primary,
    };
    let report = Report {
        verdict: Verdict::Pass,
        nodes_total: 8,
        nodes_verified: 8,
        elapsed_s: 9.0,
        clock: host_orchestrator::clock::ClockKind::Virtual,
        wall_s: 4.0,
        run_dir: String::new(),
        nodes,
        broadcasts: vec![
            session(1, "drive", vec![1, 2, 7], 1.5, 2.5),
            session(2, "xy", vec![3, 4], 1.5, 2.4),
            session(3, "accessor", vec![5, 6], 2.6, 3.0),
            session(4, "drive", vec![1], 7.0, 8.0),
        ],
        windows: vec![window(1, 0.3, 1.4), window(2, 6.0, 6.9)],
        observed_sessions: Vec::new(),
        takeovers: Vec::new(),
        bus: None,
        seeds: None,
    };
    let actions = vec![Event {
        t_s: 5.0,
        action: "mixed-reboot".into(),
        line: 12,
        nodes: vec![1, 4, 6, 8],
        detail: "1:power-cycle 4:reset 6:soft-reboot".into(),
        ok: true,
        skipped: vec![Skip {
            node: 8,
            reason: "is powered off (reset skipped)".into(),
        }],
        picked: Vec::new(),
    }];
    let made = Made {
        reboots: vec![
            (5.0, 1, Reboot::PowerCycle),
            (5.0, 4, Reboot::Reset),
            (5.0, 6, Reboot::SoftReboot),
        ],
        faults: vec![
            (4.0, FaultChange::Cut("base-ext1".into())),
            (5.5, FaultChange::Restored("base-ext1".into())),
        ],
    };
    (report, actions, made)
}

/// How many times `needle` occurs in `dom`.
fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

/// Width and height of a PNG, from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn chromium_draws_a_lane_per_node_and_a_span_per_session() {
    if !common::available("Chromium", chromium::find().is_ok(), chromium::INSTALL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run_dir = RunDir::at(dir.path());
    let (report, actions, made) = run();
    let sources = Sources {
        report: &report,
        actions: &actions,
        made: &made,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let written = rt
        .block_on(views::write(
            &run_dir,
            "storm synthetic (seed 1)",
            &sources,
            9.0,
        ))
        .expect("views written");
    assert_eq!(written.no_screenshot, None, "Chromium is there");

    let events = std::fs::read_to_string(run_dir.events()).unwrap();
    assert_eq!(events.lines().count(), written.events);
    let trace: Value = serde_json::from_slice(&std::fs::read(run_dir.trace()).unwrap()).unwrap();
    assert!(trace["traceEvents"].as_array().unwrap().len() > 48);

    let dom = rt
        .block_on(chromium::dump_dom(&run_dir.timeline_html()))
        .expect("Chromium reads the page");
    assert!(
        dom.contains("data-drawn=\"yes\""),
        "the page's script ran: {dom}"
    );
    assert_eq!(count(&dom, "class=\"lane\""), 8, "one lane per node");
    for id in 1..=8 {
        assert_eq!(
            count(&dom, &format!("id=\"lane-{id}\"")),
            1,
            "node {id}'s lane"
        );
    }
    assert_eq!(count(&dom, "class=\"session\""), 4, "one span per session");
    for s in 1..=4 {
        assert_eq!(
            count(&dom, &format!("data-session=\"{s}\"")),
            1,
            "session {s}"
        );
    }
    assert_eq!(count(&dom, "class=\"window\""), 2);
    assert_eq!(count(&dom, "class=\"state\""), 8 * 6, "every state a span");
    assert_eq!(
        count(&dom, "class=\"mark mark-reboot\""),
        3,
        "every reboot a marker"
    );
    assert_eq!(count(&dom, "class=\"mark mark-skipped\""), 1);
    assert_eq!(count(&dom, "class=\"cut\""), 1);
    assert!(
        dom.contains("segment ext1 · accessor (2)"),
        "lanes grouped by segment and type"
    );
    // Hover details: the session's title says what it carried.
    assert!(dom.contains("requesters: 1, 2, 7"), "{dom}");

    // Zoom and hover work: the page as a user drives it (buttons, then the
    // mouse over a session).
    let page = std::fs::read_to_string(run_dir.timeline_html()).unwrap();
    let driven = dir.path().join("driven.html");
    let script = "<script>document.getElementById('zoom-in').click();\
        document.querySelector('[data-session=\"3\"]').dispatchEvent(\
        new MouseEvent('mouseover', { bubbles: true }));</script></body>";
    std::fs::write(&driven, page.replace("</body>", script)).unwrap();
    let dom = rt
        .block_on(chromium::dump_dom(&driven))
        .expect("Chromium reads the page");
    assert!(
        dom.contains("2.250 s – 6.750 s"),
        "zoomed in to the middle half: {dom}"
    );
    assert!(
        dom.contains("session 3 (window 1): accessor, 64 KiB"),
        "the detail box: {dom}"
    );

    let png = std::fs::read(run_dir.timeline_png()).expect("timeline.png");
    let timeline_rows = page::rows(&host_orchestrator::outputs::spans::Timeline::of(
        "",
        &report.nodes,
        &host_orchestrator::outputs::events::collect(&sources).unwrap(),
        9.0,
    ));
    assert_eq!(png_size(&png).0, page::SHOT_WIDTH);
    assert!(
        png_size(&png).1 >= timeline_rows as u32 * page::ROW_PX,
        "the whole chart"
    );
}
