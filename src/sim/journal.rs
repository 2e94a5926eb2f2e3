//! The ground-truth journal (`--journal FILE.jsonl`): one JSON line per request with its
//! arrival, admission and every chunk's send time (`CLOCK_MONOTONIC` nanoseconds, the
//! clock harness records use too) and token count.
//!
//! Lines are written by a background thread so request handling never waits on disk,
//! and reach the file within 100 ms.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::pyfmt::json_string;

/// One finished request.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub id: String,
    pub rank: usize,
    pub arrival_ns: u64,
    pub admitted_ns: Option<u64>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    /// `ok`, `aborted` (injected or client gone) or an HTTP status for rejected requests.
    pub status: String,
    pub finish_reason: Option<&'static str>,
    /// `(send time ns, tokens)` per chunk.
    pub chunks: Vec<(u64, usize)>,
}

impl Record {
    fn to_json(&self) -> String {
        let mut s = String::with_capacity(128 + self.chunks.len() * 24);
        s.push_str("{\"id\":");
        json_string(&mut s, &self.id);
        let _ = write!(s, ",\"rank\":{},\"arrival_ns\":{}", self.rank, self.arrival_ns);
        match self.admitted_ns {
            Some(a) => {
                let _ = write!(s, ",\"admitted_ns\":{a}");
            }
            None => s.push_str(",\"admitted_ns\":null"),
        }
        let _ = write!(
            s,
            ",\"prompt_tokens\":{},\"completion_tokens\":{},\"cached_tokens\":{},\"status\":",
            self.prompt_tokens, self.completion_tokens, self.cached_tokens
        );
        json_string(&mut s, &self.status);
        s.push_str(",\"finish_reason\":");
        match self.finish_reason {
            Some(f) => json_string(&mut s, f),
            None => s.push_str("null"),
        }
        s.push_str(",\"chunks\":[");
        for (i, (ns, n)) in self.chunks.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "[{ns},{n}]");
        }
        s.push_str("]}\n");
        s
    }
}

/// The longest a written line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Sends records to the writer thread.
pub struct Journal {
    tx: Option<mpsc::Sender<Record>>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
}

impl Journal {
    pub fn create(path: &Path) -> Result<Journal> {
        let file = File::create(path).with_context(|| format!("cannot create journal {}", path.display()))?;
        let (tx, rx) = mpsc::channel::<Record>();
        let writer = std::thread::Builder::new().name("llmd-sim-journal".into()).spawn(move || {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            // Flushed at least every FLUSH_EVERY while lines arrive, and when they stop:
            // a reader sees the journal grow while the simulator runs, and a SIGKILL
            // loses at most the last FLUSH_EVERY of it.
            let mut oldest_unflushed: Option<Instant> = None;
            loop {
                let wait = oldest_unflushed.map_or(FLUSH_EVERY, |t| FLUSH_EVERY.saturating_sub(t.elapsed()));
                match rx.recv_timeout(wait) {
                    Ok(rec) => {
                        out.write_all(rec.to_json().as_bytes())?;
                        oldest_unflushed.get_or_insert_with(Instant::now);
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if oldest_unflushed.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
                    out.flush()?;
                    oldest_unflushed = None;
                }
            }
            out.flush()
        })?;
        Ok(Journal { tx: Some(tx), writer: Some(writer) })
    }

    pub fn record(&self, rec: Record) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(rec);
        }
    }

    /// Flushes everything written so far and stops the writer.
    pub fn close(&mut self) -> Result<()> {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            w.join().map_err(|_| anyhow::anyhow!("journal writer panicked"))??;
        }
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
