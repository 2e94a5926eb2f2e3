//! What a stack's helm releases made on the cluster: the releases as receipts record
//! them, the objects a standup waits for, how clients reach the stack through them, and
//! whether a release is still as recorded. Ownership is helm's own annotation
//! (`meta.helm.sh/release-name`), never a name pattern.

use anyhow::{Context, Result};
use kube::api::ListParams;
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use super::objects::Resolved;
use super::wait::Goal;
use super::{ServiceEndpoint, diagnose, helm};
use crate::backend::releases::Scope;
use crate::backend::{Liveness, StackTarget};

/// A helm release as a receipt records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub name: String,
    pub namespace: String,
    pub chart: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The live revision after the standup (check compares it).
    pub revision: i64,
    /// Digest of the values it is installed with ([`super::releases::values_digest`]).
    pub values_digest: String,
    pub scope: Scope,
    /// Installed by llmd (this stack or another); a release someone else installed is
    /// never uninstalled.
    pub by_llmd: bool,
}

impl ReleaseRef {
    pub fn display(&self) -> String {
        format!("helm release {}/{}", self.namespace, self.name)
    }
}

/// The helm release an object belongs to (helm's ownership annotation).
pub(super) fn helm_release_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref()?.get("meta.helm.sh/release-name").map(String::as_str)
}

/// A Service's port clients use: the one named `http`, else 80, else the first.
fn service_port(svc: &k8s_openapi::api::core::v1::Service) -> i64 {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let named = ports.iter().find(|p| p.name.as_deref() == Some("http")).or_else(|| ports.iter().find(|p| p.port == 80));
    named.or(ports.first()).map_or(80, |p| p.port as i64)
}

/// The Gateway and path prefix of the HTTPRoute rule in `namespace` that leads to
/// InferencePool `pool` (path empty for `/`).
async fn route_to(client: &Client, namespace: &str, pool: &str) -> Result<Option<(String, String)>> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let resolved = Resolved::discover(client, &[(gvk.clone(), "the stack's route".into())]).await?;
    let routes = resolved
        .api(client, &gvk, Some(namespace))?
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("{}", diagnose::api_error(&e)))?;
    for route in routes {
        let gateway = route.data["spec"]["parentRefs"][0]["name"].as_str().unwrap_or_default().to_string();
        for rule in route.data["spec"]["rules"].as_array().into_iter().flatten() {
            let leads = rule["backendRefs"].as_array().into_iter().flatten().any(|b| b["name"] == pool);
            if leads && !gateway.is_empty() {
                let prefix = rule["matches"][0]["path"]["value"].as_str().unwrap_or("/");
                return Ok(Some((gateway, prefix.trim_end_matches('/').to_string())));
            }
        }
    }
    Ok(None)
}

/// What to wait for of a release: its Deployments Ready, its Gateways Programmed, its
/// InferencePools Accepted (helm's ownership annotation says which are its).
pub(super) async fn release_workloads(client: &Client, rec: &ReleaseRef) -> Result<Vec<(Goal, String)>> {
    let kinds = [
        (Goal::DeploymentReady, GroupVersionKind::gvk("apps", "v1", "Deployment")),
        (Goal::GatewayProgrammed, GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway")),
        (Goal::PoolAccepted, GroupVersionKind::gvk("inference.networking.k8s.io", "v1", "InferencePool")),
    ];
    let (resolved, _unserved) = Resolved::discover_served(client, kinds.iter().map(|(_, g)| g.clone()).collect()).await?;
    let mut out = Vec::new();
    for (goal, gvk) in kinds.iter().filter(|(_, g)| resolved.served(g)) {
        let list = resolved
            .api(client, gvk, Some(&rec.namespace))?
            .list(&ListParams::default())
            .await
            .map_err(|e| anyhow::anyhow!("cannot list {} in {}: {}", gvk.kind, rec.namespace, diagnose::api_error(&e)))?;
        for o in list.items.iter().filter(|o| helm_release_of(&o.metadata) == Some(rec.name.as_str())) {
            out.push((*goal, o.metadata.name.clone().unwrap_or_default()));
        }
    }
    Ok(out)
}

/// The Service the stack's releases lead to: through the gateway (the HTTPRoute rule
/// that leads to the stack's InferencePool gives the Gateway and the path prefix), else
/// the router release's EPP Service (`epponly`); `None` when the stack has no router
/// release installed (standalone, `none`).
pub(super) async fn release_endpoint(client: &Client, target: &StackTarget, releases: &[ReleaseRef]) -> Result<Option<ServiceEndpoint>> {
    let router = crate::backend::releases::releases(target)?.into_iter().find(|r| r.scope == Scope::Stack && r.chart.contains("router"));
    if let Some(router) = router {
        let values = router.merged_values(target)?;
        let pool = values["inferencePool"]["name"].as_str().map(String::from);
        let ns = router.namespace.clone();
        if releases.iter().any(|r| r.scope == Scope::Shared)
            && let Some(pool) = pool
        {
            let (gateway, path) = route_to(client, &ns, &pool).await?.with_context(|| {
                format!("stack '{}': no HTTPRoute in {ns} leads to InferencePool {pool}, so the gateway cannot reach it", target.name)
            })?;
            let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &ns);
            let sel = format!("gateway.networking.k8s.io/gateway-name={gateway}");
            let list = svcs.list(&ListParams::default().labels(&sel)).await.map_err(|e| anyhow::anyhow!("{}", diagnose::api_error(&e)))?;
            let svc = list
                .items
                .first()
                .with_context(|| format!("Gateway {ns}/{gateway} has no Service (labelled {sel}); is its gateway controller running?"))?;
            return Ok(Some(ServiceEndpoint {
                namespace: ns,
                name: svc.metadata.name.clone().unwrap_or_default(),
                port: service_port(svc),
                path,
            }));
        }
        if releases.iter().any(|r| r.name == router.name) {
            let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &ns);
            let list = svcs.list(&ListParams::default()).await.map_err(|e| anyhow::anyhow!("{}", diagnose::api_error(&e)))?;
            let mut of_router: Vec<&k8s_openapi::api::core::v1::Service> =
                list.items.iter().filter(|s| helm_release_of(&s.metadata) == Some(router.name.as_str())).collect();
            of_router.sort_by_key(|s| !s.metadata.name.as_deref().unwrap_or_default().ends_with("-epp"));
            let svc = of_router.first().with_context(|| {
                format!("stack '{}': helm release {ns}/{} made no Service to reach the EPP by", target.name, router.name)
            })?;
            return Ok(Some(ServiceEndpoint {
                namespace: ns,
                name: svc.metadata.name.clone().unwrap_or_default(),
                port: service_port(svc),
                path: String::new(),
            }));
        }
    }
    Ok(None)
}

/// What is wrong with a recorded helm release, if anything: gone, changed by someone
/// (another revision or other values), failed, or its Deployments not all Ready.
pub(super) async fn check_release(client: &Client, r: &ReleaseRef) -> Result<Option<Liveness>> {
    let Some(live) = helm::live_release(client, &r.namespace, &r.name).await? else {
        return Ok(Some(Liveness::Gone(format!("{} is gone", r.display()))));
    };
    if live.status != "deployed" {
        return Ok(Some(Liveness::Gone(format!("{} is {} (revision {})", r.display(), live.status, live.revision))));
    }
    if live.revision != r.revision || live.values_digest != r.values_digest {
        let what = if live.values_digest != r.values_digest { "its values were changed" } else { "it was upgraded" };
        return Ok(Some(Liveness::Drifted(format!("{}: {what} (revision {} → {})", r.display(), r.revision, live.revision))));
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), &r.namespace);
    let list = deployments.list(&ListParams::default()).await.map_err(|e| anyhow::anyhow!("{}", diagnose::api_error(&e)))?;
    for d in list.items.iter().filter(|d| helm_release_of(&d.metadata) == Some(r.name.as_str())) {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready < want {
            let name = d.metadata.name.as_deref().unwrap_or_default();
            return Ok(Some(Liveness::Gone(format!(
                "Deployment {}/{name} of {} has {ready}/{want} replicas ready",
                r.namespace,
                r.display()
            ))));
        }
    }
    Ok(None)
}
