//! The measured window of a run: what "duration" and "achieved rate" divide by.
//!
//! A stage with a `duration` is measured over exactly that span — from its first
//! measured arrival (after warm-up) to its planned end — however long its stragglers
//! take: requests still in flight after the grace period are cancelled, and only
//! requests completed inside the window count towards throughput. Latency statistics
//! still include every completed request (dropping the slow ones would flatter an
//! overloaded server). A stage bounded only by a request count is measured from its
//! first measured arrival to its last completion.
//!
//! The load generator writes the windows beside `records.jsonl` as `stages.json`;
//! without that file (results of older versions) the window is first send → last
//! completion, vLLM's convention.

use serde::{Deserialize, Serialize};

use super::record::{RequestRecord, Status};

/// File name of the stage windows, beside `records.jsonl`.
pub const FILE: &str = "stages.json";

/// One stage as the load generator ran it (`CLOCK_MONOTONIC` nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageWindow {
    pub stage: usize,
    /// When the stage started releasing requests.
    pub start_ns: u64,
    /// The planned end (`start + duration`); `None` for a stage bounded by a request count.
    pub end_ns: Option<u64>,
    /// Seconds in-flight requests had after `end_ns` before they were cancelled.
    pub grace_s: f64,
}

/// Reads `stages.json` beside a `records.jsonl`; `None` when absent (older results).
pub fn read_beside(records: &std::path::Path) -> anyhow::Result<Option<Vec<StageWindow>>> {
    let path = records.with_file_name(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| anyhow::anyhow!("{}: not a stage-window file: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Accumulates what the window needs, one record at a time (records may come in any
/// order and from several threads: see [`WindowAcc::merge`]).
#[derive(Clone, Debug, Default)]
pub struct WindowAcc {
    stages: Vec<StageWindow>,
    /// Per stage (index into `stages`): first measured arrival, last measured completion.
    first: Vec<Option<u64>>,
    last: Vec<Option<u64>>,
    /// Without stage windows: first send and last completion over all measured records.
    span: Option<(u64, u64)>,
}

impl WindowAcc {
    pub fn new(stages: Option<Vec<StageWindow>>) -> WindowAcc {
        let stages = stages.unwrap_or_default();
        let n = stages.len();
        WindowAcc { stages, first: vec![None; n], last: vec![None; n], span: None }
    }

    fn slot(&self, r: &RequestRecord) -> Option<usize> {
        self.stages.iter().position(|s| s.stage == r.stage)
    }

    /// Notes a record; warm-up records are ignored.
    pub fn add(&mut self, r: &RequestRecord) {
        if r.warmup {
            return;
        }
        self.span = Some(match self.span {
            None => (r.sent_ns, r.done_ns),
            Some((a, b)) => (a.min(r.sent_ns), b.max(r.done_ns)),
        });
        if let Some(i) = self.slot(r) {
            let arrival = r.scheduled_ns.max(self.stages[i].start_ns);
            self.first[i] = Some(self.first[i].map_or(arrival, |f| f.min(arrival)));
            self.last[i] = Some(self.last[i].map_or(r.done_ns, |l| l.max(r.done_ns)));
        }
    }

    /// Whether a completed record counts towards throughput: it finished by its stage's
    /// planned end (always true without windows, or for a request-count stage).
    pub fn counts(&self, r: &RequestRecord) -> bool {
        if r.warmup || r.status != Status::Ok {
            return false;
        }
        match self.slot(r).and_then(|i| self.stages[i].end_ns) {
            Some(end) => r.done_ns <= end,
            None => true,
        }
    }

    pub fn merge(&mut self, other: WindowAcc) {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for i in 0..self.first.len().min(other.first.len()) {
            self.first[i] = min(self.first[i], other.first[i]);
            self.last[i] = self.last[i].max(other.last[i]);
        }
        self.span = match (self.span, other.span) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
    }

    /// `(start, end)` of each measured stage, in nanoseconds (one span without windows).
    pub fn spans(&self) -> Vec<(u64, u64)> {
        if self.stages.is_empty() {
            return self.span.into_iter().collect();
        }
        (0..self.stages.len())
            .filter_map(|i| {
                let first = self.first[i]?;
                let end = self.stages[i].end_ns.or(self.last[i])?;
                Some((first, end.max(first)))
            })
            .collect()
    }

    /// Total measured seconds.
    pub fn duration_s(&self) -> f64 {
        self.spans().iter().map(|(a, b)| (b - a) as f64 / 1e9).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rec(stage: usize, scheduled: u64, done: u64, status: Status, warmup: bool) -> RequestRecord {
        RequestRecord {
            id: String::new(),
            stage,
            warmup,
            scheduled_ns: scheduled,
            sent_ns: scheduled,
            first_token_ns: None,
            last_token_ns: None,
            done_ns: done,
            chunks: vec![],
            input_len: 1,
            requested_output: 1,
            prompt_tokens: None,
            completion_tokens: None,
            cached_tokens: None,
            status,
            http_status: None,
            error: None,
        }
    }

    #[test]
    fn a_duration_stage_is_measured_over_its_plan_not_its_stragglers() {
        let stages = vec![StageWindow { stage: 0, start_ns: 10 * S, end_ns: Some(20 * S), grace_s: 5.0 }];
        let mut acc = WindowAcc::new(Some(stages));
        let on_time = rec(0, 10 * S, 11 * S, Status::Ok, false);
        let straggler = rec(0, 19 * S, 23 * S, Status::Ok, false);
        let cancelled = rec(0, 12 * S, 25 * S, Status::Incomplete, false);
        for r in [&on_time, &straggler, &cancelled] {
            acc.add(r);
        }
        assert_eq!(acc.duration_s(), 10.0, "the window is the stage, not first send → last completion");
        assert!(acc.counts(&on_time));
        assert!(!acc.counts(&straggler), "completed after the stage ended");
        assert!(!acc.counts(&cancelled));
    }

    #[test]
    fn warm_up_moves_the_start_and_count_stages_end_at_their_last_completion() {
        let stages = vec![
            StageWindow { stage: 0, start_ns: 0, end_ns: Some(10 * S), grace_s: 5.0 },
            StageWindow { stage: 1, start_ns: 12 * S, end_ns: None, grace_s: 5.0 },
        ];
        let mut parts = [WindowAcc::new(Some(stages.clone())), WindowAcc::new(Some(stages))];
        parts[0].add(&rec(0, 0, S, Status::Ok, true));
        parts[0].add(&rec(0, 2 * S, 3 * S, Status::Ok, false));
        parts[1].add(&rec(1, 12 * S, 14 * S, Status::Ok, false));
        parts[1].add(&rec(1, 13 * S, 15 * S, Status::Ok, false));
        let [mut a, b] = parts;
        a.merge(b);
        assert_eq!(a.spans(), vec![(2 * S, 10 * S), (12 * S, 15 * S)]);
        assert_eq!(a.duration_s(), 11.0);
    }

    #[test]
    fn without_windows_the_span_is_first_send_to_last_completion() {
        let mut acc = WindowAcc::new(None);
        acc.add(&rec(0, 3 * S, 5 * S, Status::Ok, false));
        acc.add(&rec(0, 4 * S, 9 * S, Status::HttpError, false));
        assert_eq!(acc.duration_s(), 6.0);
        assert!(acc.counts(&rec(0, 4 * S, 90 * S, Status::Ok, false)));
    }
}
