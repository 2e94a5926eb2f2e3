//! `llmd schema`: the committed schemas under workload/schemas/ are what llmd generates,
//! every shipped file validates against its schema and names it in a modeline, and each
//! bad file the loader rejects fails schema validation at the key the loader names.

mod support;

use serde_json::Value;
use support::{llmd, root, run};

fn yaml_to_json(text: &str, name: &str) -> Value {
    llmd::yaml::load_str(text, name).unwrap_or_else(|e| panic!("{name}: {e}")).to_json()
}

fn committed(name: &str) -> Value {
    let path = root().join("workload/schemas").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn committed_schemas_are_what_llmd_generates() {
    use clap::ValueEnum;
    for file in llmd::cli::shell::SchemaFile::value_variants() {
        let name = file.to_possible_value().expect("every schema file has a name").get_name().to_string();
        let r = run(llmd().args(["schema", &name]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let committed = std::fs::read_to_string(root().join("workload/schemas").join(format!("{name}.json"))).unwrap();
        assert!(
            r.stdout == committed,
            "workload/schemas/{name}.json is stale: regenerate it with `cargo run -- schema {name} --out workload/schemas/{name}.json`"
        );
        let schema: Value = serde_json::from_str(&committed).unwrap();
        assert!(jsonschema::meta::is_valid(&schema), "{name}.json is not a valid JSON Schema");
    }
}

#[test]
fn every_shipped_experiment_validates_and_names_its_schema() {
    let validator = jsonschema::validator_for(&committed("experiment")).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("workload/experiments")).unwrap().flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/experiment.json\n"),
            "{} lacks the schema modeline",
            path.display()
        );
        let doc = yaml_to_json(&text, &path.display().to_string());
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "shipped experiments: {seen}");
}

#[test]
fn bad_experiments_fail_the_schema_at_the_key_the_loader_names() {
    let validator = jsonschema::validator_for(&committed("experiment")).unwrap();
    // (file body after the spec line, the key both must name, its JSON pointer)
    let cases = [
        ("treatmnets: []\n", "treatmnets", ""),
        ("repeat: 0\n", "repeat", "/repeat"),
        ("isolation: bogus\n", "isolation", "/isolation"),
        ("treatment_max_attempts: two\n", "treatment_max_attempts", "/treatment_max_attempts"),
        ("setup:\n  treatments: {a: 1}\n", "treatments", "/setup/treatments"),
        ("setup:\n  constans: {x: 1}\n", "constans", "/setup"),
        ("design:\n  run:\n    factors:\n      - {name: r, levels: [1]}\n", "key", "/design/run/factors/0"),
        ("treatments:\n  - {name: a}\n  - name: b\n    profile: [x]\n", "profile", "/treatments/1/profile"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("exp.yaml");
    for (body, key, pointer) in cases {
        let text = format!("experiment: {{spec: examples/sim}}\n{body}");
        std::fs::write(&file, &text).unwrap();
        let r = run(llmd().args(["build", "-n"]).arg(&file).arg("--workspace").arg(tmp.path().join("ws")));
        assert_eq!(r.code, 2, "{body}: the loader accepts it\n{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("'{key}'")) || r.stderr.contains(&format!(".{key}'")),
            "{body}: the loader names another key:\n{}",
            r.stderr
        );
        let doc = yaml_to_json(&text, "exp.yaml");
        let errors: Vec<(String, String)> = validator.iter_errors(&doc).map(|e| (e.instance_path().to_string(), e.to_string())).collect();
        assert!(
            errors.iter().any(|(at, msg)| at == pointer && (at.ends_with(key) || msg.contains(key))),
            "{body}: no schema error at {pointer} naming '{key}': {errors:?}"
        );
    }
}

#[test]
fn an_unknown_key_under_a_section_is_an_error_with_a_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("exp.yaml");
    std::fs::write(&file, "experiment:\n  spec: examples/sim\n  harnes: llmd\n").unwrap();
    let r = run(llmd().args(["build", "-n"]).arg(&file));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("exp.yaml:3:3") && r.stderr.contains("unknown key 'harnes' in 'experiment'"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean 'harness'?"), "{}", r.stderr);
}

fn validator_of(name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&committed(name)).unwrap()
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect()
}

fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.to_string_lossy().ends_with(".yaml") || p.to_string_lossy().ends_with(".yaml.in") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_native_profile_validates_and_names_its_schema() {
    let v = validator_of("profile-llmd");
    let mut files = Vec::new();
    yaml_files(&root().join("workload/profiles/llmd"), &mut files);
    assert!(files.len() >= 3, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=../../schemas/profile-llmd.json\n"), "{}", path.display());
        let e = errors(&v, &yaml_to_json(&text, &path.display().to_string()));
        assert!(e.is_empty(), "{}: {e:?}", path.display());
    }
    let typo = yaml_to_json("load:\n  stages:\n    - {rate: 1, duraton: 5}\n", "p.yaml");
    assert!(errors(&v, &typo).iter().any(|e| e.contains("duraton") && e.contains("/load/stages/0")), "{:?}", errors(&v, &typo));
    let bad_kind = yaml_to_json("load: {stages: [{rate: 1, duration: 5}]}\ndataset: {type: randomm}\n", "p.yaml");
    assert!(!errors(&v, &bad_kind).is_empty());
}

#[test]
fn every_shipped_scenario_validates_against_the_schema_of_its_defaults() {
    let v = validator_of("scenario");
    let mut files = Vec::new();
    yaml_files(&root().join("config/scenarios"), &mut files);
    assert!(files.len() >= 3, "{files:?}");
    for path in files {
        let doc = yaml_to_json(&std::fs::read_to_string(&path).unwrap(), &path.display().to_string());
        let e = errors(&v, &doc);
        assert!(e.is_empty(), "{}: {e:?}", path.display());
    }
    let nameless = yaml_to_json("scenario:\n  - decode: {replicas: 2}\n", "s.yaml");
    assert!(errors(&v, &nameless).iter().any(|e| e.contains("name")), "{:?}", errors(&v, &nameless));
    // The schema knows the defaults' keys, with their defaults, for completion.
    let schema = committed("scenario");
    let decode = &schema["properties"]["scenario"]["items"]["properties"]["decode"];
    assert!(decode["properties"]["replicas"].get("default").is_some(), "{decode}");
}

#[test]
fn the_simulator_config_schema_and_loader_agree() {
    let v = validator_of("sim-config");
    let tmp = tempfile::tempdir().unwrap();
    let good = "model: m\ntime-to-first-token: 10ms\ninterTokenLatency: 2\nmax-num-seqs: 4\nenable-kvcache: true\nfailure-types: [rate_limit]\nmode: echo\n";
    assert!(errors(&v, &yaml_to_json(good, "good.yaml")).is_empty(), "{:?}", errors(&v, &yaml_to_json(good, "good.yaml")));
    let path = tmp.path().join("good.yaml");
    std::fs::write(&path, good).unwrap();
    let sim = support::Sim::start(&["--config", path.to_str().unwrap()]);
    drop(sim);
    // (body, the key both must name)
    for (body, key) in [
        ("model: m\ninter-token-latncy: 2ms\n", "inter-token-latncy"),
        ("model: m\nmode: loud\n", "mode"),
        ("model: m\ntime-to-first-token: soon\n", "time-to-first-token"),
    ] {
        std::fs::write(&path, body).unwrap();
        let r = run(llmd().args(["sim", "--port", "0", "--config"]).arg(&path));
        assert_eq!(r.code, 2, "{body}: the simulator accepts it: {}", r.stderr);
        assert!(r.stderr.contains(key), "{body}: {}", r.stderr);
        let e = errors(&v, &yaml_to_json(body, "bad.yaml"));
        assert!(e.iter().any(|e| e.contains(key)), "{body}: {e:?}");
    }
}
