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
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::pyfmt::json_float(*f),
        Value::Str(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Seq(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
    }
}

/// The leaves of a tree, sorted by path: list items are indexed (`args.0`), empty
/// containers are leaves. Key order and formatting of the source do not matter.
pub fn leaves(node: &Node) -> Vec<Leaf> {
    fn walk(node: &Node, path: &mut String, out: &mut Vec<Leaf>) {
        let len = path.len();
        match &node.value {
            Value::Map(m) if !m.is_empty() => {
                for (k, v) in m {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(v, path, out);
                    path.truncate(len);
                }
            }
            Value::Seq(items) if !items.is_empty() => {
                for (i, v) in items.iter().enumerate() {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&i.to_string());
                    walk(v, path, out);
                    path.truncate(len);
                }
            }
            _ => out.push(Leaf { path: path.clone(), value: canonical(node), origin: node.origin.to_string() }),
        }
    }
    let mut out = Vec::new();
    walk(node, &mut String::new(), &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
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
