//! `just bench-parallel`: what `llmd build -j` buys, and what its scheduler costs.
//!
//! 1. Wall time of a cold build of 4 setups × 3 runs on the simulator (1 s runs, so the
//!    build is sleep-dominated, as real benchmarks are) at `-j 1` and at `-j 4
//!    --isolation per-stack` — target: `-j 4` at least 3× faster (medians).
//! 2. The scheduler's own cost per node: admission and release in the capacity pool
//!    plus the measurement gate, timed over many setups in process — target < 1 ms —
//!    and, from the `-j 4` build's journal, the median gap between a node's end and
//!    the next node's start on the same setup (recording, materializing and scheduling
//!    together).
//!
//! `BENCH_RUNS` (default 3) cold builds per setting; medians and ratios printed.

use std::process::Command;
use std::time::{Duration, Instant};

use llmd::engine::schedule::{Amounts, Capacity, Gate, Pool};

const EXPERIMENT: &str = r#"experiment:
  name: par
  spec: examples/sim
  harness: llmd
  profile: sanity_random.yaml
setup:
  constants:
    local.sim.interTokenLatency: 1ms
  treatments:
    - name: s0
      local.sim.timeToFirstToken: 5ms
    - name: s1
      local.sim.timeToFirstToken: 10ms
    - name: s2
      local.sim.timeToFirstToken: 15ms
    - name: s3
      local.sim.timeToFirstToken: 20ms
constants:
  load.stages.0.duration: 1
  load.arrival: constant
  dataset.output_len: 4
treatments:
  - name: r1
    load.stages.0.rate: 4
  - name: r2
    load.stages.0.rate: 6
  - name: r3
    load.stages.0.rate: 8
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// One cold build in a fresh directory; its wall time and its journal.
fn cold_build(extra: &[&str]) -> (Duration, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exp.yaml"), EXPERIMENT).unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_llmd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("build")
        .arg(dir.path().join("exp.yaml"))
        .arg("--workspace")
        .arg(dir.path().join("ws"))
        .env("LLMD_CACHE_DIR", dir.path().join("cache"))
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "build failed: {}", String::from_utf8_lossy(&out.stderr));
    let journal = std::fs::read_dir(dir.path().join("cache/journal")).unwrap().flatten().next().unwrap().path();
    let events = std::fs::read_to_string(journal).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (took, events)
}

/// Gaps between one node's end and the next node's start on the same setup.
fn gaps(journal: &[serde_json::Value]) -> Vec<f64> {
    let mut last_done: std::collections::HashMap<String, f64> = Default::default();
    let mut out = Vec::new();
    for e in journal {
        let (Some(id), Some(t)) = (e["id"].as_str(), e["t"].as_f64()) else { continue };
        let setup = id.split('/').nth(1).unwrap_or("").to_string();
        match e["event"].as_str() {
            Some("begin") => {
                if let Some(prev) = last_done.get(&setup) {
                    out.push(t - prev);
                }
            }
            Some("done") => {
                last_done.insert(setup, t);
            }
            _ => {}
        }
    }
    out
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut serial = Vec::new();
    let mut parallel = Vec::new();
    let mut node_gaps = Vec::new();
    for _ in 0..runs {
        serial.push(cold_build(&["-j", "1"]).0.as_secs_f64());
        let (took, journal) = cold_build(&["-j", "4", "--isolation", "per-stack", "--capacity", "cpu=8"]);
        parallel.push(took.as_secs_f64());
        node_gaps.extend(gaps(&journal));
    }
    let (s, p) = (median(serial.clone()), median(parallel.clone()));
    println!("4 setups x 3 runs (1 s each), cold build, {runs} run(s) each:");
    println!("  -j 1                       median {s:6.2} s   {serial:.2?}");
    println!("  -j 4 --isolation per-stack median {p:6.2} s   {parallel:.2?}");
    println!("  speed-up {:.2}x (target >= 3x)", s / p);

    // The scheduler alone: admission + release + the gate, per setup, in process.
    let setups = 100_000;
    let cap = Capacity { pool: Amounts::from([("gpu".to_string(), 8)]), source: "bench".into() };
    let needs: Vec<Amounts> = (0..setups).map(|i| Amounts::from([("gpu".to_string(), 1 + (i % 4) as u64)])).collect();
    let pool = Pool::new(&cap, needs, 0..setups);
    let gate = Gate::new(llmd::experiment::Isolation::Exclusive);
    let start = Instant::now();
    while let Some(llmd::engine::schedule::Admit::Go(si)) = pool.take() {
        drop(gate.measure());
        pool.done(si, true);
    }
    let per = start.elapsed().as_secs_f64() / setups as f64;
    println!("scheduler per setup (take + gate + done): {:.3} µs (target < 1 ms)", per * 1e6);
    if !node_gaps.is_empty() {
        println!(
            "between nodes on one setup (record + materialize + schedule), -j 4: median {:.2} ms over {} gaps",
            median(node_gaps.clone()) * 1e3,
            node_gaps.len()
        );
    }
}
