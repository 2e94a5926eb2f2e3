//! Model-server metrics: scraping `/metrics` during a run into `metrics/raw/<label>.log`
//! (upstream's format: Prometheus text after `# Timestamp:` and `# Pod:` headers), and
//! summarizing those logs into the report's `results.observability`.
//!
//! | report field | from |
//! |---|---|
//! | `kv_cache_usage` (fraction) | gauge `vllm:kv_cache_usage_perc` (`gpu_cache_usage_perc` on older vLLM) |
//! | `running_requests`, `waiting_requests` (count) | gauges `vllm:num_requests_running` / `_waiting` |
//! | `cache_hit_rate` (fraction) | Δ`vllm:prefix_cache_hits` / Δ`vllm:prefix_cache_queries` over the run |
//!
//! `kv_cache_usage` is also written per scrape as the component's `time_series`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::br::{ComponentObservability, Observability, Statistics, TimeSeriesData, TimeSeriesPoint, rfc3339};

/// Gauges kept as time series: (metric names, report field, units).
const GAUGES: [(&[&str], &str, &str); 3] = [
    (&["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"], "kv_cache_usage", "fraction"),
    (&["vllm:num_requests_running"], "running_requests", "count"),
    (&["vllm:num_requests_waiting"], "waiting_requests", "count"),
];

/// The gauges the report's `TimeSeriesResourceMetrics` has a place for (request counts
/// have none; they stay in the aggregate and the plots).
const TIME_SERIES_FIELDS: [&str; 1] = ["kv_cache_usage"];

/// Appends one scrape to `log`.
fn append(log: &Path, label: &str, body: &str) -> Result<()> {
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("cannot open {}", log.display()))?;
    write!(f, "# Timestamp: {}\n# Pod: {label}\n{body}\n", crate::store::unix_now())?;
    Ok(())
}

/// Scrapes `endpoint/metrics` every `interval` into `dir/metrics/raw/<label>.log`, forever
/// (the caller drops the future when the run ends). A failed scrape is skipped, never fatal.
pub async fn scrape_forever(endpoint: crate::http::client::Endpoint, label: String, dir: PathBuf, interval: Duration) {
    let raw = dir.join("metrics/raw");
    if std::fs::create_dir_all(&raw).is_err() {
        return;
    }
    let log = raw.join(format!("{label}.log"));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        scrape_once(&endpoint, &label, &log).await;
    }
}

/// One scrape (used at the end of a run too, so the last counters are captured).
pub async fn scrape_once(endpoint: &crate::http::client::Endpoint, label: &str, log: &Path) {
    if let Ok((200, serde_json::Value::String(body))) = crate::http::http_json(endpoint, "/metrics", None, Duration::from_secs(2)).await {
        let _ = append(log, label, &body);
    }
}

/// Series parsed from one raw log: metric → [(unix seconds, value)], summed over labels.
pub fn parse_log(text: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut now: Option<f64> = None;
    let mut sample: BTreeMap<String, f64> = BTreeMap::new();
    let flush = |now: Option<f64>, sample: &mut BTreeMap<String, f64>, out: &mut BTreeMap<String, Vec<(f64, f64)>>| {
        if let Some(t) = now {
            for (k, v) in std::mem::take(sample) {
                out.entry(k).or_default().push((t, v));
            }
        }
        sample.clear();
    };
    for line in text.lines() {
        if let Some(ts) = line.strip_prefix("# Timestamp:") {
            flush(now, &mut sample, &mut out);
            now = ts.trim().parse().ok();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // name{labels} value [timestamp]
        let (name_part, rest) = match line.find('{') {
            Some(i) => {
                let close = line[i..].find('}').map_or(line.len(), |j| i + j + 1);
                (&line[..i], &line[close..])
            }
            None => line.split_once(' ').map_or((line, ""), |(a, b)| (a, b)),
        };
        if let Some(v) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            *sample.entry(name_part.trim_end_matches("_total").to_string()).or_default() += v;
        }
    }
    flush(now, &mut sample, &mut out);
    out
}

/// Field → [(seconds since the first scrape, value)].
pub type Timeline = BTreeMap<String, Vec<(f64, f64)>>;

/// Summaries of every `metrics/raw/*.log` under `dir`, and their gauges over time;
/// `None` when there are no logs.
pub fn observability(dir: &Path) -> Result<Option<(Observability, Timeline)>> {
    let raw = dir.join("metrics/raw");
    let Ok(entries) = std::fs::read_dir(&raw) else { return Ok(None) };
    let mut logs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
    logs.sort();
    let mut components = Vec::new();
    let mut timeline = Timeline::new();
    for log in logs {
        let text = std::fs::read_to_string(&log).with_context(|| format!("cannot read {}", log.display()))?;
        let series = parse_log(&text);
        let label = log.file_stem().and_then(|s| s.to_str()).unwrap_or("server").to_string();
        let mut aggregate = BTreeMap::new();
        let mut time_series = BTreeMap::new();
        for (names, field, units) in GAUGES {
            if let Some(points) = names.iter().find_map(|n| series.get(*n)) {
                let values: Vec<f64> = points.iter().map(|p| p.1).collect();
                if let Some(s) = Statistics::of(units, &values) {
                    aggregate.insert(field.to_string(), s);
                }
                if TIME_SERIES_FIELDS.contains(&field) {
                    let series =
                        points.iter().map(|(t, v)| TimeSeriesPoint { ts: rfc3339(*t), value: Some(*v), ..Default::default() }).collect();
                    time_series.insert(field.to_string(), TimeSeriesData { units: units.to_string(), series });
                }
                let t0 = points.first().map_or(0.0, |p| p.0);
                timeline.entry(field.to_string()).or_default().extend(points.iter().map(|(t, v)| (t - t0, *v)));
            }
        }
        if let (Some(h), Some(q)) = (series.get("vllm:prefix_cache_hits"), series.get("vllm:prefix_cache_queries")) {
            let delta = |s: &Vec<(f64, f64)>| s.last().map_or(0.0, |l| l.1) - s.first().map_or(0.0, |f| f.1);
            if delta(q) > 0.0 {
                aggregate.insert("cache_hit_rate".into(), Statistics::value("fraction", delta(h) / delta(q)));
            }
        }
        components.push(ComponentObservability {
            component_label: label,
            aggregate: Some(aggregate),
            time_series: (!time_series.is_empty()).then_some(time_series),
            raw_data_path: Some(log.strip_prefix(dir).unwrap_or(&log).display().to_string()),
        });
    }
    if components.is_empty() {
        return Ok(None);
    }
    Ok(Some((Observability { components: Some(components) }, timeline)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scrapes_and_summarizes() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("metrics/raw");
        std::fs::create_dir_all(&raw).unwrap();
        let scrape = |t: f64, kv: f64, run: f64, hits: f64, queries: f64| {
            format!(
                "# Timestamp: {t}\n# Pod: sim\n# HELP vllm:kv_cache_usage_perc x\n# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{{model_name=\"m\"}} {kv}\nvllm:num_requests_running{{model_name=\"m\"}} {run}\nvllm:num_requests_waiting{{model_name=\"m\"}} 0\nvllm:prefix_cache_hits_total{{model_name=\"m\"}} {hits}\nvllm:prefix_cache_queries_total{{model_name=\"m\"}} {queries}\n"
            )
        };
        let log = format!(
            "{}{}{}",
            scrape(100.0, 0.1, 2.0, 0.0, 0.0),
            scrape(101.0, 0.3, 4.0, 50.0, 100.0),
            scrape(102.0, 0.2, 3.0, 150.0, 300.0)
        );
        std::fs::write(raw.join("sim.log"), log).unwrap();
        let (obs, timeline) = observability(dir.path()).unwrap().unwrap();
        let c = &obs.components.unwrap()[0];
        let a = c.aggregate.as_ref().unwrap();
        assert!((a["kv_cache_usage"].mean - 0.2).abs() < 1e-12);
        assert_eq!(a["running_requests"].max, Some(4.0));
        assert_eq!(a["cache_hit_rate"].mean, 0.5);
        assert_eq!(c.raw_data_path.as_deref(), Some("metrics/raw/sim.log"));
        let kv = &c.time_series.as_ref().unwrap()["kv_cache_usage"];
        assert_eq!(kv.units, "fraction");
        let points: Vec<(&str, Option<f64>)> = kv.series.iter().map(|p| (p.ts.as_str(), p.value)).collect();
        assert_eq!(
            points,
            [("1970-01-01T00:01:40.000Z", Some(0.1)), ("1970-01-01T00:01:41.000Z", Some(0.3)), ("1970-01-01T00:01:42.000Z", Some(0.2))]
        );
        assert_eq!(timeline["running_requests"], vec![(0.0, 2.0), (1.0, 4.0), (2.0, 3.0)]);
        assert!(observability(&dir.path().join("nothing")).unwrap().is_none());
    }
}
