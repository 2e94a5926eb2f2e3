//! Backends deploy a stack's plan somewhere and remove exactly what they deployed.
//!
//! A backend is chosen by name through the [`registry`] — from `--backend`, else the
//! stack's `backend:` config key, else `local` — and never constructed ad hoc. Every
//! standup leaves a [`Receipt`] in `<workspace>/receipts/<stack>.json`: a common envelope
//! (stack, backend, plan digest, deployment key, model, creation time, version) around a
//! backend-specific body. Liveness checks, endpoint access and teardown work from
//! receipts alone, never by re-deriving names from the configuration, and teardown picks
//! the backend the receipt names.
//!
//! # The contract
//!
//! * **`standup` is idempotent in effect**: it creates what the target describes and
//!   returns only once the deployment serves; on failure it removes whatever it started
//!   before returning the error. It never reuses a deployment by itself — reuse is the
//!   caller's decision, made from a receipt and [`Backend::check`].
//! * **`teardown` is idempotent**: tearing down something already gone succeeds; an error
//!   means something the receipt lists may still exist, and the caller keeps the receipt
//!   so a second teardown can retry.
//! * **`check` only observes**: it may probe processes or the network, must not start,
//!   stop or modify anything, and must answer within seconds. It reports whether what the
//!   receipt lists is still there and serving; comparing plans is not its job (the
//!   receipt's `plan_digest` and `deployment` fields are compared by the caller).
//! * **`connect` yields [`Access`]**: the URLs clients use, and a guard that keeps any
//!   tunnel open while it lives. Callers never read addresses out of a receipt body.
//! * **Cancel safety**: a standup future dropped half way may leave started resources
//!   behind without a receipt; the local backend starts each replica in its own process
//!   group so that nothing else is signalled by mistake, and the build's incomplete marker
//!   records that the standup was interrupted.
//!
//! * [`kube`] — a stack is its plan's objects and helm releases, installed on a
//!   Kubernetes cluster.
//! * [`pending`] — replicas recorded before they are started, so that no process a
//!   killed build started goes unnoticed.
//! * [`releases`] — the helm releases of a plan's helmfiles (method modelservice).
//! * [`local`] — each stack replica is a process on this machine: the built-in simulator
//!   (`llmd sim`) or a configured command such as `vllm serve`.
//! * [`target`] — reading a [`StackTarget`] from a rendered config.

pub mod kube;
pub mod local;
pub mod pending;
pub mod registry;
pub mod releases;
pub mod target;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use registry::{BackendOptions, Registry};
pub use target::{Manifest, ServerSpec, StackTarget, TARGET_PATHS, standup_manifests, target_from_config};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a standup is asked to record about itself.
#[derive(Clone, Debug)]
pub struct StandupRequest<'a> {
    pub target: &'a StackTarget,
    /// Digest of the stack's rendered plan (manifests and config).
    pub plan_digest: &'a str,
    /// Key of what is deployed: the standup node key (see `phases::standup::deployment_key`).
    pub deployment: &'a str,
    /// Where replica logs go.
    pub log_dir: &'a Path,
    /// The workspace whose receipts the stack joins (pending entries go there first).
    pub workspace: &'a Path,
    /// The stack's current deployment, when the backend updates in place
    /// ([`Backend::updates_in_place`]): the standup changes only what differs and removes
    /// what the new plan no longer has.
    pub previous: Option<&'a Receipt>,
}

/// What a standup created: a common envelope around a backend-specific body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub version: u32,
    pub stack: String,
    /// The registry name of the backend that created it; teardown uses this one.
    pub backend: String,
    /// Digest of the rendered plan it was stood up from.
    pub plan_digest: String,
    /// Key of the deployment (what the backend started); builds reuse a deployment only
    /// when this equals the standup key they computed.
    pub deployment: String,
    pub model: String,
    pub created_unix: u64,
    /// Backend-specific: local processes, later Kubernetes object UIDs and releases.
    pub body: serde_json::Value,
}

impl Receipt {
    pub const VERSION: u32 = 2;

    pub fn path(workspace: &Path, stack: &str) -> PathBuf {
        workspace.join("receipts").join(format!("{stack}.json"))
    }

    /// Parses a receipt; version 1 (local processes at the top level, one `plan_hash`)
    /// is read as the version 2 envelope it corresponds to.
    pub fn parse(text: &str) -> Result<Receipt> {
        let mut v: serde_json::Value = serde_json::from_str(text)?;
        if v["version"] == 1 {
            let o = v.as_object_mut().context("a receipt is a JSON object")?;
            let replicas = o.remove("replicas").unwrap_or_default();
            let hash = o.remove("plan_hash").unwrap_or_default();
            o.insert("plan_digest".into(), hash.clone());
            o.insert("deployment".into(), hash);
            o.insert("body".into(), serde_json::json!({ "replicas": replicas }));
            o.insert("version".into(), Receipt::VERSION.into());
        }
        Ok(serde_json::from_value(v)?)
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
            Ok(text) => Ok(Some(Self::parse(&text).with_context(|| format!("{} is not a valid receipt", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Every receipt in the workspace, by stack name.
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
    /// Some or all of it is gone, or it does not serve.
    Gone(String),
    /// It is there, but someone changed it since the standup (what changed).
    Drifted(String),
}

/// How clients reach a deployment.
pub struct Access {
    /// Base URLs (`http://host:port`) reachable from this machine, one per serving
    /// replica; the first is the one smoketests (and local harnesses) use.
    pub urls: Vec<String>,
    /// Kept alive while the access is used (a port-forward, say); `None` when nothing
    /// needs holding open.
    pub guard: Option<Box<dyn Any + Send + Sync>>,
    /// Where harnesses run when not on this machine (kube: a pod beside the
    /// deployment); `None` runs them here against [`Access::primary`].
    pub launcher: Option<Arc<dyn Launcher>>,
}

/// One harness instance to run where the deployment is.
pub struct LaunchJob<'a> {
    /// The harness's name (`llmd`, `inference-perf`, …).
    pub harness: &'a str,
    /// The attempt's experiment id and the instance's suffix (`<eid>_<instance>`).
    pub eid: &'a str,
    pub instance: usize,
    /// The rendered profile: its file name and text.
    pub profile_name: &'a str,
    pub profile_text: &'a str,
    pub model: &'a str,
    /// Where the instance's outputs land on this machine.
    pub dir: &'a Path,
    pub timeout: Duration,
    /// Names the stack in progress lines; `None` prints none.
    pub progress: Option<&'a str>,
}

/// Runs harness instances away from this machine (see [`Access::launcher`]).
pub trait Launcher: Send + Sync {
    /// The endpoint URL as harnesses see it from where they run.
    fn endpoint(&self) -> &str;
    /// Runs one instance to completion and brings its output files into `job.dir`; an
    /// error says why the harness failed (its exit code and last log lines).
    fn launch<'a>(&'a self, job: LaunchJob<'a>) -> BoxFuture<'a, Result<()>>;
}

impl Access {
    /// The URL harnesses and smoketests target.
    pub fn primary(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }

    /// The URL harnesses target from where they run (and rendered profiles name).
    pub fn harness_endpoint(&self) -> &str {
        self.launcher.as_ref().map_or_else(|| self.primary(), |l| l.endpoint())
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("urls", &self.urls)
            .field("guard", &self.guard.is_some())
            .field("launcher", &self.launcher.as_ref().map(|l| l.endpoint().to_string()))
            .finish()
    }
}

/// A place stacks can be deployed to. See the module documentation for the contract.
pub trait Backend: Send + Sync {
    /// The registry name (`local`); receipts record it.
    fn name(&self) -> &'static str;
    /// Name and target of the deployments (`local`; a cluster for kube). Part of every
    /// standup key, so a result cached against one target is never reused for another.
    /// Never a path, hostname or clock.
    fn identity(&self) -> String;
    /// The inputs of a deployment's key: what is deployed and where. By default the
    /// target's digest and the backend's identity; a cluster backend digests the
    /// manifests it applies instead.
    fn deployment_inputs(&self, target: &StackTarget) -> BTreeMap<String, String> {
        BTreeMap::from([("target".to_string(), target.digest()), ("backend".to_string(), self.identity())])
    }
    /// Inputs of every run key beyond the deployment's: what runs `harness` when the
    /// backend runs it away from this machine (kube: the harness pod's manifest and, for
    /// the native harness, the llmd image). Empty when runs happen here.
    fn run_inputs(&self, target: &StackTarget, harness: &str) -> BTreeMap<String, String> {
        let _ = (target, harness);
        BTreeMap::new()
    }
    /// Whether runs on `target` start the harness on this machine (so its tool must be
    /// installed here); a cluster backend with a harness pod runs it there.
    fn runs_harness_here(&self, target: &StackTarget) -> bool {
        let _ = target;
        true
    }
    /// What the backend needs before anything starts (a configured server command is
    /// installed); an error names the stack and the missing piece.
    fn preflight(&self, target: &StackTarget) -> Result<()>;
    /// One line saying what a standup of `target` would start (for dry runs).
    fn describe(&self, target: &StackTarget) -> String;
    /// Asks the target to validate what a standup of `target` would deploy, changing
    /// nothing (kube: every object applied with `dryRun=All`, so admission webhooks,
    /// quotas and schemas judge it). One line per accepted object; an error lists every
    /// refusal.
    fn server_dry_run<'a>(&'a self, target: &'a StackTarget, plan_digest: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (target, plan_digest);
        Box::pin(async move { anyhow::bail!("the {} backend has no server-side dry run (it is for cluster backends)", self.name()) })
    }
    /// Starts the stack and waits until it serves.
    fn standup<'a>(&'a self, request: StandupRequest<'a>) -> BoxFuture<'a, Result<Receipt>>;
    /// Whether a standup can replace a previous deployment of the stack in place (given
    /// as [`StandupRequest::previous`]) instead of after its teardown: kube re-applies
    /// objects and upgrades only changed helm releases.
    fn updates_in_place(&self) -> bool {
        false
    }
    /// Re-applies, to the deployment the receipt lists, the plan's objects that hold
    /// secrets ([`StackTarget::secrets`]), so a changed secret reaches a kept stack
    /// without re-running anything (a secret is an input of no key). Unchanged objects
    /// are left as they are. Returns the objects that changed.
    fn refresh_secrets<'a>(&'a self, target: &'a StackTarget, receipt: &'a Receipt) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (target, receipt);
        Box::pin(async { Ok(Vec::new()) })
    }
    /// What serves the deployment right now, as lines that change when a replica is
    /// replaced or restarted (kube: each serving pod's uid and its containers' restart
    /// counts). A run compares a reading before it with one after it. `None` where
    /// [`Backend::check`] already tells (local: a replica's pid and start time).
    fn incarnation<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<Option<Vec<String>>>> {
        let _ = receipt;
        Box::pin(async { Ok(None) })
    }
    /// Observes whether what the receipt lists is still there and serving.
    fn check<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Liveness>;
    /// How clients reach the deployment.
    fn connect<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<Access>>;
    /// Removes what the receipt lists as the stack's own.
    fn teardown<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<()>>;
    /// After [`Backend::teardown`]: removes what the receipt shares with other stacks
    /// (kube: the shared gateway release) when none of `others` — the workspace's other
    /// receipts — still uses it. Returns what it removed. Callers serialize these calls.
    fn release_shared<'a>(&'a self, receipt: &'a Receipt, others: &'a [Receipt]) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (receipt, others);
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Everything the backend manages in `scopes` (kube: namespaces), receipts or not:
    /// listed, and deleted unless `dry_run` (`teardown --deep`). Returns what it found.
    fn sweep<'a>(&'a self, scopes: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (scopes, dry_run);
        Box::pin(async { Ok(Vec::new()) })
    }
    /// What the backend can hold at once, for packing setups (`llmd build -j`): named
    /// amounts (`gpu`, `cpu`; a name left out is unbounded) and where they come from.
    fn capacity(&self) -> BoxFuture<'_, Result<(BTreeMap<String, u64>, String)>> {
        Box::pin(async { Ok((BTreeMap::new(), format!("{} (unbounded)", self.name()))) })
    }
    /// What the receipt holds, for messages (`pid 12 port 8000`).
    fn summary(&self, receipt: &Receipt) -> String;
}
