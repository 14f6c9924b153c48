//! The crate's modules form a DAG, and the absences ARCHITECTURE.md states
//! hold: read from the source, every `crate::`, `super::` and child-module
//! path outside tests is an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module path of a source file (`master/session.rs` → `master::session`).
fn module_of(rel: &Path) -> Option<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [one] if one == "lib" || one == "main" => None,
        _ => Some(parts.join("::")),
    }
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).expect("src folder") {
        let path = e.expect("entry").path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(root).expect("under src");
            if let Some(m) = module_of(rel) {
                out.insert(m, std::fs::read_to_string(&path).expect("source"));
            }
        }
    }
}

/// The code outside tests, without line comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path written after `prefix` (`crate::`), groups expanded.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].ends_with(is_ident) {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            out.extend(inner.split(',').map(|p| p.trim().to_string()));
        } else {
            let end = rest
                .find(|c: char| !is_ident(c) && c != ':')
                .unwrap_or(rest.len());
            out.push(rest[..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The longest module that `path` names, from `base`.
fn resolve(modules: &BTreeMap<String, String>, base: &[&str], path: &str) -> Option<String> {
    let mut segs: Vec<&str> = base.to_vec();
    segs.extend(path.split("::").filter(|s| !s.is_empty()));
    (1..=segs.len())
        .rev()
        .map(|k| segs[..k].join("::"))
        .find(|m| modules.contains_key(m))
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    sources(&src, &src, &mut modules);
    let mut g = Graph::new();
    for (m, text) in &modules {
        let code = code(text);
        let parts: Vec<&str> = m.split("::").collect();
        let parent = &parts[..parts.len() - 1];
        let mut deps = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            deps.extend(resolve(&modules, &[], &p));
        }
        for p in paths_after(&code, "super::") {
            deps.extend(resolve(&modules, parent, &p));
        }
        // Children used by a relative path (`session::run`).
        for child in modules
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{m}::")))
        {
            if !child.contains("::") && !paths_after(&code, &format!("{child}::")).is_empty() {
                deps.insert(format!("{m}::{child}"));
            }
        }
        deps.remove(m);
        g.insert(m.clone(), deps);
    }
    g
}

/// Everything `m` depends on, directly or not.
fn reach(g: &Graph, m: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![m.to_string()];
    while let Some(n) = todo.pop() {
        for d in g.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_modules_form_a_dag() {
    let g = graph();
    assert!(g.contains_key("master::session") && g.contains_key("storm::invariants"));
    assert!(
        g["fleet"].contains("master"),
        "the reader sees edges: {g:#?}"
    );
    for m in g.keys() {
        assert!(
            !reach(&g, m).contains(m),
            "module {m} depends on itself through {:?}",
            reach(&g, m)
                .iter()
                .filter(|d| reach(&g, d).contains(m))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn stated_absences_hold() {
    let g = graph();
    // (module, what it never depends on, directly or not)
    for leaf in ["holdoff", "store", "busclient", "child"] {
        assert!(g[leaf].is_empty(), "{leaf} depends on {:?}", g[leaf]);
    }
    let never: [(&str, &[&str]); 5] = [
        (
            "master",
            &["fleet", "supervisor", "testbed", "report", "storm", "bench"],
        ),
        (
            "fleet",
            &["supervisor", "testbed", "report", "storm", "bench"],
        ),
        ("report", &["testbed", "storm", "bench"]),
        ("storm::invariants", &["testbed"]),
        ("storm::scenario", &["testbed", "supervisor", "report"]),
    ];
    for (m, absent) in never {
        let deps = reach(&g, m);
        for a in absent {
            assert!(
                !deps
                    .iter()
                    .any(|d| d == a || d.starts_with(&format!("{a}::"))),
                "{m} depends on {a}: {deps:?}"
            );
        }
    }
}
