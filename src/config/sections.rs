//! Upstream's config validation: the sections it models (`model`, `decode`, `prefill`,
//! `vllmCommon`, `harness`, `parallelism`, `description`), their keys and value types.
//!
//! Upstream validates every stack's merged config (after its resolvers, before the
//! templates) with pydantic models and logs each problem as a warning; the plan is
//! rendered anyway. llmd checks the same models and warns the same cases — a key a
//! closed section does not have, a value of the wrong type or range — naming the file
//! and line the offending value came from, with a did-you-mean or a fix. A field the
//! merged config lacks is not reported: a scenario cannot remove a defaults key, so only
//! a defaults file can lack one, and llmd's own (smaller) tree lacks many that its
//! templates never read.
//!
//! The models are written below in a small table language, a `[Model] open|closed`
//! header and then one field per line:
//! `name type [>=N] [<=N]`, a type being `str`, `int`, `float`, `bool`, `any`, `list`,
//! `list[T]`, `dict`, `dict[T]` (values of type T), a union `A|B` or another model's
//! name. A trailing `?` makes a field nullable (`T | None = None`); `~` marks one with
//! a default (`Field(default_factory=...)`: null is still wrong). Types follow pydantic's lax
//! mode: a `str` takes only strings; an `int` takes integers, whole floats, booleans and
//! integer strings; a `bool` takes booleans, 0/1 and yes/no-like strings.

use std::sync::OnceLock;

use crate::error::{Warnings, did_you_mean};
use crate::yaml::{Node, Value};

/// `[Name] open|closed` then its fields. Closed models reject unknown keys.
const MODELS: &str = "
[Root] open
  model Model
  decode Deployment
  prefill Deployment
  vllmCommon VllmCommon
  harness Harness
  parallelism Parallelism?
  description Description?
  workDir str?

[Description] closed
  text str~
  keywords list[str]~

[Parallelism] closed
  data int >=0
  dataLocal int >=0
  tensor int >=0
  workers int >=0

[Quantities] open
  memory str|int
  cpu str|int

[Resources] closed
  limits Quantities
  requests Quantities

[Probe] closed
  path str?
  port int|str?
  failureThreshold int >=1
  initialDelaySeconds int? >=0
  periodSeconds int >=1
  timeoutSeconds int? >=1

[Probes] closed
  startup Probe
  liveness Probe
  readiness Probe

[AcceleratorType] closed
  labelKey str?
  labelValue str?
  labelValues list[str]?

[Accelerator] open
  count int|str?
  resourceName str?
  memory str?

[PodMonitor] closed
  enabled bool
  portName str
  path str
  interval str
  scrapeTimeout str?
  labels dict[str]
  annotations dict[str]
  relabelings list
  metricRelabelings list

[Monitoring] closed
  podmonitor PodMonitor

[Autoscaling] closed
  enabled bool
  minReplicas int?
  maxReplicas int?

[VllmServe] closed
  port int?
  servicePort int?
  workerMultiprocMethod str
  loggingLevel str
  imagePullPolicy str?
  customCommand str?
  customPreprocessCommand str?
  additionalFlags list[str]
  modelCommand str?

[Deployment] closed
  enabled bool
  replicas int >=0
  autoscaling Autoscaling
  nodeSelector dict[str]
  schedulerName str?
  priorityClassName str?
  ephemeralStorage str?
  networkResource str?
  networkNr str?
  acceleratorType AcceleratorType
  accelerator Accelerator?
  parallelism Parallelism
  resources Resources
  podSecurityContext dict?
  shm dict[str]?
  probes Probes
  vllm VllmServe
  mountModelVolume bool
  additionalVolumeMounts list
  additionalVolumes list
  extraEnvVars list[dict]
  extraContainerConfig dict
  extraPodConfig dict
  initContainers list
  ports list[dict]?
  monitoring Monitoring
  contextLengthRanges list[str]~
  vllmVariants list[dict]~
  annotations dict[str]?
  tolerations list[dict]?
  hostIPC bool?
  hostPID bool?
  enableServiceLinks bool?
  terminationGracePeriodSeconds int?
  subGroupPolicy dict?
  subGroupExclusiveTopology bool?

[KvTransfer] closed
  enabled bool
  connector str
  role str
  extraConfig dict?

[KvEvents] closed
  enabled bool
  publisher str
  port int
  topicPrefix str
  serviceName str?

[VllmFlags] open
  enforceEager bool?
  disableLogRequests bool?
  disableUvicornAccessLog bool?
  allowLongMaxModelLen str?
  serverDevMode str?
  enableChunkedPrefill bool?
  maxNumBatchedTokens int?
  noPrefixCaching bool?
  enablePrefixCaching bool?
  enableAutoToolChoice bool?
  toolCallParser str?
  chatTemplate str?
  chatTemplateContentFormat str?

[VllmCommon] closed
  inferencePort int
  host str
  preprocessScript str
  kvTransfer KvTransfer
  kvEvents KvEvents
  priorityClassName str
  pullSecret str
  containerHome str
  hfHome str
  ephemeralStorageResource str
  ephemeralStorage str
  networkResource str
  networkNr str
  shell str
  nixlSideChannelPort str
  ucxTls str
  ucxSockaddrTlsPriority str
  flags VllmFlags
  volumes list[dict]
  volumeMounts list[dict]
  shmMemory str?
  podScheduler str?

[Model] closed
  name str
  shortName str
  path str
  huggingfaceId str
  size str
  maxModelLen int|str
  blockSize int
  gpuMemoryUtilization float >=0 <=1
  cacheBase str
  maxNumSeq int?
  maxNumBatchedTokens int?
  idLabel str?

[HarnessResources] closed
  cpu int|str
  memory str

[InferencePerf] closed
  rayonNumThreads int

[Harness] closed
  name str
  profile str?
  experimentProfile str?
  executable str
  entrypoint str?
  condaEnvName str
  waitTimeout int >=0
  loadParallelism int >=1
  podLabel str
  debug bool
  resources HarnessResources
  nodeSelector dict[str]~
  tolerations list[dict]~
  output str
  inferencePerf InferencePerf
  namespace str?
  pvcSize str?
  runAsUser int?
  serviceAccount str?
";

#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Str,
    Int,
    Float,
    Bool,
    Any,
    List(Option<Box<Ty>>),
    Dict(Option<Box<Ty>>),
    Union(Vec<Ty>),
    Model(String),
}

#[derive(Debug)]
struct Field {
    name: String,
    ty: Ty,
    nullable: bool,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug)]
struct Model {
    name: String,
    closed: bool,
    fields: Vec<Field>,
}

fn models() -> &'static [Model] {
    static MODELS_PARSED: OnceLock<Vec<Model>> = OnceLock::new();
    MODELS_PARSED.get_or_init(|| parse_models(MODELS))
}

fn parse_models(text: &str) -> Vec<Model> {
    let mut out: Vec<Model> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(name) = words[0].strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            out.push(Model { name: name.into(), closed: words[1] == "closed", fields: Vec::new() });
            continue;
        }
        let mut ty = words[1];
        let nullable = ty.ends_with('?');
        ty = ty.trim_end_matches(['?', '~']);
        let bound = |prefix: &str| words[2..].iter().find_map(|w| w.strip_prefix(prefix)).map(|n| n.parse().expect("a number"));
        let field = Field { name: words[0].into(), ty: parse_ty(ty), nullable, min: bound(">="), max: bound("<=") };
        out.last_mut().expect("a field belongs to a model").fields.push(field);
    }
    out
}

fn parse_ty(text: &str) -> Ty {
    if text.contains('|') {
        return Ty::Union(text.split('|').map(parse_ty).collect());
    }
    let inner = |t: &str| t.split_once('[').map(|(_, rest)| Box::new(parse_ty(rest.trim_end_matches(']'))));
    match text {
        "str" => Ty::Str,
        "int" => Ty::Int,
        "float" => Ty::Float,
        "bool" => Ty::Bool,
        "any" => Ty::Any,
        t if t.starts_with("list") => Ty::List(inner(t)),
        t if t.starts_with("dict") => Ty::Dict(inner(t)),
        t => Ty::Model(t.into()),
    }
}

fn model(name: &str) -> &'static Model {
    models().iter().find(|m| m.name == name).unwrap_or_else(|| panic!("model {name} is in the table"))
}

/// Warns, for one stack's merged config, about everything upstream's validation warns
/// about.
pub fn check(config: &Node, stack: &str, warnings: &mut Warnings) {
    let mut problems = Vec::new();
    check_model(model("Root"), config, &mut Vec::new(), &mut problems);
    for (node, message) in problems {
        warnings.push_at(&node.origin, format!("[{stack}] {message} (upstream's config validation warns too)"));
    }
}

fn check_model<'n>(m: &Model, node: &'n Node, path: &mut Vec<String>, out: &mut Vec<(&'n Node, String)>) {
    let Some(map) = node.as_map() else {
        out.push((node, format!("{}: expected a mapping, found {}", dotted(path), describe(node))));
        return;
    };
    for field in &m.fields {
        path.push(field.name.clone());
        match map.get(&field.name) {
            None => {}
            Some(v) if v.is_null() && field.nullable => {}
            Some(v) => check_value(field, &field.ty, v, path, out),
        }
        path.pop();
    }
    if m.closed {
        let known: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();
        for (key, value) in map.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
            path.push(key.clone());
            let hint = match did_you_mean(key, known.iter().copied()) {
                Some(s) => format!("; did you mean '{s}'?"),
                None => format!("; its keys are {}", known.join(", ")),
            };
            out.push((value, format!("{}: a key upstream's {} section does not have{hint}", dotted(path), section(path))));
            path.pop();
        }
    }
}

fn check_value<'n>(field: &Field, ty: &Ty, v: &'n Node, path: &mut Vec<String>, out: &mut Vec<(&'n Node, String)>) {
    match ty {
        Ty::Model(name) => return check_model(model(name), v, path, out),
        Ty::List(Some(item)) if matches!(v.value, Value::Seq(_)) => {
            let Value::Seq(items) = &v.value else { unreachable!() };
            for (i, it) in items.iter().enumerate() {
                if !accepts(item, it) {
                    out.push((it, format!("{}[{i}]: expected {}, found {}", dotted(path), name_of(item), describe(it))));
                }
            }
            return;
        }
        Ty::Dict(Some(value_ty)) if v.as_map().is_some() => {
            for (k, it) in v.as_map().into_iter().flatten() {
                if !accepts(value_ty, it) {
                    out.push((
                        it,
                        format!("{}.{k}: expected {}, found {}{}", dotted(path), name_of(value_ty), describe(it), quote_hint(value_ty, it)),
                    ));
                }
            }
            return;
        }
        _ => {}
    }
    if !accepts(ty, v) {
        out.push((v, format!("{}: expected {}, found {}{}", dotted(path), name_of(ty), describe(v), quote_hint(ty, v))));
        return;
    }
    if let Some(n) = number(v) {
        if let Some(min) = field.min.filter(|m| n < *m) {
            out.push((v, format!("{}: must be at least {min}, found {n}", dotted(path))));
        }
        if let Some(max) = field.max.filter(|m| n > *m) {
            out.push((v, format!("{}: must be at most {max}, found {n}", dotted(path))));
        }
    }
}

/// Whether pydantic's lax mode takes `v` for `ty`.
fn accepts(ty: &Ty, v: &Node) -> bool {
    match (ty, &v.value) {
        (Ty::Any, _) => true,
        (Ty::Union(options), _) => options.iter().any(|t| accepts(t, v)),
        (Ty::Str, Value::Str(_)) => true,
        (Ty::Int, Value::Int(_) | Value::Bool(_)) => true,
        (Ty::Int, Value::Float(f)) => f.fract() == 0.0 && f.is_finite(),
        (Ty::Int, Value::Str(s)) => s.trim().parse::<i64>().is_ok(),
        (Ty::Float, Value::Int(_) | Value::Float(_) | Value::Bool(_)) => true,
        (Ty::Float, Value::Str(s)) => s.trim().parse::<f64>().is_ok(),
        (Ty::Bool, Value::Bool(_)) => true,
        (Ty::Bool, Value::Int(i)) => *i == 0 || *i == 1,
        (Ty::Bool, Value::Float(f)) => *f == 0.0 || *f == 1.0,
        (Ty::Bool, Value::Str(s)) => {
            ["0", "1", "on", "off", "f", "t", "y", "n", "yes", "no", "true", "false"].contains(&s.trim().to_lowercase().as_str())
        }
        (Ty::List(None), Value::Seq(_)) => true,
        (Ty::List(Some(item)), Value::Seq(items)) => items.iter().all(|i| accepts(item, i)),
        (Ty::Dict(None), Value::Map(_)) | (Ty::Model(_), Value::Map(_)) => true,
        (Ty::Dict(Some(t)), Value::Map(m)) => m.values().all(|i| accepts(t, i)),
        _ => false,
    }
}

fn number(v: &Node) -> Option<f64> {
    match &v.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn name_of(ty: &Ty) -> String {
    match ty {
        Ty::Str => "a string".into(),
        Ty::Int => "an integer".into(),
        Ty::Float => "a number".into(),
        Ty::Bool => "true or false".into(),
        Ty::Any => "anything".into(),
        Ty::List(None) => "a list".into(),
        Ty::List(Some(t)) => format!("a list of {}", plural(t)),
        Ty::Dict(None) | Ty::Model(_) => "a mapping".into(),
        Ty::Dict(Some(t)) => format!("a mapping of {}", plural(t)),
        Ty::Union(options) => options.iter().map(name_of).collect::<Vec<_>>().join(" or "),
    }
}

fn plural(ty: &Ty) -> String {
    match ty {
        Ty::Str => "strings".into(),
        Ty::Dict(_) | Ty::Model(_) => "mappings".into(),
        other => name_of(other),
    }
}

fn describe(v: &Node) -> String {
    match &v.value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Int(i) => format!("an integer ({i})"),
        Value::Float(f) => format!("a number ({f})"),
        Value::Str(s) => format!("a string ({s:?})"),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
    }
}

/// A number or boolean where a string belongs: quoting it is the fix.
fn quote_hint(ty: &Ty, v: &Node) -> String {
    let wants_str = matches!(ty, Ty::Str) || matches!(ty, Ty::Union(o) if o.contains(&Ty::Str));
    match &v.value {
        Value::Int(_) | Value::Float(_) | Value::Bool(_) if wants_str => {
            format!("; quote it: '{}'", crate::yaml::str_node(v))
        }
        _ => String::new(),
    }
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// The section a key belongs to, for messages (`decode.vllm` for `decode.vllm.x`).
fn section(path: &[String]) -> String {
    path[..path.len() - 1].join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    fn problems(yaml: &str) -> Vec<String> {
        let node = load_str(yaml, "c.yaml").unwrap();
        let mut w = Warnings::default();
        check(&node, "s", &mut w);
        w.iter().map(|w| w.to_string()).collect()
    }

    /// A config every model accepts, with every field upstream's defaults have.
    fn valid() -> String {
        let deployment = "{enabled: true, replicas: 1, autoscaling: {enabled: false}, nodeSelector: {}, \
            acceleratorType: {labelKey: k, labelValue: v}, parallelism: {data: 1, dataLocal: 1, tensor: 1, workers: 1}, \
            resources: {limits: {memory: 1Gi, cpu: 1}, requests: {memory: 1Gi, cpu: '1'}}, \
            probes: {startup: {failureThreshold: 1, periodSeconds: 1}, liveness: {failureThreshold: 1, periodSeconds: 1}, \
            readiness: {failureThreshold: 1, periodSeconds: 1}}, \
            vllm: {workerMultiprocMethod: spawn, loggingLevel: INFO, additionalFlags: []}, mountModelVolume: true, \
            additionalVolumeMounts: [], additionalVolumes: [], extraEnvVars: [], extraContainerConfig: {}, extraPodConfig: {}, \
            initContainers: [], monitoring: {podmonitor: {enabled: false, portName: m, path: /m, interval: 30s, labels: {}, \
            annotations: {}, relabelings: [], metricRelabelings: []}}}";
        format!(
            "model: {{name: m, shortName: m, path: p, huggingfaceId: h, size: 1Gi, maxModelLen: 16384, blockSize: 64, \
             gpuMemoryUtilization: 0.9, cacheBase: c}}\n\
             decode: {deployment}\nprefill: {deployment}\n\
             vllmCommon: {{inferencePort: 8000, host: h, preprocessScript: p, kvTransfer: {{enabled: false, connector: c, role: r}}, \
             kvEvents: {{enabled: false, publisher: p, port: 5557, topicPrefix: t}}, priorityClassName: '', pullSecret: '', \
             containerHome: /h, hfHome: /h, ephemeralStorageResource: e, ephemeralStorage: 1Gi, networkResource: '', networkNr: '', \
             shell: bash, nixlSideChannelPort: '5600', ucxTls: x, ucxSockaddrTlsPriority: x, flags: {{anyNewFlag: 1}}, volumes: [], \
             volumeMounts: []}}\n\
             harness: {{name: h, executable: e, condaEnvName: c, waitTimeout: 0, loadParallelism: 1, podLabel: p, debug: false, \
             resources: {{cpu: 1, memory: 1Gi}}, output: o, inferencePerf: {{rayonNumThreads: 1}}}}\n\
             anyTopLevelKey: {{x: 1}}\n"
        )
    }

    #[test]
    fn the_table_parses_and_names_only_known_models() {
        for m in models() {
            for f in &m.fields {
                let mut stack = vec![&f.ty];
                while let Some(t) = stack.pop() {
                    match t {
                        Ty::Model(name) => assert!(models().iter().any(|m| &m.name == name), "{}.{}: no model {name}", m.name, f.name),
                        Ty::List(Some(i)) | Ty::Dict(Some(i)) => stack.push(i),
                        Ty::Union(o) => stack.extend(o),
                        _ => {}
                    }
                }
            }
        }
        let gpu = model("Model").fields.iter().find(|f| f.name == "gpuMemoryUtilization").unwrap();
        assert_eq!((gpu.min, gpu.max, gpu.nullable), (Some(0.0), Some(1.0), false));
        let probe_port = model("Probe").fields.iter().find(|f| f.name == "port").unwrap();
        assert_eq!((probe_port.ty.clone(), probe_port.nullable), (Ty::Union(vec![Ty::Int, Ty::Str]), true));
    }

    #[test]
    fn a_valid_config_has_no_problems_and_open_sections_take_any_key() {
        assert_eq!(problems(&valid()), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_types_ranges_and_missing_fields_are_named_with_their_line() {
        let text = valid()
            .replace("output: o,", "output: o, extraEnvVars: [],")
            .replace("networkNr: '',", "networkNr: 1,")
            .replace("gpuMemoryUtilization: 0.9", "gpuMemoryUtilization: 1.5")
            .replace("debug: false", "debug: maybe")
            .replace("replicas: 1, autoscaling", "replicas: 1, replcas: 2, autoscaling")
            .replace("podLabel: p,", "podLabel: null,");
        let got = problems(&text);
        let want = [
            "c.yaml:2:",
            "[s] model.gpuMemoryUtilization: must be at most 1, found 1.5",
            "[s] decode.replcas: a key upstream's decode section does not have; did you mean 'replicas'?",
            "[s] vllmCommon.networkNr: expected a string, found an integer (1); quote it: '1'",
            "[s] harness.podLabel: expected a string, found null",
            "[s] harness.debug: expected true or false, found a string (\"maybe\")",
            "[s] harness.extraEnvVars: a key upstream's harness section does not have; its keys are name, profile,",
        ];
        let all = got.join("\n");
        for w in want {
            assert!(all.contains(w), "missing {w:?} in:\n{all}");
        }
        assert_eq!(got.len(), 7, "prefill is fine, decode has one problem:\n{all}");
    }

    #[test]
    fn lax_types_follow_pydantic() {
        let v = |yaml: &str| load_str(yaml, "t").unwrap();
        assert!(accepts(&Ty::Int, &v("'12'")) && accepts(&Ty::Int, &v("3.0")) && !accepts(&Ty::Int, &v("3.5")));
        assert!(!accepts(&Ty::Str, &v("12")) && accepts(&Ty::Str, &v("'12'")));
        assert!(accepts(&Ty::Bool, &v("'yes'")) && accepts(&Ty::Bool, &v("0")) && !accepts(&Ty::Bool, &v("2")));
        assert!(accepts(&parse_ty("dict[str]"), &v("{a: b}")) && !accepts(&parse_ty("dict[str]"), &v("{a: 1}")));
        assert!(accepts(&parse_ty("list[dict]"), &v("[{a: 1}]")) && !accepts(&parse_ty("list[dict]"), &v("[a]")));
    }
}
