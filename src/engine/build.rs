//! `llmd build`: decide every node of an experiment ([`super::decide`]), then execute
//! the ones that must run ([`super::execute`]), recording each in the store; the
//! report says what happened to every node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::decide::{Graph, check_deployments, plan_graph};
use super::execute::{Executor, Schedule};
use super::graph::{Decision, GraphNode};
use super::interrupt::Interrupt;
use super::materialize::Materializer;
use super::planner::Planner;
use super::reason::Reason;
use super::schedule::{Amounts, Capacity};
use crate::backend::{BackendOptions, Registry};
use crate::config::PlanOptions;
use crate::experiment::Isolation;
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
    /// `-j`: setups executed at once (`None`: 1 on the local backend, every setup on a
    /// cluster, as capacity allows).
    pub jobs: Option<usize>,
    /// `--capacity`: the pool setups are packed into (`None`: discovered).
    pub capacity: Option<Amounts>,
    /// `--isolation` (over the experiment's `isolation:`).
    pub isolation: Option<Isolation>,
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
    /// The node's key as decided (content-derived; equal inputs give equal keys anywhere).
    pub key: String,
    pub status: NodeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub seconds: f64,
}

impl NodeReport {
    pub fn new(node: &GraphNode, status: NodeStatus, reason: Option<Reason>, detail: Option<String>, seconds: f64) -> NodeReport {
        NodeReport { id: node.id.clone(), kind: node.kind.name(), key: node.key.clone(), status, reason, detail, seconds }
    }

    /// The report of a node the executor did not reach (or a dry run's).
    fn unexecuted(node: &GraphNode, dry_run: bool) -> NodeReport {
        match &node.decision {
            Decision::Fresh => NodeReport::new(node, NodeStatus::Fresh, node.changed.clone(), None, 0.0),
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
    /// Ctrl-C or SIGTERM stopped it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    pub nodes: Vec<NodeReport>,
    /// Workspace writes that failed, each naming its path (the build fails).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workspace_errors: Vec<String>,
    pub seconds: f64,
}

impl BuildReport {
    pub fn count(&self, status: NodeStatus) -> usize {
        self.nodes.iter().filter(|n| n.status == status).count()
    }

    pub fn ok(&self) -> bool {
        self.count(NodeStatus::Failed) == 0 && self.workspace_errors.is_empty()
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
            let workspace = match self.workspace_errors.len() {
                0 => String::new(),
                n => format!("; {n} workspace write(s) failed: {}", self.workspace_errors[0]),
            };
            format!(
                "{} ran, {} fresh, {} failed, {} skipped in {:.1} s{workspace}",
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

/// A journal line for one decision (a struct, not a `json!` map: a build journals
/// thousands of them).
#[derive(Serialize)]
struct DecideEvent<'a> {
    event: &'static str,
    id: &'a str,
    kind: &'static str,
    key: &'a str,
    decision: &'static str,
    reason: Option<&'a Reason>,
}

/// Decides (and, unless `dry_run`, executes) the experiment.
pub fn build(opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let lap = crate::util::lap;
    let store = Store::open(&opts.cache_dir)?;
    store.preload_record_pack();
    let _lock = if opts.dry_run {
        None
    } else {
        Some(store.lock(&opts.command_line, opts.lock_timeout, |holder| say!("llmd: waiting for the cache lock, held by {holder} ..."))?)
    };
    let journal = if opts.dry_run { None } else { Some(store.journal(&opts.command_line)?) };
    store.sweep_stray_temps();
    let mut planner = Planner::new();
    lap("cache opened and stray temporaries swept");
    let registry = Registry::new(opts.backend.clone());
    let mat = Materializer::open(&opts.workspace);
    lap("workspace index read");
    let mut graph = plan_graph(opts, &store, &mut planner, &mat, &registry)?;
    lap("graph planned and decided");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    // One build per workspace too, whatever its cache: two builds would replace each
    // other's stacks and results. (Taken once deciding succeeded, so that a bad input
    // leaves no trace in the workspace.)
    let _workspace_lock = if opts.dry_run {
        None
    } else {
        let lock = crate::store::lock::lock_workspace(&opts.workspace, &opts.command_line, opts.lock_timeout)?;
        clean_up_after_earlier_builds(opts, &graph, &rt, &registry);
        Some(lock)
    };
    check_deployments(&mut graph, &rt, &registry);
    if !opts.dry_run {
        refresh_secrets_of_kept_stacks(&graph, &rt, &registry);
    }
    lap("deployments checked");
    for w in store.take_warnings() {
        say!("warning: {w}");
    }
    if opts.human {
        say!(
            "llmd build {}: {} setup treatment(s) x {} run treatment(s) x {} repetition(s); {} nodes, {} to run",
            graph.experiment.name,
            graph.setups.len(),
            graph.experiment.run.len().max(1),
            graph.experiment.repeat,
            graph.nodes.len(),
            graph.nodes.iter().filter(|n| n.runs()).count()
        );
        for n in graph.nodes.iter().filter(|n| opts.verbose || n.runs() || opts.dry_run) {
            say!("{}", node_line(n));
        }
    }
    let Some(journal) = journal else {
        let nodes = graph.nodes.iter().map(|n| NodeReport::unexecuted(n, true)).collect();
        return Ok(BuildReport {
            experiment: graph.experiment.name.clone(),
            dry_run: true,
            interrupted: false,
            nodes,
            workspace_errors: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
        });
    };
    for n in &graph.nodes {
        let (decision, reason) = match &n.decision {
            Decision::Fresh => ("fresh", n.changed.as_ref()),
            Decision::Run(r) => ("run", Some(r)),
            Decision::Skip(_) => ("skip", None),
        };
        journal.append(&DecideEvent { event: "decide", id: &n.id, kind: n.kind.name(), key: &n.key, decision, reason });
    }
    lap("decisions journaled");
    if let Some(hook) = std::env::var_os("LLMD_TEST_AFTER_DECIDE") {
        // Tests only: a command run between deciding and executing (an edit racing the build).
        let _ = std::process::Command::new("sh").arg("-c").arg(hook).status();
    }
    let interrupt = Interrupt::install(&rt);
    let schedule = schedule_for(opts, &graph, &store, &rt, &registry)?;
    if opts.human && schedule.jobs > 1 {
        say!(
            "executing up to {} setups at once (pool: {} from {}; isolation: {})",
            schedule.jobs,
            super::schedule::describe(&schedule.capacity.pool),
            schedule.capacity.source,
            schedule.isolation.name()
        );
    }
    journal.append(&serde_json::json!({"event": "schedule", "jobs": schedule.jobs, "isolation": schedule.isolation.name(), "capacity": schedule.capacity.pool}));
    let mut reports = vec![None; graph.nodes.len()];
    let exec = Executor::new(opts, &store, &mut graph, &registry, &rt, &mut reports, &journal, mat, schedule, interrupt.clone());
    exec.run_all();
    let workspace_errors = exec.workspace_errors();
    crate::util::drop_in_background(exec.into_materializer());
    lap("executed and materialized");
    let interrupted = interrupt.is_set();
    let unreached = |n: &GraphNode| {
        if interrupted && n.runs() {
            NodeReport::new(n, NodeStatus::Skipped, None, Some("not executed: the build was interrupted".into()), 0.0)
        } else {
            NodeReport::unexecuted(n, false)
        }
    };
    let nodes: Vec<NodeReport> = reports.into_iter().zip(&graph.nodes).map(|(r, n)| r.unwrap_or_else(|| unreached(n))).collect();
    // What the next build's reasons are diffs against: every node this build found
    // fresh or executed, at its final key (a node it never reached keeps the old one).
    let settled = nodes
        .iter()
        .zip(&graph.nodes)
        .filter(|(r, _)| matches!(r.status, NodeStatus::Fresh | NodeStatus::Ran | NodeStatus::Failed))
        .map(|(_, n)| (n.id.as_str(), n.key.as_str()));
    if let Err(e) = store.record_decisions(settled) {
        say!("warning: cannot record this build's decisions (the next `why` compares with older ones): {e:#}");
    }
    if let Err(e) = store.write_record_pack() {
        say!("warning: cannot write the record pack (the next build reads each record's file): {e:#}");
    }
    let report = BuildReport {
        experiment: graph.experiment.name.clone(),
        dry_run: false,
        interrupted,
        nodes,
        workspace_errors,
        seconds: started.elapsed().as_secs_f64(),
    };
    journal.write(&serde_json::json!({"event": "end", "summary": report.summary_line(), "ok": report.ok()}));
    crate::util::drop_in_background((graph, planner));
    Ok(report)
}

/// What earlier builds left that no current node owns: partial results of runs a killed
/// build never finished (removed), replicas it started but never recorded (stopped), and — unless `--keep-stacks` — the stacks of
/// setups no longer in the experiment. (Receipts of current setups are torn down after
/// each setup executes, whether or not anything of it ran.)
fn clean_up_after_earlier_builds(opts: &BuildOptions, graph: &Graph, rt: &tokio::runtime::Runtime, registry: &Registry) {
    let current: Vec<&std::path::Path> = graph.setups.iter().map(|s| s.workspace.as_path()).collect();
    for setup in &graph.setups {
        super::execute::remove_stale_staging(&setup.workspace);
    }
    for ws in crate::phases::teardown::receipt_workspaces(&opts.workspace) {
        for line in crate::backend::pending::reap(&ws) {
            say!("llmd: {line}");
        }
        if opts.keep_stacks || current.contains(&ws.as_path()) {
            continue;
        }
        for (stack, result) in rt.block_on(crate::phases::teardown::teardown_all(registry, &ws)) {
            match result {
                Ok(what) => say!("llmd: tore down {stack} ({what}): its setup is no longer in the experiment"),
                Err(e) => say!("warning: teardown of {stack} (no longer in the experiment) failed: {e:#}"),
            }
        }
    }
}

/// A secret is an input of no key, so a new value re-runs nothing: the stacks this
/// build keeps (their standups are fresh and a receipt lists them) get the objects that
/// hold secrets re-applied, which changes only those whose secret changed.
fn refresh_secrets_of_kept_stacks(graph: &Graph, rt: &tokio::runtime::Runtime, registry: &Registry) {
    for setup in &graph.setups {
        for stack in setup.stacks.iter().filter(|s| !graph.nodes[s.standup].runs()) {
            let Ok(Some(receipt)) = crate::backend::Receipt::load(&setup.workspace, &stack.name) else { continue };
            let Ok(backend) = registry.get(&receipt.backend) else { continue };
            match rt.block_on(backend.refresh_secrets(&stack.target, &receipt)) {
                Ok(changed) if changed.is_empty() => {}
                Ok(changed) => say!("llmd: [{}] updated in place with a changed secret: {}", stack.name, changed.join(", ")),
                Err(e) => say!("warning: [{}] the deployment's secrets could not be updated: {e:#}", stack.name),
            }
        }
    }
}

/// `-j`, the capacity pool and what each setup holds, and the isolation of runs; a
/// setup that can never fit the pool is an error before anything executes.
fn schedule_for(opts: &BuildOptions, graph: &Graph, store: &Store, rt: &tokio::runtime::Runtime, registry: &Registry) -> Result<Schedule> {
    let backends: std::collections::BTreeSet<&str> =
        graph.setups.iter().flat_map(|s| s.stacks.iter().map(|k| k.backend.as_str())).collect();
    let local = backends.contains("local");
    let jobs = opts.jobs.unwrap_or(if local { 1 } else { graph.setups.len() }).max(1);
    let isolation = opts.isolation.or(graph.experiment.isolation).unwrap_or(if local { Isolation::Exclusive } else { Isolation::PerStack });
    let mut needs = Vec::new();
    for setup in &graph.setups {
        let mut need = Amounts::new();
        let executes = setup.stacks.iter().any(|k| {
            [k.plan, k.standup, k.smoketest].iter().chain(k.runs.iter().flat_map(|r| [&r.run, &r.analysis])).any(|&i| graph.nodes[i].runs())
        });
        if executes {
            for stack in &setup.stacks {
                let replicas = stack.target.replicas as u64;
                let per_replica = graph
                    .plan_config(store, stack.plan)
                    .and_then(|c| c.get_path(&["accelerator", "count"]).and_then(|n| n.as_i64().or_else(|| n.as_str()?.parse().ok())))
                    .unwrap_or(0)
                    .max(0) as u64;
                if per_replica > 0 {
                    *need.entry("gpu".to_string()).or_default() += replicas * per_replica;
                }
                if stack.backend == "local" {
                    *need.entry("cpu".to_string()).or_default() += replicas;
                }
            }
        }
        needs.push((setup.name.clone(), need));
    }
    let capacity = match &opts.capacity {
        Some(pool) => Capacity { pool: pool.clone(), source: "--capacity".into() },
        // Discovered capacity bounds only concurrent builds: one setup at a time is
        // what a build always did, whatever the machine.
        None if jobs == 1 => Capacity { pool: Amounts::new(), source: "one setup at a time".into() },
        None => {
            let mut pool = Amounts::new();
            let mut sources = Vec::new();
            for name in &backends {
                match registry.get(name).and_then(|b| rt.block_on(b.capacity())) {
                    Ok((amounts, source)) => {
                        for (k, v) in amounts {
                            *pool.entry(k).or_default() += v;
                        }
                        sources.push(source);
                    }
                    Err(e) => say!("warning: the {name} backend's capacity is unknown ({e:#}); not bounding its setups"),
                }
            }
            Capacity { pool, source: if sources.is_empty() { "unbounded".into() } else { sources.join(", ") } }
        }
    };
    super::schedule::check(&needs, &capacity)?;
    Ok(Schedule { jobs, capacity, needs: needs.into_iter().map(|(_, n)| n).collect(), isolation })
}
