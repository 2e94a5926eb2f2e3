//! Load generation: the native harness (`llmd load`, harness name `llmd`) and adapters
//! for external harnesses.
//!
//! * [`client`] — an HTTP/1.1 client that stamps bytes when they are read.
//! * [`dataset`] — random, shared-prefix and file prompt sets.
//! * [`load`] — open/closed loop scheduling and request execution.
//! * [`record`] — per-request records (JSONL).
//! * [`report`] — run metrics with the canonical definitions.
//! * [`profile`] — workload profiles: `REPLACE_ENV_*` placeholders and treatment overrides.
//! * [`external`] — inference-perf, guidellm and `vllm bench serve` as local processes.

pub mod client;
pub mod dataset;
pub mod external;
pub mod load;
pub mod profile;
pub mod record;
pub mod report;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};

pub use load::{LoadProfile, Progress};
pub use report::RunReport;

/// Asks an OpenAI-compatible server for its first model id.
pub async fn first_model(endpoint: &client::Endpoint) -> Result<String> {
    let mut conn =
        client::Conn::connect(endpoint, Duration::from_secs(5)).await.with_context(|| format!("cannot connect to {}", endpoint.url()))?;
    conn.get(&format!("{}/v1/models", endpoint.prefix)).await?;
    let head = conn.read_head().await?;
    let mut body = Vec::new();
    conn.read_body(&head, |_, b| body.extend_from_slice(b)).await?;
    anyhow::ensure!(head.status == 200, "{}/v1/models answered HTTP {}", endpoint.url(), head.status);
    let v: serde_json::Value = serde_json::from_slice(&body).context("/v1/models is not JSON")?;
    v["data"][0]["id"].as_str().map(str::to_string).context("/v1/models lists no model")
}

/// Runs a native profile, writing `records.jsonl` and `report.json` into `out_dir`.
pub async fn run_native(profile: &LoadProfile, endpoint: client::Endpoint, model: &str, out_dir: &Path, quiet: bool) -> Result<RunReport> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let progress = Arc::new(Progress::default());
    let ticker = (!quiet).then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
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
    let report = RunReport::from_records(&output.records);
    std::fs::write(out_dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

/// One JSON request over a fresh connection: `(status, body)`; the body is parsed as
/// JSON when it is JSON, else returned as a string value.
pub async fn http_json(
    endpoint: &client::Endpoint,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value)> {
    let work = async {
        let mut conn = client::Conn::connect(endpoint, timeout).await.with_context(|| format!("cannot connect to {}", endpoint.url()))?;
        let full = format!("{}{path}", endpoint.prefix);
        match body {
            Some(b) => conn.post_json(&full, &serde_json::to_vec(b)?, &[]).await?,
            None => conn.get(&full).await?,
        };
        let head = conn.read_head().await?;
        let mut bytes = Vec::new();
        conn.read_body(&head, |_, b| bytes.extend_from_slice(b)).await?;
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok::<_, anyhow::Error>((head.status, value))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| anyhow::anyhow!("{}{path} did not answer within {timeout:?}", endpoint.url()))?
}
