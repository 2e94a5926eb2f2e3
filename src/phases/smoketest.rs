//! Smoketest: does each stack answer like the model server its plan describes?
//!
//! The executor is [`smoketest`], three checks over the deployment's [`Access`] — the
//! phase command runs them as its numbered steps, `llmd build` and `llmd experiment`
//! call [`smoketest`] itself:
//!
//! | # | step | scope | does |
//! |---|------|-------|------|
//! | 00 | health_check | per stack | every replica answers `/health` ([`health`]) |
//! | 01 | inference_test | per stack | `/v1/models` lists the model; one completion, chat as fallback ([`inference`]) |
//! | 02 | validate_config | per stack | the live servers' model name and max-model-len match the rendered config; the receipt is from the current plan ([`validate`]) |

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{PhaseContext, StackEntry, Step, StepInfo, StepOutcome};
use crate::backend::{Access, BoxFuture, Receipt};
use crate::http::{Endpoint, http_json};
use crate::yaml::Node;

const TIMEOUT: Duration = Duration::from_secs(30);

fn endpoint(url: &str) -> Result<Endpoint> {
    Endpoint::parse(url).map_err(|e| anyhow::anyhow!("{url}: {e}"))
}

/// Every replica answers `/health`.
pub async fn health(access: &Access) -> Result<String> {
    for url in &access.urls {
        let (status, _) = http_json(&endpoint(url)?, "/health", None, TIMEOUT).await?;
        if status != 200 {
            bail!("{url}/health answers HTTP {status}");
        }
    }
    Ok(format!("{} replica(s) healthy", access.urls.len()))
}

/// The model is listed and answers one completion (chat as a fallback).
pub async fn inference(access: &Access, model: &str) -> Result<String> {
    let ep = endpoint(access.primary())?;
    let (status, models) = http_json(&ep, "/v1/models", None, TIMEOUT).await?;
    let ids: Vec<&str> = models["data"].as_array().map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect()).unwrap_or_default();
    if status != 200 || !ids.contains(&model) {
        bail!("/v1/models (HTTP {status}) does not list '{model}' (it lists {ids:?})");
    }
    let (status, out) =
        http_json(&ep, "/v1/completions", Some(&json!({"model": model, "prompt": "Hello", "max_tokens": 4})), TIMEOUT).await?;
    let text = if status == 200 {
        out["choices"][0]["text"].as_str().unwrap_or_default().to_string()
    } else {
        let chat = json!({"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4});
        let (status, out) = http_json(&ep, "/v1/chat/completions", Some(&chat), TIMEOUT).await?;
        if status != 200 {
            bail!("neither /v1/completions nor /v1/chat/completions answered (HTTP {status}: {out})");
        }
        out["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
    };
    Ok(format!(
        "completion ok ({text:?}); reproduce: curl -s {}/v1/completions -H 'Content-Type: application/json' -d '{{\"model\":\"{model}\",\"prompt\":\"Hello\",\"max_tokens\":4}}'",
        ep.url()
    ))
}

/// The live servers match the rendered config, and the receipt is from `plan_digest`
/// (when one is given).
pub async fn validate(access: &Access, receipt: &Receipt, config: &Node, plan_digest: &str) -> Result<String> {
    let mut problems = Vec::new();
    let want_model = config.get_path(&["model", "name"]).map(crate::yaml::str_node);
    let want_len = config.get_path(&["model", "maxModelLen"]).and_then(|n| n.as_i64());
    if !plan_digest.is_empty() && receipt.plan_digest != plan_digest {
        problems.push(format!(
            "running plan {} is not the current plan {}",
            crate::util::short(&receipt.plan_digest),
            crate::util::short(plan_digest)
        ));
    }
    for url in &access.urls {
        let (_, models) = http_json(&endpoint(url)?, "/v1/models", None, TIMEOUT).await?;
        // A gateway in front of several stacks (or a server with adapters) lists several
        // models: the configured one must be among them.
        let served: Vec<&serde_json::Value> = models["data"].as_array().map(|d| d.iter().collect()).unwrap_or_default();
        let m =
            want_model.as_deref().and_then(|w| served.iter().find(|m| m["id"].as_str() == Some(w))).copied().unwrap_or(&models["data"][0]);
        if let Some(want) = &want_model
            && m["id"].as_str() != Some(want.as_str())
        {
            let ids: Vec<String> = served.iter().map(|m| m["id"].to_string()).collect();
            problems.push(format!(
                "{url}: serves {}, config says '{want}'",
                if ids.is_empty() { "no model".to_string() } else { ids.join(", ") }
            ));
        }
        if let (Some(want), Some(got)) = (want_len, m["max_model_len"].as_i64())
            && want != got
        {
            problems.push(format!("{url}: max_model_len {got}, config says {want}"));
        }
    }
    if problems.is_empty() { Ok("live settings match the plan".into()) } else { bail!("{}", problems.join("; ")) }
}

/// All three checks, in order; the first failure is the error.
pub async fn smoketest(access: &Access, receipt: &Receipt, config: &Node, plan_digest: &str) -> Result<Vec<String>> {
    Ok(vec![
        format!("00 health_check: {}", health(access).await?),
        format!("01 inference_test: {}", inference(access, &receipt.model).await?),
        format!("02 validate_config: {}", validate(access, receipt, config, plan_digest).await?),
    ])
}

/// The stack's receipt and access, connecting once per phase.
async fn deployment(ctx: &PhaseContext, stack: &StackEntry) -> Result<(Receipt, Arc<Access>)> {
    let (receipt, access) = {
        let st = stack.state();
        (st.receipt.clone(), st.access.clone())
    };
    let receipt = receipt.with_context(|| format!("stack '{}' is not stood up (no receipt); run `llmd standup` first", stack.name))?;
    if let Some(a) = access {
        return Ok((receipt, a));
    }
    let access = Arc::new(ctx.registry.get(&receipt.backend)?.connect(&receipt).await?);
    stack.state().adopt(receipt.clone(), access.clone());
    Ok((receipt, access))
}

pub fn steps() -> Vec<Arc<dyn Step>> {
    vec![Arc::new(HealthCheck), Arc::new(InferenceTest), Arc::new(ValidateConfig)]
}

/// Step: every replica answers /health.
struct HealthCheck;

impl Step for HealthCheck {
    fn info(&self) -> StepInfo {
        StepInfo { number: 0, name: "health_check", per_stack: true }
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        ctx.skip_in_dry_run()
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let (_, access) = deployment(ctx, stack).await?;
            Ok(StepOutcome::msg(health(&access).await?))
        })
    }
}

/// Step: the model is listed and answers a completion.
struct InferenceTest;

impl Step for InferenceTest {
    fn info(&self) -> StepInfo {
        StepInfo { number: 1, name: "inference_test", per_stack: true }
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        ctx.skip_in_dry_run()
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let (receipt, access) = deployment(ctx, stack).await?;
            Ok(StepOutcome::msg(inference(&access, &receipt.model).await?))
        })
    }
}

/// Step: the live server matches the rendered config.
struct ValidateConfig;

impl Step for ValidateConfig {
    fn info(&self) -> StepInfo {
        StepInfo { number: 2, name: "validate_config", per_stack: true }
    }
    fn should_skip(&self, ctx: &PhaseContext, _stack: Option<&StackEntry>) -> Option<String> {
        ctx.skip_in_dry_run()
    }
    fn execute<'a>(&'a self, ctx: &'a PhaseContext, stack: Option<&'a StackEntry>) -> BoxFuture<'a, Result<StepOutcome>> {
        Box::pin(async move {
            let stack = stack.expect("per-stack step");
            let (receipt, access) = deployment(ctx, stack).await?;
            Ok(StepOutcome::msg(validate(&access, &receipt, &stack.config, &stack.plan_digest).await?))
        })
    }
}
