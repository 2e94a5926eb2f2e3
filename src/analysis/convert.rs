//! Converters from each harness's own output to benchmark-report aggregates.
//!
//! | harness | file | what is read |
//! |---|---|---|
//! | `llmd` | `records.jsonl` | per-request records; every statistic computed here |
//! | `inference-perf` | `stage_N_lifecycle_metrics.json` (else `summary_lifecycle_metrics.json`) | its summary statistics, one report per stage |
//! | `guidellm` | `results.json` / `benchmarks.json` | each benchmark's `successful` distributions |
//! | `vllm-benchmark` | the `vllm bench serve --save-result` JSON | `mean/median/std/pNN_*_ms` |
//! | `aiperf` | `profile_export_aiperf.json` | each metric's `avg/std/min/max/pNN` |
//!
//! Numbers a tool reports are carried over as it reports them (only ms → s scaling):
//! a converted report never disagrees with the tool. Metric names map by definition, not
//! by name (`reference/harness-and-sim.md` §5a): BR `time_per_output_token` is
//! (E2E − TTFT)/(n − 1) — guidellm's and aiperf's "ITL"; `inter_token_latency` is the
//! pooled chunk gap — aiperf's "ICL"; `normalized_time_per_output_token` is E2E/n —
//! guidellm's "TPOT".

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::br::{Aggregate, Latency, Requests, Statistics, Throughput};

/// One measured load (a stage, a benchmark) as read from a harness's output.
#[derive(Clone, Debug, Default)]
pub struct Converted {
    /// `llmd`, `inference-perf`, `guidellm`, `vllm-benchmark`, `aiperf`.
    pub tool: String,
    pub tool_version: String,
    /// The file the numbers came from.
    pub source_file: PathBuf,
    /// Stage or benchmark index within the file.
    pub stage: Option<u64>,
    pub aggregate: Aggregate,
    pub duration_s: Option<f64>,
    pub start_unix: Option<f64>,
    pub end_unix: Option<f64>,
    /// Offered load, when the tool says.
    pub rate_qps: Option<f64>,
    pub concurrency: Option<u64>,
    /// Per-request samples (seconds) for distribution plots, when the tool keeps them.
    pub samples: Samples,
    /// Figures per time window, when the tool keeps per-request times.
    pub windows: Option<super::timeseries::Windows>,
    /// What a reader must know about these figures (a definition the tool could not
    /// supply, …): written into the report's load metadata.
    pub notes: Vec<String>,
    /// blake3 of the whole source file when the converter already read it all (the
    /// report's `run.uid` needs it; hashing 500 MB again would cost a quarter second).
    pub source_hash: Option<blake3::Hasher>,
}

/// Per-request values, in seconds (ITL: every pooled gap).
#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub ttft: Vec<f64>,
    pub tpot: Vec<f64>,
    pub itl: Vec<f64>,
    pub e2e: Vec<f64>,
}

/// The harnesses `llmd analyze` knows.
pub const HARNESSES: [&str; 5] = ["llmd", "inference-perf", "guidellm", "vllm-benchmark", "aiperf"];

/// A JSON result file (or the same document as YAML, as some tools and tests keep it).
fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        let doc = crate::yaml::load_str(&String::from_utf8_lossy(&bytes), &path.display().to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{} is not valid YAML (truncated or corrupt?)", path.display()))?;
        return Ok(doc.to_json());
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON (truncated or corrupt?)", path.display()))
}

/// Files of a results directory and of its subdirectories (tools such as inference-perf
/// may write into a `reports-*/` folder), sorted; reports llmd wrote are skipped.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() && depth < 2 {
                todo.push((p, depth + 1));
            } else if p.is_file() && !name_of(&p).starts_with("benchmark_report") {
                v.push(p);
            }
        }
    }
    v.sort();
    Ok(v)
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// Which harness wrote `dir`, from its files.
pub fn detect(dir: &Path) -> Result<&'static str> {
    let files = files_in(dir)?;
    let has = |pred: &dyn Fn(&str) -> bool| files.iter().any(|p| pred(name_of(p)));
    if has(&|n| n == "records.jsonl") {
        return Ok("llmd");
    }
    if has(&|n| n.ends_with("lifecycle_metrics.json") && !n.starts_with("per_request")) {
        return Ok("inference-perf");
    }
    if has(&|n| n.ends_with("profile_export_aiperf.json")) {
        return Ok("aiperf");
    }
    // Peek at JSON results: guidellm has `benchmarks`, vllm bench `mean_ttft_ms`.
    if find_json(&files, "\"benchmarks\"").is_some() {
        return Ok("guidellm");
    }
    if find_json(&files, "\"mean_ttft_ms\"").is_some() {
        return Ok("vllm-benchmark");
    }
    bail!(
        "{}: no harness output found (looked for records.jsonl, *lifecycle_metrics.json, guidellm results JSON, vllm bench JSON, profile_export_aiperf.json); pass --harness NAME",
        dir.display()
    )
}

/// Reads every load measured in `dir` by `harness`.
pub fn convert_dir(dir: &Path, harness: &str) -> Result<Vec<Converted>> {
    let files = files_in(dir)?;
    let find = |pred: &dyn Fn(&str) -> bool, what: &str| -> Result<PathBuf> {
        files.iter().find(|p| pred(name_of(p))).cloned().with_context(|| format!("{}: no {what} in the {harness} results", dir.display()))
    };
    match harness {
        "llmd" | "native" => Ok(vec![llmd(&find(&|n| n == "records.jsonl", "records.jsonl")?)?]),
        "inference-perf" => {
            let stages: Vec<&PathBuf> =
                files.iter().filter(|p| name_of(p).starts_with("stage_") && name_of(p).ends_with("_lifecycle_metrics.json")).collect();
            let per_request = files.iter().find(|p| name_of(p) == "per_request_lifecycle_metrics.json");
            let mut out = Vec::new();
            if stages.is_empty() {
                out.push(inference_perf(
                    &find(&|n| n.ends_with("summary_lifecycle_metrics.json"), "summary_lifecycle_metrics.json")?,
                    None,
                )?);
            } else {
                for p in stages {
                    let stage = name_of(p).trim_start_matches("stage_").split('_').next().and_then(|s| s.parse().ok());
                    out.push(inference_perf(p, stage)?);
                }
            }
            if let Some(p) = per_request {
                let (samples, requests) = inference_perf_requests(p)?;
                // The per-request file covers every stage; its windows describe the run
                // only when there is one.
                let windows = if out.len() == 1 { super::timeseries::windows_of(&requests) } else { None };
                for c in &mut out {
                    c.samples = samples.clone();
                    c.windows = windows.clone();
                }
            }
            Ok(out)
        }
        "guidellm" => {
            let p = find_json(&files, "\"benchmarks\"").with_context(|| format!("{}: no guidellm results JSON", dir.display()))?;
            guidellm_all(&p)
        }
        "vllm-benchmark" | "vllm" => {
            let p = find_json(&files, "\"mean_ttft_ms\"").with_context(|| format!("{}: no vllm bench result JSON", dir.display()))?;
            Ok(vec![vllm(&p)?])
        }
        "aiperf" => Ok(vec![aiperf(&find(&|n| n.ends_with("profile_export_aiperf.json"), "profile_export_aiperf.json")?)?]),
        other => bail!("unknown harness '{other}' (known: {})", HARNESSES.join(", ")),
    }
}

/// The first JSON file whose text contains `marker`.
fn find_json(files: &[PathBuf], marker: &str) -> Option<PathBuf> {
    files.iter().filter(|p| name_of(p).ends_with(".json")).find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(marker))).cloned()
}

pub use super::native::{llmd, llmd_from_records};

// ---- inference-perf

/// inference-perf's statistics object (`mean, min, max, p0.1, …, median, …, p99.9`).
fn ip_stats(v: &Value, units: &str) -> Option<Statistics> {
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    Statistics::from_fields(units, |field| match field {
        "mode" => None,
        "stddev" => f("std_dev").or(f("stddev")),
        "p0p1" => f("p0.1"),
        "p50" => f("median").or(f("p50")),
        "p99p9" => f("p99.9"),
        other => f(other),
    })
}

pub fn inference_perf(path: &Path, stage: Option<u64>) -> Result<Converted> {
    let v = read_json(path)?;
    let ok = v
        .get("successes")
        .filter(|s| s.is_object())
        .with_context(|| format!("{}: no `successes` section (not an inference-perf lifecycle report?)", path.display()))?;
    let lat = &ok["latency"];
    let count = |x: &Value| x["count"].as_u64().unwrap_or(0);
    let tp = &ok["throughput"];
    let rate = |k: &str, units: &str| tp[k].as_f64().map(|x| Statistics::value(units, x));
    let load = &v["load_summary"];
    Ok(Converted {
        tool: "inference-perf".into(),
        tool_version: String::new(),
        source_file: path.to_path_buf(),
        stage,
        aggregate: Aggregate {
            requests: Requests {
                total: count(ok) + count(&v["failures"]),
                failures: count(&v["failures"]),
                incomplete: None,
                input_length: ip_stats(&ok["prompt_tokens"], "count").or_else(|| ip_stats(&ok["prompt_len"], "count")),
                output_length: ip_stats(&ok["output_len"], "count").or_else(|| ip_stats(&ok["output_tokens"], "count")),
            },
            latency: Latency {
                time_to_first_token: ip_stats(&lat["time_to_first_token"], "s"),
                normalized_time_per_output_token: ip_stats(&lat["normalized_time_per_output_token"], "s/token"),
                time_per_output_token: ip_stats(&lat["time_per_output_token"], "s/token"),
                inter_token_latency: ip_stats(&lat["inter_token_latency"], "s"),
                request_latency: ip_stats(&lat["request_latency"], "s"),
            },
            throughput: Throughput {
                input_token_rate: rate("input_tokens_per_sec", "tokens/s"),
                output_token_rate: rate("output_tokens_per_sec", "tokens/s"),
                total_token_rate: rate("total_tokens_per_sec", "tokens/s"),
                request_rate: rate("requests_per_sec", "queries/s"),
            },
        },
        duration_s: v["benchmark_time_seconds"].as_f64(),
        rate_qps: load["requested_rate"].as_f64().or(load["achieved_rate"].as_f64()),
        ..Default::default()
    })
}

/// Per-request samples from `per_request_lifecycle_metrics.json` (successful requests).
/// inference-perf's `per_request_lifecycle_metrics.json`: the successful requests'
/// samples, and their times for the report's windows.
fn inference_perf_requests(path: &Path) -> Result<(Samples, Vec<super::timeseries::RequestTimes>)> {
    let v = read_json(path)?;
    let mut s = Samples::default();
    let mut requests = Vec::new();
    for r in v.as_array().with_context(|| format!("{}: expected a list of requests", path.display()))? {
        if !r["error"].is_null() {
            continue;
        }
        let (Some(start), Some(end)) = (r["start_time"].as_f64(), r["end_time"].as_f64()) else { continue };
        s.e2e.push(end - start);
        let info = &r["info"]["response_metrics"];
        let times: Vec<f64> =
            info["output_token_times"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        if let Some(first) = times.first() {
            s.ttft.push(first - start);
            if times.len() > 1 {
                s.tpot.push((times[times.len() - 1] - first) / (times.len() - 1) as f64);
            }
            s.itl.extend(times.windows(2).map(|w| w[1] - w[0]));
        }
        requests.push(super::timeseries::RequestTimes {
            start,
            end,
            input_tokens: r["info"]["request_metrics"]["text"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: info["output_tokens"].as_u64().unwrap_or(times.len() as u64),
            token_times: times,
        });
    }
    Ok((s, requests))
}

// ---- guidellm

/// guidellm's distribution summary (`mean, median, mode, std_dev, min, max, percentiles{p001…p999}`).
fn gl_stats(v: &Value, units: &str) -> Option<Statistics> {
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let p = |k: &str| v["percentiles"].get(k).and_then(Value::as_f64);
    Statistics::from_fields(units, |field| match field {
        "mean" | "mode" | "min" | "max" => f(field),
        "stddev" => f("std_dev"),
        "p0p1" => p("p001"),
        "p1" => p("p01"),
        "p5" => p("p05"),
        "p50" => f("median").or(p("p50")),
        "p99p9" => p("p999"),
        other => p(other),
    })
}

/// Why a guidellm report's `inter_token_latency` has a mean and no percentiles.
pub const GUIDELLM_ITL_NOTE: &str = "inter_token_latency: mean only. The field is defined over pooled gaps between streamed chunks; guidellm records per-request ITL ((last - first token)/(n - 1)) and no chunk times, so only its token-weighted mean equals the pooled mean; its per-request percentiles are in time_per_output_token.";

/// One [`Converted`] per benchmark in a guidellm report.
pub fn guidellm_all(path: &Path) -> Result<Vec<Converted>> {
    let v = read_json(path)?;
    let benchmarks =
        v["benchmarks"].as_array().with_context(|| format!("{}: no `benchmarks` list (not a guidellm report?)", path.display()))?;
    let version = v["metadata"]["guidellm_version"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for (i, b) in benchmarks.iter().enumerate() {
        let m = &b["metrics"];
        let ok = |name: &str| &m[name]["successful"];
        let totals = &m["request_totals"];
        let strategy = &b["config"]["strategy"];
        let ms = |name: &str, units: &str| gl_stats(ok(name), "ms").map(|s| s.scaled(1e-3, units));
        out.push(Converted {
            tool: "guidellm".into(),
            tool_version: version.clone(),
            source_file: path.to_path_buf(),
            stage: Some(i as u64),
            aggregate: Aggregate {
                requests: Requests {
                    total: totals["total"].as_u64().unwrap_or(0),
                    failures: totals["errored"].as_u64().unwrap_or(0),
                    incomplete: totals["incomplete"].as_u64(),
                    input_length: gl_stats(ok("prompt_token_count"), "count"),
                    output_length: gl_stats(ok("output_token_count"), "count"),
                },
                latency: Latency {
                    time_to_first_token: ms("time_to_first_token_ms", "s"),
                    // guidellm's TPOT is (last token − start)/n: the BR's normalized TPOT.
                    normalized_time_per_output_token: ms("time_per_output_token_ms", "s/token"),
                    // guidellm's ITL is (last − first)/(n − 1): the BR's TPOT. Token-weighted,
                    // its mean is also the mean pooled inter-token gap — but its percentiles
                    // are of per-request means, not of gaps, and guidellm keeps no chunk
                    // times to pool: the BR's ITL carries the mean only (see `notes`).
                    time_per_output_token: ms("inter_token_latency_ms", "s/token"),
                    inter_token_latency: ms("inter_token_latency_ms", "s").map(|s| Statistics::value("s", s.mean)),
                    request_latency: gl_stats(ok("request_latency"), "s"),
                },
                throughput: Throughput {
                    input_token_rate: gl_stats(ok("prompt_tokens_per_second"), "tokens/s").map(|s| Statistics::value("tokens/s", s.mean)),
                    output_token_rate: gl_stats(ok("output_tokens_per_second"), "tokens/s").map(|s| Statistics::value("tokens/s", s.mean)),
                    total_token_rate: gl_stats(ok("tokens_per_second"), "tokens/s").map(|s| Statistics::value("tokens/s", s.mean)),
                    request_rate: gl_stats(ok("requests_per_second"), "queries/s").map(|s| Statistics::value("queries/s", s.mean)),
                },
            },
            duration_s: b["duration"].as_f64(),
            start_unix: b["start_time"].as_f64(),
            end_unix: b["end_time"].as_f64(),
            rate_qps: strategy["rate"].as_f64(),
            concurrency: strategy["streams"].as_u64(),
            notes: vec![GUIDELLM_ITL_NOTE.into()],
            ..Default::default()
        });
    }
    Ok(out)
}

// ---- vllm bench serve

pub fn vllm(path: &Path) -> Result<Converted> {
    let v = read_json(path)?;
    if v.get("mean_ttft_ms").is_none() {
        bail!("{}: no mean_ttft_ms (not a `vllm bench serve --save-result` file?)", path.display());
    }
    // `pNN_<metric>_ms` for whatever --metric-percentiles asked for.
    let stat = |metric: &str, units: &str| -> Option<Statistics> {
        let f = |k: String| v.get(&k).and_then(Value::as_f64);
        let p = |q: &str| f(format!("p{q}_{metric}_ms"));
        let stats = Statistics::from_fields("ms", |field| match field {
            "mean" => f(format!("mean_{metric}_ms")),
            "stddev" => f(format!("std_{metric}_ms")),
            "mode" | "min" | "max" => None,
            "p0p1" => p("0.1"),
            "p50" => f(format!("median_{metric}_ms")).or(p("50")),
            "p99p9" => p("99.9"),
            other => p(&other[1..]),
        });
        stats.map(|s| s.scaled(1e-3, units))
    };
    let completed = v["completed"].as_u64().unwrap_or(0);
    let failed = v["failed"].as_u64().unwrap_or(0);
    let lens = |k: &str| {
        v[k].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<f64>>()).and_then(|x| Statistics::of("count", &x))
    };
    let mut samples = Samples::default();
    let arr = |k: &str| v[k].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<f64>>()).unwrap_or_default();
    samples.ttft = arr("ttfts");
    samples.e2e = arr("latencies");
    samples.itl = v["itls"]
        .as_array()
        .map(|a| a.iter().flat_map(|x| x.as_array().into_iter().flatten().filter_map(Value::as_f64)).collect())
        .unwrap_or_default();
    let rate = |k: &str, units: &str| v[k].as_f64().map(|x| Statistics::value(units, x));
    let duration = v["duration"].as_f64();
    Ok(Converted {
        tool: "vllm-benchmark".into(),
        tool_version: String::new(),
        source_file: path.to_path_buf(),
        stage: None,
        aggregate: Aggregate {
            requests: Requests {
                total: completed + failed,
                failures: failed,
                incomplete: None,
                input_length: lens("input_lens"),
                output_length: lens("output_lens"),
            },
            latency: Latency {
                time_to_first_token: stat("ttft", "s"),
                normalized_time_per_output_token: None,
                time_per_output_token: stat("tpot", "s/token"),
                inter_token_latency: stat("itl", "s"),
                // Without e2el in --percentile-metrics, the per-request latencies it always saves.
                request_latency: stat("e2el", "s").or_else(|| Statistics::of("s", &samples.e2e)),
            },
            throughput: Throughput {
                input_token_rate: v["total_input_tokens"].as_f64().zip(duration).map(|(t, d)| Statistics::value("tokens/s", t / d)),
                output_token_rate: rate("output_throughput", "tokens/s"),
                total_token_rate: rate("total_token_throughput", "tokens/s"),
                request_rate: rate("request_throughput", "queries/s"),
            },
        },
        duration_s: duration,
        rate_qps: v["request_rate"].as_f64().filter(|r| r.is_finite()),
        concurrency: v["max_concurrency"].as_u64(),
        samples,
        ..Default::default()
    })
}

// ---- aiperf

/// aiperf's metric object (`unit, avg, std, min, max, p1 … p99`), converted to `units`.
fn ap_stats(v: &Value, units: &str) -> Option<Statistics> {
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let scale = match v["unit"].as_str() {
        Some("ms") if units.starts_with('s') => 1e-3,
        Some("ns") if units.starts_with('s') => 1e-9,
        _ => 1.0,
    };
    let stats = Statistics::from_fields(units, |field| match field {
        "mean" => f("avg"),
        "stddev" => f("std"),
        "mode" | "p0p1" | "p99p9" => None,
        other => f(other),
    });
    stats.map(|s| s.scaled(scale, units))
}

pub fn aiperf(path: &Path) -> Result<Converted> {
    let v = read_json(path)?;
    if v.get("time_to_first_token").is_none() && v.get("request_latency").is_none() {
        bail!("{}: no time_to_first_token or request_latency (not an aiperf profile export?)", path.display());
    }
    let completed = v["completed_request_count"]["avg"].as_f64().or(v["request_count"]["avg"].as_f64()).unwrap_or(0.0) as u64;
    let errors: u64 = v["error_summary"].as_array().map_or(0, |a| a.iter().filter_map(|e| e["count"].as_u64()).sum());
    let rate = |k: &str, units: &str| v[k]["avg"].as_f64().map(|x| Statistics::value(units, x));
    let cfg = &v["input_config"]["loadgen"];
    Ok(Converted {
        tool: "aiperf".into(),
        tool_version: v["aiperf_version"].as_str().unwrap_or_default().to_string(),
        source_file: path.to_path_buf(),
        stage: None,
        aggregate: Aggregate {
            requests: Requests {
                total: completed + errors,
                failures: errors,
                incomplete: None,
                input_length: ap_stats(&v["input_sequence_length"], "count"),
                output_length: ap_stats(&v["output_sequence_length"], "count"),
            },
            latency: Latency {
                time_to_first_token: ap_stats(&v["time_to_first_token"], "s"),
                normalized_time_per_output_token: None,
                // aiperf's ITL is (latency − TTFT)/(OSL − 1); its ICL is the pooled chunk gap.
                time_per_output_token: ap_stats(&v["inter_token_latency"], "s/token"),
                inter_token_latency: ap_stats(&v["inter_chunk_latency"], "s"),
                request_latency: ap_stats(&v["request_latency"], "s"),
            },
            throughput: Throughput {
                input_token_rate: rate("input_token_throughput", "tokens/s"),
                output_token_rate: rate("output_token_throughput", "tokens/s"),
                total_token_rate: rate("total_token_throughput", "tokens/s"),
                request_rate: rate("request_throughput", "queries/s"),
            },
        },
        duration_s: v["benchmark_duration"]["avg"].as_f64(),
        rate_qps: cfg["request_rate"].as_f64(),
        concurrency: cfg["concurrency"].as_u64(),
        ..Default::default()
    })
}
