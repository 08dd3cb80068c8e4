//! The simulator's random numbers: SplitMix64, written out here so that a
//! seed replays the same run on every platform and with every version of
//! every dependency (the `rand` crates do not promise value stability of
//! their range sampling across releases).

/// A small deterministic generator (SplitMix64, Steele, Lea and Flood 2014).
/// Not for cryptography; good enough for loss, jitter and port choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator from a seed. Equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        SimRng { state: seed }
    }

    /// An independent stream for component `stream` of a simulation with
    /// seed `seed` (each segment and NAT draws from its own stream, so adding
    /// a NAT does not change the loss pattern of an unrelated link).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = SimRng::new(seed ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93));
        // Mix once so that nearby seeds/streams decorrelate.
        let s = r.next_u64();
        SimRng::new(s)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..n` (0 when `n` is 0), by Lemire's widening
    /// multiplication (bias below 2^-64 * n, irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform value in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// A uniform float in `[0, 1)` with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (clamped to `[0, 1]`). Draws exactly one
    /// value whatever `p` is, so changing a probability does not shift the
    /// rest of the stream.
    pub fn chance(&mut self, p: f64) -> bool {
        let u = self.unit();
        u < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (reference C code).
        let mut r = SimRng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = SimRng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let v = r.range_inclusive(1024, 65535);
            assert!((1024..=65535).contains(&v));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.range_inclusive(5, 5), 5);
        assert_eq!(r.range_inclusive(9, 3), 9);
    }

    #[test]
    fn derived_streams_differ() {
        let a = SimRng::derive(1, 0).next_u64();
        let b = SimRng::derive(1, 1).next_u64();
        let c = SimRng::derive(2, 0).next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, SimRng::derive(1, 0).next_u64());
    }
}
