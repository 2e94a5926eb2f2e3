//! The YAML writer against PyYAML's own output (tests/goldens/pyyaml_dump.json, made by
//! tests/goldens/gen_pyyaml.py): 421 documents, hand-picked edge cases plus random ones.

use llmd::yaml::{DumpOptions, Node, Value, dump};

fn decode(json: &serde_json::Value) -> Node {
    match json {
        serde_json::Value::Object(m) if m.len() == 1 && m.contains_key("$float") => {
            let f = match m["$float"].as_str().unwrap() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                _ => f64::NAN,
            };
            Node::bare(Value::Float(f))
        }
        serde_json::Value::Object(m) => Node::map(m.iter().map(|(k, v)| (k.clone(), decode(v))).collect()),
        serde_json::Value::Array(items) => Node::bare(Value::Seq(items.iter().map(decode).collect())),
        other => Node::from_json(other),
    }
}

#[test]
fn dump_matches_pyyaml_byte_for_byte() {
    let text = std::fs::read_to_string("tests/goldens/pyyaml_dump.json").unwrap();
    let goldens: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    for (i, case) in goldens["cases"].as_array().unwrap().iter().enumerate() {
        let node = decode(&case["input"]);
        for (mode, opts) in [("dump", DumpOptions::default()), ("toyaml", DumpOptions::toyaml())] {
            let want = case[mode].as_str().unwrap();
            let got = dump(&node, opts);
            if got != want {
                failures.push(format!("case {i} ({mode}):\n--- want\n{want}\n--- got\n{got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches; first:\n{}", failures.len(), failures[0]);
}

/// The loader against PyYAML's `safe_load` (tests/goldens/pyyaml_load.json, made by
/// tests/goldens/gen_pyyaml_load.py): multi-line scalars at the indentations PyYAML
/// accepts though the YAML spec does not, and the neighbours it rejects.
#[test]
fn load_matches_pyyaml_on_multi_line_scalars() {
    let text = std::fs::read_to_string("tests/goldens/pyyaml_load.json").unwrap();
    let goldens: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    for (i, case) in goldens["cases"].as_array().unwrap().iter().enumerate() {
        let yaml = case["yaml"].as_str().unwrap();
        let got = llmd::yaml::load_str(yaml, "case.yaml");
        match (case["error"].as_bool().unwrap(), got) {
            (true, Ok(node)) => {
                failures.push(format!("case {i} {yaml:?}: PyYAML fails ({}), llmd loads {}", case["pyyaml"], node.to_json()))
            }
            (false, Err(e)) => failures.push(format!("case {i} {yaml:?}: PyYAML loads {}, llmd fails: {e}", case["value"])),
            (false, Ok(node)) if node.to_json() != case["value"] => {
                failures.push(format!("case {i} {yaml:?}: PyYAML loads {}, llmd {}", case["value"], node.to_json()))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    // Line numbers survive the re-indentation: a key after the scalar is still where it was.
    let node = llmd::yaml::load_str("env:\n  - name: A\n    value: \"x\ny\"\n    other: 1\n", "f.yaml").unwrap();
    let item = &node.as_map().unwrap().get("env").unwrap().as_seq().unwrap()[0];
    assert_eq!(item.as_map().unwrap().get("other").unwrap().origin.line, 5);
}
