//! External harnesses as local processes: inference-perf, guidellm, `vllm bench serve`
//! (harness name `vllm-benchmark`) and aiperf.
//!
//! Each adapter points the rendered profile at the endpoint, model and results
//! directory, builds the command line with [`super::command`] (an argument vector with
//! absolute paths — never a shell string), and checks that the tool wrote its result
//! files. A missing tool is an error that says
//! how to install it; `LLMD_<TOOL>_BIN` (e.g. `LLMD_INFERENCE_PERF_BIN`) points at a
//! specific executable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::command::{self, CommandLine};
use crate::yaml::{DumpOptions, Node, dump};

/// The harnesses llmd can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HarnessKind {
    /// The native load generator.
    Llmd,
    InferencePerf,
    Guidellm,
    VllmBenchmark,
    Aiperf,
}

impl HarnessKind {
    pub const ALL: [HarnessKind; 5] =
        [HarnessKind::Llmd, HarnessKind::InferencePerf, HarnessKind::Guidellm, HarnessKind::VllmBenchmark, HarnessKind::Aiperf];

    pub fn parse(name: &str) -> Result<HarnessKind> {
        Ok(match name {
            "llmd" | "native" => HarnessKind::Llmd,
            "inference-perf" => HarnessKind::InferencePerf,
            "guidellm" => HarnessKind::Guidellm,
            "vllm-benchmark" | "vllm-bench" => HarnessKind::VllmBenchmark,
            "aiperf" => HarnessKind::Aiperf,
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
            HarnessKind::Aiperf => "aiperf",
        }
    }

    /// The command the tool is started as.
    pub fn program(self) -> &'static str {
        match self {
            HarnessKind::Llmd => "llmd",
            HarnessKind::InferencePerf => "inference-perf",
            HarnessKind::Guidellm => "guidellm",
            HarnessKind::VllmBenchmark => "vllm",
            HarnessKind::Aiperf => "aiperf",
        }
    }

    /// The variable that names a specific executable.
    pub fn env_override(self) -> &'static str {
        match self {
            HarnessKind::Llmd => "LLMD_LLMD_BIN",
            HarnessKind::InferencePerf => "LLMD_INFERENCE_PERF_BIN",
            HarnessKind::Guidellm => "LLMD_GUIDELLM_BIN",
            HarnessKind::VllmBenchmark => "LLMD_VLLM_BIN",
            HarnessKind::Aiperf => "LLMD_AIPERF_BIN",
        }
    }

    /// The Python distribution the tool is installed as (its version is the tool's).
    fn distribution(self) -> Option<&'static str> {
        match self {
            HarnessKind::Llmd => None,
            HarnessKind::InferencePerf => Some("inference_perf"),
            HarnessKind::Guidellm => Some("guidellm"),
            HarnessKind::VllmBenchmark => Some("vllm"),
            HarnessKind::Aiperf => Some("aiperf"),
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
                "python3 -m venv .venv-vllm && .venv-vllm/bin/pip install vllm (large: it brings torch), then put .venv-vllm/bin on PATH or set LLMD_VLLM_BIN"
            }
            HarnessKind::Aiperf => {
                "python3 -m venv .venv-aiperf && .venv-aiperf/bin/pip install aiperf  (needs Python >= 3.10), then put .venv-aiperf/bin on PATH or set LLMD_AIPERF_BIN"
            }
        }
    }

    /// Result files the tool must leave in its results directory.
    pub fn expected_outputs(self) -> &'static [&'static str] {
        match self {
            HarnessKind::Llmd => &["records.jsonl", "stages.json", "report.json"],
            HarnessKind::InferencePerf => &["summary_lifecycle_metrics.json"],
            HarnessKind::Guidellm => &["results.json"],
            HarnessKind::VllmBenchmark => &["vllm-bench.json"],
            HarnessKind::Aiperf => &["profile_export_aiperf.json"],
        }
    }

    /// Where each common treatment knob lives in this harness's profile (the keys a
    /// run treatment overrides); `None` where the tool has no such setting.
    pub fn treatment_keys(self) -> [(&'static str, Option<&'static str>); 4] {
        let [rate, duration, requests, arrival] = match self {
            HarnessKind::Llmd => {
                [Some("load.stages.0.rate"), Some("load.stages.0.duration"), Some("load.stages.0.requests"), Some("load.arrival")]
            }
            HarnessKind::InferencePerf => [Some("load.stages.0.rate"), Some("load.stages.0.duration"), None, Some("load.type")],
            HarnessKind::Guidellm => [Some("spec.profile.rate"), Some("spec.constraints.0.seconds"), None, Some("spec.profile.kind")],
            HarnessKind::VllmBenchmark => [Some("request-rate"), None, Some("num-prompts"), Some("burstiness")],
            HarnessKind::Aiperf => [Some("request-rate"), Some("benchmark-duration"), Some("request-count"), Some("arrival-pattern")],
        };
        [("rate", rate), ("duration", duration), ("requests", requests), ("arrival", arrival)]
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
        if let Some(p) = crate::util::which(self.program()) {
            return Ok(p);
        }
        bail!(
            "harness '{}' needs the `{}` command, which is not installed\n  install: {}",
            self.name(),
            self.program(),
            self.install_hint()
        )
    }

    /// The installed tool's version, read from its Python package metadata without
    /// starting it (starting some of these tools takes seconds): the `*.dist-info` of the
    /// environment the executable belongs to — its own prefix (a venv, `~/.local`,
    /// `/usr/local`), else the prefix of the interpreter its `#!` line names.
    pub fn version(self, exe: &Path) -> Option<String> {
        let dist = self.distribution()?;
        let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
        let prefixes = [exe.parent().and_then(Path::parent).map(Path::to_path_buf), shebang_prefix(&exe)];
        prefixes.into_iter().flatten().find_map(|prefix| dist_version(&prefix, dist))
    }
}

/// The prefix (`<prefix>/bin/python`) of the interpreter a script's `#!` line names.
fn shebang_prefix(script: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::io::Read::read(&mut std::fs::File::open(script).ok()?, &mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?.lines().next()?.strip_prefix("#!")?;
    let interpreter = PathBuf::from(line.split_whitespace().next()?);
    let interpreter = std::fs::canonicalize(&interpreter).unwrap_or(interpreter);
    Some(interpreter.parent()?.parent()?.to_path_buf())
}

/// `<prefix>/lib/python*/site-packages/<dist>-<version>.dist-info` → the version.
fn dist_version(prefix: &Path, dist: &str) -> Option<String> {
    let wanted = format!("{}-", dist.to_ascii_lowercase());
    for lib in std::fs::read_dir(prefix.join("lib")).ok()?.flatten() {
        let Ok(entries) = std::fs::read_dir(lib.path().join("site-packages")) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            if let Some(v) = name.strip_prefix(&wanted).and_then(|r| r.strip_suffix(".dist-info")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// An external tool found on this machine.
#[derive(Clone, Debug)]
pub struct Tool {
    pub kind: HarnessKind,
    pub program: PathBuf,
    pub version: Option<String>,
}

impl Tool {
    /// Finds the tool, or says how to install it.
    pub fn find(kind: HarnessKind) -> Result<Tool> {
        let program = kind.locate()?;
        let version = kind.version(&program);
        Ok(Tool { kind, program, version })
    }

    /// `name@version`: what run keys record of the tool.
    pub fn identity(&self) -> String {
        format!("{}@{}", self.kind.name(), self.version.as_deref().unwrap_or("unknown"))
    }
}

/// The tokenizer an external harness will use, found or explained: the path given
/// (`--tokenizer`/`LLMD_TOKENIZER`: a directory with `tokenizer.json`, or that file), or
/// else the model's snapshot in the Hugging Face cache (the tools run offline).
pub fn find_tokenizer(given: Option<&Path>, model: &str) -> Result<TokenizerSource> {
    if let Some(p) = given {
        let file = if p.is_dir() { p.join("tokenizer.json") } else { p.to_path_buf() };
        if !file.is_file() {
            bail!("the tokenizer {} {}", p.display(), if p.exists() { "has no tokenizer.json" } else { "does not exist" });
        }
        return Ok(TokenizerSource::Path(p.to_path_buf()));
    }
    let dir = hf_hub_cache().join(format!("models--{}", model.replace('/', "--")));
    if dir.join("snapshots").is_dir() {
        return Ok(TokenizerSource::HfCache(dir));
    }
    bail!(
        "external harnesses tokenize prompts on this machine, offline, and there is no tokenizer for model '{model}': \
         not in the Hugging Face cache ({}), and no --tokenizer/LLMD_TOKENIZER was given",
        dir.display()
    )
}

/// Where a tokenizer comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenizerSource {
    Path(PathBuf),
    HfCache(PathBuf),
}

impl TokenizerSource {
    /// What run keys record of the tokenizer: the digest of its `tokenizer.json` (and
    /// `tokenizer_config.json`) for a given path — a copy elsewhere is the same
    /// tokenizer — or the cache directory's name.
    pub fn identity(&self) -> String {
        match self {
            TokenizerSource::Path(p) => {
                let mut h = blake3::Hasher::new();
                let files = if p.is_dir() { vec![p.join("tokenizer.json"), p.join("tokenizer_config.json")] } else { vec![p.clone()] };
                for f in files {
                    h.update(&std::fs::read(&f).unwrap_or_default());
                    h.update(b"\0");
                }
                h.finalize().to_hex().to_string()
            }
            TokenizerSource::HfCache(dir) => format!("hf-cache:{}", dir.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()),
        }
    }
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
/// `~/.cache/huggingface/hub` (the huggingface_hub library's order).
fn hf_hub_cache() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .unwrap_or_else(|| var("HOME").unwrap_or_default().join(".cache/huggingface/hub"))
}

/// A prepared external run.
#[derive(Debug, Clone)]
pub struct ExternalRun {
    pub kind: HarnessKind,
    pub command: CommandLine,
    /// Absolute.
    pub results_dir: PathBuf,
    /// The profile as handed to the tool.
    pub config_file: Option<PathBuf>,
}

/// Points a rendered profile at the endpoint and results directory, writes it, and
/// builds the command line. Every path the tool sees is absolute ([`command`]): the tool
/// runs in its results directory, not in llmd's working directory.
pub fn prepare(
    kind: HarnessKind,
    mut profile: Node,
    program: PathBuf,
    endpoint: &str,
    model: &str,
    results_dir: &Path,
    tokenizer: Option<&Path>,
) -> Result<ExternalRun> {
    let results_dir = command::absolute(results_dir)?;
    std::fs::create_dir_all(&results_dir).with_context(|| format!("cannot create {}", results_dir.display()))?;
    let results = command::absolute_str(&results_dir)?;
    let tokenizer = tokenizer.map(command::absolute_str).transpose()?;
    let mut cmd = CommandLine::new(&program, &results_dir)?;
    // The tools run offline: a Hugging Face model name resolves from the local cache,
    // never from the network.
    cmd.env("HF_HUB_OFFLINE", Some("1")).env("TRANSFORMERS_OFFLINE", Some("1"));
    let write = |doc: &Node, name: &str| -> Result<PathBuf> {
        let path = results_dir.join(name);
        std::fs::write(&path, dump(doc, DumpOptions { sort_keys: false, literal_multiline: true }))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    let config_file = match kind {
        HarnessKind::Llmd => bail!("the native harness runs in-process"),
        HarnessKind::InferencePerf => {
            profile.set_path(&["server", "base_url"], Node::str(endpoint));
            profile.set_path(&["server", "model_name"], Node::str(model));
            profile.set_path(&["storage", "local_storage", "path"], Node::str(results.clone()));
            if let Some(t) = &tokenizer {
                profile.set_path(&["tokenizer", "pretrained_model_name_or_path"], Node::str(t.clone()));
            }
            let cfg = write(&profile, "inference-perf-config.yaml")?;
            cmd.path("--config_file", &cfg)?;
            Some(cfg)
        }
        HarnessKind::Guidellm => {
            profile.set_path(&["spec", "backend", "target"], Node::str(endpoint));
            profile.set_path(&["spec", "backend", "model"], Node::str(model));
            if let Some(t) = &tokenizer {
                profile.set_path(
                    &["spec", "tokenizer"],
                    crate::yaml::map_of([("kind", Node::str("huggingface_auto")), ("model", Node::str(t.clone()))]),
                );
            }
            let cfg = write(&profile, "guidellm-scenario.yaml")?;
            cmd.args(["run"]).path("--scenario", &cfg)?;
            // guidellm's --output is `key=value,…`: the path is one value of it.
            cmd.args(["--output".to_string(), format!("kind=json,path={results}/results.json"), "--disable-console-interactive".into()]);
            Some(cfg)
        }
        HarnessKind::VllmBenchmark => {
            cmd.args(["bench", "serve", "--base-url", endpoint, "--model", model]);
            if let Some(t) = &tokenizer {
                cmd.args(["--tokenizer", t]);
            }
            cmd.flags(&profile, &["base-url", "model", "tokenizer", "result-dir", "result-filename", "save-result"], "vllm-benchmark")?;
            cmd.args(["--save-result"]).path("--result-dir", &results_dir)?.args(["--result-filename", "vllm-bench.json"]);
            None
        }
        HarnessKind::Aiperf => {
            cmd.args(["profile", "--model", model, "--url", endpoint]);
            if let Some(t) = &tokenizer {
                cmd.args(["--tokenizer", t]);
                // aiperf 0.13 in offline mode looks every tokenizer up in the hub cache,
                // a local directory too (and fails); online, it loads an absolute path
                // directly without any network access.
                cmd.env("HF_HUB_OFFLINE", None).env("TRANSFORMERS_OFFLINE", None);
            }
            cmd.flags(&profile, &["model", "url", "tokenizer", "artifact-dir"], "aiperf")?;
            cmd.path("--artifact-dir", &results_dir)?;
            None
        }
    };
    Ok(ExternalRun { kind, command: cmd, results_dir, config_file })
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
pub async fn run(ext: &ExternalRun, log: &Path, timeout: Duration) -> Result<()> {
    let mut log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    // The exact command first, so a failed run can be repeated by hand.
    writeln!(log_file, "# llmd ran: {}", ext.command.shell_line()).with_context(|| format!("cannot write {}", log.display()))?;
    let mut cmd = tokio::process::Command::new(&ext.command.program);
    cmd.args(&ext.command.args)
        .current_dir(&ext.command.cwd)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in &ext.command.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", ext.command.program.display()))?;
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
    // The file the counts come from: the native harness's report, else the tool's one output.
    let main = match kind {
        HarnessKind::Llmd => &results_dir.join("report.json"),
        _ => &files[0],
    };
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
        HarnessKind::Aiperf => {
            // Metrics are `{unit, avg, …}` objects (a count too, as a float); errors are
            // grouped in `error_summary` entries with a `count`.
            let completed = doc["completed_request_count"]["avg"]
                .as_f64()
                .or_else(|| doc["request_count"]["avg"].as_f64())
                .with_context(|| format!("{} has no completed_request_count", main.display()))?;
            let failed: f64 =
                doc["error_summary"].as_array().map(|e| e.iter().filter_map(|x| x["count"].as_f64()).sum()).unwrap_or_default();
            (completed.round() as u64, failed.round() as u64)
        }
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
        assert_eq!(run.command.display_args()[0], "--config_file");
        assert_eq!(run.command.cwd, dir.path());
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
        let args = run.command.display_args();
        assert_eq!(&args[..2], ["run", "--scenario"]);
        assert!(args.iter().any(|a| a.starts_with("kind=json,path=/") && a.ends_with("results.json")), "{args:?}");
        let written = crate::yaml::load_file(run.config_file.as_ref().unwrap()).unwrap();
        assert_eq!(written.get_path(&["spec", "backend", "target"]).unwrap().as_str(), Some("http://h:1"));

        let profile =
            load_str("dataset-name: random\nrandom-input-len: 50\nnum-prompts: 20\nignore-eos: true\ndisable-tqdm: false\n", "p").unwrap();
        let run = prepare(HarnessKind::VllmBenchmark, profile, "vllm".into(), "http://h:1", "m", dir.path(), None).unwrap();
        let joined = run.command.display_args().join(" ");
        assert!(joined.starts_with("bench serve --base-url http://h:1 --model m --dataset-name random --random-input-len 50 --num-prompts 20 --ignore-eos --save-result"), "{joined}");
        assert!(!joined.contains("disable-tqdm"));

        let profile = load_str("endpoint-type: completions\nstreaming: true\nrequest-rate: 2\nartifact-dir: ignored\n", "p").unwrap();
        let run = prepare(HarnessKind::Aiperf, profile, "aiperf".into(), "http://h:1", "m", dir.path(), Some(Path::new("/tok"))).unwrap();
        let joined = run.command.display_args().join(" ");
        assert_eq!(
            joined,
            format!(
                "profile --model m --url http://h:1 --tokenizer /tok --endpoint-type completions --streaming --request-rate 2 --artifact-dir {}",
                dir.path().display()
            )
        );
    }

    #[test]
    fn tool_versions_come_from_package_metadata() {
        let venv = tempfile::tempdir().unwrap();
        let site = venv.path().join("lib/python3.12/site-packages");
        std::fs::create_dir_all(site.join("inference_perf-0.7.0.dist-info")).unwrap();
        std::fs::create_dir_all(venv.path().join("bin")).unwrap();
        let exe = venv.path().join("bin/inference-perf");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        assert_eq!(HarnessKind::InferencePerf.version(&exe).as_deref(), Some("0.7.0"));
        // A script elsewhere whose #! names the venv's interpreter (pipx-style).
        std::fs::write(venv.path().join("bin/python"), "").unwrap();
        let other = tempfile::tempdir().unwrap();
        let script = other.path().join("inference-perf");
        std::fs::write(&script, format!("#!{}/bin/python\nimport x\n", venv.path().display())).unwrap();
        assert_eq!(HarnessKind::InferencePerf.version(&script).as_deref(), Some("0.7.0"));
        assert_eq!(HarnessKind::Guidellm.version(&exe), None);
        let tool = Tool { kind: HarnessKind::InferencePerf, program: exe.clone(), version: Some("0.7.0".into()) };
        assert_eq!(tool.identity(), "inference-perf@0.7.0");
    }

    #[test]
    fn tokenizers_are_found_or_explained() {
        let dir = tempfile::tempdir().unwrap();
        let e = find_tokenizer(Some(dir.path()), "m").unwrap_err().to_string();
        assert!(e.contains("has no tokenizer.json"), "{e}");
        let e = find_tokenizer(Some(&dir.path().join("nope")), "m").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let found = find_tokenizer(Some(dir.path()), "m").unwrap();
        assert_eq!(found, TokenizerSource::Path(dir.path().to_path_buf()));
        // A copy elsewhere is the same tokenizer.
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join("tokenizer.json"), "{}").unwrap();
        assert_eq!(found.identity(), TokenizerSource::Path(copy.path().to_path_buf()).identity());
        std::fs::write(copy.path().join("tokenizer.json"), "{\"v\": 2}").unwrap();
        assert_ne!(found.identity(), TokenizerSource::Path(copy.path().to_path_buf()).identity());
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
            (HarnessKind::Aiperf, "aiperf-0.13.0-profile_export_aiperf.json", "profile_export_aiperf.json", 20, 0),
        ];
        for (kind, fixture_name, name, completed, failed) in cases {
            let Some(text) = fixture(fixture_name) else {
                say!("skipping {fixture_name}: ../shared/fixtures is not present");
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
