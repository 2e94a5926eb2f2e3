//! Runs a phase's steps: pre-global, per-stack (parallel across stacks), post-global.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{PhaseContext, Step};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    Ok,
    Skipped(String),
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct StepResult {
    pub number: u32,
    pub name: &'static str,
    pub stack: Option<String>,
    pub status: StepStatus,
    pub message: String,
    pub duration: Duration,
}

/// Results of one phase.
#[derive(Clone, Debug, Default)]
pub struct ExecutionReport {
    pub results: Vec<StepResult>,
    /// A global step failed before the stacks ran.
    pub aborted: bool,
}

impl ExecutionReport {
    pub fn failed(&self) -> Vec<&StepResult> {
        self.results.iter().filter(|r| matches!(r.status, StepStatus::Failed(_))).collect()
    }

    pub fn ok(&self) -> bool {
        self.failed().is_empty()
    }

    /// One line per failure.
    pub fn summary(&self) -> String {
        self.failed()
            .iter()
            .map(|r| {
                let StepStatus::Failed(e) = &r.status else { unreachable!() };
                match &r.stack {
                    Some(s) => format!("step {:02} {} [{s}]: {e}", r.number, r.name),
                    None => format!("step {:02} {}: {e}", r.number, r.name),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .map_or("the step panicked".into(), |m| format!("the step panicked: {m}")),
        Err(e) => format!("the step was cancelled: {e}"),
    }
}

async fn run_step(ctx: Arc<PhaseContext>, step: Arc<dyn Step>, stack: Option<usize>) -> StepResult {
    let stack_name = stack.map(|i| ctx.stacks[i].name.clone());
    let started = Instant::now();
    let entry = stack.map(|i| ctx.stacks[i].clone());
    if let Some(reason) = step.should_skip(&ctx, entry.as_deref()) {
        return StepResult {
            number: step.number(),
            name: step.name(),
            stack: stack_name,
            status: StepStatus::Skipped(reason),
            message: String::new(),
            duration: started.elapsed(),
        };
    }
    let (task_ctx, task_step) = (ctx.clone(), step.clone());
    // A separate task, so a panicking step becomes a failed result.
    let joined = tokio::spawn(async move {
        let entry = stack.map(|i| task_ctx.stacks[i].clone());
        task_step.execute(&task_ctx, entry.as_deref()).await
    })
    .await;
    let (status, message) = match joined {
        Ok(Ok(outcome)) => (StepStatus::Ok, outcome.message),
        Ok(Err(e)) => (StepStatus::Failed(format!("{e:#}")), String::new()),
        Err(e) => (StepStatus::Failed(panic_message(e)), String::new()),
    };
    StepResult { number: step.number(), name: step.name(), stack: stack_name, status, message, duration: started.elapsed() }
}

fn log_result(ctx: &PhaseContext, r: &StepResult) {
    let tag = r.stack.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
    match &r.status {
        StepStatus::Ok => {
            if ctx.settings.verbose || !r.message.is_empty() {
                say!(
                    "  step {:02} {}{tag}: {} ({:.1?})",
                    r.number,
                    r.name,
                    if r.message.is_empty() { "done" } else { &r.message },
                    r.duration
                );
            }
        }
        StepStatus::Skipped(why) => {
            if ctx.settings.verbose {
                say!("  step {:02} {}{tag}: skipped ({why})", r.number, r.name);
            }
        }
        StepStatus::Failed(e) => say!("  step {:02} {}{tag}: FAILED: {e}", r.number, r.name),
    }
}

/// Runs `steps` (already for one phase) under `ctx`.
pub async fn execute(ctx: Arc<PhaseContext>, mut steps: Vec<Arc<dyn Step>>) -> ExecutionReport {
    steps.retain(|s| ctx.settings.steps.contains(s.number()));
    steps.sort_by_key(|s| s.number());
    let first_per_stack = steps.iter().filter(|s| s.per_stack()).map(|s| s.number()).min();
    let (pre, rest): (Vec<_>, Vec<_>) = steps.into_iter().partition(|s| !s.per_stack() && first_per_stack.is_none_or(|n| s.number() <= n));
    let (per_stack, post): (Vec<_>, Vec<_>) = rest.into_iter().partition(|s| s.per_stack());
    let mut report = ExecutionReport::default();

    for step in pre {
        let r = run_step(ctx.clone(), step, None).await;
        log_result(&ctx, &r);
        let failed = matches!(r.status, StepStatus::Failed(_));
        report.results.push(r);
        if failed {
            report.aborted = true;
            return report;
        }
    }

    if !per_stack.is_empty() {
        let limiter = Arc::new(Semaphore::new(ctx.settings.parallel.max(1)));
        let selected: Vec<usize> = (0..ctx.stacks.len())
            .filter(|&i| ctx.settings.stack_filter.is_empty() || ctx.settings.stack_filter.contains(&ctx.stacks[i].name))
            .collect();
        let mut tasks = Vec::new();
        for i in selected {
            let (ctx, steps, limiter) = (ctx.clone(), per_stack.clone(), limiter.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = limiter.acquire_owned().await.expect("semaphore open");
                let mut results = Vec::new();
                for step in steps {
                    let r = run_step(ctx.clone(), step, Some(i)).await;
                    log_result(&ctx, &r);
                    let failed = matches!(r.status, StepStatus::Failed(_));
                    results.push(r);
                    if failed {
                        break;
                    }
                }
                results
            }));
        }
        for t in tasks {
            match t.await {
                Ok(rs) => report.results.extend(rs),
                Err(e) => report.results.push(StepResult {
                    number: 0,
                    name: "stack",
                    stack: None,
                    status: StepStatus::Failed(panic_message(e)),
                    message: String::new(),
                    duration: Duration::ZERO,
                }),
            }
        }
    }

    for step in post {
        let r = run_step(ctx.clone(), step, None).await;
        log_result(&ctx, &r);
        report.results.push(r);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BoxFuture;
    use crate::phases::{Settings, StackEntry, StepInfo, StepOutcome};
    use std::sync::Mutex;

    struct TestStep {
        number: u32,
        per_stack: bool,
        behaviour: &'static str,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Step for TestStep {
        fn info(&self) -> StepInfo {
            StepInfo { number: self.number, name: "test", per_stack: self.per_stack }
        }
        fn execute<'a>(&'a self, _ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, anyhow::Result<StepOutcome>> {
            Box::pin(async move {
                let who = stack.map_or("global".to_string(), |s| s.name.clone());
                self.log.lock().unwrap().push(format!("{}:{who}", self.number));
                match (self.behaviour, who.as_str()) {
                    ("fail-b", "b") | ("fail", _) => anyhow::bail!("boom"),
                    ("panic", _) => panic!("kaboom"),
                    _ => Ok(StepOutcome::default()),
                }
            })
        }
    }

    fn ctx(steps_filter: crate::util::steps::StepSelection) -> Arc<PhaseContext> {
        let stack = |n: &str| {
            Arc::new(StackEntry {
                name: n.into(),
                config: crate::yaml::Node::null(),
                plan_digest: String::new(),
                manifests: Vec::new(),
                secrets: Default::default(),
                state: Mutex::new(Default::default()),
            })
        };
        Arc::new(PhaseContext {
            settings: Settings {
                workspace: "/tmp".into(),
                profile_roots: vec![".".into()],
                dry_run: false,
                server_dry_run: false,
                verbose: false,
                parallel: 2,
                steps: steps_filter,
                stack_filter: vec![],
                run: None,
            },
            registry: Arc::new(crate::backend::Registry::new(Default::default())),
            stacks: vec![stack("a"), stack("b")],
        })
    }

    fn step(number: u32, per_stack: bool, behaviour: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Arc<dyn Step> {
        Arc::new(TestStep { number, per_stack, behaviour, log: log.clone() })
    }

    #[tokio::test]
    async fn partitions_and_isolates_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let steps = vec![step(9, false, "ok", &log), step(0, false, "ok", &log), step(3, true, "fail-b", &log), step(4, true, "ok", &log)];
        let report = execute(ctx(Default::default()), steps).await;
        let log = log.lock().unwrap().clone();
        assert_eq!(log[0], "0:global");
        assert!(log.contains(&"4:a".to_string()));
        assert!(!log.contains(&"4:b".to_string()), "a failed stack stops");
        assert_eq!(log.last().unwrap(), "9:global", "post-global runs even after a stack failed");
        assert_eq!(report.failed().len(), 1);
        assert!(report.summary().contains("[b]: boom"));
    }

    #[tokio::test]
    async fn global_failures_abort_and_panics_are_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let report = execute(ctx(Default::default()), vec![step(0, false, "fail", &log), step(3, true, "ok", &log)]).await;
        assert!(report.aborted);
        assert_eq!(log.lock().unwrap().len(), 1);
        let report = execute(ctx(Default::default()), vec![step(3, true, "panic", &log)]).await;
        assert_eq!(report.failed().len(), 2);
        assert!(report.summary().contains("panicked: kaboom"), "{}", report.summary());
    }

    #[tokio::test]
    async fn step_filter() {
        let log = Arc::new(Mutex::new(Vec::new()));
        execute(ctx("3".parse().unwrap()), vec![step(0, false, "ok", &log), step(3, true, "ok", &log)]).await;
        assert!(log.lock().unwrap().iter().all(|l| l.starts_with("3:")));
    }
}
