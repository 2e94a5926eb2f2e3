//! External harnesses as local processes: inference-perf, guidellm and
//! `vllm bench serve` (harness name `vllm-benchmark`).
//!
//! Each adapter points the rendered profile at the endpoint, model and results
//! directory, builds the command line (an argument vector — never a shell string), and
//! checks that the tool wrote its result files. A missing tool is an error that says
//! how to install it; `LLMD_<TOOL>_BIN` (e.g. `LLMD_INFERENCE_PERF_BIN`) points at a
//! specific executable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::yaml::{DumpOptions, Node, Value, dump};

/// The harnesses llmd can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HarnessKind {
    /// The native load generator.
    Llmd,
    InferencePerf,
    Guidellm,
    VllmBenchmark,
}

impl HarnessKind {
    pub const ALL: [HarnessKind; 4] = [HarnessKind::Llmd, HarnessKind::InferencePerf, HarnessKind::Guidellm, HarnessKind::VllmBenchmark];

    pub fn parse(name: &str) -> Result<HarnessKind> {
        Ok(match name {
            "llmd" | "native" => HarnessKind::Llmd,
            "inference-perf" => HarnessKind::InferencePerf,
            "guidellm" => HarnessKind::Guidellm,
            "vllm-benchmark" | "vllm-bench" => HarnessKind::VllmBenchmark,
            other => {
                let names: Vec<&str> = HarnessKind::ALL.iter().map(|h| h.name()).collect();
                let mut msg = format!("unknown harness '{other}' (known: {})", names.join(", "));
                if let Some(s) = crate::error::did_you_mean(other, names.iter().copied()) {
                    msg.push_str(&format!("; did you mean '{s}'?"));
                }
                bail!(msg)
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            HarnessKind::Llmd => "llmd",
            HarnessKind::InferencePerf => "inference-perf",
            HarnessKind::Guidellm => "guidellm",
            HarnessKind::VllmBenchmark => "vllm-benchmark",
        }
    }

    fn program(self) -> &'static str {
        match self {
            HarnessKind::Llmd => "llmd",
            HarnessKind::InferencePerf => "inference-perf",
            HarnessKind::Guidellm => "guidellm",
            HarnessKind::VllmBenchmark => "vllm",
        }
    }

    fn env_override(self) -> &'static str {
        match self {
            HarnessKind::Llmd => "LLMD_LLMD_BIN",
            HarnessKind::InferencePerf => "LLMD_INFERENCE_PERF_BIN",
            HarnessKind::Guidellm => "LLMD_GUIDELLM_BIN",
            HarnessKind::VllmBenchmark => "LLMD_VLLM_BIN",
        }
    }

    pub fn install_hint(self) -> &'static str {
        match self {
            HarnessKind::Llmd => "it is built in",
            HarnessKind::InferencePerf => {
                "python3.12 -m venv .venv-ip && .venv-ip/bin/pip install inference-perf  (needs Python >= 3.12), then put .venv-ip/bin on PATH or set LLMD_INFERENCE_PERF_BIN"
            }
            HarnessKind::Guidellm => {
                "python3 -m venv .venv-guidellm && .venv-guidellm/bin/pip install guidellm, then put .venv-guidellm/bin on PATH or set LLMD_GUIDELLM_BIN"
            }
            HarnessKind::VllmBenchmark => {
                "pip install vllm (the benchmark client only: pip install --no-deps vllm plus its client dependencies), or set LLMD_VLLM_BIN"
            }
        }
    }

    /// Result files the tool must leave in its results directory.
    pub fn expected_outputs(self) -> &'static [&'static str] {
        match self {
            HarnessKind::Llmd => &["records.jsonl", "report.json"],
            HarnessKind::InferencePerf => &["summary_lifecycle_metrics.json"],
            HarnessKind::Guidellm => &["results.json"],
            HarnessKind::VllmBenchmark => &["vllm-bench.json"],
        }
    }

    /// Locates the tool's executable.
    pub fn locate(self) -> Result<PathBuf> {
        if let Some(p) = std::env::var_os(self.env_override()) {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(p);
            }
            bail!("{} points at {}, which does not exist", self.env_override(), p.display());
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join(self.program());
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        bail!(
            "harness '{}' needs the `{}` command, which is not installed\n  install: {}",
            self.name(),
            self.program(),
            self.install_hint()
        )
    }
}

/// A prepared external run.
#[derive(Debug, Clone)]
pub struct ExternalRun {
    pub kind: HarnessKind,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub results_dir: PathBuf,
    /// The profile as handed to the tool.
    pub config_file: Option<PathBuf>,
}

fn set(doc: &mut Node, path: &[&str], value: Node) {
    doc.set_path(path, value);
}

/// Points a rendered profile at the endpoint and results directory, writes it, and
/// builds the command line.
pub fn prepare(
    kind: HarnessKind,
    mut profile: Node,
    program: PathBuf,
    endpoint: &str,
    model: &str,
    results_dir: &Path,
    tokenizer: Option<&Path>,
) -> Result<ExternalRun> {
    std::fs::create_dir_all(results_dir).with_context(|| format!("cannot create {}", results_dir.display()))?;
    let results = results_dir.to_string_lossy().to_string();
    let write = |doc: &Node, name: &str| -> Result<PathBuf> {
        let path = results_dir.join(name);
        std::fs::write(&path, dump(doc, DumpOptions { sort_keys: false, literal_multiline: true }))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    match kind {
        HarnessKind::Llmd => bail!("the native harness runs in-process"),
        HarnessKind::InferencePerf => {
            set(&mut profile, &["server", "base_url"], Node::str(endpoint));
            set(&mut profile, &["server", "model_name"], Node::str(model));
            set(&mut profile, &["storage", "local_storage", "path"], Node::str(results.clone()));
            if let Some(t) = tokenizer {
                set(&mut profile, &["tokenizer", "pretrained_model_name_or_path"], Node::str(t.to_string_lossy().to_string()));
            }
            let cfg = write(&profile, "inference-perf-config.yaml")?;
            Ok(ExternalRun {
                kind,
                program,
                args: vec!["--config_file".into(), cfg.to_string_lossy().into()],
                results_dir: results_dir.into(),
                config_file: Some(cfg),
            })
        }
        HarnessKind::Guidellm => {
            set(&mut profile, &["spec", "backend", "target"], Node::str(endpoint));
            set(&mut profile, &["spec", "backend", "model"], Node::str(model));
            if let Some(t) = tokenizer {
                set(
                    &mut profile,
                    &["spec", "tokenizer"],
                    crate::yaml::map_of([("kind", Node::str("huggingface_auto")), ("model", Node::str(t.to_string_lossy().to_string()))]),
                );
            }
            let cfg = write(&profile, "guidellm-scenario.yaml")?;
            Ok(ExternalRun {
                kind,
                program,
                args: vec![
                    "run".into(),
                    "--scenario".into(),
                    cfg.to_string_lossy().into(),
                    "--output".into(),
                    format!("kind=json,path={}", results_dir.join("results.json").display()),
                    "--disable-console-interactive".into(),
                ],
                results_dir: results_dir.into(),
                config_file: Some(cfg),
            })
        }
        HarnessKind::VllmBenchmark => {
            let map = profile.as_map().context("a vllm-benchmark profile is a mapping of `vllm bench serve` flags")?;
            let mut args = vec!["bench".to_string(), "serve".into(), "--base-url".into(), endpoint.into(), "--model".into(), model.into()];
            if let Some(t) = tokenizer {
                args.extend(["--tokenizer".into(), t.to_string_lossy().to_string()]);
            }
            for (k, v) in map {
                if matches!(k.as_str(), "base-url" | "model" | "result-dir" | "result-filename" | "save-result") {
                    continue;
                }
                match &v.value {
                    Value::Bool(true) => args.push(format!("--{k}")),
                    Value::Bool(false) | Value::Null => {}
                    Value::Seq(items) => {
                        args.push(format!("--{k}"));
                        args.extend(items.iter().map(crate::yaml::str_node));
                    }
                    _ => {
                        args.push(format!("--{k}"));
                        args.push(crate::yaml::str_node(v));
                    }
                }
            }
            args.extend([
                "--save-result".into(),
                "--result-dir".into(),
                results.clone(),
                "--result-filename".into(),
                "vllm-bench.json".into(),
            ]);
            Ok(ExternalRun { kind, program, args, results_dir: results_dir.into(), config_file: None })
        }
    }
}

/// Kills a process group when dropped, unless disarmed: a harness that times out, or
/// whose run is abandoned, takes its children (tokenizer workers, a `python -m`
/// wrapper's child) with it.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: signals the process group this run created (the child leads it).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the tool to completion in its own process group, logging its output to `log`;
/// a non-zero exit is an error quoting the end of the log. On timeout the whole group
/// is killed.
pub async fn run(ext: &ExternalRun, log: &Path, timeout: Duration, env: &[(&str, &str)]) -> Result<()> {
    let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = tokio::process::Command::new(&ext.program);
    cmd.args(&ext.args)
        .current_dir(&ext.results_dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", ext.program.display()))?;
    let mut group = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => {
            // The leader exited: stragglers it left in the group go too.
            group.kill();
            s?
        }
        Err(_) => {
            group.kill();
            // The leader too, directly: it may have left its group (setsid).
            let _ = child.kill().await;
            bail!("{} did not finish within {timeout:?}; log: {}", ext.kind.name(), log.display());
        }
    };
    if !status.success() {
        let tail = crate::util::tail_lines(log, 15);
        bail!("{} exited with {status}; last lines of {}:\n{tail}", ext.kind.name(), log.display());
    }
    Ok(())
}

/// What a harness's result files say about its requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collected {
    pub files: Vec<PathBuf>,
    pub completed: u64,
    pub failed: u64,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn count(v: &serde_json::Value, path: &[&str], file: &Path) -> Result<u64> {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_u64().with_context(|| format!("{} has no {} count", file.display(), path.join(".")))
}

/// Checks the tool left its result files and reads its request counts from them.
pub fn collect(kind: HarnessKind, results_dir: &Path) -> Result<Collected> {
    let mut files = Vec::new();
    for name in kind.expected_outputs() {
        let p = results_dir.join(name);
        if !p.is_file() {
            bail!("{} finished but wrote no {} in {}", kind.name(), name, results_dir.display());
        }
        files.push(p);
    }
    let main = &files[match kind {
        HarnessKind::Llmd => 1,
        _ => 0,
    }];
    let doc = read_json(main)?;
    let (completed, failed) = match kind {
        HarnessKind::Llmd => (
            count(&doc, &["requests", "completed"], main)?,
            count(&doc, &["requests", "failed"], main)? + count(&doc, &["requests", "incomplete"], main)?,
        ),
        HarnessKind::InferencePerf => (count(&doc, &["successes", "count"], main)?, count(&doc, &["failures", "count"], main)?),
        HarnessKind::Guidellm => {
            let benchmarks = doc["benchmarks"].as_array().with_context(|| format!("{} has no benchmarks list", main.display()))?;
            let mut totals = (0, 0);
            for b in benchmarks {
                totals.0 += count(b, &["metrics", "request_totals", "successful"], main)?;
                totals.1 += count(b, &["metrics", "request_totals", "errored"], main)?
                    + count(b, &["metrics", "request_totals", "incomplete"], main)?;
            }
            totals
        }
        HarnessKind::VllmBenchmark => (count(&doc, &["completed"], main)?, count(&doc, &["failed"], main)?),
    };
    Ok(Collected { files, completed, failed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    fn fixture(name: &str) -> Option<String> {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/harness-outputs").join(name)).ok()
    }

    #[test]
    fn names_and_install_hints() {
        assert_eq!(HarnessKind::parse("inference-perf").unwrap(), HarnessKind::InferencePerf);
        let e = HarnessKind::parse("guidelm").unwrap_err().to_string();
        assert!(e.contains("did you mean 'guidellm'"), "{e}");
        // SAFETY-free env manipulation is not needed: point at a missing file.
        assert!(HarnessKind::VllmBenchmark.install_hint().contains("pip install vllm"));
    }

    #[test]
    fn inference_perf_profile_is_pointed_at_the_endpoint() {
        let cfg = fixture("inference-perf-0.7.0-sanity_random-config.yaml").unwrap_or_else(|| "server: {type: vllm}\nstorage: {}\n".into());
        let dir = tempfile::tempdir().unwrap();
        let run = prepare(
            HarnessKind::InferencePerf,
            load_str(&cfg, "c").unwrap(),
            "/bin/inference-perf".into(),
            "http://127.0.0.1:9000",
            "m",
            dir.path(),
            None,
        )
        .unwrap();
        assert_eq!(run.args[0], "--config_file");
        let written = crate::yaml::load_file(run.config_file.as_ref().unwrap()).unwrap();
        assert_eq!(written.get_path(&["server", "base_url"]).unwrap().as_str(), Some("http://127.0.0.1:9000"));
        assert_eq!(written.get_path(&["storage", "local_storage", "path"]).unwrap().as_str(), Some(dir.path().to_str().unwrap()));
    }

    #[test]
    fn guidellm_and_vllm_command_lines() {
        let dir = tempfile::tempdir().unwrap();
        let scenario =
            fixture("guidellm-0.8.1-sanity_random-scenario.yaml").unwrap_or_else(|| "spec: {backend: {kind: openai_http}}\n".into());
        let run = prepare(
            HarnessKind::Guidellm,
            load_str(&scenario, "s").unwrap(),
            "guidellm".into(),
            "http://h:1",
            "m",
            dir.path(),
            Some(Path::new("/tok")),
        )
        .unwrap();
        assert_eq!(&run.args[..2], ["run", "--scenario"]);
        assert!(run.args.iter().any(|a| a.starts_with("kind=json,path=") && a.ends_with("results.json")));
        let written = crate::yaml::load_file(run.config_file.as_ref().unwrap()).unwrap();
        assert_eq!(written.get_path(&["spec", "backend", "target"]).unwrap().as_str(), Some("http://h:1"));

        let profile =
            load_str("dataset-name: random\nrandom-input-len: 50\nnum-prompts: 20\nignore-eos: true\ndisable-tqdm: false\n", "p").unwrap();
        let run = prepare(HarnessKind::VllmBenchmark, profile, "vllm".into(), "http://h:1", "m", dir.path(), None).unwrap();
        let joined = run.args.join(" ");
        assert!(joined.starts_with("bench serve --base-url http://h:1 --model m --dataset-name random --random-input-len 50 --num-prompts 20 --ignore-eos --save-result"), "{joined}");
        assert!(!joined.contains("disable-tqdm"));
    }

    #[test]
    fn collection_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = collect(HarnessKind::InferencePerf, dir.path()).unwrap_err().to_string();
        assert!(e.contains("summary_lifecycle_metrics.json"), "{e}");
        std::fs::write(dir.path().join("summary_lifecycle_metrics.json"), "{}").unwrap();
        let e = collect(HarnessKind::InferencePerf, dir.path()).unwrap_err().to_string();
        assert!(e.contains("no successes.count count"), "{e}");
        std::fs::write(dir.path().join("summary_lifecycle_metrics.json"), "not json").unwrap();
        assert!(collect(HarnessKind::InferencePerf, dir.path()).unwrap_err().to_string().contains("not valid JSON"));
    }

    /// Real outputs of each tool (../shared/fixtures/harness-outputs) collect with their counts.
    #[test]
    fn collects_real_tool_outputs() {
        let cases = [
            (HarnessKind::InferencePerf, "inference-perf-0.7.0-summary_lifecycle_metrics.json", "summary_lifecycle_metrics.json", 10, 0),
            (HarnessKind::Guidellm, "guidellm-0.8.1-sanity_random-results.json", "results.json", 10, 0),
            (HarnessKind::VllmBenchmark, "vllm-0.33.0-bench-serve-random.json", "vllm-bench.json", 20, 0),
        ];
        for (kind, fixture_name, name, completed, failed) in cases {
            let Some(text) = fixture(fixture_name) else {
                eprintln!("skipping {fixture_name}: ../shared/fixtures is not present");
                continue;
            };
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(name), text).unwrap();
            let c = collect(kind, dir.path()).unwrap();
            assert_eq!((c.completed, c.failed), (completed, failed), "{fixture_name}");
            assert_eq!(c.files, vec![dir.path().join(name)]);
        }
    }
}
