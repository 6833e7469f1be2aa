//! SipHash (Aumasson and Bernstein, 2012) with a 128-bit output: the cache's keyed hash.
//!
//! The cache keys entries by a 128-bit keyed hash of the token instead of the token itself,
//! which would cost more memory than the rest of an entry. The keys are random per process and
//! never leave it, so a client cannot aim a token at another token's entry: finding a
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

/// SipHash-1-3 of `msg` under `key`, 128-bit output: one lane, what the two-lane hash is
/// checked against.
#[cfg(test)]
fn siphash13_128(key: SipKey, msg: &[u8]) -> u128 {
    sip::<1, 3>(key, msg, true)
}

/// Two SipHash-1-3 lanes under independent keys, each over one half of `msg`, XORed.
///
/// One lane is a chain of dependent additions and rotations, which leaves most of a core's
/// arithmetic units idle; two chains side by side run in about the time of one, so a token
/// hashes in nearly half the time. The split point depends only on the length, so distinct
/// messages give distinct pairs of halves; each lane absorbs its half's length; and with the
/// keys secret the XOR of two independent keyed functions collides for two given messages
/// with probability about 2^-128, as one lane does.
pub(crate) fn siphash13_128_x2(keys: [SipKey; 2], msg: &[u8]) -> u128 {
    let (a, b) = msg.split_at(msg.len() / 16 * 8);
    let (mut sa, mut sb) = (State::new(keys[0], true), State::new(keys[1], true));
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    // `a` is whole words, as many as `b` has or one fewer; `zip` stops at `a`'s end without
    // taking one of `b`'s.
    for (x, y) in (&mut wa).zip(&mut wb) {
        sa.absorb::<1>(word(x));
        sb.absorb::<1>(word(y));
    }
    for y in &mut wb {
        sb.absorb::<1>(word(y));
    }
    sa.finish::<1, 3>(wa.remainder(), a.len(), true) ^ sb.finish::<1, 3>(wb.remainder(), b.len(), true)
}

/// SipHash-c-d; the 128-bit variant when `wide`, else the original 64-bit one (in the low half).
#[cfg(test)]
fn sip<const C: usize, const D: usize>(key: SipKey, msg: &[u8], wide: bool) -> u128 {
    let mut s = State::new(key, wide);
    let mut blocks = msg.chunks_exact(8);
    for block in &mut blocks {
        s.absorb::<C>(word(block));
    }
    s.finish::<C, D>(blocks.remainder(), msg.len(), wide)
}

/// An 8-byte block as a little-endian word.
#[inline(always)]
fn word(block: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(block);
    u64::from_le_bytes(w)
}

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    fn new(key: SipKey, wide: bool) -> Self {
        Self {
            v0: key.k0 ^ 0x736f_6d65_7073_6575,
            v1: key.k1 ^ 0x646f_7261_6e64_6f6d ^ if wide { 0xee } else { 0 },
            v2: key.k0 ^ 0x6c79_6765_6e65_7261,
            v3: key.k1 ^ 0x7465_6462_7974_6573,
        }
    }

    /// Absorbs the last word (the `tail` bytes and the length mod 256) and finalises.
    #[inline(always)]
    fn finish<const C: usize, const D: usize>(mut self, tail: &[u8], len: usize, wide: bool) -> u128 {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        last[7] = len.to_le_bytes()[0];
        self.absorb::<C>(u64::from_le_bytes(last));

        self.v2 ^= if wide { 0xee } else { 0xff };
        self.rounds::<D>();
        let low = self.v0 ^ self.v1 ^ self.v2 ^ self.v3;
        if !wide {
            return u128::from(low);
        }
        self.v1 ^= 0xdd;
        self.rounds::<D>();
        let high = self.v0 ^ self.v1 ^ self.v2 ^ self.v3;
        (u128::from(high) << 64) | u128::from(low)
    }

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
    fn two_lanes_are_one_lane_per_half() {
        let other = SipKey::new(0x1111_2222_3333_4444, 0x5555_6666_7777_8888);
        let msg: Vec<u8> = (0..300u16).map(|b| (b as u8).wrapping_mul(91)).collect();
        for n in 0..msg.len() {
            let (a, b) = msg[..n].split_at(n / 16 * 8);
            let want = siphash13_128(KEY, a) ^ siphash13_128(other, b);
            assert_eq!(siphash13_128_x2([KEY, other], &msg[..n]), want, "length {n}");
        }
        assert_ne!(siphash13_128_x2([KEY, other], b"ab"), siphash13_128_x2([KEY, other], b"ab\0"));
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
