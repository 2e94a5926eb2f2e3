//! Teardown: remove exactly what standup created, as its receipts list it.
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | teardown_preflight | global | list the receipts that will be acted on |
//! | 06 | teardown_stack | per stack | stop every replica in the receipt (SIGTERM, then SIGKILL), check each pid is gone, delete the receipt |
//!
//! Stacks come from the receipts in the workspace, not from re-rendering the plan, so a
//! changed specification or a different `-m` cannot make teardown miss what is running.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::{Phase, PhaseContext, StackEntry, Step, StepOutcome};
use crate::backend::{BoxFuture, Receipt};

pub fn steps() -> Vec<Arc<dyn Step>> {
    vec![Arc::new(Preflight), Arc::new(TeardownStack)]
}

struct Preflight;

impl Step for Preflight {
    fn number(&self) -> u32 {
        0
    }
    fn name(&self) -> &'static str {
        "teardown_preflight"
    }
    fn description(&self) -> &'static str {
        "list what will be removed"
    }
    fn phase(&self) -> Phase {
        Phase::Teardown
    }
    fn per_stack(&self) -> bool {
        false
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

struct TeardownStack;

impl Step for TeardownStack {
    fn number(&self) -> u32 {
        6
    }
    fn name(&self) -> &'static str {
        "teardown_stack"
    }
    fn description(&self) -> &'static str {
        "stop the stack's processes and delete its receipt"
    }
    fn phase(&self) -> Phase {
        Phase::Teardown
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let ws = &ctx.settings.workspace;
            let receipt = Receipt::load(ws, &stack.name)?.with_context(|| format!("no receipt for stack '{}'", stack.name))?;
            let pids: Vec<String> = receipt.replicas.iter().map(|r| r.pid.to_string()).collect();
            if ctx.settings.dry_run {
                ctx.say(
                    Some(&stack.name),
                    format!("would stop pid(s) {} and delete {}", pids.join(", "), Receipt::path(ws, &stack.name).display()),
                );
                return Ok(StepOutcome::default());
            }
            // The backend checks every process is gone; on error the receipt is kept so
            // a second teardown can retry.
            ctx.backend.teardown(&receipt).await?;
            Receipt::remove(ws, &stack.name)?;
            Ok(StepOutcome::msg(format!("stopped pid(s) {}", pids.join(", "))))
        })
    }
}
