//! `teardown --deep`: everything labelled managed-by llmd in some namespaces, listed
//! and then deleted — what receipts may have lost track of (a standup killed before
//! it wrote its receipt, a deleted workspace).

use anyhow::Result;
use kube::Client;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use kube::core::GroupVersionKind;

use super::objects::{MANAGED_BY, Resolved};

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

/// One object found by a sweep: `Kind namespace/name` and its UID.
#[derive(Clone, Debug)]
pub struct Found {
    pub gvk: GroupVersionKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Found {
    pub fn display(&self) -> String {
        format!("{} {}/{}", self.gvk.kind, self.namespace, self.name)
    }
}

/// Lists the objects labelled managed-by llmd in `namespaces`; kinds the cluster does
/// not serve are skipped.
pub async fn list(client: &Client, namespaces: &[String]) -> Result<Vec<Found>> {
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let mut out = Vec::new();
    for (g, v, k) in KINDS {
        let gvk = GroupVersionKind::gvk(g, v, k);
        let Ok(resolved) = Resolved::discover(client, &[(gvk.clone(), k.to_string())]).await else { continue };
        for ns in namespaces {
            let api = resolved.api(client, &gvk, Some(ns))?;
            let items = api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| anyhow::anyhow!("cannot list {k} in {ns}: {}", super::diagnose::api_error(&e)))?;
            for o in items {
                out.push(Found {
                    gvk: gvk.clone(),
                    namespace: ns.clone(),
                    name: o.metadata.name.clone().unwrap_or_default(),
                    uid: o.metadata.uid.clone().unwrap_or_default(),
                });
            }
        }
    }
    Ok(out)
}

/// Deletes what [`list`] found (each by UID, so an object recreated since is spared).
pub async fn delete(client: &Client, found: &[Found]) -> Result<()> {
    let mut errors = Vec::new();
    for f in found {
        let resolved = Resolved::discover(client, &[(f.gvk.clone(), f.display())]).await?;
        let api = resolved.api(client, &f.gvk, Some(&f.namespace))?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(kube::api::Preconditions { uid: Some(f.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&f.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => errors.push(format!("{}: {}", f.display(), super::diagnose::api_error(&e))),
        }
    }
    if errors.is_empty() { Ok(()) } else { anyhow::bail!("{}", errors.join("; ")) }
}
