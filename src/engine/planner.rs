//! The planner: files → merged stack configs → rendered plans, memoized with salsa.
//!
//! Every file the planner reads is a salsa input ([`SourceFile`]), read lazily through
//! the database, so each derivation records exactly which texts it depends on. Results
//! compare by digest, so a re-derivation that produces the same thing (an edit to a
//! comment, key order or whitespace) backdates and nothing downstream re-runs. Tracked
//! functions are pure: no processes, no network, no clock; the executor acts on their
//! results outside salsa. salsa's types do not leave this module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::key::tree_digest;
use crate::config::{PlanOptions, StackInputs, parse_scenario, resolve_loaded};
use crate::error::InputError;
use crate::render::TemplateSet;
use crate::util::embedded::label;
use crate::yaml::{Node, load_str};

/// A planning failure. Salsa memoizes results, so the error is plain data (comparable,
/// clonable) and turns back into the error users see at the planner's edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The user's input is wrong (bad YAML, an unknown key, a template error): exit 2,
    /// with the location and help of the [`InputError`] it came from.
    Input { message: String, origin: Option<crate::yaml::Origin>, help: Option<String> },
    /// A file exists but cannot be read (permissions, not UTF-8, a directory): exit 1.
    Unreadable(String),
    /// Something the planner should not have been asked: exit 1.
    Internal(String),
}

impl From<InputError> for PlanError {
    fn from(e: InputError) -> Self {
        PlanError::Input { message: e.message, origin: e.origin, help: e.help }
    }
}

impl From<crate::yaml::YamlError> for PlanError {
    fn from(e: crate::yaml::YamlError) -> Self {
        InputError::from(e).into()
    }
}

impl From<PlanError> for anyhow::Error {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Input { message, origin, help } => InputError { message, origin, help }.into(),
            PlanError::Unreadable(m) | PlanError::Internal(m) => anyhow::anyhow!(m),
        }
    }
}

#[salsa::input]
struct SourceFile {
    #[returns(ref)]
    path: PathBuf,
    #[returns(ref)]
    text: Result<Arc<str>, String>,
}

#[salsa::input]
struct SetupInput {
    #[returns(ref)]
    opts: Arc<PlanOptions>,
}

#[salsa::db]
trait Db: salsa::Database {
    fn source(&self, path: &Path) -> SourceFile;
}

#[salsa::db]
#[derive(Clone, Default)]
struct PlannerDb {
    storage: salsa::Storage<Self>,
    files: Arc<Mutex<HashMap<PathBuf, SourceFile>>>,
}

#[salsa::db]
impl salsa::Database for PlannerDb {}

#[salsa::db]
impl Db for PlannerDb {
    fn source(&self, path: &Path) -> SourceFile {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(path) {
            return *f;
        }
        let text = std::fs::read_to_string(path).map(Arc::from).map_err(|e| format!("{}: cannot read: {e}", path.display()));
        let f = SourceFile::new(self, path.to_path_buf(), text);
        files.insert(path.to_path_buf(), f);
        f
    }
}

fn text_of(db: &dyn Db, path: &Path) -> Result<Arc<str>, PlanError> {
    db.source(path).text(db).clone().map_err(PlanError::Unreadable)
}

/// One stack of a setup treatment, merged but not rendered.
#[derive(Clone, Debug)]
pub struct PlannedStack {
    pub name: String,
    pub config: Node,
    /// What users wrote for this stack (see [`StackInputs`]): what reasons are told in,
    /// merged only when a node of the stack must be explained.
    pub inputs: StackInputsOf,
    /// Digest of the leaves (paths and values).
    pub config_digest: String,
    pub warnings: Vec<String>,
    /// The secret values `config` holds placeholders for (in memory only).
    pub secrets: crate::config::secret::Secrets,
}

/// One stack's share of its setup's [`StackInputs`].
#[derive(Clone, Debug)]
pub struct StackInputsOf {
    setup: Arc<StackInputs>,
    index: usize,
}

impl StackInputsOf {
    /// The stack's merged inputs (merging every stack of the setup on first use).
    pub fn get(&self) -> Arc<Node> {
        self.setup.of(self.index)
    }
}

/// A setup treatment's merged stacks.
#[derive(Clone, Debug)]
pub struct SetupPlan {
    pub spec_name: String,
    pub template_dir: PathBuf,
    pub stacks: Vec<PlannedStack>,
    pub warnings: Vec<String>,
}

impl PartialEq for SetupPlan {
    fn eq(&self, other: &Self) -> bool {
        self.spec_name == other.spec_name
            && self.template_dir == other.template_dir
            && self.warnings == other.warnings
            && self.stacks.len() == other.stacks.len()
            && self
                .stacks
                .iter()
                .zip(&other.stacks)
                // Secrets are in no digest; a new value must still reach the standup.
                .all(|(a, b)| a.name == b.name && a.config_digest == b.config_digest && a.warnings == b.warnings && a.secrets == b.secrets)
    }
}

#[salsa::tracked(returns(clone))]
fn setup_plan(db: &dyn Db, setup: SetupInput) -> Result<Arc<SetupPlan>, PlanError> {
    let opts = setup.opts(db);
    let spec_file = crate::config::spec::resolve_spec_file(&opts.base_dir, &opts.spec)?;
    let spec = crate::config::spec::render_spec(&opts.base_dir, spec_file.clone(), &text_of(db, &spec_file)?)?;
    let defaults = load_str(&text_of(db, &spec.values_file)?, &label(&spec.values_file))?;
    if defaults.as_map().is_none() {
        return Err(InputError::at(&defaults.origin, "the defaults file must be a mapping").into());
    }
    let scenario_doc = load_str(&text_of(db, &spec.scenario_file)?, &label(&spec.scenario_file))?;
    let scenario = parse_scenario(&spec.scenario_file, scenario_doc)?;
    let (spec_name, template_dir) = (spec.name.clone(), spec.template_dir.clone());
    let (stacks, warnings, inputs) = resolve_loaded(opts, spec, defaults, scenario)?.into_stacks(opts.clone());
    let inputs = Arc::new(inputs);
    let stacks = stacks
        .into_iter()
        .enumerate()
        .map(|(index, s)| PlannedStack {
            name: s.name,
            config_digest: tree_digest(&s.config),
            inputs: StackInputsOf { setup: inputs.clone(), index },
            config: s.config,
            warnings: s.warnings.iter().map(ToString::to_string).collect(),
            secrets: s.secrets,
        })
        .collect();
    Ok(Arc::new(SetupPlan { spec_name, template_dir, stacks, warnings: warnings.iter().map(ToString::to_string).collect() }))
}

/// A template set, compared by digest.
#[derive(Clone)]
struct Templates {
    digest: String,
    set: Arc<TemplateSet>,
}

impl PartialEq for Templates {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({})", self.digest)
    }
}

#[salsa::tracked(returns(clone))]
fn templates(db: &dyn Db, setup: SetupInput) -> Result<Templates, PlanError> {
    let plan = setup_plan(db, setup)?;
    let dir = &plan.template_dir;
    let mut files = Vec::new();
    for name in TemplateSet::list(dir)? {
        files.push((name.clone(), text_of(db, &dir.join(&name))?.to_string()));
    }
    let set = TemplateSet::from_files(dir, files)?;
    Ok(Templates { digest: set.digest().to_hex().to_string(), set: Arc::new(set) })
}

/// A rendered stack: manifests, its final config, and what the local backend would run.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedOut {
    pub files: Vec<(String, String)>,
    pub config_yaml: String,
    pub config: Node,
}

#[salsa::tracked(returns(clone))]
fn rendered_stack(db: &dyn Db, setup: SetupInput, index: usize) -> Result<Arc<RenderedOut>, PlanError> {
    let plan = setup_plan(db, setup)?;
    let t = templates(db, setup)?;
    let stack = plan.stacks.get(index).ok_or_else(|| PlanError::Internal(format!("no stack #{index}")))?;
    let r = t.set.render_stack(&stack.config)?;
    Ok(Arc::new(RenderedOut { config_yaml: r.config_yaml(), files: r.files, config: r.config }))
}

/// The planner's database, one per invocation.
pub struct Planner {
    db: PlannerDb,
    setups: Vec<SetupInput>,
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    pub fn new() -> Planner {
        Planner { db: PlannerDb::default(), setups: Vec::new() }
    }

    /// Registers a setup treatment's plan options; returns its handle.
    pub fn add_setup(&mut self, opts: PlanOptions) -> usize {
        self.setups.push(SetupInput::new(&self.db, Arc::new(opts)));
        self.setups.len() - 1
    }

    pub fn plan(&self, setup: usize) -> Result<Arc<SetupPlan>, PlanError> {
        setup_plan(&self.db, self.setups[setup])
    }

    pub fn template_digest(&self, setup: usize) -> Result<String, PlanError> {
        Ok(templates(&self.db, self.setups[setup])?.digest)
    }

    /// The setup's template files, each with the digest of its text.
    pub fn template_files(&self, setup: usize) -> Result<std::collections::BTreeMap<String, String>, PlanError> {
        Ok(templates(&self.db, self.setups[setup])?.set.file_digests())
    }

    pub fn render(&self, setup: usize, stack: usize) -> Result<Arc<RenderedOut>, PlanError> {
        rendered_stack(&self.db, self.setups[setup], stack)
    }

    /// Re-reads `path` if the planner has read it; returns whether its text changed.
    /// Derivations that depend on it re-run on next use, and stop at the first result
    /// equal to the previous one (early cutoff).
    pub fn reload(&mut self, path: &Path) -> bool {
        use salsa::Setter;
        let Some(file) = self.db.files.lock().unwrap_or_else(|e| e.into_inner()).get(path).copied() else { return false };
        let text: Result<Arc<str>, String> =
            std::fs::read_to_string(path).map(Arc::from).map_err(|e| format!("{}: cannot read: {e}", path.display()));
        if *file.text(&self.db) == text {
            return false;
        }
        // `to` hands back the previous text, which nobody needs.
        let _previous = file.set_text(&mut self.db).to(text);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(base: &Path, spec: &str, set: &[&str]) -> PlanOptions {
        let mut w = crate::error::Warnings::default();
        PlanOptions {
            base_dir: base.to_path_buf(),
            spec: spec.into(),
            overrides: crate::config::Overrides::parse(&set.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &mut w).unwrap(),
            ..Default::default()
        }
    }

    /// A planner that logs which derivations execute.
    fn logged_planner() -> (Planner, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let storage = salsa::Storage::new(Some(Box::new(move |event: salsa::Event| {
            if let salsa::EventKind::WillExecute { database_key } = event.kind {
                sink.lock().unwrap().push(format!("{database_key:?}"));
            }
        })));
        (Planner { db: PlannerDb { storage, files: Default::default() }, setups: Vec::new() }, log)
    }

    fn executed(log: &Mutex<Vec<String>>, what: &str) -> usize {
        log.lock().unwrap().drain(..).filter(|k| k.contains(what)).count()
    }

    #[test]
    fn cosmetic_edits_stop_at_the_merge_and_real_edits_reach_the_render() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for sub in ["config", "workload"] {
            let status = std::process::Command::new("cp").arg("-r").arg(root.join(sub)).arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let scenario = dir.path().join("config/scenarios/examples/sim.yaml");
        let original = std::fs::read_to_string(&scenario).unwrap();
        let (mut p, log) = logged_planner();
        let a = p.add_setup(opts(dir.path(), "examples/sim", &[]));
        let first = p.render(a, 0).unwrap();
        assert_eq!(executed(&log, "rendered_stack"), 1);

        // Same inputs: nothing executes.
        p.render(a, 0).unwrap();
        assert_eq!(executed(&log, "setup_plan") + executed(&log, "rendered_stack"), 0);

        // A comment: the merge re-runs, finds an equal result, and the render is reused.
        std::fs::write(&scenario, format!("# a comment\n{original}")).unwrap();
        assert!(p.reload(&scenario));
        let again = p.render(a, 0).unwrap();
        let log_now: Vec<String> = log.lock().unwrap().clone();
        assert!(log_now.iter().any(|k| k.contains("setup_plan")), "{log_now:?}");
        assert_eq!(executed(&log, "rendered_stack"), 0, "early cutoff");
        assert!(Arc::ptr_eq(&first, &again));

        // A value: the render re-runs.
        std::fs::write(&scenario, original.replacen("timeToFirstToken: ", "timeToFirstToken: 1", 1)).unwrap();
        assert!(p.reload(&scenario));
        let third = p.render(a, 0).unwrap();
        assert_eq!(executed(&log, "rendered_stack"), 1);
        assert_ne!(first.config_yaml, third.config_yaml);
    }

    #[test]
    fn setups_share_inputs_and_render() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut p = Planner::new();
        let a = p.add_setup(opts(&root, "examples/sim", &[]));
        let b = p.add_setup(opts(&root, "examples/sim", &["local.sim.timeToFirstToken=50ms"]));
        let (pa, pb) = (p.plan(a).unwrap(), p.plan(b).unwrap());
        assert_eq!(pa.stacks[0].name, "sim");
        assert_ne!(pa.stacks[0].config_digest, pb.stacks[0].config_digest);
        assert_eq!(p.template_digest(a).unwrap(), p.template_digest(b).unwrap());
        let r = p.render(a, 0).unwrap();
        assert!(r.files.iter().any(|(n, _)| n.starts_with("14_")), "{:?}", r.files.iter().map(|f| &f.0).collect::<Vec<_>>());
        assert!(p.plan(p.setups.len() - 1).is_ok());
        let mut q = Planner::new();
        let bad = q.add_setup(opts(&root, "examples/nope", &[]));
        assert!(matches!(q.plan(bad).unwrap_err(), PlanError::Input { message, .. } if message.contains("not found")));
    }
}
