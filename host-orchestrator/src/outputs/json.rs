//! Reports as JSON files that say what they are: every report a command
//! writes starts with `schema_version` and `kind`, then the report's own
//! fields.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// The version of the reports' JSON layout. Raised when a field changes
/// meaning or goes away; new fields do not raise it.
pub const SCHEMA_VERSION: u32 = 1;

/// Which command wrote a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `bootcast testbed up`: a `report::Report`.
    Testbed,
    /// `bootcast storm`: a `storm::StormReport`.
    Storm,
    /// `bootcast bench`: the benchmark's rows.
    Bench,
}

/// A report with its schema version and kind in front.
#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    schema_version: u32,
    kind: Kind,
    #[serde(flatten)]
    report: &'a T,
}

/// `report` as pretty JSON, `schema_version` and `kind` first.
pub fn to_json<T: Serialize>(kind: Kind, report: &T) -> Result<String> {
    let v = Versioned {
        schema_version: SCHEMA_VERSION,
        kind,
        report,
    };
    serde_json::to_string_pretty(&v).context("cannot serialise the report")
}

/// Writes `report` to `path` as [`to_json`] makes it.
pub fn write<T: Serialize>(path: &Path, kind: Kind, report: &T) -> Result<()> {
    std::fs::write(path, to_json(kind, report)?)
        .with_context(|| format!("cannot write report {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct R {
        verdict: &'static str,
    }

    #[test]
    fn the_version_and_kind_come_first() {
        let text = to_json(Kind::Storm, &R { verdict: "pass" }).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
            .collect();
        assert_eq!(keys, ["schema_version", "kind", "verdict"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["kind"], "storm");
    }
}
