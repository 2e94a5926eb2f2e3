//! Backends deploy a stack's plan somewhere and remove exactly what they deployed.
//!
//! Every standup leaves a [`Receipt`] (in `<workspace>/receipts/<stack>.json`) naming what
//! was created and the plan hash it was created from; liveness checks and teardown work
//! from receipts alone, never by re-deriving names from the configuration.
//!
//! * [`local`] — each stack replica is a process on this machine: the built-in simulator
//!   (`llmd sim`) or a configured command such as `vllm serve`.

pub mod local;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::yaml::Node;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    /// blake3 of the stack's rendered plan (manifests and config).
    pub plan_hash: String,
}

/// One started replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReceipt {
    pub pid: u32,
    /// Process start time (clock ticks since boot), guarding against pid reuse.
    pub start_ticks: u64,
    pub port: u16,
    pub command: Vec<String>,
    pub log: PathBuf,
}

/// What a standup created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub version: u32,
    pub stack: String,
    pub backend: String,
    pub plan_hash: String,
    pub model: String,
    pub created_unix: u64,
    pub replicas: Vec<ReplicaReceipt>,
}

impl Receipt {
    pub const VERSION: u32 = 1;

    /// The URL clients use (the first replica).
    pub fn endpoint(&self) -> Option<String> {
        self.replicas.first().map(|r| format!("http://127.0.0.1:{}", r.port))
    }

    pub fn path(workspace: &Path, stack: &str) -> PathBuf {
        workspace.join("receipts").join(format!("{stack}.json"))
    }

    /// Writes the receipt atomically (temp file, fsync, rename).
    pub fn save(&self, workspace: &Path) -> Result<PathBuf> {
        let path = Self::path(workspace, &self.stack);
        crate::util::fs::write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }

    pub fn load(workspace: &Path, stack: &str) -> Result<Option<Receipt>> {
        let path = Self::path(workspace, stack);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("{} is not a valid receipt", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Every receipt in the workspace.
    pub fn load_all(workspace: &Path) -> Result<Vec<Receipt>> {
        let dir = workspace.join("receipts");
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(out) };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stack) = name.strip_suffix(".json")
                && let Some(r) = Self::load(workspace, stack)?
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.stack.cmp(&b.stack));
        Ok(out)
    }

    pub fn remove(workspace: &Path, stack: &str) -> Result<()> {
        match std::fs::remove_file(Self::path(workspace, stack)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether a receipt still describes a running deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Live,
    /// Some or all of it is gone.
    Gone(String),
    /// Running, but from a different plan.
    Drifted(String),
}

/// A place stacks can be deployed to.
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Starts the stack and waits until it serves.
    fn standup<'a>(&'a self, target: &'a StackTarget, log_dir: &'a Path) -> BoxFuture<'a, Result<Receipt>>;
    /// Checks a receipt against what is running.
    fn check<'a>(&'a self, receipt: &'a Receipt, plan_hash: Option<&'a str>) -> BoxFuture<'a, Liveness>;
    /// Removes what the receipt lists.
    fn teardown<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<()>>;
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

/// Reads a [`StackTarget`] from a stack's rendered config (`local.*`, `model.*`, and the
/// replica count of the enabled deploy method).
/// Config paths a [`StackTarget`] is read from (prefixes end with `.`).
pub const TARGET_PATHS: &[&str] =
    &["local.", "model.name", "model.maxModelLen", "standalone.enabled", "standalone.replicas", "modelservice.enabled", "decode.replicas"];

pub fn target_from_config(name: &str, config: &Node, plan_hash: &str) -> Result<StackTarget> {
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
        plan_hash: plan_hash.to_string(),
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
        let t = target_from_config("s", &c, "h").unwrap();
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
        assert!(matches!(target_from_config("s", &c, "h").unwrap().server, ServerSpec::Command { .. }));
        let c = load_str("model: {name: m}\nlocal: {server: docker}\n", "c").unwrap();
        assert!(target_from_config("s", &c, "h").is_err());
    }
}
