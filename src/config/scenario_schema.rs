//! The JSON Schema of scenario files, from the defaults file in use: every key the
//! defaults define, nested as they nest, with its default value. A schema written for an
//! llm-d-benchmark checkout therefore knows that tree's keys.
//!
//! Keys absent from the defaults are warnings when planning, not errors (upstream's
//! scenarios carry free-form maps such as extra environment variables), so the schema
//! allows them too: it serves completion and hover text, and rejects what planning
//! rejects (a missing stack name, a stack or `common` that is not a mapping).

use serde_json::{Map, Value as Json, json};

use crate::yaml::Node;

/// The schema of a scenario file whose defaults file is `defaults` (named `source`).
pub fn scenario_schema(defaults: &Node, source: &str) -> Json {
    let mut stack = keys_of(defaults);
    let props = stack["properties"].as_object_mut().expect("keys_of returns an object");
    props.insert("name".into(), json!({"type": "string", "minLength": 1, "description": "The stack's name (unique in the file)."}));
    props.insert(
        "common".into(),
        json!({"type": ["object", "null"], "description": "Keys expanded into the root and into every deploy method's section that owns them."}),
    );
    let mut shared = stack.clone();
    shared["properties"].as_object_mut().expect("an object").remove("name");
    shared["description"] = json!("Keys merged under every stack of the file.");
    stack["required"] = json!(["name"]);
    stack["description"] = json!("One stack: keys of the defaults file (dotted paths nest), merged over the defaults.");
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://llmd.dev/schemas/scenario.json",
        "title": "llmd scenario",
        "description": format!("A scenario: stacks merged over the defaults file {source}."),
        "type": "object",
        "properties": {
            "scenario": {"type": "array", "minItems": 1, "items": stack, "description": "The stacks, deployed and benchmarked one by one."},
            "shared": shared,
        },
        "required": ["scenario"],
    })
}

/// A mapping's keys as schema properties (recursively); leaves carry their default.
fn keys_of(node: &Node) -> Json {
    let mut props = Map::new();
    for (key, value) in node.as_map().into_iter().flatten() {
        let schema = if value.as_map().is_some_and(|m| !m.is_empty()) {
            keys_of(value)
        } else {
            let default = value.to_json();
            json!({"default": default, "description": format!("Default: {}", serde_json::to_string(&default).unwrap_or_default())})
        };
        props.insert(key.clone(), schema);
    }
    json!({"type": ["object", "null"], "properties": props, "additionalProperties": true})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    #[test]
    fn stacks_know_the_defaults_keys_and_need_a_name() {
        let defaults = load_str("decode:\n  replicas: 1\n  parallelism: {tensor: 1}\nmodel: {name: x}\n", "d.yaml").unwrap();
        let s = scenario_schema(&defaults, "d.yaml");
        let stack = &s["properties"]["scenario"]["items"];
        assert_eq!(stack["required"], json!(["name"]));
        assert_eq!(stack["properties"]["decode"]["properties"]["replicas"]["default"], 1);
        assert_eq!(stack["properties"]["decode"]["properties"]["parallelism"]["properties"]["tensor"]["default"], 1);
        assert!(s["properties"]["shared"]["properties"].get("name").is_none());
        let v = jsonschema::validator_for(&s).unwrap();
        assert!(v.is_valid(&json!({"scenario": [{"name": "a", "decode": {"replicas": 2}, "extra": {"free": 1}}]})));
        assert!(!v.is_valid(&json!({"scenario": [{"decode": {"replicas": 2}}]})), "a stack needs a name");
        assert!(!v.is_valid(&json!({"scenario": [{"name": "a", "common": 3}]})));
        assert!(!v.is_valid(&json!({"scenario": []})));
    }
}
