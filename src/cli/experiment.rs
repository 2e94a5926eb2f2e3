//! `llmd experiment`: upstream's full cycle per setup treatment — render → standup →
//! smoketest → run (every run treatment) → teardown — and `experiment-summary.yaml`.
//!
//! Each setup treatment works in its own `<workspace>/setup-treatment-<name>/` (plan,
//! receipts, logs, results). Teardown always runs, after failures too, unless
//! `--skip-teardown`. This is the non-incremental cycle: every invocation redoes all of
//! it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use super::lifecycle::{
    check_stack_filter, harness_and_workload, parse_overrides, receipt_stacks, render_stacks, run_phase, runtime, settings,
};
use super::{CommonArgs, GlobalArgs, exit, print_warnings};
use crate::backend::Backend;
use crate::backend::local::LocalBackend;
use crate::error::Warnings;
use crate::experiment::{Experiment, RunTreatment, default_setup, load_experiment};
use crate::phases::run::RunSettings;
use crate::phases::{Phase, PhaseContext};
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
    /// Stacks handled at once in each phase.
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
    /// Summarise each setup treatment's results (<its workspace>/analysis).
    #[arg(long)]
    pub analyze: bool,
    /// A local tokenizer for external harnesses.
    #[arg(long, env = "LLMD_TOKENIZER", value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Longest one harness run may take, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
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

pub fn run(global: &GlobalArgs, args: &ExperimentArgs) -> Result<ExitCode> {
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
            max_attempts: 1,
            stop_on_error: false,
        },
    };
    let mut run_treatments = experiment.run.clone();
    let overrides = parse_overrides(&args.overrides)?;
    if run_treatments.is_empty() && !overrides.is_empty() {
        run_treatments.push(RunTreatment { name: "override".into(), profile: None, values: Vec::new() });
    }
    for t in &mut run_treatments {
        t.values.extend(overrides.iter().cloned());
    }
    let total_runs = run_treatments.len().max(1);
    let started = Instant::now();
    let root = global.workspace_dir();
    let rt = runtime()?;
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new()?);
    eprintln!(
        "experiment {}: {} setup treatment(s) x {} run treatment(s) = {}",
        experiment.name,
        experiment.setup.len(),
        total_runs,
        experiment.setup.len() * total_runs
    );
    let mut outcomes = Vec::new();
    for setup in &experiment.setup {
        let ws = root.join(format!("setup-treatment-{}", setup.name));
        eprintln!("== setup treatment {} ({})", setup.name, ws.display());
        let t0 = Instant::now();
        let mut outcome = Outcome {
            name: setup.name.clone(),
            status: "success".into(),
            run_treatments: format!("0/{total_runs}"),
            duration: Duration::ZERO,
            workspace: ws.clone(),
            error: None,
        };
        let result = (|| -> Result<(), (&'static str, String)> {
            let mut warnings = Warnings::default();
            let mut opts = global.plan_options(&args.common, &mut warnings).map_err(|e| ("failed_render", format!("{e:#}")))?;
            print_warnings(&warnings);
            if setup.overrides.as_map().is_some_and(|m| !m.is_empty()) {
                opts.setup_overrides = Some(setup.overrides.clone());
            }
            let stacks = render_stacks(&opts, &ws, !global.dry_run).map_err(|e| ("failed_render", format!("{e:#}")))?;
            check_stack_filter(&args.common, &stacks).map_err(|e| ("failed_render", format!("{e:#}")))?;
            let (harness, workload) = harness_and_workload(
                &stacks,
                args.harness.as_deref().or(experiment.harness.as_deref()),
                args.workload.as_deref().or(experiment.profile.as_deref()),
            )
            .map_err(|e| ("failed_render", format!("{e:#}")))?;
            let mut phase_settings = settings(global, &args.common, args.parallel, None);
            phase_settings.workspace = ws.clone();
            let phase = |phase: Phase, run: Option<RunSettings>, steps| {
                let mut s = phase_settings.clone();
                s.run = run;
                let ctx = Arc::new(PhaseContext { settings: s, backend: backend.clone(), stacks: stacks.clone() });
                run_phase(&rt, phase, ctx, steps)
            };
            let report = phase(Phase::Standup, None, crate::phases::standup::steps());
            if !report.ok() {
                return Err(("failed_standup", report.summary()));
            }
            if global.dry_run {
                return Ok(());
            }
            let report = phase(Phase::Smoketest, None, crate::phases::smoketest::steps());
            if !report.ok() {
                return Err(("failed_smoketest", report.summary()));
            }
            let run = RunSettings {
                harness,
                workload,
                treatments: run_treatments.clone(),
                parallelism: args.parallelism.max(1),
                endpoint_url: None,
                analyze: args.analyze,
                tokenizer: args.tokenizer.clone(),
                timeout: Duration::from_secs(args.harness_timeout.max(1)),
                max_attempts: args.max_attempts.map_or(experiment.max_attempts, |n| n as usize),
            };
            let report = phase(Phase::Run, Some(run), crate::phases::run::steps());
            if !report.ok() {
                return Err(("failed_run", report.summary()));
            }
            Ok(())
        })();
        match result {
            Ok(()) => outcome.run_treatments = format!("{total_runs}/{total_runs}"),
            Err((status, error)) => {
                outcome.status = status.into();
                outcome.error = Some(error);
            }
        }
        if !args.skip_teardown
            && !global.dry_run
            && let Err(e) = teardown(global, args, &ws, &rt, backend.clone())
            && outcome.error.is_none()
        {
            outcome.status = "failed_teardown".into();
            outcome.error = Some(e);
        }
        outcome.duration = t0.elapsed();
        let failed = outcome.error.is_some();
        eprintln!(
            "== setup treatment {}: {} ({} run treatments) in {:.1?}",
            outcome.name, outcome.status, outcome.run_treatments, outcome.duration
        );
        outcomes.push(outcome);
        if failed && (args.stop_on_error || experiment.stop_on_error) {
            eprintln!("stopping at the first failed setup treatment (--stop-on-error)");
            break;
        }
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    if !global.dry_run {
        let path = write_summary(&root, &experiment, total_runs, &outcomes, started.elapsed())?;
        eprintln!("summary: {}", path.display());
    }
    eprintln!("experiment {}: {} succeeded, {failed} failed in {:.1?}", experiment.name, outcomes.len() - failed, started.elapsed());
    Ok(ExitCode::from(if failed == 0 { exit::SUCCESS } else { exit::FAILURE }))
}

fn teardown(
    global: &GlobalArgs,
    args: &ExperimentArgs,
    ws: &Path,
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn Backend>,
) -> Result<(), String> {
    let stacks = receipt_stacks(ws).map_err(|e| format!("{e:#}"))?;
    let mut s = settings(global, &args.common, args.parallel, None);
    s.workspace = ws.to_path_buf();
    s.steps = Default::default();
    let report = run_phase(rt, Phase::Teardown, Arc::new(PhaseContext { settings: s, backend, stacks }), crate::phases::teardown::steps());
    if report.ok() { Ok(()) } else { Err(report.summary()) }
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
