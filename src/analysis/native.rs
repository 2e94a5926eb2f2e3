//! The native harness's converter: `records.jsonl` streamed through worker threads into
//! benchmark-report aggregates, every statistic computed with the harness's own
//! definitions ([`crate::harness::report`]); failed and warm-up requests excluded.

use std::path::Path;

use anyhow::{Context, Result};

use super::br::{Aggregate, Latency, Requests, Statistics, Throughput};
use super::convert::{Converted, Samples};
use crate::harness::record::RequestRecord;
use crate::harness::window::{StageWindow, WindowAcc};

/// Everything the report needs from native records, accumulated one record at a time
/// with the definitions of [`RunReport`] (the per-request methods of [`RequestRecord`]).
#[derive(Default)]
struct NativeAcc {
    total: u64,
    failed: u64,
    incomplete: u64,
    /// First send and last completion of measured (non-warm-up) requests.
    start: Option<u64>,
    end: Option<u64>,
    completed: u64,
    /// The measured window, and the completions and tokens inside it (throughput).
    window: WindowAcc,
    in_window: u64,
    input: u64,
    output: u64,
    ttft: Vec<f64>,
    e2e: Vec<f64>,
    tpot: Vec<f64>,
    ntpot: Vec<f64>,
    itl: Vec<f64>,
    input_len: Vec<f64>,
    output_len: Vec<f64>,
    /// Aligned with one entry per completed request (NaN where a family has no value),
    /// for the per-window series: completion time, and per-request TTFT, TPOT, NTPOT,
    /// E2E, and the sum and number of inter-token gaps.
    done_ns: Vec<f64>,
    row_ttft: Vec<f64>,
    row_tpot: Vec<f64>,
    row_ntpot: Vec<f64>,
    row_e2e: Vec<f64>,
    itl_sum: Vec<f64>,
    itl_n: Vec<f64>,
    ticks: super::timeseries::Ticks,
}

impl NativeAcc {
    fn new(windows: Option<Vec<StageWindow>>) -> NativeAcc {
        NativeAcc { window: WindowAcc::new(windows), ..Default::default() }
    }

    fn add(&mut self, r: &RequestRecord) {
        if r.warmup {
            return;
        }
        self.window.add(r);
        self.total += 1;
        self.start = Some(self.start.map_or(r.sent_ns, |s| s.min(r.sent_ns)));
        self.end = Some(self.end.map_or(r.done_ns, |e| e.max(r.done_ns)));
        match r.status {
            crate::harness::record::Status::Ok => {}
            crate::harness::record::Status::Incomplete => self.incomplete += 1,
            _ => self.failed += 1,
        }
        if !r.ok() {
            return;
        }
        self.completed += 1;
        let prompt = r.prompt_tokens.unwrap_or(r.input_len);
        if self.window.counts(r) {
            self.in_window += 1;
            self.input += u64::from(prompt);
            self.output += u64::from(r.output_tokens());
        }
        let (ttft, e2e, tpot, ntpot) = (r.ttft(), r.e2e(), r.tpot(), r.ntpot());
        self.ttft.extend(ttft);
        self.e2e.extend(e2e);
        self.tpot.extend(tpot);
        self.ntpot.extend(ntpot);
        let gaps = self.itl.len();
        self.itl.extend(r.itls());
        self.itl_sum.push(self.itl[gaps..].iter().sum());
        self.itl_n.push((self.itl.len() - gaps) as f64);
        self.done_ns.push(r.done_ns as f64);
        self.row_ttft.push(ttft.unwrap_or(f64::NAN));
        self.row_tpot.push(tpot.unwrap_or(f64::NAN));
        self.row_ntpot.push(ntpot.unwrap_or(f64::NAN));
        self.row_e2e.push(e2e.unwrap_or(f64::NAN));
        self.ticks.input(r.sent_ns, u64::from(prompt));
        self.ticks.output(&r.chunks);
        self.ticks.completed(r.done_ns);
        self.input_len.push(f64::from(prompt));
        self.output_len.push(f64::from(r.output_tokens()));
    }

    /// Merges the workers' accumulators, allocating each sample vector once at its exact
    /// final size (growing by doubling would hold up to twice the samples at the peak).
    fn merge(parts: Vec<NativeAcc>) -> NativeAcc {
        let mut out = NativeAcc::new(None);
        let pick: [fn(&mut NativeAcc) -> &mut Vec<f64>; 14] = [
            |a| &mut a.ttft,
            |a| &mut a.e2e,
            |a| &mut a.tpot,
            |a| &mut a.ntpot,
            |a| &mut a.itl,
            |a| &mut a.input_len,
            |a| &mut a.output_len,
            |a| &mut a.done_ns,
            |a| &mut a.row_ttft,
            |a| &mut a.row_tpot,
            |a| &mut a.row_ntpot,
            |a| &mut a.row_e2e,
            |a| &mut a.itl_sum,
            |a| &mut a.itl_n,
        ];
        let mut parts = parts;
        for field in pick {
            let total: usize = parts.iter_mut().map(|p| field(p).len()).sum();
            let mut merged = Vec::with_capacity(total);
            for p in parts.iter_mut() {
                merged.extend_from_slice(field(p));
                *field(p) = Vec::new();
            }
            *field(&mut out) = merged;
        }
        let mut parts = parts.into_iter();
        if let Some(first) = parts.next() {
            out.window = first.window.clone();
            out.merge_counts(first);
        }
        for o in parts {
            out.window.merge(o.window.clone());
            out.merge_counts(o);
        }
        out
    }

    fn merge_counts(&mut self, o: NativeAcc) {
        let out = self;
        {
            out.ticks.merge(o.ticks);
            out.total += o.total;
            out.failed += o.failed;
            out.incomplete += o.incomplete;
            out.completed += o.completed;
            out.in_window += o.in_window;
            out.start = match (out.start, o.start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            out.end = out.end.max(o.end);
            out.input += o.input;
            out.output += o.output;
        }
    }

    fn finish(self, path: &Path) -> Converted {
        let start = self.start.unwrap_or(0);
        let duration_s = self.window.duration_s();
        let per_s = |x: f64| if duration_s > 0.0 { x / duration_s } else { 0.0 };
        let end = self.end.unwrap_or(start);
        let completed = self.completed;
        let NativeAcc {
            mut ttft,
            mut e2e,
            mut tpot,
            mut ntpot,
            mut itl,
            mut input_len,
            mut output_len,
            done_ns,
            row_ttft,
            row_tpot,
            row_ntpot,
            row_e2e,
            itl_sum,
            itl_n,
            ticks,
            ..
        } = self;
        let sorted = |units: &'static str, v: &mut Vec<f64>| {
            v.retain(|x| !x.is_nan());
            v.sort_unstable_by(f64::total_cmp);
            (!v.is_empty()).then(|| Statistics::from_summary(units, &crate::stats::Summary::of_sorted(v)))
        };
        // Samples are sorted in place (plots do not need their order). The sorts and the
        // windows are independent, and the pooled ITL gaps (~10x any other sample) are
        // sorted in two parts merged at the end: the other thread takes NTPOT and most of
        // the gaps, this one the windows, the per-request samples and the rest of the gaps.
        itl.retain(|x| !x.is_nan());
        let split = itl.len() * 5 / 8;
        let (itl_head, itl_tail) = itl.split_at_mut(split);
        let (ntpot_s, (windows, ttft_s, e2e_s, tpot_s, input_length, output_length)) = std::thread::scope(|scope| {
            let big = scope.spawn(|| {
                itl_head.sort_unstable_by(f64::total_cmp);
                sorted("s/token", &mut ntpot)
            });
            let windows = (completed > 0).then(|| {
                let per_request =
                    super::timeseries::PerRequest::latencies(&done_ns, [&row_ttft, &row_tpot, &row_ntpot, &row_e2e], &itl_sum, &itl_n);
                super::timeseries::windows(start, end, &per_request, &ticks)
            });
            // Freed before this thread's sorts.
            drop((done_ns, row_ttft, row_tpot, row_ntpot, row_e2e, itl_sum, itl_n));
            let rest = (
                windows,
                sorted("s", &mut ttft),
                sorted("s", &mut e2e),
                sorted("s/token", &mut tpot),
                sorted("count", &mut input_len),
                sorted("count", &mut output_len),
            );
            itl_tail.sort_unstable_by(f64::total_cmp);
            (big.join().unwrap_or_default(), rest)
        });
        let (head, tail) = itl.split_at(split);
        let itl = crate::stats::merge_sorted(head, tail);
        let itl_s = (!itl.is_empty()).then(|| Statistics::from_summary("s", &crate::stats::Summary::of_sorted(&itl)));
        let samples = Samples { ttft, tpot, itl, e2e };
        let (ttft, e2e, tpot, itl, ntpot) = (ttft_s, e2e_s, tpot_s, itl_s, ntpot_s);
        Converted {
            tool: "llmd".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            source_file: path.to_path_buf(),
            stage: None,
            aggregate: Aggregate {
                requests: Requests {
                    total: self.total,
                    failures: self.failed,
                    incomplete: Some(self.incomplete),
                    input_length,
                    output_length,
                },
                latency: Latency {
                    time_to_first_token: ttft,
                    normalized_time_per_output_token: ntpot,
                    time_per_output_token: tpot,
                    inter_token_latency: itl,
                    request_latency: e2e,
                },
                throughput: Throughput {
                    input_token_rate: Some(Statistics::value("tokens/s", per_s(self.input as f64))),
                    output_token_rate: Some(Statistics::value("tokens/s", per_s(self.output as f64))),
                    total_token_rate: Some(Statistics::value("tokens/s", per_s((self.input + self.output) as f64))),
                    request_rate: Some(Statistics::value("queries/s", per_s(self.in_window as f64))),
                },
            },
            duration_s: Some(duration_s),
            samples,
            windows,
            ..Default::default()
        }
    }
}

/// The fields of a [`RequestRecord`] the report reads. The others (the id, the error
/// text, …) are skipped while parsing rather than allocated: a million records is half a
/// gigabyte of JSON, and parsing it is most of an analysis.
#[derive(serde::Deserialize)]
struct RecordView {
    #[serde(default)]
    stage: usize,
    warmup: bool,
    #[serde(default)]
    scheduled_ns: Option<u64>,
    sent_ns: u64,
    first_token_ns: Option<u64>,
    last_token_ns: Option<u64>,
    done_ns: u64,
    chunks: Vec<(u64, u32)>,
    input_len: u32,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    status: crate::harness::record::Status,
}

impl RecordView {
    fn into_record(self) -> RequestRecord {
        RequestRecord {
            id: String::new(),
            stage: self.stage,
            warmup: self.warmup,
            scheduled_ns: self.scheduled_ns.unwrap_or(self.sent_ns),
            sent_ns: self.sent_ns,
            first_token_ns: self.first_token_ns,
            last_token_ns: self.last_token_ns,
            done_ns: self.done_ns,
            chunks: self.chunks,
            input_len: self.input_len,
            requested_output: 0,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: None,
            status: self.status,
            http_status: None,
            error: None,
        }
    }
}

/// Converts a native `records.jsonl`, streaming: the file is read in blocks that worker
/// threads parse, so memory holds the metric samples, never the records.
pub fn llmd(path: &Path) -> Result<Converted> {
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let windows = crate::harness::window::read_beside(path)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    // (first line number, whole lines)
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(workers * 2);
    let rx = std::sync::Mutex::new(rx);
    // After an error a worker keeps draining blocks (unparsed) so the reader never blocks.
    let parse = |acc: &mut NativeAcc| -> Result<()> {
        let mut error = None;
        loop {
            let Ok((first_line, block)) = rx.lock().unwrap_or_else(|e| e.into_inner()).recv() else { break };
            if error.is_some() {
                continue;
            }
            for (i, line) in block.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<RecordView>(line) {
                    Ok(v) => acc.add(&v.into_record()),
                    Err(e) => {
                        error = Some(anyhow::anyhow!(
                            "{}:{}: not a request record (truncated or corrupt?): {e}",
                            path.display(),
                            first_line + i
                        ));
                        break;
                    }
                }
            }
        }
        error.map_or(Ok(()), Err)
    };
    std::thread::scope(|scope| -> Result<Converted> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (parse, windows) = (&parse, &windows);
                scope.spawn(move || {
                    let mut acc = NativeAcc::new(windows.clone());
                    parse(&mut acc).map(|()| acc)
                })
            })
            .collect();
        let mut line = 1usize;
        let mut read_error = None;
        let mut source_hash = blake3::Hasher::new();
        loop {
            let mut block = Vec::with_capacity(4 << 20);
            match (&mut reader).take(4 << 20).read_to_end(&mut block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    read_error = Some(anyhow::Error::new(e).context(format!("cannot read {}", path.display())));
                    break;
                }
            }
            // Complete the last line of the block.
            if block.last() != Some(&b'\n')
                && let Err(e) = reader.read_until(b'\n', &mut block)
            {
                read_error = Some(anyhow::Error::new(e).context(format!("cannot read {}", path.display())));
                break;
            }
            let lines = block.iter().filter(|&&b| b == b'\n').count();
            source_hash.update(&block);
            if tx.send((line, block)).is_err() {
                break;
            }
            line += lines;
        }
        drop(tx);
        let mut parts = Vec::new();
        let mut first_error = read_error;
        for h in handles {
            match h.join() {
                Ok(Ok(acc)) => parts.push(acc),
                Ok(Err(e)) => first_error = first_error.or(Some(e)),
                Err(_) => first_error = first_error.or(Some(anyhow::anyhow!("internal error: a parser thread panicked"))),
            }
        }
        rss_note("records parsed");
        match first_error {
            Some(e) => Err(e),
            None => {
                let merged = NativeAcc::merge(parts);
                rss_note("samples merged");
                let mut c = merged.finish(path);
                c.source_hash = Some(source_hash);
                rss_note("statistics computed");
                Ok(c)
            }
        }
    })
}

/// `LLMD_TIMINGS=1`: resident memory at a point of the analysis.
pub(crate) fn rss_note(what: &str) {
    if std::env::var_os("LLMD_TIMINGS").is_some()
        && let Ok(status) = std::fs::read_to_string("/proc/self/status")
    {
        let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?");
        let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?");
        eprintln!(
            "[timings] {what} at {:.2} s: {} ({})",
            process_age_s(),
            rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
            hwm.replace(char::is_whitespace, "")
        );
    }
}

/// Seconds since this process started (10 ms resolution), from `/proc`.
fn process_age_s() -> f64 {
    let uptime = std::fs::read_to_string("/proc/uptime").ok().and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok());
    // Field 22 of /proc/self/stat, counted after the parenthesised command name.
    let started =
        std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| s.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    uptime.zip(started).map_or(f64::NAN, |(u, s)| u - s / hz)
}

/// [`llmd`] on records already in memory.
pub fn llmd_from_records(records: &[RequestRecord], windows: Option<Vec<StageWindow>>, path: &Path) -> Converted {
    let mut acc = NativeAcc::new(windows);
    for r in records {
        acc.add(r);
    }
    NativeAcc::merge(vec![acc]).finish(path)
}
