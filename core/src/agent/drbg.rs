//! The agent's deterministic random bit generator: SHA-1 in counter mode
//! over the caller's 32-byte seed.
//!
//! Transaction ids must be unpredictable to off-path attackers (RFC 8489
//! section 5), and runs must replay from a seed. Output block `i` is
//! `SHA-1(seed || i as u64 big-endian)`; with a secret, uniformly random seed
//! the blocks are indistinguishable from random as far as SHA-1's
//! compression function is a PRF. It keeps 64 bytes of state instead of the
//! 300 of a buffered ChaCha generator, which matters on a speaker.

use sha1::{Digest, Sha1};

#[derive(Clone)]
pub(crate) struct Drbg {
    seed: [u8; 32],
    counter: u64,
    pool: [u8; 20],
    used: u8,
}

impl Drbg {
    pub fn new(seed: [u8; 32]) -> Drbg {
        Drbg {
            seed,
            counter: 0,
            pool: [0; 20],
            used: 20,
        }
    }

    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        for b in out {
            if usize::from(self.used) == self.pool.len() {
                let mut h = Sha1::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.pool = h.finalize().into();
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *b = self.pool[usize::from(self.used)];
            self.used += 1;
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_be_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_from_the_seed_and_differs_across_seeds() {
        let mut a = Drbg::new([1; 32]);
        let mut b = Drbg::new([1; 32]);
        let mut c = Drbg::new([2; 32]);
        let xs: [u64; 8] = core::array::from_fn(|_| a.next_u64());
        let ys: [u64; 8] = core::array::from_fn(|_| b.next_u64());
        let zs: [u64; 8] = core::array::from_fn(|_| c.next_u64());
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        // Block 0 is SHA-1 of 32 bytes of 0x01 then eight zero bytes.
        let mut h = Sha1::new();
        h.update([1u8; 32]);
        h.update([0u8; 8]);
        let block: [u8; 20] = h.finalize().into();
        let mut first = [0u8; 20];
        Drbg::new([1; 32]).fill_bytes(&mut first);
        assert_eq!(first, block);
    }
}
