//! `just bench-harness`: how faithfully the native harness keeps an open-loop schedule.
//!
//! Against a zero-latency `llmd sim` (a separate process on the same 2 cores), the
//! native harness runs constant-rate stages at 1k, 5k and 10k requests/s (streamed
//! completions, 16 prompt and 4 output tokens). From its own records:
//!
//! * achieved send rate = (n − 1) / (last send − first send), against the target
//!   (target: within ±1 % at 5k req/s);
//! * send lateness = send time − scheduled time, p50 / p99 / max (target p99 < 1 ms);
//! * completed requests and failures.
//!
//! Where guidellm is installed (on PATH or `LLMD_GUIDELLM_BIN`) its achieved rate on the
//! same simulator is printed beside ours (its own `requests_per_second` figure;
//! `BENCH_GUIDELLM_RUNS`, default 1). Figures are medians of `BENCH_RUNS` runs (default
//! 3) of `BENCH_SECONDS` seconds (default 5).

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
    let first = recs.iter().map(|r| r.sent_ns).min().unwrap();
    let last = recs.iter().map(|r| r.sent_ns).max().unwrap();
    let mut late: Vec<f64> = recs.iter().map(|r| r.sent_ns.saturating_sub(r.scheduled_ns) as f64 / 1e6).collect();
    late.sort_by(f64::total_cmp);
    let completed = recs.iter().filter(|r| r.ok()).count();
    Figures {
        achieved: (recs.len() - 1) as f64 / ((last - first) as f64 / 1e9),
        late_p50_ms: percentile(&late, 50.0),
        late_p99_ms: percentile(&late, 99.0),
        late_max_ms: *late.last().unwrap(),
        completed,
        failed: recs.len() - completed,
    }
}

fn guidellm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LLMD_GUIDELLM_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("guidellm")).find(|p| p.is_file())
}

/// guidellm's achieved request rate (successful requests / benchmark duration).
fn guidellm_run(bin: &PathBuf, tokenizer: &str, port: u16, rate: f64, seconds: f64) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    let status = Command::new(bin)
        .args([
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
        ])
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        eprintln!("  guidellm exited with {status}");
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).ok()?).ok()?;
    let b = &doc["benchmarks"][0];
    // guidellm's own figure; successful requests over the benchmark's duration otherwise.
    b["metrics"]["requests_per_second"]["successful"]["mean"]
        .as_f64()
        .or_else(|| Some(b["metrics"]["request_totals"]["successful"].as_f64()? / b["duration"].as_f64()?))
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let seconds: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sim = SimProcess::start();
    println!(
        "native harness pacing vs a zero-latency llmd sim ({runs} runs x {seconds} s, medians; harness and sim share this machine's cores)"
    );
    // Warm-up: the tokenizer, connections, the sim's allocator.
    native_run(&rt, sim.port, 500.0, 1.0);
    let guidellm = guidellm();
    // guidellm needs ~30 s per run here (Python start-up, data generation).
    let guidellm_runs: usize = std::env::var("BENCH_GUIDELLM_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let tokenizer = std::env::var("LLMD_TOKENIZER")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/tokenizers/qwen3").into());
    for rate in [1000.0, 5000.0, 10000.0] {
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
        let mut line = format!(
            "target {rate:>6.0} req/s: achieved {achieved:>8.1} req/s ({:+.2}%; target ±1% at 5k), send lateness p50 {p50:.3} ms, p99 {p99:.3} ms (target < 1 ms; {:.2}x of budget)",
            (achieved / rate - 1.0) * 100.0,
            p99 / 1.0
        );
        if let Some(bin) = &guidellm {
            let g: Vec<f64> = (0..guidellm_runs).filter_map(|_| guidellm_run(bin, &tokenizer, sim.port, rate, seconds)).collect();
            if g.is_empty() {
                line.push_str("; guidellm: failed");
            } else {
                let gm = median(g);
                line.push_str(&format!("; guidellm achieved {gm:.1} req/s ({:+.2}%)", (gm / rate - 1.0) * 100.0));
            }
        }
        println!("{line}");
    }
    if guidellm.is_none() {
        println!("(guidellm is not installed: set LLMD_GUIDELLM_BIN or put it on PATH to compare)");
    }
}
