//! Secrets stay out of everything llmd stores, prints or exports.
//!
//! After a stack's config is resolved, [`conceal`] replaces every secret value in it with
//! a placeholder naming its path (`llmd-secret-huggingface-token`): a leaf whose key
//! names a credential ([`is_secret_key`]: `token`, `password`, `apiKey`, …), the `value`
//! of an env entry whose `name` does (`HF_TOKEN`, `S3_SECRET_ACCESS_KEY`, …), and any
//! other copy of such a value (templates or resolvers may have copied it). The Hugging
//! Face token from the environment is a placeholder from the start (`config::stack`).
//! So plans, cache blobs, keys, the journal and every command's output carry
//! placeholders: a secret is an input of no key (it does not change a benchmark, and
//! cached plans stay portable between machines and CI).
//!
//! The values themselves live only in memory, in the [`Secrets`] a stack's config and
//! target carry (never serialized; `Debug` shows placeholders only). They are put back
//! only where a deployment is applied ([`Secrets::reveal`], called by the cluster
//! backend on the objects it sends), so they exist only in what the cluster holds.

use std::borrow::Cow;
use std::fmt;

use crate::yaml::{Node, Value};

/// What a plan holds where the Hugging Face token was.
pub const PLACEHOLDER: &str = "llmd-secret-huggingface-token";

const PREFIX: &str = "llmd-secret-";

/// Values that stand for "no secret given" (upstream's sentinels).
const SENTINELS: &[&str] = &["REPLACE_TOKEN", "REPLACE_TOKEN_B64", "HF_TOKEN_PLACEHOLDER"];

/// Keys (last path segment, any case) whose string value is a credential. Names of
/// secrets (`secretName`, `tokenKey`) and counts (`maxNumBatchedTokens`) are not.
const SECRET_KEYS: &[&str] = &[
    "token",
    "tokenbase64",
    "password",
    "passwd",
    "secret",
    "credential",
    "credentials",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "secretkey",
    "secret_key",
    "secretaccesskey",
    "privatekey",
    "private_key",
    "authtoken",
    "accesstoken",
    "bearertoken",
    "hftoken",
    "hf_token",
];

/// True when a config key holds a credential.
pub fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str())
}

/// True when an environment variable's name says its value is a credential: a word
/// `TOKEN`, `PASSWORD`, `PASSWD`, `SECRET`, `APIKEY` or `CREDENTIALS`, or `API_KEY`,
/// `ACCESS_KEY`, `PRIVATE_KEY` (`HF_TOKEN`, `AWS_SECRET_ACCESS_KEY`; not
/// `MAX_NUM_BATCHED_TOKENS`, not `HF_TOKEN_FILE`, which names a path).
pub fn is_secret_env_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let words: Vec<&str> = upper.split(['_', '-', '.']).collect();
    if matches!(words.last(), Some(&("FILE" | "PATH" | "NAME" | "REF" | "KEY_REF"))) {
        return false;
    }
    words.iter().any(|w| matches!(*w, "TOKEN" | "PASSWORD" | "PASSWD" | "SECRET" | "APIKEY" | "CREDENTIALS"))
        || words.windows(2).any(|p| matches!(p, [_, "KEY"]) && matches!(p[0], "API" | "ACCESS" | "PRIVATE"))
}

/// The placeholder for the secret at a dotted config path.
pub fn placeholder_for(path: &str) -> String {
    let mut out = String::from(PREFIX);
    let mut dash = false;
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash {
            out.push('-');
            dash = true;
        }
    }
    out
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The Hugging Face placeholder as `b64encode` renders it (what a Secret's `data` holds).
pub fn placeholder_base64() -> String {
    base64(PLACEHOLDER)
}

/// Secret values and the placeholders that stand for them. In memory only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// (placeholder, value), longest placeholder first (so none is replaced inside a
    /// longer one).
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pairs.iter().map(|(p, _)| p)).finish()
    }
}

impl Secrets {
    /// Adds a secret; a placeholder already known keeps its first value.
    pub fn add(&mut self, placeholder: String, value: String) {
        if value.is_empty() || self.pairs.iter().any(|(p, _)| *p == placeholder) {
            return;
        }
        self.pairs.push((placeholder, value));
        self.pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    }

    /// Adds the Hugging Face token from the environment for a plan that names its
    /// placeholder but was not planned here (a stored plan).
    pub fn with_hf_token_from_env(mut self) -> Secrets {
        if let Some(token) = crate::config::PlanOptions::hf_token_from_env() {
            self.add(PLACEHOLDER.to_string(), token);
        }
        self
    }

    pub fn extend(&mut self, other: Secrets) {
        for (placeholder, value) in other.pairs {
            self.add(placeholder, value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(p, _)| p.as_str())
    }

    /// `text` with every placeholder, plain and base64, replaced by its value (plain and
    /// base64). A placeholder inside a longer base64 string (`b64encode` of
    /// `user:placeholder`) is not found: templates encode secrets alone.
    pub fn reveal<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (placeholder, value) in &self.pairs {
            let encoded = base64(placeholder);
            if out.contains(encoded.as_str()) {
                out = Cow::Owned(out.replace(&encoded, &base64(value)));
            }
            if out.contains(placeholder.as_str()) {
                out = Cow::Owned(replace_padded(&out, placeholder, value));
            }
        }
        out
    }

    /// `text` with every secret value, plain and base64, replaced by its placeholder.
    /// Values shorter than 8 characters are left (they would match ordinary text).
    pub fn hide<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (placeholder, value) in &self.pairs {
            if value.len() < 8 {
                continue;
            }
            for (from, to) in [(base64(value), base64(placeholder)), (value.clone(), placeholder.clone())] {
                if out.contains(from.as_str()) {
                    out = Cow::Owned(out.replace(&from, &to));
                }
            }
        }
        out
    }
}

/// A placeholder, plain or base64.
fn is_placeholder(value: &str) -> bool {
    use base64::Engine;
    value.starts_with(PREFIX) || base64::engine::general_purpose::STANDARD.decode(value).is_ok_and(|d| d.starts_with(PREFIX.as_bytes()))
}

/// `text` with `placeholder` replaced by `value`. A placeholder that `b64pad` padded
/// (it stood for a base64 value) is followed by its padding: the value is padded as
/// `b64pad` would have padded it instead.
fn replace_padded(text: &str, placeholder: &str, value: &str) -> String {
    let pad = (4 - placeholder.len() % 4) % 4;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(placeholder) {
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + placeholder.len()..];
        if pad > 0 && rest.as_bytes().iter().take(pad).filter(|&&b| b == b'=').count() == pad {
            rest = &rest[pad..];
            out.extend(std::iter::repeat_n('=', (4 - value.len() % 4) % 4));
        }
    }
    out.push_str(rest);
    out
}

/// Replaces every secret value in `config` with its placeholder and returns the values.
/// Placeholders already there (the Hugging Face token from the environment), empty
/// values, upstream's sentinels and `$VAR` references are left as they are.
pub fn conceal(config: &mut Node) -> Secrets {
    let mut found = Secrets::default();
    for_each_secret(config, &mut Vec::new(), &mut |path, value| {
        let placeholder = placeholder_for(path);
        found.add(placeholder.clone(), std::mem::replace(value, placeholder));
    });
    if !found.is_empty() {
        scrub(config, &found);
    }
    found
}

/// Replaces every copy of a value of `secrets` in the strings of `node` with its
/// placeholder.
pub fn scrub(node: &mut Node, secrets: &Secrets) {
    match &mut node.value {
        Value::Str(s) => {
            if let Cow::Owned(hidden) = secrets.hide(s) {
                *s = hidden;
            }
        }
        Value::Map(map) => map.values_mut().for_each(|c| scrub(c, secrets)),
        Value::Seq(items) => items.iter_mut().for_each(|c| scrub(c, secrets)),
        _ => {}
    }
}

/// `node` with every secret value shown as `<redacted>` (for messages about config
/// values before they are concealed, such as override logs).
pub fn redacted(node: &Node) -> Cow<'_, Node> {
    let mut copy = node.clone();
    let mut any = false;
    for_each_secret(&mut copy, &mut Vec::new(), &mut |_, value| {
        *value = "<redacted>".to_string();
        any = true;
    });
    if any { Cow::Owned(copy) } else { Cow::Borrowed(node) }
}

/// Calls `f` with the dotted path and value of every secret string under `node`: a
/// leaf whose key names a credential, the `value` of an env entry whose `name` does.
/// Empty values, placeholders, upstream's sentinels and `$VAR` references are skipped.
fn for_each_secret(node: &mut Node, path: &mut Vec<String>, f: &mut dyn FnMut(&str, &mut String)) {
    fn concealable(value: &str) -> bool {
        !value.is_empty() && !is_placeholder(value) && !value.starts_with('$') && !SENTINELS.contains(&value)
    }
    let env_secret = node.as_map().is_some_and(|m| {
        m.get("name").and_then(Node::as_str).is_some_and(is_secret_env_name) && m.get("value").and_then(Node::as_str).is_some()
    });
    match &mut node.value {
        Value::Map(map) => {
            for (key, child) in map.iter_mut() {
                path.push(key.clone());
                let secret_here = is_secret_key(key) || (env_secret && key == "value");
                match &mut child.value {
                    Value::Str(s) if secret_here && concealable(s) => f(&path.join("."), s),
                    _ => for_each_secret(child, path, f),
                }
                path.pop();
            }
        }
        Value::Seq(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                for_each_secret(child, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_puts_back_the_plain_and_the_base64_value() {
        let mut secrets = Secrets::default();
        secrets.add(PLACEHOLDER.to_string(), "hf_abc".to_string());
        let text = format!("data:\n  HF_TOKEN: {}\nenv: {PLACEHOLDER}\n", placeholder_base64());
        let out = secrets.reveal(&text);
        assert_eq!(out, "data:\n  HF_TOKEN: aGZfYWJj\nenv: hf_abc\n");
        assert!(matches!(secrets.reveal("no secret here"), Cow::Borrowed(_)));
        assert_eq!(Secrets::default().reveal(&text), text);
        assert_eq!(format!("{secrets:?}"), format!("[\"{PLACEHOLDER}\"]"), "Debug never shows a value");
    }

    #[test]
    fn a_placeholder_padded_as_base64_reveals_a_padded_value() {
        let mut secrets = Secrets::default();
        // 35 characters: `b64pad` adds one `=`.
        let placeholder = placeholder_for("huggingface.tokenBase64");
        assert_eq!(placeholder.len() % 4, 3);
        secrets.add(placeholder.clone(), "aGZfYWJjZA".to_string());
        assert_eq!(secrets.reveal(&format!("k: {placeholder}=\n")), "k: aGZfYWJjZA==\n");
        assert_eq!(secrets.reveal(&format!("k: {placeholder}\n")), "k: aGZfYWJjZA\n");
    }

    #[test]
    fn secret_keys_and_env_names() {
        for key in ["token", "tokenBase64", "password", "apiKey", "secretAccessKey", "hfToken"] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["tokenKey", "secretName", "tokenizer", "maxNumBatchedTokens", "secretKeyRef", "timeToFirstToken"] {
            assert!(!is_secret_key(key), "{key}");
        }
        for name in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "DB_PASSWORD"] {
            assert!(is_secret_env_name(name), "{name}");
        }
        for name in ["VLLM_MAX_NUM_BATCHED_TOKENS", "HF_TOKEN_FILE", "TOKENIZER", "VLLM_USE_V1", "KEY"] {
            assert!(!is_secret_env_name(name), "{name}");
        }
    }

    #[test]
    fn conceal_replaces_secret_leaves_env_values_and_their_copies() {
        let text = "\
huggingface:
  token: hf_realtoken123
  tokenKey: HF_TOKEN
  secretName: llm-d-hf-token
s3:
  password: pw
  secretAccessKey: ''
  apiKey: $API_KEY
env:
  - name: OPENAI_API_KEY
    value: sk-verysecret
  - name: VLLM_MAX_NUM_BATCHED_TOKENS
    value: '2048'
copy: 'Bearer hf_realtoken123'
encoded: aGZfcmVhbHRva2VuMTIz
";
        let mut config = crate::yaml::load_str(text, "c.yaml").unwrap();
        let secrets = conceal(&mut config);
        let out = crate::yaml::dump(&config, crate::yaml::DumpOptions { sort_keys: false, ..Default::default() });
        for value in ["hf_realtoken123", "aGZfcmVhbHRva2VuMTIz", "sk-verysecret", "password: pw"] {
            assert!(!out.contains(value), "{value} left in:\n{out}");
        }
        for kept in ["tokenKey: HF_TOKEN", "secretName: llm-d-hf-token", "value: '2048'", "apiKey: $API_KEY", "secretAccessKey: ''"] {
            assert!(out.contains(kept), "{kept} lost from:\n{out}");
        }
        assert!(out.contains("token: llmd-secret-huggingface-token"), "{out}");
        assert!(out.contains("value: llmd-secret-env-0-value"), "{out}");
        assert!(out.contains("copy: Bearer llmd-secret-huggingface-token"), "{out}");
        assert_eq!(
            secrets.placeholders().collect::<Vec<_>>(),
            ["llmd-secret-huggingface-token", "llmd-secret-env-0-value", "llmd-secret-s3-password"]
        );
        // Everything put back where a deployment is applied.
        let revealed = secrets.reveal(&out);
        for back in [
            "token: hf_realtoken123",
            "password: pw",
            "value: sk-verysecret",
            "copy: Bearer hf_realtoken123",
            "encoded: aGZfcmVhbHRva2VuMTIz",
        ] {
            assert!(revealed.contains(back), "{back} not revealed in:\n{revealed}");
        }
    }
}
