//! Standing a stack up, or updating it in place: the plan's objects in dependency
//! order (server-side apply), its helm releases, waiting until what serves is ready,
//! the Service clients use, and removing what a new plan no longer has.

use anyhow::{Context, Result, bail};
use kube::api::{DeleteParams, PropagationPolicy};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use super::objects::{ObjectRef, Planned, Resolved};
use super::routing::{ReleaseRef, release_workloads};
use super::wait::{Goal, Until};
use super::{KubeBackend, KubeBody, ServiceEndpoint, diagnose, helm, objects, resolve_refs, routing, wait};
use crate::backend::releases::{HelmRelease, Scope};
use crate::backend::{StackTarget, StandupRequest};

impl KubeBackend {
    /// The plan's objects, less cluster-scoped ones under `--non-admin`.
    pub(super) async fn planned(&self, client: &Client, request: &StandupRequest<'_>) -> Result<(Vec<Planned>, Resolved)> {
        let target = request.target;
        if target.deployed().next().is_none() && target.releases_digest().is_none() {
            bail!(
                "stack '{}': its plan has no Kubernetes manifests or helm releases to install (the kube backend deploys the plan's objects and helmfiles)",
                target.name
            );
        }
        // The only place secrets are put back into a plan's objects: what is applied
        // carries them, nothing llmd stores does (`config::secret`). A stored plan's
        // target knows no values; the Hugging Face token then comes from the environment.
        let secrets = target.secrets.clone().with_hf_token_from_env();
        let mut planned = objects::parse(target.deployed(), &target.name, request.plan_digest)?;
        for p in &mut planned {
            objects::reveal(&mut p.object, &secrets);
        }
        let kinds: Vec<(GroupVersionKind, String)> = planned.iter().map(|p| (p.gvk.clone(), format!("{}:{}", p.file, p.line))).collect();
        let resolved = Resolved::discover(client, &kinds).await.map_err(|e| {
            if self.non_admin {
                e.context("--non-admin: the CRDs the plan's kinds need are cluster-scoped; an admin must install them first")
            } else {
                e
            }
        })?;
        if self.non_admin {
            planned.retain(|p| {
                let keep = resolved.namespaced(&p.gvk);
                if !keep {
                    self.say(&target.name, format!("--non-admin: not applying cluster-scoped {}; it must exist", p.display()));
                }
                keep
            });
            // What a non-admin cannot create must be there already: say which, up front.
            let mut needed: Vec<String> = planned.iter().map(|p| self.namespace_of(p)).collect();
            needed
                .extend(crate::backend::releases::releases(target)?.into_iter().filter(|r| r.scope != Scope::Cluster).map(|r| r.namespace));
            needed.sort();
            needed.dedup();
            let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
            for ns in needed {
                let found = namespaces
                    .get_opt(&ns)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot read namespace {ns}: {}", diagnose::api_error(&e)))?;
                if found.is_none() {
                    return Err(crate::error::InputError::new(format!(
                        "stack '{}': namespace '{ns}' does not exist, and --non-admin creates no cluster-scoped object",
                        target.name
                    ))
                    .help(format!("ask a cluster admin to create it (kubectl create namespace {ns}), or stand up without --non-admin"))
                    .into());
                }
            }
        }
        Ok((planned, resolved))
    }

    /// Applies `p` and records it.
    async fn apply_one(&self, client: &Client, resolved: &Resolved, p: &Planned) -> Result<ObjectRef> {
        let api = resolved.api(client, &p.gvk, p.namespace().as_deref())?;
        let before = api.get_opt(&p.name()).await.map_err(|e| anyhow::anyhow!("{}: {}", p.display(), diagnose::api_error(&e)))?;
        let preexisting = before.as_ref().is_some_and(|o| {
            o.metadata.labels.as_ref().and_then(|l| l.get(objects::MANAGED_BY.0)).map(String::as_str) != Some(objects::MANAGED_BY.1)
        });
        let applied = objects::apply(&api, p, false).await?;
        Ok(ObjectRef {
            api_version: p.gvk.api_version(),
            kind: p.gvk.kind.clone(),
            namespace: applied.metadata.namespace.clone().filter(|_| resolved.namespaced(&p.gvk)),
            name: p.name(),
            uid: applied.metadata.uid.clone().unwrap_or_default(),
            shared: p.shared(),
            preexisting,
            generation: applied.metadata.generation,
        })
    }

    /// A planned object's namespace (the kubeconfig's default when it names none).
    fn namespace_of(&self, p: &Planned) -> String {
        p.namespace().unwrap_or_else(|| self.cluster.config.default_namespace.clone())
    }

    /// The standup proper; on error, `done` holds what was applied and installed so far.
    pub(super) async fn standup_into(
        &self,
        client: &Client,
        request: &StandupRequest<'_>,
        planned: &[Planned],
        resolved: &Resolved,
        done: &mut Done,
    ) -> Result<Option<ServiceEndpoint>> {
        let stack = request.target.name.as_str();
        let progress = self.progress.then_some(stack);
        let t = &self.timeouts;
        // Phase 1: what the workload needs — namespace, RBAC, volumes, the model download.
        for p in planned.iter().filter(|p| p.before_workloads()) {
            let r = self.apply_one(client, resolved, p).await?;
            self.say(stack, format!("applied {}", r.display()));
            done.objects.push(r);
        }
        for job in planned.iter().filter(|p| p.kind() == "Job") {
            let ns = self.namespace_of(job);
            for claim in claims(&job.object) {
                wait::wait(client, &Until::new(Goal::PvcBound, &ns, &claim), t.pvc_bind, progress).await?;
            }
            wait::wait(client, &Until::new(Goal::JobComplete, &ns, &job.name()), t.download, progress).await?;
        }
        // Phase 2: the helm releases (gateway provider, shared gateway, router, model
        // servers), each only when it is missing or differs from the plan.
        for r in crate::backend::releases::releases(request.target)? {
            if r.scope == Scope::Cluster && self.non_admin {
                self.say(stack, format!("--non-admin: not installing cluster-wide {}; an admin must have installed it", r.display()));
                continue;
            }
            let (rec, ran) = self.ensure_release(client, request, &r).await?;
            if ran {
                done.installed.push(rec.clone());
            }
            done.releases.push(rec);
        }
        // Phase 3: the workload and what routes to it.
        for p in planned.iter().filter(|p| !p.before_workloads()) {
            let r = self.apply_one(client, resolved, p).await?;
            self.say(stack, format!("applied {}", r.display()));
            done.objects.push(r);
        }
        for d in planned.iter().filter(|p| p.kind() == "Deployment") {
            wait::wait(client, &Until::new(Goal::DeploymentReady, &self.namespace_of(d), &d.name()), t.deploy, progress).await?;
        }
        let routed = done.releases.iter().any(|r| r.scope == Scope::Shared);
        for rec in done.releases.iter().filter(|r| r.scope != Scope::Cluster) {
            for (goal, name) in release_workloads(client, rec).await? {
                if goal == Goal::PoolAccepted && !routed {
                    continue; // no gateway: nothing accepts the pool (epponly, none)
                }
                let timeout = if goal == Goal::DeploymentReady { t.modelservice } else { t.gateway };
                wait::wait(client, &Until::new(goal, &rec.namespace, &name), timeout, progress).await?;
            }
        }
        self.endpoint(client, request.target, planned, &done.releases).await
    }

    /// Installs or upgrades `r` unless the cluster already has it as planned; returns its
    /// record and whether helm ran.
    async fn ensure_release(&self, client: &Client, request: &StandupRequest<'_>, r: &HelmRelease) -> Result<(ReleaseRef, bool)> {
        let stack = request.target.name.as_str();
        let want = r.values_digest(request.target)?;
        // Shared releases are looked at and installed by one stack at a time.
        let _held = if r.scope == Scope::Stack { None } else { Some(self.shared_releases.lock().await) };
        let live = helm::live_release(client, &r.namespace, &r.name).await?;
        let leave = match &live {
            None => None,
            Some(l) if l.status == "deployed" && (r.scope == Scope::Cluster || !l.by_llmd) => {
                Some(format!("{} is installed (revision {}, not by this plan): left as is", r.display(), l.revision))
            }
            Some(l) if helm::matches(l, r, &want) => Some(format!("{} is up to date (revision {})", r.display(), l.revision)),
            Some(_) => None,
        };
        let (live, ran) = match (leave, live) {
            (Some(msg), Some(live)) => {
                self.say(stack, msg);
                (live, false)
            }
            (_, live) => {
                let dir = request.log_dir.parent().unwrap_or(request.log_dir).join("helm").join(stack);
                let mut paths = Vec::new();
                // A values file a secret is revealed into goes to a private directory
                // that lives until helm is done; the workspace keeps the placeholder.
                let secrets = request.target.secrets.clone().with_hf_token_from_env();
                let private = crate::util::fs::PrivateDir::new("helm-values")?;
                for m in r.values_files(request.target)? {
                    crate::util::fs::write_atomic(&dir.join(&m.file), m.text.as_bytes())?;
                    match secrets.reveal(&m.text) {
                        std::borrow::Cow::Owned(text) => paths.push(private.write(&m.file, text.as_bytes())?),
                        std::borrow::Cow::Borrowed(_) => paths.push(dir.join(&m.file)),
                    }
                }
                let log = request.log_dir.join(format!("helm-{stack}.log"));
                let mut live = live;
                // A helm run killed half way (llmd interrupted) leaves the release
                // pending, and helm refuses to touch it again: undo that first.
                if let Some(l) = live.as_ref().filter(|l| l.status.starts_with("pending-") && l.by_llmd) {
                    self.say(stack, format!("{} was left {} by an interrupted helm run: recovering it", r.display(), l.status));
                    if l.status == "pending-install" || l.revision <= 1 {
                        self.helm.uninstall(&r.namespace, &r.name, Some(&log)).await?;
                        live = None;
                    } else {
                        self.helm.rollback(&r.namespace, &r.name, Some(&log)).await?;
                    }
                }
                let verb = if live.is_some() { "upgrading" } else { "installing" };
                self.say(stack, format!("{verb} {}", r.display()));
                self.helm.install(r, &paths, self.non_admin, Some(&log)).await?;
                let installed = helm::live_release(client, &r.namespace, &r.name)
                    .await?
                    .with_context(|| format!("{}: helm succeeded, but the cluster has no such release", r.display()))?;
                (installed, true)
            }
        };
        Ok((
            ReleaseRef {
                name: r.name.clone(),
                namespace: r.namespace.clone(),
                chart: r.chart.clone(),
                version: r.version.clone(),
                revision: live.revision,
                values_digest: live.values_digest,
                scope: r.scope,
                by_llmd: live.by_llmd,
            },
            ran,
        ))
    }

    /// The Service clients use: the one the stack's helm releases lead to
    /// ([`routing::release_endpoint`]), else the plan's own Service (standalone;
    /// `none`'s direct Service) — as upstream's run step 03 detects it.
    async fn endpoint(
        &self,
        client: &Client,
        target: &StackTarget,
        planned: &[Planned],
        releases: &[ReleaseRef],
    ) -> Result<Option<ServiceEndpoint>> {
        if let Some(ep) = routing::release_endpoint(client, target, releases).await? {
            return Ok(Some(ep));
        }
        let service = planned.iter().find(|p| p.kind() == "Service" && !p.shared());
        Ok(service.map(|s| ServiceEndpoint {
            namespace: self.namespace_of(s),
            name: s.name(),
            port: s.object.data["spec"]["ports"][0]["port"].as_i64().unwrap_or(80),
            path: String::new(),
        }))
    }

    /// After an in-place standup: removes what the previous deployment had and the new
    /// one does not (its own objects and releases only).
    pub(super) async fn remove_leftovers(&self, client: &Client, stack: &str, previous: &KubeBody, done: &Done) -> Result<()> {
        let log = None;
        for old in previous.releases.iter().rev().filter(|r| r.scope == Scope::Stack && r.by_llmd) {
            if !done.releases.iter().any(|r| r.namespace == old.namespace && r.name == old.name) {
                self.helm.uninstall(&old.namespace, &old.name, log).await?;
                self.say(stack, format!("uninstalled {} (no longer in the plan)", old.display()));
            }
        }
        let gone: Vec<ObjectRef> = previous
            .objects
            .iter()
            .rev()
            .filter(|o| !o.shared && !o.preexisting)
            .filter(|o| !done.objects.iter().any(|n| n.kind == o.kind && n.namespace == o.namespace && n.name == o.name))
            .cloned()
            .collect();
        if !gone.is_empty() {
            let resolved = resolve_refs(client, &gone).await?;
            for o in &gone {
                if self.delete_one(client, &resolved, o).await? {
                    self.say(stack, format!("deleted {} (no longer in the plan)", o.display()));
                }
            }
        }
        Ok(())
    }

    /// Deletes `r` if it is still the object the receipt recorded; true when it was.
    pub(super) async fn delete_one(&self, client: &Client, resolved: &Resolved, r: &ObjectRef) -> Result<bool> {
        let api = resolved.api(client, &r.gvk(), r.namespace.as_deref())?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(kube::api::Preconditions { uid: Some(r.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&r.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            // The precondition failed: the name now belongs to another object.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(false),
            Err(e) => bail!("cannot delete {}: {}", r.display(), diagnose::api_error(&e)),
        }
        let gone = kube::runtime::wait::await_condition(api, &r.name, kube::runtime::wait::conditions::is_deleted(&r.uid));
        match tokio::time::timeout(self.timeouts.delete, gone).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => bail!("waiting for {} to go: {e}", r.display()),
            Err(_) => bail!("{} was not gone {}s after its delete (a finalizer?)", r.display(), self.timeouts.delete.as_secs()),
        }
    }
}

/// What a standup has done so far (for its receipt, or for cleaning up after a failure).
#[derive(Default)]
pub(super) struct Done {
    pub(super) objects: Vec<ObjectRef>,
    /// Every release the stack installed or uses.
    pub(super) releases: Vec<ReleaseRef>,
    /// Those helm installed or upgraded in this standup.
    pub(super) installed: Vec<ReleaseRef>,
}

/// The claims a pod-owning object mounts.
fn claims(o: &DynamicObject) -> Vec<String> {
    let volumes = o.data["spec"]["template"]["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    volumes.iter().filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(String::from)).collect()
}
