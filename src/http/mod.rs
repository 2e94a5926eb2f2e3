//! HTTP for talking to model servers: [`client`] is an HTTP/1.1 client that stamps bytes
//! when they are read (the native harness's clock); the helpers here make one JSON request
//! over a fresh connection, for health checks, smoketests and model discovery.

pub mod client;

use std::time::Duration;

use anyhow::{Context, Result};

pub use client::Endpoint;

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
