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
