//! `just bench-harness`: how faithfully the native harness keeps an open-loop schedule,
//! and how its achieved rate compares with guidellm's and inference-perf's.
//!
//! Against a zero-latency `llmd sim` (a separate process on the same 2 cores), each
//! harness runs constant-rate stages at 200, 1k, 3k and 10k requests/s (`BENCH_RATES`;
//! streamed completions, 16 prompt and 4 output tokens). Achieved rate: the native
//! harness's report (completed inside the stage's window / the window); guidellm's
//! successes / its benchmark duration; inference-perf's own `requests_per_sec`. From
//! the native harness's own records, also:
//!
//! * send lateness = send time − scheduled time, p50 / p99 / max (target p99 < 1 ms);
//! * completed requests and failures.
//!
//! guidellm and inference-perf run where installed (PATH, `LLMD_GUIDELLM_BIN`,
//! `LLMD_INFERENCE_PERF_BIN`), `BENCH_EXTERNAL_RUNS` runs each (default 1: they need
//! ~30 s of start-up per run here). Native figures are medians of `BENCH_RUNS` runs
//! (default 3) of `BENCH_SECONDS` seconds (default 5).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use llmd::harness::dataset::DatasetSpec;
use llmd::harness::load::{self, Api, Arrival, LoadProfile, LoadSpec, Progress, Stage, Warmup};
use llmd::http::client::Endpoint;

const MODEL: &str = "bench/model";

struct SimProcess {
    child: Child,
    port: u16,
}

impl SimProcess {
    fn start() -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmd"))
            .args(["sim", "--model", MODEL, "--port", "0", "--max-num-seqs", "100000", "--max-waiting-queue-length", "100000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start llmd sim");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        SimProcess { child, port }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn profile(rate: f64, seconds: f64) -> LoadProfile {
    LoadProfile {
        endpoint: None,
        model: Some(MODEL.into()),
        api: Api::Completions,
        stream: true,
        ignore_eos: true,
        dataset: DatasetSpec::Random { input_len: 16, output_len: 4, range_ratio: 0.0, prefix_len: 0, num_prompts: 1000 },
        load: LoadSpec {
            arrival: Arrival::Constant,
            burstiness: 1.0,
            max_concurrency: None,
            stages: vec![Stage { rate: Some(rate), concurrency: None, duration: Some(seconds), requests: None }],
            warmup: Warmup::default(),
            grace: llmd::harness::load::default_grace(),
        },
        seed: 1,
        request_timeout: 30.0,
        tokenizer: None,
    }
}

struct Figures {
    achieved: f64,
    late_p50_ms: f64,
    late_p99_ms: f64,
    late_max_ms: f64,
    completed: usize,
    failed: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn native_run(rt: &tokio::runtime::Runtime, port: u16, rate: f64, seconds: f64) -> Figures {
    let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let out = rt.block_on(load::run(&profile(rate, seconds), endpoint, MODEL, Arc::new(Progress::default()))).expect("load run");
    let recs = &out.records;
    // Completed inside the stage's window / the window: the report's achieved rate.
    let report = llmd::harness::report::RunReport::from_records(recs, Some(&out.stages));
    let mut late: Vec<f64> = recs.iter().map(|r| r.sent_ns.saturating_sub(r.scheduled_ns) as f64 / 1e6).collect();
    late.sort_by(f64::total_cmp);
    let completed = recs.iter().filter(|r| r.ok()).count();
    Figures {
        achieved: report.request_throughput,
        late_p50_ms: percentile(&late, 50.0),
        late_p99_ms: percentile(&late, 99.0),
        late_max_ms: *late.last().unwrap(),
        completed,
        failed: recs.len() - completed,
    }
}

fn tool(kind: llmd::harness::external::HarnessKind) -> Option<PathBuf> {
    llmd::harness::external::Tool::find(kind).ok().map(|t| t.program)
}

/// guidellm's achieved rate: successful requests / its benchmark's measured duration.
fn guidellm_run(bin: &PathBuf, tokenizer: &str, port: u16, rate: f64, seconds: f64) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--backend",
        &format!("kind=openai_http,target=http://127.0.0.1:{port},model={MODEL},request_format=/v1/completions"),
        "--profile",
        &format!("kind=constant,rate={rate}"),
        "--constraint",
        &format!("kind=max_duration,seconds={seconds}"),
        "--tokenizer",
        &format!("kind=huggingface_auto,model={tokenizer}"),
        "--data",
        "kind=synthetic_text,prompt_tokens=16,output_tokens=4",
        "--output",
        &format!("kind=json,path={}", out.display()),
        "--disable-console-interactive",
    ]);
    run_offline(cmd, "guidellm")?;
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).ok()?).ok()?;
    let b = &doc["benchmarks"][0];
    Some(b["metrics"]["request_totals"]["successful"].as_f64()? / b["duration"].as_f64()?)
}

/// inference-perf's achieved rate: its own `requests_per_sec` (successes / the span from
/// the first request's start to the last one's end). Successes per *scheduled* second
/// would flatter it: it sends late requests long after the stage's schedule ended.
fn inference_perf_run(bin: &PathBuf, tokenizer: &str, port: u16, rate: f64, seconds: f64) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let results = dir.path().join("results");
    let workers = ((rate / 500.0).ceil() as usize).clamp(1, 8);
    std::fs::write(
        &config,
        format!(
            "load:\n  type: constant\n  stages:\n  - rate: {rate}\n    duration: {seconds}\n  num_workers: {workers}\n  request_timeout: 60\n\
             api:\n  type: completion\n  streaming: true\n\
             server:\n  type: vllm\n  model_name: {MODEL}\n  base_url: http://127.0.0.1:{port}\n  ignore_eos: true\n\
             tokenizer:\n  pretrained_model_name_or_path: {tokenizer}\n\
             data:\n  type: random\n  input_distribution: {{min: 16, max: 16, mean: 16, std_dev: 0, total_count: 1000}}\n  output_distribution: {{min: 4, max: 4, mean: 4, std_dev: 0, total_count: 1000}}\n\
             report:\n  request_lifecycle:\n    summary: true\n\
             storage:\n  local_storage:\n    path: {}\n",
            results.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("--config_file").arg(&config).current_dir(dir.path());
    run_offline(cmd, "inference-perf")?;
    let summary = walk(&results).into_iter().find(|p| p.ends_with("summary_lifecycle_metrics.json"))?;
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(summary).ok()?).ok()?;
    doc["successes"]["throughput"]["requests_per_sec"].as_f64()
}

/// Runs a tool quietly with the Hugging Face hub offline; `None` (said on stderr) if it fails.
fn run_offline(mut cmd: Command, name: &str) -> Option<()> {
    let status =
        cmd.env("HF_HUB_OFFLINE", "1").env("TRANSFORMERS_OFFLINE", "1").stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?;
    if !status.success() {
        eprintln!("  {name} exited with {status}");
        return None;
    }
    Some(())
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let runs: usize = env_or("BENCH_RUNS", 3);
    let seconds: f64 = env_or("BENCH_SECONDS", 5.0);
    let external_runs: usize = env_or("BENCH_EXTERNAL_RUNS", 1);
    let rates: Vec<f64> = std::env::var("BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![200.0, 1000.0, 3000.0, 10000.0]);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sim = SimProcess::start();
    println!(
        "harnesses vs a zero-latency llmd sim ({runs} native runs x {seconds} s, medians; {external_runs} run(s) per external tool; all share this machine's cores)"
    );
    // Warm-up: the tokenizer, connections, the sim's allocator.
    native_run(&rt, sim.port, 500.0, 1.0);
    use llmd::harness::external::HarnessKind;
    let guidellm = tool(HarnessKind::Guidellm);
    let inference_perf = tool(HarnessKind::InferencePerf);
    let tokenizer = std::env::var("LLMD_TOKENIZER")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/tokenizers/qwen3").into());
    let mut table = Vec::new();
    for &rate in &rates {
        let figures: Vec<Figures> = (0..runs).map(|_| native_run(&rt, sim.port, rate, seconds)).collect();
        for f in &figures {
            println!(
                "  {rate:>6.0} req/s run: achieved {:>8.1} req/s ({:+.2}%), lateness p50 {:.3} ms p99 {:.3} ms max {:.2} ms, {} ok, {} failed",
                f.achieved,
                (f.achieved / rate - 1.0) * 100.0,
                f.late_p50_ms,
                f.late_p99_ms,
                f.late_max_ms,
                f.completed,
                f.failed
            );
        }
        let achieved = median(figures.iter().map(|f| f.achieved).collect());
        let p99 = median(figures.iter().map(|f| f.late_p99_ms).collect());
        let p50 = median(figures.iter().map(|f| f.late_p50_ms).collect());
        println!(
            "target {rate:>6.0} req/s: native achieved {achieved:>8.1} req/s ({:+.2}%), send lateness p50 {p50:.3} ms, p99 {p99:.3} ms (target < 1 ms; {:.2}x of budget)",
            (achieved / rate - 1.0) * 100.0,
            p99 / 1.0
        );
        let external = |bin: &Option<PathBuf>, f: &dyn Fn(&PathBuf) -> Option<f64>| -> Option<f64> {
            let bin = bin.as_ref()?;
            let got: Vec<f64> = (0..external_runs).filter_map(|_| f(bin)).collect();
            (!got.is_empty()).then(|| median(got))
        };
        let g = external(&guidellm, &|b| guidellm_run(b, &tokenizer, sim.port, rate, seconds));
        let ip = external(&inference_perf, &|b| inference_perf_run(b, &tokenizer, sim.port, rate, seconds));
        table.push((rate, achieved, g, ip));
    }
    let cell = |v: Option<f64>, native: f64| match v {
        Some(v) => format!("{v:>9.1} ({:>5.1}x)", native / v.max(1e-9)),
        None => format!("{:>17}", "-"),
    };
    println!("\nachieved req/s (each tool's measured duration); in brackets: native's rate / the tool's");
    println!("{:>8} {:>10} {:>17} {:>17}", "target", "native", "guidellm", "inference-perf");
    for (rate, native, g, ip) in table {
        println!("{rate:>8.0} {native:>10.1} {} {}", cell(g, native), cell(ip, native));
    }
    if guidellm.is_none() || inference_perf.is_none() {
        println!("(a tool that is not installed shows '-': see `llmd doctor`)");
    }
}
