//! upstream's custom Jinja filters and globals, and Python-compatible replacements for
//! the built-ins whose minijinja behaviour differs from Jinja2 on Python.
//!
//! | name | semantics |
//! |------|-----------|
//! | `indent(width=4, first=False)` | empty → unchanged; `first` indents every line, else lines 2..n; blank lines stay empty |
//! | `toyaml(indent=0)` | None/empty → `""`, str verbatim, else PyYAML block dump (sorted keys, `|` for multi-line), right-stripped |
//! | `tojson` | compact `json.dumps` (`ensure_ascii`), None → `null` |
//! | `is_empty`, `default_if_empty(d)` | None, blank string, empty dict/list |
//! | `b64pad`, `b64encode` | pad to a multiple of 4 / UTF-8 base64; non-strings and `""` pass through |
//! | `model_id_label(namespace="")` | see [`model_id_label`] |
//! | `int`, `float`, `string`, `lower`, `upper`, `join` | Jinja2 on Python (`int('8')`, `str(True)` = `True`) |
//! | global `raise(msg)` | aborts rendering with `msg` |

use base64::Engine;
use minijinja::value::{Kwargs, Tuple, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

use super::pyvalue::{from_template, map_pairs, py_json, py_str};
use crate::yaml::{DumpOptions, dump};

fn text_arg(value: &Value) -> String {
    py_str(value)
}

pub fn indent(value: Value, width: Option<Value>, first: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let width: usize = match kwargs.get::<Option<Value>>("width")?.or(width) {
        Some(w) => usize::try_from(w.clone())
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("indent width must be a number, got {w}")))?,
        None => 4,
    };
    let first = kwargs.get::<Option<Value>>("first")?.or(first).is_some_and(|f| f.is_true());
    kwargs.assert_all_used()?;
    if !value.is_true() {
        return Ok(value);
    }
    let text = text_arg(&value);
    let pad = " ".repeat(width);
    let indent_line = |line: &str| if line.is_empty() { String::new() } else { format!("{pad}{line}") };
    let lines: Vec<&str> = text.split('\n').collect();
    let out = if first {
        lines.iter().map(|l| indent_line(l)).collect::<Vec<_>>().join("\n")
    } else if lines.len() == 1 {
        text
    } else {
        let rest: Vec<String> = lines[1..].iter().map(|l| indent_line(l)).collect();
        format!("{}\n{}", lines[0], rest.join("\n"))
    };
    Ok(Value::from(out))
}

fn empty_collection(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Map) && value.len() == Some(0)
}

pub fn toyaml(value: Value, indent: Option<usize>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = kwargs.get::<Option<usize>>("indent")?.or(indent).unwrap_or(0);
    if kwargs.get::<Option<bool>>("default_flow_style")?.unwrap_or(false) {
        return Err(Error::new(ErrorKind::InvalidOperation, "toyaml(default_flow_style=True) is not supported"));
    }
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return Err(Error::new(ErrorKind::UndefinedError, "toyaml: cannot represent an undefined value"));
    }
    if value.is_none() {
        return Ok(Value::from(""));
    }
    if value.kind() == ValueKind::String {
        return Ok(value);
    }
    if empty_collection(&value) {
        return Ok(Value::from(""));
    }
    let text = dump(&from_template(&value), DumpOptions::toyaml());
    let text = text.trim_end();
    if indent == 0 {
        return Ok(Value::from(text));
    }
    let pad = " ".repeat(indent);
    let out: Vec<String> = text.split('\n').map(|l| if l.trim().is_empty() { l.to_string() } else { format!("{pad}{l}") }).collect();
    Ok(Value::from(out.join("\n")))
}

pub fn tojson(value: Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(Error::new(ErrorKind::UndefinedError, "tojson: cannot serialize an undefined value"));
    }
    Ok(Value::from(py_json(&value)))
}

fn is_empty_value(value: &Value) -> bool {
    match value.kind() {
        ValueKind::None => true,
        ValueKind::String => value.as_str().unwrap_or_default().trim().is_empty(),
        ValueKind::Seq | ValueKind::Map => value.len() == Some(0),
        _ => false,
    }
}

pub fn is_empty(value: Value) -> bool {
    is_empty_value(&value)
}

pub fn default_if_empty(value: Value, default: Value) -> Value {
    if is_empty_value(&value) { default } else { value }
}

pub fn b64pad(value: Value) -> Value {
    match value.as_str() {
        Some(s) if !s.is_empty() => {
            let mut s = s.trim().to_string();
            while s.len() % 4 != 0 {
                s.push('=');
            }
            Value::from(s)
        }
        _ => value,
    }
}

pub fn b64encode(value: Value) -> Value {
    match value.as_str() {
        Some(s) if !s.is_empty() => Value::from(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())),
        _ => value,
    }
}

pub fn model_id_label_filter(value: Value, namespace: Option<Value>) -> Value {
    match value.as_str() {
        Some(name) if !name.is_empty() => {
            let ns = namespace.map(|n| py_str(&n)).unwrap_or_default();
            Value::from(model_id_label(name, &ns))
        }
        _ => value,
    }
}

/// Python's `int(str)` accepts surrounding whitespace and `_` between digits.
fn python_int(s: &str, base: u32) -> Option<i64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    let v = i64::from_str_radix(&digits, base).ok()?;
    Some(if neg { -v } else { v })
}

fn python_float(s: &str) -> Option<f64> {
    let t = s.trim().to_lowercase();
    match t.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => Some(if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        "nan" => Some(f64::NAN),
        _ if t.contains("__") || t.starts_with('_') || t.ends_with('_') => None,
        _ => t.replace('_', "").parse().ok(),
    }
}

/// Jinja2's `int(default=0, base=10)`.
pub fn int(value: Value, default: Option<Value>, base: Option<u32>) -> Value {
    let default = default.unwrap_or(Value::from(0));
    let base = base.unwrap_or(10);
    match value.kind() {
        ValueKind::Bool => Value::from(i64::from(value.is_true())),
        ValueKind::Number if value.is_integer() => value,
        ValueKind::Number => f64::try_from(value).map(|f| Value::from(f.trunc() as i64)).unwrap_or(default),
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            if let Some(i) = python_int(s, base) {
                return Value::from(i);
            }
            match python_float(s) {
                Some(f) if f.is_finite() => Value::from(f.trunc() as i64),
                _ => default,
            }
        }
        _ => default,
    }
}

/// Jinja2's `float(default=0.0)`.
pub fn float(value: Value, default: Option<Value>) -> Value {
    let default = default.unwrap_or(Value::from(0.0));
    match value.kind() {
        ValueKind::Bool => Value::from(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value).map(Value::from).unwrap_or(default),
        ValueKind::String => python_float(value.as_str().unwrap_or_default()).map(Value::from).unwrap_or(default),
        _ => default,
    }
}

pub fn string(value: Value) -> Value {
    Value::from(py_str(&value))
}

pub fn lower(value: Value) -> Value {
    Value::from(py_str(&value).to_lowercase())
}

pub fn upper(value: Value) -> Value {
    Value::from(py_str(&value).to_uppercase())
}

/// Jinja2's `join(d='', attribute=None)`, converting items with `str()`.
pub fn join(value: Value, sep: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let sep = kwargs.get::<Option<Value>>("d")?.or(sep).map(|s| py_str(&s)).unwrap_or_default();
    let attribute: Option<String> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    if value.kind() == ValueKind::String {
        let s = value.as_str().unwrap_or_default();
        return Ok(Value::from(s.chars().map(String::from).collect::<Vec<_>>().join(&sep)));
    }
    let mut parts = Vec::new();
    for item in value.try_iter()? {
        let item = match &attribute {
            Some(attr) => attr.split('.').try_fold(item, |v, part| v.get_attr(part))?,
            None => item,
        };
        parts.push(py_str(&item));
    }
    Ok(Value::from(parts.join(&sep)))
}

/// The template global `raise(message)`.
pub fn raise(message: Value) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("raise(): {}", py_str(&message))))
}

fn str_args(args: &[Value]) -> Vec<String> {
    args.iter().map(py_str).collect()
}

/// Python methods on strings, native maps and lists that templates call.
pub fn python_method(_state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    let unknown = || Error::new(ErrorKind::UnknownMethod, format!("{} has no method named {method}", value.kind()));
    match value.kind() {
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            let a = str_args(args);
            let strip_set = |i: usize| args.get(i).filter(|v| !v.is_none()).map(py_str);
            Ok(match (method, a.as_slice()) {
                ("replace", [old, new]) => Value::from(s.replace(old.as_str(), new)),
                ("replace", [old, new, _]) => {
                    let count = usize::try_from(args[2].clone()).unwrap_or(usize::MAX);
                    Value::from(s.replacen(old.as_str(), new, count))
                }
                ("rstrip", _) => Value::from(match strip_set(0) {
                    Some(set) => s.trim_end_matches(|c| set.contains(c)),
                    None => s.trim_end(),
                }),
                ("lstrip", _) => Value::from(match strip_set(0) {
                    Some(set) => s.trim_start_matches(|c| set.contains(c)),
                    None => s.trim_start(),
                }),
                ("strip", _) => Value::from(match strip_set(0) {
                    Some(set) => s.trim_matches(|c| set.contains(c)),
                    None => s.trim(),
                }),
                ("lower", []) => Value::from(s.to_lowercase()),
                ("upper", []) => Value::from(s.to_uppercase()),
                ("title", []) => Value::from(title_case(s)),
                ("capitalize", []) => {
                    let mut c = s.chars();
                    Value::from(c.next().map(|f| f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase()).unwrap_or_default())
                }
                ("split", []) => Value::from(s.split_whitespace().map(Value::from).collect::<Vec<_>>()),
                ("split", [sep]) => Value::from(s.split(sep.as_str()).map(Value::from).collect::<Vec<_>>()),
                ("split", [sep, _]) => {
                    let n = i64::try_from(args[1].clone()).unwrap_or(-1);
                    let parts: Vec<Value> = if n < 0 {
                        s.split(sep.as_str()).map(Value::from).collect()
                    } else {
                        s.splitn(n as usize + 1, sep.as_str()).map(Value::from).collect()
                    };
                    Value::from(parts)
                }
                ("rsplit", [sep, _]) => {
                    let n = i64::try_from(args[1].clone()).unwrap_or(-1);
                    let mut parts: Vec<Value> = if n < 0 {
                        s.split(sep.as_str()).map(Value::from).collect()
                    } else {
                        s.rsplitn(n as usize + 1, sep.as_str()).map(Value::from).collect()
                    };
                    if n >= 0 {
                        parts.reverse();
                    }
                    Value::from(parts)
                }
                ("splitlines", []) => Value::from(s.lines().map(Value::from).collect::<Vec<_>>()),
                ("startswith" | "endswith", [_]) => {
                    let prefixes: Vec<String> = if args[0].kind() == ValueKind::Seq {
                        args[0].try_iter()?.map(|v| py_str(&v)).collect()
                    } else {
                        vec![a[0].clone()]
                    };
                    let hit =
                        prefixes.iter().any(|p| if method == "startswith" { s.starts_with(p.as_str()) } else { s.ends_with(p.as_str()) });
                    Value::from(hit)
                }
                ("count", [sub]) => Value::from(s.matches(sub.as_str()).count()),
                ("find", [sub]) => Value::from(s.find(sub.as_str()).map_or(-1, |i| s[..i].chars().count() as i64)),
                ("isdigit", []) => Value::from(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
                ("join", [_]) => {
                    let items: Vec<String> = args[0].try_iter()?.map(|v| py_str(&v)).collect();
                    Value::from(items.join(s))
                }
                ("zfill", [_]) => {
                    let width = usize::try_from(args[0].clone()).unwrap_or(0);
                    let len = s.chars().count();
                    if len >= width {
                        Value::from(s)
                    } else {
                        let (sign, rest) = if s.starts_with(['+', '-']) { s.split_at(1) } else { ("", s) };
                        Value::from(format!("{sign}{}{rest}", "0".repeat(width - len)))
                    }
                }
                _ => return Err(unknown()),
            })
        }
        ValueKind::Map => {
            let pairs = map_pairs(value).ok_or_else(unknown)?;
            match (method, args) {
                ("items", []) => Ok(Value::from(
                    pairs.into_iter().map(|(k, v)| Value::from_object(Tuple::from([Value::from(k), v]))).collect::<Vec<_>>(),
                )),
                ("keys", []) => Ok(Value::from(pairs.into_iter().map(|(k, _)| Value::from(k)).collect::<Vec<_>>())),
                ("values", []) => Ok(Value::from(pairs.into_iter().map(|(_, v)| v).collect::<Vec<_>>())),
                ("get", [key]) | ("get", [key, _]) => {
                    let k = py_str(key);
                    Ok(pairs
                        .into_iter()
                        .find(|(pk, _)| *pk == k)
                        .map(|(_, v)| v)
                        .unwrap_or_else(|| args.get(1).cloned().unwrap_or(Value::from(()))))
                }
                ("update" | "setdefault" | "pop", _) => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "dict.{method}() on a mapping a filter or function returned, which is read-only here; copy it into a literal first: {{% set d = {{}} %}}{{% set _ = d.update(value) %}}"
                    ),
                )),
                _ => Err(unknown()),
            }
        }
        ValueKind::Seq => match (method, args) {
            ("index", [needle]) => {
                let pos = value.try_iter()?.position(|v| v == *needle);
                pos.map(Value::from).ok_or_else(|| Error::new(ErrorKind::InvalidOperation, format!("{} is not in list", py_str(needle))))
            }
            ("count", [needle]) => Ok(Value::from(value.try_iter()?.filter(|v| v == needle).count())),
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_alpha = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if prev_alpha {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_alpha = true;
        } else {
            out.push(c);
            prev_alpha = false;
        }
    }
    out
}
/// Upstream's `model_id_label`: `id = name` with `/` and `.` replaced by `-`;
/// `h = sha256("<namespace>/<id>")` (just `id` without a namespace);
/// label = lowercase(`id[:8]-h[:8]-id[-8:]`). Slicing is by characters, like Python.
pub fn model_id_label(model_name: &str, namespace: &str) -> String {
    use sha2::{Digest, Sha256};
    let id = model_name.replace(['/', '.'], "-");
    let hash_input = if namespace.is_empty() { id.clone() } else { format!("{namespace}/{id}") };
    let digest = Sha256::digest(hash_input.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let chars: Vec<char> = id.chars().collect();
    let first: String = chars.iter().take(8).collect();
    let last: String = chars[chars.len().saturating_sub(8)..].iter().collect();
    format!("{first}-{hex}-{last}").to_lowercase()
}
