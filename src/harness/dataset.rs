//! Prompt datasets for the native harness.
//!
//! * `random` — vLLM bench's random dataset: input and output lengths uniform in
//!   `[⌊L(1−r)⌋, ⌈L(1+r)⌉]`, token ids `(offset + i + j) mod V` over the vocabulary,
//!   plus an optional fixed prefix. llmd draws ids from the tokenizer's word tokens
//!   (tokens that re-tokenize one to one), so every prompt is exactly its target length
//!   under that tokenizer without vLLM's decode/re-encode retries.
//! * `shared_prefix` — inference-perf / sglang "generated shared prefix": `groups` ×
//!   `prompts_per_group`, each prompt a group system prompt of `system_prompt_len` tokens
//!   plus a unique question of `question_len` tokens.
//! * `file` — ShareGPT JSON (`[{conversations: [{from, value}, ...]}]`) with vLLM's
//!   pruning (first two turns; drop prompts or replies under 4 tokens, prompts over 1024,
//!   prompt + reply over 2048), or JSONL lines `{"prompt": ..., "output_len": ...}`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::tokenize::{SimTokenizer, WordToken};
use crate::util::rng::Rng;

/// One request's prompt.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub text: String,
    pub input_len: usize,
    pub output_len: usize,
}

/// The prompts a run sends (`dataset:` of a native profile; `type` picks the kind).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// Random token prompts.
    Random {
        /// Prompt length in tokens.
        #[serde(default = "default_input_len")]
        input_len: usize,
        /// Completion length in tokens (`max_tokens`).
        #[serde(default = "default_output_len")]
        output_len: usize,
        /// Lengths are uniform in [L(1-r), L(1+r)].
        #[serde(default)]
        range_ratio: f64,
        /// Tokens of a prefix shared by every prompt.
        #[serde(default)]
        prefix_len: usize,
        /// Distinct prompts generated (reused round-robin).
        #[serde(default = "default_num_prompts")]
        num_prompts: usize,
    },
    /// Groups of prompts sharing a system prompt (prefix-cache workloads).
    SharedPrefix {
        /// Number of groups (distinct system prompts).
        groups: usize,
        /// Prompts per group.
        prompts_per_group: usize,
        /// System prompt length in tokens.
        system_prompt_len: usize,
        /// Question length in tokens.
        question_len: usize,
        /// Completion length in tokens.
        #[serde(default = "default_output_len")]
        output_len: usize,
    },
    /// Prompts from a JSONL file.
    File {
        /// The JSONL file (one `{"prompt": ...}` per line).
        path: PathBuf,
        /// Completion length in tokens (default: the file's, else the model's).
        #[serde(default)]
        output_len: Option<usize>,
    },
}

fn default_input_len() -> usize {
    128
}
fn default_output_len() -> usize {
    64
}
fn default_num_prompts() -> usize {
    1000
}

impl Default for DatasetSpec {
    fn default() -> Self {
        DatasetSpec::Random { input_len: 128, output_len: 64, range_ratio: 0.0, prefix_len: 0, num_prompts: 1000 }
    }
}

fn words_text(words: &[WordToken], ids: impl Iterator<Item = usize>) -> String {
    let mut s = String::new();
    for i in ids {
        s.push_str(&words[i % words.len()].text);
    }
    s
}

fn uniform_len(rng: &mut Rng, len: usize, ratio: f64) -> usize {
    if ratio <= 0.0 {
        return len;
    }
    let lo = (len as f64 * (1.0 - ratio)).floor() as usize;
    let hi = (len as f64 * (1.0 + ratio)).ceil() as usize;
    (lo + rng.below(hi - lo + 1)).max(1)
}

impl DatasetSpec {
    /// Builds the prompts (deterministic for a seed).
    pub fn build(&self, tokenizer: &SimTokenizer, words: &[WordToken], seed: u64) -> Result<Vec<Prompt>> {
        let mut rng = Rng::new(seed ^ 0x5eed_da7a);
        match self {
            DatasetSpec::Random { input_len, output_len, range_ratio, prefix_len, num_prompts } => {
                if !(0.0..1.0).contains(range_ratio) {
                    bail!("dataset.range_ratio must be in [0, 1), got {range_ratio}");
                }
                if *num_prompts == 0 {
                    bail!("dataset.num_prompts must be at least 1");
                }
                let prefix = words_text(words, (0..*prefix_len).map(|_| rng.below(words.len())));
                Ok((0..*num_prompts)
                    .map(|i| {
                        let in_len = uniform_len(&mut rng, *input_len, *range_ratio).max(1);
                        let out_len = uniform_len(&mut rng, *output_len, *range_ratio).max(1);
                        let offset = rng.below(words.len());
                        let text = format!("{prefix}{}", words_text(words, (0..in_len).map(|j| offset + i + j)));
                        Prompt { text, input_len: prefix_len + in_len, output_len: out_len }
                    })
                    .collect())
            }
            DatasetSpec::SharedPrefix { groups, prompts_per_group, system_prompt_len, question_len, output_len } => {
                if *groups == 0 || *prompts_per_group == 0 {
                    bail!("dataset.groups and dataset.prompts_per_group must be at least 1");
                }
                let mut out = Vec::with_capacity(groups * prompts_per_group);
                for _ in 0..*groups {
                    let system = words_text(words, (0..*system_prompt_len).map(|_| rng.below(words.len())));
                    for _ in 0..*prompts_per_group {
                        let question = words_text(words, (0..*question_len).map(|_| rng.below(words.len())));
                        out.push(Prompt {
                            text: format!("{system}{question}"),
                            input_len: system_prompt_len + question_len,
                            output_len: *output_len,
                        });
                    }
                }
                // Interleave groups, as the shared-prefix generators do.
                for i in (1..out.len()).rev() {
                    out.swap(i, rng.below(i + 1));
                }
                Ok(out)
            }
            DatasetSpec::File { path, output_len } => load_file(path, *output_len, tokenizer),
        }
    }
}

#[derive(Deserialize)]
struct ShareGptEntry {
    #[serde(default)]
    conversations: Vec<ShareGptTurn>,
}

#[derive(Deserialize)]
struct ShareGptTurn {
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct PromptLine {
    prompt: String,
    #[serde(default)]
    output_len: Option<usize>,
}

fn load_file(path: &PathBuf, fixed_output: Option<usize>, tokenizer: &SimTokenizer) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read dataset {}", path.display()))?;
    let mut out = Vec::new();
    if text.trim_start().starts_with('[') {
        let entries: Vec<ShareGptEntry> =
            serde_json::from_str(&text).with_context(|| format!("{}: not a ShareGPT JSON list", path.display()))?;
        for e in entries {
            if e.conversations.len() < 2 {
                continue;
            }
            let prompt = &e.conversations[0].value;
            let reply = &e.conversations[1].value;
            let p_len = tokenizer.encode(prompt).len();
            let r_len = fixed_output.unwrap_or_else(|| tokenizer.encode(reply).len());
            // vLLM's pruning rules.
            if p_len < 4 || (fixed_output.is_none() && r_len < 4) || p_len > 1024 || (fixed_output.is_none() && p_len + r_len > 2048) {
                continue;
            }
            out.push(Prompt { text: prompt.clone(), input_len: p_len, output_len: r_len });
        }
    } else {
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let p: PromptLine =
                serde_json::from_str(line).with_context(|| format!("{}:{}: expected {{\"prompt\": ...}}", path.display(), i + 1))?;
            let input_len = tokenizer.encode(&p.prompt).len();
            out.push(Prompt { output_len: fixed_output.or(p.output_len).unwrap_or(128), text: p.prompt, input_len });
        }
    }
    if out.is_empty() {
        bail!("{}: no usable prompts", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_prompts_are_token_exact() {
        let tok = SimTokenizer::builtin();
        let words = tok.word_tokens(1000);
        let spec = DatasetSpec::Random { input_len: 100, output_len: 20, range_ratio: 0.5, prefix_len: 10, num_prompts: 20 };
        let prompts = spec.build(&tok, &words, 1).unwrap();
        for p in &prompts {
            assert_eq!(tok.encode(&p.text).len(), p.input_len);
            assert!((10 + 50..=10 + 150).contains(&p.input_len), "{}", p.input_len);
            assert!((10..=30).contains(&p.output_len));
        }
        assert_eq!(spec.build(&tok, &words, 1).unwrap()[3].text, prompts[3].text, "deterministic");
    }

    #[test]
    fn shared_prefix_groups_share_their_system_prompt() {
        let tok = SimTokenizer::builtin();
        let words = tok.word_tokens(1000);
        let spec = DatasetSpec::SharedPrefix { groups: 3, prompts_per_group: 4, system_prompt_len: 50, question_len: 10, output_len: 8 };
        let prompts = spec.build(&tok, &words, 7).unwrap();
        assert_eq!(prompts.len(), 12);
        let prefixes: std::collections::HashSet<String> = prompts.iter().map(|p| p.text.chars().take(100).collect()).collect();
        assert!(prefixes.len() <= 3);
    }

    #[test]
    fn sharegpt_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sg.json");
        let long = "word ".repeat(1500);
        std::fs::write(
            &path,
            serde_json::json!([
                {"conversations": [{"from": "human", "value": "tell me a story about a dragon please"}, {"from": "gpt", "value": "once upon a time there was a dragon"}]},
                {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there friend"}]},
                {"conversations": [{"from": "human", "value": long}, {"from": "gpt", "value": "ok ok ok ok"}]},
                {"conversations": [{"from": "human", "value": "only one turn"}]}
            ])
            .to_string(),
        )
        .unwrap();
        let tok = SimTokenizer::builtin();
        let prompts = DatasetSpec::File { path, output_len: None }.build(&tok, &[], 0).unwrap();
        assert_eq!(prompts.len(), 1);
        assert!(prompts[0].text.contains("dragon"));
    }
}
