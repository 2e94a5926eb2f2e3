//! The build graph of an experiment: nodes, their keys and manifests, and the decision
//! for each — fresh, or runs because of a [`Reason`].
//!
//! | node | key covers | fresh when |
//! |---|---|---|
//! | `plan/<setup>/<stack>` | merged config leaves, template set, llmd version | a successful record exists |
//! | `standup/<setup>/<stack>` | what the backend starts (server command, model, replicas) | record exists **and**, when a run needs it, the deployment is live from this key |
//! | `smoketest/<setup>/<stack>` | the standup key | record exists and the deployment was not (re)started in this build |
//! | `run/<setup>/<stack>/<treatment>#<rep>` | standup key, rendered profile, treatment values, harness and version, repetition | a successful record exists with its outputs |
//! | `analysis/<setup>/<stack>/<treatment>#<rep>` | the run's output digests, analysis version | a successful record exists |
//! | `summary/<experiment>` | every analysis output | a successful record exists |
//!
//! Keys never include paths, hosts or clocks (see [`super::key`]). A run's key does not
//! include the plan's Kubernetes manifests: on the local backend a run consumes the
//! deployment, and the deployment consumes only what the backend starts — so editing a
//! manifest-only value re-renders the plan and re-executes nothing else.

use std::collections::BTreeMap;

use super::key::{Leaf, LeafChange, diff_leaves, node_key};
use super::reason::Reason;
use crate::store::{Manifest, Record, Status, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Plan,
    Standup,
    Smoketest,
    Run,
    Analysis,
    Summary,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::Standup => "standup",
            Kind::Smoketest => "smoketest",
            Kind::Run => "run",
            Kind::Analysis => "analysis",
            Kind::Summary => "summary",
        }
    }

    /// Nodes whose outputs are copied into the workspace.
    pub fn materializes(self) -> bool {
        matches!(self, Kind::Plan | Kind::Run | Kind::Analysis | Kind::Summary)
    }

    /// Nodes with effects outside the cache get an incomplete marker while they execute.
    pub fn has_effects(self) -> bool {
        matches!(self, Kind::Standup | Kind::Smoketest | Kind::Run)
    }
}

/// What the build does with a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Fresh,
    Run(Reason),
    Skip(String),
}

/// One node: its identity, key, inputs, and (once decided) what happens to it.
#[derive(Clone, Debug)]
pub struct GraphNode {
    pub id: String,
    pub kind: Kind,
    /// Named inputs; the key is derived from them.
    pub inputs: BTreeMap<String, String>,
    /// Canonical leaves the node was derived from (for `why`).
    pub leaves: Vec<Leaf>,
    /// Detail blobs recorded with an execution (see `Manifest::details`), set when the
    /// node runs.
    pub details: BTreeMap<String, Vec<u8>>,
    pub key: String,
    pub decision: Decision,
    /// A fresh node whose key is not the one the previous build settled on: what
    /// changed (it is fresh by an earlier result with the same inputs).
    pub changed: Option<Reason>,
    /// The successful record for `key`, when there is one.
    pub record: Option<Record>,
}

impl GraphNode {
    pub fn new(id: String, kind: Kind, inputs: BTreeMap<String, String>, leaves: Vec<Leaf>) -> GraphNode {
        let key = node_key(kind.name(), &inputs);
        GraphNode { id, kind, inputs, leaves, details: BTreeMap::new(), key, decision: Decision::Fresh, changed: None, record: None }
    }

    /// Recomputes the key after an input became known (a run's outputs, say).
    pub fn rekey(&mut self) {
        self.key = node_key(self.kind.name(), &self.inputs);
    }

    pub fn runs(&self) -> bool {
        matches!(self.decision, Decision::Run(_))
    }

    pub fn manifest(&self, store: &Store) -> anyhow::Result<Manifest> {
        let leaves = if self.leaves.is_empty() { None } else { Some(store.put_blob(&serde_json::to_vec(&self.leaves)?)?) };
        let mut details = BTreeMap::new();
        for (name, bytes) in &self.details {
            details.insert(name.clone(), store.put_blob(bytes)?);
        }
        Ok(Manifest { inputs: self.inputs.clone(), leaves, details })
    }
}

/// Input names and how a change to each is reported.
fn classify(name: &str, old: &str, new: &str, upstream: &dyn Fn(&str) -> Option<String>) -> Reason {
    if let Some(tool) = name.strip_prefix("tool:") {
        // `name@version` on both sides: the same tool in another version.
        if let (Some((a, va)), Some((b, vb))) = (old.split_once('@'), new.split_once('@'))
            && a == b
        {
            return Reason::ToolVersionChanged { tool: a.to_string(), old: va.to_string(), new: vb.to_string() };
        }
        return Reason::ToolVersionChanged { tool: tool.to_string(), old: old.to_string(), new: new.to_string() };
    }
    if let Some(node) = upstream(name) {
        return Reason::UpstreamChanged { node };
    }
    match name {
        "templates" => Reason::TemplateChanged { templates: Vec::new(), rendered: Vec::new() },
        n if n.starts_with("profile:") => Reason::ProfileChanged { profile: n["profile:".len()..].to_string(), changes: Vec::new() },
        other => Reason::InputsChanged { inputs: vec![other.to_string()] },
    }
}

/// The record a node's reasons are judged against: the one for the key the previous
/// build settled on for this node id (found fresh or executed), else the node's last
/// success. Judging against the last *execution* instead would report stale diffs: after
/// an edit and its revert, the node is fresh again by an older record.
pub fn baseline(store: &Store, node: &GraphNode) -> Option<Record> {
    let previous = store.decided(&node.id).filter(|k| *k != node.key).and_then(|k| store.get_record(k));
    previous.or_else(|| store.node(&node.id).last_ok.as_deref().and_then(|k| store.get_record(k)))
}

/// A detail blob of a record, parsed.
pub fn detail<T: serde::de::DeserializeOwned>(store: &Store, rec: &Record, name: &str) -> Option<T> {
    serde_json::from_slice(&store.get_blob(rec.manifest.details.get(name)?)?).ok()
}

/// Why `node` (whose key has no successful record) must execute, judged against
/// [`baseline`]: a failure of the same key, an interruption, or what changed since.
pub fn reason_to_run(store: &Store, node: &GraphNode, upstream: &dyn Fn(&str) -> Option<String>) -> Reason {
    if let Some(m) = store.incomplete(&node.key)
        && !std::path::Path::new(&format!("/proc/{}", m.pid)).exists()
    {
        return Reason::Interrupted { pid: m.pid, since_unix: m.started_unix };
    }
    let state = store.node(&node.id);
    if state.last.as_deref() == Some(node.key.as_str()) && state.last_status == Some(Status::Failed) {
        let error = store.get_record(&node.key).and_then(|r| r.error);
        return Reason::PreviousFailed { error };
    }
    let Some(old) = baseline(store, node) else { return Reason::NeverRun };
    let old_leaves: Vec<Leaf> =
        old.manifest.leaves.as_deref().and_then(|d| store.get_blob(d)).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let changes: Vec<LeafChange> = diff_leaves(&old_leaves, &node.leaves);
    // Own value changes first: they are the root cause; then upstream and tool changes.
    let changed: Vec<&String> = node.inputs.keys().filter(|k| old.manifest.inputs.get(*k) != node.inputs.get(*k)).collect();
    let removed: Vec<&String> = old.manifest.inputs.keys().filter(|k| !node.inputs.contains_key(*k)).collect();
    if !changes.is_empty() && changed.iter().any(|k| matches!(k.as_str(), "config" | "target" | "treatment")) {
        return match node.kind {
            Kind::Run => Reason::TreatmentChanged { changes },
            _ => Reason::ConfigChanged { changes },
        };
    }
    let mut by_priority: Vec<Reason> =
        changed.iter().map(|k| classify(k, old.manifest.inputs.get(*k).map_or("", |s| s.as_str()), &node.inputs[*k], upstream)).collect();
    by_priority.sort_by_key(|r| match r {
        Reason::ProfileChanged { .. } => 0,
        Reason::TemplateChanged { .. } => 1,
        Reason::ToolVersionChanged { .. } => 2,
        Reason::UpstreamChanged { .. } => 3,
        _ => 4,
    });
    if let Some(mut r) = by_priority.into_iter().next() {
        explain_in_detail(store, &old, node, &mut r);
        return r;
    }
    if !removed.is_empty() {
        return Reason::InputsChanged { inputs: removed.into_iter().cloned().collect() };
    }
    // Same inputs, different key: the engine's own version changed.
    Reason::ToolVersionChanged { tool: "llmd engine".into(), old: "?".into(), new: super::key::ENGINE_VERSION.into() }
}

/// Fills in which template files or profile keys changed, from the detail blobs of the
/// baseline record and of the node (absent in records of older llmd versions: the
/// reason then stays as general as it was).
fn explain_in_detail(store: &Store, old: &Record, node: &GraphNode, reason: &mut Reason) {
    fn new<T: serde::de::DeserializeOwned>(node: &GraphNode, name: &str) -> Option<T> {
        serde_json::from_slice(node.details.get(name)?).ok()
    }
    match reason {
        Reason::TemplateChanged { templates, .. } => {
            let (Some(a), Some(b)) = (detail::<BTreeMap<String, String>>(store, old, "templates"), new(node, "templates")) else { return };
            *templates = diff_files(&a, &b);
        }
        Reason::ProfileChanged { changes, .. } => {
            let (Some(a), Some(b)) = (detail::<Vec<Leaf>>(store, old, "profile"), new::<Vec<Leaf>>(node, "profile")) else { return };
            *changes = diff_leaves(&a, &b);
        }
        _ => {}
    }
}

/// Files added, edited or removed between two `file → digest` maps.
pub fn diff_files(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<super::reason::FileChange> {
    let change = |file: &str, what: &str| super::reason::FileChange { file: file.to_string(), change: what.to_string() };
    let mut out: Vec<_> = new
        .iter()
        .filter_map(|(f, d)| match old.get(f) {
            None => Some(change(f, "added")),
            Some(o) if o != d => Some(change(f, "edited")),
            Some(_) => None,
        })
        .collect();
    out.extend(old.keys().filter(|f| !new.contains_key(*f)).map(|f| change(f, "removed")));
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The successful record for a key, with every output still in the cache; otherwise
/// the output that is missing.
pub fn usable_record(store: &Store, key: &str) -> Result<Option<Record>, String> {
    let Some(rec) = ok_record(store, key) else { return Ok(None) };
    match missing_output(store, &rec) {
        Some(name) => Err(name),
        None => Ok(Some(rec)),
    }
}

/// The successful record of `key`, its outputs unchecked.
pub fn ok_record(store: &Store, key: &str) -> Option<Record> {
    store.get_record(key).filter(|rec| rec.status == Status::Ok)
}

/// The first output of `rec` whose blob is not stored.
pub fn missing_output(store: &Store, rec: &Record) -> Option<String> {
    rec.outputs.iter().find(|(_, d)| !store.has_blob(d)).map(|(name, _)| name.clone())
}

/// `*` matches any run of characters (including `/`); `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("run/*", "run/a/sim/r1#1"));
        assert!(glob_match("run/*/sim/*#2", "run/a/sim/r1#2"));
        assert!(!glob_match("run/*#2", "run/a/sim/r1#1"));
        assert!(glob_match("plan/?/x", "plan/a/x"));
    }

    fn rec(key: &str, id: &str, inputs: &[(&str, &str)], status: Status, store: &Store, leaves: &[Leaf]) -> Record {
        let leaves = if leaves.is_empty() { None } else { Some(store.put_blob(&serde_json::to_vec(leaves).unwrap()).unwrap()) };
        Record {
            version: Record::VERSION,
            key: key.into(),
            id: id.into(),
            kind: "run".into(),
            status,
            manifest: Manifest {
                inputs: inputs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
                leaves,
                details: BTreeMap::new(),
            },
            outputs: BTreeMap::new(),
            started_unix: 0.0,
            duration_s: 0.0,
            error: Some("boom".into()),
        }
    }

    #[test]
    fn reasons_from_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let leaf = |v: &str| Leaf { path: "load.stages.0.rate".into(), value: v.into(), origin: "e.yaml:3:5".into() };
        let node = |inputs: &[(&str, &str)], leaves: Vec<Leaf>| {
            GraphNode::new("run/s/x/t#1".into(), Kind::Run, inputs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(), leaves)
        };
        let up = |name: &str| (name == "deployment").then(|| "standup/s/x".to_string());
        let n = node(&[("treatment", "t1"), ("deployment", "d1"), ("tool:harness", "llmd@1")], vec![leaf("4")]);
        assert_eq!(reason_to_run(&store, &n, &up), Reason::NeverRun);
        store
            .commit(&rec(
                &n.key,
                &n.id,
                &[("treatment", "t1"), ("deployment", "d1"), ("tool:harness", "llmd@1")],
                Status::Ok,
                &store,
                &[leaf("4")],
            ))
            .unwrap();

        let n2 = node(&[("treatment", "t2"), ("deployment", "d1"), ("tool:harness", "llmd@1")], vec![leaf("8")]);
        match reason_to_run(&store, &n2, &up) {
            Reason::TreatmentChanged { changes } => {
                assert_eq!((changes[0].old.as_deref(), changes[0].new.as_deref()), (Some("4"), Some("8")))
            }
            other => panic!("{other:?}"),
        }
        let n3 = node(&[("treatment", "t1"), ("deployment", "d2"), ("tool:harness", "llmd@1")], vec![leaf("4")]);
        assert_eq!(reason_to_run(&store, &n3, &up), Reason::UpstreamChanged { node: "standup/s/x".into() });
        let n4 = node(&[("treatment", "t1"), ("deployment", "d1"), ("tool:harness", "llmd@2")], vec![leaf("4")]);
        assert!(matches!(reason_to_run(&store, &n4, &up), Reason::ToolVersionChanged { .. }));

        store.commit(&rec(&n3.key, &n3.id, &[], Status::Failed, &store, &[])).unwrap();
        assert_eq!(reason_to_run(&store, &n3, &up), Reason::PreviousFailed { error: Some("boom".into()) });
        store.mark_incomplete(&n4.id, &n4.key).unwrap();
        // Our own pid is alive: a marker of a live build is not an interruption.
        assert!(!matches!(reason_to_run(&store, &n4, &up), Reason::Interrupted { .. }));
    }

    #[test]
    fn reasons_diff_against_what_the_previous_build_settled_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let leaf = |v: &str| Leaf { path: "load.stages.0.rate".into(), value: v.into(), origin: "e.yaml:3:5".into() };
        let node = |rate: &str| {
            let inputs = BTreeMap::from([("treatment".to_string(), format!("t{rate}"))]);
            GraphNode::new("run/s/x/t#1".into(), Kind::Run, inputs, vec![leaf(rate)])
        };
        let commit = |n: &GraphNode| {
            let inputs: Vec<(&str, &str)> = n.inputs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            store.commit(&rec(&n.key, &n.id, &inputs, Status::Ok, &store, &n.leaves)).unwrap();
        };
        let (n8, n9) = (node("8"), node("9"));
        commit(&n8);
        commit(&n9);
        // Reverted to 8: fresh by its old record; the build settles on it.
        store.record_decisions([(n8.id.as_str(), n8.key.as_str())]).unwrap();
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.decided(&n8.id), Some(n8.key.as_str()));
        // Then 8 → 16: the change is 8 → 16, not the last execution's 9 → 16.
        match reason_to_run(&reopened, &node("16"), &|_| None) {
            Reason::TreatmentChanged { changes } => {
                assert_eq!((changes[0].old.as_deref(), changes[0].new.as_deref()), (Some("8"), Some("16")));
            }
            other => panic!("{other:?}"),
        }
        // Without a settled key, the last success is the baseline.
        let fresh_cache = tempfile::tempdir().unwrap();
        let other = Store::open(fresh_cache.path()).unwrap();
        assert_eq!(reason_to_run(&other, &node("16"), &|_| None), Reason::NeverRun);
    }
}
