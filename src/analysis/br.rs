//! The llm-d benchmark report (BR) as serde types: v0.2 (also written as v0.2.1, whose
//! schema is an additive superset) and v0.1.
//!
//! Field names, nesting and units follow upstream's published JSON schemas; absent
//! values are omitted rather than written as `null`, which every schema version accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// The statistics object used everywhere in a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    pub units: String,
    pub mean: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p0p1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p10: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p25: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p75: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99p9: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Statistics {
    /// Every field from a sample (population stddev, numpy-linear percentiles);
    /// `None` for an empty sample.
    pub fn of(units: &str, values: &[f64]) -> Option<Statistics> {
        Summary::of(values).map(|s| Statistics::from_summary(units, &s))
    }

    /// [`Statistics::of`] on an owned sample (sorted in place).
    pub fn of_vec(units: &str, values: Vec<f64>) -> Option<Statistics> {
        Summary::of_vec(values).map(|s| Statistics::from_summary(units, &s))
    }

    pub fn from_summary(units: &str, s: &Summary) -> Statistics {
        Statistics {
            units: units.into(),
            mean: s.mean,
            mode: Some(s.mode),
            stddev: Some(s.stddev),
            min: Some(s.min),
            p0p1: Some(s.p(0.1)),
            p1: Some(s.p(1.0)),
            p5: Some(s.p(5.0)),
            p10: Some(s.p(10.0)),
            p25: Some(s.p(25.0)),
            p50: Some(s.p(50.0)),
            p75: Some(s.p(75.0)),
            p90: Some(s.p(90.0)),
            p95: Some(s.p(95.0)),
            p99: Some(s.p(99.0)),
            p99p9: Some(s.p(99.9)),
            max: Some(s.max),
        }
    }

    /// From a tool's own summary: `get` answers each report field by name (`mean`, `mode`,
    /// `stddev`, `min`, `p0p1` … `p99p9`, `max`); `None` without a mean.
    pub fn from_fields(units: &str, get: impl Fn(&str) -> Option<f64>) -> Option<Statistics> {
        Some(Statistics {
            units: units.into(),
            mean: get("mean")?,
            mode: get("mode"),
            stddev: get("stddev"),
            min: get("min"),
            p0p1: get("p0p1"),
            p1: get("p1"),
            p5: get("p5"),
            p10: get("p10"),
            p25: get("p25"),
            p50: get("p50"),
            p75: get("p75"),
            p90: get("p90"),
            p95: get("p95"),
            p99: get("p99"),
            p99p9: get("p99p9"),
            max: get("max"),
        })
    }

    /// A single value (a rate measured once per run).
    pub fn value(units: &str, v: f64) -> Statistics {
        Statistics { units: units.into(), mean: v, ..Default::default() }
    }

    /// Every number multiplied by `factor`, now in `units` (e.g. ms → s).
    pub fn scaled(mut self, factor: f64, units: &str) -> Statistics {
        self.units = units.into();
        self.mean *= factor;
        for v in self.fields_mut() {
            if let Some(x) = v.as_mut() {
                *x *= factor;
            }
        }
        self
    }

    fn fields_mut(&mut self) -> [&mut Option<f64>; 15] {
        [
            &mut self.mode,
            &mut self.stddev,
            &mut self.min,
            &mut self.p0p1,
            &mut self.p1,
            &mut self.p5,
            &mut self.p10,
            &mut self.p25,
            &mut self.p50,
            &mut self.p75,
            &mut self.p90,
            &mut self.p95,
            &mut self.p99,
            &mut self.p99p9,
            &mut self.max,
        ]
    }

    /// A statistic by its report name (`mean`, `p50`, `p99p9`, ...).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "mean" => Some(self.mean),
            "mode" => self.mode,
            "stddev" => self.stddev,
            "min" => self.min,
            "p0p1" => self.p0p1,
            "p1" => self.p1,
            "p5" => self.p5,
            "p10" => self.p10,
            "p25" => self.p25,
            "p50" => self.p50,
            "p75" => self.p75,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "p99p9" => self.p99p9,
            "max" => self.max,
            _ => None,
        }
    }
}

// ---- v0.2

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportV02 {
    pub version: String,
    pub run: Run,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
    pub results: Results,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<RunTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTime {
    /// RFC 3339, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// ISO 8601 duration, `PT12.5S`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<Vec<Component>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub metadata: ComponentMetadata,
    pub standardized: InferenceEngine,
    pub native: Native,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentMetadata {
    pub schema_version: String,
    pub label: String,
    pub cfg_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceEngine {
    pub kind: String,
    pub tool: String,
    pub tool_version: String,
    /// replica | prefill | decode (the schema's `HostType`)
    pub role: String,
    pub replicas: u64,
    pub model: Model,
    pub accelerator: Accelerator,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accelerator {
    pub model: String,
    pub count: u64,
    pub parallelism: Parallelism,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Parallelism {
    pub tp: u64,
    pub pp: u64,
    pub dp: u64,
    pub dp_local: u64,
    pub ep: u64,
    pub workers: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Native {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envars: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub metadata: LoadMetadata,
    pub standardized: LoadStandardized,
    pub native: Native,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadMetadata {
    pub schema_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadStandardized {
    pub tool: String,
    pub tool_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    /// random | sampled | unknown
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<u64>,
    pub input_seq_len: SequenceLength,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_seq_len: Option<SequenceLength>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_qps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SequenceLength {
    /// fixed | gaussian | uniform | other
    pub distribution: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std_dev: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_performance: Option<RequestPerformance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestPerformance {
    pub aggregate: Aggregate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeriesRequestPerformance>,
}

/// `request_performance.time_series`: the same families as the aggregate, per window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSeriesRequestPerformance {
    /// Keys as in [`Latency`] (`time_to_first_token`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<BTreeMap<String, TimeSeriesData>>,
    /// Keys as in [`Throughput`] (`output_token_rate`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<BTreeMap<String, TimeSeriesData>>,
}

/// One metric over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSeriesData {
    pub units: String,
    pub series: Vec<TimeSeriesPoint>,
}

/// One point of a series: a window's value, or its distribution.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSeriesPoint {
    /// RFC 3339 start of the window (or the scrape time).
    pub ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub requests: Requests,
    pub latency: Latency,
    pub throughput: Throughput,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub total: u64,
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_length: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_length: Option<Statistics>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_token: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_time_per_output_token: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_per_output_token: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_token_latency: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_latency: Option<Statistics>,
}

impl Latency {
    /// A latency family by its report name.
    pub fn get(&self, name: &str) -> Option<&Statistics> {
        match name {
            "time_to_first_token" => self.time_to_first_token.as_ref(),
            "normalized_time_per_output_token" => self.normalized_time_per_output_token.as_ref(),
            "time_per_output_token" => self.time_per_output_token.as_ref(),
            "inter_token_latency" => self.inter_token_latency.as_ref(),
            "request_latency" => self.request_latency.as_ref(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_token_rate: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_token_rate: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_token_rate: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<Statistics>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observability {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentObservability>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentObservability {
    pub component_label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<BTreeMap<String, Statistics>>,
    /// Keys of the schema's `TimeSeriesResourceMetrics` only (`kv_cache_usage`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_series: Option<BTreeMap<String, TimeSeriesData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_data_path: Option<String>,
}

// ---- v0.1

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportV01 {
    pub version: String,
    pub scenario: ScenarioV01,
    pub metrics: MetricsV01,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioV01 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub model: Model,
    pub load: LoadV01,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadV01 {
    /// guidellm | inference-perf | vllm-benchmark | nop (the schema's closed list).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsV01 {
    pub time: TimeV01,
    pub requests: RequestsV01,
    pub latency: Latency,
    pub throughput: ThroughputV01,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeV01 {
    pub duration: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestsV01 {
    pub total: u64,
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<u64>,
    pub input_length: Statistics,
    pub output_length: Statistics,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThroughputV01 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_sec: Option<f64>,
    pub total_tokens_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_sec: Option<f64>,
}

/// `PT12.345S`
pub fn iso_duration(seconds: f64) -> String {
    format!("PT{}S", crate::pyfmt::float_repr(seconds))
}

/// RFC 3339 UTC (`2025-11-05T18:00:42.5Z`) from Unix seconds.
pub fn rfc3339(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let frac = unix - secs as f64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let millis = ((frac * 1000.0).floor() as i64).clamp(0, 999);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_762_365_642.25), "2025-11-05T18:00:42.250Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_duration(49.5), "PT49.5S");
    }

    #[test]
    fn statistics_scale_and_lookup() {
        let s = Statistics::of("ms", &[1.0, 2.0, 3.0, 4.0]).unwrap().scaled(1e-3, "s");
        assert_eq!(s.units, "s");
        assert!((s.mean - 0.0025).abs() < 1e-15);
        assert_eq!(s.get("p50"), Some(0.0025));
        assert_eq!(s.get("max"), Some(0.004));
        assert_eq!(s.get("nope"), None);
    }
}
