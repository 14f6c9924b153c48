//! Storms on real fleets: the shipped rolling update passes with its
//! availability invariant watched all along; a broken update order and a
//! disturbance the scenario did not make are caught.

mod common;

use common::{artifacts, run};
use host_orchestrator::master::Role;
use host_orchestrator::report::Verdict;
use host_orchestrator::storm::scenario::Scenario;
use host_orchestrator::storm::{StormOptions, StormReport, run as storm};
use host_orchestrator::supervisor::HostState;
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
        // Every group was watched (armed at its first verified member) and
        // always had a member running.
        let a = &check(&r, "availability").evidence;
        for g in ["accessor", "xy", "comm", "op-panel"] {
            assert!(
                a.contains(&format!("group {g}: watched ")),
                "group {g} not watched: {a}"
            );
        }
        assert_eq!(a.matches("always a member running").count(), 4, "{a}");
        // The JUnit file parses: a case per check, then per node, with the
        // run's time, and the seed and scenario as properties.
        let xml = host_orchestrator::storm::junit::render(&r);
        let j = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit parses");
        let suite = &j.test_suites[0];
        assert_eq!(suite.tests, r.invariants.len() + r.testbed.nodes.len());
        assert_eq!(suite.failures, 0, "{xml}");
        assert_eq!(
            suite.test_cases[0].name.as_str(),
            format!("invariant {}", r.invariants[0].name)
        );
        assert!(suite.test_cases.iter().all(|c| c.time.is_some()));
        let prop = |k: &str| {
            suite
                .properties
                .iter()
                .find(|p| p.name.as_str() == k)
                .map(|p| p.value.to_string())
        };
        assert_eq!(prop("seed"), Some(r.seed.to_string()));
        assert_eq!(prop("scenario").as_deref(), Some("rolling-update"));
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
            a.evidence.contains("moments without a member running"),
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

/// The states node `id` entered in `from..to` (seconds since the start).
fn states_between(r: &StormReport, id: u16, from: f64, to: f64) -> Vec<HostState> {
    let n = r.testbed.nodes.iter().find(|n| n.id == id).unwrap();
    n.states
        .iter()
        .filter(|c| c.t_s >= from && c.t_s < to)
        .map(|c| c.state)
        .collect()
}

/// When node `id` was last verified, seconds since the start.
fn last_verified(r: &StormReport, id: u16) -> Option<f64> {
    let n = r.testbed.nodes.iter().find(|n| n.id == id).unwrap();
    n.states
        .iter()
        .rev()
        .find(|c| c.state == HostState::Verified)
        .map(|c| c.t_s)
}

#[test]
fn a_node_behind_a_cut_link_waits_while_the_masters_side_runs_on() {
    run(async {
        let text = "name = \"partition\"\n\
                    [bus]\nsegments = [\"base\", \"ha\"]\n\
                    [[nodes]]\ntype = \"drive\"\ncount = 2\nsegment = \"base\"\n\
                    [[nodes]]\ntype = \"drive\"\ncount = 2\nsegment = \"ha\"\n\
                    [[timeline]]\nat_s = 15\naction = \"cut-link\"\nlink = \"base-ha\"\n\
                    [[timeline]]\nat_s = 16\naction = \"power-cycle\"\nselect = { ids = [3] }\n\
                    [[timeline]]\nat_s = 17\naction = \"power-cycle\"\nselect = { ids = [1] }\n\
                    [[timeline]]\nat_s = 32\naction = \"restore-link\"\nlink = \"base-ha\"\n\
                    [expect]\nall_verified_by_s = 100\n";
        let r = play(Scenario::parse(text, Path::new("."), None).unwrap()).await;
        assert_eq!(r.testbed.verdict, Verdict::Pass, "{}", r.table());
        // Behind the cut, node 3 only asks: no session reaches it.
        let cut_off = states_between(&r, 3, 16.0, 32.0);
        assert!(
            !cut_off.is_empty()
                && cut_off.iter().all(|s| matches!(
                    s,
                    HostState::Off
                        | HostState::Booting
                        | HostState::SelfTest
                        | HostState::Requesting
                )),
            "node 3 while cut off: {cut_off:?}\n{}",
            r.table()
        );
        // On the master's side, node 1 is served meanwhile.
        let v1 = last_verified(&r, 1).expect("node 1 verified");
        assert!((17.0..32.0).contains(&v1), "node 1 verified at {v1}");
        // Once the link is back, node 3 is served too.
        let v3 = last_verified(&r, 3).expect("node 3 verified");
        assert!(v3 > 32.0, "node 3 verified at {v3}");
        assert!(
            check(&r, "accounted")
                .evidence
                .contains("link_cut (a cut link)"),
            "{}",
            check(&r, "accounted").evidence
        );
    });
}

#[test]
fn a_killed_master_is_taken_over_by_the_backup_which_serves_the_next_boot() {
    run(async {
        let text = "name = \"takeover\"\n\
                    [master]\nbackup = true\n\
                    [[nodes]]\ntype = \"drive\"\ncount = 3\n\
                    [[timeline]]\nat_s = 15\naction = \"kill-master\"\n\
                    [[timeline]]\nat_s = 18\naction = \"power-cycle\"\nselect = { ids = [2] }\n\
                    [expect]\nall_verified_by_s = 100\n";
        let r = play(Scenario::parse(text, Path::new("."), None).unwrap()).await;
        assert_eq!(r.testbed.verdict, Verdict::Pass, "{}", r.table());
        assert!(
            !r.testbed.takeovers.is_empty(),
            "no takeover: {}",
            r.table()
        );
        let v2 = last_verified(&r, 2).expect("node 2 verified");
        assert!(v2 > 18.0, "node 2 verified at {v2}");
        let after = r
            .testbed
            .broadcasts
            .iter()
            .filter(|b| b.started_s > 18.0)
            .collect::<Vec<_>>();
        assert!(
            !after.is_empty() && after.iter().all(|b| b.masters == [Role::Backup]),
            "sessions after the kill: {after:?}"
        );
    });
}
