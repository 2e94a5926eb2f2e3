//! Standup: make every stack serve.
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | ensure_infra | global | the backend's tools exist (the simulator binary, a configured server command) |
//! | 04 | prepare_workspace | global | `setup/logs`, `receipts`, `results` in the workspace |
//! | 06 | deploy_stack | per stack | start the stack's replicas, wait until they serve, write the receipt; an identical stack already running is left alone |

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::{Phase, PhaseContext, StackEntry, Step, StepOutcome};
use crate::backend::{BoxFuture, Liveness, Receipt, ServerSpec, target_from_config};

pub fn steps() -> Vec<Arc<dyn Step>> {
    vec![Arc::new(EnsureInfra), Arc::new(PrepareWorkspace), Arc::new(DeployStack)]
}

fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

struct EnsureInfra;

impl Step for EnsureInfra {
    fn number(&self) -> u32 {
        0
    }
    fn name(&self) -> &'static str {
        "ensure_infra"
    }
    fn description(&self) -> &'static str {
        "check the backend's tools are available"
    }
    fn phase(&self) -> Phase {
        Phase::Standup
    }
    fn per_stack(&self) -> bool {
        false
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, _stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let mut missing = Vec::new();
            for stack in &ctx.stacks {
                let target = target_from_config(&stack.name, &stack.config, &stack.plan_hash)?;
                if let ServerSpec::Command { argv } = &target.server
                    && !on_path(&argv[0])
                {
                    missing.push(format!("stack '{}': `{}` is not installed (local.command)", stack.name, argv[0]));
                }
            }
            if !missing.is_empty() {
                bail!("{}", missing.join("\n"));
            }
            Ok(StepOutcome::msg(format!("backend '{}' ready for {} stack(s)", ctx.backend.name(), ctx.stacks.len())))
        })
    }
}

struct PrepareWorkspace;

impl Step for PrepareWorkspace {
    fn number(&self) -> u32 {
        4
    }
    fn name(&self) -> &'static str {
        "prepare_workspace"
    }
    fn description(&self) -> &'static str {
        "create the workspace's log, receipt and result directories"
    }
    fn phase(&self) -> Phase {
        Phase::Standup
    }
    fn per_stack(&self) -> bool {
        false
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

struct DeployStack;

impl Step for DeployStack {
    fn number(&self) -> u32 {
        6
    }
    fn name(&self) -> &'static str {
        "deploy_stack"
    }
    fn description(&self) -> &'static str {
        "start the stack's model servers and wait until they serve"
    }
    fn phase(&self) -> Phase {
        Phase::Standup
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let target = target_from_config(&stack.name, &stack.config, &stack.plan_hash)?;
            let ws = &ctx.settings.workspace;
            if let Some(old) = Receipt::load(ws, &stack.name)? {
                match ctx.backend.check(&old, Some(&stack.plan_hash)).await {
                    Liveness::Live => {
                        let endpoint = old.endpoint();
                        let mut state = stack.state.lock().unwrap_or_else(|e| e.into_inner());
                        state.endpoint = endpoint.clone();
                        state.model = Some(old.model.clone());
                        state.receipt = Some(old);
                        return Ok(StepOutcome::msg(format!(
                            "already running from the same plan at {} (left as is)",
                            endpoint.unwrap_or_default()
                        )));
                    }
                    liveness => {
                        let why = match liveness {
                            Liveness::Gone(w) | Liveness::Drifted(w) => w,
                            Liveness::Live => unreachable!(),
                        };
                        if ctx.settings.dry_run {
                            ctx.say(Some(&stack.name), format!("would replace the previous deployment ({why})"));
                        } else {
                            ctx.say(Some(&stack.name), format!("replacing the previous deployment: {why}"));
                            ctx.backend.teardown(&old).await?;
                            Receipt::remove(ws, &stack.name)?;
                        }
                    }
                }
            }
            let what = match &target.server {
                ServerSpec::Sim { flags } => format!("llmd sim --model {} {}", target.model, flags.join(" ")),
                ServerSpec::Command { argv } => argv.join(" "),
            };
            if ctx.settings.dry_run {
                ctx.say(Some(&stack.name), format!("would start {} replica(s): {what}", target.replicas));
                return Ok(StepOutcome::default());
            }
            ctx.say(Some(&stack.name), format!("starting {} replica(s) of {}", target.replicas, target.model));
            let receipt = ctx.backend.standup(&target, &ws.join("setup/logs")).await?;
            receipt.save(ws)?;
            let endpoint = receipt.endpoint();
            let pids: Vec<String> = receipt.replicas.iter().map(|r| format!("pid {} port {}", r.pid, r.port)).collect();
            let mut state = stack.state.lock().unwrap_or_else(|e| e.into_inner());
            state.endpoint = endpoint.clone();
            state.model = Some(receipt.model.clone());
            state.receipt = Some(receipt);
            Ok(StepOutcome::msg(format!("serving at {} ({})", endpoint.unwrap_or_default(), pids.join(", "))))
        })
    }
}
