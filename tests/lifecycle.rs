//! The whole local lifecycle through the binary: standup → smoketest → run → teardown on
//! `examples/sim`, with real `llmd sim` processes, plus the fault cases.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{llmd, run};

/// A workspace that tears down whatever its receipts list when dropped, so a failing
/// test never leaves servers behind.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn llmd(&self, args: &[&str]) -> support::Run {
        run(llmd().arg("--workspace").arg(self.path()).args(args))
    }

    fn receipt(&self, stack: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path().join("receipts").join(format!("{stack}.json"))).expect("receipt exists");
        serde_json::from_str(&text).unwrap()
    }

    fn pids(&self, stack: &str) -> Vec<u32> {
        self.receipt(stack)["body"]["replicas"].as_array().unwrap().iter().map(|r| r["pid"].as_u64().unwrap() as u32).collect()
    }

    fn result_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(self.path().join("results")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        dirs.sort();
        dirs
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = run(llmd().arg("--workspace").arg(self.path()).arg("teardown"));
    }
}

/// True while `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn gone_soon(pid: u32) -> bool {
    for _ in 0..50 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("records.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn standup_smoketest_run_teardown_on_examples_sim() {
    let ws = Workspace::new();
    let up = ws.llmd(&["--spec", "examples/sim", "standup"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert!(up.stderr.contains("smoketest done"), "standup runs the smoketest: {}", up.stderr);
    assert!(ws.path().join("plan/sim/config.yaml").is_file(), "standup writes the plan");
    let pids = ws.pids("sim");
    assert_eq!(pids.len(), 1);
    assert!(alive(pids[0]));
    // The simulator binds port 0 and announces its port: no free-port race between
    // parallel standups. The receipt records the announced port.
    let replica = &ws.receipt("sim")["body"]["replicas"][0];
    let command: Vec<&str> = replica["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let at = command.iter().position(|a| *a == "--port").unwrap();
    assert_eq!(command[at + 1], "0", "{command:?}");
    assert!(replica["port"].as_u64().unwrap() > 0, "{replica}");

    // Standing up the same plan again leaves the running server alone.
    let again = ws.llmd(&["--spec", "examples/sim", "standup", "--skip-smoketest"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("already running from the same plan"), "{}", again.stderr);
    assert_eq!(ws.pids("sim"), pids);

    let smoke = ws.llmd(&["--spec", "examples/sim", "smoketest"]);
    assert_eq!(smoke.code, 0, "{}", smoke.stderr);
    assert!(smoke.stderr.contains("live settings match the plan"), "{}", smoke.stderr);

    let exp = ws.path().join("treatments.yaml");
    std::fs::write(
        &exp,
        "constants: {load.stages.0.duration: 1.5, load.arrival: constant}\ntreatments:\n  - {name: slow, load.stages.0.rate: 6}\n  - {name: fast, load.stages.0.rate: 12}\n",
    )
    .unwrap();
    let r = ws.llmd(&["--spec", "examples/sim", "run", "-e", exp.to_str().unwrap(), "--analyze"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dirs = ws.result_dirs();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("llmd-slow-") || name.starts_with("llmd-fast-"), "{name}");
        assert!(name.ends_with("_1"), "{name}");
        for f in ["records.jsonl", "report.json", "run_metadata.yaml"] {
            assert!(dir.join(f).is_file(), "{} missing in {name}", f);
        }
        let recs = records(dir);
        let expected = if name.contains("-slow-") { 9 } else { 18 };
        assert_eq!(recs.len(), expected, "constant arrivals for 1.5 s");
        for rec in &recs {
            assert_eq!(rec["status"], "ok", "{rec}");
            // Token counts are exact: the profile asks for 128 prompt and 32 output tokens.
            assert_eq!(rec["prompt_tokens"], 128, "{rec}");
            assert_eq!(rec["completion_tokens"], 32, "{rec}");
            let streamed: u64 = rec["chunks"].as_array().unwrap().iter().map(|c| c[1].as_u64().unwrap()).sum();
            assert_eq!(streamed, 32, "{rec}");
        }
        let rep = report(dir);
        // examples/sim configures a 20 ms TTFT and 2 ms inter-token latency.
        let ttft = rep["ttft_s"]["percentiles"]["p50"].as_f64().unwrap();
        assert!((0.0195..0.030).contains(&ttft), "TTFT median {ttft} s for a configured 20 ms");
        let tpot = rep["tpot_s"]["percentiles"]["p50"].as_f64().unwrap();
        assert!((0.0019..0.0035).contains(&tpot), "TPOT median {tpot} s for a configured 2 ms");
        assert_eq!(rep["requests"]["failed"], 0);
        assert_eq!(rep["total_output_tokens"].as_u64().unwrap(), 32 * expected as u64);
    }
    assert!(ws.path().join("workload/profiles/llmd/sim/sanity_random-slow.yaml").is_file());
    let summary = std::fs::read_to_string(ws.path().join("analysis/summary.txt")).unwrap();
    assert!(summary.contains("TTFT"), "{summary}");

    let down = ws.llmd(&["teardown"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    for pid in pids {
        assert!(gone_soon(pid), "pid {pid} still running after teardown");
    }
    assert!(!ws.path().join("receipts/sim.json").exists());
}

#[test]
fn run_without_standup_says_what_to_do() {
    let ws = Workspace::new();
    let r = ws.llmd(&["--spec", "examples/sim", "run"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("run `llmd standup` first"), "{}", r.stderr);
}

#[test]
fn unknown_harness_and_profile_are_input_errors() {
    let ws = Workspace::new();
    let r = ws.llmd(&["run", "-U", "http://127.0.0.1:9", "-l", "inference-pref"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("did you mean 'inference-perf'"), "{}", r.stderr);
    let r = ws.llmd(&["run", "-U", "http://127.0.0.1:9", "-w", "nope.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("available: ") && r.stderr.contains("sanity_random.yaml"), "{}", r.stderr);
}

#[test]
fn a_server_killed_mid_run_fails_the_run_and_teardown_still_cleans_up() {
    let ws = Workspace::new();
    let up = ws.llmd(&["--spec", "examples/sim", "standup", "--skip-smoketest"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let pid = ws.pids("sim")[0];
    let child = llmd()
        .arg("--workspace")
        .arg(ws.path())
        .args(["--spec", "examples/sim", "run", "-o", "load.stages.0.rate=20,load.stages.0.duration=4,load.arrival=constant"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // SAFETY: signalling a test-owned process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("requests failed"), "{stderr}");
    let dir = &ws.result_dirs()[0];
    let rep = report(dir);
    let failed = rep["requests"]["failed"].as_u64().unwrap() + rep["requests"]["incomplete"].as_u64().unwrap();
    let completed = rep["requests"]["completed"].as_u64().unwrap();
    assert_eq!(rep["requests"]["total"].as_u64().unwrap(), 80, "every scheduled request is counted");
    assert!(failed > 40 && completed > 5, "{rep}");
    // Latency statistics hold exactly the completed requests.
    assert_eq!(rep["ttft_s"]["count"].as_u64(), Some(completed), "{rep}");
    let down = ws.llmd(&["teardown"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(!ws.path().join("receipts/sim.json").exists());
}

#[test]
fn injected_server_errors_are_counted_not_timed() {
    let ws = Workspace::new();
    let up = ws.llmd(&[
        "--spec",
        "examples/sim",
        "--set",
        "local.sim.failureInjectionRate=10",
        "--set",
        "local.sim.failureTypes=server_error",
        "standup",
        "--skip-smoketest",
    ]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let r = ws.llmd(&["--spec", "examples/sim", "run", "-o", "load.stages.0.rate=100,load.stages.0.duration=2,load.arrival=constant"]);
    assert_eq!(r.code, 0, "a minority of failures is a warning: {}", r.stderr);
    assert!(r.stderr.contains("ServiceUnavailableError") && r.stderr.contains("not in the latency statistics"), "{}", r.stderr);
    let dir = &ws.result_dirs()[0];
    let recs = records(dir);
    assert_eq!(recs.len(), 200);
    let failed: Vec<&serde_json::Value> = recs.iter().filter(|r| r["status"] != "ok").collect();
    assert!((5..=40).contains(&failed.len()), "about 10% of 200 fail: {}", failed.len());
    assert!(failed.iter().all(|r| r["http_status"] == 503 && r["status"] == "http_error"), "{failed:?}");
    let rep = report(dir);
    assert_eq!(rep["requests"]["failed"].as_u64().unwrap() as usize, failed.len());
    assert_eq!(rep["ttft_s"]["count"].as_u64().unwrap() as usize, 200 - failed.len());
    assert_eq!(rep["e2e_s"]["count"].as_u64().unwrap() as usize, 200 - failed.len());
    let pid = ws.pids("sim")[0];
    assert_eq!(ws.llmd(&["teardown"]).code, 0);
    assert!(gone_soon(pid));
}

/// Stands `examples/sim` up in `ws`, then runs `llmd run -l inference-perf` with a fake
/// inference-perf that is the shell `script`.
fn run_fake_inference_perf(ws: &Workspace, script: &str, extra: &[&str]) -> support::Run {
    let fake = ws.path().join("inference-perf");
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let up = ws.llmd(&["--spec", "examples/sim", "standup", "--skip-smoketest"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    run(llmd()
        .env("LLMD_INFERENCE_PERF_BIN", &fake)
        .arg("--workspace")
        .arg(ws.path())
        .args(["--spec", "examples/sim", "run", "-l", "inference-perf"])
        .args(extra))
}

#[test]
fn a_harness_that_times_out_is_killed_with_its_children() {
    let ws = Workspace::new();
    let child_pid = ws.path().join("child.pid");
    // The harness starts a child (as a Python tool's workers would) and hangs.
    let script = format!("#!/bin/sh\nsleep 300 &\necho $! > {}\nsleep 300\n", child_pid.display());
    let r = run_fake_inference_perf(&ws, &script, &["--harness-timeout", "2"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("did not finish within"), "{}", r.stderr);
    let pid: u32 = std::fs::read_to_string(&child_pid).unwrap().trim().parse().unwrap();
    assert!(gone_soon(pid), "the harness's child {pid} outlived the timeout");
    assert_eq!(ws.llmd(&["teardown"]).code, 0);
}

#[test]
fn a_harness_exiting_non_zero_fails_with_its_output() {
    let ws = Workspace::new();
    let r = run_fake_inference_perf(&ws, "#!/bin/sh\necho \"fake inference-perf: cannot load config $2\" >&2\nexit 3\n", &[]);
    let pid = ws.pids("sim")[0];
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("inference-perf exited with exit status: 3"), "{}", r.stderr);
    assert!(r.stderr.contains("fake inference-perf: cannot load config"), "the harness's own output is quoted: {}", r.stderr);
    let dir = &ws.result_dirs()[0];
    let meta = std::fs::read_to_string(dir.join("run_metadata.yaml")).unwrap();
    assert!(meta.contains("rc: 1"), "{meta}");
    // The rendered profile points inference-perf at the stack.
    let cfg = std::fs::read_to_string(dir.join("inference-perf-config.yaml")).unwrap();
    assert!(cfg.contains("base_url: http://127.0.0.1:") && cfg.contains("model_name: Qwen/Qwen3-0.6B"), "{cfg}");
    assert_eq!(ws.llmd(&["teardown"]).code, 0);
    assert!(gone_soon(pid));
}

#[test]
fn a_failed_attempt_is_retried_with_a_new_experiment_id() {
    let Some(fixtures) = support::fixture("harness-outputs") else { return };
    let ws = Workspace::new();
    // A flaky harness: the first call fails, the next writes inference-perf's real outputs.
    let fake = ws.path().join("inference-perf");
    let marker = ws.path().join("failed-once");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh
if [ ! -e {m} ]; then touch {m}; echo 'flaky: connection reset' >&2; exit 3; fi
             cp {f}/inference-perf-0.7.0-summary_lifecycle_metrics.json summary_lifecycle_metrics.json
             cp {f}/inference-perf-0.7.0-stage_0_lifecycle_metrics.json stage_0_lifecycle_metrics.json
",
            m = marker.display(),
            f = fixtures.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let up = ws.llmd(&["--spec", "examples/sim", "standup", "--skip-smoketest"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let run_once = |extra: &[&str]| {
        run(llmd()
            .env("LLMD_INFERENCE_PERF_BIN", &fake)
            .arg("--workspace")
            .arg(ws.path())
            .args(["--spec", "examples/sim", "run", "-l", "inference-perf"])
            .args(extra))
    };
    let r = run_once(&["--max-attempts", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("failed (attempt 1/2)") && r.stderr.contains("retrying"), "{}", r.stderr);
    assert!(r.stderr.contains("attempt 2/2"), "{}", r.stderr);
    // Only the successful attempt's results remain, under its own experiment id.
    let dirs = ws.result_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].join("summary_lifecycle_metrics.json").is_file());
    // A bad count is a usage error.
    assert_eq!(run_once(&["--max-attempts", "0"]).code, 2);
    assert_eq!(ws.llmd(&["teardown"]).code, 0);
}

#[test]
fn a_missing_harness_says_how_to_install_it() {
    let ws = Workspace::new();
    let r = run(llmd().env("PATH", "/usr/bin:/bin").arg("--workspace").arg(ws.path()).args([
        "run",
        "-U",
        "http://127.0.0.1:9",
        "-l",
        "guidellm",
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("install: ") && r.stderr.contains("pip install guidellm"), "{}", r.stderr);
}

#[test]
fn dry_run_touches_nothing() {
    let ws = Workspace::new();
    let up = ws.llmd(&["--spec", "examples/sim", "--dry-run", "standup"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert!(up.stderr.contains("[dry-run]") && up.stderr.contains("would start 1 replica(s)"), "{}", up.stderr);
    assert!(!ws.path().join("receipts").exists());
    assert!(!ws.path().join("plan").exists());
}

#[test]
fn experiment_runs_every_setup_treatment_through_the_full_cycle() {
    let ws = Workspace::new();
    let exp = ws.path().join("sweep.yaml");
    std::fs::write(
        &exp,
        "experiment: {name: ttft-sweep, harness: llmd, profile: sanity_random.yaml}\n\
         setup:\n  treatments:\n    - {name: fast, local.sim.timeToFirstToken: 10ms}\n    - {name: slow, local.sim.timeToFirstToken: 40ms}\n\
         constants: {load.stages.0.duration: 1, load.arrival: constant}\n\
         treatments:\n  - {name: r5, load.stages.0.rate: 5}\n  - {name: r10, load.stages.0.rate: 10}\n",
    )
    .unwrap();
    let r = ws.llmd(&["--spec", "examples/sim", "experiment", "-e", exp.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = std::fs::read_to_string(ws.path().join("experiment-summary.yaml")).unwrap();
    for line in ["experiment: ttft-sweep", "total_matrix: 4", "succeeded: 2", "failed: 0", "run_treatments: 2/2"] {
        assert!(summary.contains(line), "{line} not in\n{summary}");
    }
    for (setup, ttft_ms) in [("fast", 10.0), ("slow", 40.0)] {
        let sw = ws.path().join(format!("setup-treatment-{setup}"));
        assert!(sw.join("plan/sim/config.yaml").is_file());
        let config = std::fs::read_to_string(sw.join("plan/sim/config.yaml")).unwrap();
        assert!(config.contains(&format!("timeToFirstToken: {ttft_ms:.0}ms")), "the setup treatment reached the plan");
        let results: Vec<PathBuf> = std::fs::read_dir(sw.join("results")).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(results.len(), 2, "{results:?}");
        for dir in results {
            let ttft = report(&dir)["ttft_s"]["percentiles"]["p50"].as_f64().unwrap() * 1e3;
            assert!(ttft >= ttft_ms - 0.5 && ttft < ttft_ms + 8.0, "{setup}: TTFT {ttft} ms for a configured {ttft_ms} ms");
        }
        assert!(receipts_in(&sw).is_empty(), "teardown ran after {setup}");
    }
}

/// Receipts left in a workspace.
fn receipts_in(ws: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(ws.join("receipts")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

#[test]
fn shipped_profiles_and_experiments_are_valid() {
    use std::collections::BTreeMap;
    let root = support::root();
    let mut values = BTreeMap::new();
    values.insert("LLMDBENCH_DEPLOY_CURRENT_MODEL".to_string(), "m".to_string());
    values.insert("LLMDBENCH_DEPLOY_CURRENT_TOKENIZER".to_string(), "m".to_string());
    values.insert("LLMDBENCH_HARNESS_STACK_ENDPOINT_URL".to_string(), "http://127.0.0.1:1".to_string());
    let mut checked = 0;
    for harness in ["llmd", "inference-perf", "guidellm", "vllm-benchmark"] {
        for entry in std::fs::read_dir(root.join("workload/profiles").join(harness)).unwrap().flatten() {
            let mut warnings = llmd::error::Warnings::default();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let job = llmd::phases::run::ProfileJob {
                harness: llmd::harness::external::HarnessKind::parse(harness).unwrap(),
                source: &entry.path(),
                text: &text,
                values: &values,
                treatment: None,
                overrides: &[],
                out_dir: Path::new("unused"),
            };
            let doc = job.prepare(false, &mut warnings).unwrap().doc;
            let text = llmd::yaml::dump(&doc, Default::default());
            assert!(!text.contains("REPLACE_ENV_"), "{}: unfilled placeholder", entry.path().display());
            if harness == "llmd" {
                llmd::harness::profile::parse_native_profile(&doc, &entry.path().display().to_string()).unwrap();
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} profiles");
    for entry in std::fs::read_dir(root.join("workload/experiments")).unwrap().flatten() {
        let e = llmd::experiment::load_experiment(&entry.path()).unwrap();
        assert!(!e.setup.is_empty() && !e.run.is_empty(), "{}", entry.path().display());
    }
}

#[test]
fn a_configured_server_command_is_stood_up_and_torn_down() {
    // `local.server: command` with llmd's own simulator standing in for `vllm serve`:
    // `{model}` and `{port}` are substituted, readiness is polled on /health.
    let ws = Workspace::new();
    let cc = ws.path().join("local.yaml");
    std::fs::write(
        &cc,
        format!(
            "local:\n  server: command\n  command: [{}, sim, --model, '{{model}}', --port, '{{port}}', --max-model-len, '4096', --time-to-first-token, 5ms]\n",
            env!("CARGO_BIN_EXE_llmd")
        ),
    )
    .unwrap();
    let up = ws.llmd(&["--spec", "examples/sim", "--cluster-config", cc.to_str().unwrap(), "standup"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let receipt = ws.receipt("sim");
    let command: Vec<&str> = receipt["body"]["replicas"][0]["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let port = receipt["body"]["replicas"][0]["port"].as_u64().unwrap().to_string();
    assert_eq!(&command[1..6], ["sim", "--model", "Qwen/Qwen3-0.6B", "--port", port.as_str()]);
    let pid = ws.pids("sim")[0];
    assert_eq!(ws.llmd(&["teardown"]).code, 0);
    assert!(gone_soon(pid));
}

#[test]
fn a_missing_server_command_fails_standup_before_starting_anything() {
    let ws = Workspace::new();
    let r =
        ws.llmd(&["--spec", "examples/sim", "--set", "local.server=command", "--set", "local.command=[no-such-server-binary]", "standup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("`no-such-server-binary` is not installed"), "{}", r.stderr);
    assert!(!ws.path().join("receipts/sim.json").exists());
}

#[test]
fn a_mistyped_backend_or_non_admin_on_local_is_an_input_error() {
    let ws = Workspace::new();
    let r = ws.llmd(&["--spec", "examples/sim", "--backend", "lcoal", "standup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown backend 'lcoal'") && r.stderr.contains("did you mean 'local'?"), "{}", r.stderr);
    let r = ws.llmd(&["--spec", "examples/sim", "--non-admin", "standup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--non-admin applies to cluster backends"), "{}", r.stderr);
    assert!(!ws.path().join("receipts/sim.json").exists(), "nothing was started");
}
