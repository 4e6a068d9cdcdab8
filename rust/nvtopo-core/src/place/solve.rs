//! The Contract 2 search over the cluster aggregates. Returns `(node rank, share)` pairs.

use std::collections::HashMap;

use super::state::ClusterState;
use super::{DomainMode, Request};
use crate::counts::{capacity, fewest_nodes, min_total};
use crate::error::{Error, Result};

/// What the job asks of the nodes it lands on.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// `nodes` nodes with `share` free GPUs each (outside a ComputeDomain).
    Even { nodes: u32, share: usize },
    /// This many GPUs on the fewest nodes.
    Total(u64),
}

impl Need {
    /// How much of the need a count vector covers: nodes (`Even`) or GPUs (`Total`).
    fn cover(self, cnt: &[u32]) -> u64 {
        match self {
            Need::Even { share, .. } => cnt[share.min(cnt.len())..]
                .iter()
                .map(|&c| u64::from(c))
                .sum(),
            Need::Total(_) => capacity(cnt),
        }
    }

    fn amount(self) -> u64 {
        match self {
            Need::Even { nodes, .. } => u64::from(nodes),
            Need::Total(g) => g,
        }
    }

    /// Smallest free value a node needs to take part.
    fn floor(self) -> usize {
        match self {
            Need::Even { share, .. } => share,
            Need::Total(_) => 1,
        }
    }
}

/// Σ of the `n` smallest values ≥ `floor` of a count vector.
fn smallest_sum(cnt: &[u32], floor: usize, n: u32) -> u64 {
    let mut left = n;
    let mut sum = 0u64;
    for (v, &c) in cnt.iter().enumerate().skip(floor) {
        let take = c.min(left);
        sum += v as u64 * u64::from(take);
        left -= take;
        if left == 0 {
            break;
        }
    }
    sum
}

/// The lexicographically first (by rank) `m` of `pool` (rank order, values ≥ 1) whose
/// values add up to exactly `total`; `cnt` counts the pool by value.
fn lex_first(pool: &[(usize, usize)], cnt: &[u32], m: u32, total: u64) -> Vec<usize> {
    let mut suffix = cnt.to_vec();
    let (mut j, mut s) = (m, total);
    let mut dead = vec![false; cnt.len()];
    let mut out = Vec::with_capacity(m as usize);
    for &(rank, v) in pool {
        if j == 0 {
            break;
        }
        suffix[v] -= 1;
        // A later node of a value that failed here faces a smaller suffix: it fails too.
        if dead[v] || v as u64 > s {
            continue;
        }
        if crate::counts::exact(&suffix, j - 1, s - v as u64) {
            out.push(rank);
            j -= 1;
            s -= v as u64;
            dead.fill(false);
        } else {
            dead[v] = true;
        }
    }
    out
}

impl ClusterState {
    pub(super) fn solve(&self, req: &Request) -> Result<Vec<(usize, usize)>> {
        let g = u64::from(req.gpus);
        if g == 0 {
            return Err(Error::Selection(
                "a placement needs at least 1 GPU, got 0".into(),
            ));
        }
        let most = self.width - 1;
        if let Some(n) = req.nodes {
            if n == 0 {
                return Err(Error::Selection("nodes must be at least 1, got 0".into()));
            }
            if g % u64::from(n) != 0 {
                return Err(Error::Selection(format!(
                    "{g} GPUs do not split evenly over {n} nodes"
                )));
            }
            let share = g / u64::from(n);
            if share > most as u64 {
                return Err(Error::Infeasible(format!(
                    "{share} GPUs per node asked, but no node has more than {most}"
                )));
            }
        }
        if self.nodes.is_empty() {
            return Err(Error::Infeasible("the cluster has no nodes".into()));
        }
        let need = match req.nodes {
            Some(n) => Need::Even {
                nodes: n,
                share: (g / u64::from(n)) as usize,
            },
            None => Need::Total(g),
        };
        match req.domain {
            DomainMode::Ignore => self.solve_pool(need),
            DomainMode::Required => self.solve_domains(need, true),
            DomainMode::Preferred => self.solve_domains(need, false),
        }
    }

    /// Cliques ignored: the whole cluster is one pool, any node may take part.
    fn solve_pool(&self, need: Need) -> Result<Vec<(usize, usize)>> {
        match need {
            Need::Even { nodes, share } => {
                let have: usize = self.by_free[share..].iter().map(|b| b.len()).sum();
                if have < nodes as usize {
                    return Err(Error::Infeasible(format!(
                        "only {have} nodes have {share} free GPUs, {nodes} requested"
                    )));
                }
                let mut out: Vec<(usize, usize)> = self.by_free[share..]
                    .iter()
                    .flat_map(|b| b.iter().map(|&r| (r, share)))
                    .take(nodes as usize)
                    .collect();
                out.sort_unstable();
                Ok(out)
            }
            Need::Total(g) => {
                let cnt: Vec<u32> = self.by_free.iter().map(|b| b.len() as u32).collect();
                let total = capacity(&cnt);
                if total < g {
                    return Err(Error::Infeasible(format!(
                        "only {total} free GPUs in the cluster, {g} requested"
                    )));
                }
                let m = fewest_nodes(&cnt, g).unwrap_or(0);
                if m == 1 {
                    let r = self.by_free[g as usize..]
                        .iter()
                        .find_map(|b| b.iter().next())
                        .copied()
                        .unwrap_or(0);
                    return Ok(vec![(r, g as usize)]);
                }
                let pool: Vec<(usize, usize)> = self
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.nfree > 0)
                    .map(|(r, n)| (r, n.nfree))
                    .collect();
                let best = min_total(&cnt, m, g).unwrap_or(g);
                Ok(self.fill(lex_first(&pool, &cnt, m, best), g))
            }
        }
    }

    fn solve_domains(&self, need: Need, required: bool) -> Result<Vec<(usize, usize)>> {
        let single = match need {
            Need::Even { nodes: 1, share } => Some(share),
            Need::Total(g) => Some(g as usize),
            Need::Even { .. } => None,
        };
        if let Some(g) = single {
            // One node is one domain and forms no ComputeDomain: always the best, if any.
            if let Some(r) = self.best_single(g) {
                return Ok(vec![(r, g)]);
            }
            if matches!(need, Need::Even { .. }) {
                let most = self.nodes.iter().map(|n| n.nfree).max().unwrap_or(0);
                return Err(Error::Infeasible(format!(
                    "no node has {g} free GPUs; the most on one node is {most}"
                )));
            }
        }
        if let Some(c) = self.best_clique(need) {
            return Ok(self.pick_in(&[c], need));
        }
        if required {
            return Err(self.no_clique(need));
        }
        self.best_spread(need)
    }

    /// Best single node with `g` free GPUs: fullest domain first, then tightest node.
    /// Cliques are visited fullest first from `g` free GPUs up, and only while they can
    /// still win.
    fn best_single(&self, g: usize) -> Option<usize> {
        if g >= self.width {
            return None;
        }
        let mut best: Option<(u64, usize, usize)> = None;
        for &(f, c) in self.by_fill.range((g as u64, 0)..) {
            if best.is_some_and(|b| f > b.0) {
                break;
            }
            let grp = &self.groups[c];
            if let Some(v) = (g..self.width).find(|&v| grp.cnt_all[v] > 0) {
                let key = (f, v, c);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        if let Some(v) = (g..self.width).find(|&v| !self.singles[v].is_empty()) {
            let r = *self.singles[v].iter().next()?;
            let key = (v as u64, v, self.nodes[r].group);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        let (_, v, grp) = best?;
        self.groups[grp]
            .nodes
            .iter()
            .copied()
            .find(|&r| self.nodes[r].nfree == v)
    }

    /// Best single clique that holds the job on nodes outside a ComputeDomain. Cliques
    /// are visited fullest first, from the job's size up, and only while they can win.
    fn best_clique(&self, need: Need) -> Option<usize> {
        match need {
            Need::Even { nodes, share } => {
                let mut best: Option<(u64, u64, usize)> = None;
                let from = u64::from(nodes) * share as u64;
                for &(f, c) in self.by_fill.range((from, 0)..) {
                    if best.is_some_and(|b| f > b.0) {
                        break;
                    }
                    let grp = &self.groups[c];
                    if need.cover(&grp.cnt_elig) < u64::from(nodes) {
                        continue;
                    }
                    let key = (f, smallest_sum(&grp.cnt_elig, share, nodes), c);
                    if best.is_none_or(|b| key < b) {
                        best = Some(key);
                    }
                }
                best.map(|b| b.2)
            }
            Need::Total(g) => {
                // No clique needs fewer nodes than this.
                let most = (self.width - 1).max(1) as u64;
                let least = g.div_ceil(most) as u32;
                let mut best: Option<(u32, u64)> = None;
                for &(f, c) in self.by_fill.range((g, 0)..) {
                    if best.is_some_and(|b| b.0 == least && f > b.1) {
                        break;
                    }
                    if let Some(m) = fewest_nodes(&self.groups[c].cnt_elig, g) {
                        let key = (m, f);
                        if best.is_none_or(|b| key < b) {
                            best = Some(key);
                        }
                    }
                }
                let (m, f) = best?;
                let mut memo: HashMap<&[u32], u64> = HashMap::new();
                let mut pick: Option<(u64, usize)> = None;
                for &(_, c) in self.by_fill.range((f, 0)..(f + 1, 0)) {
                    let grp = &self.groups[c];
                    if fewest_nodes(&grp.cnt_elig, g) != Some(m) {
                        continue;
                    }
                    let s = *memo
                        .entry(&grp.cnt_elig)
                        .or_insert_with(|| min_total(&grp.cnt_elig, m, g).unwrap_or(u64::MAX));
                    if pick.is_none_or(|p| s < p.0) {
                        pick = Some((s, c));
                        if s == g {
                            break; // nothing fits tighter; later cliques only lose the tie
                        }
                    }
                }
                pick.map(|p| p.1)
            }
        }
    }

    fn no_clique(&self, need: Need) -> Error {
        let largest = self
            .cliques
            .iter()
            .map(|&c| need.cover(&self.groups[c].cnt_elig))
            .max();
        let what = match need {
            Need::Even { nodes, share } => {
                format!(
                    "no clique has {nodes} nodes with {share} free GPUs outside a ComputeDomain"
                )
            }
            Need::Total(g) => {
                format!("no clique has {g} free GPUs on nodes outside a ComputeDomain")
            }
        };
        match largest {
            Some(l) => Error::Infeasible(format!("{what}; the largest has {l}")),
            None => Error::Infeasible(format!("{what}; the cluster has no clique")),
        }
    }

    /// Nodes and shares inside the chosen domains.
    fn pick_in(&self, groups: &[usize], need: Need) -> Vec<(usize, usize)> {
        let floor = need.floor();
        let mut pool: Vec<(usize, usize)> = groups
            .iter()
            .flat_map(|&g| self.groups[g].nodes.iter().copied())
            .filter(|&r| !self.nodes[r].in_cd && self.nodes[r].nfree >= floor)
            .map(|r| (r, self.nodes[r].nfree))
            .collect();
        pool.sort_unstable();
        match need {
            Need::Even { nodes, share } => {
                // The n smallest free counts, ties by name (the sort is stable).
                pool.sort_by_key(|&(_, v)| v);
                let mut out: Vec<(usize, usize)> = pool[..nodes as usize]
                    .iter()
                    .map(|&(r, _)| (r, share))
                    .collect();
                out.sort_unstable();
                out
            }
            Need::Total(g) => {
                let mut cnt = vec![0u32; self.width];
                for &(_, v) in &pool {
                    cnt[v] += 1;
                }
                let m = fewest_nodes(&cnt, g).unwrap_or(0);
                let best = min_total(&cnt, m, g).unwrap_or(g);
                self.fill(lex_first(&pool, &cnt, m, best), g)
            }
        }
    }

    /// Shares of `g` GPUs over the chosen nodes: most free first (ties by name), each
    /// taking all it has until the job is met.
    fn fill(&self, mut chosen: Vec<usize>, g: u64) -> Vec<(usize, usize)> {
        chosen.sort_by_key(|&r| (std::cmp::Reverse(self.nodes[r].nfree), r));
        let mut left = g as usize;
        let mut out: Vec<(usize, usize)> = chosen
            .into_iter()
            .map(|r| {
                let take = self.nodes[r].nfree.min(left);
                left -= take;
                (r, take)
            })
            .filter(|&(_, t)| t > 0)
            .collect();
        out.sort_unstable();
        out
    }

    /// `preferred` when no single clique holds the job: the fewest domains that can.
    fn best_spread(&self, need: Need) -> Result<Vec<(usize, usize)>> {
        let floor = need.floor();
        let width = self.width;
        // Candidate domains: (rank, usable counts, free GPUs in the domain).
        let mut all: Vec<(usize, Vec<u32>, u64)> = Vec::new();
        for &c in &self.cliques {
            let grp = &self.groups[c];
            let mut cnt = grp.cnt_elig.clone();
            cnt[..floor.min(width)].iter_mut().for_each(|x| *x = 0);
            if cnt.iter().any(|&x| x > 0) {
                all.push((c, cnt, grp.free_total));
            }
        }
        // (capacity, how many domains have it): cliques one by one, loose nodes by count.
        let mut caps: Vec<(u64, u64)> =
            all.iter().map(|(_, cnt, _)| (need.cover(cnt), 1)).collect();
        for v in floor..width {
            let count = self.singles_elig[v].len() as u64;
            if count > 0 {
                let cap = match need {
                    Need::Even { .. } => 1,
                    Need::Total(_) => v as u64,
                };
                caps.push((cap, count));
            }
        }
        caps.sort_unstable_by(|a, b| b.cmp(a));
        let total: u64 = caps.iter().map(|&(c, n)| c * n).sum();
        if total < need.amount() {
            return Err(Error::Infeasible(match need {
                Need::Even { nodes, share } => format!(
                    "only {total} nodes have {share} free GPUs outside a ComputeDomain, {nodes} requested"
                ),
                Need::Total(g) => format!(
                    "only {total} GPUs are free on nodes outside a ComputeDomain, {g} requested"
                ),
            }));
        }
        // q: the fewest domains whose capacities reach the need, largest first.
        let mut q = 0usize;
        let mut acc = 0u64;
        for &(cap, count) in &caps {
            if acc >= need.amount() {
                break;
            }
            let take = (need.amount() - acc).div_ceil(cap).min(count);
            acc += cap * take;
            q += take as usize;
        }
        // Domains with equal aggregates are interchangeable but for their rank: keep the
        // q first of each kind. Loose nodes of one free count share a kind, so only the q
        // first of each count are looked at.
        let mut pool = all;
        for v in floor..width {
            for &r in self.singles_elig[v].iter().take(q) {
                let mut cnt = vec![0u32; width];
                cnt[v] = 1;
                pool.push((self.nodes[r].group, cnt, v as u64));
            }
        }
        pool.sort_by_key(|c| c.0);
        let mut seen: HashMap<(Vec<u32>, u64), usize> = HashMap::new();
        let mut cand: Vec<(usize, Vec<u32>, u64)> = Vec::new();
        for (rank, cnt, f) in pool {
            let k = seen.entry((cnt.clone(), f)).or_insert(0);
            if *k < q {
                *k += 1;
                cand.push((rank, cnt, f));
            }
        }
        let pick = match need {
            Need::Even { nodes, share } => spread_even(&cand, q, nodes, share),
            Need::Total(_) => spread_enumerate(&cand, need, q, width),
        };
        let groups: Vec<usize> = pick.iter().map(|&i| cand[i].0).collect();
        Ok(self.pick_in(&groups, need))
    }
}

/// Every combination of `q` candidates, in rank order: the first with the best key.
fn spread_enumerate(
    cand: &[(usize, Vec<u32>, u64)],
    need: Need,
    q: usize,
    width: usize,
) -> Vec<usize> {
    let mut search = Spread {
        cand,
        need,
        q,
        best: None,
        pick: Vec::new(),
        chosen: Vec::new(),
    };
    search.run(0, &vec![0u32; width], 0);
    search.pick
}

/// `preferred` gangs of `nodes` × `share` over exactly `q` candidate domains, by dynamic
/// programming instead of trying every combination: O(candidates · q · nodes · nodes per
/// domain).
///
/// A combination's key is (free GPUs in its domains, the `nodes` smallest eligible free
/// counts over its nodes); the second is the least Σ over ways of taking t_i of each
/// domain's smallest counts with Σ t_i = nodes. So the key is additive over (domain, t_i)
/// choices and `best[i][j][t]` (domains i.., j of them, t nodes) is the minimum over
/// skipping domain i or taking it with some t_i. Walking forward and taking a domain
/// whenever an optimum allows gives the first combination in rank order.
fn spread_even(cand: &[(usize, Vec<u32>, u64)], q: usize, nodes: u32, share: usize) -> Vec<usize> {
    const NONE: (u64, u64) = (u64::MAX, u64::MAX);
    let n = nodes as usize;
    let prefix: Vec<Vec<u64>> = cand
        .iter()
        .map(|(_, cnt, _)| {
            let mut p = vec![0u64];
            for (v, &c) in cnt.iter().enumerate().skip(share) {
                for _ in 0..c {
                    if p.len() > n {
                        break;
                    }
                    p.push(p[p.len() - 1] + v as u64);
                }
            }
            p
        })
        .collect();
    let len = cand.len();
    let at = |i: usize, j: usize, t: usize| (i * (q + 1) + j) * (n + 1) + t;
    let mut best = vec![NONE; (len + 1) * (q + 1) * (n + 1)];
    best[at(len, 0, 0)] = (0, 0);
    let add = |a: (u64, u64), f: u64, s: u64| {
        if a == NONE {
            NONE
        } else {
            (a.0 + f, a.1 + s)
        }
    };
    for i in (0..len).rev() {
        let f = cand[i].2;
        for j in 0..=q {
            for t in 0..=n {
                let mut b = best[at(i + 1, j, t)];
                if j > 0 {
                    for (ti, &s) in prefix[i].iter().enumerate().take(t + 1) {
                        b = b.min(add(best[at(i + 1, j - 1, t - ti)], f, s));
                    }
                }
                best[at(i, j, t)] = b;
            }
        }
    }
    let (mut j, mut t) = (q, n);
    let mut pick = Vec::with_capacity(q);
    for i in 0..len {
        if j == 0 {
            break;
        }
        let want = best[at(i, j, t)];
        if want == NONE {
            break;
        }
        let f = cand[i].2;
        let take = prefix[i]
            .iter()
            .enumerate()
            .take(t + 1)
            .find(|&(ti, &s)| add(best[at(i + 1, j - 1, t - ti)], f, s) == want);
        if let Some((ti, _)) = take {
            pick.push(i);
            j -= 1;
            t -= ti;
        }
    }
    pick
}

/// Enumeration of q-domain combinations in rank order (so ties keep the first).
struct Spread<'a> {
    cand: &'a [(usize, Vec<u32>, u64)],
    need: Need,
    q: usize,
    best: Option<(u32, u64, u64)>,
    pick: Vec<usize>,
    chosen: Vec<usize>,
}

impl Spread<'_> {
    fn run(&mut self, from: usize, cnt: &[u32], f: u64) {
        if self.chosen.len() == self.q {
            self.leaf(cnt, f);
            return;
        }
        let left = self.q - self.chosen.len();
        for i in from..=self.cand.len().saturating_sub(left) {
            let (_, c, fi) = &self.cand[i];
            let merged: Vec<u32> = cnt.iter().zip(c).map(|(a, b)| a + b).collect();
            self.chosen.push(i);
            self.run(i + 1, &merged, f + fi);
            self.chosen.pop();
        }
    }

    fn leaf(&mut self, cnt: &[u32], f: u64) {
        if self.need.cover(cnt) < self.need.amount() {
            return;
        }
        let (m, s) = match self.need {
            Need::Even { nodes, share } => (nodes, smallest_sum(cnt, share, nodes)),
            Need::Total(g) => {
                let Some(m) = fewest_nodes(cnt, g) else {
                    return;
                };
                if self.best.is_some_and(|b| (m, f) > (b.0, b.1)) {
                    return;
                }
                (m, min_total(cnt, m, g).unwrap_or(u64::MAX))
            }
        };
        let key = (m, f, s);
        if self.best.is_none_or(|b| key < b) {
            self.best = Some(key);
            self.pick = self.chosen.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Rng;

    /// The dynamic programme against trying every combination, on small random sets of
    /// domains (ties included: few distinct counts and free totals).
    #[test]
    fn even_spread_matches_every_combination() {
        let mut rng = Rng::new(11);
        for _ in 0..400 {
            let width = 2 + rng.below(4) as usize;
            let share = 1 + rng.below(width as u64 - 1) as usize;
            let count = 1 + rng.below(7) as usize;
            let cand: Vec<(usize, Vec<u32>, u64)> = (0..count)
                .map(|r| {
                    let mut cnt = vec![0u32; width];
                    for c in cnt.iter_mut().skip(share) {
                        *c = rng.below(3) as u32;
                    }
                    let f = crate::counts::capacity(&cnt) + rng.below(3);
                    (r, cnt, f)
                })
                .collect();
            let cover: u64 = cand
                .iter()
                .map(|c| c.1.iter().map(|&x| u64::from(x)).sum::<u64>())
                .sum();
            if cover == 0 {
                continue;
            }
            let nodes = 1 + rng.below(cover) as u32;
            let need = Need::Even { nodes, share };
            // q: the fewest candidates that cover the nodes, largest first.
            let mut covers: Vec<u64> = cand.iter().map(|c| need.cover(&c.1)).collect();
            covers.sort_unstable_by(|a, b| b.cmp(a));
            let mut q = 0;
            let mut acc = 0;
            while acc < u64::from(nodes) {
                acc += covers[q];
                q += 1;
            }
            let dp = spread_even(&cand, q, nodes, share);
            let brute = spread_enumerate(&cand, need, q, width);
            assert_eq!(dp, brute, "{cand:?} nodes {nodes} share {share} q {q}");
        }
    }
}
