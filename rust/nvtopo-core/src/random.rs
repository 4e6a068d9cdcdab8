//! Seeded random nodes for tests and benchmarks: any topology a node of `n` GPUs could
//! have (random PCIe class per pair, random NVLink counts, degraded links, mixed NVLink
//! generations, random NUMA keys). Deterministic for a seed, no dependency.

use crate::bitset::{self, Mask};
use crate::score::PathClass;
use crate::topology::{PairSpec, Topology};

/// xorshift64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// A random node of `n` GPUs. Each node draws its own NVLink density (none to dense),
/// link counts of 1..=18 per pair, a share of degraded pairs (fewer or no working links),
/// a PCIe class per pair, NVLink generations (one per node, sometimes mixed), and 1, 2 or
/// 4 NUMA keys.
pub fn random_node(rng: &mut Rng, n: usize) -> Topology {
    let density = rng.below(11); // tenths of the pairs with NVLinks
    let degraded = rng.below(4); // tenths of the linked pairs degraded
    let spread = 1 + rng.below(18) as u32; // most links on one pair
    let mut pairs = Vec::with_capacity(n * (n - 1) / 2);
    for a in 0..n {
        for b in a + 1..n {
            let mut nvlinks = if rng.chance(density, 10) {
                1 + rng.below(u64::from(spread)) as u32
            } else {
                0
            };
            if nvlinks > 0 && rng.chance(degraded, 10) {
                nvlinks = rng.below(u64::from(nvlinks)) as u32;
            }
            pairs.push(PairSpec {
                a,
                b,
                nvlinks,
                class: PathClass::from_code(rng.below(5) as u8),
            });
        }
    }
    let gen = 1 + rng.below(5) as u8;
    let mixed = rng.chance(1, 5);
    let generations: Vec<u8> = (0..n)
        .map(|_| if mixed { rng.below(6) as u8 } else { gen })
        .collect();
    let keys = [1u64, 2, 4][rng.below(3) as usize];
    let numa: Vec<u32> = (0..n).map(|_| rng.below(keys) as u32).collect();
    Topology::new((0..n as i64).collect(), &generations, &pairs, &numa)
        .expect("a generated node is valid")
}

/// A random set of at least `k` of the `n` positions: each position kept with a random
/// probability, then topped up at random to `k`.
pub fn random_free(rng: &mut Rng, n: usize, k: usize) -> Mask {
    let keep = rng.below(11);
    let mut m: Mask = 0;
    for p in 0..n {
        if rng.chance(keep, 10) {
            m |= 1 << p;
        }
    }
    while (bitset::len(m) as usize) < k {
        m |= 1 << rng.below(n as u64);
    }
    m
}
