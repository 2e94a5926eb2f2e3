//! `llmd sim`: a vLLM-compatible inference simulator.
//!
//! It speaks the OpenAI API as vLLM does (completions and chat, streaming with vLLM's SSE
//! framing, `/v1/models`, `/tokenize`, `/detokenize`, `/metrics` with vLLM V1 metric
//! names, `/health`, `/health/ready`, `/version`), takes llm-d-inference-sim's flags, and
//! models latency either like llm-d-inference-sim (constant or per-token latencies scaled
//! by load) or with an iteration-level batching engine whose throughput saturates.
//!
//! * [`config`] — flags, YAML and environment into a [`SimConfig`].
//! * [`server`] — HTTP routing, validation, streaming bodies, graceful shutdown.
//! * [`api`] — the OpenAI/vLLM JSON shapes.
//! * [`engine`] — admission, scheduling and token timing.
//! * [`kv`] — the KV/prefix cache model.
//! * [`metrics`] — Prometheus metrics.
//! * [`journal`] — per-request ground truth for harness accuracy tests.

pub mod api;
pub mod config;
pub mod engine;
pub mod journal;
pub mod kv;
pub mod metrics;
pub mod server;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};

pub use config::{SimArgs, SimConfig};

/// A running simulator (all data-parallel ranks), for embedding in tests and the local
/// backend.
pub struct RunningSim {
    pub ports: Vec<u16>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    journal: Option<Arc<journal::Journal>>,
    pub engines: Vec<Arc<engine::Engine>>,
}

impl RunningSim {
    /// Stops accepting, drains in-flight requests and flushes the journal.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(j) = self.journal {
            match Arc::try_unwrap(j) {
                Ok(mut j) => j.close()?,
                Err(shared) => drop(shared),
            }
        }
        Ok(())
    }
}

/// A listening socket with a `backlog`-long accept queue (`TcpListener::bind` would
/// leave mio's 128, which overflows under load: each overflowed connection waits a
/// SYN retry, about a second).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std and mio do: a restarted simulator can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Binds every rank and starts serving (inside a tokio runtime).
pub async fn start(cfg: SimConfig) -> Result<RunningSim> {
    let cfg = Arc::new(cfg);
    let (tokenizer, words) = crate::tokenize::load(cfg.tokenizer.as_deref())?;
    let journal = match &cfg.journal {
        Some(path) => Some(Arc::new(journal::Journal::create(path)?)),
        None => None,
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut ports = Vec::new();
    let mut tasks = Vec::new();
    let mut engines = Vec::new();
    for rank in 0..cfg.data_parallel_size {
        let addr = server::rank_addr(&cfg, rank).with_context(|| format!("invalid listen address {}:{}", cfg.host, cfg.port))?;
        let listener = listen(addr, cfg.backlog).with_context(|| format!("cannot listen on {addr}"))?;
        ports.push(listener.local_addr()?.port());
        let metrics =
            Arc::new(metrics::Metrics::new(&cfg.served_model_names[0], rank, cfg.max_model_len, cfg.block_size, cfg.kv_cache_size));
        let engine = engine::Engine::new(cfg.clone(), metrics);
        engines.push(engine.clone());
        let srv = Arc::new(server::Server::new(cfg.clone(), rank, engine, tokenizer, words, journal.clone()));
        tasks.push(tokio::spawn(server::serve(srv, listener, rx.clone())));
    }
    Ok(RunningSim { ports, shutdown: tx, tasks, journal, engines })
}

/// `llmd sim`: serve until SIGTERM or SIGINT, then drain and exit.
pub fn run(cfg: SimConfig) -> Result<()> {
    // Each open connection holds a descriptor: at tens of thousands of requests per
    // second a 1024 soft limit is reached long before the CPU is. The hard limit is the
    // operator's (`ulimit -Hn`); past it, accept backs off (see `server::AcceptBackoff`).
    if let Err(e) = crate::util::raise_nofile_limit() {
        eprintln!("llmd sim: cannot raise the open-file limit: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let host = cfg.host.clone();
        let model = cfg.model.clone();
        let sim = start(cfg).await?;
        // The first line announces the bound port (port 0 picks one; the local backend
        // reads it from the log). Best effort: a closed stdout must not stop the server.
        let mut out = std::io::stdout().lock();
        for port in &sim.ports {
            let _ = writeln!(out, "llmd sim: serving {model} on http://{host}:{port}");
        }
        let _ = out.flush();
        drop(out);
        wait_for_signal().await?;
        eprintln!("llmd sim: shutting down (draining in-flight requests)");
        sim.shutdown().await
    })
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
