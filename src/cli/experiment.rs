//! `llmd experiment`: upstream's full cycle per setup treatment — render → standup →
//! smoketest → run (every run treatment) → teardown — then the experiment's summary and
//! `experiment-summary.yaml`.
//!
//! A thin driver over the same executors `llmd build` uses (`phases::*`): each setup
//! treatment works in its own `<workspace>/setup-treatment-<name>/` (plan, receipts,
//! logs, results), every run is analysed, and the results layout, benchmark reports and
//! summary are the build's. Unlike a build it is not incremental: every invocation
//! redeploys every stack (upstream's semantics) and records nothing in the cache.
//! Teardown always runs, after failures too, unless `--skip-teardown`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::lifecycle::{check_stack_filter, harness_and_workload, parse_overrides, render_stacks, runtime};
use super::{CommonArgs, GlobalArgs, exit, print_warnings};
use crate::backend::{Access, Receipt, Registry};
use crate::error::Warnings;
use crate::experiment::{Experiment, RunTreatment, SetupTreatment, default_setup, load_experiment};
use crate::harness::external::HarnessKind;
use crate::harness::profile::find_profile;
use crate::phases::StackEntry;
use crate::phases::analysis::{RunLabel, analyze_run, v02_report, workspace_path};
use crate::phases::run::{ProfileJob, RunEvent, RunRequest, one_line, profile_values, run_treatment};
use crate::phases::summary::{SummaryRun, summarize};
use crate::yaml::{Node, Value, map_of};

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Experiments file: `setup:` treatments (scenario overrides) and run `treatments:`.
    /// Without one: a single `default` setup treatment and the profile as it is.
    #[arg(short = 'e', long, value_name = "FILE")]
    pub experiments: Option<PathBuf>,
    /// Harness (default: the file's experiment.harness, else the scenario's harness.name).
    #[arg(short = 'l', long, env = "LLMDBENCH_HARNESS", value_name = "HARNESS")]
    pub harness: Option<String>,
    /// Workload profile (default: the file's experiment.profile, else the scenario's).
    #[arg(short = 'w', long, env = "LLMDBENCH_WORKLOAD", value_name = "PROFILE")]
    pub workload: Option<String>,
    /// Profile overrides `dotted.key=value,...`, applied to every run treatment.
    #[arg(short = 'o', long = "overrides", value_name = "K=V,...")]
    pub overrides: Vec<String>,
    /// Harness instances per run treatment.
    #[arg(short = 'j', long, default_value_t = 1, value_name = "N")]
    pub parallelism: usize,
    /// Stacks stood up, smoketested and torn down at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Leave the stacks running after their runs.
    #[arg(long)]
    pub skip_teardown: bool,
    /// Stop at the first failed setup treatment (default: record it and go on).
    #[arg(long)]
    pub stop_on_error: bool,
    /// Attempts per run treatment before it counts as failed; each retry gets a new
    /// experiment id and the failed attempt's results are removed (default: the file's
    /// `treatment_max_attempts`, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Accepted for compatibility: every run is analysed (benchmark reports beside its
    /// results, `analysis/<run>.json`) and the experiment summarised (`summary.*`,
    /// `report.html`), as `llmd build` does.
    #[arg(long)]
    pub analyze: bool,
    /// A local tokenizer for external harnesses.
    #[arg(long, env = "LLMD_TOKENIZER", value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Longest one harness run may take: 3600, 90m, 2h (a bare number is seconds).
    #[arg(long, default_value_t = 3600, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub harness_timeout: u64,
}

/// How one setup treatment ended.
struct Outcome {
    name: String,
    status: String,
    run_treatments: String,
    duration: Duration,
    workspace: PathBuf,
    error: Option<String>,
}

/// A failed stage of a setup treatment: upstream's status name and the error.
type Failure = (&'static str, String);

fn fail(status: &'static str) -> impl Fn(anyhow::Error) -> Failure {
    move |e| (status, format!("{e:#}"))
}

/// The experiment file (or a default single setup), and the run treatments with `-o`.
fn load(global: &GlobalArgs, args: &ExperimentArgs) -> Result<(Experiment, Vec<RunTreatment>)> {
    let experiment = match &args.experiments {
        Some(path) => load_experiment(path)?,
        None => Experiment {
            name: global.require_spec()?.replace('/', "-"),
            spec: None,
            harness: None,
            profile: None,
            setup: vec![default_setup()],
            run: Vec::new(),
            repeat: 1,
            repeat_seed_same: false,
            max_attempts: 1,
            max_failure_fraction: None,
            stop_on_error: false,
            isolation: None,
        },
    };
    let mut run_treatments = experiment.run.clone();
    let overrides = parse_overrides(&args.overrides)?;
    if run_treatments.is_empty() {
        let name = if overrides.is_empty() { "default" } else { "override" };
        run_treatments.push(RunTreatment { name: name.into(), profile: None, values: Vec::new() });
    }
    for t in &mut run_treatments {
        t.values.extend(overrides.iter().cloned());
    }
    Ok((experiment, run_treatments))
}

pub fn run(global: &GlobalArgs, args: &ExperimentArgs) -> Result<ExitCode> {
    let (experiment, run_treatments) = load(global, args)?;
    // `--backend` and `--non-admin` are checked before any setup starts (exit 2).
    let registry = global.registry();
    registry.get(&registry.name_for(&Node::null()))?;
    let started = Instant::now();
    let total_runs = run_treatments.len();
    let mut driver =
        Driver { global, args, experiment: &experiment, run_treatments: &run_treatments, registry, rt: runtime()?, summary: Vec::new() };
    eprintln!(
        "experiment {}: {} setup treatment(s) x {total_runs} run treatment(s) = {}",
        experiment.name,
        experiment.setup.len(),
        experiment.setup.len() * total_runs
    );
    let mut outcomes = Vec::new();
    for setup in &experiment.setup {
        let outcome = driver.setup(setup);
        let failed = outcome.error.is_some();
        outcomes.push(outcome);
        if failed && (args.stop_on_error || experiment.stop_on_error) {
            eprintln!("stopping at the first failed setup treatment (--stop-on-error)");
            break;
        }
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let root = global.workspace_dir();
    if !global.dry_run {
        if !driver.summary.is_empty() {
            for (name, bytes) in summarize(&experiment.name, &driver.summary)? {
                crate::util::fs::write_atomic(&root.join(&name), &bytes)?;
            }
            eprintln!("report: {}", root.join("report.html").display());
        }
        let path = write_summary(&root, &experiment, total_runs, &outcomes, started.elapsed())?;
        eprintln!("summary: {}", path.display());
    }
    eprintln!("experiment {}: {} succeeded, {failed} failed in {:.1?}", experiment.name, outcomes.len() - failed, started.elapsed());
    Ok(ExitCode::from(if failed == 0 { exit::SUCCESS } else { exit::FAILURE }))
}

/// Walks the setup treatments through the executors.
struct Driver<'a> {
    global: &'a GlobalArgs,
    args: &'a ExperimentArgs,
    experiment: &'a Experiment,
    run_treatments: &'a [RunTreatment],
    registry: Arc<Registry>,
    rt: tokio::runtime::Runtime,
    /// Every analysed run, for the experiment's summary.
    summary: Vec<SummaryRun>,
}

/// One stack as the driver carries it from standup to its runs, connected once.
struct Deployed {
    stack: Arc<StackEntry>,
    receipt: Receipt,
    access: Access,
}

/// What every run of one setup treatment shares.
struct SetupRun<'a> {
    setup: &'a SetupTreatment,
    ws: &'a Path,
    harness: HarnessKind,
    workload: &'a str,
}

impl Driver<'_> {
    /// One setup treatment's whole cycle, teardown included.
    fn setup(&mut self, setup: &SetupTreatment) -> Outcome {
        let ws = self.global.workspace_dir().join(format!("setup-treatment-{}", setup.name));
        eprintln!("== setup treatment {} ({})", setup.name, ws.display());
        let t0 = Instant::now();
        let total = self.run_treatments.len();
        let mut outcome = Outcome {
            name: setup.name.clone(),
            status: "success".into(),
            run_treatments: format!("0/{total}"),
            duration: Duration::ZERO,
            workspace: ws.clone(),
            error: None,
        };
        match self.cycle(setup, &ws) {
            Ok(done) => outcome.run_treatments = format!("{done}/{total}"),
            Err((status, error)) => {
                outcome.status = status.into();
                outcome.error = Some(error);
            }
        }
        if !self.args.skip_teardown
            && !self.global.dry_run
            && let Err(e) = self.teardown(&ws)
            && outcome.error.is_none()
        {
            outcome.status = "failed_teardown".into();
            outcome.error = Some(format!("{e:#}"));
        }
        outcome.duration = t0.elapsed();
        eprintln!(
            "== setup treatment {}: {} ({} run treatments) in {:.1?}",
            outcome.name, outcome.status, outcome.run_treatments, outcome.duration
        );
        outcome
    }

    /// Render, stand up, smoketest and run; the number of run treatments that succeeded.
    fn cycle(&mut self, setup: &SetupTreatment, ws: &Path) -> Result<usize, Failure> {
        let mut warnings = Warnings::default();
        let mut opts = self.global.plan_options(&self.args.common, &mut warnings).map_err(fail("failed_render"))?;
        print_warnings(&warnings);
        if setup.overrides.as_map().is_some_and(|m| !m.is_empty()) {
            opts.setup_overrides = Some(setup.overrides.clone());
        }
        let stacks = render_stacks(&opts, ws, !self.global.dry_run).map_err(fail("failed_render"))?;
        check_stack_filter(&self.args.common, &stacks).map_err(fail("failed_render"))?;
        let stacks: Vec<Arc<StackEntry>> =
            stacks.into_iter().filter(|s| self.args.common.stack.is_empty() || self.args.common.stack.contains(&s.name)).collect();
        let (harness, workload) = harness_and_workload(
            &stacks,
            self.args.harness.as_deref().or(self.experiment.harness.as_deref()),
            self.args.workload.as_deref().or(self.experiment.profile.as_deref()),
        )
        .map_err(fail("failed_render"))?;
        let deployed = self.standup(&stacks, ws).map_err(fail("failed_standup"))?;
        if self.global.dry_run {
            return Ok(0);
        }
        self.smoketest(&deployed).map_err(fail("failed_smoketest"))?;
        let cx = SetupRun { setup, ws, harness, workload: &workload };
        let mut done = 0;
        let mut errors = Vec::new();
        for t in self.run_treatments {
            let mut ok = true;
            for d in &deployed {
                if let Err(e) = self.run_one(&cx, d, t) {
                    errors.push(format!("treatment {} [{}]: {e:#}", t.name, d.stack.name));
                    ok = false;
                }
            }
            done += usize::from(ok);
        }
        if errors.is_empty() { Ok(done) } else { Err(("failed_run", errors.join("\n"))) }
    }

    /// Redeploys every stack (`--parallel` at once) and returns their receipts.
    fn standup(&self, stacks: &[Arc<StackEntry>], ws: &Path) -> Result<Vec<Deployed>> {
        let mut out = Vec::new();
        for chunk in stacks.chunks(self.args.parallel.max(1)) {
            let work = chunk.iter().map(|stack| async move {
                let target = stack.target()?;
                let backend = self.registry.for_config(&stack.config)?;
                backend.preflight(&target)?;
                if self.global.dry_run {
                    eprintln!("  [dry-run] [{}] would start {}", stack.name, backend.describe(&target));
                    return Ok(None);
                }
                eprintln!("  [{}] starting {} replica(s) of {}", stack.name, target.replicas, target.model);
                let receipt = crate::phases::standup::deploy(&self.registry, backend.as_ref(), ws, &target, &stack.plan_digest).await?;
                let access = backend.connect(&receipt).await?;
                eprintln!("  [{}] serving at {} ({})", stack.name, access.primary(), backend.summary(&receipt));
                Ok::<_, anyhow::Error>(Some(Deployed { stack: stack.clone(), receipt, access }))
            });
            for r in self.rt.block_on(crate::util::join::join_all(work)) {
                out.extend(r?);
            }
        }
        Ok(out)
    }

    fn smoketest(&self, deployed: &[Deployed]) -> Result<()> {
        for chunk in deployed.chunks(self.args.parallel.max(1)) {
            let work = chunk.iter().map(|d| async move {
                let lines = crate::phases::smoketest::smoketest(&d.access, &d.receipt, &d.stack.config, &d.stack.plan_digest).await;
                lines.with_context(|| format!("stack '{}'", d.stack.name))
            });
            for (d, r) in chunk.iter().zip(self.rt.block_on(crate::util::join::join_all(work))) {
                for line in r? {
                    eprintln!("  [{}] {line}", d.stack.name);
                }
            }
        }
        Ok(())
    }

    /// One run treatment on one stack: render its profile, run it with retries, analyse
    /// every instance's results.
    fn run_one(&mut self, cx: &SetupRun, d: &Deployed, t: &RunTreatment) -> Result<()> {
        let (harness, access) = (cx.harness, &d.access);
        let stack = &d.stack.name;
        let max_len = d.stack.config.get_path(&["model", "maxModelLen"]).map(crate::yaml::str_node);
        let values = profile_values(stack, &d.receipt.model, max_len, access.harness_endpoint());
        let source = find_profile(&self.global.trees()?.profile_roots(), harness.name(), t.profile.as_deref().unwrap_or(cx.workload))?;
        let text = std::fs::read_to_string(&source).with_context(|| format!("cannot read profile {}", source.display()))?;
        let out_dir = cx.ws.join("workload/profiles").join(harness.name()).join(stack);
        let job = ProfileJob {
            harness,
            source: &source,
            text: &text,
            values: &values,
            treatment: Some(&t.name),
            overrides: &t.values,
            out_dir: &out_dir,
        };
        let mut warnings = Warnings::default();
        let prepared = job.prepare(true, &mut warnings)?;
        print_warnings(&warnings);
        let results = cx.ws.join("results");
        let request = RunRequest {
            harness,
            run: &prepared,
            endpoint: access.primary(),
            model: &d.receipt.model,
            stack,
            deployment: &d.receipt.deployment,
            results: &results,
            instances: 1..=self.args.parallelism.max(1),
            tokenizer: self.args.tokenizer.as_deref(),
            timeout: Duration::from_secs(self.args.harness_timeout.max(1)),
            quiet: !self.global.verbose,
            max_attempts: self.args.max_attempts.map_or(self.experiment.max_attempts, |n| n as usize),
            max_failure_fraction: self.experiment.max_failure_fraction.unwrap_or(crate::phases::run::DEFAULT_MAX_FAILURE_FRACTION),
            launcher: access.launcher.as_deref(),
            isolation: Some("exclusive"),
        };
        let done = self.rt.block_on(run_treatment(&request, &mut |event| match event {
            RunEvent::Attempt { attempt, attempts, eid } => {
                let of = if attempts > 1 { format!(", attempt {attempt}/{attempts}") } else { String::new() };
                eprintln!(
                    "  [{stack}] treatment {}: {} against {} (experiment {eid}{of})",
                    t.name,
                    harness.name(),
                    access.harness_endpoint()
                );
            }
            RunEvent::Retry { attempt, attempts, error } => {
                eprintln!("  [{stack}] treatment {} failed (attempt {attempt}/{attempts}): {error}; retrying", t.name)
            }
        }));
        anyhow::ensure!(done.errors.is_empty(), "{}", done.errors.join("; "));
        for w in &done.warnings {
            eprintln!("  [{stack}] warning: treatment {}: {w}", t.name);
        }
        for (i, o) in done.outcomes.iter().enumerate() {
            if let Some(r) = &o.report {
                eprintln!("  [{stack}]   {}: {}", t.name, one_line(r));
            }
            self.analyze(cx, d, t, i + 1, &o.dir)?;
        }
        Ok(())
    }

    /// The analysis executor on a results directory, its outputs placed as a build
    /// places them, and the run remembered for the summary.
    fn analyze(&mut self, cx: &SetupRun, d: &Deployed, t: &RunTreatment, instance: usize, dir: &Path) -> Result<()> {
        let setup = cx.setup;
        let run_id = format!("run/{}/{}/{}#{instance}", setup.name, d.stack.name, t.name);
        let label = RunLabel { run: &run_id, setup: &setup.name, stack: &d.stack.name, treatment: &t.name, repetition: instance };
        let outputs = analyze_run(dir, cx.harness, Some(&d.stack.config), &label)?;
        let results_dir = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (name, bytes) in &outputs {
            if let Some(path) = workspace_path(cx.ws, &results_dir, name) {
                crate::util::fs::write_atomic(&path, bytes)?;
            }
        }
        let reports = outputs.iter().filter_map(|(n, b)| v02_report(n).map(|f| (f.to_string(), b.clone()))).collect();
        self.summary.push(SummaryRun {
            run: run_id.clone(),
            shared_with: Vec::new(),
            setup: setup.name.clone(),
            treatment: t.name.clone(),
            repetition: instance,
            results_dir,
            analysis: serde_json::from_slice(&outputs["analysis.json"])?,
            distributions: serde_json::from_slice(&outputs["distributions.json"])?,
            reports,
            provenance: vec![("deployment".into(), d.receipt.deployment.clone()), ("plan".into(), d.receipt.plan_digest.clone())],
        });
        Ok(())
    }

    /// Tears down everything the setup's receipts list.
    fn teardown(&self, ws: &Path) -> Result<()> {
        let mut errors = Vec::new();
        for chunk in Receipt::load_all(ws)?.chunks(self.args.parallel.max(1)) {
            let work = chunk.iter().map(|r| crate::phases::teardown::teardown(&self.registry, ws, r));
            for (r, done) in chunk.iter().zip(self.rt.block_on(crate::util::join::join_all(work))) {
                match done {
                    Ok(what) => eprintln!("  [{}] torn down ({what})", r.stack),
                    Err(e) => errors.push(format!("stack '{}': {e:#}", r.stack)),
                }
            }
        }
        anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
        Ok(())
    }
}

fn write_summary(root: &Path, experiment: &Experiment, total_runs: usize, outcomes: &[Outcome], elapsed: Duration) -> Result<PathBuf> {
    let float = |x: f64| Node::bare(Value::Float((x * 1000.0).round() / 1000.0));
    let int = |x: usize| Node::bare(Value::Int(x as i64));
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let treatments: Vec<Node> = outcomes
        .iter()
        .map(|o| {
            map_of([
                ("setup_treatment", Node::str(&o.name)),
                ("status", Node::str(&o.status)),
                ("run_treatments", Node::str(&o.run_treatments)),
                ("duration_seconds", float(o.duration.as_secs_f64())),
                ("workspace_dir", Node::str(o.workspace.display().to_string())),
                ("error", o.error.as_deref().map_or_else(Node::null, Node::str)),
            ])
        })
        .collect();
    let doc = map_of([
        ("experiment", Node::str(&experiment.name)),
        ("total_setup_treatments", int(experiment.setup.len())),
        ("total_run_treatments", int(total_runs)),
        ("total_matrix", int(experiment.setup.len() * total_runs)),
        ("succeeded", int(outcomes.len() - failed)),
        ("failed", int(failed)),
        ("total_duration_seconds", float(elapsed.as_secs_f64())),
        ("treatments", Node::bare(Value::Seq(treatments))),
    ]);
    let path = root.join("experiment-summary.yaml");
    std::fs::create_dir_all(root)?;
    crate::util::fs::write_atomic(
        &path,
        crate::yaml::dump(&doc, crate::yaml::DumpOptions { sort_keys: false, literal_multiline: false }).as_bytes(),
    )?;
    Ok(path)
}
