//! The Kubernetes backend: a stack is the objects and helm releases of its plan,
//! installed on a cluster.
//!
//! * **Standup** ([`standup`]) parses the plan's manifests ([`objects::parse`]), labels each object
//!   `app.kubernetes.io/managed-by: llmd` and `llmd.dev/stack: <stack>` and annotates
//!   it with the plan digest, resolves every kind through API discovery, and applies
//!   server-side (field manager `llmd`) in dependency order: namespace, service account
//!   and RBAC, volumes, the model download Job — waiting for its volumes Bound and the
//!   Job Complete — then the plan's helm releases (method modelservice: gateway
//!   controller, shared gateway, router, model servers; [`helm`]), each installed only
//!   when the cluster does not have it as planned, then the workload, its Service and
//!   the rest, waiting until the Deployments (the plan's and the releases'), Gateways
//!   and InferencePools are Ready, Programmed and Accepted ([`wait`], [`routing`]). A pod in a state
//!   waiting cannot fix fails the standup at once with its events and last log lines
//!   ([`diagnose`]). Given the previous receipt, a standup updates in place and then
//!   removes what the new plan no longer has.
//! * **The receipt** lists every applied object with its UID (and generation), every
//!   release with its revision and values digest, and the Service clients use (the
//!   gateway's with a path prefix, the EPP's, or the plan's own). Objects several stacks
//!   share (namespace, RBAC, volumes, the model download) are marked shared.
//! * **Check** reads each listed object: missing or recreated (another UID) → gone;
//!   plan-digest annotation or spec generation changed since the standup → drifted;
//!   a workload without all its replicas Ready → gone. Each release is read from helm's
//!   storage Secret: gone, failed, or another revision or values → drifted.
//! * **Teardown** uninstalls the stack's own releases, then deletes the receipt's own
//!   (not shared, not pre-existing) objects by UID — a delete precondition, foreground
//!   propagation — and waits until they are gone. Nothing is ever deleted by name
//!   pattern; an object replaced by someone else (same name, other UID) is left alone.
//!   The shared gateway release goes with its last user (`release_shared`); the
//!   cluster-wide gateway controller stays. `teardown --deep` ([`sweep`]) is the one
//!   exception: it lists and removes every release llmd installed and everything
//!   labelled managed-by llmd in the given namespaces.
//! * **Connect** forwards a loopback port to the Service ([`forward`]) for what runs
//!   on this machine (smoketests, the metrics scrape), and hands runs a [`harness`]
//!   launcher: each harness instance is a pod beside the deployment that reaches it by
//!   the Service's cluster DNS name, as upstream's harness pods do.

pub mod cluster;
pub mod diagnose;
pub mod forward;
pub mod harness;
pub mod helm;
pub mod objects;
pub mod routing;
pub mod standup;
pub mod sweep;
pub mod wait;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::ListParams;
use kube::core::{DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use super::releases::Scope;
use super::{Access, Backend, BoxFuture, Liveness, Manifest, Receipt, StackTarget, StandupRequest};
use cluster::{Cluster, ClusterOptions};
use helm::Helm;
use objects::{ObjectRef, PLAN_ANNOTATION, Planned, Resolved};
pub use routing::ReleaseRef;
use routing::check_release;
use standup::Done;

/// Kinds that run a model server.
const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "LeaderWorkerSet"];

/// How long the waits of a standup may take (upstream's flags and defaults).
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// `--standalone-deploy-timeout`: the workload's pods Ready.
    pub deploy: Duration,
    /// `--modelservice-deploy-timeout`: the pods of a stack's helm releases Ready.
    pub modelservice: Duration,
    /// `--gateway-deploy-timeout`: a Gateway Programmed, an InferencePool Accepted.
    pub gateway: Duration,
    /// `--pvc-bind-timeout`: volumes Bound.
    pub pvc_bind: Duration,
    /// `--download-timeout`: the model download Job Complete.
    pub download: Duration,
    /// Objects gone after a delete.
    pub delete: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            deploy: Duration::from_secs(900),
            modelservice: Duration::from_secs(1500),
            gateway: Duration::from_secs(120),
            pvc_bind: Duration::from_secs(240),
            download: Duration::from_secs(2400),
            delete: Duration::from_secs(300),
        }
    }
}

/// What only the kube backend is configured with (`--non-admin` and progress come from
/// the registry's common options).
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    pub cluster: ClusterOptions,
    pub timeouts: Timeouts,
    /// The image the native harness runs in on the cluster (`--llmd-image`).
    pub llmd_image: Option<String>,
}

/// The kube backend's receipt body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeBody {
    /// API server URL (the cluster it was applied to).
    pub server: String,
    /// Every applied object, in the order applied.
    pub objects: Vec<ObjectRef>,
    /// The Service clients use: namespace, name, port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ServiceEndpoint>,
    /// The plan's harness pod, which runs create per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_pod: Option<Manifest>,
    /// The helm releases the stack installed or uses, in install order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    pub namespace: String,
    pub name: String,
    pub port: i64,
    /// A path prefix clients put before `/v1/…` (a shared HTTPRoute's per-stack prefix).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

impl ServiceEndpoint {
    pub fn url(&self) -> String {
        format!("http://{}.{}.svc.cluster.local:{}{}", self.name, self.namespace, self.port, self.path)
    }
}

impl KubeBody {
    pub fn of(receipt: &Receipt) -> Result<KubeBody> {
        serde_json::from_value(receipt.body.clone())
            .with_context(|| format!("the receipt of stack '{}' has no Kubernetes object list", receipt.stack))
    }
}

pub struct KubeBackend {
    timeouts: Timeouts,
    llmd_image: Option<String>,
    cluster: Cluster,
    /// Apply no cluster-scoped objects (they must exist already).
    non_admin: bool,
    progress: bool,
    helm: Helm,
    /// Held while a shared release is looked at and installed, so two stacks standing
    /// up at once install it once.
    shared_releases: tokio::sync::Mutex<()>,
}

impl KubeBackend {
    /// Connects to the cluster to learn its identity. Constructed by the
    /// [`super::Registry`] only.
    pub(super) fn new(opts: &KubeOptions, non_admin: bool, progress: bool) -> Result<KubeBackend> {
        let cluster = cluster::connect_blocking(&opts.cluster)?;
        Ok(KubeBackend {
            timeouts: opts.timeouts.clone(),
            llmd_image: opts.llmd_image.clone(),
            cluster,
            non_admin,
            progress,
            helm: Helm::new(&opts.cluster),
            shared_releases: tokio::sync::Mutex::new(()),
        })
    }

    /// A client on the current runtime (clients hold runtime-bound connection pools,
    /// and one llmd process may run several runtimes one after another).
    fn client(&self) -> Result<Client> {
        cluster::client(&self.cluster.config)
    }

    fn say(&self, stack: &str, msg: impl AsRef<str>) {
        if self.progress {
            say!("  [{stack}] {}", msg.as_ref());
        }
    }
}

/// The kinds of recorded objects, discovered once for all of them.
async fn resolve_refs(client: &Client, refs: &[ObjectRef]) -> Result<Resolved> {
    let kinds: Vec<(GroupVersionKind, String)> = refs.iter().map(|r| (r.gvk(), r.display())).collect();
    Resolved::discover(client, &kinds).await
}

/// The live object a reference names, `None` when there is none by that name.
async fn get(client: &Client, resolved: &Resolved, r: &ObjectRef) -> Result<Option<DynamicObject>> {
    resolved
        .api(client, &r.gvk(), r.namespace.as_deref())?
        .get_opt(&r.name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {}: {}", r.display(), diagnose::api_error(&e)))
}

/// What is wrong with a live object against its record, if anything.
fn judge(r: &ObjectRef, live: Option<&DynamicObject>, plan_digest: &str) -> Option<Liveness> {
    let Some(live) = live else { return Some(Liveness::Gone(format!("{} is gone", r.display()))) };
    let uid = live.metadata.uid.clone().unwrap_or_default();
    if uid != r.uid {
        return Some(Liveness::Gone(format!(
            "{} was replaced (uid {} → {})",
            r.display(),
            crate::util::short(&r.uid),
            crate::util::short(&uid)
        )));
    }
    if r.shared || r.preexisting {
        return None;
    }
    let annotation = live.metadata.annotations.as_ref().and_then(|a| a.get(PLAN_ANNOTATION)).cloned().unwrap_or_default();
    if annotation != plan_digest {
        return Some(Liveness::Drifted(format!(
            "{}: annotation {PLAN_ANNOTATION} is '{}', the receipt's plan is {}",
            r.display(),
            crate::util::short(&annotation),
            crate::util::short(plan_digest)
        )));
    }
    if let (Some(was), Some(now)) = (r.generation, live.metadata.generation)
        && now > was
    {
        let by = changed_by(live).map(|m| format!(" by {m}")).unwrap_or_default();
        return Some(Liveness::Drifted(format!("{}: its spec was changed{by} (generation {was} → {now})", r.display())));
    }
    if r.kind == "Deployment" {
        let want = live.data["spec"]["replicas"].as_i64().unwrap_or(1);
        let ready = live.data["status"]["readyReplicas"].as_i64().unwrap_or(0);
        if ready < want {
            return Some(Liveness::Gone(format!("{} has {ready}/{want} replicas ready", r.display())));
        }
    }
    None
}

/// The field managers other than llmd that last updated an object (from its managed
/// fields), for drift messages.
fn changed_by(o: &DynamicObject) -> Option<String> {
    let managers: Vec<String> = o
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(objects::FIELD_MANAGER) && m.subresource.as_deref().unwrap_or("").is_empty())
        .filter_map(|m| m.manager.clone())
        .collect();
    (!managers.is_empty()).then(|| managers.join(", "))
}

impl Backend for KubeBackend {
    fn name(&self) -> &'static str {
        "kube"
    }

    fn identity(&self) -> String {
        self.cluster.identity.clone()
    }

    fn deployment_inputs(&self, target: &StackTarget) -> BTreeMap<String, String> {
        // What is deployed is the manifests; model and replicas are in them, and the
        // local.* settings of the target mean nothing on a cluster.
        let mut inputs = BTreeMap::from([("manifests".to_string(), target.manifests_digest()), ("backend".to_string(), self.identity())]);
        if let Some(helm) = target.releases_digest() {
            inputs.insert("helm".to_string(), helm);
        }
        inputs
    }

    fn run_inputs(&self, target: &StackTarget, harness: &str) -> BTreeMap<String, String> {
        // A run is the harness pod as much as the profile: its image, command and
        // resources shape the measurement, so editing it re-runs (without redeploying).
        let mut h = blake3::Hasher::new();
        if let Some(pod) = target.harness_pod() {
            h.update(pod.text.as_bytes());
        }
        if harness == "llmd" {
            h.update(b"\0llmd-image\0");
            h.update(self.llmd_image.as_deref().unwrap_or("").as_bytes());
        }
        BTreeMap::from([("kube:harness-pod".to_string(), h.finalize().to_hex().to_string())])
    }

    fn runs_harness_here(&self, target: &StackTarget) -> bool {
        target.harness_pod().is_none()
    }

    fn preflight(&self, target: &StackTarget) -> Result<()> {
        let releases = super::releases::releases(target)?;
        if target.deployed().next().is_none() && releases.is_empty() {
            bail!("stack '{}': its plan renders no Kubernetes manifests or helmfiles for the kube backend", target.name);
        }
        // Method standalone renders the model server as a Deployment; modelservice as
        // helm releases of the llm-d-modelservice chart.
        let objects = objects::parse(target.deployed(), &target.name, "")?;
        if releases.is_empty() && !objects.iter().any(|p| WORKLOADS.contains(&p.kind())) {
            bail!(
                "stack '{}': its plan deploys no model server: no Deployment (method standalone) and no helm release \
                 (method modelservice); check the stack's standalone.enabled / modelservice.enabled",
                target.name
            );
        }
        if !releases.is_empty() {
            self.helm.preflight().with_context(|| format!("stack '{}' installs helm releases", target.name))?;
        }
        Ok(())
    }

    fn updates_in_place(&self) -> bool {
        true
    }

    fn describe(&self, target: &StackTarget) -> String {
        let objects = match objects::parse(target.deployed(), &target.name, "") {
            Ok(objs) => {
                let list: Vec<String> = objs.iter().map(Planned::display).collect();
                format!("apply {} object(s) to {}: {}", list.len(), self.cluster.server, list.join(", "))
            }
            Err(e) => format!("(manifests do not parse: {e:#})"),
        };
        match super::releases::helm_commands(target) {
            Ok(Some(text)) => {
                let commands: Vec<&str> = text.lines().filter(|l| l.starts_with("helm ")).collect();
                format!("{objects}; and run:\n    {}", commands.join("\n    "))
            }
            Ok(None) => objects,
            Err(e) => format!("{objects}; (helmfiles do not parse: {e:#})"),
        }
    }

    fn standup<'a>(&'a self, request: StandupRequest<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            let client = self.client()?;
            let stack = request.target.name.clone();
            let previous = match request.previous {
                Some(p) if p.backend == self.name() => KubeBody::of(p).ok().filter(|b| b.server == self.cluster.server),
                _ => None,
            };
            let (planned, resolved) = self.planned(&client, &request).await?;
            let mut done = Done::default();
            let endpoint = match self.standup_into(&client, &request, &planned, &resolved, &mut done).await {
                Ok(e) => e,
                Err(e) => {
                    // Remove what this standup created for the stack; shared state stays.
                    for r in done.installed.iter().rev().filter(|r| r.scope == Scope::Stack) {
                        if let Err(de) = self.helm.uninstall(&r.namespace, &r.name, None).await {
                            self.say(&stack, format!("could not uninstall {} after the failure: {de:#}", r.display()));
                        }
                    }
                    for r in done.objects.iter().rev().filter(|r| !r.shared && !r.preexisting) {
                        if let Err(de) = self.delete_one(&client, &resolved, r).await {
                            self.say(&stack, format!("could not remove {} after the failure: {de:#}", r.display()));
                        }
                    }
                    return Err(e.context(format!("stack '{stack}': standup failed")));
                }
            };
            if let Some(previous) = &previous {
                self.remove_leftovers(&client, &stack, previous, &done).await?;
            }
            Ok(Receipt {
                version: Receipt::VERSION,
                stack,
                backend: self.name().into(),
                plan_digest: request.plan_digest.to_string(),
                deployment: request.deployment.to_string(),
                model: request.target.model.clone(),
                created_unix: crate::util::unix_now() as u64,
                body: serde_json::to_value(KubeBody {
                    server: self.cluster.server.clone(),
                    objects: done.objects,
                    endpoint,
                    harness_pod: request.target.harness_pod().cloned(),
                    releases: done.releases,
                })?,
            })
        })
    }

    fn refresh_secrets<'a>(&'a self, target: &'a StackTarget, receipt: &'a Receipt) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let secrets = target.secrets.clone().with_hf_token_from_env();
            if secrets.is_empty() {
                // Nothing to reveal (every build asks): no parse, no cluster call.
                return Ok(Vec::new());
            }
            // Only the objects a secret is revealed into; the rest cannot have changed.
            let mut planned = objects::parse(target.deployed(), &target.name, &receipt.plan_digest)?;
            planned.retain_mut(|p| objects::reveal(&mut p.object, &secrets));
            if planned.is_empty() {
                return Ok(Vec::new());
            }
            let client = self.client()?;
            let kinds: Vec<(GroupVersionKind, String)> =
                planned.iter().map(|p| (p.gvk.clone(), format!("{}:{}", p.file, p.line))).collect();
            let resolved = Resolved::discover(&client, &kinds).await?;
            let mut changed = Vec::new();
            for p in planned.iter().filter(|p| resolved.namespaced(&p.gvk) || !self.non_admin) {
                let api = resolved.api(&client, &p.gvk, p.namespace().as_deref())?;
                let version = |o: Option<&DynamicObject>| o.and_then(|o| o.metadata.resource_version.clone());
                let before = api.get_opt(&p.name()).await.map_err(|e| anyhow::anyhow!("{}: {}", p.display(), diagnose::api_error(&e)))?;
                let after = objects::apply(&api, p, false).await?;
                if version(before.as_ref()) != version(Some(&after)) {
                    changed.push(p.display());
                }
            }
            Ok(changed)
        })
    }

    fn server_dry_run<'a>(&'a self, target: &'a StackTarget, plan_digest: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let client = self.client()?;
            let request = StandupRequest {
                target,
                plan_digest,
                deployment: "",
                log_dir: std::path::Path::new(""),
                workspace: std::path::Path::new(""),
                previous: None,
            };
            let (planned, resolved) = self.planned(&client, &request).await?;
            // A dry run creates nothing, so objects in a namespace this plan would create
            // cannot be judged yet (the server answers NotFound); say so instead.
            let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
            let mut absent = Vec::new();
            for p in planned.iter().filter(|p| p.kind() == "Namespace") {
                if namespaces.get_opt(&p.name()).await.map_err(|e| anyhow::anyhow!("{}", diagnose::api_error(&e)))?.is_none() {
                    absent.push(p.name());
                }
            }
            let (mut accepted, mut refused) = (Vec::new(), Vec::new());
            for p in &planned {
                if let Some(ns) = p.namespace().filter(|ns| absent.contains(ns)) {
                    accepted.push(format!("server dry run: {} not checked (namespace {ns} does not exist yet)", p.display()));
                    continue;
                }
                let api = resolved.api(&client, &p.gvk, p.namespace().as_deref())?;
                match objects::apply(&api, p, true).await {
                    Ok(_) => accepted.push(format!("server dry run: {} accepted", p.display())),
                    Err(e) => refused.push(format!("{e:#}")),
                }
            }
            for r in super::releases::releases(target)? {
                accepted.push(format!(
                    "server dry run: {} not checked (llmd does not run helm in a dry run; see helm-commands.txt)",
                    r.display()
                ));
            }
            if !refused.is_empty() {
                bail!(
                    "stack '{}': the server refuses {} of {} object(s):\n  {}",
                    target.name,
                    refused.len(),
                    planned.len(),
                    refused.join("\n  ")
                );
            }
            Ok(accepted)
        })
    }

    fn incarnation<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<Option<Vec<String>>>> {
        Box::pin(async move {
            let body = KubeBody::of(receipt)?;
            let Some(ep) = body.endpoint else { return Ok(None) };
            let (_, _, pods) = forward::service_pods(&self.client()?, &ep.namespace, &ep.name).await?;
            Ok(Some(forward::incarnation(&pods)))
        })
    }

    fn check<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Liveness> {
        Box::pin(async move {
            let body = match KubeBody::of(receipt) {
                Ok(b) => b,
                Err(e) => return Liveness::Gone(format!("{e:#}")),
            };
            if body.server != self.cluster.server {
                return Liveness::Gone(format!("it was deployed to {}, not to this cluster ({})", body.server, self.cluster.server));
            }
            let client = match self.client() {
                Ok(c) => c,
                Err(e) => return Liveness::Gone(format!("{e:#}")),
            };
            let resolved = match resolve_refs(&client, &body.objects).await {
                Ok(r) => r,
                Err(e) => return Liveness::Gone(format!("{e:#}")),
            };
            for r in &body.objects {
                let live = match get(&client, &resolved, r).await {
                    Ok(l) => l,
                    Err(e) => return Liveness::Gone(format!("{e:#}")),
                };
                if let Some(verdict) = judge(r, live.as_ref(), &receipt.plan_digest) {
                    return verdict;
                }
            }
            for r in body.releases.iter().filter(|r| r.scope != Scope::Cluster) {
                match check_release(&client, r).await {
                    Ok(None) => {}
                    Ok(Some(verdict)) => return verdict,
                    Err(e) => return Liveness::Gone(format!("{e:#}")),
                }
            }
            Liveness::Live
        })
    }

    fn connect<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<Access>> {
        Box::pin(async move {
            let body = KubeBody::of(receipt)?;
            let endpoint = body.endpoint.with_context(|| format!("stack '{}' has no Service to reach it by", receipt.stack))?;
            let client = self.client()?;
            let (url, guard) = forward::forward(&client, &endpoint.namespace, &endpoint.name, endpoint.port)
                .await
                .with_context(|| format!("stack '{}': cannot reach it from this machine", receipt.stack))?;
            let url = format!("{url}{}", endpoint.path);
            let launcher = match &body.harness_pod {
                Some(m) => Some(std::sync::Arc::new(harness::PodLauncher::new(
                    self.cluster.config.clone(),
                    &receipt.stack,
                    &receipt.plan_digest,
                    m,
                    endpoint.url(),
                    self.llmd_image.clone(),
                )?) as std::sync::Arc<dyn super::Launcher>),
                None => None,
            };
            Ok(Access { urls: vec![url], guard: Some(Box::new(guard)), launcher })
        })
    }

    fn teardown<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let body = KubeBody::of(receipt)?;
            let client = self.client()?;
            let mut errors = Vec::new();
            // The stack's own releases first (they use the objects below), newest first.
            for r in body.releases.iter().rev().filter(|r| r.scope == Scope::Stack && r.by_llmd) {
                match self.helm.uninstall(&r.namespace, &r.name, None).await {
                    Ok(true) => self.say(&receipt.stack, format!("uninstalled {}", r.display())),
                    Ok(false) => self.say(&receipt.stack, format!("{} was already gone", r.display())),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            let own: Vec<ObjectRef> = body.objects.iter().rev().filter(|r| !r.shared && !r.preexisting).cloned().collect();
            let resolved = resolve_refs(&client, &own).await?;
            for r in &own {
                match self.delete_one(&client, &resolved, r).await {
                    Ok(true) => self.say(&receipt.stack, format!("deleted {}", r.display())),
                    Ok(false) => self.say(&receipt.stack, format!("{} was already gone", r.display())),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            if errors.is_empty() { Ok(()) } else { bail!("stack '{}': {}", receipt.stack, errors.join("; ")) }
        })
    }

    fn release_shared<'a>(&'a self, receipt: &'a Receipt, others: &'a [Receipt]) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let body = KubeBody::of(receipt)?;
            let mut released = Vec::new();
            for r in body.releases.iter().filter(|r| r.scope == Scope::Shared && r.by_llmd) {
                let users: Vec<&str> = others
                    .iter()
                    .filter(|o| o.backend == self.name())
                    .filter(|o| {
                        KubeBody::of(o).is_ok_and(|b| {
                            b.server == body.server && b.releases.iter().any(|x| x.namespace == r.namespace && x.name == r.name)
                        })
                    })
                    .map(|o| o.stack.as_str())
                    .collect();
                if !users.is_empty() {
                    self.say(&receipt.stack, format!("kept shared {}: stack(s) {} still use it", r.display(), users.join(", ")));
                    continue;
                }
                if self.helm.uninstall(&r.namespace, &r.name, None).await? {
                    self.say(&receipt.stack, format!("uninstalled shared {} (its last user)", r.display()));
                    released.push(r.display());
                }
            }
            Ok(released)
        })
    }

    fn capacity(&self) -> BoxFuture<'_, Result<(BTreeMap<String, u64>, String)>> {
        Box::pin(async move {
            // Allocatable GPUs of the nodes pods can be scheduled on.
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client()?);
            let list =
                nodes.list(&ListParams::default()).await.map_err(|e| anyhow::anyhow!("cannot list nodes: {}", diagnose::api_error(&e)))?;
            let mut gpus = 0u64;
            let mut counted = 0;
            for n in list.items.iter().filter(|n| !n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)) {
                let allocatable = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
                if let Some(q) = allocatable.and_then(|a| a.get("nvidia.com/gpu")) {
                    gpus += q.0.parse::<u64>().unwrap_or(0);
                }
                counted += 1;
            }
            Ok((BTreeMap::from([("gpu".to_string(), gpus)]), format!("allocatable nvidia.com/gpu of {counted} schedulable node(s)")))
        })
    }

    fn sweep<'a>(&'a self, scopes: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move { sweep::sweep(&self.client()?, &self.helm, scopes, dry_run).await })
    }

    fn summary(&self, receipt: &Receipt) -> String {
        match KubeBody::of(receipt) {
            Ok(b) => {
                let own = b.objects.iter().filter(|r| !r.shared).count();
                let releases = if b.releases.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = b.releases.iter().map(|r| r.name.as_str()).collect();
                    format!(" and helm release(s) {}", names.join(", "))
                };
                format!("{} object(s) ({own} of the stack's own){releases} on {}", b.objects.len(), b.server)
            }
            Err(e) => format!("{e:#}"),
        }
    }
}
