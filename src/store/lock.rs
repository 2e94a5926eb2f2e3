//! Locks: an exclusive `flock` on a file (the cache's `.llmdcache/lock`, a workspace's
//! `.llmd-lock`), with the holder's pid, host and command beside it in `<lock>.holder`
//! so a waiting build can say whom it waits for.
//!
//! `flock` locks die with their process, so a crashed build never leaves a stale lock.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Who holds the lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since_unix: u64,
}

impl Holder {
    pub fn describe(&self) -> String {
        let age = super::unix_now() as u64 - self.since_unix.min(super::unix_now() as u64);
        format!("pid {} on {} running `{}` (for {age} s)", self.pid, self.host, self.command)
    }
}

/// Releases the lock when dropped.
pub struct LockGuard {
    _file: std::fs::File,
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn try_flock(file: &std::fs::File) -> std::io::Result<bool> {
    // SAFETY: flock on an fd we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(err) }
}

/// Locks `path` (created if missing), waiting up to `timeout` (forever with `None`);
/// `on_wait` hears once whom it waits for. `what` names the locked thing in errors.
pub fn acquire(path: &Path, what: &str, command: &str, timeout: Option<Duration>, mut on_wait: impl FnMut(&str)) -> Result<LockGuard> {
    let holder_path = holder_path(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let started = Instant::now();
    let mut told = false;
    loop {
        if try_flock(&file).with_context(|| format!("cannot lock {}", path.display()))? {
            break;
        }
        let holder = std::fs::read_to_string(&holder_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Holder>(&t).ok())
            .map_or_else(|| "another llmd process".to_string(), |h| h.describe());
        if !told {
            on_wait(&holder);
            told = true;
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            let at = path.parent().unwrap_or(path);
            bail!("the {what} {} is still locked by {holder} after {:?} (--lock-timeout)", at.display(), timeout.unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let holder = Holder { pid: std::process::id(), host: hostname(), command: command.to_string(), since_unix: super::unix_now() as u64 };
    crate::util::fs::write_atomic(&holder_path, serde_json::to_string(&holder)?.as_bytes())?;
    Ok(LockGuard { _file: file })
}

/// A workspace's lock file: one build (or teardown) per workspace, whatever its cache.
pub const WORKSPACE_LOCK: &str = ".llmd-lock";

/// Locks the workspace `ws` like [`acquire`], telling on stderr whom it waits for.
pub fn lock_workspace(ws: &Path, command: &str, timeout: Option<Duration>) -> Result<LockGuard> {
    acquire(&ws.join(WORKSPACE_LOCK), "workspace", command, timeout, |holder| {
        say!("llmd: waiting for the workspace lock of {}, held by {holder} ...", ws.display())
    })
}

fn holder_path(lock: &Path) -> std::path::PathBuf {
    let mut name = lock.file_name().unwrap_or_default().to_os_string();
    name.push(".holder");
    lock.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        let first = acquire(&lock, "cache", "llmd build a.yaml", None, |_| {}).unwrap();
        let mut seen = String::new();
        let err = acquire(&lock, "cache", "llmd build b.yaml", Some(Duration::from_millis(250)), |h| seen = h.to_string()).err().unwrap();
        assert!(seen.contains(&format!("pid {}", std::process::id())) && seen.contains("llmd build a.yaml"), "{seen}");
        assert!(err.to_string().contains("the cache") && err.to_string().contains("--lock-timeout"), "{err}");
        assert!(dir.path().join("lock.holder").is_file());
        drop(first);
        acquire(&lock, "cache", "llmd build b.yaml", Some(Duration::from_millis(250)), |_| {}).unwrap();
    }
}
