//! The terminal's stderr, shared by the live view's bars and every other
//! line: while bars are drawn, a line goes above them instead of through
//! them.

use indicatif::MultiProgress;
use std::io::Write;
use std::sync::Mutex;

/// The bars being drawn, if any. The terminal is one per process, so this
/// is too.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn bars() -> Option<MultiProgress> {
    BARS.lock().ok().and_then(|b| b.clone())
}

/// Lines from now on go above `bars`.
pub fn attach(bars: MultiProgress) {
    if let Ok(mut b) = BARS.lock() {
        *b = Some(bars);
    }
}

/// Lines from now on go straight to stderr.
pub fn detach() {
    if let Ok(mut b) = BARS.lock() {
        *b = None;
    }
}

/// Writes `text` (whole lines) to stderr, above the bars if any are drawn.
pub fn write(text: &str) {
    match bars() {
        Some(b) => {
            for line in text.lines() {
                let _ = b.println(line);
            }
        }
        None => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
}

/// Writes one line to stderr, above the bars if any are drawn.
pub fn eprintln(line: &str) {
    write(&format!("{line}\n"));
}

/// Runs `f` with the bars cleared (for writing to stdout), then redraws them.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match bars() {
        Some(b) => b.suspend(f),
        None => f(),
    }
}
