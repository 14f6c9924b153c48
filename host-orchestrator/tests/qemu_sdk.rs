//! Apps written in C on the node SDK, in real QEMU fleets: the example
//! `examples/c-blinky` (built by xtask into the artifacts' `examples/`)
//! runs as the drive nodes' image beside the Rust apps, and is verified
//! the way they are: its heartbeats carry the digest the boot ROM
//! measured, and the SDK answers the supervisor's challenges over its
//! loaded bytes; it answers its own traffic on the bus, and obeys
//! `Reboot`. Needs `qemu-system-riscv64` and the artifacts (`cargo
//! xtask test` provides both).

mod common;

use board::strap::Transport;
use common::{SETTLE, artifacts, dump, run};
use host_orchestrator::fleet::Fleet;
use host_orchestrator::report::{Report, Verdict};
use host_orchestrator::rundir::RunDir;
use host_orchestrator::store::image_file_name;
use host_orchestrator::supervisor::HostState;
use host_orchestrator::testbed::{Artifacts, Options, Testbed};
use images::build::{BuildOptions, build_file, hex, parse_version};
use proto::filter::{AcceptanceFilter, FilterEntry};
use proto::{Frame, NodeType};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The C example the drive nodes run.
const C_APP: &str = "c-blinky";

/// A copy of the artifacts in which `t`'s image is the C example's,
/// built and signed as `cargo xtask build` does the Rust apps' (same
/// version, same key): the build the fleet is verified against.
fn artifacts_with_c_app(dir: &Path, t: NodeType) -> Artifacts {
    let built = artifacts();
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for e in std::fs::read_dir(built.images()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, images.join(p.file_name().unwrap())).unwrap();
    }
    for f in ["flash.bin", images::build_manifest::FILE_NAME] {
        std::os::unix::fs::symlink(built.dir.join(f), dir.join(f)).unwrap();
    }
    let elf = built.dir.join("examples").join(format!("{C_APP}.elf"));
    let opts = BuildOptions {
        node_type: t,
        name: C_APP.to_string(),
        version: parse_version("1.0.0").unwrap(),
        pad_to: None,
    };
    let mut image = build_file(&elf, &opts).expect("the C example builds into an image");
    image.sign(&built.signing_key().unwrap());
    std::fs::write(images.join(image_file_name(t)), image.to_bytes()).unwrap();
    Artifacts {
        dir: dir.to_path_buf(),
    }
}

fn options(fleet: Fleet, artifacts: Artifacts, run_dir: &Path) -> Options {
    let mut o = Options::new(fleet, artifacts);
    o.master_exe = Some(env!("CARGO_BIN_EXE_bootcast").into());
    o.run_dir = Some(run_dir.to_path_buf());
    o
}

fn c_nodes(report: &Report) -> Vec<u16> {
    report
        .nodes
        .iter()
        .filter(|n| n.node_type == NodeType::Drive.name())
        .map(|n| n.id)
        .collect()
}

#[test]
fn a_mixed_fleet_of_rust_and_c_apps_is_verified_and_a_c_node_obeys_reboot() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = artifacts_with_c_app(&dir.path().join("artifacts"), NodeType::Drive);
        let c_digest = {
            let bytes = std::fs::read(artifacts.images().join(image_file_name(NodeType::Drive)));
            let image = images::build::Image::parse(&bytes.unwrap()).unwrap();
            hex(&image.manifest.sha256)
        };
        let mut fleet = Fleet::default_mix(8).unwrap();
        // On virtio the 16550 is the debug console: the C app's
        // `bootcast_print` lands in the node's console log.
        fleet.transport = Transport::Virtio;
        let run_dir = dir.path().join("run");
        let mut tb = Testbed::start(options(fleet, artifacts, &run_dir))
            .await
            .expect("testbed starts");
        if !tb.wait_settled(SETTLE).await || tb.report().verdict != Verdict::Pass {
            let r = tb.shutdown().await;
            dump(&r);
            panic!("the mixed fleet did not verify");
        }
        let before = tb.report();
        assert_eq!(before.nodes_verified, 8);
        let c = c_nodes(&before);
        assert_eq!(c.len(), 4, "default_mix(8) has four drives");
        for n in &before.nodes {
            assert!(n.verified, "node {} ({})", n.id, n.node_type);
            let c_node = c.contains(&n.id);
            // Each runs its own language's image: the heartbeat's name and
            // the digest the boot ROM measured say which.
            assert_eq!(
                n.image_name.as_deref() == Some(C_APP),
                c_node,
                "node {} runs {:?}",
                n.id,
                n.image_name
            );
            assert_eq!(n.digest.as_deref(), Some(n.expected_digest.as_str()));
            assert_eq!(n.digest.as_deref() == Some(c_digest.as_str()), c_node);
        }
        let console = std::fs::read_to_string(RunDir::at(&run_dir).console_log(c[0])).unwrap();
        for line in ["app drive running, generation", "c-blinky: running"] {
            assert!(console.contains(line), "console lacks {line:?}:\n{console}");
        }

        // The app's own traffic: a ping (standard id 0x100) on the bus, and
        // every C node answers with a pong (0x101) carrying its id and the
        // ping's first byte. The Rust apps' filters keep the ping from them.
        let (mut rx, mut tx) = bus_bridge::client::connect(&tb.tool_port())
            .await
            .expect("tool port");
        let pongs_only = AcceptanceFilter::new(&[FilterEntry {
            id: 0x101,
            mask: 0x7FF,
            extended: false,
        }])
        .unwrap();
        tx.set_filter(&pongs_only).await.unwrap();
        tx.send(&Frame::new(0x100, 0, &[0x5A]).unwrap())
            .await
            .unwrap();
        let mut ponged = BTreeSet::new();
        let all = tokio::time::timeout(Duration::from_secs(20), async {
            while ponged.len() < c.len() {
                let f = rx.next().await.unwrap().expect("the bridge is up");
                assert_eq!((f.id(), f.data().len()), (0x101, 3), "{f:?}");
                assert_eq!(f.data()[2], 0x5A, "the ping's byte comes back");
                ponged.insert(u16::from_le_bytes([f.data()[0], f.data()[1]]));
            }
        })
        .await;
        assert!(all.is_ok(), "pongs from {ponged:?} only");
        assert_eq!(ponged, c.iter().copied().collect::<BTreeSet<u16>>());

        // `bootcast_poll` obeys a Reboot: back to the boot ROM, which loads
        // the C image again, and the node is verified on a new generation.
        let target = c[0];
        let old_generation = before
            .nodes
            .iter()
            .find(|n| n.id == target)
            .unwrap()
            .generation;
        tb.soft_reboot(target).await.unwrap();
        let back = tb
            .wait_until(SETTLE, |v| {
                let n = &v.nodes[&target];
                n.state == HostState::Verified && n.generation != old_generation
            })
            .await;
        let report = tb.shutdown().await;
        if !back || report.verdict != Verdict::Pass {
            dump(&report);
            panic!("the rebooted C node did not come back verified");
        }
        let rebooted = report.nodes.iter().find(|n| n.id == target).unwrap();
        assert_eq!(rebooted.generations.len(), 2, "{:?}", rebooted.generations);
        assert_eq!(rebooted.reset_cause.as_deref(), Some("SoftReboot"));
        assert_eq!(rebooted.boot_count, 2);
    });
}
