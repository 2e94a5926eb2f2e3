//! The command line: argument definitions (clap derive) and dispatch.
//!
//! Flag names follow llm-d-benchmark's CLI so that its users can switch tools without
//! relearning: global flags may come before or after the subcommand, and most have an
//! `LLMDBENCH_*` environment default. Each subcommand lives in its own file and turns
//! its arguments into library calls; exit codes are decided in [`exit`].

pub mod analyze;
pub mod build;
pub mod doctor;
pub mod exit;
pub mod experiment;
pub mod init;
pub mod lifecycle;
pub mod load;
pub mod plan;
pub mod shell;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Overrides, PlanOptions};
use crate::error::{InputError, Warnings};
pub use crate::util::steps::StepSelection;

#[derive(Debug, Parser)]
#[command(
    name = "llmd",
    version,
    about = "A make for LLM inference benchmarks: render, deploy, run and analyse llm-d-benchmark experiments incrementally",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Specification: a path, a name under config/specification (examples/sim) or a unique bare name (sim).
    #[arg(long = "spec", visible_alias = "specification_file", global = true, env = "LLMDBENCH_SPEC", value_name = "SPEC")]
    pub spec: Option<String>,
    /// Root of the config tree (config/specification, config/templates, ...) and of workload
    /// profiles. Default: the nearest ancestor of the experiment file, else of the working
    /// directory, with config/specification; else the tree built into llmd.
    #[arg(long, visible_alias = "bd", global = true, env = "LLMDBENCH_BASE_DIR", value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Where plans, results and analyses are written.
    #[arg(long, visible_alias = "ws", global = true, env = "LLMDBENCH_WORKSPACE", value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Decide and log every action without doing it.
    #[arg(short = 'n', long, global = true, env = "LLMDBENCH_DRY_RUN")]
    pub dry_run: bool,
    /// Print more detail (override audit, resolver notes).
    #[arg(short, long, global = true, env = "LLMDBENCH_VERBOSE")]
    pub verbose: bool,
    /// Do not create cluster-scoped objects (cluster backends; the local backend rejects it).
    #[arg(short = 'i', long, global = true, env = "LLMDBENCH_NON_ADMIN")]
    pub non_admin: bool,
    /// Backend for every stack (default: each stack's `backend:` key, else local).
    #[arg(long, global = true, env = "LLMD_BACKEND", value_name = "NAME")]
    pub backend: Option<String>,
    /// Kubeconfig of the cluster (kube backend; default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(short = 'k', long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// How long a standalone stack's pods may take to become Ready (kube backend): 900, 15m (a bare number is seconds).
    #[arg(long, global = true, default_value_t = 900, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub standalone_deploy_timeout: u64,
    /// How long a modelservice stack's releases' pods may take to become Ready (kube backend): 1500, 25m (a bare number is seconds).
    #[arg(long, global = true, default_value_t = 1500, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub modelservice_deploy_timeout: u64,
    /// How long a Gateway may take to be Programmed and an InferencePool Accepted (kube backend): 120, 2m (a bare number is seconds).
    #[arg(long, global = true, default_value_t = 120, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub gateway_deploy_timeout: u64,
    /// How long a volume may take to be Bound (kube backend): 240, 4m (a bare number is seconds).
    #[arg(long, global = true, default_value_t = 240, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub pvc_bind_timeout: u64,
    /// How long the model download Job may take (kube backend): 2400, 40m (a bare number is seconds).
    #[arg(long, global = true, default_value_t = 2400, value_name = "DURATION", value_parser = crate::sim::config::parse_whole_seconds)]
    pub download_timeout: u64,
    /// Image the native harness runs in on a cluster (kube backend; built from the Containerfile).
    #[arg(long, global = true, env = "LLMD_IMAGE", value_name = "IMAGE")]
    pub llmd_image: Option<String>,
    /// Scenario override `[stack-glob:]dotted.key=value` (repeatable, comma-separated).
    #[arg(long = "set", global = true, env = "LLMDBENCH_SET", value_name = "[STACK:]KEY=VALUE")]
    pub set: Vec<String>,
    /// YAML file deep-merged over every stack of the scenario (below --set).
    #[arg(long, visible_alias = "cc", global = true, env = "LLMDBENCH_CLUSTER_CONFIG", value_name = "FILE")]
    pub cluster_config: Option<PathBuf>,
    /// The experiment file of commands that take one: trees are looked up from it.
    #[arg(skip)]
    pub experiment_file: Option<PathBuf>,
    /// The trees, found once (see [`GlobalArgs::trees`]).
    #[arg(skip)]
    trees: std::sync::OnceLock<crate::config::tree::Trees>,
}

/// Flags shared by the lifecycle subcommands.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// Namespaces: deploy[,harness[,wva]].
    #[arg(short = 'p', long, env = "LLMDBENCH_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Model to deploy (overrides model.name).
    #[arg(short = 'm', long, env = "LLMDBENCH_MODELS", value_name = "MODEL")]
    pub models: Option<String>,
    /// Deploy method: standalone, modelservice, fma, kustomize or nok8s.
    #[arg(short = 't', long, env = "LLMDBENCH_METHODS", value_name = "METHODS")]
    pub methods: Option<String>,
    /// Only these stacks (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub stack: Vec<String>,
    /// Only these steps, e.g. 0,3-5.
    #[arg(short = 's', long, value_name = "STEPS")]
    pub step: Option<StepSelection>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render each stack's merged config and manifests into <workspace>/plan.
    Plan(plan::PlanArgs),
    /// Deploy the stacks of a plan (local backend: one process per replica), then smoketest them.
    Standup(lifecycle::StandupArgs),
    /// Check deployed stacks answer like the plan says.
    Smoketest(lifecycle::SmoketestArgs),
    /// Run benchmark harnesses against deployed stacks (or --endpoint-url).
    Run(Box<lifecycle::RunArgs>),
    /// Remove what standup created (everything the workspace's receipts list).
    Teardown(lifecycle::TeardownArgs),
    /// Full cycle per setup treatment: standup, smoketest, run every run treatment, teardown.
    Experiment(Box<experiment::ExperimentArgs>),
    /// Serve a vLLM-compatible simulator (OpenAI API, SSE, vLLM metrics).
    Sim(Box<crate::sim::SimArgs>),
    /// Build an experiment incrementally: only nodes whose inputs changed execute.
    Build(Box<build::BuildArgs>),
    /// Explain why nodes ran in the last build (or would run now, with -e).
    Why(Box<build::WhyArgs>),
    /// What a build of this experiment would execute, and why.
    Status(Box<build::StatusArgs>),
    /// Inspect and maintain the cache (.llmdcache).
    Cache(build::CacheArgs),
    /// Generate load against an OpenAI-compatible endpoint (the native harness).
    Load(Box<load::LoadArgs>),
    /// Write benchmark reports (v0.2, v0.1) for results directories and compare treatments.
    Analyze(analyze::AnalyzeArgs),
    /// Write a starter project (an experiment on examples/sim, a profile, a README) into DIR.
    Init(init::InitArgs),
    /// llmd's built-in config and workload trees: which trees are read, export them to edit.
    Config(init::ConfigArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(shell::CompletionsArgs),
    /// Write man pages (llmd.1, llmd-build.1, ...) into a directory.
    Man(shell::ManArgs),
    /// Print the JSON Schema of an input file (for editors: yaml-language-server).
    Schema(shell::SchemaArgs),
    /// What this machine can run: harnesses (where, which version, or how to install),
    /// the tokenizer external harnesses use, kubeconfig and helm.
    Doctor(doctor::DoctorArgs),
}

/// Subcommands that read none of the global flags (plans, backends, workspace): their
/// help leaves them out, and giving one there is an error rather than silently ignored.
pub const WITHOUT_GLOBAL_FLAGS: &[&str] = &["sim", "load", "analyze", "completions", "man"];

/// The command-line definition: the derived one, with the global flags hidden from the
/// subcommands that do not use them (see [`WITHOUT_GLOBAL_FLAGS`]).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // A subcommand that already has an argument of a global's id does not receive the
    // global when the command is built: give those subcommands hidden local copies.
    let hidden: Vec<clap::Arg> = cmd.get_arguments().filter(|a| a.is_global_set()).map(|a| a.clone().global(false).hide(true)).collect();
    for name in WITHOUT_GLOBAL_FLAGS {
        cmd = cmd.mut_subcommand(name, |sub| sub.args(hidden.iter().cloned()));
    }
    cmd
}

/// The ids of [`GlobalArgs`]' flags.
fn global_flag_ids() -> Vec<String> {
    GlobalArgs::augment_args(clap::Command::new("globals")).get_arguments().map(|a| a.get_id().to_string()).collect()
}

/// Parses the command line: a global flag given on the command line to a subcommand that
/// does not use it is a usage error naming both.
fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((name, sub)) = matches.subcommand()
        && WITHOUT_GLOBAL_FLAGS.contains(&name)
    {
        let sub_cmd = cmd.find_subcommand(name).expect("a matched subcommand exists");
        for id in global_flag_ids() {
            if sub.value_source(&id) == Some(clap::parser::ValueSource::CommandLine) {
                let flag = sub_cmd.get_arguments().find(|a| a.get_id() == id.as_str()).and_then(|a| a.get_long()).unwrap_or(id.as_str());
                let msg = format!("--{flag} does nothing for `llmd {name}`: it is a flag of the commands that plan, deploy or build");
                return Err(cmd.error(clap::error::ErrorKind::ArgumentConflict, msg));
            }
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// A closed stdout (`llmd status EXP | head -1`) ends the command quietly with exit 0, as
/// ripgrep does. Rust's print macros panic when the reader has gone; this hook is the one
/// place every such panic passes, so no command needs its own closed-pipe handling. Any
/// other panic keeps the default report.
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to std") && m.contains("Broken pipe")) {
            let building = crate::util::output::watched();
            crate::util::output::closed();
            if !building {
                std::process::exit(i32::from(exit::SUCCESS));
            }
            // A build stops as on Ctrl-C (tearing down what it stood up); the thread that
            // printed unwinds quietly.
            return;
        }
        default(info);
    }));
}

/// Entry point of the `llmd` binary.
pub fn main() -> ExitCode {
    crate::util::lap("llmd started");
    exit_quietly_on_closed_stdout();
    // Once, before anything may open a TLS connection (the kube client's).
    crate::backend::kube::cluster::install_crypto_provider();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::INPUT_ERROR } else { exit::SUCCESS });
        }
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    };
    crate::util::lap("llmd done");
    code
}

fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    cli.global.experiment_file = match &cli.command {
        Command::Build(a) => Some(a.experiment.clone()),
        Command::Status(a) => Some(a.experiment.clone()),
        Command::Why(a) => a.experiment.clone(),
        Command::Experiment(a) => a.experiments.clone(),
        _ => None,
    };
    match &cli.command {
        Command::Plan(args) => plan::run(&cli.global, args),
        Command::Load(args) => load::run(args),
        Command::Sim(args) => {
            let cfg = args.resolve()?;
            crate::sim::run(cfg)?;
            Ok(ExitCode::from(exit::SUCCESS))
        }
        Command::Standup(args) => lifecycle::standup(&cli.global, args),
        Command::Smoketest(args) => lifecycle::smoketest(&cli.global, args),
        Command::Run(args) => lifecycle::run(&cli.global, args),
        Command::Teardown(args) => lifecycle::teardown(&cli.global, args),
        Command::Experiment(args) => experiment::run(&cli.global, args),
        Command::Build(args) => build::run_build(&cli.global, args),
        Command::Why(args) => build::run_why(&cli.global, args),
        Command::Status(args) => build::run_status(&cli.global, args),
        Command::Cache(args) => build::run_cache(args, &cli.global.workspace_dir()),
        Command::Analyze(args) => analyze::run(args),
        Command::Init(args) => init::init(args),
        Command::Config(args) => init::config(&cli.global, args),
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
        Command::Schema(args) => shell::schema(&cli.global, args),
        Command::Doctor(args) => doctor::doctor(args),
    }
}

impl GlobalArgs {
    /// The workspace directory (default `./workspace`).
    pub fn workspace_dir(&self) -> PathBuf {
        self.workspace.clone().unwrap_or_else(|| PathBuf::from("workspace"))
    }

    /// The config tree and workload trees of this invocation (lookup order in
    /// [`crate::config::tree`]), found on first use; `--verbose` says which.
    pub fn trees(&self) -> anyhow::Result<&crate::config::tree::Trees> {
        if let Some(t) = self.trees.get() {
            return Ok(t);
        }
        let found = crate::config::tree::find(self.base_dir.as_deref(), self.experiment_file.as_deref())?;
        if self.verbose {
            eprintln!("config tree: {}", found.config);
            for w in &found.workloads {
                eprintln!("profiles: {}/workload/profiles (from {})", w.root.display(), w.source.describe());
            }
            eprintln!("profiles: {}workload/profiles (built into llmd)", crate::util::embedded::PREFIX);
        }
        Ok(self.trees.get_or_init(|| found))
    }

    /// `--backend` and `--non-admin`, as every backend reads them.
    pub fn backend_options(&self) -> crate::backend::BackendOptions {
        use std::time::Duration;
        let kube = crate::backend::kube::KubeOptions {
            cluster: crate::backend::kube::cluster::ClusterOptions { kubeconfig: self.kubeconfig.clone(), context: self.context.clone() },
            timeouts: crate::backend::kube::Timeouts {
                deploy: Duration::from_secs(self.standalone_deploy_timeout),
                modelservice: Duration::from_secs(self.modelservice_deploy_timeout),
                gateway: Duration::from_secs(self.gateway_deploy_timeout),
                pvc_bind: Duration::from_secs(self.pvc_bind_timeout),
                download: Duration::from_secs(self.download_timeout),
                ..Default::default()
            },
            llmd_image: self.llmd_image.clone(),
        };
        crate::backend::BackendOptions { name: self.backend.clone(), non_admin: self.non_admin, progress: true, kube }
    }

    /// The backend registry for this invocation.
    pub fn registry(&self) -> std::sync::Arc<crate::backend::Registry> {
        std::sync::Arc::new(crate::backend::Registry::new(self.backend_options()))
    }

    /// The spec name, or a usage error.
    pub fn require_spec(&self) -> Result<&str, InputError> {
        self.spec.as_deref().ok_or_else(|| {
            InputError::new("no specification given").help("pass --spec NAME (e.g. --spec examples/sim) or set LLMDBENCH_SPEC")
        })
    }

    /// Builds plan options from global and common flags.
    pub fn plan_options(&self, common: &CommonArgs, warnings: &mut Warnings) -> anyhow::Result<PlanOptions> {
        let spec = self.require_spec()?.to_string();
        self.plan_options_for(common, spec, warnings)
    }

    /// Plan options for `spec` (which may be empty when another source names it).
    pub fn plan_options_for(&self, common: &CommonArgs, spec: String, warnings: &mut Warnings) -> anyhow::Result<PlanOptions> {
        let mut overrides = Overrides::parse(&self.set, warnings)?;
        if let Some(path) = &self.cluster_config {
            let doc = crate::yaml::load_file(path).map_err(InputError::from)?;
            if !doc.is_null() && doc.as_map().is_none() {
                return Err(InputError::at(&doc.origin, "--cluster-config must be a YAML mapping").into());
            }
            if doc.as_map().is_some() {
                overrides = overrides.with_cluster_config(doc);
            }
        }
        let trees = self.trees()?;
        Ok(PlanOptions {
            base_dir: trees.config.root.clone(),
            profile_roots: trees.profile_roots(),
            spec,
            namespace: common.namespace.clone(),
            models: common.models.clone(),
            methods: common.methods.clone(),
            gateway_class: None,
            monitoring: None,
            stack_filter: common.stack.clone(),
            overrides,
            setup_overrides: None,
            hf_token: PlanOptions::hf_token_from_env(),
            verbose: self.verbose,
        })
    }
}

/// Prints warnings to stderr.
pub fn print_warnings(warnings: &Warnings) {
    for w in warnings.iter() {
        eprintln!("warning: {w}");
    }
}
