//! Nodes run only what the build's key signed: unsigned, forged and
//! tampered images, an older signed version below a node's minimum, and a
//! rogue second sender on the bus, all on real QEMU nodes.
//!
//! The boot ROM checks, in order: manifest, type, session consistency,
//! version floor (the strap's `min_version`), payload digest, signature. So a
//! changed payload with the manifest untouched is a "digest mismatch", any
//! changed manifest field (the digest included) a "bad signature".

mod common;

use bus_bridge::client as busclient;
use common::{SETTLE, artifacts, dump, options, run};
use host_orchestrator::fleet::Fleet;
use host_orchestrator::master::scheduler::{SessionKind, SessionPlan};
use host_orchestrator::master::session::{Content, announce_frames, data_frame};
use host_orchestrator::report::{NodeReport, Report, Verdict};
use host_orchestrator::store::{PartSpec, image_file_name};
use host_orchestrator::supervisor::HostState;
use host_orchestrator::testbed::Testbed;
use images::build::{Image, hex};
use images::build_manifest::{self, BuildManifest};
use images::manifest::pack_version;
use images::sign::SigningKey;
use proto::NodeType;
use proto::msg::{BROADCAST, MODE_SELECTED, Message, SessionEnd};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The rogue's source id: no master's, no node's.
const ROGUE: u16 = proto::msg::TOOL;

/// The key `cargo xtask build` signed the artifacts with (named in
/// build.json), so tests can make images the nodes accept.
fn build_key() -> SigningKey {
    let path = artifacts().dir.join(build_manifest::FILE_NAME);
    let build = BuildManifest::load(&path)
        .expect("build.json names the signing key (run `cargo xtask build`)");
    SigningKey::load(&build.signing.key).expect("the build's signing key")
}

fn built(t: NodeType) -> Image {
    let path = artifacts().images().join(image_file_name(t));
    Image::parse(&std::fs::read(&path).unwrap()).unwrap()
}

/// A copy of the built images with some replaced.
fn store(dir: &Path, replace: &[(NodeType, Image)]) -> PathBuf {
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    for t in NodeType::ALL {
        let img = replace
            .iter()
            .find(|(r, _)| *r == t)
            .map_or_else(|| built(t), |(_, i)| i.clone());
        std::fs::write(store.join(image_file_name(t)), img.to_bytes()).unwrap();
    }
    store
}

/// `img` with 4 bytes appended and its sizes and digest updated: code that
/// would run if a node took it (the bytes lie past the app's code).
fn extended(img: &Image) -> Image {
    let mut i = img.clone();
    i.payload.extend_from_slice(&[0xAA; 4]);
    i.manifest.size += 4;
    i.manifest.mem_size = i.manifest.mem_size.max(i.manifest.size);
    i.manifest.sha256 = i.payload_sha256();
    i
}

fn node(r: &Report, id: u16) -> &NodeReport {
    r.nodes.iter().find(|n| n.id == id).unwrap()
}

/// Asserts that node `id` never ran anything and failed on `reason`.
fn refused(r: &Report, id: u16, reason: &str) {
    let n = node(r, id);
    assert_eq!(n.state, HostState::Failed, "node {id}");
    assert!(
        n.failure.as_deref().is_some_and(|f| f.contains(reason)),
        "node {id}: {:?}",
        n.failure
    );
    assert!(n.rejections.len() >= 2, "node {id}: {:?}", n.rejections);
    for rej in &n.rejections {
        assert_eq!(rej.reason, reason, "node {id}");
    }
    // No heartbeat ever came: the image never ran.
    assert!(
        n.digest.is_none() && n.generations.is_empty(),
        "node {id} ran {:?}",
        n.digest
    );
}

#[test]
fn unsigned_forged_and_tampered_images_are_rejected_and_never_run() {
    run(async {
        let key = build_key();
        let rogue = SigningKey::from_seed([0x5A; 32]).unwrap();

        let mut unsigned = built(NodeType::Accessor);
        unsigned.manifest.key_id = [0; 8];
        unsigned.manifest.signature = [0; 64];
        // Signed, but by another key; and one that also claims our key id.
        let mut forged = extended(&built(NodeType::Xy));
        forged.sign(&rogue);
        let mut impostor = extended(&built(NodeType::OpPanel));
        impostor.sign(&rogue);
        impostor.manifest.key_id = key.key_id();
        // Payload and digest changed after signing.
        let tampered = extended(&built(NodeType::Drive));
        // Payload changed, manifest untouched.
        let mut flipped = built(NodeType::Comm);
        flipped.payload[64] ^= 1;
        let dir = tempfile::tempdir().unwrap();
        let store = store(
            dir.path(),
            &[
                (NodeType::Accessor, unsigned),
                (NodeType::Xy, forged),
                (NodeType::OpPanel, impostor),
                (NodeType::Drive, tampered),
                (NodeType::Comm, flipped),
            ],
        );
        let fleet = Fleet::parse(
            "[[nodes]]\ntype = \"accessor\"\n[[nodes]]\ntype = \"xy\"\n[[nodes]]\ntype = \"op-panel\"\n\
             [[nodes]]\ntype = \"drive\"\n[[nodes]]\ntype = \"comm\"\n",
        )
        .unwrap();
        let mut opts = options(fleet);
        opts.store = Some(store);
        opts.max_rejects = 2;
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let settled = tb.wait_settled(SETTLE).await;
        let report = tb.shutdown().await;
        let ok = std::panic::catch_unwind(|| {
            assert!(settled, "fleet did not settle");
            assert_eq!(report.verdict, Verdict::Fail);
            refused(&report, 1, "bad signature");
            refused(&report, 2, "bad signature");
            refused(&report, 3, "bad signature");
            refused(&report, 4, "bad signature");
            refused(&report, 5, "digest mismatch");
            // The node names the key it trusts and the key id it was shown.
            let trusted = hex(&key.key_id());
            let at = |id: u16| &node(&report, id).rejections[0];
            assert!(at(1).measured_prefix.starts_with(&trusted));
            assert_eq!(at(1).manifest_prefix, "0".repeat(32), "unsigned: no key id");
            assert!(at(2).manifest_prefix.starts_with(&hex(&rogue.key_id())));
            assert!(
                at(3).manifest_prefix.starts_with(&trusted),
                "claims our key id"
            );
        });
        if let Err(e) = ok {
            dump(&report);
            std::panic::resume_unwind(e);
        }
    });
}

#[test]
fn an_older_signed_version_is_refused_below_the_nodes_minimum() {
    run(async {
        // A real, correctly signed older release: only the fuse stops it.
        let mut older = built(NodeType::Drive);
        older.manifest.version = pack_version(0, 9, 0);
        older.sign(&build_key());
        older
            .verify(&build_key().public_key())
            .expect("the older image is validly signed");
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), &[(NodeType::Drive, older)]);
        // Nodes 1-2 are fused at 1.0.0; node 3 at 0.9.0 takes the same image.
        let fleet = Fleet::parse(
            "[[nodes]]\ntype = \"drive\"\ncount = 2\nmin_version = \"1.0.0\"\n\
             [[nodes]]\ntype = \"drive\"\nmin_version = \"0.9.0\"\n",
        )
        .unwrap();
        let mut opts = options(fleet);
        opts.store = Some(store);
        opts.max_rejects = 2;
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let settled = tb.wait_settled(SETTLE).await;
        let report = tb.shutdown().await;
        let ok = std::panic::catch_unwind(|| {
            assert!(settled, "fleet did not settle");
            for id in [1, 2] {
                refused(&report, id, "version below the node's minimum");
                for r in &node(&report, id).rejections {
                    assert_eq!(r.version, "0.9.0");
                }
            }
            let n3 = node(&report, 3);
            assert!(n3.verified, "node 3 (fuse 0.9.0) runs the older image");
            assert_eq!(n3.image_version.as_deref(), Some("0.9.0"));
            assert!(n3.rejections.is_empty(), "{:?}", n3.rejections);
        });
        if let Err(e) = ok {
            dump(&report);
            std::panic::resume_unwind(e);
        }
    });
}

/// Broadcasts `img` as one selected session from the rogue's port.
async fn rogue_session(w: &mut busclient::FrameWriter, session: u32, img: &Image) {
    let t = img.manifest.node_type;
    let bytes = img.to_bytes();
    let content = Content {
        parts: vec![PartSpec {
            node_type: t,
            offset: 0,
            len: bytes.len() as u32,
            load_addr: img.manifest.load_addr,
            version: img.manifest.version,
        }],
        object: Arc::new(bytes),
        mode: MODE_SELECTED,
        target: BROADCAST,
    };
    let plan = SessionPlan {
        session,
        window: 0xBAD,
        kind: SessionKind::Selected(t),
        requesters: BTreeSet::new(),
    };
    for f in announce_frames(&plan, &content, ROGUE).unwrap() {
        w.send(&f).await.unwrap();
    }
    for i in 0..content.total_chunks() {
        w.send(&data_frame(session, &content, i, ROGUE).unwrap())
            .await
            .unwrap();
    }
    let end = Message::SessionEnd(SessionEnd {
        session,
        total_chunks: content.total_chunks(),
        round: 0,
        last: 1,
    });
    w.send(&end.to_frame(ROGUE).unwrap()).await.unwrap();
}

#[test]
fn a_rogue_sender_cannot_get_a_forged_image_run_and_every_node_ends_on_the_real_one() {
    run(async {
        let key = build_key();
        let rogue = SigningKey::from_seed([0xE1; 32]).unwrap();
        // Working code the rogue wants run, signed with its own key; the
        // xy one also claims the trusted key id.
        let mut drive = extended(&built(NodeType::Drive));
        drive.sign(&rogue);
        let mut xy = extended(&built(NodeType::Xy));
        xy.sign(&rogue);
        xy.manifest.key_id = key.key_id();
        let forged_digests = [hex(&drive.manifest.sha256), hex(&xy.manifest.sha256)];
        // Session numbers whose low byte (what `Data` frames carry) the
        // master, counting from 1, does not reach in this test.
        let sessions = [0x00BA_D0C7, 0x00BA_D0C8];

        // A long fixed window: the rogue speaks while it is open.
        let fleet = Fleet::parse(
            "[master]\npolicy = \"fixed\"\nhold_off_ms = 5000\n\
             [[nodes]]\ntype = \"drive\"\ncount = 2\n[[nodes]]\ntype = \"xy\"\n",
        )
        .unwrap();
        let mut opts = options(fleet);
        opts.held = BTreeSet::from([1, 2, 3]);
        opts.max_rejects = 5;
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let (_reader, mut w) = busclient::connect(&tb.tool_port())
            .await
            .expect("tool port");
        for id in 1..=3 {
            tb.power_on(id).await.unwrap();
        }
        let all_asking = tb
            .wait_until(SETTLE, |v| {
                v.nodes.values().all(|n| n.state == HostState::Requesting)
            })
            .await;
        let window_open = tb.report().broadcasts.is_empty();
        rogue_session(&mut w, sessions[0], &drive).await;
        rogue_session(&mut w, sessions[1], &xy).await;
        let settled = tb.wait_settled(SETTLE).await;
        let report = tb.shutdown().await;
        let ok = std::panic::catch_unwind(|| {
            assert!(all_asking, "not every node asked");
            assert!(window_open, "the window closed before the rogue spoke");
            assert!(settled, "fleet did not settle");
            assert_eq!(report.verdict, Verdict::Pass);
            let seen: BTreeSet<u32> = report.observed_sessions.iter().map(|s| s.session).collect();
            assert!(sessions.iter().all(|s| seen.contains(s)), "{seen:?}");
            for n in &report.nodes {
                assert!(n.verified, "node {}", n.id);
                assert_eq!(n.digest.as_deref(), Some(n.expected_digest.as_str()));
                assert!(
                    n.digest
                        .as_ref()
                        .is_some_and(|d| !forged_digests.contains(d))
                );
                assert_eq!(n.generations.len(), 1, "node {} ran one image", n.id);
                assert!(
                    n.rejections
                        .iter()
                        .any(|r| r.reason == "bad signature" && sessions.contains(&r.session)),
                    "node {} refused the rogue's image: {:?}",
                    n.id,
                    n.rejections
                );
            }
            // Every real session came from the master, after the rogue's.
            assert!(
                report
                    .broadcasts
                    .iter()
                    .all(|b| !sessions.contains(&b.session))
            );
        });
        if let Err(e) = ok {
            dump(&report);
            std::panic::resume_unwind(e);
        }
    });
}
