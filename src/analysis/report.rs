//! Benchmark reports from converted results: v0.2 (and v0.2.1) and v0.1 documents, their
//! file names, and `llmd analyze` on a results directory.
//!
//! Identity is content-derived so re-analysing the same files gives the same report:
//! `run.uid` is a digest of the source file, `run.eid` of the experiment id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::br::{
    Accelerator, Component, ComponentMetadata, InferenceEngine, Load, LoadMetadata, LoadStandardized, LoadV01, MetricsV01, Model, Native,
    Parallelism, ReportV01, ReportV02, RequestPerformance, RequestsV01, Results, Run, RunTime, Scenario, ScenarioV01, SequenceLength,
    Statistics, ThroughputV01, TimeV01, iso_duration, rfc3339,
};
use super::convert::Converted;
use crate::yaml::{DumpOptions, Node, dump};

/// What a results directory says about the run beyond the harness's numbers.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// Experiment id (`run_metadata.yaml`'s `eid`).
    pub eid: Option<String>,
    pub description: Option<String>,
    pub model: Option<String>,
    pub start_unix: Option<f64>,
    pub end_unix: Option<f64>,
    pub treatment: Option<String>,
    /// The stack that served the run, when known.
    pub stack: Option<StackInfo>,
    /// The workload profile the harness ran (as rendered), when still on disk.
    pub profile: Option<Value>,
    /// What may have run beside the measurement (`exclusive`, `per-stack`).
    pub isolation: Option<String>,
}

/// The model server of a stack, as the rendered config describes it.
#[derive(Clone, Debug, Default)]
pub struct StackInfo {
    pub label: String,
    pub model: String,
    pub tool: String,
    pub tool_version: String,
    pub role: String,
    pub replicas: u64,
    pub accelerator: String,
    pub accelerator_count: u64,
    pub tp: u64,
    pub dp: u64,
    pub args: serde_json::Map<String, Value>,
    /// Digest of the stack's config.
    pub cfg_id: String,
}

impl RunContext {
    /// Reads `run_metadata.yaml` in `dir` when there is one.
    pub fn from_dir(dir: &Path) -> RunContext {
        let Ok(text) = std::fs::read_to_string(dir.join("run_metadata.yaml")) else { return RunContext::default() };
        let Ok(doc) = crate::yaml::load_str(&text, "run_metadata.yaml") else { return RunContext::default() };
        let s = |k: &str| doc.get_path(&[k]).map(crate::yaml::str_node).filter(|s| !s.is_empty());
        let f = |k: &str| s(k).and_then(|v| v.parse::<f64>().ok());
        RunContext {
            eid: s("eid"),
            description: s("description"),
            model: s("model"),
            start_unix: f("start"),
            end_unix: f("stop"),
            treatment: s("treatment"),
            isolation: s("isolation"),
            stack: None,
            profile: s("profile")
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| crate::yaml::load_str(&t, "profile").ok())
                .map(|n| n.to_json()),
        }
    }
}

impl StackInfo {
    /// From a stack's merged config (`config.yaml` of its plan).
    pub fn from_config(label: &str, config: &Node) -> StackInfo {
        let s = |path: &[&str]| config.get_path(path).map(crate::yaml::str_node).filter(|s| !s.is_empty());
        let n = |path: &[&str]| s(path).and_then(|v| v.parse::<u64>().ok());
        let standalone = config.get_path(&["standalone", "enabled"]).is_some_and(Node::is_truthy);
        let section = if standalone { "standalone" } else { "decode" };
        let sim = s(&["local", "server"]).is_none_or(|v| v == "sim");
        let mut args = serde_json::Map::new();
        if let Some(flags) = config.get_path(&["local", "sim"]).filter(|_| sim)
            && let Value::Object(m) = flags.to_json()
        {
            args = m;
        }
        StackInfo {
            label: label.into(),
            model: s(&["model", "name"]).unwrap_or_default(),
            tool: if sim { "llmd-sim".into() } else { "vllm".into() },
            tool_version: if sim {
                env!("CARGO_PKG_VERSION").into()
            } else {
                s(&["images", "vllm", "tag"]).unwrap_or_else(|| "unknown".into())
            },
            role: if standalone { "replica".into() } else { "decode".into() },
            replicas: n(&[section, "replicas"]).unwrap_or(1),
            accelerator: s(&["accelerator", "type"]).unwrap_or_else(|| if sim { "none (simulated)".into() } else { "unknown".into() }),
            accelerator_count: n(&[section, "parallelism", "tensor"]).unwrap_or(1),
            tp: n(&[section, "parallelism", "tensor"]).unwrap_or(1),
            dp: n(&[section, "parallelism", "data"]).unwrap_or(1),
            args,
            cfg_id: crate::store::digest(crate::yaml::dump(config, DumpOptions { sort_keys: true, literal_multiline: false }).as_bytes())
                [..32]
                .to_string(),
        }
    }
}

fn short_digest(bytes: &[u8]) -> String {
    crate::store::digest(bytes)[..32].to_string()
}

/// The BR v0.2 document for one converted load; `version` is `0.2` or `0.2.1`.
pub fn report_v02(c: &Converted, cx: &RunContext, version: &str) -> ReportV02 {
    // Streamed: a native records file can be hundreds of MB.
    let mut hasher = c.source_hash.clone().unwrap_or_else(|| {
        let mut h = blake3::Hasher::new();
        if let Ok(f) = std::fs::File::open(&c.source_file) {
            let _ = h.update_reader(std::io::BufReader::with_capacity(1 << 20, f));
        }
        h
    });
    hasher.update(format!("#{:?}", c.stage).as_bytes());
    let uid = hasher.finalize().to_hex()[..32].to_string();
    let start = c.start_unix.or(cx.start_unix);
    let end = c.end_unix.or(cx.end_unix);
    let duration = c.duration_s.or_else(|| start.zip(end).map(|(a, b)| b - a));
    let a = &c.aggregate;
    let seq = |s: &Option<Statistics>| {
        s.as_ref().map(|s| SequenceLength {
            distribution: if s.stddev.unwrap_or(0.0) == 0.0 && s.min == s.max { "fixed".into() } else { "other".into() },
            value: s.mean,
            std_dev: s.stddev,
            min: s.min.map(|x| x.max(0.0) as u64),
            max: s.max.map(|x| (x as u64).max(1)),
        })
    };
    let stack = cx.stack.as_ref().map(|k| {
        vec![Component {
            metadata: ComponentMetadata {
                schema_version: "0.0.1".into(),
                label: k.label.clone(),
                cfg_id: k.cfg_id.clone(),
                description: None,
            },
            standardized: InferenceEngine {
                kind: "inference_engine".into(),
                tool: k.tool.clone(),
                tool_version: k.tool_version.clone(),
                role: k.role.clone(),
                replicas: k.replicas,
                model: Model { name: k.model.clone() },
                accelerator: Accelerator {
                    model: k.accelerator.clone(),
                    count: k.accelerator_count,
                    parallelism: Parallelism { tp: k.tp, pp: 1, dp: k.dp, dp_local: k.dp, ep: 1, workers: 1 },
                },
            },
            native: Native { args: Some(k.args.clone().into_iter().collect()), envars: None, config: None },
        }]
    });
    ReportV02 {
        version: version.into(),
        run: Run {
            uid,
            eid: cx.eid.as_ref().map(|e| short_digest(e.as_bytes())),
            cid: None,
            pid: None,
            time: Some(RunTime { start: start.map(rfc3339), end: end.map(rfc3339), duration: duration.map(iso_duration) }),
            user: None,
            description: cx.description.clone(),
            keywords: keywords(c, cx),
        },
        scenario: Some(Scenario {
            stack,
            load: Some(Load {
                metadata: LoadMetadata {
                    schema_version: "0.0.1".into(),
                    cfg_id: None,
                    description: (!c.notes.is_empty()).then(|| c.notes.join(" ")),
                },
                standardized: LoadStandardized {
                    tool: c.tool.clone(),
                    tool_version: if c.tool_version.is_empty() { "unknown".into() } else { c.tool_version.clone() },
                    parallelism: None,
                    source: "random".into(),
                    stage: c.stage,
                    input_seq_len: seq(&a.requests.input_length).unwrap_or(SequenceLength {
                        distribution: "other".into(),
                        value: 0.0,
                        ..Default::default()
                    }),
                    output_seq_len: seq(&a.requests.output_length),
                    // The tool's own figure, else the profile's first stage (native harness).
                    rate_qps: c
                        .rate_qps
                        .or_else(|| cx.profile.as_ref().and_then(|p| p["load"]["stages"][0]["rate"].as_f64()))
                        .filter(|r| *r > 0.0),
                    concurrency: c.concurrency.filter(|c| *c >= 1),
                },
                native: Native { args: None, envars: None, config: cx.profile.clone() },
            }),
        }),
        results: Results {
            request_performance: Some(RequestPerformance {
                aggregate: a.clone(),
                // Window offsets are relative to the first send; without a wall-clock
                // start there is no timestamp to give them.
                time_series: c.windows.as_ref().zip(start).map(|(w, t0)| w.report(t0)),
            }),
            observability: None,
        },
    }
}

/// The report's run keywords: the tool and treatment, and `isolation=<mode>` so a reader
/// knows what else may have been running.
fn keywords(c: &Converted, cx: &RunContext) -> Option<Vec<String>> {
    let mut k: Vec<String> = cx.treatment.as_ref().map(|t| vec![c.tool.clone(), t.clone()]).unwrap_or_default();
    if let Some(i) = &cx.isolation {
        k.push(format!("isolation={i}"));
    }
    (!k.is_empty()).then_some(k)
}

/// The BR v0.1 document for one converted load.
pub fn report_v01(c: &Converted, cx: &RunContext) -> ReportV01 {
    let a = &c.aggregate;
    let empty = Statistics { units: "count".into(), ..Default::default() };
    let rate = |s: &Option<Statistics>| s.as_ref().map(|s| s.mean);
    // v0.1's generator list is closed; tools it does not name are reported as `nop`
    // with the real tool in `metadata`.
    let name = match c.tool.as_str() {
        t @ ("guidellm" | "inference-perf" | "vllm-benchmark") => t.to_string(),
        _ => "nop".into(),
    };
    ReportV01 {
        version: "0.1".into(),
        scenario: ScenarioV01 {
            description: cx.description.clone(),
            model: Model {
                name: cx.model.clone().or_else(|| cx.stack.as_ref().map(|s| s.model.clone())).unwrap_or_else(|| "unknown".into()),
            },
            load: LoadV01 {
                name,
                args: None,
                metadata: Some(if c.notes.is_empty() {
                    serde_json::json!({"tool": c.tool, "tool_version": c.tool_version, "stage": c.stage})
                } else {
                    serde_json::json!({"tool": c.tool, "tool_version": c.tool_version, "stage": c.stage, "notes": c.notes})
                }),
            },
        },
        metrics: MetricsV01 {
            time: TimeV01 {
                duration: c.duration_s.unwrap_or(0.0),
                start: c.start_unix.or(cx.start_unix),
                stop: c.end_unix.or(cx.end_unix),
            },
            requests: RequestsV01 {
                total: a.requests.total,
                failures: a.requests.failures,
                incomplete: a.requests.incomplete,
                input_length: a.requests.input_length.clone().unwrap_or_else(|| empty.clone()),
                output_length: a.requests.output_length.clone().unwrap_or(empty),
            },
            latency: super::br::Latency {
                // v0.1 requires TTFT; a run with no successful request reports zeros.
                time_to_first_token: Some(a.latency.time_to_first_token.clone().unwrap_or_else(|| Statistics::value("s", 0.0))),
                ..a.latency.clone()
            },
            throughput: ThroughputV01 {
                input_tokens_per_sec: rate(&a.throughput.input_token_rate),
                output_tokens_per_sec: rate(&a.throughput.output_token_rate),
                total_tokens_per_sec: rate(&a.throughput.total_token_rate).unwrap_or(0.0),
                requests_per_sec: rate(&a.throughput.request_rate),
            },
        },
    }
}

/// YAML text of any serializable report (field order kept).
pub fn to_yaml<T: serde::Serialize>(doc: &T) -> Result<String> {
    let json = serde_json::to_value(doc)?;
    Ok(dump(&Node::from_json(&json), DumpOptions { sort_keys: false, literal_multiline: false }))
}

/// The reports written for one results directory.
#[derive(Clone, Debug)]
pub struct Analyzed {
    pub dir: PathBuf,
    pub harness: String,
    pub converted: Vec<Converted>,
    pub reports: Vec<ReportV02>,
    pub files: Vec<PathBuf>,
    /// Server metrics over the run, when `/metrics` was scraped.
    pub server: BTreeMap<String, Vec<(f64, f64)>>,
}

/// Converts a results directory and writes its reports beside the results:
/// `benchmark_report_v0.2,_<source>.{yaml,json}` and `benchmark_report,_<source>.yaml` (v0.1).
pub fn analyze_dir(dir: &Path, harness: Option<&str>, stack: Option<StackInfo>) -> Result<Analyzed> {
    analyze_dir_with(dir, harness, stack, true)
}

/// [`analyze_dir`]; `durable: false` skips fsyncs (for scratch copies the build caches).
pub fn analyze_dir_with(dir: &Path, harness: Option<&str>, stack: Option<StackInfo>, durable: bool) -> Result<Analyzed> {
    let harness = match harness {
        Some(h) => h.to_string(),
        None => super::convert::detect(dir)?.to_string(),
    };
    let converted = super::convert::convert_dir(dir, &harness)?;
    let mut cx = RunContext::from_dir(dir);
    cx.stack = stack;
    let (observability, server) = match super::metrics::observability(dir)? {
        Some((o, s)) => (Some(o), s),
        None => (None, BTreeMap::new()),
    };
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for c in &converted {
        let stem = c.source_file.file_stem().and_then(|s| s.to_str()).unwrap_or("results").to_string();
        let stem = match c.stage {
            Some(s) if c.tool == "guidellm" => format!("{stem}_{s}"),
            _ => stem,
        };
        let mut v02 = report_v02(c, &cx, "0.2");
        v02.results.observability = observability.clone();
        let v01 = report_v01(c, &cx);
        for (name, text) in [
            (format!("benchmark_report_v0.2,_{stem}.yaml"), to_yaml(&v02)?),
            (format!("benchmark_report_v0.2,_{stem}.json"), serde_json::to_string_pretty(&v02)?),
            (format!("benchmark_report,_{stem}.yaml"), to_yaml(&v01)?),
        ] {
            let path = dir.join(name);
            let written = if durable {
                crate::util::fs::write_atomic(&path, text.as_bytes())
            } else {
                crate::util::fs::write_atomic_unsynced(&path, text.as_bytes())
            };
            written.with_context(|| format!("cannot write {}", path.display()))?;
            files.push(path);
        }
        reports.push(v02);
    }
    super::native::rss_note("reports written");
    Ok(Analyzed { dir: dir.to_path_buf(), harness, converted, reports, files, server })
}

/// Outcome of analysing several results directories.
pub struct Batch {
    pub analyzed: Vec<Analyzed>,
    /// Directories that could not be analysed, with the error (naming the file).
    pub failed: Vec<(PathBuf, anyhow::Error)>,
    /// The comparison CSV, when at least one directory was analysed.
    pub comparison: Option<PathBuf>,
    /// `report.html` and the plots in it.
    pub html: Option<PathBuf>,
    pub plots: Vec<PathBuf>,
}

/// Result directories under `dir`: itself when it holds harness output, else its
/// subdirectories (a workspace's `results/`).
pub fn result_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        anyhow::bail!("{}: is a file; pass the directory that holds the harness output", dir.display());
    }
    if !dir.is_dir() {
        anyhow::bail!("{}: no such directory", dir.display());
    }
    let direct = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.flatten().any(|e| e.path().is_file());
    if direct {
        return Ok(vec![dir.to_path_buf()]);
    }
    // Skips the comparison a previous `llmd analyze` wrote here.
    let mut subs: Vec<PathBuf> =
        std::fs::read_dir(dir)?.flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.ends_with("cross-treatment-comparison")).collect();
    subs.sort();
    if subs.is_empty() {
        anyhow::bail!("{}: empty; expected a harness's results or a folder of result directories", dir.display());
    }
    Ok(subs)
}

/// Analyses every directory (one failing does not stop the others) and writes
/// `<out>/treatment_comparison.csv` across all reports produced.
pub fn analyze_many(dirs: &[PathBuf], harness: Option<&str>, out: &Path) -> Batch {
    let mut batch = Batch { analyzed: Vec::new(), failed: Vec::new(), comparison: None, html: None, plots: Vec::new() };
    for d in dirs {
        match analyze_dir(d, harness, None) {
            Ok(a) => batch.analyzed.push(a),
            Err(e) => batch.failed.push((d.clone(), e)),
        }
    }
    let mut rows = Vec::new();
    let mut distributions = Vec::new();
    for a in &batch.analyzed {
        let label = a.dir.file_name().and_then(|n| n.to_str()).unwrap_or("results").to_string();
        for (c, r) in a.converted.iter().zip(&a.reports) {
            let treatment = match c.stage {
                Some(s) if a.converted.len() > 1 => format!("{label}/stage-{s}"),
                _ => label.clone(),
            };
            rows.push(super::comparison::Row { treatment, source_file: c.source_file.display().to_string(), report: r });
            let mut d = super::plots::Distributions::of(c);
            d.server = a.server.clone();
            distributions.push(d);
        }
    }
    if !rows.is_empty() {
        let path = out.join("treatment_comparison.csv");
        match super::comparison::csv(&rows).and_then(|text| crate::util::fs::write_atomic(&path, text.as_bytes())) {
            Ok(()) => batch.comparison = Some(path),
            Err(e) => batch.failed.push((path, e)),
        }
        let plot_rows: Vec<super::plots::PlotRow> = rows
            .iter()
            .zip(distributions)
            .map(|(r, d)| super::plots::PlotRow { label: r.treatment.clone(), values: super::comparison::row_numbers(r), distributions: d })
            .collect();
        let page = super::plots::render_all(&out.join("plots"), &plot_rows).and_then(|plots| {
            super::native::rss_note("plots drawn");
            let html = super::html::render("llmd analysis", &rows, &plots, &[])?;
            let path = out.join("report.html");
            crate::util::fs::write_atomic(&path, html.as_bytes())?;
            Ok((path, plots))
        });
        match page {
            Ok((path, plots)) => {
                batch.html = Some(path);
                batch.plots = plots;
            }
            Err(e) => batch.failed.push((out.to_path_buf(), e)),
        }
    }
    batch
}
