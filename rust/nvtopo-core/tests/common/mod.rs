//! Shared helpers of the integration tests: topology builders and a brute-force oracle.
#![allow(dead_code)]

use nvtopo_core::bitset::{self, Mask};
use nvtopo_core::score::PathClass;
use nvtopo_core::topology::{PairSpec, Topology};

/// Build a topology from an n×n list of (nvlinks, pcie class code) for pairs a < b.
pub fn build(n: usize, cells: &[(u32, u8)], generations: &[u8], numa: &[u32]) -> Topology {
    let mut pairs = Vec::new();
    let mut i = 0;
    for a in 0..n {
        for b in a + 1..n {
            let (nvlinks, class) = cells[i];
            pairs.push(PairSpec {
                a,
                b,
                nvlinks,
                class: PathClass::from_code(class),
            });
            i += 1;
        }
    }
    Topology::new((0..n as i64).collect(), generations, &pairs, numa).unwrap()
}

/// The DGX-1 (V100) hybrid cube mesh: NV1/NV2 links, two NUMA nodes.
pub fn dgx1() -> Topology {
    let links: &[(usize, usize, u32)] = &[
        (0, 1, 1),
        (0, 2, 1),
        (0, 3, 2),
        (0, 4, 2),
        (1, 2, 2),
        (1, 3, 1),
        (1, 5, 2),
        (2, 3, 2),
        (2, 6, 1),
        (3, 7, 1),
        (4, 5, 1),
        (4, 6, 1),
        (4, 7, 2),
        (5, 6, 2),
        (5, 7, 1),
        (6, 7, 2),
    ];
    let mut pairs = Vec::new();
    for a in 0..8usize {
        for b in a + 1..8 {
            let nv = links
                .iter()
                .find(|l| l.0 == a && l.1 == b)
                .map_or(0, |l| l.2);
            let class = if a / 4 == b / 4 {
                PathClass::Node
            } else {
                PathClass::Sys
            };
            pairs.push(PairSpec {
                a,
                b,
                nvlinks: nv,
                class,
            });
        }
    }
    Topology::new((0..8).collect(), &[2; 8], &pairs, &[0, 0, 0, 0, 1, 1, 1, 1]).unwrap()
}

/// Exhaustive Contract 1: (mask, bottleneck, total, numa keys, cut).
pub fn brute(t: &Topology, k: usize, avail: Mask, req: Mask) -> (Mask, u32, u64, u32, u64) {
    let n = t.len();
    let mut best: Option<(Mask, u32, u64, u32, u64)> = None;
    for m in 0..(1u128 << n) {
        if bitset::len(m) as usize != k || m & !avail != 0 || req & !m != 0 {
            continue;
        }
        let bn = t.weakest_pair(m).map_or(0, |w| w.2);
        let tot = t.total(m);
        let nk = t.numa_count(m);
        let cut = t.cut(m, avail & !m);
        let better = match best {
            None => true,
            Some((bm, bb, bt, bk, bc)) => {
                (std::cmp::Reverse(bn), std::cmp::Reverse(tot), nk, cut)
                    < (std::cmp::Reverse(bb), std::cmp::Reverse(bt), bk, bc)
                    || ((bn, tot, nk, cut) == (bb, bt, bk, bc) && lex_less(m, bm))
            }
        };
        if better {
            best = Some((m, bn, tot, nk, cut));
        }
    }
    best.unwrap()
}

/// Sorted-tuple order of two sets of the same size.
pub fn lex_less(x: Mask, y: Mask) -> bool {
    let d = x ^ y;
    d != 0 && x & (d & d.wrapping_neg()) != 0
}
