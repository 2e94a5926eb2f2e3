//! Watch-based waits: a volume Bound, a Job Complete, a Deployment's pods Ready.
//!
//! Each wait watches the object and the pods it owns (never polls), prints a progress
//! line when something changes (ready n/m, pod phase, the latest event) and at least
//! every 10 s, and fails as soon as a pod reaches a state waiting does not fix
//! ([`super::diagnose::terminal`]), with the pod's events and last log lines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};

use super::diagnose::{explain, recent_events, terminal};

/// What to wait for.
#[derive(Clone, Debug)]
pub enum Until {
    PvcBound { namespace: String, name: String },
    JobComplete { namespace: String, name: String },
    DeploymentReady { namespace: String, name: String },
}

impl Until {
    fn namespace(&self) -> &str {
        match self {
            Until::PvcBound { namespace, .. } | Until::JobComplete { namespace, .. } | Until::DeploymentReady { namespace, .. } => {
                namespace
            }
        }
    }
    fn name(&self) -> &str {
        match self {
            Until::PvcBound { name, .. } | Until::JobComplete { name, .. } | Until::DeploymentReady { name, .. } => name,
        }
    }
    fn display(&self) -> String {
        let kind = match self {
            Until::PvcBound { .. } => "PersistentVolumeClaim",
            Until::JobComplete { .. } => "Job",
            Until::DeploymentReady { .. } => "Deployment",
        };
        format!("{kind} {}/{}", self.namespace(), self.name())
    }
}

/// Where the wait stands: done, or a one-line status.
enum Progress {
    Done,
    Waiting(String),
}

/// One thing a watch reported.
enum Seen {
    Object(Option<serde_json::Value>),
    Pod(Box<Event<Pod>>),
    Error(String),
    /// Bookkeeping (a relist began or ended).
    Nothing,
}

fn pod_line(pods: &BTreeMap<String, Pod>) -> String {
    let mut parts = Vec::new();
    for (name, p) in pods {
        let status = p.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
        let waiting = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()));
        parts.push(match waiting {
            Some(w) => format!("{name} {phase} ({w})"),
            None => format!("{name} {phase}"),
        });
    }
    parts.join(", ")
}

fn ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Judges the watched object (as JSON) and its pods.
fn judge(until: &Until, object: Option<&serde_json::Value>, pods: &BTreeMap<String, Pod>) -> Result<Progress> {
    let Some(o) = object else { return Ok(Progress::Waiting("not created yet".into())) };
    Ok(match until {
        Until::PvcBound { .. } => {
            let pvc: PersistentVolumeClaim = serde_json::from_value(o.clone())?;
            match pvc.status.and_then(|s| s.phase).as_deref() {
                Some("Bound") => Progress::Done,
                Some("Lost") => bail!("{} is Lost (its volume is gone)", until.display()),
                phase => Progress::Waiting(format!("phase {}", phase.unwrap_or("Pending"))),
            }
        }
        Until::JobComplete { .. } => {
            let job: Job = serde_json::from_value(o.clone())?;
            let status = job.status.unwrap_or_default();
            for c in status.conditions.iter().flatten() {
                if c.status == "True" && c.type_ == "Complete" {
                    return Ok(Progress::Done);
                }
                if c.status == "True" && c.type_ == "Failed" {
                    bail!("{} failed: {}", until.display(), c.message.clone().or(c.reason.clone()).unwrap_or_default());
                }
            }
            Progress::Waiting(format!(
                "active {}, succeeded {}, failed {}; pods: {}",
                status.active.unwrap_or(0),
                status.succeeded.unwrap_or(0),
                status.failed.unwrap_or(0),
                pod_line(pods)
            ))
        }
        Until::DeploymentReady { .. } => {
            let d: Deployment = serde_json::from_value(o.clone())?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.unwrap_or_default();
            let current = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
            let ready_pods = pods.values().filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none()).count() as i32;
            if current && status.ready_replicas.unwrap_or(0) >= want && status.updated_replicas.unwrap_or(0) >= want && ready_pods >= want {
                Progress::Done
            } else {
                Progress::Waiting(format!("ready {}/{want}; pods: {}", status.ready_replicas.unwrap_or(0), pod_line(pods)))
            }
        }
    })
}

/// The label selector of the pods `until` owns, once the object is known.
fn pod_selector(until: &Until, object: &serde_json::Value) -> Option<String> {
    match until {
        Until::PvcBound { .. } => None,
        Until::JobComplete { name, .. } => Some(format!("job-name={name}")),
        Until::DeploymentReady { .. } => {
            let labels = object["spec"]["selector"]["matchLabels"].as_object()?;
            Some(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        }
    }
}

/// Waits until `until` holds, at most `timeout`; `progress` names the stack in progress
/// lines (none printed when `None`).
pub async fn wait(client: &Client, until: &Until, timeout: Duration, progress: Option<&str>) -> Result<()> {
    let ns = until.namespace().to_string();
    let name = until.name().to_string();
    let fields = format!("metadata.name={name}");
    let object_events = {
        let cfg = watcher::Config::default().fields(&fields);
        let stream = match until {
            Until::PvcBound { .. } => watcher(Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns), cfg)
                .default_backoff()
                .map(|e| e.map(map_event))
                .boxed(),
            Until::JobComplete { .. } => {
                watcher(Api::<Job>::namespaced(client.clone(), &ns), cfg).default_backoff().map(|e| e.map(map_event)).boxed()
            }
            Until::DeploymentReady { .. } => {
                watcher(Api::<Deployment>::namespaced(client.clone(), &ns), cfg).default_backoff().map(|e| e.map(map_event)).boxed()
            }
        };
        stream.map(|r| match r {
            Ok(Some(seen)) => seen,
            Ok(None) => Seen::Nothing,
            Err(e) => Seen::Error(e.to_string()),
        })
    };
    let mut object_events = object_events.boxed();
    let mut pod_events: Option<futures::stream::BoxStream<'static, Seen>> = None;
    let mut object: Option<serde_json::Value> = None;
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_line = String::new();
    let mut last_print = Instant::now();
    let mut last_error = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        let seen = tokio::select! {
            s = object_events.next() => s,
            s = async { match pod_events.as_mut() { Some(p) => p.next().await, None => std::future::pending().await } } => s,
            _ = tick.tick() => None,
            _ = tokio::time::sleep_until(deadline) => {
                let state = match judge(until, object.as_ref(), &pods) {
                    Ok(Progress::Waiting(s)) => s,
                    _ => last_line.clone(),
                };
                let events = recent_events(client, &ns, &name).await;
                let events = if events.is_empty() { String::new() } else { format!("\n  recent events:\n    {}", events.join("\n    ")) };
                let err = if last_error.is_empty() { String::new() } else { format!("\n  last watch error: {last_error}") };
                bail!("{} did not become {} within {}s ({state}){events}{err}", until.display(), goal(until), timeout.as_secs());
            }
        };
        match seen {
            Some(Seen::Object(o)) => {
                if let (Some(o), None) = (&o, &pod_events)
                    && let Some(sel) = pod_selector(until, o)
                {
                    let cfg = watcher::Config::default().labels(&sel);
                    pod_events = Some(
                        watcher(Api::<Pod>::namespaced(client.clone(), &ns), cfg)
                            .default_backoff()
                            .map(|e| match e {
                                Ok(e) => Seen::Pod(Box::new(e)),
                                Err(e) => Seen::Error(e.to_string()),
                            })
                            .boxed(),
                    );
                }
                object = o;
            }
            Some(Seen::Pod(e)) => match *e {
                Event::Apply(p) | Event::InitApply(p) => {
                    pods.insert(p.metadata.name.clone().unwrap_or_default(), p);
                }
                Event::Delete(p) => {
                    pods.remove(p.metadata.name.as_deref().unwrap_or_default());
                }
                Event::Init => pods.clear(),
                Event::InitDone => {}
            },
            Some(Seen::Error(e)) => last_error = e,
            Some(Seen::Nothing) | None => {}
        }
        for p in pods.values() {
            if let Some(t) = terminal(p) {
                bail!("{}", explain(client, &ns, &until.display(), &t).await);
            }
        }
        match judge(until, object.as_ref(), &pods)? {
            Progress::Done => {
                if let Some(stack) = progress {
                    eprintln!("  [{stack}] {} {} ({}s)", until.display(), goal(until), started.elapsed().as_secs());
                }
                return Ok(());
            }
            Progress::Waiting(line) => {
                if let Some(stack) = progress
                    && (line != last_line || last_print.elapsed() >= Duration::from_secs(10))
                {
                    eprintln!("  [{stack}] waiting for {}: {line} ({}s)", until.display(), started.elapsed().as_secs());
                    last_print = Instant::now();
                }
                last_line = line;
            }
        }
    }
}

fn goal(until: &Until) -> &'static str {
    match until {
        Until::PvcBound { .. } => "Bound",
        Until::JobComplete { .. } => "Complete",
        Until::DeploymentReady { .. } => "Ready",
    }
}

/// A watch event of the watched object as what the wait needs: its JSON, or `None`
/// when it was deleted; `None` overall for bookkeeping events.
fn map_event<K: serde::Serialize>(e: Event<K>) -> Option<Seen> {
    match e {
        Event::Apply(o) | Event::InitApply(o) => Some(Seen::Object(serde_json::to_value(o).ok())),
        Event::Delete(_) => Some(Seen::Object(None)),
        Event::Init | Event::InitDone => None,
    }
}
