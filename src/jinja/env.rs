//! The minijinja environments llmd renders with, configured like upstream's Jinja2 ones.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior};

use super::filters;
use super::pyvalue::py_str;

fn syntax() -> SyntaxConfig {
    SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .expect("static syntax config is valid")
}

/// Common base: Jinja2 whitespace rules, lenient undefined, Python printing and methods.
fn base() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(syntax());
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_formatter(|out, _state, value| out.write_str(&py_str(value)).map_err(minijinja::Error::from));
    env.set_unknown_method_callback(filters::python_method);
    env.add_filter("int", filters::int);
    env.add_filter("float", filters::float);
    env.add_filter("string", filters::string);
    env.add_filter("lower", filters::lower);
    env.add_filter("upper", filters::upper);
    env.add_filter("join", filters::join);
    env.add_function(super::literals::WRAPPER, super::pyvalue::mutable);
    env
}

/// Upstream's plan environment (`RenderPlans._get_jinja_env`).
pub fn plan_environment() -> Environment<'static> {
    let mut env = base();
    env.add_filter("indent", filters::indent);
    env.add_filter("toyaml", filters::toyaml);
    env.add_filter("tojson", filters::tojson);
    env.add_filter("is_empty", filters::is_empty);
    env.add_filter("default_if_empty", filters::default_if_empty);
    env.add_filter("b64pad", filters::b64pad);
    env.add_filter("b64encode", filters::b64encode);
    env.add_filter("model_id_label", filters::model_id_label_filter);
    env.add_function("raise", filters::raise);
    env
}

/// The environment specifications (`*.yaml.j2`) are rendered with: plain Jinja2.
pub fn spec_environment() -> Environment<'static> {
    base()
}
