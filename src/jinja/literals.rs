//! Dict literals as Python dicts.
//!
//! In Jinja2 a dict literal is a Python dict: upstream's templates build one with
//! `{% set acc = {} %}`, fill it in a loop with `{% set _ = acc.update({k: v}) %}` and
//! render `acc | toyaml`. minijinja's map literals are immutable values, so before a
//! template is compiled every dict literal inside a tag is wrapped in a call,
//! `__pydict({...})`, that turns it (and the literals nested in it) into a
//! [`super::pyvalue::PyDict`] — the same shared, mutable mapping config mappings are.
//! The rewrite adds no line breaks, so error line numbers stay the template's.

use std::borrow::Cow;

/// The function the rewrite calls (registered by [`super::env`]).
pub const WRAPPER: &str = "__pydict";

/// `source` with each outermost dict literal in a `{{ … }}` or `{% … %}` tag wrapped in
/// [`WRAPPER`]; comments, `{% raw %}` blocks and string literals are left alone.
pub fn mutable_dict_literals(source: &str) -> Cow<'_, str> {
    let b = source.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'{', b'#') => i = find(source, i + 2, "#}").map_or(b.len(), |e| e + 2),
            (b'{', open @ (b'{' | b'%')) => {
                let body = i + 2;
                if open == b'%' && is_raw(&source[body..]) {
                    i = raw_end(source, body);
                    continue;
                }
                let close = if open == b'{' { "}}" } else { "%}" };
                let mut j = body;
                let mut depth = 0usize;
                let mut literal_start = 0;
                while j < b.len() {
                    match b[j] {
                        q @ (b'\'' | b'"') => {
                            j = string_end(b, j, q);
                            continue;
                        }
                        _ if depth == 0 && source[j..].starts_with(close) => break,
                        b'{' => {
                            if depth == 0 {
                                literal_start = j;
                            }
                            depth += 1;
                        }
                        b'}' if depth > 0 => {
                            depth -= 1;
                            if depth == 0 {
                                out.push_str(&source[copied..literal_start]);
                                out.push_str(WRAPPER);
                                out.push('(');
                                out.push_str(&source[literal_start..=j]);
                                out.push(')');
                                copied = j + 1;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                i = j + 2;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(source);
    }
    out.push_str(&source[copied..]);
    Cow::Owned(out)
}

fn find(source: &str, from: usize, what: &str) -> Option<usize> {
    source.get(from..)?.find(what).map(|p| from + p)
}

/// The index after a string literal opening at `start` (backslash escapes honoured).
fn string_end(b: &[u8], start: usize, quote: u8) -> usize {
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// Whether a `{%` tag's body (after `{%`) is `raw`.
fn is_raw(body: &str) -> bool {
    let t = body.trim_start_matches(['-', '+']).trim_start();
    t.strip_prefix("raw").is_some_and(|rest| rest.trim_start().starts_with(['%', '-', '+']))
}

/// The index after the `{% endraw %}` tag closing a raw block whose tag body starts at `body`.
fn raw_end(source: &str, body: usize) -> usize {
    let mut from = body;
    while let Some(open) = find(source, from, "{%") {
        let inner = source[open + 2..].trim_start_matches(['-', '+']).trim_start();
        if inner.starts_with("endraw") {
            return find(source, open, "%}").map_or(source.len(), |e| e + 2);
        }
        from = open + 2;
    }
    source.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_in_tags_are_wrapped_once_at_the_outermost_brace() {
        assert_eq!(mutable_dict_literals("{% set a = {} %}"), "{% set a = __pydict({}) %}");
        assert_eq!(
            mutable_dict_literals("{{ {'a': {'b': 1}} | toyaml }}"),
            "{{ __pydict({'a': {'b': 1}}) | toyaml }}",
            "a nested literal is converted by its parent's call"
        );
        assert_eq!(
            mutable_dict_literals("{%- set _ = acc.update({k: v}) -%}\n{{ x }}"),
            "{%- set _ = acc.update(__pydict({k: v})) -%}\n{{ x }}"
        );
    }

    #[test]
    fn text_strings_comments_and_raw_blocks_are_left_alone() {
        for unchanged in [
            "plain {text} with braces }",
            "{{ '{' ~ x ~ '}' }}",
            "{{ \"a {b}\" }}",
            "{# {a: 1} #}",
            "{% raw %}{% set a = {} %}{% endraw %}",
            "{{ x }} {text}",
            "",
            "{",
        ] {
            assert_eq!(mutable_dict_literals(unchanged), unchanged);
        }
        assert_eq!(
            mutable_dict_literals("{% raw %}{}{% endraw %}{% set a = {} %}"),
            "{% raw %}{}{% endraw %}{% set a = __pydict({}) %}",
            "after the raw block, tags are tags again"
        );
    }

    #[test]
    fn line_numbers_are_kept() {
        let src = "{% set a = {\n  'k': 1,\n} %}\n{{ a }}";
        assert_eq!(mutable_dict_literals(src).matches('\n').count(), src.matches('\n').count());
    }
}
