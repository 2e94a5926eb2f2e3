//! `just bench-analysis`: `llmd analyze` on 1,000,000 generated native request records.
//!
//! Records look like a real run's (`records.jsonl` of the native harness): 12 streamed
//! chunks each, usage, a few failures. The whole `llmd analyze` process is timed and its
//! peak resident memory read from `wait4` — targets: median < 3 s, peak < 500 MB.
//! `BENCH_RUNS` (default 5) samples; `BENCH_RECORDS` (default 1,000,000) records.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use llmd::harness::record::{RequestRecord, Status};

fn generate(path: &std::path::Path, n: usize) {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let sent = 1_000_000_000 + i as u64 * 100_000 + rand() % 50_000;
        let ttft = 15_000_000 + rand() % 20_000_000;
        let mut t = sent + ttft;
        let chunks: Vec<(u64, u32)> = (0..12)
            .map(|k| {
                if k > 0 {
                    t += 1_500_000 + rand() % 1_500_000;
                }
                (t, 1)
            })
            .collect();
        let failed = i % 997 == 0;
        let r = RequestRecord {
            id: format!("r{i}"),
            stage: 0,
            warmup: false,
            scheduled_ns: sent - rand() % 10_000,
            sent_ns: sent,
            first_token_ns: (!failed).then_some(chunks[0].0),
            last_token_ns: (!failed).then_some(chunks[11].0),
            done_ns: t + 50_000,
            chunks: if failed { Vec::new() } else { chunks },
            input_len: 128,
            requested_output: 12,
            prompt_tokens: Some(128),
            completion_tokens: (!failed).then_some(12),
            cached_tokens: Some((rand() % 64) as u32),
            status: if failed { Status::HttpError } else { Status::Ok },
            http_status: Some(if failed { 500 } else { 200 }),
            error: failed.then(|| "server_error".to_string()),
        };
        serde_json::to_writer(&mut w, &r).unwrap();
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
}

/// Runs `cmd`, returning (wall seconds, peak RSS in MiB) of the child. The child is
/// reaped by `wait4` (which also reports its resource usage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (f64, f64) {
    let start = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `usage` is a valid out-pointer.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "llmd analyze failed");
    (start.elapsed().as_secs_f64(), usage.ru_maxrss as f64 / 1024.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let n: usize = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // BENCH_DIR keeps the generated records between invocations (they take a while).
    let tmp = tempfile::tempdir().unwrap();
    let base = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    let results = base.join("run");
    std::fs::create_dir_all(&results).unwrap();
    let file = results.join("records.jsonl");
    let t = Instant::now();
    if std::env::var_os("BENCH_DIR").is_none() || !file.is_file() {
        generate(&file, n);
    }
    let size = std::fs::metadata(&file).unwrap().len() as f64 / (1 << 20) as f64;
    println!(
        "llmd analyze on {n} native records ({size:.0} MiB records.jsonl, generated in {:.1} s); {runs} runs",
        t.elapsed().as_secs_f64()
    );
    let (mut walls, mut peaks) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (wall, peak) = measure(Command::new(env!("CARGO_BIN_EXE_llmd")).arg("analyze").arg(&results));
        walls.push(wall);
        peaks.push(peak);
    }
    let (w, p) = (median(&mut walls), median(&mut peaks));
    println!("wall:      median {w:.2} s  min {:.2} s  (target < 3 s; {:.2}x of budget)", walls[0], w / 3.0);
    println!(
        "peak RSS:  median {p:.0} MiB  max {:.0} MiB  (target < 500 MB; {:.2}x of budget)",
        peaks[peaks.len() - 1],
        p * 1.048_576 / 500.0
    );
}
