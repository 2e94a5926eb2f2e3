//! llmd's own `config/` and `workload/` trees, compiled into the binary (`build.rs`), so
//! an installed `llmd` plans and builds from any directory.
//!
//! Everything downstream reads real files, so the embedded tree is unpacked once into a
//! directory named by its digest (`$XDG_CACHE_HOME/llmd/embedded-<digest>`, else
//! `~/.cache/…`, else the temporary directory) and used from there. Unpacking goes to a
//! private directory that is renamed into place, so concurrent llmd processes never see
//! a half-written tree; a tree that lost files is unpacked again. Node keys hash file
//! contents, never locations, so a build from the embedded tree has the keys of the same
//! build from a checkout. Messages name such files `llmd:<path>` ([`label`]).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

mod table {
    include!(concat!(env!("OUT_DIR"), "/embedded_tree.rs"));
}

/// The prefix that marks a file of the embedded tree in messages.
pub const PREFIX: &str = "llmd:";

/// Every embedded file: `(path relative to the tree root, contents)`, sorted by path.
pub fn files() -> &'static [(&'static str, &'static [u8])] {
    table::FILES
}

/// The contents of one embedded file (`config/…` or `workload/…`).
pub fn file(rel: &str) -> Option<&'static [u8]> {
    let files = files();
    files.binary_search_by(|(p, _)| (*p).cmp(rel)).ok().map(|i| files[i].1)
}

/// The tree's digest: paths and contents, in order.
pub fn digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let mut h = blake3::Hasher::new();
        for (path, bytes) in files() {
            h.update(&(path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        h.finalize().to_hex()[..16].to_string()
    })
}

/// Where the embedded tree is (or will be) unpacked.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache = nonempty("XDG_CACHE_HOME").or_else(|| nonempty("HOME").map(|h| h.join(".cache")));
        let parent = match cache {
            Some(c) => c.join("llmd"),
            // No home: a per-user directory under the temporary directory.
            // SAFETY: geteuid has no preconditions and cannot fail.
            None => std::env::temp_dir().join(format!("llmd-{}", unsafe { libc::geteuid() })),
        };
        parent.join(format!("embedded-{}", digest()))
    })
}

/// The unpacked tree's root, unpacking it first when needed (once per process).
pub fn root() -> Result<&'static Path> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let dir = dir();
    DONE.get_or_init(|| unpack(dir).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(|()| dir)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot unpack llmd's built-in config tree: {e}\n  help: set XDG_CACHE_HOME to a writable directory, or pass --base-dir DIR with a tree (`llmd config export DIR` writes one)"
            )
        })
}

/// How messages name `path`: `llmd:config/…` inside the unpacked tree, else the path.
pub fn label(path: &Path) -> Cow<'_, str> {
    match path.strip_prefix(dir()) {
        Ok(rel) => Cow::Owned(format!("{PREFIX}{}", rel.display())),
        Err(_) => path.to_string_lossy(),
    }
}

/// Whether every embedded file is present in `dir` with its size.
fn complete(dir: &Path) -> bool {
    files().iter().all(|(rel, bytes)| std::fs::metadata(dir.join(rel)).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64))
}

fn unpack(dir: &Path) -> Result<()> {
    if complete(dir) {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let staging = crate::util::fs::unique_sibling(dir, &format!(".{name}.tmp"));
    write_files(&staging, false).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staging);
    })?;
    read_only(&staging);
    if std::fs::rename(&staging, dir).is_ok() {
        return Ok(());
    }
    // Another process won the race (or an incomplete tree is in the way).
    if complete(dir) {
        let _ = std::fs::remove_dir_all(&staging);
        return Ok(());
    }
    let old = crate::util::fs::unique_sibling(dir, &format!(".{name}.old"));
    let _ = std::fs::rename(dir, &old);
    let moved = std::fs::rename(&staging, dir);
    let _ = std::fs::remove_dir_all(&old);
    if moved.is_err() && !complete(dir) {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("cannot move the unpacked tree to {}", dir.display());
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(())
}

/// Unpacked files are read-only: edits belong in an exported tree (`llmd config export`).
fn read_only(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (rel, _) in files() {
        let _ = std::fs::set_permissions(dir.join(rel), std::fs::Permissions::from_mode(0o444));
    }
}

/// Writes every embedded file under `dest` ([`crate::util::fs::write_files`]: edited
/// files are kept unless `overwrite`; equal ones are skipped). Returns how many were written.
pub fn write_files(dest: &Path, overwrite: bool) -> Result<usize> {
    crate::util::fs::write_files(dest, files(), overwrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_repository_trees_sorted() {
        let paths: Vec<&str> = files().iter().map(|(p, _)| *p).collect();
        assert!(paths.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(paths.contains(&"config/specification/examples/sim.yaml.j2"), "{paths:?}");
        assert!(paths.contains(&"workload/profiles/llmd/sanity_random.yaml.in"), "{paths:?}");
        assert!(paths.iter().all(|p| p.starts_with("config/") || p.starts_with("workload/")));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (rel, bytes) in files() {
            assert_eq!(std::fs::read(root.join(rel)).unwrap(), *bytes, "{rel} is embedded as it is on disk");
        }
        assert_eq!(
            file("workload/profiles/llmd/sanity_random.yaml.in"),
            std::fs::read(root.join("workload/profiles/llmd/sanity_random.yaml.in")).ok().as_deref()
        );
        assert_eq!(file("config/nope"), None);
    }

    #[test]
    fn labels_name_embedded_files_by_their_tree_path() {
        assert_eq!(label(&dir().join("config/scenarios/examples/sim.yaml")), "llmd:config/scenarios/examples/sim.yaml");
        assert_eq!(label(Path::new("/elsewhere/config/x.yaml")), "/elsewhere/config/x.yaml");
    }

    #[test]
    fn export_refuses_to_overwrite_edits_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(write_files(tmp.path(), false).unwrap(), files().len());
        assert_eq!(write_files(tmp.path(), false).unwrap(), 0, "equal files are skipped");
        let edited = tmp.path().join(files()[0].0);
        std::fs::write(&edited, "edited").unwrap();
        let err = write_files(tmp.path(), false).unwrap_err().to_string();
        assert!(err.contains("1 file(s)") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&edited).unwrap(), "edited", "nothing written on a clash");
        assert_eq!(write_files(tmp.path(), true).unwrap(), 1);
        assert_eq!(std::fs::read(&edited).unwrap(), files()[0].1);
    }
}
