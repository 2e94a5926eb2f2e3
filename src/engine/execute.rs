//! Executing a decided graph: per setup treatment, plans → standups → smoketests →
//! runs → analyses → teardown (unless `--keep-stacks`), then the summary. Setups are
//! independent: `-j N` executes up to N at once, packed into a capacity pool
//! ([`super::schedule`]), with runs isolated as the experiment asks; the graph, the
//! reports and the workspace index are shared behind locks held only between node
//! bodies, never across one. Ctrl-C cancels what is in flight ([`super::interrupt`]). Every node
//! body is a call to its executor in [`crate::phases`]; this module adds what the cache
//! needs around it:
//!
//! incomplete marker (nodes with effects) → work → blobs → record → node pointers →
//! journal, then the node's outputs are published into the workspace.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::build::{BuildOptions, NodeReport, NodeStatus};
use super::decide::Graph;
use super::graph::{Decision, Kind, usable_record};
use super::interrupt::{Interrupt, Interrupted, is_interrupted};
use super::materialize::{self, Materializer};
use super::progress::Board;
use super::reason::Reason;
use super::schedule::{self, Admit, Amounts, Capacity, Gate, Pool};
use crate::backend::{Liveness, Receipt, Registry};
use crate::error::Warnings;
use crate::experiment::Isolation;
use crate::phases::analysis::{RunLabel, analyze_run, v02_report};
use crate::phases::run::{ProfileJob, RunEvent, RunRequest, profile_values, run_treatment};
use crate::phases::summary::{SummaryRun, summarize};
use crate::store::{Journal, Record, Status, Store, unix_now};

/// Result of executing one node: outputs (name → bytes).
type Outputs = BTreeMap<String, Vec<u8>>;

pub struct Executor<'a> {
    pub opts: &'a BuildOptions,
    pub store: &'a Store,
    pub registry: &'a Registry,
    pub rt: &'a tokio::runtime::Runtime,
    pub journal: &'a Journal,
    graph: Mutex<&'a mut Graph>,
    reports: Mutex<&'a mut Vec<Option<NodeReport>>>,
    mat: Mutex<Materializer>,
    /// A node failed and `--keep-going` is off, or the build was interrupted.
    stop: AtomicBool,
    /// Nodes decided to run, and how many have started (for `[k/n]` progress).
    to_run: usize,
    started_nodes: AtomicUsize,
    /// How setups are packed (`-j`, capacity) and what may run beside a measurement.
    plan: Schedule,
    pool: Pool,
    gate: Gate,
    interrupt: Arc<Interrupt>,
    board: Arc<Board>,
}

/// How a build executes its setups: at most `jobs` at once, each holding `needs[si]`
/// of `capacity`, measurements under `isolation`.
pub struct Schedule {
    pub jobs: usize,
    pub capacity: Capacity,
    pub needs: Vec<Amounts>,
    pub isolation: Isolation,
}

impl<'a> Executor<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: &'a BuildOptions,
        store: &'a Store,
        graph: &'a mut Graph,
        registry: &'a Registry,
        rt: &'a tokio::runtime::Runtime,
        reports: &'a mut Vec<Option<NodeReport>>,
        journal: &'a Journal,
        mat: Materializer,
        plan: Schedule,
        interrupt: Arc<Interrupt>,
    ) -> Executor<'a> {
        let to_run = graph.nodes.iter().filter(|n| n.runs()).count();
        let pool = Pool::new(&plan.capacity, plan.needs.clone(), 0..graph.setups.len());
        Executor {
            opts,
            store,
            registry,
            rt,
            journal,
            graph: Mutex::new(graph),
            reports: Mutex::new(reports),
            mat: Mutex::new(mat),
            stop: AtomicBool::new(false),
            to_run,
            started_nodes: AtomicUsize::new(0),
            gate: Gate::new(plan.isolation),
            pool,
            plan,
            interrupt,
            board: Board::start(opts.human, to_run),
        }
    }

    fn g(&self) -> MutexGuard<'_, &'a mut Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.interrupt.is_set()
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.pool.close();
    }

    /// Runs `fut` on the runtime unless the build is interrupted first.
    fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output> {
        self.rt.block_on(self.interrupt.guard(fut))
    }

    /// Executes every setup (up to `jobs` at once, packed into the capacity pool), then
    /// the summary.
    pub fn run_all(&self) {
        let setups = self.g().setups.len();
        let workers = self.plan.jobs.clamp(1, setups.max(1));
        std::thread::scope(|scope| {
            for w in 0..workers {
                std::thread::Builder::new()
                    .name(format!("llmd-setup-{w}"))
                    .spawn_scoped(scope, || self.worker())
                    .expect("a worker thread starts");
            }
        });
        if self.interrupt.is_set() {
            self.board.finish();
            self.save_materialized();
            return;
        }
        let summary = self.g().summary;
        if self.g().nodes[summary].runs() {
            let blocked = {
                let g = self.g();
                let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
                g.analyses().into_iter().any(|a| {
                    // (Fresh: it shared the result of an identical analysis of this build.)
                    reports[a].as_ref().is_some_and(|r| !matches!(r.status, NodeStatus::Ran | NodeStatus::Fresh))
                        || (reports[a].is_none() && g.nodes[a].runs())
                })
            };
            if blocked {
                self.skip(summary, "some analyses did not finish");
            } else if !self.stopped() {
                // The key covers the analyses' outputs, known only now.
                {
                    let mut g = self.g();
                    for a in g.analyses() {
                        let out = g.nodes[a].record.as_ref().map(Record::outputs_digest);
                        let id = format!("analysis:{}", g.nodes[a].id);
                        g.nodes[summary].inputs.insert(id, out.unwrap_or_default());
                    }
                    g.nodes[summary].rekey();
                }
                self.execute(summary, |ex| ex.summary());
            }
        }
        self.board.finish();
        {
            let g = self.g();
            let mut mat = self.mat.lock().unwrap_or_else(|e| e.into_inner());
            materialize::publish_summary(&mut mat, self.store, &g, &self.opts.workspace);
        }
        self.save_materialized();
    }

    /// Workspace writes that failed, each naming its path.
    pub fn workspace_errors(&self) -> Vec<String> {
        self.mat.lock().unwrap_or_else(|e| e.into_inner()).failed.clone()
    }

    /// The materializer, once the build is done with it (its index can be large: the
    /// caller decides where to free it).
    pub fn into_materializer(self) -> Materializer {
        self.mat.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn save_materialized(&self) {
        let g = self.g();
        let mut mat = self.mat.lock().unwrap_or_else(|e| e.into_inner());
        materialize::finish(&mut mat, &g, &self.opts.workspace);
    }

    /// One worker: setups from the pool until none is left.
    fn worker(&self) {
        while let Some(admit) = self.pool.take() {
            match admit {
                Admit::Go(si) => {
                    let name = self.g().setups[si].name.clone();
                    let need = &self.plan.needs[si];
                    self.journal.write(&serde_json::json!({"event": "setup-start", "setup": name, "need": need, "t": unix_now()}));
                    let held = self.run_setup(si);
                    self.journal.write(&serde_json::json!({"event": "setup-end", "setup": name, "kept": held, "t": unix_now()}));
                    self.pool.done(si, !held);
                }
                Admit::Starved(si) => {
                    let why = format!(
                        "not started: its stacks need {} and kept stacks (--keep-stacks) hold {} of the pool ({})",
                        schedule::describe(&self.plan.needs[si]),
                        schedule::describe(&self.pool.used()),
                        schedule::describe(&self.plan.capacity.pool)
                    );
                    let nodes = self.setup_nodes(si);
                    self.skip_all(nodes.into_iter(), &why);
                }
            }
            if self.stopped() {
                self.pool.close();
            }
        }
    }

    /// Every node of setup `si`.
    fn setup_nodes(&self, si: usize) -> Vec<usize> {
        let g = self.g();
        g.setups[si]
            .stacks
            .iter()
            .flat_map(|k| [k.plan, k.standup, k.smoketest].into_iter().chain(k.runs.iter().flat_map(|r| [r.run, r.analysis])))
            .collect()
    }

    fn skip(&self, idx: usize, why: &str) {
        let g = self.g();
        let n = &g.nodes[idx];
        let reason = match &n.decision {
            Decision::Run(r) => Some(r.clone()),
            _ => None,
        };
        self.journal.append(&serde_json::json!({"event": "skip", "id": n.id, "why": why, "t": unix_now()}));
        self.reports.lock().unwrap_or_else(|e| e.into_inner())[idx] =
            Some(NodeReport::new(n, NodeStatus::Skipped, reason, Some(why.into()), 0.0));
    }

    /// Executes node `idx` with `work`, recording the outcome. Returns success.
    fn execute(&self, idx: usize, work: impl FnOnce(&Self) -> Result<Outputs>) -> bool {
        let (id, kind, key, reason) = {
            let g = self.g();
            let n = &g.nodes[idx];
            let reason = match &n.decision {
                Decision::Run(r) => r.clone(),
                _ => Reason::Forced { pattern: "(needed)".into() },
            };
            (n.id.clone(), n.kind, n.key.clone(), reason)
        };
        if matches!(kind, Kind::Run | Kind::Analysis)
            && !matches!(reason, Reason::Forced { .. })
            && let Some((first, rec)) = self.executed_with_same_key(idx)
        {
            return self.share(idx, &first, rec, reason);
        }
        let k = self.started_nodes.fetch_add(1, Ordering::SeqCst) + 1;
        let label = format!("[{k}/{}] {id}", self.to_run.max(k));
        self.board.line(&format!("▶ {label}  ({})", reason.describe(3)));
        if kind.has_effects()
            && let Err(e) = self.store.mark_incomplete(&id, &key)
        {
            self.board.warn(&format!("warning: {e:#}"));
        }
        // Flushes the decisions too: a build killed from here on leaves them on disk.
        self.journal.write(&serde_json::json!({"event": "begin", "id": id, "key": key, "t": unix_now()}));
        let started = Instant::now();
        let started_unix = unix_now();
        let token = self.board.begin(label);
        let result = if self.interrupt.is_set() { Err(Interrupted.into()) } else { work(self) };
        let seconds = started.elapsed().as_secs_f64();
        let interrupted = result.as_ref().err().is_some_and(is_interrupted);
        // An interrupted node writes no record: its incomplete marker makes the next
        // build run it again ("interrupted").
        let outcome = if interrupted { Err(anyhow::anyhow!("interrupted")) } else { self.record(idx, &result, started_unix, seconds) };
        let (status, detail) = match (&result, outcome) {
            (Ok(_), Ok(rec)) => {
                self.mat.lock().unwrap_or_else(|e| e.into_inner()).forget_record(&rec.key);
                self.g().nodes[idx].record = Some(rec);
                (NodeStatus::Ran, None)
            }
            (Err(_), _) if interrupted => (NodeStatus::Failed, Some("interrupted".to_string())),
            (Err(e), _) => (NodeStatus::Failed, Some(format!("{e:#}"))),
            (Ok(_), Err(e)) => (NodeStatus::Failed, Some(format!("could not record the result: {e:#}"))),
        };
        self.board.end(token, status != NodeStatus::Ran);
        match &detail {
            None => self.board.line(&format!("✔ {id}  ({seconds:.1} s)")),
            Some(d) => self.board.line(&format!("✘ {id}  failed after {seconds:.1} s: {d}")),
        }
        let journal_status = if interrupted { "interrupted" } else { status.name() };
        self.journal.write(
            &serde_json::json!({"event": "done", "id": id, "status": journal_status, "seconds": seconds, "error": detail, "t": unix_now()}),
        );
        let report = NodeReport::new(&self.g().nodes[idx], status, Some(reason), detail, seconds);
        self.reports.lock().unwrap_or_else(|e| e.into_inner())[idx] = Some(report);
        if status == NodeStatus::Failed && (!self.opts.keep_going || interrupted) {
            self.halt();
        }
        status == NodeStatus::Ran
    }

    /// Another node of this build with the same key that already executed (two run
    /// treatments with identical inputs): its id and record.
    fn executed_with_same_key(&self, idx: usize) -> Option<(String, Record)> {
        let g = self.g();
        let key = &g.nodes[idx].key;
        let first =
            g.nodes.iter().enumerate().find(|(i, n)| *i != idx && n.key == *key && n.record.as_ref().is_some_and(|r| r.key == *key))?;
        let rec = usable_record(self.store, key).ok().flatten()?;
        Some((first.1.id.clone(), rec))
    }

    /// Node `idx` takes the result of `first`, which executed the same key earlier in
    /// this build: it is not executed again, and says so.
    fn share(&self, idx: usize, first: &str, rec: Record, reason: Reason) -> bool {
        let (id, key) = (self.g().nodes[idx].id.clone(), rec.key.clone());
        self.g().nodes[idx].record = Some(rec);
        let detail = format!("identical inputs to {first}, which ran first in this build: its result is shared");
        self.board.line(&format!("= {id}  ({detail})"));
        self.journal.write(&serde_json::json!({"event": "begin", "id": id, "key": key, "t": unix_now()}));
        self.journal.write(&serde_json::json!({"event": "done", "id": id, "status": "shared", "with": first, "t": unix_now()}));
        let report = NodeReport::new(&self.g().nodes[idx], NodeStatus::Fresh, Some(reason), Some(detail), 0.0);
        self.reports.lock().unwrap_or_else(|e| e.into_inner())[idx] = Some(report);
        true
    }

    /// Blobs first (made durable together), then the record that names them.
    fn record(&self, idx: usize, result: &Result<Outputs>, started_unix: f64, seconds: f64) -> Result<Record> {
        let (id, kind, key, manifest) = {
            let g = self.g();
            let node = &g.nodes[idx];
            (node.id.clone(), node.kind, node.key.clone(), node.manifest(self.store)?)
        };
        let (status, outputs, error) = match result {
            Ok(outs) => {
                let mut digests = BTreeMap::new();
                for (name, bytes) in outs {
                    digests.insert(name.clone(), self.store.put_blob_unsynced(bytes)?);
                }
                self.store.sync()?;
                (Status::Ok, digests, None)
            }
            Err(e) => (Status::Failed, BTreeMap::new(), Some(format!("{e:#}"))),
        };
        let rec = Record {
            version: Record::VERSION,
            key,
            id,
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
    }

    /// Setup `si`: its plans, then each stack's standup, smoketest, runs and analyses,
    /// then its teardown (unless `--keep-stacks`). Returns whether stacks it stood up or
    /// reused are still deployed (kept).
    fn run_setup(&self, si: usize) -> bool {
        let mut touched = false;
        let stacks = self.g().setups[si].stacks.len();
        for ki in 0..stacks {
            let plan = self.g().setups[si].stacks[ki].plan;
            if self.g().nodes[plan].runs() && !self.stopped() {
                let rendered = self.g().renders.get(&plan).cloned();
                self.execute(plan, move |_| rendered.context("internal error: the plan was not rendered while deciding")?.outputs());
            }
            let g = self.g();
            materialize::publish_plan(&mut self.mat.lock().unwrap_or_else(|e| e.into_inner()), self.store, &g, si, ki);
        }
        for ki in 0..stacks {
            if self.stopped() {
                break;
            }
            touched |= self.run_stack(si, ki);
            let g = self.g();
            materialize::publish_runs(&mut self.mat.lock().unwrap_or_else(|e| e.into_inner()), self.store, &g, si, ki);
        }
        // An interrupted build tears down too: it stops what it started. So does one
        // that ran nothing here but finds a receipt (a killed build's stack).
        let ws = self.g().setups[si].workspace.clone();
        if !self.opts.keep_stacks && (touched || ws.join("receipts").is_dir()) {
            crate::util::test_hold("teardown:before");
            self.teardown_setup(&ws);
            return false;
        }
        touched
    }

    /// A stack's standup, smoketest, runs and analyses; true when it was stood up (or
    /// reused) for runs.
    fn run_stack(&self, si: usize, ki: usize) -> bool {
        let (standup, smoke, slots) = {
            let g = self.g();
            let stack = &g.setups[si].stacks[ki];
            (stack.standup, stack.smoketest, stack.runs.iter().map(|r| (r.run, r.analysis)).collect::<Vec<_>>())
        };
        let runs = |idx: usize| self.g().nodes[idx].runs();
        let needed = slots.iter().any(|&(r, _)| runs(r)) || runs(standup);
        if needed {
            if runs(standup) && !self.execute(standup, |ex| ex.standup(si, ki)) {
                self.skip_all(std::iter::once(smoke).chain(slots.iter().flat_map(|&(r, a)| [r, a])), "its deployment failed");
                return true;
            }
            if runs(smoke) && !self.stopped() && !self.execute(smoke, |ex| ex.smoketest(si, ki)) {
                self.skip_all(slots.iter().flat_map(|&(r, a)| [r, a]), "its smoketest failed");
                return true;
            }
        }
        // Runs fresh and analyses stale (forced, or a new analysis version) analyse the
        // cached runs without anything stood up.
        for (ri, &(run, analysis)) in slots.iter().enumerate() {
            if runs(run) {
                if self.stopped() {
                    break;
                }
                let _measuring = self.gate.measure();
                if !self.execute(run, |ex| ex.run(si, ki, ri)) {
                    self.skip(analysis, "its run failed");
                    continue;
                }
                // The analysis key covers the run's outputs, known only now.
                let mut g = self.g();
                let outputs = g.nodes[run].record.as_ref().map(Record::outputs_digest);
                g.nodes[analysis].inputs.insert("run".into(), outputs.unwrap_or_default());
                g.nodes[analysis].rekey();
            }
            if runs(analysis) && !self.stopped() {
                let _measuring = self.gate.measure();
                self.execute(analysis, |ex| ex.analysis(si, ki, ri));
            }
        }
        needed
    }

    fn skip_all(&self, nodes: impl Iterator<Item = usize>, why: &str) {
        for idx in nodes.collect::<Vec<_>>() {
            if self.g().nodes[idx].runs() {
                self.skip(idx, why);
            }
        }
    }

    /// The stack's rendered config.
    fn plan_config(&self, si: usize, ki: usize) -> Result<crate::yaml::Node> {
        let g = self.g();
        g.plan_config(self.store, g.setups[si].stacks[ki].plan).context("the plan's config.yaml is not in the cache")
    }

    /// The rendered plan's digest: the plan rendered in this build knows it; a cached
    /// plan's is computed from its record's manifests and config.
    fn plan_digest(&self, si: usize, ki: usize) -> Result<String> {
        let g = self.g();
        let stack = &g.setups[si].stacks[ki];
        if let Some(plan) = g.renders.get(&stack.plan) {
            return Ok(plan.plan_digest.clone());
        }
        let rec = g.nodes[stack.plan].record.as_ref().context("the plan has no record")?;
        let blob = |d: &String| {
            self.store.get_blob(d).map(|b| String::from_utf8_lossy(&b).into_owned()).context("a plan output is missing from the cache")
        };
        let mut files = Vec::new();
        for (name, d) in &rec.outputs {
            if let Some(file) = name.strip_prefix("file:").filter(|f| *f != "config.yaml") {
                files.push((file.to_string(), blob(d)?));
            }
        }
        let config_yaml = blob(rec.outputs.get("config.yaml").context("the plan has no config.yaml")?)?;
        Ok(crate::phases::plan::plan_digest(&files, &config_yaml))
    }

    fn standup(&self, si: usize, ki: usize) -> Result<Outputs> {
        let plan_digest = self.plan_digest(si, ki)?;
        let (workspace, target, backend) = {
            let g = self.g();
            let (setup, stack) = (&g.setups[si], &g.setups[si].stacks[ki]);
            (setup.workspace.clone(), stack.target.clone(), stack.backend.clone())
        };
        let backend = self.registry.get(&backend)?;
        backend.preflight(&target)?;
        let deploy = crate::phases::standup::deploy(self.registry, backend.as_ref(), &workspace, &target, &plan_digest);
        let receipt = self.block_on(deploy)??;
        Ok(BTreeMap::from([("receipt".to_string(), serde_json::to_vec_pretty(&receipt)?)]))
    }

    fn receipt(&self, si: usize, ki: usize) -> Result<Receipt> {
        let (workspace, name) = {
            let g = self.g();
            (g.setups[si].workspace.clone(), g.setups[si].stacks[ki].name.clone())
        };
        Receipt::load(&workspace, &name)?.context("no receipt: the stack is not stood up")
    }

    fn smoketest(&self, si: usize, ki: usize) -> Result<Outputs> {
        let receipt = self.receipt(si, ki)?;
        let config = self.plan_config(si, ki)?;
        let lines = self.block_on(async {
            let access = self.registry.get(&receipt.backend)?.connect(&receipt).await?;
            // The deployment key was checked while deciding; no plan digest to compare.
            crate::phases::smoketest::smoketest(&access, &receipt, &config, "").await
        })??;
        Ok(BTreeMap::from([("smoketest.txt".to_string(), lines.join("\n").into_bytes())]))
    }

    /// One run node: the run executor with the profile text its key was computed from,
    /// up to `treatment_max_attempts` attempts, one harness instance into
    /// `results/<experiment-id>_<rep>/`.
    fn run(&self, si: usize, ki: usize, ri: usize) -> Result<Outputs> {
        let receipt = self.receipt(si, ki)?;
        let (workspace, stack_name, model, max_len, harness, max_attempts, id, slot) = {
            let g = self.g();
            let (setup, stack) = (&g.setups[si], &g.setups[si].stacks[ki]);
            let slot = &stack.runs[ri];
            (
                setup.workspace.clone(),
                stack.name.clone(),
                stack.target.model.clone(),
                stack.target.max_model_len,
                g.harness,
                g.experiment.max_attempts,
                g.nodes[slot.run].id.clone(),
                (slot.profile_path.clone(), slot.profile_text.clone(), slot.treatment.clone(), slot.overrides.clone(), slot.rep, slot.seed),
            )
        };
        let (profile_path, profile_text, treatment, overrides, rep, seed) = slot;
        let backend = self.registry.get(&receipt.backend)?;
        // A measurement counts only when the same server served all of it: alive before,
        // and still the same deployment after (a replica that died, or was replaced by a
        // restart, fails the run whatever fraction of requests failed).
        if let Liveness::Gone(why) | Liveness::Drifted(why) = self.block_on(backend.check(&receipt))? {
            bail!("the server was not serving when the run started: {why}");
        }
        let serving_before = self.block_on(backend.incarnation(&receipt))??;
        let access = self.block_on(backend.connect(&receipt))??;
        crate::util::test_hold("run:started");
        let endpoint = access.primary().to_string();
        let values = profile_values(&stack_name, &model, max_len.map(|l| l.to_string()), access.harness_endpoint());
        let mut out_dir = workspace.join("workload/profiles").join(harness.name()).join(&stack_name);
        if seed.is_some() {
            // A repetition with its own seed renders its own profile.
            out_dir = out_dir.join(format!("rep-{rep}"));
        }
        let job = ProfileJob {
            harness,
            source: &profile_path,
            text: &profile_text,
            values: &values,
            treatment: Some(&treatment),
            overrides: &overrides,
            out_dir: &out_dir,
        };
        let prepared = job.prepare(true, &mut Warnings::default())?;
        let mut staging = Staging::new(&workspace, &id);
        let results = staging.dir.clone();
        let request = RunRequest {
            harness,
            run: &prepared,
            endpoint: &endpoint,
            model: &receipt.model,
            stack: &stack_name,
            deployment: &receipt.deployment,
            results: &results,
            instances: rep..=rep,
            tokenizer: self.opts.tokenizer.as_deref(),
            timeout: self.opts.harness_timeout,
            quiet: !self.opts.verbose,
            max_attempts,
            max_failure_fraction: self.g().experiment.max_failure_fraction.unwrap_or(crate::phases::run::DEFAULT_MAX_FAILURE_FRACTION),
            launcher: access.launcher.as_deref(),
            isolation: Some(self.plan.isolation.name()),
        };
        let (board, journal) = (&self.board, self.journal);
        let done = self.block_on(run_treatment(&request, &mut |event| {
            if let RunEvent::Retry { attempt, attempts, error } = event {
                board.line(&format!("  attempt {attempt}/{attempts} failed: {error}; retrying with a new experiment id"));
                journal.append(&serde_json::json!({"event": "retry", "id": id, "attempt": attempt, "error": error}));
            }
        }))?;
        // From here an error keeps the run's files (under failed-runs/) for inspection.
        staging.keep = true;
        if let Liveness::Gone(why) | Liveness::Drifted(why) = self.block_on(backend.check(&receipt))? {
            let failed: u64 = done.outcomes.iter().filter_map(|o| o.tally.as_ref()).map(|t| t.failed).sum();
            let total: u64 = done.outcomes.iter().filter_map(|o| o.tally.as_ref()).map(|t| t.total).sum();
            bail!("the server died during the run ({why}); {failed} of {total} requests failed — not a measurement of the stack");
        }
        if let Some(before) = serving_before {
            let after = self.block_on(backend.incarnation(&receipt))??.unwrap_or_default();
            if after != before {
                let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
                let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
                bail!(
                    "a server was replaced or restarted during the run (before: {}; after: {}) — not a measurement of the stack",
                    gone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        if !done.errors.is_empty() {
            let e = done.errors.join("; ");
            if done.attempts > 1 {
                bail!("failed {} attempts; the last: {e}", done.attempts);
            }
            bail!("{e}");
        }
        let outcome = done.outcomes.first().context("the run started no harness instance")?;
        for w in &done.warnings {
            self.board.warn(&format!("  warning: {w}"));
        }
        let mut outputs = read_dir_files(&outcome.dir)?;
        let dir_name = outcome.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        outputs.insert("eid".into(), dir_name.into_bytes());
        // The rendered profile is an output too: the workspace copy is restored from
        // the cache like the results it produced.
        if let Ok(rel) = prepared.profile_path.strip_prefix(&workspace) {
            outputs.insert(format!("profile:{}", rel.display()), prepared.text.clone().into_bytes());
        }
        // Recorded, the outputs reach results/ from the cache; the staging copy goes.
        staging.keep = false;
        Ok(outputs)
    }

    fn analysis(&self, si: usize, ki: usize, ri: usize) -> Result<Outputs> {
        let (run_id, setup_name, stack_name, treatment, rep, outputs) = {
            let g = self.g();
            let (setup, stack) = (&g.setups[si], &g.setups[si].stacks[ki]);
            let slot = &stack.runs[ri];
            let rec = g.nodes[slot.run].record.as_ref().context("the run has no record")?;
            (g.nodes[slot.run].id.clone(), setup.name.clone(), stack.name.clone(), slot.treatment.clone(), slot.rep, rec.outputs.clone())
        };
        // The same code as `llmd analyze`, on a scratch copy of the run's files.
        let scratch = crate::util::fs::ScratchDir::new("analysis")?;
        for (name, d) in &outputs {
            let Some(file) = name.strip_prefix("file:") else { continue };
            let bytes = self.store.get_blob(d).with_context(|| format!("run output {file} is missing from the cache"))?;
            let path = scratch.path().join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        let config = self.plan_config(si, ki).ok();
        let label = RunLabel { run: &run_id, setup: &setup_name, stack: &stack_name, treatment: &treatment, repetition: rep };
        let harness = self.g().harness;
        analyze_run(scratch.path(), harness, config.as_ref(), &label)
    }

    fn summary(&self) -> Result<Outputs> {
        let blob = |d: Option<&String>, what: &str| -> Result<Vec<u8>> {
            self.store
                .get_blob(d.with_context(|| format!("{what} is not an output"))?)
                .with_context(|| format!("{what} is missing from the cache"))
        };
        let g = self.g();
        // Run treatments with identical inputs share one run: each row names the others.
        let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in g.setups.iter().flat_map(|s| s.stacks.iter().flat_map(|k| &k.runs)) {
            by_key.entry(g.nodes[r.run].key.as_str()).or_default().push(g.nodes[r.run].id.as_str());
        }
        let mut runs = Vec::new();
        for s in &g.setups {
            for r in s.stacks.iter().flat_map(|k| &k.runs) {
                let rec = g.nodes[r.analysis].record.as_ref().context("an analysis has no record")?;
                let run_node = &g.nodes[r.run];
                let results_dir = run_node.record.as_ref().and_then(|run| blob(run.outputs.get("eid"), "eid").ok()).unwrap_or_default();
                let mut provenance = vec![
                    (format!("{} key", run_node.id), run_node.key.clone()),
                    (format!("{} key", g.nodes[r.analysis].id), rec.key.clone()),
                ];
                provenance.extend(run_node.inputs.iter().map(|(k, v)| (format!("run input {k}"), v.clone())));
                let mut reports = Vec::new();
                for (name, d) in &rec.outputs {
                    if let Some(file) = v02_report(name) {
                        reports.push((file.to_string(), blob(Some(d), name)?));
                    }
                }
                let shared_with = by_key[run_node.key.as_str()].iter().filter(|id| **id != run_node.id).map(|id| id.to_string()).collect();
                runs.push(SummaryRun {
                    run: run_node.id.clone(),
                    shared_with,
                    setup: s.name.clone(),
                    treatment: r.treatment.clone(),
                    repetition: r.rep,
                    results_dir: String::from_utf8_lossy(&results_dir).into_owned(),
                    analysis: serde_json::from_slice(&blob(rec.outputs.get("analysis.json"), "analysis.json")?)?,
                    distributions: rec
                        .outputs
                        .get("distributions.json")
                        .and_then(|d| self.store.get_blob(d))
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or_default(),
                    reports,
                    provenance,
                });
            }
        }
        let name = g.experiment.name.clone();
        drop(g);
        summarize(&name, &runs)
    }

    /// Tears down every stack the setup's workspace has receipts for (also after an
    /// interrupt: the teardown itself is not cancelled).
    fn teardown_setup(&self, ws: &Path) {
        for (stack, result) in self.rt.block_on(crate::phases::teardown::teardown_all(self.registry, ws)) {
            match result {
                Ok(what) => self.board.line(&format!("  torn down {stack} ({what})")),
                Err(e) => self
                    .board
                    .warn(&format!("warning: teardown of {stack} failed: {e:#}; `llmd --workspace {} teardown` retries", ws.display())),
            }
        }
    }
}

/// Where a run writes while it runs: `<setup workspace>/.llmd-running/<node>/`. Only a
/// recorded run reaches `results/` (materialized from the cache), so `results/` never
/// holds a partial or failed run that `llmd analyze` would mix in. Dropped, the staging
/// directory is removed — after moving a failed run's files to `failed-runs/` for
/// inspection (`keep`); an interrupted run's simply go. A killed build's are removed by
/// the next build ([`remove_stale_staging`]).
struct Staging {
    dir: std::path::PathBuf,
    failed_to: std::path::PathBuf,
    keep: bool,
}

pub const STAGING_DIR: &str = ".llmd-running";

impl Staging {
    fn new(workspace: &Path, node_id: &str) -> Staging {
        let name: String = node_id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        Staging { dir: workspace.join(STAGING_DIR).join(name), failed_to: workspace.join("failed-runs"), keep: false }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.keep {
            for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let _ = std::fs::create_dir_all(&self.failed_to);
                let to = self.failed_to.join(e.file_name());
                let _ = std::fs::remove_dir_all(&to);
                let _ = std::fs::rename(e.path(), to);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Removes staging directories a killed build left in `workspace` (under its lock).
pub fn remove_stale_staging(workspace: &Path) {
    let _ = std::fs::remove_dir_all(workspace.join(STAGING_DIR));
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
