//! The cross-treatment comparison: one row per report, upstream's columns
//! (`cross-treatment-comparison/treatment_comparison.csv`).

use anyhow::Result;

use super::br::{ReportV02, Statistics};

/// Upstream's column order.
pub const COLUMNS: [&str; 20] = [
    "treatment",
    "source_file",
    "ttft_mean_s",
    "ttft_p50_s",
    "ttft_p99_s",
    "tpot_mean_s",
    "tpot_p99_s",
    "itl_mean_s",
    "itl_p99_s",
    "e2e_mean_s",
    "e2e_p99_s",
    "output_tps",
    "request_qps",
    "total_tps",
    "total_requests",
    "failures",
    "input_len_mean",
    "output_len_mean",
    "tool",
    "rate_qps",
];

/// One report in the comparison.
pub struct Row<'a> {
    pub treatment: String,
    pub source_file: String,
    pub report: &'a ReportV02,
}

fn num(v: Option<f64>) -> String {
    v.map(crate::pyfmt::float_repr).unwrap_or_default()
}

/// The values of one row, in [`COLUMNS`] order.
pub fn row_values(r: &Row) -> Vec<String> {
    let agg = r.report.results.request_performance.as_ref().map(|p| &p.aggregate);
    let lat = |name: &str, stat: &str| agg.and_then(|a| a.latency.get(name)).and_then(|s| s.get(stat));
    let rate = |f: fn(&super::br::Throughput) -> &Option<Statistics>| agg.and_then(|a| f(&a.throughput).as_ref()).map(|s| s.mean);
    let load = r.report.scenario.as_ref().and_then(|s| s.load.as_ref());
    vec![
        r.treatment.clone(),
        r.source_file.clone(),
        num(lat("time_to_first_token", "mean")),
        num(lat("time_to_first_token", "p50")),
        num(lat("time_to_first_token", "p99")),
        num(lat("time_per_output_token", "mean")),
        num(lat("time_per_output_token", "p99")),
        num(lat("inter_token_latency", "mean")),
        num(lat("inter_token_latency", "p99")),
        num(lat("request_latency", "mean")),
        num(lat("request_latency", "p99")),
        num(rate(|t| &t.output_token_rate)),
        num(rate(|t| &t.request_rate)),
        num(rate(|t| &t.total_token_rate)),
        agg.map(|a| a.requests.total.to_string()).unwrap_or_default(),
        agg.map(|a| a.requests.failures.to_string()).unwrap_or_default(),
        num(agg.and_then(|a| a.requests.input_length.as_ref()).map(|s| s.mean)),
        num(agg.and_then(|a| a.requests.output_length.as_ref()).map(|s| s.mean)),
        load.map(|l| l.standardized.tool.clone()).unwrap_or_default(),
        num(load.and_then(|l| l.standardized.rate_qps)),
    ]
}

/// The CSV text of a comparison.
pub fn csv(rows: &[Row]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for r in rows {
        w.write_record(row_values(r))?;
    }
    Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
}

/// The numeric columns of a row, by name.
pub fn row_numbers(r: &Row) -> std::collections::BTreeMap<String, f64> {
    COLUMNS.iter().zip(row_values(r)).filter_map(|(c, v)| v.parse::<f64>().ok().map(|x| (c.to_string(), x))).collect()
}
