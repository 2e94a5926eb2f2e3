//! The kube backend end to end, driving the `llmd` binary against a cluster reached
//! over HTTP through a kubeconfig: the in-process fake API server
//! (`support/fakekube.rs`), or a real cluster when `LLMD_TEST_KUBECONFIG` is set (the
//! same tests; see the README's "Benchmark on a cluster").
//!
//! The test stack is `examples/gpu` made to run anywhere: no accelerator, a busybox
//! `httpd` answering `/health` in place of vLLM, a tiny public model.

#[path = "support/fakekube.rs"]
mod fakekube;
#[path = "support/kubeplay.rs"]
mod kubeplay;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fakekube::Cluster;
use kubeplay::{llmd_image, serve_with_sim};
use serde_json::Value;
use support::{llmd, run};

const NS: &str = "llmd-test";

/// `--set` values that make `examples/gpu` a stack any cluster can run.
fn test_stack(command: &str) -> Vec<String> {
    let sets = [
        "model.name=sshleifer/tiny-gpt2".to_string(),
        "accelerator.count=0".into(),
        "standalone.image.repository=docker.io/library/busybox".into(),
        "standalone.image.tag=1.36".into(),
        "vllmCommon.shell=/bin/sh".into(),
        format!("standalone.vllm.customCommand={command}"),
        "standalone.resources.limits.cpu=100m".into(),
        "standalone.resources.limits.memory=64Mi".into(),
        "standalone.resources.requests.cpu=100m".into(),
        "standalone.resources.requests.memory=64Mi".into(),
        "standalone.probes.startup.initialDelaySeconds=0".into(),
        "standalone.probes.startup.periodSeconds=1".into(),
        "standalone.probes.readiness.periodSeconds=1".into(),
        "storage.modelPvc.size=1Gi".into(),
        "storage.workloadPvc.size=1Gi".into(),
    ];
    sets.into_iter().flat_map(|s| ["--set".to_string(), s]).collect()
}

const SERVE: &str = "mkdir -p /w && echo ok > /w/health && httpd -f -p 8000 -h /w";

/// Tears down what a build left in the setup workspace `ws` (its receipts name the stacks).
fn teardown(cluster: &Cluster, ws: &Path) {
    let mut down = llmd();
    down.arg("teardown").arg("--backend").arg("kube").arg("--kubeconfig").arg(cluster.kubeconfig()).arg("--workspace").arg(ws);
    let r = run(&mut down);
    assert_eq!(r.code, 0, "teardown of {}: {}", ws.display(), r.stderr);
}

/// `llmd <sub...>` on the test stack (subcommand first: `-p` belongs to it).
fn kube_cmd(cluster: &Cluster, ws: &Path, command: &str, sub: &[&str]) -> Command {
    let mut c = llmd();
    c.args(sub);
    c.args(["--backend", "kube", "--spec", "examples/gpu", "-p", NS, "--standalone-deploy-timeout", "120", "--pvc-bind-timeout", "60"]);
    c.arg("--kubeconfig").arg(cluster.kubeconfig());
    c.arg("--workspace").arg(ws);
    c.args(test_stack(command));
    c
}

fn receipt(ws: &Path) -> Value {
    let text = std::fs::read_to_string(ws.join("receipts/gpu.json")).expect("a receipt");
    serde_json::from_str(&text).unwrap()
}

fn objects(receipt: &Value) -> Vec<Value> {
    receipt["body"]["objects"].as_array().cloned().unwrap_or_default()
}

fn own<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    objs.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in the receipt"))
}

/// A kube client for the test cluster (someone else's edits).
async fn client(cluster: &Cluster) -> kube::Client {
    llmd::backend::kube::cluster::install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Kills `child` as soon as the fake holds a Deployment (the standup is then waiting
/// for it); returns that Deployment.
fn kill_once_applied(fake: &fakekube::FakeKube, child: &mut std::process::Child) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let dep = loop {
        if let Some(d) = fake.list("Deployment").into_iter().next() {
            break d;
        }
        assert!(Instant::now() < deadline, "the Deployment was never applied");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    dep
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn standup_reuse_drift_and_exact_teardown() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

    let cluster = Cluster::for_test();
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "standup: {}", r.stderr);
    assert!(r.stderr.contains("Deployment llmd-test/vllm-standalone-"), "{}", r.stderr);
    let rec = receipt(ws.path());
    assert_eq!(rec["backend"], "kube");
    let objs = objects(&rec);
    let dep = own(&objs, "Deployment").clone();
    let dep_name = dep["name"].as_str().unwrap().to_string();
    assert!(objs.iter().all(|o| !o["uid"].as_str().unwrap_or("").is_empty()), "every object has its UID: {objs:?}");
    assert!(own(&objs, "Namespace")["shared"].as_bool().unwrap());
    assert!(!dep["shared"].as_bool().unwrap());
    assert_eq!(rec["body"]["endpoint"]["name"], dep_name.as_str(), "the Service has the Deployment's name");
    if let Some(fake) = cluster.fake() {
        let live = fake.get("Deployment", NS, &dep_name).unwrap();
        assert_eq!(live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "llmd");
        assert_eq!(live["metadata"]["labels"]["llmd.dev/stack"], "gpu");
        assert_eq!(live["metadata"]["annotations"]["llmd.dev/plan-digest"], rec["plan_digest"]);
        let applies: Vec<String> = fake.requests().into_iter().filter(|r| r.starts_with("PATCH")).collect();
        assert!(applies.iter().all(|r| r.contains("fieldManager=llmd")), "{applies:?}");
        assert!(fake.list("Job").iter().all(|j| j["status"]["succeeded"] == 1), "the download Job completed");
    }

    // Live and from the same plan: left as is.
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("left as is"), "{}", r.stderr);
    assert_eq!(own(&objects(&receipt(ws.path())), "Deployment")["uid"], dep["uid"]);

    // Someone scales the Deployment: drifted, and standup replaces it.
    let rt = rt();
    rt.block_on(async {
        let c = client(&cluster).await;
        let api: kube::Api<Deployment> = kube::Api::namespaced(c, NS);
        let pp = PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
        api.patch(&dep_name, &pp, &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}}))).await.unwrap();
    });
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("spec was changed by kubectl-edit (generation 1 → 2)"), "{}", r.stderr);
    let rec = receipt(ws.path());
    let objs = objects(&rec);
    let dep2 = own(&objs, "Deployment").clone();
    assert_eq!(dep2["uid"], dep["uid"], "the drifted Deployment was re-applied in place");
    assert!(dep2["generation"].as_i64() > dep["generation"].as_i64(), "the receipt records the new generation: {dep2}");
    if let Some(fake) = cluster.fake() {
        assert_eq!(fake.get("Deployment", NS, &dep_name).unwrap()["spec"]["replicas"], 1, "the plan's replicas are back");
    }

    // Someone deletes the Service and makes their own under the same name, and keeps an
    // unrelated Deployment with the same name pattern.
    let svc = own(&objs, "Service").clone();
    rt.block_on(async {
        let c = client(&cluster).await;
        let svcs: kube::Api<Service> = kube::Api::namespaced(c.clone(), NS);
        svcs.delete(svc["name"].as_str().unwrap(), &DeleteParams::default()).await.unwrap();
        for _ in 0..100 {
            if svcs.get_opt(svc["name"].as_str().unwrap()).await.unwrap().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let theirs: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": svc["name"], "labels": {"owner": "someone-else"}},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "theirs"}}
        }))
        .unwrap();
        svcs.create(&PostParams::default(), &theirs).await.unwrap();
        let deps: kube::Api<Deployment> = kube::Api::namespaced(c, NS);
        let other: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{dep_name}-other")},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "other"}},
                     "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        deps.create(&PostParams::default(), &other).await.unwrap();
    });
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["teardown"]));
    assert_eq!(r.code, 0, "teardown: {}", r.stderr);
    assert!(!ws.path().join("receipts/gpu.json").exists(), "the receipt is removed");
    rt.block_on(async {
        let c = client(&cluster).await;
        let deps: kube::Api<Deployment> = kube::Api::namespaced(c.clone(), NS);
        assert!(deps.get_opt(&dep_name).await.unwrap().is_none(), "the stack's Deployment is deleted");
        assert!(deps.get_opt(&format!("{dep_name}-other")).await.unwrap().is_some(), "an unrelated Deployment survives");
        let svcs: kube::Api<Service> = kube::Api::namespaced(c.clone(), NS);
        let theirs = svcs.get(svc["name"].as_str().unwrap()).await.expect("someone else's Service under the same name survives");
        assert_eq!(theirs.metadata.labels.unwrap()["owner"], "someone-else");
        let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = kube::Api::namespaced(c, NS);
        assert!(pvcs.get_opt("model-pvc").await.unwrap().is_some(), "the shared model volume stays");
    });

    // A second teardown has nothing to do.
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["teardown"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to tear down") || r.stdout.contains("nothing to tear down"), "{}{}", r.stdout, r.stderr);
}

#[test]
fn standup_fails_fast_with_events_and_logs() {
    let cluster = Cluster::for_test();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "echo loading weights; echo 'RuntimeError - no GPU found' >&2; exit 3",
            &[],
            &["CrashLoopBackOff", "last exit code 3", "RuntimeError - no GPU found", "BackOff"],
        ),
        ("tail /dev/zero", &[], &["OOMKilled"]),
        (
            SERVE,
            &["--set", "standalone.image.repository=docker.io/library/does-not-exist-llmd"],
            &["ImagePull", "Failed to pull image", "not found"],
        ),
        (SERVE, &["--set", "accelerator.count=1000"], &["Unschedulable", "Insufficient nvidia.com/gpu", "FailedScheduling"]),
    ];
    for (command, extra, expect) in cases {
        let ws = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let r = run(kube_cmd(&cluster, ws.path(), command, &["standup", "--skip-smoketest"]).args(*extra));
        assert_ne!(r.code, 0, "{command}: standup should fail");
        for e in *expect {
            assert!(r.stderr.contains(e), "{command} {extra:?}: expected '{e}' in:\n{}", r.stderr);
        }
        assert!(started.elapsed() < Duration::from_secs(100), "failed fast, not at the 120 s timeout");
        assert!(!ws.path().join("receipts/gpu.json").exists(), "a failed standup leaves no receipt");
        if let Some(fake) = cluster.fake() {
            let deps = fake.list("Deployment");
            assert!(deps.is_empty(), "a failed standup removes the stack's Deployment: {deps:?}");
        }
    }
}

#[test]
fn an_interrupted_standup_is_reapplied_without_duplicates() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: the kill instant is timed against the fake's object list");
        return;
    };
    let ws = tempfile::tempdir().unwrap();
    // The server takes 2 s to become ready; the standup is killed while it waits.
    let slow = format!("sleep 2; {SERVE}");
    let mut child = kube_cmd(&cluster, ws.path(), &slow, &["standup", "--skip-smoketest"]).spawn().unwrap();
    let dep = kill_once_applied(fake, &mut child);
    assert!(!ws.path().join("receipts/gpu.json").exists(), "killed before its receipt");
    let r = run(&mut kube_cmd(&cluster, ws.path(), &slow, &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deps = fake.list("Deployment");
    assert_eq!(deps.len(), 1, "no duplicate Deployment");
    assert_eq!(deps[0]["metadata"]["uid"], dep["metadata"]["uid"], "re-applied in place (server-side apply)");
    assert_eq!(fake.list("Pod").iter().filter(|p| p["metadata"]["labels"]["job-name"].is_null()).count(), 1, "one serving pod");
    assert_eq!(own(&objects(&receipt(ws.path())), "Deployment")["uid"], dep["metadata"]["uid"]);
}

#[test]
fn kubectl_reads_the_fake() {
    let Ok(out) = Command::new("kubectl").arg("version").arg("--client").output() else {
        eprintln!("skipping: kubectl is not installed");
        return;
    };
    assert!(out.status.success());
    let fake = fakekube::FakeKube::start();
    let ws = tempfile::tempdir().unwrap();
    let cluster = Cluster::Real(fake.kubeconfig.clone());
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&fake.kubeconfig)
        .args(["get", "deployments", "-n", NS, "-l", "app.kubernetes.io/managed-by=llmd", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl: {}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["status"]["readyReplicas"], 1);
}

#[test]
fn dry_run_lists_the_objects_and_touches_nothing() {
    let cluster = Cluster::for_test();
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest", "--dry-run"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for what in [
        "Namespace llmd-test",
        "PersistentVolumeClaim llmd-test/model-pvc",
        "Job llmd-test/download-model",
        "Service llmd-test/vllm-standalone-",
    ] {
        assert!(r.stderr.contains(what), "dry run should list {what}:\n{}", r.stderr);
    }
    if let Some(fake) = cluster.fake() {
        assert!(fake.list("Deployment").is_empty() && fake.list("Job").is_empty(), "nothing applied");
    }
}

#[test]
fn server_dry_run_reports_admission_errors_and_changes_nothing() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{DeleteParams, PostParams};
    let cluster = Cluster::for_test();
    let ws = tempfile::tempdir().unwrap();
    let dry = |extra: &[&str]| run(kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--server-dry-run"]).args(extra));
    // Before its namespace exists, what lives in it cannot be judged: said, not failed.
    let r = dry(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("server dry run: Namespace llmd-test accepted"), "{}", r.stderr);
    assert!(r.stderr.contains("not checked (namespace llmd-test does not exist yet)"), "{}", r.stderr);
    let rt = rt();
    let namespaces: kube::Api<Namespace> = rt.block_on(async { kube::Api::all(client(&cluster).await) });
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap();
    rt.block_on(namespaces.create(&PostParams::default(), &ns)).unwrap();
    let r = dry(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("server dry run: Deployment llmd-test/vllm-standalone-") && r.stderr.contains("accepted"), "{}", r.stderr);
    // An object the API server refuses fails the dry run with the server's reason.
    let r = dry(&["--set", "standalone.resources.requests.cpu=200m"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("must be less than or equal to cpu limit"), "{}", r.stderr);
    assert!(r.stderr.contains("14_standalone-deployment.yaml:"), "names the plan file: {}", r.stderr);
    if let Some(fake) = cluster.fake() {
        assert!(fake.list("Deployment").is_empty() && fake.list("PersistentVolumeClaim").is_empty(), "nothing applied");
        assert!(fake.requests().iter().any(|r| r.starts_with("PATCH") && r.contains("dryRun=All")), "dry-run requests were sent");
    }
    assert!(!ws.path().join("receipts/gpu.json").exists());
    rt.block_on(namespaces.delete(NS, &DeleteParams::default())).unwrap();
}

/// Every object the shipped specifications render deserializes into its k8s-openapi
/// type and serializes back to the same JSON: a misspelt or misplaced field (dropped by
/// the typed round trip) fails here, not on a cluster.
#[test]
fn rendered_manifests_are_valid_kubernetes_objects() {
    use k8s_openapi::api::{apps, batch, core, rbac};
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
        let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    let mut checked = 0;
    for spec in ["examples/sim", "examples/gpu", "examples/multi-model", "guides/optimized-baseline"] {
        for monitoring in [false, true] {
            let ws = tempfile::tempdir().unwrap();
            let mut cmd = llmd();
            cmd.args(["plan", "--spec", spec]).arg("--workspace").arg(ws.path());
            if monitoring {
                cmd.arg("--monitoring");
            }
            let r = run(&mut cmd);
            assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
            for file in support::files_under(&ws.path().join("plan")) {
                let path = ws.path().join("plan").join(&file);
                let text = std::fs::read_to_string(&path).unwrap();
                let name = file.file_name().unwrap().to_string_lossy().to_string();
                let manifests = llmd::backend::standup_manifests(&[(name.clone(), text.clone())]);
                let harness = name.contains("harness_pod") && !text.trim().is_empty();
                // Helmfiles and helm values are checked by helm, not here.
                if !(manifests.iter().any(|m| m.is_object()) || harness) {
                    continue;
                }
                for doc in llmd::yaml::load::load_all_str(&text, &name).unwrap() {
                    if doc.is_null() {
                        continue;
                    }
                    let v = doc.to_json();
                    let kind = v["kind"].as_str().unwrap_or_default().to_string();
                    let back = match kind.as_str() {
                        "Namespace" => round_trip::<core::v1::Namespace>(&v),
                        "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(&v),
                        "Secret" => round_trip::<core::v1::Secret>(&v),
                        "ConfigMap" => round_trip::<core::v1::ConfigMap>(&v),
                        "PersistentVolumeClaim" => round_trip::<core::v1::PersistentVolumeClaim>(&v),
                        "Service" => round_trip::<core::v1::Service>(&v),
                        "Pod" => round_trip::<core::v1::Pod>(&v),
                        "Deployment" => round_trip::<apps::v1::Deployment>(&v),
                        "Job" => round_trip::<batch::v1::Job>(&v),
                        "Role" => round_trip::<rbac::v1::Role>(&v),
                        "RoleBinding" => round_trip::<rbac::v1::RoleBinding>(&v),
                        "ClusterRole" => round_trip::<rbac::v1::ClusterRole>(&v),
                        "ClusterRoleBinding" => round_trip::<rbac::v1::ClusterRoleBinding>(&v),
                        // CRDs (PodMonitor, HTTPRoute, …) have no k8s-openapi type.
                        _ => {
                            assert!(v["metadata"]["name"].is_string(), "{spec} {}: {kind} without metadata.name", file.display());
                            continue;
                        }
                    };
                    let back = back.unwrap_or_else(|e| panic!("{spec} {}: {kind} does not deserialize: {e}", file.display()));
                    assert_eq!(back, v, "{spec} {}: {kind} changed in a typed round trip (an unknown or misplaced field)", file.display());
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} objects checked");
}

#[test]
fn deep_teardown_sweeps_what_llmd_manages_in_the_namespace() {
    let cluster = Cluster::for_test();
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The receipt is lost (a deleted workspace): only --deep can find what is left.
    std::fs::remove_dir_all(ws.path().join("receipts")).unwrap();
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["teardown", "--deep", "--dry-run"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("would delete") && r.stderr.contains("Deployment llmd-test/vllm-standalone-"), "{}", r.stderr);
    // Without a terminal to ask on, --deep only lists unless told --yes.
    let r = run(kube_cmd(&cluster, ws.path(), SERVE, &["teardown", "--deep"]).stdin(std::process::Stdio::null()));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not deleted; pass --yes"), "{}", r.stderr);
    if let Some(fake) = cluster.fake() {
        assert_eq!(fake.list("Deployment").len(), 1, "nothing deleted without --yes");
    }
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["teardown", "--deep", "--yes"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("PersistentVolumeClaim llmd-test/model-pvc"), "shared objects are swept too: {}", r.stderr);
    if let Some(fake) = cluster.fake() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(fake.list("Deployment").is_empty() && fake.list("PersistentVolumeClaim").is_empty()) {
            assert!(Instant::now() < deadline, "swept objects are deleted");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(fake.get("Namespace", "", NS).is_some(), "the namespace itself stays");
    }
}

#[test]
fn careless_cluster_input_is_named_with_a_suggestion() {
    let fake = fakekube::FakeKube::start();
    let ws = tempfile::tempdir().unwrap();
    let standup = |extra: &[&str]| {
        let mut c = llmd();
        c.args(["standup", "--skip-smoketest", "--backend", "kube", "--spec", "examples/gpu"]).arg("--workspace").arg(ws.path());
        c.args(extra);
        run(&mut c)
    };
    let kc = fake.kubeconfig.to_str().unwrap();
    let r = standup(&["--kubeconfig", kc, "--context", "fak"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--context fak") && r.stderr.contains("did you mean 'fake'?"), "{}", r.stderr);

    let missing = ws.path().join("no-such-kubeconfig");
    let r = standup(&["--kubeconfig", missing.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-kubeconfig"), "{}", r.stderr);

    // A kubeconfig whose server is down: an environment error, with the cause.
    let dead = ws.path().join("dead-kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&dead, std::fs::read_to_string(&fake.kubeconfig).unwrap().replace(&fake.addr.to_string(), &format!("127.0.0.1:{port}")))
        .unwrap();
    let r = standup(&["--kubeconfig", dead.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("cannot reach the Kubernetes API server at http://127.0.0.1:{port}")), "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("connection refused"), "the cause is named: {}", r.stderr);

    // --deep with nothing to say where.
    let mut c = llmd();
    c.args(["teardown", "--deep", "--kubeconfig", kc]).arg("--workspace").arg(ws.path());
    let r = run(&mut c);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pass -p NAMESPACE"), "{}", r.stderr);
}

#[test]
fn non_admin_applies_no_cluster_scoped_objects() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PostParams;

    let cluster = Cluster::for_test();
    // An admin made the namespace; a non-admin user stands up in it.
    rt().block_on(async {
        let api: kube::Api<Namespace> = kube::Api::all(client(&cluster).await);
        if api.get_opt(NS).await.unwrap().is_none() {
            let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap();
            api.create(&PostParams::default(), &ns).await.unwrap();
        }
    });
    let ws = tempfile::tempdir().unwrap();
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest", "--non-admin"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--non-admin: not applying cluster-scoped Namespace llmd-test"), "{}", r.stderr);
    let objs = objects(&receipt(ws.path()));
    assert!(objs.iter().all(|o| o["kind"] != "Namespace"), "{objs:?}");
    if let Some(fake) = cluster.fake() {
        let ns = fake.get("Namespace", "", NS).unwrap();
        assert!(ns["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(), "the admin's namespace is not taken over");
    }
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["teardown"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `--set`s that serve the test model with `llmd sim` from `image`.
fn sim_stack(image: &str) -> Vec<String> {
    sim_stack_after(image, "")
}

/// [`sim_stack`] whose server runs `before` first (`sleep 2; ` delays its readiness).
fn sim_stack_after(image: &str, before: &str) -> Vec<String> {
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let mut sets = test_stack(&format!("{before}llmd sim --host 0.0.0.0 --port 8000 --model sshleifer/tiny-gpt2"));
    // The simulator's default context length.
    sets.extend(["--set".to_string(), "model.maxModelLen=1024".to_string()]);
    for (i, s) in sets.clone().iter().enumerate() {
        if s.starts_with("standalone.image.repository=") {
            sets[i] = format!("standalone.image.repository={repo}");
        } else if s.starts_with("standalone.image.tag=") {
            sets[i] = format!("standalone.image.tag={tag}");
        }
    }
    sets
}

#[test]
fn runs_are_harness_pods_whose_results_come_back() {
    let cluster = Cluster::for_test();
    let Some(image) = llmd_image(&cluster) else { return };
    let _sim = serve_with_sim(&cluster, &["--model", "sshleifer/tiny-gpt2"]);
    let ws = tempfile::tempdir().unwrap();
    let with = |sub: &[&str]| {
        let mut c = llmd();
        c.args(sub);
        c.args(["--backend", "kube", "--spec", "examples/gpu", "-p", NS, "--standalone-deploy-timeout", "120", "--llmd-image", &image]);
        c.arg("--kubeconfig").arg(cluster.kubeconfig()).arg("--workspace").arg(ws.path());
        c.args(sim_stack(&image));
        c
    };
    // The smoketest reaches the Service from here through a port-forward.
    let up = run(&mut with(&["standup"]));
    assert_eq!(up.code, 0, "standup: {}", up.stderr);
    assert!(up.stderr.contains("sshleifer/tiny-gpt2"), "the smoketest's inference answered: {}", up.stderr);
    let r = run(&mut with(&[
        "run",
        "-l",
        "llmd",
        "-w",
        "sanity_random.yaml",
        "-o",
        "load.stages.0.duration=1,load.stages.0.rate=8",
        "-j",
        "2",
    ]));
    assert_eq!(r.code, 0, "run: {}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("against http://vllm-standalone-"), "the harness targets the Service's cluster DNS name: {}", r.stderr);
    let results: Vec<std::path::PathBuf> =
        std::fs::read_dir(ws.path().join("results")).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    assert_eq!(results.len(), 2, "one result directory per instance (-j 2): {results:?}");
    for dir in &results {
        for f in ["records.jsonl", "report.json", "harness.log", "run_metadata.yaml"] {
            assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
        }
        let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert!(report["requests"]["completed"].as_u64().unwrap() > 0, "{report}");
        let meta = std::fs::read_to_string(dir.join("run_metadata.yaml")).unwrap();
        assert!(meta.contains("svc.cluster.local"), "{meta}");
    }
    if let Some(fake) = cluster.fake() {
        let left: Vec<Value> = fake.list("Pod").into_iter().filter(|p| p["metadata"]["labels"]["llmd.dev/role"] == "harness").collect();
        assert!(left.is_empty(), "harness pods are deleted after collection: {left:?}");
        let cms: Vec<Value> =
            fake.list("ConfigMap").into_iter().filter(|p| p["metadata"]["labels"]["llmd.dev/role"] == "harness").collect();
        assert!(cms.is_empty(), "profile ConfigMaps are deleted: {cms:?}");
        let reqs = fake.requests();
        assert!(reqs.iter().any(|r| r.contains("/exec?") && r.contains("command=tar")), "results came out by exec + tar");
        assert!(reqs.iter().any(|r| r.contains("/portforward?")), "the smoketest went through a port-forward");
    }
    // Analysis reads the collected results as it reads local ones.
    let a = run(llmd().args(["analyze"]).args(&results));
    assert_eq!(a.code, 0, "analyze: {}", a.stderr);
    for dir in &results {
        assert!(
            support::files_under(dir).iter().any(|f| f.to_string_lossy().contains("benchmark_report")),
            "a benchmark report in {}",
            dir.display()
        );
    }
    let down = run(&mut with(&["teardown"]));
    assert_eq!(down.code, 0, "{}", down.stderr);
}

#[test]
fn a_failing_harness_pod_names_its_exit_code_and_log() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else { return };
    let sim = support::Sim::start(&["--model", "sshleifer/tiny-gpt2"]);
    fake.forward_to(std::net::SocketAddr::from(([127, 0, 0, 1], sim.port)));
    fake.on_pod_run(|_| fakekube::PodExit {
        code: 3,
        files: Default::default(),
        log: "loading profile\nerror: the endpoint refused\n".into(),
    });
    let ws = tempfile::tempdir().unwrap();
    let image = "registry.example/llmd:test";
    let with = |sub: &[&str]| {
        let mut c = llmd();
        c.args(sub);
        c.args(["--backend", "kube", "--spec", "examples/gpu", "-p", NS, "--llmd-image", image]);
        c.arg("--kubeconfig").arg(cluster.kubeconfig()).arg("--workspace").arg(ws.path());
        c.args(sim_stack(image));
        c
    };
    assert_eq!(run(&mut with(&["standup", "--skip-smoketest"])).code, 0);
    let r = run(&mut with(&["run", "-l", "llmd", "-w", "sanity_random.yaml"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("exited with code 3") && r.stderr.contains("error: the endpoint refused"), "{}", r.stderr);
    assert!(fake.list("Pod").iter().all(|p| p["metadata"]["labels"]["llmd.dev/role"] != "harness"), "deleted after a failure too");
    assert_eq!(run(&mut with(&["teardown"])).code, 0);
}

/// Two setups, each in its own namespace, one run treatment.
const KUBE_EXPERIMENT: &str = "\
experiment:
  name: kube-two
  spec: examples/gpu
  harness: llmd
  profile: sanity_random.yaml
setup:
  treatments:
    - name: a
      namespace.name: llmd-test-a
    - name: b
      namespace.name: llmd-test-b
constants:
  load.stages.0.duration: 1
treatments:
  - name: r
    load.stages.0.rate: 4
";

/// `llmd build <dir>/exp.yaml --json --keep-stacks` on kube, workspace and cache in `dir`.
fn kube_build(cluster: &Cluster, dir: &Path, image: &str, before: &str) -> Command {
    kube_build_harness_in(cluster, dir, image, before, image)
}

/// [`kube_build`] whose native harness runs in `harness_image`.
fn kube_build_harness_in(cluster: &Cluster, dir: &Path, image: &str, before: &str, harness_image: &str) -> Command {
    let mut c = llmd();
    c.arg("build").arg(dir.join("exp.yaml")).args(["--json", "--keep-stacks", "--harness-timeout", "120"]);
    c.args(["--backend", "kube", "--standalone-deploy-timeout", "120", "--llmd-image", harness_image]);
    c.arg("--kubeconfig").arg(cluster.kubeconfig()).arg("--workspace").arg(dir.join("ws"));
    c.env("LLMD_CACHE_DIR", dir.join("cache"));
    c.args(sim_stack_after(image, before));
    c
}

#[test]
fn a_build_killed_during_standup_reapplies_without_duplicates() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: the kill instant is timed against the fake's object list");
        return;
    };
    let Some(image) = llmd_image(&cluster) else { return };
    let _sim = serve_with_sim(&cluster, &["--model", "sshleifer/tiny-gpt2"]);
    let dir = tempfile::tempdir().unwrap();
    let one_setup = KUBE_EXPERIMENT.replace("    - name: b\n      namespace.name: llmd-test-b\n", "");
    std::fs::write(dir.path().join("exp.yaml"), one_setup).unwrap();
    // The server takes 2 s to become ready; the build is killed while it waits.
    let mut child = kube_build(&cluster, dir.path(), &image, "sleep 2; ").stdout(std::process::Stdio::null()).spawn().unwrap();
    let dep = kill_once_applied(fake, &mut child);
    let r = run(&mut kube_build(&cluster, dir.path(), &image, "sleep 2; "));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let standup = report["nodes"].as_array().unwrap().iter().find(|n| n["id"].as_str().unwrap().starts_with("standup/")).unwrap().clone();
    assert_eq!(standup["status"], "ran");
    assert!(standup["reason"].to_string().contains("interrupted"), "{standup}");
    let deps = fake.list("Deployment");
    assert_eq!(deps.len(), 1, "no duplicate Deployment");
    assert_eq!(deps[0]["metadata"]["uid"], dep["metadata"]["uid"], "re-applied in place (server-side apply)");
    let serving = fake.list("Pod").into_iter().filter(|p| p["metadata"]["labels"]["job-name"].is_null()).count();
    assert_eq!(serving, 1, "one serving pod, no harness pod left");
    teardown(&cluster, &dir.path().join("ws/setup-treatment-a"));
}

/// A secret is an input of no key: a new token re-runs nothing, and the kept stack's
/// Secret is updated in place (an unchanged one is left alone).
#[test]
fn a_new_token_updates_the_kept_stack_secret_and_runs_nothing() {
    use base64::Engine;
    let cluster = Cluster::for_test();
    let Some(image) = llmd_image(&cluster) else { return };
    let _sim = serve_with_sim(&cluster, &["--model", "sshleifer/tiny-gpt2"]);
    let dir = tempfile::tempdir().unwrap();
    let one_setup = KUBE_EXPERIMENT.replace("    - name: b\n      namespace.name: llmd-test-b\n", "");
    std::fs::write(dir.path().join("exp.yaml"), one_setup).unwrap();
    let build = |token: &str| {
        let r = run(kube_build(&cluster, dir.path(), &image, "").env("HF_TOKEN", token));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(!r.stderr.contains(token) && !r.stdout.contains(token), "{}", r.stderr);
        let report: Value = serde_json::from_str(&r.stdout).unwrap();
        let ran = report["nodes"].as_array().unwrap().iter().filter(|n| n["status"] == "ran").count();
        (ran, r.stderr)
    };
    let secret = |token: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(token);
        let rt = rt();
        rt.block_on(async {
            use k8s_openapi::api::core::v1::Secret;
            let api: kube::Api<Secret> = kube::Api::namespaced(client(&cluster).await, "llmd-test-a");
            let s = api.get("llm-d-hf-token").await.unwrap();
            let data = s.data.unwrap_or_default();
            let held = data.values().any(|v| base64::engine::general_purpose::STANDARD.encode(&v.0) == b64);
            (held, s.metadata.uid.unwrap(), s.metadata.resource_version.unwrap())
        })
    };
    let (ran, _) = build("hf_firstToken0123456789");
    assert!(ran > 0);
    let (held, uid, _) = secret("hf_firstToken0123456789");
    assert!(held, "the first token is applied");
    let (ran, err) = build("hf_secondToken9876543210");
    assert_eq!(ran, 0, "a new token runs nothing: {err}");
    assert!(err.contains("updated in place with a changed secret"), "{err}");
    let (held, uid2, version) = secret("hf_secondToken9876543210");
    assert!(held, "the new token is applied");
    assert_eq!(uid, uid2, "updated in place, not replaced");
    let (ran, err) = build("hf_secondToken9876543210");
    assert_eq!(ran, 0);
    assert!(!err.contains("changed secret"), "{err}");
    assert_eq!(secret("hf_secondToken9876543210").2, version, "an unchanged Secret is left as it is");
    teardown(&cluster, &dir.path().join("ws/setup-treatment-a"));
}

/// A serving container that restarts while a run measures fails the run (the numbers
/// mix two servers); the next build runs it again.
#[test]
fn a_server_restarted_during_a_run_fails_it() {
    let cluster = Cluster::for_test();
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: the restart is injected into the fake's pod status");
        return;
    };
    let Some(image) = llmd_image(&cluster) else { return };
    let sim = serve_with_sim(&cluster, &["--model", "sshleifer/tiny-gpt2"]).unwrap();
    // The first harness pod finds its server restarted once (as the kubelet reports a
    // container restart); later ones run undisturbed.
    let (editor, play) = (fake.editor(), kubeplay::play_llmd_load(format!("http://127.0.0.1:{}", sim.port)));
    let restarted = std::sync::atomic::AtomicBool::new(false);
    fake.on_pod_run(move |pod| {
        if !restarted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let n = editor.edit(
                "Pod",
                |p| p["metadata"]["labels"]["job-name"].is_null() && !p["metadata"]["name"].as_str().unwrap_or("").contains("harness"),
                |p| p["status"]["containerStatuses"][0]["restartCount"] = serde_json::json!(1),
            );
            assert!(n > 0, "a serving pod to restart");
        }
        play(pod)
    });
    let dir = tempfile::tempdir().unwrap();
    let one_setup = KUBE_EXPERIMENT.replace("    - name: b\n      namespace.name: llmd-test-b\n", "");
    std::fs::write(dir.path().join("exp.yaml"), one_setup).unwrap();
    let r = run(&mut kube_build(&cluster, dir.path(), &image, ""));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let node = |report: &Value, prefix: &str| {
        report["nodes"].as_array().unwrap().iter().find(|n| n["id"].as_str().unwrap().starts_with(prefix)).unwrap().clone()
    };
    let failed = node(&report, "run/");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed.to_string().contains("restarted during the run") && failed.to_string().contains("1 restart(s)"), "{failed}");
    let r = run(&mut kube_build(&cluster, dir.path(), &image, ""));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(node(&report, "run/")["status"], "ran");
    assert_eq!(node(&report, "standup/")["status"], "fresh", "the restarted server serves again; only the run re-runs");
    teardown(&cluster, &dir.path().join("ws/setup-treatment-a"));
}

#[test]
fn build_reuses_live_deployments_for_a_run_treatment_edit() {
    let cluster = Cluster::for_test();
    let Some(image) = llmd_image(&cluster) else { return };
    let _sim = serve_with_sim(&cluster, &["--model", "sshleifer/tiny-gpt2"]);
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.yaml");
    std::fs::write(&exp, KUBE_EXPERIMENT).unwrap();
    let build = |extra: &[&str]| {
        let r = run(kube_build(&cluster, dir.path(), &image, "").args(extra));
        let report: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr));
        (r.code, report, r.stderr)
    };
    let ran = |report: &Value| -> Vec<String> {
        let nodes = report["nodes"].as_array().unwrap();
        let mut v: Vec<String> = nodes.iter().filter(|n| n["status"] == "ran").map(|n| n["id"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    let (code, first, err) = build(&[]);
    assert_eq!(code, 0, "first build: {err}\n{first}");
    if cluster.fake().is_some() {
        // On a cluster both setups go at once, packed into its allocatable GPUs.
        let journal = std::fs::read_dir(dir.path().join("cache/journal")).unwrap().flatten().next().unwrap().path();
        let text = std::fs::read_to_string(journal).unwrap();
        let schedule: Value =
            text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|e| e["event"] == "schedule").unwrap();
        assert_eq!((schedule["jobs"].as_u64(), schedule["isolation"].as_str()), (Some(2), Some("per-stack")), "{schedule}");
        assert_eq!(schedule["capacity"]["gpu"], 8, "{schedule}");
    }
    let first_ran = ran(&first);
    assert_eq!(first_ran.iter().filter(|id| id.starts_with("standup/")).count(), 2, "{first_ran:?}");
    assert_eq!(first_ran.iter().filter(|id| id.starts_with("run/")).count(), 2, "{first_ran:?}");
    let uids = |setup: &str| -> Vec<String> {
        let rec: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("ws/setup-treatment-{setup}/receipts/gpu.json")))
                .expect("a kept stack's receipt"),
        )
        .unwrap();
        objects(&rec).iter().map(|o| o["uid"].as_str().unwrap().to_string()).collect()
    };
    let (uids_a, uids_b) = (uids("a"), uids("b"));
    for setup in ["a", "b"] {
        let results = dir.path().join(format!("ws/setup-treatment-{setup}/results"));
        let reports: Vec<_> = support::files_under(&results).into_iter().filter(|p| p.ends_with("report.json")).collect();
        assert_eq!(reports.len(), 1, "setup {setup}: {reports:?}");
    }

    // A run-treatment edit: the runs re-execute against the same live deployments.
    std::fs::write(&exp, KUBE_EXPERIMENT.replace("rate: 4", "rate: 6")).unwrap();
    let (code, second, err) = build(&[]);
    assert_eq!(code, 0, "second build: {err}");
    let second_ran = ran(&second);
    assert!(second_ran.iter().all(|id| !id.starts_with("standup/") && !id.starts_with("plan/")), "nothing redeployed: {second_ran:?}");
    assert_eq!(second_ran.iter().filter(|id| id.starts_with("run/")).count(), 2, "{second_ran:?}");
    assert_eq!((uids("a"), uids("b")), (uids_a, uids_b), "the same objects serve");

    // Someone scales a deployment: the next build says so and stands it up again.
    if let Some(fake) = cluster.fake() {
        let dep = fake.list("Deployment").into_iter().find(|d| d["metadata"]["namespace"] == "llmd-test-a").unwrap();
        let name = dep["metadata"]["name"].as_str().unwrap().to_string();
        let rt = rt();
        rt.block_on(async {
            use k8s_openapi::api::apps::v1::Deployment;
            use kube::api::{Patch, PatchParams};
            let api: kube::Api<Deployment> = kube::Api::namespaced(client(&cluster).await, "llmd-test-a");
            let patch = serde_json::json!({"spec": {"replicas": 2}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        });
        std::fs::write(&exp, KUBE_EXPERIMENT.replace("rate: 4", "rate: 7")).unwrap();
        let (code, third, err) = build(&[]);
        assert_eq!(code, 0, "third build: {err}");
        let node = third["nodes"].as_array().unwrap().iter().find(|n| n["id"].as_str().unwrap().starts_with("standup/a/")).unwrap().clone();
        assert_eq!(node["status"], "ran", "{node}");
        let why = node["reason"].to_string();
        assert!(why.contains("drifted") && why.contains("generation"), "{why}");
    }

    // Another harness image re-runs the runs, on the same deployments.
    let r = run(kube_build_harness_in(&cluster, dir.path(), &image, "", &format!("{image}-next")).args(["--dry-run"]));
    let report: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stderr));
    let nodes = report["nodes"].as_array().unwrap();
    let would: Vec<&str> = nodes.iter().filter(|n| n["status"] == "would_run").map(|n| n["id"].as_str().unwrap()).collect();
    assert!(would.iter().all(|id| !id.starts_with("standup/")), "{would:?}");
    assert_eq!(would.iter().filter(|id| id.starts_with("run/")).count(), 2, "{would:?}");
    let run_a = nodes.iter().find(|n| n["id"].as_str().unwrap().starts_with("run/a/")).unwrap();
    assert!(run_a["reason"].to_string().contains("kube:harness-pod"), "the reason names the harness pod: {}", run_a["reason"]);
    for setup in ["a", "b"] {
        teardown(&cluster, &dir.path().join(format!("ws/setup-treatment-{setup}")));
    }
}

/// The Hugging Face token reaches the cluster's Secret and nothing llmd keeps: the plan
/// holds a placeholder, the receipt and workspace never the token (plain or base64).
#[test]
fn the_token_is_only_in_the_applied_secret() {
    let token = "hf_kubeSecretValue0123456789";
    token_only_in_the_applied_secret(token, |c| {
        c.env("HF_TOKEN", token);
    });
}

#[test]
fn a_token_in_the_config_is_only_in_the_applied_secret() {
    let token = "hf_configuredForThisStack0123456789";
    token_only_in_the_applied_secret(token, |c| {
        c.env_remove("HF_TOKEN").args(["--set", &format!("huggingface.token={token}")]);
    });
}

/// Stands the test stack up with `token` given by `give`: the fake cluster's Secret
/// holds it (base64), nothing llmd printed or wrote does.
fn token_only_in_the_applied_secret(token: &str, give: impl Fn(&mut Command)) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(token);
    let cluster = Cluster::for_test();
    let ws = tempfile::tempdir().unwrap();
    let mut standup = kube_cmd(&cluster, ws.path(), SERVE, &["standup", "--skip-smoketest"]);
    give(&mut standup);
    let r = run(&mut standup);
    assert_eq!(r.code, 0, "standup: {}", r.stderr);
    assert!(!r.stdout.contains(token) && !r.stderr.contains(token) && !r.stderr.contains(&b64), "{}", r.stderr);
    for file in support::files_under(ws.path()) {
        let bytes = std::fs::read(ws.path().join(&file)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(token) && !text.contains(&b64), "{} holds the token", file.display());
    }
    if let Some(fake) = cluster.fake() {
        let secrets = fake.list("Secret");
        assert!(
            secrets.iter().any(|s| s["data"].as_object().is_some_and(|d| d.values().any(|v| v == b64.as_str()))),
            "the applied Secret holds the token: {secrets:?}"
        );
    }
    let r = run(&mut kube_cmd(&cluster, ws.path(), SERVE, &["teardown"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}
