//! `llmd build`, `llmd why`, `llmd status`, `llmd cache`: the incremental engine's
//! commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{CommonArgs, GlobalArgs, exit, print_warnings};
use crate::engine::build::{BuildOptions, BuildReport, NodeStatus, build};
use crate::engine::why;
use crate::error::{InputError, Warnings};
use crate::store::Store;

/// Where the cache lives.
#[derive(Debug, Args, Clone)]
pub struct CacheDirArg {
    /// The cache directory.
    #[arg(long, env = "LLMD_CACHE_DIR", default_value = ".llmdcache", value_name = "DIR")]
    pub cache_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The experiment file (setup and run treatments; `experiment.spec` names the specification).
    #[arg(value_name = "EXPERIMENT")]
    pub experiment: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub cache: CacheDirArg,
    /// Print one JSON object (nodes, statuses, reasons) instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Execute nodes whose id matches GLOB even if fresh (`*` matches across `/`), e.g. 'run/*#2'.
    #[arg(long, value_name = "GLOB")]
    pub force: Vec<String>,
    /// After a failure, go on with every node that does not depend on it.
    #[arg(long)]
    pub keep_going: bool,
    /// Leave stacks running after their runs, for the next build to reuse.
    #[arg(long)]
    pub keep_stacks: bool,
    /// Give up waiting for another build's cache lock after this long: 30, 5m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub lock_timeout: Option<u64>,
    /// Harness (default: experiment.harness, else the scenario's harness.name).
    #[arg(short = 'l', long, value_name = "HARNESS")]
    pub harness: Option<String>,
    /// Workload profile (default: experiment.profile, else the scenario's).
    #[arg(short = 'w', long, value_name = "PROFILE")]
    pub workload: Option<String>,
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
    /// Longest one harness run may take: 3600, 90m, 2h (a bare number is seconds).
    #[arg(long, default_value_t = 3600, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub harness_timeout: u64,
    /// Setups executed at once (default: 1 on the local backend; every setup on a
    /// cluster, as its capacity allows).
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// What may be deployed at once, e.g. `gpu=16,cpu=2` (default: discovered — the local
    /// machine's cores, a cluster's allocatable GPUs).
    #[arg(long, value_name = "RESOURCE=N,...")]
    pub capacity: Option<String>,
    /// What may run beside a measurement: `exclusive` (one run at a time; the local
    /// default) or `per-stack` (runs on different stacks may overlap; the cluster
    /// default). Overrides the experiment's `isolation:`.
    #[arg(long, value_name = "MODE", value_parser = ["exclusive", "per-stack"])]
    pub isolation: Option<String>,
}

/// The tokenizer external harnesses use: part of their run keys, so `why` and `status`
/// must see the one `build` sees.
#[derive(Args, Debug, Clone, Default)]
pub struct TokenizerArg {
    /// A local tokenizer for external harnesses (a directory with tokenizer.json).
    #[arg(long, env = "LLMD_TOKENIZER", value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// Only nodes matching this glob (and what they cascaded from).
    #[arg(value_name = "NODE-GLOB")]
    pub node: Option<String>,
    /// Explain what would run now for this experiment, instead of the last build.
    #[arg(short = 'e', long, value_name = "EXPERIMENT")]
    pub experiment: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub cache: CacheDirArg,
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(value_name = "EXPERIMENT")]
    pub experiment: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub cache: CacheDirArg,
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
    /// The cache directory (before or after the subcommand: `llmd cache verify --cache-dir X`).
    #[arg(long, global = true, env = "LLMD_CACHE_DIR", default_value = ".llmdcache", value_name = "DIR")]
    pub cache_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List logical nodes with their last success and last attempt.
    Ls,
    /// Check every blob against its digest and every node's records; exit 1 on problems (interrupted nodes are noted: the next build re-runs them).
    Verify {
        /// Remove what is broken (corrupt blobs, malformed records, unreadable node files, pointers to damaged records, temporary files of killed writers) and say what will run again; intact results are never removed.
        #[arg(long)]
        repair: bool,
    },
    /// Remove records and blobs no node points at, and old journals.
    Gc {
        /// Journals to keep.
        #[arg(long, default_value_t = 20)]
        keep_journals: usize,
    },
    /// Write the successful records (and blobs) of nodes matching prefixes to a bundle, for CI caches.
    Export {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Node id prefixes (default: plan/, the shareable pure nodes).
        #[arg(long, value_name = "PREFIX", default_values_t = vec!["plan/".to_string()])]
        prefix: Vec<String>,
        /// Every node, not only plans.
        #[arg(long)]
        all: bool,
    },
    /// Load a bundle written by `cache export` (every blob is verified).
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `-j N`: a whole number of at least 1 (0 would run nothing, so it is refused).
fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (setups executed at once)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

fn options(
    global: &GlobalArgs,
    common: &CommonArgs,
    cache: &CacheDirArg,
    tokenizer: &TokenizerArg,
    experiment: &std::path::Path,
    dry_run: bool,
) -> Result<BuildOptions> {
    let mut warnings = Warnings::default();
    // The spec may come from the experiment file, so a missing --spec is not an error here.
    let plan = global.plan_options_for(common, global.spec.clone().unwrap_or_default(), &mut warnings)?;
    print_warnings(&warnings);
    Ok(BuildOptions {
        experiment_file: experiment.to_path_buf(),
        plan,
        workspace: global.workspace_dir(),
        cache_dir: cache.cache_dir.clone(),
        dry_run,
        force: Vec::new(),
        keep_going: false,
        keep_stacks: false,
        lock_timeout: None,
        harness: None,
        workload: None,
        tokenizer: tokenizer.tokenizer.clone(),
        harness_timeout: Duration::from_secs(3600),
        verbose: global.verbose,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        human: true,
        backend: global.backend_options(),
        jobs: None,
        capacity: None,
        isolation: None,
    })
}

fn print_report(report: &BuildReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", report.summary_line());
    }
    Ok(())
}

pub fn run_build(global: &GlobalArgs, args: &BuildArgs) -> Result<ExitCode> {
    let mut opts = options(global, &args.common, &args.cache, &args.tokenizer, &args.experiment, global.dry_run)?;
    opts.force = args.force.clone();
    opts.keep_going = args.keep_going;
    opts.keep_stacks = args.keep_stacks;
    opts.lock_timeout = args.lock_timeout.map(Duration::from_secs);
    opts.harness = args.harness.clone();
    opts.workload = args.workload.clone();
    opts.harness_timeout = Duration::from_secs(args.harness_timeout.max(1));
    opts.human = !args.json;
    opts.jobs = args.jobs;
    opts.capacity = args.capacity.as_deref().map(crate::engine::schedule::parse_capacity).transpose()?;
    opts.isolation = args.isolation.as_deref().and_then(crate::experiment::Isolation::parse);
    let report = build(&opts)?;
    if !args.json && !report.dry_run {
        // The table users came for, when this build produced a new one.
        let summary = opts.workspace.join("summary.txt");
        let fresh_summary = report.nodes.iter().any(|n| n.kind == "summary" && n.status == NodeStatus::Ran);
        if fresh_summary && let Ok(table) = std::fs::read_to_string(&summary) {
            println!("{table}");
        }
        if summary.is_file() {
            println!("summary: {}  (also summary.csv, summary.json)", summary.display());
        }
    }
    print_report(&report, args.json)?;
    if report.interrupted {
        let cut: Vec<&str> = report.nodes.iter().filter(|n| n.detail.as_deref() == Some("interrupted")).map(|n| n.id.as_str()).collect();
        eprintln!(
            "llmd: interrupted{}; the cache is consistent: the next build runs the interrupted and never-run nodes",
            if cut.is_empty() { String::new() } else { format!(" during {}", cut.join(", ")) }
        );
        return Ok(ExitCode::from(exit::INTERRUPTED));
    }
    Ok(ExitCode::from(if report.ok() { exit::SUCCESS } else { exit::FAILURE }))
}

pub fn run_status(global: &GlobalArgs, args: &StatusArgs) -> Result<ExitCode> {
    let mut opts = options(global, &args.common, &args.cache, &args.tokenizer, &args.experiment, true)?;
    opts.human = false;
    let report = build(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::from(exit::SUCCESS));
    }
    let mut by_kind: std::collections::BTreeMap<&str, (usize, usize, usize)> = Default::default();
    for n in &report.nodes {
        let e = by_kind.entry(n.kind).or_default();
        match n.status {
            NodeStatus::Fresh => e.0 += 1,
            NodeStatus::WouldRun => e.1 += 1,
            _ => e.2 += 1,
        }
    }
    println!("{}: {}", report.experiment, report.summary_line());
    for (kind, (fresh, stale, skipped)) in by_kind {
        println!("  {kind:<10} {fresh:>4} fresh {stale:>4} stale {skipped:>4} not needed");
    }
    for n in report.nodes.iter().filter(|n| n.status == NodeStatus::WouldRun) {
        println!("  stale  {}  ({})", n.id, n.reason.as_ref().map(|r| r.describe(3)).unwrap_or_default());
    }
    Ok(ExitCode::from(exit::SUCCESS))
}

pub fn run_why(global: &GlobalArgs, args: &WhyArgs) -> Result<ExitCode> {
    let (label, nodes, keys) = match &args.experiment {
        Some(exp) => {
            let mut opts = options(global, &args.common, &args.cache, &args.tokenizer, exp, true)?;
            opts.human = false;
            let report = build(&opts)?;
            // An analysis or summary that would run has no final key yet.
            let keys: Vec<(String, String)> = report
                .nodes
                .iter()
                .filter(|n| n.status != NodeStatus::WouldRun || !matches!(n.kind, "analysis" | "summary"))
                .map(|n| (n.id.clone(), n.key.clone()))
                .collect();
            let nodes = report.nodes.into_iter().filter_map(|n| n.reason.map(|r| (n.id, r, n.status.to_string()))).collect();
            ("if built now".to_string(), nodes, keys)
        }
        None => {
            let store = Store::open(&args.cache.cache_dir)?;
            let last = why::from_last_journal(&store.journals())?;
            if last.unreadable_lines > 0 {
                eprintln!(
                    "warning: {}: skipped {} damaged line(s) of the journal; what they recorded is not shown",
                    last.path.display(),
                    last.unreadable_lines
                );
            }
            (why::journal_label(&last.path), last.nodes, last.keys)
        }
    };
    let twins = why::twins(&keys);
    let explained = why::explain(&nodes, &twins);
    if args.json {
        let shown: Vec<&why::Explained> = explained
            .iter()
            .filter(|e| {
                args.node.as_deref().is_none_or(|f| {
                    crate::engine::graph::glob_match(f, &e.id) || e.chain.iter().any(|c| crate::engine::graph::glob_match(f, c))
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"source": label, "nodes": shown}))?);
    } else {
        print!("{}", why::render(&explained, &twins, args.node.as_deref(), &label));
    }
    Ok(ExitCode::from(exit::SUCCESS))
}

/// `llmd cache …`; `workspace` is where verify looks for replicas of killed builds.
pub fn run_cache(args: &CacheArgs, workspace: &std::path::Path) -> Result<ExitCode> {
    let store = Store::open(&args.cache_dir)?;
    if matches!(args.command, CacheCommand::Verify { .. }) && workspace.is_dir() {
        // Replicas a killed build started but never recorded (none of a live build's).
        for ws in crate::phases::teardown::receipt_workspaces(workspace) {
            for line in crate::backend::pending::reap(&ws) {
                println!("{line}");
            }
        }
    }
    match &args.command {
        CacheCommand::Ls => {
            for n in store.nodes() {
                let status = match n.last_status {
                    Some(crate::store::Status::Ok) => "ok",
                    Some(crate::store::Status::Failed) => "failed",
                    None => "-",
                };
                let short = |k: &Option<String>| k.as_deref().map_or("-".to_string(), |k| k[..12.min(k.len())].to_string());
                println!("{:<60} last {:<6} {}  last ok {}", n.id, status, short(&n.last), short(&n.last_ok));
            }
            for m in store.incompletes() {
                println!("{:<60} INTERRUPTED (pid {})", m.id, m.pid);
            }
        }
        CacheCommand::Verify { repair: true } => {
            let _lock =
                store.lock("llmd cache verify --repair", None, |h| eprintln!("llmd: waiting for the cache lock, held by {h} ..."))?;
            let repaired = store.repair()?;
            for a in &repaired.actions {
                println!("{a}");
            }
            for id in &repaired.rerun {
                println!("will run again: {id}");
            }
            let left = store.verify();
            for p in &left {
                println!("still broken: {p}");
            }
            if !left.is_empty() {
                return Ok(ExitCode::from(exit::FAILURE));
            }
            println!(
                "{}: ok ({} nodes){}",
                store.root().display(),
                store.nodes().len(),
                if repaired.actions.is_empty() { "; nothing to repair" } else { "" }
            );
        }
        CacheCommand::Verify { repair: false } => {
            let problems = store.verify();
            if problems.is_empty() {
                println!("{}: ok ({} nodes)", store.root().display(), store.nodes().len());
                for note in store.interrupted() {
                    println!("note: {note}");
                }
            } else {
                for p in &problems {
                    println!("{p}");
                }
                eprintln!("llmd: `llmd cache verify --repair` removes what is broken; the next build runs the affected nodes again");
                return Ok(ExitCode::from(exit::FAILURE));
            }
        }
        CacheCommand::Gc { keep_journals } => {
            let _lock = store.lock("llmd cache gc", None, |h| eprintln!("llmd: waiting for the cache lock, held by {h} ..."))?;
            let (records, blobs, journals) = store.gc(*keep_journals)?;
            println!("removed {records} records, {blobs} blobs, {journals} journals");
        }
        CacheCommand::Export { file, prefix, all } => {
            let prefixes: Vec<&str> = if *all { Vec::new() } else { prefix.iter().map(String::as_str).collect() };
            let bundle = store.export(&prefixes)?;
            let n = bundle["records"].as_array().map_or(0, Vec::len);
            crate::util::fs::write_atomic(file, serde_json::to_string(&bundle)?.as_bytes())?;
            println!("exported {n} records to {}", file.display());
        }
        CacheCommand::Import { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let bundle: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| InputError::new(format!("{} is not a cache bundle written by `llmd cache export`: {e}", file.display())))?;
            let _lock = store.lock("llmd cache import", None, |h| eprintln!("llmd: waiting for the cache lock, held by {h} ..."))?;
            let n = store.import(&bundle).map_err(|e| InputError::new(format!("{}: {e:#}", file.display())))?;
            println!("imported {n} records into {}", store.root().display());
        }
    }
    Ok(ExitCode::from(exit::SUCCESS))
}
