//! Method modelservice on the kube backend, end to end: `examples/multi-model` (two
//! models behind one gateway) stood up with helm — the gateway provider, the shared
//! `infra-llmdbench` gateway release, a router and an llm-d-modelservice release per
//! stack — then the plan's HTTPRoute and Services by server-side apply.
//!
//! On the in-process fake API server, `helm` is a stand-in on PATH
//! (`support/helm_standin.py`): it records every call and its values files, keeps
//! releases as helm does (storage Secrets in the cluster, which llmd reads back), and
//! makes each chart's workloads, Services, Gateway and InferencePool in the fake. With
//! `LLMD_TEST_KUBECONFIG` the same tests run real helm against a real cluster (the
//! assertions on helm's call log are then skipped; the cluster's state is checked).

#[path = "support/fakekube.rs"]
mod fakekube;
#[path = "support/kubeplay.rs"]
mod kubeplay;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use fakekube::Cluster;
use serde_json::Value;
use support::{llmd, run};

const NS: &str = "llmd-ms-test";
const STACKS: [&str; 2] = ["qwen3-06b", "llama-31-8b"];

/// Where helm comes from: the stand-in (fake cluster) or the real one on PATH.
struct Helm {
    /// A directory with a `helm` wrapper, put first on PATH; `None` for real helm.
    standin: Option<(tempfile::TempDir, PathBuf)>,
}

impl Helm {
    fn for_cluster(cluster: &Cluster) -> Helm {
        if cluster.fake().is_none() {
            return Helm { standin: None };
        }
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/helm_standin.py");
        let wrapper = dir.path().join("helm");
        std::fs::write(&wrapper, format!("#!/bin/sh\nexec python3 '{}' \"$@\"\n", script.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("calls.jsonl");
        Helm { standin: Some((dir, log)) }
    }

    /// Puts the stand-in first on PATH and has it log to this test's file.
    fn wire(&self, c: &mut Command) {
        if let Some((dir, log)) = &self.standin {
            let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
            c.env("PATH", path).env("HELM_STANDIN_LOG", log).env_remove("LLMD_HELM");
        }
    }

    /// Every helm call so far (`None` with real helm).
    fn calls(&self) -> Option<Vec<Value>> {
        let (_, log) = self.standin.as_ref()?;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Some(text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    }

    /// The release names of the calls of `verb` (`upgrade`, `uninstall`) since call `from`.
    fn released(&self, verb: &str, from: usize) -> Option<Vec<String>> {
        Some(
            self.calls()?
                .iter()
                .skip(from)
                .filter(|c| c["argv"][0] == verb)
                .map(|c| c["argv"][if verb == "upgrade" { 2 } else { 1 }].as_str().unwrap().to_string())
                .collect(),
        )
    }

    fn count(&self) -> usize {
        self.calls().map_or(0, |c| c.len())
    }
}

/// `llmd plan` of `examples/multi-model` in namespace [`NS`].
fn plan_cmd(ws: &Path) -> Command {
    let mut c = llmd();
    c.args(["plan", "--spec", "examples/multi-model", "-p", NS]).arg("--workspace").arg(ws);
    c
}

/// `llmd <sub…>` on `examples/multi-model` in namespace [`NS`], small volumes.
fn ms_cmd(cluster: &Cluster, helm: &Helm, ws: &Path, sub: &[&str]) -> Command {
    let mut c = llmd();
    c.args(sub);
    c.args(["--backend", "kube", "--spec", "examples/multi-model", "-p", NS, "--standalone-deploy-timeout", "120"]);
    c.args(["--pvc-bind-timeout", "60", "--set", "storage.modelPvc.size=1Gi", "--set", "storage.workloadPvc.size=1Gi"]);
    c.arg("--kubeconfig").arg(cluster.kubeconfig()).arg("--workspace").arg(ws);
    helm.wire(&mut c);
    c
}

/// The name of `stack`'s llm-d-modelservice release, from the plan's helm-commands.txt.
fn model_server_release(ws: &Path, stack: &str) -> String {
    let plan = run(&mut plan_cmd(ws));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let commands = std::fs::read_to_string(ws.join(format!("plan/{stack}/helm/helm-commands.txt"))).unwrap();
    let ms = commands.lines().find(|l| l.starts_with("helm upgrade --install") && l.contains("-ms ")).unwrap();
    ms.split_whitespace().nth(3).unwrap().to_string()
}

fn receipt(ws: &Path, stack: &str) -> Value {
    let text = std::fs::read_to_string(ws.join(format!("receipts/{stack}.json"))).unwrap_or_else(|_| panic!("a receipt for {stack}"));
    serde_json::from_str(&text).unwrap()
}

fn releases(receipt: &Value) -> Vec<Value> {
    receipt["body"]["releases"].as_array().cloned().unwrap_or_default()
}

/// The stack's own releases' names (router, model servers).
fn own_releases(receipt: &Value) -> Vec<String> {
    releases(receipt).iter().filter(|r| r["scope"] == "stack").map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn two_modelservice_stacks_share_one_gateway_and_upgrade_only_what_changed() {
    let cluster = Cluster::for_test();
    let helm = Helm::for_cluster(&cluster);
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "standup: {}", r.stderr);
    let (a, b) = (receipt(ws.path(), STACKS[0]), receipt(ws.path(), STACKS[1]));
    let (own_a, own_b) = (own_releases(&a), own_releases(&b));
    assert_eq!(own_a.len(), 2, "router and model servers: {own_a:?}");
    assert!(own_a[0].ends_with("-router") && own_a[1].ends_with("-ms"), "router first: {own_a:?}");
    for rec in [&a, &b] {
        let shared: Vec<Value> = releases(rec).into_iter().filter(|r| r["scope"] == "shared").collect();
        assert_eq!(shared.len(), 1, "both stacks use the shared gateway: {rec}");
        assert_eq!(shared[0]["name"], "infra-llmdbench");
        assert!(releases(rec).iter().all(|r| r["revision"].as_i64() >= Some(1) && !r["values_digest"].as_str().unwrap().is_empty()));
    }
    // The shared route (mode: shared) gives each stack a path prefix on the gateway.
    assert_eq!(b["body"]["endpoint"]["name"], "infra-llmdbench-inference-gateway-istio", "{}", b["body"]["endpoint"]);
    assert_eq!(b["body"]["endpoint"]["path"], format!("/{}", STACKS[1]));
    assert_eq!(b["body"]["endpoint"]["port"], 80);

    if let Some(installs) = helm.released("upgrade", 0) {
        let mut want = vec!["istio-base".to_string(), "istiod".into(), "infra-llmdbench".into()];
        want.extend(own_a.iter().cloned());
        want.extend(own_b.iter().cloned());
        let mut got = installs.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "the provider and the shared gateway once, router + model servers per stack: {installs:?}");
        // Each stack installs its router before its model servers.
        let pos = |n: &str| installs.iter().position(|x| x == n).unwrap();
        assert!(pos(&own_a[0]) < pos(&own_a[1]) && pos(&own_b[0]) < pos(&own_b[1]));
        // The values helm got are the plan's values files.
        let calls = helm.calls().unwrap();
        let ms = calls.iter().find(|c| c["argv"][2] == own_b[1].as_str()).unwrap();
        let plan_values = std::fs::read_to_string(ws.path().join(format!("plan/{}/13_ms-values.yaml", STACKS[1]))).ok();
        let sent: Vec<&str> = ms["values"].as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(sent.len(), 1);
        if let Some(plan_values) = plan_values {
            assert_eq!(sent[0], plan_values);
        }
        assert!(sent[0].contains("replicas: 2"), "llama's two decode replicas: {}", sent[0]);
    }
    if let Some(fake) = cluster.fake() {
        let routes = fake.list("HTTPRoute");
        assert_eq!(routes.len(), 1, "one shared route");
        assert_eq!(routes[0]["spec"]["rules"].as_array().unwrap().len(), 2, "a rule per stack");
        assert_eq!(routes[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"], "llmd");
        let pools = fake.list("InferencePool");
        assert_eq!(pools.len(), 2);
        assert!(pools.iter().all(|p| p["status"]["parents"][0]["conditions"][0]["type"] == "Accepted"), "{pools:?}");
        let decode: Vec<Value> =
            fake.list("Deployment").into_iter().filter(|d| d["metadata"]["name"].as_str().unwrap().ends_with("-decode")).collect();
        let mut replicas: Vec<i64> = decode.iter().map(|d| d["spec"]["replicas"].as_i64().unwrap()).collect();
        replicas.sort();
        assert_eq!(replicas, [1, 2]);
    }

    // kubectl (a real client) sees what the stand-in and llmd made: the fake's discovery
    // of the gateway and inference groups, and helm's release Secrets.
    if let (Some(_), Ok(out)) = (cluster.fake(), Command::new("kubectl").args(["version", "--client"]).output())
        && out.status.success()
    {
        let get = |what: &[&str]| -> Value {
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(cluster.kubeconfig())
                .args(what)
                .args(["-n", NS, "-o", "json"])
                .output()
                .unwrap();
            assert!(out.status.success(), "kubectl {what:?}: {}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        };
        assert_eq!(get(&["get", "inferencepools.inference.networking.k8s.io"])["items"].as_array().unwrap().len(), 2);
        assert_eq!(get(&["get", "gateways.gateway.networking.k8s.io"])["items"][0]["status"]["conditions"][1]["type"], "Programmed");
        let releases = get(&["get", "secrets", "-l", "owner=helm,managedBy=llmd"]);
        assert_eq!(releases["items"].as_array().unwrap().len(), 5, "the gateway and two releases per stack in {NS}");
    }

    // The same plan again: both live, nothing installed.
    let before = helm.count();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.matches("left as is").count() >= 2, "{}", r.stderr);
    assert_eq!(helm.count(), before, "no helm call for live stacks");

    // One stack's values change: only its model-server release is upgraded, in place.
    let before = helm.count();
    let mut c = ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest"]);
    let r = run(c.args(["--set", &format!("{}:decode.replicas=3", STACKS[1])]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    if let Some(upgrades) = helm.released("upgrade", before) {
        assert_eq!(upgrades, [own_b[1].clone()], "only the changed release: {upgrades:?}\n{}", r.stderr);
    }
    let b2 = receipt(ws.path(), STACKS[1]);
    let rev = |rec: &Value, name: &str| releases(rec).iter().find(|r| r["name"] == name).unwrap()["revision"].as_i64().unwrap();
    assert_eq!(rev(&b2, &own_b[1]), rev(&b, &own_b[1]) + 1, "an upgrade, not a reinstall");
    assert_eq!(rev(&b2, &own_b[0]), rev(&b, &own_b[0]), "the router untouched");
    if let Some(fake) = cluster.fake() {
        let name = format!("{}-decode", own_b[1].trim_end_matches("-ms"));
        assert_eq!(fake.get("Deployment", NS, &name).unwrap()["spec"]["replicas"], 3);
    }

    // Someone upgrades a release behind llmd's back: check says drifted.
    if let Some((standin_dir, _)) = &helm.standin {
        let before = helm.count();
        let mut c = ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest"]);
        c.args(["--set", &format!("{}:decode.replicas=3", STACKS[1])]);
        let values = ws.path().join("edited.yaml");
        std::fs::write(&values, "decode:\n  replicas: 1\n").unwrap();
        let mut edit = Command::new(standin_dir.path().join("helm"));
        helm.wire(&mut edit);
        let ok = edit.args(["upgrade", "--install", &own_b[1], "llm-d-modelservice", "--namespace", NS, "-f"]).arg(&values);
        assert!(ok.arg("--kubeconfig").arg(cluster.kubeconfig()).status().unwrap().success());
        let r = run(&mut c);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("its values were changed"), "{}", r.stderr);
        assert_eq!(helm.released("upgrade", before + 1).unwrap(), [own_b[1].clone()], "re-installed from the plan");
    }

    // Tearing down the first stack keeps the shared gateway for the second.
    let before = helm.count();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["teardown", "--stack", STACKS[0]]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("kept shared helm release {NS}/infra-llmdbench: stack(s) {} still use it", STACKS[1])),
        "{}",
        r.stderr
    );
    if let Some(uninstalls) = helm.released("uninstall", before) {
        let mut want = own_a.clone();
        want.reverse();
        assert_eq!(uninstalls, want, "exactly the stack's own releases, newest first");
    }
    // The last user takes it along; the cluster-wide provider stays.
    let before = helm.count();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["teardown"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    if let Some(uninstalls) = helm.released("uninstall", before) {
        let mut want = own_b.clone();
        want.reverse();
        want.push("infra-llmdbench".into());
        assert_eq!(uninstalls, want);
    }
    if let Some(fake) = cluster.fake() {
        let left: Vec<String> = fake.list("Deployment").iter().map(|d| d["metadata"]["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(left, ["istiod"], "only the cluster-wide controller is left");
        let secrets = fake.list("Secret");
        let releases: Vec<&str> = secrets
            .iter()
            .filter(|s| s["metadata"]["labels"]["owner"] == "helm")
            .map(|s| s["metadata"]["labels"]["name"].as_str().unwrap())
            .collect();
        assert!(releases.iter().all(|r| r.starts_with("istio")), "{releases:?}");
        assert!(fake.list("HTTPRoute").is_empty() && fake.list("InferencePool").is_empty());
    }
}

#[test]
fn non_admin_installs_no_cluster_scoped_object() {
    use k8s_openapi::api::core::v1::Namespace;
    let cluster = Cluster::for_test();
    let helm = Helm::for_cluster(&cluster);
    // An admin made the namespace (and installed the gateway controller and CRDs).
    rt().block_on(async {
        let api: kube::Api<Namespace> = kube::Api::all(client(&cluster).await);
        if api.get_opt(NS).await.unwrap().is_none() {
            let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap();
            api.create(&Default::default(), &ns).await.unwrap();
        }
    });
    let requests_before = cluster.fake().map_or(0, |f| f.requests().len());
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest", "--non-admin"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--non-admin: not installing cluster-wide helm release istio-system/istiod"), "{}", r.stderr);
    if let Some(calls) = helm.calls() {
        let upgrades: Vec<&Value> = calls.iter().filter(|c| c["argv"][0] == "upgrade").collect();
        assert!(!upgrades.is_empty());
        for c in &upgrades {
            let argv: Vec<&str> = c["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            assert!(argv.contains(&"--skip-crds") && !argv.contains(&"--create-namespace"), "{argv:?}");
            assert!(!argv[2].starts_with("istio"), "no gateway provider: {argv:?}");
        }
    }
    if let Some(fake) = cluster.fake() {
        // Every write (llmd's and helm's) went to a namespaced path.
        let writes: Vec<String> = fake.requests()[requests_before..]
            .iter()
            .filter(|r| ["PATCH", "POST", "PUT", "DELETE"].iter().any(|m| r.starts_with(m)))
            .cloned()
            .collect();
        assert!(!writes.is_empty());
        let cluster_scoped: Vec<&String> = writes
            .iter()
            .filter(|r| {
                let path = r.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("");
                let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
                let ns_at = if segs.first() == Some(&"api") { 2 } else { 3 };
                !(segs.get(ns_at) == Some(&"namespaces") && segs.len() > ns_at + 2)
            })
            .collect();
        assert!(cluster_scoped.is_empty(), "cluster-scoped writes: {cluster_scoped:?}");
    }
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["teardown"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn non_admin_names_a_missing_namespace_before_touching_anything() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: needs a cluster without the namespace");
        return;
    };
    let helm = Helm::for_cluster(&cluster);
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest", "--non-admin"]));
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("namespace '{NS}' does not exist, and --non-admin creates no cluster-scoped object")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&format!("kubectl create namespace {NS}")), "a suggestion: {}", r.stderr);
    assert_eq!(helm.released("upgrade", 0).unwrap(), Vec::<String>::new(), "no release installed");
    assert!(fake.requests().iter().all(|r| !r.starts_with("PATCH") && !r.starts_with("POST")), "nothing applied");
}

#[test]
fn deep_teardown_uninstalls_the_releases_llmd_installed() {
    let cluster = Cluster::for_test();
    let helm = Helm::for_cluster(&cluster);
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The receipts are lost: only --deep finds what is left.
    std::fs::remove_dir_all(ws.path().join("receipts")).unwrap();
    let before = helm.count();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["teardown", "--deep", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("helm release {NS}/infra-llmdbench")), "{}", r.stderr);
    if let Some(mut uninstalls) = helm.released("uninstall", before) {
        uninstalls.sort();
        assert_eq!(uninstalls.len(), 5, "the shared gateway and both stacks' two releases: {uninstalls:?}");
        assert!(uninstalls.contains(&"infra-llmdbench".to_string()));
    }
    if let Some(fake) = cluster.fake() {
        let left: Vec<Value> = fake.list("Deployment").into_iter().filter(|d| d["metadata"]["namespace"] == NS).collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn a_failing_release_names_helm_output_and_leaves_nothing_of_the_stack() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: the failure is injected into the helm stand-in");
        return;
    };
    let helm = Helm::for_cluster(&cluster);
    let ws = tempfile::tempdir().unwrap();
    let release = model_server_release(ws.path(), STACKS[0]);
    let mut c = ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest", "--stack", STACKS[0]]);
    let r = run(c.env("HELM_STANDIN_FAIL", &release));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("installing helm release {NS}/{release}")), "{}", r.stderr);
    assert!(r.stderr.contains("UPGRADE FAILED"), "helm's own words: {}", r.stderr);
    assert!(!ws.path().join(format!("receipts/{}.json", STACKS[0])).exists(), "no receipt for a failed standup");
    let uninstalls = helm.released("uninstall", 0).unwrap();
    assert_eq!(uninstalls.len(), 1, "the router installed before the failure is removed: {uninstalls:?}");
    assert!(uninstalls[0].ends_with("-router"));
    assert!(fake.list("HTTPRoute").is_empty(), "the stack's route was never applied");
}

/// A secret in a values file reaches helm (from a private directory that is gone once
/// helm is done) and nothing llmd keeps: the workspace's copy holds the placeholder.
#[test]
fn a_secret_in_helm_values_reaches_helm_but_not_the_workspace() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: the values helm received are read from the stand-in's release record");
        return;
    };
    let helm = Helm::for_cluster(&cluster);
    let ws = tempfile::tempdir().unwrap();
    let key = "sk-helmValuesSecret0123456789";
    let mut c = ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest", "--stack", STACKS[0]]);
    c.args(["--set", &format!("decode.extraEnvVars=[{{name: OPENAI_API_KEY, value: {key}}}]")]);
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains(key) && !r.stdout.contains(key), "{}", r.stderr);
    let release_values = |secret: &Value| -> String {
        use base64::Engine;
        use std::io::Read;
        let b64 = base64::engine::general_purpose::STANDARD;
        let outer = b64.decode(secret["data"]["release"].as_str().unwrap_or_default()).unwrap_or_default();
        let gz = b64.decode(outer).unwrap_or_default();
        let mut json = String::new();
        let _ = flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut json);
        json
    };
    let releases: Vec<String> = fake.list("Secret").iter().filter(|s| s["type"] == "helm.sh/release.v1").map(release_values).collect();
    assert!(releases.iter().any(|r| r.contains(key)), "helm installed a release with the secret: {releases:?}");
    for file in support::files_under(ws.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(ws.path().join(&file)).unwrap()).into_owned();
        assert!(!text.contains(key), "{} holds the secret", file.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llmd-helm-values-"))
        .filter(|e| {
            std::fs::read_dir(e.path())
                .is_ok_and(|d| d.flatten().any(|f| std::fs::read(f.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(key))))
        })
        .collect();
    assert!(leftovers.is_empty(), "the private values files are removed: {leftovers:?}");
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["teardown"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_standup_killed_during_helm_recovers_the_pending_release() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: the hang is injected into the helm stand-in");
        return;
    };
    let helm = Helm::for_cluster(&cluster);
    let ws = tempfile::tempdir().unwrap();
    let release = model_server_release(ws.path(), STACKS[0]);
    let mut c = ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest", "--stack", STACKS[0]]);
    let mut child = c.env("HELM_STANDIN_HANG", &release).stderr(std::process::Stdio::null()).spawn().unwrap();
    // kill -9 once helm has recorded the release as pending-install.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fake.list("Secret").iter().any(|s| s["metadata"]["labels"]["name"] == release.as_str()) {
        assert!(std::time::Instant::now() < deadline, "helm never started on {release}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = helm.count();
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["standup", "--skip-smoketest", "--stack", STACKS[0]]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("was left pending-install by an interrupted helm run: recovering it"), "{}", r.stderr);
    assert_eq!(helm.released("uninstall", before).unwrap(), std::slice::from_ref(&release), "the pending release is removed");
    assert!(helm.released("upgrade", before).unwrap().contains(&release), "and installed again");
    let rec = receipt(ws.path(), STACKS[0]);
    assert!(releases(&rec).iter().any(|r| r["name"] == release.as_str() && r["revision"] == 1), "{rec}");
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["teardown"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn plan_lists_the_helm_commands_and_dry_run_prints_them() {
    let cluster = Cluster::for_test();
    let helm = Helm::for_cluster(&cluster);
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut plan_cmd(ws.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(ws.path().join(format!("plan/{}/helm/helm-commands.txt", STACKS[1]))).unwrap();
    let commands: Vec<&str> = text.lines().filter(|l| l.starts_with("helm ")).collect();
    assert_eq!(commands.len(), 5, "{text}");
    assert!(commands[2].starts_with("helm upgrade --install infra-llmdbench llm-d-infra --repo https://"), "{text}");
    assert!(commands[4].contains(&format!("--namespace {NS} -f 13_ms-values.yaml --labels managedBy=llmd")), "{text}");
    let r = run(&mut ms_cmd(&cluster, &helm, ws.path(), &["--dry-run", "standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("helm upgrade --install infra-llmdbench"), "{out}");
    assert_eq!(helm.released("upgrade", 0).unwrap_or_default(), Vec::<String>::new(), "a dry run installs nothing");
    assert!(!ws.path().join("receipts").exists() || std::fs::read_dir(ws.path().join("receipts")).unwrap().next().is_none());
}

const MS_EXPERIMENT: &str = "\
experiment:
  name: ms-build
  spec: examples/multi-model
  harness: llmd
  profile: sanity_random.yaml
setup:
  treatments:
    - name: a
      namespace.name: llmd-ms-build
      httpRoute.mode: per-stack
      storage.modelPvc.size: 1Gi
      storage.workloadPvc.size: 1Gi
      model.maxModelLen: 1024
constants:
  load.stages.0.duration: 1
treatments:
  - name: r
    load.stages.0.rate: 4
";

#[test]
fn a_run_treatment_rebuild_with_kept_stacks_calls_helm_zero_times() {
    let cluster = Cluster::for_test();
    let Some(image) = kubeplay::llmd_image(&cluster) else { return };
    let helm = Helm::for_cluster(&cluster);
    let _sim = kubeplay::serve_with_sim(
        &cluster,
        &["--model", "Qwen/Qwen3-0.6B", "--served-model-name", "Qwen/Qwen3-0.6B,meta-llama/Llama-3.1-8B-Instruct"],
    );
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.yaml");
    std::fs::write(&exp, MS_EXPERIMENT).unwrap();
    let build = || {
        let mut c = llmd();
        c.arg("build").arg(&exp).args(["--json", "--keep-stacks", "--harness-timeout", "120"]);
        c.args(["--backend", "kube", "--standalone-deploy-timeout", "120", "--llmd-image", &image]);
        c.arg("--kubeconfig").arg(cluster.kubeconfig()).arg("--workspace").arg(dir.path().join("ws"));
        c.env("LLMD_CACHE_DIR", dir.path().join("cache"));
        helm.wire(&mut c);
        let r = run(&mut c);
        let report: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr));
        assert_eq!(r.code, 0, "{}\n{report}", r.stderr);
        let mut ran: Vec<String> = report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["status"] == "ran")
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        ran.sort();
        ran
    };
    let first = build();
    assert_eq!(first.iter().filter(|id| id.starts_with("standup/")).count(), 2, "{first:?}");
    assert_eq!(first.iter().filter(|id| id.starts_with("run/")).count(), 2, "a run per stack: {first:?}");
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ws/setup-treatment-a/receipts/qwen3-06b.json")).unwrap()).unwrap();
    assert_eq!(rec["body"]["endpoint"]["name"], "infra-llmdbench-inference-gateway-istio", "runs go through the gateway");
    let results = dir.path().join("ws/setup-treatment-a/results");
    let reports = support::files_under(&results).into_iter().filter(|p| p.ends_with("report.json")).count();
    assert_eq!(reports, 2, "a benchmark report per stack");

    let before = helm.count();
    std::fs::write(&exp, MS_EXPERIMENT.replace("rate: 4", "rate: 6")).unwrap();
    let second = build();
    assert!(second.iter().all(|id| !id.starts_with("standup/") && !id.starts_with("plan/")), "nothing redeployed: {second:?}");
    assert_eq!(second.iter().filter(|id| id.starts_with("run/")).count(), 2, "{second:?}");
    assert_eq!(helm.count(), before, "a run-treatment rebuild runs helm zero times");

    let mut down = llmd();
    down.arg("teardown").arg("--kubeconfig").arg(cluster.kubeconfig()).arg("--workspace").arg(dir.path().join("ws/setup-treatment-a"));
    helm.wire(&mut down);
    let r = run(&mut down);
    assert_eq!(r.code, 0, "{}", r.stderr);
    if let Some(uninstalls) = helm.released("uninstall", before) {
        assert_eq!(uninstalls.len(), 5, "two stacks' router and model servers, then the shared gateway: {uninstalls:?}");
        assert_eq!(uninstalls.last().map(String::as_str), Some("infra-llmdbench"));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A kube client for the test cluster (an admin's actions).
async fn client(cluster: &Cluster) -> kube::Client {
    llmd::backend::kube::cluster::install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}
