//! Executing a decided graph: per setup treatment, plans → standups → smoketests →
//! runs → analyses → teardown (unless `--keep-stacks`), then the summary. Every node
//! body is a call to its executor in [`crate::phases`]; this module adds what the cache
//! needs around it:
//!
//! incomplete marker (nodes with effects) → work → blobs → record → node pointers →
//! journal, then the node's outputs are published into the workspace.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::build::{BuildOptions, NodeReport, NodeStatus};
use super::decide::Graph;
use super::graph::Decision;
use super::materialize::{self, Materializer};
use super::reason::Reason;
use crate::backend::{Receipt, Registry};
use crate::error::Warnings;
use crate::phases::analysis::{RunLabel, analyze_run, v02_report};
use crate::phases::run::{ProfileJob, RunEvent, RunRequest, profile_values, run_treatment};
use crate::phases::summary::{SummaryRun, summarize};
use crate::store::{Journal, Record, Status, Store, unix_now};

/// Result of executing one node: outputs (name → bytes).
type Outputs = BTreeMap<String, Vec<u8>>;

pub struct Executor<'a> {
    pub opts: &'a BuildOptions,
    pub store: &'a Store,
    pub graph: &'a mut Graph,
    pub registry: &'a Registry,
    pub rt: &'a tokio::runtime::Runtime,
    pub reports: &'a mut Vec<Option<NodeReport>>,
    pub journal: &'a Journal,
    pub mat: Materializer,
    /// A node failed and `--keep-going` is off.
    pub stop: bool,
    /// Nodes decided to run, and how many have started (for `[k/n]` progress).
    pub to_run: usize,
    pub started_nodes: usize,
}

impl Executor<'_> {
    pub fn run_all(&mut self) {
        for si in 0..self.graph.setups.len() {
            self.run_setup(si);
        }
        let summary = self.graph.summary;
        if self.graph.nodes[summary].runs() {
            let blocked = self.graph.analyses().into_iter().any(|a| {
                self.reports[a].as_ref().is_some_and(|r| r.status != NodeStatus::Ran)
                    || (self.reports[a].is_none() && self.graph.nodes[a].runs())
            });
            if blocked {
                self.skip(summary, "some analyses did not finish");
            } else if !self.stop {
                // The key covers the analyses' outputs, known only now.
                for a in self.graph.analyses() {
                    let out = self.graph.nodes[a].record.as_ref().map(Record::outputs_digest);
                    let id = format!("analysis:{}", self.graph.nodes[a].id);
                    self.graph.nodes[summary].inputs.insert(id, out.unwrap_or_default());
                }
                self.graph.nodes[summary].rekey();
                self.execute(summary, |ex| ex.summary());
            }
        }
        materialize::publish_summary(&mut self.mat, self.store, self.graph, &self.opts.workspace);
        materialize::finish(&mut self.mat, self.graph);
    }

    fn skip(&mut self, idx: usize, why: &str) {
        let n = &self.graph.nodes[idx];
        let reason = match &n.decision {
            Decision::Run(r) => Some(r.clone()),
            _ => None,
        };
        self.journal.append(&serde_json::json!({"event": "skip", "id": n.id, "why": why}));
        self.reports[idx] = Some(NodeReport::new(n, NodeStatus::Skipped, reason, Some(why.into()), 0.0));
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
        let outcome = self.record(idx, &result, started_unix, seconds);
        let (status, detail) = match (&result, outcome) {
            (Ok(_), Ok(rec)) => {
                self.mat.forget(&rec.key);
                self.graph.nodes[idx].record = Some(rec);
                (NodeStatus::Ran, None)
            }
            (Err(e), _) => (NodeStatus::Failed, Some(format!("{e:#}"))),
            (Ok(_), Err(e)) => (NodeStatus::Failed, Some(format!("could not record the result: {e:#}"))),
        };
        if self.opts.human {
            match &detail {
                None => eprintln!("✔ {id}  ({seconds:.1} s)"),
                Some(d) => eprintln!("✘ {id}  failed after {seconds:.1} s: {d}"),
            }
        }
        self.journal.write(&serde_json::json!({"event": "done", "id": id, "status": status, "seconds": seconds, "error": detail}));
        self.reports[idx] = Some(NodeReport::new(&self.graph.nodes[idx], status, Some(reason), detail, seconds));
        if status == NodeStatus::Failed && !self.opts.keep_going {
            self.stop = true;
        }
        status == NodeStatus::Ran
    }

    /// Blobs first (made durable together), then the record that names them.
    fn record(&self, idx: usize, result: &Result<Outputs>, started_unix: f64, seconds: f64) -> Result<Record> {
        let node = &self.graph.nodes[idx];
        let manifest = node.manifest(self.store)?;
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
            key: node.key.clone(),
            id: node.id.clone(),
            kind: node.kind.name().into(),
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

    fn run_setup(&mut self, si: usize) {
        let mut touched = false;
        for ki in 0..self.graph.setups[si].stacks.len() {
            let plan = self.graph.setups[si].stacks[ki].plan;
            if self.graph.nodes[plan].runs() && !self.stop {
                let rendered = self.graph.renders.get(&plan).cloned();
                self.execute(plan, move |_| rendered.context("internal error: the plan was not rendered while deciding")?.outputs());
            }
            materialize::publish_plan(&mut self.mat, self.store, self.graph, si, ki);
        }
        for ki in 0..self.graph.setups[si].stacks.len() {
            if self.stop {
                break;
            }
            touched |= self.run_stack(si, ki);
            materialize::publish_runs(&mut self.mat, self.store, self.graph, si, ki);
        }
        if touched && !self.opts.keep_stacks {
            let ws = self.graph.setups[si].workspace.clone();
            self.teardown_setup(&ws);
        }
    }

    /// A stack's standup, smoketest, runs and analyses; true when it was stood up (or
    /// reused) for runs.
    fn run_stack(&mut self, si: usize, ki: usize) -> bool {
        let stack = &self.graph.setups[si].stacks[ki];
        let (standup, smoke) = (stack.standup, stack.smoketest);
        let slots: Vec<(usize, usize)> = stack.runs.iter().map(|r| (r.run, r.analysis)).collect();
        let needed = slots.iter().any(|&(r, _)| self.graph.nodes[r].runs()) || self.graph.nodes[standup].runs();
        if needed {
            if self.graph.nodes[standup].runs() && !self.execute(standup, |ex| ex.standup(si, ki)) {
                self.skip_all(std::iter::once(smoke).chain(slots.iter().flat_map(|&(r, a)| [r, a])), "its deployment failed");
                return true;
            }
            if self.graph.nodes[smoke].runs() && !self.stop && !self.execute(smoke, |ex| ex.smoketest(si, ki)) {
                self.skip_all(slots.iter().flat_map(|&(r, a)| [r, a]), "its smoketest failed");
                return true;
            }
        }
        // Runs fresh and analyses stale (forced, or a new analysis version) analyse the
        // cached runs without anything stood up.
        for (ri, &(run, analysis)) in slots.iter().enumerate() {
            if self.graph.nodes[run].runs() {
                if self.stop {
                    break;
                }
                if !self.execute(run, |ex| ex.run(si, ki, ri)) {
                    self.skip(analysis, "its run failed");
                    continue;
                }
                // The analysis key covers the run's outputs, known only now.
                let outputs = self.graph.nodes[run].record.as_ref().map(Record::outputs_digest);
                self.graph.nodes[analysis].inputs.insert("run".into(), outputs.unwrap_or_default());
                self.graph.nodes[analysis].rekey();
            }
            if self.graph.nodes[analysis].runs() && !self.stop {
                self.execute(analysis, |ex| ex.analysis(si, ki, ri));
            }
        }
        needed
    }

    fn skip_all(&mut self, nodes: impl Iterator<Item = usize>, why: &str) {
        for idx in nodes.collect::<Vec<_>>() {
            if self.graph.nodes[idx].runs() {
                self.skip(idx, why);
            }
        }
    }

    /// The stack's plan record's `config.yaml`, parsed.
    fn plan_config(&self, si: usize, ki: usize) -> Result<crate::yaml::Node> {
        let stack = &self.graph.setups[si].stacks[ki];
        let plan = self.graph.nodes[stack.plan].record.as_ref().context("the plan has no record")?;
        let text =
            plan.outputs.get("config.yaml").and_then(|d| self.store.get_blob(d)).context("the plan's config.yaml is not in the cache")?;
        Ok(crate::yaml::load_str(&String::from_utf8_lossy(&text), "config.yaml")?)
    }

    /// The rendered plan's digest: the plan rendered in this build knows it; a cached
    /// plan's is computed from its record's manifests and config.
    fn plan_digest(&self, si: usize, ki: usize) -> Result<String> {
        let stack = &self.graph.setups[si].stacks[ki];
        if let Some(plan) = self.graph.renders.get(&stack.plan) {
            return Ok(plan.plan_digest.clone());
        }
        let rec = self.graph.nodes[stack.plan].record.as_ref().context("the plan has no record")?;
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

    fn standup(&mut self, si: usize, ki: usize) -> Result<Outputs> {
        let plan_digest = self.plan_digest(si, ki)?;
        let setup = &self.graph.setups[si];
        let stack = &setup.stacks[ki];
        let backend = self.registry.get(&stack.backend)?;
        backend.preflight(&stack.target)?;
        let deploy = crate::phases::standup::deploy(self.registry, backend.as_ref(), &setup.workspace, &stack.target, &plan_digest);
        let receipt = self.rt.block_on(deploy)?;
        Ok(BTreeMap::from([("receipt".to_string(), serde_json::to_vec_pretty(&receipt)?)]))
    }

    fn receipt(&self, si: usize, ki: usize) -> Result<Receipt> {
        let setup = &self.graph.setups[si];
        Receipt::load(&setup.workspace, &setup.stacks[ki].name)?.context("no receipt: the stack is not stood up")
    }

    fn smoketest(&mut self, si: usize, ki: usize) -> Result<Outputs> {
        let receipt = self.receipt(si, ki)?;
        let config = self.plan_config(si, ki)?;
        let lines = self.rt.block_on(async {
            let access = self.registry.get(&receipt.backend)?.connect(&receipt).await?;
            // The deployment key was checked while deciding; no plan digest to compare.
            crate::phases::smoketest::smoketest(&access, &receipt, &config, "").await
        })?;
        Ok(BTreeMap::from([("smoketest.txt".to_string(), lines.join("\n").into_bytes())]))
    }

    /// One run node: the run executor with the profile text its key was computed from,
    /// up to `treatment_max_attempts` attempts, one harness instance into
    /// `results/<experiment-id>_<rep>/`.
    fn run(&mut self, si: usize, ki: usize, ri: usize) -> Result<Outputs> {
        let receipt = self.receipt(si, ki)?;
        let setup = &self.graph.setups[si];
        let stack = &setup.stacks[ki];
        let slot = &stack.runs[ri];
        let harness = self.graph.harness;
        let access = self.rt.block_on(self.registry.get(&receipt.backend)?.connect(&receipt))?;
        let endpoint = access.primary().to_string();
        let values =
            profile_values(&stack.name, &stack.target.model, stack.target.max_model_len.map(|l| l.to_string()), access.harness_endpoint());
        let out_dir = setup.workspace.join("workload/profiles").join(harness.name()).join(&stack.name);
        let job = ProfileJob {
            harness,
            source: &slot.profile_path,
            text: &slot.profile_text,
            values: &values,
            treatment: Some(&slot.treatment),
            overrides: &slot.overrides,
            out_dir: &out_dir,
        };
        let prepared = job.prepare(true, &mut Warnings::default())?;
        let results = setup.workspace.join("results");
        let request = RunRequest {
            harness,
            run: &prepared,
            endpoint: &endpoint,
            model: &receipt.model,
            stack: &stack.name,
            deployment: &receipt.deployment,
            results: &results,
            instances: slot.rep..=slot.rep,
            tokenizer: self.opts.tokenizer.as_deref(),
            timeout: self.opts.harness_timeout,
            quiet: !self.opts.verbose,
            max_attempts: self.graph.experiment.max_attempts,
            launcher: access.launcher.as_deref(),
        };
        let (human, journal, id) = (self.opts.human, self.journal, &self.graph.nodes[slot.run].id);
        let done = self.rt.block_on(run_treatment(&request, &mut |event| {
            if let RunEvent::Retry { attempt, attempts, error } = event {
                if human {
                    eprintln!("  attempt {attempt}/{attempts} failed: {error}; retrying with a new experiment id");
                }
                journal.append(&serde_json::json!({"event": "retry", "id": id, "attempt": attempt, "error": error}));
            }
        }));
        if !done.errors.is_empty() {
            let e = done.errors.join("; ");
            if done.attempts > 1 {
                bail!("failed {} attempts; the last: {e}", done.attempts);
            }
            bail!("{e}");
        }
        let outcome = done.outcomes.first().context("the run started no harness instance")?;
        for w in &done.warnings {
            eprintln!("  warning: {w}");
        }
        let mut outputs = read_dir_files(&outcome.dir)?;
        let dir_name = outcome.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        outputs.insert("eid".into(), dir_name.into_bytes());
        Ok(outputs)
    }

    fn analysis(&mut self, si: usize, ki: usize, ri: usize) -> Result<Outputs> {
        let setup = &self.graph.setups[si];
        let stack = &setup.stacks[ki];
        let slot = &stack.runs[ri];
        let rec = self.graph.nodes[slot.run].record.as_ref().context("the run has no record")?;
        // The same code as `llmd analyze`, on a scratch copy of the run's files.
        let scratch = crate::util::fs::ScratchDir::new("analysis")?;
        for (name, d) in &rec.outputs {
            let Some(file) = name.strip_prefix("file:") else { continue };
            let bytes = self.store.get_blob(d).with_context(|| format!("run output {file} is missing from the cache"))?;
            let path = scratch.path().join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        let config = self.plan_config(si, ki).ok();
        let label = RunLabel {
            run: &self.graph.nodes[slot.run].id,
            setup: &setup.name,
            stack: &stack.name,
            treatment: &slot.treatment,
            repetition: slot.rep,
        };
        analyze_run(scratch.path(), self.graph.harness, config.as_ref(), &label)
    }

    fn summary(&mut self) -> Result<Outputs> {
        let blob = |d: Option<&String>, what: &str| -> Result<Vec<u8>> {
            self.store
                .get_blob(d.with_context(|| format!("{what} is not an output"))?)
                .with_context(|| format!("{what} is missing from the cache"))
        };
        let mut runs = Vec::new();
        for s in &self.graph.setups {
            for r in s.stacks.iter().flat_map(|k| &k.runs) {
                let rec = self.graph.nodes[r.analysis].record.as_ref().context("an analysis has no record")?;
                let run_node = &self.graph.nodes[r.run];
                let results_dir = run_node.record.as_ref().and_then(|run| blob(run.outputs.get("eid"), "eid").ok()).unwrap_or_default();
                let mut provenance = vec![
                    (format!("{} key", run_node.id), run_node.key.clone()),
                    (format!("{} key", self.graph.nodes[r.analysis].id), rec.key.clone()),
                ];
                provenance.extend(run_node.inputs.iter().map(|(k, v)| (format!("run input {k}"), v.clone())));
                let mut reports = Vec::new();
                for (name, d) in &rec.outputs {
                    if let Some(file) = v02_report(name) {
                        reports.push((file.to_string(), blob(Some(d), name)?));
                    }
                }
                runs.push(SummaryRun {
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
        summarize(&self.graph.experiment.name, &runs)
    }

    fn teardown_setup(&mut self, ws: &Path) {
        for r in Receipt::load_all(ws).unwrap_or_default() {
            match self.rt.block_on(crate::phases::teardown::teardown(self.registry, ws, &r)) {
                Ok(what) if self.opts.human => eprintln!("  torn down {} ({what})", r.stack),
                Ok(_) => {}
                Err(e) => eprintln!("warning: teardown of {} failed: {e:#}; `llmd --workspace {} teardown` retries", r.stack, ws.display()),
            }
        }
    }
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
