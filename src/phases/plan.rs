//! The plan executor: a rendered stack as every later node sees it.
//!
//! Rendering itself is `render::render_plan` (phase commands) or the salsa planner
//! (`llmd build`); both hand their output to [`StackPlan::new`], which derives the plan
//! digest and the backend target once, and [`StackPlan::outputs`] is what a plan node
//! stores.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::backend::{StackTarget, standup_manifests, target_from_config};
use crate::yaml::Node;

/// One stack's rendered plan.
#[derive(Clone, Debug)]
pub struct StackPlan {
    pub name: String,
    /// Manifests: file name → text.
    pub files: Vec<(String, String)>,
    /// The stack's rendered config (after templates ran) and its YAML.
    pub config: Node,
    pub config_yaml: String,
    /// [`plan_digest`] of the manifests and config.
    pub plan_digest: String,
    pub target: StackTarget,
}

impl StackPlan {
    pub fn new(name: &str, mut files: Vec<(String, String)>, config: Node, config_yaml: String) -> Result<StackPlan> {
        let target = target_from_config(name, &config)?.with_manifests(standup_manifests(&files));
        files.extend(helm_commands_file(&target)?);
        let plan_digest = plan_digest(&files, &config_yaml);
        Ok(StackPlan { name: name.to_string(), files, config, config_yaml, plan_digest, target })
    }

    /// What a plan node stores: every manifest and `config.yaml` as `file:<name>`
    /// (copied into the workspace), `config.yaml` for later nodes, and the target.
    pub fn outputs(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for (name, text) in &self.files {
            out.insert(format!("file:{name}"), text.clone().into_bytes());
        }
        out.insert("file:config.yaml".into(), self.config_yaml.clone().into_bytes());
        out.insert("config.yaml".into(), self.config_yaml.clone().into_bytes());
        out.insert("target".into(), serde_json::to_vec(&self.target)?);
        Ok(out)
    }
}

/// The plan file listing the helm commands a kube standup runs ([`helm_commands_file`]).
/// It lives in the stack's `helm/` directory, where upstream's plan also keeps what it
/// derives from the helmfiles, so the rendered files equal upstream's one for one.
pub const HELM_COMMANDS: &str = "helm/helm-commands.txt";

/// `helm-commands.txt` for a plan that installs helm releases, so the plan shows what a
/// standup will run; derived from the helmfiles, so not part of the plan digest.
pub fn helm_commands_file(target: &StackTarget) -> Result<Option<(String, String)>> {
    Ok(crate::backend::releases::helm_commands(target)?.map(|text| (HELM_COMMANDS.to_string(), text)))
}

/// blake3 over a stack's rendered files (sorted by name, length-prefixed; not the
/// derived [`HELM_COMMANDS`]) and config: the identity of a rendered plan, recorded in
/// receipts.
pub fn plan_digest(files: &[(String, String)], config_yaml: &str) -> String {
    let mut h = blake3::Hasher::new();
    let mut sorted: Vec<&(String, String)> = files.iter().filter(|(name, _)| name != HELM_COMMANDS).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, content) in sorted {
        for part in [name.as_bytes(), content.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    h.update(b"config.yaml");
    h.update(config_yaml.as_bytes());
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_digest_is_order_independent_and_content_sensitive() {
        let a = vec![("a.yaml".to_string(), "x".to_string()), ("b.yaml".to_string(), "y".to_string())];
        let b = vec![a[1].clone(), a[0].clone()];
        assert_eq!(plan_digest(&a, "c"), plan_digest(&b, "c"));
        assert_ne!(plan_digest(&a, "c"), plan_digest(&a, "d"));
        let shifted = vec![("a.yamlx".to_string(), String::new()), ("b.yaml".to_string(), "y".to_string())];
        assert_ne!(plan_digest(&a, "c"), plan_digest(&shifted, "c"));
    }
}
