//! Analysis of benchmark results.
//!
//! * [`stats`] — summary statistics with numpy's conventions.
//! * [`run_summary`] — the headline metrics of one run, from any harness's own output.
//! * [`summary_table`] — one row per run, as CSV and as an aligned text table.

pub mod stats;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::harness::external::HarnessKind;

/// The metric families every summary row has, in display order.
pub const METRICS: [&str; 4] = ["ttft", "tpot", "itl", "e2e"];

fn ms(v: Option<f64>, scale: f64) -> Value {
    v.map_or(Value::Null, |x| json!((x * scale * 1e6).round() / 1e6))
}

/// `{mean, p50, p90, p99}` in milliseconds from a summary object, given the keys it uses.
fn family(obj: &Value, scale: f64, keys: [&str; 4]) -> Value {
    let get = |k: &str| {
        let mut cur = obj;
        for part in k.split('/') {
            cur = &cur[part];
        }
        cur.as_f64()
    };
    json!({"mean": ms(get(keys[0]), scale), "p50": ms(get(keys[1]), scale), "p90": ms(get(keys[2]), scale), "p99": ms(get(keys[3]), scale)})
}

fn parse(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Result<Value> {
    let bytes = files.get(name).with_context(|| format!("the run has no {name}"))?;
    serde_json::from_slice(bytes).with_context(|| format!("{name} is not valid JSON"))
}

/// Headline metrics of a run (latencies in ms), read from the harness's own result file.
pub fn run_summary(files: &BTreeMap<String, Vec<u8>>, harness: HarnessKind) -> Result<Value> {
    Ok(match harness {
        HarnessKind::Llmd => {
            let r = parse(files, "report.json")?;
            let f = |name: &str| family(&r[name], 1e3, ["mean", "percentiles/p50", "percentiles/p90", "percentiles/p99"]);
            json!({
                "requests": {"total": r["requests"]["total"], "completed": r["requests"]["completed"], "failed": r["requests"]["failed"]},
                "request_throughput": r["request_throughput"],
                "output_token_throughput": r["output_token_throughput"],
                "ttft": f("ttft_s"), "tpot": f("tpot_s"), "itl": f("itl_s"), "e2e": f("e2e_s"),
            })
        }
        HarnessKind::InferencePerf => {
            let r = parse(files, "summary_lifecycle_metrics.json")?;
            let lat = &r["successes"]["latency"];
            let f = |name: &str| family(&lat[name], 1e3, ["mean", "median", "p90", "p99"]);
            json!({
                "requests": {"total": r["successes"]["count"].as_u64().unwrap_or(0) + r["failures"]["count"].as_u64().unwrap_or(0), "completed": r["successes"]["count"], "failed": r["failures"]["count"]},
                "request_throughput": r["successes"]["throughput"]["requests_per_sec"],
                "output_token_throughput": r["successes"]["throughput"]["output_tokens_per_sec"],
                "ttft": f("time_to_first_token"), "tpot": f("time_per_output_token"), "itl": f("inter_token_latency"), "e2e": f("request_latency"),
            })
        }
        HarnessKind::Guidellm => {
            let r = parse(files, "results.json")?;
            let m = &r["benchmarks"][0]["metrics"];
            let f =
                |name: &str, scale: f64| family(&m[name]["successful"], scale, ["mean", "median", "percentiles/p90", "percentiles/p99"]);
            json!({
                "requests": {"total": m["request_totals"]["total"], "completed": m["request_totals"]["successful"], "failed": m["request_totals"]["errored"]},
                "request_throughput": m["requests_per_second"]["successful"]["mean"],
                "output_token_throughput": m["output_tokens_per_second"]["successful"]["mean"],
                "ttft": f("time_to_first_token_ms", 1.0), "tpot": f("time_per_output_token_ms", 1.0), "itl": f("inter_token_latency_ms", 1.0), "e2e": f("request_latency", 1e3),
            })
        }
        HarnessKind::VllmBenchmark => {
            let r = parse(files, "vllm-bench.json")?;
            let f = |m: &str| json!({"mean": r[format!("mean_{m}_ms")], "p50": r[format!("median_{m}_ms")], "p90": r[format!("p90_{m}_ms")], "p99": r[format!("p99_{m}_ms")]});
            json!({
                "requests": {"total": r["completed"].as_u64().unwrap_or(0) + r["failed"].as_u64().unwrap_or(0), "completed": r["completed"], "failed": r["failed"]},
                "request_throughput": r["request_throughput"],
                "output_token_throughput": r["output_throughput"],
                "ttft": f("ttft"), "tpot": f("tpot"), "itl": f("itl"), "e2e": f("e2el"),
            })
        }
    })
}

/// One row per analysed run: CSV (for tools) and an aligned table (for people).
pub fn summary_table(rows: &[Value]) -> Result<(String, String)> {
    let mut header = vec!["setup", "stack", "treatment", "repetition", "completed", "failed", "req_per_s", "out_tok_per_s"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    for m in METRICS {
        for s in ["mean", "p50", "p99"] {
            header.push(format!("{m}_{s}_ms"));
        }
    }
    let num = |v: &Value| match v {
        Value::Null => String::new(),
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| n.to_string(), |f| if f.fract() == 0.0 && f.abs() < 1e15 { format!("{f:.0}") } else { format!("{f:.3}") }),
        other => other.as_str().map_or_else(|| other.to_string(), str::to_string),
    };
    let mut table: Vec<Vec<String>> = Vec::new();
    for r in rows {
        let m = &r["metrics"];
        let mut row = vec![
            num(&r["setup"]),
            num(&r["stack"]),
            num(&r["treatment"]),
            num(&r["repetition"]),
            num(&m["requests"]["completed"]),
            num(&m["requests"]["failed"]),
            num(&m["request_throughput"]),
            num(&m["output_token_throughput"]),
        ];
        for f in METRICS {
            for s in ["mean", "p50", "p99"] {
                row.push(num(&m[f][s]));
            }
        }
        table.push(row);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for row in &table {
        w.write_record(row)?;
    }
    let csv = String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    // The text table keeps the most read columns.
    let keep = [
        "setup",
        "stack",
        "treatment",
        "repetition",
        "completed",
        "failed",
        "req_per_s",
        "ttft_p50_ms",
        "tpot_p50_ms",
        "e2e_p50_ms",
        "e2e_p99_ms",
    ];
    let idx: Vec<usize> = keep.iter().filter_map(|k| header.iter().position(|h| h == k)).collect();
    let widths: Vec<usize> = idx.iter().map(|&i| table.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let mut text = String::new();
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string() + "\n"
    };
    text.push_str(&line(idx.iter().map(|&i| header[i].as_str()).collect()));
    for row in &table {
        text.push_str(&line(idx.iter().map(|&i| row[i].as_str()).collect()));
    }
    Ok((csv, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<Vec<u8>> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/harness-outputs").join(name)).ok()
    }

    #[test]
    fn summaries_from_every_harness_output() {
        let cases = [
            (HarnessKind::InferencePerf, "inference-perf-0.7.0-summary_lifecycle_metrics.json", "summary_lifecycle_metrics.json"),
            (HarnessKind::Guidellm, "guidellm-0.8.1-sanity_random-results.json", "results.json"),
            (HarnessKind::VllmBenchmark, "vllm-0.33.0-bench-serve-random.json", "vllm-bench.json"),
        ];
        for (kind, fixture_name, name) in cases {
            let Some(bytes) = fixture(fixture_name) else {
                eprintln!("skipping {fixture_name}: ../shared/fixtures is not present");
                continue;
            };
            let s = run_summary(&BTreeMap::from([(name.to_string(), bytes)]), kind).unwrap();
            let ttft = s["ttft"]["p50"].as_f64().unwrap_or_else(|| panic!("{fixture_name}: {s}"));
            assert!(ttft > 1.0 && ttft < 1000.0, "{fixture_name}: TTFT p50 {ttft} ms");
            assert!(s["requests"]["completed"].as_u64().unwrap() > 0, "{fixture_name}");
        }
        let rows = vec![
            json!({"setup": "a", "stack": "sim", "treatment": "r1", "repetition": 1, "metrics": {"requests": {"completed": 10, "failed": 0}, "request_throughput": 2.5, "ttft": {"mean": 20.5, "p50": 20.25, "p99": 22.0}}}),
        ];
        let (csv, text) = summary_table(&rows).unwrap();
        assert!(csv.starts_with("setup,stack,treatment,repetition,completed,failed,req_per_s,out_tok_per_s,ttft_mean_ms"), "{csv}");
        assert!(csv.lines().nth(1).unwrap().starts_with("a,sim,r1,1,10,0,2.500,,20.500,20.250,22"), "{csv}");
        assert!(text.contains("ttft_p50_ms") && text.contains("20.250"), "{text}");
    }
}
