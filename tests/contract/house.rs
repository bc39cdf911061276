//! The house rules, checked on the tree itself so that they hold by more than discipline:
//! the core crate's dependency tree carries no transport crate, no top-level module of either
//! crate is in an import cycle, no non-test source file outgrows one purpose, and nothing refers
//! to a sibling folder of the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Crates that move bytes over a network or speak a wire protocol: the core reaches the world
/// only through the traits it owns.
const TRANSPORT_CRATES: &[&str] = &[
    "tonic",
    "prost",
    "axum",
    "hyper",
    "hyper-util",
    "reqwest",
    "redis",
    "h2",
    "tower",
    "mio",
    "tokio",
    "rustls",
    "tokio-rustls",
    "envoy-types",
];

#[test]
fn the_core_depends_on_no_transport_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args([
            "tree",
            "-p",
            "mesh-authz-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let names: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains("mesh-authz-core"), "{tree}");
    let found: Vec<&&str> = TRANSPORT_CRATES
        .iter()
        .filter(|c| names.contains(**c))
        .collect();
    assert!(
        found.is_empty(),
        "mesh-authz-core depends on transport crates {found:?}:\n{tree}"
    );
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file of `src` belongs to (`check` for `src/check/mod.rs`).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::<module>` references in code (comments and `#[cfg(test)]` tails left out).
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
        // `use crate::{a, b::c}`.
        if let Some(at) = line.find("use crate::{") {
            let group = &line[at + "use crate::{".len()..];
            for part in group.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// The import graph between the top-level modules of `src` (test files left out).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let top = top_module(src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(top.clone()).or_default();
        for m in referenced_modules(&text) {
            if m != top {
                edges.insert(m);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one (depth-first search with colours).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|n| n == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 if graph.contains_key(next.as_str()) => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut path = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut path) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    for src in [
        repo().join("src"),
        repo().join("crates/mesh-authz-core/src"),
    ] {
        let graph = module_graph(&src);
        assert!(graph.len() > 3, "{}: {graph:?}", src.display());
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{}: import cycle {}", src.display(), cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
    assert_eq!(
        referenced_modules("use crate::{config::X, policy};\n// crate::gone\nx(crate::token::y)"),
        ["config", "policy", "token"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

/// Longest non-test source file: past this, a file holds more than one reason to change.
const MAX_LINES: usize = 600;

#[test]
fn no_source_file_outgrows_one_purpose() {
    let mut long = Vec::new();
    for dir in ["src", "crates"] {
        for file in rust_files(&repo().join(dir)) {
            let name = file.file_name().unwrap().to_string_lossy();
            if name == "tests.rs" || file.components().any(|c| c.as_os_str() == "tests") {
                continue;
            }
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn nothing_refers_to_a_sibling_of_the_repository() {
    let needle = ["..", "/shared"].concat();
    let mut hits = Vec::new();
    let mut stack = vec![repo()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    ".git" | "target" | ".venv" | "node_modules" | "corpus" | "artifacts"
                ) {
                    stack.push(path);
                }
            } else if let Ok(text) = std::fs::read_to_string(&path)
                && text.contains(&needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
    assert!(hits.is_empty(), "files naming {needle}: {hits:?}");
}
