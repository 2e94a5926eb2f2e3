//! Deciding: the build graph of an experiment, every node decided fresh or run (with
//! its reason) before anything executes.
//!
//! Planning is pure, so deciding renders any plan whose key has no record (in memory):
//! the keys of everything downstream are then known exactly and `--dry-run` predicts
//! precisely what a build executes. Two passes: plans in order (the salsa planner is
//! single-threaded), then each stack's standup, smoketest, runs and analyses on all
//! cores (a stack's chain reads only its own records). [`check_deployments`] then asks
//! the backends whether deployments the runs need are still live.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::build::BuildOptions;
use super::graph::{Decision, GraphNode, Kind, glob_match, missing_output, ok_record, reason_to_run, usable_record};
use super::key::{Leaf, leaves_digest, override_leaves};
use super::materialize::Materializer;
use super::planner::Planner;
use super::reason::Reason;
use crate::backend::{Registry, StackTarget, TARGET_PATHS};
use crate::config::PlanOptions;
use crate::error::{InputError, Warnings};
use crate::experiment::{Experiment, RunTreatment, SetupTreatment, load_experiment};
use crate::harness::external::{HarnessKind, TokenizerSource, Tool, find_tokenizer};
use crate::harness::profile::{find_profile, render_profile_text, substitute_placeholders};
use crate::phases::plan::StackPlan;
use crate::phases::run::profile_values;
use crate::phases::standup::{Existing, Want, inspect};
use crate::store::{Record, Store};
use crate::yaml::Node;

/// Version of the analysis a node computes; part of analysis keys.
pub const ANALYSIS_VERSION: &str = "5";

/// One run (and its analysis) of a stack.
pub struct RunSlot {
    pub run: usize,
    pub analysis: usize,
    pub treatment: String,
    pub rep: usize,
    pub profile_path: PathBuf,
    /// The profile's text as read while deciding: the run renders exactly what its key covers.
    pub profile_text: Arc<str>,
    pub overrides: Vec<(String, Node)>,
    /// The repetition's own seed (also the last override), when it has one.
    pub seed: Option<i64>,
}

pub struct StackSlot {
    pub name: String,
    pub plan: usize,
    pub standup: usize,
    pub smoketest: usize,
    pub target: StackTarget,
    /// The registry name of the stack's backend.
    pub backend: String,
    pub runs: Vec<RunSlot>,
    /// What a standup that executes records of the config (for later reasons).
    pub target_leaves: TargetLeaves,
}

pub struct SetupSlot {
    pub name: String,
    pub workspace: PathBuf,
    pub stacks: Vec<StackSlot>,
}

/// The decided graph.
pub struct Graph {
    pub experiment: Experiment,
    pub harness: HarnessKind,
    pub nodes: Vec<GraphNode>,
    pub setups: Vec<SetupSlot>,
    pub summary: usize,
    /// Plans rendered while deciding, for plan nodes that run.
    pub renders: HashMap<usize, Arc<StackPlan>>,
}

impl Graph {
    /// The rendered config of plan node `plan`: rendered in this build, or its cached
    /// record's `config.yaml`.
    pub fn plan_config(&self, store: &Store, plan: usize) -> Option<Node> {
        if let Some(rendered) = self.renders.get(&plan) {
            return Some(rendered.config.clone());
        }
        let rec = self.nodes[plan].record.as_ref()?;
        let text = store.get_blob(rec.outputs.get("config.yaml")?)?;
        crate::yaml::load_str(&String::from_utf8_lossy(&text), "config.yaml").ok()
    }

    /// Every analysis node, in execution order.
    pub fn analyses(&self) -> Vec<usize> {
        self.setups.iter().flat_map(|s| s.stacks.iter().flat_map(|k| k.runs.iter().map(|r| r.analysis))).collect()
    }
}

/// Who runs the harness, and what run keys record of it.
struct HarnessContext {
    kind: HarnessKind,
    /// `name@version` of the tool on this machine (`llmd@<ours>` for the native one).
    local_tool: String,
    /// Model → identity of the tokenizer external tools use for it here (empty for the
    /// native harness).
    tokenizers: BTreeMap<String, String>,
}

impl HarnessContext {
    /// Finds what running `kind` on this machine needs — the tool and a tokenizer — or
    /// fails before anything is stood up, saying how to get it. `models_here`: the models
    /// of the stacks that run their harness on this machine (a cluster backend with a
    /// harness pod runs it there instead); none, and nothing is needed here.
    fn new(kind: HarnessKind, models_here: &[&str], tokenizer: Option<&Path>) -> Result<HarnessContext> {
        let mut cx = HarnessContext { kind, local_tool: format!("{}@unused", kind.name()), tokenizers: BTreeMap::new() };
        if kind == HarnessKind::Llmd {
            cx.local_tool = format!("llmd@{}", env!("CARGO_PKG_VERSION"));
            return Ok(cx);
        }
        if models_here.is_empty() {
            return Ok(cx);
        }
        let tool = Tool::find(kind).map_err(|e| {
            InputError::new(format!("{e:#}")).help(
                "nothing was stood up; `llmd doctor` lists the harnesses usable here (or pick another with --harness, e.g. --harness llmd)",
            )
        })?;
        cx.local_tool = tool.identity();
        // One tokenizer often serves every model (--tokenizer): digest each source once.
        let mut identities: HashMap<TokenizerSource, String> = HashMap::new();
        for model in models_here {
            let found = find_tokenizer(tokenizer, model).map_err(|e| {
                InputError::new(format!("harness '{}': {e:#}", kind.name())).help(format!(
                    "nothing was stood up; pass --tokenizer DIR (or set LLMD_TOKENIZER) to a directory with the model's tokenizer.json, \
                     or download it once into the Hugging Face cache: hf download {model} tokenizer.json tokenizer_config.json"
                ))
            })?;
            let identity = identities.entry(found).or_insert_with_key(TokenizerSource::identity).clone();
            cx.tokenizers.insert(model.to_string(), identity);
        }
        Ok(cx)
    }

    /// The tool inputs of a run on a stack whose harness runs here or not.
    fn run_inputs(&self, here: bool, model: &str) -> Vec<(String, String)> {
        if self.kind == HarnessKind::Llmd {
            return vec![("tool:harness".to_string(), self.local_tool.clone())];
        }
        if !here {
            // The harness pod's image and command are in the backend's run inputs.
            return vec![("tool:harness".to_string(), format!("{}@harness-pod", self.kind.name()))];
        }
        let mut inputs = vec![("tool:harness".to_string(), self.local_tool.clone())];
        inputs.extend(self.tokenizers.get(model).map(|t| ("tokenizer".to_string(), t.clone())));
        inputs
    }
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

struct Decider<'a> {
    opts: &'a BuildOptions,
    store: &'a Store,
    /// Records whose workspace copies are intact need no blob reads; others have their
    /// outputs verified while deciding, so a corrupt blob re-executes its node.
    mat: &'a Materializer,
    /// Profile name → file, and file → text: read once per build, not once per run.
    profile_paths: HashMap<String, PathBuf>,
    profile_texts: HashMap<PathBuf, Arc<str>>,
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

    /// Decides a node from its own record (fresh, or why it runs). `explain` sets the
    /// node's leaves and detail blobs, computed only when it runs (they can be large).
    fn decide_own(&self, node: &mut GraphNode, upstream: &dyn Fn(&str) -> Option<String>, explain: &dyn Fn(&mut GraphNode)) {
        if let Some(p) = self.forced(&node.id) {
            node.decision = Decision::Run(Reason::Forced { pattern: p });
            node.record = usable_record(self.store, &node.key).ok().flatten();
            explain(node);
            return;
        }
        let verified = match ok_record(self.store, &node.key) {
            None => Ok(None),
            // The workspace holds its outputs as they were written: they are there. (A
            // blob lost from the cache since is found when something reads it — a
            // consumer that executes, a workspace copy to restore — and its node runs
            // again then; `cache verify` reports it.)
            Some(rec) if node.kind.materializes() && self.mat.up_to_date(&rec.key) => Ok(Some(rec)),
            // Not in the workspace as written: every output is read and checked.
            Some(rec) if node.kind.materializes() => verify_outputs(self.store, &rec).map(|()| Some(rec)),
            Some(rec) => missing_output(self.store, &rec).map_or(Ok(Some(rec)), Err),
        };
        match verified {
            Ok(Some(rec)) => {
                node.record = Some(rec);
                node.decision = Decision::Fresh;
                // Fresh, but not by the result the previous build used (a revert, or
                // another run treatment's identical inputs): `why` still names the change.
                if self.store.decided(&node.id).is_some_and(|k| k != node.key) {
                    explain(node);
                    node.changed = Some(reason_to_run(self.store, node, upstream));
                }
            }
            Ok(None) => {
                explain(node);
                node.decision = Decision::Run(reason_to_run(self.store, node, upstream));
            }
            Err(output) => {
                explain(node);
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
        native: bool,
    ) -> Result<(String, Arc<str>)> {
        if !self.profile_texts.contains_key(path) {
            let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read profile {}", path.display()))?;
            self.profile_texts.insert(path.to_path_buf(), Arc::from(raw));
        }
        let raw = self.profile_texts[path].clone();
        let text = substitute_placeholders(&raw, values);
        let cache_key = (path.to_path_buf(), text, treatment.to_string());
        if let Some(d) = self.profile_cache.get(&cache_key) {
            return Ok((d.clone(), raw));
        }
        let (doc, yaml) = render_profile_text(&cache_key.1, &path.display().to_string(), overrides, &mut self.warnings)?;
        if native {
            check_native_profile(&cache_key.1, path, &doc, treatment, overrides)?;
        }
        let d = crate::store::digest(yaml.as_bytes());
        self.profile_cache.insert(cache_key, d.clone());
        Ok((d, raw))
    }

    fn profile_path(&mut self, harness: &str, name: &str) -> Result<PathBuf> {
        if let Some(p) = self.profile_paths.get(name) {
            return Ok(p.clone());
        }
        // A profile the experiment names by a relative path is relative to that file.
        let beside = self.opts.experiment_file.parent().map(|d| d.join(name)).filter(|p| name.contains('/') && p.is_file());
        let p = match beside {
            Some(p) => p,
            None => find_profile(&self.opts.plan.profile_roots, harness, name).map_err(|e| InputError::new(format!("{e:#}")))?,
        };
        self.profile_paths.insert(name.to_string(), p.clone());
        Ok(p)
    }
}

/// A native profile with a run treatment's values must be one the load generator runs:
/// found here, while deciding, a bad value (a rate of `fast`, a duration of 0) is an
/// input error at its line of the experiment file — before anything is stood up. The
/// culprit is the first override that breaks the profile on its own; a profile broken
/// without overrides is reported as itself.
fn check_native_profile(text: &str, path: &Path, doc: &Node, treatment: &str, overrides: &[(String, Node)]) -> Result<()> {
    use crate::harness::profile::parse_native_profile;
    let source = path.display().to_string();
    let Err(all) = parse_native_profile(doc, &source) else { return Ok(()) };
    let mut quiet = Warnings::default();
    for (i, (key, value)) in overrides.iter().enumerate() {
        let Ok((alone, _)) = render_profile_text(text, &source, &overrides[i..=i], &mut quiet) else { continue };
        if let Err(e) = parse_native_profile(&alone, &source) {
            let why = format!("{e:#}");
            let why = why.strip_prefix(&format!("{source}: ")).unwrap_or(&why);
            return Err(InputError::at(&value.origin, format!("run treatment '{treatment}': {key}: {}", crate::yaml::str_node(value)))
                .help(format!("{why} (profile {source})"))
                .into());
        }
    }
    Err(all)
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

/// The seed a native profile runs with: the treatment's `seed`, else the profile's,
/// else 0 (the profile's default).
fn profile_seed(profile_text: &str, overrides: &[(String, Node)]) -> i64 {
    let from_treatment = overrides.iter().rev().find(|(k, _)| k == "seed").and_then(|(_, v)| v.as_i64());
    from_treatment
        .or_else(|| crate::yaml::load_str(profile_text, "profile").ok().and_then(|doc| doc.get("seed").and_then(Node::as_i64)))
        .unwrap_or(0)
}

/// Repetition `rep`'s seed: SplitMix64 of the base seed and the repetition, kept within
/// 2^53 so that every YAML and JSON reader reads it exactly.
pub fn repetition_seed(base: i64, rep: usize) -> i64 {
    let mut rng = crate::util::rng::Rng::new((base as u64) ^ (rep as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (rng.next_u64() >> 11) as i64
}

/// The run's rendered profile (with the placeholder endpoint its key covers) as leaves,
/// each at its line of the profile or of the experiment: what a profile change is
/// explained with.
fn profile_details(text: &str, path: &Path, values: &BTreeMap<String, String>, overrides: &[(String, Node)]) -> BTreeMap<String, Vec<u8>> {
    let filled = substitute_placeholders(text, values);
    // As the experiment's own origins are: relative to where llmd runs, when below it.
    let cwd = std::env::current_dir().unwrap_or_default();
    let label = path.strip_prefix(&cwd).unwrap_or(path).display().to_string();
    match render_profile_text(&filled, &label, overrides, &mut Warnings::default()) {
        Ok((doc, _)) => {
            BTreeMap::from([("profile".to_string(), serde_json::to_vec(&crate::engine::key::leaves(&doc)).unwrap_or_default())])
        }
        Err(_) => BTreeMap::new(),
    }
}

/// How a template change shows in a stack's rendered files: each file that differs
/// from the baseline plan's, with a short diff.
fn rendered_diffs(store: &Store, plan: &GraphNode, files: &[(String, String)]) -> Vec<super::reason::FileDiff> {
    let Some(old) = super::graph::baseline(store, plan) else { return Vec::new() };
    let before: BTreeMap<String, String> =
        old.outputs.iter().filter_map(|(k, d)| Some((k.strip_prefix("file:")?.to_string(), d.clone()))).collect();
    let after: BTreeMap<String, String> = files.iter().map(|(n, text)| (n.clone(), crate::store::digest(text.as_bytes()))).collect();
    let text = |d: &String| store.get_blob(d).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    super::graph::diff_files(&before, &after)
        .into_iter()
        .map(|f| {
            let diff = match (f.change.as_str(), files.iter().find(|(n, _)| *n == f.file)) {
                ("edited", Some((_, new))) => crate::util::textdiff::unified(&text(&before[&f.file]), new, 2, 16),
                _ => String::new(),
            };
            super::reason::FileDiff { file: f.file, change: f.change, diff }
        })
        .collect()
}

/// The input leaves a stack's deployment consumes, computed when its standup runs.
#[derive(Clone)]
pub struct TargetLeaves {
    inputs: super::planner::StackInputsOf,
    /// The local backend starts processes from a few config paths; a cluster backend
    /// applies manifests any leaf may shape.
    local: bool,
}

impl TargetLeaves {
    pub fn get(&self) -> Vec<Leaf> {
        let all = crate::engine::key::leaves(&self.inputs.get());
        if !self.local {
            return all;
        }
        all.into_iter()
            .filter(|l| TARGET_PATHS.iter().any(|p| if p.ends_with('.') { l.path.starts_with(p) } else { l.path == *p }))
            .collect()
    }
}

/// A stack after the first pass: its plan node decided and its deployment target known.
struct StackHead {
    setup: usize,
    name: String,
    plan: GraphNode,
    render: Option<Arc<StackPlan>>,
    target: StackTarget,
    /// The registry name of the stack's backend.
    backend: String,
    /// The inputs of the stack's deployment key (`Backend::deployment_inputs`).
    deployment_inputs: BTreeMap<String, String>,
    /// What every run key adds for the backend's runner (`Backend::run_inputs`).
    run_inputs: BTreeMap<String, String>,
    /// The harness runs on this machine (not in a pod on the cluster).
    harness_here: bool,
    /// The config leaves the backend consumes (for `why` on standups).
    target_leaves: TargetLeaves,
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
    setups: &'a [SetupTreatment],
    run_treatments: &'a [RunTreatment],
    harness: HarnessContext,
}

/// Decides a stack's standup, smoketest, runs and analyses.
fn decide_stack(d: &mut Decider, cx: &TailContext, head: &StackHead) -> Result<StackTail> {
    let setup = &cx.setups[head.setup].name;
    let stack = &head.name;
    // The standup key is the deployment key (`phases::standup::deployment_key`).
    let inputs = head.deployment_inputs.clone();
    let mut standup = GraphNode::new(format!("standup/{setup}/{stack}"), Kind::Standup, inputs, Vec::new());
    d.decide_own(&mut standup, &|_| None, &|n| n.leaves = head.target_leaves.get());
    let standup_key = standup.key.clone();

    let inputs = BTreeMap::from([("deployment".to_string(), standup_key.clone())]);
    let mut smoketest = GraphNode::new(format!("smoketest/{setup}/{stack}"), Kind::Smoketest, inputs, Vec::new());
    let standup_id = standup.id.clone();
    d.decide_own(&mut smoketest, &|n| (n == "deployment").then(|| standup_id.clone()), &|_| {});

    let mut runs = Vec::new();
    let max_len = head.target.max_model_len.map(|l| l.to_string());
    let values = profile_values(stack, &head.target.model, max_len, "REPLACE_ENV_LLMDBENCH_HARNESS_STACK_ENDPOINT_URL");
    for t in cx.run_treatments {
        let profile_name = t.profile.clone().unwrap_or_else(|| head.default_profile.clone());
        let profile_path = d.profile_path(cx.harness.kind.name(), &profile_name)?;
        let (profile_digest, profile_text) =
            d.profile_digest(&profile_path, &values, &t.name, &t.values, cx.harness.kind == HarnessKind::Llmd)?;
        let treatment_leaves = override_leaves(&t.values);
        let treatment_digest = leaves_digest(&treatment_leaves);
        // Repetitions of a native-harness run draw from their own seeds (unless
        // `repeat_seed: same`); repetition 1 keeps the profile's.
        let base_seed = (cx.harness.kind == HarnessKind::Llmd && !cx.experiment.repeat_seed_same && cx.experiment.repeat > 1)
            .then(|| profile_seed(&profile_text, &t.values));
        for rep in 1..=cx.experiment.repeat.max(1) {
            let seed = base_seed.filter(|_| rep > 1).map(|base| repetition_seed(base, rep));
            let mut inputs = BTreeMap::from([
                ("deployment".to_string(), standup_key.clone()),
                (format!("profile:{profile_name}"), profile_digest.clone()),
                ("treatment".to_string(), treatment_digest.clone()),
                ("rep".to_string(), rep.to_string()),
            ]);
            inputs.extend(cx.harness.run_inputs(head.harness_here, &head.target.model));
            inputs.extend(head.run_inputs.clone());
            if let Some(f) = cx.experiment.max_failure_fraction {
                // A run is judged when it executes: a new threshold judges it again.
                inputs.insert("policy:max_failure_fraction".into(), f.to_string());
            }
            if let Some(seed) = seed {
                inputs.insert("seed".into(), seed.to_string());
            }
            let id = format!("run/{setup}/{stack}/{}#{rep}", t.name);
            let mut run = GraphNode::new(id.clone(), Kind::Run, inputs, treatment_leaves.clone());
            let explain = |n: &mut GraphNode| {
                n.leaves = treatment_leaves.clone();
                n.details = profile_details(&profile_text, &profile_path, &values, &t.values);
            };
            d.decide_own(&mut run, &|n| (n == "deployment").then(|| standup_id.clone()), &explain);
            let run_out = run.record.as_ref().filter(|_| !run.runs()).map(Record::outputs_digest);
            let inputs = BTreeMap::from([
                ("run".to_string(), run_out.unwrap_or_else(|| "pending".into())),
                ("tool:analysis".to_string(), ANALYSIS_VERSION.to_string()),
            ]);
            let mut analysis = GraphNode::new(format!("analysis/{setup}/{stack}/{}#{rep}", t.name), Kind::Analysis, inputs, Vec::new());
            if run.runs() {
                analysis.decision = Decision::Run(Reason::UpstreamRuns { node: id.clone() });
            } else {
                d.decide_own(&mut analysis, &|n| (n == "run").then(|| id.clone()), &|_| {});
                // An analysis that executes reads the cached run's outputs: a damaged one
                // runs the run again instead of failing the analysis.
                if analysis.runs()
                    && let Some(Err(output)) = run.record.as_ref().map(|r| verify_outputs(d.store, r))
                {
                    explain(&mut run);
                    run.decision = Decision::Run(Reason::OutputMissing { output });
                    analysis.decision = Decision::Run(Reason::UpstreamRuns { node: id.clone() });
                }
            }
            let slot = RunSlot {
                run: 0,
                analysis: 0,
                treatment: t.name.clone(),
                rep,
                profile_path: profile_path.clone(),
                profile_text: profile_text.clone(),
                overrides: t.values.iter().cloned().chain(seed.map(|s| ("seed".to_string(), Node::from(s)))).collect(),
                seed,
            };
            runs.push((run, analysis, slot));
        }
    }
    Ok(StackTail { standup, smoketest, runs })
}

/// The experiment and the specification it is planned with.
fn load(opts: &BuildOptions) -> Result<(Experiment, String)> {
    let experiment = load_experiment(&opts.experiment_file)?;
    let spec = if !opts.plan.spec.is_empty() { opts.plan.spec.clone() } else { experiment.spec.clone().unwrap_or_default() };
    if spec.is_empty() {
        return Err(InputError::new(format!(
            "{}: no specification: add `experiment: {{spec: examples/sim}}` or pass --spec",
            opts.experiment_file.display()
        ))
        .into());
    }
    Ok((experiment, spec))
}

/// Pass 1, in order (the planner is single-threaded): plan nodes and deployment targets.
fn decide_plans(
    d: &mut Decider,
    planner: &mut Planner,
    registry: &Registry,
    experiment: &Experiment,
    spec: &str,
) -> Result<(Vec<StackHead>, HarnessKind)> {
    let opts = d.opts;
    let handles: Vec<usize> = experiment.setup.iter().map(|s| planner.add_setup(setup_options(&opts.plan, spec, &s.overrides))).collect();
    let version = env!("CARGO_PKG_VERSION").to_string();
    let mut harness: Option<HarnessKind> = None;
    let mut heads = Vec::new();
    for (si, setup) in experiment.setup.iter().enumerate() {
        let plan = planner.plan(handles[si])?;
        let template_digest = planner.template_digest(handles[si])?;
        crate::util::lap(&format!("setup {} merged", setup.name));
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
            let explain = |n: &mut GraphNode| {
                n.leaves = crate::engine::key::leaves(&stack.inputs.get());
                if let Ok(files) = planner.template_files(handles[si]) {
                    n.details.insert("templates".into(), serde_json::to_vec(&files).unwrap_or_default());
                }
            };
            d.decide_own(&mut plan_node, &|_| None, &explain);
            let cached_target = match (&plan_node.decision, &plan_node.record) {
                (Decision::Fresh, Some(rec)) => blob_json::<StackTarget>(d.store, rec, "target"),
                _ => None,
            };
            let backend = registry.for_config(&stack.config)?;
            // Targets cached before plans carried manifests cannot stand a cluster stack up.
            let cached_target = cached_target.filter(|t: &StackTarget| backend.name() == "local" || !t.manifests.is_empty());
            let (target, render) = match cached_target {
                Some(t) => (t, None),
                None => {
                    if !plan_node.runs() {
                        plan_node.decision = Decision::Run(Reason::OutputMissing { output: "target".into() });
                        explain(&mut plan_node);
                    }
                    let r = planner.render(handles[si], ki)?;
                    if matches!(plan_node.decision, Decision::Run(Reason::TemplateChanged { .. })) {
                        let mut files = r.files.clone();
                        files.push(("config.yaml".to_string(), r.config_yaml.clone()));
                        let diffs = rendered_diffs(d.store, &plan_node, &files);
                        if let Decision::Run(Reason::TemplateChanged { rendered, .. }) = &mut plan_node.decision {
                            *rendered = diffs;
                        }
                    }
                    let p = StackPlan::new(&stack.name, r.files.clone(), r.config.clone(), r.config_yaml.clone())?;
                    (p.target.clone(), Some(Arc::new(p)))
                }
            };
            let target = target.with_secrets(stack.secrets.clone());
            if harness.is_none() {
                let scenario = |key: &str| stack.config.get_path(&["harness", key]).map(crate::yaml::str_node).filter(|s| !s.is_empty());
                let name =
                    opts.harness.clone().or(experiment.harness.clone()).or_else(|| scenario("name")).unwrap_or_else(|| "llmd".into());
                harness = Some(HarnessKind::parse(&name).map_err(|e| InputError::new(format!("harness: {e}")))?);
            }
            // A cluster deployment is the plan's manifests, which any config leaf may shape.
            let target_leaves = TargetLeaves { inputs: stack.inputs.clone(), local: backend.name() == "local" };
            let default_profile = opts
                .workload
                .clone()
                .or(experiment.profile.clone())
                .or_else(|| stack.config.get_path(&["harness", "profile"]).map(crate::yaml::str_node))
                .unwrap_or_else(|| "sanity_random.yaml".into());
            heads.push(StackHead {
                setup: si,
                name: stack.name.clone(),
                plan: plan_node,
                render,
                deployment_inputs: backend.deployment_inputs(&target),
                run_inputs: backend.run_inputs(&target, harness.unwrap_or(HarnessKind::Llmd).name()),
                harness_here: backend.runs_harness_here(&target),
                target,
                backend: backend.name().to_string(),
                target_leaves,
                default_profile,
            });
        }
    }
    Ok((heads, harness.unwrap_or(HarnessKind::Llmd)))
}

/// Pass 2, stacks in parallel: each stack's chain reads only its own records.
fn decide_tails(d: &mut Decider, cx: &TailContext, heads: &[StackHead]) -> Result<Vec<StackTail>> {
    let (opts, store, mat) = (d.opts, d.store, d.mat);
    let parts = crate::util::map_chunks(heads, 8, |part| -> Result<(Vec<StackTail>, Warnings)> {
        let mut d = Decider::new(opts, store, mat);
        let tails = part.iter().map(|h| decide_stack(&mut d, cx, h)).collect::<Result<Vec<_>>>()?;
        Ok((tails, d.warnings))
    });
    let mut tails = Vec::with_capacity(heads.len());
    for part in parts {
        let (t, w) = part.unwrap_or_else(|| Err(anyhow::anyhow!("internal error: a decision thread panicked")))?;
        tails.extend(t);
        d.warnings.extend(w);
    }
    Ok(tails)
}

/// Lays the decided nodes out in execution order: per stack, plan, standup, smoketest,
/// then each run with its analysis.
fn assemble(
    opts: &BuildOptions,
    experiment: &Experiment,
    heads: Vec<StackHead>,
    tails: Vec<StackTail>,
) -> (Vec<GraphNode>, Vec<SetupSlot>, HashMap<usize, Arc<StackPlan>>) {
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
        setups[head.setup].stacks.push(StackSlot {
            name: head.name,
            plan,
            standup: plan + 1,
            smoketest: plan + 2,
            target: head.target,
            backend: head.backend,
            runs,
            target_leaves: head.target_leaves,
        });
    }
    (nodes, setups, renders)
}

/// The summary node: its key covers every analysis's outputs.
fn decide_summary(d: &Decider, experiment: &Experiment, nodes: &mut [GraphNode], analyses: &[usize]) -> GraphNode {
    let pending = analyses.iter().find(|&&a| nodes[a].runs());
    let mut inputs = BTreeMap::new();
    for &a in analyses {
        let out = nodes[a].record.as_ref().map(Record::outputs_digest);
        inputs.insert(format!("analysis:{}", nodes[a].id), out.unwrap_or_else(|| "pending".into()));
    }
    let mut summary = GraphNode::new(format!("summary/{}", experiment.name), Kind::Summary, inputs, Vec::new());
    match pending {
        Some(&a) => summary.decision = Decision::Run(Reason::UpstreamRuns { node: nodes[a].id.clone() }),
        None => {
            let ids: HashMap<String, String> =
                analyses.iter().map(|&a| (format!("analysis:{}", nodes[a].id), nodes[a].id.clone())).collect();
            d.decide_own(&mut summary, &|n| ids.get(n).cloned(), &|_| {});
            if summary.runs() {
                // It reads every analysis's outputs: a damaged one runs that analysis again.
                for &a in analyses {
                    if let Some(Err(output)) = nodes[a].record.as_ref().map(|r| verify_outputs(d.store, r)) {
                        nodes[a].decision = Decision::Run(Reason::OutputMissing { output });
                        summary.decision = Decision::Run(Reason::UpstreamRuns { node: nodes[a].id.clone() });
                    }
                }
            }
        }
    }
    summary
}

/// Standups and smoketests are needed only by runs that execute; a new deployment is
/// always smoketested.
fn settle_deployments(nodes: &mut [GraphNode], setups: &[SetupSlot]) {
    for stack in setups.iter().flat_map(|s| &s.stacks) {
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
        if nodes[stack.standup].runs() && !nodes[stack.smoketest].runs() {
            let id = nodes[stack.standup].id.clone();
            nodes[stack.smoketest].decision = Decision::Run(Reason::UpstreamRuns { node: id });
        }
    }
}

/// Decides every node of the experiment.
pub fn plan_graph(opts: &BuildOptions, store: &Store, planner: &mut Planner, mat: &Materializer, registry: &Registry) -> Result<Graph> {
    let (experiment, spec) = load(opts)?;
    let lap = crate::util::lap;
    lap("experiment loaded");
    let mut d = Decider::new(opts, store, mat);
    let (heads, harness) = decide_plans(&mut d, planner, registry, &experiment, &spec)?;
    lap("plans decided");
    let models_here: Vec<&str> = heads.iter().filter(|h| h.harness_here).map(|h| h.target.model.as_str()).collect();
    let harness = HarnessContext::new(harness, &models_here, opts.tokenizer.as_deref())?;
    let harness_kind = harness.kind;
    let run_treatments: Vec<RunTreatment> = if experiment.run.is_empty() {
        vec![RunTreatment { name: "default".into(), profile: None, values: Vec::new() }]
    } else {
        experiment.run.clone()
    };
    let cx = TailContext { experiment: &experiment, setups: &experiment.setup, run_treatments: &run_treatments, harness };
    let tails = decide_tails(&mut d, &cx, &heads)?;
    lap("runs decided");
    let (mut nodes, setups, renders) = assemble(opts, &experiment, heads, tails);
    let analyses: Vec<usize> = setups.iter().flat_map(|s| s.stacks.iter().flat_map(|k| k.runs.iter().map(|r| r.analysis))).collect();
    let summary = decide_summary(&d, &experiment, &mut nodes, &analyses);
    let summary_idx = nodes.len();
    nodes.push(summary);
    settle_deployments(&mut nodes, &setups);
    lap("graph assembled");
    // Each decision thread reports what it met; the same profile warning once.
    let mut seen = std::collections::HashSet::new();
    for w in d.warnings.iter() {
        let line = w.to_string();
        if seen.insert(line.clone()) {
            say!("warning: {line}");
        }
    }
    Ok(Graph { experiment, harness: harness_kind, nodes, setups, summary: summary_idx, renders })
}

/// Checks deployments that runs need: a standup with a record is fresh only while its
/// deployment is live from the same key.
pub fn check_deployments(graph: &mut Graph, rt: &tokio::runtime::Runtime, registry: &Registry) {
    for setup in &graph.setups {
        for stack in &setup.stacks {
            let needed = stack.runs.iter().any(|r| graph.nodes[r.run].runs());
            if !needed || graph.nodes[stack.standup].runs() {
                continue;
            }
            let key = graph.nodes[stack.standup].key.clone();
            let reason = match rt.block_on(inspect(registry, &setup.workspace, &stack.name, Want::Deployment(&key))) {
                Ok(Existing::Live(_)) => None,
                Ok(Existing::Gone(_, why)) => Some(Reason::DeploymentGone { detail: why }),
                Ok(Existing::Drifted(_, why)) => Some(Reason::DeploymentDrifted { detail: why }),
                Ok(Existing::None) => {
                    Some(Reason::DeploymentGone { detail: "no deployment is running (torn down after the last build)".into() })
                }
                Err(e) => Some(Reason::DeploymentGone { detail: format!("{e:#}") }),
            };
            if let Some(r) = reason {
                // A deployment that drifted (or went) while its config changed: the
                // change is the root cause, the drift its consequence.
                let r = graph.nodes[stack.standup].changed.take().unwrap_or(r);
                graph.nodes[stack.standup].decision = Decision::Run(r);
                if graph.nodes[stack.standup].leaves.is_empty() {
                    graph.nodes[stack.standup].leaves = stack.target_leaves.get();
                }
                let id = graph.nodes[stack.standup].id.clone();
                graph.nodes[stack.smoketest].decision = Decision::Run(Reason::UpstreamRuns { node: id });
            }
        }
    }
}
