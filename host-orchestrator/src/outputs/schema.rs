//! The JSON Schema of the reports (`bootcast schema` prints it): one
//! document for every `kind`, versioned with [`SCHEMA_VERSION`]; and that of
//! a line of `events.jsonl` (`bootcast schema --events`). Fields are
//! declared here as tables; tests serialise real reports and event lines
//! and fail on any field the tables do not declare, so the two cannot drift
//! apart.

use super::json::SCHEMA_VERSION;
use crate::clock::ClockKind;
use crate::report::Verdict;
use crate::supervisor::HostState;
use serde_json::{Map, Value, json};

/// A field's type, in a few words: `int`, `num`, `str`, `bool`, `obj` (an
/// object whose fields are not declared here), `#def` (a `$defs` entry),
/// `[T]` (an array of T), `T?` (or null), `enum:NAME`.
type Field = (&'static str, &'static str);

/// The fields both testbed and storm reports have.
const REPORT: &[Field] = &[
    ("schema_version", "int"),
    ("kind", "str"),
    ("verdict", "enum:verdict"),
    ("nodes_total", "int"),
    ("nodes_verified", "int"),
    ("elapsed_s", "num"),
    ("clock", "enum:clock"),
    ("wall_s", "num"),
    ("run_dir", "str"),
    ("nodes", "[#node]"),
    ("broadcasts", "[#broadcast]"),
    ("windows", "[#window]"),
    ("observed_sessions", "[#observed_session]"),
    ("takeovers", "[[num?]]"),
    ("bus", "obj?"),
    ("seeds", "obj?"),
];

/// What a storm report adds.
const STORM: &[Field] = &[
    ("scenario", "str"),
    ("seed", "int"),
    ("scenario_source", "obj"),
    ("reboots", "int"),
    ("duration_s", "num"),
    ("peak_fleet_pss_mib", "num"),
    ("events", "[#event]"),
    ("invariants", "[#check]"),
];

const NODE: &[Field] = &[
    ("id", "int"),
    ("type", "str"),
    ("segment", "str"),
    ("state", "enum:state"),
    ("verified", "bool"),
    ("verified_by", "str?"),
    ("host_check", "str?"),
    ("digest", "str?"),
    ("expected_digest", "str"),
    ("generation", "int?"),
    ("generations", "[int]"),
    ("image_name", "str?"),
    ("image_version", "str?"),
    ("time_to_verified_s", "num?"),
    ("boot_count", "int"),
    ("reset_cause", "str?"),
    ("ignored_image_frames", "int"),
    ("rejections", "[obj]"),
    ("failure", "str?"),
    ("last_message", "str"),
    ("log_tail", "[str]"),
    ("states", "[#state_change]"),
];

const STATE_CHANGE: &[Field] = &[("t_s", "num"), ("state", "enum:state")];

const BROADCAST: &[Field] = &[
    ("window", "int"),
    ("session", "int"),
    ("type", "str"),
    ("bytes", "int"),
    ("frames", "int"),
    ("requesters", "[int]"),
    ("late_joiners", "[int]"),
    ("started_s", "num"),
    ("ended_s", "num?"),
    ("repair_rounds", "int"),
    ("repair_bytes", "int"),
    ("chunks_per_round", "[int]"),
    ("repair_end", "str?"),
    ("bus_s", "num"),
    ("first_pass_bus_s", "num"),
    ("first_pass_wall_s", "num"),
    ("masters", "[str]"),
    ("resumed_at_chunk", "int?"),
    ("error", "str?"),
];

const WINDOW: &[Field] = &[
    ("window", "int"),
    ("opened_s", "num"),
    ("closed_s", "num?"),
    ("close_reason", "str?"),
    ("requesters", "[int]"),
    ("master", "str"),
];

const OBSERVED_SESSION: &[Field] = &[
    ("session", "int"),
    ("window", "int"),
    ("type", "str"),
    ("bytes", "int"),
    ("at_s", "num"),
    ("announced", "int"),
];

const EVENT: &[Field] = &[
    ("t_s", "num"),
    ("action", "str"),
    ("line", "int"),
    ("nodes", "[int]"),
    ("detail", "str"),
    ("ok", "bool"),
    ("skipped", "[obj]"),
    ("picked", "[obj]"),
];

const CHECK: &[Field] = &[("name", "str"), ("pass", "bool"), ("evidence", "str")];

/// Fields that may be left out (serde skips them when empty).
const OPTIONAL: &[&str] = &["skipped", "picked", "states", "seeds"];

/// Every `$defs` entry.
const DEFS: &[(&str, &[Field])] = &[
    ("node", NODE),
    ("state_change", STATE_CHANGE),
    ("broadcast", BROADCAST),
    ("window", WINDOW),
    ("observed_session", OBSERVED_SESSION),
    ("event", EVENT),
    ("check", CHECK),
];

/// Every line of `events.jsonl` has these, then its kind's fields.
const RUN_EVENT: &[Field] = &[("t_s", "num"), ("kind", "str")];

/// Each kind of line in `events.jsonl` and its fields.
const RUN_EVENTS: &[(&str, &[Field])] = &[
    ("state", &[("node", "int"), ("state", "enum:state")]),
    ("window_opened", &[("window", "int"), ("master", "str")]),
    (
        "window_closed",
        &[
            ("window", "int"),
            ("reason", "str?"),
            ("requesters", "[int]"),
        ],
    ),
    (
        "session_start",
        &[
            ("session", "int"),
            ("window", "int"),
            ("type", "str"),
            ("bytes", "int"),
            ("requesters", "[int]"),
        ],
    ),
    (
        "session_end",
        &[
            ("session", "int"),
            ("window", "int"),
            ("type", "str"),
            ("bytes", "int"),
            ("frames", "int"),
            ("requesters", "[int]"),
            ("late_joiners", "[int]"),
            ("repair_rounds", "int"),
            ("repair_bytes", "int"),
            ("repair_end", "str?"),
            ("error", "str?"),
        ],
    ),
    (
        "session_seen",
        &[
            ("session", "int"),
            ("window", "int"),
            ("type", "str"),
            ("bytes", "int"),
            ("announced", "int"),
        ],
    ),
    ("takeover", &[("resumed_session", "int?")]),
    (
        "rejected",
        &[("node", "int"), ("session", "int"), ("reason", "str")],
    ),
    (
        "action",
        &[
            ("action", "str"),
            ("line", "int"),
            ("nodes", "[int]"),
            ("ok", "bool"),
            ("detail", "str"),
            ("skipped", "[obj]"),
        ],
    ),
    ("reboot", &[("node", "int"), ("how", "str")]),
    ("fault", &[("rule", "obj")]),
    ("faults_cleared", &[]),
    ("master_killed", &[]),
    ("link_down", &[("port", "str")]),
    ("link_cut", &[("link", "str")]),
    ("link_restored", &[("link", "str")]),
];

/// The JSON values of an enum's variants, as serde writes them.
fn enum_values(name: &str) -> Vec<Value> {
    let values: Vec<serde_json::Result<Value>> = match name {
        "verdict" => [Verdict::Pass, Verdict::Fail]
            .iter()
            .map(serde_json::to_value)
            .collect(),
        "clock" => [ClockKind::Wall, ClockKind::Virtual]
            .iter()
            .map(serde_json::to_value)
            .collect(),
        _ => [
            HostState::Off,
            HostState::Booting,
            HostState::SelfTest,
            HostState::Requesting,
            HostState::Receiving,
            HostState::Verifying,
            HostState::Handoff,
            HostState::Running,
            HostState::Verified,
            HostState::Failed,
        ]
        .iter()
        .map(serde_json::to_value)
        .collect(),
    };
    values.into_iter().filter_map(Result::ok).collect()
}

/// The schema of one field type (see [`Field`]).
fn type_schema(t: &str) -> Value {
    if let Some(inner) = t.strip_suffix('?') {
        return json!({ "anyOf": [type_schema(inner), { "type": "null" }] });
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return json!({ "type": "array", "items": type_schema(inner) });
    }
    if let Some(def) = t.strip_prefix('#') {
        return json!({ "$ref": format!("#/$defs/{def}") });
    }
    if let Some(name) = t.strip_prefix("enum:") {
        return json!({ "enum": enum_values(name) });
    }
    let ty = match t {
        "int" => "integer",
        "num" => "number",
        "str" => "string",
        "bool" => "boolean",
        _ => "object",
    };
    json!({ "type": ty })
}

/// An object schema of `fields`, closed to others.
fn object(fields: &[&[Field]]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for (name, t) in fields.iter().flat_map(|f| f.iter()) {
        props.insert(name.to_string(), type_schema(t));
        if !OPTIONAL.contains(name) {
            required.push(Value::from(*name));
        }
    }
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The report schema: testbed, storm and bench reports by `kind`.
pub fn schema() -> Value {
    let defs: Map<String, Value> = DEFS
        .iter()
        .map(|(name, fields)| (name.to_string(), object(&[fields])))
        .collect();
    let with_kind = |mut o: Value, kind: &str| {
        o["properties"]["kind"] = json!({ "const": kind });
        o["properties"]["schema_version"] = json!({ "const": SCHEMA_VERSION });
        o
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("bootcast-report-v{SCHEMA_VERSION}"),
        "title": format!("bootcast report, schema version {SCHEMA_VERSION}"),
        "description": "What `bootcast testbed up`, `storm` and `bench` write to report.json. Times are seconds since the testbed started.",
        "oneOf": [
            with_kind(object(&[REPORT]), "testbed"),
            with_kind(object(&[REPORT, STORM]), "storm"),
            {
                "type": "object",
                "description": "A benchmark's figures (their fields are the benchmark's own).",
                "properties": {
                    "schema_version": { "const": SCHEMA_VERSION },
                    "kind": { "const": "bench" },
                },
                "required": ["schema_version", "kind"],
            },
        ],
        "$defs": defs,
    })
}

/// The schema of one line of `events.jsonl`, by `kind`.
pub fn events_schema() -> Value {
    let kinds: Vec<Value> = RUN_EVENTS
        .iter()
        .map(|(kind, fields)| {
            let mut o = object(&[RUN_EVENT, fields]);
            o["properties"]["kind"] = json!({ "const": kind });
            o
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("bootcast-events-v{SCHEMA_VERSION}"),
        "title": format!("a line of bootcast's events.jsonl, schema version {SCHEMA_VERSION}"),
        "description": "One JSON object per line, in time order. `t_s` is seconds since the testbed started; `kind` says which fields follow.",
        "oneOf": kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::json::{Kind, to_json};
    use crate::report::tests::{empty, node};

    /// Checks `value` against `schema` for what this schema uses: types,
    /// enums and consts, required and undeclared fields. Returns the path
    /// of every mismatch.
    fn mismatches(schema: &Value, value: &Value, root: &Value, path: &str) -> Vec<String> {
        if let Some(r) = schema["$ref"].as_str() {
            let def = &root["$defs"][r.trim_start_matches("#/$defs/")];
            return mismatches(def, value, root, path);
        }
        if let Some(any) = schema["anyOf"].as_array() {
            let ok = any
                .iter()
                .any(|s| mismatches(s, value, root, path).is_empty());
            return if ok {
                vec![]
            } else {
                vec![format!("{path}: none of anyOf")]
            };
        }
        if let Some(values) = schema["enum"].as_array() {
            return if values.contains(value) {
                vec![]
            } else {
                vec![format!("{path}: {value} not in enum")]
            };
        }
        if let Some(c) = schema.get("const") {
            return if c == value {
                vec![]
            } else {
                vec![format!("{path}: {value} is not {c}")]
            };
        }
        let ok = match schema["type"].as_str() {
            Some("integer") => value.is_u64() || value.is_i64(),
            Some("number") => value.is_number(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("null") => value.is_null(),
            Some("array") => value.is_array(),
            Some("object") => value.is_object(),
            _ => true,
        };
        if !ok {
            return vec![format!("{path}: {value} is not {}", schema["type"])];
        }
        let mut out = Vec::new();
        if let (Some(items), Some(a)) = (schema.get("items"), value.as_array()) {
            for (i, v) in a.iter().enumerate() {
                out.extend(mismatches(items, v, root, &format!("{path}[{i}]")));
            }
        }
        if let (Some(props), Some(o)) = (schema["properties"].as_object(), value.as_object()) {
            for (k, v) in o {
                match props.get(k) {
                    Some(s) => out.extend(mismatches(s, v, root, &format!("{path}.{k}"))),
                    None if schema["additionalProperties"] == false => {
                        out.push(format!("{path}.{k}: not in the schema"))
                    }
                    None => {}
                }
            }
            for k in schema["required"].as_array().into_iter().flatten() {
                if !o.contains_key(k.as_str().unwrap_or("")) {
                    out.push(format!("{path}.{k}: required, missing"));
                }
            }
        }
        out
    }

    fn check(value: &Value, kind: usize) -> Vec<String> {
        let s = schema();
        mismatches(&s["oneOf"][kind], value, &s, "$")
    }

    #[test]
    fn real_testbed_and_storm_reports_match_the_schema() {
        let mut r = empty();
        let mut failed = node(2);
        failed.verified = false;
        failed.state = HostState::Failed;
        failed.failure = Some("digest mismatch".into());
        r.nodes = vec![node(1), failed];
        let testbed: Value = serde_json::from_str(&to_json(Kind::Testbed, &r).unwrap()).unwrap();
        assert_eq!(check(&testbed, 0), Vec::<String>::new());
        let storm = crate::storm::StormReport {
            scenario: "s".into(),
            seed: 1,
            scenario_source: crate::storm::scenario::Source {
                text: String::new(),
                fleet_file: None,
                default_name: None,
                fleet_dir: None,
            },
            reboots: 0,
            duration_s: 1.0,
            peak_fleet_pss_mib: 0.0,
            events: Vec::new(),
            invariants: Vec::new(),
            made: Default::default(),
            testbed: r,
        };
        let storm: Value = serde_json::from_str(&to_json(Kind::Storm, &storm).unwrap()).unwrap();
        assert_eq!(check(&storm, 1), Vec::<String>::new());
        // And the checker does catch what the schema does not declare.
        let mut extra = testbed.clone();
        extra["nodes"][0]["colour"] = "red".into();
        extra["verdict"] = "maybe".into();
        assert_eq!(
            check(&extra, 0),
            [
                "$.nodes[0].colour: not in the schema",
                "$.verdict: \"maybe\" not in enum"
            ]
        );
        // A storm is no testbed report: its kind and its 8 own fields.
        assert_eq!(check(&storm, 0).len(), 9);
    }

    #[test]
    fn every_kind_of_event_line_matches_the_events_schema() {
        use crate::outputs::events::{self, RunEvent, Sources, What};
        use crate::storm::scenario::Reboot;
        let (r, actions, made) = crate::outputs::events::tests::sample();
        let mut all = events::collect(&Sources {
            report: &r,
            actions: &actions,
            made: &made,
        })
        .unwrap();
        let rule: bus_bridge::Fault =
            serde_json::from_value(json!({ "kind": "loss", "probability": 0.5 })).unwrap();
        for what in [
            What::Fault { rule },
            What::FaultsCleared,
            What::LinkDown { port: "n3".into() },
            What::Reboot {
                node: 1,
                how: Reboot::SoftReboot,
            },
        ] {
            all.push(RunEvent { t_s: 4.0, what });
        }
        let s = events_schema();
        let kinds = s["oneOf"].as_array().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for line in events::jsonl(&all).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let kind = v["kind"].as_str().unwrap().to_string();
            let schema = kinds
                .iter()
                .find(|k| k["properties"]["kind"]["const"] == kind.as_str())
                .unwrap_or_else(|| panic!("no schema for kind {kind}"));
            assert_eq!(
                mismatches(schema, &v, &s, "$"),
                Vec::<String>::new(),
                "{line}"
            );
            seen.insert(kind);
        }
        // Every kind the schema lists was written above.
        let listed: std::collections::BTreeSet<String> =
            RUN_EVENTS.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(seen, listed);
    }

    #[test]
    fn the_schema_names_its_version_and_every_state() {
        let s = schema();
        assert_eq!(s["$id"], format!("bootcast-report-v{SCHEMA_VERSION}"));
        let states = &s["$defs"]["node"]["properties"]["state"]["enum"];
        assert_eq!(states.as_array().map(Vec::len), Some(10));
        assert!(states.as_array().unwrap().contains(&json!("VERIFIED")));
    }
}
