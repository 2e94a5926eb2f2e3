//! Snapshots of `llmd why` for every reason, as text and as JSON.

use llmd::engine::key::LeafChange;
use llmd::engine::reason::Reason;
use llmd::engine::why::{explain, render};

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
        n("plan/c/sim", Reason::TemplateChanged, "ran"),
        n("run/c/sim/r1#1", Reason::ProfileChanged { profile: "sanity_random.yaml".into() }, "ran"),
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

#[test]
fn why_text() {
    let e = explain(&every_reason());
    insta::assert_snapshot!("why_text", render(&e, None, "last build (0001-1.jsonl)"));
    insta::assert_snapshot!("why_text_filtered", render(&e, Some("smoketest/*"), "last build (0001-1.jsonl)"));
}

#[test]
fn why_json() {
    let e = explain(&every_reason());
    insta::assert_snapshot!("why_json", serde_json::to_string_pretty(&serde_json::json!({"source": "last build", "nodes": e})).unwrap());
}
