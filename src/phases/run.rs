//! The run executor: one run treatment against one endpoint, with retries.
//!
//! [`run_treatment`] is called by the run phase's `deploy_harness` step, by `llmd
//! experiment` and by the build's run nodes. Each attempt gets a new experiment id
//! (upstream's `<harness>[-<treatment>]-<unix_ts>-<rand6>`) and runs its harness
//! instances at once, each into `results/<experiment-id>_<i>/`; a failed attempt's
//! results are removed before the next (upstream's rule) and the last attempt's stay
//! for inspection.
//!
//! A treatment fails when its harness fails or more than `max_failure_fraction` of its
//! requests fail (default half); a treatment with fewer failures succeeds with a
//! warning. (A build also fails a run whose server died during it, whatever the
//! fraction: see `engine::execute`.) Failed requests never enter
//! latency statistics (see [`crate::harness::report`]).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::error::Warnings;
use crate::harness::RunReport;
use crate::harness::external::{self, HarnessKind};
use crate::harness::profile::render_profile_text;
use crate::http::Endpoint;
use crate::util::unix_now;
use crate::yaml::{Node, Value, map_of};

/// One rendered profile, ready to run.
#[derive(Clone, Debug)]
pub struct PreparedRun {
    pub treatment: Option<String>,
    pub profile_path: PathBuf,
    pub doc: Node,
    /// The rendered profile as written (what a harness pod mounts).
    pub text: String,
}

/// One finished harness instance.
#[derive(Clone, Debug)]
pub struct FinishedRun {
    pub treatment: Option<String>,
    pub dir: PathBuf,
    pub report: Option<RunReport>,
}

/// `REPLACE_ENV_*` values for a stack's profiles. Keys of build nodes render profiles
/// with a placeholder endpoint: the endpoint is known only once the stack runs, and a
/// key must not depend on it.
pub fn profile_values(stack: &str, model: &str, max_model_len: Option<String>, endpoint: &str) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("LLMDBENCH_DEPLOY_CURRENT_MODEL".into(), model.to_string());
    v.insert("LLMDBENCH_DEPLOY_CURRENT_TOKENIZER".into(), model.to_string());
    if let Some(len) = max_model_len {
        v.insert("LLMDBENCH_DEPLOY_CURRENT_MAX_MODEL_LEN".into(), len);
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
    /// Counts an external harness's result files report (no error classes).
    fn of_collected(c: &external::Collected) -> Tally {
        Tally { total: c.completed + c.failed, failed: c.failed, errors: String::new() }
    }

    fn of_report(r: &RunReport) -> Tally {
        let c = &r.requests;
        Tally {
            total: c.total as u64,
            failed: (c.failed + c.incomplete) as u64,
            errors: c.errors.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        }
    }
}

/// One harness instance of a run treatment's attempt.
struct Instance<'a> {
    req: &'a RunRequest<'a>,
    /// The attempt's experiment id.
    eid: &'a str,
    /// The instance's suffix: `<eid>_<index>`.
    index: usize,
    /// The result directory (created).
    dir: PathBuf,
}

/// How a harness instance ended.
pub struct InstanceOutcome {
    pub dir: PathBuf,
    pub report: Option<RunReport>,
    pub tally: Option<Tally>,
    pub error: Option<String>,
}

impl Instance<'_> {
    /// Runs the harness to completion and writes `run_metadata.yaml`; never panics on
    /// harness failure — it is in the outcome.
    async fn run(self) -> InstanceOutcome {
        let req = self.req;
        let (doc, profile_path, treatment) = (&req.run.doc, &req.run.profile_path, req.run.treatment.as_deref());
        let dir = self.dir.clone();
        let start = unix_now();
        // The model server's /metrics, scraped every second while the harness runs.
        let scrape_ep = Endpoint::parse(req.endpoint).ok();
        let scraper = {
            let (ep, label, dir) = (scrape_ep.clone(), req.stack.to_string(), dir.clone());
            async move {
                match ep {
                    Some(ep) => crate::analysis::metrics::scrape_forever(ep, label, dir, std::time::Duration::from_secs(1)).await,
                    None => std::future::pending().await,
                }
            }
        };
        // Where the harness sends requests: the launcher's endpoint when it runs away
        // from this machine (the scrape above still goes through `req.endpoint`).
        let harness_endpoint = req.launcher.map_or(req.endpoint, |l| l.endpoint());
        let harness = async {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            if let Some(launcher) = req.launcher {
                let profile_name = profile_path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
                let job = crate::backend::LaunchJob {
                    harness: req.harness.name(),
                    eid: self.eid,
                    instance: self.index,
                    profile_name: &profile_name,
                    profile_text: &req.run.text,
                    model: req.model,
                    dir: &dir,
                    timeout: req.timeout,
                    progress: (!req.quiet).then_some(req.stack),
                };
                launcher.launch(job).await?;
                let c = external::collect(req.harness, &dir)?;
                // The native harness's own report, as `llmd load` wrote it in the pod.
                return Ok(match req.harness {
                    HarnessKind::Llmd => {
                        let report = read_report(&dir.join("report.json"))?;
                        let tally = Tally::of_report(&report);
                        (Some(report), tally)
                    }
                    _ => (None, Tally::of_collected(&c)),
                });
            }
            match req.harness {
                HarnessKind::Llmd => {
                    let profile = crate::harness::profile::parse_native_profile(doc, &profile_path.display().to_string())?;
                    let ep = Endpoint::parse(req.endpoint).map_err(|e| anyhow::anyhow!("{}: {e}", req.endpoint))?;
                    let report = tokio::time::timeout(req.timeout, crate::harness::run_native(&profile, ep, req.model, &dir, req.quiet))
                        .await
                        .map_err(|_| anyhow::anyhow!("the native harness did not finish within {:?}", req.timeout))??;
                    let tally = Tally::of_report(&report);
                    Ok((Some(report), tally))
                }
                kind => {
                    let program = kind.locate()?;
                    let ext = external::prepare(kind, doc.clone(), program, req.endpoint, req.model, &dir, req.tokenizer)?;
                    external::run(&ext, &dir.join("harness.log"), req.timeout).await?;
                    Ok((None, Tally::of_collected(&external::collect(kind, &dir)?)))
                }
            }
        };
        let result: Result<(Option<RunReport>, Tally)> = tokio::select! {
            r = harness => r,
            () = scraper => unreachable!("the scraper loops until the harness finishes"),
        };
        if let Some(ep) = &scrape_ep {
            crate::analysis::metrics::scrape_once(ep, req.stack, &dir.join("metrics/raw").join(format!("{}.log", req.stack))).await;
        }
        let stop = unix_now();
        let (report, tally, error) = match result {
            Ok((r, t)) => (r, Some(t), None),
            Err(e) => (None, None, Some(format!("{e:#}"))),
        };
        let meta = map_of([
            ("eid", Node::str(self.eid)),
            ("harness", Node::str(req.harness.name())),
            ("treatment", treatment.map_or_else(Node::null, Node::str)),
            ("stack", Node::str(req.stack)),
            ("plan_hash", Node::str(req.deployment)),
            ("model", Node::str(req.model)),
            ("endpoint", Node::str(harness_endpoint)),
            ("profile", Node::str(profile_path.display().to_string())),
            // The native harness's seed (prompts and arrivals): repetitions differ by it.
            (
                "seed",
                if req.harness == HarnessKind::Llmd {
                    Node::from(doc.get("seed").and_then(Node::as_i64).unwrap_or(0))
                } else {
                    Node::null()
                },
            ),
            ("start", Node::bare(Value::Float(start))),
            ("stop", Node::bare(Value::Float(stop))),
            ("delta", Node::bare(Value::Float(stop - start))),
            ("rc", Node::bare(Value::Int(i64::from(error.is_some())))),
            ("version", Node::str(format!("llmd {}", env!("CARGO_PKG_VERSION")))),
            ("description", Node::str(format!("{} on {} ({})", req.harness.name(), req.stack, treatment.unwrap_or("profile as is")))),
            ("isolation", req.isolation.map_or_else(Node::null, Node::str)),
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

/// The native harness's `report.json`.
fn read_report(path: &Path) -> Result<RunReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a native harness report", path.display()))
}

/// Up to this fraction of a run's requests may fail (`max_failure_fraction`).
pub const DEFAULT_MAX_FAILURE_FRACTION: f64 = 0.5;

/// Judges a finished instance: `Err` fails the treatment, `Ok(Some)` is a warning.
pub fn judge(outcome: &InstanceOutcome, max_failure_fraction: f64) -> Result<Option<String>, String> {
    if let Some(e) = &outcome.error {
        return Err(e.clone());
    }
    let Some(t) = &outcome.tally else { return Err("the harness reported no request counts".into()) };
    let errors = if t.errors.is_empty() { String::new() } else { format!(" ({})", t.errors) };
    if t.total == 0 {
        return Err("the harness sent no requests".into());
    }
    if t.failed as f64 > max_failure_fraction * t.total as f64 {
        let allowed = if max_failure_fraction == DEFAULT_MAX_FAILURE_FRACTION {
            String::new()
        } else {
            format!(", more than max_failure_fraction {max_failure_fraction} allows")
        };
        return Err(format!("{} of {} requests failed{errors}{allowed}", t.failed, t.total));
    }
    Ok((t.failed > 0)
        .then(|| format!("{} of {} requests failed{errors}; they are counted, not in the latency statistics", t.failed, t.total)))
}

/// A workload profile to render for one run treatment.
pub struct ProfileJob<'a> {
    pub harness: HarnessKind,
    /// The profile file, and its text as read: a build passes the text its keys were
    /// computed from, so an edit after deciding cannot slip into the run.
    pub source: &'a Path,
    pub text: &'a str,
    /// [`profile_values`].
    pub values: &'a BTreeMap<String, String>,
    pub treatment: Option<&'a str>,
    pub overrides: &'a [(String, Node)],
    /// Where the rendered profile goes (`<workspace>/workload/profiles/<harness>/<stack>`).
    pub out_dir: &'a Path,
}

impl ProfileJob<'_> {
    /// Fills the placeholders, applies the overrides, checks a native profile parses,
    /// and (when `write`) writes the result under its rendered name.
    pub fn prepare(&self, write: bool, warnings: &mut Warnings) -> Result<PreparedRun> {
        let filled = crate::harness::profile::substitute_placeholders(self.text, self.values);
        let (doc, yaml) = render_profile_text(&filled, &self.source.display().to_string(), self.overrides, warnings)?;
        let file = self.out_dir.join(rendered_name(self.source, self.treatment));
        if self.harness == HarnessKind::Llmd {
            crate::harness::profile::parse_native_profile(&doc, &file.display().to_string())?;
        }
        if write {
            std::fs::create_dir_all(self.out_dir).with_context(|| format!("cannot create {}", self.out_dir.display()))?;
            crate::util::fs::write_atomic(&file, yaml.as_bytes())?;
        }
        Ok(PreparedRun { treatment: self.treatment.map(str::to_string), profile_path: file, doc, text: yaml })
    }
}

/// One run treatment to execute.
pub struct RunRequest<'a> {
    pub harness: HarnessKind,
    pub run: &'a PreparedRun,
    pub endpoint: &'a str,
    pub model: &'a str,
    pub stack: &'a str,
    /// The deployment key, for `run_metadata.yaml`.
    pub deployment: &'a str,
    /// `<workspace>/results`.
    pub results: &'a Path,
    /// Result-directory suffixes of the instances run at once (`<eid>_<i>`): `1..=N`
    /// for `-j N`; a build's repetition `r` runs one instance, `r..=r`.
    pub instances: RangeInclusive<usize>,
    pub tokenizer: Option<&'a Path>,
    pub timeout: Duration,
    pub quiet: bool,
    pub max_attempts: usize,
    /// [`judge`]'s threshold.
    pub max_failure_fraction: f64,
    /// Runs the harness away from this machine ([`crate::backend::Access::launcher`]);
    /// `None` runs it here against `endpoint`.
    pub launcher: Option<&'a dyn crate::backend::Launcher>,
    /// What may have run beside this measurement (`exclusive`, `per-stack`), recorded in
    /// `run_metadata.yaml` and the benchmark report.
    pub isolation: Option<&'a str>,
}

/// What a run treatment reports while it runs.
pub enum RunEvent<'a> {
    /// An attempt starts under this experiment id.
    Attempt { attempt: usize, attempts: usize, eid: &'a str },
    /// An attempt failed and its results were removed; another follows.
    Retry { attempt: usize, attempts: usize, error: &'a str },
}

/// The last attempt of a run treatment.
pub struct Attempted {
    pub eid: String,
    pub attempts: usize,
    pub outcomes: Vec<InstanceOutcome>,
    /// Why the attempt failed, one entry per failed instance; empty on success.
    pub errors: Vec<String>,
    /// Instances that succeeded with some failed requests ([`judge`]'s warnings).
    pub warnings: Vec<String>,
}

/// Runs a treatment up to `max_attempts` times (see the module documentation).
pub async fn run_treatment(req: &RunRequest<'_>, on_event: &mut (dyn FnMut(RunEvent<'_>) + Send)) -> Attempted {
    let attempts = req.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let eid = experiment_id(req.harness, req.run.treatment.as_deref());
        on_event(RunEvent::Attempt { attempt, attempts, eid: &eid });
        let jobs = req.instances.clone().map(|i| Instance { req, eid: &eid, index: i, dir: req.results.join(format!("{eid}_{i}")) }.run());
        let outcomes = crate::util::join::join_all(jobs).await;
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        for o in &outcomes {
            match judge(o, req.max_failure_fraction) {
                Err(e) => errors.push(format!("{e} ({})", o.dir.display())),
                Ok(Some(w)) => warnings.push(w),
                Ok(None) => {}
            }
        }
        if errors.is_empty() || attempt == attempts {
            return Attempted { eid, attempts, outcomes, errors, warnings };
        }
        for o in &outcomes {
            let _ = std::fs::remove_dir_all(&o.dir);
        }
        on_event(RunEvent::Retry { attempt, attempts, error: &errors.join("; ") });
        attempt += 1;
    }
}

/// A run report in one line, for progress output.
pub fn one_line(r: &RunReport) -> String {
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
        let half = DEFAULT_MAX_FAILURE_FRACTION;
        assert_eq!(judge(&outcome(10, 0), half), Ok(None));
        assert!(judge(&outcome(10, 1), half).unwrap().is_some());
        assert!(judge(&outcome(10, 5), half).is_ok());
        assert!(judge(&outcome(10, 6), half).is_err());
        assert!(judge(&outcome(0, 0), half).is_err());
        assert!(judge(&outcome(10, 6), half).unwrap_err().contains("6 of 10 requests failed (6 ServiceUnavailableError)"));
        let none = InstanceOutcome { dir: PathBuf::new(), report: None, tally: None, error: Some("boom".into()) };
        assert!(judge(&none, half).is_err());
        // A stricter threshold: one failure in ten is too many for 5%.
        let e = judge(&outcome(10, 1), 0.05).unwrap_err();
        assert!(e.contains("1 of 10 requests failed") && e.contains("max_failure_fraction 0.05"), "{e}");
        assert_eq!(judge(&outcome(10, 10), 1.0).map(|w| w.is_some()), Ok(true));
        let external = InstanceOutcome {
            dir: PathBuf::new(),
            report: None,
            tally: Some(Tally { total: 10, failed: 0, errors: String::new() }),
            error: None,
        };
        assert_eq!(judge(&external, DEFAULT_MAX_FAILURE_FRACTION), Ok(None));
    }
}
