//! File-system helpers with crash safety.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// An open directory, to read many small files below it: a path relative to an open
/// directory skips walking the directory's own path each time (a no-op build reads
/// thousands of cache records).
pub struct Dir(std::os::fd::OwnedFd);

impl Dir {
    pub fn open(path: &Path) -> std::io::Result<Dir> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; the descriptor returned is ours to own.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly opened descriptor nothing else owns.
        Ok(Dir(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    /// The whole content of `rel` (relative to this directory): one open, reads until
    /// end of file, one close — no stat for a size hint.
    pub fn read(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let c = std::ffi::CString::new(rel)?;
        // SAFETY: a valid directory descriptor and NUL-terminated relative path.
        let fd = unsafe { libc::openat(self.0.as_raw_fd(), c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly opened descriptor nothing else owns.
        let mut file: std::fs::File = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        let mut buf = vec![0u8; 8192];
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(len * 2, 0);
            }
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(len);
        Ok(buf)
    }
}

/// What [`Dir::stat`] tells about a file: enough to see that it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    /// Modification time, in nanoseconds since the epoch.
    pub mtime_ns: i128,
    pub ino: u64,
}

impl Stamp {
    /// The stamp of `path` (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Stamp { len: m.len(), mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128, ino: m.ino() })
    }
}

impl Dir {
    /// Size, mtime and inode of `rel` (relative to this directory; symlinks followed):
    /// one `fstatat` that walks only `rel`, not this directory's own path.
    pub fn stat(&self, rel: &str) -> std::io::Result<Stamp> {
        use std::os::fd::AsRawFd;
        let c = std::ffi::CString::new(rel)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid directory descriptor, a NUL-terminated relative path and a
        // buffer of the size fstatat writes.
        if unsafe { libc::fstatat(self.0.as_raw_fd(), c.as_ptr(), st.as_mut_ptr(), 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fstatat succeeded, so it filled the buffer.
        let st = unsafe { st.assume_init() };
        Ok(Stamp { len: st.st_size as u64, mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128, ino: st.st_ino })
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is
/// written and fsynced, then renamed over `path`, and the directory is fsynced. Readers
/// see the old content or the new, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_renamed(path, bytes, true)
}

/// [`write_atomic`] without the fsyncs: readers still never see a torn file, but after a
/// power loss the file may be empty or absent — callers make it durable in bulk
/// (`syncfs`) before anything that depends on it is written.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_renamed(path, bytes, false)
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn write_renamed(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    write_atomic_via(parent_dir(path), path, bytes, sync)
}

/// [`write_atomic`] (or, without `sync`, [`write_atomic_unsynced`]) with the temporary
/// file in `tmp_dir`, which must be on `path`'s file system: a store that keeps every
/// temporary in one directory finds a killed writer's leftovers by reading that one.
pub fn write_atomic_via(tmp_dir: &Path, path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    // pid + a per-process counter: concurrent writers (processes or threads) never share a temp file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = tmp_dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        if super::test_hold_wanted().is_some() {
            super::test_hold(&format!("write:{}", path.display()));
        }
        std::fs::rename(&tmp, path)?;
        if sync && let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// A private temporary directory, removed (with its contents) when dropped.
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> Result<ScratchDir> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("llmd-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `files` (`(relative path, contents)`) under `dest`, each atomically. Without
/// `overwrite`, a file that exists with other contents is an error and nothing is
/// written; files already equal are skipped either way. Returns how many were written.
pub fn write_files(dest: &Path, files: &[(&str, &[u8])], overwrite: bool) -> Result<usize> {
    if !overwrite {
        let clashes: Vec<&str> = files
            .iter()
            .filter(|(rel, bytes)| std::fs::read(dest.join(rel)).is_ok_and(|have| have != *bytes))
            .map(|(rel, _)| *rel)
            .collect();
        if !clashes.is_empty() {
            let shown: Vec<&str> = clashes.iter().take(5).copied().collect();
            anyhow::bail!(
                "{} file(s) under {} have other contents ({}{}); pass --force to overwrite them",
                clashes.len(),
                dest.display(),
                shown.join(", "),
                if clashes.len() > shown.len() { ", …" } else { "" }
            );
        }
    }
    let mut written = 0;
    for (rel, bytes) in files {
        let path = dest.join(rel);
        if std::fs::read(&path).is_ok_and(|have| have == *bytes) {
            continue;
        }
        // Renamed into place, so a read-only file left by an earlier unpack is replaced too.
        write_atomic_unsynced(&path, bytes)?;
        written += 1;
    }
    Ok(written)
}

/// A path beside `path` named `<stem>-<pid>-<n>` that no other writer (process or
/// thread) uses, for staging a directory before renaming it into place.
pub fn unique_sibling(path: &Path, stem: &str) -> std::path::PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!("{stem}-{}-{n}", std::process::id()))
}

/// A directory only this user can read, removed with everything in it when dropped:
/// where files holding secrets live while a tool (helm) reads them.
pub struct PrivateDir {
    path: std::path::PathBuf,
}

impl PrivateDir {
    pub fn new(what: &str) -> Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("llmd-{what}-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(PrivateDir { path })
    }

    /// Writes `name` (mode 0600) and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<std::path::PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_reads_files_below_it_whole() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("ab")).unwrap();
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.path().join("ab/big"), &big).unwrap();
        std::fs::write(d.path().join("ab/empty"), b"").unwrap();
        let dir = Dir::open(d.path()).unwrap();
        assert_eq!(dir.read("ab/big").unwrap(), big);
        assert_eq!(dir.read("ab/empty").unwrap(), b"");
        assert_eq!(dir.read("ab/none").unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert!(Dir::open(&d.path().join("ab/big")).is_err(), "a file is no directory");
        let st = dir.stat("ab/big").unwrap();
        assert_eq!(st, Stamp::of(&d.path().join("ab/big")).unwrap());
        assert_eq!(st.len, 20_000);
        assert_eq!(dir.stat("ab/none").unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
}
