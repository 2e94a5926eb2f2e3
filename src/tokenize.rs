//! Tokenizers for the simulator and the load generator: the embedded `cl100k_base` encoding (offline, no files)
//! or a Hugging Face `tokenizer.json` (`--tokenizer`), so that usage counts can match
//! exactly the tokenizer a harness uses.
//!
//! Random-mode output is drawn from the tokenizer's *word tokens*: tokens that decode to
//! a space plus 2–10 lowercase letters and re-encode to themselves. Text built from them
//! re-tokenizes to the same token count, so harnesses that count tokens on the client
//! agree with `usage`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Result, anyhow};
use tiktoken_rs::CoreBPE;

/// A tokenizer the simulator can encode prompts with and draw output tokens from.
pub enum SimTokenizer {
    Tiktoken(&'static CoreBPE, WordMemo),
    HuggingFace(Box<tokenizers::Tokenizer>),
}

/// Encodings of single words, for the common prompt of benchmarks — words separated by
/// single spaces. tiktoken's pre-tokenizer (a backtracking regex) costs ~1.5 µs a token,
/// which at 128 prompt tokens was most of the simulator's arrival-to-admission time;
/// a word looked up here costs a hash probe.
///
/// For text of ASCII letters and single spaces, `cl100k_base`'s pre-tokenizer yields
/// exactly "optional space + letters" pieces, and BPE never merges across pieces, so
/// encoding piece by piece equals encoding the whole. Any other text takes the full path.
#[derive(Default)]
pub struct WordMemo {
    words: std::sync::RwLock<HashMap<Box<str>, Box<[u32]>>>,
}

impl WordMemo {
    /// Words remembered at most (a random-word prompt set uses a few thousand).
    const CAPACITY: usize = 1 << 16;

    /// The pieces of `text` when it is letters and single spaces only (no trailing space).
    fn pieces(text: &str) -> Option<Vec<&str>> {
        let b = text.as_bytes();
        if b.is_empty() || b[b.len() - 1] == b' ' || !b.iter().all(|c| c.is_ascii_alphabetic() || *c == b' ') || text.contains("  ") {
            return None;
        }
        let mut pieces = Vec::with_capacity(b.len() / 4);
        let mut start = 0;
        for (i, &c) in b.iter().enumerate().skip(1) {
            if c == b' ' {
                pieces.push(&text[start..i]);
                start = i;
            }
        }
        pieces.push(&text[start..]);
        Some(pieces)
    }

    /// Remembers the word tokens (each encodes to itself): the words random prompts,
    /// ours and other harnesses' alike, are made of.
    fn seed(&self, words: &[WordToken]) {
        let mut memo = self.words.write().unwrap_or_else(|e| e.into_inner());
        for w in words {
            memo.insert(w.text.as_str().into(), Box::new([w.id]));
        }
    }

    fn encode(&self, bpe: &CoreBPE, text: &str) -> Vec<u32> {
        let Some(pieces) = Self::pieces(text) else { return bpe.encode_ordinary(text) };
        let mut out = Vec::with_capacity(pieces.len() + pieces.len() / 4);
        let mut missing = Vec::new();
        {
            let words = self.words.read().unwrap_or_else(|e| e.into_inner());
            for piece in &pieces {
                match words.get(*piece) {
                    Some(ids) => out.extend_from_slice(ids),
                    None => {
                        let ids = bpe.encode_ordinary(piece);
                        out.extend_from_slice(&ids);
                        missing.push((*piece, ids));
                    }
                }
            }
        }
        if !missing.is_empty() {
            let mut words = self.words.write().unwrap_or_else(|e| e.into_inner());
            for (piece, ids) in missing {
                if words.len() < Self::CAPACITY {
                    words.insert(piece.into(), ids.into());
                }
            }
        }
        out
    }
}

/// A token the simulator may emit, with its text.
#[derive(Clone, Debug)]
pub struct WordToken {
    pub id: u32,
    pub text: String,
}

impl SimTokenizer {
    /// The embedded default (`cl100k_base`).
    pub fn builtin() -> SimTokenizer {
        SimTokenizer::Tiktoken(tiktoken_rs::cl100k_base_singleton(), WordMemo::default())
    }

    /// A Hugging Face tokenizer.json.
    pub fn from_file(path: &Path) -> Result<SimTokenizer> {
        let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", path.display()))?;
        Ok(SimTokenizer::HuggingFace(Box::new(tok)))
    }

    pub fn name(&self) -> &'static str {
        match self {
            SimTokenizer::Tiktoken(..) => "cl100k_base",
            SimTokenizer::HuggingFace(_) => "huggingface",
        }
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            SimTokenizer::Tiktoken(bpe, memo) => memo.encode(bpe, text),
            SimTokenizer::HuggingFace(tok) => tok.encode_fast(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default(),
        }
    }

    /// Encodes and returns each token's byte range in `text` (for echoing a prompt back
    /// token by token).
    pub fn encode_with_offsets(&self, text: &str) -> Vec<(u32, std::ops::Range<usize>)> {
        match self {
            SimTokenizer::Tiktoken(bpe, _) => {
                let ids = bpe.encode_ordinary(text);
                let mut pos = 0;
                ids.into_iter()
                    .map(|id| {
                        let len = bpe.decode_bytes(&[id]).map(|b| b.len()).unwrap_or(0);
                        let range = pos..(pos + len).min(text.len());
                        pos += len;
                        (id, range)
                    })
                    .collect()
            }
            SimTokenizer::HuggingFace(tok) => match tok.encode(text, false) {
                Ok(enc) => {
                    // Offsets are in bytes for the Rust tokenizers crate.
                    enc.get_ids().iter().zip(enc.get_offsets()).map(|(&id, &(a, b))| (id, a..b)).collect()
                }
                Err(_) => Vec::new(),
            },
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            SimTokenizer::Tiktoken(bpe, _) => bpe.decode_bytes(ids).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
            SimTokenizer::HuggingFace(tok) => tok.decode(ids, false).unwrap_or_default(),
        }
    }

    fn vocab_size(&self) -> u32 {
        match self {
            SimTokenizer::Tiktoken(..) => 100_256,
            SimTokenizer::HuggingFace(tok) => tok.get_vocab_size(true) as u32,
        }
    }

    /// Up to `limit` word tokens (see the module docs), in id order.
    pub fn word_tokens(&self, limit: usize) -> Vec<WordToken> {
        let mut out = Vec::new();
        for id in 0..self.vocab_size() {
            let text = self.decode(&[id]);
            let word = text.strip_prefix(' ').unwrap_or("");
            if !(2..=10).contains(&word.len()) || !word.bytes().all(|b| b.is_ascii_lowercase()) {
                continue;
            }
            if self.encode(&text) != [id] {
                continue;
            }
            out.push(WordToken { id, text });
            if out.len() >= limit {
                break;
            }
        }
        out
    }
}

/// Loads the configured tokenizer (or the builtin one) and its word tokens; each file is
/// loaded once per process and kept for its lifetime.
pub fn load(path: Option<&Path>) -> Result<(&'static SimTokenizer, &'static [WordToken])> {
    type Loaded = &'static (SimTokenizer, Vec<WordToken>);
    static CACHE: OnceLock<Mutex<HashMap<Option<PathBuf>, Loaded>>> = OnceLock::new();
    let key = path.map(Path::to_path_buf);
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some((tok, words)) = cache.get(&key).copied() {
        return Ok((tok, words.as_slice()));
    }
    let tok = match path {
        Some(p) => SimTokenizer::from_file(p)?,
        None => SimTokenizer::builtin(),
    };
    let words = tok.word_tokens(4096);
    if words.is_empty() {
        return Err(anyhow!("the tokenizer has no plain word tokens to generate text from"));
    }
    if let SimTokenizer::Tiktoken(_, memo) = &tok {
        memo.seed(&words);
    }
    let loaded: Loaded = Box::leak(Box::new((tok, words)));
    cache.insert(key, loaded);
    Ok((&loaded.0, loaded.1.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_word_tokens_round_trip() {
        let tok = SimTokenizer::builtin();
        let words = tok.word_tokens(200);
        assert_eq!(words.len(), 200);
        let text: String = words.iter().take(50).map(|w| w.text.as_str()).collect();
        assert_eq!(tok.encode(&text).len(), 50, "word tokens re-tokenize one to one");
    }

    #[test]
    fn word_memo_encodes_as_the_full_pre_tokenizer_does() {
        let tok = SimTokenizer::builtin();
        let SimTokenizer::Tiktoken(bpe, _) = &tok else { unreachable!() };
        let words: Vec<String> = tok.word_tokens(3000).into_iter().map(|w| w.text).collect();
        let mut rng = crate::util::rng::Rng::new(5);
        let mut texts = vec![
            " hello world".to_string(),
            "Hello World again".to_string(),
            "supercalifragilisticexpialidocious antidisestablishmentarianism".to_string(),
            "a b c".to_string(),
            // Not the simple shape: the full pre-tokenizer, whatever it does.
            "two  spaces".to_string(),
            "trailing ".to_string(),
            "it's 2024, ok?".to_string(),
            "naïve café".to_string(),
            String::new(),
        ];
        for _ in 0..200 {
            let n = 1 + rng.below(40);
            let mut t: String = (0..n).map(|_| words[rng.below(words.len())].clone()).collect();
            if rng.below(2) == 0 {
                t.remove(0);
            }
            if rng.below(3) == 0 {
                t = t.to_uppercase();
            }
            texts.push(t);
        }
        for t in &texts {
            // Twice: the second time from the memo.
            assert_eq!(tok.encode(t), bpe.encode_ordinary(t), "{t:?}");
            assert_eq!(tok.encode(t), bpe.encode_ordinary(t), "{t:?} (memoized)");
        }
    }

    #[test]
    fn offsets_cover_the_text() {
        let tok = SimTokenizer::builtin();
        let text = "Hello, wörld! 你好";
        let pieces = tok.encode_with_offsets(text);
        assert_eq!(pieces.first().unwrap().1.start, 0);
        assert_eq!(pieces.last().unwrap().1.end, text.len());
    }

    #[test]
    fn qwen_tokenizer_from_fixtures() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/tokenizers/qwen3/tokenizer.json");
        if !path.exists() {
            return; // fixtures live beside the checkout in CI and here
        }
        let tok = SimTokenizer::from_file(&path).unwrap();
        let words = tok.word_tokens(100);
        assert_eq!(words.len(), 100);
        let text: String = words.iter().take(30).map(|w| w.text.as_str()).collect();
        assert_eq!(tok.encode(&text).len(), 30);
        let pieces = tok.encode_with_offsets("Hello, wörld!");
        assert_eq!(pieces.last().unwrap().1.end, "Hello, wörld!".len());
    }
}
