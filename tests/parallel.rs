//! `llmd build -j`: setups executed concurrently on the local backend (real `llmd sim`
//! processes, short runs), asserted from the journal's timestamps: runs on one stack
//! never overlap, `exclusive` runs never overlap at all, the capacity pool is never
//! exceeded, and Ctrl-C stops a concurrent build cleanly and resumably.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{llmd, run};

/// Four setups (simulators with different first-token latencies) × three rates;
/// `extra_setup[i]` is one more `key: value` line for setup i, `setup_constants` lines
/// for all of them.
fn experiment_with(isolation: &str, extra_setup: &[&str], setup_constants: &str) -> String {
    let mut setups = String::new();
    for (i, ttft) in ["5ms", "10ms", "15ms", "20ms"].iter().enumerate() {
        setups.push_str(&format!("    - name: s{i}\n      local.sim.timeToFirstToken: {ttft}\n"));
        if let Some(x) = extra_setup.get(i) {
            setups.push_str(&format!("      {x}\n"));
        }
    }
    format!(
        "experiment:\n  name: par\n  spec: examples/sim\n  harness: llmd\n  profile: sanity_random.yaml\n{isolation}\
setup:\n  constants:\n    local.sim.interTokenLatency: 1ms\n{setup_constants}  treatments:\n{setups}\
constants:\n  load.stages.0.duration: 1\n  load.arrival: constant\n  dataset.output_len: 4\n\
treatments:\n  - name: r1\n    load.stages.0.rate: 4\n  - name: r2\n    load.stages.0.rate: 6\n  - name: r3\n    load.stages.0.rate: 8\n"
    )
}

fn experiment(isolation: &str, extra_setup: &[&str]) -> String {
    experiment_with(isolation, extra_setup, "")
}

struct Build {
    dir: tempfile::TempDir,
}

impl Build {
    fn new(experiment: &str) -> Build {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("exp.yaml"), experiment).unwrap();
        Build { dir }
    }

    fn cmd(&self, extra: &[&str]) -> std::process::Command {
        let mut c = llmd();
        c.arg("build").arg(self.dir.path().join("exp.yaml")).arg("--json").args(extra);
        c.arg("--workspace").arg(self.dir.path().join("ws")).env("LLMD_CACHE_DIR", self.dir.path().join("cache"));
        c
    }

    fn build(&self, extra: &[&str]) -> (i32, Value, String) {
        let r = run(&mut self.cmd(extra));
        let json = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr));
        (r.code, json, r.stderr)
    }

    /// The events of the newest journal.
    fn journal(&self) -> Vec<Value> {
        let mut journals: Vec<PathBuf> =
            std::fs::read_dir(self.dir.path().join("cache/journal")).unwrap().flatten().map(|e| e.path()).collect();
        journals.sort();
        let text = std::fs::read_to_string(journals.last().unwrap()).unwrap();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for Build {
    fn drop(&mut self) {
        for ws in std::fs::read_dir(self.dir.path().join("ws")).into_iter().flatten().flatten() {
            if ws.file_name().to_string_lossy().starts_with("setup-treatment-") {
                let _ = run(llmd().arg("teardown").arg("--workspace").arg(ws.path()));
            }
        }
    }
}

/// Node id → (begin, end) from a journal's stamps, for nodes whose id starts with `prefix`.
fn intervals(journal: &[Value], prefix: &str) -> BTreeMap<String, (f64, f64)> {
    let mut begin = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in journal {
        let Some(id) = e["id"].as_str().filter(|id| id.starts_with(prefix)) else { continue };
        match e["event"].as_str() {
            Some("begin") => {
                begin.insert(id.to_string(), e["t"].as_f64().unwrap());
            }
            Some("done") => {
                out.insert(id.to_string(), (begin[id], e["t"].as_f64().unwrap()));
            }
            _ => {}
        }
    }
    out
}

fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// `run/<setup>/<stack>/…` → (setup, stack).
fn stack_of(id: &str) -> (String, String) {
    let parts: Vec<&str> = id.split('/').collect();
    (parts[1].to_string(), parts[2].to_string())
}

/// Pairs of distinct nodes whose intervals overlap.
fn overlapping(iv: &BTreeMap<String, (f64, f64)>) -> Vec<(String, String)> {
    let v: Vec<(&String, &(f64, f64))> = iv.iter().collect();
    let mut out = Vec::new();
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            if overlap(*v[i].1, *v[j].1) {
                out.push((v[i].0.clone(), v[j].0.clone()));
            }
        }
    }
    out
}

/// (id, key) of the decided plan, standup, smoketest and run nodes: what `-j` must not change.
fn decided_keys(journal: &[Value]) -> BTreeSet<(String, String)> {
    journal
        .iter()
        .filter(|e| e["event"] == "decide")
        .filter(|e| ["plan", "standup", "smoketest", "run"].contains(&e["kind"].as_str().unwrap_or("")))
        .map(|e| (e["id"].as_str().unwrap().to_string(), e["key"].as_str().unwrap().to_string()))
        .collect()
}

fn summary_rows(ws: &Path) -> BTreeSet<(String, String)> {
    let s: Value = serde_json::from_str(&std::fs::read_to_string(ws.join("summary.json")).unwrap()).unwrap();
    let rows = s["runs"].as_array().or_else(|| s.as_array()).cloned().unwrap_or_default();
    rows.iter().map(|r| (r["setup"].as_str().unwrap_or("").to_string(), r["treatment"].as_str().unwrap_or("").to_string())).collect()
}

#[test]
fn per_stack_runs_overlap_across_stacks_never_on_one_and_match_a_serial_build() {
    let par = Build::new(&experiment("isolation: per-stack\n", &[]));
    let (code, report, err) = par.build(&["-j", "4", "--capacity", "cpu=8"]);
    assert_eq!(code, 0, "{err}\n{report}");
    let journal = par.journal();
    let runs = intervals(&journal, "run/");
    assert_eq!(runs.len(), 12, "4 setups x 3 runs: {runs:?}");
    let pairs = overlapping(&runs);
    assert!(pairs.iter().any(|(a, b)| stack_of(a) != stack_of(b)), "runs on different stacks overlapped: {runs:?}");
    for (a, b) in &pairs {
        assert_ne!(stack_of(a), stack_of(b), "two runs on one stack overlapped: {a} and {b}");
    }
    let reports: Vec<PathBuf> = support::files_under(&par.dir.path().join("ws"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".json") && p.to_string_lossy().contains("benchmark_report"))
        .collect();
    assert!(!reports.is_empty());
    let one: Value = serde_json::from_str(&std::fs::read_to_string(par.dir.path().join("ws").join(&reports[0])).unwrap()).unwrap();
    assert!(one.to_string().contains("isolation=per-stack"), "the report says what ran beside it: {}", one["run"]);

    // The same experiment one setup at a time: the same nodes and keys, the same summary.
    let serial = Build::new(&experiment("isolation: per-stack\n", &[]));
    let (code, _, err) = serial.build(&["-j", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(decided_keys(&serial.journal()), decided_keys(&journal), "-j changes no node and no key");
    assert_eq!(summary_rows(&serial.dir.path().join("ws")), summary_rows(&par.dir.path().join("ws")));
}

#[test]
fn exclusive_runs_never_overlap_even_with_four_setups_at_once() {
    let b = Build::new(&experiment("isolation: exclusive\n", &[]));
    let (code, report, err) = b.build(&["-j", "4", "--capacity", "cpu=8"]);
    assert_eq!(code, 0, "{err}\n{report}");
    let journal = b.journal();
    let mut measured = intervals(&journal, "run/");
    measured.extend(intervals(&journal, "analysis/"));
    assert_eq!(measured.len(), 24);
    assert_eq!(overlapping(&measured), Vec::<(String, String)>::new(), "no run (or analysis) beside a run");
    // Setups still overlap: their standups do not wait for others' runs.
    let setups = setup_intervals(&journal);
    assert!(!overlapping(&setups).is_empty(), "setups ran concurrently: {setups:?}");
}

/// Setup name → (admitted, released) from the journal.
fn setup_intervals(journal: &[Value]) -> BTreeMap<String, (f64, f64)> {
    let mut start = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in journal {
        let Some(s) = e["setup"].as_str() else { continue };
        match e["event"].as_str() {
            Some("setup-start") => {
                start.insert(s.to_string(), (e["t"].as_f64().unwrap(), e["need"].clone()));
            }
            Some("setup-end") => {
                out.insert(s.to_string(), (start[s].0, e["t"].as_f64().unwrap()));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn setups_are_packed_into_the_capacity_pool_and_one_too_big_fails_before_anything_runs() {
    let counts = ["accelerator.count: 4", "accelerator.count: 4", "accelerator.count: 8", "accelerator.count: 2"];
    let b = Build::new(&experiment("isolation: per-stack\n", &counts));
    let (code, report, err) = b.build(&["-j", "4", "--capacity", "gpu=8,cpu=8"]);
    assert_eq!(code, 0, "{err}\n{report}");
    let journal = b.journal();
    let need: BTreeMap<String, u64> = journal
        .iter()
        .filter(|e| e["event"] == "setup-start")
        .map(|e| (e["setup"].as_str().unwrap().to_string(), e["need"]["gpu"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(need.values().copied().collect::<Vec<_>>(), [4, 4, 8, 2], "{need:?}");
    let setups = setup_intervals(&journal);
    // At every instant a setup starts, what is deployed fits the pool.
    for (name, (t, _)) in &setups {
        let held: u64 = setups.iter().filter(|(_, iv)| iv.0 <= *t && *t < iv.1).map(|(n, _)| need[n]).sum();
        assert!(held <= 8, "at {name}'s start {held} GPUs were held: {setups:?}");
    }
    assert!(overlapping(&setups).iter().any(|(a, b)| need[a] + need[b] <= 8), "small setups shared the pool: {setups:?}");

    let big = ["accelerator.count: 4", "accelerator.count: 9"];
    let b = Build::new(&experiment("", &big));
    let r = run(&mut b.cmd(&["-j", "4", "--capacity", "gpu=8"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("setup 's1' needs cpu=1, gpu=9, the pool has gpu=8 (--capacity)"), "{}", r.stderr);
    assert!(!b.dir.path().join("ws").join("setup-treatment-s0").join("results").exists(), "nothing ran");
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
            && !String::from_utf8_lossy(&cmd).contains("build")
        {
            out.push(pid);
        }
    }
    out
}

#[test]
fn ctrl_c_stops_a_concurrent_build_cleanly_and_the_next_build_resumes() {
    let model = format!("interrupt-test-{}", std::process::id());
    let exp = experiment_with("isolation: per-stack\n", &[], &format!("    model.name: {model}\n"));
    let b = Build::new(&exp);
    let mut child =
        b.cmd(&["-j", "4", "--capacity", "cpu=8"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Interrupt once some run has finished and others are in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no run finished");
        if let Ok(dir) = std::fs::read_dir(b.dir.path().join("cache/journal")) {
            let done = dir.flatten().any(|j| {
                std::fs::read_to_string(j.path()).unwrap_or_default().lines().any(|l| l.contains("\"done\"") && l.contains("\"id\":\"run/"))
            });
            if done {
                // The next runs are in flight now (each takes a second).
                std::thread::sleep(Duration::from_millis(300));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the child we spawned.
    unsafe { libc_kill(child.id() as i32, 2) };
    let signalled = Instant::now();
    let status = child.wait().unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(20), "exited {:?} after the interrupt", signalled.elapsed());
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(processes_with(&model), Vec::<u32>::new(), "no simulator of this build is left");
    let verify = run(llmd().args(["cache", "verify"]).env("LLMD_CACHE_DIR", b.dir.path().join("cache")));
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let first = b.journal();
    let finished: BTreeSet<String> = first
        .iter()
        .filter(|e| e["event"] == "done" && e["status"] == "ran")
        .filter_map(|e| e["id"].as_str().filter(|id| id.starts_with("run/")).map(String::from))
        .collect();
    assert!(!finished.is_empty() && finished.len() < 12, "{finished:?}");

    let (code, report, err) = b.build(&["-j", "4", "--capacity", "cpu=8"]);
    assert_eq!(code, 0, "{err}");
    let ran: BTreeSet<String> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "ran" && n["kind"] == "run")
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ran.is_disjoint(&finished), "runs finished before the interrupt are not run again: {ran:?}");
    assert_eq!(ran.len() + finished.len(), 12, "every other run runs now");
    // Every node begun was ended in the journal: finished, or cut short and said so.
    let begun: BTreeSet<&str> = first.iter().filter(|e| e["event"] == "begin").filter_map(|e| e["id"].as_str()).collect();
    let ended: BTreeSet<&str> = first.iter().filter(|e| e["event"] == "done").filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(begun, ended, "no node left dangling");
    for e in first.iter().filter(|e| e["event"] == "done" && e["status"] != "ran") {
        assert_eq!(e["status"], "interrupted", "only interruptions end nodes here: {e}");
    }
}

#[test]
fn sigterm_stops_a_serial_build_like_ctrl_c() {
    let model = format!("sigterm-test-{}", std::process::id());
    let b = Build::new(&experiment_with("", &[], &format!("    model.name: {model}\n")));
    let child = b.cmd(&["-j", "1"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Terminate while the first run is in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no run began");
        let begun = std::fs::read_dir(b.dir.path().join("cache/journal")).into_iter().flatten().flatten().any(|j| {
            std::fs::read_to_string(j.path()).unwrap_or_default().lines().any(|l| l.contains("\"begin\"") && l.contains("\"id\":\"run/"))
        });
        if begun {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the child we spawned.
    unsafe { libc_kill(child.id() as i32, 15) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted during run/s0/sim/r1#1"), "names what was cut short: {err}");
    assert_eq!(processes_with(&model), Vec::<u32>::new(), "no simulator of this build is left");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
