//! `llmd build`: decide every node of an experiment ([`super::decide`]), then execute
//! the ones that must run ([`super::execute`]), recording each in the store; the
//! report says what happened to every node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::decide::{check_deployments, plan_graph};
use super::execute::Executor;
use super::graph::{Decision, GraphNode};
use super::materialize::Materializer;
use super::planner::Planner;
use super::reason::Reason;
use crate::backend::{BackendOptions, Registry};
use crate::config::PlanOptions;
use crate::store::Store;

/// Everything `llmd build` (and `status`) is asked to do.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub experiment_file: PathBuf,
    /// Plan options from the command line; `spec` may be empty (then `experiment.spec`).
    pub plan: PlanOptions,
    pub workspace: PathBuf,
    pub cache_dir: PathBuf,
    pub dry_run: bool,
    pub force: Vec<String>,
    pub keep_going: bool,
    pub keep_stacks: bool,
    pub lock_timeout: Option<Duration>,
    pub harness: Option<String>,
    pub workload: Option<String>,
    pub tokenizer: Option<PathBuf>,
    pub harness_timeout: Duration,
    pub verbose: bool,
    /// How the build was invoked (for the lock holder and the journal).
    pub command_line: String,
    /// Print node lines as they are decided and executed (off for `--json`).
    pub human: bool,
    /// `--backend` and `--non-admin`.
    pub backend: BackendOptions,
}

/// What happened to one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Fresh,
    Ran,
    Failed,
    Skipped,
    /// Dry runs only: the node would execute.
    WouldRun,
}

impl NodeStatus {
    pub fn name(self) -> &'static str {
        match self {
            NodeStatus::Fresh => "fresh",
            NodeStatus::Ran => "ran",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::WouldRun => "would_run",
        }
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One node's line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub kind: &'static str,
    pub status: NodeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub seconds: f64,
}

impl NodeReport {
    pub fn new(node: &GraphNode, status: NodeStatus, reason: Option<Reason>, detail: Option<String>, seconds: f64) -> NodeReport {
        NodeReport { id: node.id.clone(), kind: node.kind.name(), status, reason, detail, seconds }
    }

    /// The report of a node the executor did not reach (or a dry run's).
    fn unexecuted(node: &GraphNode, dry_run: bool) -> NodeReport {
        match &node.decision {
            Decision::Fresh => NodeReport::new(node, NodeStatus::Fresh, None, None, 0.0),
            Decision::Run(r) if dry_run => NodeReport::new(node, NodeStatus::WouldRun, Some(r.clone()), None, 0.0),
            Decision::Run(r) => NodeReport::new(
                node,
                NodeStatus::Skipped,
                Some(r.clone()),
                Some("not executed: an earlier node failed (use --keep-going to go on)".into()),
                0.0,
            ),
            Decision::Skip(w) => NodeReport::new(node, NodeStatus::Skipped, None, Some(w.clone()), 0.0),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    pub experiment: String,
    pub dry_run: bool,
    pub nodes: Vec<NodeReport>,
    pub seconds: f64,
}

impl BuildReport {
    pub fn count(&self, status: NodeStatus) -> usize {
        self.nodes.iter().filter(|n| n.status == status).count()
    }

    pub fn ok(&self) -> bool {
        self.count(NodeStatus::Failed) == 0
    }

    pub fn summary_line(&self) -> String {
        use NodeStatus::*;
        if self.dry_run {
            format!(
                "{} would run, {} fresh, {} skipped (dry run, decided in {:.0} ms)",
                self.count(WouldRun),
                self.count(Fresh),
                self.count(Skipped),
                self.seconds * 1e3
            )
        } else {
            format!(
                "{} ran, {} fresh, {} failed, {} skipped in {:.1} s",
                self.count(Ran),
                self.count(Fresh),
                self.count(Failed),
                self.count(Skipped),
                self.seconds
            )
        }
    }
}

fn node_line(node: &GraphNode) -> String {
    match &node.decision {
        Decision::Fresh => format!("  fresh  {}", node.id),
        Decision::Run(r) => format!("  run    {}  ({})", node.id, r.describe(3)),
        Decision::Skip(why) => format!("  skip   {}  ({why})", node.id),
    }
}

/// Decides (and, unless `dry_run`, executes) the experiment.
pub fn build(opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    // `LLMD_TIMINGS=1`: where the build's own time goes (deciding, journaling, materializing).
    let timings = std::env::var_os("LLMD_TIMINGS").is_some();
    let lap = |what: &str| {
        if timings {
            eprintln!("[timings] {what}: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        }
    };
    let store = Store::open(&opts.cache_dir)?;
    let _lock =
        if opts.dry_run {
            None
        } else {
            Some(store.lock(&opts.command_line, opts.lock_timeout, |holder| {
                eprintln!("llmd: waiting for the cache lock, held by {holder} ...")
            })?)
        };
    let journal = if opts.dry_run { None } else { Some(store.journal(&opts.command_line)?) };
    store.index_blobs();
    let mut planner = Planner::new();
    lap("cache opened (blobs listed in the background)");
    let registry = Registry::new(opts.backend.clone());
    let mat = Materializer::open(&opts.workspace);
    let mut graph = plan_graph(opts, &store, &mut planner, &mat, &registry)?;
    lap("graph planned and decided");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    check_deployments(&mut graph, &rt, &registry);
    lap("deployments checked");
    for w in store.take_warnings() {
        eprintln!("warning: {w}");
    }
    if opts.human {
        eprintln!(
            "llmd build {}: {} setup treatment(s) x {} run treatment(s) x {} repetition(s); {} nodes, {} to run",
            graph.experiment.name,
            graph.setups.len(),
            graph.experiment.run.len().max(1),
            graph.experiment.repeat,
            graph.nodes.len(),
            graph.nodes.iter().filter(|n| n.runs()).count()
        );
        for n in graph.nodes.iter().filter(|n| opts.verbose || n.runs() || opts.dry_run) {
            eprintln!("{}", node_line(n));
        }
    }
    let Some(journal) = journal else {
        let nodes = graph.nodes.iter().map(|n| NodeReport::unexecuted(n, true)).collect();
        return Ok(BuildReport {
            experiment: graph.experiment.name.clone(),
            dry_run: true,
            nodes,
            seconds: started.elapsed().as_secs_f64(),
        });
    };
    for n in &graph.nodes {
        let (decision, reason) = match &n.decision {
            Decision::Fresh => ("fresh", None),
            Decision::Run(r) => ("run", Some(r)),
            Decision::Skip(_) => ("skip", None),
        };
        journal.append(&serde_json::json!({"event": "decide", "id": n.id, "kind": n.kind.name(), "key": n.key, "decision": decision, "reason": reason}));
    }
    lap("decisions journaled");
    if let Some(hook) = std::env::var_os("LLMD_TEST_AFTER_DECIDE") {
        // Tests only: a command run between deciding and executing (an edit racing the build).
        let _ = std::process::Command::new("sh").arg("-c").arg(hook).status();
    }
    let mut reports = vec![None; graph.nodes.len()];
    let to_run = graph.nodes.iter().filter(|n| n.runs()).count();
    let mut exec = Executor {
        opts,
        store: &store,
        graph: &mut graph,
        registry: &registry,
        rt: &rt,
        reports: &mut reports,
        journal: &journal,
        mat,
        stop: false,
        to_run,
        started_nodes: 0,
    };
    exec.run_all();
    lap("executed and materialized");
    let nodes: Vec<NodeReport> =
        reports.into_iter().zip(&graph.nodes).map(|(r, n)| r.unwrap_or_else(|| NodeReport::unexecuted(n, false))).collect();
    let report = BuildReport { experiment: graph.experiment.name.clone(), dry_run: false, nodes, seconds: started.elapsed().as_secs_f64() };
    journal.write(&serde_json::json!({"event": "end", "summary": report.summary_line(), "ok": report.ok()}));
    Ok(report)
}
