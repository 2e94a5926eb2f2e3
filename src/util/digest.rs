//! Content digests and derived keys (blake3).

use std::collections::BTreeMap;

/// Bump when the meaning of any key changes: every node then re-executes once.
pub const KEY_VERSION: &str = "1";

/// blake3 of `bytes`, as hex.
pub fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The key of a node of `kind` with these named inputs:
/// `blake3::derive_key("llmd/engine/v<KEY_VERSION>/<kind>", encoding)`, where the
/// encoding is the inputs sorted by name, each name and value length-prefixed.
pub fn node_key(kind: &str, inputs: &BTreeMap<String, String>) -> String {
    let mut enc = Vec::with_capacity(256);
    for (name, value) in inputs {
        for part in [name.as_bytes(), value.as_bytes()] {
            enc.extend_from_slice(&(part.len() as u64).to_le_bytes());
            enc.extend_from_slice(part);
        }
    }
    let context = format!("llmd/engine/v{KEY_VERSION}/{kind}");
    blake3::Hasher::new_derive_key(&context).update(&enc).finalize().to_hex().to_string()
}
