//! Contract 1: the exact optimal set of `k` GPUs of one node.
//!
//! Candidate sets S (every required GPU, the rest from the available set A) are compared by
//! (1) the highest bottleneck `min pair_score`, (2) the highest total `Σ pair_score`,
//! (3) the fewest distinct NUMA keys, (4) the smallest cut `Σ score(i, j)`, i ∈ S,
//! j ∈ A \ S, (5) the lexicographically smallest sorted tuple of GPU ids.
//!
//! The search has two phases over bit-mask GPU sets:
//!
//! 1. *Bottleneck.* The best bottleneck is the highest distinct pair score t such that the
//!    graph "score ≥ t" holds a k-clique containing the required GPUs. Feasibility is
//!    monotone in t, so a binary search over the distinct scores runs a clique DFS
//!    (candidate peeling to the (k−1)-core, then increasing-index branching) per probe.
//! 2. *Branch and bound* in that graph, candidates taken best first (by their optimistic
//!    worth), ties settled by comparing the remaining measures and then the sorted tuple of
//!    ids explicitly. Bounds: total ≤ current + the best r of `gain(v) + partners(v)/2`
//!    over candidates v (r picks left; `gain(v)` = v's scores to the GPUs chosen,
//!    `partners(v)` = the sum of v's r−1 best scores to other candidates, read from a
//!    per-topology best-first order); the same seen from the GPUs left out when few are;
//!    NUMA keys ≥ keys used + the new keys the rest needs; for an equal total,
//!    cut = Σ_{i∈S} deg_A(i) − 2·total ≥ used degrees + the r smallest candidate degrees −
//!    2·total. A candidate whose best completion cannot beat the incumbent is dropped. A
//!    greedy set bettered by swaps seeds the search.
//!
//! Every probe and every branch node counts against a node budget. For n GPUs each phase
//! visits a set at most once, so at n ≤ 16 the whole search stays under
//! 8 · 2¹⁶ + 2¹⁶ nodes and [`DEFAULT_BUDGET`] always proves the optimum; past that a result
//! may come back with `optimal == false` (the best set found, never an infeasible one).

mod branch;

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use crate::bitset::{self, Mask};
use crate::error::{Error, Result};
use crate::topology::{Topology, SMALL_NODE};
use branch::BranchAndBound;

/// Search nodes allowed when the caller gives no budget (enough to prove any ≤ 16-GPU case).
pub const DEFAULT_BUDGET: u64 = 2_000_000;

/// Time allowed to a search past [`EXACT_GPUS`] GPUs when the caller gives no deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(10);

/// Up to this many GPUs the search always runs to the proven optimum (it is bounded by
/// the 2^n sets); a deadline applies only to larger nodes.
pub const EXACT_GPUS: usize = 16;

/// The chosen set and the measures Contract 1 compares it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Chosen positions.
    pub mask: Mask,
    /// Chosen GPU ids, ascending.
    pub gpus: Vec<i64>,
    /// Lowest pair score in the set (0 for a single GPU).
    pub bottleneck: u32,
    /// Σ pair score over the set.
    pub total: u64,
    /// Distinct NUMA keys in the set.
    pub numa_keys: u32,
    /// Σ score from the set to the available GPUs left out.
    pub cut: u64,
    /// True when the search proved this set optimal within its budget.
    pub optimal: bool,
    /// 0 when optimal; else how far the first unproven measure may fall short, as a
    /// share of its upper bound: the bottleneck when a better one was not ruled out,
    /// otherwise the total pair score.
    pub gap: f64,
    /// The weakest pair (lowest score, then smallest ids), None for a single GPU.
    pub bottleneck_pair: Option<(i64, i64)>,
    /// Path of the weakest pair (`NV18`, `SYS`, ...).
    pub bottleneck_path: Option<String>,
    /// Available GPUs left out, ascending.
    pub remaining: Vec<i64>,
    /// Search nodes used.
    pub nodes: u64,
}

fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check a request and turn it into (available, required) masks.
///
/// `available = None` means every GPU. Errors: `k` outside 1..=n → `Selection`; an unknown
/// or repeated id → `UnknownGpu`; more required GPUs than `k` → `Selection`; a required GPU
/// not available → `RequiredUnavailable`; fewer available GPUs than `k` → `Infeasible`.
pub fn resolve(
    topo: &Topology,
    k: usize,
    available: Option<&[i64]>,
    required: &[i64],
) -> Result<(Mask, Mask)> {
    let n = topo.len();
    if k < 1 || k > n {
        return Err(Error::Selection(format!(
            "k must be between 1 and {n} (the node's GPU count), got {k}"
        )));
    }
    let avail = match available {
        None => topo.all(),
        Some(ids) => topo.mask_of(ids, "available")?,
    };
    let req = topo.mask_of(required, "required")?;
    if bitset::len(req) as usize > k {
        return Err(Error::Selection(format!(
            "{} GPUs required but k is {k}",
            bitset::len(req)
        )));
    }
    if req & !avail != 0 {
        let missing = topo.ids_of(req & !avail);
        return Err(Error::RequiredUnavailable(format!(
            "required GPU {} is not available (available: {})",
            missing[0],
            id_list(&topo.ids_of(avail))
        )));
    }
    if (bitset::len(avail) as usize) < k {
        return Err(Error::Infeasible(format!(
            "only {} GPUs available ({}), {k} requested",
            bitset::len(avail),
            id_list(&topo.ids_of(avail))
        )));
    }
    Ok((avail, req))
}

/// Contract 1 by GPU ids: validate with [`resolve`], then [`select_within`].
pub fn select(
    topo: &Topology,
    k: usize,
    available: Option<&[i64]>,
    required: &[i64],
    budget: Option<u64>,
) -> Result<Selection> {
    select_deadline(topo, k, available, required, budget, None)
}

/// [`select`] with a deadline for nodes past [`EXACT_GPUS`] GPUs (default
/// [`DEFAULT_DEADLINE`]).
pub fn select_deadline(
    topo: &Topology,
    k: usize,
    available: Option<&[i64]>,
    required: &[i64],
    budget: Option<u64>,
    deadline: Option<Duration>,
) -> Result<Selection> {
    let (avail, req) = resolve(topo, k, available, required)?;
    Ok(select_within(
        topo,
        k,
        avail,
        req,
        budget.unwrap_or(DEFAULT_BUDGET),
        deadline,
    ))
}

/// Contract 1 on masks, with the default deadline past [`EXACT_GPUS`] GPUs.
pub fn select_mask(topo: &Topology, k: usize, avail: Mask, req: Mask, budget: u64) -> Selection {
    select_within(topo, k, avail, req, budget, None)
}

/// Contract 1 on masks. The caller guarantees `req ⊆ avail`, `|req| ≤ k ≤ |avail|`.
///
/// Trivial requests are answered by rule: all required, all available, or one GPU (the
/// one that leaves the best-connected GPUs together: the smallest cut, then the smallest
/// id). Past [`EXACT_GPUS`] GPUs the search stops at `deadline` (half of it for the
/// bottleneck) and returns the best set found with `optimal == false` and its gap.
pub fn select_within(
    topo: &Topology,
    k: usize,
    avail: Mask,
    req: Mask,
    budget: u64,
    deadline: Option<Duration>,
) -> Selection {
    debug_assert!(req & !avail == 0 && bitset::len(req) as usize <= k);
    debug_assert!(k <= bitset::len(avail) as usize);
    let start = (topo.len() > EXACT_GPUS).then(Instant::now);
    let allowed = deadline.unwrap_or(DEFAULT_DEADLINE);
    let mut s = Search {
        budget,
        nodes: 0,
        exhausted: false,
        deadline: start.map(|t| t + allowed / 2),
    };
    let mut proven = true;
    let mut gap = 0.0;
    let mask = if bitset::len(req) as usize == k {
        req
    } else if bitset::len(avail) as usize == k {
        avail
    } else if k == 1 {
        least_connected(topo, avail)
    } else if k == 2 {
        best_pair(topo, avail, req)
    } else if k == 3 && bitset::len(avail) <= 24 {
        best_triple(topo, avail, req)
    } else if bitset::len(avail) as usize <= k + 3 && bitset::len(avail) as usize <= SMALL_NODE {
        best_drop(topo, avail, req, bitset::len(avail) as usize - k)
    } else {
        let (ti, witness, open) = best_threshold(topo, &mut s, k, avail, req);
        s.exhausted = false;
        s.deadline = start.map(|t| t + allowed);
        let mut bb = BranchAndBound::new(topo, topo.adjacency(ti), avail);
        let found = bb.run(&mut s, k, req, Some(witness)).unwrap_or(witness);
        let bound = bb.root_bound;
        let total = topo.total(found);
        if let Some(oi) = open {
            proven = false;
            let best = topo.thresholds()[oi];
            let got = topo.weakest_pair(found).map_or(0, |w| w.2);
            gap = f64::from(best.saturating_sub(got)) / f64::from(best.max(1));
        } else if s.exhausted {
            proven = false;
            gap = bound.saturating_sub(total) as f64 / bound.max(1) as f64;
        }
        found
    };
    let mut out = finish(topo, mask, avail, proven, s.nodes);
    out.gap = gap;
    out
}

/// Two GPUs by rule: every pair of `avail` holding `req`, compared by Contract 1 (a pair's
/// bottleneck and total are its score; then NUMA keys; then its cut, the two degrees
/// less twice the score; then the smallest ids, the order pairs are met in).
fn best_pair(topo: &Topology, avail: Mask, req: Mask) -> Mask {
    let mut deg = [0u64; bitset::MAX_GPUS];
    for v in bitset::iter(avail) {
        deg[v] = topo.cut(1 << v, avail & !(1 << v));
    }
    let mut best: Option<(std::cmp::Reverse<u32>, u32, u64, Mask)> = None;
    for a in bitset::iter(avail) {
        for b in bitset::iter(avail & !((2 as Mask) << a).wrapping_sub(1)) {
            let m = (1 << a) | (1 << b);
            if req & !m != 0 {
                continue;
            }
            let score = topo.score(a, b);
            let numa = if topo.numa_key(a) == topo.numa_key(b) {
                1
            } else {
                2
            };
            let cut = deg[a] + deg[b] - 2 * u64::from(score);
            let key = (std::cmp::Reverse(score), numa, cut, m);
            if best.is_none_or(|x| (key.0, key.1, key.2) < (x.0, x.1, x.2)) {
                best = Some(key);
            }
        }
    }
    best.map_or(req, |b| b.3)
}

/// Three GPUs by rule on small nodes: every triple of `avail` holding `req` (at most
/// C(24, 3) = 2,024), compared by bottleneck and total first; NUMA keys and the cut only
/// for triples that tie on both; met in sorted-tuple order, so the first best is kept.
fn best_triple(topo: &Topology, avail: Mask, req: Mask) -> Mask {
    let mut deg = [0u64; bitset::MAX_GPUS];
    for v in bitset::iter(avail) {
        deg[v] = topo.cut(1 << v, avail & !(1 << v));
    }
    let above = |a: usize| avail & !((2 as Mask) << a).wrapping_sub(1);
    let tie = |m: Mask, total: u64| {
        let cut: u64 = bitset::iter(m).map(|v| deg[v]).sum::<u64>() - 2 * total;
        (topo.numa_count(m), cut)
    };
    let mut best: Option<(u32, u64, (u32, u64), Mask)> = None;
    for a in bitset::iter(avail) {
        for b in bitset::iter(above(a)) {
            let ab = topo.score(a, b);
            // A triple's bottleneck is at most any of its pairs': skip what cannot reach
            // the best one found so far.
            let floor = best.map_or(0, |x| x.0);
            if ab < floor {
                continue;
            }
            for c in bitset::iter(above(b)) {
                let m = (1 << a) | (1 << b) | (1 << c);
                if req & !m != 0 {
                    continue;
                }
                let (ac, bc) = (topo.score(a, c), topo.score(b, c));
                let bn = ab.min(ac).min(bc);
                if bn < floor {
                    continue;
                }
                let total = u64::from(ab) + u64::from(ac) + u64::from(bc);
                let better = match &best {
                    None => true,
                    Some(x) => {
                        (bn, total) > (x.0, x.1)
                            || ((bn, total) == (x.0, x.1) && tie(m, total) < x.2)
                    }
                };
                if better {
                    best = Some((bn, total, tie(m, total), m));
                }
            }
        }
    }
    best.map_or(req, |b| b.3)
}

/// All but `d` ≤ 3 of the available GPUs, by rule on small nodes: every set D of `d` GPUs
/// to leave out (none required). With A the available GPUs and S = A \\ D:
/// total(S) = total(A) − Σ_{v∈D} deg_A(v) + total(D), cut(S) = Σ_{v∈D} deg_A(v) −
/// 2·total(D), and the bottleneck of S is the weakest pair of A that D does not touch
/// (a scan of A's pairs, weakest first). Among sets equal on every measure the one with
/// the smaller sorted tuple of ids wins.
fn best_drop(topo: &Topology, avail: Mask, req: Mask, d: usize) -> Mask {
    let mut deg = [0u64; bitset::MAX_GPUS];
    for v in bitset::iter(avail) {
        deg[v] = topo.cut(1 << v, avail & !(1 << v));
    }
    let all_total = topo.total(avail);
    // The pairs weakest first: the topology's own list on small nodes, else those of avail.
    let local: Vec<(u32, u8, u8)>;
    let pairs = if topo.len() <= SMALL_NODE {
        topo.weakest_first()
    } else {
        let mut own = Vec::new();
        for a in bitset::iter(avail) {
            for b in bitset::iter(avail & !((2 as Mask) << a).wrapping_sub(1)) {
                own.push((topo.score(a, b), a as u8, b as u8));
            }
        }
        own.sort_unstable();
        local = own;
        &local[..]
    };
    let free = avail & !req;
    let mut best = None;
    // `inner` = total(D), `out` = Σ_{v∈D} deg_A(v), both built up along the loops.
    // The weakest pairs of avail, as masks: a set's weakest pair is nearly always among
    // the first few that D does not touch.
    let mut head = [(0u32, 0 as Mask); 32];
    let mut held = 0;
    for &(score, a, b) in pairs {
        let m = (1 << a) | (1 << b);
        if m & avail == m {
            head[held] = (score, m);
            held += 1;
            if held == head.len() {
                break;
            }
        }
    }
    // The weakest pair of avail that `drop` does not touch: (score, pair), or (0, 0).
    let weakest_kept = |drop: Mask| {
        if let Some(p) = head[..held].iter().find(|p| p.1 & drop == 0) {
            return *p;
        }
        pairs
            .iter()
            .map(|p| (p.0, ((1 as Mask) << p.1) | ((1 as Mask) << p.2)))
            .find(|p| p.1 & avail == p.1 && p.1 & drop == 0)
            .unwrap_or((0, 0))
    };
    type Key = (u32, u64, u32, u64, Mask);
    let consider = |best: &mut Option<Key>, drop: Mask, inner: u64, out: u64, bn: u32| {
        let total = all_total + inner - out;
        // Most drops lose on the bottleneck or the total: judged before the other
        // measures are worked out.
        if best.is_some_and(|b| (bn, total) < (b.0, b.1)) {
            return;
        }
        let kept = avail & !drop;
        let key = (bn, total, topo.numa_count(kept), out - 2 * inner, kept);
        if let Some(b) = best {
            // Equal on every measure: the smaller sorted tuple of ids wins.
            let (k, o) = (
                (Reverse(key.0), Reverse(key.1), key.2, key.3),
                (Reverse(b.0), Reverse(b.1), b.2, b.3),
            );
            if k > o || (k == o && !bitset::precedes(kept, b.4)) {
                return;
            }
        }
        *best = Some(key);
    };
    // lift[a]: the most a third dropped GPU c can add to the total through a, doubled:
    // max over c of 2·score(a, c) − deg(c). With D = {a, b, c} the total is
    // base(a, b) + score(a, c) + score(b, c) − deg(c) ≤ base(a, b) + (lift[a] + lift[b])/2.
    let mut lift = [0i64; bitset::MAX_GPUS];
    if d == 3 {
        for a in bitset::iter(free) {
            let row = topo.row(a);
            lift[a] = bitset::iter(free & !(1 << a))
                .map(|c| 2 * i64::from(row[c]) - deg[c] as i64)
                .max()
                .unwrap_or(0);
        }
    }
    for a in bitset::iter(free) {
        let above_a = free & !((2 as Mask) << a).wrapping_sub(1);
        if d == 1 {
            consider(&mut best, 1 << a, 0, deg[a], weakest_kept(1 << a).0);
            continue;
        }
        for b in bitset::iter(above_a) {
            let ab = u64::from(topo.score(a, b));
            let pair = (1 << a) | (1 << b);
            // The weakest pair D = {a, b} leaves: a third GPU changes it only if it
            // touches that pair.
            let (weak, weak_pair) = weakest_kept(pair);
            if d == 2 {
                consider(&mut best, pair, ab, deg[a] + deg[b], weak);
                continue;
            }
            let mut third = free & !((2 as Mask) << b).wrapping_sub(1);
            let (row_a, row_b) = (topo.row(a), topo.row(b));
            let base = all_total + ab - deg[a] - deg[b];
            if let Some(x) = best {
                // A third GPU off the weakest pair keeps that bottleneck and adds at most
                // `most` to the total: when that cannot reach the best set, only thirds on
                // the pair (which may lift the bottleneck) are left to try.
                let most = base as i64 + (lift[a] + lift[b]).div_euclid(2);
                if (weak, most) < (x.0, x.1 as i64) {
                    third &= weak_pair;
                }
            }
            // A third GPU off that pair leaves it the weakest; one on it may lift it.
            for (thirds, off) in [(third & !weak_pair, true), (third & weak_pair, false)] {
                for c in bitset::iter(thirds) {
                    let with_c = u64::from(row_a[c]) + u64::from(row_b[c]);
                    let bn = if off {
                        weak
                    } else {
                        weakest_kept(pair | (1 << c)).0
                    };
                    let drop = pair | (1 << c);
                    consider(&mut best, drop, ab + with_c, deg[a] + deg[b] + deg[c], bn);
                }
            }
        }
    }
    best.map_or(avail, |b| b.4)
}

/// The single available GPU with the smallest cut to the others (then the smallest id).
fn least_connected(topo: &Topology, avail: Mask) -> Mask {
    let mut best: Option<(u64, usize)> = None;
    for v in bitset::iter(avail) {
        let cut = topo.cut(1 << v, avail & !(1 << v));
        if best.is_none_or(|b| cut < b.0) {
            best = Some((cut, v));
        }
    }
    best.map_or(0, |b| 1 << b.1)
}

fn finish(topo: &Topology, mask: Mask, avail: Mask, optimal: bool, nodes: u64) -> Selection {
    let weakest = topo.weakest_pair(mask);
    let ids = topo.ids();
    Selection {
        mask,
        gpus: topo.ids_of(mask),
        bottleneck: weakest.map_or(0, |w| w.2),
        total: topo.total(mask),
        numa_keys: topo.numa_count(mask),
        cut: topo.cut(mask, avail & !mask),
        optimal,
        gap: 0.0,
        bottleneck_pair: weakest.map(|(a, b, _)| (ids[a], ids[b])),
        bottleneck_path: weakest.map(|(a, b, _)| topo.path(a, b).label()),
        remaining: topo.ids_of(avail & !mask),
        nodes,
    }
}

struct Search {
    budget: u64,
    nodes: u64,
    exhausted: bool,
    deadline: Option<Instant>,
}

impl Search {
    #[inline]
    fn tick(&mut self) -> bool {
        self.nodes += 1;
        if self.nodes > self.budget {
            self.exhausted = true;
        } else {
            self.check_time();
        }
        !self.exhausted
    }

    /// Marks the search exhausted once past its deadline (only set past 16 GPUs, where a
    /// search node costs far more than reading the clock). True when exhausted.
    #[inline]
    fn check_time(&mut self) -> bool {
        if let Some(d) = self.deadline {
            if !self.exhausted && Instant::now() >= d {
                self.exhausted = true;
            }
        }
        self.exhausted
    }

    /// An `m`-clique of `adj` inside `cand` (the lexicographically first), if one exists.
    fn clique(&mut self, adj: &[Mask], cand: Mask, m: u32) -> Option<Mask> {
        let mut c = cand;
        if m >= 2 {
            // Peel to the (m−1)-core: a vertex with fewer neighbours cannot be in the clique.
            loop {
                let before = c;
                for v in bitset::iter(c) {
                    if bitset::len(adj[v] & c) < m - 1 {
                        c &= !(1 << v);
                    }
                }
                if c == before {
                    break;
                }
            }
        }
        self.clique_rec(adj, c, m)
    }

    fn clique_rec(&mut self, adj: &[Mask], mut p: Mask, m: u32) -> Option<Mask> {
        if m == 0 {
            return Some(0);
        }
        if !self.tick() {
            return None;
        }
        while bitset::len(p) >= m {
            let v = p.trailing_zeros() as usize;
            p &= p - 1;
            let np = p & adj[v];
            if bitset::len(np) + 1 >= m {
                if let Some(c) = self.clique_rec(adj, np, m - 1) {
                    return Some(c | (1 << v));
                }
                if self.exhausted {
                    return None;
                }
            }
        }
        None
    }
}

/// Phase 1: index of the best threshold, a witness set there, and, when a higher
/// threshold was not ruled out (the search ran out), the highest such one.
fn best_threshold(
    topo: &Topology,
    s: &mut Search,
    k: usize,
    avail: Mask,
    req: Mask,
) -> (usize, Mask, Option<usize>) {
    let th = topo.thresholds();
    let last = th.len() - 1;
    let m = (k - bitset::len(req) as usize) as u32;
    // The required GPUs' own weakest pair caps the bottleneck.
    let cap = topo.weakest_pair(req).map_or(u32::MAX, |w| w.2);
    let mut lo = th.partition_point(|&t| t > cap);
    let mut hi = last;
    let mut witness: Option<Mask> = None;
    // The highest threshold proven to hold no set; above it, every one is ruled out.
    let mut refuted: Option<usize> = None;
    let first = lo;
    let candidates = |ti: usize| {
        let adj = topo.adjacency(ti);
        let mut c = avail & !req;
        for r in bitset::iter(req) {
            c &= adj[r];
        }
        c
    };
    while lo < hi {
        let mid = (lo + hi) / 2;
        match s.clique(topo.adjacency(mid), candidates(mid), m) {
            Some(c) => {
                hi = mid;
                witness = Some(c | req);
            }
            None => {
                if !s.exhausted {
                    refuted = Some(mid);
                }
                lo = mid + 1;
            }
        }
    }
    let witness = witness.unwrap_or_else(|| {
        // Only reached with hi == last, where every pair qualifies.
        bitset::lowest(candidates(hi), m as usize) | req
    });
    let top = refuted.map_or(first, |r| r + 1);
    (hi, witness, (top < hi).then_some(top))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{PairPath, PathClass};

    fn nvswitch(n: usize, keys: &[u32]) -> Topology {
        let nv = PairPath {
            nvlinks: 18,
            class: PathClass::Sys,
        };
        Topology::uniform(n, nv, 5, keys).unwrap()
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let t = nvswitch(8, &[0; 8]);
        let e = |r: Result<Selection>| r.unwrap_err();
        assert!(matches!(
            e(select(&t, 0, None, &[], None)),
            Error::Selection(_)
        ));
        assert!(matches!(
            e(select(&t, 9, None, &[], None)),
            Error::Selection(_)
        ));
        assert!(matches!(
            e(select(&t, 2, Some(&[0, 8]), &[], None)),
            Error::UnknownGpu(_)
        ));
        assert!(matches!(
            e(select(&t, 2, Some(&[0, 0, 1]), &[], None)),
            Error::UnknownGpu(_)
        ));
        assert!(matches!(
            e(select(&t, 2, Some(&[0, 1]), &[3], None)),
            Error::RequiredUnavailable(_)
        ));
        assert!(matches!(
            e(select(&t, 1, None, &[0, 1], None)),
            Error::Selection(_)
        ));
        assert_eq!(
            e(select(&t, 4, Some(&[0, 2, 5]), &[], None)).to_string(),
            "only 3 GPUs available (0, 2, 5), 4 requested"
        );
    }

    #[test]
    fn numa_keys_break_total_ties() {
        // All pairs equal: the fewest NUMA keys win, then the smallest ids.
        let t = nvswitch(8, &[1, 0, 1, 0, 1, 0, 1, 0]);
        let s = select(&t, 4, None, &[], None).unwrap();
        assert_eq!(s.gpus, vec![0, 2, 4, 6]);
        assert_eq!(s.numa_keys, 1);
        let s = select(&t, 3, None, &[1], None).unwrap();
        assert_eq!(s.gpus, vec![1, 3, 5]);
    }

    #[test]
    fn single_gpu_takes_the_least_connected() {
        // GPU 3 only reaches the others over SYS: taking it cuts the least.
        let mut pairs = Vec::new();
        for a in 0..4 {
            for b in a + 1..4 {
                let nvlinks = if b == 3 { 0 } else { 4 };
                pairs.push(crate::topology::PairSpec {
                    a,
                    b,
                    nvlinks,
                    class: PathClass::Sys,
                });
            }
        }
        let t = Topology::new(vec![0, 1, 2, 3], &[4; 4], &pairs, &[0; 4]).unwrap();
        let s = select(&t, 1, None, &[], None).unwrap();
        assert_eq!(s.gpus, vec![3]);
        assert_eq!(s.bottleneck, 0);
        assert_eq!(s.bottleneck_pair, None);
        assert_eq!(s.cut, 30);
        let s = select(&t, 2, None, &[], None).unwrap();
        assert_eq!(s.gpus, vec![0, 1]);
        assert_eq!(s.bottleneck_path.as_deref(), Some("NV4"));
        assert_eq!(s.remaining, vec![2, 3]);
    }

    #[test]
    fn a_deadline_cuts_large_searches_short_and_says_by_how_much() {
        let t = crate::random::random_node(&mut crate::random::Rng::new(3), 72);
        let s = select_deadline(&t, 36, None, &[], None, Some(Duration::ZERO)).unwrap();
        assert_eq!(s.gpus.len(), 36);
        assert!(!s.optimal);
        assert!(s.gap > 0.0 && s.gap <= 1.0, "gap {}", s.gap);
        // Up to 16 GPUs the deadline does not apply: the optimum, proven.
        let small = crate::random::random_node(&mut crate::random::Rng::new(3), 16);
        let s = select_deadline(&small, 8, None, &[], None, Some(Duration::ZERO)).unwrap();
        assert!(s.optimal);
        assert_eq!(s.gap, 0.0);
    }

    #[test]
    fn budget_reports_unproven_results() {
        let mixed = crate::random::random_node(&mut crate::random::Rng::new(5), 72);
        let s = select(&mixed, 20, None, &[], Some(3)).unwrap();
        assert_eq!(s.gpus.len(), 20);
        assert!(!s.optimal);
        // A uniform node is proven at once: every GPU of a NUMA key is interchangeable.
        let keys: Vec<u32> = (0..72).map(|i| i / 2).collect();
        let t = nvswitch(72, &keys);
        let s = select(&t, 9, None, &[], Some(3)).unwrap();
        assert!(s.optimal);
        assert_eq!(s.gpus, (0..9).collect::<Vec<_>>());
        assert_eq!(s.numa_keys, 5);
    }
}
