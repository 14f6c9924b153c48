//! The live view on a terminal: indicatif bars, one per node type, then the
//! broadcast, the window and a summary; failed nodes are printed above them
//! in red, once each.

use super::screen::{Screen, TypeLine};
use super::stderr;
use ::console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeSet;

/// Redraws per second at most.
const HZ: u8 = 10;

/// The bars.
pub struct Bars {
    mp: MultiProgress,
    types: Vec<ProgressBar>,
    session: ProgressBar,
    window: ProgressBar,
    summary: ProgressBar,
    failures_shown: BTreeSet<u16>,
}

fn style_of(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("█▉▊▋▌▍▎▏░")
}

fn type_style(failed: bool) -> ProgressStyle {
    if failed {
        style_of("{prefix:<9.bold} {bar:24.red/white} {pos:>3}/{len:<3} verified  {msg}")
    } else {
        style_of("{prefix:<9.bold} {bar:24.green/white} {pos:>3}/{len:<3} verified  {msg}")
    }
}

fn text_style() -> ProgressStyle {
    style_of("{prefix:<9.bold} {msg}")
}

impl Bars {
    /// Bars for the types on `first`, drawn on stderr.
    pub fn new(first: &Screen) -> Bars {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(HZ));
        let line = |prefix: &str, style: ProgressStyle| {
            let b = mp.add(ProgressBar::new(0).with_style(style));
            b.set_prefix(prefix.to_string());
            b
        };
        let types = first
            .types
            .iter()
            .map(|t| line(t.node_type.name(), type_style(false)))
            .collect();
        let session = line("broadcast", text_style());
        let window = line("window", text_style());
        let summary =
            mp.add(ProgressBar::new_spinner().with_style(style_of("{spinner:.cyan} {msg}")));
        stderr::attach(mp.clone());
        Bars {
            mp,
            types,
            session,
            window,
            summary,
            failures_shown: BTreeSet::new(),
        }
    }

    /// Draws `s`.
    pub fn show(&mut self, s: &Screen) {
        for (bar, t) in self.types.iter().zip(&s.types) {
            show_type(bar, t);
        }
        match &s.session {
            Some(line) => {
                self.session.set_style(style_of(
                    "{prefix:<9.bold} {bar:24.cyan/white} {percent:>3}%  {msg}",
                ));
                self.session.set_length(line.progress.total_chunks as u64);
                self.session.set_position(line.progress.chunks as u64);
                let text = line.text();
                self.session.set_message(if line.progress.round > 0 {
                    style(text).yellow().to_string()
                } else {
                    text
                });
            }
            None => {
                self.session.set_style(text_style());
                self.session.set_message(style("idle").dim().to_string());
            }
        }
        self.window.set_message(match &s.window {
            Some(w) => w.text(),
            None => style("none open").dim().to_string(),
        });
        let summary = s.summary.text();
        self.summary.set_message(if s.summary.failed > 0 {
            style(summary).red().bold().to_string()
        } else if s.summary.verified == s.summary.total {
            style(summary).green().bold().to_string()
        } else {
            summary
        });
        self.summary.tick();
        for (id, why) in &s.failures {
            if self.failures_shown.insert(*id) {
                let _ = self.mp.println(
                    style(format!("node {id} FAILED: {why}"))
                        .red()
                        .bold()
                        .to_string(),
                );
            }
        }
    }

    /// Draws `last` and leaves it on the screen; lines go straight to stderr
    /// again.
    pub fn finish(mut self, last: &Screen) {
        self.show(last);
        for b in self
            .types
            .iter()
            .chain([&self.session, &self.window, &self.summary])
        {
            b.finish();
        }
        stderr::detach();
    }
}

fn show_type(bar: &ProgressBar, t: &TypeLine) {
    bar.set_length(t.total as u64);
    bar.set_position(t.verified as u64);
    if t.failed > 0 {
        bar.set_style(type_style(true));
        bar.set_message(style(t.detail()).red().bold().to_string());
    } else {
        bar.set_message(t.detail());
    }
}
