//! Phase 2 seen from the GPUs left out. When most candidates will be taken (d = |p| − r
//! well below r), the search chooses the d GPUs to drop rather than the r to keep: every
//! branch ends d levels down instead of r, and the bound from the GPUs left out, tight in
//! this regime, judges each node.
//!
//! A node holds the GPUs kept so far, the undecided candidates and the drops left. Its
//! children, cheapest to drop first, drop one candidate and keep the ones before it.
//! Candidates not adjacent to a kept GPU, or that no better set can keep, are dropped at
//! once. Of interchangeable GPUs the higher ids are dropped first, which keeps the smaller
//! sorted tuple among equals.

use super::{best_first, BranchAndBound, Search};
use crate::bitset::{self, Mask, MAX_GPUS};

/// The running measures of the GPUs kept so far.
#[derive(Clone, Copy)]
pub(super) struct Kept {
    /// The GPUs kept (the required and chosen ones included).
    pub mask: Mask,
    /// Their total pair score.
    pub total: u64,
    /// GPUs of the NUMA keys they use, and how many keys that is.
    pub cover: Mask,
    pub nkeys: u32,
    /// Σ of their degrees to the available GPUs.
    pub degsum: u64,
    /// GPUs adjacent (in the bottleneck graph) to every kept GPU.
    pub allowed: Mask,
}

impl BranchAndBound<'_> {
    /// Keep `kept` and all of `cand` but `d` GPUs, the best way. `self.gain[v]` holds v's
    /// scores to the kept GPUs for every candidate v, and is as it was on return.
    pub(super) fn drop_search(&mut self, s: &mut Search, kept: Kept, cand: Mask, d: u32) {
        if !s.tick() {
            return;
        }
        let saved = self.gain;
        self.drop_node(s, kept, cand, d);
        self.gain = saved;
    }

    fn drop_node(&mut self, s: &mut Search, mut kept: Kept, mut cand: Mask, mut d: u32) {
        let topo = self.topo;
        // Value of keeping each candidate, doubled: the cheapest to drop come first.
        let mut dr = [0u64; MAX_GPUS];
        let mut value = [0u64; MAX_GPUS];
        let mut order = [0u8; MAX_GPUS];
        let mut count = 0;
        for v in bitset::iter(cand) {
            dr[v] = topo.cut(1 << v, cand & !(1 << v));
            value[v] = 2 * self.gain[v] + dr[v];
            order[count] = v as u8;
            count += 1;
        }
        best_first(&mut order[..count], &value);
        order[..count].reverse();
        let mut next = 0;
        loop {
            if s.check_time() {
                return;
            }
            // Candidates that cannot stay: not adjacent to a kept GPU, or kept by no set
            // of this branch that beats the incumbent.
            let mut gone = cand & !kept.allowed;
            if gone == 0 && d > 0 && self.best.is_some() && bitset::len(cand) > d {
                let keep = bitset::len(cand) - d;
                let floor = self.best.map_or(0, |b| b.total);
                let (ub, never) = self.complement_bound(cand, keep, kept.total, &dr, floor);
                if self.prune(
                    kept.mask,
                    cand,
                    keep,
                    ub,
                    kept.cover,
                    kept.nkeys,
                    kept.degsum,
                ) {
                    return;
                }
                gone = never;
            }
            if gone != 0 {
                if bitset::len(gone) > d {
                    return;
                }
                d -= bitset::len(gone);
                cand &= !gone;
                for u in bitset::iter(cand) {
                    dr[u] -= topo.cut(1 << u, gone);
                }
                continue;
            }
            if d == 0 || bitset::len(cand) == d {
                // Nothing left to choose: keep every candidate, or drop every one.
                let mask = if d == 0 { cand } else { 0 };
                self.keep_all(kept, mask);
                return;
            }
            while cand & (1 << order[next]) == 0 {
                next += 1;
            }
            let c = order[next] as usize;
            next += 1;
            // Of interchangeable GPUs, drop a lower id only when no higher one is kept.
            let higher = !(((2 as Mask) << c).wrapping_sub(1));
            if topo.mates(c) & kept.mask & higher == 0 {
                self.drop_search(s, kept, cand & !(1 << c), d - 1);
                if s.exhausted {
                    return;
                }
            }
            // The later siblings keep c.
            cand &= !(1 << c);
            let row = topo.row(c);
            for u in bitset::iter(cand) {
                self.gain[u] += u64::from(row[u]);
                dr[u] -= u64::from(row[u]);
            }
            kept = self.with(kept, c);
        }
    }

    /// `kept` with GPU `c` added (its gain already counts the kept GPUs).
    fn with(&self, kept: Kept, c: usize) -> Kept {
        let (cover, nkeys) = self.with_key(kept.cover, kept.nkeys, c);
        Kept {
            mask: kept.mask | (1 << c),
            total: kept.total + self.gain[c],
            cover,
            nkeys,
            degsum: kept.degsum + self.deg[c],
            allowed: kept.allowed & self.adj[c],
        }
    }

    /// The leaf that keeps `kept` and all of `rest`, if its GPUs are pairwise adjacent.
    fn keep_all(&mut self, kept: Kept, rest: Mask) {
        let mut kept = kept;
        let mut left = rest;
        while left != 0 {
            let c = left.trailing_zeros() as usize;
            left &= left - 1;
            if kept.allowed & (1 << c) == 0 {
                return;
            }
            let row = self.topo.row(c);
            for u in bitset::iter(left) {
                self.gain[u] += u64::from(row[u]);
            }
            kept = self.with(kept, c);
        }
        let numa = kept.nkeys;
        self.leaf(kept.mask, kept.total, numa, kept.degsum);
    }
}
