//! `llmd why`: each node that ran (or would run), root causes first, then what they
//! cascaded into.
//!
//! Input is a list of `(node id, reason, status)` — from the last build's journal, or
//! from deciding now. A node whose reason is a cascade (`upstream … changed/runs`) is
//! printed under the node it names; every other node is a root.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::graph::glob_match;
use super::reason::Reason;

#[derive(Clone, Debug, Serialize)]
pub struct Explained {
    pub id: String,
    pub reason: Reason,
    /// ran | failed | skipped | would_run
    pub status: String,
    /// The root cause's node (itself for roots).
    pub root: String,
    /// From this node up to its root.
    pub chain: Vec<String>,
    /// Other nodes with identical inputs (the same key): one result serves them all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
}

/// Node id → the other nodes of the same build with the same key.
pub type Twins = HashMap<String, Vec<String>>;

/// Groups `(node id, key)` pairs by key.
pub fn twins(keys: &[(String, String)]) -> Twins {
    let mut by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, key) in keys {
        by_key.entry(key.as_str()).or_default().push(id.as_str());
    }
    let mut out = Twins::new();
    for ids in by_key.values().filter(|ids| ids.len() > 1) {
        for id in ids {
            out.insert(id.to_string(), ids.iter().filter(|o| *o != id).map(|o| o.to_string()).collect());
        }
    }
    out
}

/// `(node id, reason, status)` for each node that ran or would run.
pub type Decided = Vec<(String, Reason, String)>;

/// The newest build journal: its path, the decided-to-run nodes with their outcome, and
/// how many of its lines could not be read (damaged lines are skipped, never fatal).
pub struct LastBuild {
    pub path: std::path::PathBuf,
    pub nodes: Decided,
    /// Every decided node with its key (fresh ones too).
    pub keys: Vec<(String, String)>,
    pub unreadable_lines: usize,
}

/// Reads the newest build journal.
pub fn from_last_journal(journals: &[std::path::PathBuf]) -> Result<LastBuild> {
    for path in journals {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut decided: Vec<(String, Reason)> = Vec::new();
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut status: HashMap<String, String> = HashMap::new();
        let mut is_build = false;
        let mut unreadable_lines = 0;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
            let Ok(v) =
                std::str::from_utf8(line).map_err(|_| ()).and_then(|l| serde_json::from_str::<serde_json::Value>(l).map_err(|_| ()))
            else {
                unreadable_lines += 1;
                continue;
            };
            match v["event"].as_str() {
                Some("decide") => {
                    is_build = true;
                    // Keys of nodes that execute are final when they begin (an analysis
                    // learns its run's outputs only then).
                    if let (Some(id), Some(key), "fresh") = (v["id"].as_str(), v["key"].as_str(), v["decision"].as_str().unwrap_or("")) {
                        keys.push((id.to_string(), key.to_string()));
                    }
                    let id = v["id"].as_str().unwrap_or_default().to_string();
                    match (v["decision"].as_str(), serde_json::from_value::<Reason>(v["reason"].clone())) {
                        (Some("run"), Ok(r)) => decided.push((id, r)),
                        // Fresh by an earlier result, though its inputs changed.
                        (Some("fresh"), Ok(r)) => {
                            status.insert(id.clone(), "fresh".into());
                            decided.push((id, r));
                        }
                        _ => {}
                    }
                }
                Some("begin") => {
                    if let (Some(id), Some(key)) = (v["id"].as_str(), v["key"].as_str()) {
                        keys.push((id.to_string(), key.to_string()));
                    }
                }
                Some("done") => {
                    let s = match (v["status"].as_str(), v["with"].as_str()) {
                        (Some("shared"), Some(with)) => format!("not run: identical inputs to {with}, which ran"),
                        (s, _) => s.unwrap_or("?").to_string(),
                    };
                    status.insert(v["id"].as_str().unwrap_or_default().to_string(), s);
                }
                Some("skip") => {
                    status.insert(v["id"].as_str().unwrap_or_default().to_string(), "skipped".into());
                }
                _ => {}
            }
        }
        if is_build {
            let nodes = decided
                .into_iter()
                .map(|(id, r)| {
                    let s = status.get(&id).cloned().unwrap_or_else(|| "not reached".into());
                    (id, r, s)
                })
                .collect();
            return Ok(LastBuild { path: path.clone(), nodes, keys, unreadable_lines });
        }
    }
    anyhow::bail!("no build has been recorded in this cache yet; run `llmd build <experiment.yaml>` first")
}

/// Links every node to its root cause.
pub fn explain(nodes: &[(String, Reason, String)], twins: &Twins) -> Vec<Explained> {
    let by_id: HashMap<&str, &Reason> = nodes.iter().map(|(id, r, _)| (id.as_str(), r)).collect();
    nodes
        .iter()
        .map(|(id, reason, status)| {
            let mut chain = vec![id.clone()];
            let mut cur = reason;
            while let Some(up) = cur.upstream() {
                if chain.iter().any(|c| c == up) {
                    break;
                }
                chain.push(up.to_string());
                match by_id.get(up) {
                    Some(r) => cur = r,
                    None => break,
                }
            }
            Explained {
                id: id.clone(),
                reason: reason.clone(),
                status: status.clone(),
                root: chain.last().cloned().unwrap_or_default(),
                chain,
                shared_with: twins.get(id).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// Text: roots first, each with the nodes it cascaded into, indented.
pub fn render(explained: &[Explained], twins: &Twins, filter: Option<&str>, source: &str) -> String {
    let shown: Vec<&Explained> =
        explained.iter().filter(|e| filter.is_none_or(|f| glob_match(f, &e.id) || e.chain.iter().any(|c| glob_match(f, c)))).collect();
    if shown.is_empty() {
        return match filter {
            Some(f) => format!("no node matching '{f}' ran in {source}\n"),
            None => format!("nothing ran in {source}: every node was fresh\n"),
        };
    }
    let mut out = format!("{source}:\n");
    let mut roots: BTreeMap<String, Vec<&Explained>> = BTreeMap::new();
    for e in &shown {
        roots.entry(e.root.clone()).or_default().push(e);
    }
    let by_id: HashMap<&str, &Explained> = explained.iter().map(|e| (e.id.as_str(), e)).collect();
    for (root, members) in &roots {
        match by_id.get(root.as_str()) {
            Some(r) => {
                out.push_str(&format!("{}  [{}]\n    {}\n", r.id, status_label(r), r.reason.describe(usize::MAX).replace("; ", "\n    ")));
                for line in r.reason.detail().iter().flat_map(|d| d.lines()) {
                    out.push_str(&format!("      {line}\n"));
                }
            }
            // A cascade's root that did not execute and did not change since the last
            // build: the node below last executed before it changed (its own baseline
            // is older, say because an earlier build skipped it).
            None => match twins.get(root) {
                Some(others) => {
                    out.push_str(&format!("{root}  [fresh: not run; identical inputs to {}, whose result it shares]\n", others.join(", ")))
                }
                None => out.push_str(&format!("{root}  [fresh: not run; changed since the node below last executed]\n")),
            },
        }
        for m in members.iter().filter(|m| m.id != *root) {
            let depth = m.chain.len() - 1;
            out.push_str(&format!("{}└─ {}  [{}]  {}\n", "   ".repeat(depth), m.id, status_label(m), m.reason.describe(3)));
        }
    }
    out
}

/// What happened to a node: its status, and for one that did not execute although its
/// inputs changed, why not.
fn status_label(e: &Explained) -> String {
    match (e.status.as_str(), e.shared_with.is_empty()) {
        ("fresh", false) => format!("fresh: not run; identical inputs to {}, whose result it shares", e.shared_with.join(", ")),
        ("fresh", true) => "fresh: not run; a cached result of these inputs is reused".into(),
        (s, false) if s != "would_run" && !s.starts_with("not run") => format!("{s}; identical inputs to {}", e.shared_with.join(", ")),
        (s, _) => s.to_string(),
    }
}

/// `source` label for a journal file.
pub fn journal_label(path: &Path) -> String {
    format!("last build ({})", path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::key::LeafChange;

    #[test]
    fn roots_first_then_cascades() {
        let change = LeafChange {
            path: "local.sim.timeToFirstToken".into(),
            old: Some("\"20ms\"".into()),
            new: Some("\"50ms\"".into()),
            origin: "exp.yaml:9:7".into(),
        };
        let nodes = vec![
            ("standup/a/sim".to_string(), Reason::ConfigChanged { changes: vec![change] }, "ran".to_string()),
            ("smoketest/a/sim".to_string(), Reason::UpstreamRuns { node: "standup/a/sim".into() }, "ran".to_string()),
            ("run/a/sim/r1#1".to_string(), Reason::UpstreamChanged { node: "standup/a/sim".into() }, "ran".to_string()),
            ("analysis/a/sim/r1#1".to_string(), Reason::UpstreamRuns { node: "run/a/sim/r1#1".into() }, "ran".to_string()),
            ("run/b/sim/r1#1".to_string(), Reason::NeverRun, "failed".to_string()),
        ];
        let e = explain(&nodes, &Twins::new());
        assert_eq!(e[3].root, "standup/a/sim");
        assert_eq!(e[3].chain, ["analysis/a/sim/r1#1", "run/a/sim/r1#1", "standup/a/sim"]);
        let text = render(&e, &Twins::new(), None, "last build");
        let standup = text.find("standup/a/sim  [ran]").unwrap();
        assert!(text[standup..].contains("local.sim.timeToFirstToken: \"20ms\" → \"50ms\" (exp.yaml:9:7)"), "{text}");
        assert!(text.contains("      └─ analysis/a/sim/r1#1  [ran]  upstream run/a/sim/r1#1 runs"), "{text}");
        assert!(text.contains("run/b/sim/r1#1  [failed]\n    never run"), "{text}");
        let only = render(&e, &Twins::new(), Some("analysis/*"), "last build");
        assert!(only.contains("analysis/a/sim/r1#1") && !only.contains("run/b/"), "{only}");
    }

    #[test]
    fn damaged_journal_lines_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0001-1.jsonl");
        let reason = serde_json::to_string(&Reason::NeverRun).unwrap();
        let mut bytes = format!("{{\"event\":\"decide\",\"id\":\"plan/a/s\",\"decision\":\"run\",\"reason\":{reason}}}\n").into_bytes();
        bytes.extend_from_slice(b"{\"event\":\"done\",\"id\":\"\xff\xfe\"}\n{not json\n\n");
        bytes.extend_from_slice(b"{\"event\":\"done\",\"id\":\"plan/a/s\",\"status\":\"ran\"}\n");
        std::fs::write(&path, bytes).unwrap();
        let last = from_last_journal(&[path]).unwrap();
        assert_eq!(last.unreadable_lines, 2, "invalid UTF-8 and invalid JSON; blank lines are not damage");
        assert_eq!(last.nodes, vec![("plan/a/s".to_string(), Reason::NeverRun, "ran".to_string())]);
    }
}
