//! `llmd build`: decide every node of an experiment, then execute the ones that must
//! run, in dependency order, recording each in the store.
//!
//! Planning is pure, so deciding renders any plan whose key has no record (in memory):
//! the keys of everything downstream are then known exactly and `--dry-run` predicts
//! precisely what a build executes. Effects happen per setup treatment: stand up the
//! stacks some run needs (reusing a live deployment with the same key), smoketest new
//! deployments, run, analyse, tear down (unless `--keep-stacks`). A node's record is
//! written only after it finished; an incomplete marker covers its side effects.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::graph::{Decision, GraphNode, Kind, glob_match, reason_to_run, usable_record};
use super::key::{Leaf, leaves_digest, override_leaves};
use super::materialize::Materializer;
use super::planner::{Planner, RenderedOut};
use super::reason::Reason;
use crate::analysis::headline;
use crate::analysis::report::{StackInfo, analyze_dir_with};
use crate::backend::local::LocalBackend;
use crate::backend::{Backend, Liveness, Receipt, StackTarget, TARGET_PATHS, target_from_config};
use crate::config::PlanOptions;
use crate::error::{InputError, Warnings};
use crate::experiment::{Experiment, RunTreatment, load_experiment};
use crate::harness::external::HarnessKind;
use crate::harness::profile::{find_profile, render_profile, render_profile_text, substitute_placeholders};
use crate::phases::run::{HarnessJob, experiment_id, judge};
use crate::store::{Record, Status, Store, unix_now};
use crate::yaml::Node;

/// Version of the analysis a node computes; part of analysis keys.
const ANALYSIS_VERSION: &str = "5";

/// Everything `llmd build` (and `status`) is asked to do.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub experiment_file: PathBuf,
    /// Plan options from the command line; `spec` may be empty (then `experiment.spec`).
    pub plan: PlanOptions,
    pub workspace: PathBuf,
    pub cache_dir: PathBuf,
    pub dry_run: bool,
    pub force: Vec<String>,
    pub keep_going: bool,
    pub keep_stacks: bool,
    pub lock_timeout: Option<Duration>,
    pub harness: Option<String>,
    pub workload: Option<String>,
    pub tokenizer: Option<PathBuf>,
    pub harness_timeout: Duration,
    pub verbose: bool,
    /// How the build was invoked (for the lock holder and the journal).
    pub command_line: String,
    /// Print node lines as they are decided and executed (off for `--json`).
    pub human: bool,
}

/// What happened to one node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub kind: &'static str,
    /// fresh | ran | failed | skipped (dry run: fresh | would_run | skipped)
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    pub experiment: String,
    pub dry_run: bool,
    pub nodes: Vec<NodeReport>,
    pub seconds: f64,
}

impl BuildReport {
    pub fn count(&self, status: &str) -> usize {
        self.nodes.iter().filter(|n| n.status == status).count()
    }

    pub fn ok(&self) -> bool {
        self.count("failed") == 0
    }

    pub fn summary_line(&self) -> String {
        if self.dry_run {
            format!(
                "{} would run, {} fresh, {} skipped (dry run, decided in {:.0} ms)",
                self.count("would_run"),
                self.count("fresh"),
                self.count("skipped"),
                self.seconds * 1e3
            )
        } else {
            format!(
                "{} ran, {} fresh, {} failed, {} skipped in {:.1} s",
                self.count("ran"),
                self.count("fresh"),
                self.count("failed"),
                self.count("skipped"),
                self.seconds
            )
        }
    }
}

/// One run (and its analysis) of a stack.
struct RunSlot {
    run: usize,
    analysis: usize,
    treatment: String,
    rep: usize,
    profile_path: PathBuf,
    overrides: Vec<(String, Node)>,
}

struct StackSlot {
    name: String,
    plan: usize,
    standup: usize,
    smoketest: usize,
    target: StackTarget,
    runs: Vec<RunSlot>,
}

struct SetupSlot {
    name: String,
    workspace: PathBuf,
    stacks: Vec<StackSlot>,
}

/// The decided graph.
struct Graph {
    experiment: Experiment,
    harness: HarnessKind,
    nodes: Vec<GraphNode>,
    setups: Vec<SetupSlot>,
    summary: usize,
    /// Renders done while deciding, for plan nodes that run.
    renders: HashMap<usize, Arc<RenderedOut>>,
}

/// `<venv>/bin/<tool>` → the version in `<venv>/lib/python*/site-packages/<dist>-<v>.dist-info`.
fn python_tool_version(exe: &Path, dist: &str) -> Option<String> {
    let venv = exe.parent()?.parent()?;
    for lib in std::fs::read_dir(venv.join("lib")).ok()?.flatten() {
        for e in std::fs::read_dir(lib.path().join("site-packages")).ok()?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(v) = name.strip_prefix(&format!("{dist}-")).and_then(|r| r.strip_suffix(".dist-info")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The harness's identity for run keys: name and version.
pub fn harness_identity(kind: HarnessKind) -> String {
    let version = match kind {
        HarnessKind::Llmd => Some(env!("CARGO_PKG_VERSION").to_string()),
        other => {
            let dist = match other {
                HarnessKind::InferencePerf => "inference_perf",
                HarnessKind::Guidellm => "guidellm",
                _ => "vllm",
            };
            other.locate().ok().and_then(|exe| python_tool_version(&exe, dist))
        }
    };
    format!("{}@{}", kind.name(), version.unwrap_or_else(|| "unknown".into()))
}

fn setup_options(base: &PlanOptions, spec: &str, overrides: &Node) -> PlanOptions {
    let mut o = base.clone();
    o.spec = spec.to_string();
    if overrides.as_map().is_some_and(|m| !m.is_empty()) {
        o.setup_overrides = Some(overrides.clone());
    }
    o
}

fn blob_json<T: serde::de::DeserializeOwned>(store: &Store, rec: &Record, name: &str) -> Option<T> {
    serde_json::from_slice(&store.get_blob(rec.outputs.get(name)?)?).ok()
}

/// Placeholder values for profile keys: the endpoint is not known until the stack
/// runs, and must not be part of the key anyway.
fn key_placeholders(stack: &str, target: &StackTarget, endpoint: &str) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("LLMDBENCH_DEPLOY_CURRENT_MODEL".into(), target.model.clone());
    v.insert("LLMDBENCH_DEPLOY_CURRENT_TOKENIZER".into(), target.model.clone());
    if let Some(len) = target.max_model_len {
        v.insert("LLMDBENCH_DEPLOY_CURRENT_MAX_MODEL_LEN".into(), len.to_string());
    }
    v.insert("LLMDBENCH_HARNESS_STACK_ENDPOINT_URL".into(), endpoint.to_string());
    v.insert("LLMDBENCH_HARNESS_STACK_NAME".into(), stack.to_string());
    v
}

struct Decider<'a> {
    opts: &'a BuildOptions,
    store: &'a Store,
    /// Records whose workspace copies are intact need no blob reads; others have their
    /// outputs verified while deciding, so a corrupt blob re-executes its node.
    mat: &'a Materializer,
    /// Profile name → file, and file → text: read once per build, not once per run.
    profile_paths: HashMap<String, PathBuf>,
    profile_texts: HashMap<PathBuf, String>,
    /// (file, substituted text, treatment) → digest of the rendered profile.
    profile_cache: HashMap<(PathBuf, String, String), String>,
    warnings: Warnings,
}

impl<'a> Decider<'a> {
    fn new(opts: &'a BuildOptions, store: &'a Store, mat: &'a Materializer) -> Decider<'a> {
        Decider {
            opts,
            store,
            mat,
            profile_paths: HashMap::new(),
            profile_texts: HashMap::new(),
            profile_cache: HashMap::new(),
            warnings: Warnings::default(),
        }
    }

    fn forced(&self, id: &str) -> Option<String> {
        self.opts.force.iter().find(|p| glob_match(p, id)).cloned()
    }

    /// Decides a node from its own record (fresh, or why it runs). `leaves` are the
    /// node's canonical leaves, computed only when it runs (they can be large).
    fn decide_own(&self, node: &mut GraphNode, upstream: &dyn Fn(&str) -> Option<String>, leaves: &dyn Fn() -> Vec<Leaf>) {
        if let Some(p) = self.forced(&node.id) {
            node.decision = Decision::Run(Reason::Forced { pattern: p });
            node.record = usable_record(self.store, &node.key).ok().flatten();
            node.leaves = leaves();
            return;
        }
        let verified = usable_record(self.store, &node.key).and_then(|rec| match rec {
            Some(rec) if node.kind.materializes() && !self.mat.up_to_date(&rec.key) => verify_outputs(self.store, &rec).map(|()| Some(rec)),
            other => Ok(other),
        });
        match verified {
            Ok(Some(rec)) => {
                node.record = Some(rec);
                node.decision = Decision::Fresh;
            }
            Ok(None) => {
                node.leaves = leaves();
                node.decision = Decision::Run(reason_to_run(self.store, node, upstream));
            }
            Err(output) => {
                node.leaves = leaves();
                node.decision = Decision::Run(Reason::OutputMissing { output });
            }
        }
    }

    /// The profile text a run key covers, rendered with a placeholder endpoint.
    fn profile_digest(
        &mut self,
        path: &Path,
        values: &BTreeMap<String, String>,
        treatment: &str,
        overrides: &[(String, Node)],
    ) -> Result<String> {
        if !self.profile_texts.contains_key(path) {
            let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read profile {}", path.display()))?;
            self.profile_texts.insert(path.to_path_buf(), raw);
        }
        let text = substitute_placeholders(&self.profile_texts[path], values);
        let cache_key = (path.to_path_buf(), text, treatment.to_string());
        if let Some(d) = self.profile_cache.get(&cache_key) {
            return Ok(d.clone());
        }
        let (_, yaml) = render_profile_text(&cache_key.1, &path.display().to_string(), overrides, &mut self.warnings)?;
        let d = crate::store::digest(yaml.as_bytes());
        self.profile_cache.insert(cache_key, d.clone());
        Ok(d)
    }

    fn profile_path(&mut self, harness: &str, name: &str) -> Result<PathBuf> {
        if let Some(p) = self.profile_paths.get(name) {
            return Ok(p.clone());
        }
        let p = find_profile(&self.opts.plan.base_dir, harness, name).map_err(|e| InputError::new(format!("{e:#}")))?;
        self.profile_paths.insert(name.to_string(), p.clone());
        Ok(p)
    }
}

/// A stack after the first pass: its plan node decided and its deployment target known.
struct StackHead {
    setup: usize,
    name: String,
    plan: GraphNode,
    render: Option<Arc<RenderedOut>>,
    target: StackTarget,
    /// The config leaves the backend consumes (for `why` on standups).
    target_leaves: Vec<Leaf>,
    default_profile: String,
}

/// A stack after the second pass: everything downstream of its plan, decided.
struct StackTail {
    standup: GraphNode,
    smoketest: GraphNode,
    /// (run, analysis, slot with placeholder indices)
    runs: Vec<(GraphNode, GraphNode, RunSlot)>,
}

/// What every stack's second pass shares.
struct TailContext<'a> {
    experiment: &'a Experiment,
    setups: &'a [crate::experiment::SetupTreatment],
    run_treatments: &'a [RunTreatment],
    harness: HarnessKind,
    tool: String,
}

/// Decides a stack's standup, smoketest, runs and analyses.
fn decide_stack(d: &mut Decider, cx: &TailContext, head: &StackHead) -> Result<StackTail> {
    let setup = &cx.setups[head.setup].name;
    let stack = &head.name;
    let target_json = serde_json::to_string(&head.target)?;
    let inputs = BTreeMap::from([
        ("target".to_string(), crate::store::digest(target_json.as_bytes())),
        ("backend".to_string(), "local".to_string()),
    ]);
    let mut standup = GraphNode::new(format!("standup/{setup}/{stack}"), Kind::Standup, inputs, head.target_leaves.clone());
    d.decide_own(&mut standup, &|_| None, &|| head.target_leaves.clone());
    let standup_key = standup.key.clone();

    let inputs = BTreeMap::from([("deployment".to_string(), standup_key.clone())]);
    let mut smoketest = GraphNode::new(format!("smoketest/{setup}/{stack}"), Kind::Smoketest, inputs, Vec::new());
    let standup_id = standup.id.clone();
    d.decide_own(&mut smoketest, &|n| (n == "deployment").then(|| standup_id.clone()), &Vec::new);

    let mut runs = Vec::new();
    let values = key_placeholders(stack, &head.target, "REPLACE_ENV_LLMDBENCH_HARNESS_STACK_ENDPOINT_URL");
    for t in cx.run_treatments {
        let profile_name = t.profile.clone().unwrap_or_else(|| head.default_profile.clone());
        let profile_path = d.profile_path(cx.harness.name(), &profile_name)?;
        let profile_digest = d.profile_digest(&profile_path, &values, &t.name, &t.values)?;
        let treatment_leaves = override_leaves(&t.values);
        let treatment_digest = leaves_digest(&treatment_leaves);
        for rep in 1..=cx.experiment.repeat.max(1) {
            let inputs = BTreeMap::from([
                ("deployment".to_string(), standup_key.clone()),
                (format!("profile:{profile_name}"), profile_digest.clone()),
                ("treatment".to_string(), treatment_digest.clone()),
                ("tool:harness".to_string(), cx.tool.clone()),
                ("rep".to_string(), rep.to_string()),
            ]);
            let id = format!("run/{setup}/{stack}/{}#{rep}", t.name);
            let mut run = GraphNode::new(id.clone(), Kind::Run, inputs, treatment_leaves.clone());
            d.decide_own(&mut run, &|n| (n == "deployment").then(|| standup_id.clone()), &|| treatment_leaves.clone());
            let run_out = run
                .record
                .as_ref()
                .filter(|_| !run.runs())
                .map(|r| crate::store::digest(serde_json::to_string(&r.outputs).unwrap_or_default().as_bytes()));

            let inputs = BTreeMap::from([
                ("run".to_string(), run_out.unwrap_or_else(|| "pending".into())),
                ("tool:analysis".to_string(), ANALYSIS_VERSION.to_string()),
            ]);
            let mut analysis = GraphNode::new(format!("analysis/{setup}/{stack}/{}#{rep}", t.name), Kind::Analysis, inputs, Vec::new());
            if run.runs() {
                analysis.decision = Decision::Run(Reason::UpstreamRuns { node: id.clone() });
            } else {
                d.decide_own(&mut analysis, &|n| (n == "run").then(|| id.clone()), &Vec::new);
            }
            let slot = RunSlot {
                run: 0,
                analysis: 0,
                treatment: t.name.clone(),
                rep,
                profile_path: profile_path.clone(),
                overrides: t.values.clone(),
            };
            runs.push((run, analysis, slot));
        }
    }
    Ok(StackTail { standup, smoketest, runs })
}

/// Reads every output of `rec`, checking its digest; the first missing or corrupt one
/// is the error.
fn verify_outputs(store: &Store, rec: &Record) -> Result<(), String> {
    for (name, d) in &rec.outputs {
        if store.get_blob(d).is_none() {
            return Err(name.clone());
        }
    }
    Ok(())
}

fn plan_graph(opts: &BuildOptions, store: &Store, planner: &mut Planner, mat: &Materializer) -> Result<Graph> {
    let experiment = load_experiment(&opts.experiment_file)?;
    let spec = if !opts.plan.spec.is_empty() { opts.plan.spec.clone() } else { experiment.spec.clone().unwrap_or_default() };
    if spec.is_empty() {
        return Err(InputError::new(format!(
            "{}: no specification: add `experiment: {{spec: examples/sim}}` or pass --spec",
            opts.experiment_file.display()
        ))
        .into());
    }
    let handles: Vec<usize> = experiment.setup.iter().map(|s| planner.add_setup(setup_options(&opts.plan, &spec, &s.overrides))).collect();
    let mut d = Decider::new(opts, store, mat);
    let mut harness: Option<HarnessKind> = None;
    let run_treatments: Vec<RunTreatment> = if experiment.run.is_empty() {
        vec![RunTreatment { name: "default".into(), profile: None, values: Vec::new() }]
    } else {
        experiment.run.clone()
    };
    let version = env!("CARGO_PKG_VERSION").to_string();
    let timings = std::env::var_os("LLMD_TIMINGS").is_some();
    let t0 = Instant::now();

    // Pass 1, in order (the planner is single-threaded): plans and deployment targets.
    let mut heads = Vec::new();
    for (si, setup) in experiment.setup.iter().enumerate() {
        let plan = planner.plan(handles[si])?;
        let template_digest = planner.template_digest(handles[si])?;
        if timings {
            eprintln!("[timings] setup {}: merged and templates digested in {:.1} ms", setup.name, t0.elapsed().as_secs_f64() * 1e3);
        }
        for w in plan.warnings.iter().chain(plan.stacks.iter().flat_map(|s| s.warnings.iter())) {
            d.warnings.push(w.clone());
        }
        for (ki, stack) in plan.stacks.iter().enumerate() {
            let inputs = BTreeMap::from([
                ("config".to_string(), stack.config_digest.clone()),
                ("templates".to_string(), template_digest.clone()),
                ("tool:llmd".to_string(), version.clone()),
            ]);
            let mut plan_node = GraphNode::new(format!("plan/{}/{}", setup.name, stack.name), Kind::Plan, inputs, Vec::new());
            d.decide_own(&mut plan_node, &|_| None, &|| (*stack.leaves).clone());
            let cached_target = match (&plan_node.decision, &plan_node.record) {
                (Decision::Fresh, Some(rec)) => blob_json::<StackTarget>(store, rec, "target"),
                _ => None,
            };
            let (target, render) = match cached_target {
                Some(t) => (t, None),
                None => {
                    if !plan_node.runs() {
                        plan_node.decision = Decision::Run(Reason::OutputMissing { output: "target".into() });
                        plan_node.leaves = (*stack.leaves).clone();
                    }
                    let r = planner.render(handles[si], ki)?;
                    (target_from_config(&stack.name, &r.config, "")?, Some(r))
                }
            };
            if harness.is_none() {
                let scenario = |key: &str| stack.config.get_path(&["harness", key]).map(crate::yaml::str_node).filter(|s| !s.is_empty());
                let name =
                    opts.harness.clone().or(experiment.harness.clone()).or_else(|| scenario("name")).unwrap_or_else(|| "llmd".into());
                harness = Some(HarnessKind::parse(&name).map_err(|e| InputError::new(format!("harness: {e}")))?);
            }
            let target_leaves: Vec<Leaf> = stack
                .leaves
                .iter()
                .filter(|l| TARGET_PATHS.iter().any(|p| if p.ends_with('.') { l.path.starts_with(p) } else { l.path == *p }))
                .cloned()
                .collect();
            let default_profile = opts
                .workload
                .clone()
                .or(experiment.profile.clone())
                .or_else(|| stack.config.get_path(&["harness", "profile"]).map(crate::yaml::str_node))
                .unwrap_or_else(|| "sanity_random.yaml".into());
            heads.push(StackHead { setup: si, name: stack.name.clone(), plan: plan_node, render, target, target_leaves, default_profile });
        }
    }
    if timings {
        eprintln!("[timings] plans decided in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    }

    // Pass 2, stacks in parallel: each stack's chain reads only its own records.
    let harness = harness.unwrap_or(HarnessKind::Llmd);
    let cx = TailContext {
        experiment: &experiment,
        setups: &experiment.setup,
        run_treatments: &run_treatments,
        harness,
        tool: harness_identity(harness),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8).min(heads.len().max(1));
    let chunk = heads.len().div_ceil(threads).max(1);
    let parts: Vec<Result<(Vec<StackTail>, Warnings)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = heads
            .chunks(chunk)
            .map(|part| {
                let cx = &cx;
                scope.spawn(move || {
                    let mut d = Decider::new(opts, store, mat);
                    let tails = part.iter().map(|h| decide_stack(&mut d, cx, h)).collect::<Result<Vec<_>>>()?;
                    Ok((tails, d.warnings))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("internal error: a decision thread panicked"))))
            .collect()
    });
    let mut tails = Vec::with_capacity(heads.len());
    for part in parts {
        let (t, w) = part?;
        tails.extend(t);
        d.warnings.extend(w);
    }
    if timings {
        eprintln!("[timings] runs decided in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    }

    // Assemble the graph in execution order: per stack, plan, standup, smoketest, runs.
    let mut nodes: Vec<GraphNode> = Vec::new();
    let mut renders = HashMap::new();
    let mut setups: Vec<SetupSlot> = experiment
        .setup
        .iter()
        .map(|s| SetupSlot {
            name: s.name.clone(),
            workspace: opts.workspace.join(format!("setup-treatment-{}", s.name)),
            stacks: Vec::new(),
        })
        .collect();
    for (head, tail) in heads.into_iter().zip(tails) {
        let plan = nodes.len();
        if let Some(r) = head.render {
            renders.insert(plan, r);
        }
        nodes.push(head.plan);
        let (standup, smoketest) = (plan + 1, plan + 2);
        nodes.push(tail.standup);
        nodes.push(tail.smoketest);
        let mut runs = Vec::new();
        for (run, analysis, mut slot) in tail.runs {
            slot.run = nodes.len();
            nodes.push(run);
            slot.analysis = nodes.len();
            nodes.push(analysis);
            runs.push(slot);
        }
        setups[head.setup].stacks.push(StackSlot { name: head.name, plan, standup, smoketest, target: head.target, runs });
    }

    // summary: every analysis
    let analyses: Vec<usize> = setups.iter().flat_map(|s| s.stacks.iter().flat_map(|k| k.runs.iter().map(|r| r.analysis))).collect();
    let summary_id = format!("summary/{}", experiment.name);
    let pending = analyses.iter().find(|&&a| nodes[a].runs());
    let mut inputs = BTreeMap::new();
    for &a in &analyses {
        let out = nodes[a].record.as_ref().map(|r| crate::store::digest(serde_json::to_string(&r.outputs).unwrap_or_default().as_bytes()));
        inputs.insert(format!("analysis:{}", nodes[a].id), out.unwrap_or_else(|| "pending".into()));
    }
    let mut summary = GraphNode::new(summary_id, Kind::Summary, inputs, Vec::new());
    match pending {
        Some(&a) => summary.decision = Decision::Run(Reason::UpstreamRuns { node: nodes[a].id.clone() }),
        None => {
            let ids: HashMap<String, String> =
                analyses.iter().map(|&a| (format!("analysis:{}", nodes[a].id), nodes[a].id.clone())).collect();
            d.decide_own(&mut summary, &|n| ids.get(n).cloned(), &Vec::new);
        }
    }
    let summary_idx = nodes.len();
    nodes.push(summary);

    // Standups and smoketests are needed only by runs that execute.
    for setup in &setups {
        for stack in &setup.stacks {
            let needed = stack.runs.iter().any(|r| nodes[r.run].runs());
            for idx in [stack.standup, stack.smoketest] {
                let node = &mut nodes[idx];
                if !needed && !matches!(node.decision, Decision::Run(Reason::Forced { .. })) {
                    node.decision = if node.record.is_some() {
                        Decision::Fresh
                    } else {
                        Decision::Skip("not needed: every run of this stack is fresh".into())
                    };
                }
            }
            // A new deployment is always smoketested.
            if nodes[stack.standup].runs() && !nodes[stack.smoketest].runs() {
                let id = nodes[stack.standup].id.clone();
                nodes[stack.smoketest].decision = Decision::Run(Reason::UpstreamRuns { node: id });
            }
        }
    }
    // Each decision thread reports what it met; the same profile warning once.
    let mut seen = std::collections::HashSet::new();
    for w in d.warnings.iter() {
        let line = w.to_string();
        if seen.insert(line.clone()) {
            eprintln!("warning: {line}");
        }
    }
    Ok(Graph { experiment, harness, nodes, setups, summary: summary_idx, renders })
}

/// Checks deployments that runs need: a standup with a record is fresh only while its
/// deployment is live from the same key.
fn check_deployments(graph: &mut Graph, rt: &tokio::runtime::Runtime, backend: &dyn Backend) {
    for si in 0..graph.setups.len() {
        for ki in 0..graph.setups[si].stacks.len() {
            let stack = &graph.setups[si].stacks[ki];
            let needed = stack.runs.iter().any(|r| graph.nodes[r.run].runs());
            let (standup, smoke) = (stack.standup, stack.smoketest);
            if !needed || graph.nodes[standup].runs() {
                continue;
            }
            let ws = graph.setups[si].workspace.clone();
            let name = stack.name.clone();
            let key = graph.nodes[standup].key.clone();
            let reason = match Receipt::load(&ws, &name) {
                Ok(Some(r)) => match rt.block_on(backend.check(&r, Some(&key))) {
                    Liveness::Live => None,
                    Liveness::Gone(why) => Some(Reason::DeploymentGone { detail: why }),
                    Liveness::Drifted(why) => Some(Reason::DeploymentDrifted { detail: why }),
                },
                _ => Some(Reason::DeploymentGone { detail: "no deployment is running (torn down after the last build)".into() }),
            };
            if let Some(r) = reason {
                graph.nodes[standup].decision = Decision::Run(r);
                let id = graph.nodes[standup].id.clone();
                graph.nodes[smoke].decision = Decision::Run(Reason::UpstreamRuns { node: id });
            }
        }
    }
}

fn node_line(node: &GraphNode) -> String {
    match &node.decision {
        Decision::Fresh => format!("  fresh  {}", node.id),
        Decision::Run(r) => format!("  run    {}  ({})", node.id, r.describe(3)),
        Decision::Skip(why) => format!("  skip   {}  ({why})", node.id),
    }
}

/// Decides (and, unless `dry_run`, executes) the experiment.
pub fn build(opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    // `LLMD_TIMINGS=1`: where the build's own time goes (deciding, journaling, materializing).
    let timings = std::env::var_os("LLMD_TIMINGS").is_some();
    let lap = |what: &str| {
        if timings {
            eprintln!("[timings] {what}: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        }
    };
    let store = Store::open(&opts.cache_dir)?;
    let _lock =
        if opts.dry_run {
            None
        } else {
            Some(store.lock(&opts.command_line, opts.lock_timeout, |holder| {
                eprintln!("llmd: waiting for the cache lock, held by {holder} ...")
            })?)
        };
    let journal = if opts.dry_run { None } else { Some(store.journal(&opts.command_line)?) };
    store.index_blobs();
    let mut planner = Planner::new();
    lap("cache opened (blobs listed in the background)");
    let mat = Materializer::open(&opts.workspace);
    let mut graph = plan_graph(opts, &store, &mut planner, &mat)?;
    lap("graph planned and decided");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new()?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    check_deployments(&mut graph, &rt, backend.as_ref());
    lap("deployments checked");
    for w in store.take_warnings() {
        eprintln!("warning: {w}");
    }
    let n_runs = graph.experiment.run.len().max(1);
    if opts.human {
        eprintln!(
            "llmd build {}: {} setup treatment(s) x {} run treatment(s) x {} repetition(s); {} nodes, {} to run",
            graph.experiment.name,
            graph.setups.len(),
            n_runs,
            graph.experiment.repeat,
            graph.nodes.len(),
            graph.nodes.iter().filter(|n| n.runs()).count()
        );
        for n in &graph.nodes {
            if opts.verbose || n.runs() || opts.dry_run {
                eprintln!("{}", node_line(n));
            }
        }
    }
    let mut reports: Vec<Option<NodeReport>> = vec![None; graph.nodes.len()];
    if opts.dry_run {
        for (i, n) in graph.nodes.iter().enumerate() {
            let (status, reason, detail) = match &n.decision {
                Decision::Fresh => ("fresh", None, None),
                Decision::Run(r) => ("would_run", Some(r.clone()), None),
                Decision::Skip(w) => ("skipped", None, Some(w.clone())),
            };
            reports[i] = Some(NodeReport { id: n.id.clone(), kind: n.kind.name(), status, reason, detail, seconds: 0.0 });
        }
        return Ok(BuildReport {
            experiment: graph.experiment.name.clone(),
            dry_run: true,
            nodes: reports.into_iter().flatten().collect(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let journal = journal.expect("journal exists outside dry runs");
    for n in &graph.nodes {
        let (decision, reason) = match &n.decision {
            Decision::Fresh => ("fresh", None),
            Decision::Run(r) => ("run", Some(r)),
            Decision::Skip(_) => ("skip", None),
        };
        journal.append(&serde_json::json!({"event": "decide", "id": n.id, "kind": n.kind.name(), "key": n.key, "decision": decision, "reason": reason}));
    }
    lap("decisions journaled");
    let to_run = graph.nodes.iter().filter(|n| n.runs()).count();
    let mut exec = Executor {
        opts,
        store: &store,
        graph: &mut graph,
        backend,
        rt: &rt,
        reports: &mut reports,
        journal: &journal,
        stop: false,
        mat,
        to_run,
        started_nodes: 0,
    };
    exec.run_all();
    lap("executed and materialized");
    let nodes: Vec<NodeReport> = reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let n = &graph.nodes[i];
                match &n.decision {
                    Decision::Fresh => {
                        NodeReport { id: n.id.clone(), kind: n.kind.name(), status: "fresh", reason: None, detail: None, seconds: 0.0 }
                    }
                    Decision::Run(r) => NodeReport {
                        id: n.id.clone(),
                        kind: n.kind.name(),
                        status: "skipped",
                        reason: Some(r.clone()),
                        detail: Some("not executed: an earlier node failed (use --keep-going to go on)".into()),
                        seconds: 0.0,
                    },
                    Decision::Skip(w) => NodeReport {
                        id: n.id.clone(),
                        kind: n.kind.name(),
                        status: "skipped",
                        reason: None,
                        detail: Some(w.clone()),
                        seconds: 0.0,
                    },
                }
            })
        })
        .collect();
    let report = BuildReport { experiment: graph.experiment.name.clone(), dry_run: false, nodes, seconds: started.elapsed().as_secs_f64() };
    journal.write(&serde_json::json!({"event": "end", "summary": report.summary_line(), "ok": report.ok()}));
    Ok(report)
}

struct Executor<'a> {
    opts: &'a BuildOptions,
    store: &'a Store,
    graph: &'a mut Graph,
    backend: Arc<dyn Backend>,
    rt: &'a tokio::runtime::Runtime,
    reports: &'a mut Vec<Option<NodeReport>>,
    journal: &'a crate::store::Journal,
    /// A node failed and `--keep-going` is off.
    stop: bool,
    mat: Materializer,
    /// Nodes decided to run, and how many have started (for `[k/n]` progress).
    to_run: usize,
    started_nodes: usize,
}

/// Result of executing one node: outputs (name → bytes) or an error.
type Outputs = BTreeMap<String, Vec<u8>>;

impl Executor<'_> {
    fn run_all(&mut self) {
        for si in 0..self.graph.setups.len() {
            self.run_setup(si);
        }
        let summary = self.graph.summary;
        if self.graph.nodes[summary].runs() {
            let blocked = self.graph.setups.iter().flat_map(|s| s.stacks.iter().flat_map(|k| k.runs.iter().map(|r| r.analysis))).any(|a| {
                self.reports[a].as_ref().is_some_and(|r| r.status != "ran") || (self.reports[a].is_none() && self.graph.nodes[a].runs())
            });
            if blocked {
                self.skip(summary, "some analyses did not finish");
            } else if !self.stop {
                // The key covers the analyses' outputs, known only now.
                let analyses: Vec<usize> =
                    self.graph.setups.iter().flat_map(|s| s.stacks.iter().flat_map(|k| k.runs.iter().map(|r| r.analysis))).collect();
                for a in analyses {
                    let out = self.graph.nodes[a]
                        .record
                        .as_ref()
                        .map(|r| crate::store::digest(serde_json::to_string(&r.outputs).unwrap_or_default().as_bytes()));
                    let id = format!("analysis:{}", self.graph.nodes[a].id);
                    self.graph.nodes[summary].inputs.insert(id, out.unwrap_or_default());
                }
                let node = &mut self.graph.nodes[summary];
                node.key = super::key::node_key(Kind::Summary.name(), &node.inputs);
                self.execute(summary, |ex| ex.summarize());
            }
        }
        self.materialize_summary();
        self.finish_materialization();
    }

    fn skip(&mut self, idx: usize, why: &str) {
        let n = &self.graph.nodes[idx];
        let reason = match &n.decision {
            Decision::Run(r) => Some(r.clone()),
            _ => None,
        };
        self.journal.append(&serde_json::json!({"event": "skip", "id": n.id, "why": why}));
        self.reports[idx] =
            Some(NodeReport { id: n.id.clone(), kind: n.kind.name(), status: "skipped", reason, detail: Some(why.into()), seconds: 0.0 });
    }

    /// Executes node `idx` with `work`, recording the outcome. Returns success.
    fn execute(&mut self, idx: usize, work: impl FnOnce(&mut Self) -> Result<Outputs>) -> bool {
        let (id, kind, key) = {
            let n = &self.graph.nodes[idx];
            (n.id.clone(), n.kind, n.key.clone())
        };
        let reason = match &self.graph.nodes[idx].decision {
            Decision::Run(r) => r.clone(),
            _ => Reason::Forced { pattern: "(needed)".into() },
        };
        self.started_nodes += 1;
        let label = format!("[{}/{}] {id}", self.started_nodes, self.to_run.max(self.started_nodes));
        if self.opts.human {
            eprintln!("▶ {label}  ({})", reason.describe(3));
        }
        if kind.has_effects()
            && let Err(e) = self.store.mark_incomplete(&id, &key)
        {
            eprintln!("warning: {e:#}");
        }
        // Flushes the decisions too: a build killed from here on leaves them on disk.
        self.journal.write(&serde_json::json!({"event": "begin", "id": id, "key": key}));
        let started = Instant::now();
        let started_unix = unix_now();
        let ticker = self.opts.human.then(|| super::progress::Ticker::start(label, Duration::from_secs(3)));
        let result = work(self);
        drop(ticker);
        let seconds = started.elapsed().as_secs_f64();
        let manifest = self.graph.nodes[idx].manifest(self.store);
        let outcome: Result<Record> = (|| {
            let manifest = manifest?;
            let (status, outputs, error) = match &result {
                Ok(outs) => {
                    let mut digests = BTreeMap::new();
                    for (name, bytes) in outs {
                        digests.insert(name.clone(), self.store.put_blob_unsynced(bytes)?);
                    }
                    // Every blob durable before the record that names them.
                    self.store.sync()?;
                    (Status::Ok, digests, None)
                }
                Err(e) => (Status::Failed, BTreeMap::new(), Some(format!("{e:#}"))),
            };
            let rec = Record {
                version: Record::VERSION,
                key: key.clone(),
                id: id.clone(),
                kind: kind.name().into(),
                status,
                manifest,
                outputs,
                started_unix,
                duration_s: seconds,
                error,
            };
            self.store.commit(&rec)?;
            Ok(rec)
        })();
        let (status, detail) = match (&result, &outcome) {
            (Ok(_), Ok(rec)) => {
                self.mat.forget(&rec.key);
                self.graph.nodes[idx].record = Some(rec.clone());
                ("ran", None)
            }
            (Err(e), _) => ("failed", Some(format!("{e:#}"))),
            (Ok(_), Err(e)) => ("failed", Some(format!("could not record the result: {e:#}"))),
        };
        if self.opts.human {
            match &detail {
                None => eprintln!("✔ {id}  ({seconds:.1} s)"),
                Some(d) => eprintln!("✘ {id}  failed after {seconds:.1} s: {d}"),
            }
        }
        self.journal.write(&serde_json::json!({"event": "done", "id": id, "status": status, "seconds": seconds, "error": detail}));
        self.reports[idx] = Some(NodeReport { id, kind: kind.name(), status, reason: Some(reason), detail, seconds });
        if status == "failed" && !self.opts.keep_going {
            self.stop = true;
        }
        status == "ran"
    }

    fn run_setup(&mut self, si: usize) {
        let ws = self.graph.setups[si].workspace.clone();
        let stack_count = self.graph.setups[si].stacks.len();
        let mut touched = false;
        for ki in 0..stack_count {
            let plan = self.graph.setups[si].stacks[ki].plan;
            if self.graph.nodes[plan].runs() && !self.stop {
                let rendered = self.graph.renders.get(&plan).cloned();
                let target = self.graph.setups[si].stacks[ki].target.clone();
                self.execute(plan, move |_| plan_outputs(rendered.as_deref(), &target));
            }
            self.materialize_plan(si, ki);
        }
        for ki in 0..stack_count {
            if self.stop {
                break;
            }
            let stack = &self.graph.setups[si].stacks[ki];
            let (standup, smoke) = (stack.standup, stack.smoketest);
            let runs: Vec<usize> = stack.runs.iter().map(|r| r.run).collect();
            let needed = runs.iter().any(|&r| self.graph.nodes[r].runs()) || self.graph.nodes[standup].runs();
            if !needed {
                // Runs fresh, analyses stale (forced, or a new analysis version): analyse
                // the cached runs without standing anything up.
                for ri in 0..self.graph.setups[si].stacks[ki].runs.len() {
                    let analysis = self.graph.setups[si].stacks[ki].runs[ri].analysis;
                    if self.graph.nodes[analysis].runs() && !self.stop {
                        self.execute(analysis, |ex| ex.analyze(si, ki, ri));
                    }
                }
                self.materialize_runs(si, ki);
                continue;
            }
            touched = true;
            if self.graph.nodes[standup].runs() && !self.execute(standup, |ex| ex.standup(si, ki)) {
                for idx in std::iter::once(smoke)
                    .chain(self.graph.setups[si].stacks[ki].runs.iter().flat_map(|r| [r.run, r.analysis]).collect::<Vec<_>>())
                {
                    if self.graph.nodes[idx].runs() {
                        self.skip(idx, "its deployment failed");
                    }
                }
                continue;
            }
            if self.graph.nodes[smoke].runs() && !self.stop && !self.execute(smoke, |ex| ex.smoketest(si, ki)) {
                for idx in self.graph.setups[si].stacks[ki].runs.iter().flat_map(|r| [r.run, r.analysis]).collect::<Vec<_>>() {
                    if self.graph.nodes[idx].runs() {
                        self.skip(idx, "its smoketest failed");
                    }
                }
                continue;
            }
            let slots = self.graph.setups[si].stacks[ki].runs.len();
            for ri in 0..slots {
                let (run, analysis) = {
                    let r = &self.graph.setups[si].stacks[ki].runs[ri];
                    (r.run, r.analysis)
                };
                if self.graph.nodes[run].runs() {
                    if self.stop {
                        break;
                    }
                    if !self.execute(run, |ex| ex.run_with_attempts(si, ki, ri)) {
                        self.skip(analysis, "its run failed");
                        continue;
                    }
                    // The analysis key covers the run's outputs, known only now.
                    let outputs = self.graph.nodes[run]
                        .record
                        .as_ref()
                        .map(|r| crate::store::digest(serde_json::to_string(&r.outputs).unwrap_or_default().as_bytes()));
                    let node = &mut self.graph.nodes[analysis];
                    node.inputs.insert("run".into(), outputs.unwrap_or_default());
                    node.key = super::key::node_key(Kind::Analysis.name(), &node.inputs);
                }
                if self.graph.nodes[analysis].runs() && !self.stop {
                    self.execute(analysis, |ex| ex.analyze(si, ki, ri));
                }
            }
            self.materialize_runs(si, ki);
        }
        if touched && !self.opts.keep_stacks {
            self.teardown_setup(&ws);
        }
    }

    fn standup(&mut self, si: usize, ki: usize) -> Result<Outputs> {
        let ws = self.graph.setups[si].workspace.clone();
        let stack = &self.graph.setups[si].stacks[ki];
        let key = self.graph.nodes[stack.standup].key.clone();
        let mut target = stack.target.clone();
        target.plan_hash = key;
        if let Some(old) = Receipt::load(&ws, &stack.name)? {
            self.rt.block_on(self.backend.teardown(&old))?;
            Receipt::remove(&ws, &stack.name)?;
        }
        let receipt = self.rt.block_on(self.backend.standup(&target, &ws.join("setup/logs")))?;
        receipt.save(&ws)?;
        Ok(BTreeMap::from([("receipt".to_string(), serde_json::to_vec_pretty(&receipt)?)]))
    }

    fn smoketest(&mut self, si: usize, ki: usize) -> Result<Outputs> {
        let ws = self.graph.setups[si].workspace.clone();
        let stack = &self.graph.setups[si].stacks[ki];
        let receipt = Receipt::load(&ws, &stack.name)?.context("no receipt: the stack is not stood up")?;
        let plan = self.graph.nodes[stack.plan].record.as_ref().context("the plan has no record")?;
        let config_text =
            plan.outputs.get("config.yaml").and_then(|d| self.store.get_blob(d)).context("the plan's config.yaml is not in the cache")?;
        let config = crate::yaml::load_str(&String::from_utf8_lossy(&config_text), "config.yaml")?;
        let entry = Arc::new(crate::phases::StackEntry {
            name: stack.name.clone(),
            config,
            plan_hash: receipt.plan_hash.clone(),
            state: Mutex::new(crate::phases::StackState {
                endpoint: receipt.endpoint(),
                model: Some(receipt.model.clone()),
                receipt: Some(receipt),
                ..Default::default()
            }),
        });
        let settings = crate::phases::Settings {
            workspace: ws,
            base_dir: self.opts.plan.base_dir.clone(),
            dry_run: false,
            verbose: self.opts.verbose,
            parallel: 1,
            steps: Default::default(),
            stack_filter: Vec::new(),
            run: None,
        };
        let ctx = Arc::new(crate::phases::PhaseContext { settings, backend: self.backend.clone(), stacks: vec![entry] });
        let report = self.rt.block_on(crate::phases::execute(ctx, crate::phases::smoketest::steps()));
        if !report.ok() {
            bail!("{}", report.summary());
        }
        let lines: Vec<String> = report.results.iter().map(|r| format!("{:02} {}: {}", r.number, r.name, r.message)).collect();
        Ok(BTreeMap::from([("smoketest.txt".to_string(), lines.join("\n").into_bytes())]))
    }

    /// [`Self::run_node`] up to `treatment_max_attempts` times: a failed attempt's results
    /// are removed (upstream's rule) and the next gets a new experiment id. The last
    /// attempt's error is the node's; its results stay for inspection.
    fn run_with_attempts(&mut self, si: usize, ki: usize, ri: usize) -> Result<Outputs> {
        let attempts = self.graph.experiment.max_attempts.max(1);
        for attempt in 1..attempts {
            match self.run_node(si, ki, ri, false) {
                Ok(outputs) => return Ok(outputs),
                Err(e) => {
                    if self.opts.human {
                        eprintln!("  attempt {attempt}/{attempts} failed: {e:#}; retrying with a new experiment id");
                    }
                    let id = &self.graph.nodes[self.graph.setups[si].stacks[ki].runs[ri].run].id;
                    self.journal.append(&serde_json::json!({"event": "retry", "id": id, "attempt": attempt, "error": format!("{e:#}")}));
                }
            }
        }
        self.run_node(si, ki, ri, true)
            .map_err(|e| if attempts > 1 { e.context(format!("failed {attempts} attempts; the last")) } else { e })
    }

    /// One harness run; `keep_failed`: leave a failed run's results directory in place.
    fn run_node(&mut self, si: usize, ki: usize, ri: usize, keep_failed: bool) -> Result<Outputs> {
        let setup = &self.graph.setups[si];
        let stack = &setup.stacks[ki];
        let slot = &stack.runs[ri];
        let receipt = Receipt::load(&setup.workspace, &stack.name)?.context("no receipt: the stack is not stood up")?;
        let endpoint = receipt.endpoint().context("the receipt lists no replica")?;
        let values = key_placeholders(&stack.name, &stack.target, &endpoint);
        let mut warnings = Warnings::default();
        let (doc, yaml) = render_profile(&slot.profile_path, &values, &slot.overrides, &mut warnings)?;
        let harness = self.graph.harness;
        let profile_dir = setup.workspace.join("workload/profiles").join(harness.name()).join(&stack.name);
        let profile_path = profile_dir.join(crate::phases::run::rendered_name(&slot.profile_path, Some(&slot.treatment)));
        crate::util::fs::write_atomic(&profile_path, yaml.as_bytes())?;
        let eid = experiment_id(harness, Some(&slot.treatment));
        let dir = setup.workspace.join("results").join(format!("{eid}_{}", slot.rep));
        let outcome = self.rt.block_on(
            HarnessJob {
                harness,
                doc: &doc,
                profile_path: &profile_path,
                endpoint: &endpoint,
                model: &receipt.model,
                dir: dir.clone(),
                tokenizer: self.opts.tokenizer.as_deref(),
                timeout: self.opts.harness_timeout,
                quiet: !self.opts.verbose,
                eid: &eid,
                stack: &stack.name,
                treatment: Some(&slot.treatment),
                deployment: &receipt.plan_hash,
            }
            .run(),
        );
        if let Err(e) = judge(&outcome) {
            if !keep_failed {
                let _ = std::fs::remove_dir_all(&dir);
            }
            bail!("{e}");
        }
        let mut outputs = read_dir_files(&dir)?;
        outputs.insert("eid".into(), format!("{eid}_{}", slot.rep).into_bytes());
        match judge(&outcome) {
            Err(e) => bail!("{e}"),
            Ok(Some(w)) => eprintln!("  warning: {w}"),
            Ok(None) => {}
        }
        Ok(outputs)
    }

    fn run_files(&self, run: usize) -> Result<BTreeMap<String, Vec<u8>>> {
        let rec = self.graph.nodes[run].record.as_ref().context("the run has no record")?;
        let mut files = BTreeMap::new();
        for (name, d) in &rec.outputs {
            if let Some(file) = name.strip_prefix("file:") {
                files.insert(
                    file.to_string(),
                    self.store.get_blob(d).with_context(|| format!("run output {file} is missing from the cache"))?,
                );
            }
        }
        Ok(files)
    }

    fn analyze(&mut self, si: usize, ki: usize, ri: usize) -> Result<Outputs> {
        let slot = &self.graph.setups[si].stacks[ki].runs[ri];
        let files = self.run_files(slot.run)?;
        // The same code as `llmd analyze`, on a scratch copy of the run's files.
        let scratch = crate::util::fs::ScratchDir::new("analysis")?;
        for (name, bytes) in &files {
            let path = scratch.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        let stack = &self.graph.setups[si].stacks[ki];
        let info = self.graph.nodes[stack.plan]
            .record
            .as_ref()
            .and_then(|r| r.outputs.get("config.yaml"))
            .and_then(|d| self.store.get_blob(d))
            .and_then(|b| crate::yaml::load_str(&String::from_utf8_lossy(&b), "config.yaml").ok())
            .map(|config| StackInfo::from_config(&stack.name, &config));
        let analyzed = analyze_dir_with(scratch.path(), Some(self.graph.harness.name()), info, false)?;
        let report = analyzed.reports.first().context("the harness output holds no measured load")?;
        let metrics = headline(&report.results.request_performance.as_ref().context("the report has no request performance")?.aggregate);
        let doc = serde_json::json!({
            "run": self.graph.nodes[slot.run].id,
            "setup": self.graph.setups[si].name,
            "stack": stack.name,
            "treatment": slot.treatment,
            "repetition": slot.rep,
            "harness": self.graph.harness.name(),
            "metrics": metrics,
        });
        let mut distributions = crate::analysis::plots::Distributions::of(&analyzed.converted[0]);
        distributions.server = analyzed.server.clone();
        let mut out = BTreeMap::from([
            ("analysis.json".to_string(), serde_json::to_vec_pretty(&doc)?),
            ("distributions.json".to_string(), serde_json::to_vec(&distributions)?),
        ]);
        for path in &analyzed.files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            out.insert(format!("file:{name}"), std::fs::read(path)?);
        }
        Ok(out)
    }

    fn summarize(&mut self) -> Result<Outputs> {
        let mut rows = Vec::new();
        // (label, source file, report, distributions, provenance)
        type Entry = (String, String, crate::analysis::br::ReportV02, crate::analysis::plots::Distributions, Vec<(String, String)>);
        let mut reports: Vec<Entry> = Vec::new();
        for s in &self.graph.setups {
            for k in &s.stacks {
                for r in &k.runs {
                    let rec = self.graph.nodes[r.analysis].record.as_ref().context("an analysis has no record")?;
                    let doc: serde_json::Value = serde_json::from_slice(
                        &self
                            .store
                            .get_blob(rec.outputs.get("analysis.json").context("analysis.json")?)
                            .context("analysis.json is missing from the cache")?,
                    )?;
                    rows.push(doc);
                    let eid = self.graph.nodes[r.run]
                        .record
                        .as_ref()
                        .and_then(|run| run.outputs.get("eid"))
                        .and_then(|d| self.store.get_blob(d))
                        .map(|b| String::from_utf8_lossy(&b).to_string())
                        .unwrap_or_default();
                    let distributions: crate::analysis::plots::Distributions = rec
                        .outputs
                        .get("distributions.json")
                        .and_then(|d| self.store.get_blob(d))
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or_default();
                    // What every number of this run rests on, for the report's provenance.
                    let run_node = &self.graph.nodes[r.run];
                    let mut provenance = vec![
                        (format!("{} key", run_node.id), run_node.key.clone()),
                        (format!("{} key", self.graph.nodes[r.analysis].id), rec.key.clone()),
                    ];
                    provenance.extend(run_node.inputs.iter().map(|(k, v)| (format!("run input {k}"), v.clone())));
                    for (name, d) in
                        rec.outputs.iter().filter(|(n, _)| n.starts_with("file:benchmark_report_v0.2,_") && n.ends_with(".json"))
                    {
                        let bytes = self.store.get_blob(d).with_context(|| format!("{name} is missing from the cache"))?;
                        let report = serde_json::from_slice(&bytes).with_context(|| format!("{name} is not a benchmark report"))?;
                        let label = if self.graph.setups.len() > 1 {
                            format!("{}/{}#{}", s.name, r.treatment, r.rep)
                        } else {
                            format!("{}#{}", r.treatment, r.rep)
                        };
                        let mut p = provenance.clone();
                        p.push((format!("report {}", &name["file:".len()..]), d.clone()));
                        reports.push((
                            label,
                            format!("setup-treatment-{}/results/{eid}/{}", s.name, &name["file:".len()..]),
                            report,
                            distributions.clone(),
                            p,
                        ));
                    }
                }
            }
        }
        let (csv, text) = crate::analysis::summary_table(&rows)?;
        let repetitions = crate::analysis::repetition_table(&rows)?;
        let comparison_rows: Vec<crate::analysis::comparison::Row> = reports
            .iter()
            .map(|(t, f, r, _, _)| crate::analysis::comparison::Row { treatment: t.clone(), source_file: f.clone(), report: r })
            .collect();
        let comparison = crate::analysis::comparison::csv(&comparison_rows)?;
        // Plots and the HTML report, drawn in a scratch folder and kept as outputs.
        let scratch = crate::util::fs::ScratchDir::new("summary")?;
        let plot_rows: Vec<crate::analysis::plots::PlotRow> = comparison_rows
            .iter()
            .zip(&reports)
            .map(|(r, (_, _, _, d, _))| crate::analysis::plots::PlotRow {
                label: r.treatment.clone(),
                values: crate::analysis::comparison::row_numbers(r),
                distributions: d.clone(),
            })
            .collect();
        let plots = crate::analysis::plots::render_all(scratch.path(), &plot_rows)?;
        let provenance: Vec<crate::analysis::html::Provenance> =
            reports.iter().map(|(t, _, _, _, p)| crate::analysis::html::Provenance { label: t.clone(), entries: p.clone() }).collect();
        let html = crate::analysis::html::render(
            &format!("llmd experiment {}", self.graph.experiment.name),
            &comparison_rows,
            &plots,
            &provenance,
        )?;
        let json = serde_json::json!({"experiment": self.graph.experiment.name, "runs": rows});
        let mut out = BTreeMap::from([
            ("summary.json".to_string(), serde_json::to_vec_pretty(&json)?),
            ("summary.csv".to_string(), csv.into_bytes()),
            ("summary.txt".to_string(), text.into_bytes()),
            ("repetitions.csv".to_string(), repetitions.into_bytes()),
            ("report.html".to_string(), html.into_bytes()),
            ("cross-treatment-comparison/treatment_comparison.csv".to_string(), comparison.into_bytes()),
        ]);
        for p in &plots {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("plot.png");
            out.insert(format!("cross-treatment-comparison/plots/{name}"), std::fs::read(p)?);
        }
        Ok(out)
    }

    fn teardown_setup(&mut self, ws: &Path) {
        for r in Receipt::load_all(ws).unwrap_or_default() {
            match self.rt.block_on(self.backend.teardown(&r)) {
                Ok(()) => {
                    let _ = Receipt::remove(ws, &r.stack);
                    if self.opts.human {
                        eprintln!(
                            "  torn down {} (pids {})",
                            r.stack,
                            r.replicas.iter().map(|x| x.pid.to_string()).collect::<Vec<_>>().join(", ")
                        );
                    }
                }
                Err(e) => eprintln!("warning: teardown of {} failed: {e:#}; `llmd --workspace {} teardown` retries", r.stack, ws.display()),
            }
        }
    }

    // ---- materialization: user-facing files in the workspace, from the cache

    /// Writes each `(path, digest)` of `record_key` into the workspace, unless the
    /// materialization index says they are all still as written.
    fn materialize(&mut self, record_key: &str, files: Vec<(PathBuf, String)>) {
        if self.mat.up_to_date(record_key) {
            return;
        }
        let mut written = Vec::new();
        for (path, d) in files {
            let Some(bytes) = self.store.get_blob(&d) else { continue };
            match Materializer::write(&path, &bytes) {
                Ok(_) => written.push(path),
                Err(e) => eprintln!("warning: {e:#}"),
            }
        }
        self.mat.remember(record_key, &written);
    }

    fn materialize_plan(&mut self, si: usize, ki: usize) {
        let setup = &self.graph.setups[si];
        let stack = &setup.stacks[ki];
        let Some(rec) = &self.graph.nodes[stack.plan].record else { return };
        if self.mat.up_to_date(&rec.key) {
            return;
        }
        let dir = setup.workspace.join("plan").join(&stack.name);
        let files: Vec<(PathBuf, String)> =
            rec.outputs.iter().filter_map(|(name, d)| name.strip_prefix("file:").map(|f| (dir.join(f), d.clone()))).collect();
        // Manifests of an older plan that this one no longer renders.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !rec.outputs.contains_key(&format!("file:{name}")) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let key = rec.key.clone();
        self.materialize(&key, files);
    }

    fn materialize_runs(&mut self, si: usize, ki: usize) {
        let setup = &self.graph.setups[si];
        let mut todo = Vec::new();
        for slot in &setup.stacks[ki].runs {
            let Some(rec) = &self.graph.nodes[slot.run].record else { continue };
            let analysis = self.graph.nodes[slot.analysis].record.as_ref().filter(|a| !self.mat.up_to_date(&a.key));
            if self.mat.up_to_date(&rec.key) && analysis.is_none() {
                continue;
            }
            // Both land under the run's experiment id.
            let Some(eid) = rec.outputs.get("eid").and_then(|d| self.store.get_blob(d)) else { continue };
            let eid = String::from_utf8_lossy(&eid).to_string();
            let dir = setup.workspace.join("results").join(&eid);
            let files: Vec<(PathBuf, String)> =
                rec.outputs.iter().filter_map(|(name, d)| name.strip_prefix("file:").map(|f| (dir.join(f), d.clone()))).collect();
            todo.push((rec.key.clone(), files));
            if let Some(a) = analysis {
                // Benchmark reports beside the results they describe, as upstream places them.
                let mut files: Vec<(PathBuf, String)> =
                    a.outputs.iter().filter_map(|(name, d)| name.strip_prefix("file:").map(|f| (dir.join(f), d.clone()))).collect();
                if let Some(d) = a.outputs.get("analysis.json") {
                    files.push((setup.workspace.join("analysis").join(format!("{eid}.json")), d.clone()));
                }
                todo.push((a.key.clone(), files));
            }
        }
        for (key, files) in todo {
            self.materialize(&key, files);
        }
    }

    fn materialize_summary(&mut self) {
        let Some(rec) = &self.graph.nodes[self.graph.summary].record else { return };
        let files: Vec<(PathBuf, String)> = rec.outputs.iter().map(|(name, d)| (self.opts.workspace.join(name), d.clone())).collect();
        let key = rec.key.clone();
        self.materialize(&key, files);
    }

    /// Forgets index entries of records this build no longer uses, and saves the index.
    fn finish_materialization(&mut self) {
        let live: std::collections::HashSet<String> =
            self.graph.nodes.iter().filter_map(|n| n.record.as_ref().map(|r| r.key.clone())).collect();
        self.mat.retain(&live);
        if let Err(e) = self.mat.save() {
            eprintln!("warning: cannot save the materialization index: {e:#}");
        }
    }
}

/// A plan node's outputs: every manifest, `config.yaml`, and the backend target.
fn plan_outputs(rendered: Option<&RenderedOut>, target: &StackTarget) -> Result<Outputs> {
    let r = rendered.context("internal error: the plan was not rendered while deciding")?;
    let mut out = BTreeMap::new();
    for (name, text) in &r.files {
        out.insert(format!("file:{name}"), text.clone().into_bytes());
    }
    out.insert("file:config.yaml".into(), r.config_yaml.clone().into_bytes());
    out.insert("config.yaml".into(), r.config_yaml.clone().into_bytes());
    out.insert("target".into(), serde_json::to_vec(target)?);
    Ok(out)
}

/// Every regular file in `dir` (recursively) as `file:<relative path>` → bytes.
fn read_dir_files(dir: &Path) -> Result<Outputs> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().to_string();
                out.insert(format!("file:{rel}"), std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?);
            }
        }
    }
    Ok(out)
}
