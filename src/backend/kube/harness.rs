//! Harness pods: each run instance is a pod beside the deployment, made from the plan's
//! `20_harness_pod.yaml`, with its rendered profile in a ConfigMap.
//!
//! The pod runs the harness, then holds on (`sleep`) until llmd has collected its
//! results, so results come straight out of the pod with no data-access pod and any
//! kind of workload volume. A readiness probe on the file the wrapper writes when the
//! harness exits turns the pod Ready at that moment, so the wait is a watch like every
//! other ([`super::wait`]) and a pod that cannot start fails fast with its events and
//! logs. Then llmd reads the harness's exit code, streams the results directory out
//! with `tar` over exec (retried), copies the pod's log beside them, and deletes the
//! pod and its ConfigMap — also when anything failed. A pod whose llmd died holds at
//! most [`HOLD`] and carries the labels `teardown --deep` sweeps.
//!
//! In the pod: the native harness (`llmd`) runs `llmd load` from an llmd image
//! (`--llmd-image`); external harnesses run the plan's benchmark image and its
//! `llm-d-benchmark.sh` with upstream's `LLMDBENCH_*` environment.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{AttachParams, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::objects::{self, FIELD_MANAGER};
use super::wait::{self, Goal, Until};
use super::{cluster, diagnose};
use crate::backend::{BoxFuture, LaunchJob, Launcher, Manifest};

/// How long a harness pod waits to be collected after its harness exits.
pub const HOLD: Duration = Duration::from_secs(3600);
/// Where the wrapper leaves the harness's exit code (and what the probe reads).
const EXIT_FILE: &str = "/tmp/llmd-exit-code";
/// Where profiles are mounted: upstream's `/workspace/profiles/<harness>`.
const PROFILES: &str = "/workspace/profiles";
const CONTAINER: &str = "harness";
const COLLECT_ATTEMPTS: u32 = 3;

/// Where a harness pod points and what it runs in, besides the job and the template.
pub struct PodInputs<'a> {
    /// The endpoint as the pod reaches it (cluster DNS).
    pub endpoint: &'a str,
    /// The llmd image the native harness runs in.
    pub llmd_image: Option<&'a str>,
}

/// A harness pod and its profile ConfigMap, and where in the pod its results land.
#[derive(Debug)]
pub struct HarnessPod {
    pub pod: Pod,
    pub config_map: ConfigMap,
    pub results: String,
}

impl HarnessPod {
    pub fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }
    pub fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }
}

/// A DNS-1123 label from `base` and `suffix`, at most 63 characters.
fn pod_name(base: &str, suffix: &str) -> String {
    let clean: String = base.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let room = 63 - suffix.len() - 1;
    let base = clean.trim_matches('-');
    let base = &base[..base.len().min(room)];
    format!("{}-{suffix}", base.trim_end_matches('-'))
}

/// Sets `name` in a container's `env` list, replacing an entry of that name.
fn set_env(env: &mut Vec<Value>, name: &str, value: &str) {
    env.retain(|e| e["name"] != name);
    env.push(json!({"name": name, "value": value}));
}

/// Builds the pod and ConfigMap of one instance from the plan's harness pod (parsed
/// and labelled by [`objects::parse`]).
pub fn harness_pod(template: &Value, job: &LaunchJob<'_>, inputs: &PodInputs<'_>) -> Result<HarnessPod> {
    let mut pod = template.clone();
    let kind = job.harness;
    // The attempt's random tail names the pods of one attempt apart from any other.
    let tag = job.eid.rsplit('-').next().unwrap_or("run").to_ascii_lowercase();
    let base = pod["metadata"]["name"].as_str().unwrap_or("llmd-harness").to_string();
    let name = pod_name(&base, &format!("{tag}-{}", job.instance));
    let cm_name = pod_name(&base, &format!("{tag}-{}-profile", job.instance));
    pod["metadata"]["name"] = json!(name);
    let labels = &mut pod["metadata"]["labels"];
    labels["llmd.dev/role"] = json!("harness");
    labels["llmd.dev/run"] = json!(tag);
    let Some(index) = pod["spec"]["containers"].as_array().and_then(|cs| cs.iter().position(|c| c["name"] == CONTAINER)) else {
        bail!("the harness pod template has no container named '{CONTAINER}'")
    };
    let c = &mut pod["spec"]["containers"][index];
    // The results directory: under the mount of the workload volume (upstream's /requests).
    let mount = c["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "results"))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or("/requests")
        .trim_end_matches('/')
        .to_string();
    let results = format!("{mount}/{}_{}", job.eid, job.instance);
    let profile = format!("{PROFILES}/{kind}/{}", job.profile_name);
    let mut env = c["env"].as_array().cloned().unwrap_or_default();
    for (k, v) in [
        ("LLMDBENCH_HARNESS_NAME", kind),
        ("LLMDBENCH_RUN_EXPERIMENT_HARNESS", kind),
        ("LLMDBENCH_HARNESS_WORKLOAD", job.profile_name),
        ("LLMDBENCH_RUN_EXPERIMENT_HARNESS_WORKLOAD_NAME", job.profile_name),
        ("LLMDBENCH_HARNESS_STACK_ENDPOINT_URL", inputs.endpoint),
        ("LLMDBENCH_DEPLOY_CURRENT_MODEL", job.model),
        ("LLMDBENCH_RUN_EXPERIMENT_ID", job.eid),
        ("LLMDBENCH_RUN_EXPERIMENT_RESULTS_DIR", &results),
    ] {
        set_env(&mut env, k, v);
    }
    c["env"] = Value::Array(env);
    let argv: Vec<String> = match job.harness {
        "llmd" => {
            let image = inputs.llmd_image.context(
                "the native harness (llmd) runs in a pod on the cluster and needs an llmd image: build one from the repository's \
                 Containerfile, push it where the cluster can pull it and pass --llmd-image (or LLMD_IMAGE); or use harness \
                 inference-perf, guidellm or vllm-benchmark, which run in the plan's benchmark image",
            )?;
            c["image"] = json!(image);
            let mut argv: Vec<String> =
                ["llmd", "load", "--profile", &profile, "--endpoint", inputs.endpoint, "--model", job.model].map(String::from).to_vec();
            argv.extend(["--output".to_string(), results.clone(), "--quiet".to_string()]);
            argv
        }
        _ => {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
            };
            let mut argv = strings(&c["command"]);
            argv.extend(strings(&c["args"]));
            if argv.is_empty() {
                bail!("the harness pod template's container has no command");
            }
            argv
        }
    };
    // Run the harness, record how it ended, hold on until collected.
    let script = format!("\"$@\"; echo $? > {EXIT_FILE}; exec sleep {}", HOLD.as_secs());
    let mut command = vec!["/bin/sh".to_string(), "-c".to_string(), script, "llmd-harness".to_string()];
    command.extend(argv);
    c["command"] = json!(command);
    c.as_object_mut().map(|o| o.remove("args"));
    c["readinessProbe"] = json!({"exec": {"command": ["cat", EXIT_FILE]}, "periodSeconds": 2, "failureThreshold": 1});
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let mut mounts: Vec<Value> = mounts.into_iter().filter(|m| m["name"] != "profiles").collect();
    mounts.push(json!({"name": "profiles", "mountPath": format!("{PROFILES}/{kind}")}));
    c["volumeMounts"] = Value::Array(mounts);
    let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    let mut volumes: Vec<Value> = volumes.into_iter().filter(|v| v["name"] != "profiles").collect();
    volumes.push(json!({"name": "profiles", "configMap": {"name": cm_name}}));
    pod["spec"]["volumes"] = Value::Array(volumes);
    pod["spec"]["restartPolicy"] = json!("Never");
    pod["spec"]["activeDeadlineSeconds"] = json!(job.timeout.as_secs() + HOLD.as_secs());
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": cm_name, "namespace": pod["metadata"]["namespace"], "labels": pod["metadata"]["labels"]},
        "data": {job.profile_name: job.profile_text},
    });
    Ok(HarnessPod {
        pod: serde_json::from_value(pod).context("the harness pod template is not a valid Pod")?,
        config_map: serde_json::from_value(config_map)?,
        results,
    })
}

/// Runs harness instances as pods on one cluster (see the module documentation).
pub struct PodLauncher {
    pub(super) config: kube::Config,
    /// The plan's harness pod, parsed and labelled.
    pub(super) template: Value,
    /// The endpoint in cluster DNS.
    pub(super) endpoint: String,
    pub(super) llmd_image: Option<String>,
}

impl PodLauncher {
    /// The launcher for a stack's plan; `manifest` is its harness pod.
    pub fn new(
        config: kube::Config,
        stack: &str,
        plan_digest: &str,
        manifest: &Manifest,
        endpoint: String,
        llmd_image: Option<String>,
    ) -> Result<PodLauncher> {
        let objects = objects::parse([manifest], stack, plan_digest)?;
        let pod = objects.into_iter().find(|p| p.kind() == "Pod").with_context(|| format!("{} holds no Pod", manifest.file))?;
        let mut template = serde_json::to_value(&pod.object)?;
        if template["metadata"]["namespace"].is_null() {
            template["metadata"]["namespace"] = json!(config.default_namespace);
        }
        Ok(PodLauncher { config, template, endpoint, llmd_image })
    }

    async fn run(&self, client: &Client, hp: &HarnessPod, job: &LaunchJob<'_>) -> Result<()> {
        let (ns, name) = (hp.namespace(), hp.name());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if let Some(stack) = job.progress {
            say!("  [{stack}] harness pod {ns}/{name}: {} with {}", job.harness, job.profile_name);
        }
        wait::wait(client, &Until::new(Goal::PodDone, &ns, &name), job.timeout, job.progress).await?;
        let rc = exec(&pods, &name, &["cat", EXIT_FILE]).await.context("reading the harness's exit code")?;
        let rc = String::from_utf8_lossy(&rc).trim().to_string();
        let log = pods.logs(&name, &LogParams { container: Some(CONTAINER.into()), ..Default::default() }).await.unwrap_or_default();
        std::fs::create_dir_all(job.dir).with_context(|| format!("cannot create {}", job.dir.display()))?;
        std::fs::write(job.dir.join("harness.log"), &log)
            .with_context(|| format!("cannot write {}", job.dir.join("harness.log").display()))?;
        if rc != "0" {
            let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{} exited with code {rc} in pod {ns}/{name}; its last log lines:\n    {}", job.harness, tail.join("\n    "));
        }
        let mut attempt = 1;
        loop {
            match collect(&pods, &name, &hp.results, job.dir).await {
                Ok(n) => {
                    if let Some(stack) = job.progress {
                        say!("  [{stack}] collected {n} file(s) from {ns}/{name}:{}", hp.results);
                    }
                    return Ok(());
                }
                Err(e) if attempt < COLLECT_ATTEMPTS => {
                    if let Some(stack) = job.progress {
                        say!("  [{stack}] collecting from {ns}/{name} failed ({e:#}); retrying");
                    }
                    tokio::time::sleep(Duration::from_secs(2u64.pow(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.context(format!("collecting {} from pod {ns}/{name}", hp.results))),
            }
        }
    }
}

impl Launcher for PodLauncher {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn launch<'a>(&'a self, job: LaunchJob<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let inputs = PodInputs { endpoint: &self.endpoint, llmd_image: self.llmd_image.as_deref() };
            let hp = harness_pod(&self.template, &job, &inputs)?;
            let client = cluster::client(&self.config)?;
            let ns = hp.namespace();
            let (pods, cms): (Api<Pod>, Api<ConfigMap>) = (Api::namespaced(client.clone(), &ns), Api::namespaced(client.clone(), &ns));
            let cm_name = hp.config_map.metadata.name.clone().unwrap_or_default();
            let apply = PatchParams::apply(FIELD_MANAGER).force();
            cms.patch(&cm_name, &apply, &Patch::Apply(&hp.config_map))
                .await
                .map_err(|e| anyhow::anyhow!("cannot create ConfigMap {ns}/{cm_name}: {}", diagnose::api_error(&e)))?;
            let mut abandoned = Abandoned(Some((pods.clone(), cms.clone(), hp.name(), cm_name.clone())));
            let result = match pods.create(&PostParams::default(), &hp.pod).await {
                Ok(_) => self.run(&client, &hp, &job).await,
                Err(e) => Err(anyhow::anyhow!("cannot create pod {ns}/{}: {}", hp.name(), diagnose::api_error(&e))),
            };
            // Always clean up; a failure to is worth a line, not the run's result.
            abandoned.0 = None;
            let now = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
            for (what, outcome) in [
                (format!("pod {ns}/{}", hp.name()), pods.delete(&hp.name(), &now).await.map(|_| ())),
                (format!("ConfigMap {ns}/{cm_name}"), cms.delete(&cm_name, &DeleteParams::default()).await.map(|_| ())),
            ] {
                match outcome {
                    Ok(()) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => say!("warning: could not delete {what}: {}", diagnose::api_error(&e)),
                }
            }
            result
        })
    }
}

/// A harness pod and its ConfigMap whose launch was cancelled (Ctrl-C dropped the run):
/// deleted in the background on the runtime, which the build keeps running for its
/// teardown, instead of holding the pod for its hour of `sleep`.
struct Abandoned(Option<(Api<Pod>, Api<ConfigMap>, String, String)>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some((pods, cms, pod, cm)) = self.0.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let now = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                let _ = pods.delete(&pod, &now).await;
                let _ = cms.delete(&cm, &DeleteParams::default()).await;
            });
        }
    }
}

/// Runs `command` in the harness container and returns its standard output; a
/// non-zero exit is an error with its standard error.
async fn exec(pods: &Api<Pod>, name: &str, command: &[&str]) -> Result<Vec<u8>> {
    let params = AttachParams::default().container(CONTAINER).stdout(true).stderr(true).max_stdout_buf_size(1 << 20);
    let mut process = pods
        .exec(name, command.iter().copied(), &params)
        .await
        .map_err(|e| anyhow::anyhow!("exec in {name}: {}", diagnose::api_error(&e)))?;
    let (mut out, mut err) = (process.stdout().context("exec gave no stdout")?, process.stderr().context("exec gave no stderr")?);
    let status = process.take_status().context("exec gave no status")?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (a, b) = tokio::join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr));
    a.context("reading the exec's stdout")?;
    b.context("reading the exec's stderr")?;
    let status = status.await;
    process.join().await.map_err(|e| anyhow::anyhow!("exec in {name}: {e}"))?;
    match status {
        Some(s) if s.status.as_deref() == Some("Failure") => {
            bail!("`{}` failed in {name}: {} {}", command.join(" "), s.message.unwrap_or_default(), String::from_utf8_lossy(&stderr).trim())
        }
        _ => Ok(stdout),
    }
}

/// Streams `dir` out of the pod as a tar archive and unpacks it into `into`; returns
/// the number of files.
async fn collect(pods: &Api<Pod>, name: &str, dir: &str, into: &Path) -> Result<usize> {
    let archive = exec(pods, name, &["tar", "cf", "-", "-C", dir, "."]).await?;
    unpack(&archive, into)
}

/// Unpacks a tar archive of regular files and directories into `into`, refusing
/// anything that would land outside it.
pub fn unpack(archive: &[u8], into: &Path) -> Result<usize> {
    let mut files = 0;
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().context("the results archive is not a tar stream")? {
        let mut entry = entry.context("the results archive is damaged")?;
        let path = entry.path()?.into_owned();
        if path.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir)) {
            bail!("the results archive holds a path outside its directory: {}", path.display());
        }
        let out = into.join(&path);
        match entry.header().entry_type() {
            tar::EntryType::Directory => std::fs::create_dir_all(&out)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes)?;
                std::fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
                files += 1;
            }
            // Links and devices have no place in harness results.
            _ => {}
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn template() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "llmdbench-harness-launcher", "namespace": "bench", "labels": {"app": "llmdbench-harness-launcher"}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "harness", "image": "ghcr.io/llm-d/llm-d-benchmark:v1", "command": ["llm-d-benchmark.sh"],
                "env": [{"name": "LLMDBENCH_HARNESS_STACK_ENDPOINT_URL", "value": "http://placeholder"}],
                "volumeMounts": [{"name": "results", "mountPath": "/requests"}]}],
                "volumes": [{"name": "results", "persistentVolumeClaim": {"claimName": "workload-pvc"}}]}
        })
    }

    fn job(harness: &'static str) -> LaunchJob<'static> {
        LaunchJob {
            harness,
            eid: "inference-perf-rate-8-1764500000-ab12cd",
            instance: 2,
            profile_name: "sanity_random-rate-8.yaml",
            profile_text: "load: {}\n",
            model: "facebook/opt-125m",
            dir: Path::new("/nonexistent"),
            timeout: Duration::from_secs(600),
            progress: None,
        }
    }

    fn pod(harness: &'static str, image: Option<&'static str>) -> Result<HarnessPod> {
        harness_pod(&template(), &job(harness), &PodInputs { endpoint: "http://vllm.bench.svc.cluster.local:8000", llmd_image: image })
    }

    #[test]
    fn external_harnesses_run_the_plans_image_wrapped_to_hold_for_collection() {
        let hp = pod("inference-perf", None).unwrap();
        assert_eq!(hp.name(), "llmdbench-harness-launcher-ab12cd-2");
        assert_eq!(hp.results, "/requests/inference-perf-rate-8-1764500000-ab12cd_2");
        let c = &hp.pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/llm-d/llm-d-benchmark:v1"));
        let cmd = c.command.clone().unwrap();
        assert_eq!(&cmd[..2], ["/bin/sh", "-c"]);
        assert!(cmd[2].contains("echo $? > /tmp/llmd-exit-code"), "{cmd:?}");
        assert_eq!(&cmd[4..], ["llm-d-benchmark.sh"]);
        let env: BTreeMap<String, String> = c.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
        assert_eq!(env["LLMDBENCH_HARNESS_STACK_ENDPOINT_URL"], "http://vllm.bench.svc.cluster.local:8000");
        assert_eq!(env["LLMDBENCH_RUN_EXPERIMENT_RESULTS_DIR"], hp.results);
        assert_eq!(env["LLMDBENCH_HARNESS_WORKLOAD"], "sanity_random-rate-8.yaml");
        let mounts: Vec<String> = c.volume_mounts.iter().flatten().map(|m| m.mount_path.clone()).collect();
        assert_eq!(mounts, ["/requests", "/workspace/profiles/inference-perf"]);
        let cm = &hp.config_map;
        assert_eq!(cm.metadata.name.as_deref(), Some("llmdbench-harness-launcher-ab12cd-2-profile"));
        assert_eq!(cm.data.as_ref().unwrap()["sanity_random-rate-8.yaml"], "load: {}\n");
        let labels = hp.pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["llmd.dev/role"], "harness");
        assert_eq!(labels["app"], "llmdbench-harness-launcher");
    }

    #[test]
    fn the_native_harness_needs_an_llmd_image_and_runs_llmd_load() {
        let e = pod("llmd", None).unwrap_err();
        assert!(format!("{e:#}").contains("--llmd-image"), "{e:#}");
        let hp = pod("llmd", Some("registry.example/llmd:0.1")).unwrap();
        let c = &hp.pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example/llmd:0.1"));
        let cmd = c.command.clone().unwrap();
        assert_eq!(&cmd[4..7], ["llmd", "load", "--profile"]);
        assert_eq!(cmd[7], "/workspace/profiles/llmd/sanity_random-rate-8.yaml");
        assert!(cmd.windows(2).any(|w| w == ["--output", hp.results.as_str()]));
    }

    #[test]
    fn pod_names_are_dns_labels() {
        let long = "A_very_long_harness_name_that_goes_on_and_on_and_on_beyond_sixty_three";
        let n = pod_name(long, "ab12cd-1");
        assert!(n.len() <= 63 && n.ends_with("-ab12cd-1"), "{n}");
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{n}");
    }

    #[test]
    fn archives_unpack_inside_their_directory_only() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "./sub/report.json", &b"{}\n"[..]).unwrap();
        let good = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unpack(&good, dir.path()).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/report.json")).unwrap(), "{}\n");

        let mut raw = good.clone();
        // Rewrite the entry's name to escape the directory (and fix the checksum).
        raw[..100].fill(0);
        raw[..13].copy_from_slice(b"../escape.txt");
        let mut h = tar::Header::from_byte_slice(&raw[..512]).clone();
        h.set_cksum();
        raw[..512].copy_from_slice(h.as_bytes());
        assert!(unpack(&raw, dir.path()).is_err());
        assert!(!dir.path().parent().unwrap().join("escape.txt").exists());
    }
}
