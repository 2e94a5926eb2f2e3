//! Scenario authoring conveniences, expanded before merging: the `common:` block and
//! sections nested under `modelservice:`.

use crate::error::InputError;
use crate::yaml::{Mapping, Node, Value};

use super::merge::{merge_into, merged};

/// Sections describing one deploy method; `common:` seeds keys they own (per defaults).
pub const METHOD_SECTIONS: &[&str] = &["decode", "prefill", "standalone", "fma"];
/// `enabled` switches a method on; broadcasting it would enable every method.
const COMMON_NOT_INHERITED: &[&str] = &["enabled"];
/// Renames between the shared spelling and the per-method one.
const COMMON_ALIASES: &[(&[&str], (&str, &str))] = &[(&["images", "vllmOpenai"], ("standalone", "image"))];
/// Sections a scenario may nest under `modelservice:`; templates read them top-level.
const MODELSERVICE_HOISTED: &[&str] =
    &["common", "gateway", "router", "routing", "httpRoute", "inferenceExtension", "prefill", "decode", "multinode"];

/// Expands a scenario layer's `common:` block: it is merged into the layer's root, and
/// (when `defaults` is given) seeded into the per-method sections that own each key in
/// defaults — unless the layer sets that key for the method itself.
pub fn expand_common(layer: &Node, defaults: Option<&Node>) -> Result<Node, InputError> {
    let mut result = layer.clone();
    let Some(map) = result.as_map_mut() else { return Ok(result) };
    let Some(common) = map.shift_remove("common") else { return Ok(result) };
    if common.is_null() {
        return Ok(result);
    }
    let Some(common_map) = common.as_map() else {
        return Err(InputError::at(&common.origin, format!("'common' must be a mapping, not a {}", common.type_name())));
    };
    if let Some(defaults) = defaults {
        for (key, value) in common_map {
            for section in owning_sections(defaults, key) {
                let Some(block) = result.ensure_map(section) else { continue };
                let block_map = block.as_map_mut().expect("ensure_map returns mappings");
                if block_map.contains_key(key) {
                    continue;
                }
                let mut inherited = value.clone();
                if let (Some(allowed), Some(inh)) =
                    (defaults.get_path(&[section, key.as_str()]).and_then(Node::as_map), inherited.as_map_mut())
                {
                    inh.retain(|k, _| allowed.contains_key(k));
                    if inh.is_empty() {
                        continue;
                    }
                }
                block_map.insert(key.clone(), inherited);
            }
        }
        for (source, (section, key)) in COMMON_ALIASES {
            let Some(shared) = common.get_path(source).and_then(Node::as_map) else { continue };
            let Some(block) = result.ensure_map(section) else { continue };
            let block_map = block.as_map_mut().expect("mapping");
            if block_map.contains_key(*key) {
                continue;
            }
            let allowed = defaults.get_path(&[*section, *key]).and_then(Node::as_map);
            let filtered: Mapping = shared
                .iter()
                .filter(|(k, _)| allowed.is_none_or(|a| a.is_empty() || a.contains_key(*k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            block_map.insert(key.to_string(), Node::new(Value::Map(filtered), common.origin.clone()));
        }
    }
    Ok(merged(&result, &common))
}

fn owning_sections<'a>(defaults: &Node, key: &str) -> Vec<&'a str> {
    if COMMON_NOT_INHERITED.contains(&key) {
        return Vec::new();
    }
    METHOD_SECTIONS.iter().copied().filter(|s| defaults.get(s).and_then(Node::as_map).is_some_and(|m| m.contains_key(key))).collect()
}

/// Lifts `modelservice.{gateway,router,...}` to the top level; the nested spelling wins.
pub fn hoist_modelservice(config: &mut Node) {
    let Some(ms) = config.get_path_mut(&["modelservice"]).and_then(Node::as_map_mut) else { return };
    let mut lifted = Vec::new();
    for key in MODELSERVICE_HOISTED {
        if let Some(nested) = ms.shift_remove(*key) {
            lifted.push((*key, nested));
        }
    }
    let Some(root) = config.as_map_mut() else { return };
    for (key, nested) in lifted {
        let mut base = match root.get(key) {
            Some(existing) if existing.as_map().is_some() => existing.clone(),
            _ => Node::new(Value::Map(Mapping::new()), nested.origin.clone()),
        };
        if nested.as_map().is_some() {
            merge_into(&mut base, &nested);
        }
        root.insert(key.to_string(), base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    fn y(s: &str) -> Node {
        load_str(s, "t").unwrap()
    }

    #[test]
    fn common_seeds_owning_sections_and_merges_to_root() {
        let defaults = y(
            "decode: {acceleratorType: {labelKey: k, labelValue: v}, replicas: 1}\nstandalone: {acceleratorType: {}, image: {repository: r, tag: t}}\nprefill: {replicas: 0}\n",
        );
        let layer = y(
            "common:\n  acceleratorType: {labelValue: H100, extra: 1}\n  replicas: 3\n  enabled: true\n  images: {vllmOpenai: {repository: myrepo, tag: v1, junk: 2}}\ndecode: {replicas: 5}\n",
        );
        let out = expand_common(&layer, Some(&defaults)).unwrap();
        assert_eq!(out.get_path(&["decode", "replicas"]).unwrap().as_i64(), Some(5), "explicit per-method wins");
        assert_eq!(out.get_path(&["prefill", "replicas"]).unwrap().as_i64(), Some(3));
        assert_eq!(out.get_path(&["decode", "acceleratorType"]).unwrap(), &y("{labelValue: H100}"), "only keys the section models");
        assert!(out.get_path(&["standalone", "acceleratorType"]).is_none(), "an empty default block models no keys");
        assert_eq!(out.get_path(&["standalone", "image"]).unwrap(), &y("{repository: myrepo, tag: v1}"));
        assert!(out.get_path(&["decode", "enabled"]).is_none());
        assert_eq!(out.get("replicas").unwrap().as_i64(), Some(3), "common also lands at the root");
        assert!(out.get("common").is_none());
    }

    #[test]
    fn common_must_be_a_mapping() {
        assert!(expand_common(&y("common: 5"), None).is_err());
    }

    #[test]
    fn hoisting_nested_wins() {
        let mut c = y("router: {a: 1, b: 1}\nmodelservice: {enabled: true, router: {b: 2}, decode: {replicas: 2}}\n");
        hoist_modelservice(&mut c);
        assert_eq!(c, y("router: {a: 1, b: 2}\nmodelservice: {enabled: true}\ndecode: {replicas: 2}\n"));
    }
}
