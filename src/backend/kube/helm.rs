//! Helm releases on the cluster: `helm upgrade --install` and `helm uninstall` shelled
//! out, as upstream does (llmd runs no helmfile: [`crate::backend::releases`] turns the
//! plan's helmfiles into one command per release), and a release's live state read from
//! helm's storage Secret with the kube client, so `check` runs no helm and stays cheap.
//!
//! Helm 3 keeps each revision of a release in a Secret `sh.helm.release.v1.<name>.v<N>`
//! (labels `owner=helm`, `name`, `status`, `version`, plus the release's own labels),
//! whose `release` key is base64 of the gzipped release JSON: chart metadata, the
//! user-supplied values (`config`), revision and status.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};

use super::cluster::ClusterOptions;
use crate::backend::releases::{HelmRelease, RELEASE_LABEL, values_digest};

/// What to do without helm.
const INSTALL_HELM: &str =
    "the kube backend installs method modelservice's charts with helm: install helm 3.13 or later, or point LLMD_HELM at it";

/// Runs the helm client against the backend's cluster.
#[derive(Clone, Debug)]
pub struct Helm {
    /// `LLMD_HELM`, else `helm` on PATH.
    bin: String,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

/// A release as the cluster has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRelease {
    pub revision: i64,
    /// `deployed`, `failed`, `pending-upgrade`, …
    pub status: String,
    pub chart: String,
    pub chart_version: String,
    /// [`values_digest`] of the values it was installed with.
    pub values_digest: String,
    /// Installed by llmd (it carries llmd's release label).
    pub by_llmd: bool,
}

impl Helm {
    pub fn new(cluster: &ClusterOptions) -> Helm {
        let bin = std::env::var("LLMD_HELM").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "helm".into());
        Helm { bin, kubeconfig: cluster.kubeconfig.clone(), context: cluster.context.clone() }
    }

    /// Runs `helm args…` with the cluster flags, appending the command and its output to
    /// `log`; an error carries helm's last lines.
    async fn run(&self, args: &[String], log: Option<&Path>) -> Result<String> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args);
        if let Some(k) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(k);
        }
        if let Some(c) = &self.context {
            cmd.arg("--kube-context").arg(c);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        let out = cmd.output().await.map_err(|e| anyhow::anyhow!("cannot run '{}': {e}; {INSTALL_HELM}", self.bin))?;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        if let Some(log) = log {
            if let Some(dir) = log.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
                use std::io::Write;
                let _ = writeln!(f, "$ helm {}\n{stdout}{stderr}", args.join(" "));
            }
        }
        if !out.status.success() {
            let code = out.status.code().map_or_else(|| "a signal".to_string(), |c| c.to_string());
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
            bail!("helm {} failed (exit {code}):\n    {tail}", args[..2.min(args.len())].join(" "));
        }
        Ok(stdout)
    }

    /// `helm upgrade --install` of `r` with its values files at `values` (in order).
    pub async fn install(&self, r: &HelmRelease, values: &[PathBuf], non_admin: bool, log: Option<&Path>) -> Result<()> {
        let paths: Vec<String> = values.iter().map(|p| p.display().to_string()).collect();
        self.run(&r.install_args(&paths, non_admin), log).await.with_context(|| format!("installing {}", r.display()))?;
        Ok(())
    }

    /// `helm rollback` to the previous revision (out of a `pending-upgrade`).
    pub async fn rollback(&self, namespace: &str, name: &str, log: Option<&Path>) -> Result<()> {
        let args: Vec<String> = ["rollback", name, "--namespace", namespace].iter().map(|s| s.to_string()).collect();
        self.run(&args, log).await.with_context(|| format!("rolling back helm release {namespace}/{name}"))?;
        Ok(())
    }

    /// `helm uninstall`; false when there was no such release.
    pub async fn uninstall(&self, namespace: &str, name: &str, log: Option<&Path>) -> Result<bool> {
        let args: Vec<String> = ["uninstall", name, "--namespace", namespace].iter().map(|s| s.to_string()).collect();
        match self.run(&args, log).await {
            Ok(_) => Ok(true),
            Err(e) if format!("{e:#}").contains("not found") => Ok(false),
            Err(e) => Err(e.context(format!("uninstalling helm release {namespace}/{name}"))),
        }
    }

    /// Whether the helm client is there (an executable by that path, or on PATH),
    /// checked before anything is applied — without running it, so a standup that
    /// finds everything in place runs helm zero times.
    pub fn preflight(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let runnable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        let found = if self.bin.contains('/') {
            runnable(Path::new(&self.bin))
        } else {
            std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| runnable(&d.join(&self.bin))))
        };
        if !found {
            bail!("cannot find '{}': {INSTALL_HELM}", self.bin);
        }
        Ok(())
    }

    /// The releases llmd installed in `namespace` (by its release label).
    pub async fn managed_in(client: &Client, namespace: &str) -> Result<Vec<String>> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let sel = format!("owner=helm,{}={}", RELEASE_LABEL.0, RELEASE_LABEL.1);
        let list = api
            .list(&ListParams::default().labels(&sel))
            .await
            .map_err(|e| anyhow::anyhow!("cannot list helm releases in {namespace}: {}", super::diagnose::api_error(&e)))?;
        let mut names: Vec<String> = list.items.iter().filter_map(|s| s.metadata.labels.as_ref()?.get("name").cloned()).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// The release's latest revision, read from helm's storage Secrets; `None` when the
/// release does not exist.
pub async fn live_release(client: &Client, namespace: &str, name: &str) -> Result<Option<LiveRelease>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&format!("owner=helm,name={name}")))
        .await
        .map_err(|e| anyhow::anyhow!("cannot read helm release {namespace}/{name}: {}", super::diagnose::api_error(&e)))?;
    let revision = |s: &Secret| s.metadata.labels.as_ref().and_then(|l| l.get("version")).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let Some(latest) = list.items.iter().max_by_key(|s| revision(s)) else { return Ok(None) };
    let labels = latest.metadata.labels.clone().unwrap_or_default();
    let release = decode(latest).with_context(|| format!("helm release {namespace}/{name}: its storage Secret does not decode"))?;
    Ok(Some(LiveRelease {
        revision: revision(latest),
        status: release["info"]["status"].as_str().or(labels.get("status").map(String::as_str)).unwrap_or_default().to_string(),
        chart: release["chart"]["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        chart_version: release["chart"]["metadata"]["version"].as_str().unwrap_or_default().to_string(),
        values_digest: values_digest(release.get("config").unwrap_or(&serde_json::Value::Null)),
        by_llmd: labels.get(RELEASE_LABEL.0).map(String::as_str) == Some(RELEASE_LABEL.1),
    }))
}

/// The release JSON in a storage Secret: base64 (inside the Secret's own encoding) of
/// gzip (or, from old helm versions, plain JSON).
fn decode(secret: &Secret) -> Result<serde_json::Value> {
    let data = secret.data.as_ref().and_then(|d| d.get("release")).context("no 'release' key")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(data.0.trim_ascii()).context("not base64")?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).context("not gzip")?;
        out
    } else {
        raw
    };
    Ok(serde_json::from_slice(&json)?)
}

/// Whether a live release is what `want` installs: deployed, same chart version, same
/// values (a `None` version asks for whatever is latest, so any version matches).
pub fn matches(live: &LiveRelease, want: &HelmRelease, want_digest: &str) -> bool {
    live.status == "deployed"
        && live.values_digest == want_digest
        && want.version.as_deref().is_none_or(|v| v.trim_start_matches('v') == live.chart_version.trim_start_matches('v'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn secret_of(release: &serde_json::Value, gzip: bool) -> Secret {
        let json = serde_json::to_vec(release).unwrap();
        let body = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&json).unwrap();
            enc.finish().unwrap()
        } else {
            json
        };
        let text = base64::engine::general_purpose::STANDARD.encode(body);
        Secret { data: Some([("release".to_string(), k8s_openapi::ByteString(text.into_bytes()))].into()), ..Default::default() }
    }

    #[test]
    fn storage_secrets_decode_gzipped_or_plain() {
        let release = serde_json::json!({"name": "r", "config": {"a": 1}, "chart": {"metadata": {"name": "c", "version": "1.0"}}});
        assert_eq!(decode(&secret_of(&release, true)).unwrap(), release);
        assert_eq!(decode(&secret_of(&release, false)).unwrap(), release);
        let broken =
            Secret { data: Some([("release".to_string(), k8s_openapi::ByteString(b"%%%".to_vec()))].into()), ..Default::default() };
        assert!(format!("{:#}", decode(&broken).unwrap_err()).contains("not base64"));
    }

    #[test]
    fn a_live_release_matches_on_status_version_and_values() {
        let want = crate::backend::releases::parse_helmfile(
            "h.yaml",
            "releases:\n- name: r\n  namespace: n\n  chart: oci://x/c\n  version: v1.2.0\n",
        )
        .unwrap()
        .remove(0);
        let live = LiveRelease {
            revision: 1,
            status: "deployed".into(),
            chart: "c".into(),
            chart_version: "1.2.0".into(),
            values_digest: "d".into(),
            by_llmd: true,
        };
        assert!(matches(&live, &want, "d"), "v1.2.0 and 1.2.0 are one version");
        assert!(!matches(&live, &want, "other"));
        assert!(!matches(&LiveRelease { status: "failed".into(), ..live.clone() }, &want, "d"));
        assert!(!matches(&LiveRelease { chart_version: "1.3.0".into(), ..live }, &want, "d"));
    }
}
