//! Analysis of benchmark results.
//!
//! * [`stats`] — summary statistics with numpy's conventions.
//! * [`br`] — the llm-d benchmark report (v0.1, v0.2, v0.2.1) as serde types.
//! * [`convert`] — each harness's own output → report aggregates.
//! * [`report`] — report documents, and `llmd analyze` on a results directory.
//! * [`comparison`] — the cross-treatment table (`treatment_comparison.csv`).
//! * [`headline`] — the metrics of one run the summary table shows, from a report.
//! * [`summary_table`] — one row per run, as CSV and as an aligned text table.
//!
//! `llmd analyze` and the build graph's analysis and summary nodes call the same code:
//! a run directory → [`convert::convert_dir`] → [`report::analyze_dir`] → [`headline`].

pub mod br;
pub mod comparison;
pub mod convert;
pub mod report;
pub mod stats;

use anyhow::Result;
use serde_json::{Value, json};

use br::{Aggregate, Statistics};

/// The metric families every summary row has, in display order.
pub const METRICS: [&str; 4] = ["ttft", "tpot", "itl", "e2e"];

fn ms(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |x| json!((x * 1e3 * 1e6).round() / 1e6))
}

/// `{mean, p50, p90, p99}` in milliseconds from a statistics object in seconds.
fn family(s: Option<&Statistics>) -> Value {
    match s {
        None => json!({"mean": null, "p50": null, "p90": null, "p99": null}),
        Some(s) => json!({"mean": ms(Some(s.mean)), "p50": ms(s.p50), "p90": ms(s.p90), "p99": ms(s.p99)}),
    }
}

/// Headline metrics of a run (latencies in ms) from its report aggregate.
pub fn headline(a: &Aggregate) -> Value {
    let rate = |s: &Option<Statistics>| s.as_ref().map_or(Value::Null, |s| json!(s.mean));
    json!({
        "requests": {"total": a.requests.total, "completed": a.requests.total.saturating_sub(a.requests.failures + a.requests.incomplete.unwrap_or(0)), "failed": a.requests.failures},
        "request_throughput": rate(&a.throughput.request_rate),
        "output_token_throughput": rate(&a.throughput.output_token_rate),
        "ttft": family(a.latency.time_to_first_token.as_ref()),
        "tpot": family(a.latency.time_per_output_token.as_ref()),
        "itl": family(a.latency.inter_token_latency.as_ref()),
        "e2e": family(a.latency.request_latency.as_ref()),
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

    #[test]
    fn headline_and_table() {
        let mut a = Aggregate::default();
        a.requests.total = 10;
        a.requests.failures = 1;
        a.latency.time_to_first_token = Statistics::of("s", &[0.02, 0.021, 0.0225]);
        a.throughput.request_rate = Some(Statistics::value("queries/s", 2.5));
        let h = headline(&a);
        assert_eq!(h["requests"]["completed"], 9);
        assert_eq!(h["ttft"]["p50"], 21.0);
        let rows = vec![json!({"setup": "a", "stack": "sim", "treatment": "r1", "repetition": 1, "metrics": h})];
        let (csv, text) = summary_table(&rows).unwrap();
        assert!(csv.starts_with("setup,stack,treatment,repetition,completed,failed,req_per_s,out_tok_per_s,ttft_mean_ms"), "{csv}");
        assert!(csv.lines().nth(1).unwrap().starts_with("a,sim,r1,1,9,1,2.500,,21.167,21,22.470"), "{csv}");
        assert!(text.contains("ttft_p50_ms"), "{text}");
    }
}
