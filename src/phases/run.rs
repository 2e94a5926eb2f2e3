//! Run: point a harness at each stack and collect what it measures.
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | run_preflight | global | the harness is installed, the profiles exist, the results directory is writable |
//! | 03 | detect_endpoint | per stack | `--endpoint-url` wins; else the stack's receipt |
//! | 04 | verify_model | per stack | `/v1/models` lists the stack's model |
//! | 05 | render_profiles | per stack | fill `REPLACE_ENV_*`, apply each treatment's overrides → `<workspace>/workload/profiles/<harness>/` |
//! | 07 | deploy_harness | per stack | per treatment: `-j` harness instances, results in `<workspace>/results/<experiment-id>_<i>/` |
//! | 09 | collect_results | per stack | every result directory holds the harness's result files |
//! | 12 | analyze_results | global | with `--analyze`: a summary of every result in `<workspace>/analysis/` |
//!
//! A treatment fails when its harness fails or more than half of its requests fail; a
//! treatment with fewer failures succeeds with a warning. Failed requests never enter
//! latency statistics (see [`crate::harness::report`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Phase, PhaseContext, StackEntry, Step, StepOutcome};
use crate::backend::{BoxFuture, Receipt};
use crate::error::Warnings;
use crate::experiment::RunTreatment;
use crate::harness::RunReport;
use crate::harness::external::{self, HarnessKind};
use crate::harness::profile::{find_profile, render_profile};
use crate::http::client::Endpoint;
use crate::http::http_json;
use crate::util::unix_now;
use crate::yaml::{Node, Value, map_of};

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

/// One rendered profile, ready to run.
#[derive(Clone, Debug)]
pub struct PreparedRun {
    pub treatment: Option<String>,
    pub profile_path: PathBuf,
    pub doc: Node,
}

/// One finished harness instance.
#[derive(Clone, Debug)]
pub struct FinishedRun {
    pub experiment_id: String,
    pub treatment: Option<String>,
    pub dir: PathBuf,
    pub report: Option<RunReport>,
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

fn state(stack: &StackEntry) -> std::sync::MutexGuard<'_, super::StackState> {
    stack.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The profile names a run needs, one per treatment.
fn profile_names(rs: &RunSettings) -> Vec<String> {
    if rs.treatments.is_empty() {
        return vec![rs.workload.clone()];
    }
    rs.treatments.iter().map(|t| t.profile.clone().unwrap_or_else(|| rs.workload.clone())).collect()
}

struct Preflight;

impl Step for Preflight {
    fn number(&self) -> u32 {
        0
    }
    fn name(&self) -> &'static str {
        "run_preflight"
    }
    fn description(&self) -> &'static str {
        "the harness and its profiles are available; results can be written"
    }
    fn phase(&self) -> Phase {
        Phase::Run
    }
    fn per_stack(&self) -> bool {
        false
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, _stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let rs = settings(ctx)?;
            let tool = match rs.harness {
                HarnessKind::Llmd => "built in".to_string(),
                kind => kind.locate()?.display().to_string(),
            };
            for name in profile_names(rs) {
                find_profile(&ctx.settings.base_dir, rs.harness.name(), &name)?;
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

struct DetectEndpoint;

impl Step for DetectEndpoint {
    fn number(&self) -> u32 {
        3
    }
    fn name(&self) -> &'static str {
        "detect_endpoint"
    }
    fn description(&self) -> &'static str {
        "find the URL that serves the stack"
    }
    fn phase(&self) -> Phase {
        Phase::Run
    }
    fn per_stack(&self) -> bool {
        true
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
                    if !ctx.settings.dry_run
                        && let crate::backend::Liveness::Gone(why) = ctx.backend.check(&receipt, None).await
                    {
                        bail!("stack '{}' is stood up but not serving: {why}; run `llmd standup` again", stack.name);
                    }
                    let url = receipt.endpoint().context("the receipt lists no replica")?;
                    let how = format!("receipt, {} replica(s)", receipt.replicas.len());
                    state(stack).receipt = Some(receipt);
                    (url, how)
                }
            };
            let mut st = state(stack);
            st.endpoint = Some(endpoint.clone());
            if st.model.is_none() {
                st.model = model;
            }
            Ok(StepOutcome::msg(format!("{endpoint} ({how})")))
        })
    }
}

struct VerifyModel;

impl Step for VerifyModel {
    fn number(&self) -> u32 {
        4
    }
    fn name(&self) -> &'static str {
        "verify_model"
    }
    fn description(&self) -> &'static str {
        "the endpoint serves the stack's model"
    }
    fn phase(&self) -> Phase {
        Phase::Run
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        ctx.settings.dry_run.then(|| "dry run".into())
    }
    fn execute<'a>(&'a self, _ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let (url, model) = {
                let st = state(stack);
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
                    state(stack).model = Some(first.clone());
                    Ok(StepOutcome::msg(format!("{url} serves {first}")))
                }
            }
        })
    }
}

/// `REPLACE_ENV_*` values for a stack.
pub fn placeholder_values(config: &Node, stack: &str, endpoint: &str, model: &str) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("LLMDBENCH_DEPLOY_CURRENT_MODEL".into(), model.to_string());
    v.insert("LLMDBENCH_DEPLOY_CURRENT_TOKENIZER".into(), model.to_string());
    if let Some(len) = config.get_path(&["model", "maxModelLen"]) {
        v.insert("LLMDBENCH_DEPLOY_CURRENT_MAX_MODEL_LEN".into(), crate::yaml::str_node(len));
    }
    v.insert("LLMDBENCH_HARNESS_STACK_ENDPOINT_URL".into(), endpoint.to_string());
    v.insert("LLMDBENCH_HARNESS_STACK_NAME".into(), stack.to_string());
    v
}

/// `sanity_random.yaml.in` + `rate5` → `sanity_random-rate5.yaml`.
pub fn rendered_name(profile: &Path, treatment: Option<&str>) -> String {
    let file = profile.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    let file = file.strip_suffix(".in").unwrap_or(&file).to_string();
    let (stem, suffix) = match file.rfind('.') {
        Some(i) if i > 0 => (file[..i].to_string(), file[i..].to_string()),
        _ => (file.clone(), String::new()),
    };
    match treatment {
        Some(t) => format!("{stem}-{t}{suffix}"),
        None => format!("{stem}{suffix}"),
    }
}

struct RenderProfiles;

impl Step for RenderProfiles {
    fn number(&self) -> u32 {
        5
    }
    fn name(&self) -> &'static str {
        "render_profiles"
    }
    fn description(&self) -> &'static str {
        "fill the workload profiles and apply the run treatments"
    }
    fn phase(&self) -> Phase {
        Phase::Run
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let rs = settings(ctx)?;
            let (endpoint, model) = {
                let st = state(stack);
                (st.endpoint.clone().unwrap_or_default(), st.model.clone().unwrap_or_default())
            };
            let values = placeholder_values(&stack.config, &stack.name, &endpoint, &model);
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
                let profile = find_profile(&ctx.settings.base_dir, rs.harness.name(), t.profile.as_deref().unwrap_or(&rs.workload))?;
                let (doc, yaml) = render_profile(&profile, &values, &t.values, &mut warnings)?;
                let file = out_dir.join(rendered_name(&profile, name));
                if rs.harness == HarnessKind::Llmd {
                    crate::harness::profile::parse_native_profile(&doc, &file.display().to_string())?;
                }
                if !ctx.settings.dry_run {
                    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
                    crate::util::fs::write_atomic(&file, yaml.as_bytes())?;
                }
                runs.push(PreparedRun { treatment: name.map(str::to_string), profile_path: file, doc });
            }
            for w in warnings.iter() {
                ctx.say(Some(&stack.name), format!("warning: {w}"));
            }
            let n = runs.len();
            state(stack).runs = runs;
            Ok(StepOutcome::msg(format!("{n} profile(s) in {}", out_dir.display())))
        })
    }
}

/// `<harness>[-<treatment>]-<unix_ts>-<rand6>`, as upstream names experiments.
pub fn experiment_id(harness: HarnessKind, treatment: Option<&str>) -> String {
    let mut rng = crate::util::rng::Rng::new(crate::timing::mono_ns() ^ u64::from(std::process::id()));
    let rand: String = (0..6).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(rng.next_u64() % 36) as usize])).collect();
    let ts = unix_now() as u64;
    match treatment {
        Some(t) => format!("{}-{t}-{ts}-{rand}", harness.name()),
        None => format!("{}-{ts}-{rand}", harness.name()),
    }
}

/// Request counts of one harness instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub total: u64,
    pub failed: u64,
    /// Failures by class, e.g. "3 ServiceUnavailableError".
    pub errors: String,
}

impl Tally {
    fn of_report(r: &RunReport) -> Tally {
        let c = &r.requests;
        Tally {
            total: c.total as u64,
            failed: (c.failed + c.incomplete) as u64,
            errors: c.errors.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        }
    }
}

/// One harness instance to run: everything it needs, nothing about phases.
pub struct HarnessJob<'a> {
    pub harness: HarnessKind,
    /// The rendered profile.
    pub doc: &'a Node,
    pub profile_path: &'a Path,
    pub endpoint: &'a str,
    pub model: &'a str,
    /// The result directory (created).
    pub dir: PathBuf,
    pub tokenizer: Option<&'a Path>,
    pub timeout: Duration,
    pub quiet: bool,
    /// For `run_metadata.yaml`.
    pub eid: &'a str,
    pub stack: &'a str,
    pub treatment: Option<&'a str>,
    pub deployment: &'a str,
}

/// How a harness instance ended.
pub struct InstanceOutcome {
    pub dir: PathBuf,
    pub report: Option<RunReport>,
    pub tally: Option<Tally>,
    pub error: Option<String>,
}

impl HarnessJob<'_> {
    /// Runs the harness to completion and writes `run_metadata.yaml`; never panics on
    /// harness failure — it is in the outcome.
    pub async fn run(self) -> InstanceOutcome {
        let dir = self.dir.clone();
        let start = unix_now();
        // The model server's /metrics, scraped every second while the harness runs.
        let scrape_ep = Endpoint::parse(self.endpoint).ok();
        let scraper = {
            let (ep, label, dir) = (scrape_ep.clone(), self.stack.to_string(), dir.clone());
            async move {
                match ep {
                    Some(ep) => crate::analysis::metrics::scrape_forever(ep, label, dir, std::time::Duration::from_secs(1)).await,
                    None => std::future::pending().await,
                }
            }
        };
        let harness = async {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            match self.harness {
                HarnessKind::Llmd => {
                    let profile = crate::harness::profile::parse_native_profile(self.doc, &self.profile_path.display().to_string())?;
                    let ep = Endpoint::parse(self.endpoint).map_err(|e| anyhow::anyhow!("{}: {e}", self.endpoint))?;
                    let report = tokio::time::timeout(self.timeout, crate::harness::run_native(&profile, ep, self.model, &dir, self.quiet))
                        .await
                        .map_err(|_| anyhow::anyhow!("the native harness did not finish within {:?}", self.timeout))??;
                    let tally = Tally::of_report(&report);
                    Ok((Some(report), tally))
                }
                kind => {
                    let program = kind.locate()?;
                    let ext = external::prepare(kind, self.doc.clone(), program, self.endpoint, self.model, &dir, self.tokenizer)?;
                    let env = [("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")];
                    external::run(&ext, &dir.join("harness.log"), self.timeout, &env).await?;
                    let c = external::collect(kind, &dir)?;
                    Ok((None, Tally { total: c.completed + c.failed, failed: c.failed, errors: String::new() }))
                }
            }
        };
        let result: Result<(Option<RunReport>, Tally)> = tokio::select! {
            r = harness => r,
            () = scraper => unreachable!("the scraper loops until the harness finishes"),
        };
        if let Some(ep) = &scrape_ep {
            crate::analysis::metrics::scrape_once(ep, self.stack, &dir.join("metrics/raw").join(format!("{}.log", self.stack))).await;
        }
        let stop = unix_now();
        let (report, tally, error) = match result {
            Ok((r, t)) => (r, Some(t), None),
            Err(e) => (None, None, Some(format!("{e:#}"))),
        };
        let meta = map_of([
            ("eid", Node::str(self.eid)),
            ("harness", Node::str(self.harness.name())),
            ("treatment", self.treatment.map_or_else(Node::null, Node::str)),
            ("stack", Node::str(self.stack)),
            ("plan_hash", Node::str(self.deployment)),
            ("model", Node::str(self.model)),
            ("endpoint", Node::str(self.endpoint)),
            ("profile", Node::str(self.profile_path.display().to_string())),
            ("start", Node::bare(Value::Float(start))),
            ("stop", Node::bare(Value::Float(stop))),
            ("delta", Node::bare(Value::Float(stop - start))),
            ("rc", Node::bare(Value::Int(i64::from(error.is_some())))),
            ("version", Node::str(format!("llmd {}", env!("CARGO_PKG_VERSION")))),
            (
                "description",
                Node::str(format!("{} on {} ({})", self.harness.name(), self.stack, self.treatment.unwrap_or("profile as is"))),
            ),
        ]);
        let yaml = crate::yaml::dump(&meta, crate::yaml::DumpOptions { sort_keys: false, literal_multiline: false });
        let error = match (error, std::fs::write(dir.join("run_metadata.yaml"), yaml)) {
            (Some(e), _) => Some(e),
            (None, Err(e)) => Some(format!("cannot write {}: {e}", dir.join("run_metadata.yaml").display())),
            (None, Ok(())) => None,
        };
        InstanceOutcome { dir, report, tally, error }
    }
}

struct DeployHarness;

/// Judges a finished instance: `Err` fails the treatment, `Ok(Some)` is a warning.
pub fn judge(outcome: &InstanceOutcome) -> Result<Option<String>, String> {
    if let Some(e) = &outcome.error {
        return Err(e.clone());
    }
    let Some(t) = &outcome.tally else { return Err("the harness reported no request counts".into()) };
    let errors = if t.errors.is_empty() { String::new() } else { format!(" ({})", t.errors) };
    if t.total == 0 {
        return Err("the harness sent no requests".into());
    }
    if t.failed * 2 > t.total {
        return Err(format!("{} of {} requests failed{errors}", t.failed, t.total));
    }
    Ok((t.failed > 0)
        .then(|| format!("{} of {} requests failed{errors}; they are counted, not in the latency statistics", t.failed, t.total)))
}

impl Step for DeployHarness {
    fn number(&self) -> u32 {
        7
    }
    fn name(&self) -> &'static str {
        "deploy_harness"
    }
    fn description(&self) -> &'static str {
        "run the harness once per treatment (x parallelism) and wait for it"
    }
    fn phase(&self) -> Phase {
        Phase::Run
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let rs = settings(ctx)?;
            let (runs, endpoint, model) = {
                let st = state(stack);
                (st.runs.clone(), st.endpoint.clone().context("no endpoint detected")?, st.model.clone().context("no model known")?)
            };
            let mut failures = Vec::new();
            let mut done = 0;
            let attempts = rs.max_attempts.max(1);
            for run in &runs {
                let label = run.treatment.as_deref().unwrap_or("profile");
                if ctx.settings.dry_run {
                    let eid = experiment_id(rs.harness, run.treatment.as_deref());
                    let retries = if attempts > 1 { format!(", up to {attempts} attempts") } else { String::new() };
                    ctx.say(
                        Some(&stack.name),
                        format!(
                            "would run {} x{} with {} → results/{eid}_1..{retries}",
                            rs.harness.name(),
                            rs.parallelism,
                            run.profile_path.display()
                        ),
                    );
                    continue;
                }
                for attempt in 1..=attempts {
                    let eid = experiment_id(rs.harness, run.treatment.as_deref());
                    let of = if attempts > 1 { format!(", attempt {attempt}/{attempts}") } else { String::new() };
                    ctx.say(
                        Some(&stack.name),
                        format!("treatment {label}: {} x{} against {endpoint} (experiment {eid}{of})", rs.harness.name(), rs.parallelism),
                    );
                    let outcomes = run_instances(ctx, rs, stack, run, &endpoint, &model, &eid).await;
                    let errors: Vec<String> =
                        outcomes.iter().filter_map(|o| judge(o).err().map(|e| format!("{} ({})", e, o.dir.display()))).collect();
                    if !errors.is_empty() && attempt < attempts {
                        // Upstream's rule: a failed attempt leaves no results behind.
                        for o in &outcomes {
                            let _ = std::fs::remove_dir_all(&o.dir);
                        }
                        ctx.say(
                            Some(&stack.name),
                            format!(
                                "treatment {label} failed (attempt {attempt}/{attempts}): {}; its results are removed, retrying",
                                errors.join("; ")
                            ),
                        );
                        continue;
                    }
                    for o in &outcomes {
                        if let Ok(Some(w)) = judge(o) {
                            ctx.say(Some(&stack.name), format!("warning: treatment {label}: {w}"));
                        }
                        if let Some(r) = &o.report {
                            ctx.say(Some(&stack.name), format!("  {label}: {}", one_line(r)));
                        }
                    }
                    let failed_after = if attempts > 1 { format!(" after {attempts} attempts") } else { String::new() };
                    failures.extend(errors.iter().map(|e| format!("treatment {label}{failed_after}: {e}")));
                    let mut st = state(stack);
                    for o in outcomes {
                        st.results.push(o.dir.clone());
                        st.finished.push(FinishedRun {
                            experiment_id: eid.clone(),
                            treatment: run.treatment.clone(),
                            dir: o.dir,
                            report: o.report,
                        });
                    }
                    if errors.is_empty() {
                        done += 1;
                    }
                    break;
                }
            }
            if !failures.is_empty() {
                bail!("{} of {} treatment(s) failed:\n    {}", runs.len() - done, runs.len(), failures.join("\n    "));
            }
            Ok(StepOutcome::msg(format!("{done} treatment(s) finished; results in {}", ctx.settings.workspace.join("results").display())))
        })
    }
}

/// One attempt of a run treatment: `-j` harness instances under one experiment id, at once.
async fn run_instances(
    ctx: &PhaseContext,
    rs: &RunSettings,
    stack: &StackEntry,
    run: &PreparedRun,
    endpoint: &str,
    model: &str,
    eid: &str,
) -> Vec<InstanceOutcome> {
    let instances = (1..=rs.parallelism.max(1)).map(|i| {
        HarnessJob {
            harness: rs.harness,
            doc: &run.doc,
            profile_path: &run.profile_path,
            endpoint,
            model,
            dir: ctx.settings.workspace.join("results").join(format!("{eid}_{i}")),
            tokenizer: rs.tokenizer.as_deref(),
            timeout: rs.timeout,
            quiet: !ctx.settings.verbose,
            eid,
            stack: &stack.name,
            treatment: run.treatment.as_deref(),
            deployment: &stack.plan_hash,
        }
        .run()
    });
    crate::util::join::join_all(instances).await
}

fn one_line(r: &RunReport) -> String {
    let ms = |s: &Option<crate::stats::Summary>| s.as_ref().map_or("-".into(), |s| format!("{:.1}", s.mean * 1e3));
    format!(
        "{}/{} ok, {:.1} req/s, TTFT mean {} ms, TPOT mean {} ms, E2E mean {} ms, {} output tokens",
        r.requests.completed,
        r.requests.total,
        r.request_throughput,
        ms(&r.ttft_s),
        ms(&r.tpot_s),
        ms(&r.e2e_s),
        r.total_output_tokens
    )
}

struct CollectResults;

impl Step for CollectResults {
    fn number(&self) -> u32 {
        9
    }
    fn name(&self) -> &'static str {
        "collect_results"
    }
    fn description(&self) -> &'static str {
        "check every result directory holds the harness's result files"
    }
    fn phase(&self) -> Phase {
        Phase::Run
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        ctx.settings.dry_run.then(|| "dry run".into())
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let rs = settings(ctx)?;
            let dirs = state(stack).results.clone();
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

struct AnalyzeResults;

impl Step for AnalyzeResults {
    fn number(&self) -> u32 {
        12
    }
    fn name(&self) -> &'static str {
        "analyze_results"
    }
    fn description(&self) -> &'static str {
        "summarise every result (with --analyze)"
    }
    fn phase(&self) -> Phase {
        Phase::Run
    }
    fn per_stack(&self) -> bool {
        false
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
                for run in &state(stack).finished {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_profile_names() {
        assert_eq!(rendered_name(Path::new("p/sanity_random.yaml.in"), Some("rate5")), "sanity_random-rate5.yaml");
        assert_eq!(rendered_name(Path::new("p/sanity_random.yaml"), None), "sanity_random.yaml");
        assert_eq!(rendered_name(Path::new("p/noext.in"), Some("t")), "noext-t");
    }

    #[test]
    fn experiment_ids_follow_upstream() {
        let id = experiment_id(HarnessKind::Llmd, Some("rate5"));
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts[0], "llmd");
        assert_eq!(parts[1], "rate5");
        assert!(parts[2].parse::<u64>().is_ok());
        assert_eq!(parts[3].len(), 6);
        assert_ne!(id, experiment_id(HarnessKind::Llmd, Some("rate5")));
    }

    fn outcome(total: usize, failed: usize) -> InstanceOutcome {
        let mut r = RunReport::default();
        r.requests.total = total;
        r.requests.failed = failed;
        r.requests.completed = total - failed;
        r.requests.errors.insert("ServiceUnavailableError".into(), failed);
        InstanceOutcome { dir: PathBuf::from("d"), tally: Some(Tally::of_report(&r)), report: Some(r), error: None }
    }

    #[test]
    fn treatments_fail_on_majority_failures() {
        assert_eq!(judge(&outcome(10, 0)), Ok(None));
        assert!(judge(&outcome(10, 1)).unwrap().is_some());
        assert!(judge(&outcome(10, 6)).is_err());
        assert!(judge(&outcome(0, 0)).is_err());
        assert!(judge(&outcome(10, 6)).unwrap_err().contains("6 of 10 requests failed (6 ServiceUnavailableError)"));
        assert!(judge(&InstanceOutcome { dir: PathBuf::new(), report: None, tally: None, error: Some("boom".into()) }).is_err());
        let external = InstanceOutcome {
            dir: PathBuf::new(),
            report: None,
            tally: Some(Tally { total: 10, failed: 0, errors: String::new() }),
            error: None,
        };
        assert_eq!(judge(&external), Ok(None));
    }
}
