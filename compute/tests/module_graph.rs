//! The module graph of `compute/src` has no cycle: no module uses a module
//! that (directly or through others) uses it back. Read from the sources:
//! every `crate::a` or `crate::jobs::b` path, `use super::b` inside a
//! module with submodules (`jobs`, `offload`), and such a module's own
//! `use executor::…` / `build::…` references. The graph is
//! stated in `src/lib.rs`'s documentation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name of a source file: `jobs/build.rs` → `jobs::build`,
/// `jobs/mod.rs` → `jobs`.
fn module_of(rel: &Path) -> String {
    let s = rel.with_extension("").to_string_lossy().replace('/', "::");
    s.strip_suffix("::mod").map(str::to_string).unwrap_or(s)
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Modules with submodules of their own (`jobs`, `offload`): a path into
/// one names the submodule, not the parent.
type Children = BTreeMap<String, BTreeSet<String>>;

fn uses(module: &str, src: &str, children: &Children) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let child = |parent: &str, name: &str| -> Option<String> {
        children
            .get(parent)
            .is_some_and(|c| c.contains(name))
            .then(|| format!("{parent}::{name}"))
    };
    for (i, _) in src.match_indices("crate::") {
        let rest = &src[i + "crate::".len()..];
        let first = ident_at(rest);
        let after = &rest[first.len()..];
        if let Some(sub) = after.strip_prefix("::").map(ident_at)
            && let Some(c) = child(first, sub)
        {
            out.insert(c);
            continue;
        }
        if let Some(list) = after.strip_prefix("::{")
            && children.contains_key(first)
        {
            // `crate::jobs::{self, build, install}`
            let list = &list[..list.find('}').unwrap_or(list.len())];
            for name in list.split(',').map(str::trim) {
                match child(first, name) {
                    Some(c) => out.insert(c),
                    None => out.insert(first.to_string()),
                };
            }
            continue;
        }
        if !first.is_empty() {
            out.insert(first.to_string());
        }
    }
    let parent = module.split("::").next().unwrap_or(module);
    if let Some(siblings) = children.get(parent) {
        for line in src.lines().map(str::trim_start) {
            let rest = line
                .strip_prefix("use super::")
                .or_else(|| line.strip_prefix("pub(crate) use super::"))
                .or_else(|| line.strip_prefix("pub(crate) use "))
                .or_else(|| line.strip_prefix("pub use "))
                .or_else(|| line.strip_prefix("use "));
            if let Some(rest) = rest
                && let Some(c) = child(parent, ident_at(rest))
            {
                out.insert(c);
            }
        }
        for name in siblings {
            // `read::` names the sibling, `thread::` does not.
            let path = format!("{name}::");
            let named = src.match_indices(&path).any(|(at, _)| {
                !src[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if named {
                out.insert(format!("{parent}::{name}"));
            }
        }
    }
    out.remove(module);
    out.remove("lib");
    out
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if !graph.contains_key(next) {
                continue;
            }
            match state.get(next) {
                Some(1) => {
                    let start = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node)
            && let Some(c) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_of_compute_uses_a_module_that_uses_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let modules: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).expect("under src");
            (module_of(rel), std::fs::read_to_string(f).expect("read"))
        })
        .collect();
    let mut children = Children::new();
    for (m, _) in &modules {
        if let Some((parent, name)) = m.split_once("::") {
            children
                .entry(parent.to_string())
                .or_default()
                .insert(name.to_string());
        }
    }
    assert!(children.contains_key("jobs"), "no jobs submodules found");
    assert!(
        children.contains_key("offload"),
        "no offload submodules found"
    );
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|(m, text)| (m.clone(), uses(m, text, &children)))
        .collect();
    // The scan sees the edges that matter.
    assert!(graph["db"].contains("engine"), "{graph:?}");
    assert!(graph["jobs::build"].contains("engine"), "{graph:?}");
    assert!(
        graph["jobs::registry"].contains("jobs::executor"),
        "{graph:?}"
    );
    assert!(graph["offload::ship"].contains("engine"), "{graph:?}");
    assert!(graph["state"].contains("offload::slot"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle in compute/src: {}", cycle.join(" -> "));
    }
    // And it would see one: a graph with a back edge added has a cycle.
    let mut with_back_edge = graph.clone();
    with_back_edge
        .get_mut("engine")
        .expect("engine")
        .insert("db".to_string());
    assert!(find_cycle(&with_back_edge).is_some());
}
