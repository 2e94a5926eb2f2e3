//! Deterministic per-request randomness.
//!
//! Each request's random stream (output length, latency jitter, injected failures) is a
//! SplitMix64 generator seeded from `(--seed, request id)`, so a run with the same seed
//! and the same request ids produces the same answers however requests interleave.

/// SplitMix64: tiny, fast, and good enough for simulation noise.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The stream for one request.
    pub fn for_request(seed: u64, request_id: &str) -> Self {
        Rng(seed ^ hash_str(request_id).rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: f64) -> bool {
        percent > 0.0 && self.next_f64() * 100.0 < percent
    }
}

/// FNV-1a of a string (stable across runs and platforms).
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_request(7, "req-1").next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::for_request(7, "req-1").next_u64(), Rng::for_request(7, "req-2").next_u64());
        assert_ne!(Rng::for_request(7, "req-1").next_u64(), Rng::for_request(8, "req-1").next_u64());
        let mut r = Rng::new(1);
        let mean = (0..10_000).map(|_| r.normal()).sum::<f64>() / 10_000.0;
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
