//! Key tables of hand-written input files, read two ways: by the loaders, which reject
//! unknown keys with a did-you-mean at the key's line ([`check_keys`]), and by
//! `llmd schema`, which turns the same table into a JSON Schema (draft 2020-12) for
//! editors ([`json_schema`]). One table, so what an editor accepts and what llmd accepts
//! cannot drift apart.

use serde_json::{Map, Value as Json, json};

use crate::error::{InputError, did_you_mean};
use crate::yaml::Node;

/// What a key holds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Str,
    Bool,
    /// A whole number of at least `min`.
    Int {
        min: i64,
    },
    /// A number from 0 to 1.
    Fraction,
    /// One of these words.
    Enum(&'static [&'static str]),
    /// A mapping with exactly these keys (unknown keys are errors).
    Object(&'static [Field]),
    /// A mapping with these keys plus any other (a treatment's dotted override keys, or
    /// a section upstream reads only for information).
    Open(&'static [Field]),
    /// A mapping of dotted keys to values (constants).
    Dotted,
    List(&'static Kind),
    /// Anything (levels of a factor).
    Any,
}

/// One key of a mapping.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
    /// The default as JSON text, when the key has one.
    pub default: Option<&'static str>,
    pub required: bool,
}

impl Field {
    pub const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Field {
        Field { name, kind, doc, default: None, required: false }
    }

    pub const fn default(mut self, json: &'static str) -> Field {
        self.default = Some(json);
        self
    }

    pub const fn required(mut self) -> Field {
        self.required = true;
        self
    }
}

/// A whole file's table.
pub struct Document {
    /// The file name under `workload/schemas/` (without `.json`).
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub fields: &'static [Field],
}

/// The JSON Schema of `doc`.
pub fn json_schema(doc: &Document) -> Json {
    let mut root = Map::new();
    root.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    root.insert("$id".into(), json!(format!("https://llmd.dev/schemas/{}.json", doc.name)));
    root.insert("title".into(), json!(doc.title));
    root.insert("description".into(), json!(doc.description));
    if let Json::Object(body) = object(doc.fields, false) {
        root.extend(body);
    }
    Json::Object(root)
}

fn object(fields: &[Field], open: bool) -> Json {
    let mut props = Map::new();
    for f in fields {
        let mut s = match kind(&f.kind) {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        s.insert("description".into(), json!(f.doc));
        if let Some(d) = f.default {
            s.insert("default".into(), serde_json::from_str(d).unwrap_or(Json::Null));
        }
        props.insert(f.name.into(), Json::Object(s));
    }
    let required: Vec<&str> = fields.iter().filter(|f| f.required).map(|f| f.name).collect();
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("properties".into(), Json::Object(props));
    if !required.is_empty() {
        m.insert("required".into(), json!(required));
    }
    m.insert("additionalProperties".into(), json!(open));
    Json::Object(m)
}

fn kind(k: &Kind) -> Json {
    match k {
        Kind::Str => json!({"type": "string"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int { min } => json!({"type": "integer", "minimum": min}),
        Kind::Fraction => json!({"type": "number", "minimum": 0, "maximum": 1}),
        Kind::Enum(words) => json!({"type": "string", "enum": words}),
        Kind::Object(fields) => object(fields, false),
        Kind::Open(fields) => object(fields, true),
        Kind::Dotted => json!({"type": "object", "additionalProperties": true}),
        Kind::List(item) => json!({"type": "array", "items": kind(item)}),
        Kind::Any => json!({}),
    }
}

/// Rejects keys the table does not list, in `node` and in every closed mapping under
/// it, naming the key's line and the nearest known key. `what` names `node` in messages.
pub fn check_keys(node: &Node, fields: &[Field], what: &str) -> Result<(), InputError> {
    let Some(map) = node.as_map() else { return Ok(()) };
    for (key, value) in map.iter() {
        let Some(field) = fields.iter().find(|f| f.name == key) else {
            let mut e = InputError::at(&value.origin, format!("unknown key '{key}' in {what}"));
            if let Some(s) = did_you_mean(key, fields.iter().map(|f| f.name)) {
                e = e.help(format!("did you mean '{s}'?"));
            }
            return Err(e);
        };
        check_kind(value, &field.kind, &format!("'{}'", path(what, key)))?;
    }
    Ok(())
}

fn check_kind(node: &Node, kind: &Kind, what: &str) -> Result<(), InputError> {
    match kind {
        Kind::Object(_) | Kind::Open(_) | Kind::Dotted if !node.is_null() && node.as_map().is_none() => {
            Err(InputError::at(&node.origin, format!("{what} must be a mapping, not a {}", node.type_name())))
        }
        Kind::List(_) if !node.is_null() && node.as_seq().is_none() => {
            Err(InputError::at(&node.origin, format!("{what} must be a list, not a {}", node.type_name())))
        }
        Kind::Object(fields) => check_keys(node, fields, what),
        Kind::Open(fields) => {
            // Listed keys are checked; others (dotted overrides) are free.
            for (key, value) in node.as_map().into_iter().flatten() {
                if let Some(f) = fields.iter().find(|f| f.name == key) {
                    check_kind(value, &f.kind, &format!("'{}'", path(what, key)))?;
                }
            }
            Ok(())
        }
        Kind::List(item) => {
            for (i, n) in node.as_seq().into_iter().flatten().enumerate() {
                check_kind(n, item, &format!("{}.{i}'", what.trim_end_matches('\'')))?;
            }
            Ok(())
        }
        // Strings and booleans are checked here; numbers and words keep their loaders'
        // own messages (which say the allowed range or values).
        Kind::Str if node.as_map().is_some() || node.as_seq().is_some() => {
            Err(InputError::at(&node.origin, format!("{what} must be a string, not a {}", node.type_name())))
        }
        Kind::Bool if !node.is_null() && !matches!(node.value, crate::yaml::Value::Bool(_)) => {
            Err(InputError::at(&node.origin, format!("{what} must be true or false, not a {}", node.type_name())))
        }
        _ => Ok(()),
    }
}

/// `'a.b'` + `c` → `a.b.c` (top-level names are not quoted paths).
fn path(what: &str, key: &str) -> String {
    match what.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')) {
        Some(parent) => format!("{parent}.{key}"),
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    const INNER: &[Field] = &[Field::new("b", Kind::Bool, "a flag").default("false")];
    const FIELDS: &[Field] = &[
        Field::new("a", Kind::Object(INNER), "a section"),
        Field::new("n", Kind::Int { min: 1 }, "a count").default("1"),
        Field::new("l", Kind::List(&Kind::Object(INNER)), "a list").required(),
    ];
    const DOC: Document = Document { name: "t", title: "T", description: "test", fields: FIELDS };

    #[test]
    fn unknown_keys_are_found_at_any_depth_with_their_line() {
        let ok = load_str("a: {b: true}\nn: 2\nl: [{b: false}]\n", "t.yaml").unwrap();
        check_keys(&ok, FIELDS, "a test file").unwrap();
        let top = load_str("nn: 2\n", "t.yaml").unwrap();
        let e = check_keys(&top, FIELDS, "a test file").unwrap_err();
        assert_eq!(e.message, "unknown key 'nn' in a test file");
        assert_eq!(e.help.as_deref(), Some("did you mean 'n'?"));
        let nested = load_str("a:\n  bb: true\n", "t.yaml").unwrap();
        let e = check_keys(&nested, FIELDS, "a test file").unwrap_err();
        assert_eq!(e.message, "unknown key 'bb' in 'a'");
        assert_eq!(e.origin.as_ref().map(|o| o.line), Some(2));
        let listed = load_str("l:\n  - {b: true}\n  - {c: 1}\n", "t.yaml").unwrap();
        assert_eq!(check_keys(&listed, FIELDS, "a test file").unwrap_err().message, "unknown key 'c' in 'l.1'");
    }

    #[test]
    fn strings_and_booleans_are_checked_in_closed_and_open_mappings() {
        const OPEN: &[Field] = &[Field::new("name", Kind::Str, "a name")];
        const F: &[Field] = &[Field::new("t", Kind::List(&Kind::Open(OPEN)), "treatments"), Field::new("b", Kind::Bool, "a flag")];
        let ok = load_str("t: [{name: x, any.dotted.key: [1]}]\nb: true\n", "t.yaml").unwrap();
        check_keys(&ok, F, "f").unwrap();
        let listed = load_str("t: [{name: [x]}]\n", "t.yaml").unwrap();
        assert_eq!(check_keys(&listed, F, "f").unwrap_err().message, "'t.0.name' must be a string, not a list");
        let word = load_str("b: maybe\n", "t.yaml").unwrap();
        assert!(check_keys(&word, F, "f").unwrap_err().message.starts_with("'b' must be true or false"));
    }

    #[test]
    fn the_schema_has_types_defaults_and_closed_objects() {
        let s = json_schema(&DOC);
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"], json!(["l"]));
        assert_eq!(s["properties"]["n"], json!({"type": "integer", "minimum": 1, "description": "a count", "default": 1}));
        assert_eq!(s["properties"]["a"]["properties"]["b"]["default"], false);
        assert_eq!(s["properties"]["l"]["items"]["additionalProperties"], false);
    }
}
