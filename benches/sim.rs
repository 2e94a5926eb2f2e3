//! `just bench-sim`: the simulator's capacity and timing precision on this machine.
//!
//! 1. Non-streamed 16-token completions, zero latency: requests per second
//!    (target ≥ 10,000).
//! 2. Streamed completions, zero latency: generated tokens per second, from the server's
//!    own `vllm:generation_tokens_total` (target ≥ 300,000).
//! 3. 1,000 concurrent streams with a 10 ms inter-token latency: the error of every chunk
//!    gap against 10 ms, from the simulator's journal (target p99 < 0.5 ms).
//! 4. Capacity: open-loop constant-rate stages from the native harness (16 prompt and 16
//!    streamed output tokens, zero latency) up a ladder of rates (`BENCH_CAPACITY_RATES`),
//!    `BENCH_CAPACITY_SECONDS` (10) each, three runs per rate: the highest rate every run
//!    of which has < 1 % errors and achieves 99 % of it, and the kernel's listen-queue overflows
//!    (`nstat TcpExtListenOverflows`) meanwhile (target ≥ 15,000 req/s with 0 overflows).
//! 5. Idle admission delay: 4 req/s for `BENCH_ADMISSION_SECONDS` (25), arrival →
//!    admission from the journal (target p50 < 0.1 ms, p99 < 0.5 ms).
//!
//! The load client runs in this process (tokio, keep-alive HTTP/1.1 connections) on the
//! same cores as the simulator; figures are the median of `BENCH_RUNS` runs (default 3).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

const MODEL: &str = "bench/model";

struct SimProcess {
    child: Child,
    port: u16,
}

impl SimProcess {
    fn start(extra: &[&str]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmd"))
            .args([
                "sim",
                "--model",
                MODEL,
                "--port",
                "0",
                "--max-num-seqs",
                "100000",
                "--max-waiting-queue-length",
                "100000",
                "--max-model-len",
                "100000",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start llmd sim");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        SimProcess { child, port }
    }

    fn stop(mut self) {
        // SIGTERM so the journal is flushed.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

async fn connect(port: u16) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

fn request(port: u16, body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/v1/completions")
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Keeps `connections` keep-alive connections busy for `duration`; returns completed requests.
async fn hammer(port: u16, connections: usize, duration: Duration, body: &'static str) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(port).await;
            while Instant::now() < deadline {
                let resp = sender.send_request(request(port, body)).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed)
}

fn metric(port: u16, name: &str) -> f64 {
    let out = Command::new("curl").args(["-s", &format!("http://127.0.0.1:{port}/metrics")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo as f64)
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("llmd sim benchmark ({runs} runs, medians; 2-core machine, client in the same box)");

    // BENCH_SECTIONS=throughput,capacity,admission,chunks picks sections (default: all).
    let want = |name: &str| std::env::var("BENCH_SECTIONS").map_or(true, |v| v.split(',').any(|s| s.trim() == name));
    if want("throughput") {
        throughput(&rt, runs);
    }
    if want("capacity") {
        capacity(&rt);
    }
    if want("admission") {
        admission(&rt, runs);
    }
    if want("chunks") {
        chunk_gaps(&rt, runs);
    }
}

fn throughput(rt: &tokio::runtime::Runtime, runs: usize) {
    // 1. Non-streamed requests per second.
    let sim = SimProcess::start(&[]);
    let body: &'static str = r#"{"model":"bench/model","prompt":"hello world","max_tokens":16,"ignore_eos":true}"#;
    rt.block_on(hammer(sim.port, 16, Duration::from_millis(500), body)); // warm up
    let mut rps = Vec::new();
    for _ in 0..runs {
        let secs = 3.0;
        let n = rt.block_on(hammer(sim.port, 64, Duration::from_secs_f64(secs), body));
        rps.push(n as f64 / secs);
    }
    let rps_med = median(rps.clone());
    println!("non-streamed 16-token completions: {rps_med:>10.0} req/s   (target >= 10000; x{:.2})   runs {rps:.0?}", rps_med / 10_000.0);

    // 2. Streamed tokens per second.
    let stream_body: &'static str = r#"{"model":"bench/model","prompt":"hello world","max_tokens":256,"ignore_eos":true,"stream":true}"#;
    let mut tps = Vec::new();
    for _ in 0..runs {
        let before = metric(sim.port, "vllm:generation_tokens_total");
        let start = Instant::now();
        rt.block_on(hammer(sim.port, 64, Duration::from_secs(3), stream_body));
        let secs = start.elapsed().as_secs_f64();
        tps.push((metric(sim.port, "vllm:generation_tokens_total") - before) / secs);
    }
    let tps_med = median(tps.clone());
    println!("streamed tokens:                   {tps_med:>10.0} tok/s (target >= 300000; x{:.2})  runs {tps:.0?}", tps_med / 300_000.0);
    sim.stop();
}

fn chunk_gaps(rt: &tokio::runtime::Runtime, runs: usize) {
    // 3. Chunk-gap timing error, ITL 10 ms: 1000 streams (the target) and 200 (what this
    //    box carries with the client beside it). Streams start spread over one ITL, as
    //    arrivals would be; starting them in lockstep makes every chunk of a period due
    //    at the same instant, which no server can send at once.
    for streams in [1000usize, 200] {
        let mut p99s = Vec::new();
        let mut p50s = Vec::new();
        for _ in 0..runs {
            let (p50, p99, gaps, steal) = chunk_gap_run(rt, streams);
            println!(
                "  {streams} streams: {gaps} gaps, |gap - 10ms| p50 {p50:.3} ms, p99 {p99:.3} ms; CPU steal by the hypervisor during the run {steal:.1}%"
            );
            p50s.push(p50);
            p99s.push(p99);
        }
        let p99 = median(p99s);
        println!(
            "chunk-gap error @{streams} streams, ITL 10ms: p50 {:.3} ms, p99 {p99:.3} ms (target p99 < 0.5 ms; {:.2}x of budget)",
            median(p50s),
            p99 / 0.5
        );
    }
}

/// Steal ticks and all ticks from /proc/stat.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let nums: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    (nums.get(7).copied().unwrap_or(0), nums.iter().take(8).sum())
}

fn chunk_gap_run(rt: &tokio::runtime::Runtime, streams: usize) -> (f64, f64, usize, f64) {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let sim = SimProcess::start(&["--inter-token-latency", "10ms", "--journal", journal.to_str().unwrap()]);
    let body: &'static str = r#"{"model":"bench/model","prompt":"timing","max_tokens":150,"ignore_eos":true,"stream":true}"#;
    let port = sim.port;
    let before = cpu_ticks();
    rt.block_on(async {
        let start = Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::new();
        for i in 0..streams {
            tasks.push(tokio::spawn(async move {
                let mut sender = connect(port).await;
                llmd::timing::sleep_until(start + Duration::from_micros((i as u64 * 10_000) / streams as u64)).await;
                let resp = sender.send_request(request(port, body)).await.unwrap();
                let mut body = resp.into_body();
                while let Some(frame) = body.frame().await {
                    frame.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let after = cpu_ticks();
    sim.stop();
    let steal = 100.0 * (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
    let mut errors = Vec::new();
    for line in std::fs::read_to_string(&journal).unwrap().lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let chunks: Vec<(u64, u64)> = rec["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[0].as_u64().unwrap(), c[1].as_u64().unwrap()))
            .filter(|(_, n)| *n > 0)
            .collect();
        for w in chunks.windows(2) {
            let gap_ms = (w[1].0 - w[0].0) as f64 / 1e6 / w[1].1 as f64;
            errors.push((gap_ms - 10.0).abs());
        }
    }
    errors.sort_by(f64::total_cmp);
    (percentile(&errors, 50.0), percentile(&errors, 99.0), errors.len(), steal)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The kernel's count of connections dropped because a listen queue was full.
fn listen_overflows() -> Option<u64> {
    let out = Command::new("nstat").args(["-az", "TcpExtListenOverflows"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("TcpExtListenOverflows"))?.split_whitespace().nth(1)?.parse().ok()
}

fn open_loop(rate: f64, seconds: f64, output: usize) -> llmd::harness::load::LoadProfile {
    use llmd::harness::load::{Api, Arrival, LoadProfile, LoadSpec, Stage, Warmup};
    LoadProfile {
        endpoint: None,
        model: Some(MODEL.into()),
        api: Api::Completions,
        stream: true,
        ignore_eos: true,
        dataset: llmd::harness::dataset::DatasetSpec::Random {
            input_len: 16,
            output_len: output,
            range_ratio: 0.0,
            prefix_len: 0,
            num_prompts: 1000,
        },
        load: LoadSpec {
            arrival: Arrival::Constant,
            burstiness: 1.0,
            max_concurrency: None,
            stages: vec![Stage { rate: Some(rate), concurrency: None, duration: Some(seconds), requests: None }],
            warmup: Warmup::default(),
            grace: 5.0,
        },
        seed: 1,
        request_timeout: 30.0,
        tokenizer: None,
    }
}

/// Runs a profile in this process against `port`: the report and the run's records.
fn load_run(rt: &tokio::runtime::Runtime, port: u16, profile: &llmd::harness::load::LoadProfile) -> llmd::harness::report::RunReport {
    let endpoint = llmd::http::client::Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let progress = Arc::new(llmd::harness::load::Progress::default());
    let out = rt.block_on(llmd::harness::load::run(profile, endpoint, MODEL, progress)).expect("load run");
    llmd::harness::report::RunReport::from_records(&out.records, Some(&out.stages))
}

fn capacity(rt: &tokio::runtime::Runtime) {
    let seconds: f64 = env_or("BENCH_CAPACITY_SECONDS", 10.0);
    let rates: Vec<f64> = std::env::var("BENCH_CAPACITY_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![5000.0, 10000.0, 15000.0, 20000.0, 25000.0, 30000.0]);
    let sim = SimProcess::start(&[]);
    load_run(rt, sim.port, &open_loop(1000.0, 1.0, 16)); // warm-up
    let mut best = None;
    for rate in rates {
        let mut line = format!("  capacity {rate:>6.0} req/s:");
        let mut all_ok = true;
        for _ in 0..3 {
            let before = listen_overflows();
            let r = load_run(rt, sim.port, &open_loop(rate, seconds, 16));
            let overflows = listen_overflows().zip(before).map(|(a, b)| a - b);
            let total = r.requests.total.max(1) as f64;
            let errors = 100.0 * (r.requests.total - r.requests.completed) as f64 / total;
            // Held: under 1 % errors and the target rate achieved (within 1 %).
            all_ok &= errors < 1.0 && r.request_throughput >= 0.99 * rate;
            line.push_str(&format!(
                " [achieved {:.0}, errors {errors:.2}%, listen overflows {}]",
                r.request_throughput,
                overflows.map_or("?".into(), |o| o.to_string())
            ));
        }
        println!("{line}");
        if !all_ok {
            break;
        }
        best = Some(rate);
    }
    sim.stop();
    match best {
        Some(b) => {
            println!(
                "simulator capacity (<1% errors and >=99% of the rate achieved in all 3 runs of {seconds} s): {b:.0} req/s (target >= 15000; x{:.2})",
                b / 15000.0
            )
        }
        None => println!("simulator capacity: below the first rung of the ladder"),
    }
}

fn admission(rt: &tokio::runtime::Runtime, runs: usize) {
    let seconds: f64 = env_or("BENCH_ADMISSION_SECONDS", 25.0);
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let sim =
            SimProcess::start(&["--time-to-first-token", "20ms", "--inter-token-latency", "5ms", "--journal", journal.to_str().unwrap()]);
        let mut profile = open_loop(4.0, seconds, 16);
        profile.dataset = llmd::harness::dataset::DatasetSpec::Random {
            input_len: 128,
            output_len: 16,
            range_ratio: 0.0,
            prefix_len: 0,
            num_prompts: 1000,
        };
        profile.load.arrival = llmd::harness::load::Arrival::Poisson;
        load_run(rt, sim.port, &profile);
        sim.stop();
        let mut delays: Vec<f64> = std::fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                Some((v["admitted_ns"].as_u64()? - v["arrival_ns"].as_u64()?) as f64 / 1e6)
            })
            .collect();
        delays.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&delays, 50.0), percentile(&delays, 99.0));
        println!("  idle admission ({} requests): p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms", delays.len(), delays.last().unwrap());
        p50s.push(p50);
        p99s.push(p99);
    }
    let (p50, p99) = (median(p50s), median(p99s));
    println!(
        "idle admission delay @4 req/s (128-token prompts): p50 {p50:.3} ms (target < 0.1; {:.2}x of budget), p99 {p99:.3} ms (target < 0.5; {:.2}x)",
        p50 / 0.1,
        p99 / 0.5
    );
}
