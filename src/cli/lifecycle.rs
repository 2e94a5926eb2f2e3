//! `llmd standup | smoketest | run | teardown`: the lifecycle phases, on the backend the
//! registry picks for each stack.
//!
//! Each command renders the plan (standup also writes it to `<workspace>/plan`), builds
//! a [`PhaseContext`] and hands the phase's steps to the executor. Standup runs the
//! smoketest afterwards unless `--skip-smoketest`. Teardown works from the receipts in
//! the workspace and needs no specification.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::{CommonArgs, GlobalArgs, exit, print_warnings};
use crate::backend::{Receipt, Registry};
use crate::config::{PlanOptions, resolve_plan};
use crate::error::{InputError, Warnings};
use crate::experiment::{RunTreatment, load_run_treatments};
use crate::harness::external::HarnessKind;
use crate::phases::run_steps::RunSettings;
use crate::phases::{ExecutionReport, Phase, PhaseContext, Settings, StackEntry, StackState, Step, execute};
use crate::render::{RenderedPlan, TemplateSet, render_plan, write::write_plan};
use crate::yaml::Node;

#[derive(Debug, Args)]
pub struct StandupArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Stacks stood up at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Do not run the smoketest after standup.
    #[arg(long)]
    pub skip_smoketest: bool,
    /// Dry run that sends every object to the cluster as a server-side dry run
    /// (`dryRun=All`), reporting admission errors; changes nothing (implies -n).
    #[arg(long)]
    pub server_dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SmoketestArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Stacks tested at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Harness: llmd (native), inference-perf, guidellm or vllm-benchmark (default: the scenario's harness.name).
    #[arg(short = 'l', long, env = "LLMDBENCH_HARNESS", value_name = "HARNESS")]
    pub harness: Option<String>,
    /// Workload profile under workload/profiles/<harness>/ (default: the scenario's harness.profile).
    #[arg(short = 'w', long, env = "LLMDBENCH_WORKLOAD", value_name = "PROFILE")]
    pub workload: Option<String>,
    /// Harness instances per treatment, run at once.
    #[arg(short = 'j', long, default_value_t = 1, value_name = "N")]
    pub parallelism: usize,
    /// Experiments file with run treatments (`treatments:` or `run:`, and `constants:`).
    #[arg(short = 'e', long, value_name = "FILE")]
    pub experiments: Option<PathBuf>,
    /// Profile overrides `dotted.key=value,...` (one treatment named `override`, or applied to every -e treatment).
    #[arg(short = 'o', long = "overrides", value_name = "K=V,...")]
    pub overrides: Vec<String>,
    /// Run-only mode: benchmark this OpenAI-compatible URL instead of the deployed stacks.
    #[arg(short = 'U', long, env = "LLMDBENCH_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Print each stack's endpoint and exit.
    #[arg(long)]
    pub list_endpoints: bool,
    /// Summarise the results afterwards (<workspace>/analysis).
    #[arg(long)]
    pub analyze: bool,
    /// Attempts per run treatment before it counts as failed; each retry gets a new
    /// experiment id and the failed attempt's results are removed (default: the -e file's
    /// `treatment_max_attempts`, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// A local tokenizer (tokenizer.json or its directory) for external harnesses.
    #[arg(long, env = "LLMD_TOKENIZER", value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Longest one harness run may take: 3600, 90m, 2h (a bare number is seconds).
    #[arg(long, default_value_t = 3600, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub harness_timeout: u64,
    /// Stacks benchmarked at once (upstream runs one at a time).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub parallel: usize,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Stacks torn down at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Afterwards, also delete everything labelled managed-by llmd in the namespaces
    /// (`-p`, and those the receipts name), receipts or not (kube backend), naming each.
    #[arg(short = 'd', long)]
    pub deep: bool,
    /// With --deep: delete without asking (a terminal is asked; anything else must say
    /// --yes, or only lists).
    #[arg(short = 'y', long, env = "LLMD_YES")]
    pub yes: bool,
}

/// Renders the plan and turns its stacks into phase entries.
fn load_stacks(global: &GlobalArgs, common: &CommonArgs, write: bool) -> Result<Vec<Arc<StackEntry>>> {
    let mut warnings = Warnings::default();
    let opts = global.plan_options(common, &mut warnings)?;
    print_warnings(&warnings);
    render_stacks(&opts, &global.workspace_dir(), write && !global.dry_run)
}

/// Renders a plan (writing it under `workspace/plan` when `write`) as phase entries.
pub(crate) fn render_stacks(opts: &PlanOptions, workspace: &Path, write: bool) -> Result<Vec<Arc<StackEntry>>> {
    let mut warnings = Warnings::default();
    let resolved = resolve_plan(opts)?;
    warnings.extend(resolved.warnings.clone());
    for stack in &resolved.stacks {
        warnings.extend(stack.warnings.clone());
    }
    let templates = TemplateSet::load(&resolved.spec.template_dir)?;
    let plan: RenderedPlan = render_plan(&resolved, &templates)?;
    print_warnings(&warnings);
    if write {
        write_plan(workspace, &plan)?;
    }
    let mut secrets: std::collections::BTreeMap<String, crate::config::secret::Secrets> =
        resolved.stacks.iter().map(|s| (s.name.clone(), s.secrets.clone())).collect();
    Ok(plan
        .stacks
        .into_iter()
        .map(|s| {
            let config_yaml = s.rendered.config_yaml();
            Arc::new(StackEntry {
                plan_digest: crate::phases::plan::plan_digest(&s.rendered.files, &config_yaml),
                manifests: crate::backend::standup_manifests(&s.rendered.files),
                secrets: secrets.remove(&s.name).unwrap_or_default(),
                name: s.name,
                config: s.rendered.config,
                state: Mutex::new(StackState::default()),
            })
        })
        .collect())
}

pub(crate) fn settings(global: &GlobalArgs, common: &CommonArgs, parallel: usize, run: Option<RunSettings>) -> Result<Settings> {
    Ok(Settings {
        workspace: global.workspace_dir(),
        profile_roots: global.trees()?.profile_roots(),
        dry_run: global.dry_run,
        server_dry_run: false,
        verbose: global.verbose,
        parallel: parallel.max(1),
        steps: common.step.clone().unwrap_or_default(),
        stack_filter: common.stack.clone(),
        run,
    })
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Runs one phase and prints its verdict.
pub(crate) fn run_phase(rt: &tokio::runtime::Runtime, phase: Phase, ctx: Arc<PhaseContext>, steps: Vec<Arc<dyn Step>>) -> ExecutionReport {
    let started = Instant::now();
    let selected =
        ctx.stacks.iter().filter(|s| ctx.settings.stack_filter.is_empty() || ctx.settings.stack_filter.contains(&s.name)).count();
    eprintln!("{}{}: {} stack(s)", if ctx.settings.dry_run { "[dry-run] " } else { "" }, phase.name(), selected);
    let report = rt.block_on(execute(ctx, steps));
    if report.ok() {
        eprintln!("{} done in {:.1?}", phase.name(), started.elapsed());
    } else {
        eprintln!("{} FAILED after {:.1?}:\n  {}", phase.name(), started.elapsed(), report.summary().replace('\n', "\n  "));
    }
    report
}

pub(crate) fn check_stack_filter(common: &CommonArgs, stacks: &[Arc<StackEntry>]) -> Result<()> {
    for want in &common.stack {
        if !stacks.iter().any(|s| &s.name == want) {
            let names: Vec<&str> = stacks.iter().map(|s| s.name.as_str()).collect();
            let mut e = InputError::new(format!("--stack {want}: no such stack (stacks: {})", names.join(", ")));
            if let Some(s) = crate::error::did_you_mean(want, names.iter().copied()) {
                e = e.help(format!("did you mean '{s}'?"));
            }
            return Err(e.into());
        }
    }
    Ok(())
}

fn verdict(report: &ExecutionReport) -> ExitCode {
    ExitCode::from(if report.ok() { exit::SUCCESS } else { exit::FAILURE })
}

/// Every backend the stacks use exists and accepts this invocation's flags (a typo in
/// `--backend`, `--non-admin` on the local backend): an input error, exit 2, before
/// anything starts. Stacks known only from a receipt use the backend it names.
pub(crate) fn check_backends(registry: &Registry, stacks: &[Arc<StackEntry>]) -> Result<()> {
    for s in stacks {
        let from_receipt = s.config.is_null().then(|| s.state().receipt.as_ref().map(|r| r.backend.clone())).flatten();
        registry.get(&from_receipt.unwrap_or_else(|| registry.name_for(&s.config)))?;
    }
    Ok(())
}

pub fn standup(global: &GlobalArgs, args: &StandupArgs) -> Result<ExitCode> {
    let stacks = load_stacks(global, &args.common, true)?;
    check_stack_filter(&args.common, &stacks)?;
    let registry = global.registry();
    check_backends(&registry, &stacks)?;
    let rt = runtime()?;
    let mut standup_settings = settings(global, &args.common, args.parallel, None)?;
    if args.server_dry_run {
        standup_settings.dry_run = true;
        standup_settings.server_dry_run = true;
    }
    let ctx = Arc::new(PhaseContext { settings: standup_settings, registry: registry.clone(), stacks: stacks.clone() });
    let report = run_phase(&rt, Phase::Standup, ctx, crate::phases::standup::steps());
    if !report.ok() || args.skip_smoketest || global.dry_run || args.server_dry_run {
        return Ok(verdict(&report));
    }
    // The smoketest sees the same stacks (with their receipts) and all its steps.
    let mut smoke_settings = settings(global, &args.common, args.parallel, None)?;
    smoke_settings.steps = Default::default();
    let ctx = Arc::new(PhaseContext { settings: smoke_settings, registry, stacks });
    Ok(verdict(&run_phase(&rt, Phase::Smoketest, ctx, crate::phases::smoketest::steps())))
}

/// Stacks with their receipts loaded (for phases after standup); steps connect to
/// the deployments they list.
fn with_receipts(global: &GlobalArgs, stacks: Vec<Arc<StackEntry>>) -> Result<Vec<Arc<StackEntry>>> {
    let ws = global.workspace_dir();
    for s in &stacks {
        if let Some(r) = Receipt::load(&ws, &s.name)? {
            s.state().receipt = Some(r);
        }
    }
    Ok(stacks)
}

pub fn smoketest(global: &GlobalArgs, args: &SmoketestArgs) -> Result<ExitCode> {
    let stacks = with_receipts(global, load_stacks(global, &args.common, false)?)?;
    check_stack_filter(&args.common, &stacks)?;
    check_backends(&global.registry(), &stacks)?;
    let rt = runtime()?;
    let ctx =
        Arc::new(PhaseContext { settings: settings(global, &args.common, args.parallel, None)?, registry: global.registry(), stacks });
    Ok(verdict(&run_phase(&rt, Phase::Smoketest, ctx, crate::phases::smoketest::steps())))
}

/// `-o a=1,b.c=2` flags as dotted overrides.
pub(crate) fn parse_overrides(flags: &[String]) -> Result<Vec<(String, Node)>, InputError> {
    let mut out = Vec::new();
    for flag in flags {
        for pair in flag.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| InputError::new(format!("-o {pair}: expected dotted.key=value")).help("e.g. -o load.stages.0.rate=20"))?;
            if k.trim().is_empty() {
                return Err(InputError::new(format!("-o {pair}: empty key")));
            }
            out.push((k.trim().to_string(), Node::str(v.trim())));
        }
    }
    Ok(out)
}

/// The run treatments `llmd run` applies, and the attempts each gets.
fn run_treatments(args: &RunArgs) -> Result<(Vec<RunTreatment>, usize)> {
    let overrides = parse_overrides(&args.overrides)?;
    let mut attempts = args.max_attempts.map_or(1, |n| n as usize);
    let mut treatments = match &args.experiments {
        Some(path) => {
            let (t, from_file) = load_run_treatments(path)?;
            attempts = args.max_attempts.map_or(from_file, |n| n as usize);
            if t.is_empty() {
                return Err(
                    InputError::new(format!("{}: no run treatments (expected a `treatments:` or `run:` list)", path.display())).into()
                );
            }
            t
        }
        None if overrides.is_empty() => Vec::new(),
        None => return Ok((vec![RunTreatment { name: "override".into(), profile: None, values: overrides }], attempts)),
    };
    for t in &mut treatments {
        t.values.extend(overrides.iter().cloned());
    }
    Ok((treatments, attempts))
}

/// The harness (`-l`, else the scenario's `harness.name`, else the native one) and its
/// workload profile (`-w`, else the scenario's `harness.profile` when the harness is the
/// scenario's, else `sanity_random.yaml`).
pub(crate) fn harness_and_workload(
    stacks: &[Arc<StackEntry>],
    harness: Option<&str>,
    workload: Option<&str>,
) -> Result<(HarnessKind, String)> {
    let scenario =
        |key: &str| stacks.first().and_then(|s| s.config.get_path(&["harness", key])).map(crate::yaml::str_node).filter(|s| !s.is_empty());
    let name = harness.map(str::to_string).or_else(|| scenario("name")).unwrap_or_else(|| "llmd".into());
    let kind = HarnessKind::parse(&name).map_err(|e| InputError::new(format!("-l/--harness: {e}")))?;
    let workload = workload
        .map(str::to_string)
        .or_else(|| if harness.is_none() { scenario("profile") } else { None })
        .unwrap_or_else(|| "sanity_random.yaml".into());
    Ok((kind, workload))
}

/// Phase entries for everything the receipts in `workspace` list.
pub(crate) fn receipt_stacks(workspace: &Path) -> Result<Vec<Arc<StackEntry>>> {
    Ok(Receipt::load_all(workspace)?
        .into_iter()
        .map(|r| {
            Arc::new(StackEntry {
                name: r.stack.clone(),
                config: Node::null(),
                plan_digest: r.plan_digest.clone(),
                manifests: Vec::new(),
                secrets: Default::default(),
                state: Mutex::new(StackState { receipt: Some(r), ..Default::default() }),
            })
        })
        .collect())
}

/// The stack used in run-only mode without a specification.
fn endpoint_stack() -> Arc<StackEntry> {
    Arc::new(StackEntry {
        name: "endpoint".into(),
        config: Node::null(),
        plan_digest: String::new(),
        manifests: Vec::new(),
        secrets: Default::default(),
        state: Mutex::new(StackState::default()),
    })
}

pub fn run(global: &GlobalArgs, args: &RunArgs) -> Result<ExitCode> {
    let stacks = if global.spec.is_none() && args.endpoint_url.is_some() {
        vec![endpoint_stack()]
    } else {
        with_receipts(global, load_stacks(global, &args.common, false)?)?
    };
    check_stack_filter(&args.common, &stacks)?;
    if args.endpoint_url.is_none() {
        check_backends(&global.registry(), &stacks)?;
    }
    let (harness, workload) = harness_and_workload(&stacks, args.harness.as_deref(), args.workload.as_deref())?;
    let (treatments, max_attempts) = run_treatments(args)?;
    let run_settings = RunSettings {
        harness,
        workload,
        treatments,
        parallelism: args.parallelism.max(1),
        endpoint_url: args.endpoint_url.clone(),
        analyze: args.analyze,
        tokenizer: args.tokenizer.clone(),
        timeout: Duration::from_secs(args.harness_timeout.max(1)),
        max_attempts,
    };
    let mut phase_settings = settings(global, &args.common, args.parallel, Some(run_settings))?;
    if args.list_endpoints {
        phase_settings.steps = crate::util::steps::StepSelection(Some(vec![3]));
    }
    let rt = runtime()?;
    let ctx = Arc::new(PhaseContext { settings: phase_settings, registry: global.registry(), stacks: stacks.clone() });
    let report = run_phase(&rt, Phase::Run, ctx, crate::phases::run_steps::steps());
    if args.list_endpoints {
        for s in &stacks {
            let st = s.state();
            println!("{}\t{}", s.name, st.endpoint.as_deref().unwrap_or("-"));
        }
    }
    Ok(verdict(&report))
}

pub fn teardown(global: &GlobalArgs, args: &TeardownArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    let registry = global.registry();
    let root = global.workspace_dir();
    // One build or teardown per workspace: a build in progress finishes (or is
    // interrupted) before its stacks are removed under it.
    let _lock =
        if global.dry_run || !root.is_dir() { None } else { Some(crate::store::lock::lock_workspace(&root, "llmd teardown", None)?) };
    let mut work = Vec::new();
    for ws in crate::phases::teardown::receipt_workspaces(&root) {
        if !global.dry_run {
            for line in crate::backend::pending::reap(&ws) {
                eprintln!("llmd: {line}");
            }
        }
        let stacks = receipt_stacks(&ws)?;
        if !stacks.is_empty() {
            check_stack_filter(&args.common, &stacks)?;
            check_backends(&registry, &stacks)?;
            work.push((ws, stacks));
        }
    }
    if work.is_empty() {
        // Nothing anywhere: the preflight step says so.
        work.push((global.workspace_dir(), Vec::new()));
    }
    // Namespaces for --deep, read before the receipts go.
    let mut namespaces: Vec<String> =
        args.common.namespace.iter().flat_map(|n| n.split(',')).map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    for (_, stacks) in &work {
        for stack in stacks {
            if let Some(r) = &stack.state().receipt
                && let Ok(body) = crate::backend::kube::KubeBody::of(r)
            {
                namespaces.extend(body.objects.iter().filter_map(|o| o.namespace.clone()));
                namespaces.extend(
                    body.releases.iter().filter(|r| r.scope != crate::backend::releases::Scope::Cluster).map(|r| r.namespace.clone()),
                );
            }
        }
    }
    namespaces.sort();
    namespaces.dedup();
    if args.deep && namespaces.is_empty() {
        return Err(InputError::new("teardown --deep: no namespace to sweep (no receipt names one)")
            .help("pass -p NAMESPACE[,HARNESS_NAMESPACE]")
            .into());
    }
    let mut ok = true;
    for (ws, stacks) in work {
        let mut s = settings(global, &args.common, args.parallel, None)?;
        s.workspace = ws;
        let ctx = Arc::new(PhaseContext { settings: s, registry: registry.clone(), stacks });
        ok &= run_phase(&rt, Phase::Teardown, ctx, crate::phases::teardown::steps()).ok();
    }
    if args.deep {
        ok &= deep_teardown(&rt, &registry, &namespaces, global.dry_run, args.yes);
    }
    Ok(ExitCode::from(if ok { exit::SUCCESS } else { exit::FAILURE }))
}

/// `teardown --deep`: everything the cluster backend manages in `namespaces`, listed
/// first; deleted with `yes`, or when a terminal's user says so.
fn deep_teardown(rt: &tokio::runtime::Runtime, registry: &Registry, namespaces: &[String], dry_run: bool, yes: bool) -> bool {
    use std::io::IsTerminal;
    let result = registry.get("kube").and_then(|b| {
        let found = rt.block_on(b.sweep(namespaces, true))?;
        let where_ = namespaces.join(", ");
        if found.is_empty() {
            eprintln!("teardown --deep in {where_}: nothing managed by llmd is left");
            return Ok(true);
        }
        eprintln!("teardown --deep in {where_}: {} thing(s) managed by llmd:", found.len());
        for f in &found {
            eprintln!("  {f}");
        }
        if dry_run {
            eprintln!("teardown --deep: would delete them (dry run)");
            return Ok(true);
        }
        if !yes {
            if !std::io::stdin().is_terminal() {
                eprintln!("teardown --deep: not deleted; pass --yes (or set LLMD_YES=1) to delete them without a terminal to ask on");
                return Ok(false);
            }
            eprint!("delete all {} (they may belong to stacks of other workspaces)? [y/N] ", found.len());
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                eprintln!("teardown --deep: nothing deleted");
                return Ok(true);
            }
        }
        let deleted = rt.block_on(b.sweep(namespaces, false))?;
        eprintln!("teardown --deep in {where_}: deleted {} thing(s) managed by llmd", deleted.len());
        Ok(true)
    });
    result.unwrap_or_else(|e| {
        eprintln!("teardown --deep: {e:#}");
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse() {
        let o = parse_overrides(&["load.stages.0.rate=5, seed=3".into()]).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].0, "seed");
        assert!(parse_overrides(&["nokey".into()]).is_err());
        assert!(parse_overrides(&["=1".into()]).is_err());
    }
}
