//! JUnit XML for CI systems (quick-junit): one test case per invariant and
//! expectation, each with the run's time and its evidence as the failure
//! message, then one per node; the seed and the scenario as properties. A
//! storm whose harness failed still gets a report: one errored case.

use super::StormReport;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// A suite for the storm `scenario` run with `seed`.
fn suite(scenario: &str, seed: u64, duration_s: f64) -> TestSuite {
    let mut s = TestSuite::new(format!("bootcast storm {scenario}"));
    s.set_time(Duration::from_secs_f64(duration_s.max(0.0)));
    s.add_property(Property::new("seed", seed.to_string()));
    s.add_property(Property::new("scenario", scenario));
    s
}

/// A case named `name`: passed with `evidence` as its output, or failed
/// with the evidence's first line as the message and all of it below.
fn case(scenario: &str, name: String, pass: bool, evidence: &str, time_s: f64) -> TestCase {
    let status = if pass {
        TestCaseStatus::success()
    } else {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        st.set_message(evidence.lines().next().unwrap_or(""));
        st.set_description(evidence);
        st
    };
    let mut c = TestCase::new(name, status);
    c.set_classname(format!("bootcast.{scenario}"));
    c.set_time(Duration::from_secs_f64(time_s.max(0.0)));
    if pass {
        c.set_system_out(evidence);
    }
    c
}

fn xml(suite: TestSuite, name: &str) -> String {
    let mut report = Report::new(name);
    report.add_test_suite(suite);
    // Serialising an in-memory report into a String cannot fail but for a
    // bug in the serialiser: say so in the document rather than panic.
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- cannot write JUnit: {e} -->\n"))
}

/// The report as a JUnit XML document.
pub fn render(r: &StormReport) -> String {
    let mut s = suite(&r.scenario, r.seed, r.duration_s);
    for c in &r.invariants {
        let name = format!("invariant {}", c.name);
        s.add_test_case(case(&r.scenario, name, c.pass, &c.evidence, r.duration_s));
    }
    for n in &r.testbed.nodes {
        let evidence = if n.verified {
            format!("verified, running {}", n.digest.as_deref().unwrap_or("-"))
        } else {
            n.diagnosis()
        };
        let name = format!("node {} ({}) verified", n.id, n.node_type);
        let time = n.time_to_verified_s.unwrap_or(r.duration_s);
        s.add_test_case(case(&r.scenario, name, n.verified, &evidence, time));
    }
    xml(s, "bootcast")
}

/// A JUnit document for a storm whose harness failed before it could be
/// judged: one errored case with the error.
pub fn render_error(scenario: &str, seed: u64, error: &str) -> String {
    let mut s = suite(scenario, seed, 0.0);
    let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
    st.set_message(error.lines().next().unwrap_or(""));
    st.set_description(error);
    let mut c = TestCase::new("harness", st);
    c.set_classname(format!("bootcast.{scenario}"));
    s.add_test_case(c);
    xml(s, "bootcast")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_junit::Report;

    #[test]
    fn a_failed_harness_is_an_errored_case_with_the_seed_and_the_message() {
        let text = render_error(
            "storm-40",
            40,
            "starting the bus bridge: <bad> & worse\nmore",
        );
        let r = Report::deserialize_from_str(&text).expect("it parses");
        let s = &r.test_suites[0];
        assert_eq!((s.tests, s.errors, s.failures), (1, 1, 0));
        let props: Vec<(String, String)> = s
            .properties
            .iter()
            .map(|p| (p.name.to_string(), p.value.to_string()))
            .collect();
        assert!(props.contains(&("seed".into(), "40".into())), "{props:?}");
        match &s.test_cases[0].status {
            TestCaseStatus::NonSuccess { message, .. } => assert_eq!(
                message.as_ref().map(|m| m.to_string()).as_deref(),
                Some("starting the bus bridge: <bad> & worse")
            ),
            other => panic!("{other:?}"),
        }
    }
}
