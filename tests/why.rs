//! Snapshots of `llmd why` for every reason, as text and as JSON.

use llmd::engine::key::LeafChange;
use llmd::engine::reason::{FileChange, FileDiff, Reason};
use llmd::engine::why::{Twins, explain, render, twins};

fn every_reason() -> Vec<(String, Reason, String)> {
    let change = |path: &str, old: Option<&str>, new: Option<&str>, origin: &str| LeafChange {
        path: path.into(),
        old: old.map(str::to_string),
        new: new.map(str::to_string),
        origin: origin.into(),
    };
    let n = |id: &str, r: Reason, s: &str| (id.to_string(), r, s.to_string());
    vec![
        n("plan/a/sim", Reason::NeverRun, "ran"),
        n(
            "plan/b/sim",
            Reason::ConfigChanged {
                changes: vec![
                    change("decode.replicas", Some("1"), Some("2"), "config/scenarios/x.yaml:14:7"),
                    change("local.sim.seed", None, Some("7"), "exp.yaml:9:7"),
                    change("vllmCommon.flags.enforceEager", Some("true"), None, "config/templates/values/defaults.yaml:301:5"),
                ],
            },
            "ran",
        ),
        n("standup/b/sim", Reason::UpstreamChanged { node: "plan/b/sim".into() }, "ran"),
        n("smoketest/b/sim", Reason::UpstreamRuns { node: "standup/b/sim".into() }, "ran"),
        n(
            "run/b/sim/r1#1",
            Reason::TreatmentChanged { changes: vec![change("load.stages.0.rate", Some("4"), Some("8"), "exp.yaml:22:5")] },
            "ran",
        ),
        n(
            "plan/c/sim",
            Reason::TemplateChanged {
                templates: vec![FileChange { file: "14_standalone-deployment.yaml.j2".into(), change: "edited".into() }],
                rendered: vec![FileDiff {
                    file: "14_standalone-deployment.yaml".into(),
                    change: "edited".into(),
                    diff: "@@ -7,3 +7,3 @@\n   labels:\n-    app: sim\n+    app: sim-v2\n   annotations: {}\n".into(),
                }],
            },
            "ran",
        ),
        n(
            "run/c/sim/r1#1",
            Reason::ProfileChanged {
                profile: "sanity_random.yaml".into(),
                changes: vec![change("dataset.output_len", Some("32"), Some("64"), "workload/profiles/llmd/sanity_random.yaml.in:9:15")],
            },
            "ran",
        ),
        n(
            "run/c/sim/r7#1",
            Reason::TreatmentChanged { changes: vec![change("load.stages.0.rate", Some("2"), Some("32"), "exp.yaml:24:5")] },
            "not run: identical inputs to run/c/sim/r8#1, which ran",
        ),
        n("run/c/sim/r8#1", Reason::NeverRun, "ran"),
        n("summary/e", Reason::UpstreamChanged { node: "analysis/c/sim/r9#1".into() }, "ran"),
        n(
            "run/c/sim/r2#1",
            Reason::ToolVersionChanged { tool: "harness".into(), old: "inference-perf@0.6.1".into(), new: "inference-perf@0.7.0".into() },
            "ran",
        ),
        n("run/c/sim/r3#1", Reason::Forced { pattern: "run/*/r3#*".into() }, "ran"),
        n(
            "run/c/sim/r4#1",
            Reason::PreviousFailed { error: Some("12 of 20 requests failed (12 Transport)\nmore detail".into()) },
            "failed",
        ),
        n("run/c/sim/r5#1", Reason::Interrupted { pid: 4242, since_unix: 1_795_000_000.5 }, "ran"),
        n("run/c/sim/r6#1", Reason::InputsChanged { inputs: vec!["rep".into()] }, "ran"),
        n("standup/c/sim", Reason::DeploymentGone { detail: "process 99 (port 8000) is not running".into() }, "ran"),
        n("standup/d/sim", Reason::DeploymentDrifted { detail: "running plan 1a2b3c differs from the current plan 4d5e6f".into() }, "ran"),
        n("analysis/c/sim/r1#1", Reason::OutputMissing { output: "analysis.json".into() }, "skipped"),
    ]
}

/// r7 and r8 have identical inputs; so have the analyses of r9 (fresh) and r8.
fn shared() -> Twins {
    let pair = |a: &str, b: &str, key: &str| [(a.to_string(), key.to_string()), (b.to_string(), key.to_string())];
    let mut keys = Vec::new();
    keys.extend(pair("run/c/sim/r7#1", "run/c/sim/r8#1", "k1"));
    keys.extend(pair("analysis/c/sim/r9#1", "analysis/c/sim/r8#1", "k2"));
    keys.push(("run/c/sim/r1#1".into(), "k3".into()));
    twins(&keys)
}

#[test]
fn why_text() {
    let e = explain(&every_reason(), &shared());
    insta::assert_snapshot!("why_text", render(&e, &shared(), None, "last build (0001-1.jsonl)"));
    insta::assert_snapshot!("why_text_filtered", render(&e, &shared(), Some("smoketest/*"), "last build (0001-1.jsonl)"));
}

#[test]
fn why_json() {
    let e = explain(&every_reason(), &shared());
    insta::assert_snapshot!("why_json", serde_json::to_string_pretty(&serde_json::json!({"source": "last build", "nodes": e})).unwrap());
}
