//! A real external harness end to end: inference-perf against a stood-up `examples/sim`.
//!
//! Needs `inference-perf` (on PATH or `LLMD_INFERENCE_PERF_BIN`) and a local Hugging Face
//! tokenizer (`LLMD_TOKENIZER`, else `../shared/fixtures/tokenizers/qwen3`). Without them
//! the test says so and passes, unless `LLMD_REQUIRE_EXTERNAL=1` (set by `.ci/run` after
//! installing inference-perf), where their absence fails it.

mod support;

use std::path::PathBuf;

use support::{llmd, root, run};

fn inference_perf() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LLMD_INFERENCE_PERF_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("inference-perf")).find(|p| p.is_file())
}

fn tokenizer() -> Option<PathBuf> {
    std::env::var_os("LLMD_TOKENIZER")
        .map(PathBuf::from)
        .or_else(|| Some(root().join("../shared/fixtures/tokenizers/qwen3")))
        .filter(|p| p.exists())
}

#[test]
fn inference_perf_runs_one_treatment_against_the_sim() {
    let required = std::env::var("LLMD_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
    let (Some(bin), Some(tok)) = (inference_perf(), tokenizer()) else {
        assert!(!required, "LLMD_REQUIRE_EXTERNAL=1 but inference-perf or the tokenizer is missing");
        eprintln!("skipping: inference-perf or a local tokenizer is not available (see the module docs)");
        return;
    };
    let ws = tempfile::tempdir().unwrap();
    let llmd_ws = |args: &[&str]| {
        run(llmd().env("LLMD_INFERENCE_PERF_BIN", &bin).env("LLMD_TOKENIZER", &tok).arg("--workspace").arg(ws.path()).args(args))
    };
    let up = llmd_ws(&["--spec", "examples/sim", "standup", "--skip-smoketest"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let r = llmd_ws(&[
        "--spec",
        "examples/sim",
        "run",
        "-l",
        "inference-perf",
        "-w",
        "sanity_random.yaml",
        "-o",
        "load.stages.0.rate=4,load.stages.0.duration=3",
    ]);
    let down = llmd_ws(&["teardown"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(down.code, 0, "{}", down.stderr);

    let results: Vec<PathBuf> = std::fs::read_dir(ws.path().join("results")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(results.len(), 1);
    let dir = &results[0];
    assert!(dir.file_name().unwrap().to_string_lossy().starts_with("inference-perf-override-"));
    for f in ["summary_lifecycle_metrics.json", "inference-perf-config.yaml", "run_metadata.yaml", "harness.log"] {
        assert!(dir.join(f).is_file(), "{f} missing: {:?}", support::files_under(dir));
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary_lifecycle_metrics.json")).unwrap()).unwrap();
    assert_eq!(summary["successes"]["count"], 12, "4 req/s for 3 s: {summary}");
    assert_eq!(summary["failures"]["count"], 0);
    // The sim's 20 ms TTFT as inference-perf measures it.
    let ttft = summary["successes"]["latency"]["time_to_first_token"]["mean"].as_f64().unwrap();
    assert!((0.019..0.060).contains(&ttft), "TTFT {ttft}");
}
