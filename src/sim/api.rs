//! The OpenAI/vLLM wire format: request parsing and validation, response and SSE chunk
//! rendering, error bodies.
//!
//! Chunks are written by hand into a byte buffer (no intermediate `serde_json::Value`):
//! at hundreds of thousands of events per second, allocation-free formatting matters.

use std::fmt::Write;

use serde::Deserialize;

use crate::pyfmt::json_string;

/// `/v1/completions` or `/v1/chat/completions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Completion,
    Chat,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: MessageContent,
}

#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
pub enum MessageContent {
    #[default]
    Empty,
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
    #[serde(default)]
    pub continuous_usage_stats: Option<bool>,
}

/// The fields of a generation request the simulator honours (others are accepted and
/// ignored, as vLLM ignores unsupported sampling parameters).
#[derive(Debug, Deserialize)]
pub struct GenerationRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: Option<Prompt>,
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub min_tokens: Option<i64>,
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<i64>,
}

/// A client error, rendered as an OpenAI-style error body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: 400, kind: "BadRequestError", message: message.into(), param: None }
    }

    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn body(&self) -> String {
        let mut out = String::from("{\"error\":{\"message\":");
        json_string(&mut out, &self.message);
        out.push_str(",\"type\":");
        json_string(&mut out, self.kind);
        out.push_str(",\"param\":");
        match self.param {
            Some(p) => json_string(&mut out, p),
            None => out.push_str("null"),
        }
        let _ = write!(out, ",\"code\":{}}}}}", self.status);
        out
    }
}

/// Text that is the prompt of a chat request (a simple role-prefixed rendering; the
/// simulator has no chat template).
pub fn chat_prompt(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for m in messages {
        text.push_str(&m.role);
        text.push_str(": ");
        match &m.content {
            MessageContent::Empty => {}
            MessageContent::Text(t) => text.push_str(t),
            MessageContent::Parts(parts) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        text.push_str(t);
                    }
                }
            }
        }
        text.push('\n');
    }
    text.push_str("assistant: ");
    text
}

/// Usage numbers of a response.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
}

pub fn write_usage(out: &mut String, u: Usage) {
    let _ = write!(
        out,
        "{{\"prompt_tokens\":{},\"total_tokens\":{},\"completion_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":{}}}}}",
        u.prompt_tokens,
        u.prompt_tokens + u.completion_tokens,
        u.completion_tokens,
        u.cached_tokens
    );
}

/// Per-response constants shared by every chunk.
pub struct ResponseHead {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ResponseHead {
    fn open(&self, out: &mut String, chunk: bool) {
        out.push_str("{\"id\":");
        json_string(out, &self.id);
        out.push_str(",\"object\":");
        out.push_str(match (self.kind, chunk) {
            (Kind::Completion, _) => "\"text_completion\"",
            (Kind::Chat, true) => "\"chat.completion.chunk\"",
            (Kind::Chat, false) => "\"chat.completion\"",
        });
        let _ = write!(out, ",\"created\":{},\"model\":", self.created);
        json_string(out, &self.model);
    }

    /// One SSE event carrying `text` (and the role delta first, for chat's first token).
    pub fn chunk(&self, out: &mut String, text: &str, role: bool, finish: Option<&str>, usage: Option<Usage>) {
        out.push_str("data: ");
        self.open(out, true);
        out.push_str(",\"choices\":[{\"index\":0,");
        match self.kind {
            Kind::Completion => {
                out.push_str("\"text\":");
                json_string(out, text);
                out.push_str(",\"logprobs\":null");
            }
            Kind::Chat => {
                out.push_str("\"delta\":{");
                if role {
                    out.push_str("\"role\":\"assistant\",");
                }
                out.push_str("\"content\":");
                json_string(out, text);
                out.push_str("},\"logprobs\":null");
            }
        }
        out.push_str(",\"finish_reason\":");
        match finish {
            Some(f) => json_string(out, f),
            None => out.push_str("null"),
        }
        if self.kind == Kind::Completion {
            out.push_str(",\"stop_reason\":null");
        }
        out.push_str("}]");
        if let Some(u) = usage {
            out.push_str(",\"usage\":");
            write_usage(out, u);
        }
        out.push_str("}\n\n");
    }

    /// The usage-only event sent at the end when `include_usage` is set.
    pub fn usage_chunk(&self, out: &mut String, usage: Usage) {
        out.push_str("data: ");
        self.open(out, true);
        out.push_str(",\"choices\":[],\"usage\":");
        write_usage(out, usage);
        out.push_str("}\n\n");
    }

    /// A complete non-streamed response.
    pub fn full(&self, text: &str, finish: &str, usage: Usage) -> String {
        let mut out = String::with_capacity(text.len() + 256);
        self.open(&mut out, false);
        out.push_str(",\"choices\":[{\"index\":0,");
        match self.kind {
            Kind::Completion => {
                out.push_str("\"text\":");
                json_string(&mut out, text);
                out.push_str(",\"logprobs\":null,\"finish_reason\":");
                json_string(&mut out, finish);
                out.push_str(",\"stop_reason\":null");
            }
            Kind::Chat => {
                out.push_str("\"message\":{\"role\":\"assistant\",\"content\":");
                json_string(&mut out, text);
                out.push_str("},\"logprobs\":null,\"finish_reason\":");
                json_string(&mut out, finish);
            }
        }
        out.push_str("}],\"usage\":");
        write_usage(&mut out, usage);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_valid_json_events() {
        let head = ResponseHead { kind: Kind::Chat, id: "chatcmpl-1".into(), created: 1, model: "m".into() };
        let mut out = String::new();
        head.chunk(&mut out, " hi\"", true, None, None);
        head.chunk(&mut out, " x", false, Some("length"), Some(Usage { prompt_tokens: 3, completion_tokens: 2, cached_tokens: 0 }));
        head.usage_chunk(&mut out, Usage { prompt_tokens: 3, completion_tokens: 2, cached_tokens: 1 });
        for event in out.split("\n\n").filter(|e| !e.is_empty()) {
            let json = event.strip_prefix("data: ").unwrap();
            serde_json::from_str::<serde_json::Value>(json).unwrap();
        }
        let v: serde_json::Value = serde_json::from_str(&head.full("ab", "stop", Usage::default())).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "ab");
        let e: serde_json::Value = serde_json::from_str(&ApiError::bad_request("bad \"x\"").with_param("prompt").body()).unwrap();
        assert_eq!(e["error"]["code"], 400);
        assert_eq!(e["error"]["param"], "prompt");
    }
}
