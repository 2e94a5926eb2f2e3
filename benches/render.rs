//! `just bench-render`: wall time of `llmd plan` per shipped spec, end to end (process
//! start, spec render, merge, template render, atomic write), plus the in-process time
//! of resolve + render alone. Reports median, p90 and min of repeated runs; the target
//! is a median under 100 ms per spec.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use llmd::config::{Overrides, PlanOptions, resolve_plan};
use llmd::render::{TemplateSet, render_plan};

const SPECS: &[&str] = &["examples/sim", "examples/gpu", "examples/multi-model", "guides/optimized-baseline"];

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let n = samples.len();
    (samples[n / 2], samples[(n * 9 / 10).min(n - 1)], samples[0])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ws = tempfile::tempdir().expect("tempdir");
    println!("llmd plan, {runs} runs per spec (times in ms)");
    println!("{:<28} {:>10} {:>8} {:>8}   {:>12} {:>8}", "spec", "e2e med", "p90", "min", "in-proc med", "min");
    for spec in SPECS {
        let mut e2e = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_llmd"))
                .current_dir(&root)
                .args(["--spec", spec, "plan", "--workspace"])
                .arg(ws.path())
                .env_remove("HF_TOKEN")
                .stdout(std::process::Stdio::null())
                .status()
                .expect("llmd runs");
            e2e.push(start.elapsed());
            assert!(status.success(), "llmd plan {spec} failed");
        }
        let mut inproc = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let opts = PlanOptions {
                base_dir: root.clone(),
                spec: spec.to_string(),
                overrides: Overrides::default(),
                monitoring: Some(false),
                ..Default::default()
            };
            let resolved = resolve_plan(&opts).expect("resolves");
            let templates = TemplateSet::load(&resolved.spec.template_dir).expect("templates");
            let plan = render_plan(&resolved, &templates).expect("renders");
            std::hint::black_box(plan);
            inproc.push(start.elapsed());
        }
        let (m, p90, min) = stats(e2e);
        let (im, _, imin) = stats(inproc);
        println!("{spec:<28} {:>10.2} {:>8.2} {:>8.2}   {:>12.2} {:>8.2}", ms(m), ms(p90), ms(min), ms(im), ms(imin));
    }
}
