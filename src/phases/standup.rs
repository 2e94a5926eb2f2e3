//! Standup: make every stack serve.
//!
//! Executors (used by `llmd standup`, `llmd experiment` and `llmd build` alike):
//! * [`deployment_key`] — the key of what a backend starts for a target: the build's
//!   standup node key, recorded in receipts.
//! * [`inspect`] — what the workspace's receipt says is deployed, judged live or not
//!   against a wanted plan digest or deployment key.
//! * [`deploy`] — replace any previous deployment of the stack, stand it up, write the
//!   receipt.
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | ensure_infra | global | the backend's tools exist (a configured server command) |
//! | 04 | prepare_workspace | global | `setup/logs`, `receipts`, `results` in the workspace |
//! | 06 | deploy_stack | per stack | start the stack, wait until it serves, write the receipt; an identical stack already running is left alone |

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::{PhaseContext, StackEntry, Step, StepInfo, StepOutcome};
use crate::backend::{Backend, BoxFuture, Liveness, Receipt, Registry, StackTarget, StandupRequest};

/// The key of a deployment (over [`Backend::deployment_inputs`]); the build's standup
/// node key is this same key.
pub fn deployment_key(target: &StackTarget, backend: &dyn Backend) -> String {
    crate::util::digest::node_key("standup", &backend.deployment_inputs(target))
}

/// What a deployment must match to be reused.
#[derive(Clone, Copy, Debug)]
pub enum Want<'a> {
    /// The same rendered plan (`llmd standup`).
    Plan(&'a str),
    /// The same deployment key (`llmd build`: manifest-only edits keep a deployment).
    Deployment(&'a str),
}

/// What is deployed for a stack.
#[derive(Debug)]
pub enum Existing {
    None,
    Live(Receipt),
    /// Something of it is gone or does not serve.
    Gone(Receipt, String),
    /// It serves, but from another plan or deployment key.
    Drifted(Receipt, String),
}

/// Reads the stack's receipt in `workspace` and judges it against `want`.
pub async fn inspect(registry: &Registry, workspace: &Path, stack: &str, want: Want<'_>) -> Result<Existing> {
    let Some(receipt) = Receipt::load(workspace, stack)? else { return Ok(Existing::None) };
    let backend = registry.get(&receipt.backend)?;
    match backend.check(&receipt).await {
        Liveness::Live => {}
        Liveness::Gone(why) => return Ok(Existing::Gone(receipt, why)),
        Liveness::Drifted(why) => return Ok(Existing::Drifted(receipt, why)),
    }
    let (what, running, wanted) = match want {
        Want::Plan(d) => ("plan", receipt.plan_digest.clone(), d),
        Want::Deployment(k) => ("deployment", receipt.deployment.clone(), k),
    };
    if running != wanted {
        let why = format!("running {what} {} differs from the current {what} {}", crate::util::short(&running), crate::util::short(wanted));
        return Ok(Existing::Drifted(receipt, why));
    }
    Ok(Existing::Live(receipt))
}

/// Stands `target` up on `backend` in `workspace` and writes the new receipt. Whatever
/// the workspace's receipt for the stack lists is torn down first, or — when the
/// backend updates in place — handed to the standup, which replaces it.
pub async fn deploy(
    registry: &Registry,
    backend: &dyn Backend,
    workspace: &Path,
    target: &StackTarget,
    plan_digest: &str,
) -> Result<Receipt> {
    let mut previous = Receipt::load(workspace, &target.name)?;
    if let Some(old) = &previous
        && !(backend.updates_in_place() && old.backend == backend.name())
    {
        super::teardown::teardown(registry, workspace, old).await?;
        previous = None;
    }
    let deployment = deployment_key(target, backend);
    let log_dir = workspace.join("setup/logs");
    let request =
        StandupRequest { target, plan_digest, deployment: &deployment, log_dir: &log_dir, workspace, previous: previous.as_ref() };
    match backend.standup(request).await {
        Ok(receipt) => {
            receipt.save(workspace)?;
            crate::util::test_hold("standup:receipt-saved");
            crate::backend::pending::settle(workspace, &target.name);
            Ok(receipt)
        }
        Err(e) => {
            // The backend stopped what it started before returning the error.
            crate::backend::pending::settle(workspace, &target.name);
            // An in-place update that failed leaves the previous deployment half
            // changed: remove it too, so no receipt claims something that is not there.
            if let Some(old) = &previous
                && let Err(te) = super::teardown::teardown(registry, workspace, old).await
            {
                return Err(e.context(format!("and the previous deployment could not be removed: {te:#}")));
            }
            Err(e)
        }
    }
}

pub fn steps() -> Vec<Arc<dyn Step>> {
    vec![Arc::new(EnsureInfra), Arc::new(PrepareWorkspace), Arc::new(DeployStack)]
}

/// Step: check the backend's tools are available.
struct EnsureInfra;

impl Step for EnsureInfra {
    fn info(&self) -> StepInfo {
        StepInfo { number: 0, name: "ensure_infra", per_stack: false }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, _stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let mut missing = Vec::new();
            let mut names = Vec::new();
            for stack in &ctx.stacks {
                let backend = ctx.registry.for_config(&stack.config)?;
                if let Err(e) = backend.preflight(&stack.target()?) {
                    missing.push(format!("{e:#}"));
                }
                if !names.contains(&backend.name()) {
                    names.push(backend.name());
                }
            }
            if !missing.is_empty() {
                bail!("{}", missing.join("\n"));
            }
            Ok(StepOutcome::msg(format!("backend '{}' ready for {} stack(s)", names.join("', '"), ctx.stacks.len())))
        })
    }
}

/// Step: create the workspace's log, receipt and result directories.
struct PrepareWorkspace;

impl Step for PrepareWorkspace {
    fn info(&self) -> StepInfo {
        StepInfo { number: 4, name: "prepare_workspace", per_stack: false }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, _stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let ws = &ctx.settings.workspace;
            for dir in ["setup/logs", "receipts", "results"] {
                if ctx.settings.dry_run {
                    ctx.say(None, format!("would create {}", ws.join(dir).display()));
                } else {
                    std::fs::create_dir_all(ws.join(dir)).with_context(|| format!("cannot create {}", ws.join(dir).display()))?;
                }
            }
            Ok(StepOutcome::default())
        })
    }
}

/// Step: start the stack's model servers and wait until they serve.
struct DeployStack;

impl Step for DeployStack {
    fn info(&self) -> StepInfo {
        StepInfo { number: 6, name: "deploy_stack", per_stack: true }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let target = stack.target()?;
            let backend = ctx.registry.for_config(&stack.config)?;
            let ws = &ctx.settings.workspace;
            match inspect(&ctx.registry, ws, &stack.name, Want::Plan(&stack.plan_digest)).await? {
                Existing::Live(old) => {
                    let access = Arc::new(ctx.registry.get(&old.backend)?.connect(&old).await?);
                    let url = access.primary().to_string();
                    stack.state().adopt(old, access);
                    return Ok(StepOutcome::msg(format!("already running from the same plan at {url} (left as is)")));
                }
                Existing::Gone(_, why) | Existing::Drifted(_, why) => {
                    let verb = if ctx.settings.dry_run { "would replace" } else { "replacing" };
                    ctx.say(Some(&stack.name), format!("{verb} the previous deployment: {why}"));
                }
                Existing::None => {}
            }
            if ctx.settings.dry_run {
                ctx.say(Some(&stack.name), format!("would start {}", backend.describe(&target)));
                if ctx.settings.server_dry_run {
                    let accepted = backend.server_dry_run(&target, &stack.plan_digest).await?;
                    for line in &accepted {
                        ctx.say(Some(&stack.name), line);
                    }
                    return Ok(StepOutcome::msg(format!("the server accepts all {} object(s) (dry run)", accepted.len())));
                }
                return Ok(StepOutcome::default());
            }
            ctx.say(Some(&stack.name), format!("starting {} replica(s) of {}", target.replicas, target.model));
            let receipt = deploy(&ctx.registry, backend.as_ref(), ws, &target, &stack.plan_digest).await?;
            let access = Arc::new(backend.connect(&receipt).await?);
            let msg = format!("serving at {} ({})", access.primary(), backend.summary(&receipt));
            stack.state().adopt(receipt, access);
            Ok(StepOutcome::msg(msg))
        })
    }
}
