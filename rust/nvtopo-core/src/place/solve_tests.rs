//! Tests of the Contract 2 search: each fast method against trying every choice.

use super::super::spread::spread_total;
use super::*;
use crate::random::Rng;

/// Every combination of `q` candidates, in rank order: the first with the best key. The
/// oracle that `spread_total` is tested against.
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

/// The dynamic programme for `gpus`-only jobs against trying every combination, on
/// small random sets of domains: few distinct counts and free totals, duplicated
/// domains and one-node domains, so that ties are frequent.
#[test]
fn total_spread_matches_every_combination() {
    let mut rng = Rng::new(23);
    let mut cases = 0;
    while cases < 600 {
        let width = 2 + rng.below(5) as usize;
        let count = 2 + rng.below(7) as usize;
        let mut cand: Vec<(usize, Vec<u32>, u64)> = Vec::new();
        for r in 0..count {
            if r > 0 && rng.below(4) == 0 {
                let mut twin = cand[rng.below(r as u64) as usize].clone();
                twin.0 = r;
                cand.push(twin);
                continue;
            }
            let mut cnt = vec![0u32; width];
            if rng.below(4) == 0 {
                cnt[1 + rng.below(width as u64 - 1) as usize] = 1;
            } else {
                // Up to 6 nodes of one count: several bundles of nodes per count.
                let most = if rng.below(2) == 0 { 3 } else { 7 };
                for c in cnt.iter_mut().skip(1) {
                    *c = rng.below(most) as u32;
                }
            }
            let f = crate::counts::capacity(&cnt) + rng.below(3);
            cand.push((r, cnt, f));
        }
        cand.retain(|c| crate::counts::capacity(&c.1) > 0);
        let total: u64 = cand.iter().map(|c| crate::counts::capacity(&c.1)).sum();
        if total == 0 {
            continue;
        }
        let g = 1 + rng.below(total);
        let mut caps: Vec<u64> = cand.iter().map(|c| crate::counts::capacity(&c.1)).collect();
        caps.sort_unstable_by(|a, b| b.cmp(a));
        let (mut q, mut acc) = (0, 0);
        while acc < g {
            acc += caps[q];
            q += 1;
        }
        let dp = spread_total(&cand, q, g, width).unwrap();
        let brute = spread_enumerate(&cand, Need::Total(g), q, width);
        assert_eq!(dp, brute, "{cand:?} gpus {g} q {q}");
        for bits in [64, 128] {
            let wide = super::super::spread::spread_total_in(&cand, q, g, width, bits);
            assert_eq!(wide.unwrap(), brute, "{bits}-bit keys");
        }
        cases += 1;
    }
}

// ---- Whole clusters: the profile index and the bounds against every domain ----

use std::collections::{BTreeSet, HashMap as Map};
use std::sync::Arc;

use super::super::state::NodeSpec;
use crate::bitset::Mask;
use crate::score::{PairPath, PathClass};
use crate::topology::Topology;

/// A random cluster of `racks` cliques and a few loose nodes, nodes of `width - 1` GPUs.
/// Racks are drawn from `shapes` templates (whole racks copied, so that many share a
/// profile and differ only by id), some nodes in a ComputeDomain.
fn cluster(rng: &mut Rng, racks: usize, shapes: usize, width: usize) -> ClusterState {
    let n = width - 1;
    let pair = PairPath {
        nvlinks: 18,
        class: PathClass::Sys,
    };
    let topo = Arc::new(Topology::uniform(n, pair, 5, &vec![0; n]).unwrap());
    let full = topo.all();
    let templates: Vec<Vec<(Mask, bool)>> = (0..shapes)
        .map(|_| {
            let size = 1 + rng.below(5) as usize;
            (0..size)
                .map(|_| (Mask::from(rng.next_u64()) & full, rng.below(6) == 0))
                .collect()
        })
        .collect();
    let mut specs = Vec::new();
    for r in 0..racks {
        let t = &templates[rng.below(shapes as u64) as usize];
        for (i, &(free, cd)) in t.iter().enumerate() {
            specs.push(NodeSpec {
                name: format!("r{r:03}-{i}"),
                topology: Arc::clone(&topo),
                clique: Some(format!("c{r:03}")),
                free,
                in_compute_domain: cd,
            });
        }
    }
    for i in 0..rng.below(4) {
        specs.push(NodeSpec {
            name: format!("loose{i}"),
            topology: Arc::clone(&topo),
            clique: None,
            free: Mask::from(rng.next_u64()) & full,
            in_compute_domain: rng.below(4) == 0,
        });
    }
    ClusterState::new(specs).unwrap()
}

/// Every domain with usable nodes, in rank order, without the profile index.
fn every_domain(s: &ClusterState, need: Need) -> Vec<(usize, Vec<u32>, u64)> {
    let floor = need.floor().max(1);
    (0..s.groups.len())
        .filter_map(|g| {
            let grp = &s.groups[g];
            let mut cnt = grp.cnt_elig.clone();
            let upto = floor.min(cnt.len());
            cnt[..upto].iter_mut().for_each(|x| *x = 0);
            (need.cover(&cnt) > 0).then_some((g, cnt, grp.free_total))
        })
        .collect()
}

/// The fewest domains that reach the need, or None.
fn fewest(cand: &[(usize, Vec<u32>, u64)], need: Need) -> Option<usize> {
    let mut covers: Vec<u64> = cand.iter().map(|c| need.cover(&c.1)).collect();
    covers.sort_unstable_by(|a, b| b.cmp(a));
    let (mut q, mut acc) = (0, 0);
    while acc < need.amount() {
        acc += covers.get(q)?;
        q += 1;
    }
    Some(q)
}

fn random_need(rng: &mut Rng, s: &ClusterState) -> Need {
    let width = s.width;
    if rng.below(2) == 0 {
        let share = 1 + rng.below(width as u64 - 1) as usize;
        Need::Even {
            nodes: 2 + rng.below(8) as u32,
            share,
        }
    } else {
        Need::Total(2 + rng.below(6 * width as u64))
    }
}

/// The profile index as a fresh build would have it.
fn check_index(s: &ClusterState) {
    let mut want: Map<(Box<[u32]>, u64), BTreeSet<usize>> = Map::new();
    for &c in &s.cliques {
        let grp = &s.groups[c];
        let key = (grp.cnt_elig[1..].into(), grp.free_total);
        want.entry(key).or_default().insert(c);
    }
    assert_eq!(s.profiles, want, "profile index out of date");
}

/// `spread_domains` against `oracle` (over every domain) on random clusters whose racks
/// share a few profiles, after random allocations and releases.
fn spanning_matches(seed: u64, rounds: usize, racks: (u64, u64), oracle: Oracle) {
    let mut rng = Rng::new(seed);
    let mut checked = 0;
    for _ in 0..rounds {
        let width = 2 + rng.below(4) as usize;
        let n = racks.0 + rng.below(racks.1 - racks.0);
        let shapes = 1 + rng.below(4) as usize;
        let mut s = cluster(&mut rng, n as usize, shapes, width);
        let mut held = Vec::new();
        for _ in 0..6 {
            check_index(&s);
            let need = random_need(&mut rng, &s);
            let all = every_domain(&s, need);
            let Some(q) = fewest(&all, need) else {
                assert!(s.spread_domains(need).is_err());
                continue;
            };
            let want: Vec<usize> = oracle(&all, need, q, width)
                .into_iter()
                .map(|i| all[i].0)
                .collect();
            let got = s.spread_domains(need).unwrap();
            assert_eq!(got, want, "{need:?} q {q} over {all:?}");
            checked += 1;
            // Change the state: take a random job, or give one back.
            if rng.below(3) == 0 && !held.is_empty() {
                let id = held.swap_remove(rng.below(held.len() as u64) as usize);
                s.release(id).unwrap();
            } else {
                let req = Request {
                    gpus: 1 + rng.below(2 * width as u64) as u32,
                    nodes: None,
                    domain: DomainMode::Preferred,
                };
                if let Ok(a) = s.allocate(&req) {
                    held.push(a.id);
                }
                let share = 1 + rng.below(width as u64 - 1) as u32;
                let req = Request {
                    gpus: 2 * share,
                    nodes: Some(2),
                    domain: DomainMode::Required,
                };
                if let Ok(a) = s.allocate(&req) {
                    held.push(a.id);
                }
            }
        }
    }
    assert!(
        checked > rounds,
        "too few cases reached the search: {checked}"
    );
}

type Oracle = fn(&[(usize, Vec<u32>, u64)], Need, usize, usize) -> Vec<usize>;

fn enumerate(cand: &[(usize, Vec<u32>, u64)], need: Need, q: usize, width: usize) -> Vec<usize> {
    spread_enumerate(cand, need, q, width)
}

fn full_table(cand: &[(usize, Vec<u32>, u64)], need: Need, q: usize, width: usize) -> Vec<usize> {
    match need {
        Need::Even { nodes, share } => spread_even(cand, q, nodes, share),
        Need::Total(g) => spread_total(cand, q, g, width).unwrap(),
    }
}

/// Few racks: the pruned search over profiles against trying every set of domains.
#[test]
fn spanning_matches_every_combination() {
    spanning_matches(5, 150, (2, 9), enumerate);
}

/// Many racks of few profiles (the first q of each kind, the bounds at work): against the
/// table over every domain, which the tests above hold to trying every combination.
#[test]
fn spanning_with_many_alike_racks_matches_the_full_table() {
    spanning_matches(9, 60, (20, 80), full_table);
}

/// The least score (Even: free GPUs of the domains; Total: nodes) of a set of `q` of
/// `all` holding `must`, by trying every set.
fn least_with(all: &[(usize, Vec<u32>, u64)], need: Need, q: usize, must: usize) -> Option<u64> {
    fn walk(
        all: &[(usize, Vec<u32>, u64)],
        need: Need,
        left: usize,
        from: usize,
        cnt: Vec<u32>,
        f: u64,
        best: &mut Option<u64>,
    ) {
        if left == 0 {
            if need.cover(&cnt) < need.amount() {
                return;
            }
            let score = match need {
                Need::Even { .. } => f,
                Need::Total(g) => u64::from(fewest_nodes(&cnt, g).unwrap()),
            };
            if best.is_none_or(|b| score < b) {
                *best = Some(score);
            }
            return;
        }
        for i in from..all.len() {
            let merged: Vec<u32> = cnt.iter().zip(&all[i].1).map(|(a, b)| a + b).collect();
            walk(all, need, left - 1, i + 1, merged, f + all[i].2, best);
        }
    }
    let at = all.iter().position(|c| c.0 == must)?;
    let rest: Vec<_> = all.iter().filter(|c| c.0 != must).cloned().collect();
    let mut best = None;
    walk(
        &rest,
        need,
        q - 1,
        0,
        all[at].1.clone(),
        all[at].2,
        &mut best,
    );
    best
}

/// Each kind's bound is at most the best score of any set that holds one of its domains
/// (else pruning could lose the best set), and equal to it often enough that a bound
/// raised by one would be caught.
#[test]
fn spanning_bounds_hold_and_are_tight() {
    let mut rng = Rng::new(31);
    let (mut kinds_seen, mut tight) = ([0usize; 2], [0usize; 2]);
    for _ in 0..300 {
        let width = 2 + rng.below(4) as usize;
        let n = 2 + rng.below(7);
        let shapes = 1 + rng.below(4) as usize;
        let s = cluster(&mut rng, n as usize, shapes, width);
        let need = random_need(&mut rng, &s);
        let all = every_domain(&s, need);
        let Some(q) = fewest(&all, need) else {
            continue;
        };
        let (kinds, q2) = s.bounded_kinds(need).unwrap();
        assert_eq!(q, q2);
        let which = usize::from(matches!(need, Need::Total(_)));
        for k in &kinds {
            let first = *k.members.iter().next().unwrap();
            let g = if k.loose { s.nodes[first].group } else { first };
            let Some(least) = least_with(&all, need, q, g) else {
                continue;
            };
            assert!(
                k.bound <= least,
                "{need:?} q {q}: bound {} above {least}",
                k.bound
            );
            kinds_seen[which] += 1;
            tight[which] += usize::from(k.bound == least);
        }
    }
    eprintln!("tight: {tight:?} of {kinds_seen:?}");
    for w in 0..2 {
        assert!(tight[w] * 2 >= kinds_seen[w], "{tight:?} of {kinds_seen:?}");
    }
}
