//! `trace.json`: the run in the Chrome trace-event format, for Perfetto
//! (ui.perfetto.dev) or `chrome://tracing`. Times are microseconds since
//! the testbed started.
//!
//! - a process per bus segment, a thread (track) per node, named
//!   `node N type`: its states as complete (`X`) spans, reboots, skips and
//!   refused images as instants (`i`);
//! - a `master` process: a track of hold-off windows and one of sessions
//!   (more where they overlap), sessions carrying type, bytes, requesters
//!   and repair in their args; takeovers and a killed master as instants;
//! - a `bus and scenario` process: fault and action instants, and a track
//!   per cut link with its cuts as spans.
//!
//! Names come from metadata (`M`) events: `process_name`, `thread_name`
//! and their sort indexes.

use super::spans::{Mark, MarkKind, Timeline};
use serde::Serialize;
use serde_json::{Value, json};

/// An event's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Phase {
    /// A span with its duration.
    #[serde(rename = "X")]
    Complete,
    /// One moment.
    #[serde(rename = "i")]
    Instant,
    /// Names and order of processes and threads.
    #[serde(rename = "M")]
    Metadata,
}

/// One trace event.
#[derive(Clone, Debug, Serialize)]
struct TraceEvent {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    ph: Phase,
    /// Microseconds since start.
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<u64>,
    pid: u32,
    tid: u32,
    /// An instant's scope: `t`, its thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    #[serde(skip_serializing_if = "Value::is_null")]
    args: Value,
}

/// The master process and its tracks.
const MASTER: u32 = 1;
const MASTER_EVENTS: u32 = 1;
const WINDOWS: u32 = 10;
const SESSIONS: u32 = 1000;
/// The bus and scenario process and its tracks.
const BUS: u32 = 2;
const FAULTS: u32 = 1;
const ACTIONS: u32 = 2;
const LINKS: u32 = 10;
/// Segment k's process is `SEGMENTS + k`; a node's track is its id.
const SEGMENTS: u32 = 10;

/// Microseconds of `s` seconds (never negative).
fn us(s: f64) -> u64 {
    (s.max(0.0) * 1e6).round() as u64
}

fn span(
    name: String,
    cat: &'static str,
    from: f64,
    to: f64,
    at: (u32, u32),
    args: Value,
) -> TraceEvent {
    TraceEvent {
        name,
        cat: Some(cat),
        ph: Phase::Complete,
        ts: us(from),
        dur: Some(us(to).saturating_sub(us(from))),
        pid: at.0,
        tid: at.1,
        s: None,
        args,
    }
}

fn instant(m: &Mark, cat: &'static str, at: (u32, u32)) -> TraceEvent {
    TraceEvent {
        name: m.label.clone(),
        cat: Some(cat),
        ph: Phase::Instant,
        ts: us(m.t),
        dur: None,
        pid: at.0,
        tid: at.1,
        s: Some("t"),
        args: json!({ "detail": m.detail }),
    }
}

/// A metadata event: `what` (`process_name`, `thread_sort_index`, ...) of
/// a process (`tid` none) or thread.
fn meta(what: &str, pid: u32, tid: Option<u32>, args: Value) -> TraceEvent {
    TraceEvent {
        name: what.to_string(),
        cat: None,
        ph: Phase::Metadata,
        ts: 0,
        dur: None,
        pid,
        tid: tid.unwrap_or(0),
        s: None,
        args,
    }
}

/// Names and orders a process.
fn process(out: &mut Vec<TraceEvent>, pid: u32, name: &str, order: u32) {
    out.push(meta("process_name", pid, None, json!({ "name": name })));
    out.push(meta(
        "process_sort_index",
        pid,
        None,
        json!({ "sort_index": order }),
    ));
}

/// Names and orders a thread.
fn thread(out: &mut Vec<TraceEvent>, at: (u32, u32), name: &str, order: usize) {
    out.push(meta(
        "thread_name",
        at.0,
        Some(at.1),
        json!({ "name": name }),
    ));
    out.push(meta(
        "thread_sort_index",
        at.0,
        Some(at.1),
        json!({ "sort_index": order }),
    ));
}

/// The process of each segment, in lane order.
fn segments(t: &Timeline) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for l in &t.lanes {
        if !out.contains(&l.segment.as_str()) {
            out.push(&l.segment);
        }
    }
    out
}

/// The trace of `t`, as the JSON object trace viewers load.
pub fn render(t: &Timeline) -> Value {
    let mut out = Vec::new();
    master_tracks(t, &mut out);
    bus_tracks(t, &mut out);
    node_tracks(t, &mut out);
    json!({
        "displayTimeUnit": "ms",
        "otherData": {
            "title": t.title,
            "clock": "microseconds since the testbed started",
        },
        "traceEvents": out,
    })
}

/// Windows and sessions, on the master's tracks.
fn master_tracks(t: &Timeline, out: &mut Vec<TraceEvent>) {
    process(out, MASTER, "master", 0);
    thread(out, (MASTER, MASTER_EVENTS), "masters", 0);
    for r in 0..t.window_rows() as u32 {
        thread(
            out,
            (MASTER, WINDOWS + r),
            "hold-off windows",
            1 + r as usize,
        );
    }
    for r in 0..t.session_rows() as u32 {
        thread(out, (MASTER, SESSIONS + r), "sessions", 100 + r as usize);
    }
    for w in &t.windows {
        let args = json!({
            "window": w.window, "master": w.master, "reason": w.reason,
            "requesters": w.requesters,
        });
        let name = format!("window {}", w.window);
        let at = (MASTER, WINDOWS + w.row as u32);
        out.push(span(name, "window", w.from, w.to, at, args));
    }
    for s in &t.sessions {
        let args = json!({
            "session": s.session, "window": s.window, "type": s.node_type,
            "bytes": s.bytes, "frames": s.frames, "requesters": s.requesters,
            "late_joiners": s.late_joiners, "repair_rounds": s.repair_rounds,
            "repair_bytes": s.repair_bytes, "repair_end": s.repair_end,
            "error": s.error, "ended": s.ended,
        });
        let name = format!("session {}: {}", s.session, s.node_type);
        let at = (MASTER, SESSIONS + s.row as u32);
        out.push(span(name, "session", s.from, s.to, at, args));
    }
    for m in t.marks.iter().filter(|m| m.kind == MarkKind::Master) {
        out.push(instant(m, "master", (MASTER, MASTER_EVENTS)));
    }
}

/// Faults, actions and cut links.
fn bus_tracks(t: &Timeline, out: &mut Vec<TraceEvent>) {
    process(out, BUS, "bus and scenario", 1);
    thread(out, (BUS, FAULTS), "faults", 0);
    thread(out, (BUS, ACTIONS), "scenario actions", 1);
    let links = t.links();
    for (k, l) in links.iter().enumerate() {
        thread(out, (BUS, LINKS + k as u32), &format!("link {l}"), 2 + k);
    }
    for c in &t.cuts {
        let k = links.iter().position(|l| *l == c.link).unwrap_or(0) as u32;
        let args = json!({ "link": c.link, "restored": c.restored });
        let name = format!("{} cut", c.link);
        out.push(span(name, "link", c.from, c.to, (BUS, LINKS + k), args));
    }
    for m in &t.marks {
        match (m.kind, m.node) {
            (MarkKind::Fault | MarkKind::Link, None) => {
                out.push(instant(m, "fault", (BUS, FAULTS)))
            }
            (MarkKind::Action | MarkKind::ActionFailed, None) => {
                out.push(instant(m, "action", (BUS, ACTIONS)))
            }
            _ => {}
        }
    }
}

/// A track per node: its states and its marks.
fn node_tracks(t: &Timeline, out: &mut Vec<TraceEvent>) {
    let segs = segments(t);
    let pid_of = |seg: &str| SEGMENTS + segs.iter().position(|s| *s == seg).unwrap_or(0) as u32;
    for (k, s) in segs.iter().enumerate() {
        process(out, pid_of(s), &format!("segment {s}"), 2 + k as u32);
    }
    let mut track = std::collections::BTreeMap::new();
    for (k, l) in t.lanes.iter().enumerate() {
        let at = (pid_of(&l.segment), u32::from(l.node));
        thread(out, at, &format!("node {} {}", l.node, l.node_type), k);
        track.insert(l.node, at);
    }
    for s in &t.states {
        if let Some(&at) = track.get(&s.node) {
            let state = json!(s.state);
            let name = state.as_str().unwrap_or("?").to_string();
            out.push(span(
                name,
                "state",
                s.from,
                s.to,
                at,
                json!({ "state": state }),
            ));
        }
    }
    for m in &t.marks {
        if let Some(&at) = m.node.and_then(|n| track.get(&n)) {
            out.push(instant(m, "node", at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::spans::tests::timeline;

    fn events(v: &Value) -> &Vec<Value> {
        v["traceEvents"].as_array().unwrap()
    }

    #[test]
    fn a_track_per_node_named_for_it_with_its_states_as_spans() {
        let v = render(&timeline());
        let e = events(&v);
        let names: Vec<(&str, u64, u64)> = e
            .iter()
            .filter(|e| {
                e["ph"] == "M" && e["name"] == "thread_name" && e["pid"].as_u64() >= Some(10)
            })
            .map(|e| {
                (
                    e["args"]["name"].as_str().unwrap(),
                    e["pid"].as_u64().unwrap(),
                    e["tid"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(names, [("node 1 drive", 10, 1), ("node 2 xy", 10, 2)]);
        let process = e
            .iter()
            .find(|e| e["name"] == "process_name" && e["pid"] == 10)
            .unwrap();
        assert_eq!(process["args"]["name"], "segment base");
        let verified = e
            .iter()
            .find(|e| e["ph"] == "X" && e["name"] == "VERIFIED")
            .unwrap();
        assert_eq!(
            (&verified["ts"], &verified["dur"], &verified["tid"]),
            (&json!(2_500_000), &json!(1_000_000), &json!(1))
        );
        assert_eq!(e.iter().filter(|e| e["cat"] == "state").count(), 6);
    }

    #[test]
    fn sessions_are_spans_on_the_master_with_what_they_carried() {
        let v = render(&timeline());
        let e = events(&v);
        let sessions: Vec<&Value> = e.iter().filter(|e| e["cat"] == "session").collect();
        assert_eq!(sessions.len(), 2);
        let s = sessions[0];
        assert_eq!(
            (&s["ph"], &s["pid"], &s["name"]),
            (&json!("X"), &json!(MASTER), &json!("session 1: drive"))
        );
        assert_eq!((&s["ts"], &s["dur"]), (&json!(1_500_000), &json!(900_000)));
        let a = &s["args"];
        assert_eq!(
            (&a["bytes"], &a["requesters"], &a["repair_rounds"]),
            (&json!(4096), &json!([1, 2]), &json!(1))
        );
        // Overlapping sessions are on tracks of their own.
        assert_ne!(sessions[0]["tid"], sessions[1]["tid"]);
        // Reboots, skips and refusals are instants on the node's track.
        let reboot = e
            .iter()
            .find(|e| e["name"] == "power-cycle" && e["cat"] == "node")
            .unwrap();
        assert_eq!(
            (&reboot["ph"], &reboot["s"], &reboot["tid"]),
            (&json!("i"), &json!("t"), &json!(1))
        );
        assert!(e.iter().any(|e| e["name"] == "a-b cut" && e["ph"] == "X"));
        assert!(
            e.iter()
                .filter(|e| e["ph"] != "M")
                .all(|e| e["ts"].is_u64())
        );
    }
}
