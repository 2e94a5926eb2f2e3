//! `llmd plan` end to end: shipped specs (snapshots and Jinja2 parity), determinism,
//! and bad input.

mod support;

use std::path::Path;

use support::{files_under, llmd, run};

const SPECS: &[&str] = &["examples/sim", "examples/gpu", "examples/multi-model", "guides/optimized-baseline"];

fn plan(spec: &str, ws: &Path) -> support::Run {
    let r = run(llmd().args(["--spec", spec, "plan", "--workspace"]).arg(ws));
    assert_eq!(r.code, 0, "llmd plan {spec} failed:\n{}", r.stderr);
    r
}

#[test]
fn shipped_specs_render_like_jinja2_and_match_snapshots() {
    for spec in SPECS {
        let ws = tempfile::tempdir().unwrap();
        plan(spec, ws.path());
        let stem = spec.rsplit('/').next().unwrap();
        let plan_dir = ws.path().join("plan");
        let golden_dir = support::root().join("tests/goldens/render").join(stem);
        for stack in std::fs::read_dir(&plan_dir).unwrap().flatten().filter(|e| e.path().is_dir()) {
            let stack_name = stack.file_name().to_string_lossy().to_string();
            let mut combined = String::new();
            for file in files_under(&stack.path()) {
                let got = std::fs::read_to_string(stack.path().join(&file)).unwrap();
                if file != Path::new("config.yaml") {
                    let want = std::fs::read_to_string(golden_dir.join(&stack_name).join(&file))
                        .unwrap_or_else(|e| panic!("no golden for {stem}/{stack_name}/{}: {e}", file.display()));
                    assert_eq!(got, want, "{spec} {stack_name}/{} differs from Jinja2's rendering", file.display());
                }
                combined.push_str(&format!("### {}\n{got}", file.display()));
            }
            insta::assert_snapshot!(format!("{stem}__{stack_name}"), combined);
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    plan("examples/multi-model", a.path());
    plan("examples/multi-model", b.path());
    let files = files_under(a.path());
    assert_eq!(files, files_under(b.path()));
    for f in files {
        assert_eq!(std::fs::read(a.path().join(&f)).unwrap(), std::fs::read(b.path().join(&f)).unwrap(), "{}", f.display());
    }
}

#[test]
fn set_overrides_reach_the_plan() {
    let ws = tempfile::tempdir().unwrap();
    let r = run(llmd()
        .args(["--spec", "examples/multi-model", "plan", "--set", "llama-*:decode.replicas=5,model.maxModelLen=2048", "-p", "bench,harness-ns", "--workspace"])
        .arg(ws.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cfg = |stack: &str| std::fs::read_to_string(ws.path().join("plan").join(stack).join("config.yaml")).unwrap();
    let llama = llmd::yaml::load_str(&cfg("llama-31-8b"), "c").unwrap();
    let qwen = llmd::yaml::load_str(&cfg("qwen3-06b"), "c").unwrap();
    assert_eq!(llama.get_path(&["decode", "replicas"]).unwrap().as_i64(), Some(5));
    assert_eq!(qwen.get_path(&["decode", "replicas"]).unwrap().as_i64(), Some(1));
    assert_eq!(qwen.get_path(&["model", "maxModelLen"]).unwrap().as_i64(), Some(2048));
    assert_eq!(qwen.get_path(&["namespace", "name"]).unwrap().as_str(), Some("bench"));
    assert_eq!(qwen.get_path(&["harness", "namespace"]).unwrap().as_str(), Some("harness-ns"));
    assert_eq!(qwen.get_path(&["downloadJob", "name"]).unwrap().as_str(), Some("download-model-qwen-qwe-a15c4f83-en3-0-6b"));
    assert_eq!(qwen.get("stackIndex").unwrap().as_i64(), Some(1));
    assert_eq!(llama.get("stackIndex").unwrap().as_i64(), Some(2));
    assert_eq!(llama.get("scenarioName").unwrap().as_str(), Some("multi-model"));
}
