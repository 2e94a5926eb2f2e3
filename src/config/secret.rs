//! Secrets stay out of everything llmd stores, prints or exports.
//!
//! Planning replaces the Hugging Face token with [`PLACEHOLDER`] (and its base64 form),
//! so plans, cache blobs, keys, the journal and every command's output carry the
//! placeholder: a token is an input of no key (it does not change a benchmark, and cached
//! plans stay portable between machines and CI). The real value is put back only where
//! a deployment is applied ([`reveal`], called by the cluster backend on the objects it
//! sends), so it exists only in the applied Secret.

use std::borrow::Cow;

/// What a plan holds where the token was.
pub const PLACEHOLDER: &str = "llmd-secret-huggingface-token";

/// The placeholder as `b64encode` renders it (what a Secret's `data` holds).
pub fn placeholder_base64() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(PLACEHOLDER)
}

/// `text` with the placeholder, plain and base64, replaced by `token` (plain and base64).
/// Without a token (or a placeholder) the text is returned as it is.
pub fn reveal<'a>(text: &'a str, token: Option<&str>) -> Cow<'a, str> {
    let Some(token) = token.filter(|t| !t.is_empty()) else { return Cow::Borrowed(text) };
    let encoded = placeholder_base64();
    if !text.contains(PLACEHOLDER) && !text.contains(&encoded) {
        return Cow::Borrowed(text);
    }
    use base64::Engine;
    let token_b64 = base64::engine::general_purpose::STANDARD.encode(token);
    Cow::Owned(text.replace(&encoded, &token_b64).replace(PLACEHOLDER, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_puts_back_the_plain_and_the_base64_token() {
        let text = format!("data:\n  HF_TOKEN: {}\nenv: {PLACEHOLDER}\n", placeholder_base64());
        let out = reveal(&text, Some("hf_abc"));
        assert_eq!(out, "data:\n  HF_TOKEN: aGZfYWJj\nenv: hf_abc\n");
        assert!(matches!(reveal("no secret here", Some("hf_abc")), Cow::Borrowed(_)));
        assert_eq!(reveal(&text, None), text);
    }
}
