//! JUnit XML for CI systems: one test case per invariant and expectation,
//! and one per node.

use super::StormReport;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows no other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The report as a JUnit XML document.
pub fn render(r: &StormReport) -> String {
    let mut cases = Vec::new();
    for c in &r.invariants {
        cases.push((format!("invariant {}", c.name), c.pass, c.evidence.clone()));
    }
    for n in &r.testbed.nodes {
        let evidence = if n.verified {
            format!("verified, running {}", n.digest.as_deref().unwrap_or("-"))
        } else {
            n.diagnosis()
        };
        cases.push((
            format!("node {} ({}) verified", n.id, n.node_type),
            n.verified,
            evidence,
        ));
    }
    let failures = cases.iter().filter(|c| !c.1).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"bootcast storm {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">\n",
        escape(&r.scenario),
        cases.len(),
        r.duration_s
    );
    for (name, pass, evidence) in cases {
        xml += &format!(
            "    <testcase classname=\"bootcast.{}\" name=\"{}\">\n",
            escape(&r.scenario),
            escape(&name)
        );
        if pass {
            xml += &format!("      <system-out>{}</system-out>\n", escape(&evidence));
        } else {
            let first = evidence.lines().next().unwrap_or("");
            xml += &format!(
                "      <failure message=\"{}\">{}</failure>\n",
                escape(first),
                escape(&evidence)
            );
        }
        xml += "    </testcase>\n";
    }
    xml += "  </testsuite>\n</testsuites>\n";
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;?");
    }
}
