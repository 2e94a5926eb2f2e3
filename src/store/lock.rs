//! The cache lock: an exclusive `flock` on `.llmdcache/lock`, with the holder's pid,
//! host and command in `lock.holder` so a waiting build can say whom it waits for.
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

pub fn acquire(root: &Path, command: &str, timeout: Option<Duration>, mut on_wait: impl FnMut(&str)) -> Result<LockGuard> {
    let path = root.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let started = Instant::now();
    let mut told = false;
    loop {
        if try_flock(&file).with_context(|| format!("cannot lock {}", path.display()))? {
            break;
        }
        let holder = std::fs::read_to_string(root.join("lock.holder"))
            .ok()
            .and_then(|t| serde_json::from_str::<Holder>(&t).ok())
            .map_or_else(|| "another llmd process".to_string(), |h| h.describe());
        if !told {
            on_wait(&holder);
            told = true;
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            bail!("the cache {} is still locked by {holder} after {:?} (--lock-timeout)", root.display(), timeout.unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let holder = Holder { pid: std::process::id(), host: hostname(), command: command.to_string(), since_unix: super::unix_now() as u64 };
    crate::util::fs::write_atomic(&root.join("lock.holder"), serde_json::to_string(&holder)?.as_bytes())?;
    Ok(LockGuard { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "llmd build a.yaml", None, |_| {}).unwrap();
        let mut seen = String::new();
        let err = acquire(dir.path(), "llmd build b.yaml", Some(Duration::from_millis(250)), |h| seen = h.to_string()).err().unwrap();
        assert!(seen.contains(&format!("pid {}", std::process::id())) && seen.contains("llmd build a.yaml"), "{seen}");
        assert!(err.to_string().contains("--lock-timeout"));
        drop(first);
        acquire(dir.path(), "llmd build b.yaml", Some(Duration::from_millis(250)), |_| {}).unwrap();
    }
}
