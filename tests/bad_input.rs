//! A corpus of bad input — experiment files, profiles, `--set`, `llmd load` and
//! `llmd sim` flags, simulator config files. Every case must exit 2 (an input error),
//! name where the mistake is (the file and line, or the flag), never panic, and stand
//! nothing up.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{copy_dir, llmd};

const GOOD: &str = "\
experiment:
  name: t
  spec: examples/sim
  harness: llmd
  profile: sanity_random.yaml
constants:
  load.stages.0.duration: 1
treatments:
  - name: r1
    load.stages.0.rate: 5
";

/// One bad experiment: the file's text (GOOD with `from` replaced by `to`, or whole).
struct Exp {
    name: &'static str,
    text: String,
    /// Must appear in stderr (a `file:line:` or a key).
    says: &'static str,
}

fn edit(name: &'static str, from: &str, to: &str, says: &'static str) -> Exp {
    assert!(GOOD.contains(from), "{name}: {from}");
    Exp { name, text: GOOD.replacen(from, to, 1), says }
}

fn rate(name: &'static str, value: &str, says: &'static str) -> Exp {
    edit(name, "load.stages.0.rate: 5", &format!("load.stages.0.rate: {value}"), says)
}

fn constant(name: &'static str, line: &str, says: &'static str) -> Exp {
    edit(name, "  load.stages.0.duration: 1\n", &format!("  load.stages.0.duration: 1\n  {line}\n"), says)
}

fn experiments() -> Vec<Exp> {
    vec![
        edit("unknown top-level key", "treatments:", "treatmnets:", "exp.yaml:8:1"),
        edit("unknown key under experiment (harnes)", "  harness: llmd", "  harnes: llmd", "exp.yaml:4:3"),
        edit("unknown key under experiment (profle)", "  profile: sanity", "  profle: sanity", "exp.yaml:5:3"),
        edit("treatments not a list", "treatments:\n  - name: r1\n    load.stages.0.rate: 5\n", "treatments: 5\n", "exp.yaml:8"),
        edit("a treatment not a mapping", "  - name: r1\n    load.stages.0.rate: 5\n", "  - 5\n", "exp.yaml:9"),
        edit("duplicate treatment names", "    load.stages.0.rate: 5\n", "    load.stages.0.rate: 5\n  - name: r1\n", "r1"),
        rate("rate is a word", "fast", "exp.yaml:10:"),
        rate("rate negative", "-5", "exp.yaml:10:"),
        rate("rate zero", "0", "exp.yaml:10:"),
        rate("rate a mapping", "{a: 1}", "exp.yaml:10:"),
        rate("rate a list", "[1, 2]", "exp.yaml:10:"),
        rate("rate infinite", "1e400", "exp.yaml:10:"),
        rate("rate empty", "''", "exp.yaml:10:"),
        constant("duration zero", "load.stages.0.requests: 3\n  load.stages.0.duration: 0", "exp.yaml:9:"),
        edit("duration negative", "load.stages.0.duration: 1", "load.stages.0.duration: -3", "exp.yaml:7:"),
        edit("duration infinite", "load.stages.0.duration: 1", "load.stages.0.duration: 1e400", "exp.yaml:7:"),
        edit("duration a word", "load.stages.0.duration: 1", "load.stages.0.duration: long", "exp.yaml:7:"),
        constant("arrival unknown", "load.arrival: lumpy", "exp.yaml:8:"),
        constant("rate and concurrency both", "load.stages.0.concurrency: 4", "exp.yaml:8:"),
        constant("concurrency zero", "load.stages.0.concurrency: 0", "exp.yaml:8:"),
        constant("burstiness zero", "load.burstiness: 0", "exp.yaml:8:"),
        constant("max_concurrency zero", "load.max_concurrency: 0", "exp.yaml:8:"),
        constant("range_ratio five", "dataset.range_ratio: 5", "exp.yaml:8:"),
        constant("request_timeout negative", "request_timeout: -1", "exp.yaml:8:"),
        constant("grace negative", "load.grace: -1", "exp.yaml:8:"),
        constant("api unknown", "api: telepathy", "exp.yaml:8:"),
        constant("dataset type unknown", "dataset.type: imaginary", "exp.yaml:8:"),
        edit("repeat zero", "constants:", "repeat: 0\nconstants:", "exp.yaml:6:"),
        edit("repeat a word", "constants:", "repeat: two\nconstants:", "exp.yaml:6:"),
        edit("attempts zero", "constants:", "treatment_max_attempts: 0\nconstants:", "exp.yaml:6:"),
        edit("failure fraction above 1", "constants:", "max_failure_fraction: 2\nconstants:", "exp.yaml:6:"),
        edit("failure fraction a word", "constants:", "max_failure_fraction: some\nconstants:", "exp.yaml:6:"),
        edit("isolation unknown", "constants:", "isolation: sometimes\nconstants:", "exp.yaml:6:"),
        edit("setup not a mapping", "constants:", "setup: [1]\nconstants:", "exp.yaml:6:"),
        edit("setup treatments not a list", "constants:", "setup:\n  treatments: 3\nconstants:", "exp.yaml:7:"),
        edit("setup treatment not a mapping", "constants:", "setup:\n  treatments: [3]\nconstants:", "exp.yaml:7:"),
        edit(
            "setup key both value and parent",
            "constants:",
            "setup:\n  treatments:\n    - {name: a, model: x, model.name: y}\nconstants:",
            "exp.yaml:8:",
        ),
        edit("constants not a mapping", "constants:\n  load.stages.0.duration: 1\n", "constants: 5\n", "exp.yaml:6:"),
        edit("unknown specification", "spec: examples/sim", "spec: examples/simm", "examples/simm"),
        edit("unknown harness", "harness: llmd", "harness: lmmd", "lmmd"),
        edit("unknown profile", "profile: sanity_random.yaml", "profile: sanity_randum.yaml", "sanity_randum"),
        edit("broken YAML", "  - name: r1\n", "  - name: [r1\n", "exp.yaml:"),
        edit("a tab in indentation", "  - name: r1\n", "\t- name: r1\n", "exp.yaml:"),
        Exp { name: "experiment not a mapping", text: "experiment: 5\ntreatments: [{name: a}]\n".into(), says: "exp.yaml:1:" },
        edit(
            "design factors not a list",
            "treatments:\n  - name: r1\n    load.stages.0.rate: 5\n",
            "design:\n  run:\n    factors: 3\n",
            "exp.yaml:10:",
        ),
        Exp { name: "empty file", text: String::new(), says: "exp.yaml" },
        Exp { name: "a list, not a mapping", text: "- 1\n- 2\n".into(), says: "exp.yaml:1:1" },
    ]
}

/// Flags and files of commands that stand nothing up.
fn commands(dir: &Path) -> Vec<(&'static str, Vec<String>, &'static str)> {
    let d = |p: &str| dir.join(p).display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut out = vec![
        ("plan --set without =", s(&["plan", "--spec", "examples/sim", "--set", "model.name", "-n"]), "model.name"),
        ("plan --set with an empty key", s(&["plan", "--spec", "examples/sim", "--set", "=x", "-n"]), "--set"),
        ("plan unknown spec", s(&["plan", "--spec", "examples/nope", "-n"]), "examples/nope"),
        (
            "load --set (a plan flag)",
            s(&["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "1", "--set", "model.name"]),
            "--set",
        ),
        ("load rate a word", s(&["load", "--endpoint", "http://127.0.0.1:9", "--duration", "1", "--rate", "fast"]), "--rate"),
        ("load rate zero", s(&["load", "--endpoint", "http://127.0.0.1:9", "--duration", "1", "--rate", "0"]), "rate"),
        ("load rate negative", s(&["load", "--endpoint", "http://127.0.0.1:9", "--duration", "1", "--rate=-5"]), "rate"),
        ("load duration zero", s(&["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "0"]), "duration"),
        ("load duration a word", s(&["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "long"]), "--duration"),
        ("load concurrency zero", s(&["load", "--endpoint", "http://127.0.0.1:9", "--duration", "1", "--concurrency", "0"]), "concurrency"),
        (
            "load range ratio five",
            s(&["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "1", "--range-ratio", "5"]),
            "range",
        ),
        (
            "load prompts file a directory",
            s(&[
                "load",
                "--endpoint",
                "http://127.0.0.1:9",
                "--rate",
                "5",
                "--duration",
                "1",
                "--dataset",
                "file",
                "--prompts-file",
                &d("."),
            ]),
            "prompts",
        ),
        (
            "load profile missing",
            s(&["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "1", "--profile", &d("nope.yaml")]),
            "nope.yaml",
        ),
        (
            "load profile broken",
            s(&["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "1", "--profile", &d("broken-profile.yaml")]),
            "broken-profile.yaml:",
        ),
        (
            "load profile unknown key",
            s(&["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "1", "--profile", &d("typo-profile.yaml")]),
            "typo-profile.yaml",
        ),
        ("load url not a url", s(&["load", "--endpoint", "not a url", "--rate", "5", "--duration", "1"]), "not a url"),
        ("load unknown flag", s(&["load", "--rat", "5"]), "--rat"),
        ("sim host not an address", s(&["sim", "--model", "m", "--host", "999.1.1.1"]), "999.1.1.1"),
        ("sim port out of range", s(&["sim", "--model", "m", "--port", "70000"]), "--port"),
        ("sim tokenizer missing", s(&["sim", "--model", "m", "--tokenizer", &d("no-tokenizer.json")]), "no-tokenizer.json"),
        ("sim config missing", s(&["sim", "--model", "m", "--config", &d("nope.yaml")]), "nope.yaml"),
        ("sim config broken", s(&["sim", "--model", "m", "--config", &d("broken-sim.yaml")]), "broken-sim.yaml:"),
        ("sim config unknown key", s(&["sim", "--model", "m", "--config", &d("typo-sim.yaml")]), "typo-sim.yaml:1"),
        ("sim failure rate above 100", s(&["sim", "--model", "m", "--failure-injection-rate", "150"]), "failure"),
        ("sim time to first token a word", s(&["sim", "--model", "m", "--time-to-first-token", "fast"]), "time-to-first-token"),
        ("sim unknown failure type", s(&["sim", "--model", "m", "--failure-types", "meteor"]), "meteor"),
        ("build unknown option", s(&["build", "exp.yaml", "--keep-stack"]), "--keep-stack"),
        ("build -j zero", s(&["build", "exp.yaml", "-j", "0"]), "-j"),
        ("build missing experiment file", s(&["build", "nope.yaml"]), "nope.yaml"),
    ];
    out.sort_by_key(|c| c.0);
    out
}

/// Runs `cmd`; a command still running after 20 s (a simulator that accepted bad input
/// and serves) is killed and fails the case.
fn finish(cmd: &mut Command) -> (i32, String) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return (-9, format!("still running after 20 s (killed)\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_bad_input_is_an_input_error_that_names_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_dir(&support::root().join("config"), &root.join("config"));
    copy_dir(&support::root().join("workload"), &root.join("workload"));
    std::fs::write(root.join("broken-profile.yaml"), "load:\n  stages: [unclosed\n").unwrap();
    std::fs::write(root.join("typo-profile.yaml"), "laod:\n  stages: [{rate: 1, duration: 1}]\n").unwrap();
    std::fs::write(root.join("broken-sim.yaml"), "model: [x\n").unwrap();
    std::fs::write(root.join("typo-sim.yaml"), "time_to_frist_token: 5ms\n").unwrap();
    let cmd = || {
        let mut c = llmd();
        c.current_dir(root).env("LLMD_CACHE_DIR", root.join("cache"));
        c
    };
    // The good experiment decides cleanly: the cases below fail for their one edit.
    std::fs::write(root.join("exp.yaml"), GOOD).unwrap();
    let (code, err) = finish(cmd().args(["build", "exp.yaml", "--dry-run"]));
    assert_eq!(code, 0, "the good experiment: {err}");

    let mut failures = Vec::new();
    let mut cases = 0;
    for e in experiments() {
        cases += 1;
        std::fs::write(root.join("exp.yaml"), &e.text).unwrap();
        let _ = std::fs::remove_dir_all(root.join("workspace"));
        let (code, err) = finish(cmd().args(["build", "exp.yaml"]));
        let stood_up = root.join("workspace").read_dir().into_iter().flatten().flatten().any(|s| s.path().join("receipts").is_dir());
        if code != 2 || !err.contains(e.says) || err.contains("panicked") || stood_up {
            failures.push(format!(
                "experiment: {} — exit {code}, wanted 2 naming '{}'{}\n{err}",
                e.name,
                e.says,
                if stood_up { "; something was stood up" } else { "" }
            ));
        }
    }
    std::fs::write(root.join("exp.yaml"), GOOD).unwrap();
    for (name, args, says) in commands(root) {
        cases += 1;
        let (code, err) = finish(cmd().args(&args));
        if code != 2 || !err.contains(says) || err.contains("panicked") {
            failures.push(format!("{name} ({}) — exit {code}, wanted 2 naming '{says}'\n{err}", args.join(" ")));
        }
    }
    assert!(cases >= 60, "the corpus has {cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} bad inputs were not reported as input errors:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
