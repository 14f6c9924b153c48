//! The module-cycle lint: inside every crate, the modules that share a
//! parent must depend on each other as a DAG (a child may still use its
//! parent's items, and a parent its children's).
//!
//! It reads the sources as text: the module tree from `mod name;`
//! declarations, and the dependencies from `crate::`, `super::` and
//! `self::` paths (in `use` trees and in code). That is all the project's
//! code uses to reach another module; a path through a re-export counts as
//! a dependency on the module that re-exports it.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path from the crate root (empty for the root) and its
/// file (`None` for an inline module, which is part of its parent's).
#[derive(Debug)]
struct Module {
    path: Vec<String>,
    file: Option<PathBuf>,
}

/// One dependency between two sibling modules, with where it was seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The parent module of both ("crate" for the root).
    pub parent: String,
    /// The module that depends.
    pub from: String,
    /// The module it depends on.
    pub to: String,
    /// File and line of the first path that shows it.
    pub at: String,
}

/// A dependency of one module on another, both as paths from the crate
/// root, or on another crate, with where it was seen.
#[derive(Debug, Clone)]
pub struct Dep {
    /// The module whose file has the path.
    pub from: Vec<String>,
    /// The module the path leads to; for another crate, its name alone.
    pub to: Vec<String>,
    /// Whether `to` is another crate (`tokio`, `std`, …).
    pub external: bool,
    /// File and line.
    pub at: String,
}

/// A crate's modules and their dependencies.
pub struct Graph {
    /// Every module, as its path from the crate root.
    pub modules: BTreeSet<Vec<String>>,
    /// Every dependency seen.
    pub deps: Vec<Dep>,
}

/// The module graph of the crate whose root file is `root` (lib.rs,
/// main.rs or a bin).
pub fn graph(root: &Path) -> Result<Graph> {
    let modules = tree(root)?;
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut out = Vec::new();
    for m in &modules {
        let Some(file) = &m.file else { continue };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let children: BTreeSet<String> = known
            .iter()
            .filter(|p| p.len() == m.path.len() + 1 && p.starts_with(&m.path))
            .filter_map(|p| p.last().cloned())
            .collect();
        let text = strip(&text);
        for (line, target) in references(&text, &m.path, &children) {
            out.push(Dep {
                from: m.path.clone(),
                to: resolve(&target, &known),
                external: false,
                at: format!("{}:{line}", file.display()),
            });
        }
        for (line, name) in external_crates(&text, &children) {
            out.push(Dep {
                from: m.path.clone(),
                to: vec![name],
                external: true,
                at: format!("{}:{line}", file.display()),
            });
        }
    }
    Ok(Graph {
        modules: known,
        deps: out,
    })
}

/// Every cycle among sibling modules in `deps`, each as its edges in order.
pub fn cycles(deps: &[Dep]) -> Vec<Vec<Edge>> {
    let mut edges: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for d in deps.iter().filter(|d| !d.external) {
        if let Some((parent, from, to)) = sibling_edge(&d.from, &d.to) {
            edges.entry((parent, from, to)).or_insert(d.at.clone());
        }
    }
    let edges: Vec<Edge> = edges
        .into_iter()
        .map(|((parent, from, to), at)| Edge {
            parent,
            from,
            to,
            at,
        })
        .collect();
    find_cycles(&edges)
}

/// Whether anything in module `m` (or under it) depends, directly or
/// through other modules, on module `on` (or anything under it), or on the
/// crate `on` when `external`; if so, the chain of dependencies that shows it.
pub fn depends(deps: &[Dep], m: &[String], on: &[String], external: bool) -> Option<Vec<Dep>> {
    let mut came: BTreeMap<Vec<String>, Option<&Dep>> = BTreeMap::new();
    let mut todo: std::collections::VecDeque<Vec<String>> = Default::default();
    for d in deps.iter().filter(|d| d.from.starts_with(m)) {
        came.entry(d.from.clone()).or_insert(None);
        todo.push_back(d.from.clone());
    }
    while let Some(n) = todo.pop_front() {
        for d in deps.iter().filter(|d| d.from == n) {
            if d.external {
                if external && d.to == on {
                    let mut chain = vec![d.clone()];
                    while let Some(Some(prev)) = came.get(&chain[chain.len() - 1].from) {
                        chain.push((*prev).clone());
                    }
                    chain.reverse();
                    return Some(chain);
                }
                continue;
            }
            if came.contains_key(&d.to) {
                continue;
            }
            came.insert(d.to.clone(), Some(d));
            if !external && d.to.starts_with(on) {
                let mut chain = vec![d.clone()];
                while let Some(Some(prev)) = came.get(&chain[chain.len() - 1].from) {
                    chain.push((*prev).clone());
                }
                chain.reverse();
                return Some(chain);
            }
            todo.push_back(d.to.clone());
        }
    }
    None
}

/// The module tree under `root`, from `mod name;` declarations.
fn tree(root: &Path) -> Result<Vec<Module>> {
    let mut out = Vec::new();
    let mut todo = vec![Module {
        path: Vec::new(),
        file: Some(root.to_path_buf()),
    }];
    while let Some(m) = todo.pop() {
        let Some(file) = &m.file else { continue };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let dir = children_dir(file, m.path.is_empty());
        let (files, inline) = declared_modules(&strip(&text));
        for name in inline {
            // Part of this file: known as a module, read with it (its own
            // paths are skipped, see `references`).
            let mut path = m.path.clone();
            path.push(name);
            out.push(Module { path, file: None });
        }
        for name in files {
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let file = if flat.exists() { flat } else { nested };
            if !file.exists() {
                // `#[path]` or a generated module: not ours to follow.
                continue;
            }
            let mut path = m.path.clone();
            path.push(name);
            todo.push(Module {
                path,
                file: Some(file),
            });
        }
        out.push(m);
    }
    Ok(out)
}

/// Where the children of the module in `file` live.
fn children_dir(file: &Path, is_root: bool) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new("."));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if is_root || stem == "mod" {
        parent.to_path_buf()
    } else {
        parent.join(stem)
    }
}

/// Names of the modules declared in a file: `mod name;` (their own files)
/// and `mod name { … }` (inline).
fn declared_modules(text: &str) -> (Vec<String>, Vec<String>) {
    let toks = tokens(text);
    let (mut files, mut inline) = (Vec::new(), Vec::new());
    for (i, t) in toks.iter().enumerate() {
        let (Some(name), Some(next)) = (toks.get(i + 1), toks.get(i + 2)) else {
            continue;
        };
        if t.text != "mod" || !is_ident(&name.text) {
            continue;
        }
        match next.text.as_str() {
            ";" => files.push(name.text.clone()),
            "{" => inline.push(name.text.clone()),
            _ => {}
        }
    }
    (files, inline)
}

/// Source text with comments, strings and char literals blanked (newlines
/// kept, so lines still count).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |s: &[u8], out: &mut String| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            block_comment_len(rest)
        } else if rest[0] == b'"' || rest.starts_with(b"r\"") || rest.starts_with(b"r#") {
            string_len(rest)
        } else if rest[0] == b'\'' {
            char_len(rest)
        } else {
            0
        };
        if end > 0 {
            blank(&rest[..end], &mut out);
            i += end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn block_comment_len(s: &[u8]) -> usize {
    let (mut depth, mut i) = (0usize, 0);
    while i < s.len() {
        if s[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if s[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

/// A string literal's length: "…" with escapes, or r#"…"#.
fn string_len(s: &[u8]) -> usize {
    if s[0] == b'r' {
        let hashes = s[1..].iter().take_while(|&&c| c == b'#').count();
        if s.get(1 + hashes) != Some(&b'"') {
            // `r#ident`, a raw identifier.
            return 0;
        }
        let close: Vec<u8> = std::iter::once(b'"')
            .chain(std::iter::repeat_n(b'#', hashes))
            .collect();
        let body = 2 + hashes;
        return s[body..]
            .windows(close.len())
            .position(|w| w == close.as_slice())
            .map_or(s.len(), |p| body + p + close.len());
    }
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

/// A char literal's length, or 0 for a lifetime (`'a`).
fn char_len(s: &[u8]) -> usize {
    match s.get(1) {
        Some(b'\\') => s[2..].iter().position(|&c| c == b'\'').map_or(0, |p| p + 3),
        Some(_) if s.get(2) == Some(&b'\'') => 3,
        Some(&c) if c >= 0x80 => {
            // One multi-byte character.
            let n = s[1..]
                .iter()
                .skip(1)
                .take_while(|&&c| c & 0xC0 == 0x80)
                .count();
            if s.get(2 + n) == Some(&b'\'') {
                3 + n
            } else {
                0
            }
        }
        _ => 0,
    }
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers, `::` and single punctuation characters, with their lines.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut line = 1;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// Every module-relative path in `text` (a module at `here`), made
/// absolute (from the crate root), with its line.
fn references(
    text: &str,
    here: &[String],
    children: &BTreeSet<String>,
) -> Vec<(usize, Vec<String>)> {
    let toks = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].text.as_str();
        if t == "mod" && toks.get(i + 2).is_some_and(|t| t.text == "{") {
            // An inline module (tests, mostly): its paths are its own.
            i = matching_brace(&toks, i + 2);
            continue;
        }
        let starts_path = (matches!(t, "crate" | "super" | "self") || children.contains(t))
            && toks.get(i + 1).is_some_and(|t| t.text == "::")
            && (i == 0 || toks[i - 1].text != "::");
        if !starts_path {
            i += 1;
            continue;
        }
        let line = toks[i].line;
        let (prefixes, next) = use_tree(&toks, i);
        for p in prefixes {
            if let Some(abs) = absolute(&p, here) {
                out.push((line, abs));
            }
        }
        i = next.max(i + 1);
    }
    out
}

/// Other crates that `text` names as the first segment of a path
/// (`tokio::time`, `::std`), with their lines; inline modules skipped.
fn external_crates(text: &str, children: &BTreeSet<String>) -> Vec<(usize, String)> {
    let toks = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].text.as_str();
        if t == "mod" && toks.get(i + 2).is_some_and(|t| t.text == "{") {
            i = matching_brace(&toks, i + 2);
            continue;
        }
        let first = i == 0
            || toks[i - 1].text != "::"
            || toks.get(i.wrapping_sub(2)).is_some_and(|p| p.text == "use");
        if first
            && toks.get(i + 1).is_some_and(|n| n.text == "::")
            && t.starts_with(|c: char| c.is_ascii_lowercase())
            && is_ident(t)
            && !matches!(t, "crate" | "super" | "self")
            && !children.contains(t)
        {
            out.push((toks[i].line, t.to_string()));
        }
        i += 1;
    }
    out
}

/// The index after the brace that closes the one at `open`.
fn matching_brace(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// The paths of a path or use tree starting at `toks[i]`: `a::b::{c, d::e}`
/// gives `a::b::c` and `a::b::d::e`. Returns them and the index after.
fn use_tree(toks: &[Token], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        match toks.get(i).map(|t| t.text.as_str()) {
            Some(t) if is_ident(t) => {
                prefix.push(t.to_string());
                i += 1;
            }
            Some("{") => {
                let mut out = Vec::new();
                i += 1;
                while let Some(t) = toks.get(i) {
                    match t.text.as_str() {
                        "}" => return (out, i + 1),
                        "," => i += 1,
                        _ => {
                            let (inner, next) = use_tree(toks, i);
                            out.extend(inner.into_iter().map(|p| [prefix.clone(), p].concat()));
                            i = next.max(i + 1);
                        }
                    }
                }
                return (out, i);
            }
            _ => return (vec![prefix], i),
        }
        if toks.get(i).is_some_and(|t| t.text == "::") {
            i += 1;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// `crate::a`, `super::a`, `self::a` from module `here`, as a path from the
/// crate root; `None` if it climbs above the root.
fn absolute(p: &[String], here: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = p;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        // A child module, by its own name.
        Some(_) if rest.len() > 1 => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &[String], known: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
        .unwrap_or_default()
}

/// The edge that a path from module `from` to module `to` adds to the graph
/// of their common parent: between the two children of that parent on
/// either side, where the parent's own file counts as the child `self`.
/// `None` within one module.
fn sibling_edge(from: &[String], to: &[String]) -> Option<(String, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let own = "self".to_string();
    let (a, b) = (
        from.get(common).unwrap_or(&own),
        to.get(common).unwrap_or(&own),
    );
    if a == b {
        return None;
    }
    let parent = if common == 0 {
        "crate".to_string()
    } else {
        from[..common].join("::")
    };
    Some((parent, a.clone(), b.clone()))
}

/// Cycles in the sibling graphs: for each strongly connected set of more
/// than one module, one cycle through it.
fn find_cycles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let mut out = Vec::new();
    let parents: BTreeSet<&str> = edges.iter().map(|e| e.parent.as_str()).collect();
    for parent in parents {
        let here: Vec<&Edge> = edges.iter().filter(|e| e.parent == parent).collect();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for start in here.iter().map(|e| e.from.clone()) {
            if seen.contains(&start) {
                continue;
            }
            if let Some(cycle) = cycle_from(&start, &here) {
                seen.extend(cycle.iter().map(|e| e.from.clone()));
                out.push(cycle);
            }
        }
    }
    out
}

/// The shortest path of edges from `start` back to itself, if any.
fn cycle_from(start: &str, edges: &[&Edge]) -> Option<Vec<Edge>> {
    let mut prev: BTreeMap<String, &Edge> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(n) = queue.pop_front() {
        for e in edges.iter().filter(|e| e.from == n) {
            if e.to == start {
                let mut path = vec![(*e).clone()];
                let mut at = n.clone();
                while at != start {
                    let p = prev[&at];
                    path.push(p.clone());
                    at = p.from.clone();
                }
                path.reverse();
                return Some(path);
            }
            if !prev.contains_key(&e.to) {
                prev.insert(e.to.clone(), e);
                queue.push_back(e.to.clone());
            }
        }
    }
    None
}

/// The crate roots under the workspace's member folders: `src/lib.rs`,
/// `src/main.rs` and `src/bin/*.rs`.
pub fn crate_roots(root: &Path, members: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for m in members {
        let src = root.join(m).join("src");
        for f in ["lib.rs", "main.rs"] {
            if src.join(f).exists() {
                out.push(src.join(f));
            }
        }
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            let mut bins: Vec<PathBuf> = bins.flatten().map(|e| e.path()).collect();
            bins.sort();
            out.extend(
                bins.into_iter()
                    .filter(|p| p.extension().is_some_and(|x| x == "rs")),
            );
        }
    }
    out
}

/// A stated absence: in crate folder `krate`, module `module` never
/// depends on any of `never`: module paths (`::`-separated) or, written as
/// `extern tokio`, other crates; `["*"]` is every other module of the crate.
pub struct Absence {
    /// The crate's folder.
    pub krate: &'static str,
    /// The module.
    pub module: &'static str,
    /// What it never uses.
    pub never: &'static [&'static str],
}

fn path_of(s: &str) -> Vec<String> {
    s.split("::")
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// What breaks the absences stated for the crate `name`, as report lines.
fn broken_absences(
    name: &str,
    g: &Graph,
    absences: &[Absence],
    at: impl Fn(&str) -> String,
) -> String {
    let mut report = String::new();
    let is_root = name.ends_with("src/lib.rs") || name.ends_with("src/main.rs");
    for a in absences
        .iter()
        .filter(|a| is_root && name.starts_with(&format!("{}/", a.krate)))
    {
        if !g.modules.contains(&path_of(a.module)) {
            report += &format!(
                "{name}: an absence is stated for `{}`, which is no module\n",
                a.module
            );
            continue;
        }
        let m = path_of(a.module);
        if a.never == ["*"] {
            let out = g
                .deps
                .iter()
                .find(|d| !d.external && d.from.starts_with(&m) && !d.to.starts_with(&m));
            if let Some(d) = out {
                report += &format!(
                    "{name}: `{}` must use no other module of its crate, but uses {} ({})\n",
                    a.module,
                    d.to.join("::"),
                    at(&d.at)
                );
            }
            continue;
        }
        for never in a.never {
            let (on, external) = match never.strip_prefix("extern ") {
                Some(c) => (vec![c.to_string()], true),
                None => (path_of(never), false),
            };
            if !external && !g.modules.contains(&on) {
                report += &format!(
                    "{name}: `{}` is said never to use `{never}`, which is no module\n",
                    a.module
                );
                continue;
            }
            if let Some(chain) = depends(&g.deps, &path_of(a.module), &on, external) {
                report += &format!(
                    "{name}: `{}` must never depend on `{never}`, but:\n",
                    a.module
                );
                for d in chain {
                    report += &format!(
                        "  {} uses {} ({})\n",
                        d.from.join("::"),
                        d.to.join("::"),
                        at(&d.at)
                    );
                }
            }
        }
    }
    report
}

/// Fails, listing every cycle and every broken absence with the lines that
/// show it, unless every crate's modules form a DAG and the absences hold.
pub fn check(root: &Path, members: &[&str], absences: &[Absence]) -> Result<()> {
    let mut report = String::new();
    let prefix = format!("{}/", root.display());
    let at = |a: &str| a.strip_prefix(&prefix).unwrap_or(a).to_string();
    for krate in crate_roots(root, members) {
        let g = graph(&krate)?;
        let name = krate
            .strip_prefix(root)
            .unwrap_or(&krate)
            .display()
            .to_string();
        for cycle in cycles(&g.deps) {
            report += &format!(
                "{name}: a cycle among the modules of `{}`:\n",
                cycle[0].parent
            );
            for e in &cycle {
                report += &format!("  {} uses {} ({})\n", e.from, e.to, at(&e.at));
            }
        }
        // Absences speak of the library, or of the binary of a crate
        // without one.
        let lib = krate.with_file_name("lib.rs");
        if krate == lib || (krate.ends_with("src/main.rs") && !lib.exists()) {
            report += &broken_absences(&name, &g, absences, at);
        }
    }
    anyhow::ensure!(report.is_empty(), "module dependencies:\n{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    fn names(cycles: &[Vec<Edge>]) -> Vec<Vec<(String, String)>> {
        cycles
            .iter()
            .map(|c| c.iter().map(|e| (e.from.clone(), e.to.clone())).collect())
            .collect()
    }

    #[test]
    fn a_dag_passes() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "pub mod a;\npub mod b;\nuse crate::b::Thing;\n"),
                (
                    "a.rs",
                    "use crate::b::{self, Thing};\nfn f() { crate::b::go(); }\n",
                ),
                (
                    "b.rs",
                    "pub mod inner;\npub mod thing;\npub use thing::Thing;\nuse self::inner::X;\n",
                ),
                ("b/thing.rs", "pub struct Thing;\n"),
                (
                    "b/inner.rs",
                    "use super::thing::Thing;\npub struct X;\nmod trusted { pub const K: u8 = 1; }\nfn k() -> u8 { self::trusted::K }\n",
                ),
            ],
        );
        assert!(cycles(&graph(&d.path().join("lib.rs")).unwrap().deps).is_empty());
    }

    #[test]
    fn a_cycle_between_siblings_is_found_with_its_lines() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
                ("a.rs", "use crate::b::X;\n"),
                ("b.rs", "pub struct X;\n\nfn f() { crate::c::g() }\n"),
                ("c.rs", "use crate::{a::Y, b};\n"),
            ],
        );
        let found = cycles(&graph(&d.path().join("lib.rs")).unwrap().deps);
        assert_eq!(
            names(&found),
            [[("a", "b"), ("b", "c"), ("c", "a")].map(|(x, y)| (x.into(), y.into()))]
        );
        assert!(found[0][1].at.ends_with("b.rs:3"), "{:?}", found[0][1]);
    }

    #[test]
    fn nested_siblings_and_super_paths_count() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("main.rs", "mod m;\n"),
                ("m/mod.rs", "mod x;\nmod y;\n"),
                ("m/x.rs", "use super::y::Z;\n"),
                ("m/y.rs", "fn f() { super::x::go() }\n"),
            ],
        );
        let found = cycles(&graph(&d.path().join("main.rs")).unwrap().deps);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0][0].parent, "m");
    }

    #[test]
    fn a_child_using_its_parent_that_uses_it_is_a_cycle_but_inline_tests_are_not() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "pub mod m;\n"),
                ("m/mod.rs", "mod k;\npub use k::K;\npub struct P;\n"),
                ("m/k.rs", "pub struct K(super::P);\n"),
            ],
        );
        let found = cycles(&graph(&d.path().join("lib.rs")).unwrap().deps);
        assert_eq!(
            names(&found),
            [[("k", "self"), ("self", "k")].map(|(x, y)| (x.into(), y.into()))]
        );
        write(
            d.path(),
            &[
                ("m/mod.rs", "mod k;\nmod p;\npub use k::K;\n"),
                ("m/p.rs", "pub struct P;\n"),
                (
                    "m/k.rs",
                    "pub struct K(super::p::P);\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::m::K;\n}\n",
                ),
            ],
        );
        assert!(cycles(&graph(&d.path().join("lib.rs")).unwrap().deps).is_empty());
    }

    #[test]
    fn an_absence_is_checked_through_other_modules() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
                ("a/mod.rs", "mod inner;\n"),
                ("a/inner.rs", "use crate::b::X;\n"),
                ("b.rs", "pub struct X(crate::c::Y);\n"),
                ("c.rs", "pub struct Y(tokio::sync::Notify);\n"),
            ],
        );
        let deps = graph(&d.path().join("lib.rs")).unwrap().deps;
        let chain = depends(&deps, &path_of("a"), &path_of("c"), false).expect("a reaches c");
        let hops: Vec<String> = chain.iter().map(|d| d.to.join("::")).collect();
        assert_eq!(hops, ["b", "c"]);
        assert!(depends(&deps, &path_of("c"), &path_of("a"), false).is_none());
        assert!(depends(&deps, &path_of("b"), &path_of("a::inner"), false).is_none());
        // Another crate, reached through a module.
        let chain = depends(&deps, &path_of("a"), &["tokio".to_string()], true).expect("tokio");
        assert_eq!(chain.last().unwrap().at.rsplit('/').next(), Some("c.rs:1"));
        assert!(depends(&deps, &path_of("c"), &["std".to_string()], true).is_none());
    }

    #[test]
    fn comments_and_strings_are_not_paths() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("lib.rs", "mod a;\nmod b;\n"),
                ("a.rs", "use crate::b::X;\n"),
                (
                    "b.rs",
                    "pub struct X;\n// crate::a::Y\n/* crate::a::Y */\nconst S: &str = \"crate::a::Y\";\nconst C: char = '\"';\nfn f<'a>(_: &'a str) {}\n",
                ),
            ],
        );
        assert!(cycles(&graph(&d.path().join("lib.rs")).unwrap().deps).is_empty());
    }
}
