//! An in-process fake Kubernetes API server, reached over HTTP through a generated
//! kubeconfig, so the kube backend runs its real client code: kubeconfig loading,
//! discovery, server-side apply PATCHes, list and watch streams with label and field
//! selectors, deletes with UID preconditions and propagation, pod logs, events.
//!
//! One Node with 8 allocatable GPUs is there from the start. A small controller drives
//! what a cluster would: PVCs Bound, Namespaces Active, a
//! Job's pod to Succeeded and the Job to Complete, a Deployment's pods (one per replica,
//! replaced when the template changes) from Pending through scheduling to Running and
//! Ready, with Deployment status, garbage collection of orphans and foreground
//! deletion. A Gateway with a class turns `Programmed`; an InferencePool that an
//! HTTPRoute on an existing Gateway leads to is `Accepted` by that parent. Failures
//! come from the pod spec, as on a real cluster:
//! * an image whose name contains `does-not-exist` → `ErrImagePull`, then
//!   `ImagePullBackOff` with a `Failed` event;
//! * more `nvidia.com/gpu` than a node has (8) → `Unschedulable` with a
//!   `FailedScheduling` event ("Insufficient nvidia.com/gpu");
//! * a command that reads `/dev/zero` → `OOMKilled`, then `CrashLoopBackOff`;
//! * a command with `exit N` (N ≠ 0) → `CrashLoopBackOff`, its `echo` output as logs.
//!
//! Pods have a small in-memory file system. A pod with an `exec` readiness probe that
//! `cat`s a file (llmd's harness pods) is Running but not Ready until that file exists:
//! when it starts, the test's [`FakeKube::on_pod_run`] hook plays its command (argv
//! unwrapped from llmd's `sh -c` wrapper, env, mounted ConfigMaps) and returns its
//! exit code, files and log; the fake then writes the files and the exit-code file the
//! wrapper would. `exec` (WebSocket, `v4.channel.k8s.io`) runs `cat FILE` and
//! `tar cf - -C DIR .` against that file system; `portforward` (WebSocket) bridges
//! every pod port to [`FakeKube::forward_to`]'s address.
//!
//! Validation covers two real rules: a Deployment's selector must match its template's
//! labels, and a container's cpu request may not exceed its limit (so server-side dry
//! runs have something to refuse).
//!
//! Not covered: containers do not run (pods follow the script above; harness pods are
//! played by the test's hook on this machine, port-forwards reach a local server), exec
//! knows `cat` and `tar` only and speaks `v4.channel.k8s.io` only, admission webhooks and
//! quotas, field ownership conflicts (apply always forces), strategic merge of lists
//! (patches merge maps, replace lists), real scheduling, ReplicaSets (pods are owned by
//! the Deployment directly), resourceVersion conflicts, authentication, API priority
//! and fairness, watch bookmarks and expiry (410 Gone).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use serde_json::{Value, json};

/// GPUs per fake node.
const NODE_GPUS: i64 = 8;
/// The file llmd's harness-pod wrapper writes the exit code to.
const EXIT_FILE: &str = "/tmp/llmd-exit-code";

struct Res {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
}

const RESOURCES: &[Res] = &[
    Res { group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false },
    Res { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false },
    Res { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true },
    Res { group: "", version: "v1", plural: "services", kind: "Service", namespaced: true },
    Res { group: "", version: "v1", plural: "serviceaccounts", kind: "ServiceAccount", namespaced: true },
    Res { group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true },
    Res { group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true },
    Res { group: "", version: "v1", plural: "persistentvolumeclaims", kind: "PersistentVolumeClaim", namespaced: true },
    Res { group: "", version: "v1", plural: "events", kind: "Event", namespaced: true },
    Res { group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true },
    Res { group: "batch", version: "v1", plural: "jobs", kind: "Job", namespaced: true },
    Res { group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role", namespaced: true },
    Res { group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings", kind: "RoleBinding", namespaced: true },
    Res { group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterroles", kind: "ClusterRole", namespaced: false },
    Res { group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false },
    Res { group: "monitoring.coreos.com", version: "v1", plural: "podmonitors", kind: "PodMonitor", namespaced: true },
    Res { group: "gateway.networking.k8s.io", version: "v1", plural: "httproutes", kind: "HTTPRoute", namespaced: true },
    Res { group: "gateway.networking.k8s.io", version: "v1", plural: "gateways", kind: "Gateway", namespaced: true },
    Res { group: "inference.networking.k8s.io", version: "v1", plural: "inferencepools", kind: "InferencePool", namespaced: true },
];

impl Res {
    fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }
    fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
}

fn res_by_kind(kind: &str) -> &'static Res {
    RESOURCES.iter().find(|r| r.kind == kind).expect("known kind")
}

type Key = (String, String, String); // (group/plural, namespace, name)

#[derive(Clone)]
struct WatchEvent {
    rv: u64,
    res: String,
    object: Value,
    kind: &'static str,
}

#[derive(Default)]
struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<WatchEvent>,
    /// Pod logs by (namespace, pod).
    logs: HashMap<(String, String), String>,
    /// Requests served, by method and path (for tests that check what was sent).
    requests: Vec<String>,
    /// Pod file systems by (namespace, pod): absolute path → bytes.
    files: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// Pods whose commands are to be played by the hook.
    pending: Vec<PodRun>,
    hook: Option<Hook>,
    forward_to: Option<SocketAddr>,
}

/// A pod's command as the hook sees it.
#[derive(Clone, Debug)]
pub struct PodRun {
    pub namespace: String,
    pub name: String,
    /// The command (llmd's `sh -c` wrapper removed).
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Mounted ConfigMap files: absolute path → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// How a played command ended.
#[derive(Clone, Debug, Default)]
pub struct PodExit {
    pub code: i32,
    /// Files it left: absolute path → content.
    pub files: BTreeMap<String, Vec<u8>>,
    pub log: String,
}

pub type Hook = Arc<dyn Fn(&PodRun) -> PodExit + Send + Sync>;

/// Changes stored objects (a new resourceVersion and a watch event), as a controller or
/// the kubelet would: a container restart, say.
#[derive(Clone)]
pub struct Editor {
    store: Arc<Mutex<Store>>,
    events: tokio::sync::broadcast::Sender<WatchEvent>,
}

impl Editor {
    /// Applies `f` to every object of `kind` for which `pick` holds; returns how many.
    pub fn edit(&self, kind: &str, pick: impl Fn(&Value) -> bool, f: impl Fn(&mut Value)) -> usize {
        let res = res_by_kind(kind);
        let mut s = self.store.lock().unwrap();
        let picked: Vec<Value> = s.objects.iter().filter(|(k, v)| k.0 == res.key() && pick(v)).map(|(_, v)| v.clone()).collect();
        for mut obj in picked.clone() {
            f(&mut obj);
            s.put(&self.events, res, obj);
        }
        picked.len()
    }
}

pub struct FakeKube {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    store: Arc<Mutex<Store>>,
    events: tokio::sync::broadcast::Sender<WatchEvent>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn now() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let s = llmd::analysis::br::rfc3339(t);
    // Kubernetes times have whole seconds.
    match s.find('.') {
        Some(i) => format!("{}Z", &s[..i]),
        None => s,
    }
}

fn status(code: u16, reason: &str, message: String) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

type Body = BoxBody<Bytes, Infallible>;

fn respond(code: u16, v: &Value) -> Response<Body> {
    Response::builder().status(code).header("content-type", "application/json").body(Full::new(Bytes::from(v.to_string())).boxed()).unwrap()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00"), 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into()
}

fn query(req: &Request<hyper::body::Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn path_get<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    dotted.split('.').fold(v, |v, k| &v[k])
}

/// Label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
fn labels_match(obj: &Value, selector: &str) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k].as_str() == Some(v)
        } else if let Some(k) = term.strip_prefix('!') {
            labels[k].is_null()
        } else {
            !labels[term].is_null()
        }
    })
}

fn fields_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v, neg) = match term.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => {
                let (k, v) = term.split_once("==").or_else(|| term.split_once('=')).unwrap_or((term, ""));
                (k, v, false)
            }
        };
        (path_get(obj, k).as_str().unwrap_or("") == v) != neg
    })
}

/// Deep merge for apply and merge patches: maps merge, everything else replaces; a
/// null in the patch deletes.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl Store {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn new_uid(&mut self) -> String {
        self.uid += 1;
        let r: u32 = rand_u32();
        format!("{:08x}-{:04x}-4000-8000-{:012x}", r, self.uid & 0xffff, self.uid)
    }

    fn record(&mut self, tx: &tokio::sync::broadcast::Sender<WatchEvent>, res: &str, kind: &'static str, object: Value) {
        let rv = object["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(self.rv);
        let ev = WatchEvent { rv, res: res.to_string(), object, kind };
        self.log.push(ev.clone());
        let _ = tx.send(ev);
    }

    /// Stores `obj` (new or changed), bumping its resourceVersion, and emits the event.
    fn put(&mut self, tx: &tokio::sync::broadcast::Sender<WatchEvent>, res: &Res, mut obj: Value) -> Value {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = (res.key(), ns, name);
        let kind = if self.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        self.objects.insert(key, obj.clone());
        self.record(tx, &res.key(), kind, obj.clone());
        obj
    }

    fn remove(&mut self, tx: &tokio::sync::broadcast::Sender<WatchEvent>, res_key: &str, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self.objects.remove(&(res_key.to_string(), ns.to_string(), name.to_string()))?;
        if res_key == "/pods" {
            self.files.remove(&(ns.to_string(), name.to_string()));
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(tx, res_key, "DELETED", obj.clone());
        Some(obj)
    }

    fn create(&mut self, tx: &tokio::sync::broadcast::Sender<WatchEvent>, res: &Res, mut obj: Value, manager: &str, op: &str) -> Value {
        let uid = self.new_uid();
        let m = &mut obj["metadata"];
        m["uid"] = json!(uid);
        m["creationTimestamp"] = json!(now());
        if m["generation"].is_null() {
            m["generation"] = json!(1);
        }
        m["managedFields"] = json!([{"manager": manager, "operation": op, "apiVersion": res.api_version(), "time": now()}]);
        self.put(tx, res, obj)
    }

    /// Emits (or bumps the count of) an event about an object.
    fn event(&mut self, tx: &tokio::sync::broadcast::Sender<WatchEvent>, obj: &Value, type_: &str, reason: &str, message: &str) {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let oname = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let name = format!("{oname}.{}", reason.to_lowercase());
        let key = (res_by_kind("Event").key(), ns.clone(), name.clone());
        let ev = match self.objects.get(&key) {
            Some(e) => {
                let mut e = e.clone();
                e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
                e["message"] = json!(message);
                e["lastTimestamp"] = json!(now());
                e
            }
            None => {
                let uid = self.new_uid();
                json!({"metadata": {"name": name, "namespace": ns, "uid": uid},
                       "involvedObject": {"kind": obj["kind"], "name": oname, "namespace": ns, "uid": obj["metadata"]["uid"]},
                       "reason": reason, "message": message, "type": type_, "count": 1,
                       "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "fake-kube"}})
            }
        };
        self.put(tx, res_by_kind("Event"), ev);
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    h.finish() as u32
}

/// Where an API request points.
struct Target {
    res: &'static Res,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (Some(ns.to_string()), {
            let mut v = vec![*plural];
            v.extend(rest);
            v
        }),
        other => (None, other.to_vec()),
    };
    // `namespaces/<name>` itself.
    let (namespace, rest) = if rest.is_empty() && namespace.is_some() {
        (None, vec!["namespaces", segs.last().copied().unwrap_or("")])
    } else {
        (namespace, rest)
    };
    let plural = *rest.first()?;
    let res = RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)?;
    Some(Target { res, namespace, name: rest.get(1).map(|s| s.to_string()), sub: rest.get(2).map(|s| s.to_string()) })
}

impl FakeKube {
    /// Starts the server on a loopback port and writes a kubeconfig for it.
    pub fn start() -> FakeKube {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _) = tokio::sync::broadcast::channel(4096);
        let store = Arc::new(Mutex::new(Store::default()));
        {
            let mut s = store.lock().unwrap();
            for ns in ["kube-system", "default"] {
                let obj = json!({"metadata": {"name": ns}, "status": {"phase": "Active"}});
                s.create(&tx, res_by_kind("Namespace"), obj, "fake-kube", "Update");
            }
            // One schedulable node with NODE_GPUS GPUs (what `llmd build -j` packs into).
            let node = json!({"metadata": {"name": "fake-node-1"}, "status": {"allocatable": {"cpu": "16", "nvidia.com/gpu": NODE_GPUS.to_string()}}});
            s.create(&tx, res_by_kind("Node"), node, "fake-kube", "Update");
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(addr)).unwrap();
        let (st, tx2) = (store.clone(), tx.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (st, tx) = (st.clone(), tx2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (st, tx) = (st.clone(), tx.clone());
                        async move { Ok::<_, Infallible>(handle(req, st, tx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        let (st, tx3) = (store.clone(), tx.clone());
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            loop {
                tick.tick().await;
                let pending = {
                    let mut s = st.lock().unwrap();
                    controller_tick(&mut s, &tx3);
                    std::mem::take(&mut s.pending).into_iter().map(|r| (r, s.hook.clone())).collect::<Vec<_>>()
                };
                for (run, hook) in pending {
                    let st = st.clone();
                    std::thread::spawn(move || {
                        // A panicking hook is a crashed command, not a pod that never finishes.
                        let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.map(|h| h(&run)).unwrap_or_default()))
                            .unwrap_or_else(|_| PodExit { code: 134, log: "the test's hook panicked".into(), ..Default::default() });
                        let mut s = st.lock().unwrap();
                        let fs = s.files.entry((run.namespace.clone(), run.name.clone())).or_default();
                        fs.extend(exit.files);
                        fs.insert(EXIT_FILE.to_string(), format!("{}\n", exit.code).into_bytes());
                        s.logs.insert((run.namespace, run.name), exit.log);
                    });
                }
            }
        });
        FakeKube { addr, kubeconfig, store, events: tx, _rt: rt, _dir: dir }
    }

    /// The object of `kind` named `name`, if any.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = res_by_kind(kind);
        let ns = if res.namespaced { namespace } else { "" };
        self.store.lock().unwrap().objects.get(&(res.key(), ns.to_string(), name.to_string())).cloned()
    }

    /// A handle that changes objects as a controller would, usable from pod hooks.
    pub fn editor(&self) -> Editor {
        Editor { store: self.store.clone(), events: self.events.clone() }
    }

    /// Every object of `kind`.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let key = res_by_kind(kind).key();
        self.store.lock().unwrap().objects.iter().filter(|(k, _)| k.0 == key).map(|(_, v)| v.clone()).collect()
    }

    /// Plays the commands of pods that wait on a readiness-probe file (harness pods).
    pub fn on_pod_run(&self, hook: impl Fn(&PodRun) -> PodExit + Send + Sync + 'static) {
        self.store.lock().unwrap().hook = Some(Arc::new(hook));
    }

    /// Where port-forwards to any pod go.
    pub fn forward_to(&self, addr: SocketAddr) {
        self.store.lock().unwrap().forward_to = Some(addr);
    }

    /// Requests served so far (`METHOD path?query`).
    pub fn requests(&self) -> Vec<String> {
        self.store.lock().unwrap().requests.clone()
    }
}

fn kubeconfig_text(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
    )
}

fn discovery(path: &str, addr_hint: &str) -> Option<Value> {
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .flat_map(|r| {
                let verbs = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
                let mut v = vec![json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs})];
                if r.kind == "Pod" {
                    v.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
                }
                if r.kind == "Deployment" || r.kind == "Job" || r.kind == "Pod" {
                    v.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": true, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
                }
                v
            })
            .collect();
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
    };
    match path.trim_end_matches('/') {
        "/api" => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr_hint}]}),
        ),
        "/apis" => {
            let mut groups: Vec<Value> = Vec::new();
            for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
                if groups.iter().any(|g| g["name"] == r.group) {
                    continue;
                }
                let gv = json!({"groupVersion": r.api_version(), "version": r.version});
                groups.push(json!({"name": r.group, "versions": [gv.clone()], "preferredVersion": gv}));
            }
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        "/api/v1" => Some(resources("", "v1")),
        "/version" => Some(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"})),
        p => {
            let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
            match segs.as_slice() {
                ["apis", g, v] if RESOURCES.iter().any(|r| r.group == *g && r.version == *v) => Some(resources(g, v)),
                ["apis", g] => {
                    let r = RESOURCES.iter().find(|r| r.group == *g)?;
                    let gv = json!({"groupVersion": r.api_version(), "version": r.version});
                    Some(json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv.clone()], "preferredVersion": gv}))
                }
                _ => None,
            }
        }
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    st: Arc<Mutex<Store>>,
    tx: tokio::sync::broadcast::Sender<WatchEvent>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = query(&req);
    let ctype = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    st.lock().unwrap().requests.push(format!("{method} {}", req.uri()));
    if path.ends_with("/exec") || path.ends_with("/portforward") {
        return upgrade(req, st).await;
    }
    if method == hyper::Method::GET
        && let Some(d) = discovery(&path, "127.0.0.1")
    {
        return respond(200, &d);
    }
    let Some(t) = parse_path(&path) else {
        return respond(404, &status(404, "NotFound", format!("the server could not find the requested resource ({path})")));
    };
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let ns = if t.res.namespaced { t.namespace.clone().unwrap_or_default() } else { String::new() };
    let not_found = |name: &str| respond(404, &status(404, "NotFound", format!("{} \"{name}\" not found", t.res.plural)));
    match (method.as_str(), &t.name, t.sub.as_deref()) {
        ("GET", Some(name), Some("log")) => {
            let s = st.lock().unwrap();
            if !s.objects.contains_key(&(t.res.key(), ns.clone(), name.clone())) {
                return not_found(name);
            }
            let mut text = s.logs.get(&(ns.clone(), name.clone())).cloned().unwrap_or_default();
            if let Some(n) = q.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                let lines: Vec<&str> = text.lines().collect();
                text = lines[lines.len().saturating_sub(n)..].join("\n") + "\n";
            }
            Response::builder().status(200).header("content-type", "text/plain").body(Full::new(Bytes::from(text)).boxed()).unwrap()
        }
        ("GET", Some(name), None) => match st.lock().unwrap().objects.get(&(t.res.key(), ns.clone(), name.clone())) {
            Some(o) => respond(200, o),
            None => not_found(name),
        },
        ("GET", None, _) => {
            let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
            let labels = q.get("labelSelector").cloned().unwrap_or_default();
            let fields = q.get("fieldSelector").cloned().unwrap_or_default();
            let in_ns = t.namespace.clone().filter(|_| t.res.namespaced);
            let res_key = t.res.key();
            let matches = move |o: &Value| {
                in_ns.as_deref().is_none_or(|n| o["metadata"]["namespace"].as_str() == Some(n))
                    && labels_match(o, &labels)
                    && fields_match(o, &fields)
            };
            if watch {
                let since: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
                let timeout = q.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(60u64);
                let initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
                let (lines_tx, lines_rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
                {
                    let s = st.lock().unwrap();
                    let mut rx = tx.subscribe();
                    let mut backlog: Vec<Value> = Vec::new();
                    if initial {
                        for ((k, _, _), o) in &s.objects {
                            if *k == res_key && matches(o) {
                                backlog.push(json!({"type": "ADDED", "object": o}));
                            }
                        }
                        let bm = json!({"type": "BOOKMARK", "object": {"kind": t.res.kind, "apiVersion": t.res.api_version(), "metadata": {"resourceVersion": s.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
                        backlog.push(bm);
                    } else if since > 0 {
                        for e in s.log.iter().filter(|e| e.rv > since && e.res == res_key && matches(&e.object)) {
                            backlog.push(json!({"type": e.kind, "object": e.object}));
                        }
                    }
                    let last_rv = s.rv;
                    let res_key = res_key.clone();
                    tokio::spawn(async move {
                        for b in backlog {
                            if lines_tx.send(Bytes::from(format!("{b}\n"))).await.is_err() {
                                return;
                            }
                        }
                        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
                        tokio::pin!(deadline);
                        loop {
                            tokio::select! {
                                _ = &mut deadline => return,
                                e = rx.recv() => match e {
                                    Ok(e) if e.rv > last_rv && e.res == res_key && matches(&e.object) => {
                                        let line = json!({"type": e.kind, "object": e.object});
                                        if lines_tx.send(Bytes::from(format!("{line}\n"))).await.is_err() { return; }
                                    }
                                    Ok(_) => {}
                                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                                    Err(_) => return,
                                },
                            }
                        }
                    });
                }
                let stream = futures::stream::unfold(lines_rx, |mut rx| async move {
                    rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
                });
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(StreamBody::new(stream).boxed())
                    .unwrap();
            }
            let s = st.lock().unwrap();
            let items: Vec<Value> = s.objects.iter().filter(|((k, _, _), o)| *k == res_key && matches(o)).map(|(_, o)| o.clone()).collect();
            respond(
                200,
                &json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(), "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            )
        }
        ("PATCH", Some(name), None) => {
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return respond(400, &status(400, "BadRequest", "body is not JSON".into()));
            };
            let dry = q.get("dryRun").is_some_and(|v| v == "All");
            let manager = q.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into());
            let mut s = st.lock().unwrap();
            let key = (t.res.key(), ns.clone(), name.clone());
            let existing = s.objects.get(&key).cloned();
            if ctype.starts_with("application/apply-patch") {
                if patch["metadata"]["name"].as_str() != Some(name) {
                    return respond(400, &status(400, "BadRequest", "metadata.name does not match the URL".into()));
                }
                let kind_ok = patch["kind"].as_str() == Some(t.res.kind);
                if !kind_ok {
                    return respond(400, &status(400, "BadRequest", format!("kind must be {}", t.res.kind)));
                }
                if let Some(msg) = validate(t.res, &patch) {
                    return respond(422, &status(422, "Invalid", format!("{} \"{name}\" is invalid: {msg}", t.res.kind)));
                }
                let mut obj = patch.clone();
                if t.res.namespaced {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                match existing {
                    None => {
                        if t.res.namespaced && !s.objects.contains_key(&(res_by_kind("Namespace").key(), String::new(), ns.clone())) {
                            return respond(404, &status(404, "NotFound", format!("namespaces \"{ns}\" not found")));
                        }
                        if dry {
                            return respond(201, &obj);
                        }
                        let created = s.create(&tx, t.res, obj, &manager, "Apply");
                        respond(201, &created)
                    }
                    Some(old) => {
                        let mut new = old.clone();
                        for (k, v) in patch.as_object().unwrap() {
                            if k == "metadata" {
                                for part in ["labels", "annotations"] {
                                    if let Some(m) = v[part].as_object() {
                                        for (lk, lv) in m {
                                            new["metadata"][part][lk] = lv.clone();
                                        }
                                    }
                                }
                            } else if k != "status" {
                                new[k] = v.clone();
                            }
                        }
                        update(&mut s, &tx, t.res, &old, new, &manager, "Apply", dry)
                    }
                }
            } else {
                let Some(old) = existing else { return not_found(name) };
                let mut new = old.clone();
                merge(&mut new, &patch);
                update(&mut s, &tx, t.res, &old, new, &manager, "Update", dry)
            }
        }
        ("POST", None, _) => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
                return respond(400, &status(400, "BadRequest", "body is not JSON".into()));
            };
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let mut s = st.lock().unwrap();
            if s.objects.contains_key(&(t.res.key(), ns.clone(), name.clone())) {
                return respond(409, &status(409, "AlreadyExists", format!("{} \"{name}\" already exists", t.res.plural)));
            }
            if t.res.namespaced {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let manager = q.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into());
            let created = s.create(&tx, t.res, obj, &manager, "Update");
            respond(201, &created)
        }
        ("DELETE", Some(name), None) => {
            let opts: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let mut s = st.lock().unwrap();
            let key = (t.res.key(), ns.clone(), name.clone());
            let Some(obj) = s.objects.get(&key).cloned() else { return not_found(name) };
            if let Some(uid) = opts["preconditions"]["uid"].as_str()
                && obj["metadata"]["uid"].as_str() != Some(uid)
            {
                let msg = format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    obj["metadata"]["uid"].as_str().unwrap_or("")
                );
                return respond(409, &status(409, "Conflict", msg));
            }
            let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let has_dependents = s.objects.values().any(|o| owned_by(o, &uid));
            if opts["propagationPolicy"] == "Foreground" && has_dependents {
                let mut o = obj.clone();
                o["metadata"]["deletionTimestamp"] = json!(now());
                o["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
                let stored = s.put(&tx, t.res, o);
                return respond(200, &stored);
            }
            let gone = s.remove(&tx, &t.res.key(), &ns, name).unwrap_or(obj);
            respond(200, &gone)
        }
        _ => respond(405, &status(405, "MethodNotAllowed", format!("{method} {path} is not supported by the fake"))),
    }
}

/// Stores a changed object (unless `dry`): the generation moves when the spec did, and
/// `manager` is recorded as having last written it.
#[allow(clippy::too_many_arguments)]
fn update(
    s: &mut Store,
    tx: &tokio::sync::broadcast::Sender<WatchEvent>,
    res: &Res,
    old: &Value,
    mut new: Value,
    manager: &str,
    op: &str,
    dry: bool,
) -> Response<Body> {
    // As the API server: a write that changes nothing stores nothing (same
    // resourceVersion, no event), so re-applying an unchanged object is a no-op.
    let content = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o["metadata"].as_object_mut() {
            for k in ["resourceVersion", "managedFields", "generation"] {
                m.remove(k);
            }
        }
        o
    };
    if content(&new) == content(old) {
        return respond(200, old);
    }
    if new["spec"] != old["spec"] {
        new["metadata"]["generation"] = json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    }
    touch_manager(&mut new, manager, op);
    if dry {
        return respond(200, &new);
    }
    let stored = s.put(tx, res, new);
    respond(200, &stored)
}

/// What the API server's validation would reject (a few rules the tests exercise).
fn validate(res: &Res, obj: &Value) -> Option<String> {
    if res.kind == "Deployment" {
        let sel = &obj["spec"]["selector"]["matchLabels"];
        let labels = &obj["spec"]["template"]["metadata"]["labels"];
        if let Some(m) = sel.as_object()
            && m.iter().any(|(k, v)| &labels[k] != v)
        {
            return Some("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`".into());
        }
        let milli = |q: &Value| {
            q.as_str().map(|s| s.strip_suffix('m').map_or_else(|| s.parse::<f64>().unwrap_or(0.0) * 1000.0, |m| m.parse().unwrap_or(0.0)))
        };
        for (i, c) in obj["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten().enumerate() {
            let r = &c["resources"];
            if let (Some(req), Some(lim)) = (milli(&r["requests"]["cpu"]), milli(&r["limits"]["cpu"]))
                && req > lim
            {
                return Some(format!(
                    "spec.template.spec.containers[{i}].resources.requests: Invalid value: \"{}\": must be less than or equal to cpu limit of {}",
                    r["requests"]["cpu"].as_str().unwrap_or(""),
                    r["limits"]["cpu"].as_str().unwrap_or("")
                ));
            }
        }
    }
    None
}

fn touch_manager(obj: &mut Value, manager: &str, op: &str) {
    let mut fields: Vec<Value> = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    fields.retain(|f| !(f["manager"] == manager && f["operation"] == op));
    fields.push(json!({"manager": manager, "operation": op, "time": now()}));
    obj["metadata"]["managedFields"] = json!(fields);
}

fn owned_by(o: &Value, uid: &str) -> bool {
    o["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

fn quantity_gpus(c: &Value) -> i64 {
    let get = |part: &str| {
        c["resources"][part]["nvidia.com/gpu"].as_str().and_then(|s| s.parse().ok()).or(c["resources"][part]["nvidia.com/gpu"].as_i64())
    };
    get("requests").or(get("limits")).unwrap_or(0)
}

/// The shell text a container runs (command and args joined).
fn command_text(c: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    for k in ["command", "args"] {
        for a in c[k].as_array().into_iter().flatten() {
            parts.push(a.as_str().unwrap_or("").to_string());
        }
    }
    parts.join(" ")
}

/// The file an `exec: cat FILE` readiness probe reads.
fn probe_file(c: &Value) -> Option<String> {
    let cmd = c["readinessProbe"]["exec"]["command"].as_array()?;
    match cmd.as_slice() {
        [cat, file] if cat == "cat" => file.as_str().map(String::from),
        _ => None,
    }
}

/// A pod's command, environment and mounted ConfigMaps.
fn pod_run(s: &Store, p: &Value) -> PodRun {
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let c = &p["spec"]["containers"][0];
    let strings = |v: &Value| -> Vec<String> { v.as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect() };
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    if argv.len() >= 4 && argv[0] == "/bin/sh" && argv[1] == "-c" && argv[2].contains(EXIT_FILE) {
        argv.drain(..4);
    }
    let env = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap_or("").to_string(), e["value"].as_str().unwrap_or("").to_string()))
        .collect();
    let mut files = BTreeMap::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vol = p["spec"]["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == m["name"]);
        let Some(cm) = vol.and_then(|v| v["configMap"]["name"].as_str()) else { continue };
        let Some(obj) = s.objects.get(&(res_by_kind("ConfigMap").key(), ns.clone(), cm.to_string())) else { continue };
        for (k, v) in obj["data"].as_object().into_iter().flatten() {
            let path = format!("{}/{k}", m["mountPath"].as_str().unwrap_or("").trim_end_matches('/'));
            files.insert(path, v.as_str().unwrap_or("").as_bytes().to_vec());
        }
    }
    PodRun { namespace: ns, name: p["metadata"]["name"].as_str().unwrap_or("").to_string(), argv, env, files }
}

/// `exec`: `cat FILE` and `tar cf - -C DIR .` over a pod's files → (exit code, stdout, stderr).
fn exec_in(files: &BTreeMap<String, Vec<u8>>, argv: &[String]) -> (i32, Vec<u8>, String) {
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["cat", file] => match files.get(*file) {
            Some(b) => (0, b.clone(), String::new()),
            None => (1, Vec::new(), format!("cat: {file}: No such file or directory\n")),
        },
        ["tar", "cf", "-", "-C", dir, "."] => {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            if !files.keys().any(|k| k.starts_with(&prefix)) {
                return (2, Vec::new(), format!("tar: {dir}: Cannot open: No such file or directory\n"));
            }
            let mut b = tar::Builder::new(Vec::new());
            for (path, bytes) in files.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, format!("./{}", &path[prefix.len()..]), bytes.as_slice()).unwrap();
            }
            (0, b.into_inner().unwrap(), String::new())
        }
        _ => (127, Vec::new(), format!("{}: not found in the fake\n", args.first().unwrap_or(&""))),
    }
}

/// `exec` and `portforward`: a WebSocket with Kubernetes' channel protocol (v4).
async fn upgrade(req: Request<hyper::body::Incoming>, st: Arc<Mutex<Store>>) -> Response<Body> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let params: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name) = match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, _] => (ns.to_string(), name.to_string()),
        _ => return respond(404, &status(404, "NotFound", format!("no such pod path {path}"))),
    };
    if !st.lock().unwrap().objects.contains_key(&(res_by_kind("Pod").key(), ns.clone(), name.clone())) {
        return respond(404, &status(404, "NotFound", format!("pods \"{name}\" not found")));
    }
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return respond(400, &status(400, "BadRequest", "not a WebSocket upgrade".into()));
    };
    let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !offered.split(',').any(|p| p.trim() == "v4.channel.k8s.io") {
        return respond(400, &status(400, "BadRequest", format!("the fake speaks v4.channel.k8s.io only (offered: {offered})")));
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let on_upgrade = hyper::upgrade::on(req);
    let exec = path.ends_with("/exec");
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, tokio_tungstenite::tungstenite::protocol::Role::Server, None).await;
        if exec {
            let argv: Vec<String> = params.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
            let (code, out, err) = {
                let s = st.lock().unwrap();
                let empty = BTreeMap::new();
                exec_in(s.files.get(&(ns.clone(), name.clone())).unwrap_or(&empty), &argv)
            };
            for chunk in out.chunks(32 * 1024) {
                let mut frame = vec![1u8];
                frame.extend_from_slice(chunk);
                if ws.send(Message::binary(frame)).await.is_err() {
                    return;
                }
            }
            if !err.is_empty() {
                let mut frame = vec![2u8];
                frame.extend_from_slice(err.as_bytes());
                let _ = ws.send(Message::binary(frame)).await;
            }
            let status = if code == 0 {
                json!({"metadata": {}, "status": "Success"})
            } else {
                json!({"metadata": {}, "status": "Failure", "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", argv.join(" ")),
                    "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
            };
            let mut frame = vec![3u8];
            frame.extend_from_slice(status.to_string().as_bytes());
            let _ = ws.send(Message::binary(frame)).await;
            let _ = ws.close(None).await;
        } else {
            let port: u16 = params.iter().find(|(k, _)| k == "ports").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            let target = st.lock().unwrap().forward_to;
            let [lo, hi] = port.to_le_bytes();
            for ch in [0u8, 1u8] {
                if ws.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
                    return;
                }
            }
            let Some(target) = target else {
                let _ = ws.send(Message::binary([&[1u8][..], b"the fake forwards nowhere (forward_to not set)"].concat())).await;
                return;
            };
            let Ok(tcp) = tokio::net::TcpStream::connect(target).await else {
                let _ = ws.send(Message::binary([&[1u8][..], b"connection refused"].concat())).await;
                return;
            };
            let (mut rd, mut wr) = tcp.into_split();
            let (mut sink, mut stream) = ws.split();
            let up = async move {
                use tokio::io::AsyncWriteExt;
                while let Some(Ok(m)) = stream.next().await {
                    match m {
                        Message::Binary(b) if b.first() == Some(&0) && b.len() > 1 && wr.write_all(&b[1..]).await.is_err() => break,
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                let _ = wr.shutdown().await;
            };
            let down = async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut frame = vec![0u8];
                            frame.extend_from_slice(&buf[..n]);
                            if sink.send(Message::binary(frame)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = sink.close().await;
            };
            tokio::join!(up, down);
        }
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", "v4.channel.k8s.io")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

/// `echo` output of a shell command line, as a crashing container would print it.
fn echoes(cmd: &str) -> String {
    let mut out = String::new();
    for part in cmd.split([';', '&', '|']) {
        if let Some(rest) = part.trim().strip_prefix("echo ") {
            let text = rest.split(">&").next().unwrap_or("").trim().trim_matches(|c| c == '\'' || c == '"');
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

/// Controller ticks a leading `sleep N` keeps a container from being ready.
fn sleep_ticks(cmd: &str) -> i64 {
    cmd.split([';', '&', '|']).find_map(|p| p.trim().strip_prefix("sleep ")?.trim().parse::<f64>().ok()).map_or(0, |s| (s * 25.0) as i64)
}

fn exit_code(cmd: &str) -> Option<i64> {
    cmd.split([';', '&', '|']).find_map(|p| p.trim().strip_prefix("exit ")?.trim().parse::<i64>().ok()).filter(|&c| c != 0)
}

/// One step of every pod's life, by the ticks since its creation.
fn step_pod(s: &mut Store, tx: &tokio::sync::broadcast::Sender<WatchEvent>, pod: &Value) {
    let mut p = pod.clone();
    if !p["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let note = |p: &Value, k: &str| p["metadata"]["annotations"][k].as_str().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    // A pod waiting on its readiness-probe file: Ready once the file exists.
    if note(&p, "fake.llmd.dev/probing") == 1 {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        let file = probe_file(&p["spec"]["containers"][0]).unwrap_or_default();
        if s.files.get(&(ns, name)).is_some_and(|f| f.contains_key(&file)) {
            p["metadata"]["annotations"]["fake.llmd.dev/probing"] = json!("2");
            p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]);
            p["status"]["containerStatuses"][0]["ready"] = json!(true);
            s.put(tx, res_by_kind("Pod"), p);
        }
        return;
    }
    let age = note(&p, "fake.llmd.dev/ticks") + 1;
    p["metadata"]["annotations"]["fake.llmd.dev/ticks"] = json!(age.to_string());
    let c = p["spec"]["containers"][0].clone();
    let cname = c["name"].as_str().unwrap_or("main").to_string();
    let image = c["image"].as_str().unwrap_or("").to_string();
    let cmd = command_text(&c);
    let job_pod = p["metadata"]["labels"]["job-name"].is_string();
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
    let cs = |state: Value, last: Value, ready: bool, restarts: i64| json!([{"name": cname, "image": image, "imageID": "", "ready": ready, "restartCount": restarts, "started": ready, "state": state, "lastState": last}]);
    let phase_before = p["status"]["phase"].clone();
    let mut changed = true;
    match age {
        1 => p["status"] = json!({"phase": "Pending"}),
        2 => {
            let gpus = quantity_gpus(&c);
            if gpus > NODE_GPUS {
                let msg = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
                p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]});
                s.event(tx, &p, "Warning", "FailedScheduling", msg);
            } else {
                p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": cs(json!({"waiting": {"reason": "ContainerCreating"}}), json!({}), false, 0)});
                s.event(tx, &p, "Normal", "Scheduled", &format!("Successfully assigned {ns}/{name} to fake-node-1"));
            }
        }
        3 if p["status"]["conditions"][0]["status"] == "True" => {
            let sched = json!([{"type": "PodScheduled", "status": "True"}]);
            if image.contains("does-not-exist") {
                let msg = format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found");
                p["status"] = json!({"phase": "Pending", "conditions": sched, "containerStatuses": cs(json!({"waiting": {"reason": "ErrImagePull", "message": msg}}), json!({}), false, 0)});
                s.event(tx, &p, "Warning", "Failed", &format!("Failed to pull image \"{image}\": {msg}"));
            } else if cmd.contains("/dev/zero") {
                let last = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": now(), "finishedAt": now()}});
                p["status"] = json!({"phase": "Running", "conditions": sched, "containerStatuses": cs(json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 10s restarting failed container={cname}")}}), last, false, 1)});
                s.event(tx, &p, "Warning", "BackOff", "Back-off restarting failed container");
            } else if let Some(code) = exit_code(&cmd) {
                s.logs.insert((ns.clone(), name.clone()), echoes(&cmd));
                let last = json!({"terminated": {"exitCode": code, "reason": "Error", "startedAt": now(), "finishedAt": now()}});
                p["status"] = json!({"phase": "Running", "conditions": sched, "containerStatuses": cs(json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 10s restarting failed container={cname}")}}), last, false, 1)});
                s.event(tx, &p, "Warning", "BackOff", "Back-off restarting failed container");
            } else if let Some(file) = probe_file(&c).filter(|_| !job_pod) {
                // Running; Ready when the probe's file appears (the hook plays the command).
                let _ = file;
                p["metadata"]["annotations"]["fake.llmd.dev/probing"] = json!("1");
                p["status"] = json!({"phase": "Running", "podIP": "10.0.0.3", "conditions": sched, "containerStatuses": cs(json!({"running": {"startedAt": now()}}), json!({}), false, 0)});
                s.event(tx, &p, "Normal", "Started", &format!("Started container {cname}"));
                let run = pod_run(s, &p);
                s.pending.push(run);
            } else if job_pod {
                s.logs.insert((ns.clone(), name.clone()), echoes(&cmd));
                p["status"] = json!({"phase": "Succeeded", "conditions": sched, "containerStatuses": cs(json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), json!({}), false, 0)});
            } else if note(&p, "fake.llmd.dev/slept") < sleep_ticks(&cmd) {
                // Running but not ready while its command sleeps (a server still loading).
                let slept = note(&p, "fake.llmd.dev/slept") + 1;
                p["metadata"]["annotations"]["fake.llmd.dev/slept"] = json!(slept.to_string());
                p["metadata"]["annotations"]["fake.llmd.dev/ticks"] = json!("2");
                p["status"] = json!({"phase": "Running", "conditions": sched, "containerStatuses": cs(json!({"running": {"startedAt": now()}}), json!({}), false, 0)});
            } else {
                s.logs.insert((ns.clone(), name.clone()), echoes(&cmd));
                let conds = json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]);
                p["status"] = json!({"phase": "Running", "podIP": "10.0.0.2", "conditions": conds, "containerStatuses": cs(json!({"running": {"startedAt": now()}}), json!({}), true, 0)});
                s.event(tx, &p, "Normal", "Started", &format!("Started container {cname}"));
            }
        }
        4 if p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull" => {
            p["status"]["containerStatuses"][0]["state"] =
                json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}});
            s.event(tx, &p, "Normal", "BackOff", &format!("Back-off pulling image \"{image}\""));
        }
        _ => changed = age <= 4,
    }
    let _ = phase_before;
    if changed {
        s.put(tx, res_by_kind("Pod"), p);
    }
}

fn new_pod(
    s: &mut Store,
    tx: &tokio::sync::broadcast::Sender<WatchEvent>,
    owner: &Value,
    template: &Value,
    extra_labels: Value,
    restart: &str,
) {
    let ns = owner["metadata"]["namespace"].as_str().unwrap_or("default");
    let oname = owner["metadata"]["name"].as_str().unwrap_or("x");
    let suffix = format!("{:05x}", rand_u32() & 0xfffff);
    let mut labels = template["metadata"]["labels"].clone();
    if labels.is_null() {
        labels = json!({});
    }
    merge(&mut labels, &extra_labels);
    let mut spec = template["spec"].clone();
    if spec["restartPolicy"].is_null() {
        spec["restartPolicy"] = json!(restart);
    }
    let pod = json!({
        "metadata": {"name": format!("{oname}-{suffix}"), "namespace": ns, "labels": labels,
            "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": oname, "uid": owner["metadata"]["uid"], "controller": true}]},
        "spec": spec,
        "status": {"phase": "Pending"}
    });
    s.create(tx, res_by_kind("Pod"), pod, "fake-controller", "Update");
}

fn template_hash(template: &Value) -> String {
    format!("{:08x}", blake3::hash(template.to_string().as_bytes()).as_bytes()[..4].iter().fold(0u32, |a, b| (a << 8) | *b as u32))
}

fn controller_tick(s: &mut Store, tx: &tokio::sync::broadcast::Sender<WatchEvent>) {
    let snapshot: Vec<(Key, Value)> = s.objects.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let pods_of =
        |uid: &str| -> Vec<Value> { snapshot.iter().filter(|(k, o)| k.0 == "/pods" && owned_by(o, uid)).map(|(_, o)| o.clone()).collect() };
    let live_uids: std::collections::HashSet<String> =
        snapshot.iter().filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(String::from)).collect();
    for (key, obj) in &snapshot {
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
        // Foreground deletion: dependents first, then the object.
        if !obj["metadata"]["deletionTimestamp"].is_null() {
            let deps: Vec<Key> = snapshot.iter().filter(|(_, o)| owned_by(o, &uid)).map(|(k, _)| k.clone()).collect();
            if deps.is_empty() {
                s.remove(tx, &key.0, &key.1, &key.2);
            } else {
                for d in deps {
                    s.remove(tx, &d.0, &d.1, &d.2);
                }
            }
            continue;
        }
        // Garbage collection of orphans.
        if let Some(refs) = obj["metadata"]["ownerReferences"].as_array()
            && refs.iter().any(|r| !live_uids.contains(r["uid"].as_str().unwrap_or("")))
        {
            s.remove(tx, &key.0, &key.1, &key.2);
            continue;
        }
        match key.0.as_str() {
            "/persistentvolumeclaims" if obj["status"]["phase"] != "Bound" => {
                let mut o = obj.clone();
                o["status"] =
                    json!({"phase": "Bound", "accessModes": o["spec"]["accessModes"], "capacity": o["spec"]["resources"]["requests"]});
                s.put(tx, res_by_kind("PersistentVolumeClaim"), o);
            }
            "/namespaces" if obj["status"]["phase"] != "Active" => {
                let mut o = obj.clone();
                o["status"] = json!({"phase": "Active"});
                s.put(tx, res_by_kind("Namespace"), o);
            }
            "/pods" => step_pod(s, tx, obj),
            "gateway.networking.k8s.io/gateways"
                if obj["status"]["conditions"].is_null() && obj["spec"]["gatewayClassName"].is_string() =>
            {
                let mut o = obj.clone();
                o["status"] = json!({"conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted", "lastTransitionTime": now()},
                    {"type": "Programmed", "status": "True", "reason": "Programmed", "lastTransitionTime": now()}
                ]});
                s.put(tx, res_by_kind("Gateway"), o);
            }
            "inference.networking.k8s.io/inferencepools" if obj["status"]["parents"].is_null() => {
                // Accepted by a Gateway that exists and that an HTTPRoute leads from to it.
                let parent =
                    snapshot.iter().filter(|(k, _)| k.0 == "gateway.networking.k8s.io/httproutes" && k.1 == key.1).find_map(|(_, r)| {
                        let leads = r["spec"]["rules"].as_array()?.iter().any(|rule| {
                            rule["backendRefs"].as_array().is_some_and(|b| b.iter().any(|b| b["name"].as_str() == Some(key.2.as_str())))
                        });
                        let gw = r["spec"]["parentRefs"][0]["name"].as_str()?;
                        let exists = snapshot.iter().any(|(k, _)| k.0 == "gateway.networking.k8s.io/gateways" && k.1 == key.1 && k.2 == gw);
                        (leads && exists).then(|| gw.to_string())
                    });
                if let Some(gw) = parent {
                    let mut o = obj.clone();
                    o["status"] = json!({"parents": [{"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw},
                        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "lastTransitionTime": now()}]}]});
                    s.put(tx, res_by_kind("InferencePool"), o);
                }
            }
            "batch/jobs" => {
                let pods = pods_of(&uid);
                let done = obj["status"]["conditions"].as_array().is_some_and(|c| !c.is_empty());
                if done {
                    continue;
                }
                if pods.is_empty() {
                    let labels = json!({"job-name": key.2, "batch.kubernetes.io/job-name": key.2, "controller-uid": uid});
                    new_pod(s, tx, obj, &obj["spec"]["template"], labels, "Never");
                    let mut o = obj.clone();
                    o["status"] = json!({"active": 1, "startTime": now()});
                    s.put(tx, res_by_kind("Job"), o);
                } else if pods.iter().any(|p| p["status"]["phase"] == "Succeeded") {
                    let mut o = obj.clone();
                    o["status"] = json!({"succeeded": 1, "active": 0, "completionTime": now(), "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now()}]});
                    s.put(tx, res_by_kind("Job"), o);
                }
            }
            "apps/deployments" => {
                let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                let hash = template_hash(&obj["spec"]["template"]);
                let pods = pods_of(&uid);
                let (current, old): (Vec<&Value>, Vec<&Value>) =
                    pods.iter().partition(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
                for p in old {
                    s.remove(tx, "/pods", &key.1, p["metadata"]["name"].as_str().unwrap_or(""));
                }
                let have = current.len() as i64;
                for _ in have..want {
                    new_pod(s, tx, obj, &obj["spec"]["template"], json!({"pod-template-hash": hash}), "Always");
                }
                for p in current.iter().skip(want.max(0) as usize) {
                    s.remove(tx, "/pods", &key.1, p["metadata"]["name"].as_str().unwrap_or(""));
                }
                let ready = current
                    .iter()
                    .take(want.max(0) as usize)
                    .filter(|p| {
                        p["status"]["conditions"]
                            .as_array()
                            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
                    })
                    .count() as i64;
                let gen_ = obj["metadata"]["generation"].as_i64().unwrap_or(1);
                let status = json!({"observedGeneration": gen_, "replicas": want, "updatedReplicas": want.min(have.max(0) + (want - have).max(0)), "readyReplicas": ready, "availableReplicas": ready});
                if obj["status"] != status {
                    let mut o = obj.clone();
                    o["status"] = status;
                    s.put(tx, res_by_kind("Deployment"), o);
                }
            }
            _ => {}
        }
    }
}

/// The kubeconfig tests use: `LLMD_TEST_KUBECONFIG` (a real cluster) or a fake's.
pub enum Cluster {
    Fake(FakeKube),
    Real(PathBuf),
}

impl Cluster {
    /// A real cluster when `LLMD_TEST_KUBECONFIG` is set, else a fresh fake.
    pub fn for_test() -> Cluster {
        match std::env::var_os("LLMD_TEST_KUBECONFIG") {
            Some(p) => Cluster::Real(PathBuf::from(p)),
            None => Cluster::Fake(FakeKube::start()),
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        match self {
            Cluster::Fake(f) => &f.kubeconfig,
            Cluster::Real(p) => p,
        }
    }

    pub fn fake(&self) -> Option<&FakeKube> {
        match self {
            Cluster::Fake(f) => Some(f),
            Cluster::Real(_) => None,
        }
    }
}
