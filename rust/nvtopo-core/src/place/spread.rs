//! `preferred` jobs of `gpus` GPUs (no node count) that no single clique holds: the best
//! `q` domains by dynamic programming, in time polynomial in the domains, `q` and the GPUs.
//!
//! A combination of domains is ranked by (fewest nodes that reach the GPUs over its nodes,
//! free GPUs in its domains, least total of such a fewest set), then by rank order. That
//! key is the least (|S|, Σ free of the domains, Σ S) over node sets S of the combination
//! whose free GPUs reach the job, and each term adds up over the domains, so
//! `best[i][j][r]` (domains i.., exactly j of them taken, r GPUs still to cover) is the
//! least of skipping domain i or taking it with any subset of its nodes. The three terms
//! are packed into one integer, high to low, so that `+` adds them and `<` compares them
//! in order. A walk forward that takes a domain whenever an optimum allows yields the
//! first optimal combination in rank order, as trying every combination in order would.

use std::ops::{Add, BitOr, Shl, Sub};

use crate::error::{Error, Result};

/// Most table entries one search may hold (256 Mi): beyond, the job is refused.
const MAX_CELLS: usize = 1 << 28;

/// A key packed into an unsigned integer: (nodes, free GPUs of the domains, GPUs taken).
trait Packed:
    Copy
    + Ord
    + Add<Output = Self>
    + Sub<Output = Self>
    + BitOr<Output = Self>
    + Shl<u32, Output = Self>
{
    /// Above every real key, with room to add keys to it without overflow: "none".
    const INF: Self;
    /// Bits a real key may use (below INF).
    const ROOM: u32;
    /// `x`, which the layout guarantees to fit.
    fn of(x: u64) -> Self;
}

impl Packed for u32 {
    const INF: Self = 1 << 30;
    const ROOM: u32 = 30;
    fn of(x: u64) -> Self {
        x as u32
    }
}

impl Packed for u64 {
    const INF: Self = 1 << 62;
    const ROOM: u32 = 62;
    fn of(x: u64) -> Self {
        x
    }
}

impl Packed for u128 {
    const INF: Self = 1 << 126;
    const ROOM: u32 = 126;
    fn of(x: u64) -> Self {
        u128::from(x)
    }
}

/// Field offsets: GPUs taken in the low `low` bits, domain free GPUs above, nodes on top.
#[derive(Clone, Copy)]
struct Layout {
    f_at: u32,
    t_at: u32,
}

impl Layout {
    fn pack<K: Packed>(self, t: u64, f: u64, s: u64) -> K {
        (K::of(t) << self.t_at) | (K::of(f) << self.f_at) | K::of(s)
    }
}

fn bits(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// The first (in rank order) of the best combinations of exactly `q` candidates, each
/// `(rank, usable count vector, free GPUs in the domain)`, for a job of `g` GPUs.
pub(super) fn spread_total(
    cand: &[(usize, Vec<u32>, u64)],
    q: usize,
    g: u64,
    width: usize,
) -> Result<Vec<usize>> {
    spread_total_in(cand, q, g, width, 32)
}

/// `spread_total` with keys of at least `bits` bits (the tests try each width).
pub(super) fn spread_total_in(
    cand: &[(usize, Vec<u32>, u64)],
    q: usize,
    g: u64,
    width: usize,
    bits_at_least: u32,
) -> Result<Vec<usize>> {
    let cells = (cand.len() + 1)
        .saturating_mul(q + 1)
        .saturating_mul(g as usize + 1);
    if cells > MAX_CELLS {
        return Err(Error::Infeasible(format!(
            "a preferred job of {g} GPUs over {q} cliques is too large to place exactly"
        )));
    }
    // Nodes and GPUs taken stay under 2 (g + width): a bundle of nodes is taken only
    // while GPUs remain, and holds at most ⌈g / v⌉ nodes of v free GPUs.
    let low = bits(2 * (g + width as u64));
    let mut fs: Vec<u64> = cand.iter().map(|c| c.2).collect();
    fs.sort_unstable_by(|a, b| b.cmp(a));
    let fsum: u64 = fs.iter().take(q).sum();
    let need = 2 * low + bits(fsum);
    let lay = Layout {
        f_at: low,
        t_at: low + bits(fsum),
    };
    // The narrowest integer that holds the keys: more of them per vector instruction.
    if need <= u32::ROOM && bits_at_least <= 32 {
        Ok(Search::<u32>::new(cand, q, g as usize, lay).pick())
    } else if need <= u64::ROOM && bits_at_least <= 64 {
        Ok(Search::<u64>::new(cand, q, g as usize, lay).pick())
    } else if need <= u128::ROOM {
        Ok(Search::<u128>::new(cand, q, g as usize, lay).pick())
    } else {
        Err(Error::Infeasible(format!(
            "a preferred job of {g} GPUs over {q} cliques is too large to place exactly"
        )))
    }
}

struct Search<'a, K> {
    cand: &'a [(usize, Vec<u32>, u64)],
    q: usize,
    g: usize,
    lay: Layout,
    /// `span[j]`: the GPUs left that a path from the start can have with j domains still
    /// to take (and on the way through a domain, j - 1): at least what the q - j + 1
    /// largest cannot cover, at most what the j largest hold. Only these are stored.
    span: Vec<(usize, usize)>,
    /// Where row j starts inside one candidate's block, and the block's length.
    off: Vec<usize>,
    block: usize,
    /// best[(i, j, r)]: the least key over candidates i.. with j taken and r GPUs to cover.
    best: Vec<K>,
    /// Whether taking candidate i reaches best[(i, j, r)].
    take: Vec<bool>,
}

impl<'a, K: Packed> Search<'a, K> {
    /// Index of (i, j, r), if r is inside row j's span.
    fn at(&self, i: usize, j: usize, r: usize) -> Option<usize> {
        let (a, b) = self.span[j];
        (a <= r && r <= b).then(|| i * self.block + self.off[j] + r - a)
    }

    fn get(&self, i: usize, j: usize, r: usize) -> K {
        self.at(i, j, r).map_or(K::INF, |x| self.best[x])
    }

    fn new(cand: &'a [(usize, Vec<u32>, u64)], q: usize, g: usize, lay: Layout) -> Self {
        let len = cand.len();
        // top[k]: the free GPUs of the k candidates that hold the most.
        let mut caps: Vec<u64> = cand.iter().map(|c| crate::counts::capacity(&c.1)).collect();
        caps.sort_unstable_by(|x, y| y.cmp(x));
        let mut top = vec![0usize; q + 2];
        for k in 1..=q + 1 {
            let add = caps.get(k - 1).copied().unwrap_or(0) as usize;
            top[k] = top[k - 1].saturating_add(add);
        }
        let mut span = vec![(0, 0)];
        span.extend((1..=q).map(|j| (g.saturating_sub(top[q - j + 1]), g.min(top[j]))));
        let mut off = Vec::with_capacity(q + 1);
        let mut block = 0;
        for &(a, b) in &span {
            off.push(block);
            block += (b + 1).saturating_sub(a);
        }
        let mut s = Search {
            cand,
            q,
            g,
            lay,
            span,
            off,
            block,
            best: vec![K::INF; (len + 1) * block],
            take: vec![false; len * block],
        };
        for i in 0..=len {
            s.best[i * block] = K::of(0); // nothing left to take or cover
        }
        let inf = K::INF;
        let mut tmp = vec![inf; g + 1];
        let mut prev = vec![inf; g + 1];
        for i in (0..len).rev() {
            let (_, cnt, f) = &cand[i];
            let fk: K = lay.pack(0, *f, 0);
            // j - 1 of the len - i - 1 later candidates must be taken.
            for j in 1..=q.min(len - i) {
                let (a, b) = s.span[j];
                if a > b {
                    continue;
                }
                // Row j - 1 spans from a or lower: read it from a on.
                let (a0, b0) = s.span[j - 1];
                let start = (i + 1) * block + s.off[j - 1] + a - a0;
                let upto = b.min(b0);
                tmp[a..=b].fill(inf);
                if a <= upto {
                    let below = &s.best[start..start + upto + 1 - a];
                    for (t, &x) in tmp[a..=upto].iter_mut().zip(below) {
                        *t = x + fk;
                    }
                }
                for (v, &c) in cnt.iter().enumerate().skip(1) {
                    // More than ⌈g / v⌉ nodes of v free GPUs never help. The c nodes
                    // are taken in bundles of 1, 2, 4, ... nodes, which add up to any
                    // count from 0 to c.
                    let mut left = (c as usize).min(g.div_ceil(v));
                    let mut bundle = 1;
                    while left > 0 {
                        let take = bundle.min(left);
                        left -= take;
                        bundle *= 2;
                        let step = take * v;
                        let item: K = lay.pack(take as u64, 0, step as u64);
                        prev[a..=b].copy_from_slice(&tmp[a..=b]);
                        if a == 0 {
                            let edge = prev[0] + item;
                            for t in &mut tmp[1..=b.min(step)] {
                                *t = (*t).min(edge);
                            }
                        }
                        let from = (a + step).max(1);
                        if from <= b {
                            let src = &prev[from - step..=b - step];
                            for (t, &p) in tmp[from..=b].iter_mut().zip(src) {
                                *t = (*t).min(p + item);
                            }
                        }
                    }
                }
                let row = s.off[j];
                let (here, later) = s.best.split_at_mut((i + 1) * block);
                let skip = &later[row..row + b + 1 - a];
                let out = &mut here[i * block + row..i * block + row + b + 1 - a];
                let took = &mut s.take[i * block + row..i * block + row + b + 1 - a];
                for (k, r) in (a..=b).enumerate() {
                    out[k] = skip[k].min(tmp[r]).min(inf);
                    took[k] = tmp[r] < inf && tmp[r] <= skip[k];
                }
            }
        }
        s
    }

    /// Walk forward over the candidates, taking each one that some optimum still allows.
    fn pick(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.q);
        if self.get(0, self.q, self.g) >= K::INF {
            return out;
        }
        let mut j = self.q;
        // The GPUs still to cover on some optimal path through the choices so far.
        let mut states = vec![self.g];
        for i in 0..self.cand.len() {
            if j == 0 {
                break;
            }
            let from: Vec<usize> = states
                .iter()
                .copied()
                .filter(|&r| self.at(i, j, r).is_some_and(|x| self.take[x]))
                .collect();
            if from.is_empty() {
                continue; // skipping i is optimal from every state kept
            }
            let mut next = vec![false; self.g + 1];
            let (_, cnt, f) = &self.cand[i];
            let reach = sums_by_nodes(cnt, self.g);
            for &r in &from {
                let want = self.get(i, j, r);
                for (t, sums) in reach.iter().enumerate() {
                    for (s, _) in sums.iter().enumerate().filter(|x| *x.1) {
                        let rest = r.saturating_sub(s);
                        let later = self.get(i + 1, j - 1, rest);
                        if later < K::INF && later + self.lay.pack(t as u64, *f, s as u64) == want {
                            next[rest] = true;
                        }
                    }
                }
            }
            out.push(i);
            j -= 1;
            states = (0..=self.g).filter(|&r| next[r]).collect();
        }
        out
    }
}

/// `sums[t][s]`: whether t nodes of `cnt` hold s free GPUs, for s up to `g` plus the
/// largest value (sums past that never come from an optimum). Subset sums on 64-bit words:
/// O(nodes² · (g + values) / 64).
fn sums_by_nodes(cnt: &[u32], g: usize) -> Vec<Vec<bool>> {
    let max = g + cnt.len();
    let words = max / 64 + 1;
    let nodes: usize = cnt.iter().skip(1).map(|&c| c as usize).sum();
    let mut reach = vec![vec![0u64; words]; nodes + 1];
    reach[0][0] = 1;
    let mut seen = 0;
    for (v, &c) in cnt.iter().enumerate().skip(1) {
        let (shift, bits) = (v / 64, (v % 64) as u32);
        for _ in 0..c {
            seen += 1;
            for t in (1..=seen).rev() {
                let (lo, hi) = reach.split_at_mut(t);
                let (from, to) = (&lo[t - 1], &mut hi[0]);
                // to |= from << v
                for i in (shift..words).rev() {
                    let src = i - shift;
                    let mut w = from[src] << bits;
                    if bits > 0 && src > 0 {
                        w |= from[src - 1] >> (64 - bits);
                    }
                    to[i] |= w;
                }
            }
        }
    }
    reach
        .iter()
        .map(|r| (0..=max).map(|s| r[s / 64] >> (s % 64) & 1 == 1).collect())
        .collect()
}
