//! Per-window figures over a run: the report's `request_performance.time_series`.
//!
//! A run is cut into equal windows from its first send (1 s, or wider so that a long
//! run has at most [`MAX_WINDOWS`]). Per-request latencies fall into the window in which
//! the request completed; each window reports their mean, min, p50, p90, p99 and max
//! (numpy-linear percentiles, found by selection rather than a sort). ITL is the mean
//! gap of the window's requests. Rates count prompt tokens at the send, output tokens at
//! the chunk that carried them, and requests at completion, over the window's length
//! (the last window ends at the last completion; a tail under half a window joins the
//! window before it).
//!
//! The native harness's records feed [`windows`] as they stream; other tools' per-request
//! records (inference-perf's lifecycle file) go through [`windows_of`].
//!
//! Records are streamed through several threads, so the counts are first kept per
//! 100 ms [`Ticks`] keyed by absolute time, and cut into windows once the run's start is
//! known.

use std::collections::{BTreeMap, HashMap};

use super::br::{TimeSeriesData, TimeSeriesPoint, TimeSeriesRequestPerformance, rfc3339};

/// Most windows a run is cut into.
pub const MAX_WINDOWS: u64 = 100;
const TICK_NS: u64 = 100_000_000;

/// Prompt tokens, output tokens and completed requests per 100 ms tick (absolute ns / 10⁸).
#[derive(Clone, Debug, Default)]
pub struct Ticks(HashMap<u64, [u64; 3]>);

impl Ticks {
    pub fn input(&mut self, ns: u64, tokens: u64) {
        self.0.entry(ns / TICK_NS).or_default()[0] += tokens;
    }

    /// Output tokens of `(ns, tokens)` chunks in time order; chunks sharing a tick are
    /// added once (a stream has dozens per tick, and this runs for every record).
    pub fn output(&mut self, chunks: &[(u64, u32)]) {
        let mut run: Option<(u64, u64)> = None;
        for &(ns, n) in chunks {
            let tick = ns / TICK_NS;
            match &mut run {
                Some((t, sum)) if *t == tick => *sum += u64::from(n),
                _ => {
                    if let Some((t, sum)) = run {
                        self.0.entry(t).or_default()[1] += sum;
                    }
                    run = Some((tick, u64::from(n)));
                }
            }
        }
        if let Some((t, sum)) = run {
            self.0.entry(t).or_default()[1] += sum;
        }
    }

    pub fn completed(&mut self, ns: u64) {
        self.0.entry(ns / TICK_NS).or_default()[2] += 1;
    }

    pub fn merge(&mut self, other: Ticks) {
        for (t, c) in other.0 {
            let e = self.0.entry(t).or_default();
            for i in 0..3 {
                e[i] += c[i];
            }
        }
    }
}

/// A window's distribution of one latency family (seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowStats {
    pub mean: f64,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// A run's windows, with offsets from its first send; turned into report points by
/// [`Windows::report`] once the wall-clock start is known.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Windows {
    pub width_s: f64,
    /// Window starts, seconds from the first send.
    pub offsets: Vec<f64>,
    /// (report key, units, one entry per window; `None` where no request completed).
    pub latency: Vec<(&'static str, &'static str, Vec<Option<WindowStats>>)>,
    /// (report key, units, one rate per window).
    pub throughput: Vec<(&'static str, &'static str, Vec<f64>)>,
}

/// Per-request inputs aligned with `done_ns`: one value per completed request, NaN
/// where the request has none (e.g. TPOT of a one-token answer).
pub struct PerRequest<'a> {
    pub done_ns: &'a [f64],
    /// (report key, units, values)
    pub families: Vec<(&'static str, &'static str, &'a [f64])>,
    /// Sum of each request's inter-token gaps and their number, for the ITL mean.
    pub itl_sum: &'a [f64],
    pub itl_n: &'a [f64],
}

impl<'a> PerRequest<'a> {
    /// The report's per-request latency families, aligned with `done_ns`.
    pub fn latencies(done_ns: &'a [f64], [ttft, tpot, ntpot, e2e]: [&'a [f64]; 4], itl_sum: &'a [f64], itl_n: &'a [f64]) -> PerRequest<'a> {
        PerRequest {
            done_ns,
            families: vec![
                ("time_to_first_token", "s", ttft),
                ("time_per_output_token", "s/token", tpot),
                ("normalized_time_per_output_token", "s/token", ntpot),
                ("request_latency", "s", e2e),
            ],
            itl_sum,
            itl_n,
        }
    }
}

/// numpy-linear percentile `q` (0–1) of an unsorted, NaN-free, non-empty slice,
/// reordering it. `O(n)` by selection.
fn select_percentile(v: &mut [f64], q: f64) -> f64 {
    let rank = q * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let frac = rank - lo as f64;
    let (_, at, right) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let lo_v = *at;
    if frac == 0.0 || right.is_empty() {
        return lo_v;
    }
    let hi_v = right.iter().copied().fold(f64::INFINITY, f64::min);
    lo_v + (hi_v - lo_v) * frac
}

fn window_stats(v: &mut [f64]) -> WindowStats {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let (min, max) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let p50 = select_percentile(v, 0.50);
    let p90 = select_percentile(v, 0.90);
    let p99 = select_percentile(v, 0.99);
    WindowStats { mean, min: Some(min), p50: Some(p50), p90: Some(p90), p99: Some(p99), max: Some(max) }
}

/// Window width for a run of `duration_ns`: 1 s, or whole seconds enough to stay
/// within [`MAX_WINDOWS`].
pub fn width_ns(duration_ns: u64) -> u64 {
    duration_ns.div_ceil(MAX_WINDOWS * 1_000_000_000).max(1) * 1_000_000_000
}

/// Cuts a run spanning `[start_ns, end_ns]` into windows.
pub fn windows(start_ns: u64, end_ns: u64, req: &PerRequest, ticks: &Ticks) -> Windows {
    let duration = end_ns.saturating_sub(start_ns);
    let width = width_ns(duration);
    let mut count = duration.div_ceil(width).max(1);
    // A tail shorter than half a window joins the window before it: a rate over a sliver
    // of time (one completion in 50 ms) is noise, not a figure.
    if count > 1 && duration - (count - 1) * width < width / 2 {
        count -= 1;
    }
    let count = count as usize;
    let index = |ns: f64| (((ns - start_ns as f64).max(0.0) / width as f64) as usize).min(count - 1);
    // Group request indices by window once (counting sort), then gather each family.
    let mut starts = vec![0usize; count + 1];
    let slot: Vec<u32> = req.done_ns.iter().map(|&ns| index(ns) as u32).collect();
    for &w in &slot {
        starts[w as usize + 1] += 1;
    }
    for i in 0..count {
        starts[i + 1] += starts[i];
    }
    let mut order = vec![0u32; slot.len()];
    let mut fill = starts.clone();
    for (i, &w) in slot.iter().enumerate() {
        order[fill[w as usize]] = i as u32;
        fill[w as usize] += 1;
    }
    let mut scratch = Vec::new();
    let mut latency = Vec::new();
    for (key, units, values) in &req.families {
        let per_window = (0..count)
            .map(|w| {
                scratch.clear();
                scratch.extend(order[starts[w]..starts[w + 1]].iter().map(|&i| values[i as usize]).filter(|x| !x.is_nan()));
                (!scratch.is_empty()).then(|| window_stats(&mut scratch))
            })
            .collect();
        latency.push((*key, *units, per_window));
    }
    let itl = (0..count)
        .map(|w| {
            let (sum, n) = order[starts[w]..starts[w + 1]]
                .iter()
                .fold((0.0, 0.0), |(s, n), &i| (s + req.itl_sum[i as usize], n + req.itl_n[i as usize]));
            (n > 0.0).then(|| WindowStats { mean: sum / n, min: None, p50: None, p90: None, p99: None, max: None })
        })
        .collect();
    latency.push(("inter_token_latency", "s", itl));

    let mut sums = vec![[0u64; 3]; count];
    for (&tick, c) in &ticks.0 {
        let w = index((tick * TICK_NS) as f64);
        for i in 0..3 {
            sums[w][i] += c[i];
        }
    }
    let span = |w: usize| {
        let from = w as u64 * width;
        let to = if w + 1 == count { duration } else { (w as u64 + 1) * width };
        let to = to.max(from + TICK_NS);
        (to - from) as f64 / 1e9
    };
    let rate = |i: usize| (0..count).map(|w| sums[w][i] as f64 / span(w)).collect::<Vec<f64>>();
    let (input, output, requests) = (rate(0), rate(1), rate(2));
    let total = input.iter().zip(&output).map(|(a, b)| a + b).collect();
    Windows {
        width_s: width as f64 / 1e9,
        offsets: (0..count).map(|w| (w as u64 * width) as f64 / 1e9).collect(),
        latency,
        throughput: vec![
            ("input_token_rate", "tokens/s", input),
            ("output_token_rate", "tokens/s", output),
            ("total_token_rate", "tokens/s", total),
            ("request_rate", "queries/s", requests),
        ],
    }
}

/// One successful request as a tool recorded it, in seconds on any one clock.
#[derive(Clone, Debug, Default)]
pub struct RequestTimes {
    pub start: f64,
    pub end: f64,
    /// When each output token (or chunk of tokens) arrived.
    pub token_times: Vec<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Windows of a tool's per-request records (the native harness streams its own). TTFT
/// is the first token time from the start, TPOT the mean gap after it, NTPOT E2E over
/// the output tokens; output tokens the times do not account for arrive with the last.
pub fn windows_of(requests: &[RequestTimes]) -> Option<Windows> {
    let ns = |t: f64| (t * 1e9).max(0.0) as u64;
    let start = requests.iter().map(|r| ns(r.start)).min()?;
    let end = requests.iter().map(|r| ns(r.end)).max()?;
    let (mut done, mut ttft, mut tpot, mut ntpot, mut e2e, mut itl_sum, mut itl_n) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ticks = Ticks::default();
    for r in requests {
        let (first, last) = (r.token_times.first().copied(), r.token_times.last().copied());
        let gaps = r.token_times.len().saturating_sub(1);
        done.push(ns(r.end) as f64);
        ttft.push(first.map_or(f64::NAN, |f| f - r.start));
        tpot.push(first.zip(last).filter(|_| gaps > 0).map_or(f64::NAN, |(f, l)| (l - f) / gaps as f64));
        ntpot.push(if r.output_tokens > 0 { (r.end - r.start) / r.output_tokens as f64 } else { f64::NAN });
        e2e.push(r.end - r.start);
        itl_sum.push(first.zip(last).map_or(0.0, |(f, l)| l - f));
        itl_n.push(gaps as f64);
        ticks.input(ns(r.start), r.input_tokens);
        let mut chunks: Vec<(u64, u32)> = r.token_times.iter().map(|&t| (ns(t), 1)).collect();
        let unaccounted = r.output_tokens.saturating_sub(chunks.len() as u64);
        if unaccounted > 0 {
            chunks.push((ns(last.unwrap_or(r.end)), u32::try_from(unaccounted).unwrap_or(u32::MAX)));
        }
        ticks.output(&chunks);
        ticks.completed(ns(r.end));
    }
    let per_request = PerRequest::latencies(&done, [&ttft, &tpot, &ntpot, &e2e], &itl_sum, &itl_n);
    Some(windows(start, end, &per_request, &ticks))
}

impl Windows {
    /// The report's time series, with window starts at `start_unix` + offset.
    pub fn report(&self, start_unix: f64) -> TimeSeriesRequestPerformance {
        let ts = |w: usize| rfc3339(start_unix + self.offsets[w]);
        let latency: BTreeMap<String, TimeSeriesData> = self
            .latency
            .iter()
            .map(|(key, units, windows)| {
                let series = windows
                    .iter()
                    .enumerate()
                    .filter_map(|(w, s)| {
                        s.map(|s| TimeSeriesPoint {
                            ts: ts(w),
                            mean: Some(s.mean),
                            min: s.min,
                            p50: s.p50,
                            p90: s.p90,
                            p99: s.p99,
                            max: s.max,
                            ..Default::default()
                        })
                    })
                    .collect();
                (key.to_string(), TimeSeriesData { units: units.to_string(), series })
            })
            .filter(|(_, d)| !d.series.is_empty())
            .collect();
        let throughput = self
            .throughput
            .iter()
            .map(|(key, units, rates)| {
                let series =
                    rates.iter().enumerate().map(|(w, r)| TimeSeriesPoint { ts: ts(w), value: Some(*r), ..Default::default() }).collect();
                (key.to_string(), TimeSeriesData { units: units.to_string(), series })
            })
            .collect();
        TimeSeriesRequestPerformance { latency: (!latency.is_empty()).then_some(latency), throughput: Some(throughput) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    #[test]
    fn selection_percentiles_equal_sorted_ones() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % 1000) as f64 / 7.0
                })
                .collect();
            let s = Summary::of(&v).unwrap();
            let mut w = v.clone();
            let got = window_stats(&mut w);
            for (p, have) in [(50.0, got.p50), (90.0, got.p90), (99.0, got.p99)] {
                assert!((have.unwrap() - s.p(p)).abs() < 1e-12, "n={n} p{p}: {have:?} vs {}", s.p(p));
            }
            assert!((got.mean - s.mean).abs() < 1e-9);
            assert_eq!((got.min, got.max), (Some(s.min), Some(s.max)));
        }
    }

    #[test]
    fn windows_group_by_completion_and_rates_cover_each_window() {
        let s = 1_000_000_000u64; // the run starts at t = 1 s (absolute)
        // Three requests: two complete in window 0, one in window 2 (the run lasts 2.5 s).
        let done = [s as f64 + 0.2e9, s as f64 + 0.8e9, s as f64 + 2.5e9];
        let ttft = [0.1, 0.3, 0.5];
        let tpot = [f64::NAN, 0.01, 0.02];
        let itl_sum = [0.0, 0.09, 0.4];
        let itl_n = [0.0, 9.0, 20.0];
        let req = PerRequest {
            done_ns: &done,
            families: vec![("time_to_first_token", "s", &ttft), ("time_per_output_token", "s/token", &tpot)],
            itl_sum: &itl_sum,
            itl_n: &itl_n,
        };
        let mut ticks = Ticks::default();
        ticks.input(s, 100);
        ticks.input(s + 1_500_000_000, 50);
        ticks.output(&[(s + 100_000_000, 1), (s + 150_000_000, 2), (s + 2_400_000_000, 7)]);
        for d in done {
            ticks.completed(d as u64);
        }
        let w = windows(s, s + 2_500_000_000, &req, &ticks);
        assert_eq!(w.offsets, [0.0, 1.0, 2.0]);
        let (_, _, ttft_w) = &w.latency[0];
        assert_eq!(ttft_w[0].unwrap().mean, 0.2);
        assert_eq!(ttft_w[0].unwrap().p50, Some(0.2));
        assert!(ttft_w[1].is_none());
        assert_eq!(ttft_w[2].unwrap().max, Some(0.5));
        let (_, _, tpot_w) = &w.latency[1];
        assert_eq!(tpot_w[0].unwrap().mean, 0.01, "a NaN is no sample");
        let (key, _, itl_w) = &w.latency[2];
        assert_eq!(*key, "inter_token_latency");
        assert!((itl_w[0].unwrap().mean - 0.01).abs() < 1e-12);
        assert!((itl_w[2].unwrap().mean - 0.02).abs() < 1e-12);
        let rate = |k: &str| w.throughput.iter().find(|t| t.0 == k).unwrap().2.clone();
        assert_eq!(rate("input_token_rate"), [100.0, 50.0, 0.0]);
        // The last window ends at the last completion: 0.5 s long.
        assert_eq!(rate("output_token_rate"), [3.0, 0.0, 14.0]);
        assert_eq!(rate("request_rate"), [2.0, 0.0, 2.0]);
        assert_eq!(rate("total_token_rate"), [103.0, 50.0, 14.0]);
        let r = w.report(1_762_365_600.0);
        let lat = r.latency.unwrap();
        assert_eq!(lat["time_to_first_token"].series.len(), 2, "empty windows have no latency point");
        assert_eq!(lat["time_to_first_token"].series[1].ts, "2025-11-05T18:00:02.000Z");
        assert_eq!(r.throughput.unwrap()["request_rate"].series.len(), 3);
    }

    #[test]
    fn a_short_tail_joins_the_last_window() {
        let s = 1_000_000_000u64;
        let done = [s as f64 + 0.5e9, s as f64 + 2.2e9];
        let none = [f64::NAN; 2];
        let req = PerRequest { done_ns: &done, families: vec![("request_latency", "s", &none)], itl_sum: &[0.0; 2], itl_n: &[0.0; 2] };
        let mut ticks = Ticks::default();
        for d in done {
            ticks.completed(d as u64);
        }
        let w = windows(s, s + 2_200_000_000, &req, &ticks);
        assert_eq!(w.offsets, [0.0, 1.0], "the 0.2 s tail belongs to the second window");
        let rates = &w.throughput.iter().find(|t| t.0 == "request_rate").unwrap().2;
        assert_eq!(rates[0], 1.0);
        assert!((rates[1] - 1.0 / 1.2).abs() < 1e-12, "{rates:?}");
        assert!(w.latency[0].2.iter().all(Option::is_none), "NaN-only windows have no point");
    }

    #[test]
    fn tool_records_make_the_same_windows() {
        let reqs = [
            RequestTimes { start: 10.0, end: 10.5, token_times: vec![10.1, 10.2, 10.5], input_tokens: 100, output_tokens: 3 },
            RequestTimes { start: 10.2, end: 11.6, token_times: vec![10.4, 11.6], input_tokens: 50, output_tokens: 5 },
        ];
        let w = windows_of(&reqs).unwrap();
        assert_eq!(w.offsets, [0.0, 1.0], "1.6 s: two windows");
        let ttft = &w.latency.iter().find(|l| l.0 == "time_to_first_token").unwrap().2;
        assert!((ttft[0].unwrap().mean - 0.1).abs() < 1e-9 && (ttft[1].unwrap().mean - 0.2).abs() < 1e-9);
        let tpot = &w.latency.iter().find(|l| l.0 == "time_per_output_token").unwrap().2;
        assert!((tpot[0].unwrap().mean - 0.2).abs() < 1e-9, "(10.5 - 10.1) / 2");
        let rate = |k: &str| w.throughput.iter().find(|t| t.0 == k).unwrap().2.clone();
        // 3 + 1 tokens in the first second; the second request's last time carries its 4 others.
        assert_eq!(rate("output_token_rate")[0], 4.0);
        assert!((rate("output_token_rate")[1] - 4.0 / 0.6).abs() < 1e-9);
        assert_eq!(rate("input_token_rate")[0], 150.0);
        assert!(windows_of(&[]).is_none());
    }

    #[test]
    fn long_runs_get_wider_windows() {
        assert_eq!(width_ns(5_000_000_000), 1_000_000_000);
        assert_eq!(width_ns(100_000_000_000), 1_000_000_000);
        assert_eq!(width_ns(100_000_000_001), 2_000_000_000);
        assert_eq!(width_ns(3_600_000_000_000), 36_000_000_000);
    }
}
