//! Property tests of Contract 1 against exhaustive search, and partition invariants.

mod common;

use common::{brute, build, dgx1, dgx1_cells, Spec, DGX1_NUMA};
use nvtopo_core::bitset::{self, Mask};
use nvtopo_core::partition::partition;
use nvtopo_core::select::{select, select_mask, DEFAULT_BUDGET};
use proptest::prelude::*;

/// GPU count, (nvlinks, PCIe class) per pair, NVLink generation and NUMA key per GPU.
type TopoSpec = (usize, Vec<(u32, u8)>, Vec<u8>, Vec<u32>);

fn topo_strategy() -> impl Strategy<Value = TopoSpec> {
    (2usize..=10).prop_flat_map(|n| {
        let pairs = n * (n - 1) / 2;
        (
            Just(n),
            prop::collection::vec(
                prop_oneof![
                    3 => (Just(0u32), 0u8..6),
                    2 => (1u32..4, Just(4u8)),
                    1 => (Just(12u32), Just(4u8)),
                ],
                pairs,
            ),
            prop::collection::vec(prop_oneof![3 => Just(3u8), 1 => 0u8..6], n),
            prop::collection::vec(0u32..3, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn select_matches_brute_force(
        (n, cells, generations, numa) in topo_strategy(),
        avail_bits in any::<u16>(),
        req_bits in any::<u16>(),
        k_seed in any::<u8>(),
    ) {
        let t = build(n, &cells, &generations, &numa);
        let all = bitset::full(n);
        let mut avail = Mask::from(avail_bits) & all;
        if avail == 0 {
            avail = all;
        }
        let mut req = Mask::from(req_bits) & avail;
        // Keep at most half of the available GPUs required.
        while bitset::len(req) * 2 > bitset::len(avail) {
            req &= req - 1;
        }
        let lo = bitset::len(req).max(1) as usize;
        let hi = bitset::len(avail) as usize;
        let k = lo + (k_seed as usize) % (hi - lo + 1);
        let got = select_mask(&t, k, avail, req, DEFAULT_BUDGET);
        let spec = Spec { n, cells: &cells, generations: &generations, numa: &numa };
        let want = brute(&spec, k, avail, req);
        prop_assert_eq!(bitset::len(got.mask) as usize, k);
        prop_assert_eq!(got.mask & !avail, 0);
        prop_assert_eq!(req & !got.mask, 0);
        prop_assert!(got.optimal);
        prop_assert_eq!(
            (got.mask, got.bottleneck, got.total, got.numa_keys, got.cut),
            want
        );
    }

    #[test]
    fn partition_groups_are_disjoint((n, cells, generations, numa) in topo_strategy(), k in 1usize..6) {
        let t = build(n, &cells, &generations, &numa);
        let groups = partition(&t, k).unwrap();
        prop_assert_eq!(groups.len(), n / k);
        let mut seen = std::collections::HashSet::new();
        for g in &groups {
            prop_assert_eq!(g.len(), k);
            for id in g {
                prop_assert!(seen.insert(*id));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Nodes of 12 to 16 GPUs, mostly NVLink-dense (where the search has the most to
    /// prove), every k, against the oracle.
    #[test]
    fn large_nodes_match_brute_force(
        (n, cells, generations, numa) in (12usize..=16).prop_flat_map(|n| (
            Just(n),
            prop::collection::vec(
                prop_oneof![
                    2 => (Just(0u32), 0u8..5),
                    3 => (1u32..19, Just(4u8)),
                    1 => (Just(6u32), Just(4u8)),
                ],
                n * (n - 1) / 2,
            ),
            prop::collection::vec(prop_oneof![3 => Just(3u8), 1 => 0u8..6], n),
            prop::collection::vec(0u32..3, n),
        )),
        avail_bits in any::<u16>(),
        k_seed in any::<u8>(),
    ) {
        let t = build(n, &cells, &generations, &numa);
        let all = bitset::full(n);
        let avail = if avail_bits & 1 == 0 { all } else { Mask::from(avail_bits | 0xff) & all };
        let k = 1 + (k_seed as usize) % bitset::len(avail) as usize;
        let got = select_mask(&t, k, avail, 0, DEFAULT_BUDGET);
        let spec = Spec { n, cells: &cells, generations: &generations, numa: &numa };
        prop_assert!(got.optimal);
        prop_assert_eq!(
            (got.mask, got.bottleneck, got.total, got.numa_keys, got.cut),
            brute(&spec, k, avail, 0)
        );
    }


    /// Nodes of 11 to 14 GPUs in a few groups, the path of a pair given by the two groups
    /// (two or three values in all, a few pairs overridden), with required GPUs: sets tie
    /// with many others on the bottleneck and the total, and often on NUMA keys and the
    /// cut, so the order of ids decides, whatever order the search branches in.
    #[test]
    fn ties_match_brute_force(
        (n, cells, numa) in (11usize..=14).prop_flat_map(|n| (
            Just(n),
            prop::collection::vec(0usize..3, n),
            prop::collection::vec(0usize..3, 6),
            prop::collection::vec(prop_oneof![9 => Just(None), 1 => (0usize..3).prop_map(Some)], n * (n - 1) / 2),
            prop::collection::vec(0u32..2, n),
        )).prop_map(|(n, group, table, over, numa)| {
            const CELLS: [(u32, u8); 3] = [(2, 4), (0, 1), (0, 2)];
            let mut cells = Vec::new();
            for a in 0..n {
                for b in a + 1..n {
                    let (x, y) = (group[a].min(group[b]), group[a].max(group[b]));
                    let from_groups = table[[0, 1, 2, 1, 3, 4, 2, 4, 5][x * 3 + y]];
                    cells.push(CELLS[over[cells.len()].unwrap_or(from_groups)]);
                }
            }
            (n, cells, numa)
        }),
        avail_bits in any::<u16>(),
        req_bits in any::<u16>(),
        k_seed in any::<u8>(),
    ) {
        let generations = vec![3u8; n];
        let t = build(n, &cells, &generations, &numa);
        let all = bitset::full(n);
        let avail = if avail_bits & 1 == 0 { all } else { Mask::from(avail_bits | 0x3ff) & all };
        let mut req = Mask::from(req_bits) & avail;
        while bitset::len(req) > 2 {
            req &= req - 1;
        }
        let lo = bitset::len(req).max(1) as usize;
        let k = lo + (k_seed as usize) % (bitset::len(avail) as usize - lo + 1);
        let got = select_mask(&t, k, avail, req, DEFAULT_BUDGET);
        let spec = Spec { n, cells: &cells, generations: &generations, numa: &numa };
        prop_assert!(got.optimal);
        prop_assert_eq!(
            (got.mask, got.bottleneck, got.total, got.numa_keys, got.cut),
            brute(&spec, k, avail, req)
        );
    }
}

#[test]
fn dgx1_every_k_and_availability_matches_brute_force() {
    let t = dgx1();
    let cells = dgx1_cells();
    let spec = Spec {
        n: 8,
        cells: &cells,
        generations: &[2; 8],
        numa: &DGX1_NUMA,
    };
    for avail in 1u128..256 {
        for k in 1..=bitset::len(avail) as usize {
            let got = select_mask(&t, k, avail, 0, DEFAULT_BUDGET);
            let want = brute(&spec, k, avail, 0);
            assert_eq!(
                (got.mask, got.bottleneck, got.total, got.numa_keys, got.cut),
                want,
                "avail {avail:#b} k {k}"
            );
        }
    }
}

#[test]
fn dgx1_four_gpus_form_a_quad() {
    let t = dgx1();
    let s = select(&t, 4, None, &[], None).unwrap();
    assert_eq!(s.gpus, vec![0, 1, 2, 3]);
    assert_eq!(s.bottleneck, 1025);
    assert_eq!(s.bottleneck_pair, Some((0, 1)));
    assert_eq!(s.bottleneck_path.as_deref(), Some("NV1"));
    assert_eq!(s.numa_keys, 1);
    assert!(s.optimal);
}

/// Rings of 12 and 16 GPUs (NVLinks to both neighbours only, one NUMA key): every rotation
/// of a set ties on all four measures, and no two GPUs are interchangeable, so only the
/// order of ids picks the answer.
#[test]
fn rotations_tie_and_the_smallest_ids_win() {
    for n in [12, 16] {
        let mut cells = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let ring = b - a == 1 || (a == 0 && b == n - 1);
                cells.push(if ring { (2, 4) } else { (0, 1) });
            }
        }
        let (generations, numa) = (vec![3u8; n], vec![0u32; n]);
        let t = build(n, &cells, &generations, &numa);
        let spec = Spec {
            n,
            cells: &cells,
            generations: &generations,
            numa: &numa,
        };
        let all = bitset::full(n);
        let sets: &[Mask] = if n == 12 {
            &[all, all & !0b100, all & !0b1000_0010]
        } else {
            &[all]
        };
        for k in 1..=n {
            for &avail in sets {
                if (bitset::len(avail) as usize) < k {
                    continue;
                }
                let got = select_mask(&t, k, avail, 0, DEFAULT_BUDGET);
                assert_eq!(
                    (got.mask, got.bottleneck, got.total, got.numa_keys, got.cut),
                    brute(&spec, k, avail, 0),
                    "{n} GPUs, k {k}, available {avail:#x}"
                );
            }
        }
    }
}
