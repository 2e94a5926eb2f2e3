//! The OpenAI wire format the load generator speaks: the request body it sends, and
//! the streamed chunks, usage and error bodies it reads (completions and chat).

use std::borrow::Cow;

use serde::Deserialize;

use super::dataset::Prompt;
use super::load::{Api, LoadProfile};

pub(super) fn request_body(profile: &LoadProfile, model: &str, prompt: &Prompt) -> Vec<u8> {
    let mut body = serde_json::json!({
        "model": model,
        "max_tokens": prompt.output_len,
        "stream": profile.stream,
    });
    match profile.api {
        Api::Completions => body["prompt"] = serde_json::Value::from(prompt.text.as_str()),
        Api::Chat => body["messages"] = serde_json::json!([{"role": "user", "content": prompt.text}]),
    }
    if profile.ignore_eos {
        body["ignore_eos"] = true.into();
    }
    if profile.stream {
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    serde_json::to_vec(&body).expect("JSON")
}

#[derive(Deserialize)]
pub(super) struct ChunkMsg<'a> {
    #[serde(default, borrow)]
    pub(super) choices: Vec<ChoiceMsg<'a>>,
    #[serde(default)]
    pub(super) usage: Option<UsageMsg>,
}

#[derive(Deserialize)]
pub(super) struct ChoiceMsg<'a> {
    #[serde(default, borrow)]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) delta: Option<DeltaMsg<'a>>,
    #[serde(default, borrow)]
    pub(super) message: Option<DeltaMsg<'a>>,
}

#[derive(Deserialize)]
pub(super) struct DeltaMsg<'a> {
    #[serde(default, borrow)]
    pub(super) content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct UsageMsg {
    #[serde(default)]
    pub(super) prompt_tokens: Option<u32>,
    #[serde(default)]
    pub(super) completion_tokens: Option<u32>,
    #[serde(default)]
    pub(super) prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
pub(super) struct Details {
    #[serde(default)]
    pub(super) cached_tokens: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) error: Option<ErrorDetail>,
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
}

impl ChoiceMsg<'_> {
    pub(super) fn content(&self) -> &str {
        self.text
            .as_deref()
            .or_else(|| self.delta.as_ref().and_then(|d| d.content.as_deref()))
            .or_else(|| self.message.as_ref().and_then(|d| d.content.as_deref()))
            .unwrap_or("")
    }
}
