//! Benchmark-specific details upstream lays into a stack's `router:` chart values
//! (`RenderPlans._process_stack`'s router normalisation): the EPP's Hugging Face token,
//! image and ports, the tokenizer sidecar, the model-server selector, the metrics
//! Secret, and gateway provider settings. Each step keeps what the user set.

use crate::yaml::{Mapping, Node, Value, map_of};

use super::merge::merged;

fn has_named(list: &[Node], key: &str, name: &str) -> bool {
    list.iter().any(|e| e.get(key).and_then(Node::as_str) == Some(name))
}

pub(super) fn list_or_empty(node: Option<&Node>) -> Vec<Node> {
    node.filter(|n| n.is_truthy()).and_then(Node::as_seq).map(<[Node]>::to_vec).unwrap_or_default()
}

fn hf_token_env(hf: &Node) -> Node {
    let name = hf.get("secretName").cloned().unwrap_or_else(|| Node::str("llm-d-hf-token"));
    let key = hf.get("tokenKey").cloned().unwrap_or_else(|| Node::str("HF_TOKEN"));
    map_of([("name", Node::str("HF_TOKEN")), ("valueFrom", map_of([("secretKeyRef", map_of([("name", name), ("key", key)]))]))])
}

/// What the router steps read from the rest of the stack's config.
struct Inputs {
    hf: Node,
    hf_enabled: bool,
    images: Option<Node>,
    metrics_scrape: bool,
    gateway_class: String,
    model_name: Option<Node>,
    inference_serving: Option<String>,
    label: Option<String>,
    decode_port: Option<Node>,
}

impl Inputs {
    fn read(config: &Node) -> Inputs {
        let hf = config.get("huggingface").cloned().unwrap_or_else(|| Node::map(Mapping::new()));
        let truthy = |path: &[&str]| config.get_path(path).filter(|n| n.is_truthy()).cloned();
        Inputs {
            hf_enabled: hf.get("enabled").is_some_and(Node::is_truthy),
            hf,
            images: truthy(&["images"]),
            metrics_scrape: config.get_path(&["monitoring", "metricsScrapeEnabled"]).is_some_and(Node::is_truthy),
            gateway_class: config.get_path(&["gateway", "className"]).map(crate::yaml::str_node).unwrap_or_default(),
            model_name: truthy(&["model", "name"]),
            inference_serving: truthy(&["labels", "inferenceServing"]).map(|n| crate::yaml::str_node(&n)),
            label: truthy(&["model_id_label"]).map(|n| crate::yaml::str_node(&n)),
            decode_port: truthy(&["decode", "vllm", "servicePort"]),
        }
    }
}

/// Applies every router step to `config` (nothing without a `router.epp` mapping).
pub fn normalize_router_block(config: &mut Node) {
    let inputs = Inputs::read(config);
    let Some(router) = config.ensure_map("router") else { return };
    if router.ensure_map("epp").is_none() {
        return;
    }
    let epp = router.get_path_mut(&["epp"]).expect("ensured");
    epp_hf_token(epp, &inputs);
    epp_image(epp, &inputs);
    epp_flags_and_zmq(router, &inputs);
    epponly_http_port(router, &inputs);
    tokenizer_sidecar(router, &inputs);
    model_servers(router, &inputs);
    metrics_secret(router);
    gateway_provider(config, &inputs);
}

/// 1. HF_TOKEN into the EPP env.
fn epp_hf_token(epp: &mut Node, inputs: &Inputs) {
    if !inputs.hf_enabled {
        return;
    }
    let mut env = list_or_empty(epp.get("env"));
    if !has_named(&env, "name", "HF_TOKEN") {
        env.push(hf_token_env(&inputs.hf));
        epp.set_path(&["env"], Node::bare(Value::Seq(env)));
    }
}

/// 2. EPP image from the image catalog, user fields on top.
fn epp_image(epp: &mut Node, inputs: &Inputs) {
    let Some(picker) = inputs.images.as_ref().and_then(|i| i.get("routerEndpointPicker")).filter(|n| n.is_truthy()) else { return };
    let repo_full = picker.get("repository").map(crate::yaml::str_node).unwrap_or_default();
    if repo_full.is_empty() {
        return;
    }
    let (registry, repository) = match repo_full.rfind('/') {
        Some(i) if i > 0 => (repo_full[..i].to_string(), repo_full[i + 1..].to_string()),
        _ => (String::new(), repo_full.clone()),
    };
    let mut image = map_of([
        ("registry", Node::str(registry)),
        ("repository", Node::str(repository)),
        ("tag", picker.get("tag").cloned().unwrap_or_else(|| Node::str("main"))),
        ("pullPolicy", picker.get("pullPolicy").cloned().unwrap_or_else(|| Node::str("IfNotPresent"))),
    ]);
    if let Some(user) = epp.get("image").and_then(Node::as_map) {
        let image_map = image.as_map_mut().expect("mapping");
        for (k, v) in user {
            image_map.insert(k.clone(), v.clone());
        }
    }
    epp.set_path(&["image"], image);
}

/// 3. zmqPort → chart-native port arrays; 4. verbosity → flags.v.
fn epp_flags_and_zmq(router: &mut Node, inputs: &Inputs) {
    let epp = router.get_path_mut(&["epp"]).expect("ensured");
    let zmq = epp.as_map_mut().expect("mapping").shift_remove("zmqPort").filter(|n| n.is_truthy());
    let verbosity = epp.as_map_mut().expect("mapping").shift_remove("verbosity").filter(|n| !n.is_null());
    if !epp.get("flags").is_some_and(Node::is_truthy) {
        if inputs.metrics_scrape {
            epp.set_path(&["flags"], map_of([("v", Node::str("4"))]));
        } else if let Some(v) = verbosity {
            epp.set_path(&["flags"], map_of([("v", Node::str(crate::yaml::str_node(&v)))]));
        }
    }
    let Some(port) = zmq else { return };
    let mut container_ports = list_or_empty(epp.get("extraContainerPorts"));
    if !has_named(&container_ports, "name", "zmq") {
        container_ports.insert(0, map_of([("name", Node::str("zmq")), ("containerPort", port.clone()), ("protocol", Node::str("TCP"))]));
        epp.set_path(&["extraContainerPorts"], Node::bare(Value::Seq(container_ports)));
    }
    let mut service_ports = list_or_empty(router.get("extraServicePorts"));
    if !has_named(&service_ports, "name", "zmq") {
        service_ports
            .insert(0, map_of([("name", Node::str("zmq")), ("port", port.clone()), ("targetPort", port), ("protocol", Node::str("TCP"))]));
        router.set_path(&["extraServicePorts"], Node::bare(Value::Seq(service_ports)));
    }
}

/// 5. epponly: an HTTP service port for the proxy sidecar.
fn epponly_http_port(router: &mut Node, inputs: &Inputs) {
    if inputs.gateway_class != "epponly" {
        return;
    }
    let mut service_ports = list_or_empty(router.get("extraServicePorts"));
    if !has_named(&service_ports, "name", "http") {
        let target = router.get_path(&["proxy", "httpTargetPort"]).cloned().unwrap_or_else(|| Node::from(8081));
        service_ports.push(map_of([
            ("name", Node::str("http")),
            ("port", Node::from(80)),
            ("protocol", Node::str("TCP")),
            ("targetPort", target),
        ]));
        router.set_path(&["extraServicePorts"], Node::bare(Value::Seq(service_ports)));
    }
}

/// 6. tokenizer sidecar: model name, writable HF cache.
fn tokenizer_sidecar(router: &mut Node, inputs: &Inputs) {
    let Some(tokenizer) = router.get_path_mut(&["tokenizer"]).filter(|t| t.as_map().is_some_and(|m| !m.is_empty())) else { return };
    if !tokenizer.get("enabled").is_some_and(Node::is_truthy) {
        return;
    }
    if !tokenizer.get("modelName").is_some_and(Node::is_truthy)
        && let Some(name) = &inputs.model_name
    {
        tokenizer.set_path(&["modelName"], name.clone());
    }
    let mut env = list_or_empty(tokenizer.get("env"));
    if !has_named(&env, "name", "HF_HOME") {
        if inputs.hf_enabled && !has_named(&env, "name", "HF_TOKEN") {
            env.push(hf_token_env(&inputs.hf));
        }
        env.push(map_of([("name", Node::str("HF_HOME")), ("value", Node::str("/tmp/hf-cache"))]));
        tokenizer.set_path(&["env"], Node::bare(Value::Seq(env)));
    }
    let mut mounts = list_or_empty(tokenizer.get("volumeMounts"));
    if !has_named(&mounts, "mountPath", "/tmp/hf-cache") {
        mounts.push(map_of([("name", Node::str("model-cache")), ("mountPath", Node::str("/tmp/hf-cache"))]));
        tokenizer.set_path(&["volumeMounts"], Node::bare(Value::Seq(mounts)));
    }
}

/// 7. modelServers: benchmark labels and the decode port.
fn model_servers(router: &mut Node, inputs: &Inputs) {
    let Some(servers) = router.ensure_map("modelServers") else { return };
    if !servers.get("matchLabels").is_some_and(Node::is_truthy) && (inputs.inference_serving.is_some() || inputs.label.is_some()) {
        let mut labels = Mapping::new();
        if let Some(s) = &inputs.inference_serving {
            labels.insert("llm-d.ai/inferenceServing".into(), Node::str(s));
        }
        if let Some(l) = &inputs.label {
            labels.insert("llm-d.ai/model".into(), Node::str(l));
        }
        servers.set_path(&["matchLabels"], Node::map(labels));
    }
    if !servers.get("targetPorts").is_some_and(Node::is_truthy)
        && let Some(port) = &inputs.decode_port
    {
        servers.set_path(&["targetPorts"], Node::bare(Value::Seq(vec![map_of([("number", port.clone())])])));
    }
}

/// 8. The metrics-reader Secret name, where the router chart reads it.
fn metrics_secret(router: &mut Node) {
    if let Some(monitoring) = router.get_path_mut(&["monitoring"]).filter(|m| m.as_map().is_some())
        && let Some(secret) = monitoring.get("secretName").filter(|n| n.is_truthy()).cloned()
        && let Some(auth) = monitoring.ensure_map("prometheus").and_then(|p| p.ensure_map("auth"))
        && !auth.get("secretName").is_some_and(Node::is_truthy)
    {
        auth.set_path(&["secretName"], secret);
    }
}

/// 9. providerConfig → provider.<class> for the gke / istio gateway charts.
fn gateway_provider(config: &mut Node, inputs: &Inputs) {
    let provider_config = config
        .get_path_mut(&["router", "inferencePool"])
        .and_then(Node::as_map_mut)
        .and_then(|m| m.shift_remove("providerConfig"))
        .filter(|n| !n.is_null());
    let gw = inputs.gateway_class.as_str();
    if gw != "gke" && gw != "istio" {
        return;
    }
    let Some(provider) = config.ensure_map("provider") else { return };
    if provider.get("name").is_none() {
        provider.set_path(&["name"], Node::str(gw));
    }
    if let Some(pc) = provider_config.filter(|n| n.is_truthy()) {
        let existing = provider.get(gw).filter(|n| n.is_truthy()).cloned().unwrap_or_else(|| Node::map(Mapping::new()));
        provider.set_path(&[gw], merged(&pc, &existing));
    }
}
