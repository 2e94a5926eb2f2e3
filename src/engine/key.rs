//! Node keys and canonical leaves.
//!
//! A key is `blake3::derive_key("llmd/engine/v1/<kind>", encoding)`, where the encoding
//! is the node's named inputs, sorted by name, each length-prefixed. Inputs are digests,
//! versions and canonical values — never absolute paths, hostnames, mtimes or clocks —
//! so the same experiment has the same keys on any machine and in any checkout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::yaml::{Node, Value};

pub use crate::util::digest::{KEY_VERSION as ENGINE_VERSION, node_key};

/// One leaf of a configuration or treatment: a dotted path, its canonical JSON value,
/// and where it was set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    pub path: String,
    pub value: String,
    pub origin: String,
}

/// A scalar (or empty container) as canonical JSON.
pub fn canonical(node: &Node) -> String {
    let mut out = Vec::new();
    write_canonical(node, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// [`canonical`], appended to `out`.
fn write_canonical(node: &Node, out: &mut Vec<u8>) {
    match &node.value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(crate::pyfmt::json_float(*f).as_bytes()),
        Value::Str(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Value::Seq(_) => out.extend_from_slice(b"[]"),
        Value::Map(_) => out.extend_from_slice(b"{}"),
    }
}

/// Calls `visit` with each leaf's dotted path and node, in tree order: list items are
/// indexed (`args.0`), empty containers are leaves.
fn walk_leaves<'a>(node: &'a Node, path: &mut String, visit: &mut dyn FnMut(&str, &'a Node)) {
    let len = path.len();
    let mut child = |path: &mut String, step: &str, v: &'a Node| {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(step);
        walk_leaves(v, path, visit);
        path.truncate(len);
    };
    match &node.value {
        Value::Map(m) if !m.is_empty() => {
            for (k, v) in m {
                child(path, k, v);
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                child(path, &i.to_string(), v);
            }
        }
        _ => visit(path, node),
    }
}

/// The leaves of a tree, sorted by path: list items are indexed (`args.0`), empty
/// containers are leaves. Key order and formatting of the source do not matter.
pub fn leaves(node: &Node) -> Vec<Leaf> {
    let mut out = Vec::new();
    walk_leaves(node, &mut String::new(), &mut |path, n| {
        out.push(Leaf { path: path.to_string(), value: canonical(n), origin: n.origin.to_string() })
    });
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// `leaves_digest(&leaves(node))` without building the leaves (no origin formatted,
/// every value written into one buffer): each build digests every stack's config.
pub fn tree_digest(node: &Node) -> String {
    let mut found: Vec<(String, &Node)> = Vec::new();
    walk_leaves(node, &mut String::new(), &mut |path, n| found.push((path.to_string(), n)));
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = blake3::Hasher::new();
    let mut value = Vec::new();
    for (path, n) in &found {
        value.clear();
        write_canonical(n, &mut value);
        h.update(&(path.len() as u64).to_le_bytes()).update(path.as_bytes());
        h.update(&(value.len() as u64).to_le_bytes()).update(&value);
    }
    h.finalize().to_hex().to_string()
}

/// Leaves of dotted overrides (`a.b: v` pairs), each value expanded to its own leaves.
pub fn override_leaves(pairs: &[(String, Node)]) -> Vec<Leaf> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        for mut l in leaves(value) {
            l.path = if l.path.is_empty() { key.clone() } else { format!("{key}.{}", l.path) };
            out.push(l);
        }
    }
    // A later pair for the same path wins, as when the overrides are applied.
    let mut by_path: BTreeMap<String, Leaf> = BTreeMap::new();
    for l in out {
        by_path.insert(l.path.clone(), l);
    }
    by_path.into_values().collect()
}

/// Digest of leaves' paths and values (origins excluded: moving a value to another
/// line changes nothing).
pub fn leaves_digest(leaves: &[Leaf]) -> String {
    let mut h = blake3::Hasher::new();
    for l in leaves {
        h.update(&(l.path.len() as u64).to_le_bytes()).update(l.path.as_bytes());
        h.update(&(l.value.len() as u64).to_le_bytes()).update(l.value.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// A changed leaf, for reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafChange {
    pub path: String,
    /// `None`: the leaf is new.
    pub old: Option<String>,
    /// `None`: the leaf was removed.
    pub new: Option<String>,
    /// Where the new value was set (or where the old one was, for removals).
    pub origin: String,
}

/// The leaves that differ between two sorted leaf lists.
pub fn diff_leaves(old: &[Leaf], new: &[Leaf]) -> Vec<LeafChange> {
    let old_map: BTreeMap<&str, &Leaf> = old.iter().map(|l| (l.path.as_str(), l)).collect();
    let new_map: BTreeMap<&str, &Leaf> = new.iter().map(|l| (l.path.as_str(), l)).collect();
    let mut out = Vec::new();
    for (path, n) in &new_map {
        match old_map.get(path) {
            Some(o) if o.value == n.value => {}
            Some(o) => out.push(LeafChange {
                path: path.to_string(),
                old: Some(o.value.clone()),
                new: Some(n.value.clone()),
                origin: n.origin.clone(),
            }),
            None => out.push(LeafChange { path: path.to_string(), old: None, new: Some(n.value.clone()), origin: n.origin.clone() }),
        }
    }
    for (path, o) in &old_map {
        if !new_map.contains_key(path) {
            out.push(LeafChange { path: path.to_string(), old: Some(o.value.clone()), new: None, origin: o.origin.clone() });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    #[test]
    fn leaves_ignore_order_comments_and_layout() {
        let a = load_str("b: 1\na:\n  x: [1, 2]\n  y: {}\n", "a.yaml").unwrap();
        let b = load_str("# comment\na: {y: {}, x: [1,   2]}\n\nb: 1\n", "b.yaml").unwrap();
        assert_eq!(leaves_digest(&leaves(&a)), leaves_digest(&leaves(&b)));
        let paths: Vec<String> = leaves(&a).into_iter().map(|l| l.path).collect();
        assert_eq!(paths, ["a.x.0", "a.x.1", "a.y", "b"]);
        assert_eq!(leaves(&a)[3].origin, "a.yaml:1:1");
    }

    #[test]
    fn the_tree_digest_is_the_digest_of_the_leaves() {
        // Equal by construction is not enough: every cached plan key depends on it.
        let texts = [
            "b: 1\na:\n  x: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n  y: {}\n  a-c: 'q\"uote'\n  a: [[], {}, null, 1.5, true]\n'a.x': dup\n",
            "{}",
            "[]",
            "x",
        ];
        for text in texts {
            let doc = load_str(text, "t.yaml").unwrap();
            assert_eq!(tree_digest(&doc), leaves_digest(&leaves(&doc)), "{text}");
        }
        let defaults =
            crate::yaml::load_file(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates/values/defaults.yaml")))
                .unwrap();
        assert!(leaves(&defaults).len() > 200, "{}", leaves(&defaults).len());
        assert_eq!(tree_digest(&defaults), leaves_digest(&leaves(&defaults)));
    }

    #[test]
    fn diffs_name_paths_old_new_and_origin() {
        let a = leaves(&load_str("x: 1\ny: a\nz: true\n", "a.yaml").unwrap());
        let b = leaves(&load_str("x: 2\ny: a\nw: null\n", "b.yaml").unwrap());
        let d = diff_leaves(&a, &b);
        assert_eq!(d.len(), 3);
        assert_eq!((d[0].path.as_str(), d[0].old.as_deref(), d[0].new.as_deref()), ("w", None, Some("null")));
        assert_eq!(
            (d[1].path.as_str(), d[1].old.as_deref(), d[1].new.as_deref(), d[1].origin.as_str()),
            ("x", Some("1"), Some("2"), "b.yaml:1:1")
        );
        assert_eq!((d[2].path.as_str(), d[2].new.as_deref()), ("z", None));
    }

    #[test]
    fn keys_depend_on_kind_and_every_input() {
        let mut i = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let k = node_key("plan", &i);
        assert_ne!(k, node_key("run", &i));
        i.insert("b".into(), String::new());
        assert_ne!(k, node_key("plan", &i));
        let shifted = BTreeMap::from([("a1".to_string(), String::new())]);
        assert_ne!(node_key("plan", &BTreeMap::from([("a".to_string(), "1".to_string())])), node_key("plan", &shifted));
    }
}
