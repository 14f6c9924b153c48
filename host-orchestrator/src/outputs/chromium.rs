//! Headless Chromium, for the timeline page's screenshot (and for tests
//! that read the page as Chromium drew it). Debian's `chromium` package;
//! `$BOOTCAST_CHROMIUM` names another binary.
//!
//! Each run is a child process in its own group with a fresh profile
//! folder, bounded by [`TIMEOUT`]: past it the whole group is killed.

use crate::child::Child;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Names a Chromium binary to use instead of the one on `PATH`.
pub const CHROMIUM_VAR: &str = "BOOTCAST_CHROMIUM";

/// Binaries looked for on `PATH`, in order.
const NAMES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// How long one Chromium run may take (a loaded 2-core machine included).
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// What to install when Chromium is missing.
pub const INSTALL: &str =
    "Debian's chromium package (`cargo xtask install`, or as root: apt-get install chromium)";

/// The Chromium binary: `$BOOTCAST_CHROMIUM`, else the first of [`NAMES`]
/// on `PATH`. Says what to install when there is none.
pub fn find() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(CHROMIUM_VAR).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        bail!(
            "${CHROMIUM_VAR} names {}, which is no executable",
            p.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| NAMES.iter().map(move |n| dir.join(n)))
        .find(|p| is_executable(p))
        .with_context(|| format!("Chromium is not installed: install {INSTALL}"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A `file://` URL of `path` (absolute), with every byte outside the
/// unreserved set and `/` percent-encoded.
pub fn file_url(path: &Path) -> Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let abs =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let mut url = String::from("file://");
    for &b in abs.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url += &format!("%{b:02X}");
        }
    }
    Ok(url)
}

/// What Chromium printed.
struct Output {
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs headless Chromium on the page `html` with `args` (a fresh profile,
/// no network services), within [`TIMEOUT`].
async fn run(html: &Path, args: &[OsString]) -> Result<Output> {
    let exe = find()?;
    let profile = tempfile::Builder::new()
        .prefix("bc-chromium-")
        .tempdir()
        .context("cannot make a profile folder for Chromium")?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(file_url(html)?)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = Child::spawn(cmd, "chromium")?;
    let (mut out, mut err) = (child.take_stdout(), child.take_stderr());
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let (stdout, stderr, status) =
        tokio::join!(read_out, read_err, child.wait_or_kill_group(deadline));
    match status {
        None => bail!(
            "{} took longer than {} s and was stopped",
            exe.display(),
            TIMEOUT.as_secs()
        ),
        Some(s) if !s.success() => bail!("{} failed ({s}): {}", exe.display(), tail(&stderr)),
        Some(_) => Ok(Output { stdout, stderr }),
    }
}

/// The last lines of Chromium's chatter, for an error message.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Saves a screenshot of the page `html` to `png`, the window `size`
/// (width, height) pixels.
pub async fn screenshot(html: &Path, png: &Path, size: (u32, u32)) -> Result<()> {
    let png_abs =
        std::path::absolute(png).with_context(|| format!("cannot resolve {}", png.display()))?;
    let _ = std::fs::remove_file(&png_abs);
    let args = [
        OsString::from(format!("--window-size={},{}", size.0, size.1)),
        OsString::from(format!("--screenshot={}", png_abs.display())),
    ];
    let out = run(html, &args).await?;
    let made = std::fs::metadata(&png_abs).is_ok_and(|m| m.len() > 0);
    if !made {
        bail!("Chromium wrote no screenshot: {}", tail(&out.stderr));
    }
    Ok(())
}

/// The page `html` as Chromium's DOM once its scripts ran.
pub async fn dump_dom(html: &Path) -> Result<String> {
    let args = [
        OsString::from("--dump-dom"),
        OsString::from("--window-size=1600,1000"),
    ];
    let out = run(html, &args).await?;
    let dom = String::from_utf8(out.stdout).context("Chromium printed a DOM that is not UTF-8")?;
    if dom.trim().is_empty() {
        bail!("Chromium printed no DOM: {}", tail(&out.stderr));
    }
    Ok(dom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_encode_what_a_url_cannot_hold() {
        assert_eq!(
            file_url(Path::new("/tmp/a b/#1%/t.html")).unwrap(),
            "file:///tmp/a%20b/%231%25/t.html"
        );
    }

    #[test]
    fn the_last_lines_of_chatter_name_the_failure() {
        assert_eq!(tail("a\n\nb\nc\nd\n"), "b | c | d");
        assert_eq!(tail(""), "");
    }
}
