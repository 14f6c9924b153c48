//! What a run leaves for people and CI, serialised at this edge: the
//! versioned JSON report ([`json`]), JUnit for a testbed run ([`junit`]).
//! Storms keep their own JUnit (`storm::junit`).

pub mod github;
pub mod json;
pub mod junit;
