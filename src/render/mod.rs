//! Rendering plans: a resolved plan's stacks through their template set (the Jinja2
//! dialect itself lives in [`crate::jinja`]).
//!
//! * [`plan`] — loading a template directory and rendering one stack's manifests.
//! * [`write`] — publishing a rendered plan atomically.

pub mod plan;
pub mod write;

use crate::config::{ResolvedPlan, StackConfig};
use crate::error::InputError;

pub use plan::{RenderedStack, TemplateSet};

/// One stack's resolved config and its rendered manifests.
#[derive(Clone, Debug)]
pub struct StackPlan {
    pub name: String,
    pub resolved: StackConfig,
    pub rendered: RenderedStack,
}

/// A whole rendered plan.
#[derive(Clone, Debug)]
pub struct RenderedPlan {
    /// File stem of the specification (`sim` for `examples/sim`).
    pub spec_stem: String,
    pub spec_rendered: String,
    pub stacks: Vec<StackPlan>,
}

/// Renders every stack of a resolved plan, stacks in parallel.
pub fn render_plan(resolved: &ResolvedPlan, templates: &TemplateSet) -> Result<RenderedPlan, InputError> {
    let stacks = &resolved.stacks;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(stacks.len()).max(1);
    let mut results: Vec<Option<Result<RenderedStack, InputError>>> = (0..stacks.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let chunk = stacks.len().div_ceil(workers);
        for (stack_chunk, out_chunk) in stacks.chunks(chunk.max(1)).zip(results.chunks_mut(chunk.max(1))) {
            scope.spawn(move || {
                for (stack, out) in stack_chunk.iter().zip(out_chunk.iter_mut()) {
                    *out = Some(templates.render_stack(&stack.config).map_err(|mut e| {
                        e.message = format!("[{}] {}", stack.name, e.message);
                        e
                    }));
                }
            });
        }
    });
    let mut out = Vec::with_capacity(stacks.len());
    for (stack, result) in stacks.iter().zip(results) {
        let rendered = result.expect("every stack rendered")?;
        out.push(StackPlan { name: stack.name.clone(), resolved: stack.clone(), rendered });
    }
    let spec_stem = resolved.spec.name.rsplit('/').next().unwrap_or(&resolved.spec.name).to_string();
    Ok(RenderedPlan { spec_stem, spec_rendered: resolved.spec.rendered.clone(), stacks: out })
}
