//! Property tests for the fleet parser: any text gives a fleet or an error
//! naming the field, never a panic; fleets built from valid parts parse to
//! exactly those parts; and every single-byte change to a real fleet file is
//! an error or a fleet, never a panic.
//!
//! Cases come from seeded `rand` generators (this crate's dev-dependencies
//! have no proptest); a failure names the seed that replays it
//! (`CASE_SEED=… cargo test -p host-orchestrator --test proptest_fleet`).

use host_orchestrator::fleet::{Fleet, MAX_NODES};
use proto::NodeType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn check(name: &str, cases: u64, mut property: impl FnMut(&mut StdRng)) {
    let base = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let only = std::env::var("CASE_SEED").ok().and_then(|s| s.parse().ok());
    for i in 0..cases {
        let seed = only.unwrap_or(base ^ i);
        let mut g = StdRng::seed_from_u64(seed);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(&mut g)));
        if let Err(e) = r {
            eprintln!("{name}: case {i} failed; replay with CASE_SEED={seed}");
            std::panic::resume_unwind(e);
        }
        if only.is_some() {
            break;
        }
    }
}

/// What the parser says about `text`, checking what every answer must be.
fn parse(text: &str) -> Result<Fleet, String> {
    match Fleet::parse(text) {
        Ok(f) => {
            assert!(
                !f.nodes.is_empty() && f.nodes.len() <= MAX_NODES,
                "{text:?}"
            );
            for (i, n) in f.nodes.iter().enumerate() {
                assert_eq!(n.id as usize, i + 1, "ids are 1..=n: {text:?}");
            }
            assert!(!f.types().is_empty() && !f.segments().is_empty());
            Ok(f)
        }
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(!msg.trim().is_empty(), "an empty error for {text:?}");
            Err(msg)
        }
    }
}

/// Keys of each section, with a value that is right for each.
const TOP: [(&str, &str); 1] = [("image_size", "\"64K\"")];
const BUS: [(&str, &str); 2] = [("preset", "\"fd-1m-2m\""), ("paced", "false")];
const MASTER: [(&str, &str); 12] = [
    ("policy", "\"renew\""),
    ("hold_off_ms", "700"),
    ("max_wait_ms", "4000"),
    ("shrink_step_ms", "100"),
    ("floor_ms", "200"),
    ("min_requests", "2"),
    ("mode", "\"combined\""),
    ("late_join", "true"),
    ("repair_rounds", "2"),
    ("repair_wait_ms", "300"),
    ("backup", "false"),
    ("takeover_ms", "900"),
];
const NODES: [(&str, &str); 6] = [
    ("type", "\"drive\""),
    ("count", "3"),
    ("segment", "\"base\""),
    ("min_version", "\"1.0.0\""),
    ("start_after_ms", "50"),
    ("stagger_ms", "10"),
];

/// A TOML value of any shape, often one that is wrong for its key.
fn value(g: &mut StdRng) -> String {
    match g.gen_range(0..12) {
        0 => g.gen_range(-3i64..300).to_string(),
        1 => g.r#gen::<i64>().to_string(),
        2 => format!("{}", g.r#gen::<f64>() * 1e6),
        3 => g.r#gen::<bool>().to_string(),
        4 => format!("\"{}\"", NodeType::ALL[g.gen_range(0..5)].name()),
        5 => format!(
            "\"{}.{}.{}\"",
            g.gen_range(0..300),
            g.gen_range(0..300),
            g.gen_range(0..70000)
        ),
        6 => format!(
            "\"{}\"",
            [
                "fixed",
                "renew",
                "shrink",
                "quorum",
                "combined",
                "unicast",
                "fd-1m-5m",
                "classic-1m",
                "256K",
                "1M",
                "4096M",
                ""
            ][g.gen_range(0..12)]
        ),
        7 => format!("[{}, {}]", g.gen_range(-5..5), g.gen_range(-5..5)),
        8 => "{ a = 1 }".into(),
        9 => format!("\"{}\"", junk(g, 12).replace(['"', '\\', '\n', '\r'], "")),
        10 => "9223372036854775807".into(),
        _ => "-9223372036854775808".into(),
    }
}

fn junk(g: &mut StdRng, max: usize) -> String {
    let n = g.gen_range(0..=max);
    (0..n)
        .map(|_| match g.gen_range(0..4) {
            0 => char::from(g.gen_range(0x20u8..0x7f)),
            1 => ['[', ']', '=', '"', '\n', '.', '#'][g.gen_range(0..7)],
            2 => char::from_u32(g.gen_range(0x80..0x3000)).unwrap_or('é'),
            _ => char::from(g.gen_range(b'a'..=b'z')),
        })
        .collect()
}

/// A file of sections and keys from the fleet grammar, most values right
/// for their key, some of any shape, a few keys unknown.
fn shaped(g: &mut StdRng) -> String {
    let mut s = String::new();
    let keys = |g: &mut StdRng, s: &mut String, section: &[(&str, &str)]| {
        for _ in 0..g.gen_range(0..=section.len().min(4)) {
            let (key, good) = section[g.gen_range(0..section.len())];
            let v = match g.gen_range(0..10) {
                0 => value(g),
                1 => {
                    *s += &format!("colour = {}\n", value(g));
                    good.to_string()
                }
                _ => good.to_string(),
            };
            *s += &format!("{key} = {v}\n");
        }
    };
    keys(g, &mut s, &TOP);
    for _ in 0..g.gen_range(0..6) {
        match g.gen_range(0..8) {
            0 => {
                s += "[master]\n";
                keys(g, &mut s, &MASTER);
            }
            1 => {
                s += "[bus]\n";
                keys(g, &mut s, &BUS);
            }
            2 => {
                s += "[something]\n";
                keys(g, &mut s, &NODES);
            }
            _ => {
                s += "[[nodes]]\n";
                if g.gen_range(0..4) != 0 {
                    s += &format!("type = \"{}\"\n", NodeType::ALL[g.gen_range(0..5)].name());
                }
                keys(g, &mut s, &NODES);
            }
        }
    }
    s
}

#[test]
fn arbitrary_text_is_an_error_or_a_fleet() {
    check("fleet_arbitrary_text", 3000, |g| {
        let text = junk(g, 200);
        let _ = parse(&text);
    });
}

#[test]
fn fleet_shaped_text_is_an_error_or_a_fleet() {
    let mut parsed = 0;
    check("fleet_shaped_text", 4000, |g| {
        if parse(&shaped(g)).is_ok() {
            parsed += 1;
        }
    });
    // The generator reaches valid files too (about 5%), so the checks
    // after TOML's run as well.
    assert!(parsed >= 40, "only {parsed} generated files parsed");
}

#[test]
fn valid_parts_parse_to_exactly_those_parts() {
    check("fleet_valid_parts", 1500, |g| {
        let mut text = String::new();
        if g.r#gen() {
            let hold = g.gen_range(1..5000);
            text += &format!(
                "[master]\npolicy = \"renew\"\nhold_off_ms = {hold}\nmax_wait_ms = {}\n",
                hold + g.gen_range(0..5000)
            );
        }
        let mut want = Vec::new();
        for _ in 0..g.gen_range(1..6) {
            let t = NodeType::ALL[g.gen_range(0..5)];
            let count = g.gen_range(1..40);
            let (major, minor, patch) = (g.r#gen::<u8>(), g.r#gen::<u8>(), g.r#gen::<u16>());
            text += &format!(
                "[[nodes]]\ntype = \"{}\"\ncount = {count}\nmin_version = \"{major}.{minor}.{patch}\"\n",
                t.name()
            );
            let v = images::manifest::pack_version(major, minor, patch);
            want.extend(std::iter::repeat_n((t, v), count));
        }
        match parse(&text) {
            Ok(f) => {
                let got: Vec<_> = f
                    .nodes
                    .iter()
                    .map(|n| (n.node_type, n.min_version))
                    .collect();
                assert_eq!(got, want, "{text}");
            }
            Err(e) => {
                assert!(want.len() > MAX_NODES, "{text}: {e}");
                assert!(e.contains("more than 250 nodes"), "{e}");
            }
        }
    });
}

#[test]
fn every_single_byte_change_to_a_real_fleet_file_is_handled() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/fleet-8.toml");
    let good = std::fs::read(path).expect("ci/fleet-8.toml");
    assert!(parse(std::str::from_utf8(&good).unwrap()).is_ok());
    check("fleet_single_byte_change", 3000, |g| {
        let mut bytes = good.clone();
        let at = g.gen_range(0..bytes.len());
        bytes[at] = g.r#gen();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = parse(text);
        }
    });
}
