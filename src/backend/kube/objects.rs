//! A plan's manifests as Kubernetes objects: parsed, labelled, ordered, resolved
//! against the cluster's API discovery, and applied server-side.

use std::collections::HashMap;

use anyhow::{Context, Result};
use kube::api::{Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersion, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use crate::backend::Manifest;
use crate::error::InputError;

/// Field manager of every apply.
pub const FIELD_MANAGER: &str = "llmd";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "llmd");
pub const STACK_LABEL: &str = "llmd.dev/stack";
pub const PLAN_ANNOTATION: &str = "llmd.dev/plan-digest";

/// Kinds that hold state several stacks share — the namespace, its service account and
/// RBAC, secrets, the model and workload volumes and the model download. A stack's
/// teardown leaves them (another stack may use them, and a model cache is expensive to
/// refill); `teardown --deep` removes them.
const SHARED_KINDS: &[&str] =
    &["Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Secret", "PersistentVolumeClaim", "Job"];

/// Order of application: what others reference first.
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "ServiceAccount" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "Secret" | "ConfigMap" => 1,
        "PersistentVolumeClaim" => 2,
        "Job" => 3,
        "Deployment" | "StatefulSet" | "DaemonSet" => 4,
        "Service" => 5,
        _ => 6,
    }
}

/// One object of a plan, ready to apply.
#[derive(Clone, Debug)]
pub struct Planned {
    pub file: String,
    /// 1-based line of the document's first line in `file`.
    pub line: usize,
    pub gvk: GroupVersionKind,
    pub object: DynamicObject,
}

impl Planned {
    pub fn kind(&self) -> &str {
        &self.gvk.kind
    }
    pub fn name(&self) -> String {
        self.object.metadata.name.clone().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<String> {
        self.object.metadata.namespace.clone()
    }
    pub fn shared(&self) -> bool {
        SHARED_KINDS.contains(&self.kind())
    }
    /// Before the model is there (no workload yet): namespaces to jobs.
    pub fn before_workloads(&self) -> bool {
        rank(self.kind()) <= 3
    }
    pub fn display(&self) -> String {
        describe(self.kind(), self.namespace().as_deref(), &self.name())
    }
}

/// `Deployment llmdbench/vllm-x`, `Namespace llmdbench`: how messages name an object.
pub fn describe(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// An object a standup applied, as its receipt records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    /// Shared with other stacks (see `SHARED_KINDS`): kept by a plain teardown.
    #[serde(default)]
    pub shared: bool,
    /// It existed before this standup applied it without llmd's label (someone else
    /// made it): a plain teardown never deletes it (`--deep` goes by label and may).
    #[serde(default)]
    pub preexisting: bool,
    /// `metadata.generation` as applied (status updates leave it alone): a later one
    /// means someone changed the spec.
    #[serde(default)]
    pub generation: Option<i64>,
}

impl ObjectRef {
    pub fn gvk(&self) -> GroupVersionKind {
        let (group, version) = self.api_version.rsplit_once('/').unwrap_or(("", &self.api_version));
        GroupVersionKind::gvk(group, version, &self.kind)
    }
    pub fn display(&self) -> String {
        describe(&self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// Parses a stack's manifests into objects in application order, each labelled
/// managed-by llmd and with the stack, and annotated with the plan digest.
/// Puts the secrets' values back into `object`'s strings (`config::secret`); true when
/// it held any placeholder. Per string, so a value needs no quoting in any manifest.
pub fn reveal(object: &mut DynamicObject, secrets: &crate::config::secret::Secrets) -> bool {
    fn walk(v: &mut serde_json::Value, secrets: &crate::config::secret::Secrets) -> bool {
        match v {
            serde_json::Value::String(s) => match secrets.reveal(s) {
                std::borrow::Cow::Owned(revealed) => {
                    *s = revealed;
                    true
                }
                std::borrow::Cow::Borrowed(_) => false,
            },
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |any, i| walk(i, secrets) | any),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |any, i| walk(i, secrets) | any),
            _ => false,
        }
    }
    !secrets.is_empty() && walk(&mut object.data, secrets)
}

pub fn parse<'a>(manifests: impl IntoIterator<Item = &'a Manifest>, stack: &str, plan_digest: &str) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for m in manifests {
        let docs = crate::yaml::load::load_all_str(&m.text, &m.file).map_err(|e| anyhow::anyhow!("{e}"))?;
        for doc in docs {
            if doc.is_null() {
                continue;
            }
            let line = doc.origin.line as usize;
            let json = doc.to_json();
            let at = format!("{}:{line}", m.file);
            let kind = json["kind"].as_str().unwrap_or_default().to_string();
            if json["apiVersion"].as_str().unwrap_or_default().is_empty() || kind.is_empty() {
                return Err(InputError::new(format!("{at}: a manifest document needs apiVersion and kind")).into());
            }
            let mut object: DynamicObject =
                serde_json::from_value(json).with_context(|| format!("{at}: {kind} is not a Kubernetes object"))?;
            if object.metadata.name.as_deref().unwrap_or_default().is_empty() {
                return Err(InputError::new(format!("{at}: {kind} has no metadata.name")).into());
            }
            let labels = object.metadata.labels.get_or_insert_with(Default::default);
            labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
            labels.insert(STACK_LABEL.into(), label_value(stack));
            object.metadata.annotations.get_or_insert_with(Default::default).insert(PLAN_ANNOTATION.into(), plan_digest.into());
            let gvk = GroupVersionKind::try_from(object.types.as_ref().context("no type")?).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            out.push(Planned { file: m.file.clone(), line, gvk, object });
        }
    }
    out.sort_by_key(|p| rank(p.kind()));
    Ok(out)
}

/// A label value (at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends).
pub fn label_value(s: &str) -> String {
    let mut v: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).take(63).collect();
    while v.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        v.pop();
    }
    v
}

/// The API resources of some kinds, from the cluster's discovery.
pub struct Resolved {
    map: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>,
}

impl Resolved {
    /// Discovers `kinds` (each with where it is used, for the error when the cluster
    /// does not serve it), one request per group-version.
    pub async fn discover(client: &Client, kinds: &[(GroupVersionKind, String)]) -> Result<Resolved> {
        let (resolved, missing) = Self::discover_served(client, kinds.iter().map(|(g, _)| g.clone()).collect()).await?;
        match missing.into_iter().next() {
            None => Ok(resolved),
            Some((gvk, e)) => {
                let at = kinds.iter().find(|(g, _)| *g == gvk).map_or("", |(_, at)| at.as_str());
                let hint = match gvk.group.as_str() {
                    "monitoring.coreos.com" => " (install the Prometheus operator's CRDs, or plan without --monitoring)",
                    "gateway.networking.k8s.io" => " (install the Gateway API CRDs)",
                    _ => "",
                };
                anyhow::bail!("{at}: the cluster does not serve {} {}{hint}: {e}", gvk.api_version(), gvk.kind)
            }
        }
    }

    /// Discovers what the cluster serves of `kinds`; the rest come back with the reason.
    pub async fn discover_served(client: &Client, kinds: Vec<GroupVersionKind>) -> Result<(Resolved, Vec<(GroupVersionKind, String)>)> {
        let mut map = HashMap::new();
        let mut missing = Vec::new();
        // A group-version's resources, or why they could not be read.
        type Served = Result<Vec<(ApiResource, ApiCapabilities)>, String>;
        let mut groups: HashMap<(String, String), Served> = HashMap::new();
        for gvk in kinds {
            if map.contains_key(&gvk) {
                continue;
            }
            let gv = (gvk.group.clone(), gvk.version.clone());
            if !groups.contains_key(&gv) {
                let found = kube::discovery::pinned_group(client, &GroupVersion::gv(&gv.0, &gv.1))
                    .await
                    .map(|g| g.versioned_resources(&gv.1))
                    .map_err(|e| super::diagnose::api_error(&e));
                groups.insert(gv.clone(), found);
            }
            match &groups[&gv] {
                Ok(resources) => match resources.iter().find(|(ar, _)| ar.kind == gvk.kind) {
                    Some(found) => {
                        map.insert(gvk, found.clone());
                    }
                    None => missing.push((gvk, "no such kind in its group".to_string())),
                },
                Err(e) => missing.push((gvk, e.clone())),
            }
        }
        Ok((Resolved { map }, missing))
    }

    pub fn api(&self, client: &Client, gvk: &GroupVersionKind, namespace: Option<&str>) -> Result<Api<DynamicObject>> {
        let (ar, caps) =
            self.map.get(gvk).with_context(|| format!("internal error: {} {} was not discovered", gvk.api_version(), gvk.kind))?;
        Ok(match (&caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), ar),
            (Scope::Cluster, _) => Api::all_with(client.clone(), ar),
        })
    }

    pub fn served(&self, gvk: &GroupVersionKind) -> bool {
        self.map.contains_key(gvk)
    }

    pub fn namespaced(&self, gvk: &GroupVersionKind) -> bool {
        self.map.get(gvk).is_some_and(|(_, c)| matches!(c.scope, Scope::Namespaced))
    }
}

/// Server-side applies `p` (field manager `llmd`, forcing conflicts: the plan is the
/// truth for the fields it sets); `dry_run` asks the server to validate and admit
/// without persisting.
pub async fn apply(api: &Api<DynamicObject>, p: &Planned, dry_run: bool) -> Result<DynamicObject> {
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = dry_run;
    api.patch(&p.name(), &params, &Patch::Apply(&p.object))
        .await
        .map_err(|e| anyhow::anyhow!("{} ({}:{}): {}", p.display(), p.file, p.line, super::diagnose::api_error(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_labelled_annotated_and_ordered() {
        let m = |f: &str, t: &str| Manifest { file: f.into(), text: t.into() };
        let manifests = vec![
            m("14_d.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: ns\nspec: {}\n"),
            m(
                "05_ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  namespace: ns\n",
            ),
        ];
        let objs = parse(&manifests, "my stack", "digest1").unwrap();
        let kinds: Vec<&str> = objs.iter().map(Planned::kind).collect();
        assert_eq!(kinds, ["Namespace", "ServiceAccount", "Deployment"]);
        let d = &objs[2];
        assert_eq!(d.gvk.group, "apps");
        assert_eq!(d.line, 1);
        assert_eq!(objs[1].line, 6, "the second document's line");
        let labels = d.object.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "llmd");
        assert_eq!(labels["llmd.dev/stack"], "my-stack");
        assert_eq!(d.object.metadata.annotations.as_ref().unwrap()[PLAN_ANNOTATION], "digest1");
        assert!(objs[0].shared() && !d.shared());
        let bad = vec![m("x.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n")];
        assert!(format!("{:#}", parse(&bad, "s", "d").unwrap_err()).contains("x.yaml:1: Service has no metadata.name"));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("a b/c-"), "a-b-c");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }
}
