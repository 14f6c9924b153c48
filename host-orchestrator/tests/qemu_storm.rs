//! Storms on real fleets: the shipped rolling update passes with its
//! availability invariant watched all along; a broken update order and a
//! disturbance the scenario did not make are caught.

mod common;

use common::{artifacts, run};
use host_orchestrator::report::Verdict;
use host_orchestrator::storm::scenario::Scenario;
use host_orchestrator::storm::{StormOptions, StormReport, run as storm};
use std::path::Path;

async fn play(scenario: Scenario) -> StormReport {
    let dir = tempfile::tempdir().unwrap();
    let opts = StormOptions {
        scenario,
        artifacts: artifacts(),
        run_dir: dir.path().join("run"),
        seed: None,
        progress: false,
        master_exe: Some(env!("CARGO_BIN_EXE_bootcast").into()),
        interrupt: Default::default(),
    };
    storm(opts).await.expect("the storm runs")
}

fn check<'a>(r: &'a StormReport, name: &str) -> &'a host_orchestrator::storm::Check {
    r.invariants
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

fn shipped(name: &str) -> Scenario {
    Scenario::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ci")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_shipped_rolling_update_keeps_every_group_running() {
    run(async {
        let r = play(shipped("rolling-update.toml")).await;
        if r.testbed.verdict != Verdict::Pass {
            eprintln!("{}", r.table());
        }
        assert_eq!(r.testbed.verdict, Verdict::Pass);
        assert!(check(&r, "availability").pass);
        assert!(
            check(&r, "availability")
                .evidence
                .contains("always had a member running")
        );
        // Every module runs the new version; the drives were not updated.
        for n in &r.testbed.nodes {
            let want = if n.node_type == "drive" {
                "1.0.0"
            } else {
                "1.1.0"
            };
            assert_eq!(n.image_version.as_deref(), Some(want), "node {}", n.id);
        }
        let steps: Vec<_> = r
            .events
            .iter()
            .filter(|e| e.action == "rolling-update")
            .collect();
        assert_eq!(steps.len(), 2, "{:?}", r.events);
        assert!(steps.iter().all(|e| e.ok));
    });
}

#[test]
fn rebooting_both_sets_at_once_breaks_availability_and_the_storm_says_so() {
    run(async {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/rolling-update.toml"),
        )
        .unwrap()
        .replace(
            "sets = [\"A\", \"B\"]\nstep_timeout_s",
            "sets = [[\"A\", \"B\"]]\nstep_timeout_s",
        );
        assert!(
            text.contains("[[\"A\", \"B\"]]"),
            "the shipped file changed shape"
        );
        let r = play(Scenario::parse(&text, Path::new("."), Some("broken-order".into())).unwrap())
            .await;
        let a = check(&r, "availability");
        assert!(!a.pass, "{}", r.table());
        assert!(
            a.evidence.contains("had no member running"),
            "{}",
            a.evidence
        );
        assert_eq!(r.testbed.verdict, Verdict::Fail);
    });
}

#[test]
fn a_reboot_the_scenario_did_not_make_is_a_disturbance() {
    run(async {
        let text = "name = \"disturbed\"\n\
                    [[nodes]]\ntype = \"drive\"\ncount = 3\n\
                    [[timeline]]\nat_s = 12\naction = \"soft-reboot\"\nselect = { ids = [1] }\n\
                    [[timeline]]\nat_s = 14\naction = \"disturb\"\nselect = { ids = [2] }\n\
                    [expect]\nall_verified_by_s = 90\n";
        let r = play(Scenario::parse(text, Path::new("."), None).unwrap()).await;
        let d = check(&r, "no-disturbance");
        assert!(!d.pass, "{}", r.table());
        assert!(
            d.evidence.contains("node 2 (drive)") && !d.evidence.contains("node 1 "),
            "{}",
            d.evidence
        );
        // Everything else held: the node came back with the right image.
        assert!(check(&r, "right-image").pass, "{}", r.table());
        assert_eq!(r.testbed.verdict, Verdict::Fail);
    });
}
