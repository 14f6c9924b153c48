//! What a run leaves for people and CI, serialised at this edge: the
//! versioned JSON report ([`json`]) and its JSON Schema ([`schema`]), JUnit
//! for a testbed run ([`junit`]), GitHub Actions outputs ([`github`]), and
//! the run's event log ([`events`]).
//! Storms keep their own JUnit (`storm::junit`).

pub mod events;
pub mod github;
pub mod json;
pub mod junit;
pub mod schema;
