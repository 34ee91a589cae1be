//! The hasher for the engine's user-id table.
//!
//! Interning a user id is on the path of every decision, and the standard library's SipHash is
//! more than that lookup needs; this file holds the cheaper hasher and says why it is safe enough.

use std::hash::{BuildHasher, Hasher};

/// FxHash-style hasher for user ids: one multiply per 8 bytes instead of SipHash's rounds. It is
/// seeded per engine, which makes precomputed collisions unlikely to carry over, but it is no
/// defence against a determined attacker; that is acceptable because user ids are the subjects
/// of authenticated tokens, not strings a client picks freely, and a show has few of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct UserHasher(u64);

const FX_K: u64 = 0xf135_7aea_2e62_a9c5;

impl UserHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_K);
    }
}

impl Hasher for UserHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(byte as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak; the table indexes with them.
        let x = self.0;
        (x ^ (x >> 32)).wrapping_mul(FX_K) ^ (x >> 29)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct UserHasherBuilder(pub(super) u64);

impl BuildHasher for UserHasherBuilder {
    type Hasher = UserHasher;
    #[inline]
    fn build_hasher(&self) -> UserHasher {
        UserHasher(self.0)
    }
}
