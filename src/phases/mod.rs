//! The lifecycle: one executor per node kind, and the phase commands' numbered steps.
//!
//! Executors are functions over typed inputs; `llmd build` (the engine), `llmd
//! experiment` and the phase commands all call them, each from one place:
//!
//! | node | executor |
//! |---|---|
//! | plan | [`plan::StackPlan::new`] (its outputs: [`plan::StackPlan::outputs`]) |
//! | standup | [`standup::deploy`] (reuse decided with [`standup::inspect`]) |
//! | smoketest | [`smoketest::smoketest`] (the steps call its three checks) |
//! | run | [`run::run_treatment`] (attempts, experiment ids, harness instances) |
//! | analysis | [`analysis::analyze_run`] |
//! | summary | [`summary::summarize`] |
//! | teardown | [`teardown::teardown`] |
//!
//! The phase commands keep llm-d-benchmark's extension point, numbered steps:
//!
//! * A [`Step`] has a number and a name ([`StepInfo`]) and is either global or
//!   per-stack; its phase is the list it is in (`<phase>::steps()`); it can skip itself ([`Step::should_skip`]) and [`Step::execute`]s.
//! * The [`executor`] sorts steps by number and partitions them: global steps numbered at
//!   or below the first per-stack step run first, sequentially, and a failure aborts the
//!   phase; per-stack steps run sequentially within a stack and in parallel across
//!   stacks (`--parallel`), a failure stopping only its stack; the remaining global
//!   steps run afterwards, even if some stacks failed. Errors and panics become failed
//!   results; `--step` filters by number.
//! * In dry-run mode steps describe what they would do instead of doing it.
//!
//! Steps share a [`PhaseContext`]: immutable settings, the stacks with their rendered
//! configs, and per-stack typed outputs of earlier steps ([`StackState`]) — not a bag of
//! mutable fields.
//!
//! Adding a step: implement [`Step`] in the phase's file and add it to that phase's
//! `steps()` list; the number decides where it runs.

pub mod analysis;
pub mod executor;
pub mod plan;
pub mod run;
pub mod run_steps;
pub mod smoketest;
pub mod standup;
pub mod summary;
pub mod teardown;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::backend::{Access, BoxFuture, Receipt, Registry};
use crate::util::steps::StepSelection;
use crate::yaml::Node;

pub use executor::{ExecutionReport, StepResult, StepStatus, execute};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Standup,
    Smoketest,
    Run,
    Teardown,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Standup => "standup",
            Phase::Smoketest => "smoketest",
            Phase::Run => "run",
            Phase::Teardown => "teardown",
        }
    }
}

/// Immutable settings of one phase invocation.
#[derive(Clone, Debug)]
pub struct Settings {
    pub workspace: PathBuf,
    /// On-disk roots searched for workload profiles before the built-in tree.
    pub profile_roots: Vec<PathBuf>,
    pub dry_run: bool,
    /// With `dry_run`: ask the backend to validate what it would deploy
    /// (`--server-dry-run`: kube's `dryRun=All` applies).
    pub server_dry_run: bool,
    pub verbose: bool,
    pub parallel: usize,
    pub steps: StepSelection,
    pub stack_filter: Vec<String>,
    /// Run-phase settings (harness, workload, treatments).
    pub run: Option<run_steps::RunSettings>,
}

/// A stack as the phases see it.
pub struct StackEntry {
    pub name: String,
    /// The stack's rendered config (after templates ran).
    pub config: Node,
    /// [`plan::plan_digest`] of the stack's rendered plan (empty without a plan).
    pub plan_digest: String,
    /// The plan's standup manifests (for cluster backends; empty without a plan).
    pub manifests: Vec<crate::backend::Manifest>,
    /// The secret values the manifests hold placeholders for (`config::secret`).
    pub secrets: crate::config::secret::Secrets,
    pub state: Mutex<StackState>,
}

impl StackEntry {
    /// What a backend stands up for this stack.
    pub fn target(&self) -> anyhow::Result<crate::backend::StackTarget> {
        Ok(crate::backend::target_from_config(&self.name, &self.config)?
            .with_manifests(self.manifests.clone())
            .with_secrets(self.secrets.clone()))
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, StackState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Outputs of earlier steps for one stack.
#[derive(Debug, Default, Clone)]
pub struct StackState {
    pub receipt: Option<Receipt>,
    /// How clients reach the deployment (kept open while the phase runs).
    pub access: Option<Arc<Access>>,
    pub endpoint: Option<String>,
    pub model: Option<String>,
    /// Rendered workload profiles, one per run treatment.
    pub runs: Vec<run::PreparedRun>,
    /// Finished harness instances, with the native harness's reports.
    pub finished: Vec<run::FinishedRun>,
}

impl StackState {
    /// Takes a deployment on: its receipt, its access, its endpoint and model.
    pub fn adopt(&mut self, receipt: Receipt, access: Arc<Access>) {
        self.endpoint = Some(access.primary().to_string());
        self.model = Some(receipt.model.clone());
        self.access = Some(access);
        self.receipt = Some(receipt);
    }
}

/// Everything steps can see.
pub struct PhaseContext {
    pub settings: Settings,
    pub registry: Arc<Registry>,
    pub stacks: Vec<Arc<StackEntry>>,
}

impl PhaseContext {
    /// `should_skip` of steps that only make sense against a live deployment.
    pub fn skip_in_dry_run(&self) -> Option<String> {
        self.settings.dry_run.then(|| "dry run".to_string())
    }

    /// Prints an action (prefixed in dry-run mode).
    pub fn say(&self, stack: Option<&str>, msg: impl AsRef<str>) {
        let prefix = if self.settings.dry_run { "[dry-run] " } else { "" };
        match stack {
            Some(s) => say!("  {prefix}[{s}] {}", msg.as_ref()),
            None => say!("  {prefix}{}", msg.as_ref()),
        }
    }
}

/// What a step did.
#[derive(Clone, Debug, Default)]
pub struct StepOutcome {
    pub message: String,
}

impl StepOutcome {
    pub fn msg(m: impl Into<String>) -> StepOutcome {
        StepOutcome { message: m.into() }
    }
}

/// Which step a [`Step`] is: its number and name (as upstream's), and whether it runs
/// once per stack or once for the phase.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub number: u32,
    pub name: &'static str,
    pub per_stack: bool,
}

/// One numbered step of a phase.
pub trait Step: Send + Sync {
    fn info(&self) -> StepInfo;
    fn number(&self) -> u32 {
        self.info().number
    }
    fn name(&self) -> &'static str {
        self.info().name
    }
    fn per_stack(&self) -> bool {
        self.info().per_stack
    }
    /// `Some(reason)` to skip.
    fn should_skip(&self, _ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        None
    }
    /// Does the work. `stack` is set exactly for per-stack steps.
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>>;
}
