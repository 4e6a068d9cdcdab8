//! Phase 2 of Contract 1: branch and bound inside the bottleneck graph.
//!
//! GPUs are picked in increasing index order, so sets are met in lexicographic order and
//! the first of equally good sets is kept. A branch is cut when its optimistic bound is no
//! better than the incumbent (equal counts as no better, since the incumbent came first).
//! Before the first set is met, a seed (the better of phase 1's witness and a greedy set)
//! cuts branches that are strictly worse than it.

use super::Search;
use crate::bitset::{self, Mask, MAX_GPUS};
use crate::topology::Topology;

#[derive(Clone, Copy)]
struct Best {
    mask: Mask,
    total: u64,
    numa: u32,
    cut: u64,
}

/// Phase 2 state: per-query degrees (to the available GPUs) and the running gains.
pub(super) struct BranchAndBound<'t> {
    topo: &'t Topology,
    adj: &'t [Mask],
    avail: Mask,
    max_key: u32,
    deg: [u64; MAX_GPUS],
    gain: [u64; MAX_GPUS],
    /// Available positions by ascending degree.
    deg_order: [u8; MAX_GPUS],
    deg_count: usize,
    best: Option<Best>,
    /// A known feasible set: branches strictly worse than it are cut before the search
    /// meets a first set of its own (ties are not cut, so the lexicographic rule holds).
    seed: Option<Best>,
    /// An upper bound on the total of any set of this graph, taken at the root.
    pub(super) root_bound: u64,
}

impl<'t> BranchAndBound<'t> {
    pub(super) fn new(topo: &'t Topology, adj: &'t [Mask], avail: Mask) -> Self {
        let mut bb = BranchAndBound {
            topo,
            adj,
            avail,
            max_key: topo.max_key_size().max(1),
            deg: [0; MAX_GPUS],
            gain: [0; MAX_GPUS],
            deg_order: [0; MAX_GPUS],
            deg_count: 0,
            best: None,
            seed: None,
            root_bound: u64::MAX,
        };
        for v in bitset::iter(avail) {
            bb.deg[v] = bitset::iter(avail & !(1 << v))
                .map(|u| u64::from(topo.score(v, u)))
                .sum();
            bb.deg_order[bb.deg_count] = v as u8;
            bb.deg_count += 1;
        }
        let deg = bb.deg;
        bb.deg_order[..bb.deg_count].sort_unstable_by_key(|&v| deg[v as usize]);
        bb
    }

    pub(super) fn run(
        &mut self,
        s: &mut Search,
        k: usize,
        req: Mask,
        seed: Option<Mask>,
    ) -> Option<Mask> {
        let topo = self.topo;
        let avail_rest = {
            let mut c = Mask::MAX;
            for r in bitset::iter(req) {
                c &= self.adj[r];
            }
            c
        };
        // Candidates: every available GPU adjacent to all required ones.
        let p = self.avail & !req & avail_rest;
        let mut cover: Mask = 0;
        let mut nkeys = 0;
        let mut degsum = 0;
        for r in bitset::iter(req) {
            if cover & (1 << r) == 0 {
                cover |= topo.key_gpus(topo.numa_key(r));
                nkeys += 1;
            }
            degsum += self.deg[r];
        }
        for u in bitset::iter(p) {
            self.gain[u] = bitset::iter(req).map(|r| u64::from(topo.score(r, u))).sum();
        }
        let r = (k - bitset::len(req) as usize) as u32;
        // Seed: the better of the caller's set and a greedy one (most gain first).
        let measure = |m: Mask| {
            let total = topo.total(m);
            let degsum: u64 = bitset::iter(m).map(|v| self.deg[v]).sum();
            Best {
                mask: m,
                total,
                numa: topo.numa_count(m),
                cut: degsum - 2 * total,
            }
        };
        let greedy = self.greedy(req, p, r);
        let seeds = [seed, greedy.map(|g| self.improve(s, req, p, g))];
        self.seed =
            seeds
                .into_iter()
                .flatten()
                .map(measure)
                .reduce(|a, b| if worse(&b, &a) { a } else { b });
        let root_total = topo.total(req);
        self.dfs(s, req, p, r, root_total, cover, nkeys, degsum);
        if s.exhausted {
            // Only a search cut short reports a gap (the gains are back at the root).
            self.root_bound = self.bound(p, r, root_total);
        }
        // A finished search always ends with best at least as good as the seed; one cut
        // short by its budget returns the better of the two.
        match (self.best, self.seed) {
            (Some(b), Some(sd)) if worse(&b, &sd) => Some(sd.mask),
            (Some(b), _) => Some(b.mask),
            (None, sd) => sd.map(|x| x.mask),
        }
    }

    /// Grow `req` by the candidate adding the most, `r` times (None if the graph runs dry).
    fn greedy(&self, req: Mask, mut cand: Mask, r: u32) -> Option<Mask> {
        let topo = self.topo;
        let mut gain = self.gain;
        let mut chosen = req;
        for _ in 0..r {
            let v = bitset::iter(cand).max_by_key(|&v| (gain[v], std::cmp::Reverse(v)))?;
            chosen |= 1 << v;
            cand &= self.adj[v] & !(1 << v);
            for u in bitset::iter(cand) {
                gain[u] += u64::from(topo.score(v, u));
            }
        }
        Some(chosen)
    }

    /// Better a set by swaps: one GPU out, one candidate in (keeping every pair in the
    /// graph), the swap that adds the most total first, until none adds any.
    fn improve(&self, s: &mut Search, req: Mask, p: Mask, mut set: Mask) -> Mask {
        let topo = self.topo;
        for _ in 0..MAX_GPUS {
            if s.check_time() {
                break;
            }
            let mut to: [u64; MAX_GPUS] = [0; MAX_GPUS];
            for w in bitset::iter(p) {
                to[w] = bitset::iter(set & !(1 << w))
                    .map(|x| u64::from(topo.score(w, x)))
                    .sum();
            }
            let mut best: Option<(u64, usize, usize)> = None;
            for u in bitset::iter(set & !req) {
                let keep = set & !(1 << u);
                for w in bitset::iter(p & !set) {
                    if self.adj[w] & keep != keep {
                        continue;
                    }
                    let add = to[w] - u64::from(topo.score(w, u));
                    if add > to[u] && best.is_none_or(|b| add - to[u] > b.0) {
                        best = Some((add - to[u], u, w));
                    }
                }
            }
            match best {
                Some((_, u, w)) => set = (set & !(1 << u)) | (1 << w),
                None => break,
            }
        }
        set
    }

    #[allow(clippy::too_many_arguments)]
    fn dfs(
        &mut self,
        s: &mut Search,
        chosen: Mask,
        p: Mask,
        r: u32,
        total: u64,
        cover: Mask,
        nkeys: u32,
        degsum: u64,
    ) {
        if r == 0 {
            self.leaf(chosen, total, nkeys, degsum);
            return;
        }
        if !s.tick() {
            return;
        }
        let topo = self.topo;
        // Optimistic worth (doubled) of each candidate: its scores to the chosen GPUs plus
        // its r−1 best partners among the candidates. Computed once per node, it stays an
        // upper bound for every later sibling, whose candidates are a subset.
        // Sorted best first, the top r of any sibling's candidates is one scan.
        let mut worth = [0u64; MAX_GPUS];
        let mut order = [0u8; MAX_GPUS];
        let mut count = 0;
        let mut rest = p;
        // deg inside `dr_set` of each of its GPUs, kept up to date as `rest` shrinks.
        let mut dr = [0u64; MAX_GPUS];
        let mut dr_ready = false;
        let mut dr_set: Mask = 0;
        while bitset::len(rest) >= r {
            if s.check_time() {
                return;
            }
            if self.best.is_some() || self.seed.is_some() {
                if count == 0 {
                    let j = (r - 1) as usize;
                    for v in bitset::iter(p) {
                        worth[v] = 2 * self.gain[v] + topo.best_partners(v, p & self.adj[v], j);
                        order[count] = v as u8;
                        count += 1;
                    }
                    order[..count]
                        .sort_unstable_by(|a, b| worth[*b as usize].cmp(&worth[*a as usize]));
                }
                let mut ub = total + top_sum(&order[..count], rest, r, &worth) / 2;
                if self.prune(rest, r, ub, cover, nkeys, degsum) {
                    break;
                }
                if bitset::len(rest) <= 2 * r {
                    if !dr_ready {
                        for u in bitset::iter(rest) {
                            dr[u] = bitset::iter(rest & !(1 << u))
                                .map(|x| u64::from(topo.score(u, x)))
                                .sum();
                        }
                        dr_ready = true;
                        dr_set = rest;
                    } else if dr_set != rest {
                        let gone = dr_set & !rest;
                        for u in bitset::iter(rest) {
                            for x in bitset::iter(gone) {
                                dr[u] -= u64::from(topo.score(u, x));
                            }
                        }
                        dr_set = rest;
                    }
                    ub = ub.min(self.complement_bound(rest, r, total, &dr));
                    if self.prune(rest, r, ub, cover, nkeys, degsum) {
                        break;
                    }
                }
            }
            let v = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let np = rest & self.adj[v];
            // A set without v but with a later GPU interchangeable with v is matched by
            // the same set with v instead: as good, and smaller in order, so met first.
            rest &= !topo.mates(v);
            if bitset::len(np) + 1 < r {
                continue;
            }
            let (ncover, nk) = if cover & (1 << v) != 0 {
                (cover, nkeys)
            } else {
                (cover | topo.key_gpus(topo.numa_key(v)), nkeys + 1)
            };
            let gv = self.gain[v];
            if r == 1 {
                self.leaf(chosen | (1 << v), total + gv, nk, degsum + self.deg[v]);
                continue;
            }
            for u in bitset::iter(np) {
                self.gain[u] += u64::from(topo.score(v, u));
            }
            self.dfs(
                s,
                chosen | (1 << v),
                np,
                r - 1,
                total + gv,
                ncover,
                nk,
                degsum + self.deg[v],
            );
            for u in bitset::iter(np) {
                self.gain[u] -= u64::from(topo.score(v, u));
            }
            if s.exhausted {
                return;
            }
        }
    }

    /// An upper bound on the total of `r` more picks from `p` (with `total` so far).
    fn bound(&self, p: Mask, r: u32, total: u64) -> u64 {
        if r == 0 {
            return total;
        }
        let j = (r - 1) as usize;
        let mut worth: Vec<u64> = bitset::iter(p)
            .map(|v| 2 * self.gain[v] + self.topo.best_partners(v, p & self.adj[v], j))
            .collect();
        worth.sort_unstable_by(|a, b| b.cmp(a));
        let forward = total + worth.iter().take(r as usize).sum::<u64>() / 2;
        if bitset::len(p) < r {
            return forward;
        }
        let mut dr = [0u64; MAX_GPUS];
        for v in bitset::iter(p) {
            dr[v] = bitset::iter(p & !(1 << v))
                .map(|u| u64::from(self.topo.score(v, u)))
                .sum();
        }
        forward.min(self.complement_bound(p, r, total, &dr))
    }

    /// The bound seen from the GPUs left out: picking r of `rest` drops d = |rest| − r.
    /// With G = Σ gain and T = total(rest), a kept set scores
    /// G + T − Σ_{v∈D} (gain(v) + deg_rest(v)) + total(D), and total(D) is at most half
    /// of Σ_{v∈D} (v's d − 1 best scores inside rest); so the d smallest of
    /// `2·gain + 2·deg_rest − best(d − 1)` bound what any D must give up. Tight when few
    /// GPUs are left out, where the forward bound is loosest.
    fn complement_bound(&self, rest: Mask, r: u32, total: u64, dr: &[u64; MAX_GPUS]) -> u64 {
        let topo = self.topo;
        let d = (bitset::len(rest) - r) as usize;
        let mut lose = [0u64; MAX_GPUS];
        let mut count = 0;
        let mut sum2 = 0u64; // 2·G + 2·T
        for v in bitset::iter(rest) {
            let others = rest & !(1 << v);
            let deg = dr[v];
            let best = if d > 1 {
                topo.best_partners(v, others, d - 1)
            } else {
                0
            };
            sum2 += 2 * self.gain[v] + deg;
            lose[count] = 2 * self.gain[v] + 2 * deg - best;
            count += 1;
        }
        let lose = &mut lose[..count];
        if d < count {
            lose.select_nth_unstable(d);
        }
        let given_up: u64 = lose[..d].iter().sum();
        total + sum2.saturating_sub(given_up) / 2
    }

    #[inline]
    fn leaf(&mut self, mask: Mask, total: u64, numa: u32, degsum: u64) {
        let cut = degsum - 2 * total;
        let better = match &self.best {
            None => true,
            Some(b) => {
                total > b.total
                    || (total == b.total && (numa < b.numa || (numa == b.numa && cut < b.cut)))
            }
        };
        if better {
            let found = Best {
                mask,
                total,
                numa,
                cut,
            };
            if self.seed.is_some_and(|sd| !worse(&found, &sd)) {
                self.seed = None;
            }
            self.best = Some(found);
        }
    }

    /// True when no set of this branch (r more picks from `p`, total at most `ub`) can beat
    /// the incumbent (or is strictly worse than the seed).
    fn prune(&mut self, p: Mask, r: u32, ub: u64, cover: Mask, nkeys: u32, degsum: u64) -> bool {
        let in_cover = bitset::len(p & cover);
        let numa_lb = if in_cover >= r {
            nkeys
        } else {
            nkeys + (r - in_cover).div_ceil(self.max_key)
        };
        let low = || top_sum(&self.deg_order[..self.deg_count], p, r, &self.deg);
        // For sets as good in total as `b`, cut = Σ deg − 2·total ≥ this.
        let cut_lb =
            |b: &Best, low: u64| i128::from(degsum) + i128::from(low) - 2 * i128::from(b.total);
        if let Some(b) = self.best {
            if ub != b.total {
                return ub < b.total;
            }
            if numa_lb != b.numa {
                return numa_lb > b.numa;
            }
            return cut_lb(&b, low()) >= i128::from(b.cut);
        }
        if let Some(sd) = self.seed {
            if ub != sd.total {
                return ub < sd.total;
            }
            if numa_lb != sd.numa {
                return numa_lb > sd.numa;
            }
            return cut_lb(&sd, low()) > i128::from(sd.cut);
        }
        false
    }
}

/// Whether `a` is worse than `b` in total, then NUMA keys, then cut.
fn worse(a: &Best, b: &Best) -> bool {
    (std::cmp::Reverse(a.total), a.numa, a.cut) > (std::cmp::Reverse(b.total), b.numa, b.cut)
}

/// Σ `value` over the first `r` positions of `order` that lie in `within`.
#[inline]
fn top_sum(order: &[u8], within: Mask, r: u32, value: &[u64; MAX_GPUS]) -> u64 {
    let mut left = r;
    let mut sum = 0;
    for &v in order {
        if left == 0 {
            break;
        }
        if within & (1 << v) != 0 {
            sum += value[v as usize];
            left -= 1;
        }
    }
    sum
}
