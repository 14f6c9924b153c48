//! GitHub Actions: the checks as a markdown table for the job's step
//! summary (`$GITHUB_STEP_SUMMARY`), and failing checks as `::error`
//! workflow commands that point at the line of the scenario (or fleet file)
//! they concern.

use crate::report::Report;
use crate::storm::StormReport;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One `::error` annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// The file, as the user named it; `None` for the run as a whole.
    pub file: Option<String>,
    /// Its line (1-based).
    pub line: usize,
    /// A short title: the check.
    pub title: String,
    /// What failed.
    pub message: String,
}

impl Annotation {
    /// The workflow command: `::error file=F,line=L,title=T::message`.
    pub fn command(&self) -> String {
        let mut props = Vec::new();
        if let Some(f) = &self.file {
            props.push(format!("file={}", escape_property(f)));
            props.push(format!("line={}", self.line));
        }
        props.push(format!("title={}", escape_property(&self.title)));
        format!(
            "::error {}::{}",
            props.join(","),
            escape_data(&self.message)
        )
    }
}

/// Workflow command data: `%`, CR and LF escaped.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Workflow command properties: data escapes, plus `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The 1-based line of the first `key = ...` (or `[key]` header) in a TOML
/// text.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('=') || key.starts_with('['))
        })
        .map(|i| i + 1)
}

/// The line a timeline entry's failure names ("... on line N"), if any.
fn line_in(evidence: &str) -> Option<usize> {
    let rest = &evidence[evidence.rfind("line ")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// An annotation per failing check of a storm, at the line of `scenario`
/// (named `file`) it concerns: the `[expect]` key of an expectation, the
/// timeline entry of an action that failed, else the file's first line.
pub fn storm_annotations(r: &StormReport, file: &str, scenario: &str) -> Vec<Annotation> {
    let at = |line: Option<usize>, title: &str, message: &str| Annotation {
        file: Some(file.to_string()),
        line: line.unwrap_or(1),
        title: title.to_string(),
        message: message.to_string(),
    };
    let expect = || line_of_key(scenario, "[expect]");
    let mut out = Vec::new();
    for c in r.invariants.iter().filter(|c| !c.pass) {
        match c.name.as_str() {
            "actions" => {
                for e in r.events.iter().filter(|e| !e.ok) {
                    out.push(at(
                        Some(e.line),
                        "actions",
                        &format!("{} at {:.2} s: {}", e.action, e.t_s, e.detail),
                    ));
                }
            }
            "all-verified-in-time" => out.push(at(
                line_of_key(scenario, "all_verified_by_s").or_else(expect),
                &c.name,
                &c.evidence,
            )),
            "one-broadcast-per-type-per-window" => out.push(at(
                line_of_key(scenario, "max_broadcasts_per_type_per_window").or_else(expect),
                &c.name,
                &c.evidence,
            )),
            "completed" => out.push(at(line_in(&c.evidence), &c.name, &c.evidence)),
            _ => out.push(at(None, &c.name, &c.evidence)),
        }
    }
    out
}

/// An annotation per node that is not verified: at its type's `[[nodes]]`
/// entry in the fleet file when there is one.
pub fn testbed_annotations(r: &Report, fleet: Option<(&str, &str)>) -> Vec<Annotation> {
    r.nodes
        .iter()
        .filter(|n| !n.verified)
        .map(|n| {
            let line = fleet.and_then(|(_, text)| {
                text.lines()
                    .position(|l| {
                        let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
                        l.contains(&format!("type=\"{}\"", n.node_type))
                    })
                    .map(|i| i + 1)
            });
            Annotation {
                file: fleet.map(|(f, _)| f.to_string()),
                line: line.unwrap_or(1),
                title: format!("node {} ({}) not verified", n.id, n.node_type),
                message: n.diagnosis(),
            }
        })
        .collect()
}

/// A markdown table cell: one line, no column breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

fn verdict_word(passed: bool) -> &'static str {
    if passed { "pass" } else { "**FAIL**" }
}

/// Nodes verified and failed per type, as table rows.
fn type_rows(r: &Report) -> String {
    let mut by_type: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for n in &r.nodes {
        let e = by_type.entry(&n.node_type).or_default();
        e.0 += 1;
        e.1 += usize::from(n.verified);
    }
    by_type
        .iter()
        .map(|(t, (total, ok))| format!("| {t} | {ok}/{total} |\n"))
        .collect()
}

/// The step summary of a testbed run.
pub fn testbed_summary(r: &Report, name: &str) -> String {
    let mut md = format!(
        "### bootcast testbed {name}: {}\n\nverified {}/{} in {:.1} s\n\n| type | verified |\n|---|---|\n",
        verdict_word(r.verdict.passed()),
        r.nodes_verified,
        r.nodes_total,
        r.elapsed_s
    );
    md += &type_rows(r);
    for n in r.nodes.iter().filter(|n| !n.verified) {
        md += &format!(
            "\n- node {} ({}): {}",
            n.id,
            n.node_type,
            cell(&n.diagnosis())
        );
    }
    md + "\n"
}

/// The step summary of a storm: its checks, then nodes per type.
pub fn storm_summary(r: &StormReport) -> String {
    let t = &r.testbed;
    let mut md = format!(
        "### bootcast storm {}: {}\n\nverified {}/{}; seed {}; {} reboots; {:.1} s\n\n| check | result | evidence |\n|---|---|---|\n",
        r.scenario,
        verdict_word(t.verdict.passed()),
        t.nodes_verified,
        t.nodes_total,
        r.seed,
        r.reboots,
        r.duration_s
    );
    for c in &r.invariants {
        md += &format!(
            "| {} | {} | {} |\n",
            cell(&c.name),
            verdict_word(c.pass),
            cell(&c.evidence)
        );
    }
    md += "\n| type | verified |\n|---|---|\n";
    md + &type_rows(t)
}

/// Appends `markdown` to the file `$GITHUB_STEP_SUMMARY` names, if it is
/// set.
pub fn append_step_summary(markdown: &str) -> Result<()> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let path = Path::new(&path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("GITHUB_STEP_SUMMARY: cannot open {}", path.display()))?;
    writeln!(f, "{markdown}")
        .with_context(|| format!("GITHUB_STEP_SUMMARY: cannot write {}", path.display()))
}

/// Whether this runs in GitHub Actions (`GITHUB_ACTIONS=true`), where
/// annotations are printed.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{empty, node};
    use crate::storm::Event;
    use crate::storm::invariants::Check;

    const SCENARIO: &str = "name = \"s\"\n[[nodes]]\ntype = \"drive\"\ncount = 2\n\n[[timeline]]\nat_s = 5\naction = \"soft-reboot\"\n\n[expect]\nall_verified_by_s = 60\nmax_broadcasts_per_type_per_window = 1\n";

    fn check(name: &str, pass: bool, evidence: &str) -> Check {
        Check {
            name: name.into(),
            pass,
            evidence: evidence.into(),
        }
    }

    fn storm(invariants: Vec<Check>, events: Vec<Event>) -> StormReport {
        StormReport {
            scenario: "s".into(),
            seed: 7,
            scenario_source: crate::storm::scenario::Source {
                text: SCENARIO.into(),
                fleet_file: None,
                default_name: None,
                fleet_dir: None,
            },
            reboots: 1,
            duration_s: 10.0,
            peak_fleet_pss_mib: 0.0,
            events,
            invariants,
            made: Default::default(),
            testbed: empty(),
        }
    }

    #[test]
    fn failing_checks_point_at_their_scenario_line() {
        let failed_action = Event {
            t_s: 5.0,
            action: "soft-reboot".into(),
            line: 6,
            nodes: vec![1],
            detail: "node 1 is off".into(),
            ok: false,
            skipped: Vec::new(),
            picked: Vec::new(),
        };
        let r = storm(
            vec![
                check("right-image", true, "all fine"),
                check("all-verified-in-time", false, "node 2 at 70 s"),
                check(
                    "one-broadcast-per-type-per-window",
                    false,
                    "window 1: 2 drive",
                ),
                check("actions", false, "1 failed"),
                check(
                    "completed",
                    false,
                    "interrupted at 3.00 s, before the timeline entry on line 6",
                ),
                check("no-disturbance", false, "node 1 generation 2 → 3"),
            ],
            vec![failed_action],
        );
        let got: Vec<(usize, String)> = storm_annotations(&r, "ci/s.toml", SCENARIO)
            .into_iter()
            .map(|a| (a.line, a.title))
            .collect();
        let want = [
            (11, "all-verified-in-time"),
            (12, "one-broadcast-per-type-per-window"),
            (6, "actions"),
            (6, "completed"),
            (1, "no-disturbance"),
        ];
        let want: Vec<(usize, String)> = want.iter().map(|(l, t)| (*l, t.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn annotations_escape_what_workflow_commands_reserve() {
        let a = Annotation {
            file: Some("ci/a,b.toml".into()),
            line: 3,
            title: "node 2: failed".into(),
            message: "100% lost\nsecond line".into(),
        };
        assert_eq!(
            a.command(),
            "::error file=ci/a%2Cb.toml,line=3,title=node 2%3A failed::100%25 lost%0Asecond line"
        );
        let whole = Annotation { file: None, ..a };
        assert!(whole.command().starts_with("::error title="));
    }

    #[test]
    fn unverified_nodes_point_at_their_type_in_the_fleet_file() {
        let mut r = empty();
        let mut bad = node(2);
        bad.verified = false;
        r.nodes = vec![node(1), bad];
        let a = testbed_annotations(&r, Some(("ci/f.toml", SCENARIO)));
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].file.as_deref(), a[0].line), (Some("ci/f.toml"), 3));
        assert_eq!(testbed_annotations(&r, None)[0].file, None);
    }

    #[test]
    fn summaries_are_markdown_tables_with_a_row_per_check() {
        let r = storm(
            vec![
                check("right-image", true, "ok"),
                check("actions", false, "a|b\nc"),
            ],
            Vec::new(),
        );
        let md = storm_summary(&r);
        assert!(md.contains("| right-image | pass | ok |"), "{md}");
        assert!(md.contains("| actions | **FAIL** | a\\|b<br>c |"), "{md}");
        let mut t = empty();
        t.nodes = vec![node(1), node(2)];
        t.nodes_total = 2;
        t.nodes_verified = 2;
        assert!(testbed_summary(&t, "up-2").contains("| drive | 2/2 |"));
    }
}
