//! `llmd sim` settings: llm-d-inference-sim's flag names, a `--config` YAML file and a
//! few environment variables, with precedence CLI > environment > YAML > defaults.
//!
//! Durations accept Go-style units (`100ms`, `1.5s`, `250us`, `2m`); a bare number means
//! milliseconds, as in llm-d-inference-sim.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::InputError;
use crate::yaml::{Node, Value, load_file};

/// Command-line flags of `llmd sim`. Every flag is optional so that the environment and
/// the YAML file can fill in what the command line leaves out.
#[derive(Debug, Clone, Default, Args)]
pub struct SimArgs {
    /// YAML file with any of these settings (kebab-case or camelCase keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Port to listen on (data-parallel ranks use port+1, port+2, ...).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind.
    #[arg(long)]
    pub host: Option<String>,
    /// Model name (env SIM_MODEL).
    #[arg(long)]
    pub model: Option<String>,
    /// Names the model is served as (comma-separated; default: --model).
    #[arg(long, value_delimiter = ',')]
    pub served_model_name: Option<Vec<String>>,
    /// `random` generates text; `echo` streams the prompt back.
    #[arg(long, value_parser = ["random", "echo"])]
    pub mode: Option<String>,
    /// Latency model: `constant` (TTFT/ITL), `per-token` (prefill cost per token), or `step` (a batching engine).
    #[arg(long, visible_alias = "engine", value_parser = ["constant", "per-token", "step"])]
    pub latency_calculator: Option<String>,
    /// Time to first token (constant model). A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub time_to_first_token: Option<String>,
    /// Standard deviation of the time to first token. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub time_to_first_token_std_dev: Option<String>,
    /// Time between tokens (constant and per-token models). A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub inter_token_latency: Option<String>,
    /// Standard deviation of the inter-token latency. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub inter_token_latency_std_dev: Option<String>,
    /// Fixed prefill cost in the per-token model. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub prefill_overhead: Option<String>,
    /// Prefill cost per uncached prompt token in the per-token model. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub prefill_time_per_token: Option<String>,
    /// Standard deviation of the prefill time (per-token model). A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub prefill_time_std_dev: Option<String>,
    /// Latency multiplier when all slots are busy (>= 1; llm-d's load factor).
    #[arg(long)]
    pub time_factor_under_load: Option<f64>,
    /// Step engine: fixed cost of one iteration. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub step_base_time: Option<String>,
    /// Step engine: cost per prefill token in an iteration. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub step_prefill_time_per_token: Option<String>,
    /// Step engine: cost per decoding sequence in an iteration. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub step_decode_time_per_seq: Option<String>,
    /// Step engine: cost per context token of the running batch in an iteration. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub step_context_time_per_token: Option<String>,
    /// Step engine: token budget of one iteration (chunked prefill).
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Requests processed at once; more wait in a FIFO queue.
    #[arg(long)]
    pub max_num_seqs: Option<usize>,
    /// Context length in tokens: longer prompt + max_tokens is refused with 400.
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Waiting requests beyond this are rejected with 429.
    #[arg(long)]
    pub max_waiting_queue_length: Option<usize>,
    /// Tokens per SSE event.
    #[arg(long)]
    pub stream_interval: Option<usize>,
    /// Track KV blocks and prefix-cache hits (`--enable-kvcache` or `--enable-kvcache=false`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_kvcache: Option<bool>,
    /// KV-cache capacity in blocks.
    #[arg(long)]
    pub kv_cache_size: Option<usize>,
    /// Tokens per KV-cache block.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Seed of the prefix-cache block hashes (vLLM's PYTHONHASHSEED).
    #[arg(long)]
    pub hash_seed: Option<String>,
    /// Percentage (0-100) of requests answered with an injected error.
    #[arg(long)]
    pub failure_injection_rate: Option<f64>,
    /// Injected error kinds: rate_limit, invalid_api_key, context_length, server_error, invalid_request, model_not_found.
    #[arg(long, value_delimiter = ',')]
    pub failure_types: Option<Vec<String>>,
    /// Percentage of streams aborted mid-way (connection dropped) after --abort-after-tokens tokens.
    #[arg(long)]
    pub abort_rate: Option<f64>,
    /// Tokens an aborted stream sends before the connection drops.
    #[arg(long)]
    pub abort_after_tokens: Option<usize>,
    /// Percentage of streams that stall for --stall-duration at token --stall-at-token.
    #[arg(long)]
    pub stall_rate: Option<f64>,
    /// Token after which a stalled stream pauses.
    #[arg(long)]
    pub stall_at_token: Option<usize>,
    /// How long a stalled stream pauses. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub stall_duration: Option<String>,
    /// Seed of generated text, jitter and injected faults (reproducible runs).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Independent engines on consecutive ports (1-8).
    #[arg(long)]
    pub data_parallel_size: Option<usize>,
    /// `/health/ready` answers 503 (and inference is refused) until this has passed. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub startup_duration: Option<String>,
    /// A Hugging Face tokenizer.json; the default is the embedded cl100k_base encoding.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Write one JSON line per request (arrival, admission, every chunk's send time).
    #[arg(long, value_name = "FILE.jsonl")]
    pub journal: Option<PathBuf>,
    /// Largest request body accepted, in MiB.
    #[arg(long)]
    pub max_request_body_size_mb: Option<usize>,
    /// Echo an `x-request-id` header on responses.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_request_id_headers: Option<bool>,
    /// How long SIGTERM waits for in-flight streams. A duration: 100ms, 1.5s, 250us (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Length of the listen queue of not-yet-accepted connections (uvicorn's default, 2048;
    /// the kernel caps it at net.core.somaxconn).
    #[arg(long, value_name = "CONNECTIONS")]
    pub backlog: Option<u32>,
}

/// Which latency model runs requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyModel {
    Constant,
    PerToken,
    Step,
}

/// Which text a response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Random,
    Echo,
}

/// An injected failure kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    RateLimit,
    InvalidApiKey,
    ContextLength,
    ServerError,
    InvalidRequest,
    ModelNotFound,
}

impl FailureKind {
    pub const ALL: [FailureKind; 6] = [
        FailureKind::RateLimit,
        FailureKind::InvalidApiKey,
        FailureKind::ContextLength,
        FailureKind::ServerError,
        FailureKind::InvalidRequest,
        FailureKind::ModelNotFound,
    ];

    pub fn parse(s: &str) -> Option<FailureKind> {
        Some(match s.trim() {
            "rate_limit" | "429" => FailureKind::RateLimit,
            "invalid_api_key" | "401" => FailureKind::InvalidApiKey,
            "context_length" => FailureKind::ContextLength,
            "server_error" | "503" => FailureKind::ServerError,
            "invalid_request" | "400" => FailureKind::InvalidRequest,
            "model_not_found" | "404" => FailureKind::ModelNotFound,
            _ => return None,
        })
    }

    /// HTTP status, OpenAI error type and message.
    pub fn describe(self) -> (u16, &'static str, &'static str) {
        match self {
            FailureKind::RateLimit => (429, "RateLimitError", "Rate limit reached (injected failure)"),
            FailureKind::InvalidApiKey => (401, "AuthenticationError", "Incorrect API key provided (injected failure)"),
            FailureKind::ContextLength => (400, "BadRequestError", "This model's maximum context length is exceeded (injected failure)"),
            FailureKind::ServerError => (503, "ServiceUnavailableError", "The server is overloaded (injected failure)"),
            FailureKind::InvalidRequest => (400, "BadRequestError", "Invalid request (injected failure)"),
            FailureKind::ModelNotFound => (404, "NotFoundError", "The model does not exist (injected failure)"),
        }
    }
}

/// Fully resolved simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub host: String,
    pub port: u16,
    pub model: String,
    pub served_model_names: Vec<String>,
    pub mode: Mode,
    pub latency: LatencyModel,
    pub ttft: Duration,
    pub ttft_std_dev: Duration,
    pub itl: Duration,
    pub itl_std_dev: Duration,
    pub prefill_overhead: Duration,
    pub prefill_time_per_token: Duration,
    pub prefill_time_std_dev: Duration,
    pub time_factor_under_load: f64,
    pub step_base_time: Duration,
    pub step_prefill_time_per_token: Duration,
    pub step_decode_time_per_seq: Duration,
    pub step_context_time_per_token: Duration,
    pub max_num_batched_tokens: usize,
    pub max_num_seqs: usize,
    pub max_model_len: usize,
    pub max_waiting_queue_length: usize,
    pub stream_interval: usize,
    pub enable_kvcache: bool,
    pub kv_cache_size: usize,
    pub block_size: usize,
    pub hash_seed: u64,
    pub failure_injection_rate: f64,
    pub failure_types: Vec<FailureKind>,
    pub abort_rate: f64,
    pub abort_after_tokens: usize,
    pub stall_rate: f64,
    pub stall_at_token: usize,
    pub stall_duration: Duration,
    pub seed: u64,
    pub data_parallel_size: usize,
    pub startup_duration: Duration,
    pub tokenizer: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    pub max_request_body_bytes: usize,
    pub enable_request_id_headers: bool,
    pub shutdown_grace: Duration,
    pub backlog: u32,
    /// `x-inference-pod`, `x-inference-namespace` from POD_NAME / POD_NAMESPACE.
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: "127.0.0.1".into(),
            port: 8000,
            model: String::new(),
            served_model_names: Vec::new(),
            mode: Mode::Random,
            latency: LatencyModel::Constant,
            ttft: Duration::ZERO,
            ttft_std_dev: Duration::ZERO,
            itl: Duration::ZERO,
            itl_std_dev: Duration::ZERO,
            prefill_overhead: Duration::ZERO,
            prefill_time_per_token: Duration::ZERO,
            prefill_time_std_dev: Duration::ZERO,
            time_factor_under_load: 1.0,
            step_base_time: Duration::from_millis(5),
            step_prefill_time_per_token: Duration::from_micros(20),
            step_decode_time_per_seq: Duration::from_micros(200),
            step_context_time_per_token: Duration::ZERO,
            max_num_batched_tokens: 8192,
            max_num_seqs: 5,
            max_model_len: 1024,
            max_waiting_queue_length: 1000,
            stream_interval: 1,
            enable_kvcache: false,
            kv_cache_size: 1024,
            block_size: 16,
            hash_seed: 0,
            failure_injection_rate: 0.0,
            failure_types: FailureKind::ALL.to_vec(),
            abort_rate: 0.0,
            abort_after_tokens: 1,
            stall_rate: 0.0,
            stall_at_token: 1,
            stall_duration: Duration::from_millis(500),
            seed: 0,
            data_parallel_size: 1,
            startup_duration: Duration::ZERO,
            tokenizer: None,
            journal: None,
            max_request_body_bytes: 4 << 20,
            enable_request_id_headers: false,
            shutdown_grace: Duration::from_secs(30),
            backlog: 2048,
            pod_name: None,
            pod_namespace: None,
        }
    }
}

/// Parses `100ms`, `1.5s`, `250us`, `2m`, `1h`; a bare number is milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_bare(text, 1e-3)
}

/// Parses a duration with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`); a bare number is
/// `bare` seconds each (1e-3: milliseconds, as llm-d-inference-sim; 1.0: seconds).
pub fn parse_duration_bare(text: &str, bare: f64) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("'{text}' is not a duration (e.g. 100ms, 1.5s)"))?;
    let secs = match unit.trim() {
        "" => value * bare,
        "ms" => value / 1e3,
        "s" => value,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("'{text}': unknown duration unit '{other}' (use ns, us, ms, s, m, h)")),
    };
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("'{text}' is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A clap value parser for whole-second durations (`900`, `15m`, `90s`): rounded up.
pub fn parse_whole_seconds(text: &str) -> Result<u64, String> {
    parse_duration_bare(text, 1.0).map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// A clap value parser for durations whose bare numbers are seconds (`30`, `30s`, `500ms`).
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    parse_duration_bare(text, 1.0).map(|d| d.as_secs_f64())
}

/// The flags a `--config` file may set, as `(kebab-case, camelCase, flag)`: every flag
/// of `llmd sim` but `--config` itself. The flag definitions are the one source of the
/// file's keys, their types and help ([`config_schema`]).
fn config_keys() -> Vec<(String, String, clap::Arg)> {
    use clap::Args as _;
    let cmd = SimArgs::augment_args(clap::Command::new("sim"));
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(|l| (l.to_string(), a.clone())))
        .filter(|(long, _)| long != "config" && long != "help")
        .map(|(long, a)| (long.clone(), camel(&long), a))
        .collect()
}

fn camel(kebab: &str) -> String {
    kebab.split('-').enumerate().map(|(i, p)| if i == 0 { p.to_string() } else { p[..1].to_uppercase() + &p[1..] }).collect()
}

/// Rejects keys no flag has, at the key's line, with the nearest flag name.
fn check_config_keys(doc: &Node) -> Result<(), InputError> {
    let keys = config_keys();
    for (key, value) in doc.as_map().into_iter().flatten() {
        if !keys.iter().any(|(kebab, camel, _)| key == kebab || key == camel) {
            let mut e = InputError::at(&value.origin, format!("unknown key '{key}' in the simulator config"));
            if let Some(s) = crate::error::did_you_mean(key, keys.iter().map(|(k, _, _)| k.as_str())) {
                e = e.help(format!("did you mean '{s}'?"));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The JSON Schema of a `llmd sim --config` file, from the flags' types, value names and
/// help: durations accept a number (milliseconds) or a string with a unit.
pub fn config_schema() -> serde_json::Value {
    use serde_json::json;
    use std::any::TypeId;
    let mut props = serde_json::Map::new();
    for (kebab, camel, arg) in config_keys() {
        let parser = arg.get_value_parser();
        let id = parser.type_id();
        let choices: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
        let is_duration = arg.get_value_names().is_some_and(|n| n.iter().any(|n| n.as_str() == "DURATION"));
        let mut schema = if is_duration {
            json!({"anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*[0-9.]+\s*(ns|us|µs|ms|s|m|h)?\s*$"}
            ]})
        } else if arg.get_value_delimiter().is_some() {
            json!({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]})
        } else if id == TypeId::of::<bool>() {
            json!({"type": "boolean"})
        } else if id == TypeId::of::<u16>() || id == TypeId::of::<u64>() || id == TypeId::of::<usize>() {
            json!({"type": "integer", "minimum": 0})
        } else if id == TypeId::of::<f64>() {
            json!({"type": "number"})
        } else if !choices.is_empty() {
            json!({"type": "string", "enum": choices})
        } else {
            json!({"type": "string"})
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_else(|| format!("--{kebab}"));
        schema["description"] = json!(help);
        props.insert(kebab.clone(), schema.clone());
        if camel != kebab {
            schema["description"] = json!(format!("{help} (camelCase spelling of {kebab})"));
            props.insert(camel, schema);
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://llmd.dev/schemas/sim-config.json",
        "title": "llmd sim --config",
        "description": "Settings of the simulator: any flag of `llmd sim` by its long name (kebab-case or camelCase). Flags and SIM_* variables override the file.",
        "type": "object",
        "properties": props,
        "additionalProperties": false,
    })
}

/// Settings from a `--config` YAML file: keys in kebab-case or camelCase.
struct YamlSettings(Node);

impl YamlSettings {
    fn get(&self, kebab: &str) -> Option<&Node> {
        self.0.get(kebab).or_else(|| self.0.get(&camel(kebab)))
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(|n| match &n.value {
            Value::Str(s) => s.clone(),
            _ => crate::yaml::str_node(n),
        })
    }
}

/// The flag's value, else the YAML key's.
macro_rules! text {
    ($args:ident, $yaml:ident, $field:ident, $key:literal) => {
        $args.$field.clone().map(|v| v.to_string()).or_else(|| $yaml.text($key))
    };
}

fn bad(key: &str, v: &str, why: &str) -> InputError {
    InputError::new(format!("sim setting '{key}': invalid value '{v}': {why}"))
}

fn duration(key: &str, v: Option<String>, into: &mut Duration) -> Result<(), InputError> {
    if let Some(v) = v {
        *into = parse_duration(&v).map_err(|e| InputError::new(format!("sim setting '{key}': {e}")))?;
    }
    Ok(())
}

fn number<T: std::str::FromStr>(key: &str, v: Option<String>, into: &mut T) -> Result<(), InputError> {
    if let Some(v) = v {
        *into = v.trim().parse().map_err(|_| InputError::new(format!("sim setting '{key}': '{v}' is not a valid number")))?;
    }
    Ok(())
}

fn boolean(key: &str, v: Option<String>, into: &mut bool) -> Result<(), InputError> {
    if let Some(v) = v {
        *into = match v.trim().to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(InputError::new(format!("sim setting '{key}': '{v}' is not a boolean"))),
        };
    }
    Ok(())
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// A list setting: a YAML sequence, or a comma-separated string.
fn list(yaml: &YamlSettings, key: &str) -> Option<Vec<String>> {
    yaml.get(key).map(|n| match n.as_seq() {
        Some(items) => items.iter().map(crate::yaml::str_node).collect(),
        None => crate::yaml::str_node(n).split(',').map(|s| s.trim().to_string()).collect(),
    })
}

impl SimArgs {
    /// Resolves CLI > environment > YAML > defaults and validates the result.
    pub fn resolve(&self) -> Result<SimConfig, InputError> {
        let yaml = match &self.config {
            Some(path) => {
                let node = load_file(path)?;
                if !node.is_null() && node.as_map().is_none() {
                    return Err(InputError::at(&node.origin, "the simulator config file must be a YAML mapping"));
                }
                check_config_keys(&node)?;
                YamlSettings(node)
            }
            None => YamlSettings(Node::null()),
        };
        let mut c = SimConfig::default();
        self.resolve_serving(&yaml, &mut c)?;
        self.resolve_timing(&yaml, &mut c)?;
        self.resolve_capacity(&yaml, &mut c)?;
        self.resolve_faults(&yaml, &mut c)?;
        c.validate()?;
        Ok(c)
    }

    /// What is served, where, and the process's own settings.
    fn resolve_serving(&self, yaml: &YamlSettings, c: &mut SimConfig) -> Result<(), InputError> {
        c.model = self.model.clone().or_else(|| env("SIM_MODEL")).or_else(|| yaml.text("model")).unwrap_or_default();
        if c.model.is_empty() {
            return Err(InputError::new("the simulator needs a model name").help("pass --model NAME (or set SIM_MODEL)"));
        }
        c.served_model_names = self.served_model_name.clone().or_else(|| list(yaml, "served-model-name")).unwrap_or_default();
        c.served_model_names.retain(|n| !n.is_empty());
        if c.served_model_names.is_empty() {
            c.served_model_names = vec![c.model.clone()];
        }
        if let Some(h) = text!(self, yaml, host, "host") {
            c.host = h;
        }
        if c.host.parse::<std::net::IpAddr>().is_err() {
            return Err(bad("host", &c.host, "expected an IP address, e.g. 127.0.0.1, 0.0.0.0 or ::"));
        }
        number("port", text!(self, yaml, port, "port"), &mut c.port)?;
        if let Some(m) = text!(self, yaml, mode, "mode") {
            c.mode = match m.as_str() {
                "random" => Mode::Random,
                "echo" => Mode::Echo,
                other => return Err(bad("mode", other, "expected random or echo")),
            };
        }
        number("seed", text!(self, yaml, seed, "seed"), &mut c.seed)?;
        number("data-parallel-size", text!(self, yaml, data_parallel_size, "data-parallel-size"), &mut c.data_parallel_size)?;
        duration("startup-duration", text!(self, yaml, startup_duration, "startup-duration"), &mut c.startup_duration)?;
        c.tokenizer = self.tokenizer.clone().or_else(|| yaml.text("tokenizer").map(PathBuf::from));
        if let Some(t) = c.tokenizer.as_ref().filter(|t| !t.is_file()) {
            return Err(InputError::new(format!("--tokenizer {}: no such file", t.display()))
                .help("give a Hugging Face tokenizer.json (without --tokenizer the built-in cl100k_base is used)"));
        }
        c.journal = self.journal.clone().or_else(|| yaml.text("journal").map(PathBuf::from));
        let mut body_mb = c.max_request_body_bytes >> 20;
        number("max-request-body-size-mb", text!(self, yaml, max_request_body_size_mb, "max-request-body-size-mb"), &mut body_mb)?;
        c.max_request_body_bytes = body_mb << 20;
        let ids = text!(self, yaml, enable_request_id_headers, "enable-request-id-headers");
        boolean("enable-request-id-headers", ids, &mut c.enable_request_id_headers)?;
        duration("shutdown-grace", text!(self, yaml, shutdown_grace, "shutdown-grace"), &mut c.shutdown_grace)?;
        c.pod_name = env("POD_NAME");
        c.pod_namespace = env("POD_NAMESPACE");
        Ok(())
    }

    /// Latencies and the latency model that uses them.
    fn resolve_timing(&self, yaml: &YamlSettings, c: &mut SimConfig) -> Result<(), InputError> {
        duration("time-to-first-token", text!(self, yaml, time_to_first_token, "time-to-first-token"), &mut c.ttft)?;
        let ttft_sd = text!(self, yaml, time_to_first_token_std_dev, "time-to-first-token-std-dev");
        duration("time-to-first-token-std-dev", ttft_sd, &mut c.ttft_std_dev)?;
        duration("inter-token-latency", text!(self, yaml, inter_token_latency, "inter-token-latency"), &mut c.itl)?;
        let itl_sd = text!(self, yaml, inter_token_latency_std_dev, "inter-token-latency-std-dev");
        duration("inter-token-latency-std-dev", itl_sd, &mut c.itl_std_dev)?;
        duration("prefill-overhead", text!(self, yaml, prefill_overhead, "prefill-overhead"), &mut c.prefill_overhead)?;
        let per_token = text!(self, yaml, prefill_time_per_token, "prefill-time-per-token");
        duration("prefill-time-per-token", per_token, &mut c.prefill_time_per_token)?;
        duration("prefill-time-std-dev", text!(self, yaml, prefill_time_std_dev, "prefill-time-std-dev"), &mut c.prefill_time_std_dev)?;
        let factor = text!(self, yaml, time_factor_under_load, "time-factor-under-load");
        number("time-factor-under-load", factor, &mut c.time_factor_under_load)?;
        duration("step-base-time", text!(self, yaml, step_base_time, "step-base-time"), &mut c.step_base_time)?;
        let prefill = text!(self, yaml, step_prefill_time_per_token, "step-prefill-time-per-token");
        duration("step-prefill-time-per-token", prefill, &mut c.step_prefill_time_per_token)?;
        let decode = text!(self, yaml, step_decode_time_per_seq, "step-decode-time-per-seq");
        duration("step-decode-time-per-seq", decode, &mut c.step_decode_time_per_seq)?;
        let context = text!(self, yaml, step_context_time_per_token, "step-context-time-per-token");
        duration("step-context-time-per-token", context, &mut c.step_context_time_per_token)?;
        c.latency = match text!(self, yaml, latency_calculator, "latency-calculator").as_deref() {
            Some("constant") => LatencyModel::Constant,
            Some("per-token") => LatencyModel::PerToken,
            Some("step") => LatencyModel::Step,
            // llm-d-inference-sim's legacy auto-selection: per-token when its knobs are set.
            None | Some("") => {
                if c.prefill_overhead > Duration::ZERO || c.prefill_time_per_token > Duration::ZERO {
                    LatencyModel::PerToken
                } else {
                    LatencyModel::Constant
                }
            }
            Some(other) => return Err(bad("latency-calculator", other, "expected constant, per-token or step")),
        };
        Ok(())
    }

    /// Batching, queueing, streaming and the KV cache.
    fn resolve_capacity(&self, yaml: &YamlSettings, c: &mut SimConfig) -> Result<(), InputError> {
        number(
            "max-num-batched-tokens",
            text!(self, yaml, max_num_batched_tokens, "max-num-batched-tokens"),
            &mut c.max_num_batched_tokens,
        )?;
        number("max-num-seqs", text!(self, yaml, max_num_seqs, "max-num-seqs"), &mut c.max_num_seqs)?;
        number("backlog", text!(self, yaml, backlog, "backlog"), &mut c.backlog)?;
        number("max-model-len", text!(self, yaml, max_model_len, "max-model-len"), &mut c.max_model_len)?;
        let queue = text!(self, yaml, max_waiting_queue_length, "max-waiting-queue-length");
        number("max-waiting-queue-length", queue, &mut c.max_waiting_queue_length)?;
        number("stream-interval", text!(self, yaml, stream_interval, "stream-interval"), &mut c.stream_interval)?;
        boolean("enable-kvcache", text!(self, yaml, enable_kvcache, "enable-kvcache"), &mut c.enable_kvcache)?;
        number("kv-cache-size", text!(self, yaml, kv_cache_size, "kv-cache-size"), &mut c.kv_cache_size)?;
        number("block-size", text!(self, yaml, block_size, "block-size"), &mut c.block_size)?;
        if let Some(s) = text!(self, yaml, hash_seed, "hash-seed").or_else(|| env("PYTHONHASHSEED")) {
            c.hash_seed = s.trim().parse().unwrap_or_else(|_| crate::util::rng::hash_str(&s));
        }
        Ok(())
    }

    /// Injected failures, aborts and stalls.
    fn resolve_faults(&self, yaml: &YamlSettings, c: &mut SimConfig) -> Result<(), InputError> {
        number(
            "failure-injection-rate",
            text!(self, yaml, failure_injection_rate, "failure-injection-rate"),
            &mut c.failure_injection_rate,
        )?;
        if let Some(types) = self.failure_types.clone().or_else(|| list(yaml, "failure-types")) {
            let mut kinds = Vec::new();
            for t in types.iter().filter(|t| !t.trim().is_empty()) {
                let expected = "expected rate_limit, invalid_api_key, context_length, server_error, invalid_request or model_not_found";
                kinds.push(FailureKind::parse(t).ok_or_else(|| bad("failure-types", t, expected))?);
            }
            if !kinds.is_empty() {
                c.failure_types = kinds;
            }
        }
        number("abort-rate", text!(self, yaml, abort_rate, "abort-rate"), &mut c.abort_rate)?;
        number("abort-after-tokens", text!(self, yaml, abort_after_tokens, "abort-after-tokens"), &mut c.abort_after_tokens)?;
        number("stall-rate", text!(self, yaml, stall_rate, "stall-rate"), &mut c.stall_rate)?;
        number("stall-at-token", text!(self, yaml, stall_at_token, "stall-at-token"), &mut c.stall_at_token)?;
        duration("stall-duration", text!(self, yaml, stall_duration, "stall-duration"), &mut c.stall_duration)?;
        Ok(())
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), InputError> {
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(InputError::new(format!("sim settings: {msg}"))) };
        check(self.max_num_seqs >= 1, "max-num-seqs must be at least 1")?;
        check(self.backlog >= 1, "backlog must be at least 1")?;
        check(self.max_model_len >= 1, "max-model-len must be at least 1")?;
        check((1..=8).contains(&self.data_parallel_size), "data-parallel-size must be between 1 and 8")?;
        check((0.0..=100.0).contains(&self.failure_injection_rate), "failure-injection-rate is a percentage (0-100)")?;
        check((0.0..=100.0).contains(&self.abort_rate), "abort-rate is a percentage (0-100)")?;
        check((0.0..=100.0).contains(&self.stall_rate), "stall-rate is a percentage (0-100)")?;
        check(self.time_factor_under_load >= 1.0, "time-factor-under-load must be >= 1")?;
        check((1..=1024).contains(&self.block_size), "block-size must be between 1 and 1024")?;
        check(self.kv_cache_size >= 1, "kv-cache-size must be at least 1 block")?;
        check(self.stream_interval >= 1, "stream-interval must be at least 1")?;
        check(self.max_num_batched_tokens >= 1, "max-num-batched-tokens must be at least 1")?;
        check(
            self.ttft_std_dev.as_secs_f64() <= 0.3 * self.ttft.as_secs_f64() + 1e-12,
            "time-to-first-token-std-dev must be at most 30% of time-to-first-token",
        )?;
        check(
            self.itl_std_dev.as_secs_f64() <= 0.3 * self.itl.as_secs_f64() + 1e-12,
            "inter-token-latency-std-dev must be at most 30% of inter-token-latency",
        )?;
        check(self.port as usize + self.data_parallel_size - 1 <= u16::MAX as usize, "port + data-parallel-size exceeds the port range")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("20").unwrap(), Duration::from_millis(20));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("10 parsecs").is_err());
    }

    #[test]
    fn precedence_cli_over_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sim.yaml");
        std::fs::write(&file, "model: from-yaml\nmax-num-seqs: 7\ninterTokenLatency: 3ms\ntime-to-first-token: 9ms\n").unwrap();
        let args = SimArgs { config: Some(file), time_to_first_token: Some("4ms".into()), ..Default::default() };
        let c = args.resolve().unwrap();
        assert_eq!(c.model, "from-yaml");
        assert_eq!(c.max_num_seqs, 7);
        assert_eq!(c.itl, Duration::from_millis(3));
        assert_eq!(c.ttft, Duration::from_millis(4));
        assert_eq!(c.served_model_names, ["from-yaml"]);
    }

    #[test]
    fn invalid_settings_are_input_errors() {
        let base = SimArgs { model: Some("m".into()), ..Default::default() };
        assert!(SimArgs { failure_injection_rate: Some(150.0), ..base.clone() }.resolve().is_err());
        assert!(SimArgs { mode: Some("mirror".into()), ..base.clone() }.resolve().is_err());
        assert!(SimArgs { failure_types: Some(vec!["teapot".into()]), ..base.clone() }.resolve().is_err());
        assert!(
            SimArgs { time_to_first_token: Some("10ms".into()), time_to_first_token_std_dev: Some("5ms".into()), ..base.clone() }
                .resolve()
                .is_err()
        );
        assert!(SimArgs { ..Default::default() }.resolve().is_err() || std::env::var("SIM_MODEL").is_ok());
    }
}
