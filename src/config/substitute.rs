//! `${dotted.path}` references inside config strings.
//!
//! A reference needs at least one dot (`${model.name}`); `$VAR` and `${VAR}` are shell
//! variables and stay untouched. A reference to a scalar is replaced by Python's `str()`
//! of it. Unresolvable references and references to mappings or lists are left verbatim
//! with a warning.
//!
//! Upstream substitutes in one walk over a dict it mutates as it goes, so a reference to
//! a string that itself holds a reference resolves only if the walk reached it first.
//! llmd resolves references to references fully (order-independent) and reports a cycle
//! as an error instead of leaving it half-expanded.

use std::collections::HashMap;

use crate::error::{InputError, Warnings};
use crate::pyfmt;
use crate::yaml::{Node, Origin, Value};

/// One `${...}` occurrence: byte range and dotted path.
fn references(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("${") {
        let start = i + pos;
        let body_start = start + 2;
        let Some(close) = text[body_start..].find('}') else { break };
        let body = &text[body_start..body_start + close];
        let segments: Vec<&str> = body.split('.').collect();
        let valid = segments.len() >= 2 && segments.iter().all(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if valid {
            out.push((start, body_start + close + 1, body));
            i = body_start + close + 1;
        } else {
            i = start + 1;
        }
        if i >= bytes.len() {
            break;
        }
    }
    out
}

struct Resolver<'a> {
    root: &'a Node,
    memo: HashMap<String, String>,
    visiting: Vec<String>,
    warnings: Warnings,
}

impl Resolver<'_> {
    /// Expands every reference in `text`.
    fn expand(&mut self, text: &str, origin: &Origin) -> Result<String, InputError> {
        let refs = references(text);
        if refs.is_empty() {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end, path) in refs {
            out.push_str(&text[last..start]);
            match self.lookup(path, origin)? {
                Some(v) => out.push_str(&v),
                None => out.push_str(&text[start..end]),
            }
            last = end;
        }
        out.push_str(&text[last..]);
        Ok(out)
    }

    /// The text a reference expands to, or `None` to leave it in place.
    fn lookup(&mut self, path: &str, origin: &Origin) -> Result<Option<String>, InputError> {
        if let Some(hit) = self.memo.get(path) {
            return Ok(Some(hit.clone()));
        }
        let segments: Vec<&str> = path.split('.').collect();
        let Some(target) = self.root.get_path(&segments) else {
            self.warnings.push_at(origin, format!("config variable '${{{path}}}' could not be resolved; leaving it as is"));
            return Ok(None);
        };
        let text = match &target.value {
            Value::Null => {
                self.warnings.push_at(origin, format!("config variable '${{{path}}}' is null; leaving it as is"));
                return Ok(None);
            }
            Value::Seq(_) | Value::Map(_) => {
                self.warnings.push_at(
                    origin,
                    format!("config variable '${{{path}}}' refers to a {}, not a scalar; leaving it as is", target.type_name()),
                );
                return Ok(None);
            }
            Value::Str(s) => {
                if self.visiting.iter().any(|p| p == path) {
                    let mut chain = self.visiting.clone();
                    chain.push(path.to_string());
                    return Err(InputError::at(&target.origin, format!("cyclic config variable reference: {}", chain.join(" -> ")))
                        .help("a ${dotted.path} reference must not lead back to itself"));
                }
                self.visiting.push(path.to_string());
                let expanded = self.expand(s, &target.origin);
                self.visiting.pop();
                expanded?
            }
            Value::Bool(b) => (if *b { "True" } else { "False" }).to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => pyfmt::float_repr(*f),
        };
        self.memo.insert(path.to_string(), text.clone());
        Ok(Some(text))
    }
}

/// Replaces `${dotted.path}` references in every string of `config`.
pub fn substitute(config: &mut Node, warnings: &mut Warnings) -> Result<(), InputError> {
    // Compute all replacements against the unmodified tree, then write them back.
    let mut updates: Vec<(Vec<PathStep>, String)> = Vec::new();
    {
        let mut resolver = Resolver { root: config, memo: HashMap::new(), visiting: Vec::new(), warnings: Warnings::default() };
        let mut path = Vec::new();
        collect(config, &mut path, &mut resolver, &mut updates)?;
        warnings.extend(resolver.warnings);
    }
    for (path, text) in updates {
        if let Some(node) = node_at(config, &path) {
            node.value = Value::Str(text);
        }
    }
    Ok(())
}

#[derive(Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn collect(
    node: &Node,
    path: &mut Vec<PathStep>,
    resolver: &mut Resolver<'_>,
    updates: &mut Vec<(Vec<PathStep>, String)>,
) -> Result<(), InputError> {
    match &node.value {
        Value::Str(s) if s.contains("${") => {
            let expanded = resolver.expand(s, &node.origin)?;
            if expanded != *s {
                updates.push((path.clone(), expanded));
            }
        }
        Value::Map(m) => {
            for (k, v) in m {
                path.push(PathStep::Key(k.clone()));
                collect(v, path, resolver, updates)?;
                path.pop();
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(PathStep::Index(i));
                collect(v, path, resolver, updates)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn node_at<'a>(root: &'a mut Node, path: &[PathStep]) -> Option<&'a mut Node> {
    let mut node = root;
    for step in path {
        node = match (step, &mut node.value) {
            (PathStep::Key(k), Value::Map(m)) => m.get_mut(k)?,
            (PathStep::Index(i), Value::Seq(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    fn run(yaml: &str) -> (Result<Node, InputError>, Warnings) {
        let mut node = load_str(yaml, "s.yaml").unwrap();
        let mut w = Warnings::default();
        let r = substitute(&mut node, &mut w).map(|_| node);
        (r, w)
    }

    #[test]
    fn resolves_scalars_and_leaves_shell_vars() {
        let (n, w) = run(
            "model: {name: Qwen/Qwen3, len: 4096, enabled: yes}\ncmd: \"serve ${model.name} --len ${model.len} $HOME ${HOME} ${model.enabled}\"\n",
        );
        assert_eq!(n.unwrap().get("cmd").unwrap().as_str(), Some("serve Qwen/Qwen3 --len 4096 $HOME ${HOME} True"));
        assert!(w.is_empty());
    }

    #[test]
    fn unresolvable_and_non_scalar_are_kept_with_warnings() {
        let (n, w) = run("a: {b: [1]}\nx: \"${a.b} ${no.such} ${a.c}\"\n");
        assert_eq!(n.unwrap().get("x").unwrap().as_str(), Some("${a.b} ${no.such} ${a.c}"));
        assert_eq!(w.0.len(), 3);
        assert!(w.0[0].to_string().starts_with("s.yaml:2:1:"), "{}", w.0[0]);
    }

    #[test]
    fn chains_resolve_and_cycles_fail() {
        let (n, _) = run("x: \"${a.b}!\"\na: {b: \"${c.d}\"}\nc: {d: deep}\n");
        assert_eq!(n.unwrap().get("x").unwrap().as_str(), Some("deep!"));
        let (e, _) = run("a: {b: \"${c.d}\"}\nc: {d: \"${a.b}\"}\n");
        let e = e.unwrap_err();
        assert!(e.message.contains("cyclic"), "{e}");
        assert!(e.message.contains("a.b -> c.d -> a.b") || e.message.contains("c.d -> a.b -> c.d"), "{e}");
    }

    #[test]
    fn references_inside_lists() {
        let (n, _) = run("p: 8000\nargs: [\"--port=${model.x}\", \"--p=${vars.p}\"]\nvars: {p: 1}\nmodel: {x: 2}\n");
        let n = n.unwrap();
        let args: Vec<&str> = n.get("args").unwrap().as_seq().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args, ["--port=2", "--p=1"]);
    }
}
