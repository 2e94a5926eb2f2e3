//! Secrets are used, never kept: a Hugging Face token in the environment, a token in a
//! config file and the value of a credential env entry are in no cache blob, plan,
//! workspace file, journal, export bundle or command output (plain or base64), and are
//! inputs of no key — a build with other values executes nothing. (Where they do go,
//! the objects a cluster backend applies, is tested in `tests/kube.rs`.)

mod support;

use std::path::Path;

use support::{copy_dir, files_under, llmd, run};

const TOKEN: &str = "hf_s3cretTokenValue0123456789abcdef";
const OTHER: &str = "hf_anotherTokenValue9876543210fedcba";
/// In the experiment file: a token in the config, a credential in an env entry.
const IN_CONFIG: [&str; 2] = ["hf_fromTheConfigFile0123456789", "sk-apiKeyFromTheConfig0123456789"];
const IN_CONFIG_LATER: [&str; 2] = ["hf_changedInTheConfigFile987654", "sk-apiKeyChangedLater9876543210"];

fn experiment(secrets: [&str; 2]) -> String {
    EXPERIMENT.replace("CONFIG_TOKEN", secrets[0]).replace("CONFIG_KEY", secrets[1])
}

const EXPERIMENT: &str = "\
experiment:
  name: s
  spec: examples/sim
  harness: llmd
  profile: sanity_random.yaml
setup:
  constants:
    huggingface.token: CONFIG_TOKEN
    standalone.extraEnvVars:
      - name: OPENAI_API_KEY
        value: CONFIG_KEY
constants:
  load.stages.0.requests: 2
  load.stages.0.duration: 5
  dataset.output_len: 2
treatments:
  - name: r1
    load.stages.0.rate: 50
";

fn forms(token: &str) -> [String; 2] {
    use base64::Engine;
    [token.to_string(), base64::engine::general_purpose::STANDARD.encode(token)]
}

fn assert_clean(what: &str, text: &str) {
    for token in [TOKEN, OTHER].into_iter().chain(IN_CONFIG).chain(IN_CONFIG_LATER) {
        for form in forms(token) {
            assert!(!text.contains(&form), "{what} holds the token ({form})");
        }
    }
}

#[test]
fn a_token_is_never_stored_printed_or_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_dir(&support::root().join("config"), &root.join("config"));
    copy_dir(&support::root().join("workload"), &root.join("workload"));
    std::fs::write(root.join("exp.yaml"), experiment(IN_CONFIG)).unwrap();
    let cmd = |token: &str| {
        let mut c = llmd();
        c.current_dir(root).args(["--workspace", "ws"]).env("LLMD_CACHE_DIR", root.join("cache")).env("HF_TOKEN", token);
        c
    };
    let mut outputs = Vec::new();
    let mut step = |name: &str, token: &str, args: &[&str]| {
        let r = run(cmd(token).args(args));
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        outputs.push((name.to_string(), format!("{}\n{}", r.stdout, r.stderr)));
        r.stdout
    };
    step("build", TOKEN, &["build", "exp.yaml"]);
    step("build --dry-run", TOKEN, &["build", "exp.yaml", "--dry-run", "-v"]);
    step("status", TOKEN, &["status", "exp.yaml"]);
    step("why", TOKEN, &["why"]);
    step("plan", TOKEN, &["--spec", "examples/sim", "plan"]);
    step("config show", TOKEN, &["--spec", "examples/sim", "plan", "-n", "-v"]);
    // Other tokens: nothing to execute (they are inputs of no key), nothing to explain.
    std::fs::write(root.join("exp.yaml"), experiment(IN_CONFIG_LATER)).unwrap();
    let json = step("build with another token", OTHER, &["build", "exp.yaml", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ran: Vec<&serde_json::Value> = report["nodes"].as_array().unwrap().iter().filter(|n| n["status"] != "fresh").collect();
    assert!(ran.is_empty(), "a new token executed {ran:?}");
    step("why -e", OTHER, &["why", "-e", "exp.yaml"]);
    step("why --json", OTHER, &["why", "--json"]);
    let bundle = root.join("bundle.json");
    step("cache export", OTHER, &["cache", "export", bundle.to_str().unwrap(), "--all"]);
    for (name, text) in &outputs {
        assert_clean(name, text);
    }
    let mut files = 0;
    for top in ["cache", "ws", "bundle.json"] {
        let p = root.join(top);
        let list: Vec<std::path::PathBuf> = if p.is_dir() { files_under(&p).into_iter().map(|f| p.join(f)).collect() } else { vec![p] };
        for file in list {
            files += 1;
            let bytes = std::fs::read(&file).unwrap();
            assert_clean(&file.display().to_string(), &String::from_utf8_lossy(&bytes));
        }
    }
    assert!(files > 50, "searched {files} files");
    // The plan knows a token exists (the stack gets the Secret reference), not its value.
    let config = std::fs::read_to_string(plan_config(root)).unwrap();
    assert!(config.contains("llmd-secret-huggingface-token"), "{config}");
    assert!(config.contains("llmd-secret-standalone-extraenvvars-0-value"), "{config}");
    assert!(config.contains("name: OPENAI_API_KEY"), "{config}");
}

fn plan_config(root: &Path) -> std::path::PathBuf {
    files_under(&root.join("ws"))
        .into_iter()
        .map(|f| root.join("ws").join(f))
        .find(|f| f.ends_with("setup-treatment-default/plan/sim/config.yaml"))
        .expect("a rendered config.yaml")
}
