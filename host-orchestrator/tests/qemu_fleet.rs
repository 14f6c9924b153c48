//! Fleets of real QEMU nodes, end to end: boot ROM, bus, master, apps and the
//! supervisor's verification. Needs `qemu-system-riscv64` and the guest
//! artifacts (`cargo xtask test` provides both).

mod common;

use board::strap::Transport;
use common::{SETTLE, artifacts, dump, options, run};
use host_orchestrator::fleet::Fleet;
use host_orchestrator::report::{Report, Verdict};
use host_orchestrator::store::image_file_name;
use host_orchestrator::supervisor::HostState;
use host_orchestrator::testbed::Testbed;
use images::manifest::MANIFEST_LEN;
use proto::NodeType;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn by_type(report: &Report) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in &report.observed_sessions {
        *m.entry(s.node_type.clone()).or_insert(0) += 1;
    }
    m
}

/// A copy of the built images with `edit` applied to one type's file.
fn tampered_store(dir: &Path, t: NodeType, edit: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    for e in std::fs::read_dir(artifacts().images()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, store.join(p.file_name().unwrap())).unwrap();
    }
    let target = store.join(image_file_name(t));
    let mut bytes = std::fs::read(&target).unwrap();
    edit(&mut bytes);
    std::fs::write(&target, bytes).unwrap();
    store
}

#[test]
fn eight_nodes_of_five_types_boot_together_and_each_type_is_broadcast_once() {
    run(eight_nodes(Transport::Uart));
}

#[test]
fn eight_nodes_boot_the_same_over_virtio_and_their_consoles_tell_it() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let report = eight_nodes_in(Transport::Virtio, Some(dir.path().join("run"))).await;
        let run_dir = host_orchestrator::rundir::RunDir::at(dir.path().join("run"));
        let console = std::fs::read_to_string(run_dir.console_log(1)).unwrap();
        let generation = report.nodes[0].generation.unwrap();
        for line in [
            "bootcast boot ROM: node 1 type 1, self-test passed".to_string(),
            format!("receiving session {generation}"),
            format!(
                "image verified, sha256 {}; starting it",
                report.nodes[0].expected_digest
            ),
            format!("app accessor running, generation {generation}"),
        ] {
            assert!(
                console.contains(&line),
                "console lacks {line:?}:\n{console}"
            );
        }
    });
}

async fn eight_nodes(transport: Transport) {
    eight_nodes_in(transport, None).await;
}

async fn eight_nodes_in(transport: Transport, run_dir: Option<PathBuf>) -> Report {
    {
        let mut fleet = Fleet::default_mix(8).unwrap();
        fleet.transport = transport;
        assert_eq!(fleet.types().len(), 5);
        let mut opts = options(fleet);
        opts.run_dir = run_dir;
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let settled = tb.wait_settled(SETTLE).await;
        let report = tb.shutdown().await;
        if !(settled && report.verdict == Verdict::Pass) {
            dump(&report);
            panic!("fleet did not verify");
        }
        assert_eq!(report.nodes_verified, 8);
        for n in &report.nodes {
            assert_eq!(
                n.digest.as_deref(),
                Some(n.expected_digest.as_str()),
                "node {}",
                n.id
            );
            assert_eq!(n.generations.len(), 1, "node {} booted once", n.id);
        }
        // What the supervisor saw on the bus, not what the master says.
        let seen = by_type(&report);
        assert_eq!(seen.len(), 5, "every type broadcast: {seen:?}");
        assert!(
            seen.values().all(|&c| c == 1),
            "each type exactly once: {seen:?}"
        );
        // And the master's log agrees: one window, every node a requester.
        assert_eq!(report.broadcasts.len(), 5, "{:?}", report.broadcasts);
        let windows: std::collections::BTreeSet<u32> =
            report.broadcasts.iter().map(|b| b.window).collect();
        assert_eq!(windows.len(), 1, "one window served everyone");
        let mut served: Vec<u16> = report
            .broadcasts
            .iter()
            .flat_map(|b| b.requesters.clone())
            .collect();
        served.sort();
        assert_eq!(served, (1..=8).collect::<Vec<u16>>());
        // The bus carried real traffic and dropped nothing.
        assert!(report.bus.is_some(), "bus statistics in the report");
        report
    }
}

#[test]
fn a_node_rebooted_while_others_run_gets_its_image_and_the_others_are_undisturbed() {
    run(async {
        let fleet = Fleet::default_mix(6).unwrap();
        let mut tb = Testbed::start(options(fleet))
            .await
            .expect("testbed starts");
        if !tb.wait_settled(SETTLE).await || tb.report().verdict != Verdict::Pass {
            let r = tb.shutdown().await;
            dump(&r);
            panic!("fleet did not verify");
        }
        let before = tb.report();
        let drive = before
            .nodes
            .iter()
            .find(|n| n.node_type == "drive")
            .unwrap();
        let target = drive.id;
        let old_generation = drive.generation.unwrap();
        tb.soft_reboot(target).await.unwrap();
        // It must go back to the boot ROM, ask, and be verified on a new generation.
        let back = tb
            .wait_until(SETTLE, |v| {
                let n = &v.nodes[&target];
                n.state == HostState::Verified && n.generation.is_some_and(|g| g != old_generation)
            })
            .await;
        // Every other node heard the broadcast and says so in a heartbeat
        // (on either clock: a wait on the run's own time).
        let others: Vec<(u16, u32)> = before
            .nodes
            .iter()
            .filter(|n| n.id != target)
            .map(|n| (n.id, n.ignored_image_frames))
            .collect();
        let heard = back
            && tb
                .wait_until(SETTLE, |v| {
                    others
                        .iter()
                        .all(|(id, was)| v.nodes[id].ignored_image_frames > *was)
                })
                .await;
        let report = tb.shutdown().await;
        if !back || report.verdict != Verdict::Pass {
            dump(&report);
            panic!("rebooted node did not come back verified");
        }
        assert!(heard, "not every other node said it ignored the broadcast");
        let rebooted = report.nodes.iter().find(|n| n.id == target).unwrap();
        assert_eq!(rebooted.generations.len(), 2, "{:?}", rebooted.generations);
        assert_eq!(rebooted.reset_cause.as_deref(), Some("SoftReboot"));
        assert_eq!(rebooted.boot_count, 2);
        let drive_sessions: Vec<_> = report
            .broadcasts
            .iter()
            .filter(|b| b.requesters == vec![target])
            .collect();
        assert_eq!(
            drive_sessions.len(),
            1,
            "one broadcast for the rebooted node: {:?}",
            report.broadcasts
        );
        for (old, new) in before
            .nodes
            .iter()
            .zip(&report.nodes)
            .filter(|(o, _)| o.id != target)
        {
            assert_eq!(
                old.generation, new.generation,
                "node {} was disturbed",
                new.id
            );
            assert_eq!(new.generations.len(), 1, "node {} rebooted", new.id);
            assert!(
                new.ignored_image_frames > old.ignored_image_frames,
                "node {} saw the broadcast and ignored it ({} → {})",
                new.id,
                old.ignored_image_frames,
                new.ignored_image_frames
            );
        }
    });
}

#[test]
fn a_node_whose_image_was_tampered_with_in_the_store_is_failed_with_the_reason() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        // One payload byte flipped, manifest untouched: the node's own check fails.
        let store = tampered_store(dir.path(), NodeType::Drive, |b| {
            b[MANIFEST_LEN + 64] ^= 0x01
        });
        let fleet =
            Fleet::parse("[[nodes]]\ntype = \"xy\"\n[[nodes]]\ntype = \"drive\"\n").unwrap();
        let mut opts = options(fleet);
        opts.store = Some(store.clone());
        opts.max_rejects = 2;
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let settled = tb.wait_settled(SETTLE).await;
        let report = tb.shutdown().await;
        let xy = &report.nodes[0];
        let drive = &report.nodes[1];
        if !settled || !xy.verified || drive.state != HostState::Failed {
            dump(&report);
            panic!("expected xy verified and drive failed");
        }
        assert_eq!(report.verdict, Verdict::Fail);
        let failure = drive.failure.as_deref().unwrap();
        assert!(failure.contains("digest mismatch"), "{failure}");
        assert!(drive.rejections.len() >= 2);
        // The node reports what it measured: the tampered payload's digest.
        let tampered = std::fs::read(store.join(image_file_name(NodeType::Drive))).unwrap();
        let measured = Sha256::digest(&tampered[MANIFEST_LEN..]);
        let prefix: String = measured[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(drive.rejections[0].measured_prefix, prefix);
        assert!(drive.digest.is_none(), "a rejected image never runs");
    });
}

#[test]
fn a_consistently_forged_image_runs_but_the_supervisor_fails_it() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        // Payload extended and the manifest's sizes and digest rewritten to
        // match: the node accepts it; only a verifier that checks against the
        // build sees it. (Appended bytes lie past the app's code, so it runs.)
        let store = tampered_store(dir.path(), NodeType::Drive, |b| {
            b.extend_from_slice(&[0xAA; 4]);
            let size = u32::from_le_bytes(b[48..52].try_into().unwrap()) + 4;
            b[48..52].copy_from_slice(&size.to_le_bytes());
            let mem_size = u32::from_le_bytes(b[52..56].try_into().unwrap()).max(size);
            b[52..56].copy_from_slice(&mem_size.to_le_bytes());
            let digest = Sha256::digest(&b[MANIFEST_LEN..]);
            b[56..88].copy_from_slice(&digest);
            // Signed with the build's own key (as a leaked key would allow):
            // only the supervisor's check against the build can tell.
            let mut img = images::build::Image::parse(b).unwrap();
            img.sign(&artifacts().signing_key().unwrap());
            *b = img.to_bytes();
        });
        let fleet =
            Fleet::parse("[[nodes]]\ntype = \"drive\"\n[[nodes]]\ntype = \"comm\"\n").unwrap();
        let mut opts = options(fleet);
        opts.store = Some(store);
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let settled = tb.wait_settled(SETTLE).await;
        let report = tb.shutdown().await;
        let drive = &report.nodes[0];
        if !settled || drive.state != HostState::Failed || !report.nodes[1].verified {
            dump(&report);
            panic!("expected drive failed, comm verified");
        }
        let failure = drive.failure.as_deref().unwrap();
        assert!(failure.contains("running digest"), "{failure}");
        assert_ne!(
            drive.digest.as_deref(),
            Some(drive.expected_digest.as_str())
        );
        assert!(!drive.verified);
    });
}

#[test]
fn a_reset_keeps_ram_and_a_power_cycle_loses_it() {
    run(async {
        let fleet = Fleet::default_mix(3).unwrap();
        let mut tb = Testbed::start(options(fleet))
            .await
            .expect("testbed starts");
        if !tb.wait_settled(SETTLE).await {
            let r = tb.shutdown().await;
            dump(&r);
            panic!("fleet did not verify");
        }
        let before = tb.report();
        tb.reset(1).await.unwrap();
        tb.power_cycle(2).await.unwrap();
        let rebooted = |v: &host_orchestrator::supervisor::FleetView, id: u16| {
            let n = &v.nodes[&id];
            n.state == HostState::Verified && n.generations.len() == 2
        };
        let back = tb
            .wait_until(SETTLE, |v| rebooted(v, 1) && rebooted(v, 2))
            .await;
        let report = tb.shutdown().await;
        if !back {
            dump(&report);
            panic!("nodes did not come back");
        }
        let (reset, cycled) = (&report.nodes[0], &report.nodes[1]);
        // A reset keeps RAM: the boot ROM counts the boot and knows why.
        assert_eq!(reset.reset_cause.as_deref(), Some("Reset"));
        assert_eq!(reset.boot_count, 2);
        // A power cycle loses RAM: a first boot again.
        assert_eq!(cycled.reset_cause.as_deref(), Some("PowerOn"));
        assert_eq!(cycled.boot_count, 1);
        for (old, new) in before.nodes.iter().zip(&report.nodes).take(2) {
            assert_ne!(
                old.generation, new.generation,
                "node {} got a new image",
                new.id
            );
        }
        assert_eq!(
            report.nodes[2].generations.len(),
            1,
            "node 3 was left alone"
        );
    });
}
