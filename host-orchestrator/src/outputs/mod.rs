//! What a run leaves for people and CI, serialised at this edge: the
//! versioned JSON report ([`json`]) and its JSON Schema ([`schema`]), JUnit
//! for a testbed run ([`junit`]), GitHub Actions outputs ([`github`]).
//! Storms keep their own JUnit (`storm::junit`).
//!
//! To look at a run with: its event log ([`events`]), the run as spans on
//! lanes ([`spans`]) drawn as Chrome trace events ([`trace`]).

pub mod events;
pub mod github;
pub mod json;
pub mod junit;
pub mod schema;
pub mod spans;
pub mod trace;
