//! Copies cached outputs into the workspace, where users browse them, and remembers
//! what it wrote so a no-op build does not read a single blob.
//!
//! The index (`<workspace>/.llmd-materialized.json`) maps a record key to the files it
//! was materialized into, each with its size and mtime as written. A record is up to date
//! when every one of its files still has that size and mtime; anything else (a deleted,
//! edited or touched file, a record never materialized) re-materializes it, comparing
//! bytes so unchanged files are not rewritten. The index is a cache of stat results, not
//! a source of truth: losing it costs one full comparison pass.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::decide::Graph;
use crate::store::Store;

const FILE_NAME: &str = ".llmd-materialized.json";

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    /// record key → file path → (size, mtime in ns)
    records: BTreeMap<String, BTreeMap<PathBuf, (u64, i128)>>,
}

pub struct Materializer {
    path: PathBuf,
    index: IndexFile,
    dirty: bool,
    /// Keys already found intact in this process: deciding and materializing both ask,
    /// and each stat costs (thousands of files in a large experiment).
    intact: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Workspace writes that failed (a full disk, a read-only directory), each naming
    /// its path: they fail the build, since its outputs are not where it says.
    pub failed: Vec<String>,
}

fn stamp(path: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128))
}

impl Materializer {
    const VERSION: u32 = 1;

    /// Loads the workspace's index (an unreadable or old one is treated as empty).
    pub fn open(workspace: &Path) -> Materializer {
        let path = workspace.join(FILE_NAME);
        let index = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<IndexFile>(&b).ok())
            .filter(|i| i.version == Self::VERSION)
            .unwrap_or(IndexFile { version: Self::VERSION, records: BTreeMap::new() });
        Materializer { path, index, dirty: false, intact: Default::default(), failed: Vec::new() }
    }

    /// Whether the files written for `record_key` are all still as written.
    pub fn up_to_date(&self, record_key: &str) -> bool {
        if self.intact.lock().unwrap_or_else(|e| e.into_inner()).contains(record_key) {
            return true;
        }
        let ok = self.index.records.get(record_key).is_some_and(|files| files.iter().all(|(p, s)| stamp(p) == Some(*s)));
        if ok {
            self.intact.lock().unwrap_or_else(|e| e.into_inner()).insert(record_key.to_string());
        }
        ok
    }

    /// Writes `bytes` to `path` unless it already holds them; returns whether it did.
    /// No fsync: workspace copies can always be re-made from the cache.
    pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
        if std::fs::read(path).ok().as_deref() == Some(bytes) {
            return Ok(false);
        }
        crate::util::fs::write_atomic_unsynced(path, bytes)?;
        Ok(true)
    }

    /// Remembers that `record_key` was materialized into `files`.
    pub fn remember(&mut self, record_key: &str, files: &[PathBuf]) {
        self.intact.get_mut().unwrap_or_else(|e| e.into_inner()).insert(record_key.to_string());
        let stamped: BTreeMap<PathBuf, (u64, i128)> = files.iter().filter_map(|p| stamp(p).map(|s| (p.clone(), s))).collect();
        if self.index.records.get(record_key) != Some(&stamped) {
            self.index.records.insert(record_key.to_string(), stamped);
            self.dirty = true;
        }
    }

    /// Forgets what was written for `record_key` (it was just re-executed: same key,
    /// possibly different bytes), so the next materialization compares and rewrites.
    pub fn forget(&mut self, record_key: &str) {
        self.intact.get_mut().unwrap_or_else(|e| e.into_inner()).remove(record_key);
        self.dirty |= self.index.records.remove(record_key).is_some();
    }

    /// Drops every record not in `live` (files of superseded records are no longer tracked).
    pub fn retain(&mut self, live: &std::collections::HashSet<String>) {
        let before = self.index.records.len();
        self.index.records.retain(|k, _| live.contains(k));
        self.dirty |= self.index.records.len() != before;
    }

    /// Saves the index if it changed.
    pub fn save(&mut self) -> anyhow::Result<()> {
        if self.dirty {
            crate::util::fs::write_atomic_unsynced(&self.path, &serde_json::to_vec(&self.index)?)?;
            self.dirty = false;
        }
        Ok(())
    }
}

// ---- what each node kind publishes, and where

/// Writes each `(path, digest)` of `record_key` into the workspace, unless the index
/// says they are all still as written.
fn publish(mat: &mut Materializer, store: &Store, record_key: &str, files: Vec<(PathBuf, String)>) {
    if mat.up_to_date(record_key) {
        return;
    }
    let mut written = Vec::new();
    let mut complete = true;
    for (path, d) in files {
        let Some(bytes) = store.get_blob(&d) else {
            complete = false;
            continue;
        };
        match Materializer::write(&path, &bytes) {
            Ok(_) => written.push(path),
            Err(e) => {
                say!("error: {e:#}");
                mat.failed.push(format!("{e:#}"));
                complete = false;
            }
        }
    }
    // A record is up to date only when all its files were written: the next build
    // writes what is missing.
    if complete {
        mat.remember(record_key, &written);
    }
}

/// A stack's plan: `<setup workspace>/plan/<stack>/`, manifests an older plan rendered
/// and this one does not removed.
pub fn publish_plan(mat: &mut Materializer, store: &Store, graph: &Graph, si: usize, ki: usize) {
    let setup = &graph.setups[si];
    let stack = &setup.stacks[ki];
    let Some(rec) = &graph.nodes[stack.plan].record else { return };
    if mat.up_to_date(&rec.key) {
        return;
    }
    let dir = setup.workspace.join("plan").join(&stack.name);
    let files: Vec<(PathBuf, String)> =
        rec.outputs.iter().filter_map(|(name, d)| name.strip_prefix("file:").map(|f| (dir.join(f), d.clone()))).collect();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !rec.outputs.contains_key(&format!("file:{name}")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    publish(mat, store, &rec.key.clone(), files);
}

/// A stack's runs and analyses, under each run's results directory
/// (see `phases::analysis::workspace_path`).
pub fn publish_runs(mat: &mut Materializer, store: &Store, graph: &Graph, si: usize, ki: usize) {
    let setup = &graph.setups[si];
    let mut todo = Vec::new();
    for slot in &setup.stacks[ki].runs {
        let Some(rec) = &graph.nodes[slot.run].record else { continue };
        let analysis = graph.nodes[slot.analysis].record.as_ref().filter(|a| !mat.up_to_date(&a.key));
        if mat.up_to_date(&rec.key) && analysis.is_none() {
            continue;
        }
        let Some(dir) = rec.outputs.get("eid").and_then(|d| store.get_blob(d)) else { continue };
        let dir = String::from_utf8_lossy(&dir).to_string();
        let place = |r: &crate::store::Record| -> Vec<(PathBuf, String)> {
            r.outputs
                .iter()
                .filter_map(|(name, d)| crate::phases::analysis::workspace_path(&setup.workspace, &dir, name).map(|p| (p, d.clone())))
                .collect()
        };
        todo.push((rec.key.clone(), place(rec)));
        if let Some(a) = analysis {
            todo.push((a.key.clone(), place(a)));
        }
    }
    for (key, files) in todo {
        publish(mat, store, &key, files);
    }
}

/// The summary's outputs, at the workspace root.
pub fn publish_summary(mat: &mut Materializer, store: &Store, graph: &Graph, workspace: &Path) {
    let Some(rec) = &graph.nodes[graph.summary].record else { return };
    let files: Vec<(PathBuf, String)> = rec.outputs.iter().map(|(name, d)| (workspace.join(name), d.clone())).collect();
    publish(mat, store, &rec.key.clone(), files);
}

/// Forgets index entries of records this build no longer uses, and saves the index.
pub fn finish(mat: &mut Materializer, graph: &Graph) {
    let live: std::collections::HashSet<String> = graph.nodes.iter().filter_map(|n| n.record.as_ref().map(|r| r.key.clone())).collect();
    mat.retain(&live);
    if let Err(e) = mat.save() {
        say!("error: cannot save the materialization index: {e:#}");
        mat.failed.push(format!("cannot save the materialization index: {e:#}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_after_any_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        let mut m = Materializer::open(dir.path());
        assert!(!m.up_to_date("k"));
        assert!(Materializer::write(&f, b"one").unwrap());
        assert!(!Materializer::write(&f, b"one").unwrap(), "same bytes are not rewritten");
        m.remember("k", std::slice::from_ref(&f));
        assert!(m.up_to_date("k"));
        m.save().unwrap();
        let m = Materializer::open(dir.path());
        assert!(m.up_to_date("k"), "the index survives a reload");
        // (Within one process a key found intact stays so; each build is a new process.)
        std::fs::write(&f, b"two!").unwrap();
        assert!(!Materializer::open(dir.path()).up_to_date("k"), "an edited file is stale");
        std::fs::remove_file(&f).unwrap();
        assert!(!Materializer::open(dir.path()).up_to_date("k"), "a deleted file is stale");
    }
}
