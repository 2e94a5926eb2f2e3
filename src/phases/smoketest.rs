//! Smoketest: does each stack answer like the model server its plan describes?
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | health_check | per stack | every replica answers `/health` |
//! | 01 | inference_test | per stack | `/v1/models` lists the model; one completion (chat as fallback) |
//! | 02 | validate_config | per stack | the live server's model name, max-model-len and port match the rendered config and the receipt |

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Phase, PhaseContext, StackEntry, Step, StepOutcome};
use crate::backend::{BoxFuture, Receipt};
use crate::http::client::Endpoint;
use crate::http::http_json;

pub fn steps() -> Vec<Arc<dyn Step>> {
    vec![Arc::new(HealthCheck), Arc::new(InferenceTest), Arc::new(ValidateConfig)]
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn receipt(stack: &StackEntry) -> Result<Receipt> {
    stack
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .receipt
        .clone()
        .with_context(|| format!("stack '{}' is not stood up (no receipt); run `llmd standup` first", stack.name))
}

fn replica_endpoint(port: u16) -> Endpoint {
    Endpoint { host: "127.0.0.1".into(), port, prefix: String::new() }
}

fn skip_in_dry_run(ctx: &PhaseContext) -> Option<String> {
    ctx.settings.dry_run.then(|| "dry run".to_string())
}

struct HealthCheck;

impl Step for HealthCheck {
    fn number(&self) -> u32 {
        0
    }
    fn name(&self) -> &'static str {
        "health_check"
    }
    fn description(&self) -> &'static str {
        "every replica answers /health"
    }
    fn phase(&self) -> Phase {
        Phase::Smoketest
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        skip_in_dry_run(ctx)
    }
    fn execute<'a>(&'a self, _ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let receipt = receipt(stack)?;
            for r in &receipt.replicas {
                let (status, _) = http_json(&replica_endpoint(r.port), "/health", None, TIMEOUT).await?;
                if status != 200 {
                    bail!("replica on port {} answers /health with HTTP {status}", r.port);
                }
            }
            Ok(StepOutcome::msg(format!("{} replica(s) healthy", receipt.replicas.len())))
        })
    }
}

struct InferenceTest;

impl Step for InferenceTest {
    fn number(&self) -> u32 {
        1
    }
    fn name(&self) -> &'static str {
        "inference_test"
    }
    fn description(&self) -> &'static str {
        "the model is listed and answers a completion"
    }
    fn phase(&self) -> Phase {
        Phase::Smoketest
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        skip_in_dry_run(ctx)
    }
    fn execute<'a>(&'a self, _ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let receipt = receipt(stack)?;
            let ep = replica_endpoint(receipt.replicas[0].port);
            let (status, models) = http_json(&ep, "/v1/models", None, TIMEOUT).await?;
            let ids: Vec<&str> = models["data"].as_array().map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect()).unwrap_or_default();
            if status != 200 || !ids.contains(&receipt.model.as_str()) {
                bail!("/v1/models (HTTP {status}) does not list '{}' (it lists {:?})", receipt.model, ids);
            }
            let (status, out) =
                http_json(&ep, "/v1/completions", Some(&json!({"model": receipt.model, "prompt": "Hello", "max_tokens": 4})), TIMEOUT)
                    .await?;
            let text = if status == 200 {
                out["choices"][0]["text"].as_str().unwrap_or_default().to_string()
            } else {
                let (status, out) = http_json(
                    &ep,
                    "/v1/chat/completions",
                    Some(&json!({"model": receipt.model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4})),
                    TIMEOUT,
                )
                .await?;
                if status != 200 {
                    bail!("neither /v1/completions nor /v1/chat/completions answered (HTTP {status}: {out})");
                }
                out["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
            };
            Ok(StepOutcome::msg(format!(
                "completion ok ({text:?}); reproduce: curl -s {}/v1/completions -H 'Content-Type: application/json' -d '{{\"model\":\"{}\",\"prompt\":\"Hello\",\"max_tokens\":4}}'",
                ep.url(),
                receipt.model
            )))
        })
    }
}

struct ValidateConfig;

impl Step for ValidateConfig {
    fn number(&self) -> u32 {
        2
    }
    fn name(&self) -> &'static str {
        "validate_config"
    }
    fn description(&self) -> &'static str {
        "the live server matches the rendered config"
    }
    fn phase(&self) -> Phase {
        Phase::Smoketest
    }
    fn per_stack(&self) -> bool {
        true
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        skip_in_dry_run(ctx)
    }
    fn execute<'a>(&'a self, _ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let receipt = receipt(stack)?;
            let mut problems = Vec::new();
            let want_model = stack.config.get_path(&["model", "name"]).map(crate::yaml::str_node);
            let want_len = stack.config.get_path(&["model", "maxModelLen"]).and_then(|n| n.as_i64());
            if receipt.plan_hash != stack.plan_hash && !stack.plan_hash.is_empty() {
                problems.push(format!(
                    "running plan {} is not the current plan {}",
                    &receipt.plan_hash[..12.min(receipt.plan_hash.len())],
                    &stack.plan_hash[..12.min(stack.plan_hash.len())]
                ));
            }
            for r in &receipt.replicas {
                let (_, models) = http_json(&replica_endpoint(r.port), "/v1/models", None, TIMEOUT).await?;
                let m = &models["data"][0];
                if let Some(want) = &want_model
                    && m["id"].as_str() != Some(want.as_str())
                {
                    problems.push(format!("port {}: serves '{}', config says '{want}'", r.port, m["id"]));
                }
                if let (Some(want), Some(got)) = (want_len, m["max_model_len"].as_i64())
                    && want != got
                {
                    problems.push(format!("port {}: max_model_len {got}, config says {want}", r.port));
                }
                if !r.command.iter().any(|a| a == &r.port.to_string()) {
                    problems.push(format!("port {} is not in the replica's command line", r.port));
                }
            }
            if problems.is_empty() { Ok(StepOutcome::msg("live settings match the plan")) } else { bail!("{}", problems.join("; ")) }
        })
    }
}
