//! A testbed run as JUnit XML: one test case per node, "verified".

use crate::report::Report;
use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Report as Junit, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// `report` as a JUnit document; `name` names the suite (the fleet).
pub fn testbed(report: &Report, name: &str) -> Result<String> {
    let mut suite = TestSuite::new(format!("bootcast testbed {name}"));
    suite.set_time(Duration::from_secs_f64(report.elapsed_s.max(0.0)));
    for n in &report.nodes {
        let status = if n.verified {
            TestCaseStatus::success()
        } else {
            let diagnosis = n.diagnosis();
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(diagnosis.lines().next().unwrap_or("").to_string())
                .set_description(diagnosis);
            s
        };
        let mut case = TestCase::new(format!("node {} ({}) verified", n.id, n.node_type), status);
        case.set_classname(format!("bootcast.{name}"));
        if let Some(t) = n.time_to_verified_s {
            case.set_time(Duration::from_secs_f64(t.max(0.0)));
        }
        if n.verified {
            case.set_system_out(format!(
                "verified, running {}",
                n.digest.as_deref().unwrap_or("-")
            ));
        }
        suite.add_test_case(case);
    }
    let mut junit = Junit::new("bootcast");
    junit.add_test_suite(suite);
    junit.to_string().context("cannot write JUnit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{empty, node};

    #[test]
    fn one_case_per_node_and_a_failure_for_each_unverified_one() {
        let mut r = empty();
        let mut bad = node(2);
        bad.verified = false;
        bad.failure = Some("digest mismatch <&>".into());
        r.nodes = vec![node(1), bad];
        let xml = testbed(&r, "fleet-8").unwrap();
        assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        assert!(xml.contains("name=\"node 2 (drive) verified\""), "{xml}");
        assert!(xml.contains("digest mismatch &lt;&amp;&gt;"), "{xml}");
        assert!(
            xml.contains("tests=\"2\"") && xml.contains("failures=\"1\""),
            "{xml}"
        );
    }
}
