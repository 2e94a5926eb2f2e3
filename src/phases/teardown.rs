//! Teardown: remove exactly what standup created, as its receipts list it.
//!
//! The executor is [`teardown`]: the backend comes from the receipt (not from the
//! command line), and the receipt is deleted only after the backend says everything it
//! lists is gone, so a failed teardown can be retried.
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | teardown_preflight | global | list the receipts that will be acted on |
//! | 06 | teardown_stack | per stack | remove what the receipt lists (local: SIGTERM, then SIGKILL, each pid checked gone), delete the receipt |
//!
//! Stacks come from the receipts in the workspace, not from re-rendering the plan, so a
//! changed specification or a different `-m` cannot make teardown miss what is running.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{PhaseContext, StackEntry, Step, StepInfo, StepOutcome};
use crate::backend::{BoxFuture, Receipt, Registry};

/// Removes what `receipt` lists with the backend that created it, then the receipt.
///
/// What the stack shares with others (kube: the shared gateway release) goes only when
/// no other receipt in the workspace uses it; that decision and the receipt's removal
/// happen under one lock, so of two stacks torn down at once exactly the last one
/// removes it.
pub async fn teardown(registry: &Registry, workspace: &Path, receipt: &Receipt) -> Result<String> {
    static SHARED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let backend = registry.get(&receipt.backend)?;
    let mut what = backend.summary(receipt);
    backend.teardown(receipt).await?;
    let _held = SHARED.lock().await;
    let others: Vec<Receipt> = Receipt::load_all(workspace)?.into_iter().filter(|r| r.stack != receipt.stack).collect();
    let released = backend.release_shared(receipt, &others).await?;
    if !released.is_empty() {
        what.push_str(&format!(" and the last user's shared {}", released.join(", ")));
    }
    Receipt::remove(workspace, &receipt.stack)?;
    Ok(what)
}

/// Workspaces holding receipts: the workspace itself and each `setup-treatment-*`
/// directory that `experiment` and `build` create in it.
pub fn receipt_workspaces(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut setups: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("setup-treatment-") && e.path().join("receipts").is_dir())
        .map(|e| e.path())
        .collect();
    setups.sort();
    out.extend(setups);
    out
}

/// Tears down every stack `workspace` has a receipt for, one after the other; each
/// stack's name with what was removed, or why not.
pub async fn teardown_all(registry: &Registry, workspace: &Path) -> Vec<(String, Result<String>)> {
    let mut out = Vec::new();
    for r in Receipt::load_all(workspace).unwrap_or_default() {
        let result = teardown(registry, workspace, &r).await;
        out.push((r.stack, result));
    }
    out
}

pub fn steps() -> Vec<Arc<dyn Step>> {
    vec![Arc::new(Preflight), Arc::new(TeardownStack)]
}

/// Step: list what will be removed.
struct Preflight;

impl Step for Preflight {
    fn info(&self) -> StepInfo {
        StepInfo { number: 0, name: "teardown_preflight", per_stack: false }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, _stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            if ctx.stacks.is_empty() {
                return Ok(StepOutcome::msg(format!(
                    "nothing to tear down: no receipts in {}",
                    ctx.settings.workspace.join("receipts").display()
                )));
            }
            let names: Vec<&str> = ctx.stacks.iter().map(|s| s.name.as_str()).collect();
            Ok(StepOutcome::msg(format!("{} stack(s): {}", names.len(), names.join(", "))))
        })
    }
}

/// Step: remove what the stack's receipt lists and delete the receipt.
struct TeardownStack;

impl Step for TeardownStack {
    fn info(&self) -> StepInfo {
        StepInfo { number: 6, name: "teardown_stack", per_stack: true }
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let ws = &ctx.settings.workspace;
            let receipt = Receipt::load(ws, &stack.name)?.with_context(|| format!("no receipt for stack '{}'", stack.name))?;
            if ctx.settings.dry_run {
                let what = ctx.registry.get(&receipt.backend)?.summary(&receipt);
                ctx.say(Some(&stack.name), format!("would stop {what} and delete {}", Receipt::path(ws, &stack.name).display()));
                return Ok(StepOutcome::default());
            }
            let what = teardown(&ctx.registry, ws, &receipt).await?;
            Ok(StepOutcome::msg(format!("stopped {what}")))
        })
    }
}
