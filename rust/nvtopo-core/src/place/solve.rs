//! The Contract 2 search over the cluster aggregates. Returns `(node rank, share)` pairs.

use std::collections::HashMap;

use super::lexfirst::lex_first;
use super::state::ClusterState;
use super::{DomainMode, Request};
use crate::counts::{capacity, fewest_nodes, min_total};
use crate::error::{Error, Result};

/// What the job asks of the nodes it lands on.
#[derive(Clone, Copy, Debug)]
pub(super) enum Need {
    /// `nodes` nodes with `share` free GPUs each (outside a ComputeDomain).
    Even { nodes: u32, share: usize },
    /// This many GPUs on the fewest nodes.
    Total(u64),
}

impl Need {
    /// How much of the need a count vector covers: nodes (`Even`) or GPUs (`Total`).
    pub(super) fn cover(self, cnt: &[u32]) -> u64 {
        match self {
            Need::Even { share, .. } => cnt[share.min(cnt.len())..]
                .iter()
                .map(|&c| u64::from(c))
                .sum(),
            Need::Total(_) => capacity(cnt),
        }
    }

    pub(super) fn amount(self) -> u64 {
        match self {
            Need::Even { nodes, .. } => u64::from(nodes),
            Need::Total(g) => g,
        }
    }

    /// Smallest free value a node needs to take part.
    pub(super) fn floor(self) -> usize {
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
    pub(super) fn pick_in(&self, groups: &[usize], need: Need) -> Vec<(usize, usize)> {
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
pub(super) fn spread_even(
    cand: &[(usize, Vec<u32>, u64)],
    q: usize,
    nodes: u32,
    share: usize,
) -> Vec<usize> {
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

#[cfg(test)]
#[path = "solve_tests.rs"]
mod tests;
