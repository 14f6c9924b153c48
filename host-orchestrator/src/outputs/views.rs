//! What a run folder holds to look at the run with, besides the report:
//! `events.jsonl` ([`events`](super::events)), `trace.json`
//! ([`trace`](super::trace)), `timeline.html` ([`page`](super::page)) and
//! `timeline.png`, a screenshot of the page ([`chromium`](super::chromium)).
//! The screenshot is the one that may be missing: without Chromium the run
//! says so and goes on.

use super::events::{self, Sources};
use super::spans::Timeline;
use super::{chromium, page, trace};
use crate::rundir::RunDir;
use anyhow::{Context, Result};
use std::path::Path;

/// What [`write`] left.
#[derive(Debug)]
pub struct Written {
    /// Lines of `events.jsonl`.
    pub events: usize,
    /// Why `timeline.png` is missing, if it is.
    pub no_screenshot: Option<String>,
}

fn save(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the run's events, trace and timeline page (titled `title`,
/// shown to at least `end_s`) into `dir`, then a screenshot of the page.
/// A screenshot that cannot be made is a warning in the log, not an error.
pub async fn write(
    dir: &RunDir,
    title: &str,
    sources: &Sources<'_>,
    end_s: f64,
) -> Result<Written> {
    std::fs::create_dir_all(dir.path())
        .with_context(|| format!("cannot create {}", dir.path().display()))?;
    let events = events::collect(sources)?;
    save(&dir.events(), &events::jsonl(&events)?)?;
    let timeline = Timeline::of(title, &sources.report.nodes, &events, end_s);
    let trace =
        serde_json::to_string(&trace::render(&timeline)).context("cannot serialise the trace")?;
    save(&dir.trace(), &trace)?;
    save(&dir.timeline_html(), &page::render(&timeline)?)?;
    let shot = chromium::screenshot(
        &dir.timeline_html(),
        &dir.timeline_png(),
        page::shot_size(&timeline),
    )
    .await;
    let no_screenshot = shot.err().map(|e| {
        let why = format!("{e:#}");
        tracing::warn!("{} not made: {why}", dir.timeline_png().display());
        why
    });
    Ok(Written {
        events: events.len(),
        no_screenshot,
    })
}
