//! Pending receipts: a process a standup starts is on disk before it exists.
//!
//! A receipt is written only once a stack serves, so a build killed (kill -9) half way
//! through a standup would leave replicas nobody knows about. Before the local backend
//! starts a replica it writes `receipts/pending/<stack>-<index>.json` naming a fresh
//! token, and the replica (and everything it starts) carries that token in its
//! environment ([`ENV`]); once spawned, the entry gains the pid. Once the stack's receipt
//! is saved the entries are removed ([`settle`]).
//!
//! [`reap`] — run by every build, by `llmd teardown` and by `llmd cache verify` — treats
//! an entry whose writer is gone and whose process no receipt lists as an orphan: it
//! kills every process carrying the token (found in `/proc/*/environ`, so even a replica
//! started in the instant before its pid was written is found) and removes the entry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Receipt;
use super::local::{LocalBody, process_start_ticks};

/// The environment variable that marks a replica with its pending entry's token.
pub const ENV: &str = "LLMD_REPLICA_TOKEN";

/// One replica a standup is starting.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub stack: String,
    pub index: usize,
    pub token: String,
    /// The replica's pid, once spawned.
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    /// The llmd process that wrote the entry (and its start time, so a reused pid is not
    /// mistaken for it).
    pub writer: u32,
    pub writer_ticks: u64,
    #[serde(skip)]
    path: PathBuf,
}

pub fn dir(workspace: &Path) -> PathBuf {
    workspace.join("receipts").join("pending")
}

impl Pending {
    /// Records, before spawning it, that replica `index` of `stack` is being started.
    pub fn record(workspace: &Path, stack: &str, index: usize) -> Result<Pending> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let me = std::process::id();
        let token = format!("{me}-{:x}-{}", crate::util::unix_now().to_bits(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = dir(workspace).join(format!("{stack}-{index}.json"));
        let entry = Pending {
            stack: stack.to_string(),
            index,
            token,
            pid: None,
            start_ticks: None,
            writer: me,
            writer_ticks: process_start_ticks(me).unwrap_or(0),
            path,
        };
        entry.save()?;
        Ok(entry)
    }

    /// The replica is spawned: its pid joins the entry.
    pub fn started(&mut self, pid: u32) -> Result<()> {
        self.pid = Some(pid);
        self.start_ticks = process_start_ticks(pid);
        self.save()
    }

    fn save(&self) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        crate::util::fs::write_atomic(&self.path, &text)
            .with_context(|| format!("cannot record a pending replica in {}", self.path.display()))
    }

    fn load(path: &Path) -> Option<Pending> {
        let text = std::fs::read(path).ok()?;
        let mut p: Pending = serde_json::from_slice(&text).ok()?;
        p.path = path.to_path_buf();
        Some(p)
    }

    fn writer_alive(&self) -> bool {
        self.writer_ticks != 0 && process_start_ticks(self.writer) == Some(self.writer_ticks)
    }
}

/// The stack's receipt is saved (or its standup cleaned up after itself): its pending
/// entries are done.
pub fn settle(workspace: &Path, stack: &str) {
    for (path, p) in entries(workspace) {
        if p.as_ref().is_none_or(|p| p.stack == stack) {
            let _ = std::fs::remove_file(path);
        }
    }
    // Gone once empty: an empty receipts directory means nothing is deployed.
    let _ = std::fs::remove_dir(dir(workspace));
}

fn entries(workspace: &Path) -> Vec<(PathBuf, Option<Pending>)> {
    let Ok(rd) = std::fs::read_dir(dir(workspace)) else { return Vec::new() };
    let mut out: Vec<(PathBuf, Option<Pending>)> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let entry = Pending::load(&p);
            (p, entry)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Kills the processes of pending entries that no live writer and no receipt owns, and
/// removes those entries. Returns one line per orphan handled.
pub fn reap(workspace: &Path) -> Vec<String> {
    let found = entries(workspace);
    if found.is_empty() {
        return Vec::new();
    }
    let owned: Vec<u32> = Receipt::load_all(workspace)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| LocalBody::of(r).ok())
        .flat_map(|b| b.replicas.into_iter().map(|r| r.pid))
        .collect();
    let mut said = Vec::new();
    for (path, entry) in found {
        let Some(p) = entry else {
            // Half written by a killed writer (writes are atomic, so only a foreign file).
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if p.writer != std::process::id() && p.writer_alive() {
            continue;
        }
        if p.pid.is_some_and(|pid| owned.contains(&pid)) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let killed = kill_token(&p.token, p.pid.zip(p.start_ticks));
        if !killed.is_empty() {
            said.push(format!(
                "stopped {} process(es) ({}) of stack '{}' replica {} that a killed build started but never recorded",
                killed.len(),
                killed.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
                p.stack,
                p.index
            ));
        }
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(dir(workspace));
    said
}

/// SIGKILLs the process group of every process whose environment carries `token` (and
/// the recorded replica, when it still runs under its start time); waits until they are
/// gone. Returns the pids signalled.
fn kill_token(token: &str, recorded: Option<(u32, u64)>) -> Vec<u32> {
    let mut pids = processes_with(token);
    if let Some((pid, ticks)) = recorded
        && process_start_ticks(pid) == Some(ticks)
        && !pids.contains(&pid)
    {
        pids.push(pid);
    }
    for &pid in &pids {
        // SAFETY: plain kill(2) calls. Replicas lead their own process group (setsid);
        // a descendant that left it is signalled by itself.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    for _ in 0..100 {
        for &pid in &pids {
            // Our own child (when this process started it) is reaped here.
            // SAFETY: waitpid with WNOHANG on a pid; harmless when it is not our child.
            unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
        }
        if pids.iter().all(|&p| process_start_ticks(p).is_none()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    pids
}

/// Pids of the processes whose environment holds `ENV=token`.
pub fn processes_with(token: &str) -> Vec<u32> {
    let needle = format!("{ENV}={token}");
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        if env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process carrying `token`, once it has exec'd: `spawn` may return while the child
    /// is still mid-exec, with an empty environment in /proc (seen under parallel tests).
    fn spawn_with(token: &str) -> std::process::Child {
        let child = std::process::Command::new("sleep").arg("30").env(ENV, token).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !processes_with(token).contains(&child.id()) {
            assert!(std::time::Instant::now() < deadline, "the child never showed its environment");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child
    }

    #[test]
    fn an_orphan_replica_is_found_by_its_token_even_without_a_pid() {
        let ws = tempfile::tempdir().unwrap();
        let mut p = Pending::record(ws.path(), "s", 0).unwrap();
        // A writer that is gone: no start time of it matches.
        p.writer_ticks = 1;
        p.save().unwrap();
        let mut child = spawn_with(&p.token);
        let lines = reap(ws.path());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(&child.id().to_string()), "{lines:?}");
        // Killed and reaped (it was this process's child, so waiting finds nothing).
        assert_eq!(process_start_ticks(child.id()), None);
        assert!(child.wait().is_err());
        assert!(entries(ws.path()).is_empty());
    }

    #[test]
    fn an_entry_of_a_live_writer_or_of_a_recorded_replica_is_left_alone() {
        let ws = tempfile::tempdir().unwrap();
        // Written by a live process other than this one (pid 1): a standup in flight.
        let mut live = Pending::record(ws.path(), "live", 0).unwrap();
        live.writer = 1;
        live.writer_ticks = process_start_ticks(1).unwrap();
        live.save().unwrap();
        let mut a = spawn_with(&live.token);
        // Written by a gone writer, but its replica is listed by the stack's receipt.
        let mut kept = Pending::record(ws.path(), "kept", 0).unwrap();
        kept.writer_ticks = 1;
        let mut b = spawn_with(&kept.token);
        kept.started(b.id()).unwrap();
        let replica = serde_json::json!({"pid": b.id(), "start_ticks": kept.start_ticks, "port": 1, "host": "127.0.0.1", "command": ["sleep"], "log": "x"});
        let receipt = Receipt {
            version: Receipt::VERSION,
            stack: "kept".into(),
            backend: "local".into(),
            plan_digest: String::new(),
            deployment: String::new(),
            model: String::new(),
            created_unix: 0,
            body: serde_json::json!({"replicas": [replica]}),
        };
        receipt.save(ws.path()).unwrap();
        assert!(reap(ws.path()).is_empty());
        assert!(a.try_wait().unwrap().is_none() && b.try_wait().unwrap().is_none(), "a process was killed");
        let left: Vec<String> = entries(ws.path()).into_iter().filter_map(|(_, p)| p.map(|p| p.stack)).collect();
        assert_eq!(left, ["live"], "the settled entry goes, the live one stays");
        a.kill().unwrap();
        b.kill().unwrap();
    }

    #[test]
    fn settle_removes_only_the_stack_entries() {
        let ws = tempfile::tempdir().unwrap();
        Pending::record(ws.path(), "a", 0).unwrap();
        Pending::record(ws.path(), "b", 0).unwrap();
        settle(ws.path(), "a");
        let left: Vec<String> = entries(ws.path()).into_iter().filter_map(|(_, p)| p.map(|p| p.stack)).collect();
        assert_eq!(left, ["b"]);
    }
}
