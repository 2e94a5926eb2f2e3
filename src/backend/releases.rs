//! The helm releases a plan installs, read from its helmfiles.
//!
//! Method modelservice renders helmfiles (`09_helmfile-gateway-provider`,
//! `10_helmfile-main`) and the values files they name. llmd does not run helmfile: each
//! release becomes one `helm upgrade --install` with the plan's values files, in the
//! order the helmfiles list them (gateway provider, shared gateway, router, model
//! server). A release's `labels.scope` says who owns it:
//!
//! * no scope — the stack's own (its router, its model servers): installed, upgraded
//!   and uninstalled with the stack;
//! * `shared` — one release several stacks use (the `infra-llmdbench` gateway): the
//!   first stack to find it missing installs it, the last stack to go uninstalls it;
//! * `cluster` — a cluster-wide controller (istio, agentgateway): installed when
//!   missing, never uninstalled by llmd, and skipped under `--non-admin`.
//!
//! Everything here is pure: command lines for the plan's `helm-commands.txt` and the
//! digest of the values a release is installed with, which a live release's values
//! are compared against.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Manifest, StackTarget};
use crate::error::InputError;
use crate::yaml::Node;

/// Who owns a release (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Stack,
    Shared,
    Cluster,
}

/// One release of a plan's helmfiles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmRelease {
    pub name: String,
    pub namespace: String,
    /// The chart as helm takes it: an `oci://` reference, or a chart name in `repo`.
    pub chart: String,
    /// The chart repository's URL (`--repo`), for charts named `<repository>/<chart>`.
    pub repo: Option<String>,
    pub version: Option<String>,
    /// Plan files with its values, merged in order.
    pub values: Vec<String>,
    pub scope: Scope,
    /// Where the release is declared (`10_helmfile-main.yaml:12`), for messages.
    pub at: String,
}

/// The helm label every release llmd installs carries, so `teardown --deep` finds them
/// and a release someone else installed is never uninstalled.
pub const RELEASE_LABEL: (&str, &str) = ("managedBy", "llmd");

impl Manifest {
    /// A helmfile of the plan (its file name says so).
    pub fn is_helmfile(&self) -> bool {
        self.file.contains("helmfile")
    }
}

/// Every release the plan's helmfiles install, in helmfile order (files sorted by name).
pub fn releases(target: &StackTarget) -> Result<Vec<HelmRelease>> {
    let mut out = Vec::new();
    for m in target.manifests.iter().filter(|m| m.is_helmfile()) {
        out.extend(parse_helmfile(&m.file, &m.text)?);
    }
    Ok(out)
}

/// The releases of one helmfile (those with `installed: false` left out). A helmfile may
/// be several `---`-separated parts (upstream's puts `helmDefaults` in a part of its own);
/// helmfile merges the parts in order, so repositories and releases of every part count.
pub fn parse_helmfile(file: &str, text: &str) -> Result<Vec<HelmRelease>> {
    let docs = crate::yaml::load::load_all_str(text, file).map_err(|e| InputError::new(e.to_string()))?;
    let docs: Vec<&Node> = docs.iter().filter(|d| !d.is_null()).collect();
    let repos: Vec<(String, String)> = docs
        .iter()
        .flat_map(|d| d.to_json()["repositories"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| Some((r["name"].as_str()?.to_string(), r["url"].as_str()?.to_string())))
        .collect();
    let mut out = Vec::new();
    for entry in docs.iter().flat_map(|d| d.get("releases").and_then(|n| n.as_seq()).unwrap_or_default()) {
        let r = entry.to_json();
        let at = format!("{file}:{}", entry.origin.line);
        let field = |key: &str| -> Result<String> {
            match &r[key] {
                serde_json::Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(InputError::new(format!("{at}: a helmfile release needs '{key}'")).into()),
            }
        };
        if r["installed"] == false || r["installed"] == "false" {
            continue;
        }
        let (name, namespace, chart_ref) = (field("name")?, field("namespace")?, field("chart")?);
        let (chart, repo) = if chart_ref.starts_with("oci://") {
            (chart_ref, None)
        } else {
            let (repo_name, chart) = chart_ref
                .split_once('/')
                .with_context(|| InputError::new(format!("{at}: chart '{chart_ref}' is neither oci://… nor <repository>/<chart>")))?;
            let url = repos.iter().find(|(n, _)| n == repo_name).map(|(_, u)| u.clone()).with_context(|| {
                InputError::new(format!("{at}: chart '{chart_ref}' names repository '{repo_name}', which '{file}' does not list"))
            })?;
            (chart.to_string(), Some(url))
        };
        let version = match &r["version"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        };
        let values = r["values"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
        let scope = match r["labels"]["scope"].as_str() {
            None => Scope::Stack,
            Some("shared") => Scope::Shared,
            Some("cluster") => Scope::Cluster,
            Some(other) => {
                return Err(InputError::new(format!("{at}: labels.scope is '{other}'; expected 'shared' or 'cluster' (or none)")).into());
            }
        };
        out.push(HelmRelease { name, namespace, chart, repo, version, values, scope, at });
    }
    Ok(out)
}

impl HelmRelease {
    /// `helm upgrade --install` of this release with `values` (paths of its values files,
    /// in order), without cluster flags. `non_admin` skips the chart's CRDs.
    pub fn install_args(&self, values: &[String], non_admin: bool) -> Vec<String> {
        let mut a: Vec<String> = ["upgrade", "--install", &self.name, &self.chart].iter().map(|s| s.to_string()).collect();
        if let Some(repo) = &self.repo {
            a.extend(["--repo".into(), repo.clone()]);
        }
        if let Some(v) = &self.version {
            a.extend(["--version".into(), v.clone()]);
        }
        a.extend(["--namespace".into(), self.namespace.clone()]);
        if self.scope == Scope::Cluster {
            // Its own namespace (istio-system); stack namespaces are plan objects.
            a.push("--create-namespace".into());
        }
        for v in values {
            a.extend(["-f".into(), v.clone()]);
        }
        a.extend(["--labels".into(), format!("{}={}", RELEASE_LABEL.0, RELEASE_LABEL.1)]);
        if non_admin {
            a.push("--skip-crds".into());
        }
        a
    }

    /// The plan files with its values, in order; an error names a file the plan lacks.
    pub fn values_files<'t>(&self, target: &'t StackTarget) -> Result<Vec<&'t Manifest>> {
        self.values
            .iter()
            .map(|file| {
                target.manifests.iter().find(|m| &m.file == file).with_context(|| {
                    InputError::new(format!(
                        "{}: release '{}' names values file '{file}', which the plan does not have",
                        self.at, self.name
                    ))
                })
            })
            .collect()
    }

    /// The values the release is installed with: its values files merged as helm merges
    /// them (maps deeply, anything else replaced).
    pub fn merged_values(&self, target: &StackTarget) -> Result<serde_json::Value> {
        let mut merged = serde_json::Value::Object(Default::default());
        for m in self.values_files(target)? {
            let doc = crate::yaml::load::load_str(&m.text, &m.file).map_err(|e| InputError::new(e.to_string()))?;
            if !doc.is_null() {
                merge(&mut merged, doc.to_json());
            }
        }
        Ok(merged)
    }

    /// blake3 of [`canonical_json`] of the merged values: what a live release's values
    /// are compared with.
    pub fn values_digest(&self, target: &StackTarget) -> Result<String> {
        Ok(values_digest(&self.merged_values(target)?))
    }

    /// `llmd.dev`-style one-liner: `release ns/name (chart version)`.
    pub fn display(&self) -> String {
        format!("helm release {}/{} ({} {})", self.namespace, self.name, self.chart, self.version.as_deref().unwrap_or("latest"))
    }
}

/// Digest of a values document, independent of key order and formatting.
pub fn values_digest(values: &serde_json::Value) -> String {
    crate::util::digest::digest(canonical_json(values).as_bytes())
}

/// Helm's merge of values files: maps merge key by key, everything else is replaced.
fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// JSON with object keys sorted at every level and integral floats written as
/// integers (helm stores values as Go's JSON, where every number is a float64).
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => out.push_str(&format!("{}", f as i64)),
                _ => out.push_str(&n.to_string()),
            },
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Quotes a word for a POSIX shell when it needs it.
/// The helm commands a standup of `target` runs, as a reviewable script
/// (`plan/<stack>/helm/helm-commands.txt`); `None` when the plan installs no release.
pub fn helm_commands(target: &StackTarget) -> Result<Option<String>> {
    let releases = releases(target)?;
    if releases.is_empty() {
        return Ok(None);
    }
    let mut out = format!(
        "# The helm commands `llmd standup` runs for stack '{}' (kube backend), in order, from this\n\
         # plan directory. llmd adds --kubeconfig/--kube-context when given, and --skip-crds with\n\
         # --non-admin. Shared and cluster releases are installed only when missing (or, shared,\n\
         # when their values changed); a stack's own release only when its values or chart changed.\n",
        target.name
    );
    for r in &releases {
        let note = match r.scope {
            Scope::Stack => "the stack's own",
            Scope::Shared => "shared: the last stack to go uninstalls it",
            Scope::Cluster => "cluster-wide: skipped under --non-admin, never uninstalled",
        };
        let args: Vec<String> = r.install_args(&r.values, false).iter().map(|a| crate::util::shell_word(a)).collect();
        let version = r.version.as_deref().unwrap_or("latest");
        out.push_str(&format!("\n# {}/{}: {} {version}; {note}\nhelm {}\n", r.namespace, r.name, r.chart, args.join(" ")));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "repositories:\n- name: ms\n  url: https://charts.example/ms/\nreleases:\n\
- name: infra-llmdbench\n  namespace: ns\n  chart: oci://ghcr.io/x/infra\n  version: v1\n  labels:\n    scope: shared\n  values:\n  - 11_infra.yaml\n\
- name: m-router\n  namespace: ns\n  chart: oci://ghcr.io/x/router\n  installed: false\n  values: []\n\
- name: m-ms\n  namespace: ns\n  chart: ms/llm-d-modelservice\n  version: v0.4.5\n  installed: true\n  values:\n  - 13_ms.yaml\n  - 13_extra.yaml\n";

    fn target() -> StackTarget {
        let m = |f: &str, t: &str| Manifest { file: f.into(), text: t.into() };
        StackTarget {
            name: "s".into(),
            model: "m".into(),
            max_model_len: None,
            replicas: 1,
            server: super::super::ServerSpec::Sim { flags: vec![] },
            host: "127.0.0.1".into(),
            ready_timeout_s: 1,
            manifests: vec![
                m("10_helmfile-main.yaml", MAIN),
                m("11_infra.yaml", "gateway:\n  className: istio\n"),
                m("13_ms.yaml", "decode:\n  replicas: 2\n  image: a\nlist: [1, 2]\n"),
                m("13_extra.yaml", "decode:\n  replicas: 3\nlist: [3]\n"),
            ],
            secrets: Default::default(),
        }
    }

    #[test]
    fn helmfile_releases_resolve_repositories_scopes_and_skip_uninstalled() {
        let rs = releases(&target()).unwrap();
        let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["infra-llmdbench", "m-ms"], "installed: false is left out");
        assert_eq!(rs[0].scope, Scope::Shared);
        assert_eq!((rs[0].chart.as_str(), rs[0].repo.as_deref()), ("oci://ghcr.io/x/infra", None));
        assert_eq!((rs[1].chart.as_str(), rs[1].repo.as_deref()), ("llm-d-modelservice", Some("https://charts.example/ms/")));
        assert_eq!(rs[1].at, "10_helmfile-main.yaml:18");
        let args = rs[1].install_args(&["/p/13_ms.yaml".into()], true).join(" ");
        assert_eq!(
            args,
            "upgrade --install m-ms llm-d-modelservice --repo https://charts.example/ms/ --version v0.4.5 --namespace ns \
             -f /p/13_ms.yaml --labels managedBy=llmd --skip-crds"
        );
    }

    #[test]
    fn a_helmfile_in_parts_counts_the_releases_of_every_part() {
        let text = "helmDefaults:\n  createNamespace: false\n---\n\nrepositories:\n- name: ms\n  url: https://charts.example/ms/\n\
releases:\n- name: a\n  namespace: ns\n  chart: ms/modelservice\n---\nreleases:\n- name: b\n  namespace: ns\n  chart: oci://x/b\n";
        let rs = parse_helmfile("10_helmfile-main.yaml", text).unwrap();
        assert_eq!(
            rs.iter().map(|r| (r.name.as_str(), r.repo.as_deref())).collect::<Vec<_>>(),
            [("a", Some("https://charts.example/ms/")), ("b", None)]
        );
        assert_eq!(rs[0].at, "10_helmfile-main.yaml:9", "lines count from the top of the file");
    }

    #[test]
    fn values_merge_like_helm_and_digest_ignores_key_order_and_number_spelling() {
        let t = target();
        let rs = releases(&t).unwrap();
        let v = rs[1].merged_values(&t).unwrap();
        assert_eq!(v, serde_json::json!({"decode": {"replicas": 3, "image": "a"}, "list": [3]}));
        let go_style = serde_json::json!({"list": [3.0], "decode": {"image": "a", "replicas": 3.0}});
        assert_eq!(values_digest(&v), values_digest(&go_style), "helm stores numbers as float64");
        assert_ne!(values_digest(&v), values_digest(&serde_json::json!({"decode": {"replicas": 4, "image": "a"}, "list": [3]})));
    }

    #[test]
    fn bad_helmfiles_name_the_file_line_and_key() {
        let e = parse_helmfile("10_h.yaml", "releases:\n- name: a\n  chart: nope/x\n  namespace: n\n").unwrap_err();
        assert!(format!("{e:#}").contains("10_h.yaml:2: chart 'nope/x' names repository 'nope'"), "{e:#}");
        let e = parse_helmfile("10_h.yaml", "releases:\n- name: a\n  chart: oci://x\n").unwrap_err();
        assert!(format!("{e:#}").contains("10_h.yaml:2: a helmfile release needs 'namespace'"), "{e:#}");
    }

    #[test]
    fn commands_are_a_reviewable_script() {
        let text = helm_commands(&target()).unwrap().unwrap();
        assert!(text.contains("# ns/infra-llmdbench: oci://ghcr.io/x/infra v1; shared"), "{text}");
        assert!(text.contains("helm upgrade --install m-ms llm-d-modelservice --repo https://charts.example/ms/ --version v0.4.5 --namespace ns -f 13_ms.yaml -f 13_extra.yaml --labels managedBy=llmd\n"), "{text}");
        assert_eq!(crate::util::shell_word("a b"), "'a b'");
    }
}
