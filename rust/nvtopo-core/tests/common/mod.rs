//! Shared helpers of the integration tests: topology builders and a brute-force oracle.
#![allow(dead_code)]

use nvtopo_core::bitset::Mask;
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

/// The DGX-1 (V100) hybrid cube mesh as (nvlinks, class code) cells: NV1/NV2 links,
/// NODE inside a CPU's four GPUs, SYS across.
pub fn dgx1_cells() -> Vec<(u32, u8)> {
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
    let mut cells = Vec::new();
    for a in 0..8usize {
        for b in a + 1..8 {
            let nv = links
                .iter()
                .find(|l| l.0 == a && l.1 == b)
                .map_or(0, |l| l.2);
            cells.push((nv, if a / 4 == b / 4 { 3 } else { 4 }));
        }
    }
    cells
}

pub const DGX1_NUMA: [u32; 8] = [0, 0, 0, 0, 1, 1, 1, 1];

/// The DGX-1 in the core.
pub fn dgx1() -> Topology {
    build(8, &dgx1_cells(), &[2; 8], &DGX1_NUMA)
}

/// A node as the contract text describes it, for the oracle: NVLinks and PCIe class code
/// per pair (a < b, row by row), NVLink generation and NUMA key per GPU.
pub struct Spec<'a> {
    pub n: usize,
    pub cells: &'a [(u32, u8)],
    pub generations: &'a [u8],
    pub numa: &'a [u32],
}

/// Contract 1's pair score, written from DESIGN's text alone (no core code): with working
/// NVLinks `1000 + nvlinks × GB/s per link` (NVLink 1: 20; 2, 3, 4: 25; 5: 50; unknown:
/// 25), else PIX 50, PXB 40, PHB 30, NODE 20, SYS 10. A pair's generation is the lower
/// GPU's, or the higher one's when the lower one's is unknown.
pub fn oracle_score(spec: &Spec, a: usize, b: usize) -> u64 {
    let (a, b) = (a.min(b), a.max(b));
    // cell index of (a, b), pairs listed row by row
    let idx = a * spec.n - a * (a + 1) / 2 + (b - a - 1);
    let (nvlinks, class) = spec.cells[idx];
    if nvlinks > 0 {
        let gen = if spec.generations[a] != 0 {
            spec.generations[a]
        } else {
            spec.generations[b]
        };
        let per_link = match gen {
            1 => 20,
            2 => 25,
            3 => 25,
            4 => 25,
            5 => 50,
            _ => 25,
        };
        1000 + u64::from(nvlinks) * per_link
    } else {
        match class {
            0 => 50,
            1 => 40,
            2 => 30,
            3 => 20,
            _ => 10,
        }
    }
}

/// Exhaustive Contract 1 from the contract text: (mask, bottleneck, total, numa keys, cut)
/// of the best k-set of `avail` containing `req`, every set compared by every rule.
pub fn brute(spec: &Spec, k: usize, avail: Mask, req: Mask) -> (Mask, u32, u64, u32, u64) {
    let n = spec.n;
    let members = |m: Mask| (0..n).filter(move |&p| m >> p & 1 == 1);
    let mut best: Option<(Mask, u32, u64, u32, u64)> = None;
    for m in 0..(1u128 << n) {
        if m.count_ones() as usize != k || m & !avail != 0 || req & !m != 0 {
            continue;
        }
        let mut bottleneck = u64::MAX;
        let mut total = 0u64;
        for a in members(m) {
            for b in members(m).filter(|&b| b > a) {
                let s = oracle_score(spec, a, b);
                bottleneck = bottleneck.min(s);
                total += s;
            }
        }
        if k == 1 {
            bottleneck = 0;
        }
        let mut keys: Vec<u32> = members(m).map(|p| spec.numa[p]).collect();
        keys.sort_unstable();
        keys.dedup();
        let cut: u64 = members(m)
            .flat_map(|a| members(avail & !m).map(move |b| (a, b)))
            .map(|(a, b)| oracle_score(spec, a, b))
            .sum();
        let cand = (m, bottleneck as u32, total, keys.len() as u32, cut);
        let better = match best {
            None => true,
            Some((bm, bb, bt, bk, bc)) => {
                let (x, y) = (
                    (
                        std::cmp::Reverse(cand.1),
                        std::cmp::Reverse(total),
                        cand.3,
                        cut,
                    ),
                    (std::cmp::Reverse(bb), std::cmp::Reverse(bt), bk, bc),
                );
                x < y || (x == y && lex_less(m, bm))
            }
        };
        if better {
            best = Some(cand);
        }
    }
    best.unwrap()
}

/// Sorted-tuple order of two sets of the same size.
pub fn lex_less(x: Mask, y: Mask) -> bool {
    let d = x ^ y;
    d != 0 && x & (d & d.wrapping_neg()) != 0
}
