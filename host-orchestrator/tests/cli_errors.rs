//! Every error a user can reach on the `bootcast` command line with a bad
//! file or flag gets a clear message naming the input, and a non-zero exit,
//! never a panic: `bootcast master`, `bootcast bench policies`, and the
//! `testbed up` paths `tests/cli.rs` does not cover. None of these boots a
//! node.

use host_orchestrator::fleet::Fleet;
use images::build::Image;
use images::manifest::{Manifest, NAME_LEN};
use proto::NodeType;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

fn bootcast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootcast"))
        .args(args)
        .output()
        .expect("bootcast runs")
}

/// Runs each case and checks it fails with its message in stderr.
fn check(cases: &[(Vec<String>, &str)]) {
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = bootcast(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            out.status.code().is_some(),
            "{args:?} died: {:?}",
            out.status
        );
        assert!(
            err.contains(want),
            "{args:?}: stderr {err:?} lacks {want:?}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A small valid image file (no ELF needed: only its manifest is read).
fn image_bytes(t: NodeType) -> Vec<u8> {
    let payload = vec![0x13, 0, 0, 0];
    let mut name = [0u8; NAME_LEN];
    name[..t.name().len()].copy_from_slice(t.name().as_bytes());
    Image {
        manifest: Manifest {
            node_type: t,
            version: 1,
            name,
            load_addr: board::memory::IMAGE_BASE,
            entry: board::memory::IMAGE_BASE,
            size: payload.len() as u32,
            mem_size: payload.len() as u32,
            sha256: Sha256::digest(&payload).into(),
            key_id: [0; 8],
            signature: [0; 64],
        },
        payload,
    }
    .to_bytes()
}

#[test]
fn exit_codes_tell_a_usage_error_from_a_missing_environment() {
    let dir = tempfile::tempdir().unwrap();
    let elf_fleet = dir.path().join("elf.toml");
    std::fs::write(
        &elf_fleet,
        "[images]\ndrive = \"missing.elf\"\n[[nodes]]\ntype = \"drive\"\n",
    )
    .unwrap();
    let elf_fleet = elf_fleet.display().to_string();
    let cases: [(&[&str], i32); 6] = [
        (&["testbed", "up", "--no-such-flag"], 2),
        // A fleet file's ELF that does not build is the file's mistake.
        (&["testbed", "up", "--fleet", &elf_fleet], 2),
        (&["testbed", "up", "--nodes", "0"], 2),
        (&["storm", "/nonexistent-scenario.toml"], 2),
        (
            &[
                "testbed",
                "up",
                "--nodes",
                "2",
                "--artifacts",
                "/nonexistent-artifacts",
            ],
            3,
        ),
        (
            &["bench", "policies", "--artifacts", "/nonexistent-artifacts"],
            3,
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_bootcast"))
            .args(args)
            .env("BOOTCAST_ARTIFACTS", dir.path())
            .output()
            .expect("bootcast runs");
        assert_eq!(
            out.status.code(),
            Some(want),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn schema_prints_the_versioned_report_schema() {
    let out = bootcast(&["schema"]);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["$id"], "bootcast-report-v1");
    let kinds: Vec<&serde_json::Value> = s["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["properties"]["kind"]["const"])
        .collect();
    assert_eq!(kinds, ["testbed", "storm", "bench"]);
    // And that of a line of a run's events.jsonl, by kind.
    let out = bootcast(&["schema", "--events"]);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["$id"], "bootcast-events-v1");
    let kinds: Vec<&str> = s["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["properties"]["kind"]["const"].as_str())
        .collect();
    assert!(
        kinds.contains(&"state") && kinds.contains(&"session_end"),
        "{kinds:?}"
    );
}

#[test]
fn master_names_bad_flags_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("master.json");
    let master = Fleet::default_mix(1).unwrap().master;
    std::fs::write(&config, serde_json::to_vec(&master).unwrap()).unwrap();
    let not_json = d.join("not.json");
    std::fs::write(&not_json, "{ hold_off").unwrap();
    let wrong_shape = d.join("wrong.json");
    std::fs::write(&wrong_shape, "{\"mode\": \"selected\"}").unwrap();
    let empty_store = d.join("empty");
    std::fs::create_dir(&empty_store).unwrap();
    let bad_store = d.join("bad");
    std::fs::create_dir(&bad_store).unwrap();
    std::fs::write(bad_store.join("drive.bcimg"), b"BCIM?").unwrap();
    let twice = d.join("twice");
    std::fs::create_dir(&twice).unwrap();
    std::fs::write(twice.join("a.bcimg"), image_bytes(NodeType::Xy)).unwrap();
    std::fs::write(twice.join("b.bcimg"), image_bytes(NodeType::Xy)).unwrap();
    let no_port = d.join("no-port.sock");
    let not_a_socket = d.join("file.sock");
    std::fs::write(&not_a_socket, "").unwrap();

    let run = |role: &str, port: &Path, store: &Path, config: &Path| {
        args(&[
            "master",
            "--role",
            role,
            "--port",
            &p(port),
            "--store",
            &p(store),
            "--config",
            &p(config),
        ])
    };
    check(&[
        (
            args(&["master"]),
            "the following required arguments were not provided",
        ),
        (
            run("boss", &no_port, &empty_store, &config),
            "unknown role \"boss\" (primary or backup)",
        ),
        (
            run("primary", &no_port, &empty_store, &d.join("none.json")),
            &format!("cannot read master config {}", p(&d.join("none.json"))),
        ),
        (
            run("primary", &no_port, &empty_store, &not_json),
            &format!("master config {}: key must be a string", p(&not_json)),
        ),
        (
            run("primary", &no_port, &empty_store, &wrong_shape),
            "missing field `hold_off`",
        ),
        (
            run("primary", &no_port, &d.join("none"), &config),
            &format!("cannot read image store {}", p(&d.join("none"))),
        ),
        (
            run("primary", &no_port, &bad_store, &config),
            &format!(
                "{}: truncated: the file is 5 bytes",
                p(&bad_store.join("drive.bcimg"))
            ),
        ),
        (
            run("backup", &no_port, &twice, &config),
            "a second image for node type xy",
        ),
        (
            run("primary", &no_port, &empty_store, &config),
            &format!("cannot connect to bus port {}", p(&no_port)),
        ),
        (
            run("primary", &not_a_socket, &empty_store, &config),
            &format!("cannot connect to bus port {}", p(&not_a_socket)),
        ),
    ]);
}

#[test]
fn bench_policies_names_bad_flags() {
    check(&[
        (
            args(&["bench", "policies", "--nodes", "0"]),
            "--nodes: must be between 1 and 250, got 0",
        ),
        (
            args(&["bench", "policies", "--nodes", "251"]),
            "--nodes: must be between 1 and 250, got 251",
        ),
        (
            args(&["bench", "policies", "--nodes", "many"]),
            "invalid value 'many' for '--nodes <NODES>'",
        ),
        (
            args(&["bench", "policies", "--stagger-ms=-5"]),
            "invalid value '-5' for '--stagger-ms <STAGGER_MS>'",
        ),
        (
            args(&["bench", "policies", "--artifacts", "/nonexistent-artifacts"]),
            "guest artifacts missing: /nonexistent-artifacts/flash.bin does not exist",
        ),
        (
            args(&["bench", "policies", "--json", "/nonexistent-dir/rows.json"]),
            "--json: folder /nonexistent-dir does not exist",
        ),
        (
            args(&["bench", "sideways"]),
            "unrecognized subcommand 'sideways'",
        ),
        (
            args(&["bench", "--nodes", "0"]),
            "--nodes: each fleet size must be 1 to 250, got [0]",
        ),
        (
            args(&["bench", "--image-size", "big"]),
            "invalid value 'big' for '--image-size <IMAGE_SIZE>'",
        ),
        (
            args(&["bench", "--transports", "can"]),
            "invalid value 'can' for '--transports <TRANSPORTS>'",
        ),
        (
            args(&["bench", "--hold-off-ms", "0"]),
            "--hold-off-ms: must be positive",
        ),
        (args(&["bench", "--image-size", "64M"]), "padded image"),
        (
            args(&["bench", "--json", "/nonexistent-dir/c.json"]),
            "--json: folder /nonexistent-dir does not exist",
        ),
        (
            args(&["bench", "scale", "--nodes", "40,0"]),
            "--nodes: each fleet size must be 1 to 250, got [40, 0]",
        ),
        (
            args(&["bench", "scale", "--run-timeout", "0"]),
            "--run-timeout: must be positive",
        ),
        (
            args(&["bench", "scale", "--json", "/nonexistent-dir/s.json"]),
            "--json: folder /nonexistent-dir does not exist",
        ),
        (
            args(&["bench", "scale", "--image-size", "64M"]),
            "padded image",
        ),
        (
            args(&["bench", "storms", "--scenario", "/nonexistent/s.toml"]),
            "--scenario /nonexistent/s.toml",
        ),
        (
            args(&["bench", "storms", "--clocks", "sundial"]),
            "invalid value 'sundial' for '--clocks <CLOCKS>'",
        ),
        (
            args(&["bench", "storms", "--json", "/nonexistent-dir/s.json"]),
            "--json: folder /nonexistent-dir does not exist",
        ),
        (
            args(&["testbed", "up", "--transport", "can"]),
            "invalid value 'can' for '--transport <TRANSPORT>': bus.transport: unknown transport \"can\" (uart or virtio)",
        ),
        (
            args(&["testbed", "up", "--transport", "uart", "--clock", "virtual"]),
            "--clock: bus.clock: the virtual clock needs transport = \"virtio\"",
        ),
    ]);
}

#[test]
fn testbed_up_names_the_rest_of_its_bad_flags_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fleet = |name: &str, text: &str| {
        let path = d.join(name);
        std::fs::write(&path, text).unwrap();
        p(&path)
    };
    let syntax = fleet("syntax.toml", "[[nodes]]\ntype = \"xy\"\ncount = \n");
    let unknown = fleet("unknown.toml", "[[nodes]]\ntype = \"xy\"\ncolour = 1\n");
    let version = fleet(
        "version.toml",
        "[[nodes]]\ntype = \"xy\"\nmin_version = \"1.2\"\n",
    );
    let binary = d.join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0]).unwrap();
    // `[images]` paths are relative to the fleet file.
    std::fs::write(d.join("notes.txt"), "not an ELF\n").unwrap();
    let no_elf = fleet(
        "no-elf.toml",
        "[images]\nxy = \"missing.elf\"\n[[nodes]]\ntype = \"xy\"\n",
    );
    let not_elf = fleet(
        "not-elf.toml",
        "[images]\nxy = \"notes.txt\"\n[[nodes]]\ntype = \"xy\"\n",
    );
    let flash_only = d.join("flash-only");
    std::fs::create_dir(&flash_only).unwrap();
    std::fs::write(flash_only.join("flash.bin"), "").unwrap();
    let empty_store = d.join("empty-store");
    std::fs::create_dir(&empty_store).unwrap();
    let bad_store = d.join("bad-store");
    std::fs::create_dir(&bad_store).unwrap();
    std::fs::write(
        bad_store.join("xy.bcimg"),
        &image_bytes(NodeType::Xy)[..100],
    )
    .unwrap();
    let store_file = d.join("store-file");
    std::fs::write(&store_file, "").unwrap();
    let up = |a: &[&str]| {
        let mut v = args(&["testbed", "up"]);
        v.extend(args(a));
        v
    };
    check(&[
        (
            up(&["--fleet", &p(d)]),
            &format!("cannot read fleet file {}", p(d)),
        ),
        (
            up(&["--fleet", &p(&binary)]),
            &format!("cannot read fleet file {}", p(&binary)),
        ),
        (up(&["--fleet", &syntax]), &format!("fleet file {syntax}")),
        (up(&["--fleet", &syntax]), "line 3"),
        (up(&["--fleet", &unknown]), "unknown field `colour`"),
        (up(&["--fleet", &version]), "nodes[0].min_version"),
        (
            up(&["--fleet", &no_elf]),
            &format!(
                "fleet file {no_elf}: line 2: images.xy: {}: cannot read",
                p(&d.join("missing.elf"))
            ),
        ),
        (
            up(&["--fleet", &not_elf]),
            &format!("images.xy: {}: not an ELF file", p(&d.join("notes.txt"))),
        ),
        (
            up(&["--nodes", "251"]),
            "--nodes: must be between 1 and 250, got 251",
        ),
        (
            up(&["--nodes", "2", "--timeout", "NaN"]),
            "--timeout: must be a positive number of seconds, got NaN",
        ),
        (
            up(&["--nodes", "2", "--timeout", "inf"]),
            "--timeout: must be a positive number of seconds, got inf",
        ),
        (
            up(&["--nodes", "2", "--timeout", "soon"]),
            "invalid value 'soon' for '--timeout <TIMEOUT>'",
        ),
        (
            up(&["--max-rejects", "-1"]),
            "unexpected argument '-1' found",
        ),
        (
            up(&["--max-rejects", "lots"]),
            "invalid value 'lots' for '--max-rejects <MAX_REJECTS>'",
        ),
        (
            up(&["--nodes", "2", "--artifacts", &p(&flash_only)]),
            &format!(
                "guest artifacts missing: {} does not exist",
                p(&flash_only.join("images"))
            ),
        ),
        (
            up(&["--nodes", "2", "--store", &p(&bad_store)]),
            &format!(
                "{}: truncated: the file is 100 bytes",
                p(&bad_store.join("xy.bcimg"))
            ),
        ),
        (
            up(&["--nodes", "2", "--store", &p(&empty_store)]),
            &format!(
                "image store {} has no image for node type accessor",
                p(&empty_store)
            ),
        ),
        (
            up(&["--nodes", "2", "--store", &p(&store_file)]),
            &format!("cannot read image store {}", p(&store_file)),
        ),
        (
            up(&["--nodes", "1", "--run-dir", "/proc/no-such-dir"]),
            "cannot create /proc/no-such-dir",
        ),
        (up(&["--nodez", "2"]), "unexpected argument '--nodez' found"),
        (args(&["testbed", "down"]), "unrecognized subcommand 'down'"),
        (args(&["fly"]), "unrecognized subcommand 'fly'"),
    ]);
}

#[test]
fn a_storm_whose_harness_fails_still_writes_junit_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    // Artifacts that exist but hold no image for the fleet's type.
    let artifacts = d.path().join("artifacts");
    std::fs::create_dir_all(artifacts.join("images")).unwrap();
    std::fs::write(artifacts.join("flash.bin"), b"").unwrap();
    let scenario = d.path().join("s.toml");
    std::fs::write(
        &scenario,
        "name = \"tiny\"\nseed = 5\n[[nodes]]\ntype = \"drive\"\n",
    )
    .unwrap();
    let junit = d.path().join("j.xml");
    let out = bootcast(&[
        "storm",
        &p(&scenario),
        "--artifacts",
        &p(&artifacts),
        "--junit",
        &p(&junit),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    let r = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit parses");
    let s = &r.test_suites[0];
    assert_eq!((s.tests, s.errors), (1, 1), "{xml}");
    assert_eq!(s.test_cases[0].name.as_str(), "harness");
    assert!(
        s.properties
            .iter()
            .any(|p| p.name.as_str() == "seed" && p.value.as_str() == "5"),
        "{xml}"
    );
    assert!(
        xml.contains("drive"),
        "the reason names the missing type: {xml}"
    );
}
