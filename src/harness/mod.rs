//! Load generation: the native harness (`llmd load`, harness name `llmd`) and adapters
//! for external harnesses.
//!
//! * [`dataset`] — random, shared-prefix and file prompt sets.
//! * [`load`] — open/closed loop scheduling and request execution.
//! * [`openai`] — the request body it sends and the streamed chunks and errors it reads.
//! * [`record`] — per-request records (JSONL).
//! * [`report`] — run metrics with the canonical definitions.
//! * [`window`] — the measured window: what duration and achieved rate divide by.
//! * [`profile`] — workload profiles: `REPLACE_ENV_*` placeholders and treatment overrides.
//! * [`external`] — inference-perf, guidellm, `vllm bench serve` and aiperf as local
//!   processes: locating them, their versions, their tokenizer.
//! * [`command`] — the command lines of external tools (absolute paths, argument vectors).

pub mod command;
pub mod dataset;
pub mod external;
pub mod load;
pub mod openai;
pub mod profile;
pub mod record;
pub mod report;
pub mod window;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};

pub use load::{LoadProfile, Progress};
pub use report::RunReport;

/// Runs a native profile, writing `records.jsonl`, `stages.json` and `report.json` into `out_dir`.
pub async fn run_native(
    profile: &LoadProfile,
    endpoint: crate::http::Endpoint,
    model: &str,
    out_dir: &Path,
    quiet: bool,
) -> Result<RunReport> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let progress = Arc::new(Progress::default());
    let ticker = (!quiet).then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                say!(
                    "  ... {} sent, {} done, {} failed",
                    progress.sent.load(Ordering::Relaxed),
                    progress.done.load(Ordering::Relaxed),
                    progress.failed.load(Ordering::Relaxed)
                );
            }
        })
    });
    let result = load::run(profile, endpoint, model, progress).await;
    if let Some(t) = ticker {
        t.abort();
    }
    let output = result?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out_dir.join("records.jsonl"))?);
    for r in &output.records {
        serde_json::to_writer(&mut w, r)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    std::fs::write(out_dir.join(window::FILE), serde_json::to_string_pretty(&output.stages)?)?;
    let report = RunReport::from_records(&output.records, Some(&output.stages));
    std::fs::write(out_dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}
