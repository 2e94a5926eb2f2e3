//! Copies cached outputs into the workspace, where users browse them, and remembers
//! what it wrote so a no-op build does not read a single blob.
//!
//! The index (`<workspace>/.llmd-materialized`) maps a record key to the files it
//! was materialized into, each with its size and mtime as written. A record is up to date
//! when every one of its files still has that size and mtime; anything else (a deleted,
//! edited or touched file, a record never materialized) re-materializes it, comparing
//! bytes so unchanged files are not rewritten. The index is a cache of stat results, not
//! a source of truth: losing it costs one full comparison pass. It is read, and every
//! publication it lists checked, on a background thread from [`Materializer::open`]
//! on — while the planner merges stacks — so deciding thousands of fresh nodes asks a
//! set, not the file system.
//!
//! The workspace is a projection of the build: after a build that changed it, every
//! file under the directories builds write (`plan/`, `results/`, `analysis/`,
//! `workload/profiles/` of each setup, `cross-treatment-comparison/`, the summary files
//! at the root) that no current node's record wrote is removed — superseded results,
//! analyses, rendered profiles and plots do not pile up, and `rm -rf workspace` plus a
//! build gives back the same tree. Live deployment state (`receipts/`, `setup/logs/`)
//! and the files of failed runs kept for inspection (`failed-runs/`) are not outputs of
//! any record and are left alone.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::decide::Graph;
use crate::store::Store;

const FILE_NAME: &str = ".llmd-materialized";
/// Where versions before 3 kept the index (as JSON); removed when the index is saved.
const OLD_FILE_NAME: &str = ".llmd-materialized.json";

#[derive(Default)]
struct IndexFile {
    /// publication (see [`unit`]) → its files
    records: BTreeMap<String, Stamps>,
}

impl IndexFile {
    const MAGIC: &[u8] = b"llmd-workspace-index 3\n";

    /// Lines, parsed in a few milliseconds even for thousands of publications (a no-op
    /// build reads it): the header, then per publication `@<unit>` and one
    /// `<size> <mtime ns> <path>` line per file. Names with a newline are not saved —
    /// their publication is compared again by the next build.
    fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Self::MAGIC.to_vec();
        let plain = |b: &[u8]| !b.contains(&b'\n');
        for (unit, files) in &self.records {
            if !plain(unit.as_bytes()) || !files.keys().all(|p| plain(p.as_os_str().as_bytes())) {
                continue;
            }
            out.push(b'@');
            out.extend_from_slice(unit.as_bytes());
            out.push(b'\n');
            for (path, (len, mtime)) in files {
                out.extend_from_slice(format!("{len} {mtime} ").as_bytes());
                out.extend_from_slice(path.as_os_str().as_bytes());
                out.push(b'\n');
            }
        }
        out
    }

    /// `None`: not an index of this version, or damaged.
    fn decode(bytes: &[u8]) -> Option<IndexFile> {
        use std::os::unix::ffi::OsStrExt;
        let body = bytes.strip_prefix(Self::MAGIC)?;
        let mut records = BTreeMap::new();
        let mut current: Option<(String, Stamps)> = None;
        for line in body.split(|&b| b == b'\n') {
            if let Some(unit) = line.strip_prefix(b"@") {
                records.extend(current.take());
                current = Some((String::from_utf8(unit.to_vec()).ok()?, Stamps::new()));
            } else if !line.is_empty() {
                let mut parts = line.splitn(3, |&b| b == b' ');
                let len = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
                let mtime = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(parts.next()?));
                current.as_mut()?.1.insert(path, (len, mtime));
            }
        }
        records.extend(current);
        Some(IndexFile { records })
    }
}

/// File path → (size, mtime in ns) as written.
type Stamps = BTreeMap<PathBuf, (u64, i128)>;

/// One publication of a record: the same record can be published in several places
/// (two setup treatments with identical stacks share their plan, runs and analyses),
/// each tracked on its own: `<record key>@<destination directory>`.
pub fn unit(record_key: &str, dest: &Path) -> String {
    format!("{record_key}@{}", dest.display())
}

pub struct Materializer {
    path: PathBuf,
    /// The index, read on a background thread from [`Materializer::open`] on (a large
    /// experiment's takes a while to parse, and planning needs no workspace); the first
    /// use waits for it.
    loaded: std::sync::OnceLock<Loaded>,
    loading: std::sync::Mutex<Option<std::thread::JoinHandle<Loaded>>>,
    dirty: bool,
    /// Publications already found intact in this process: deciding and materializing
    /// both ask, and each stat costs (thousands of files in a large experiment).
    intact: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Workspace writes that failed (a full disk, a read-only directory), each naming
    /// its path: they fail the build, since its outputs are not where it says.
    pub failed: Vec<String>,
}

struct Loaded {
    index: IndexFile,
    /// The index was missing or unreadable: the workspace may hold anything.
    fresh: bool,
    /// The publications whose files were all as written when the index was read.
    intact: std::collections::HashSet<String>,
}

impl Loaded {
    /// Reads an index (an unreadable or old one is treated as empty) and checks every
    /// publication it lists: every fresh node asks about its own, and answering them all
    /// here, off the planning thread, keeps thousands of stats out of deciding.
    fn read(path: &Path) -> Loaded {
        let index = std::fs::read(path).ok().and_then(|b| IndexFile::decode(&b));
        let fresh = index.is_none();
        let index = index.unwrap_or_default();
        // In parallel: the planning thread waits for this once it has merged the stacks.
        let units: Vec<(&String, &Stamps)> = index.records.iter().collect();
        let parts = crate::util::map_chunks(&units, 4, |part| {
            part.iter().filter(|(_, files)| files_intact(files)).map(|(u, _)| (*u).clone()).collect::<Vec<_>>()
        });
        // A checker that panicked leaves its publications unchecked: they are stat'ed when asked.
        let intact = parts.into_iter().flatten().flatten().collect();
        Loaded { index, fresh, intact }
    }
}

/// Whether each file still has the size and mtime it was written with.
fn files_intact(files: &Stamps) -> bool {
    files.iter().all(|(p, s)| stamp(p) == Some(*s))
}

fn stamp(path: &Path) -> Option<(u64, i128)> {
    crate::util::fs::Stamp::of(path).ok().map(|s| (s.len, s.mtime_ns))
}

impl Materializer {
    /// Starts reading the workspace's index (an unreadable or old one is treated as
    /// empty).
    pub fn open(workspace: &Path) -> Materializer {
        let path = workspace.join(FILE_NAME);
        let reader = path.clone();
        // Without a thread, the first use reads the index itself.
        let loading = std::thread::Builder::new().name("llmd-workspace-index".into()).spawn(move || Loaded::read(&reader)).ok();
        Materializer {
            path,
            loaded: std::sync::OnceLock::new(),
            loading: std::sync::Mutex::new(loading),
            dirty: false,
            intact: Default::default(),
            failed: Vec::new(),
        }
    }

    fn loaded(&self) -> &Loaded {
        self.loaded.get_or_init(|| {
            let pending = self.loading.lock().unwrap_or_else(|e| e.into_inner()).take();
            let mut loaded = pending.and_then(|h| h.join().ok()).unwrap_or_else(|| Loaded::read(&self.path));
            self.intact.lock().unwrap_or_else(|e| e.into_inner()).extend(std::mem::take(&mut loaded.intact));
            loaded
        })
    }

    fn index(&self) -> &IndexFile {
        &self.loaded().index
    }

    fn index_mut(&mut self) -> &mut IndexFile {
        self.loaded();
        &mut self.loaded.get_mut().expect("the index was just loaded").index
    }

    /// The index was missing or unreadable: the workspace may hold anything.
    fn fresh_index(&self) -> bool {
        self.loaded().fresh
    }

    /// The publications of `record_key`.
    fn units_of<'a>(&'a self, record_key: &str) -> impl Iterator<Item = &'a String> + 'a {
        let from = format!("{record_key}@");
        let to = format!("{record_key}A"); // 'A' follows '@'
        self.index().records.range(from..to).map(|(u, _)| u)
    }

    /// Whether `record_key` was published and every file of every publication is still
    /// as written.
    pub fn up_to_date(&self, record_key: &str) -> bool {
        let mut any = false;
        for u in self.units_of(record_key) {
            if !self.unit_up_to_date(u) {
                return false;
            }
            any = true;
        }
        any
    }

    /// Whether the files of publication `unit` are all still as written.
    pub fn unit_up_to_date(&self, unit: &str) -> bool {
        let index = self.index();
        if self.intact.lock().unwrap_or_else(|e| e.into_inner()).contains(unit) {
            return true;
        }
        let ok = index.records.get(unit).is_some_and(files_intact);
        if ok {
            self.intact.lock().unwrap_or_else(|e| e.into_inner()).insert(unit.to_string());
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

    /// Whether the index lists `path` among the files of publication `unit`.
    pub fn lists(&self, unit: &str, path: &Path) -> bool {
        self.index().records.get(unit).is_some_and(|files| files.contains_key(path))
    }

    /// Remembers that publication `unit` wrote `files`.
    pub fn remember(&mut self, unit: &str, files: &[PathBuf]) {
        self.intact.get_mut().unwrap_or_else(|e| e.into_inner()).insert(unit.to_string());
        let stamped: Stamps = files.iter().filter_map(|p| stamp(p).map(|s| (p.clone(), s))).collect();
        if self.index().records.get(unit) != Some(&stamped) {
            self.index_mut().records.insert(unit.to_string(), stamped);
            self.dirty = true;
        }
    }

    /// Forgets publication `unit`, so the next materialization compares and rewrites.
    pub fn forget(&mut self, unit: &str) {
        self.intact.get_mut().unwrap_or_else(|e| e.into_inner()).remove(unit);
        self.dirty |= self.index_mut().records.remove(unit).is_some();
    }

    /// Forgets every publication of `record_key` (it was just re-executed: same key,
    /// possibly different bytes).
    pub fn forget_record(&mut self, record_key: &str) {
        let units: Vec<String> = self.units_of(record_key).cloned().collect();
        for u in units {
            self.forget(&u);
        }
    }

    /// Drops every publication not in `live` (files of superseded ones are no longer tracked).
    pub fn retain(&mut self, live: &std::collections::HashSet<String>) {
        let records = &mut self.index_mut().records;
        let before = records.len();
        records.retain(|k, _| live.contains(k));
        self.dirty |= self.index().records.len() != before;
    }

    /// Saves the index if it changed.
    pub fn save(&mut self) -> anyhow::Result<()> {
        if self.dirty {
            crate::util::fs::write_atomic_unsynced(&self.path, &self.index().encode())?;
            let _ = std::fs::remove_file(self.path.with_file_name(OLD_FILE_NAME));
            self.dirty = false;
        }
        Ok(())
    }
}

// ---- what each node kind publishes, and where

/// Writes each `(path, digest)` of publication `unit` into the workspace, unless the
/// index says they are all still as written.
fn publish(mat: &mut Materializer, store: &Store, unit: &str, files: Vec<(PathBuf, String)>) {
    if mat.unit_up_to_date(unit) {
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
        mat.remember(unit, &written);
    }
}

/// A stack's plan: `<setup workspace>/plan/<stack>/`, manifests an older plan rendered
/// and this one does not removed.
pub fn publish_plan(mat: &mut Materializer, store: &Store, graph: &Graph, si: usize, ki: usize) {
    let setup = &graph.setups[si];
    let stack = &setup.stacks[ki];
    let Some(rec) = &graph.nodes[stack.plan].record else { return };
    let unit = unit(&rec.key, &setup.workspace);
    if mat.unit_up_to_date(&unit) {
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
    publish(mat, store, &unit, files);
}

/// Where a run slot's rendered profile goes: named after the slot's own treatment (a run
/// shared by two treatments with identical inputs shows under both names), as the run
/// wrote it (`<setup>/workload/profiles/<harness>/<stack>[/rep-N]/<profile>-<treatment>`).
fn profile_path(graph: &Graph, workspace: &Path, stack: &str, slot: &super::decide::RunSlot) -> PathBuf {
    let mut dir = workspace.join("workload/profiles").join(graph.harness.name()).join(stack);
    if slot.seed.is_some() {
        dir = dir.join(format!("rep-{}", slot.rep));
    }
    dir.join(crate::phases::run::rendered_name(&slot.profile_path, Some(&slot.treatment)))
}

/// A stack's runs and analyses, under each run's results directory
/// (see `phases::analysis::workspace_path`), and each run's rendered profile.
pub fn publish_runs(mat: &mut Materializer, store: &Store, graph: &Graph, si: usize, ki: usize) {
    let setup = &graph.setups[si];
    let stack = &setup.stacks[ki];
    let profile_of = |slot: &super::decide::RunSlot, rec: &crate::store::Record| {
        let d = rec.outputs.iter().find(|(name, _)| name.starts_with("profile:")).map(|(_, d)| d.clone())?;
        Some((profile_path(graph, &setup.workspace, &stack.name, slot), d))
    };
    // The records to publish (again): one whose files, or the profile of any slot that
    // uses it, are not all as written. Slots sharing a run publish the union.
    let here = |key: &str| unit(key, &setup.workspace);
    let mut stale = std::collections::BTreeSet::new();
    for slot in &stack.runs {
        let Some(rec) = &graph.nodes[slot.run].record else { continue };
        let listed = profile_of(slot, rec).is_none_or(|(p, _)| mat.lists(&here(&rec.key), &p));
        if !mat.unit_up_to_date(&here(&rec.key)) || !listed {
            stale.insert(rec.key.clone());
        }
        if let Some(a) = graph.nodes[slot.analysis].record.as_ref().filter(|a| !mat.unit_up_to_date(&here(&a.key))) {
            stale.insert(a.key.clone());
        }
    }
    if stale.is_empty() {
        return;
    }
    let mut todo: BTreeMap<String, BTreeMap<PathBuf, String>> = BTreeMap::new();
    for slot in &stack.runs {
        let Some(rec) = &graph.nodes[slot.run].record else { continue };
        let analysis = graph.nodes[slot.analysis].record.as_ref().filter(|a| stale.contains(&a.key));
        if !stale.contains(&rec.key) && analysis.is_none() {
            continue;
        }
        let Some(dir) = rec.outputs.get("eid").and_then(|d| store.get_blob(d)) else { continue };
        let dir = String::from_utf8_lossy(&dir).to_string();
        let place = |r: &crate::store::Record| -> Vec<(PathBuf, String)> {
            r.outputs
                .iter()
                .filter(|(name, _)| !name.starts_with("profile:"))
                .filter_map(|(name, d)| crate::phases::analysis::workspace_path(&setup.workspace, &dir, name).map(|p| (p, d.clone())))
                .collect()
        };
        if stale.contains(&rec.key) {
            let files = todo.entry(rec.key.clone()).or_default();
            files.extend(place(rec));
            files.extend(profile_of(slot, rec));
        }
        if let Some(a) = analysis {
            todo.entry(a.key.clone()).or_default().extend(place(a));
        }
    }
    for (key, files) in todo {
        // Published as a whole: files already as written are compared, not rewritten.
        let unit = here(&key);
        mat.forget(&unit);
        publish(mat, store, &unit, files.into_iter().collect());
    }
}

/// The summary's outputs, at the workspace root.
pub fn publish_summary(mat: &mut Materializer, store: &Store, graph: &Graph, workspace: &Path) {
    let Some(rec) = &graph.nodes[graph.summary].record else { return };
    let files: Vec<(PathBuf, String)> = rec.outputs.iter().map(|(name, d)| (workspace.join(name), d.clone())).collect();
    publish(mat, store, &unit(&rec.key, workspace), files);
}

/// Forgets index entries of records this build no longer uses, removes what no current
/// node wrote (when anything changed), and saves the index.
pub fn finish(mat: &mut Materializer, graph: &Graph, workspace: &Path) {
    // Every current publication: each setup's plans, runs and analyses in its own
    // directory, the summary at the root.
    let mut live = std::collections::HashSet::new();
    for setup in &graph.setups {
        for stack in &setup.stacks {
            let nodes = std::iter::once(stack.plan).chain(stack.runs.iter().flat_map(|r| [r.run, r.analysis]));
            live.extend(nodes.filter_map(|i| graph.nodes[i].record.as_ref()).map(|r| unit(&r.key, &setup.workspace)));
        }
    }
    live.extend(graph.nodes[graph.summary].record.as_ref().map(|r| unit(&r.key, workspace)));
    mat.retain(&live);
    // Only when every current output is accounted for: a file the index does not list
    // (its record could not be materialized) is never taken for a superseded one.
    let complete = mat.failed.is_empty() && live.iter().all(|u| mat.index().records.contains_key(u));
    if (mat.dirty || mat.fresh_index()) && complete {
        let setups = graph.setups.iter().map(|s| s.workspace.clone());
        let removed = sweep(workspace, setups, mat.index());
        if removed > 0 {
            crate::util::lap(&format!("removed {removed} superseded workspace file(s)"));
        }
    }
    if let Err(e) = mat.save() {
        say!("error: cannot save the materialization index: {e:#}");
        mat.failed.push(format!("cannot save the materialization index: {e:#}"));
    }
}

/// Summary outputs at the workspace root (see `phases::summary::summarize`).
const ROOT_OUTPUTS: [&str; 5] = ["summary.json", "summary.csv", "summary.txt", "repetitions.csv", "report.html"];

/// Removes every file under the output directories of `workspace` that no record in
/// `index` wrote, then the directories left empty. Files are told apart by device and
/// inode, so a workspace named two ways (`ws`, `./ws`) is still one. Returns how many
/// files went.
fn sweep(workspace: &Path, setups: impl Iterator<Item = PathBuf>, index: &IndexFile) -> usize {
    use std::collections::HashSet;
    let identity = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let keep: HashSet<(u64, u64)> = index.records.values().flat_map(|files| files.keys()).filter_map(|p| identity(p)).collect();
    // Every setup directory, current or not: a setup dropped from the experiment has no
    // current outputs.
    let mut setup_dirs: Vec<PathBuf> = std::fs::read_dir(workspace)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("setup-treatment-") && e.path().is_dir())
        .map(|e| e.path())
        .collect();
    setup_dirs.extend(setups);
    let mut roots: Vec<PathBuf> =
        setup_dirs.iter().flat_map(|d| ["plan", "results", "analysis", "workload/profiles"].map(|sub| d.join(sub))).collect();
    roots.push(workspace.join("cross-treatment-comparison"));
    let mut removed = 0;
    let mut remove = |p: &Path| {
        if identity(p).is_some_and(|id| !keep.contains(&id)) && std::fs::remove_file(p).is_ok() {
            removed += 1;
        }
    };
    for name in ROOT_OUTPUTS {
        let p = workspace.join(name);
        if p.is_file() {
            remove(&p);
        }
    }
    let mut seen = HashSet::new();
    for root in roots {
        if !seen.insert(identity(&root)) || identity(&root).is_none() {
            continue;
        }
        remove_tree_except(&root, &mut remove);
        // Emptied, the output directory goes too (a build makes it again when needed).
        if std::fs::remove_dir(&root).is_ok() && root.ends_with("workload/profiles") {
            let _ = root.parent().map(std::fs::remove_dir);
        }
    }
    // A setup no longer in the experiment whose outputs are all gone (its stacks torn down).
    for dir in setup_dirs {
        let _ = std::fs::remove_dir(dir);
    }
    removed
}

/// Calls `remove` on every file below `dir`, depth first, and removes the directories
/// that end up empty (not `dir` itself).
fn remove_tree_except(dir: &Path, remove: &mut impl FnMut(&Path)) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                remove_tree_except(&p, remove);
                let _ = std::fs::remove_dir(&p);
            }
            Ok(_) => remove(&p),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_round_trips_and_a_damaged_or_old_one_is_none() {
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"ws/r\xff s/a b.json"));
        let mut index = IndexFile::default();
        index
            .records
            .insert("k1@ws".into(), Stamps::from([(PathBuf::from("ws/p/x.yaml"), (12, 1_796_154_856_614_047_770)), (odd, (0, -5))]));
        index.records.insert("k2@ws".into(), Stamps::new());
        let bytes = index.encode();
        let back = IndexFile::decode(&bytes).unwrap();
        assert_eq!(back.records, index.records);
        // A name with a newline is left out (compared again next build), the rest kept.
        index.records.insert("k3@ws".into(), Stamps::from([(PathBuf::from("ws/a\nb"), (1, 1))]));
        assert_eq!(IndexFile::decode(&index.encode()).unwrap().records.len(), 2);
        assert!(IndexFile::decode(b"{\"version\": 2, \"records\": {}}").is_none(), "the JSON of version 2");
        assert!(IndexFile::decode(&[&bytes[..], b"12 x ws/y\n"].concat()).is_none(), "a bad mtime");
        assert!(IndexFile::decode(&[IndexFile::MAGIC, b"1 2 ws/orphan\n"].concat()).is_none(), "a file before any publication");
    }

    #[test]
    fn the_sweep_removes_only_outputs_no_publication_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        let file = |rel: &str| {
            let p = ws.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, rel).unwrap();
            p
        };
        let live = [
            file("setup-treatment-a/results/r1_1/report.json"),
            file("setup-treatment-a/workload/profiles/llmd/sim/p-r1.yaml"),
            file("summary.txt"),
        ];
        let superseded = [
            file("setup-treatment-a/results/r0_1/report.json"),
            file("setup-treatment-a/analysis/r0_1.json"),
            file("setup-treatment-a/workload/profiles/llmd/sim/p-r0.yaml"),
            file("setup-treatment-gone/plan/sim/config.yaml"),
            file("cross-treatment-comparison/plots/old.png"),
            file("report.html"),
        ];
        let kept = [
            file("setup-treatment-a/receipts/sim.json"),
            file("setup-treatment-a/setup/logs/sim-0.log"),
            file("setup-treatment-a/failed-runs/r9_1/report.json"),
            file("notes.md"),
            file(".llmd-materialized"),
        ];
        let mut m = Materializer::open(ws);
        // Named another way (`./`): files are told apart by inode, not by spelling.
        let spelled: Vec<PathBuf> = live.iter().map(|p| ws.join(".").join(p.strip_prefix(ws).unwrap())).collect();
        m.remember(&unit("k", ws), &spelled);
        assert_eq!(sweep(ws, std::iter::once(ws.join("setup-treatment-a")), m.index()), superseded.len());
        for p in live.iter().chain(&kept) {
            assert!(p.is_file(), "{} was removed", p.display());
        }
        for p in &superseded {
            assert!(!p.exists(), "{} was left", p.display());
        }
        assert!(!ws.join("setup-treatment-a/results/r0_1").exists(), "emptied directories go too");
        assert!(!ws.join("setup-treatment-gone").exists(), "a setup no longer built leaves nothing behind");
    }

    #[test]
    fn stale_after_any_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        let mut m = Materializer::open(dir.path());
        assert!(!m.up_to_date("k"));
        assert!(Materializer::write(&f, b"one").unwrap());
        assert!(!Materializer::write(&f, b"one").unwrap(), "same bytes are not rewritten");
        m.remember(&unit("k", dir.path()), std::slice::from_ref(&f));
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
