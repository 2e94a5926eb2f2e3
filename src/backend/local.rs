//! The local backend: every stack replica is a process on this machine.
//!
//! Replicas run in their own process group and session, detached from llmd, so they
//! outlive the `llmd standup` that started them; their output goes to a log file.
//! Readiness is polled over HTTP (`/health/ready` for the simulator, `/health` for other
//! commands) with a progress line, and a replica that exits or never answers fails the
//! standup with the last lines of its log. Teardown signals the process group (SIGTERM,
//! then SIGKILL after a grace period) and checks each pid — and its start time, against
//! pid reuse — is gone.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::{Backend, BoxFuture, Liveness, Receipt, ReplicaReceipt, ServerSpec, StackTarget};
use crate::http::client::{Conn, Endpoint};
use crate::util::tail_lines;

/// How long teardown waits after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

pub struct LocalBackend {
    /// The llmd executable that runs `llmd sim`.
    pub llmd: PathBuf,
    /// Print waiting progress to stderr.
    pub progress: bool,
}

impl LocalBackend {
    pub fn new() -> Result<LocalBackend> {
        Ok(LocalBackend { llmd: std::env::current_exe().context("cannot locate the llmd executable")?, progress: true })
    }
}

/// A free TCP port on the loopback interface.
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

async fn http_status(port: u16, path: &str) -> Option<u16> {
    let ep = Endpoint { host: "127.0.0.1".into(), port, prefix: String::new() };
    let mut conn = Conn::connect(&ep, Duration::from_millis(500)).await.ok()?;
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

    async fn start_replica(&self, target: &StackTarget, index: usize, log_dir: &Path) -> Result<ReplicaReceipt> {
        let port = free_port(&target.host)?;
        let argv = self.command_for(target, port);
        std::fs::create_dir_all(log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
        let log = log_dir.join(format!("{}-{index}.log", target.name));
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
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
        // The receipt, not the Child handle, owns the process from here on.
        std::mem::forget(child);
        let start_ticks = process_start_ticks(pid).unwrap_or(0);
        let receipt = ReplicaReceipt { pid, start_ticks, port, command: argv, log: log.clone() };
        let ready_path = match target.server {
            ServerSpec::Sim { .. } => "/health/ready",
            ServerSpec::Command { .. } => "/health",
        };
        let started = Instant::now();
        let deadline = started + Duration::from_secs(target.ready_timeout_s);
        let mut last_note = started;
        loop {
            if !replica_alive(&receipt) {
                reap(pid);
                bail!(
                    "stack '{}' replica {index} exited during startup; last lines of {}:\n{}",
                    target.name,
                    log.display(),
                    tail_lines(&log, 15)
                );
            }
            if http_status(port, ready_path).await == Some(200) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.stop_replica(&receipt).await;
                bail!(
                    "stack '{}' replica {index} did not become ready on port {port} within {}s; last lines of {}:\n{}",
                    target.name,
                    target.ready_timeout_s,
                    log.display(),
                    tail_lines(&log, 15)
                );
            }
            if self.progress && last_note.elapsed() >= Duration::from_secs(5) {
                eprintln!("  waiting for {} replica {index} on :{port} ({}s)", target.name, started.elapsed().as_secs());
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    fn standup<'a>(&'a self, target: &'a StackTarget, log_dir: &'a Path) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            let mut replicas = Vec::with_capacity(target.replicas);
            for i in 0..target.replicas {
                match self.start_replica(target, i, log_dir).await {
                    Ok(r) => replicas.push(r),
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
                plan_hash: target.plan_hash.clone(),
                model: target.model.clone(),
                created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                replicas,
            })
        })
    }

    fn check<'a>(&'a self, receipt: &'a Receipt, plan_hash: Option<&'a str>) -> BoxFuture<'a, Liveness> {
        Box::pin(async move {
            for r in &receipt.replicas {
                if !replica_alive(r) {
                    return Liveness::Gone(format!("process {} (port {}) is not running", r.pid, r.port));
                }
                if http_status(r.port, "/health").await != Some(200) {
                    return Liveness::Gone(format!("port {} does not answer /health", r.port));
                }
            }
            match plan_hash {
                Some(h) if h != receipt.plan_hash => {
                    Liveness::Drifted(format!("running plan {} differs from the current plan {}", short(&receipt.plan_hash), short(h)))
                }
                _ => Liveness::Live,
            }
        })
    }

    fn teardown<'a>(&'a self, receipt: &'a Receipt) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for r in &receipt.replicas {
                if let Err(e) = self.stop_replica(r).await {
                    errors.push(e.to_string());
                }
            }
            if errors.is_empty() { Ok(()) } else { bail!("stack '{}': {}", receipt.stack, errors.join("; ")) }
        })
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}
