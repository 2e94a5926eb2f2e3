//! The run phase's numbered steps (`llmd run`): point a harness at each stack and
//! collect what it measures. The work is the run executor's ([`super::run`]).
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | run_preflight | global | the harness is installed, the profiles exist, the results directory is writable |
//! | 03 | detect_endpoint | per stack | `--endpoint-url` wins; else the deployment's access (from its receipt) |
//! | 04 | verify_model | per stack | `/v1/models` lists the stack's model |
//! | 05 | render_profiles | per stack | fill `REPLACE_ENV_*`, apply each treatment's overrides → `<workspace>/workload/profiles/<harness>/` |
//! | 07 | deploy_harness | per stack | per treatment: `-j` harness instances, results in `<workspace>/results/<experiment-id>_<i>/` |
//! | 09 | collect_results | per stack | every result directory holds the harness's result files |
//! | 12 | analyze_results | global | with `--analyze`: a summary of every result in `<workspace>/analysis/` |

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::run::{FinishedRun, ProfileJob, RunEvent, RunRequest, experiment_id, one_line, profile_values, run_treatment};
use super::{PhaseContext, StackEntry, Step, StepInfo, StepOutcome};
use crate::backend::{BoxFuture, Liveness, Receipt};
use crate::error::Warnings;
use crate::experiment::RunTreatment;
use crate::harness::external::{self, HarnessKind};
use crate::harness::profile::find_profile;
use crate::http::{Endpoint, http_json};

/// Run-phase settings.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub harness: HarnessKind,
    /// The workload profile name (`sanity_random.yaml`).
    pub workload: String,
    /// Run treatments; empty means one run of the profile as it is.
    pub treatments: Vec<RunTreatment>,
    /// Harness instances per treatment (`-j`).
    pub parallelism: usize,
    /// Run-only mode: benchmark this URL instead of the stacks' deployments.
    pub endpoint_url: Option<String>,
    pub analyze: bool,
    /// A tokenizer for external harnesses (they need a local one offline).
    pub tokenizer: Option<PathBuf>,
    /// Longest a harness may run.
    pub timeout: Duration,
    /// Attempts per treatment before it counts as failed (`treatment_max_attempts`).
    pub max_attempts: usize,
}

pub fn steps() -> Vec<Arc<dyn Step>> {
    vec![
        Arc::new(Preflight),
        Arc::new(DetectEndpoint),
        Arc::new(VerifyModel),
        Arc::new(RenderProfiles),
        Arc::new(DeployHarness),
        Arc::new(CollectResults),
        Arc::new(AnalyzeResults),
    ]
}

fn settings(ctx: &PhaseContext) -> Result<&RunSettings> {
    ctx.settings.run.as_ref().context("run settings missing")
}

/// The profile names a run needs, one per treatment.
fn profile_names(rs: &RunSettings) -> Vec<String> {
    if rs.treatments.is_empty() {
        return vec![rs.workload.clone()];
    }
    rs.treatments.iter().map(|t| t.profile.clone().unwrap_or_else(|| rs.workload.clone())).collect()
}

/// Step: the harness and its profiles are available; results can be written.
struct Preflight;

impl Step for Preflight {
    fn info(&self) -> StepInfo {
        StepInfo { number: 0, name: "run_preflight", per_stack: false }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, _stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let rs = settings(ctx)?;
            let tool = match rs.harness {
                HarnessKind::Llmd => "built in".to_string(),
                kind => kind.locate()?.display().to_string(),
            };
            for name in profile_names(rs) {
                find_profile(&ctx.settings.profile_roots, rs.harness.name(), &name)?;
            }
            if let Some(url) = &rs.endpoint_url {
                Endpoint::parse(url).map_err(|e| anyhow::anyhow!("--endpoint-url: {e}"))?;
            }
            let results = ctx.settings.workspace.join("results");
            if !ctx.settings.dry_run {
                std::fs::create_dir_all(&results).with_context(|| format!("cannot create {}", results.display()))?;
            }
            Ok(StepOutcome::msg(format!(
                "harness {} ({tool}), profile {}, {} treatment(s)",
                rs.harness.name(),
                rs.workload,
                rs.treatments.len().max(1)
            )))
        })
    }
}

/// Step: find the URL that serves the stack.
struct DetectEndpoint;

impl Step for DetectEndpoint {
    fn info(&self) -> StepInfo {
        StepInfo { number: 3, name: "detect_endpoint", per_stack: true }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let rs = settings(ctx)?;
            let model = stack.config.get_path(&["model", "name"]).map(crate::yaml::str_node);
            let (endpoint, how) = match &rs.endpoint_url {
                Some(url) => (url.trim_end_matches('/').to_string(), "--endpoint-url".to_string()),
                None => {
                    let receipt = Receipt::load(&ctx.settings.workspace, &stack.name)?.with_context(|| {
                        format!(
                            "stack '{}' is not stood up in {} (no receipt); run `llmd standup` first, or pass --endpoint-url",
                            stack.name,
                            ctx.settings.workspace.display()
                        )
                    })?;
                    let backend = ctx.registry.get(&receipt.backend)?;
                    if !ctx.settings.dry_run {
                        match backend.check(&receipt).await {
                            Liveness::Live => {}
                            Liveness::Gone(why) => {
                                bail!("stack '{}' is stood up but not serving: {why}; run `llmd standup` again", stack.name)
                            }
                            Liveness::Drifted(why) => bail!(
                                "stack '{}' was changed since its standup ({why}); results would not describe the plan: run `llmd standup` again",
                                stack.name
                            ),
                        }
                    }
                    let access = Arc::new(backend.connect(&receipt).await?);
                    let how = format!("{} backend, {} replica(s)", receipt.backend, access.urls.len());
                    let url = access.primary().to_string();
                    stack.state().adopt(receipt, access);
                    (url, how)
                }
            };
            let mut st = stack.state();
            st.endpoint = Some(endpoint.clone());
            if st.model.is_none() {
                st.model = model;
            }
            Ok(StepOutcome::msg(format!("{endpoint} ({how})")))
        })
    }
}

/// Step: the endpoint serves the stack's model.
struct VerifyModel;

impl Step for VerifyModel {
    fn info(&self) -> StepInfo {
        StepInfo { number: 4, name: "verify_model", per_stack: true }
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        ctx.skip_in_dry_run()
    }
    fn execute<'a>(&'a self, _ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let (url, model) = {
                let st = stack.state();
                (st.endpoint.clone().context("no endpoint detected")?, st.model.clone())
            };
            let ep = Endpoint::parse(&url).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
            let (status, body) = http_json(&ep, "/v1/models", None, Duration::from_secs(30)).await?;
            if status != 200 {
                bail!("{url}/v1/models answered HTTP {status}: {body}");
            }
            let ids: Vec<String> = body["data"]
                .as_array()
                .map(|d| d.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            match model {
                Some(m) if ids.contains(&m) => Ok(StepOutcome::msg(format!("{url} serves {m}"))),
                Some(m) => bail!("{url} does not serve '{m}' (it serves {}); pass -m MODEL to benchmark one of those", ids.join(", ")),
                None => {
                    let first = ids.first().cloned().with_context(|| format!("{url}/v1/models lists no model"))?;
                    stack.state().model = Some(first.clone());
                    Ok(StepOutcome::msg(format!("{url} serves {first}")))
                }
            }
        })
    }
}

/// Step: fill the workload profiles and apply the run treatments.
struct RenderProfiles;

impl Step for RenderProfiles {
    fn info(&self) -> StepInfo {
        StepInfo { number: 5, name: "render_profiles", per_stack: true }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let rs = settings(ctx)?;
            // Profiles name the endpoint as the harness sees it (a harness pod: cluster DNS).
            let (endpoint, model) = {
                let st = stack.state();
                let endpoint = match (&rs.endpoint_url, &st.access) {
                    (None, Some(access)) => access.harness_endpoint().to_string(),
                    _ => st.endpoint.clone().unwrap_or_default(),
                };
                (endpoint, st.model.clone().unwrap_or_default())
            };
            let max_len = stack.config.get_path(&["model", "maxModelLen"]).map(crate::yaml::str_node);
            let values = profile_values(&stack.name, &model, max_len, &endpoint);
            let out_dir = ctx.settings.workspace.join("workload/profiles").join(rs.harness.name()).join(&stack.name);
            let plain = RunTreatment { name: String::new(), profile: None, values: Vec::new() };
            let treatments: Vec<(Option<&str>, &RunTreatment)> = if rs.treatments.is_empty() {
                vec![(None, &plain)]
            } else {
                rs.treatments.iter().map(|t| (Some(t.name.as_str()), t)).collect()
            };
            let mut runs = Vec::new();
            let mut warnings = Warnings::default();
            for (name, t) in treatments {
                let profile = find_profile(&ctx.settings.profile_roots, rs.harness.name(), t.profile.as_deref().unwrap_or(&rs.workload))?;
                let text = std::fs::read_to_string(&profile).with_context(|| format!("cannot read profile {}", profile.display()))?;
                let job = ProfileJob {
                    harness: rs.harness,
                    source: &profile,
                    text: &text,
                    values: &values,
                    treatment: name,
                    overrides: &t.values,
                    out_dir: &out_dir,
                };
                runs.push(job.prepare(!ctx.settings.dry_run, &mut warnings)?);
            }
            for w in warnings.iter() {
                ctx.say(Some(&stack.name), format!("warning: {w}"));
            }
            let n = runs.len();
            stack.state().runs = runs;
            Ok(StepOutcome::msg(format!("{n} profile(s) in {}", out_dir.display())))
        })
    }
}

/// Step: run the harness once per treatment (x parallelism) and wait for it.
struct DeployHarness;

impl Step for DeployHarness {
    fn info(&self) -> StepInfo {
        StepInfo { number: 7, name: "deploy_harness", per_stack: true }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let rs = settings(ctx)?;
            let (runs, endpoint, model, access) = {
                let st = stack.state();
                let access = st.access.clone().filter(|_| rs.endpoint_url.is_none());
                (st.runs.clone(), st.endpoint.clone().context("no endpoint detected")?, st.model.clone().context("no model known")?, access)
            };
            let launcher = access.as_ref().and_then(|a| a.launcher.as_deref());
            let attempts = rs.max_attempts.max(1);
            if ctx.settings.dry_run {
                for run in &runs {
                    let eid = experiment_id(rs.harness, run.treatment.as_deref());
                    let retries = if attempts > 1 { format!(", up to {attempts} attempts") } else { String::new() };
                    let line = format!(
                        "would run {} x{} with {} → results/{eid}_1..{retries}",
                        rs.harness.name(),
                        rs.parallelism,
                        run.profile_path.display()
                    );
                    ctx.say(Some(&stack.name), line);
                }
                return Ok(StepOutcome::default());
            }
            let results = ctx.settings.workspace.join("results");
            let deployment = stack.state().receipt.as_ref().map(|r| r.deployment.clone()).unwrap_or_default();
            let (mut failures, mut failed) = (Vec::new(), 0);
            for run in &runs {
                let label = run.treatment.as_deref().unwrap_or("profile");
                let request = RunRequest {
                    harness: rs.harness,
                    run,
                    endpoint: &endpoint,
                    model: &model,
                    stack: &stack.name,
                    deployment: &deployment,
                    results: &results,
                    instances: 1..=rs.parallelism.max(1),
                    tokenizer: rs.tokenizer.as_deref(),
                    timeout: rs.timeout,
                    quiet: !ctx.settings.verbose,
                    max_attempts: attempts,
                    max_failure_fraction: crate::phases::run::DEFAULT_MAX_FAILURE_FRACTION,
                    launcher,
                    // Stacks run in parallel (--parallel) measure beside each other.
                    isolation: Some(if ctx.settings.parallel > 1 && ctx.stacks.len() > 1 { "per-stack" } else { "exclusive" }),
                };
                let done = run_treatment(&request, &mut |event| match event {
                    RunEvent::Attempt { attempt, attempts, eid } => {
                        let of = if attempts > 1 { format!(", attempt {attempt}/{attempts}") } else { String::new() };
                        let line = format!(
                            "treatment {label}: {} x{} against {} (experiment {eid}{of})",
                            rs.harness.name(),
                            rs.parallelism,
                            launcher.map_or(endpoint.as_str(), |l| l.endpoint())
                        );
                        ctx.say(Some(&stack.name), line);
                    }
                    RunEvent::Retry { attempt, attempts, error } => ctx.say(
                        Some(&stack.name),
                        format!("treatment {label} failed (attempt {attempt}/{attempts}): {error}; its results are removed, retrying"),
                    ),
                })
                .await;
                for w in &done.warnings {
                    ctx.say(Some(&stack.name), format!("warning: treatment {label}: {w}"));
                }
                for r in done.outcomes.iter().filter_map(|o| o.report.as_ref()) {
                    ctx.say(Some(&stack.name), format!("  {label}: {}", one_line(r)));
                }
                let failed_after = if attempts > 1 { format!(" after {attempts} attempts") } else { String::new() };
                failed += usize::from(!done.errors.is_empty());
                failures.extend(done.errors.iter().map(|e| format!("treatment {label}{failed_after}: {e}")));
                let mut st = stack.state();
                for o in done.outcomes {
                    st.finished.push(FinishedRun { treatment: run.treatment.clone(), dir: o.dir, report: o.report });
                }
            }
            if !failures.is_empty() {
                bail!("{failed} of {} treatment(s) failed:\n    {}", runs.len(), failures.join("\n    "));
            }
            Ok(StepOutcome::msg(format!("{} treatment(s) finished; results in {}", runs.len(), results.display())))
        })
    }
}

/// Step: check every result directory holds the harness's result files.
struct CollectResults;

impl Step for CollectResults {
    fn info(&self) -> StepInfo {
        StepInfo { number: 9, name: "collect_results", per_stack: true }
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        ctx.skip_in_dry_run()
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let rs = settings(ctx)?;
            let dirs: Vec<PathBuf> = stack.state().finished.iter().map(|f| f.dir.clone()).collect();
            let mut files = 0;
            for dir in &dirs {
                files += external::collect(rs.harness, dir)?.files.len();
            }
            Ok(StepOutcome::msg(format!(
                "{files} result file(s) in {} result director{}",
                dirs.len(),
                if dirs.len() == 1 { "y" } else { "ies" }
            )))
        })
    }
}

/// Step: summarise every result (with --analyze).
struct AnalyzeResults;

impl Step for AnalyzeResults {
    fn info(&self) -> StepInfo {
        StepInfo { number: 12, name: "analyze_results", per_stack: false }
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        match settings(ctx) {
            Ok(rs) if !rs.analyze => Some("--analyze not given".into()),
            _ if ctx.settings.dry_run => Some("dry run".into()),
            _ => None,
        }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, _stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let dir = ctx.settings.workspace.join("analysis");
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let mut text = String::new();
            for stack in &ctx.stacks {
                for run in &stack.state().finished {
                    text.push_str(&format!("== {} / {} ({})\n", stack.name, run.treatment.as_deref().unwrap_or("-"), run.dir.display()));
                    match &run.report {
                        Some(r) => text.push_str(&r.table()),
                        None => text.push_str("(external harness: see its result files)\n"),
                    }
                    text.push('\n');
                }
            }
            let path = dir.join("summary.txt");
            crate::util::fs::write_atomic(&path, text.as_bytes())?;
            Ok(StepOutcome::msg(format!("summary in {}", path.display())))
        })
    }
}
