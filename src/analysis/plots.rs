//! PNG plots of a comparison (plotters, bitmap backend, an embedded DejaVu Sans):
//!
//! * `compare_<metric>.png` — one bar per treatment, the best one highlighted;
//! * `scatter_<latency>_vs_qps.png` — latency against achieved throughput;
//! * `cdf_overlay_<metric>.png` — per-request distributions of every treatment;
//! * `dist_<metric>_<treatment>.png` — per-request histograms.
//!
//! Distributions are drawn from [`Quantiles`] (1,001 evenly spaced quantiles per metric),
//! which a run's analysis keeps instead of every sample: exact at each 0.1 % step, and a
//! few KB whatever the number of requests.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const WIDTH: u32 = 900;
const HEIGHT: u32 = 520;
const HIGHLIGHT: RGBColor = RGBColor(0xd6, 0x5f, 0x00);
const BAR: RGBColor = RGBColor(0x4c, 0x78, 0xa8);
/// A colour-blind-safe palette (Okabe–Ito).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0xd5, 0x5e, 0x00),
    RGBColor(0xf0, 0xe4, 0x42),
    RGBColor(0x00, 0x00, 0x00),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is embedded and valid; failing here would be a build defect.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

/// 1,001 quantiles (q0, q0.1 %, …, q100 %) of a sample; empty for no sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles(pub Vec<f64>);

impl Quantiles {
    pub fn of(values: &[f64]) -> Quantiles {
        let q = |v: &[f64]| Quantiles((0..=1000).map(|i| crate::stats::percentile_sorted(v, i as f64 / 10.0)).collect());
        // Converters often hand over samples already sorted (the native one sorts in place).
        if !values.is_empty() && values.iter().all(|x| x.is_finite()) && values.is_sorted_by(|a, b| a <= b) {
            return q(values);
        }
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Quantiles::default();
        }
        v.sort_unstable_by(f64::total_cmp);
        q(&v)
    }
}

/// Per-request distributions of one run (seconds), for plots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Distributions {
    pub ttft: Quantiles,
    pub tpot: Quantiles,
    pub itl: Quantiles,
    pub e2e: Quantiles,
    /// Server metrics over the run: field → [(seconds since the first scrape, value)].
    #[serde(default)]
    pub server: std::collections::BTreeMap<String, Vec<(f64, f64)>>,
    /// Client-side figures per window (`ttft_p90`, `output_token_rate`, …):
    /// [(seconds since the first send, at the window's middle; value)].
    #[serde(default)]
    pub windows: std::collections::BTreeMap<String, Vec<(f64, f64)>>,
}

/// Per-window figures plotted over time: (latency family, its key in the plots).
const WINDOW_LATENCIES: [(&str, &str); 2] = [("time_to_first_token", "ttft_p90"), ("request_latency", "e2e_p90")];

impl Distributions {
    /// The distributions of a converted load, and its per-window figures when it has them.
    pub fn of(c: &super::convert::Converted) -> Distributions {
        let s = &c.samples;
        let mut windows = std::collections::BTreeMap::new();
        if let Some(w) = &c.windows {
            let mid = |i: usize| w.offsets[i] + w.width_s / 2.0;
            for (family, key) in WINDOW_LATENCIES {
                if let Some((_, _, per)) = w.latency.iter().find(|l| l.0 == family) {
                    let points = per.iter().enumerate().filter_map(|(i, p)| p.and_then(|p| p.p90).map(|v| (mid(i), v))).collect();
                    windows.insert(key.to_string(), points);
                }
            }
            for (key, _, rates) in &w.throughput {
                windows.insert(key.to_string(), rates.iter().enumerate().map(|(i, r)| (mid(i), *r)).collect());
            }
        }
        Distributions {
            ttft: Quantiles::of(&s.ttft),
            tpot: Quantiles::of(&s.tpot),
            itl: Quantiles::of(&s.itl),
            e2e: Quantiles::of(&s.e2e),
            server: Default::default(),
            windows,
        }
    }

    fn get(&self, metric: &str) -> &Quantiles {
        match metric {
            "ttft" => &self.ttft,
            "tpot" => &self.tpot,
            "itl" => &self.itl,
            _ => &self.e2e,
        }
    }
}

/// One treatment in the plots.
#[derive(Clone, Debug)]
pub struct PlotRow {
    pub label: String,
    /// Comparison columns (`ttft_mean_s`, `output_tps`, …) by name.
    pub values: std::collections::BTreeMap<String, f64>,
    pub distributions: Distributions,
}

/// Above this many treatments bars and per-treatment figures stop being readable (and a
/// thousand-run sweep would spend minutes drawing them): they are left out.
pub const MAX_BARS: usize = 40;
pub const MAX_LINES: usize = 12;

/// Bar metrics: (column, title, unit scale, unit, lower is better).
const BARS: [(&str, &str, f64, &str, bool); 8] = [
    ("ttft_mean_s", "TTFT (mean)", 1e3, "ms", true),
    ("ttft_p99_s", "TTFT (p99)", 1e3, "ms", true),
    ("tpot_mean_s", "TPOT (mean)", 1e3, "ms", true),
    ("tpot_p99_s", "TPOT (p99)", 1e3, "ms", true),
    ("itl_mean_s", "ITL (mean)", 1e3, "ms", true),
    ("e2e_mean_s", "E2E latency (mean)", 1e3, "ms", true),
    ("output_tps", "Output throughput", 1.0, "tokens/s", false),
    ("request_qps", "Request throughput", 1.0, "requests/s", false),
];

fn err<E: std::fmt::Display>(what: &Path) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow!("cannot draw {}: {e}", what.display())
}

/// Every plot for `rows` into `dir`; returns the files written.
pub fn render_all(dir: &Path, rows: &[PlotRow]) -> Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = Vec::new();
    for (col, title, scale, unit, lower) in BARS.iter().copied().filter(|_| rows.len() <= MAX_BARS) {
        let points: Vec<(&str, f64)> = rows.iter().filter_map(|r| r.values.get(col).map(|v| (r.label.as_str(), v * scale))).collect();
        if points.is_empty() {
            continue;
        }
        let path = dir.join(format!("compare_{}.png", col.trim_end_matches("_s")));
        bars(&path, title, unit, &points, lower)?;
        out.push(path);
    }
    for (col, title) in [("ttft_p50_s", "TTFT p50"), ("ttft_p99_s", "TTFT p99"), ("e2e_mean_s", "E2E mean"), ("tpot_mean_s", "TPOT mean")] {
        let points: Vec<(&str, f64, f64)> =
            rows.iter().filter_map(|r| Some((r.label.as_str(), *r.values.get("request_qps")?, r.values.get(col)? * 1e3))).collect();
        if points.len() < 2 {
            continue;
        }
        let path = dir.join(format!("scatter_{}_vs_qps.png", col.trim_end_matches("_s")));
        scatter(&path, &format!("{title} vs achieved throughput"), &points)?;
        out.push(path);
    }
    for (metric, title) in [("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E latency")] {
        let lines: Vec<(&str, &Quantiles)> =
            rows.iter().map(|r| (r.label.as_str(), r.distributions.get(metric))).filter(|(_, q)| !q.0.is_empty()).collect();
        if lines.is_empty() || lines.len() > MAX_LINES {
            continue;
        }
        let path = dir.join(format!("cdf_overlay_{metric}.png"));
        cdf(&path, &format!("{title}: distribution per treatment"), &lines)?;
        out.push(path);
        for (label, q) in &lines {
            let path = dir.join(format!("dist_{metric}_{}.png", file_safe(label)));
            histogram(&path, &format!("{title} — {label}"), q)?;
            out.push(path);
        }
    }
    for (field, title, unit, scale) in [
        ("ttft_p90", "TTFT p90 per window", "ms", 1e3),
        ("e2e_p90", "E2E latency p90 per window", "ms", 1e3),
        ("output_token_rate", "Output throughput per window", "tokens/s", 1.0),
        ("request_rate", "Completed requests per window", "requests/s", 1.0),
    ] {
        let lines: Vec<(&str, Vec<(f64, f64)>)> = rows
            .iter()
            .filter_map(|r| {
                let s = r.distributions.windows.get(field).filter(|s| s.len() > 1)?;
                Some((r.label.as_str(), s.iter().map(|(t, v)| (*t, v * scale)).collect()))
            })
            .collect();
        if lines.is_empty() || lines.len() > MAX_LINES {
            continue;
        }
        let lines: Vec<(&str, &[(f64, f64)])> = lines.iter().map(|(l, s)| (*l, s.as_slice())).collect();
        let path = dir.join(format!("over_time_{field}.png"));
        timeseries(&path, &format!("{title} (client side)"), unit, "seconds into the run (window middle)", &lines)?;
        out.push(path);
    }
    for (field, title, unit) in [
        ("kv_cache_usage", "KV-cache usage", "fraction"),
        ("running_requests", "Running requests", "requests"),
        ("waiting_requests", "Waiting requests", "requests"),
    ] {
        let lines: Vec<(&str, &[(f64, f64)])> = rows
            .iter()
            .filter_map(|r| r.distributions.server.get(field).filter(|s| !s.is_empty()).map(|s| (r.label.as_str(), s.as_slice())))
            .collect();
        if lines.is_empty() || lines.len() > MAX_LINES {
            continue;
        }
        let path = dir.join(format!("server_{field}.png"));
        timeseries(&path, &format!("{title} during each run (model server /metrics)"), unit, "seconds into the run", &lines)?;
        out.push(path);
    }
    Ok(out)
}

fn timeseries(path: &Path, title: &str, unit: &str, x_desc: &str, lines: &[(&str, &[(f64, f64)])]) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let xmax = lines.iter().flat_map(|(_, s)| s.iter().map(|p| p.0)).fold(0.0f64, f64::max).max(1.0);
    let ymax = lines.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).fold(0.0f64, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err(path))?;
    chart.configure_mesh().x_desc(x_desc).y_desc(unit).label_style((FONT, 13)).draw().map_err(err(path))?;
    for (i, (label, s)) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))
            .map_err(err(path))?
            .label(label.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, path)?;
    root.present().map_err(err(path))
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// The series legend every line chart draws, boxed on a translucent background.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition, path: &Path) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(err(path))
}

fn file_safe(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

fn bars(path: &Path, title: &str, unit: &str, points: &[(&str, f64)], lower_is_better: bool) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let best = points
        .iter()
        .enumerate()
        .min_by(|a, b| if lower_is_better { a.1.1.total_cmp(&b.1.1) } else { b.1.1.total_cmp(&a.1.1) })
        .map(|(i, _)| i);
    let top = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-12) * 1.15;
    let n = points.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} ({})", if lower_is_better { "lower is better" } else { "higher is better" }), (FONT, 22))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        // A segmented range a..b has b − a + 1 segments.
        .build_cartesian_2d((0..(n - 1).max(0)).into_segmented(), 0f64..top)
        .map_err(err(path))?;
    let labels: Vec<String> = points.iter().map(|p| p.0.to_string()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(points.len())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc(unit)
        .label_style((FONT, 13))
        .draw()
        .map_err(err(path))?;
    chart
        .draw_series(points.iter().enumerate().map(|(i, (_, v))| {
            let color = if Some(i) == best { HIGHLIGHT } else { BAR };
            let mut bar = Rectangle::new([(SegmentValue::Exact(i as i32), 0.0), (SegmentValue::Exact(i as i32 + 1), *v)], color.filled());
            bar.set_margin(0, 0, 10, 10);
            bar
        }))
        .map_err(err(path))?;
    chart
        .draw_series(points.iter().enumerate().map(|(i, (_, v))| {
            let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            Text::new(format_value(*v), (SegmentValue::CenterOf(i as i32), v + top * 0.01), style)
        }))
        .map_err(err(path))?;
    root.present().map_err(err(path))
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn scatter(path: &Path, title: &str, points: &[(&str, f64, f64)]) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let xmax = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let ymax = points.iter().map(|p| p.2).fold(0.0f64, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err(path))?;
    chart.configure_mesh().x_desc("achieved requests/s").y_desc("ms").label_style((FONT, 13)).draw().map_err(err(path))?;
    // One curve per series: a label `setup/treatment#rep` belongs to series `setup`.
    type Series<'a> = (&'a str, Vec<(&'a str, f64, f64)>);
    let mut series: Vec<Series> = Vec::new();
    for p in points {
        let name = p.0.rsplit_once('/').map_or("", |(s, _)| s);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(*p),
            None => series.push((name, vec![*p])),
        }
    }
    for (i, (name, pts)) in series.iter_mut().enumerate() {
        pts.sort_by(|a, b| a.1.total_cmp(&b.1));
        let color = PALETTE[i % PALETTE.len()];
        let line = chart.draw_series(LineSeries::new(pts.iter().map(|p| (p.1, p.2)), color.stroke_width(2))).map_err(err(path))?;
        if !name.is_empty() {
            let label = name.to_string();
            line.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        chart.draw_series(pts.iter().map(|p| Circle::new((p.1, p.2), 5, color.filled()))).map_err(err(path))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Text::new(p.0.rsplit_once('/').map_or(p.0, |(_, t)| t).to_string(), (p.1, p.2 + ymax * 0.03), (FONT, 12))),
            )
            .map_err(err(path))?;
    }
    if series.len() > 1 {
        legend(&mut chart, SeriesLabelPosition::UpperLeft, path)?;
    }
    root.present().map_err(err(path))
}

fn cdf(path: &Path, title: &str, lines: &[(&str, &Quantiles)]) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    // Up to the largest p99.9, so one outlier does not squash every curve.
    let xmax = lines.iter().map(|(_, q)| q.0[999] * 1e3).fold(0.0f64, f64::max).max(1e-9);
    let xmin = lines.iter().map(|(_, q)| q.0[0] * 1e3).fold(f64::INFINITY, f64::min).min(xmax);
    let pad = ((xmax - xmin) * 0.05).max(xmax * 0.01);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin - pad).max(0.0)..xmax + pad, 0f64..1.0)
        .map_err(err(path))?;
    chart.configure_mesh().x_desc("ms").y_desc("fraction of requests").label_style((FONT, 13)).draw().map_err(err(path))?;
    for (i, (label, q)) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(q.0.iter().enumerate().map(|(k, v)| (v * 1e3, k as f64 / 1000.0)), color.stroke_width(2)))
            .map_err(err(path))?
            .label(label.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight, path)?;
    root.present().map_err(err(path))
}

fn histogram(path: &Path, title: &str, q: &Quantiles) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (lo, hi) = (q.0[0] * 1e3, q.0[999] * 1e3);
    let width = ((hi - lo) / 40.0).max(1e-9);
    // Each 0.1 % quantile step holds 0.1 % of the requests.
    let mut counts = [0.0f64; 40];
    for v in &q.0[..1000] {
        let b = (((v * 1e3 - lo) / width) as usize).min(39);
        counts[b] += 0.1;
    }
    let top = counts.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..lo + 40.0 * width, 0f64..top)
        .map_err(err(path))?;
    chart.configure_mesh().x_desc("ms").y_desc("% of samples").label_style((FONT, 13)).draw().map_err(err(path))?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x = lo + i as f64 * width;
            Rectangle::new([(x, 0.0), (x + width * 0.9, *c)], BAR.filled())
        }))
        .map_err(err(path))?;
    root.present().map_err(err(path))
}
