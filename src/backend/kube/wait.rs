//! Watch-based waits: a volume Bound, a Job Complete, a Deployment's pods Ready, a
//! pod Ready or finished, a Gateway Programmed, an InferencePool Accepted.
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
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};

use super::diagnose::{explain, recent_events, terminal};
use super::objects::describe;

/// What a wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    PvcBound,
    JobComplete,
    DeploymentReady,
    /// A pod Ready, or finished (Succeeded; Failed is terminal): a harness pod turns
    /// Ready when its harness has exited ([`super::harness`]).
    PodDone,
    /// A Gateway's `Programmed` condition True (its controller serves it).
    GatewayProgrammed,
    /// An InferencePool accepted by a parent (a Gateway its HTTPRoute attaches to).
    PoolAccepted,
}

impl Goal {
    fn kind(self) -> &'static str {
        match self {
            Goal::PvcBound => "PersistentVolumeClaim",
            Goal::JobComplete => "Job",
            Goal::DeploymentReady => "Deployment",
            Goal::PodDone => "Pod",
            Goal::GatewayProgrammed => "Gateway",
            Goal::PoolAccepted => "InferencePool",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Goal::PvcBound => "Bound",
            Goal::JobComplete => "Complete",
            Goal::DeploymentReady => "Ready",
            Goal::PodDone => "done",
            Goal::GatewayProgrammed => "Programmed",
            Goal::PoolAccepted => "Accepted",
        }
    }
    fn resource(self) -> ApiResource {
        match self {
            Goal::PvcBound => ApiResource::erase::<PersistentVolumeClaim>(&()),
            Goal::JobComplete => ApiResource::erase::<Job>(&()),
            Goal::DeploymentReady => ApiResource::erase::<Deployment>(&()),
            Goal::PodDone => ApiResource::erase::<Pod>(&()),
            Goal::GatewayProgrammed => {
                ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"), "gateways")
            }
            Goal::PoolAccepted => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("inference.networking.k8s.io", "v1", "InferencePool"),
                "inferencepools",
            ),
        }
    }
}

/// A goal for one object.
#[derive(Clone, Debug)]
pub struct Until {
    pub goal: Goal,
    pub namespace: String,
    pub name: String,
}

impl Until {
    pub fn new(goal: Goal, namespace: &str, name: &str) -> Until {
        Until { goal, namespace: namespace.to_string(), name: name.to_string() }
    }
    fn display(&self) -> String {
        describe(self.goal.kind(), Some(&self.namespace), &self.name)
    }
}

/// Where the wait stands: done, or a one-line status.
enum Progress {
    Done,
    Waiting(String),
}

/// One thing a watch reported.
enum Seen {
    /// The watched object, `None` once deleted.
    Object(Option<Box<DynamicObject>>),
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

/// The pod's Ready condition is True.
pub(super) fn ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Judges the watched object and its pods.
fn judge(until: &Until, object: Option<&DynamicObject>, pods: &BTreeMap<String, Pod>) -> Result<Progress> {
    let Some(o) = object else { return Ok(Progress::Waiting("not created yet".into())) };
    Ok(match until.goal {
        Goal::PvcBound => {
            let pvc: PersistentVolumeClaim = o.clone().try_parse()?;
            match pvc.status.and_then(|s| s.phase).as_deref() {
                Some("Bound") => Progress::Done,
                Some("Lost") => bail!("{} is Lost (its volume is gone)", until.display()),
                phase => Progress::Waiting(format!("phase {}", phase.unwrap_or("Pending"))),
            }
        }
        Goal::JobComplete => {
            let job: Job = o.clone().try_parse()?;
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
        Goal::DeploymentReady => {
            let d: Deployment = o.clone().try_parse()?;
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
        Goal::GatewayProgrammed => match condition(&o.data["status"]["conditions"], "Programmed") {
            Some((true, _)) => Progress::Done,
            Some((false, why)) => Progress::Waiting(format!("not Programmed: {why}")),
            None => Progress::Waiting("no Programmed condition yet (is its gateway controller running?)".into()),
        },
        Goal::PoolAccepted => {
            let parents = o.data["status"]["parents"].as_array().cloned().unwrap_or_default();
            let verdicts: Vec<(bool, String)> = parents.iter().filter_map(|p| condition(&p["conditions"], "Accepted")).collect();
            if verdicts.iter().any(|(ok, _)| *ok) {
                Progress::Done
            } else if let Some((_, why)) = verdicts.first() {
                Progress::Waiting(format!("not Accepted: {why}"))
            } else {
                Progress::Waiting("no parent has accepted it yet (an HTTPRoute to it on a programmed Gateway)".into())
            }
        }
        Goal::PodDone => {
            let p: Pod = o.clone().try_parse()?;
            let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
            if ready(&p) || phase == "Succeeded" {
                Progress::Done
            } else {
                Progress::Waiting(pod_line(&BTreeMap::from([(until.name.clone(), p)])))
            }
        }
    })
}

/// A status condition of `type_` in a condition list: whether it is True, and its
/// reason and message.
fn condition(conditions: &serde_json::Value, type_: &str) -> Option<(bool, String)> {
    let c = conditions.as_array()?.iter().find(|c| c["type"] == type_)?;
    let why = [c["reason"].as_str(), c["message"].as_str()].into_iter().flatten().collect::<Vec<_>>().join(": ");
    Some((c["status"] == "True", why))
}

/// The label selector of the pods `until` owns, once the object is known.
fn pod_selector(until: &Until, object: &DynamicObject) -> Option<String> {
    match until.goal {
        Goal::PvcBound | Goal::PodDone | Goal::GatewayProgrammed | Goal::PoolAccepted => None,
        Goal::JobComplete => Some(format!("job-name={}", until.name)),
        Goal::DeploymentReady => {
            let labels = object.data["spec"]["selector"]["matchLabels"].as_object()?;
            Some(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        }
    }
}

/// Waits until `until` holds, at most `timeout`; `progress` names the stack in progress
/// lines (none printed when `None`).
pub async fn wait(client: &Client, until: &Until, timeout: Duration, progress: Option<&str>) -> Result<()> {
    let ns = until.namespace.clone();
    let name = until.name.clone();
    let fields = format!("metadata.name={name}");
    let object_api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &until.goal.resource());
    let object_events = watcher(object_api, watcher::Config::default().fields(&fields)).default_backoff().map(|e| match e {
        Ok(Event::Apply(o) | Event::InitApply(o)) => Seen::Object(Some(Box::new(o))),
        Ok(Event::Delete(_)) => Seen::Object(None),
        Ok(Event::Init | Event::InitDone) => Seen::Nothing,
        Err(e) => Seen::Error(e.to_string()),
    });
    let mut object_events = object_events.boxed();
    let mut pod_events: Option<futures::stream::BoxStream<'static, Seen>> = None;
    let mut object: Option<Box<DynamicObject>> = None;
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
                let state = match judge(until, object.as_deref(), &pods) {
                    Ok(Progress::Waiting(s)) => s,
                    _ => last_line.clone(),
                };
                let events = recent_events(client, &ns, &name).await;
                let events = if events.is_empty() { String::new() } else { format!("\n  recent events:\n    {}", events.join("\n    ")) };
                let err = if last_error.is_empty() { String::new() } else { format!("\n  last watch error: {last_error}") };
                bail!("{} did not become {} within {}s ({state}){events}{err}", until.display(), until.goal.word(), timeout.as_secs());
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
                // A pod is its own pod: terminal states are judged on it.
                if let (Goal::PodDone, Some(o)) = (until.goal, &o)
                    && let Ok(p) = o.as_ref().clone().try_parse::<Pod>()
                {
                    pods.insert(until.name.clone(), p);
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
        match judge(until, object.as_deref(), &pods)? {
            Progress::Done => {
                if let Some(stack) = progress {
                    say!("  [{stack}] {} {} ({}s)", until.display(), until.goal.word(), started.elapsed().as_secs());
                }
                return Ok(());
            }
            Progress::Waiting(line) => {
                if let Some(stack) = progress
                    && (line != last_line || last_print.elapsed() >= Duration::from_secs(10))
                {
                    say!("  [{stack}] waiting for {}: {line} ({}s)", until.display(), started.elapsed().as_secs());
                    last_print = Instant::now();
                }
                last_line = line;
            }
        }
    }
}
