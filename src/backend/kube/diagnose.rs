//! Why a workload is not coming up: terminal pod states, recent events and the last log
//! lines, gathered into one error message.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, LogParams};

/// How many log lines and events an error carries.
const LOG_LINES: i64 = 15;
const EVENTS: usize = 6;

/// A kube error as one line: the API server's message and reason, or the transport error.
pub fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() { String::new() } else { format!("{}, ", s.reason) };
            format!("{} ({reason}HTTP {})", s.message, s.code)
        }
        other => other.to_string(),
    }
}

/// A state a pod does not leave by waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminal {
    pub pod: String,
    /// `ImagePullBackOff`, `CrashLoopBackOff`, `OOMKilled`, `Unschedulable`, `Failed`, …
    pub reason: String,
    pub message: String,
    /// The container worth reading logs of (it ran), with whether to read its previous
    /// instance.
    pub logs_of: Option<(String, bool)>,
}

/// Waiting reasons that never resolve by themselves.
const STUCK_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The terminal state `pod` is in, if any.
pub fn terminal(pod: &Pod) -> Option<Terminal> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let t = |reason: &str, message: String, logs_of: Option<(String, bool)>| {
        Some(Terminal { pod: name.clone(), reason: reason.to_string(), message, logs_of })
    };
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable") {
            return t("Unschedulable", c.message.clone().unwrap_or_default(), None);
        }
    }
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for cs in containers {
        let state = cs.state.as_ref();
        let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let oom = state
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
            .or(last.filter(|t| t.reason.as_deref() == Some("OOMKilled")));
        if let Some(term) = oom {
            let limit = "the container exceeded its memory limit".to_string();
            return t(
                "OOMKilled",
                term.message.clone().filter(|m| !m.is_empty()).unwrap_or(limit),
                Some((cs.name.clone(), last.is_some())),
            );
        }
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            let pull_not_found =
                reason == "ErrImagePull" && w.message.as_deref().is_some_and(|m| m.contains("not found") || m.contains("manifest unknown"));
            if STUCK_WAITING.contains(&reason.as_str()) || pull_not_found {
                let ran = reason == "CrashLoopBackOff" || cs.restart_count > 0;
                let message = w.message.clone().unwrap_or_default();
                let message = match last.and_then(|l| Some((l.exit_code, l.reason.clone()?))) {
                    Some((code, why)) if ran => format!("{message} (last exit code {code}, {why})"),
                    _ => message,
                };
                return t(&reason, message, ran.then(|| (cs.name.clone(), true)));
            }
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        let running = pod.spec.as_ref().and_then(|s| s.containers.first()).map(|c| (c.name.clone(), false));
        return t("Failed", status.message.clone().or(status.reason.clone()).unwrap_or_default(), running);
    }
    None
}

/// The last events about `name` in `namespace`, oldest first, one per line.
pub async fn recent_events(client: &kube::Client, namespace: &str, name: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await else { return Vec::new() };
    let mut events: Vec<Event> = list.items;
    events.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0)));
    let skip = events.len().saturating_sub(EVENTS);
    events
        .iter()
        .skip(skip)
        .map(|e| {
            let count = e.count.filter(|&c| c > 1).map(|c| format!(" (x{c})")).unwrap_or_default();
            format!(
                "{} {}: {}{count}",
                e.type_.as_deref().unwrap_or("Normal"),
                e.reason.as_deref().unwrap_or(""),
                e.message.as_deref().unwrap_or("").trim()
            )
        })
        .collect()
}

/// The last log lines of a pod's container.
pub async fn last_logs(client: &kube::Client, namespace: &str, pod: &str, container: &str, previous: bool) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = LogParams { container: Some(container.to_string()), tail_lines: Some(LOG_LINES), previous, ..Default::default() };
    match api.logs(pod, &params).await {
        Ok(text) => text,
        // The previous instance may be gone already; the current one is next best.
        Err(_) if previous => {
            let params = LogParams { previous: false, ..params };
            api.logs(pod, &params).await.unwrap_or_default()
        }
        Err(_) => String::new(),
    }
}

/// A terminal state as an error message: what, the pod's recent events and its
/// container's last log lines.
pub async fn explain(client: &kube::Client, namespace: &str, what: &str, t: &Terminal) -> String {
    let mut msg = format!("{what}: pod {} is {}: {}", t.pod, t.reason, t.message.trim());
    let events = recent_events(client, namespace, &t.pod).await;
    if !events.is_empty() {
        msg.push_str(&format!("\n  recent events of pod {}:\n    {}", t.pod, events.join("\n    ")));
    }
    if let Some((container, previous)) = &t.logs_of {
        let logs = last_logs(client, namespace, &t.pod, container, *previous).await;
        if !logs.trim().is_empty() {
            let which = if *previous { "previous run of " } else { "" };
            let lines: Vec<&str> = logs.trim_end().lines().collect();
            msg.push_str(&format!("\n  last log lines of {which}container {container}:\n    {}", lines.join("\n    ")));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn terminal_states_are_recognised() {
        let unsched = pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]}}));
        let t = terminal(&unsched).unwrap();
        assert_eq!((t.reason.as_str(), t.logs_of), ("Unschedulable", None));
        assert!(t.message.contains("Insufficient nvidia.com/gpu"));

        let crash = pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "vllm", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}));
        let t = terminal(&crash).unwrap();
        assert_eq!(t.reason, "CrashLoopBackOff");
        assert!(t.message.contains("last exit code 1"));
        assert_eq!(t.logs_of, Some(("vllm".into(), true)));

        let oom = pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "vllm", "image": "i", "imageID": "", "ready": false, "restartCount": 1,
             "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}));
        assert_eq!(terminal(&oom).unwrap().reason, "OOMKilled");

        let pulling = pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Pending", "containerStatuses": [
            {"name": "vllm", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}]}}));
        assert_eq!(terminal(&pulling), None, "creating is not terminal");
        let backoff = pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Pending", "containerStatuses": [
            {"name": "vllm", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}}));
        assert_eq!(terminal(&backoff).unwrap().logs_of, None, "a container that never ran has no logs");
    }
}
