//! Small helpers every layer may use: nothing here knows about plans, stacks or
//! backends.
//!
//! * [`digest`] — blake3 digests and node keys; [`embedded`] — the config and workload trees built into the binary; [`fs`] — atomic writes and scratch directories; [`join`] — `join_all` for borrowed
//!   futures; [`rng`] — SplitMix64 and string hashing; [`steps`] — `--step` selections.

pub mod digest;
pub mod embedded;
pub mod fs;
pub mod join;
pub mod rng;
pub mod steps;

use std::path::Path;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The first 12 characters of a hex digest, for messages.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// The last `n` lines of a text file (for error messages).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}
