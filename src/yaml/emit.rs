//! A YAML writer that produces the same bytes as PyYAML's block-style dumper.
//!
//! Upstream's `toyaml` filter and its `config.yaml` writer both call `yaml.dump(...,
//! default_flow_style=False, allow_unicode=True)`: keys sorted, block collections,
//! sequences inside mappings not indented, empty collections as `{}` / `[]`, and PyYAML's
//! choice between plain, single-quoted, double-quoted and literal scalars, including its
//! folding of long scalars at column 80. This is a port of the relevant parts of PyYAML's
//! emitter state machine (`write_indent`, `write_plain`, `write_single_quoted`,
//! `write_double_quoted`, `write_literal`, `analyze_scalar`, `choose_scalar_style`), kept
//! close to the original so the two can be compared line by line.
//!
//! Not reproduced: anchors for shared objects (PyYAML emits `&id001` for repeated Python
//! objects; llmd trees never share nodes, and the output is YAML-equal either way).

use super::{Node, Value, scalar};
use crate::pyfmt;

const BEST_INDENT: usize = 2;
const BEST_WIDTH: usize = 80;

/// How to dump.
#[derive(Clone, Copy, Debug)]
pub struct DumpOptions {
    /// Sort mapping keys (PyYAML's default `sort_keys=True`).
    pub sort_keys: bool,
    /// Write multi-line strings as `|` literal blocks (upstream's `toyaml` representer).
    pub literal_multiline: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions { sort_keys: true, literal_multiline: false }
    }
}

impl DumpOptions {
    /// Upstream's `toyaml` filter settings.
    pub fn toyaml() -> Self {
        DumpOptions { sort_keys: true, literal_multiline: true }
    }
}

/// Dumps one document, exactly as `yaml.dump(value, default_flow_style=False,
/// allow_unicode=True)` would (plus `literal_multiline` when asked).
pub fn dump(node: &Node, opts: DumpOptions) -> String {
    let mut e = Emitter {
        out: String::new(),
        opts,
        column: 0,
        whitespace: true,
        indention: true,
        open_ended: false,
        indent: None,
        indents: Vec::new(),
        flow_level: 0,
    };
    e.node(node, Context { root: true, ..Context::default() });
    // Document end.
    e.write_indent();
    // Stream end.
    if e.open_ended {
        e.write_indicator("...", true, false, false);
        e.write_indent();
    }
    e.out
}

#[derive(Clone, Copy, Default)]
struct Context {
    root: bool,
    mapping: bool,
    simple_key: bool,
}

struct Emitter {
    out: String,
    opts: DumpOptions,
    column: usize,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    indent: Option<usize>,
    indents: Vec<Option<usize>>,
    flow_level: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Analysis {
    empty: bool,
    multiline: bool,
    allow_flow_plain: bool,
    allow_block_plain: bool,
    allow_single_quoted: bool,
    allow_block: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_space_or_break(c: char) -> bool {
    matches!(c, '\0' | ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// PyYAML's `analyze_scalar` with `allow_unicode=True`.
fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            empty: true,
            multiline: false,
            allow_flow_plain: false,
            allow_block_plain: true,
            allow_single_quoted: true,
            allow_block: false,
        };
    }
    Scan::of(text).verdict()
}

/// What PyYAML's `analyze_scalar` notices while it walks a scalar's characters.
#[derive(Default)]
struct Scan {
    block_indicators: bool,
    flow_indicators: bool,
    line_breaks: bool,
    special_characters: bool,
    leading_space: bool,
    leading_break: bool,
    trailing_space: bool,
    trailing_break: bool,
    break_space: bool,
    space_break: bool,
}

impl Scan {
    fn of(text: &str) -> Scan {
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        let mut s = Scan::default();
        if text.starts_with("---") || text.starts_with("...") {
            s.block_indicators = true;
            s.flow_indicators = true;
        }
        let mut preceded_by_whitespace = true;
        let mut followed_by_whitespace = n == 1 || is_space_or_break(chars[1]);
        let (mut previous_space, mut previous_break) = (false, false);
        for (index, &ch) in chars.iter().enumerate() {
            s.indicators(index, ch, preceded_by_whitespace, followed_by_whitespace);
            if is_break(ch) {
                s.line_breaks = true;
            }
            if !(ch == '\n' || ('\u{20}'..='\u{7e}').contains(&ch) || unicode_ok(ch)) {
                s.special_characters = true;
            }
            if ch == ' ' {
                s.leading_space |= index == 0;
                s.trailing_space |= index == n - 1;
                s.break_space |= previous_break;
                (previous_space, previous_break) = (true, false);
            } else if is_break(ch) {
                s.leading_break |= index == 0;
                s.trailing_break |= index == n - 1;
                s.space_break |= previous_space;
                (previous_space, previous_break) = (false, true);
            } else {
                (previous_space, previous_break) = (false, false);
            }
            preceded_by_whitespace = is_space_or_break(ch);
            followed_by_whitespace = index + 2 >= n || is_space_or_break(chars[index + 2]);
        }
        s
    }

    /// Flow and block indicators at `index`.
    fn indicators(&mut self, index: usize, ch: char, preceded_by_whitespace: bool, followed_by_whitespace: bool) {
        if index == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(ch) {
                self.flow_indicators = true;
                self.block_indicators = true;
            }
            if ch == '?' || ch == ':' {
                self.flow_indicators = true;
                self.block_indicators |= followed_by_whitespace;
            }
            if ch == '-' && followed_by_whitespace {
                self.flow_indicators = true;
                self.block_indicators = true;
            }
        } else {
            if ",?[]{}".contains(ch) {
                self.flow_indicators = true;
            }
            if ch == ':' {
                self.flow_indicators = true;
                self.block_indicators |= followed_by_whitespace;
            }
            if ch == '#' && preceded_by_whitespace {
                self.flow_indicators = true;
                self.block_indicators = true;
            }
        }
    }

    /// Which scalar styles the text allows.
    fn verdict(&self) -> Analysis {
        let mut a = Analysis {
            empty: false,
            multiline: self.line_breaks,
            allow_flow_plain: true,
            allow_block_plain: true,
            allow_single_quoted: true,
            allow_block: true,
        };
        if self.leading_space || self.leading_break || self.trailing_space || self.trailing_break {
            a.allow_flow_plain = false;
            a.allow_block_plain = false;
        }
        if self.trailing_space {
            a.allow_block = false;
        }
        if self.break_space {
            a.allow_flow_plain = false;
            a.allow_block_plain = false;
            a.allow_single_quoted = false;
        }
        if self.space_break || self.special_characters {
            a.allow_flow_plain = false;
            a.allow_block_plain = false;
            a.allow_single_quoted = false;
            a.allow_block = false;
        }
        if self.line_breaks {
            a.allow_flow_plain = false;
            a.allow_block_plain = false;
        }
        if self.flow_indicators {
            a.allow_flow_plain = false;
        }
        if self.block_indicators {
            a.allow_block_plain = false;
        }
        a
    }
}

/// Characters PyYAML prints unescaped beyond printable ASCII.
fn unicode_ok(ch: char) -> bool {
    (ch == '\u{85}'
        || ('\u{a0}'..='\u{d7ff}').contains(&ch)
        || ('\u{e000}'..='\u{fffd}').contains(&ch)
        || ('\u{10000}'..'\u{10ffff}').contains(&ch))
        && ch != '\u{feff}'
}

/// The text of a scalar node as PyYAML's SafeRepresenter writes it, and whether it is a
/// string (strings may need quoting; other scalars are always plain).
fn scalar_text(value: &Value) -> (String, bool) {
    match value {
        Value::Null => ("null".into(), false),
        Value::Bool(b) => ((if *b { "true" } else { "false" }).into(), false),
        Value::Int(i) => (i.to_string(), false),
        Value::Float(f) => (represent_float(*f), false),
        Value::Str(s) => (s.clone(), true),
        Value::Seq(_) | Value::Map(_) => unreachable!("collections are not scalars"),
    }
}

/// PyYAML's `represent_float`.
pub fn represent_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf".into() } else { "-.inf".into() }
    } else {
        let v = pyfmt::float_repr(f).to_lowercase();
        if !v.contains('.') && v.contains('e') { v.replacen('e', ".0e", 1) } else { v }
    }
}

impl Emitter {
    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        self.indent = match self.indent {
            None => Some(if flow { BEST_INDENT } else { 0 }),
            Some(i) if !indentless => Some(i + BEST_INDENT),
            Some(i) => Some(i),
        };
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().expect("balanced indents");
    }

    fn write(&mut self, data: &str) {
        self.column += data.chars().count();
        self.out.push_str(data);
    }

    fn write_indicator(&mut self, indicator: &str, need_whitespace: bool, whitespace: bool, indention: bool) {
        let data = if self.whitespace || !need_whitespace { indicator.to_string() } else { format!(" {indicator}") };
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
        self.open_ended = false;
        self.write(&data);
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.write_line_break(None);
        }
        if self.column < indent {
            self.whitespace = true;
            let pad = " ".repeat(indent - self.column);
            self.column = indent;
            self.out.push_str(&pad);
        }
    }

    fn write_line_break(&mut self, data: Option<char>) {
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
        self.out.push(data.unwrap_or('\n'));
    }

    fn node(&mut self, node: &Node, ctx: Context) {
        match &node.value {
            Value::Seq(items) if items.is_empty() || self.flow_level > 0 => self.empty_flow("[", "]"),
            Value::Map(m) if m.is_empty() || self.flow_level > 0 => self.empty_flow("{", "}"),
            Value::Seq(items) => {
                let indentless = ctx.mapping && !self.indention;
                self.increase_indent(false, indentless);
                for item in items {
                    self.write_indent();
                    self.write_indicator("-", true, false, true);
                    self.node(item, Context::default());
                }
                self.pop_indent();
            }
            Value::Map(map) => {
                self.increase_indent(false, false);
                let mut entries: Vec<(&String, &Node)> = map.iter().collect();
                if self.opts.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                for (key, value) in entries {
                    self.write_indent();
                    let analysis = analyze(key);
                    let simple = key.chars().count() + "!!str".len() < 128 && !analysis.empty && !analysis.multiline;
                    if simple {
                        self.scalar(key, true, Context { simple_key: true, mapping: true, ..Context::default() });
                        self.write_indicator(":", false, false, false);
                    } else {
                        self.write_indicator("?", true, false, true);
                        self.scalar(key, true, Context { mapping: true, ..Context::default() });
                        self.write_indent();
                        self.write_indicator(":", true, false, true);
                    }
                    self.node(value, Context { mapping: true, ..Context::default() });
                }
                self.pop_indent();
            }
            scalar => {
                let (text, is_str) = scalar_text(scalar);
                self.scalar(&text, is_str, ctx);
            }
        }
    }

    fn empty_flow(&mut self, open: &str, close: &str) {
        self.write_indicator(open, true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        self.pop_indent();
        self.flow_level -= 1;
        self.write_indicator(close, false, false, false);
    }

    fn choose_style(&self, text: &str, is_str: bool, a: &Analysis, ctx: Context) -> Style {
        // Non-strings are written plain; their text always resolves back to their type.
        let implicit_plain = !is_str || scalar::plain_is_str(text);
        let requested_literal = is_str && self.opts.literal_multiline && text.contains('\n');
        if !requested_literal
            && implicit_plain
            && !(ctx.simple_key && (a.empty || a.multiline))
            && ((self.flow_level > 0 && a.allow_flow_plain) || (self.flow_level == 0 && a.allow_block_plain))
        {
            return Style::Plain;
        }
        if requested_literal {
            if self.flow_level == 0 && !ctx.simple_key && a.allow_block {
                return Style::Literal;
            }
            return Style::Double;
        }
        if a.allow_single_quoted && !(ctx.simple_key && a.multiline) {
            return Style::Single;
        }
        Style::Double
    }

    fn scalar(&mut self, text: &str, is_str: bool, ctx: Context) {
        self.increase_indent(true, false);
        let analysis = analyze(text);
        let style = self.choose_style(text, is_str, &analysis, ctx);
        let split = !ctx.simple_key;
        match style {
            Style::Plain => self.write_plain(text, split, ctx.root),
            Style::Single => self.write_single_quoted(text, split),
            Style::Double => self.write_double_quoted(text, split),
            Style::Literal => self.write_literal(text),
        }
        self.pop_indent();
    }

    fn write_plain(&mut self, text: &str, split: bool, root: bool) {
        if root {
            self.open_ended = true;
        }
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let chars: Vec<char> = text.chars().collect();
        let mut spaces = false;
        let (mut start, mut end) = (0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH && split {
                        self.write_indent();
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || is_break(c)) {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
            }
            end += 1;
        }
    }

    fn write_single_quoted(&mut self, text: &str, split: bool) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        let (mut start, mut end) = (0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH && split && start != 0 && end != chars.len() {
                        self.write_indent();
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if breaks {
                if ch.is_none_or(|c| !is_break(c)) {
                    if chars[start] == '\n' {
                        self.write_line_break(None);
                    }
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.write_line_break(None);
                        } else {
                            self.write_line_break(Some(br));
                        }
                    }
                    self.write_indent();
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || is_break(c) || c == '\'') && start < end {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if ch == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
            end += 1;
        }
        self.write_indicator("'", false, false, false);
    }

    fn write_double_quoted(&mut self, text: &str, split: bool) {
        self.write_indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut start, mut end) = (0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            let needs_escape = match ch {
                None => true,
                Some(c) => {
                    matches!(c, '"' | '\\' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
                        || !(('\u{20}'..='\u{7e}').contains(&c)
                            || ('\u{a0}'..='\u{d7ff}').contains(&c)
                            || ('\u{e000}'..='\u{fffd}').contains(&c))
                }
            };
            if needs_escape {
                if start < end {
                    let data: String = chars[start..end].iter().collect();
                    self.write(&data);
                    start = end;
                }
                if let Some(c) = ch {
                    let data = match c {
                        '\0' => "\\0".to_string(),
                        '\u{07}' => "\\a".to_string(),
                        '\u{08}' => "\\b".to_string(),
                        '\t' => "\\t".to_string(),
                        '\n' => "\\n".to_string(),
                        '\u{0b}' => "\\v".to_string(),
                        '\u{0c}' => "\\f".to_string(),
                        '\r' => "\\r".to_string(),
                        '\u{1b}' => "\\e".to_string(),
                        '"' => "\\\"".to_string(),
                        '\\' => "\\\\".to_string(),
                        '\u{85}' => "\\N".to_string(),
                        '\u{a0}' => "\\_".to_string(),
                        '\u{2028}' => "\\L".to_string(),
                        '\u{2029}' => "\\P".to_string(),
                        c if (c as u32) <= 0xff => format!("\\x{:02X}", c as u32),
                        c if (c as u32) <= 0xffff => format!("\\u{:04X}", c as u32),
                        c => format!("\\U{:08X}", c as u32),
                    };
                    self.write(&data);
                    start = end + 1;
                }
            }
            if 0 < end
                && end + 1 < chars.len()
                && (ch == Some(' ') || start >= end)
                && self.column as isize + end as isize - start as isize > BEST_WIDTH as isize
                && split
            {
                let mut data: String = chars[start.min(end)..end].iter().collect();
                data.push('\\');
                if start < end {
                    start = end;
                }
                self.write(&data);
                self.write_indent();
                self.whitespace = false;
                self.indention = false;
                if chars[start] == ' ' {
                    self.write("\\");
                }
            }
            end += 1;
        }
        self.write_indicator("\"", false, false, false);
    }

    fn block_hints(text: &str) -> String {
        let mut hints = String::new();
        let chars: Vec<char> = text.chars().collect();
        if let Some(&first) = chars.first() {
            if first == ' ' || is_break(first) {
                hints.push_str(&BEST_INDENT.to_string());
            }
            let last = chars[chars.len() - 1];
            if !is_break(last) {
                hints.push('-');
            } else if chars.len() == 1 || is_break(chars[chars.len() - 2]) {
                hints.push('+');
            }
        }
        hints
    }

    fn write_literal(&mut self, text: &str) {
        let hints = Self::block_hints(text);
        self.write_indicator(&format!("|{hints}"), true, false, false);
        if hints.ends_with('+') {
            self.open_ended = true;
        }
        self.write_line_break(None);
        let chars: Vec<char> = text.chars().collect();
        let mut breaks = true;
        let (mut start, mut end) = (0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if breaks {
                if ch.is_none_or(|c| !is_break(c)) {
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.write_line_break(None);
                        } else {
                            self.write_line_break(Some(br));
                        }
                    }
                    if ch.is_some() {
                        self.write_indent();
                    }
                    start = end;
                }
            } else if ch.is_none_or(is_break) {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                if ch.is_none() {
                    self.write_line_break(None);
                }
                start = end;
            }
            if let Some(c) = ch {
                breaks = is_break(c);
            }
            end += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    fn dump_text(yaml: &str, opts: DumpOptions) -> String {
        dump(&load_str(yaml, "t").unwrap(), opts)
    }

    #[test]
    fn block_layout_like_pyyaml() {
        let out = dump_text("b: [1, 2]\na: {x: {}, y: []}\nc: [{k: v, j: w}, [p, q]]\n", DumpOptions::default());
        assert_eq!(out, "a:\n  x: {}\n  y: []\nb:\n- 1\n- 2\nc:\n- j: w\n  k: v\n- - p\n  - q\n");
    }

    #[test]
    fn strings_are_quoted_when_they_would_change_type() {
        let out = dump_text("a: 'true'\nb: '123'\nc: ''\nd: 'x: y'\ne: \"it's\"\nf: null\n", DumpOptions::default());
        assert_eq!(out, "a: 'true'\nb: '123'\nc: ''\nd: 'x: y'\ne: it's\nf: null\n");
    }

    #[test]
    fn root_scalars_are_open_ended() {
        assert_eq!(dump(&Node::from(5), DumpOptions::default()), "5\n...\n");
        assert_eq!(dump(&Node::str("a b"), DumpOptions::default()), "a b\n...\n");
        assert_eq!(dump(&Node::str("'"), DumpOptions::default()), "''''\n");
    }

    #[test]
    fn multiline_strings() {
        let doc = "a: \"line1\\nline2\\n\"\n";
        assert_eq!(dump_text(doc, DumpOptions::default()), "a: 'line1\n\n  line2\n\n  '\n");
        assert_eq!(dump_text(doc, DumpOptions::toyaml()), "a: |\n  line1\n  line2\n");
        assert_eq!(dump_text("a: \"x\\ny\"\n", DumpOptions::toyaml()), "a: |-\n  x\n  y\n");
    }
}
