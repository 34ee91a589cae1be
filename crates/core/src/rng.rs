//! A small seeded generator, for what must be drawn reproducibly from a seed: the waiting room's
//! shuffle (from a secret seed drawn at the opening) and the benchmarks' workloads.

/// SplitMix64: small, fast, and equidistributed over its 2^64 states; enough for drawing one
/// permutation of a pre-queue from a secret seed. Not a cryptographic generator: the secret is
/// the seed.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose sequence is fixed by `state` (for deterministic workloads).
    pub const fn new(state: u64) -> Self {
        Self(state)
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        let state = seed.chunks_exact(8).fold(0u64, |acc, chunk| {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            Self(acc ^ word).next_u64()
        });
        Self(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (rejection sampling: no modulo bias).
    pub fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let draw = self.next_u64();
            if draw < zone {
                return draw % bound;
            }
        }
    }
}
