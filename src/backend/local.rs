//! The local backend: every stack replica is a process on this machine.
//!
//! Replicas run in their own process group and session, detached from llmd, so they
//! outlive the `llmd standup` that started them; their output goes to a log file.
//! Readiness is polled over HTTP (`/health/ready` for the simulator, `/health` for other
//! commands) with a progress line, and a replica that exits or never answers fails the
//! standup with the last lines of its log. Teardown signals the process group (SIGTERM,
//! then SIGKILL after a grace period) and checks each pid — and its start time, against
//! pid reuse — is gone.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use serde::{Deserialize, Serialize};

use super::{Access, Backend, BoxFuture, Liveness, Receipt, ServerSpec, StackTarget, StandupRequest};
use crate::http::client::{Conn, Endpoint};
use crate::util::tail_lines;

/// One started replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReceipt {
    pub pid: u32,
    /// Process start time (clock ticks since boot), guarding against pid reuse.
    pub start_ticks: u64,
    pub port: u16,
    /// Where clients connect (the bind address, or loopback for a wildcard bind).
    #[serde(default = "loopback")]
    pub host: String,
    pub command: Vec<String>,
    pub log: PathBuf,
}

fn loopback() -> String {
    "127.0.0.1".into()
}

/// The local backend's receipt body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalBody {
    pub replicas: Vec<ReplicaReceipt>,
}

impl LocalBody {
    pub fn of(receipt: &Receipt) -> Result<LocalBody> {
        serde_json::from_value(receipt.body.clone())
            .with_context(|| format!("the receipt of stack '{}' has no local replica list", receipt.stack))
    }
}

impl ReplicaReceipt {
    fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint { host: self.host.clone(), port: self.port, prefix: String::new() }
    }
}

/// The address clients use for a server bound to `bind`.
fn connect_host(bind: &str) -> String {
    match bind {
        "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1".into(),
        h => h.to_string(),
    }
}

/// How long teardown waits after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

pub struct LocalBackend {
    /// The llmd executable that runs `llmd sim`.
    pub llmd: PathBuf,
    /// Print waiting progress to stderr.
    pub progress: bool,
}

impl LocalBackend {
    /// Constructed by the [`super::Registry`] only.
    pub(super) fn new(progress: bool) -> Result<LocalBackend> {
        Ok(LocalBackend { llmd: std::env::current_exe().context("cannot locate the llmd executable")?, progress })
    }
}

/// A free TCP port (for configured commands, which must be told their port).
fn free_port(host: &str) -> Result<u16> {
    let listener = std::net::TcpListener::bind((host, 0)).with_context(|| format!("cannot bind {host}:0 to find a free port"))?;
    Ok(listener.local_addr()?.port())
}

/// Process start time (field 22 of /proc/<pid>/stat), or `None` if the process is gone
/// or a zombie.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True when the receipt's process is the one running under that pid.
pub fn replica_alive(r: &ReplicaReceipt) -> bool {
    process_start_ticks(r.pid) == Some(r.start_ticks)
}

fn reap(pid: u32) {
    // Collect our own exited children so they do not linger as zombies.
    // SAFETY: waitpid with WNOHANG on a pid; harmless if it is not our child.
    unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
}

async fn http_status(ep: &Endpoint, path: &str) -> Option<u16> {
    let mut conn = Conn::connect(ep, Duration::from_millis(500)).await.ok()?;
    conn.get(path).await.ok()?;
    let head = tokio::time::timeout(Duration::from_secs(2), conn.read_head()).await.ok()?.ok()?;
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.read_body(&head, |_, _| {})).await;
    Some(head.status)
}

impl LocalBackend {
    fn command_for(&self, target: &StackTarget, port: u16) -> Vec<String> {
        match &target.server {
            ServerSpec::Sim { flags } => {
                let mut argv = vec![
                    self.llmd.to_string_lossy().to_string(),
                    "sim".into(),
                    "--model".into(),
                    target.model.clone(),
                    "--host".into(),
                    target.host.clone(),
                    "--port".into(),
                    port.to_string(),
                ];
                if let Some(len) = target.max_model_len {
                    argv.extend(["--max-model-len".into(), len.to_string()]);
                }
                argv.extend(flags.iter().cloned());
                argv
            }
            ServerSpec::Command { argv } => argv
                .iter()
                .map(|a| a.replace("{port}", &port.to_string()).replace("{host}", &target.host).replace("{model}", &target.model))
                .collect(),
        }
    }

    async fn start_replica(&self, target: &StackTarget, index: usize, log_dir: &Path, workspace: &Path) -> Result<ReplicaReceipt> {
        // The simulator picks its own port; a command is told one.
        let port = match target.server {
            ServerSpec::Sim { .. } => 0,
            ServerSpec::Command { .. } => free_port(&target.host)?,
        };
        let argv = self.command_for(target, port);
        std::fs::create_dir_all(log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
        let log = log_dir.join(format!("{}-{index}.log", target.name));
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        // On disk before the process exists: a build killed from here on leaves an entry
        // the next build, teardown or cache verify finds the replica by.
        let mut pending = super::pending::Pending::record(workspace, &target.name, index)?;
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).env(super::pending::ENV, &pending.token);
        // A new session: the replica survives llmd and can be signalled as a group.
        // SAFETY: setsid is async-signal-safe and is all the pre_exec hook does.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {}", argv[0]))?;
        let pid = child.id();
        // The receipt, not the Child handle, owns the process from here on — once there
        // is one: until then a cancelled standup kills it.
        std::mem::forget(child);
        let mut abandon = Abandon(vec![pid]);
        pending.started(pid)?;
        crate::util::test_hold("standup:spawned");
        let start_ticks = process_start_ticks(pid).unwrap_or(0);
        let host = connect_host(&target.host);
        let mut receipt = ReplicaReceipt { pid, start_ticks, port, host, command: argv, log: log.clone() };
        let ready_path = match target.server {
            ServerSpec::Sim { .. } => "/health/ready",
            ServerSpec::Command { .. } => "/health",
        };
        let started = Instant::now();
        let deadline = started + Duration::from_secs(target.ready_timeout_s);
        let mut last_note = started;
        let fail = |what: String, receipt: &ReplicaReceipt| {
            anyhow::anyhow!(
                "stack '{}' replica {index} {what}; last lines of {}:\n{}",
                target.name,
                receipt.log.display(),
                tail_lines(&receipt.log, 15)
            )
        };
        loop {
            if !replica_alive(&receipt) {
                reap(pid);
                return Err(fail("exited during startup".into(), &receipt));
            }
            if receipt.port == 0 {
                receipt.port = announced_port(&log).unwrap_or(0);
            }
            if receipt.port != 0 && http_status(&receipt.endpoint(), ready_path).await == Some(200) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.stop_replica(&receipt).await;
                let at = if receipt.port == 0 { "(no port announced)".to_string() } else { format!("on port {}", receipt.port) };
                return Err(fail(format!("did not become ready {at} within {}s", target.ready_timeout_s), &receipt));
            }
            if self.progress && last_note.elapsed() >= Duration::from_secs(5) {
                say!("  waiting for {} replica {index} on :{} ({}s)", target.name, receipt.port, started.elapsed().as_secs());
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        abandon.0.clear();
        Ok(receipt)
    }

    async fn stop_replica(&self, r: &ReplicaReceipt) -> Result<()> {
        if !replica_alive(r) {
            reap(r.pid);
            return Ok(());
        }
        // SAFETY: signalling the process group the replica leads (it called setsid).
        unsafe { libc::kill(-(r.pid as i32), libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            reap(r.pid);
            if !replica_alive(r) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // SAFETY: as above, SIGKILL after the grace period.
        unsafe { libc::kill(-(r.pid as i32), libc::SIGKILL) };
        for _ in 0..100 {
            reap(r.pid);
            if !replica_alive(r) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("process {} (port {}) survived SIGKILL", r.pid, r.port)
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn identity(&self) -> String {
        // Deployments live on whatever machine runs the build; a hostname here would
        // keep caches from moving between machines.
        "local".into()
    }

    fn preflight(&self, target: &StackTarget) -> Result<()> {
        if let ServerSpec::Command { argv } = &target.server
            && crate::util::which(&argv[0]).is_none()
        {
            bail!("stack '{}': `{}` is not installed (local.command)", target.name, argv[0]);
        }
        Ok(())
    }

    fn describe(&self, target: &StackTarget) -> String {
        let what = match &target.server {
            ServerSpec::Sim { flags } => format!("llmd sim --model {} {}", target.model, flags.join(" ")),
            ServerSpec::Command { argv } => argv.join(" "),
        };
        format!("{} replica(s): {what}", target.replicas)
    }

    fn standup<'a>(&'a self, request: StandupRequest<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            let target = request.target;
            let mut replicas = Vec::with_capacity(target.replicas);
            // Replicas already up die with a standup cancelled before its receipt exists.
            let mut abandon = Abandon(Vec::new());
            for i in 0..target.replicas {
                match self.start_replica(target, i, request.log_dir, request.workspace).await {
                    Ok(r) => {
                        abandon.0.push(r.pid);
                        replicas.push(r);
                    }
                    Err(e) => {
                        for r in &replicas {
                            let _ = self.stop_replica(r).await;
                        }
                        return Err(e);
                    }
                }
            }
            Ok(Receipt {
                version: Receipt::VERSION,
                stack: target.name.clone(),
                backend: self.name().into(),
                plan_digest: request.plan_digest.to_string(),
                deployment: request.deployment.to_string(),
                model: target.model.clone(),
                created_unix: crate::util::unix_now() as u64,
                body: {
                    abandon.0.clear();
                    serde_json::to_value(LocalBody { replicas })?
                },
            })
        })
    }

    fn check<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Liveness> {
        Box::pin(async move {
            let body = match LocalBody::of(receipt) {
                Ok(b) => b,
                Err(e) => return Liveness::Gone(format!("{e:#}")),
            };
            for r in &body.replicas {
                if !replica_alive(r) {
                    return Liveness::Gone(format!("process {} (port {}) is not running", r.pid, r.port));
                }
                if http_status(&r.endpoint(), "/health").await != Some(200) {
                    return Liveness::Gone(format!("port {} does not answer /health", r.port));
                }
            }
            Liveness::Live
        })
    }

    fn connect<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<Access>> {
        Box::pin(async move {
            let body = LocalBody::of(receipt)?;
            anyhow::ensure!(!body.replicas.is_empty(), "the receipt of stack '{}' lists no replica", receipt.stack);
            Ok(Access { urls: body.replicas.iter().map(ReplicaReceipt::url).collect(), guard: None, launcher: None })
        })
    }

    fn teardown<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let body = LocalBody::of(receipt)?;
            let mut errors = Vec::new();
            for r in &body.replicas {
                if let Err(e) = self.stop_replica(r).await {
                    errors.push(e.to_string());
                }
            }
            if errors.is_empty() { Ok(()) } else { bail!("stack '{}': {}", receipt.stack, errors.join("; ")) }
        })
    }

    fn capacity(&self) -> BoxFuture<'_, Result<(BTreeMap<String, u64>, String)>> {
        Box::pin(async {
            // Each replica is a process wanting a core.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
            Ok((BTreeMap::from([("cpu".to_string(), cores)]), format!("this machine's {cores} cores")))
        })
    }

    fn summary(&self, receipt: &Receipt) -> String {
        match LocalBody::of(receipt) {
            Ok(b) => b.replicas.iter().map(|r| format!("pid {} port {}", r.pid, r.port)).collect::<Vec<_>>().join(", "),
            Err(e) => format!("{e:#}"),
        }
    }
}

/// The port `llmd sim` announced on its first output line
/// (`llmd sim: serving MODEL on http://HOST:PORT`).
fn announced_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|l| l.strip_prefix("llmd sim: serving ")?.rsplit_once(':')?.1.trim().parse().ok())
}

/// Replica processes a standup started but has not handed to a receipt yet: dropped
/// armed (the standup future cancelled by Ctrl-C), it kills their process groups, so no
/// replica outlives a standup that never recorded it.
struct Abandon(Vec<u32>);

impl Drop for Abandon {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: signalling the process group the replica leads (it called setsid).
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            reap(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_port_is_read_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("l.log");
        std::fs::write(&log, "llmd sim: serving Qwen/Qwen3-0.6B on http://127.0.0.1:41234\nmore\n").unwrap();
        assert_eq!(announced_port(&log), Some(41234));
        std::fs::write(&log, "starting\n").unwrap();
        assert_eq!(announced_port(&log), None);
        assert_eq!(connect_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(connect_host("127.0.0.2"), "127.0.0.2");
    }
}
