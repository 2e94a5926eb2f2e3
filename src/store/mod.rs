//! `.llmdcache/`: the only state shared between llmd invocations.
//!
//! ```text
//! .llmdcache/
//!   LAYOUT          layout version; a different one is refused, never guessed at
//!   CACHEDIR.TAG    marks the directory for backup tools
//!   .gitignore      `*`
//!   lock            held (flock) by the running build; lock.holder names it
//!   blobs/ab/<b3>   content-addressed bytes, verified by blake3 on every read
//!   records/ab/<key>.json   one action record per node key (ok or failed)
//!   nodes/ab/<b3(id)>.json  per logical node: the last attempt and the last success
//!   incomplete/<key>        written before a node's side effects, removed after its record
//!   tmp/            every write's temporary file until it is renamed into place
//!   journal/<ms>-<pid>.jsonl  every decision of one invocation, with its reason
//!   decided.json    node id → the key the last build settled on (fresh or executed):
//!                   what the next build's reasons are diffs against
//!   records.pack    the records the last build used, in one file (see `pack`)
//! ```
//!
//! Writes are atomic (temp file in `tmp/`, fsync, rename): a killed writer's leftovers
//! are all in one directory, which every build sweeps. A record is written only after every
//! blob it references, and a node's `last_ok` only after a successful record — so a
//! crash leaves either the old state or the new, plus an incomplete marker that the next
//! build reports. Unreadable or corrupt entries are misses with a warning, never errors.

pub mod lock;
mod pack;
mod repair;

pub use repair::Repaired;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use lock::{Holder, LockGuard};

/// Written to `LAYOUT`; bump on any incompatible change to the files below.
pub const LAYOUT: &str = "llmd-cache 1";

/// A blake3 digest in hex.
pub type Digest = String;

pub fn digest(bytes: &[u8]) -> Digest {
    crate::util::digest::digest(bytes)
}

/// How a node's execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
}

/// What a node consumed: named inputs with digests (or versions), plus the canonical
/// leaf values (config or treatment) it was computed from, stored as a blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub inputs: BTreeMap<String, String>,
    /// Blob holding `[[dotted.path, canonical JSON value, origin], ...]`.
    #[serde(default)]
    pub leaves: Option<Digest>,
    /// Blobs that explain a change of an input in detail (not part of the key): the
    /// template files' digests of a plan (`templates`), the rendered profile's leaves of
    /// a run (`profile`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Digest>,
}

/// One execution of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub key: String,
    pub id: String,
    pub kind: String,
    pub status: Status,
    pub manifest: Manifest,
    /// Output name → blob digest.
    pub outputs: BTreeMap<String, Digest>,
    pub started_unix: f64,
    pub duration_s: f64,
    #[serde(default)]
    pub error: Option<String>,
}

impl Record {
    pub const VERSION: u32 = 1;

    /// Digest of the record's output names and digests: what a downstream node's key
    /// covers of this node (the JSON of the sorted output map).
    pub fn outputs_digest(&self) -> Digest {
        // Streamed into the hasher: every fresh run and analysis asks.
        let mut h = blake3::Hasher::new();
        let _ = serde_json::to_writer(&mut h, &self.outputs);
        h.finalize().to_hex().to_string()
    }
}

/// Per logical node: the last attempt and the last success.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub id: String,
    pub last_ok: Option<String>,
    pub last: Option<String>,
    pub last_status: Option<Status>,
}

/// An interrupted node: its marker was written before its side effects and never removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incomplete {
    pub id: String,
    pub key: String,
    pub pid: u32,
    pub started_unix: f64,
}

pub struct Store {
    root: PathBuf,
    /// Problems met while reading (corrupt blobs or records), reported by the caller.
    warnings: Mutex<Vec<String>>,
    /// `records/`, opened on first use (`None`: it could not be; paths are used).
    records_dir: std::sync::OnceLock<Option<crate::util::fs::Dir>>,
    /// `records.pack`, read on first use (`None`: there is none, or it was written
    /// against other records).
    pack: std::sync::OnceLock<Option<pack::Pack>>,
    /// The pack, while a background thread reads it ([`Store::preload_record_pack`]).
    pack_loading: Mutex<Option<std::thread::JoinHandle<Option<pack::Pack>>>>,
    /// Records this process read or wrote, by key (`None`: as the pack has it): what
    /// the next pack holds. Bytes here are newer than the pack's.
    used: Mutex<std::collections::HashMap<String, Option<std::sync::Arc<[u8]>>>>,
    /// A record was read from its file or written: the pack on disk lacks it.
    pack_stale: std::sync::atomic::AtomicBool,
    /// The pack file is gone: removed by this process before it changed a record.
    pack_removed: Mutex<bool>,
    /// `decided.json`, read on first use.
    decided: std::sync::OnceLock<std::collections::HashMap<String, String>>,
}

fn shard(dir: &Path, name: &str) -> PathBuf {
    dir.join(&name[..2.min(name.len())]).join(name)
}

pub use crate::util::unix_now;

impl Store {
    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let layout = root.join("LAYOUT");
        match std::fs::read_to_string(&layout) {
            Ok(found) if found.trim() == LAYOUT => {}
            Ok(found) => bail!(
                "{} has layout '{}', this llmd uses '{LAYOUT}'; move it aside or delete it (it is only a cache)",
                root.display(),
                found.trim()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
                crate::util::fs::write_atomic(
                    &root.join("CACHEDIR.TAG"),
                    b"Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a cache created by llmd; see https://bford.info/cachedir/\n",
                )?;
                crate::util::fs::write_atomic(&root.join(".gitignore"), b"# Created by llmd: the cache is never committed.\n*\n")?;
                crate::util::fs::write_atomic(&layout, format!("{LAYOUT}\n").as_bytes())?;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", layout.display())),
        }
        for dir in ["blobs", "records", "nodes", "incomplete", "journal"] {
            std::fs::create_dir_all(root.join(dir)).with_context(|| format!("cannot create {}", root.join(dir).display()))?;
        }
        // Newer than the rest: a cache an older llmd made, mounted read-only, still opens
        // for reading (`why`, `status`); writing to it fails as it would anyway.
        let _ = std::fs::create_dir(root.join("tmp"));
        Ok(Store {
            root: root.to_path_buf(),
            warnings: Mutex::new(Vec::new()),
            records_dir: std::sync::OnceLock::new(),
            pack: std::sync::OnceLock::new(),
            pack_loading: Mutex::new(None),
            used: Mutex::new(Default::default()),
            pack_stale: Default::default(),
            pack_removed: Mutex::new(false),
            decided: std::sync::OnceLock::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `path` (inside the store) atomically, its temporary file in `tmp/`; without
    /// `durable`, no fsyncs (see [`Store::put_blob_unsynced`]).
    fn write(&self, path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
        crate::util::fs::write_atomic_via(&self.root.join("tmp"), path, bytes, durable)
    }

    fn warn(&self, msg: String) {
        self.warnings.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
    }

    /// Warnings collected since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the cache's lock for `command`, waiting for another holder (with `on_wait`
    /// called once with its description) up to `timeout`.
    pub fn lock(&self, command: &str, timeout: Option<std::time::Duration>, on_wait: impl FnMut(&str)) -> Result<LockGuard> {
        lock::acquire(&self.root.join("lock"), "cache", command, timeout, on_wait)
    }

    // ---- blobs

    fn blob_path(&self, d: &str) -> PathBuf {
        shard(&self.root.join("blobs"), d)
    }

    /// Stores bytes; returns their digest. Existing blobs are not rewritten.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_blob_with(bytes, true)
    }

    fn put_blob_with(&self, bytes: &[u8], durable: bool) -> Result<Digest> {
        let d = digest(bytes);
        let path = self.blob_path(&d);
        if !path.exists() {
            self.write(&path, bytes, durable)?;
        }
        Ok(d)
    }

    /// [`Store::put_blob`] without an fsync per blob; [`Store::sync`] must follow before
    /// a record refers to it. A node's outputs are many small blobs: one `syncfs` for all
    /// of them costs what one fsync does.
    pub fn put_blob_unsynced(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_blob_with(bytes, false)
    }

    /// Makes everything written to the cache's file system durable (`syncfs`).
    pub fn sync(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(&self.root).with_context(|| format!("cannot open {}", self.root.display()))?;
        // SAFETY: a valid open file descriptor for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot sync {}", self.root.display()));
        }
        Ok(())
    }

    /// Removes the temporary files of writers that are gone (a build killed mid-write):
    /// one read of `tmp/`, so every build (and `--dry-run`) can afford it — safe without
    /// the lock, since a dead writer's file is nobody's.
    pub fn sweep_stray_temps(&self) {
        repair::remove_stray_temps(&self.root.join("tmp"));
    }

    /// Reads a blob and checks its digest; a missing or corrupt blob is `None` (corrupt
    /// ones are reported as warnings and removed).
    pub fn get_blob(&self, d: &str) -> Option<Vec<u8>> {
        let path = self.blob_path(d);
        let bytes = std::fs::read(&path).ok()?;
        if digest(&bytes) != d {
            self.warn(format!("cache blob {} is corrupt (content does not match its digest); it is ignored and removed", path.display()));
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(bytes)
    }

    /// Whether blob `d` is stored (not whether it is intact: reading checks that). A
    /// stat: a no-op build asks only about nodes whose workspace copies are not intact.
    pub fn has_blob(&self, d: &str) -> bool {
        self.blob_path(d).is_file()
    }

    // ---- records

    fn record_path(&self, key: &str) -> PathBuf {
        shard(&self.root.join("records"), &format!("{key}.json"))
    }

    pub fn put_record(&self, rec: &Record) -> Result<()> {
        for d in rec.outputs.values().chain(rec.manifest.leaves.iter()) {
            if !self.has_blob(d) {
                bail!("internal error: record {} references blob {d}, which is not stored", rec.id);
            }
        }
        self.remove_pack()?;
        let bytes = serde_json::to_vec_pretty(rec)?;
        self.write(&self.record_path(&rec.key), &bytes, true)?;
        self.note_used(&rec.key, Some(bytes.into()));
        Ok(())
    }

    fn records_dir(&self) -> Option<&crate::util::fs::Dir> {
        self.records_dir.get_or_init(|| crate::util::fs::Dir::open(&self.root.join("records")).ok()).as_ref()
    }

    /// A record file's bytes (`None`: there is none, or it cannot be read).
    fn record_file_bytes(&self, key: &str) -> Option<Vec<u8>> {
        match self.records_dir() {
            Some(dir) if key.len() > 2 && key.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                dir.read(&format!("{}/{key}.json", &key[..2])).ok()
            }
            _ => std::fs::read(self.record_path(key)).ok(),
        }
    }

    /// Starts reading the record pack on a background thread: a build plans meanwhile,
    /// and its first decision waits for it.
    pub fn preload_record_pack(&self) {
        let root = self.root.clone();
        let loading = std::thread::Builder::new().name("llmd-record-pack".into()).spawn(move || pack::load(&root)).ok();
        *self.pack_loading.lock().unwrap_or_else(|e| e.into_inner()) = loading;
    }

    fn pack(&self) -> Option<&pack::Pack> {
        self.pack
            .get_or_init(|| {
                let pending = self.pack_loading.lock().unwrap_or_else(|e| e.into_inner()).take();
                // A reader that panicked: read it here.
                pending.and_then(|h| h.join().ok()).unwrap_or_else(|| pack::load(&self.root))
            })
            .as_ref()
    }

    /// `bytes`: read from the record's file or written (the pack lacks them), or `None`
    /// (as the pack has it).
    fn note_used(&self, key: &str, bytes: Option<std::sync::Arc<[u8]>>) {
        if bytes.is_some() {
            self.pack_stale.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.used.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), bytes);
    }

    fn parse_record(key: &str, bytes: &[u8]) -> Result<Record, String> {
        match serde_json::from_slice::<Record>(bytes) {
            Ok(r) if r.key == key && r.version == Record::VERSION => Ok(r),
            Ok(_) => Err("does not match its key or version".into()),
            Err(e) => Err(format!("is unreadable ({e})")),
        }
    }

    pub fn get_record(&self, key: &str) -> Option<Record> {
        // Written, or read from its file, by this process: newer than the pack's copy.
        let known = self.used.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned().flatten();
        if let Some(bytes) = known {
            return Self::parse_record(key, &bytes).ok();
        }
        // A damaged pack entry (it was a copy of a record that parsed) falls through to the file.
        if let Some(r) = self.pack().and_then(|p| p.get(key)).and_then(|b| Self::parse_record(key, b).ok()) {
            self.note_used(key, None);
            return Some(r);
        }
        let (r, bytes) = self.read_record_file(key)?;
        self.note_used(key, Some(bytes.into()));
        Some(r)
    }

    /// A record as its file has it, never the pack's copy (what `verify` checks); an
    /// unreadable one is `None` with a warning.
    fn read_record_file(&self, key: &str) -> Option<(Record, Vec<u8>)> {
        let bytes = self.record_file_bytes(key)?;
        match Self::parse_record(key, &bytes) {
            Ok(r) => Some((r, bytes)),
            Err(problem) => {
                self.warn(format!("cache record {} {problem}; ignored", self.record_path(key).display()));
                None
            }
        }
    }

    /// Removes the record pack, durably, before this process first changes `records/`:
    /// a crash between the two must not leave a pack that claims records that changed.
    fn remove_pack(&self) -> Result<()> {
        let mut removed = self.pack_removed.lock().unwrap_or_else(|e| e.into_inner());
        if *removed {
            return Ok(());
        }
        let path = self.root.join(pack::FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => std::fs::File::open(&self.root)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {} after removing {}", self.root.display(), path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {} (it must go before records change)", path.display())),
        }
        *removed = true;
        Ok(())
    }

    /// Keys whose copy in the (current) pack differs from their record file.
    fn pack_disagreements(&self) -> Vec<String> {
        let pack = self.pack().into_iter().flat_map(|p| p.iter());
        pack.filter(|(k, b)| self.record_file_bytes(k).as_deref() != Some(*b)).map(|(k, _)| k.to_string()).collect()
    }

    /// Writes the record pack of what this process used, when the pack on disk lacks
    /// any of it (a record read from its file, or written). Records of other
    /// experiments the old pack held stay, up to a bound. Call under the lock, after
    /// the last record write.
    pub fn write_record_pack(&self) -> Result<()> {
        if !self.pack_stale.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let Some(dir) = self.records_dir() else { return Ok(()) };
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.pack();
        let mut entries: Vec<(&str, &[u8])> = used
            .iter()
            .filter_map(|(k, v)| match v {
                Some(bytes) => Some((k.as_str(), &bytes[..])),
                None => old.and_then(|p| p.get(k)).map(|b| (k.as_str(), b)),
            })
            .collect();
        entries.sort_unstable_by_key(|(k, _)| *k);
        let bound = (2 * entries.len()).max(10_000);
        if let Some(old) = old {
            entries.extend(old.iter().filter(|(k, _)| !used.contains_key(*k)).take(bound.saturating_sub(entries.len())));
        }
        let bytes = pack::encode(&pack::records_stamp(dir), entries);
        self.write(&self.root.join(pack::FILE), &bytes, true)?;
        *self.pack_removed.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.pack_stale.store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    // ---- node index

    fn node_path(&self, id: &str) -> PathBuf {
        shard(&self.root.join("nodes"), &format!("{}.json", digest(id.as_bytes())))
    }

    pub fn node(&self, id: &str) -> NodeState {
        std::fs::read_to_string(self.node_path(id))
            .ok()
            .and_then(|t| serde_json::from_str::<NodeState>(&t).ok())
            .filter(|n| n.id == id)
            .unwrap_or_else(|| NodeState { id: id.to_string(), ..Default::default() })
    }

    /// Records a finished attempt: the record first, then the node's pointers.
    pub fn commit(&self, rec: &Record) -> Result<()> {
        self.put_record(rec)?;
        let mut n = self.node(&rec.id);
        n.last = Some(rec.key.clone());
        n.last_status = Some(rec.status);
        if rec.status == Status::Ok {
            n.last_ok = Some(rec.key.clone());
        }
        self.write(&self.node_path(&rec.id), serde_json::to_string_pretty(&n)?.as_bytes(), true)?;
        self.clear_incomplete(&rec.key);
        Ok(())
    }

    /// Every node state (for `cache ls` and gc).
    pub fn nodes(&self) -> Vec<NodeState> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(self.root.join("nodes")).into_iter().flatten().flatten() {
            for e in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                if let Some(n) = std::fs::read_to_string(e.path()).ok().and_then(|t| serde_json::from_str::<NodeState>(&t).ok()) {
                    out.push(n);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    // ---- the last build's decisions

    fn decisions(&self) -> &std::collections::HashMap<String, String> {
        self.decided.get_or_init(|| {
            let path = self.root.join("decided.json");
            match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    self.warn(format!("{} is unreadable ({e}); reasons are judged against each node's last success", path.display()));
                    Default::default()
                }),
                Err(_) => Default::default(),
            }
        })
    }

    /// The key the last build settled on for node `id`: the key it found fresh, or the
    /// one it executed.
    pub fn decided(&self, id: &str) -> Option<&str> {
        self.decisions().get(id).map(String::as_str)
    }

    /// Records what this build settled on (`id`, key) for each node; written only when
    /// something changed, so a no-op build writes nothing.
    pub fn record_decisions<'a>(&self, settled: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
        let mut all = self.decisions().clone();
        let mut changed = false;
        for (id, key) in settled {
            if all.get(id).map(String::as_str) != Some(key) {
                all.insert(id.to_string(), key.to_string());
                changed = true;
            }
        }
        if changed {
            let sorted: BTreeMap<&String, &String> = all.iter().collect();
            self.write(&self.root.join("decided.json"), &serde_json::to_vec(&sorted)?, true)?;
        }
        Ok(())
    }

    // ---- incomplete markers

    pub fn mark_incomplete(&self, id: &str, key: &str) -> Result<()> {
        let m = Incomplete { id: id.to_string(), key: key.to_string(), pid: std::process::id(), started_unix: unix_now() };
        self.write(&self.root.join("incomplete").join(key), serde_json::to_string(&m)?.as_bytes(), true)
    }

    pub fn clear_incomplete(&self, key: &str) {
        let _ = std::fs::remove_file(self.root.join("incomplete").join(key));
    }

    pub fn incomplete(&self, key: &str) -> Option<Incomplete> {
        std::fs::read_to_string(self.root.join("incomplete").join(key)).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// Every incomplete marker.
    pub fn incompletes(&self) -> Vec<Incomplete> {
        let mut out: Vec<Incomplete> = std::fs::read_dir(self.root.join("incomplete"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    // ---- journal

    /// Starts this invocation's journal.
    pub fn journal(&self, command: &str) -> Result<Journal> {
        let ms = (unix_now() * 1000.0) as u64;
        let path = self.root.join("journal").join(format!("{ms:015}-{}.jsonl", std::process::id()));
        let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let journal = Journal { path, file: Mutex::new(std::io::BufWriter::with_capacity(64 * 1024, file)) };
        journal.write(&serde_json::json!({"event": "start", "command": command, "pid": std::process::id(), "unix": unix_now()}));
        Ok(journal)
    }

    /// Journals, newest first.
    pub fn journals(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.root.join("journal"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        v.sort();
        v.reverse();
        v
    }

    // ---- maintenance

    /// Checks every record and blob; returns the problems found.
    pub fn verify(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for shard in std::fs::read_dir(self.root.join("blobs")).into_iter().flatten().flatten() {
            for e in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    continue;
                }
                match std::fs::read(e.path()) {
                    Ok(bytes) if digest(&bytes) == name => {}
                    _ => problems.push(format!("corrupt blob {}", e.path().display())),
                }
            }
        }
        for n in self.nodes() {
            for key in n.last_ok.iter().chain(n.last.iter()) {
                match self.read_record_file(key) {
                    None => problems.push(format!("node {}: record {key} is missing or unreadable", n.id)),
                    Some((r, _)) => {
                        for d in r.outputs.values().chain(r.manifest.leaves.iter()) {
                            if !self.has_blob(d) {
                                problems.push(format!("node {}: record {key} references missing blob {d}", n.id));
                            }
                        }
                    }
                }
            }
        }
        for p in self.unreadable_nodes() {
            problems.push(format!("unreadable node file {}", p.display()));
        }
        for p in self.stray_temp_files() {
            problems.push(format!("temporary file of a killed writer {}", p.display()));
        }
        for key in self.pack_disagreements() {
            problems.push(format!(
                "{} holds another copy of record {key} than {}",
                self.root.join(pack::FILE).display(),
                self.record_path(&key).display()
            ));
        }
        problems.extend(self.take_warnings());
        problems
    }

    /// Nodes a build was executing when it stopped (Ctrl-C, kill -9): not damage — the
    /// cache holds no half-written record — but what the next build runs again.
    pub fn interrupted(&self) -> Vec<String> {
        self.incompletes()
            .into_iter()
            .filter(|m| !Path::new(&format!("/proc/{}", m.pid)).exists())
            .map(|m| format!("node {} was interrupted (pid {} is gone); the next build re-runs it", m.id, m.pid))
            .collect()
    }

    /// Removes records no node points at, blobs no kept record references, and all but
    /// the newest `keep_journals` journals. Returns (records, blobs, journals) removed.
    /// Refuses while a node file is unreadable: the record it pointed at may be intact
    /// and reusable by key, and gc cannot tell which one it is.
    pub fn gc(&self, keep_journals: usize) -> Result<(usize, usize, usize)> {
        let unreadable = self.unreadable_nodes();
        if !unreadable.is_empty() {
            bail!(
                "{} node file(s) cannot be read (first: {}); gc removes nothing while it cannot tell what they point at \
                 (run `llmd cache verify --repair` first)",
                unreadable.len(),
                unreadable[0].display()
            );
        }
        self.remove_pack()?;
        let mut keep_records = std::collections::HashSet::new();
        let mut keep_blobs = std::collections::HashSet::new();
        for n in self.nodes() {
            for key in n.last_ok.iter().chain(n.last.iter()) {
                if let Some(r) = self.get_record(key) {
                    keep_blobs.extend(r.outputs.values().cloned());
                    keep_blobs.extend(r.manifest.leaves.iter().cloned());
                    keep_records.insert(format!("{key}.json"));
                }
            }
        }
        let mut removed = (0, 0, 0);
        for (dir, keep, count) in [("records", &keep_records, &mut removed.0), ("blobs", &keep_blobs, &mut removed.1)] {
            for shard in std::fs::read_dir(self.root.join(dir)).into_iter().flatten().flatten() {
                for e in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if !keep.contains(&name) && std::fs::remove_file(e.path()).is_ok() {
                        *count += 1;
                    }
                }
            }
        }
        for old in self.journals().into_iter().skip(keep_journals) {
            if std::fs::remove_file(old).is_ok() {
                removed.2 += 1;
            }
        }
        Ok(removed)
    }

    /// A self-contained bundle of the records (and their blobs) of nodes whose id starts
    /// with one of `prefixes` (all nodes when empty): for CI caches.
    pub fn export(&self, prefixes: &[&str]) -> Result<serde_json::Value> {
        use base64::Engine;
        let mut records = Vec::new();
        let mut blobs = serde_json::Map::new();
        for n in self.nodes() {
            if !prefixes.is_empty() && !prefixes.iter().any(|p| n.id.starts_with(p)) {
                continue;
            }
            let Some(key) = &n.last_ok else { continue };
            let Some(r) = self.get_record(key) else { continue };
            for d in r.outputs.values().chain(r.manifest.leaves.iter()) {
                if let Some(bytes) = self.get_blob(d) {
                    blobs.insert(d.clone(), base64::engine::general_purpose::STANDARD.encode(bytes).into());
                }
            }
            records.push(serde_json::to_value(&r)?);
        }
        Ok(serde_json::json!({"format": "llmd-cache-bundle", "layout": LAYOUT, "records": records, "blobs": blobs}))
    }

    /// Imports a bundle; every blob is checked against its digest. Returns the number of
    /// records imported.
    pub fn import(&self, bundle: &serde_json::Value) -> Result<usize> {
        use base64::Engine;
        if bundle["format"] != "llmd-cache-bundle" || bundle["layout"] != LAYOUT {
            bail!("not an llmd cache bundle for layout '{LAYOUT}'");
        }
        // Everything is checked before anything is written.
        let mut blobs = Vec::new();
        for (d, b64) in bundle["blobs"].as_object().into_iter().flatten() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().unwrap_or_default())
                .with_context(|| format!("blob {d} is not base64"))?;
            if digest(&bytes) != *d {
                bail!("bundle blob {d} does not match its digest; nothing was imported");
            }
            blobs.push(bytes);
        }
        let records: Vec<Record> = bundle["records"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                serde_json::from_value(r.clone()).with_context(|| format!("bundle record #{i} is malformed; nothing was imported"))
            })
            .collect::<Result<_>>()?;
        for bytes in blobs {
            self.put_blob(&bytes)?;
        }
        let mut n = 0;
        for rec in records.iter().filter(|r| r.status == Status::Ok) {
            self.commit(rec)?;
            n += 1;
        }
        Ok(n)
    }
}

/// One invocation's decisions, one JSON object per line.
///
/// Lines are buffered: [`Journal::append`] for bursts (thousands of decisions), and
/// [`Journal::write`] which also flushes, for events that must survive a crash right
/// after them (a node starting or finishing).
pub struct Journal {
    pub path: PathBuf,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl Journal {
    /// Appends a line without flushing.
    pub fn append(&self, entry: &impl serde::Serialize) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if serde_json::to_writer(&mut *f, entry).is_ok() {
            let _ = f.write_all(b"\n");
        }
    }

    /// Appends a line and flushes everything buffered.
    pub fn write(&self, entry: &serde_json::Value) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{entry}");
        let _ = f.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, id: &str, status: Status, outputs: BTreeMap<String, Digest>) -> Record {
        Record {
            version: Record::VERSION,
            key: key.into(),
            id: id.into(),
            kind: "plan".into(),
            status,
            manifest: Manifest::default(),
            outputs,
            started_unix: 0.0,
            duration_s: 0.1,
            error: None,
        }
    }

    #[test]
    fn the_outputs_digest_is_the_digest_of_the_outputs_json() {
        let outputs = BTreeMap::from([("a \"b\"".to_string(), digest(b"1")), ("file:x/y.yaml".to_string(), digest(b"2"))]);
        let rec = record("k", "run/x", Status::Ok, outputs.clone());
        assert_eq!(rec.outputs_digest(), digest(serde_json::to_string(&outputs).unwrap().as_bytes()));
    }

    #[test]
    fn layout_records_and_node_pointers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".llmdcache");
        let s = Store::open(&root).unwrap();
        assert!(root.join("CACHEDIR.TAG").is_file() && root.join(".gitignore").is_file());
        let d = s.put_blob(b"hello").unwrap();
        assert_eq!(s.get_blob(&d).as_deref(), Some(&b"hello"[..]));
        let outputs = BTreeMap::from([("out".to_string(), d.clone())]);
        s.mark_incomplete("plan/a", "k1").unwrap();
        assert!(s.incomplete("k1").is_some());
        s.commit(&record("k1", "plan/a", Status::Ok, outputs.clone())).unwrap();
        assert!(s.incomplete("k1").is_none(), "commit clears the marker");
        s.commit(&record("k2", "plan/a", Status::Failed, BTreeMap::new())).unwrap();
        let n = s.node("plan/a");
        assert_eq!((n.last_ok.as_deref(), n.last.as_deref(), n.last_status), (Some("k1"), Some("k2"), Some(Status::Failed)));
        assert!(s.verify().is_empty(), "{:?}", s.verify());

        // A record that points at a blob that is not stored is refused.
        let bad = BTreeMap::from([("out".to_string(), digest(b"absent"))]);
        assert!(s.commit(&record("k3", "plan/b", Status::Ok, bad)).is_err());

        // Corruption is a miss and a warning, never an error.
        std::fs::write(s.blob_path(&d), b"tampered").unwrap();
        assert!(s.get_blob(&d).is_none());
        assert!(s.take_warnings()[0].contains("corrupt"));
        std::fs::write(s.record_path("k1"), b"{not json").unwrap();
        let s = Store::open(&root).unwrap(); // this process remembers what it wrote
        assert!(s.get_record("k1").is_none());
        assert!(!s.verify().is_empty());

        // A different layout is refused.
        std::fs::write(root.join("LAYOUT"), "llmd-cache 0\n").unwrap();
        assert!(Store::open(&root).err().unwrap().to_string().contains("llmd-cache 0"));
    }

    #[test]
    fn the_record_pack_serves_reads_until_records_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".llmdcache");
        let s = Store::open(&root).unwrap();
        let d = s.put_blob(b"out").unwrap();
        for (key, id) in [("a1", "run/a"), ("b2", "run/b")] {
            s.commit(&record(key, id, Status::Ok, BTreeMap::from([("out".to_string(), d.clone())]))).unwrap();
        }
        s.write_record_pack().unwrap();
        let pack = root.join(pack::FILE);
        assert!(pack.is_file());

        // A later process reads the pack, not the files: an in-place edit of a record
        // (which no writer makes) shows only as the pack's copy, and `verify` names it.
        std::fs::write(s.record_path("a1"), b"{not json").unwrap();
        let s = Store::open(&root).unwrap();
        assert_eq!(s.get_record("a1").map(|r| r.id), Some("run/a".to_string()));
        assert!(s.verify().iter().any(|p| p.contains("records.pack holds another copy of record a1")), "{:?}", s.verify());
        let fixed = s.repair().unwrap();
        assert!(!pack.exists() && fixed.actions.iter().any(|a| a.contains("records.pack")), "{:?}", fixed.actions);

        // A record removed by hand changes `records/`: the pack is not trusted.
        let s = Store::open(&root).unwrap();
        assert!(s.get_record("b2").is_some());
        s.write_record_pack().unwrap();
        assert!(pack.is_file(), "a record read from its file is packed");
        std::thread::sleep(std::time::Duration::from_millis(20)); // past the clock tick of the mtimes
        std::fs::remove_file(s.record_path("b2")).unwrap();
        assert!(Store::open(&root).unwrap().get_record("b2").is_none());

        // Writing a record removes the pack first; a pack written after it holds it.
        let s = Store::open(&root).unwrap();
        s.commit(&record("c3", "run/c", Status::Ok, BTreeMap::new())).unwrap();
        assert!(!pack.exists(), "a record write removes the pack");
        s.write_record_pack().unwrap();
        let s = Store::open(&root).unwrap();
        assert!(s.pack().is_some_and(|p| p.get("c3").is_some()));
        assert_eq!(s.get_record("c3").map(|r| r.id), Some("run/c".to_string()));
    }

    #[test]
    fn gc_keeps_what_nodes_point_at_and_bundles_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c")).unwrap();
        let keep = s.put_blob(b"keep").unwrap();
        let _orphan = s.put_blob(b"orphan").unwrap();
        s.commit(&record("k1", "plan/x", Status::Ok, BTreeMap::from([("o".to_string(), keep.clone())]))).unwrap();
        let (_, blobs, _) = s.gc(5).unwrap();
        assert_eq!(blobs, 1);
        assert!(s.has_blob(&keep));
        let bundle = s.export(&["plan/"]).unwrap();
        let other = Store::open(&dir.path().join("d")).unwrap();
        assert_eq!(other.import(&bundle).unwrap(), 1);
        assert_eq!(other.node("plan/x").last_ok.as_deref(), Some("k1"));
        let mut tampered = bundle.clone();
        tampered["blobs"][&keep] = serde_json::Value::from("b3JwaGFu");
        assert!(Store::open(&dir.path().join("e")).unwrap().import(&tampered).is_err());
    }
}
