//! Damage the store can find and undo: node files that cannot be read, pointers to
//! records that are gone or unreadable, corrupt blobs, malformed records and temporary
//! files a killed writer left behind.
//!
//! Repair only removes. Every result is content-addressed, so removing a damaged thing
//! never loses an intact one: a node whose pointer is removed is decided again by the
//! next build, which finds an intact record by its key or runs the node.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{NodeState, Store, digest};

/// What [`Store::repair`] removed, each entry a line for the user.
#[derive(Debug, Default)]
pub struct Repaired {
    pub actions: Vec<String>,
    /// Node ids whose pointers changed: the next build decides them again.
    pub rerun: Vec<String>,
}

/// `.NAME.tmp-PID-N`: an atomic write's temporary file (see `util::fs`).
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    tail.split('-').next()?.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A temporary file whose writer is gone.
pub(super) fn is_stray_temp(name: &str) -> bool {
    temp_owner(name).is_some_and(|pid| !alive(pid))
}

/// Removes the stray temporary files in `dir` (the store's `tmp/`): it reads directory
/// entries only and looks closer only at the dot-files temporaries are.
pub(super) fn remove_stray_temps(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') && name.to_str().is_some_and(is_stray_temp) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn files_in_shards(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if shard.path().is_dir() {
            out.extend(std::fs::read_dir(shard.path()).into_iter().flatten().flatten().map(|e| e.path()));
        } else {
            out.push(shard.path());
        }
    }
    out.sort();
    out
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
}

impl Store {
    /// Node files that do not parse: a damaged pointer. The record it pointed at may still
    /// be intact and reusable by key, so nothing may treat it as garbage.
    pub fn unreadable_nodes(&self) -> Vec<PathBuf> {
        files_in_shards(&self.root.join("nodes"))
            .into_iter()
            .filter(|p| temp_owner(&name_of(p)).is_none())
            .filter(|p| std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str::<NodeState>(&t).ok()).is_none())
            .collect()
    }

    /// Temporary files of writers that are gone (killed mid-write): in `tmp/`, and beside
    /// their destinations, where earlier llmd versions (same cache layout) wrote them.
    pub fn stray_temp_files(&self) -> Vec<PathBuf> {
        ["tmp", "nodes", "records", "blobs", "incomplete"]
            .iter()
            .flat_map(|d| files_in_shards(&self.root.join(d)))
            .filter(|p| is_stray_temp(&name_of(p)))
            .collect()
    }

    /// Removes what [`Store::verify`] reports as broken and says what will run again.
    /// Takes the cache lock's place in the caller: run it under the lock.
    pub fn repair(&self) -> Result<Repaired> {
        let mut done = Repaired::default();
        if !self.pack_disagreements().is_empty() {
            self.remove_pack()?;
            done.actions.push(format!(
                "removed {}, which disagreed with the records (the next build writes it again)",
                self.root.join(super::pack::FILE).display()
            ));
        }
        for p in self.stray_temp_files() {
            remove(&p, "a temporary file of a killed writer", &mut done.actions);
        }
        for p in self.unreadable_nodes() {
            remove(&p, "an unreadable node file (its node is decided again)", &mut done.actions);
        }
        for p in files_in_shards(&self.root.join("blobs")) {
            let name = name_of(&p);
            if name.starts_with('.') {
                continue;
            }
            if std::fs::read(&p).map(|b| digest(&b) != name).unwrap_or(true) {
                remove(&p, "a corrupt blob", &mut done.actions);
            }
        }
        for mut n in self.nodes() {
            let before = (n.last.clone(), n.last_ok.clone());
            for slot in [&mut n.last, &mut n.last_ok] {
                let intact = slot.as_deref().is_some_and(|key| {
                    self.read_record_file(key)
                        .is_some_and(|(r, _)| r.outputs.values().chain(r.manifest.leaves.iter()).all(|d| self.has_blob(d)))
                });
                if slot.is_some() && !intact {
                    *slot = None;
                }
            }
            if (n.last.clone(), n.last_ok.clone()) == before {
                continue;
            }
            if n.last.is_none() {
                n.last_status = None;
            }
            let path = self.node_path(&n.id);
            if n.last.is_none() && n.last_ok.is_none() {
                remove(&path, &format!("the pointers of node {} (its records are damaged or gone)", n.id), &mut done.actions);
            } else {
                self.write(&path, serde_json::to_string_pretty(&n)?.as_bytes(), true)?;
                done.actions.push(format!("dropped node {}'s pointer to a damaged or missing record", n.id));
            }
            done.rerun.push(n.id);
        }
        for p in files_in_shards(&self.root.join("records")) {
            let name = name_of(&p);
            let Some(key) = name.strip_suffix(".json") else { continue };
            if !name.starts_with('.') && self.read_record_file(key).is_none() {
                remove(&p, "a malformed record", &mut done.actions);
            }
        }
        self.take_warnings();
        Ok(done)
    }
}

fn remove(path: &Path, what: &str, actions: &mut Vec<String>) {
    match std::fs::remove_file(path) {
        Ok(()) => actions.push(format!("removed {what}: {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => actions.push(format!("could not remove {what} {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_name_their_writer() {
        assert_eq!(temp_owner(".abc.json.tmp-4242-7"), Some(4242));
        assert_eq!(temp_owner("abc.json"), None);
        assert_eq!(temp_owner(".abc.json"), None);
    }

    #[test]
    fn the_sweep_removes_only_temporaries_of_dead_writers() {
        let root = tempfile::tempdir().unwrap();
        let dead = 4_294_967_295u32; // no such pid
        let me = std::process::id();
        let files = [
            (format!(".ab12.json.tmp-{dead}-0"), false),
            (format!(".ab34.json.tmp-{me}-1"), true),
            ("ab56.json".to_string(), true),
            (format!(".cd78.tmp-{dead}-2"), false),
            (".hidden-but-no-temp".to_string(), true),
        ];
        for (f, _) in &files {
            std::fs::write(root.path().join(f), b"x").unwrap();
        }
        remove_stray_temps(root.path());
        for (f, kept) in &files {
            assert_eq!(root.path().join(f).exists(), *kept, "{f}");
        }
    }
}
