//! `teardown --deep`: every helm release llmd installed and everything labelled
//! managed-by llmd in some namespaces, found and removed — what receipts may have lost track of (a standup killed before
//! it wrote its receipt, a deleted workspace).

use anyhow::Result;
use kube::Client;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use kube::core::GroupVersionKind;

use super::diagnose::api_error;
use super::helm::Helm;
use super::objects::{MANAGED_BY, Resolved, describe};

/// The kinds llmd creates in a namespace, in deletion order (workloads first).
const KINDS: &[(&str, &str, &str)] = &[
    ("", "v1", "Pod"),
    ("apps", "v1", "Deployment"),
    ("batch", "v1", "Job"),
    ("", "v1", "Service"),
    ("monitoring.coreos.com", "v1", "PodMonitor"),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute"),
    ("", "v1", "ConfigMap"),
    ("", "v1", "Secret"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
    ("rbac.authorization.k8s.io", "v1", "Role"),
    ("", "v1", "ServiceAccount"),
    ("", "v1", "PersistentVolumeClaim"),
];

/// Lists the helm releases llmd installed and the objects labelled managed-by llmd in
/// `namespaces` (kinds the cluster does not serve are skipped) and, unless `dry_run`,
/// uninstalls the releases and deletes each object by UID — so an object re-created
/// since the listing is spared. Returns what it found, as messages name it.
pub async fn sweep(client: &Client, helm: &Helm, namespaces: &[String], dry_run: bool) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for ns in namespaces {
        for name in Helm::managed_in(client, ns).await? {
            if !dry_run && let Err(e) = helm.uninstall(ns, &name, None).await {
                errors.push(format!("{e:#}"));
            }
            found.push(format!("helm release {ns}/{name}"));
        }
    }
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let kinds: Vec<GroupVersionKind> = KINDS.iter().map(|(g, v, k)| GroupVersionKind::gvk(g, v, k)).collect();
    let (resolved, _unserved) = Resolved::discover_served(client, kinds.clone()).await?;
    for gvk in kinds.iter().filter(|g| resolved.served(g)) {
        for ns in namespaces {
            let api = resolved.api(client, gvk, Some(ns))?;
            let items = api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| anyhow::anyhow!("cannot list {} in {ns}: {}", gvk.kind, api_error(&e)))?;
            for o in items {
                let name = o.metadata.name.clone().unwrap_or_default();
                let what = describe(&gvk.kind, Some(ns), &name);
                if !dry_run {
                    let params = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Background),
                        preconditions: Some(kube::api::Preconditions { uid: o.metadata.uid.clone(), resource_version: None }),
                        ..Default::default()
                    };
                    match api.delete(&name, &params).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => errors.push(format!("{what}: {}", api_error(&e))),
                    }
                }
                found.push(what);
            }
        }
    }
    if errors.is_empty() { Ok(found) } else { anyhow::bail!("{}", errors.join("; ")) }
}
