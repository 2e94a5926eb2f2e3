//! llmd's template environment against Jinja2 with upstream's filters
//! (tests/goldens/filters.json, made by tests/goldens/gen_filters.py).

use llmd::jinja::env::plan_environment;
use llmd::jinja::pyvalue::to_template;
use llmd::yaml::Node;

#[test]
fn snippets_render_like_jinja2() {
    let text = std::fs::read_to_string("tests/goldens/filters.json").unwrap();
    let goldens: serde_json::Value = serde_json::from_str(&text).unwrap();
    let env = plan_environment();
    let mut failures = Vec::new();
    for case in goldens["cases"].as_array().unwrap() {
        let template = case["template"].as_str().unwrap();
        let want = case["output"].as_str().unwrap();
        // A fresh context per snippet: some mutate it.
        let ctx = to_template(&Node::from_json(&goldens["context"]));
        match env.render_str(template, ctx) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{template}\n  want {want:?}\n  got  {got:?}")),
            Err(e) => failures.push(format!("{template}\n  want {want:?}\n  error {e:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} snippets differ:\n{}",
        failures.len(),
        goldens["cases"].as_array().unwrap().len(),
        failures.join("\n")
    );
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
    let text = std::fs::read_to_string("tests/goldens/literals.json").unwrap();
    let goldens: serde_json::Value = serde_json::from_str(&text).unwrap();
    let env = plan_environment();
    let mut failures = Vec::new();
    for case in goldens["cases"].as_array().unwrap() {
        let template = case["template"].as_str().unwrap();
        let want = case["output"].as_str().unwrap();
        let ctx = to_template(&Node::from_json(&goldens["context"]));
        match env.render_str(&llmd::jinja::literals::mutable_dict_literals(template), ctx) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{template}\n  want {want:?}\n  got  {got:?}")),
            Err(e) => failures.push(format!("{template}\n  want {want:?}\n  error {e:#}")),
        }
    }
    assert!(failures.is_empty(), "{} snippets differ:\n{}", failures.len(), failures.join("\n"));
}
