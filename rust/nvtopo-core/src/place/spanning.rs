//! `preferred` jobs that no single clique holds: which domains can take part, then the
//! exact search over those.
//!
//! Work that does not grow with the racks. Cliques of one profile (nodes outside a
//! ComputeDomain by free count, free GPUs) are interchangeable but for their id, so at most
//! the first `q` of each profile can be in the first best set of `q` domains (a set using a
//! later one while an earlier one of its profile is unused loses the tie on clique ids).
//! The state keeps cliques by profile as GPUs are taken and given back, so a search looks
//! at profiles, whose number is bounded by the node shapes, not by the racks; loose nodes
//! are kinds by free count.
//!
//! Then a lower bound per kind prunes the kinds that cannot be in a best set: for a job of
//! `nodes × share`, the free GPUs of the domains (the first term compared, the nodes being
//! fixed); for a job of `gpus`, the nodes used. The exact search runs over the kinds whose
//! bound is at most a limit L. If its best set scores at most L, no set holding a kind
//! above L can match it, so it is the best of all, and the first in id order; otherwise
//! the search runs again with L raised to that score, which then holds. Every domain of a
//! best set of the fewest domains takes part (else fewer domains would do), which the
//! bounds use.

use std::collections::{BTreeSet, HashMap};

use super::solve::{spread_even, Need};
use super::spread::spread_total;
use super::state::ClusterState;
use crate::counts::fewest_nodes;
use crate::error::{Error, Result};

/// Domains that are interchangeable but for their rank.
pub(super) struct Kind<'a> {
    /// Usable nodes by free count (values below the job's floor zeroed).
    pub(super) cnt: Vec<u32>,
    /// Free GPUs in the domain.
    pub(super) f: u64,
    /// The domains, ascending: clique ranks, or loose node ranks.
    pub(super) members: &'a BTreeSet<usize>,
    pub(super) loose: bool,
    /// What one domain covers of the need (nodes, or GPUs).
    cover: u64,
    /// Lower bound on the score (free GPUs of the domains for `nodes × share`, nodes for
    /// `gpus`) of any set of q domains that holds the job and one of these.
    pub(super) bound: u64,
}

/// A bound that no set reaches: the kind is in no set of q domains that holds the job.
const NEVER: u64 = u64::MAX / 4;

/// One candidate domain for the exact search: (group rank, usable counts, free GPUs).
type Cand = (usize, Vec<u32>, u64);

impl ClusterState {
    /// `preferred` when no single clique holds the job: the fewest domains that can.
    pub(super) fn best_spread(&self, need: Need) -> Result<Vec<(usize, usize)>> {
        let groups = self.spread_domains(need)?;
        Ok(self.pick_in(&groups, need))
    }

    /// The domains (group ranks) of the best placement over several domains.
    pub(super) fn spread_domains(&self, need: Need) -> Result<Vec<usize>> {
        let (kinds, q) = self.bounded_kinds(need)?;
        self.search_kinds(need, &kinds, q)
    }

    /// Every kind with its bound, and q, the fewest domains that hold the job.
    pub(super) fn bounded_kinds(&self, need: Need) -> Result<(Vec<Kind<'_>>, usize)> {
        let mut kinds = self.kinds(need);
        let q = fewest_domains(&kinds, need)?;
        match need {
            Need::Even { nodes, share } => {
                // Each other domain takes at least one of the nodes, so this one at most
                // nodes − (q − 1); the q − 1 others cover the rest, with at least the free
                // GPUs of the lightest q − 1 domains that do, and `share` per node.
                let n = u64::from(nodes);
                let most = n - (q as u64 - 1);
                let partners = partner_free(&kinds, q - 1, nodes as usize);
                for k in &mut kinds {
                    let rest = n - k.cover.min(most);
                    let others = match &partners {
                        Some(p) => p[rest as usize],
                        None => share as u64 * rest,
                    };
                    k.bound = others.saturating_add(k.f).min(NEVER);
                }
            }
            Need::Total(g) => node_bounds(&mut kinds, q, g, self.width),
        }
        Ok((kinds, q))
    }

    /// The search proper: the kinds inside a rising limit until the best set found
    /// holds.
    fn search_kinds(&self, need: Need, kinds: &[Kind], q: usize) -> Result<Vec<usize>> {
        let mut limit = kinds.iter().map(|k| k.bound).min().unwrap_or(0);
        loop {
            let inside: Vec<&Kind> = kinds.iter().filter(|k| k.bound <= limit).collect();
            let all = inside.len() == kinds.len();
            let raise = || kinds.iter().map(|k| k.bound).filter(|&b| b > limit).min();
            if reach(&inside, q) < need.amount() {
                limit = raise().ok_or_else(|| too_few(need))?;
                continue;
            }
            let cand = self.candidates(&inside, q);
            let pick = match need {
                // q candidates that reach the need: nothing to choose.
                _ if cand.len() == q => (0..q).collect(),
                Need::Even { nodes, share } => spread_even(&cand, q, nodes, share),
                Need::Total(g) => spread_total(&cand, q, g, self.width)?,
            };
            if pick.is_empty() {
                limit = raise().ok_or_else(|| too_few(need))?;
                continue;
            }
            let score = match need {
                Need::Even { .. } => pick.iter().map(|&i| cand[i].2).sum(),
                Need::Total(g) => {
                    let mut merged = vec![0u32; self.width];
                    for &i in &pick {
                        for (m, c) in merged.iter_mut().zip(&cand[i].1) {
                            *m += c;
                        }
                    }
                    u64::from(fewest_nodes(&merged, g).unwrap_or(u32::MAX))
                }
            };
            // Raising the limit to the score adds no kind: the same search, the same answer.
            let same = !kinds.iter().any(|k| k.bound > limit && k.bound <= score);
            if score <= limit || all || same {
                return Ok(pick.iter().map(|&i| cand[i].0).collect());
            }
            limit = score;
        }
    }

    /// Cliques by profile, then loose nodes by free count, each kind with usable nodes.
    fn kinds(&self, need: Need) -> Vec<Kind<'_>> {
        let floor = need.floor().max(1);
        let width = self.width;
        let mut kinds = Vec::new();
        for ((key, f), members) in &self.profiles {
            let mut cnt = vec![0u32; width];
            if floor < width {
                cnt[floor..].copy_from_slice(&key[floor - 1..]);
            }
            let cover = need.cover(&cnt);
            if cover > 0 {
                kinds.push(Kind {
                    cnt,
                    f: *f,
                    members,
                    loose: false,
                    cover,
                    bound: 0,
                });
            }
        }
        for v in floor..width {
            let members = &self.singles_elig[v];
            if !members.is_empty() {
                let mut cnt = vec![0u32; width];
                cnt[v] = 1;
                let cover = need.cover(&cnt);
                kinds.push(Kind {
                    cnt,
                    f: v as u64,
                    members,
                    loose: true,
                    cover,
                    bound: 0,
                });
            }
        }
        kinds
    }

    /// The first `q` domains of each kind, in rank order, at most `q` of each (counts,
    /// free GPUs): kinds that differ only below the job's floor are one kind here.
    fn candidates(&self, inside: &[&Kind], q: usize) -> Vec<Cand> {
        let mut pool: Vec<(usize, &Kind)> = Vec::new();
        for k in inside {
            for &m in k.members.iter().take(q) {
                let g = if k.loose { self.nodes[m].group } else { m };
                pool.push((g, k));
            }
        }
        pool.sort_unstable_by_key(|p| p.0);
        let mut seen: HashMap<(&[u32], u64), usize> = HashMap::new();
        let mut cand = Vec::with_capacity(pool.len());
        for (g, k) in pool {
            let n = seen.entry((&k.cnt, k.f)).or_insert(0);
            if *n < q {
                *n += 1;
                cand.push((g, k.cnt.clone(), k.f));
            }
        }
        cand
    }
}

/// The fewest domains whose covers reach the need, largest first.
fn fewest_domains(kinds: &[Kind], need: Need) -> Result<usize> {
    let mut caps: Vec<(u64, u64)> = kinds
        .iter()
        .map(|k| (k.cover, k.members.len() as u64))
        .collect();
    caps.sort_unstable_by(|a, b| b.cmp(a));
    let total: u64 = caps.iter().map(|&(c, n)| c * n).sum();
    if total < need.amount() {
        return Err(match need {
            Need::Even { nodes, share } => Error::Infeasible(format!(
                "only {total} nodes have {share} free GPUs outside a ComputeDomain, {nodes} requested"
            )),
            Need::Total(g) => Error::Infeasible(format!(
                "only {total} GPUs are free on nodes outside a ComputeDomain, {g} requested"
            )),
        });
    }
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
    Ok(q)
}

/// `free[c]`: the least free GPUs of `j` domains (at most `j` of a kind) whose covers add
/// up to at least `c` nodes, `NEVER` where none do; None when the table would be too large
/// to pay for (the caller falls back on `share` GPUs per node). A knapsack over the kinds,
/// each kind's copies taken in bundles of 1, 2, 4, ...: O(kinds · log j · j · nodes).
fn partner_free(kinds: &[Kind], j: usize, nodes: usize) -> Option<Vec<u64>> {
    const BUDGET: usize = 1 << 22;
    let mut items: Vec<(usize, usize, u64)> = Vec::new();
    for k in kinds {
        let mut left = (k.members.len()).min(j);
        let mut bundle = 1;
        while left > 0 {
            let b = bundle.min(left);
            items.push((b, b * k.cover as usize, b as u64 * k.f));
            left -= b;
            bundle *= 2;
        }
    }
    if items.len().saturating_mul(j + 1).saturating_mul(nodes + 1) > BUDGET {
        return None;
    }
    let at = |d: usize, c: usize| d * (nodes + 1) + c;
    let mut best = vec![NEVER; (j + 1) * (nodes + 1)];
    best[at(0, 0)] = 0;
    for &(b, cover, f) in &items {
        for d in (b..=j).rev() {
            for c in 0..=nodes {
                let from = best[at(d - b, c)];
                if from < NEVER {
                    let to = at(d, (c + cover).min(nodes));
                    best[to] = best[to].min(from + f);
                }
            }
        }
    }
    let mut free: Vec<u64> = best[at(j, 0)..=at(j, nodes)].to_vec();
    for c in (0..nodes).rev() {
        free[c] = free[c].min(free[c + 1]);
    }
    Some(free)
}

/// The most `q` domains of these kinds cover.
fn reach(inside: &[&Kind], q: usize) -> u64 {
    let mut caps: Vec<(u64, u64)> = inside
        .iter()
        .map(|k| (k.cover, k.members.len() as u64))
        .collect();
    caps.sort_unstable_by(|a, b| b.cmp(a));
    let mut left = q as u64;
    let mut got = 0;
    for (cap, count) in caps {
        let take = count.min(left);
        got += cap * take;
        left -= take;
        if left == 0 {
            break;
        }
    }
    got
}

fn too_few(need: Need) -> Error {
    Error::Infeasible(format!(
        "no set of domains reaches {} {} (internal bound)",
        need.amount(),
        match need {
            Need::Even { .. } => "nodes",
            Need::Total(_) => "GPUs",
        }
    ))
}

/// For a job of `g` GPUs: the fewest nodes of any set of `q` domains that holds one of
/// each kind.
///
/// The q − 1 other domains hold, as their j-th fullest nodes, at most the q − 1 largest
/// j-th fullest values over all domains; the union `A` of those is at least as full as
/// any q − 1 domains' nodes, its best k of them hold at least as much. With t ≥ 1 nodes
/// of the kind itself (the fullest t), the rest comes from `A`: the bound is the least
/// t + (nodes of `A` that make up the rest). O(kinds · nodes per domain).
fn node_bounds(kinds: &mut [Kind], q: usize, g: u64, width: usize) {
    let partners = q as u64 - 1;
    let longest = kinds
        .iter()
        .map(|k| k.cnt.iter().map(|&c| c as usize).sum::<usize>())
        .max()
        .unwrap_or(0);
    // hist[j][v]: domains (at most q − 1 of a kind) whose j-th fullest node has v free.
    let mut hist = vec![vec![0u64; width]; longest];
    for k in kinds.iter() {
        let weight = (k.members.len() as u64).min(partners);
        if weight == 0 {
            continue;
        }
        let mut j = 0;
        for v in (1..width).rev() {
            for _ in 0..k.cnt[v] {
                hist[j][v] += weight;
                j += 1;
            }
        }
    }
    // Prefix sums of A, fullest first.
    let mut a = vec![0u64; width];
    for h in &hist {
        let mut left = partners;
        for v in (1..width).rev() {
            let take = h[v].min(left);
            a[v] += take;
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
    let mut sums = vec![0u64];
    for v in (1..width).rev() {
        for _ in 0..a[v] {
            sums.push(sums[sums.len() - 1] + v as u64);
        }
    }
    // Nodes of A that hold `rest` GPUs, or never.
    let from_a = |rest: u64| -> u64 {
        let k = sums.partition_point(|&s| s < rest);
        if k < sums.len() {
            k as u64
        } else {
            NEVER
        }
    };
    for k in kinds.iter_mut() {
        let (mut t, mut took, mut best) = (0u64, 0u64, NEVER);
        'nodes: for v in (1..width).rev() {
            for _ in 0..k.cnt[v] {
                t += 1;
                took += v as u64;
                best = best.min(t + from_a(g.saturating_sub(took)));
                if took >= g {
                    break 'nodes;
                }
            }
        }
        k.bound = best;
    }
}
