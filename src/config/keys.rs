//! Typo detection: scenario keys that the defaults do not know.
//!
//! The defaults file is the schema. A scenario key absent from it is reported when it is
//! a near miss of a sibling defaults key (`replcas` → `replicas`, `modle` → `model`).
//! Other new keys are allowed without a word, as upstream allows them: blocks such as
//! `vllmCommon.flags` or `annotations` are open-ended by design, and upstream scenarios
//! carry top-level keys (`workDir`, `timeouts`) that its CLI reads.
//! Keys of a `common:` block are known when the root or any deploy-method section of
//! the defaults has them.

use crate::error::{Warnings, did_you_mean};
use crate::yaml::Node;

use super::Scenario;
use super::expand::{METHOD_SECTIONS, hoist_modelservice};

/// Warns about unknown keys in the `shared:` block and every stack.
pub fn warn_unknown_keys(defaults: &Node, scenario: &Scenario, warnings: &mut Warnings) {
    let mut layers = vec![("shared".to_string(), scenario.shared.clone())];
    layers.extend(scenario.stacks.iter().map(|(n, s)| (n.clone(), s.clone())));
    for (label, mut layer) in layers {
        let Some(map) = layer.as_map_mut() else { continue };
        map.shift_remove("name");
        let common = map.shift_remove("common");
        hoist_modelservice(&mut layer);
        if let Some(nested) = layer.get_path_mut(&["common"]).and_then(|n| n.as_map_mut()).map(std::mem::take) {
            check_common(&Node::map(nested), defaults, &label, warnings);
            layer.as_map_mut().expect("mapping").shift_remove("common");
        }
        if let Some(common) = common {
            check_common(&common, defaults, &label, warnings);
        }
        walk(&layer, defaults, &mut Vec::new(), &label, warnings);
    }
}

fn check_common(common: &Node, defaults: &Node, label: &str, warnings: &mut Warnings) {
    let Some(map) = common.as_map() else { return };
    let mut known: Vec<&str> = defaults.as_map().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    for section in METHOD_SECTIONS {
        if let Some(m) = defaults.get(section).and_then(Node::as_map) {
            known.extend(m.keys().map(String::as_str));
        }
    }
    for (key, value) in map {
        if known.contains(&key.as_str()) {
            continue;
        }
        let hint = did_you_mean(key, known.iter().copied()).map(|s| format!("; did you mean 'common.{s}'?")).unwrap_or_default();
        warnings.push_at(&value.origin, format!("[{label}] unknown key 'common.{key}' (not in defaults){hint}"));
    }
}

fn walk(layer: &Node, defaults: &Node, path: &mut Vec<String>, label: &str, warnings: &mut Warnings) {
    let (Some(layer_map), Some(default_map)) = (layer.as_map(), defaults.as_map()) else { return };
    if default_map.is_empty() {
        return;
    }
    for (key, value) in layer_map {
        match default_map.get(key) {
            Some(d) => {
                if d.as_map().is_some_and(|m| !m.is_empty()) {
                    path.push(key.clone());
                    walk(value, d, path, label, warnings);
                    path.pop();
                }
            }
            None => {
                let dotted = path.iter().chain(std::iter::once(key)).cloned().collect::<Vec<_>>().join(".");
                if let Some(s) = did_you_mean(key, default_map.keys().map(String::as_str)) {
                    let intended = path.iter().map(String::as_str).chain(std::iter::once(s)).collect::<Vec<_>>().join(".");
                    warnings
                        .push_at(&value.origin, format!("[{label}] unknown key '{dotted}' (not in defaults); did you mean '{intended}'?"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    #[test]
    fn near_misses_and_top_level_unknowns() {
        let defaults =
            load_str("decode: {replicas: 1, flags: {a: 1}, parallelism: {}}\nmodel: {name: x}\nlabels: {}\n", "defaults.yaml").unwrap();
        let scenario = Scenario {
            file: "s.yaml".into(),
            name: "s".into(),
            shared: load_str("modle: {name: y}\n", "s.yaml").unwrap(),
            stacks: vec![(
                "one".into(),
                load_str(
                    "name: one\ndecode: {replcas: 2, flags: {newflag: 1}}\nlabels: {anything: 1}\nworkDir: x\ncommon: {model: {name: z}, parallelism: {tensor: 2}, paralelism: 1}\n",
                    "s.yaml",
                )
                .unwrap(),
            )],
        };
        let mut w = Warnings::default();
        warn_unknown_keys(&defaults, &scenario, &mut w);
        let text: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].contains("'modle'") && text[0].contains("did you mean 'model'"), "{text:?}");
        assert!(!text.iter().any(|t| t.contains("workDir")), "{text:?}");
        assert!(text[1].contains("'common.paralelism'") && text[1].contains("'common.parallelism'"), "{text:?}");
        assert!(
            text[2].contains("'decode.replcas'") && text[2].contains("'decode.replicas'") && text[2].starts_with("s.yaml:2:"),
            "{text:?}"
        );
    }
}
