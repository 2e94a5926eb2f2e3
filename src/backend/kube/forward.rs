//! Reaching a Service from this machine: a port-forward to one of its Ready pods.
//!
//! [`forward`] listens on a loopback port and, per accepted connection, opens a
//! port-forward stream (WebSocket, through the API server) to the pod's target port,
//! as `kubectl port-forward svc/…` does. The returned [`Forward`] stops listening when
//! dropped; it is the guard of the backend's [`crate::backend::Access`].

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Api, Client};

use super::diagnose;

/// A listening port-forward; dropping it stops accepting connections.
pub struct Forward {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pod that serves and is not on its way out.
fn serving(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && super::wait::ready(p)
}

/// The port a Service's `port` sends to on `pod`.
fn target_port(svc: &Service, port: i64, pod: &Pod) -> Result<u16> {
    let spec = svc.spec.as_ref().context("the Service has no spec")?;
    let entry = spec.ports.iter().flatten().find(|p| i64::from(p.port) == port).context("the Service has no such port")?;
    let n = match &entry.target_port {
        None => entry.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .with_context(|| format!("no container of pod {} has a port named '{name}'", pod.metadata.name.clone().unwrap_or_default()))?,
    };
    u16::try_from(n).with_context(|| format!("target port {n} is not a port number"))
}

/// Service `namespace/name`, its selector (`k=v,…`) and the pods it selects.
pub async fn service_pods(client: &Client, namespace: &str, name: &str) -> Result<(Service, String, Vec<Pod>)> {
    let what = format!("Service {namespace}/{name}");
    let svc = Api::<Service>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {what}: {}", diagnose::api_error(&e)))?;
    let selector = svc.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    if selector.is_empty() {
        bail!("{what} selects no pods (no selector)");
    }
    let labels = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&labels))
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the pods of {what}: {}", diagnose::api_error(&e)))?;
    Ok((svc, labels, pods.items))
}

/// What serves behind a Service, one line per serving pod and container: the pod's uid
/// and the container's restart count. A line that changes between two readings is a
/// replica that was replaced or restarted in between.
pub fn incarnation(pods: &[Pod]) -> Vec<String> {
    let mut lines: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .flat_map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
            statuses.into_iter().map(move |c| format!("pod {name} (uid {uid}) container {}: {} restart(s)", c.name, c.restart_count))
        })
        .collect();
    lines.sort();
    lines
}

/// Forwards a loopback port to Service `namespace/name`'s `port`; returns the local
/// base URL and the guard.
pub async fn forward(client: &Client, namespace: &str, name: &str, port: i64) -> Result<(String, Forward)> {
    let what = format!("Service {namespace}/{name}");
    let (svc, labels, selected) = service_pods(client, namespace, name).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let pod = selected.into_iter().find(serving).with_context(|| format!("{what} has no Ready pod to forward to ({labels})"))?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let to = target_port(&svc, port, &pod).with_context(|| format!("{what} port {port}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on a loopback port")?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let mut tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                // Out of descriptors, say: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (pods, pod_name) = (pods.clone(), pod_name.clone());
            tokio::spawn(async move {
                let mut forwarder = match pods.portforward(&pod_name, &[to]).await {
                    Ok(f) => f,
                    Err(e) => {
                        say!("warning: port-forward to pod {pod_name}:{to} failed: {}", diagnose::api_error(&e));
                        return;
                    }
                };
                if let Some(mut upstream) = forwarder.take_stream(to) {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
                }
                forwarder.abort();
            });
        }
    });
    Ok((format!("http://{local}"), Forward { task }))
}
