//! YAML, the way llm-d-benchmark reads and writes it — behind one module.
//!
//! Upstream loads every file with PyYAML (`full_load`, YAML 1.1 scalar rules) and writes
//! with PyYAML's dumper. Fidelity of the rendered plans depends on both, so llmd does not
//! use a serde YAML crate for its config trees: it parses events with `saphyr-parser`
//! (pure Rust, positions on every event) and builds its own [`Node`] tree that
//!
//! * resolves scalars with PyYAML's YAML 1.1 implicit rules (`yes`/`on` are booleans,
//!   `0755` is octal, `1e3` is a string; see [`scalar`]),
//! * expands anchors, aliases and `<<` merge keys while loading,
//! * remembers the file, line and column that set every value ([`Origin`]) so errors
//!   and `llmd why` can point at the source,
//! * keeps mappings in insertion order (Python dicts do).
//!
//! [`emit`] writes a tree back out byte-compatible with PyYAML's `safe_dump` (sorted keys,
//! block style, PyYAML's scalar quoting and line folding).

pub mod emit;
pub mod load;
pub mod scalar;

use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;

pub use emit::{DumpOptions, dump};
pub use load::{load_file, load_str};

/// Where a value came from: file, 1-based line, 1-based column.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: Option<Arc<str>>,
    pub line: u32,
    pub col: u32,
}

impl Origin {
    pub fn new(file: &Arc<str>, line: u32, col: u32) -> Self {
        Origin { file: Some(file.clone()), line, col }
    }

    /// An origin for values produced by llmd itself (CLI flags, derived keys).
    pub fn synthetic(label: &str) -> Self {
        Origin { file: Some(Arc::from(label)), line: 0, col: 0 }
    }

    pub fn is_known(&self) -> bool {
        self.file.is_some()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), 0) => write!(f, "{file}"),
            (Some(file), line) => write!(f, "{file}:{line}:{}", self.col),
            (None, _) => write!(f, "<unknown>"),
        }
    }
}

/// Ordered mapping with string keys (Python dict semantics after a JSON round trip).
pub type Mapping = IndexMap<String, Node>;

/// A YAML value.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Mapping),
}

/// A value plus the place that set it. For mapping entries the origin is the key's.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

impl PartialEq for Value {
    /// Python equality: `1 == 1.0`, `True == 1` is *not* modelled (distinct types compare
    /// unequal except int/float), maps compare as unordered.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => (*a as f64) == *b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Seq(a), Value::Seq(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v == w)),
            _ => false,
        }
    }
}

impl PartialEq for Node {
    /// Nodes compare by value only; where a value came from is not part of its identity.
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Node {
    pub fn new(value: Value, origin: Origin) -> Self {
        Node { value, origin }
    }

    /// A node with no source location (values llmd computes).
    pub fn bare(value: Value) -> Self {
        Node { value, origin: Origin::default() }
    }

    pub fn null() -> Self {
        Node::bare(Value::Null)
    }

    pub fn str(s: impl Into<String>) -> Self {
        Node::bare(Value::Str(s.into()))
    }

    pub fn map(m: Mapping) -> Self {
        Node::bare(Value::Map(m))
    }

    pub fn as_map(&self) -> Option<&Mapping> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Mapping> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// An integer or a float, as a float.
    pub fn as_number(&self) -> Option<f64> {
        match self.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Python truthiness.
    pub fn is_truthy(&self) -> bool {
        match &self.value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Seq(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// Looks up `key` if this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Walks a path of mapping keys.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Node> {
        path.iter().try_fold(self, |node, key| node.get(key.as_ref()))
    }

    pub fn get_path_mut<S: AsRef<str>>(&mut self, path: &[S]) -> Option<&mut Node> {
        let mut node = self;
        for key in path {
            node = node.as_map_mut()?.get_mut(key.as_ref())?;
        }
        Some(node)
    }

    /// Sets `path` to `value`, creating (or replacing non-mapping) intermediate nodes
    /// with empty mappings, like upstream's `_set_nested`.
    pub fn set_path<S: AsRef<str>>(&mut self, path: &[S], value: Node) {
        let Some((last, parents)) = path.split_last() else {
            *self = value;
            return;
        };
        let mut node = self;
        for key in parents {
            if node.as_map().is_none() {
                node.value = Value::Map(Mapping::new());
            }
            let map = node.as_map_mut().expect("just made a mapping");
            node = map.entry(key.as_ref().to_string()).or_insert_with(|| Node::map(Mapping::new()));
            if node.as_map().is_none() {
                node.value = Value::Map(Mapping::new());
            }
        }
        if node.as_map().is_none() {
            node.value = Value::Map(Mapping::new());
        }
        node.as_map_mut().expect("mapping").insert(last.as_ref().to_string(), value);
    }

    /// Returns the child mapping `key`, creating it when absent (Python `setdefault(key, {})`).
    /// A non-mapping value is left in place and `None` is returned.
    pub fn ensure_map(&mut self, key: &str) -> Option<&mut Node> {
        let map = self.as_map_mut()?;
        let child = map.entry(key.to_string()).or_insert_with(|| Node::map(Mapping::new()));
        if child.as_map().is_some() { Some(child) } else { None }
    }

    /// A short, Python-like name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        self.value.type_name()
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }

    pub fn is_scalar(&self) -> bool {
        !matches!(self, Value::Seq(_) | Value::Map(_))
    }
}

impl From<&str> for Node {
    fn from(s: &str) -> Self {
        Node::str(s)
    }
}

impl From<String> for Node {
    fn from(s: String) -> Self {
        Node::str(s)
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Self {
        Node::bare(Value::Bool(b))
    }
}

impl From<i64> for Node {
    fn from(i: i64) -> Self {
        Node::bare(Value::Int(i))
    }
}

/// Builds a mapping node from `(key, node)` pairs.
pub fn map_of<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Node)>) -> Node {
    Node::map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// Errors from reading YAML: always with a location.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct YamlError {
    pub origin: Origin,
    pub message: String,
}

impl Node {
    /// Converts JSON into a node (JSON objects keep their order).
    pub fn from_json(json: &serde_json::Value) -> Node {
        Node::bare(match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => Value::Seq(items.iter().map(Node::from_json).collect()),
            serde_json::Value::Object(map) => Value::Map(map.iter().map(|(k, v)| (k.clone(), Node::from_json(v))).collect()),
        })
    }

    /// Converts a node into JSON (non-finite floats become `null`, as serde_json cannot
    /// carry them).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}
/// `str()` of a YAML value as Python would print the loaded object.
pub fn str_node(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => s.clone(),
        _ => repr_node(node),
    }
}

/// `repr()` of a YAML value as Python would print the loaded object.
pub fn repr_node(node: &Node) -> String {
    match &node.value {
        Value::Null => "None".into(),
        Value::Bool(b) => (if *b { "True" } else { "False" }).into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::pyfmt::float_repr(*f),
        Value::Str(s) => crate::pyfmt::str_repr(s),
        Value::Seq(items) => format!("[{}]", items.iter().map(repr_node).collect::<Vec<_>>().join(", ")),
        Value::Map(m) => {
            format!(
                "{{{}}}",
                m.iter().map(|(k, v)| format!("{}: {}", crate::pyfmt::str_repr(k), repr_node(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}
