//! Shared by the QEMU test files: one fleet at a time, artifacts, dumps.
#![allow(dead_code)]

use host_orchestrator::fleet::Fleet;
use host_orchestrator::report::{Report, Verdict};
use host_orchestrator::testbed::{Artifacts, Options, Testbed};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Fleets share two host cores, and what is under test (hold-off windows,
/// sessions) must not depend on how loaded the host is: one at a time.
static ONE_FLEET_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Long enough for a loaded 2-core machine; reached only when a test fails.
pub const SETTLE: Duration = Duration::from_secs(120);

/// Runs `f` on its own runtime, holding the fleet lock.
pub fn run<F: std::future::Future<Output = ()>>(f: F) {
    let _guard = ONE_FLEET_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f);
}

pub fn artifacts() -> Artifacts {
    Artifacts::locate(None).expect("guest artifacts (run `cargo xtask test`)")
}

/// Options for `fleet`, able to start a backup master.
pub fn options(fleet: Fleet) -> Options {
    let mut o = Options::new(fleet, artifacts());
    o.master_exe = Some(env!("CARGO_BIN_EXE_bootcast").into());
    o
}

/// Boots a fleet to the end (every node settled) and returns the report;
/// panics, with the report, unless every node is verified.
pub async fn boot(opts: Options) -> Report {
    let tb = Testbed::start(opts).await.expect("testbed starts");
    settle(tb, "").await
}

/// Waits for a started fleet to settle, ends it and returns the report;
/// panics, with the report and `what`, unless every node is verified.
pub async fn settle(mut tb: Testbed, what: &str) -> Report {
    let settled = tb.wait_settled(SETTLE).await;
    let report = tb.shutdown().await;
    if !settled || report.verdict != Verdict::Pass {
        dump(&report);
        panic!("fleet did not verify {what}");
    }
    report
}

/// Prints what a failing test needs to see.
pub fn dump(report: &Report) {
    eprintln!("{}", report.table());
    eprintln!(
        "{}",
        serde_json::to_string_pretty(report).unwrap_or_default()
    );
}

/// Object bytes the masters put on the bus, repair included.
pub fn bytes_sent(report: &Report) -> u64 {
    report
        .broadcasts
        .iter()
        .map(|b| b.bytes + b.repair_bytes)
        .sum()
}

/// Whether `tool` is there (`present`); if not, fails under CI=true and
/// elsewhere says what is missing and how to get it (`install`), and the
/// test stops.
pub fn available(tool: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{tool} is missing: {install}");
    }
    eprintln!("note: {tool} is missing ({install}); skipping this test");
    false
}

/// Whether `tool` runs (`probe` succeeds); [`available`] otherwise.
pub fn have(tool: &str, probe: &mut Command) -> bool {
    let present = probe.output().is_ok_and(|o| o.status.success());
    available(tool, present, "`cargo xtask install` installs it")
}
