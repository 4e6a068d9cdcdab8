//! Phase 2 of Contract 1: branch and bound inside the bottleneck graph.
//!
//! The incumbent starts as a seed (the better of phase 1's witness and a greedy set bettered
//! by swaps). At each node the candidates are ranked by their optimistic worth and branched
//! on best first, so good sets come early and the later siblings, which lack the best GPUs,
//! are cut soon. Since sets are not met in id order, ties are settled explicitly: a set
//! replaces the incumbent only when it is better by total, NUMA keys, cut, or, equal on
//! all three, smaller in sorted-tuple order; a branch is cut when its bounds on the first
//! three are no better and even its smallest set in that order (the chosen GPUs and the
//! lowest candidates) does not come first. Candidates that no better set can hold are
//! dropped as the bounds find them, which tightens every bound below.

mod drop;

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
    /// The best set known so far (a seed before the search meets its own sets).
    best: Option<Best>,
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
            root_bound: u64::MAX,
        };
        for v in bitset::iter(avail) {
            bb.deg[v] = topo.cut(1 << v, avail & !(1 << v));
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
            (cover, nkeys) = self.with_key(cover, nkeys, r);
            degsum += self.deg[r];
        }
        for u in bitset::iter(p) {
            self.gain[u] = topo.cut(1 << u, req);
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
        self.best =
            seeds
                .into_iter()
                .flatten()
                .map(measure)
                .reduce(|a, b| if better(&b, &a) { b } else { a });
        let root_total = topo.total(req);
        self.dfs(s, req, p, r, root_total, cover, nkeys, degsum);
        if s.exhausted {
            // Only a search cut short reports a gap (the gains are back at the root).
            self.root_bound = self.bound(p, r, root_total);
        }
        self.best.map(|b| b.mask)
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
        // its r−1 best partners among the candidates. It stays an upper bound for every
        // later sibling, whose candidates are a subset. Candidates are branched on best
        // first, so good sets come early and the later siblings, which lack the best
        // GPUs, are cut soon.
        let mut worth = [0u64; MAX_GPUS];
        let mut order = [0u8; MAX_GPUS];
        let mut count;
        let mut p = p;
        let j = (r - 1) as usize;
        loop {
            count = 0;
            for v in bitset::iter(p) {
                worth[v] = 2 * self.gain[v] + topo.best_partners(v, p & self.adj[v], j);
                order[count] = v as u8;
                count += 1;
            }
            if count < r as usize {
                return;
            }
            best_first(&mut order[..count], &worth);
            // Drop candidates that no set of this branch can hold: the best completion
            // holding v scores at most total + (worth(v) + the r−1 best other worths)/2,
            // and one below the incumbent's total cannot win. Fewer candidates lower every
            // worth; repeat while that removes GPUs.
            let Some(floor) = self.best.map(|b| b.total) else {
                break;
            };
            let top: u64 = order[..j].iter().map(|&v| worth[v as usize]).sum();
            let mut drop: Mask = 0;
            for &v in order[j..count].iter().rev() {
                if total + (worth[v as usize] + top) / 2 >= floor {
                    break;
                }
                drop |= 1 << v;
            }
            if drop == 0 {
                break;
            }
            p &= !drop;
        }
        let d = bitset::len(p) - r;
        if 2 * d < r {
            // Most candidates stay: choose the few to leave out instead.
            let kept = drop::Kept {
                mask: chosen,
                total,
                cover,
                nkeys,
                degsum,
                allowed: Mask::MAX,
            };
            self.drop_search(s, kept, p, d);
            return;
        }
        let mut rest = p;
        let mut next = 0;
        // deg inside `dr_set` of each of its GPUs, kept up to date as `rest` shrinks.
        let mut dr = [0u64; MAX_GPUS];
        let mut dr_ready = false;
        let mut dr_set: Mask = 0;
        while bitset::len(rest) >= r {
            if s.check_time() {
                return;
            }
            if self.best.is_some() {
                let mut ub = total + top_sum(&order[next..count], rest, r, &worth) / 2;
                if self.prune(chosen, rest, r, ub, cover, nkeys, degsum) {
                    break;
                }
                if bitset::len(rest) <= 2 * r {
                    if !dr_ready {
                        for u in bitset::iter(rest) {
                            dr[u] = topo.cut(1 << u, rest & !(1 << u));
                        }
                        dr_ready = true;
                        dr_set = rest;
                    } else if dr_set != rest {
                        let gone = dr_set & !rest;
                        for u in bitset::iter(rest) {
                            dr[u] -= topo.cut(1 << u, gone);
                        }
                        dr_set = rest;
                    }
                    let floor = self.best.map_or(0, |b| b.total);
                    let (cub, never) = self.complement_bound(rest, r, total, &dr, floor);
                    ub = ub.min(cub);
                    if self.prune(chosen, rest, r, ub, cover, nkeys, degsum) {
                        break;
                    }
                    if never != 0 {
                        // These GPUs are in no set of this branch that beats the incumbent.
                        rest &= !never;
                        continue;
                    }
                }
            }
            // The next candidate still in `rest`, in best-first order.
            while rest & (1 << order[next]) == 0 {
                next += 1;
            }
            let v = order[next] as usize;
            next += 1;
            rest &= !(1 << v);
            let np = rest & self.adj[v];
            // A set without v but with a GPU interchangeable with v (ordered after v: equal
            // worth, higher id) is matched by the same set with v instead, as good and
            // smaller in order, which v's branch holds.
            rest &= !topo.mates(v);
            if bitset::len(np) + 1 < r {
                continue;
            }
            let (ncover, nk) = self.with_key(cover, nkeys, v);
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

    /// The NUMA keys used (`cover`: their GPUs; `nkeys`: how many) once GPU `v` is taken.
    #[inline]
    fn with_key(&self, cover: Mask, nkeys: u32, v: usize) -> (Mask, u32) {
        if cover & (1 << v) != 0 {
            (cover, nkeys)
        } else {
            (cover | self.topo.key_gpus(self.topo.numa_key(v)), nkeys + 1)
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
            dr[v] = self.topo.cut(1 << v, p & !(1 << v));
        }
        forward.min(self.complement_bound(p, r, total, &dr, 0).0)
    }

    /// The bound seen from the GPUs left out: picking r of `rest` drops d = |rest| − r.
    /// With G = Σ gain and T = total(rest), a kept set scores
    /// G + T − Σ_{v∈D} (gain(v) + deg_rest(v)) + total(D), and total(D) is at most half
    /// of Σ_{v∈D} (v's d − 1 best scores inside rest); so the d smallest of
    /// `lose(v) = 2·gain + 2·deg_rest − best(d − 1)` bound what any D must give up. Tight
    /// when few GPUs are left out, where the forward bound is loosest.
    ///
    /// Also returns the GPUs no set above `floor` can keep: keeping v, one of the d
    /// cheapest to drop, makes the (d+1)-th cheapest take its place in D.
    fn complement_bound(
        &self,
        rest: Mask,
        r: u32,
        total: u64,
        dr: &[u64; MAX_GPUS],
        floor: u64,
    ) -> (u64, Mask) {
        let topo = self.topo;
        let d = (bitset::len(rest) - r) as usize;
        let mut lose = [0u64; MAX_GPUS];
        let mut order = [0u8; MAX_GPUS];
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
            lose[v] = 2 * self.gain[v] + 2 * deg - best;
            order[count] = v as u8;
            count += 1;
        }
        // The d + 1 cheapest to drop, cheapest first.
        let held = cheapest(&mut order[..count], &lose, d + 1);
        let order = &order[..held];
        let given_up: u64 = order[..d.min(held)].iter().map(|&v| lose[v as usize]).sum();
        let ub = total + sum2.saturating_sub(given_up) / 2;
        let mut never: Mask = 0;
        if d < held {
            let next = lose[order[d] as usize];
            for &v in &order[..d] {
                let kept = total + (sum2 + lose[v as usize]).saturating_sub(given_up + next) / 2;
                if kept >= floor {
                    break;
                }
                never |= 1 << v;
            }
        }
        (ub, never)
    }

    #[inline]
    fn leaf(&mut self, mask: Mask, total: u64, numa: u32, degsum: u64) {
        let found = Best {
            mask,
            total,
            numa,
            cut: degsum - 2 * total,
        };
        if self.best.is_none_or(|b| better(&found, &b)) {
            self.best = Some(found);
        }
    }

    /// True when no set of this branch (`chosen` and r more picks from `p`, total at most
    /// `ub`) can beat the incumbent: compared by total, then NUMA keys, then cut, each by
    /// its bound, then by the smallest set in order the branch holds.
    #[allow(clippy::too_many_arguments)]
    fn prune(
        &self,
        chosen: Mask,
        p: Mask,
        r: u32,
        ub: u64,
        cover: Mask,
        nkeys: u32,
        degsum: u64,
    ) -> bool {
        let Some(b) = self.best else {
            return false;
        };
        if ub != b.total {
            return ub < b.total;
        }
        let in_cover = bitset::len(p & cover);
        let numa_lb = if in_cover >= r {
            nkeys
        } else {
            nkeys + (r - in_cover).div_ceil(self.max_key)
        };
        if numa_lb != b.numa {
            return numa_lb > b.numa;
        }
        // For sets as good in total as `b`, cut = Σ deg − 2·total ≥ this.
        let low = top_sum(&self.deg_order[..self.deg_count], p, r, &self.deg);
        let cut_lb = i128::from(degsum) + i128::from(low) - 2 * i128::from(b.total);
        if cut_lb != i128::from(b.cut) {
            return cut_lb > i128::from(b.cut);
        }
        // The branch's smallest set in order: the chosen GPUs and the r lowest candidates.
        !bitset::precedes(chosen | bitset::lowest(p, r as usize), b.mask)
    }
}

/// Whether `a` beats `b` under Contract 1 past the bottleneck: higher total, then fewer
/// NUMA keys, then smaller cut, then the smaller sorted tuple of GPU ids.
fn better(a: &Best, b: &Best) -> bool {
    (std::cmp::Reverse(a.total), a.numa, a.cut) < (std::cmp::Reverse(b.total), b.numa, b.cut)
        || ((a.total, a.numa, a.cut) == (b.total, b.numa, b.cut)
            && bitset::precedes(a.mask, b.mask))
}

/// Move the `m` positions of `order` with the smallest `value` to its front, smallest
/// first; returns how many there are (m, or fewer if `order` is shorter).
fn cheapest(order: &mut [u8], value: &[u64; MAX_GPUS], m: usize) -> usize {
    let m = m.min(order.len());
    for i in 0..order.len() {
        let v = order[i];
        let x = value[v as usize];
        let mut at = i.min(m);
        if at == m {
            // Kept only if it beats the largest of the m held.
            if m == 0 || x >= value[order[m - 1] as usize] {
                continue;
            }
            order[i] = order[m - 1];
            at = m - 1;
        }
        while at > 0 && value[order[at - 1] as usize] > x {
            order[at] = order[at - 1];
            at -= 1;
        }
        order[at] = v;
    }
    m
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

/// Sort positions by `value`, highest first (ties by position). Small sets by insertion on
/// packed keys, which beats a general sort at the sizes the search meets.
fn best_first(order: &mut [u8], value: &[u64; MAX_GPUS]) {
    const LOW: u64 = (1 << 56) - 1;
    if order.len() > 24 || order.iter().any(|&v| value[v as usize] > LOW) {
        order.sort_unstable_by(|a, b| value[*b as usize].cmp(&value[*a as usize]).then(a.cmp(b)));
        return;
    }
    let mut keys = [0u64; 24];
    for (i, &v) in order.iter().enumerate() {
        let key = ((LOW - value[v as usize]) << 8) | u64::from(v);
        let mut at = i;
        while at > 0 && keys[at - 1] > key {
            keys[at] = keys[at - 1];
            at -= 1;
        }
        keys[at] = key;
    }
    for (slot, key) in order.iter_mut().zip(keys) {
        *slot = key as u8;
    }
}
