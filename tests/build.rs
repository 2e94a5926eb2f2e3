//! The incremental engine through the binary, on the local backend with real `llmd sim`
//! processes and a real cache directory.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{copy_dir, llmd, run};

/// A scratch project: a copy of the config tree, an experiment file, a workspace and a
/// cache. Tears down whatever is left running when dropped.
struct Project {
    dir: tempfile::TempDir,
}

const EXPERIMENT: &str = "\
experiment:
  name: t
  spec: examples/sim
  harness: llmd
  profile: sanity_random.yaml
setup:
  treatments:
    - name: fast
      local.sim.timeToFirstToken: 5ms
    - name: slow
      local.sim.timeToFirstToken: 15ms
constants:
  load.stages.0.requests: 3
  load.stages.0.duration: 10
  load.arrival: constant
  dataset.output_len: 4
treatments:
  - name: r1
    load.stages.0.rate: 50
  - name: r2
    load.stages.0.rate: 60
";

impl Project {
    fn new(experiment: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&support::root().join("config"), &dir.path().join("config"));
        copy_dir(&support::root().join("workload"), &dir.path().join("workload"));
        std::fs::write(dir.path().join("exp.yaml"), experiment).unwrap();
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self) -> std::process::Command {
        let mut c = llmd();
        c.current_dir(self.path()).args(["--workspace", "ws"]).env("LLMD_CACHE_DIR", self.path().join("cache"));
        c
    }

    fn build(&self, extra: &[&str]) -> (i32, serde_json::Value, String) {
        let r = run(self.cmd().args(["build", "exp.yaml", "--json"]).args(extra));
        let json = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr));
        (r.code, json, r.stderr)
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.path().join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{from} not in {file}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = run(self.cmd().arg("teardown"));
    }
}

fn with_status<'a>(report: &'a serde_json::Value, status: &str) -> BTreeSet<&'a str> {
    report["nodes"].as_array().unwrap().iter().filter(|n| n["status"] == status).map(|n| n["id"].as_str().unwrap()).collect()
}

fn reason<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    &report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"))["reason"]
}

#[test]
fn a_second_build_executes_nothing() {
    let p = Project::new(EXPERIMENT);
    let (code, first, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    // 2 setups x (plan, standup, smoketest, 2 x (run, analysis)) + summary
    assert_eq!(with_status(&first, "ran").len(), 15, "{first}");
    assert!(p.path().join("ws/summary.csv").is_file());
    assert!(p.path().join("ws/setup-treatment-fast/plan/sim/config.yaml").is_file());
    let results: Vec<PathBuf> =
        std::fs::read_dir(p.path().join("ws/setup-treatment-slow/results")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(results.len(), 2);
    assert!(std::fs::read_dir(p.path().join("ws/setup-treatment-fast/receipts")).unwrap().next().is_none(), "torn down after its runs");
    // Benchmark reports beside each run's results, and the cross-treatment comparison.
    for r in &results {
        assert!(
            r.join("benchmark_report_v0.2,_records.yaml").is_file() && r.join("benchmark_report,_records.yaml").is_file(),
            "{}",
            r.display()
        );
    }
    let comparison = std::fs::read_to_string(p.path().join("ws/cross-treatment-comparison/treatment_comparison.csv")).unwrap();
    assert_eq!(comparison.lines().count(), 5, "{comparison}");
    assert!(comparison.lines().nth(1).unwrap().starts_with("fast/r1#1,\"setup-treatment-fast/results/"), "{comparison}");
    assert!(comparison.lines().nth(1).unwrap().ends_with(",llmd,50.0"), "the offered rate comes from the profile: {comparison}");
    // The model server's /metrics was scraped during each run and summarized.
    for r in &results {
        assert!(r.join("metrics/raw/sim.log").is_file(), "{}", r.display());
        let br = std::fs::read_to_string(r.join("benchmark_report_v0.2,_records.yaml")).unwrap();
        assert!(br.contains("observability:") && br.contains("kv_cache_usage:") && br.contains("running_requests:"), "{br}");
    }
    let html = std::fs::read_to_string(p.path().join("ws/report.html")).unwrap();
    assert!(html.contains("run/slow/sim/r2#1 key") && html.contains("run input deployment"), "provenance in the report");
    assert!(p.path().join("ws/cross-treatment-comparison/plots/cdf_overlay_ttft.png").is_file());

    let (code, second, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(with_status(&second, "fresh").len(), 15, "{second}");
    assert!(with_status(&second, "ran").is_empty());
    let why = run(p.cmd().arg("why"));
    assert!(why.stdout.contains("every node was fresh"), "{}", why.stdout);

    // Materialized outputs come back from the cache.
    std::fs::remove_dir_all(p.path().join("ws")).unwrap();
    let (_, third, _) = p.build(&[]);
    assert!(with_status(&third, "ran").is_empty());
    assert!(
        p.path().join("ws/summary.txt").is_file()
            && p.path().join("ws/setup-treatment-slow/plan/sim/14_standalone-deployment.yaml").is_file()
    );
    assert_eq!(std::fs::read_dir(p.path().join("ws/setup-treatment-slow/results")).unwrap().count(), 2);

    // Stale analyses over fresh runs (forced here; a new analysis version does the same)
    // re-analyse the cached results: nothing is stood up or run.
    let (code, fourth, err) = p.build(&["--force", "analysis/*"]);
    assert_eq!(code, 0, "{err}");
    let ran = with_status(&fourth, "ran");
    assert_eq!(ran.len(), 5, "4 analyses and the summary: {fourth}");
    assert!(ran.iter().all(|id| id.starts_with("analysis/") || id.starts_with("summary/")), "{ran:?}");
    assert!(with_status(&fourth, "skipped").is_empty(), "{fourth}");
}

#[test]
fn editing_one_run_treatment_reruns_exactly_that_run() {
    let p = Project::new(&EXPERIMENT.replace("experiment:\n", "repeat: 2\nexperiment:\n"));
    assert_eq!(p.build(&["--keep-stacks"]).0, 0);
    p.edit("exp.yaml", "load.stages.0.rate: 60", "load.stages.0.rate: 70");
    let (_, dry, _) = p.build(&["--keep-stacks", "--dry-run"]);
    let (code, report, err) = p.build(&["--keep-stacks"]);
    assert_eq!(code, 0, "{err}");
    let ran = with_status(&report, "ran");
    let expected: BTreeSet<&str> = [
        "run/fast/sim/r2#1",
        "run/fast/sim/r2#2",
        "run/slow/sim/r2#1",
        "run/slow/sim/r2#2",
        "analysis/fast/sim/r2#1",
        "analysis/fast/sim/r2#2",
        "analysis/slow/sim/r2#1",
        "analysis/slow/sim/r2#2",
        "summary/t",
    ]
    .into();
    assert_eq!(ran, expected, "{err}");
    assert_eq!(with_status(&dry, "would_run"), expected, "the dry run predicted the build");
    let r = reason(&report, "run/fast/sim/r2#2");
    assert_eq!(r["type"], "treatment_changed");
    assert_eq!(r["changes"][0]["path"], "load.stages.0.rate");
    assert_eq!((r["changes"][0]["old"].as_str(), r["changes"][0]["new"].as_str()), (Some("60"), Some("70")));
    assert!(r["changes"][0]["origin"].as_str().unwrap().starts_with("exp.yaml:"), "{r}");
    let why = run(p.cmd().args(["why", "run/fast/*"]));
    assert!(why.stdout.contains("load.stages.0.rate: 60 → 70 (exp.yaml:"), "{}", why.stdout);
    // Repetitions are summarized with a spread and a confidence interval.
    let reps = std::fs::read_to_string(p.path().join("ws/repetitions.csv")).unwrap();
    assert!(reps.starts_with("setup,stack,treatment,repetitions,metric,mean,stddev,ci95_low,ci95_high"), "{reps}");
    let row = reps.lines().find(|l| l.starts_with("slow,sim,r2,2,ttft_mean_ms,")).unwrap_or_else(|| panic!("{reps}"));
    assert_eq!(row.split(',').filter(|c| !c.is_empty()).count(), 9, "{row}");
}

#[test]
fn editing_a_setup_treatment_reruns_only_that_setup() {
    let p = Project::new(EXPERIMENT);
    assert_eq!(p.build(&["--keep-stacks"]).0, 0);
    p.edit("exp.yaml", "timeToFirstToken: 15ms", "timeToFirstToken: 25ms");
    let (code, report, err) = p.build(&["--keep-stacks"]);
    assert_eq!(code, 0, "{err}");
    let ran = with_status(&report, "ran");
    assert!(ran.iter().all(|id| id.contains("/slow/") || id.starts_with("summary/")), "{ran:?}");
    for id in ["plan/slow/sim", "standup/slow/sim", "smoketest/slow/sim", "run/slow/sim/r1#1", "run/slow/sim/r2#1", "summary/t"] {
        assert!(ran.contains(id), "{id} did not run: {ran:?}");
    }
    let r = reason(&report, "standup/slow/sim");
    assert_eq!(r["type"], "config_changed");
    assert_eq!(r["changes"][0]["path"], "local.sim.timeToFirstToken");
    assert_eq!(reason(&report, "run/slow/sim/r1#1")["type"], "upstream_changed");
    let why = run(p.cmd().arg("why"));
    let standup = why.stdout.find("standup/slow/sim  [ran]").unwrap_or_else(|| panic!("{}", why.stdout));
    assert!(why.stdout[standup..].contains("└─ run/slow/sim/r1#1"), "cascades follow their root: {}", why.stdout);
}

#[test]
fn cosmetic_scenario_edits_execute_nothing() {
    let p = Project::new(EXPERIMENT);
    assert_eq!(p.build(&[]).0, 0);
    let scenario = "config/scenarios/examples/sim.yaml";
    let text = std::fs::read_to_string(p.path().join(scenario)).unwrap();
    // A comment, extra blank lines and trailing spaces, and two keys swapped.
    let edited = format!("# edited by a test\n\n{}", text.replace("      maxModelLen: 4096\n", "      maxModelLen:   4096   \n\n"));
    let edited = edited.replace(
        "      name: Qwen/Qwen3-0.6B\n      maxModelLen:   4096   \n",
        "      maxModelLen:   4096   \n      name: Qwen/Qwen3-0.6B\n",
    );
    assert_ne!(edited, text);
    std::fs::write(p.path().join(scenario), edited).unwrap();
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(with_status(&report, "ran").is_empty(), "{report}");
    // A real edit to a manifest-only value re-renders the plans and nothing else.
    p.edit(scenario, "limits: {cpu: \"1\", memory: 512Mi}", "limits: {cpu: \"2\", memory: 512Mi}");
    let (_, report, _) = p.build(&[]);
    assert_eq!(with_status(&report, "ran"), BTreeSet::from(["plan/fast/sim", "plan/slow/sim"]), "{report}");
}

#[test]
fn a_killed_build_resumes_with_the_interrupted_nodes() {
    let p = Project::new(&EXPERIMENT.replace("load.stages.0.requests: 3", "load.stages.0.requests: 60"));
    let mut child = p.cmd().args(["build", "exp.yaml"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until the second run of the first setup is under way.
    let marker = p.path().join("ws/setup-treatment-fast/workload/profiles/llmd/sim/sanity_random-r2.yaml");
    for _ in 0..1500 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(marker.exists(), "the build never reached run r2");
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(reason(&report, "run/fast/sim/r2#1")["type"], "interrupted", "{report}");
    let fresh = with_status(&report, "fresh");
    for id in ["plan/fast/sim", "run/fast/sim/r1#1", "analysis/fast/sim/r1#1"] {
        assert!(fresh.contains(id), "{id} finished before the kill and must not re-run: {report}");
    }
    // The killed build left its stack running; this build reused it.
    assert!(with_status(&report, "fresh").contains("standup/fast/sim"), "{report}");
    for id in ["run/slow/sim/r1#1", "run/slow/sim/r2#1", "summary/t"] {
        assert!(with_status(&report, "ran").contains(id), "{id}: {report}");
    }
    let verify = run(p.cmd().args(["cache", "verify"]));
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

#[test]
fn a_second_build_waits_for_the_first_and_names_it() {
    let p = Project::new(&EXPERIMENT.replace("load.stages.0.requests: 3", "load.stages.0.requests: 40"));
    let first = p.cmd().args(["build", "exp.yaml"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let holder = p.path().join("cache/lock.holder");
    for _ in 0..200 {
        if holder.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(p.cmd().args(["build", "exp.yaml", "--json"]));
    let mut first = first;
    assert!(first.wait().unwrap().success());
    assert!(
        second.stderr.contains(&format!("held by pid {}", first.id())) && second.stderr.contains("build exp.yaml"),
        "{}",
        second.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert!(with_status(&report, "ran").is_empty(), "the second build found everything done: {report}");
    let timeout = {
        let _held = p.cmd().args(["build", "exp.yaml", "--force", "run/*"]).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let r = run(p.cmd().args(["build", "exp.yaml", "--lock-timeout", "0"]));
        let mut held = _held;
        let _ = held.wait();
        r
    };
    assert_eq!(timeout.code, 1, "{}", timeout.stderr);
    assert!(timeout.stderr.contains("--lock-timeout"), "{}", timeout.stderr);
}

#[test]
fn a_failing_run_is_recorded_and_retried() {
    // r2's requests time out long before the simulator's first token: every one fails.
    let p = Project::new(&EXPERIMENT.replace("    load.stages.0.rate: 60\n", "    load.stages.0.rate: 60\n    request_timeout: 0.001\n"));
    let (code, report, _) = p.build(&["--keep-going"]);
    assert_eq!(code, 1);
    assert!(with_status(&report, "failed").contains("run/fast/sim/r2#1"), "{report}");
    assert!(with_status(&report, "ran").contains("run/slow/sim/r1#1"), "--keep-going continues: {report}");
    assert!(with_status(&report, "skipped").contains("analysis/fast/sim/r2#1"));
    assert!(with_status(&report, "skipped").contains("summary/t"));
    let ls = run(p.cmd().args(["cache", "ls"]));
    assert!(ls.stdout.lines().any(|l| l.starts_with("run/fast/sim/r2#1") && l.contains("failed")), "{}", ls.stdout);
    // `treatment_max_attempts` is a retry policy, not an input: adding it leaves every
    // successful run fresh, and the failed one gets two attempts.
    p.edit("exp.yaml", "constants:\n", "treatment_max_attempts: 2\nconstants:\n");
    let (_, again, _) = p.build(&["--keep-going"]);
    let r = reason(&again, "run/fast/sim/r2#1");
    assert_eq!(r["type"], "previous_failed", "{again}");
    assert!(r["error"].as_str().unwrap().contains("requests failed"), "{r}");
    assert!(with_status(&again, "fresh").contains("run/fast/sim/r1#1"));
    let mut journals: Vec<PathBuf> = std::fs::read_dir(p.path().join("cache/journal")).unwrap().flatten().map(|e| e.path()).collect();
    journals.sort();
    let last = std::fs::read_to_string(journals.last().unwrap()).unwrap();
    assert!(
        last.lines().any(|l| l.contains(r#""event":"retry""#) && l.contains("run/fast/sim/r2#1") && l.contains(r#""attempt":1"#)),
        "{last}"
    );
    let node = again["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "run/fast/sim/r2#1").unwrap();
    assert!(node["detail"].as_str().unwrap().contains("failed 2 attempts; the last"), "{node}");
    // The failed attempt's results are gone; the last one's stay for inspection, in
    // failed-runs/ — results/ holds only recorded runs (what `llmd analyze` reads).
    let r2 = |dir: &str| -> Vec<String> {
        std::fs::read_dir(p.path().join("ws/setup-treatment-fast").join(dir))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains("-r2-")).collect())
            .unwrap_or_default()
    };
    assert_eq!(r2("failed-runs").len(), 2, "the first build's attempt and this build's last one: {:?}", r2("failed-runs"));
    assert!(r2("results").is_empty(), "{:?}", r2("results"));
    assert!(!p.path().join("ws/setup-treatment-fast/.llmd-running").exists(), "no staging directory is left");
    // Without --keep-going the first failure stops the build (and still tears down).
    let (code, stopped, _) = p.build(&[]);
    assert_eq!(code, 1);
    assert!(with_status(&stopped, "skipped").contains("run/slow/sim/r2#1"), "{stopped}");
    assert!(std::fs::read_dir(p.path().join("ws/setup-treatment-fast/receipts")).unwrap().next().is_none());
}

#[test]
fn bad_experiments_are_input_errors() {
    let p = Project::new("experiment: {name: t}\ntreatments: [{name: a}]\n");
    let r = run(p.cmd().args(["build", "exp.yaml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no specification"), "{}", r.stderr);
    std::fs::write(p.path().join("exp.yaml"), "experiment: {spec: examples/sim}\ntreatmnets: []\n").unwrap();
    let r = run(p.cmd().args(["build", "exp.yaml"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("exp.yaml:2:1") && r.stderr.contains("did you mean 'treatments'"), "{}", r.stderr);
}

#[test]
fn a_bad_scenario_is_an_input_error_and_an_unreadable_one_is_not() {
    let p = Project::new(EXPERIMENT);
    let scenario = p.path().join("config/scenarios/examples/sim.yaml");
    // Broken YAML: the user's to fix, exit 2, with the file and line.
    let text = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(&scenario, format!("{text}\nbroken: [unclosed\n")).unwrap();
    let r = run(p.cmd().args(["build", "exp.yaml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("sim.yaml:"), "the error names the file and line: {}", r.stderr);
    // A scenario that exists but cannot be read (here: a directory) is not an input
    // error: exit 1, saying it cannot be read.
    std::fs::remove_file(&scenario).unwrap();
    std::fs::create_dir(&scenario).unwrap();
    std::fs::write(scenario.join("not-empty"), "x").unwrap();
    let r = run(p.cmd().args(["build", "exp.yaml"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot read"), "{}", r.stderr);
}

/// Random leaf edits: `build --dry-run` predicts exactly what `build` executes, and the
/// reasons name exactly the edited path with its old and new values.
#[test]
fn random_edits_are_predicted_and_explained_exactly() {
    let p = Project::new(EXPERIMENT);
    assert_eq!(p.build(&["--keep-stacks"]).0, 0);
    let mut rng = llmd::util::rng::Rng::new(20261128);
    // (file, text before the value, current value, dotted path, JSON of a value, nodes whose reason must name it)
    let mut rates = [50u64, 60];
    let mut ttfts = [5u64, 15];
    let mut gpu = 0u64;
    let mut kinds = BTreeSet::new();
    for round in 0..8 {
        let kind = rng.below(3);
        kinds.insert(kind);
        let (file, path, old, new, owners): (&str, &str, String, String, Vec<String>) = match kind {
            0 => {
                let i = rng.below(2);
                let new = loop {
                    let v = 40 + rng.below(50) as u64;
                    if v != rates[i] {
                        break v;
                    }
                };
                p.edit("exp.yaml", &format!("load.stages.0.rate: {}", rates[i]), &format!("load.stages.0.rate: {new}"));
                let old = std::mem::replace(&mut rates[i], new);
                let t = ["r1", "r2"][i];
                (
                    "exp.yaml",
                    "load.stages.0.rate",
                    old.to_string(),
                    new.to_string(),
                    vec![format!("run/fast/sim/{t}#1"), format!("run/slow/sim/{t}#1")],
                )
            }
            1 => {
                let i = rng.below(2);
                let new = loop {
                    let v = 3 + rng.below(30) as u64;
                    if v != ttfts[i] && !ttfts.contains(&v) {
                        break v;
                    }
                };
                p.edit("exp.yaml", &format!("timeToFirstToken: {}ms", ttfts[i]), &format!("timeToFirstToken: {new}ms"));
                let old = std::mem::replace(&mut ttfts[i], new);
                let s = ["fast", "slow"][i];
                ("exp.yaml", "local.sim.timeToFirstToken", format!("\"{old}ms\""), format!("\"{new}ms\""), vec![format!("standup/{s}/sim")])
            }
            _ => {
                let new = gpu + 1 + rng.below(5) as u64;
                p.edit(
                    "config/scenarios/examples/sim.yaml",
                    &format!("gpuMemoryUtilization: {gpu}"),
                    &format!("gpuMemoryUtilization: {new}"),
                );
                let old = std::mem::replace(&mut gpu, new);
                (
                    "config/scenarios/examples/sim.yaml",
                    "model.gpuMemoryUtilization",
                    old.to_string(),
                    new.to_string(),
                    vec!["plan/fast/sim".into(), "plan/slow/sim".into()],
                )
            }
        };
        let (_, dry, _) = p.build(&["--keep-stacks", "--dry-run"]);
        let (code, real, err) = p.build(&["--keep-stacks"]);
        assert_eq!(code, 0, "round {round}: {err}");
        assert_eq!(with_status(&dry, "would_run"), with_status(&real, "ran"), "round {round}: the dry run's prediction");
        for id in &owners {
            let r = reason(&real, id);
            let changes = r["changes"].as_array().unwrap_or_else(|| panic!("round {round}: {id}: {r}"));
            assert_eq!(changes.len(), 1, "round {round}: {id} names exactly the edited leaf: {r}");
            assert_eq!(changes[0]["path"], path, "round {round}");
            assert_eq!(
                (changes[0]["old"].as_str().unwrap(), changes[0]["new"].as_str().unwrap()),
                (old.as_str(), new.as_str()),
                "round {round}"
            );
            assert!(changes[0]["origin"].as_str().unwrap().contains(file), "round {round}: {r}");
        }
        // Every node that ran is either named above or a cascade of one that is.
        for n in real["nodes"].as_array().unwrap().iter().filter(|n| n["status"] == "ran") {
            let t = n["reason"]["type"].as_str().unwrap();
            assert!(
                owners.iter().any(|o| o == n["id"].as_str().unwrap())
                    || t.starts_with("upstream_")
                    || (t == "config_changed" && n["kind"] == "plan"),
                "round {round}: unexpected {n}"
            );
        }
    }
    assert_eq!(kinds.len(), 3, "every kind of edit was tried");
}

/// Cache damage of every kind `verify` finds — garbage in a node file, a pointer to a
/// record that is gone, a malformed record of a node not needed now, a temporary file of a
/// killed writer — is reported, `gc` refuses to guess while a node file is unreadable,
/// `verify --repair` removes exactly the damage, and the next build runs only the node
/// whose record was lost: the intact record behind the garbage node file is reused by key.
#[test]
fn cache_damage_is_repaired_and_nothing_intact_is_lost() {
    let p = Project::new(EXPERIMENT);
    assert_eq!(p.build(&[]).0, 0);
    let cache = p.path().join("cache");
    let node_file = |id: &str| {
        let d = llmd::store::digest(id.as_bytes());
        cache.join("nodes").join(&d[..2]).join(format!("{d}.json"))
    };
    let record_of = |id: &str| {
        let n: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(node_file(id)).unwrap()).unwrap();
        let key = n["last_ok"].as_str().unwrap().to_string();
        cache.join("records").join(&key[..2]).join(format!("{key}.json"))
    };
    let (garbled, lost) = ("run/slow/sim/r2#1", "analysis/fast/sim/r1#1");
    let garbled_record = record_of(garbled);
    std::fs::write(node_file(garbled), b"{\"id\": \"run/slow/si").unwrap();
    std::fs::remove_file(record_of(lost)).unwrap();
    // Where temporaries live (`tmp/`), and beside their destination (earlier versions).
    let stray = cache.join("tmp").join(".0123abcd.json.tmp-4294967295-1");
    std::fs::write(&stray, b"{\"id\": ").unwrap();
    let stray_old = cache.join("incomplete").join(".0123abcd.tmp-4294967295-0");
    std::fs::write(&stray_old, b"{\"id\": ").unwrap();
    let malformed = cache.join("records").join("ff").join("ff00000000000000000000000000000000000000000000000000000000000000.json");
    std::fs::create_dir_all(malformed.parent().unwrap()).unwrap();
    std::fs::write(&malformed, b"not json").unwrap();

    let verify = run(p.cmd().args(["cache", "verify"]));
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    for says in ["unreadable node file", "record", "temporary file of a killed writer"] {
        assert!(verify.stdout.contains(says), "{says}: {}", verify.stdout);
    }
    assert!(verify.stderr.contains("--repair"), "{}", verify.stderr);
    let gc = run(p.cmd().args(["cache", "gc"]));
    assert_eq!(gc.code, 1, "gc refuses: {}{}", gc.stdout, gc.stderr);
    assert!(gc.stderr.contains("cannot be read") && gc.stderr.contains("--repair") && garbled_record.is_file(), "{}", gc.stderr);

    let repair = run(p.cmd().args(["cache", "verify", "--repair"]));
    assert_eq!(repair.code, 0, "{}{}", repair.stdout, repair.stderr);
    assert!(repair.stdout.contains(&format!("will run again: {lost}")), "{}", repair.stdout);
    assert!(!stray.exists() && !stray_old.exists() && !malformed.exists() && !node_file(garbled).exists(), "{}", repair.stdout);
    assert!(garbled_record.is_file(), "an intact record is never removed");
    assert_eq!(run(p.cmd().args(["cache", "verify"])).code, 0);
    assert_eq!(
        run(p.cmd().args(["cache", "verify", "--repair"])).stdout.lines().last().map(|l| l.ends_with("nothing to repair")),
        Some(true)
    );

    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    let ran = with_status(&report, "ran");
    assert!(ran.contains(lost) && !ran.contains(garbled), "{ran:?}");
    assert!(ran.iter().all(|id| !id.starts_with("run/")), "no run is repeated: {ran:?}");
    assert_eq!(run(p.cmd().args(["cache", "verify"])).code, 0);
    assert_eq!(run(p.cmd().args(["cache", "gc"])).code, 0);
}

/// A blob with flipped bytes whose node's outputs another node reads: the build runs
/// that node again (its outputs are damaged) instead of failing the reader, and verify
/// is clean afterwards.
#[test]
fn a_damaged_output_that_a_node_reads_runs_its_node_again() {
    let p = Project::new(EXPERIMENT);
    assert_eq!(p.build(&[]).0, 0);
    let cache = p.path().join("cache");
    let outputs_of = |id: &str| -> Vec<String> {
        let d = llmd::store::digest(id.as_bytes());
        let n: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cache.join("nodes").join(&d[..2]).join(format!("{d}.json"))).unwrap()).unwrap();
        let key = n["last_ok"].as_str().unwrap().to_string();
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cache.join("records").join(&key[..2]).join(format!("{key}.json"))).unwrap())
                .unwrap();
        r["outputs"].as_object().unwrap().values().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let flip = |digest: &str| {
        let blob = cache.join("blobs").join(&digest[..2]).join(digest);
        let mut bytes = std::fs::read(&blob).unwrap();
        bytes[0] ^= 0x20;
        std::fs::write(&blob, bytes).unwrap();
    };
    // A run's output, read by its analysis (forced to execute).
    let run_id = "run/fast/sim/r1#1";
    flip(&outputs_of(run_id)[0]);
    assert_eq!(run(p.cmd().args(["cache", "verify"])).code, 1);
    let (code, report, err) = p.build(&["--force", "analysis/fast/sim/r1#1"]);
    assert_eq!(code, 0, "{err}");
    let ran = with_status(&report, "ran");
    assert!(ran.contains(run_id) && ran.contains("analysis/fast/sim/r1#1"), "{ran:?}");
    assert_eq!(reason(&report, run_id)["type"], "output_missing", "{report}");
    assert!(!ran.contains("run/fast/sim/r2#1") && !ran.contains("run/slow/sim/r1#1"), "{ran:?}");
    // An analysis's output, read by the summary (forced).
    let analysis_id = "analysis/slow/sim/r2#1";
    flip(&outputs_of(analysis_id)[0]);
    let (code, report, err) = p.build(&["--force", "summary/*"]);
    assert_eq!(code, 0, "{err}");
    let ran = with_status(&report, "ran");
    assert!(ran.contains(analysis_id) && ran.iter().any(|id| id.starts_with("summary/")), "{ran:?}");
    assert!(ran.iter().all(|id| !id.starts_with("run/")), "{ran:?}");
    // Reading a damaged blob removes it, so the re-executed node wrote it afresh (an
    // analysis of the same run has the same outputs): the cache is clean.
    let verify = run(p.cmd().args(["cache", "verify"]));
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

/// A build reads the records the last one used from one file (`records.pack`); a record
/// removed by hand from `records/` still runs its node again, and only that run (and what
/// reads it) executes.
#[test]
fn a_record_removed_by_hand_runs_its_node_again_despite_the_record_pack() {
    let p = Project::new(EXPERIMENT);
    assert_eq!(p.build(&[]).0, 0);
    let cache = p.path().join("cache");
    assert!(cache.join("records.pack").is_file(), "a build that wrote records packs them");
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(with_status(&report, "ran").is_empty(), "{report}");
    let id = "run/slow/sim/r2#1";
    let key = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()["key"].as_str().unwrap().to_string();
    // Past the clock tick of directory mtimes, as any hand is.
    std::thread::sleep(std::time::Duration::from_millis(50));
    std::fs::remove_file(cache.join("records").join(&key[..2]).join(format!("{key}.json"))).unwrap();
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    let runs: BTreeSet<&str> = with_status(&report, "ran").into_iter().filter(|n| n.starts_with("run/")).collect();
    assert_eq!(runs, BTreeSet::from([id]), "{report}");
    assert_eq!(run(p.cmd().args(["cache", "verify"])).code, 0);
}

/// A workspace write that fails (here: a directory where the summary goes, as a full
/// disk or a read-only directory would) fails the build and names the path; the cache
/// keeps every result, so the next build with the path fixed only writes the files.
#[test]
fn a_failed_workspace_write_fails_the_build_naming_the_path() {
    let p = Project::new(EXPERIMENT);
    std::fs::create_dir_all(p.path().join("ws/summary.txt/blocked")).unwrap();
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 1, "{err}");
    let errors = report["workspace_errors"].as_array().unwrap_or_else(|| panic!("{report}"));
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains("ws/summary.txt")), "{errors:?}");
    assert!(err.contains("summary.txt"), "{err}");
    assert_eq!(with_status(&report, "failed").len(), 0, "every node succeeded: {report}");
    std::fs::remove_dir_all(p.path().join("ws/summary.txt")).unwrap();
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(with_status(&report, "ran").is_empty(), "{report}");
    assert!(p.path().join("ws/summary.txt").is_file());
}

/// `cache ls/verify/gc/export/import`, a corrupt blob, and `plan --check`.
#[test]
fn cache_maintenance_corruption_and_plan_check() {
    let p = Project::new(EXPERIMENT);
    assert_eq!(p.build(&[]).0, 0);
    let ls = run(p.cmd().args(["cache", "ls"]));
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.contains("summary/t") && ls.stdout.contains("run/slow/sim/r2#1"), "{}", ls.stdout);
    let verify = run(p.cmd().args(["cache", "verify"]));
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // A corrupt blob: `verify` names it; a build that needs it re-executes its node.
    let summary = std::fs::read(p.path().join("ws/summary.txt")).unwrap();
    let d = llmd::store::digest(&summary);
    let blob = p.path().join("cache/blobs").join(&d[..2]).join(&d);
    std::fs::write(&blob, b"garbage").unwrap();
    let verify = run(p.cmd().args(["cache", "verify"]));
    assert_eq!(verify.code, 1);
    assert!(verify.stdout.contains("corrupt blob") && verify.stdout.contains(&d), "{}", verify.stdout);
    std::fs::remove_file(p.path().join("ws/summary.txt")).unwrap();
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(with_status(&report, "ran"), BTreeSet::from(["summary/t"]), "{report}");
    assert_eq!(reason(&report, "summary/t")["type"], "output_missing");
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(std::fs::read(p.path().join("ws/summary.txt")).unwrap(), summary);
    assert_eq!(run(p.cmd().args(["cache", "verify"])).code, 0);

    // Plans travel between caches (CI): imported plans are fresh, the rest is not.
    let export = run(p.cmd().args(["cache", "export", "plans.json"]));
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert!(export.stdout.contains("exported 2 records"), "{}", export.stdout);
    let import = run(p.cmd().env("LLMD_CACHE_DIR", p.path().join("cache2")).args(["cache", "import", "plans.json"]));
    assert_eq!(import.code, 0, "{}", import.stderr);
    let dry = run(p.cmd().env("LLMD_CACHE_DIR", p.path().join("cache2")).args(["build", "exp.yaml", "--dry-run", "--json"]));
    let dry: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(with_status(&dry, "fresh"), BTreeSet::from(["plan/fast/sim", "plan/slow/sim"]), "{dry}");
    std::fs::write(p.path().join("broken.json"), "{\"records\": [{\"key\": 1}]").unwrap();
    let bad = run(p.cmd().args(["cache", "import", "broken.json"]));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("broken.json"), "{}", bad.stderr);

    let gc = run(p.cmd().args(["cache", "gc", "--keep-journals", "1"]));
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.contains("journals"), "{}", gc.stdout);
    assert_eq!(p.build(&[]).1["nodes"].as_array().unwrap().iter().filter(|n| n["status"] != "fresh").count(), 0, "gc keeps what nodes use");

    // `plan --check`: committed plans against a fresh render.
    let plan = || {
        let mut c = llmd();
        c.current_dir(p.path()).args(["--workspace", "committed", "--spec", "examples/sim", "plan"]);
        c
    };
    assert_eq!(run(&mut plan()).code, 0);
    let check = run(plan().arg("--check"));
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let manifest = p.path().join("committed/plan/sim/14_standalone-deployment.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replacen("replicas: 1", "replicas: 3", 1)).unwrap();
    let check = run(plan().arg("--check"));
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    assert!(format!("{}{}", check.stdout, check.stderr).contains("14_standalone-deployment.yaml"), "{}{}", check.stdout, check.stderr);
}

/// Relative paths of every file under `dir`, experiment ids (`<harness>-<treatment>-<unix
/// ts>-<rand6>`) replaced by `<harness>-<treatment>-EID`.
fn layout(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                let parts: Vec<String> = rel
                    .split('/')
                    .map(|part| {
                        let fields: Vec<&str> = part.split('-').collect();
                        match fields.iter().position(|f| f.len() >= 9 && f.bytes().all(|b| b.is_ascii_digit())) {
                            Some(i) if i + 1 < fields.len() => {
                                let tail = fields[i + 1].split_once(['_', '.']).map_or(String::new(), |(_, t)| format!("_{t}"));
                                format!("{}-EID{tail}", fields[..i].join("-"))
                            }
                            _ => part.to_string(),
                        }
                    })
                    .collect();
                out.insert(parts.join("/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Every key path of a JSON document (array items as `[]`).
fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                key_paths(x, &format!("{prefix}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                key_paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn build_and_experiment_leave_the_same_results_and_reports() {
    // The quickstart, with one-second stages.
    let quickstart = std::fs::read_to_string(support::root().join("workload/experiments/quickstart.yaml")).unwrap();
    let quickstart = quickstart.replace("load.stages.0.duration: 4", "load.stages.0.duration: 1");
    let p = Project::new(&quickstart);
    let (code, _, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    let exp = run(llmd().current_dir(p.path()).args(["--workspace", "xws", "--spec", "examples/sim", "experiment", "-e", "exp.yaml"]));
    assert_eq!(exp.code, 0, "{}", exp.stderr);
    // Receipts and logs are gone or differ by design; experiment-summary.yaml is the
    // experiment's own; the rendered specification (`plan/<spec>.yaml`) is written by the
    // phase commands' plan writer only.
    let ignored = |f: &String| {
        f.contains("/receipts/")
            || f.contains("/setup/logs/")
            || f.starts_with(".llmd")
            || f == "experiment-summary.yaml"
            || f.ends_with("/plan/sim.yaml")
    };
    let built: BTreeSet<String> = layout(&p.path().join("ws")).into_iter().filter(|f| !ignored(f)).collect();
    let driven: BTreeSet<String> = layout(&p.path().join("xws")).into_iter().filter(|f| !ignored(f)).collect();
    assert_eq!(built, driven, "build and experiment left different files");
    for must in ["summary.csv", "report.html", "cross-treatment-comparison/treatment_comparison.csv"] {
        assert!(built.contains(must), "{must} missing: {built:?}");
    }
    let reports: Vec<&String> = built.iter().filter(|f| f.contains("benchmark_report_v0.2,_") && f.ends_with(".json")).collect();
    assert_eq!(reports.len(), 6, "one v0.2 report per run: {reports:?}");
    // The same reports: the same fields, and the same stack and load description (the
    // measured numbers differ between two real runs).
    let find = |root: &str, pattern: &str| -> serde_json::Value {
        let dir = p.path().join(root);
        let file = layout(&dir).into_iter().find(|f| f == pattern).unwrap();
        let real = walkdir_match(&dir, &file);
        serde_json::from_slice(&std::fs::read(real).unwrap()).unwrap()
    };
    for pattern in reports {
        let (a, b) = (find("ws", pattern), find("xws", pattern));
        let (mut ka, mut kb) = (BTreeSet::new(), BTreeSet::new());
        key_paths(&a, "", &mut ka);
        key_paths(&b, "", &mut kb);
        assert_eq!(ka, kb, "{pattern}: the reports have different fields");
        assert_eq!(a["scenario"]["stack"], b["scenario"]["stack"], "{pattern}");
        assert_eq!(a["scenario"]["load"]["native"], b["scenario"]["load"]["native"], "{pattern}");
    }
}

/// The real path under `root` whose normalized name is `normalized`.
fn walkdir_match(root: &Path, normalized: &str) -> PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if layout_one(root, &p) == normalized {
                return p;
            }
        }
    }
    panic!("{normalized} not under {}", root.display())
}

fn layout_one(root: &Path, file: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rel = file.strip_prefix(root).unwrap();
    let copy = dir.path().join(rel);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(&copy, b"").unwrap();
    layout(dir.path()).into_iter().next().unwrap()
}

#[test]
fn a_profile_edited_after_deciding_does_not_reach_the_run() {
    // The run's key was computed from the profile text read while deciding; an edit made
    // between deciding and executing must not be measured under that key.
    let p = Project::new(EXPERIMENT);
    let profile = p.path().join("workload/profiles/llmd/sanity_random.yaml.in");
    let edit = format!("sed -i 's/^seed: 42$/seed: 7/' {}", profile.display());
    let out = run(p.cmd().env("LLMD_TEST_AFTER_DECIDE", &edit).args(["build", "exp.yaml", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(std::fs::read_to_string(&profile).unwrap().contains("seed: 7"), "the hook edited the profile");
    let rendered =
        std::fs::read_to_string(p.path().join("ws/setup-treatment-fast/workload/profiles/llmd/sim/sanity_random-r1.yaml")).unwrap();
    assert!(rendered.contains("seed: 42"), "the run used the text its key covers:\n{rendered}");
    // The edit is seen by the next build: the runs re-execute because the profile changed.
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(reason(&report, "run/fast/sim/r1#1")["type"], "profile_changed", "{report}");
}

#[test]
fn zero_jobs_is_a_usage_error() {
    let r = run(llmd().args(["build", "-j", "0", "workload/experiments/quickstart.yaml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("must be at least 1"), "{}", r.stderr);
}

/// The seeds in the `run_metadata.yaml` of treatment `r1`'s latest runs of setup
/// `fast`, one per repetition (results directories end in `_<repetition>`).
fn r1_seeds(p: &Project) -> BTreeSet<i64> {
    let results = p.path().join("ws/setup-treatment-fast/results");
    let mut latest: std::collections::BTreeMap<String, (f64, i64)> = Default::default();
    for f in support::files_under(&results).into_iter().filter(|f| f.ends_with("run_metadata.yaml")) {
        let meta = std::fs::read_to_string(results.join(&f)).unwrap();
        if !meta.contains("treatment: r1") {
            continue;
        }
        let field = |k: &str| meta.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("{k} in {meta}")).to_string();
        let dir = f.parent().unwrap().file_name().unwrap().to_string_lossy().to_string();
        let rep = dir.rsplit('_').next().unwrap().to_string();
        let (start, seed): (f64, i64) = (field("start: ").parse().unwrap(), field("seed: ").parse().unwrap());
        if latest.get(&rep).is_none_or(|(s, _)| *s < start) {
            latest.insert(rep, (start, seed));
        }
    }
    assert_eq!(latest.len(), 2, "two repetitions: {latest:?}");
    latest.values().map(|(_, seed)| *seed).collect()
}

#[test]
fn repetitions_draw_their_own_seeds_unless_repeat_seed_is_same() {
    let p = Project::new(&EXPERIMENT.replace("experiment:\n", "repeat: 2\nexperiment:\n"));
    let (code, _, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    let seeds = r1_seeds(&p);
    assert_eq!(seeds.len(), 2, "each repetition its own request stream: {seeds:?}");
    let profiles = p.path().join("ws/setup-treatment-fast/workload/profiles/llmd/sim");
    let rendered = std::fs::read_to_string(profiles.join("rep-2/sanity_random-r1.yaml")).expect("repetition 2's own profile");
    assert!(seeds.iter().any(|s| rendered.contains(&format!("seed: {s}")) && *s != 42), "{rendered}");
    assert!(seeds.contains(&42), "repetition 1 keeps the profile's seed: {seeds:?}");
    // One stream for all: only the later repetitions run again.
    p.edit("exp.yaml", "repeat: 2\n", "repeat: 2\nrepeat_seed: same\n");
    let (_, dry, _) = p.build(&["--dry-run"]);
    let (code, report, err) = p.build(&[]);
    assert_eq!(code, 0, "{err}");
    let ran: BTreeSet<&str> = with_status(&report, "ran").into_iter().filter(|id| id.starts_with("run/")).collect();
    assert_eq!(ran, ["run/fast/sim/r1#2", "run/fast/sim/r2#2", "run/slow/sim/r1#2", "run/slow/sim/r2#2"].into(), "{err}");
    assert_eq!(with_status(&dry, "would_run"), with_status(&report, "ran"), "the dry run predicted the build");
    assert_eq!(r1_seeds(&p), [42].into(), "one seed for every repetition");
    let bad = Project::new(&EXPERIMENT.replace("experiment:\n", "repeat_seed: sometimes\nexperiment:\n"));
    let r = run(bad.cmd().args(["build", "exp.yaml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("exp.yaml:1:") && r.stderr.contains("per-repetition"), "{}", r.stderr);
}
