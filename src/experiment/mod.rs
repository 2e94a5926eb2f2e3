//! Experiment files: designs of experiments in llm-d-benchmark's format.
//!
//! ```yaml
//! experiment: {name: my-sweep, harness: llmd, profile: sanity_random.yaml}
//! setup:
//!   constants: {vllmCommon.flags.enforceEager: true}      # merged into every setup treatment
//!   treatments:                                            # infrastructure (scenario overrides)
//!     - {name: tp1, decode.parallelism.tensor: 1}
//! constants: {load.stages.0.duration: 10}                  # merged into every run treatment
//! treatments:                                              # workload (profile overrides); `run:` also works
//!   - {name: rate5, load.stages.0.rate: 5}
//! ```
//!
//! A treatment's keys other than `name` (and `profile` for run treatments) are dotted
//! paths. Setup treatments become nested scenario overrides (applied after `--set`);
//! a file without a `setup:` section has one setup treatment, `default`.

use std::path::Path;

use anyhow::Result;

use crate::error::InputError;
use crate::schema::{Document, Field, Kind, check_keys};
use crate::yaml::{Mapping, Node, Value, load_file};

/// One setup (infrastructure) treatment.
#[derive(Clone, Debug)]
pub struct SetupTreatment {
    pub name: String,
    /// Dotted overrides, constants first.
    pub values: Vec<(String, Node)>,
    /// The same as a nested mapping, ready to merge over each stack.
    pub overrides: Node,
}

/// An experiments file.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub name: String,
    /// llmd's addition: the specification the experiment runs on (`experiment.spec`).
    pub spec: Option<String>,
    pub harness: Option<String>,
    pub profile: Option<String>,
    pub setup: Vec<SetupTreatment>,
    pub run: Vec<RunTreatment>,
    /// Repetitions of every run treatment (`repeat: N`, default 1).
    pub repeat: usize,
    /// `repeat_seed: same` — every repetition sends the same request stream; by default
    /// (`per-repetition`) repetition N > 1 of a native-harness run draws its prompts and
    /// arrivals from a seed derived from the profile's seed and N.
    pub repeat_seed_same: bool,
    /// Attempts per run before it counts as failed (`treatment_max_attempts`, default 1).
    /// A retry policy, not an input: it is not part of any node key.
    pub max_attempts: usize,
    /// A run fails when more than this fraction of its requests fail
    /// (`max_failure_fraction`, default 0.5). A run is judged when it executes, so the
    /// setting is an input of run keys when given: changing it runs them again.
    pub max_failure_fraction: Option<f64>,
    pub stop_on_error: bool,
    /// `isolation:` — what may run beside a measurement (`llmd build -j`); `None` leaves
    /// it to the command line and the backend's default.
    pub isolation: Option<Isolation>,
}

/// What may run beside a measurement when `llmd build -j` runs setups concurrently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// At most one run (and no analysis) at a time on the whole machine.
    Exclusive,
    /// Runs on different stacks may overlap (stacks on separate nodes); runs of one
    /// stack never do.
    PerStack,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Exclusive => "exclusive",
            Isolation::PerStack => "per-stack",
        }
    }

    pub fn parse(s: &str) -> Option<Isolation> {
        match s {
            "exclusive" => Some(Isolation::Exclusive),
            "per-stack" => Some(Isolation::PerStack),
            _ => None,
        }
    }
}

const META: &[Field] = &[
    Field::new("name", Kind::Str, "The experiment's name (default: the file's stem)."),
    Field::new("description", Kind::Str, "Free text."),
    Field::new("spec", Kind::Str, "The specification to run on: a name under config/specification (examples/sim) or a path."),
    Field::new("harness", Kind::Str, "The load generator: llmd (native), inference-perf, guidellm or vllm-benchmark."),
    Field::new("profile", Kind::Str, "The workload profile: a name under workload/profiles/<harness>/ or a path relative to this file."),
    Field::new("datasetUrl", Kind::Str, "Upstream's dataset location (informational)."),
];

const FACTOR: &[Field] = &[
    Field::new("name", Kind::Str, "The factor's name in treatment names (default: the key's last segment)."),
    Field::new("key", Kind::Str, "The dotted key the factor sets.").required(),
    Field::new("levels", Kind::List(&Kind::Any), "The values it takes; treatments are the full factorial.").required(),
];

const DESIGN_SETUP: &[Field] = &[Field::new(
    "factors",
    Kind::List(&Kind::Open(FACTOR)),
    "Setup factors: expanded into setup treatments when `setup.treatments` is absent.",
)];

const DESIGN_RUN: &[Field] = &[
    Field::new("factors", Kind::List(&Kind::Open(FACTOR)), "Run factors: expanded into run treatments when `treatments` is absent."),
    Field::new("constants", Kind::Dotted, "Dotted profile keys merged into every generated run treatment."),
];

const DESIGN: &[Field] = &[
    Field::new("type", Kind::Str, "Upstream's design type (informational)."),
    Field::new("setup", Kind::Open(DESIGN_SETUP), "Setup factors."),
    Field::new("run", Kind::Open(DESIGN_RUN), "Run factors."),
];

const SETUP_TREATMENT: &[Field] = &[Field::new("name", Kind::Str, "The treatment's name: setup-treatment-<name>/ in the workspace.")];

const SETUP: &[Field] = &[
    Field::new("constants", Kind::Dotted, "Dotted scenario keys merged into every setup treatment first."),
    Field::new(
        "treatments",
        Kind::List(&Kind::Open(SETUP_TREATMENT)),
        "Infrastructure variants: a name and dotted scenario keys (applied over --set).",
    ),
];

const RUN_TREATMENT: &[Field] = &[
    Field::new("name", Kind::Str, "The treatment's name."),
    Field::new("profile", Kind::Str, "A different workload profile for this treatment."),
];

/// Every key of an experiments file: the loader rejects others, `llmd schema experiment`
/// describes these.
pub const SCHEMA: Document = Document {
    name: "experiment",
    title: "llmd experiment",
    description: "A design of experiments for `llmd build` / `llmd experiment`: setup treatments (scenario overrides) x run treatments (profile overrides).",
    fields: &[
        Field::new("experiment", Kind::Object(META), "What the experiment runs."),
        Field::new("design", Kind::Open(DESIGN), "Factors expanded into treatments (a full factorial)."),
        Field::new("setup", Kind::Object(SETUP), "Infrastructure variants; without it, one setup treatment named default."),
        Field::new(
            "treatments",
            Kind::List(&Kind::Open(RUN_TREATMENT)),
            "Workload variants: a name, an optional profile and dotted profile keys.",
        ),
        Field::new("run", Kind::List(&Kind::Open(RUN_TREATMENT)), "Another name for treatments."),
        Field::new("constants", Kind::Dotted, "Dotted profile keys merged into every run treatment first."),
        Field::new("reset_caches", Kind::Bool, "Upstream's prefix-cache reset between treatments (accepted; llmd ignores it)."),
        Field::new("treatment_max_attempts", Kind::Int { min: 1 }, "Attempts per run before it counts as failed.").default("1"),
        Field::new(
            "max_failure_fraction",
            Kind::Fraction,
            "A run fails when more than this fraction of its requests fail (whatever the fraction, a run fails when its server died during it).",
        )
        .default("0.5"),
        Field::new("treatment_stop_on_error", Kind::Bool, "Stop at the first failed treatment (llmd experiment).").default("false"),
        Field::new("validate_failures", Kind::Bool, "Upstream's failure validation (accepted; llmd ignores it)."),
        Field::new("repeat", Kind::Int { min: 1 }, "Repetitions of every run treatment.").default("1"),
        Field::new(
            "repeat_seed",
            Kind::Enum(&["per-repetition", "same"]),
            "Seeds of repetitions (native harness): per-repetition draws repetition N > 1 from a seed derived from the profile's seed and N; same sends one request stream in every repetition.",
        )
        .default("per-repetition"),
        Field::new(
            "isolation",
            Kind::Enum(&["exclusive", "per-stack"]),
            "What may run beside a measurement under `llmd build -j`: exclusive (one run at a time) or per-stack (runs on different stacks may overlap). Default: exclusive locally, per-stack on a cluster.",
        ),
    ],
};

/// Dotted setup overrides as the nested mapping merged over each stack; a key set both
/// as a value and as a parent is an error at `origin`.
fn nested(pairs: &[(String, Node)], origin: &crate::yaml::Origin) -> Result<Node, InputError> {
    let split = pairs.iter().map(|(k, v)| (k.split('.').map(str::to_string).collect(), v.clone())).collect();
    crate::config::overrides::dotted_to_nested(split).map_err(|e| InputError::at(origin, e))
}

/// Reads a whole experiments file.
pub fn load_experiment(path: &Path) -> Result<Experiment> {
    let doc = load_file(path).map_err(InputError::from)?;
    if doc.as_map().is_none() {
        return Err(InputError::at(&doc.origin, "an experiments file must be a mapping").into());
    }
    check_keys(&doc, SCHEMA.fields, "an experiments file")?;
    let meta = doc.get("experiment");
    let text = |key: &str| meta.and_then(|m| m.get(key)).filter(|n| !n.is_null()).map(crate::yaml::str_node);
    let name =
        text("name").unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "experiment".into()));
    let design = doc.get("design");
    let mut setup = Vec::new();
    if let Some(section) = doc.get("setup").filter(|n| !n.is_null()) {
        if section.as_map().is_none() {
            return Err(InputError::at(&section.origin, "'setup' must be a mapping with 'constants' and 'treatments'").into());
        }
        let constants = section.get("constants").map(|c| dotted_pairs(c, &[])).unwrap_or_default();
        let items = match section.get("treatments") {
            Some(t) => t.as_seq().ok_or_else(|| InputError::at(&t.origin, "'setup.treatments' must be a list"))?.to_vec(),
            None => match design.and_then(|d| d.get_path(&["setup", "factors"])) {
                Some(factors) => expand_factors(factors)?,
                None => Vec::new(),
            },
        };
        for (i, item) in items.iter().enumerate() {
            if item.as_map().is_none() {
                return Err(InputError::at(&item.origin, format!("setup treatment {} must be a mapping", i + 1)).into());
            }
            let name = item.get("name").map(crate::yaml::str_node).unwrap_or_else(|| format!("setup-{}", i + 1));
            check_name(&name, item, setup.iter().map(|t: &SetupTreatment| t.name.as_str()))?;
            let mut values = constants.clone();
            values.extend(dotted_pairs(item, &["name"]));
            let overrides = nested(&values, &item.origin)?;
            setup.push(SetupTreatment { name, values, overrides });
        }
        if items.is_empty() && !constants.is_empty() {
            let overrides = nested(&constants, &section.origin)?;
            setup.push(SetupTreatment { name: "default".into(), values: constants, overrides });
        }
    } else if let Some(factors) = design.and_then(|d| d.get_path(&["setup", "factors"])) {
        for item in expand_factors(factors)? {
            let name = item.get("name").map(crate::yaml::str_node).unwrap_or_default();
            let values = dotted_pairs(&item, &["name"]);
            let overrides = nested(&values, &item.origin)?;
            setup.push(SetupTreatment { name, values, overrides });
        }
    }
    if setup.is_empty() {
        setup.push(default_setup());
    }
    let mut run = parse_run_treatments(&doc)?;
    if run.is_empty()
        && let Some(factors) = design.and_then(|d| d.get_path(&["run", "factors"]))
    {
        let mut constants = doc.get("constants").map(|c| dotted_pairs(c, &[])).unwrap_or_default();
        if let Some(c) = design.and_then(|d| d.get_path(&["run", "constants"])) {
            constants.extend(dotted_pairs(c, &[]));
        }
        for item in expand_factors(factors)? {
            let mut values = constants.clone();
            values.extend(dotted_pairs(&item, &["name"]));
            run.push(RunTreatment { name: item.get("name").map(crate::yaml::str_node).unwrap_or_default(), profile: None, values });
        }
    }
    let repeat = at_least_one(&doc, "repeat")?;
    let max_attempts = at_least_one(&doc, "treatment_max_attempts")?;
    let max_failure_fraction = match doc.get("max_failure_fraction").filter(|n| !n.is_null()) {
        None => None,
        Some(n) => match n.as_number().filter(|f| (0.0..=1.0).contains(f)) {
            Some(f) => Some(f),
            None => {
                return Err(InputError::at(&n.origin, format!("'max_failure_fraction' is '{}'", crate::yaml::str_node(n)))
                    .help("use a number from 0 (no request may fail) to 1 (any may), e.g. 0.05")
                    .into());
            }
        },
    };
    let repeat_seed_same = match doc.get("repeat_seed").filter(|n| !n.is_null()).map(|n| (n, crate::yaml::str_node(n))) {
        None => false,
        Some((_, v)) if v == "per-repetition" => false,
        Some((_, v)) if v == "same" => true,
        Some((n, v)) => {
            return Err(InputError::at(&n.origin, format!("'repeat_seed' is '{v}'"))
                .help("use 'per-repetition' (each repetition its own request stream; the default) or 'same' (one stream for all)")
                .into());
        }
    };
    let isolation = match doc.get("isolation").filter(|n| !n.is_null()) {
        None => None,
        Some(n) => Some(Isolation::parse(&crate::yaml::str_node(n)).ok_or_else(|| {
            InputError::at(&n.origin, format!("'isolation' is '{}'", crate::yaml::str_node(n)))
                .help("use 'exclusive' (one run at a time) or 'per-stack' (runs on different stacks may overlap)")
        })?),
    };
    Ok(Experiment {
        name,
        spec: text("spec"),
        harness: text("harness"),
        profile: text("profile"),
        setup,
        run,
        repeat,
        repeat_seed_same,
        max_attempts,
        max_failure_fraction,
        stop_on_error: doc.get("treatment_stop_on_error").is_some_and(Node::is_truthy),
        isolation,
    })
}

/// A top-level count that defaults to 1 (`repeat`, `treatment_max_attempts`).
fn at_least_one(doc: &Node, key: &str) -> Result<usize, InputError> {
    match doc.get(key).filter(|n| !n.is_null()) {
        None => Ok(1),
        Some(n) => match n.as_i64() {
            Some(r) if r >= 1 => Ok(r as usize),
            _ => Err(InputError::at(&n.origin, format!("'{key}' must be a whole number of at least 1"))),
        },
    }
}

/// A level as it appears in a treatment name: `/`, spaces and `_` become `-`.
fn level_label(level: &Node) -> String {
    crate::yaml::str_node(level).chars().map(|c| if c == '/' || c == '_' || c.is_whitespace() { '-' } else { c }).collect()
}

/// `[{name, key, levels: [..]}, ...]` → the full factorial, as treatment mappings named
/// `<factor>-<level>_<factor>-<level>...` (first factor varies slowest).
pub fn expand_factors(factors: &Node) -> Result<Vec<Node>, InputError> {
    let items = factors.as_seq().ok_or_else(|| InputError::at(&factors.origin, "'factors' must be a list of {name, key, levels}"))?;
    let mut parsed = Vec::new();
    for f in items {
        let key = f
            .get("key")
            .and_then(Node::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| InputError::at(&f.origin, "a factor needs 'key' (a dotted path)"))?;
        let name = f.get("name").map(crate::yaml::str_node).unwrap_or_else(|| key.rsplit('.').next().unwrap_or(key).to_string());
        let levels = f
            .get("levels")
            .and_then(Node::as_seq)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| InputError::at(&f.origin, format!("factor '{name}' needs a non-empty 'levels' list")))?;
        parsed.push((name, key.to_string(), levels.to_vec()));
    }
    let mut combos: Vec<Vec<(String, String, Node)>> = vec![Vec::new()];
    for (name, key, levels) in &parsed {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                levels.iter().map(move |l| {
                    let mut c = c.clone();
                    c.push((name.clone(), key.clone(), l.clone()));
                    c
                })
            })
            .collect();
    }
    Ok(combos
        .into_iter()
        .map(|combo| {
            let label = combo.iter().map(|(n, _, l)| format!("{n}-{}", level_label(l))).collect::<Vec<_>>().join("_");
            let mut m = Mapping::new();
            m.insert("name".into(), Node::new(Value::Str(label), factors.origin.clone()));
            for (_, key, level) in combo {
                m.insert(key, level);
            }
            Node::new(Value::Map(m), factors.origin.clone())
        })
        .collect())
}

/// The setup treatment of an experiment without a `setup:` section.
pub fn default_setup() -> SetupTreatment {
    SetupTreatment {
        name: "default".into(),
        values: Vec::new(),
        overrides: Node::new(Value::Map(Mapping::new()), crate::yaml::Origin::synthetic("default")),
    }
}

fn check_name<'a>(name: &str, item: &Node, mut existing: impl Iterator<Item = &'a str>) -> Result<(), InputError> {
    if name.is_empty() || name.contains(['/', ' ']) {
        return Err(InputError::at(&item.origin, format!("treatment name '{name}' must be non-empty without '/' or spaces")));
    }
    if existing.any(|n| n == name) {
        return Err(InputError::at(&item.origin, format!("duplicate treatment name '{name}'")));
    }
    Ok(())
}

/// One run (workload) treatment.
#[derive(Clone, Debug, PartialEq)]
pub struct RunTreatment {
    pub name: String,
    /// A different profile for this treatment.
    pub profile: Option<String>,
    /// Dotted overrides, constants first.
    pub values: Vec<(String, Node)>,
}

fn dotted_pairs(node: &Node, skip: &[&str]) -> Vec<(String, Node)> {
    node.as_map()
        .map(|m| m.iter().filter(|(k, _)| !skip.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Reads the run treatments of an experiments file (`treatments:` or `run:`, with the
/// top-level `constants:` applied first). A file without treatments yields none.
/// The run treatments of an experiments file (for `llmd run -e`) and its
/// `treatment_max_attempts`.
pub fn load_run_treatments(path: &Path) -> Result<(Vec<RunTreatment>, usize)> {
    let doc = load_file(path).map_err(InputError::from)?;
    let treatments = parse_run_treatments(&doc)?;
    Ok((treatments, at_least_one(&doc, "treatment_max_attempts")?))
}

pub fn parse_run_treatments(doc: &Node) -> Result<Vec<RunTreatment>> {
    if !doc.is_null() && doc.as_map().is_none() {
        return Err(InputError::at(&doc.origin, "an experiments file must be a mapping").into());
    }
    let constants = match doc.get("constants") {
        Some(c) if c.as_map().is_some() => dotted_pairs(c, &[]),
        Some(c) if c.is_null() => Vec::new(),
        Some(c) => return Err(InputError::at(&c.origin, "'constants' must be a mapping of dotted keys to values").into()),
        None => Vec::new(),
    };
    let Some(list) = doc.get("treatments").or_else(|| doc.get("run")) else { return Ok(Vec::new()) };
    let Some(items) = list.as_seq() else {
        return Err(InputError::at(&list.origin, format!("'treatments' must be a list of treatments, not a {}", list.type_name())).into());
    };
    let mut out: Vec<RunTreatment> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.as_map().is_none() {
            return Err(InputError::at(&item.origin, format!("treatment {} must be a mapping", i + 1)).into());
        }
        let name = item.get("name").map(crate::yaml::str_node).unwrap_or_else(|| format!("treatment-{}", i + 1));
        check_name(&name, item, out.iter().map(|t| t.name.as_str()))?;
        let mut values = constants.clone();
        values.extend(dotted_pairs(item, &["name", "profile"]));
        out.push(RunTreatment { name, profile: item.get("profile").map(crate::yaml::str_node), values });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    #[test]
    fn run_treatments_with_constants() {
        let doc = load_str("constants: {load.stages.0.duration: 5}\ntreatments:\n  - {name: r1, load.stages.0.rate: 1}\n  - {load.stages.0.rate: 2, profile: other.yaml}\n", "e.yaml").unwrap();
        let t = parse_run_treatments(&doc).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "r1");
        assert_eq!(t[0].values[0].0, "load.stages.0.duration");
        assert_eq!(t[1].name, "treatment-2");
        assert_eq!(t[1].profile.as_deref(), Some("other.yaml"));
        assert!(parse_run_treatments(&load_str("treatments: 5", "e").unwrap()).is_err());
        assert!(parse_run_treatments(&load_str("treatments: [{name: a}, {name: a}]", "e").unwrap()).is_err());
    }

    #[test]
    fn setup_treatments_nest_and_conflicts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.yaml");
        std::fs::write(
            &path,
            "experiment: {name: sweep, harness: llmd}\nsetup:\n  constants: {local.sim.seed: 1}\n  treatments:\n    - {name: fast, local.sim.timeToFirstToken: 5ms}\n    - {name: slow, local.sim.timeToFirstToken: 50ms}\ntreatments: [{name: r1, load.stages.0.rate: 2}]\n",
        )
        .unwrap();
        let e = load_experiment(&path).unwrap();
        assert_eq!(e.name, "sweep");
        assert_eq!(e.harness.as_deref(), Some("llmd"));
        assert_eq!(e.setup.len(), 2);
        assert_eq!(e.setup[1].overrides.get_path(&["local", "sim", "timeToFirstToken"]).unwrap().as_str(), Some("50ms"));
        assert_eq!(e.setup[1].overrides.get_path(&["local", "sim", "seed"]).unwrap().as_i64(), Some(1));
        assert_eq!(e.run.len(), 1);

        std::fs::write(&path, "treatments: [{name: r1}]\n").unwrap();
        let e = load_experiment(&path).unwrap();
        assert_eq!((e.name.as_str(), e.setup.len(), e.setup[0].name.as_str()), ("e", 1, "default"));

        std::fs::write(&path, "setup: {treatments: [{name: a, x.y: 1, x.y.z: 2}]}\n").unwrap();
        assert!(load_experiment(&path).unwrap_err().to_string().contains("'x.y' is set both as a value and as a parent"));
        std::fs::write(&path, "setup: {treatments: [{name: a, x.y.z: 1, x.y: 2}]}\n").unwrap();
        assert!(load_experiment(&path).unwrap_err().to_string().contains("'x.y' is set both as a value and as a parent"));
        std::fs::write(
            &path,
            "experiment: {spec: examples/sim}\nrepeat: 2\ndesign:\n  setup: {factors: [{name: ttft, key: local.sim.timeToFirstToken, levels: [5ms, 50ms]}]}\n  run: {factors: [{name: rate, key: load.stages.0.rate, levels: [1, 2, 4]}, {name: len, key: dataset.input_len, levels: [64, 128]}]}\nconstants: {load.stages.0.duration: 1}\n",
        )
        .unwrap();
        let e = load_experiment(&path).unwrap();
        assert_eq!((e.spec.as_deref(), e.repeat), (Some("examples/sim"), 2));
        let names: Vec<&str> = e.setup.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ttft-5ms", "ttft-50ms"]);
        assert_eq!(e.run.len(), 6);
        assert_eq!(e.run[1].name, "rate-1_len-128");
        assert_eq!(e.run[1].values[0].0, "load.stages.0.duration", "constants come first");
        assert_eq!(e.run[1].values[2].1.as_i64(), Some(128));
        assert_eq!(e.max_attempts, 1);
        std::fs::write(&path, "repeat: 0\n").unwrap();
        assert!(load_experiment(&path).is_err());
        std::fs::write(&path, "treatment_max_attempts: 3\n").unwrap();
        assert_eq!(load_experiment(&path).unwrap().max_attempts, 3);
        std::fs::write(&path, "\ntreatment_max_attempts: two\n").unwrap();
        let e = format!("{:#}", load_experiment(&path).unwrap_err());
        assert!(e.contains(":2:") && e.contains("'treatment_max_attempts' must be a whole number"), "{e}");
        std::fs::write(&path, "treatmnets: []\n").unwrap();
        assert!(format!("{:#}", load_experiment(&path).unwrap_err()).contains("treatments"));
    }

    #[test]
    fn max_failure_fraction_is_a_number_from_0_to_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.yaml");
        std::fs::write(&path, "repeat: 1\n").unwrap();
        assert_eq!(load_experiment(&path).unwrap().max_failure_fraction, None);
        for (text, want) in [("0", 0.0), ("0.05", 0.05), ("1", 1.0)] {
            std::fs::write(&path, format!("max_failure_fraction: {text}\n")).unwrap();
            assert_eq!(load_experiment(&path).unwrap().max_failure_fraction, Some(want));
        }
        for bad in ["1.5", "-0.1", "half", "[0.1]"] {
            std::fs::write(&path, format!("\nmax_failure_fraction: {bad}\n")).unwrap();
            let e = load_experiment(&path).unwrap_err();
            let text = format!("{e:#}");
            assert!(text.contains(":2:") && text.contains("max_failure_fraction"), "{bad}: {text}");
            assert!(e.downcast_ref::<InputError>().is_some(), "{bad}: an input error (exit 2)");
        }
    }
}
