//! Where log lines go: all of them (`info` and up, or `RUST_LOG`) to the run
//! folder's log file, and warnings and errors (everything at `info` with
//! `-v`, or `RUST_LOG`) to the terminal, above the live view's bars.

use super::stderr;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

/// Bytes kept while the log file is not open yet (lines from before the run
/// folder exists); more are dropped.
const PENDING_MAX: usize = 1 << 20;

enum Sink {
    /// Not open yet: lines kept until it is.
    Pending(Vec<u8>),
    File(std::fs::File),
}

/// The run's log file: lines written before [`LogFile::open`] are kept and
/// written first.
#[derive(Clone)]
pub struct LogFile(Arc<Mutex<Sink>>);

impl LogFile {
    fn new() -> LogFile {
        LogFile(Arc::new(Mutex::new(Sink::Pending(Vec::new()))))
    }

    /// Opens (appends to) `path`; what was logged so far goes in first.
    pub fn open(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the log file {}", path.display()))?;
        let mut sink = self
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("the log file's lock is poisoned"))?;
        if let Sink::Pending(kept) = &*sink {
            file.write_all(kept)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        *sink = Sink::File(file);
        Ok(())
    }
}

/// One event's bytes for the log file.
pub struct FileWriter(LogFile);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Ok(mut sink) = self.0.0.lock() else {
            return Ok(buf.len());
        };
        match &mut *sink {
            Sink::Pending(kept) if kept.len() + buf.len() <= PENDING_MAX => {
                kept.extend_from_slice(buf)
            }
            Sink::Pending(_) => {}
            Sink::File(f) => f.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = FileWriter;
    fn make_writer(&'a self) -> FileWriter {
        FileWriter(self.clone())
    }
}

/// One event's bytes for the terminal, written above the bars when dropped.
#[derive(Default)]
pub struct TermWriter(Vec<u8>);

impl Write for TermWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TermWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            stderr::write(&String::from_utf8_lossy(&self.0));
        }
    }
}

/// The terminal's side of the log.
struct Term;

impl<'a> MakeWriter<'a> for Term {
    type Writer = TermWriter;
    fn make_writer(&'a self) -> TermWriter {
        TermWriter::default()
    }
}

/// Sets up logging for the process: the terminal gets `terminal` (a
/// filter; `RUST_LOG` replaces it), and, with `to_file`, the returned log
/// file gets `info` and up (or `RUST_LOG`) once it is opened.
pub fn init(terminal: &str, to_file: bool) -> LogFile {
    let file = LogFile::new();
    let env = || EnvFilter::try_from_default_env().ok();
    let term = fmt::layer()
        .with_writer(Term)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(env().unwrap_or_else(|| EnvFilter::new(terminal)));
    let to_file = to_file.then(|| {
        fmt::layer()
            .with_writer(file.clone())
            .with_ansi(false)
            .with_filter(env().unwrap_or_else(|| EnvFilter::new("info")))
    });
    tracing_subscriber::registry()
        .with(term)
        .with(to_file)
        .init();
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_logged_before_the_file_opens_go_in_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log").join("bootcast.log");
        let file = LogFile::new();
        file.make_writer().write_all(b"early\n").unwrap();
        file.open(&path).unwrap();
        file.make_writer().write_all(b"late\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "early\nlate\n");
        // What is kept before is bounded.
        let file = LogFile::new();
        file.make_writer()
            .write_all(&vec![b'x'; PENDING_MAX + 1])
            .unwrap();
        let Sink::Pending(kept) = &*file.0.lock().unwrap() else {
            panic!("open")
        };
        assert!(kept.is_empty());
    }
}
