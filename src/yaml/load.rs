//! Loading YAML text into [`Node`] trees with PyYAML's semantics.
//!
//! Events come from `saphyr-parser`; this module resolves scalars ([`super::scalar`]),
//! expands aliases (a deep copy, as if PyYAML's shared objects were copied) and applies
//! `<<` merge keys exactly like PyYAML's `flatten_mapping`: merged entries come first,
//! explicit keys override them, and in a list of merged mappings the earlier ones win.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

use super::{Mapping, Node, Origin, Value, YamlError, scalar};

/// Deepest nesting accepted; deeper input is an error, not a stack overflow.
const MAX_DEPTH: usize = 256;
/// Upper bound on nodes produced by alias expansion ("billion laughs" guard).
const MAX_NODES: usize = 5_000_000;

/// Loads exactly one document (an empty stream is `null`), like PyYAML's `full_load`.
pub fn load_str(text: &str, file: &str) -> Result<Node, YamlError> {
    let mut docs = load_all_str(text, file)?;
    match docs.len() {
        0 => Ok(Node::new(Value::Null, Origin::new(&Arc::from(file), 1, 1))),
        1 => Ok(docs.pop().expect("one document")),
        _ => Err(YamlError {
            origin: docs[1].origin.clone(),
            message: "expected a single document in the stream, but found another document".into(),
        }),
    }
}

/// Loads every document of a stream, like PyYAML's `safe_load_all`.
pub fn load_all_str(text: &str, file: &str) -> Result<Vec<Node>, YamlError> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder { file: file.clone(), parser: Parser::new_from_str(text), anchors: HashMap::new(), nodes: 0 };
    let first = builder.stream();
    // PyYAML does not check the indentation of a quoted scalar's continuation lines (they
    // may start at column 0 inside a block mapping); the YAML spec and saphyr do. Leading
    // white space of a continuation line is not part of the value, so indenting those
    // lines changes nothing but the check: do that and parse again (line numbers stay).
    let mut patched: Option<String> = None;
    let mut result = first;
    for _ in 0..256 {
        let Err(e) = &result else { break };
        if e.message != QUOTED_INDENT_ERROR {
            break;
        }
        let Some(fixed) = indent_quoted_scalar(patched.as_deref().unwrap_or(text), e.origin.line, e.origin.col) else { break };
        let mut builder = Builder { file: file.clone(), parser: Parser::new_from_str(&fixed), anchors: HashMap::new(), nodes: 0 };
        result = builder.stream();
        patched = Some(fixed);
    }
    result
}

/// saphyr's complaint about a quoted scalar's continuation line left of the block indent.
const QUOTED_INDENT_ERROR: &str = "invalid indentation in quoted scalar";

/// `text` with the continuation lines of the quoted scalar opening at `line`:`col`
/// (1-based) indented past its opening quote; `None` if no scalar opens there or no line
/// needed it. A line starting with a document marker is left alone (an error in PyYAML too).
fn indent_quoted_scalar(text: &str, line: u32, col: u32) -> Option<String> {
    let line_start = if line <= 1 { 0 } else { text.match_indices('\n').nth(line as usize - 2).map(|(i, _)| i + 1)? };
    let (offset, quote) = text[line_start..].char_indices().nth(col.checked_sub(1)? as usize).map(|(i, c)| (line_start + i, c))?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..=offset]);
    let mut chars = text[offset + 1..].char_indices().peekable();
    let mut changed = false;
    let mut at_line_start = false;
    while let Some((i, c)) = chars.next() {
        if at_line_start {
            at_line_start = false;
            let rest = &text[offset + 1 + i..];
            let spaces = rest.len() - rest.trim_start_matches(' ').len();
            let blank = rest[spaces..].starts_with(['\n', '\r']) || rest[spaces..].is_empty();
            let marker = spaces == 0 && (rest.starts_with("---") || rest.starts_with("..."));
            if !blank && !marker && spaces < col as usize {
                out.push_str(&" ".repeat(col as usize - spaces));
                changed = true;
            }
        }
        out.push(c);
        match c {
            '\n' => at_line_start = true,
            '\\' if quote == '"' => {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                    at_line_start = next == '\n';
                }
            }
            '\'' if quote == '\'' => {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    out.push(chars.next().expect("peeked").1);
                } else {
                    let end = offset + 1 + i + 1;
                    out.push_str(&text[end..]);
                    return changed.then_some(out);
                }
            }
            '"' if quote == '"' => {
                let end = offset + 1 + i + 1;
                out.push_str(&text[end..]);
                return changed.then_some(out);
            }
            _ => {}
        }
    }
    None
}

/// Reads and loads a file; the error names the file.
pub fn load_file(path: &Path) -> Result<Node, YamlError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| YamlError {
        origin: Origin { file: Some(Arc::from(display.as_str())), line: 0, col: 0 },
        message: format!("cannot read file: {e}"),
    })?;
    load_str(&text, &display)
}

struct Builder<'a> {
    file: Arc<str>,
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

enum Item {
    Node(Node),
    /// A `<<` key resolved from a plain scalar.
    MergeKey(Origin),
    End,
}

impl<'a> Builder<'a> {
    fn origin(&self, span: &Span) -> Origin {
        Origin::new(&self.file, span.start.line() as u32, span.start.col() as u32 + 1)
    }

    fn scan_error(&self, e: ScanError) -> YamlError {
        let m = e.marker();
        YamlError { origin: Origin::new(&self.file, m.line() as u32, m.col() as u32 + 1), message: e.info().to_string() }
    }

    fn error(&self, origin: Origin, message: impl Into<String>) -> YamlError {
        YamlError { origin, message: message.into() }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(self.scan_error(e)),
            None => Err(self.error(Origin::new(&self.file, 0, 0), "unexpected end of YAML stream")),
        }
    }

    fn stream(&mut self) -> Result<Vec<Node>, YamlError> {
        let mut docs = Vec::new();
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(docs),
                Event::DocumentStart(_) => {
                    self.anchors.clear();
                    let origin = self.origin(&span);
                    match self.item(0)? {
                        Item::Node(node) => docs.push(node),
                        Item::MergeKey(o) => docs.push(Node::new(Value::Str("<<".into()), o)),
                        Item::End => docs.push(Node::new(Value::Null, origin)),
                    }
                }
                other => {
                    return Err(self.error(self.origin(&span), format!("unexpected YAML event {other:?}")));
                }
            }
        }
    }

    fn count(&mut self, origin: &Origin, n: usize) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(self.error(origin.clone(), "document expands to too many nodes (alias bomb?)"));
        }
        Ok(())
    }

    fn item(&mut self, depth: usize) -> Result<Item, YamlError> {
        let (event, span) = self.next()?;
        let origin = self.origin(&span);
        if depth > MAX_DEPTH {
            return Err(self.error(origin, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if style == ScalarStyle::Plain && tag.is_none() && text == "<<" {
                    return Ok(Item::MergeKey(origin));
                }
                let value = self.scalar_value(&text, style, tag.as_deref(), &origin)?;
                let node = Node::new(value, origin);
                self.count(&node.origin, 1)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(Item::Node(node))
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "seq", &origin)?;
                let mut items = Vec::new();
                loop {
                    match self.item(depth + 1)? {
                        Item::Node(n) => items.push(n),
                        Item::MergeKey(o) => items.push(Node::new(Value::Str("<<".into()), o)),
                        Item::End => break,
                    }
                }
                let node = Node::new(Value::Seq(items), origin);
                self.count(&node.origin, 1)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(Item::Node(node))
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "map", &origin)?;
                let node = Node::new(Value::Map(self.mapping(depth)?), origin);
                self.count(&node.origin, 1)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(Item::Node(node))
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    let size = node_count(&node);
                    self.count(&origin, size)?;
                    Ok(Item::Node(node))
                }
                None => Err(self.error(origin, "found undefined alias")),
            },
            Event::SequenceEnd | Event::MappingEnd | Event::DocumentEnd => Ok(Item::End),
            other => Err(self.error(origin, format!("unexpected YAML event {other:?}"))),
        }
    }

    /// Reads mapping entries up to `MappingEnd`, applying merge keys.
    fn mapping(&mut self, depth: usize) -> Result<Mapping, YamlError> {
        let mut explicit: Vec<(String, Node)> = Vec::new();
        let mut merged: Vec<(String, Node)> = Vec::new();
        loop {
            let key = match self.item(depth + 1)? {
                Item::End => break,
                Item::MergeKey(origin) => {
                    let value = match self.item(depth + 1)? {
                        Item::Node(n) => n,
                        _ => return Err(self.error(origin, "expected a value after the merge key '<<'")),
                    };
                    merged.extend(self.merge_entries(value, &origin)?);
                    continue;
                }
                Item::Node(key) => key,
            };
            let key_text = key_string(&key).map_err(|m| self.error(key.origin.clone(), m))?;
            let mut value = match self.item(depth + 1)? {
                Item::Node(n) => n,
                Item::MergeKey(o) => Node::new(Value::Str("<<".into()), o),
                Item::End => return Err(self.error(key.origin.clone(), "mapping key without a value")),
            };
            // Point mapping entries at their key: that is the line a user edits.
            value.origin = key.origin;
            explicit.push((key_text, value));
        }
        let mut map = Mapping::with_capacity(merged.len() + explicit.len());
        // Later entries overwrite earlier ones but keep the first position (Python dict).
        for (k, v) in merged.into_iter().chain(explicit) {
            map.insert(k, v);
        }
        Ok(map)
    }

    /// The entries a `<<` value contributes, in PyYAML's order.
    fn merge_entries(&self, value: Node, origin: &Origin) -> Result<Vec<(String, Node)>, YamlError> {
        match value.value {
            Value::Map(m) => Ok(m.into_iter().collect()),
            Value::Seq(items) => {
                let mut groups = Vec::new();
                for item in items {
                    match item.value {
                        Value::Map(m) => groups.push(m),
                        _ => {
                            return Err(
                                self.error(item.origin, format!("expected a mapping for merging, but found {}", item.value.type_name()))
                            );
                        }
                    }
                }
                // PyYAML reverses the list so earlier mappings override later ones.
                Ok(groups.into_iter().rev().flat_map(|m| m.into_iter()).collect())
            }
            other => {
                Err(self
                    .error(origin.clone(), format!("expected a mapping or list of mappings for merging, but found {}", other.type_name())))
            }
        }
    }

    fn scalar_value(&self, text: &str, style: ScalarStyle, tag: Option<&Tag>, origin: &Origin) -> Result<Value, YamlError> {
        match tag {
            None => Ok(if style == ScalarStyle::Plain { scalar::resolve_plain(text) } else { Value::Str(text.to_string()) }),
            Some(tag) if tag.is_yaml_core_schema() || tag.handle == "!!" => scalar::resolve_tagged(text, &tag.suffix)
                .ok_or_else(|| self.error(origin.clone(), format!("cannot construct !!{} from {text:?}", tag.suffix))),
            // A lone `!` forces a plain scalar to be a string.
            Some(tag) if tag.handle == "!" && tag.suffix.is_empty() => Ok(Value::Str(text.to_string())),
            Some(tag) => Err(self.error(origin.clone(), format!("could not determine a constructor for the tag '{tag}'"))),
        }
    }

    fn check_collection_tag(&self, tag: Option<&Tag>, expected: &str, origin: &Origin) -> Result<(), YamlError> {
        match tag {
            None => Ok(()),
            Some(t) if (t.is_yaml_core_schema() || t.handle == "!!") && t.suffix == expected => Ok(()),
            Some(t) if t.handle == "!" && t.suffix.is_empty() => Ok(()),
            Some(t) => Err(self.error(origin.clone(), format!("could not determine a constructor for the tag '{t}'"))),
        }
    }
}

/// A mapping key as the string it becomes after upstream's JSON round trip.
fn key_string(key: &Node) -> Result<String, String> {
    Ok(match &key.value {
        Value::Str(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::pyfmt::float_repr(*f),
        Value::Seq(_) | Value::Map(_) => return Err("mappings and lists cannot be used as mapping keys".into()),
    })
}

fn node_count(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Map(m) => 1 + m.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Node {
        load_str(text, "t.yaml").unwrap()
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = load("base: &b {a: 1, b: 2}\nother: &o {b: 20, c: 30}\nx:\n  <<: *b\n  a: 10\ny:\n  <<: [*b, *o]\n  d: 4\nz: *b\n");
        let x = n.get("x").unwrap().as_map().unwrap();
        assert_eq!(x.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(x["a"].as_i64(), Some(10));
        let y = n.get("y").unwrap().as_map().unwrap();
        assert_eq!(y.keys().collect::<Vec<_>>(), ["b", "c", "a", "d"]);
        assert_eq!(y["b"].as_i64(), Some(2), "earlier merged mapping wins");
        assert_eq!(n.get("z").unwrap(), n.get("base").unwrap());
    }

    #[test]
    fn origins_point_at_keys() {
        let n = load("a:\n  b: 1\n  c:\n    - x\n");
        let b = n.get_path(&["a", "b"]).unwrap();
        assert_eq!((b.origin.line, b.origin.col), (2, 3));
        let c = n.get_path(&["a", "c"]).unwrap();
        assert_eq!(c.origin.line, 3);
        assert_eq!(c.as_seq().unwrap()[0].origin.line, 4);
    }

    #[test]
    fn quoted_scalars_stay_strings_and_tags_apply() {
        let n = load("a: '1'\nb: \"true\"\nc: !!str 3\nd: !!int '7'\ne: |\n  x\n");
        assert_eq!(n.get("a").unwrap().as_str(), Some("1"));
        assert_eq!(n.get("b").unwrap().as_str(), Some("true"));
        assert_eq!(n.get("c").unwrap().as_str(), Some("3"));
        assert_eq!(n.get("d").unwrap().as_i64(), Some(7));
        assert_eq!(n.get("e").unwrap().as_str(), Some("x\n"));
    }

    #[test]
    fn errors_carry_positions() {
        let e = load_str("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml").unwrap_err();
        assert_eq!(e.origin.file.as_deref(), Some("bad.yaml"));
        assert!(e.origin.line >= 2, "{e}");
        let e = load_str("a: *nope\n", "bad.yaml").unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml:1:"), "{e}");
        let e = load_str("a: !custom 1\n", "bad.yaml").unwrap_err();
        assert!(e.message.contains("!custom"), "{e}");
    }

    #[test]
    fn duplicate_keys_last_wins_first_position() {
        let n = load("a: 1\nb: 2\na: 3\n");
        let m = n.as_map().unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m["a"].as_i64(), Some(3));
    }

    #[test]
    fn multi_document_streams() {
        let docs = load_all_str("a: 1\n---\nb: 2\n---\n", "m.yaml").unwrap();
        assert_eq!(docs.len(), 3);
        assert!(docs[2].is_null());
        assert!(load_str("a: 1\n---\nb: 2\n", "m.yaml").is_err());
        assert!(load_str("", "e.yaml").unwrap().is_null());
    }
}
