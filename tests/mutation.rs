//! A seeded mutation test of what users read after each build.
//!
//! Two setup treatments x two run treatments on the simulator (very short runs: the
//! engine is under test, not the load). Each step changes exactly one input — a run
//! treatment's rate, a setup treatment's time to first token, a scenario value, a
//! template, the workload profile — to a new value, an earlier one (a revert) or the
//! value of the other treatment (a collision: two run treatments with identical inputs).
//! After every step:
//!
//! - `why -e` (before the build) and `why` (after it) name exactly the edited input as
//!   the root cause of every node it affects — path, old → new — and nothing else;
//! - `build --dry-run` predicts exactly what `build` executes (or shares);
//! - `why` never says a node ran that the build did not run;
//! - the workspace equals a fresh materialization of the cache (`build` into an empty
//!   workspace executes nothing and writes the same tree).
//!
//! `LLMD_MUTATION_SEED` and `LLMD_MUTATION_STEPS` pick another sequence.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{copy_dir, llmd, run};

const TEMPLATE: &str = "config/templates/jinja/14_standalone-deployment.yaml.j2";
const TEMPLATE_ANCHOR: &str = "    app: vllm-standalone-{{ model_id_label }}\n";
const TEMPLATE_EXTRA: &str = "    llmd.example/mutated: \"yes\"\n";
const PROFILE: &str = "workload/profiles/llmd/sanity_random.yaml.in";
const SCENARIO: &str = "config/scenarios/examples/sim.yaml";
const SETUPS: [&str; 2] = ["s1", "s2"];
const TREATMENTS: [&str; 2] = ["a", "b"];

/// Root causes by node id: (reason type, dotted path or file, old, new).
type Roots = BTreeMap<String, (String, String, String, String)>;

/// Every input the test edits.
#[derive(Clone, Debug, PartialEq)]
struct State {
    rate: [i64; 2],
    ttft_ms: [i64; 2],
    itl_ms: i64,
    output_len: i64,
    label: bool,
}

/// One input, as `why` should name it on each node it affects.
#[derive(Clone, Copy, Debug)]
enum Input {
    Rate(usize),
    Ttft(usize),
    Itl,
    OutputLen,
    Label,
}

const RATES: [i64; 3] = [40, 80, 160];
const TTFTS: [i64; 3] = [1, 3, 5];
const ITLS: [i64; 2] = [1, 2];
const OUTPUT_LENS: [i64; 3] = [2, 3, 4];

impl State {
    fn get(&self, i: Input) -> i64 {
        match i {
            Input::Rate(t) => self.rate[t],
            Input::Ttft(s) => self.ttft_ms[s],
            Input::Itl => self.itl_ms,
            Input::OutputLen => self.output_len,
            Input::Label => self.label as i64,
        }
    }

    fn set(&mut self, i: Input, v: i64) {
        match i {
            Input::Rate(t) => self.rate[t] = v,
            Input::Ttft(s) => self.ttft_ms[s] = v,
            Input::Itl => self.itl_ms = v,
            Input::OutputLen => self.output_len = v,
            Input::Label => self.label = v != 0,
        }
    }

    fn choices(i: Input) -> &'static [i64] {
        match i {
            Input::Rate(_) => &RATES,
            Input::Ttft(_) => &TTFTS,
            Input::Itl => &ITLS,
            Input::OutputLen => &OUTPUT_LENS,
            Input::Label => &[0, 1],
        }
    }

    fn experiment(&self) -> String {
        format!(
            "experiment: {{name: m, spec: examples/sim, harness: llmd, profile: sanity_random.yaml}}\n\
             setup:\n  treatments:\n    - name: s1\n      local.sim.timeToFirstToken: {}ms\n    - name: s2\n      local.sim.timeToFirstToken: {}ms\n\
             constants:\n  load.stages.0.requests: 2\n  load.stages.0.duration: 10\n  load.arrival: constant\n\
             treatments:\n  - name: a\n    load.stages.0.rate: {}\n  - name: b\n    load.stages.0.rate: {}\n",
            self.ttft_ms[0], self.ttft_ms[1], self.rate[0], self.rate[1]
        )
    }

    /// Writes every input file from the state.
    fn write(&self, root: &Path, pristine: &Pristine) {
        std::fs::write(root.join("exp.yaml"), self.experiment()).unwrap();
        let template = if self.label {
            pristine.template.replacen(TEMPLATE_ANCHOR, &format!("{TEMPLATE_ANCHOR}{TEMPLATE_EXTRA}"), 1)
        } else {
            pristine.template.clone()
        };
        write_if_changed(&root.join(TEMPLATE), &template);
        write_if_changed(&root.join(PROFILE), &pristine.profile.replacen("output_len: 32", &format!("output_len: {}", self.output_len), 1));
        write_if_changed(
            &root.join(SCENARIO),
            &pristine.scenario.replacen("interTokenLatency: 2ms", &format!("interTokenLatency: {}ms", self.itl_ms), 1),
        );
    }

    /// The root causes `why` must give for changing `input` from `old` to this state:
    /// node id → (reason type, dotted path or file, old, new).
    fn expected(&self, input: Input, old: i64) -> Roots {
        let new = self.get(input);
        let mut out = BTreeMap::new();
        let mut add = |id: String, kind: &str, path: &str, o: String, n: String| {
            out.insert(id, (kind.to_string(), path.to_string(), o, n));
        };
        let ms = |v: i64| format!("\"{v}ms\"");
        match input {
            Input::Rate(t) => {
                for s in SETUPS {
                    add(
                        format!("run/{s}/sim/{}#1", TREATMENTS[t]),
                        "treatment_changed",
                        "load.stages.0.rate",
                        old.to_string(),
                        new.to_string(),
                    );
                }
            }
            Input::Ttft(s) => {
                for kind in ["plan", "standup"] {
                    add(format!("{kind}/{}/sim", SETUPS[s]), "config_changed", "local.sim.timeToFirstToken", ms(old), ms(new));
                }
            }
            Input::Itl => {
                for s in SETUPS {
                    for kind in ["plan", "standup"] {
                        add(format!("{kind}/{s}/sim"), "config_changed", "local.sim.interTokenLatency", ms(old), ms(new));
                    }
                }
            }
            Input::OutputLen => {
                for s in SETUPS {
                    for t in TREATMENTS {
                        add(format!("run/{s}/sim/{t}#1"), "profile_changed", "dataset.output_len", old.to_string(), new.to_string());
                    }
                }
            }
            Input::Label => {
                for s in SETUPS {
                    add(format!("plan/{s}/sim"), "template_changed", "14_standalone-deployment.yaml.j2", "edited".into(), "edited".into());
                }
            }
        }
        out
    }
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

/// The input files as shipped.
struct Pristine {
    template: String,
    profile: String,
    scenario: String,
}

/// xorshift64*: the sequence of edits, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn cmd(&self, workspace: &str) -> std::process::Command {
        let mut c = llmd();
        c.current_dir(self.dir.path()).args(["--workspace", workspace]).env("LLMD_CACHE_DIR", self.dir.path().join("cache"));
        c
    }

    fn json(&self, workspace: &str, args: &[&str]) -> Value {
        let r = run(self.cmd(workspace).args(args));
        assert_eq!(r.code, 0, "llmd {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("llmd {args:?}: not JSON ({e}): {}\n{}", r.stdout, r.stderr))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = run(self.cmd("ws").arg("teardown"));
    }
}

/// The root causes in a `why --json`: node id → (type, first path or file, old, new),
/// every change listed; cascades (upstream changed/runs) are not roots.
fn roots(why: &Value) -> (Roots, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for n in why["nodes"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap().to_string();
        let r = &n["reason"];
        let kind = r["type"].as_str().unwrap().to_string();
        if matches!(kind.as_str(), "upstream_changed" | "upstream_runs") {
            continue;
        }
        let entries: Vec<(String, String, String)> = match kind.as_str() {
            "config_changed" | "treatment_changed" | "profile_changed" => r["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let s = |v: &Value| v.as_str().unwrap_or("(unset)").to_string();
                    (s(&c["path"]), s(&c["old"]), s(&c["new"]))
                })
                .collect(),
            "template_changed" => r["templates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["file"].as_str().unwrap().to_string(),
                        f["change"].as_str().unwrap().to_string(),
                        f["change"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            _ => vec![(String::new(), String::new(), String::new())],
        };
        if entries.len() != 1 {
            problems.push(format!("{id}: {} changes named, one expected: {r}", entries.len()));
        }
        if let Some((path, old, new)) = entries.into_iter().next() {
            out.insert(id, (kind, path, old, new));
        }
    }
    (out, problems)
}

/// The ids of the nodes of a `--json` report with `status`.
fn ids_with_status(report: &Value, status: &str) -> BTreeSet<String> {
    report["nodes"].as_array().unwrap().iter().filter(|n| n["status"] == status).map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

/// Takes the standups `why` says must replace a deployment that drifted from their
/// config out of `roots`, checking that each did drift: its setup's deployment was
/// stood up from other values than the current ones, by an edit of an earlier step.
fn drifted(roots: &mut Roots, deployed: &[(i64, i64); 2], state: &State, context: &str) {
    for (s, setup) in SETUPS.iter().enumerate() {
        let id = format!("standup/{setup}/sim");
        if roots.get(&id).is_some_and(|r| r.0 == "deployment_drifted") {
            assert_ne!(deployed[s], (state.ttft_ms[s], state.itl_ms), "{context}: {id} drifted, though its deployment is current");
            roots.remove(&id);
        }
    }
}

/// Relative path → bytes of the workspace's outputs (live deployment state, the lock
/// and the materialization index are not outputs).
fn outputs(ws: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    support::files_under(ws)
        .into_iter()
        .filter(|rel| {
            let s = rel.to_string_lossy();
            let name = rel.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            !name.starts_with(".llmd-") && !s.contains("/receipts/") && !s.contains("/setup/logs/") && !s.contains("failed-runs/")
        })
        .map(|rel| {
            let bytes = std::fs::read(ws.join(&rel)).unwrap();
            (rel, bytes)
        })
        .collect()
}

#[test]
fn why_build_and_workspace_agree_over_random_edits() {
    let seed: u64 = std::env::var("LLMD_MUTATION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026);
    let steps: usize = std::env::var("LLMD_MUTATION_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&support::root().join("config"), &dir.path().join("config"));
    copy_dir(&support::root().join("workload"), &dir.path().join("workload"));
    let p = Project { dir };
    let root = p.dir.path();
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    let pristine = Pristine { template: read(TEMPLATE), profile: read(PROFILE), scenario: read(SCENARIO) };
    assert!(pristine.template.contains(TEMPLATE_ANCHOR) && pristine.profile.contains("output_len: 32"));
    assert!(pristine.scenario.contains("interTokenLatency: 2ms"));

    let mut state = State { rate: [40, 80], ttft_ms: [1, 3], itl_ms: 2, output_len: 2, label: false };
    state.write(root, &pristine);
    let first = p.json("ws", &["build", "exp.yaml", "--json", "--keep-stacks"]);
    assert!(first["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "ran"), "{first}");

    // What each setup's running deployment was stood up from (ttft, itl): a setup whose
    // runs were all fresh keeps an older deployment, which a later build replaces.
    let mut deployed = [(state.ttft_ms[0], state.itl_ms), (state.ttft_ms[1], state.itl_ms)];
    let mut rng = Rng(seed | 1);
    let mut history: Vec<State> = vec![state.clone()];
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for step in 1..=steps {
        // Run treatments and the profile are edited most (cheap); setups and the
        // scenario restart stacks.
        let input = match rng.below(20) {
            0..=6 => Input::Rate(rng.below(2)),
            7..=9 => Input::Ttft(rng.below(2)),
            10 => Input::Itl,
            11..=14 => Input::OutputLen,
            _ => Input::Label,
        };
        let old = state.get(input);
        // A revert to an earlier value, a collision with the other treatment, or any other value.
        let earlier: Vec<i64> = history.iter().map(|h| h.get(input)).filter(|v| *v != old).collect();
        let other = match input {
            Input::Rate(t) => Some(state.rate[1 - t]),
            Input::Ttft(s) => Some(state.ttft_ms[1 - s]),
            _ => None,
        }
        .filter(|v| *v != old);
        let fresh: Vec<i64> = State::choices(input).iter().copied().filter(|v| *v != old).collect();
        let (how, new) = match rng.below(3) {
            0 if !earlier.is_empty() => ("revert", earlier[rng.below(earlier.len())]),
            1 if other.is_some() => ("collide", other.unwrap()),
            _ => ("edit", fresh[rng.below(fresh.len())]),
        };
        *kinds.entry(how).or_default() += 1;
        state.set(input, new);
        state.write(root, &pristine);
        history.push(state.clone());
        let context = format!("step {step} (seed {seed:#x}): {how} {input:?} {old} → {new}");
        let expected = state.expected(input, old);

        // Before: what would run, and why.
        let before = p.json("ws", &["why", "-e", "exp.yaml", "--json"]);
        let (mut roots_before, problems) = roots(&before);
        drifted(&mut roots_before, &deployed, &state, &context);
        assert!(problems.is_empty(), "{context}: why -e: {problems:?}");
        assert_eq!(roots_before, expected, "{context}: why -e names other causes than the edit\n{before:#}");
        let would_run = ids_with_status(&before, "would_run");

        // The build executes (or shares) exactly that.
        let built = p.json("ws", &["build", "exp.yaml", "--json", "--keep-stacks"]);
        let mut executed = BTreeSet::new();
        for n in built["nodes"].as_array().unwrap() {
            let id = n["id"].as_str().unwrap().to_string();
            match n["status"].as_str().unwrap() {
                "ran" => {
                    executed.insert(id);
                }
                "fresh" if n["detail"].as_str().is_some_and(|d| d.contains("identical inputs")) => {
                    executed.insert(id);
                }
                "fresh" | "skipped" => {}
                other => panic!("{context}: {id} {other}: {n}"),
            }
        }
        assert_eq!(executed, would_run, "{context}: the dry run predicted other nodes than the build executed");

        // After: the same root causes, and no node said to have run that did not.
        let after = p.json("ws", &["why", "--json"]);
        let (mut roots_after, problems) = roots(&after);
        drifted(&mut roots_after, &deployed, &state, &context);
        for (s, setup) in SETUPS.iter().enumerate() {
            if built["nodes"].as_array().unwrap().iter().any(|n| n["id"] == format!("standup/{setup}/sim") && n["status"] == "ran") {
                deployed[s] = (state.ttft_ms[s], state.itl_ms);
            }
        }
        assert!(problems.is_empty(), "{context}: why: {problems:?}");
        assert_eq!(roots_after, expected, "{context}: why names other causes than the edit\n{after:#}");
        let ran = ids_with_status(&built, "ran");
        for n in after["nodes"].as_array().unwrap() {
            if n["status"] == "ran" {
                assert!(ran.contains(n["id"].as_str().unwrap()), "{context}: why says {} ran; it did not", n["id"]);
            }
        }

        // The workspace is exactly what the cache materializes into an empty one.
        let _ = std::fs::remove_dir_all(root.join("ws2"));
        let again = p.json("ws2", &["build", "exp.yaml", "--json", "--keep-stacks"]);
        assert!(again["nodes"].as_array().unwrap().iter().all(|n| n["status"] != "ran"), "{context}: materializing ran something: {again}");
        let (have, fresh_tree) = (outputs(&root.join("ws")), outputs(&root.join("ws2")));
        let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&have), names(&fresh_tree), "{context}: the workspace holds other files than the build's outputs");
        for (rel, bytes) in &have {
            assert!(fresh_tree[rel] == *bytes, "{context}: {} differs from a fresh materialization", rel.display());
        }
    }
    eprintln!("{steps} steps, seed {seed:#x}: {kinds:?}");
}
