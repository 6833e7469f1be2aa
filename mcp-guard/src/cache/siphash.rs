//! SipHash (Aumasson and Bernstein, 2012) with a 128-bit output: the cache's keyed hash.
//!
//! The cache keys entries by a 128-bit keyed hash of the token instead of the token itself,
//! which would cost more memory than the rest of an entry. The key is random per process and
//! never leaves it, so a client cannot aim a token at another token's entry: finding a
//! collision without the key takes about 2^128 guesses. SipHash-1-3 is the reduced-round
//! variant that Rust's `HashMap` uses; a full SHA-256 of a token costs several times as much,
//! which would be most of a cache hit.

/// The SipHash-1-3 key: two random 64-bit words.
#[derive(Clone, Copy)]
pub(crate) struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    pub(crate) const fn new(k0: u64, k1: u64) -> Self {
        Self { k0, k1 }
    }
}

/// SipHash-1-3 of `msg` under `key`, 128-bit output.
pub(crate) fn siphash13_128(key: SipKey, msg: &[u8]) -> u128 {
    sip::<1, 3>(key, msg, true)
}

/// SipHash-c-d; the 128-bit variant when `wide`, else the original 64-bit one (in the low half).
fn sip<const C: usize, const D: usize>(key: SipKey, msg: &[u8], wide: bool) -> u128 {
    let mut s = State {
        v0: key.k0 ^ 0x736f_6d65_7073_6575,
        v1: key.k1 ^ 0x646f_7261_6e64_6f6d ^ if wide { 0xee } else { 0 },
        v2: key.k0 ^ 0x6c79_6765_6e65_7261,
        v3: key.k1 ^ 0x7465_6462_7974_6573,
    };
    let mut blocks = msg.chunks_exact(8);
    for block in &mut blocks {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        s.absorb::<C>(u64::from_le_bytes(word));
    }
    // The last word: the remaining bytes, little-endian, and the length mod 256 on top.
    let mut last = [0u8; 8];
    let tail = blocks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = msg.len().to_le_bytes()[0];
    s.absorb::<C>(u64::from_le_bytes(last));

    s.v2 ^= if wide { 0xee } else { 0xff };
    s.rounds::<D>();
    let low = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
    if !wide {
        return u128::from(low);
    }
    s.v1 ^= 0xdd;
    s.rounds::<D>();
    let high = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
    (u128::from(high) << 64) | u128::from(low)
}

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    #[inline(always)]
    fn absorb<const C: usize>(&mut self, m: u64) {
        self.v3 ^= m;
        self.rounds::<C>();
        self.v0 ^= m;
    }

    #[inline(always)]
    fn rounds<const N: usize>(&mut self) {
        for _ in 0..N {
            self.v0 = self.v0.wrapping_add(self.v1);
            self.v1 = self.v1.rotate_left(13) ^ self.v0;
            self.v0 = self.v0.rotate_left(32);
            self.v2 = self.v2.wrapping_add(self.v3);
            self.v3 = self.v3.rotate_left(16) ^ self.v2;
            self.v0 = self.v0.wrapping_add(self.v3);
            self.v3 = self.v3.rotate_left(21) ^ self.v0;
            self.v2 = self.v2.wrapping_add(self.v1);
            self.v1 = self.v1.rotate_left(17) ^ self.v2;
            self.v2 = self.v2.rotate_left(32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference key `00 01 … 0f`.
    const KEY: SipKey = SipKey::new(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    fn bytes(h: u128) -> [u8; 16] {
        // The reference implementation writes the low word first, each little-endian.
        h.to_le_bytes()
    }

    #[test]
    fn siphash24_128_reference_vectors() {
        // The first entries of `vectors_sip128` in the SipHash reference implementation:
        // messages `00 01 … (n-1)` for n = 0, 1, 2.
        let expected: [[u8; 16]; 3] = [
            [0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93],
            [0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45],
            [0x81, 0x77, 0x22, 0x8d, 0xa4, 0xa4, 0x5d, 0xc7, 0xfc, 0xa3, 0x8b, 0xde, 0xf6, 0x0a, 0xff, 0xe4],
        ];
        for (n, want) in expected.iter().enumerate() {
            let msg: Vec<u8> = (0..n as u8).collect();
            assert_eq!(&bytes(sip::<2, 4>(KEY, &msg, true)), want, "length {n}");
        }
    }

    #[test]
    fn siphash24_64_agrees_with_std_at_every_length() {
        // std's SipHasher is documented as SipHash-2-4: it checks the block and tail handling
        // that the 1-3 variant shares.
        #[allow(deprecated)]
        use std::hash::{Hasher as _, SipHasher};
        let key = SipKey::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        let msg: Vec<u8> = (0..200u8).map(|b| b.wrapping_mul(37)).collect();
        for n in 0..msg.len() {
            #[allow(deprecated)]
            let mut std = SipHasher::new_with_keys(key.k0, key.k1);
            std.write(&msg[..n]);
            assert_eq!(sip::<2, 4>(key, &msg[..n], false), u128::from(std.finish()), "length {n}");
        }
    }

    #[test]
    fn keys_and_messages_change_both_halves() {
        let a = siphash13_128(KEY, b"token");
        assert_ne!(a, siphash13_128(KEY, b"tokem"));
        assert_ne!(a, siphash13_128(SipKey::new(1, 2), b"token"));
        assert_ne!(a >> 64, a & u128::from(u64::MAX));
        // Messages that differ only in trailing zero bytes differ (the length is absorbed).
        assert_ne!(siphash13_128(KEY, b"ab"), siphash13_128(KEY, b"ab\0"));
    }
}
