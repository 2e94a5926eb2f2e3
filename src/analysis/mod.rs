//! Analysis of benchmark results.
//!
//! * [`br`] — the llm-d benchmark report (v0.1, v0.2, v0.2.1) as serde types.
//! * [`convert`] — each harness's own output → report aggregates; [`native`] — the
//!   native harness's streaming converter.
//! * [`report`] — report documents, and `llmd analyze` on a results directory.
//! * [`comparison`] — the cross-treatment table (`treatment_comparison.csv`).
//! * [`timeseries`] — per-window latencies and rates over a run (the report's time series).
//! * [`metrics`] — model-server `/metrics` scraped during runs, summarized as observability.
//! * [`plots`] — PNG plots of a comparison; [`html`] — the self-contained `report.html`.
//! * [`headline`] — the metrics of one run the summary table shows, from a report.
//! * [`summary_table`] — one row per run, as CSV and as an aligned text table.
//!
//! `llmd analyze` and the build graph's analysis and summary nodes call the same code:
//! a run directory → [`convert::convert_dir`] → [`report::analyze_dir`] → [`headline`].

pub mod br;
pub mod comparison;
pub mod convert;
pub mod html;
pub mod metrics;
pub mod native;
pub mod plots;
pub mod report;
pub mod timeseries;

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
    // Run treatments with identical inputs share one run: a note column names it.
    if rows.iter().any(|r| r.get("shared_with").is_some()) {
        header.push("note".into());
        for (row, r) in table.iter_mut().zip(rows) {
            let others: Vec<&str> = r["shared_with"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            row.push(if others.is_empty() {
                String::new()
            } else {
                format!("shared run {} (identical inputs to {})", num(&r["results_dir"]), others.join(", "))
            });
        }
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
        "note",
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

/// Two-sided 95% critical values of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093,
    2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// `(mean, sample stddev, 95% CI of the mean)` of repeated measurements.
pub type RepeatStats = (f64, Option<f64>, Option<(f64, f64)>);

/// Mean, sample standard deviation and the 95% confidence interval of the mean
/// (Student's t) of repeated measurements; `None` for the spread of a single one.
pub fn repeat_stats(values: &[f64]) -> Option<RepeatStats> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Some((mean, None, None));
    }
    let sd = (values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt();
    let t = T975.get(n - 2).copied().unwrap_or(1.960);
    let half = t * sd / (n as f64).sqrt();
    Some((mean, Some(sd), Some((mean - half, mean + half))))
}

/// Per (setup, stack, treatment): each headline metric over its repetitions — mean,
/// sample stddev, 95% CI — as CSV.
pub fn repetition_table(rows: &[Value]) -> Result<String> {
    let metrics: Vec<(String, Vec<&str>)> =
        [("request_throughput", vec!["request_throughput"]), ("output_token_throughput", vec!["output_token_throughput"])]
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .chain(METRICS.iter().flat_map(|m| ["mean", "p50", "p99"].map(|s| (format!("{m}_{s}_ms"), vec![*m, s]))))
            .collect();
    type Key = (String, String, String);
    let mut groups: Vec<(Key, Vec<&Value>)> = Vec::new();
    for r in rows {
        let key = (
            r["setup"].as_str().unwrap_or("").to_string(),
            r["stack"].as_str().unwrap_or("").to_string(),
            r["treatment"].as_str().unwrap_or("").to_string(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["setup", "stack", "treatment", "repetitions", "metric", "mean", "stddev", "ci95_low", "ci95_high"])?;
    let f = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for ((setup, stack, treatment), members) in &groups {
        for (name, path) in &metrics {
            let values: Vec<f64> = members.iter().filter_map(|r| path.iter().fold(&r["metrics"], |cur, k| &cur[*k]).as_f64()).collect();
            let Some((mean, sd, ci)) = repeat_stats(&values) else { continue };
            w.write_record([
                setup.clone(),
                stack.clone(),
                treatment.clone(),
                values.len().to_string(),
                name.clone(),
                f(Some(mean)),
                f(sd),
                f(ci.map(|c| c.0)),
                f(ci.map(|c| c.1)),
            ])?;
        }
    }
    Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
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

    #[test]
    fn repetitions_get_a_confidence_interval() {
        // scipy.stats.t.interval(0.95, 2, loc=2, scale=stdev([1,2,3])/sqrt(3)) = (-0.4841, 4.4841)
        let (mean, sd, ci) = repeat_stats(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((mean, sd), (2.0, Some(1.0)));
        let (lo, hi) = ci.unwrap();
        assert!((lo + 0.4841).abs() < 1e-3 && (hi - 4.4841).abs() < 1e-3, "{lo} {hi}");
        assert_eq!(repeat_stats(&[5.0]), Some((5.0, None, None)));
        let rows: Vec<Value> = [10.0, 12.0]
            .iter()
            .enumerate()
            .map(|(i, rps)| json!({"setup": "s", "stack": "sim", "treatment": "t", "repetition": i + 1, "metrics": {"request_throughput": rps, "ttft": {"mean": 20.0}}}))
            .collect();
        let csv = repetition_table(&rows).unwrap();
        assert!(csv.contains("s,sim,t,2,request_throughput,11.000000,1.414214,-1.706"), "{csv}");
        assert!(csv.contains("s,sim,t,2,ttft_mean_ms,20.000000,0.000000,20.000000,20.000000"), "{csv}");
    }
}
