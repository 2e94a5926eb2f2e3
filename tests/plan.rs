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
                // config.yaml is the resolver's, helm/helm-commands.txt is derived from the helmfiles.
                if file != Path::new("config.yaml") && file != Path::new("helm/helm-commands.txt") {
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
        .args([
            "--spec",
            "examples/multi-model",
            "plan",
            "--set",
            "llama-*:decode.replicas=5,model.maxModelLen=2048",
            "-p",
            "bench,harness-ns",
            "--workspace",
        ])
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

/// A throwaway copy of the shipped config tree, for tests that break it.
fn config_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp").arg("-r").arg(support::root().join("config")).arg(dir.path()).status().unwrap();
    assert!(status.success());
    dir
}

fn expect_input_error(r: &support::Run, fragments: &[&str]) {
    assert_eq!(r.code, 2, "expected exit code 2, got {}:\n{}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    for f in fragments {
        assert!(r.stderr.contains(f), "stderr lacks {f:?}:\n{}", r.stderr);
    }
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2() {
    let ws = tempfile::tempdir().unwrap();
    let ws_arg = ws.path().to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--spec", "examples/simm", "plan"], &["specification 'examples/simm' not found", "did you mean 'examples/sim'"]),
        (&["plan"], &["no specification given", "--spec"]),
        (
            &["--spec", "examples/sim", "plan", "--set", "decode.replicas"],
            &["invalid --set override 'decode.replicas'", "[stack:]dotted.key=value"],
        ),
        (&["--spec", "examples/sim", "plan", "--set", "a=1,a.b=2"], &["conflicting --set overrides"]),
        (
            &["--spec", "examples/sim", "plan", "--set", "simm:decode.replicas=2"],
            &["selector 'simm' matches no stack", "did you mean 'sim:'"],
        ),
        (&["--spec", "examples/sim", "plan", "--stack", "nope"], &["--stack 'nope' matches no stack"]),
        (&["--spec", "examples/sim", "plan", "--set", "decode.vllm.additionalFlags.0=x"], &["descends into a list"]),
        (&["--spec", "examples/sim", "plan", "--set", "model.name=${model.path}"], &["cyclic config variable reference", "defaults.yaml:"]),
        (
            &["--spec", "examples/multi-model", "plan", "--set", "httpRoute.mode=weird"],
            &["08_httproute.yaml.j2:7", "httpRoute.mode must be"],
        ),
        (&["--spec", "examples/sim", "plan", "--cluster-config", "/nonexistent/cc.yaml"], &["/nonexistent/cc.yaml", "cannot read"]),
        (&["--spec", "examples/sim", "plan", "-s", "3-1"], &["backwards"]),
    ];
    for (args, fragments) in cases {
        let r = run(llmd().args(*args).args(["--workspace", ws_arg]));
        expect_input_error(&r, fragments);
    }
    assert!(!ws.path().join("plan").exists(), "failed renders must not leave a plan");
}

#[test]
fn broken_config_trees_name_file_and_line() {
    let base = config_copy();
    let ws = tempfile::tempdir().unwrap();
    let plan_with =
        |spec: &str| run(llmd().args(["--base-dir", base.path().to_str().unwrap(), "--spec", spec, "plan", "--workspace"]).arg(ws.path()));
    // A good plan first: failures afterwards must leave it untouched.
    assert_eq!(plan_with("examples/sim").code, 0);
    let good = std::fs::read_to_string(ws.path().join("plan/sim/14_standalone-deployment.yaml")).unwrap();

    let scenario = base.path().join("config/scenarios/examples/sim.yaml");
    let original = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(&scenario, "scenario:\n  - name: x\n    model: {name: [a\n").unwrap();
    expect_input_error(&plan_with("examples/sim"), &["config/scenarios/examples/sim.yaml:4:", "flow sequence"]);
    std::fs::write(&scenario, "scenario: 5\n").unwrap();
    expect_input_error(&plan_with("examples/sim"), &["'scenario' must be a list of stacks"]);
    std::fs::write(&scenario, original).unwrap();

    let bad = base.path().join("config/templates/jinja/99_bad.yaml.j2");
    std::fs::write(&bad, "{% if x %}\nfoo: {{ bar }\n").unwrap();
    expect_input_error(&plan_with("examples/sim"), &["99_bad.yaml.j2:2", "template syntax error"]);
    std::fs::write(&bad, "ok: 1\nbad: a: b\n").unwrap();
    expect_input_error(&plan_with("examples/sim"), &["99_bad.yaml.j2 rendered invalid YAML", "99_bad.yaml:2:"]);
    std::fs::write(&bad, "a: {{ nothere.x }}\n").unwrap();
    expect_input_error(&plan_with("examples/sim"), &["99_bad.yaml.j2:1", "undefined"]);
    std::fs::remove_file(&bad).unwrap();

    let macros = base.path().join("config/templates/jinja/_macros.j2");
    let text = std::fs::read_to_string(&macros).unwrap();
    std::fs::write(&macros, text.replace("{{ model.maxModelLen }}", "{{ model.maxModelLen.a.b }}")).unwrap();
    expect_input_error(&plan_with("examples/gpu"), &["_macros.j2:7", "undefined"]);
    std::fs::write(&macros, text).unwrap();

    let defaults = base.path().join("config/templates/values/defaults.yaml");
    std::fs::remove_file(&defaults).unwrap();
    std::fs::create_dir(&defaults).unwrap();
    expect_input_error(&plan_with("examples/sim"), &["defaults.yaml"]);

    assert_eq!(std::fs::read_to_string(ws.path().join("plan/sim/14_standalone-deployment.yaml")).unwrap(), good);
}

/// A config tree of our own that uses upstream's idioms the way its guides do: a dict
/// literal filled in a loop over a container config with `update` and rendered with
/// `toyaml` (as the modelservice values template does); an environment value whose
/// double-quoted continuation lines start at column 0 (as one guide's harness pod has);
/// network settings only under `vllmCommon` (upstream copies them into the deploy
/// methods); an init container naming its image by `imageKey` (upstream expands it and
/// deletes the key); a key upstream's schema does not have (upstream warns). Everything
/// renders as Jinja2, PyYAML and upstream's resolvers would, and the plan is snapshotted.
#[test]
fn upstream_template_idioms_render() {
    let base = config_copy();
    let scenario = base.path().join("config/scenarios/examples/sim.yaml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    let idioms = "    idioms:\n      container:\n        image: vllm/vllm-openai:v0.8\n        imagePullPolicy: Always\n        unused: null\n        args: [--port, \"8000\"]\n      env:\n        - name: EXTRA_ARGS\n          value: \"--first-flag\n--second-flag\n  --third-flag\"\n        - name: NEXT\n          value: plain\n    vllmCommon:\n      networkResource: rdma/ib\n      networkNr: \"2\"\n    decode:\n      networkNr: \"4\"\n      initContainers:\n        - name: warmup\n          imageKey: benchmark\n";
    let text = text.replacen("    local:\n", &format!("{idioms}    local:\n"), 1).replacen(
        "    harness:\n",
        "    harness:\n      extraEnvVars: []\n",
        1,
    );
    let extra_line = text.lines().position(|l| l.contains("extraEnvVars")).unwrap() + 1;
    std::fs::write(&scenario, text).unwrap();
    std::fs::write(
        base.path().join("config/templates/jinja/90_idioms.yaml.j2"),
        "{% set kept = {} %}\n{% for key, value in idioms.container.items() %}\n{% if value is not none %}\n{% set _ = kept.update({key: value}) %}\n{% endif %}\n{% endfor %}\ncontainer:\n  {{ kept | toyaml | indent(2) }}\n  env:\n{% for e in idioms.env %}\n  - name: {{ e.name }}\n    value: {{ e.value | tojson }}\n{% endfor %}\nnetwork:\n  decode: {{ decode.networkResource }}/{{ decode.networkNr }}\n  prefill: {{ prefill.networkResource }}/{{ prefill.networkNr }}\n  standalone: {{ standalone.networkResource }}/{{ standalone.networkNr }}\ninitContainers:\n  {{ decode.initContainers | toyaml | indent(2) }}\n",
    )
    .unwrap();
    let ws = tempfile::tempdir().unwrap();
    let r = run(llmd().args(["--base-dir", base.path().to_str().unwrap(), "--spec", "examples/sim", "plan", "--workspace"]).arg(ws.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rendered = std::fs::read_to_string(ws.path().join("plan/sim/90_idioms.yaml")).unwrap();
    assert!(rendered.contains("\"--first-flag --second-flag --third-flag\""), "PyYAML folds the lines:\n{rendered}");
    assert!(!rendered.contains("unused"), "{rendered}");
    assert!(rendered.contains("decode: rdma/ib/4\n  prefill: rdma/ib/2\n  standalone: rdma/ib/2"), "{rendered}");
    assert!(rendered.contains("image: ghcr.io/llm-d/llm-d-benchmark:v0.8.0") && !rendered.contains("imageKey"), "{rendered}");
    let config = std::fs::read_to_string(ws.path().join("plan/sim/config.yaml")).unwrap();
    assert!(!config.contains("imageKey") && config.contains("networkResource: rdma/ib"), "{config}");
    let warning = format!("sim.yaml:{extra_line}:7: [sim] harness.extraEnvVars: a key upstream's harness section does not have");
    assert!(r.stderr.contains(&warning), "want {warning:?} in:\n{}", r.stderr);
    insta::assert_snapshot!("upstream_template_idioms", rendered);
}

/// A nok8s stack renders every template, as upstream does (a template for another deploy
/// method renders empty), and its config has only keys upstream's renderer sets.
#[test]
fn a_nok8s_stack_renders_every_template_and_adds_no_keys() {
    let files = |extra: &[&str]| {
        let ws = tempfile::tempdir().unwrap();
        let r = run(llmd().args(["--spec", "examples/sim", "plan"]).args(extra).arg("--workspace").arg(ws.path()));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let dir = ws.path().join("plan/sim");
        let mut names: Vec<String> = files_under(&dir).iter().map(|p| p.display().to_string()).collect();
        names.sort();
        (names, std::fs::read_to_string(dir.join("config.yaml")).unwrap(), ws)
    };
    let (k8s, _, _ws1) = files(&[]);
    let (nok8s, config, _ws2) = files(&["-t", "nok8s"]);
    let templates = std::fs::read_dir(support::root().join("config/templates/jinja"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
        .count();
    assert_eq!(nok8s.iter().filter(|n| n.ends_with(".yaml") && *n != "config.yaml").count(), templates, "{nok8s:?}");
    assert_eq!(
        nok8s.iter().filter(|n| !n.starts_with("helm/")).collect::<Vec<_>>(),
        k8s.iter().filter(|n| !n.starts_with("helm/")).collect::<Vec<_>>()
    );
    assert!(config.contains("nok8s:\n  enabled: true"), "{config}");
    for llmd_only in ["clientHost", "baseId"] {
        assert!(!config.contains(llmd_only), "{llmd_only} in:\n{config}");
    }
}
