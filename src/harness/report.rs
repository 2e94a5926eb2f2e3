//! Run metrics from per-request records, with the definitions of
//! `reference/harness-and-sim.md` §5a:
//!
//! | metric | formula |
//! |---|---|
//! | TTFT | first choice-bearing event − send |
//! | E2E | last content event − send |
//! | TPOT | (E2E − TTFT)/(n − 1), n > 1 |
//! | ITL | gaps between content events, pooled |
//! | NTPOT | E2E / n |
//! | client queue | send − scheduled arrival |
//! | duration T | the stages' measured windows ([`super::window`]); without them first send → last completion |
//! | throughput | completed in the window /T, Σprompt/T, Σoutput/T over those requests |
//! | peak output tok/s | max over 1 s buckets of tokens at their chunk times |
//! | peak concurrency | sweep line over [send, end), ends before starts |
//! | mean concurrency | ΣE2E / T |
//! | KV hit % | 100·Σcached/Σprompt over requests reporting cached tokens |
//!
//! Failed, incomplete and warm-up requests never enter latency statistics; `n` is the
//! server's `usage.completion_tokens` when reported.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::record::{RequestRecord, Status};
use super::window::{StageWindow, WindowAcc};
use crate::stats::Summary;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    pub total: usize,
    pub completed: usize,
    /// Completed by the end of their stage's window (what throughput counts).
    #[serde(default)]
    pub completed_in_window: usize,
    pub failed: usize,
    pub incomplete: usize,
    pub warmup: usize,
    /// Failures by error class.
    pub errors: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunReport {
    pub requests: Counts,
    pub duration_s: f64,
    pub request_throughput: f64,
    pub input_token_throughput: f64,
    pub output_token_throughput: f64,
    pub total_token_throughput: f64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub ttft_s: Option<Summary>,
    pub e2e_s: Option<Summary>,
    pub tpot_s: Option<Summary>,
    pub itl_s: Option<Summary>,
    pub ntpot_s: Option<Summary>,
    pub client_queue_s: Option<Summary>,
    pub input_tokens: Option<Summary>,
    pub output_tokens: Option<Summary>,
    pub peak_output_tokens_per_s: f64,
    pub peak_concurrency: usize,
    pub mean_concurrency: f64,
    pub kv_cache_hit_percent: Option<f64>,
}

impl RunReport {
    /// The report of `records`, measured over `windows` (see [`super::window`]).
    pub fn from_records(records: &[RequestRecord], windows: Option<&[StageWindow]>) -> RunReport {
        let measured: Vec<&RequestRecord> = records.iter().filter(|r| !r.warmup).collect();
        let ok: Vec<&RequestRecord> = measured.iter().copied().filter(|r| r.ok()).collect();
        let mut counts =
            Counts { total: measured.len(), warmup: records.len() - measured.len(), completed: ok.len(), ..Default::default() };
        for r in &measured {
            match r.status {
                Status::Ok => {}
                Status::Incomplete => {
                    counts.incomplete += 1;
                    *counts.errors.entry(r.error.clone().unwrap_or_else(|| "incomplete".into())).or_default() += 1;
                }
                _ => {
                    counts.failed += 1;
                    *counts.errors.entry(r.error.clone().unwrap_or_else(|| format!("{:?}", r.status))).or_default() += 1;
                }
            }
        }
        let mut window = WindowAcc::new(windows.map(<[StageWindow]>::to_vec));
        for r in &measured {
            window.add(r);
        }
        let start = measured.iter().map(|r| r.sent_ns).min().unwrap_or(0);
        let duration_s = window.duration_s();
        let per_s = |x: f64| if duration_s > 0.0 { x / duration_s } else { 0.0 };
        let counted: Vec<&RequestRecord> = ok.iter().copied().filter(|r| window.counts(r)).collect();
        counts.completed_in_window = counted.len();
        let tokens = |set: &[&RequestRecord]| -> (u64, u64) {
            let input = set.iter().map(|r| u64::from(r.prompt_tokens.unwrap_or(r.input_len))).sum();
            (input, set.iter().map(|r| u64::from(r.output_tokens())).sum())
        };
        let (input, output) = tokens(&counted);
        let (total_input, total_output) = tokens(&ok);
        let collect = |f: &dyn Fn(&RequestRecord) -> Option<f64>| Summary::of(&ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>());
        let itls: Vec<f64> = ok.iter().flat_map(|r| r.itls()).collect();

        // Peak output tokens per second, in 1 s buckets from the first send.
        let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
        for r in &ok {
            for &(ns, n) in &r.chunks {
                *buckets.entry(ns.saturating_sub(start) / 1_000_000_000).or_default() += u64::from(n);
            }
        }
        // Peak concurrency by sweep line; at equal times ends come first.
        let mut events: Vec<(u64, i32)> = Vec::with_capacity(ok.len() * 2);
        for r in &ok {
            let end = r.last_token_ns.unwrap_or(r.done_ns).max(r.sent_ns);
            events.push((r.sent_ns, 1));
            events.push((end, -1));
        }
        events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut cur, mut peak) = (0i32, 0i32);
        for (_, d) in events {
            cur += d;
            peak = peak.max(cur);
        }
        let e2e_sum: f64 = ok.iter().filter_map(|r| r.e2e()).sum();
        let with_cache: Vec<&&RequestRecord> = ok.iter().filter(|r| r.cached_tokens.is_some()).collect();
        let kv = if with_cache.is_empty() {
            None
        } else {
            let cached: u64 = with_cache.iter().map(|r| u64::from(r.cached_tokens.unwrap_or(0))).sum();
            let prompt: u64 = with_cache.iter().map(|r| u64::from(r.prompt_tokens.unwrap_or(r.input_len))).sum();
            (prompt > 0).then(|| 100.0 * cached as f64 / prompt as f64)
        };
        RunReport {
            requests: counts,
            duration_s,
            request_throughput: per_s(counted.len() as f64),
            input_token_throughput: per_s(input as f64),
            output_token_throughput: per_s(output as f64),
            total_token_throughput: per_s((input + output) as f64),
            total_input_tokens: total_input,
            total_output_tokens: total_output,
            ttft_s: collect(&|r| r.ttft()),
            e2e_s: collect(&|r| r.e2e()),
            tpot_s: collect(&|r| r.tpot()),
            itl_s: Summary::of(&itls),
            ntpot_s: collect(&|r| r.ntpot()),
            client_queue_s: Summary::of(&measured.iter().map(|r| r.client_queue()).collect::<Vec<_>>()),
            input_tokens: collect(&|r| Some(f64::from(r.prompt_tokens.unwrap_or(r.input_len)))),
            output_tokens: collect(&|r| Some(f64::from(r.output_tokens()))),
            peak_output_tokens_per_s: buckets.values().copied().max().unwrap_or(0) as f64,
            peak_concurrency: peak.max(0) as usize,
            mean_concurrency: if duration_s > 0.0 { e2e_sum / duration_s } else { 0.0 },
            kv_cache_hit_percent: kv,
        }
    }

    /// A short human-readable table.
    pub fn table(&self) -> String {
        let ms = |s: &Option<Summary>| match s {
            Some(s) => format!("{:>9.2} {:>9.2} {:>9.2} {:>9.2}", s.mean * 1e3, s.median() * 1e3, s.p(99.0) * 1e3, s.max * 1e3),
            None => format!("{:>9} {:>9} {:>9} {:>9}", "-", "-", "-", "-"),
        };
        let mut out = String::new();
        let late = self.requests.completed - self.requests.completed_in_window.min(self.requests.completed);
        let late = if late > 0 { format!(" ({late} after their stage ended)") } else { String::new() };
        out.push_str(&format!(
            "requests: {} completed{late}, {} failed, {} incomplete ({} warm-up excluded) in {:.2} s\n",
            self.requests.completed, self.requests.failed, self.requests.incomplete, self.requests.warmup, self.duration_s
        ));
        out.push_str(&format!(
            "throughput: {:.2} req/s, {:.1} output tok/s, {:.1} total tok/s (peak {:.0} output tok/s, peak concurrency {})\n",
            self.request_throughput,
            self.output_token_throughput,
            self.total_token_throughput,
            self.peak_output_tokens_per_s,
            self.peak_concurrency
        ));
        out.push_str(&format!("{:<14} {:>9} {:>9} {:>9} {:>9}  (ms)\n", "", "mean", "p50", "p99", "max"));
        for (name, s) in [
            ("TTFT", &self.ttft_s),
            ("TPOT", &self.tpot_s),
            ("ITL", &self.itl_s),
            ("E2E", &self.e2e_s),
            ("client queue", &self.client_queue_s),
        ] {
            out.push_str(&format!("{name:<14} {}\n", ms(s)));
        }
        if !self.requests.errors.is_empty() {
            out.push_str(&format!("errors: {:?}\n", self.requests.errors));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sent: u64, chunks: &[u64], n: u32, status: Status) -> RequestRecord {
        RequestRecord {
            id: "r".into(),
            stage: 0,
            warmup: false,
            scheduled_ns: sent,
            sent_ns: sent,
            first_token_ns: chunks.first().copied(),
            last_token_ns: chunks.last().copied(),
            done_ns: chunks.last().copied().unwrap_or(sent) + 1000,
            chunks: chunks.iter().map(|&c| (c, 1)).collect(),
            input_len: 10,
            requested_output: n,
            prompt_tokens: Some(10),
            completion_tokens: Some(n),
            cached_tokens: Some(5),
            status,
            http_status: Some(200),
            error: None,
        }
    }

    #[test]
    fn definitions() {
        let ms = 1_000_000u64;
        let records = vec![
            rec(0, &[20 * ms, 30 * ms, 40 * ms], 3, Status::Ok),
            rec(10 * ms, &[50 * ms, 70 * ms], 2, Status::Ok),
            RequestRecord { error: Some("RateLimitError".into()), ..rec(5 * ms, &[], 0, Status::HttpError) },
        ];
        let r = RunReport::from_records(&records, None);
        assert_eq!((r.requests.completed, r.requests.failed), (2, 1));
        let ttft = r.ttft_s.unwrap();
        assert!((ttft.mean - 0.03).abs() < 1e-12, "(20 + 40) / 2 ms");
        let tpot = r.tpot_s.unwrap();
        assert!((tpot.mean - 0.015).abs() < 1e-12, "(10 + 20) / 2 ms");
        assert_eq!(r.itl_s.unwrap().count, 3);
        assert_eq!(r.peak_concurrency, 2);
        assert_eq!(r.total_output_tokens, 5);
        assert_eq!(r.kv_cache_hit_percent, Some(50.0));
        assert_eq!(r.requests.errors["RateLimitError"], 1);
    }
}
