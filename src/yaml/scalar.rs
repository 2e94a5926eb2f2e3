//! PyYAML's YAML 1.1 implicit scalar resolution, for loading plain scalars and for
//! deciding when the dumper must quote a string.
//!
//! The rules are PyYAML's `Resolver` regexes, hand-written as matchers (no regex engine
//! on the hot path of loading a 2,000-line defaults file):
//!
//! | tag       | matches |
//! |-----------|---------|
//! | null      | `~`, `null`, `Null`, `NULL`, empty |
//! | bool      | `yes/no/true/false/on/off` in lower, Capitalized or UPPER case |
//! | int       | `0b1010`, `0755` (octal), `0x1F`, `1_000`, `1:30` (base 60) |
//! | float     | needs a `.`: `1.5`, `.5`, `1.e+3`, `1:30.5`, `.inf`, `.nan` (`1e3` is a string) |
//! | timestamp | `2024-01-01`, `2024-01-01 10:00:00` (kept as strings by llmd) |
//! | merge     | `<<` |
//! | value     | `=` |

use super::Value;

/// What a plain (unquoted, untagged) scalar means.
pub fn resolve_plain(text: &str) -> Value {
    if is_null(text) {
        return Value::Null;
    }
    if let Some(b) = parse_bool(text) {
        return Value::Bool(b);
    }
    if is_int(text) {
        if let Some(i) = construct_int(text) {
            return Value::Int(i);
        }
        // Out of i64 range: Python would keep an arbitrary-precision int; a float is
        // the closest lossless-enough representation we have.
        if let Some(f) = construct_float(text) {
            return Value::Float(f);
        }
    }
    if is_float(text)
        && let Some(f) = construct_float(text)
    {
        return Value::Float(f);
    }
    Value::Str(text.to_string())
}

/// True when `text`, written as a plain scalar, would load back as the same string.
/// The dumper quotes every string for which this is false.
pub fn plain_is_str(text: &str) -> bool {
    !(is_null(text) || parse_bool(text).is_some() || is_int(text) || is_float(text) || is_timestamp(text) || text == "<<" || text == "=")
}

/// Resolves a scalar carrying an explicit core tag (`!!str`, `!!int`, ...).
pub fn resolve_tagged(text: &str, suffix: &str) -> Option<Value> {
    match suffix {
        "str" => Some(Value::Str(text.to_string())),
        "null" => Some(Value::Null),
        "bool" => parse_bool(text).map(Value::Bool),
        "int" => construct_int(text).map(Value::Int),
        "float" => construct_float(text).map(Value::Float),
        _ => None,
    }
}

pub fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn strip_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(f)
}

/// `[-+]?(0b[01_]+ | 0[0-7_]+ | 0 | [1-9][0-9_]* | 0x[0-9a-fA-F_]+ | [1-9][0-9_]*(:[0-5]?[0-9])+)`
pub fn is_int(text: &str) -> bool {
    let (_, body) = strip_sign(text);
    if body.is_empty() {
        return false;
    }
    if let Some(rest) = body.strip_prefix("0b") {
        return !rest.is_empty() && all(rest, |c| matches!(c, b'0' | b'1' | b'_'));
    }
    if let Some(rest) = body.strip_prefix("0x") {
        return !rest.is_empty() && all(rest, |c| c.is_ascii_hexdigit() || c == b'_');
    }
    if body == "0" {
        return true;
    }
    if let Some(rest) = body.strip_prefix('0') {
        return all(rest, |c| matches!(c, b'0'..=b'7' | b'_'));
    }
    let first = body.as_bytes()[0];
    if !(b'1'..=b'9').contains(&first) {
        return false;
    }
    let mut parts = body.split(':');
    let head = parts.next().unwrap_or_default();
    if !all(head, |c| c.is_ascii_digit() || c == b'_') {
        return false;
    }
    parts.all(is_base60_digit_group)
}

/// `[0-5]?[0-9]`
fn is_base60_digit_group(part: &str) -> bool {
    match part.as_bytes() {
        [d] => d.is_ascii_digit(),
        [a, b] => (b'0'..=b'5').contains(a) && b.is_ascii_digit(),
        _ => false,
    }
}

/// PyYAML's float regex: a `.` is required, an exponent needs an explicit sign.
pub fn is_float(text: &str) -> bool {
    match text {
        ".nan" | ".NaN" | ".NAN" => return true,
        _ => {}
    }
    let (_, body) = strip_sign(text);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // `\.[0-9_]+([eE][-+][0-9]+)?` takes no sign in PyYAML's regex.
    if let Some(frac) = text.strip_prefix('.') {
        let (digits, exp) = split_exponent(frac);
        return !digits.is_empty() && all(digits, |c| c.is_ascii_digit() || c == b'_') && exp_ok(exp);
    }
    if body.is_empty() || !body.as_bytes()[0].is_ascii_digit() {
        return false;
    }
    let Some(dot) = body.find('.') else { return false };
    let (int_part, rest) = (&body[..dot], &body[dot + 1..]);
    if int_part.contains(':') {
        // `[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`
        let mut groups = int_part.split(':');
        let head = groups.next().unwrap_or_default();
        return all(head, |c| c.is_ascii_digit() || c == b'_')
            && groups.all(is_base60_digit_group)
            && all(rest, |c| c.is_ascii_digit() || c == b'_');
    }
    if !all(int_part, |c| c.is_ascii_digit() || c == b'_') {
        return false;
    }
    let (frac, exp) = split_exponent(rest);
    all(frac, |c| c.is_ascii_digit() || c == b'_') && exp_ok(exp)
}

fn split_exponent(s: &str) -> (&str, Option<&str>) {
    match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn exp_ok(exp: Option<&str>) -> bool {
    match exp {
        None => true,
        Some(e) => {
            let b = e.as_bytes();
            b.len() >= 2 && matches!(b[0], b'+' | b'-') && b[1..].iter().all(u8::is_ascii_digit)
        }
    }
}

/// `YYYY-MM-DD` or `YYYY-M-D[Tt ]H:MM:SS[.frac][ ][Z|±H[:MM]]`.
pub fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if b.len() == 10 && digits(&b[0..4]) && b[4] == b'-' && digits(&b[5..7]) && b[7] == b'-' && digits(&b[8..10]) {
        return true;
    }
    // Long form: date part with 1-2 digit month/day, then a time part.
    let Some(sep) = text.find(['T', 't', ' ', '\t']) else { return false };
    let date: Vec<&str> = text[..sep].split('-').collect();
    if date.len() != 3
        || date[0].len() != 4
        || !digits(date[0].as_bytes())
        || !(1..=2).contains(&date[1].len())
        || !digits(date[1].as_bytes())
        || !(1..=2).contains(&date[2].len())
        || !digits(date[2].as_bytes())
    {
        return false;
    }
    let time = text[sep..].trim_start_matches([' ', '\t', 'T', 't']);
    let time_end = time.find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.')).unwrap_or(time.len());
    let (clock, zone) = (&time[..time_end], time[time_end..].trim_start_matches([' ', '\t']));
    let (hms, _frac) = match clock.find('.') {
        Some(i) => (&clock[..i], &clock[i + 1..]),
        None => (clock, ""),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3
        || !(1..=2).contains(&parts[0].len())
        || parts[1].len() != 2
        || parts[2].len() != 2
        || !parts.iter().all(|p| digits(p.as_bytes()))
    {
        return false;
    }
    if zone.is_empty() || zone == "Z" {
        return true;
    }
    let (_, z) = strip_sign(zone);
    if !zone.starts_with(['+', '-']) {
        return false;
    }
    let zparts: Vec<&str> = z.split(':').collect();
    match zparts.as_slice() {
        [h] => (1..=2).contains(&h.len()) && digits(h.as_bytes()),
        [h, m] => (1..=2).contains(&h.len()) && digits(h.as_bytes()) && m.len() == 2 && digits(m.as_bytes()),
        _ => false,
    }
}

/// PyYAML's `construct_yaml_int`.
pub fn construct_int(text: &str) -> Option<i64> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, body) = strip_sign(&cleaned);
    let magnitude: i128 = if body == "0" {
        0
    } else if let Some(bin) = body.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = body.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = body.strip_prefix('0') {
        i128::from_str_radix(oct, 8).ok()?
    } else if body.contains(':') {
        let mut total: i128 = 0;
        for part in body.split(':') {
            total = total.checked_mul(60)?.checked_add(part.parse::<i128>().ok()?)?;
        }
        total
    } else {
        body.parse::<i128>().ok()?
    };
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

/// PyYAML's `construct_yaml_float`.
pub fn construct_float(text: &str) -> Option<f64> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect::<String>().to_lowercase();
    let (negative, body) = strip_sign(&cleaned);
    let sign = if negative { -1.0 } else { 1.0 };
    if body == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if body == ".nan" {
        return Some(f64::NAN);
    }
    if body.contains(':') {
        let mut total = 0.0;
        for part in body.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        return Some(sign * total);
    }
    body.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> &'static str {
        resolve_plain(text).type_name()
    }

    #[test]
    fn yaml_1_1_booleans_and_nulls() {
        for t in ["yes", "No", "ON", "off", "True", "FALSE"] {
            assert_eq!(kind(t), "bool", "{t}");
        }
        for t in ["y", "n", "tRue", "Yes!"] {
            assert_eq!(kind(t), "str", "{t}");
        }
        for t in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(kind(t), "null", "{t}");
        }
        assert_eq!(kind("nULL"), "str");
    }

    #[test]
    fn ints_follow_pyyaml() {
        let int = |t: &str| match resolve_plain(t) {
            Value::Int(i) => i,
            other => panic!("{t} -> {other:?}"),
        };
        assert_eq!(int("0755"), 493);
        assert_eq!(int("0b101"), 5);
        assert_eq!(int("0x1F"), 31);
        assert_eq!(int("-1_000"), -1000);
        assert_eq!(int("1:30"), 90);
        assert_eq!(int("+7"), 7);
        assert_eq!(kind("08"), "str");
        assert_eq!(kind("1:60"), "str");
    }

    #[test]
    fn floats_need_a_dot() {
        assert_eq!(kind("1e3"), "str");
        assert_eq!(kind("1.0e5"), "str", "exponent without sign is not a float in YAML 1.1");
        assert_eq!(kind("1.0e+5"), "float");
        assert_eq!(kind("1."), "float");
        assert_eq!(kind(".5"), "float");
        assert_eq!(kind("-.inf"), "float");
        assert_eq!(kind(".NaN"), "float");
        assert_eq!(kind("-.nan"), "str");
        assert_eq!(kind("1:30.5"), "float");
        assert!(matches!(resolve_plain("0.95"), Value::Float(f) if f == 0.95));
    }

    #[test]
    fn strings_that_need_quotes() {
        for t in ["2024-01-01", "2001-12-14t21:59:43.10-05:00", "<<", "=", "123", "true", "", "~", "1.5"] {
            assert!(!plain_is_str(t), "{t}");
        }
        for t in ["abc", "v0.10.2", "1e3", "2024-1-1", "http://x"] {
            assert!(plain_is_str(t), "{t}");
        }
    }
}
