//! What the benchmarks share: the exhaustive search the core's search is measured against.

use nvtopo_core::bitset::{self, Mask};
use nvtopo_core::topology::Topology;

/// Exhaustive Contract 1 (every k-subset of `avail`, compared by every rule): the
/// baseline the search is measured against in the same run.
pub fn brute(t: &Topology, k: usize, avail: Mask) -> Mask {
    let mut best: Option<(u32, u64, u32, u64, Mask)> = None;
    for m in 0..(1u128 << t.len()) {
        if bitset::len(m) as usize != k || m & !avail != 0 {
            continue;
        }
        let bn = t.weakest_pair(m).map_or(0, |w| w.2);
        let key = (
            u32::MAX - bn,
            u64::MAX - t.total(m),
            t.numa_count(m),
            t.cut(m, avail & !m),
            // Smaller sorted tuples have larger reversed masks.
            !m.reverse_bits(),
        );
        if best.is_none_or(|b| key < b) {
            best = Some(key);
        }
    }
    best.map_or(0, |b| (!b.4).reverse_bits())
}
