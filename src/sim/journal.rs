//! The ground-truth journal (`--journal FILE.jsonl`): one JSON line per request with its
//! arrival, admission and every chunk's send time (`CLOCK_MONOTONIC` nanoseconds, the
//! clock harness records use too) and token count.
//!
//! Lines are written by a background thread so request handling never waits on disk.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

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
            for rec in rx {
                out.write_all(rec.to_json().as_bytes())?;
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
