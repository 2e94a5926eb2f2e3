//! llmd's template environment against Jinja2 with upstream's filters
//! (tests/goldens/filters.json, made by tests/goldens/gen_filters.py).

use llmd::jinja::env::plan_environment;
use llmd::jinja::pyvalue::to_template;
use llmd::yaml::Node;

/// Renders every case of a golden file (a fresh context per snippet: some mutate it)
/// after `prepare`; returns the differences and the number of cases.
fn differences(golden: &str, prepare: fn(&str) -> String) -> (Vec<String>, usize) {
    let text = std::fs::read_to_string(golden).unwrap();
    let goldens: serde_json::Value = serde_json::from_str(&text).unwrap();
    let env = plan_environment();
    let cases = goldens["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let template = case["template"].as_str().unwrap();
        let want = case["output"].as_str().unwrap();
        let ctx = to_template(&Node::from_json(&goldens["context"]));
        match env.render_str(&prepare(template), ctx) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{template}\n  want {want:?}\n  got  {got:?}")),
            Err(e) => failures.push(format!("{template}\n  want {want:?}\n  error {e:#}")),
        }
    }
    (failures, cases.len())
}

#[test]
fn snippets_render_like_jinja2() {
    let (failures, n) = differences("tests/goldens/filters.json", str::to_string);
    assert!(failures.is_empty(), "{} of {n} snippets differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn raise_aborts_with_its_message() {
    let env = plan_environment();
    let err = env.render_str("{{ raise('bad listener') }}", ()).unwrap_err();
    assert!(err.to_string().contains("bad listener"), "{err}");
}

/// Dict literals are mutable Python dicts, as in Jinja2: built in a loop with
/// `update`, nested, mutated in a macro, visible after the loop (tests/goldens/literals.json,
/// made by tests/goldens/gen_literals.py).
#[test]
fn dict_literals_mutate_like_jinja2() {
    let (failures, n) = differences("tests/goldens/literals.json", |t| llmd::jinja::literals::mutable_dict_literals(t).into_owned());
    assert!(failures.is_empty(), "{} of {n} snippets differ:\n{}", failures.len(), failures.join("\n"));
}
