//! What a run leaves for people and CI, serialised at this edge: the
//! versioned JSON report ([`json`]) and its JSON Schema ([`schema`]), JUnit
//! for a testbed run ([`junit`]), GitHub Actions outputs ([`github`]).
//! Storms keep their own JUnit (`storm::junit`).
//!
//! To look at a run with ([`views`] writes them): its event log
//! ([`events`]), the run as spans on lanes ([`spans`]) drawn as Chrome
//! trace events ([`trace`]) and as a self-contained page ([`page`]), and
//! the page's screenshot by headless Chromium ([`chromium`]).

pub mod chromium;
pub mod events;
pub mod github;
pub mod json;
pub mod junit;
pub mod page;
pub mod schema;
pub mod spans;
pub mod trace;
pub mod views;
