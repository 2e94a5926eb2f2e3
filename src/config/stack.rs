//! The per-stack merge pipeline: from defaults + scenario + overrides to the config a
//! stack's templates are rendered with. The order and every rule follow upstream's
//! `RenderPlans._process_stack`; each step is a small function below, named after what
//! it resolves.
//!
//! Steps that need a live cluster or a container registry upstream (`auto` accelerator
//! detection, `auto` image tags) are not resolved here: llmd plans are pure functions of
//! their input files and flags. Such values pass through unchanged; what those resolvers
//! do without a cluster or a registry is done, in [`super::offline`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::error::{InputError, Warnings};
use crate::yaml::{Mapping, Node, Origin, Value, load_file, map_of};

use super::expand::{expand_common, hoist_modelservice};
use super::identity::{model_id_label, suffix_stack_scoped_names};
use super::merge::{merge_into, merged};
use super::overrides::{check_override_paths, is_secret_path, leaf_entries};
use super::router::{list_or_empty, normalize_router_block};
use super::secret::Secrets;
use super::{PlanOptions, Scenario};

/// Namespace used when the config says `auto`.
pub const DEFAULT_NAMESPACE: &str = "llmdbench";
const HF_TOKEN_SENTINELS: &[&str] = &["REPLACE_TOKEN", "REPLACE_TOKEN_B64", ""];
const SUPPORTED_GATEWAY_CLASSES: &[&str] = &["none", "epponly", "istio", "agentgateway", "gke", "data-science-gateway-class"];
const ACCELERATOR_RENDER_ONLY: &[&str] =
    &["runtimePreamble", "dtypeArgs", "executionArgs", "blockSizeArgs", "memoryUtilizationArgs", "kvBufferDeviceJson"];

/// One stack's resolved configuration.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub name: String,
    /// 1-based position in the scenario.
    pub index: usize,
    pub config: Node,
    pub warnings: Warnings,
    /// The secret values `config` holds placeholders for (`config::secret`).
    pub secrets: Secrets,
}

/// Claims shared across the stacks of one render (nok8s host ports and container names).
#[derive(Default)]
struct HostClaims {
    ports: Vec<(i64, String, String)>,
    names: Vec<(String, String)>,
}

/// Resolves every stack of `scenario`.
pub fn resolve_stacks(
    opts: &PlanOptions,
    defaults: &Node,
    scenario: &Scenario,
    overlays_dir: &Path,
) -> Result<Vec<StackConfig>, InputError> {
    let siblings = sibling_stacks(scenario)?;
    let shared_infra = siblings.iter().position(|s| !s.get("standalone").is_some_and(Node::is_truthy)).map_or(1, |i| i + 1);
    let shared = expand_common(&scenario.shared, Some(defaults))?;
    let mut claims = HostClaims::default();
    let mut out = Vec::with_capacity(scenario.stacks.len());
    for (i, (name, stack)) in scenario.stacks.iter().enumerate() {
        let ctx = StackContext { opts, name, index: i + 1, total: scenario.stacks.len(), defaults, overlays_dir };
        let mut warnings = Warnings::default();
        let mut config = ctx.merge_layers(&shared, stack, &mut warnings)?;
        ctx.resolve(&mut config, &mut warnings)?;
        let secrets = ctx.conceal_secrets(&mut config);
        let root = config.as_map_mut().expect("config root is a mapping");
        root.insert("siblingStacks".into(), Node::bare(Value::Seq(siblings.clone())));
        root.insert("stackIndex".into(), Node::from(ctx.index as i64));
        root.insert("sharedInfraStackIndex".into(), Node::from(shared_infra as i64));
        root.insert("scenarioName".into(), Node::str(scenario.name.clone()));
        let mut errors = Vec::new();
        validate_epponly(&config, ctx.total, name, &mut errors);
        validate_direct_service(&config, name, &mut errors);
        validate_kustomize_patches(&config, name, &mut errors);
        validate_nok8s_host_claims(&config, name, &mut claims, &mut errors);
        super::sections::check(&config, name, &mut warnings);
        if let Some(first) = errors.into_iter().next() {
            return Err(first);
        }
        out.push(StackConfig { name: name.clone(), index: ctx.index, config, warnings, secrets });
    }
    Ok(out)
}

/// What users wrote for each stack of a plan: the merged layers (defaults, scenario,
/// setup overrides) before the resolver chain, each value at its origin, secrets
/// concealed as in the resolved config. Changes are explained in these terms — a
/// derived value (a `${…}` substitution, a label made from the model name) is not
/// something anyone edited.
///
/// Merged on first use, for every stack at once: only a node that runs is explained,
/// and a build that runs nothing should not merge every stack twice.
pub struct StackInputs {
    opts: Arc<PlanOptions>,
    defaults: Node,
    scenario: Scenario,
    overlays_dir: PathBuf,
    /// Per stack, the secrets its resolved config conceals (their copies are scrubbed).
    secrets: Vec<Secrets>,
    merged: OnceLock<Vec<Arc<Node>>>,
}

impl StackInputs {
    pub fn new(opts: Arc<PlanOptions>, defaults: Node, scenario: Scenario, overlays_dir: PathBuf, secrets: Vec<Secrets>) -> StackInputs {
        StackInputs { opts, defaults, scenario, overlays_dir, secrets, merged: OnceLock::new() }
    }

    /// Stack `index`'s (0-based) merged inputs.
    pub fn of(&self, index: usize) -> Arc<Node> {
        let merged = self.merged.get_or_init(|| self.merge().unwrap_or_default());
        merged.get(index).cloned().unwrap_or_else(|| Arc::new(Node::map(Mapping::new())))
    }

    /// The merge [`resolve_stacks`] did, again (it succeeded on these inputs, so an
    /// error here cannot be the user's; it leaves reasons without leaves).
    fn merge(&self) -> Result<Vec<Arc<Node>>, InputError> {
        let shared = expand_common(&self.scenario.shared, Some(&self.defaults))?;
        let total = self.scenario.stacks.len();
        let mut out = Vec::with_capacity(total);
        for (i, (name, stack)) in self.scenario.stacks.iter().enumerate() {
            let ctx =
                StackContext { opts: &self.opts, name, index: i + 1, total, defaults: &self.defaults, overlays_dir: &self.overlays_dir };
            let mut inputs = ctx.merge_layers(&shared, stack, &mut Warnings::default())?;
            super::secret::conceal(&mut inputs);
            if let Some(secrets) = self.secrets.get(i) {
                super::secret::scrub(&mut inputs, secrets);
            }
            out.push(Arc::new(inputs));
        }
        Ok(out)
    }
}

impl std::fmt::Debug for StackInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StackInputs({} stacks, merged: {})", self.scenario.stacks.len(), self.merged.get().is_some())
    }
}

/// `siblingStacks`: one `{name, modelName, standalone}` entry per stack, from the raw
/// scenario (before defaults), so templates can emit a shared HTTPRoute.
fn sibling_stacks(scenario: &Scenario) -> Result<Vec<Node>, InputError> {
    let shared = expand_common(&scenario.shared, None)?;
    let shared_standalone = shared.get_path(&["standalone", "enabled"]).filter(|n| !n.is_null()).map(Node::is_truthy);
    let mut out = Vec::new();
    for (name, stack) in &scenario.stacks {
        let normalized = expand_common(stack, None)?;
        let combined = merged(&shared, &normalized);
        let model_name = combined.get_path(&["model", "name"]).cloned().unwrap_or_else(|| Node::str(""));
        let standalone = normalized
            .get_path(&["standalone", "enabled"])
            .filter(|n| !n.is_null())
            .map(Node::is_truthy)
            .or(shared_standalone)
            .unwrap_or(false);
        out.push(map_of([("name", Node::str(name.clone())), ("modelName", model_name), ("standalone", Node::from(standalone))]));
    }
    Ok(out)
}

struct StackContext<'a> {
    opts: &'a PlanOptions,
    name: &'a str,
    index: usize,
    total: usize,
    defaults: &'a Node,
    overlays_dir: &'a Path,
}

impl StackContext<'_> {
    fn origin(&self, flag: &str) -> Origin {
        Origin::synthetic(flag)
    }

    /// defaults ⊕ shared ⊕ stack, hoisting, then overrides.
    fn merge_layers(&self, shared: &Node, stack: &Node, warnings: &mut Warnings) -> Result<Node, InputError> {
        let mut stack_layer = stack.clone();
        if let Some(m) = stack_layer.as_map_mut() {
            m.shift_remove("name");
        }
        let stack_layer = expand_common(&stack_layer, Some(self.defaults))?;
        let mut config = merged(self.defaults, shared);
        merge_into(&mut config, &stack_layer);
        if config.as_map().is_none() {
            config = Node::map(Mapping::new());
        }
        hoist_modelservice(&mut config);
        Ok(config).and_then(|mut c| {
            let overrides = self.opts.overrides.for_stack(self.name, self.opts.setup_overrides.as_ref());
            if overrides.as_map().is_some_and(|m| !m.is_empty()) {
                self.log_overrides(&overrides, &c, warnings);
                check_override_paths(&overrides, &c, self.name, warnings)?;
                merge_into(&mut c, &overrides);
                self.cluster_defaults(&mut c);
                self.apply_accelerator_profile(&mut c, warnings)?;
                // Profile defaults never beat an explicit override: apply them again.
                merge_into(&mut c, &overrides);
            } else {
                self.cluster_defaults(&mut c);
                self.apply_accelerator_profile(&mut c, warnings)?;
            }
            Ok(c)
        })
    }

    fn log_overrides(&self, overrides: &Node, base: &Node, warnings: &mut Warnings) {
        if !self.opts.verbose {
            return;
        }
        for (path, value) in leaf_entries(overrides) {
            let dotted = path.join(".");
            let (old, new) = if is_secret_path(&dotted) {
                ("<redacted>".to_string(), "<redacted>".to_string())
            } else {
                let show = |n: &Node| crate::yaml::repr_node(&super::secret::redacted(n));
                (base.get_path(&path).map_or("<unset>".to_string(), show), show(value))
            };
            warnings.push(format!("[{}] scenario override: {dotted}: {old} -> {new} ({})", self.name, value.origin));
        }
    }

    /// Upstream's cluster resolver runs for every stack but a nok8s one (by its config or
    /// by `-t nok8s`); llmd does the part that needs no cluster ([`super::offline`]).
    fn cluster_defaults(&self, config: &mut Node) {
        let cli_nok8s = self.opts.methods.as_deref().is_some_and(|m| m.split(',').any(|m| m.trim() == "nok8s"));
        if !cli_nok8s && !is_enabled(config, "nok8s") {
            super::offline::cluster_defaults(config);
        }
    }

    fn apply_accelerator_profile(&self, config: &mut Node, warnings: &mut Warnings) -> Result<(), InputError> {
        let profile = match config.get_path(&["accelerator", "profile"]).and_then(Node::as_str) {
            Some(p) if !p.is_empty() && p != "auto" => p.to_string(),
            _ => return Ok(()),
        };
        let mut names = vec![profile.clone()];
        if profile.starts_with("intel-") && profile != "intel-gaudi" && profile != "intel-xpu" {
            names.push("intel-xpu".into());
        }
        for name in names.iter().rev() {
            let file = self.overlays_dir.join(format!("{name}.yaml"));
            if file.is_file() {
                let overlay = load_file(&file)?;
                merge_into(config, &overlay);
                if self.opts.verbose {
                    warnings.push(format!("[{}] applied accelerator profile overlay {}", self.name, file.display()));
                }
            }
        }
        Ok(())
    }

    /// The resolver chain that runs after the merge, in upstream's order.
    fn resolve(&self, config: &mut Node, warnings: &mut Warnings) -> Result<(), InputError> {
        apply_resource_preset(config, warnings, self.name);
        super::offline::init_container_images(config, self.name, warnings);
        self.resolve_namespace(config);
        self.resolve_model(config, warnings);
        self.resolve_methods(config, warnings);
        self.resolve_gateway_class(config)?;
        self.resolve_monitoring(config);
        self.resolve_hf_token(config);
        resolve_model_id_label(config);
        suffix_stack_scoped_names(config, self.total);
        resolve_nok8s_stack_scope(config, self.name, self.total);
        resolve_inference_pool_host(config);
        normalize_direct_service_mode(config);
        normalize_router_block(config);
        super::substitute::substitute(config, warnings)?;
        if let Some(acc) = config.get_path_mut(&["accelerator"]).and_then(Node::as_map_mut) {
            for key in ACCELERATOR_RENDER_ONLY {
                acc.shift_remove(*key);
            }
        }
        Ok(())
    }

    fn resolve_namespace(&self, config: &mut Node) {
        let current = config.get_path(&["namespace", "name"]).and_then(Node::as_str).unwrap_or("auto").to_string();
        let gateway_needs =
            |c: &Node| matches!(c.get_path(&["gateway", "namespace"]).and_then(Node::as_str), Some("auto" | DEFAULT_NAMESPACE | ""));
        if let Some(cli) = &self.opts.namespace {
            let parts: Vec<&str> = cli.split(',').map(str::trim).collect();
            let mut deploy = parts.first().copied().filter(|s| !s.is_empty()).unwrap_or(&current).to_string();
            let mut harness = parts.get(1).copied().filter(|s| !s.is_empty()).map_or(deploy.clone(), str::to_string);
            let mut wva = parts.get(2).copied().filter(|s| !s.is_empty()).map_or(deploy.clone(), str::to_string);
            if deploy == "auto" {
                deploy = DEFAULT_NAMESPACE.into();
            }
            if harness == "auto" {
                harness = deploy.clone();
            }
            if wva == "auto" {
                wva = deploy.clone();
            }
            let origin = self.origin("--namespace");
            config.set_path(&["namespace", "name"], Node::new(Value::Str(deploy.clone()), origin.clone()));
            if gateway_needs(config) {
                config.set_path(&["gateway", "namespace"], Node::new(Value::Str(deploy), origin.clone()));
            }
            config.set_path(&["harness", "namespace"], Node::new(Value::Str(harness), origin.clone()));
            config.set_path(&["wva", "namespace"], Node::new(Value::Str(wva), origin));
        } else if current == "auto" {
            let origin = self.origin("llmd: namespace auto");
            config.set_path(&["namespace", "name"], Node::new(Value::Str(DEFAULT_NAMESPACE.into()), origin.clone()));
            if gateway_needs(config) {
                config.set_path(&["gateway", "namespace"], Node::new(Value::Str(DEFAULT_NAMESPACE.into()), origin));
            }
        }
    }

    fn resolve_model(&self, config: &mut Node, warnings: &mut Warnings) {
        let Some(model) = &self.opts.models else { return };
        if self.total > 1 && self.opts.stack_filter.len() == 1 {
            if self.opts.stack_filter[0] != self.name {
                return;
            }
        } else if self.total > 1 && self.index == 1 {
            warnings.push(format!(
                "-m/--models={model:?} is applied to all {} stacks; to change one stack's model combine it with --stack <name>",
                self.total
            ));
        }
        let origin = self.origin("--models");
        let namespace = config.get_path(&["namespace", "name"]).and_then(Node::as_str).unwrap_or(DEFAULT_NAMESPACE).to_string();
        let short = model_id_label(model, &namespace);
        let s = |v: String| Node::new(Value::Str(v), origin.clone());
        config.set_path(&["model", "name"], s(model.clone()));
        config.set_path(&["model", "huggingfaceId"], s(model.clone()));
        config.set_path(&["model", "path"], s(format!("models/{model}")));
        config.set_path(&["model", "shortName"], s(short));
        for role in ["decode", "prefill"] {
            if config.get_path(&[role, "vllm", "customCommand"]).is_some_and(Node::is_truthy) {
                warnings.push(format!(
                    "[{}] --models {model} does not reach {role}.vllm.customCommand; update the command in the scenario or remove it",
                    self.name
                ));
            }
        }
    }

    fn resolve_methods(&self, config: &mut Node, warnings: &mut Warnings) {
        let Some(cli) = &self.opts.methods else { return };
        let mut methods: Vec<String> = cli.split(',').map(|m| m.trim().to_string()).collect();
        let has = |ms: &[String], m: &str| ms.iter().any(|x| x == m);
        if has(&methods, "standalone") && has(&methods, "modelservice") {
            warnings.push("cannot enable both standalone and modelservice; using modelservice");
            methods = vec!["modelservice".into()];
        }
        if has(&methods, "standalone") && has(&methods, "fma") {
            warnings.push("cannot enable both standalone and fma; using standalone");
            methods = vec!["standalone".into()];
        }
        if has(&methods, "kustomize") && ["standalone", "modelservice", "fma"].iter().any(|m| has(&methods, m)) {
            warnings.push("cannot combine kustomize with another deploy method; using kustomize");
            methods = vec!["kustomize".into()];
        }
        if has(&methods, "nok8s") && ["standalone", "modelservice", "fma", "kustomize"].iter().any(|m| has(&methods, m)) {
            warnings.push("cannot combine nok8s with another deploy method; using nok8s");
            methods = vec!["nok8s".into()];
        }
        let enabled: &[(&str, bool)] = if has(&methods, "nok8s") {
            &[("standalone", false), ("modelservice", false), ("fma", false), ("kustomize", false), ("nok8s", true)]
        } else if has(&methods, "standalone") {
            &[("standalone", true), ("modelservice", false), ("fma", false), ("kustomize", false), ("nok8s", false)]
        } else if has(&methods, "kustomize") {
            &[("standalone", false), ("modelservice", false), ("fma", false), ("kustomize", true), ("nok8s", false)]
        } else if has(&methods, "modelservice") || has(&methods, "fma") {
            let ms = has(&methods, "modelservice");
            let fma = has(&methods, "fma");
            let origin = self.origin("--methods");
            for (section, on) in [("standalone", false), ("kustomize", false), ("nok8s", false), ("modelservice", ms), ("fma", fma)] {
                config.set_path(&[section, "enabled"], Node::new(Value::Bool(on), origin.clone()));
            }
            return;
        } else {
            // Unknown method names select nothing, as upstream; the sections are still created.
            &[]
        };
        let origin = self.origin("--methods");
        for section in ["standalone", "modelservice", "fma", "kustomize", "nok8s"] {
            if config.get(section).is_none() {
                config.set_path(&[section], Node::new(Value::Map(Mapping::new()), origin.clone()));
            }
        }
        for (section, on) in enabled {
            config.set_path(&[*section, "enabled"], Node::new(Value::Bool(*on), origin.clone()));
        }
    }

    fn resolve_gateway_class(&self, config: &mut Node) -> Result<(), InputError> {
        let Some(class) = &self.opts.gateway_class else { return Ok(()) };
        let class = class.trim().to_string();
        let ms_enabled = config.get_path(&["modelservice", "enabled"]).is_none_or(Node::is_truthy);
        if ms_enabled && !SUPPORTED_GATEWAY_CLASSES.contains(&class.as_str()) {
            return Err(InputError::new(format!("--gateway-class={class:?} is not supported for the modelservice deploy method"))
                .help(format!("choose one of: {}", SUPPORTED_GATEWAY_CLASSES.join(", "))));
        }
        config.set_path(&["gateway", "className"], Node::new(Value::Str(class), self.origin("--gateway-class")));
        Ok(())
    }

    fn resolve_monitoring(&self, config: &mut Node) {
        let Some(on) = self.opts.monitoring else { return };
        let origin = self.origin("--monitoring");
        let b = |v| Node::new(Value::Bool(v), origin.clone());
        if on {
            config.set_path(&["monitoring", "podmonitor", "enabled"], b(true));
            config.set_path(&["monitoring", "metricsScrapeEnabled"], b(true));
        } else {
            config.set_path(&["monitoring", "podmonitor", "enabled"], b(false));
            config.set_path(&["router", "monitoring", "prometheus", "enabled"], b(false));
        }
    }

    /// Replaces the stack's secret values with placeholders (the Hugging Face token from
    /// the environment already is one) and returns the values.
    fn conceal_secrets(&self, config: &mut Node) -> Secrets {
        let mut secrets = Secrets::default();
        if config.get_path(&["huggingface", "token"]).and_then(Node::as_str) == Some(super::secret::PLACEHOLDER)
            && let Some(token) = self.opts.hf_token.as_ref()
        {
            secrets.add(super::secret::PLACEHOLDER.to_string(), token.clone());
        }
        secrets.extend(super::secret::conceal(config));
        secrets
    }

    fn resolve_hf_token(&self, config: &mut Node) {
        let current = config.get_path(&["huggingface", "token"]).and_then(Node::as_str).unwrap_or("").to_string();
        if config.get("huggingface").and_then(Node::as_map).is_none() {
            config.set_path(&["huggingface"], Node::map(Mapping::new()));
        }
        let origin = self.origin("environment: HF_TOKEN");
        if !HF_TOKEN_SENTINELS.contains(&current.as_str()) {
            config.set_path(&["huggingface", "enabled"], Node::new(Value::Bool(true), origin));
            return;
        }
        let s = |v: String| Node::new(Value::Str(v), origin.clone());
        match &self.opts.hf_token {
            Some(token) if !token.is_empty() => {
                // Never the token itself: see `config::secret`.
                config.set_path(&["huggingface", "token"], s(super::secret::PLACEHOLDER.to_string()));
                config.set_path(&["huggingface", "tokenBase64"], s(super::secret::placeholder_base64()));
                config.set_path(&["huggingface", "enabled"], Node::new(Value::Bool(true), origin.clone()));
            }
            _ => {
                config.set_path(&["huggingface", "enabled"], Node::new(Value::Bool(false), origin.clone()));
                config.set_path(&["huggingface", "token"], s(String::new()));
                config.set_path(&["huggingface", "tokenBase64"], s(String::new()));
            }
        }
    }
}

fn apply_resource_preset(config: &mut Node, warnings: &mut Warnings, stack: &str) {
    let Some(preset_name) = config.get("resourcePreset").filter(|n| n.is_truthy()).map(crate::yaml::str_node) else { return };
    let Some(preset) = config.get_path(&["resourcePresets", preset_name.as_str()]).cloned() else {
        warnings.push(format!("[{stack}] resource preset '{preset_name}' not found; skipping"));
        return;
    };
    for component in ["decode", "prefill"] {
        if let Some(p) = preset.get(component) {
            let mut base = config.get(component).filter(|n| n.as_map().is_some()).cloned().unwrap_or_else(|| Node::map(Mapping::new()));
            merge_into(&mut base, p);
            config.set_path(&[component], base);
        }
    }
}

fn resolve_model_id_label(config: &mut Node) {
    let name = config.get_path(&["model", "name"]).map(crate::yaml::str_node).filter(|s| !s.is_empty() && s != "None");
    let namespace = config.get_path(&["namespace", "name"]).map(crate::yaml::str_node).unwrap_or_default();
    let label = match name {
        Some(n) => model_id_label(&n, &namespace),
        None => config.get_path(&["model", "shortName"]).map(crate::yaml::str_node).unwrap_or_default(),
    };
    let origin = Origin::synthetic("llmd: model_id_label");
    config.set_path(&["model_id_label"], Node::new(Value::Str(label.clone()), origin.clone()));
    if config.get("model").and_then(Node::as_map).is_some() {
        config.set_path(&["model", "idLabel"], Node::new(Value::Str(label), origin));
    }
}

fn is_enabled(config: &Node, section: &str) -> bool {
    config.get_path(&[section, "enabled"]).is_some_and(Node::is_truthy)
}

fn resolve_nok8s_stack_scope(config: &mut Node, stack: &str, total: usize) {
    if total < 2 || !is_enabled(config, "nok8s") {
        return;
    }
    let slug: String = stack.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '-' }).collect();
    if slug.is_empty() {
        return;
    }
    if !config.get_path(&["nok8s", "nameSuffix"]).is_some_and(Node::is_truthy) {
        config.set_path(&["nok8s", "nameSuffix"], Node::str(format!("-{slug}")));
    }
    let dir = config
        .get_path(&["nok8s", "workspaceHostDir"])
        .filter(|n| n.is_truthy())
        .map(crate::yaml::str_node)
        .unwrap_or_else(|| "~/.llmdbench/nok8s".into());
    config.set_path(&["nok8s", "workspaceHostDir"], Node::str(format!("{}/{slug}", dir.trim_end_matches('/'))));
}

fn resolve_inference_pool_host(config: &mut Node) {
    let label = config.get("model_id_label").and_then(Node::as_str).unwrap_or("").to_string();
    let Some(rule) = config.get_path_mut(&["router", "inferencePool", "providerConfig", "destinationRule"]) else { return };
    let Some(map) = rule.as_map_mut() else { return };
    if !map.get("host").is_some_and(Node::is_truthy) && !label.is_empty() {
        map.insert("host".into(), Node::str(format!("{label}-router-epp")));
    }
}

fn gateway_class(config: &Node) -> String {
    config.get_path(&["gateway", "className"]).map(crate::yaml::str_node).unwrap_or_default()
}

fn modelservice_enabled(config: &Node) -> bool {
    config.get_path(&["modelservice", "enabled"]).is_none_or(Node::is_truthy)
}

fn normalize_direct_service_mode(config: &mut Node) {
    if gateway_class(config) != "none" || !modelservice_enabled(config) {
        return;
    }
    config.set_path(&["routing", "proxy", "enabled"], Node::from(false));
    if let Some(cmd) = config.get_path_mut(&["decode", "vllm", "customCommand"])
        && let Value::Str(s) = &mut cmd.value
    {
        *s = s.replace("$VLLM_METRICS_PORT", "$VLLM_INFERENCE_PORT");
    }
}

fn validate_epponly(config: &Node, total: usize, stack: &str, errors: &mut Vec<InputError>) {
    if gateway_class(config) != "epponly" || !modelservice_enabled(config) {
        return;
    }
    let origin = config.get_path(&["gateway", "className"]).map(|n| n.origin.clone()).unwrap_or_default();
    if total > 1 {
        errors.push(InputError::at(
            &origin,
            format!("[{stack}] gateway.className=epponly is single-stack only; this scenario has {total} stacks"),
        ));
    }
    if config.get_path(&["httpRoute", "mode"]).and_then(Node::as_str) == Some("shared") {
        errors.push(InputError::at(&origin, format!("[{stack}] gateway.className=epponly cannot be used with httpRoute.mode=shared")));
    }
}

fn as_int(node: Option<&Node>) -> i64 {
    match node.map(|n| &n.value) {
        Some(Value::Int(i)) => *i,
        Some(Value::Float(f)) => *f as i64,
        Some(Value::Bool(b)) => i64::from(*b),
        Some(Value::Str(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn validate_direct_service(config: &Node, stack: &str, errors: &mut Vec<InputError>) {
    if gateway_class(config) != "none" || !modelservice_enabled(config) {
        return;
    }
    let origin = config.get_path(&["gateway", "className"]).map(|n| n.origin.clone()).unwrap_or_default();
    if config.get_path(&["httpRoute", "mode"]).and_then(Node::as_str) == Some("shared") {
        errors.push(InputError::at(&origin, format!("[{stack}] gateway.className=none cannot be used with httpRoute.mode=shared")));
    }
    let prefill = config.get("prefill");
    if prefill.and_then(|p| p.get("enabled")).is_some_and(Node::is_truthy) && as_int(prefill.and_then(|p| p.get("replicas"))) > 0 {
        errors.push(InputError::at(&origin, format!("[{stack}] gateway.className=none cannot be used with prefill replicas")));
    }
    let decode = config.get("decode");
    let replicas = as_int(decode.and_then(|d| d.get("replicas")));
    let enabled = decode.and_then(|d| d.get("enabled")).map_or(replicas > 0, Node::is_truthy);
    if !enabled || replicas < 1 {
        errors.push(InputError::at(&origin, format!("[{stack}] gateway.className=none requires at least one decode replica")));
    }
}

fn validate_kustomize_patches(config: &Node, stack: &str, errors: &mut Vec<InputError>) {
    if !is_enabled(config, "kustomize") {
        return;
    }
    let patches = list_or_empty(config.get_path(&["kustomize", "patches"]));
    for (i, entry) in patches.iter().enumerate() {
        if entry.as_map().is_none() {
            errors.push(InputError::at(&entry.origin, format!("[{stack}] kustomize.patches[{i}] must be a mapping")));
            continue;
        }
        let Some(patch) = entry.get("patch").and_then(Node::as_str).filter(|p| !p.is_empty()) else { continue };
        match crate::yaml::load::load_all_str(patch, &format!("kustomize.patches[{i}].patch")) {
            Err(e) => errors.push(InputError::at(&entry.origin, format!("[{stack}] kustomize.patches[{i}].patch is invalid YAML: {e}"))),
            Ok(docs) => {
                for doc in docs.iter().filter(|d| !d.is_null() && d.as_map().is_none()) {
                    errors.push(InputError::at(
                        &entry.origin,
                        format!("[{stack}] kustomize.patches[{i}].patch expected a YAML mapping, got {}", doc.type_name()),
                    ));
                }
            }
        }
    }
}

fn port_value(node: &Node) -> Option<i64> {
    match &node.value {
        Value::Int(i) => Some(*i),
        Value::Str(s) if !s.trim().is_empty() && s.trim().chars().all(|c| c.is_ascii_digit()) => s.trim().parse().ok(),
        _ => None,
    }
}

const NOK8S_HOST_PORTS: &[(&[&str], bool)] = &[
    (&["nok8s", "vllm", "hostPort"], true),
    (&["nok8s", "envoy", "listenPort"], false),
    (&["nok8s", "envoy", "adminPort"], false),
    (&["nok8s", "epp", "grpcPort"], false),
    (&["nok8s", "epp", "grpcHealthPort"], false),
    (&["nok8s", "epp", "metricsPort"], false),
];

fn validate_nok8s_host_claims(config: &Node, stack: &str, claims: &mut HostClaims, errors: &mut Vec<InputError>) {
    if !is_enabled(config, "nok8s") {
        return;
    }
    let replicas = config.get_path(&["nok8s", "vllm", "replicas"]).and_then(port_value).filter(|r| *r >= 1).unwrap_or(1);
    let suffix = config.get_path(&["nok8s", "nameSuffix"]).filter(|n| n.is_truthy()).map(crate::yaml::str_node).unwrap_or_default();
    let mut names: Vec<String> = (0..replicas).map(|i| format!("vllm-{i}{suffix}")).collect();
    names.push(format!("epp{suffix}"));
    names.push(format!("envoy{suffix}"));
    for name in names {
        match claims.names.iter().find(|(n, _)| *n == name) {
            Some((_, owner)) if owner != stack => errors.push(InputError::new(format!(
                "[{stack}] nok8s container name '{name}' is already used by stack '{owner}'; give the stacks distinct names or nok8s.nameSuffix values"
            ))),
            Some(_) => {}
            None => claims.names.push((name, stack.to_string())),
        }
    }
    for (path, is_base) in NOK8S_HOST_PORTS {
        let Some(node) = config.get_path(path) else { continue };
        if node.is_null() {
            continue;
        }
        let key = path.join(".");
        let Some(base) = port_value(node) else {
            errors.push(InputError::at(
                &node.origin,
                format!("[{stack}] {key} must be an integer port, got {}", crate::yaml::repr_node(node)),
            ));
            continue;
        };
        if !(1..=65535).contains(&base) {
            errors.push(InputError::at(&node.origin, format!("[{stack}] {key} is {base}, outside the valid port range 1-65535")));
            continue;
        }
        let span = if *is_base { replicas } else { 1 };
        for port in base..base + span {
            match claims.ports.iter().find(|(p, _, _)| *p == port) {
                Some((_, owner, _)) if owner != stack => errors.push(InputError::at(
                    &node.origin,
                    format!("[{stack}] nok8s host port {port} ({key}) is already used by stack '{owner}'"),
                )),
                Some((_, _, owner_key)) if *owner_key != key => errors.push(InputError::at(
                    &node.origin,
                    format!("[{stack}] nok8s host port {port} is claimed by both {owner_key} and {key}"),
                )),
                Some(_) => {}
                None => claims.ports.push((port, stack.to_string(), key.clone())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::yaml::load_str;

    const DEFAULTS: &str = "\
namespace: {name: auto}
gateway: {namespace: auto, className: istio}
model: {name: default/model, maxModelLen: 100}
decode: {replicas: 1, parallelism: {tensor: 1}, args: [a, b], image: {tag: v1}}
standalone: {enabled: true}
modelservice: {enabled: false}
huggingface: {token: '', secretName: s, tokenKey: HF_TOKEN}
labels: {inferenceServing: 'true'}
router: {epp: {verbosity: '2'}}
downloadJob: {name: download-model}
vllmCommon: {cmd: 'serve ${model.name} --len ${model.maxModelLen}'}
";

    fn scenario(text: &str) -> Scenario {
        let doc = load_str(text, "scenario.yaml").unwrap();
        let stacks = doc
            .get("scenario")
            .unwrap()
            .as_seq()
            .unwrap()
            .iter()
            .map(|s| (s.get("name").unwrap().as_str().unwrap().to_string(), s.clone()))
            .collect();
        Scenario {
            file: "scenario.yaml".into(),
            name: "scenario".into(),
            shared: doc.get("shared").cloned().unwrap_or_else(|| Node::map(Mapping::new())),
            stacks,
        }
    }

    fn resolve(opts: &PlanOptions, text: &str) -> Vec<StackConfig> {
        let defaults = load_str(DEFAULTS, "defaults.yaml").unwrap();
        resolve_stacks(opts, &defaults, &scenario(text), Path::new("/nonexistent")).unwrap()
    }

    fn set(args: &[&str]) -> Overrides {
        Overrides::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &mut Warnings::default()).unwrap()
    }

    fn get<'a>(s: &'a StackConfig, path: &str) -> &'a Node {
        let parts: Vec<&str> = path.split('.').collect();
        s.config.get_path(&parts).unwrap_or_else(|| panic!("{path} missing"))
    }

    #[test]
    fn layers_apply_in_precedence_order() {
        let text = "\
shared: {decode: {replicas: 2, parallelism: {tensor: 2}}, model: {maxModelLen: 200}}
scenario:
  - name: a
    decode: {replicas: 3, args: [c], image: null}
  - name: b
";
        let mut opts = PlanOptions {
            overrides: set(&["decode.parallelism.tensor=4", "?:model.maxModelLen=300", "b:model.maxModelLen=400"]),
            ..Default::default()
        };
        let stacks = resolve(&opts, text);
        let (a, b) = (&stacks[0], &stacks[1]);
        assert_eq!(get(a, "decode.replicas").as_i64(), Some(3), "stack beats shared");
        assert_eq!(get(b, "decode.replicas").as_i64(), Some(2), "shared beats defaults");
        assert_eq!(get(a, "decode.parallelism.tensor").as_i64(), Some(4), "--set beats the scenario");
        assert_eq!(get(a, "model.maxModelLen").as_i64(), Some(300), "glob selector beats global");
        assert_eq!(get(b, "model.maxModelLen").as_i64(), Some(400), "exact selector beats glob");
        assert_eq!(get(a, "decode.args").as_seq().unwrap().len(), 1, "lists replace");
        assert_eq!(get(a, "decode.image.tag").as_str(), Some("v1"), "null never clobbers");
        assert_eq!(get(a, "vllmCommon.cmd").as_str(), Some("serve default/model --len 300"), "substitution sees the final values");

        opts.setup_overrides = Some(load_str("model: {maxModelLen: 999}", "experiment.yaml").unwrap());
        let stacks = resolve(&opts, text);
        assert_eq!(get(&stacks[1], "model.maxModelLen").as_i64(), Some(999), "treatments beat --set");
        assert_eq!(get(&stacks[1], "model.maxModelLen").origin.file.as_deref(), Some("experiment.yaml"), "provenance of the winner");
    }

    #[test]
    fn identity_and_injected_keys() {
        let stacks = resolve(
            &PlanOptions::default(),
            "scenario:\n  - name: one\n    model: {name: Qwen/Qwen3-0.6B}\n    standalone: {enabled: true}\n  - name: two\n    standalone: {enabled: false}\n",
        );
        let one = &stacks[0];
        assert_eq!(get(one, "namespace.name").as_str(), Some("llmdbench"));
        assert_eq!(get(one, "gateway.namespace").as_str(), Some("llmdbench"));
        assert_eq!(get(one, "model_id_label").as_str(), Some("qwen-qwe-07df2612-en3-0-6b"));
        assert_eq!(get(one, "model.idLabel").as_str(), Some("qwen-qwe-07df2612-en3-0-6b"));
        assert_eq!(get(one, "downloadJob.name").as_str(), Some("download-model-qwen-qwe-07df2612-en3-0-6b"));
        assert_eq!(get(one, "stackIndex").as_i64(), Some(1));
        assert_eq!(get(&stacks[1], "stackIndex").as_i64(), Some(2));
        assert_eq!(get(one, "sharedInfraStackIndex").as_i64(), Some(2), "the first non-standalone stack owns shared infra");
        assert_eq!(get(one, "scenarioName").as_str(), Some("scenario"));
        let siblings = get(one, "siblingStacks").as_seq().unwrap();
        assert_eq!(siblings[0].get("modelName").unwrap().as_str(), Some("Qwen/Qwen3-0.6B"));
        assert_eq!(siblings[1].get("standalone").unwrap().as_bool(), Some(false));
        let labels = get(one, "router.modelServers.matchLabels").as_map().unwrap();
        assert_eq!(labels["llm-d.ai/model"].as_str(), Some("qwen-qwe-07df2612-en3-0-6b"));
        assert_eq!(get(one, "router.epp.flags.v").as_str(), Some("2"), "verbosity becomes flags.v");
        assert!(get(one, "router.epp").get("verbosity").is_none());
    }

    #[test]
    fn cli_flags_and_tokens() {
        let opts = PlanOptions {
            namespace: Some("deploy,,wva".into()),
            models: Some("meta/Llama.3".into()),
            methods: Some("modelservice".into()),
            monitoring: Some(false),
            hf_token: Some("hf_secret".into()),
            ..Default::default()
        };
        let s = &resolve(&opts, "scenario:\n  - name: one\n")[0];
        assert_eq!(get(s, "namespace.name").as_str(), Some("deploy"));
        assert_eq!(get(s, "harness.namespace").as_str(), Some("deploy"));
        assert_eq!(get(s, "wva.namespace").as_str(), Some("wva"));
        assert_eq!(get(s, "model.name").as_str(), Some("meta/Llama.3"));
        assert_eq!(get(s, "model.path").as_str(), Some("models/meta/Llama.3"));
        assert_eq!(get(s, "model.name").origin.file.as_deref(), Some("--models"));
        assert_eq!(get(s, "standalone.enabled").as_bool(), Some(false));
        assert_eq!(get(s, "modelservice.enabled").as_bool(), Some(true));
        assert_eq!(get(s, "monitoring.podmonitor.enabled").as_bool(), Some(false));
        assert_eq!(get(s, "router.monitoring.prometheus.enabled").as_bool(), Some(false));
        assert_eq!(get(s, "huggingface.enabled").as_bool(), Some(true));
        // The token itself never enters a plan: a placeholder does (config::secret).
        assert_eq!(get(s, "huggingface.token").as_str(), Some(crate::config::secret::PLACEHOLDER));
        assert_eq!(get(s, "huggingface.tokenBase64").as_str(), Some(crate::config::secret::placeholder_base64().as_str()));
        let epp_env = get(s, "router.epp.env").as_seq().unwrap();
        assert_eq!(epp_env[0].get("name").unwrap().as_str(), Some("HF_TOKEN"));

        let s = &resolve(&PlanOptions::default(), "scenario:\n  - name: one\n")[0];
        assert_eq!(get(s, "huggingface.enabled").as_bool(), Some(false), "no token: no secret");
    }

    #[test]
    fn gateway_class_is_validated_for_modelservice() {
        let defaults = load_str(DEFAULTS, "defaults.yaml").unwrap();
        let opts = PlanOptions { gateway_class: Some("nginx".into()), methods: Some("modelservice".into()), ..Default::default() };
        let err = resolve_stacks(&opts, &defaults, &scenario("scenario:\n  - name: one\n"), Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        let opts = PlanOptions { gateway_class: Some("epponly".into()), methods: Some("modelservice".into()), ..Default::default() };
        let err = resolve_stacks(&opts, &defaults, &scenario("scenario:\n  - name: one\n  - name: two\n"), Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("single-stack only"), "{err}");
    }
}
