//! Bring your own firmware, host side, on real QEMU nodes: a fleet file
//! names images by their ELF files, apps that never say a word on the bus
//! (a Rust one, `silent`, and a C one that calls no SDK function at all,
//! `examples/c-bare`) are verified by the host's own check of their RAM
//! and CPU, and bytes changed in a node's RAM after it was verified fail
//! it.
//!
//! The bytes are changed from outside, the way nothing in the guest could
//! hide: node RAM is a file QEMU maps shared (`memory-backend-file`), and
//! the test writes into it (`Testbed::ram_file`, `probe::write_ram`) at the
//! image's load address, as a stray DMA or a bug in another core would.

mod common;

use common::{SETTLE, artifacts, dump, options, run};
use host_orchestrator::fleet::Fleet;
use host_orchestrator::report::{NodeReport, Report, Verdict};
use host_orchestrator::supervisor::{FleetView, HostState, VerifiedBy, probe};
use host_orchestrator::testbed::Testbed;
use std::path::Path;

/// The apps' ELF files `cargo xtask build` leaves beside the images.
fn elf(name: &str) -> std::path::PathBuf {
    artifacts().dir.join("elf").join(format!("{name}.elf"))
}

/// The C examples `cargo xtask build` compiles.
fn c_example(name: &str) -> std::path::PathBuf {
    artifacts().dir.join("examples").join(format!("{name}.elf"))
}

fn node(r: &Report, id: u16) -> &NodeReport {
    r.nodes.iter().find(|n| n.id == id).unwrap()
}

/// What node `id` said on the bus, from its log in the run folder.
fn bus_log(run: &Path, id: u16) -> String {
    let rd = host_orchestrator::rundir::RunDir::at(run);
    std::fs::read_to_string(rd.bus_log(id)).unwrap_or_default()
}

/// Drives 1-2 (the drive app, built from its ELF at start), op-panels 3-4
/// (`silent`: no heartbeat, no answer, ever), comm 5 (`c-bare`, C, no
/// SDK), xy 6 (the build's image).
fn fleet(dir: &Path) -> Fleet {
    // Relative to the fleet file.
    std::fs::copy(elf("silent"), dir.join("silent.elf")).unwrap();
    let file = dir.join("byo.toml");
    std::fs::write(
        &file,
        format!(
            "[images]\n\
             op-panel = \"silent.elf\"\n\
             drive = {{ elf = \"{}\", version = \"1.2.0\", name = \"drive-byo\" }}\n\
             comm = \"{}\"\n\
             [[nodes]]\ntype = \"drive\"\ncount = 2\n\
             [[nodes]]\ntype = \"op-panel\"\ncount = 2\n\
             [[nodes]]\ntype = \"comm\"\n\
             [[nodes]]\ntype = \"xy\"\n",
            elf("drive").display(),
            c_example("c-bare").display()
        ),
    )
    .unwrap();
    Fleet::load(&file).expect("the fleet file loads and its ELF files build")
}

#[test]
fn elf_images_and_apps_that_never_talk_are_verified_and_bytes_changed_later_are_caught() {
    run(async {
        let dir = tempfile::Builder::new()
            .prefix("bc")
            .tempdir_in("/tmp")
            .unwrap();
        let fleet = fleet(dir.path());
        let mut opts = options(fleet);
        let run_dir = dir.path().join("run");
        opts.run_dir = Some(run_dir.clone());
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let settled = tb.wait_settled(SETTLE).await;
        let before = tb.report();
        if !settled || before.verdict != Verdict::Pass {
            let r = tb.shutdown().await;
            dump(&r);
            panic!("the fleet did not verify");
        }
        // The drives run the image built from the ELF the fleet names.
        for id in [1, 2] {
            let n = node(&before, id);
            assert_eq!(n.image_name.as_deref(), Some("drive-byo"), "node {id}");
            assert_eq!(n.image_version.as_deref(), Some("1.2.0"), "node {id}");
        }
        // The silent apps: verified by the host's check alone, their
        // generation and digest read from their handoff records.
        for id in [3, 4, 5] {
            let n = node(&before, id);
            assert_eq!(n.verified_by, Some(VerifiedBy::HostCheck), "node {id}");
            assert!(n.generation.is_some() && n.digest.is_some(), "node {id}");
            assert_eq!(n.digest.as_deref(), Some(n.expected_digest.as_str()));
            assert!(
                n.host_check
                    .as_deref()
                    .is_some_and(|c| c.starts_with("ok: ")),
                "node {id}: {:?}",
                n.host_check
            );
        }

        // Four bytes of the images of silent node 3, of C node 5 and of
        // drive 1 (whose app answered heartbeats and challenges all
        // along), changed in RAM: written into the files that back their
        // RAM, at the image's load address.
        let base = board::memory::IMAGE_BASE;
        let (silent_at, c_at, drive_at) = (base + 8, base + 0x20, base + 0x100);
        probe::write_ram(&tb.ram_file(3), silent_at, &[0xEF, 0xBE, 0xAD, 0xDE]).unwrap();
        probe::write_ram(&tb.ram_file(5), c_at, &[0x6F, 0x00, 0x00, 0x00]).unwrap();
        probe::write_ram(&tb.ram_file(1), drive_at, &[0x73, 0x00, 0x10, 0x00]).unwrap();
        let caught = |v: &FleetView| {
            [1, 3, 5]
                .iter()
                .all(|id| v.nodes[id].state == HostState::Failed)
        };
        let failed = tb.wait_until(SETTLE, caught).await;
        let report = tb.shutdown().await;
        if !failed {
            dump(&report);
            panic!("the changed bytes were not caught");
        }
        for (id, at) in [(3, silent_at), (5, c_at), (1, drive_at)] {
            let why = node(&report, id).failure.clone().unwrap();
            assert!(
                why.starts_with("the host's check of its RAM and CPU: 4 bytes of its image in RAM differ from the build")
                    && why.contains(&format!("the first at {at:#x}")),
                "node {id}: {why}"
            );
        }
        // Nothing else was touched, and nothing else failed.
        for id in [2, 4, 6] {
            assert_eq!(node(&report, id).state, HostState::Verified, "node {id}");
        }
        // The silent nodes never said a word after the boot ROM's last.
        for id in [3, 4, 5] {
            let log = bus_log(&run_dir, id);
            assert!(log.contains("Status Some(Handoff)"), "node {id}: {log}");
            assert!(
                !log.contains("Heartbeat") && !log.contains("CheckReply"),
                "node {id} talked: {log}"
            );
        }
        assert!(
            bus_log(&run_dir, 1).contains("Heartbeat"),
            "the drive app talks"
        );
    });
}
