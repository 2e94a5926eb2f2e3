//! Resource identity: the hashed `model_id_label` and per-stack name suffixing.

use crate::yaml::{Node, Value};

pub use crate::jinja::filters::model_id_label;

/// Shipped default names that collide when several stacks share a namespace; rewritten
/// to `<default>-<model_id_label>` when a scenario has two or more stacks and the value
/// is still the default.
pub const STACK_SCOPED_DEFAULTS: &[(&[&str], &str)] = &[
    (&["downloadJob", "name"], "download-model"),
    (&["router", "monitoring", "secretName"], "inference-gateway-sa-metrics-reader-secret"),
];

/// Applies [`STACK_SCOPED_DEFAULTS`] (only for multi-stack scenarios).
pub fn suffix_stack_scoped_names(config: &mut Node, total_stacks: usize) {
    if total_stacks < 2 {
        return;
    }
    let label = match config.get("model_id_label").and_then(Node::as_str) {
        Some(l) if !l.is_empty() => l.to_string(),
        _ => return,
    };
    for (path, default) in STACK_SCOPED_DEFAULTS {
        if let Some(node) = config.get_path_mut(path)
            && node.as_str() == Some(default)
        {
            node.value = Value::Str(format!("{default}-{label}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    #[test]
    fn matches_upstream_rule() {
        // Expected values computed once with upstream's Python rule (hashlib.sha256).
        assert_eq!(model_id_label("Qwen/Qwen3-0.6B", "llmdbench"), "qwen-qwe-07df2612-en3-0-6b");
        assert_eq!(model_id_label("meta-llama/Llama-3.1-8B-Instruct", "llmdbench"), "meta-lla-f1a1d196-instruct");
        assert_eq!(model_id_label("facebook/opt-125m", ""), "facebook-9292afac-opt-125m");
        assert_eq!(model_id_label("a", "ns"), "a-09ac74bb-a");
    }

    #[test]
    fn suffixing_only_for_multi_stack_defaults() {
        let base = load_str("model_id_label: lbl\ndownloadJob: {name: download-model}\nrouter: {monitoring: {secretName: custom}}\n", "t")
            .unwrap();
        let mut one = base.clone();
        suffix_stack_scoped_names(&mut one, 1);
        assert_eq!(one, base);
        let mut two = base.clone();
        suffix_stack_scoped_names(&mut two, 2);
        assert_eq!(two.get_path(&["downloadJob", "name"]).unwrap().as_str(), Some("download-model-lbl"));
        assert_eq!(two.get_path(&["router", "monitoring", "secretName"]).unwrap().as_str(), Some("custom"));
    }
}
