//! What upstream's two resolvers do to a config without asking anything outside it.
//!
//! Upstream's cluster resource resolver and version resolver look things up in a live
//! cluster and in registries; llmd never does at plan time ("auto" values pass through,
//! see the module doc of [`super::stack`]). Part of their work needs neither, and it
//! changes `config.yaml` and the manifests, so llmd does it too:
//!
//! - [`cluster_defaults`]: an explicit `accelerator.profile` names the accelerator type
//!   and its resource (or DRA driver); a DRA driver gets a claim template; `vllmCommon`'s
//!   network settings fill the empty ones of `decode`, `prefill` and `standalone`.
//! - [`init_container_images`]: an init container's `imageKey: <k>` becomes
//!   `image: <images.k.repository>:<images.k.tag>` (and `imagePullPolicy` from
//!   `images.k.pullPolicy` when it has none); `imageKey` is deleted.

use crate::error::Warnings;
use crate::yaml::{Mapping, Node, Value, map_of};

/// Accelerator profile → the container resource its devices are requested as.
const PROFILE_RESOURCES: &[(&str, &str)] = &[
    ("nvidia", "nvidia.com/gpu"),
    ("amd", "amd.com/gpu"),
    ("intel-gaudi", "habana.ai/gaudi"),
    ("google", "google.com/tpu"),
    ("intel-i915", "gpu.intel.com/i915"),
    ("intel-xe", "gpu.intel.com/xe"),
];
/// Accelerator profile → the DRA driver its devices are claimed through (no resource).
const PROFILE_DRA_DRIVERS: &[(&str, &str)] = &[("intel-xpu", "gpu.intel.com")];
/// The deploy methods that take the network settings of `vllmCommon` when theirs are empty.
const NETWORK_METHODS: &[&str] = &["decode", "prefill", "standalone"];
const NETWORK_KEYS: &[&str] = &["networkResource", "networkNr"];

/// The cluster resolver's cluster-independent steps, in its order. Upstream skips the
/// whole resolver for nok8s stacks (there is no cluster), and so does the caller.
pub fn cluster_defaults(config: &mut Node) {
    explicit_profile(config);
    dra_claim_defaults(config);
    propagate_network(config);
}

fn text(config: &Node, path: &[&str]) -> Option<String> {
    config.get_path(path).filter(|n| n.is_truthy()).map(crate::yaml::str_node)
}

/// `accelerator.profile: <p>` (not `auto`) is also the accelerator type; an `auto`
/// resource becomes the profile's DRA driver or its device resource.
fn explicit_profile(config: &mut Node) {
    let Some(profile) = text(config, &["accelerator", "profile"]).filter(|p| p != "auto") else { return };
    let Some(acc) = config.get_path_mut(&["accelerator"]).and_then(Node::as_map_mut) else { return };
    acc.insert("type".into(), Node::str(profile.clone()));
    if acc.get("resource").and_then(Node::as_str) != Some("auto") {
        return;
    }
    let lookup = |table: &[(&str, &str)]| table.iter().find(|(p, _)| *p == profile).map(|(_, v)| v.to_string());
    if let Some(driver) = lookup(PROFILE_DRA_DRIVERS) {
        acc.shift_remove("resource");
        acc.insert("draDriver".into(), Node::str(driver));
    } else if let Some(resource) = lookup(PROFILE_RESOURCES) {
        acc.insert("resource".into(), Node::str(resource));
    }
}

/// A DRA driver with an accelerator type turns DRA on and, unless the config has claim
/// templates already, adds one keyed by the type (the chart otherwise falls back to a
/// device class that does not exist).
fn dra_claim_defaults(config: &mut Node) {
    let (Some(driver), Some(kind)) = (text(config, &["accelerator", "draDriver"]), text(config, &["accelerator", "type"])) else {
        return;
    };
    if config.get_path(&["dra"]).is_none_or(|d| d.as_map().is_none()) {
        config.set_path(&["dra"], Node::map(Mapping::new()));
    }
    config.set_path(&["dra", "enabled"], Node::from(true));
    config.set_path(&["dra", "type"], Node::str(kind.clone()));
    if config.get_path(&["dra", "claimTemplates"]).is_some_and(Node::is_truthy) {
        return;
    }
    let template = map_of([(kind.as_str(), map_of([("class", Node::str(driver))]))]);
    config.set_path(&["dra", "claimTemplates"], template);
}

/// `decode`, `prefill` and `standalone` take `vllmCommon.networkResource`/`networkNr`
/// where theirs are absent, empty or `auto`, as upstream's "propagate network to methods".
fn propagate_network(config: &mut Node) {
    let common: Vec<Node> =
        NETWORK_KEYS.iter().map(|k| config.get_path(&["vllmCommon", k]).cloned().unwrap_or_else(|| Node::str(""))).collect();
    for method in NETWORK_METHODS {
        let Some(section) = config.get_path_mut(&[method]).and_then(Node::as_map_mut) else { continue };
        for (key, value) in NETWORK_KEYS.iter().zip(&common) {
            let inherit = section.get(*key).is_none_or(|v| !v.is_truthy() || v.as_str() == Some("auto"));
            if inherit {
                section.insert((*key).into(), value.clone());
            }
        }
    }
}

/// Expands `imageKey` in the init containers of `decode`, `prefill` and `standalone`.
/// An `auto` tag is left for deploy time (upstream asks a registry; offline it keeps
/// the entry as is, and so does llmd). A container with both `image` and `imageKey`, or
/// a key that `images` lacks, is left unchanged with a warning, as upstream warns.
pub fn init_container_images(config: &mut Node, stack: &str, warnings: &mut Warnings) {
    let images = config.get_path(&["images"]).cloned().unwrap_or_else(|| Node::map(Mapping::new()));
    for section in NETWORK_METHODS {
        let Some(containers) = config.get_path_mut(&[section, "initContainers"]).and_then(|n| match &mut n.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }) else {
            continue;
        };
        for (i, container) in containers.iter_mut().enumerate() {
            let at = format!("{section}.initContainers[{i}]");
            if let Err(why) = expand_image_key(container, &images) {
                warnings.push(format!("[{stack}] {at}: {why} ({}); the container is left as written", container.origin));
            }
        }
    }
}

fn expand_image_key(container: &mut Node, images: &Node) -> Result<(), String> {
    let Some(entry) = container.as_map_mut() else { return Ok(()) };
    let Some(key_node) = entry.get("imageKey").filter(|k| k.is_truthy()).cloned() else { return Ok(()) };
    if entry.get("image").is_some_and(Node::is_truthy) {
        return Err("sets both 'image' and 'imageKey'; use one".into());
    }
    let Some(key) = key_node.as_str() else { return Err("imageKey must be a string".into()) };
    let Some(image) = images.get(key).filter(|i| i.as_map().is_some()) else {
        let known: Vec<String> =
            images.as_map().map(|m| m.iter().filter(|(_, v)| v.as_map().is_some()).map(|(k, _)| k.clone()).collect()).unwrap_or_default();
        return Err(format!("imageKey '{key}' names no entry of images (known: {})", known.join(", ")));
    };
    let field = |name: &str| image.get(name).filter(|n| n.is_truthy()).map(crate::yaml::str_node);
    let (Some(repo), Some(tag)) = (field("repository"), field("tag")) else {
        return Err(format!("imageKey '{key}': images.{key} has an empty repository or tag"));
    };
    if tag == "auto" {
        return Ok(());
    }
    entry.insert("image".into(), Node::str(format!("{repo}:{tag}")));
    if !entry.get("imagePullPolicy").is_some_and(Node::is_truthy)
        && let Some(policy) = field("pullPolicy")
    {
        entry.insert("imagePullPolicy".into(), Node::str(policy));
    }
    entry.shift_remove("imageKey");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    fn y(s: &str) -> Node {
        load_str(s, "t.yaml").unwrap()
    }

    fn json(n: &Node) -> serde_json::Value {
        n.to_json()
    }

    #[test]
    fn network_settings_fill_empty_absent_and_auto_methods_only() {
        let mut c = y("vllmCommon: {networkResource: rdma/ib, networkNr: '2'}\n\
             decode: {networkResource: ''}\nprefill: {networkResource: auto, networkNr: '4'}\nstandalone: {}\n");
        cluster_defaults(&mut c);
        assert_eq!(json(&c)["decode"], serde_json::json!({"networkResource": "rdma/ib", "networkNr": "2"}));
        assert_eq!(json(&c)["prefill"], serde_json::json!({"networkResource": "rdma/ib", "networkNr": "4"}));
        assert_eq!(json(&c)["standalone"], serde_json::json!({"networkResource": "rdma/ib", "networkNr": "2"}));
        let mut bare = y("decode: {replicas: 1}\n");
        cluster_defaults(&mut bare);
        assert_eq!(json(&bare)["decode"], serde_json::json!({"replicas": 1, "networkResource": "", "networkNr": ""}));
    }

    #[test]
    fn an_explicit_profile_names_type_and_resource_or_a_dra_claim() {
        let mut c = y("accelerator: {profile: amd, type: nvidia, resource: auto}\n");
        cluster_defaults(&mut c);
        assert_eq!(json(&c)["accelerator"], serde_json::json!({"profile": "amd", "type": "amd", "resource": "amd.com/gpu"}));
        let mut kept = y("accelerator: {profile: amd, resource: my.com/dev}\n");
        cluster_defaults(&mut kept);
        assert_eq!(json(&kept)["accelerator"]["resource"], "my.com/dev", "only an auto resource is replaced");
        let mut xpu = y("accelerator: {profile: intel-xpu, resource: auto}\n");
        cluster_defaults(&mut xpu);
        assert_eq!(
            json(&xpu)["accelerator"],
            serde_json::json!({"profile": "intel-xpu", "type": "intel-xpu", "draDriver": "gpu.intel.com"})
        );
        assert_eq!(
            json(&xpu)["dra"],
            serde_json::json!({"enabled": true, "type": "intel-xpu", "claimTemplates": {"intel-xpu": {"class": "gpu.intel.com"}}})
        );
        let mut auto = y("accelerator: {profile: auto, type: nvidia, resource: auto}\n");
        cluster_defaults(&mut auto);
        assert_eq!(json(&auto)["accelerator"], serde_json::json!({"profile": "auto", "type": "nvidia", "resource": "auto"}));
    }

    #[test]
    fn image_keys_expand_and_are_deleted() {
        let mut c = y("images:\n  x: {repository: ghcr.io/a/x, tag: v1, pullPolicy: Always}\n  later: {repository: r, tag: auto}\n\
             decode:\n  initContainers:\n  - {name: a, imageKey: x}\n  - {name: b, imageKey: x, imagePullPolicy: Never}\n\
             \x20 - {name: c, imageKey: later}\n  - {name: d, image: plain}\n");
        let mut w = Warnings::default();
        init_container_images(&mut c, "s", &mut w);
        assert_eq!(
            json(&c)["decode"]["initContainers"],
            serde_json::json!([
                {"name": "a", "image": "ghcr.io/a/x:v1", "imagePullPolicy": "Always"},
                {"name": "b", "imagePullPolicy": "Never", "image": "ghcr.io/a/x:v1"},
                {"name": "c", "imageKey": "later"},
                {"name": "d", "image": "plain"},
            ])
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_bad_image_key_is_a_warning_and_the_container_stays() {
        let mut c =
            y("images: {x: {repository: r, tag: v1}}\nprefill:\n  initContainers:\n  - {imageKey: y}\n  - {imageKey: x, image: z}\n");
        let mut w = Warnings::default();
        init_container_images(&mut c, "s", &mut w);
        assert_eq!(json(&c)["prefill"]["initContainers"], serde_json::json!([{"imageKey": "y"}, {"imageKey": "x", "image": "z"}]));
        let text = format!("{w:?}");
        assert!(text.contains("prefill.initContainers[0]: imageKey 'y' names no entry of images (known: x)"), "{text}");
        assert!(text.contains("t.yaml:4"), "{text}");
        assert!(text.contains("sets both 'image' and 'imageKey'"), "{text}");
    }
}
