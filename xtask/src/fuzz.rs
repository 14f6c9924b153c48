//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/`, each for a
//! while, after installing what they need (a nightly toolchain, cargo-fuzz),
//! and prints what each run did.
//!
//! Corpora live in `fuzz/corpus/TARGET` (git-ignored) and grow from run to
//! run; they are seeded with real inputs (built images, a bundle of them,
//! the fleet files in `ci/`, encoded messages). Crashes land in
//! `fuzz/artifacts/TARGET`, and the run fails naming the file.

use anyhow::{Context, Result, bail};
use proto::msg::{self, Message};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The fuzz targets, as named in `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 6] = [
    "link_decoder",
    "message_decoder",
    "manifest_parse",
    "bundle_parse",
    "image_parse",
    "fleet_parse",
];

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Build with AddressSanitizer. The parsers are safe Rust, so by default
    /// they are built without it, which runs several times faster.
    #[arg(long)]
    asan: bool,
    /// One target (default: all): link_decoder, message_decoder,
    /// manifest_parse, bundle_parse, image_parse or fleet_parse.
    target: Option<String>,
}

/// The toolchain cargo-fuzz needs (`-Z` flags for sanitizer coverage).
const NIGHTLY: &str = "nightly";

/// What one target's run did, from libFuzzer's final statistics.
struct Stats {
    target: &'static str,
    runs: u64,
    per_second: u64,
    coverage: Option<u64>,
    corpus: Option<u64>,
    new_units: u64,
}

/// Runs the fuzz targets.
pub fn run(root: &Path, args: &FuzzArgs) -> Result<()> {
    let targets: Vec<&'static str> = match &args.target {
        Some(t) => vec![TARGETS.iter().copied().find(|x| x == t).with_context(|| {
            format!("unknown fuzz target {t:?} (one of {})", TARGETS.join(", "))
        })?],
        None => TARGETS.to_vec(),
    };
    cxx()?;
    nightly()?;
    cargo_fuzz(root)?;
    let fuzz_dir = root.join("fuzz");
    let sanitizer = if args.asan { "address" } else { "none" };
    eprintln!("xtask: building the fuzz targets (nightly, sanitizer {sanitizer})");
    crate::cmd::run_checked(
        &mut fuzz_command(root, &["build", "--sanitizer", sanitizer]),
        "cargo fuzz build",
    )?;
    seed(root, &fuzz_dir)?;
    let logs = root.join("target").join("fuzz-logs");
    std::fs::create_dir_all(&logs)?;
    let mut done = Vec::new();
    for t in targets {
        eprintln!("xtask: fuzzing {t} for {} s", args.seconds);
        let log = logs.join(format!("{t}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let status = fuzz_command(root, &["run", "--sanitizer", sanitizer, t, "--"])
            .arg(format!("-max_total_time={}", args.seconds))
            .arg("-print_final_stats=1")
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .status()
            .context("cannot run cargo fuzz")?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            let artifact = text
                .lines()
                .find_map(|l| l.split("Test unit written to ").nth(1))
                .map(str::trim);
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {t} failed ({status}){}; log {}:\n{}",
                artifact.map_or(String::new(), |a| format!(
                    "; reproduce with: cargo +nightly fuzz run {t} {a}"
                )),
                log.display(),
                tail.join("\n")
            );
        }
        done.push(stats(t, &text));
    }
    println!("| target | runs | runs/s | coverage | corpus | new inputs |");
    println!("|---|---:|---:|---:|---:|---:|");
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    for s in &done {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s.target,
            s.runs,
            s.per_second,
            opt(s.coverage),
            opt(s.corpus),
            s.new_units
        );
    }
    eprintln!(
        "xtask: {} fuzz targets ran {} s each without a crash; logs in {}",
        done.len(),
        args.seconds,
        logs.display()
    );
    Ok(())
}

/// `cargo fuzz ARGS` on the nightly toolchain, in the workspace root.
fn fuzz_command(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", NIGHTLY, "cargo", "fuzz"])
        .args(args)
        .current_dir(root)
        // Ours point at the stable toolchain that runs xtask.
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    c
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A C++ compiler: libfuzzer-sys builds libFuzzer from source.
fn cxx() -> Result<()> {
    if succeeds(Command::new("c++").arg("--version")) {
        return Ok(());
    }
    let cmd = "apt-get install -y g++";
    if !crate::install::is_root() {
        bail!("a C++ compiler (c++) is missing; cargo-fuzz needs one: run `{cmd}` as root");
    }
    eprintln!("xtask: installing a C++ compiler for libFuzzer: {cmd}");
    let ok = succeeds(Command::new("apt-get").arg("update"))
        && succeeds(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "g++"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    if !ok || !succeeds(Command::new("c++").arg("--version")) {
        bail!("installing g++ failed; run `apt-get update && {cmd}` and try again");
    }
    Ok(())
}

/// A nightly toolchain, through rustup: fresh machines have only the stable
/// one that `rust-toolchain.toml` names.
fn nightly() -> Result<()> {
    if succeeds(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--version"])) {
        return Ok(());
    }
    let cmd = format!("rustup toolchain install {NIGHTLY} --profile minimal");
    eprintln!("xtask: installing the {NIGHTLY} toolchain for cargo-fuzz: {cmd}");
    let ok = Command::new("rustup")
        .args(["toolchain", "install", NIGHTLY, "--profile", "minimal"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("could not install the {NIGHTLY} toolchain; run `{cmd}` and try again");
    }
    Ok(())
}

/// cargo-fuzz, through `cargo install`.
fn cargo_fuzz(root: &Path) -> Result<()> {
    if succeeds(&mut fuzz_command(root, &["--version"])) {
        return Ok(());
    }
    let cmd = "cargo install cargo-fuzz --locked";
    eprintln!("xtask: installing cargo-fuzz: {cmd}");
    let ok = crate::cmd::cargo(root)
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok || !succeeds(&mut fuzz_command(root, &["--version"])) {
        bail!("could not install cargo-fuzz; run `{cmd}` and try again");
    }
    Ok(())
}

/// The fuzz targets' corpora: one folder per target, seeds named by
/// content (so seeding again adds nothing).
struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("seed-{:016x}", fnv(bytes)));
        if !path.exists() {
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// Puts real inputs into each target's corpus.
fn seed(root: &Path, fuzz_dir: &Path) -> Result<()> {
    let corpus = Corpus {
        dir: fuzz_dir.join("corpus"),
    };
    seed_images(root, &corpus)?;
    for path in files(&root.join("ci"), "toml") {
        corpus.put("fleet_parse", &std::fs::read(&path)?)?;
    }
    corpus.put(
        "fleet_parse",
        b"[master]\npolicy = \"quorum\"\nhold_off_ms = 900\n[[nodes]]\ntype = \"drive\"\ncount = 3\nmin_version = \"1.0.0\"\n",
    )?;
    seed_messages(&corpus)
}

/// Built images, when there are any (`cargo xtask build`): whole, their
/// manifests, and a bundle of the two smallest.
fn seed_images(root: &Path, corpus: &Corpus) -> Result<()> {
    let images_dir = crate::cmd::bootcast_dir(root).join("images");
    let mut images: Vec<(proto::NodeType, Vec<u8>)> = Vec::new();
    for path in files(&images_dir, "bcimg") {
        let bytes = std::fs::read(&path)?;
        corpus.put("image_parse", &bytes)?;
        corpus.put(
            "manifest_parse",
            &bytes[..bytes.len().min(images::manifest::MANIFEST_LEN)],
        )?;
        if let Ok(m) = images::manifest::Manifest::parse(&bytes) {
            images.push((m.node_type, bytes));
        }
    }
    if images.is_empty() {
        return Ok(());
    }
    // Small ones: a bundle of big images slows every run.
    images.sort_by_key(|(_, b)| b.len());
    let parts: Vec<(proto::NodeType, &[u8])> = images
        .iter()
        .take(2)
        .map(|(t, b)| (*t, b.as_slice()))
        .collect();
    if let Ok(b) = images::bundle::build(&parts) {
        corpus.put("bundle_parse", &b)?;
    }
    Ok(())
}

/// One message of a few kinds, as frames and on the link.
fn seed_messages(corpus: &Corpus) -> Result<()> {
    let samples = [
        Message::Request(msg::Request {
            node_type: 3,
            flags: 0,
            boot_rom_version: 1,
            attempt: 2,
            min_version: 0x0100_0000,
        }),
        Message::Nack(msg::Nack {
            session: 7,
            count: 2,
            ranges: [
                (1, 2),
                (9, 1),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
            ],
        }),
        Message::Data(msg::Data {
            session: 7,
            chunk: 3,
            payload: &[0xAB; msg::FD_CHUNK],
        }),
    ];
    for m in samples {
        let Ok(f) = m.to_frame(0x0102) else { continue };
        let mut raw = f.id().to_le_bytes().to_vec();
        raw.push(f.flags());
        raw.extend_from_slice(f.data());
        corpus.put("message_decoder", &raw)?;
        let mut out = [0u8; proto::link::MAX_ENCODED];
        let n = proto::link::encode(&f, &mut out);
        corpus.put("link_decoder", &out[..n])?;
    }
    Ok(())
}

/// Files in `dir` ending in `.ext`, sorted; none if `dir` is missing.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// FNV-1a, to name seed files by content.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// libFuzzer's `-print_final_stats` lines and its last status line.
fn stats(target: &'static str, log: &str) -> Stats {
    let stat = |name: &str| -> u64 {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // e.g. "#123456 DONE   cov: 812 ft: 2301 corp: 210/9012b lim: ..."
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"))
        .unwrap_or("");
    let field = |name: &str| -> Option<u64> {
        let mut words = last.split_whitespace();
        words.find(|w| *w == name)?;
        let v = words.next()?;
        v.split('/').next()?.parse().ok()
    };
    Stats {
        target,
        runs: stat("number_of_executed_units"),
        per_second: stat("average_exec_per_sec"),
        coverage: field("cov:"),
        corpus: field("corp:"),
        new_units: stat("new_units_added"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read() {
        let log = "INFO: seed\n#2 INITED cov: 10 ft: 11 corp: 1/1b exec/s: 0\n\
                   #5000 DONE   cov: 812 ft: 2301 corp: 210/9012b lim: 4 exec/s: 2500 rss: 40Mb\n\
                   Done 5000 runs in 2 second(s)\nstat::number_of_executed_units: 5000\n\
                   stat::average_exec_per_sec:     2500\nstat::new_units_added:         209\n";
        let s = stats("x", log);
        assert_eq!(
            (s.runs, s.per_second, s.coverage, s.corpus, s.new_units),
            (5000, 2500, Some(812), Some(210), 209)
        );
        let s = stats("x", "");
        assert_eq!((s.runs, s.coverage), (0, None));
    }

    #[test]
    fn seeding_fills_each_corpus_once() {
        let root = std::env::temp_dir().join(format!("xtask-seed-{}", std::process::id()));
        std::fs::create_dir_all(root.join("ci")).unwrap();
        std::fs::write(root.join("ci").join("f.toml"), "[[nodes]]\ntype = \"xy\"\n").unwrap();
        let fuzz_dir = root.join("fuzz");
        let count =
            |t: &str| std::fs::read_dir(fuzz_dir.join("corpus").join(t)).map_or(0, |d| d.count());
        seed(&root, &fuzz_dir).unwrap();
        let got = [
            "fleet_parse",
            "message_decoder",
            "link_decoder",
            "image_parse",
        ]
        .map(count);
        seed(&root, &fuzz_dir).unwrap();
        let again = [
            "fleet_parse",
            "message_decoder",
            "link_decoder",
            "image_parse",
        ]
        .map(count);
        std::fs::remove_dir_all(&root).unwrap();
        // Two fleets, three messages, no built images.
        assert_eq!(got, [2, 3, 3, 0]);
        assert_eq!(again, got, "seeds are named by content");
    }

    #[test]
    fn every_target_is_in_the_fuzz_crate() {
        let toml = include_str!("../../fuzz/Cargo.toml");
        for t in TARGETS {
            assert!(toml.contains(&format!("name = \"{t}\"")), "{t}");
        }
    }
}
