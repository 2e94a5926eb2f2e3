//! External harnesses through `llmd build` and `llmd run`.
//!
//! * Stand-in tests (always run; need python3 with PyYAML and the fixtures): a script
//!   in place of `inference-perf` fails unless every path it is handed is absolute and
//!   right — relative workspaces, paths with spaces, a workspace reached through a
//!   symlink — and the tool's version and the tokenizer are inputs of run keys.
//! * Real-tool tests: the quick start's shape (2 setups × 2 rates) built with each real
//!   harness from a copy of the repository root with the default workspace, built again
//!   (nothing runs), one rate edited (only its runs, analyses and the summary run), and
//!   every benchmark report validated against upstream's schema. A tool that is not
//!   installed skips its test, unless `LLMD_REQUIRE_EXTERNAL` names it (`1` means
//!   `inference-perf`; `.ci/run` installs inference-perf and sets it), where its absence
//!   fails. Tools are found on PATH or through `LLMD_<TOOL>_BIN`; the tokenizer is
//!   `LLMD_TOKENIZER`, else `../shared/fixtures/tokenizers/qwen3`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use support::{copy_dir, fixture, llmd, root, run};

fn tokenizer() -> Option<PathBuf> {
    std::env::var_os("LLMD_TOKENIZER")
        .map(PathBuf::from)
        .or_else(|| Some(root().join("../shared/fixtures/tokenizers/qwen3")))
        .filter(|p| p.exists())
}

fn ids_with(report: &serde_json::Value, status: &str) -> BTreeSet<String> {
    report["nodes"].as_array().unwrap().iter().filter(|n| n["status"] == status).map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

// ---- stand-in

/// A fake virtual environment holding the stand-in as `bin/inference-perf`, with
/// package metadata saying `version`.
struct StandIn {
    venv: tempfile::TempDir,
    log: PathBuf,
    summary: PathBuf,
}

impl StandIn {
    fn new(version: &str) -> Option<StandIn> {
        let summary = fixture("harness-outputs/inference-perf-0.7.0-summary_lifecycle_metrics.json")?;
        let venv = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(venv.path().join("bin")).unwrap();
        let exe = venv.path().join("bin/inference-perf");
        std::fs::copy(root().join("tests/support/inference_perf_standin.py"), &exe).unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let log = venv.path().join("calls.jsonl");
        let s = StandIn { venv, log, summary };
        s.set_version(version);
        Some(s)
    }

    fn site(&self) -> PathBuf {
        self.venv.path().join("lib/python3.12/site-packages")
    }

    fn set_version(&self, version: &str) {
        let _ = std::fs::remove_dir_all(self.site());
        std::fs::create_dir_all(self.site().join(format!("inference_perf-{version}.dist-info"))).unwrap();
    }

    fn exe(&self) -> PathBuf {
        self.venv.path().join("bin/inference-perf")
    }

    fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// `llmd` with the stand-in as inference-perf, run in `cwd`.
    fn llmd(&self, cwd: &Path, tokenizer: &Path) -> std::process::Command {
        let mut c = llmd();
        c.current_dir(cwd)
            .env("LLMD_INFERENCE_PERF_BIN", self.exe())
            .env("LLMD_TOKENIZER", tokenizer)
            .env("STANDIN_LOG", &self.log)
            .env("STANDIN_SUMMARY", &self.summary)
            .env_remove("HF_HUB_OFFLINE");
        c
    }
}

const STANDIN_EXPERIMENT: &str = "\
experiment:
  name: paths
  spec: examples/sim
  harness: inference-perf
  profile: sanity_random.yaml
treatments:
  - name: rate-2
    load.stages.0.rate: 2
  - name: rate-4
    load.stages.0.rate: 4
";

/// A project directory whose name has a space, and a tokenizer directory whose name
/// has one too.
fn spaced_project() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let project = top.path().join("my project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("exp.yaml"), STANDIN_EXPERIMENT).unwrap();
    let tok = top.path().join("a tokenizer");
    std::fs::create_dir_all(&tok).unwrap();
    std::fs::write(tok.join("tokenizer.json"), "{}").unwrap();
    (top, project, tok)
}

fn assert_absolute_calls(calls: &[serde_json::Value], under: &Path, n: usize) {
    assert_eq!(calls.len(), n, "{calls:?}");
    for c in calls {
        let cfg = c["argv"][1].as_str().unwrap();
        assert!(cfg.starts_with(under.to_str().unwrap()), "{cfg} is not under {}", under.display());
        assert!(Path::new(cfg).is_absolute());
        // The tool ran in its results directory. (The kernel reports the working
        // directory with symlinks resolved, and a build's staging directory is gone once
        // the run is recorded, so the two are compared by their run directory's name.)
        let name = |k: &str| Path::new(c[k].as_str().unwrap()).file_name().map(|n| n.to_owned());
        assert!(Path::new(c["storage"].as_str().unwrap()).is_absolute(), "{c}");
        assert_eq!(name("storage"), name("cwd"), "{c}");
    }
}

#[test]
fn build_hands_external_tools_absolute_paths_with_a_relative_workspace_and_spaces() {
    let Some(standin) = StandIn::new("0.7.0") else { return };
    let (_top, project, tok) = spaced_project();
    // The default workspace (./workspace) and cache, relative to the working directory.
    let r = run(standin.llmd(&project, Path::new("../a tokenizer")).args(["build", "exp.yaml", "--json"]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(ids_with(&report, "failed"), BTreeSet::new());
    assert_absolute_calls(&standin.calls(), &project.join("workspace"), 2);
    // The relative --tokenizer reached the tool as an absolute path to the same place.
    for c in standin.calls() {
        let given = Path::new(c["tokenizer"].as_str().unwrap());
        assert!(given.is_absolute() && given.canonicalize().unwrap() == tok.canonicalize().unwrap(), "{c}");
    }
    // Reports were written from the tool's output.
    let reports: Vec<PathBuf> = support::files_under(&project.join("workspace"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("benchmark_report_v0.2,_") && f.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(reports.len(), 2, "{reports:?}");

    // `llmd run -l inference-perf` with a relative --workspace, on a stood-up stack.
    let ws = ["--workspace", "phase ws"];
    let up = run(standin.llmd(&project, &tok).args(ws).args(["--spec", "examples/sim", "standup", "--skip-smoketest"]));
    assert_eq!(up.code, 0, "{}", up.stderr);
    let r = run(standin.llmd(&project, &tok).args(ws).args([
        "--spec",
        "examples/sim",
        "run",
        "-l",
        "inference-perf",
        "-w",
        "sanity_random.yaml",
    ]));
    let down = run(standin.llmd(&project, &tok).args(ws).arg("teardown"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert_absolute_calls(&standin.calls()[2..], &project.join("phase ws"), 1);
}

#[test]
fn a_workspace_reached_through_a_symlink_keeps_its_name_and_works() {
    let Some(standin) = StandIn::new("0.7.0") else { return };
    let (top, project, tok) = spaced_project();
    let real = top.path().join("real ws");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, project.join("linked ws")).unwrap();
    let r = run(standin.llmd(&project, &tok).args(["--workspace", "linked ws", "build", "exp.yaml"]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The tool was told the path through the link, and the files are in the real one.
    assert_absolute_calls(&standin.calls(), &project.join("linked ws"), 2);
    assert!(real.join("summary.csv").is_file(), "{:?}", support::files_under(&real));
}

#[test]
fn the_tool_version_and_the_tokenizer_are_inputs_of_run_keys() {
    let Some(standin) = StandIn::new("0.7.0") else { return };
    let (_top, project, tok) = spaced_project();
    let build = |extra: &[&str]| {
        let r = run(standin.llmd(&project, &tok).args(["build", "exp.yaml", "--json"]).args(extra));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    build(&[]);
    assert!(ids_with(&build(&[]), "ran").is_empty());
    standin.set_version("0.8.0");
    let after = build(&["--dry-run"]);
    let runs = set(&["run/default/sim/rate-2#1", "run/default/sim/rate-4#1"]);
    assert!(ids_with(&after, "would_run").is_superset(&runs), "{after}");
    let why = run(standin.llmd(&project, &tok).args(["why", "-e", "exp.yaml", "run/*"]));
    assert_eq!(why.code, 0, "{}", why.stderr);
    assert!(why.stdout.contains("inference-perf version changed: 0.7.0 → 0.8.0"), "{}", why.stdout);
    standin.set_version("0.7.0");
    assert!(ids_with(&build(&["--dry-run"]), "would_run").is_empty());
    // Another tokenizer (other content) re-runs; a copy of the same one does not.
    let copy = project.join("tok copy");
    copy_dir(&tok, &copy);
    let r = run(standin.llmd(&project, &copy).args(["build", "exp.yaml", "--json", "--dry-run"]));
    assert!(ids_with(&serde_json::from_str(&r.stdout).unwrap(), "would_run").is_empty(), "{}", r.stdout);
    std::fs::write(copy.join("tokenizer.json"), "{\"other\": 1}").unwrap();
    let r = run(standin.llmd(&project, &copy).args(["build", "exp.yaml", "--json", "--dry-run"]));
    assert!(ids_with(&serde_json::from_str(&r.stdout).unwrap(), "would_run").is_superset(&runs), "{}", r.stdout);
}

#[test]
fn a_missing_tool_or_tokenizer_fails_before_anything_is_stood_up() {
    let (_top, project, tok) = spaced_project();
    let bare = || {
        let mut c = llmd();
        c.current_dir(&project).env("PATH", "/usr/bin:/bin").env_remove("LLMD_INFERENCE_PERF_BIN").env_remove("LLMD_TOKENIZER");
        c
    };
    let r = run(bare().args(["build", "exp.yaml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("needs the `inference-perf` command, which is not installed"), "{}", r.stderr);
    assert!(r.stderr.contains("pip install inference-perf"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was stood up"), "{}", r.stderr);
    assert!(!project.join("workspace").exists(), "{:?}", support::files_under(&project));
    // --dry-run says the same.
    assert_eq!(run(bare().args(["build", "exp.yaml", "--dry-run"])).code, 2);

    let Some(standin) = StandIn::new("0.7.0") else { return };
    let r =
        run(bare().env("LLMD_INFERENCE_PERF_BIN", standin.exe()).env("HF_HUB_CACHE", project.join("no cache")).args(["build", "exp.yaml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no tokenizer for model"), "{}", r.stderr);
    assert!(r.stderr.contains("--tokenizer"), "{}", r.stderr);
    assert!(!project.join("workspace").exists());

    // doctor: lists every harness; --require fails for a missing one.
    let d = run(bare().env("LLMD_INFERENCE_PERF_BIN", standin.exe()).env("LLMD_TOKENIZER", &tok).args(["doctor"]));
    assert_eq!(d.code, 0, "{}", d.stderr);
    for h in ["llmd", "inference-perf", "guidellm", "vllm-benchmark", "aiperf"] {
        assert!(d.stdout.contains(&format!("  {h} ")), "{h}: {}", d.stdout);
    }
    assert!(d.stdout.contains("0.7.0"), "{}", d.stdout);
    let ok = run(bare().env("LLMD_INFERENCE_PERF_BIN", standin.exe()).args(["doctor", "--require", "inference-perf,llmd"]));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let missing = run(bare().args(["doctor", "--require", "aiperf", "--json"]));
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("not usable here: aiperf"), "{}", missing.stderr);
    let json: serde_json::Value = serde_json::from_str(&missing.stdout).unwrap();
    assert_eq!(json["harnesses"].as_array().unwrap().len(), 5);
    assert_eq!(run(bare().args(["doctor", "--require", "aiperff"])).code, 2);
}

// ---- real tools

/// The tool's executable, or `None` (the test then skips) — unless the tool is
/// required, where its absence fails the test.
fn real_tool(harness: &str, program: &str, env: &str) -> Option<(PathBuf, PathBuf)> {
    let required = std::env::var("LLMD_REQUIRE_EXTERNAL").unwrap_or_default();
    let required = required.split(',').any(|r| r == harness || (r == "1" && harness == "inference-perf"));
    let exe = std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file()))
        .filter(|p| p.is_file());
    match (exe, tokenizer()) {
        (Some(exe), Some(tok)) => Some((exe, tok)),
        _ => {
            assert!(!required, "LLMD_REQUIRE_EXTERNAL names {harness}, but it (or the tokenizer) is missing");
            eprintln!("skipping: {harness} or a local tokenizer is not available (see the module docs)");
            None
        }
    }
}

/// The shipped quick start for `harness`, built from a copy of the repository root with
/// the default workspace and cache: all runs, then nothing, then one rate's runs.
fn quickstart_with(harness: &str, program: &str, env: &str, rate_key: &str) {
    let Some((exe, tok)) = real_tool(harness, program, env) else { return };
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&root().join("config"), &repo.path().join("config"));
    copy_dir(&root().join("workload"), &repo.path().join("workload"));
    let experiment = format!("workload/experiments/quickstart-{harness}.yaml");
    let cmd = || {
        let mut c = llmd();
        c.current_dir(repo.path()).env(env, &exe).env("LLMD_TOKENIZER", &tok);
        c
    };
    let build = |what: &str| {
        let started = Instant::now();
        let r = run(cmd().args(["build", &experiment, "--keep-stacks", "--json"]));
        eprintln!("{harness}: {what} build in {:.1} s", started.elapsed().as_secs_f64());
        assert_eq!(r.code, 0, "{what}: {}\n{}", r.stdout, r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    let first = build("first");
    assert_eq!(ids_with(&first, "ran").len(), 15, "{first}");
    let again = build("second");
    assert_eq!(ids_with(&again, "ran"), BTreeSet::new(), "{again}");

    let file = repo.path().join(&experiment);
    let text = std::fs::read_to_string(&file).unwrap();
    let from = format!("{rate_key}: 8");
    assert!(text.contains(&from), "{from} not in {experiment}");
    std::fs::write(&file, text.replacen(&from, &format!("{rate_key}: 6"), 1)).unwrap();
    let edited = build("edited");
    let expected = set(&[
        "run/ttft-10ms/sim/rate-8#1",
        "analysis/ttft-10ms/sim/rate-8#1",
        "run/ttft-40ms/sim/rate-8#1",
        "analysis/ttft-40ms/sim/rate-8#1",
        &format!("summary/quickstart-{harness}"),
    ]);
    assert_eq!(ids_with(&edited, "ran"), expected, "{edited}");
    let down = run(cmd().arg("teardown"));
    assert_eq!(down.code, 0, "{}", down.stderr);

    // Every benchmark report validates against upstream's schema.
    let Some(schema) = fixture("benchmark-report/br_v0_2_json_schema.json") else { return };
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(schema).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let ws = repo.path().join("workspace");
    let reports: Vec<PathBuf> = support::files_under(&ws)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("benchmark_report_v0.2,_") && f.extension().is_some_and(|e| e == "json"))
        .collect();
    // The workspace is a projection: the 4 current runs, not the 2 the edit superseded.
    assert_eq!(reports.len(), 4, "one report per current run: {reports:?}");
    for r in &reports {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ws.join(r)).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", r.display());
        assert_eq!(doc["scenario"]["load"]["standardized"]["tool"], harness, "{}", r.display());
    }
    let summary = std::fs::read_to_string(ws.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 5, "{summary}");
}

#[test]
fn quickstart_builds_with_inference_perf() {
    quickstart_with("inference-perf", "inference-perf", "LLMD_INFERENCE_PERF_BIN", "load.stages.0.rate");
}

#[test]
fn quickstart_builds_with_guidellm() {
    quickstart_with("guidellm", "guidellm", "LLMD_GUIDELLM_BIN", "spec.profile.rate");
}

#[test]
fn quickstart_builds_with_vllm_bench() {
    quickstart_with("vllm-benchmark", "vllm", "LLMD_VLLM_BIN", "request-rate");
}

#[test]
fn quickstart_builds_with_aiperf() {
    quickstart_with("aiperf", "aiperf", "LLMD_AIPERF_BIN", "request-rate");
}
