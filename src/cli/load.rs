//! `llmd load`: run the native load generator against any OpenAI-compatible endpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::exit;
use crate::error::InputError;
use crate::harness::dataset::DatasetSpec;
use crate::harness::load::{Api, Arrival, LoadProfile, LoadSpec, Stage, Warmup};
use crate::http::client::Endpoint;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Server base URL, e.g. http://127.0.0.1:8000.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Model name (default: the first model the server lists).
    #[arg(long)]
    pub model: Option<String>,
    /// A native profile (YAML); flags below override what it says.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// completions or chat.
    #[arg(long, value_parser = ["completions", "chat"])]
    pub api: Option<String>,
    /// Ask for non-streamed responses.
    #[arg(long)]
    pub no_stream: bool,
    /// random, shared-prefix or a prompts file (ShareGPT JSON or JSONL).
    #[arg(long, value_parser = ["random", "shared-prefix", "file"])]
    pub dataset: Option<String>,
    /// Prompt length in tokens (random dataset; default 128).
    #[arg(long)]
    pub input_len: Option<usize>,
    /// Completion length in tokens, sent as max_tokens (default 64).
    #[arg(long)]
    pub output_len: Option<usize>,
    /// Lengths vary uniformly in [L(1-r), L(1+r)].
    #[arg(long)]
    pub range_ratio: Option<f64>,
    /// Prompts for `--dataset file`: a ShareGPT JSON list or JSONL lines with `prompt`.
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    /// shared-prefix: groups x prompts per group, system prompt and question lengths.
    #[arg(long)]
    pub groups: Option<usize>,
    /// shared-prefix: prompts per group (default 10).
    #[arg(long)]
    pub prompts_per_group: Option<usize>,
    /// shared-prefix: tokens of each group's shared system prompt (default 512).
    #[arg(long)]
    pub system_prompt_len: Option<usize>,
    /// shared-prefix: tokens of each question after the system prompt (default 64).
    #[arg(long)]
    pub question_len: Option<usize>,
    /// Open loop: requests per second.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop: concurrent users.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Stage length: 30s, 500ms, 2m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::config::parse_seconds)]
    pub duration: Option<f64>,
    /// Stage length in requests.
    #[arg(long)]
    pub requests: Option<usize>,
    /// How long requests still in flight when a duration stage ends may take before they
    /// are cancelled (counted incomplete): 5s, 500ms (a bare number is seconds; default 5s).
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::config::parse_seconds)]
    pub grace: Option<f64>,
    /// Longest one request may take: 600s, 2m (a bare number is seconds; default 600s).
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::config::parse_seconds)]
    pub request_timeout: Option<f64>,
    /// Cap on requests in flight (open loop); others wait in the client queue.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Arrival process of an open loop (default poisson).
    #[arg(long, value_parser = ["constant", "poisson", "gamma"])]
    pub arrival: Option<String>,
    /// Gamma shape (1 = Poisson).
    #[arg(long)]
    pub burstiness: Option<f64>,
    /// The first N requests are sent but left out of the statistics.
    #[arg(long)]
    pub warmup_requests: Option<usize>,
    /// Seed of the prompts and arrival times (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// tokenizer.json used to build token-exact prompts (default: embedded cl100k_base).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Where to write records.jsonl and report.json.
    #[arg(long, short = 'o', default_value = "llmd-load")]
    pub output: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl LoadArgs {
    fn profile(&self) -> Result<LoadProfile> {
        let mut p = match &self.profile {
            Some(path) => read_native_profile(path)?,
            None => LoadProfile {
                endpoint: None,
                model: None,
                api: Api::Completions,
                stream: true,
                ignore_eos: true,
                dataset: DatasetSpec::default(),
                load: LoadSpec {
                    arrival: Arrival::Poisson,
                    burstiness: 1.0,
                    max_concurrency: None,
                    stages: vec![],
                    warmup: Warmup::default(),
                    grace: crate::harness::load::default_grace(),
                },
                seed: 0,
                request_timeout: 600.0,
                tokenizer: None,
            },
        };
        if let Some(a) = &self.api {
            p.api = if a == "chat" { Api::Chat } else { Api::Completions };
        }
        if self.no_stream {
            p.stream = false;
        }
        if let Some(d) = &self.dataset {
            p.dataset = match d.as_str() {
                "shared-prefix" => DatasetSpec::SharedPrefix {
                    groups: self.groups.unwrap_or(10),
                    prompts_per_group: self.prompts_per_group.unwrap_or(10),
                    system_prompt_len: self.system_prompt_len.unwrap_or(512),
                    question_len: self.question_len.unwrap_or(64),
                    output_len: self.output_len.unwrap_or(64),
                },
                "file" => {
                    let path = self.prompts_file.clone().ok_or_else(|| InputError::new("--dataset file needs --prompts-file"))?;
                    if !path.is_file() {
                        return Err(InputError::new(format!("--prompts-file {}: not a file", path.display()))
                            .help("give a ShareGPT JSON list or a JSONL file of {\"prompt\": ...} lines")
                            .into());
                    }
                    DatasetSpec::File { path, output_len: self.output_len }
                }
                _ => DatasetSpec::default(),
            };
        }
        if let DatasetSpec::Random { input_len, output_len, range_ratio, .. } = &mut p.dataset {
            if let Some(v) = self.input_len {
                *input_len = v;
            }
            if let Some(v) = self.output_len {
                *output_len = v;
            }
            if let Some(v) = self.range_ratio {
                *range_ratio = v;
            }
        }
        // Each stage flag replaces the one field it names (rate and concurrency replace
        // each other: a stage has one of them); the rest of the profile's stage stays.
        if self.rate.is_some() || self.concurrency.is_some() || self.duration.is_some() || self.requests.is_some() {
            match p.load.stages.len() {
                0 => p.load.stages.push(Stage::default()),
                1 => {}
                n => {
                    let file = self.profile.as_deref().map_or_else(String::new, |f| format!("{} ", f.display()));
                    return Err(InputError::new(format!(
                        "--rate, --concurrency, --duration and --requests set one stage, but the profile {file}has {n} stages"
                    ))
                    .help("edit the stages in the profile (load.stages), or leave out --profile")
                    .into());
                }
            }
            let stage = &mut p.load.stages[0];
            if let Some(rate) = self.rate {
                (stage.rate, stage.concurrency) = (Some(rate), None);
            }
            if let Some(users) = self.concurrency {
                (stage.rate, stage.concurrency) = (None, Some(users));
            }
            stage.duration = self.duration.or(stage.duration);
            stage.requests = self.requests.or(stage.requests);
        }
        if let Some(g) = self.grace {
            p.load.grace = g;
        }
        if let Some(t) = self.request_timeout {
            p.request_timeout = t;
        }
        if p.load.stages.is_empty() {
            return Err(InputError::new("no load given")
                .help("pass --rate R or --concurrency N, with --duration S or --requests N (or a --profile)")
                .into());
        }
        if let Some(a) = &self.arrival {
            p.load.arrival = match a.as_str() {
                "constant" => Arrival::Constant,
                "gamma" => Arrival::Gamma,
                _ => Arrival::Poisson,
            };
        }
        if let Some(b) = self.burstiness {
            p.load.burstiness = b;
        }
        if self.max_concurrency.is_some() {
            p.load.max_concurrency = self.max_concurrency;
        }
        if let Some(w) = self.warmup_requests {
            p.load.warmup.requests = w;
        }
        if let Some(s) = self.seed {
            p.seed = s;
        }
        if self.tokenizer.is_some() {
            p.tokenizer = self.tokenizer.clone();
        }
        p.validate().map_err(|e| InputError::new(e.to_string()))?;
        Ok(p)
    }
}

/// Reads a native profile (YAML) into a [`LoadProfile`]; errors name the file.
pub fn read_native_profile(path: &std::path::Path) -> Result<LoadProfile> {
    let node = crate::yaml::load_file(path).map_err(InputError::from)?;
    crate::harness::profile::parse_native_profile(&node, &path.display().to_string())
}

pub fn run(args: &LoadArgs) -> Result<ExitCode> {
    let profile = args.profile()?;
    let url = args
        .endpoint
        .clone()
        .or_else(|| profile.endpoint.clone())
        .ok_or_else(|| InputError::new("no endpoint").help("pass --endpoint http://HOST:PORT"))?;
    let endpoint = Endpoint::parse(&url).map_err(InputError::new)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let model = match args.model.clone().or_else(|| profile.model.clone()) {
            Some(m) => m,
            None => crate::http::first_model(&endpoint).await?,
        };
        if !args.quiet {
            eprintln!("llmd load: {} against {} (model {model}); records in {}", describe(&profile), endpoint.url(), args.output.display());
        }
        crate::harness::run_native(&profile, endpoint.clone(), &model, &args.output, args.quiet).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::from(if report.requests.completed == 0 && report.requests.total > 0 { exit::FAILURE } else { exit::SUCCESS }))
}

fn describe(p: &LoadProfile) -> String {
    p.load
        .stages
        .iter()
        .map(|s| {
            let load = match (s.rate, s.concurrency) {
                (Some(r), _) => format!("{r} req/s"),
                (_, Some(c)) => format!("{c} users"),
                _ => "?".into(),
            };
            let end = match (s.duration, s.requests) {
                (Some(d), Some(n)) => format!("{d} s or {n} requests"),
                (Some(d), None) => format!("{d} s"),
                (None, Some(n)) => format!("{n} requests"),
                _ => String::new(),
            };
            format!("{load} for {end}")
        })
        .collect::<Vec<_>>()
        .join(", then ")
}
