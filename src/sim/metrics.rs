//! Prometheus metrics with vLLM V1's names, labels (`model_name`, `engine`) and bucket
//! boundaries, exposed in the text format `prometheus_client` writes (a counter's `# HELP`,
//! `# TYPE` and samples all use its `_total` name, or parsers read it as untyped).
//!
//! Everything is lock-free atomics: a scrape never blocks request handling.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// vLLM's TTFT buckets (seconds).
const TTFT_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
/// vLLM's inter-token latency buckets (seconds).
const ITL_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
/// vLLM's request latency buckets (seconds): e2e, queue, inference, prefill, decode.
const REQUEST_BUCKETS: &[f64] =
    &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
const ITERATION_TOKEN_BUCKETS: &[f64] = &[1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];
const N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];

/// vLLM's `build_1_2_5_buckets(max_model_len)`.
fn one_two_five(max: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut exp = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let v = m * exp;
            if v as usize > max {
                return out;
            }
            out.push(v as f64);
        }
        exp *= 10;
    }
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let mut cur = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(cur) + v).to_bits();
        match cell.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

/// A cumulative histogram with fixed buckets.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(name: &'static str, help: &'static str, bounds: Vec<f64>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { name, help, bounds, counts, sum: AtomicU64::new(0f64.to_bits()), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        add_f64(&self.sum, v);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, labels: &str) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} histogram", self.name, self.help, self.name);
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{}_bucket{{{labels},le=\"{}\"}} {}.0", self.name, prom_float(*bound), cumulative);
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{}_bucket{{{labels},le=\"+Inf\"}} {cumulative}.0", self.name);
        let _ = writeln!(out, "{}_count{{{labels}}} {}.0", self.name, self.count.load(Ordering::Relaxed));
        let _ = writeln!(out, "{}_sum{{{labels}}} {}", self.name, prom_float(f64::from_bits(self.sum.load(Ordering::Relaxed))));
    }
}

fn prom_float(v: f64) -> String {
    crate::pyfmt::float_repr(v)
}

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
pub struct Gauge(AtomicU64);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(AtomicU64::new(0f64.to_bits()))
    }
}

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn add(&self, v: f64) {
        add_f64(&self.0, v);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Why a request finished, as vLLM labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// One engine's metrics.
pub struct Metrics {
    labels: String,
    block_size: usize,
    num_blocks: usize,
    pub running: Gauge,
    pub waiting: Gauge,
    pub kv_usage: Gauge,
    pub prompt_tokens: Counter,
    pub generation_tokens: Counter,
    pub success_stop: Counter,
    pub success_length: Counter,
    pub success_abort: Counter,
    pub prefix_queries: Counter,
    pub prefix_hits: Counter,
    pub preemptions: Counter,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub tpot_legacy: Histogram,
    pub request_tpot: Histogram,
    pub e2e: Histogram,
    pub queue: Histogram,
    pub inference: Histogram,
    pub prefill: Histogram,
    pub decode: Histogram,
    pub prompt_len: Histogram,
    pub generation_len: Histogram,
    pub max_tokens_param: Histogram,
    pub max_generation: Histogram,
    pub n_param: Histogram,
    pub iteration_tokens: Histogram,
}

impl Metrics {
    pub fn new(model_name: &str, engine: usize, max_model_len: usize, block_size: usize, num_blocks: usize) -> Self {
        let escaped = model_name.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let tokens = one_two_five(max_model_len);
        Metrics {
            labels: format!("engine=\"{engine}\",model_name=\"{escaped}\""),
            block_size,
            num_blocks,
            running: Gauge::default(),
            waiting: Gauge::default(),
            kv_usage: Gauge::default(),
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            success_stop: Counter::default(),
            success_length: Counter::default(),
            success_abort: Counter::default(),
            prefix_queries: Counter::default(),
            prefix_hits: Counter::default(),
            preemptions: Counter::default(),
            ttft: Histogram::new("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS.to_vec()),
            itl: Histogram::new("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS.to_vec()),
            tpot_legacy: Histogram::new(
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds (deprecated alias of inter_token_latency).",
                ITL_BUCKETS.to_vec(),
            ),
            request_tpot: Histogram::new(
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                ITL_BUCKETS.to_vec(),
            ),
            e2e: Histogram::new(
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                REQUEST_BUCKETS.to_vec(),
            ),
            queue: Histogram::new(
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                REQUEST_BUCKETS.to_vec(),
            ),
            inference: Histogram::new(
                "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
                REQUEST_BUCKETS.to_vec(),
            ),
            prefill: Histogram::new(
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                REQUEST_BUCKETS.to_vec(),
            ),
            decode: Histogram::new(
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
                REQUEST_BUCKETS.to_vec(),
            ),
            prompt_len: Histogram::new("vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens.clone()),
            generation_len: Histogram::new("vllm:request_generation_tokens", "Number of generation tokens processed.", tokens.clone()),
            max_tokens_param: Histogram::new(
                "vllm:request_params_max_tokens",
                "Histogram of the max_tokens request parameter.",
                tokens.clone(),
            ),
            max_generation: Histogram::new(
                "vllm:request_max_num_generation_tokens",
                "Histogram of maximum number of requested generation tokens.",
                tokens,
            ),
            n_param: Histogram::new("vllm:request_params_n", "Histogram of the n request parameter.", N_BUCKETS.to_vec()),
            iteration_tokens: Histogram::new(
                "vllm:iteration_tokens_total",
                "Histogram of number of tokens per engine_step.",
                ITERATION_TOKEN_BUCKETS.to_vec(),
            ),
        }
    }

    pub fn finished(&self, reason: FinishReason) {
        match reason {
            FinishReason::Stop => self.success_stop.inc_by(1),
            FinishReason::Length => self.success_length.inc_by(1),
            FinishReason::Abort => self.success_abort.inc_by(1),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let l = &self.labels;
        let mut out = String::with_capacity(32 * 1024);
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {}", prom_float(v));
        };
        let counter = |out: &mut String, base: &str, help: &str, v: u64| {
            // prometheus_client names a counter `<base>_total` in both HELP and TYPE.
            let _ = writeln!(out, "# HELP {base}_total {help}\n# TYPE {base}_total counter\n{base}_total{{{l}}} {v}.0");
        };
        gauge(&mut out, "vllm:num_requests_running", "Number of requests in model execution batches.", self.running.get());
        gauge(&mut out, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", self.waiting.get());
        gauge(&mut out, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", self.kv_usage.get());
        let _ = writeln!(
            out,
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{block_size=\"{}\",engine=\"{}\",num_gpu_blocks=\"{}\"}} 1.0",
            self.block_size,
            l.split('"').nth(1).unwrap_or("0"),
            self.num_blocks
        );
        counter(&mut out, "vllm:num_preemptions", "Cumulative number of preemption from the engine.", self.preemptions.get());
        counter(&mut out, "vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens.get());
        counter(&mut out, "vllm:generation_tokens", "Number of generation tokens processed.", self.generation_tokens.get());
        counter(
            &mut out,
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            self.prefix_queries.get(),
        );
        counter(&mut out, "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", self.prefix_hits.get());
        let _ = writeln!(
            out,
            "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter"
        );
        for (reason, c) in [("stop", &self.success_stop), ("length", &self.success_length), ("abort", &self.success_abort)] {
            let _ = writeln!(out, "vllm:request_success_total{{{l},finished_reason=\"{reason}\"}} {}.0", c.get());
        }
        for h in [
            &self.ttft,
            &self.itl,
            &self.tpot_legacy,
            &self.request_tpot,
            &self.e2e,
            &self.queue,
            &self.inference,
            &self.prefill,
            &self.decode,
            &self.prompt_len,
            &self.generation_len,
            &self.max_tokens_param,
            &self.max_generation,
            &self.n_param,
            &self.iteration_tokens,
        ] {
            h.render(&mut out, l);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_shape() {
        let m = Metrics::new("Qwen/Qwen3-0.6B", 0, 1024, 16, 100);
        m.prompt_tokens.inc_by(12);
        m.ttft.observe(0.015);
        m.ttft.observe(3000.0);
        m.finished(FinishReason::Length);
        let text = m.render();
        assert!(text.contains("vllm:prompt_tokens_total{engine=\"0\",model_name=\"Qwen/Qwen3-0.6B\"} 12.0"), "{text}");
        assert!(text.contains("vllm:time_to_first_token_seconds_bucket{engine=\"0\",model_name=\"Qwen/Qwen3-0.6B\",le=\"0.02\"} 1.0"));
        assert!(text.contains("vllm:time_to_first_token_seconds_bucket{engine=\"0\",model_name=\"Qwen/Qwen3-0.6B\",le=\"+Inf\"} 2.0"));
        assert!(text.contains("finished_reason=\"length\"} 1.0"));
        assert_eq!(one_two_five(1024), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
    }

    /// As prometheus_client writes them: HELP and TYPE name the same family, a counter's
    /// family ends in `_total`, and every sample belongs to the family declared above it
    /// (histograms through `_bucket`, `_sum`, `_count`).
    #[test]
    fn families_are_declared_as_prometheus_client_declares_them() {
        let text = Metrics::new("m", 0, 1024, 16, 100).render();
        let mut family: Option<(String, String)> = None;
        let mut help: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                help = Some(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(help.as_deref(), Some(name), "HELP and TYPE name different families: {line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
                family = Some((name.to_string(), kind.to_string()));
            } else {
                let (name, kind) = family.as_ref().expect("a sample before any TYPE line");
                let sample = line.split(['{', ' ']).next().unwrap();
                let ok = match kind.as_str() {
                    "histogram" => [name.clone(), format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count")]
                        .contains(&sample.to_string()),
                    _ => sample == name,
                };
                assert!(ok, "sample {sample} is not in family {name} ({kind})");
            }
        }
    }
}
