//! The native load generator: closed and open loops, absolute arrival schedules, a
//! concurrency cap with client-queue accounting, multi-stage plans and warm-up.
//!
//! * **Open loop** (`rate` stages): arrival offsets are drawn up front — constant
//!   `1/rate`, Poisson, or Gamma with shape `burstiness` (vLLM's convention; 1 is
//!   Poisson) — and a dedicated pacer thread releases each request at `stage start +
//!   offset` (absolute deadlines, 1 ns timer slack), so send lateness never accumulates
//!   and does not depend on how busy the runtime's workers are. With `max_concurrency`,
//!   a request that finds every slot busy waits in the client queue; its record keeps
//!   both the scheduled and the actual send time.
//! * **Closed loop** (`concurrency` stages): that many users, each sending its next
//!   request when the previous one finishes.
//! * A stage ends after `requests` requests or `duration` seconds (whichever is given;
//!   both: whichever comes first). Warm-up requests are sent and recorded but flagged.
//! * A `duration` stage is measured over its duration, never longer: requests still in
//!   flight `grace` seconds after it ended are cancelled and recorded as incomplete, so
//!   one hung request cannot stretch the run (or the report's window, see
//!   [`super::window`]) to the request timeout.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::dataset::{DatasetSpec, Prompt};
use super::openai::{ChunkMsg, ErrorBody, request_body};
use super::record::{RequestRecord, Status};
use super::window::StageWindow;
use crate::http::client::{Conn, Endpoint, SseSplitter};
use crate::timing::{instant_to_mono_ns, mono_ns};
use crate::util::rng::Rng;

/// The OpenAI API a run calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    #[default]
    Completions,
    Chat,
}

/// How request start times are spaced in an open-loop stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    Constant,
    #[default]
    Poisson,
    Gamma,
}

/// One stage of a load plan: `rate` or `concurrency`, and `duration` or `requests`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Requests per second (open loop).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Concurrent users (closed loop).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Length of the stage in seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Requests the stage sends.
    #[serde(default)]
    pub requests: Option<usize>,
}

/// Requests left out of the statistics at the start of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    /// The first N requests.
    #[serde(default)]
    pub requests: usize,
    /// Seconds from the start of the first stage.
    #[serde(default)]
    pub duration: f64,
}

/// The load plan: arrival process and stages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Arrival process of open-loop stages.
    #[serde(default)]
    pub arrival: Arrival,
    /// Gamma shape for `arrival: gamma` (1 = Poisson; larger = more regular).
    #[serde(default = "one")]
    pub burstiness: f64,
    /// At most this many requests in flight (open loop); later ones wait.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Stages, run one after another.
    pub stages: Vec<Stage>,
    /// Requests excluded from the statistics.
    #[serde(default)]
    pub warmup: Warmup,
    /// Seconds requests still in flight when a `duration` stage ends may take to finish;
    /// then they are cancelled and counted as incomplete.
    #[serde(default = "default_grace")]
    pub grace: f64,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_timeout() -> f64 {
    600.0
}
/// Default of [`LoadSpec::grace`].
pub fn default_grace() -> f64 {
    5.0
}

/// A native-harness workload profile (`workload/profiles/llmd/*.yaml.in`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadProfile {
    /// Base URL of the server (filled in by `llmd run`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Model name sent with each request (`REPLACE_ENV_LLMDBENCH_DEPLOY_CURRENT_MODEL`).
    #[serde(default)]
    pub model: Option<String>,
    /// `completions` or `chat`.
    #[serde(default)]
    pub api: Api,
    /// Stream tokens (SSE); TTFT and ITL need it.
    #[serde(default = "yes")]
    pub stream: bool,
    /// Ask the server to ignore end-of-sequence, so completions have `output_len` tokens.
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    /// The prompts.
    #[serde(default)]
    pub dataset: DatasetSpec,
    /// The load plan.
    pub load: LoadSpec,
    /// Seed of prompts and arrival times.
    #[serde(default)]
    pub seed: u64,
    /// Seconds one request may take.
    #[serde(default = "default_timeout")]
    pub request_timeout: f64,
    /// A tokenizer.json for the dataset (default: the embedded cl100k_base).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

impl LoadProfile {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.load.stages.is_empty() {
            bail!("load.stages is empty: give at least one stage, e.g. {{rate: 10, duration: 30}}");
        }
        for (i, s) in self.load.stages.iter().enumerate() {
            match (s.rate, s.concurrency) {
                (Some(_), Some(_)) => bail!("load.stages.{i}: give either rate or concurrency, not both"),
                (None, None) => bail!("load.stages.{i}: needs rate (requests/s) or concurrency (users)"),
                (Some(r), None) if !(r > 0.0 && r.is_finite()) => bail!("load.stages.{i}.rate must be a positive number, got {r}"),
                (None, Some(0)) => bail!("load.stages.{i}.concurrency must be at least 1"),
                _ => {}
            }
            if s.duration.is_none() && s.requests.is_none() {
                bail!("load.stages.{i}: needs duration (seconds) or requests (count)");
            }
            if s.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
                bail!("load.stages.{i}.duration must be a positive number of seconds");
            }
        }
        if self.load.burstiness <= 0.0 || !self.load.burstiness.is_finite() {
            bail!("load.burstiness must be positive");
        }
        if self.load.max_concurrency == Some(0) {
            bail!("load.max_concurrency must be at least 1");
        }
        if self.request_timeout.is_nan() || self.request_timeout <= 0.0 {
            bail!("request_timeout must be positive");
        }
        if !(self.load.grace >= 0.0 && self.load.grace.is_finite()) {
            bail!("load.grace must be zero or a positive number of seconds");
        }
        match &self.dataset {
            DatasetSpec::Random { range_ratio, .. } if !(0.0..1.0).contains(range_ratio) => {
                bail!("dataset.range_ratio must be in [0, 1), got {range_ratio} (lengths vary in [L(1-r), L(1+r)])")
            }
            DatasetSpec::File { path, .. } if !path.is_file() => {
                bail!(
                    "dataset.path {} is not a file: give a ShareGPT JSON list or a JSONL file of {{\"prompt\": ...}} lines",
                    path.display()
                )
            }
            _ => {}
        }
        if let Some(t) = self.tokenizer.as_ref().filter(|t| !t.is_file()) {
            bail!("tokenizer {} is not a file: give a Hugging Face tokenizer.json", t.display());
        }
        Ok(())
    }
}

/// Gamma(shape k, scale θ) by Marsaglia–Tsang.
fn gamma(rng: &mut Rng, k: f64, theta: f64) -> f64 {
    if k < 1.0 {
        let u = rng.next_f64().max(f64::MIN_POSITIVE);
        return gamma(rng, k + 1.0, theta) * u.powf(1.0 / k);
    }
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.next_f64().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v * theta;
        }
    }
}

/// Arrival offsets (seconds from stage start) for an open-loop stage.
pub fn arrival_offsets(
    rng: &mut Rng,
    arrival: Arrival,
    burstiness: f64,
    rate: f64,
    duration: Option<f64>,
    requests: Option<usize>,
) -> Vec<f64> {
    let mut out = Vec::new();
    if arrival == Arrival::Constant {
        // i / rate, not a running sum: rate x duration requests exactly, no drift.
        let by_duration = duration.map_or(usize::MAX, |d| (d * rate - 1e-9).ceil().max(0.0) as usize);
        let n = requests.unwrap_or(usize::MAX).min(by_duration);
        return (0..n).map(|i| i as f64 / rate).collect();
    }
    let mut t = 0.0;
    loop {
        if requests.is_some_and(|n| out.len() >= n) {
            break;
        }
        if duration.is_some_and(|d| t >= d) {
            break;
        }
        out.push(t);
        t += match arrival {
            Arrival::Constant => unreachable!("handled above"),
            Arrival::Poisson => -rng.next_f64().max(f64::MIN_POSITIVE).ln() / rate,
            Arrival::Gamma => gamma(rng, burstiness, 1.0 / (rate * burstiness)),
        };
    }
    out
}

/// A request ready to send: bodies are serialized once per prompt, up front.
struct Prepared {
    id: String,
    path: &'static str,
    body: Arc<[u8]>,
    input_len: u32,
    requested_output: u32,
    stage: usize,
    warmup: bool,
}

struct Shared {
    endpoint: Endpoint,
    pool: Mutex<Vec<Conn>>,
    timeout: Duration,
}

/// Connections opened before the first stage: the users of a closed loop, the
/// concurrency cap of an open loop, else about one second of arrivals — so the first
/// requests do not pay for (or compete with) a storm of TCP handshakes.
fn connections_to_open(load: &LoadSpec) -> usize {
    let want = load
        .stages
        .iter()
        .map(|s| match (s.concurrency, load.max_concurrency, s.rate) {
            (Some(users), _, _) => users,
            (None, Some(cap), _) => cap,
            (None, None, Some(rate)) => rate.ceil() as usize,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    want.min(1024)
}

/// Opens `n` connections into the pool, 64 at a time. Failures are left to the requests
/// themselves (they connect on demand and record the error).
async fn preconnect(shared: &Shared, n: usize) {
    let mut opened = 0;
    while opened < n {
        let batch = (n - opened).min(64);
        let conns = crate::util::join::join_all((0..batch).map(|_| Conn::connect(&shared.endpoint, Duration::from_secs(5)))).await;
        let ok: Vec<Conn> = conns.into_iter().filter_map(Result::ok).collect();
        if ok.len() < batch {
            opened = n;
        } else {
            opened += batch;
        }
        shared.pool.lock().unwrap_or_else(|e| e.into_inner()).extend(ok);
    }
}

/// Seconds of a stage and its grace: when its stragglers are cancelled.
#[derive(Clone, Copy)]
struct Cutoff {
    at: Instant,
    grace: f64,
}

async fn execute(shared: &Shared, p: &Prepared, scheduled_ns: u64, cutoff: Option<Cutoff>) -> RequestRecord {
    let mut rec = blank_record(p, scheduled_ns);
    let timeout_at = tokio::time::Instant::now() + shared.timeout;
    let cut = cutoff.map(|c| tokio::time::Instant::from_std(c.at)).filter(|&c| c < timeout_at);
    let outcome = tokio::time::timeout_at(cut.unwrap_or(timeout_at), exchange(shared, p, &mut rec)).await;
    rec.done_ns = mono_ns();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if rec.status == Status::Ok {
                rec.status = if e.kind() == std::io::ErrorKind::UnexpectedEof && rec.first_token_ns.is_some() {
                    Status::Incomplete
                } else {
                    Status::Transport
                };
                rec.error = Some(error_class(&e));
            }
        }
        Err(_) if cut.is_some() => {
            rec.status = Status::Incomplete;
            let grace = cutoff.map_or(0.0, |c| c.grace);
            rec.error = Some(format!("cancelled: still in flight {grace} s after its stage ended"));
        }
        Err(_) => {
            rec.status = Status::Timeout;
            rec.error = Some(format!("no complete response within {:?}", shared.timeout));
        }
    }
    if rec.sent_ns == 0 {
        rec.sent_ns = rec.done_ns;
    }
    rec
}

/// An error's class for the report: the I/O error kind, with the descriptor limit named
/// (Rust has no stable kind for EMFILE; it would read "Uncategorized").
fn error_class(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) => format!("TooManyOpenFiles: {e} (raise `ulimit -n`)"),
        Some(libc::ENFILE) => format!("TooManyOpenFilesInSystem: {e}"),
        Some(libc::EADDRNOTAVAIL) => format!("AddrNotAvailable: {e} (out of local ports?)"),
        _ => format!("{:?}: {e}", e.kind()),
    }
}

fn blank_record(p: &Prepared, scheduled_ns: u64) -> RequestRecord {
    RequestRecord {
        id: p.id.clone(),
        stage: p.stage,
        warmup: p.warmup,
        scheduled_ns,
        sent_ns: 0,
        first_token_ns: None,
        last_token_ns: None,
        done_ns: 0,
        chunks: Vec::new(),
        input_len: p.input_len,
        requested_output: p.requested_output,
        prompt_tokens: None,
        completion_tokens: None,
        cached_tokens: None,
        status: Status::Ok,
        http_status: None,
        error: None,
    }
}

async fn exchange(shared: &Shared, p: &Prepared, rec: &mut RequestRecord) -> std::io::Result<()> {
    let pooled = shared.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut conn = match pooled {
        Some(c) => c,
        None => Conn::connect(&shared.endpoint, Duration::from_secs(10)).await?,
    };
    let path = format!("{}{}", shared.endpoint.prefix, p.path);
    rec.sent_ns = conn.post_json(&path, &p.body, &[("x-request-id", &p.id)]).await?;
    let head = conn.read_head().await?;
    rec.http_status = Some(head.status);
    let mut body = Vec::new();
    let mut done = false;
    if head.status == 200 && head.event_stream {
        let mut sse = SseSplitter::default();
        let mut usage: Option<(Option<u32>, Option<u32>, Option<u32>)> = None;
        let mut first = None;
        let mut chunks = Vec::new();
        let mut bad_event = None;
        conn.read_body(&head, |ns, bytes| {
            sse.feed(ns, bytes, |ns, data| {
                if data == b"[DONE]" {
                    done = true;
                    return;
                }
                match serde_json::from_slice::<ChunkMsg>(data) {
                    Ok(msg) => {
                        if let Some(u) = &msg.usage {
                            usage = Some((
                                u.prompt_tokens,
                                u.completion_tokens,
                                u.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens),
                            ));
                        }
                        if let Some(choice) = msg.choices.first() {
                            if first.is_none() {
                                first = Some(ns);
                            }
                            if !choice.content().is_empty() {
                                chunks.push((ns, 1u32));
                            }
                        }
                    }
                    Err(e) => bad_event = Some(e.to_string()),
                }
            })
        })
        .await?;
        rec.first_token_ns = first;
        rec.last_token_ns = chunks.last().map(|c| c.0);
        rec.chunks = chunks;
        if let Some((p, c, h)) = usage {
            rec.prompt_tokens = p;
            rec.completion_tokens = c;
            rec.cached_tokens = h;
        }
        if let Some(e) = bad_event {
            rec.status = Status::Incomplete;
            rec.error = Some(format!("malformed SSE event: {e}"));
        } else if !done {
            rec.status = Status::Incomplete;
            rec.error = Some("stream ended without [DONE]".into());
        }
    } else {
        let mut last_ns = 0;
        conn.read_body(&head, |ns, bytes| {
            body.extend_from_slice(bytes);
            last_ns = ns;
        })
        .await?;
        if head.status == 200 {
            match serde_json::from_slice::<ChunkMsg>(&body) {
                Ok(msg) => {
                    rec.first_token_ns = Some(last_ns);
                    rec.last_token_ns = Some(last_ns);
                    if let Some(u) = msg.usage {
                        rec.prompt_tokens = u.prompt_tokens;
                        rec.completion_tokens = u.completion_tokens;
                        rec.cached_tokens = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
                    }
                    rec.chunks = vec![(last_ns, rec.completion_tokens.unwrap_or(1))];
                }
                Err(e) => {
                    rec.status = Status::Incomplete;
                    rec.error = Some(format!("malformed response body: {e}"));
                }
            }
        } else {
            rec.status = Status::HttpError;
            let kind = serde_json::from_slice::<ErrorBody>(&body).ok().and_then(|e| e.error.and_then(|d| d.kind).or(e.kind));
            rec.error = Some(kind.unwrap_or_else(|| format!("HTTP {}", head.status)));
        }
    }
    if conn.reusable {
        shared.pool.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
    }
    Ok(())
}

/// A running plan's live counters (for progress output).
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicUsize,
    pub done: AtomicUsize,
    pub failed: AtomicUsize,
}

/// Everything a run produced.
pub struct RunOutput {
    pub records: Vec<RequestRecord>,
    /// Each stage's measured window.
    pub stages: Vec<StageWindow>,
    pub started_ns: u64,
    pub finished_ns: u64,
}

/// What every request task shares.
struct Plan {
    shared: Shared,
    nonce: String,
    path: &'static str,
    /// One serialized body per prompt.
    bodies: Vec<Arc<[u8]>>,
    prompts: Vec<Prompt>,
    warmup_requests: usize,
    warmup_until: Instant,
    limiter: Option<Arc<Semaphore>>,
    records: Mutex<Vec<RequestRecord>>,
    progress: Arc<Progress>,
}

impl Plan {
    fn prepare(&self, n: usize, stage: usize, at: Instant) -> Prepared {
        let i = n % self.prompts.len();
        Prepared {
            id: format!("llmd-{}-{n}", self.nonce),
            path: self.path,
            body: self.bodies[i].clone(),
            input_len: self.prompts[i].input_len as u32,
            requested_output: self.prompts[i].output_len as u32,
            stage,
            warmup: n < self.warmup_requests || at < self.warmup_until,
        }
    }

    /// Sends one request (after a concurrency slot, if capped) and records it.
    async fn send(&self, prepared: Prepared, scheduled_ns: u64, cutoff: Option<Cutoff>) {
        let permit = match &self.limiter {
            Some(l) => {
                let wait = l.clone().acquire_owned();
                match cutoff {
                    Some(c) => match tokio::time::timeout_at(tokio::time::Instant::from_std(c.at), wait).await {
                        Ok(p) => Some(p),
                        Err(_) => {
                            return self.not_sent(&prepared, scheduled_ns, "waited for a concurrency slot past its stage's end + grace");
                        }
                    },
                    None => Some(wait.await),
                }
            }
            None => None,
        };
        let _permit = permit.map(|p| p.expect("semaphore open"));
        self.progress.sent.fetch_add(1, Ordering::Relaxed);
        let rec = execute(&self.shared, &prepared, scheduled_ns, cutoff).await;
        self.record(rec);
    }

    /// Records a request that was never sent (its stage ended before it could be).
    fn not_sent(&self, prepared: &Prepared, scheduled_ns: u64, why: &str) {
        let mut rec = blank_record(prepared, scheduled_ns);
        rec.done_ns = mono_ns();
        rec.sent_ns = rec.done_ns;
        rec.status = Status::Incomplete;
        rec.error = Some(format!("not sent: {why}"));
        self.record(rec);
    }

    fn record(&self, rec: RequestRecord) {
        if !rec.ok() {
            self.progress.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
    }
}

/// How the pacer catches up when it has fallen behind its schedule: releasing every
/// overdue request back to back would keep a real-time thread on the CPU, and the
/// runtime workers that must send those requests (on a 2-core machine, all of them)
/// would wait for it. So after [`CatchUp::BURST`] late releases in a row it sleeps
/// [`CatchUp::PAUSE`]; an on-time release (which slept anyway) starts a new count.
#[derive(Debug, Default)]
struct CatchUp {
    streak: usize,
}

impl CatchUp {
    const BURST: usize = 32;
    const PAUSE: Duration = Duration::from_micros(50);

    /// The pause owed after a release that was `late` (its deadline already passed).
    fn after_release(&mut self, late: bool) -> Option<Duration> {
        if !late {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        (self.streak.is_multiple_of(Self::BURST)).then_some(Self::PAUSE)
    }
}

/// Releases an open-loop stage's requests on their schedule.
///
/// The pacer is a dedicated OS thread sleeping on absolute deadlines (1 ns timer slack),
/// not a task: a task's timer only fires when a runtime worker gets round to polling
/// the timer, which under load — every worker busy reading responses — is milliseconds
/// late. At each deadline the pacer spawns the request onto the runtime.
fn pace(
    plan: Arc<Plan>,
    handle: tokio::runtime::Handle,
    stage: usize,
    start: Instant,
    offsets: Vec<f64>,
    first: usize,
    cutoff: Option<Cutoff>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    // Best effort: as a real-time thread the pacer preempts the busy runtime (and a
    // server on the same cores) the moment its deadline passes. It sleeps until each
    // release and, when it has fallen behind, pauses every few releases (see
    // `CatchUp`), so it cannot starve anything; without CAP_SYS_NICE this simply fails.
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: changes only the calling thread's scheduling policy.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    let mut tasks = Vec::with_capacity(offsets.len());
    let mut catch_up = CatchUp::default();
    for (k, off) in offsets.into_iter().enumerate() {
        let at = start + Duration::from_secs_f64(off);
        let now = Instant::now();
        let late = at <= now;
        if !late {
            std::thread::sleep(at - now);
        }
        if let Some(pause) = catch_up.after_release(late) {
            std::thread::sleep(pause);
        }
        let prepared = plan.prepare(first + k, stage, at);
        if cutoff.is_some_and(|c| Instant::now() >= c.at) {
            // The pacer fell so far behind that the stage and its grace are over.
            plan.not_sent(&prepared, instant_to_mono_ns(at), "the client fell behind its schedule past the stage's end + grace");
            continue;
        }
        let plan = plan.clone();
        tasks.push(handle.spawn(async move { plan.send(prepared, instant_to_mono_ns(at), cutoff).await }));
    }
    tasks
}

/// Runs a profile against `endpoint`.
pub async fn run(profile: &LoadProfile, endpoint: Endpoint, model: &str, progress: Arc<Progress>) -> Result<RunOutput> {
    profile.validate()?;
    match crate::util::raise_nofile_limit() {
        Ok((_, after)) if after < 2 * connections_to_open(&profile.load) as u64 + 64 => {
            say!("warning: only {after} open files allowed (ulimit -n): this load may fail with TooManyOpenFiles")
        }
        Ok(_) => {}
        Err(e) => say!("warning: cannot raise the open-file limit: {e}"),
    }
    let (tokenizer, words) = crate::tokenize::load(profile.tokenizer.as_deref()).context("loading the dataset tokenizer")?;
    let prompts = profile.dataset.build(tokenizer, words, profile.seed)?;
    let shared = Shared { endpoint, pool: Mutex::new(Vec::new()), timeout: Duration::from_secs_f64(profile.request_timeout) };
    preconnect(&shared, connections_to_open(&profile.load)).await;
    let started = Instant::now();
    let plan = Arc::new(Plan {
        shared,
        nonce: format!("{:x}", mono_ns() & 0xff_ffff_ffff),
        path: match profile.api {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        },
        bodies: prompts.iter().map(|p| Arc::from(request_body(profile, model, p))).collect(),
        prompts,
        warmup_requests: profile.load.warmup.requests,
        warmup_until: started + Duration::from_secs_f64(profile.load.warmup.duration),
        limiter: profile.load.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
        records: Mutex::new(Vec::new()),
        progress,
    });
    let mut rng = Rng::new(profile.seed);
    let mut issued = 0usize;
    let mut windows = Vec::with_capacity(profile.load.stages.len());
    let grace = profile.load.grace;
    for (stage_idx, stage) in profile.load.stages.iter().enumerate() {
        let stage_start = Instant::now() + Duration::from_millis(2);
        let deadline = stage.duration.map(|d| stage_start + Duration::from_secs_f64(d));
        let cutoff = deadline.map(|d| Cutoff { at: d + Duration::from_secs_f64(grace), grace });
        windows.push(StageWindow {
            stage: stage_idx,
            start_ns: instant_to_mono_ns(stage_start),
            end_ns: deadline.map(instant_to_mono_ns),
            grace_s: grace,
        });
        if let Some(rate) = stage.rate {
            let offsets = arrival_offsets(&mut rng, profile.load.arrival, profile.load.burstiness, rate, stage.duration, stage.requests);
            let count = offsets.len();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (plan, handle, first) = (plan.clone(), tokio::runtime::Handle::current(), issued);
            std::thread::Builder::new()
                .name("llmd-pacer".into())
                .spawn(move || {
                    let _ = tx.send(pace(plan, handle, stage_idx, stage_start, offsets, first, cutoff));
                })
                .context("cannot start the pacer thread")?;
            let tasks = rx.await.context("the pacer thread died")?;
            for t in tasks {
                t.await.context("a request task panicked")?;
            }
            issued += count;
        } else if let Some(users) = stage.concurrency {
            let remaining = Arc::new(AtomicUsize::new(stage.requests.unwrap_or(usize::MAX)));
            let counter = Arc::new(AtomicUsize::new(issued));
            let mut tasks = Vec::with_capacity(users);
            for _ in 0..users {
                let (plan, remaining, counter) = (plan.clone(), remaining.clone(), counter.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        if remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1)).is_err() {
                            break;
                        }
                        let n = counter.fetch_add(1, Ordering::AcqRel);
                        let now = Instant::now();
                        let prepared = plan.prepare(n, stage_idx, now);
                        plan.send(prepared, instant_to_mono_ns(now), cutoff).await;
                    }
                }));
            }
            for t in tasks {
                t.await.context("a user task panicked")?;
            }
            issued = counter.load(Ordering::Acquire);
        }
    }
    let finished_ns = mono_ns();
    let mut records = std::mem::take(&mut *plan.records.lock().unwrap_or_else(|e| e.into_inner()));
    records.sort_by_key(|r| r.scheduled_ns);
    Ok(RunOutput { records, stages: windows, started_ns: instant_to_mono_ns(started), finished_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_processes() {
        let mut rng = Rng::new(3);
        let c = arrival_offsets(&mut rng, Arrival::Constant, 1.0, 100.0, Some(1.0), None);
        assert_eq!(c.len(), 100);
        assert!((c[1] - 0.01).abs() < 1e-12);
        assert_eq!(arrival_offsets(&mut rng, Arrival::Constant, 1.0, 12.0, Some(1.5), None).len(), 18);
        assert_eq!(arrival_offsets(&mut rng, Arrival::Constant, 1.0, 12.0, Some(1.5), Some(5)).len(), 5);
        let p = arrival_offsets(&mut rng, Arrival::Poisson, 1.0, 1000.0, None, Some(20_000));
        let mean_gap = p.last().unwrap() / (p.len() - 1) as f64;
        assert!((mean_gap - 0.001).abs() < 0.00005, "{mean_gap}");
        let g = arrival_offsets(&mut rng, Arrival::Gamma, 4.0, 1000.0, None, Some(20_000));
        let gaps: Vec<f64> = g.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let cv = (gaps.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt() / mean;
        assert!((mean - 0.001).abs() < 0.00005, "{mean}");
        assert!((cv - 0.5).abs() < 0.05, "gamma(k=4) has CV 1/sqrt(4): {cv}");
    }

    #[test]
    fn profiles_validate() {
        let p: LoadProfile = serde_json::from_value(serde_json::json!({"load": {"stages": [{"rate": 10, "duration": 1}]}})).unwrap();
        p.validate().unwrap();
        for bad in [
            serde_json::json!({"load": {"stages": []}}),
            serde_json::json!({"load": {"stages": [{"rate": 10}]}}),
            serde_json::json!({"load": {"stages": [{"rate": 10, "concurrency": 2, "requests": 1}]}}),
            serde_json::json!({"load": {"stages": [{"rate": -1, "requests": 1}]}}),
        ] {
            let p: LoadProfile = serde_json::from_value(bad.clone()).unwrap();
            assert!(p.validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<LoadProfile>(serde_json::json!({"load": {"stages": [], "oops": 1}})).is_err());
    }

    #[test]
    fn descriptor_exhaustion_is_named() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert!(error_class(&emfile).starts_with("TooManyOpenFiles: "), "{}", error_class(&emfile));
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(error_class(&refused).starts_with("ConnectionRefused: "), "{}", error_class(&refused));
    }

    #[test]
    fn a_late_pacer_pauses_every_burst() {
        let mut c = CatchUp::default();
        let pauses = (0..100).filter_map(|_| c.after_release(true)).count();
        assert_eq!(pauses, 100 / CatchUp::BURST, "one pause per burst of late releases");
        // On time: it slept until the release, so no pause, and the count restarts.
        assert_eq!(c.after_release(false), None);
        assert!((1..CatchUp::BURST).all(|_| c.after_release(true).is_none()));
        assert_eq!(c.after_release(true), Some(CatchUp::PAUSE));
    }
}
