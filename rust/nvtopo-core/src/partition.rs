//! Optimal partition ids: split a node's GPUs into groups of `k` by taking Contract 1's best
//! `k`-set out of the GPUs not yet grouped, again and again.

use crate::bitset::{self, Mask};
use crate::error::{Error, Result};
use crate::select::{select_mask, DEFAULT_BUDGET};
use crate::topology::Topology;

/// Groups of `k` GPU ids, in the order they were taken; a last group smaller than `k` is
/// left out (so `k` above the GPU count gives no group).
///
/// Cost: ⌊n / k⌋ Contract 1 searches.
pub fn partition(topo: &Topology, k: usize) -> Result<Vec<Vec<i64>>> {
    if k < 1 {
        return Err(Error::Selection(format!(
            "group size must be at least 1, got {k}"
        )));
    }
    let mut left: Mask = topo.all();
    let mut groups = Vec::new();
    while bitset::len(left) as usize >= k {
        let sel = select_mask(topo, k, left, 0, DEFAULT_BUDGET);
        left &= !sel.mask;
        groups.push(sel.gpus);
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{PairPath, PathClass};
    use crate::topology::PairSpec;

    #[test]
    fn groups_are_disjoint_and_follow_nvlink_pairs() {
        // Four GPUs bridged in pairs (0,3) and (1,2); everything else PCIe.
        let pairs = [
            PairSpec {
                a: 0,
                b: 3,
                nvlinks: 4,
                class: PathClass::Sys,
            },
            PairSpec {
                a: 1,
                b: 2,
                nvlinks: 4,
                class: PathClass::Sys,
            },
        ];
        let t = Topology::new(vec![0, 1, 2, 3], &[3; 4], &pairs, &[0; 4]).unwrap();
        assert_eq!(partition(&t, 2).unwrap(), vec![vec![0, 3], vec![1, 2]]);
        assert_eq!(partition(&t, 3).unwrap().len(), 1);
        assert!(partition(&t, 5).unwrap().is_empty());
        assert!(partition(&t, 0).is_err());
    }

    #[test]
    fn uniform_node_splits_in_order() {
        let nv = PairPath {
            nvlinks: 18,
            class: PathClass::Sys,
        };
        let t = Topology::uniform(8, nv, 4, &[0, 0, 0, 0, 1, 1, 1, 1]).unwrap();
        assert_eq!(
            partition(&t, 4).unwrap(),
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
        );
    }
}
