//! The bus as outside tools see it, on real QEMU fleets: a pcap capture that
//! tshark reads, and python-can joining through the socketcand port.
//!
//! These tools come from `cargo xtask install` (tshark and python3-can from
//! Debian); `cargo xtask test` names the Python that has python-can in
//! `$BOOTCAST_PYTHON`. Under CI=true a missing tool fails the test;
//! elsewhere the test says what is missing and stops.

mod common;

use common::{SETTLE, dump, have, options, run};
use host_orchestrator::fleet::Fleet;
use host_orchestrator::report::Verdict;
use host_orchestrator::testbed::Testbed;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::process::Command;

/// The Python with python-can: `$BOOTCAST_PYTHON`, else `python3`.
fn python() -> std::ffi::OsString {
    std::env::var_os("BOOTCAST_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// The bus source id a port's frames carry.
fn source_of(port: &str) -> Option<u16> {
    match port {
        "master" => Some(proto::msg::MASTER_PRIMARY),
        "supervisor" => Some(host_orchestrator::supervisor::SUPERVISOR_ID),
        p => p.strip_prefix('n')?.parse().ok(),
    }
}

#[test]
fn tshark_reads_a_fleet_boot_capture_frame_for_frame() {
    if !have("tshark", Command::new("tshark").arg("-v")) {
        return;
    }
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(Fleet::default_mix(6).unwrap());
        opts.run_dir = Some(dir.path().join("run"));
        let mut tb = Testbed::start(opts).await.expect("testbed starts");
        let settled = tb.wait_settled(SETTLE).await;
        let pcap = tb.capture_pcap();
        let report = tb.shutdown().await;
        if !settled || report.verdict != Verdict::Pass {
            dump(&report);
            panic!("fleet did not verify");
        }
        let out = Command::new("tshark")
            .args(["-r", pcap.to_str().unwrap(), "-T", "fields", "-e", "can.id"])
            .output()
            .expect("tshark runs");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let l = l.trim();
                let v = l
                    .strip_prefix("0x")
                    .map_or_else(|| l.parse(), |h| u32::from_str_radix(h, 16));
                v.unwrap_or_else(|_| panic!("tshark printed {l:?} for can.id"))
            })
            .collect();
        let bus = report.bus.as_ref().expect("bus statistics");
        assert_eq!(
            ids.len() as u64,
            bus.totals.frames,
            "frames in the capture vs the bridge"
        );
        // Every frame's identifier names its sender: per sender, the capture
        // agrees with the bridge's per-port count.
        let mut by_source: BTreeMap<u16, u64> = BTreeMap::new();
        for id in &ids {
            *by_source.entry(*id as u16).or_default() += 1;
        }
        for port in &bus.ports {
            let name = port.name.as_str();
            let sent = port.frames_tx;
            if let Some(src) = source_of(name) {
                assert_eq!(
                    by_source.get(&src).copied().unwrap_or(0),
                    sent,
                    "port {name}"
                );
            } else {
                assert_eq!(sent, 0, "port {name} sent frames the test cannot place");
            }
        }
        let kinds: std::collections::BTreeSet<u32> = ids.iter().map(|id| id >> 16).collect();
        for k in [
            proto::msg::Kind::Request,
            proto::msg::Kind::Data,
            proto::msg::Kind::Heartbeat,
        ] {
            assert!(kinds.contains(&(k as u32)), "no {k:?} frame in the capture");
        }
    });
}

const PYTHON_TOOL: &str = r#"
import can, json, struct, sys, time
bus = can.Bus(interface="socketcand", host=sys.argv[1], port=int(sys.argv[2]), channel="base")
kinds = {}
deadline = time.time() + 60
# Watch the fleet: stop once node 1's app says it runs.
while time.time() < deadline:
    m = bus.recv(1.0)
    if m is None:
        continue
    kinds.setdefault(m.arbitration_id >> 16, set()).add(m.arbitration_id & 0xFFFF)
    if 1 in kinds.get(0x60, ()):
        break
nonce = 0x1234ABCD
bus.send(can.Message(arbitration_id=(0x11 << 16) | int(sys.argv[3]), is_extended_id=True,
                     data=struct.pack("<HI", 1, nonce)))
reply = None
while time.time() < deadline and reply is None:
    m = bus.recv(1.0)
    if m is not None and m.arbitration_id == (0x50 << 16) | 1 and bytes(m.data[:4]) == struct.pack("<I", nonce):
        reply = bytes(m.data[4:36]).hex()
bus.shutdown()
print(json.dumps({"kinds": sorted(kinds), "reply": reply}))
"#;

#[test]
fn python_can_watches_the_fleet_and_a_node_answers_it() {
    if !have(
        "python-can",
        Command::new(python()).args(["-c", "import can"]),
    ) {
        return;
    }
    run(async {
        // The wall clock: a tool on socketcand keeps the host's time, and a
        // fleet on the virtual clock does not wait for it to start.
        let fleet = Fleet::default_mix(3)
            .unwrap()
            .with_clock(board::strap::Clock::Wall)
            .unwrap();
        let mut tb = Testbed::start(options(fleet))
            .await
            .expect("testbed starts");
        let addr = tb.socketcand_addr().expect("socketcand port");
        let tool = tokio::process::Command::new(python())
            .args([
                "-c",
                PYTHON_TOOL,
                &addr.ip().to_string(),
                &addr.port().to_string(),
                &proto::msg::EXTERNAL_TOOL.to_string(),
            ])
            .output();
        let (out, settled) = tokio::join!(tool, tb.wait_settled(SETTLE));
        let report = tb.shutdown().await;
        let out = out.expect("python runs");
        assert!(
            out.status.success(),
            "python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !settled || report.verdict != Verdict::Pass {
            dump(&report);
            panic!("fleet did not verify");
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the tool's JSON");
        let kinds: Vec<u64> = v["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k.as_u64())
            .collect();
        for k in [proto::msg::Kind::Request, proto::msg::Kind::Heartbeat] {
            assert!(
                kinds.contains(&(k as u64)),
                "the tool saw no {k:?}: {kinds:?}"
            );
        }
        // Node 1 answered the tool's challenge over its own loaded bytes.
        let payload = std::fs::read(
            common::artifacts()
                .images()
                .join(format!("{}.bcimg", report.nodes[0].node_type)),
        )
        .unwrap();
        let mut h = Sha256::new();
        h.update(0x1234_ABCDu32.to_le_bytes());
        h.update(&payload[images::manifest::MANIFEST_LEN..]);
        let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(v["reply"].as_str(), Some(want.as_str()), "{v}");
    });
}
