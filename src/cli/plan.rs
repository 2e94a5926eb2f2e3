//! `llmd plan`: render every stack's config and manifests into `<workspace>/plan`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::{CommonArgs, GlobalArgs, exit, print_warnings};
use crate::config::resolve_plan;
use crate::error::Warnings;
use crate::render::{TemplateSet, render_plan, write::write_plan};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Gateway class for modelservice stacks (none, epponly, istio, agentgateway, gke, data-science-gateway-class).
    #[arg(long, value_name = "CLASS")]
    pub gateway_class: Option<String>,
    /// Render with monitoring on (PodMonitor, metrics scraping). As upstream's `plan`, rendering without this flag turns PodMonitor and router Prometheus off.
    #[arg(short = 'f', long)]
    pub monitoring: bool,
    /// Write nothing; exit 1 when the plan in the workspace differs from a fresh render
    /// (for CI: committed plans must match their sources).
    #[arg(long)]
    pub check: bool,
}

pub fn run(global: &GlobalArgs, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut warnings = Warnings::default();
    let mut opts = global.plan_options(&args.common, &mut warnings)?;
    opts.gateway_class = args.gateway_class.clone();
    opts.monitoring = Some(args.monitoring);
    let resolved = resolve_plan(&opts)?;
    warnings.extend(resolved.warnings.clone());
    for stack in &resolved.stacks {
        warnings.extend(stack.warnings.clone());
    }
    let templates = TemplateSet::load(&resolved.spec.template_dir)?;
    let mut plan = render_plan(&resolved, &templates)?;
    for stack in &mut plan.stacks {
        // What a kube standup will run for the plan's helmfiles (method modelservice).
        let Ok(target) = crate::backend::target_from_config(&stack.name, &stack.rendered.config) else { continue };
        let target = target.with_manifests(crate::backend::standup_manifests(&stack.rendered.files));
        stack.rendered.files.extend(crate::phases::plan::helm_commands_file(&target)?);
    }
    print_warnings(&warnings);
    let workspace = global.workspace_dir();
    if args.check {
        return check_plan(&workspace.join("plan"), &plan);
    }
    if global.dry_run {
        for stack in &plan.stacks {
            println!("would write {}/plan/{}/ ({} manifests + config.yaml)", workspace.display(), stack.name, stack.rendered.files.len());
            if let Some((_, text)) = stack.rendered.files.iter().find(|(n, _)| n == crate::phases::plan::HELM_COMMANDS) {
                println!("{text}");
            }
        }
        return Ok(ExitCode::from(exit::SUCCESS));
    }
    let dir = write_plan(&workspace, &plan)?;
    for stack in &plan.stacks {
        let non_empty = stack.rendered.files.iter().filter(|(_, c)| c.trim() != "").count();
        println!(
            "{:<24} {} manifests ({} non-empty) + config.yaml  model_id_label={}",
            stack.name,
            stack.rendered.files.len(),
            non_empty,
            stack.resolved.config.get("model_id_label").and_then(|n| n.as_str()).unwrap_or("-")
        );
    }
    println!("plan for {} written to {} in {:.0?}", resolved.spec.name, dir.display(), started.elapsed());
    Ok(ExitCode::from(exit::SUCCESS))
}

/// Compares `dir` (a written plan) with a fresh render: every file, both ways.
fn check_plan(dir: &std::path::Path, plan: &crate::render::RenderedPlan) -> anyhow::Result<ExitCode> {
    let mut expected: Vec<(std::path::PathBuf, String)> = vec![(dir.join(format!("{}.yaml", plan.spec_stem)), plan.spec_rendered.clone())];
    for stack in &plan.stacks {
        for (name, content) in &stack.rendered.files {
            expected.push((dir.join(&stack.name).join(name), content.clone()));
        }
        expected.push((dir.join(&stack.name).join("config.yaml"), stack.rendered.config_yaml()));
    }
    let mut problems = Vec::new();
    for (path, content) in &expected {
        match std::fs::read_to_string(path) {
            Ok(found) if found == *content => {}
            Ok(_) => problems.push(format!("differs: {}", path.display())),
            Err(_) => problems.push(format!("missing: {}", path.display())),
        }
    }
    let known: std::collections::HashSet<&std::path::Path> = expected.iter().map(|(p, _)| p.as_path()).collect();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !known.contains(p.as_path()) {
                problems.push(format!("not in a fresh render: {}", p.display()));
            }
        }
    }
    if problems.is_empty() {
        println!("{}: up to date ({} files)", dir.display(), expected.len());
        Ok(ExitCode::from(exit::SUCCESS))
    } else {
        problems.sort();
        for p in &problems {
            println!("{p}");
        }
        eprintln!("{} differs from a fresh render; run `llmd plan` to update it", dir.display());
        Ok(ExitCode::from(exit::FAILURE))
    }
}
