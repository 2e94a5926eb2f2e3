//! What a backend stands up, read from a stack's rendered config.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::yaml::Node;

/// What a stack's model server is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerSpec {
    /// `llmd sim` with these extra flags.
    Sim { flags: Vec<String> },
    /// An argument vector; `{port}`, `{host}` and `{model}` are substituted.
    Command { argv: Vec<String> },
}

/// Everything a backend needs to stand a stack up, read from its rendered config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackTarget {
    pub name: String,
    pub model: String,
    pub max_model_len: Option<u64>,
    pub replicas: usize,
    pub server: ServerSpec,
    pub host: String,
    pub ready_timeout_s: u64,
    /// The plan's Kubernetes manifests (see [`standup_manifests`]): what a cluster
    /// backend applies at standup, and the harness pod it creates per run; empty when
    /// the target was read from a config alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Manifest>,
    /// The secret values the manifests hold placeholders for (`config::secret`); in
    /// memory only, so never in a cached target.
    #[serde(skip)]
    pub secrets: crate::config::secret::Secrets,
}

/// One rendered manifest file of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub file: String,
    pub text: String,
}

impl StackTarget {
    /// Digest of the target, an input of the standup key. Its encoding is frozen: the
    /// JSON of version 1 targets, which carried an always-empty `plan_hash` field, so
    /// deployments cached before the field was dropped keep their keys.
    pub fn digest(&self) -> String {
        // Manifests are a cluster backend's input, digested by it (`manifests_digest`).
        let bare = StackTarget { manifests: Vec::new(), ..self.clone() };
        let mut json = serde_json::to_string(&bare).unwrap_or_default();
        json.pop();
        json.push_str(",\"plan_hash\":\"\"}");
        crate::util::digest::digest(json.as_bytes())
    }

    /// blake3 over the manifests a standup applies (file names and texts,
    /// length-prefixed, in plan order) — not the harness pod, which runs create.
    pub fn manifests_digest(&self) -> String {
        Self::digest_of(self.deployed())
    }

    /// blake3 over the helmfiles and values files (as [`Self::manifests_digest`]);
    /// `None` when the plan installs no helm release.
    pub fn releases_digest(&self) -> Option<String> {
        let mut helm = self.manifests.iter().filter(|m| !m.is_object()).peekable();
        helm.peek()?;
        Some(Self::digest_of(helm))
    }

    fn digest_of<'a>(manifests: impl Iterator<Item = &'a Manifest>) -> String {
        let mut h = blake3::Hasher::new();
        for m in manifests {
            for part in [m.file.as_bytes(), m.text.as_bytes()] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// The object manifests a standup applies: all but the harness pod and the helm
    /// files (see [`super::releases`]).
    pub fn deployed(&self) -> impl Iterator<Item = &Manifest> {
        self.manifests.iter().filter(|m| !m.is_harness_pod() && m.is_object())
    }

    /// The harness pod's manifest, if the plan renders one.
    pub fn harness_pod(&self) -> Option<&Manifest> {
        self.manifests.iter().find(|m| m.is_harness_pod())
    }

    pub fn with_secrets(mut self, secrets: crate::config::secret::Secrets) -> StackTarget {
        self.secrets = secrets;
        self
    }

    pub fn with_manifests(mut self, manifests: Vec<Manifest>) -> StackTarget {
        self.manifests = manifests;
        self
    }
}

impl Manifest {
    /// The harness pod (`20_harness_pod.yaml`) is created per run, not at standup.
    pub fn is_harness_pod(&self) -> bool {
        self.file.contains("harness_pod")
    }

    /// Kubernetes objects (not a helmfile or a values file).
    pub fn is_object(&self) -> bool {
        is_object_file(&self.text)
    }
}

/// The files of a rendered plan a cluster backend works from, sorted by name: every
/// file whose documents are all Kubernetes objects (`apiVersion` and `kind` at the
/// top) — what a standup applies, plus the harness pod, which runs create per
/// treatment ([`StackTarget::deployed`] and [`StackTarget::harness_pod`] tell them
/// apart) — and the helmfiles that install releases with the values files they name
/// ([`super::releases`]).
pub fn standup_manifests(files: &[(String, String)]) -> Vec<Manifest> {
    let helmfiles: Vec<&(String, String)> =
        files.iter().filter(|(file, text)| file.contains("helmfile") && text.contains("releases:")).collect();
    // Values files a helmfile names (a line scan: `  - 13_ms-values.yaml`).
    let named = |file: &str| helmfiles.iter().any(|(_, text)| text.lines().any(|l| l.trim().strip_prefix("- ") == Some(file)));
    let mut out: Vec<Manifest> = files
        .iter()
        .filter(|(file, text)| is_object_file(text) || helmfiles.iter().any(|(f, _)| f == file) || named(file))
        .map(|(file, text)| Manifest { file: file.clone(), text: text.clone() })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// True when `text` holds at least one YAML document and every non-empty one has
/// top-level `apiVersion:` and `kind:` keys (a line scan: plans are our own output).
fn is_object_file(text: &str) -> bool {
    let mut docs = 0;
    for doc in text.split("\n---") {
        let keys: Vec<&str> = doc.lines().filter(|l| !l.starts_with([' ', '#', '-']) && !l.trim().is_empty()).collect();
        if keys.is_empty() {
            continue;
        }
        docs += 1;
        let has = |k: &str| keys.iter().any(|l| l.starts_with(k));
        if !(has("apiVersion:") && has("kind:")) {
            return false;
        }
    }
    docs > 0
}

fn camel_to_kebab(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Config paths a [`StackTarget`] is read from (prefixes end with `.`).
pub const TARGET_PATHS: &[&str] =
    &["local.", "model.name", "model.maxModelLen", "standalone.enabled", "standalone.replicas", "modelservice.enabled", "decode.replicas"];

/// Reads a [`StackTarget`] from a stack's rendered config (`local.*`, `model.*`, and the
/// replica count of the enabled deploy method).
pub fn target_from_config(name: &str, config: &Node) -> Result<StackTarget> {
    let str_at = |path: &[&str]| config.get_path(path).map(crate::yaml::str_node);
    let model = str_at(&["model", "name"]).filter(|m| !m.is_empty()).with_context(|| format!("stack '{name}' has no model.name"))?;
    let int_at = |path: &[&str]| config.get_path(path).and_then(|n| n.as_i64().or_else(|| n.as_str().and_then(|s| s.parse().ok())));
    let enabled = |section: &str| config.get_path(&[section, "enabled"]).is_some_and(Node::is_truthy);
    let replicas = if enabled("standalone") {
        int_at(&["standalone", "replicas"])
    } else if enabled("modelservice") {
        int_at(&["decode", "replicas"])
    } else {
        Some(1)
    }
    .unwrap_or(1)
    .max(1) as usize;
    let server = match str_at(&["local", "server"]).as_deref() {
        None | Some("sim") => {
            let mut flags = Vec::new();
            if let Some(sim) = config.get_path(&["local", "sim"]).and_then(Node::as_map) {
                for (k, v) in sim {
                    if v.is_null() {
                        continue;
                    }
                    match v.as_bool() {
                        Some(true) => flags.push(format!("--{}", camel_to_kebab(k))),
                        Some(false) => flags.push(format!("--{}=false", camel_to_kebab(k))),
                        None if v.as_seq().is_some() => {
                            // The simulator takes lists comma-separated.
                            flags.push(format!("--{}", camel_to_kebab(k)));
                            flags.push(v.as_seq().unwrap_or_default().iter().map(crate::yaml::str_node).collect::<Vec<_>>().join(","));
                        }
                        None => {
                            flags.push(format!("--{}", camel_to_kebab(k)));
                            flags.push(crate::yaml::str_node(v));
                        }
                    }
                }
            }
            ServerSpec::Sim { flags }
        }
        Some("command") => {
            let argv: Vec<String> = config
                .get_path(&["local", "command"])
                .and_then(Node::as_seq)
                .map(|s| s.iter().map(crate::yaml::str_node).collect())
                .unwrap_or_default();
            anyhow::ensure!(!argv.is_empty(), "stack '{name}': local.server is 'command' but local.command is empty");
            ServerSpec::Command { argv }
        }
        Some(other) => anyhow::bail!("stack '{name}': local.server must be 'sim' or 'command', not '{other}'"),
    };
    Ok(StackTarget {
        name: name.to_string(),
        model,
        max_model_len: int_at(&["model", "maxModelLen"]).map(|v| v as u64),
        replicas,
        server,
        host: str_at(&["local", "host"]).unwrap_or_else(|| "127.0.0.1".into()),
        ready_timeout_s: int_at(&["local", "readyTimeout"]).unwrap_or(120).max(1) as u64,
        manifests: Vec::new(),
        secrets: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    #[test]
    fn targets_from_config() {
        let c = load_str(
            "model: {name: Qwen/Qwen3-0.6B, maxModelLen: 4096}\nstandalone: {enabled: true, replicas: 2}\nlocal: {server: sim, sim: {timeToFirstToken: 20ms, enableKvcache: true, seed: 3, failureTypes: [server_error, rate_limit]}}\n",
            "c",
        )
        .unwrap();
        let t = target_from_config("s", &c).unwrap();
        assert_eq!(t.replicas, 2);
        assert_eq!(
            t.server,
            ServerSpec::Sim {
                flags: vec![
                    "--time-to-first-token".into(),
                    "20ms".into(),
                    "--enable-kvcache".into(),
                    "--seed".into(),
                    "3".into(),
                    "--failure-types".into(),
                    "server_error,rate_limit".into()
                ]
            }
        );
        let c = load_str("model: {name: m}\nlocal: {server: command, command: [vllm, serve, '{model}']}\n", "c").unwrap();
        assert!(matches!(target_from_config("s", &c).unwrap().server, ServerSpec::Command { .. }));
        let c = load_str("model: {name: m}\nlocal: {server: docker}\n", "c").unwrap();
        assert!(target_from_config("s", &c).is_err());
    }

    #[test]
    fn the_target_digest_is_frozen() {
        // Standup keys rest on this digest: a change re-deploys every cached stack.
        let c = load_str("model: {name: m}\nlocal: {server: sim, sim: {seed: 3}}\n", "c").unwrap();
        let t = target_from_config("s", &c).unwrap();
        let v1 = r#"{"name":"s","model":"m","max_model_len":null,"replicas":1,"server":{"kind":"sim","flags":["--seed","3"]},"host":"127.0.0.1","ready_timeout_s":120,"plan_hash":""}"#;
        assert_eq!(t.digest(), crate::util::digest::digest(v1.as_bytes()));
        let m = vec![Manifest { file: "14_x.yaml".into(), text: "kind: Pod".into() }];
        assert_eq!(t.clone().with_manifests(m).digest(), t.digest(), "manifests are not part of the target digest");
    }

    #[test]
    fn plan_manifests_are_the_object_files_and_the_harness_pod_is_set_apart() {
        let f = |n: &str, t: &str| (n.to_string(), t.to_string());
        let files = vec![
            f("15_svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n"),
            f("05_ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n---\napiVersion: v1\nkind: ServiceAccount\n"),
            f("13_ms-values.yaml", "decode:\n  replicas: 1\n"),
            f("17_podmonitor.yaml", "\n"),
            f("20_harness_pod.yaml", "apiVersion: v1\nkind: Pod\n"),
            f("10_helmfile.yaml", "releases:\n- name: x\n  values:\n  - 13_ms-values.yaml\n"),
            f("09_helmfile-empty.yaml", "\n"),
            f("12_router-values.yaml", "router: {}\n"),
        ];
        let manifests = standup_manifests(&files);
        let names: Vec<&str> = manifests.iter().map(|m| m.file.as_str()).collect();
        assert_eq!(
            names,
            ["05_ns.yaml", "10_helmfile.yaml", "13_ms-values.yaml", "15_svc.yaml", "20_harness_pod.yaml"],
            "objects, the harness pod, helmfiles with releases and the values files they name"
        );
        let c = load_str("model: {name: m}\n", "c").unwrap();
        let t = target_from_config("s", &c).unwrap().with_manifests(manifests);
        let deployed: Vec<&str> = t.deployed().map(|m| m.file.as_str()).collect();
        assert_eq!(deployed, ["05_ns.yaml", "15_svc.yaml"]);
        assert_eq!(t.harness_pod().map(|m| m.file.as_str()), Some("20_harness_pod.yaml"));
        // Editing the harness pod changes no deployment.
        let mut edited = t.clone();
        edited.manifests[4].text.push_str("metadata: {name: other}\n");
        assert_eq!(edited.manifests_digest(), t.manifests_digest());
        assert_eq!(edited.releases_digest(), t.releases_digest());
        // Editing helm values changes the releases' digest, not the objects'.
        let mut values = t.clone();
        values.manifests[2].text = "decode:\n  replicas: 2\n".into();
        assert_eq!(values.manifests_digest(), t.manifests_digest());
        assert_ne!(values.releases_digest(), t.releases_digest());
        let objects_only = t.clone().with_manifests(t.deployed().cloned().collect());
        assert_eq!(objects_only.releases_digest(), None);
    }
}
