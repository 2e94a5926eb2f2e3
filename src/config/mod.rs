//! Configuration, with llm-d-benchmark's formats and semantics.
//!
//! A plan starts from a specification ([`spec`]) naming a defaults file, a scenario and
//! a template directory. Each stack of the scenario is merged as
//! `defaults ⊕ shared ⊕ stack ⊕ overrides` ([`merge`], [`expand`], [`overrides`]) and run
//! through upstream's resolver chain ([`stack`]): namespace, model, deploy method,
//! Hugging Face token (a placeholder in every plan: [`secret`]), `model_id_label` ([`identity`]), router normalisation ([`router`]) and
//! `${dotted.path}` substitution ([`substitute`]).
//!
//! Config stays a dynamic tree ([`crate::yaml::Node`]) because templates read arbitrary
//! keys; the handful of settings llmd itself acts on are read into typed structs by the
//! phases that need them.

pub mod expand;
pub mod identity;
pub mod keys;
pub mod merge;
pub mod offline;
pub mod overrides;
pub mod router;
pub mod scenario_schema;
pub mod secret;
pub mod sections;
pub mod spec;
pub mod stack;
pub mod substitute;
pub mod tree;

use std::path::{Path, PathBuf};

use crate::error::{InputError, Warnings};
use crate::yaml::{Node, load_file};

pub use overrides::Overrides;
pub use spec::Spec;
pub use stack::{StackConfig, StackInputs};

/// Everything from the command line (and environment) that shapes a plan.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// The config tree's root ([`tree`]).
    pub base_dir: PathBuf,
    /// On-disk roots searched for workload profiles before the built-in tree ([`tree`]).
    pub profile_roots: Vec<PathBuf>,
    pub spec: String,
    /// `-p/--namespace deploy[,harness[,wva]]`.
    pub namespace: Option<String>,
    /// `-m/--models`.
    pub models: Option<String>,
    /// `-t/--methods`.
    pub methods: Option<String>,
    pub gateway_class: Option<String>,
    /// `--monitoring` / `--no-monitoring`; `None` keeps the scenario's values.
    pub monitoring: Option<bool>,
    /// `--stack a,b`.
    pub stack_filter: Vec<String>,
    /// `--set` and `--cluster-config`.
    pub overrides: Overrides,
    /// Setup-treatment values (experiments); they win over `--set`.
    pub setup_overrides: Option<Node>,
    /// A Hugging Face token taken from the environment (HF_TOKEN, LLMDBENCH_HF_TOKEN,
    /// HUGGING_FACE_HUB_TOKEN), read once by the CLI so that planning stays pure.
    pub hf_token: Option<String>,
    pub verbose: bool,
}

impl PlanOptions {
    /// Reads the Hugging Face token the way upstream does.
    pub fn hf_token_from_env() -> Option<String> {
        ["HF_TOKEN", "LLMDBENCH_HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"].iter().filter_map(|k| std::env::var(k).ok()).find(|v| !v.is_empty())
    }
}

/// A loaded scenario file.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub file: PathBuf,
    /// File stem (`scenarioName` in templates).
    pub name: String,
    pub shared: Node,
    /// `(stack name, stack block)` in file order.
    pub stacks: Vec<(String, Node)>,
}

/// Loads and checks a scenario file.
pub fn load_scenario(path: &Path) -> Result<Scenario, InputError> {
    parse_scenario(path, load_file(path)?)
}

/// Checks a parsed scenario document.
pub fn parse_scenario(path: &Path, doc: Node) -> Result<Scenario, InputError> {
    let display = crate::util::embedded::label(path).to_string();
    let Some(list) = doc.get("scenario") else {
        return Err(InputError::at(&doc.origin, format!("{display}: a scenario file needs a 'scenario' key with a list of stacks"))
            .help("scenario:\n    - name: my-stack\n      model: {name: Qwen/Qwen3-0.6B}"));
    };
    let Some(items) = list.as_seq() else {
        return Err(InputError::at(&list.origin, format!("'scenario' must be a list of stacks, not a {}", list.type_name())));
    };
    let mut stacks = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(map) = item.as_map() else {
            return Err(InputError::at(&item.origin, format!("stack {} must be a mapping, not a {}", i + 1, item.type_name())));
        };
        let name = match map.get("name") {
            Some(n) => match n.as_str() {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => return Err(InputError::at(&n.origin, format!("stack {} has an invalid 'name'", i + 1))),
            },
            None => return Err(InputError::at(&item.origin, format!("stack {} is missing its 'name'", i + 1))),
        };
        if let Some(common) = map.get("common").filter(|c| !c.is_null() && c.as_map().is_none()) {
            return Err(InputError::at(&common.origin, format!("stack '{name}': 'common' must be a mapping")));
        }
        if stacks.iter().any(|(n, _)| *n == name) {
            return Err(InputError::at(&item.origin, format!("duplicate stack name '{name}'")));
        }
        stacks.push((name, item.clone()));
    }
    if stacks.is_empty() {
        return Err(InputError::at(&list.origin, "the scenario has no stacks"));
    }
    let shared = match doc.get("shared") {
        None => Node::map(Default::default()),
        Some(s) if s.is_null() => Node::map(Default::default()),
        Some(s) if s.as_map().is_some() => s.clone(),
        Some(s) => return Err(InputError::at(&s.origin, format!("'shared' must be a mapping, not a {}", s.type_name()))),
    };
    if let Some(common) = shared.get("common").filter(|c| !c.is_null() && c.as_map().is_none()) {
        return Err(InputError::at(&common.origin, "'shared.common' must be a mapping"));
    }
    let name = path.file_stem().map(|s| s.to_string_lossy().trim_end_matches(".yaml").to_string()).unwrap_or_default();
    Ok(Scenario { file: path.to_path_buf(), name, shared, stacks })
}

/// The resolved inputs of a plan: spec, defaults, scenario and per-stack configs.
#[derive(Clone, Debug)]
pub struct ResolvedPlan {
    pub spec: Spec,
    pub defaults: Node,
    pub scenario: Scenario,
    pub stacks: Vec<StackConfig>,
    pub warnings: Warnings,
}

/// Loads everything a plan needs and resolves every stack's config.
pub fn resolve_plan(opts: &PlanOptions) -> Result<ResolvedPlan, InputError> {
    let spec = spec::load_spec(&opts.base_dir, &opts.spec)?;
    let defaults = load_file(&spec.values_file)?;
    if defaults.as_map().is_none() {
        return Err(InputError::at(&defaults.origin, "the defaults file must be a mapping"));
    }
    let scenario = load_scenario(&spec.scenario_file)?;
    resolve_loaded(opts, spec, defaults, scenario)
}

/// [`resolve_plan`] for already loaded inputs.
pub fn resolve_loaded(opts: &PlanOptions, spec: Spec, defaults: Node, scenario: Scenario) -> Result<ResolvedPlan, InputError> {
    let names: Vec<String> = scenario.stacks.iter().map(|(n, _)| n.clone()).collect();
    for wanted in &opts.stack_filter {
        if !names.contains(wanted) {
            let mut err = InputError::new(format!(
                "--stack '{wanted}' matches no stack in {} (known stacks: {})",
                scenario.file.display(),
                names.join(", ")
            ));
            if let Some(s) = crate::error::did_you_mean(wanted, names.iter().map(String::as_str)) {
                err = err.help(format!("did you mean '{s}'?"));
            }
            return Err(err);
        }
    }
    opts.overrides.validate_selectors(&names)?;
    let mut warnings = Warnings::default();
    keys::warn_unknown_keys(&defaults, &scenario, &mut warnings);
    let stacks = stack::resolve_stacks(opts, &defaults, &scenario, &overlays_dir(&spec))?;
    Ok(ResolvedPlan { spec, defaults, scenario, stacks, warnings })
}

/// Where a spec's accelerator profile overlays live.
fn overlays_dir(spec: &Spec) -> std::path::PathBuf {
    spec.values_file.parent().map(|p| p.join("overlays")).unwrap_or_default()
}

impl ResolvedPlan {
    /// The resolved stacks, the plan's warnings, and what users wrote for each stack
    /// ([`StackInputs`], merged again only if a change must be explained).
    pub fn into_stacks(self, opts: std::sync::Arc<PlanOptions>) -> (Vec<StackConfig>, Warnings, StackInputs) {
        let secrets = self.stacks.iter().map(|s| s.secrets.clone()).collect();
        let overlays = overlays_dir(&self.spec);
        (self.stacks, self.warnings, StackInputs::new(opts, self.defaults, self.scenario, overlays, secrets))
    }
}
