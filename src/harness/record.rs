//! Per-request records: everything needed to recompute any harness's metrics offline.
//!
//! Times are `CLOCK_MONOTONIC` nanoseconds (comparable with the simulator's journal):
//! `scheduled_ns` is when the request was due (arrival), `sent_ns` when its bytes were
//! written, each chunk carries the time of the socket read that completed it.

use serde::{Deserialize, Serialize};

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Non-2xx HTTP status.
    HttpError,
    /// Connect, write or read failed.
    Transport,
    /// The stream ended without its final event.
    Incomplete,
    Timeout,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub stage: usize,
    /// Warm-up requests are recorded but excluded from metrics.
    pub warmup: bool,
    pub scheduled_ns: u64,
    pub sent_ns: u64,
    /// First event carrying choices (vLLM's first-token rule).
    pub first_token_ns: Option<u64>,
    /// Last content-bearing event.
    pub last_token_ns: Option<u64>,
    /// Response fully read.
    pub done_ns: u64,
    /// Content-bearing events: `(ns, tokens)`.
    pub chunks: Vec<(u64, u32)>,
    /// Prompt tokens the client generated.
    pub input_len: u32,
    /// Tokens requested (`max_tokens`).
    pub requested_output: u32,
    /// From the server's `usage`.
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub cached_tokens: Option<u32>,
    pub status: Status,
    pub http_status: Option<u16>,
    /// Error class: the OpenAI error `type`, or the transport error kind.
    pub error: Option<String>,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// Output tokens: usage, else the streamed chunks' tokens.
    pub fn output_tokens(&self) -> u32 {
        self.completion_tokens.unwrap_or_else(|| self.chunks.iter().map(|c| c.1).sum())
    }

    fn secs(ns: u64) -> f64 {
        ns as f64 / 1e9
    }

    /// Time to first token (seconds), from the send.
    pub fn ttft(&self) -> Option<f64> {
        self.first_token_ns.map(|f| Self::secs(f.saturating_sub(self.sent_ns)))
    }

    /// End-to-end latency to the last token (seconds), from the send.
    pub fn e2e(&self) -> Option<f64> {
        self.last_token_ns.or(self.first_token_ns).map(|l| Self::secs(l.saturating_sub(self.sent_ns)))
    }

    /// (E2E − TTFT)/(n − 1), for n > 1.
    pub fn tpot(&self) -> Option<f64> {
        let n = self.output_tokens();
        match (self.ttft(), self.e2e()) {
            (Some(t), Some(e)) if n > 1 => Some((e - t) / f64::from(n - 1)),
            _ => None,
        }
    }

    /// E2E / n.
    pub fn ntpot(&self) -> Option<f64> {
        let n = self.output_tokens();
        self.e2e().filter(|_| n > 0).map(|e| e / f64::from(n))
    }

    /// Gaps between content-bearing events (seconds).
    pub fn itls(&self) -> impl Iterator<Item = f64> + '_ {
        self.chunks.windows(2).map(|w| Self::secs(w[1].0.saturating_sub(w[0].0)))
    }

    /// Time spent waiting for a concurrency slot before sending (seconds).
    pub fn client_queue(&self) -> f64 {
        Self::secs(self.sent_ns.saturating_sub(self.scheduled_ns))
    }
}
