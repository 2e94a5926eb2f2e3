//! Workload profiles: `workload/profiles/<harness>/<name>.yaml.in` files in each harness's
//! native format, with upstream's conventions:
//!
//! * `REPLACE_ENV_<KEY>` placeholders are replaced by plain text substitution (not
//!   Jinja): `REPLACE_ENV_LLMDBENCH_DEPLOY_CURRENT_MODEL`, `..._HARNESS_STACK_ENDPOINT_URL`,
//!   `..._MAX_MODEL_LEN`, ...; unknown placeholders are left as they are.
//! * Treatment overrides are dotted keys applied to the parsed YAML. Integer segments
//!   index lists (`load.stages.0.rate`); the parent must exist, the leaf may be new;
//!   string values are coerced to bool/int/float as YAML would read them. Keys that match
//!   nothing are reported, with a hint when they look like scenario keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::error::Warnings;
use crate::util::embedded;
use crate::yaml::{DumpOptions, Node, Value, dump, load_str};

/// Finds a workload profile: `name` itself when it is a file (a path), else
/// `<root>/workload/profiles/<harness>/<name>` (with or without `.in`, `.yaml`) in each of
/// `roots` in order, then in the tree built into llmd (unpacked on first use).
pub fn find_profile(roots: &[PathBuf], harness: &str, name: &str) -> Result<PathBuf> {
    let direct = Path::new(name);
    if direct.is_file() {
        return Ok(direct.to_path_buf());
    }
    let candidates = [name.to_string(), format!("{name}.in"), format!("{name}.yaml.in"), format!("{name}.yaml")];
    let rel_dir = Path::new("workload").join("profiles").join(harness);
    for root in roots {
        for candidate in &candidates {
            let p = root.join(&rel_dir).join(candidate);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    for candidate in &candidates {
        let rel = format!("workload/profiles/{harness}/{candidate}");
        if embedded::file(&rel).is_some() {
            return Ok(embedded::root()?.join(rel));
        }
    }
    let mut available: Vec<String> = roots
        .iter()
        .flat_map(|root| std::fs::read_dir(root.join(&rel_dir)).into_iter().flatten().flatten())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .chain(embedded::files().iter().filter_map(|(p, _)| p.strip_prefix(&format!("workload/profiles/{harness}/")).map(str::to_string)))
        .filter(|n| !n.starts_with('.') && !n.contains('/'))
        .map(|n| n.trim_end_matches(".in").to_string())
        .collect();
    available.sort();
    available.dedup();
    let searched: Vec<String> = roots
        .iter()
        .map(|r| r.join(&rel_dir).display().to_string())
        .chain([format!("{}{}", embedded::PREFIX, rel_dir.display())])
        .collect();
    bail!(
        "workload profile '{name}' not found for harness '{harness}' (searched {}){}",
        searched.join(", "),
        if available.is_empty() { String::new() } else { format!("; available: {}", available.join(", ")) }
    )
}

/// Replaces `REPLACE_ENV_<KEY>` tokens whose key has a non-empty value.
pub fn substitute_placeholders(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("REPLACE_ENV_") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "REPLACE_ENV_".len()..];
        let key_len = after.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(after.len());
        let key = &after[..key_len];
        match values.get(key).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[i..i + "REPLACE_ENV_".len() + key_len]),
        }
        rest = &after[key_len..];
    }
    out.push_str(rest);
    out
}

/// Scenario-looking prefixes: an override with one of these almost certainly belongs in a
/// setup treatment, not a run treatment.
const SCENARIO_PREFIXES: &[&str] = &["decode.", "prefill.", "router.", "model.", "vllmCommon.", "standalone.", "modelservice.", "gateway."];

/// Applies dotted overrides to a parsed profile.
pub fn apply_overrides(doc: &mut Node, overrides: &[(String, Node)], source: &str, warnings: &mut Warnings) {
    for (key, value) in overrides {
        let segments: Vec<&str> = key.split('.').collect();
        match set_dotted(doc, &segments, value.clone()) {
            Ok(()) => {}
            Err(why) => {
                let hint = if SCENARIO_PREFIXES.iter().any(|p| key.starts_with(p)) {
                    " (this looks like a scenario key: put it in setup.treatments, not treatments)"
                } else {
                    ""
                };
                warnings.push(format!("{source}: override '{key}' does not apply to the profile: {why}{hint}"));
            }
        }
    }
}

fn coerce(value: Node) -> Node {
    match &value.value {
        Value::Str(s) => match crate::yaml::scalar::resolve_plain(s) {
            v @ (Value::Bool(_) | Value::Int(_) | Value::Float(_)) => Node::new(v, value.origin),
            _ => value,
        },
        _ => value,
    }
}

fn set_dotted(node: &mut Node, path: &[&str], value: Node) -> Result<(), String> {
    let (head, rest) = path.split_first().ok_or("empty key")?;
    match &mut node.value {
        Value::Map(m) => {
            if rest.is_empty() {
                m.insert((*head).to_string(), coerce(value));
                Ok(())
            } else {
                let child = m.get_mut(*head).ok_or_else(|| format!("'{head}' does not exist"))?;
                set_dotted(child, rest, value)
            }
        }
        Value::Seq(items) => {
            let idx: usize = head.parse().map_err(|_| format!("'{head}' is not a list index"))?;
            let len = items.len();
            let child = items.get_mut(idx).ok_or_else(|| format!("index {idx} is out of range (the list has {len} items)"))?;
            if rest.is_empty() {
                *child = coerce(value);
                Ok(())
            } else {
                set_dotted(child, rest, value)
            }
        }
        other => Err(format!("'{head}' is inside a {}, not a mapping or list", other.type_name())),
    }
}

/// Renders a profile's text (placeholders already substituted): parses it, applies the
/// treatment's overrides, and returns the document and its YAML (keys in file order);
/// `label` names it in errors.
pub fn render_profile_text(text: &str, label: &str, overrides: &[(String, Node)], warnings: &mut Warnings) -> Result<(Node, String)> {
    let mut doc = load_str(text, label).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !overrides.is_empty() {
        apply_overrides(&mut doc, overrides, label, warnings);
    }
    let yaml = dump(&doc, DumpOptions { sort_keys: false, literal_multiline: false });
    Ok((doc, yaml))
}

/// A parsed profile document as a [`LoadProfile`].
pub fn parse_native_profile(node: &crate::yaml::Node, source: &str) -> anyhow::Result<super::LoadProfile> {
    let profile: super::LoadProfile = serde_json::from_value(node.to_json())
        .map_err(|e| crate::error::InputError::new(format!("{source}: invalid native profile: {e}")))?;
    profile.validate().map_err(|e| crate::error::InputError::new(format!("{source}: {e}")))?;
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut v = BTreeMap::new();
        v.insert("LLMDBENCH_DEPLOY_CURRENT_MODEL".to_string(), "Qwen/Qwen3-0.6B".to_string());
        v.insert("EMPTY".to_string(), String::new());
        assert_eq!(
            substitute_placeholders(
                "model: REPLACE_ENV_LLMDBENCH_DEPLOY_CURRENT_MODEL\nx: REPLACE_ENV_UNKNOWN_KEY\ny: REPLACE_ENV_EMPTY",
                &v
            ),
            "model: Qwen/Qwen3-0.6B\nx: REPLACE_ENV_UNKNOWN_KEY\ny: REPLACE_ENV_EMPTY"
        );
    }

    #[test]
    fn dotted_overrides_index_lists_and_coerce() {
        let mut doc =
            load_str("load:\n  stages:\n  - {rate: 1, duration: 10}\n  - {rate: 2, duration: 10}\napi: {streaming: true}\n", "p").unwrap();
        let mut w = Warnings::default();
        apply_overrides(
            &mut doc,
            &[
                ("load.stages.1.rate".into(), Node::str("8")),
                ("api.new".into(), Node::str("true")),
                ("load.stages.5.rate".into(), Node::str("1")),
                ("nope.x".into(), Node::str("1")),
                ("decode.replicas".into(), Node::str("2")),
            ],
            "p",
            &mut w,
        );
        assert_eq!(doc.get_path(&["load", "stages"]).unwrap().as_seq().unwrap()[1].get("rate").unwrap().as_i64(), Some(8));
        assert_eq!(doc.get_path(&["api", "new"]).unwrap().as_bool(), Some(true));
        let text: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].contains("out of range"));
        assert!(text[2].contains("setup.treatments"));
    }
}
