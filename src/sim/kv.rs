//! A KV-cache model with prefix caching, like vLLM's: prompts are split into blocks of
//! `block_size` tokens, each full block is named by a hash chained over all blocks before
//! it, and blocks are shared between requests with equal prefixes.
//!
//! Blocks held by running requests are pinned; released blocks stay cached until an
//! allocation needs their space (least recently used first). `kv_cache_usage_perc` is
//! the share of blocks pinned by running requests.

use std::collections::HashMap;

/// Identifies a cached block: the hash chained over the prefix it completes.
pub type BlockHash = u64;

#[derive(Debug)]
struct Block {
    refs: u32,
    last_used: u64,
}

/// The cache. Not thread-safe by itself; the engine holds it behind a lock.
#[derive(Debug)]
pub struct KvCache {
    block_size: usize,
    capacity: usize,
    seed: u64,
    blocks: HashMap<BlockHash, Block>,
    /// Blocks pinned by requests that are not (yet) full, and so have no hash.
    anonymous: usize,
    clock: u64,
}

/// What a request holds in the cache.
#[derive(Debug, Default, Clone)]
pub struct Allocation {
    pub hashes: Vec<BlockHash>,
    pub anonymous: usize,
    /// Prompt tokens found in the cache (whole blocks).
    pub cached_tokens: usize,
}

impl Allocation {
    pub fn blocks(&self) -> usize {
        self.hashes.len() + self.anonymous
    }
}

impl KvCache {
    pub fn new(capacity: usize, block_size: usize, seed: u64) -> Self {
        KvCache { block_size, capacity, seed, blocks: HashMap::new(), anonymous: 0, clock: 0 }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Chained hashes of the full blocks of `tokens`.
    pub fn block_hashes(&self, tokens: &[u32]) -> Vec<BlockHash> {
        let mut parent = self.seed;
        tokens
            .chunks_exact(self.block_size)
            .map(|block| {
                let mut h = blake3::Hasher::new();
                h.update(&parent.to_le_bytes());
                for t in block {
                    h.update(&t.to_le_bytes());
                }
                parent = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
                parent
            })
            .collect()
    }

    fn pinned(&self) -> usize {
        self.blocks.values().filter(|b| b.refs > 0).count() + self.anonymous
    }

    /// Share of blocks pinned by running requests, in [0, 1].
    pub fn usage(&self) -> f64 {
        self.pinned() as f64 / self.capacity as f64
    }

    /// Number of leading prompt tokens already cached (whole blocks), without pinning.
    pub fn lookup(&self, hashes: &[BlockHash]) -> usize {
        hashes.iter().take_while(|h| self.blocks.contains_key(h)).count() * self.block_size
    }

    /// Frees unpinned cached blocks (LRU first) until `needed` blocks fit. False if the
    /// pinned blocks alone leave too little room.
    fn make_room(&mut self, needed: usize) -> bool {
        let free = |c: &KvCache| c.capacity.saturating_sub(c.blocks.len() + c.anonymous);
        if free(self) >= needed {
            return true;
        }
        let mut evictable: Vec<(u64, BlockHash)> =
            self.blocks.iter().filter(|(_, b)| b.refs == 0).map(|(h, b)| (b.last_used, *h)).collect();
        evictable.sort_unstable();
        for (_, h) in evictable {
            if free(self) >= needed {
                break;
            }
            self.blocks.remove(&h);
        }
        free(self) >= needed
    }

    /// Pins the blocks for a prompt of `prompt_tokens` tokens with full-block `hashes`,
    /// plus room for `extra_tokens` more. Returns `None` when the cache cannot hold it.
    pub fn allocate(&mut self, hashes: &[BlockHash], prompt_tokens: usize, extra_tokens: usize) -> Option<Allocation> {
        self.clock += 1;
        let cached_blocks = hashes.iter().take_while(|h| self.blocks.contains_key(h)).count();
        let total_blocks = (prompt_tokens + extra_tokens).div_ceil(self.block_size).max(hashes.len());
        let new_hashed = hashes.len() - cached_blocks;
        let anonymous = total_blocks - hashes.len();
        // Pin cache hits first so eviction cannot take them.
        for h in &hashes[..cached_blocks] {
            let b = self.blocks.get_mut(h).expect("present");
            b.refs += 1;
            b.last_used = self.clock;
        }
        if !self.make_room(new_hashed + anonymous) {
            for h in &hashes[..cached_blocks] {
                self.blocks.get_mut(h).expect("present").refs -= 1;
            }
            return None;
        }
        for h in &hashes[cached_blocks..] {
            self.blocks.insert(*h, Block { refs: 1, last_used: self.clock });
        }
        self.anonymous += anonymous;
        Some(Allocation { hashes: hashes.to_vec(), anonymous, cached_tokens: cached_blocks * self.block_size })
    }

    /// Grows an allocation by `blocks` anonymous blocks (decoding past its reservation).
    pub fn grow(&mut self, alloc: &mut Allocation, blocks: usize) -> bool {
        if !self.make_room(blocks) {
            return false;
        }
        self.anonymous += blocks;
        alloc.anonymous += blocks;
        true
    }

    /// Unpins an allocation; its hashed blocks stay cached.
    pub fn release(&mut self, alloc: &Allocation) {
        self.clock += 1;
        for h in &alloc.hashes {
            if let Some(b) = self.blocks.get_mut(h) {
                b.refs = b.refs.saturating_sub(1);
                b.last_used = self.clock;
            }
        }
        self.anonymous = self.anonymous.saturating_sub(alloc.anonymous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_prefixes_hit_and_lru_evicts() {
        let mut kv = KvCache::new(8, 4, 0);
        let prompt: Vec<u32> = (0..10).collect();
        let hashes = kv.block_hashes(&prompt);
        assert_eq!(hashes.len(), 2);
        let a = kv.allocate(&hashes, 10, 2).unwrap();
        assert_eq!(a.cached_tokens, 0);
        assert_eq!(a.blocks(), 3);
        assert_eq!(kv.usage(), 3.0 / 8.0);
        kv.release(&a);
        assert_eq!(kv.usage(), 0.0);
        assert_eq!(kv.lookup(&hashes), 8);
        let b = kv.allocate(&hashes, 10, 2).unwrap();
        assert_eq!(b.cached_tokens, 8, "a repeated prompt hits the cache");
        kv.release(&b);
        // A different prefix shares nothing: chained hashes differ from the first block on.
        let other: Vec<u32> = (100..110).collect();
        assert_eq!(kv.lookup(&kv.block_hashes(&other)), 0);
        // Filling the cache evicts the unpinned blocks.
        let big: Vec<u32> = (1000..1032).collect();
        let c = kv.allocate(&kv.block_hashes(&big), 32, 0).unwrap();
        assert_eq!(c.blocks(), 8);
        assert_eq!(kv.lookup(&hashes), 0);
        assert!(kv.allocate(&hashes, 10, 0).is_none(), "no room while everything is pinned");
    }
}
