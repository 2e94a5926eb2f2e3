//! Connecting to a cluster: which kubeconfig and context, the TLS provider, and the
//! cluster's identity.
//!
//! Lookup order, as kubectl's: `--kubeconfig`, then `KUBECONFIG`, then
//! `~/.kube/config`, then the in-cluster service account; `--context` picks a context
//! of the kubeconfig. The identity — API server URL and the UID of the `kube-system`
//! namespace — enters every standup key, so a deployment recorded against one cluster
//! is never reused on another that happens to share a URL (a recreated kind cluster).

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::error::InputError;

/// How to reach the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// `--kubeconfig`; `None` follows `KUBECONFIG`, `~/.kube/config`, in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; `None` is the kubeconfig's current context.
    pub context: Option<String>,
}

/// A cluster's client configuration and identity.
#[derive(Clone)]
pub struct Cluster {
    pub config: Config,
    /// `kube:<server URL>#<kube-system UID>`.
    pub identity: String,
    pub server: String,
}

/// Installs rustls' ring provider as the process default, once. kube's TLS stack asks
/// rustls for the default provider; without one installed it panics at the first
/// HTTPS connection.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Reads the client configuration the options select.
pub async fn load_config(opts: &ClusterOptions) -> Result<Config> {
    install_crypto_provider();
    let kc_opts = KubeConfigOptions { context: opts.context.clone(), ..Default::default() };
    let mut config = if let Some(path) = &opts.kubeconfig {
        let kc = Kubeconfig::read_from(path).map_err(|e| {
            InputError::new(format!("--kubeconfig {}: {e}", path.display()))
                .help("pass a readable kubeconfig file (kubectl config view --raw > FILE)")
        })?;
        check_context(&kc, opts.context.as_deref(), &path.display().to_string())?;
        Config::from_custom_kubeconfig(kc, &kc_opts).await.map_err(|e| InputError::new(format!("{}: {e}", path.display())))?
    } else if opts.context.is_some() {
        let kc = Kubeconfig::read().map_err(|e| InputError::new(format!("--context: {e}")))?;
        check_context(&kc, opts.context.as_deref(), "the kubeconfig")?;
        Config::from_custom_kubeconfig(kc, &kc_opts).await.map_err(|e| InputError::new(format!("--context: {e}")))?
    } else {
        Config::infer().await.map_err(|e| {
            InputError::new(format!("no Kubernetes cluster configured ({e})"))
                .help("pass --kubeconfig FILE, set KUBECONFIG, create ~/.kube/config, or run inside a cluster")
        })?
    };
    config.connect_timeout = Some(Duration::from_secs(10));
    Ok(config)
}

/// An input error when `--context` names no context of `kc`, listing those it has.
fn check_context(kc: &Kubeconfig, context: Option<&str>, file: &str) -> Result<(), InputError> {
    let Some(wanted) = context else { return Ok(()) };
    let names: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
    if names.contains(&wanted) {
        return Ok(());
    }
    let mut e = InputError::new(format!("--context {wanted}: {file} has no such context (it has: {})", names.join(", ")));
    if let Some(s) = crate::error::did_you_mean(wanted, names.iter().copied()) {
        e = e.help(format!("did you mean '{s}'?"));
    }
    Err(e)
}

/// A kube error with its causes (`client error (Connect): … Connection refused`).
fn with_causes(e: &kube::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// A client for `config`; must be called inside a Tokio runtime, whose lifetime the
/// client's connection pool shares.
pub fn client(config: &Config) -> Result<Client> {
    install_crypto_provider();
    Client::try_from(config.clone()).with_context(|| format!("cannot build a Kubernetes client for {}", config.cluster_url))
}

/// Connects and reads the cluster's identity.
pub async fn connect(opts: &ClusterOptions) -> Result<Cluster> {
    let config = load_config(opts).await?;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let client = client(&config)?;
    let uid = match Api::<Namespace>::all(client).get("kube-system").await {
        Ok(ns) => ns.metadata.uid.unwrap_or_default(),
        // A user without cluster-wide read still has a cluster; its URL is the identity.
        Err(kube::Error::Api(s)) if s.code == 403 => "forbidden".to_string(),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot reach the Kubernetes API server at {server}: {} (is the cluster up, and is this its kubeconfig?)",
                with_causes(&e)
            ));
        }
    };
    Ok(Cluster { identity: format!("kube:{server}#{uid}"), server, config })
}

/// [`connect`] from synchronous code: on a thread of its own with a private runtime,
/// so it works whether or not the caller is inside one. The client built there is
/// dropped with that runtime; callers build their own from `config`.
pub fn connect_blocking(opts: &ClusterOptions) -> Result<Cluster> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(connect(opts))
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error: the cluster connection thread panicked")))
    })
}
