//! `just bench-build`: the incremental engine's decision time on a large experiment.
//!
//! A generated scenario of 50 simulator stacks and an experiment of 20 run treatments
//! (1,000 runs, 1,000 analyses, 151 other nodes). After one real build fills the cache:
//!
//! 1. no-op `llmd build` (everything fresh), wall time of the whole process —
//!    target: median < 150 ms;
//! 2. deciding after a one-leaf edit of a run treatment (`llmd build --dry-run`) —
//!    target: median < 300 ms.
//!
//! `BENCH_RUNS` (default 15) samples each; medians and the ratio to the target printed.
//! `BENCH_DIR=/path` builds the project there and keeps it (to time another binary on
//! the same filled cache, say).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

// The tests' helpers (the bench drives the same binary).
#[path = "../tests/support/mod.rs"]
mod support;
use support::copy_dir;

const STACKS: usize = 50;
const TREATMENTS: usize = 20;

fn project(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("config"), &dir.join("config"));
    copy_dir(&root.join("workload"), &dir.join("workload"));
    let spec = std::fs::read_to_string(root.join("config/specification/examples/sim.yaml.j2"))
        .unwrap()
        .replace("examples/sim.yaml", "examples/bench50.yaml");
    std::fs::write(dir.join("config/specification/examples/bench50.yaml.j2"), spec).unwrap();
    let mut scenario = String::from("scenario:\n");
    for i in 0..STACKS {
        scenario.push_str(&format!(
            "  - name: sim-{i:02}\n    model: {{name: Qwen/Qwen3-0.6B, maxModelLen: 4096}}\n    standalone: {{enabled: true}}\n    local: {{sim: {{timeToFirstToken: 1ms, interTokenLatency: 0ms, seed: {i}}}}}\n    harness: {{name: llmd, profile: sanity_random.yaml}}\n"
        ));
    }
    std::fs::write(dir.join("config/scenarios/examples/bench50.yaml"), scenario).unwrap();
    let mut exp = String::from(
        "experiment: {name: bench50, spec: examples/bench50, harness: llmd}\nconstants: {load.stages.0.requests: 1, load.stages.0.duration: 10, dataset.output_len: 2, dataset.num_prompts: 4}\ntreatments:\n",
    );
    for t in 0..TREATMENTS {
        exp.push_str(&format!("  - {{name: t{t:02}, load.stages.0.rate: {}}}\n", 100 + t));
    }
    std::fs::write(dir.join("exp.yaml"), exp).unwrap();
}

fn llmd(dir: &Path, args: &[&str]) -> (Duration, std::process::Output) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_llmd"))
        .current_dir(dir)
        .args(["--workspace", "ws"])
        .env("LLMD_CACHE_DIR", dir.join("cache"))
        .args(args)
        .output()
        .unwrap();
    (start.elapsed(), out)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    std::fs::create_dir_all(dir).unwrap();
    project(dir);
    println!(
        "llmd build on {STACKS} stacks x {TREATMENTS} run treatments ({} nodes); {runs} samples, medians",
        STACKS * (3 + 2 * TREATMENTS) + 1
    );
    let (fill, out) = llmd(dir, &["build", "exp.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "filling the cache (a real build: {} runs against real sims): {:.1} s  ({})",
        STACKS * TREATMENTS,
        fill.as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let noop: Vec<Duration> = (0..runs)
        .map(|_| {
            let (t, out) = llmd(dir, &["build", "exp.yaml"]);
            assert!(
                String::from_utf8_lossy(&out.stdout).lines().last().is_some_and(|l| l.starts_with("0 ran")),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            t
        })
        .collect();
    let m = median(noop.clone());
    println!(
        "no-op build (all fresh):        median {:>6.1} ms  min {:>6.1} ms  (target < 150 ms; {:.2}x of budget)",
        m.as_secs_f64() * 1e3,
        noop.iter().min().unwrap().as_secs_f64() * 1e3,
        m.as_secs_f64() * 1e3 / 150.0
    );

    let exp = std::fs::read_to_string(dir.join("exp.yaml")).unwrap();
    std::fs::write(dir.join("exp.yaml"), exp.replace("load.stages.0.rate: 107}", "load.stages.0.rate: 207}")).unwrap();
    let mut would_run = String::new();
    let decide: Vec<Duration> = (0..runs)
        .map(|_| {
            let (t, out) = llmd(dir, &["build", "exp.yaml", "--dry-run"]);
            would_run = String::from_utf8_lossy(&out.stdout).split(',').next().unwrap_or_default().to_string();
            t
        })
        .collect();
    // The project is left as it was filled: a build run there later must not cache the
    // edited treatment, or the next bench on this BENCH_DIR would time deciding nothing.
    std::fs::write(dir.join("exp.yaml"), &exp).unwrap();
    let expected = format!("{} would run", STACKS * 4 + 1);
    assert_eq!(would_run, expected, "the cache in {} already holds the edited treatment's results: use another BENCH_DIR", dir.display());
    let m = median(decide.clone());
    println!(
        "decide after a one-leaf edit:   median {:>6.1} ms  min {:>6.1} ms  (target < 300 ms; {:.2}x of budget; {would_run}: each stack's run, analysis, standup and smoketest, and the summary)",
        m.as_secs_f64() * 1e3,
        decide.iter().min().unwrap().as_secs_f64() * 1e3,
        m.as_secs_f64() * 1e3 / 300.0
    );
}
