//! The bridge between config trees and template values, with Python's semantics.
//!
//! Upstream's templates were written for Jinja2 over Python dicts, and they mutate them:
//! `{% set _ = container.update({'image': ...}) %}` changes the config that later lines,
//! later templates of the same stack and the written `config.yaml` all see. minijinja's
//! maps are immutable, so every config mapping becomes a [`PyDict`]: a shared, interior-
//! mutable mapping object with the Python dict methods templates call. Lists stay
//! minijinja sequences; mutating a dict inside a list is visible through the list.
//!
//! This module also prints values the way Python's `str()`/`repr()` would, which is what
//! Jinja2 writes for `{{ value }}` (`True`, `None`, `['a', 'b']`, `{'k': 1}`).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object, ObjectRepr, Tuple, Value as JValue, ValueKind};
use minijinja::{Error, ErrorKind, State};

use crate::pyfmt;
use crate::yaml::{Mapping, Node, Value};

/// A mutable Python-like dict shared by reference.
#[derive(Debug, Default)]
pub struct PyDict {
    entries: Mutex<IndexMap<String, JValue>>,
}

impl PyDict {
    pub fn new(entries: IndexMap<String, JValue>) -> Self {
        PyDict { entries: Mutex::new(entries) }
    }

    pub fn lock(&self) -> MutexGuard<'_, IndexMap<String, JValue>> {
        // A poisoned lock only means a panic elsewhere; the map itself is still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Vec<(String, JValue)> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

fn key_of(value: &JValue) -> Option<String> {
    match value.kind() {
        ValueKind::String => value.as_str().map(str::to_string),
        ValueKind::Number | ValueKind::Bool => Some(py_str(value)),
        ValueKind::None => Some("null".into()),
        _ => None,
    }
}

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let key = key_of(key)?;
        self.lock().get(&key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<JValue> = self.lock().keys().map(|k| JValue::from(k.as_str())).collect();
        Enumerator::Values(keys)
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.lock().len())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.lock().is_empty()
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[JValue]) -> Result<JValue, Error> {
        match method {
            "items" => {
                no_args(method, args)?;
                Ok(JValue::from(
                    self.snapshot().into_iter().map(|(k, v)| JValue::from_object(Tuple::from([JValue::from(k), v]))).collect::<Vec<_>>(),
                ))
            }
            "keys" => {
                no_args(method, args)?;
                Ok(JValue::from(self.lock().keys().map(|k| JValue::from(k.as_str())).collect::<Vec<_>>()))
            }
            "values" => {
                no_args(method, args)?;
                Ok(JValue::from(self.lock().values().cloned().collect::<Vec<_>>()))
            }
            "get" => {
                let (key, default) = key_and_default(method, args)?;
                Ok(key_of(&key).and_then(|k| self.lock().get(&k).cloned()).unwrap_or(default))
            }
            "update" => {
                let Some(other) = args.first() else { return Ok(JValue::from(())) };
                if args.len() > 1 {
                    return Err(Error::new(ErrorKind::TooManyArguments, "dict.update takes one mapping"));
                }
                let pairs = map_pairs(other).ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "dict.update needs a mapping"))?;
                let mut entries = self.lock();
                for (k, v) in pairs {
                    entries.insert(k, v);
                }
                Ok(JValue::from(()))
            }
            "setdefault" => {
                let (key, default) = key_and_default(method, args)?;
                let key = key_of(&key).ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "unhashable dict key"))?;
                Ok(self.lock().entry(key).or_insert(default).clone())
            }
            "pop" => {
                let (key, default) = key_and_default(method, args)?;
                let key = key_of(&key).unwrap_or_default();
                match self.lock().shift_remove(&key) {
                    Some(v) => Ok(v),
                    None if args.len() > 1 => Ok(default),
                    None => Err(Error::new(ErrorKind::InvalidOperation, format!("KeyError: {}", pyfmt::str_repr(&key)))),
                }
            }
            "copy" => {
                no_args(method, args)?;
                Ok(JValue::from_object(PyDict::new(self.lock().clone())))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result
    where
        Self: Sized + 'static,
    {
        f.write_str(&dict_repr(self.snapshot().iter().map(|(k, v)| (k.as_str(), v))))
    }
}

fn no_args(method: &str, args: &[JValue]) -> Result<(), Error> {
    if args.is_empty() { Ok(()) } else { Err(Error::new(ErrorKind::TooManyArguments, format!("{method}() takes no arguments"))) }
}

fn key_and_default(method: &str, args: &[JValue]) -> Result<(JValue, JValue), Error> {
    match args {
        [key] => Ok((key.clone(), JValue::from(()))),
        [key, default] => Ok((key.clone(), default.clone())),
        _ => Err(Error::new(ErrorKind::InvalidOperation, format!("{method}() takes a key and an optional default"))),
    }
}

/// The `(key, value)` pairs of any map-like value (a [`PyDict`] or a template literal).
pub fn map_pairs(value: &JValue) -> Option<Vec<(String, JValue)>> {
    if let Some(d) = value.downcast_object_ref::<PyDict>() {
        return Some(d.snapshot());
    }
    if value.kind() != ValueKind::Map {
        return None;
    }
    let mut out = Vec::new();
    for key in value.try_iter().ok()? {
        let v = value.get_item(&key).unwrap_or_default();
        out.push((key_of(&key)?, v));
    }
    Some(out)
}

/// A template value with every map in it made a [`PyDict`] (the `__pydict` function the
/// dict-literal rewrite calls, see [`super::literals`]); a `PyDict` stays itself.
pub fn mutable(value: JValue) -> JValue {
    if value.downcast_object_ref::<PyDict>().is_some() {
        return value;
    }
    match value.kind() {
        ValueKind::Map => match map_pairs(&value) {
            Some(pairs) => JValue::from_object(PyDict::new(pairs.into_iter().map(|(k, v)| (k, mutable(v))).collect())),
            None => value,
        },
        ValueKind::Seq => match value.try_iter() {
            Ok(items) => JValue::from(items.map(mutable).collect::<Vec<_>>()),
            Err(_) => value,
        },
        _ => value,
    }
}

/// A config tree as a template value. Mappings become [`PyDict`]s.
pub fn to_template(node: &Node) -> JValue {
    match &node.value {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Int(i) => JValue::from(*i),
        Value::Float(f) => JValue::from(*f),
        Value::Str(s) => JValue::from(s.as_str()),
        Value::Seq(items) => JValue::from(items.iter().map(to_template).collect::<Vec<_>>()),
        Value::Map(m) => JValue::from_object(PyDict::new(m.iter().map(|(k, v)| (k.clone(), to_template(v))).collect())),
    }
}

/// A template value back as a config tree (for `toyaml`, `tojson` and `config.yaml`).
/// Undefined becomes null; anything without a YAML form is stringified.
pub fn from_template(value: &JValue) -> Node {
    Node::bare(match value.kind() {
        ValueKind::Undefined | ValueKind::None => Value::Null,
        ValueKind::Bool => Value::Bool(value.is_true()),
        ValueKind::Number => {
            if value.is_integer() {
                match i64::try_from(value.clone()) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Float(f64::try_from(value.clone()).unwrap_or(f64::NAN)),
                }
            } else {
                Value::Float(f64::try_from(value.clone()).unwrap_or(f64::NAN))
            }
        }
        ValueKind::String => Value::Str(value.as_str().unwrap_or_default().to_string()),
        ValueKind::Seq | ValueKind::Iterable => {
            Value::Seq(value.try_iter().map(|it| it.map(|v| from_template(&v)).collect()).unwrap_or_default())
        }
        ValueKind::Map => match map_pairs(value) {
            Some(pairs) => Value::Map(pairs.into_iter().map(|(k, v)| (k, from_template(&v))).collect::<Mapping>()),
            None => Value::Str(value.to_string()),
        },
        _ => Value::Str(value.to_string()),
    })
}

/// Python's `str(value)`: what Jinja2 writes for `{{ value }}`.
pub fn py_str(value: &JValue) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => py_repr(value),
    }
}

/// Python's `repr(value)`.
pub fn py_repr(value: &JValue) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => (if value.is_true() { "True" } else { "False" }).into(),
        ValueKind::Number => {
            if value.is_integer() {
                value.to_string()
            } else {
                pyfmt::float_repr(f64::try_from(value.clone()).unwrap_or(f64::NAN))
            }
        }
        ValueKind::String => pyfmt::str_repr(value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = value.try_iter().map(|it| it.map(|v| py_repr(&v)).collect()).unwrap_or_default();
            if value.is_tuple() {
                if items.len() == 1 { format!("({},)", items[0]) } else { format!("({})", items.join(", ")) }
            } else {
                format!("[{}]", items.join(", "))
            }
        }
        ValueKind::Map => match map_pairs(value) {
            Some(pairs) => dict_repr(pairs.iter().map(|(k, v)| (k.as_str(), v))),
            None => value.to_string(),
        },
        _ => value.to_string(),
    }
}

fn dict_repr<'a>(pairs: impl Iterator<Item = (&'a str, &'a JValue)>) -> String {
    let inner: Vec<String> = pairs.map(|(k, v)| format!("{}: {}", pyfmt::str_repr(k), py_repr(v))).collect();
    format!("{{{}}}", inner.join(", "))
}

/// `json.dumps(value, separators=(",", ":"))`.
pub fn py_json(value: &JValue) -> String {
    let mut out = String::new();
    write_json(&mut out, &from_template(value));
    out
}

fn write_json(out: &mut String, node: &Node) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&pyfmt::json_float(*f)),
        Value::Str(s) => pyfmt::json_string(out, s),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pyfmt::json_string(out, k);
                out.push(':');
                write_json(out, v);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    #[test]
    fn round_trip_and_python_printing() {
        let node = load_str("a: 1\nb: [true, null, 1.5, x]\nc: {d: it's}\n", "t").unwrap();
        let v = to_template(&node);
        assert_eq!(from_template(&v), node);
        assert_eq!(py_str(&v), "{'a': 1, 'b': [True, None, 1.5, 'x'], 'c': {'d': \"it's\"}}");
        assert_eq!(py_json(&v), "{\"a\":1,\"b\":[true,null,1.5,\"x\"],\"c\":{\"d\":\"it's\"}}");
        assert_eq!(py_str(&JValue::from(1.0)), "1.0");
        assert_eq!(py_str(&JValue::from(false)), "False");
    }
}
