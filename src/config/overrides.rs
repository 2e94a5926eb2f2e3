//! Scenario overrides: `--set [stack:]dotted.key=value`, `--cluster-config FILE` and the
//! setup-treatment values of an experiment.
//!
//! Grammar (upstream's): pairs are split on top-level commas (brackets, braces and quotes
//! protect commas); each pair splits at the first `=`; a `:` in the key half introduces a
//! stack selector — an exact stack name or an fnmatch glob (`*`, `?`, `[`); a double-quoted
//! key segment may contain dots (`annotations."k8s.v1.cni.cncf.io/networks"=x`); values are
//! YAML (`4`, `true`, `[a, b]`, `{a: 1}`), and an empty value is the empty string.
//!
//! Precedence for one stack, lowest first: the global bucket (`--cluster-config`, then
//! unscoped `--set`), glob selectors, exact selectors (command-line order breaks ties
//! within a tier), then setup-treatment values, which win over everything.

use indexmap::IndexMap;

use crate::error::{InputError, Warnings, did_you_mean};
use crate::yaml::{Mapping, Node, Origin, Value, load_str};

use super::merge::merge_into;

/// Selector of pairs without a `stack:` prefix.
pub const GLOBAL_SELECTOR: &str = "*";

/// Override buckets keyed by selector, in first-seen order.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    buckets: IndexMap<String, Node>,
}

/// One parsed `--set` pair.
#[derive(Clone, Debug, PartialEq)]
pub struct SetPair {
    pub selector: String,
    pub path: Vec<String>,
    pub value: Node,
}

impl Overrides {
    /// Parses every `--set` argument (each may hold several comma-separated pairs).
    pub fn parse(args: &[String], warnings: &mut Warnings) -> Result<Overrides, InputError> {
        let mut flat: IndexMap<String, Vec<(Vec<String>, Node)>> = IndexMap::new();
        for raw in args {
            for pair in split_pairs(raw) {
                let parsed = parse_pair(&pair)?;
                let shown = parsed.path.join(".");
                let bucket = flat.entry(parsed.selector.clone()).or_default();
                if let Some((_, old)) = bucket.iter().find(|(p, _)| *p == parsed.path) {
                    let detail = if is_secret_path(&shown) {
                        "(<redacted>)".to_string()
                    } else {
                        format!("({} -> {})", short(old), short(&parsed.value))
                    };
                    warnings.push(format!("--set: '{shown}' set more than once for '{}'; the last value wins {detail}", parsed.selector));
                    bucket.retain(|(p, _)| *p != parsed.path);
                }
                if parsed.value.is_null() {
                    warnings.push(format!(
                        "--set: '{shown}' is null, which cannot clear a value (the merge skips nulls); use '' for an empty string"
                    ));
                }
                let raw_value = pair.split_once('=').map(|(_, v)| v).unwrap_or_default();
                if !is_secret_path(&shown)
                    && let Some(surprise) = surprising_coercion(raw_value, &parsed.value)
                {
                    warnings.push(format!("--set: '{shown}': {surprise}"));
                }
                bucket.push((parsed.path, parsed.value));
            }
        }
        let mut buckets = IndexMap::new();
        for (selector, pairs) in flat {
            let nested = dotted_to_nested(pairs).map_err(|e| InputError::new(format!("conflicting --set overrides: {e}")))?;
            buckets.insert(selector, nested);
        }
        Ok(Overrides { buckets })
    }

    /// Folds a `--cluster-config` document under the global `--set` pairs.
    pub fn with_cluster_config(mut self, cluster_config: Node) -> Overrides {
        let mut global = cluster_config;
        if let Some(existing) = self.buckets.shift_remove(GLOBAL_SELECTOR) {
            merge_into(&mut global, &existing);
        }
        self.buckets.shift_insert(0, GLOBAL_SELECTOR.to_string(), global);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn selectors(&self) -> impl Iterator<Item = &str> {
        self.buckets.keys().map(String::as_str)
    }

    /// Selectors that apply to `stack`, least specific first.
    pub fn selectors_for(&self, stack: &str) -> Vec<&str> {
        let mut globals = Vec::new();
        let mut globs = Vec::new();
        let mut exact = Vec::new();
        for sel in self.buckets.keys() {
            if sel == GLOBAL_SELECTOR {
                globals.push(sel.as_str());
            } else if is_glob(sel) {
                if fnmatch(sel, stack) {
                    globs.push(sel.as_str());
                }
            } else if sel == stack {
                exact.push(sel.as_str());
            }
        }
        globals.into_iter().chain(globs).chain(exact).collect()
    }

    /// Errors for selectors that match no stack of the scenario.
    pub fn validate_selectors(&self, stacks: &[String]) -> Result<(), InputError> {
        let mut known: Vec<&str> = stacks.iter().map(String::as_str).collect();
        known.sort_unstable();
        for sel in self.buckets.keys() {
            if sel == GLOBAL_SELECTOR {
                continue;
            }
            let matched = if is_glob(sel) { stacks.iter().any(|s| fnmatch(sel, s)) } else { stacks.iter().any(|s| s == sel) };
            if !matched {
                let mut err = InputError::new(format!(
                    "--set selector '{sel}' matches no stack in this scenario (known stacks: {})",
                    if known.is_empty() { "<none>".to_string() } else { known.join(", ") }
                ));
                if let Some(s) = did_you_mean(sel, known.iter().copied()) {
                    err = err.help(format!("did you mean '{s}:'?"));
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// The merged overrides for one stack, with `setup` (treatment values) on top.
    pub fn for_stack(&self, stack: &str, setup: Option<&Node>) -> Node {
        let mut out = Node::map(Mapping::new());
        for sel in self.selectors_for(stack) {
            merge_into(&mut out, &self.buckets[sel]);
        }
        if let Some(setup) = setup {
            merge_into(&mut out, setup);
        }
        out
    }
}

fn short(node: &Node) -> String {
    crate::yaml::repr_node(&super::secret::redacted(node))
}

/// True when a selector is a glob rather than a stack name.
pub fn is_glob(selector: &str) -> bool {
    selector.contains(['*', '?', '['])
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(2).position(|&c| c == ']').map(|i| i + 2) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let (negate, set) = match p[1] {
                    '!' => (true, &p[2..close]),
                    _ => (false, &p[1..close]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[close + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Splits one `--set` argument at commas outside brackets, braces, parentheses and quotes.
pub fn split_pairs(raw: &str) -> Vec<String> {
    let mut pairs = Vec::new();
    let mut buf = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for c in raw.chars() {
        if let Some(q) = quote {
            buf.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                buf.push(c);
            }
            '[' | '{' | '(' => {
                depth += 1;
                buf.push(c);
            }
            ']' | '}' | ')' => {
                depth = depth.saturating_sub(1);
                buf.push(c);
            }
            ',' if depth == 0 => pairs.push(std::mem::take(&mut buf)),
            _ => buf.push(c),
        }
    }
    pairs.push(buf);
    pairs.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// Parses `[selector:]dotted.key=value`.
pub fn parse_pair(pair: &str) -> Result<SetPair, InputError> {
    let syntax = || {
        InputError::new(format!("invalid --set override '{pair}'"))
            .help("expected [stack:]dotted.key=value, e.g. --set decode.replicas=2 or --set 'my-stack:model.name=Qwen/Qwen3-0.6B'")
    };
    let Some((key_half, raw_value)) = pair.split_once('=') else { return Err(syntax()) };
    let key_half = key_half.trim();
    // A `:` outside double quotes separates the selector.
    let mut in_quotes = false;
    let mut colon = None;
    for (i, c) in key_half.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let (selector, key) = match colon {
        Some(i) => {
            let sel = key_half[..i].trim();
            if sel.is_empty() {
                return Err(InputError::new(format!("invalid --set override '{pair}': empty stack selector before ':'")));
            }
            (sel.to_string(), key_half[i + 1..].trim())
        }
        None => (GLOBAL_SELECTOR.to_string(), key_half),
    };
    if key.is_empty() {
        return Err(InputError::new(format!("invalid --set override '{pair}': empty key")).help("expected [stack:]dotted.key=value"));
    }
    let path = split_dotted_key(key);
    if path.iter().any(String::is_empty) {
        return Err(InputError::new(format!("invalid --set override '{pair}': empty segment in key '{key}'"))
            .help("keys are dot-separated; quote a segment that contains dots: annotations.\"k8s.io/x\"=v"));
    }
    let origin = Origin::synthetic(&format!("--set {selector}:{key}"));
    Ok(SetPair { selector, path, value: coerce_value(raw_value, origin) })
}

/// Splits a dotted key; double-quoted segments may contain dots (quotes are dropped).
pub fn split_dotted_key(key: &str) -> Vec<String> {
    let mut segments = vec![String::new()];
    let mut in_quotes = false;
    for c in key.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            '.' if !in_quotes => segments.push(String::new()),
            c => segments.last_mut().expect("non-empty").push(c),
        }
    }
    segments
}

/// Reads a value the way the scenario YAML would (`yaml.safe_load`); the empty string
/// stays empty; text YAML cannot parse is kept verbatim.
pub fn coerce_value(raw: &str, origin: Origin) -> Node {
    let stripped = raw.trim();
    if stripped.is_empty() {
        return Node::new(Value::Str(String::new()), origin);
    }
    match load_str(stripped, "--set") {
        Ok(mut node) => {
            set_origin_deep(&mut node, &origin);
            node
        }
        Err(_) => Node::new(Value::Str(raw.to_string()), origin),
    }
}

fn set_origin_deep(node: &mut Node, origin: &Origin) {
    node.origin = origin.clone();
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| set_origin_deep(n, origin)),
        Value::Map(m) => m.values_mut().for_each(|n| set_origin_deep(n, origin)),
        _ => {}
    }
}

/// A YAML 1.1 reading the user probably did not intend (`012` → 10, `1:30` → 90).
pub fn surprising_coercion(raw: &str, value: &Node) -> Option<String> {
    let s = raw.trim();
    let as_number = match value.value {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
        _ => return None,
    };
    let quote_hint = format!("quote it (e.g. \"'{s}'\") to keep it a string");
    match s.replace('_', "").parse::<f64>() {
        Ok(plain) if plain == as_number || (plain.is_nan() && as_number.is_nan()) => None,
        Ok(_) => Some(format!("value '{s}' was read as {}, not {s}; {quote_hint}", short(value))),
        Err(_) => Some(format!("value '{s}' was read as the number {}; {quote_hint}", short(value))),
    }
}

/// Builds a nested mapping from `(path, value)` pairs; a path that is both a leaf and a
/// parent is an error.
pub fn dotted_to_nested(pairs: Vec<(Vec<String>, Node)>) -> Result<Node, String> {
    let mut root = Node::map(Mapping::new());
    for (path, value) in pairs {
        let mut node = &mut root;
        for (i, seg) in path.iter().enumerate() {
            let map = node.as_map_mut().ok_or_else(|| format!("'{}' is set both as a value and as a parent", path[..i].join(".")))?;
            if i + 1 == path.len() {
                if map.get(seg).is_some_and(|n| n.as_map().is_some_and(|m| !m.is_empty())) {
                    return Err(format!("'{}' is set both as a value and as a parent", path.join(".")));
                }
                map.insert(seg.clone(), value.clone());
                break;
            }
            let origin = value.origin.clone();
            node = map.entry(seg.clone()).or_insert_with(|| Node::new(Value::Map(Mapping::new()), origin));
            if node.as_map().is_none() {
                return Err(format!("'{}' is set both as a value and as a parent", path[..=i].join(".")));
            }
        }
    }
    Ok(root)
}

/// Leaves of an override tree (an empty mapping is a leaf).
pub fn leaf_entries(node: &Node) -> Vec<(Vec<String>, &Node)> {
    fn walk<'a>(node: &'a Node, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Node)>) {
        match node.as_map() {
            Some(m) if !m.is_empty() => {
                for (k, v) in m {
                    prefix.push(k.clone());
                    walk(v, prefix, out);
                    prefix.pop();
                }
            }
            _ => out.push((prefix.clone(), node)),
        }
    }
    let mut out = Vec::new();
    walk(node, &mut Vec::new(), &mut out);
    out
}

/// Config paths whose values must never be printed.
pub fn is_secret_path(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path).to_lowercase();
    last.starts_with("token")
        || matches!(
            last.as_str(),
            "password" | "passwd" | "secret" | "credential" | "credentials" | "apikey" | "api_key" | "accesskey" | "privatekey"
        )
}

/// Checks override paths against the config they apply to: descending into a list or a
/// scalar is an error (it would silently replace it); a missing parent or a near-miss
/// leaf is a warning.
pub fn check_override_paths(overrides: &Node, base: &Node, stack: &str, warnings: &mut Warnings) -> Result<(), InputError> {
    fn walk(over: &Node, base: &Node, path: &mut Vec<String>, stack: &str, w: &mut Warnings) -> Result<(), InputError> {
        let (Some(over_map), Some(base_map)) = (over.as_map(), base.as_map()) else { return Ok(()) };
        for (key, value) in over_map {
            path.push(key.clone());
            let dotted = path.join(".");
            match (value.as_map(), base_map.get(key)) {
                (Some(m), Some(existing)) if !m.is_empty() => match &existing.value {
                    Value::Map(_) => walk(value, existing, path, stack, w)?,
                    Value::Null => {}
                    other => {
                        return Err(InputError::at(
                            &value.origin,
                            format!(
                                "[{stack}] override path '{dotted}' descends into a {} (set at {}), which would silently replace it",
                                other.type_name(),
                                existing.origin
                            ),
                        )
                        .help(format!("dotted overrides cannot index into a list; assign the whole value instead, e.g. {dotted}=[...]")));
                    }
                },
                (Some(m), None) if !m.is_empty() => {
                    let hint = did_you_mean(key, base_map.keys().map(String::as_str))
                        .map(|s| format!("; did you mean '{}'?", replace_last(&dotted, s)))
                        .unwrap_or_else(|| "; check for a typo if you meant to change an existing value".into());
                    w.push_at(
                        &value.origin,
                        format!("[{stack}] override path '{dotted}' does not exist in defaults + scenario and creates a new block{hint}"),
                    );
                }
                (_, None) => {
                    if let Some(s) = did_you_mean(key, base_map.keys().map(String::as_str)) {
                        w.push_at(
                            &value.origin,
                            format!(
                                "[{stack}] override path '{dotted}' does not exist, but '{}' does; did you mean that? As written, '{dotted}' is created as a new unused key",
                                replace_last(&dotted, s)
                            ),
                        );
                    }
                }
                _ => {}
            }
            path.pop();
        }
        Ok(())
    }
    walk(overrides, base, &mut Vec::new(), stack, warnings)
}

fn replace_last(dotted: &str, last: &str) -> String {
    match dotted.rsplit_once('.') {
        Some((parent, _)) => format!("{parent}.{last}"),
        None => last.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(args: &[&str]) -> Overrides {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Overrides::parse(&args, &mut Warnings::default()).unwrap()
    }

    #[test]
    fn pairs_split_at_top_level_commas() {
        assert_eq!(split_pairs("a=[1,2],b={x: 1, y: 2},c='p,q', d=\"r,s\""), ["a=[1,2]", "b={x: 1, y: 2}", "c='p,q'", "d=\"r,s\""]);
        assert_eq!(split_pairs(" , a=1 ,"), ["a=1"]);
    }

    #[test]
    fn every_pair_form() {
        let p = parse_pair("decode.replicas=2").unwrap();
        assert_eq!((p.selector.as_str(), p.path.clone(), p.value.as_i64()), ("*", vec!["decode".to_string(), "replicas".into()], Some(2)));
        let p = parse_pair("llama-8b:model.name=Qwen/Qwen3-0.6B").unwrap();
        assert_eq!(p.selector, "llama-8b");
        assert_eq!(p.value.as_str(), Some("Qwen/Qwen3-0.6B"));
        let p = parse_pair("*-8b:image=quay.io/llm-d/epp:v1.2").unwrap();
        assert_eq!(p.selector, "*-8b");
        assert_eq!(p.value.as_str(), Some("quay.io/llm-d/epp:v1.2"));
        let p = parse_pair("annotations.pod.\"k8s.v1.cni.cncf.io/networks\"=multi-nic").unwrap();
        assert_eq!(p.path, ["annotations", "pod", "k8s.v1.cni.cncf.io/networks"]);
        assert_eq!(parse_pair("a=").unwrap().value.as_str(), Some(""));
        assert_eq!(parse_pair("a=true").unwrap().value.as_bool(), Some(true));
        assert_eq!(parse_pair("a='007'").unwrap().value.as_str(), Some("007"));
        assert_eq!(parse_pair("a=[x, y]").unwrap().value.as_seq().unwrap().len(), 2);
        assert!(parse_pair("a={p: 1}").unwrap().value.get("p").is_some());
        assert!(parse_pair("a=b: c: d").unwrap().value.as_str().is_some(), "unparseable YAML stays text");
    }

    #[test]
    fn syntax_errors() {
        for bad in ["novalue", ":a=1", "stack:=1", "=1", "a..b=1"] {
            assert!(parse_pair(bad).is_err(), "{bad}");
        }
        let e = Overrides::parse(&["a=1,a.b=2".to_string()], &mut Warnings::default()).unwrap_err();
        assert!(e.message.contains("conflicting"), "{e}");
    }

    #[test]
    fn warnings_for_surprises() {
        let mut w = Warnings::default();
        Overrides::parse(&["x=012,y=1:30,z=0x10,n=null,k=1,k=2".to_string()], &mut w).unwrap();
        let text: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("'012' was read as 10")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("'1:30' was read as the number 90")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("'0x10'")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("null")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("more than once")), "{text:?}");
    }

    #[test]
    fn selector_precedence_and_validation() {
        let o = set(&["b:r=3", "r=1", "?:r=2", "a:q=1"]);
        assert_eq!(o.selectors_for("b"), ["*", "?", "b"]);
        assert_eq!(o.for_stack("b", None).get("r").unwrap().as_i64(), Some(3));
        assert_eq!(o.for_stack("c", None).get("r").unwrap().as_i64(), Some(2));
        let setup = crate::yaml::load_str("r: 9", "exp.yaml").unwrap();
        assert_eq!(o.for_stack("b", Some(&setup)).get("r").unwrap().as_i64(), Some(9));
        let stacks = vec!["a".to_string(), "b".to_string()];
        assert!(o.validate_selectors(&stacks).is_ok());
        let e = set(&["bb:r=1"]).validate_selectors(&stacks).unwrap_err();
        assert!(e.to_string().contains("matches no stack"), "{e}");
        assert!(set(&["z*:r=1"]).validate_selectors(&stacks).is_err());
    }

    #[test]
    fn cluster_config_sits_under_global_set() {
        let cc = crate::yaml::load_str("a: 1\nb: 1\n", "cc.yaml").unwrap();
        let o = set(&["a=2"]).with_cluster_config(cc);
        let n = o.for_stack("s", None);
        assert_eq!(n.get("a").unwrap().as_i64(), Some(2));
        assert_eq!(n.get("b").unwrap().as_i64(), Some(1));
    }

    #[test]
    fn fnmatch_like_python() {
        assert!(fnmatch("*-8b", "llama-8b"));
        assert!(fnmatch("q?en", "qwen"));
        assert!(fnmatch("[a-c]x", "bx"));
        assert!(!fnmatch("[!a-c]x", "bx"));
        assert!(!fnmatch("a*", "ba"));
    }

    #[test]
    fn path_checks() {
        let base = crate::yaml::load_str("decode: {replicas: 1, args: [a]}\nname: x\n", "d.yaml").unwrap();
        let mut w = Warnings::default();
        let over = set(&["decode.args.0=b"]).for_stack("s", None);
        assert!(check_override_paths(&over, &base, "s", &mut w).unwrap_err().message.contains("descends into a list"));
        let over = set(&["decode.replcas=2", "decod.x.y=1", "decode.newkey=1"]).for_stack("s", None);
        check_override_paths(&over, &base, "s", &mut w).unwrap();
        let text: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("'decode.replicas' does"), "{text:?}");
        assert!(text[1].contains("did you mean 'decode'"), "{text:?}");
    }

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret_path("huggingface.token"));
        assert!(is_secret_path("huggingface.tokenBase64"));
        assert!(!is_secret_path("model.maxNumBatchedTokens"));
    }
}
