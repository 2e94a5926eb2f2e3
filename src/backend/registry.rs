//! Choosing a backend by name. The one place backends are constructed.

use std::sync::Arc;

use anyhow::Result;

use super::Backend;
use super::kube::{KubeBackend, KubeOptions};
use super::local::LocalBackend;
use crate::error::InputError;
use crate::yaml::Node;

/// Backends this build of llmd has.
pub const NAMES: &[&str] = &["local", "kube"];

/// Options every backend may read.
#[derive(Clone, Debug, Default)]
pub struct BackendOptions {
    /// `--backend`: overrides the stacks' `backend:` key.
    pub name: Option<String>,
    /// `--non-admin`: create no cluster-scoped objects.
    pub non_admin: bool,
    /// Print waiting progress to stderr.
    pub progress: bool,
    /// The kube backend's connection and timeouts.
    pub kube: KubeOptions,
}

/// Hands out backends by name, each constructed once.
pub struct Registry {
    opts: BackendOptions,
    local: std::sync::OnceLock<Arc<LocalBackend>>,
    kube: std::sync::OnceLock<Arc<KubeBackend>>,
}

impl Registry {
    pub fn new(opts: BackendOptions) -> Registry {
        Registry { opts, local: std::sync::OnceLock::new(), kube: std::sync::OnceLock::new() }
    }

    /// The backend a stack uses: `--backend`, else its config's `backend:`, else `local`.
    pub fn name_for(&self, config: &Node) -> String {
        self.opts
            .name
            .clone()
            .or_else(|| config.get("backend").map(crate::yaml::str_node).filter(|s| !s.is_empty() && s != "None"))
            .unwrap_or_else(|| "local".into())
    }

    /// The backend a stack uses (see [`Self::name_for`]).
    pub fn for_config(&self, config: &Node) -> Result<Arc<dyn Backend>> {
        self.get(&self.name_for(config))
    }

    /// The backend named `name`; an unknown name is an input error.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Backend>> {
        match name {
            "local" => {
                if self.opts.non_admin {
                    return Err(InputError::new(
                        "--non-admin applies to cluster backends; the local backend creates no cluster-scoped objects",
                    )
                    .help("drop --non-admin (and LLMDBENCH_NON_ADMIN) for local stacks")
                    .into());
                }
                if let Some(b) = self.local.get() {
                    return Ok(b.clone());
                }
                let b = Arc::new(LocalBackend::new(self.opts.progress)?);
                Ok(self.local.get_or_init(|| b).clone())
            }
            "kube" => {
                if let Some(b) = self.kube.get() {
                    return Ok(b.clone());
                }
                let b = Arc::new(KubeBackend::new(&self.opts.kube, self.opts.non_admin, self.opts.progress)?);
                Ok(self.kube.get_or_init(|| b).clone())
            }
            other => {
                let mut e = InputError::new(format!("unknown backend '{other}' (this llmd has: {})", NAMES.join(", ")));
                if let Some(s) = crate::error::did_you_mean(other, NAMES.iter().copied()) {
                    e = e.help(format!("did you mean '{s}'?"));
                }
                Err(e.into())
            }
        }
    }
}
